//! `NEW_COUNTERPARTY`: money out to a payee, merchant or card never paid before.
//!
//! Scored like `NEW_DEVICE`: 1 − the user's smoothed rate of paying new counterparties, times
//! confidence. Payments to new merchants are everyday life, so they are scaled down by
//! `payment_factor`; transfers and withdrawals to a new destination are where money is stolen.
//! Mobile recharges are left to `NEW_RECHARGE_NUMBER`.
//!
//! A fan-out to several new payees within the hour (a stolen phone emptied to mule accounts)
//! raises the score whatever the user's habits: half for the second new payee in an hour, full
//! from the third.

use super::{Code, Detail, Detector, Input, Signals};
use crate::engine::baseline::Novelty;
use crate::engine::event::EventType;
use crate::engine::validate::{unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.new_counterparty]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewCounterpartyConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Multiplier for `payment` (new merchants are common and low risk) relative to
    /// `transfer` and `withdrawal`.
    pub payment_factor: f64,
}

impl Default for NewCounterpartyConfig {
    fn default() -> Self {
        NewCounterpartyConfig {
            enabled: true,
            weight: 0.4,
            payment_factor: 0.35,
        }
    }
}

impl NewCounterpartyConfig {
    /// Checks the rules of its table, `table` (`detectors.new_counterparty`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        unit(&k("payment_factor"), self.payment_factor)
    }
}

/// Window of the fan-out check, seconds.
const FAN_OUT_WINDOW_S: u32 = 3600;

/// See the module docs.
pub struct NewCounterparty {
    weight: f64,
    payment_factor: f64,
}

impl NewCounterparty {
    /// From config.
    pub fn new(c: &NewCounterpartyConfig) -> Self {
        NewCounterparty {
            weight: c.weight,
            payment_factor: c.payment_factor,
        }
    }
}

impl Detector for NewCounterparty {
    fn code(&self) -> Code {
        Code::NewCounterparty
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if ctx.ev.kind == EventType::MobileRecharge || !ctx.facts.has_history {
            return;
        }
        if !matches!(ctx.facts.counterparty, Some((_, false))) {
            return;
        }
        let n = ctx.profile.out_n as f64 * ctx.facts.decay;
        let novelty = if ctx.ev.kind == EventType::Payment {
            Novelty::Merchant
        } else {
            Novelty::Counterparty
        };
        let rate = (ctx.profile.novel_count(novelty) + 1.0) / (n + 2.0);
        let factor = if ctx.ev.kind == EventType::Payment {
            self.payment_factor
        } else {
            1.0
        };
        // Confidence counts all learned events: a user with a long history of logins and
        // top-ups but no payees yet is still well known.
        let conf = ctx
            .prior
            .own_weight(ctx.profile.all_n as f64 * ctx.facts.decay);
        let mut s = (1.0 - rate).max(0.0) * conf * factor;
        let earlier = if matches!(ctx.ev.kind, EventType::Transfer | EventType::Withdrawal) {
            ctx.profile
                .new_payee_outs_within(ctx.facts.t, FAN_OUT_WINDOW_S)
        } else {
            0
        };
        s = s.max(earlier.min(2) as f64 / 2.0);
        out.push(
            Code::NewCounterparty,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "{} never paid before; {:.0}% of this user's past money out went to new ones",
                        if a[1] > 0.0 { "merchant" } else { "payee" },
                        a[0] * 100.0
                    )?;
                    if a[2] > 0.0 {
                        write!(f, "; {:.0} other new payees in the last hour", a[2])?;
                    }
                    Ok(())
                },
                [rate.min(1.0), if factor < 1.0 { 1.0 } else { 0.0 }, earlier as f64, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> NewCounterparty {
        NewCounterparty::new(&NewCounterpartyConfig::default())
    }

    #[test]
    fn fires_on_transfer_to_new_payee() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "transfer",
            r#""amount":100,"counterparty":"mule""#,
        );
        assert!(score(&s) > 0.7, "{s:?}");
        let p = k.run(
            &det(),
            T0 + 31 * DAY,
            "payment",
            r#""amount":100,"counterparty":"new-shop""#,
        );
        assert!(
            score(&p) < score(&s),
            "new merchants weigh less than new payees"
        );
    }

    #[test]
    fn fan_out_to_new_payees_scores_high_even_for_users_who_often_pay_new_people() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 31 * DAY;
        k.learn(t, "transfer", r#""amount":100,"counterparty":"m1""#);
        k.learn(
            t + 600_000,
            "transfer",
            r#""amount":100,"counterparty":"m2""#,
        );
        let s = k.run(
            &det(),
            t + 1_200_000,
            "transfer",
            r#""amount":100,"counterparty":"m3""#,
        );
        assert_eq!(score(&s), 1.0, "{s:?}");
        assert!(detail(&s).contains("2 other new payees"));
    }

    #[test]
    fn quiet_on_known_payee() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "payment",
            r#""amount":100,"counterparty":"shop-a""#,
        );
        assert!(s.is_empty());
    }
}
