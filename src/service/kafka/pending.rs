//! A partition's changelog bookkeeping: the profiles changed since the last changelog write,
//! the input offsets that wait for that write, and when it is due.
//!
//! At-least-once collects changed profiles for `kafka.changelog_flush_ms` (or until
//! `kafka.changelog_max_pending` of them) and writes each one's latest version once; the
//! offsets of the events behind them are stored only after that write is acknowledged, so a
//! crash replays exactly the events whose learning was not yet durable. Exactly-once flushes
//! with every batch (a flush interval of zero): a transaction must never commit offsets ahead
//! of the profiles it carries.
//!
//! Nothing here produces, or needs a session: a flush appends records to an [`OutBatch`].

use std::collections::HashSet;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::baseline::{keys, BuildIdentity, Params};
use crate::engine::pipeline::State;

use super::records::OutBatch;
use super::stamp;

/// Changed profiles not yet in the changelog, and the input offsets that wait for them.
pub(crate) struct Pending {
    /// The keys of `ids`, for deduplication.
    dirty: HashSet<u64, BuildIdentity>,
    /// The dirty keys in the order they were first changed: a profile present at the flush is
    /// written, one removed meanwhile is tombstoned.
    ids: Vec<u64>,
    /// User ids whose latest record an older release keyed by id: tombstoned at the next flush,
    /// before their profiles are written again under their 64-bit keys.
    legacy: Vec<Box<str>>,
    /// Next offset per input topic of the events scored since the last changelog write.
    held: Vec<(u16, i64)>,
    /// Next offset per input topic of every event scored: the input position the changelog is
    /// stamped with.
    position: Vec<i64>,
    /// When the changelog was last written.
    since: Instant,
    /// How long changes may wait for the changelog.
    flush_every: Duration,
    /// How many changed profiles may wait for it.
    max_pending: usize,
    /// The encoded position of the last flush (a reused buffer).
    stamp: Vec<u8>,
    /// The population version last written (or restored): it is written again only after a
    /// change.
    population_written: u64,
}

/// What [`Pending::wait`] woke up for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake<T> {
    /// The next batch.
    Batch(T),
    /// The flush deadline passed with no batch.
    Due,
    /// The channel closed (revoke or shutdown).
    Closed,
}

impl Pending {
    /// Bookkeeping from the restored input `position` (next offset per input topic), with the
    /// `legacy` ids the restore found, flushing every `flush_every` or at `max_pending`
    /// changed profiles.
    pub fn new(
        position: Vec<i64>,
        legacy: Vec<Box<str>>,
        flush_every: Duration,
        max_pending: usize,
    ) -> Pending {
        let mut pending = Pending {
            dirty: HashSet::default(),
            ids: Vec::new(),
            legacy: Vec::new(),
            held: Vec::with_capacity(1),
            since: Instant::now(),
            flush_every,
            max_pending,
            stamp: Vec::with_capacity(8 * position.len()),
            position,
            population_written: 0,
        };
        for id in legacy {
            // Rewritten under its 64-bit key at the first flush, after the legacy tombstone.
            pending.touch(keys::user_key(&id));
            pending.legacy.push(id);
        }
        pending
    }

    /// True when nothing waits for the changelog: no changed profile, no legacy tombstone, no
    /// offset.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.held.is_empty() && self.legacy.is_empty()
    }

    /// Marks the profile with key `key` changed (or removed).
    pub fn touch(&mut self, key: u64) {
        if self.dirty.insert(key) {
            self.ids.push(key);
        }
    }

    /// Notes a scored message of input topic `topic` at `offset`: its next offset is held
    /// until the next changelog write, and advances the input position.
    pub fn consumed(&mut self, topic: u16, offset: i64) {
        let next = offset + 1;
        match self.held.iter_mut().find(|(ht, _)| *ht == topic) {
            Some(o) => o.1 = o.1.max(next),
            None => self.held.push((topic, next)),
        }
        if let Some(n) = self.position.get_mut(topic as usize) {
            *n = (*n).max(next);
        }
    }

    /// When the changelog is due at the latest: the last write plus the flush interval.
    pub fn deadline(&self) -> Instant {
        self.since + self.flush_every
    }

    /// Whether the changelog is due: too many changed profiles wait, or the flush interval has
    /// passed since the last write.
    pub fn due(&self) -> bool {
        self.ids.len() >= self.max_pending || self.since.elapsed() >= self.flush_every
    }

    /// Waits for the next item of `rx`. While something waits for the changelog, wakes at the
    /// flush deadline even if no item comes: the events' offsets are stored only after it is
    /// written.
    pub async fn wait<T>(&self, rx: &mut mpsc::Receiver<T>) -> Wake<T> {
        let next = if self.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout_at(self.deadline(), rx.recv()).await {
                Ok(next) => next,
                Err(_) => return Wake::Due,
            }
        };
        match next {
            Some(t) => Wake::Batch(t),
            None => Wake::Closed,
        }
    }

    /// Adds the latest version of every pending profile of partition `p` to `out` (encoded
    /// with `params`; a tombstone for one no longer in `state`), stamped with the input
    /// position they reflect, counts them in `written`, and returns the offsets that may be
    /// stored once `out` is acknowledged.
    pub fn flush(
        &mut self,
        params: &Params,
        written: &IntCounter,
        state: &State,
        p: i32,
        out: &mut OutBatch,
    ) -> Vec<(u16, i64)> {
        self.stamp.clear();
        stamp::encode(&self.position, &mut self.stamp);
        // Legacy tombstones first: a restore breaks ties of equal stamps by offset, so the
        // profile written after them under its 64-bit key wins.
        for id in &self.legacy {
            out.legacy_tombstone(p, id.as_bytes(), &self.stamp);
        }
        for key in &self.ids {
            match state.profiles.get(*key) {
                Some(prof) => out.changelog(p, *key, &self.stamp, |buf| {
                    crate::engine::feedback::record::encode_record(
                        prof,
                        state.cases.get(key),
                        params,
                        buf,
                    )
                }),
                None => out.changelog_tombstone(p, *key, &self.stamp),
            }
        }
        let mut records = self.ids.len() + self.legacy.len();
        if state.population.version() != self.population_written {
            out.changelog_population(p, &self.stamp, |buf| state.population.encode(buf));
            self.population_written = state.population.version();
            records += 1;
        }
        written.inc_by(records as u64);
        self.dirty.clear();
        self.ids.clear();
        self.legacy.clear();
        self.since = Instant::now();
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;
    use crate::engine::baseline::codec;
    use crate::engine::baseline::Profile;
    use crate::service::config::Config;
    use crate::service::kafka::records::{Dest, OutputTopics, Record};

    const EVERY: Duration = Duration::from_millis(100);

    struct Fixture {
        params: Params,
        state: State,
        written: IntCounter,
        topics: OutputTopics,
        out: OutBatch,
    }

    impl Fixture {
        /// Profiles 1, 2 and 3, each naming itself in `last_seen`.
        fn new() -> Fixture {
            let cfg = crate::engine::pipeline::EngineConfig::default();
            let mut state = State::new(&cfg.prior);
            for key in [1u64, 2, 3] {
                let prof = Profile {
                    last_seen: key as u32,
                    ..Profile::default()
                };
                state.profiles.insert(key, prof);
            }
            Fixture {
                params: cfg.params(),
                state,
                written: IntCounter::new("written", "changelog records written")
                    .expect("a valid counter"),
                topics: OutputTopics::new(&Config::default().kafka, &Config::default().shadow),
                out: OutBatch::default(),
            }
        }

        fn flush(&mut self, pending: &mut Pending) -> Vec<(u16, i64)> {
            self.out.clear();
            pending.flush(&self.params, &self.written, &self.state, 5, &mut self.out)
        }

        fn records(&self) -> Vec<Record<'_>> {
            self.out.records(&self.topics, &[]).collect()
        }

        /// Each record as (key, `last_seen` of its profile, or `None` for a tombstone).
        fn written_profiles(&self) -> Vec<(Vec<u8>, Option<u32>)> {
            self.records()
                .iter()
                .map(|r| {
                    let key = r.key().map(<[u8]>::to_vec).unwrap_or_default();
                    let seen = r.payload().map(|v| {
                        codec::decode(v, &self.params)
                            .map(|p| p.last_seen)
                            .unwrap_or(u32::MAX)
                    });
                    (key, seen)
                })
                .collect()
        }
    }

    fn pending() -> Pending {
        Pending::new(vec![100, 200], Vec::new(), EVERY, 1000)
    }

    fn key(k: u64) -> Vec<u8> {
        k.to_be_bytes().to_vec()
    }

    #[test]
    fn touch_dedups_keys_and_keeps_the_first_change_order() {
        let mut p = pending();
        for k in [3, 1, 3, 2, 1, 3] {
            p.touch(k);
        }
        assert_eq!(p.ids, vec![3, 1, 2]);
        let mut f = Fixture::new();
        f.flush(&mut p);
        assert_eq!(
            f.written_profiles(),
            vec![(key(3), Some(3)), (key(1), Some(1)), (key(2), Some(2))]
        );
        // Touched again after a flush: written again.
        p.touch(1);
        assert_eq!(p.ids, vec![1]);
    }

    #[test]
    fn a_flush_writes_present_profiles_and_tombstones_removed_ones_in_order() {
        let mut f = Fixture::new();
        let mut p = pending();
        for k in [2, 9, 1] {
            p.touch(k);
        }
        f.state.profiles.remove(1);
        let offsets = f.flush(&mut p);
        assert!(offsets.is_empty(), "no message was scored");
        assert_eq!(
            f.written_profiles(),
            vec![(key(2), Some(2)), (key(9), None), (key(1), None)]
        );
        let mut stamp = Vec::new();
        stamp::encode(&[100, 200], &mut stamp);
        for r in f.records() {
            assert_eq!(r.dest(), Dest::Changelog(5));
            let h = r.headers().expect("a stamp header");
            assert_eq!(h.count(), 1);
            let h = h.get(0);
            assert_eq!(h.key, stamp::HEADER_HASHED);
            assert_eq!(h.value, Some(&stamp[..]), "stamped with the input position");
        }
        assert_eq!(f.written.get(), 3);
        assert!(p.is_empty());
        // Nothing pending: a flush writes nothing and counts nothing.
        assert!(f.flush(&mut p).is_empty());
        assert!(f.out.is_empty());
        assert_eq!(f.written.get(), 3);
    }

    #[test]
    fn legacy_tombstones_come_first_then_the_profile_under_its_new_key() {
        let mut f = Fixture::new();
        let bob = keys::user_key("bob");
        f.state.profiles.insert(
            bob,
            Profile {
                last_seen: 77,
                ..Profile::default()
            },
        );
        let mut p = Pending::new(vec![100], vec!["bob".into(), "eve".into()], EVERY, 1000);
        assert!(!p.is_empty(), "legacy ids wait for the changelog");
        p.touch(2);
        p.touch(bob);
        f.flush(&mut p);
        let eve = keys::user_key("eve");
        assert_eq!(
            f.written_profiles(),
            vec![
                (b"bob".to_vec(), None),
                (b"eve".to_vec(), None),
                (key(bob), Some(77)),
                (key(eve), None),
                (key(2), Some(2)),
            ]
        );
        let headers: Vec<String> = f
            .records()
            .iter()
            .filter_map(|r| r.headers())
            .map(|h| h.get(0).key.to_owned())
            .collect();
        assert_eq!(
            headers,
            vec![
                stamp::HEADER,
                stamp::HEADER,
                stamp::HEADER_HASHED,
                stamp::HEADER_HASHED,
                stamp::HEADER_HASHED,
            ]
        );
        assert_eq!(f.written.get(), 5);
        assert!(p.is_empty());
        f.flush(&mut p);
        assert!(f.out.is_empty(), "legacy tombstones are written once");
    }

    #[test]
    fn a_flush_returns_the_max_next_offset_per_topic_held_since_the_last() {
        let mut f = Fixture::new();
        let mut p = pending();
        assert!(p.is_empty());
        p.consumed(1, 250);
        assert!(!p.is_empty(), "a held offset waits for the changelog");
        p.consumed(0, 120);
        p.consumed(1, 249);
        p.consumed(0, 121);
        assert_eq!(p.position, vec![122, 251]);
        assert_eq!(f.flush(&mut p), vec![(1, 251), (0, 122)]);
        assert!(p.held.is_empty());
        assert!(p.is_empty());
        let mut stamp = Vec::new();
        stamp::encode(&[122, 251], &mut stamp);
        assert_eq!(p.stamp, stamp);
        // Only what was scored since.
        p.consumed(0, 130);
        assert_eq!(f.flush(&mut p), vec![(0, 131)]);
        assert!(f.flush(&mut p).is_empty());
        // The position never goes back; a topic beyond it is held but not stamped.
        p.consumed(1, 10);
        p.consumed(7, 3);
        assert_eq!(p.position, vec![131, 251]);
        assert_eq!(f.flush(&mut p), vec![(1, 11), (7, 4)]);
    }

    #[test]
    fn is_empty_until_a_change_an_offset_or_a_legacy_id() {
        let mut f = Fixture::new();
        let mut p = pending();
        assert!(p.is_empty());
        p.touch(1);
        assert!(!p.is_empty());
        f.flush(&mut p);
        assert!(p.is_empty());
        p.consumed(0, 1);
        assert!(!p.is_empty());
        f.flush(&mut p);
        assert!(p.is_empty());
        assert!(!Pending::new(vec![0], vec!["x".into()], EVERY, 10).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_changelog_is_due_after_the_interval_or_at_max_pending() {
        let mut f = Fixture::new();
        let mut p = Pending::new(vec![0], Vec::new(), EVERY, 3);
        let t0 = Instant::now();
        assert_eq!(p.deadline(), t0 + EVERY);
        assert!(!p.due());
        tokio::time::advance(EVERY - Duration::from_millis(1)).await;
        assert!(!p.due());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            p.due(),
            "due once the interval has passed, even with nothing pending"
        );
        f.flush(&mut p);
        assert!(!p.due(), "a flush restarts the interval");
        assert_eq!(p.deadline(), t0 + 2 * EVERY);
        p.touch(1);
        p.touch(2);
        assert!(!p.due());
        p.touch(2);
        assert!(!p.due(), "a key touched twice counts once");
        p.touch(3);
        assert!(p.due(), "max_pending changed profiles");
        // Exactly-once: an interval of zero, due with every batch.
        let p = Pending::new(vec![0], Vec::new(), Duration::ZERO, 3);
        assert!(p.due());
    }

    #[tokio::test(start_paused = true)]
    async fn wait_wakes_at_the_deadline_only_while_something_is_pending() {
        let (tx, mut rx) = mpsc::channel::<u32>(4);
        let mut p = pending();
        let t0 = Instant::now();
        // Nothing pending: waits for a batch however long it takes.
        let idle = tokio::time::timeout(10 * EVERY, p.wait(&mut rx)).await;
        assert!(idle.is_err());
        tx.send(7).await.expect("open");
        assert_eq!(p.wait(&mut rx).await, Wake::Batch(7));
        // Something pending: wakes at the flush deadline with no batch.
        p.touch(1);
        assert_eq!(p.wait(&mut rx).await, Wake::Due);
        assert_eq!(
            Instant::now(),
            t0 + 10 * EVERY,
            "the deadline was already past"
        );
        let mut f = Fixture::new();
        f.flush(&mut p);
        p.consumed(0, 5);
        let t1 = Instant::now();
        assert_eq!(p.wait(&mut rx).await, Wake::Due);
        assert_eq!(Instant::now(), t1 + EVERY);
        // A batch before the deadline is taken at once.
        f.flush(&mut p);
        p.touch(2);
        tx.send(8).await.expect("open");
        let t2 = Instant::now();
        assert_eq!(p.wait(&mut rx).await, Wake::Batch(8));
        assert_eq!(Instant::now(), t2);
        // Closed: pending or not.
        drop(tx);
        assert_eq!(p.wait(&mut rx).await, Wake::Closed);
        f.flush(&mut p);
        assert_eq!(p.wait(&mut rx).await, Wake::Closed);
    }
}
