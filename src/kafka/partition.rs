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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::DeliveryFuture;
use tokio::sync::mpsc;

use crate::baseline::{codec, BuildIdentity};
use crate::metrics::Tally;
use crate::pipeline::State;
use crate::time::EpochMs;

use super::batch::Batch;
use super::produce;
use super::records::{OutBatch, Route};
use super::session::{Shared, StoredOffset};
use super::stamp;

/// A batch whose outputs are produced but not yet acknowledged.
struct InFlight {
    /// Its alerts, commands, decisions and dead letters.
    outputs: Vec<DeliveryFuture>,
    /// Receipt of each message, and whether it had outputs: its latency ends when `outputs`
    /// (and every earlier batch's) are acknowledged.
    received: Vec<(Instant, bool)>,
    /// A changelog write, and the input offsets stored once it and `outputs` are acknowledged.
    durable: Option<Durable>,
}

/// A changelog write and the offsets that wait for it.
struct Durable {
    changelog: Vec<DeliveryFuture>,
    offsets: Vec<(u16, i64)>,
}

/// How often a partition sweeps idle profiles (wall time; the cap is checked every batch).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Runs partition `p` until its channel closes (revoke or shutdown) or the session abandons it.
///
/// `start` is, per input topic, the offset the consumer was assigned to start from: the
/// profiles are restored as of it.
pub(crate) async fn run(
    shared: Arc<Shared>,
    p: i32,
    start: Vec<i64>,
    mut rx: mpsc::Receiver<Batch>,
) {
    let t0 = Instant::now();
    let engine = shared.engine.get();
    let restored = {
        let cfg = shared.cfg.clone();
        let params = engine.params().clone();
        let mut state = engine.new_state();
        tokio::task::spawn_blocking(move || {
            super::restore::restore(&cfg, &params, p, &start, &mut state).map(|r| (r, state))
        })
        .await
    };
    shared.health.restoring(-1);
    shared.metrics.restoring.dec();
    let (mut state, mut position, legacy): (State, Vec<i64>, Vec<Box<str>>) = match restored {
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
            (state, r.start, r.legacy)
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
        legacy: Vec::new(),
        held: Vec::with_capacity(1),
        since: Instant::now(),
        stamp: Vec::with_capacity(8 * position.len()),
    };
    for id in legacy {
        // Rewritten under its 64-bit key at the first flush, after the legacy tombstone.
        pending.touch(crate::baseline::keys::user_key(&id));
        pending.legacy.push(id);
    }
    // The newest event time scored, the clock of idle-profile sweeps, and when one last ran.
    let mut newest_ts: EpochMs = 0;
    let mut last_sweep = Instant::now();
    let mut removed_seen = state.removed;
    let mut out = OutBatch::default();
    let mut tally = Tally::default();
    let mut routes: Vec<Route> = Vec::new();

    loop {
        // While profiles wait for the changelog, wake at the flush deadline even if no
        // batch comes: their events' offsets are stored only after it is written.
        let (next, closed) = if pending.is_empty() {
            let next = rx.recv().await;
            let closed = next.is_none();
            (next, closed)
        } else {
            let deadline = pending.since + flush_every;
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(next) => {
                    let closed = next.is_none();
                    (next, closed)
                }
                Err(_) => (None, false),
            }
        };
        let Some(batch) = next else {
            // The deadline passed with no batch, or the channel closed (revoke or shutdown):
            // write what is pending, so the stored offsets (and a final commit) cover it.
            if shared.abandon.load(Ordering::SeqCst) {
                break;
            }
            if !pending.is_empty() {
                out.clear();
                let offsets = pending.flush(&shared, &state, p, &position, &mut out);
                let sent = Shipment {
                    outputs: 0,
                    offsets: Some(offsets),
                    received: Vec::new(),
                };
                if !ship(&shared, &routes, &out, p, sent, &ack_tx).await {
                    break;
                }
            }
            if closed {
                break;
            }
            continue;
        };
        if shared.abandon.load(Ordering::SeqCst) {
            break;
        }
        let engine = shared.engine.get();
        routes = Route::compile(&engine.config().subscriptions);
        let now = crate::time::now_ms();
        out.clear();
        let raws: Vec<&[u8]> = batch.iter().map(|m| m.payload.unwrap_or(b"")).collect();
        let mut results = Vec::with_capacity(raws.len());
        engine.process_batch(&mut state, &raws, now, &mut results);
        let mut received: Vec<(Instant, bool)> = Vec::with_capacity(raws.len());
        for (m, r) in batch.iter().zip(results.drain(..)) {
            let before = out.len();
            match r {
                Ok((ev, o)) => {
                    tally.add(ev.kind, &o);
                    shared
                        .metrics
                        .event_lag
                        .observe((now - ev.ts_ms).max(0) as f64 / 1000.0);
                    out.outcome(&shared.topics, &routes, &shared.metrics, &ev, &o);
                    pending.touch(o.user_key);
                    newest_ts = newest_ts.max(ev.ts_ms);
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
            received.push((m.received, out.len() > before));
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
        // Lifecycle: over the cap at once (a flood must not grow memory), idle sweeps once a
        // minute. Removed profiles are tombstoned at the next changelog write.
        if engine.over_cap(&state) || last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            let clock = crate::pipeline::sweep_clock(newest_ts, now);
            for key in engine.maintain(&mut state, clock) {
                pending.touch(key);
            }
        }
        if state.removed != removed_seen {
            shared
                .metrics
                .profiles_removed
                .with_label_values(&["ttl"])
                .inc_by(state.removed.ttl - removed_seen.ttl);
            shared
                .metrics
                .profiles_removed
                .with_label_values(&["cap"])
                .inc_by(state.removed.cap - removed_seen.cap);
            removed_seen = state.removed;
        }
        shared.metrics.flush(&mut tally);
        shared.metrics.batch_events.observe(batch.len() as f64);
        profiles_gauge.set(state.profiles.len() as i64);

        let due = pending.ids.len() >= max_pending || pending.since.elapsed() >= flush_every;
        let outputs = out.len();
        let offsets = due.then(|| pending.flush(&shared, &state, p, &position, &mut out));
        let sent = Shipment {
            outputs,
            offsets,
            received,
        };
        if !ship(&shared, &routes, &out, p, sent, &ack_tx).await {
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
    /// The dirty keys in the order they were first changed: a profile present at the flush is
    /// written, one removed meanwhile is tombstoned.
    ids: Vec<u64>,
    /// User ids whose latest record an older release keyed by id: tombstoned at the next flush,
    /// before their profiles are written again under their 64-bit keys.
    legacy: Vec<Box<str>>,
    /// Next offset per input topic of the events scored since the last changelog write.
    held: Vec<(u16, i64)>,
    /// When the changelog was last written.
    since: Instant,
    stamp: Vec<u8>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.held.is_empty() && self.legacy.is_empty()
    }

    fn touch(&mut self, key: u64) {
        if self.dirty.insert(key) {
            self.ids.push(key);
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
        // Legacy tombstones first: a restore breaks ties of equal stamps by offset, so the
        // profile written after them under its 64-bit key wins.
        for id in &self.legacy {
            out.legacy_tombstone(p, id.as_bytes(), &self.stamp);
        }
        for key in &self.ids {
            match state.profiles.get(*key) {
                Some(prof) => {
                    out.changelog(p, *key, &self.stamp, |buf| codec::encode(prof, params, buf))
                }
                None => out.changelog_tombstone(p, *key, &self.stamp),
            }
        }
        shared
            .metrics
            .changelog_records
            .inc_by((self.ids.len() + self.legacy.len()) as u64);
        self.dirty.clear();
        self.ids.clear();
        self.legacy.clear();
        self.since = Instant::now();
        std::mem::take(&mut self.held)
    }
}

/// What [`ship`] hands on besides the records.
struct Shipment {
    /// How many of the records are outputs; the rest are changelog.
    outputs: usize,
    /// With a changelog write: the offsets it makes storable.
    offsets: Option<Vec<(u16, i64)>>,
    /// Receipt of each message and whether it had outputs.
    received: Vec<(Instant, bool)>,
}

/// Produces `out` and hands it on: to the open transaction with its offsets (exactly-once), or
/// to the partition's ack loop. False when the partition must stop.
async fn ship(
    shared: &Shared,
    routes: &[Route],
    out: &OutBatch,
    p: i32,
    sent: Shipment,
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
    produce::send_all(
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
        eos.add(p, sent.offsets.as_deref().unwrap_or(&[]), sent.received);
        drop(guard);
        true
    } else {
        let changelog = futures.split_off(sent.outputs.min(futures.len()));
        let inflight = InFlight {
            outputs: futures,
            received: sent.received,
            durable: sent.offsets.map(|offsets| Durable { changelog, offsets }),
        };
        ack_tx.send(inflight).await.is_ok()
    }
}

/// Awaits each batch's outputs in order, observing its latency, then passes its changelog
/// write on to a second in-order loop, which stores the offsets once that is acknowledged
/// too. Two loops, so that a large changelog write delays only offset storage, never the
/// acknowledgement (and measured latency) of the alerts and commands behind it.
async fn ack_loop(shared: Arc<Shared>, p: i32, mut rx: mpsc::Receiver<InFlight>) {
    let (dtx, drx) = mpsc::unbounded_channel::<Durable>();
    let durable = tokio::spawn(durable_loop(shared.clone(), p, drx));
    while let Some(inf) = rx.recv().await {
        if !produce::await_deliveries(&shared.producer, &shared.metrics, inf.outputs).await {
            break;
        }
        if shared.abandon.load(Ordering::SeqCst) {
            break;
        }
        let now = Instant::now();
        for (r, outputs) in inf.received {
            shared
                .metrics
                .latency(outputs)
                .observe(now.duration_since(r).as_secs_f64());
        }
        // Unbounded, but it holds at most the batches of `queue_batches` plus the changelog
        // writes not yet acknowledged, which the producer's own queue bounds.
        if let Some(d) = inf.durable {
            if dtx.send(d).is_err() {
                break;
            }
        }
    }
    drop(dtx);
    let _ = durable.await;
}

/// Stores offsets, in order, once the changelog write before them is acknowledged.
async fn durable_loop(shared: Arc<Shared>, p: i32, mut rx: mpsc::UnboundedReceiver<Durable>) {
    while let Some(d) = rx.recv().await {
        if !produce::await_deliveries(&shared.producer, &shared.metrics, d.changelog).await {
            return;
        }
        if shared.abandon.load(Ordering::SeqCst) {
            return;
        }
        for (topic, next) in d.offsets {
            shared.report_offset(StoredOffset {
                topic,
                partition: p,
                next,
            });
        }
    }
}
