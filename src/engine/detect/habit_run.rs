//! `HABIT_RUN`: a run of money out above the user's own habit.
//!
//! One outflow above a user's habit is weak evidence: an honest card's own 99th percentile
//! is often ten times its median, so a single large payment scores little on its own
//! (`AMOUNT_OUTLIER`). A stolen card or a taken-over wallet is used again and again, and what
//! gives it away is the *run*: outflow after outflow above what this user does.
//!
//! # Formula
//! Each successful money-out with an amount habit (at least `min_history` outflows learned
//! in the currency) is *out of habit* when z = (ln(1 + amount) − mean) / sd ≥ `z_odd` against
//! the user's own (prior-shrunk) log-amount distribution. A one-sided Bernoulli CUSUM weighs
//! the sequence of those verdicts:
//!
//! ```text
//! S ← max(0, S · 2^(−Δt / half_life) + ln(q / f))             out of habit
//! S ← max(0, S · 2^(−Δt / half_life) + ln((1 − q) / (1 − f)))  within habit
//! ```
//!
//! where f is the share of the user's *own* learned outflows that were out of habit (decayed,
//! starting at `prior_share`, floored at `min_share`) and q = `run_share` the share expected
//! while someone else spends. S is the log-likelihood ratio of "the last outflows come from
//! someone who spends above this user's habit" against "from the user": it grows by about
//! ln(q/f) per outflow out of habit and falls with each ordinary one. Why the user's own
//! share f and not the nominal tail of `z_odd`: amounts are rarely log-normal, and a user whose
//! outflows mix small payments with large transfers is out of habit often; weighing by f makes
//! that user's runs count for less, and a very regular user's for more.
//!
//! The signal fires on an outflow out of habit when S (this outflow included) reaches
//! `start`, and scores 1 at `full`. S lives in the profile (one byte, eighths of a nat), decays
//! with time from the last money-out attempt, and is updated for every outflow, whether or
//! not it was learned; f is learned only from outflows the baseline learns, so a thief's run
//! does not teach the profile that runs are normal.

use super::{own_habit, Code, Detail, Detector, Input, Keep, Signals};
use crate::engine::baseline::{Facts, Prior, Profile};
use crate::engine::event::Event;
use crate::engine::validate::{invalid, nonneg, positive, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.habit_run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HabitRunConfig {
    /// Run this detector (and keep its state).
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Successful money-out events (decayed) in the currency before the user has a habit.
    pub min_history: f64,
    /// z of ln(1 + amount) against the user's habit at or above which an outflow is out of
    /// habit (1.28: the upper 10% of a normal habit).
    pub z_odd: f64,
    /// Floor on the per-user standard deviation of ln(1 + amount).
    pub min_sd: f64,
    /// Share of outflows out of habit expected while someone else spends (q).
    pub run_share: f64,
    /// A user's share of outflows out of habit before any is learned (f at the start).
    pub prior_share: f64,
    /// Least share f: a user who never leaves the habit still has this much room for it.
    pub min_share: f64,
    /// Effective number of outflows the user's share f is learned over.
    pub share_events: f64,
    /// Half-life of the run evidence, in hours: a run paused for days fades.
    pub half_life_hours: f64,
    /// Outflows closer than this to the previous money-out attempt belong to its episode and
    /// do not move the run.
    pub episode_seconds: f64,
    /// Run evidence (nats) at which the signal starts to score.
    pub start: f64,
    /// Run evidence (nats) at which it scores 1.
    pub full: f64,
}

impl Default for HabitRunConfig {
    fn default() -> Self {
        HabitRunConfig {
            enabled: true,
            weight: 0.85,
            min_history: 5.0,
            z_odd: 1.28,
            min_sd: 0.35,
            run_share: 0.7,
            prior_share: 0.1,
            min_share: 0.03,
            share_events: 50.0,
            half_life_hours: 72.0,
            episode_seconds: 120.0,
            start: 4.5,
            full: 9.0,
        }
    }
}

impl HabitRunConfig {
    /// Checks the rules of its table, `table` (`detectors.habit_run`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        nonneg(&k("min_history"), self.min_history)?;
        positive(&k("min_sd"), self.min_sd)?;
        positive(&k("share_events"), self.share_events)?;
        positive(&k("half_life_hours"), self.half_life_hours)?;
        positive(&k("start"), self.start)?;
        nonneg(&k("episode_seconds"), self.episode_seconds)?;
        for (f, v) in [
            ("run_share", self.run_share),
            ("prior_share", self.prior_share),
            ("min_share", self.min_share),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(invalid(&k(f), "must be above 0 and below 1"));
            }
        }
        if self.min_share > self.prior_share || self.prior_share >= self.run_share {
            return Err(invalid(
                &k("prior_share"),
                "must lie between min_share and run_share",
            ));
        }
        if self.full <= self.start || self.full > MAX_RUN {
            return Err(invalid(
                &k("full"),
                format!("must be above start and at most {MAX_RUN}"),
            ));
        }
        Ok(())
    }
}

/// Largest run evidence the profile's byte holds, in nats.
pub const MAX_RUN: f64 = 255.0 / RUN_UNIT;

/// Fixed-point steps of the run evidence per nat.
const RUN_UNIT: f64 = 8.0;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct HabitRun {
    enabled: bool,
    weight: f64,
    min_history: f64,
    z_odd: f64,
    min_var: f64,
    run_share: f64,
    prior_share: f64,
    min_share: f64,
    alpha: f64,
    half_life_s: f64,
    episode_s: f64,
    start: f64,
    full: f64,
}

impl HabitRun {
    /// From config.
    pub fn new(c: &HabitRunConfig) -> Self {
        HabitRun {
            enabled: c.enabled,
            weight: c.weight,
            min_history: c.min_history,
            z_odd: c.z_odd,
            min_var: c.min_sd * c.min_sd,
            run_share: c.run_share,
            prior_share: c.prior_share,
            min_share: c.min_share,
            alpha: 1.0 / c.share_events.max(1.0),
            half_life_s: c.half_life_hours * 3600.0,
            episode_s: c.episode_seconds,
            start: c.start,
            full: c.full,
        }
    }

    /// Whether `ev` is out of the user's habit: `None` when it is not a successful money-out
    /// with an amount, or the user has no habit in its currency yet.
    pub fn odd(
        &self,
        profile: &Profile,
        facts: &Facts,
        prior: &Prior,
        ev: &Event<'_>,
    ) -> Option<bool> {
        if !self.enabled || !ev.is_successful_money_out() {
            return None;
        }
        let x = facts.log_amount?;
        let own = profile.amount_stats(facts)?;
        let (n, mean, sd) = own_habit(profile, facts, prior, own, self.min_var);
        (n >= self.min_history).then(|| (x - mean) / sd >= self.z_odd)
    }

    /// The user's learned share of outflows out of habit (f).
    fn share(&self, profile: &Profile) -> f64 {
        if profile.odd_share == 0 {
            self.prior_share
        } else {
            (profile.odd_share as f64 / 255.0).clamp(self.min_share, 1.0 - 1e-3)
        }
    }

    /// The run evidence after an outflow with verdict `odd` (`None`: the stored evidence, only
    /// decayed to the event's time).
    pub fn evidence(&self, profile: &Profile, facts: &Facts, odd: Option<bool>) -> f64 {
        let s = profile.run as f64 / RUN_UNIT;
        let s = if s > 0.0 && profile.ring_base != 0 && facts.t > profile.ring_base {
            s * (-(((facts.t - profile.ring_base) as f64) / self.half_life_s)).exp2()
        } else {
            s
        };
        let f = self.share(profile);
        let q = self.run_share;
        // Outflows seconds apart are one episode (a batch, a burst: `VELOCITY_BURST`'s
        // business): only the first of them moves the run.
        let episode = profile.ring_base != 0
            && facts.t >= profile.ring_base
            && ((facts.t - profile.ring_base) as f64) < self.episode_s;
        let step = match odd {
            _ if episode => 0.0,
            None => 0.0,
            Some(true) => (q / f).ln(),
            Some(false) => ((1.0 - q) / (1.0 - f)).ln(),
        };
        (s + step).clamp(0.0, MAX_RUN)
    }

    /// Records a money-out attempt: the run evidence moves by the verdict `odd`, and the
    /// user's share of outflows out of habit learns it when `learn` (the baseline learns the
    /// event). Call before [`Profile::record_activity`], which moves the time the evidence
    /// decays from.
    pub fn record(&self, profile: &mut Profile, facts: &Facts, odd: Option<bool>, learn: bool) {
        if !self.enabled {
            return;
        }
        let s = self.evidence(profile, facts, odd);
        // Residues below one step round to zero, so a faded run reaches exactly zero.
        profile.run = (s * RUN_UNIT).round().clamp(0.0, 255.0) as u8;
        if let (Some(o), true) = (odd, learn) {
            let f = self.share(profile);
            let f = f + self.alpha * (o as u8 as f64 - f);
            // 0 is "nothing learned yet"; a learned share is at least one step.
            profile.odd_share = (f * 255.0).round().clamp(1.0, 255.0) as u8;
        }
    }
}

impl Detector for HabitRun {
    fn code(&self) -> Code {
        Code::HabitRun
    }

    fn keeps_state(&self) -> bool {
        true
    }

    /// Moves the run evidence with every money-out attempt, scored or not.
    fn keep(&self, k: &mut Keep<'_, '_>) {
        if k.ev.kind.is_money_out() {
            let odd = self.odd(k.profile, k.facts, k.prior, k.ev);
            self.record(k.profile, k.facts, odd, k.learn);
        }
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        // Only an outflow out of habit is reported: an ordinary one in the middle of a run
        // is the owner's as often as not.
        let Some(true) = self.odd(ctx.profile, ctx.facts, ctx.prior, ctx.ev) else {
            return;
        };
        let s = self.evidence(ctx.profile, ctx.facts, Some(true));
        if s < self.start {
            return;
        }
        let score = ((s - self.start) / (self.full - self.start)).clamp(0.0, 1.0);
        // At `start` itself the ramp is 0; a run that reached it still counts a little.
        let score = score.max(0.05);
        out.push(
            Code::HabitRun,
            score,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "another outflow above this user's habit: run evidence {:.1} nats \
                         (this user's outflows are out of habit {:.0}% of the time)",
                        a[0],
                        a[1] * 100.0
                    )
                },
                [s, self.share(ctx.profile), 0.0, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> HabitRun {
        HabitRun::new(&HabitRunConfig::default())
    }

    #[test]
    fn the_config_names_the_key_at_fault() {
        let mut c = HabitRunConfig::default();
        assert!(c.validate("detectors.habit_run").is_ok());
        c.full = c.start;
        let e = c.validate("detectors.habit_run").unwrap_err().to_string();
        assert!(e.contains("detectors.habit_run.full"), "{e}");
        let c = HabitRunConfig {
            run_share: 1.0,
            ..HabitRunConfig::default()
        };
        let e = c.validate("detectors.habit_run").unwrap_err().to_string();
        assert!(e.contains("detectors.habit_run.run_share"), "{e}");
    }

    const HOUR: i64 = 3_600_000;

    /// Scores a payment of `amount` and records it as the pipeline would: always recorded,
    /// learned only when it raised no signal.
    fn pay(k: &mut Kit, t: i64, amount: f64) -> f64 {
        let body = format!(r#""amount":{amount},"counterparty":"shop-{t}""#);
        let s = score(&k.run(&det(), t, "payment", &body));
        let json = k.json(t, "payment", &body);
        let e = crate::engine::event::parse_event(json.as_bytes()).unwrap();
        let f = k.profile.facts(&k.params, &e);
        let odd = det().odd(&k.profile, &f, &k.prior, &e);
        det().record(&mut k.profile, &f, odd, s == 0.0);
        k.profile.record_activity(&k.params, &e, &f, false);
        if s == 0.0 {
            k.profile.learn(&k.params, &e, &f);
        }
        s
    }

    /// The facts of a login at `t`: the time the run evidence is read at.
    fn at(k: &mut Kit, t: i64) -> Facts {
        let json = k.json(t, "login", "");
        let e = crate::engine::event::parse_event(json.as_bytes()).unwrap();
        k.profile.facts(&k.params, &e)
    }

    #[test]
    fn a_run_of_outflows_above_the_habit_fires_and_one_does_not() {
        let mut k = Kit::new();
        // Forty card payments around 40, a few hours apart.
        let mut t = T0;
        for i in 0..40 {
            pay(&mut k, t, 30.0 + (i % 7) as f64 * 4.0);
            t += 5 * HOUR;
        }
        // One payment of 400: out of habit, but one is no run.
        assert_eq!(pay(&mut k, t, 400.0), 0.0);
        // Back to ordinary, then a spree: the second or third large payment in a row fires,
        // and the evidence grows with each.
        for _ in 0..5 {
            t += 5 * HOUR;
            pay(&mut k, t, 40.0);
        }
        let mut scores = Vec::new();
        for a in [450.0, 380.0, 520.0, 610.0, 700.0] {
            t += HOUR;
            scores.push(pay(&mut k, t, a));
        }
        assert_eq!(scores[0], 0.0, "{scores:?}");
        assert!(scores[2] > 0.0, "{scores:?}");
        assert!(scores.windows(2).all(|w| w[1] >= w[0]), "{scores:?}");
        assert!(scores[4] > 0.5, "{scores:?}");
        let d = detail(&k.run(
            &det(),
            t + 60,
            "payment",
            r#""amount":900,"counterparty":"x""#,
        ));
        assert!(d.contains("run evidence"), "{d}");
    }

    #[test]
    fn a_run_fades_with_time_and_with_ordinary_outflows() {
        let mut k = Kit::new();
        let mut t = T0;
        for i in 0..40 {
            pay(&mut k, t, 30.0 + (i % 7) as f64 * 4.0);
            t += 5 * HOUR;
        }
        for a in [450.0, 380.0, 520.0] {
            t += HOUR;
            pay(&mut k, t, a);
        }
        let f = at(&mut k, t + 60);
        let hot = det().evidence(&k.profile, &f, None);
        assert!(hot >= 4.0, "{hot}");
        let f = at(&mut k, t + 6 * 24 * HOUR);
        let later = det().evidence(&k.profile, &f, None);
        assert!(
            (later - hot / 4.0).abs() < 0.2,
            "two half-lives: {hot} -> {later}"
        );
        for _ in 0..6 {
            t += HOUR;
            pay(&mut k, t, 40.0);
        }
        let f = at(&mut k, t + 60);
        assert_eq!(det().evidence(&k.profile, &f, None), 0.0);
    }

    #[test]
    fn a_user_often_out_of_habit_needs_a_longer_run() {
        // A user whose outflows are a mix of small and large: the learned share rises, and
        // three large outflows in a row no longer fire.
        let mut k = Kit::new();
        let mut t = T0;
        for i in 0..120 {
            pay(&mut k, t, if i % 3 == 0 { 400.0 } else { 35.0 });
            t += 5 * HOUR;
        }
        let f = det().share(&k.profile);
        assert!(f > 0.2, "{f}");
        let mut last = 0.0;
        for a in [450.0, 380.0, 520.0] {
            t += HOUR;
            last = pay(&mut k, t, a);
        }
        assert_eq!(last, 0.0);
    }
}
