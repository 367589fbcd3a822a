//! Scoring simulated worlds in memory, shared by `walletguard worlds` ([`super::worlds`]) and
//! its metamorphic checks ([`super::metamorphic`]): each event generated in memory, fed as the
//! JSON line a file would hold through [`super::score_event`] with the simulator's label, and
//! the six figures of a world's row.

use serde::Serialize;

use super::figures::Figures;
use super::{score_event, EvalError, Scored, Truth};
use crate::engine::decision::Action;
use crate::engine::pipeline::Engine;
use crate::engine::unit::Unit;
use crate::tools::sim::{Scenario, SimEvent, SimParams, Simulator};

/// The six figures of a row. `None`: the world has nothing to measure it on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RowFigures {
    /// Benign users with any freeze, over benign users.
    pub false_freeze: Option<f64>,
    /// Benign users with any non-allow decision, over benign users.
    pub any_alert: Option<f64>,
    /// Attack instances with any non-allow decision.
    pub recall: Option<f64>,
    /// Attack instances frozen by their second money-out.
    pub freeze_before_2nd: Option<f64>,
    /// Attack money-out at or after the first freeze, over all attack money-out.
    pub money_saved: Option<f64>,
    /// Average precision of the score against the label.
    pub pr_auc: Option<f64>,
}

/// Whether a higher value of a column is worse.
const HIGHER_IS_WORSE: [bool; 6] = [true, true, false, false, false, false];

impl RowFigures {
    /// The row of an evaluation.
    pub fn of(f: &Figures) -> RowFigures {
        let all = f.scenarios.iter().find(|s| s.scenario == "all");
        RowFigures {
            false_freeze: f.overall.false_freeze_rate_benign_users,
            any_alert: f.overall.false_alert_rate_benign_users,
            recall: all.and_then(|a| a.recall),
            freeze_before_2nd: all.and_then(|a| a.freeze_recall),
            money_saved: all.and_then(|a| a.money_saved_share),
            pr_auc: f.overall.pr_auc,
        }
    }

    /// The columns in table order.
    pub fn columns(&self) -> [Option<f64>; 6] {
        [
            self.false_freeze,
            self.any_alert,
            self.recall,
            self.freeze_before_2nd,
            self.money_saved,
            self.pr_auc,
        ]
    }

    /// A row from its six columns, in table order.
    pub(crate) fn from_columns(c: [Option<f64>; 6]) -> RowFigures {
        RowFigures {
            false_freeze: c[0],
            any_alert: c[1],
            recall: c[2],
            freeze_before_2nd: c[3],
            money_saved: c[4],
            pr_auc: c[5],
        }
    }

    /// Per column, the worst value over `rows`: the highest false-freeze and false-alert
    /// rates, the lowest recall, early freezes, money saved and PR-AUC. Rows without a value
    /// in a column do not count in it.
    pub fn worst(rows: &[RowFigures]) -> RowFigures {
        let mut c = [None; 6];
        for (i, out) in c.iter_mut().enumerate() {
            let vals = rows.iter().filter_map(|r| r.columns()[i]);
            *out = if HIGHER_IS_WORSE[i] {
                vals.max_by(f64::total_cmp)
            } else {
                vals.min_by(f64::total_cmp)
            };
        }
        RowFigures::from_columns(c)
    }

    /// Per column, the median over `rows` (the mean of the two middle values for an even
    /// count).
    pub fn median(rows: &[RowFigures]) -> RowFigures {
        let mut c = [None; 6];
        for (i, out) in c.iter_mut().enumerate() {
            let mut v: Vec<f64> = rows.iter().filter_map(|r| r.columns()[i]).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            *out = match n {
                0 => None,
                _ if n % 2 == 1 => Some(v[n / 2]),
                _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
            };
        }
        RowFigures::from_columns(c)
    }
}

/// Label index of every scenario and novelty kind: 0 is ordinary, then
/// [`Scenario::ATTACKS`], then [`Scenario::NOVELTIES`].
pub(crate) fn scenario_names() -> Vec<String> {
    std::iter::once(String::new())
        .chain(
            Scenario::ATTACKS
                .iter()
                .chain(&Scenario::NOVELTIES)
                .map(|s| s.as_str().to_owned()),
        )
        .collect()
}

/// The label index of `s` in [`scenario_names`] (0: ordinary).
pub(crate) fn scenario_index(s: Scenario) -> u16 {
    Scenario::ATTACKS
        .iter()
        .chain(&Scenario::NOVELTIES)
        .position(|x| *x == s)
        .map(|i| i as u16 + 1)
        .unwrap_or(0)
}

/// Generates the simulation of `params` in memory and hands every event to `f`, in event
/// order.
pub fn for_each_event(
    params: &SimParams,
    mut f: impl FnMut(&SimEvent) -> Result<(), EvalError>,
) -> Result<(), EvalError> {
    let mut sim = Simulator::new(params)?;
    while let Some(day) = sim.next_day() {
        for ev in day {
            f(ev)?;
        }
    }
    Ok(())
}

/// One stream of simulated events scored through an engine: its own fresh state, the records
/// (kept or not), and a line buffer.
pub struct WorldScorer {
    unit: Unit,
    /// The records of the events scored so far (only the invalid count when not kept).
    pub scored: Scored,
    keep: bool,
    line: Vec<u8>,
}

impl WorldScorer {
    /// A scorer with a fresh state of `engine`; `keep`: whether to keep every record.
    pub fn new(engine: &Engine, keep: bool) -> WorldScorer {
        WorldScorer {
            unit: Unit::new(engine.new_state()),
            scored: Scored::default(),
            keep,
            line: Vec::with_capacity(512),
        }
    }

    /// Scores `ev` as the JSON line a file would hold ([`SimEvent::write_json`], through
    /// [`score_event`]) with the simulator's label. Returns its score and action, or `None`
    /// for an event the pipeline rejects.
    pub fn score(
        &mut self,
        engine: &Engine,
        ev: &SimEvent,
    ) -> Result<Option<(f64, Action)>, EvalError> {
        self.line.clear();
        ev.write_json(&mut self.line);
        let truth = Truth {
            user: ev.user,
            attack: ev.label() == 1,
            scenario: scenario_index(ev.scenario),
        };
        let done = score_event(engine, &mut self.unit, &self.line, &mut self.scored, |_| {
            Ok(truth)
        })?
        .map(|(_, o)| (o.decision.score, o.decision.action));
        if !self.keep {
            self.scored.recs.clear();
        }
        Ok(done)
    }
}

/// Generates the simulation of `params` in memory and scores every event through `engine`
/// as the JSON line a file would hold, in event order. Returns the records and the scenario
/// names their indexes refer to.
pub fn score_simulation(
    engine: &Engine,
    params: &SimParams,
) -> Result<(Scored, Vec<String>), EvalError> {
    let mut scorer = WorldScorer::new(engine, true);
    for_each_event(params, |ev| scorer.score(engine, ev).map(|_| ()))?;
    Ok((scorer.scored, scenario_names()))
}
