//! Outcomes → keyed Kafka records, and producing them without ever dropping one.
//!
//! A partition task renders a whole batch into one [`OutBatch`] (an arena of bytes plus record
//! descriptors, so a batch costs a handful of allocations, not several per event), then hands
//! it to [`send_all`]. librdkafka copies each payload on enqueue, so the arena is reused.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::config::{Config, Subscription};
use crate::decision::{Action, Decision, Severity};
use crate::detect::Code;
use crate::event::{Event, EventError, MAX_EVENT_BYTES};
use crate::metrics::Metrics;
use crate::output;
use crate::pipeline::Outcome;

/// The output topics of a session, resolved once.
#[derive(Debug, Clone)]
pub struct OutputTopics {
    /// Input topics; a message's topic is carried as an index into this list.
    pub inputs: Vec<String>,
    /// Alerts.
    pub alerts: String,
    /// Commands.
    pub commands: String,
    /// Dead letters.
    pub dlq: String,
    /// Decisions, if written.
    pub decisions: Option<String>,
    /// The profile changelog.
    pub changelog: String,
}

impl OutputTopics {
    /// From `[kafka]`.
    pub fn new(cfg: &Config) -> OutputTopics {
        let k = &cfg.kafka;
        OutputTopics {
            inputs: k.input_topics.clone(),
            alerts: k.alerts_topic.clone(),
            commands: k.commands_topic.clone(),
            dlq: k.dlq_topic.clone(),
            decisions: (!k.decisions_topic.is_empty()).then(|| k.decisions_topic.clone()),
            changelog: k.changelog_topic.clone(),
        }
    }
}

/// A compiled `[[subscriptions]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name (metric label).
    pub name: String,
    /// Where copies go.
    pub topic: String,
    min: Severity,
    actions: Vec<Action>,
    codes: Vec<Code>,
}

impl Route {
    /// Compiles the subscriptions of a validated config (entries that do not parse, which
    /// validation prevents, match nothing rather than everything).
    pub fn compile(subs: &[Subscription]) -> Vec<Route> {
        subs.iter()
            .map(|s| Route {
                name: s.name.clone(),
                topic: s.topic.clone(),
                min: Severity::parse(&s.min_severity).unwrap_or(Severity::Critical),
                actions: s.actions.iter().filter_map(|a| Action::parse(a)).collect(),
                codes: s
                    .reason_codes
                    .iter()
                    .filter_map(|c| Code::parse(c))
                    .collect(),
            })
            .collect()
    }

    /// Whether an alert with this decision is copied.
    pub fn matches(&self, d: &Decision) -> bool {
        d.action != Action::Allow
            && d.severity >= self.min
            && (self.actions.is_empty() || self.actions.contains(&d.action))
            && (self.codes.is_empty() || d.signals.iter().any(|s| self.codes.contains(&s.code)))
    }
}

/// Where a record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Alerts topic.
    Alerts,
    /// Commands topic.
    Commands,
    /// Dead-letter topic.
    Dlq,
    /// Decisions topic.
    Decisions,
    /// Changelog, to the given partition (co-partitioned with the input).
    Changelog(i32),
    /// Subscription `i` of the batch's routes.
    Subscription(usize),
}

/// Header values of alerts, commands and decisions.
#[derive(Debug, Clone)]
pub struct Meta {
    severity: &'static str,
    action: &'static str,
    reasons: String,
}

impl Meta {
    fn of(d: &Decision) -> Meta {
        let mut reasons = String::new();
        for (i, s) in d.signals.iter().enumerate() {
            if i > 0 {
                reasons.push(',');
            }
            reasons.push_str(s.code.as_str());
        }
        Meta {
            severity: d.severity.as_str(),
            action: d.action.as_str(),
            reasons,
        }
    }

    fn headers(&self) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "severity",
                value: Some(self.severity),
            })
            .insert(Header {
                key: "action",
                value: Some(self.action),
            })
            .insert(Header {
                key: "reasons",
                value: Some(self.reasons.as_str()),
            })
    }
}

/// One record of a batch: ranges into the batch's arena.
#[derive(Debug, Clone)]
struct Rec {
    dest: Dest,
    key: Option<Range<usize>>,
    payload: Range<usize>,
    meta: Option<Arc<Meta>>,
    dlq_headers: Option<DlqSource>,
    /// Changelog only: the input position the profile reflects (see [`super::stamp`]).
    stamp: Option<Stamp>,
}

/// Where a dead letter came from: its headers.
#[derive(Debug, Clone)]
struct DlqSource {
    topic: String,
    partition: i32,
    offset: i64,
    reason: &'static str,
    /// The input key's length when the dead letter carries only its first
    /// [`MAX_DLQ_KEY_BYTES`].
    cut_key_len: Option<usize>,
}

/// Longest input key a dead letter copies. Why a cap: a dead letter must always fit the
/// producer's `message.max.bytes`, or its delivery would be retried forever and stall the
/// partition; a key is normally a user id of a few dozen bytes.
pub const MAX_DLQ_KEY_BYTES: usize = 4 * 1024;

/// The stamp of a changelog record.
#[derive(Debug, Clone)]
struct Stamp {
    /// The encoded position, in the arena.
    bytes: Range<usize>,
    /// Its header key, which also says how the record is keyed.
    header: &'static str,
    /// A null value: the tombstone of a removed profile.
    tombstone: bool,
}

/// Every record a batch produces.
#[derive(Debug, Default)]
pub struct OutBatch {
    arena: Vec<u8>,
    recs: Vec<Rec>,
}

impl OutBatch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.recs.clear();
    }

    fn push_bytes(&mut self, b: &[u8]) -> Range<usize> {
        let s = self.arena.len();
        self.arena.extend_from_slice(b);
        s..self.arena.len()
    }

    /// Adds the outputs of one scored event: its decision (if a decisions topic is set), its
    /// alert and the alert's subscription copies, and its command.
    pub fn outcome(
        &mut self,
        topics: &OutputTopics,
        routes: &[Route],
        metrics: &Metrics,
        ev: &Event<'_>,
        out: &Outcome,
    ) {
        let key = self.push_bytes(ev.user_id.as_bytes());
        let alert = out.alert();
        let meta = (alert || topics.decisions.is_some()).then(|| Arc::new(Meta::of(&out.decision)));
        if topics.decisions.is_some() {
            let s = self.arena.len();
            output::write_decision(&mut self.arena, ev, out);
            self.recs.push(Rec {
                dest: Dest::Decisions,
                key: Some(key.clone()),
                payload: s..self.arena.len(),
                meta: meta.clone(),
                dlq_headers: None,
                stamp: None,
            });
        }
        if alert {
            let s = self.arena.len();
            output::write_alert(&mut self.arena, ev, out);
            let payload = s..self.arena.len();
            self.recs.push(Rec {
                dest: Dest::Alerts,
                key: Some(key.clone()),
                payload: payload.clone(),
                meta: meta.clone(),
                dlq_headers: None,
                stamp: None,
            });
            for (i, r) in routes.iter().enumerate() {
                if r.matches(&out.decision) {
                    metrics
                        .subscription_alerts
                        .with_label_values(&[r.name.as_str()])
                        .inc();
                    self.recs.push(Rec {
                        dest: Dest::Subscription(i),
                        key: Some(key.clone()),
                        payload: payload.clone(),
                        meta: meta.clone(),
                        dlq_headers: None,
                        stamp: None,
                    });
                }
            }
        }
        if let Some(kind) = out.command {
            let s = self.arena.len();
            output::write_command(&mut self.arena, ev, out, kind);
            self.recs.push(Rec {
                dest: Dest::Commands,
                key: Some(key),
                payload: s..self.arena.len(),
                meta,
                dlq_headers: None,
                stamp: None,
            });
        }
    }

    /// Adds the dead letter of an invalid message. Payloads over the event size limit are cut
    /// to the limit (the error gives the full size), so a dead letter always fits a Kafka
    /// message.
    #[allow(clippy::too_many_arguments)]
    pub fn dead_letter(
        &mut self,
        err: &EventError,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
    ) {
        let cut_key_len = key.filter(|k| k.len() > MAX_DLQ_KEY_BYTES).map(<[u8]>::len);
        let key = key.map(|k| self.push_bytes(&k[..k.len().min(MAX_DLQ_KEY_BYTES)]));
        let s = self.arena.len();
        let cut = &payload[..payload.len().min(MAX_EVENT_BYTES)];
        output::write_dead_letter(&mut self.arena, err, topic, partition, offset, cut);
        self.recs.push(Rec {
            dest: Dest::Dlq,
            key,
            payload: s..self.arena.len(),
            meta: None,
            dlq_headers: Some(DlqSource {
                topic: topic.to_owned(),
                partition,
                offset,
                reason: err.reason(),
                cut_key_len,
            }),
            stamp: None,
        });
    }

    /// Adds a changelog record of the user with key `user_key`, stamped with the input
    /// position it reflects (the encoded [`super::stamp`]); `write` appends the encoded value
    /// to the arena.
    pub fn changelog(
        &mut self,
        partition: i32,
        user_key: u64,
        stamp: &[u8],
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let key = self.push_bytes(&user_key.to_be_bytes());
        let s = self.arena.len();
        write(&mut self.arena);
        let payload = s..self.arena.len();
        self.push_changelog(
            partition,
            key,
            payload,
            stamp,
            super::stamp::HEADER_HASHED,
            false,
        );
    }

    /// Adds the changelog tombstone of the user with key `user_key`.
    pub fn changelog_tombstone(&mut self, partition: i32, user_key: u64, stamp: &[u8]) {
        let key = self.push_bytes(&user_key.to_be_bytes());
        let s = self.arena.len();
        self.push_changelog(
            partition,
            key,
            s..s,
            stamp,
            super::stamp::HEADER_HASHED,
            true,
        );
    }

    /// Adds a changelog tombstone under the user id an older release keyed its record by.
    pub fn legacy_tombstone(&mut self, partition: i32, user_id: &[u8], stamp: &[u8]) {
        let key = self.push_bytes(user_id);
        let s = self.arena.len();
        self.push_changelog(partition, key, s..s, stamp, super::stamp::HEADER, true);
    }

    fn push_changelog(
        &mut self,
        partition: i32,
        key: Range<usize>,
        payload: Range<usize>,
        stamp: &[u8],
        header: &'static str,
        tombstone: bool,
    ) {
        let bytes = self.push_bytes(stamp);
        self.recs.push(Rec {
            dest: Dest::Changelog(partition),
            key: Some(key),
            payload,
            meta: None,
            dlq_headers: None,
            stamp: Some(Stamp {
                bytes,
                header,
                tombstone,
            }),
        });
    }
}

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
    for r in &batch.recs {
        let topic: &str = match r.dest {
            Dest::Alerts => &topics.alerts,
            Dest::Commands => &topics.commands,
            Dest::Dlq => &topics.dlq,
            Dest::Decisions => topics.decisions.as_deref().unwrap_or(&topics.alerts),
            Dest::Changelog(_) => &topics.changelog,
            Dest::Subscription(i) => routes
                .get(i)
                .map(|r| r.topic.as_str())
                .unwrap_or(&topics.alerts),
        };
        let payload = &batch.arena[r.payload.clone()];
        let key = r.key.as_ref().map(|k| &batch.arena[k.clone()]);
        let mut attempt = 0u32;
        loop {
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            if !r.stamp.as_ref().is_some_and(|st| st.tombstone) {
                rec = rec.payload(payload);
            }
            if let Some(k) = key {
                rec = rec.key(k);
            }
            if let Dest::Changelog(p) = r.dest {
                rec = rec.partition(p);
            }
            if let Some(m) = &r.meta {
                rec = rec.headers(m.headers());
            } else if let Some(st) = &r.stamp {
                rec = rec.headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                    key: st.header,
                    value: Some(&batch.arena[st.bytes.clone()]),
                }));
            } else if let Some(src) = &r.dlq_headers {
                let p = src.partition.to_string();
                let o = src.offset.to_string();
                let kl = src.cut_key_len.map(|n| n.to_string());
                let mut h = OwnedHeaders::new_with_capacity(5)
                    .insert(Header {
                        key: "source_topic",
                        value: Some(src.topic.as_str()),
                    })
                    .insert(Header {
                        key: "source_partition",
                        value: Some(p.as_str()),
                    })
                    .insert(Header {
                        key: "source_offset",
                        value: Some(o.as_str()),
                    })
                    .insert(Header {
                        key: "error",
                        value: Some(src.reason),
                    });
                if let Some(kl) = &kl {
                    h = h.insert(Header {
                        key: "source_key_bytes",
                        value: Some(kl.as_str()),
                    });
                }
                rec = rec.headers(h);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn routes_filter_by_severity_action_and_code() {
        let cfg = Config::default();
        let routes = Route::compile(&cfg.subscriptions);
        assert_eq!(routes.len(), 2);
        let mut d = Decision::from_signals(crate::detect::Signals::default());
        d.action = Action::Review;
        d.severity = Severity::Medium;
        assert!(
            !routes[0].matches(&d),
            "critical route takes a medium alert"
        );
        assert!(!routes[1].matches(&d), "ato route without the code");
        d.severity = Severity::Critical;
        assert!(routes[0].matches(&d));
        d.action = Action::Allow;
        assert!(!routes[0].matches(&d), "allow is never an alert");
    }
}
