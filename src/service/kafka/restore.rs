//! Restores one partition's profiles from the compacted changelog before the partition's events
//! are scored.
//!
//! It restores each user's profile *as of the input position the partition was assigned to
//! start from*: see [`super::stamp`] for why and how records ahead of it are held back.
//!
//! The reader is a group-less consumer assigned to changelog partition `p` from the beginning.
//! It stops at the partition's end, which it takes from two sources: librdkafka's
//! partition-EOF event, and the high watermark, asked again when the first is reached. Why
//! both: one Kafka-compatible broker (tansu 0.6) was seen answering a latest-offset query below
//! the real end, so the watermark alone could stop a restore early and silently lose profiles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaConfig;
use crate::engine::baseline::population::PopulationError;
use crate::engine::baseline::{keys, BuildIdentity, Params, Population};
use crate::engine::pipeline::State;

use super::stamp::{self, Position, Standing};
use super::{client_config, KafkaError, ReaderContext, Role};

/// What a restore read.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The input position (per input topic, the next offset) the restored profiles reflect and
    /// the partition task starts from.
    pub start: Vec<i64>,
    /// Records ahead of the start position, held back (their events are scored again).
    pub ahead: u64,
    /// Changelog records read.
    pub records: u64,
    /// Records that could not be decoded (skipped, logged).
    pub bad_records: u64,
    /// Tombstones (null values) applied.
    pub tombstones: u64,
    /// User ids of profiles whose applied record was keyed by user id (an older release's
    /// format): the task tombstones those keys and writes the profiles under their 64-bit keys.
    pub legacy: Vec<Box<str>>,
    /// Wall time.
    pub elapsed: Duration,
}

fn err(partition: i32, msg: impl Into<String>) -> KafkaError {
    KafkaError::Restore {
        partition,
        msg: msg.into(),
    }
}

/// Reads changelog partition `partition` into `state` (blocking; run it off the async
/// workers), keeping per user the newest version at or behind `start` (per input topic, the
/// offset the consumer starts from). A null value removes the profile.
pub fn restore(
    cfg: &KafkaConfig,
    params: &Params,
    partition: i32,
    start: &[i64],
    state: &mut State,
) -> Result<Restored, KafkaError> {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(cfg.restore_timeout_s);
    let topic = cfg.changelog_topic.as_str();
    let consumer: BaseConsumer<ReaderContext> = client_config(cfg, Role::Restore)
        .create_with_context(ReaderContext { reader: "restore" })
        .map_err(KafkaError::Client)?;
    let wm_timeout = Duration::from_secs(10);
    let position = Position(start.to_vec());
    let (low, mut high) = watermarks(&consumer, topic, partition, wm_timeout, deadline, cfg)?;
    let mut book = Book::default();
    if high <= low {
        return Ok(book.finish(start, t0.elapsed()));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|e| err(partition, e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| err(partition, format!("assign: {e}")))?;
    let mut next = low; // offset after the last record seen
    let mut eofs_at_same = 0u32;
    loop {
        if Instant::now() > deadline {
            return Err(err(
                partition,
                format!(
                    "not finished after {} s (at offset {next} of {high}); raise kafka.restore_timeout_s",
                    cfg.restore_timeout_s
                ),
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next = m.offset() + 1;
                let find = |name: &str| {
                    m.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == name)
                            .map(|h| h.value.unwrap_or(b""))
                    })
                };
                let rec = ChangelogRecord {
                    offset: m.offset(),
                    key: m.key(),
                    stamp_hashed: find(stamp::HEADER_HASHED),
                    stamp_legacy: find(stamp::HEADER),
                    stamp_population: find(stamp::HEADER_POPULATION),
                    value: m.payload(),
                };
                if let Some(e) = book.apply(&rec, &position, params, state) {
                    if book.counts.bad_records <= 3 {
                        tracing::warn!(partition, offset = m.offset(), error = %e, "skipping a changelog record");
                    }
                }
            }
            Some(Err(RdError::PartitionEOF(_))) => {
                // The end as the fetch saw it. Confirm against a fresh watermark: stop when
                // both agree, or when repeated EOFs at one position say there is nothing more.
                let (_, h) = watermarks(&consumer, topic, partition, wm_timeout, deadline, cfg)?;
                high = high.max(h);
                if next >= high {
                    break;
                }
                eofs_at_same += 1;
                if eofs_at_same >= 3 {
                    // Transaction markers (read_committed) occupy offsets without records, so
                    // the last record can sit below the watermark.
                    break;
                }
            }
            Some(Err(RdError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                return Err(err(partition, "changelog partition does not exist"));
            }
            Some(Err(e)) => {
                tracing::warn!(partition, error = %e, "changelog read error; retrying");
            }
            None => {}
        }
    }
    Ok(book.finish(start, t0.elapsed()))
}

/// The changelog partition's watermarks, asked again (every second) while the broker does
/// not answer, until `deadline`. Why not fail at once: a broker outage or a hung broker
/// during a restore is transient, and an instance that exits on it restores everything again
/// after the orchestrator restarts it; within `kafka.restore_timeout_s` it waits instead.
fn watermarks(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    partition: i32,
    timeout: Duration,
    deadline: Instant,
    cfg: &KafkaConfig,
) -> Result<(i64, i64), KafkaError> {
    let mut tries = 0u32;
    loop {
        match consumer.fetch_watermarks(topic, partition, timeout) {
            Ok(w) => return Ok(w),
            Err(e) if Instant::now() + Duration::from_secs(1) < deadline => {
                tries += 1;
                if tries == 1 || tries % 10 == 0 {
                    tracing::warn!(partition, tries, error = %e, "changelog watermarks unavailable; retrying");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                return Err(err(
                    partition,
                    format!(
                        "watermarks: {e} (still failing after {} s; kafka.restore_timeout_s)",
                        cfg.restore_timeout_s
                    ),
                ))
            }
        }
    }
}

/// One changelog record as read, before it is classified.
#[derive(Debug, Clone, Copy)]
pub struct ChangelogRecord<'a> {
    /// Its offset in the changelog partition.
    pub offset: i64,
    /// Its key: the 8-byte big-endian user key, or (older releases) the user id.
    pub key: Option<&'a [u8]>,
    /// The value of its first [`stamp::HEADER_HASHED`] header (an absent value reads as empty).
    pub stamp_hashed: Option<&'a [u8]>,
    /// The value of its first [`stamp::HEADER`] header.
    pub stamp_legacy: Option<&'a [u8]>,
    /// The value of its first [`stamp::HEADER_POPULATION`] header: the record is the
    /// partition's population.
    pub stamp_population: Option<&'a [u8]>,
    /// Its value: an encoded profile, or `None` for a tombstone.
    pub value: Option<&'a [u8]>,
}

/// Why a changelog record was skipped as bad.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SkipReason {
    /// The record has no key.
    #[error("changelog record without a key")]
    NoKey,
    /// A record with the 64-bit-key stamp whose key is not 8 bytes.
    #[error("changelog record key of {0} bytes with a 64-bit-key stamp")]
    BadHashedKey(usize),
    /// A record keyed by user id (no 64-bit-key stamp) whose key is not UTF-8.
    #[error("changelog record key is neither a 64-bit key nor a UTF-8 user id")]
    BadLegacyKey,
    /// The stamp header is present but not a stamp.
    #[error("changelog record stamp is malformed")]
    BadStamp,
    /// The value does not decode as a profile.
    #[error("changelog record value: {0}")]
    Value(#[from] crate::engine::feedback::record::RecordError),
    /// A population record whose key is not [`stamp::POPULATION_KEY`], or that has no value.
    #[error("population changelog record with a wrong key or no value")]
    BadPopulationRecord,
    /// A population record whose value does not decode.
    #[error("population changelog record value: {0}")]
    Population(#[from] PopulationError),
}

/// Counts of a restore, by what became of each record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records read.
    pub records: u64,
    /// Records ahead of the start position, held back (their events are scored again).
    pub ahead: u64,
    /// Records skipped as bad: no key, a key of the wrong shape, a malformed stamp, or a value
    /// that does not decode.
    pub bad_records: u64,
    /// Tombstones applied.
    pub tombstones: u64,
    /// Profiles applied.
    pub applied: u64,
    /// Good records not applied because a higher-ranked version of the user (or of the
    /// population) was applied before them.
    pub superseded: u64,
    /// Population records applied.
    pub populations: u64,
}

/// The restore's bookkeeping, without I/O: classifies each record and applies, per user, the
/// highest-ranked decodable version at or behind the start position. Pure so that it can be
/// tested and fuzzed without a broker.
#[derive(Default)]
pub struct Book {
    /// Per user, the (rank, offset) of the record applied so far.
    best: HashMap<u64, (i64, i64), BuildIdentity>,
    /// Per user, the legacy id of the record applied, if it was keyed by id.
    legacy: HashMap<u64, Box<str>, BuildIdentity>,
    /// The (rank, offset) of the population record applied so far.
    population: Option<(i64, i64)>,
    /// What became of the records so far.
    pub counts: Counts,
}

impl Book {
    /// Classifies `rec` against the start `position` and applies it to `state` if it is the
    /// best version of its user so far. Returns why it was skipped, if it was bad. Never
    /// panics, whatever the bytes.
    pub fn apply(
        &mut self,
        rec: &ChangelogRecord<'_>,
        position: &Position,
        params: &Params,
        state: &mut State,
    ) -> Option<SkipReason> {
        self.counts.records += 1;
        let c = match classify(rec, position, params) {
            Class::Bad(reason) => {
                self.counts.bad_records += 1;
                return Some(reason);
            }
            Class::Ahead => {
                self.counts.ahead += 1;
                return None;
            }
            Class::Candidate(c) => c,
            Class::Population(rank, pop) => {
                let pos = (rank, rec.offset);
                if self.population.is_some_and(|b| b > pos) {
                    self.counts.superseded += 1;
                } else {
                    self.population = Some(pos);
                    self.counts.populations += 1;
                    state.population = *pop;
                }
                return None;
            }
        };
        // An id-keyed record with a value stays in the compacted topic until its key gets a
        // tombstone, whichever version wins: remember it for migration.
        if let (Some(id), Some(_)) = (c.legacy_id, &c.profile) {
            self.legacy.insert(c.user, id.into());
        }
        let pos = (c.rank, rec.offset);
        if self.best.get(&c.user).is_some_and(|b| *b > pos) {
            self.counts.superseded += 1;
            return None;
        }
        self.best.insert(c.user, pos);
        match c.profile {
            None => {
                self.counts.tombstones += 1;
                state.profiles.remove(c.user);
                state.cases.remove(&c.user);
            }
            Some((p, case)) => {
                self.counts.applied += 1;
                state.profiles.insert(c.user, p);
                // The case travels with the profile: a version without one has none.
                match case {
                    Some(case) => state.cases.insert(c.user, case),
                    None => state.cases.remove(&c.user),
                };
            }
        }
        None
    }

    /// The summary of a restore that started the partition at `start`.
    pub fn finish(self, start: &[i64], elapsed: Duration) -> Restored {
        let mut legacy: Vec<Box<str>> = self.legacy.into_values().collect();
        legacy.sort_unstable();
        Restored {
            start: start.to_vec(),
            ahead: self.counts.ahead,
            records: self.counts.records,
            bad_records: self.counts.bad_records,
            tombstones: self.counts.tombstones,
            legacy,
            elapsed,
        }
    }
}

/// What a changelog record is, against the start position.
// Built and consumed once per record, never stored: boxing the candidate's profile would
// only add an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Class<'a> {
    /// A version of its user at or behind the start, well formed.
    Candidate(Candidate<'a>),
    /// A version of the partition's population at or behind the start, with its rank.
    Population(i64, Box<Population>),
    /// Ahead of the start: its events will be scored again.
    Ahead,
    /// Not usable.
    Bad(SkipReason),
}

/// A usable version of a user's profile.
struct Candidate<'a> {
    user: u64,
    /// The user id, when an older release keyed the record by it.
    legacy_id: Option<&'a str>,
    rank: i64,
    /// The decoded value (profile and feedback case); `None` for a tombstone.
    profile: Option<(
        crate::engine::baseline::Profile,
        Option<crate::engine::feedback::Case>,
    )>,
}

/// Classifies `rec` (no state: [`Book::apply`] does the counting and applying).
fn classify<'a>(rec: &ChangelogRecord<'a>, position: &Position, params: &Params) -> Class<'a> {
    let Some(key) = rec.key else {
        return Class::Bad(SkipReason::NoKey);
    };
    if let Some(h) = rec.stamp_population {
        let (true, Some(v)) = (key == stamp::POPULATION_KEY, rec.value) else {
            return Class::Bad(SkipReason::BadPopulationRecord);
        };
        return match position.rank(Some(h)) {
            Standing::Ahead => Class::Ahead,
            Standing::Malformed => Class::Bad(SkipReason::BadStamp),
            Standing::Covered(r) => match Population::decode(v) {
                Ok(pop) => Class::Population(r, Box::new(pop)),
                Err(e) => Class::Bad(e.into()),
            },
        };
    }
    // Keyed by the 64-bit user key (this release), or by the user id (older ones).
    let (user, legacy_id, header) = match rec.stamp_hashed {
        Some(h) => match <[u8; 8]>::try_from(key) {
            Ok(b) => (u64::from_be_bytes(b), None, Some(h)),
            Err(_) => return Class::Bad(SkipReason::BadHashedKey(key.len())),
        },
        None => match std::str::from_utf8(key) {
            Ok(id) => (keys::user_key(id), Some(id), rec.stamp_legacy),
            Err(_) => return Class::Bad(SkipReason::BadLegacyKey),
        },
    };
    let rank = match position.rank(header) {
        Standing::Covered(r) => r,
        Standing::Ahead => return Class::Ahead,
        Standing::Malformed => return Class::Bad(SkipReason::BadStamp),
    };
    // Decoded before it competes: an undecodable newer version must not hide an older good
    // one (the profile would silently stay at whatever was applied before).
    let profile = match rec
        .value
        .map(|v| crate::engine::feedback::record::decode_record(v, params))
    {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return Class::Bad(e.into()),
    };
    Class::Candidate(Candidate {
        user,
        legacy_id,
        rank,
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::baseline::codec;
    use crate::engine::baseline::Profile;
    use crate::fuzz::XorShift;

    /// A restore of one partition starting at input offset 100.
    struct Fixture {
        params: Params,
        state: State,
        pos: Position,
        book: Book,
    }

    impl Fixture {
        fn new() -> Fixture {
            let cfg = crate::engine::pipeline::EngineConfig::default();
            Fixture {
                params: cfg.params(),
                state: State::new(&cfg.prior),
                pos: Position(vec![100]),
                book: Book::default(),
            }
        }

        fn apply(&mut self, rec: &ChangelogRecord<'_>) -> Option<SkipReason> {
            self.book
                .apply(rec, &self.pos, &self.params, &mut self.state)
        }

        fn last_seen(&self, user: u64) -> Option<u32> {
            self.state.profiles.get(user).map(|p| p.last_seen)
        }
    }

    fn stamp(next: i64) -> Vec<u8> {
        next.to_be_bytes().to_vec()
    }

    /// An encoded profile that names the record it came from.
    fn value(params: &Params, marker: u32) -> Vec<u8> {
        let p = Profile {
            last_seen: marker,
            ..Profile::default()
        };
        let mut out = Vec::new();
        codec::encode(&p, params, &mut out);
        out
    }

    fn hashed<'a>(
        offset: i64,
        key: &'a [u8],
        st: &'a [u8],
        v: Option<&'a [u8]>,
    ) -> ChangelogRecord<'a> {
        ChangelogRecord {
            offset,
            key: Some(key),
            stamp_hashed: Some(st),
            stamp_legacy: None,
            stamp_population: None,
            value: v,
        }
    }

    #[test]
    fn the_best_decodable_version_at_or_behind_the_start_wins() {
        let mut f = Fixture::new();
        let key = 7u64.to_be_bytes();
        let [v10, v50, v200] = [10, 50, 200].map(|m| value(&f.params, m));
        let (s10, s50, s200) = (stamp(10), stamp(50), stamp(200));
        assert_eq!(f.apply(&hashed(0, &key, &s50, Some(&v50))), None);
        // An older version later in the log (a re-sent delivery) does not win.
        assert_eq!(f.apply(&hashed(1, &key, &s10, Some(&v10))), None);
        // A version ahead of the start is held back.
        assert_eq!(f.apply(&hashed(2, &key, &s200, Some(&v200))), None);
        // A newer but undecodable version is bad and hides nothing.
        let mut broken = value(&f.params, 60);
        broken.truncate(40);
        let s60 = stamp(60);
        assert!(matches!(
            f.apply(&hashed(3, &key, &s60, Some(&broken))),
            Some(SkipReason::Value(_))
        ));
        assert_eq!(f.last_seen(7), Some(50));
        let c = f.book.counts;
        assert_eq!(
            (c.records, c.applied, c.superseded, c.ahead, c.bad_records),
            (4, 1, 1, 1, 1)
        );
        // A tombstone at a higher rank removes the profile.
        let s90 = stamp(90);
        f.apply(&hashed(4, &key, &s90, None));
        assert!(f.state.profiles.get(7).is_none());
        assert_eq!(f.book.counts.tombstones, 1);
    }

    #[test]
    fn malformed_keys_and_stamps_are_counted_not_applied() {
        let mut f = Fixture::new();
        let v = value(&f.params, 1);
        let s = stamp(5);
        let cases: [(ChangelogRecord<'_>, SkipReason); 4] = [
            (
                ChangelogRecord {
                    key: None,
                    ..hashed(0, b"", &s, Some(&v))
                },
                SkipReason::NoKey,
            ),
            (
                hashed(1, b"short", &s, Some(&v)),
                SkipReason::BadHashedKey(5),
            ),
            (
                ChangelogRecord {
                    stamp_hashed: None,
                    ..hashed(2, &[0xff, 0xfe, 0x80], &s, Some(&v))
                },
                SkipReason::BadLegacyKey,
            ),
            (
                hashed(3, &[1; 8], b"\x00\x01\x02", Some(&v)),
                SkipReason::BadStamp,
            ),
        ];
        for (rec, want) in cases {
            assert_eq!(f.apply(&rec), Some(want));
        }
        assert_eq!(f.book.counts.bad_records, 4);
        assert!(f.state.profiles.is_empty());
    }

    #[test]
    fn an_id_keyed_record_with_a_value_is_marked_for_migration_even_when_superseded() {
        let mut f = Fixture::new();
        let id = b"user-1";
        let user = keys::user_key("user-1");
        let (v1, v2) = (value(&f.params, 1), value(&f.params, 2));
        let (s1, s2) = (stamp(1), stamp(2));
        // This release's record first, then an older release's, lower-ranked.
        f.apply(&hashed(0, &user.to_be_bytes(), &s2, Some(&v2)));
        f.apply(&ChangelogRecord {
            offset: 1,
            key: Some(id),
            stamp_hashed: None,
            stamp_legacy: Some(&s1),
            stamp_population: None,
            value: Some(&v1),
        });
        assert_eq!(f.last_seen(user), Some(2));
        let r = f.book.finish(&[100], Duration::ZERO);
        assert_eq!(r.legacy, vec![Box::<str>::from("user-1")]);
    }

    fn pop_rec<'a>(offset: i64, st: &'a [u8], v: &'a [u8]) -> ChangelogRecord<'a> {
        ChangelogRecord {
            offset,
            key: Some(stamp::POPULATION_KEY),
            stamp_hashed: None,
            stamp_legacy: None,
            stamp_population: Some(st),
            value: Some(v),
        }
    }

    #[test]
    fn the_best_population_at_or_behind_the_start_wins_and_bad_ones_are_skipped() {
        use crate::engine::baseline::population::PopulationParams;
        let mut f = Fixture::new();
        let pp = PopulationParams {
            learn: true,
            growth: 1.0,
            min_weight: 1.0,
            max_cells: 4,
        };
        let pops: Vec<Vec<u8>> = (1..=3)
            .map(|n| {
                let mut pop = Population::default();
                let s = r#"{"event_id":"e","user_id":"u","ts":1790000000000,"type":"transfer","amount":5,"counterparty":"p"}"#;
                let e = crate::engine::event::parse_event(s.as_bytes()).unwrap();
                for _ in 0..n {
                    pop.observe(&pp, &e, *b"CNY", 4, Some(5f64.ln()));
                }
                let mut out = Vec::new();
                pop.encode(&mut out);
                out
            })
            .collect();
        let (s50, s90, s200) = (stamp(50), stamp(90), stamp(200));
        let (p1, p2, p3) = (&pops[0][..], &pops[1][..], &pops[2][..]);
        assert_eq!(f.apply(&pop_rec(0, &s90, p2)), None);
        assert_eq!(f.apply(&pop_rec(1, &s50, p1)), None, "older: superseded");
        assert_eq!(f.apply(&pop_rec(2, &s200, p3)), None, "ahead: held back");
        assert!(matches!(
            f.apply(&pop_rec(3, &s90, &p3[..10])),
            Some(SkipReason::Population(_))
        ));
        let wrong_key = ChangelogRecord {
            key: Some(b"other"),
            ..pop_rec(4, &s90, p3)
        };
        assert_eq!(f.apply(&wrong_key), Some(SkipReason::BadPopulationRecord));
        let want = Population::decode(p2).unwrap();
        assert_eq!(f.state.population, want, "the version at stamp 90");
        assert_eq!(f.book.counts.populations, 1);
        assert_eq!(f.book.counts.superseded, 1);
        assert_eq!(f.book.counts.ahead, 1);
        assert_eq!(f.book.counts.bad_records, 2);
    }

    /// Random changelog partitions: records of a few users with every key shape, stamp and
    /// value a broken or hostile log could hold (no key, huge keys, non-UTF-8 ids, noise
    /// stamps, garbage, truncated, future-version and bit-flipped values). The restore never
    /// panics, counts every record exactly once, and ends in the state of a model written
    /// from the rules: per user, the highest (stamp rank, offset) among the versions with a
    /// well-formed key and stamp, at or behind the start, that decode (or are tombstones).
    /// 300 partitions (about 60k records) times `WG_FUZZ_SCALE`.
    #[test]
    fn random_changelogs_restore_the_model_and_never_panic() {
        let rounds = 300 * crate::fuzz::scale();
        let cfg = crate::engine::pipeline::EngineConfig::default();
        let params = cfg.params();
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let huge = vec![0xA5u8; 70_000];
        let mut total = 0u64;
        for round in 0..rounds {
            let start = rng.below(1_000) as i64;
            let pos = Position(vec![start]);
            let mut state = State::new(&cfg.prior);
            let mut book = Book::default();
            // Per user: the (rank, offset) and value of the version the model expects to win.
            let mut model: HashMap<u64, ((i64, i64), Option<Profile>)> = HashMap::new();
            let n = 1 + rng.below(400);
            for offset in 0..n as i64 {
                let user = 1 + rng.below(12);
                let st = stamp(rng.below(1_200) as i64 - 1);
                let good = value(&params, ((round as u32) << 12) | (offset as u32 + 1));
                let key8 = user.to_be_bytes();
                let id = format!("user-{user}");
                let noise: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                let kind = rng.below(14);
                let mut val = Some(good.clone());
                let (mut key, mut sh, mut sl): (Option<&[u8]>, _, Option<&[u8]>) =
                    (Some(&key8[..]), Some(&st[..]), None);
                match kind {
                    0 => key = None,
                    1 => key = Some(&huge[..]),
                    2 => key = Some(&noise[..]),
                    3 => sh = Some(&noise[..]),
                    4 => {
                        let mut g = noise.clone();
                        g.insert(0, b'X'); // never the magic
                        val = Some(g);
                    }
                    5 => {
                        let mut f = good.clone();
                        f[2] = 6 + rng.below(250) as u8; // a future format version
                        val = Some(f);
                    }
                    6 => val = Some(good[..rng.below(good.len() as u64) as usize].to_vec()),
                    7 => val = None,
                    8 => {
                        let mut f = good.clone();
                        for _ in 0..1 + rng.below(8) {
                            let i = rng.below(f.len() as u64) as usize;
                            f[i] ^= 1 << rng.below(8);
                        }
                        val = Some(f);
                    }
                    9 => {
                        // An older release's record: keyed by user id.
                        (key, sh, sl) = (Some(id.as_bytes()), None, Some(&st[..]));
                    }
                    10 => (key, sh, sl) = (Some(&noise[..]), None, Some(&st[..])),
                    11 => (key, sh) = (Some(id.as_bytes()), None), // no stamp at all
                    _ => {}
                }
                let rec = ChangelogRecord {
                    offset,
                    key,
                    stamp_hashed: sh,
                    stamp_legacy: sl,
                    stamp_population: None,
                    value: val.as_deref(),
                };
                let before = book.counts;
                let skipped = book.apply(&rec, &pos, &params, &mut state);
                let after = book.counts;
                let moved = (after.ahead - before.ahead)
                    + (after.bad_records - before.bad_records)
                    + (after.tombstones - before.tombstones)
                    + (after.applied - before.applied)
                    + (after.superseded - before.superseded);
                assert_eq!(after.records, before.records + 1);
                assert_eq!(moved, 1, "record {offset} of round {round} counted once");
                assert_eq!(skipped.is_some(), after.bad_records > before.bad_records);

                // The model.
                let Some(k) = key else { continue };
                let (user_key, header) = match sh {
                    Some(h) => match <[u8; 8]>::try_from(k) {
                        Ok(b) => (u64::from_be_bytes(b), Some(h)),
                        Err(_) => continue,
                    },
                    None => match std::str::from_utf8(k) {
                        Ok(id) => (keys::user_key(id), sl),
                        Err(_) => continue,
                    },
                };
                let Standing::Covered(rank) = pos.rank(header) else {
                    continue;
                };
                let profile = match val.as_deref().map(|v| codec::decode(v, &params)) {
                    None => None,
                    Some(Ok(p)) => Some(p),
                    Some(Err(_)) => continue,
                };
                let e = model
                    .entry(user_key)
                    .or_insert(((i64::MIN, i64::MIN), None));
                if (rank, offset) > e.0 {
                    *e = ((rank, offset), profile);
                }
            }
            // Compared as encodings: a bit flip can make a float NaN, which is never == itself.
            let bytes = |p: Option<&Profile>| {
                p.map(|p| {
                    let mut out = Vec::new();
                    codec::encode(p, &params, &mut out);
                    out
                })
            };
            for (user, (_, want)) in &model {
                assert_eq!(
                    bytes(state.profiles.get(*user)),
                    bytes(want.as_ref()),
                    "round {round} user {user}"
                );
            }
            let present = model.values().filter(|(_, p)| p.is_some()).count();
            assert_eq!(
                state.profiles.len(),
                present,
                "round {round}: no profile from nowhere"
            );
            total += n;
        }
        assert!(total > rounds * 100);
        eprintln!("{total} changelog records in {rounds} partitions checked");
    }
}
