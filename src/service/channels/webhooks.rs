//! Signed webhooks: each `[[subscriptions]]` entry with a `webhook` gets a delivery task that
//! reads the subscription's topic (the alerts it matches, as the scoring pipeline copied them)
//! with a consumer group of its own, `<kafka.group_id>.webhook.<name>`, and POSTs each alert.
//!
//! - **Signed** as [Standard Webhooks](https://www.standardwebhooks.com/): `webhook-id` is
//!   the `alert_id` (receivers deduplicate on it), `webhook-timestamp` the send time in Unix
//!   seconds, `webhook-signature` `v1,` + base64 of HMAC-SHA256(secret, `id.timestamp.body`),
//!   one per secret while keys rotate (space-separated).
//! - **Retried** on anything but a 2xx (or no answer within `timeout_ms`), after `backoff_ms`,
//!   doubling per attempt up to 5 minutes, times a random factor in [0.5, 1) so that retries
//!   of many alerts do not arrive together. After `max_attempts` the alert goes to
//!   `kafka.undelivered_topic` with the last error and HTTP status.
//! - **Durable**: an offset is stored (and committed by librdkafka) only once its alert was
//!   delivered or written to the undelivered topic, in order, so a crash or restart redelivers
//!   what was in flight with the same `webhook-id`: at least once. Up to `max_in_flight`
//!   deliveries run at once.
//! - **Isolated**: it reads Kafka, not the scoring pipeline, so a slow or dead endpoint delays
//!   only its own subscription's deliveries, never scoring nor another subscription.
//!
//! A new group starts from the topic's earliest retained record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::Sha256;

use crate::service::kafka::KafkaConfig;

use crate::service::channels::{Subscription, WebhookConfig};
use crate::service::metrics::Metrics;
use crate::service::shutdown::Shutdown;

use crate::service::kafka::{client_config, KafkaError, Role};

/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Signs webhook bodies with one or more secrets.
#[derive(Clone)]
pub struct Signer {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} keys)", self.keys.len())
    }
}

impl Signer {
    /// From the secrets text: space-separated; `whsec_<base64>` is decoded (the Standard
    /// Webhooks form), anything else is used as bytes. `None` when there is none.
    pub fn from_secrets(text: &str) -> Option<Signer> {
        let keys: Vec<Vec<u8>> = text
            .split_whitespace()
            .map(|s| match s.strip_prefix("whsec_") {
                Some(b) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .unwrap_or_else(|_| s.as_bytes().to_vec()),
                None => s.as_bytes().to_vec(),
            })
            .collect();
        (!keys.is_empty()).then_some(Signer { keys })
    }

    /// The `webhook-signature` header of `body` sent as message `id` at `ts` (Unix seconds).
    pub fn sign(&self, id: &str, ts: i64, body: &[u8]) -> String {
        let mut out = String::new();
        for k in &self.keys {
            // HMAC accepts keys of any length.
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(k) else {
                continue;
            };
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(ts.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            out.push_str(
                &base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
            );
        }
        out
    }
}

/// The delay before attempt `attempt + 1` (attempt ≥ 1), scaled by `jitter` in [0, 1).
pub fn backoff(base_ms: u64, attempt: u32, jitter: f64) -> Duration {
    let full = Duration::from_millis(base_ms)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(MAX_BACKOFF);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A delivery task per webhook subscription, running until `stop`.
pub struct Deliveries {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Deliveries {
    /// Waits for every task (after `stop` was triggered) to commit and return.
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the delivery tasks of the webhook subscriptions among `subs`, reading their topics
/// with the clients of `[kafka]` (`k`). Secret variables are looked up in `secrets` first,
/// then in the environment. Fails when one is unset or empty, or a client cannot be created.
pub fn start(
    k: &KafkaConfig,
    subs: &[Subscription],
    secrets: &std::collections::HashMap<String, String>,
    metrics: Arc<Metrics>,
    stop: Shutdown,
) -> Result<Deliveries, KafkaError> {
    let mut tasks = Vec::new();
    for sub in subs.iter().filter(|s| s.webhook.is_some()) {
        let Some(hook) = sub.webhook.clone() else {
            continue;
        };
        let text = match secrets.get(&hook.secret_env) {
            Some(v) => v.clone(),
            None => std::env::var(&hook.secret_env).unwrap_or_default(),
        };
        let signer = Signer::from_secrets(&text).ok_or_else(|| {
            KafkaError::Internal(format!(
                "subscription {}: webhook.secret_env names {}, which is unset or empty",
                sub.name, hook.secret_env
            ))
        })?;
        let mut c = client_config(k, Role::Admin);
        c.set("group.id", format!("{}.webhook.{}", k.group_id, sub.name))
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", k.commit_interval_ms.to_string())
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        if k.delivery == crate::service::kafka::Delivery::ExactlyOnce {
            c.set("isolation.level", "read_committed");
        }
        let consumer: StreamConsumer = c.create().map_err(KafkaError::Client)?;
        consumer
            .subscribe(&[sub.topic.as_str()])
            .map_err(KafkaError::Client)?;
        let producer: FutureProducer = client_config(k, Role::Admin)
            .set("enable.idempotence", "true")
            .create()
            .map_err(KafkaError::Client)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(hook.timeout_ms))
            .build()
            .map_err(|e| KafkaError::Internal(format!("webhook client: {e}")))?;
        for r in ["delivered", "undelivered"] {
            metrics
                .webhook_deliveries
                .with_label_values(&[&sub.name, r]);
        }
        metrics.webhook_retries.with_label_values(&[&sub.name]);
        metrics.webhook_latency.with_label_values(&[&sub.name]);
        let job = Job {
            name: sub.name.clone(),
            hook,
            signer,
            http,
            producer,
            undelivered: k.undelivered_topic.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
        };
        tasks.push(tokio::spawn(run_subscription(consumer, Arc::new(job))));
        tracing::info!(subscription = %sub.name, "webhook delivery started");
    }
    Ok(Deliveries { tasks })
}

/// Whether any subscription of `cfg` has a webhook.
pub fn any(subs: &[Subscription]) -> bool {
    subs.iter().any(|s| s.webhook.is_some())
}

struct Job {
    name: String,
    hook: WebhookConfig,
    signer: Signer,
    http: reqwest::Client,
    producer: FutureProducer,
    undelivered: String,
    metrics: Arc<Metrics>,
    stop: Shutdown,
}

/// How one alert ended.
enum Done {
    /// Delivered or dead-lettered: its offset may be stored.
    Settled,
    /// Stopped before it was settled: it will be delivered again after a restart.
    Abandoned,
}

async fn run_subscription(consumer: StreamConsumer, job: Arc<Job>) {
    {
        let stop = job.stop.clone();
        let stream = consumer
            .stream()
            .take_until(async move { stop.wait().await })
            .map(detach)
            .map(|owned| {
                let job = job.clone();
                async move {
                    match owned {
                        Ok(m) => {
                            let done = deliver(&job, &m).await;
                            Some((m, done))
                        }
                        Err(e) => {
                            tracing::warn!(subscription = %job.name, error = %e, "webhook consumer error");
                            None
                        }
                    }
                }
            })
            .buffered(job.hook.max_in_flight.max(1));
        futures_util::pin_mut!(stream);
        while let Some(r) = stream.next().await {
            let Some((m, done)) = r else { continue };
            match done {
                Done::Settled => {
                    if let Err(e) = consumer.store_offset(m.topic(), m.partition(), m.offset()) {
                        tracing::warn!(subscription = %job.name, error = %e, "storing a webhook offset failed");
                    }
                }
                Done::Abandoned => break,
            }
        }
    }
    // Whatever was settled is committed now; the rest is delivered again after a restart.
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(subscription = %job.name, error = %e, "final webhook commit");
    }
}

fn detach(
    m: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>,
) -> Result<OwnedMessage, rdkafka::error::KafkaError> {
    m.map(|m| m.detach())
}

/// The alert's id: `alert_id` of the JSON (the record key as a fallback).
fn alert_id(m: &OwnedMessage) -> String {
    m.payload()
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        .and_then(|v| {
            v.get("alert_id")
                .and_then(|a| a.as_str())
                .map(str::to_owned)
        })
        .or_else(|| m.key().map(|k| String::from_utf8_lossy(k).into_owned()))
        .unwrap_or_else(|| format!("{}-{}-{}", m.topic(), m.partition(), m.offset()))
}

fn jitter(seed: &str, attempt: u32) -> f64 {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(
        seed.as_bytes(),
        crate::engine::time::now_ms() as u64 ^ u64::from(attempt),
    );
    (h >> 11) as f64 / (1u64 << 53) as f64
}

async fn deliver(job: &Job, m: &OwnedMessage) -> Done {
    let body = m.payload().unwrap_or(b"{}").to_vec();
    let id = alert_id(m);
    let started = Instant::now();
    let mut last_error = String::new();
    let mut last_status: Option<u16> = None;
    for attempt in 1..=job.hook.max_attempts {
        if job.stop.is_triggered() {
            return Done::Abandoned;
        }
        let ts = crate::engine::time::now_ms() / 1000;
        let sent = job
            .http
            .post(&job.hook.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", job.signer.sign(&id, ts, &body))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                job.metrics
                    .webhook_deliveries
                    .with_label_values(&[&job.name, "delivered"])
                    .inc();
                job.metrics
                    .webhook_latency
                    .with_label_values(&[&job.name])
                    .observe(started.elapsed().as_secs_f64());
                return Done::Settled;
            }
            Ok(r) => {
                last_status = Some(r.status().as_u16());
                last_error = format!("HTTP {}", r.status());
            }
            Err(e) => {
                last_status = e.status().map(|s| s.as_u16());
                // No URL in the text: it may carry a token.
                last_error = e.without_url().to_string();
            }
        }
        if attempt < job.hook.max_attempts {
            job.metrics
                .webhook_retries
                .with_label_values(&[&job.name])
                .inc();
            let wait = backoff(job.hook.backoff_ms, attempt, jitter(&id, attempt));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = job.stop.wait() => return Done::Abandoned,
            }
        }
    }
    tracing::warn!(subscription = %job.name, attempts = job.hook.max_attempts, status = ?last_status, error = %last_error, "webhook undelivered; written to the undelivered topic");
    let alert: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    let record = serde_json::json!({
        "subscription": job.name,
        "alert_id": id,
        "alert": alert,
        "attempts": job.hook.max_attempts,
        "last_error": last_error,
        "http_status": last_status,
        "failed_at": crate::engine::time::format_rfc3339(crate::engine::time::now_ms()),
    })
    .to_string();
    loop {
        let rec = FutureRecord::to(&job.undelivered).key(&id).payload(&record);
        match job.producer.send(rec, Duration::from_secs(30)).await {
            Ok(_) => break,
            Err((e, _)) => {
                tracing::error!(subscription = %job.name, error = %e, "writing to the undelivered topic failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = job.stop.wait() => return Done::Abandoned,
                }
            }
        }
    }
    job.metrics
        .webhook_deliveries
        .with_label_values(&[&job.name, "undelivered"])
        .inc();
    Done::Settled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // From the Standard Webhooks specification's reference tests.
        let s = Signer::from_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            s.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // Two secrets while rotating: one signature each.
        let two =
            Signer::from_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw raw-secret").unwrap();
        let sig = two.sign("m", 1, b"{}");
        assert_eq!(sig.split(' ').count(), 2);
        assert!(sig.split(' ').all(|p| p.starts_with("v1,")));
        assert!(Signer::from_secrets("  ").is_none());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        assert_eq!(backoff(1000, 1, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff(1000, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1000, 3, 1.0), Duration::from_millis(4000));
        assert_eq!(backoff(1000, 30, 1.0), MAX_BACKOFF);
    }
}
