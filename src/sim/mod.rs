//! `walletguard simulate`: a deterministic generator of realistic wallet traffic with labelled
//! attacks and labelled benign novelties, for evaluation, demos and benchmarks.
//!
//! # Library use
//!
//! [`Simulator`] is an iterator of [`SimEvent`]s in global time order for `(users, days, seed)`;
//! nothing is written to disk. A benchmark can feed [`SimEvent::to_event`] straight to
//! [`crate::pipeline::Engine::process`], a demo can stream [`SimEvent::write_json`] lines.
//! Memory is one simulated day of events plus a few hundred bytes per user.
//!
//! ```
//! use walletguard::sim::{SimParams, Simulator};
//! let sim = Simulator::new(&SimParams { users: 50, days: 3, ..SimParams::default() }).unwrap();
//! let mut last = i64::MIN;
//! for ev in sim {
//!     assert!(ev.ts_ms >= last);
//!     last = ev.ts_ms;
//! }
//! ```
//!
//! # What is simulated
//!
//! The behaviour model lives in [`model`]; attack and novelty scripts in `scenario.rs`; the
//! shared world (cities, IP ranges, ids) in [`world`]. Every user has a home city with real
//! coordinates, one or two devices, a home /24 and a mobile carrier, a balance that every
//! flow keeps consistent (a money-out larger than the balance fails with
//! `insufficient_funds`), an activity rate, a log-normal amount habit, favourite payees,
//! daily active hours, logins before sessions, salary top-ups and phone recharges.
//!
//! Benign novelties (label 0, with their kind): `travel`, `new_phone`, `big_purchase`,
//! `owner_reset`, `family_recharge`. Attacks (label 1, with their scenario), each starting
//! after at least 14 days of history: `account_takeover`, `sim_swap`, `stolen_phone`,
//! `card_testing`, `impossible_travel`, `slow_drain`. The scripts follow how such fraud is
//! described, not what any detector looks for.
//!
//! Which events carry a novelty kind: `travel`, the ticket payment and every owner event from
//! take-off until 6 h after landing back home; `new_phone` and `owner_reset`, the change and
//! the owner's events for 48 h after it; `big_purchase`, the purchase and the top-up made
//! for it; `family_recharge`, the recharges to the family number. Attack labels go to the
//! attacker's events only; the victim's own events around them stay ordinary.
//!
//! Rates: `attack_rate` (default 1.5%) of users get one attack, scenario drawn uniformly;
//! each novelty kind independently hits `novelty_rate` (default 5%) of users.
//!
//! # Labels file
//!
//! [`write_files`] writes the events as JSON lines per CONTRACT.md and, in the same order, one
//! CSV row per event in the format of [`crate::eval::labels`]:
//! `event_id,user_id,label,scenario`.
//!
//! Determinism: one PCG stream per user seeded from `(seed, user)`, no hash-map iteration in
//! output paths, no wall clock. The same parameters give the same bytes.

pub mod model;
mod scenario;
pub mod world;

use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::eval::labels::LabelWriter;
use crate::event::{Event, EventType, Geo, Status};
use crate::replay::{create_output, ReplayError};
use crate::time::{days_from_civil, write_rfc3339, EpochMs};

pub use model::Simulator;
pub use scenario::MIN_HISTORY_DAYS;
pub use world::Party;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A parameter is out of range.
    #[error("invalid simulation parameter `{name}`: {msg}")]
    Invalid {
        /// The parameter.
        name: &'static str,
        /// The rule that was broken.
        msg: String,
    },
    /// An output file could not be created or written.
    #[error(transparent)]
    Io(#[from] ReplayError),
    /// The labels file could not be written.
    #[error("cannot write labels {path}: {msg}")]
    Labels {
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    /// Number of users.
    pub users: u32,
    /// Number of days.
    pub days: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Share of users who suffer one attack (when `days` ≥ 15).
    pub attack_rate: f64,
    /// Share of users who get each benign novelty kind (independently per kind).
    pub novelty_rate: f64,
    /// Local (UTC+08:00) calendar date of day 0: (year, month, day).
    pub start: (i64, u32, u32),
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            users: 1000,
            days: 30,
            seed: 1,
            attack_rate: 0.015,
            novelty_rate: 0.05,
            start: (2026, 9, 1),
        }
    }
}

impl SimParams {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |name, msg: &str| {
            Err(SimError::Invalid {
                name,
                msg: msg.into(),
            })
        };
        if self.users == 0 || self.users > 99_999_999 {
            return bad("users", "must be in 1..=99999999");
        }
        if self.days == 0 || self.days > 3660 {
            return bad("days", "must be in 1..=3660");
        }
        if !(0.0..=1.0).contains(&self.attack_rate) {
            return bad("attack_rate", "must be in 0..=1");
        }
        if !(0.0..=1.0).contains(&self.novelty_rate) {
            return bad("novelty_rate", "must be in 0..=1");
        }
        let (y, m, d) = self.start;
        if !(2001..=2090).contains(&y) || !(1..=12).contains(&m) || !(1..=28).contains(&d) {
            return bad("start", "must be a date 2001..2090 with day 1..=28");
        }
        Ok(())
    }

    /// Epoch ms of local midnight starting day 0.
    pub fn day0_ms(&self) -> EpochMs {
        let (y, m, d) = self.start;
        days_from_civil(y, m, d) * 86_400_000 - model::LOCAL_OFFSET_MS
    }
}

/// Parses a `YYYY-MM-DD` start date.
pub fn parse_date(s: &str) -> Result<(i64, u32, u32), SimError> {
    let bad = || SimError::Invalid {
        name: "start",
        msg: format!("{s:?} is not a YYYY-MM-DD date"),
    };
    let mut it = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    Ok((
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    ))
}

/// The label kind of an event: an attack scenario, a benign novelty kind, or ordinary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Ordinary traffic.
    None,
    /// Credentials phished: reset from a new device abroad at an odd hour, then draining.
    AccountTakeover,
    /// Number ported: MFA change, reset, new card, withdrawal.
    SimSwap,
    /// Unlocked phone stolen: same device and city, escalating transfers to new payees.
    StolenPhone,
    /// Tiny payments at new merchants, some declined, then a large one.
    CardTesting,
    /// A login and transfers from far away minutes after the owner's activity at home.
    ImpossibleTravel,
    /// Repeated moderate transfers to one new payee over days from the owner's device.
    SlowDrain,
    /// The owner travels (by plane, with a plausible flight time).
    Travel,
    /// The owner binds a new phone.
    NewPhone,
    /// The owner makes one big purchase.
    BigPurchase,
    /// The owner resets the password.
    OwnerReset,
    /// The owner recharges a family member's phone.
    FamilyRecharge,
}

impl Scenario {
    /// The attack scenarios.
    pub const ATTACKS: [Scenario; 6] = [
        Scenario::AccountTakeover,
        Scenario::SimSwap,
        Scenario::StolenPhone,
        Scenario::CardTesting,
        Scenario::ImpossibleTravel,
        Scenario::SlowDrain,
    ];

    /// The benign novelty kinds.
    pub const NOVELTIES: [Scenario; 5] = [
        Scenario::Travel,
        Scenario::NewPhone,
        Scenario::BigPurchase,
        Scenario::OwnerReset,
        Scenario::FamilyRecharge,
    ];

    /// The name in the labels file (empty for ordinary events).
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::None => "",
            Scenario::AccountTakeover => "account_takeover",
            Scenario::SimSwap => "sim_swap",
            Scenario::StolenPhone => "stolen_phone",
            Scenario::CardTesting => "card_testing",
            Scenario::ImpossibleTravel => "impossible_travel",
            Scenario::SlowDrain => "slow_drain",
            Scenario::Travel => "travel",
            Scenario::NewPhone => "new_phone",
            Scenario::BigPurchase => "big_purchase",
            Scenario::OwnerReset => "owner_reset",
            Scenario::FamilyRecharge => "family_recharge",
        }
    }

    /// Whether events of this kind are attacks (label 1).
    pub fn is_attack(self) -> bool {
        Scenario::ATTACKS.contains(&self)
    }
}

/// The client or system an event came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The wallet's phone app.
    App,
    /// A browser.
    Web,
    /// Scripted API access.
    Api,
    /// The bank side (salary sweeps, refunds, incoming transfers).
    Bank,
}

impl Channel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::App => "app",
            Channel::Web => "web",
            Channel::Api => "api",
            Channel::Bank => "bank",
        }
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The balance was too low.
    InsufficientFunds,
    /// The funding card was declined.
    CardDeclined,
}

impl Failure {
    /// The wire `failure_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::InsufficientFunds => "insufficient_funds",
            Failure::CardDeclined => "card_declined",
        }
    }
}

/// How `ts` is written: the contract allows RFC 3339 with any offset, or epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsForm {
    /// `…+08:00` (local time, as phone clients send it).
    Local,
    /// `…Z`.
    Utc,
    /// Integer epoch milliseconds (as some back-end systems send it).
    Millis,
}

/// One simulated event and its label. Compact and `Copy`: strings are formed on output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimEvent {
    /// Event time, epoch ms.
    pub ts_ms: EpochMs,
    /// User number (`user_id` is `u-<user>`).
    pub user: u32,
    /// The user's event number (`event_id` is `e-<user>-<seq>`).
    pub seq: u32,
    /// Event type.
    pub kind: EventType,
    /// Amount in cents, for money movements.
    pub amount_cents: Option<i64>,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
    /// Payee, merchant, card or phone number.
    pub counterparty: Option<Party>,
    /// Channel.
    pub channel: Channel,
    /// Device id number (`d-…`).
    pub device: Option<u64>,
    /// Client IP.
    pub ip: Option<Ipv4Addr>,
    /// Client position.
    pub geo: Option<Geo>,
    /// Balance after the event, in cents, for money movements.
    pub balance_cents: Option<i64>,
    /// How `ts` is written.
    pub ts_form: TsForm,
    /// The label kind: attack scenario, benign novelty, or ordinary.
    pub scenario: Scenario,
}

fn push_cents(out: &mut Vec<u8>, c: i64) {
    let _ = write!(out, "{}.{:02}", c / 100, c % 100);
}

fn cents_f64(c: i64) -> f64 {
    c as f64 / 100.0
}

impl SimEvent {
    /// Label: 1 for attack events.
    pub fn label(&self) -> u8 {
        self.scenario.is_attack() as u8
    }

    /// Appends the `user_id`.
    pub fn write_user_id(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "u-{:07}", self.user);
    }

    /// Appends the `event_id`.
    pub fn write_event_id(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "e-{:07}-{:06}", self.user, self.seq);
    }

    /// The `user_id`.
    pub fn user_id(&self) -> String {
        format!("u-{:07}", self.user)
    }

    /// The `event_id`.
    pub fn event_id(&self) -> String {
        format!("e-{:07}-{:06}", self.user, self.seq)
    }

    /// The `device_id`, if any.
    pub fn device_id(&self) -> Option<String> {
        self.device
            .map(|d| format!("d-{:012x}", d & 0xffff_ffff_ffff))
    }

    /// Appends the event as one CONTRACT.md JSON object (no newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"event_id\":\"");
        self.write_event_id(out);
        out.extend_from_slice(b"\",\"user_id\":\"");
        self.write_user_id(out);
        out.extend_from_slice(b"\",\"ts\":");
        match self.ts_form {
            TsForm::Millis => {
                let _ = write!(out, "{}", self.ts_ms);
            }
            TsForm::Utc | TsForm::Local => {
                let mut s = String::with_capacity(32);
                if self.ts_form == TsForm::Utc {
                    write_rfc3339(&mut s, self.ts_ms);
                } else {
                    write_rfc3339(&mut s, self.ts_ms + model::LOCAL_OFFSET_MS);
                    s.pop();
                    s.push_str("+08:00");
                }
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            }
        }
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.push(b'"');
        if let Some(a) = self.amount_cents {
            out.extend_from_slice(b",\"amount\":");
            push_cents(out, a);
            out.extend_from_slice(b",\"currency\":\"CNY\"");
        }
        if self.kind.is_money() {
            out.extend_from_slice(match self.failure {
                None => b",\"status\":\"success\"".as_slice(),
                Some(_) => b",\"status\":\"failed\"".as_slice(),
            });
        }
        if let Some(f) = self.failure {
            out.extend_from_slice(b",\"failure_reason\":\"");
            out.extend_from_slice(f.as_str().as_bytes());
            out.push(b'"');
        }
        if let Some(p) = self.counterparty {
            out.extend_from_slice(b",\"counterparty\":\"");
            p.write(out);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"channel\":\"");
        out.extend_from_slice(self.channel.as_str().as_bytes());
        out.push(b'"');
        if let Some(d) = self.device {
            let _ = write!(out, ",\"device_id\":\"d-{:012x}\"", d & 0xffff_ffff_ffff);
        }
        if let Some(ip) = self.ip {
            let _ = write!(out, ",\"ip\":\"{ip}\"");
        }
        if let Some(g) = self.geo {
            let _ = write!(
                out,
                ",\"geo\":{{\"lat\":{:.4},\"lon\":{:.4}}}",
                g.lat, g.lon
            );
        }
        if let Some(b) = self.balance_cents {
            out.extend_from_slice(b",\"balance_after\":");
            push_cents(out, b);
        }
        out.push(b'}');
    }

    /// The event as the pipeline's validated [`Event`], without a JSON round trip.
    pub fn to_event(&self) -> Event<'static> {
        Event {
            event_id: Cow::Owned(self.event_id()),
            user_id: Cow::Owned(self.user_id()),
            ts_ms: self.ts_ms,
            kind: self.kind,
            amount: self.amount_cents.map(cents_f64),
            currency: self.amount_cents.map(|_| *b"CNY"),
            status: if self.failure.is_some() {
                Status::Failed
            } else {
                Status::Success
            },
            failure_reason: self.failure.map(|f| Cow::Borrowed(f.as_str())),
            counterparty: self.counterparty.map(|p| Cow::Owned(p.to_wire())),
            channel: Some(Cow::Borrowed(self.channel.as_str())),
            device_id: self.device_id().map(Cow::Owned),
            ip: self.ip.map(IpAddr::V4),
            geo: self.geo,
            balance_after: self.balance_cents.map(cents_f64),
        }
    }
}

/// Totals of one simulation written to files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimSummary {
    /// Events written.
    pub events: u64,
    /// Events labelled 1.
    pub attack_events: u64,
    /// Users.
    pub users: u32,
    /// Users per attack scenario, in [`Scenario::ATTACKS`] order.
    pub attacks: [u32; 6],
    /// Users per novelty kind, in [`Scenario::NOVELTIES`] order.
    pub novelties: [u32; 5],
    /// Wall time, seconds.
    pub seconds: f64,
}

impl std::fmt::Display for SimSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "users          {}", self.users)?;
        writeln!(f, "events         {}", self.events)?;
        writeln!(f, "attack events  {}", self.attack_events)?;
        for (s, n) in Scenario::ATTACKS.iter().zip(self.attacks) {
            writeln!(f, "  {:<20} {n} users", s.as_str())?;
        }
        writeln!(f, "benign novelties")?;
        for (s, n) in Scenario::NOVELTIES.iter().zip(self.novelties) {
            writeln!(f, "  {:<20} {n} users", s.as_str())?;
        }
        let rate = if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        };
        write!(f, "seconds        {:.2} ({rate:.0} events/s)", self.seconds)
    }
}

/// Runs a simulation, writing events as JSON lines to `events` (`.gz` compresses) and their
/// labels, row for row, to `labels` (CSV; `.gz` compresses too).
pub fn write_files(
    params: &SimParams,
    events: &Path,
    labels: &Path,
) -> Result<SimSummary, SimError> {
    let started = std::time::Instant::now();
    let mut sim = Simulator::new(params)?;
    let mut summary = SimSummary {
        users: params.users,
        attacks: sim.attack_counts(),
        novelties: sim.novelty_counts(),
        ..SimSummary::default()
    };
    let mut ev_out = create_output(events)?;
    let label_err = |e: std::io::Error| SimError::Labels {
        path: labels.display().to_string(),
        msg: e.to_string(),
    };
    let mut lab_out = LabelWriter::new(create_output(labels)?).map_err(label_err)?;
    let io_err = |e: std::io::Error| {
        SimError::Io(ReplayError::Io {
            what: "cannot write",
            path: events.display().to_string(),
            source: e,
        })
    };
    let mut line = Vec::with_capacity(512);
    let (mut eid, mut uid) = (Vec::with_capacity(24), Vec::with_capacity(16));
    while let Some(day) = sim.next_day() {
        for ev in day {
            line.clear();
            ev.write_json(&mut line);
            line.push(b'\n');
            ev_out.write_all(&line).map_err(io_err)?;
            eid.clear();
            uid.clear();
            ev.write_event_id(&mut eid);
            ev.write_user_id(&mut uid);
            lab_out
                .write_raw(&eid, &uid, ev.label(), ev.scenario.as_str().as_bytes())
                .map_err(label_err)?;
            summary.events += 1;
            summary.attack_events += ev.label() as u64;
        }
    }
    ev_out.flush().map_err(io_err)?;
    lab_out.finish().map_err(label_err)?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
