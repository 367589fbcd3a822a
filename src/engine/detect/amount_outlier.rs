//! `AMOUNT_OUTLIER`: money out far in the upper tail of the user's log-amount distribution.
//!
//! The user's exponentially weighted mean and variance of ln(1 + amount) are shrunk toward the
//! population prior, and the upper-tail probability of the new amount is taken from a
//! Student-t with n + 2 degrees of freedom: few observations give heavy tails, many give an
//! almost normal tail. A familiar outflow (a merchant payment from a device the user already
//! uses, or a transfer or withdrawal to an established payee) scores `familiar_factor` of
//! that: a big purchase on one's own phone or a large sum to family is ordinary unless
//! something else about it is not.

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::{familiar_outflow, money, own_habit, surprise, Code, Detail, Detector, Input, Signals};
use crate::engine::validate::{nonneg, positive, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.amount_outlier]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmountOutlierConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Amounts below this multiple of the user's typical amount never count as outliers: a
    /// user who always pays the same amount is not alarmed by a small change, in any currency.
    pub min_ratio: f64,
    /// Floor on the per-user standard deviation of ln(amount), so a user who always pays
    /// the same amount is not alarmed by a small change.
    pub min_sd: f64,
    /// Multiplier on the score of a familiar outflow (a merchant payment from a device the
    /// user already uses, or a transfer or withdrawal to an established payee): a large
    /// purchase on one's own phone or a large sum to family is ordinary; the amount still
    /// counts with other evidence (an odd hour, a new place, a burst).
    pub familiar_factor: f64,
    /// Multiplier on the score of an amount judged against the partition's learned population
    /// (a user without an amount habit in this currency): its tail share among everyone's money
    /// out of the same type and currency, mapped like a tail probability. Weaker than a user's
    /// own habit: a population mixes rich and poor. 0 silences it.
    pub population_factor: f64,
}

impl Default for AmountOutlierConfig {
    fn default() -> Self {
        AmountOutlierConfig {
            enabled: true,
            weight: 0.55,
            min_ratio: 3.0,
            min_sd: 0.35,
            familiar_factor: 0.4,
            population_factor: 0.6,
        }
    }
}

impl AmountOutlierConfig {
    /// Checks the rules of its table, `table` (`detectors.amount_outlier`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        unit(&k("familiar_factor"), self.familiar_factor)?;
        unit(&k("population_factor"), self.population_factor)?;
        nonneg(&k("min_ratio"), self.min_ratio)?;
        positive(&k("min_sd"), self.min_sd)
    }
}

/// See the module docs.
pub struct AmountOutlier {
    weight: f64,
    min_ratio: f64,
    min_var: f64,
    p_start: f64,
    p_full: f64,
    familiar_factor: f64,
    population_factor: f64,
}

impl AmountOutlier {
    /// From config and the shared surprise mapping.
    pub fn new(c: &AmountOutlierConfig, p_start: f64, p_full: f64) -> Self {
        AmountOutlier {
            weight: c.weight,
            min_ratio: c.min_ratio,
            min_var: c.min_sd * c.min_sd,
            p_start,
            p_full,
            familiar_factor: c.familiar_factor,
            population_factor: c.population_factor,
        }
    }
}

impl AmountOutlier {
    /// The population half: the tail share of the amount among the partition's money out of
    /// the same type and currency, once that population is learned. For a user with a habit
    /// it counts only above the user's typical amount (`typical`): a user who always pays
    /// large sums is not alarmed by paying one again.
    fn against_population(
        &self,
        ctx: &Input<'_, '_>,
        amount: f64,
        x: f64,
        typical: Option<f64>,
    ) -> Option<(f64, Detail)> {
        if self.population_factor <= 0.0 || typical.is_some_and(|t| amount <= t) {
            return None;
        }
        let currency = ctx.ev.currency.unwrap_or(ctx.params.currency);
        let p = ctx
            .population
            .amount_tail(&ctx.prior.pop, currency, ctx.ev.kind, x)?;
        let mut s = surprise(p, self.p_start, self.p_full) * self.population_factor;
        if typical.is_some() && familiar_outflow(ctx) {
            s *= self.familiar_factor;
        }
        (s > 0.0).then(|| {
            (
                s,
                Detail::new(
                    |a, f| {
                        if a[2] > 0.0 {
                            write!(f, "amount {} (typical {})", money(a[0]), money(a[2]))?;
                        } else {
                            write!(f, "amount {} with no habit yet", money(a[0]))?;
                        }
                        write!(
                            f,
                            "; only {:.2}% of this partition's money out of this type and currency is as large",
                            a[1] * 100.0
                        )
                    },
                    [amount, p, typical.unwrap_or(0.0), 0.0],
                ),
            )
        })
    }

    /// The user's half: the amount against the user's own log-amount distribution.
    fn against_own(
        &self,
        ctx: &Input<'_, '_>,
        amount: f64,
        x: f64,
        own: (f64, f64),
    ) -> Option<(f64, Detail)> {
        let (n, mean, sd) = own_habit(ctx.profile, ctx.facts, ctx.prior, own, self.min_var);
        if amount < self.min_ratio * mean.exp() {
            return None;
        }
        let z = (x - mean) / sd;
        if z < Z_FAST_PATH {
            return None;
        }
        let dof = (n + 2.0).min(1e6);
        let p = StudentsT::new(0.0, 1.0, dof).ok()?.sf(z);
        let mut s = surprise(p, self.p_start, self.p_full);
        if familiar_outflow(ctx) {
            s *= self.familiar_factor;
        }
        let typical = mean.exp();
        Some((
            s,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "amount {} is {:.1}x the typical {} (z={:.1}, tail p={:.1e})",
                        money(a[0]),
                        a[0] / a[1].max(0.01),
                        money(a[1]),
                        a[2],
                        a[3]
                    )
                },
                [amount, typical, z, p],
            ),
        ))
    }
}

/// z below which the tail is never computed: the tail probability there is far above any
/// sensible `p_start`, and skipping the incomplete-beta call keeps the common case cheap.
const Z_FAST_PATH: f64 = 1.5;

impl Detector for AmountOutlier {
    fn code(&self) -> Code {
        Code::AmountOutlier
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        let (Some(amount), Some(x)) = (ctx.ev.amount, ctx.facts.log_amount) else {
            return;
        };
        if !ctx.ev.kind.is_money_out() {
            return;
        }
        // Both halves, and the stronger one counts. Without money out in this currency yet
        // there is no habit to be out of, and how rare the amount is among everyone's is the
        // evidence left. With a habit, the population still speaks: an amount far above what
        // anyone here pays is evidence even for a user whose own history was learned from
        // the same thief's earlier payments (a card drained over days).
        let own = ctx.profile.amount_stats(ctx.facts);
        let typical = own.map(|(mean, _)| mean.exp());
        let mine = own.and_then(|o| self.against_own(ctx, amount, x, o));
        let theirs = self.against_population(ctx, amount, x, typical);
        let best = match (mine, theirs) {
            (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        if let Some((s, detail)) = best {
            out.push(Code::AmountOutlier, s, self.weight, detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::engine::detect::DetectorsConfig;

    fn det() -> AmountOutlier {
        let c = DetectorsConfig::default();
        AmountOutlier::new(&c.amount_outlier, c.surprise_p_start, c.surprise_p_full)
    }

    #[test]
    fn fires_on_a_huge_amount() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "transfer",
            r#""amount":5000,"counterparty":"p""#,
        );
        assert!(score(&s) > 0.9, "{s:?}");
        assert!(detail(&s).contains("5,000.00"));
    }

    #[test]
    fn quiet_on_a_usual_amount() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "payment",
            r#""amount":110,"counterparty":"shop-a""#,
        );
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn new_user_is_judged_by_the_prior() {
        let mut k = Kit::new();
        k.learn(T0, "payment", r#""amount":20,"counterparty":"m""#);
        k.learn(T0 + 1000, "payment", r#""amount":25,"counterparty":"m""#);
        // An ordinary payment for the population is not an outlier after two tiny ones.
        let s = k.run(
            &det(),
            T0 + DAY,
            "payment",
            r#""amount":150,"counterparty":"m""#,
        );
        assert_eq!(score(&s), 0.0, "{s:?}");
    }

    #[test]
    fn a_big_purchase_on_the_own_device_counts_less() {
        let mut k = Kit::new();
        k.history(); // device d1
        let f = AmountOutlierConfig::default().familiar_factor;
        let body =
            |dev: &str| format!(r#""amount":5000,"counterparty":"shop-z","device_id":"{dev}""#);
        let other = score(&k.run(&det(), T0 + 31 * DAY, "payment", &body("dx")));
        let own = score(&k.run(&det(), T0 + 31 * DAY, "payment", &body("d1")));
        assert!(other > 0.9, "{other}");
        assert!((own - other * f).abs() < 1e-9, "{own} vs {other}");
        let transfer = score(&k.run(&det(), T0 + 31 * DAY, "transfer", &body("d1")));
        assert_eq!(transfer, other);
    }

    #[test]
    fn a_user_without_a_habit_is_judged_against_the_learned_population() {
        let mut k = Kit::new();
        // Nothing learned yet: silent.
        let body = r#""amount":90000,"counterparty":"p""#;
        assert_eq!(score(&k.run(&det(), T0, "transfer", body)), 0.0);
        // A population of transfers of 10 to 1,000, in the kit's default currency.
        let pop = k.prior.pop;
        for i in 0..2000 {
            let a = 10.0 * (1.0 + (i % 100) as f64);
            let s = format!(
                r#"{{"event_id":"x{i}","user_id":"o{i}","ts":{T0},"type":"transfer","amount":{a},"counterparty":"p"}}"#
            );
            let e = crate::engine::event::parse_event(s.as_bytes()).unwrap();
            k.population.observe(&pop, &e, *b"CNY", 10, Some(a.ln()));
        }
        let f = AmountOutlierConfig::default().population_factor;
        let huge = score(&k.run(&det(), T0, "transfer", body));
        assert!(
            (huge - f).abs() < 1e-9,
            "beyond every amount seen: the full population score, {huge}"
        );
        assert!(detail(&k.run(&det(), T0, "transfer", body)).contains("no habit"));
        let usual = r#""amount":300,"counterparty":"p""#;
        assert_eq!(score(&k.run(&det(), T0, "transfer", usual)), 0.0);
        // Another type or currency has no population yet.
        assert_eq!(score(&k.run(&det(), T0, "withdrawal", body)), 0.0);
        let usd = r#""amount":90000,"currency":"USD","counterparty":"p""#;
        assert_eq!(score(&k.run(&det(), T0, "transfer", usd)), 0.0);
        // A habit, once there, is what counts.
        k.learn(T0, "transfer", r#""amount":80000,"counterparty":"p""#);
        assert!(!detail(&k.run(&det(), T0 + 1000, "transfer", body)).contains("no habit"));
    }
}
