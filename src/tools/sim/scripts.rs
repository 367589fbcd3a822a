//! Scripts added with world specs ([`super::WorldSpec`]): four honest behaviours (label 0 with
//! their kind), three attacks (label 1), the card world's form of card testing, and the
//! attack-style steps ([`super::AttackStyle`]) other scripts may start with.
//!
//! Like the original scripts in `scenario.rs`, each follows how the behaviour unfolds in
//! practice, not what a detector looks for. They run only in worlds that enable them, never
//! in the default world; the style steps draw from the user's second stream
//! ([`User::xrng`]) and only when the style asks for them, so the default world's events
//! stay the same byte for byte.

use rand::Rng;

use super::model::{
    lognormal, price_cents, Amt, Place, React, SimContext, User, World, DAY_MS, HOUR_MS, MIN_MS,
};
use super::world::{self, Party, NATIONAL};
use super::{Failure, Scenario};
use crate::engine::event::EventType;
use crate::engine::time::EpochMs;

fn in_window(w: &World, t: EpochMs) -> bool {
    t >= w.day0_ms && t < w.end_ms()
}

/// Whole hundreds of CNY (in cents), at least one hundred.
fn hundreds(cents: f64) -> i64 {
    ((cents / 10_000.0).round() as i64).max(1) * 10_000
}

#[allow(clippy::too_many_arguments)]
impl User {
    /// Plans one of the honest behaviours added with world specs. `false` if none of its
    /// events falls in the window (the user then does not count as having it).
    pub(crate) fn plan_added_novelty(&mut self, w: &World, k: Scenario) -> bool {
        match k {
            Scenario::OwnCardWithdrawal => self.plan_own_card_withdrawal(w),
            Scenario::Salary => self.plan_salary(w),
            Scenario::Rent => self.plan_rent(w),
            Scenario::FamilyRemittance => self.plan_family_remittance(w),
            _ => false,
        }
    }

    /// A habitual time on `day` when the owner is on the ground, if one is found.
    fn ground_time(&mut self, w: &World, day: u32) -> Option<EpochMs> {
        let t = self.habitual_time(w.day_start(day));
        (self.place(t) != Place::InAir && in_window(w, t)).then_some(t)
    }

    /// One to three withdrawals of 20-90% of the balance to the owner's own bank card, from
    /// the owner's device: moving savings out, paying a card bill, a deposit.
    fn plan_own_card_withdrawal(&mut self, w: &World) -> bool {
        const S: Scenario = Scenario::OwnCardWithdrawal;
        let mut any = false;
        for _ in 0..self.xrng.gen_range(1..4) {
            let day = self.xrng.gen_range(1..w.days.max(2));
            let Some(t) = self.ground_time(w, day) else {
                continue;
            };
            let ctx = self.owner_ctx(t);
            let frac = self.xrng.gen_range(0.2..0.9);
            let card = self.own_card;
            let amt = Amt::Share { frac, round: 100 };
            self.push(
                w,
                t,
                EventType::Withdrawal,
                amt,
                Some(card),
                ctx,
                S,
                React::None,
            );
            any = true;
        }
        any
    }

    /// A salary paid straight into the wallet every 30 days by an employer, and on payday
    /// part of it moving on: sent to family, or a purchase bigger than usual. The salary and
    /// every owner event of the 24 h after it carry the kind.
    fn plan_salary(&mut self, w: &World) -> bool {
        const S: Scenario = Scenario::Salary;
        // Employers pay many people each.
        let employer =
            Party::Merchant(world::digest(w.seed, b"employer", &[self.idx as u64 % 500]));
        let amount = hundreds(self.monthly_spend as f64 * self.xrng.gen_range(1.2..2.5));
        let mut day = self.xrng.gen_range(1..w.days.clamp(2, 29));
        let mut any = false;
        while day < w.days {
            let t = w.day_start(day) + self.xrng.gen_range(8 * HOUR_MS..12 * HOUR_MS);
            let kind = EventType::TransferIn;
            let ctx = SimContext::BANK;
            self.push(
                w,
                t,
                kind,
                Amt::Cents(amount),
                Some(employer),
                ctx,
                S,
                React::None,
            );
            self.windows.push((t, t + DAY_MS, S));
            any |= in_window(w, t);
            let t2 = t + self.xrng.gen_range(HOUR_MS..10 * HOUR_MS);
            if self.place(t2) != Place::InAir {
                let ctx = self.owner_ctx(t2);
                if self.xrng.gen_bool(0.5) {
                    let family = self.fav_persons[0];
                    let cents = hundreds(amount as f64 * self.xrng.gen_range(0.2..0.5));
                    let amt = Amt::Cents(cents);
                    let kind = EventType::Transfer;
                    self.push(w, t2, kind, amt, Some(family), ctx, S, React::OwnerTopUp);
                } else {
                    let shop = world::merchant(w.seed, NATIONAL, self.xrng.gen_range(0..300));
                    let y = self.mu.exp() * self.xrng.gen_range(3.0..8.0);
                    let amt = Amt::Cents(price_cents(&mut self.xrng, y));
                    let kind = EventType::Payment;
                    self.push(w, t2, kind, amt, Some(shop), ctx, S, React::OwnerTopUp);
                }
            }
            day += 30;
        }
        any
    }

    /// Rent: every 30 days the same sum to one landlord (a new payee the first time), with a
    /// top-up just before when the balance is short.
    fn plan_rent(&mut self, w: &World) -> bool {
        const S: Scenario = Scenario::Rent;
        let landlord = Party::Person(self.fresh());
        let amount =
            hundreds(self.monthly_spend as f64 * self.xrng.gen_range(0.4..1.2)).max(50_000);
        let mut day = self.xrng.gen_range(1..w.days.clamp(2, 29));
        let mut any = false;
        while day < w.days {
            if let Some(t) = self.ground_time(w, day) {
                let ctx = self.owner_ctx(t);
                let from = self.funding_party(w);
                let top = t - self.xrng.gen_range(5..60) * MIN_MS;
                let need = Amt::Need { target: amount };
                self.push(
                    w,
                    top,
                    EventType::TopUp,
                    need,
                    Some(from),
                    ctx,
                    S,
                    React::None,
                );
                let kind = EventType::Transfer;
                let amt = Amt::Cents(amount);
                self.push(w, t, kind, amt, Some(landlord), ctx, S, React::OwnerTopUp);
                any = true;
            }
            day += 30;
        }
        any
    }

    /// Regular transfers to a family member (weekly, fortnightly or monthly; a new payee the
    /// first time).
    fn plan_family_remittance(&mut self, w: &World) -> bool {
        const S: Scenario = Scenario::FamilyRemittance;
        let family = Party::Person(world::digest(w.seed, b"family-p", &[self.idx as u64]));
        let period: u32 = [7, 14, 30][self.xrng.gen_range(0..3)];
        let amount = hundreds(self.monthly_spend as f64 * self.xrng.gen_range(0.1..0.5));
        let mut day = self.xrng.gen_range(1..period.clamp(2, w.days.max(2)));
        let mut any = false;
        while day < w.days {
            if let Some(t) = self.ground_time(w, day) {
                let ctx = self.owner_ctx(t);
                let kind = EventType::Transfer;
                let amt = Amt::Cents(amount);
                self.push(w, t, kind, amt, Some(family), ctx, S, React::OwnerTopUp);
                any = true;
            }
            day += period;
        }
        any
    }

    // ----- attack styles -----------------------------------------------------------------

    /// The world's attack style before the money moves, from `t`: maybe a password reset,
    /// maybe a small test transfer to `payee`, each in context `ctx`. Returns when the money
    /// steps start.
    pub(crate) fn style_prelude(
        &mut self,
        w: &World,
        mut t: EpochMs,
        ctx: impl Fn(&mut User, EpochMs) -> SimContext,
        kind: EventType,
        payee: Party,
        sc: Scenario,
    ) -> EpochMs {
        let st = &w.spec.style;
        if st.credential_change > 0.0 && self.xrng.gen_bool(st.credential_change) {
            let c = ctx(self, t);
            self.push_plain(w, t, EventType::PasswordReset, c, sc);
            t += w.pace(self.xrng.gen_range(2 * MIN_MS..15 * MIN_MS));
        }
        if st.test_transfer > 0.0 && self.xrng.gen_bool(st.test_transfer) {
            let c = ctx(self, t);
            let amt = Amt::Cents(self.xrng.gen_range(1..50) * 100);
            self.push(w, t, kind, amt, Some(payee), c, sc, React::None);
            t += w.pace(self.xrng.gen_range(3 * MIN_MS..30 * MIN_MS));
        }
        t
    }

    // ----- attacks -----------------------------------------------------------------------

    /// Credentials in the attacker's hands but no new device, network or place to see (a
    /// remote-access app on the owner's phone, a hijacked USSD session, or data without
    /// those fields): nearly the whole balance transferred to a never-seen account, in one
    /// go or two. The mule's cash-out that follows is the mule's event, not the victim's.
    pub(crate) fn plan_mule_cashout(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::MuleCashout;
        let mut t = if self.xrng.gen_bool(0.5) {
            self.odd_time(d0)
        } else {
            self.habitual_time(d0)
        };
        if self.xrng.gen_bool(0.5) {
            let c = self.owner_ctx(t);
            self.push_plain(w, t, EventType::Login, c, S);
            t += w.pace(self.xrng.gen_range(MIN_MS..8 * MIN_MS));
        }
        let payee = Party::Person(self.fresh());
        t = self.style_prelude(w, t, |u, t| u.owner_ctx(t), EventType::Transfer, payee, S);
        let n = if self.xrng.gen_bool(0.7) { 1 } else { 2 };
        for i in 0..n {
            let frac = if i + 1 == n {
                self.xrng.gen_range(0.92..1.0)
            } else {
                self.xrng.gen_range(0.4..0.6)
            };
            let c = self.owner_ctx(t);
            let amt = Amt::Share {
                frac: w.share(frac),
                round: 100,
            };
            let retry = React::Retry(Amt::Share {
                frac: w.share(0.9),
                round: 100,
            });
            self.push(w, t, EventType::Transfer, amt, Some(payee), c, S, retry);
            t += w.pace(self.xrng.gen_range(2 * MIN_MS..20 * MIN_MS));
        }
    }

    /// Card testing where only payments are seen: tiny card-not-present payments at new
    /// online shops within minutes, a share declined, then one large purchase.
    pub(crate) fn plan_card_testing_online(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::CardTesting;
        let mut t = d0 + self.xrng.gen_range(0..DAY_MS);
        let decline = self.xrng.gen_range(0.15..0.5);
        for _ in 0..self.xrng.gen_range(3..13) {
            let shop = world::merchant(w.seed, NATIONAL, 10_000 + self.xrng.gen_range(0..20_000));
            let c = self.online_ctx(w, shop);
            let cents = if self.xrng.gen_bool(0.3) {
                [1, 100, 100, 200][self.xrng.gen_range(0..4)]
            } else {
                self.xrng.gen_range(1..500)
            };
            let amt = Amt::Cents(cents);
            let pay = EventType::Payment;
            if self.xrng.gen_bool(decline) {
                self.push_failed(w, t, pay, amt, Some(shop), c, S, Failure::CardDeclined);
            } else {
                self.push(w, t, pay, amt, Some(shop), c, S, React::None);
            }
            t += w.pace(self.xrng.gen_range(3_000..90_000));
        }
        t += w.pace(self.xrng.gen_range(30_000..1_800_000));
        let shop = world::merchant(w.seed, NATIONAL, 10_000 + self.xrng.gen_range(0..20_000));
        let c = self.online_ctx(w, shop);
        let big = Amt::Cents((self.xrng.gen_range(800.0f64..6000.0) * 100.0) as i64);
        self.push(w, t, EventType::Payment, big, Some(shop), c, S, React::None);
    }

    /// Stolen card details used online: a burst of card-not-present payments of a few hundred
    /// to a few thousand CNY at never-seen shops (seated anywhere), some declined.
    pub(crate) fn plan_cnp_burst(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::CnpBurst;
        let mut t = d0 + self.xrng.gen_range(0..DAY_MS);
        let pick =
            |u: &mut User| world::merchant(w.seed, NATIONAL, 10_000 + u.xrng.gen_range(0..20_000));
        let st = w.spec.style.test_transfer;
        if st > 0.0 && self.xrng.gen_bool(st) {
            let shop = pick(self);
            let c = self.online_ctx(w, shop);
            let amt = Amt::Cents(self.xrng.gen_range(100..600));
            self.push(w, t, EventType::Payment, amt, Some(shop), c, S, React::None);
            t += w.pace(self.xrng.gen_range(2 * MIN_MS..30 * MIN_MS));
        }
        let decline = self.xrng.gen_range(0.0..0.3);
        let typical = [300.0f64, 800.0, 1500.0, 3000.0][self.xrng.gen_range(0..4)];
        for _ in 0..self.xrng.gen_range(3..11) {
            let shop = pick(self);
            let c = self.online_ctx(w, shop);
            let y = lognormal(&mut self.xrng, typical.ln(), 0.5) * w.spec.style.share;
            let amt = Amt::Cents(price_cents(&mut self.xrng, y));
            let pay = EventType::Payment;
            if self.xrng.gen_bool(decline) {
                self.push_failed(w, t, pay, amt, Some(shop), c, S, Failure::CardDeclined);
            } else {
                self.push(w, t, pay, amt, Some(shop), c, S, React::None);
            }
            t += w.pace(self.xrng.gen_range(MIN_MS..20 * MIN_MS));
        }
    }

    /// A cloned card used in shops of a far city (500 km or more, or abroad) over a few hours,
    /// while the owner goes on paying at home: electronics, jewellery, fuel.
    pub(crate) fn plan_cloned_card(&mut self, w: &World, d0: EpochMs) {
        const S: Scenario = Scenario::ClonedCard;
        let city = self.far_city(0.3, 500.0);
        let mut t = d0 + self.xrng.gen_range(9..21) * HOUR_MS + self.xrng.gen_range(0..HOUR_MS);
        let typical = [400.0f64, 1500.0, 3000.0][self.xrng.gen_range(0..3)];
        for _ in 0..self.xrng.gen_range(2..9) {
            let rank = self.xrng.gen_range(0..3000u64);
            let shop = Party::Merchant(world::digest(w.seed, city.name.as_bytes(), &[rank]));
            let c = self.shop_ctx(w, shop, (city.lat, city.lon));
            let y = lognormal(&mut self.xrng, typical.ln(), 0.6) * w.spec.style.share;
            let amt = Amt::Cents(price_cents(&mut self.xrng, y));
            self.push(w, t, EventType::Payment, amt, Some(shop), c, S, React::None);
            t += w.pace(self.xrng.gen_range(10 * MIN_MS..90 * MIN_MS));
        }
    }
}
