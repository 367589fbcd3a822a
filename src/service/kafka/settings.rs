//! `[kafka]`: the section of the Kafka service, its defaults and its rules.

use serde::{Deserialize, Serialize};

use crate::engine::validate::{invalid, Checked};

/// How outputs and consumed offsets are tied together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// An input offset is stored only after every output of its event (and the changelog of
    /// its batch) is acknowledged. A crash replays the uncommitted tail; deterministic ids make
    /// the repeats harmless downstream.
    AtLeastOnce,
    /// Outputs, changelog and offsets are committed in one Kafka transaction per batch.
    /// Downstream consumers must read with `isolation.level=read_committed`.
    ExactlyOnce,
}

/// `[kafka]`: the `run` service's brokers, topics and delivery. Not reloadable: a change needs
/// a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Consumer group shared by all instances.
    pub group_id: String,
    /// Stable name of this instance (defaults to the host name when empty). It makes the
    /// `transactional.id` and the client id stable and, with `static_membership`, names the
    /// consumer's static group membership.
    pub instance_id: String,
    /// With an explicit `instance_id`, join the group as a static member
    /// (`group.instance.id` = `instance_id`): a restarted instance gets its partitions back
    /// at once instead of waiting for a rebalance that waits for its dead predecessor. The
    /// cost: on shutdown a static member does not leave, so its partitions move to another
    /// instance only after `session.timeout.ms`. Off by default: tansu 0.6 never expires a
    /// dead static member, and repeated kills left its group without any assignment.
    pub static_membership: bool,
    /// Input topics, keyed by `user_id`.
    pub input_topics: Vec<String>,
    /// Alerts for every non-`allow` decision.
    pub alerts_topic: String,
    /// `freeze_account` / `require_step_up` commands.
    pub commands_topic: String,
    /// Dead letters: invalid input, with the error and its source position.
    pub dlq_topic: String,
    /// One decision per valid event; empty = not written.
    pub decisions_topic: String,
    /// Compacted changelog of profiles, co-partitioned with the input.
    pub changelog_topic: String,
    /// Compacted topic of allow and block list entries (contract v2); a confirmed fraud's
    /// blocks are published here. Created compacted by `create_topics`.
    pub lists_topic: String,
    /// Where alerts go that a subscription's webhook could not deliver in `max_attempts`, with
    /// the last error and HTTP status. Needed (checked, created) only with a webhook.
    pub undelivered_topic: String,
    /// How long startup waits for the whole lists topic to be read before scoring begins
    /// (the reader goes on after it either way).
    pub lists_load_timeout_ms: u64,
    /// `min.compaction.lag.ms` of a changelog created by `create_topics`: how long older
    /// versions of a profile survive compaction. A restart after a crash restores profiles as
    /// of the committed offsets, which needs the versions written just before them, so this
    /// bounds how long a crashed instance may stay down and still repeat its decisions exactly.
    pub changelog_min_compaction_lag_ms: u64,
    /// At-least-once: changed profiles are collected for this long (ms) and written once, only
    /// their latest version, before the offsets of those events are stored. 0 = after every
    /// batch. Exactly-once always writes per batch, inside the batch's transaction.
    pub changelog_flush_ms: u64,
    /// At-least-once: write the changelog early once this many changed profiles are pending.
    pub changelog_max_pending: usize,
    /// `at_least_once` (default) or `exactly_once`.
    pub delivery: Delivery,
    /// Transactional id for `exactly_once`; empty = `walletguard-<group_id>-<instance_id>`.
    pub transactional_id: String,
    /// Most events a partition task scores before producing and acknowledging them.
    pub max_batch: usize,
    /// Batches a partition may have queued or in flight: the bound that creates back-pressure.
    pub queue_batches: usize,
    /// Offsets are committed (or, exactly-once, transactions committed) at this interval.
    pub commit_interval_ms: u64,
    /// Give up (and exit non-zero) when restoring one partition's profiles takes longer.
    pub restore_timeout_s: u64,
    /// A partition assigned to this instance from which nothing was fetched for this long
    /// while records wait (or that has no task) is reported (`/readyz`,
    /// `walletguard_unfetched_partitions`) and restarted from its committed offset.
    pub unfetched_after_s: u64,
    /// On start, create missing topics (inputs, outputs, subscriptions, the compacted
    /// changelog with the input's partition count). Off: missing topics are an error.
    pub create_topics: bool,
    /// Partitions of topics created by `create_topics` when the input does not exist yet.
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication_factor: i32,
    /// On SIGTERM/SIGINT: most seconds to drain, flush and commit before exiting.
    pub shutdown_timeout_s: u64,
    /// librdkafka properties for every client (consumer, producer, restore reader), passed
    /// through unchanged: TLS, SASL, timeouts, compression. Keys may use `_` for `.` so that
    /// environment overrides work (`WALLETGUARD_KAFKA__LIBRDKAFKA__SECURITY_PROTOCOL=ssl`).
    pub librdkafka: std::collections::BTreeMap<String, String>,
    /// librdkafka properties for the consumer only.
    pub consumer: std::collections::BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    pub producer: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "walletguard".into(),
            instance_id: String::new(),
            static_membership: false,
            input_topics: vec!["wallet.events".into()],
            alerts_topic: "wallet.alerts".into(),
            commands_topic: "wallet.commands".into(),
            dlq_topic: "wallet.events.dlq".into(),
            decisions_topic: String::new(),
            changelog_topic: "walletguard.profiles".into(),
            lists_topic: "walletguard.lists".into(),
            undelivered_topic: "walletguard.alerts.undelivered".into(),
            lists_load_timeout_ms: 30_000,
            changelog_min_compaction_lag_ms: 3_600_000,
            changelog_flush_ms: 1000,
            changelog_max_pending: 100_000,
            delivery: Delivery::AtLeastOnce,
            transactional_id: String::new(),
            max_batch: 2000,
            queue_batches: 16,
            commit_interval_ms: 1000,
            restore_timeout_s: 300,
            unfetched_after_s: 20,
            create_topics: false,
            partitions: 12,
            replication_factor: 1,
            shutdown_timeout_s: 30,
            librdkafka: Default::default(),
            // Fetch in pieces of at least 64 KiB, waiting at most 10 ms for them: with
            // fetch.min.bytes=1 the broker answers a stream of tiny fetches, which on tansu cut
            // throughput from 257k to 172k events/s and raised p50 latency from 1.2 to 14 ms.
            consumer: [
                ("fetch.min.bytes".to_string(), "65536".to_string()),
                ("fetch.wait.max.ms".to_string(), "10".to_string()),
                // A dead member is noticed within 10 s instead of librdkafka's 45 s, and a
                // rebalance waits at most 60 s (not 5 minutes) for members that do not rejoin.
                ("session.timeout.ms".to_string(), "10000".to_string()),
                ("heartbeat.interval.ms".to_string(), "1000".to_string()),
                ("max.poll.interval.ms".to_string(), "60000".to_string()),
            ]
            .into(),
            producer: [
                ("compression.type".to_string(), "lz4".to_string()),
                ("linger.ms".to_string(), "1".to_string()),
            ]
            .into(),
        }
    }
}

impl KafkaConfig {
    /// Checks the rules of `[kafka]`; the error names the key.
    pub fn validate(&self) -> Checked {
        for (key, v) in [
            ("kafka.brokers", &self.brokers),
            ("kafka.group_id", &self.group_id),
            ("kafka.alerts_topic", &self.alerts_topic),
            ("kafka.commands_topic", &self.commands_topic),
            ("kafka.dlq_topic", &self.dlq_topic),
            ("kafka.changelog_topic", &self.changelog_topic),
            ("kafka.lists_topic", &self.lists_topic),
            ("kafka.undelivered_topic", &self.undelivered_topic),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if self.input_topics.is_empty() || self.input_topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.input_topics",
                "needs at least one topic, none empty",
            ));
        }
        let outputs = [
            &self.alerts_topic,
            &self.commands_topic,
            &self.dlq_topic,
            &self.decisions_topic,
            &self.changelog_topic,
            &self.lists_topic,
            &self.undelivered_topic,
        ];
        if let Some(t) = self.input_topics.iter().find(|t| outputs.contains(t)) {
            return Err(invalid(
                "kafka.input_topics",
                format!("`{t}` is also an output topic; that would feed outputs back as input"),
            ));
        }
        if self.max_batch == 0 || self.max_batch > 1_000_000 {
            return Err(invalid("kafka.max_batch", "must be within 1..=1000000"));
        }
        if self.queue_batches == 0 || self.queue_batches > 1024 {
            return Err(invalid("kafka.queue_batches", "must be within 1..=1024"));
        }
        if self.changelog_flush_ms > 60_000 {
            return Err(invalid(
                "kafka.changelog_flush_ms",
                "must be at most 60000 (offsets wait for the changelog)",
            ));
        }
        if self.changelog_max_pending == 0 {
            return Err(invalid("kafka.changelog_max_pending", "must be at least 1"));
        }
        if self.commit_interval_ms == 0 {
            return Err(invalid("kafka.commit_interval_ms", "must be at least 1"));
        }
        if self.restore_timeout_s == 0 {
            return Err(invalid("kafka.restore_timeout_s", "must be at least 1"));
        }
        if self.unfetched_after_s == 0 {
            return Err(invalid("kafka.unfetched_after_s", "must be at least 1"));
        }
        if self.partitions < 1 {
            return Err(invalid("kafka.partitions", "must be at least 1"));
        }
        if self.replication_factor < 1 {
            return Err(invalid("kafka.replication_factor", "must be at least 1"));
        }
        if self.shutdown_timeout_s == 0 {
            return Err(invalid("kafka.shutdown_timeout_s", "must be at least 1"));
        }
        for (table, map) in [
            ("kafka.librdkafka", &self.librdkafka),
            ("kafka.consumer", &self.consumer),
            ("kafka.producer", &self.producer),
        ] {
            for key in map.keys() {
                // These are set by walletguard itself; letting them through would silently
                // break the delivery guarantee.
                let norm = key.replace('_', ".");
                if matches!(
                    norm.as_str(),
                    "enable.auto.offset.store"
                        | "transactional.id"
                        | "group.id"
                        | "bootstrap.servers"
                        | "isolation.level"
                        | "enable.idempotence"
                ) {
                    return Err(invalid(
                        &format!("{table}.{key}"),
                        "is set by walletguard (use the [kafka] keys for brokers, group and delivery)",
                    ));
                }
            }
        }
        Ok(())
    }
}
