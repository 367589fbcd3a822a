//! `NEW_DEVICE`: an event from a device this user has never used.
//!
//! The surprise is 1 − P(new device) for this user, where P is a beta-smoothed rate of past
//! new-device sightings per event; a user who often switches devices is less surprising. The
//! score is then scaled by confidence n/(n+k), so a user with two events is barely scored.

use super::NoveltyConfig;
use super::{Code, Detail, Detector, Input, Signals};
use crate::engine::baseline::{Novelty, SetKind};

/// `[detectors.new_device]`: an on/off switch and a weight.
pub type NewDeviceConfig = NoveltyConfig;

/// See the module docs.
pub struct NewDevice {
    weight: f64,
}

impl NewDevice {
    /// From config.
    pub fn new(c: &NewDeviceConfig) -> Self {
        NewDevice { weight: c.weight }
    }
}

impl Detector for NewDevice {
    fn code(&self) -> Code {
        Code::NewDevice
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if !ctx.facts.new_device() || !ctx.facts.has_history {
            return;
        }
        let known = ctx.profile.set_len(ctx.params, SetKind::Device);
        if known == 0 {
            // The user never sent a device id before: nothing to compare with.
            return;
        }
        let n = ctx.profile.all_n as f64 * ctx.facts.decay;
        let rate = (ctx.profile.novel_count(Novelty::Device) + 0.5) / (n + 1.0);
        let s = (1.0 - rate).max(0.0) * ctx.prior.own_weight(n);
        out.push(
            Code::NewDevice,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "device never seen before ({:.0} known; {:.0}% of past events came from a new device)",
                        a[0],
                        a[1] * 100.0
                    )
                },
                [known as f64, rate.min(1.0), 0.0, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> NewDevice {
        NewDevice::new(&crate::engine::detect::DetectorsConfig::default().new_device)
    }

    #[test]
    fn fires_on_unknown_device() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(&det(), T0 + 31 * DAY, "login", r#""device_id":"evil""#);
        assert!(score(&s) > 0.8, "{s:?}");
    }

    #[test]
    fn quiet_on_known_device_and_for_new_users() {
        let mut k = Kit::new();
        k.history();
        assert!(k
            .run(&det(), T0 + 31 * DAY, "login", r#""device_id":"d1""#)
            .is_empty());
        let mut k = Kit::new();
        k.learn(T0, "login", r#""device_id":"d1""#);
        k.learn(T0 + 1000, "login", r#""device_id":"d1""#);
        let s = k.run(&det(), T0 + DAY, "login", r#""device_id":"d2""#);
        assert!(score(&s) < 0.25, "two events give little confidence: {s:?}");
    }
}
