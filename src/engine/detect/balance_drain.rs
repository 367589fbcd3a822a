//! `BALANCE_DRAIN`: a single outflow that takes a large share of the balance before it.
//!
//! The balance before the event is `balance_after + amount` when the event carries its balance,
//! else the last balance the profile knows. Small amounts never count: emptying a wallet that
//! holds 30 is not a theft worth a freeze. Many honest users keep little in the wallet and spend
//! most of it in ordinary amounts, so the share is scaled by how large the amount is for this
//! user (0 at their typical amount, full at four times it). A familiar outflow (a merchant
//! payment from a device the user already uses, or money to an established payee such as the
//! card that funds the account) scores `familiar_factor` of that: topping up and then spending
//! the whole balance at a shop, or moving it back to one's own card, is what owners do; thieves
//! cash a balance out to a new person or card, or from a device of their own.

use super::{
    familiar_outflow, money, ramp, typical_amount, Code, Detail, Detector, Input, Signals,
};
use crate::engine::event::Status;
use crate::engine::validate::{invalid, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.balance_drain]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceDrainConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Share of the balance before the event at which it starts to score.
    pub start_share: f64,
    /// Share at which it scores 1.
    pub full_share: f64,
    /// Multiplier on the score of a familiar outflow (a merchant payment from a device the
    /// user already uses, or a transfer or withdrawal to an established payee): people top up
    /// and spend their whole balance at shops, or move it to their own card, all the time;
    /// a thief cashes a balance out to a new person or card.
    pub familiar_factor: f64,
}

impl Default for BalanceDrainConfig {
    fn default() -> Self {
        BalanceDrainConfig {
            enabled: true,
            weight: 0.6,
            start_share: 0.4,
            full_share: 0.9,
            familiar_factor: 0.4,
        }
    }
}

impl BalanceDrainConfig {
    /// Checks the rules of its table, `table` (`detectors.balance_drain`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        unit(&k("familiar_factor"), self.familiar_factor)?;
        unit(&k("start_share"), self.start_share)?;
        unit(&k("full_share"), self.full_share)?;
        if self.full_share <= self.start_share {
            return Err(invalid(&k("full_share"), "must be above start_share"));
        }
        Ok(())
    }
}

/// See the module docs.
pub struct BalanceDrain {
    weight: f64,
    start: f64,
    full: f64,
    familiar_factor: f64,
}

impl BalanceDrain {
    /// From config.
    pub fn new(c: &BalanceDrainConfig) -> Self {
        BalanceDrain {
            weight: c.weight,
            start: c.start_share,
            full: c.full_share,
            familiar_factor: c.familiar_factor,
        }
    }
}

impl Detector for BalanceDrain {
    fn code(&self) -> Code {
        Code::BalanceDrain
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        let Some(amount) = ctx.ev.amount else {
            return;
        };
        // No absolute floor: an outflow no larger than the user's typical one scores nothing
        // (the ramp on `typical_amount` below), whatever the currency.
        if !ctx.ev.kind.is_money_out() || amount <= 0.0 {
            return;
        }
        let before = match (ctx.ev.balance_after, ctx.ev.status) {
            (Some(after), Status::Success) => after + amount,
            _ => match ctx.profile.last_balance() {
                // A declined attempt above the balance drains nothing (insufficient funds).
                Some(b) if amount <= b => b,
                _ => return,
            },
        };
        if before <= 0.0 {
            return;
        }
        let share = (amount / before).min(1.0);
        let s = ramp(share, self.start, self.full);
        if s <= 0.0 {
            return;
        }
        // Without money out yet there is no habit to measure the size against: the share of
        // the balance alone says what is at stake.
        let mut s = s * typical_amount(ctx).map_or(1.0, |t| ramp(amount / t, 1.0, 4.0));
        if familiar_outflow(ctx) {
            s *= self.familiar_factor;
        }
        if s <= 0.0 {
            return;
        }
        out.push(
            Code::BalanceDrain,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "takes {:.0}% of the {} balance",
                        a[0] * 100.0,
                        money(a[1])
                    )
                },
                [share, before, 0.0, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> BalanceDrain {
        BalanceDrain::new(&BalanceDrainConfig::default())
    }

    #[test]
    fn fires_when_most_of_the_balance_leaves() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "transfer",
            r#""amount":4600,"counterparty":"x","balance_after":400"#,
        );
        assert!(score(&s) > 0.95, "{s:?}");
        // Same, with the balance known only from the profile (5000).
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "withdrawal",
            r#""amount":4000,"counterparty":"card""#,
        );
        assert!((score(&s) - ramp(0.8, 0.4, 0.9)).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn quiet_for_small_shares_and_small_amounts() {
        let mut k = Kit::new();
        k.history();
        assert!(k
            .run(
                &det(),
                T0 + 31 * DAY,
                "payment",
                r#""amount":500,"counterparty":"x","balance_after":4500"#
            )
            .is_empty());
        assert!(k
            .run(
                &det(),
                T0 + 31 * DAY,
                "payment",
                r#""amount":50,"counterparty":"x","balance_after":0"#
            )
            .is_empty());
    }

    #[test]
    fn an_own_device_shop_payment_counts_less() {
        let mut k = Kit::new();
        k.history(); // device d1
        let f = BalanceDrainConfig::default().familiar_factor;
        let body = |dev: &str| {
            format!(
                r#""amount":4600,"counterparty":"shop-z","device_id":"{dev}","balance_after":400"#
            )
        };
        let stranger = score(&k.run(&det(), T0 + 31 * DAY, "payment", &body("dx")));
        let own = score(&k.run(&det(), T0 + 31 * DAY, "payment", &body("d1")));
        let transfer = score(&k.run(&det(), T0 + 31 * DAY, "transfer", &body("d1")));
        assert!(stranger > 0.95, "{stranger}");
        assert!((own - stranger * f).abs() < 1e-9, "{own} vs {stranger}");
        assert_eq!(
            transfer, stranger,
            "a transfer from the own device is not discounted"
        );
    }

    #[test]
    fn money_home_counts_less_but_a_young_payee_does_not() {
        let f = BalanceDrainConfig::default().familiar_factor;
        let mut k = Kit::new();
        k.history();
        // The owner's bank card tops the account up: withdrawing back to it is money going
        // home. A payee first paid yesterday is what a slow drain builds up.
        k.learn(
            T0 + 30 * DAY,
            "top_up",
            r#""amount":3000,"counterparty":"card-own","balance_after":8000"#,
        );
        k.learn(
            T0 + 30 * DAY + 3_600_000,
            "transfer",
            r#""amount":200,"counterparty":"p-new","balance_after":7800"#,
        );
        let body = |to: &str| format!(r#""amount":4600,"counterparty":"{to}","balance_after":400"#);
        let t = T0 + 31 * DAY;
        let stranger = score(&k.run(&det(), t, "withdrawal", &body("card-x")));
        let home = score(&k.run(&det(), t, "withdrawal", &body("card-own")));
        let young = score(&k.run(&det(), t, "transfer", &body("p-new")));
        assert!(stranger > 0.9, "{stranger}");
        assert!((home - stranger * f).abs() < 1e-9, "{home} vs {stranger}");
        assert_eq!(
            young, stranger,
            "a payee first paid lately is not established"
        );
    }
}
