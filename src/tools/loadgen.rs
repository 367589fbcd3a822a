//! Streams simulated wallet traffic into a Kafka topic at a steady rate: `walletguard simulate
//! --rate R --brokers B --topic T`, the demo's traffic source, and the end-to-end benchmark's
//! load. Events are keyed by `user_id`, as the contract requires, so a user's events stay in
//! order in one partition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::engine::time::EpochMs;
use crate::service::shutdown::Shutdown;
use crate::tools::sim::{SimEvent, SimParams, Simulator};

use crate::service::kafka::KafkaError;

/// Counts deliveries, so the generator can say how many events really arrived.
#[derive(Default)]
pub struct DeliveryCount {
    /// Acknowledged.
    pub ok: AtomicU64,
    /// Failed after librdkafka's own retries.
    pub failed: AtomicU64,
}

/// The producer context that counts.
pub struct Counting(pub Arc<DeliveryCount>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// How to stream.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// What to simulate.
    pub sim: SimParams,
    /// Target topic.
    pub topic: String,
    /// Events per second of wall time; 0 = as fast as the producer takes them.
    pub rate: u64,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many events.
    pub max_events: Option<u64>,
    /// Go on into new simulated windows when `sim.days` run out ([`Simulator::continuous`]),
    /// until `duration`, `max_events` or the stop.
    pub continuous: bool,
    /// Events before this event time go at full speed; `rate` applies from the first one at or
    /// after it (the demo warms the baselines before streaming live).
    pub full_speed_until: Option<EpochMs>,
}

impl LoadOptions {
    /// One pass over the simulation at `rate`, no limits.
    pub fn new(sim: SimParams, topic: impl Into<String>, rate: u64) -> LoadOptions {
        LoadOptions {
            sim,
            topic: topic.into(),
            rate,
            duration: None,
            max_events: None,
            continuous: false,
            full_speed_until: None,
        }
    }
}

/// What was streamed.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadSummary {
    /// Events handed to the producer.
    pub sent: u64,
    /// Events acknowledged by the brokers.
    pub delivered: u64,
    /// Events whose delivery failed.
    pub failed: u64,
    /// Wall time.
    pub seconds: f64,
}

impl std::fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} events in {:.1} s ({:.0}/s); delivered {}, failed {}",
            self.sent,
            self.seconds,
            self.sent as f64 / self.seconds.max(1e-9),
            self.delivered,
            self.failed
        )
    }
}

impl LoadSummary {
    /// An error unless every event sent was delivered.
    pub fn ensure_delivered(&self, topic: &str) -> Result<(), KafkaError> {
        if self.failed > 0 || self.delivered < self.sent {
            return Err(KafkaError::Topic {
                topic: topic.to_owned(),
                msg: format!(
                    "{} of {} events were not delivered",
                    self.sent - self.delivered.min(self.sent),
                    self.sent
                ),
            });
        }
        Ok(())
    }
}

/// `walletguard produce`: streams a file of JSON-lines events (plain, `.gz`, or `-`) into
/// `topic` at `rate`, with the producer settings of `cfg`, until the end or `stop`.
pub fn produce_file(
    cfg: &crate::service::config::Config,
    input: &std::path::Path,
    topic: &str,
    rate: u64,
    stop: &Shutdown,
) -> Result<LoadSummary, KafkaError> {
    let (mut reader, _) =
        crate::tools::replay::open_input(input).map_err(|e| KafkaError::Topic {
            topic: topic.to_owned(),
            msg: format!("input {}: {e}", input.display()),
        })?;
    let (producer, count) = producer(crate::service::kafka::client_config(
        &cfg.kafka,
        crate::service::kafka::Role::Admin,
    ))?;
    stream_lines(&producer, &count, &mut reader, topic, rate, stop)
}

/// A producer for the generator from a librdkafka config (bootstrap servers and passthrough
/// settings already in it).
pub fn producer(
    mut cfg: ClientConfig,
) -> Result<(ThreadedProducer<Counting>, Arc<DeliveryCount>), KafkaError> {
    let count = Arc::new(DeliveryCount::default());
    cfg.set("linger.ms", "5");
    // Idempotent, like any producer a wallet's upstream should run. Why it matters: without
    // it librdkafka retries a request whose answer was lost (a broker outage, a timeout) and
    // the record lands twice, the second copy after later events of the same user. The
    // service then rightly decides that late copy against a profile that knows what came
    // after it, and a soak compared it with an uninterrupted replay that never saw it (the
    // one diverging repeat of a 100-fault mock run).
    if cfg.get("enable.idempotence").is_none() {
        cfg.set("enable.idempotence", "true");
    }
    cfg.set("queue.buffering.max.messages", "500000");
    // Kafka's default key hashing (the Java client's murmur2), not librdkafka's CRC32 default:
    // `replay --partitions N` routes users the same way, so it decides like the service on a
    // topic of N partitions (each partition learns its own population).
    if cfg.get("partitioner").is_none() {
        cfg.set("partitioner", "murmur2_random");
    }
    let p = cfg
        .create_with_context(Counting(count.clone()))
        .map_err(KafkaError::Client)?;
    Ok((p, count))
}

/// Streams the JSON lines of `input` (each keyed by its `user_id`; a line without one is sent
/// unkeyed, for the service to dead-letter) into `topic` at `rate` events per second (0 = as
/// fast as the producer takes them), blocking until every record is acknowledged or `stop`
/// is set.
pub fn stream_lines(
    producer: &ThreadedProducer<Counting>,
    count: &DeliveryCount,
    input: &mut dyn std::io::BufRead,
    topic: &str,
    rate: u64,
    stop: &Shutdown,
) -> Result<LoadSummary, KafkaError> {
    let started = Instant::now();
    let mut sent = 0u64;
    let mut line = Vec::with_capacity(512);
    loop {
        if stop.is_triggered() {
            break;
        }
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(KafkaError::Topic {
                    topic: topic.to_owned(),
                    msg: format!("reading the input: {e}"),
                })
            }
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        pace(rate, sent, started);
        let key = user_id_of(&line);
        let mut rec = BaseRecord::to(topic).payload(&line[..]);
        if let Some(k) = key.as_deref() {
            rec = rec.key(k.as_bytes());
        }
        send(producer, rec)?;
        sent += 1;
    }
    finish(producer, count, sent, started)
}

/// Enqueues `rec`, waiting while the local queue is full.
fn send(
    producer: &ThreadedProducer<Counting>,
    mut rec: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(KafkaError::Client(e)),
        }
    }
}

/// Waits for every delivery and sums up.
fn finish(
    producer: &ThreadedProducer<Counting>,
    count: &DeliveryCount,
    sent: u64,
    started: Instant,
) -> Result<LoadSummary, KafkaError> {
    producer
        .flush(Duration::from_secs(60))
        .map_err(KafkaError::Client)?;
    Ok(LoadSummary {
        sent,
        delivered: count.ok.load(Ordering::Relaxed),
        failed: count.failed.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The `user_id` of a JSON event line, if it has a string one.
fn user_id_of(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(borrow)]
        user_id: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Key<'_>>(line)
        .ok()
        .and_then(|k| k.user_id)
        .map(|c| c.into_owned())
}

/// Sleeps until the `sent`-th event is due at `rate` per second from `started`, checking every
/// 64 events: a steady rate, not bursts.
fn pace(rate: u64, sent: u64, started: Instant) {
    if rate > 0 && sent % 64 == 0 {
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// Streams the simulation into `opts.topic` (blocking) until it ends, `stop` is set, or a
/// limit is reached. `on_event` sees every event as it is sent (the demo keeps the truth
/// labels with it).
pub fn stream(
    producer: &ThreadedProducer<Counting>,
    count: &DeliveryCount,
    opts: &LoadOptions,
    stop: &Shutdown,
    mut on_event: impl FnMut(&SimEvent),
) -> Result<LoadSummary, KafkaError> {
    let mut sim = Simulator::new(&opts.sim).map_err(|e| KafkaError::Topic {
        topic: opts.topic.clone(),
        msg: format!("simulator: {e}"),
    })?;
    if opts.continuous {
        sim = sim.continuous();
    }
    let started = Instant::now();
    let mut sent = 0u64;
    // Pacing starts with the first event due at `rate`: (its index, when it was reached).
    let mut paced_from: Option<(u64, Instant)> = None;
    let mut line = Vec::with_capacity(512);
    let mut key = Vec::with_capacity(32);
    for ev in sim {
        if stop.is_triggered()
            || opts.max_events.is_some_and(|m| sent >= m)
            || opts.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        if opts.full_speed_until.is_none_or(|t| ev.ts_ms >= t) {
            let (first, at) = *paced_from.get_or_insert((sent, Instant::now()));
            pace(opts.rate, sent - first, at);
        }
        line.clear();
        key.clear();
        ev.write_json(&mut line);
        ev.write_user_id(&mut key);
        send(
            producer,
            BaseRecord::to(&opts.topic).key(&key[..]).payload(&line[..]),
        )?;
        on_event(&ev);
        sent += 1;
    }
    finish(producer, count, sent, started)
}

/// Errors of `walletguard simulate --brokers`.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// Producing to Kafka failed, or not every event was delivered.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The world's spec could not be written beside the labels.
    #[error(transparent)]
    Spec(#[from] crate::tools::sim::SimError),
    /// The labels file could not be created.
    #[error(transparent)]
    Create(#[from] crate::tools::replay::ReplayError),
    /// Writing the labels failed.
    #[error("labels: {0}")]
    Labels(#[from] std::io::Error),
}

/// `walletguard simulate --brokers B --topic T`: streams the simulation into `opts.topic` at
/// `opts.rate` until done or `stop`, writing the labels (and the world's spec beside them)
/// when `labels` is given; prints the summary, and fails unless every event was delivered.
pub fn simulate(
    cfg: &crate::service::config::Config,
    opts: &LoadOptions,
    labels: Option<&std::path::Path>,
    stop: &Shutdown,
) -> Result<(), SimulateError> {
    use crate::service::kafka::{client_config, Role};
    let (producer, count) = producer(client_config(&cfg.kafka, Role::Admin))?;
    let mut label_out = match labels {
        Some(p) => {
            crate::tools::sim::write_spec(&opts.sim.world, p)?;
            let out = crate::tools::replay::create_output(p)?;
            Some(crate::tools::sim::labels::LabelWriter::new(out)?)
        }
        None => None,
    };
    let mut write_err = None;
    let summary = stream(&producer, &count, opts, stop, |ev| {
        if let Some(w) = label_out.as_mut() {
            let r = w.write_raw(
                ev.event_id().as_bytes(),
                ev.user_id().as_bytes(),
                ev.label(),
                ev.scenario.as_str().as_bytes(),
            );
            if let Err(e) = r {
                write_err.get_or_insert(e);
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    if let Some(w) = label_out {
        w.finish()?;
    }
    println!("{summary} to {}", opts.topic);
    Ok(summary.ensure_delivered(&opts.topic)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_user_id() {
        assert_eq!(
            user_id_of(br#"{"event_id":"e","user_id":"u-1","amount":3}"#).as_deref(),
            Some("u-1")
        );
        assert_eq!(
            user_id_of(br#"{"user_id":"caf\u00e9"}"#).as_deref(),
            Some("café")
        );
        assert_eq!(user_id_of(br#"{"user_id":7}"#), None);
        assert_eq!(user_id_of(b"{broken"), None);
        assert_eq!(user_id_of(br#"{"event_id":"e"}"#), None);
    }
}
