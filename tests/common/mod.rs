//! Story builders for the integration tests: one user's life written as wallet events, and
//! helpers that replay those events through the library and read the outputs back.
//!
//! A [`Story`] plans events in any order (each gets its `event_id` when planned) and renders
//! them in time order when asked for its lines, so a test can drop a password reset or a big
//! purchase into the middle of generated daily life. The balance is tracked in cents and every
//! money event carries a `balance_after` consistent with every flow before it.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use walletguard::engine::pipeline::Engine;
use walletguard::service::config::Config;
use walletguard::tools::replay::{self, Sinks, Summary};

// ----- time -----

/// A calendar date (year, month, day).
pub type Date = (i64, u32, u32);

/// Minutes east of UTC of Shanghai (CST, no daylight saving).
pub const CST: i32 = 8 * 60;
/// Minutes east of UTC of London in summer time (BST, from 2026-03-29).
pub const BST: i32 = 60;
/// Minutes east of UTC of Lagos (WAT).
pub const WAT: i32 = 60;

/// One minute in ms.
pub const MIN: i64 = 60_000;
/// One hour in ms.
pub const HOUR: i64 = 60 * MIN;

/// The fixed processing clock of the tests (2026-06-01T00:00:00Z).
pub const NOW_MS: i64 = 1_780_272_000_000;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil((y, m, d): Date) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(z: i64) -> Date {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `date` plus `n` days.
pub fn add_days(date: Date, n: i64) -> Date {
    civil_from_days(days_from_civil(date) + n)
}

/// Day of the week, Monday = 0.
pub fn weekday(date: Date) -> u32 {
    // 1970-01-01 was a Thursday.
    (days_from_civil(date) + 3).rem_euclid(7) as u32
}

/// Epoch ms of a local wall-clock time in a zone `offset_min` minutes east of UTC.
pub fn local_ms(offset_min: i32, date: Date, h: u32, m: u32) -> i64 {
    (days_from_civil(date) * 86_400 + (h * 3600 + m * 60) as i64 - offset_min as i64 * 60) * 1000
}

/// RFC 3339 with an explicit offset, e.g. `2026-04-07T03:02:11+08:00` (milliseconds only when
/// non-zero), as a wallet backend in that zone would write it.
pub fn rfc3339(ms: i64, offset_min: i32) -> String {
    let local = ms + offset_min as i64 * 60_000;
    let secs = local.div_euclid(1000);
    let millis = local.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if millis != 0 {
        let _ = write!(s, ".{millis:03}");
    }
    let sign = if offset_min < 0 { '-' } else { '+' };
    let o = offset_min.abs();
    let _ = write!(s, "{sign}{:02}:{:02}", o / 60, o % 60);
    s
}

// ----- places and actors -----

/// Where an actor is: position, network (/24) and the zone its backend writes times in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    /// Latitude of the centre.
    pub lat: f64,
    /// Longitude of the centre.
    pub lon: f64,
    /// First three octets of the IPv4 network.
    pub net: &'static str,
    /// Zone of the timestamps, minutes east of UTC.
    pub offset_min: i32,
}

/// Jing'an, Shanghai: home, on the user's own ISP network 203.0.113.0/24.
pub const SHANGHAI: Place = Place {
    lat: 31.23,
    lon: 121.47,
    net: "203.0.113",
    offset_min: CST,
};
/// Pudong airport (about 35 km from home), on the phone's usual network.
pub const PVG_AIRPORT: Place = Place {
    lat: 31.15,
    lon: 121.80,
    net: "203.0.113",
    offset_min: CST,
};
/// Central London, on a hotel network.
pub const LONDON: Place = Place {
    lat: 51.51,
    lon: -0.13,
    net: "81.2.69",
    offset_min: BST,
};
/// Lagos, on a Nigerian mobile network.
pub const LAGOS: Place = Place {
    lat: 6.45,
    lon: 3.39,
    net: "102.89.34",
    offset_min: WAT,
};

/// Who acts: a device at a place.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// `device_id` of the events.
    pub device: String,
    /// Where.
    pub place: Place,
}

impl Actor {
    /// `device` at `place`.
    pub fn new(device: &str, place: Place) -> Actor {
        Actor {
            device: device.to_owned(),
            place,
        }
    }
}

// ----- randomness -----

/// A small deterministic generator (xorshift64*), so stories are the same on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (0 is mapped to a fixed non-zero seed).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An amount in cents, uniform between `lo` and `hi` CNY.
    pub fn cents(&mut self, lo: f64, hi: f64) -> i64 {
        self.range((lo * 100.0) as i64, (hi * 100.0) as i64)
    }

    /// Uniform in ±`r`.
    pub fn jitter(&mut self, r: f64) -> f64 {
        (self.unit() * 2.0 - 1.0) * r
    }
}

// ----- the story -----

/// How much a planned money event moves, resolved when the story is rendered in time order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// A fixed amount, in cents.
    Cents(i64),
    /// This share of the balance at that moment (rounded to the cent).
    BalanceShare(f64),
}

#[derive(Debug, Clone)]
struct Planned {
    ms: i64,
    order: u64,
    id: String,
    kind: &'static str,
    amount: Option<Amount>,
    counterparty: Option<String>,
    device: String,
    ip: String,
    lat: f64,
    lon: f64,
    offset_min: i32,
    epoch_ts: bool,
}

/// The user's favourite shops, with the range of what they usually spend there (CNY).
pub const COFFEE: (&str, f64, f64) = ("m-luckin-coffee-jingan", 20.0, 35.0);
/// Weekday lunch.
pub const CANTEEN: (&str, f64, f64) = ("m-canteen-88", 20.0, 60.0);
/// Convenience store.
pub const FAMILYMART: (&str, f64, f64) = ("m-familymart-jingan", 20.0, 120.0);
/// Groceries.
pub const HEMA: (&str, f64, f64) = ("m-hema-fresh-jingan", 60.0, 300.0);
/// The family payee of the weekly transfer.
pub const FAMILY_PAYEE: &str = "p-mum";
/// The weekly amount sent to the family, CNY.
pub const FAMILY_AMOUNT: f64 = 500.0;
/// Monthly salary, CNY, paid on the 3rd.
pub const SALARY: f64 = 12_000.0;

/// Places the user tries for the first time, one a week.
const NEW_SHOPS: [&str; 8] = [
    "m-jiajia-tangbao",
    "m-uniqlo-nanjing-xilu",
    "m-wanda-cinema",
    "m-zhongshuge-books",
    "m-laobaixing-pharmacy",
    "m-din-tai-fung-xintiandi",
    "m-muji-jingan",
    "m-blue-frog-bar",
];

/// London places, with what a visitor spends there (CNY).
const LONDON_TUBE: (&str, f64, f64) = ("m-tfl-contactless", 20.0, 45.0);
const LONDON_LUNCH: (&str, f64, f64) = ("m-pret-a-manger-strand", 60.0, 120.0);
const LONDON_DINNERS: [&str; 6] = [
    "m-dishoom-covent-garden",
    "m-flat-iron-soho",
    "m-wagamama-leicester-sq",
    "m-the-ivy-market-grill",
    "m-burger-and-lobster",
    "m-hawksmoor-seven-dials",
];

/// One user's event history. See the module docs.
#[derive(Debug, Clone)]
pub struct Story {
    /// The account.
    pub user: String,
    /// Who acts for the events planned next.
    pub actor: Actor,
    rng: Rng,
    seq: u64,
    pending: Vec<Planned>,
    lines: Vec<String>,
    balance_cents: i64,
    new_shop: usize,
    dinner: usize,
    payments: Vec<i64>,
}

impl Story {
    /// A story for `user` whose wallet holds `opening_balance` CNY, acting from `actor`.
    pub fn new(user: &str, opening_balance: f64, actor: Actor, seed: u64) -> Story {
        Story {
            user: user.to_owned(),
            actor,
            rng: Rng::new(seed),
            seq: 0,
            pending: Vec::new(),
            lines: Vec::new(),
            balance_cents: (opening_balance * 100.0).round() as i64,
            new_shop: 0,
            dinner: 0,
            payments: Vec::new(),
        }
    }

    /// Plans one event from the current actor and returns its `event_id`.
    pub fn plan(
        &mut self,
        ms: i64,
        kind: &'static str,
        amount: Option<Amount>,
        counterparty: Option<&str>,
    ) -> String {
        self.seq += 1;
        let id = format!("ev-{}-{:05}", self.user, self.seq);
        let p = self.actor.place;
        let octet = self.rng.range(2, 250);
        let lat = round_to(p.lat + self.rng.jitter(0.008), 4);
        let lon = round_to(p.lon + self.rng.jitter(0.008), 4);
        if let (Some(Amount::Cents(c)), "payment") = (amount, kind) {
            self.payments.push(c);
        }
        self.pending.push(Planned {
            ms,
            order: self.seq,
            id: id.clone(),
            kind,
            amount,
            counterparty: counterparty.map(str::to_owned),
            device: self.actor.device.clone(),
            ip: format!("{}.{octet}", p.net),
            lat,
            lon,
            offset_min: p.offset_min,
            // Some backends send epoch milliseconds; the contract accepts both.
            epoch_ts: self.seq % 5 == 0,
        });
        id
    }

    /// A successful login.
    pub fn login(&mut self, ms: i64) -> String {
        self.plan(ms, "login", None, None)
    }

    /// A payment of `cny` at `shop`.
    pub fn pay(&mut self, ms: i64, cny: f64, shop: &str) -> String {
        let c = (cny * 100.0).round() as i64;
        self.plan(ms, "payment", Some(Amount::Cents(c)), Some(shop))
    }

    /// A transfer to `payee`.
    pub fn transfer(&mut self, ms: i64, amount: Amount, payee: &str) -> String {
        self.plan(ms, "transfer", Some(amount), Some(payee))
    }

    /// Money in.
    pub fn top_up(&mut self, ms: i64, cny: f64, source: &str) -> String {
        let c = (cny * 100.0).round() as i64;
        self.plan(ms, "top_up", Some(Amount::Cents(c)), Some(source))
    }

    /// A security event without money: `password_reset`, `device_bind`, ….
    pub fn security(&mut self, ms: i64, kind: &'static str) -> String {
        self.plan(ms, kind, None, None)
    }

    /// Mean payment planned so far, CNY.
    pub fn mean_payment(&self) -> f64 {
        let n = self.payments.len().max(1) as f64;
        self.payments.iter().sum::<i64>() as f64 / n / 100.0
    }

    /// A time on `date` in the actor's zone, uniform between two wall-clock times.
    fn between(&mut self, date: Date, from: (u32, u32), to: (u32, u32)) -> i64 {
        let off = self.actor.place.offset_min;
        let a = local_ms(off, date, from.0, from.1);
        let b = local_ms(off, date, to.0, to.1);
        let secs = self.rng.range(0, (b - a) / 1000);
        a + secs * 1000
    }

    /// A session: a login one to four minutes before a payment at `shop`.
    fn session(&mut self, date: Date, from: (u32, u32), to: (u32, u32), shop: (&str, f64, f64)) {
        let t = self.between(date, from, to);
        let amount = self.rng.cents(shop.1, shop.2);
        let lead = self.rng.range(60, 240) * 1000;
        self.login(t - lead);
        self.plan(t, "payment", Some(Amount::Cents(amount)), Some(shop.0));
    }

    /// One ordinary day at home in Shanghai from the current actor: a morning login, one to
    /// three payments at favourite shops (a new place on Wednesdays), salary on the 3rd, and
    /// the family transfer on Sundays.
    pub fn shanghai_day(&mut self, date: Date) {
        let wd = weekday(date);
        let t = self.between(date, (7, 30), (7, 59));
        self.login(t);
        if date.2 == 3 {
            let t = self.between(date, (9, 0), (9, 30));
            self.top_up(t, SALARY, "acme-payroll");
        }
        if wd < 5 {
            if self.rng.chance(0.5) {
                self.session(date, (8, 20), (8, 50), COFFEE);
            }
            self.session(date, (11, 50), (12, 40), CANTEEN);
            if wd == 2 {
                let shop = NEW_SHOPS[self.new_shop % NEW_SHOPS.len()];
                self.new_shop += 1;
                self.session(date, (18, 45), (20, 15), (shop, 50.0, 250.0));
            } else if self.rng.chance(0.6) {
                let shop = if self.rng.chance(0.5) {
                    HEMA
                } else {
                    FAMILYMART
                };
                self.session(date, (18, 40), (20, 15), shop);
            }
        } else {
            let shop = if self.rng.chance(0.5) { HEMA } else { COFFEE };
            self.session(date, (10, 30), (12, 0), shop);
            if self.rng.chance(0.6) {
                self.session(date, (17, 40), (19, 30), FAMILYMART);
            }
            if wd == 6 {
                let t = self.between(date, (20, 30), (20, 45));
                self.login(t - 3 * MIN);
                let c = (FAMILY_AMOUNT * 100.0) as i64;
                self.transfer(t, Amount::Cents(c), FAMILY_PAYEE);
            }
        }
    }

    /// `days` ordinary Shanghai days from `from`.
    pub fn live_in_shanghai(&mut self, from: Date, days: i64) {
        for i in 0..days {
            self.shanghai_day(add_days(from, i));
        }
    }

    /// One tourist day in London from the current actor: tube, lunch, dinner somewhere new.
    pub fn london_day(&mut self, date: Date) {
        let t = self.between(date, (8, 0), (8, 30));
        self.login(t);
        self.session(date, (8, 40), (9, 10), LONDON_TUBE);
        self.session(date, (12, 30), (13, 30), LONDON_LUNCH);
        let shop = LONDON_DINNERS[self.dinner % LONDON_DINNERS.len()];
        self.dinner += 1;
        self.session(date, (19, 0), (20, 30), (shop, 150.0, 300.0));
    }

    /// Renders everything planned so far in time order and returns all lines of the story.
    pub fn lines(&mut self) -> Vec<String> {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|p| (p.ms, p.order));
        for p in pending {
            let line = self.render(&p);
            self.lines.push(line);
        }
        self.lines.clone()
    }

    /// The balance after everything rendered so far, CNY.
    pub fn balance(&self) -> f64 {
        self.balance_cents as f64 / 100.0
    }

    fn render(&mut self, p: &Planned) -> String {
        let mut o = Map::new();
        o.insert("event_id".into(), json!(p.id));
        o.insert("user_id".into(), json!(self.user));
        let ts = if p.epoch_ts {
            json!(p.ms)
        } else {
            json!(rfc3339(p.ms, p.offset_min))
        };
        o.insert("ts".into(), ts);
        o.insert("type".into(), json!(p.kind));
        if let Some(a) = p.amount {
            let cents = match a {
                Amount::Cents(c) => c,
                Amount::BalanceShare(f) => (self.balance_cents as f64 * f).round() as i64,
            };
            match p.kind {
                "payment" | "transfer" | "withdrawal" | "mobile_recharge" => {
                    assert!(
                        cents <= self.balance_cents,
                        "story bug: {} spends {cents} cents with {} left",
                        p.id,
                        self.balance_cents
                    );
                    self.balance_cents -= cents;
                }
                _ => self.balance_cents += cents,
            }
            o.insert("amount".into(), json!(cents as f64 / 100.0));
            o.insert("currency".into(), json!("CNY"));
        }
        if let Some(c) = &p.counterparty {
            o.insert("counterparty".into(), json!(c));
        }
        o.insert("channel".into(), json!("app"));
        o.insert("device_id".into(), json!(p.device));
        o.insert("ip".into(), json!(p.ip));
        o.insert("geo".into(), json!({"lat": p.lat, "lon": p.lon}));
        if p.amount.is_some() {
            o.insert(
                "balance_after".into(),
                json!(self.balance_cents as f64 / 100.0),
            );
        }
        Value::Object(o).to_string()
    }
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

// ----- replaying -----

/// Path of the shipped config.
pub fn config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/walletguard.toml")
}

/// The engine built from the shipped config (read as text, so `WALLETGUARD_*` variables in
/// the test environment cannot change the outcome).
pub fn engine() -> Engine {
    let text = std::fs::read_to_string(config_path()).expect("read config/walletguard.toml");
    Engine::new(Config::from_toml(&text).expect("shipped config is valid"))
}

/// Everything one replay wrote, read back.
#[derive(Debug)]
pub struct Run {
    /// The replay's totals.
    pub summary: Summary,
    /// The decisions file, byte for byte.
    pub decisions_raw: Vec<u8>,
    /// Decisions, one per valid line.
    pub decisions: Vec<Value>,
    /// Alerts.
    pub alerts: Vec<Value>,
    /// Commands.
    pub commands: Vec<Value>,
    /// Dead letters.
    pub dlq: Vec<Value>,
    /// List entries published.
    pub lists: Vec<Value>,
    /// Valid input events by `event_id` (the last line with that id).
    pub inputs: HashMap<String, Value>,
}

/// Parses a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read output");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// Writes `lines` (newline-terminated) to `path`.
pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("write input");
}

/// Replays the file `input` with a fresh state from [`engine`] and the fixed clock `now_ms`.
pub fn replay_file(input: &Path, now_ms: i64) -> Run {
    replay_file_with(input, now_ms, 1, Default::default())
}

/// [`replay_file`] over `partitions` emulated partitions, scoring against `lists`.
pub fn replay_file_with(
    input: &Path,
    now_ms: i64,
    partitions: usize,
    lists: std::sync::Arc<walletguard::engine::lists::Lists>,
) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let sinks = Sinks {
        decisions: Some(dir.path().join("decisions.jsonl")),
        alerts: Some(dir.path().join("alerts.jsonl")),
        commands: Some(dir.path().join("commands.jsonl")),
        dlq: Some(dir.path().join("dlq.jsonl")),
        lists: Some(dir.path().join("lists.jsonl")),
        state: None,
    };
    let engine = engine();
    let mut router = replay::Partitioned::new(&engine, partitions as u32, lists.clone());
    let summary = replay::replay(
        &engine,
        &mut router,
        input,
        &sinks,
        &mut || now_ms,
        &mut |_| {},
    )
    .expect("replay");
    let raw = std::fs::read(input).expect("read input");
    let inputs = raw
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter_map(|v| Some((v.get("event_id")?.as_str()?.to_owned(), v.clone())))
        .collect();
    let out = |p: &Option<PathBuf>| read_jsonl(p.as_ref().expect("sink"));
    Run {
        summary,
        decisions_raw: std::fs::read(sinks.decisions.as_ref().expect("sink")).expect("read"),
        decisions: out(&sinks.decisions),
        alerts: out(&sinks.alerts),
        commands: out(&sinks.commands),
        dlq: out(&sinks.dlq),
        lists: out(&sinks.lists),
        inputs,
    }
}

/// Replays `lines` (written to a temporary file) with the fixed clock [`NOW_MS`].
pub fn replay_lines(lines: &[String]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("events.jsonl");
    write_lines(&input, lines);
    replay_file(&input, NOW_MS)
}

impl Run {
    /// The (last) decision for `event_id`.
    pub fn decision(&self, event_id: &str) -> &Value {
        self.decisions
            .iter()
            .rev()
            .find(|d| d["event_id"] == event_id)
            .unwrap_or_else(|| panic!("no decision for {event_id}"))
    }

    /// The action of the decision for `event_id`.
    pub fn action(&self, event_id: &str) -> &str {
        self.decision(event_id)["action"].as_str().unwrap_or("?")
    }

    /// The reason codes of the decision for `event_id`, in order.
    pub fn codes(&self, event_id: &str) -> Vec<&str> {
        self.decision(event_id)["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["code"].as_str())
            .collect()
    }

    /// Commands of kind `command` (`freeze_account`, `require_step_up`).
    pub fn commands_of(&self, command: &str) -> Vec<&Value> {
        self.commands
            .iter()
            .filter(|c| c["command"] == command)
            .collect()
    }

    /// One readable line per decision of `ids`: the event, then score, action and reasons.
    pub fn dump(&self, ids: &[&str]) -> String {
        let mut s = String::new();
        for id in ids {
            let d = self.decision(id);
            let ev = self.inputs.get(*id).cloned().unwrap_or(Value::Null);
            let _ = writeln!(
                s,
                "{id} {} ts={} amount={} cp={} device={} ip={} balance_after={}\n    score={} action={}",
                ev["type"],
                ev["ts"],
                ev["amount"],
                ev["counterparty"],
                ev["device_id"],
                ev["ip"],
                ev["balance_after"],
                d["score"],
                d["action"],
            );
            for r in d["reasons"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "      {:<30} {:<7} {}",
                    r["code"].as_str().unwrap_or("?"),
                    r["score"],
                    r["detail"].as_str().unwrap_or("?")
                );
            }
        }
        s
    }

    /// [`Run::dump`] of every decision whose action is not `allow`.
    pub fn dump_alerts(&self) -> String {
        let ids: Vec<&str> = self
            .decisions
            .iter()
            .filter(|d| d["action"] != "allow")
            .filter_map(|d| d["event_id"].as_str())
            .collect();
        self.dump(&ids)
    }
}
