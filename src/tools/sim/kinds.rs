//! The habits of card and mobile-money worlds ([`super::WorldKind::Card`],
//! [`super::WorldKind::MobileMoney`]): where a card is used and what it buys, and how
//! mobile-money users move money. The wallet world's habits are in [`super::model`].
//!
//! Card merchants have a category, which sets the amount's typical size and spread, and a
//! fixed position derived from their id: local shops scattered over the home metro area
//! (about 50 km across), shops of a trip's destination around it. An online shop has no
//! street address the card sees; its position, as card data sets give it, lies within about
//! 110 km of the cardholder's city (fixed per shop and city). A card event's `geo` is the
//! merchant's position, so two payments minutes apart may be 100 km apart.

use rand::Rng;

use super::model::{
    lognormal, poisson, price_cents, round_cents, Amt, Intent, Place, React, SimContext, User,
    World, HOUR_MS,
};
use super::world::{self, Party, HOME_CITIES, NATIONAL};
use super::Channel;
use crate::engine::event::{EventType, Geo};
use crate::engine::time::EpochMs;

/// Merchant categories of card worlds: typical amount in CNY, log-standard deviation, and
/// relative frequency (grocery, restaurant, fuel, clothing and shopping, entertainment,
/// health, transport, electronics, travel, miscellaneous).
const CATEGORIES: [(f64, f64, u32); 10] = [
    (90.0, 0.6, 25),
    (70.0, 0.5, 20),
    (300.0, 0.3, 8),
    (250.0, 0.8, 15),
    (120.0, 0.6, 8),
    (180.0, 0.7, 5),
    (30.0, 0.5, 10),
    (1500.0, 0.7, 3),
    (1200.0, 0.6, 3),
    (50.0, 0.9, 3),
];

/// Radius of a metro area in degrees of latitude (about 25 km).
const METRO_DEG: f64 = 0.225;

/// The category of a merchant, fixed by its id.
fn category(seed: u64, shop: Party) -> usize {
    let h = world::digest(seed, b"mcc", &[shop.id()]);
    let total: u32 = CATEGORIES.iter().map(|c| c.2).sum();
    let mut x = (h % total as u64) as u32;
    for (i, c) in CATEGORIES.iter().enumerate() {
        if x < c.2 {
            return i;
        }
        x -= c.2;
    }
    0
}

/// Radius of the area around the cardholder's city where online shops are placed, degrees.
const ONLINE_DEG: f64 = 1.0;

/// A position on a disc of `radius` degrees around `center`, fixed by `key` (a merchant id).
pub(crate) fn merchant_geo(seed: u64, key: u64, center: (f64, f64), radius: f64) -> Geo {
    let h = world::digest(seed, b"merchant-geo", &[key]);
    let u1 = (h & 0xffff_ffff) as f64 / 4_294_967_296.0;
    let u2 = (h >> 32) as f64 / 4_294_967_296.0;
    let r = radius * u2.sqrt();
    let a = u1 * std::f64::consts::TAU;
    let lat = (center.0 + r * a.cos()).clamp(-89.9, 89.9);
    let lon = center.1 + r * a.sin() / lat.to_radians().cos().max(0.05);
    Geo {
        lat,
        lon: (lon + 180.0).rem_euclid(360.0) - 180.0,
    }
}

impl User {
    /// The credit limit of a card: four months of spending.
    pub(crate) fn credit_limit(&self) -> i64 {
        self.monthly_spend.max(10_000) * 4
    }

    /// A card payment in a shop: terminal, no device or network, the shop's position.
    pub(crate) fn shop_ctx(&mut self, w: &World, shop: Party, center: (f64, f64)) -> SimContext {
        SimContext {
            device: None,
            channel: Channel::Pos,
            ip: None,
            geo: Some(merchant_geo(w.seed, shop.id(), center, METRO_DEG)),
        }
    }

    /// A card-not-present payment at an online shop, placed near the cardholder's city.
    pub(crate) fn online_ctx(&mut self, w: &World, shop: Party) -> SimContext {
        let c = &HOME_CITIES[self.city];
        let key = world::digest(w.seed, b"online-pos", &[shop.id(), self.city as u64]);
        SimContext {
            device: None,
            channel: Channel::Web,
            ip: None,
            geo: Some(merchant_geo(w.seed, key, (c.lat, c.lon), ONLINE_DEG)),
        }
    }

    /// An amount at `shop` for this card: the category's typical amount, scaled by how much
    /// this user spends.
    pub(crate) fn card_amount(&mut self, w: &World, shop: Party) -> i64 {
        let (typical, sd, _) = CATEGORIES[category(w.seed, shop)];
        let y = lognormal(&mut self.rng, typical.ln() + self.mu - 4.0, sd);
        price_cents(&mut self.rng, y.min(200_000.0))
    }

    /// Where the card is used at `t`: a shop of the trip's destination, an online shop, or a
    /// local one (a favourite mostly).
    fn card_shop(&mut self, w: &World, t: EpochMs) -> (Party, SimContext) {
        if let (Place::Away, Some(tr)) = (self.place(t), self.trip.as_deref().copied()) {
            let shop = world::merchant(w.seed, tr.city_key, world::zipf_rank(&mut self.rng, 3000));
            return (shop, self.shop_ctx(w, shop, (tr.dest.lat, tr.dest.lon)));
        }
        let idx = self.idx as u64;
        if self.rng.gen::<f32>() < self.p_online {
            let rank = if self.rng.gen_bool(0.6) {
                let k = world::zipf_rank(&mut self.rng, 6);
                world::digest(w.seed, b"card-fav-online", &[idx, k]) % 5000
            } else {
                world::zipf_rank(&mut self.rng, 5000)
            };
            let shop = world::merchant(w.seed, NATIONAL, rank);
            return (shop, self.online_ctx(w, shop));
        }
        let rank = if self.rng.gen_bool(self.p_new_merchant) {
            world::zipf_rank(&mut self.rng, 3000)
        } else {
            let k = world::zipf_rank(&mut self.rng, 12);
            world::digest(w.seed, b"card-fav", &[idx, k]) % 3000
        };
        let shop = world::merchant(w.seed, self.city as u64, rank);
        let c = &HOME_CITIES[self.city];
        (shop, self.shop_ctx(w, shop, (c.lat, c.lon)))
    }

    /// A card's day: payments at the owner's active hours (none in the air), and on statement
    /// day the bill paid from the bank, which restores the credit (not an event of the
    /// stream).
    pub(crate) fn card_day(&mut self, w: &World, day: u32, d0: EpochMs, out: &mut Vec<Intent>) {
        let act = self.day_activity(w, day);
        for _ in 0..poisson(&mut self.rng, self.rate_out * act) {
            let t = self.habitual_time(d0);
            if self.is_quiet(t) {
                continue;
            }
            let sc = self.window_label(t);
            let (shop, ctx) = self.card_shop(w, t);
            let cents = self.card_amount(w, shop);
            let it = self.intent(
                t,
                EventType::Payment,
                Amt::Cents(cents),
                Some(shop),
                ctx,
                sc,
                React::OwnerTopUp,
            );
            out.push(it);
        }
        if (w.day0_civil + day as i64).rem_euclid(28) == (self.idx % 28) as i64 {
            let card = self.own_card;
            let target = self.credit_limit();
            let it = self.intent(
                d0 + 6 * HOUR_MS,
                EventType::TopUp,
                Amt::Need { target },
                Some(card),
                SimContext::BANK,
                super::Scenario::None,
                React::None,
            );
            out.push(it);
        }
    }

    /// One habitual money-out of a mobile-money user: mostly transfers to a few regular
    /// counterparties, then cash-out at an agent, airtime and merchant payments. Amounts are
    /// log-normal with the world's (heavy) spread.
    pub(crate) fn mm_money_out(&mut self, w: &World, t: EpochMs, ctx: SimContext) -> Intent {
        let sc = self.window_label(t);
        let u: f64 = self.rng.gen();
        if u < self.p_transfer {
            let party = if self.rng.gen_bool(self.p_new_person) {
                Party::Person(self.fresh())
            } else {
                let k = world::zipf_rank(&mut self.rng, self.fav_persons.len() as u64) as usize;
                self.fav_persons[k]
            };
            let y = lognormal(&mut self.rng, self.mu + 0.5, self.sigma).min(2e6);
            let amt = Amt::Cents(round_cents(&mut self.rng, y));
            let kind = EventType::Transfer;
            return self.intent(t, kind, amt, Some(party), ctx, sc, React::OwnerTopUp);
        }
        if u < self.p_transfer + 0.15 {
            // Cash-out: what is needed, at most what is there.
            let y = lognormal(&mut self.rng, self.mu + 0.9, self.sigma).min(2e6);
            let amt = Amt::UpTo {
                cents: round_cents(&mut self.rng, y),
                frac: 1.0,
                round: 100,
            };
            let agent = self.agent(w);
            let kind = EventType::Withdrawal;
            return self.intent(t, kind, amt, Some(agent), ctx, sc, React::None);
        }
        if u < self.p_transfer + 0.22 {
            let amt = Amt::Cents([500, 1_000, 2_000, 5_000][self.rng.gen_range(0..4)]);
            let own = self.own_phone;
            let kind = EventType::MobileRecharge;
            return self.intent(t, kind, amt, Some(own), ctx, sc, React::OwnerTopUp);
        }
        let party = if self.rng.gen_bool(self.p_new_merchant) {
            world::merchant(
                w.seed,
                self.city as u64,
                world::zipf_rank(&mut self.rng, 3000),
            )
        } else {
            let k = world::zipf_rank(&mut self.rng, self.fav_merchants.len() as u64) as usize;
            self.fav_merchants[k]
        };
        let y = lognormal(&mut self.rng, self.mu, self.sigma).min(1e6);
        let amt = Amt::Cents(price_cents(&mut self.rng, y));
        let kind = EventType::Payment;
        self.intent(t, kind, amt, Some(party), ctx, sc, React::OwnerTopUp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchants_sit_in_their_metro_area() {
        let sh = (31.2304, 121.4737);
        let mut far = 0.0f64;
        for i in 0..500 {
            let g = merchant_geo(1, i, sh, METRO_DEG);
            let d = world::distance_km(sh, (g.lat, g.lon));
            assert!(d <= 26.0, "{d}");
            far = far.max(d);
            assert_eq!(g, merchant_geo(1, i, sh, METRO_DEG));
        }
        assert!(far > 20.0, "scattered over the area: {far}");
    }
}
