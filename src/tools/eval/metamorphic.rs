//! Metamorphic checks of detection, as a measuring instrument (`walletguard worlds
//! --metamorphic`).
//!
//! Detection should not depend on the currency scale, should degrade gracefully when optional
//! fields are missing, and should not depend on how ids are spelled. Each world is therefore
//! scored four times, event by event, on four fresh pipeline states fed from ONE generated
//! stream ([`super::scoring::for_each_event`], [`WorldScorer`], the scoring path of every
//! world): as generated, and as three variants that differ only in how each event is
//! written ([`SimEvent::wire`], so the events, their order and their labels are the same):
//!
//! 1. **×1000** ([`currency_x1000`], [`Wire::x1000`]): every amount and balance written
//!    ×1000 exactly, in another currency code (the world's [`Currency`] with its scale ×1000
//!    and its decimals and rounding step adjusted so that the written value is the original
//!    one ×1000; written from the same rounded minor amounts, since the float factor of the
//!    bigger scale would round a few ties to another step).
//! 2. **no identity fields**: no `device_id`, `ip` or `geo` on any event (a world that never
//!    had them is its own variant).
//! 3. **renamed ids**: every `event_id`, `user_id`, `device_id` and `counterparty` spelled
//!    through a keyed bijection ([`crate::tools::sim::ids`]), keyed by the world's seed.
//!
//! Each variant is compared with the world as generated ([`VariantComparison`]): the share of events
//! with the same action, the 4×4 flip matrix (rows: action as generated, columns: action in
//! the variant, in [`Action::ALL`] order), events whose score differs, events valid in one
//! and not the other. For the no-identity variant the figures that matter are also computed
//! on its own records: benign-user false-freeze rate, attack freeze before the 2nd money-out,
//! money saved, before and after. Nothing here asserts that detection passes: it measures.

use serde::Serialize;

use super::figures;
use super::scoring::{for_each_event, scenario_names, RowFigures, WorldScorer};
use super::{EvalError, Scored};
use crate::engine::decision::Action;
use crate::engine::pipeline::Engine;
use crate::tools::sim::{world, Currency, SimEvent, SimParams, Wire, WorldSpec};

/// Currency code used when the nearest real code of the scale ×1000 is the world's own
/// (ISO 4217's code for testing).
const TEST_CODE: &str = "XTS";

/// `c` with every written amount ×1000: scale ×1000, the nearest real code (or `XTS` when
/// that is `c`'s own), decimals 3 fewer (at least 0) and a rounding step such that the
/// written amounts are exactly `c`'s ×1000.
pub fn currency_x1000(c: &Currency) -> Currency {
    let scale = c.scale * 1000.0;
    let mut code = Currency::for_scale(scale).code;
    if code == c.code {
        code = TEST_CODE.into();
    }
    let decimals = c.decimals.saturating_sub(3);
    // A step is worth step × 10^-d; ×1000 it is step × 10^(3 - d + d') new minor units,
    // and 3 - d + d' is 3 - min(d, 3).
    let step = c.step.max(1) * 10u32.pow(3 - c.decimals.min(3) as u32);
    Currency {
        code,
        scale,
        decimals,
        step,
    }
}

/// An action's index in [`Action::ALL`].
fn action_index(a: Action) -> usize {
    Action::ALL.iter().position(|x| *x == a).unwrap_or(0)
}

/// A variant compared event by event with the world as generated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VariantComparison {
    /// Events valid both as generated and in the variant (compared).
    pub events: u64,
    /// Compared events with the same action.
    pub same_action: u64,
    /// `same_action / events` (`None` without events).
    pub same_share: Option<f64>,
    /// Rows: action as generated; columns: action in the variant; [`Action::ALL`] order.
    pub flips: [[u64; 4]; 4],
    /// Compared events whose score differs.
    pub score_differs: u64,
    /// Events valid in one stream and not in the other (not compared).
    pub validity_differs: u64,
}

impl VariantComparison {
    /// Adds one event: its `(score, action)` as generated and in the variant.
    pub fn add(&mut self, base: Option<(f64, Action)>, variant: Option<(f64, Action)>) {
        match (base, variant) {
            (Some((s0, a0)), Some((s1, a1))) => {
                self.events += 1;
                self.same_action += (a0 == a1) as u64;
                self.score_differs += (s0 != s1) as u64;
                self.flips[action_index(a0)][action_index(a1)] += 1;
            }
            (None, None) => {}
            _ => self.validity_differs += 1,
        }
        self.same_share = (self.events > 0).then(|| self.same_action as f64 / self.events as f64);
    }

    /// Whether every compared event kept its action (the flip matrix is diagonal).
    pub fn is_diagonal(&self) -> bool {
        (0..4).all(|i| (0..4).all(|j| i == j || self.flips[i][j] == 0))
    }
}

/// The no-identity-fields variant: its comparison and the figures before and after.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NoIdentity {
    /// Event by event against the world as generated.
    pub compared: VariantComparison,
    /// The world's figures as generated.
    pub before: RowFigures,
    /// The figures without `device_id`, `ip` and `geo`.
    pub after: RowFigures,
}

/// One world's three variants.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metamorphic {
    /// The currency of the ×1000 variant.
    pub x1000_currency: Currency,
    /// Amounts and balances ×1000.
    pub x1000: VariantComparison,
    /// Without `device_id`, `ip` and `geo`.
    pub no_identity: NoIdentity,
    /// Every id renamed.
    pub renamed: VariantComparison,
}

/// The metamorphic columns of a row: ×1000 same share; no-identity false freeze, freeze
/// before the 2nd money-out and money saved, each before and after; renamed same share and
/// events with a different score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MetaRow {
    /// Share of events with the same action under ×1000.
    pub x1000_same: Option<f64>,
    /// Benign false-freeze rate (before, after) without identity fields.
    pub no_id_false_freeze: (Option<f64>, Option<f64>),
    /// Freeze before the 2nd money-out (before, after) without identity fields.
    pub no_id_freeze_before_2nd: (Option<f64>, Option<f64>),
    /// Money saved (before, after) without identity fields.
    pub no_id_money_saved: (Option<f64>, Option<f64>),
    /// Share of events with the same action with renamed ids.
    pub renamed_same: Option<f64>,
    /// Events whose score differs with renamed ids.
    pub renamed_score_differs: Option<f64>,
}

impl Metamorphic {
    /// The world's metamorphic columns.
    pub fn row(&self) -> MetaRow {
        let (b, a) = (&self.no_identity.before, &self.no_identity.after);
        MetaRow {
            x1000_same: self.x1000.same_share,
            no_id_false_freeze: (b.false_freeze, a.false_freeze),
            no_id_freeze_before_2nd: (b.freeze_before_2nd, a.freeze_before_2nd),
            no_id_money_saved: (b.money_saved, a.money_saved),
            renamed_same: self.renamed.same_share,
            renamed_score_differs: Some(self.renamed.score_differs as f64),
        }
    }
}

/// The worst and median of the metamorphic columns over the worlds, and the flip matrices
/// summed over them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetaSummary {
    /// Lowest same shares, most score changes; for a before→after pair, the pair of the world
    /// where it got worst (false freeze rose most; early freeze or money saved fell most).
    pub worst: MetaRow,
    /// Per column (and per side of a pair), the median.
    pub median: MetaRow,
    /// ×1000 flips summed over the worlds.
    pub x1000_flips: [[u64; 4]; 4],
    /// No-identity flips summed over the worlds.
    pub no_identity_flips: [[u64; 4]; 4],
    /// Renamed-id flips summed over the worlds.
    pub renamed_flips: [[u64; 4]; 4],
}

/// The median of `v`; `None` when empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    super::figures::median(&mut v)
}

type Pair = (Option<f64>, Option<f64>);

/// The pair whose `after - before` is the highest (`rise`) or the lowest.
fn worst_pair(pairs: impl Iterator<Item = Pair>, rise: bool) -> Pair {
    pairs
        .filter_map(|p| match p {
            (Some(b), Some(a)) => Some((b, a)),
            _ => None,
        })
        .max_by(|x, y| {
            let (dx, dy) = (x.1 - x.0, y.1 - y.0);
            if rise {
                dx.total_cmp(&dy)
            } else {
                dy.total_cmp(&dx)
            }
        })
        .map(|(b, a)| (Some(b), Some(a)))
        .unwrap_or((None, None))
}

fn add_matrix(to: &mut [[u64; 4]; 4], m: &[[u64; 4]; 4]) {
    for (r, s) in to.iter_mut().zip(m) {
        for (x, y) in r.iter_mut().zip(s) {
            *x += y;
        }
    }
}

impl MetaSummary {
    /// The summary of `rows` (one per world) and their worlds' comparisons.
    pub fn of<'a>(rows: &[MetaRow], worlds: impl Iterator<Item = &'a Metamorphic>) -> MetaSummary {
        let col = |f: &dyn Fn(&MetaRow) -> Option<f64>| -> Vec<f64> {
            rows.iter().filter_map(f).collect()
        };
        let min = |v: Vec<f64>| v.into_iter().min_by(f64::total_cmp);
        let max = |v: Vec<f64>| v.into_iter().max_by(f64::total_cmp);
        let med_pair = |f: &dyn Fn(&MetaRow) -> Pair| -> Pair {
            (median(col(&|r| f(r).0)), median(col(&|r| f(r).1)))
        };
        let mut s = MetaSummary {
            worst: MetaRow {
                x1000_same: min(col(&|r| r.x1000_same)),
                no_id_false_freeze: worst_pair(rows.iter().map(|r| r.no_id_false_freeze), true),
                no_id_freeze_before_2nd: worst_pair(
                    rows.iter().map(|r| r.no_id_freeze_before_2nd),
                    false,
                ),
                no_id_money_saved: worst_pair(rows.iter().map(|r| r.no_id_money_saved), false),
                renamed_same: min(col(&|r| r.renamed_same)),
                renamed_score_differs: max(col(&|r| r.renamed_score_differs)),
            },
            median: MetaRow {
                x1000_same: median(col(&|r| r.x1000_same)),
                no_id_false_freeze: med_pair(&|r| r.no_id_false_freeze),
                no_id_freeze_before_2nd: med_pair(&|r| r.no_id_freeze_before_2nd),
                no_id_money_saved: med_pair(&|r| r.no_id_money_saved),
                renamed_same: median(col(&|r| r.renamed_same)),
                renamed_score_differs: median(col(&|r| r.renamed_score_differs)),
            },
            ..MetaSummary::default()
        };
        for w in worlds {
            add_matrix(&mut s.x1000_flips, &w.x1000.flips);
            add_matrix(&mut s.no_identity_flips, &w.no_identity.compared.flips);
            add_matrix(&mut s.renamed_flips, &w.renamed.flips);
        }
        s
    }
}

/// The three variant wires of an event written with `w` in world `spec` of seed `seed`:
/// ×1000, no identity fields, renamed ids.
pub fn variant_wires(spec: &WorldSpec, seed: u64, w: Wire) -> [Wire; 3] {
    let mut code = [b'X'; 3];
    for (d, s) in code
        .iter_mut()
        .zip(currency_x1000(&spec.currency).code.bytes())
    {
        *d = s;
    }
    let x1000 = w.x1000(code);
    let no_id = Wire {
        fields: w.fields & !(Wire::DEVICE | Wire::IP | Wire::GEO),
        ..w
    };
    let renamed = Wire {
        rename: Some(world::digest(seed, b"rename-ids", &[])),
        ..w
    };
    [x1000, no_id, renamed]
}

/// Scores the world of `params` as generated and its three variants, each on a fresh state
/// of `engine`, from one generated stream. Returns the records as generated (as
/// [`super::scoring::score_simulation`] does), the scenario names, and the comparisons.
pub fn score_world(
    engine: &Engine,
    params: &SimParams,
) -> Result<(Scored, Vec<String>, Metamorphic), EvalError> {
    let wires = variant_wires(&params.world, params.seed, Wire::of(&params.world));
    let mut base = WorldScorer::new(engine, true);
    let mut x1000 = WorldScorer::new(engine, false);
    let mut no_id = WorldScorer::new(engine, true);
    let mut renamed = WorldScorer::new(engine, false);
    let mut m = Metamorphic {
        x1000_currency: currency_x1000(&params.world.currency),
        ..Metamorphic::default()
    };
    for_each_event(params, |ev| {
        let b = base.score(engine, ev)?;
        let variant = |w: Wire| SimEvent { wire: w, ..*ev };
        m.x1000.add(b, x1000.score(engine, &variant(wires[0]))?);
        m.no_identity
            .compared
            .add(b, no_id.score(engine, &variant(wires[1]))?);
        m.renamed.add(b, renamed.score(engine, &variant(wires[2]))?);
        Ok(())
    })?;
    let names = scenario_names();
    let figures = |s: &Scored| RowFigures::of(&figures::compute(&s.recs, &names).0);
    m.no_identity.before = figures(&base.scored);
    m.no_identity.after = figures(&no_id.scored);
    Ok((base.scored, names, m))
}

/// The legend of the metamorphic columns.
pub const LEGEND: &str = "×1000 same: share of events with the same action with amounts and \
balances ×1000; no-id: without device_id, ip and geo, before→after (ff: benign false-freeze \
rate); renamed: every id spelled through a keyed bijection (same action share, events whose \
score differs); WORST pairs: the world where the figure got worst\n";

use super::report::pct;

fn pair(p: Pair, decimals: usize) -> String {
    match p {
        (None, None) => "-".into(),
        (b, a) => format!("{}→{}", pct(b, decimals), pct(a, decimals)),
    }
}

/// The table cells of a row of metamorphic columns.
pub fn meta_cells(r: &MetaRow) -> [String; 6] {
    [
        pct(r.x1000_same, 2),
        pair(r.no_id_false_freeze, 2),
        pair(r.no_id_freeze_before_2nd, 1),
        pair(r.no_id_money_saved, 1),
        pct(r.renamed_same, 2),
        r.renamed_score_differs
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "-".into()),
    ]
}

/// A flip matrix as text: rows the action as generated, columns the action in the variant.
pub fn matrix_text(title: &str, m: &[[u64; 4]; 4]) -> String {
    use std::fmt::Write as _;
    let names = Action::ALL.map(Action::as_str);
    let w = m
        .iter()
        .flatten()
        .map(|v| v.to_string().len())
        .chain(names.iter().map(|n| n.len()))
        .max()
        .unwrap_or(7);
    let mut s = format!("{title} (rows: as generated, columns: variant)\n");
    let _ = write!(s, "{:>w$}", "");
    for n in names {
        let _ = write!(s, "  {n:>w$}");
    }
    s.push('\n');
    for (n, row) in names.iter().zip(m) {
        let _ = write!(s, "{n:>w$}");
        for v in row {
            let _ = write!(s, "  {v:>w$}");
        }
        s.push('\n');
    }
    s
}

impl MetaSummary {
    /// The three flip matrices summed over the worlds, as text.
    pub fn matrices(&self) -> String {
        [
            ("×1000 flips, all worlds", &self.x1000_flips),
            ("no-id flips, all worlds", &self.no_identity_flips),
            ("renamed flips, all worlds", &self.renamed_flips),
        ]
        .iter()
        .map(|(t, m)| matrix_text(t, m))
        .collect()
    }
}
