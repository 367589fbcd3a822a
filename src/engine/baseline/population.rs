//! The learned population: what the users of one partition look like, learned online from the
//! stream. It answers for users without a habit of their own: how rare an amount is among
//! everyone's money out of the same type in the same currency, and how activity spreads over
//! the hours of the day.
//!
//! # Where it lives, and why per partition
//! A population is part of a partition's [`crate::engine::pipeline::State`], beside the profiles, and
//! learns from that partition's events in order. The Kafka adapter writes it to the changelog
//! with the profiles (one record per partition, stamped like them) and restores it with them, so
//! a restarted instance decides exactly as before. `replay --partitions N` keeps one population
//! per partition, routing each user by Kafka's default key hashing (murmur2), so replay decides
//! exactly like a consumer of a topic of N partitions. Why not one global population: it would
//! need a second, cross-partition stream whose order no replay could reproduce; a partition
//! holds thousands of users, so its population is the global one up to sampling noise.
//!
//! # How it decays
//! By observations, not by time: each new observation of a cell weighs `2^(1/half_life)` times
//! the previous one (weights grow instead of old counts shrinking, and are rescaled by exact
//! powers of two, so decay costs nothing per event and is bit-for-bit reproducible). Why not
//! event time: one event stamped far in the future would wipe every population it reached.
//!
//! # What it holds
//! - per (currency, money-out type), a histogram of ln(amount) in bins of 0.25 (a ratio of about
//!   1.28): quantiles and tail shares in any currency, with no amount constant anywhere;
//! - the share of activity per local hour, blended with `prior.hour_weights` (the starting point)
//!   until `prior.min_weight` observations have been made;
//! - how often consecutive positions of one user are farther apart than anyone can travel in
//!   the time between them: near zero where positions are the user's own, high where they are
//!   a merchant's or a geolocated IP's. `IMPOSSIBLE_TRAVEL` weighs its evidence by it.

use super::rates::{grow, SignalRates};
use crate::engine::detect::Signals;
use crate::engine::event::{Event, EventType};

/// Bins of ln(amount): width 0.25 from `LOG_MIN`, clamped at both ends (1e-4 to 1.6e13 in any
/// unit covers every currency scale from satoshi-like units to a million-unit currency).
const BINS: usize = 160;
const LOG_MIN: f64 = -10.0;
const BIN_WIDTH: f64 = 0.25;
/// Format marker and version of [`Population::encode`].
const MAGIC: &[u8; 4] = b"WGP2";
/// The marker of the format before signal rates: still read (its rates start empty).
const MAGIC_V1: &[u8; 4] = b"WGP1";

/// Learning parameters, from `[prior]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PopulationParams {
    /// Learn at all (off: the population stays at the config's starting point).
    pub learn: bool,
    /// Weight growth per observation: `2^(1/half_life_observations)`.
    pub growth: f64,
    /// Effective observations before a learned amount distribution is used, and the weight of
    /// the config's hour shares in the blend.
    pub min_weight: f64,
    /// Most (currency, type) cells kept; observations of others are not learned.
    pub max_cells: usize,
}

/// One (currency, money-out type) cell: a histogram of ln(amount) with growing weights.
#[derive(Debug, Clone, PartialEq)]
struct Cell {
    currency: [u8; 3],
    kind: u8,
    /// Weight of the next observation.
    g: f64,
    /// Sum of the weights so far.
    total: f64,
    bins: [f32; BINS],
}

impl Cell {
    fn new(currency: [u8; 3], kind: u8) -> Cell {
        Cell {
            currency,
            kind,
            g: 1.0,
            total: 0.0,
            bins: [0.0; BINS],
        }
    }

    /// Whether the cell holds `min_weight` effective observations (the weights relative to the
    /// next one; the tolerance absorbs the rounding of growth factors a hair above 1).
    fn ready(&self, min_weight: f64) -> bool {
        self.total > 0.0 && self.total >= min_weight * self.g * (1.0 - 1e-9)
    }
}

/// The share of activity per local hour, learned with growing weights.
#[derive(Debug, Clone, PartialEq)]
struct Hours {
    g: f64,
    total: f64,
    bins: [f64; 24],
}

/// Consecutive positions of a user, and how many of them were impossible to travel between.
#[derive(Debug, Clone, PartialEq)]
struct Travel {
    g: f64,
    pairs: f64,
    impossible: f64,
}

/// The population of one partition (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    cells: Vec<Cell>,
    hours: Hours,
    travel: Travel,
    /// How often each reason code fires here (see [`super::rates`]).
    rates: SignalRates,
    /// Bumped by every change, so the Kafka adapter writes the population only when it changed.
    /// Not part of the encoding.
    version: u64,
}

impl Default for Population {
    fn default() -> Self {
        Population {
            cells: Vec::new(),
            hours: Hours {
                g: 1.0,
                total: 0.0,
                bins: [0.0; 24],
            },
            travel: Travel {
                g: 1.0,
                pairs: 0.0,
                impossible: 0.0,
            },
            rates: SignalRates::default(),
            version: 0,
        }
    }
}

/// Why an encoded population did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PopulationError {
    /// Not this format or version.
    #[error("not an encoded population (bad marker)")]
    Marker,
    /// The bytes end early or run on.
    #[error("encoded population has the wrong length")]
    Length,
    /// A weight is negative or not finite.
    #[error("encoded population holds a weight that is negative or not finite")]
    Weight,
}

fn bin_of(x: f64) -> usize {
    (((x - LOG_MIN) / BIN_WIDTH).floor().max(0.0) as usize).min(BINS - 1)
}

impl Population {
    /// A change counter (not encoded): differs after every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn cell(&self, currency: [u8; 3], kind: EventType) -> Option<&Cell> {
        let k = kind as u8;
        self.cells
            .iter()
            .find(|c| c.kind == k && c.currency == currency)
    }

    /// Learns one event: its local hour, and the ln(amount) of a successful money out in
    /// `currency` (the event's, or the default one).
    pub fn observe(
        &mut self,
        p: &PopulationParams,
        ev: &Event<'_>,
        currency: [u8; 3],
        hour: usize,
        log_amount: Option<f64>,
    ) {
        if !p.learn {
            return;
        }
        self.version += 1;
        let h = &mut self.hours;
        if let Some(b) = h.bins.get_mut(hour) {
            *b += h.g;
            h.total += h.g;
            let (bins, total) = (&mut h.bins, &mut h.total);
            grow(&mut h.g, p.growth, |f| {
                bins.iter_mut().for_each(|b| *b *= f);
                *total *= f;
            });
        }
        let Some(x) = log_amount.filter(|x| x.is_finite()) else {
            return;
        };
        if !ev.is_successful_money_out() {
            return;
        }
        let k = ev.kind as u8;
        let i = match self
            .cells
            .iter()
            .position(|c| c.kind == k && c.currency == currency)
        {
            Some(i) => i,
            None if self.cells.len() < p.max_cells => {
                self.cells.push(Cell::new(currency, k));
                self.cells.len() - 1
            }
            None => return,
        };
        let c = &mut self.cells[i];
        c.bins[bin_of(x)] += c.g as f32;
        c.total += c.g;
        let (bins, total) = (&mut c.bins, &mut c.total);
        grow(&mut c.g, p.growth, |f| {
            bins.iter_mut().for_each(|b| *b = (*b as f64 * f) as f32);
            *total *= f;
        });
    }

    /// Starts the (currency, `kind`) cell from a distribution given by ln(amount) quantiles
    /// `q` at `shares` (both non-decreasing), weighing `weight` observations: the mass between
    /// two quantiles spreads evenly over the ln-amounts between them, the tails sit at the
    /// extreme quantiles. Replaces any cell of that key; ignored past `max_cells`.
    pub fn seed(
        &mut self,
        p: &PopulationParams,
        currency: [u8; 3],
        kind: EventType,
        shares: &[f64],
        q: &[f64],
        weight: f64,
    ) {
        let k = kind as u8;
        self.cells
            .retain(|c| !(c.kind == k && c.currency == currency));
        if self.cells.len() >= p.max_cells || q.len() != shares.len() || q.is_empty() {
            return;
        }
        let mut c = Cell::new(currency, k);
        let put = |c: &mut Cell, x: f64, m: f64| c.bins[bin_of(x)] += (m * weight) as f32;
        put(&mut c, q[0], shares[0]);
        put(&mut c, q[q.len() - 1], 1.0 - shares[shares.len() - 1]);
        for i in 0..q.len() - 1 {
            let (a, b, m) = (q[i], q[i + 1], shares[i + 1] - shares[i]);
            if b - a < 1e-9 {
                put(&mut c, a, m);
                continue;
            }
            // Spread over the bins the segment crosses, by overlap.
            let (ba, bb) = (bin_of(a), bin_of(b));
            for bin in ba..=bb {
                let lo = (LOG_MIN + bin as f64 * BIN_WIDTH).max(a);
                let hi = (LOG_MIN + (bin + 1) as f64 * BIN_WIDTH).min(b);
                if hi > lo {
                    c.bins[bin] += (m * (hi - lo) / (b - a) * weight) as f32;
                }
            }
        }
        c.total = c.bins.iter().map(|b| *b as f64).sum();
        self.cells.push(c);
        self.version += 1;
    }

    /// Learns which signals one scored event of `kind` carried (every scored event counts,
    /// whatever its decision: leaving alerted events out would make a signal that alerts look
    /// rarer the more it alerts).
    pub fn observe_signals(&mut self, p: &PopulationParams, kind: EventType, signals: &Signals) {
        if !p.learn {
            return;
        }
        self.version += 1;
        self.rates.observe(p.growth, kind, signals);
    }

    /// Learns one event's combined score (before the alert budget), keeping the threshold
    /// above which `share` of the scores lie (see [`SignalRates::review_threshold`]).
    pub fn observe_score(&mut self, p: &PopulationParams, score: f64, share: f64) {
        if !p.learn {
            return;
        }
        self.version += 1;
        self.rates.observe_score(p.growth, score, share);
    }

    /// How often each reason code fires in this partition.
    pub fn rates(&self) -> &SignalRates {
        &self.rates
    }

    /// Learns one pair of consecutive positions of a user: whether travelling between them in
    /// the time between them was impossible. Every such pair counts, whatever the decision
    /// (flagged events are exactly the impossible ones; leaving them out would hide the noise).
    pub fn observe_travel(&mut self, p: &PopulationParams, impossible: bool) {
        if !p.learn {
            return;
        }
        self.version += 1;
        let t = &mut self.travel;
        t.pairs += t.g;
        if impossible {
            t.impossible += t.g;
        }
        let (pairs, imp) = (&mut t.pairs, &mut t.impossible);
        grow(&mut t.g, p.growth, |f| {
            *pairs *= f;
            *imp *= f;
        });
    }

    /// The share of the partition's position pairs that were impossible, once `min_weight`
    /// effective pairs were seen.
    pub fn impossible_share(&self, p: &PopulationParams) -> Option<f64> {
        let t = &self.travel;
        (t.pairs > 0.0 && t.pairs >= p.min_weight * t.g * (1.0 - 1e-9))
            .then(|| (t.impossible / t.pairs).clamp(0.0, 1.0))
    }

    /// The share of money out of type `kind` in `currency` at or above e^`x` (interpolated
    /// within its bin), once the cell holds `min_weight` effective observations.
    pub fn amount_tail(
        &self,
        p: &PopulationParams,
        currency: [u8; 3],
        kind: EventType,
        x: f64,
    ) -> Option<f64> {
        let c = self.cell(currency, kind)?;
        if !c.ready(p.min_weight) {
            return None;
        }
        let b = bin_of(x);
        let above: f64 = c.bins[b + 1..].iter().map(|v| *v as f64).sum();
        let lo = LOG_MIN + b as f64 * BIN_WIDTH;
        let frac_above = (1.0 - (x - lo) / BIN_WIDTH).clamp(0.0, 1.0);
        Some(((above + c.bins[b] as f64 * frac_above) / c.total).clamp(0.0, 1.0))
    }

    /// The amount below which a share `q` of money out of type `kind` in `currency` falls (the
    /// lower edge of the bin where the cumulative share reaches `q`), once the cell holds
    /// `min_weight` effective observations.
    pub fn amount_quantile(
        &self,
        p: &PopulationParams,
        currency: [u8; 3],
        kind: EventType,
        q: f64,
    ) -> Option<f64> {
        let c = self.cell(currency, kind)?;
        if !c.ready(p.min_weight) {
            return None;
        }
        let want = q.clamp(0.0, 1.0) * c.total;
        let mut acc = 0.0;
        for (i, v) in c.bins.iter().enumerate() {
            let next = acc + *v as f64;
            if next >= want && *v > 0.0 {
                let within = ((want - acc) / *v as f64).clamp(0.0, 1.0);
                return Some((LOG_MIN + (i as f64 + within) * BIN_WIDTH).exp());
            }
            acc = next;
        }
        None
    }

    /// Share of activity at local hour `h`: the learned shares blended with `start` (the
    /// config's shares, summing to 1), which weigh `min_weight` observations.
    pub fn hour_share(&self, p: &PopulationParams, start: &[f64; 24], h: usize) -> f64 {
        let hs = &self.hours;
        let (Some(own), Some(s)) = (hs.bins.get(h), start.get(h)) else {
            return 0.0;
        };
        let n = hs.total / hs.g;
        (own / hs.g + p.min_weight * s) / (n + p.min_weight)
    }

    /// Appends the encoding: every weight exactly as held, so a restored population decides
    /// exactly like the one that was written.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.cells.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.hours.g.to_le_bytes());
        out.extend_from_slice(&self.hours.total.to_le_bytes());
        for b in &self.hours.bins {
            out.extend_from_slice(&b.to_le_bytes());
        }
        for v in [self.travel.g, self.travel.pairs, self.travel.impossible] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for c in &self.cells {
            out.extend_from_slice(&c.currency);
            out.push(c.kind);
            out.extend_from_slice(&c.g.to_le_bytes());
            out.extend_from_slice(&c.total.to_le_bytes());
            for b in &c.bins {
                out.extend_from_slice(&b.to_le_bytes());
            }
        }
        out.extend_from_slice(&(SignalRates::ENCODED_LEN as u32).to_le_bytes());
        self.rates.encode(out);
    }

    /// Decodes [`Population::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Population, PopulationError> {
        let mut r = Reader::new(bytes, PopulationError::Length);
        let magic = r.take::<4>()?;
        let v1 = magic == *MAGIC_V1;
        if magic != *MAGIC && !v1 {
            return Err(PopulationError::Marker);
        }
        let n = u32::from_le_bytes(r.take()?) as usize;
        let cell_len = 4 + 16 + 4 * BINS;
        let body = 16 + 24 * 8 + 24 + n * cell_len;
        // The signal rates follow the cells, behind their length: a release with another set
        // of reason codes writes another length, and its rates are then started afresh
        // rather than read against the wrong codes.
        let mut rates = SignalRates::default();
        if v1 {
            if r.rest().len() != body {
                return Err(PopulationError::Length);
            }
        } else {
            let tail = r.rest().get(body..).ok_or(PopulationError::Length)?;
            let (len, rest) = tail
                .split_first_chunk::<4>()
                .ok_or(PopulationError::Length)?;
            if rest.len() != u32::from_le_bytes(*len) as usize {
                return Err(PopulationError::Length);
            }
            if let Some(got) = SignalRates::decode(rest) {
                rates = got;
            }
            r.limit(body);
        }
        let mut pop = Population::default();
        pop.hours.g = r.f64()?;
        pop.hours.total = r.f64()?;
        for b in pop.hours.bins.iter_mut() {
            *b = r.f64()?;
        }
        pop.travel.g = r.f64()?;
        pop.travel.pairs = r.f64()?;
        pop.travel.impossible = r.f64()?;
        let mut weights: Vec<f64> = vec![pop.hours.g, pop.hours.total];
        weights.extend(pop.hours.bins);
        weights.extend([pop.travel.g, pop.travel.pairs, pop.travel.impossible]);
        for _ in 0..n {
            let currency = r.take::<3>()?;
            let [kind] = r.take::<1>()?;
            let mut c = Cell::new(currency, kind);
            c.g = r.f64()?;
            c.total = r.f64()?;
            for b in c.bins.iter_mut() {
                *b = r.f32()?;
            }
            weights.extend([c.g, c.total]);
            weights.extend(c.bins.iter().map(|v| *v as f64));
            pop.cells.push(c);
        }
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0)
            || pop.hours.g <= 0.0
            || pop.travel.g <= 0.0
        {
            return Err(PopulationError::Weight);
        }
        if pop.cells.iter().any(|c| c.g <= 0.0) {
            return Err(PopulationError::Weight);
        }
        pop.rates = rates;
        Ok(pop)
    }
}

type Reader<'a> = crate::engine::bytes::Reader<'a, PopulationError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::parse_event;

    fn params(half_life: f64) -> PopulationParams {
        PopulationParams {
            learn: true,
            growth: 2f64.powf(1.0 / half_life),
            min_weight: 10.0,
            max_cells: 4,
        }
    }

    fn transfer(amount: f64) -> String {
        format!(
            r#"{{"event_id":"e","user_id":"u","ts":1790000000000,"type":"transfer","amount":{amount},"counterparty":"p"}}"#
        )
    }

    fn feed(pop: &mut Population, p: &PopulationParams, amounts: &[f64]) {
        for a in amounts {
            let s = transfer(*a);
            let e = parse_event(s.as_bytes()).unwrap();
            pop.observe(p, &e, *b"CNY", 10, Some(a.ln()));
        }
    }

    /// Direct computation: weights 2^(i/half_life) for the i-th observation.
    fn direct_tail(amounts: &[f64], half_life: f64, x: f64) -> f64 {
        let (mut above, mut total) = (0.0, 0.0);
        for (i, a) in amounts.iter().enumerate() {
            let w = 2f64.powf(i as f64 / half_life);
            total += w;
            if a.ln() >= x {
                above += w;
            }
        }
        above / total
    }

    #[test]
    fn tails_and_quantiles_match_a_direct_weighted_computation() {
        let half = 50.0;
        let p = params(half);
        let mut pop = Population::default();
        // Amounts on bin edges' interiors: 1..=400 spread over several bins, the late ones larger.
        let amounts: Vec<f64> = (1..=400)
            .map(|i| 10.0 * (1.0 + (i % 37) as f64) * if i > 300 { 4.0 } else { 1.0 })
            .collect();
        feed(&mut pop, &p, &amounts);
        // At a bin's lower edge the interpolation is exact: compare there.
        for edge in [0.25f64 * 12.0, 0.25 * 20.0, 0.25 * 24.0, 0.25 * 28.0] {
            let x = edge;
            let got = pop
                .amount_tail(&p, *b"CNY", EventType::Transfer, x)
                .unwrap();
            let want = direct_tail(&amounts, half, x);
            assert!((got - want).abs() < 1e-5, "tail at {x}: {got} vs {want}");
        }
        // The decayed median sits among the recent (larger) amounts more than the plain one.
        let med = pop
            .amount_quantile(&p, *b"CNY", EventType::Transfer, 0.5)
            .unwrap();
        assert!(med > 150.0, "{med}");
        assert!(pop
            .amount_tail(&p, *b"USD", EventType::Transfer, 3.0)
            .is_none());
        assert!(pop
            .amount_tail(&p, *b"CNY", EventType::Payment, 3.0)
            .is_none());
    }

    #[test]
    fn scale_free_a_thousandfold_currency_gives_the_same_tails() {
        let p = params(1e6);
        let (mut a, mut b) = (Population::default(), Population::default());
        let amounts: Vec<f64> = (1..=500).map(|i| 3.0 + (i * 7 % 97) as f64).collect();
        let scaled: Vec<f64> = amounts.iter().map(|v| v * 1024.0).collect();
        feed(&mut a, &p, &amounts);
        feed(&mut b, &p, &scaled);
        // 1024 = 2^10 and ln(1024) = 6.93 is not a whole number of bins, so compare loosely.
        for x in [20.0f64, 50.0, 90.0] {
            let ta = a
                .amount_tail(&p, *b"CNY", EventType::Transfer, x.ln())
                .unwrap();
            let tb = b
                .amount_tail(&p, *b"CNY", EventType::Transfer, (x * 1024.0).ln())
                .unwrap();
            assert!((ta - tb).abs() < 0.05, "{x}: {ta} vs {tb}");
        }
    }

    #[test]
    fn too_few_observations_give_no_answer_and_cells_are_bounded() {
        let p = params(1e12);
        let mut pop = Population::default();
        feed(&mut pop, &p, &[5.0; 9]);
        assert!(pop
            .amount_tail(&p, *b"CNY", EventType::Transfer, 1.0)
            .is_none());
        feed(&mut pop, &p, &[5.0]);
        assert!(pop
            .amount_tail(&p, *b"CNY", EventType::Transfer, 1.0)
            .is_some());
        for cur in [*b"AAA", *b"BBB", *b"CCC", *b"DDD", *b"EEE"] {
            let s = transfer(5.0);
            let e = parse_event(s.as_bytes()).unwrap();
            pop.observe(&p, &e, cur, 3, Some(5f64.ln()));
        }
        assert_eq!(pop.cells.len(), p.max_cells);
    }

    #[test]
    fn the_impossible_share_matches_a_direct_weighted_count() {
        let half = 40.0;
        let p = PopulationParams {
            min_weight: 5.0,
            ..params(half)
        };
        let mut pop = Population::default();
        let verdicts: Vec<bool> = (0..200)
            .map(|i| i % 7 == 0 || (i > 150 && i % 2 == 0))
            .collect();
        for (i, v) in verdicts.iter().enumerate() {
            pop.observe_travel(&p, *v);
            if i < 3 {
                assert!(pop.impossible_share(&p).is_none(), "too few pairs");
            }
        }
        let (mut imp, mut all) = (0.0, 0.0);
        for (i, v) in verdicts.iter().enumerate() {
            let w = 2f64.powf(i as f64 / half);
            all += w;
            if *v {
                imp += w;
            }
        }
        let got = pop.impossible_share(&p).unwrap();
        assert!((got - imp / all).abs() < 1e-9, "{got} vs {}", imp / all);
        let mut buf = Vec::new();
        pop.encode(&mut buf);
        assert_eq!(
            Population::decode(&buf).unwrap().impossible_share(&p),
            Some(got)
        );
    }

    #[test]
    fn hours_move_from_the_start_to_the_learned_shares() {
        let p = params(1e9);
        let start = [1.0 / 24.0; 24];
        let mut pop = Population::default();
        assert!((pop.hour_share(&p, &start, 3) - 1.0 / 24.0).abs() < 1e-12);
        let s = transfer(5.0);
        let e = parse_event(s.as_bytes()).unwrap();
        for _ in 0..1000 {
            pop.observe(&p, &e, *b"CNY", 3, None);
        }
        let share = pop.hour_share(&p, &start, 3);
        let want = (1000.0 + 10.0 / 24.0) / 1010.0;
        assert!((share - want).abs() < 1e-6, "{share} vs {want}");
        let sum: f64 = (0..24).map(|h| pop.hour_share(&p, &start, h)).sum();
        assert!((sum - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rescaling_keeps_shares_and_encoding_round_trips_exactly() {
        // A tiny half-life forces many rescales (and leaves a third of an effective observation).
        let p = PopulationParams {
            min_weight: 0.1,
            ..params(0.5)
        };
        let mut pop = Population::default();
        let amounts: Vec<f64> = (0..300).map(|i| 1.0 + (i % 13) as f64).collect();
        feed(&mut pop, &p, &amounts);
        assert!(pop.cells[0].g < super::super::rates::RESCALE_AT && pop.cells[0].total.is_finite());
        let t = pop
            .amount_tail(&p, *b"CNY", EventType::Transfer, 0.0)
            .unwrap();
        assert!((t - 1.0).abs() < 1e-5);
        let mut buf = Vec::new();
        pop.encode(&mut buf);
        let back = Population::decode(&buf).unwrap();
        assert_eq!(back.cells, pop.cells);
        assert_eq!(back.hours, pop.hours);
        assert_eq!(back.travel, pop.travel);
        assert_eq!(
            Population::decode(&buf[..buf.len() - 1]),
            Err(PopulationError::Length)
        );
        assert_eq!(Population::decode(b"nope"), Err(PopulationError::Marker));
        let mut bad = buf.clone();
        bad[8..16].copy_from_slice(&f64::NAN.to_le_bytes());
        assert_eq!(Population::decode(&bad), Err(PopulationError::Weight));
    }

    #[test]
    fn signal_rates_travel_with_the_population_and_older_records_still_decode() {
        let p = params(1000.0);
        let mut pop = Population::default();
        feed(&mut pop, &p, &[10.0, 20.0, 30.0]);
        let mut sig = Signals::default();
        sig.push(
            crate::engine::detect::Code::NewLocation,
            0.7,
            0.35,
            crate::engine::detect::Detail::new(|_, f| f.write_str("x"), [0.0; 4]),
        );
        let v = pop.version();
        pop.observe_signals(&p, EventType::Payment, &sig);
        assert!(pop.version() > v, "a learned rate is a change to write");
        let mut buf = Vec::new();
        pop.encode(&mut buf);
        let back = Population::decode(&buf).unwrap();
        assert_eq!(back.rates(), pop.rates());
        let tail = back.rates().tail(
            EventType::Payment,
            crate::engine::detect::Code::NewLocation,
            0.5,
        );
        let (share, n) = tail.unwrap();
        assert_eq!(share, 1.0);
        assert!((n - 1.0).abs() < 1e-2, "{n}");
        // A record of the format before rates (its body, marker WGP1) decodes with none.
        let body_len = buf.len() - 4 - super::SignalRates::ENCODED_LEN;
        let mut v1 = buf[..body_len].to_vec();
        v1[..4].copy_from_slice(MAGIC_V1);
        let old = Population::decode(&v1).unwrap();
        assert_eq!(old.cells, pop.cells);
        assert_eq!(old.rates(), &SignalRates::default());
        // Rates of another set of codes (another length) are started afresh, not misread.
        let mut other = buf[..body_len].to_vec();
        other.extend_from_slice(&8u32.to_le_bytes());
        other.extend_from_slice(&[0u8; 8]);
        assert_eq!(
            Population::decode(&other).unwrap().rates(),
            &SignalRates::default()
        );
    }

    #[test]
    fn a_seeded_cell_answers_from_the_first_event_and_seeding_again_replaces_it() {
        let p = params(1000.0);
        let shares = crate::engine::baseline::prior::SEED_SHARES;
        // ln(amount) quantiles of a distribution with median e^4 ≈ 54.6.
        let q = [1.0, 2.0, 2.5, 3.3, 4.0, 4.7, 5.5, 6.0, 7.0];
        let mut pop = Population::default();
        assert!(pop
            .amount_quantile(&p, *b"CNY", EventType::Transfer, 0.5)
            .is_none());
        pop.seed(&p, *b"CNY", EventType::Transfer, &shares, &q, p.min_weight);
        let median = pop
            .amount_quantile(&p, *b"CNY", EventType::Transfer, 0.5)
            .expect("usable at once");
        assert!((median.ln() - 4.0).abs() < 0.26, "{median}");
        let tail = pop
            .amount_tail(&p, *b"CNY", EventType::Transfer, 6.0)
            .unwrap();
        assert!((tail - 0.05).abs() < 0.02, "{tail}");
        // Another currency or type stays unseeded.
        assert!(pop
            .amount_tail(&p, *b"USD", EventType::Transfer, 6.0)
            .is_none());
        // Seeding again replaces the cell rather than adding one.
        pop.seed(&p, *b"CNY", EventType::Transfer, &shares, &q, p.min_weight);
        assert_eq!(pop.cells.len(), 1);
    }
}
