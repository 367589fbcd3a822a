//! `walletguard simulate`: a deterministic generator of realistic wallet traffic with labelled
//! attacks and labelled benign novelties, for evaluation, demos and benchmarks, in a world
//! that can be varied at random ([`WorldSpec`]).
//!
//! # Library use
//!
//! [`Simulator`] is an iterator of [`SimEvent`]s in global time order for `(users, days, seed)`
//! and a world spec; nothing is written to disk. A benchmark can feed [`SimEvent::to_event`]
//! straight to [`crate::engine::pipeline::Engine::process`], a demo can stream [`SimEvent::write_json`]
//! lines. Memory is one simulated day of events plus a few hundred bytes per user.
//!
//! ```
//! use walletguard::tools::sim::{SimParams, Simulator};
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
//! The behaviour model lives in [`model`]; attack and novelty scripts in `scenario.rs` and
//! `scripts.rs`; the card and mobile-money habits in `kinds.rs`; the shared world (cities, IP
//! ranges, ids) in [`world`]. Every user has a home city with real coordinates, one or two
//! devices, a home /24 and a mobile carrier, a balance that every flow keeps consistent (a
//! money-out larger than the balance fails with `insufficient_funds`), an activity rate, a
//! log-normal amount habit, favourite payees, daily active hours, logins before sessions,
//! salary top-ups and phone recharges.
//!
//! Benign novelties (label 0, with their kind): `travel`, `new_phone`, `big_purchase`,
//! `owner_reset`, `family_recharge`, and in worlds that enable them `own_card_withdrawal`,
//! `salary`, `rent`, `family_remittance`. Attacks (label 1, with their scenario), each
//! starting after at least 14 days of history: `account_takeover`, `sim_swap`,
//! `stolen_phone`, `card_testing`, `impossible_travel`, `slow_drain`, and in worlds that
//! enable them `mule_cashout`, `cnp_burst`, `cloned_card`. The scripts follow how such fraud
//! is described, not what any detector looks for.
//!
//! Which events carry a novelty kind: `travel`, the ticket payment and every owner event from
//! take-off until 6 h after landing back home; `new_phone` and `owner_reset`, the change and
//! the owner's events for 48 h after it; `big_purchase`, the purchase and the top-up made
//! for it; `family_recharge`, the recharges to the family number; `own_card_withdrawal`, the
//! withdrawals; `salary`, the salary and the owner's events for 24 h after it; `rent`, the
//! transfers and the top-ups before them; `family_remittance`, the transfers. Attack labels go
//! to the attacker's events only; the victim's own events around them stay ordinary.
//!
//! Rates: `attack_rate` (default 1.5%) of users get one attack, drawn uniformly from the
//! world's attacks; each novelty kind independently hits `novelty_rate` (default 5%) times
//! the world's weight of the kind.
//!
//! # Worlds
//!
//! A [`WorldSpec`] (`simulate --world`) sets:
//!
//! - **kind** ([`WorldKind`]): `wallet` (the original model), `card` (only `payment` events
//!   and refunds; `geo` is the merchant's position, local shops over a metro area about
//!   50 km across, online shops within about 110 km, a trip's shops at its destination;
//!   merchant categories set the amounts; the attacks `card_testing`, `cnp_burst`,
//!   `cloned_card`) or `mobile_money` (transfer-heavy: cash-in and cash-out at agents,
//!   transfers to a few regular counterparties, airtime, payments; heavy-tailed log-normal
//!   amounts; no logins; the channel is the owner's whoever acts);
//! - **currency** ([`Currency`]): scale 0.01 to 10,000 in a random world (log-uniform), the
//!   nearest real code, 3 decimals below ×0.1, none from ×100, amounts in tens or hundreds
//!   from ×1000; amounts stay positive and written balances add up;
//! - **fields** ([`Fields`]): `device_id`, `ip`, `geo`, `balance_after`, each on or off (card:
//!   `geo` only; mobile money: `balance_after` or nothing), removed where events are written;
//! - **habits** ([`Habits`]): median money-outs per user per day (0.15 to 8 in a random
//!   wallet world, so about 0.4 to 20 events), their dispersion across users, the amount
//!   level and spread;
//! - **novelties** ([`NoveltyRate`]): which honest behaviours happen, each with a weight
//!   (0.2 to 3 in a random world); new phones only with devices, travel only with positions;
//! - **attacks**: which scenarios are staged (a kind's own set; `impossible_travel` only
//!   with `ip` or `geo`);
//! - **style** ([`AttackStyle`]): attack speed (pauses ×0.25 to ×4), share of the balance
//!   taken (×0.5 to 1), chance of a credential change first, chance of a small test
//!   transfer first.
//!
//! [`WorldSpec::default`] is the original simulator: its output is byte for byte what it was
//! before world specs existed (a test pins a digest). [`WorldSpec::random`] draws a spec from
//! a seed. Why the original stream of draws is untouched: a parameter at its default value
//! makes exactly the draws it made before, and the draws only other worlds need come from a
//! second random stream per user (`User::xrng`) or from code the wallet kind never runs.
//!
//! # Labels file
//!
//! [`write_files`] writes the events as JSON lines per CONTRACT.md and, in the same order, one
//! CSV row per event in the format of [`crate::tools::eval::labels`]:
//! `event_id,user_id,label,scenario`; and the spec as JSON to `<labels>.world.json`
//! ([`spec_path`]).
//!
//! Determinism: PCG streams per user seeded from `(seed, user)`, no hash-map iteration in
//! output paths, no wall clock. The same parameters give the same bytes.

pub mod ids;
mod kinds;
pub mod labels;
pub mod model;
mod scenario;
mod scripts;
pub mod spec;
pub mod world;

use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::engine::event::{Event, EventType, Geo, Status};
use crate::engine::time::{days_from_civil, write_rfc3339, EpochMs};
use crate::tools::replay::{create_output, ReplayError};
use labels::LabelWriter;

pub use model::Simulator;
pub use model::MIN_HISTORY_DAYS;
pub use spec::{AttackStyle, Currency, Fields, Habits, NoveltyRate, WorldKind, WorldSpec};
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
    /// The world: kind, currency, fields, habits, honest behaviours, attacks.
    pub world: WorldSpec,
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
            world: WorldSpec::default(),
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
        self.world.validate()
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
    /// A takeover with no change of device, network or place visible: nearly the whole
    /// balance transferred to a never-seen account (whose cash-out is the mule's event, not
    /// the victim's).
    MuleCashout,
    /// Card details used online: a burst of card-not-present payments at never-seen merchants.
    CnpBurst,
    /// A cloned card used in shops of a far city while the owner pays at home.
    ClonedCard,
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
    /// The owner withdraws a large share (20-90%) of the balance to their own bank card.
    OwnCardWithdrawal,
    /// A salary paid into the wallet, and the owner's payday spending after it.
    Salary,
    /// A monthly transfer to one landlord.
    Rent,
    /// Regular transfers to a family member.
    FamilyRemittance,
}

impl Scenario {
    /// The attack scenarios. The first six are the original simulator's (the default world's).
    pub const ATTACKS: [Scenario; 9] = [
        Scenario::AccountTakeover,
        Scenario::SimSwap,
        Scenario::StolenPhone,
        Scenario::CardTesting,
        Scenario::ImpossibleTravel,
        Scenario::SlowDrain,
        Scenario::MuleCashout,
        Scenario::CnpBurst,
        Scenario::ClonedCard,
    ];

    /// The benign novelty kinds. The first five are the original simulator's.
    pub const NOVELTIES: [Scenario; 9] = [
        Scenario::Travel,
        Scenario::NewPhone,
        Scenario::BigPurchase,
        Scenario::OwnerReset,
        Scenario::FamilyRecharge,
        Scenario::OwnCardWithdrawal,
        Scenario::Salary,
        Scenario::Rent,
        Scenario::FamilyRemittance,
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
            Scenario::MuleCashout => "mule_cashout",
            Scenario::CnpBurst => "cnp_burst",
            Scenario::ClonedCard => "cloned_card",
            Scenario::Travel => "travel",
            Scenario::NewPhone => "new_phone",
            Scenario::BigPurchase => "big_purchase",
            Scenario::OwnerReset => "owner_reset",
            Scenario::FamilyRecharge => "family_recharge",
            Scenario::OwnCardWithdrawal => "own_card_withdrawal",
            Scenario::Salary => "salary",
            Scenario::Rent => "rent",
            Scenario::FamilyRemittance => "family_remittance",
        }
    }

    /// The scenario or novelty kind of a name (`None` for an unknown or empty name).
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ATTACKS
            .into_iter()
            .chain(Scenario::NOVELTIES)
            .find(|s| s.as_str() == name)
    }

    /// Whether events of this kind are attacks (label 1).
    pub fn is_attack(self) -> bool {
        Scenario::ATTACKS.contains(&self)
    }
}

impl serde::Serialize for Scenario {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Scenario {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Scenario::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("{name:?} is not a scenario or novelty kind"))
        })
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
    /// A card terminal in a shop (card worlds).
    Pos,
    /// A USSD menu on a basic phone (mobile-money worlds).
    Ussd,
}

impl Channel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::App => "app",
            Channel::Web => "web",
            Channel::Api => "api",
            Channel::Bank => "bank",
            Channel::Pos => "pos",
            Channel::Ussd => "ussd",
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
    /// How the world writes it: which optional fields, and the currency.
    pub wire: Wire,
}

/// How a world writes its events ([`SimEvent::write_json`], [`SimEvent::to_event`]): which
/// optional fields exist and how model amounts (CNY cents) become amounts in the world's
/// currency. Small and `Copy`, so every event carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wire {
    /// Optional fields written: [`Wire::DEVICE`] | [`Wire::IP`] | [`Wire::GEO`] |
    /// [`Wire::BALANCE`].
    pub fields: u8,
    /// The `currency` code.
    pub currency: [u8; 3],
    /// Minor units of the currency per model cent.
    pub factor: f64,
    /// Amounts and balances are multiples of this many minor units.
    pub step: u32,
    /// Decimals written.
    pub decimals: u8,
    /// Ids written through [`ids`]' keyed bijection under this key instead of their own
    /// spelling (`None`: as generated). Only the metamorphic check sets it.
    pub rename: Option<u64>,
    /// Minor amounts are written ×10^`shift` (0 but in the metamorphic ×1000 variant,
    /// [`Wire::x1000`]).
    pub shift: u8,
}

impl Wire {
    /// `device_id` is written.
    pub const DEVICE: u8 = 1;
    /// `ip` is written.
    pub const IP: u8 = 2;
    /// `geo` is written.
    pub const GEO: u8 = 4;
    /// `balance_after` is written.
    pub const BALANCE: u8 = 8;

    /// The original simulator's form: every field, CNY with cents.
    pub const CNY: Wire = Wire {
        fields: 15,
        currency: *b"CNY",
        factor: 1.0,
        step: 1,
        decimals: 2,
        rename: None,
        shift: 0,
    };

    /// The form of a world.
    pub fn of(spec: &WorldSpec) -> Wire {
        let f = &spec.fields;
        let c = &spec.currency;
        let mut code = *b"XXX";
        for (d, s) in code.iter_mut().zip(c.code.bytes()) {
            *d = s;
        }
        Wire {
            fields: [
                (f.device_id, Wire::DEVICE),
                (f.ip, Wire::IP),
                (f.geo, Wire::GEO),
                (f.balance_after, Wire::BALANCE),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .fold(0, |acc, (_, bit)| acc | bit),
            currency: code,
            factor: c.scale * 10f64.powi(c.decimals as i32) / 100.0,
            step: c.step.max(1),
            decimals: c.decimals,
            rename: None,
            shift: 0,
        }
    }

    /// Whether the optional field `f` is written.
    pub fn has(&self, f: u8) -> bool {
        self.fields & f != 0
    }

    fn identity(&self) -> bool {
        self.factor == 1.0 && self.step == 1
    }

    /// Model cents as minor units of the currency, rounded to the step.
    pub fn minor(&self, cents: i64) -> i64 {
        if self.identity() {
            return cents;
        }
        let step = self.step as f64;
        ((cents as f64 * self.factor / step).round() * step) as i64
    }

    /// This wire with every written amount and balance exactly ×1000, in currency `code`:
    /// the same rounded minor amounts, 3 decimals fewer (at least 0) and the rest as trailing
    /// zeros. Why not [`Wire::of`] a currency of scale ×1000: its factor and step are other
    /// floating-point numbers, which round a few amounts (ties) to another step.
    pub fn x1000(self, code: [u8; 3]) -> Wire {
        let decimals = self.decimals.saturating_sub(3);
        Wire {
            currency: code,
            decimals,
            shift: self.shift + 3 - (self.decimals - decimals),
            ..self
        }
    }

    fn push(&self, out: &mut Vec<u8>, m: i64) {
        let m = m.saturating_mul(10i64.pow(self.shift as u32));
        let _ = match self.decimals {
            0 => write!(out, "{m}"),
            d => {
                let p = 10i64.pow(d as u32);
                write!(out, "{}.{:0w$}", m / p, m % p, w = d as usize)
            }
        };
    }

    fn value(&self, m: i64) -> f64 {
        let m = m.saturating_mul(10i64.pow(self.shift as u32));
        match self.decimals {
            0 => m as f64,
            d => m as f64 / 10f64.powi(d as i32),
        }
    }
}

impl SimEvent {
    /// Label: 1 for attack events.
    pub fn label(&self) -> u8 {
        self.scenario.is_attack() as u8
    }

    /// Appends the `user_id` (renamed when the wire says so).
    pub fn write_user_id(&self, out: &mut Vec<u8>) {
        match self.wire.rename {
            None => {
                let _ = write!(out, "u-{:07}", self.user);
            }
            Some(k) => ids::write(out, k, ids::IdKind::User, self.user as u64),
        }
    }

    /// Appends the `event_id` (renamed when the wire says so).
    pub fn write_event_id(&self, out: &mut Vec<u8>) {
        match self.wire.rename {
            None => {
                let _ = write!(out, "e-{:07}-{:06}", self.user, self.seq);
            }
            Some(k) => ids::write(
                out,
                k,
                ids::IdKind::Event,
                ids::event_number(self.user, self.seq),
            ),
        }
    }

    /// Appends the `device_id` of device number `d` (renamed when the wire says so).
    fn write_device_id(&self, out: &mut Vec<u8>, d: u64) {
        match self.wire.rename {
            None => {
                let _ = write!(out, "d-{:012x}", ids::device_number(d));
            }
            Some(k) => ids::write(out, k, ids::IdKind::Device, ids::device_number(d)),
        }
    }

    /// Appends the `counterparty` `p` (renamed when the wire says so).
    fn write_party(&self, out: &mut Vec<u8>, p: &Party) {
        match self.wire.rename {
            None => p.write(out),
            Some(k) => {
                let (kind, x) = ids::party_number(p);
                ids::write(out, k, kind, x)
            }
        }
    }

    fn string(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::with_capacity(24);
        f(&mut v);
        // Ids are written in ASCII.
        String::from_utf8(v).unwrap_or_default()
    }

    /// The `user_id`.
    pub fn user_id(&self) -> String {
        SimEvent::string(|v| self.write_user_id(v))
    }

    /// The `event_id`.
    pub fn event_id(&self) -> String {
        SimEvent::string(|v| self.write_event_id(v))
    }

    /// The `device_id`, if any.
    pub fn device_id(&self) -> Option<String> {
        self.device
            .map(|d| SimEvent::string(|v| self.write_device_id(v, d)))
    }

    /// The amount and balance as written, in minor units of the world's currency.
    ///
    /// Why amounts of successful money movements are differences of converted balances: the
    /// written balances then add up exactly, event after event, at any scale and rounding.
    /// The amount stays at least one step (a tiny amount at a tiny scale may then break the
    /// sum by that step).
    pub fn money_minor(&self) -> (Option<i64>, Option<i64>) {
        let w = &self.wire;
        if w.identity() {
            return (self.amount_cents, self.balance_cents);
        }
        let step = w.step as i64;
        let amount = self.amount_cents.map(|a| {
            let m = match (self.failure, self.balance_cents) {
                (None, Some(b)) if self.kind.is_money_out() => w.minor(b + a) - w.minor(b),
                (None, Some(b)) if self.kind.is_money_in() => w.minor(b) - w.minor(b - a),
                _ => w.minor(a),
            };
            m.max(step)
        });
        (amount, self.balance_cents.map(|b| w.minor(b)))
    }

    /// Appends the event as one CONTRACT.md JSON object (no newline), with the fields and
    /// currency of its world.
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
        let (amount, balance) = self.money_minor();
        if let Some(a) = amount {
            out.extend_from_slice(b",\"amount\":");
            self.wire.push(out, a);
            out.extend_from_slice(b",\"currency\":\"");
            out.extend_from_slice(&self.wire.currency);
            out.push(b'"');
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
            self.write_party(out, &p);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"channel\":\"");
        out.extend_from_slice(self.channel.as_str().as_bytes());
        out.push(b'"');
        if let Some(d) = self.device.filter(|_| self.wire.has(Wire::DEVICE)) {
            out.extend_from_slice(b",\"device_id\":\"");
            self.write_device_id(out, d);
            out.push(b'"');
        }
        if let Some(ip) = self.ip.filter(|_| self.wire.has(Wire::IP)) {
            let _ = write!(out, ",\"ip\":\"{ip}\"");
        }
        if let Some(g) = self.geo.filter(|_| self.wire.has(Wire::GEO)) {
            let _ = write!(
                out,
                ",\"geo\":{{\"lat\":{:.4},\"lon\":{:.4}}}",
                g.lat, g.lon
            );
        }
        if let Some(b) = balance.filter(|_| self.wire.has(Wire::BALANCE)) {
            out.extend_from_slice(b",\"balance_after\":");
            self.wire.push(out, b);
        }
        out.push(b'}');
    }

    /// The event as the pipeline's validated [`Event`], without a JSON round trip: the same
    /// fields and values [`SimEvent::write_json`] writes.
    pub fn to_event(&self) -> Event<'static> {
        let w = &self.wire;
        let (amount, balance) = self.money_minor();
        Event {
            event_id: Cow::Owned(self.event_id()),
            user_id: Cow::Owned(self.user_id()),
            ts_ms: self.ts_ms,
            kind: self.kind,
            amount: amount.map(|m| w.value(m)),
            currency: amount.map(|_| w.currency),
            status: if self.failure.is_some() {
                Status::Failed
            } else {
                Status::Success
            },
            failure_reason: self.failure.map(|f| Cow::Borrowed(f.as_str())),
            counterparty: self
                .counterparty
                .map(|p| Cow::Owned(SimEvent::string(|v| self.write_party(v, &p)))),
            channel: Some(Cow::Borrowed(self.channel.as_str())),
            device_id: self
                .device_id()
                .filter(|_| w.has(Wire::DEVICE))
                .map(Cow::Owned),
            ip: self.ip.filter(|_| w.has(Wire::IP)).map(IpAddr::V4),
            geo: self.geo.filter(|_| w.has(Wire::GEO)),
            balance_after: balance.filter(|_| w.has(Wire::BALANCE)).map(|m| w.value(m)),
            ref_event_id: None,
            feedback: None,
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
    pub attacks: [u32; Scenario::ATTACKS.len()],
    /// Users per novelty kind, in [`Scenario::NOVELTIES`] order.
    pub novelties: [u32; Scenario::NOVELTIES.len()],
    /// Wall time, seconds.
    pub seconds: f64,
    /// The world simulated.
    pub world: WorldSpec,
}

impl std::fmt::Display for SimSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = &self.world;
        writeln!(f, "world          {} ({})", w.name, w.summary())?;
        writeln!(f, "users          {}", self.users)?;
        writeln!(f, "events         {}", self.events)?;
        writeln!(f, "attack events  {}", self.attack_events)?;
        // The scenarios and kinds the world has, and any other that occurred.
        for (s, n) in Scenario::ATTACKS.iter().zip(self.attacks) {
            if n > 0 || w.attacks.contains(s) {
                writeln!(f, "  {:<20} {n} users", s.as_str())?;
            }
        }
        writeln!(f, "benign novelties")?;
        for (s, n) in Scenario::NOVELTIES.iter().zip(self.novelties) {
            if n > 0 || w.novelty_weight(*s) > 0.0 {
                writeln!(f, "  {:<20} {n} users", s.as_str())?;
            }
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
        world: params.world.clone(),
        ..SimSummary::default()
    };
    write_spec(&params.world, labels)?;
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

/// Where the spec of a labels file is written: `<labels>.world.json`.
pub fn spec_path(labels: &Path) -> std::path::PathBuf {
    let mut p = labels.as_os_str().to_owned();
    p.push(".world.json");
    p.into()
}

/// Writes `spec` as JSON to [`spec_path`]`(labels)`.
pub fn write_spec(spec: &WorldSpec, labels: &Path) -> Result<(), SimError> {
    let path = spec_path(labels);
    let err = |msg: String| SimError::Labels {
        path: path.display().to_string(),
        msg,
    };
    let mut json = serde_json::to_vec_pretty(spec).map_err(|e| err(e.to_string()))?;
    json.push(b'\n');
    std::fs::write(&path, json).map_err(|e| err(e.to_string()))
}
