//! What the Kafka benchmarks share: environment knobs, the broker (embedded or external) and
//! its topics, and the check that a preloaded topic is still all there.

#![allow(dead_code)]

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use walletguard::service::config::Config;
use walletguard::service::kafka::{client_config, Role};

/// `k` parsed from the environment, else `d`.
pub fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// The broker under test: `WG_E2E_BROKERS=host:port` (e.g. tansu), else an embedded
/// `MockCluster` of `mock_brokers` brokers.
pub struct Brokers {
    /// The embedded cluster, when there is no external broker.
    pub mock: Option<MockCluster<'static, DefaultProducerContext>>,
    /// Bootstrap servers.
    pub addr: String,
}

impl Brokers {
    /// Opens the broker under test.
    pub fn open(mock_brokers: i32) -> Brokers {
        match std::env::var("WG_E2E_BROKERS") {
            Ok(addr) => Brokers { mock: None, addr },
            Err(_) => {
                let m = MockCluster::new(mock_brokers).expect("mock cluster");
                let addr = m.bootstrap_servers();
                Brokers {
                    mock: Some(m),
                    addr,
                }
            }
        }
    }

    /// Creates the input, changelog, output and subscription topics of `cfg` with
    /// `kafka.partitions`
    /// (MockCluster has no CreateTopics; an external broker gets them from `topics::ensure`).
    pub fn create_topics(&self, rt: &tokio::runtime::Runtime, cfg: &mut Config) {
        match &self.mock {
            Some(m) => {
                let k = &cfg.kafka;
                let hooks = cfg.subscriptions.iter().any(|s| s.webhook.is_some());
                let subs = cfg.subscriptions.iter().map(|s| &s.topic);
                for t in k
                    .input_topics
                    .iter()
                    .chain([
                        &k.changelog_topic,
                        &k.lists_topic,
                        &k.alerts_topic,
                        &k.commands_topic,
                        &k.dlq_topic,
                        &k.decisions_topic,
                    ])
                    .chain(subs)
                    .chain(hooks.then_some(&k.undelivered_topic))
                {
                    if t.is_empty() {
                        continue;
                    }
                    m.create_topic(t, k.partitions, 1).expect("topic");
                }
            }
            None => {
                cfg.kafka.create_topics = true;
                rt.block_on(walletguard::service::kafka::topics::ensure(cfg))
                    .expect("create topics");
            }
        }
    }
}

/// Panics when the broker dropped the start of a partition of `topic` (MockCluster keeps only
/// the newest 5 MiB of each), so a benchmark never measures a partial load; notes when the
/// high watermarks add up to less than `delivered` (tansu 0.6 answers latest-offset queries
/// below the real end).
pub fn assert_all_kept(cfg: &Config, topic: &str, delivered: u64) {
    let probe: BaseConsumer = client_config(&cfg.kafka, Role::Admin)
        .create()
        .expect("client");
    let mut kept = 0i64;
    for p in 0..cfg.kafka.partitions {
        let (lo, hi) = probe
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!(
            lo, 0,
            "the broker dropped the start of partition {p} of {topic}: load less or use more partitions"
        );
        kept += hi - lo;
    }
    if kept as u64 != delivered {
        eprintln!(
            "note: the high watermarks of {topic} add up to {kept}, not the {delivered} delivered"
        );
    }
}
