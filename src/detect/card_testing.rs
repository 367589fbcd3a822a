//! `CARD_TESTING`: many tiny payments to merchants the user has never paid, within minutes,
//! often with failures: a thief checking which stolen card or wallet works before a large
//! purchase.
//!
//! Tiny payments to new merchants are counted with the short half-life. The detector scores
//! each further tiny payment and also the first non-tiny money out that follows the run.
//! From a stranger (a device the user never used, in a place or network the user was never
//! seen in) fewer are needed (`stranger_start_count`, `stranger_full_count`): the owner's own
//! phone buying two bus tickets at new shops is ordinary, while an unknown device on an unknown
//! network whose first acts are micro-payments at shops the user never paid is the probe
//! itself.

use super::{money, ramp, Code, Detail, Detector, Input, Signals};
use crate::event::EventType;
use crate::validate::{count, invalid, positive, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.card_testing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardTestingConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// A payment at or below this amount is "tiny".
    pub tiny_amount: f64,
    /// Recent tiny payments to new merchants (decayed) at which it starts to score.
    pub start_count: f64,
    /// Count at which it scores 1.
    pub full_count: f64,
    /// `start_count` when the payment comes from a stranger: a device the user never used,
    /// in a place or network the user was never seen in.
    pub stranger_start_count: f64,
    /// `full_count` for a stranger.
    pub stranger_full_count: f64,
}

impl Default for CardTestingConfig {
    fn default() -> Self {
        CardTestingConfig {
            enabled: true,
            weight: 0.85,
            tiny_amount: 5.0,
            start_count: 2.5,
            full_count: 6.0,
            stranger_start_count: 1.5,
            stranger_full_count: 2.0,
        }
    }
}

impl CardTestingConfig {
    /// Checks the rules of its table, `table` (`detectors.card_testing`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        count(&k("start_count"), self.start_count)?;
        count(&k("full_count"), self.full_count)?;
        count(&k("stranger_start_count"), self.stranger_start_count)?;
        count(&k("stranger_full_count"), self.stranger_full_count)?;
        if self.full_count <= self.start_count {
            return Err(invalid(&k("full_count"), "must be above start_count"));
        }
        if self.stranger_full_count <= self.stranger_start_count {
            return Err(invalid(
                &k("stranger_full_count"),
                "must be above stranger_start_count",
            ));
        }
        positive(&k("tiny_amount"), self.tiny_amount)
    }
}

/// See the module docs.
pub struct CardTesting {
    weight: f64,
    tiny: f64,
    start: f64,
    full: f64,
    stranger_start: f64,
    stranger_full: f64,
}

impl CardTesting {
    /// From config.
    pub fn new(c: &CardTestingConfig) -> Self {
        CardTesting {
            weight: c.weight,
            tiny: c.tiny_amount,
            start: c.start_count,
            full: c.full_count,
            stranger_start: c.stranger_start_count,
            stranger_full: c.stranger_full_count,
        }
    }

    /// Whether an event is a tiny payment to a merchant the profile does not know: the thing
    /// this detector counts (the pipeline records it in the profile).
    pub fn is_tiny_new_merchant(
        tiny_amount: f64,
        kind: EventType,
        amount: Option<f64>,
        new_cp: bool,
    ) -> bool {
        kind == EventType::Payment && new_cp && amount.is_some_and(|a| a <= tiny_amount)
    }
}

impl Detector for CardTesting {
    fn code(&self) -> Code {
        Code::CardTesting
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if !ctx.ev.kind.is_money_out() {
            return;
        }
        let new_cp = matches!(ctx.facts.counterparty, Some((_, false)));
        let tiny_new = Self::is_tiny_new_merchant(self.tiny, ctx.ev.kind, ctx.ev.amount, new_cp);
        let recent = ctx.profile.recent_tiny_new(ctx.facts);
        let c = recent + tiny_new as u8 as f64;
        let (start, full) = if ctx.facts.stranger() {
            (self.stranger_start, self.stranger_full)
        } else {
            (self.start, self.full)
        };
        if c < start {
            return;
        }
        let amount = ctx.ev.amount.unwrap_or(0.0);
        out.push(
            Code::CardTesting,
            ramp(c, start - 1.0, full),
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "about {:.0} tiny payments to new merchants within minutes",
                        a[0]
                    )?;
                    if a[1] > 0.0 {
                        write!(f, ", now {}", money(a[1]))?;
                    }
                    Ok(())
                },
                [c, if tiny_new { 0.0 } else { amount }, 0.0, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::event::parse_event;

    fn det() -> CardTesting {
        CardTesting::new(&CardTestingConfig::default())
    }

    fn tiny(k: &mut Kit, t: i64, m: &str) {
        let s = k.json(
            t,
            "payment",
            &format!(r#""amount":1.0,"counterparty":"{m}""#),
        );
        let e = parse_event(s.as_bytes()).unwrap();
        let f = k.profile.facts(&k.params, &e);
        k.profile.record_activity(&k.params, &e, &f, true);
    }

    #[test]
    fn fires_on_a_run_of_tiny_new_merchant_payments_and_the_big_one_after() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 31 * DAY;
        for i in 0..5 {
            tiny(&mut k, t + i * 20_000, &format!("m{i}"));
        }
        let s = k.run(
            &det(),
            t + 110_000,
            "payment",
            r#""amount":0.5,"counterparty":"m9""#,
        );
        assert!(score(&s) > 0.7, "{s:?}");
        let s = k.run(
            &det(),
            t + 120_000,
            "payment",
            r#""amount":3000,"counterparty":"shop-z""#,
        );
        assert!(score(&s) > 0.6, "{s:?}");
    }

    #[test]
    fn quiet_for_one_small_purchase() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "payment",
            r#""amount":2,"counterparty":"kiosk""#,
        );
        assert!(s.is_empty());
    }

    /// Records a tiny payment to a new merchant as the pipeline would (not learned).
    fn record_tiny(k: &mut Kit, t: i64, extra: &str) {
        let s = k.json(t, "payment", extra);
        let e = parse_event(s.as_bytes()).unwrap();
        let f = k.profile.facts(&k.params, &e);
        k.profile.record_activity(&k.params, &e, &f, true);
    }

    #[test]
    fn a_stranger_needs_only_two_tiny_payments() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 30 * DAY;
        let bot = r#""device_id":"bot","ip":"185.220.101.4","geo":{"lat":50.11,"lon":8.68}"#;
        let first = format!(r#""amount":0.01,"counterparty":"s1",{bot}"#);
        assert_eq!(score(&k.run(&det(), t, "payment", &first)), 0.0);
        record_tiny(&mut k, t, &first);
        let second = format!(r#""amount":1.0,"counterparty":"s2",{bot}"#);
        assert!(score(&k.run(&det(), t + 30_000, "payment", &second)) > 0.9);
        // The owner's own phone at home, two tiny buys at new shops: still nothing.
        let mut k = Kit::new();
        k.history();
        let own = r#""device_id":"d1","ip":"203.0.113.7","geo":{"lat":31.23,"lon":121.47}"#;
        let first = format!(r#""amount":2.0,"counterparty":"bus",{own}"#);
        record_tiny(&mut k, t, &first);
        let second = format!(r#""amount":3.0,"counterparty":"kiosk",{own}"#);
        assert_eq!(score(&k.run(&det(), t + 30_000, "payment", &second)), 0.0);
    }
}
