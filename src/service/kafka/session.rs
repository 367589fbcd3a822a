//! What the consumer thread and the partition tasks of one session share: the config, engine,
//! metrics and producer (`Shared`), the channel that carries acknowledged offsets
//! (`StoredOffset`) back to the consumer thread, the exactly-once bookkeeping (`Eos`), and
//! the session's fatal error.
//!
//! It knows nothing of either side (and imports neither): the consumer thread builds it and
//! reads it, the partition tasks report into it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;

use crate::service::config::Config;
use crate::service::http::Health;
use crate::service::live::LiveCell;
use crate::service::metrics::Metrics;

use super::records::OutputTopics;
use super::KafkaError;

/// An offset whose message's outputs are all acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredOffset {
    /// The [`Claim::epoch`] of the assignment whose task reported it: the consumer thread
    /// stores it only while that same assignment holds the partition.
    pub epoch: u64,
    /// Index of the input topic in `kafka.input_topics`.
    pub topic: u16,
    /// The partition.
    pub partition: i32,
    /// The next offset to consume: every message before it is done.
    pub next: i64,
}

/// One assignment of one partition to this process, as its task and ack loops see it.
///
/// Why: after a stall (a paused VM, CPU throttling, a long I/O wait) a process may go on
/// running tasks for partitions the group has already given to another instance. Kafka fences
/// a stale member's offset commits, but nothing fences its changelog and output writes in
/// at-least-once mode. So every write checks its claim first: the consumer thread fences a
/// claim *before* it gives the partition up (lost, or a stall long enough to doubt the
/// membership), and after a graceful revoke once the task has drained. A fenced claim never
/// becomes live again; a new assignment of the same partition gets a new claim with a new
/// epoch, so late offsets of the old one are told apart from the new one's.
#[derive(Debug)]
pub(crate) struct Claim {
    /// Unique within the process, increasing with every assignment.
    pub epoch: u64,
    live: AtomicBool,
}

impl Claim {
    /// A live claim with epoch `epoch`.
    pub fn new(epoch: u64) -> Arc<Claim> {
        Arc::new(Claim {
            epoch,
            live: AtomicBool::new(true),
        })
    }

    /// Whether the partition is still this assignment's to write for.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Ends the claim; true if it was live.
    pub fn fence(&self) -> bool {
        self.live.swap(false, Ordering::SeqCst)
    }
}

/// What a write may do now, by [`Shared::gate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Write.
    Open,
    /// The process just came back from a stall and the watchdog has not yet judged it: wait.
    Wait,
    /// The claim was fenced: write nothing more for this assignment.
    Fenced,
}

/// Watches for stalls of the whole process: a thread ticks every [`Watchdog::TICK`]; a tick
/// that comes [`Watchdog::threshold`] late or more means every thread (librdkafka's heartbeat
/// thread too) stood still that long, long enough that the group may have expelled this
/// member. Writers also check that the last tick is recent, which closes the window between a
/// process resuming and the watchdog thread noticing.
#[derive(Debug)]
pub(crate) struct Watchdog {
    origin: Instant,
    /// Milliseconds since `origin` of the last tick.
    last_tick_ms: AtomicU64,
    /// A stall of `threshold` or more was seen and not yet handled by the consumer thread.
    suspect: AtomicBool,
    /// The gap that makes a stall (half the session timeout).
    threshold: Duration,
    stop: AtomicBool,
}

impl Watchdog {
    /// How often the watchdog thread ticks.
    pub const TICK: Duration = Duration::from_millis(100);

    /// A watchdog that calls a gap of `threshold` a stall.
    pub fn new(threshold: Duration) -> Watchdog {
        Watchdog {
            origin: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            suspect: AtomicBool::new(false),
            threshold,
            stop: AtomicBool::new(false),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// One tick at `now`; returns the gap since the previous one when it makes a stall.
    pub fn tick(&self, now: Instant) -> Option<Duration> {
        let now_ms = self.ms(now);
        let last = self.last_tick_ms.load(Ordering::SeqCst);
        let gap = Duration::from_millis(now_ms.saturating_sub(last));
        let stalled = gap >= self.threshold;
        if stalled {
            // Suspect first, then the fresh tick: a writer never sees a fresh tick without it.
            self.suspect.store(true, Ordering::SeqCst);
        }
        self.last_tick_ms.store(now_ms, Ordering::SeqCst);
        stalled.then_some(gap)
    }

    /// Whether writes may go ahead at `now`: no stall waits to be handled, and the watchdog
    /// ticked recently (the process is not just now resuming).
    pub fn clear_at(&self, now: Instant) -> bool {
        let fresh = self.threshold.min(Duration::from_secs(1));
        !self.suspect.load(Ordering::SeqCst)
            && self
                .ms(now)
                .saturating_sub(self.last_tick_ms.load(Ordering::SeqCst))
                < fresh.as_millis() as u64
    }

    /// Whether a stall waits to be handled.
    pub fn suspect(&self) -> bool {
        self.suspect.load(Ordering::SeqCst)
    }

    /// The consumer thread handled the stall (it fenced every claim).
    pub fn handled(&self) {
        self.suspect.store(false, Ordering::SeqCst);
    }

    /// Runs the ticking thread until [`Watchdog::stop`]; `on_stall` is called with each
    /// stall's length, and `on_tick` with the time of every tick.
    pub fn spawn(
        self: &Arc<Self>,
        on_stall: impl Fn(Duration) + Send + 'static,
        on_tick: impl Fn(Instant) + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let w = self.clone();
        w.tick(Instant::now());
        std::thread::Builder::new()
            .name("wg-watchdog".into())
            .spawn(move || {
                while !w.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Self::TICK);
                    let now = Instant::now();
                    if let Some(gap) = w.tick(now) {
                        on_stall(gap);
                    }
                    on_tick(now);
                }
            })
    }

    /// Ends the ticking thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How often librdkafka reports statistics to the consumer (`statistics.interval.ms`).
pub(crate) const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// The freshness of the brokers' state behind `walletguard_kafka_brokers_up` and readiness.
/// librdkafka's statistics, its only source, are served only while the consumer thread polls;
/// when that thread is blocked (a committed-offset lookup waiting out its timeout in an
/// outage), the last report would stand for as long as the block lasts. So a report older
/// than three intervals counts as no broker up, until the next report says otherwise. Why:
/// in a 100-fault soak on the mock broker the gauge stayed above 0 through a whole 30 s
/// outage, and the lookups it gates went on blocking.
pub(crate) struct BrokerReports {
    origin: Instant,
    stale_after: Duration,
    state: Mutex<ReportState>,
}

#[derive(Debug, Default)]
struct ReportState {
    /// Milliseconds since `origin` of the last report.
    last_ms: u64,
    /// Whether the last report has been declared stale.
    stale: bool,
}

impl BrokerReports {
    /// Reports older than `stale_after` count as no broker up.
    pub fn new(stale_after: Duration) -> BrokerReports {
        BrokerReports {
            origin: Instant::now(),
            stale_after,
            state: Mutex::new(ReportState::default()),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// A statistics report at `now` saw `up` brokers answering; `publish` sets the gauge and
    /// readiness under the same lock as [`BrokerReports::check`], so a stale verdict never
    /// overwrites a fresher report.
    pub fn report(&self, now: Instant, up: usize, publish: impl FnOnce(usize)) {
        let mut s = lock(&self.state);
        s.last_ms = self.ms(now);
        s.stale = false;
        publish(up);
    }

    /// At `now`: if the last report has just become stale, calls `publish(0)` and returns
    /// how old it is (once per stale spell).
    pub fn check(&self, now: Instant, publish: impl FnOnce(usize)) -> Option<Duration> {
        let mut s = lock(&self.state);
        let age = Duration::from_millis(self.ms(now).saturating_sub(s.last_ms));
        if s.stale || age <= self.stale_after {
            return None;
        }
        s.stale = true;
        publish(0);
        Some(age)
    }
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

/// The fencing rule: nothing is written for a fenced claim, and nothing while a stall waits
/// for the consumer thread's judgement (which fences every claim it held).
pub(crate) fn gate(claim: &Claim, watchdog: &Watchdog, now: Instant) -> Gate {
    if !claim.is_live() {
        Gate::Fenced
    } else if !watchdog.clear_at(now) {
        Gate::Wait
    } else if claim.is_live() {
        Gate::Open
    } else {
        // Fenced while the watchdog was read.
        Gate::Fenced
    }
}

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing is left half-updated under these locks, so a poisoned one is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a session is given besides its config and clients: the lists table and the alert
/// stream hub (which outlive it), and its stall watchdog.
pub(crate) struct Process {
    /// Stalls of the whole process (see [`Watchdog`]).
    pub watchdog: Arc<Watchdog>,
    /// The allow and block lists.
    pub lists: Arc<crate::engine::lists::ListsCell>,
    /// The alert stream hub, when `/alerts/stream` is on.
    pub stream: Option<Arc<crate::service::channels::alert_stream::AlertHub>>,
}

/// What the consumer thread and the partition tasks share.
pub(crate) struct Shared {
    /// The startup config (`[kafka]` is read from it).
    pub cfg: Config,
    /// The engine, replaceable by a config reload.
    pub engine: Arc<LiveCell>,
    /// Where metrics go.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// The producer of outputs and changelog.
    pub producer: FutureProducer,
    /// The topics, resolved once.
    pub topics: OutputTopics,
    /// The allow and block lists every partition scores against (see [`super::lists`]).
    pub lists: Arc<crate::engine::lists::ListsCell>,
    /// Where alerts are published for `GET /alerts/stream`, when it is on.
    pub stream: Option<Arc<crate::service::channels::alert_stream::AlertHub>>,
    /// Exactly-once bookkeeping; `None` at-least-once.
    pub eos: Option<Eos>,
    /// Set when the session ends without committing (rewind, fatal error, lost partitions):
    /// tasks stop producing and report no more offsets.
    pub abandon: AtomicBool,
    /// Stalls of the whole process (see [`Watchdog`]).
    pub watchdog: Arc<Watchdog>,
    /// How fresh the brokers' reported state is (see [`BrokerReports`]).
    pub brokers: BrokerReports,
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
        engine: Arc<LiveCell>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        producer: FutureProducer,
        eos: bool,
        process: Process,
    ) -> (Shared, std_mpsc::Receiver<StoredOffset>) {
        let Process {
            lists,
            stream,
            watchdog,
        } = process;
        let (offsets_tx, offsets_rx) = std_mpsc::channel();
        let shared = Shared {
            topics: OutputTopics::new(&cfg.kafka, &cfg.shadow),
            eos: eos.then(Eos::default),
            abandon: AtomicBool::new(false),
            watchdog,
            brokers: BrokerReports::new(3 * STATS_INTERVAL),
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

    /// Reports an acknowledged offset to the consumer thread, unless `claim` was fenced
    /// (counted in `walletguard_fenced_total{what="offsets"}`).
    pub fn report_offset(&self, claim: &Claim, o: StoredOffset) {
        if !claim.is_live() {
            self.fenced("offsets");
            return;
        }
        let _ = lock(&self.offsets_tx).send(o);
    }

    /// Publishes how many brokers answer: `walletguard_kafka_brokers_up` and readiness.
    pub fn publish_brokers_up(&self, up: usize) {
        self.metrics.brokers_up.set(up as i64);
        self.health.set_brokers_up(up > 0);
    }

    /// Counts a write or commit refused because its claim was fenced.
    pub fn fenced(&self, what: &str) {
        self.metrics.fenced.with_label_values(&[what]).inc();
    }

    /// Whether a write for `claim` may go ahead now.
    pub fn gate(&self, claim: &Claim) -> Gate {
        gate(claim, &self.watchdog, Instant::now())
    }

    /// Waits until a write for `claim` may go ahead (true) or the claim is fenced or the
    /// session abandoned (false).
    pub async fn writable(&self, claim: &Claim) -> bool {
        loop {
            if self.abandon.load(Ordering::SeqCst) {
                return false;
            }
            match self.gate(claim) {
                Gate::Open => return true,
                Gate::Fenced => return false,
                Gate::Wait => tokio::time::sleep(Watchdog::TICK / 2).await,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_claim_never_writes_again() {
        let w = Watchdog::new(Duration::from_secs(3));
        let t0 = Instant::now();
        w.tick(t0);
        let c = Claim::new(7);
        assert_eq!(gate(&c, &w, t0), Gate::Open);
        assert!(c.fence());
        assert!(!c.fence(), "fencing twice reports it once");
        assert_eq!(gate(&c, &w, t0), Gate::Fenced);
        w.tick(t0 + Duration::from_millis(100));
        assert_eq!(gate(&c, &w, t0 + Duration::from_millis(100)), Gate::Fenced);
    }

    #[test]
    fn writes_wait_from_a_stall_until_it_is_handled() {
        let w = Watchdog::new(Duration::from_secs(3));
        let t0 = Instant::now();
        w.tick(t0);
        let c = Claim::new(1);
        // Resumed 12 s later: before the watchdog thread has run, the last tick is stale.
        let resumed = t0 + Duration::from_secs(12);
        assert_eq!(gate(&c, &w, resumed), Gate::Wait);
        // The watchdog ticks and sees the stall: still no write until it is handled.
        assert_eq!(w.tick(resumed), Some(Duration::from_secs(12)));
        assert!(w.suspect());
        assert_eq!(gate(&c, &w, resumed), Gate::Wait);
        // The consumer thread fences every claim it held, then clears the suspicion.
        c.fence();
        w.handled();
        assert_eq!(gate(&c, &w, resumed), Gate::Fenced);
        assert_eq!(gate(&Claim::new(2), &w, resumed), Gate::Open);
    }

    #[test]
    fn a_report_older_than_its_limit_counts_as_no_broker_up() {
        let r = BrokerReports::new(Duration::from_secs(15));
        let t0 = r.origin;
        let gauge = std::cell::Cell::new(-1i64);
        let set = |n: usize| gauge.set(n as i64);
        r.report(t0 + Duration::from_secs(1), 3, set);
        assert_eq!(gauge.get(), 3);
        assert_eq!(
            r.check(t0 + Duration::from_secs(16), set),
            None,
            "15 s is not stale yet"
        );
        assert_eq!(gauge.get(), 3);
        let age = r.check(t0 + Duration::from_secs(17), set);
        assert_eq!(age, Some(Duration::from_millis(16_000)));
        assert_eq!(gauge.get(), 0, "a stale report is no broker up");
        gauge.set(-1);
        assert_eq!(
            r.check(t0 + Duration::from_secs(20), set),
            None,
            "declared once per spell"
        );
        assert_eq!(gauge.get(), -1);
        r.report(t0 + Duration::from_secs(21), 2, set);
        assert_eq!(gauge.get(), 2, "a fresh report stands again");
        assert_eq!(r.check(t0 + Duration::from_secs(30), set), None);
    }

    #[test]
    fn a_short_gap_is_not_a_stall() {
        let w = Watchdog::new(Duration::from_secs(3));
        let t0 = Instant::now();
        w.tick(t0);
        let c = Claim::new(1);
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(gate(&c, &w, later), Gate::Wait, "a stale tick holds writes");
        assert_eq!(w.tick(later), None);
        assert_eq!(gate(&c, &w, later), Gate::Open);
        assert!(!w.suspect());
    }
}
