//! One task per assigned partition: restore the partition's profiles, then score its batches
//! strictly in order, produce their outputs and changelog, and report offsets only once
//! everything of a batch is acknowledged (at-least-once) or handed to the open transaction
//! (exactly-once).
//!
//! Why a task per partition and not per message: offsets are stored in order, and a user's
//! events must be scored in order against one profile; both hold within a partition because
//! the input is keyed by `user_id`.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
    let mut out = OutBatch::default();
    let mut tally = Tally::default();
    let mut dirty: HashSet<u64, BuildIdentity> = HashSet::default();
    let mut dirty_ids: Vec<(u64, Box<str>)> = Vec::new();
    let mut stamp_buf: Vec<u8> = Vec::with_capacity(8 * position.len());

    while let Some(batch) = rx.recv().await {
        if shared.abandon.load(Ordering::SeqCst) {
            break;
        }
        let engine = shared.engine.get();
        let routes = Route::compile(&engine.config().subscriptions);
        let now = now_ms();
        out.clear();
        dirty.clear();
        dirty_ids.clear();
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
                    if dirty.insert(o.user_key) {
                        dirty_ids.push((o.user_key, ev.user_id.as_ref().into()));
                    }
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
        // The next offset of each input topic in the batch: stored once the batch is
        // acknowledged, and the stamp of its changelog.
        let mut offsets: Vec<(u16, i64)> = Vec::with_capacity(1);
        for m in batch.iter() {
            match offsets.iter_mut().find(|(t, _)| *t == m.topic) {
                Some(o) => o.1 = o.1.max(m.offset + 1),
                None => offsets.push((m.topic, m.offset + 1)),
            }
        }
        // Only the latest version of each changed profile per batch, stamped with the input
        // position after the batch.
        for (t, next) in &offsets {
            if let Some(n) = position.get_mut(*t as usize) {
                *n = (*n).max(*next);
            }
        }
        stamp_buf.clear();
        stamp::encode(&position, &mut stamp_buf);
        let params = engine.params();
        for (key, uid) in &dirty_ids {
            if let Some(prof) = state.profiles.get(*key) {
                out.changelog(p, uid.as_bytes(), &stamp_buf, |buf| {
                    codec::encode(prof, params, buf)
                });
            }
        }
        shared
            .metrics
            .changelog_records
            .inc_by(dirty_ids.len() as u64);
        shared.metrics.flush(&mut tally);
        shared.metrics.batch_events.observe(batch.len() as f64);
        profiles_gauge.set(state.profiles.len() as i64);

        let received: Vec<Instant> = batch.iter().map(|m| m.received).collect();
        let mut futures = Vec::with_capacity(out.len());
        // Exactly-once: produce into the open transaction, which the consumer thread commits
        // together with these offsets. Holding the read guard keeps a commit from cutting a
        // batch in two.
        let guard = match &shared.eos {
            Some(eos) => Some(eos.lock.read().await),
            None => None,
        };
        if shared.abandon.load(Ordering::SeqCst) {
            break;
        }
        sink::send_all(
            &shared.producer,
            &shared.topics,
            &routes,
            &shared.metrics,
            &out,
            &mut futures,
        )
        .await;
        if let Some(eos) = &shared.eos {
            // Delivery is settled by the commit; the futures are not needed.
            futures.clear();
            eos.add(p, &offsets, received);
            drop(guard);
        } else {
            let inflight = InFlight {
                futures,
                offsets,
                received,
            };
            if ack_tx.send(inflight).await.is_err() {
                break;
            }
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
