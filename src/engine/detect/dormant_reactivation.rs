//! `DORMANT_REACTIVATION`: a large money out after a long silence.
//!
//! Dormant accounts are taken over because nobody is watching them. The score grows with the
//! silence (half at `dormant_days`, full at three times it) and needs the amount to be well
//! above the user's typical one.

use super::{duration, money, Code, Detail, Detector, Input, Signals};
use crate::engine::validate::{nonneg, positive, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.dormant_reactivation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DormantReactivationConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Silence after which an account counts as dormant, days.
    pub dormant_days: f64,
    /// Money out below this multiple of the user's typical amount never scores.
    pub min_amount_ratio: f64,
}

impl Default for DormantReactivationConfig {
    fn default() -> Self {
        DormantReactivationConfig {
            enabled: true,
            weight: 0.5,
            dormant_days: 60.0,
            min_amount_ratio: 2.0,
        }
    }
}

impl DormantReactivationConfig {
    /// Checks the rules of its table, `table` (`detectors.dormant_reactivation`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        positive(&k("dormant_days"), self.dormant_days)?;
        nonneg(&k("min_amount_ratio"), self.min_amount_ratio)
    }
}

/// See the module docs.
pub struct DormantReactivation {
    weight: f64,
    dormant_s: f64,
    min_ratio: f64,
}

impl DormantReactivation {
    /// From config.
    pub fn new(c: &DormantReactivationConfig) -> Self {
        DormantReactivation {
            weight: c.weight,
            dormant_s: c.dormant_days * 86_400.0,
            min_ratio: c.min_amount_ratio,
        }
    }
}

impl Detector for DormantReactivation {
    fn code(&self) -> Code {
        Code::DormantReactivation
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        let Some(amount) = ctx.ev.amount else {
            return;
        };
        if !ctx.ev.kind.is_money_out() || !ctx.facts.has_history {
            return;
        }
        let silence = ctx.facts.t as f64 - ctx.profile.last_seen as f64;
        if silence < self.dormant_s {
            return;
        }
        // Without money out before the silence there is no habit to compare with.
        let Some(typical) = super::typical_amount(ctx) else {
            return;
        };
        let ratio = amount / typical;
        if ratio < self.min_ratio {
            return;
        }
        let s = (0.5 + 0.25 * (silence / self.dormant_s - 1.0)).min(1.0)
            * (ratio / (2.0 * self.min_ratio)).min(1.0);
        out.push(
            Code::DormantReactivation,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "first activity in {}; {} is {:.1}x the usual {}",
                        duration(a[0]),
                        money(a[1]),
                        a[1] / a[2],
                        money(a[2])
                    )
                },
                [silence, amount, typical, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> DormantReactivation {
        DormantReactivation::new(&DormantReactivationConfig::default())
    }

    #[test]
    fn fires_on_large_outflow_after_months_of_silence() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 200 * DAY,
            "withdrawal",
            r#""amount":2000,"counterparty":"card""#,
        );
        assert!(score(&s) > 0.8, "{s:?}");
    }

    #[test]
    fn quiet_for_small_or_recent_outflows() {
        let mut k = Kit::new();
        k.history();
        assert!(k
            .run(
                &det(),
                T0 + 200 * DAY,
                "payment",
                r#""amount":100,"counterparty":"shop-a""#
            )
            .is_empty());
        assert!(k
            .run(
                &det(),
                T0 + 40 * DAY,
                "withdrawal",
                r#""amount":2000,"counterparty":"card""#
            )
            .is_empty());
    }
}
