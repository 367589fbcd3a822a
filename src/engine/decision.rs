//! Signals → one score, an action, a severity and sorted reasons.
//!
//! # Formula
//! Each signal i has a detector score sᵢ ∈ \[0, 1\] and a configured weight wᵢ ∈ \[0, 1\]. The
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

use crate::engine::baseline::rates::SignalRates;
use crate::engine::detect::{Code, Detail, Signals};
use crate::engine::event::EventType;
use crate::engine::validate::{invalid, nonneg, positive, unit, Checked};

/// How signals become a score and an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// One weighted noisy-OR over every signal plus the takeover-chain bonus; the score's
    /// thresholds give the action.
    NoisyOr,
    /// Two questions: how sure is it that the actor is not the owner, and what is at stake.
    /// Correlated signals count once per family; a matrix ([`TwoAxisConfig`]) gives the action.
    TwoAxis,
}

pub use crate::engine::detect::{Axis, Family};

const FAMILIES: usize = Family::COUNT;

/// The question each family answers, in [`Family`] order.
const FAMILY_AXIS: [Axis; FAMILIES] = {
    let mut a = [Axis::Identity; FAMILIES];
    let mut i = 0;
    while i < FAMILIES {
        a[i] = Family::ALL[i].axis();
        i += 1;
    }
    a
};

/// The question and family of a reason code.
pub fn family(code: Code) -> (Axis, Family) {
    (code.axis(), code.family())
}

/// `[decision.two_axis]`: the action matrix of [`Combine::TwoAxis`]. Both axes are in [0, 1]:
/// within an axis, each family contributes its strongest `weight × score`, and families
/// combine by noisy-OR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwoAxisConfig {
    /// Identity evidence at which an event is reviewed.
    pub identity_review: f64,
    /// Identity evidence that, with stake at `stake_review`, asks for a step-up.
    pub identity_step_up: f64,
    /// Identity evidence strong enough to step up on its own, and to freeze with stake at
    /// `stake_review`.
    pub identity_strong: f64,
    /// Stake at which an event is reviewed.
    pub stake_review: f64,
    /// Stake that asks for a step-up from any context: a high-value event gets a two-factor
    /// check, as wallets do.
    pub stake_step_up: f64,
    /// Stake so extreme that waiting for a two-factor check is itself the risk: it freezes,
    /// unless the context is the owner's (see `owner_fields`).
    pub stake_extreme: f64,
    /// How many of device, network and place must be present and familiar for the context to
    /// count as the owner's: extreme stake then steps up instead of freezing.
    pub owner_fields: u8,
}

impl Default for TwoAxisConfig {
    fn default() -> Self {
        TwoAxisConfig {
            identity_review: 0.3,
            identity_step_up: 0.45,
            identity_strong: 0.7,
            stake_review: 0.35,
            stake_step_up: 0.6,
            stake_extreme: 0.85,
            owner_fields: 2,
        }
    }
}

impl TwoAxisConfig {
    /// Checks the rules of `[decision.two_axis]`; the error names the key.
    pub fn validate(&self) -> Checked {
        let t = "decision.two_axis";
        for (key, v) in [
            ("identity_review", self.identity_review),
            ("identity_step_up", self.identity_step_up),
            ("identity_strong", self.identity_strong),
            ("stake_review", self.stake_review),
            ("stake_step_up", self.stake_step_up),
            ("stake_extreme", self.stake_extreme),
        ] {
            unit(&format!("{t}.{key}"), v)?;
        }
        if !(self.identity_review <= self.identity_step_up
            && self.identity_step_up <= self.identity_strong)
        {
            return Err(invalid(
                &format!("{t}.identity_step_up"),
                "must satisfy identity_review ≤ identity_step_up ≤ identity_strong",
            ));
        }
        if !(self.stake_review <= self.stake_step_up && self.stake_step_up <= self.stake_extreme) {
            return Err(invalid(
                &format!("{t}.stake_step_up"),
                "must satisfy stake_review ≤ stake_step_up ≤ stake_extreme",
            ));
        }
        if self.owner_fields > 3 {
            return Err(invalid(&format!("{t}.owner_fields"), "must be 0 to 3"));
        }
        Ok(())
    }
}

/// `[decision.learned]`: each signal's weight corrected by how often its code fires in this
/// deployment (see [`Decider::weigh`]).
///
/// # Formula
/// A signal of weight w and score s contributes `-ln(1 − w·s)` nats to the noisy-OR (the
/// score is `1 − e^(−Σ nats)`). Learned weighing multiplies those nats by
///
/// ```text
/// m = clamp( ln(1/r) / ln(1/r₀), 0, max_factor ),   r = (n·r̂ + k·r₀) / (n + k)
/// ```
///
/// where r̂ is the share of this partition's events of the same class on which the code fired
/// ([`crate::engine::baseline::rates`]), n the effective observations behind it, r₀ the code's
/// `reference_rates` entry for that class and k = `prior_events`.
///
/// Why: −ln r is the information a signal carries, measured on the data it runs on. The
/// configured weights were set on worlds where each code fired at its reference rate (the
/// defaults are the rates measured on `simulate --seed 11`, the world the weights were tuned
/// on), so a weight is taken as right at that rate: a code that fires far more often here (a
/// new merchant on a card stream: 90% of payments) weighs little, one as rare as there keeps
/// its weight, and one rarer gains up to `max_factor`. The configured weights are a prior
/// worth k events that the data overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnedConfig {
    /// Weigh signals by their learned rates (off: the configured weights as they are).
    pub enabled: bool,
    /// How many events the configured weights are worth against the learned rates.
    pub prior_events: f64,
    /// The most a signal's nats are multiplied (1: data only ever lowers a weight).
    pub max_factor: f64,
    /// Per reason code, the share of events it fires on where its weight is right, per class
    /// of event: `[merchant payment, other money out, access and credential events, other]`.
    /// A code without an entry is not reweighed.
    pub reference_rates: std::collections::BTreeMap<String, [f64; 4]>,
    /// Nats added to the combined evidence per nat of the event's surprise: the sum over
    /// families of the strongest signal's −ln(share of this class's events whose signal was at
    /// least as strong), see [`Decider::surprise`]. 0 = off.
    pub surprise_weight: f64,
}

/// The default reference rates: each code's firing rate per class on `simulate --users 20000
/// --days 30 --seed 11` (the tuning world), floored at 1e-4.
const REFERENCE_RATES: [(&str, [f64; 4]); 15] = [
    ("AMOUNT_OUTLIER", [8.69e-3, 3.92e-2, 1e-4, 1e-4]),
    ("BALANCE_DRAIN", [2.32e-2, 6.80e-2, 1e-4, 1e-4]),
    ("CARD_TESTING", [6.80e-4, 1e-4, 1e-4, 1e-4]),
    ("CONCURRENT_STRANGER", [2.30e-4, 9.20e-4, 3.50e-4, 1e-4]),
    (
        "CREDENTIAL_CHANGE_THEN_SPEND",
        [1.24e-2, 1.31e-2, 1e-4, 1e-4],
    ),
    ("DORMANT_REACTIVATION", [1e-4, 1e-4, 1e-4, 1e-4]),
    ("FAILED_ATTEMPTS_BURST", [3.20e-4, 1e-4, 1e-4, 1.30e-4]),
    ("IMPOSSIBLE_TRAVEL", [1e-4, 7.10e-4, 1e-4, 1e-4]),
    ("NEW_COUNTERPARTY", [6.19e-1, 4.24e-1, 1e-4, 1e-4]),
    ("NEW_DEVICE", [4.12e-3, 6.49e-3, 1.14e-2, 8.90e-4]),
    ("NEW_LOCATION", [1.74e-2, 2.27e-2, 4.98e-2, 6.96e-3]),
    ("NEW_RECHARGE_NUMBER", [1e-4, 1.15e-1, 1e-4, 1e-4]),
    ("PAYEE_BUILDUP", [1e-4, 5.07e-2, 1e-4, 1e-4]),
    ("UNUSUAL_HOUR", [1.06e-1, 1.16e-1, 1.81e-1, 1.67e-1]),
    ("VELOCITY_BURST", [7.70e-4, 4.60e-4, 1e-4, 1e-4]),
];

impl Default for LearnedConfig {
    fn default() -> Self {
        LearnedConfig {
            enabled: true,
            prior_events: 2000.0,
            max_factor: 1.0,
            surprise_weight: 0.05,
            reference_rates: REFERENCE_RATES
                .iter()
                .map(|(c, r)| (c.to_string(), *r))
                .collect(),
        }
    }
}

impl LearnedConfig {
    /// Checks the rules of `[decision.learned]`; the error names the key.
    pub fn validate(&self) -> Checked {
        let t = "decision.learned";
        nonneg(&format!("{t}.prior_events"), self.prior_events)?;
        nonneg(&format!("{t}.max_factor"), self.max_factor)?;
        nonneg(&format!("{t}.surprise_weight"), self.surprise_weight)?;
        for (code, rates) in &self.reference_rates {
            let key = format!("{t}.reference_rates.{code}");
            if Code::parse(code).is_none() {
                return Err(invalid(&key, "is not a reason code"));
            }
            if rates.iter().any(|r| !(*r > 0.0 && *r < 1.0)) {
                return Err(invalid(&key, "rates must be above 0 and below 1"));
            }
        }
        Ok(())
    }

    /// The reference rates by code (`None`: not reweighed).
    fn by_code(&self) -> [Option<[f64; 4]>; Code::ALL.len()] {
        let mut out = [None; Code::ALL.len()];
        for (code, r) in &self.reference_rates {
            if let Some(c) = Code::parse(code) {
                out[c as usize] = Some(*r);
            }
        }
        out
    }

    /// The multiplier of a signal's nats for a learned firing share `rate` over `n`
    /// effective observations against the reference `r0` (see the formula above).
    pub fn factor(&self, rate: f64, n: f64, r0: f64) -> f64 {
        let k = self.prior_events;
        let r = if n + k > 0.0 {
            (n * rate + k * r0) / (n + k)
        } else {
            r0
        };
        let r = r.clamp(1e-12, 1.0);
        ((1.0 / r).ln() / (1.0 / r0).ln()).clamp(0.0, self.max_factor)
    }
}

/// `[decision.budget]`: the alert budget. Each partition learns the distribution of its
/// combined scores (decayed, in the changelog); the review threshold rises above
/// `decision.review` to the score above which at most `review_share` of the events lie,
/// never above `max_review`. Only `review` follows it: a `step_up` or a `freeze` needs its
/// own evidence, never a quantile. Scores below the budget's threshold are scaled by
/// `review / threshold`, so the order of all scores, and every ranking figure, is unchanged,
/// and `score ≥ decision.review` still means an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Follow the score distribution (off: `decision.review` as it is).
    pub enabled: bool,
    /// The most of a partition's events that may get `review` when the configured threshold
    /// would give more.
    pub review_share: f64,
    /// The highest the review threshold may rise (and never above `decision.step_up`; at or
    /// below `decision.review` the budget never applies).
    pub max_review: f64,
    /// Effective events a partition learns before the budget applies.
    pub min_events: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            enabled: true,
            review_share: 0.001,
            max_review: 0.7,
            min_events: 5000.0,
        }
    }
}

/// `[decision.habit_stake]`: money out far above the user's own history is at least a
/// `step_up`, from any context (the wallets' "high-value transactions need a two-factor
/// check"). Far above means all of: a history of at least `min_history` money-out events in
/// the currency, at least `ratio` times the user's typical amount, and at least `z` standard
/// deviations above the user's mean log-amount (above the user's own high quantile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HabitStakeConfig {
    /// Apply the rule.
    pub enabled: bool,
    /// Money-out events (decayed) the user needs in the currency before the rule applies.
    pub min_history: f64,
    /// The least multiple of the user's typical amount.
    pub ratio: f64,
    /// The least distance above the user's mean log-amount, in standard deviations.
    pub z: f64,
    /// Floor on the user's standard deviation of ln(amount), so a user who always pays the
    /// same amount is not stepped up for a small change.
    pub min_sd: f64,
    /// Evidence that the actor is not the owner (the noisy-OR of the identity signals) at or
    /// above which the same stake freezes, when nothing about the context (device, network,
    /// place) is the owner's. 1 = never.
    pub stranger_freeze: f64,
}

impl Default for HabitStakeConfig {
    fn default() -> Self {
        HabitStakeConfig {
            enabled: true,
            min_history: 20.0,
            ratio: 5.0,
            z: 5.0,
            min_sd: 0.35,
            stranger_freeze: 0.6,
        }
    }
}

impl HabitStakeConfig {
    /// Whether `h` is money out far above the user's own history.
    pub fn far_above(&self, h: Option<Habit>) -> bool {
        let Some(h) = h else { return false };
        if !self.enabled || h.n < self.min_history || h.ratio < self.ratio {
            return false;
        }
        h.z_with(self.min_sd) >= self.z
    }

    /// Checks the rules of `[decision.habit_stake]`; the error names the key.
    pub fn validate(&self) -> Checked {
        nonneg("decision.habit_stake.min_history", self.min_history)?;
        nonneg("decision.habit_stake.ratio", self.ratio)?;
        nonneg("decision.habit_stake.z", self.z)?;
        unit("decision.habit_stake.stranger_freeze", self.stranger_freeze)?;
        positive("decision.habit_stake.min_sd", self.min_sd)
    }
}

/// The event's amount against the user's own money-out history in its currency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Habit {
    /// Money-out events learned (decayed).
    pub n: f64,
    /// The amount over the user's typical amount (`exp` of the mean log-amount).
    pub ratio: f64,
    /// The log-amount minus the user's mean log-amount.
    pub dx: f64,
    /// The user's variance of log-amount.
    pub var: f64,
}

impl Habit {
    /// Standard deviations above the user's mean, with the deviation floored at `min_sd`.
    pub fn z_with(&self, min_sd: f64) -> f64 {
        self.dx / self.var.sqrt().max(min_sd)
    }
}

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
    /// How signals combine: `noisy_or` or `two_axis`.
    pub combine: Combine,
    /// In `noisy_or`, count each stake family (amount: `AMOUNT_OUTLIER`, `BALANCE_DRAIN`;
    /// payee: `NEW_COUNTERPARTY`, `PAYEE_BUILDUP`, `NEW_RECHARGE_NUMBER`; velocity) once, by
    /// its strongest signal, instead of as independent evidence.
    pub stake_families_once: bool,
    /// The action matrix of `two_axis`.
    pub two_axis: TwoAxisConfig,
    /// Signal weights corrected by their learned rates.
    pub learned: LearnedConfig,
    /// The alert budget: a review threshold that follows the score distribution.
    pub budget: BudgetConfig,
    /// Stake alone, in `noisy_or`: money out to a never-seen payee (not a merchant) whose
    /// `AMOUNT_OUTLIER` or `BALANCE_DRAIN` score reaches this is at least a `step_up`, from any
    /// context: a high-value transfer gets a two-factor check, as wallets do, even where no
    /// device, network or place evidence exists. 0 = off.
    pub stake_step_up: f64,
    /// Extreme stake, in `noisy_or`: money out to a never-seen payee (not a merchant) with
    /// `BALANCE_DRAIN` at or above this (nearly all of the balance, far beyond the user's
    /// typical amount) and `AMOUNT_OUTLIER` at or above `stake_freeze_amount` freezes when
    /// nothing about the context is the owner's (no device, network or place the profile
    /// knows): waiting for a two-factor check is then itself the risk. From a familiar context
    /// it is a `step_up`. 0 = off.
    pub stake_freeze: f64,
    /// The `AMOUNT_OUTLIER` score `stake_freeze` also needs.
    pub stake_freeze_amount: f64,
    /// Money out far above the user's own history steps up.
    pub habit_stake: HabitStakeConfig,
    /// In `noisy_or` with `stake_families_once`: each stake family's contribution is scaled by
    /// this when there is no evidence about the actor (identity signals combined below
    /// `stake_alone_below`). Why: an unusual amount, a new payee or a quick series from an
    /// actor nothing marks as a stranger is mostly the owner's own novelty, and alone it
    /// flooded reviews. 1 = off.
    pub stake_alone_factor: f64,
    /// Evidence about the actor (noisy-OR of the identity signals, an odd hour included) below
    /// which stake counts as alone.
    pub stake_alone_below: f64,
    /// In `noisy_or`: a freeze from the owner's own context becomes a `step_up`. The context
    /// is the owner's when at least two of device, network and place are known to the
    /// profile, no password reset or MFA change happened inside the credential window (a
    /// device or card bind may have), and nothing says two actors or a guesser
    /// (`IMPOSSIBLE_TRAVEL`, `CONCURRENT_STRANGER`, `FAILED_ATTEMPTS_BURST`). Why: a new phone
    /// bound at home and a big transfer from it is what owners do; a two-factor check settles
    /// it, and a failed one freezes (`[feedback]`).
    pub owner_context_step_up: bool,
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
            combine: Combine::NoisyOr,
            stake_families_once: true,
            two_axis: TwoAxisConfig::default(),
            learned: LearnedConfig::default(),
            budget: BudgetConfig::default(),
            stake_step_up: 0.8,
            stake_freeze: 0.0,
            stake_freeze_amount: 0.5,
            habit_stake: HabitStakeConfig::default(),
            stake_alone_factor: 1.0,
            stake_alone_below: 0.1,
            owner_context_step_up: true,
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
            ("decision.stake_step_up", self.stake_step_up),
            ("decision.stake_freeze", self.stake_freeze),
            ("decision.stake_freeze_amount", self.stake_freeze_amount),
            ("decision.stake_alone_factor", self.stake_alone_factor),
            ("decision.stake_alone_below", self.stake_alone_below),
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
        nonneg("decision.freeze_cooldown_hours", self.freeze_cooldown_hours)?;
        self.learned.validate()?;
        self.habit_stake.validate()?;
        let b = &self.budget;
        unit("decision.budget.review_share", b.review_share)?;
        if b.review_share <= 0.0 {
            return Err(invalid("decision.budget.review_share", "must be above 0"));
        }
        unit("decision.budget.max_review", b.max_review)?;
        nonneg("decision.budget.min_events", b.min_events)?;
        self.two_axis.validate()
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
    /// The combined score before the alert budget rescaled it ([`BudgetConfig`]): what the
    /// partition learns the score distribution from.
    pub raw_score: f64,
    /// The action under the configured weights alone ([`LearnedConfig`] off): what decides
    /// whether the event may be learned into the baseline. Why not `action`: the learned
    /// rates quiet alerts, and an event they quiet must not teach the profile an attacker's
    /// device or payee that the configured weights would have kept out.
    pub configured: Action,
}

impl Decision {
    /// An undecided decision holding `signals` (score 0, allow).
    pub fn from_signals(signals: Signals) -> Decision {
        Decision {
            score: 0.0,
            action: Action::Allow,
            severity: Severity::Low,
            signals,
            raw_score: 0.0,
            configured: Action::Allow,
        }
    }
}

/// What a decision is made of before thresholds apply (see [`Decider::evidence`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// The combined score in [0, 1].
    pub score: f64,
    /// The least action stake alone calls for.
    pub floor: Action,
    /// A freeze would be capped at step-up: the event carries the owner's own context.
    pub owner_context: bool,
}

impl Evidence {
    /// The action under the thresholds of `cfg` (noisy-OR combination).
    pub fn action(&self, cfg: &DecisionConfig) -> Action {
        let a = by_score(cfg, self.score).max(self.floor);
        if a == Action::Freeze && self.owner_context {
            Action::StepUp
        } else {
            a
        }
    }
}

/// The action of a score alone under the thresholds of `cfg`.
fn by_score(cfg: &DecisionConfig, score: f64) -> Action {
    if score >= cfg.freeze {
        Action::Freeze
    } else if score >= cfg.step_up {
        Action::StepUp
    } else if score >= cfg.review {
        Action::Review
    } else {
        Action::Allow
    }
}

/// The width at the bottom of an action's score band where actions lifted by a floor (stake)
/// rather than earned by the score are placed, by their evidence.
const LIFTED_BAND: f64 = 0.01;

/// Inputs to the decision that are not signals.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainHints {
    /// How many of device, network and place the event carries and the profile already knows
    /// (0 to 3): positive evidence of the owner, as opposed to the mere absence of a signal.
    pub familiar_fields: u8,
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
    /// Money out: its amount against the user's own history in the currency, if any.
    pub habit: Option<Habit>,
}

/// Turns signals into decisions under a [`DecisionConfig`].
#[derive(Debug, Clone)]
pub struct Decider {
    cfg: DecisionConfig,
    /// `decision.learned.reference_rates` by code.
    refs: [Option<[f64; 4]>; Code::ALL.len()],
}

impl Decider {
    /// From config.
    pub fn new(cfg: &DecisionConfig) -> Decider {
        Decider {
            cfg: cfg.clone(),
            refs: cfg.learned.by_code(),
        }
    }

    /// Corrects each counted signal's weight by how often its code fires among this
    /// partition's events of `kind`'s class ([`LearnedConfig`]): the contribution
    /// `w·s` becomes `1 − (1 − w·s)^m`. Nothing changes when `[decision.learned]` is off.
    /// Returns whether any weight changed.
    pub fn weigh(&self, signals: &mut Signals, rates: &SignalRates, kind: EventType) -> bool {
        let l = &self.cfg.learned;
        if !l.enabled {
            return false;
        }
        let mut changed = false;
        let class = crate::engine::baseline::rates::class_of(kind);
        for s in signals.iter_mut() {
            let Some(r0) = self.refs[s.code as usize].map(|r| r[class]) else {
                continue;
            };
            let (rate, n) = rates.tail(kind, s.code, 0.0).unwrap_or((0.0, 0.0));
            let m = l.factor(rate, n, r0);
            let c = s.weight * s.score;
            if c <= 0.0 || c >= 1.0 || (m - 1.0).abs() < 1e-12 {
                continue;
            }
            let weighed = 1.0 - (1.0 - c).powf(m);
            s.weight = weighed / s.score;
            changed = true;
        }
        changed
    }

    /// How surprising the event's signals are in this partition, in nats: per family, the
    /// strongest −ln r, where r is the share of this class's events whose signal of that code
    /// reached the same score bin or above (the learned rates, pulled toward the code's
    /// reference rate, or toward 1 without one, by `prior_events`), summed over families.
    ///
    /// Why: this is Fisher's combination of the signals' p-values under this deployment's
    /// own traffic. The configured weights say what a signal is worth where it was tuned;
    /// the surprise says how rare it is here, whatever scale its detector scores on. A
    /// signal that fires on most honest events (a new merchant on a card stream) adds almost
    /// nothing; an amount out of habit that only a percent of the events reach adds four
    /// nats even when its own score is low. Correlated codes count once, like the stake
    /// families in the noisy-OR.
    pub fn surprise(&self, signals: &Signals, rates: &SignalRates, kind: EventType) -> f64 {
        -self.rarity(signals, rates, kind).ln()
    }

    /// e^(−[`Decider::surprise`]): the product over families of the rarest share.
    fn rarity(&self, signals: &Signals, rates: &SignalRates, kind: EventType) -> f64 {
        let l = &self.cfg.learned;
        let class = crate::engine::baseline::rates::class_of(kind);
        let mut rarest = [1.0f64; FAMILIES];
        for s in signals.iter() {
            let Some((rate, n)) = rates.tail(kind, s.code, s.score) else {
                continue;
            };
            let r0 = self.refs[s.code as usize].map_or(1.0, |r| r[class]);
            let k = l.prior_events;
            let r = ((n * rate + k * r0) / (n + k).max(1e-12)).clamp(1e-9, 1.0);
            let f = family(s.code).1 as usize;
            rarest[f] = rarest[f].min(r);
        }
        // At least 1e-9 each over nine families: no underflow.
        rarest.iter().product()
    }

    /// The review threshold the alert budget sets for a partition with `rates`, when it is
    /// above `decision.review` (`None`: the configured threshold holds).
    pub fn budget_threshold(&self, rates: &SignalRates) -> Option<f64> {
        let b = &self.cfg.budget;
        if !b.enabled {
            return None;
        }
        // Never above `step_up`, whatever `max_review` says: a lowered step-up threshold
        // (an overlay) keeps its meaning.
        let t = rates
            .review_threshold(b.min_events)?
            .min(b.max_review)
            .min(self.cfg.step_up);
        (t > self.cfg.review).then_some(t)
    }

    /// The share of events the alert budget allows to be reviewed (0: no budget).
    pub fn budget_share(&self) -> f64 {
        if self.cfg.budget.enabled {
            self.cfg.budget.review_share
        } else {
            0.0
        }
    }

    /// Combines `signals` (see the module docs for the formula).
    pub fn decide(&self, signals: Signals, hints: ChainHints) -> Decision {
        let mut d = Decision::from_signals(signals);
        self.decide_in_place(&mut d, hints, None);
        d
    }

    /// Like [`Decider::decide`], on a decision whose `signals` the detectors filled in place.
    /// (The signal list is about a kilobyte; the hot path avoids moving it.)
    pub fn decide_in_place(
        &self,
        d: &mut Decision,
        hints: ChainHints,
        learned: Option<(&SignalRates, EventType)>,
    ) {
        if self.cfg.combine == Combine::TwoAxis {
            self.two_axis(d, hints);
            return;
        }
        self.chain(&mut d.signals, hints);
        let prior = self.evidence(&d.signals, hints);
        let mut e = prior;
        d.action = prior.action(&self.cfg);
        if d.action == Action::Freeze && d.signals.get(Code::HabitRun).is_some() {
            d.action = self.without_run(&d.signals, hints);
        }
        d.configured = d.action;
        if let Some((rates, kind)) = learned.filter(|_| self.cfg.learned.enabled) {
            // Most events carry no signal the rates change: their evidence stands.
            if self.weigh(&mut d.signals, rates, kind) {
                e = self.evidence(&d.signals, hints);
            }
            // Rare evidence here weighs more than its configured weight says (see
            // `Decider::surprise`); like the weighing, it can ask for a step-up, never a freeze.
            let w = self.cfg.learned.surprise_weight;
            if w > 0.0 && !d.signals.is_empty() {
                // e^(w·ln Π r): one logarithm per event instead of one per signal.
                let nats = w * self.surprise(&d.signals, rates, kind);
                e.score = 1.0 - (1.0 - e.score) * (-nats).exp();
            }
            // The learned rates decide how loudly an event is reported, not whether a clear
            // takeover is frozen: a freeze still comes from the configured weights (a thief's
            // new device in a world where devices change often is still a new device), and
            // never from the learned weighing alone. Why: the rates only know how common a
            // signal is here, not whether the events that carry it are honest, and a freeze
            // wrongly withheld costs the user's balance.
            d.action = if d.action == Action::Freeze {
                Action::Freeze
            } else {
                e.action(&self.cfg).min(Action::StepUp)
            };
        }
        d.score = e.score;
        d.raw_score = e.score;
        if let Some(t) = learned.and_then(|(rates, _)| self.budget_threshold(rates)) {
            if d.score < t {
                // Below the budget's threshold: no review, and the score scaled below
                // `review` (monotone, so the ranking of every score is unchanged).
                d.score *= self.cfg.review / t;
                if d.action == Action::Review {
                    d.action = Action::Allow;
                }
            }
        }
        if d.action == Action::StepUp && e.owner_context && self.action(e.score) == Action::Freeze {
            d.score = d.score.min(self.cfg.freeze - 1e-4);
        }
        if d.action > self.action(d.score) {
            // Keep "score ≥ threshold ⇔ action" true for readers of the score alone. A lifted
            // action sits at the bottom of its band, ordered by its own evidence (monotone):
            // tied at the threshold, every ranking among lifted events was lost (PaySim PR-AUC
            // 0.30 -> 0.64 untied); spread over the whole band, they outranked events whose
            // evidence alone earned the action (mobile-money worlds lost up to half their
            // PR-AUC).
            let lo = match d.action {
                Action::Freeze => self.cfg.freeze,
                Action::StepUp => self.cfg.step_up,
                _ => d.score,
            };
            d.score = lo + LIFTED_BAND * d.score.clamp(0.0, 1.0);
        } else if d.action < self.action(d.score) {
            let next = match d.action {
                Action::Allow => self.cfg.review,
                Action::Review => self.cfg.step_up,
                _ => self.cfg.freeze,
            };
            d.score = d.score.min(next - 1e-4);
        }
        d.severity = self.severity(d.score);
        d.signals.sort_by_contribution();
    }

    /// The action of a freeze with `HABIT_RUN` among its signals: a run of outflows above the
    /// habit says that someone may be spending for the user, not who, so it asks for a
    /// two-factor check; a freeze must stand on the other signals alone.
    fn without_run(&self, signals: &Signals, hints: ChainHints) -> Action {
        let mut rest = Signals::default();
        for s in signals.iter().filter(|s| s.code != Code::HabitRun) {
            rest.push(s.code, s.score, s.weight, s.detail);
        }
        self.evidence(&rest, hints)
            .action(&self.cfg)
            .max(Action::StepUp)
    }

    /// Adds the takeover chain signal (`ATO_CHAIN`) to the detectors' `signals` when its
    /// stages are there (money out only, and only with `decision.chain_bonus` > 0).
    pub fn chain(&self, signals: &mut Signals, hints: ChainHints) {
        if hints.money_out && self.cfg.chain_bonus > 0.0 {
            self.add_chain(signals, hints);
        }
    }

    /// The threshold-free part of a decision on `signals` (the chain signal, if any, already
    /// among them): the combined score, the least action stake alone calls for, and whether
    /// the owner's context caps a freeze. [`Evidence::action`] maps it to an action for any
    /// thresholds, which is how `calibrate` tries thresholds without scoring again.
    pub fn evidence(&self, signals: &Signals, hints: ChainHints) -> Evidence {
        let keep = if self.cfg.stake_families_once {
            self.keep_stake_families_once(signals)
        } else {
            signals.iter().map(|s| 1.0 - s.contribution()).product()
        };
        Evidence {
            score: (1.0 - keep).clamp(0.0, 1.0),
            floor: self.stake_floor(signals, hints),
            owner_context: self.owner_context(signals, hints),
        }
    }

    /// Whether `decision.owner_context_step_up` turns a freeze of these signals into a step-up.
    fn owner_context(&self, signals: &Signals, h: ChainHints) -> bool {
        self.cfg.owner_context_step_up
            && h.familiar_fields >= 2
            && !h.reset_or_mfa_change
            && [
                Code::ImpossibleTravel,
                Code::ConcurrentStranger,
                Code::FailedAttemptsBurst,
                Code::Blocklisted,
            ]
            .iter()
            .all(|c| signals.get(*c).is_none())
    }

    /// The least action stake alone calls for (see `decision.stake_step_up` and
    /// `decision.stake_freeze`): only money out to a never-seen payee that is not a merchant.
    pub fn stake_floor(&self, signals: &Signals, h: ChainHints) -> Action {
        // A run of outflows above the habit at full strength (`detectors.habit_run.full`)
        // asks for a two-factor check by itself: the owner passes it, a thief does not.
        let run = signals
            .get(Code::HabitRun)
            .filter(|s| h.money_out && s.score >= 1.0)
            .map_or(Action::Allow, |_| Action::StepUp);
        run.max(self.amount_floor(signals, h))
    }

    /// The stake floor of the amount itself: see [`Decider::stake_floor`].
    fn amount_floor(&self, signals: &Signals, h: ChainHints) -> Action {
        let c = &self.cfg;
        // The amount's own signal must be there and not snoozed: a passed step-up or a
        // false-positive verdict on this evidence mutes `AMOUNT_OUTLIER`, and with it the floor.
        if h.money_out
            && c.combine == Combine::NoisyOr
            && c.habit_stake.far_above(h.habit)
            && signals.get(Code::AmountOutlier).is_some()
        {
            let (identity, _) = Self::by_family(signals);
            let stranger = h.familiar_fields == 0
                && c.habit_stake.stranger_freeze < 1.0
                && 1.0 - identity >= c.habit_stake.stranger_freeze;
            return if stranger {
                Action::Freeze
            } else {
                Action::StepUp
            };
        }
        if !(h.money_out && h.new_payee && !h.is_payment) {
            return Action::Allow;
        }
        let get = |code: Code| signals.get(code).map_or(0.0, |s| s.score);
        let (amount, drain) = (get(Code::AmountOutlier), get(Code::BalanceDrain));
        let extreme =
            c.stake_freeze > 0.0 && drain >= c.stake_freeze && amount >= c.stake_freeze_amount;
        if extreme && h.familiar_fields == 0 {
            Action::Freeze
        } else if extreme || (c.stake_step_up > 0.0 && amount.max(drain) >= c.stake_step_up) {
            Action::StepUp
        } else {
            Action::Allow
        }
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

    /// The noisy-OR's "probability nothing is real", counting each stake family (amount, payee,
    /// velocity) once, by its strongest signal. Why: a large withdrawal of most of the balance
    /// to a payee first paid this week fires `AMOUNT_OUTLIER`, `BALANCE_DRAIN`,
    /// `NEW_COUNTERPARTY` and `PAYEE_BUILDUP` on one fact, and multiplying them as independent
    /// evidence froze owners moving their own money; identity signals (device, place,
    /// credentials) stay separate terms.
    fn keep_stake_families_once(&self, signals: &Signals) -> f64 {
        let (identity, mut best) = Self::by_family(signals);
        // Any evidence about the actor counts, an odd hour included: a thief holding the
        // owner's own phone shows little else.
        if 1.0 - identity < self.cfg.stake_alone_below {
            for (b, axis) in best.iter_mut().zip(FAMILY_AXIS) {
                if axis == Axis::Stake {
                    *b *= self.cfg.stake_alone_factor;
                }
            }
        }
        Self::keep_of(&best, Axis::Stake) * identity
    }

    /// One pass over the signals: the noisy-OR's "probability nothing is real" of the identity
    /// signals taken one by one, and the strongest `weight × score` of every family.
    fn by_family(signals: &Signals) -> (f64, [f64; FAMILIES]) {
        let mut best = [0.0f64; FAMILIES];
        let mut identity = 1.0;
        for s in signals.iter() {
            let (axis, fam) = family(s.code);
            if axis == Axis::Identity {
                identity *= 1.0 - s.contribution();
            }
            let b = &mut best[fam.index()];
            *b = b.max(s.contribution());
        }
        (identity, best)
    }

    /// The "probability nothing is real" over the families of `axis`, each counted once by
    /// its strongest signal.
    fn keep_of(best: &[f64; FAMILIES], axis: Axis) -> f64 {
        best.iter()
            .zip(FAMILY_AXIS)
            .filter(|(_, a)| *a == axis)
            .map(|(b, _)| 1.0 - b)
            .product()
    }

    /// The two axes of `d`'s signals: (identity, stake), each in [0, 1].
    pub fn axes(signals: &Signals) -> (f64, f64) {
        let (_, best) = Self::by_family(signals);
        (
            1.0 - Self::keep_of(&best, Axis::Identity),
            1.0 - Self::keep_of(&best, Axis::Stake),
        )
    }

    /// The action of the two-axis matrix.
    pub fn matrix(&self, identity: f64, stake: f64, familiar_fields: u8) -> Action {
        let m = &self.cfg.two_axis;
        let owner_like = familiar_fields >= m.owner_fields.max(1);
        // Freeze: a stranger with something at stake, or stake so extreme that only the
        // owner's own context earns a two-factor check instead.
        let stranger_with_stake = identity >= m.identity_strong && stake >= m.stake_review;
        if stranger_with_stake || (stake >= m.stake_extreme && !owner_like) {
            Action::Freeze
        } else if identity >= m.identity_strong
            || stake >= m.stake_step_up
            || (identity >= m.identity_step_up && stake >= m.stake_review)
        {
            Action::StepUp
        } else if identity >= m.identity_review || stake >= m.stake_review {
            Action::Review
        } else {
            Action::Allow
        }
    }

    /// [`Combine::TwoAxis`]: the matrix gives the action; the score is placed inside that
    /// action's band of the score thresholds (so `score ≥ decision.freeze` still means freeze),
    /// by the combined evidence `1 − (1 − identity)(1 − stake)`.
    fn two_axis(&self, d: &mut Decision, hints: ChainHints) {
        let (identity, stake) = Self::axes(&d.signals);
        d.action = self.matrix(identity, stake, hints.familiar_fields);
        d.configured = d.action;
        let raw = 1.0 - (1.0 - identity) * (1.0 - stake);
        let c = &self.cfg;
        let (lo, hi) = match d.action {
            Action::Allow => (0.0, c.review),
            Action::Review => (c.review, c.step_up),
            Action::StepUp => (c.step_up, c.freeze),
            Action::Freeze => (c.freeze, 1.0),
        };
        d.score = (lo + (hi - lo) * raw).clamp(0.0, 1.0);
        d.severity = self.severity(d.score);
        d.signals.sort_by_contribution();
    }

    /// Action for a score.
    pub fn action(&self, score: f64) -> Action {
        by_score(&self.cfg, score)
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

    /// Rates where `code` fired on `share` of `n` payments.
    fn rates_with(code: Code, share: f64, n: usize) -> SignalRates {
        let mut r = SignalRates::default();
        let every = (1.0 / share).round().max(1.0) as usize;
        for i in 0..n {
            let mut s = Signals::default();
            if i % every == 0 {
                s.push(code, 1.0, 0.5, d());
            }
            r.observe(1.0, EventType::Payment, &s);
        }
        r
    }

    #[test]
    fn a_signal_common_in_this_deployment_weighs_less_than_where_it_is_rare() {
        let dec = Decider::new(&DecisionConfig::default());
        let sig = || {
            let mut s = Signals::default();
            s.push(Code::NewLocation, 1.0, 0.35, d());
            s
        };
        let weight = |rates: &SignalRates| {
            let mut s = sig();
            dec.weigh(&mut s, rates, EventType::Payment);
            s.get(Code::NewLocation).map(|x| x.contribution()).unwrap()
        };
        // On 90% of payments (a card stream: every merchant is in a new place) it says
        // almost nothing; on 1% (a wallet) it keeps its configured weight.
        let common = weight(&rates_with(Code::NewLocation, 0.9, 20_000));
        let rare = weight(&rates_with(Code::NewLocation, 0.01, 20_000));
        assert!(common < 0.05, "common: {common}");
        assert!((rare - 0.35).abs() < 1e-9, "rare keeps its weight: {rare}");
        // Before any data the configured weight stands; a few events barely move it.
        let none = weight(&SignalRates::default());
        assert!((none - 0.35).abs() < 1e-9, "{none}");
        let few = weight(&rates_with(Code::NewLocation, 0.9, 50));
        assert!(few > 0.25, "50 events against a prior of 2,000: {few}");
        // Off: nothing changes.
        let mut cfg = DecisionConfig::default();
        cfg.learned.enabled = false;
        let mut s = sig();
        Decider::new(&cfg).weigh(
            &mut s,
            &rates_with(Code::NewLocation, 0.9, 20_000),
            EventType::Payment,
        );
        assert_eq!(s.get(Code::NewLocation).unwrap().contribution(), 0.35);
    }

    #[test]
    fn a_rare_signal_here_is_surprising_and_a_common_one_is_not() {
        let dec = Decider::new(&DecisionConfig::default());
        // An amount out of habit with a low score of its own (a card with a wide spread of
        // amounts), on 1% of payments, and a new merchant on 90%.
        let mut r = SignalRates::default();
        for i in 0..20_000 {
            let mut s = Signals::default();
            if i % 10 != 0 {
                s.push(Code::NewCounterparty, 0.05, 0.45, d());
            }
            if i % 100 == 0 {
                s.push(Code::AmountOutlier, 0.04, 0.55, d());
            }
            r.observe(1.0, EventType::Payment, &s);
        }
        let one = |code: Code, score: f64| {
            let mut s = Signals::default();
            s.push(code, score, 0.5, d());
            dec.surprise(&s, &r, EventType::Payment)
        };
        let common = one(Code::NewCounterparty, 0.05);
        let rare = one(Code::AmountOutlier, 0.04);
        assert!(common < 0.15, "a new merchant on a card stream: {common}");
        assert!(rare > 3.5, "1% of payments: about ln 100 nats, {rare}");
        // A code that never fired here is as rare as the prior allows, not infinitely so.
        let never = one(Code::UnusualHour, 0.5);
        assert!(never > rare && never.is_finite(), "{never}");
        // Correlated codes count once: a balance drain beside the amount adds nothing.
        let mut s = Signals::default();
        s.push(Code::AmountOutlier, 0.04, 0.55, d());
        s.push(Code::BalanceDrain, 0.04, 0.5, d());
        let family = dec.surprise(&s, &r, EventType::Payment);
        assert!(family <= one(Code::BalanceDrain, 0.04) + 1e-9, "{family}");
        // Before any data nothing is surprising.
        assert_eq!(
            dec.surprise(&s, &SignalRates::default(), EventType::Payment),
            0.0
        );
        // And it lifts the combined score of the rare evidence far more than the common.
        let score = |code: Code, sc: f64| {
            let mut d0 = Decision::from_signals(Signals::default());
            d0.signals.push(code, sc, 0.5, d());
            dec.decide_in_place(
                &mut d0,
                ChainHints::default(),
                Some((&r, EventType::Payment)),
            );
            d0.score
        };
        let lifted = score(Code::AmountOutlier, 0.04);
        assert!(lifted > 0.15, "0.05 x 4.6 nats on top of 0.02: {lifted}");
        assert!(score(Code::NewCounterparty, 0.05) < 0.05);
    }

    #[test]
    fn a_full_run_steps_up_and_never_freezes_by_itself() {
        let dec = Decider::new(&DecisionConfig::default());
        let out = ChainHints {
            habit: None,
            money_out: true,
            is_payment: true,
            ..ChainHints::default()
        };
        let run = |score: f64| {
            let mut s = Signals::default();
            s.push(Code::HabitRun, score, 0.85, d());
            s
        };
        // At full strength a run asks for a two-factor check; below it, only its weight.
        assert_eq!(dec.decide(run(1.0), out).action, Action::StepUp);
        assert!(dec.decide(run(0.5), out).action < Action::StepUp);
        // A burst and a new payee with a full run score past the freeze threshold, but a
        // freeze must stand without the run: it stays a step-up.
        let mut s = run(1.0);
        s.push(Code::VelocityBurst, 1.0, 0.55, d());
        s.push(Code::NewCounterparty, 1.0, 0.45, d());
        s.push(Code::AmountOutlier, 0.5, 0.55, d());
        let burst = dec.decide(s, out);
        assert_eq!(burst.action, Action::StepUp, "{burst:?}");
        assert!(burst.score < DecisionConfig::default().freeze);
        // Evidence that freezes on its own still freezes with a run beside it.
        let takeover = ChainHints {
            habit: None,
            money_out: true,
            change_from_new_device: true,
            new_payee: true,
            reset_or_mfa_change: true,
            ..ChainHints::default()
        };
        let mut s = run(1.0);
        s.push(Code::CredentialChangeThenSpend, 1.0, 0.75, d());
        s.push(Code::NewDevice, 1.0, 0.45, d());
        s.push(Code::AmountOutlier, 0.9, 0.55, d());
        assert_eq!(dec.decide(s, takeover).action, Action::Freeze);
    }

    #[test]
    fn learned_rates_quiet_alerts_but_never_withhold_a_freeze() {
        let dec = Decider::new(&DecisionConfig::default());
        let hints = ChainHints {
            habit: None,
            familiar_fields: 0,
            money_out: true,
            change_from_new_device: true,
            new_payee: true,
            is_payment: false,
            reset_or_mfa_change: true,
        };
        let takeover = || {
            let mut s = Signals::default();
            s.push(Code::CredentialChangeThenSpend, 1.0, 0.75, d());
            s.push(Code::NewDevice, 1.0, 0.45, d());
            s.push(Code::AmountOutlier, 0.9, 0.55, d());
            s
        };
        let common = rates_with(Code::NewDevice, 0.8, 20_000);
        let mut d1 = Decision::from_signals(takeover());
        dec.decide_in_place(&mut d1, hints, None);
        let mut d2 = Decision::from_signals(takeover());
        dec.decide_in_place(&mut d2, hints, Some((&common, EventType::Transfer)));
        assert_eq!(d1.action, Action::Freeze);
        assert_eq!(d2.action, Action::Freeze, "{d2:?}");
        assert!(d2.score >= DecisionConfig::default().freeze);
        // A lone new location on a stream where every payment is in a new place: reviewed
        // under the configured weights, allowed once the rate is known.
        let lone = || {
            let mut s = Signals::default();
            s.push(Code::NewLocation, 1.0, 0.5, d());
            s
        };
        let pay = ChainHints {
            habit: None,
            is_payment: true,
            ..ChainHints::default()
        };
        let mut before = Decision::from_signals(lone());
        dec.decide_in_place(&mut before, pay, None);
        let card = rates_with(Code::NewLocation, 0.9, 20_000);
        let mut after = Decision::from_signals(lone());
        dec.decide_in_place(&mut after, pay, Some((&card, EventType::Payment)));
        assert_eq!(before.action, Action::Review);
        assert_eq!(after.action, Action::Allow, "{after:?}");
        assert!(after.score < DecisionConfig::default().review);
    }

    #[test]
    fn the_alert_budget_raises_the_review_threshold_but_never_touches_step_up() {
        let dec = Decider::new(&DecisionConfig::default());
        let lone = |score: f64| {
            let mut s = Signals::default();
            s.push(Code::UnusualHour, score, 1.0, d());
            s
        };
        let decide = |rates: &SignalRates, score: f64| {
            let mut x = Decision::from_signals(lone(score));
            dec.decide_in_place(
                &mut x,
                ChainHints::default(),
                Some((rates, EventType::Login)),
            );
            x
        };
        // A partition where 10% of the events score 0.5 to 0.6 and the rest 0: the budget of
        // 1% puts the review threshold near 0.59 (the top tenth of that mass).
        let mut r = SignalRates::default();
        for i in 0..20_000u64 {
            let s = if i % 10 == 0 {
                0.5 + (i % 100) as f64 / 1000.0
            } else {
                0.0
            };
            r.observe_score(1.0, s, 0.01);
        }
        let t = dec.budget_threshold(&r).unwrap();
        assert!((t - 0.59).abs() < 0.011, "{t}");
        let quiet = decide(&r, 0.55);
        assert_eq!(quiet.action, Action::Allow, "{quiet:?}");
        assert!(quiet.score < DecisionConfig::default().review);
        assert!((quiet.raw_score - 0.55).abs() < 1e-9);
        let loud = decide(&r, 0.65);
        assert_eq!(loud.action, Action::Review);
        // Scaling keeps the order of scores.
        assert!(decide(&r, 0.3).score < quiet.score && quiet.score < loud.score);
        // A step-up is evidence of its own: no quantile takes it away.
        assert_eq!(decide(&r, 0.8).action, Action::StepUp);
        // Before min_events, or switched off, the configured threshold holds.
        let mut few = SignalRates::default();
        for _ in 0..100 {
            few.observe_score(1.0, 0.55, 0.01);
        }
        assert_eq!(decide(&few, 0.55).action, Action::Review);
        let mut cfg = DecisionConfig::default();
        cfg.budget.enabled = false;
        assert!(Decider::new(&cfg).budget_threshold(&r).is_none());
    }

    #[test]
    fn learned_config_names_the_key_at_fault() {
        let mut c = DecisionConfig::default();
        c.learned
            .reference_rates
            .insert("NOT_A_CODE".into(), [0.1; 4]);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("decision.learned.reference_rates.NOT_A_CODE"),
            "{e}"
        );
        let mut c = DecisionConfig::default();
        c.learned
            .reference_rates
            .insert("NEW_DEVICE".into(), [0.1, 0.0, 0.1, 0.1]);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("reference_rates.NEW_DEVICE"), "{e}");
    }

    #[test]
    fn a_freeze_from_the_owners_own_context_is_a_step_up() {
        let dec = Decider::new(&DecisionConfig::default());
        let sig = |extra: Option<Code>| {
            let mut s = Signals::default();
            s.push(Code::CredentialChangeThenSpend, 0.9, 0.75, d());
            s.push(Code::AmountOutlier, 0.9, 0.55, d());
            s.push(Code::NewCounterparty, 0.9, 0.35, d());
            if let Some(c) = extra {
                s.push(c, 1.0, 0.5, d());
            }
            s
        };
        let hints = |familiar: u8, reset: bool| ChainHints {
            habit: None,
            familiar_fields: familiar,
            money_out: true,
            change_from_new_device: true,
            new_payee: true,
            is_payment: false,
            reset_or_mfa_change: reset,
        };
        // A device bind then a big transfer, from a known network and place: step-up.
        let home = dec.decide(sig(None), hints(2, false));
        assert_eq!(home.action, Action::StepUp, "{home:?}");
        assert!(home.score < DecisionConfig::default().freeze);
        // The same after a password reset, from a strange context, or with two actors: freeze.
        assert_eq!(dec.decide(sig(None), hints(2, true)).action, Action::Freeze);
        assert_eq!(
            dec.decide(sig(None), hints(1, false)).action,
            Action::Freeze
        );
        assert_eq!(
            dec.decide(sig(Some(Code::ConcurrentStranger)), hints(3, false))
                .action,
            Action::Freeze
        );
        let off = Decider::new(&DecisionConfig {
            owner_context_step_up: false,
            ..DecisionConfig::default()
        });
        assert_eq!(
            off.decide(sig(None), hints(2, false)).action,
            Action::Freeze
        );
    }

    #[test]
    fn stake_alone_steps_up_and_extreme_stake_freezes_only_without_an_owner_context() {
        let cfg = DecisionConfig {
            stake_freeze: 0.95,
            ..DecisionConfig::default()
        };
        let dec = Decider::new(&cfg);
        let sig = |amount: f64, drain: f64, payee: f64| {
            let mut s = Signals::default();
            s.push(Code::AmountOutlier, amount, 0.55, d());
            s.push(Code::BalanceDrain, drain, 0.6, d());
            s.push(Code::NewCounterparty, payee, 0.4, d());
            s
        };
        let transfer = ChainHints {
            habit: None,
            money_out: true,
            new_payee: true,
            ..ChainHints::default()
        };
        // Stake alone is a review by the noisy-OR; the floor makes it a step-up.
        let d1 = dec.decide(sig(0.85, 0.0, 1.0), transfer);
        assert_eq!(d1.action, Action::StepUp);
        assert!(d1.score >= cfg.step_up, "the score agrees with the action");
        // Extreme stake, no owner context: freeze; one familiar field: step-up.
        assert_eq!(
            dec.decide(sig(0.6, 1.0, 1.0), transfer).action,
            Action::Freeze
        );
        let owner = ChainHints {
            habit: None,
            familiar_fields: 1,
            ..transfer
        };
        assert_eq!(dec.decide(sig(0.6, 1.0, 1.0), owner).action, Action::StepUp);
        // A known payee, a merchant, or a modest amount: no floor.
        let known = ChainHints {
            habit: None,
            new_payee: false,
            ..transfer
        };
        assert!(dec.decide(sig(0.85, 1.0, 0.0), known).action < Action::StepUp);
        let shop = ChainHints {
            habit: None,
            is_payment: true,
            ..transfer
        };
        assert!(dec.decide(sig(0.85, 1.0, 1.0), shop).action < Action::Freeze);
        assert_eq!(
            dec.stake_floor(&sig(0.5, 0.5, 1.0), transfer),
            Action::Allow
        );
        // Off: the noisy-OR alone.
        let off = Decider::new(&DecisionConfig {
            stake_step_up: 0.0,
            stake_freeze: 0.0,
            ..DecisionConfig::default()
        });
        assert_eq!(
            off.decide(sig(0.85, 0.0, 1.0), transfer).action,
            Action::Review
        );
    }

    #[test]
    fn stake_alone_is_scaled_only_without_evidence_about_the_actor() {
        let on = Decider::new(&DecisionConfig {
            stake_alone_factor: 0.5,
            ..DecisionConfig::default()
        });
        let off = Decider::new(&DecisionConfig::default());
        let stake = |extra: Option<(Code, f64)>| {
            let mut s = Signals::default();
            s.push(Code::AmountOutlier, 1.0, 0.55, d());
            s.push(Code::NewCounterparty, 1.0, 0.4, d());
            if let Some((c, v)) = extra {
                s.push(c, v, 0.45, d());
            }
            s
        };
        let payment = ChainHints {
            habit: None,
            money_out: true,
            is_payment: true,
            ..ChainHints::default()
        };
        let full = 1.0 - (1.0 - 0.55) * (1.0 - 0.4);
        let halved = 1.0 - (1.0 - 0.275) * (1.0 - 0.2);
        assert!((off.decide(stake(None), payment).score - full).abs() < 1e-12);
        assert!((on.decide(stake(None), payment).score - halved).abs() < 1e-12);
        // A new device (0.45 ≥ stake_alone_below): stake counts fully again.
        let with_device = on
            .decide(stake(Some((Code::NewDevice, 1.0))), payment)
            .score;
        assert!((with_device - (1.0 - (1.0 - full) * 0.55)).abs() < 1e-12);
    }

    #[test]
    fn money_out_far_above_the_users_history_steps_up_and_from_a_stranger_freezes() {
        let dc = Decider::new(&DecisionConfig::default());
        let habit = |n: f64, ratio: f64| {
            Some(Habit {
                n,
                ratio,
                dx: ratio.ln(),
                var: 0.1 * 0.1,
            })
        };
        let owner = ChainHints {
            money_out: true,
            is_payment: true,
            familiar_fields: 3,
            habit: habit(50.0, 10.0),
            ..ChainHints::default()
        };
        let mut none = Signals::default();
        none.push(Code::AmountOutlier, 0.3, 0.55, d());
        assert_eq!(dc.decide(none, owner).action, Action::StepUp);
        // Without the amount's own signal (snoozed by a passed step-up): no floor.
        assert_eq!(dc.decide(Signals::default(), owner).action, Action::Allow);
        // Too little history, or not far enough above it: no floor.
        for h in [habit(5.0, 10.0), habit(50.0, 3.0)] {
            let hints = ChainHints { habit: h, ..owner };
            assert_eq!(dc.decide(none, hints).action, Action::Allow);
        }
        // A wide habit: ten times the typical amount is only z = 2.3 there.
        let wide = ChainHints {
            habit: Some(Habit {
                var: 1.0,
                ..habit(50.0, 10.0).unwrap()
            }),
            ..owner
        };
        assert_eq!(dc.decide(none, wide).action, Action::Allow);
        // The same stake from a stranger: nothing of the context is the owner's, and the
        // identity signals say it is not the owner.
        let mut s = none;
        s.push(Code::NewDevice, 1.0, 0.45, d());
        s.push(Code::NewLocation, 1.0, 0.35, d());
        s.push(Code::UnusualHour, 1.0, 0.35, d());
        let stranger = ChainHints {
            familiar_fields: 0,
            ..owner
        };
        let got = dc.decide(s, stranger);
        assert_eq!(got.action, Action::Freeze);
        assert!(
            got.score >= 0.88,
            "score {} keeps freeze ⇔ score ≥ freeze",
            got.score
        );
        // No identity evidence and nothing familiar either (events without device, network
        // or place): the floor is a step-up, never a freeze.
        let bare = ChainHints {
            familiar_fields: 0,
            ..owner
        };
        assert_eq!(dc.decide(none, bare).action, Action::StepUp);
    }

    #[test]
    fn a_lifted_action_sits_at_the_bottom_of_its_band_in_the_order_of_its_evidence() {
        let dc = Decider::new(&DecisionConfig::default());
        let owner = ChainHints {
            money_out: true,
            is_payment: true,
            familiar_fields: 3,
            habit: Some(Habit {
                n: 50.0,
                ratio: 10.0,
                dx: 10f64.ln(),
                var: 0.01,
            }),
            ..ChainHints::default()
        };
        let score = |amount_score: f64| {
            let mut s = Signals::default();
            s.push(Code::AmountOutlier, amount_score, 0.55, d());
            let got = dc.decide(s, owner);
            assert_eq!(got.action, Action::StepUp);
            got.score
        };
        let (low, high) = (score(0.2), score(0.6));
        assert!(
            low >= 0.75 && high < 0.75 + LIFTED_BAND + 1e-9,
            "{low} {high}"
        );
        assert!(high > low, "more evidence ranks higher among lifted events");
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
            habit: None,
            money_out: true,
            change_from_new_device: true,
            new_payee: true,
            is_payment: false,
            reset_or_mfa_change: true,
            familiar_fields: 0,
        };
        let with = dec.decide(s, hints);
        assert!(with.signals.get(Code::AtoChain).is_some());
        let without = dec.decide(
            s,
            ChainHints {
                habit: None,
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
            habit: None,
            money_out: true,
            change_from_new_device: true,
            new_payee: true,
            is_payment: false,
            reset_or_mfa_change: true,
            familiar_fields: 0,
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
            habit: None,
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
            habit: None,
            change_from_new_device: false,
            reset_or_mfa_change: false,
            ..reset
        };
        let out = dec.decide(hijack, plain);
        let c = out.signals.get(Code::AtoChain).expect("chain");
        assert!((c.score - (0.6 + 0.8 + 1.0 + 0.0) / 4.0).abs() < 1e-12);
        // The same device and place with a known payee and no outflow: no chain.
        let known = ChainHints {
            habit: None,
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
    fn one_large_outflow_to_a_young_payee_is_one_fact_not_four() {
        // Most of the balance, far above habit, to a payee first paid this week, from the
        // owner's own context: every stake detector fires on that one fact.
        let mut s = Signals::default();
        s.push(Code::AmountOutlier, 1.0, 0.55, d());
        s.push(Code::BalanceDrain, 1.0, 0.6, d());
        s.push(Code::NewCounterparty, 1.0, 0.4, d());
        s.push(Code::PayeeBuildup, 1.0, 0.5, d());
        let once = Decider::new(&DecisionConfig::default()).decide(s, ChainHints::default());
        // Amount family 0.6, payee family 0.5: a two-factor check, not a freeze.
        assert!(
            (once.score - (1.0 - 0.4 * 0.5)).abs() < 1e-12,
            "{}",
            once.score
        );
        assert_eq!(once.action, Action::StepUp);
        let independent = Decider::new(&DecisionConfig {
            stake_families_once: false,
            ..DecisionConfig::default()
        })
        .decide(s, ChainHints::default());
        assert_eq!(independent.action, Action::Freeze);
        // Identity signals still add up on top of the stake.
        let mut t = s;
        t.push(Code::NewDevice, 1.0, 0.45, d());
        let with_stranger =
            Decider::new(&DecisionConfig::default()).decide(t, ChainHints::default());
        assert!((with_stranger.score - (1.0 - 0.55 * 0.4 * 0.5)).abs() < 1e-12);
        assert_eq!(with_stranger.action, Action::Freeze);
    }

    fn two_axis() -> Decider {
        Decider::new(&DecisionConfig {
            combine: Combine::TwoAxis,
            ..DecisionConfig::default()
        })
    }

    #[test]
    fn every_family_answers_the_question_its_codes_do() {
        for (i, f) in Family::ALL.iter().enumerate() {
            assert_eq!(f.index(), i, "Family::ALL is in declaration order");
        }
        for c in Code::ALL {
            let (axis, fam) = family(c);
            assert_eq!(FAMILY_AXIS[fam.index()], axis, "{c}");
        }
        // The identity families come first, the stake families last.
        assert_eq!(FAMILY_AXIS.iter().filter(|a| **a == Axis::Stake).count(), 3);
        assert_eq!(family(Code::HabitRun), (Axis::Stake, Family::Velocity));
        assert_eq!(family(Code::NewDevice), (Axis::Identity, Family::Device));
    }

    #[test]
    fn a_family_counts_once() {
        let mut s = Signals::default();
        s.push(Code::AmountOutlier, 1.0, 0.6, d());
        s.push(Code::BalanceDrain, 1.0, 0.5, d());
        s.push(Code::NewCounterparty, 1.0, 0.4, d());
        s.push(Code::PayeeBuildup, 1.0, 0.3, d());
        let (id, stake) = Decider::axes(&s);
        assert_eq!(id, 0.0);
        // Amount family 0.6, payee family 0.4: 1 − 0.4 × 0.6.
        assert!((stake - (1.0 - 0.4 * 0.6)).abs() < 1e-12, "{stake}");
    }

    #[test]
    fn the_matrix_separates_owner_stake_from_a_stranger() {
        let dec = two_axis();
        let m = TwoAxisConfig::default();
        // A big withdrawal from the owner's own device, network and place: a step-up.
        assert_eq!(dec.matrix(0.0, m.stake_extreme, 3), Action::StepUp);
        assert_eq!(dec.matrix(0.0, m.stake_step_up, 3), Action::StepUp);
        // The same stake where no field speaks for the owner: waiting is the risk.
        assert_eq!(dec.matrix(0.0, m.stake_extreme, 0), Action::Freeze);
        // A stranger with stake: freeze; a stranger without: step-up.
        assert_eq!(
            dec.matrix(m.identity_strong, m.stake_review, 0),
            Action::Freeze
        );
        assert_eq!(dec.matrix(m.identity_strong, 0.0, 0), Action::StepUp);
        // Some doubt and some stake: step-up; either alone: review.
        assert_eq!(
            dec.matrix(m.identity_step_up, m.stake_review, 1),
            Action::StepUp
        );
        assert_eq!(dec.matrix(m.identity_review, 0.0, 3), Action::Review);
        assert_eq!(dec.matrix(0.0, m.stake_review, 3), Action::Review);
        assert_eq!(dec.matrix(0.0, 0.0, 0), Action::Allow);
    }

    #[test]
    fn two_axis_scores_stay_in_their_action_band() {
        let dec = two_axis();
        let c = DecisionConfig::default();
        let mut s = Signals::default();
        s.push(Code::NewDevice, 1.0, 0.45, d());
        s.push(Code::ImpossibleTravel, 1.0, 0.75, d());
        s.push(Code::BalanceDrain, 1.0, 0.5, d());
        let out = dec.decide(s, ChainHints::default());
        assert_eq!(out.action, Action::Freeze);
        assert!(out.score >= c.freeze && out.score <= 1.0, "{}", out.score);
        assert_eq!(dec.action(out.score), out.action);
        // No ATO_CHAIN in this mode: the matrix is the interaction.
        assert!(out.signals.get(Code::AtoChain).is_none());
        let mut owner = Signals::default();
        owner.push(Code::AmountOutlier, 1.0, 0.9, d());
        let hints = ChainHints {
            habit: None,
            familiar_fields: 3,
            money_out: true,
            ..ChainHints::default()
        };
        let out = dec.decide(owner, hints);
        assert_eq!(out.action, Action::StepUp);
        assert_eq!(dec.action(out.score), Action::StepUp);
    }

    #[test]
    fn two_axis_config_rules_name_the_key() {
        let mut c = DecisionConfig::default();
        c.two_axis.stake_extreme = 0.1;
        assert!(c.validate().is_err());
        let mut c = DecisionConfig::default();
        c.two_axis.owner_fields = 4;
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_concurrent_stranger_opens_the_chain() {
        let dec = Decider::new(&DecisionConfig::default());
        let plain = ChainHints {
            habit: None,
            money_out: true,
            change_from_new_device: false,
            new_payee: true,
            is_payment: false,
            reset_or_mfa_change: false,
            familiar_fields: 0,
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
