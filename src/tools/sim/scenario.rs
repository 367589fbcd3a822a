//! Scripts of the attack scenarios (label 1) and the benign novelties (label 0 with a kind).
//!
//! Each script is written from how the fraud (or the harmless change) unfolds in practice:
//! who acts, from which device, network and place, at what hour, in what order, and how the
//! amounts relate to what the actor can see (an attacker sees the balance). Where a step
//! depends on the balance, its amount is an [`Amt`] fixed at resolution time, so the script
//! interleaves with the owner's own traffic on one consistent balance.

use rand::Rng;

use super::model::{
    Amt, Intent, Place, React, SimContext, Trip, User, World, DAY_MS, HOUR_MS, MIN_MS,
};
use super::world::{
    self, Party, ATTACKER_ABROAD, HOME_CITIES, HOSTING_NETS, NATIONAL, TRAVEL_ABROAD,
};
use super::{Channel, Failure, Scenario, SimParams, WorldKind};
use crate::engine::event::{EventType, Geo};
use crate::engine::time::EpochMs;

/// Mule accounts are few and shared by many victims.
const MULES: u64 = 5_000;

fn jitter<R: Rng>(rng: &mut R, lat: f64, lon: f64, sd: f64) -> Geo {
    let n = |rng: &mut R| (rng.gen::<f64>() + rng.gen::<f64>() + rng.gen::<f64>() - 1.5) * 2.0 * sd;
    Geo {
        lat: (lat + n(rng)).clamp(-90.0, 90.0),
        lon: (lon + n(rng)).clamp(-180.0, 180.0),
    }
}

/// An attacker's session: a device, a network and (for app clients) a position.
struct Actor {
    device: u64,
    channel: Channel,
    net: [u8; 3],
    geo_at: Option<(f64, f64, f64)>,
}

impl Actor {
    fn ctx(&self, u: &mut User) -> SimContext {
        SimContext {
            device: Some(self.device),
            channel: self.channel,
            ip: Some(world::host_in24(&mut u.rng, self.net)),
            geo: self
                .geo_at
                .map(|(lat, lon, sd)| jitter(&mut u.rng, lat, lon, sd)),
        }
    }
}

// A script step reads best as one call naming every field of the step, in the order of an
// event's fields; a builder would triple the length of each script.
#[allow(clippy::too_many_arguments)]
impl User {
    /// An attacker step with no amount, payee or balance reaction (logins, resets, binds).
    pub(crate) fn push_plain(
        &mut self,
        w: &World,
        t: EpochMs,
        kind: EventType,
        ctx: SimContext,
        sc: Scenario,
    ) {
        self.push(w, t, kind, Amt::None, None, ctx, sc, React::None);
    }

    /// An attacker step that names a counterparty but moves no money (binding a card).
    fn push_party(
        &mut self,
        w: &World,
        t: EpochMs,
        kind: EventType,
        party: Party,
        ctx: SimContext,
        sc: Scenario,
    ) {
        self.push(w, t, kind, Amt::None, Some(party), ctx, sc, React::None);
    }

    pub(crate) fn push(
        &mut self,
        w: &World,
        t: EpochMs,
        kind: EventType,
        amt: Amt,
        party: Option<Party>,
        ctx: SimContext,
        sc: Scenario,
        react: React,
    ) {
        // Steps before the horizon's start cannot be shown; steps after its end are cut.
        if t < w.day0_ms || t >= w.end_ms() {
            return;
        }
        let it = self.intent(t, kind, amt, party, ctx, sc, react);
        self.schedule(it);
    }

    pub(crate) fn push_failed(
        &mut self,
        w: &World,
        t: EpochMs,
        kind: EventType,
        amt: Amt,
        party: Option<Party>,
        ctx: SimContext,
        sc: Scenario,
        f: Failure,
    ) {
        if t < w.day0_ms || t >= w.end_ms() {
            return;
        }
        let mut it: Intent = self.intent(t, kind, amt, party, ctx, sc, React::None);
        it.fail = Some(f);
        self.schedule(it);
    }

    fn mule(&mut self, w: &World) -> Party {
        let k = self.rng.gen_range(0..MULES);
        Party::Person(world::digest(w.seed, b"mule", &[k]))
    }

    pub(crate) fn attacker_device(&mut self, w: &World, n: u64) -> u64 {
        world::digest(w.seed, b"device-x", &[self.idx as u64, n])
    }

    /// A city for a remote attacker: abroad (with probability `abroad_p`) or a mainland
    /// city, at least `min_km` from the victim's home.
    pub(crate) fn far_city(&mut self, abroad_p: f64, min_km: f64) -> &'static world::City {
        let table = if self.rng.gen_bool(abroad_p) {
            ATTACKER_ABROAD
        } else {
            HOME_CITIES
        };
        let mut c = world::pick_city(&mut self.rng, table);
        for _ in 0..50 {
            if world::distance_km(self.home, (c.lat, c.lon)) >= min_km {
                break;
            }
            c = world::pick_city(&mut self.rng, table);
        }
        c
    }

    /// Picks the scenarios of this user and schedules their steps.
    pub(crate) fn plan_scenarios(&mut self, w: &World, p: &SimParams) {
        let mut attack = None;
        let attacks = &w.spec.attacks;
        if p.days > w.history_days && !attacks.is_empty() && self.rng.gen_bool(p.attack_rate) {
            let kind = attacks[self.rng.gen_range(0..attacks.len())];
            let day = self.rng.gen_range(w.history_days..p.days);
            attack = Some((kind, day));
        }
        let rate = |k: Scenario| (p.novelty_rate * w.spec.novelty_weight(k)).clamp(0.0, 1.0);
        // The original five kinds, one draw each in this order whatever the world (the
        // default world's stream of draws depends on it).
        let mut wanted = [false; 5];
        for (x, k) in wanted.iter_mut().zip(Scenario::NOVELTIES) {
            *x = self.rng.gen_bool(rate(k));
        }
        // A trip first: it decides where the owner is for everything else.
        // A trip still under way from the previous window keeps the owner where they are.
        if wanted[0] && self.trip.is_none() {
            let avoid = attack.map(|(_, d)| d);
            if self.plan_travel(w, avoid) {
                self.novelties.push(Scenario::Travel);
            }
        }
        let home_day = |u: &mut User| -> Option<(u32, EpochMs)> {
            for _ in 0..10 {
                let day = u.rng.gen_range(1..w.days.max(2));
                let t = u.habitual_time(w.day_start(day));
                if u.place(t) == Place::Home && attack.is_none_or(|(_, d)| d.abs_diff(day) > 2) {
                    return Some((day, t));
                }
            }
            None
        };
        if wanted[1] {
            if let Some((_, t)) = home_day(self) {
                self.plan_new_phone(w, t);
                self.novelties.push(Scenario::NewPhone);
            }
        }
        if wanted[3] {
            if let Some((_, t)) = home_day(self) {
                self.plan_owner_reset(w, t);
                self.novelties.push(Scenario::OwnerReset);
            }
        }
        if wanted[2] {
            let day = self.rng.gen_range(1..w.days.max(2));
            let t = self.habitual_time(w.day_start(day));
            if self.place(t) != Place::InAir {
                self.plan_big_purchase(w, t);
                self.novelties.push(Scenario::BigPurchase);
            }
        }
        if wanted[4] {
            let day = self.rng.gen_range(1..w.days.max(2));
            let t = self.habitual_time(w.day_start(day));
            if self.place(t) != Place::InAir {
                self.plan_family_recharge(w, t);
                self.novelties.push(Scenario::FamilyRecharge);
            }
        }
        // The behaviours added with world specs, drawn from the spec's own stream.
        for k in &Scenario::NOVELTIES[5..] {
            let r = rate(*k);
            if r > 0.0 && self.xrng.gen_bool(r) && self.plan_added_novelty(w, *k) {
                self.novelties.push(*k);
            }
        }
        if let Some((kind, day)) = attack {
            let d0 = w.day_start(day);
            let card = w.kind() == WorldKind::Card;
            match kind {
                Scenario::AccountTakeover => self.plan_takeover(w, d0),
                Scenario::SimSwap => self.plan_sim_swap(w, d0),
                Scenario::StolenPhone => self.plan_stolen_phone(w, d0),
                Scenario::CardTesting if card => self.plan_card_testing_online(w, d0),
                Scenario::CardTesting => self.plan_card_testing(w, d0),
                Scenario::ImpossibleTravel => self.plan_impossible_travel(w, d0),
                Scenario::MuleCashout => self.plan_mule_cashout(w, d0),
                Scenario::CnpBurst => self.plan_cnp_burst(w, d0),
                Scenario::ClonedCard => self.plan_cloned_card(w, d0),
                _ => self.plan_slow_drain(w, d0),
            }
            self.attack = Some(kind);
        }
    }

    // ----- benign novelties -------------------------------------------------------------

    fn plan_travel(&mut self, w: &World, avoid: Option<u32>) -> bool {
        let abroad = self.rng.gen_bool(0.25);
        let (dest, city_key) = if abroad {
            let i = world::pick_weighted(&mut self.rng, TRAVEL_ABROAD.iter().map(|c| c.weight));
            (&TRAVEL_ABROAD[i], 1000 + i as u64)
        } else {
            let mut pick = None;
            for _ in 0..20 {
                let i = world::pick_weighted(&mut self.rng, HOME_CITIES.iter().map(|c| c.weight));
                let c = &HOME_CITIES[i];
                if world::distance_km(self.home, (c.lat, c.lon)) > 400.0 {
                    pick = Some((c, i as u64));
                    break;
                }
            }
            match pick {
                Some(p) => p,
                None => return false,
            }
        };
        let nights = self.rng.gen_range(1..7u32);
        let mut day = None;
        for _ in 0..10 {
            let d = self.rng.gen_range(1..w.days.max(2));
            if avoid.is_none_or(|a| a + 2 < d || a > d + nights + 2) {
                day = Some(d);
                break;
            }
        }
        let Some(day) = day else { return false };
        let dist = world::distance_km(self.home, (dest.lat, dest.lon));
        // Cruise near 800 km/h plus taxi, climb and descent.
        let flight = ((dist / 800.0 + 0.6) * HOUR_MS as f64) as i64;
        let depart =
            w.day_start(day) + self.rng.gen_range(7..20) * HOUR_MS + self.rng.gen_range(0..HOUR_MS);
        let arrive = depart + flight;
        let ret_depart = w.day_start(day + nights)
            + self.rng.gen_range(9..21) * HOUR_MS
            + self.rng.gen_range(0..HOUR_MS);
        let ret_depart = ret_depart.max(arrive + 12 * HOUR_MS);
        let ret_arrive = ret_depart + flight;
        let hotel_net = if abroad {
            [dest.net[0], dest.net[1], self.rng.gen()]
        } else {
            [
                dest.net[0],
                dest.net[1].wrapping_add(self.rng.gen_range(0..4)),
                self.rng.gen(),
            ]
        };
        // Tickets are bought at home, days ahead.
        let book =
            depart - self.rng.gen_range(2..20) * DAY_MS + self.rng.gen_range(-6..6) * HOUR_MS;
        let book_ctx = self.owner_ctx(book);
        let fare = if abroad {
            (4000f64).ln()
        } else {
            (1100f64).ln()
        };
        let fare = (fare + (self.rng.gen::<f64>() - 0.5) * 0.8).exp()
            * if self.rng.gen_bool(0.4) { 2.0 } else { 1.0 };
        let agency = world::merchant(w.seed, NATIONAL, self.rng.gen_range(0..30));
        // A card pays the agency online; its `geo` is the agency's seat.
        let book_ctx = if w.kind() == WorldKind::Card {
            self.online_ctx(w, agency)
        } else {
            book_ctx
        };
        self.push(
            w,
            book,
            EventType::Payment,
            Amt::Cents((fare * 100.0) as i64),
            Some(agency),
            book_ctx,
            Scenario::Travel,
            React::OwnerTopUp,
        );
        self.trip = Some(Box::new(Trip {
            depart,
            arrive,
            ret_depart,
            ret_arrive,
            dest,
            city_key,
            abroad,
            hotel_net,
        }));
        self.windows
            .push((depart, ret_arrive + 6 * HOUR_MS, Scenario::Travel));
        // The phone comes back on after landing.
        let t = arrive + self.rng.gen_range(10..50) * MIN_MS;
        let ctx = self.owner_ctx(t);
        self.push(
            w,
            t,
            EventType::Login,
            Amt::None,
            None,
            ctx,
            Scenario::Travel,
            React::None,
        );
        let t = arrive + self.rng.gen_range(1..4) * HOUR_MS;
        let ctx = self.owner_ctx(t);
        let hotel = world::merchant(w.seed, city_key, world::zipf_rank(&mut self.rng, 200));
        let ctx = if w.kind() == WorldKind::Card {
            self.shop_ctx(w, hotel, (dest.lat, dest.lon))
        } else {
            ctx
        };
        let night = (self.rng.gen_range(300.0f64..900.0) * nights as f64 * 100.0) as i64;
        self.push(
            w,
            t,
            EventType::Payment,
            Amt::Cents(night),
            Some(hotel),
            ctx,
            Scenario::Travel,
            React::OwnerTopUp,
        );
        let t = ret_arrive + self.rng.gen_range(15..60) * MIN_MS;
        let ctx = self.owner_ctx(t);
        self.push(
            w,
            t,
            EventType::Login,
            Amt::None,
            None,
            ctx,
            Scenario::Travel,
            React::None,
        );
        true
    }

    fn plan_new_phone(&mut self, w: &World, t: EpochMs) {
        let new = world::digest(w.seed, b"device", &[self.idx as u64, 7]);
        let keep = self.rng.gen_bool(0.25);
        let ctx = SimContext {
            device: Some(new),
            channel: Channel::App,
            ip: Some(world::host_in24(&mut self.rng, self.home_net)),
            geo: Some(self.home_geo(0.02)),
        };
        // Signing in on the new phone: a password typo now and then, then the SMS-verified bind.
        let mut s = t;
        if self.rng.gen_bool(0.2) {
            self.push(
                w,
                s,
                EventType::LoginFailed,
                Amt::None,
                None,
                ctx,
                Scenario::NewPhone,
                React::None,
            );
            s += self.rng.gen_range(20_000..90_000);
        }
        self.push(
            w,
            s,
            EventType::Login,
            Amt::None,
            None,
            ctx,
            Scenario::NewPhone,
            React::None,
        );
        s += self.rng.gen_range(30_000..180_000);
        self.push(
            w,
            s,
            EventType::DeviceBind,
            Amt::None,
            None,
            ctx,
            Scenario::NewPhone,
            React::None,
        );
        self.phone_change = Some((s, new, keep));
        self.windows.push((t, s + 2 * DAY_MS, Scenario::NewPhone));
    }

    fn plan_owner_reset(&mut self, w: &World, t: EpochMs) {
        let ctx = self.owner_ctx(t);
        let mut s = t;
        if self.rng.gen_bool(0.6) {
            for _ in 0..self.rng.gen_range(1..4) {
                self.push(
                    w,
                    s,
                    EventType::LoginFailed,
                    Amt::None,
                    None,
                    ctx,
                    Scenario::OwnerReset,
                    React::None,
                );
                s += self.rng.gen_range(10_000..60_000);
            }
        }
        self.push(
            w,
            s,
            EventType::PasswordReset,
            Amt::None,
            None,
            ctx,
            Scenario::OwnerReset,
            React::None,
        );
        s += self.rng.gen_range(60_000..300_000);
        self.push(
            w,
            s,
            EventType::Login,
            Amt::None,
            None,
            ctx,
            Scenario::OwnerReset,
            React::None,
        );
        self.windows.push((t, s + 2 * DAY_MS, Scenario::OwnerReset));
    }

    fn plan_big_purchase(&mut self, w: &World, t: EpochMs) {
        let ctx = self.owner_ctx(t);
        let habit = self.mu.exp() * self.rng.gen_range(15.0..50.0);
        let price = habit.max(self.rng.gen_range(1500.0..6000.0));
        // Prices end in 9s and 0s.
        let price = ((price / 100.0).round() * 100.0
            - if self.rng.gen_bool(0.5) { 1.0 } else { 0.0 }) as i64
            * 100;
        let online = self.rng.gen_bool(0.6);
        let shop = if online {
            world::merchant(w.seed, NATIONAL, self.rng.gen_range(0..200))
        } else {
            world::merchant(w.seed, self.city as u64, 3000 + self.rng.gen_range(0..500))
        };
        let card = self.funding_party(w);
        let top = t - self.rng.gen_range(3..40) * MIN_MS;
        // A card pays at the shop (or online): `geo` is the shop's.
        let pay_ctx = match w.kind() {
            WorldKind::Card if online => self.online_ctx(w, shop),
            WorldKind::Card => {
                let c = &HOME_CITIES[self.city];
                self.shop_ctx(w, shop, (c.lat, c.lon))
            }
            _ => ctx,
        };
        self.push(
            w,
            top,
            EventType::TopUp,
            Amt::Need { target: price },
            Some(card),
            ctx,
            Scenario::BigPurchase,
            React::None,
        );
        self.push(
            w,
            t,
            EventType::Payment,
            Amt::Cents(price),
            Some(shop),
            pay_ctx,
            Scenario::BigPurchase,
            React::OwnerTopUp,
        );
    }

    fn plan_family_recharge(&mut self, w: &World, t: EpochMs) {
        let number = Party::Phone(world::phone_number(w.seed, b"family", &[self.idx as u64]));
        let amount = [5_000, 10_000, 10_000, 20_000][self.rng.gen_range(0..4)];
        let ctx = self.owner_ctx(t);
        self.push(
            w,
            t,
            EventType::MobileRecharge,
            Amt::Cents(amount),
            Some(number),
            ctx,
            Scenario::FamilyRecharge,
            React::OwnerTopUp,
        );
        if self.rng.gen_bool(0.5) {
            let t2 = t + self.rng.gen_range(25..35) * DAY_MS;
            let ctx = self.owner_ctx(t2);
            self.push(
                w,
                t2,
                EventType::MobileRecharge,
                Amt::Cents(amount),
                Some(number),
                ctx,
                Scenario::FamilyRecharge,
                React::OwnerTopUp,
            );
        }
    }

    // ----- attacks ----------------------------------------------------------------------

    /// Phished credentials used from abroad: failed guesses, a reset from the attacker's
    /// device at an hour the owner sleeps, then a new payee or card and draining outflows.
    fn plan_takeover(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::AccountTakeover;
        let city = self.far_city(0.8, 800.0);
        let channel = if self.rng.gen_bool(0.7) {
            Channel::App
        } else {
            Channel::Web
        };
        let a = Actor {
            device: self.attacker_device(w, 0),
            channel,
            net: [city.net[0], city.net[1], self.rng.gen()],
            geo_at: (channel == Channel::App).then_some((city.lat, city.lon, 0.05)),
        };
        let mut t = self.odd_time(d0);
        if self.rng.gen_bool(0.5) {
            for _ in 0..self.rng.gen_range(1..4) {
                let c = a.ctx(self);
                self.push_plain(w, t, EventType::LoginFailed, c, S);
                t += w.pace(self.rng.gen_range(15_000..90_000));
            }
        }
        let c = a.ctx(self);
        self.push_plain(w, t, EventType::PasswordReset, c, S);
        t += w.pace(self.rng.gen_range(60_000..600_000));
        let c = a.ctx(self);
        self.push_plain(w, t, EventType::Login, c, S);
        t += w.pace(self.rng.gen_range(30_000..300_000));
        let card = self.rng.gen_bool(0.5);
        let payee = if card {
            let p = Party::Card(world::digest(w.seed, b"card-x", &[self.idx as u64]));
            let c = a.ctx(self);
            self.push_party(w, t, EventType::PaymentMethodBind, p, c, S);
            t += w.pace(self.rng.gen_range(60_000..600_000));
            p
        } else {
            self.mule(w)
        };
        let kind = if card {
            EventType::Withdrawal
        } else {
            EventType::Transfer
        };
        if self.rng.gen_bool(0.3) {
            // A small probe first.
            let c = a.ctx(self);
            let probe = self.rng.gen_range(1..50) * 100;
            self.push(
                w,
                t,
                kind,
                Amt::Cents(probe),
                Some(payee),
                c,
                S,
                React::None,
            );
            t += w.pace(self.rng.gen_range(60_000..600_000));
        }
        let n = self.rng.gen_range(1..4);
        let mut payee = payee;
        for i in 0..n {
            let frac = if i + 1 == n {
                self.rng.gen_range(0.9..1.0)
            } else {
                self.rng.gen_range(0.3..0.6)
            };
            let round = if self.rng.gen_bool(0.7) {
                10_000
            } else {
                1_000
            };
            let c = a.ctx(self);
            self.push(
                w,
                t,
                kind,
                Amt::Share {
                    frac: w.share(frac),
                    round,
                },
                Some(payee),
                c,
                S,
                React::Retry(Amt::Share {
                    frac: w.share(0.5),
                    round: 1_000,
                }),
            );
            t += w.pace(self.rng.gen_range(60_000..900_000));
            if !card && self.rng.gen_bool(0.3) {
                payee = self.mule(w);
            }
        }
    }

    /// The victim's number is ported to the attacker's SIM: MFA moved to it, password reset by
    /// SMS, the attacker's card bound, and the balance withdrawn to it.
    fn plan_sim_swap(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::SimSwap;
        let city = if self.rng.gen_bool(0.35) {
            &HOME_CITIES[self.city]
        } else {
            world::pick_city(&mut self.rng, HOME_CITIES)
        };
        let carrier = world::CARRIER_NETS[self.rng.gen_range(0..world::CARRIER_NETS.len())];
        let a = Actor {
            device: self.attacker_device(w, 0),
            channel: Channel::App,
            net: [carrier[0], carrier[1], self.rng.gen()],
            geo_at: Some((city.lat, city.lon, 0.06)),
        };
        // Ports happen when carrier shops and hotlines are open, late evenings included.
        let mut t = d0 + self.rng.gen_range(8..23) * HOUR_MS + self.rng.gen_range(0..HOUR_MS);
        let c = a.ctx(self);
        self.push_plain(w, t, EventType::MfaChange, c, S);
        t += w.pace(self.rng.gen_range(120_000..1_200_000));
        let c = a.ctx(self);
        self.push_plain(w, t, EventType::PasswordReset, c, S);
        t += w.pace(self.rng.gen_range(30_000..300_000));
        let c = a.ctx(self);
        self.push_plain(w, t, EventType::Login, c, S);
        t += w.pace(self.rng.gen_range(60_000..600_000));
        let card = Party::Card(world::digest(w.seed, b"card-x", &[self.idx as u64]));
        let c = a.ctx(self);
        self.push_party(w, t, EventType::PaymentMethodBind, card, c, S);
        t += w.pace(self.rng.gen_range(60_000..600_000));
        let n = self.rng.gen_range(1..4);
        for i in 0..n {
            let frac = if i + 1 == n {
                self.rng.gen_range(0.9..1.0)
            } else {
                self.rng.gen_range(0.4..0.7)
            };
            let c = a.ctx(self);
            self.push(
                w,
                t,
                EventType::Withdrawal,
                Amt::Share {
                    frac: w.share(frac),
                    round: 10_000,
                },
                Some(card),
                c,
                S,
                React::Retry(Amt::Share {
                    frac: w.share(0.8),
                    round: 1_000,
                }),
            );
            t += w.pace(self.rng.gen_range(120_000..1_200_000));
        }
    }

    /// A thief with the unlocked phone: same device, same city, at night; transfers to new
    /// payees, growing as nothing stops them. The owner is silent until they replace the phone.
    fn plan_stolen_phone(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::StolenPhone;
        let t0 = self.odd_time(d0);
        let (phone, _) = self.phone_at(t0);
        let mut t = t0;
        let ctx = |u: &mut User| SimContext {
            device: Some(phone),
            channel: Channel::App,
            ip: Some(u.carrier_ip()),
            geo: Some(u.home_geo(0.07)),
        };
        let ctx_at = |u: &mut User, _: EpochMs| ctx(u);
        if self.rng.gen_bool(0.4) {
            for _ in 0..self.rng.gen_range(1..4) {
                let c = ctx(self);
                self.push_plain(w, t, EventType::LoginFailed, c, S);
                t += w.pace(self.rng.gen_range(10_000..120_000));
            }
        }
        if self.rng.gen_bool(0.5) {
            let c = ctx(self);
            self.push_plain(w, t, EventType::Login, c, S);
            t += w.pace(self.rng.gen_range(30_000..300_000));
        }
        let n = self.rng.gen_range(2..7);
        let mut amount = self.rng.gen_range(5..30) as f64 * 1_000.0;
        let growth = self.rng.gen_range(1.5..3.0);
        let mut payee = self.mule(w);
        t = self.style_prelude(w, t, ctx_at, EventType::Transfer, payee, S);
        for _ in 0..n {
            let c = ctx(self);
            let cents = ((amount / 1_000.0).round() as i64).max(1) * 1_000;
            self.push(
                w,
                t,
                EventType::Transfer,
                Amt::UpTo {
                    cents,
                    frac: w.share(0.95),
                    round: 1_000,
                },
                Some(payee),
                c,
                S,
                React::None,
            );
            t += w.pace(self.rng.gen_range(3 * MIN_MS..25 * MIN_MS));
            amount *= growth;
            if self.rng.gen_bool(0.5) {
                payee = self.mule(w);
            }
        }
        // The owner is without a phone until the next day or two, then signs in on a new one.
        let back = t + self.rng.gen_range(6 * HOUR_MS..36 * HOUR_MS);
        self.quiet.push((t0 - 30 * MIN_MS, back));
        if self.phone_change.is_none_or(|(at, _, _)| at < t0) {
            let new = world::digest(w.seed, b"device", &[self.idx as u64, 8]);
            let c = SimContext {
                device: Some(new),
                channel: Channel::App,
                ip: Some(world::host_in24(&mut self.rng, self.home_net)),
                geo: Some(self.home_geo(0.02)),
            };
            self.push(
                w,
                back,
                EventType::Login,
                Amt::None,
                None,
                c,
                Scenario::None,
                React::None,
            );
            let b2 = back + self.rng.gen_range(30_000..180_000);
            self.push(
                w,
                b2,
                EventType::DeviceBind,
                Amt::None,
                None,
                c,
                Scenario::None,
                React::None,
            );
            self.phone_change = Some((b2, new, false));
        }
    }

    /// Bots test stolen cards through the account: many tiny payments at new online merchants
    /// within minutes, a share declined, then one large purchase.
    fn plan_card_testing(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::CardTesting;
        let net = HOSTING_NETS[self.rng.gen_range(0..HOSTING_NETS.len())];
        let a = Actor {
            device: self.attacker_device(w, 0),
            channel: if self.rng.gen_bool(0.5) {
                Channel::Web
            } else {
                Channel::Api
            },
            net: [net[0], net[1], self.rng.gen()],
            geo_at: None,
        };
        // Bots run around the clock.
        let mut t = d0 + self.rng.gen_range(0..DAY_MS);
        if self.rng.gen_bool(0.5) {
            for _ in 0..self.rng.gen_range(1..6) {
                let c = a.ctx(self);
                self.push_plain(w, t, EventType::LoginFailed, c, S);
                t += w.pace(self.rng.gen_range(2_000..30_000));
            }
        }
        let c = a.ctx(self);
        self.push_plain(w, t, EventType::Login, c, S);
        t += w.pace(self.rng.gen_range(5_000..120_000));
        if self.rng.gen_bool(0.8) {
            let card = Party::Card(world::digest(w.seed, b"card-x", &[self.idx as u64]));
            let c = a.ctx(self);
            self.push_party(w, t, EventType::PaymentMethodBind, card, c, S);
            t += w.pace(self.rng.gen_range(5_000..60_000));
        }
        let decline = self.rng.gen_range(0.15..0.5);
        for _ in 0..self.rng.gen_range(3..13) {
            let shop = world::merchant(w.seed, NATIONAL, 10_000 + self.rng.gen_range(0..20_000));
            let cents = if self.rng.gen_bool(0.3) {
                [1, 100, 100, 200][self.rng.gen_range(0..4)]
            } else {
                self.rng.gen_range(1..500)
            };
            let c = a.ctx(self);
            if self.rng.gen_bool(decline) {
                self.push_failed(
                    w,
                    t,
                    EventType::Payment,
                    Amt::Cents(cents),
                    Some(shop),
                    c,
                    S,
                    Failure::CardDeclined,
                );
            } else {
                self.push(
                    w,
                    t,
                    EventType::Payment,
                    Amt::Cents(cents),
                    Some(shop),
                    c,
                    S,
                    React::None,
                );
            }
            t += w.pace(self.rng.gen_range(3_000..90_000));
        }
        t += w.pace(self.rng.gen_range(30_000..1_800_000));
        let shop = world::merchant(w.seed, NATIONAL, 10_000 + self.rng.gen_range(0..20_000));
        let big = (self.rng.gen_range(800.0f64..6000.0) * 100.0) as i64;
        let c = a.ctx(self);
        self.push(
            w,
            t,
            EventType::Payment,
            Amt::Cents(big),
            Some(shop),
            c,
            S,
            React::Retry(Amt::Share {
                frac: 0.9,
                round: 100,
            }),
        );
    }

    /// The account used from a far city minutes after the owner was active at home.
    fn plan_impossible_travel(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::ImpossibleTravel;
        let t0 = d0 + self.rng.gen_range(0..DAY_MS);
        // The owner's own session shortly before (an ordinary event).
        let t_own = t0 - self.rng.gen_range(5 * MIN_MS..90 * MIN_MS);
        let ctx = self.owner_ctx(t_own);
        self.push(
            w,
            t_own,
            EventType::Login,
            Amt::None,
            None,
            ctx,
            Scenario::None,
            React::None,
        );
        // Far enough that no flight, airports included, covers it within the 90-minute gap.
        let city = self.far_city(0.6, 1000.0);
        let a = Actor {
            device: self.attacker_device(w, 0),
            channel: Channel::App,
            net: [city.net[0], city.net[1], self.rng.gen()],
            geo_at: Some((city.lat, city.lon, 0.05)),
        };
        let mut t = t0;
        let c = a.ctx(self);
        self.push_plain(w, t, EventType::Login, c, S);
        t += w.pace(self.rng.gen_range(MIN_MS..10 * MIN_MS));
        let mut payee = self.mule(w);
        t = self.style_prelude(w, t, |u, _| a.ctx(u), EventType::Transfer, payee, S);
        for _ in 0..self.rng.gen_range(1..4) {
            let frac = self.rng.gen_range(0.3..0.9);
            let c = a.ctx(self);
            self.push(
                w,
                t,
                EventType::Transfer,
                Amt::Share {
                    frac: w.share(frac),
                    round: 10_000,
                },
                Some(payee),
                c,
                S,
                React::Retry(Amt::Share {
                    frac: w.share(0.5),
                    round: 1_000,
                }),
            );
            t += w.pace(self.rng.gen_range(2 * MIN_MS..20 * MIN_MS));
            if self.rng.gen_bool(0.3) {
                payee = self.mule(w);
            }
        }
    }

    /// Someone with the owner's phone (a relative, a remote-access app) sends moderate sums to
    /// one new payee every day or few, at the owner's usual hours, from home.
    fn plan_slow_drain(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::SlowDrain;
        let payee = if self.rng.gen_bool(0.5) {
            self.mule(w)
        } else {
            Party::Person(self.fresh())
        };
        let gaps: Vec<i64> = (1..self.rng.gen_range(4..11))
            .map(|_| w.pace(self.rng.gen_range(1..4) * DAY_MS))
            .collect();
        // Why: a drain is a series over days. One started so late that the simulated window
        // keeps only its first transfer is not the scenario, and no evidence could tell it
        // from an honest new contact; start it early enough to play out, though never before
        // the victim's history exists.
        let latest = w.end_ms() - DAY_MS - gaps.iter().sum::<i64>();
        let mut day0 = d0.min(latest).max(w.day_start(w.history_days));
        let typical = (self.mu + 0.8).exp();
        for i in 0..=gaps.len() {
            let t = self.habitual_time(day0);
            let (phone, _) = self.phone_at(t);
            let c = SimContext {
                device: Some(phone),
                channel: Channel::App,
                ip: Some(world::host_in24(&mut self.rng, self.home_net)),
                geo: Some(self.home_geo(0.02)),
            };
            let yuan = (typical * self.rng.gen_range(0.8..2.5)).clamp(100.0, 3000.0);
            let cents = (yuan / 10.0).round() as i64 * 1_000;
            let t = if i == 0 {
                self.style_prelude(w, t, |u, t| u.owner_ctx(t), EventType::Transfer, payee, S)
            } else {
                t
            };
            self.push(
                w,
                t,
                EventType::Transfer,
                Amt::UpTo {
                    cents,
                    frac: w.share(0.8),
                    round: 1_000,
                },
                Some(payee),
                c,
                S,
                React::None,
            );
            day0 += gaps.get(i).copied().unwrap_or(0);
        }
    }
}
