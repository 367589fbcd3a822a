//! Renders outcomes as the contract's JSON records: decision, alert, command and dead letter.
//!
//! Pure functions writing into a caller-owned buffer, so the file and Kafka adapters share them
//! and reuse allocations. Ids are deterministic: `alert_id` and `command_id` are digests of the
//! user id and event id, so reprocessing an event yields identical ids.

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use crate::engine::baseline::keys;
use crate::engine::decision::Decision;
use crate::engine::detect::Signal;
use crate::engine::event::{Event, EventError};
use crate::engine::pipeline::{CommandKind, Outcome};
use crate::engine::time::{format_rfc3339, EpochMs};

/// Deterministic alert id of an event.
pub fn alert_id(user_id: &str, event_id: &str) -> String {
    format!(
        "al-{:032x}",
        keys::id128(&[b"alert", user_id.as_bytes(), event_id.as_bytes()])
    )
}

/// Deterministic command id of an event's command.
pub fn command_id(kind: CommandKind, user_id: &str, event_id: &str) -> String {
    format!(
        "cmd-{:032x}",
        keys::id128(&[
            kind.as_str().as_bytes(),
            user_id.as_bytes(),
            event_id.as_bytes()
        ])
    )
}

/// Scores are written with four decimals: enough to rank, short to read.
fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

struct Reasons<'a>(&'a Decision);

impl Serialize for Reasons<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sigs = &self.0.signals;
        let mut seq = s.serialize_seq(Some(sigs.len() + sigs.snoozed_len()))?;
        for sig in sigs.iter() {
            seq.serialize_element(&Reason(sig, false))?;
        }
        // Snoozed reasons last, marked: an analyst sees what was muted, and they add nothing
        // to the score.
        for sig in sigs.snoozed() {
            seq.serialize_element(&Reason(sig, true))?;
        }
        seq.end()
    }
}

/// A reason, and whether it is snoozed.
struct Reason<'a>(&'a Signal, bool);

impl Serialize for Reason<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Reason", 3 + self.1 as usize)?;
        st.serialize_field("code", self.0.code.as_str())?;
        st.serialize_field("score", &round4(self.0.score))?;
        st.serialize_field("detail", &DetailText(self.0))?;
        if self.1 {
            st.serialize_field("snoozed", &true)?;
        }
        st.end()
    }
}

struct DetailText<'a>(&'a Signal);

impl Serialize for DetailText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.detail)
    }
}

#[derive(Serialize)]
struct DecisionRecord<'a> {
    event_id: &'a str,
    user_id: &'a str,
    score: f64,
    action: &'static str,
    reasons: Reasons<'a>,
}

#[derive(Serialize)]
struct AlertRecord<'a> {
    alert_id: String,
    event_id: &'a str,
    user_id: &'a str,
    event_ts: String,
    emitted_at: String,
    score: f64,
    severity: &'static str,
    action: &'static str,
    reasons: Reasons<'a>,
}

#[derive(Serialize)]
struct CommandRecord<'a> {
    command_id: String,
    command: &'static str,
    user_id: &'a str,
    alert_id: String,
    event_id: &'a str,
    issued_at: String,
    reason: String,
    /// `notify_user` only: the text for the account owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct DeadLetterRecord<'a> {
    error: String,
    topic: &'a str,
    partition: i32,
    offset: i64,
    payload: String,
}

/// Appends the decision record (one JSON object, no newline).
pub fn write_decision(buf: &mut Vec<u8>, ev: &Event<'_>, out: &Outcome) {
    let rec = DecisionRecord {
        event_id: &ev.event_id,
        user_id: &ev.user_id,
        score: round4(out.decision.score),
        action: out.decision.action.as_str(),
        reasons: Reasons(&out.decision),
    };
    // Serialising plain strings and finite numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(buf, &rec);
}

/// Appends the alert record.
pub fn write_alert(buf: &mut Vec<u8>, ev: &Event<'_>, out: &Outcome) {
    let rec = AlertRecord {
        alert_id: alert_id(&ev.user_id, &ev.event_id),
        event_id: &ev.event_id,
        user_id: &ev.user_id,
        event_ts: format_rfc3339(ev.ts_ms),
        emitted_at: format_rfc3339(out.now_ms),
        score: round4(out.decision.score),
        severity: out.decision.severity.as_str(),
        action: out.decision.action.as_str(),
        reasons: Reasons(&out.decision),
    };
    let _ = serde_json::to_writer(buf, &rec);
}

/// The one-line human reason of a command: the top three reasons' details.
pub fn command_reason(d: &Decision) -> String {
    let mut s = String::new();
    let chain = d
        .signals
        .get(crate::engine::detect::Code::AtoChain)
        .is_some();
    if chain {
        s.push_str("ATO chain: ");
    }
    let mut first = true;
    for sig in d
        .signals
        .iter()
        .filter(|x| x.code != crate::engine::detect::Code::AtoChain)
        .take(3)
    {
        if !first {
            s.push_str("; ");
        }
        first = false;
        s.push_str(&sig.detail.to_string());
    }
    s
}

/// Appends the command record of `kind`; `message` is `notify_user`'s text (see
/// [`crate::engine::pipeline::Engine::command_message`], which renders it).
pub fn write_command(
    buf: &mut Vec<u8>,
    ev: &Event<'_>,
    out: &Outcome,
    kind: CommandKind,
    message: Option<&str>,
) {
    let rec = CommandRecord {
        command_id: command_id(kind, &ev.user_id, &ev.event_id),
        command: kind.as_str(),
        user_id: &ev.user_id,
        alert_id: alert_id(&ev.user_id, &ev.event_id),
        event_id: &ev.event_id,
        issued_at: format_rfc3339(out.now_ms),
        reason: command_reason(&out.decision),
        message,
    };
    let _ = serde_json::to_writer(buf, &rec);
}

/// Appends a dead-letter record. The payload is the original text when it is UTF-8, else
/// base64 (and the error says so).
pub fn write_dead_letter(
    buf: &mut Vec<u8>,
    err: &EventError,
    topic: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
) {
    let (payload, error) = match std::str::from_utf8(payload) {
        Ok(s) => (s.to_owned(), err.to_string()),
        Err(_) => (base64(payload), format!("{err} (payload is base64)")),
    };
    let rec = DeadLetterRecord {
        error,
        topic,
        partition,
        offset,
        payload,
    };
    let _ = serde_json::to_writer(buf, &rec);
}

/// Standard base64 with padding (RFC 4648). Small enough to keep rather than add a crate.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Formats an event's time the way alerts do (exposed for adapters that log it).
pub fn event_ts(ms: EpochMs) -> String {
    format_rfc3339(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::parse_event;
    use crate::engine::pipeline::Engine;
    use crate::service::config::Config;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(alert_id("u", "e1"), alert_id("u", "e1"));
        assert_ne!(alert_id("u", "e1"), alert_id("u", "e2"));
        assert_ne!(
            command_id(CommandKind::FreezeAccount, "u", "e1"),
            command_id(CommandKind::RequireStepUp, "u", "e1")
        );
        assert!(alert_id("u", "e1").starts_with("al-"));
        assert_eq!(alert_id("u", "e1").len(), 35);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn records_follow_the_contract() {
        let engine = Engine::new(Config::default());
        let mut st = engine.new_state();
        let raw = br#"{"event_id":"e-1","user_id":"u-42","ts":"2026-10-01T08:15:30.123Z","type":"transfer","amount":250.0,"counterparty":"p-991"}"#;
        let (ev, out) = engine
            .process_bytes(&mut st, raw, 1_790_842_531_000)
            .unwrap();
        let mut b = Vec::new();
        write_decision(&mut b, &ev, &out);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["event_id"], "e-1");
        assert_eq!(v["user_id"], "u-42");
        assert!(v["score"].as_f64().unwrap() >= 0.0);
        assert!(["allow", "review", "step_up", "freeze"].contains(&v["action"].as_str().unwrap()));
        assert!(v["reasons"].is_array());

        b.clear();
        write_alert(&mut b, &ev, &out);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["event_ts"], "2026-10-01T08:15:30.123Z");
        assert_eq!(v["emitted_at"], "2026-10-01T08:15:31.000Z");
        assert_eq!(v["alert_id"], alert_id("u-42", "e-1"));
        for k in [
            "severity", "action", "score", "reasons", "user_id", "event_id",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }

        b.clear();
        write_command(&mut b, &ev, &out, CommandKind::FreezeAccount, None);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["command"], "freeze_account");
        assert_eq!(v["alert_id"], alert_id("u-42", "e-1"));
        assert!(v["command_id"].as_str().unwrap().starts_with("cmd-"));

        b.clear();
        let err = parse_event(b"{\xff}").unwrap_err();
        write_dead_letter(&mut b, &err, "wallet.events", 3, 1234, b"{\xff}");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 1234);
        assert_eq!(v["payload"], base64(b"{\xff}"));
        assert!(v["error"].as_str().unwrap().contains("UTF-8"));
    }
}
