//! At-least-once acknowledgement of a partition's work, in order: a batch's outputs, then
//! the changelog write that follows it, then the input offsets that wait for that write.
//!
//! The loops are generic over `Acks` (what a delivery is and how it is awaited) so that the
//! ordering can be tested with fake deliveries; the session's `Shared` is the real one,
//! with rdkafka's delivery futures.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::producer::DeliveryFuture;
use tokio::sync::mpsc;

use super::produce;
use super::session::{Claim, Shared, StoredOffset};

/// What the ack loops need from a session.
pub(crate) trait Acks: Send + Sync + 'static {
    /// One record's pending delivery.
    type Delivery: Send + 'static;

    /// Awaits `deliveries` in order until each succeeded; false when the session is ending
    /// (the offsets behind them must not be stored).
    fn settle(&self, deliveries: Vec<Self::Delivery>) -> impl Future<Output = bool> + Send;

    /// Whether the session abandoned its partitions: no more offsets are reported.
    fn abandoned(&self) -> bool;

    /// Observes the end-to-end latency of one message, with or without outputs.
    fn observe_latency(&self, outputs: bool, seconds: f64);

    /// Reports an offset whose messages are all done, unless `claim` was fenced meanwhile.
    fn report(&self, claim: &Claim, o: StoredOffset);
}

impl Acks for Shared {
    type Delivery = DeliveryFuture;

    fn settle(&self, deliveries: Vec<DeliveryFuture>) -> impl Future<Output = bool> + Send {
        produce::await_deliveries(&self.producer, &self.metrics, deliveries)
    }

    fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
    }

    fn observe_latency(&self, outputs: bool, seconds: f64) {
        self.metrics.latency(outputs).observe(seconds);
    }

    fn report(&self, claim: &Claim, o: StoredOffset) {
        self.report_offset(claim, o);
    }
}

/// A batch whose outputs are produced but not yet acknowledged.
pub(crate) struct InFlight<D> {
    /// Its alerts, commands, decisions and dead letters.
    pub outputs: Vec<D>,
    /// Receipt of each message, and whether it had outputs: its latency ends when `outputs`
    /// (and every earlier batch's) are acknowledged.
    pub received: Vec<(Instant, bool)>,
    /// A changelog write, and the input offsets stored once it and `outputs` are acknowledged.
    pub durable: Option<Durable<D>>,
}

/// A changelog write and the offsets that wait for it.
pub(crate) struct Durable<D> {
    /// The changelog records' deliveries.
    pub changelog: Vec<D>,
    /// The next offset per input topic that may be stored once they are acknowledged.
    pub offsets: Vec<(u16, i64)>,
}

/// Awaits each batch's outputs in order, observing its latency, then passes its changelog
/// write on to a second in-order loop, which stores the offsets once that is acknowledged
/// too. Two loops, so that a large changelog write delays only offset storage, never the
/// acknowledgement (and measured latency) of the alerts and commands behind it.
///
/// Both end when `claim` is fenced: the offsets of an assignment that ended are never stored,
/// even if its deliveries complete later (the next owner decides those events again).
pub(crate) async fn ack_loop<A: Acks>(
    acks: Arc<A>,
    p: i32,
    claim: Arc<Claim>,
    mut rx: mpsc::Receiver<InFlight<A::Delivery>>,
) {
    let (dtx, drx) = mpsc::unbounded_channel::<Durable<A::Delivery>>();
    let durable = tokio::spawn(durable_loop(acks.clone(), p, claim.clone(), drx));
    while let Some(inf) = rx.recv().await {
        if !acks.settle(inf.outputs).await {
            break;
        }
        if acks.abandoned() || !claim.is_live() {
            break;
        }
        let now = Instant::now();
        for (r, outputs) in inf.received {
            acks.observe_latency(outputs, now.duration_since(r).as_secs_f64());
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
async fn durable_loop<A: Acks>(
    acks: Arc<A>,
    p: i32,
    claim: Arc<Claim>,
    mut rx: mpsc::UnboundedReceiver<Durable<A::Delivery>>,
) {
    while let Some(d) = rx.recv().await {
        if !acks.settle(d.changelog).await {
            return;
        }
        if acks.abandoned() {
            return;
        }
        for (topic, next) in d.offsets {
            acks.report(
                &claim,
                StoredOffset {
                    epoch: claim.epoch,
                    topic,
                    partition: p,
                    next,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// Deliveries are oneshot channels: sent is acknowledged, dropped is a producer gone.
    #[derive(Default)]
    struct Fake {
        abandon: AtomicBool,
        latencies: Mutex<Vec<bool>>,
        reported: Mutex<Vec<(u16, i32, i64)>>,
    }

    impl Acks for Fake {
        type Delivery = oneshot::Receiver<()>;

        async fn settle(&self, deliveries: Vec<Self::Delivery>) -> bool {
            for d in deliveries {
                if d.await.is_err() {
                    return false;
                }
            }
            true
        }

        fn abandoned(&self) -> bool {
            self.abandon.load(Ordering::SeqCst)
        }

        fn observe_latency(&self, outputs: bool, _seconds: f64) {
            self.latencies.lock().expect("unpoisoned").push(outputs);
        }

        fn report(&self, claim: &Claim, o: StoredOffset) {
            if !claim.is_live() {
                return;
            }
            assert_eq!(o.epoch, claim.epoch);
            let mut r = self.reported.lock().expect("unpoisoned");
            r.push((o.topic, o.partition, o.next));
        }
    }

    impl Fake {
        fn reported(&self) -> Vec<(u16, i32, i64)> {
            self.reported.lock().expect("unpoisoned").clone()
        }

        fn latencies(&self) -> Vec<bool> {
            self.latencies.lock().expect("unpoisoned").clone()
        }
    }

    /// A pending delivery and the switch that acknowledges it.
    fn delivery() -> (oneshot::Sender<()>, oneshot::Receiver<()>) {
        oneshot::channel()
    }

    /// Lets every task run until all wait (the clock is paused, so the sleep ends only then).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    fn ack(tx: oneshot::Sender<()>) {
        tx.send(()).expect("the loop awaits it");
    }

    #[tokio::test(start_paused = true)]
    async fn offsets_wait_for_the_changelog_before_them_and_come_in_order() {
        let fake = Arc::new(Fake::default());
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(ack_loop(fake.clone(), 3, Claim::new(1), rx));
        let now = Instant::now();
        let (a_out, a_out_rx) = delivery();
        let (a_cl, a_cl_rx) = delivery();
        let (b_out, b_out_rx) = delivery();
        let (b_cl, b_cl_rx) = delivery();
        let (c_out, c_out_rx) = delivery();
        let batches = [
            InFlight {
                outputs: vec![a_out_rx],
                received: vec![(now, true), (now, false)],
                durable: Some(Durable {
                    changelog: vec![a_cl_rx],
                    offsets: vec![(0, 10)],
                }),
            },
            InFlight {
                outputs: vec![b_out_rx],
                received: vec![(now, true)],
                durable: Some(Durable {
                    changelog: vec![b_cl_rx],
                    offsets: vec![(0, 20), (1, 5)],
                }),
            },
            // No changelog write: its offsets ride on a later one.
            InFlight {
                outputs: vec![c_out_rx],
                received: vec![(now, false)],
                durable: None,
            },
        ];
        for b in batches {
            assert!(tx.send(b).await.is_ok());
        }
        // Everything after the first batch's outputs is acknowledged: nothing moves.
        ack(b_out);
        ack(b_cl);
        ack(c_out);
        settle().await;
        assert!(fake.latencies().is_empty(), "batch A's outputs come first");
        assert!(fake.reported().is_empty());
        // A's outputs: every batch's latency ends, but A's changelog still holds all offsets.
        ack(a_out);
        settle().await;
        assert_eq!(fake.latencies(), vec![true, false, true, false]);
        assert!(
            fake.reported().is_empty(),
            "A's changelog is not acknowledged"
        );
        // A's changelog: its offsets, then B's (already acknowledged), in order.
        ack(a_cl);
        settle().await;
        assert_eq!(fake.reported(), vec![(0, 3, 10), (0, 3, 20), (1, 3, 5)]);
        drop(tx);
        assert!(task.await.is_ok(), "the loops end when the channel closes");
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_session_reports_no_more_offsets() {
        let fake = Arc::new(Fake::default());
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(ack_loop(fake.clone(), 0, Claim::new(1), rx));
        let (a_out, a_out_rx) = delivery();
        let (a_cl, a_cl_rx) = delivery();
        let a = InFlight {
            outputs: vec![a_out_rx],
            received: vec![(Instant::now(), true)],
            durable: Some(Durable {
                changelog: vec![a_cl_rx],
                offsets: vec![(0, 7)],
            }),
        };
        assert!(tx.send(a).await.is_ok());
        ack(a_out);
        settle().await;
        assert_eq!(fake.latencies(), vec![true]);
        fake.abandon.store(true, Ordering::SeqCst);
        ack(a_cl);
        settle().await;
        assert!(fake.reported().is_empty());
        // The next batch ends the ack loop, though its channel is still open.
        let (b_out, b_out_rx) = delivery();
        let b = InFlight {
            outputs: vec![b_out_rx],
            received: vec![(Instant::now(), true)],
            durable: None,
        };
        assert!(tx.send(b).await.is_ok());
        ack(b_out);
        assert!(task.await.is_ok());
        assert_eq!(fake.latencies(), vec![true], "no latency once abandoned");
        assert!(fake.reported().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_that_never_settles_stops_the_offsets_behind_it() {
        let fake = Arc::new(Fake::default());
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(ack_loop(fake.clone(), 1, Claim::new(1), rx));
        let (a_out, a_out_rx) = delivery();
        let (a_cl, a_cl_rx) = delivery();
        let (b_out, b_out_rx) = delivery();
        let (b_cl, b_cl_rx) = delivery();
        let batches = [
            InFlight {
                outputs: vec![a_out_rx],
                received: Vec::new(),
                durable: Some(Durable {
                    changelog: vec![a_cl_rx],
                    offsets: vec![(0, 1)],
                }),
            },
            InFlight {
                outputs: vec![b_out_rx],
                received: Vec::new(),
                durable: Some(Durable {
                    changelog: vec![b_cl_rx],
                    offsets: vec![(0, 2)],
                }),
            },
        ];
        for b in batches {
            assert!(tx.send(b).await.is_ok());
        }
        ack(a_out);
        ack(b_out);
        ack(b_cl);
        // The producer went away before A's changelog was acknowledged.
        drop(a_cl);
        settle().await;
        drop(tx);
        assert!(task.await.is_ok());
        assert!(fake.reported().is_empty(), "B's offsets never pass A's");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_assignment_reports_no_offsets_even_when_its_writes_complete() {
        let fake = Arc::new(Fake::default());
        let (tx, rx) = mpsc::channel(8);
        let claim = Claim::new(4);
        let task = tokio::spawn(ack_loop(fake.clone(), 2, claim.clone(), rx));
        let (a_out, a_out_rx) = delivery();
        let (a_cl, a_cl_rx) = delivery();
        let a = InFlight {
            outputs: vec![a_out_rx],
            received: vec![(Instant::now(), true)],
            durable: Some(Durable {
                changelog: vec![a_cl_rx],
                offsets: vec![(0, 9)],
            }),
        };
        assert!(tx.send(a).await.is_ok());
        ack(a_out);
        settle().await;
        // The group gave the partition away (a stall, a lost assignment) before the changelog
        // write was acknowledged; it completes later.
        claim.fence();
        ack(a_cl);
        settle().await;
        assert!(fake.reported().is_empty(), "a fenced claim stores nothing");
        drop(tx);
        assert!(task.await.is_ok());
    }
}
