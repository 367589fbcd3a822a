//! [`WorldSpec`]: the parameters of a simulated world, so the simulator can vary the world at
//! random instead of always producing one set of habits.
//!
//! A spec says what kind of service the events come from ([`WorldKind`]), how amounts are
//! written ([`Currency`]), which optional fields exist ([`Fields`]), how active and how varied
//! the users are ([`Habits`]), which honest behaviours happen and how often ([`NoveltyRate`]),
//! which attacks are staged ([`WorldSpec::attacks`]) and how attackers go about them
//! ([`AttackStyle`]). [`WorldSpec::default`] is the simulator as it always was, byte for byte;
//! [`WorldSpec::random`] draws a spec from a seed, deterministically.

use rand::Rng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use super::world;
use super::{Scenario, SimError};
use crate::engine::event::EventType;

/// What kind of service the events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorldKind {
    /// A digital wallet: sessions with logins, payments, transfers, withdrawals, top-ups,
    /// recharges and account-security events (the simulator's original world).
    Wallet,
    /// A payment card: `payment` events only (and refunds), `geo` is the merchant's position,
    /// merchants have categories and amounts follow the category.
    Card,
    /// Mobile money: transfer-heavy (cash-in, cash-out, transfers to a few regular
    /// counterparties, payments, airtime), no device, network or position, amounts with heavy
    /// tails.
    MobileMoney,
}

impl WorldKind {
    /// Every kind.
    pub const ALL: [WorldKind; 3] = [WorldKind::Wallet, WorldKind::Card, WorldKind::MobileMoney];

    /// The name (`wallet`, `card`, `mobile_money`).
    pub fn as_str(self) -> &'static str {
        match self {
            WorldKind::Wallet => "wallet",
            WorldKind::Card => "card",
            WorldKind::MobileMoney => "mobile_money",
        }
    }

    /// The kind of a name.
    pub fn parse(s: &str) -> Option<WorldKind> {
        WorldKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether events of type `t` appear in this kind's stream. The model may still act on
    /// the others (a card's monthly settlement restores its credit), but they are not written.
    pub fn emits(self, t: EventType) -> bool {
        match self {
            WorldKind::Wallet => true,
            WorldKind::Card => matches!(t, EventType::Payment | EventType::Refund),
            WorldKind::MobileMoney => matches!(
                t,
                EventType::Payment
                    | EventType::Transfer
                    | EventType::Withdrawal
                    | EventType::MobileRecharge
                    | EventType::TopUp
                    | EventType::TransferIn
                    | EventType::Refund
                    | EventType::PasswordReset
                    | EventType::MfaChange
            ),
        }
    }

    /// The attack scenarios this kind can stage with these fields.
    pub fn attacks(self, fields: &Fields) -> Vec<Scenario> {
        use Scenario::*;
        match self {
            WorldKind::Wallet => {
                let mut v = vec![
                    AccountTakeover,
                    SimSwap,
                    StolenPhone,
                    CardTesting,
                    ImpossibleTravel,
                    SlowDrain,
                    MuleCashout,
                ];
                // Nothing would tell the far-away session from the owner's but its network or
                // position: without either it is only another takeover.
                if !fields.geo && !fields.ip {
                    v.retain(|s| *s != ImpossibleTravel);
                }
                v
            }
            WorldKind::Card => vec![CardTesting, CnpBurst, ClonedCard],
            WorldKind::MobileMoney => vec![
                AccountTakeover,
                SimSwap,
                StolenPhone,
                SlowDrain,
                MuleCashout,
            ],
        }
    }

    /// The benign novelty kinds this kind can show with these fields: new phones only where
    /// devices are written, travel only where positions are.
    pub fn novelties(self, fields: &Fields) -> Vec<Scenario> {
        use Scenario::*;
        let mut v = match self {
            WorldKind::Wallet => vec![
                Travel,
                NewPhone,
                BigPurchase,
                OwnerReset,
                FamilyRecharge,
                OwnCardWithdrawal,
                Salary,
                Rent,
                FamilyRemittance,
            ],
            WorldKind::Card => vec![Travel, BigPurchase],
            WorldKind::MobileMoney => vec![
                BigPurchase,
                OwnerReset,
                FamilyRecharge,
                OwnCardWithdrawal,
                Salary,
                Rent,
                FamilyRemittance,
            ],
        };
        if !fields.device_id {
            v.retain(|s| *s != NewPhone);
        }
        if !fields.geo {
            v.retain(|s| *s != Travel);
        }
        v
    }
}

/// How amounts are written: every model amount (in CNY) is multiplied by `scale` and written
/// in `code` with `decimals` decimals, rounded to a multiple of `step` minor units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Currency {
    /// ISO 4217 code written in `currency`.
    pub code: String,
    /// Units of this currency per CNY of the model.
    pub scale: f64,
    /// Decimals written (0 to 4).
    pub decimals: u8,
    /// Amounts and balances are multiples of this many minor units (1: any).
    pub step: u32,
}

impl Default for Currency {
    fn default() -> Self {
        Currency {
            code: "CNY".into(),
            scale: 1.0,
            decimals: 2,
            step: 1,
        }
    }
}

/// Real currencies and their rough value in CNY units, to name a drawn scale.
const CURRENCIES: &[(&str, f64)] = &[
    ("KWD", 0.042),
    ("GBP", 0.11),
    ("EUR", 0.13),
    ("USD", 0.14),
    ("AED", 0.51),
    ("MYR", 0.65),
    ("CNY", 1.0),
    ("HKD", 1.09),
    ("ZAR", 2.6),
    ("THB", 4.9),
    ("PHP", 8.0),
    ("INR", 11.7),
    ("KES", 18.0),
    ("JPY", 21.0),
    ("PKR", 39.0),
    ("HUF", 50.0),
    ("XOF", 85.0),
    ("KRW", 190.0),
    ("NGN", 210.0),
    ("TZS", 370.0),
    ("UGX", 520.0),
    ("COP", 570.0),
    ("GNF", 1200.0),
    ("UZS", 1780.0),
    ("IDR", 2200.0),
    ("LAK", 3000.0),
    ("VND", 3500.0),
    ("IRR", 5900.0),
    ("LBP", 12600.0),
];

impl Currency {
    /// The currency for `scale`: the real code nearest in value, the decimals such a currency
    /// uses (3 below 0.1, none from 100 on), and from 1000 on amounts in tens or hundreds.
    pub fn for_scale(scale: f64) -> Currency {
        let code = CURRENCIES
            .iter()
            .min_by(|a, b| {
                let da = (a.1.ln() - scale.ln()).abs();
                let db = (b.1.ln() - scale.ln()).abs();
                da.total_cmp(&db)
            })
            .map(|c| c.0)
            .unwrap_or("XXX");
        let decimals = if scale < 0.1 {
            3
        } else if scale < 100.0 {
            2
        } else {
            0
        };
        let step = if scale >= 1000.0 {
            10u32.pow((scale.log10().floor() as u32).saturating_sub(2))
        } else {
            1
        };
        Currency {
            code: code.into(),
            scale,
            decimals,
            step,
        }
    }
}

/// Which optional fields the events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// `device_id`.
    pub device_id: bool,
    /// `ip`.
    pub ip: bool,
    /// `geo` (in a card world, the merchant's position).
    pub geo: bool,
    /// `balance_after`.
    pub balance_after: bool,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            device_id: true,
            ip: true,
            geo: true,
            balance_after: true,
        }
    }
}

impl Fields {
    /// A short form: `d`, `i`, `g`, `b` for each field present, `-` for each absent.
    pub fn short(&self) -> String {
        [
            (self.device_id, 'd'),
            (self.ip, 'i'),
            (self.geo, 'g'),
            (self.balance_after, 'b'),
        ]
        .iter()
        .map(|(on, c)| if *on { *c } else { '-' })
        .collect()
    }
}

/// How active users are and how their amounts spread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Habits {
    /// Median, over users, of habitual money-outs per user per day (every other event type
    /// comes on top: logins, incoming money, recharges).
    pub activity: f64,
    /// Log-standard deviation of that rate across users (the habit dispersion).
    pub activity_dispersion: f64,
    /// Mean, over users, of the log of a user's typical payment in CNY.
    pub amount_mu: f64,
    /// Standard deviation of that log across users.
    pub amount_mu_sd: f64,
    /// Range of a user's own log-standard deviation of amounts.
    pub amount_sigma: [f64; 2],
}

impl Default for Habits {
    fn default() -> Self {
        Habits {
            activity: 1.0,
            activity_dispersion: 0.7,
            amount_mu: 3.6,
            amount_mu_sd: 0.6,
            amount_sigma: [0.5, 1.15],
        }
    }
}

/// An honest behaviour and its frequency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoveltyRate {
    /// The benign novelty kind.
    pub kind: Scenario,
    /// It hits `novelty_rate × weight` of users (capped at all of them).
    pub weight: f64,
}

/// How attackers go about the scripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackStyle {
    /// Multiplies every pause between an attacker's steps (below 1: faster).
    pub speed: f64,
    /// Multiplies every share of the balance an attacker takes (at most all of it).
    pub share: f64,
    /// Probability that a credential change (a password reset) comes before the money moves,
    /// in scripts without one of their own.
    pub credential_change: f64,
    /// Probability of a small test transfer (or payment) to the payee before the large ones,
    /// in scripts without one of their own.
    pub test_transfer: f64,
}

impl Default for AttackStyle {
    fn default() -> Self {
        AttackStyle {
            speed: 1.0,
            share: 1.0,
            credential_change: 0.0,
            test_transfer: 0.0,
        }
    }
}

/// The parameters of a simulated world. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSpec {
    /// How it was made: `default`, `random`, or the kind it was drawn for.
    pub name: String,
    /// The kind of service.
    pub kind: WorldKind,
    /// How amounts are written.
    pub currency: Currency,
    /// Which optional fields exist.
    pub fields: Fields,
    /// Activity and amounts.
    pub habits: Habits,
    /// The honest behaviours and their weights.
    pub novelties: Vec<NoveltyRate>,
    /// The attack scenarios; an attacked user gets one, drawn uniformly.
    pub attacks: Vec<Scenario>,
    /// How attackers go about them.
    pub style: AttackStyle,
}

impl Default for WorldSpec {
    /// The simulator's original world: a wallet in CNY with every field, the five original
    /// novelty kinds at `novelty_rate` each and the six original attacks.
    fn default() -> Self {
        WorldSpec {
            name: "default".into(),
            kind: WorldKind::Wallet,
            currency: Currency::default(),
            fields: Fields::default(),
            habits: Habits::default(),
            novelties: Scenario::NOVELTIES[..5]
                .iter()
                .map(|&kind| NoveltyRate { kind, weight: 1.0 })
                .collect(),
            attacks: Scenario::ATTACKS[..6].to_vec(),
            style: AttackStyle::default(),
        }
    }
}

fn log_uniform<R: Rng>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    (rng.gen_range(lo.ln()..hi.ln())).exp()
}

/// `x` rounded to `n` significant digits.
fn significant(x: f64, n: i32) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return x;
    }
    let p = 10f64.powi(n - 1 - x.log10().floor() as i32);
    (x * p).round() / p
}

impl WorldSpec {
    /// The spec a `--world` value names: `default`, `random` (any kind), `wallet`, `card` or
    /// `mobile_money` (a random spec of that kind), each drawn from `seed`; or a path ending in
    /// `.json` to a spec written by `simulate` (`<labels>.world.json`).
    pub fn named(name: &str, seed: u64) -> Result<WorldSpec, SimError> {
        match name {
            "default" => Ok(WorldSpec::default()),
            "random" => Ok(WorldSpec::random(seed, None)),
            _ if name.ends_with(".json") => {
                let bad = |msg: String| SimError::Invalid { name: "world", msg };
                let text =
                    std::fs::read(name).map_err(|e| bad(format!("cannot read {name}: {e}")))?;
                let spec: WorldSpec = serde_json::from_slice(&text)
                    .map_err(|e| bad(format!("{name} is not a world spec: {e}")))?;
                spec.validate()?;
                Ok(spec)
            }
            _ => match WorldKind::parse(name) {
                Some(kind) => Ok(WorldSpec::random(seed, Some(kind))),
                None => Err(SimError::Invalid {
                    name: "world",
                    msg: format!(
                        "{name:?} is not default, random, wallet, card, mobile_money or a .json spec"
                    ),
                }),
            },
        }
    }

    /// Draws a world from `seed` (deterministic), of `kind` or of any kind.
    ///
    /// Ranges: kind wallet 40%, card 30%, mobile money 30%; currency scale log-uniform in
    /// 0.01..10,000 (3 significant digits) with the nearest real code; each optional field
    /// present with probability 0.6 in a wallet (`balance_after` 0.75), card worlds with the
    /// merchant's `geo` only, mobile money without device, ip and geo and `balance_after`
    /// with probability 0.6; activity log-uniform per kind (wallet 0.15..8, card 0.3..6,
    /// mobile money 0.15..6 money-outs per user per day), dispersion 0.3..1.2; amounts per
    /// kind; every novelty the kind allows, each with a weight log-uniform in 0.2..3; every
    /// attack the kind allows; attack speed log-uniform 0.25..4, share 0.5..1, credential
    /// change 0..0.8, test transfer 0..0.7.
    pub fn random(seed: u64, kind: Option<WorldKind>) -> WorldSpec {
        let mut rng = Pcg64Mcg::new(
            (world::digest(seed, b"world-spec", &[]) as u128) << 64
                | world::digest(seed, b"world-spec2", &[]) as u128
                | 1,
        );
        let drawn = {
            let u: f64 = rng.gen();
            if u < 0.4 {
                WorldKind::Wallet
            } else if u < 0.7 {
                WorldKind::Card
            } else {
                WorldKind::MobileMoney
            }
        };
        let kind_fixed = kind.is_some();
        let kind = kind.unwrap_or(drawn);
        let scale = significant(log_uniform(&mut rng, 0.01, 10_000.0), 3);
        let currency = Currency::for_scale(scale);
        let fields = match kind {
            WorldKind::Wallet => Fields {
                device_id: rng.gen_bool(0.6),
                ip: rng.gen_bool(0.6),
                geo: rng.gen_bool(0.6),
                balance_after: rng.gen_bool(0.75),
            },
            WorldKind::Card => Fields {
                device_id: false,
                ip: false,
                geo: true,
                balance_after: false,
            },
            WorldKind::MobileMoney => Fields {
                device_id: false,
                ip: false,
                geo: false,
                balance_after: rng.gen_bool(0.6),
            },
        };
        let (act_lo, act_hi, mu_lo, mu_hi, sig_lo, sig_hi) = match kind {
            WorldKind::Wallet => (0.15, 8.0, 2.8, 4.4, 0.3, 0.8),
            WorldKind::Card => (0.3, 6.0, 3.0, 4.5, 0.3, 0.7),
            WorldKind::MobileMoney => (0.15, 6.0, 3.5, 5.5, 0.8, 1.4),
        };
        let s0 = rng.gen_range(sig_lo..sig_hi);
        let habits = Habits {
            activity: significant(log_uniform(&mut rng, act_lo, act_hi), 3),
            activity_dispersion: significant(rng.gen_range(0.3..1.2), 3),
            amount_mu: significant(rng.gen_range(mu_lo..mu_hi), 3),
            amount_mu_sd: significant(rng.gen_range(0.3..1.0), 3),
            amount_sigma: [
                significant(s0, 3),
                significant(s0 + rng.gen_range(0.3..1.0), 3),
            ],
        };
        let novelties = kind
            .novelties(&fields)
            .into_iter()
            .map(|k| NoveltyRate {
                kind: k,
                weight: significant(log_uniform(&mut rng, 0.2, 3.0), 3),
            })
            .collect();
        let style = AttackStyle {
            speed: significant(log_uniform(&mut rng, 0.25, 4.0), 3),
            share: significant(rng.gen_range(0.5..1.0), 3),
            credential_change: significant(rng.gen_range(0.0..0.8), 3),
            test_transfer: significant(rng.gen_range(0.0..0.7), 3),
        };
        WorldSpec {
            name: if kind_fixed {
                kind.as_str().into()
            } else {
                "random".into()
            },
            kind,
            currency,
            attacks: kind.attacks(&fields),
            fields,
            habits,
            novelties,
            style,
        }
    }

    /// The weight of novelty kind `k` (0 when the world does not have it).
    pub fn novelty_weight(&self, k: Scenario) -> f64 {
        self.novelties
            .iter()
            .find(|n| n.kind == k)
            .map(|n| n.weight)
            .unwrap_or(0.0)
    }

    /// One line: kind, currency and scale, fields, activity.
    pub fn summary(&self) -> String {
        format!(
            "{} {} ×{} fields {} activity {}/day dispersion {} speed ×{} share ×{}",
            self.kind.as_str(),
            self.currency.code,
            self.currency.scale,
            self.fields.short(),
            self.habits.activity,
            self.habits.activity_dispersion,
            self.style.speed,
            self.style.share,
        )
    }

    /// Checks ranges, naming the parameter at fault.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |msg: String| Err(SimError::Invalid { name: "world", msg });
        let c = &self.currency;
        if c.code.len() != 3 || !c.code.bytes().all(|b| b.is_ascii_uppercase()) {
            return bad(format!(
                "currency.code {:?} is not 3 capital letters",
                c.code
            ));
        }
        if !(1e-4..=1e6).contains(&c.scale) {
            return bad(format!("currency.scale {} is outside 1e-4..=1e6", c.scale));
        }
        if c.decimals > 4 {
            return bad(format!("currency.decimals {} is above 4", c.decimals));
        }
        if c.step == 0 || c.step > 1_000_000 {
            return bad(format!("currency.step {} is outside 1..=1000000", c.step));
        }
        let h = &self.habits;
        let checks = [
            ("habits.activity", h.activity, 1e-3, 100.0),
            (
                "habits.activity_dispersion",
                h.activity_dispersion,
                0.0,
                3.0,
            ),
            ("habits.amount_mu", h.amount_mu, -2.0, 12.0),
            ("habits.amount_mu_sd", h.amount_mu_sd, 0.0, 3.0),
            ("habits.amount_sigma[0]", h.amount_sigma[0], 0.01, 3.0),
            ("habits.amount_sigma[1]", h.amount_sigma[1], 0.01, 4.0),
            ("style.speed", self.style.speed, 0.01, 100.0),
            ("style.share", self.style.share, 0.01, 1.0),
            (
                "style.credential_change",
                self.style.credential_change,
                0.0,
                1.0,
            ),
            ("style.test_transfer", self.style.test_transfer, 0.0, 1.0),
        ];
        for (name, v, lo, hi) in checks {
            if !(lo..=hi).contains(&v) {
                return bad(format!("{name} {v} is outside {lo}..={hi}"));
            }
        }
        if h.amount_sigma[0] >= h.amount_sigma[1] {
            return bad("habits.amount_sigma must be an increasing range".into());
        }
        for n in &self.novelties {
            if !Scenario::NOVELTIES.contains(&n.kind) {
                return bad(format!("{} is not a benign novelty kind", n.kind.as_str()));
            }
            if !(0.0..=1000.0).contains(&n.weight) {
                return bad(format!(
                    "weight {} of {} is outside 0..=1000",
                    n.weight,
                    n.kind.as_str()
                ));
            }
        }
        for a in &self.attacks {
            if !a.is_attack() {
                return bad(format!("{} is not an attack scenario", a.as_str()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_specs_are_deterministic_valid_and_varied() {
        let mut kinds = std::collections::BTreeSet::new();
        let mut scales = Vec::new();
        for seed in 0..200 {
            let a = WorldSpec::random(seed, None);
            assert_eq!(a, WorldSpec::random(seed, None), "seed {seed}");
            a.validate().unwrap();
            kinds.insert(a.kind);
            scales.push(a.currency.scale);
            assert!(!a.attacks.is_empty());
            if a.kind != WorldKind::Wallet {
                assert!(!a.fields.device_id && !a.fields.ip);
            }
        }
        assert_eq!(kinds.len(), 3);
        assert!(scales.iter().any(|s| *s < 0.1) && scales.iter().any(|s| *s > 1000.0));
        assert_ne!(WorldSpec::random(1, None), WorldSpec::random(2, None));
        let c = WorldSpec::random(3, Some(WorldKind::Card));
        assert_eq!((c.kind, c.name.as_str()), (WorldKind::Card, "card"));
        WorldSpec::default().validate().unwrap();
    }

    #[test]
    fn specs_round_trip_through_json_and_bad_ones_are_named() {
        let s = WorldSpec::random(9, Some(WorldKind::MobileMoney));
        let j = serde_json::to_string(&s).unwrap();
        let back: WorldSpec = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
        let mut bad = s.clone();
        bad.currency.scale = 0.0;
        assert!(bad.validate().unwrap_err().to_string().contains("scale"));
        let mut bad = s;
        bad.attacks = vec![Scenario::Travel];
        assert!(bad.validate().unwrap_err().to_string().contains("travel"));
        assert!(WorldSpec::named("mars", 1).is_err());
        assert_eq!(
            WorldSpec::named("default", 5).unwrap(),
            WorldSpec::default()
        );
    }

    #[test]
    fn currencies_fit_their_scale() {
        let c = Currency::for_scale(1.0);
        assert_eq!((c.code.as_str(), c.decimals, c.step), ("CNY", 2, 1));
        let c = Currency::for_scale(3500.0);
        assert_eq!((c.code.as_str(), c.decimals, c.step), ("VND", 0, 10));
        let c = Currency::for_scale(10_000.0);
        assert_eq!(c.step, 100);
        assert_eq!(Currency::for_scale(0.02).decimals, 3);
    }
}
