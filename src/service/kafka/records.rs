//! Outcomes → keyed Kafka records with their headers: the pure half of the output path.
//!
//! A partition task renders a whole batch into one [`OutBatch`] (an arena of bytes plus record
//! descriptors, so a batch costs a handful of allocations, not several per event), then hands
//! it to [`super::produce::send_all`], which enqueues each [`Record`] it yields. librdkafka
//! copies each payload on enqueue, so the arena is reused. Nothing here produces or awaits.

use std::ops::Range;
use std::sync::Arc;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::engine::decision::{Action, Decision, Severity};
use crate::engine::detect::Code;
use crate::engine::event::{Event, EventError, MAX_EVENT_BYTES};
use crate::engine::output;
use crate::engine::pipeline::Outcome;
use crate::service::channels::Subscription;
use crate::service::kafka::KafkaConfig;
use crate::service::shadow::ShadowConfig;

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
    /// The shadow candidate's decisions, if written.
    pub shadow_decisions: Option<String>,
    /// The profile changelog.
    pub changelog: String,
    /// Allow and block list entries.
    pub lists: String,
}

impl OutputTopics {
    /// From `[kafka]` and `[shadow]`'s decisions topic.
    pub fn new(k: &KafkaConfig, shadow: &ShadowConfig) -> OutputTopics {
        OutputTopics {
            inputs: k.input_topics.clone(),
            alerts: k.alerts_topic.clone(),
            commands: k.commands_topic.clone(),
            dlq: k.dlq_topic.clone(),
            decisions: (!k.decisions_topic.is_empty()).then(|| k.decisions_topic.clone()),
            shadow_decisions: (!shadow.decisions_topic.is_empty())
                .then(|| shadow.decisions_topic.clone()),
            changelog: k.changelog_topic.clone(),
            lists: k.lists_topic.clone(),
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
    /// The shadow candidate's decisions topic.
    ShadowDecisions,
    /// Changelog, to the given partition (co-partitioned with the input).
    Changelog(i32),
    /// Subscription `i` of the batch's routes.
    Subscription(usize),
    /// The lists topic.
    Lists,
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

    /// How many alert copies each of `routes` got in this batch (by route index), for the
    /// edge to count.
    pub fn routed(&self, routes: usize) -> Vec<u64> {
        let mut n = vec![0u64; routes];
        for r in &self.recs {
            if let Dest::Subscription(i) = r.dest {
                if let Some(c) = n.get_mut(i) {
                    *c += 1;
                }
            }
        }
        n
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
        engine: &crate::engine::pipeline::Engine,
        topics: &OutputTopics,
        routes: &[Route],
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
            crate::engine::output::write_command(
                &mut self.arena,
                ev,
                out,
                kind,
                engine.command_message(ev, out, kind).as_deref(),
            );
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

    /// Adds the shadow candidate's decision on one event, when a shadow decisions topic is
    /// set (nothing else of the candidate is ever written).
    pub fn shadow_decision(&mut self, topics: &OutputTopics, ev: &Event<'_>, out: &Outcome) {
        if topics.shadow_decisions.is_none() {
            return;
        }
        let key = self.push_bytes(ev.user_id.as_bytes());
        let s = self.arena.len();
        output::write_decision(&mut self.arena, ev, out);
        self.recs.push(Rec {
            dest: Dest::ShadowDecisions,
            key: Some(key),
            payload: s..self.arena.len(),
            meta: Some(Arc::new(Meta::of(&out.decision))),
            dlq_headers: None,
            stamp: None,
        });
    }

    /// Adds a list entry for the lists topic, keyed `<scope>:<kind>:<value>`.
    pub fn list_entry(&mut self, e: &crate::engine::lists::ListEntry) {
        let key = self.push_bytes(e.key().as_bytes());
        let payload = self.push_bytes(&e.to_json());
        self.recs.push(Rec {
            dest: Dest::Lists,
            key: Some(key),
            payload,
            meta: None,
            dlq_headers: None,
            stamp: None,
        });
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
        let header = super::stamp::HEADER_HASHED;
        self.changelog_value(partition, &user_key.to_be_bytes(), header, stamp, write);
    }

    /// Adds the changelog record of the partition's population, stamped like a profile;
    /// `write` appends the encoded value.
    pub fn changelog_population(
        &mut self,
        partition: i32,
        stamp: &[u8],
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let (key, header) = (
            super::stamp::POPULATION_KEY,
            super::stamp::HEADER_POPULATION,
        );
        self.changelog_value(partition, key, header, stamp, write);
    }

    /// A changelog record with a value under `key`, its stamp under `header`.
    fn changelog_value(
        &mut self,
        partition: i32,
        key: &[u8],
        header: &'static str,
        stamp: &[u8],
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let key = self.push_bytes(key);
        let s = self.arena.len();
        write(&mut self.arena);
        let payload = s..self.arena.len();
        self.push_changelog(partition, key, payload, stamp, header, false);
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

impl OutBatch {
    /// The records, in order, each resolved to its topic: `routes` must be those the batch
    /// was built with.
    pub fn records<'a>(
        &'a self,
        topics: &'a OutputTopics,
        routes: &'a [Route],
    ) -> impl Iterator<Item = Record<'a>> + 'a {
        self.recs.iter().map(move |rec| Record {
            topic: topic_of(rec.dest, topics, routes),
            rec,
            arena: &self.arena,
        })
    }
}

/// The topic a record for `dest` goes to.
fn topic_of<'a>(dest: Dest, topics: &'a OutputTopics, routes: &'a [Route]) -> &'a str {
    match dest {
        Dest::Alerts => &topics.alerts,
        Dest::Commands => &topics.commands,
        Dest::Dlq => &topics.dlq,
        Dest::Decisions => topics.decisions.as_deref().unwrap_or(&topics.alerts),
        Dest::ShadowDecisions => topics.shadow_decisions.as_deref().unwrap_or(&topics.alerts),
        Dest::Changelog(_) => &topics.changelog,
        Dest::Lists => &topics.lists,
        Dest::Subscription(i) => routes
            .get(i)
            .map(|r| r.topic.as_str())
            .unwrap_or(&topics.alerts),
    }
}

/// One record of an [`OutBatch`], resolved to its topic: a view into the batch's arena.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The topic it goes to.
    pub topic: &'a str,
    rec: &'a Rec,
    arena: &'a [u8],
}

impl<'a> Record<'a> {
    /// Where it goes.
    pub fn dest(&self) -> Dest {
        self.rec.dest
    }

    /// Its key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.rec.key.as_ref().map(|k| &self.arena[k.clone()])
    }

    /// Its value; `None` for a changelog tombstone.
    pub fn payload(&self) -> Option<&'a [u8]> {
        if self.rec.stamp.as_ref().is_some_and(|st| st.tombstone) {
            None
        } else {
            Some(&self.arena[self.rec.payload.clone()])
        }
    }

    /// Its explicit partition: changelog records only (co-partitioned with the input); the
    /// others are partitioned by key.
    pub fn partition(&self) -> Option<i32> {
        match self.rec.dest {
            Dest::Changelog(p) => Some(p),
            _ => None,
        }
    }

    /// Its headers: severity, action and reasons of alerts, commands and decisions; the
    /// input position of changelog records; the source of dead letters.
    pub fn headers(&self) -> Option<OwnedHeaders> {
        let r = self.rec;
        if let Some(m) = &r.meta {
            Some(m.headers())
        } else if let Some(st) = &r.stamp {
            Some(OwnedHeaders::new_with_capacity(1).insert(Header {
                key: st.header,
                value: Some(&self.arena[st.bytes.clone()]),
            }))
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
            Some(h)
        } else {
            None
        }
    }

    /// The record as the producer takes it. Built afresh for each enqueue attempt.
    pub fn to_future_record(&self) -> FutureRecord<'a, [u8], [u8]> {
        let mut rec: FutureRecord<'a, [u8], [u8]> = FutureRecord::to(self.topic);
        if let Some(payload) = self.payload() {
            rec = rec.payload(payload);
        }
        if let Some(k) = self.key() {
            rec = rec.key(k);
        }
        if let Some(p) = self.partition() {
            rec = rec.partition(p);
        }
        if let Some(h) = self.headers() {
            rec = rec.headers(h);
        }
        rec
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;
    use crate::engine::detect::Detail;
    use crate::engine::pipeline::{CommandKind, Engine};
    use crate::service::config::Config;

    /// A record's headers as (key, value) text pairs.
    fn headers(r: &Record<'_>) -> Vec<(String, String)> {
        let Some(h) = r.headers() else {
            return Vec::new();
        };
        h.iter()
            .map(|h| {
                let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                (h.key.to_owned(), v.into_owned())
            })
            .collect()
    }

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn detail() -> Detail {
        Detail::new(|_, f| f.write_str("test"), [0.0; 4])
    }

    #[test]
    fn topics_resolve_by_destination_with_the_alerts_topic_as_fallback() {
        let mut cfg = Config::default();
        let routes = Route::compile(&cfg.subscriptions);
        let t = OutputTopics::new(&cfg.kafka, &cfg.shadow);
        assert_eq!(t.decisions, None, "no decisions topic by default");
        assert_eq!(topic_of(Dest::Alerts, &t, &routes), t.alerts);
        assert_eq!(topic_of(Dest::Commands, &t, &routes), t.commands);
        assert_eq!(topic_of(Dest::Dlq, &t, &routes), t.dlq);
        assert_eq!(topic_of(Dest::Changelog(4), &t, &routes), t.changelog);
        assert_eq!(topic_of(Dest::Decisions, &t, &routes), t.alerts);
        assert_eq!(
            topic_of(Dest::Subscription(1), &t, &routes),
            "wallet.alerts.ato"
        );
        assert_eq!(topic_of(Dest::Subscription(9), &t, &routes), t.alerts);
        cfg.kafka.decisions_topic = "wallet.decisions".into();
        let t = OutputTopics::new(&cfg.kafka, &cfg.shadow);
        assert_eq!(topic_of(Dest::Decisions, &t, &routes), "wallet.decisions");
    }

    #[test]
    fn changelog_records_are_keyed_partitioned_and_stamped() {
        let cfg = Config::default();
        let t = OutputTopics::new(&cfg.kafka, &cfg.shadow);
        let stamp = 42i64.to_be_bytes();
        let mut out = OutBatch::default();
        out.legacy_tombstone(3, b"user-1", &stamp);
        out.changelog(3, 0x0102_0304_0506_0708, &stamp, |buf| {
            buf.extend_from_slice(b"profile")
        });
        out.changelog_tombstone(3, 9, &stamp);
        assert_eq!(out.len(), 3);
        let recs: Vec<Record<'_>> = out.records(&t, &[]).collect();
        for r in &recs {
            assert_eq!(r.topic, t.changelog);
            assert_eq!(r.dest(), Dest::Changelog(3));
            assert_eq!(r.partition(), Some(3));
        }
        let st = String::from_utf8_lossy(&stamp).into_owned();
        assert_eq!(recs[0].key(), Some(&b"user-1"[..]));
        assert_eq!(recs[0].payload(), None, "a tombstone has a null value");
        assert_eq!(
            headers(&recs[0]),
            vec![(super::super::stamp::HEADER.to_owned(), st.clone())]
        );
        assert_eq!(recs[1].key(), Some(&[1, 2, 3, 4, 5, 6, 7, 8][..]));
        assert_eq!(recs[1].payload(), Some(&b"profile"[..]));
        assert_eq!(
            headers(&recs[1]),
            vec![(super::super::stamp::HEADER_HASHED.to_owned(), st.clone())]
        );
        assert_eq!(recs[2].key(), Some(&9u64.to_be_bytes()[..]));
        assert_eq!(recs[2].payload(), None);
        let f = recs[2].to_future_record();
        assert_eq!(f.topic, t.changelog);
        assert_eq!(f.partition, Some(3));
        assert_eq!(f.payload, None);
        assert_eq!(f.key, Some(&9u64.to_be_bytes()[..]));
        let f = recs[1].to_future_record();
        assert_eq!(f.payload, Some(&b"profile"[..]));
        assert_eq!(f.headers.map(|h| h.count()), Some(1));
        out.clear();
        assert!(out.is_empty());
        assert_eq!(out.records(&t, &[]).count(), 0);
    }

    #[test]
    fn dead_letters_cut_long_keys_and_name_their_source() {
        let cfg = Config::default();
        let t = OutputTopics::new(&cfg.kafka, &cfg.shadow);
        let err = EventError::Json { msg: "eof".into() };
        let big_key = vec![b'k'; MAX_DLQ_KEY_BYTES + 10];
        let big_payload = vec![b'{'; MAX_EVENT_BYTES + 5];
        let mut out = OutBatch::default();
        out.dead_letter(&err, "wallet.events", 2, 77, Some(&big_key), &big_payload);
        out.dead_letter(&err, "wallet.events", 2, 78, Some(b"u1"), b"{");
        out.dead_letter(&err, "wallet.events", 2, 79, None, b"");
        let recs: Vec<Record<'_>> = out.records(&t, &[]).collect();
        assert_eq!(recs.len(), 3);
        for r in &recs {
            assert_eq!(r.topic, t.dlq);
            assert_eq!(r.dest(), Dest::Dlq);
            assert_eq!(r.partition(), None, "partitioned by key");
            assert!(r.payload().is_some_and(|p| !p.is_empty()));
        }
        assert_eq!(recs[0].key(), Some(&big_key[..MAX_DLQ_KEY_BYTES]));
        let full = big_key.len().to_string();
        assert_eq!(
            headers(&recs[0]),
            pairs(&[
                ("source_topic", "wallet.events"),
                ("source_partition", "2"),
                ("source_offset", "77"),
                ("error", "malformed_json"),
                ("source_key_bytes", full.as_str()),
            ])
        );
        let mut cut = OutBatch::default();
        let limit = &big_payload[..MAX_EVENT_BYTES];
        cut.dead_letter(&err, "wallet.events", 2, 77, Some(&big_key), limit);
        assert_eq!(
            recs[0].payload(),
            cut.records(&t, &[]).next().and_then(|r| r.payload()),
            "the payload is cut to the event size limit"
        );
        assert_eq!(recs[1].key(), Some(&b"u1"[..]));
        assert_eq!(
            headers(&recs[1]),
            pairs(&[
                ("source_topic", "wallet.events"),
                ("source_partition", "2"),
                ("source_offset", "78"),
                ("error", "malformed_json"),
            ])
        );
        assert_eq!(recs[2].key(), None);
    }

    #[test]
    fn an_alert_yields_decision_alert_copies_and_command_in_order() {
        let mut cfg = Config::default();
        cfg.kafka.decisions_topic = "wallet.decisions".into();
        let engine = Engine::new(cfg.clone());
        let mut state = engine.new_state();
        let line = br#"{"event_id":"e1","user_id":"alice","ts":1790000000000,"type":"transfer","amount":50,"counterparty":"c1","device_id":"d1"}"#;
        let (ev, mut o) = engine
            .process_bytes(&mut state, line, 1_790_000_000_500)
            .expect("a valid event");
        o.decision.action = Action::Freeze;
        o.decision.severity = Severity::Critical;
        o.decision.signals = crate::engine::detect::Signals::default();
        o.decision.signals.push(Code::AtoChain, 1.0, 1.0, detail());
        o.decision.signals.push(Code::NewDevice, 0.5, 1.0, detail());
        o.command = Some(CommandKind::FreezeAccount);
        let t = OutputTopics::new(&cfg.kafka, &cfg.shadow);
        let routes = Route::compile(&cfg.subscriptions);
        let mut out = OutBatch::default();
        out.outcome(&engine, &t, &routes, &ev, &o);
        let recs: Vec<Record<'_>> = out.records(&t, &routes).collect();
        let dests: Vec<Dest> = recs.iter().map(Record::dest).collect();
        assert_eq!(
            dests,
            vec![
                Dest::Decisions,
                Dest::Alerts,
                Dest::Subscription(0),
                Dest::Subscription(1),
                Dest::Commands,
            ]
        );
        let topics: Vec<&str> = recs.iter().map(|r| r.topic).collect();
        assert_eq!(
            topics,
            vec![
                "wallet.decisions",
                t.alerts.as_str(),
                "wallet.alerts.critical",
                "wallet.alerts.ato",
                t.commands.as_str(),
            ]
        );
        let want = pairs(&[
            ("severity", "critical"),
            ("action", "freeze"),
            ("reasons", "ATO_CHAIN,NEW_DEVICE"),
        ]);
        for r in &recs {
            assert_eq!(r.key(), Some(&b"alice"[..]));
            assert_eq!(r.partition(), None);
            assert_eq!(headers(r), want);
        }
        assert_eq!(recs[1].payload(), recs[2].payload(), "copies of the alert");
        assert_eq!(recs[1].payload(), recs[3].payload());
        assert_ne!(recs[0].payload(), recs[1].payload());
        assert_ne!(recs[4].payload(), recs[1].payload());
        assert_eq!(out.routed(routes.len()), vec![1, 1], "one copy per route");

        // An allowed event: its decision only, and nothing without a decisions topic.
        o.decision.action = Action::Allow;
        o.command = None;
        out.clear();
        out.outcome(&engine, &t, &routes, &ev, &o);
        let dests: Vec<Dest> = out.records(&t, &routes).map(|r| r.dest()).collect();
        assert_eq!(dests, vec![Dest::Decisions]);
        let t = OutputTopics::new(&Config::default().kafka, &Config::default().shadow);
        out.clear();
        out.outcome(&engine, &t, &routes, &ev, &o);
        assert!(out.is_empty());
    }

    #[test]
    fn routes_filter_by_severity_action_and_code() {
        let cfg = Config::default();
        let routes = Route::compile(&cfg.subscriptions);
        assert_eq!(routes.len(), 2);
        let mut d = Decision::from_signals(crate::engine::detect::Signals::default());
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
