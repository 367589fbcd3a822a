//! The behaviour model of one wallet user, and the [`Simulator`] that runs every user day by
//! day and merges them into one time-ordered stream.
//!
//! A user's day is built in two steps. First *intents*: the owner's habitual sessions (login,
//! then one or more money movements), salary, recharges, incoming transfers, plus whatever
//! scripted scenario steps fall on that day. Then the intents are *resolved* in time order
//! against the balance: amounts that depend on the balance are fixed, a money-out above the
//! balance fails with `insufficient_funds` (and the owner may top up and retry), and every
//! money event carries `balance_after`. Attack steps therefore interleave with the owner's own
//! traffic on one consistent balance.

use std::net::Ipv4Addr;

use rand::Rng;
use rand_distr::{Distribution, Gamma, LogNormal, Normal, Poisson};
use rand_pcg::Pcg64Mcg;

use super::world::{self, City, Party, CARRIER_NETS, HOME_CITIES, NATIONAL};
use super::{Channel, Failure, Scenario, SimError, SimEvent, SimParams, TsForm, Wire};
use super::{WorldKind, WorldSpec};

/// Attacks start only after this many days of the victim's history.
pub const MIN_HISTORY_DAYS: u32 = 14;
use crate::engine::event::{EventType, Geo};
use crate::engine::time::{civil_from_days, EpochMs};

/// Users' local offset (UTC+08:00), in ms.
pub const LOCAL_OFFSET_MS: i64 = 8 * 3_600_000;
pub(crate) const DAY_MS: i64 = 86_400_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const MIN_MS: i64 = 60_000;

/// Relative activity by local hour for the population, before personal peaks are added.
/// Why a floor at night: some people pay at any hour (delivery, night shifts).
const BASE_HOURS: [f64; 24] = [
    0.35, 0.2, 0.12, 0.08, 0.08, 0.12, 0.35, 0.8, 1.2, 1.2, 1.2, 1.4, 1.8, 1.5, 1.1, 1.1, 1.2, 1.4,
    1.7, 1.9, 1.8, 1.5, 1.1, 0.7,
];

/// Facts shared by all users of a run.
pub(crate) struct World {
    pub seed: u64,
    pub day0_ms: EpochMs,
    /// Days since 1970-01-01 of the local calendar date of day 0.
    pub day0_civil: i64,
    pub days: u32,
    /// Attacks start on this day of the window or later: [`MIN_HISTORY_DAYS`]
    /// in the first window (victims need a history), 0 in the windows that continue it.
    pub history_days: u32,
    /// The world's parameters.
    pub spec: WorldSpec,
    /// How its events are written.
    pub wire: Wire,
}

impl World {
    pub fn day_start(&self, day: u32) -> EpochMs {
        self.day0_ms + day as i64 * DAY_MS
    }

    pub fn end_ms(&self) -> EpochMs {
        self.day_start(self.days)
    }

    /// The kind of service simulated.
    pub fn kind(&self) -> WorldKind {
        self.spec.kind
    }

    /// An attacker's pause of `ms`, at the world's attack speed.
    pub fn pace(&self, ms: i64) -> i64 {
        if self.spec.style.speed == 1.0 {
            ms
        } else {
            (ms as f64 * self.spec.style.speed) as i64
        }
    }

    /// A share of the balance an attacker takes, in the world's style.
    pub fn share(&self, frac: f64) -> f64 {
        (frac * self.spec.style.share).min(1.0)
    }
}

/// How the amount of an intent is fixed at resolution, when the balance is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Amt {
    /// Not a money event.
    None,
    /// A fixed amount in cents.
    Cents(i64),
    /// A share of the balance, rounded down to `round` cents (an attacker who sees the
    /// balance). If that is zero, `round` is attempted (and fails).
    Share { frac: f64, round: i64 },
    /// `cents`, or a share of the balance when `cents` is more than that share.
    UpTo { cents: i64, frac: f64, round: i64 },
    /// A top-up that makes the balance reach `target` (skipped if it already does).
    Need { target: i64 },
}

/// What happens after a money-out fails for lack of funds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum React {
    None,
    /// The owner may top up from their card and retry.
    OwnerTopUp,
    /// An attacker retries with this amount.
    Retry(Amt),
}

/// Device, channel, network and position of an event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SimContext {
    pub device: Option<u64>,
    pub channel: Channel,
    pub ip: Option<Ipv4Addr>,
    pub geo: Option<Geo>,
}

impl SimContext {
    /// Server-side events (salary, refunds, incoming transfers): no client.
    pub const BANK: SimContext = SimContext {
        device: None,
        channel: Channel::Bank,
        ip: None,
        geo: None,
    };
}

/// A step to resolve.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Intent {
    pub ts: EpochMs,
    /// Tie-breaker for equal times: creation order.
    pub ord: u32,
    pub kind: EventType,
    pub amt: Amt,
    pub party: Option<Party>,
    pub ctx: SimContext,
    pub scenario: Scenario,
    /// A failure decided in advance (a declined card).
    pub fail: Option<Failure>,
    pub react: React,
}

/// Where the owner is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Place {
    Home,
    Away,
    InAir,
}

/// A trip: where and when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trip {
    pub depart: EpochMs,
    pub arrive: EpochMs,
    pub ret_depart: EpochMs,
    pub ret_arrive: EpochMs,
    pub dest: &'static City,
    /// Merchant pool key of the destination.
    pub city_key: u64,
    pub abroad: bool,
    pub hotel_net: [u8; 3],
}

/// Salary schedule.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Salary {
    /// On this day of the month.
    Monthly(u32),
    /// Every 14 days, on days where `(day + phase) % 14 == 0`.
    Biweekly(u32),
}

/// One user's traits and state.
pub(crate) struct User {
    pub idx: u32,
    pub rng: Pcg64Mcg,
    pub(crate) seq: u32,
    pub(crate) ord: u32,
    pub city: usize,
    pub home: (f64, f64),
    pub home_net: [u8; 3],
    pub carrier: [u8; 2],
    pub(crate) wifi_share: f64,
    pub(crate) shares_geo: bool,
    /// Own devices: phone, and maybe a second one (laptop browser or tablet app).
    pub phone: u64,
    pub(crate) second: Option<(u64, Channel)>,
    pub(crate) second_share: f64,
    /// A new phone from this time on (and whether the old one stays in use).
    pub phone_change: Option<(EpochMs, u64, bool)>,
    pub balance: i64,
    pub(crate) rate_out: f64,
    pub mu: f64,
    pub(crate) sigma: f64,
    pub(crate) p_transfer: f64,
    pub(crate) p_new_merchant: f64,
    pub(crate) p_new_person: f64,
    pub(crate) p_login: f64,
    pub(crate) p_react: f64,
    pub(crate) fav_merchants: Vec<Party>,
    pub(crate) fav_persons: Vec<Party>,
    pub own_card: Party,
    pub(crate) own_phone: Party,
    /// Cumulative activity share by local hour (f32: per-user state is kept small for
    /// million-user runs).
    pub(crate) hour_cdf: [f32; 24],
    pub odd_hours: [u8; 6],
    pub(crate) salary: Option<(Salary, i64)>,
    pub(crate) recharge: (u32, u32, i64),
    pub monthly_spend: i64,
    pub(crate) new_ids: u64,
    pub trip: Option<Box<Trip>>,
    /// Owner's habitual traffic is suppressed in these windows (the phone is gone).
    pub quiet: Vec<(EpochMs, EpochMs)>,
    /// Owner events in these windows carry this benign label kind.
    pub windows: Vec<(EpochMs, EpochMs, Scenario)>,
    /// Scripted intents, latest first (pop gives the earliest).
    pub(crate) pending: Vec<Intent>,
    pub attack: Option<Scenario>,
    pub novelties: Vec<Scenario>,
    /// Draws of the world-spec extensions (card and mobile-money habits, new behaviours,
    /// attack styles), kept apart so the original world's stream of draws is untouched.
    pub xrng: Pcg64Mcg,
    /// Card worlds: share of payments made online.
    pub(crate) p_online: f32,
    /// Mobile-money worlds: the channel the owner uses (`ussd` or `app`).
    pub(crate) mm_channel: Channel,
}

pub(crate) fn lognormal<R: Rng>(rng: &mut R, mu: f64, sigma: f64) -> f64 {
    // Parameters are finite constants or derived from finite draws: construction cannot fail.
    LogNormal::new(mu, sigma.max(1e-6))
        .map(|d| d.sample(rng))
        .unwrap_or(mu.exp())
}

pub(crate) fn poisson<R: Rng>(rng: &mut R, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    Poisson::new(lambda)
        .map(|d| d.sample(rng) as u32)
        .unwrap_or(0)
}

pub(crate) fn normal<R: Rng>(rng: &mut R, mean: f64, sd: f64) -> f64 {
    Normal::new(mean, sd).map(|d| d.sample(rng)).unwrap_or(mean)
}

/// Rounds an amount in yuan to cents the way prices look: whole yuan, tenths, or cents.
pub(crate) fn price_cents<R: Rng>(rng: &mut R, yuan: f64) -> i64 {
    let c = (yuan * 100.0).max(1.0);
    let step = match rng.gen_range(0..10) {
        0..=3 => 100,
        4..=6 => 10,
        _ => 1,
    };
    ((c / step as f64).round() as i64 * step).max(1)
}

/// People transfer round sums.
pub(crate) fn round_cents<R: Rng>(rng: &mut R, yuan: f64) -> i64 {
    let step = if yuan >= 500.0 && rng.gen_bool(0.6) {
        10_000
    } else if yuan >= 20.0 && rng.gen_bool(0.7) {
        1_000
    } else {
        100
    };
    ((yuan * 100.0 / step as f64).round() as i64 * step).max(100)
}

impl User {
    pub fn new(w: &World, idx: u32) -> User {
        let mut rng = Pcg64Mcg::new(
            (world::digest(w.seed, b"user", &[idx as u64]) as u128) << 64
                | world::digest(w.seed, b"user2", &[idx as u64]) as u128
                | 1,
        );
        let city = world::pick_weighted(&mut rng, HOME_CITIES.iter().map(|c| c.weight));
        let hc = &HOME_CITIES[city];
        // Residences spread over the metro area (sd ≈ 5 km).
        let home = (
            hc.lat + normal(&mut rng, 0.0, 0.045),
            hc.lon + normal(&mut rng, 0.0, 0.05),
        );
        let home_net = [
            hc.net[0],
            hc.net[1].wrapping_add(rng.gen_range(0..4)),
            rng.gen(),
        ];
        let carrier = CARRIER_NETS[rng.gen_range(0..CARRIER_NETS.len())];
        let phone = world::digest(w.seed, b"device", &[idx as u64, 0]);
        let second = if rng.gen_bool(0.35) {
            let ch = if rng.gen_bool(0.6) {
                Channel::Web
            } else {
                Channel::App
            };
            Some((world::digest(w.seed, b"device", &[idx as u64, 1]), ch))
        } else {
            None
        };
        let h = &w.spec.habits;
        let rate_out = lognormal(&mut rng, h.activity.ln(), h.activity_dispersion)
            .clamp(0.08 * h.activity, 12.0 * h.activity);
        let mu = normal(&mut rng, h.amount_mu, h.amount_mu_sd);
        let sigma = rng.gen_range(h.amount_sigma[0]..h.amount_sigma[1]);
        let n_merch = rng.gen_range(3..13);
        let fav_merchants = (0..n_merch)
            .map(|_| {
                if rng.gen_bool(0.25) {
                    world::merchant(w.seed, NATIONAL, world::zipf_rank(&mut rng, 300))
                } else {
                    world::merchant(w.seed, city as u64, world::zipf_rank(&mut rng, 3000))
                }
            })
            .collect();
        let n_pers = rng.gen_range(1..6);
        let fav_persons = (0..n_pers)
            .map(|k| Party::Person(world::digest(w.seed, b"friend", &[idx as u64, k])))
            .collect();

        let mut hw = [0.0f64; 24];
        let shift = if rng.gen_bool(0.12) {
            rng.gen_range(1.5..4.0)
        } else {
            0.0
        };
        let peaks = [
            (normal(&mut rng, 8.0, 1.0), rng.gen_range(0.2..1.0)),
            (normal(&mut rng, 12.5, 0.7), rng.gen_range(0.3..1.2)),
            (normal(&mut rng, 19.5, 1.5), rng.gen_range(0.4..1.4)),
        ];
        let widths = [
            rng.gen_range(0.8..2.5),
            rng.gen_range(0.8..2.0),
            rng.gen_range(1.0..3.0),
        ];
        for (h, x) in hw.iter_mut().enumerate() {
            let mut v = 0.3 * BASE_HOURS[h];
            for ((c, a), s) in peaks.iter().zip(widths) {
                let mut d = (h as f64 + 0.5 - (c + shift)).abs() % 24.0;
                d = d.min(24.0 - d);
                v += a * (-(d * d) / (2.0 * s * s)).exp();
            }
            *x = v;
        }
        let mut order: Vec<usize> = (0..24).collect();
        order.sort_by(|a, b| hw[*a].total_cmp(&hw[*b]).then(a.cmp(b)));
        let mut odd_hours = [0u8; 6];
        for (o, h) in odd_hours.iter_mut().zip(&order) {
            *o = *h as u8;
        }
        let total: f64 = hw.iter().sum();
        let mut hour_cdf = [0.0f32; 24];
        let mut acc = 0.0;
        for h in 0..24 {
            acc += hw[h] / total;
            hour_cdf[h] = acc as f32;
        }

        let mean_pay = (mu + sigma * sigma / 2.0).exp();
        let monthly_spend = (rate_out * 30.0 * mean_pay * 1.3 * 100.0) as i64;
        let salary = if rng.gen_bool(0.7) {
            let sched = if rng.gen_bool(0.75) {
                Salary::Monthly(rng.gen_range(1..29))
            } else {
                Salary::Biweekly(rng.gen_range(0..14))
            };
            let per_month = monthly_spend as f64 * rng.gen_range(0.9..1.6);
            let amount = match sched {
                Salary::Monthly(_) => per_month,
                Salary::Biweekly(_) => per_month / 2.0,
            };
            Some((sched, ((amount / 10_000.0).round() as i64).max(1) * 10_000))
        } else {
            None
        };
        let recharge_amt = [3_000, 5_000, 5_000, 10_000, 10_000, 20_000][rng.gen_range(0..6)];
        let recharge_every = rng.gen_range(20..45);
        let recharge = (
            recharge_every,
            rng.gen_range(0..recharge_every),
            recharge_amt,
        );
        let balance = (monthly_spend as f64 * rng.gen_range(0.05..1.5)) as i64;
        let xrng = Pcg64Mcg::new(
            (world::digest(w.seed, b"user-x", &[idx as u64]) as u128) << 64
                | world::digest(w.seed, b"user-x2", &[idx as u64]) as u128
                | 1,
        );
        let mut u = User {
            idx,
            seq: 0,
            ord: 0,
            city,
            home,
            home_net,
            carrier,
            wifi_share: rng.gen_range(0.45..0.9),
            shares_geo: rng.gen_bool(0.85),
            phone,
            second,
            second_share: rng.gen_range(0.05..0.35),
            phone_change: None,
            balance,
            rate_out,
            mu,
            sigma,
            p_transfer: rng.gen_range(0.04..0.3),
            p_new_merchant: rng.gen_range(0.05..0.3),
            p_new_person: rng.gen_range(0.05..0.25),
            p_login: rng.gen_range(0.3..0.9),
            p_react: rng.gen_range(0.4..0.9),
            fav_merchants,
            fav_persons,
            own_card: Party::Card(world::digest(w.seed, b"own-card", &[idx as u64, 0])),
            own_phone: Party::Phone(world::phone_number(w.seed, b"own-phone", &[idx as u64])),
            hour_cdf,
            odd_hours,
            salary,
            recharge,
            monthly_spend,
            new_ids: 0,
            trip: None,
            quiet: Vec::new(),
            windows: Vec::new(),
            pending: Vec::new(),
            attack: None,
            novelties: Vec::new(),
            rng,
            xrng,
            p_online: 0.0,
            mm_channel: Channel::App,
        };
        u.kind_traits(w);
        u
    }

    /// Traits of card and mobile-money users, drawn from [`User::xrng`].
    fn kind_traits(&mut self, w: &World) {
        match w.kind() {
            WorldKind::Wallet => {}
            WorldKind::Card => {
                self.p_online = self.xrng.gen_range(0.05..0.45);
                // The "balance" of a card is its available credit, restored on statement day
                // (see `card_day`); nothing else pays into it.
                self.balance = self.credit_limit();
                self.salary = None;
            }
            WorldKind::MobileMoney => {
                self.mm_channel = if self.xrng.gen_bool(0.6) {
                    Channel::Ussd
                } else {
                    Channel::App
                };
                self.p_transfer = self.xrng.gen_range(0.35..0.7);
                self.p_new_person = self.xrng.gen_range(0.01..0.08);
                self.p_new_merchant = self.xrng.gen_range(0.02..0.15);
            }
        }
    }

    /// Where the owner's money comes from when topping up: their bank card, or in mobile
    /// money the agent near home where they pay cash in.
    pub fn funding_party(&mut self, w: &World) -> Party {
        match w.kind() {
            WorldKind::MobileMoney => self.agent(w),
            _ => self.own_card,
        }
    }

    /// A mobile-money agent near home: most users use one or two.
    pub fn agent(&mut self, w: &World) -> Party {
        let rank = world::zipf_rank(&mut self.xrng, 4) + (self.idx as u64 % 50) * 4;
        world::merchant(w.seed, 2000 + self.city as u64, rank)
    }

    /// A time on day `d0` drawn from the user's active hours.
    pub fn habitual_time(&mut self, d0: EpochMs) -> EpochMs {
        let u: f32 = self.rng.gen();
        let h = self.hour_cdf.iter().position(|c| u <= *c).unwrap_or(23);
        d0 + h as i64 * HOUR_MS + self.rng.gen_range(0..HOUR_MS)
    }

    /// A time on day `d0` in one of the user's six least active hours.
    pub fn odd_time(&mut self, d0: EpochMs) -> EpochMs {
        let h = self.odd_hours[self.rng.gen_range(0..6)];
        d0 + h as i64 * HOUR_MS + self.rng.gen_range(0..HOUR_MS)
    }

    /// A fresh id for something this user meets for the first time.
    pub fn fresh(&mut self) -> u64 {
        self.new_ids += 1;
        world::digest(self.rng.gen(), b"fresh", &[self.idx as u64, self.new_ids])
    }

    pub fn place(&self, t: EpochMs) -> Place {
        match self.trip.as_deref() {
            Some(tr) if t >= tr.depart && t < tr.arrive => Place::InAir,
            Some(tr) if t >= tr.arrive && t < tr.ret_depart => Place::Away,
            Some(tr) if t >= tr.ret_depart && t < tr.ret_arrive => Place::InAir,
            _ => Place::Home,
        }
    }

    /// The phone in use at `t`, and the old one if it is still used.
    pub fn phone_at(&self, t: EpochMs) -> (u64, Option<u64>) {
        match self.phone_change {
            Some((at, new, keep)) if t >= at => (new, keep.then_some(self.phone)),
            _ => (self.phone, None),
        }
    }

    pub fn home_geo(&mut self, spread: f64) -> Geo {
        Geo {
            lat: (self.home.0 + normal(&mut self.rng, 0.0, spread)).clamp(-90.0, 90.0),
            lon: (self.home.1 + normal(&mut self.rng, 0.0, spread)).clamp(-180.0, 180.0),
        }
    }

    pub fn carrier_ip(&mut self) -> Ipv4Addr {
        world::host_in16(&mut self.rng, self.carrier)
    }

    /// The owner's context at `t`: which device, network and position.
    pub fn owner_ctx(&mut self, t: EpochMs) -> SimContext {
        let (phone, old) = self.phone_at(t);
        let (mut device, mut channel) = (phone, Channel::App);
        if let Some(old) = old {
            if self.rng.gen_bool(0.2) {
                device = old;
            }
        }
        if let Some((d, ch)) = self.second {
            if self.rng.gen_bool(self.second_share) {
                device = d;
                channel = ch;
            }
        }
        let place = self.place(t);
        let (ip, geo) = match (place, self.trip.as_deref().copied()) {
            (Place::Away, Some(tr)) => {
                let ip = if self.rng.gen_bool(0.5) {
                    world::host_in24(&mut self.rng, tr.hotel_net)
                } else if tr.abroad && self.rng.gen_bool(0.5) {
                    world::host_in16(&mut self.rng, tr.dest.net)
                } else {
                    // Roaming data is routed through the home carrier.
                    self.carrier_ip()
                };
                let geo = Geo {
                    lat: (tr.dest.lat + normal(&mut self.rng, 0.0, 0.04)).clamp(-90.0, 90.0),
                    lon: (tr.dest.lon + normal(&mut self.rng, 0.0, 0.04)).clamp(-180.0, 180.0),
                };
                (ip, geo)
            }
            _ => {
                let ip = if channel == Channel::Web || self.rng.gen_bool(self.wifi_share) {
                    world::host_in24(&mut self.rng, self.home_net)
                } else {
                    self.carrier_ip()
                };
                let spread = if self.rng.gen_bool(0.15) { 0.08 } else { 0.02 };
                (ip, self.home_geo(spread))
            }
        };
        SimContext {
            device: Some(device),
            channel,
            ip: Some(ip),
            geo: (channel == Channel::App && self.shares_geo).then_some(geo),
        }
    }

    pub(crate) fn next_ord(&mut self) -> u32 {
        self.ord += 1;
        self.ord
    }

    /// A new intent with the next tie-breaker.
    #[allow(clippy::too_many_arguments)]
    pub fn intent(
        &mut self,
        ts: EpochMs,
        kind: EventType,
        amt: Amt,
        party: Option<Party>,
        ctx: SimContext,
        scenario: Scenario,
        react: React,
    ) -> Intent {
        Intent {
            ts,
            ord: self.next_ord(),
            kind,
            amt,
            party,
            ctx,
            scenario,
            fail: None,
            react,
        }
    }

    /// Queues a scripted intent (any future time).
    pub fn schedule(&mut self, it: Intent) {
        // Latest first; among equal times, the later-created first, so pop keeps creation order.
        let pos = self
            .pending
            .partition_point(|p| (p.ts, p.ord) > (it.ts, it.ord));
        self.pending.insert(pos, it);
    }

    /// The benign label of an owner event at `t`.
    pub fn window_label(&self, t: EpochMs) -> Scenario {
        self.windows
            .iter()
            .find(|(a, b, _)| t >= *a && t < *b)
            .map(|w| w.2)
            .unwrap_or(Scenario::None)
    }

    /// How active the user is on `day`, as a multiple of their usual rate: a little more at
    /// weekends, and over-dispersed day to day (some days nothing, some days a lot). Draws
    /// one value from the user's stream.
    pub(crate) fn day_activity(&mut self, w: &World, day: u32) -> f64 {
        let weekday = (w.day0_civil + day as i64 + 4).rem_euclid(7); // 0 = Sunday
        let weekend = if weekday == 0 || weekday == 6 {
            1.15
        } else {
            1.0
        };
        let mood = Gamma::new(2.0, 0.5)
            .map(|g| g.sample(&mut self.rng))
            .unwrap_or(1.0);
        weekend * mood
    }
    pub(crate) fn is_quiet(&self, t: EpochMs) -> bool {
        self.quiet.iter().any(|(a, b)| t >= *a && t < *b) || self.place(t) == Place::InAir
    }

    /// An owner session: maybe a login (sometimes after a typo), then the given intents.
    fn owner_login(&mut self, t: EpochMs, ctx: SimContext, d0: EpochMs, out: &mut Vec<Intent>) {
        let scenario = self.window_label(t);
        // Just after midnight the session's login falls between midnight and the action.
        let lt = (t - self.rng.gen_range(5_000..90_000)).max(d0 + (t - d0) / 2);
        if self.rng.gen_bool(0.03) {
            let ft = (lt - self.rng.gen_range(10_000..40_000)).max(d0 + (lt - d0) / 2);
            let it = self.intent(
                ft,
                EventType::LoginFailed,
                Amt::None,
                None,
                ctx,
                scenario,
                React::None,
            );
            out.push(it);
        }
        let it = self.intent(
            lt,
            EventType::Login,
            Amt::None,
            None,
            ctx,
            scenario,
            React::None,
        );
        out.push(it);
    }

    /// One habitual money-out by the owner at `t`.
    fn owner_money_out(&mut self, w: &World, t: EpochMs, ctx: SimContext) -> Intent {
        let away = self.place(t) == Place::Away;
        let scenario = self.window_label(t);
        let u: f64 = self.rng.gen();
        let p_transfer = if away {
            self.p_transfer * 0.3
        } else {
            self.p_transfer
        };
        if u < p_transfer {
            let party = if self.rng.gen_bool(self.p_new_person) {
                Party::Person(self.fresh())
            } else {
                let k = world::zipf_rank(&mut self.rng, self.fav_persons.len() as u64) as usize;
                self.fav_persons[k]
            };
            let y = lognormal(&mut self.rng, self.mu + 0.8, self.sigma);
            let amt = Amt::Cents(round_cents(&mut self.rng, y));
            let kind = EventType::Transfer;
            return self.intent(t, kind, amt, Some(party), ctx, scenario, React::OwnerTopUp);
        }
        if u < p_transfer + 0.012 && !away {
            // Cashing out, people look at the balance first and take at most what is there.
            let y = lognormal(&mut self.rng, self.mu + 1.8, self.sigma * 0.7);
            let amt = Amt::UpTo {
                cents: round_cents(&mut self.rng, y),
                frac: 1.0,
                round: 100,
            };
            let card = Some(self.own_card);
            return self.intent(
                t,
                EventType::Withdrawal,
                amt,
                card,
                ctx,
                scenario,
                React::None,
            );
        }
        let party = match (away, self.trip.as_deref().copied()) {
            (true, Some(tr)) => {
                world::merchant(w.seed, tr.city_key, world::zipf_rank(&mut self.rng, 3000))
            }
            _ if self.rng.gen_bool(self.p_new_merchant) => {
                if self.rng.gen_bool(0.3) {
                    world::merchant(w.seed, NATIONAL, world::zipf_rank(&mut self.rng, 5000))
                } else {
                    let rank = world::zipf_rank(&mut self.rng, 3000);
                    world::merchant(w.seed, self.city as u64, rank)
                }
            }
            _ => {
                let k = world::zipf_rank(&mut self.rng, self.fav_merchants.len() as u64) as usize;
                self.fav_merchants[k]
            }
        };
        let y = lognormal(&mut self.rng, self.mu, self.sigma);
        let amt = Amt::Cents(price_cents(&mut self.rng, y));
        self.intent(
            t,
            EventType::Payment,
            amt,
            Some(party),
            ctx,
            scenario,
            React::OwnerTopUp,
        )
    }

    /// The owner's habitual traffic for one day.
    fn habitual_day(&mut self, w: &World, day: u32, d0: EpochMs, out: &mut Vec<Intent>) {
        if w.kind() == WorldKind::Card {
            return self.card_day(w, day, d0, out);
        }
        let act = self.day_activity(w, day);
        let n_out = poisson(&mut self.rng, self.rate_out * act);
        let mut prev: Option<(EpochMs, SimContext)> = None;
        for _ in 0..n_out {
            let (t, ctx, new_session) = match prev {
                Some((p, ctx)) if self.rng.gen_bool(0.25) => {
                    (p + self.rng.gen_range(20_000..400_000), ctx, false)
                }
                _ => {
                    let t = self.habitual_time(d0);
                    (t, self.owner_ctx(t), true)
                }
            };
            if self.is_quiet(t) {
                continue;
            }
            if new_session && self.rng.gen_bool(self.p_login) {
                self.owner_login(t, ctx, d0, out);
            }
            let it = match w.kind() {
                WorldKind::MobileMoney => self.mm_money_out(w, t, ctx),
                _ => self.owner_money_out(w, t, ctx),
            };
            out.push(it);
            prev = Some((t, ctx));
        }
        // Sessions without money movement (checking the balance, a bill, a chat).
        for _ in 0..poisson(&mut self.rng, 0.5 * act * self.p_login) {
            let t = self.habitual_time(d0);
            if !self.is_quiet(t) {
                let ctx = self.owner_ctx(t);
                self.owner_login(t + 60_000, ctx, d0, out);
            }
        }
        // Salary: the owner moves pay from the bank into the wallet the morning it lands.
        let (_, _, mday) = civil_from_days(w.day0_civil + day as i64);
        if let Some((sched, amount)) = self.salary {
            let due = match sched {
                Salary::Monthly(d) => mday == d,
                Salary::Biweekly(ph) => (day + ph) % 14 == 0,
            };
            if due {
                let t = d0 + self.rng.gen_range(8 * HOUR_MS..12 * HOUR_MS);
                let card = self.own_card;
                let sc = self.window_label(t);
                let it = self.intent(
                    t,
                    EventType::TopUp,
                    Amt::Cents(amount),
                    Some(card),
                    SimContext::BANK,
                    sc,
                    React::None,
                );
                out.push(it);
            }
        }
        let (every, phase, amount) = self.recharge;
        if (day + phase) % every == 0 {
            let t = self.habitual_time(d0);
            if !self.is_quiet(t) {
                let ctx = self.owner_ctx(t);
                let own = self.own_phone;
                let sc = self.window_label(t);
                let it = self.intent(
                    t,
                    EventType::MobileRecharge,
                    Amt::Cents(amount),
                    Some(own),
                    ctx,
                    sc,
                    React::OwnerTopUp,
                );
                out.push(it);
            }
        }
        // Friends paying back, red packets (in mobile money, far more often: it is how most
        // money arrives).
        let incoming = match w.kind() {
            WorldKind::MobileMoney => 0.35,
            _ => 0.06,
        };
        for _ in 0..poisson(&mut self.rng, incoming) {
            let t = self.habitual_time(d0);
            let k = self.rng.gen_range(0..self.fav_persons.len());
            let party = self.fav_persons[k];
            let y = lognormal(&mut self.rng, self.mu + 0.5, self.sigma);
            let c = round_cents(&mut self.rng, y);
            let sc = self.window_label(t);
            let it = self.intent(
                t,
                EventType::TransferIn,
                Amt::Cents(c),
                Some(party),
                SimContext::BANK,
                sc,
                React::None,
            );
            out.push(it);
        }
        // Once in a long while, a new bank card of the owner's.
        if self.rng.gen_bool(1.0 / 400.0) {
            let t = self.habitual_time(d0);
            if !self.is_quiet(t) {
                let ctx = self.owner_ctx(t);
                let old = self.own_card;
                let card = Party::Card(self.fresh());
                self.own_card = card;
                let sc = self.window_label(t);
                let kind = EventType::PaymentMethodBind;
                let it = self.intent(t, kind, Amt::None, Some(card), ctx, sc, React::None);
                out.push(it);
                // Half remove the old card in the same session.
                if self.rng.gen_bool(0.5) {
                    let t2 = t + self.rng.gen_range(30_000..600_000);
                    let kind = EventType::PaymentMethodUnbind;
                    let it = self.intent(t2, kind, Amt::None, Some(old), ctx, sc, React::None);
                    out.push(it);
                }
            }
        }
    }

    /// Fixes an amount against the balance. `None` skips the event.
    fn resolve_amount(&self, amt: Amt) -> Option<i64> {
        let b = self.balance.max(0);
        match amt {
            Amt::None => Some(0),
            Amt::Cents(c) => Some(c.max(1)),
            Amt::Share { frac, round } => {
                let v = ((b as f64 * frac) as i64 / round) * round;
                Some(if v > 0 { v } else { round })
            }
            Amt::UpTo { cents, frac, round } => {
                let cap = ((b as f64 * frac) as i64 / round) * round;
                Some(if cents <= cap || cap <= 0 { cents } else { cap })
            }
            Amt::Need { target } => {
                (b < target).then(|| ((target - b) / 10_000 + 1) * 10_000 + 10_000)
            }
        }
    }

    fn ts_form(&mut self, ch: Channel) -> TsForm {
        let u: f64 = self.rng.gen();
        match ch {
            Channel::Bank | Channel::Api => {
                if u < 0.5 {
                    TsForm::Millis
                } else {
                    TsForm::Utc
                }
            }
            _ => {
                if u < 0.62 {
                    TsForm::Local
                } else if u < 0.95 {
                    TsForm::Utc
                } else {
                    TsForm::Millis
                }
            }
        }
    }

    /// Generates day `day`: habitual intents plus due scripted ones, resolved in time order.
    pub fn gen_day(
        &mut self,
        w: &World,
        day: u32,
        todo: &mut Vec<Intent>,
        out: &mut Vec<SimEvent>,
    ) {
        let d0 = w.day_start(day);
        let d1 = d0 + DAY_MS;
        todo.clear();
        while self.pending.last().is_some_and(|p| p.ts < d1) {
            if let Some(p) = self.pending.pop() {
                todo.push(p);
            }
        }
        self.habitual_day(w, day, d0, todo);
        // Intents made for a time past midnight wait for their day.
        let mut i = 0;
        while i < todo.len() {
            if todo[i].ts >= d1 {
                let it = todo.swap_remove(i);
                self.schedule(it);
            } else {
                i += 1;
            }
        }
        // Latest first, so pop() yields time order; reactions are inserted in place.
        todo.sort_unstable_by_key(|b| std::cmp::Reverse((b.ts, b.ord)));
        while let Some(it) = todo.pop() {
            self.resolve(w, it, d1, todo, out);
        }
        // A comfortable balance is swept to the bank now and then (a card has no balance of
        // its own to sweep).
        if w.kind() != WorldKind::Card
            && self.balance > 3 * self.monthly_spend.max(50_000)
            && self.rng.gen_bool(0.2)
        {
            let t = self.habitual_time(d1);
            if !self.is_quiet(t) {
                let ctx = self.owner_ctx(t);
                let card = self.own_card;
                let sc = self.window_label(t);
                let frac = self.rng.gen_range(0.4..0.8);
                let it = self.intent(
                    t,
                    EventType::Withdrawal,
                    Amt::Share {
                        frac,
                        round: 10_000,
                    },
                    Some(card),
                    ctx,
                    sc,
                    React::None,
                );
                self.schedule(it);
            }
        }
    }

    fn insert_todo(&mut self, it: Intent, d1: EpochMs, todo: &mut Vec<Intent>) {
        if it.ts >= d1 {
            self.schedule(it);
        } else {
            let pos = todo.partition_point(|p| (p.ts, p.ord) > (it.ts, it.ord));
            todo.insert(pos, it);
        }
    }

    fn resolve(
        &mut self,
        w: &World,
        it: Intent,
        d1: EpochMs,
        todo: &mut Vec<Intent>,
        out: &mut Vec<SimEvent>,
    ) {
        let Some(amount) = self.resolve_amount(it.amt) else {
            return;
        };
        let mut failure = it.fail;
        if it.kind.is_money_out() && failure.is_none() {
            if amount > self.balance {
                failure = Some(Failure::InsufficientFunds);
                match it.react {
                    React::OwnerTopUp if self.rng.gen_bool(self.p_react) => {
                        let need = ((amount - self.balance) / 10_000 + 1) * 10_000;
                        let extra = (self.monthly_spend as f64 * self.rng.gen_range(0.0..0.4))
                            as i64
                            / 10_000
                            * 10_000;
                        let t1 = it.ts + self.rng.gen_range(30_000..180_000);
                        let card = self.funding_party(w);
                        let top = self.intent(
                            t1,
                            EventType::TopUp,
                            Amt::Cents(need + extra),
                            Some(card),
                            it.ctx,
                            it.scenario,
                            React::None,
                        );
                        self.insert_todo(top, d1, todo);
                        let mut again = it;
                        again.ts = t1 + self.rng.gen_range(20_000..240_000);
                        again.ord = self.next_ord();
                        again.react = React::None;
                        self.insert_todo(again, d1, todo);
                    }
                    React::Retry(amt) => {
                        let mut again = it;
                        again.ts = it.ts + self.rng.gen_range(20_000..300_000);
                        again.ord = self.next_ord();
                        again.amt = amt;
                        again.react = React::None;
                        self.insert_todo(again, d1, todo);
                    }
                    _ => {}
                }
            } else {
                self.balance -= amount;
                // Returns and cancelled orders come back as refunds days later.
                if it.kind == EventType::Payment
                    && it.react == React::OwnerTopUp
                    && self.rng.gen_bool(0.012)
                {
                    let t = it.ts + self.rng.gen_range(HOUR_MS..7 * DAY_MS);
                    let back = if self.rng.gen_bool(0.7) {
                        amount
                    } else {
                        (amount as f64 * self.rng.gen_range(0.2..0.9)) as i64
                    };
                    let refund = self.intent(
                        t,
                        EventType::Refund,
                        Amt::Cents(back.max(1)),
                        it.party,
                        SimContext::BANK,
                        self.window_label(t),
                        React::None,
                    );
                    self.insert_todo(refund, d1, todo);
                }
            }
        } else if it.kind.is_money_in() {
            self.balance += amount;
        }
        let money = it.kind.is_money();
        // Types the world does not write still move money (a card's settlement), unseen.
        if !w.kind().emits(it.kind) {
            return;
        }
        let mut ctx = it.ctx;
        if w.kind() == WorldKind::MobileMoney && ctx.channel != Channel::Bank {
            // One phone, one menu: attackers who hold the account use the same channel.
            ctx.channel = self.mm_channel;
        }
        self.seq += 1;
        let ts_form = self.ts_form(ctx.channel);
        out.push(SimEvent {
            ts_ms: it.ts,
            user: self.idx,
            seq: self.seq,
            kind: it.kind,
            amount_cents: money.then_some(amount),
            failure,
            counterparty: it.party,
            channel: ctx.channel,
            device: ctx.device,
            ip: ctx.ip,
            // Rounded to the four decimals written (about 10 m), so the in-memory event equals
            // its wire form.
            geo: ctx.geo.map(|g| Geo {
                lat: (g.lat * 1e4).round() / 1e4,
                lon: (g.lon * 1e4).round() / 1e4,
            }),
            balance_cents: money.then_some(self.balance),
            ts_form,
            scenario: it.scenario,
            wire: w.wire,
        });
    }
}

/// Runs every user day by day and yields their events merged in time order.
///
/// Each day is generated for all users, then sorted by `(ts, user, seq)`: a total order, so the
/// stream is the same on every run. Memory: one day of events plus the users' state.
pub struct Simulator {
    world: World,
    params: SimParams,
    users: Vec<User>,
    day: u32,
    buf: Vec<SimEvent>,
    pos: usize,
    todo: Vec<Intent>,
    /// Go on into a new window when this one ends (see [`Simulator::continuous`]).
    continuous: bool,
}

impl Simulator {
    /// Builds the population and schedules every scenario.
    pub fn new(p: &SimParams) -> Result<Simulator, SimError> {
        p.validate()?;
        let (y, m, d) = p.start;
        let world = World {
            seed: p.seed,
            day0_ms: p.day0_ms(),
            day0_civil: crate::engine::time::days_from_civil(y, m, d),
            days: p.days,
            history_days: MIN_HISTORY_DAYS,
            wire: Wire::of(&p.world),
            spec: p.world.clone(),
        };
        let users = (0..p.users)
            .map(|i| {
                let mut u = User::new(&world, i);
                u.plan_scenarios(&world, p);
                u
            })
            .collect();
        Ok(Simulator {
            world,
            params: p.clone(),
            users,
            day: 0,
            buf: Vec::new(),
            pos: 0,
            todo: Vec::new(),
            continuous: false,
        })
    }

    /// Makes the iterator endless: when the `days`-day window ends, [`Simulator::next_window`]
    /// starts the next one. For live demos and soaks that run for a wall-clock duration.
    pub fn continuous(mut self) -> Simulator {
        self.continuous = true;
        self
    }

    /// Starts the next `days`-day window of the same world right after this one: the same
    /// users, with their devices, balances, payees and habits as they are now (their event
    /// ids go on counting), and a new draw of attacks and benign novelties. These may start on
    /// the window's first day, since every user now has a history. A trip or a scripted step
    /// still under way carries over.
    pub fn next_window(&mut self) {
        let days = self.world.days;
        self.world.day0_ms += days as i64 * DAY_MS;
        self.world.day0_civil += days as i64;
        self.world.history_days = 0;
        self.day = 0;
        self.buf.clear();
        self.pos = 0;
        let start = self.world.day0_ms;
        for u in &mut self.users {
            u.attack = None;
            u.novelties.clear();
            u.quiet.retain(|(_, end)| *end > start);
            u.windows.retain(|(_, end, _)| *end > start);
            if u.trip.as_ref().is_some_and(|t| t.ret_arrive <= start) {
                u.trip = None;
            }
            u.plan_scenarios(&self.world, &self.params);
        }
    }

    /// The next day's events in time order, or `None` after the last day.
    pub fn next_day(&mut self) -> Option<&[SimEvent]> {
        if self.day >= self.world.days {
            return None;
        }
        self.buf.clear();
        self.pos = 0;
        for u in &mut self.users {
            u.gen_day(&self.world, self.day, &mut self.todo, &mut self.buf);
        }
        self.buf.sort_unstable_by_key(|e| (e.ts_ms, e.user, e.seq));
        self.day += 1;
        Some(&self.buf)
    }

    /// Users per attack scenario, in [`Scenario::ATTACKS`] order.
    pub fn attack_counts(&self) -> [u32; Scenario::ATTACKS.len()] {
        let mut n = [0; Scenario::ATTACKS.len()];
        for u in &self.users {
            if let Some(a) = u.attack {
                if let Some(i) = Scenario::ATTACKS.iter().position(|x| *x == a) {
                    n[i] += 1;
                }
            }
        }
        n
    }

    /// Users per benign novelty kind, in [`Scenario::NOVELTIES`] order.
    pub fn novelty_counts(&self) -> [u32; Scenario::NOVELTIES.len()] {
        let mut n = [0; Scenario::NOVELTIES.len()];
        for u in &self.users {
            for k in &u.novelties {
                if let Some(i) = Scenario::NOVELTIES.iter().position(|x| x == k) {
                    n[i] += 1;
                }
            }
        }
        n
    }
}

impl Iterator for Simulator {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        loop {
            if let Some(e) = self.buf.get(self.pos) {
                self.pos += 1;
                return Some(*e);
            }
            if self.next_day().is_none() {
                if !self.continuous {
                    return None;
                }
                self.next_window();
            }
        }
    }
}
