//! What the consumer thread and the partition tasks of one session share: the config, engine,
//! metrics and producer (`Shared`), the channel that carries acknowledged offsets
//! (`StoredOffset`) back to the consumer thread, the exactly-once bookkeeping (`Eos`), and
//! the session's fatal error.
//!
//! It knows nothing of either side (and imports neither): the consumer thread builds it and
//! reads it, the partition tasks report into it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Instant;

use rdkafka::producer::FutureProducer;

use crate::config::Config;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::pipeline::EngineCell;

use super::records::OutputTopics;
use super::KafkaError;

/// An offset whose message's outputs are all acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredOffset {
    /// Index of the input topic in `kafka.input_topics`.
    pub topic: u16,
    /// The partition.
    pub partition: i32,
    /// The next offset to consume: every message before it is done.
    pub next: i64,
}

/// Exactly-once bookkeeping: the open transaction's offsets and latencies.
#[derive(Default)]
pub(crate) struct Eos {
    /// Partition tasks produce under a read guard; the commit takes the write guard, so a
    /// transaction never holds half a batch.
    pub lock: tokio::sync::RwLock<()>,
    /// What the open transaction carries besides its records.
    pending: Mutex<EosPending>,
}

/// What the open transaction carries besides its records.
#[derive(Debug, Default)]
pub(crate) struct EosPending {
    /// The highest next offset per (input topic index, partition) produced into it.
    pub offsets: HashMap<(u16, i32), i64>,
    /// Receipt of each message and whether it had outputs: its latency ends at the commit.
    pub received: Vec<(Instant, bool)>,
}

impl Eos {
    /// Adds a batch produced into the open transaction.
    pub fn add(&self, p: i32, offsets: &[(u16, i64)], received: Vec<(Instant, bool)>) {
        let mut g = lock(&self.pending);
        for (t, o) in offsets {
            let e = g.offsets.entry((*t, p)).or_insert(*o);
            *e = (*e).max(*o);
        }
        g.received.extend(received);
    }

    /// Takes what the open transaction carries, leaving it empty (the commit does this under
    /// the write guard of [`Eos::lock`]).
    pub fn take(&self) -> EosPending {
        std::mem::take(&mut *lock(&self.pending))
    }
}

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing is left half-updated under these locks, so a poisoned one is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What outlives a session: the lists table and the alert stream hub.
pub(crate) struct Process {
    /// The allow and block lists.
    pub lists: Arc<crate::lists::ListsCell>,
    /// The alert stream hub, when `/alerts/stream` is on.
    pub stream: Option<Arc<crate::alert_stream::AlertHub>>,
}

/// What the consumer thread and the partition tasks share.
pub(crate) struct Shared {
    /// The startup config (`[kafka]` is read from it).
    pub cfg: Config,
    /// The engine, replaceable by a config reload.
    pub engine: Arc<EngineCell>,
    /// Where metrics go.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// The producer of outputs and changelog.
    pub producer: FutureProducer,
    /// The topics, resolved once.
    pub topics: OutputTopics,
    /// The allow and block lists every partition scores against (see [`super::lists`]).
    pub lists: Arc<crate::lists::ListsCell>,
    /// Where alerts are published for `GET /alerts/stream`, when it is on.
    pub stream: Option<Arc<crate::alert_stream::AlertHub>>,
    /// Exactly-once bookkeeping; `None` at-least-once.
    pub eos: Option<Eos>,
    /// Set when the session ends without committing (rewind, fatal error, lost partitions):
    /// tasks stop producing and report no more offsets.
    pub abandon: AtomicBool,
    /// Where [`Shared::report_offset`] sends; the consumer thread receives.
    offsets_tx: Mutex<std_mpsc::Sender<StoredOffset>>,
    /// The first fatal error, which `run` returns.
    fatal: Mutex<Option<KafkaError>>,
}

impl Shared {
    /// A session's shared state, with exactly-once bookkeeping if `eos`, and the receiving end
    /// of the offsets [`Shared::report_offset`] sends.
    pub fn new(
        cfg: Config,
        engine: Arc<EngineCell>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        producer: FutureProducer,
        eos: bool,
        process: Process,
    ) -> (Shared, std_mpsc::Receiver<StoredOffset>) {
        let Process { lists, stream } = process;
        let (offsets_tx, offsets_rx) = std_mpsc::channel();
        let shared = Shared {
            topics: OutputTopics::new(&cfg),
            eos: eos.then(Eos::default),
            abandon: AtomicBool::new(false),
            offsets_tx: Mutex::new(offsets_tx),
            fatal: Mutex::new(None),
            lists,
            stream,
            engine,
            metrics,
            health,
            producer,
            cfg,
        };
        (shared, offsets_rx)
    }

    /// Reports an acknowledged offset to the consumer thread.
    pub fn report_offset(&self, o: StoredOffset) {
        let _ = lock(&self.offsets_tx).send(o);
    }

    /// Records a fatal error: the session stops and `run` returns it.
    pub fn fail(&self, e: KafkaError) {
        tracing::error!(error = %e, "fatal error; stopping");
        self.health.set_failed();
        self.abandon.store(true, Ordering::SeqCst);
        let mut f = lock(&self.fatal);
        if f.is_none() {
            *f = Some(e);
        }
    }

    /// Whether [`Shared::fail`] was called.
    pub fn failed(&self) -> bool {
        lock(&self.fatal).is_some()
    }

    /// Takes the first fatal error, if any.
    pub fn take_fatal(&self) -> Option<KafkaError> {
        lock(&self.fatal).take()
    }
}
