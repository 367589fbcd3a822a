//! `walletguard demo`: simulated wallet traffic with hidden attacks, scored live by the real
//! pipeline, with the interesting decisions printed as they happen and a scorecard at the end.
//!
//! - [`broker`]: the default: the whole service ([`crate::service::run`]) on an embedded
//!   Kafka-protocol broker, the decisions read back from its topics.
//! - [`offline`]: `--offline`: the pipeline in process, no broker.
//! - this file: what both share: options, the traffic plan, the live lines and the
//!   scorecard.
//!
//! Both run the same plan. The first [`MIN_HISTORY_DAYS`] simulated days (no attack starts
//! before them) are replayed at full speed without printing, to warm the baselines; then the
//! traffic streams live at `rate`, so attacks and freezes show within seconds at any rate.
//! When the simulated window (`days`) runs out, the same users go on into a new window with
//! new attacks ([`crate::tools::sim::Simulator::continuous`]), until the duration or Ctrl-C.
//!
//! The simulator's labels only annotate the printed lines and the scorecard; the pipeline
//! never sees them.

pub mod broker;
pub mod offline;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Write};
use std::time::Duration;

use crate::engine::decision::Action;
use crate::engine::pipeline::CommandKind;
use crate::engine::time::{format_rfc3339, EpochMs};
use crate::tools::sim::{Scenario, SimEvent, SimParams, MIN_HISTORY_DAYS};

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Simulation size and seed; `days` is the length of one simulated window.
    pub sim: SimParams,
    /// Simulated events per second of wall time once live; 0 = as fast as possible.
    pub rate: u64,
    /// Stop after this much wall time (`None`: at Ctrl-C, or after `windows`).
    pub duration: Option<Duration>,
    /// Stop after this many simulated windows (`None`: go on into new ones).
    pub windows: Option<u32>,
    /// Print `review` decisions too (not only step-ups and freezes).
    pub show_reviews: bool,
    /// ANSI colours.
    pub color: bool,
}

impl DemoOptions {
    /// Event time from which the traffic streams live at `rate`: the end of the warm-up days.
    /// Everything before it is replayed at full speed and not printed.
    pub fn live_from(&self) -> EpochMs {
        let warm = if self.sim.days > MIN_HISTORY_DAYS {
            MIN_HISTORY_DAYS
        } else {
            0
        };
        self.sim.day0_ms() + warm as i64 * 86_400_000
    }

    /// Event time at which the traffic ends, when `windows` is set.
    pub fn end_ts(&self) -> Option<EpochMs> {
        self.windows
            .map(|n| self.sim.day0_ms() + n as i64 * self.sim.days as i64 * 86_400_000)
    }

    /// The line that says what the warm-up does.
    pub fn warmup_line(&self) -> String {
        let days = ((self.live_from() - self.sim.day0_ms()) / 86_400_000).max(0);
        format!(
            "  warm-up:  replaying {days} simulated days at full speed to learn baselines (nothing printed); then live at {} events/s",
            if self.rate == 0 { "full speed".to_owned() } else { self.rate.to_string() }
        )
    }
}

/// What the demo saw, per label kind.
#[derive(Debug, Default, Clone)]
pub struct Scorecard {
    /// Events scored.
    pub events: u64,
    /// Decisions by action, indexed like [`Action::ALL`].
    pub by_action: [u64; 4],
    /// Per attack scenario: (users attacked, users alerted on an attack event, users frozen
    /// during the attack, attack money out, attack money out at or after the freeze).
    pub attacks: Vec<(Scenario, u32, u32, u32, f64, f64)>,
    /// Users without any attack who got a `freeze_account`, and all such users.
    pub false_freezes: (u32, u32),
    /// Step-up challenges the simulated users answered: (passed by owners, failed by thieves).
    pub step_ups_answered: (u64, u64),
    /// Honest users the same traffic froze when nobody answered step-ups (a second engine
    /// state fed the same events without the results), if measured.
    pub false_freezes_without_results: Option<u32>,
    /// Honest users challenged or frozen again after their first step-up, which they passed:
    /// with the answers learned, and in the run without answers (where the owner would have
    /// passed but nobody told walletguard), if measured.
    pub rechallenged: Option<(RechallengeCount, RechallengeCount)>,
    /// Webhooks the demo's loopback receiver got: (signature verified, not verified), when
    /// it ran one.
    pub webhooks: Option<(u64, u64)>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// What the demo saw of one user.
#[derive(Default)]
pub(crate) struct UserTrack {
    attack: Option<Scenario>,
    alerted: bool,
    frozen: bool,
    out_total: f64,
    out_after_freeze: f64,
    benign_frozen: bool,
}

pub(crate) fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

/// The header of the live decision lines.
pub(crate) fn header_line(c: bool) -> String {
    paint(c, "2", "event time (UTC)        action   score  user       event            top reasons                      [truth]")
}

/// One live line: a decision on a simulated event, with the simulator's truth beside it.
pub(crate) fn decision_line(
    c: bool,
    ev: &SimEvent,
    action: Action,
    score: f64,
    reasons: &[&str],
    freeze_cmd: bool,
) -> String {
    let (label, color) = match action {
        Action::Freeze => ("FREEZE ", "1;31"),
        Action::StepUp => ("STEP-UP", "33"),
        _ => ("review ", "36"),
    };
    let truth = if ev.scenario.is_attack() {
        paint(c, "1;35", &format!("attack: {}", ev.scenario.as_str()))
    } else if ev.scenario != Scenario::None {
        paint(c, "32", &format!("honest {}", ev.scenario.as_str()))
    } else {
        paint(c, "2", "ordinary")
    };
    let amount = ev
        .amount_cents
        .map(|a| format!("{} {:.2}", ev.kind.as_str(), a as f64 / 100.0))
        .unwrap_or_else(|| ev.kind.as_str().to_owned());
    let mut ts = format_rfc3339(ev.ts_ms);
    ts.truncate(19);
    format!(
        "{}  {}  {:.2}  {:<9}  {:<15}  {:<32} [{}]{}",
        ts,
        paint(c, color, label),
        score,
        ev.user_id(),
        truncate(&amount, 15),
        truncate(&reasons.join(","), 32),
        truth,
        if freeze_cmd {
            paint(c, "1;31", "  → freeze_account")
        } else {
            String::new()
        }
    )
}

/// The simulated users' answers to `require_step_up`: the owner of an honest event passes the
/// challenge a minute later, a thief fails it. The answer is a `step_up_result` event (contract
/// v2) fed back into the pipeline in event-time order.
#[derive(Default)]
pub(crate) struct Responder {
    pending: BinaryHeap<Reverse<(EpochMs, u64)>>,
    events: HashMap<u64, SimEvent>,
    seq: u64,
    /// (passed, failed) so far.
    pub answered: (u64, u64),
}

/// How long a simulated user takes to answer a challenge, ms.
const ANSWER_MS: EpochMs = 60_000;

impl Responder {
    /// Schedules the answer to a challenge of `ev`.
    pub fn challenge(&mut self, ev: &SimEvent) {
        self.seq += 1;
        self.pending.push(Reverse((ev.ts_ms + ANSWER_MS, self.seq)));
        self.events.insert(self.seq, *ev);
    }

    /// The next answer due at or before `until` (event time): the challenged event and the
    /// `step_up_result` line.
    pub fn due(&mut self, until: EpochMs) -> Option<(SimEvent, Vec<u8>)> {
        let Reverse((at, seq)) = *self.pending.peek()?;
        if at > until {
            return None;
        }
        self.pending.pop();
        let ev = self.events.remove(&seq)?;
        let passed = !ev.scenario.is_attack();
        if passed {
            self.answered.0 += 1;
        } else {
            self.answered.1 += 1;
        }
        let mut v = serde_json::json!({
            "event_id": format!("su-{}", ev.event_id()),
            "user_id": ev.user_id(),
            "ts": at,
            "type": "step_up_result",
            "ref_event_id": ev.event_id(),
            "result": if passed { "passed" } else { "failed" },
        });
        if let (true, Some(d)) = (passed, ev.device_id()) {
            v["device_id"] = d.into();
        }
        Some((ev, v.to_string().into_bytes()))
    }

    /// Every answer still pending.
    pub fn drain(&mut self) -> Vec<(SimEvent, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(x) = self.due(EpochMs::MAX) {
            v.push(x);
        }
        v
    }
}

/// Per honest user: the evidence (device, counterparty) and time of the first step-up that
/// challenged them, and whether a step-up or a freeze came again for that same evidence within
/// the trust window, for it at any later time, or for anything. Why: a passed step-up should
/// teach walletguard the owner's new evidence, so "challenged again for the same phone and
/// payee" is what the owner suffers when it does not; a challenge for a new payee later is
/// the product working.
pub(crate) struct Rechallenges {
    window_ms: EpochMs,
    users: HashMap<u32, Rechallenge>,
}

#[derive(Clone, Copy)]
pub(crate) struct Rechallenge {
    evidence: (Option<u64>, Option<crate::tools::sim::Party>),
    at: EpochMs,
    /// Again for the same evidence: (within the window, ever), and for anything.
    again: (bool, bool, bool),
}

impl Rechallenges {
    /// Tracks users; `window_ms` is the trust window (`feedback.trust_hours`).
    pub fn new(window_ms: EpochMs) -> Rechallenges {
        Rechallenges {
            window_ms,
            users: HashMap::new(),
        }
    }

    /// Notes the command an honest event got.
    pub fn see(&mut self, ev: &SimEvent, cmd: Option<CommandKind>) {
        if !matches!(
            cmd,
            Some(CommandKind::RequireStepUp | CommandKind::FreezeAccount)
        ) {
            return;
        }
        let evidence = (ev.device, ev.counterparty);
        match self.users.get_mut(&ev.user) {
            Some(r) => {
                let same = r.evidence == evidence;
                r.again.0 |= same && ev.ts_ms - r.at <= self.window_ms;
                r.again.1 |= same;
                r.again.2 = true;
            }
            None if cmd == Some(CommandKind::RequireStepUp) => {
                self.users.insert(
                    ev.user,
                    Rechallenge {
                        evidence,
                        at: ev.ts_ms,
                        again: (false, false, false),
                    },
                );
            }
            None => {}
        }
    }

    /// Among users never attacked: users challenged, then those challenged again for the same
    /// evidence within the window, for it ever, and for anything.
    pub fn count(&self, users: &HashMap<u32, UserTrack>) -> RechallengeCount {
        let mut c = RechallengeCount::default();
        for (u, r) in &self.users {
            if users.get(u).is_none_or(|t| t.attack.is_none()) {
                c.challenged += 1;
                c.same_in_window += u32::from(r.again.0);
                c.same += u32::from(r.again.1);
                c.any += u32::from(r.again.2);
            }
        }
        c
    }
}

/// Honest users challenged again after their first step-up (counted per run by the demo).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RechallengeCount {
    /// Users a step-up challenged.
    pub challenged: u32,
    /// Of them, challenged or frozen again for the same device and counterparty within the
    /// trust window.
    pub same_in_window: u32,
    /// … for the same device and counterparty at any later time.
    pub same: u32,
    /// … for anything.
    pub any: u32,
}

/// Records a freeze a feedback event (a failed step-up) issued for the user of `ev`.
pub(crate) fn track_feedback_freeze(users: &mut HashMap<u32, UserTrack>, ev: &SimEvent) {
    let u = users.entry(ev.user).or_default();
    if u.attack.is_some() || ev.scenario.is_attack() {
        u.frozen = true;
    } else {
        u.benign_frozen = true;
    }
}

/// Per-user tracking of what the demo saw.
pub(crate) type Users = HashMap<u32, UserTrack>;

pub(crate) fn track(
    users: &mut HashMap<u32, UserTrack>,
    ev: &SimEvent,
    action: Action,
    cmd: Option<CommandKind>,
) {
    let u = users.entry(ev.user).or_default();
    if ev.scenario.is_attack() {
        u.attack = Some(ev.scenario);
        if action != Action::Allow {
            u.alerted = true;
        }
        // Money out of the attack that left before the freeze is lost; from it on, saved.
        // Only successful money out counts, as in `walletguard eval`.
        let moved = ev.kind.is_money_out() && ev.failure.is_none();
        if moved {
            let amount = ev.amount_cents.unwrap_or(0) as f64 / 100.0;
            u.out_total += amount;
            if u.frozen {
                u.out_after_freeze += amount;
            }
        }
        if cmd == Some(CommandKind::FreezeAccount) && !u.frozen {
            u.frozen = true;
            if moved {
                // The freeze happens on this event: it is stopped too.
                u.out_after_freeze += ev.amount_cents.unwrap_or(0) as f64 / 100.0;
            }
        }
    } else if cmd == Some(CommandKind::FreezeAccount) && u.attack.is_none() {
        u.benign_frozen = true;
    }
}

pub(crate) fn summarize(card: &mut Scorecard, users: &HashMap<u32, UserTrack>) {
    for sc in Scenario::ATTACKS {
        let mut row = (sc, 0, 0, 0, 0.0, 0.0);
        for u in users.values().filter(|u| u.attack == Some(sc)) {
            row.1 += 1;
            row.2 += u.alerted as u32;
            row.3 += u.frozen as u32;
            row.4 += u.out_total;
            row.5 += u.out_after_freeze;
        }
        // Scenarios the demo's world does not play (other world kinds') get no row.
        if row.1 > 0 {
            card.attacks.push(row);
        }
    }
    let honest: Vec<&UserTrack> = users.values().filter(|u| u.attack.is_none()).collect();
    card.false_freezes = (
        honest.iter().filter(|u| u.benign_frozen).count() as u32,
        honest.len() as u32,
    );
}

pub(crate) fn print_scorecard(card: &Scorecard, c: bool, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{} {} events in {:.1} s ({:.0}/s): allow {}, review {}, step_up {}, freeze {}",
        paint(c, "1", "scorecard:"),
        card.events,
        card.seconds,
        card.events as f64 / card.seconds.max(1e-9),
        card.by_action[0],
        card.by_action[1],
        card.by_action[2],
        card.by_action[3]
    )?;
    writeln!(
        out,
        "  {:<18} {:>7} {:>8} {:>7} {:>12}",
        "attack", "victims", "alerted", "frozen", "money saved"
    )?;
    let (mut total, mut saved) = (0.0, 0.0);
    for (sc, n, alerted, frozen, money, after) in &card.attacks {
        total += money;
        saved += after;
        let pct = if *money > 0.0 {
            format!("{:.0}%", 100.0 * after / money)
        } else {
            "-".into()
        };
        writeln!(
            out,
            "  {:<18} {:>7} {:>8} {:>7} {:>12}",
            sc.as_str(),
            n,
            alerted,
            frozen,
            pct
        )?;
    }
    if total > 0.0 {
        writeln!(
            out,
            "  money saved by freezes overall: {:.0}% of {:.2} CNY the attackers moved or would have",
            100.0 * saved / total,
            total
        )?;
    }
    writeln!(
        out,
        "  honest users frozen: {} of {} ({:.3}%)",
        card.false_freezes.0,
        card.false_freezes.1,
        100.0 * card.false_freezes.0 as f64 / card.false_freezes.1.max(1) as f64
    )?;
    let (passed, failed) = card.step_ups_answered;
    if passed + failed > 0 {
        writeln!(
            out,
            "  step-ups answered: {passed} passed by their owners, {failed} failed by thieves (each failure freezes)"
        )?;
    }
    if let Some(without) = card.false_freezes_without_results {
        writeln!(
            out,
            "  honest users frozen had nobody answered the step-ups: {without}; with the answers learned: {} ({} freezes avoided)",
            card.false_freezes.0,
            without.saturating_sub(card.false_freezes.0)
        )?;
    }
    if let Some((w, o)) = card.rechallenged {
        let pct = |x: u32, n: u32| 100.0 * x as f64 / n.max(1) as f64;
        writeln!(
            out,
            "  honest users challenged or frozen again after passing a step-up ({} users), for the same device and payee within the trust window: {} ({:.2}%), had nobody answered: {} ({:.2}%); same evidence ever: {:.1}% vs {:.1}%; anything: {:.1}% vs {:.1}%",
            w.challenged,
            w.same_in_window,
            pct(w.same_in_window, w.challenged),
            o.same_in_window,
            pct(o.same_in_window, o.challenged),
            pct(w.same, w.challenged),
            pct(o.same, o.challenged),
            pct(w.any, w.challenged),
            pct(o.any, o.challenged)
        )?;
    }
    writeln!(
        out,
        "  full quality report: walletguard simulate … && walletguard eval … (see README)"
    )?;
    Ok(())
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Arguments of `walletguard demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 3000)]
    pub users: u32,
    /// Simulated days of one window (the first 14 warm the baselines at full speed).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Share of users who suffer an attack.
    #[arg(long, default_value_t = 0.03)]
    pub attack_rate: f64,
    /// Simulated events per second of wall time once live (0 = as fast as possible).
    #[arg(long, default_value_t = 25_000)]
    pub rate: u64,
    /// Stop after this many seconds of wall time (0: at Ctrl-C). When the simulated days
    /// run out, the same users go on into new ones.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Also print `review` decisions.
    #[arg(long)]
    pub reviews: bool,
    /// Print the service's own log lines (warnings and errors only otherwise).
    #[arg(long)]
    pub verbose: bool,
    /// Score in process, without the embedded Kafka broker.
    #[arg(long)]
    pub offline: bool,
    /// Partitions of the embedded broker's input topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Config files, laid over the built-in defaults in order (repeat `--config` for
    /// overlays: a later file's keys win).
    #[arg(long, env = "WALLETGUARD_CONFIG")]
    pub config: Vec<std::path::PathBuf>,
}
