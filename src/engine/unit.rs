//! The per-partition unit of work: one partition's [`State`], scored through an [`Engine`],
//! with its upkeep. Every driver of the engine holds one per partition — the Kafka partition
//! task (and its shadow candidate), `replay` with `compare` and `calibrate`, the offline
//! demo, `eval` and the in-memory worlds — so they score, bound memory and hand on published
//! list entries alike.
//!
//! The upkeep, in one place:
//! - the newest event time scored, the clock idle-profile sweeps use ([`sweep_clock`]): event
//!   time, so a replay of last year expires what was idle then;
//! - a sweep whenever the state holds more profiles than the cap, at once (a flood of new
//!   users must not grow memory), and whenever the driver's own schedule says one is due
//!   (the service: every minute of wall time; `replay`: every million events);
//! - the removal counts since the driver last looked, and the list entries (a confirmed
//!   fraud's blocks) the partition's feedback published, for the driver to share.
//!
//! Pure like the pipeline: `now` comes in as an argument, and the driver keeps the schedule.

use crate::engine::event::{Event, EventError};
use crate::engine::lists::ListEntry;
use crate::engine::pipeline::{sweep_clock, Engine, Outcome, Removed, State};
use crate::engine::time::EpochMs;

/// One partition's state and its upkeep (see the module docs).
pub struct Unit {
    /// The partition's profiles, population, feedback cases and lists.
    pub state: State,
    newest_ts: EpochMs,
    removed_seen: Removed,
}

/// A batch's results: per raw event, the parsed event and its outcome, or why it is invalid.
pub type Results<'a> = Vec<Result<(Event<'a>, Outcome), EventError>>;

impl Unit {
    /// Wraps `state` (fresh from [`Engine::new_state`], or restored).
    pub fn new(state: State) -> Unit {
        Unit {
            removed_seen: state.removed,
            state,
            newest_ts: 0,
        }
    }

    /// Scores one validated event.
    pub fn process(&mut self, engine: &Engine, ev: &Event<'_>, now_ms: EpochMs) -> Outcome {
        self.newest_ts = self.newest_ts.max(ev.ts_ms);
        engine.process(&mut self.state, ev, now_ms)
    }

    /// Parses and scores one raw event; on error nothing changes.
    pub fn process_bytes<'a>(
        &mut self,
        engine: &Engine,
        raw: &'a [u8],
        now_ms: EpochMs,
    ) -> Result<(Event<'a>, Outcome), EventError> {
        let r = engine.process_bytes(&mut self.state, raw, now_ms);
        if let Ok((ev, _)) = &r {
            self.newest_ts = self.newest_ts.max(ev.ts_ms);
        }
        r
    }

    /// Scores a batch of raw events in order, appending one result per event to `out`.
    pub fn process_batch<'a>(
        &mut self,
        engine: &Engine,
        raws: &[&'a [u8]],
        now_ms: EpochMs,
        out: &mut Results<'a>,
    ) {
        let start = out.len();
        engine.process_batch(&mut self.state, raws, now_ms, out);
        for (ev, _) in out[start..].iter().flatten() {
            self.newest_ts = self.newest_ts.max(ev.ts_ms);
        }
    }

    /// The sweep clock now: the newest event time scored, at most a day past `now_ms`.
    pub fn clock(&self, now_ms: EpochMs) -> EpochMs {
        sweep_clock(self.newest_ts, now_ms)
    }

    /// Sweeps at `clock_ms` when `due` or when the state is over the cap; the keys removed,
    /// or `None` when no sweep ran.
    pub fn upkeep_at(&mut self, engine: &Engine, clock_ms: EpochMs, due: bool) -> Option<Vec<u64>> {
        (due || engine.over_cap(&self.state)).then(|| engine.maintain(&mut self.state, clock_ms))
    }

    /// [`Unit::upkeep_at`] this unit's own clock ([`Unit::clock`]).
    pub fn upkeep(&mut self, engine: &Engine, now_ms: EpochMs, due: bool) -> Option<Vec<u64>> {
        let clock = self.clock(now_ms);
        self.upkeep_at(engine, clock, due)
    }

    /// Profiles removed (idle, or over the cap) since the last call.
    pub fn removed_since(&mut self) -> Removed {
        let now = self.state.removed;
        let d = Removed {
            ttl: now.ttl - self.removed_seen.ttl,
            cap: now.cap - self.removed_seen.cap,
        };
        self.removed_seen = now;
        d
    }

    /// The list entries this partition's feedback published since the last call, for the
    /// driver to share with every partition (they are in this state's lists already).
    pub fn take_blocks(&mut self) -> Vec<ListEntry> {
        std::mem::take(&mut self.state.blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pipeline::EngineConfig;

    fn line(user: &str, ts: i64) -> String {
        format!(
            r#"{{"event_id":"{user}-{ts}","user_id":"{user}","ts":{ts},"type":"login","device_id":"d1"}}"#
        )
    }

    #[test]
    fn the_unit_sweeps_over_the_cap_at_once_and_idle_profiles_when_due() {
        let mut cfg = EngineConfig::default();
        cfg.baseline.max_profiles_per_partition = 10;
        cfg.baseline.profile_ttl_days = 1.0;
        let engine = Engine::new(cfg);
        let mut u = Unit::new(engine.new_state());
        let day = 86_400_000i64;
        let t0 = 1_790_000_000_000i64;
        for i in 0..11 {
            let l = line(&format!("u{i}"), t0);
            u.process_bytes(&engine, l.as_bytes(), t0).expect("valid");
        }
        assert!(engine.over_cap(&u.state));
        let gone = u
            .upkeep(&engine, t0, false)
            .expect("over the cap sweeps at once");
        assert!(!gone.is_empty() && u.state.profiles.len() <= 10);
        assert_eq!(u.removed_since().cap, gone.len() as u64);
        assert_eq!(u.removed_since(), Removed::default(), "counted once");
        assert!(
            u.upkeep(&engine, t0, false).is_none(),
            "nothing due, under the cap"
        );
        // Two days later by event time, the idle profiles go when a sweep is due.
        let l = line("late", t0 + 2 * day);
        u.process_bytes(&engine, l.as_bytes(), t0 + 2 * day)
            .expect("valid");
        assert_eq!(u.clock(t0 + 2 * day), t0 + 2 * day);
        let gone = u.upkeep(&engine, t0 + 2 * day, true).expect("due");
        assert_eq!(u.state.profiles.len(), 1, "only the late user stays");
        assert_eq!(u.removed_since().ttl, gone.len() as u64);
        // A far-future stamp moves the clock at most a day past the wall clock.
        let l = line("future", t0 + 400 * day);
        u.process_bytes(&engine, l.as_bytes(), t0 + 3 * day)
            .expect("valid");
        assert_eq!(u.clock(t0 + 3 * day), t0 + 4 * day);
        assert!(u.take_blocks().is_empty());
    }
}
