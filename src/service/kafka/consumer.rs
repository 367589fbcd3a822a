//! The `run` session: the consumer thread, and the partition tasks it spawns (their code is in
//! [`super::partition`]; what both sides share is in [`super::session`]).
//!
//! One OS thread owns the group consumer. It polls, copies each message into the pending batch
//! of its partition, hands full batches to that partition's task over a bounded channel (the
//! back-pressure: when a task falls behind, the thread blocks and stops polling), stores the
//! offsets tasks report as acknowledged, and, in exactly-once mode, commits the transaction.
//! Rebalance callbacks run on that same thread, inside `poll`, so they may block:
//!
//! - **assign**: mark the partition restoring (`/readyz` false), spawn its task, which restores
//!   the partition's profiles from the changelog before it scores anything;
//! - **revoke**: flush the pending batch, close the task's channel, wait for it to drain (its
//!   last outputs acknowledged), store its offsets and commit synchronously (or commit the
//!   transaction), then drop its state; a partition reported *lost* is dropped without commit.
//!
//! Shutdown runs in the order: stop polling, drain the partitions, flush the producer, commit,
//! close the consumer. An aborted transaction rewinds: the session is torn down without
//! committing and a new one resumes from the last committed offsets and changelog.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::service::config::Config;

use crate::service::http::Health;
use crate::service::kafka::Delivery;
use crate::service::live::LiveCell;
use crate::service::metrics::Metrics;
use crate::service::shutdown::Shutdown;

use super::batch::Batch;
use super::partition;
use super::repair;
use super::session::{lock, Claim, Shared, StoredOffset, Watchdog};
use super::start_guard::{StartGuard, Verdict};
use super::{client_config, topics, KafkaError, Role};

/// What `run` needs from its caller.
pub struct RunOptions {
    /// The startup config (`[kafka]` is read once; detection settings come from `engine`).
    pub config: Config,
    /// The engine, replaceable at run time by a config reload.
    pub engine: Arc<LiveCell>,
    /// Where metrics go.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness for `/healthz` and `/readyz`.
    pub health: Arc<Health>,
    /// Triggered to stop: the session drains, commits and returns.
    pub shutdown: Shutdown,
    /// Where alerts are published for `GET /alerts/stream`, when it is on.
    pub stream: Option<Arc<crate::service::channels::alert_stream::AlertHub>>,
}

/// What a finished `run` did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Sessions started (more than one after a transaction abort rewound).
    pub sessions: u32,
}

/// An assigned partition, as the consumer thread holds it.
struct PartitionSlot {
    tx: mpsc::Sender<Batch>,
    pending: Batch,
    task: tokio::task::JoinHandle<()>,
    /// Per input topic: holds records back until the assigned start offset is reached.
    guards: Vec<StartGuard>,
    /// This assignment's claim on the partition: fenced when it is given up.
    claim: Arc<Claim>,
    /// Per input topic: the offset after the last record dispatched (the start at first).
    next: Vec<i64>,
    /// When a record was last dispatched (the spawn at first).
    progress: Instant,
    /// When the partition was last checked for being fetched.
    checked: Instant,
}

/// The consumer's context: librdkafka logs and statistics, and the rebalance protocol above.
pub(crate) struct ServiceContext {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    slots: Mutex<HashMap<i32, PartitionSlot>>,
    /// Offsets reported but not yet stored (stored at the next chance on the consumer thread).
    offsets_rx: Mutex<std_mpsc::Receiver<StoredOffset>>,
    /// How long a revoke or shutdown waits for a partition task to drain.
    drain_timeout: Duration,
    closing: AtomicBool,
    /// Set when an orderly shutdown begins: partitions assigned from then on get no task and
    /// no committed-offset lookup. Why: during a broker outage each lookup waits its full
    /// timeout (3 × 10 s), and a SIGTERM that met an assignment callback during the drain
    /// overran the shutdown timeout (a 100-fault soak: exit 2 after 30 s).
    stopping: AtomicBool,
    /// The service's stop signal: a stop triggered counts as stopping at once, before the
    /// consumer loop notices it.
    stop: Shutdown,
    rewind: AtomicBool,
    /// Set when the group is wedged (see [`ServiceContext::check_wedged`]): the session ends
    /// and a new one joins with a new member id.
    rejoin: AtomicBool,
    /// The epoch of the next [`Claim`].
    epochs: AtomicU64,
    /// Repair bookkeeping of the consumer thread (see [`ServiceContext::reconcile`]).
    repair: Mutex<Repair>,
}

/// What [`ServiceContext::reconcile`] remembers between rounds.
#[derive(Default)]
struct Repair {
    /// Partitions the client has assigned but no task consumes, since when.
    orphans: HashMap<i32, Instant>,
    /// After a stall: no partition is taken again before this.
    suspended_until: Option<Instant>,
    /// When the last round ran.
    last_round: Option<Instant>,
    /// Since when the client has held no partition at all.
    empty_since: Option<Instant>,
    /// The group's positions when that began (or when last seen moving), and when read.
    positions: Option<(Instant, GroupPositions)>,
}

/// Per (input topic index, partition): the group's committed offset (the first offset when
/// none) and the high watermark.
type GroupPositions = HashMap<(usize, i32), (i64, i64)>;

impl ClientContext for ServiceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{msg}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{msg}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{msg}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{msg}"),
        }
    }

    fn stats(&self, stats: Statistics) {
        // Bootstrap entries (node id -1) are placeholders for the configured addresses.
        let up = stats
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && broker_answering(&b.state, b.waitresp_cnt, b.rxidle))
            .count();
        self.shared
            .brokers
            .report(Instant::now(), up, |n| self.shared.publish_brokers_up(n));
        let ours: Vec<i32> = lock(&self.slots).keys().copied().collect();
        for t in &self.shared.topics.inputs {
            if let Some(topic) = stats.topics.get(t) {
                for (p, part) in &topic.partitions {
                    // -1 is librdkafka's internal UA partition; lag -1 means unknown. A
                    // partition given up since is not reported (its gauge is removed on
                    // revoke), so dashboards never see an owner's stale lag.
                    if *p >= 0 && part.consumer_lag >= 0 && ours.contains(p) {
                        self.shared
                            .metrics
                            .consumer_lag
                            .with_label_values(&[t.as_str(), &p.to_string()])
                            .set(part.consumer_lag);
                    }
                }
            }
        }
    }

    fn error(&self, error: RdError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            // Not ready until statistics see a broker up again.
            self.shared.publish_brokers_up(0);
        }
        tracing::error!(target: "librdkafka", error = %error, "{reason}");
    }
}

/// A broker silent this long while requests wait on it counts as down, though its connection
/// is still up.
const BROKER_STALL_US: i64 = 10_000_000;

/// Whether a broker, as librdkafka's statistics describe it, is up and answering: connected
/// (`state` "UP"), and not silent for [`BROKER_STALL_US`] (`rxidle`, µs since it last sent
/// anything; -1 for never) while requests wait for it (`waitresp_cnt`). Why the second part: a
/// hung or stopped broker keeps its TCP connections open, and librdkafka reports it "UP" until
/// `socket.timeout.ms` (60 s) expires each request, while nothing is consumed; a consumer
/// normally hears from its brokers several times a second (fetch long-polls end after
/// `fetch.wait.max.ms`, heartbeats every second).
fn broker_answering(state: &str, waitresp_cnt: i64, rxidle_us: i64) -> bool {
    state == "UP" && !(waitresp_cnt > 0 && rxidle_us > BROKER_STALL_US)
}

impl ConsumerContext for ServiceContext {
    /// Replaces rdkafka's default rebalance handling so that an assignment starts at an
    /// explicit offset: the one the partition's profiles are restored as of. Why: if the
    /// consumer resolved its start by itself (the committed offset, else `auto.offset.reset`),
    /// and the restore asked the broker separately, the two answers could differ (a commit in
    /// between, a failed lookup, no commit yet), and every event between them would be scored
    /// against a profile that already learned it, or that lost it.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let starts = self.start_positions(consumer, tpl);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    self.shared
                        .fail(KafkaError::Internal(format!("assigning partitions: {e}")));
                    return;
                }
                self.spawn_partitions(starts, "partitions assigned");
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl);
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "unassigning revoked partitions");
                }
            }
            other => {
                let code: rdkafka::types::RDKafkaErrorCode = other.into();
                self.shared
                    .metrics
                    .rebalances
                    .with_label_values(&["lost"])
                    .inc();
                tracing::error!(error = %code, "rebalance error; dropping partition state");
                let all: Vec<i32> = lock(&self.slots).keys().copied().collect();
                self.drop_partitions(&all);
                let _ = consumer.unassign();
                self.set_assigned_gauge();
            }
        }
    }
}

impl ServiceContext {
    /// Whether an orderly shutdown has begun (or been asked for).
    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst) || self.stop.is_triggered()
    }

    /// Revoked partitions: drain and commit them (or drop them when lost).
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        if self.closing.load(Ordering::SeqCst) {
            // The session already drained (or dropped) everything it owned.
            return;
        }
        let parts = partitions_of(tpl);
        let lost = consumer.assignment_lost();
        let kind = if lost { "lost" } else { "revoke" };
        self.shared
            .metrics
            .rebalances
            .with_label_values(&[kind])
            .inc();
        tracing::info!(partitions = ?parts, lost, "partitions revoked");
        if lost || self.rewind.load(Ordering::SeqCst) {
            self.drop_partitions(&parts);
        } else {
            let drained = self.drain_partitions(&parts);
            self.store_offsets(consumer, &drained);
            self.commit(consumer, CommitMode::Sync);
        }
        self.set_assigned_gauge();
    }

    /// Decides where each newly assigned partition starts, per input topic, and writes it into
    /// `tpl` as an explicit offset: the group's committed offset, else the partition's first
    /// offset (where `auto.offset.reset = earliest` would start). Returns the positions by
    /// partition, for the partition tasks to restore their profiles as of; none when the
    /// committed offsets cannot be read (the repair round adopts those partitions later).
    fn start_positions(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Vec<(i32, Vec<i64>)> {
        let inputs = &self.shared.topics.inputs;
        let new: Vec<i32> = {
            let slots = lock(&self.slots);
            partitions_of(tpl)
                .into_iter()
                .filter(|p| !slots.contains_key(p))
                .collect()
        };
        let mut out = Vec::with_capacity(new.len());
        if new.is_empty() || self.is_stopping() {
            // Shutting down: the partitions go to whoever stays (nothing is started here).
            return out;
        }
        let stopping = || self.is_stopping();
        let Some(committed) = committed_offsets(consumer, inputs, &new, &stopping) else {
            // Left without a task: the repair round adopts them (see `reconcile`).
            return out;
        };
        for p in new {
            let mut start = Vec::with_capacity(inputs.len());
            for (t, topic) in inputs.iter().enumerate() {
                let pos = start_offset(committed.get(&(t, p)).copied(), || {
                    let low = low_watermark(consumer, topic, p);
                    tracing::info!(topic = %topic, partition = p, offset = low, "no committed input offset; starting at the partition's first offset");
                    low
                });
                if let Err(e) = tpl.set_partition_offset(topic, p, Offset::Offset(pos)) {
                    tracing::warn!(topic = %topic, partition = p, error = %e, "setting the start offset");
                }
                start.push(pos);
            }
            out.push((p, start));
        }
        out
    }

    /// Spawns a task per newly assigned (or adopted) partition, starting at the given
    /// positions; `why` is the log line.
    fn spawn_partitions(&self, starts: Vec<(i32, Vec<i64>)>, why: &'static str) {
        if starts.is_empty() {
            return;
        }
        let parts: Vec<i32> = starts.iter().map(|(p, _)| *p).collect();
        if why == "partitions assigned" {
            self.shared
                .metrics
                .rebalances
                .with_label_values(&["assign"])
                .inc();
        }
        tracing::info!(partitions = ?parts, "{why}");
        let mut slots = lock(&self.slots);
        let mut repair = lock(&self.repair);
        for (p, start) in starts {
            self.shared.health.restoring(1);
            self.shared.metrics.restoring.inc();
            let (tx, rx) = mpsc::channel(self.shared.cfg.kafka.queue_batches);
            let claim = Claim::new(self.epochs.fetch_add(1, Ordering::SeqCst));
            let task = self.rt.spawn(partition::run(
                self.shared.clone(),
                p,
                claim.clone(),
                start.clone(),
                rx,
            ));
            repair.orphans.remove(&p);
            let now = Instant::now();
            let old = slots.insert(
                p,
                PartitionSlot {
                    tx,
                    pending: Batch::default(),
                    task,
                    guards: start.iter().map(|s| StartGuard::new(*s)).collect(),
                    claim,
                    next: start,
                    progress: now,
                    checked: now,
                },
            );
            if let Some(old) = old {
                // Never two tasks for one partition: the older one is fenced.
                old.claim.fence();
                old.task.abort();
            }
        }
        drop(repair);
        drop(slots);
        self.set_assigned_gauge();
    }
}

/// How often the consumer thread compares the client's assignment with its tasks.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// Records that must wait beyond a partition's committed offset before a group that gives
/// this instance nothing counts as wedged. Why not 1: an aborted transaction at the tail of
/// an idle partition leaves offsets no consumer will ever commit past, and an idle instance
/// must not rejoin the group for it over and over.
const WEDGE_BACKLOG: i64 = 100;
/// Most partitions a repair round asks watermarks for (each lookup blocks the consumer
/// thread for a round trip).
const CHECKS_PER_ROUND: usize = 8;
/// How long a partition may be assigned by the client without a task before it is adopted.
/// Rebalance callbacks run on the consumer thread, so outside a stall this is never seen.
const ORPHAN_GRACE: Duration = Duration::from_secs(1);

impl ServiceContext {
    /// Counts `n` repairs of `kind` in `walletguard_partition_repairs_total`.
    fn repaired(&self, kind: &str, n: u64) {
        self.shared
            .metrics
            .repairs
            .with_label_values(&[kind])
            .inc_by(n);
    }

    /// A stall of the whole process was seen (see [`Watchdog`]): the group may have given
    /// this instance's partitions to another while it stood still, and nothing it writes
    /// for them is safe until that is known. Every claim is fenced and every task dropped
    /// without a commit; `/readyz` fails and no partition is taken again for
    /// `confirm`, long enough for the client to learn from the coordinator whether the
    /// membership survived. Then the partitions the client still holds are adopted from
    /// their committed offsets, or the group's new assignment brings them.
    fn on_stall(&self, confirm: Duration) {
        let all: Vec<i32> = lock(&self.slots).keys().copied().collect();
        self.drop_partitions(&all);
        self.shared.metrics.stalls.inc();
        self.shared.health.set_suspended(true);
        lock(&self.repair).suspended_until = Some(Instant::now() + confirm);
        self.set_assigned_gauge();
        // Only now may writes go on: every claim held before the stall is fenced.
        self.shared.watchdog.handled();
        tracing::warn!(
            partitions = ?all,
            confirm_ms = confirm.as_millis() as u64,
            "the process stalled for half the session timeout or more; its partitions may belong to another instance now: fenced, to be taken again from the committed offsets"
        );
    }

    /// Once a second: the partitions the client has assigned against the tasks. A task for a
    /// partition the client does not have is dropped (`released`); a partition the client
    /// has without a task is started from its committed offset (`adopted`); a partition from
    /// which nothing was fetched for `kafka.unfetched_after_s` while records wait is dropped
    /// and adopted again (`refetched`). Such partitions make `/readyz` fail meanwhile.
    fn reconcile(&self, consumer: &BaseConsumer<Self>) {
        let now = Instant::now();
        let suspended = {
            let mut r = lock(&self.repair);
            if r.last_round
                .is_some_and(|t| now.duration_since(t) < RECONCILE_EVERY)
            {
                return;
            }
            r.last_round = Some(now);
            match r.suspended_until {
                Some(t) if now < t => true,
                Some(_) => {
                    r.suspended_until = None;
                    self.shared.health.set_suspended(false);
                    false
                }
                None => false,
            }
        };
        if self.closing.load(Ordering::SeqCst) || self.is_stopping() || self.shared.failed() {
            return;
        }
        let Ok(tpl) = consumer.assignment() else {
            return;
        };
        let inputs = &self.shared.topics.inputs;
        let mut assigned: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| inputs.iter().any(|t| t == e.topic()))
            .map(|e| e.partition())
            .collect();
        assigned.sort_unstable();
        assigned.dedup();
        if assigned.is_empty() && !suspended && self.shared.metrics.brokers_up.get() > 0 {
            self.check_wedged(consumer, now);
        } else {
            let mut r = lock(&self.repair);
            r.empty_since = None;
            r.positions = None;
        }
        let (stale, idle) = {
            let mut slots = lock(&self.slots);
            let stale = repair::stale(&assigned, slots.keys().copied());
            let after = Duration::from_secs(self.shared.cfg.kafka.unfetched_after_s);
            let mut idle = Vec::new();
            // Lookups block this thread: a few partitions a round, none while no broker
            // answers (an outage is reported as such; the round would only wait it out).
            let brokers_up = self.shared.metrics.brokers_up.get() > 0;
            for (p, slot) in slots.iter_mut() {
                let due = repair::due(
                    now.duration_since(slot.progress),
                    now.duration_since(slot.checked),
                    after,
                );
                if brokers_up
                    && due
                    && idle.len() < CHECKS_PER_ROUND
                    && assigned.binary_search(p).is_ok()
                {
                    slot.checked = now;
                    idle.push((*p, slot.next.clone()));
                }
            }
            (stale, idle)
        };
        if !stale.is_empty() {
            tracing::warn!(partitions = ?stale, "tasks for partitions the client no longer has; dropped");
            self.repaired("released", stale.len() as u64);
            self.drop_partitions(&stale);
            self.set_assigned_gauge();
        }
        let stuck = self.unfetched(consumer, idle);
        if !stuck.is_empty() {
            tracing::warn!(partitions = ?stuck, after_s = self.shared.cfg.kafka.unfetched_after_s, "assigned partitions not fetched while records wait; restarting them from their committed offsets");
            self.repaired("refetched", stuck.len() as u64);
            self.drop_partitions(&stuck);
        }
        let adopt = {
            let slots = lock(&self.slots);
            let mut r = lock(&self.repair);
            let adopt = repair::orphans(
                &mut r.orphans,
                &assigned,
                |p| slots.contains_key(&p),
                now,
                ORPHAN_GRACE,
                suspended,
            );
            let n = r.orphans.len() as i64;
            self.shared.metrics.unfetched.set(n);
            self.shared.health.set_unfetched(n);
            adopt
        };
        if !adopt.is_empty() {
            self.adopt(consumer, &adopt);
        }
    }

    /// The group is wedged when this instance has held no partition for three times
    /// `kafka.unfetched_after_s` while records wait in an input partition (more than
    /// [`WEDGE_BACKLOG`] beyond its committed offset) and no committed offset of the group
    /// moved meanwhile: nobody consumes them. Seen on tansu 0.6, which
    /// formed a generation whose leader had died, handed the live member an empty assignment
    /// and then answered its heartbeats as if all were well (the kill soak left 191,045 events
    /// undecided). An instance with nothing to do that sees no progress anywhere then leaves
    /// the group and joins again with a new member id, which makes the coordinator rebalance.
    /// Idle input (nothing waits), or other instances committing, is no wedge.
    fn check_wedged(&self, consumer: &BaseConsumer<Self>, now: Instant) {
        let after = Duration::from_secs(3 * self.shared.cfg.kafka.unfetched_after_s);
        let (since, last) = {
            let mut r = lock(&self.repair);
            let since = *r.empty_since.get_or_insert(now);
            (since, r.positions.as_ref().map(|(at, _)| *at))
        };
        // Read the group's positions when the emptiness begins, then once the wait is over.
        let due = match last {
            None => true,
            Some(at) => now.duration_since(since) >= after && now.duration_since(at) >= after,
        };
        if !due {
            return;
        }
        let Some(current) = self.group_positions(consumer) else {
            return;
        };
        let mut r = lock(&self.repair);
        let Some((_, before)) = r.positions.take() else {
            r.positions = Some((now, current));
            return;
        };
        let waiting = current
            .values()
            .any(|(committed, high)| high - committed > WEDGE_BACKLOG);
        let moved = current
            .iter()
            .any(|(k, (c, _))| before.get(k).is_none_or(|(b, _)| b != c));
        if waiting && !moved {
            tracing::warn!(
                after_s = after.as_secs(),
                "the group gives this instance no partition while records wait and no offset moves; leaving and joining again"
            );
            self.repaired("rejoined", 1);
            self.rejoin.store(true, Ordering::SeqCst);
        } else {
            r.empty_since = Some(now);
            r.positions = Some((now, current));
        }
    }

    /// The group's committed offset and the high watermark of every input partition; `None`
    /// if a lookup fails (the check is tried again later).
    fn group_positions(&self, consumer: &BaseConsumer<Self>) -> Option<GroupPositions> {
        let timeout = Duration::from_secs(5);
        let mut tpl = TopicPartitionList::new();
        let mut parts = Vec::new();
        for (t, topic) in self.shared.topics.inputs.iter().enumerate() {
            let md = consumer.fetch_metadata(Some(topic), timeout).ok()?;
            let n = md
                .topics()
                .iter()
                .find(|m| m.name() == topic)
                .map(|m| m.partitions().len())?;
            for p in 0..n as i32 {
                tpl.add_partition(topic, p);
                parts.push((t, topic.as_str(), p));
            }
        }
        let committed = consumer.committed_offsets(tpl, timeout).ok()?;
        let mut out = HashMap::with_capacity(parts.len());
        for (t, topic, p) in parts {
            let (low, high) = consumer.fetch_watermarks(topic, p, timeout).ok()?;
            let c = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(c)) => c,
                _ => low,
            };
            out.insert((t, p), (c, high));
        }
        Some(out)
    }

    /// Of the partitions idle since `kafka.unfetched_after_s` (with the offset after the
    /// last record dispatched, per input topic), those in which records wait
    /// ([`repair::records_wait`]).
    fn unfetched(&self, consumer: &BaseConsumer<Self>, idle: Vec<(i32, Vec<i64>)>) -> Vec<i32> {
        if idle.is_empty() {
            return Vec::new();
        }
        let position = consumer.position().ok();
        let mut stuck = Vec::new();
        for (p, next) in idle {
            for (t, topic) in self.shared.topics.inputs.iter().enumerate() {
                let Some(next) = next.get(t).copied() else {
                    continue;
                };
                let pos = position
                    .as_ref()
                    .and_then(|tpl| tpl.find_partition(topic, p))
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                match consumer.fetch_watermarks(topic, p, Duration::from_secs(2)) {
                    Ok((_, high)) if repair::records_wait(high, next, pos) => {
                        stuck.push(p);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // The broker is not answering: the rest waits for a later round.
                        tracing::debug!(topic = %topic, partition = p, error = %e, "watermark lookup failed");
                        return stuck;
                    }
                }
            }
        }
        stuck
    }

    /// Starts tasks for partitions the client holds but no task consumes: from the group's
    /// committed offsets (else the first), with the client's fetch moved there.
    fn adopt(&self, consumer: &BaseConsumer<Self>, parts: &[i32]) {
        let mut tpl = TopicPartitionList::new();
        for t in &self.shared.topics.inputs {
            for p in parts {
                tpl.add_partition(t, *p);
            }
        }
        let starts = self.start_positions(consumer, &mut tpl);
        if self.shared.failed() || starts.is_empty() {
            return;
        }
        for e in tpl.elements() {
            if let Err(err) =
                consumer.seek(e.topic(), e.partition(), e.offset(), Duration::from_secs(5))
            {
                // The start guard still drops what lies before the start and seeks back
                // from what lies beyond it.
                tracing::warn!(topic = e.topic(), partition = e.partition(), error = %err, "seek to the adopted start failed");
            }
        }
        self.repaired("adopted", starts.len() as u64);
        self.spawn_partitions(starts, "partitions adopted");
    }
}

/// How long one broker lookup made while assigning may take, and how often it is tried.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
const LOOKUP_TRIES: u32 = 3;

/// The group's committed offsets of `parts` of every input topic, keyed by (topic index,
/// partition); a partition the group never committed is absent. `None` when the lookup keeps
/// failing (the broker does not answer): the partitions then get no task for now, and the
/// repair round adopts them from their committed offsets once it answers. Never a guess: a
/// wrong start would score events against the wrong profiles.
fn committed_offsets(
    consumer: &BaseConsumer<ServiceContext>,
    inputs: &[String],
    parts: &[i32],
    give_up: &dyn Fn() -> bool,
) -> Option<HashMap<(usize, i32), i64>> {
    let mut tpl = TopicPartitionList::new();
    for t in inputs {
        for p in parts {
            tpl.add_partition(t, *p);
        }
    }
    let mut last_err = String::new();
    for attempt in 1..=LOOKUP_TRIES {
        if give_up() {
            return None;
        }
        match consumer.committed_offsets(tpl.clone(), LOOKUP_TIMEOUT) {
            Ok(got) => {
                let mut out = HashMap::new();
                for (ti, t) in inputs.iter().enumerate() {
                    for p in parts {
                        if let Some(Offset::Offset(n)) =
                            got.find_partition(t, *p).map(|e| e.offset())
                        {
                            out.insert((ti, *p), n);
                        }
                    }
                }
                return Some(out);
            }
            Err(e) => {
                tracing::warn!(attempt, error = %e, "committed offset lookup failed");
                last_err = e.to_string();
            }
        }
    }
    tracing::warn!(partitions = ?parts, error = %last_err, "committed offsets unavailable; the partitions are taken once the broker answers");
    None
}

/// The first offset of an input partition (0 if it cannot be read: then profiles ahead of
/// offset 0 are held back and the whole log is scored again, which repeats decisions exactly).
fn low_watermark(consumer: &BaseConsumer<ServiceContext>, topic: &str, p: i32) -> i64 {
    for attempt in 1..=LOOKUP_TRIES {
        match consumer.fetch_watermarks(topic, p, LOOKUP_TIMEOUT) {
            Ok((low, _)) => return low.max(0),
            Err(e) => {
                tracing::warn!(attempt, topic, partition = p, error = %e, "watermark lookup failed")
            }
        }
    }
    0
}

/// Where an input partition starts: the group's `committed` offset, else its first offset
/// (`low`, looked up only then), where `auto.offset.reset = earliest` would start.
fn start_offset(committed: Option<i64>, low: impl FnOnce() -> i64) -> i64 {
    match committed {
        Some(c) => c,
        None => low(),
    }
}

/// The distinct partition numbers of a list (several input topics share numbers).
fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl ServiceContext {
    fn set_assigned_gauge(&self) {
        let n = lock(&self.slots).len();
        self.shared.metrics.assigned.set(n as i64);
    }

    /// Adds a message to its partition's pending batch; hands the batch over when full.
    /// Returns an offset to seek the partition to when the broker skipped records (see
    /// [`StartGuard`]).
    fn dispatch(
        &self,
        m: &rdkafka::message::BorrowedMessage<'_>,
        topic: u16,
        received: Instant,
    ) -> Option<i64> {
        let mut slots = lock(&self.slots);
        let Some(slot) = slots.get_mut(&m.partition()) else {
            // Not (or no longer) ours: its offset is never stored, so its new owner reads it.
            return None;
        };
        if let Some(g) = slot.guards.get_mut(topic as usize) {
            match g.check(m.offset()) {
                Verdict::Take => {}
                Verdict::Drop => return None,
                Verdict::Seek(to) => {
                    self.shared.metrics.fetch_rewinds.inc();
                    return Some(to);
                }
                Verdict::Gap(1) => {
                    tracing::debug!(
                        partition = m.partition(),
                        offset = m.offset(),
                        "one offset without a record (a transaction marker)"
                    );
                }
                Verdict::Gap(n) => {
                    tracing::warn!(partition = m.partition(), offset = m.offset(), missing = n, "offsets without a record before this one (retention, compaction or transaction markers)");
                }
            }
        }
        if let Some(n) = slot.next.get_mut(topic as usize) {
            *n = (*n).max(m.offset() + 1);
        }
        slot.progress = received;
        slot.pending
            .push(topic, m.offset(), m.key(), m.payload(), received);
        if slot.pending.len() >= self.shared.cfg.kafka.max_batch {
            let batch = std::mem::take(&mut slot.pending);
            // Blocks while the task is behind: back-pressure reaches the poll loop.
            let _ = slot.tx.blocking_send(batch);
        }
        None
    }

    /// Hands every non-empty pending batch to its task.
    fn flush_pending(&self) {
        let mut slots = lock(&self.slots);
        for slot in slots.values_mut() {
            if !slot.pending.is_empty() {
                let batch = std::mem::take(&mut slot.pending);
                let _ = slot.tx.blocking_send(batch);
            }
        }
    }

    /// Removes the consumer-lag series of partitions this instance no longer owns.
    fn forget_lag(&self, parts: &[i32]) {
        for t in &self.shared.topics.inputs {
            for p in parts {
                let _ = self
                    .shared
                    .metrics
                    .consumer_lag
                    .remove_label_values(&[t.as_str(), &p.to_string()]);
            }
        }
    }

    /// Flushes, closes and waits for the tasks of `parts` (each finishes its queued batches and
    /// their acknowledgements), within the drain timeout.
    ///
    /// Returns the (partition, claim epoch) of each task that drained in time: their last
    /// reported offsets are still to be stored (see [`ServiceContext::store_offsets`]).
    fn drain_partitions(&self, parts: &[i32]) -> Vec<(i32, u64)> {
        self.forget_lag(parts);
        let mut tasks = Vec::new();
        {
            let mut slots = lock(&self.slots);
            for p in parts {
                if let Some(mut slot) = slots.remove(p) {
                    if !slot.pending.is_empty() {
                        let batch = std::mem::take(&mut slot.pending);
                        let _ = slot.tx.blocking_send(batch);
                    }
                    drop(slot.tx);
                    tasks.push((*p, slot.task, slot.claim));
                }
            }
        }
        let deadline = Instant::now() + self.drain_timeout;
        let mut drained = Vec::with_capacity(tasks.len());
        for (p, mut task, claim) in tasks {
            let left = deadline.saturating_duration_since(Instant::now());
            let done = self
                .rt
                .block_on(async { tokio::time::timeout(left, &mut task).await });
            // Drained (or given up on): the partition is no longer this assignment's. Its ack
            // loops may still be settling; what they report after this is not stored.
            claim.fence();
            if done.is_err() {
                // Stop it: a task left running would go on writing the changelog of a
                // partition that may already have a new owner.
                task.abort();
                tracing::warn!(partition = p, "partition did not drain in time; its uncommitted tail will be reprocessed by the next owner");
            } else {
                drained.push((p, claim.epoch));
            }
        }
        drained
    }

    /// Drops the tasks of `parts` without waiting or committing: their claims are fenced
    /// first, so nothing more is written for them even by work already under way.
    fn drop_partitions(&self, parts: &[i32]) {
        self.forget_lag(parts);
        let mut slots = lock(&self.slots);
        for p in parts {
            if let Some(slot) = slots.remove(p) {
                slot.claim.fence();
                slot.task.abort();
            }
        }
    }

    /// Stores every offset the tasks reported as acknowledged, if the assignment that
    /// reported it still holds the partition, or is one of `drained` (partition, claim epoch):
    /// a task drained on revoke or shutdown, whose last offsets the final commit carries. An
    /// earlier assignment's late report is counted in `walletguard_fenced_total{what="offsets"}`
    /// and dropped.
    fn store_offsets(&self, consumer: &BaseConsumer<Self>, drained: &[(i32, u64)]) {
        let rx = lock(&self.offsets_rx);
        let mut latest: HashMap<(u16, i32), i64> = HashMap::new();
        {
            let slots = lock(&self.slots);
            while let Ok(o) = rx.try_recv() {
                let current = slots
                    .get(&o.partition)
                    .is_some_and(|s| s.claim.epoch == o.epoch && s.claim.is_live())
                    || drained.contains(&(o.partition, o.epoch));
                if !current {
                    self.shared.fenced("offsets");
                    continue;
                }
                let e = latest.entry((o.topic, o.partition)).or_insert(o.next);
                *e = (*e).max(o.next);
            }
        }
        for ((t, p), next) in latest {
            let topic = &self.shared.topics.inputs[t as usize];
            // store_offset takes the offset of the last processed message; librdkafka commits
            // that + 1.
            if let Err(e) = consumer.store_offset(topic, p, next - 1) {
                tracing::debug!(topic = %topic, partition = p, error = %e, "offset not stored (partition no longer assigned)");
            }
        }
    }

    /// Commits what is stored (at-least-once), in `mode`, or the open transaction
    /// (exactly-once).
    fn commit(&self, consumer: &BaseConsumer<Self>, mode: CommitMode) {
        if self.shared.eos.is_some() {
            if let Err(e) = self.commit_transaction(consumer) {
                self.fail_or_rewind(e);
            }
        } else {
            if !self.shared.watchdog.clear_at(Instant::now()) {
                // Just back from a stall: the membership is in doubt until every claim is
                // fenced and the partitions are taken again.
                self.shared.fenced("commit");
                return;
            }
            match consumer.commit_consumer_state(mode) {
                Ok(()) => {}
                Err(RdError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "offset commit failed; the next commit retries")
                }
            }
        }
    }

    fn fail_or_rewind(&self, e: TxnError) {
        match e {
            TxnError::Abortable(msg) => {
                tracing::warn!(error = %msg, "transaction aborted; rewinding to the last commit");
                self.rewind.store(true, Ordering::SeqCst);
                self.shared.abandon.store(true, Ordering::SeqCst);
            }
            TxnError::Fatal(msg) => self.shared.fail(KafkaError::FatalTransaction(msg)),
        }
    }

    /// Commits the open transaction with the offsets of every batch produced into it, then
    /// opens the next one.
    fn commit_transaction(&self, consumer: &BaseConsumer<Self>) -> Result<(), TxnError> {
        let Some(eos) = &self.shared.eos else {
            return Ok(());
        };
        let _guard = eos.lock.blocking_write();
        let pending = eos.take();
        if pending.offsets.is_empty() {
            return Ok(());
        }
        let producer = &self.shared.producer;
        let timeout = Duration::from_secs(30);
        let mut tpl = TopicPartitionList::new();
        for ((t, p), next) in &pending.offsets {
            let topic = &self.shared.topics.inputs[*t as usize];
            tpl.add_partition_offset(topic, *p, Offset::Offset(*next))
                .map_err(|e| TxnError::Fatal(e.to_string()))?;
        }
        let meta = consumer
            .group_metadata()
            .ok_or_else(|| TxnError::Abortable("no consumer group metadata yet".into()))?;
        let result = producer
            .send_offsets_to_transaction(&tpl, &meta, timeout)
            .and_then(|()| producer.commit_transaction(timeout));
        match result {
            Ok(()) => {
                self.shared
                    .metrics
                    .transactions
                    .with_label_values(&["committed"])
                    .inc();
                let now = Instant::now();
                for (r, outputs) in pending.received {
                    self.shared
                        .metrics
                        .latency(outputs)
                        .observe(now.duration_since(r).as_secs_f64());
                }
                producer
                    .begin_transaction()
                    .map_err(|e| classify(e, producer))?;
                Ok(())
            }
            Err(e) => Err(classify(e, producer)),
        }
    }
}

enum TxnError {
    Abortable(String),
    Fatal(String),
}

/// Sorts a transaction error into abort-and-rewind or fatal, aborting when needed.
fn classify(e: RdError, producer: &FutureProducer) -> TxnError {
    let fatal = matches!(&e, RdError::Transaction(t) if t.is_fatal());
    if fatal {
        return TxnError::Fatal(e.to_string());
    }
    if let Err(abort_err) = producer.abort_transaction(Duration::from_secs(30)) {
        return TxnError::Fatal(format!("{e}; abort failed: {abort_err}"));
    }
    TxnError::Abortable(e.to_string())
}

/// How a session ended.
enum End {
    Shutdown,
    Rewind,
    /// The group was wedged: join again as a new member.
    Rejoin,
}

/// Runs the service until `opts.shutdown` is triggered (Ok) or a fatal error (Err). An aborted
/// transaction starts a new session from the last commit.
pub async fn run(opts: RunOptions) -> Result<RunSummary, KafkaError> {
    let mut summary = RunSummary::default();
    // The lists are read before the first event is scored and followed across sessions.
    topics::ensure(&opts.config).await?;
    let lists = Arc::new(crate::engine::lists::ListsCell::new());
    let reader =
        super::lists_topic::start(&opts.config.kafka, lists.clone(), opts.metrics.clone()).await?;
    let result = sessions(&opts, lists, &mut summary).await;
    tokio::task::spawn_blocking(move || reader.stop())
        .await
        .map_err(|e| KafkaError::Internal(e.to_string()))?;
    result.map(|_| summary)
}

async fn sessions(
    opts: &RunOptions,
    lists: Arc<crate::engine::lists::ListsCell>,
    summary: &mut RunSummary,
) -> Result<(), KafkaError> {
    loop {
        summary.sessions += 1;
        match session(opts, &lists).await? {
            End::Shutdown => return Ok(()),
            End::Rewind => {
                opts.metrics
                    .transactions
                    .with_label_values(&["aborted"])
                    .inc();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            End::Rejoin => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn session(
    opts: &RunOptions,
    lists: &Arc<crate::engine::lists::ListsCell>,
) -> Result<End, KafkaError> {
    let cfg = opts.config.clone();
    topics::ensure(&cfg).await?;
    let producer: FutureProducer = client_config(&cfg.kafka, Role::Producer)
        .create()
        .map_err(KafkaError::Client)?;
    let eos = cfg.kafka.delivery == Delivery::ExactlyOnce;
    if eos {
        let p = producer.clone();
        tokio::task::spawn_blocking(move || {
            p.init_transactions(Duration::from_secs(60))?;
            p.begin_transaction()
        })
        .await
        .map_err(|e| KafkaError::Internal(e.to_string()))?
        .map_err(|e| KafkaError::FatalTransaction(format!("init: {e}")))?;
    }
    let session_timeout_ms = consumer_setting(&cfg.kafka, "session.timeout.ms", 45_000);
    let heartbeat_ms = consumer_setting(&cfg.kafka, "heartbeat.interval.ms", 3_000);
    // Half the session: a stall that long may have cost the membership.
    let watchdog = Arc::new(Watchdog::new(Duration::from_millis(
        (session_timeout_ms / 2).max(200),
    )));
    let (shared, offsets_rx) = Shared::new(
        cfg,
        opts.engine.clone(),
        opts.metrics.clone(),
        opts.health.clone(),
        producer.clone(),
        eos,
        super::session::Process {
            lists: lists.clone(),
            stream: opts.stream.clone(),
            watchdog: watchdog.clone(),
        },
    );
    let shared = Arc::new(shared);
    let ticking_shared = shared.clone();
    let ticking = watchdog
        .spawn(
            |gap| {
                tracing::warn!(
                    gap_ms = gap.as_millis() as u64,
                    "the process stood still (paused, throttled or starved)"
                )
            },
            move |now| {
                let s = &ticking_shared;
                if let Some(age) = s.brokers.check(now, |n| s.publish_brokers_up(n)) {
                    tracing::warn!(
                        age_ms = age.as_millis() as u64,
                        "no broker statistics lately (the consumer thread is blocked or the process stood still); counted as no broker up until they resume"
                    );
                }
            },
        )
        .map_err(|e| KafkaError::Internal(format!("watchdog thread: {e}")))?;
    let ctx = ServiceContext {
        shared: shared.clone(),
        rt: tokio::runtime::Handle::current(),
        slots: Mutex::new(HashMap::new()),
        offsets_rx: Mutex::new(offsets_rx),
        // Drain within half the session timeout so the member is not expelled meanwhile.
        drain_timeout: Duration::from_millis(session_timeout_ms / 2),
        closing: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        stop: opts.shutdown.clone(),
        rewind: AtomicBool::new(false),
        rejoin: AtomicBool::new(false),
        epochs: AtomicU64::new(1),
        repair: Mutex::new(Repair::default()),
    };
    let consumer: BaseConsumer<ServiceContext> = client_config(&shared.cfg.kafka, Role::Consumer)
        .create_with_context(ctx)
        .map_err(KafkaError::Client)?;
    let inputs: Vec<&str> = shared
        .cfg
        .kafka
        .input_topics
        .iter()
        .map(|s| s.as_str())
        .collect();
    consumer.subscribe(&inputs).map_err(KafkaError::Client)?;
    opts.health.set_started(true);
    tracing::info!(
        brokers = %shared.cfg.kafka.brokers,
        group = %shared.cfg.kafka.group_id,
        delivery = ?shared.cfg.kafka.delivery,
        "consuming"
    );

    let stop = opts.shutdown.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread_shared = shared.clone();
    // After a stall, no partition is taken again until the client has had time to hear
    // from the coordinator (two heartbeats, and a second), and never later than a session.
    let confirm = Duration::from_millis(
        (2 * heartbeat_ms)
            .max(1_000)
            .saturating_add(1_000)
            .min(session_timeout_ms.max(1_000)),
    );
    std::thread::Builder::new()
        .name("wg-consumer".into())
        .spawn(move || {
            let r = consumer_loop(&thread_shared, consumer, &stop, confirm);
            let _ = done_tx.send(r);
        })
        .map_err(|e| KafkaError::Internal(format!("consumer thread: {e}")))?;
    let end = done_rx
        .await
        .map_err(|_| KafkaError::Internal("consumer thread panicked".into()));
    watchdog.stop();
    let _ = tokio::task::spawn_blocking(move || ticking.join()).await;
    let end = end?;
    opts.health.set_started(false);
    if let Some(e) = shared.take_fatal() {
        return Err(e);
    }
    end
}

/// A consumer property as configured (`[kafka.consumer]`, else `[kafka.librdkafka]`), else
/// librdkafka's default `default`.
fn consumer_setting(k: &super::KafkaConfig, key: &str, default: u64) -> u64 {
    k.consumer
        .get(key)
        .or_else(|| k.librdkafka.get(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn consumer_loop(
    shared: &Arc<Shared>,
    consumer: BaseConsumer<ServiceContext>,
    stop: &Shutdown,
    confirm: Duration,
) -> Result<End, KafkaError> {
    let ctx = consumer.context().clone();
    let commit_every = Duration::from_millis(shared.cfg.kafka.commit_interval_ms);
    let mut last_commit = Instant::now();
    let topic_index: HashMap<String, u16> = shared
        .topics
        .inputs
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u16))
        .collect();
    // One clock read per poll burst: the receipt time of a burst's later messages is then a
    // little early, which can only overstate latency.
    let handle = |m: &rdkafka::message::BorrowedMessage<'_>, received: Instant| {
        let Some(t) = topic_index.get(m.topic()) else {
            return;
        };
        if let Some(to) = ctx.dispatch(m, *t, received) {
            tracing::info!(
                topic = m.topic(),
                partition = m.partition(),
                asked = to,
                got = m.offset(),
                "the broker skipped past the next offset; fetching from earlier"
            );
            if let Err(e) = consumer.seek(
                m.topic(),
                m.partition(),
                Offset::Offset(to),
                Duration::from_secs(5),
            ) {
                tracing::warn!(partition = m.partition(), error = %e, "seek failed");
            }
        }
    };
    let poll_error = |e: RdError| {
        tracing::warn!(error = %e, "consumer error");
    };
    while !stop.is_triggered()
        && !shared.abandon.load(Ordering::SeqCst)
        && !ctx.rewind.load(Ordering::SeqCst)
        && !ctx.rejoin.load(Ordering::SeqCst)
    {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let received = Instant::now();
                handle(&m, received);
                // Take what is already fetched without waiting, so batches fill under load.
                for _ in 0..shared.cfg.kafka.max_batch * 4 {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => handle(&m, received),
                        Some(Err(e)) => poll_error(e),
                        None => break,
                    }
                }
            }
            Some(Err(e)) => poll_error(e),
            None => {}
        }
        if shared.watchdog.suspect() {
            ctx.on_stall(confirm);
        }
        ctx.flush_pending();
        ctx.store_offsets(&consumer, &[]);
        if last_commit.elapsed() >= commit_every {
            // At-least-once commits asynchronously (a failure is retried by the next one);
            // a transaction commit waits for the broker.
            let mode = if shared.eos.is_some() {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            ctx.commit(&consumer, mode);
            last_commit = Instant::now();
        }
        ctx.reconcile(&consumer);
    }

    if shared.abandon.load(Ordering::SeqCst) || ctx.rewind.load(Ordering::SeqCst) {
        // Rewind or fatal: leave without committing anything more.
        let all: Vec<i32> = lock(&ctx.slots).keys().copied().collect();
        ctx.drop_partitions(&all);
        ctx.closing.store(true, Ordering::SeqCst);
        drop(consumer);
        let rewind = ctx.rewind.load(Ordering::SeqCst) && !shared.failed();
        return Ok(if rewind { End::Rewind } else { End::Shutdown });
    }
    if ctx.rejoin.load(Ordering::SeqCst) && !stop.is_triggered() {
        // Wedged, holding nothing: close (leaving the group) and join again.
        ctx.closing.store(true, Ordering::SeqCst);
        drop(consumer);
        return Ok(End::Rejoin);
    }

    // Orderly shutdown: drain, flush, commit, close.
    let deadline = Instant::now() + Duration::from_secs(shared.cfg.kafka.shutdown_timeout_s);
    ctx.stopping.store(true, Ordering::SeqCst);
    tracing::info!("stopping: draining partitions");
    let all: Vec<i32> = lock(&ctx.slots).keys().copied().collect();
    let drained = ctx.drain_partitions(&all);
    ctx.store_offsets(&consumer, &drained);
    let left = deadline.saturating_duration_since(Instant::now());
    if let Err(e) = shared.producer.flush(left) {
        tracing::warn!(error = %e, "producer flush incomplete");
    }
    ctx.commit(&consumer, CommitMode::Sync);
    ctx.closing.store(true, Ordering::SeqCst);
    ctx.set_assigned_gauge();
    drop(consumer);
    if Instant::now() > deadline {
        return Err(KafkaError::ShutdownTimeout(
            shared.cfg.kafka.shutdown_timeout_s,
        ));
    }
    tracing::info!("stopped cleanly");
    Ok(End::Shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_broker_with_waiting_requests_is_down() {
        assert!(broker_answering("UP", 0, 60_000_000), "idle, nothing asked");
        assert!(broker_answering("UP", 3, 200_000), "answering");
        assert!(
            broker_answering("UP", 1, -1),
            "never heard from yet, just connected"
        );
        assert!(
            !broker_answering("UP", 2, 10_000_001),
            "silent 10 s with requests waiting"
        );
        assert!(!broker_answering("DOWN", 0, 0));
        assert!(!broker_answering("CONNECT", 0, 0));
    }

    #[test]
    fn a_partition_starts_at_its_committed_offset_else_at_its_first() {
        assert_eq!(
            start_offset(Some(42), || panic!("no lookup when committed")),
            42
        );
        assert_eq!(
            start_offset(Some(0), || panic!("no lookup when committed")),
            0,
            "a committed 0 is a committed offset"
        );
        assert_eq!(start_offset(None, || 17), 17);
    }

    #[test]
    fn partitions_of_lists_each_number_once_in_order() {
        let mut tpl = TopicPartitionList::new();
        assert!(partitions_of(&tpl).is_empty());
        for (t, p) in [("b", 3), ("a", 1), ("a", 3), ("b", 0), ("a", 0)] {
            tpl.add_partition(t, p);
        }
        assert_eq!(partitions_of(&tpl), vec![0, 1, 3]);
    }
}
