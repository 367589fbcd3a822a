//! Wire event → validated [`Event`], or a typed [`EventError`] that becomes a dead letter.
//!
//! The parser is a hand-written serde map visitor over borrowed input: no intermediate
//! `serde_json::Value`, no allocation for unescaped strings, and it remembers which key was
//! being read so that a type error names its field. Unknown keys are skipped, as the contract
//! requires.
//!
//! In front of it sits `scan`, a single-pass scanner for the common shape (a flat object of
//! unescaped strings and numbers plus `geo`). It gives up on anything unusual, and the serde
//! path then decodes the input and produces the precise error; a differential test checks that
//! the two agree on everything the scanner accepts.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::engine::time::{self, EpochMs};

/// Largest raw event accepted, in bytes (64 KiB).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Largest accepted amount or balance.
pub const MAX_AMOUNT: f64 = 1e12;
/// Length limit, in characters, of ids, counterparties and device ids.
pub const MAX_ID_CHARS: usize = 128;
/// Length limit, in characters, of `channel`.
pub const MAX_CHANNEL_CHARS: usize = 32;
/// Length limit, in characters, of `failure_reason`.
pub const MAX_REASON_CHARS: usize = 256;

/// The type of a wallet event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventType {
    /// Money out: purchase at a merchant.
    Payment,
    /// Money out: transfer to another wallet.
    Transfer,
    /// Money out: cash-out to a bank card or account.
    Withdrawal,
    /// Money out: phone credit top-up for a number.
    MobileRecharge,
    /// Money in: the user adds funds.
    TopUp,
    /// Money in: a merchant refund.
    Refund,
    /// Money in: a transfer received.
    TransferIn,
    /// Successful login.
    Login,
    /// Failed login attempt.
    LoginFailed,
    /// Password reset.
    PasswordReset,
    /// MFA factor changed (phone number, authenticator).
    MfaChange,
    /// A device bound to the account.
    DeviceBind,
    /// A card or bank account bound.
    PaymentMethodBind,
    /// A card or bank account removed.
    PaymentMethodUnbind,
    /// Feedback: the outcome of a `require_step_up` (contract v2).
    StepUpResult,
    /// Feedback: an analyst's verdict on an alert (contract v2).
    CaseVerdict,
    /// Feedback: an operator lifted a freeze (contract v2).
    AccountUnfrozen,
}

impl EventType {
    /// Every type, in declaration order (index = `self as usize`).
    pub const ALL: [EventType; 17] = [
        EventType::Payment,
        EventType::Transfer,
        EventType::Withdrawal,
        EventType::MobileRecharge,
        EventType::TopUp,
        EventType::Refund,
        EventType::TransferIn,
        EventType::Login,
        EventType::LoginFailed,
        EventType::PasswordReset,
        EventType::MfaChange,
        EventType::DeviceBind,
        EventType::PaymentMethodBind,
        EventType::PaymentMethodUnbind,
        EventType::StepUpResult,
        EventType::CaseVerdict,
        EventType::AccountUnfrozen,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Payment => "payment",
            EventType::Transfer => "transfer",
            EventType::Withdrawal => "withdrawal",
            EventType::MobileRecharge => "mobile_recharge",
            EventType::TopUp => "top_up",
            EventType::Refund => "refund",
            EventType::TransferIn => "transfer_in",
            EventType::Login => "login",
            EventType::LoginFailed => "login_failed",
            EventType::PasswordReset => "password_reset",
            EventType::MfaChange => "mfa_change",
            EventType::DeviceBind => "device_bind",
            EventType::PaymentMethodBind => "payment_method_bind",
            EventType::PaymentMethodUnbind => "payment_method_unbind",
            EventType::StepUpResult => "step_up_result",
            EventType::CaseVerdict => "case_verdict",
            EventType::AccountUnfrozen => "account_unfrozen",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<EventType> {
        Some(match s {
            "payment" => EventType::Payment,
            "transfer" => EventType::Transfer,
            "withdrawal" => EventType::Withdrawal,
            "mobile_recharge" => EventType::MobileRecharge,
            "top_up" => EventType::TopUp,
            "refund" => EventType::Refund,
            "transfer_in" => EventType::TransferIn,
            "login" => EventType::Login,
            "login_failed" => EventType::LoginFailed,
            "password_reset" => EventType::PasswordReset,
            "mfa_change" => EventType::MfaChange,
            "device_bind" => EventType::DeviceBind,
            "payment_method_bind" => EventType::PaymentMethodBind,
            "payment_method_unbind" => EventType::PaymentMethodUnbind,
            "step_up_result" => EventType::StepUpResult,
            "case_verdict" => EventType::CaseVerdict,
            "account_unfrozen" => EventType::AccountUnfrozen,
            _ => return None,
        })
    }

    /// Money leaving the wallet.
    pub fn is_money_out(self) -> bool {
        matches!(
            self,
            EventType::Payment
                | EventType::Transfer
                | EventType::Withdrawal
                | EventType::MobileRecharge
        )
    }

    /// Money entering the wallet.
    pub fn is_money_in(self) -> bool {
        matches!(
            self,
            EventType::TopUp | EventType::Refund | EventType::TransferIn
        )
    }

    /// Feedback about an earlier decision (step-up result, analyst verdict, unfreeze): not
    /// scored, applied to the user's state by [`crate::engine::feedback`].
    pub fn is_feedback(self) -> bool {
        matches!(
            self,
            EventType::StepUpResult | EventType::CaseVerdict | EventType::AccountUnfrozen
        )
    }

    /// Any money movement: `amount` is required.
    pub fn is_money(self) -> bool {
        self.is_money_out() || self.is_money_in()
    }

    /// A credential or account-security change that opens the "change then spend" window.
    /// Returns its slot in the profile's credential-change times.
    pub fn credential_slot(self) -> Option<usize> {
        match self {
            EventType::PasswordReset => Some(0),
            EventType::MfaChange => Some(1),
            EventType::DeviceBind => Some(2),
            EventType::PaymentMethodBind => Some(3),
            _ => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `status` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The operation went through (the default).
    Success,
    /// The operation was attempted and refused.
    Failed,
}

/// What a feedback event says: a step-up `result` or a case `verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feedback {
    /// `step_up_result`, `result: passed`: the owner proved who they are.
    Passed,
    /// `step_up_result`, `result: failed`.
    Failed,
    /// `case_verdict`, `verdict: confirmed_fraud`.
    ConfirmedFraud,
    /// `case_verdict`, `verdict: false_positive`.
    FalsePositive,
    /// `account_unfrozen` (it has no result field).
    Unfrozen,
}

impl Feedback {
    /// A short, fixed label (metrics, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Feedback::Passed => "step_up_passed",
            Feedback::Failed => "step_up_failed",
            Feedback::ConfirmedFraud => "confirmed_fraud",
            Feedback::FalsePositive => "false_positive",
            Feedback::Unfrozen => "account_unfrozen",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [Feedback; 5] = [
        Feedback::Passed,
        Feedback::Failed,
        Feedback::ConfirmedFraud,
        Feedback::FalsePositive,
        Feedback::Unfrozen,
    ];
}

/// A coordinate pair, validated to lat ∈ [-90, 90], lon ∈ [-180, 180].
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Geo {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// Mean Earth radius, km.
const EARTH_RADIUS_KM: f64 = 6371.0;

/// Great-circle distance between two points, km.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// A validated wallet event, borrowing its strings from the input buffer where it can.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Unique id of the event.
    pub event_id: Cow<'a, str>,
    /// The account.
    pub user_id: Cow<'a, str>,
    /// Event time, epoch milliseconds UTC.
    pub ts_ms: EpochMs,
    /// Event type.
    pub kind: EventType,
    /// Amount for money movements (always `Some` for them), `None` otherwise.
    pub amount: Option<f64>,
    /// ISO currency code, upper case, if given.
    pub currency: Option<[u8; 3]>,
    /// Outcome of the operation.
    pub status: Status,
    /// Why it failed, if given.
    pub failure_reason: Option<Cow<'a, str>>,
    /// Payee, merchant, phone number or card token.
    pub counterparty: Option<Cow<'a, str>>,
    /// `app`, `web`, `pos`, `api`, ….
    pub channel: Option<Cow<'a, str>>,
    /// Device identifier.
    pub device_id: Option<Cow<'a, str>>,
    /// Client IP address.
    pub ip: Option<IpAddr>,
    /// Client position.
    pub geo: Option<Geo>,
    /// Wallet balance after the event.
    pub balance_after: Option<f64>,
    /// Feedback events: the event the feedback is about (required for `step_up_result` and
    /// `case_verdict`, optional for `account_unfrozen`); `None` for every other type.
    pub ref_event_id: Option<Cow<'a, str>>,
    /// Feedback events: what they say; `None` for every other type.
    pub feedback: Option<Feedback>,
}

impl Event<'_> {
    /// Money out that went through: the only events that move the amount baseline.
    pub fn is_successful_money_out(&self) -> bool {
        self.kind.is_money_out() && self.status == Status::Success
    }
}

/// Why an input could not become an [`Event`]. Every variant names the offending field where
/// there is one; the text is what the dead letter carries in `error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// Over [`MAX_EVENT_BYTES`].
    #[error("event is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not UTF-8.
    #[error("event is not valid UTF-8 at byte {at}")]
    NotUtf8 {
        /// Offset of the first bad byte.
        at: usize,
    },
    /// Not a JSON object, or broken JSON.
    #[error("malformed JSON: {msg}")]
    Json {
        /// serde_json's description, with line and column.
        msg: String,
    },
    /// A field had the wrong JSON type or could not be decoded.
    #[error("field `{field}`: {msg}")]
    BadType {
        /// The field.
        field: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// A required field is absent or null.
    #[error("missing field `{field}`")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A field is present with a value outside its rule.
    #[error("field `{field}`: {msg}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule that was broken.
        msg: String,
    },
}

impl EventError {
    /// A short, fixed label for metrics (`reason` label of the invalid-events counter).
    pub fn reason(&self) -> &'static str {
        match self {
            EventError::TooLarge { .. } => "too_large",
            EventError::NotUtf8 { .. } => "not_utf8",
            EventError::Json { .. } => "malformed_json",
            EventError::BadType { .. } => "bad_type",
            EventError::Missing { .. } => "missing_field",
            EventError::Invalid { .. } => "invalid_field",
        }
    }

    /// The field at fault, if the error is about one field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            EventError::BadType { field, .. }
            | EventError::Missing { field }
            | EventError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// `ts` as it arrives: text or integer milliseconds.
#[derive(Debug, Clone, PartialEq)]
enum RawTs<'a> {
    Text(Cow<'a, str>),
    Millis(i64),
}

mod scan;

/// The event as decoded, before per-field rules are applied.
#[derive(Default, Debug, PartialEq)]
struct RawEvent<'a> {
    event_id: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    ts: Option<RawTs<'a>>,
    kind: Option<Cow<'a, str>>,
    amount: Option<f64>,
    currency: Option<Cow<'a, str>>,
    status: Option<Cow<'a, str>>,
    failure_reason: Option<Cow<'a, str>>,
    counterparty: Option<Cow<'a, str>>,
    channel: Option<Cow<'a, str>>,
    device_id: Option<Cow<'a, str>>,
    ip: Option<Cow<'a, str>>,
    geo: Option<Geo>,
    balance_after: Option<f64>,
    ref_event_id: Option<Cow<'a, str>>,
    result: Option<Cow<'a, str>>,
    verdict: Option<Cow<'a, str>>,
    note: Option<Cow<'a, str>>,
}

/// Borrowed-when-possible string, so escapes still work.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for RawTs<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 string or integer epoch milliseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawTs::Millis(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(RawTs::Millis)
                    .map_err(|_| E::custom("epoch milliseconds out of range"))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawTs::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawTs::Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_any(V)
    }
}

/// Visits the top-level object, recording the key being decoded in `field` so that a failure
/// can be reported against it.
struct EventSeed<'c> {
    field: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = RawEvent<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = RawEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawEvent::default();
        // Keys are compared as borrowed text; an escaped key (rare) falls back to an owned copy.
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            macro_rules! take {
                ($name:literal, $slot:expr, $ty:ty, $map_fn:expr) => {{
                    self.field.set(Some($name));
                    let v: Option<$ty> = map.next_value()?;
                    $slot = v.map($map_fn);
                    self.field.set(None);
                }};
            }
            match key.0.as_ref() {
                "event_id" => take!("event_id", raw.event_id, CowStr, |s| s.0),
                "user_id" => take!("user_id", raw.user_id, CowStr, |s| s.0),
                "ts" => take!("ts", raw.ts, RawTs, |t| t),
                "type" => take!("type", raw.kind, CowStr, |s| s.0),
                "amount" => take!("amount", raw.amount, f64, |v| v),
                "currency" => take!("currency", raw.currency, CowStr, |s| s.0),
                "status" => take!("status", raw.status, CowStr, |s| s.0),
                "failure_reason" => take!("failure_reason", raw.failure_reason, CowStr, |s| s.0),
                "counterparty" => take!("counterparty", raw.counterparty, CowStr, |s| s.0),
                "channel" => take!("channel", raw.channel, CowStr, |s| s.0),
                "device_id" => take!("device_id", raw.device_id, CowStr, |s| s.0),
                "ip" => take!("ip", raw.ip, CowStr, |s| s.0),
                "geo" => take!("geo", raw.geo, Geo, |g| g),
                "balance_after" => take!("balance_after", raw.balance_after, f64, |v| v),
                "ref_event_id" => take!("ref_event_id", raw.ref_event_id, CowStr, |s| s.0),
                "result" => take!("result", raw.result, CowStr, |s| s.0),
                "verdict" => take!("verdict", raw.verdict, CowStr, |s| s.0),
                "note" => take!("note", raw.note, CowStr, |s| s.0),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(raw)
    }
}

fn check_len(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), EventError> {
    // ASCII (the common case) needs no character walk.
    let n = if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    };
    if n < min {
        return Err(EventError::Invalid {
            field,
            msg: format!("must not be empty (at least {min} character)"),
        });
    }
    if n > max {
        return Err(EventError::Invalid {
            field,
            msg: format!("{n} characters, over the {max}-character limit"),
        });
    }
    Ok(())
}

fn opt_str<'a>(
    field: &'static str,
    v: Option<Cow<'a, str>>,
    max: usize,
) -> Result<Option<Cow<'a, str>>, EventError> {
    match v {
        // Producers often send "" for "none"; the contract sets no minimum for optional text.
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => {
            check_len(field, &s, 1, max)?;
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

fn check_money(field: &'static str, v: f64) -> Result<f64, EventError> {
    if !v.is_finite() {
        return Err(EventError::Invalid {
            field,
            msg: "must be a finite number".into(),
        });
    }
    if !(0.0..=MAX_AMOUNT).contains(&v) {
        return Err(EventError::Invalid {
            field,
            msg: format!("{v} is outside 0..=1e12"),
        });
    }
    Ok(v)
}

/// Decodes and validates one raw event.
///
/// Rules: size ≤ 64 KiB, UTF-8, a JSON object, the contract's required fields per type,
/// string lengths, finite amounts in `0..=1e12`, `ts` between 2000 and 2100, lat/lon ranges,
/// a parseable IP, a three-letter currency. Never panics on any input.
pub fn parse_event(bytes: &[u8]) -> Result<Event<'_>, EventError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge {
            size: bytes.len(),
            max: MAX_EVENT_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| EventError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    if let Some(raw) = scan::scan(text) {
        return validate(raw);
    }
    validate(parse_raw_serde(text)?)
}

/// The general decoder: any valid JSON, precise errors.
fn parse_raw_serde(text: &str) -> Result<RawEvent<'_>, EventError> {
    let field = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = EventSeed { field: &field }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|_| raw))
        .map_err(|e| match field.get() {
            Some(f) => EventError::BadType {
                field: f,
                msg: strip_position(&e),
            },
            None => EventError::Json { msg: e.to_string() },
        })?;
    Ok(raw)
}

/// serde_json appends " at line L column C"; inside a named field the position is noise.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn validate(raw: RawEvent<'_>) -> Result<Event<'_>, EventError> {
    let event_id = raw
        .event_id
        .ok_or(EventError::Missing { field: "event_id" })?;
    check_len("event_id", &event_id, 1, MAX_ID_CHARS)?;
    let user_id = raw
        .user_id
        .ok_or(EventError::Missing { field: "user_id" })?;
    check_len("user_id", &user_id, 1, MAX_ID_CHARS)?;

    let ts_ms = match raw.ts.ok_or(EventError::Missing { field: "ts" })? {
        RawTs::Millis(ms) => ms,
        RawTs::Text(s) => time::parse_rfc3339(&s).map_err(|e| EventError::Invalid {
            field: "ts",
            msg: format!("{e}: {:?}", truncate(&s, 40)),
        })?,
    };
    if !(time::MIN_TS_MS..time::MAX_TS_MS).contains(&ts_ms) {
        return Err(EventError::Invalid {
            field: "ts",
            msg: "outside the supported range 2000-01-01..2100-01-01".into(),
        });
    }

    let kind_s = raw.kind.ok_or(EventError::Missing { field: "type" })?;
    let kind = EventType::parse(&kind_s).ok_or_else(|| EventError::Invalid {
        field: "type",
        msg: format!("unknown event type {:?}", truncate(&kind_s, 40)),
    })?;

    let amount = if kind.is_money() {
        Some(check_money(
            "amount",
            raw.amount.ok_or(EventError::Missing { field: "amount" })?,
        )?)
    } else {
        // The contract says amount is ignored for non-money events.
        None
    };

    let currency = match raw.currency {
        Some(c) => {
            let b = c.as_bytes();
            if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
                return Err(EventError::Invalid {
                    field: "currency",
                    msg: format!("{:?} is not a 3-letter code", truncate(&c, 16)),
                });
            }
            Some([
                b[0].to_ascii_uppercase(),
                b[1].to_ascii_uppercase(),
                b[2].to_ascii_uppercase(),
            ])
        }
        None => None,
    };

    let status = match raw.status.as_deref() {
        None | Some("success") => Status::Success,
        Some("failed") => Status::Failed,
        Some(other) => {
            return Err(EventError::Invalid {
                field: "status",
                msg: format!("{:?} is not `success` or `failed`", truncate(other, 40)),
            })
        }
    };

    let counterparty = opt_str("counterparty", raw.counterparty, MAX_ID_CHARS)?;
    if counterparty.is_none() && kind.is_money_out() {
        return Err(EventError::Missing {
            field: "counterparty",
        });
    }
    let failure_reason = opt_str("failure_reason", raw.failure_reason, MAX_REASON_CHARS)?;
    let channel = opt_str("channel", raw.channel, MAX_CHANNEL_CHARS)?;
    let device_id = opt_str("device_id", raw.device_id, MAX_ID_CHARS)?;

    let ip = match raw.ip {
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| EventError::Invalid {
            field: "ip",
            msg: format!("{:?} is not an IPv4 or IPv6 address", truncate(&s, 64)),
        })?),
        None => None,
    };

    if let Some(g) = raw.geo {
        if !(g.lat.is_finite() && (-90.0..=90.0).contains(&g.lat)) {
            return Err(EventError::Invalid {
                field: "geo.lat",
                msg: format!("{} is outside -90..=90", g.lat),
            });
        }
        if !(g.lon.is_finite() && (-180.0..=180.0).contains(&g.lon)) {
            return Err(EventError::Invalid {
                field: "geo.lon",
                msg: format!("{} is outside -180..=180", g.lon),
            });
        }
    }

    let balance_after = match raw.balance_after {
        Some(b) => Some(check_money("balance_after", b)?),
        None => None,
    };

    let (ref_event_id, feedback) =
        feedback_fields(kind, raw.ref_event_id, raw.result, raw.verdict, raw.note)?;

    Ok(Event {
        event_id,
        user_id,
        ts_ms,
        kind,
        amount,
        currency,
        status,
        failure_reason,
        counterparty,
        channel,
        device_id,
        ip,
        geo: raw.geo,
        balance_after,
        ref_event_id,
        feedback,
    })
}

/// The contract's v2 rules for the feedback fields: `ref_event_id` (an id, required for
/// `step_up_result` and `case_verdict`), `result` (`passed` or `failed`), `verdict`
/// (`confirmed_fraud` or `false_positive`), `note` (≤ 256 characters). Other types ignore them.
fn feedback_fields<'a>(
    kind: EventType,
    ref_event_id: Option<Cow<'a, str>>,
    result: Option<Cow<'a, str>>,
    verdict: Option<Cow<'a, str>>,
    note: Option<Cow<'a, str>>,
) -> Result<(Option<Cow<'a, str>>, Option<Feedback>), EventError> {
    if !kind.is_feedback() {
        return Ok((None, None));
    }
    let ref_event_id = match ref_event_id {
        Some(r) => {
            check_len("ref_event_id", &r, 1, MAX_ID_CHARS)?;
            Some(r)
        }
        None if kind == EventType::AccountUnfrozen => None,
        None => {
            return Err(EventError::Missing {
                field: "ref_event_id",
            })
        }
    };
    let feedback = match kind {
        EventType::StepUpResult => match result.as_deref() {
            Some("passed") => Feedback::Passed,
            Some("failed") => Feedback::Failed,
            Some(other) => {
                return Err(EventError::Invalid {
                    field: "result",
                    msg: format!("{:?} is not `passed` or `failed`", truncate(other, 40)),
                })
            }
            None => return Err(EventError::Missing { field: "result" }),
        },
        EventType::CaseVerdict => {
            opt_str("note", note, MAX_REASON_CHARS)?;
            match verdict.as_deref() {
                Some("confirmed_fraud") => Feedback::ConfirmedFraud,
                Some("false_positive") => Feedback::FalsePositive,
                Some(other) => {
                    return Err(EventError::Invalid {
                        field: "verdict",
                        msg: format!(
                            "{:?} is not `confirmed_fraud` or `false_positive`",
                            truncate(other, 40)
                        ),
                    })
                }
                None => return Err(EventError::Missing { field: "verdict" }),
            }
        }
        _ => Feedback::Unfrozen,
    };
    Ok((ref_event_id, Some(feedback)))
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"event_id":"e-1","user_id":"u-42","ts":"2026-10-01T08:15:30.123Z","type":"transfer","amount":250.0,"currency":"CNY","counterparty":"p-991","channel":"app","device_id":"d-7f3a","ip":"203.0.113.7","geo":{"lat":31.23,"lon":121.47},"balance_after":1000.0}"#;

    fn with(field: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(OK).unwrap();
        if value == "<absent>" {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = serde_json::from_str(value).unwrap();
        }
        v.to_string()
    }

    fn err(s: &str) -> EventError {
        parse_event(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_contract_example() {
        let e = parse_event(OK.as_bytes()).unwrap();
        assert_eq!(e.event_id, "e-1");
        assert_eq!(e.user_id, "u-42");
        assert_eq!(e.ts_ms, 1_790_842_530_123);
        assert_eq!(e.kind, EventType::Transfer);
        assert_eq!(e.amount, Some(250.0));
        assert_eq!(e.currency, Some(*b"CNY"));
        assert_eq!(e.status, Status::Success);
        assert_eq!(e.ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(
            e.geo,
            Some(Geo {
                lat: 31.23,
                lon: 121.47
            })
        );
        assert_eq!(e.balance_after, Some(1000.0));
        assert!(
            matches!(e.event_id, Cow::Borrowed(_)),
            "no copy for plain strings"
        );
    }

    #[test]
    fn both_ts_forms_agree() {
        let s = with("ts", "1790842530123");
        assert_eq!(parse_event(s.as_bytes()).unwrap().ts_ms, 1_790_842_530_123);
        assert!(matches!(
            err(&with("ts", "1.5")),
            EventError::BadType { field: "ts", .. }
        ));
        assert!(matches!(
            err(&with("ts", "\"yesterday\"")),
            EventError::Invalid { field: "ts", .. }
        ));
        assert!(matches!(
            err(&with("ts", "5")),
            EventError::Invalid { field: "ts", .. }
        ));
        assert!(matches!(
            err(&with("ts", "<absent>")),
            EventError::Missing { field: "ts" }
        ));
    }

    #[test]
    fn unknown_fields_ignored_and_escapes_decoded() {
        let s = OK.replace(r#""e-1""#, r#""e-\u0031","extra":{"a":[1,2]}"#);
        let e = parse_event(s.as_bytes()).unwrap();
        assert_eq!(e.event_id, "e-1");
    }

    #[test]
    fn one_case_per_rule() {
        assert!(matches!(
            err(&format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_EVENT_BYTES))),
            EventError::TooLarge { .. }
        ));
        assert!(matches!(
            parse_event(b"{\"event_id\":\"\xff\"}").unwrap_err(),
            EventError::NotUtf8 { at: 13 }
        ));
        assert!(matches!(err("{not json"), EventError::Json { .. }));
        assert!(matches!(err("[1,2]"), EventError::Json { .. }));
        assert!(matches!(
            err(&format!("{OK} {{}}")),
            EventError::Json { .. }
        ));
        assert!(matches!(
            err(&with("event_id", "<absent>")),
            EventError::Missing { field: "event_id" }
        ));
        assert!(matches!(
            err(&with("event_id", "\"\"")),
            EventError::Invalid {
                field: "event_id",
                ..
            }
        ));
        assert!(matches!(
            err(&with("event_id", "7")),
            EventError::BadType {
                field: "event_id",
                ..
            }
        ));
        assert!(matches!(
            err(&with("user_id", "null")),
            EventError::Missing { field: "user_id" }
        ));
        let long = format!("\"{}\"", "u".repeat(129));
        assert!(matches!(
            err(&with("user_id", &long)),
            EventError::Invalid {
                field: "user_id",
                ..
            }
        ));
        // 128 multi-byte characters are within the limit.
        let cjk = format!("\"{}\"", "用".repeat(128));
        assert!(parse_event(with("user_id", &cjk).as_bytes()).is_ok());
        assert!(matches!(
            err(&with("type", "\"teleport\"")),
            EventError::Invalid { field: "type", .. }
        ));
        assert!(matches!(
            err(&with("type", "<absent>")),
            EventError::Missing { field: "type" }
        ));
        assert!(matches!(
            err(&with("amount", "<absent>")),
            EventError::Missing { field: "amount" }
        ));
        assert!(matches!(
            err(&with("amount", "-1")),
            EventError::Invalid {
                field: "amount",
                ..
            }
        ));
        assert!(matches!(
            err(&with("amount", "1e13")),
            EventError::Invalid {
                field: "amount",
                ..
            }
        ));
        assert!(matches!(
            err(&with("amount", "\"10\"")),
            EventError::BadType {
                field: "amount",
                ..
            }
        ));
        assert!(matches!(
            err(&with("currency", "\"YUAN\"")),
            EventError::Invalid {
                field: "currency",
                ..
            }
        ));
        assert!(matches!(
            err(&with("status", "\"pending\"")),
            EventError::Invalid {
                field: "status",
                ..
            }
        ));
        assert!(matches!(
            err(&with("counterparty", "<absent>")),
            EventError::Missing {
                field: "counterparty"
            }
        ));
        assert!(matches!(
            err(&with("ip", "\"300.1.1.1\"")),
            EventError::Invalid { field: "ip", .. }
        ));
        assert!(matches!(
            err(&with("geo", r#"{"lat":91,"lon":0}"#)),
            EventError::Invalid {
                field: "geo.lat",
                ..
            }
        ));
        assert!(matches!(
            err(&with("geo", r#"{"lat":0,"lon":-181}"#)),
            EventError::Invalid {
                field: "geo.lon",
                ..
            }
        ));
        assert!(matches!(
            err(&with("geo", r#"{"lat":0}"#)),
            EventError::BadType { field: "geo", .. }
        ));
        assert!(matches!(
            err(&with("balance_after", "-5")),
            EventError::Invalid {
                field: "balance_after",
                ..
            }
        ));
        assert!(matches!(
            err(&with("channel", &format!("\"{}\"", "c".repeat(33)))),
            EventError::Invalid {
                field: "channel",
                ..
            }
        ));
    }

    #[test]
    fn non_money_events_need_no_amount_or_counterparty() {
        let s = r#"{"event_id":"e","user_id":"u","ts":1790842530123,"type":"login","amount":-5}"#;
        let e = parse_event(s.as_bytes()).unwrap();
        assert_eq!(e.kind, EventType::Login);
        assert_eq!(e.amount, None);
        // Money in needs an amount but no counterparty.
        let s = r#"{"event_id":"e","user_id":"u","ts":1790842530123,"type":"top_up","amount":5}"#;
        assert!(parse_event(s.as_bytes()).is_ok());
        let s = r#"{"event_id":"e","user_id":"u","ts":1790842530123,"type":"payment","amount":5,"status":"failed","counterparty":"m"}"#;
        assert_eq!(parse_event(s.as_bytes()).unwrap().status, Status::Failed);
    }

    #[test]
    fn error_text_names_the_field() {
        assert_eq!(
            err(&with("user_id", "<absent>")).to_string(),
            "missing field `user_id`"
        );
        assert!(err(&with("amount", "\"10\""))
            .to_string()
            .starts_with("field `amount`: invalid type"));
    }

    #[test]
    fn type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }
}
