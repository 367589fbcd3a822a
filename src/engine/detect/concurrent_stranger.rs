//! `CONCURRENT_STRANGER`: a device never seen, in a place never seen, acts shortly after the
//! user's own device did.
//!
//! A "stranger" is a device the profile never saw on a network or in a geo cell it never saw
//! (see [`crate::engine::baseline::Facts::stranger`]). A stranger on its own is often the owner's new
//! phone; what the owner rarely does is use a known device and then, within the hour, a
//! never-seen one somewhere never seen: two actors at once. This holds where no distance can
//! be measured (users whose client never shares a position, or whose last position is hours
//! old), which `IMPOSSIBLE_TRAVEL` needs. The score is 1 up to `full_minutes` after the own
//! device's latest learned event and falls linearly to 0 at `zero_minutes`.
//!
//! The owner's latest activity is the time of the latest learned client event when it came
//! from a known device ([`crate::engine::baseline::Profile::own_device_seen_at`]); a stranger's events
//! that score `review` or more are not learned, so they do not move it.

use super::{duration, ramp, Code, Detail, Detector, Input, Signals};
use crate::engine::validate::{invalid, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.concurrent_stranger]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrentStrangerConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// A stranger acting at most this many minutes after the user's own device scores 1.
    pub full_minutes: f64,
    /// From `full_minutes` the score falls linearly to 0 at this many minutes.
    pub zero_minutes: f64,
}

impl Default for ConcurrentStrangerConfig {
    fn default() -> Self {
        ConcurrentStrangerConfig {
            enabled: true,
            weight: 0.3,
            full_minutes: 60.0,
            zero_minutes: 240.0,
        }
    }
}

impl ConcurrentStrangerConfig {
    /// Checks the rules of its table, `table` (`detectors.concurrent_stranger`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        if !(self.full_minutes >= 0.0 && self.zero_minutes > self.full_minutes) {
            return Err(invalid(
                &k("zero_minutes"),
                "must be above full_minutes, which must be >= 0",
            ));
        }
        Ok(())
    }
}

/// See the module docs.
pub struct ConcurrentStranger {
    weight: f64,
    full_s: f64,
    zero_s: f64,
}

impl ConcurrentStranger {
    /// From config.
    pub fn new(c: &ConcurrentStrangerConfig) -> Self {
        ConcurrentStranger {
            weight: c.weight,
            full_s: c.full_minutes * 60.0,
            zero_s: c.zero_minutes * 60.0,
        }
    }
}

impl Detector for ConcurrentStranger {
    fn code(&self) -> Code {
        Code::ConcurrentStranger
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if !ctx.facts.stranger() {
            return;
        }
        let Some(own_at) = ctx.profile.own_device_seen_at() else {
            return;
        };
        // A late-arriving event from before the owner's one says nothing about "after".
        let Some(gap) = ctx.facts.t.checked_sub(own_at) else {
            return;
        };
        let gap = gap as f64;
        let s = 1.0 - ramp(gap, self.full_s, self.zero_s);
        out.push(
            Code::ConcurrentStranger,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "a device never seen, in a place never seen, {} after the user's own device",
                        duration(a[0])
                    )
                },
                [gap, 0.0, 0.0, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> ConcurrentStranger {
        ConcurrentStranger::new(&ConcurrentStrangerConfig::default())
    }

    const STRANGER: &str = r#""device_id":"dx","ip":"102.89.34.9""#;

    #[test]
    fn fires_on_a_stranger_minutes_after_the_own_device() {
        let mut k = Kit::new();
        k.history(); // last: day 29, 11:00 UTC, device d1 in Shanghai
        let last = T0 + 29 * DAY + 11 * 3_600_000;
        let s = k.run(&det(), last + 20 * 60_000, "login", STRANGER);
        assert_eq!(score(&s), 1.0, "{s:?}");
        assert!(detail(&s).contains("20 min"));
        // Halfway through the fade (60 → 240 min): 0.5.
        let s = k.run(&det(), last + 150 * 60_000, "login", STRANGER);
        assert!((score(&s) - 0.5).abs() < 1e-9, "{s:?}");
        assert!(k.run(&det(), last + DAY, "login", STRANGER).is_empty());
    }

    #[test]
    fn quiet_for_a_new_phone_at_home_and_after_an_unknown_device() {
        let mut k = Kit::new();
        k.history();
        let last = T0 + 29 * DAY + 11 * 3_600_000;
        // A new phone on the home network is not a stranger.
        let home = r#""device_id":"d2","ip":"203.0.113.50","geo":{"lat":31.23,"lon":121.47}"#;
        assert!(k.run(&det(), last + 600_000, "login", home).is_empty());
        // The latest learned event came from an unknown device: the owner's time is unknown.
        k.learn(last + 600_000, "login", home);
        assert!(k.run(&det(), last + 900_000, "login", STRANGER).is_empty());
    }
}
