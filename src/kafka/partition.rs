//! One task per assigned partition: restore the partition's profiles, then score its batches
//! strictly in order, produce their outputs, and report offsets only once everything of a
//! batch is acknowledged (at-least-once) or handed to the open transaction (exactly-once).
//!
//! The changelog: at-least-once collects changed profiles for `kafka.changelog_flush_ms` and
//! writes each one's latest version once; the offsets of the events behind them are stored
//! only after that write is acknowledged, so a crash replays exactly the events whose
//! learning was not yet durable. Exactly-once writes them in every batch's transaction.
//!
//! Why a task per partition and not per message: offsets are stored in order, and a user's
//! events must be scored in order against one profile; both hold within a partition because
//! the input is keyed by `user_id`.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::producer::DeliveryFuture;
use tokio::sync::mpsc;

use crate::baseline::{codec, BuildIdentity};
use crate::metrics::Tally;
use crate::pipeline::State;
use crate::time::EpochMs;

use super::service::{Shared, StoredOffset};
use super::sink::{self, OutBatch, Route};
use super::stamp;

/// One consumed message of a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Index of the message's topic in `kafka.input_topics`.
    pub topic: u16,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value (`None` for a null value, which is dead-lettered).
    pub payload: Option<&'a [u8]>,
    /// When the consumer thread received it: the start of the latency measurement.
    pub received: Instant,
}

#[derive(Debug, Clone)]
struct Slot {
    topic: u16,
    offset: i64,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
    received: Instant,
}

/// Consumed messages of one partition, in offset order, copied out of librdkafka's buffers
/// into one arena: two allocations per batch instead of two per message.
#[derive(Debug, Default)]
pub struct Batch {
    arena: Vec<u8>,
    slots: Vec<Slot>,
}

impl Batch {
    /// Appends a message.
    pub fn push(
        &mut self,
        topic: u16,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        received: Instant,
    ) {
        let mut copy = |b: &[u8]| {
            let s = self.arena.len();
            self.arena.extend_from_slice(b);
            s..self.arena.len()
        };
        let key = key.map(&mut copy);
        let payload = payload.map(&mut copy);
        self.slots.push(Slot {
            topic,
            offset,
            key,
            payload,
            received,
        });
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The messages, in order.
    pub fn iter(&self) -> impl Iterator<Item = Incoming<'_>> + '_ {
        self.slots.iter().map(|s| Incoming {
            topic: s.topic,
            offset: s.offset,
            key: s.key.clone().map(|r| &self.arena[r]),
            payload: s.payload.clone().map(|r| &self.arena[r]),
            received: s.received,
        })
    }
}

/// A batch whose outputs are produced but not yet acknowledged.
struct InFlight {
    futures: Vec<DeliveryFuture>,
    offsets: Vec<(u16, i64)>,
    received: Vec<Instant>,
}

fn now_ms() -> EpochMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as EpochMs)
        .unwrap_or(0)
}

/// Runs partition `p` until its channel closes (revoke or shutdown) or the session abandons it.
pub(crate) async fn run(shared: Arc<Shared>, p: i32, mut rx: mpsc::Receiver<Batch>) {
    let t0 = Instant::now();
    let engine = shared.engine.get();
    let restored = {
        let cfg = shared.cfg.clone();
        let params = engine.params().clone();
        let mut state = engine.new_state();
        tokio::task::spawn_blocking(move || {
            super::restore::restore(&cfg, &params, p, &mut state).map(|r| (r, state))
        })
        .await
    };
    shared.health.restoring(-1);
    shared.metrics.restoring.dec();
    let (mut state, mut position): (State, Vec<i64>) = match restored {
        Ok(Ok((r, state))) => {
            shared
                .metrics
                .restore_seconds
                .observe(t0.elapsed().as_secs_f64());
            shared.metrics.restore_records.inc_by(r.records);
            tracing::info!(
                partition = p,
                records = r.records,
                held_back = r.ahead,
                profiles = state.profiles.len(),
                bad_records = r.bad_records,
                seconds = r.elapsed.as_secs_f64(),
                "restored partition state"
            );
            (state, r.committed.start())
        }
        Ok(Err(e)) => {
            shared.fail(e);
            return;
        }
        Err(join) => {
            shared.fail(super::KafkaError::Internal(format!("restore task: {join}")));
            return;
        }
    };
    let profiles_gauge = shared.metrics.profiles.with_label_values(&[&p.to_string()]);
    profiles_gauge.set(state.profiles.len() as i64);

    let eos = shared.eos.is_some();
    let (ack_tx, ack_rx) = mpsc::channel::<InFlight>(shared.cfg.kafka.queue_batches);
    let acker = (!eos).then(|| tokio::spawn(ack_loop(shared.clone(), p, ack_rx)));
    // Exactly-once writes the changelog in every batch's transaction: a transaction must never
    // commit offsets ahead of the profiles it carries.
    let flush_every = if eos {
        Duration::ZERO
    } else {
        Duration::from_millis(shared.cfg.kafka.changelog_flush_ms)
    };
    let max_pending = shared.cfg.kafka.changelog_max_pending;
    let mut pending = Pending {
        dirty: HashSet::default(),
        ids: Vec::new(),
        held: Vec::with_capacity(1),
        since: Instant::now(),
        stamp: Vec::with_capacity(8 * position.len()),
    };
    let mut out = OutBatch::default();
    let mut tally = Tally::default();
    let mut routes: Vec<Route> = Vec::new();

    loop {
        // While profiles wait for the changelog, wake at the flush deadline even if no
        // batch comes: their events' offsets are stored only after it is written.
        let next = if pending.ids.is_empty() && pending.held.is_empty() {
            rx.recv().await
        } else {
            let deadline = pending.since + flush_every;
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    if shared.abandon.load(Ordering::SeqCst) {
                        break;
                    }
                    out.clear();
                    let offsets = pending.flush(&shared, &state, p, &position, &mut out);
                    if !ship(&shared, &routes, &out, p, offsets, Vec::new(), &ack_tx).await {
                        break;
                    }
                    continue;
                }
            }
        };
        let Some(batch) = next else {
            // Revoke or shutdown: write what is pending, so the final commit covers it.
            if !shared.abandon.load(Ordering::SeqCst) && !pending.is_empty() {
                out.clear();
                let offsets = pending.flush(&shared, &state, p, &position, &mut out);
                ship(&shared, &routes, &out, p, offsets, Vec::new(), &ack_tx).await;
            }
            break;
        };
        if shared.abandon.load(Ordering::SeqCst) {
            break;
        }
        let engine = shared.engine.get();
        routes = Route::compile(&engine.config().subscriptions);
        let now = now_ms();
        out.clear();
        let raws: Vec<&[u8]> = batch.iter().map(|m| m.payload.unwrap_or(b"")).collect();
        let mut results = Vec::with_capacity(raws.len());
        engine.process_batch(&mut state, &raws, now, &mut results);
        for (m, r) in batch.iter().zip(results.drain(..)) {
            match r {
                Ok((ev, o)) => {
                    tally.add(ev.kind, &o);
                    shared
                        .metrics
                        .event_lag
                        .observe((now - ev.ts_ms).max(0) as f64 / 1000.0);
                    out.outcome(&shared.topics, &routes, &shared.metrics, &ev, &o);
                    pending.touch(o.user_key, &ev.user_id);
                }
                Err(e) => {
                    let topic = &shared.topics.inputs[m.topic as usize];
                    shared
                        .metrics
                        .invalid
                        .with_label_values(&[e.reason()])
                        .inc();
                    // The error names the field and rule, never the payload: no personal data
                    // in logs.
                    tracing::warn!(topic = %topic, partition = p, offset = m.offset, reason = e.reason(), field = e.field().unwrap_or(""), "invalid event sent to the dead-letter topic");
                    out.dead_letter(&e, topic, p, m.offset, m.key, m.payload.unwrap_or(b""));
                }
            }
        }
        // The next offset of each input topic in the batch: the input position the changelog
        // is stamped with, and the offsets stored once the changelog after it is acknowledged.
        for m in batch.iter() {
            let t = m.topic;
            match pending.held.iter_mut().find(|(ht, _)| *ht == t) {
                Some(o) => o.1 = o.1.max(m.offset + 1),
                None => pending.held.push((t, m.offset + 1)),
            }
            if let Some(n) = position.get_mut(t as usize) {
                *n = (*n).max(m.offset + 1);
            }
        }
        shared.metrics.flush(&mut tally);
        shared.metrics.batch_events.observe(batch.len() as f64);
        profiles_gauge.set(state.profiles.len() as i64);

        let due = pending.ids.len() >= max_pending || pending.since.elapsed() >= flush_every;
        let offsets = if due {
            pending.flush(&shared, &state, p, &position, &mut out)
        } else {
            Vec::new()
        };
        let received: Vec<Instant> = batch.iter().map(|m| m.received).collect();
        if !ship(&shared, &routes, &out, p, offsets, received, &ack_tx).await {
            break;
        }
    }
    drop(ack_tx);
    if let Some(a) = acker {
        let _ = a.await;
    }
    let _ = shared
        .metrics
        .profiles
        .remove_label_values(&[&p.to_string()]);
}

/// Changed profiles not yet in the changelog, and the input offsets that wait for them.
struct Pending {
    dirty: HashSet<u64, BuildIdentity>,
    ids: Vec<(u64, Box<str>)>,
    /// Next offset per input topic of the events scored since the last changelog write.
    held: Vec<(u16, i64)>,
    /// When the changelog was last written.
    since: Instant,
    stamp: Vec<u8>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.held.is_empty()
    }

    fn touch(&mut self, key: u64, user_id: &str) {
        if self.dirty.insert(key) {
            self.ids.push((key, user_id.into()));
        }
    }

    /// Adds the latest version of every pending profile to `out`, stamped with the input
    /// `position` they reflect, and returns the offsets that may be stored once `out` is
    /// acknowledged.
    fn flush(
        &mut self,
        shared: &Shared,
        state: &State,
        p: i32,
        position: &[i64],
        out: &mut OutBatch,
    ) -> Vec<(u16, i64)> {
        self.stamp.clear();
        stamp::encode(position, &mut self.stamp);
        let engine = shared.engine.get();
        let params = engine.params();
        for (key, uid) in &self.ids {
            if let Some(prof) = state.profiles.get(*key) {
                out.changelog(p, uid.as_bytes(), &self.stamp, |buf| {
                    codec::encode(prof, params, buf)
                });
            }
        }
        shared
            .metrics
            .changelog_records
            .inc_by(self.ids.len() as u64);
        self.dirty.clear();
        self.ids.clear();
        self.since = Instant::now();
        std::mem::take(&mut self.held)
    }
}

/// Produces `out` and hands it on: to the open transaction with `offsets` (exactly-once), or
/// to the partition's ack loop, which stores `offsets` once `out` and everything before it is
/// acknowledged. False when the partition must stop.
async fn ship(
    shared: &Shared,
    routes: &[Route],
    out: &OutBatch,
    p: i32,
    offsets: Vec<(u16, i64)>,
    received: Vec<Instant>,
    ack_tx: &mpsc::Sender<InFlight>,
) -> bool {
    let mut futures = Vec::with_capacity(out.len());
    // Exactly-once: produce into the open transaction, which the consumer thread commits
    // together with these offsets. Holding the read guard keeps a commit from cutting a
    // batch in two.
    let guard = match &shared.eos {
        Some(eos) => Some(eos.lock.read().await),
        None => None,
    };
    if shared.abandon.load(Ordering::SeqCst) {
        return false;
    }
    sink::send_all(
        &shared.producer,
        &shared.topics,
        routes,
        &shared.metrics,
        out,
        &mut futures,
    )
    .await;
    if let Some(eos) = &shared.eos {
        // Delivery is settled by the commit; the futures are not needed.
        eos.add(p, &offsets, received);
        drop(guard);
        true
    } else {
        let inflight = InFlight {
            futures,
            offsets,
            received,
        };
        ack_tx.send(inflight).await.is_ok()
    }
}

/// Awaits each batch's deliveries in order, then reports its offsets to the consumer thread,
/// which stores them for the next commit.
async fn ack_loop(shared: Arc<Shared>, p: i32, mut rx: mpsc::Receiver<InFlight>) {
    while let Some(inf) = rx.recv().await {
        if !sink::await_deliveries(&shared.producer, &shared.metrics, inf.futures).await {
            return;
        }
        if shared.abandon.load(Ordering::SeqCst) {
            return;
        }
        for (topic, next) in inf.offsets {
            shared.report_offset(StoredOffset {
                topic,
                partition: p,
                next,
            });
        }
        let now = Instant::now();
        for r in inf.received {
            shared
                .metrics
                .latency
                .observe(now.duration_since(r).as_secs_f64());
        }
    }
}
