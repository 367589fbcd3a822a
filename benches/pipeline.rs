//! Core throughput: parse + score over a synthetic stream with 1,000,000 users, one thread.
//!
//! Run: `cargo bench --bench pipeline`. Each measured batch is 100,000 freshly formatted
//! events (formatting is not timed) against a store already warmed with every user, so the
//! figures are steady state: profile look-ups miss the CPU caches the way production does.
//! Set `WG_BENCH_USERS` to change the population.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walletguard::engine::baseline::Profile;
use walletguard::engine::event::parse_event;
use walletguard::engine::output;
use walletguard::{Config, Engine, State};

const BATCH: usize = 100_000;

/// xorshift64*: tiny, deterministic, good enough to pick users and event kinds.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Formats synthetic wallet events: per-user stable home, devices, payees, with a realistic
/// type mix and a few novelties, in increasing time.
struct Stream {
    rng: Rng,
    users: u64,
    seq: u64,
    ts: i64,
}

const KINDS: [(&str, u64); 9] = [
    ("payment", 40),
    ("login", 25),
    ("transfer", 10),
    ("top_up", 8),
    ("withdrawal", 5),
    ("mobile_recharge", 5),
    ("transfer_in", 4),
    ("login_failed", 2),
    ("password_reset", 1),
];

impl Stream {
    fn new(users: u64, seed: u64) -> Stream {
        Stream {
            rng: Rng(seed | 1),
            users,
            seq: 0,
            // 2026-01-01T00:00:00Z
            ts: 1_767_225_600_000,
        }
    }

    fn batch(&mut self, n: usize, buf: &mut String, offsets: &mut Vec<(usize, usize)>) {
        buf.clear();
        offsets.clear();
        for _ in 0..n {
            let start = buf.len();
            self.event(buf);
            offsets.push((start, buf.len()));
        }
    }

    fn event(&mut self, b: &mut String) {
        self.seq += 1;
        // About 3 events per user per simulated day.
        self.ts += (86_400_000 / (3 * self.users as i64)).max(1);
        let u = self.rng.below(self.users);
        let mut pick = self.rng.below(100);
        let kind = KINDS
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or("payment", |k| k.0);
        let novel = self.rng.below(50) == 0;
        let dev = if novel {
            self.rng.below(1000) + 10
        } else {
            u % 2
        };
        let lat = 20.0 + (u % 200) as f64 * 0.1 + self.rng.unit() * 0.05;
        let lon = 100.0 + (u % 300) as f64 * 0.1 + self.rng.unit() * 0.05;
        let _ = write!(
            b,
            r#"{{"event_id":"ev-{}","user_id":"user-{u}","ts":{},"type":"{kind}""#,
            self.seq, self.ts
        );
        let money_out = matches!(
            kind,
            "payment" | "transfer" | "withdrawal" | "mobile_recharge"
        );
        if money_out || matches!(kind, "top_up" | "transfer_in") {
            let amount = (3.5 + self.rng.unit() * 2.0).exp();
            let _ = write!(
                b,
                r#","amount":{amount:.2},"currency":"CNY","balance_after":{:.2}"#,
                2000.0 + self.rng.unit() * 5000.0
            );
        }
        if money_out {
            let cp = if novel {
                self.rng.below(100_000)
            } else {
                self.rng.below(5)
            };
            let _ = write!(b, r#","counterparty":"cp-{cp}""#);
        }
        let _ = write!(
            b,
            r#","channel":"app","device_id":"dev-{u}-{dev}","ip":"10.{}.{}.{}","geo":{{"lat":{lat:.4},"lon":{lon:.4}}}}}"#,
            u % 250,
            (u / 250) % 250,
            self.rng.below(250)
        );
        b.push('\n');
    }
}

fn users() -> u64 {
    std::env::var("WG_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Builds the engine and a state holding every user, reporting memory per profile.
fn warmed(users: u64) -> (Engine, State, Stream) {
    let engine = Engine::new(Config::default());
    let mut state = engine.new_state();
    let mut stream = Stream::new(users, 42);
    let (mut buf, mut offs) = (String::new(), Vec::new());
    let rss0 = rss_bytes().unwrap_or(0);
    let mut done = 0;
    // Three passes' worth of events: nearly every user has a profile with some history.
    while done < 3 * users as usize {
        stream.batch(BATCH, &mut buf, &mut offs);
        for (s, e) in &offs {
            let _ = engine.process_bytes(&mut state, &buf.as_bytes()[*s..*e - 1], 0);
        }
        done += BATCH;
    }
    let rss1 = rss_bytes().unwrap_or(0);
    let n = state.profiles.len().max(1);
    eprintln!(
        "warm-up: {} profiles; Profile = {} B; store = {:.1} B/profile (slab + index); RSS growth = {:.1} B/profile",
        n,
        Profile::SIZE,
        state.profiles.memory_bytes() as f64 / n as f64,
        rss1.saturating_sub(rss0) as f64 / n as f64
    );
    (engine, state, stream)
}

/// Runs `f` on `iters` freshly formatted batches, timing only `f`.
fn timed(stream: &mut Stream, iters: u64, mut f: impl FnMut(&[&[u8]])) -> Duration {
    let (mut buf, mut offs) = (String::new(), Vec::new());
    let mut t = Duration::ZERO;
    for _ in 0..iters {
        stream.batch(BATCH, &mut buf, &mut offs);
        let bytes = buf.as_bytes();
        // Each line without its newline.
        let raws: Vec<&[u8]> = offs.iter().map(|(s, e)| &bytes[*s..*e - 1]).collect();
        let start = Instant::now();
        f(&raws);
        t += start.elapsed();
    }
    t
}

fn bench(c: &mut Criterion) {
    let users = users();
    let (engine, mut state, mut stream) = warmed(users);
    let mut g = c.benchmark_group(format!("{}k_users", users / 1000));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("parse", |b| {
        b.iter_custom(|iters| {
            timed(&mut stream, iters, |raws| {
                for r in raws {
                    let _ = black_box(parse_event(r));
                }
            })
        })
    });

    g.bench_function("parse_score", |b| {
        b.iter_custom(|iters| {
            timed(&mut stream, iters, |raws| {
                for r in raws {
                    let out = engine.process_bytes(&mut state, r, 0);
                    black_box(out.map(|(_, o)| o.decision.score).ok());
                }
            })
        })
    });

    g.bench_function("parse_score_batched", |b| {
        b.iter_custom(|iters| {
            timed(&mut stream, iters, |raws| {
                let mut results = Vec::with_capacity(64);
                for chunk in raws.chunks(32) {
                    results.clear();
                    engine.process_batch(&mut state, chunk, 0, &mut results);
                    black_box(&results);
                }
            })
        })
    });

    g.bench_function("parse_score_render", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter_custom(|iters| {
            timed(&mut stream, iters, |raws| {
                for r in raws {
                    if let Ok((ev, o)) = engine.process_bytes(&mut state, r, 0) {
                        out.clear();
                        output::write_decision(&mut out, &ev, &o);
                        if o.alert() {
                            output::write_alert(&mut out, &ev, &o);
                        }
                        black_box(&out);
                    }
                }
            })
        })
    });
    g.finish();
    eprintln!("profiles after bench: {}", state.profiles.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
