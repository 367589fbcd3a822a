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

use crate::baseline::{codec, keys, BuildIdentity, Params};
use crate::config::Config;
use crate::pipeline::State;

use super::stamp::{self, Position, Standing};
use super::{client_config, KafkaError, Role};

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
    cfg: &Config,
    params: &Params,
    partition: i32,
    start: &[i64],
    state: &mut State,
) -> Result<Restored, KafkaError> {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(cfg.kafka.restore_timeout_s);
    let topic = cfg.kafka.changelog_topic.as_str();
    let consumer: BaseConsumer = client_config(cfg, Role::Restore)
        .create()
        .map_err(KafkaError::Client)?;
    let wm_timeout = Duration::from_secs(10);
    let position = Position(start.to_vec());
    let (low, mut high) = consumer
        .fetch_watermarks(topic, partition, wm_timeout)
        .map_err(|e| err(partition, format!("watermarks: {e}")))?;
    let mut out = Restored {
        start: start.to_vec(),
        ahead: 0,
        records: 0,
        bad_records: 0,
        tombstones: 0,
        legacy: Vec::new(),
        elapsed: Duration::ZERO,
    };
    // Per user, the legacy id of the record applied, if it was keyed by id.
    let mut legacy: HashMap<u64, Box<str>, BuildIdentity> = HashMap::default();
    // Per user, the (rank, offset) of the record applied so far.
    let mut best: HashMap<u64, (i64, i64), BuildIdentity> = HashMap::default();
    if high <= low {
        out.elapsed = t0.elapsed();
        return Ok(out);
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
                    cfg.kafka.restore_timeout_s
                ),
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next = m.offset() + 1;
                out.records += 1;
                let Some(key) = m.key() else {
                    out.bad_records += 1;
                    continue;
                };
                let find = |name: &str| {
                    m.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == name)
                            .map(|h| h.value.unwrap_or(b""))
                    })
                };
                // Keyed by the 64-bit user key (this release), or by the user id (older ones).
                let (user, legacy_id, header) = match find(stamp::HEADER_HASHED) {
                    Some(h) => match <[u8; 8]>::try_from(key) {
                        Ok(b) => (u64::from_be_bytes(b), None, Some(h)),
                        Err(_) => {
                            out.bad_records += 1;
                            continue;
                        }
                    },
                    None => match std::str::from_utf8(key) {
                        Ok(id) => (keys::user_key(id), Some(id), find(stamp::HEADER)),
                        Err(_) => {
                            out.bad_records += 1;
                            continue;
                        }
                    },
                };
                let rank = match position.rank(header) {
                    Standing::Covered(r) => r,
                    Standing::Ahead => {
                        out.ahead += 1;
                        continue;
                    }
                    Standing::Malformed => {
                        out.bad_records += 1;
                        continue;
                    }
                };
                if let (Some(id), Some(_)) = (legacy_id, m.payload()) {
                    legacy.insert(user, id.into());
                }
                let pos = (rank, m.offset());
                match best.get(&user) {
                    Some(b) if *b > pos => continue,
                    _ => {
                        best.insert(user, pos);
                    }
                }

                match m.payload() {
                    None => {
                        out.tombstones += 1;
                        state.profiles.remove(user);
                    }
                    Some(v) => match codec::decode(v, params) {
                        Ok(p) => state.profiles.insert(user, p),
                        Err(e) => {
                            out.bad_records += 1;
                            if out.bad_records <= 3 {
                                tracing::warn!(partition, offset = m.offset(), error = %e, "skipping undecodable changelog record");
                            }
                        }
                    },
                }
            }
            Some(Err(RdError::PartitionEOF(_))) => {
                // The end as the fetch saw it. Confirm against a fresh watermark: stop when
                // both agree, or when repeated EOFs at one position say there is nothing more.
                let (_, h) = consumer
                    .fetch_watermarks(topic, partition, wm_timeout)
                    .map_err(|e| err(partition, format!("watermarks: {e}")))?;
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
    out.legacy = legacy.into_values().collect();
    out.legacy.sort_unstable();
    out.elapsed = t0.elapsed();
    Ok(out)
}
