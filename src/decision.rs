//! Signals → one score, an action, a severity and sorted reasons.
//!
//! # Formula
//! Each signal i has a detector score sᵢ ∈ [0,1] and a configured weight wᵢ ∈ [0,1]. The
//! combined score is a weighted noisy-OR:
//!
//! ```text
//! score = 1 − ∏ᵢ (1 − wᵢ·sᵢ)
//! ```
//!
//! read as "the probability that at least one independent piece of evidence is real". On
//! money out, an explicit account-takeover chain adds one more term, `ATO_CHAIN`, with weight
//! `decision.chain_bonus`, built from four stage strengths:
//!
//! 1. credential change within the window (`CREDENTIAL_CHANGE_THEN_SPEND`; a device or
//!    payment-method bind counts half, a password reset or MFA change fully), or an actor who
//!    cannot be the owner (`IMPOSSIBLE_TRAVEL`; `CONCURRENT_STRANGER`, a device never seen in a
//!    place never seen acting right after the owner's own device), or a device never seen in a
//!    place never seen (the smaller of `NEW_DEVICE` and `NEW_LOCATION`),
//! 2. the actor is somewhere new (`NEW_DEVICE`, `NEW_LOCATION`, or a reset or MFA change
//!    from a new device),
//! 3. a new payee (transfers and withdrawals count fully, merchant payments half),
//! 4. a large or draining outflow (`AMOUNT_OUTLIER`, `BALANCE_DRAIN`).
//!
//! The chain needs stage 1 and at least two of the other three; its score is the mean of the
//! four (a missing stage counts 0). Only a password reset or MFA change marks the actor as
//! "somewhere new" by itself: binding a new phone is what honest users do, so after a device
//! bind the new-device stage must come from the event's own signals. Reasons are sorted by contribution wᵢ·sᵢ. The score maps to an action by the
//! `review` / `step_up` / `freeze` thresholds and to a severity by the `severity_*` ones.

use serde::{Deserialize, Serialize};

use crate::detect::{Code, Detail, Signals};
use crate::validate::{invalid, nonneg, unit, Checked};

/// `[decision]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionConfig {
    /// Score at or above which the action is `review`.
    pub review: f64,
    /// Score at or above which the action is `step_up`.
    pub step_up: f64,
    /// Score at or above which the action is `freeze`.
    pub freeze: f64,
    /// Score at or above which severity is `medium` (below it, alerts are `low`).
    pub severity_medium: f64,
    /// Score at or above which severity is `high`.
    pub severity_high: f64,
    /// Score at or above which severity is `critical`.
    pub severity_critical: f64,
    /// Bonus for a full account-takeover chain (credential change → new device or location →
    /// new payee → large or draining outflow), scaled by the chain's strength.
    pub chain_bonus: f64,
    /// At most one `freeze_account` per user within this many hours.
    pub freeze_cooldown_hours: f64,
    /// Learn events scored `review` into the baseline. Off by default: an attacker's first,
    /// merely suspicious event would otherwise make their device and place "known" for the
    /// next one. `step_up` and above are never learned.
    pub learn_reviewed: bool,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            review: 0.45,
            step_up: 0.75,
            freeze: 0.88,
            severity_medium: 0.6,
            severity_high: 0.75,
            severity_critical: 0.88,
            chain_bonus: 0.7,
            freeze_cooldown_hours: 24.0,
            learn_reviewed: false,
        }
    }
}

impl DecisionConfig {
    /// Checks the rules of `[decision]`; the error names the key.
    pub fn validate(&self) -> Checked {
        for (key, v) in [
            ("decision.review", self.review),
            ("decision.step_up", self.step_up),
            ("decision.freeze", self.freeze),
            ("decision.severity_medium", self.severity_medium),
            ("decision.severity_high", self.severity_high),
            ("decision.severity_critical", self.severity_critical),
            ("decision.chain_bonus", self.chain_bonus),
        ] {
            unit(key, v)?;
        }
        if !(self.review > 0.0 && self.review <= self.step_up && self.step_up <= self.freeze) {
            return Err(invalid(
                "decision.step_up",
                "thresholds must satisfy 0 < review ≤ step_up ≤ freeze ≤ 1",
            ));
        }
        if !(self.severity_medium <= self.severity_high
            && self.severity_high <= self.severity_critical)
        {
            return Err(invalid(
                "decision.severity_high",
                "severity thresholds must satisfy medium ≤ high ≤ critical",
            ));
        }
        nonneg("decision.freeze_cooldown_hours", self.freeze_cooldown_hours)
    }
}

/// What to do about an event, in increasing order of force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Nothing.
    Allow,
    /// An analyst should look.
    Review,
    /// Ask the user to re-authenticate.
    StepUp,
    /// Freeze the account.
    Freeze,
}

impl Action {
    /// Every action, weakest first.
    pub const ALL: [Action; 4] = [
        Action::Allow,
        Action::Review,
        Action::StepUp,
        Action::Freeze,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Review => "review",
            Action::StepUp => "step_up",
            Action::Freeze => "freeze",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Informational.
    Low,
    /// Worth a look.
    Medium,
    /// Act soon.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

/// The verdict on one event.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// Combined score in [0, 1].
    pub score: f64,
    /// Action from the thresholds.
    pub action: Action,
    /// Severity from the thresholds.
    pub severity: Severity,
    /// Reasons, largest contribution first.
    pub signals: Signals,
}

impl Decision {
    /// An undecided decision holding `signals` (score 0, allow).
    pub fn from_signals(signals: Signals) -> Decision {
        Decision {
            score: 0.0,
            action: Action::Allow,
            severity: Severity::Low,
            signals,
        }
    }
}

/// Inputs to the takeover chain that are not signals.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainHints {
    /// The event is money out.
    pub money_out: bool,
    /// A password reset or MFA change inside the window came from a device new at the time.
    pub change_from_new_device: bool,
    /// The payee is new (any money-out type).
    pub new_payee: bool,
    /// The event is a merchant payment (a new merchant counts half).
    pub is_payment: bool,
    /// A password reset or MFA change happened inside the credential window.
    pub reset_or_mfa_change: bool,
}

/// Turns signals into decisions under a [`DecisionConfig`].
#[derive(Debug, Clone)]
pub struct Decider {
    cfg: DecisionConfig,
}

impl Decider {
    /// From config.
    pub fn new(cfg: &DecisionConfig) -> Decider {
        Decider { cfg: cfg.clone() }
    }

    /// Combines `signals` (see the module docs for the formula).
    pub fn decide(&self, signals: Signals, hints: ChainHints) -> Decision {
        let mut d = Decision::from_signals(signals);
        self.decide_in_place(&mut d, hints);
        d
    }

    /// Like [`Decider::decide`], on a decision whose `signals` the detectors filled in place.
    /// (The signal list is about a kilobyte; the hot path avoids moving it.)
    pub fn decide_in_place(&self, d: &mut Decision, hints: ChainHints) {
        if hints.money_out && self.cfg.chain_bonus > 0.0 {
            self.add_chain(&mut d.signals, hints);
        }
        let keep: f64 = d.signals.iter().map(|s| 1.0 - s.contribution()).product();
        d.score = (1.0 - keep).clamp(0.0, 1.0);
        d.action = self.action(d.score);
        d.severity = self.severity(d.score);
        d.signals.sort_by_contribution();
    }

    fn add_chain(&self, signals: &mut Signals, h: ChainHints) {
        let get = |c: Code| signals.get(c).map_or(0.0, |s| s.score);
        // A reset or MFA change from a new device is how takeovers start; binding a new phone
        // or card is also what honest users do, so it counts half as a chain stage.
        let change =
            get(Code::CredentialChangeThenSpend) * if h.reset_or_mfa_change { 1.0 } else { 0.5 };
        // An actor who cannot be the owner (impossible travel), or a device never seen in a
        // place never seen, opens the chain like a change.
        let change = change
            .max(get(Code::ImpossibleTravel))
            .max(get(Code::ConcurrentStranger))
            .max(get(Code::NewDevice).min(get(Code::NewLocation)));
        let outflow = get(Code::AmountOutlier).max(get(Code::BalanceDrain));
        // Impossible travel already counts in stage 1; stage 2 is the device and place.
        let mut somewhere_new = get(Code::NewDevice).max(get(Code::NewLocation));
        if h.change_from_new_device {
            somewhere_new = somewhere_new.max(1.0);
        }
        let payee = match (h.new_payee, h.is_payment) {
            (false, _) => 0.0,
            (true, true) => 0.5,
            (true, false) => 1.0,
        };
        let stages = [change, somewhere_new, payee, outflow];
        if change <= 0.0 || stages.iter().filter(|s| **s > 0.0).count() < 3 {
            return;
        }
        let strength = stages.iter().sum::<f64>() / 4.0;
        signals.push(
            Code::AtoChain,
            strength,
            self.cfg.chain_bonus,
            Detail::new(
                |a, f| {
                    f.write_str("takeover chain: credential change, impossible travel or unknown device in an unknown place")?;
                    if a[0] > 0.0 {
                        f.write_str(" → new device or location")?;
                    }
                    if a[1] > 0.0 {
                        f.write_str(" → new payee")?;
                    }
                    if a[2] > 0.0 {
                        f.write_str(" → large or draining outflow")?;
                    }
                    Ok(())
                },
                [somewhere_new, payee, outflow, 0.0],
            ),
        );
    }

    /// Action for a score.
    pub fn action(&self, score: f64) -> Action {
        if score >= self.cfg.freeze {
            Action::Freeze
        } else if score >= self.cfg.step_up {
            Action::StepUp
        } else if score >= self.cfg.review {
            Action::Review
        } else {
            Action::Allow
        }
    }

    /// Severity for a score.
    pub fn severity(&self, score: f64) -> Severity {
        if score >= self.cfg.severity_critical {
            Severity::Critical
        } else if score >= self.cfg.severity_high {
            Severity::High
        } else if score >= self.cfg.severity_medium {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// Freeze cool-down in seconds.
    pub fn freeze_cooldown_s(&self) -> f64 {
        self.cfg.freeze_cooldown_hours * 3600.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Detail {
        Detail::new(|_, f| f.write_str("x"), [0.0; 4])
    }

    #[test]
    fn noisy_or_formula() {
        let dec = Decider::new(&DecisionConfig::default());
        let mut s = Signals::default();
        s.push(Code::NewDevice, 1.0, 0.5, d());
        s.push(Code::NewLocation, 0.5, 0.4, d());
        let out = dec.decide(s, ChainHints::default());
        let expected = 1.0 - (1.0 - 0.5) * (1.0 - 0.2);
        assert!((out.score - expected).abs() < 1e-12);
        assert_eq!(out.signals.iter().next().unwrap().code, Code::NewDevice);
        assert_eq!(
            dec.decide(Signals::default(), ChainHints::default()).action,
            Action::Allow
        );
    }

    #[test]
    fn thresholds_map_to_actions_and_severities() {
        let dec = Decider::new(&DecisionConfig::default());
        let c = DecisionConfig::default();
        assert_eq!(dec.action(c.review - 1e-9), Action::Allow);
        assert_eq!(dec.action(c.review), Action::Review);
        assert_eq!(dec.action(c.step_up), Action::StepUp);
        assert_eq!(dec.action(c.freeze), Action::Freeze);
        assert_eq!(dec.severity(0.0), Severity::Low);
        assert_eq!(dec.severity(c.severity_medium), Severity::Medium);
        assert_eq!(dec.severity(c.severity_high), Severity::High);
        assert_eq!(dec.severity(1.0), Severity::Critical);
    }

    #[test]
    fn takeover_chain_adds_a_bonus_only_when_complete_enough() {
        let dec = Decider::new(&DecisionConfig::default());
        let mut s = Signals::default();
        s.push(Code::CredentialChangeThenSpend, 0.9, 0.6, d());
        s.push(Code::BalanceDrain, 0.8, 0.6, d());
        let hints = ChainHints {
            money_out: true,
            change_from_new_device: true,
            new_payee: true,
            is_payment: false,
            reset_or_mfa_change: true,
        };
        let with = dec.decide(s, hints);
        assert!(with.signals.get(Code::AtoChain).is_some());
        let without = dec.decide(
            s,
            ChainHints {
                change_from_new_device: false,
                new_payee: false,
                ..hints
            },
        );
        assert!(without.signals.get(Code::AtoChain).is_none());
        assert!(with.score > without.score);
        let chain = with.signals.get(Code::AtoChain).unwrap();
        assert!((chain.score - (0.9 + 1.0 + 1.0 + 0.8) / 4.0).abs() < 1e-12);
        assert!(chain.detail.to_string().contains("new payee"));
    }

    #[test]
    fn chain_needs_an_entry_and_two_more_stages() {
        let dec = Decider::new(&DecisionConfig::default());
        let reset = ChainHints {
            money_out: true,
            change_from_new_device: true,
            new_payee: true,
            is_payment: false,
            reset_or_mfa_change: true,
        };
        // Reset from a new device, new payee, no large outflow: 3 of 4 stages, a chain.
        let mut small = Signals::default();
        small.push(Code::CredentialChangeThenSpend, 0.9, 0.6, d());
        assert!(dec
            .decide(small, reset)
            .signals
            .get(Code::AtoChain)
            .is_some());
        // A device bind (not a reset) and an ordinary purchase at a new shop: no chain.
        let bind = ChainHints {
            change_from_new_device: false,
            reset_or_mfa_change: false,
            is_payment: true,
            ..reset
        };
        assert!(dec
            .decide(small, bind)
            .signals
            .get(Code::AtoChain)
            .is_none());
        // No credential change, but a never-seen device in a never-seen place paying a new
        // payee: the chain opens on the device and place.
        let mut hijack = Signals::default();
        hijack.push(Code::NewDevice, 0.8, 0.45, d());
        hijack.push(Code::NewLocation, 0.6, 0.35, d());
        let plain = ChainHints {
            change_from_new_device: false,
            reset_or_mfa_change: false,
            ..reset
        };
        let out = dec.decide(hijack, plain);
        let c = out.signals.get(Code::AtoChain).expect("chain");
        assert!((c.score - (0.6 + 0.8 + 1.0 + 0.0) / 4.0).abs() < 1e-12);
        // The same device and place with a known payee and no outflow: no chain.
        let known = ChainHints {
            new_payee: false,
            ..plain
        };
        assert!(dec
            .decide(hijack, known)
            .signals
            .get(Code::AtoChain)
            .is_none());
    }

    #[test]
    fn a_concurrent_stranger_opens_the_chain() {
        let dec = Decider::new(&DecisionConfig::default());
        let plain = ChainHints {
            money_out: true,
            change_from_new_device: false,
            new_payee: true,
            is_payment: false,
            reset_or_mfa_change: false,
        };
        // A new device and a new payee, but no change, travel or new place: no chain.
        let mut s = Signals::default();
        s.push(Code::NewDevice, 0.7, 0.45, d());
        assert!(dec.decide(s, plain).signals.get(Code::AtoChain).is_none());
        // The same device acting minutes after the owner's own: the chain opens on it.
        s.push(Code::ConcurrentStranger, 1.0, 0.3, d());
        let out = dec.decide(s, plain);
        let c = out.signals.get(Code::AtoChain).expect("chain");
        assert!((c.score - (1.0 + 0.7 + 1.0 + 0.0) / 4.0).abs() < 1e-12);
    }
}
