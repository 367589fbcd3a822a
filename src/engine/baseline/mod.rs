//! Per-user behavioural baseline: a fixed-size [`Profile`] updated online in O(1), decayed
//! with a configurable half-life, plus the population [`Prior`] that new users shrink toward.
//!
//! Two kinds of state live in a profile, and they are updated under different rules:
//! - the **long-term baseline** (amount statistics, hour histogram, rates, known devices,
//!   counterparties, IP prefixes and geo cells, last position) describes what is normal for the
//!   user. It is learned only from events scored below `step_up`, so an attacker cannot teach it.
//! - **short-term facts** (recent money-out times, failed attempts, tiny payments, credential
//!   change times, last balance, last freeze) describe what is happening now. They are recorded
//!   for every event, because an attacker's blocked attempts are exactly what they must count.

pub mod codec;
pub mod keys;
pub mod population;
pub mod prior;
pub mod rates;
pub mod store;

pub use population::{Population, PopulationParams};
pub use prior::{Prior, PriorConfig};
pub use store::{BuildIdentity, ProfileStore};

use crate::engine::event::{Event, EventType, Status};
use crate::engine::time::{EpochMs, Tick};
use serde::{Deserialize, Serialize};

use crate::engine::validate::{invalid, positive, Checked};

/// `[baseline]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Half-life of the behavioural baseline, in days.
    pub half_life_days: f64,
    /// Half-life of the short-term counters (failed attempts, tiny payments), in minutes.
    pub fast_half_life_minutes: f64,
    /// Known devices remembered per user.
    pub devices: usize,
    /// Known payees (transfers, withdrawal cards, recharge numbers) remembered per user.
    pub counterparties: usize,
    /// Known merchants remembered per user.
    pub merchants: usize,
    /// Known networks (IPv4 prefixes of `ipv4_prefix_bits`, IPv6 /48s) remembered per user.
    pub ip_prefixes: usize,
    /// Known geo cells remembered per user.
    pub geo_cells: usize,
    /// Size of a geo cell, in degrees of latitude and longitude.
    pub geo_cell_degrees: f64,
    /// Leading bits of an IPv4 address that name its network (8 to 32). 16 rather than 24:
    /// mobile carriers hand a phone addresses from pools whose third octet changes from one
    /// session to the next, so a /24 calls the owner's own carrier "a new network" all day.
    pub ipv4_prefix_bits: u8,
    /// Shrinkage constant k: a user's own estimate gets weight n/(n+k) against the prior.
    pub shrinkage_k: f64,
    /// A profile idle this many days of event time expires: it is dropped from memory and
    /// tombstoned in the changelog, and the user's next event starts a new one. 0 = never.
    pub profile_ttl_days: f64,
    /// At most this many profiles per partition (per replay): a flood of new user ids evicts
    /// the least recently active ones (counted). 0 = no cap.
    pub max_profiles_per_partition: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            half_life_days: 30.0,
            fast_half_life_minutes: 30.0,
            devices: 3,
            counterparties: 4,
            merchants: 3,
            ip_prefixes: 2,
            geo_cells: 2,
            geo_cell_degrees: 0.5,
            ipv4_prefix_bits: 16,
            shrinkage_k: 8.0,
            // Beyond the dormant-reactivation horizon (three times its 60 days), so an
            // account asleep for half a year is still recognised when it wakes.
            profile_ttl_days: 400.0,
            // About 270 MB of profiles and index per partition at the cap.
            max_profiles_per_partition: 1_000_000,
        }
    }
}

impl BaselineConfig {
    /// Checks the rules of `[baseline]`; the error names the key.
    pub fn validate(&self) -> Checked {
        positive("baseline.half_life_days", self.half_life_days)?;
        if self.half_life_days > 365.0 {
            // The day-stepped fixed-point decay loses precision beyond a year.
            return Err(invalid("baseline.half_life_days", "must be at most 365"));
        }
        positive(
            "baseline.fast_half_life_minutes",
            self.fast_half_life_minutes,
        )?;
        positive("baseline.geo_cell_degrees", self.geo_cell_degrees)?;
        if self.geo_cell_degrees > 10.0 {
            return Err(invalid("baseline.geo_cell_degrees", "must be at most 10"));
        }
        if !(8..=32).contains(&self.ipv4_prefix_bits) {
            return Err(invalid(
                "baseline.ipv4_prefix_bits",
                "must be between 8 and 32",
            ));
        }
        positive("baseline.shrinkage_k", self.shrinkage_k)?;
        if !(self.profile_ttl_days >= 0.0 && self.profile_ttl_days <= 36_500.0) {
            return Err(invalid(
                "baseline.profile_ttl_days",
                "must be between 0 (never) and 36500",
            ));
        }
        if self.max_profiles_per_partition == 1 {
            return Err(invalid(
                "baseline.max_profiles_per_partition",
                "must be 0 (no cap) or at least 2",
            ));
        }
        for (key, v) in [
            ("baseline.devices", self.devices),
            ("baseline.counterparties", self.counterparties),
            ("baseline.merchants", self.merchants),
            ("baseline.ip_prefixes", self.ip_prefixes),
            ("baseline.geo_cells", self.geo_cells),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let slots =
            self.devices + self.counterparties + self.merchants + self.ip_prefixes + self.geo_cells;
        if slots > SLOT_CAPACITY {
            return Err(invalid(
                "baseline.counterparties",
                format!(
                    "devices + counterparties + merchants + ip_prefixes + geo_cells = {slots}, \
                     over the {SLOT_CAPACITY} slots a profile holds"
                ),
            ));
        }
        Ok(())
    }
}

/// Slots for remembered hashes in one profile (devices + counterparties + merchants + IP
/// prefixes + geo cells). The config divides them between the five kinds.
pub const SLOT_CAPACITY: usize = 14;
/// Money-out times remembered exactly: the latest plus this many before it.
pub const RING_DELTAS: usize = 7;
/// [`Profile::flags`] bit: the latest money out went to a payee new at the time.
pub const FLAG_BASE_NEW_PAYEE: u8 = 1 << 7;
/// [`Profile::flags`] bit: the latest learned event from a client came from a device the
/// profile already knew, so [`Profile::last_seen`] is when the user's own device last acted.
pub const FLAG_OWN_DEVICE_LAST: u8 = 1 << 4;
/// [`Profile::flags`] bits 5–6: the tag ([`currency_tag`], 1–3; 0 = none yet) of the currency
/// the user's amount baseline is in, set by the first money out learned.
const FLAG_CURRENCY_SHIFT: u32 = 5;
const FLAG_CURRENCY_MASK: u8 = 0b11 << FLAG_CURRENCY_SHIFT;

/// A 2-bit tag (1–3) of a currency code. Why so few bits: the profile has two spare flag bits
/// and no spare bytes. A user's amounts are learned in the currency of their first money out,
/// whatever it is (a fixed "home" currency left every other currency's users without an amount
/// baseline); money out in a currency of another tag is scored without the amount habit and not
/// learned. Two different codes share a tag one time in three, and then a rare second currency
/// is learned into the habit as before tags existed.
pub fn currency_tag(code: [u8; 3]) -> u8 {
    let h = code.iter().fold(0u32, |h, b| {
        h.wrapping_mul(31)
            .wrapping_add(u32::from(b.to_ascii_uppercase()))
    });
    (h % 3) as u8 + 1
}
/// Ring entry bit: that money out went to a payee new at the time. The other 15 bits are the
/// seconds before `ring_base`, saturating at [`RING_MAX_DELTA`] (about 9 hours, far beyond the
/// longest window asked about).
const RING_NEW_PAYEE: u16 = 1 << 15;
/// Largest delta a ring entry holds.
pub const RING_MAX_DELTA: u16 = RING_NEW_PAYEE - 1;
/// Fixed-point units per event in the hour histogram (a byte per hour: 16 events in one hour
/// fill it, and the whole histogram then halves, which keeps its proportions).
pub const HOUR_UNIT: u8 = 16;
/// Days per decay step of the hour histogram. Why not daily like the novelty counters: a
/// byte cannot hold a 2% daily decay (16 × 0.977 rounds back to 16), while a week's 15% is
/// about one step per byte value; the histogram is read as proportions, which a weekly step
/// barely moves.
pub const HOUR_EPOCH_DAYS: u32 = 7;
/// Fixed-point units per event in the novelty and short-term counters.
const COUNT_UNIT: f64 = 256.0;
/// Resolution of the stored last position, in degrees (about 1.1 km).
const GEO_STEP: f64 = 0.01;
/// Days one generation of the paid-payee filter ([`Profile::payees_seen`]) covers: a payee
/// is remembered for one to two generations after it was last paid.
pub const PAYEE_GENERATION_DAYS: u32 = 60;
/// Fixed-point units of ln(1 + amount) in [`Profile::young_sum`] (65535 / 4096 ≈ 16, i.e. up
/// to about 8.8 million).
const YOUNG_SUM_UNIT: f64 = 4096.0;

/// Payees the young-payee watch follows at once.
pub const YOUNG_SLOTS: usize = 2;

/// Event ids a profile remembers, to recognise a redelivered event ([`Profile::recent_ids`]).
pub const DEDUP_SLOTS: usize = 4;

/// Which remembered set a hash belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// Device ids.
    Device = 0,
    /// Payees of transfers, withdrawal cards, recharge numbers, and the cards that top the
    /// account up (money withdrawn to those goes home).
    Counterparty = 1,
    /// Merchants paid. Kept apart from payees because people try new shops all the time:
    /// in one shared set, merchants would evict the family payee a thief must not look like.
    Merchant = 2,
    /// /24 or /48 networks.
    IpPrefix = 3,
    /// Coarse geo cells.
    GeoCell = 4,
}

impl SetKind {
    /// The set a money-out event's counterparty belongs to.
    pub fn for_counterparty(kind: EventType) -> SetKind {
        if kind == EventType::Payment {
            SetKind::Merchant
        } else {
            SetKind::Counterparty
        }
    }
}

/// Indices into [`Profile::novel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Novelty {
    /// Events from a device not in the set.
    Device = 0,
    /// Transfers, withdrawals and recharges to a counterparty not in the set.
    Counterparty = 1,
    /// Payments to a merchant not in the set.
    Merchant = 2,
    /// Events from a geo cell or IP prefix not in the sets.
    Location = 3,
}

/// Constants derived once from `[baseline]` (and a [`Context`]) for the hot path.
#[derive(Debug, Clone)]
pub struct Params {
    /// ln 2 / long half-life, per second.
    pub lambda: f64,
    /// Factor applied to day-stepped fixed-point counters per day.
    pub day_factor: f64,
    /// ln 2 / short half-life, per second.
    pub fast_lambda: f64,
    /// Local UTC offset in minutes.
    pub utc_offset_min: i32,
    /// Start and length of each set in the slot array, by [`SetKind`].
    pub sets: [(u8, u8); 5],
    /// Geo cell size in degrees.
    pub geo_cell_degrees: f64,
    /// Leading bits of an IPv4 address that name its network.
    pub ipv4_prefix_bits: u8,
    /// Shrinkage constant k.
    pub k: f64,
    /// How long after a password reset or MFA change from a new device that device and its
    /// place stay on probation (not learned), seconds: the credential-change window.
    pub probation_s: u32,
    /// The currency amounts are assumed to be in when an event names none.
    pub currency: [u8; 3],
    /// How long a first-time payee stays "young" (watched), seconds.
    pub young_payee_s: u32,
    /// History a user needs before a payee paid for the first time counts as young, seconds:
    /// at first every payee is new.
    pub young_payee_min_history_s: u32,
}

/// What the baseline's constants take from outside `[baseline]`: `[general]`'s zone and
/// currency and two detectors' windows, handed in by the engine so the baseline reads no
/// other section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    /// Local UTC offset in minutes.
    pub utc_offset_min: i32,
    /// The currency amounts are assumed to be in when an event names none.
    pub currency: [u8; 3],
    /// The credential-change window, seconds (see [`Params::probation_s`]).
    pub probation_s: u32,
    /// How long a first-time payee stays young, seconds.
    pub young_payee_s: u32,
    /// History a user needs before a new payee counts as young, seconds.
    pub young_payee_min_history_s: u32,
}

impl Params {
    /// Derives the constants from a validated `[baseline]` and what it takes from outside it.
    pub fn new(b: &BaselineConfig, ctx: Context) -> Params {
        let half_s = b.half_life_days * 86_400.0;
        let sizes = [
            b.devices,
            b.counterparties,
            b.merchants,
            b.ip_prefixes,
            b.geo_cells,
        ];
        let mut sets = [(0u8, 0u8); 5];
        let mut at = 0u8;
        for (i, n) in sizes.iter().enumerate() {
            sets[i] = (at, *n as u8);
            at += *n as u8;
        }
        Params {
            lambda: std::f64::consts::LN_2 / half_s,
            day_factor: (-std::f64::consts::LN_2 / b.half_life_days).exp(),
            fast_lambda: std::f64::consts::LN_2 / (b.fast_half_life_minutes * 60.0),
            utc_offset_min: ctx.utc_offset_min,
            sets,
            geo_cell_degrees: b.geo_cell_degrees,
            ipv4_prefix_bits: b.ipv4_prefix_bits,
            k: b.shrinkage_k,
            probation_s: ctx.probation_s,
            young_payee_s: ctx.young_payee_s,
            young_payee_min_history_s: ctx.young_payee_min_history_s,
            currency: ctx.currency,
        }
    }

    /// Decay factor of the long-term baseline over `dt` seconds.
    #[inline]
    pub fn decay(&self, dt_s: f64) -> f64 {
        (-self.lambda * dt_s.max(0.0)).exp()
    }

    /// Decay factor of the short-term counters over `dt` seconds.
    #[inline]
    pub fn fast_decay(&self, dt_s: f64) -> f64 {
        (-self.fast_lambda * dt_s.max(0.0)).exp()
    }
}

/// One user's baseline. Plain data, fixed size (232 bytes: 226 of fields, rounded up to the
/// 8-byte alignment), no heap: a million users fit in 232 MB (240 with the key the store keeps
/// beside each) and a profile serialises by copying fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Remembered hashes as 32-bit fingerprints ([`slot_fp`]), partitioned by
    /// [`Params::sets`]; each set is most-recent-first and evicts the entry seen longest ago.
    /// 0 = empty.
    pub slots: [u32; SLOT_CAPACITY],
    /// Last learned event: the reference time of every long-term decayed statistic.
    pub last_seen: Tick,
    /// First event of the user.
    pub first_seen: Tick,
    /// Reference time of the short-term counters.
    pub fast_at: Tick,
    /// Times of the last `password_reset`, `mfa_change`, `device_bind`, `payment_method_bind`.
    pub cred: [Tick; 4],
    /// Time of the last learned position.
    pub last_geo_at: Tick,
    /// Time of the last `freeze_account` command.
    pub last_freeze: Tick,
    /// Time of the most recent money-out attempt.
    pub ring_base: Tick,
    /// Previous money-out attempts, newest first: seconds before `ring_base` in the low 15 bits
    /// (saturating; 0 = none) and `RING_NEW_PAYEE` in the top bit.
    pub ring: [u16; RING_DELTAS],
    /// Decayed mean of ln(1 + amount) of successful money out.
    pub amt_mean: f32,
    /// Decayed sum of squared deviations of ln(1 + amount).
    pub amt_s: f32,
    /// Decayed weight (effective count) of successful money out.
    pub amt_n: f32,
    /// Decayed count of money-out attempts (for the rate).
    pub out_n: f32,
    /// Decayed count of learned events.
    pub all_n: f32,
    /// Last known balance; negative = unknown.
    pub balance: f32,
    /// Last learned position, in `GEO_STEP` units.
    pub last_lat: i16,
    /// Last learned position, in `GEO_STEP` units.
    pub last_lon: i16,
    /// Decayed count of novel sightings by [`Novelty`], fixed point, day-stepped decay.
    pub novel: [u16; 4],
    /// Short-term decayed failed logins and failed money-out attempts, fixed point.
    pub failed: u16,
    /// Short-term decayed tiny payments to new merchants, fixed point.
    pub tiny_new: u16,
    /// Hour-of-day histogram in local time, [`HOUR_UNIT`] per event, decayed in steps of
    /// [`HOUR_EPOCH_DAYS`]. Used as proportions; the whole histogram halves when a bin would
    /// overflow.
    pub hours: [u8; 24],
    /// Bits 0–3: credential change `i` came from a device new at the time. Bit 4
    /// ([`FLAG_OWN_DEVICE_LAST`]): the latest learned client event came from a known device.
    /// Bit 7 ([`FLAG_BASE_NEW_PAYEE`]): the money out at `ring_base` went to a new payee.
    pub flags: u8,
    /// Payees ever paid (transfer payees, withdrawal cards, recharge numbers; not merchants):
    /// a 64-bit Bloom filter per generation, `[current, previous]`, 3 bits per payee. The
    /// exact counterparty set holds only a few payees; this says whether one evicted from it
    /// was ever paid, so "first time paid" is not confused with "not paid lately". Rotated
    /// every [`PAYEE_GENERATION_DAYS`] of activity.
    pub payees_seen: [u64; 2],
    /// The young-payee watch, [`YOUNG_SLOTS`] payees paid for the first time lately: a 16-bit
    /// fingerprint of each (0 = free slot).
    pub young_fp: [u16; YOUNG_SLOTS],
    /// Per watched payee: successful money out to it so far, as ln(1 + total) in fixed point.
    pub young_sum: [u16; YOUNG_SLOTS],
    /// Per watched payee: when it was first paid.
    pub young_first: [Tick; YOUNG_SLOTS],
    /// Per watched payee: successful money out to it so far, 4 bits each (slot `i` in bits
    /// `4i..4i+4`), saturating at 15.
    pub young_n: u8,
    /// 32-bit fingerprints of the user's last [`DEDUP_SLOTS`] distinct event ids, newest
    /// first (0 = free). Why in the profile and not in a per-partition set: the changelog
    /// carries it, so after a crash a redelivered event is recognised exactly as it was before,
    /// and its memory is bounded by the profiles, whatever ids arrive.
    pub recent_ids: [u32; DEDUP_SLOTS],
    /// `HABIT_RUN`'s run evidence, eighths of a nat, decaying from `ring_base`
    /// ([`crate::engine::detect::HabitRun`]).
    pub run: u8,
    /// `HABIT_RUN`'s learned share of this user's outflows out of habit, in 255ths (0: none
    /// learned yet).
    pub odd_share: u8,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            slots: [0; SLOT_CAPACITY],
            last_seen: 0,
            first_seen: 0,
            fast_at: 0,
            cred: [0; 4],
            last_geo_at: 0,
            last_freeze: 0,
            ring_base: 0,
            ring: [0; RING_DELTAS],
            amt_mean: 0.0,
            amt_s: 0.0,
            amt_n: 0.0,
            out_n: 0.0,
            all_n: 0.0,
            balance: -1.0,
            last_lat: 0,
            last_lon: 0,
            novel: [0; 4],
            failed: 0,
            tiny_new: 0,
            hours: [0; 24],
            flags: 0,
            payees_seen: [0; 2],
            young_fp: [0; YOUNG_SLOTS],
            young_sum: [0; YOUNG_SLOTS],
            young_first: [0; YOUNG_SLOTS],
            young_n: 0,
            recent_ids: [0; DEDUP_SLOTS],
            run: 0,
            odd_share: 0,
        }
    }
}

/// Everything about one event that the detectors and the learner need, computed once.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// Event time as a tick.
    pub t: Tick,
    /// Event time in ms.
    pub ts_ms: EpochMs,
    /// Local hour of day.
    pub hour: usize,
    /// Long-term decay factor from `last_seen` to now (1 for an empty profile).
    pub decay: f64,
    /// Short-term decay factor from `fast_at` to now.
    pub fast_decay: f64,
    /// Device hash and whether the profile knows it.
    pub device: Option<(u64, bool)>,
    /// Counterparty hash and whether the profile knows it.
    pub counterparty: Option<(u64, bool)>,
    /// IP-prefix hash and whether the profile knows it.
    pub ip: Option<(u64, bool)>,
    /// Geo-cell hash and whether the profile knows it.
    pub cell: Option<(u64, bool)>,
    /// ln(amount) for money events with a positive amount.
    pub log_amount: Option<f64>,
    /// The event's amount is in another currency than the user's amount baseline (by
    /// [`currency_tag`]): amount-against-habit evidence is silent, and the amount is not learned.
    pub foreign: bool,
    /// The [`currency_tag`] of the event's currency (the default currency when it names none).
    pub currency_tag: u8,
    /// Whether the profile had any learned history before this event.
    pub has_history: bool,
    /// Whether the profile had learned a position before this event.
    pub has_geo: bool,
    /// Great-circle distance from the last learned position to the event's, km (computed
    /// once here: several detectors and the pipeline read it).
    pub km_from_last: Option<f64>,
}

impl Facts {
    /// True when the event comes from a device the profile has not seen.
    pub fn new_device(&self) -> bool {
        matches!(self.device, Some((_, false)))
    }

    /// True when the event's geo cell or IP prefix is unknown to the profile.
    pub fn new_location(&self) -> bool {
        matches!(self.cell, Some((_, false))) || matches!(self.ip, Some((_, false)))
    }

    /// True when the event comes from a place the profile does not know: its geo cell when it
    /// has a position and the profile has seen positions before, else its IP prefix. Stricter than [`Facts::new_location`], since a phone
    /// on a mobile carrier changes networks all the time within its home cell.
    pub fn new_place(&self) -> bool {
        match self.cell {
            Some((_, known)) if self.has_geo => !known,
            _ => matches!(self.ip, Some((_, false))),
        }
    }

    /// A stranger: a device the profile never saw, in a place it never saw ([`Facts::new_place`]).
    pub fn stranger(&self) -> bool {
        self.new_device() && self.new_place()
    }
}

/// The parts of a scored event the learner needs, kept for a while after an alert so that
/// feedback (a passed step-up, a false-positive verdict) can learn the event later
/// ([`Profile::learn_recalled`]). Hashes as [`Facts`] carries them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recalled {
    /// The event's type.
    pub kind: EventType,
    /// Device hash.
    pub device: Option<u64>,
    /// IP-prefix hash.
    pub ip: Option<u64>,
    /// Geo-cell hash.
    pub cell: Option<u64>,
    /// Counterparty hash (money out only).
    pub counterparty: Option<u64>,
    /// Position, degrees.
    pub geo: Option<(f32, f32)>,
    /// ln(amount).
    pub log_amount: Option<f32>,
    /// [`currency_tag`] of the amount's currency.
    pub currency_tag: u8,
    /// Local hour of day.
    pub hour: u8,
}

impl Recalled {
    /// What `ev`, with facts `f`, leaves for later learning.
    pub fn of(ev: &Event<'_>, f: &Facts) -> Recalled {
        Recalled {
            kind: ev.kind,
            device: f.device.map(|d| d.0),
            ip: f.ip.map(|d| d.0),
            cell: f.cell.map(|d| d.0),
            counterparty: f.counterparty.map(|d| d.0),
            geo: ev.geo.map(|g| (g.lat as f32, g.lon as f32)),
            log_amount: f.log_amount.map(|a| a as f32),
            currency_tag: f.currency_tag,
            hour: f.hour as u8,
        }
    }
}

/// Multiplies a fixed-point counter by `factor` < 1, rounding to nearest but always taking at
/// least one unit off a non-zero value: plain rounding would leave small values stuck forever.
#[inline]
fn decay_fixed(v: u16, factor: f64) -> u16 {
    let d = (v as f64 * factor).round() as u16;
    if d == v && v > 0 {
        v - 1
    } else {
        d
    }
}

#[inline]
fn to_fixed(v: f64, unit: f64) -> u16 {
    (v * unit).round().clamp(0.0, u16::MAX as f64) as u16
}

#[inline]
fn from_fixed(v: u16, unit: f64) -> f64 {
    v as f64 / unit
}

/// The 32-bit fingerprint a remembered set stores for hash `h` (never 0, which marks a free
/// slot). Why 32 bits and not the whole hash: it halves the largest block of the profile, and
/// a false "known" needs one of a user's 14 remembered entries to collide, about 3 in 10⁹
/// per lookup.
#[inline]
pub fn slot_fp(h: u64) -> u32 {
    ((h ^ (h >> 32)) as u32).max(1)
}

/// The three bits payee hash `h` sets in a paid-payee filter generation.
#[inline]
pub(crate) fn payee_bits(h: u64) -> u64 {
    (1u64 << (h & 63)) | (1u64 << ((h >> 6) & 63)) | (1u64 << ((h >> 12) & 63))
}

/// Money out to a person or card (transfers and withdrawals): what the young-payee watch
/// follows. Merchant payments and recharges are not watched.
#[inline]
pub fn new_payee_kind(kind: EventType) -> bool {
    matches!(kind, EventType::Transfer | EventType::Withdrawal)
}

/// The 16-bit fingerprint of payee hash `h` in the young-payee watch (never 0).
#[inline]
fn payee_fp(h: u64) -> u16 {
    ((h >> 48) as u16).max(1)
}

impl Profile {
    /// Size of a profile in memory, in bytes.
    pub const SIZE: usize = std::mem::size_of::<Profile>();

    /// True if the profile has never learned an event.
    pub fn is_empty(&self) -> bool {
        self.last_seen == 0
    }

    /// When the user last acted (event time): the newest of the short-term reference time,
    /// the last learned event and the first event. 0 for a profile that never saw an event.
    #[inline]
    pub fn last_activity(&self) -> Tick {
        self.fast_at.max(self.last_seen).max(self.first_seen)
    }

    /// Whether a password reset or MFA change happened at most `window_s` before `t` (and not
    /// after it); with `from_new_device`, only one made from a device new at the time.
    #[inline]
    pub fn reset_or_mfa_within(&self, t: Tick, window_s: u32, from_new_device: bool) -> bool {
        self.cred[..2].iter().enumerate().any(|(i, at)| {
            *at != 0
                && (!from_new_device || self.flags & (1 << i) != 0)
                && t >= *at
                && t - *at <= window_s
        })
    }

    /// Whether a `freeze_account` may be issued at `t`: none yet, or the last one at least
    /// `cooldown_s` earlier.
    #[inline]
    pub fn freeze_cooled(&self, t: Tick, cooldown_s: u32) -> bool {
        self.last_freeze == 0 || t.saturating_sub(self.last_freeze) >= cooldown_s
    }

    /// Records a `freeze_account` issued at `t` (the cool-down starts from the latest).
    #[inline]
    pub fn note_freeze(&mut self, t: Tick) {
        self.last_freeze = self.last_freeze.max(t);
    }

    /// Remembers the event-id hash `id` (from [`keys::event`]); true if it is one of the
    /// user's last [`DEDUP_SLOTS`] distinct ids, i.e. the event is a repeat.
    pub fn check_and_remember(&mut self, id: u64) -> bool {
        // Fold to 32 bits: a false repeat needs a collision among four ids of one user
        // (about 1 in 10^9 per event).
        let fp = ((id ^ (id >> 32)) as u32).max(1);
        if self.recent_ids.contains(&fp) {
            return true;
        }
        self.recent_ids.copy_within(0..DEDUP_SLOTS - 1, 1);
        self.recent_ids[0] = fp;
        false
    }

    /// The slice of slots holding set `kind` (fingerprints, see [`slot_fp`]).
    #[inline]
    pub fn set(&self, p: &Params, kind: SetKind) -> &[u32] {
        let (start, len) = p.sets[kind as usize];
        &self.slots[start as usize..(start + len) as usize]
    }

    /// Whether set `kind` holds hash `h`.
    #[inline]
    pub fn knows(&self, p: &Params, kind: SetKind, h: u64) -> bool {
        self.set(p, kind).contains(&slot_fp(h))
    }

    /// Number of entries in set `kind`.
    pub fn set_len(&self, p: &Params, kind: SetKind) -> usize {
        self.set(p, kind).iter().filter(|h| **h != 0).count()
    }

    /// Puts `h` at the front of set `kind`; if the set is full, the entry seen longest ago
    /// is evicted (age-based eviction without storing a time per entry).
    pub fn remember(&mut self, p: &Params, kind: SetKind, h: u64) {
        let h = slot_fp(h);
        let (start, len) = p.sets[kind as usize];
        let set = &mut self.slots[start as usize..(start + len) as usize];
        let pos = set.iter().position(|x| *x == h).unwrap_or(set.len() - 1);
        set[..=pos].rotate_right(1);
        set[0] = h;
    }

    /// Computes the [`Facts`] of `ev` against this profile.
    pub fn facts(&self, p: &Params, ev: &Event<'_>) -> Facts {
        let t = crate::engine::time::to_tick(ev.ts_ms);
        let decay = if self.is_empty() {
            1.0
        } else {
            p.decay(t as f64 - self.last_seen as f64)
        };
        // Most profiles have no recent failures: skip the exp() then.
        let fast_decay = if self.fast_at == 0 || (self.failed | self.tiny_new) == 0 {
            1.0
        } else {
            p.fast_decay(t as f64 - self.fast_at as f64)
        };
        let lookup = |kind, h: u64| (h, self.knows(p, kind, h));
        let tag = currency_tag(ev.currency.unwrap_or(p.currency));
        Facts {
            t,
            ts_ms: ev.ts_ms,
            hour: crate::engine::time::local_hour(ev.ts_ms, p.utc_offset_min),
            decay,
            fast_decay,
            device: ev
                .device_id
                .as_deref()
                .map(|d| lookup(SetKind::Device, keys::device(d))),
            counterparty: ev
                .counterparty
                .as_deref()
                .filter(|_| ev.kind.is_money_out())
                .map(|c| lookup(SetKind::for_counterparty(ev.kind), keys::counterparty(c))),
            ip: ev
                .ip
                .map(|ip| lookup(SetKind::IpPrefix, keys::ip_prefix(ip, p.ipv4_prefix_bits))),
            cell: ev.geo.map(|g| {
                lookup(
                    SetKind::GeoCell,
                    keys::geo_cell(g.lat, g.lon, p.geo_cell_degrees),
                )
            }),
            // ln(amount), not ln(1 + amount): only the log itself is scale-free (×1000 shifts
            // every value by ln 1000 and leaves every spread alone).
            log_amount: ev.amount.filter(|a| *a > 0.0).map(f64::ln),
            foreign: {
                let own = (self.flags & FLAG_CURRENCY_MASK) >> FLAG_CURRENCY_SHIFT;
                own != 0 && own != tag
            },
            currency_tag: tag,
            has_history: !self.is_empty(),
            has_geo: self.last_geo_at != 0,
            km_from_last: match (ev.geo, self.last_geo()) {
                (Some(g), Some((lat, lon, _))) => {
                    Some(crate::engine::event::haversine_km(lat, lon, g.lat, g.lon))
                }
                _ => None,
            },
        }
    }

    // ----- read side: the baseline as of time `f.t`, before the event -----

    /// Effective count of successful money out, decayed to the event time.
    pub fn amount_n(&self, f: &Facts) -> f64 {
        self.amt_n as f64 * f.decay
    }

    /// Per-user mean and variance of ln(amount) (unshrunk), if any history in the event's
    /// currency (see [`Facts::foreign`]).
    pub fn amount_stats(&self, f: &Facts) -> Option<(f64, f64)> {
        if self.amt_n <= 0.0 || f.foreign {
            return None;
        }
        let n = self.amt_n as f64;
        // Decay scales amt_s and amt_n alike, so their ratio (the variance) is time-invariant.
        Some((self.amt_mean as f64, (self.amt_s as f64 / n).max(0.0)))
    }

    /// Money-out attempts per second, from the decayed count and the user's tenure.
    pub fn out_rate(&self, p: &Params, f: &Facts) -> Option<(f64, f64)> {
        if self.is_empty() {
            return None;
        }
        let tenure = (f.t as f64 - self.first_seen as f64).max(3600.0);
        // For a steady rate r, the decayed count after tenure T is r(1 - e^{-λT})/λ.
        let exposure = (1.0 - (-p.lambda * tenure).exp()) / p.lambda;
        let n = self.out_n as f64 * f.decay;
        Some((n / exposure, exposure))
    }

    /// Money-out attempts within the `window_s` seconds before `t` (exact up to
    /// `RING_DELTAS + 1`, saturating beyond).
    pub fn out_count_within(&self, t: Tick, window_s: u32) -> u32 {
        self.ring_within(t, window_s).count() as u32
    }

    /// Transfers and withdrawals to a then-new payee within `window_s` seconds before `t`.
    pub fn new_payee_outs_within(&self, t: Tick, window_s: u32) -> u32 {
        self.ring_within(t, window_s).filter(|new| *new).count() as u32
    }

    /// The remembered money-out attempts within the window, newest first, as "went to a new
    /// payee" flags.
    fn ring_within(&self, t: Tick, window_s: u32) -> impl Iterator<Item = bool> + '_ {
        let age_base = t.saturating_sub(self.ring_base);
        let live = self.ring_base != 0 && age_base <= window_s;
        let base = live.then_some(self.flags & FLAG_BASE_NEW_PAYEE != 0);
        let rest = self
            .ring
            .iter()
            .take_while(move |d| {
                live && **d != 0 && age_base + (**d & RING_MAX_DELTA) as u32 <= window_s
            })
            .map(|d| *d & RING_NEW_PAYEE != 0);
        base.into_iter().chain(rest)
    }

    /// Proportion of past activity in local hour `h` (unshrunk), with the histogram's total
    /// weight; `None` without history.
    pub fn hour_share(&self, h: usize) -> Option<f64> {
        self.hour_shares(&[h]).map(|s| s[0])
    }

    /// Shares of several local hours at once (one pass over the histogram), `None` without
    /// history.
    pub fn hour_shares<const N: usize>(&self, hours: &[usize; N]) -> Option<[f64; N]> {
        let total: u32 = self.hours.iter().map(|x| *x as u32).sum();
        if total == 0 {
            return None;
        }
        Some(hours.map(|h| self.hours[h % 24] as f64 / total as f64))
    }

    /// Decayed novelty count of kind `n` at the event time.
    pub fn novel_count(&self, n: Novelty) -> f64 {
        from_fixed(self.novel[n as usize], COUNT_UNIT)
    }

    /// Recent failed logins and failed money-out attempts, decayed to the event time.
    pub fn recent_failures(&self, f: &Facts) -> f64 {
        from_fixed(self.failed, COUNT_UNIT) * f.fast_decay
    }

    /// Recent tiny payments to new merchants, decayed to the event time.
    pub fn recent_tiny_new(&self, f: &Facts) -> f64 {
        from_fixed(self.tiny_new, COUNT_UNIT) * f.fast_decay
    }

    /// Last learned position in degrees, with its time.
    pub fn last_geo(&self) -> Option<(f64, f64, Tick)> {
        (self.last_geo_at != 0).then_some((
            self.last_lat as f64 * GEO_STEP,
            self.last_lon as f64 * GEO_STEP,
            self.last_geo_at,
        ))
    }

    /// When one of the user's own (already known) devices last acted, if the latest learned
    /// event from a client came from one: the owner's latest activity. A learned event from an
    /// unknown device, or without a device, clears it.
    pub fn own_device_seen_at(&self) -> Option<Tick> {
        (self.flags & FLAG_OWN_DEVICE_LAST != 0 && self.last_seen != 0).then_some(self.last_seen)
    }

    /// Last known balance.
    pub fn last_balance(&self) -> Option<f64> {
        (self.balance >= 0.0).then_some(self.balance as f64)
    }

    /// Whether payee hash `h` was paid before: in the paid-payee filter (either generation).
    #[inline]
    pub fn payee_seen(&self, h: u64) -> bool {
        let m = payee_bits(h);
        (self.payees_seen[0] & m) == m || (self.payees_seen[1] & m) == m
    }

    /// The watched young payee `h`, if it is watched and was first paid within `window_s`
    /// before `t`: (successful money out to it so far, their total, seconds since first paid).
    pub fn young_payee(&self, h: u64, t: Tick, window_s: u32) -> Option<(u32, f64, u32)> {
        // payee_fp is never 0, so a free slot never matches.
        let fp = payee_fp(h);
        let i = (0..YOUNG_SLOTS).find(|&i| self.young_fp[i] == fp)?;
        let age = t.saturating_sub(self.young_first[i]);
        (age <= window_s).then(|| (self.young_count(i) as u32, self.young_total(i), age))
    }

    /// Successful money out so far to the payee in watch slot `i`.
    fn young_count(&self, i: usize) -> u8 {
        (self.young_n >> (4 * i)) & 0x0F
    }

    fn set_young_count(&mut self, i: usize, n: u8) {
        let shift = 4 * i;
        self.young_n = (self.young_n & !(0x0F << shift)) | (n.min(15) << shift);
    }

    /// Total so far to the payee in watch slot `i`.
    fn young_total(&self, i: usize) -> f64 {
        (self.young_sum[i] as f64 / YOUNG_SUM_UNIT).exp_m1()
    }

    // ----- write side -----

    /// Records a successful money out to a payee (not a merchant) in the young-payee watch.
    /// Further payments to a watched payee add up. A payee never paid before is watched once
    /// the user has `young_payee_min_history_s` of history, in a free slot (empty, or holding
    /// a payee no longer young) if there is one; else it takes the slot of the watched payee
    /// paid only once with the smaller total, so a one-off to another new contact does not
    /// end the watch on a larger one (which, "paid before", could never be watched again). A
    /// young payee paid more than once keeps its slot: the suspicious one stays watched.
    fn watch_payee(&mut self, p: &Params, ev: &Event<'_>, h: u64, known: bool, t: Tick) {
        let window_s = p.young_payee_s;
        let fp = payee_fp(h);
        // Only money that moved counts: a declined attempt and its retry are one payment.
        if ev.status != Status::Success {
            return;
        }
        let amount = ev.amount.unwrap_or(0.0);
        if let Some(i) = (0..YOUNG_SLOTS).find(|&i| self.young_fp[i] == fp) {
            let total = self.young_total(i) + amount;
            self.young_sum[i] = to_fixed(total.ln_1p(), YOUNG_SUM_UNIT);
            self.set_young_count(i, self.young_count(i).saturating_add(1));
            return;
        }
        let history = if self.is_empty() {
            0
        } else {
            t.saturating_sub(self.first_seen)
        };
        if known || self.payee_seen(h) || history < p.young_payee_min_history_s {
            return;
        }
        let live =
            |i: usize| self.young_fp[i] != 0 && t.saturating_sub(self.young_first[i]) <= window_s;
        let slot = (0..YOUNG_SLOTS).find(|&i| !live(i)).or_else(|| {
            (0..YOUNG_SLOTS)
                .filter(|&i| self.young_count(i) <= 1)
                .min_by_key(|&i| self.young_sum[i])
        });
        if let Some(i) = slot {
            self.young_fp[i] = fp;
            self.young_first[i] = t;
            self.set_young_count(i, 1);
            self.young_sum[i] = to_fixed(amount.ln_1p(), YOUNG_SUM_UNIT);
        }
    }

    /// Adds payee hash `h` to the current generation of the paid-payee filter, first rotating
    /// the generations if `t` is in a later one than the last learned event.
    fn remember_payee(&mut self, h: u64, t: Tick) {
        let span = PAYEE_GENERATION_DAYS * 86_400;
        if !self.is_empty() && t / span > self.last_seen / span {
            self.payees_seen[1] = self.payees_seen[0];
            self.payees_seen[0] = 0;
        }
        self.payees_seen[0] |= payee_bits(h);
    }

    /// Records the short-term facts of an event. Called for every valid event, whatever its
    /// score. `tiny_new_merchant` is whether it was a tiny payment to an unknown merchant.
    pub fn record_activity(
        &mut self,
        p: &Params,
        ev: &Event<'_>,
        f: &Facts,
        tiny_new_merchant: bool,
    ) {
        // Short-term counters decay continuously from fast_at.
        let fd = f.fast_decay;
        let mut fl = from_fixed(self.failed, COUNT_UNIT) * fd;
        let mut tn = from_fixed(self.tiny_new, COUNT_UNIT) * fd;
        if ev.kind == EventType::LoginFailed
            || (ev.kind.is_money_out() && ev.status == Status::Failed)
        {
            fl += 1.0;
        }
        if tiny_new_merchant {
            tn += 1.0;
        }
        // Residues below 1/64 of an event are dropped so counters reach exactly zero.
        let clean = |v: f64| if v < 1.0 / 64.0 { 0.0 } else { v };
        self.failed = to_fixed(clean(fl), COUNT_UNIT);
        self.tiny_new = to_fixed(clean(tn), COUNT_UNIT);
        self.fast_at = self.fast_at.max(f.t);

        if ev.kind.is_money_out() {
            let new_payee = matches!(f.counterparty, Some((_, false)))
                && matches!(ev.kind, EventType::Transfer | EventType::Withdrawal);
            self.push_out(f.t, new_payee);
            if let (Some((h, known)), true) = (f.counterparty, new_payee_kind(ev.kind)) {
                self.watch_payee(p, ev, h, known, f.t);
            }
        }
        if let Some(slot) = ev.kind.credential_slot() {
            if ev.status == Status::Success {
                self.cred[slot] = self.cred[slot].max(f.t);
                if f.new_device() {
                    self.flags |= 1 << slot;
                } else {
                    self.flags &= !(1 << slot);
                }
            }
        }
        if let Some(b) = ev.balance_after {
            self.balance = b as f32;
        } else if let (Some(a), Some(b)) = (ev.amount, self.last_balance()) {
            // Without balance_after, keep the estimate moving with the flow.
            if ev.status == Status::Success {
                if ev.kind.is_money_out() {
                    self.balance = (b - a).max(0.0) as f32;
                } else if ev.kind.is_money_in() {
                    self.balance = (b + a) as f32;
                }
            }
        }
    }

    fn push_out(&mut self, t: Tick, new_payee: bool) {
        if self.ring_base != 0 {
            // Out-of-order events are placed as if they happened at the newest time seen.
            let t2 = t.max(self.ring_base);
            let delta = (t2 - self.ring_base).clamp(1, RING_MAX_DELTA as u32) as u16;
            let shift = |d: u16| {
                let secs = ((d & RING_MAX_DELTA) as u32 + delta as u32).min(RING_MAX_DELTA as u32);
                secs as u16 | (d & RING_NEW_PAYEE)
            };
            let base_flag = if self.flags & FLAG_BASE_NEW_PAYEE != 0 {
                RING_NEW_PAYEE
            } else {
                0
            };
            // The old base becomes the newest ring entry; every entry is re-based; when the ring
            // is full the oldest falls off the end.
            let mut carry = delta | base_flag;
            for d in self.ring.iter_mut() {
                if *d == 0 {
                    *d = carry;
                    break;
                }
                let old = *d;
                *d = carry;
                carry = shift(old);
            }
        }
        self.ring_base = self.ring_base.max(t);
        if new_payee {
            self.flags |= FLAG_BASE_NEW_PAYEE;
        } else {
            self.flags &= !FLAG_BASE_NEW_PAYEE;
        }
    }

    /// Learns an event into the long-term baseline. Called only for events scored below
    /// `step_up`, and not for duplicates.
    pub fn learn(&mut self, p: &Params, ev: &Event<'_>, f: &Facts) {
        self.learn_inner(p, ev, f, false);
    }

    /// Learns an event that was not learned when it was scored (it was challenged or
    /// alerted) and that the owner later vouched for: a passed step-up or an analyst's
    /// false-positive verdict, at tick `t`. Its device, network, place and payee become known
    /// as if it had been allowed, even inside the probation after a credential change from a
    /// new device (the vouching is what the probation waits for), and that change no longer
    /// counts as coming from a stranger's device.
    pub fn learn_recalled(&mut self, p: &Params, r: &Recalled, t: Tick) {
        let lookup = |kind: SetKind, h: Option<u64>| h.map(|h| (h, self.knows(p, kind, h)));
        let log_amount = r.log_amount.map(f64::from);
        let f = Facts {
            t,
            ts_ms: crate::engine::time::tick_to_ms(t),
            hour: (r.hour as usize).min(23),
            decay: if self.is_empty() || t <= self.last_seen {
                1.0
            } else {
                p.decay(t as f64 - self.last_seen as f64)
            },
            fast_decay: 1.0,
            device: lookup(SetKind::Device, r.device),
            counterparty: lookup(SetKind::for_counterparty(r.kind), r.counterparty),
            ip: lookup(SetKind::IpPrefix, r.ip),
            cell: lookup(SetKind::GeoCell, r.cell),
            log_amount,
            foreign: {
                let own = (self.flags & FLAG_CURRENCY_MASK) >> FLAG_CURRENCY_SHIFT;
                own != 0 && own != r.currency_tag
            },
            currency_tag: r.currency_tag,
            has_history: !self.is_empty(),
            has_geo: self.last_geo_at != 0,
            km_from_last: None,
        };
        let ev = Event {
            event_id: std::borrow::Cow::Borrowed(""),
            user_id: std::borrow::Cow::Borrowed(""),
            ts_ms: f.ts_ms,
            kind: r.kind,
            amount: log_amount.map(f64::exp),
            currency: None,
            status: Status::Success,
            failure_reason: None,
            counterparty: None,
            channel: None,
            device_id: None,
            ip: None,
            geo: r.geo.map(|(lat, lon)| crate::engine::event::Geo {
                lat: lat as f64,
                lon: lon as f64,
            }),
            balance_after: None,
            ref_event_id: None,
            feedback: None,
        };
        self.learn_inner(p, &ev, &f, true);
        self.flags &= !0b1111;
    }

    fn learn_inner(&mut self, p: &Params, ev: &Event<'_>, f: &Facts, vouched: bool) {
        let d = f.decay;
        let days_crossed = if self.is_empty() {
            0
        } else {
            (f.t / 86_400).saturating_sub(self.last_seen / 86_400)
        };
        if self.is_empty() {
            self.first_seen = f.t;
        }

        // Amount statistics: exponentially weighted mean and variance (West's update with
        // weights decayed to the new event).
        // Amounts in another currency than the baseline's would distort the log-amount
        // statistics (one baseline, no exchange rates in the core), so they are scored but not
        // learned. The first money out learned fixes the baseline's currency.
        if let (true, false, Some(x)) = (ev.is_successful_money_out(), f.foreign, f.log_amount) {
            self.flags =
                (self.flags & !FLAG_CURRENCY_MASK) | (f.currency_tag << FLAG_CURRENCY_SHIFT);
            let n = self.amt_n as f64 * d;
            let s = self.amt_s as f64 * d;
            let mean = self.amt_mean as f64;
            let n2 = n + 1.0;
            let delta = x - mean;
            let mean2 = mean + delta / n2;
            let s2 = s + delta * (x - mean2);
            self.amt_mean = mean2 as f32;
            self.amt_s = s2.max(0.0) as f32;
            self.amt_n = n2 as f32;
        } else if d < 1.0 {
            self.amt_n = (self.amt_n as f64 * d) as f32;
            self.amt_s = (self.amt_s as f64 * d) as f32;
        }
        let is_out = ev.kind.is_money_out();
        self.out_n = (self.out_n as f64 * d + if is_out { 1.0 } else { 0.0 }) as f32;
        self.all_n = (self.all_n as f64 * d + 1.0) as f32;

        // Day-stepped fixed-point decay: per-event multiplication would round away small
        // factors, so the histogram and novelty counters decay once per calendar day crossed.
        if days_crossed > 0 {
            let factor = p.day_factor.powi(days_crossed.min(10_000) as i32);
            for v in self.novel.iter_mut() {
                *v = decay_fixed(*v, factor);
            }
            let weeks = (f.t / 86_400 / HOUR_EPOCH_DAYS)
                .saturating_sub(self.last_seen / 86_400 / HOUR_EPOCH_DAYS);
            if weeks > 0 {
                let factor = p
                    .day_factor
                    .powi((weeks.min(2_000) * HOUR_EPOCH_DAYS) as i32);
                for h in self.hours.iter_mut() {
                    // Never above its input, so it fits back in a byte.
                    *h = decay_fixed(*h as u16, factor) as u8;
                }
            }
        }
        if self.hours[f.hour] > u8::MAX - HOUR_UNIT {
            for h in self.hours.iter_mut() {
                *h /= 2;
            }
        }
        self.hours[f.hour] += HOUR_UNIT;

        // Only a successful, ordinary event proves the device, place or payee belongs to the
        // user's life: a failed login or a declined payment is often someone else trying, and
        // a password reset or MFA change is the first thing a thief does with a new device.
        // For the same reason, after a reset or MFA change from a new device, nothing new is
        // learned until the credential-change window has passed: the thief's next login must
        // not make their device "known".
        let on_probation = !vouched && self.reset_or_mfa_within(f.t, p.probation_s, true);
        // A sign-in or a bind proves the password, not the person: a device never seen, in a
        // place or network never seen, is how a takeover starts, so such a device and place
        // become "known" only through money moving without alarm, never through a login, a
        // bind or an unbind alone.
        let stranger = !vouched && f.stranger() && !ev.kind.is_money();
        let proven = ev.status == Status::Success
            && !on_probation
            && !stranger
            && !matches!(
                ev.kind,
                EventType::LoginFailed | EventType::PasswordReset | EventType::MfaChange
            );
        if proven {
            let mut bump = |n: Novelty| {
                let v = &mut self.novel[n as usize];
                *v = v.saturating_add(COUNT_UNIT as u16);
            };
            if f.new_device() {
                bump(Novelty::Device);
            }
            if matches!(f.counterparty, Some((_, false))) {
                bump(if ev.kind == EventType::Payment {
                    Novelty::Merchant
                } else {
                    Novelty::Counterparty
                });
            }
            if f.new_location() {
                bump(Novelty::Location);
            }
            if let Some((h, _)) = f.device {
                self.remember(p, SetKind::Device, h);
            }
            if let Some((h, _)) = f.counterparty {
                self.remember(p, SetKind::for_counterparty(ev.kind), h);
                if ev.kind != EventType::Payment {
                    self.remember_payee(h, f.t);
                }
            }
            // Whoever sent this account money (a friend paying back, the owner's bank card
            // topping it up) is no stranger when later paid.
            if matches!(ev.kind, EventType::TransferIn | EventType::TopUp) {
                if let Some(c) = ev.counterparty.as_deref() {
                    let h = keys::counterparty(c);
                    self.remember_payee(h, f.t);
                    // The card that funds the account is the owner's: money withdrawn back
                    // to it goes home, so it is a known destination.
                    if ev.kind == EventType::TopUp {
                        self.remember(p, SetKind::Counterparty, h);
                    }
                }
            }
            if let Some((h, _)) = f.ip {
                self.remember(p, SetKind::IpPrefix, h);
            }
            if let Some((h, _)) = f.cell {
                self.remember(p, SetKind::GeoCell, h);
            }
        }
        if let Some(g) = ev.geo {
            if f.t >= self.last_geo_at {
                self.last_lat = (g.lat / GEO_STEP).round() as i16;
                self.last_lon = (g.lon / GEO_STEP).round() as i16;
                self.last_geo_at = f.t;
            }
        }
        if f.t >= self.last_seen {
            if matches!(f.device, Some((_, true))) {
                self.flags |= FLAG_OWN_DEVICE_LAST;
            } else {
                self.flags &= !FLAG_OWN_DEVICE_LAST;
            }
        }
        self.last_seen = self.last_seen.max(f.t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::parse_event;

    fn params() -> Params {
        crate::engine::pipeline::EngineConfig::default().params()
    }

    fn ev(ts_ms: i64, kind: &str, amount: f64) -> String {
        format!(
            r#"{{"event_id":"e{ts_ms}","user_id":"u","ts":{ts_ms},"type":"{kind}","amount":{amount},"counterparty":"m1","device_id":"d1"}}"#
        )
    }

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn credential_windows_and_freeze_cool_down() {
        let mut p = Profile {
            cred: [1_000, 5_000, 0, 0],
            flags: 0b10, // the MFA change came from a new device
            ..Profile::default()
        };
        assert!(p.reset_or_mfa_within(1_500, 600, false), "reset 500 s ago");
        assert!(!p.reset_or_mfa_within(1_700, 600, false), "reset 700 s ago");
        assert!(
            !p.reset_or_mfa_within(1_500, 600, true),
            "the reset was from a known device"
        );
        assert!(
            p.reset_or_mfa_within(5_600, 600, true),
            "MFA change from a new device"
        );
        assert!(
            !p.reset_or_mfa_within(4_999, 600, false),
            "not before it happened"
        );
        assert!(p.freeze_cooled(10, 3_600), "never frozen");
        p.note_freeze(10_000);
        p.note_freeze(9_000); // an older one does not move the cool-down back
        assert!(!p.freeze_cooled(13_599, 3_600));
        assert!(p.freeze_cooled(13_600, 3_600));
    }

    #[test]
    fn profile_fits_in_232_bytes() {
        const { assert!(Profile::SIZE <= 256) };
        assert_eq!(Profile::SIZE, 232, "update the docs if the size changes");
    }

    #[test]
    fn the_last_four_event_ids_are_remembered() {
        let mut prof = Profile::default();
        let ids: Vec<u64> = (0..6).map(|i| keys::event(9, &format!("e{i}"))).collect();
        for id in &ids[..4] {
            assert!(!prof.check_and_remember(*id));
        }
        for id in &ids[..4] {
            assert!(
                prof.check_and_remember(*id),
                "a repeat within the last four"
            );
        }
        assert!(!prof.check_and_remember(ids[4]));
        assert!(!prof.check_and_remember(ids[0]), "the oldest was forgotten");
        assert!(prof.check_and_remember(ids[4]));
    }

    #[test]
    fn amount_stats_match_direct_weighted_computation() {
        let p = params();
        let mut prof = Profile::default();
        let xs = [
            (0i64, 120.0),
            (3_600, 80.0),
            (86_400 * 3, 300.0),
            (86_400 * 10, 95.0),
            (86_400 * 40, 150.0),
        ];
        for (dt, a) in xs {
            let s = ev(T0 + dt * 1000, "payment", a);
            let e = parse_event(s.as_bytes()).unwrap();
            let f = prof.facts(&p, &e);
            prof.learn(&p, &e, &f);
        }
        // Direct: weights 2^(-(t_last - t_i)/half_life).
        let t_last = 86_400.0 * 40.0;
        let half = 30.0 * 86_400.0;
        let (mut sw, mut swx) = (0.0, 0.0);
        for (dt, a) in xs {
            let w = 2f64.powf(-(t_last - dt as f64) / half);
            sw += w;
            swx += w * f64::ln(a);
        }
        let mean = swx / sw;
        let mut sws = 0.0;
        for (dt, a) in xs {
            let w = 2f64.powf(-(t_last - dt as f64) / half);
            sws += w * (f64::ln(a) - mean).powi(2);
        }
        assert!(
            (prof.amt_n as f64 - sw).abs() < 1e-4,
            "{} vs {sw}",
            prof.amt_n
        );
        assert!(
            (prof.amt_mean as f64 - mean).abs() < 1e-4,
            "{} vs {mean}",
            prof.amt_mean
        );
        let s = ev(T0 + 86_400 * 41_000, "payment", 1.0);
        let e = parse_event(s.as_bytes()).unwrap();
        let (_, var) = prof.amount_stats(&prof.facts(&p, &e)).unwrap();
        assert!((var - sws / sw).abs() < 1e-3, "{var} vs {}", sws / sw);
    }

    #[test]
    fn foreign_currency_is_not_learned_into_amounts() {
        let p = params();
        let mut prof = Profile::default();
        assert_ne!(currency_tag(*b"USD"), currency_tag(*b"CNY"));
        assert_eq!(currency_tag(*b"cny"), currency_tag(*b"CNY"));
        let s = r#"{"event_id":"a","user_id":"u","ts":1790000000000,"type":"payment","amount":30,"currency":"USD","counterparty":"m"}"#;
        let e = parse_event(s.as_bytes()).unwrap();
        let f = prof.facts(&p, &e);
        assert!(!f.foreign, "an empty profile has no currency yet");
        prof.learn(&p, &e, &f);
        assert_eq!(
            prof.amt_n, 1.0,
            "the first money out fixes the currency, whichever"
        );
        let cny = s.replace("USD", "cny");
        let e = parse_event(cny.as_bytes()).unwrap();
        let f = prof.facts(&p, &e);
        assert!(f.foreign);
        assert!(
            prof.amount_stats(&f).is_none(),
            "no habit in another currency"
        );
        prof.learn(&p, &e, &f);
        assert_eq!(prof.amt_n, 1.0, "another currency is not learned");
        let e = parse_event(s.as_bytes()).unwrap();
        let f = prof.facts(&p, &e);
        assert!(!f.foreign && prof.amount_stats(&f).is_some());
        prof.learn(&p, &e, &f);
        assert_eq!(prof.amt_n, 2.0);
        // An event without a currency is in the default one (CNY here): foreign to this user.
        let none = s.replace(r#","currency":"USD""#, "");
        let e = parse_event(none.as_bytes()).unwrap();
        assert!(prof.facts(&p, &e).foreign);
    }

    #[test]
    fn ring_counts_are_exact() {
        let mut prof = Profile::default();
        let base = 1_000_000u32;
        for s in [0, 30, 100, 500, 2_000, 3_000] {
            prof.push_out(base + s, s == 100 || s == 3_000);
        }
        let now = base + 3_010;
        assert_eq!(prof.out_count_within(now, 60), 1);
        assert_eq!(prof.out_count_within(now, 600), 1);
        assert_eq!(prof.out_count_within(now, 1_100), 2);
        assert_eq!(prof.out_count_within(now, 3_600), 6);
        assert_eq!(prof.out_count_within(now + 10_000, 3_600), 0);
        assert_eq!(prof.new_payee_outs_within(now, 60), 1);
        assert_eq!(prof.new_payee_outs_within(now, 3_600), 2);
        assert_eq!(prof.new_payee_outs_within(now, 1_100), 1);
        // Saturates at RING_DELTAS + 1.
        for s in 0..20 {
            prof.push_out(base + 4_000 + s, false);
        }
        assert_eq!(
            prof.out_count_within(base + 4_020, 60),
            RING_DELTAS as u32 + 1
        );
    }

    #[test]
    fn sets_evict_the_oldest_sighting() {
        let p = params();
        let mut prof = Profile::default();
        let n = p.sets[SetKind::Device as usize].1 as u64;
        for h in 1..=n {
            prof.remember(&p, SetKind::Device, h);
        }
        prof.remember(&p, SetKind::Device, 1); // seen again: now the newest
        prof.remember(&p, SetKind::Device, 99); // evicts 2, the oldest sighting
        assert!(prof.knows(&p, SetKind::Device, 1));
        assert!(prof.knows(&p, SetKind::Device, 99));
        assert!(!prof.knows(&p, SetKind::Device, 2));
        assert_eq!(prof.set_len(&p, SetKind::Device), n as usize);
        // Other sets untouched.
        assert_eq!(prof.set_len(&p, SetKind::Counterparty), 0);
    }

    #[test]
    fn hour_histogram_and_rate() {
        let p = params();
        let mut prof = Profile::default();
        for day in 0..20 {
            // 02:00 UTC = 10:00 at +08:00.
            let s = ev(T0 + day * 86_400_000 + 2 * 3_600_000, "payment", 50.0);
            let e = parse_event(s.as_bytes()).unwrap();
            let f = prof.facts(&p, &e);
            assert_eq!(f.hour, 10);
            prof.learn(&p, &e, &f);
        }
        assert!((prof.hour_share(10).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(prof.hour_share(3), Some(0.0));
        let s = ev(T0 + 20 * 86_400_000, "payment", 50.0);
        let e = parse_event(s.as_bytes()).unwrap();
        let f = prof.facts(&p, &e);
        let (rate, _) = prof.out_rate(&p, &f).unwrap();
        let per_day = rate * 86_400.0;
        assert!((0.8..1.2).contains(&per_day), "{per_day}");
    }

    #[test]
    fn the_byte_histogram_decays_by_the_week_and_halves_when_full() {
        let p = params();
        let mut prof = Profile::default();
        let day = 86_400_000;
        let at = |prof: &mut Profile, t: i64| {
            let s = ev(t, "payment", 50.0);
            let e = parse_event(s.as_bytes()).unwrap();
            let f = prof.facts(&p, &e);
            prof.learn(&p, &e, &f);
            f.hour
        };
        // Ten events at one hour, then one at another ten weeks later: the old hour has
        // decayed as the half-life says (0.5^(70/30) ≈ 0.20), within a byte's rounding.
        let old = (0..10)
            .map(|i| at(&mut prof, T0 + i * 60_000))
            .last()
            .unwrap();
        assert_eq!(prof.hours[old], 10 * HOUR_UNIT);
        let new = at(&mut prof, T0 + 70 * day + 5 * 3_600_000);
        assert_ne!(old, new);
        let want = 160.0 * 0.5f64.powf(70.0 / p_half_life_days(&p));
        let got = prof.hours[old] as f64;
        assert!((got - want).abs() <= 0.1 * want + 2.0, "{got} vs {want}");
        assert_eq!(prof.hours[new], HOUR_UNIT);
        // Within one week nothing decays: the proportions move only by what is learned.
        let before = prof.hours[old];
        at(&mut prof, T0 + 71 * day + 5 * 3_600_000);
        assert!(prof.hours[old] == before || prof.hours[new] == 2 * HOUR_UNIT);
        // Filling one hour past a byte halves the whole histogram instead of wrapping.
        let mut prof = Profile::default();
        for i in 0..40 {
            at(&mut prof, T0 + i * 60_000);
        }
        let h = at(&mut prof, T0 + 41 * 60_000);
        // 42 events: halved at the 16th and the 24th, and the hour holds half a byte or more.
        assert!(prof.hours[h] >= 128, "{}", prof.hours[h]);
        assert!((prof.hour_share(h).unwrap() - 1.0).abs() < 1e-12);
    }

    /// The configured half-life of the long-term statistics, in days.
    fn p_half_life_days(p: &Params) -> f64 {
        -std::f64::consts::LN_2 / p.day_factor.ln()
    }

    fn learn_json(p: &Params, prof: &mut Profile, s: &str) -> Facts {
        let e = parse_event(s.as_bytes()).unwrap();
        let f = prof.facts(p, &e);
        prof.record_activity(p, &e, &f, false);
        prof.learn(p, &e, &f);
        f
    }

    #[test]
    fn a_strangers_login_does_not_make_it_known() {
        let p = params();
        let mut prof = Profile::default();
        let home = r#""device_id":"d1","ip":"203.0.113.7","geo":{"lat":31.23,"lon":121.47}"#;
        for i in 0..5 {
            let s = format!(
                r#"{{"event_id":"h{i}","user_id":"u","ts":{},"type":"payment","amount":50,"counterparty":"m","status":"success",{home}}}"#,
                T0 + i * 3_600_000
            );
            learn_json(&p, &mut prof, &s);
        }
        let stranger = r#""device_id":"dx","ip":"102.89.34.9","geo":{"lat":6.45,"lon":3.39}"#;
        let s = format!(
            r#"{{"event_id":"x1","user_id":"u","ts":{},"type":"login",{stranger}}}"#,
            T0 + 86_400_000
        );
        let f = learn_json(&p, &mut prof, &s);
        assert!(f.stranger());
        assert!(!prof.knows(&p, SetKind::Device, keys::device("dx")));
        // The owner's new phone at home is not a stranger: its login teaches the device.
        let s = format!(
            r#"{{"event_id":"x2","user_id":"u","ts":{},"type":"login","device_id":"d2","ip":"203.0.113.8","geo":{{"lat":31.23,"lon":121.47}}}}"#,
            T0 + 86_400_000 + 60_000
        );
        let f = learn_json(&p, &mut prof, &s);
        assert!(f.new_device() && !f.stranger());
        assert!(prof.knows(&p, SetKind::Device, keys::device("d2")));
    }

    #[test]
    fn payee_filter_and_young_payee_watch() {
        let p = params();
        let mut prof = Profile::default();
        let pay = |i: i64, day: i64, payee: &str, amount: f64| {
            format!(
                r#"{{"event_id":"p{i}","user_id":"u","ts":{},"type":"transfer","amount":{amount},"counterparty":"{payee}","status":"success","device_id":"d1"}}"#,
                T0 + day * 86_400_000
            )
        };
        // Day 0: "friend" is paid while the account is new: known, never watched.
        learn_json(&p, &mut prof, &pay(0, 0, "friend", 100.0));
        let friend = keys::counterparty("friend");
        assert!(prof.payee_seen(friend));
        // Five other payees push "friend" out of the exact set; the filter still knows it.
        for (i, x) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            learn_json(&p, &mut prof, &pay(1 + i as i64, 1 + i as i64, x, 20.0));
        }
        assert!(!prof.knows(&p, SetKind::Counterparty, friend));
        assert!(prof.payee_seen(friend));
        // Day 10: a first-time payee starts the watch, and adds up.
        learn_json(&p, &mut prof, &pay(10, 10, "stranger", 300.0));
        learn_json(&p, &mut prof, &pay(11, 11, "stranger", 200.0));
        let h = keys::counterparty("stranger");
        let t = to_tick_days(12);
        let (n, total, age) = prof.young_payee(h, t, 14 * 86_400).unwrap();
        assert_eq!(n, 2);
        assert!((total - 500.0).abs() < 0.5, "{total}");
        assert_eq!(age, 2 * 86_400);
        assert!(prof.young_payee(h, to_tick_days(30), 14 * 86_400).is_none());
        assert!(prof.young_payee(friend, t, 14 * 86_400).is_none());
        // Paying "friend" again does not replace the watch: it was paid before.
        learn_json(&p, &mut prof, &pay(12, 12, "friend", 50.0));
        assert!(prof.young_payee(h, t, 14 * 86_400).is_some());
        // Two generations later the filter has forgotten "friend".
        let later = (2 * PAYEE_GENERATION_DAYS + 1) as i64;
        learn_json(&p, &mut prof, &pay(13, later, "z", 10.0));
        learn_json(
            &p,
            &mut prof,
            &pay(14, later + PAYEE_GENERATION_DAYS as i64, "y", 10.0),
        );
        assert!(!prof.payee_seen(friend));
        assert!(prof.payee_seen(keys::counterparty("y")));
    }

    #[test]
    fn own_device_time_follows_the_latest_learned_client_event() {
        let p = params();
        let mut prof = Profile::default();
        let ev = |i: i64, dev: &str| {
            format!(
                r#"{{"event_id":"o{i}","user_id":"u","ts":{},"type":"login","device_id":"{dev}"}}"#,
                T0 + i * 60_000
            )
        };
        learn_json(&p, &mut prof, &ev(0, "d1"));
        // The first sighting of d1 was not a known device.
        assert_eq!(prof.own_device_seen_at(), None);
        learn_json(&p, &mut prof, &ev(1, "d1"));
        assert_eq!(prof.own_device_seen_at(), Some(prof.last_seen));
        let at = prof.last_seen;
        // An event from an unknown device clears it; a server-side event too.
        learn_json(&p, &mut prof, &ev(2, "d9"));
        assert_eq!(prof.own_device_seen_at(), None);
        learn_json(&p, &mut prof, &ev(3, "d1"));
        assert!(prof.own_device_seen_at().is_some_and(|t| t > at));
        let s = format!(
            r#"{{"event_id":"b","user_id":"u","ts":{},"type":"transfer_in","amount":5,"counterparty":"x"}}"#,
            T0 + 4 * 60_000
        );
        learn_json(&p, &mut prof, &s);
        assert_eq!(prof.own_device_seen_at(), None);
    }

    #[test]
    fn the_watch_follows_two_young_payees() {
        let p = params();
        let mut prof = Profile::default();
        let pay = |i: i64, day: i64, payee: &str, amount: f64| {
            format!(
                r#"{{"event_id":"q{i}","user_id":"u","ts":{},"type":"transfer","amount":{amount},"counterparty":"{payee}","status":"success","device_id":"d1"}}"#,
                T0 + day * 86_400_000
            )
        };
        let young = |prof: &Profile, payee: &str, day: i64| {
            prof.young_payee(keys::counterparty(payee), to_tick_days(day), 14 * 86_400)
        };
        learn_json(&p, &mut prof, &pay(0, 0, "old", 50.0));
        learn_json(&p, &mut prof, &pay(1, 10, "big", 300.0));
        learn_json(&p, &mut prof, &pay(2, 11, "a", 200.0));
        // Both slots taken; a third new payee replaces the smaller one-off ("a"), not "big".
        learn_json(&p, &mut prof, &pay(3, 11, "b", 250.0));
        assert!(young(&prof, "a", 11).is_none());
        assert!(young(&prof, "b", 11).is_some());
        learn_json(&p, &mut prof, &pay(4, 12, "big", 300.0));
        let (n, total, _) = young(&prof, "big", 12).unwrap();
        assert_eq!(n, 2);
        assert!((total - 600.0).abs() < 1.0, "{total}");
        // "big" was paid twice: it keeps its slot; the newcomer takes the one-off's.
        learn_json(&p, &mut prof, &pay(5, 13, "c", 900.0));
        assert!(young(&prof, "big", 13).is_some());
        assert!(young(&prof, "b", 13).is_none());
        assert_eq!(young(&prof, "c", 13).map(|y| y.0), Some(1));
        // Counts saturate at 15 without spilling into the other slot.
        for i in 0..20 {
            learn_json(&p, &mut prof, &pay(10 + i, 13, "big", 1.0));
        }
        assert_eq!(young(&prof, "big", 13).map(|y| y.0), Some(15));
        assert_eq!(young(&prof, "c", 13).map(|y| y.0), Some(1));
    }

    fn to_tick_days(day: i64) -> Tick {
        crate::engine::time::to_tick(T0 + day * 86_400_000)
    }

    #[test]
    fn short_term_counters_decay() {
        let p = params();
        let mut prof = Profile::default();
        for i in 0..4 {
            let s = format!(
                r#"{{"event_id":"f{i}","user_id":"u","ts":{},"type":"login_failed"}}"#,
                T0 + i * 1000
            );
            let e = parse_event(s.as_bytes()).unwrap();
            let f = prof.facts(&p, &e);
            prof.record_activity(&p, &e, &f, false);
        }
        let s = format!(
            r#"{{"event_id":"x","user_id":"u","ts":{},"type":"login"}}"#,
            T0 + 5000
        );
        let e = parse_event(s.as_bytes()).unwrap();
        let f = prof.facts(&p, &e);
        assert!((prof.recent_failures(&f) - 4.0).abs() < 0.01);
        let s = format!(
            r#"{{"event_id":"y","user_id":"u","ts":{},"type":"login"}}"#,
            T0 + 30 * 60_000 + 3000
        );
        let e = parse_event(s.as_bytes()).unwrap();
        let f = prof.facts(&p, &e);
        assert!(
            (prof.recent_failures(&f) - 2.0).abs() < 0.05,
            "one half-life later"
        );
    }
}
