//! `CREDENTIAL_CHANGE_THEN_SPEND`: money out within a window after a password reset, MFA
//! change, device bind or payment-method bind.
//!
//! This is the second step of most takeovers. The score is higher when the change came from a
//! device the user had never used, fades linearly to half over the window, and is scaled by
//! what the spend puts at stake (`spend_risk`: a new payee, a large amount, a draining share):
//! an owner who resets a password or binds a new phone and then buys lunch at the usual place
//! keeps 35% of it.

use super::{duration, spend_risk, Code, Detail, Detector, Input, Signals};
use crate::engine::validate::{positive, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.credential_change]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialChangeConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// How long after a change money out is suspicious, hours.
    pub window_hours: f64,
    /// Score when the change came from a known device.
    pub known_device_score: f64,
    /// Score when the change came from a device never seen before.
    pub new_device_score: f64,
}

impl Default for CredentialChangeConfig {
    fn default() -> Self {
        CredentialChangeConfig {
            enabled: true,
            weight: 0.6,
            window_hours: 48.0,
            known_device_score: 0.35,
            new_device_score: 0.9,
        }
    }
}

impl CredentialChangeConfig {
    /// Checks the rules of its table, `table` (`detectors.credential_change`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        unit(&k("known_device_score"), self.known_device_score)?;
        unit(&k("new_device_score"), self.new_device_score)?;
        positive(&k("window_hours"), self.window_hours)
    }
}

/// See the module docs.
pub struct CredentialChange {
    weight: f64,
    window_s: f64,
    known: f64,
    new: f64,
}

impl CredentialChange {
    /// From config.
    pub fn new(c: &CredentialChangeConfig) -> Self {
        CredentialChange {
            weight: c.weight,
            window_s: c.window_hours * 3600.0,
            known: c.known_device_score,
            new: c.new_device_score,
        }
    }
}

const NAMES: [&str; 4] = [
    "password reset",
    "MFA change",
    "device bind",
    "payment-method bind",
];

impl Detector for CredentialChange {
    fn code(&self) -> Code {
        Code::CredentialChangeThenSpend
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if !ctx.ev.kind.is_money_out() {
            return;
        }
        let t = ctx.facts.t as f64;
        let mut best: Option<(f64, usize, f64, bool)> = None;
        for (slot, at) in ctx.profile.cred.iter().enumerate() {
            if *at == 0 {
                continue;
            }
            let age = t - *at as f64;
            if !(0.0..=self.window_s).contains(&age) {
                continue;
            }
            let from_new = ctx.profile.flags & (1 << slot) != 0;
            let base = if from_new { self.new } else { self.known };
            let s = base * (1.0 - 0.5 * age / self.window_s);
            if best.is_none_or(|b| s > b.0) {
                best = Some((s, slot, age, from_new));
            }
        }
        let Some((s, slot, age, from_new)) = best else {
            return;
        };
        let s = s * (0.35 + 0.65 * spend_risk(ctx));
        out.push(
            Code::CredentialChangeThenSpend,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "money out {} after a {}{}",
                        duration(a[1]),
                        NAMES[a[0] as usize % 4],
                        if a[2] > 0.0 { " from a new device" } else { "" }
                    )
                },
                [slot as f64, age, from_new as u8 as f64, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> CredentialChange {
        CredentialChange::new(&CredentialChangeConfig::default())
    }

    #[test]
    fn fires_after_reset_from_new_device_stronger_than_own_device() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 31 * DAY;
        k.learn(t, "password_reset", r#""device_id":"evil""#);
        let s = k.run(
            &det(),
            t + 600_000,
            "transfer",
            r#""amount":100,"counterparty":"x","device_id":"evil""#,
        );
        assert!(score(&s) > 0.8, "{s:?}");
        assert!(detail(&s).contains("password reset from a new device"));

        let mut k2 = Kit::new();
        k2.history();
        k2.learn(t, "password_reset", r#""device_id":"d1""#);
        let s2 = k2.run(
            &det(),
            t + 600_000,
            "transfer",
            r#""amount":100,"counterparty":"x","device_id":"d1""#,
        );
        assert!(score(&s2) > 0.0 && score(&s2) < score(&s) / 2.0, "{s2:?}");
    }

    #[test]
    fn quiet_without_a_recent_change() {
        let mut k = Kit::new();
        k.history();
        k.learn(T0 + 20 * DAY, "password_reset", r#""device_id":"d1""#);
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "transfer",
            r#""amount":100,"counterparty":"x""#,
        );
        assert!(s.is_empty());
        // Not money out: nothing to say.
        k.learn(T0 + 31 * DAY, "mfa_change", "");
        assert!(k.run(&det(), T0 + 31 * DAY + 1000, "login", "").is_empty());
    }
}
