//! `NEW_RECHARGE_NUMBER`: a mobile recharge to a number this user never topped up.
//!
//! Low severity by design: the usual cause is a mistyped number (a "mis-recharge" the user
//! wants to hear about), not fraud. Its weight is kept small so it informs, not freezes.

use super::SimpleConfig;
use super::{Code, Detail, Detector, Input, Signals};
use crate::engine::event::EventType;

/// `[detectors.new_recharge_number]`: an on/off switch and a weight.
pub type NewRechargeNumberConfig = SimpleConfig;

/// See the module docs.
pub struct NewRechargeNumber {
    weight: f64,
}

impl NewRechargeNumber {
    /// From config.
    pub fn new(c: &NewRechargeNumberConfig) -> Self {
        NewRechargeNumber { weight: c.weight }
    }
}

impl Detector for NewRechargeNumber {
    fn code(&self) -> Code {
        Code::NewRechargeNumber
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if ctx.ev.kind != EventType::MobileRecharge || !ctx.facts.has_history {
            return;
        }
        if !matches!(ctx.facts.counterparty, Some((_, false))) {
            return;
        }
        out.push(
            Code::NewRechargeNumber,
            1.0,
            self.weight,
            Detail::new(
                |_, f| {
                    f.write_str(
                        "recharge to a number never topped up before (possible mis-recharge)",
                    )
                },
                [0.0; 4],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> NewRechargeNumber {
        NewRechargeNumber::new(&crate::engine::detect::DetectorsConfig::default().new_recharge_number)
    }

    #[test]
    fn fires_on_a_new_number() {
        let mut k = Kit::new();
        k.history();
        k.learn(
            T0 + 30 * DAY,
            "mobile_recharge",
            r#""amount":50,"counterparty":"+8613800000000""#,
        );
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "mobile_recharge",
            r#""amount":50,"counterparty":"+8613900000000""#,
        );
        assert_eq!(score(&s), 1.0);
    }

    #[test]
    fn quiet_for_the_usual_number() {
        let mut k = Kit::new();
        k.history();
        k.learn(
            T0 + 30 * DAY,
            "mobile_recharge",
            r#""amount":50,"counterparty":"+8613800000000""#,
        );
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "mobile_recharge",
            r#""amount":50,"counterparty":"+8613800000000""#,
        );
        assert!(s.is_empty());
    }
}
