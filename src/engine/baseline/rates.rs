//! How often each reason code fires in this deployment: per class of event and per code, a
//! decayed histogram of the detector's score over every event the partition scored. Part of the
//! learned [`super::Population`], so it is kept in the changelog, restored, and emulated per
//! partition by replay like the rest of it.
//!
//! Why: what a signal is worth depends on the data. On a card stream most payments go to a
//! merchant the card never paid and to a place it never was, so `NEW_COUNTERPARTY` and
//! `NEW_LOCATION` fire on about 90% of honest events and say almost nothing; on a wallet stream
//! they are rare and say a lot. [`SignalRates::tail`] is the share of this class's events whose
//! signal reached at least a given score, the input to the decision's learned weighing
//! ([`crate::engine::decision::LearnedConfig`]).
//!
//! Decay is by observations, like the rest of the population: each new observation of a class
//! weighs `growth` times the previous one, and weights are rescaled by exact powers of two,
//! so replay and a restored partition give the same figures bit for bit.

use crate::engine::detect::{Code, Signals};
use crate::engine::event::EventType;

/// Weights are rescaled by this exact power of two when the growing weight passes it.
pub(super) const RESCALE_AT: f64 = 18_446_744_073_709_551_616.0; // 2^64
const RESCALE_BY: f64 = 1.0 / RESCALE_AT;

/// Grows a weight and rescales what it weighs when it gets large; exact (powers of two).
pub(super) fn grow(g: &mut f64, growth: f64, mut rescale: impl FnMut(f64)) {
    *g *= growth;
    if *g >= RESCALE_AT {
        *g *= RESCALE_BY;
        rescale(RESCALE_BY);
    }
}

/// Classes of events whose signal rates are learned apart: a merchant payment, other money
/// out (transfer, withdrawal, recharge), access and credential events, everything else.
pub const CLASSES: usize = 4;
/// Score bins: a score falls in the first bin whose upper edge it does not exceed.
pub const BINS: usize = 8;
const EDGES: [f64; BINS] = [0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0];
const CODES: usize = Code::ALL.len();

/// The class of an event type (see [`CLASSES`]).
pub fn class_of(kind: EventType) -> usize {
    use EventType::*;
    match kind {
        Payment => 0,
        Transfer | Withdrawal | MobileRecharge => 1,
        Login | LoginFailed | PasswordReset | MfaChange | DeviceBind | PaymentMethodBind
        | PaymentMethodUnbind => 2,
        _ => 3,
    }
}

fn bin_of(score: f64) -> usize {
    EDGES.iter().position(|e| score <= *e).unwrap_or(BINS - 1)
}

/// Per class: the weight of the next observation, the weight of all so far, and per code the
/// weights of the events whose signal fell in each score bin.
///
/// Beside them, the decayed distribution of the combined scores, for the alert budget
/// ([`SignalRates::review_threshold`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRates {
    g: [f64; CLASSES],
    total: [f64; CLASSES],
    bins: Vec<[f32; BINS]>,
    scores: Scores,
}

/// Score bins of the alert budget: 0.005 wide over [0, 1].
const SCORE_BINS: usize = 200;
/// The budget's threshold is recomputed after this many scores (and only then), so it costs
/// nothing per event and a restored partition holds exactly the threshold the running one had.
const RECOMPUTE_EVERY: u64 = 256;

/// The decayed distribution of combined scores, and the score at or above which a given share
/// of them lies (recomputed every [`RECOMPUTE_EVERY`] scores).
#[derive(Debug, Clone, PartialEq)]
struct Scores {
    g: f64,
    total: f64,
    count: u64,
    bins: [f32; SCORE_BINS],
    /// The score above which `share` of the scores lie, as of the last recomputation (1.0:
    /// none computed yet).
    upper: f64,
    /// The share `upper` was computed for.
    share: f64,
}

impl Default for SignalRates {
    fn default() -> Self {
        SignalRates {
            g: [1.0; CLASSES],
            total: [0.0; CLASSES],
            bins: vec![[0.0; BINS]; CLASSES * CODES],
            scores: Scores {
                g: 1.0,
                total: 0.0,
                count: 0,
                bins: [0.0; SCORE_BINS],
                upper: 1.0,
                share: 0.0,
            },
        }
    }
}

impl Scores {
    fn observe(&mut self, growth: f64, score: f64, share: f64) {
        let b = ((score.clamp(0.0, 1.0) * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1);
        self.bins[b] += self.g as f32;
        self.total += self.g;
        let (bins, total) = (&mut self.bins, &mut self.total);
        grow(&mut self.g, growth, |f| {
            bins.iter_mut().for_each(|v| *v = (*v as f64 * f) as f32);
            *total *= f;
        });
        self.count += 1;
        if self.count % RECOMPUTE_EVERY == 0 || share != self.share {
            self.share = share;
            self.upper = self.upper_edge(share);
        }
    }

    /// The lower edge of the lowest bin from which at most `share` of the weight lies at or
    /// above it.
    fn upper_edge(&self, share: f64) -> f64 {
        if self.total <= 0.0 {
            return 1.0;
        }
        let allowed = share * self.total;
        let mut above = 0.0;
        for b in (0..SCORE_BINS).rev() {
            let next = above + self.bins[b] as f64;
            if next > allowed {
                return (b + 1) as f64 / SCORE_BINS as f64;
            }
            above = next;
        }
        0.0
    }
}

impl SignalRates {
    /// Learns one scored event of `kind`: every counted signal's score, and the event itself
    /// (a code that did not fire counts as a score of 0).
    pub fn observe(&mut self, growth: f64, kind: EventType, signals: &Signals) {
        let k = class_of(kind);
        let g = self.g[k];
        for s in signals.iter() {
            if let Some(row) = self.bins.get_mut(k * CODES + s.code as usize) {
                row[bin_of(s.score)] += g as f32;
            }
        }
        self.total[k] += g;
        let (rows, total) = (
            &mut self.bins[k * CODES..(k + 1) * CODES],
            &mut self.total[k],
        );
        grow(&mut self.g[k], growth, |f| {
            for row in rows.iter_mut() {
                row.iter_mut().for_each(|b| *b = (*b as f64 * f) as f32);
            }
            *total *= f;
        });
    }

    /// Learns one combined score (before any budget), keeping the threshold above which
    /// `share` of the scores lie.
    pub fn observe_score(&mut self, growth: f64, score: f64, share: f64) {
        self.scores.observe(growth, score, share);
    }

    /// The review threshold the alert budget asks for: the score above which at most `share`
    /// of this partition's recent scores lie, once `min_events` effective scores were learned
    /// (`None` before). The caller clamps it between its limits.
    pub fn review_threshold(&self, min_events: f64) -> Option<f64> {
        let s = &self.scores;
        (s.total / s.g >= min_events && s.total > 0.0).then_some(s.upper)
    }

    /// Effective observations of `kind`'s class (the weights relative to the next one).
    pub fn observations(&self, kind: EventType) -> f64 {
        let k = class_of(kind);
        self.total[k] / self.g[k]
    }

    /// The share of `kind`'s class whose `code` signal reached the bin of `score` or above
    /// (the whole bin counts: a conservative tail), with the effective observations behind
    /// it. `None` before any observation.
    pub fn tail(&self, kind: EventType, code: Code, score: f64) -> Option<(f64, f64)> {
        let k = class_of(kind);
        if self.total[k] <= 0.0 {
            return None;
        }
        let row = self.bins.get(k * CODES + code as usize)?;
        let above: f64 = row[bin_of(score)..].iter().map(|v| *v as f64).sum();
        Some((
            (above / self.total[k]).clamp(0.0, 1.0),
            self.total[k] / self.g[k],
        ))
    }

    /// Bytes of [`SignalRates::encode`].
    pub const ENCODED_LEN: usize =
        CLASSES * 16 + CLASSES * CODES * BINS * 4 + 8 * 5 + SCORE_BINS * 4;

    /// Appends every weight exactly as held.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for k in 0..CLASSES {
            out.extend_from_slice(&self.g[k].to_le_bytes());
            out.extend_from_slice(&self.total[k].to_le_bytes());
        }
        for row in &self.bins {
            for b in row {
                out.extend_from_slice(&b.to_le_bytes());
            }
        }
        let sc = &self.scores;
        for v in [sc.g, sc.total, sc.upper, sc.share] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&sc.count.to_le_bytes());
        for b in &sc.bins {
            out.extend_from_slice(&b.to_le_bytes());
        }
    }

    /// Decodes [`SignalRates::encode`]'s bytes; `None` when the length or a weight is wrong.
    pub fn decode(bytes: &[u8]) -> Option<SignalRates> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        let f64_at = |i: usize| -> Option<f64> {
            Some(f64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?))
        };
        let mut r = SignalRates::default();
        for k in 0..CLASSES {
            r.g[k] = f64_at(k * 16)?;
            r.total[k] = f64_at(k * 16 + 8)?;
        }
        let mut at = CLASSES * 16;
        let f32_next = |at: &mut usize| -> Option<f32> {
            let v = f32::from_le_bytes(bytes.get(*at..*at + 4)?.try_into().ok()?);
            *at += 4;
            Some(v)
        };
        for row in &mut r.bins {
            for b in row.iter_mut() {
                *b = f32_next(&mut at)?;
            }
        }
        let sc = &mut r.scores;
        sc.g = f64_at(at)?;
        sc.total = f64_at(at + 8)?;
        sc.upper = f64_at(at + 16)?;
        sc.share = f64_at(at + 24)?;
        sc.count = u64::from_le_bytes(bytes.get(at + 32..at + 40)?.try_into().ok()?);
        at += 40;
        for b in sc.bins.iter_mut() {
            *b = f32_next(&mut at)?;
        }
        let ok = r.g.iter().all(|g| g.is_finite() && *g > 0.0)
            && r.total.iter().all(|t| t.is_finite() && *t >= 0.0)
            && r.bins.iter().flatten().all(|b| b.is_finite() && *b >= 0.0)
            && sc.g.is_finite()
            && sc.g > 0.0
            && sc.total.is_finite()
            && sc.total >= 0.0
            && (0.0..=1.0).contains(&sc.upper)
            && sc.share.is_finite()
            && sc.bins.iter().all(|b| b.is_finite() && *b >= 0.0);
        ok.then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::detect::Detail;

    fn signals(codes: &[(Code, f64)]) -> Signals {
        let mut s = Signals::default();
        for (c, v) in codes {
            s.push(*c, *v, 0.5, Detail::new(|_, f| f.write_str("x"), [0.0; 4]));
        }
        s
    }

    #[test]
    fn a_signal_on_most_events_has_a_fat_tail_and_a_rare_one_a_thin_tail() {
        let mut r = SignalRates::default();
        for i in 0..1000 {
            let mut codes = vec![(Code::NewCounterparty, 0.5)];
            if i % 100 == 0 {
                codes.push((Code::AmountOutlier, 0.9));
            }
            r.observe(1.0, EventType::Payment, &signals(&codes));
        }
        let (common, n) = r
            .tail(EventType::Payment, Code::NewCounterparty, 0.5)
            .unwrap();
        let (rare, _) = r
            .tail(EventType::Payment, Code::AmountOutlier, 0.9)
            .unwrap();
        assert!(
            (common - 1.0).abs() < 1e-9 && (rare - 0.01).abs() < 1e-9,
            "{common} {rare}"
        );
        assert!((n - 1000.0).abs() < 1e-6);
        // Another class learned nothing.
        assert!(r
            .tail(EventType::Transfer, Code::AmountOutlier, 0.9)
            .is_none());
        // A score above every observed one has no mass above it.
        let (none, _) = r
            .tail(EventType::Payment, Code::NewCounterparty, 0.95)
            .unwrap();
        assert_eq!(none, 0.0);
    }

    #[test]
    fn the_review_threshold_follows_the_scores_as_they_shift() {
        let mut r = SignalRates::default();
        let growth = 2f64.powf(1.0 / 20_000.0);
        assert_eq!(r.review_threshold(1000.0), None, "nothing learned yet");
        // Scores spread evenly over [0, 0.5): 1% lie above 0.495.
        for i in 0..50_000u64 {
            r.observe_score(growth, (i % 1000) as f64 / 2000.0, 0.01);
        }
        let t = r.review_threshold(1000.0).unwrap();
        assert!((t - 0.495).abs() < 0.006, "{t}");
        // The stream shifts: scores now spread over [0.3, 0.8). The threshold follows, so the
        // share of scores at or above it stays near 1%.
        for i in 0..100_000u64 {
            r.observe_score(growth, 0.3 + (i % 1000) as f64 / 2000.0, 0.01);
        }
        let t = r.review_threshold(1000.0).unwrap();
        assert!((t - 0.795).abs() < 0.011, "{t}");
        let mut bytes = Vec::new();
        r.encode(&mut bytes);
        assert_eq!(SignalRates::decode(&bytes), Some(r));
    }

    #[test]
    fn decay_forgets_old_rates_and_encoding_round_trips() {
        let mut r = SignalRates::default();
        let growth = 2f64.powf(1.0 / 100.0);
        for _ in 0..2000 {
            r.observe(
                growth,
                EventType::Login,
                &signals(&[(Code::NewDevice, 1.0)]),
            );
        }
        for _ in 0..2000 {
            r.observe(growth, EventType::Login, &signals(&[]));
        }
        let (t, n) = r.tail(EventType::Login, Code::NewDevice, 1.0).unwrap();
        assert!(t < 1e-3, "old firings forgotten: {t}");
        assert!(
            n > 100.0 && n < 200.0,
            "about two half-lives of memory: {n}"
        );
        let mut bytes = Vec::new();
        r.encode(&mut bytes);
        assert_eq!(bytes.len(), SignalRates::ENCODED_LEN);
        assert_eq!(SignalRates::decode(&bytes), Some(r));
        assert_eq!(SignalRates::decode(&bytes[1..]), None);
    }
}
