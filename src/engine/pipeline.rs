//! The per-event pipeline: PURE `(state, event, now) → outcome`. The only entry the file and
//! Kafka adapters call.
//!
//! For each event: look up (or create) the user's profile, compute the event's facts against
//! the profile *as it was before the event*, run every detector, decide, apply the freeze
//! cool-down, then update the profile:
//! - short-term facts (recent money out, failures, credential changes, balance) always;
//! - the long-term baseline only when the action is `allow` (or `review`, with
//!   `decision.learn_reviewed`), never at `step_up` or above, so an attacker whose events are
//!   flagged cannot teach the baseline that their device, place or payee is normal;
//! - nothing at all for an `event_id` among the user's last four (remembered in the profile,
//!   so the changelog carries it): its decision is still emitted (with the same deterministic
//!   ids), but it is not counted twice.
//!
//! Detection uses event time only; `now` is stamped on outputs (`emitted_at`, `issued_at`), so
//! replaying the same events gives the same decisions.

use serde::{Deserialize, Serialize};

use crate::engine::baseline::{
    keys, BaselineConfig, Context, Params, Population, Prior, PriorConfig, ProfileStore,
};
use crate::engine::decision::DecisionConfig;
use crate::engine::decision::{Action, ChainHints, Decider, Decision, Habit};
use crate::engine::detect::DetectorsConfig;
use crate::engine::detect::{self, Detector, Input, Keep, Signals};
use crate::engine::event::{parse_event, Event, EventError, EventType};
use crate::engine::feedback::FeedbackConfig;
use crate::engine::feedback::{Case, Rules};
use crate::engine::notify::NotifyConfig;
use crate::engine::time::EpochMs;
use crate::engine::validate::{invalid, Checked};

/// The sections of the config the engine is built from, each owned by its module. The
/// service's sections (`[kafka]`, `[http]`, subscriptions, shadow, log) are not among them:
/// nothing in the engine reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineConfig {
    /// `[general]`: currency and time zone.
    pub general: GeneralConfig,
    /// `[baseline]`: per-user baseline sizes and decay.
    pub baseline: BaselineConfig,
    /// `[prior]`: the population prior for users with little history.
    pub prior: PriorConfig,
    /// `[detectors.*]`: one table per detector.
    pub detectors: DetectorsConfig,
    /// `[decision]`: score → action and command rules.
    pub decision: DecisionConfig,
    /// `[feedback]`: what step-up results, verdicts and unfreezes do.
    pub feedback: FeedbackConfig,
    /// `[notify]`: owner notifications.
    pub notify: NotifyConfig,
}

impl EngineConfig {
    /// The baseline's constants. Why here: besides `[baseline]` they take the zone and
    /// currency of `[general]` and two detectors' windows, and only the engine sees all three.
    pub fn params(&self) -> Params {
        Params::new(
            &self.baseline,
            Context {
                utc_offset_min: self.general.utc_offset_min(),
                currency: self.general.currency(),
                probation_s: (self.detectors.credential_change.window_hours * 3600.0) as u32,
                young_payee_s: (self.detectors.payee_buildup.window_days * 86_400.0) as u32,
                young_payee_min_history_s: (self.detectors.payee_buildup.min_history_days
                    * 86_400.0) as u32,
            },
        )
    }

    /// The population prior.
    pub fn prior(&self) -> Prior {
        Prior::new(&self.prior, self.baseline.shrinkage_k)
    }

    /// Checks every section's rules, in file order.
    pub fn validate(&self) -> Checked {
        self.general.validate()?;
        self.baseline.validate()?;
        self.prior.validate()?;
        self.detectors.validate()?;
        self.decision.validate()?;
        self.feedback.validate()?;
        self.notify.validate()
    }
}

/// `[general]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// Currency assumed when an event has none. Each user's amount baseline is in the currency
    /// of their first money out; money out in another currency is scored without the amount
    /// habit and not learned.
    pub default_currency: String,
    /// Users' local UTC offset, `±HH:MM`; the hour-of-day baseline is kept in this zone.
    pub utc_offset: String,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            default_currency: "CNY".into(),
            utc_offset: "+08:00".into(),
        }
    }
}

impl GeneralConfig {
    /// Checks the currency code and the offset.
    pub fn validate(&self) -> Checked {
        let c = self.default_currency.as_bytes();
        if c.len() != 3 || !c.iter().all(u8::is_ascii_alphabetic) {
            return Err(invalid(
                "general.default_currency",
                "must be a 3-letter code",
            ));
        }
        if crate::engine::time::parse_offset(&self.utc_offset).is_none() {
            return Err(invalid(
                "general.utc_offset",
                "must look like +08:00 or -05:30",
            ));
        }
        Ok(())
    }

    /// The offset in minutes (0 if it does not parse, which `validate` rules out).
    pub fn utc_offset_min(&self) -> i32 {
        crate::engine::time::parse_offset(&self.utc_offset).unwrap_or(0)
    }

    /// The default currency as three upper-case bytes.
    pub fn currency(&self) -> [u8; 3] {
        let c = self.default_currency.to_ascii_uppercase();
        let b = c.as_bytes();
        // validate() guarantees three ASCII letters.
        [
            b.first().copied().unwrap_or(b'X'),
            b.get(1).copied().unwrap_or(b'X'),
            b.get(2).copied().unwrap_or(b'X'),
        ]
    }
}

/// A command for downstream systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// Freeze the account (at most once per user per cool-down).
    FreezeAccount,
    /// Require re-authentication.
    RequireStepUp,
    /// Tell the owner what happened ([`crate::engine::notify`]); never with another command.
    NotifyUser,
}

impl CommandKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::FreezeAccount => "freeze_account",
            CommandKind::RequireStepUp => "require_step_up",
            CommandKind::NotifyUser => "notify_user",
        }
    }
}

/// Everything the pipeline concluded about one event.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Hash of the user id: the profile key.
    pub user_key: u64,
    /// The decision (one per valid event).
    pub decision: Decision,
    /// The command to issue, if any.
    pub command: Option<CommandKind>,
    /// Whether the event was learned into the long-term baseline.
    pub learned: bool,
    /// Whether the event id is one of the user's last four.
    pub duplicate: bool,
    /// Processing time, for `emitted_at` / `issued_at`.
    pub now_ms: EpochMs,
    /// For a feedback event: what it did.
    pub feedback: Option<crate::engine::feedback::Effect>,
    /// The event's matches on the lists ([`crate::engine::lists::Hits`]), for metrics.
    pub listed: crate::engine::lists::Hits,
    /// The notice of a `notify_user` command.
    pub notify: Option<crate::engine::notify::NotifyKind>,
    /// What the decision knew besides the signals (`calibrate` decides again from both).
    pub hints: ChainHints,
}

impl Outcome {
    /// A neutral outcome, overwritten before anyone reads it (batch processing fills results
    /// in two passes).
    fn placeholder(now_ms: EpochMs) -> Outcome {
        Outcome {
            user_key: 0,
            decision: Decision::from_signals(Signals::default()),
            command: None,
            learned: false,
            duplicate: false,
            now_ms,
            feedback: None,
            listed: 0,
            notify: None,
            hints: ChainHints::default(),
        }
    }

    /// Whether an alert is due: every decision that is not `allow`.
    pub fn alert(&self) -> bool {
        self.decision.action != Action::Allow
    }
}

/// Per-partition (or per-replay) mutable state: everything scoring depends on lives in the
/// profiles, so the changelog restores all of it. A clone is how a shadow candidate starts
/// from the live state (see [`crate::service::shadow`]).
#[derive(Clone)]
pub struct State {
    /// Profiles by user key.
    pub profiles: ProfileStore,
    /// The partition's learned population (see [`crate::engine::baseline::population`]).
    pub population: Population,
    /// Profiles removed so far, by reason (the adapters turn these into metrics).
    pub removed: Removed,
    /// Feedback state of the users who have any ([`crate::engine::feedback`]), by user key. Carried
    /// in the changelog with the user's profile.
    pub cases: Cases,
    /// List entries feedback produced (a confirmed fraud's blocks), for the adapter to publish
    /// and clear. They are already in `lists`.
    pub blocks: Vec<crate::engine::lists::ListEntry>,
    /// The allow and block lists this state scores against: the adapters share one table
    /// between partitions (the Kafka service refreshes it per batch from `walletguard.lists`);
    /// the blocks this state's own feedback produces are added at once (copy on write).
    pub lists: std::sync::Arc<crate::engine::lists::Lists>,
}

/// Money out against the user's own history in its currency (see
/// [`crate::engine::decision::HabitStakeConfig`]); `None` for other events or without a history.
fn habit(
    profile: &crate::engine::baseline::Profile,
    f: &crate::engine::baseline::Facts,
    ev: &Event,
) -> Option<Habit> {
    if !ev.kind.is_money_out() {
        return None;
    }
    let (amount, x) = (ev.amount?, f.log_amount?);
    let (mean, var) = profile.amount_stats(f)?;
    Some(Habit {
        n: profile.amount_n(f),
        ratio: amount / mean.exp().max(1e-9),
        dx: x - mean,
        var,
    })
}

/// An allow-listed device, network, payee or user is the owner's: its novelty is muted by
/// counting it as known (the owner-context rules then see it as familiar).
fn allow(listed: crate::engine::lists::Hits, f: &mut crate::engine::baseline::Facts) {
    use crate::engine::lists::{hit_bit, ListKind as K, ListName::Allow};
    let user = listed & hit_bit(K::User, Allow) != 0;
    let known = |x: &mut Option<(u64, bool)>| {
        if let Some(v) = x {
            v.1 = true;
        }
    };
    if user || listed & hit_bit(K::Device, Allow) != 0 {
        known(&mut f.device);
    }
    if user || listed & hit_bit(K::IpNetwork, Allow) != 0 {
        known(&mut f.ip);
    }
    if user || listed & hit_bit(K::Counterparty, Allow) != 0 {
        known(&mut f.counterparty);
    }
    if user {
        known(&mut f.cell);
    }
}

/// Feedback cases by user key.
pub type Cases = std::collections::HashMap<u64, Case, crate::engine::baseline::BuildIdentity>;

/// Counts of profiles removed by the lifecycle ([`Engine::maintain`] and expiry on use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Idle beyond `baseline.profile_ttl_days` (swept, or reset when the user came back).
    pub ttl: u64,
    /// Evicted by `baseline.max_profiles_per_partition`.
    pub cap: u64,
}

impl State {
    /// Empty state, its population started from `prior.amounts`.
    pub fn new(prior: &PriorConfig) -> State {
        let mut population = Population::default();
        let params = crate::engine::baseline::PopulationParams::new(prior);
        for a in &prior.amounts {
            let c = a.currency.to_ascii_uppercase();
            if let (Ok(code), Some(kind)) = (
                <[u8; 3]>::try_from(c.as_bytes()),
                crate::engine::event::EventType::parse(&a.kind),
            ) {
                population.seed(
                    &params,
                    code,
                    kind,
                    &crate::engine::baseline::prior::SEED_SHARES,
                    &a.ln_quantiles,
                    prior.min_weight,
                );
            }
        }
        State {
            profiles: ProfileStore::new(),
            population,
            removed: Removed::default(),
            cases: Cases::default(),
            blocks: Vec::new(),
            lists: Default::default(),
        }
    }
}

/// The event-time horizon a maintenance sweep may use: the newest event time seen, but never
/// more than a day past the wall clock, so one event stamped far in the future cannot expire
/// every profile.
pub fn sweep_clock(newest_event_ms: EpochMs, now_ms: EpochMs) -> EpochMs {
    newest_event_ms.min(now_ms.saturating_add(86_400_000))
}

/// The immutable scoring engine built from one config. Cheap to share across partitions;
/// a config reload builds a new one.
pub struct Engine {
    config: EngineConfig,
    params: Params,
    prior: Prior,
    detectors: Vec<Box<dyn Detector>>,
    decider: Decider,
    /// Every detector that keeps evidence of its own, enabled or not (see
    /// [`Detector::keep`]).
    keepers: Vec<Box<dyn Detector>>,
    cred_window_s: u32,
    freeze_cooldown_s: u32,
    learn_below: Action,
    feedback: Rules,
    notifier: crate::engine::notify::Notifier,
    ttl_s: u32,
    max_profiles: usize,
}

impl Engine {
    /// Builds the engine from a validated config: its own sections, or the whole loaded
    /// config (which hands over only those).
    pub fn new(config: impl Into<EngineConfig>) -> Engine {
        let config: EngineConfig = config.into();
        Engine {
            params: config.params(),
            prior: config.prior(),
            detectors: detect::build(&config.detectors),
            decider: Decider::new(&config.decision),
            keepers: detect::keepers(&config.detectors),
            cred_window_s: (config.detectors.credential_change.window_hours * 3600.0) as u32,
            freeze_cooldown_s: (config.decision.freeze_cooldown_hours * 3600.0) as u32,
            ttl_s: (config.baseline.profile_ttl_days * 86_400.0).min(u32::MAX as f64) as u32,
            max_profiles: config.baseline.max_profiles_per_partition,
            feedback: Rules::new(&config.feedback).with_notify_interval(
                (config.notify.min_interval_minutes * 60.0).clamp(0.0, u32::MAX as f64) as u32,
            ),
            notifier: crate::engine::notify::Notifier::new(
                &config.notify,
                config.general.utc_offset_min(),
            ),
            learn_below: if config.decision.learn_reviewed {
                Action::StepUp
            } else {
                Action::Review
            },
            config,
        }
    }

    /// The sections this engine was built from.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The baseline constants derived from the config (the changelog codec needs the set
    /// layout).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The message of a `notify_user` command for `ev`'s outcome `o`, rendered from
    /// `[notify]`'s templates (`None` for other commands). [`crate::engine::output::write_command`]
    /// writes it into the command record.
    pub fn command_message(
        &self,
        ev: &Event<'_>,
        o: &Outcome,
        kind: CommandKind,
    ) -> Option<String> {
        match (kind, o.notify) {
            (CommandKind::NotifyUser, Some(k)) => Some(self.notifier.message(k, ev)),
            _ => None,
        }
    }

    /// Fresh state for this engine's config.
    pub fn new_state(&self) -> State {
        State::new(&self.config.prior)
    }

    /// Parses raw bytes and processes the event. On error, nothing in `state` changes.
    pub fn process_bytes<'a>(
        &self,
        state: &mut State,
        raw: &'a [u8],
        now_ms: EpochMs,
    ) -> Result<(Event<'a>, Outcome), EventError> {
        let ev = parse_event(raw)?;
        let out = self.process(state, &ev, now_ms);
        Ok((ev, out))
    }

    /// Processes a batch of raw events, in order, appending one result per input to `out`.
    ///
    /// Same results as calling [`Engine::process_bytes`] on each in turn; faster, because all
    /// events of the batch are parsed and their profiles prefetched before the first is scored,
    /// so the memory misses of a large user population overlap. Adapters that receive events
    /// in batches (a Kafka poll) should use it; `replay` reads line by line and does not.
    pub fn process_batch<'a>(
        &self,
        state: &mut State,
        raws: &[&'a [u8]],
        now_ms: EpochMs,
        out: &mut Vec<Result<(Event<'a>, Outcome), EventError>>,
    ) {
        let start = out.len();
        for raw in raws {
            match parse_event(raw) {
                Ok(ev) => {
                    state.profiles.prefetch(keys::user_key(&ev.user_id));
                    out.push(Ok((ev, Outcome::placeholder(now_ms))));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        for (ev, o) in out[start..].iter_mut().flatten() {
            *o = self.process(state, ev, now_ms);
        }
    }

    /// Keeps memory bounded: removes the profiles idle beyond `baseline.profile_ttl_days` as
    /// of `clock_ms` (event time; see [`sweep_clock`]), then, above
    /// `baseline.max_profiles_per_partition`, the least recently active down to 95% of it
    /// (so that the O(n) eviction runs once per 5% of new users, not per event). Returns the
    /// removed keys, ascending, for the caller to tombstone.
    ///
    /// Why removal cannot change a decision: an expired profile is reset when its user comes
    /// back anyway (see [`Engine::process`]), so a sweep only frees memory early. An eviction
    /// by the cap does change the evicted user's next decisions; it is a guard against floods
    /// of ids, and it is deterministic given the same profiles.
    pub fn maintain(&self, state: &mut State, clock_ms: EpochMs) -> Vec<u64> {
        let mut gone = Vec::new();
        if self.ttl_s > 0 {
            let cutoff = crate::engine::time::to_tick(clock_ms).saturating_sub(self.ttl_s);
            if cutoff > 0 {
                gone = state.profiles.remove_idle(cutoff);
                state.removed.ttl += gone.len() as u64;
            }
        }
        if self.max_profiles > 0 && state.profiles.len() > self.max_profiles {
            let keep = self.max_profiles - self.max_profiles / 20;
            let evicted = state.profiles.evict_to(keep);
            state.removed.cap += evicted.len() as u64;
            gone.extend(evicted);
            gone.sort_unstable();
        }
        // A case goes with its profile. Spent cases are dropped when their user's next event
        // finds them spent, never by the clock: a sweep must not change a decision, and a
        // user's next event may be older than the partition's newest.
        for key in &gone {
            state.cases.remove(key);
        }
        gone
    }

    /// True when [`Engine::maintain`] has something to do at the cap (cheap; call it per batch).
    pub fn over_cap(&self, state: &State) -> bool {
        self.max_profiles > 0 && state.profiles.len() > self.max_profiles
    }

    /// Scores one validated event and updates the state (see the module docs).
    pub fn process(&self, state: &mut State, ev: &Event<'_>, now_ms: EpochMs) -> Outcome {
        let user_key = keys::user_key(&ev.user_id);
        let profile = state.profiles.get_or_create(user_key);
        if self.ttl_s > 0 {
            // Expiry depends on the user's own history only, never on when a sweep ran: a
            // profile a sweep removed and one still held give the same decision.
            let last = profile.last_activity();
            if last != 0 && crate::engine::time::to_tick(ev.ts_ms).saturating_sub(last) > self.ttl_s
            {
                *profile = crate::engine::baseline::Profile::default();
                state.cases.remove(&user_key);
                state.removed.ttl += 1;
            }
        }
        let duplicate = profile.check_and_remember(keys::event(user_key, &ev.event_id));
        if ev.kind.is_feedback() {
            return self.process_feedback(state, ev, now_ms, user_key, duplicate);
        }
        let mut facts = profile.facts(&self.params, ev);
        let listed = state.lists.match_event(ev, user_key);
        if listed & 0xf0 != 0 {
            allow(listed, &mut facts);
        }

        let mut decision = Decision::from_signals(Signals::default());
        // Snoozes: muted codes still score, but count for nothing (see `crate::engine::feedback`).
        if !state.cases.is_empty() {
            if let Some(case) = state.cases.get(&user_key) {
                if self.feedback.is_spent(case, facts.t) {
                    state.cases.remove(&user_key);
                } else {
                    decision
                        .signals
                        .set_mute(self.feedback.mute_mask(case, &facts));
                }
            }
        }
        {
            let ctx = Input {
                ev,
                profile,
                facts: &facts,
                prior: &self.prior,
                population: &state.population,
                params: &self.params,
                listed,
            };
            for d in &self.detectors {
                d.detect(&ctx, &mut decision.signals);
            }
        }
        let new_payee = matches!(facts.counterparty, Some((_, false)));
        let familiar = |f: Option<(u64, bool)>| matches!(f, Some((_, true))) as u8;
        let hints = ChainHints {
            familiar_fields: familiar(facts.device) + familiar(facts.ip) + familiar(facts.cell),
            money_out: ev.kind.is_money_out(),
            change_from_new_device: profile.reset_or_mfa_within(facts.t, self.cred_window_s, true),
            new_payee,
            is_payment: ev.kind == EventType::Payment,
            reset_or_mfa_change: profile.reset_or_mfa_within(facts.t, self.cred_window_s, false),
            habit: habit(profile, &facts, ev),
        };
        self.decider.decide_in_place(
            &mut decision,
            hints,
            Some((state.population.rates(), ev.kind)),
        );

        let mut command = match decision.action {
            Action::Freeze => {
                if profile.freeze_cooled(facts.t, self.freeze_cooldown_s) {
                    // Any issued freeze starts the cool-down, a duplicate's included, so at most
                    // one freeze_account leaves per user per window whatever arrives twice.
                    profile.note_freeze(facts.t);
                    Some(CommandKind::FreezeAccount)
                } else {
                    None
                }
            }
            Action::StepUp => Some(CommandKind::RequireStepUp),
            _ => None,
        };

        // The owner hears of a login or money out from somewhere new, or reviewed money out,
        // when nothing else reaches them and not more than once per rate-limit window.
        let mut notify = None;
        if command.is_none() && !duplicate && self.notifier.enabled() {
            let history = profile.all_n as f64;
            if let Some(k) = self.notifier.kind(
                ev,
                &facts,
                history,
                profile.last_geo().map(|(lat, lon, _)| (lat, lon)),
                decision.action,
            ) {
                let case = state.cases.entry(user_key).or_default();
                if case.notified == 0
                    || facts.t.saturating_sub(case.notified) >= self.notifier.interval_s()
                {
                    case.notified = facts.t.max(1);
                    notify = Some(k);
                    command = Some(CommandKind::NotifyUser);
                }
            }
        }

        let mut learned = false;
        if !duplicate && decision.action >= Action::Review && self.feedback.enabled() {
            let e = self.feedback.evidence(user_key, ev, &facts, &decision);
            state.cases.entry(user_key).or_default().remember(e);
        }
        if !duplicate {
            state
                .population
                .observe_signals(&self.prior.pop, ev.kind, &decision.signals);
            let share = self.decider.budget_share();
            if share > 0.0 {
                state
                    .population
                    .observe_score(&self.prior.pop, decision.raw_score, share);
            }
            let learn = decision.configured < self.learn_below;
            let mut keep = Keep {
                ev,
                profile,
                facts: &facts,
                prior: &self.prior,
                population: &mut state.population,
                params: &self.params,
                learn,
                tiny_new_merchant: false,
            };
            for d in &self.keepers {
                d.keep(&mut keep);
            }
            let tiny_new = keep.tiny_new_merchant;
            profile.record_activity(&self.params, ev, &facts, tiny_new);
            if learn {
                profile.learn(&self.params, ev, &facts);
                learned = true;
                state.population.observe(
                    &self.prior.pop,
                    ev,
                    ev.currency.unwrap_or(self.params.currency),
                    facts.hour,
                    facts.log_amount,
                );
            }
        }
        Outcome {
            user_key,
            decision,
            command,
            learned,
            duplicate,
            now_ms,
            feedback: None,
            listed,
            notify,
            hints,
        }
    }

    /// A feedback event ([`crate::engine::feedback`]): applied once (a duplicate gets the same kind of
    /// decision but changes nothing), never scored or learned.
    fn process_feedback(
        &self,
        state: &mut State,
        ev: &Event<'_>,
        now_ms: EpochMs,
        user_key: u64,
        duplicate: bool,
    ) -> Outcome {
        let t = crate::engine::time::to_tick(ev.ts_ms);
        let profile = state.profiles.get_or_create(user_key);
        let mut scratch_case;
        let mut scratch_blocks = Vec::new();
        let (case, blocks) = if duplicate {
            // Apply to copies: the same decision, no second effect.
            scratch_case = state.cases.get(&user_key).cloned().unwrap_or_default();
            (&mut scratch_case, &mut scratch_blocks)
        } else {
            (state.cases.entry(user_key).or_default(), &mut state.blocks)
        };
        let mut scratch_profile;
        let profile = if duplicate {
            scratch_profile = *profile;
            &mut scratch_profile
        } else {
            profile
        };
        let applied = self
            .feedback
            .apply(&self.params, profile, case, user_key, ev, blocks);
        let mut decision = applied.decision;
        let c = &self.config.decision;
        decision.score = match decision.action {
            Action::Freeze => 1.0,
            Action::StepUp => c.step_up,
            Action::Review => c.review,
            Action::Allow => 0.0,
        };
        decision.severity = self.decider.severity(decision.score);
        let command = match decision.action {
            Action::Freeze if profile.freeze_cooled(t, self.freeze_cooldown_s) => {
                profile.note_freeze(t);
                Some(CommandKind::FreezeAccount)
            }
            _ => None,
        };
        if !duplicate && self.feedback.is_spent(case, t) {
            state.cases.remove(&user_key);
        }
        if !duplicate && !state.blocks.is_empty() {
            // The state's own blocks apply to its next event at once, in replay and in the
            // service alike; other partitions see them when the table comes back round.
            let lists = std::sync::Arc::make_mut(&mut state.lists);
            for e in &state.blocks {
                // Entries built by the feedback rules always parse.
                let _ = lists.upsert(&e.key(), e, ev.ts_ms);
            }
        }
        Outcome {
            user_key,
            decision,
            command,
            learned: false,
            duplicate,
            now_ms,
            feedback: Some(applied.effect),
            listed: 0,
            notify: None,
            hints: ChainHints::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::output;

    fn lines() -> Vec<String> {
        let mut v = Vec::new();
        for i in 0..400u64 {
            let user = i % 7;
            let kind = ["payment", "login", "transfer", "password_reset"][(i % 4) as usize];
            v.push(format!(
                r#"{{"event_id":"e{i}","user_id":"u{user}","ts":{},"type":"{kind}","amount":{},"counterparty":"c{}","device_id":"d{}"}}"#,
                1_790_000_000_000u64 + i * 60_000,
                10 + (i * 37) % 900,
                i % 5,
                i % 3
            ));
            if i % 50 == 0 {
                v.push("{broken".into());
            }
        }
        v
    }

    #[test]
    fn batch_processing_equals_one_by_one() {
        let engine = Engine::new(EngineConfig::default());
        let lines = lines();
        let raws: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        let mut a = engine.new_state();
        let mut one = Vec::new();
        for r in &raws {
            match engine.process_bytes(&mut a, r, 5) {
                Ok((ev, o)) => output::write_decision(&mut one, &ev, &o),
                Err(e) => one.extend_from_slice(e.to_string().as_bytes()),
            }
        }
        let mut b = engine.new_state();
        let mut batched = Vec::new();
        let mut results = Vec::new();
        for chunk in raws.chunks(32) {
            results.clear();
            engine.process_batch(&mut b, chunk, 5, &mut results);
            assert_eq!(results.len(), chunk.len());
            for r in &results {
                match r {
                    Ok((ev, o)) => output::write_decision(&mut batched, ev, o),
                    Err(e) => batched.extend_from_slice(e.to_string().as_bytes()),
                }
            }
        }
        assert_eq!(
            String::from_utf8(one).unwrap(),
            String::from_utf8(batched).unwrap()
        );
        assert_eq!(a.profiles.len(), b.profiles.len());
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;
    use crate::engine::output;

    fn ev(user: &str, i: u64, day: u64) -> String {
        format!(
            r#"{{"event_id":"e{i}","user_id":"{user}","ts":{},"type":"transfer","amount":{},"counterparty":"c{}","device_id":"d1"}}"#,
            1_790_000_000_000u64 + day * 86_400_000 + i * 60_000,
            50 + (i * 37) % 400,
            i % 3
        )
    }

    fn decide(engine: &Engine, state: &mut State, line: &str) -> String {
        let (e, o) = engine.process_bytes(state, line.as_bytes(), 0).unwrap();
        let mut b = Vec::new();
        output::write_decision(&mut b, &e, &o);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn sweeping_idle_profiles_never_changes_a_decision() {
        let mut cfg = EngineConfig::default();
        cfg.baseline.profile_ttl_days = 10.0;
        let engine = Engine::new(cfg);
        // u1 is idle for 30 days between its two bursts; u2 is active throughout.
        let mut lines = Vec::new();
        for i in 0..20 {
            lines.push(ev("u1", i, 0));
        }
        for d in 0..40 {
            lines.push(ev("u2", 100 + d, d));
        }
        for i in 20..30 {
            lines.push(ev("u1", i, 30));
        }
        let (mut swept, mut kept) = (engine.new_state(), engine.new_state());
        let mut removed = Vec::new();
        for (n, l) in lines.iter().enumerate() {
            let a = decide(&engine, &mut swept, l);
            let b = decide(&engine, &mut kept, l);
            assert_eq!(a, b, "line {n}");
            let clock = 1_790_000_000_000 + (n as i64 / 2) * 86_400_000;
            removed.extend(engine.maintain(&mut swept, clock));
        }
        assert!(
            !removed.is_empty(),
            "the sweep removed u1 while it was idle"
        );
        assert!(
            swept.removed.ttl >= 1 && kept.removed.ttl == 1,
            "u1 reset on return"
        );
    }

    #[test]
    fn a_flood_of_ids_stays_under_the_cap() {
        let mut cfg = EngineConfig::default();
        cfg.baseline.max_profiles_per_partition = 1_000;
        let engine = Engine::new(cfg);
        let mut state = engine.new_state();
        for i in 0..20_000u64 {
            decide(&engine, &mut state, &ev(&format!("flood-{i}"), i, 0));
            if engine.over_cap(&state) {
                engine.maintain(&mut state, 0);
            }
            assert!(state.profiles.len() <= 1_000);
        }
        assert!(state.removed.cap >= 19_000);
        // The most recent users survive.
        assert!(state.profiles.get(keys::user_key("flood-19999")).is_some());
        assert!(state.profiles.get(keys::user_key("flood-0")).is_none());
    }
}
