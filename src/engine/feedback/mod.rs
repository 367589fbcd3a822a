//! Feedback closes the loop (contract v2): step-up results, analyst verdicts and unfreezes,
//! arriving in the user's partition in order with their other events, change how the user is
//! scored from then on. Pure: the pipeline calls [`Rules::apply`] with the user's profile and
//! [`Case`]; time is the feedback event's own.
//!
//! | feedback | effect |
//! |---|---|
//! | `step_up_result` `passed` | the challenged event is learned as if allowed (device, network, place, payee, amount; [`Profile::learn_recalled`]); the codes that fired are snoozed for that device and payee for `trust_hours` (no re-challenge for the same evidence); a `device_id` in the result is learned too; failures reset |
//! | `step_up_result` `failed` | counted; at `failures_to_freeze` within `failure_window_hours`: `freeze` (`STEP_UP_FAILED`), else `review` |
//! | `case_verdict` `false_positive` | the codes that fired are snoozed for that device and payee for `snooze_days`, the event is learned, the freeze cool-down is cleared |
//! | `case_verdict` `confirmed_fraud` | `freeze` (`CONFIRMED_FRAUD`) unless a freeze is cooling down; snoozes and failures cleared; the event's payee, and its device if it was not the owner's, published as global blocks for `block_days` |
//! | `account_unfrozen` | the freeze cool-down is cleared; the frozen event's codes are snoozed for its evidence for `unfreeze_snooze_days`, so a new freeze needs new evidence |
//!
//! Feedback about an event the case no longer remembers (older than `remember_days`, or
//! pushed out by newer alerts) is applied as far as it can be (a cool-down cleared, a result's
//! device learned, a freeze issued) and reported as unmatched; it never fails.
//!
//! A snooze mutes the codes that fired and the other codes of their families
//! ([`with_families`]), for events with the same device and payee as the judged event.
//!
//! Snoozed detectors still compute their score: the decision lists them, marked, after the
//! counted reasons ([`crate::engine::detect::Signals::snoozed`]).

pub mod case;
pub mod record;

pub use case::{event_fp, Alerted, Case, CaseError, Snooze};

use serde::{Deserialize, Serialize};

use crate::engine::baseline::{keys, Facts, Params, Profile, Recalled, SetKind};
use crate::engine::decision::{family, Action, Decision};
use crate::engine::detect::{Code, Detail, Signals};
use crate::engine::event::{Event, EventType, Feedback};
use crate::engine::lists::{ListEntry, ListKind};
use crate::engine::time::{to_tick, Tick};
use crate::engine::validate::{invalid, positive, Checked};

/// `[feedback]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Remember alerted events and apply feedback. Off: feedback events are decided `allow`
    /// and change nothing.
    pub enabled: bool,
    /// How long an alerted event's evidence is kept for feedback about it, days.
    pub remember_days: f64,
    /// After a passed step-up, how long the codes that fired stay snoozed for the same device
    /// and payee, hours.
    pub trust_hours: f64,
    /// After a false-positive verdict, how long the codes that fired stay snoozed for the
    /// same device and payee, days.
    pub snooze_days: f64,
    /// After an unfreeze, how long the frozen event's codes stay snoozed for its evidence,
    /// days.
    pub unfreeze_snooze_days: f64,
    /// Failed step-ups within `failure_window_hours` that freeze the account.
    pub failures_to_freeze: u8,
    /// The window failed step-ups are counted in, hours.
    pub failure_window_hours: f64,
    /// Publish a confirmed fraud's payee (and a stranger's device) as global blocks.
    pub publish_blocks: bool,
    /// How long a published block lasts, days.
    pub block_days: f64,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            enabled: true,
            remember_days: 14.0,
            trust_hours: 72.0,
            snooze_days: 30.0,
            unfreeze_snooze_days: 7.0,
            failures_to_freeze: 1,
            failure_window_hours: 24.0,
            publish_blocks: true,
            block_days: 90.0,
        }
    }
}

impl FeedbackConfig {
    /// Checks the rules of `[feedback]`; the error names the key.
    pub fn validate(&self) -> Checked {
        for (k, v) in [
            ("feedback.remember_days", self.remember_days),
            ("feedback.trust_hours", self.trust_hours),
            ("feedback.snooze_days", self.snooze_days),
            ("feedback.unfreeze_snooze_days", self.unfreeze_snooze_days),
            ("feedback.failure_window_hours", self.failure_window_hours),
            ("feedback.block_days", self.block_days),
        ] {
            positive(k, v)?;
            if v > 3650.0 * 24.0 {
                return Err(invalid(k, "must be at most ten years"));
            }
        }
        if self.failures_to_freeze == 0 {
            return Err(invalid("feedback.failures_to_freeze", "must be at least 1"));
        }
        Ok(())
    }
}

/// What a feedback event did, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    /// What it said.
    pub kind: Feedback,
    /// Whether the event it refers to was found in the case.
    pub matched: bool,
}

/// The result of [`Rules::apply`].
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// The decision to emit for the feedback event (score, action, reasons; severity is the
    /// caller's, from its thresholds).
    pub decision: Decision,
    /// What it did.
    pub effect: Effect,
}

/// `codes` and every code of their families ([`crate::engine::decision::family`]). Why snoozes mute
/// families, not only the codes that fired: a family reads one fact several ways, and the
/// fact was judged. A payee the owner vouched for is not a "young payee being built up" on
/// the next transfer either, nor is an amount an outlier once it is a drain of the balance.
pub fn with_families(codes: u32) -> u32 {
    let fams = Code::ALL
        .iter()
        .filter(|c| codes & c.bit() != 0)
        .map(|c| family(*c))
        .collect::<Vec<_>>();
    Code::ALL
        .iter()
        .filter(|c| fams.contains(&family(**c)))
        .fold(codes, |m, c| m | c.bit())
}

/// [`FeedbackConfig`] in ticks, ready for the pipeline.
#[derive(Debug, Clone)]
pub struct Rules {
    cfg: FeedbackConfig,
    remember_s: u32,
    trust_s: u32,
    snooze_s: u32,
    unfreeze_s: u32,
    window_s: u32,
    block_ms: i64,
    /// The `notify_user` rate limit, seconds (a case with a recent notice is not spent).
    notify_s: u32,
}

fn secs(days: f64) -> u32 {
    (days * 86_400.0).clamp(0.0, u32::MAX as f64) as u32
}

impl Rules {
    /// From config.
    pub fn new(cfg: &FeedbackConfig) -> Rules {
        Rules {
            cfg: cfg.clone(),
            remember_s: secs(cfg.remember_days),
            trust_s: secs(cfg.trust_hours / 24.0),
            snooze_s: secs(cfg.snooze_days),
            unfreeze_s: secs(cfg.unfreeze_snooze_days),
            window_s: secs(cfg.failure_window_hours / 24.0),
            block_ms: (cfg.block_days * 86_400_000.0) as i64,
            notify_s: 0,
        }
    }

    /// Whether feedback is on.
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// The codes a case mutes for an event with facts `f`.
    pub fn mute_mask(&self, case: &Case, f: &Facts) -> u32 {
        case.mute_mask(f.t, f.device.map(|d| d.0), f.counterparty.map(|c| c.0))
    }

    /// The evidence to remember of an alerted event.
    pub fn evidence(&self, user_key: u64, ev: &Event<'_>, f: &Facts, d: &Decision) -> Alerted {
        Alerted {
            event: event_fp(keys::event(user_key, &ev.event_id)),
            t: f.t,
            action: d.action,
            codes: d.signals.mask(),
            device_known: matches!(f.device, Some((_, true))),
            recalled: Recalled::of(ev, f),
            counterparty_id: ev
                .counterparty
                .as_deref()
                // Merchants are paid by many honest users: a confirmed fraud's payment is no
                // reason to block the shop for everyone (an analyst can list it by hand).
                .filter(|_| ev.kind.is_money_out() && ev.kind != EventType::Payment)
                .map(Box::from),
            device_id: ev.device_id.as_deref().map(Box::from),
        }
    }

    /// Whether a case holds nothing that can matter at `t` or later (a sweep may drop it; no
    /// decision changes, because every use checks the same times).
    pub fn is_spent(&self, case: &Case, t: Tick) -> bool {
        case.is_spent(
            t,
            t.saturating_sub(self.remember_s),
            t.saturating_sub(self.window_s),
            t.saturating_sub(self.notify_s),
        )
    }

    /// The same rules, keeping a case while its last `notify_user` is within `s` seconds.
    pub fn with_notify_interval(mut self, s: u32) -> Rules {
        self.notify_s = s;
        self
    }

    /// Applies feedback event `ev` (of user `user_key`) to the user's `profile` and `case`.
    /// Block entries to publish are appended to `blocks`. The decision's action is `freeze`
    /// (the caller applies its cool-down), `review` or `allow`; the caller places the score
    /// at its thresholds.
    pub fn apply(
        &self,
        params: &Params,
        profile: &mut Profile,
        case: &mut Case,
        user_key: u64,
        ev: &Event<'_>,
        blocks: &mut Vec<ListEntry>,
    ) -> Applied {
        let t = to_tick(ev.ts_ms);
        let kind = ev.feedback.unwrap_or(Feedback::Unfrozen);
        let oldest = t.saturating_sub(self.remember_s);
        let found = ev
            .ref_event_id
            .as_deref()
            .map(|r| event_fp(keys::event(user_key, r)))
            .and_then(|fp| case.find(fp, oldest))
            .cloned();
        let mut decision = Decision::from_signals(Signals::default());
        let scope = |e: &Alerted, codes: u32, until: Tick| Snooze {
            codes: with_families(codes),
            device: e.recalled.device,
            payee: e.recalled.counterparty,
            until,
        };
        let mut matched = found.is_some();
        if !self.cfg.enabled {
            return Applied {
                decision,
                effect: Effect {
                    kind,
                    matched: false,
                },
            };
        }
        match kind {
            Feedback::Passed => {
                if let Some(e) = &found {
                    profile.learn_recalled(params, &e.recalled, t);
                    if e.codes != 0 {
                        case.snooze(scope(e, e.codes, t.saturating_add(self.trust_s)), t);
                    }
                }
                if let Some(d) = ev.device_id.as_deref() {
                    profile.remember(params, SetKind::Device, keys::device(d));
                }
                case.failures = 0;
            }
            Feedback::Failed => {
                if case.failures == 0 || t.saturating_sub(case.failures_since) > self.window_s {
                    case.failures = 0;
                    case.failures_since = t;
                }
                case.failures = case.failures.saturating_add(1);
                let n = case.failures;
                let freeze = n >= self.cfg.failures_to_freeze;
                decision.signals.push(
                    Code::StepUpFailed,
                    1.0,
                    1.0,
                    Detail::new(
                        |a, f| {
                            write!(
                                f,
                                "step-up challenge failed ({} of {} within the window)",
                                a[0], a[1]
                            )
                        },
                        [n as f64, self.cfg.failures_to_freeze as f64, 0.0, 0.0],
                    ),
                );
                decision.action = if freeze {
                    Action::Freeze
                } else {
                    Action::Review
                };
            }
            Feedback::FalsePositive => {
                if let Some(e) = &found {
                    if e.codes != 0 {
                        case.snooze(scope(e, e.codes, t.saturating_add(self.snooze_s)), t);
                    }
                    profile.learn_recalled(params, &e.recalled, t);
                }
                profile.last_freeze = 0;
                case.failures = 0;
            }
            Feedback::ConfirmedFraud => {
                case.snoozes = Default::default();
                case.failures = 0;
                decision.signals.push(
                    Code::ConfirmedFraud,
                    1.0,
                    1.0,
                    Detail::new(
                        |_, f| f.write_str("an analyst confirmed fraud on this account"),
                        [0.0; 4],
                    ),
                );
                decision.action = Action::Freeze;
                if let (Some(e), true) = (&found, self.cfg.publish_blocks) {
                    let until = ev.ts_ms.saturating_add(self.block_ms);
                    if let Some(c) = &e.counterparty_id {
                        blocks.push(ListEntry::global_block(
                            ListKind::Counterparty,
                            c,
                            "confirmed fraud: paid by a taken-over account",
                            ev.ts_ms,
                            until,
                        ));
                    }
                    if let (Some(d), false) = (&e.device_id, e.device_known) {
                        blocks.push(ListEntry::global_block(
                            ListKind::Device,
                            d,
                            "confirmed fraud: device used in a takeover",
                            ev.ts_ms,
                            until,
                        ));
                    }
                }
            }
            Feedback::Unfrozen => {
                profile.last_freeze = 0;
                let frozen = match &found {
                    Some(e) => Some(e.clone()),
                    None if ev.ref_event_id.is_none() => case.latest_freeze(oldest).cloned(),
                    None => None,
                };
                matched = frozen.is_some();
                if let Some(e) = frozen {
                    if e.codes != 0 {
                        case.snooze(scope(&e, e.codes, t.saturating_add(self.unfreeze_s)), t);
                    }
                }
                case.failures = 0;
            }
        }
        Applied {
            decision,
            effect: Effect { kind, matched },
        }
    }
}
