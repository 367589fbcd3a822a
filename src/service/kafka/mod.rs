//! The Kafka edge: `walletguard run` as a consumer-group service around the pure pipeline.
//!
//! The service's modules depend on each other in one direction only:
//! `consumer → {partition, repair} → {session, batch, records, produce, pending, acks}`; none
//! of the latter imports `consumer` or `partition`.
//!
//! - [`consumer`]: the session: one consumer thread (poll, dispatch, rebalance, offset store
//!   or transaction commit) that spawns one tokio task per assigned partition; [`run`].
//! - [`partition`]: a partition task: restore that partition's profiles, then score batches in
//!   order and produce their outputs and changelog.
//! - [`session`]: what the consumer thread and the partition tasks share: config, engine,
//!   producer, acknowledged offsets, exactly-once bookkeeping, the fatal error.
//! - [`batch`]: the consumed messages of one partition, as the consumer thread hands them on.
//! - [`records`]: turns outcomes into keyed records with headers and routes subscriptions
//!   (pure: no producing).
//! - [`produce`]: produces records with retry on a full queue and awaits their deliveries.
//! - [`pending`]: a partition's changelog bookkeeping: changed profiles not yet written, the
//!   input offsets that wait for them, and when the write is due.
//! - [`acks`]: at-least-once, acknowledges a partition's outputs, then its changelog write,
//!   then reports the offsets behind it, in order.
//! - [`restore`]: reads a changelog partition back into a [`crate::State`].
//! - [`repair`]: the pure rules by which the consumer thread keeps its tasks equal to the
//!   client's assignment (release, adopt, restart what is not fetched).
//! - [`start_guard`]: makes a partition start exactly at its assigned offset, even on a broker
//!   that answers a fetch from inside a batch with the next one.
//! - [`topics`]: checks (or creates) the topics and their partition counts on start.
//! - [`settings`]: `[kafka]`, its defaults and its rules.
//!
//! The Kafka command-line tools (`loadgen`, `mock`, `tail`) live in [`crate::tools`].
//!
//! Delivery modes are one enum, [`crate::service::kafka::Delivery`]: at-least-once stores a message's
//! offset only after every output of its batch is acknowledged; exactly-once commits outputs,
//! changelog and offsets in one transaction per commit interval.

pub mod acks;
pub mod batch;
pub mod consumer;
pub mod lists_topic;
pub mod partition;
pub mod pending;
pub mod produce;
pub mod records;
pub mod repair;
pub mod restore;
pub mod session;
pub mod settings;
pub mod stamp;
pub mod start_guard;
pub mod topics;

use rdkafka::config::ClientConfig;

pub use settings::{Delivery, KafkaConfig};

pub use consumer::{run, RunOptions, RunSummary};

/// Errors of the Kafka service, classified so the caller knows whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A client could not be created or configured (bad librdkafka property, unreachable
    /// bootstrap servers at creation).
    #[error("kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    /// A topic is missing or its partition count does not fit.
    #[error("topic {topic}: {msg}")]
    Topic {
        /// The topic.
        topic: String,
        /// What is wrong.
        msg: String,
    },
    /// Restoring a partition's profiles failed or took too long.
    #[error("restoring changelog partition {partition}: {msg}")]
    Restore {
        /// The partition.
        partition: i32,
        /// What went wrong.
        msg: String,
    },
    /// A transaction failed in a way that cannot be recovered by aborting (fenced by a newer
    /// instance with the same transactional id, or a fatal producer error).
    #[error("fatal transaction error: {0}")]
    FatalTransaction(String),
    /// The metrics registry rejected a metric (a programming error).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Shutdown did not finish within `kafka.shutdown_timeout_s`.
    #[error("shutdown did not finish within {0} s")]
    ShutdownTimeout(u64),
    /// A thread of the service panicked or could not be started.
    #[error("internal: {0}")]
    Internal(String),
}

/// The client context of the group-less readers (changelog restore, lists): the end of a
/// partition is how they know they have read everything, which is normal, so it is logged at
/// debug, never at ERROR (an operator alerts on ERROR). librdkafka's own log lines keep their
/// levels; every other client error is a warning.
pub(crate) struct ReaderContext {
    /// Names the reader in its log lines.
    pub reader: &'static str,
}

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // librdkafka reports the end both per partition and, from the error callback, as a
        // global error code.
        if is_partition_eof(&error) {
            tracing::debug!(reader = self.reader, "{reason}");
        } else {
            tracing::warn!(reader = self.reader, error = %error, reason, "client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// Whether a client error only says a partition's end was reached.
pub(crate) fn is_partition_eof(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::KafkaError as E;
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(error, E::PartitionEOF(_) | E::Global(C::PartitionEOF))
}

/// Assigns `consumer` to every partition of `topic` from the beginning (group-less readers:
/// `consume`, the lists reader). Returns the partition count; a topic without partitions is
/// an error whose text ends with `missing`.
pub(crate) fn assign_all_from_beginning<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    missing: &str,
) -> Result<usize, KafkaError> {
    use rdkafka::consumer::Consumer;
    let md = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .map_err(KafkaError::Client)?;
    let parts = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if parts == 0 {
        return Err(KafkaError::Topic {
            topic: topic.into(),
            msg: missing.into(),
        });
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .map_err(KafkaError::Client)?;
    }
    consumer.assign(&tpl).map_err(KafkaError::Client)?;
    Ok(parts)
}

/// Which client a configuration is for; each gets the shared passthrough table plus its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The group consumer of the input topics.
    Consumer,
    /// The producer of outputs and changelog.
    Producer,
    /// The group-less reader that restores a changelog partition.
    Restore,
    /// Admin and metadata.
    Admin,
}

/// A librdkafka passthrough key as written in config: `_` may stand for `.` (for environment
/// overrides), but only in keys that have no `.` at all.
fn passthrough_key(k: &str) -> String {
    if k.contains('.') {
        k.to_owned()
    } else {
        k.replace('_', ".")
    }
}

/// Builds the librdkafka configuration of one client from `[kafka]`.
pub fn client_config(k: &KafkaConfig, role: Role) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    c.set("client.id", format!("walletguard-{}", instance_id(k)));
    for (key, v) in &k.librdkafka {
        c.set(passthrough_key(key), v);
    }
    let eos = k.delivery == Delivery::ExactlyOnce;
    match role {
        Role::Consumer => {
            c.set("group.id", &k.group_id);
            if k.static_membership && !k.instance_id.is_empty() {
                c.set("group.instance.id", &k.instance_id);
            }
            c.set("enable.partition.eof", "false");
            c.set("auto.offset.reset", "earliest");
            // Offsets are stored by walletguard once a message's outputs are acknowledged, and
            // committed by its consumer thread every commit interval (at-least-once), never by
            // librdkafka's own timer: after a stall of the process the commit must wait until
            // the assignment is known to be still this instance's. Exactly-once commits
            // offsets inside the transaction instead.
            c.set("enable.auto.offset.store", "false");
            c.set("enable.auto.commit", "false");
            c.set(
                "statistics.interval.ms",
                session::STATS_INTERVAL.as_millis().to_string(),
            );
            // Cooperative rebalancing moves only the partitions that change owner, so the
            // others keep their in-memory profiles. With several input topics, partition p of
            // each must land on the same instance (they share changelog partition p), which
            // only the range assignor guarantees.
            c.set(
                "partition.assignment.strategy",
                if k.input_topics.len() > 1 {
                    "range"
                } else {
                    "cooperative-sticky"
                },
            );
            if eos {
                c.set("isolation.level", "read_committed");
            }
            for (key, v) in &k.consumer {
                c.set(passthrough_key(key), v);
            }
        }
        Role::Producer => {
            c.set("enable.idempotence", "true");
            c.set("acks", "all");
            if eos {
                c.set("transactional.id", transactional_id(k));
            }
            for (key, v) in &k.producer {
                c.set(passthrough_key(key), v);
            }
        }
        Role::Restore => {
            // librdkafka needs a group id to assign partitions. The reader assigns and never
            // subscribes, so it does not join the group, and it never commits.
            c.set("group.id", k.group_id.as_str());
            c.set("enable.auto.commit", "false");
            c.set("enable.partition.eof", "true");
            c.set("auto.offset.reset", "earliest");
            c.set("fetch.max.bytes", "104857600");
            c.set("max.partition.fetch.bytes", "104857600");
            c.set("queued.max.messages.kbytes", "262144");
            if eos {
                c.set("isolation.level", "read_committed");
            }
            for (key, v) in &k.consumer {
                c.set(passthrough_key(key), v);
            }
        }
        Role::Admin => {}
    }
    c
}

/// The instance id: `kafka.instance_id`, else the host name, else `walletguard`.
pub fn instance_id(k: &KafkaConfig) -> String {
    if !k.instance_id.is_empty() {
        return k.instance_id.clone();
    }
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "walletguard".into())
}

/// The transactional id: `kafka.transactional_id`, else stable per group and instance, so a
/// restarted instance fences its predecessor instead of colliding with another instance.
pub fn transactional_id(k: &KafkaConfig) -> String {
    if k.transactional_id.is_empty() {
        format!("walletguard-{}-{}", k.group_id, instance_id(k))
    } else {
        k.transactional_id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::Config;

    #[test]
    fn passthrough_keys_and_roles() {
        let mut cfg = Config::default();
        cfg.kafka
            .librdkafka
            .insert("security_protocol".into(), "ssl".into());
        cfg.kafka
            .librdkafka
            .insert("ssl.ca.location".into(), "/ca.pem".into());
        cfg.kafka.instance_id = "i1".into();
        let c = client_config(&cfg.kafka, Role::Consumer);
        assert_eq!(c.get("security.protocol"), Some("ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(
            c.get("enable.auto.commit"),
            Some("false"),
            "the consumer thread commits, not librdkafka's timer"
        );
        assert_eq!(c.get("isolation.level"), None);
        assert_eq!(
            c.get("group.instance.id"),
            None,
            "static membership is opt-in"
        );
        cfg.kafka.static_membership = true;
        assert_eq!(
            client_config(&cfg.kafka, Role::Consumer).get("group.instance.id"),
            Some("i1")
        );
        let p = client_config(&cfg.kafka, Role::Producer);
        assert_eq!(p.get("transactional.id"), None);
        assert_eq!(p.get("linger.ms"), Some("1"));
        cfg.kafka.delivery = Delivery::ExactlyOnce;
        let c = client_config(&cfg.kafka, Role::Consumer);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        let p = client_config(&cfg.kafka, Role::Producer);
        assert_eq!(
            p.get("transactional.id"),
            Some("walletguard-walletguard-i1")
        );
    }
}
