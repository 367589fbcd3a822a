//! The population baseline: what a typical user looks like, for users with little history.
//!
//! Two halves: [`Prior`], from `[prior]` (the scale-free spread of a user's amounts, the
//! starting hour shares, the typical rate of money out), and the learned
//! [`super::population::Population`] of each partition, which the config values only start:
//! see that module for what it learns and why it is kept per partition.

use super::population::{Population, PopulationParams};
use serde::{Deserialize, Serialize};

use crate::engine::validate::{invalid, positive, Checked};

/// `[prior]`: the population baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorConfig {
    /// Spread of ln(amount) within a user's money out, before the user's own is known. A
    /// spread of logs is the same in every currency. (There is no population amount: where an
    /// amount is "typical" comes only from the user's own money out; see [`Prior::shrink_amount`].)
    pub amount_log_sd: f64,
    /// Relative activity per local hour 0..23 across users (normalised on load).
    pub hour_weights: Vec<f64>,
    /// Money-out events per day of a typical user.
    pub out_per_day: f64,
    /// Learn the population online (per partition, in the changelog): amounts per currency
    /// and money-out type, and hour shares. Off: `hour_weights` stay the hour prior and users
    /// without an amount habit get no amount evidence.
    pub learn: bool,
    /// Half-life of the learned population, in observations of one (currency, type) cell (and
    /// of the hour shares): each observation weighs 2^(1/half_life) times the one before.
    pub half_life_observations: f64,
    /// Effective observations a learned amount distribution needs before it is used; also
    /// the weight, in observations, of `hour_weights` against the learned hour shares.
    pub min_weight: f64,
    /// Most (currency, money-out type) cells a partition learns; further ones are not learned
    /// (and get no population evidence).
    pub max_cells: u32,
    /// Starting amount distributions per (currency, money-out type), which a partition's
    /// learned population begins with instead of nothing (`walletguard calibrate` writes them
    /// from history). Each weighs `min_weight` observations, so the population is usable from
    /// the first event and its own observations take over at the half-life.
    pub amounts: Vec<AmountSeed>,
}

/// `[[prior.amounts]]`: one (currency, money-out type) cell's starting distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountSeed {
    /// ISO 4217 code.
    pub currency: String,
    /// Money-out type: payment, transfer, withdrawal or mobile_recharge.
    #[serde(rename = "type")]
    pub kind: String,
    /// ln(amount) at the shares [`SEED_SHARES`] of money out (non-decreasing).
    pub ln_quantiles: Vec<f64>,
}

/// The shares of money out that [`AmountSeed::ln_quantiles`] are taken at.
pub const SEED_SHARES: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99];

impl Default for PriorConfig {
    fn default() -> Self {
        PriorConfig {
            amount_log_sd: 1.3,
            hour_weights: vec![
                0.4, 0.25, 0.15, 0.1, 0.1, 0.15, 0.4, 0.9, 1.3, 1.4, 1.4, 1.5, 1.7, 1.5, 1.3, 1.3,
                1.3, 1.4, 1.6, 1.7, 1.7, 1.5, 1.1, 0.7,
            ],
            out_per_day: 2.0,
            learn: true,
            half_life_observations: 50_000.0,
            min_weight: 500.0,
            max_cells: 64,
            amounts: Vec::new(),
        }
    }
}

impl PriorConfig {
    /// Checks the rules of `[prior]`; the error names the key.
    pub fn validate(&self) -> Checked {
        positive("prior.amount_log_sd", self.amount_log_sd)?;
        positive("prior.out_per_day", self.out_per_day)?;
        if !(self.half_life_observations.is_finite() && self.half_life_observations >= 1.0) {
            return Err(invalid(
                "prior.half_life_observations",
                "must be at least 1",
            ));
        }
        positive("prior.min_weight", self.min_weight)?;
        if self.max_cells == 0 || self.max_cells > 4096 {
            return Err(invalid("prior.max_cells", "must be 1 to 4096"));
        }
        for (i, a) in self.amounts.iter().enumerate() {
            let key = |k: &str| format!("prior.amounts[{i}].{k}");
            let c = a.currency.as_bytes();
            if c.len() != 3 || !c.iter().all(u8::is_ascii_alphabetic) {
                return Err(invalid(&key("currency"), "must be a 3-letter code"));
            }
            if !crate::engine::event::EventType::parse(&a.kind).is_some_and(|k| k.is_money_out()) {
                return Err(invalid(
                    &key("type"),
                    "must be payment, transfer, withdrawal or mobile_recharge",
                ));
            }
            let q = &a.ln_quantiles;
            if q.len() != SEED_SHARES.len()
                || q.iter().any(|x| !x.is_finite() || x.abs() > 40.0)
                || q.windows(2).any(|w| w[1] < w[0])
            {
                return Err(invalid(
                    &key("ln_quantiles"),
                    "needs 9 finite, non-decreasing ln(amount) values (at 1, 5, 10, 25, 50, 75, 90, 95, 99%)",
                ));
            }
        }
        if self.amounts.len() > self.max_cells as usize {
            return Err(invalid(
                "prior.amounts",
                "more entries than prior.max_cells",
            ));
        }
        if self.hour_weights.len() != 24 {
            return Err(invalid(
                "prior.hour_weights",
                format!("needs 24 values, has {}", self.hour_weights.len()),
            ));
        }
        if self
            .hour_weights
            .iter()
            .any(|w| !w.is_finite() || *w <= 0.0)
        {
            return Err(invalid("prior.hour_weights", "every weight must be > 0"));
        }
        Ok(())
    }
}

/// Population amount and hour priors, with shrinkage helpers.
#[derive(Debug, Clone)]
pub struct Prior {
    /// Variance of ln(amount) within a user, before the user's own is known.
    pub amount_var: f64,
    /// Share of activity per local hour; sums to 1.
    pub hours: [f64; 24],
    /// Money-out attempts per second of a typical user.
    pub out_rate: f64,
    /// Shrinkage constant k.
    pub k: f64,
    /// How the partition's population learns.
    pub pop: PopulationParams,
}

impl PopulationParams {
    /// How the partition's population learns, from a validated `[prior]`.
    pub fn new(p: &PriorConfig) -> PopulationParams {
        PopulationParams {
            learn: p.learn,
            growth: 2f64.powf(1.0 / p.half_life_observations.max(1.0)),
            min_weight: p.min_weight,
            max_cells: p.max_cells as usize,
        }
    }
}

impl Prior {
    /// Builds the prior from a validated `[prior]` and the shrinkage constant `k` of
    /// `[baseline]`.
    pub fn new(p: &PriorConfig, k: f64) -> Prior {
        let total: f64 = p.hour_weights.iter().sum();
        let mut hours = [1.0 / 24.0; 24];
        if total > 0.0 && p.hour_weights.len() == 24 {
            for (h, w) in hours.iter_mut().zip(&p.hour_weights) {
                *h = w / total;
            }
        }
        Prior {
            amount_var: p.amount_log_sd * p.amount_log_sd,
            hours,
            out_rate: p.out_per_day / 86_400.0,
            k,
            pop: PopulationParams::new(p),
        }
    }

    /// Weight n/(n+k) a user's own estimate gets after `n` effective observations.
    #[inline]
    pub fn own_weight(&self, n: f64) -> f64 {
        if n <= 0.0 {
            0.0
        } else {
            n / (n + self.k)
        }
    }

    /// (mean, variance) of ln(amount) for a user with `n` observations of the given mean and
    /// variance. The mean is the user's own: pulling it toward a population amount would tie
    /// the baseline to one currency and one population (a habit of 10,000 in a currency where
    /// that is a coffee would look like an outlier against a prior of 54). Only the spread is
    /// shrunk toward the prior's, which is scale-free, so a user with two payments of the same
    /// amount is not made overconfident.
    ///
    /// A user without money out has no typical amount at all (callers stay silent or neutral):
    /// a population amount would belong to one currency.
    pub fn shrink_amount(&self, n: f64, own: (f64, f64)) -> (f64, f64) {
        let (m, v) = own;
        let w = self.own_weight(n);
        (m, w * v + (1.0 - w) * self.amount_var)
    }

    /// Shrunk probability of local hour `h` for a user with `n` events and own share `own`,
    /// toward the partition's learned hour shares.
    pub fn shrink_hour(&self, pop: &Population, n: f64, h: usize, own: Option<f64>) -> f64 {
        let base = pop.hour_share(&self.pop, &self.hours, h);
        match own {
            None => base,
            Some(s) => {
                let w = self.own_weight(n);
                w * s + (1.0 - w) * base
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinkage_moves_from_prior_to_user() {
        let p = crate::engine::pipeline::EngineConfig::default().prior();
        assert!((p.hours.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // The mean is always the user's own; the spread moves from the prior's to the user's.
        let (m0, v0) = p.shrink_amount(0.0, (8.0, 0.1));
        assert_eq!((m0, v0), (8.0, p.amount_var));
        let (m, v) = p.shrink_amount(1000.0, (8.0, 0.1));
        assert_eq!(m, 8.0);
        assert!((v - 0.1).abs() < 0.02);
        // k observations: halfway.
        let (_, vk) = p.shrink_amount(p.k, (8.0, 0.1));
        assert!((vk - (0.1 + p.amount_var) / 2.0).abs() < 1e-12);
        let pop = Population::default();
        assert!((p.shrink_hour(&pop, 0.0, 3, Some(1.0)) - p.hours[3]).abs() < 1e-15);
    }
}
