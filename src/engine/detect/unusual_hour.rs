//! `UNUSUAL_HOUR`: activity at a local hour when this user is rarely active.
//!
//! The user's decayed 24-bin histogram is shrunk toward the population's hour profile and
//! smoothed over the neighbouring hours (so 22:00 habits cover 23:00); a low probability maps
//! to a score on a log scale between `p_start` and `p_full`.

use super::{surprise, Code, Detail, Detector, Input, Signals};
use crate::engine::validate::{invalid, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.unusual_hour]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnusualHourConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Probability of the hour (±1 h smoothing) under which it starts to score.
    pub p_start: f64,
    /// Probability at which it scores 1.
    pub p_full: f64,
}

impl Default for UnusualHourConfig {
    fn default() -> Self {
        UnusualHourConfig {
            enabled: true,
            weight: 0.3,
            p_start: 0.03,
            p_full: 0.002,
        }
    }
}

impl UnusualHourConfig {
    /// Checks the rules of its table, `table` (`detectors.unusual_hour`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        unit(&k("p_start"), self.p_start)?;
        unit(&k("p_full"), self.p_full)?;
        if self.p_full >= self.p_start {
            return Err(invalid(&k("p_full"), "must be below p_start"));
        }
        Ok(())
    }
}

/// See the module docs.
pub struct UnusualHour {
    weight: f64,
    p_start: f64,
    p_full: f64,
}

impl UnusualHour {
    /// From config.
    pub fn new(c: &UnusualHourConfig) -> Self {
        UnusualHour {
            weight: c.weight,
            p_start: c.p_start,
            p_full: c.p_full,
        }
    }
}

impl Detector for UnusualHour {
    fn code(&self) -> Code {
        Code::UnusualHour
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        let h = ctx.facts.hour;
        let n = ctx.profile.all_n as f64 * ctx.facts.decay;
        let hours = [(h + 23) % 24, h, (h + 1) % 24];
        let own = ctx.profile.hour_shares(&hours);
        let prob = |i: usize| {
            ctx.prior
                .shrink_hour(ctx.population, n, hours[i], own.map(|s| s[i]))
        };
        let p = (prob(0) + 2.0 * prob(1) + prob(2)) / 4.0;
        let s = surprise(p, self.p_start, self.p_full);
        if s <= 0.0 {
            return;
        }
        out.push(
            Code::UnusualHour,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "{:02}:00 local; {:.1}% of this user's activity falls near this hour",
                        a[0],
                        a[1] * 100.0
                    )
                },
                [h as f64, p, 0.0, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> UnusualHour {
        UnusualHour::new(&UnusualHourConfig::default())
    }

    #[test]
    fn fires_at_4am_for_a_daytime_user() {
        let mut k = Kit::new();
        k.history();
        // 20:00 UTC = 04:00 at +08:00.
        let s = k.run(&det(), T0 + 30 * DAY + 20 * 3_600_000, "login", "");
        assert!(score(&s) > 0.5, "{s:?}");
    }

    #[test]
    fn quiet_at_the_usual_hour() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(&det(), T0 + 30 * DAY + 2 * 3_600_000, "login", "");
        assert!(s.is_empty(), "{s:?}");
    }
}
