//! Shadow scoring: a candidate config scored beside the live one on every event, acting on
//! nothing, so its flips can be watched on live traffic before it is promoted.
//!
//! # How it runs
//! - `[shadow] config` names the candidate: an overlay or a full file, laid over the live
//!   config files in order (so an overlay changes only its keys, and a full file replaces
//!   whatever it sets). Empty: off.
//! - Each partition keeps a second [`crate::engine::unit::Unit`] for the candidate. Its learning depends on its
//!   own decisions (a freeze is not learned, a review may not be), so it cannot share the
//!   live profiles. It lives **in memory only**: on assignment (and whenever the candidate is
//!   turned on or replaced) it starts as a copy of the live state, which the partition has
//!   just restored from the changelog, and from there it learns on its own. A restart or a
//!   rebalance therefore restarts the candidate from the live profiles; its figures after a
//!   restart describe "the candidate from the live state of that moment".
//! - The candidate never issues commands, never publishes list entries and never writes the
//!   changelog. Its decisions go to `[shadow] decisions_topic` when set.
//! - Promotion is the ordinary hot reload: write the candidate's keys to the live file(s).
//!   A reload can also turn the shadow on or off, or replace the candidate.
//!
//! [`ShadowBatch`] is the pure part: it scores a batch under the candidate and counts the
//! flip matrix against the live outcomes; the Kafka partition task turns the counts into
//! `walletguard_shadow_*` metrics.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::decision::Action;
use crate::engine::detect::Code;
use crate::engine::event::{Event, EventError};
use crate::engine::pipeline::{Engine, Outcome};
use crate::engine::time::EpochMs;
use crate::engine::unit::Unit;
use crate::engine::validate::{invalid, Checked};

/// `[shadow]`: the candidate config scored beside the live one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// The candidate: a TOML file (overlay or full) laid over the live config files. Empty:
    /// no shadow scoring. A relative path is taken from the working directory.
    pub config: String,
    /// Topic for the candidate's decisions (one per event, the decisions format). Empty:
    /// none. Read at startup.
    pub decisions_topic: String,
}

impl ShadowConfig {
    /// Checks the rules of `[shadow]`; the error names the key.
    pub fn validate(&self) -> Checked {
        let t = &self.decisions_topic;
        if !t.is_empty()
            && (t.len() > 249
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            return Err(invalid(
                "shadow.decisions_topic",
                "must be a Kafka topic name (letters, digits, '.', '_', '-')",
            ));
        }
        Ok(())
    }

    /// The candidate's file, if shadow scoring is on.
    pub fn path(&self) -> Option<PathBuf> {
        (!self.config.trim().is_empty()).then(|| PathBuf::from(self.config.trim()))
    }
}

/// What a batch scored under the candidate adds up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowBatch {
    /// `matrix[live][candidate]`, indexed like [`Action::ALL`].
    pub matrix: [[u64; 4]; 4],
    /// Reason codes of the candidate's alerts, counted by [`Code`] index.
    pub reasons: [u64; Code::ALL.len()],
}

impl ShadowBatch {
    /// Scores `raws` (the batch the live engine just scored into `live`) under `engine` on
    /// `unit`, counts both actions of every valid event, and calls `decision` with each of
    /// the candidate's outcomes. List entries the candidate's feedback would publish are
    /// dropped: it acts on nothing.
    pub fn score<'a>(
        engine: &Engine,
        unit: &mut Unit,
        raws: &[&'a [u8]],
        now_ms: EpochMs,
        live: &[Result<(Event<'a>, Outcome), EventError>],
        mut decision: impl FnMut(&Event<'a>, &Outcome),
    ) -> ShadowBatch {
        let mut out = Vec::with_capacity(raws.len());
        unit.process_batch(engine, raws, now_ms, &mut out);
        unit.take_blocks();
        let mut b = ShadowBatch::default();
        for (l, c) in live.iter().zip(&out) {
            if let (Ok((_, lo)), Ok((ev, co))) = (l, c) {
                b.add(lo.decision.action, co);
                decision(ev, co);
            }
        }
        b
    }

    fn add(&mut self, live: Action, cand: &Outcome) {
        self.matrix[live as usize][cand.decision.action as usize] += 1;
        if cand.alert() {
            for s in cand.decision.signals.iter() {
                self.reasons[s.code as usize] += 1;
            }
        }
    }

    /// Events counted.
    pub fn events(&self) -> u64 {
        self.matrix.iter().flatten().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::Config;

    fn lines() -> Vec<String> {
        let p = crate::tools::sim::SimParams {
            users: 200,
            days: 20,
            seed: 3,
            ..crate::tools::sim::SimParams::default()
        };
        let mut v = Vec::new();
        for ev in crate::tools::sim::Simulator::new(&p).unwrap() {
            let mut b = Vec::new();
            ev.write_json(&mut b);
            v.push(String::from_utf8(b).unwrap());
        }
        v
    }

    #[test]
    fn the_shadow_matrix_is_the_comparison_of_two_independent_states() {
        let live = Engine::new(Config::default());
        let cand = Engine::new(
            Config::from_toml("[decision]\nreview = 0.3\nstep_up = 0.5\nfreeze = 0.6\n").unwrap(),
        );
        let lines = lines();
        let raws: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        let (mut ls, mut cs) = (live.new_state(), Unit::new(cand.new_state()));
        let mut total = ShadowBatch::default();
        let mut decided = 0u64;
        for chunk in raws.chunks(500) {
            let mut lo = Vec::new();
            live.process_batch(&mut ls, chunk, 0, &mut lo);
            let b = ShadowBatch::score(&cand, &mut cs, chunk, 0, &lo, |_, _| decided += 1);
            for (r, row) in b.matrix.iter().enumerate() {
                for (c, n) in row.iter().enumerate() {
                    total.matrix[r][c] += n;
                }
            }
        }
        // The same as replaying each config on its own state.
        let (mut a, mut c) = (live.new_state(), cand.new_state());
        let mut want = [[0u64; 4]; 4];
        for raw in &raws {
            if let (Ok((_, x)), Ok((_, y))) = (
                live.process_bytes(&mut a, raw, 0),
                cand.process_bytes(&mut c, raw, 0),
            ) {
                want[x.decision.action as usize][y.decision.action as usize] += 1;
            }
        }
        assert_eq!(total.matrix, want);
        assert_eq!(decided, total.events());
        let off: u64 = (0..4)
            .flat_map(|r| (0..4).map(move |c| (r, c)))
            .filter(|(r, c)| r != c)
            .map(|(r, c)| want[r][c])
            .sum();
        assert!(
            off > 0,
            "the lower thresholds must flip something: {want:?}"
        );
    }

    #[test]
    fn the_candidate_is_the_live_files_with_the_shadow_file_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.toml");
        let cand = dir.path().join("cand.toml");
        std::fs::write(&cand, "[decision]\nfreeze = 0.95\n").unwrap();
        std::fs::write(
            &live,
            format!(
                "[decision]\nreview = 0.4\n[shadow]\nconfig = \"{}\"\n",
                cand.display()
            ),
        )
        .unwrap();
        let l = Config::load_layers(&[live]).unwrap();
        let c = l.shadow_candidate().unwrap().expect("on");
        assert_eq!((c.decision.review, c.decision.freeze), (0.4, 0.95));
        assert_eq!(l.decision.freeze, Config::default().decision.freeze);
        assert!(Config::default().shadow_candidate().unwrap().is_none());
        // A bad key in the candidate is named with its file.
        std::fs::write(&cand, "[decision]\nfreez = 0.95\n").unwrap();
        let e = l.shadow_candidate().unwrap_err();
        assert_eq!(e.file(), Some(cand.display().to_string().as_str()));
        assert!(ShadowConfig {
            decisions_topic: "bad topic".into(),
            ..ShadowConfig::default()
        }
        .validate()
        .is_err());
    }
}
