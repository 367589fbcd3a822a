//! Producing a batch's records without ever dropping one: enqueue with retry on a full queue
//! ([`send_all`]), and await deliveries in order, producing a failed one again
//! ([`await_deliveries`]). The records themselves are built in [`super::records`].

use std::time::Duration;

use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::service::metrics::Metrics;

use super::records::{OutBatch, OutputTopics, Route};

/// Enqueues every record of `batch`, in order, and returns their delivery futures.
///
/// On a full local queue it waits and retries (counted in
/// `walletguard_producer_retries_total{reason="queue_full"}`); a record is never dropped. Any
/// other enqueue error is logged, counted and retried after a pause, because dropping it would
/// break the delivery guarantee: the partition stalls visibly instead.
pub async fn send_all(
    producer: &FutureProducer,
    topics: &OutputTopics,
    routes: &[Route],
    metrics: &Metrics,
    batch: &OutBatch,
    futures: &mut Vec<DeliveryFuture>,
) {
    for r in batch.records(topics, routes) {
        let topic = r.topic;
        let mut attempt = 0u32;
        loop {
            let rec = r.to_future_record();
            match producer.send_result(rec) {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    metrics
                        .producer_retries
                        .with_label_values(&["queue_full"])
                        .inc();
                    // The queue drains as the brokers acknowledge; a short pause is enough.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    attempt += 1;
                    metrics.producer_errors.with_label_values(&[topic]).inc();
                    if attempt == 1 || attempt % 100 == 0 {
                        tracing::error!(topic, error = %e, attempt, "cannot enqueue output record; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Awaits deliveries in order. A failed delivery is produced again from the returned message
/// until it succeeds (counted in `walletguard_producer_errors_total` and
/// `walletguard_producer_retries_total{reason="delivery_failed"}`). Returns false when the
/// producer went away (the session is ending; the batch's offsets must not be stored).
pub async fn await_deliveries(
    producer: &FutureProducer,
    metrics: &Metrics,
    futures: Vec<DeliveryFuture>,
) -> bool {
    for f in futures {
        let mut f = f;
        loop {
            match f.await {
                Ok(Ok(_)) => break,
                Ok(Err((e, msg))) => {
                    use rdkafka::message::Message;
                    let topic = msg.topic().to_owned();
                    metrics.producer_errors.with_label_values(&[&topic]).inc();
                    metrics
                        .producer_retries
                        .with_label_values(&["delivery_failed"])
                        .inc();
                    tracing::warn!(topic, error = %e, "delivery failed; producing again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let mut rec: FutureRecord<'_, [u8], [u8]> =
                        FutureRecord::to(&topic).partition(msg.partition());
                    if let Some(p) = msg.payload() {
                        rec = rec.payload(p);
                    }
                    if let Some(k) = msg.key() {
                        rec = rec.key(k);
                    }
                    if let Some(h) = msg.headers() {
                        rec = rec.headers(h.clone());
                    }
                    loop {
                        match producer.send_result(rec) {
                            Ok(nf) => {
                                f = nf;
                                break;
                            }
                            Err((_, r)) => {
                                rec = r;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                }
                Err(_canceled) => return false,
            }
        }
    }
    true
}
