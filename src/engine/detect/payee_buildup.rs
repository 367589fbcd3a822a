//! `PAYEE_BUILDUP`: repeated money out to a payee the user paid for the first time only days
//! ago, adding up to many times what the user usually spends.
//!
//! The pattern of scams and of someone quietly draining an account from the owner's own
//! phone: no single transfer is unusual (a moderate sum, a known device, the usual hours), but
//! a payee nobody in the user's history ever received money from becomes a regular, fast.
//! Each transfer or withdrawal to a *young payee* (one of the two latest payees paid for the
//! first time, tracked in the profile for `window_days`; "first time" is checked against every
//! payee paid in the last two to four months, not only the few the profile remembers exactly)
//! scores
//!
//! ```text
//! ramp(payments, 1, full_count) × ramp(ln share, ln start_share, ln full_share)
//! share = total / (the user's usual money out in 30 days)
//! ```
//!
//! where `payments` and `total` include this event, and the usual 30-day outflow is the user's
//! money-out rate (shrunk toward the population's) × 30 days × their typical amount. Measuring
//! the total against a month of the user's own spending, not against one typical payment,
//! keeps heavy senders from alerting on every new contact: a second transfer to a new payee
//! scores only when together they are a real part of what the user moves in a month.

use super::{money, out_rate, ramp, typical_amount, Code, Detail, Detector, Input, Signals};
use crate::engine::baseline::new_payee_kind;
use crate::engine::validate::{invalid, positive, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.payee_buildup]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayeeBuildupConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// A payee first paid at most this many days ago is "young".
    pub window_days: f64,
    /// Days of history a user needs before a first-time payee counts as young (in a new
    /// account every payee is new).
    pub min_history_days: f64,
    /// Money-out attempts to the young payee (this one included) at which the count factor
    /// reaches 1; it is 0 at one attempt and rises linearly.
    pub full_count: f64,
    /// Total to the young payee (this one included), as a share of the user's usual money
    /// out in 30 days, at which it starts to score.
    pub start_share: f64,
    /// The share at which the amount factor reaches 1 (log scale in between).
    pub full_share: f64,
}

impl Default for PayeeBuildupConfig {
    fn default() -> Self {
        PayeeBuildupConfig {
            enabled: true,
            weight: 0.5,
            window_days: 14.0,
            min_history_days: 7.0,
            full_count: 2.0,
            start_share: 0.05,
            full_share: 0.2,
        }
    }
}

impl PayeeBuildupConfig {
    /// Checks the rules of its table, `table` (`detectors.payee_buildup`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        positive(&k("start_share"), self.start_share)?;
        if !(self.full_share > self.start_share && self.full_share.is_finite()) {
            return Err(invalid(
                &k("full_share"),
                "must be a finite number above start_share",
            ));
        }
        if !(self.full_count.is_finite() && self.full_count > 1.0) {
            return Err(invalid(&k("full_count"), "must be a finite number above 1"));
        }
        if !(self.min_history_days >= 0.0 && self.min_history_days <= 365.0) {
            return Err(invalid(&k("min_history_days"), "must be within [0, 365]"));
        }
        // The window is stored in a profile as seconds in a u32 (a tick).
        if !(self.window_days > 0.0 && self.window_days <= 365.0) {
            return Err(invalid(&k("window_days"), "must be within (0, 365]"));
        }
        Ok(())
    }
}

/// See the module docs.
pub struct PayeeBuildup {
    weight: f64,
    window_s: u32,
    full_count: f64,
    ln_start: f64,
    ln_full: f64,
}

/// Days of usual outflow the young payee's total is measured against.
const MONTH_DAYS: f64 = 30.0;

impl PayeeBuildup {
    /// From config.
    pub fn new(c: &PayeeBuildupConfig) -> Self {
        PayeeBuildup {
            weight: c.weight,
            window_s: (c.window_days * 86_400.0) as u32,
            full_count: c.full_count,
            ln_start: c.start_share.ln(),
            ln_full: c.full_share.ln(),
        }
    }
}

impl Detector for PayeeBuildup {
    fn code(&self) -> Code {
        Code::PayeeBuildup
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if !new_payee_kind(ctx.ev.kind) {
            return;
        }
        let Some((h, _)) = ctx.facts.counterparty else {
            return;
        };
        let Some((n, sent, age_s)) = ctx.profile.young_payee(h, ctx.facts.t, self.window_s) else {
            return;
        };
        // This attempt counts as if it succeeds: the signal must come before the money moves.
        let attempts = n as f64 + 1.0;
        let total = sent + ctx.ev.amount.unwrap_or(0.0);
        let rate = out_rate(ctx);
        let Some(typical) = typical_amount(ctx) else {
            return;
        };
        let month = rate * MONTH_DAYS * 86_400.0 * typical;
        let share = total / month.max(1.0);
        let s =
            ramp(attempts, 1.0, self.full_count) * ramp(share.ln(), self.ln_start, self.ln_full);
        out.push(
            Code::PayeeBuildup,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "{:.0} payments totalling {} ({:.0}% of a usual month's spending) to a payee first paid {} ago",
                        a[0],
                        money(a[1]),
                        a[2],
                        super::duration(a[3])
                    )
                },
                [attempts, total, share * 100.0, age_s as f64],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> PayeeBuildup {
        PayeeBuildup::new(&PayeeBuildupConfig::default())
    }

    fn transfer(k: &mut Kit, day: i64, payee: &str, amount: f64) -> f64 {
        let extra = format!(
            r#""amount":{amount},"counterparty":"{payee}","device_id":"d1","geo":{{"lat":31.23,"lon":121.47}}"#
        );
        let t = T0 + day * DAY + 5 * 3_600_000;
        let s = score(&k.run(&det(), t, "transfer", &extra));
        k.learn(t, "transfer", &extra);
        s
    }

    #[test]
    fn repeated_large_sums_to_a_new_payee_score() {
        let mut k = Kit::new();
        k.history(); // typical amount about 100
        assert_eq!(
            transfer(&mut k, 30, "stranger", 300.0),
            0.0,
            "first payment"
        );
        // A usual month here is about 60 payments of 100: 600 is a tenth of it, 900 more.
        let second = transfer(&mut k, 31, "stranger", 300.0);
        let third = transfer(&mut k, 33, "stranger", 300.0);
        assert!(second > 0.3 && second < 0.7, "{second}");
        assert!(third > second + 0.15, "{third} vs {second}");
    }

    #[test]
    fn small_repeats_and_old_payees_stay_quiet() {
        let mut k = Kit::new();
        k.history();
        // A new contact paid small sums: the total stays near the usual amount.
        for day in 30..34 {
            assert_eq!(transfer(&mut k, day, "new-friend", 40.0), 0.0);
        }
        // A payee paid long ago (evicted from the exact set since) is not "first time".
        let mut k = Kit::new();
        transfer(&mut k, 0, "old-friend", 300.0);
        k.history();
        for (i, p) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            transfer(&mut k, 30 + i as i64, p, 50.0);
        }
        for day in 36..40 {
            assert_eq!(transfer(&mut k, day, "old-friend", 400.0), 0.0, "day {day}");
        }
    }

    #[test]
    fn the_watch_expires() {
        let mut k = Kit::new();
        k.history();
        transfer(&mut k, 30, "stranger", 300.0);
        assert_eq!(transfer(&mut k, 50, "stranger", 900.0), 0.0);
    }
}
