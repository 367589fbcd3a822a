//! `CARD_TESTING`: many tiny payments to merchants the user has never paid, within minutes,
//! often with failures: a thief checking which stolen card or wallet works before a large
//! purchase.
//!
//! Tiny payments to new merchants are counted with the short half-life. The detector scores
//! each further tiny payment and also the first non-tiny money out that follows the run.
//! From a stranger (a device the user never used, in a place or network the user was never
//! seen in) fewer are needed (`stranger_start_count`, `stranger_full_count`): the owner's own
//! phone buying two bus tickets at new shops is ordinary, while an unknown device on an unknown
//! network whose first acts are micro-payments at shops the user never paid is the probe
//! itself.

use super::{money, ramp, Code, Detail, Detector, Input, Keep, Signals};
use crate::engine::baseline::{Facts, Novelty, Population, Prior, Profile};
use crate::engine::event::{Event, EventType};
use crate::engine::validate::{count, invalid, positive, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.card_testing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardTestingConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// A payment at or below this share of the user's typical money out is "tiny" (an order of
    /// magnitude below habit, in any currency).
    pub tiny_ratio: f64,
    /// Recent tiny payments to new merchants (decayed) at which it starts to score.
    pub start_count: f64,
    /// Count at which it scores 1.
    pub full_count: f64,
    /// `start_count` when the payment comes from a stranger: a device the user never used,
    /// in a place or network the user was never seen in.
    pub stranger_start_count: f64,
    /// `full_count` for a stranger.
    pub stranger_full_count: f64,
    /// How far the owner's own habit of paying merchants never paid before discounts the run:
    /// the score is multiplied by `1 − habit_discount × share`, where `share` is the user's
    /// (smoothed) share of money out that went to new payees. A card used at a different shop
    /// every day makes "payments to new merchants" all the time; a run of them is evidence only
    /// as far as it is unlike the owner. Not applied to a stranger, whose acts say nothing of
    /// the owner's habits.
    pub habit_discount: f64,
    /// Once the partition has learned its population of payments in the currency, a payment
    /// is tiny only if at most this share of everyone's payments is as small: a probe is an
    /// amount nobody pays, while a user whose typical money out is large transfers makes
    /// ordinary purchases far below it (PaySim: bursts of ordinary payments by such users were
    /// the top-ranked honest events). 1 = the user's ratio alone.
    pub population_share: f64,
}

impl Default for CardTestingConfig {
    fn default() -> Self {
        CardTestingConfig {
            enabled: true,
            weight: 0.85,
            tiny_ratio: 0.3,
            start_count: 2.5,
            full_count: 6.0,
            stranger_start_count: 1.5,
            stranger_full_count: 2.0,
            habit_discount: 1.0,
            population_share: 0.05,
        }
    }
}

impl CardTestingConfig {
    /// Checks the rules of its table, `table` (`detectors.card_testing`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        count(&k("start_count"), self.start_count)?;
        count(&k("full_count"), self.full_count)?;
        count(&k("stranger_start_count"), self.stranger_start_count)?;
        count(&k("stranger_full_count"), self.stranger_full_count)?;
        if self.full_count <= self.start_count {
            return Err(invalid(&k("full_count"), "must be above start_count"));
        }
        if self.stranger_full_count <= self.stranger_start_count {
            return Err(invalid(
                &k("stranger_full_count"),
                "must be above stranger_start_count",
            ));
        }
        unit(&k("tiny_ratio"), self.tiny_ratio)?;
        unit(&k("habit_discount"), self.habit_discount)?;
        unit(&k("population_share"), self.population_share)?;
        positive(&k("tiny_ratio"), self.tiny_ratio)
    }
}

/// See the module docs.
pub struct CardTesting {
    weight: f64,
    start: f64,
    full: f64,
    stranger_start: f64,
    stranger_full: f64,
    habit_discount: f64,
    tiny: Tiny,
}

/// What makes a payment tiny (see [`CardTestingConfig::tiny_ratio`] and
/// [`CardTestingConfig::population_share`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tiny {
    /// At most this share of the user's typical money out.
    pub ratio: f64,
    /// At most this share of the partition's payments in the currency is as small.
    pub population_share: f64,
}

impl Tiny {
    /// From `[detectors.card_testing]`.
    pub fn of(c: &CardTestingConfig) -> Tiny {
        Tiny {
            ratio: c.tiny_ratio,
            population_share: c.population_share,
        }
    }
}

impl CardTesting {
    /// From config.
    pub fn new(c: &CardTestingConfig) -> Self {
        CardTesting {
            weight: c.weight,
            start: c.start_count,
            full: c.full_count,
            stranger_start: c.stranger_start_count,
            stranger_full: c.stranger_full_count,
            habit_discount: c.habit_discount,
            tiny: Tiny::of(c),
        }
    }

    /// Whether an event is a tiny payment (at or below `tiny_ratio` of the user's typical money
    /// out) to a merchant the profile does not know: the thing this detector counts (the
    /// pipeline records it in the profile). Without a typical amount (no money out yet)
    /// nothing is tiny. The typical amount is only looked up for a payment to a new merchant.
    pub fn is_tiny_new_merchant(
        tiny: Tiny,
        profile: &Profile,
        ev: &Event<'_>,
        facts: &Facts,
        (population, prior): (&Population, &Prior),
        default_currency: [u8; 3],
    ) -> bool {
        if ev.kind != EventType::Payment || !matches!(facts.counterparty, Some((_, false))) {
            return false;
        }
        let (Some(a), Some(typical)) = (ev.amount, super::typical_of(profile, facts)) else {
            return false;
        };
        if a > tiny.ratio * typical {
            return false;
        }
        if tiny.population_share >= 1.0 {
            return true;
        }
        let Some(x) = facts.log_amount else {
            return true;
        };
        let currency = ev.currency.unwrap_or(default_currency);
        // The share of the population's payments at or below this amount; unknown (not yet
        // learned) leaves the user's ratio alone to decide.
        match population.amount_tail(&prior.pop, currency, ev.kind, x) {
            Some(above) => 1.0 - above <= tiny.population_share,
            None => true,
        }
    }
}

impl Detector for CardTesting {
    fn code(&self) -> Code {
        Code::CardTesting
    }

    fn keeps_state(&self) -> bool {
        true
    }

    /// Marks a tiny payment to a new merchant, which the profile counts.
    fn keep(&self, k: &mut Keep<'_, '_>) {
        k.tiny_new_merchant = Self::is_tiny_new_merchant(
            self.tiny,
            k.profile,
            k.ev,
            k.facts,
            (k.population, k.prior),
            k.params.currency,
        );
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if !ctx.ev.kind.is_money_out() {
            return;
        }
        let tiny_new = Self::is_tiny_new_merchant(
            self.tiny,
            ctx.profile,
            ctx.ev,
            ctx.facts,
            (ctx.population, ctx.prior),
            ctx.params.currency,
        );
        let recent = ctx.profile.recent_tiny_new(ctx.facts);
        let c = recent + tiny_new as u8 as f64;
        let stranger = ctx.facts.stranger();
        let (start, full) = if stranger {
            (self.stranger_start, self.stranger_full)
        } else {
            (self.start, self.full)
        };
        if c < start {
            return;
        }
        let habit = if stranger {
            1.0
        } else {
            let n = ctx.profile.out_n as f64 * ctx.facts.decay;
            let share = (ctx.profile.novel_count(Novelty::Merchant) + 1.0) / (n + 2.0);
            (1.0 - self.habit_discount * share.min(1.0)).max(0.0)
        };
        let amount = ctx.ev.amount.unwrap_or(0.0);
        out.push(
            Code::CardTesting,
            ramp(c, start - 1.0, full) * habit,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "about {:.0} tiny payments to new merchants within minutes",
                        a[0]
                    )?;
                    if a[1] > 0.0 {
                        write!(f, ", now {}", money(a[1]))?;
                    }
                    Ok(())
                },
                [c, if tiny_new { 0.0 } else { amount }, 0.0, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::engine::event::parse_event;

    fn det() -> CardTesting {
        CardTesting::new(&CardTestingConfig::default())
    }

    /// [`CardTesting::is_tiny_new_merchant`] against the kit's profile and population.
    fn tiny_new(k: &Kit, e: &Event<'_>, f: &Facts, tiny: Tiny) -> bool {
        CardTesting::is_tiny_new_merchant(
            tiny,
            &k.profile,
            e,
            f,
            (&k.population, &k.prior),
            k.params.currency,
        )
    }

    fn tiny(k: &mut Kit, t: i64, m: &str) {
        let s = k.json(
            t,
            "payment",
            &format!(r#""amount":1.0,"counterparty":"{m}""#),
        );
        let e = parse_event(s.as_bytes()).unwrap();
        let f = k.profile.facts(&k.params, &e);
        k.profile.record_activity(&k.params, &e, &f, true);
    }

    #[test]
    fn a_payment_far_below_the_users_habit_but_ordinary_for_everyone_is_not_tiny() {
        let mut k = Kit::new();
        // The user's money out is large transfers, so a 100 payment is a tenth of it.
        for day in 0..20 {
            k.learn(
                T0 + day * DAY,
                "transfer",
                r#""amount":1000.0,"counterparty":"p-rent""#,
            );
        }
        let pay = |k: &mut Kit, amount: f64| {
            let s = k.json(
                T0 + 21 * DAY,
                "payment",
                &format!(r#""amount":{amount},"counterparty":"m-new""#),
            );
            let e = parse_event(s.as_bytes()).unwrap();
            let f = k.profile.facts(&k.params, &e);
            tiny_new(k, &e, &f, Tiny::of(&CardTestingConfig::default()))
        };
        // Before the partition knows its payments, the user's ratio decides.
        assert!(pay(&mut k, 100.0));
        // Everyone here pays 50 to 500: 100 is ordinary, 1 is what nobody pays.
        let cur = k.params.currency;
        for i in 0..5_000 {
            let amount = 50.0 + (i % 450) as f64;
            let s = k.json(
                T0,
                "payment",
                &format!(r#""amount":{amount},"counterparty":"m""#),
            );
            let e = parse_event(s.as_bytes()).unwrap();
            let pop = k.prior.pop;
            k.population
                .observe(&pop, &e, cur, 12, Some(f64::ln(amount)));
        }
        assert!(!pay(&mut k, 100.0), "ordinary for everyone");
        assert!(pay(&mut k, 1.0), "far below anyone's payments");
    }

    #[test]
    fn fires_on_a_run_of_tiny_new_merchant_payments_and_the_big_one_after() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 31 * DAY;
        for i in 0..5 {
            tiny(&mut k, t + i * 20_000, &format!("m{i}"));
        }
        let s = k.run(
            &det(),
            t + 110_000,
            "payment",
            r#""amount":0.5,"counterparty":"m9""#,
        );
        assert!(score(&s) > 0.7, "{s:?}");
        let s = k.run(
            &det(),
            t + 120_000,
            "payment",
            r#""amount":3000,"counterparty":"shop-z""#,
        );
        assert!(score(&s) > 0.6, "{s:?}");
    }

    #[test]
    fn the_owners_habit_of_new_shops_discounts_the_run() {
        // The same run, from the owner's context, scores less for a user whose money out
        // mostly went to payees never paid before, and not at all with the discount off.
        let run = |habit: f64| {
            let mut k = Kit::new();
            k.history();
            // Nine in ten of the user's money out went to payees never paid before (fixed
            // point, 256 per count).
            let n = (k.profile.out_n as f64 * 0.9 * 256.0).min(u16::MAX as f64);
            k.profile.novel[Novelty::Merchant as usize] = n as u16;
            let t = T0 + 31 * DAY;
            for i in 0..5 {
                tiny(&mut k, t + i * 20_000, &format!("m{i}"));
            }
            let d = CardTesting::new(&CardTestingConfig {
                habit_discount: habit,
                ..CardTestingConfig::default()
            });
            score(&k.run(
                &d,
                t + 110_000,
                "payment",
                r#""amount":0.5,"counterparty":"m9""#,
            ))
        };
        let (off, on) = (run(0.0), run(1.0));
        assert!(off > 0.7, "{off}");
        assert!(on < 0.5 * off, "habit discounts the run: {on} vs {off}");
    }

    #[test]
    fn tiny_is_relative_to_the_users_typical_amount() {
        // The kit's history pays around 50-ish; 1.0 is tiny, the typical amount is not.
        let mut k = Kit::new();
        k.history();
        let ratio = CardTestingConfig::default().tiny_ratio;
        let typical = {
            let s = k.json(
                T0 + 31 * DAY,
                "payment",
                r#""amount":1,"counterparty":"shop-a""#,
            );
            let e = crate::engine::event::parse_event(s.as_bytes()).unwrap();
            let f = k.profile.facts(&k.params, &e);
            super::super::typical_of(&k.profile, &f).unwrap()
        };
        let mut tiny = |amount: f64, new_cp: bool| {
            let shop = if new_cp { "kiosk" } else { "shop-a" };
            let s = k.json(
                T0 + 31 * DAY,
                "payment",
                &format!(r#""amount":{amount},"counterparty":"{shop}""#),
            );
            let e = crate::engine::event::parse_event(s.as_bytes()).unwrap();
            let f = k.profile.facts(&k.params, &e);
            let tiny = Tiny {
                ratio,
                population_share: 0.05,
            };
            tiny_new(&k, &e, &f, tiny)
        };
        assert!(tiny(1.0, true));
        assert!(!tiny(typical, true));
        assert!(!tiny(1.0, false));
    }

    #[test]
    fn quiet_for_one_small_purchase() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "payment",
            r#""amount":2,"counterparty":"kiosk""#,
        );
        assert!(s.is_empty());
    }

    /// Records a tiny payment to a new merchant as the pipeline would (not learned).
    fn record_tiny(k: &mut Kit, t: i64, extra: &str) {
        let s = k.json(t, "payment", extra);
        let e = parse_event(s.as_bytes()).unwrap();
        let f = k.profile.facts(&k.params, &e);
        k.profile.record_activity(&k.params, &e, &f, true);
    }

    #[test]
    fn a_stranger_needs_only_two_tiny_payments() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 30 * DAY;
        let bot = r#""device_id":"bot","ip":"185.220.101.4","geo":{"lat":50.11,"lon":8.68}"#;
        let first = format!(r#""amount":0.01,"counterparty":"s1",{bot}"#);
        assert_eq!(score(&k.run(&det(), t, "payment", &first)), 0.0);
        record_tiny(&mut k, t, &first);
        let second = format!(r#""amount":1.0,"counterparty":"s2",{bot}"#);
        assert!(score(&k.run(&det(), t + 30_000, "payment", &second)) > 0.9);
        // The owner's own phone at home, two tiny buys at new shops: still nothing.
        let mut k = Kit::new();
        k.history();
        let own = r#""device_id":"d1","ip":"203.0.113.7","geo":{"lat":31.23,"lon":121.47}"#;
        let first = format!(r#""amount":2.0,"counterparty":"bus",{own}"#);
        record_tiny(&mut k, t, &first);
        let second = format!(r#""amount":3.0,"counterparty":"kiosk",{own}"#);
        assert_eq!(score(&k.run(&det(), t + 30_000, "payment", &second)), 0.0);
    }
}
