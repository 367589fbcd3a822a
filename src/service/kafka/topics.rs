//! Startup check of the topics a session reads and writes: they exist, the inputs agree on a
//! partition count, and the changelog has exactly that many partitions (co-partitioning: the
//! profiles of input partition `p` live in changelog partition `p`). With
//! `kafka.create_topics`, missing topics are created first, the changelog compacted.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::service::config::Config;

use super::{client_config, KafkaError, Role};

/// Partition counts of the topics that exist, by name.
fn partition_counts(cfg: &Config) -> Result<BTreeMap<String, i32>, KafkaError> {
    let probe: BaseConsumer = client_config(&cfg.kafka, Role::Admin)
        .create()
        .map_err(KafkaError::Client)?;
    let md = probe
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(KafkaError::Client)?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect())
}

/// Every output topic of the config except the changelog.
fn output_topics(cfg: &Config) -> Vec<String> {
    let k = &cfg.kafka;
    let mut v = vec![
        k.alerts_topic.clone(),
        k.commands_topic.clone(),
        k.dlq_topic.clone(),
    ];
    if !k.decisions_topic.is_empty() {
        v.push(k.decisions_topic.clone());
    }
    if !cfg.shadow.decisions_topic.is_empty() {
        v.push(cfg.shadow.decisions_topic.clone());
    }
    for s in &cfg.subscriptions {
        v.push(s.topic.clone());
    }
    if cfg.subscriptions.iter().any(|s| s.webhook.is_some()) {
        v.push(k.undelivered_topic.clone());
    }
    v.sort();
    v.dedup();
    v
}

/// Checks the topics (creating missing ones first when `kafka.create_topics` is set) and
/// returns the input partition count.
pub async fn ensure(cfg: &Config) -> Result<i32, KafkaError> {
    let mut counts = partition_counts(cfg)?;
    let k = &cfg.kafka;
    if k.create_topics {
        let input_parts = k
            .input_topics
            .iter()
            .find_map(|t| counts.get(t).copied())
            .unwrap_or(k.partitions);
        let mut wanted: Vec<(String, i32, bool)> = Vec::new();
        for t in &k.input_topics {
            wanted.push((t.clone(), input_parts, false));
        }
        for t in output_topics(cfg) {
            wanted.push((t, k.partitions, false));
        }
        wanted.push((k.changelog_topic.clone(), input_parts, true));
        wanted.push((k.lists_topic.clone(), k.partitions, true));
        let missing: Vec<&(String, i32, bool)> = wanted
            .iter()
            .filter(|(t, _, _)| !counts.contains_key(t))
            .collect();
        if !missing.is_empty() {
            create(cfg, &missing).await?;
            counts = partition_counts(cfg)?;
        }
    }
    let mut input_parts: Option<(String, i32)> = None;
    for t in &k.input_topics {
        let n = *counts.get(t).ok_or_else(|| KafkaError::Topic {
            topic: t.clone(),
            msg: "input topic does not exist (create it, or set kafka.create_topics = true)".into(),
        })?;
        if let Some((first, m)) = &input_parts {
            if *m != n {
                return Err(KafkaError::Topic {
                    topic: t.clone(),
                    msg: format!("has {n} partitions but {first} has {m}; inputs must agree"),
                });
            }
        } else {
            input_parts = Some((t.clone(), n));
        }
    }
    let n = input_parts.map(|(_, n)| n).unwrap_or(0);
    match counts.get(&k.changelog_topic) {
        None => {
            return Err(KafkaError::Topic {
                topic: k.changelog_topic.clone(),
                msg: format!(
                    "changelog topic does not exist; create it compacted \
                     (cleanup.policy=compact) with {n} partitions, like the input"
                ),
            })
        }
        Some(c) if *c != n => {
            return Err(KafkaError::Topic {
                topic: k.changelog_topic.clone(),
                msg: format!(
                    "has {c} partitions but the input has {n}; they must be equal \
                     (profiles of input partition p live in changelog partition p)"
                ),
            })
        }
        Some(_) => {}
    }
    for t in output_topics(cfg)
        .into_iter()
        .chain([k.lists_topic.clone()])
    {
        if !counts.contains_key(&t) {
            return Err(KafkaError::Topic {
                topic: t,
                msg: "output topic does not exist (create it, or set kafka.create_topics = true)"
                    .into(),
            });
        }
    }
    Ok(n)
}

async fn create(cfg: &Config, missing: &[&(String, i32, bool)]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(&cfg.kafka, Role::Admin)
        .create()
        .map_err(KafkaError::Client)?;
    let lag = cfg.kafka.changelog_min_compaction_lag_ms.to_string();
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(name, parts, compact)| {
            let t = NewTopic::new(
                name,
                *parts,
                TopicReplication::Fixed(cfg.kafka.replication_factor),
            );
            if *compact {
                t.set("cleanup.policy", "compact")
                    .set("min.compaction.lag.ms", &lag)
            } else {
                t
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(KafkaError::Client)?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((name, code)) => {
                if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                    return Err(KafkaError::Topic {
                        topic: name,
                        msg: format!("cannot create: {code}"),
                    });
                }
            }
        }
    }
    Ok(())
}
