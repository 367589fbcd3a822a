//! `walletguard compare`: what a config change would do, measured on the same events.
//!
//! Two engines, the *live* config and the *candidate*, each with its own state (the
//! candidate's learning depends on its own decisions, so it must not share profiles), score
//! every event of a file in order, through [`crate::tools::replay::Partitioned`] exactly as `replay`
//! does. [`Comparison`] is the pure accumulator (no I/O, no clock):
//! - the 4×4 flip matrix of actions, live (rows) against candidate (columns);
//! - flips by reason code: for each code, the events whose action moved up or down while the
//!   code fired in either decision, and how often it fired under each config;
//! - the users whose freeze appears or disappears, with both decisions' top reasons at the
//!   event that froze them;
//! - the score distributions of both.
//!
//! With labels, every eval figure ([`crate::tools::eval::figures`]) for both and the difference.
//! [`run`] drives a file; [`write_outputs`] writes `report.json`, `report.md`, `flips.png`
//! and `scores.png`. The shadow engine of `walletguard run` counts the same matrix
//! ([`Comparison::add`] is what both call per event).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::engine::decision::{Action, Decision};
use crate::engine::detect::Code;
use crate::engine::pipeline::Engine;
use crate::tools::eval::labels::Labels;
use crate::tools::eval::report::{Report, Sources};
use crate::tools::eval::{EvalError, Scored};
use crate::tools::replay::Partitioned;

/// Bins of the score histograms (width 1/50).
pub const SCORE_BINS: usize = 50;

/// Users listed in the report per direction (all are counted).
pub const MAX_LISTED_USERS: usize = 1000;

/// A decision in brief: action, score and the top reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Brief {
    /// Action.
    pub action: &'static str,
    /// Score, rounded to 4 places.
    pub score: f64,
    /// Up to three reason codes, largest contribution first.
    pub reasons: Vec<&'static str>,
}

impl Brief {
    /// The brief of `d`.
    pub fn of(d: &Decision) -> Brief {
        Brief {
            action: d.action.as_str(),
            score: (d.score * 1e4).round() / 1e4,
            reasons: d.signals.iter().take(3).map(|s| s.code.as_str()).collect(),
        }
    }
}

/// A user whose freeze appears (candidate freezes, live never does) or disappears.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FreezeChange {
    /// The user.
    pub user_id: String,
    /// The event of the first freeze (under the config that froze).
    pub event_id: String,
    /// Its time, epoch ms.
    pub ts_ms: i64,
    /// The live decision on that event.
    pub live: Brief,
    /// The candidate decision on that event.
    pub candidate: Brief,
}

/// Flips and firings of one reason code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonFlips {
    /// The code.
    pub code: &'static str,
    /// Events the candidate acts on more strongly, with the code in either decision.
    pub up: u64,
    /// Events the candidate acts on more weakly, with the code in either decision.
    pub down: u64,
    /// Events whose live decision counts the code.
    pub fired_live: u64,
    /// Events whose candidate decision counts the code.
    pub fired_candidate: u64,
}

#[derive(Default)]
struct UserFreezes {
    live: Option<FreezeChange>,
    candidate: Option<FreezeChange>,
}

/// The pure accumulator of a comparison: feed it both decisions of every event.
pub struct Comparison {
    matrix: [[u64; 4]; 4],
    up: [u64; Code::ALL.len()],
    down: [u64; Code::ALL.len()],
    fired: [[u64; Code::ALL.len()]; 2],
    scores: [[u64; SCORE_BINS]; 2],
    users: HashMap<Box<str>, UserFreezes>,
}

impl Default for Comparison {
    fn default() -> Self {
        Comparison {
            matrix: [[0; 4]; 4],
            up: [0; Code::ALL.len()],
            down: [0; Code::ALL.len()],
            fired: [[0; Code::ALL.len()]; 2],
            scores: [[0; SCORE_BINS]; 2],
            users: HashMap::new(),
        }
    }
}

fn bin(score: f64) -> usize {
    ((score.clamp(0.0, 1.0) * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1)
}

fn counted_mask(d: &Decision) -> u32 {
    d.signals.iter().fold(0, |m, s| m | s.code.bit())
}

impl Comparison {
    /// Adds one event's live and candidate decisions.
    pub fn add(
        &mut self,
        user_id: &str,
        event_id: &str,
        ts_ms: i64,
        live: &Decision,
        candidate: &Decision,
    ) {
        let (a, b) = (live.action as usize, candidate.action as usize);
        self.matrix[a][b] += 1;
        self.scores[0][bin(live.score)] += 1;
        self.scores[1][bin(candidate.score)] += 1;
        let (ma, mb) = (counted_mask(live), counted_mask(candidate));
        for (i, c) in Code::ALL.iter().enumerate() {
            let bit = c.bit();
            self.fired[0][i] += u64::from(ma & bit != 0);
            self.fired[1][i] += u64::from(mb & bit != 0);
            if (ma | mb) & bit != 0 {
                if b > a {
                    self.up[i] += 1;
                } else if b < a {
                    self.down[i] += 1;
                }
            }
        }
        let froze = [
            live.action == Action::Freeze,
            candidate.action == Action::Freeze,
        ];
        if froze[0] || froze[1] {
            let u = self.users.entry(user_id.into()).or_default();
            let change = || FreezeChange {
                user_id: user_id.to_owned(),
                event_id: event_id.to_owned(),
                ts_ms,
                live: Brief::of(live),
                candidate: Brief::of(candidate),
            };
            if froze[0] && u.live.is_none() {
                u.live = Some(change());
            }
            if froze[1] && u.candidate.is_none() {
                u.candidate = Some(change());
            }
        }
    }

    /// The flip matrix so far: `[live][candidate]`, indexed like [`Action::ALL`].
    pub fn matrix(&self) -> [[u64; 4]; 4] {
        self.matrix
    }

    /// The summary of everything added.
    pub fn finish(self) -> Flips {
        let events: u64 = self.matrix.iter().flatten().sum();
        let mut flipped = [0u64; 2];
        for (a, row) in self.matrix.iter().enumerate() {
            for (b, n) in row.iter().enumerate() {
                if b > a {
                    flipped[0] += n;
                } else if b < a {
                    flipped[1] += n;
                }
            }
        }
        let mut by_reason: Vec<ReasonFlips> = Code::ALL
            .iter()
            .enumerate()
            .map(|(i, c)| ReasonFlips {
                code: c.as_str(),
                up: self.up[i],
                down: self.down[i],
                fired_live: self.fired[0][i],
                fired_candidate: self.fired[1][i],
            })
            .filter(|r| r.up + r.down + r.fired_live + r.fired_candidate > 0)
            .collect();
        by_reason.sort_by(|x, y| {
            (y.up + y.down)
                .cmp(&(x.up + x.down))
                .then(x.code.cmp(y.code))
        });
        let mut appears = Vec::new();
        let mut disappears = Vec::new();
        for (_, u) in self.users {
            match (u.live, u.candidate) {
                (None, Some(c)) => appears.push(c),
                (Some(l), None) => disappears.push(l),
                _ => {}
            }
        }
        // Stable order for reports: by time, then user.
        let order = |x: &FreezeChange, y: &FreezeChange| {
            x.ts_ms
                .cmp(&y.ts_ms)
                .then_with(|| x.user_id.cmp(&y.user_id))
        };
        appears.sort_by(order);
        disappears.sort_by(order);
        let (n_app, n_dis) = (appears.len() as u64, disappears.len() as u64);
        appears.truncate(MAX_LISTED_USERS);
        disappears.truncate(MAX_LISTED_USERS);
        Flips {
            events,
            actions: Action::ALL.map(Action::as_str),
            matrix: self.matrix,
            flipped_up: flipped[0],
            flipped_down: flipped[1],
            by_reason,
            freeze_appears: n_app,
            freeze_disappears: n_dis,
            appears,
            disappears,
            score_bins: SCORE_BINS,
            scores_live: self.scores[0].to_vec(),
            scores_candidate: self.scores[1].to_vec(),
        }
    }
}

/// What changed between the two configs, over all events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flips {
    /// Valid events scored.
    pub events: u64,
    /// Row and column names of the matrix.
    pub actions: [&'static str; 4],
    /// `matrix[live][candidate]`.
    pub matrix: [[u64; 4]; 4],
    /// Events the candidate acts on more strongly.
    pub flipped_up: u64,
    /// Events the candidate acts on more weakly.
    pub flipped_down: u64,
    /// Per code, most flips first (codes that never fired are left out).
    pub by_reason: Vec<ReasonFlips>,
    /// Users the candidate freezes and live never does.
    pub freeze_appears: u64,
    /// Users live freezes and the candidate never does.
    pub freeze_disappears: u64,
    /// The first [`MAX_LISTED_USERS`] of them, by time.
    pub appears: Vec<FreezeChange>,
    /// The first [`MAX_LISTED_USERS`] of them, by time.
    pub disappears: Vec<FreezeChange>,
    /// Histogram bins over [0, 1].
    pub score_bins: usize,
    /// Live score histogram.
    pub scores_live: Vec<u64>,
    /// Candidate score histogram.
    pub scores_candidate: Vec<u64>,
}

/// One eval figure under both configs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureDiff {
    /// Dotted path in the eval report (`overall.pr_auc`, `scenarios.account_takeover.recall`).
    pub figure: String,
    /// Live value.
    pub live: Option<f64>,
    /// Candidate value.
    pub candidate: Option<f64>,
    /// Candidate − live, when both are known.
    pub diff: Option<f64>,
}

/// With labels: both eval reports and every figure side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalPair {
    /// The live config's report.
    pub live: Report,
    /// The candidate's report.
    pub candidate: Report,
    /// Every numeric figure of both, in report order.
    pub figures: Vec<FigureDiff>,
}

/// The figures a deployment budgets, under both configs (index 0 live, 1 candidate), over
/// the compared events. A user counts as confirmed fraud when the labels mark any of their
/// events as an attack, or a `case_verdict` with `verdict: confirmed_fraud` names them
/// anywhere in the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Budget {
    /// Events compared.
    pub events: u64,
    /// Events alerted (any action but allow).
    pub alerted: [u64; 2],
    /// `alerted / events`.
    pub alert_share: [Option<f64>; 2],
    /// Events of users without confirmed fraud.
    pub unconfirmed_events: u64,
    /// Of them, alerted: false alerts.
    pub unconfirmed_alerted: [u64; 2],
    /// `unconfirmed_alerted / unconfirmed_events`.
    pub unconfirmed_alert_share: [Option<f64>; 2],
    /// Users with an event compared.
    pub users: u64,
    /// Of them, users without confirmed fraud.
    pub unconfirmed_users: u64,
    /// Users without confirmed fraud frozen (an event decided `freeze`).
    pub frozen_unconfirmed: [u64; 2],
    /// `frozen_unconfirmed / unconfirmed_users`: the false-freeze share.
    pub false_freeze_share: [Option<f64>; 2],
    /// Users with confirmed fraud.
    pub confirmed_users: u64,
    /// Of them, frozen.
    pub frozen_confirmed: [u64; 2],
}

fn share(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// `report.json` of `walletguard compare`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareReport {
    /// Events file.
    pub events: String,
    /// The live config's files (`defaults` when none).
    pub live: String,
    /// The candidate's files.
    pub candidate: String,
    /// Emulated input partitions.
    pub partitions: u32,
    /// Lines that were not valid events (dead letters under both).
    pub invalid_events: u64,
    /// Only events at or after this time (epoch ms) were compared; earlier ones only warmed
    /// both states.
    pub from_ts: Option<i64>,
    /// Alert and false-freeze shares of both.
    pub budget: Budget,
    /// The flips.
    #[serde(flatten)]
    pub flips: Flips,
    /// With labels.
    pub eval: Option<EvalPair>,
}

/// Flattens numeric leaves of a report to `(path, value)`; arrays of rows keyed by a
/// `scenario` or `kind` name use it as the path segment.
fn leaves(v: &serde_json::Value, path: &str, out: &mut Vec<(String, Option<f64>)>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "inputs" || k == "scenario" || k == "kind" {
                    continue;
                }
                leaves(x, &join(k), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let name = x
                    .get("scenario")
                    .or_else(|| x.get("kind"))
                    .and_then(|n| n.as_str())
                    .map(str::to_owned)
                    .unwrap_or_else(|| i.to_string());
                leaves(x, &join(&name), out);
            }
        }
        serde_json::Value::Number(n) => out.push((path.to_owned(), n.as_f64())),
        serde_json::Value::Null => out.push((path.to_owned(), None)),
        _ => {}
    }
}

/// Every numeric figure of two eval reports, side by side.
pub fn figure_diffs(live: &Report, candidate: &Report) -> Vec<FigureDiff> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    leaves(&serde_json::to_value(live).unwrap_or_default(), "", &mut a);
    leaves(
        &serde_json::to_value(candidate).unwrap_or_default(),
        "",
        &mut b,
    );
    let b: HashMap<String, Option<f64>> = b.into_iter().collect();
    a.into_iter()
        .map(|(figure, l)| {
            let c = b.get(&figure).copied().flatten();
            FigureDiff {
                diff: l.zip(c).map(|(l, c)| c - l),
                live: l,
                candidate: c,
                figure,
            }
        })
        .collect()
}

/// What [`run`] needs besides the two engines.
pub struct CompareInputs<'a> {
    /// Events (JSON lines, plain or .gz).
    pub events: &'a Path,
    /// Labels CSV.
    pub labels: Option<&'a Path>,
    /// Names of the live and candidate configs, for the report.
    pub names: (String, String),
    /// Emulated input partitions (as `replay --partitions`).
    pub partitions: u32,
    /// Allow and block lists both score against.
    pub lists: std::sync::Arc<crate::engine::lists::Lists>,
    /// Compare only events at or after this time (epoch ms); earlier ones warm both states.
    pub from_ts: Option<i64>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// Scores `events` under both engines, each with its own state, and compares.
pub fn run(
    live: &Engine,
    candidate: &Engine,
    i: CompareInputs<'_>,
) -> Result<CompareReport, EvalError> {
    let labels: Option<Labels> = i
        .labels
        .map(crate::tools::eval::labels::read_labels)
        .transpose()?;
    let mut ra = Partitioned::new(live, i.partitions, i.lists.clone());
    let mut rb = Partitioned::new(candidate, i.partitions, i.lists.clone());
    let mut cmp = Comparison::default();
    let mut scored = [Scored::default(), Scored::default()];
    let mut invalid = 0u64;
    let mut published = Vec::new();
    // Per user: flags (bit 0 compared, 1 frozen live, 2 frozen candidate, 3 confirmed
    // fraud), events compared, and of them alerted under each config.
    let mut users: HashMap<Box<str>, (u8, u32, [u32; 2])> = HashMap::new();
    let mut alerted = [0u64; 2];
    let bar = crate::tools::replay::progress_bar(i.events, i.progress);
    let mut read = 0u64;
    crate::tools::eval::for_each_line(i.events, |line, raw| {
        read += raw.len() as u64 + 1;
        if line % 8192 == 0 {
            bar.set_position(read);
        }
        let ev = match crate::engine::event::parse_event(raw) {
            Ok(ev) => ev,
            Err(_) => {
                invalid += 1;
                ra.skip(live, 0);
                rb.skip(candidate, 0);
                return Ok(());
            }
        };
        // `now` only stamps alert and command times, which a comparison does not use: a
        // constant keeps both runs free of the wall clock.
        let (Some(oa), Some(ob)) = (
            ra.process(live, &ev, 0, &mut published),
            rb.process(candidate, &ev, 0, &mut published),
        ) else {
            return Ok(());
        };
        published.clear();
        let truth = match &labels {
            Some(l) => Some(crate::tools::eval::file_truth(&ev, l, i.events, line)?),
            None => None,
        };
        let confirmed = truth.is_some_and(|t| t.attack)
            || ev.feedback == Some(crate::engine::event::Feedback::ConfirmedFraud);
        let counted = i.from_ts.is_none_or(|from| ev.ts_ms >= from);
        if !(counted || confirmed) {
            return Ok(());
        }
        let (flags, n, al) = users.entry((*ev.user_id).into()).or_default();
        *flags |= u8::from(confirmed) << 3;
        if !counted {
            return Ok(());
        }
        *flags |= 1
            | u8::from(oa.decision.action == Action::Freeze) << 1
            | u8::from(ob.decision.action == Action::Freeze) << 2;
        *n += 1;
        al[0] += u32::from(oa.alert());
        al[1] += u32::from(ob.alert());
        alerted[0] += u64::from(oa.alert());
        alerted[1] += u64::from(ob.alert());
        cmp.add(
            &ev.user_id,
            &ev.event_id,
            ev.ts_ms,
            &oa.decision,
            &ob.decision,
        );
        if let Some(truth) = truth {
            for (s, o) in scored.iter_mut().zip([&oa, &ob]) {
                let d = &o.decision;
                s.recs
                    .push(crate::tools::eval::record(&ev, truth, d.score, d.action));
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let eval = labels.as_ref().map(|l| {
        let report = |s: &mut Scored, name: &str| {
            s.invalid = invalid;
            crate::tools::eval::evaluate(
                Sources {
                    events: i.events.display().to_string(),
                    labels: i
                        .labels
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    decisions: None,
                    config: Some(name.to_owned()),
                },
                s,
                l,
            )
            .0
        };
        let [sa, sb] = &mut scored;
        let (a, b) = (report(sa, &i.names.0), report(sb, &i.names.1));
        EvalPair {
            figures: figure_diffs(&a, &b),
            live: a,
            candidate: b,
        }
    });
    let flips = cmp.finish();
    let mut b = Budget {
        events: flips.events,
        alerted,
        ..Budget::default()
    };
    for (f, events, al) in users.values().filter(|u| u.0 & 1 != 0) {
        b.users += 1;
        if f & 8 == 0 {
            b.unconfirmed_events += u64::from(*events);
            b.unconfirmed_alerted[0] += u64::from(al[0]);
            b.unconfirmed_alerted[1] += u64::from(al[1]);
        }
        let frozen = [u64::from(f & 2 != 0), u64::from(f & 4 != 0)];
        let (n, frozen_n) = if f & 8 != 0 {
            (&mut b.confirmed_users, &mut b.frozen_confirmed)
        } else {
            (&mut b.unconfirmed_users, &mut b.frozen_unconfirmed)
        };
        *n += 1;
        frozen_n[0] += frozen[0];
        frozen_n[1] += frozen[1];
    }
    b.alert_share = alerted.map(|n| share(n, b.events));
    b.false_freeze_share = b.frozen_unconfirmed.map(|n| share(n, b.unconfirmed_users));
    b.unconfirmed_alert_share = b
        .unconfirmed_alerted
        .map(|n| share(n, b.unconfirmed_events));
    Ok(CompareReport {
        from_ts: i.from_ts,
        budget: b,
        events: i.events.display().to_string(),
        live: i.names.0,
        candidate: i.names.1,
        partitions: i.partitions.max(1),
        invalid_events: invalid,
        flips,
        eval,
    })
}

/// `n` of `d` as a percentage with three digits.
fn pct(n: u64, d: u64) -> String {
    opt_pct((d > 0).then(|| n as f64 / d as f64))
}

/// A share as a percentage with three digits.
fn opt_pct(v: Option<f64>) -> String {
    crate::tools::eval::report::pct(v, 3)
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into())
}

/// The eval figures worth a line on stdout.
const HEADLINE: &[&str] = &[
    "overall.pr_auc",
    "overall.roc_auc",
    "overall.alerts",
    "overall.alert_precision",
    "overall.freezes",
    "overall.false_alert_rate_benign_users",
    "overall.benign_users_frozen",
    "overall.false_freeze_rate_benign_users",
    "scenarios.all.recall",
    "scenarios.all.freeze_recall",
    "scenarios.all.money_saved_share",
];

impl CompareReport {
    /// The matrix as text rows (for stdout and markdown).
    fn matrix_rows(&self, md: bool) -> String {
        let f = &self.flips;
        let mut s = String::new();
        if md {
            s.push_str("| live \\ candidate | allow | review | step_up | freeze |\n|---|---:|---:|---:|---:|\n");
        } else {
            let _ = writeln!(
                s,
                "{:>18} {:>10} {:>10} {:>10} {:>10}",
                "live \\ candidate", "allow", "review", "step_up", "freeze"
            );
        }
        for (a, row) in f.matrix.iter().enumerate() {
            if md {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    f.actions[a], row[0], row[1], row[2], row[3]
                );
            } else {
                let _ = writeln!(
                    s,
                    "{:>18} {:>10} {:>10} {:>10} {:>10}",
                    f.actions[a], row[0], row[1], row[2], row[3]
                );
            }
        }
        s
    }

    /// The stdout table.
    pub fn table(&self) -> String {
        let f = &self.flips;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "compare: {} events ({} invalid), live = {}, candidate = {}",
            f.events, self.invalid_events, self.live, self.candidate
        );
        s.push_str(&self.matrix_rows(false));
        let _ = writeln!(
            s,
            "flipped: {} up ({}), {} down ({}); freezes: {} users appear, {} disappear",
            f.flipped_up,
            pct(f.flipped_up, f.events),
            f.flipped_down,
            pct(f.flipped_down, f.events),
            f.freeze_appears,
            f.freeze_disappears
        );
        let b = &self.budget;
        let _ = writeln!(
            s,
            "alerted events: {} vs {}; users without confirmed fraud frozen: {} of {} ({}) vs {} ({})",
            opt_pct(b.alert_share[0]),
            opt_pct(b.alert_share[1]),
            b.frozen_unconfirmed[0],
            b.unconfirmed_users,
            opt_pct(b.false_freeze_share[0]),
            b.frozen_unconfirmed[1],
            opt_pct(b.false_freeze_share[1])
        );
        let flipped: Vec<&ReasonFlips> = f
            .by_reason
            .iter()
            .filter(|r| r.up + r.down > 0)
            .take(10)
            .collect();
        if !flipped.is_empty() {
            let _ = writeln!(
                s,
                "{:<30} {:>8} {:>8} {:>12} {:>12}",
                "reason", "up", "down", "fired live", "fired cand."
            );
            for r in flipped {
                let _ = writeln!(
                    s,
                    "{:<30} {:>8} {:>8} {:>12} {:>12}",
                    r.code, r.up, r.down, r.fired_live, r.fired_candidate
                );
            }
        }
        if let Some(e) = &self.eval {
            let _ = writeln!(
                s,
                "{:<42} {:>12} {:>12} {:>12}",
                "figure", "live", "candidate", "diff"
            );
            for d in e
                .figures
                .iter()
                .filter(|d| HEADLINE.contains(&d.figure.as_str()))
            {
                let _ = writeln!(
                    s,
                    "{:<42} {:>12} {:>12} {:>12}",
                    d.figure,
                    opt(d.live),
                    opt(d.candidate),
                    opt(d.diff)
                );
            }
        }
        s
    }

    /// `report.md`.
    pub fn markdown(&self) -> String {
        let f = &self.flips;
        let mut s = String::from("# walletguard compare\n\n");
        let _ = writeln!(
            s,
            "- events: `{}` ({} valid, {} invalid)",
            self.events, f.events, self.invalid_events
        );
        let _ = writeln!(s, "- live: `{}`", self.live);
        let _ = writeln!(s, "- candidate: `{}`", self.candidate);
        let _ = writeln!(s, "- emulated partitions: {}", self.partitions);
        if let Some(t) = self.from_ts {
            let _ = writeln!(
                s,
                "- compared from {} (earlier events only warm both states)",
                crate::engine::time::format_rfc3339(t)
            );
        }
        let b = &self.budget;
        s.push_str("\n## Budgets\n\n| figure | live | candidate |\n|---|---:|---:|\n");
        let _ = writeln!(
            s,
            "| events alerted (of {}) | {} ({}) | {} ({}) |",
            b.events,
            b.alerted[0],
            opt_pct(b.alert_share[0]),
            b.alerted[1],
            opt_pct(b.alert_share[1])
        );
        let _ = writeln!(
            s,
            "| events of users without confirmed fraud alerted (of {}) | {} ({}) | {} ({}) |",
            b.unconfirmed_events,
            b.unconfirmed_alerted[0],
            opt_pct(b.unconfirmed_alert_share[0]),
            b.unconfirmed_alerted[1],
            opt_pct(b.unconfirmed_alert_share[1])
        );
        let _ = writeln!(
            s,
            "| users without confirmed fraud frozen (of {}) | {} ({}) | {} ({}) |",
            b.unconfirmed_users,
            b.frozen_unconfirmed[0],
            opt_pct(b.false_freeze_share[0]),
            b.frozen_unconfirmed[1],
            opt_pct(b.false_freeze_share[1])
        );
        let _ = writeln!(
            s,
            "| users with confirmed fraud frozen (of {}) | {} | {} |\n",
            b.confirmed_users, b.frozen_confirmed[0], b.frozen_confirmed[1]
        );
        s.push_str("## Actions, live (rows) against candidate (columns)\n\n");
        s.push_str(&self.matrix_rows(true));
        let _ = writeln!(
            s,
            "\nFlipped up: {} ({}); down: {} ({}).\n",
            f.flipped_up,
            pct(f.flipped_up, f.events),
            f.flipped_down,
            pct(f.flipped_down, f.events)
        );
        s.push_str("## Flips by reason code\n\nA flipped event counts under every code that fired in either decision.\n\n| code | up | down | fired live | fired candidate |\n|---|---:|---:|---:|---:|\n");
        for r in &f.by_reason {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.code, r.up, r.down, r.fired_live, r.fired_candidate
            );
        }
        for (title, n, list) in [
            ("Freezes that appear", f.freeze_appears, &f.appears),
            ("Freezes that disappear", f.freeze_disappears, &f.disappears),
        ] {
            let _ = writeln!(s, "\n## {title}: {n} users\n");
            if list.is_empty() {
                continue;
            }
            s.push_str("| user | event | live | candidate |\n|---|---|---|---|\n");
            for c in list.iter().take(50) {
                let b = |x: &Brief| format!("{} {:.3} {}", x.action, x.score, x.reasons.join(", "));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    c.user_id,
                    c.event_id,
                    b(&c.live),
                    b(&c.candidate)
                );
            }
            if list.len() > 50 {
                let _ = writeln!(s, "\n(first 50; all {} in report.json)", list.len());
            }
        }
        if let Some(e) = &self.eval {
            s.push_str("\n## Eval figures (labels)\n\n| figure | live | candidate | diff |\n|---|---:|---:|---:|\n");
            for d in &e.figures {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    d.figure,
                    opt(d.live),
                    opt(d.candidate),
                    opt(d.diff)
                );
            }
        }
        s
    }
}

/// Writes `report.json`, `report.md`, `flips.png` and `scores.png` into `dir`.
pub fn write_outputs(dir: &Path, r: &CompareReport) -> Result<(), EvalError> {
    crate::tools::eval::write_report(dir, "report", r, &r.markdown())?;
    crate::tools::eval::plot::matrix(
        &dir.join("flips.png"),
        "Actions: live (rows) against candidate (columns)",
        &r.flips.actions,
        &r.flips.matrix,
    )?;
    crate::tools::eval::plot::histograms(
        &dir.join("scores.png"),
        "Score distributions (events per bin, log scale)",
        &[
            ("live", &r.flips.scores_live),
            ("candidate", &r.flips.scores_candidate),
        ],
    )?;
    Ok(())
}

/// `walletguard compare`: scores the events under `live` and `candidate` (named `names`),
/// writes the report and its charts to `--out` and prints the table.
pub fn command(
    a: &CompareArgs,
    live: crate::service::config::Config,
    candidate: crate::service::config::Config,
    names: (String, String),
) -> Result<(), EvalError> {
    let lists = match &a.lists {
        Some(p) => std::sync::Arc::new(crate::tools::replay::load_lists(p)?),
        None => Default::default(),
    };
    let report = run(
        &Engine::new(live),
        &Engine::new(candidate),
        CompareInputs {
            events: &a.events,
            labels: a.labels.as_deref(),
            names,
            partitions: a.partitions,
            lists,
            from_ts: a.from,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
    )?;
    write_outputs(&a.out, &report)?;
    print!("{}", report.table());
    println!(
        "wrote {}/report.json, report.md, flips.png, scores.png",
        a.out.display()
    );
    Ok(())
}

/// Arguments of `walletguard compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Events (JSON lines, plain or .gz).
    #[arg(long)]
    pub events: std::path::PathBuf,
    /// The live config: files laid over the defaults in order (repeatable).
    #[arg(long)]
    pub config: Vec<std::path::PathBuf>,
    /// The candidate: files laid over the defaults in order (repeatable).
    #[arg(long, conflicts_with = "overlay", required_unless_present = "overlay")]
    pub config_b: Vec<std::path::PathBuf>,
    /// The candidate: the live files with these overlays laid over them (repeatable).
    #[arg(long)]
    pub overlay: Vec<std::path::PathBuf>,
    /// Labels CSV (event_id,user_id,label,scenario): adds every eval figure of both.
    #[arg(long)]
    pub labels: Option<std::path::PathBuf>,
    /// Allow and block lists both configs score against (as `replay --lists`).
    #[arg(long)]
    pub lists: Option<std::path::PathBuf>,
    /// Emulate an input topic of this many partitions (as `replay --partitions`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub partitions: u32,
    /// Compare only events at or after this time (RFC 3339 or epoch ms); earlier events
    /// only warm both states (an out-of-time check).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<i64>,
    /// Directory for report.json, report.md, flips.png and scores.png.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// A time on the command line: RFC 3339 or epoch milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    crate::engine::time::parse_rfc3339(s).map_err(|e| format!("not RFC 3339 or epoch ms: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::decision::Severity;
    use crate::engine::detect::{Detail, Signals};

    fn d(action: Action, score: f64, codes: &[Code]) -> Decision {
        let mut signals = Signals::default();
        for c in codes {
            signals.push(*c, 1.0, 0.5, Detail::new(|_, f| f.write_str("x"), [0.0; 4]));
        }
        Decision {
            score,
            action,
            severity: Severity::Low,
            signals,
            raw_score: score,
            configured: action,
        }
    }

    #[test]
    fn matrix_reasons_and_freeze_changes() {
        let mut c = Comparison::default();
        let new_dev = Code::ALL[0];
        let other = Code::ALL[1];
        c.add(
            "u1",
            "e1",
            1,
            &d(Action::Allow, 0.1, &[]),
            &d(Action::Allow, 0.1, &[]),
        );
        c.add(
            "u1",
            "e2",
            2,
            &d(Action::Review, 0.5, &[new_dev]),
            &d(Action::Freeze, 0.9, &[new_dev]),
        );
        c.add(
            "u2",
            "e3",
            3,
            &d(Action::Freeze, 0.9, &[other]),
            &d(Action::StepUp, 0.8, &[other]),
        );
        c.add(
            "u3",
            "e4",
            4,
            &d(Action::Freeze, 0.95, &[]),
            &d(Action::Freeze, 0.95, &[]),
        );
        let f = c.finish();
        assert_eq!(f.events, 4);
        assert_eq!(f.matrix[0][0], 1);
        assert_eq!(f.matrix[1][3], 1);
        assert_eq!(f.matrix[3][2], 1);
        assert_eq!(f.matrix[3][3], 1);
        assert_eq!((f.flipped_up, f.flipped_down), (1, 1));
        let r = |code: Code| {
            f.by_reason
                .iter()
                .find(|r| r.code == code.as_str())
                .unwrap()
        };
        assert_eq!((r(new_dev).up, r(new_dev).down), (1, 0));
        assert_eq!((r(other).up, r(other).down), (0, 1));
        assert_eq!((f.freeze_appears, f.freeze_disappears), (1, 1));
        assert_eq!(f.appears[0].user_id, "u1");
        assert_eq!(f.appears[0].live.action, "review");
        assert_eq!(f.appears[0].candidate.reasons, vec![new_dev.as_str()]);
        assert_eq!(f.disappears[0].user_id, "u2");
        assert_eq!(f.scores_live.iter().sum::<u64>(), 4);
        assert_eq!(f.scores_live[bin(0.95)], 1);
    }

    #[test]
    fn figure_diffs_pair_every_leaf() {
        let v = serde_json::json!({"overall": {"a": 1.0, "b": null}, "scenarios": [{"scenario": "all", "recall": 0.5}]});
        let mut out = Vec::new();
        leaves(&v, "", &mut out);
        assert_eq!(
            out,
            vec![
                ("overall.a".to_string(), Some(1.0)),
                ("overall.b".to_string(), None),
                ("scenarios.all.recall".to_string(), Some(0.5)),
            ]
        );
    }
}
