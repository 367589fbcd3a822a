//! `walletguard eval`: detection quality of the pipeline (or of a decisions file) against a
//! labels file.
//!
//! Steps: [`labels::read_labels`]; then either [`score_with_engine`], which replays the events
//! through [`Engine::process_bytes`] exactly as the file adapter does ([`score_event`], the
//! step it shares with the in-memory path of [`worlds`]), or
//! [`score_from_decisions`], which joins a decisions file (CONTRACT.md fields `event_id`,
//! `score`, `action`) to the events; then [`figures::compute`] (definitions in its docs); then
//! [`write_outputs`]: `report.json`, `report.md`, `pr.png`, `roc.png`.
//!
//! The events file is always read, because the figures need each event's time, type, status
//! and amount. Every valid event needs a label row and, in decisions mode, a decision; invalid
//! event lines are skipped and counted, as replay would dead-letter them. Errors name the file
//! and line at fault; nothing here panics on malformed input.

pub mod figures;
pub mod labels;
pub mod metamorphic;
pub mod plot;
pub mod report;
pub mod scoring;
pub mod worlds;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::Deserialize;

use crate::engine::decision::Action;
use crate::engine::event::{parse_event, Event, Status};
use crate::engine::output;
use crate::engine::pipeline::{Engine, Outcome};
use crate::engine::unit::Unit;
use crate::tools::replay::{create_output, open_input, ReplayError};
use figures::{Curves, Rec};
use labels::Labels;
use report::{Report, Sources};

/// Errors of the evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be opened, read or created.
    #[error(transparent)]
    Io(#[from] ReplayError),
    /// A labels row is malformed.
    #[error("labels {path} line {line}: {msg}")]
    Labels {
        /// The file.
        path: String,
        /// 1-based line (the header is line 1).
        line: u64,
        /// What is wrong.
        msg: String,
    },
    /// A decisions line is malformed.
    #[error("decisions {path} line {line}: {msg}")]
    Decisions {
        /// The file.
        path: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        msg: String,
    },
    /// An event cannot be evaluated (no label, no decision, user mismatch).
    #[error("events {path} line {line}: {msg}")]
    Events {
        /// The file.
        path: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        msg: String,
    },
    /// A curve could not be drawn.
    #[error("cannot draw {path}: {msg}")]
    Plot {
        /// The image file.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// A simulated world could not be generated.
    #[error(transparent)]
    Sim(#[from] crate::tools::sim::SimError),
    /// A worker thread of [`worlds`] died.
    #[error("a worker thread failed: {0}")]
    Worker(String),
    /// A report file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Scored, labelled events in stream order.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    /// One record per valid event.
    pub recs: Vec<Rec>,
    /// Event lines that were not valid events.
    pub invalid: u64,
}

/// Calls `f(line_number, bytes)` for each non-blank line, newline stripped.
pub(crate) fn for_each_line(
    path: &Path,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), EvalError>,
) -> Result<(), EvalError> {
    let (mut reader, _) = open_input(path)?;
    let mut line = Vec::with_capacity(1024);
    let mut n = 0u64;
    loop {
        line.clear();
        let got = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| ReplayError::Io {
                what: "cannot read",
                path: path.display().to_string(),
                source,
            })?;
        if got == 0 {
            return Ok(());
        }
        n += 1;
        let mut raw: &[u8] = &line;
        while let [rest @ .., b'\n' | b'\r'] = raw {
            raw = rest;
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        f(n, raw)?;
    }
}

/// What the labels say about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truth {
    /// User index (any dense numbering).
    pub user: u32,
    /// Label 1.
    pub attack: bool,
    /// Scenario or novelty kind index (0 = none).
    pub scenario: u16,
}

/// The labels file's row of `ev`, checked against its user.
pub(crate) fn file_truth(
    ev: &Event<'_>,
    labels: &Labels,
    events: &Path,
    line: u64,
) -> Result<Truth, EvalError> {
    let err = |msg: String| EvalError::Events {
        path: events.display().to_string(),
        line,
        msg,
    };
    let entry = labels.get(&ev.event_id).ok_or_else(|| {
        err(format!(
            "event {:?} has no row in the labels file",
            ev.event_id
        ))
    })?;
    let labelled_user = labels.users.get(entry.user as usize).map(|u| &**u);
    if labelled_user != Some(&*ev.user_id) {
        return Err(err(format!(
            "event {:?} belongs to {:?} but its label row (line {}) says {:?}",
            ev.event_id,
            ev.user_id,
            entry.line,
            labelled_user.unwrap_or("")
        )));
    }
    Ok(Truth {
        user: entry.user,
        attack: entry.attack,
        scenario: entry.scenario,
    })
}

/// The record of a scored event.
pub(crate) fn record(ev: &Event<'_>, truth: Truth, score: f64, action: Action) -> Rec {
    let money_out = ev.kind.is_money_out();
    Rec {
        user: truth.user,
        ts_ms: ev.ts_ms,
        money_out,
        out_amount: if money_out && ev.status == Status::Success {
            ev.amount.unwrap_or(0.0)
        } else {
            0.0
        },
        attack: truth.attack,
        scenario: truth.scenario,
        score: score as f32,
        action,
    }
}

/// Scores one raw event through `engine` as the file adapter does ([`Engine::process_bytes`],
/// events in stream order on one partition's [`Unit`], memory bounded as there) and appends its record, with the truth `label`
/// gives, to `scored`. An invalid event is counted and yields `None`; a valid one yields the
/// event and its outcome, for callers that write decisions.
pub fn score_event<'a>(
    engine: &Engine,
    unit: &mut Unit,
    raw: &'a [u8],
    scored: &mut Scored,
    label: impl FnOnce(&Event<'_>) -> Result<Truth, EvalError>,
) -> Result<Option<(Event<'a>, Outcome)>, EvalError> {
    // `now` only stamps alert and command times, which eval does not use: a constant keeps
    // the run free of the wall clock.
    let r = unit.process_bytes(engine, raw, 0);
    unit.upkeep(engine, 0, false);
    match r {
        Ok((ev, o)) => {
            let truth = label(&ev)?;
            let d = &o.decision;
            scored.recs.push(record(&ev, truth, d.score, d.action));
            Ok(Some((ev, o)))
        }
        Err(_) => {
            scored.invalid += 1;
            Ok(None)
        }
    }
}

/// Replays `events` through a fresh state of `engine`, as [`crate::tools::replay`] does, and scores
/// every valid event. Optionally writes the decisions (JSON lines, `.gz` compresses).
pub fn score_with_engine(
    engine: &Engine,
    events: &Path,
    labels: &Labels,
    decisions_out: Option<&Path>,
) -> Result<Scored, EvalError> {
    let mut unit = Unit::new(engine.new_state());
    let mut out = decisions_out.map(create_output).transpose()?;
    let mut buf = Vec::with_capacity(1024);
    let mut scored = Scored::default();
    for_each_line(events, |line, raw| {
        let label = |ev: &Event<'_>| file_truth(ev, labels, events, line);
        let done = score_event(engine, &mut unit, raw, &mut scored, label)?;
        if let (Some((ev, o)), Some(w), Some(path)) = (done, out.as_mut(), decisions_out) {
            buf.clear();
            output::write_decision(&mut buf, &ev, &o);
            buf.push(b'\n');
            w.write_all(&buf).map_err(|source| EvalError::Write {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    })?;
    if let (Some(mut w), Some(path)) = (out, decisions_out) {
        w.flush().map_err(|source| EvalError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(scored)
}

#[derive(Deserialize)]
struct DecisionLine<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    score: f64,
    #[serde(borrow)]
    action: Cow<'a, str>,
}

/// Reads a decisions file: `event_id` → `(score, action)`. The first decision of an id wins
/// (a replayed duplicate gets the same decision again).
pub fn read_decisions(path: &Path) -> Result<HashMap<Box<str>, (f32, Action)>, EvalError> {
    let mut map = HashMap::new();
    let file = path.display().to_string();
    for_each_line(path, |line, raw| {
        let err = |msg: String| EvalError::Decisions {
            path: file.clone(),
            line,
            msg,
        };
        let d: DecisionLine<'_> =
            serde_json::from_slice(raw).map_err(|e| err(format!("not a decision: {e}")))?;
        if !(0.0..=1.0).contains(&d.score) {
            return Err(err(format!("`score` {} is outside [0, 1]", d.score)));
        }
        let action = Action::parse(&d.action).ok_or_else(|| {
            err(format!(
                "`action` {:?} is not allow, review, step_up or freeze",
                d.action
            ))
        })?;
        map.entry(d.event_id.into())
            .or_insert((d.score as f32, action));
        Ok(())
    })?;
    Ok(map)
}

/// Joins a decisions file to the events and labels.
pub fn score_from_decisions(
    decisions: &Path,
    events: &Path,
    labels: &Labels,
) -> Result<Scored, EvalError> {
    let map = read_decisions(decisions)?;
    let mut scored = Scored::default();
    for_each_line(events, |line, raw| {
        match parse_event(raw) {
            Ok(ev) => {
                let (score, action) = *map.get(&*ev.event_id).ok_or_else(|| EvalError::Events {
                    path: events.display().to_string(),
                    line,
                    msg: format!(
                        "event {:?} has no decision in {}",
                        ev.event_id,
                        decisions.display()
                    ),
                })?;
                let truth = file_truth(&ev, labels, events, line)?;
                scored.recs.push(record(&ev, truth, score as f64, action));
            }
            Err(_) => scored.invalid += 1,
        }
        Ok(())
    })?;
    Ok(scored)
}

/// Where `walletguard eval` gets its decisions from.
pub enum Source<'a> {
    /// Replay the events through a pipeline with this config (named by `name` in the
    /// report), optionally saving the decisions.
    Pipeline {
        /// The config (boxed: it is large beside the other variant).
        config: Box<crate::service::config::Config>,
        /// The config file, for the report (`None`: defaults).
        name: Option<String>,
        /// Also write the decisions here.
        save_decisions: Option<&'a Path>,
    },
    /// Read them from a decisions file.
    Decisions(&'a Path),
}

/// `walletguard eval`: scores the events (or joins a decisions file to them) and computes the
/// report and curves against the labels.
pub fn run(
    events: &Path,
    labels: &Path,
    source: Source<'_>,
) -> Result<(Report, Curves), EvalError> {
    let label_rows = labels::read_labels(labels)?;
    let (scored, config, decisions) = match source {
        Source::Decisions(d) => (
            score_from_decisions(d, events, &label_rows)?,
            None,
            Some(d.display().to_string()),
        ),
        Source::Pipeline {
            config,
            name,
            save_decisions,
        } => {
            let engine = Engine::new(*config);
            let scored = score_with_engine(&engine, events, &label_rows, save_decisions)?;
            (scored, name, None)
        }
    };
    let inputs = Sources {
        events: events.display().to_string(),
        labels: labels.display().to_string(),
        config,
        decisions,
    };
    Ok(evaluate(inputs, &scored, &label_rows))
}

/// Computes the report and curves of scored events.
pub fn evaluate(inputs: Sources, scored: &Scored, labels: &Labels) -> (Report, Curves) {
    let (figures, curves) = figures::compute(&scored.recs, &labels.scenarios);
    (
        Report {
            inputs,
            invalid_events: scored.invalid,
            figures,
        },
        curves,
    )
}

/// Writes `report` as `<stem>.json` (pretty, with a final newline) and `markdown` as
/// `<stem>.md` into `dir`, creating it: the files of every report command (`eval`, `worlds`,
/// `compare`).
pub fn write_report<T: serde::Serialize>(
    dir: &Path,
    stem: &str,
    report: &T,
    markdown: &str,
) -> Result<(), EvalError> {
    let werr = |p: &Path| {
        let path = p.display().to_string();
        move |source| EvalError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    let p = dir.join(format!("{stem}.json"));
    let mut json = serde_json::to_vec_pretty(report).map_err(|e| EvalError::Write {
        path: p.display().to_string(),
        source: e.into(),
    })?;
    json.push(b'\n');
    std::fs::write(&p, json).map_err(werr(&p))?;
    let p = dir.join(format!("{stem}.md"));
    std::fs::write(&p, markdown).map_err(werr(&p))
}

/// Writes `report.json`, `report.md`, `pr.png` and `roc.png` into `dir` (created if needed).
pub fn write_outputs(dir: &Path, report: &Report, curves: &Curves) -> Result<(), EvalError> {
    write_report(dir, "report", report, &report.markdown())?;
    let o = &report.figures.overall;
    let title = format!("Precision-recall (average precision {})", fmt_opt(o.pr_auc));
    plot::draw(
        &dir.join("pr.png"),
        &plot::Curve {
            title: &title,
            x_label: "recall",
            y_label: "precision",
            points: &curves.pr,
            diagonal: false,
        },
    )?;
    let title = format!("ROC (AUC {})", fmt_opt(o.roc_auc));
    plot::draw(
        &dir.join("roc.png"),
        &plot::Curve {
            title: &title,
            x_label: "false-positive rate",
            y_label: "true-positive rate",
            points: &curves.roc,
            diagonal: true,
        },
    )?;
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}

/// `walletguard eval`: scores (or reads) the decisions, prints the table and, with `--out`,
/// writes the report and its curves. `config` (named `name`) is unused with `--decisions`.
pub fn command(
    a: &EvalArgs,
    config: Option<crate::service::config::Config>,
    name: Option<String>,
) -> Result<(), EvalError> {
    let source = match &a.decisions {
        Some(d) => Source::Decisions(d),
        None => Source::Pipeline {
            config: Box::new(config.unwrap_or_default()),
            name,
            save_decisions: a.save_decisions.as_deref(),
        },
    };
    let (report, curves) = run(&a.events, &a.labels, source)?;
    println!("{}", report.table());
    if let Some(dir) = &a.out {
        write_outputs(dir, &report, &curves)?;
        println!(
            "report -> {}/report.json, report.md, pr.png, roc.png",
            dir.display()
        );
    }
    Ok(())
}

/// Arguments of `walletguard eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Events (JSON lines, plain or .gz).
    #[arg(long)]
    pub events: std::path::PathBuf,
    /// Labels CSV (event_id,user_id,label,scenario).
    #[arg(long)]
    pub labels: std::path::PathBuf,
    /// Config files, laid over the built-in defaults in order (repeat `--config` for
    /// overlays: a later file's keys win). Unused with --decisions.
    #[arg(long, env = "WALLETGUARD_CONFIG")]
    pub config: Vec<std::path::PathBuf>,
    /// Read decisions from this file instead of running the pipeline.
    #[arg(long)]
    pub decisions: Option<std::path::PathBuf>,
    /// Directory for report.json, report.md, pr.png and roc.png.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Also write the pipeline's decisions here (JSON lines, `.gz` compresses).
    #[arg(long, conflicts_with = "decisions")]
    pub save_decisions: Option<std::path::PathBuf>,
}
