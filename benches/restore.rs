//! Restore benchmark (figures for the notes; not a test): how long an instance takes to read
//! `WG_RESTORE_PROFILES` profiles (default 1,000,000) back from the changelog before it scores.
//!
//! Profiles are built by the real engine from simulated traffic (`WG_RESTORE_PROFILES` users,
//! two days), encoded with the changelog codec and stamped as the service stamps them, then
//! produced to a changelog of `WG_RESTORE_PARTITIONS` partitions (default 12). The restore of
//! every partition then runs at once, one blocking reader each, as the service runs them on
//! assignment; the figure is the wall time until all are in memory.
//!
//! Brokers: `WG_E2E_BROKERS=host:port` (e.g. tansu), else an embedded `MockCluster`, which
//! keeps only the newest 5 MiB of a partition: the bench then uses enough partitions
//! (`WG_RESTORE_PARTITIONS` is raised) and checks that nothing was dropped.
//!
//! Run: `cargo bench --bench restore`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

use walletguard::engine::baseline::codec;
use walletguard::engine::pipeline::Engine;
use walletguard::service::config::Config;
use walletguard::service::kafka::{client_config, restore, stamp, Role};
use walletguard::tools::loadgen;
use walletguard::tools::sim::{SimParams, Simulator};

mod common;
use common::{assert_all_kept, env, Brokers};

fn main() {
    let want: u32 = env("WG_RESTORE_PROFILES", 1_000_000);
    // Not every simulated user is active in two days; simulate a few more.
    let users = want + want / 8;
    let mut partitions: i32 = env("WG_RESTORE_PARTITIONS", 12);
    let brokers = Brokers::open(1);
    if brokers.mock.is_some() {
        // ~300 B a record, 5 MiB kept per partition: leave a margin of two.
        partitions = partitions.max((users as i64 * 300 * 2 / (5 << 20)) as i32 + 1);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tag = format!("restore-{}", std::process::id());
    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers.addr.clone();
    cfg.kafka.group_id = format!("bench-{tag}");
    cfg.kafka.input_topics = vec![format!("events-{tag}")];
    cfg.kafka.changelog_topic = format!("profiles-{tag}");
    cfg.kafka.partitions = partitions;
    cfg.kafka.restore_timeout_s = 600;
    // Restore reads the changelog only: no subscription topics to create.
    cfg.subscriptions.clear();
    brokers.create_topics(&rt, &mut cfg);

    // Profiles from the real engine.
    let t0 = Instant::now();
    let engine = Engine::new(cfg.clone());
    let mut state = engine.new_state();
    let sim = Simulator::new(&SimParams {
        users,
        days: 2,
        seed: 3,
        ..SimParams::default()
    })
    .expect("simulator");
    let mut line = Vec::with_capacity(512);
    let mut ids: Vec<(u64, String)> = Vec::with_capacity(users as usize);
    let mut seen = std::collections::HashSet::with_capacity(users as usize);
    let mut events = 0u64;
    for ev in sim {
        line.clear();
        ev.write_json(&mut line);
        if let Ok((e, o)) = engine.process_bytes(&mut state, &line, 0) {
            if ids.len() < want as usize && seen.insert(o.user_key) {
                ids.push((o.user_key, e.user_id.to_string()));
            }
        }
        events += 1;
    }
    eprintln!(
        "built {} profiles from {events} simulated events in {:.1} s",
        ids.len(),
        t0.elapsed().as_secs_f64()
    );

    // Into the changelog, as the service writes it.
    let t1 = Instant::now();
    let mut pc = client_config(&cfg.kafka, Role::Producer);
    pc.set("compression.type", "lz4");
    pc.set("linger.ms", "20");
    let (producer, count) = loadgen::producer(pc).expect("producer");
    let mut st = Vec::new();
    stamp::encode(&[0], &mut st);
    let mut buf = Vec::with_capacity(512);
    let params = engine.params();
    let mut bytes = 0usize;
    for (i, (key, uid)) in ids.iter().enumerate() {
        let Some(p) = state.profiles.get(*key) else {
            continue;
        };
        buf.clear();
        codec::encode(p, params, &mut buf);
        bytes += buf.len();
        let part = (i % partitions as usize) as i32;
        loop {
            let rec = BaseRecord::to(&cfg.kafka.changelog_topic)
                .key(uid.as_bytes())
                .payload(&buf[..])
                .partition(part)
                .headers(OwnedHeaders::new().insert(Header {
                    key: stamp::HEADER,
                    value: Some(&st[..]),
                }));
            match producer.send(rec) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let delivered = count.ok.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "wrote {delivered} changelog records ({:.0} MB of profiles) to {partitions} partitions in {:.1} s",
        bytes as f64 / 1e6,
        t1.elapsed().as_secs_f64()
    );
    assert_all_kept(&cfg, &cfg.kafka.changelog_topic, delivered);
    drop(state);

    // The restore, every partition at once.
    let cfg = Arc::new(cfg);
    let t2 = Instant::now();
    let handles: Vec<_> = (0..partitions)
        .map(|p| {
            let cfg = cfg.clone();
            let engine = Engine::new((*cfg).clone());
            std::thread::spawn(move || {
                let mut s = engine.new_state();
                // Stamped at input offset 0 and started there: every record is a candidate.
                let r = restore::restore(&cfg.kafka, engine.params(), p, &[0], &mut s)
                    .expect("restore");
                (r.records, s.profiles.len())
            })
        })
        .collect();
    let (mut records, mut profiles) = (0u64, 0usize);
    for h in handles {
        let (r, n) = h.join().expect("restore thread");
        records += r;
        profiles += n;
    }
    let secs = t2.elapsed().as_secs_f64();
    assert_eq!(profiles, ids.len(), "every profile restored");
    println!(
        "restore: {profiles} profiles ({records} records) from {partitions} partitions in {secs:.2} s = {:.0} profiles/s",
        profiles as f64 / secs
    );
}
