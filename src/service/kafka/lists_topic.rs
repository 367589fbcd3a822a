//! The list reader: every instance reads the whole of `kafka.lists_topic` (all partitions,
//! from the beginning, no consumer group), like a Kafka Streams global table, into the
//! process's [`ListsCell`], and keeps following it until shutdown.
//!
//! Startup waits until every partition reached its end once (or `kafka.lists_load_timeout_ms`
//! passed, logged), so the first event after a restart is scored against the lists the
//! previous run had. Expiry is judged by event time ([`ListsCell::clock`]: the newest event
//! this process scored), as every lookup judges it: entries already expired by it when read
//! are not held, and expired entries are purged once a minute; a record that is not a list entry is counted
//! (`walletguard_list_records_total{result="invalid"}`) and skipped, never fatal.
//!
//! Entries published by one partition's feedback are also put in the cell at once by that
//! partition (see [`super::partition`]); reading them back from the topic replaces them with
//! themselves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;

use super::KafkaConfig;
use crate::engine::lists::{ListChange, ListKind, ListName, Lists, ListsCell};
use crate::service::metrics::Metrics;

use super::{client_config, KafkaError, ReaderContext, Role};

/// How often expired entries are purged (wall time).
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Records applied before a new snapshot is published while catching up.
const PUBLISH_EVERY: usize = 5_000;

/// A running reader; dropping it does not stop it, [`Reader::stop`] does.
pub struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    /// Stops the reader and waits for its thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sets the entries-held gauges from `l`.
pub fn export_counts(metrics: &Metrics, l: &Lists) {
    for k in ListKind::ALL {
        for list in [ListName::Block, ListName::Allow] {
            metrics
                .list_entries
                .with_label_values(&[k.as_str(), list_name(list)])
                .set(l.count(k, list) as i64);
        }
    }
}

/// The label of a list.
pub fn list_name(l: ListName) -> &'static str {
    match l {
        ListName::Block => "block",
        ListName::Allow => "allow",
    }
}

/// Starts reading `kafka.lists_topic` into `cell`; returns once every partition reached its
/// end (or the load timeout passed). Fails when the topic cannot be read at all.
pub async fn start(
    cfg: &KafkaConfig,
    cell: Arc<ListsCell>,
    metrics: Arc<Metrics>,
) -> Result<Reader, KafkaError> {
    let cfg = cfg.clone();
    let timeout = Duration::from_millis(cfg.lists_load_timeout_ms);
    let stop = Arc::new(AtomicBool::new(false));
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("wg-lists".into())
        .spawn(move || match assign(&cfg) {
            Ok((consumer, parts)) => follow(consumer, parts, cell, metrics, thread_stop, loaded_tx),
            Err(e) => {
                let _ = loaded_tx.send(Err(e));
            }
        })
        .map_err(|e| KafkaError::Internal(format!("lists thread: {e}")))?;
    let reader = Reader {
        stop,
        thread: Some(thread),
    };
    let started = Instant::now();
    match tokio::time::timeout(timeout, loaded_rx).await {
        Ok(Ok(Ok(n))) => {
            tracing::info!(entries = n, ms = started.elapsed().as_millis() as u64, "lists loaded")
        }
        Ok(Ok(Err(e))) => {
            reader.stop();
            return Err(e);
        }
        _ => tracing::warn!(
            timeout_ms = timeout.as_millis() as u64,
            "lists not loaded in time (kafka.lists_load_timeout_ms); scoring starts, the reader goes on"
        ),
    }
    Ok(reader)
}

type ListsConsumer = BaseConsumer<ReaderContext>;

/// A group-less consumer assigned to every partition of the lists topic from the beginning.
fn assign(cfg: &KafkaConfig) -> Result<(ListsConsumer, usize), KafkaError> {
    let topic = cfg.lists_topic.as_str();
    let consumer: ListsConsumer = client_config(cfg, Role::Restore)
        .set("group.id", format!("{}-lists", cfg.group_id))
        .create_with_context(ReaderContext { reader: "lists" })
        .map_err(KafkaError::Client)?;
    let parts =
        super::assign_all_from_beginning(&consumer, topic, "does not exist (kafka.lists_topic)")?;
    Ok((consumer, parts))
}

fn follow(
    consumer: ListsConsumer,
    parts: usize,
    cell: Arc<ListsCell>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    loaded: tokio::sync::oneshot::Sender<Result<usize, KafkaError>>,
) {
    let mut loaded = Some(loaded);
    let mut at_end = vec![false; parts];
    let mut batch: Vec<(Option<String>, Option<Vec<u8>>)> = Vec::new();
    let mut last_purge = Instant::now();
    let count = |result: &str| {
        metrics.list_records.with_label_values(&[result]).inc();
    };
    while !stop.load(Ordering::SeqCst) {
        let msg = consumer.poll(Duration::from_millis(100));
        let idle = match msg {
            Some(Ok(m)) => {
                batch.push((
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    m.payload().map(<[u8]>::to_vec),
                ));
                batch.len() >= PUBLISH_EVERY
            }
            Some(Err(RdError::PartitionEOF(p))) => {
                if let Some(e) = at_end.get_mut(p as usize) {
                    *e = true;
                }
                true
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "lists topic read error");
                true
            }
            None => true,
        };
        if idle && !batch.is_empty() {
            let now = cell.clock();
            cell.update(|l| {
                let mut changed = false;
                for (key, value) in batch.drain(..) {
                    match l.apply_record(key.as_deref(), value.as_deref(), now) {
                        Ok(c) => {
                            changed = true;
                            count(match c {
                                ListChange::Upserted => "upserted",
                                ListChange::Removed => "removed",
                                ListChange::Expired => "expired",
                            });
                        }
                        Err(e) => {
                            // Names the key's shape, not its value: no personal data in logs.
                            tracing::warn!(
                                error_kind = error_kind(&e),
                                "invalid list record skipped"
                            );
                            count("invalid");
                        }
                    }
                }
                export_counts(&metrics, l);
                ((), changed)
            });
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            let now = cell.clock();
            cell.update(|l| {
                let n = l.purge_expired(now);
                if n > 0 {
                    export_counts(&metrics, l);
                }
                ((), n > 0)
            });
        }
        if loaded.is_some() && batch.is_empty() && at_end.iter().all(|e| *e) {
            if let Some(tx) = loaded.take() {
                let _ = tx.send(Ok(cell.get().len()));
            }
        }
    }
}

fn error_kind(e: &crate::engine::lists::ListError) -> &'static str {
    use crate::engine::lists::ListError::*;
    match e {
        Malformed(_) => "malformed",
        BadExpiry { .. } => "bad_expiry",
        BadNetwork { .. } => "bad_network",
        NoKey => "no_key",
    }
}
