//! Detectors: one file each, behind the small [`Detector`] trait.
//!
//! A detector looks at one event, the user's profile *as it was before the event*, the
//! precomputed [`Facts`] and the population [`Prior`], and pushes zero or more [`Signal`]s.
//! Wherever a baseline exists the score is a statistical surprise (a tail probability mapped
//! by [`surprise`]), not a fixed limit.
//!
//! To add a detector: a new file here named after its config table (copy the smallest,
//! `new_recharge_number.rs`: the detector, its config struct with `Default` and
//! `validate(table)`), one row in the `registry!` below (code, wire name, changelog bit,
//! family, table, default, constructor; the row declares the file's module and re-exports it),
//! and its table in `config/walletguard.toml`; then the two generators the tests name (the
//! k8s ConfigMap, the README's registry table). `tests/new_detector.sh` does exactly that.

use std::fmt;

use crate::engine::baseline::{Facts, Params, Population, Prior, Profile};
use crate::engine::event::Event;
use serde::{Deserialize, Serialize};

use crate::engine::validate::{invalid, unit, Checked};

/// The detector registry: one row per reason code, in the order codes sort (a tie in
/// contribution is broken by it) and detectors run. Every row gives the code's wire name, its
/// bit in the masks the changelog stores ([`Code::bit`]: explicit, so inserting a row never
/// re-labels stored snoozes; a test pins the shipped ones) and its [`Family`]. A detector's
/// row also names its config table, which is also its file's module (declared and
/// re-exported by the row), the table's default, and how to build it; a code without one
/// (`ATO_CHAIN`) is set by the decision or by feedback. From these rows come [`Code`],
/// [`Code::ALL`], [`Code::as_str`], [`Code::bit`], [`Code::family`], the `[detectors]` config
/// ([`DetectorsConfig`], its defaults and rules) and [`build`].
macro_rules! registry {
    ($(
        $(#[doc = $doc:literal])*
        $code:ident = $wire:literal, bit $bit:literal, $family:ident
        $(, $table:ident: $ty:ty = $default:expr, |$d:ident| $make:expr)?;
    )*) => {
        // A detector's file is the module named after its table; everything it makes public
        // is re-exported here.
        $($(
            mod $table;
            pub use $table::*;
        )?)*

        /// Reason codes carried in decisions and alerts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($(#[doc = $doc])* $code,)*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: [Code; [$($wire),*].len()] = [$(Code::$code),*];

            /// The wire name, e.g. `NEW_DEVICE`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$code => $wire,)*
                }
            }

            /// The code's bit in the masks the changelog stores (snoozes, a case's evidence):
            /// fixed by its row, never by its position, so a row added anywhere leaves every
            /// stored mask meaning what it meant.
            pub const fn bit(self) -> u32 {
                match self {
                    $(Code::$code => 1 << $bit,)*
                }
            }

            /// The family of correlated codes it belongs to (within a family only the
            /// strongest counts; see [`Family`]).
            pub const fn family(self) -> Family {
                match self {
                    $(Code::$code => Family::$family,)*
                }
            }
        }

        // Masks are u32, and no two codes share a bit.
        const _: () = {
            let bits = [$($bit),*];
            let mut i = 0;
            while i < bits.len() {
                assert!(bits[i] < 32, "a code's bit must be below 32");
                let mut j = i + 1;
                while j < bits.len() {
                    assert!(bits[i] != bits[j], "two codes share a changelog bit");
                    j += 1;
                }
                i += 1;
            }
        };

        /// `[detectors]`: common surprise mapping plus one table per detector.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct DetectorsConfig {
            /// Tail probability at which a statistical detector starts to score.
            pub surprise_p_start: f64,
            /// Tail probability at which it scores 1.
            pub surprise_p_full: f64,
            $($(
                #[doc = concat!("`", $wire, "`.")]
                pub $table: $ty,
            )?)*
        }

        impl Default for DetectorsConfig {
            fn default() -> Self {
                DetectorsConfig {
                    surprise_p_start: 0.02,
                    surprise_p_full: 1e-5,
                    $($($table: $default,)?)*
                }
            }
        }

        impl DetectorsConfig {
            /// Checks the rules of `[detectors]` and of every detector's table; the error
            /// names the key.
            pub fn validate(&self) -> Checked {
                unit("detectors.surprise_p_start", self.surprise_p_start)?;
                unit("detectors.surprise_p_full", self.surprise_p_full)?;
                if self.surprise_p_full <= 0.0 || self.surprise_p_full >= self.surprise_p_start {
                    return Err(invalid(
                        "detectors.surprise_p_full",
                        "must be > 0 and below surprise_p_start",
                    ));
                }
                $($(self.$table.validate(concat!("detectors.", stringify!($table)))?;)?)*
                Ok(())
            }
        }

        impl Code {
            /// The `[detectors]` table of the code's detector (`None`: set by the decision
            /// or by feedback).
            pub fn table(self) -> Option<&'static str> {
                match self {
                    $($(Code::$code => Some(stringify!($table)),)?)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }

        impl Code {
            /// The row's doc comment: what the code flags, in a line.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Code::$code => concat!($($doc),*).trim_ascii(),)*
                }
            }
        }

        impl DetectorsConfig {
            /// Whether `code`'s detector is on (`None`: no detector table).
            pub fn enabled(&self, code: Code) -> Option<bool> {
                match code {
                    $($(Code::$code => Some(self.$table.enabled),)?)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }

            /// The configured weight of `code`'s detector (`None`: no detector table).
            pub fn weight(&self, code: Code) -> Option<f64> {
                match code {
                    $($(Code::$code => Some(self.$table.weight),)?)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }

            /// The configured weight of `code`'s detector, to change it.
            pub fn weight_mut(&mut self, code: Code) -> Option<&mut f64> {
                match code {
                    $($(Code::$code => Some(&mut self.$table.weight),)?)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }

        /// Every detector that keeps state ([`Detector::keeps_state`]), enabled or not, in
        /// registry order.
        pub fn keepers(detectors: &DetectorsConfig) -> Vec<Box<dyn Detector>> {
            let mut v: Vec<Box<dyn Detector>> = Vec::new();
            $($(
                let make = |$d: &DetectorsConfig| -> Box<dyn Detector> { Box::new($make) };
                let d = make(detectors);
                if d.keeps_state() {
                    v.push(d);
                }
            )?)*
            v
        }

        /// Builds the enabled detectors from config, in registry order.
        pub fn build(detectors: &DetectorsConfig) -> Vec<Box<dyn Detector>> {
            let mut v: Vec<Box<dyn Detector>> = Vec::new();
            $($(
                if detectors.$table.enabled {
                    let make = |$d: &DetectorsConfig| -> Box<dyn Detector> { Box::new($make) };
                    v.push(make(detectors));
                }
            )?)*
            v
        }
    };
}

registry! {
    /// Log-amount far in the user's tail.
    AmountOutlier = "AMOUNT_OUTLIER", bit 0, Amount,
        amount_outlier: AmountOutlierConfig = AmountOutlierConfig::default(),
        |d| AmountOutlier::new(&d.amount_outlier, d.surprise_p_start, d.surprise_p_full);
    /// Device never seen for this user.
    NewDevice = "NEW_DEVICE", bit 1, Device,
        new_device: NewDeviceConfig = NewDeviceConfig { enabled: true, weight: 0.45 },
        |d| NewDevice::new(&d.new_device);
    /// Money out to a never-seen payee.
    NewCounterparty = "NEW_COUNTERPARTY", bit 2, Payee,
        new_counterparty: NewCounterpartyConfig = NewCounterpartyConfig::default(),
        |d| NewCounterparty::new(&d.new_counterparty);
    /// New geo cell or IP prefix.
    NewLocation = "NEW_LOCATION", bit 3, Place,
        new_location: NewLocationConfig = NewLocationConfig { enabled: true, weight: 0.35 },
        |d| NewLocation::new(&d.new_location);
    /// Faster than a plane from the last position.
    ImpossibleTravel = "IMPOSSIBLE_TRAVEL", bit 4, Place,
        impossible_travel: ImpossibleTravelConfig = ImpossibleTravelConfig::default(),
        |d| ImpossibleTravel::new(&d.impossible_travel);
    /// More money-out events in a short window than the user's rate explains.
    VelocityBurst = "VELOCITY_BURST", bit 5, Velocity,
        velocity_burst: VelocityBurstConfig = VelocityBurstConfig::default(),
        |d| VelocityBurst::new(&d.velocity_burst, d.surprise_p_start, d.surprise_p_full);
    /// An hour at which the user is rarely active.
    UnusualHour = "UNUSUAL_HOUR", bit 6, Habit,
        unusual_hour: UnusualHourConfig = UnusualHourConfig::default(),
        |d| UnusualHour::new(&d.unusual_hour);
    /// Money out soon after a password, MFA, device or payment-method change.
    CredentialChangeThenSpend = "CREDENTIAL_CHANGE_THEN_SPEND", bit 7, Credential,
        credential_change: CredentialChangeConfig = CredentialChangeConfig::default(),
        |d| CredentialChange::new(&d.credential_change);
    /// Outflow takes a large share of the balance.
    BalanceDrain = "BALANCE_DRAIN", bit 8, Amount,
        balance_drain: BalanceDrainConfig = BalanceDrainConfig::default(),
        |d| BalanceDrain::new(&d.balance_drain);
    /// Many failed logins or payments in a short time.
    FailedAttemptsBurst = "FAILED_ATTEMPTS_BURST", bit 9, Attempts,
        failed_attempts: FailedAttemptsConfig = FailedAttemptsConfig::default(),
        |d| FailedAttempts::new(&d.failed_attempts);
    /// Many tiny payments to new merchants in minutes.
    CardTesting = "CARD_TESTING", bit 10, Pattern,
        card_testing: CardTestingConfig = CardTestingConfig::default(),
        |d| CardTesting::new(&d.card_testing);
    /// Large money out after a long silence.
    DormantReactivation = "DORMANT_REACTIVATION", bit 11, Habit,
        dormant_reactivation: DormantReactivationConfig = DormantReactivationConfig::default(),
        |d| DormantReactivation::new(&d.dormant_reactivation);
    /// Mobile recharge to a number never topped up before.
    NewRechargeNumber = "NEW_RECHARGE_NUMBER", bit 12, Payee,
        new_recharge_number: NewRechargeNumberConfig = NewRechargeNumberConfig { enabled: true, weight: 0.2 },
        |d| NewRechargeNumber::new(&d.new_recharge_number);
    /// Decision-level bonus: credential change → new device/location → new payee → large or
    /// draining outflow.
    AtoChain = "ATO_CHAIN", bit 13, Credential;
    /// Repeated money out to a payee first paid days ago, adding up to many times the usual.
    PayeeBuildup = "PAYEE_BUILDUP", bit 14, Payee,
        payee_buildup: PayeeBuildupConfig = PayeeBuildupConfig::default(),
        |d| PayeeBuildup::new(&d.payee_buildup);
    /// A never-seen device in a never-seen place acts shortly after the user's own device.
    ConcurrentStranger = "CONCURRENT_STRANGER", bit 15, Device,
        concurrent_stranger: ConcurrentStrangerConfig = ConcurrentStrangerConfig::default(),
        |d| ConcurrentStranger::new(&d.concurrent_stranger);
    /// Feedback: the owner's step-up challenge failed (`step_up_result`, see
    /// [`crate::engine::feedback`]).
    StepUpFailed = "STEP_UP_FAILED", bit 16, Attempts;
    /// Feedback: an analyst confirmed fraud on an event of this user (`case_verdict`).
    ConfirmedFraud = "CONFIRMED_FRAUD", bit 17, Pattern;
    /// The payee, device, network or user is on a block list (`walletguard.lists`).
    Blocklisted = "BLOCKLISTED", bit 18, Pattern,
        blocklisted: BlocklistedConfig = BlocklistedConfig::default(),
        |d| Blocklisted::new(&d.blocklisted);
    /// A run of money out above the user's own habit.
    HabitRun = "HABIT_RUN", bit 19, Velocity,
        habit_run: HabitRunConfig = HabitRunConfig::default(),
        |d| HabitRun::new(&d.habit_run);
}

/// The two questions a decision asks of its evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Evidence that the actor is not the owner.
    Identity,
    /// What the event puts at stake.
    Stake,
}

/// Correlated reason codes: within a family only the strongest counts.
///
/// Why these groups: the device and place families share a cause (a thief's phone in a
/// thief's city), the amount family's two codes read the same number against two baselines,
/// and a never-seen payee and a young payee paid again are the same fact twice. Counting each
/// family once is what keeps one big withdrawal to the owner's own card from scoring as four
/// independent pieces of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The device: never seen, or a stranger's acting beside the owner's.
    Device,
    /// The place: a new network or cell, or travel faster than possible.
    Place,
    /// A credential or binding changed lately.
    Credential,
    /// Failed logins or payments.
    Attempts,
    /// Habits of time: an odd hour, a long silence.
    Habit,
    /// A fraud pattern of its own (card testing).
    Pattern,
    /// The amount against habit and against the balance.
    Amount,
    /// The payee's novelty and age.
    Payee,
    /// How fast money leaves: a burst of outflows, or a run of them above the habit.
    Velocity,
}

impl Family {
    /// How many families there are.
    pub const COUNT: usize = 9;

    /// Every family, in declaration order ([`Family::index`]).
    pub const ALL: [Family; Family::COUNT] = [
        Family::Device,
        Family::Place,
        Family::Credential,
        Family::Attempts,
        Family::Habit,
        Family::Pattern,
        Family::Amount,
        Family::Payee,
        Family::Velocity,
    ];

    /// The family's position in [`Family`] order, for per-family arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The question the family answers: the first six, who acts; the last three, what is at
    /// stake.
    pub const fn axis(self) -> Axis {
        match self {
            Family::Device
            | Family::Place
            | Family::Credential
            | Family::Attempts
            | Family::Habit
            | Family::Pattern => Axis::Identity,
            Family::Amount | Family::Payee | Family::Velocity => Axis::Stake,
        }
    }
}

impl Code {
    /// The question the code's family answers.
    pub const fn axis(self) -> Axis {
        self.family().axis()
    }
}

/// A detector with only an on/off switch and a weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleConfig {
    /// Run this detector.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Weight of its score in the noisy-OR, in [0, 1].
    pub weight: f64,
}

fn yes() -> bool {
    true
}

/// Novelty detectors (`NEW_DEVICE`, `NEW_LOCATION`).
pub type NoveltyConfig = SimpleConfig;

impl SimpleConfig {
    /// Checks the rules of the table at `table` (a dotted key, `detectors.new_device`).
    pub fn validate(&self, table: &str) -> Checked {
        unit(&format!("{table}.weight"), self.weight)
    }
}

impl Code {
    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human-readable explanation, rendered only when an output is written: the hot path stores
/// a formatter and up to four numbers instead of building a string per signal.
#[derive(Clone, Copy)]
pub struct Detail {
    /// Renders `args` as text.
    pub render: fn(&[f64; 4], &mut fmt::Formatter<'_>) -> fmt::Result,
    /// The numbers the text mentions.
    pub args: [f64; 4],
}

impl Detail {
    /// A detail from a render function and its numbers.
    pub fn new(
        render: fn(&[f64; 4], &mut fmt::Formatter<'_>) -> fmt::Result,
        args: [f64; 4],
    ) -> Detail {
        Detail { render, args }
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.render)(&self.args, f)
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl PartialEq for Detail {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// One detector finding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signal {
    /// What was found.
    pub code: Code,
    /// How strongly, in [0, 1].
    pub score: f64,
    /// The detector's weight in the noisy-OR, in [0, 1].
    pub weight: f64,
    /// Why, for people.
    pub detail: Detail,
}

impl Signal {
    /// Contribution to the combined score: `weight × score`.
    pub fn contribution(&self) -> f64 {
        self.weight * self.score
    }
}

/// Most signals one event can carry: every code once (every detector, plus the chain bonus),
/// so a new registry row can never push a signal out.
pub const MAX_SIGNALS: usize = Code::ALL.len();

/// A fixed-capacity list of signals: no allocation per event.
///
/// Signals of *snoozed* codes (an analyst's false-positive verdict or a passed step-up muted
/// them for this evidence, see [`crate::engine::feedback`]) are still computed and kept, at the end of
/// the array, but they are not evidence: [`Signals::iter`] and [`Signals::get`] skip them, so
/// neither the score nor the chain sees them; [`Signals::snoozed`] lists them for the record.
#[derive(Debug, Clone, Copy)]
pub struct Signals {
    items: [Option<Signal>; MAX_SIGNALS],
    len: usize,
    /// Snoozed signals, stored from the end of `items` backwards.
    muted: usize,
    /// Codes to snooze, one bit per [`Code`] (by `Code as u32`).
    mute: u32,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            items: [None; MAX_SIGNALS],
            len: 0,
            muted: 0,
            mute: 0,
        }
    }
}

impl Signals {
    /// Snoozes the codes of `mask` ([`Code::bit`]) for the signals pushed from now on.
    pub fn set_mute(&mut self, mask: u32) {
        self.mute = mask;
    }

    /// The snoozed signals: computed, but not counted.
    pub fn snoozed(&self) -> impl Iterator<Item = &Signal> {
        self.items[MAX_SIGNALS - self.muted..].iter().flatten()
    }

    /// Number of snoozed signals.
    pub fn snoozed_len(&self) -> usize {
        self.muted
    }

    /// The codes of every signal, counted or snoozed, as a mask of [`Code::bit`]s.
    pub fn mask(&self) -> u32 {
        self.iter()
            .chain(self.snoozed())
            .fold(0, |m, s| m | s.code.bit())
    }

    /// Adds a signal with a score clamped into [0, 1]; zero scores and overflow are ignored.
    pub fn push(&mut self, code: Code, score: f64, weight: f64, detail: Detail) {
        let score = if score.is_finite() {
            score.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if score <= 0.0 || self.len + self.muted == MAX_SIGNALS {
            return;
        }
        let sig = Some(Signal {
            code,
            score,
            weight,
            detail,
        });
        if self.mute & code.bit() != 0 {
            self.muted += 1;
            self.items[MAX_SIGNALS - self.muted] = sig;
        } else {
            self.items[self.len] = sig;
            self.len += 1;
        }
    }

    /// Number of signals.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no detector fired.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The signals, in push order (or sorted, after [`Signals::sort_by_contribution`]).
    pub fn iter(&self) -> impl Iterator<Item = &Signal> {
        self.items[..self.len].iter().flatten()
    }

    /// The counted signals, to change their weights (see [`crate::engine::decision::LearnedConfig`]).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Signal> {
        self.items[..self.len].iter_mut().flatten()
    }

    /// The signal with `code`, if present.
    pub fn get(&self, code: Code) -> Option<&Signal> {
        self.iter().find(|s| s.code == code)
    }

    /// Sorts by contribution, largest first; ties by code for determinism.
    pub fn sort_by_contribution(&mut self) {
        self.items[..self.len].sort_by(|a, b| match (a, b) {
            (Some(a), Some(b)) => b
                .contribution()
                .total_cmp(&a.contribution())
                .then(a.code.cmp(&b.code)),
            _ => std::cmp::Ordering::Equal,
        });
    }
}

/// What a detector sees.
pub struct Input<'a, 'e> {
    /// The event being scored.
    pub ev: &'a Event<'e>,
    /// The user's profile before this event.
    pub profile: &'a Profile,
    /// Facts computed once per event.
    pub facts: &'a Facts,
    /// The population prior (config).
    pub prior: &'a Prior,
    /// The partition's learned population.
    pub population: &'a Population,
    /// Baseline constants.
    pub params: &'a Params,
    /// The event's matches on `walletguard.lists` ([`crate::engine::lists::Hits`]; 0 when none).
    pub listed: crate::engine::lists::Hits,
}

/// What a detector that keeps state may update once an event is decided (see
/// [`Detector::keep`]).
pub struct Keep<'a, 'e> {
    /// The event just decided.
    pub ev: &'a Event<'e>,
    /// The user's profile, still as it was before the event.
    pub profile: &'a mut Profile,
    /// Facts computed once per event.
    pub facts: &'a Facts,
    /// The population prior (config).
    pub prior: &'a Prior,
    /// The partition's learned population.
    pub population: &'a mut Population,
    /// Baseline constants.
    pub params: &'a Params,
    /// The baseline learns this event (its action is below the learning bar).
    pub learn: bool,
    /// Set by a keeper: the event is a tiny payment to a merchant the profile does not know,
    /// which the profile's activity record counts.
    pub tiny_new_merchant: bool,
}

/// A detector: pure, stateless between events (all state lives in the profile).
pub trait Detector: Send + Sync {
    /// The code this detector emits.
    fn code(&self) -> Code;
    /// Scores one event, pushing zero or more signals.
    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals);
    /// True for a detector that keeps evidence of its own in the profile or the population
    /// ([`Detector::keep`]). Such a detector's `keep` runs on every event that is not a
    /// repeat, even when the detector is disabled, so turning it on finds its evidence
    /// current.
    fn keeps_state(&self) -> bool {
        false
    }
    /// Updates this detector's own evidence once the event is decided, before the profile
    /// records it. Keepers run in registry order; none may read what another writes.
    fn keep(&self, _k: &mut Keep<'_, '_>) {}
}

/// The README's registry table (between its `registry` markers), generated from the rows and
/// `d`'s defaults: code, family, changelog bit, config table, weight, on or off, summary.
pub fn registry_table(d: &DetectorsConfig) -> String {
    let mut t = String::from(
        "| code | family | changelog bit | config table | default weight | on by default | flags |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for c in Code::ALL {
        let family = format!("{:?}", c.family()).to_ascii_lowercase();
        let bit = c.bit().trailing_zeros();
        let (table, weight, on) = match (c.table(), d.weight(c), d.enabled(c)) {
            (Some(t), Some(w), Some(on)) => (
                format!("`[detectors.{t}]`"),
                format!("{w}"),
                if on { "yes" } else { "no" }.to_string(),
            ),
            _ => ("(decision or feedback)".into(), "—".into(), "—".into()),
        };
        t.push_str(&format!(
            "| `{}` | {family} | {bit} | {table} | {weight} | {on} | {} |\n",
            c.as_str(),
            c.summary()
        ));
    }
    t
}

/// Maps a tail probability to a score: 0 at `p_start` or above, 1 at `p_full` or below,
/// linear in -log p between them (each factor of ten in rarity adds the same amount).
#[inline]
pub fn surprise(p: f64, p_start: f64, p_full: f64) -> f64 {
    if p.is_nan() || p >= p_start {
        return 0.0;
    }
    if p <= p_full {
        return 1.0;
    }
    ((p_start / p).ln() / (p_start / p_full).ln()).clamp(0.0, 1.0)
}

/// Linear ramp: 0 at or below `start`, 1 at or above `full`.
#[inline]
pub fn ramp(x: f64, start: f64, full: f64) -> f64 {
    ((x - start) / (full - start)).clamp(0.0, 1.0)
}

/// The user's typical money-out amount, exp of the mean of ln(amount); `None` before the
/// user's first money out (there is no population amount to borrow: it would belong to one
/// currency).
pub(crate) fn typical_amount(ctx: &Input<'_, '_>) -> Option<f64> {
    typical_of(ctx.profile, ctx.facts)
}

/// [`typical_amount`] from the profile (the pipeline counts tiny payments outside a detector).
pub(crate) fn typical_of(profile: &Profile, facts: &Facts) -> Option<f64> {
    profile.amount_stats(facts).map(|(mean, _)| mean.exp())
}

/// The user's own ln-amount habit in the event's currency, shrunk toward the prior: (effective
/// count, mean, standard deviation), the variance floored at `min_var` before and after the
/// shrinkage. `own` is [`Profile::amount_stats`].
pub(crate) fn own_habit(
    profile: &Profile,
    facts: &Facts,
    prior: &Prior,
    own: (f64, f64),
    min_var: f64,
) -> (f64, f64, f64) {
    let n = profile.amount_n(facts);
    let (mean, var) = prior.shrink_amount(n, (own.0, own.1.max(min_var)));
    (n, mean, var.max(min_var).sqrt())
}

/// The user's money-out events per second, shrunk toward the population's rate with the
/// profile's exposure in days as the evidence (a new user borrows the population's habit).
pub(crate) fn out_rate(ctx: &Input<'_, '_>) -> f64 {
    let (own_rate, exposure) = ctx
        .profile
        .out_rate(ctx.params, ctx.facts)
        .unwrap_or((0.0, 0.0));
    let w = ctx.prior.own_weight(exposure / 86_400.0);
    w * own_rate + (1.0 - w) * ctx.prior.out_rate
}

/// Money out the owner's usual way, where a large amount or an emptied balance is weak evidence
/// on its own: a merchant payment from a device the profile knows, or a transfer or withdrawal
/// to a payee the profile knows that is not in the young-payee watch (a payee first paid lately
/// is what a slow drain builds up, so it does not count as established).
pub(crate) fn familiar_outflow(ctx: &Input<'_, '_>) -> bool {
    use crate::engine::event::EventType;
    match (ctx.ev.kind, ctx.facts.counterparty) {
        (EventType::Payment, _) => matches!(ctx.facts.device, Some((_, true))),
        (EventType::Transfer | EventType::Withdrawal, Some((h, true))) => ctx
            .profile
            .young_payee(h, ctx.facts.t, ctx.params.young_payee_s)
            .is_none(),
        _ => false,
    }
}

/// How much a money-out event puts at stake, in [0, 1]: the largest of a new payee (a new
/// merchant counts half), the amount against the user's typical one (0 at typical, 1 at five
/// times), and the share of the balance it takes (0 at 30%, 1 at 80%). Detectors that flag a
/// context (a recent credential change) use it so that an ordinary purchase in that context
/// stays ordinary.
pub(crate) fn spend_risk(ctx: &Input<'_, '_>) -> f64 {
    let Some(amount) = ctx.ev.amount else {
        return 0.0;
    };
    let payee: f64 = match ctx.facts.counterparty {
        Some((_, false)) if ctx.ev.kind == crate::engine::event::EventType::Payment => 0.5,
        Some((_, false)) => 1.0,
        _ => 0.0,
    };
    let size = typical_amount(ctx).map_or(0.0, |t| ramp((amount / t).ln(), 0.0, 5f64.ln()));
    let drain = match ctx.profile.last_balance() {
        Some(b) if b > 0.0 => ramp(amount / b, 0.3, 0.8),
        _ => 0.0,
    };
    payee.max(size).max(drain)
}

/// Formats a money amount with thousands separators and two decimals.
pub(crate) fn money(v: f64) -> String {
    let cents = (v * 100.0).round() as i128;
    let (whole, frac) = (cents / 100, (cents % 100).abs());
    let digits = whole.abs().to_string();
    let mut out = String::with_capacity(digits.len() + 6);
    if whole < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(&format!(".{frac:02}"));
    out
}

/// Formats a duration in seconds as `45 s`, `12 min`, `3.5 h` or `9 days`.
pub(crate) fn duration(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.0} days", s / 86_400.0)
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Builds profiles and events for detector unit tests.
    use super::*;
    use crate::engine::event::parse_event;

    /// 2026-01-05T00:00:00Z, a Monday.
    pub const T0: i64 = 1_767_571_200_000;
    /// One day in ms.
    pub const DAY: i64 = 86_400_000;

    /// A helper holding config-derived state.
    pub struct Kit {
        pub params: Params,
        pub prior: Prior,
        pub population: Population,
        pub profile: Profile,
        /// List matches handed to the detector ([`Input::listed`]).
        pub listed: crate::engine::lists::Hits,
        seq: u64,
    }

    impl Kit {
        pub fn new() -> Kit {
            let cfg = crate::engine::pipeline::EngineConfig::default();
            Kit {
                params: cfg.params(),
                prior: cfg.prior(),
                population: Population::default(),
                profile: Profile::default(),
                listed: 0,
                seq: 0,
            }
        }

        /// JSON for an event; `extra` is spliced in as more fields.
        pub fn json(&mut self, ts_ms: i64, kind: &str, extra: &str) -> String {
            self.seq += 1;
            let sep = if extra.is_empty() { "" } else { "," };
            format!(
                r#"{{"event_id":"t{}","user_id":"u","ts":{ts_ms},"type":"{kind}"{sep}{extra}}}"#,
                self.seq
            )
        }

        /// Learns (and records) an event into the profile.
        pub fn learn(&mut self, ts_ms: i64, kind: &str, extra: &str) {
            let s = self.json(ts_ms, kind, extra);
            let e = parse_event(s.as_bytes()).unwrap();
            let f = self.profile.facts(&self.params, &e);
            self.profile.record_activity(&self.params, &e, &f, false);
            self.profile.learn(&self.params, &e, &f);
        }

        /// Thirty days of ordinary history: a daily payment around 100 at a known shop from
        /// device d1 in Shanghai at 10:00 and 19:00 local.
        pub fn history(&mut self) {
            for day in 0..30 {
                let t = T0 + day * DAY;
                for (h, amt, shop) in [
                    (2, 80.0 + day as f64, "shop-a"),
                    (11, 120.0 - day as f64, "shop-b"),
                ] {
                    self.learn(
                        t + h * 3_600_000,
                        "payment",
                        &format!(
                            r#""amount":{amt},"counterparty":"{shop}","device_id":"d1","ip":"203.0.113.7","geo":{{"lat":31.23,"lon":121.47}},"balance_after":5000"#
                        ),
                    );
                }
            }
        }

        /// Runs detector `d` on an event and returns its signals.
        pub fn run(&mut self, d: &dyn Detector, ts_ms: i64, kind: &str, extra: &str) -> Signals {
            let s = self.json(ts_ms, kind, extra);
            let e = parse_event(s.as_bytes()).unwrap();
            let f = self.profile.facts(&self.params, &e);
            let ctx = Input {
                ev: &e,
                profile: &self.profile,
                facts: &f,
                prior: &self.prior,
                population: &self.population,
                params: &self.params,
                listed: self.listed,
            };
            let mut out = Signals::default();
            d.detect(&ctx, &mut out);
            for s in out.iter() {
                assert!(!s.detail.to_string().is_empty());
                assert_eq!(s.code, d.code());
            }
            out
        }
    }

    /// The score of the only signal, or 0.
    pub fn score(s: &Signals) -> f64 {
        s.iter().map(|s| s.score).fold(0.0, f64::max)
    }

    /// The rendered detail of the first signal (empty when there is none).
    pub fn detail(s: &Signals) -> String {
        s.iter()
            .next()
            .map(|s| s.detail.to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surprise_and_ramp_shape() {
        assert_eq!(surprise(0.5, 0.01, 1e-5), 0.0);
        assert_eq!(surprise(1e-6, 0.01, 1e-5), 1.0);
        assert!((surprise(1e-3 * 0.316_227_766, 0.01, 1e-5) - 0.5).abs() < 1e-6);
        assert_eq!(ramp(0.3, 0.4, 0.9), 0.0);
        assert_eq!(ramp(0.65, 0.4, 0.9), 0.5);
    }

    #[test]
    fn shipped_codes_keep_their_changelog_bits() {
        // Snoozes and a case's evidence are stored in the changelog as masks of these bits.
        // A shipped code's bit never changes; a new code takes a bit no code has had (two
        // codes sharing a bit fail to compile) and joins this list once it has shipped.
        let shipped = [
            ("AMOUNT_OUTLIER", 0),
            ("NEW_DEVICE", 1),
            ("NEW_COUNTERPARTY", 2),
            ("NEW_LOCATION", 3),
            ("IMPOSSIBLE_TRAVEL", 4),
            ("VELOCITY_BURST", 5),
            ("UNUSUAL_HOUR", 6),
            ("CREDENTIAL_CHANGE_THEN_SPEND", 7),
            ("BALANCE_DRAIN", 8),
            ("FAILED_ATTEMPTS_BURST", 9),
            ("CARD_TESTING", 10),
            ("DORMANT_REACTIVATION", 11),
            ("NEW_RECHARGE_NUMBER", 12),
            ("ATO_CHAIN", 13),
            ("PAYEE_BUILDUP", 14),
            ("CONCURRENT_STRANGER", 15),
            ("STEP_UP_FAILED", 16),
            ("CONFIRMED_FRAUD", 17),
            ("BLOCKLISTED", 18),
            ("HABIT_RUN", 19),
        ];
        for (wire, bit) in shipped {
            let code = Code::parse(wire).unwrap_or_else(|| panic!("{wire} was shipped"));
            assert_eq!(code.bit(), 1 << bit, "{wire} must keep bit {bit}");
        }
    }

    /// The README's registry table is generated from the rows; a new or changed row fails
    /// here until it is regenerated with the command the message names.
    #[test]
    fn readme_registry_table_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md");
        let (start, end) = ("<!-- registry:start -->\n", "<!-- registry:end -->");
        let a = readme
            .find(start)
            .expect("README.md has the registry:start marker")
            + start.len();
        let b = readme[a..]
            .find(end)
            .expect("README.md has the registry:end marker")
            + a;
        let want = registry_table(&DetectorsConfig::default());
        if readme[a..b] == want {
            return;
        }
        if std::env::var_os("WG_UPDATE_README").is_some() {
            let updated = format!("{}{want}{}", &readme[..a], &readme[b..]);
            std::fs::write(&path, updated).expect("README.md written");
            return;
        }
        panic!(
            "README.md's detector registry table is out of date; regenerate it with \
             `WG_UPDATE_README=1 cargo test --release --lib readme_registry`"
        );
    }

    #[test]
    fn signals_sort_by_contribution() {
        let d = Detail::new(|_, f| f.write_str("x"), [0.0; 4]);
        let mut s = Signals::default();
        s.push(Code::NewDevice, 0.5, 0.4, d);
        s.push(Code::BalanceDrain, 0.9, 0.6, d);
        s.push(Code::UnusualHour, 0.0, 1.0, d); // dropped
        s.push(Code::AmountOutlier, 2.0, 0.1, d); // clamped to 1
        s.sort_by_contribution();
        let codes: Vec<_> = s.iter().map(|s| s.code).collect();
        assert_eq!(
            codes,
            [Code::BalanceDrain, Code::NewDevice, Code::AmountOutlier]
        );
        assert_eq!(s.get(Code::AmountOutlier).unwrap().score, 1.0);
        for c in Code::ALL {
            assert_eq!(Code::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(money(1234567.891), "1,234,567.89");
        assert_eq!(money(5.0), "5.00");
        assert_eq!(duration(30.0), "30 s");
        assert_eq!(duration(600.0), "10 min");
        assert_eq!(duration(7200.0), "2.0 h");
        assert_eq!(duration(86_400.0 * 9.0), "9 days");
    }
}
