//! `walletguard worlds`: detection quality over many random worlds, and the worst of them.
//!
//! Each world is a [`WorldSpec`] drawn from its seed ([`WorldSpec::random`]): a wallet, card
//! or mobile-money service, any currency scale, any set of optional fields, any activity and
//! mix of honest behaviours and attack styles. Its events are generated in memory and fed, as
//! the JSON lines a file would hold, in event order through [`Engine::process_bytes`]
//! ([`super::score_event`], the step `eval` uses on files); the labels come straight from the
//! simulator. The figures are [`super::figures::compute`]'s.
//!
//! One row per world (seed, kind, currency and scale, fields, events, then six figures), then
//! the WORST row (per column, the worst value over the worlds: the highest false-alarm rate,
//! the lowest of the others) and the MEDIAN row. A figure a world cannot have (recall without
//! attacks) is left out of both. Worlds run on at most [`WorldsOptions::threads`] threads and
//! are reported in seed order, so the output does not depend on timing.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::figures;
use super::metamorphic::{self, MetaRow, Metamorphic};
use super::report::{Report, Sources};
pub use super::scoring::{for_each_event, score_simulation, RowFigures, WorldScorer};
use super::EvalError;
use crate::engine::pipeline::Engine;
use crate::service::config::Config;
use crate::tools::sim::{SimParams, WorldKind, WorldSpec};

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldsOptions {
    /// Number of worlds.
    pub count: u32,
    /// Seed of the first world; world `i` has seed `first_seed + i`.
    pub first_seed: u64,
    /// Worlds of this kind only (`None`: any kind).
    pub kind: Option<WorldKind>,
    /// Users, days, rates and start date of every world (its `seed` and `world` are replaced).
    pub base: SimParams,
    /// Write `worlds.json` and `worlds.md` here.
    pub out: Option<PathBuf>,
    /// Worker threads (at least 1; each holds one world's state and records).
    pub threads: usize,
    /// Also score each world's metamorphic variants ([`metamorphic`]) and report how its
    /// decisions change.
    pub metamorphic: bool,
}

/// One world's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorldResult {
    /// Its seed.
    pub seed: u64,
    /// Its spec.
    pub spec: WorldSpec,
    /// Events scored.
    pub events: u64,
    /// Its row.
    pub row: RowFigures,
    /// Its full evaluation report.
    pub report: Report,
    /// Its metamorphic variants compared with it (with `--metamorphic`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metamorphic: Option<Metamorphic>,
}

/// Every world, then the worst and median rows (`worlds.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorldsReport {
    /// Config of the pipeline (`None`: built-in defaults).
    pub config: Option<String>,
    /// Users per world.
    pub users: u32,
    /// Days per world.
    pub days: u32,
    /// The worlds, in seed order.
    pub worlds: Vec<WorldResult>,
    /// Per column, the worst value over the worlds.
    pub worst: RowFigures,
    /// Per column, the median over the worlds.
    pub median: RowFigures,
    /// The metamorphic columns' worst and median rows (with `--metamorphic`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metamorphic: Option<metamorphic::MetaSummary>,
}

/// Scores one world.
pub fn run_world(
    engine: &Engine,
    opts: &WorldsOptions,
    seed: u64,
    config: Option<&str>,
) -> Result<WorldResult, EvalError> {
    let spec = WorldSpec::random(seed, opts.kind);
    let params = SimParams {
        seed,
        world: spec.clone(),
        ..opts.base.clone()
    };
    let (scored, names, meta) = if opts.metamorphic {
        let (scored, names, meta) = metamorphic::score_world(engine, &params)?;
        (scored, names, Some(meta))
    } else {
        let (scored, names) = score_simulation(engine, &params)?;
        (scored, names, None)
    };
    let (figures, _) = figures::compute(&scored.recs, &names);
    let name = format!("simulated world {seed} ({}), in memory", spec.kind.as_str());
    let report = Report {
        inputs: Sources {
            events: name.clone(),
            labels: name,
            decisions: None,
            config: config.map(str::to_owned),
        },
        invalid_events: scored.invalid,
        figures,
    };
    Ok(WorldResult {
        seed,
        events: report.figures.overall.events,
        row: RowFigures::of(&report.figures),
        spec,
        report,
        metamorphic: meta,
    })
}

/// Scores every world of `opts` on up to `opts.threads` threads; results in seed order.
pub fn score_worlds(
    config: &Config,
    config_name: Option<&str>,
    opts: &WorldsOptions,
) -> Result<WorldsReport, EvalError> {
    let engine = Engine::new(config.clone());
    let n = opts.count as usize;
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Result<WorldResult, EvalError>>>> =
        Mutex::new((0..n).map(|_| None).collect());
    let threads = opts.threads.clamp(1, n.max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let seed = opts.first_seed + i as u64;
                    let r = run_world(&engine, opts, seed, config_name);
                    let mut g = slots.lock().unwrap_or_else(|p| p.into_inner());
                    g[i] = Some(r);
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panicked".into());
                EvalError::Worker(msg)
            })?;
        }
        Ok::<(), EvalError>(())
    })?;
    let mut worlds = Vec::with_capacity(n);
    for (i, r) in slots
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .enumerate()
    {
        let r = r.ok_or_else(|| EvalError::Worker(format!("world {i} was not scored")))?;
        worlds.push(r?);
    }
    let rows: Vec<RowFigures> = worlds.iter().map(|w| w.row).collect();
    let meta: Option<Vec<MetaRow>> = worlds
        .iter()
        .map(|w| w.metamorphic.as_ref().map(Metamorphic::row))
        .collect();
    Ok(WorldsReport {
        metamorphic: meta.filter(|m| !m.is_empty()).map(|m| {
            metamorphic::MetaSummary::of(&m, worlds.iter().filter_map(|w| w.metamorphic.as_ref()))
        }),
        config: config_name.map(str::to_owned),
        users: opts.base.users,
        days: opts.base.days,
        worst: RowFigures::worst(&rows),
        median: RowFigures::median(&rows),
        worlds,
    })
}

use super::report::pct;

fn figure_cells(r: &RowFigures) -> [String; 6] {
    [
        pct(r.false_freeze, 2),
        pct(r.any_alert, 2),
        pct(r.recall, 1),
        pct(r.freeze_before_2nd, 1),
        pct(r.money_saved, 1),
        r.pr_auc
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into()),
    ]
}

const META_HEADS: [&str; 6] = [
    "×1000 same",
    "no-id ff",
    "no-id freeze<2nd",
    "no-id saved",
    "renamed same",
    "renamed Δscore",
];

const HEADS: [&str; 12] = [
    "seed",
    "kind",
    "currency",
    "scale",
    "fields",
    "events",
    "false-freeze",
    "any-alert",
    "recall",
    "freeze<2nd",
    "saved",
    "PR-AUC",
];

impl WorldsReport {
    /// The table's cells: a row per world, then WORST and MEDIAN.
    pub fn cells(&self) -> Vec<[String; 12]> {
        let mut rows = Vec::new();
        for w in &self.worlds {
            let f = figure_cells(&w.row);
            let c = &w.spec.currency;
            rows.push([
                w.seed.to_string(),
                w.spec.kind.as_str().to_owned(),
                c.code.clone(),
                format!("×{}", c.scale),
                w.spec.fields.short(),
                w.events.to_string(),
                f[0].clone(),
                f[1].clone(),
                f[2].clone(),
                f[3].clone(),
                f[4].clone(),
                f[5].clone(),
            ]);
        }
        for (name, r) in [("WORST", &self.worst), ("MEDIAN", &self.median)] {
            let f = figure_cells(r);
            let mut row: [String; 12] = Default::default();
            row[0] = name.into();
            for (d, s) in row[6..].iter_mut().zip(f) {
                *d = s;
            }
            rows.push(row);
        }
        rows
    }

    /// The table's head and rows: [`WorldsReport::cells`], then with `--metamorphic` the
    /// metamorphic columns ([`WorldsReport::meta_cells`]).
    fn grid(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut heads: Vec<String> = HEADS.iter().map(|h| h.to_string()).collect();
        let mut rows: Vec<Vec<String>> = self.cells().into_iter().map(Vec::from).collect();
        if let Some(meta) = self.meta_cells() {
            heads.extend(META_HEADS.iter().map(|h| h.to_string()));
            for (r, m) in rows.iter_mut().zip(meta) {
                r.extend(m);
            }
        }
        (heads, rows)
    }

    /// The metamorphic cells (`None` without `--metamorphic`): a row per world, then WORST
    /// and MEDIAN, as [`WorldsReport::cells`].
    pub fn meta_cells(&self) -> Option<Vec<[String; 6]>> {
        let summary = self.metamorphic.as_ref()?;
        let mut rows = Vec::new();
        for w in &self.worlds {
            let r = w
                .metamorphic
                .as_ref()
                .map(Metamorphic::row)
                .unwrap_or_default();
            rows.push(metamorphic::meta_cells(&r));
        }
        rows.push(metamorphic::meta_cells(&summary.worst));
        rows.push(metamorphic::meta_cells(&summary.median));
        Some(rows)
    }

    /// The text table printed on stdout. `fields` is `d` `i` `g` `b` for `device_id`, `ip`,
    /// `geo` and `balance_after` present, `-` for each absent. With `--metamorphic`, the
    /// metamorphic columns follow, then the flip matrices summed over the worlds.
    pub fn table(&self) -> String {
        let (heads, rows) = self.grid();
        let mut width: Vec<usize> = heads.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut s = String::new();
        let line = |s: &mut String, cells: &[String]| {
            for (i, c) in cells.iter().enumerate() {
                let pad = width[i] - c.chars().count();
                // Text left, numbers right.
                if i <= 4 {
                    let _ = write!(s, "{c}{}", " ".repeat(pad));
                } else {
                    let _ = write!(s, "{}{c}", " ".repeat(pad));
                }
                s.push_str(if i + 1 < cells.len() { "  " } else { "\n" });
            }
        };
        line(&mut s, &heads);
        for r in &rows {
            line(&mut s, r);
        }
        s.push_str(
            "fields: d device_id, i ip, g geo, b balance_after, - absent; false-freeze and \
             any-alert over benign users; recall, freeze<2nd and saved over attacks\n",
        );
        if let Some(m) = &self.metamorphic {
            s.push_str(metamorphic::LEGEND);
            s.push_str(&m.matrices());
        }
        s
    }

    /// `worlds.md`: the table in Markdown, then each world's spec in one line.
    pub fn markdown(&self) -> String {
        let mut s = String::from("# walletguard: detection quality over random worlds\n\n");
        let _ = writeln!(
            s,
            "{} worlds of {} users × {} days, pipeline config {}. `fields`: `d` `i` `g` `b` for \
             `device_id`, `ip`, `geo`, `balance_after` present. WORST is per column the worst \
             value over the worlds, MEDIAN the median. Rates are over benign users (false \
             freeze, any alert) and attack instances (recall, freeze before the 2nd money-out, \
             money saved); definitions in `walletguard::tools::eval::figures`.\n",
            self.worlds.len(),
            self.users,
            self.days,
            self.config.as_deref().unwrap_or("built-in defaults")
        );
        let (heads, rows) = self.grid();
        let _ = writeln!(s, "| {} |", heads.join(" | "));
        let _ = writeln!(
            s,
            "|{}",
            heads
                .iter()
                .enumerate()
                .map(|(i, _)| if (1..=4).contains(&i) {
                    "---|"
                } else {
                    "---:|"
                })
                .collect::<String>()
        );
        for r in rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        if let Some(m) = &self.metamorphic {
            let _ = write!(s, "\n{}\n```\n{}```\n", metamorphic::LEGEND, m.matrices());
        }
        s.push_str("\n## Worlds\n\n");
        for w in &self.worlds {
            let _ = writeln!(s, "- {}: {}", w.seed, w.spec.summary());
        }
        s.push_str("\nEvery world's spec and full report: `worlds.json`.\n");
        s
    }
}

/// `walletguard worlds`: scores the worlds, prints the table on `out`, and writes
/// `worlds.json` and `worlds.md` when `opts.out` is set.
pub fn run(
    config: &Config,
    config_name: Option<&str>,
    opts: &WorldsOptions,
    out: &mut dyn Write,
) -> Result<WorldsReport, EvalError> {
    let report = score_worlds(config, config_name, opts)?;
    let werr = |p: &std::path::Path| {
        let path = p.display().to_string();
        move |source| EvalError::Write { path, source }
    };
    out.write_all(report.table().as_bytes())
        .map_err(werr(std::path::Path::new("stdout")))?;
    if let Some(dir) = &opts.out {
        super::write_report(dir, "worlds", &report, &report.markdown())?;
        let _ = writeln!(out, "report -> {}/worlds.json, worlds.md", dir.display());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::scoring::{scenario_index, scenario_names};
    use super::*;
    use crate::tools::sim::Scenario;

    fn row(v: [Option<f64>; 6]) -> RowFigures {
        RowFigures::from_columns(v)
    }

    #[test]
    fn worst_and_median_are_per_column() {
        let rows = [
            row([
                Some(0.01),
                Some(0.10),
                Some(0.9),
                Some(0.5),
                None,
                Some(0.75),
            ]),
            row([
                Some(0.03),
                Some(0.05),
                Some(0.6),
                Some(0.8),
                Some(0.4),
                Some(0.25),
            ]),
            row([
                Some(0.02),
                Some(0.20),
                Some(0.8),
                Some(0.1),
                Some(0.9),
                None,
            ]),
        ];
        let w = RowFigures::worst(&rows);
        assert_eq!(
            w.columns(),
            [
                Some(0.03),
                Some(0.20),
                Some(0.6),
                Some(0.1),
                Some(0.4),
                Some(0.25)
            ]
        );
        let m = RowFigures::median(&rows);
        assert_eq!(
            m.columns(),
            [
                Some(0.02),
                Some(0.10),
                Some(0.8),
                Some(0.5),
                Some(0.65),
                Some(0.5)
            ]
        );
        assert_eq!(RowFigures::worst(&[]).columns(), [None; 6]);
    }

    #[test]
    fn scenario_indexes_name_their_scenarios() {
        let names = scenario_names();
        for s in Scenario::ATTACKS.iter().chain(&Scenario::NOVELTIES) {
            assert_eq!(names[scenario_index(*s) as usize], s.as_str());
        }
        assert_eq!(scenario_index(Scenario::None), 0);
    }
}
