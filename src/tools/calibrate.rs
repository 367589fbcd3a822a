//! `walletguard calibrate`: tune the config to a deployment's own history, within its budgets.
//!
//! # Steps
//! 1. **Split by time.** A first pass reads only the events' times: the *fit* part is the
//!    first `fit_share` (70%) of the history's time span, the *held-out* part the rest.
//! 2. **Replay under the base config** (through [`crate::tools::replay::Partitioned`], as `replay`
//!    decides). For every fit-part event with a signal it keeps what the decision was made of
//!    (the signals without the chain, [`ChainHints`], the user, the label): a few dozen bytes
//!    per alerting event, nothing for the rest, so 10M events fit in memory. It also learns the
//!    priors from the fit part: the hour shares, the typical user's money out per day and the
//!    spread of one user's ln(amount).
//! 3. **With labels, fit the detector weights** (given at least [`MIN_ATTACK_EVENTS`]) (one
//!    per detector, and `decision.chain_bonus` for `ATO_CHAIN`) to rank attack events first:
//!    a coordinate search on the average precision of half the users' events under the real
//!    combination ([`Decider::evidence`], stake families and all), with each weight in
//!    [0.001, 1], pulled toward the base weight, and moved at most ×1.5 per round.
//!    Weights change what profiles learn, so each round's weights are judged again on the fit
//!    part *replayed* under them, on the other half's users, and kept only if the 95% lower
//!    bound of the gain in average precision (a paired bootstrap of those users) is above
//!    zero; up to 3 rounds. Attack events are all kept; other alerting events
//!    are sampled down to [`FIT_SAMPLE`] with weights.
//!    The first [`WARM_UP`] of the fit part only teaches the state (a replay starts from
//!    empty profiles and an unlearned population); weights and thresholds are measured on
//!    the rest of it.
//! 4. **Choose the thresholds** on the fit part, with the fitted weights: the lowest
//!    `decision.freeze` whose frozen users without confirmed fraud stay within the false-freeze
//!    budget, the lowest `decision.review` whose alerted events stay within the alert budget,
//!    and `decision.step_up` kept at its relative place between them. "Within" means the
//!    one-sided 95% Wilson upper bound of the share is within the budget, so a small history
//!    cannot talk itself into a low threshold. A decision's action for any thresholds comes
//!    from its [`Evidence`] without scoring again; since thresholds change what profiles learn
//!    (reviewed events are not learned), the fit part is replayed under the chosen
//!    thresholds and they are chosen again, until they settle (at most 4 rounds).
//! 5. **Check out of time**: the history is replayed again under the base and under the
//!    candidate, each with its own state ([`crate::tools::compare::run`] from the split time), and
//!    only held-out figures are reported. In-sample figures are never the result.
//! 6. **Write the overlay**: only the keys that changed, each commented with its figures.
//!    Loaded over the base files it is checked to give the candidate config exactly.
//!
//! A user has *confirmed fraud* when the labels mark any of their events as an attack, or a
//! `case_verdict` says `confirmed_fraud`; without either, every frozen user counts against
//! the false-freeze budget.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::engine::decision::{Action, ChainHints, Combine, Decider, Evidence};
use crate::engine::detect::{Code, Detail, Signals};
use crate::engine::pipeline::Engine;
use crate::service::config::Config;
use crate::tools::compare::{CompareInputs, CompareReport};
use crate::tools::eval::EvalError;
use crate::tools::replay::Partitioned;

/// Share of the fit part that only warms the state up before weights and thresholds are
/// measured.
pub const WARM_UP: f64 = 0.3;

/// Fewest attack events (after the warm-up of the fit part) the weight fit needs; with fewer,
/// the weights are kept: a dozen takeovers cannot say how much a new payee is worth.
pub const MIN_ATTACK_EVENTS: usize = 100;

/// Most non-attack events the weight fit looks at (sampled, with weights).
pub const FIT_SAMPLE: usize = 300_000;

/// Errors of `calibrate`.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// Reading the events or labels, or scoring.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The candidate config is invalid (a bug: every value is chosen within its rules).
    #[error("the calibrated config is invalid: {0}")]
    Config(#[from] crate::service::config::ConfigError),
    /// The history cannot be calibrated.
    #[error("cannot calibrate: {0}")]
    Unfit(String),
    /// The overlay could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What to aim for.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    /// Most users without confirmed fraud frozen, as a share of such users.
    pub false_freeze: f64,
    /// Most events alerted, as a share of events.
    pub alert: f64,
    /// Share of the history's time span to fit on (the rest is held out).
    pub fit_share: f64,
    /// Pull of fitted weights toward the base weights: average precision given up per unit
    /// of ln(weight / base weight)², summed over the weights.
    pub weight_reg: f64,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            false_freeze: 0.001,
            alert: 0.005,
            fit_share: 0.7,
            weight_reg: 0.002,
        }
    }
}

/// The inputs besides the base config.
pub struct CalibrateInputs<'a> {
    /// History (JSON lines, plain or .gz), in stream order.
    pub events: &'a Path,
    /// Labels CSV.
    pub labels: Option<&'a Path>,
    /// Name of the base config for reports.
    pub base_name: String,
    /// Emulated input partitions.
    pub partitions: u32,
    /// Lists to score against.
    pub lists: std::sync::Arc<crate::engine::lists::Lists>,
    /// Progress bars on stderr.
    pub progress: bool,
}

/// One changed key, its new value and why.
#[derive(Debug, Clone, Serialize)]
pub struct KeyChange {
    /// Dotted key.
    pub key: String,
    /// The base value, as TOML.
    pub from: String,
    /// The new value, as TOML.
    pub to: String,
    /// The figures that justify it (fit part).
    pub why: String,
}

/// The result of a calibration.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// Events read (valid).
    pub events: u64,
    /// The split: fit part before, held-out part from this time (epoch ms).
    pub split_ts: i64,
    /// Events in the fit part.
    pub fit_events: u64,
    /// Users active in the fit part, and of them without confirmed fraud.
    pub fit_users: (u64, u64),
    /// Weights were fitted (labels were given).
    pub fitted_weights: bool,
    /// Notes on budgets that could not be met, and the like.
    pub notes: Vec<String>,
    /// The keys changed.
    pub changes: Vec<KeyChange>,
    /// The out-of-time check: the held-out part under the base (live) and the candidate.
    pub held_out: CompareReport,
    /// The candidate config (not serialised: the overlay holds it).
    #[serde(skip)]
    pub candidate: Config,
}

/// Per-user facts of the fit part.
#[derive(Debug, Clone, Default)]
struct UserStat {
    fit: bool,
    confirmed: bool,
    outs: u32,
    amounts: u32,
    sum: f64,
    sumsq: f64,
    first: i64,
    last: i64,
}

/// The measured window's alerting events, flat, and what they are measured against.
#[derive(Default)]
struct Stored {
    /// Events in the window (feedback excluded).
    events: u64,
    /// Attack events in the window, with a signal or not.
    attacks: u64,
    /// Attack events in the window per user.
    user_attacks: Vec<u32>,
    /// Events in the window per user.
    user_events: Vec<u32>,
    /// Users with an event in the window.
    active: Vec<bool>,
    user: Vec<u32>,
    attack: Vec<bool>,
    hints: Vec<ChainHints>,
    start: Vec<u32>,
    code: Vec<Code>,
    score: Vec<f32>,
    weight: Vec<f32>,
}

impl Stored {
    fn len(&self) -> usize {
        self.user.len()
    }

    fn push(&mut self, user: u32, attack: bool, hints: ChainHints, signals: &Signals) {
        self.user.push(user);
        self.attack.push(attack);
        self.hints.push(hints);
        self.start.push(self.code.len() as u32);
        for s in signals.iter().filter(|s| s.code != Code::AtoChain) {
            self.code.push(s.code);
            self.score.push(s.score as f32);
            self.weight.push(s.weight as f32);
        }
    }

    fn signals(&self, i: usize) -> std::ops::Range<usize> {
        let a = self.start[i] as usize;
        let b = self
            .start
            .get(i + 1)
            .map_or(self.code.len(), |x| *x as usize);
        a..b
    }
}

fn no_detail(_: &[f64; 4], f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str("")
}

/// Weight multipliers per code: the candidate's weight over the base's.
type Scale = [f64; Code::ALL.len()];

/// The weight multipliers that turn evidence gathered under `run_cfg` into `cand`'s.
fn scale_of(cand: &Config, run_cfg: &Config) -> Scale {
    let mut scale = [1.0; Code::ALL.len()];
    for code in Code::ALL {
        if let (Some(w), Some(w0)) = (cand.detectors.weight(code), run_cfg.detectors.weight(code)) {
            if w0 > 0.0 {
                scale[code as usize] = w / w0;
            }
        }
    }
    scale
}

/// The evidence of stored event `i` under `decider` with detector weights scaled by `scale`.
fn evidence(st: &Stored, i: usize, decider: &Decider, scale: &Scale) -> Evidence {
    let mut sig = Signals::default();
    for j in st.signals(i) {
        let c = st.code[j];
        let w = (f64::from(st.weight[j]) * scale[c as usize]).min(1.0);
        sig.push(
            c,
            f64::from(st.score[j]),
            w,
            Detail::new(no_detail, [0.0; 4]),
        );
    }
    let h = st.hints[i];
    decider.chain(&mut sig, h);
    decider.evidence(&sig, h)
}

/// What the parse-only passes gathered: the users, their fit-part habits and who has
/// confirmed fraud.
struct Collected {
    events: u64,
    fit_events: u64,
    /// ln(amount) of successful money out per (currency, type), in bins of 1/16 from −20.
    amounts: HashMap<CellKey, Vec<u32>>,
    ids: HashMap<Box<str>, u32>,
    users: Vec<UserStat>,
    hours: [f64; 24],
}

/// Calls `f` for every valid event of `events`, with a progress bar.
fn each_event(
    events: &Path,
    progress: bool,
    mut f: impl FnMut(u64, &crate::engine::event::Event<'_>) -> Result<(), EvalError>,
) -> Result<u64, EvalError> {
    let bar = crate::tools::replay::progress_bar(events, progress);
    let mut read = 0u64;
    let mut invalid = 0u64;
    crate::tools::eval::for_each_line(events, |line, raw| {
        read += raw.len() as u64 + 1;
        if line % 8192 == 0 {
            bar.set_position(read);
        }
        match crate::engine::event::parse_event(raw) {
            Ok(ev) => f(line, &ev),
            Err(_) => {
                invalid += 1;
                Ok(())
            }
        }
    })?;
    bar.finish_and_clear();
    Ok(invalid)
}

fn time_span(events: &Path, progress: bool) -> Result<(i64, i64, u64), EvalError> {
    let (mut lo, mut hi, mut n) = (i64::MAX, i64::MIN, 0u64);
    each_event(events, progress, |_, ev| {
        lo = lo.min(ev.ts_ms);
        hi = hi.max(ev.ts_ms);
        n += 1;
        Ok(())
    })?;
    Ok((lo, hi, n))
}

/// Parse-only pass: users, confirmed fraud (labels or verdicts anywhere in the file) and the
/// fit part's habits for the priors.
fn stats(
    base: &Config,
    i: &CalibrateInputs<'_>,
    split: i64,
    labels: Option<&crate::tools::eval::labels::Labels>,
) -> Result<Collected, EvalError> {
    let offset = crate::engine::time::parse_offset(&base.general.utc_offset).unwrap_or(0);
    let default_currency: [u8; 3] =
        <[u8; 3]>::try_from(base.general.default_currency.as_bytes()).unwrap_or(*b"CNY");
    let mut c = Collected {
        events: 0,
        fit_events: 0,
        amounts: HashMap::new(),
        ids: HashMap::new(),
        users: Vec::new(),
        hours: [0.0; 24],
    };
    each_event(i.events, i.progress, |line, ev| {
        c.events += 1;
        let next = c.ids.len() as u32;
        let u = *c.ids.entry((*ev.user_id).into()).or_insert(next);
        if u as usize == c.users.len() {
            c.users.push(UserStat::default());
        }
        let attack = match labels {
            Some(l) => crate::tools::eval::file_truth(ev, l, i.events, line)?.attack,
            None => false,
        };
        let us = &mut c.users[u as usize];
        if attack || ev.feedback == Some(crate::engine::event::Feedback::ConfirmedFraud) {
            us.confirmed = true;
        }
        if ev.ts_ms >= split || ev.kind.is_feedback() {
            return Ok(());
        }
        c.fit_events += 1;
        us.fit = true;
        c.hours[crate::engine::time::local_hour(ev.ts_ms, offset)] += 1.0;
        if ev.kind.is_money_out() {
            if us.outs == 0 {
                us.first = ev.ts_ms;
            }
            us.outs += 1;
            us.last = ev.ts_ms;
            if let Some(a) = ev
                .amount
                .filter(|a| *a > 0.0 && ev.is_successful_money_out())
            {
                let l = a.ln();
                let cur = ev.currency.unwrap_or(default_currency);
                c.amounts
                    .entry((cur, ev.kind))
                    .or_insert_with(|| vec![0; AMOUNT_BINS])[amount_bin(l)] += 1;
                us.amounts += 1;
                us.sum += l;
                us.sumsq += l * l;
            }
        }
        Ok(())
    })?;
    Ok(c)
}

/// Replays the history's fit part under `cfg` and keeps what every alerting decision was
/// made of.
fn replay_fit(
    cfg: &Config,
    i: &CalibrateInputs<'_>,
    (from, split): (i64, i64),
    c: &Collected,
    labels: Option<&crate::tools::eval::labels::Labels>,
) -> Result<Stored, EvalError> {
    let engine = Engine::new(cfg.clone());
    let mut router = Partitioned::new(&engine, i.partitions, i.lists.clone());
    let mut stored = Stored {
        active: vec![false; c.users.len()],
        user_attacks: vec![0; c.users.len()],
        user_events: vec![0; c.users.len()],
        ..Stored::default()
    };
    let mut published = Vec::new();
    each_event(i.events, i.progress, |line, ev| {
        if ev.ts_ms >= split {
            return Ok(());
        }
        let Some(out) = router.process(&engine, ev, 0, &mut published) else {
            return Ok(());
        };
        published.clear();
        // The warm-up only teaches the state.
        if ev.ts_ms < from || out.feedback.is_some() {
            return Ok(());
        }
        stored.events += 1;
        let Some(u) = c.ids.get(&*ev.user_id).copied() else {
            return Ok(());
        };
        stored.active[u as usize] = true;
        let attack = match labels {
            Some(l) => crate::tools::eval::file_truth(ev, l, i.events, line)?.attack,
            None => false,
        };
        stored.attacks += u64::from(attack);
        stored.user_attacks[u as usize] += u32::from(attack);
        stored.user_events[u as usize] += 1;
        if out.decision.signals.is_empty() {
            return Ok(());
        }
        stored.push(u, attack, out.hints, &out.decision.signals);
        Ok(())
    })?;
    Ok(stored)
}

/// A population cell: currency and money-out type.
type CellKey = ([u8; 3], crate::engine::event::EventType);

/// Bins of the fit part's ln(amount) histograms: 1/16 wide from −20 to +40.
const AMOUNT_BINS: usize = 960;

fn amount_bin(l: f64) -> usize {
    (((l + 20.0) * 16.0).floor().max(0.0) as usize).min(AMOUNT_BINS - 1)
}

/// The ln(amount) quantiles at [`SEED_SHARES`] of a histogram (bin middles, interpolated
/// linearly within a bin).
fn quantiles(h: &[u32]) -> Vec<f64> {
    let total: u64 = h.iter().map(|x| u64::from(*x)).sum();
    crate::engine::baseline::prior::SEED_SHARES
        .iter()
        .map(|q| {
            let want = q * total as f64;
            let mut acc = 0.0;
            for (i, n) in h.iter().enumerate() {
                let next = acc + f64::from(*n);
                if next >= want && *n > 0 {
                    let within = ((want - acc) / f64::from(*n)).clamp(0.0, 1.0);
                    return round_to(-20.0 + (i as f64 + within) / 16.0, 4);
                }
                acc = next;
            }
            round_to(-20.0 + AMOUNT_BINS as f64 / 16.0, 4)
        })
        .collect()
}

/// A population seed per (currency, money-out type) with at least `min` amounts in the fit
/// part, most observed first, at most `max`.
fn amount_seeds(
    c: &Collected,
    min: f64,
    max: usize,
) -> Vec<crate::engine::baseline::prior::AmountSeed> {
    let mut cells: Vec<(&CellKey, &Vec<u32>, u64)> = c
        .amounts
        .iter()
        .map(|(k, h)| (k, h, h.iter().map(|x| u64::from(*x)).sum::<u64>()))
        .filter(|(_, _, n)| *n as f64 >= min)
        .collect();
    cells.sort_by(|a, b| b.2.cmp(&a.2).then(a.0 .1.as_str().cmp(b.0 .1.as_str())));
    cells
        .into_iter()
        .take(max)
        .map(
            |((cur, kind), h, _)| crate::engine::baseline::prior::AmountSeed {
                currency: String::from_utf8_lossy(cur).into_owned(),
                kind: kind.as_str().to_owned(),
                ln_quantiles: quantiles(h),
            },
        )
        .collect()
}

fn round_to(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// The priors the fit part shows, each with the users it rests on (`None`: too few).
struct Priors {
    amount_log_sd: Option<(f64, usize)>,
    out_per_day: Option<(f64, usize)>,
    hour_weights: Option<Vec<f64>>,
}

/// Learns [`Priors`] from the fit part's users and hours.
fn learn_priors(c: &Collected) -> Priors {
    let sds: Vec<f64> = c
        .users
        .iter()
        .filter(|u| u.amounts >= 5)
        .map(|u| {
            let n = f64::from(u.amounts);
            let mean = u.sum / n;
            ((u.sumsq / n - mean * mean).max(0.0) * n / (n - 1.0)).sqrt()
        })
        .filter(|sd| sd.is_finite() && *sd > 0.0)
        .collect();
    let sd = (sds.len() >= 30)
        .then(|| crate::tools::eval::figures::median(&mut sds.clone()))
        .flatten()
        .map(|m| (round_to(m.clamp(0.05, 5.0), 3), sds.len()));
    // Money out per day over at least a week of a user's history, so a burst is not a habit.
    let week = 7 * 86_400_000i64;
    let rates: Vec<f64> = c
        .users
        .iter()
        .filter(|u| u.outs >= 2 && u.last - u.first >= week)
        .map(|u| f64::from(u.outs) / ((u.last - u.first) as f64 / 86_400_000.0))
        .collect();
    let rate = (rates.len() >= 30)
        .then(|| crate::tools::eval::figures::median(&mut rates.clone()))
        .flatten()
        .map(|m| (round_to(m.clamp(0.01, 1000.0), 3), rates.len()));
    let total: f64 = c.hours.iter().sum();
    // Relative weights with the mean at 1, never 0 (an hour no one used is rare, not
    // impossible).
    let hours = (total >= 24.0 * 100.0).then(|| {
        c.hours
            .iter()
            .map(|h| round_to((h / total * 24.0).max(0.01), 3))
            .collect()
    });
    Priors {
        amount_log_sd: sd,
        out_per_day: rate,
        hour_weights: hours,
    }
}

/// Which half of the users an event's user falls in: the weights are searched on the users
/// of one half and kept only if they also rank the other half's events better. The guard
/// half is looked at once per round (and by each round's in-sample check), so over three
/// rounds a false keep is somewhat likelier than the 5% of one bootstrap bound.
fn guard_half(user: u32) -> bool {
    (u64::from(user).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63) == 1
}

/// Multipliers tried on one weight per step of the coordinate search.
const STEPS: [f64; 8] = [0.25, 0.5, 0.7, 0.85, 1.2, 1.4, 2.0, 4.0];

/// Weighted average precision of `idx` (sampled events with their weights) ranked by
/// `score`: attack events count 1, others their sampling weight. Ties share the precision
/// at the end of the tie. Attack events without a signal are left out: they rank last
/// under every weighting, so they shift every candidate's figure alike.
fn weighted_ap(idx: &mut [usize], score: &[f64], sample: &[(usize, f64)], st: &Stored) -> f64 {
    idx.sort_unstable_by(|a, b| score[*b].total_cmp(&score[*a]));
    let (mut tp, mut fp, mut ap, mut pos_all) = (0.0, 0.0, 0.0, 0.0);
    let mut k = 0;
    while k < idx.len() {
        let mut j = k;
        let mut pos = 0.0;
        // `j == k` always steps: a NaN score never equals itself.
        while j < idx.len() && (j == k || score[idx[j]] == score[idx[k]]) {
            let (i, w) = sample[idx[j]];
            if st.attack[i] {
                pos += 1.0;
            } else {
                fp += w;
            }
            j += 1;
        }
        tp += pos;
        if pos > 0.0 {
            ap += pos * tp / (tp + fp);
        }
        pos_all += pos;
        k = j;
    }
    if pos_all > 0.0 {
        ap / pos_all
    } else {
        0.0
    }
}

/// Most a weight may move in one round of the fit, as a factor either way: the evidence
/// the search scores was gathered under the round's weights, and it describes other weights
/// the worse the further they are (what profiles learn depends on the decisions).
const TRUST: f64 = 1.5;

/// Rounds of search-then-replay in the weight fit.
const FIT_ROUNDS: usize = 3;

/// What one round of the weight fit found.
struct Fitted {
    /// The config with the searched weights (`base` when nothing moved).
    cfg: Config,
    /// Whether any weight moved.
    changed: bool,
    /// What was done, for the report.
    notes: Vec<String>,
}

/// (key, base, fitted) of every weight (and `decision.chain_bonus`) that differs.
fn weight_moves(base: &Config, cfg: &Config) -> Vec<(String, f64, f64)> {
    let mut moved = Vec::new();
    for c in Code::ALL {
        if let (Some(t), Some(a), Some(b)) =
            (c.table(), base.detectors.weight(c), cfg.detectors.weight(c))
        {
            if (a - b).abs() >= 0.0005 {
                moved.push((format!("detectors.{t}.weight"), a, b));
            }
        }
    }
    if (base.decision.chain_bonus - cfg.decision.chain_bonus).abs() >= 0.0005 {
        moved.push((
            "decision.chain_bonus".into(),
            base.decision.chain_bonus,
            cfg.decision.chain_bonus,
        ));
    }
    moved
}

/// Fits one weight per detector that fired (and `decision.chain_bonus`) to rank the fit
/// part's attack events first: a coordinate search on the weighted average precision of
/// half the users, minus `reg` × Σ ln(w / w_base)², each weight in [0.001, 1]. The result is
/// kept only if it also raises the average precision of the other half's users.
///
/// Why a ranking objective: the thresholds are set afterwards by the budgets, so what the
/// weights must do is order events; a likelihood fit mostly learned to mute the many weak
/// signals of honest events and ranked attacks worse. Why a coordinate search: a dozen
/// parameters, and the objective is a step function of them.
fn fit_weights(base: &Config, anchor: &Config, st: &Stored, reg: f64) -> Fitted {
    let mut fired = [false; Code::ALL.len()];
    for c in &st.code {
        fired[*c as usize] = true;
    }
    let params: Vec<Code> = Code::ALL
        .iter()
        .copied()
        // BLOCKLISTED may carry `network_weight` instead of `weight`, which the scaling of
        // stored weights cannot tell apart; a block list is policy, not a fit.
        .filter(|c| {
            fired[*c as usize]
                && *c != Code::Blocklisted
                && base.detectors.weight(*c).is_some_and(|w| w > 0.0)
        })
        .collect();
    let chain = base.decision.chain_bonus > 0.0;
    let theta0: Vec<f64> = params
        .iter()
        .map(|c| base.detectors.weight(*c).unwrap_or(0.0))
        .chain(chain.then_some(base.decision.chain_bonus))
        .collect();
    let pull: Vec<f64> = params
        .iter()
        .map(|c| anchor.detectors.weight(*c).unwrap_or(0.0).max(0.001))
        .chain(chain.then_some(anchor.decision.chain_bonus.max(0.001)))
        .collect();
    // The sample: every attack event, other events thinned to FIT_SAMPLE with weights.
    let pos_n = st.attack.iter().filter(|a| **a).count();
    let neg_n = st.len() - pos_n;
    let keep = (FIT_SAMPLE as f64 / neg_n.max(1) as f64).min(1.0);
    let sample: Vec<(usize, f64)> = (0..st.len())
        .filter_map(|i| {
            if st.attack[i] {
                return Some((i, 1.0));
            }
            // A fixed hash of the index: the same sample on every run.
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
            ((h as f64 / (1u64 << 53) as f64) < keep).then_some((i, 1.0 / keep))
        })
        .collect();
    let (mut fit_idx, mut guard_idx): (Vec<usize>, Vec<usize>) =
        (0..sample.len()).partition(|s| !guard_half(st.user[sample[*s].0]));
    let attacks_in = |idx: &[usize]| idx.iter().filter(|s| st.attack[sample[**s].0]).count();
    let (fit_pos, guard_pos) = (attacks_in(&fit_idx), attacks_in(&guard_idx));
    let why_not = if params.is_empty() {
        Some("left as they are: no weighted detector fired in the fit part".to_owned())
    } else if pos_n < MIN_ATTACK_EVENTS {
        Some(format!(
            "left as they are: {pos_n} attack events with a signal after the warm-up of the fit part (the fit needs {MIN_ATTACK_EVENTS})"
        ))
    } else if fit_pos.min(guard_pos) < MIN_ATTACK_EVENTS / 2 {
        Some(format!(
            "left as they are: the users split {fit_pos} / {guard_pos} attack events with a signal (the fit needs {} on each side)",
            MIN_ATTACK_EVENTS / 2
        ))
    } else {
        None
    };
    if let Some(note) = why_not {
        return Fitted {
            cfg: base.clone(),
            changed: false,
            notes: vec![note],
        };
    }
    let build = |theta: &[f64]| -> (Decider, Scale) {
        let mut d = base.decision.clone();
        let mut scale = [1.0; Code::ALL.len()];
        for (k, c) in params.iter().enumerate() {
            scale[*c as usize] = theta[k] / theta0[k];
        }
        if chain {
            d.chain_bonus = theta[params.len()];
        }
        (Decider::new(&d), scale)
    };
    // Per parameter, the sampled events it can change.
    let touches: Vec<Vec<usize>> = (0..theta0.len())
        .map(|k| {
            (0..sample.len())
                .filter(|s| {
                    let i = sample[*s].0;
                    if k == params.len() {
                        st.hints[i].money_out
                    } else {
                        st.signals(i).any(|j| st.code[j] == params[k])
                    }
                })
                .collect()
        })
        .collect();
    let score_all = |theta: &[f64]| -> Vec<f64> {
        let (d, scale) = build(theta);
        sample
            .iter()
            .map(|(i, _)| evidence(st, *i, &d, &scale).score)
            .collect()
    };
    let penalty = |theta: &[f64]| -> f64 {
        reg * theta
            .iter()
            .zip(&pull)
            .map(|(a, b)| (a / b).ln().powi(2))
            .sum::<f64>()
    };
    let mut theta = theta0.clone();
    let mut score = score_all(&theta);
    let start_score = score.clone();
    let ap_start = weighted_ap(&mut fit_idx, &score, &sample, st);
    let mut obj = ap_start - penalty(&theta);
    let mut sweeps = 0;
    for _ in 0..6 {
        sweeps += 1;
        let mut improved = false;
        for k in 0..theta.len() {
            let mut best: Option<(f64, f64, Vec<f64>)> = None;
            for m in STEPS {
                let v = (theta[k] * m)
                    .clamp(theta0[k] / TRUST, theta0[k] * TRUST)
                    .clamp(0.001, 1.0);
                if (v - theta[k]).abs() < 1e-9 {
                    continue;
                }
                let mut cand = theta.clone();
                cand[k] = v;
                let (d, scale) = build(&cand);
                let mut s = score.clone();
                for t in &touches[k] {
                    s[*t] = evidence(st, sample[*t].0, &d, &scale).score;
                }
                let o = weighted_ap(&mut fit_idx, &s, &sample, st) - penalty(&cand);
                if o > obj + 1e-6 && best.as_ref().is_none_or(|b| o > b.0) {
                    best = Some((o, v, s));
                }
            }
            if let Some((o, v, s)) = best {
                obj = o;
                theta[k] = v;
                score = s;
                improved = true;
            }
        }
        if !improved {
            break;
        }
    }
    let ap_fit = weighted_ap(&mut fit_idx, &score, &sample, st);
    let (g0, g1) = (
        weighted_ap(&mut guard_idx, &start_score, &sample, st),
        weighted_ap(&mut guard_idx, &score, &sample, st),
    );
    let mut notes = vec![format!(
        "searched on {fit_pos} attack and {} other alerting fit-part events of half the users (others sampled ×{keep:.3}), {sweeps} sweeps: average precision {ap_start:.4} → {ap_fit:.4}, L2 pull {reg} on ln(weight / base)",
        fit_idx.len() - fit_pos
    )];
    if g1 <= g0 {
        notes.push(format!(
            "dropped: they rank the other half's {guard_pos} attack events no better (average precision {g0:.4} → {g1:.4})"
        ));
        return Fitted {
            cfg: base.clone(),
            changed: false,
            notes,
        };
    }
    let mut cfg = base.clone();
    let mut changed = false;
    // Only weights the search moved are written (rounded): a base weight it left alone keeps
    // its exact value, so it never appears in the overlay.
    for (k, c) in params.iter().enumerate() {
        let w = round_to(theta[k], 3).max(0.001);
        if let Some(slot) = cfg.detectors.weight_mut(*c) {
            if (w - theta0[k]).abs() >= 0.0005 {
                *slot = w;
                changed = true;
            }
        }
    }
    if chain {
        let w = round_to(theta[params.len()], 3).max(0.001);
        if (w - theta0[params.len()]).abs() >= 0.0005 {
            cfg.decision.chain_bonus = w;
            changed = true;
        }
    }
    notes.push(format!(
        "on the evidence gathered under the round's weights they rank the other half's {guard_pos} attack events better (average precision {g0:.4} → {g1:.4})"
    ));
    Fitted {
        cfg,
        changed,
        notes,
    }
}

/// Bootstrap resamples of the guard half's users when judging fitted weights.
const RESAMPLES: usize = 200;

/// The guard half's alerting events ranked by their score under `cand`'s weights (evidence
/// gathered under `run_cfg`): (user, attack), best first, and where each tie ends.
fn guard_ranking(st: &Stored, cand: &Config, run_cfg: &Config) -> (Vec<(u32, bool)>, Vec<bool>) {
    let decider = Decider::new(&cand.decision);
    let scale = scale_of(cand, run_cfg);
    let mut scored: Vec<(f64, u32, bool)> = (0..st.len())
        .filter(|i| guard_half(st.user[*i]))
        .map(|i| {
            (
                evidence(st, i, &decider, &scale).score,
                st.user[i],
                st.attack[i],
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let tie_end = (0..scored.len())
        .map(|k| scored.get(k + 1).is_none_or(|n| n.0 != scored[k].0))
        .collect();
    (
        scored.into_iter().map(|(_, u, a)| (u, a)).collect(),
        tie_end,
    )
}

/// Average precision of a [`guard_ranking`] with every user's events counted `m[user]`
/// times; ties share the precision at the end of the tie, and attack events without a
/// signal are recalled last, at the base rate.
fn ranked_ap(st: &Stored, (ranked, tie_end): &(Vec<(u32, bool)>, Vec<bool>), m: &[f64]) -> f64 {
    let (mut attacks, mut events) = (0.0, 0.0);
    for (u, w) in m.iter().enumerate() {
        if *w > 0.0 && guard_half(u as u32) {
            attacks += w * f64::from(st.user_attacks[u]);
            events += w * f64::from(st.user_events[u]);
        }
    }
    if attacks == 0.0 {
        return 0.0;
    }
    let (mut tp, mut seen, mut pos, mut ap) = (0.0, 0.0, 0.0, 0.0);
    for (k, (u, attack)) in ranked.iter().enumerate() {
        let w = m[*u as usize];
        seen += w;
        if *attack {
            pos += w;
        }
        if tie_end[k] {
            tp += pos;
            if pos > 0.0 {
                ap += pos * tp / seen;
            }
            pos = 0.0;
        }
    }
    let rest = (attacks - tp).max(0.0);
    ap += rest * attacks / events.max(1.0);
    ap / attacks
}

/// How much `(st1, cfg1)` ranks the guard half's attack events better than `(st0, cfg0)`:
/// (average precision before, after, and the one-sided 95% lower bound of the gain over a
/// paired bootstrap of the guard half's users).
fn guard_gain(st0: &Stored, cfg0: &Config, st1: &Stored, cfg1: &Config) -> (f64, f64, f64) {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let (r0, r1) = (
        guard_ranking(st0, cfg0, cfg0),
        guard_ranking(st1, cfg1, cfg1),
    );
    let users = st0.user_events.len().min(st1.user_events.len());
    let ones = vec![1.0; users];
    let (a0, a1) = (ranked_ap(st0, &r0, &ones), ranked_ap(st1, &r1, &ones));
    // Poisson(1) weights per user: the bootstrap without materialising resamples; the same
    // seed every run, so calibrate is deterministic.
    let mut rng = rand_pcg::Pcg64::seed_from_u64(0x6361_6c69_6272_6174);
    let Ok(poisson) = rand_distr::Poisson::new(1.0) else {
        return (a0, a1, f64::NEG_INFINITY);
    };
    let mut gains: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let m: Vec<f64> = (0..users).map(|_| poisson.sample(&mut rng)).collect();
            ranked_ap(st1, &r1, &m) - ranked_ap(st0, &r0, &m)
        })
        .collect();
    gains.sort_by(f64::total_cmp);
    // The 5th percentile by nearest rank: the 10th smallest of 200.
    (a0, a1, gains[RESAMPLES / 20 - 1])
}

/// Least ROC-AUC of the fit part's attack events against its other events for calibrate to
/// move a threshold.
pub const SEPARABLE_AUC: f64 = 0.75;

/// ROC-AUC of the attack events of the window against its other events, each scored by
/// `score` (events without a signal score 0); `None` without attack events or others.
fn separability(score: &[f64], st: &Stored) -> Option<f64> {
    let scored: Vec<(f64, bool)> = score
        .iter()
        .copied()
        .zip(st.attack.iter().copied())
        .collect();
    let pos = scored.iter().filter(|(_, a)| *a).count() as u64;
    let neg = scored.len() as u64 - pos;
    let lowest = scored.iter().map(|(s, _)| *s).fold(f64::INFINITY, f64::min);
    let mut groups = crate::tools::eval::figures::score_groups(scored);
    // Events without a signal were not stored: they score 0, tied at the bottom.
    let zeros = (
        st.attacks.saturating_sub(pos),
        st.events.saturating_sub(st.attacks).saturating_sub(neg),
    );
    match groups.last_mut() {
        Some(g) if lowest <= 0.0 => *g = (g.0 + zeros.0, g.1 + zeros.1),
        _ if zeros != (0, 0) => groups.push(zeros),
        _ => {}
    }
    crate::tools::eval::figures::group_aucs(&groups).1
}

/// Thresholds for the budgets with `cand`'s weights, on evidence `st` gathered under
/// `run_cfg`; returns (review, step_up, freeze) and the fit-part figures for the comments.
/// `base` places step_up and gives the "before" figures.
fn thresholds(
    cand: &Config,
    run_cfg: &Config,
    st: &Stored,
    c: &Collected,
    base: &Config,
    b: &Budgets,
    notes: &mut Vec<String>,
) -> ((f64, f64, f64), [String; 3]) {
    let decider = Decider::new(&cand.decision);
    let scale = scale_of(cand, run_cfg);
    // Per event: the least freeze threshold that freezes it (∞ never, 0 always) and the least
    // review threshold that alerts it.
    let mut user_fz: HashMap<u32, f64> = HashMap::new();
    let mut ranked: Vec<f64> = Vec::with_capacity(st.len());
    let mut alert_at: Vec<f64> = Vec::with_capacity(st.len());
    for i in 0..st.len() {
        let e = evidence(st, i, &decider, &scale);
        ranked.push(if e.floor > Action::Allow {
            1.0
        } else {
            e.score
        });
        let fz = if e.owner_context {
            f64::INFINITY
        } else if e.floor == Action::Freeze {
            0.0
        } else {
            e.score
        };
        if fz.is_finite() && !c.users[st.user[i] as usize].confirmed {
            let m = user_fz.entry(st.user[i]).or_insert(0.0);
            *m = m.max(fz);
        }
        alert_at.push(if e.floor > Action::Allow {
            0.0
        } else {
            e.score
        });
    }
    let benign = c
        .users
        .iter()
        .zip(&st.active)
        .filter(|(u, a)| **a && !u.confirmed)
        .count() as f64;
    let mut fz: Vec<f64> = user_fz.into_values().collect();
    fz.sort_by(f64::total_cmp);
    alert_at.sort_by(f64::total_cmp);
    // How many values are ≥ t in a sorted vector.
    let at_least = |v: &[f64], t: f64| v.len() - v.partition_point(|x| *x < t);
    let ff = |t: f64| at_least(&fz, t) as f64 / benign.max(1.0);
    let al = |t: f64| at_least(&alert_at, t) as f64 / (st.events.max(1) as f64);
    // A threshold must keep the budget with 95% confidence, not just on the sample: with
    // 3,000 users a 0.1% budget allows no false freeze in the fit part at all; with millions,
    // the bound is the share itself.
    let ff_ub = |t: f64| wilson_upper(at_least(&fz, t) as f64, benign);
    let al_ub = |t: f64| wilson_upper(at_least(&alert_at, t) as f64, st.events as f64);
    let grid = |lo: f64, hi: f64| {
        let (a, z) = ((lo * 1000.0).round() as i64, (hi * 1000.0).round() as i64);
        (a..=z).map(|k| k as f64 / 1000.0)
    };
    let d0 = &base.decision;
    // Budgets bought without telling attacks from honest traffic would be bought with recall
    // (on a mobile-money history without labels, a fitted review threshold muted every
    // takeover). With labelled attacks in the fit part, they must stand out; with no confirmed
    // fraud at all (no labels, no confirmed_fraud verdict), nothing can show that they do.
    // Verdicts without labels mark users, not events, and are trusted as they are.
    let separable = separability(&ranked, st);
    let confirmed = c.users.iter().any(|u| u.confirmed);
    let weak = match separable {
        Some(auc) if auc < SEPARABLE_AUC => Some(format!(
            "the fit part's attack events do not stand out (ROC-AUC {auc:.3} against its other events; needs {SEPARABLE_AUC})"
        )),
        None if !confirmed => Some(
            "the history has no confirmed fraud (no labels, no confirmed_fraud verdict)".to_string(),
        ),
        _ => None,
    };
    if let Some(why) = weak {
        notes.push(format!(
            "thresholds kept at the base: {why}, so calibrate cannot tell attacks from honest traffic and a budget met here would be met by silencing detectors; the runtime alert budget ([decision.budget]) still follows the scores"
        ));
        let kept = format!("kept at the base: {why}");
        return (
            (d0.review, d0.step_up, d0.freeze),
            [kept.clone(), kept.clone(), kept],
        );
    }
    let lo_f = 0.5_f64.min(d0.freeze);
    // Too few users to certify the budget even with no false freeze at all: the threshold
    // then keeps the budget on the sample and is never lowered below the base.
    let certifiable = wilson_upper(0.0, benign) <= b.false_freeze;
    let freeze = if certifiable {
        grid(lo_f, 1.0)
            .find(|t| ff_ub(*t) <= b.false_freeze)
            .unwrap_or(1.0)
    } else {
        notes.push(format!(
            "{benign} users without confirmed fraud are too few to show a {:.3}% false-freeze share at 95% confidence (that takes {:.0}); decision.freeze is kept at or above the base",
            b.false_freeze * 100.0,
            (1.645f64 * 1.645 / b.false_freeze).ceil()
        ));
        grid(d0.freeze, 1.0)
            .find(|t| ff(*t) <= b.false_freeze)
            .unwrap_or(1.0)
    };
    let ff_ok = if certifiable {
        ff_ub(freeze)
    } else {
        ff(freeze)
    };
    if ff_ok > b.false_freeze {
        notes.push(format!(
            "false-freeze budget {:.3}% not reachable by thresholds: {:.3}% of users without confirmed fraud are frozen by rules that do not depend on them",
            b.false_freeze * 100.0,
            ff(freeze) * 100.0
        ));
    }
    // Reviewed events are not learned unless `decision.learn_reviewed`: below the base, a
    // lower review threshold would keep the owner's new phone or place new event after event,
    // and alerts would grow long after the fit part ended (seen on random worlds: 0.45% of
    // events on the fit part, 2.2% on the held-out part). Raising it is always safe.
    let lo_r = if cand.decision.learn_reviewed {
        0.05
    } else {
        d0.review.min(freeze)
    };
    let review = grid(lo_r, freeze)
        .find(|t| al_ub(*t) <= b.alert)
        .unwrap_or(freeze);
    if !cand.decision.learn_reviewed && lo_r > 0.05 && al_ub(lo_r) < b.alert {
        if let Some(lower) = grid(0.05, lo_r).find(|t| al_ub(*t) <= b.alert) {
            if lower < lo_r {
                notes.push(format!(
                    "the alert budget would allow review = {lower}, but reviewed events are not learned (decision.learn_reviewed = false), so review is not lowered below the base {}; set learn_reviewed = true in the base to let calibrate lower it",
                    d0.review
                ));
            }
        }
    }
    if al_ub(review) > b.alert {
        notes.push(format!(
            "alert budget {:.3}% not reachable: {:.3}% of fit-part events are alerted even at review = freeze",
            b.alert * 100.0,
            al(review) * 100.0
        ));
    }
    let rel = if d0.freeze > d0.review {
        (d0.step_up - d0.review) / (d0.freeze - d0.review)
    } else {
        0.5
    };
    let step_up = round_to(review + (freeze - review) * rel, 3).clamp(review, freeze);
    let why = [
        format!(
            "fit part after its warm-up: {:.3}% of {} events alerted at review = {review} (budget {:.3}%); {:.3}% at the base {} (same weights)",
            al(review) * 100.0,
            st.events,
            b.alert * 100.0,
            al(d0.review) * 100.0,
            d0.review
        ),
        format!(
            "kept at its base place between review and freeze ({:.0}% of the way)",
            rel * 100.0
        ),
        format!(
            "fit part after its warm-up: {} of {} users without confirmed fraud frozen at freeze = {freeze} ({:.3}%, 95% upper bound {:.3}%, budget {:.3}%); {} ({:.3}%) at the base {}",
            at_least(&fz, freeze),
            benign,
            ff(freeze) * 100.0,
            ff_ub(freeze) * 100.0,
            b.false_freeze * 100.0,
            at_least(&fz, d0.freeze),
            ff(d0.freeze) * 100.0,
            d0.freeze
        ),
    ];
    ((review, step_up, freeze), why)
}

/// The one-sided 95% Wilson upper bound of a share `k / n` (1 when `n` is 0).
fn wilson_upper(k: f64, n: f64) -> f64 {
    if n <= 0.0 {
        return 1.0;
    }
    let z = 1.645f64;
    let p = k / n;
    let z2n = z * z / n;
    ((p + z2n / 2.0 + z * (p * (1.0 - p) / n + z2n / (4.0 * n)).sqrt()) / (1.0 + z2n)).min(1.0)
}

fn value_text(t: &toml::Table, key: &str) -> String {
    let mut v: Option<&toml::Value> = None;
    for seg in key.split('.') {
        v = match v {
            None => t.get(seg),
            Some(toml::Value::Table(x)) => x.get(seg),
            _ => None,
        };
    }
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// `walletguard calibrate`.
pub fn run(
    base: &Config,
    i: CalibrateInputs<'_>,
    b: Budgets,
) -> Result<Calibration, CalibrateError> {
    if base.decision.combine != Combine::NoisyOr {
        return Err(CalibrateError::Unfit(
            "calibrate tunes the noisy-OR decision (decision.combine = \"noisy_or\")".into(),
        ));
    }
    if !(0.05..=0.95).contains(&b.fit_share) {
        return Err(CalibrateError::Unfit(
            "the fit share must be 0.05 to 0.95".into(),
        ));
    }
    let labels = i
        .labels
        .map(crate::tools::eval::labels::read_labels)
        .transpose()?;
    let (lo, hi, n) = time_span(i.events, i.progress)?;
    if n == 0 || hi <= lo {
        return Err(CalibrateError::Unfit(
            "the history has no valid events spanning any time".into(),
        ));
    }
    let split = lo + ((hi - lo) as f64 * b.fit_share) as i64;
    // A replay starts from empty profiles and an unlearned population: its first stretch is
    // quieter (no amount habits, no population tails) or noisier (everything is new) than
    // the service will ever be. Weights and thresholds are measured after it.
    let measure_from = lo + ((split - lo) as f64 * WARM_UP) as i64;
    let c = stats(base, &i, split, labels.as_ref())?;
    let mut notes = Vec::new();
    let mut changes = Vec::new();
    // The priors first: they change the signals everything after is fitted on.
    let Priors {
        amount_log_sd: sd,
        out_per_day: rate,
        hour_weights: hours,
    } = learn_priors(&c);
    let mut start = base.clone();
    if let Some((v, _)) = sd {
        start.prior.amount_log_sd = v;
    }
    if let Some((v, _)) = rate {
        start.prior.out_per_day = v;
    }
    if let Some(h) = &hours {
        start.prior.hour_weights = h.clone();
    }
    let seeds = amount_seeds(&c, base.prior.min_weight, base.prior.max_cells as usize);
    if !seeds.is_empty() {
        start.prior.amounts = seeds;
    }
    let mut st = replay_fit(&start, &i, (measure_from, split), &c, labels.as_ref())?;
    // Weights (labels only), then thresholds under them.
    let mut run_cfg = start.clone();
    let mut cand = start.clone();
    if labels.is_some() {
        // The search scores evidence gathered under the current weights, but weights change
        // what the profiles learn (a reviewed new device is not learned and stays new), so
        // each round's result is judged again on the fit part replayed under it, on the
        // users the search did not see, and the next round searches that evidence.
        for round in 1..=FIT_ROUNDS {
            let f = fit_weights(&cand, &start, &st, b.weight_reg);
            notes.extend(
                f.notes
                    .into_iter()
                    .map(|n| format!("weights round {round}: {n}")),
            );
            if !f.changed {
                break;
            }
            notes.push(format!(
                "weights round {round}: moved {}",
                weight_moves(&cand, &f.cfg)
                    .iter()
                    .map(|(k, a, b)| format!(
                        "{} {a}→{b}",
                        k.trim_start_matches("detectors.")
                            .trim_end_matches(".weight")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let st2 = replay_fit(&f.cfg, &i, (measure_from, split), &c, labels.as_ref())?;
            let (g0, g1, lower) = guard_gain(&st, &cand, &st2, &f.cfg);
            if lower <= 0.0 {
                notes.push(format!(
                    "weights round {round}: dropped: replayed under them, the fit part does not rank the other half's attack events surely better (average precision {g0:.4} → {g1:.4}; 95% lower bound of the gain over {RESAMPLES} resamples of its users {lower:+.4})"
                ));
                break;
            }
            notes.push(format!(
                "weights round {round}: kept: replayed under them, the fit part ranks the other half's attack events better (average precision {g0:.4} → {g1:.4}; 95% lower bound of the gain {lower:+.4})"
            ));
            cand = f.cfg;
            st = st2;
            run_cfg = cand.clone();
        }
    }
    let moved = weight_moves(&start, &cand);
    // Thresholds change what the profiles learn (reviewed events are not learned, frozen
    // users cool down), so the evidence they are chosen on is gathered again under the
    // candidate until the thresholds settle (a few rounds of the fit part).
    let mut why: [String; 3] = Default::default();
    let mut round_notes = Vec::new();
    let mut rounds = 0;
    for round in 0..4 {
        rounds = round + 1;
        round_notes.clear();
        let (t, w) = thresholds(&cand, &run_cfg, &st, &c, base, &b, &mut round_notes);
        let d = &cand.decision;
        let moved_by = (t.0 - d.review)
            .abs()
            .max((t.1 - d.step_up).abs())
            .max((t.2 - d.freeze).abs());
        cand.decision.review = t.0;
        cand.decision.step_up = t.1;
        cand.decision.freeze = t.2;
        why = w;
        if round > 0 && moved_by < 0.002 {
            break;
        }
        if round < 3 {
            run_cfg = cand.clone();
            st = replay_fit(&cand, &i, (measure_from, split), &c, labels.as_ref())?;
        }
    }
    notes.extend(round_notes);
    notes.push(format!(
        "thresholds chosen in {rounds} rounds, each on evidence gathered by replaying the fit part under the previous choice"
    ));
    cand.validate()?;
    let (tb, tc) = (
        toml::Table::try_from(base).unwrap_or_default(),
        toml::Table::try_from(&cand).unwrap_or_default(),
    );
    for key in crate::service::reload::changed_keys(base, &cand) {
        let why = match key.as_str() {
            "decision.review" => why[0].clone(),
            "decision.step_up" => why[1].clone(),
            "decision.freeze" => why[2].clone(),
            "prior.amount_log_sd" => format!(
                "median spread of ln(amount) within a user, over {} fit-part users with 5 or more money-outs",
                sd.map_or(0, |x| x.1)
            ),
            "prior.out_per_day" => format!(
                "median money-out attempts per day over {} fit-part users with a week or more of money out",
                rate.map_or(0, |x| x.1)
            ),
            "prior.amounts" => format!(
                "the fit part's amounts per (currency, money-out type) with at least {} money-outs: {}",
                base.prior.min_weight,
                cand.prior
                    .amounts
                    .iter()
                    .map(|a| format!("{} {} median {:.2}", a.currency, a.kind, a.ln_quantiles[4].exp()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "prior.hour_weights" => format!(
                "share of {} fit-part events per local hour ({}), mean 1",
                c.fit_events, base.general.utc_offset
            ),
            k => moved
                .iter()
                .find(|m| m.0 == k)
                .map(|m| format!("fitted weight (labels, fit part): {} → {}", m.1, m.2))
                .unwrap_or_default(),
        };
        changes.push(KeyChange {
            from: value_text(&tb, &key),
            to: value_text(&tc, &key),
            key,
            why,
        });
    }
    // The out-of-time check: both configs over the whole history, figures of the held-out
    // part only.
    let held_out = crate::tools::compare::run(
        &Engine::new(base.clone()),
        &Engine::new(cand.clone()),
        CompareInputs {
            events: i.events,
            labels: i.labels,
            names: (i.base_name.clone(), "calibrated".into()),
            partitions: i.partitions,
            lists: i.lists.clone(),
            from_ts: Some(split),
            progress: i.progress,
        },
    )?;
    Ok(Calibration {
        events: c.events,
        split_ts: split,
        fit_events: c.fit_events,
        fit_users: (
            c.users.iter().filter(|u| u.fit).count() as u64,
            c.users.iter().filter(|u| u.fit && !u.confirmed).count() as u64,
        ),
        fitted_weights: labels.is_some(),
        notes,
        changes,
        held_out,
        candidate: cand,
    })
}

/// A share as a percentage with three digits.
fn pct(v: Option<f64>) -> String {
    crate::tools::eval::report::pct(v, 3)
}

impl Calibration {
    /// The held-out figures, before (base) and after (calibrated), one line each.
    pub fn held_out_lines(&self) -> Vec<String> {
        let b = &self.held_out.budget;
        let mut v = vec![
            format!(
                "held-out events alerted: {} → {}",
                pct(b.alert_share[0]),
                pct(b.alert_share[1])
            ),
            format!(
                "held-out events of users without confirmed fraud alerted: {} → {}",
                pct(b.unconfirmed_alert_share[0]),
                pct(b.unconfirmed_alert_share[1])
            ),
            format!(
                "held-out users without confirmed fraud frozen: {} of {} ({}) → {} ({})",
                b.frozen_unconfirmed[0],
                b.unconfirmed_users,
                pct(b.false_freeze_share[0]),
                b.frozen_unconfirmed[1],
                pct(b.false_freeze_share[1])
            ),
            format!(
                "held-out users with confirmed fraud frozen: {} → {} of {}",
                b.frozen_confirmed[0], b.frozen_confirmed[1], b.confirmed_users
            ),
        ];
        if let Some(e) = &self.held_out.eval {
            for f in [
                "overall.pr_auc",
                "scenarios.all.recall",
                "scenarios.all.freeze_recall",
                "scenarios.all.money_saved_share",
            ] {
                if let Some(d) = e.figures.iter().find(|d| d.figure == f) {
                    v.push(format!(
                        "held-out {f}: {} → {}",
                        d.live.map_or("-".into(), |x| format!("{x:.4}")),
                        d.candidate.map_or("-".into(), |x| format!("{x:.4}"))
                    ));
                }
            }
        }
        v
    }

    /// The overlay: a commented TOML holding only the changed keys.
    pub fn overlay(&self, command: &str) -> String {
        let mut s = String::from("# walletguard calibrate overlay: lay it over the base config\n");
        let _ = writeln!(s, "#   {command}");
        let _ = writeln!(
            s,
            "# Fit part: {} events before {} ({} users, {} without confirmed fraud); held out: the rest.",
            self.fit_events,
            crate::engine::time::format_rfc3339(self.split_ts),
            self.fit_users.0,
            self.fit_users.1
        );
        s.push_str("# Out-of-time check, base → calibrated (held-out part only):\n");
        for l in self.held_out_lines() {
            let _ = writeln!(s, "#   {l}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "# Note: {n}");
        }
        if self.changes.is_empty() {
            s.push_str("# Nothing to change.\n");
        }
        // Group keys by table, in the order they come.
        let mut tables: Vec<(String, Vec<&KeyChange>)> = Vec::new();
        for c in &self.changes {
            let (t, _) = c.key.rsplit_once('.').unwrap_or(("", &c.key));
            match tables.iter_mut().find(|(n, _)| n == t) {
                Some((_, v)) => v.push(c),
                None => tables.push((t.to_owned(), vec![c])),
            }
        }
        for (t, cs) in tables {
            let _ = writeln!(s, "\n[{t}]");
            for c in cs {
                let k = c.key.rsplit_once('.').map_or(c.key.as_str(), |x| x.1);
                let _ = writeln!(s, "# {} (was {})", c.why, c.from);
                let _ = writeln!(s, "{k} = {}", c.to);
            }
        }
        s
    }

    /// The report (Markdown): the changes and the held-out comparison.
    pub fn markdown(&self) -> String {
        let mut s = String::from("# walletguard calibrate\n\n");
        for l in self.held_out_lines() {
            let _ = writeln!(s, "- {l}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "- note: {n}");
        }
        s.push_str("\n## Changes\n\n| key | from | to | why |\n|---|---|---|---|\n");
        for c in &self.changes {
            let _ = writeln!(s, "| `{}` | {} | {} | {} |", c.key, c.from, c.to, c.why);
        }
        s.push_str("\n## Held-out comparison\n\n");
        s.push_str(&self.held_out.markdown());
        s
    }
}

/// Writes the overlay to `out`, and `<out>.report.json` / `.report.md` beside it, then loads
/// the overlay over `base_files` and checks it gives the candidate config.
pub fn write(
    cal: &Calibration,
    out: &Path,
    base_files: &[std::path::PathBuf],
    command: &str,
) -> Result<(), CalibrateError> {
    let werr = |p: &Path| {
        let path = p.display().to_string();
        move |source| CalibrateError::Write { path, source }
    };
    std::fs::write(out, cal.overlay(command)).map_err(werr(out))?;
    let side = |ext: &str| {
        let mut p = out.as_os_str().to_owned();
        p.push(ext);
        std::path::PathBuf::from(p)
    };
    let j = side(".report.json");
    let mut json = serde_json::to_vec_pretty(cal).map_err(|e| CalibrateError::Write {
        path: j.display().to_string(),
        source: e.into(),
    })?;
    json.push(b'\n');
    std::fs::write(&j, json).map_err(werr(&j))?;
    let m = side(".report.md");
    std::fs::write(&m, cal.markdown()).map_err(werr(&m))?;
    let mut files = base_files.to_vec();
    files.push(out.to_path_buf());
    let loaded = Config::load_layers(&files)?;
    if loaded != cal.candidate {
        let diff = crate::service::reload::changed_keys(&loaded, &cal.candidate);
        return Err(CalibrateError::Unfit(format!(
            "the written overlay does not reproduce the calibrated config (keys {diff:?})"
        )));
    }
    Ok(())
}

/// `walletguard calibrate`: checks the budgets, calibrates `base` (named `base_name` in the
/// overlay's comments) on the history, writes the overlay and its reports, and prints the
/// changes and the held-out figures.
pub fn command(a: &CalibrateArgs, base: &Config, base_name: String) -> Result<(), CalibrateError> {
    for (name, v) in [
        ("--false-freeze", a.false_freeze),
        ("--alert-budget", a.alert_budget),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(CalibrateError::Unfit(format!(
                "{name} must be a share from 0 to 1"
            )));
        }
    }
    let lists = match &a.lists {
        Some(p) => {
            std::sync::Arc::new(crate::tools::replay::load_lists(p).map_err(EvalError::from)?)
        }
        None => Default::default(),
    };
    let cal = run(
        base,
        CalibrateInputs {
            events: &a.events,
            labels: a.labels.as_deref(),
            base_name,
            partitions: a.partitions,
            lists,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
        Budgets {
            false_freeze: a.false_freeze,
            alert: a.alert_budget,
            fit_share: a.fit_share,
            weight_reg: a.weight_reg,
        },
    )?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    write(&cal, &a.out, &a.config, &command)?;
    for c in &cal.changes {
        println!("{} = {} (was {})", c.key, c.to, c.from);
    }
    for l in cal.held_out_lines() {
        println!("{l}");
    }
    for n in &cal.notes {
        println!("note: {n}");
    }
    println!(
        "wrote {} (and .report.json, .report.md beside it)",
        a.out.display()
    );
    Ok(())
}

/// Arguments of `walletguard calibrate`.
#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// History (JSON lines, plain or .gz), in stream order.
    #[arg(long)]
    pub events: std::path::PathBuf,
    /// Labels CSV (event_id,user_id,label,scenario): also fits the weights and adds the
    /// eval tables to the out-of-time check.
    #[arg(long)]
    pub labels: Option<std::path::PathBuf>,
    /// Most users without confirmed fraud frozen, as a share of such users.
    #[arg(long, default_value_t = 0.001)]
    pub false_freeze: f64,
    /// Most events alerted (any action but allow), as a share of events.
    #[arg(long, default_value_t = 0.005)]
    pub alert_budget: f64,
    /// Share of the history's time span to fit on; the rest is the out-of-time check.
    #[arg(long, default_value_t = 0.7)]
    pub fit_share: f64,
    /// Pull of fitted weights toward the base weights: average precision given up per
    /// unit of ln(weight / base weight)², summed over the weights.
    #[arg(long, default_value_t = 0.002)]
    pub weight_reg: f64,
    /// The base config: files laid over the defaults in order (repeatable).
    #[arg(long)]
    pub config: Vec<std::path::PathBuf>,
    /// Allow and block lists to score against (as `replay --lists`).
    #[arg(long)]
    pub lists: Option<std::path::PathBuf>,
    /// Emulate an input topic of this many partitions (as `replay --partitions`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub partitions: u32,
    /// The overlay to write.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_upper_bound_is_above_the_share_and_tightens_with_n() {
        // No event in 3,000: the "rule of three" region, about 0.09%.
        let u = wilson_upper(0.0, 3000.0);
        assert!(u > 0.0008 && u < 0.001, "{u}");
        assert!(wilson_upper(10.0, 1000.0) > 0.01);
        assert!(wilson_upper(1000.0, 100_000.0) - 0.01 < 0.0006);
        assert_eq!(wilson_upper(1.0, 0.0), 1.0);
    }

    /// Signals of one stored event.
    fn signals(list: &[(Code, f64, f64)]) -> Signals {
        let mut sig = Signals::default();
        for (c, score, w) in list {
            sig.push(*c, *score, *w, Detail::new(no_detail, [0.0; 4]));
        }
        sig
    }

    #[test]
    fn the_weight_search_raises_the_signal_that_separates_attacks_within_its_trust_region() {
        let base = Config::default();
        let (wd, wh) = (
            base.detectors.weight(Code::NewDevice).unwrap_or(0.0),
            base.detectors.weight(Code::UnusualHour).unwrap_or(0.0),
        );
        let mut st = Stored::default();
        // Attacks carry a full new-device signal; honest events an unusual hour, and half of
        // them also a weak new device, which outranks the attacks under the base weights.
        for u in 0..400u32 {
            st.push(
                u,
                true,
                ChainHints::default(),
                &signals(&[(Code::NewDevice, 1.0, wd)]),
            );
        }
        for u in 400..4400u32 {
            let mut list = vec![(Code::UnusualHour, 1.0, wh)];
            if u % 2 == 0 {
                list.push((Code::NewDevice, 0.6, wd));
            }
            st.push(u, false, ChainHints::default(), &signals(&list));
        }
        let f = fit_weights(&base, &base, &st, 0.002);
        assert!(f.changed, "{:?}", f.notes);
        let (d, h) = (
            f.cfg.detectors.weight(Code::NewDevice).unwrap_or(0.0),
            f.cfg.detectors.weight(Code::UnusualHour).unwrap_or(0.0),
        );
        assert!(d > wd && d <= wd * TRUST + 1e-9, "new_device {wd} → {d}");
        // Raising new_device already ranks every attack first; the pull keeps the rest.
        assert!((h - wh).abs() < 1e-9, "unusual_hour {wh} → {h}");
        // Nothing to separate: every event looks alike, so nothing moves.
        let mut flat = Stored::default();
        for u in 0..4000u32 {
            flat.push(
                u,
                u % 10 == 0,
                ChainHints::default(),
                &signals(&[(Code::NewDevice, 1.0, wd)]),
            );
        }
        let f = fit_weights(&base, &base, &flat, 0.002);
        assert!(!f.changed, "{:?}", f.notes);
    }

    /// A window of 4,000 users, one event each, every tenth an attack whose new-device
    /// signal scores `attack_score`, the others `0.5`.
    fn window(attack_score: f64) -> Stored {
        let mut st = Stored {
            user_attacks: vec![0; 4000],
            user_events: vec![0; 4000],
            ..Stored::default()
        };
        for u in 0..4000u32 {
            let attack = u % 10 == 0;
            let score = if attack { attack_score } else { 0.5 };
            st.push(
                u,
                attack,
                ChainHints::default(),
                &signals(&[(Code::NewDevice, score, 0.45)]),
            );
            st.user_attacks[u as usize] += u32::from(attack);
            st.user_events[u as usize] += 1;
        }
        st
    }

    #[test]
    fn the_guard_keeps_only_a_gain_its_bootstrap_is_sure_of() {
        let cfg = Config::default();
        let (flat, sharp) = (window(0.5), window(1.0));
        // The same ranking: no gain, and a lower bound of exactly zero.
        let (a0, a1, lower) = guard_gain(&flat, &cfg, &flat, &cfg);
        assert_eq!((a0, lower), (a1, 0.0));
        assert!(
            (a0 - 0.1).abs() < 0.02,
            "all tied: precision at the base rate, {a0}"
        );
        // Attacks ranked first on every resample.
        let (a0, a1, lower) = guard_gain(&flat, &cfg, &sharp, &cfg);
        assert!(
            (a1 - 1.0).abs() < 1e-12 && lower > 0.8,
            "{a0} → {a1}, lower {lower}"
        );
        // And the other way round it is surely worse.
        let (_, _, lower) = guard_gain(&sharp, &cfg, &flat, &cfg);
        assert!(lower < 0.0);
    }

    #[test]
    fn weighted_average_precision_counts_sampled_negatives_by_their_weight() {
        let mut st = Stored::default();
        let none = signals(&[]);
        st.push(0, true, ChainHints::default(), &none);
        st.push(1, false, ChainHints::default(), &none);
        st.push(2, true, ChainHints::default(), &none);
        // Ranked: attack, other (standing for 3), attack → (1/1 + 2/5) / 2.
        let sample = [(0, 1.0), (1, 3.0), (2, 1.0)];
        let score = [0.9, 0.5, 0.1];
        let mut idx = vec![0, 1, 2];
        let ap = weighted_ap(&mut idx, &score, &sample, &st);
        assert!((ap - 0.7).abs() < 1e-12, "{ap}");
    }

    #[test]
    fn rounding() {
        assert_eq!(round_to(0.12345, 3), 0.123);
    }
}
