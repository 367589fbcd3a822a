//! One task per assigned partition: restore the partition's profiles, then score its batches
//! strictly in order, produce their outputs, and report offsets only once everything of a
//! batch is acknowledged (at-least-once) or handed to the open transaction (exactly-once).
//!
//! The changelog: at-least-once collects changed profiles for `kafka.changelog_flush_ms` and
//! writes each one's latest version once; the offsets of the events behind them are stored
//! only after that write is acknowledged, so a crash replays exactly the events whose
//! learning was not yet durable. Exactly-once writes them in every batch's transaction. The
//! bookkeeping is [`super::pending`]'s.
//!
//! Why a task per partition and not per message: offsets are stored in order, and a user's
//! events must be scored in order against one profile; both hold within a partition because
//! the input is keyed by `user_id`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::DeliveryFuture;
use tokio::sync::mpsc;

use crate::engine::pipeline::State;
use crate::engine::time::EpochMs;
use crate::engine::unit::Unit;
use crate::service::metrics::Tally;

use super::acks::{ack_loop, Durable, InFlight};
use super::batch::Batch;
use super::pending::{Pending, Wake};
use super::produce;
use super::records::{OutBatch, Route};
use super::session::{Claim, Shared};

/// How often a partition sweeps idle profiles (wall time; the cap is checked every batch).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Runs partition `p` until its channel closes (revoke or shutdown) or the session abandons it.
///
/// `start` is, per input topic, the offset the consumer was assigned to start from: the
/// profiles are restored as of it. Nothing is written once `claim` is fenced.
pub(crate) async fn run(
    shared: Arc<Shared>,
    p: i32,
    claim: Arc<Claim>,
    start: Vec<i64>,
    mut rx: mpsc::Receiver<Batch>,
) {
    let t0 = Instant::now();
    // The consumer thread counted this partition as restoring; the count is given back when
    // the restore ends, and also when the task is dropped during it (a lost partition).
    let restoring = Restoring(&shared);
    let live = shared.engine.get();
    let engine = &live.engine;
    let restored = {
        let cfg = shared.cfg.kafka.clone();
        let params = engine.params().clone();
        let mut state = engine.new_state();
        tokio::task::spawn_blocking(move || {
            super::restore::restore(&cfg, &params, p, &start, &mut state).map(|r| (r, state))
        })
        .await
    };
    drop(restoring);
    let (state, position, legacy): (State, Vec<i64>, Vec<Box<str>>) = match restored {
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
    // The partition's unit of work: its state and upkeep (sweep clock, removal counts,
    // published blocks).
    let mut unit = Unit::new(state);
    let profiles_gauge = shared.metrics.profiles.with_label_values(&[&p.to_string()]);
    profiles_gauge.set(unit.state.profiles.len() as i64);
    let cases_gauge = shared.metrics.cases.with_label_values(&[&p.to_string()]);
    cases_gauge.set(unit.state.cases.len() as i64);

    let eos = shared.eos.is_some();
    let (ack_tx, ack_rx) =
        mpsc::channel::<InFlight<DeliveryFuture>>(shared.cfg.kafka.queue_batches);
    let acker = (!eos).then(|| tokio::spawn(ack_loop(shared.clone(), p, claim.clone(), ack_rx)));
    // Exactly-once writes the changelog in every batch's transaction: a transaction must never
    // commit offsets ahead of the profiles it carries.
    let flush_every = if eos {
        Duration::ZERO
    } else {
        Duration::from_millis(shared.cfg.kafka.changelog_flush_ms)
    };
    let max_pending = shared.cfg.kafka.changelog_max_pending;
    let mut pending = Pending::new(position, legacy, flush_every, max_pending);
    // When the last idle-profile sweep ran (the unit keeps the event-time clock).
    let mut last_sweep = Instant::now();
    let mut out = OutBatch::default();
    let mut tally = Tally::default();
    // The config in force for the last batch: its engine scores, its routes copy alerts.
    let mut live = shared.engine.get();
    // The shadow candidate and its own in-memory state (see `crate::service::shadow`).
    let mut shadow: Option<(Arc<crate::service::live::Live>, Unit)> = None;
    let shadow_gauge = shared
        .metrics
        .shadow_profiles
        .with_label_values(&[&p.to_string()]);

    loop {
        // While profiles wait for the changelog, wake at the flush deadline even if no
        // batch comes: their events' offsets are stored only after it is written.
        let batch = match pending.wait(&mut rx).await {
            Wake::Batch(batch) => batch,
            wake => {
                // The deadline passed with no batch, or the channel closed (revoke or
                // shutdown): write what is pending, so the stored offsets (and a final commit)
                // cover it.
                if shared.abandon.load(Ordering::SeqCst) {
                    break;
                }
                if !pending.is_empty() {
                    out.clear();
                    let offsets = flush(&shared, &mut pending, &unit.state, p, &mut out);
                    let sent = Shipment {
                        outputs: 0,
                        offsets: Some(offsets),
                        received: Vec::new(),
                    };
                    if !ship(&shared, &claim, &live.routes, &out, p, sent, &ack_tx).await {
                        break;
                    }
                }
                if matches!(wake, Wake::Closed) {
                    break;
                }
                continue;
            }
        };
        if shared.abandon.load(Ordering::SeqCst) {
            break;
        }
        live = shared.engine.get();
        let engine = &live.engine;
        // The lists as of this batch (a pointer copy; this partition's own blocks are in the
        // shared table already, see below).
        let lists = shared.lists.get();
        if !Arc::ptr_eq(&unit.state.lists, &lists) {
            unit.state.lists = lists;
        }
        let now = crate::engine::time::now_ms();
        out.clear();
        let raws: Vec<&[u8]> = batch.iter().map(|m| m.payload.unwrap_or(b"")).collect();
        // The shadow candidate starts from the live state as it is before this batch: on
        // assignment, and whenever a reload turns it on or replaces it.
        match shared.engine.shadow() {
            None => {
                if shadow.take().is_some() {
                    shadow_gauge.set(0);
                }
            }
            Some(cand) => {
                if shadow.as_ref().is_none_or(|(e, _)| !Arc::ptr_eq(e, &cand)) {
                    shadow = Some((cand, Unit::new(unit.state.clone())));
                }
            }
        }
        let mut results = Vec::with_capacity(raws.len());
        // Due once a minute of wall time: idle sweeps of this partition and its candidate.
        let sweep_due = last_sweep.elapsed() >= SWEEP_EVERY;
        unit.process_batch(engine, &raws, now, &mut results);
        if let Some((cand, sunit)) = shadow.as_mut() {
            if !Arc::ptr_eq(&sunit.state.lists, &unit.state.lists) {
                sunit.state.lists = unit.state.lists.clone();
            }
            let topics = &shared.topics;
            let cand = &cand.engine;
            let b = crate::service::shadow::ShadowBatch::score(
                cand,
                sunit,
                &raws,
                now,
                &results,
                |ev, o| out.shadow_decision(topics, ev, o),
            );
            shadow_metrics(&shared.metrics, &b);
            sunit.upkeep(cand, now, sweep_due);
            shadow_gauge.set(sunit.state.profiles.len() as i64);
        }
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
                    out.outcome(engine, &shared.topics, &live.routes, &ev, &o);
                    if let (Some(hub), true) = (&shared.stream, o.alert()) {
                        hub.publish(&ev, &o);
                    }
                    pending.touch(o.user_key);
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
        // Blocks a confirmed fraud produced: published with the batch's outputs, and put in
        // the shared table at once so that this and every other partition of the process
        // scores against them from the next batch (the reader brings them to other instances).
        let blocks = unit.take_blocks();
        if !blocks.is_empty() {
            shared.lists.update(|l| {
                for e in &blocks {
                    let _ = l.upsert(&e.key(), e, EpochMs::MIN);
                }
                super::lists_topic::export_counts(&shared.metrics, l);
                ((), true)
            });
        }
        for e in blocks {
            shared
                .metrics
                .lists_published
                .with_label_values(&[e.kind.as_str()])
                .inc();
            out.list_entry(&e);
        }
        cases_gauge.set(unit.state.cases.len() as i64);
        shared.lists.observe(unit.clock(now));
        // The next offset of each input topic in the batch: the input position the changelog
        // is stamped with, and the offsets stored once the changelog after it is acknowledged.
        for m in batch.iter() {
            pending.consumed(m.topic, m.offset);
        }
        for (r, n) in live.routes.iter().zip(out.routed(live.routes.len())) {
            if n > 0 {
                shared
                    .metrics
                    .subscription_alerts
                    .with_label_values(&[r.name.as_str()])
                    .inc_by(n);
            }
        }
        // Lifecycle: over the cap at once (a flood must not grow memory), idle sweeps once a
        // minute. Removed profiles are tombstoned at the next changelog write.
        if let Some(gone) = unit.upkeep(engine, now, sweep_due) {
            if sweep_due {
                last_sweep = Instant::now();
            }
            for key in gone {
                pending.touch(key);
            }
        }
        let removed = unit.removed_since();
        for (label, n) in [("ttl", removed.ttl), ("cap", removed.cap)] {
            if n > 0 {
                shared
                    .metrics
                    .profiles_removed
                    .with_label_values(&[label])
                    .inc_by(n);
            }
        }
        shared.metrics.flush(&mut tally);
        shared.metrics.batch_events.observe(batch.len() as f64);
        profiles_gauge.set(unit.state.profiles.len() as i64);

        let due = pending.due();
        let outputs = out.len();
        let offsets = due.then(|| flush(&shared, &mut pending, &unit.state, p, &mut out));
        let sent = Shipment {
            outputs,
            offsets,
            received,
        };
        if !ship(&shared, &claim, &live.routes, &out, p, sent, &ack_tx).await {
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
    let _ = shared.metrics.cases.remove_label_values(&[&p.to_string()]);
}

/// A partition counted as restoring (`/readyz`, `walletguard_restoring_partitions`) until
/// dropped.
struct Restoring<'a>(&'a Shared);

impl Drop for Restoring<'_> {
    fn drop(&mut self) {
        self.0.health.restoring(-1);
        self.0.metrics.restoring.dec();
    }
}

/// Writes what `pending` holds into `out` with the parameters of the engine in force now (a
/// reload may have replaced it), counting the records; returns the offsets they make storable.
fn flush(
    shared: &Shared,
    pending: &mut Pending,
    state: &State,
    p: i32,
    out: &mut OutBatch,
) -> Vec<(u16, i64)> {
    let live = shared.engine.get();
    pending.flush(
        live.engine.params(),
        &shared.metrics.changelog_records,
        state,
        p,
        out,
    )
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
/// to the partition's ack loop. False when the partition must stop: the session was
/// abandoned, or `claim` was fenced (then nothing of `out` is written, and its records are
/// counted in `walletguard_fenced_total`).
async fn ship(
    shared: &Shared,
    claim: &Claim,
    routes: &[Route],
    out: &OutBatch,
    p: i32,
    sent: Shipment,
    ack_tx: &mpsc::Sender<InFlight<DeliveryFuture>>,
) -> bool {
    let mut futures = Vec::with_capacity(out.len());
    let fenced = |shared: &Shared| {
        let outputs = sent.outputs.min(out.len());
        let m = &shared.metrics.fenced;
        m.with_label_values(&["outputs"]).inc_by(outputs as u64);
        m.with_label_values(&["changelog"])
            .inc_by((out.len() - outputs) as u64);
    };
    // The fencing rule: after a stall the process waits here for the watchdog's verdict, and
    // a partition given up writes nothing more. Waited for before the exactly-once guard,
    // whose writer (the commit) is the consumer thread that gives that verdict.
    if !shared.writable(claim).await {
        if !shared.abandon.load(Ordering::SeqCst) {
            fenced(shared);
        }
        return false;
    }
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
    if !claim.is_live() {
        fenced(shared);
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

/// Adds a shadow batch's counts to the metrics.
fn shadow_metrics(m: &crate::service::metrics::Metrics, b: &crate::service::shadow::ShadowBatch) {
    use crate::engine::decision::Action;
    for (l, row) in Action::ALL.iter().zip(&b.matrix) {
        for (c, n) in Action::ALL.iter().zip(row) {
            if *n > 0 {
                m.shadow_decisions
                    .with_label_values(&[l.as_str(), c.as_str()])
                    .inc_by(*n);
            }
        }
    }
    for (code, n) in crate::engine::detect::Code::ALL.iter().zip(&b.reasons) {
        if *n > 0 {
            m.shadow_reasons
                .with_label_values(&[code.as_str()])
                .inc_by(*n);
        }
    }
}
