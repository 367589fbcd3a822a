//! `VELOCITY_BURST`: more money-out attempts in the last minute or ten minutes than the user's
//! own rate makes plausible.
//!
//! For each window the count (this event included) is compared with a Poisson whose mean is
//! the user's rate (shrunk toward the population rate) times the window times `burstiness`;
//! the smallest upper tail probability is mapped to a score. People shop in sessions, so a
//! daily rate spread evenly over the day underestimates short windows: `burstiness` is that
//! correction, and hour-long windows are left out because an honest shopping hour looks like
//! a burst at any daily rate.

use statrs::distribution::{DiscreteCDF, Poisson};

use super::{duration, out_rate, surprise, Code, Detail, Detector, Input, Signals};
use crate::engine::validate::{invalid, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.velocity_burst]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VelocityBurstConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Bursts smaller than this many money-out events (this one included) never score.
    pub min_count: u32,
    /// Multiplier on the expected count in a short window, for human sessions (≥ 1).
    pub burstiness: f64,
}

impl Default for VelocityBurstConfig {
    fn default() -> Self {
        VelocityBurstConfig {
            enabled: true,
            weight: 0.45,
            min_count: 5,
            burstiness: 4.0,
        }
    }
}

impl VelocityBurstConfig {
    /// Checks the rules of its table, `table` (`detectors.velocity_burst`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        let most = crate::engine::baseline::RING_DELTAS as u32 + 2;
        if self.min_count < 2 || self.min_count > most {
            return Err(invalid(
                &k("min_count"),
                format!("must be within 2..={most} (the money-out times a profile remembers, plus this one)"),
            ));
        }
        if !(self.burstiness >= 1.0 && self.burstiness.is_finite()) {
            return Err(invalid(&k("burstiness"), "must be a finite number ≥ 1"));
        }
        Ok(())
    }
}

/// Windows checked, seconds.
const WINDOWS: [u32; 2] = [60, 600];

/// See the module docs.
pub struct VelocityBurst {
    weight: f64,
    min_count: u32,
    burstiness: f64,
    p_start: f64,
    p_full: f64,
}

impl VelocityBurst {
    /// From config and the shared surprise mapping.
    pub fn new(c: &VelocityBurstConfig, p_start: f64, p_full: f64) -> Self {
        VelocityBurst {
            weight: c.weight,
            min_count: c.min_count,
            burstiness: c.burstiness,
            p_start,
            p_full,
        }
    }
}

impl Detector for VelocityBurst {
    fn code(&self) -> Code {
        Code::VelocityBurst
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if !ctx.ev.kind.is_money_out() {
            return;
        }
        let t = ctx.facts.t;
        // The ring only knows times up to its newest entry; a late-arriving older event cannot
        // be placed in it, and counting later attempts against it would invent a burst.
        if t < ctx.profile.ring_base {
            return;
        }
        // Cheap check first: the widest window bounds all the others.
        if ctx.profile.out_count_within(t, WINDOWS[1]) + 1 < self.min_count {
            return;
        }
        let rate = out_rate(ctx);
        let mut best: Option<(f64, u32, u32, f64)> = None;
        for win in WINDOWS {
            let c = ctx.profile.out_count_within(t, win) + 1;
            if c < self.min_count {
                continue;
            }
            let lambda = (rate * win as f64 * self.burstiness).max(1e-6);
            let Ok(pois) = Poisson::new(lambda) else {
                continue;
            };
            let p = pois.sf(c as u64 - 1);
            if best.is_none_or(|b| p < b.0) {
                best = Some((p, c, win, lambda));
            }
        }
        let Some((p, c, win, lambda)) = best else {
            return;
        };
        out.push(
            Code::VelocityBurst,
            surprise(p, self.p_start, self.p_full),
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "{:.0} money-out attempts within {}; {:.2} expected (p={:.1e})",
                        a[0],
                        duration(a[1]),
                        a[2],
                        a[3]
                    )
                },
                [c as f64, win as f64, lambda, p],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> VelocityBurst {
        let c = crate::engine::detect::DetectorsConfig::default();
        VelocityBurst::new(&c.velocity_burst, c.surprise_p_start, c.surprise_p_full)
    }

    #[test]
    fn fires_on_five_transfers_in_five_minutes() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 31 * DAY;
        for i in 0..4 {
            k.learn(
                t + i * 60_000,
                "transfer",
                r#""amount":100,"counterparty":"x""#,
            );
        }
        let s = k.run(
            &det(),
            t + 300_000,
            "transfer",
            r#""amount":100,"counterparty":"x""#,
        );
        assert!(score(&s) > 0.9, "{s:?}");
    }

    #[test]
    fn quiet_at_the_usual_pace() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "payment",
            r#""amount":100,"counterparty":"shop-a""#,
        );
        assert!(s.is_empty());
        // Two in ten minutes is below min_count.
        k.learn(
            T0 + 32 * DAY,
            "payment",
            r#""amount":100,"counterparty":"shop-a""#,
        );
        let s = k.run(
            &det(),
            T0 + 32 * DAY + 600_000,
            "payment",
            r#""amount":100,"counterparty":"shop-a""#,
        );
        assert!(s.is_empty());
    }
}
