//! `FAILED_ATTEMPTS_BURST`: many failed logins or failed payments in a short time.
//!
//! Counts are decayed with the short half-life, so "many" means "many recently". It fires on
//! the failures themselves and on the next event after them, because a success after a run of
//! failures (a guessed password, a card that finally went through) is the moment that matters.

use super::{ramp, Code, Detail, Detector, Input, Signals};
use crate::engine::event::{EventType, Status};
use crate::engine::validate::{count, invalid, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.failed_attempts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailedAttemptsConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Recent failures (decayed, this one included) at which it starts to score.
    pub start_count: f64,
    /// Recent failures at which it scores 1.
    pub full_count: f64,
}

impl Default for FailedAttemptsConfig {
    fn default() -> Self {
        FailedAttemptsConfig {
            enabled: true,
            weight: 0.5,
            start_count: 3.0,
            full_count: 10.0,
        }
    }
}

impl FailedAttemptsConfig {
    /// Checks the rules of its table, `table` (`detectors.failed_attempts`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        count(&k("start_count"), self.start_count)?;
        count(&k("full_count"), self.full_count)?;
        if self.full_count <= self.start_count {
            return Err(invalid(&k("full_count"), "must be above start_count"));
        }
        Ok(())
    }
}

/// See the module docs.
pub struct FailedAttempts {
    weight: f64,
    start: f64,
    full: f64,
}

impl FailedAttempts {
    /// From config.
    pub fn new(c: &FailedAttemptsConfig) -> Self {
        FailedAttempts {
            weight: c.weight,
            start: c.start_count,
            full: c.full_count,
        }
    }
}

impl Detector for FailedAttempts {
    fn code(&self) -> Code {
        Code::FailedAttemptsBurst
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        let this = (ctx.ev.kind == EventType::LoginFailed
            || (ctx.ev.kind.is_money_out() && ctx.ev.status == Status::Failed))
            as u8 as f64;
        let c = ctx.profile.recent_failures(ctx.facts) + this;
        if c < self.start {
            return;
        }
        out.push(
            Code::FailedAttemptsBurst,
            // Just at start_count the score is small but not zero.
            ramp(c, self.start - 1.0, self.full),
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "about {:.0} failed logins or payments in the last half hour",
                        a[0]
                    )
                },
                [c, 0.0, 0.0, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> FailedAttempts {
        FailedAttempts::new(&FailedAttemptsConfig::default())
    }

    #[test]
    fn fires_after_a_run_of_failed_logins() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 31 * DAY;
        for i in 0..8 {
            k.learn(t + i * 10_000, "login_failed", "");
        }
        let s = k.run(&det(), t + 90_000, "login", "");
        assert!(score(&s) > 0.7, "{s:?}");
    }

    #[test]
    fn quiet_after_one_typo_or_long_ago() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 31 * DAY;
        k.learn(t, "login_failed", "");
        assert!(k.run(&det(), t + 5_000, "login", "").is_empty());
        for i in 0..8 {
            k.learn(t + i * 1000, "login_failed", "");
        }
        assert!(
            k.run(&det(), t + DAY, "login", "").is_empty(),
            "decayed away"
        );
    }
}
