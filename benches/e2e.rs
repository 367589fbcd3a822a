//! End-to-end benchmark of `walletguard run` over Kafka (figures for the notes; not a test).
//!
//! Two measurements, on the embedded `MockCluster` or, with `WG_E2E_BROKERS=host:port`, on a
//! real broker such as tansu:
//! - **throughput**: `WG_E2E_EVENTS` simulated events (default 1,000,000) are loaded into the
//!   input topic first; then the service starts and the time to score them all is measured.
//! - **latency**: events are streamed at a steady `WG_E2E_RATE` per second (default 20,000)
//!   for `WG_E2E_SECONDS` (default 20) while the service runs; p50/p99 come from
//!   `walletguard_processing_latency_seconds` (receipt to every output acknowledged, or the
//!   transaction committed).
//!
//! `WG_E2E_COMMIT_MS` sets `kafka.commit_interval_ms` (exactly-once latency is about half of
//! it plus the commit); `WG_E2E_PRODUCER=linger.ms=1,...` overrides producer settings,
//! `WG_E2E_CONSUMER=...` consumer settings.
//!
//! `WG_E2E_DECISIONS=1` writes a decision per event to a decisions topic, so that every
//! event's latency includes a produce acknowledged by the broker (the strict measurement).
//! `WG_E2E_QUEUE` and `WG_E2E_MAX_BATCH` set `kafka.queue_batches` and `kafka.max_batch`.
//! `WG_E2E_FLUSH_MS` sets `kafka.changelog_flush_ms` (0 = changelog after every batch).
//!
//! `WG_E2E_MOCK_BROKERS` (default 3) sets the embedded cluster's size.
//!
//! `WG_E2E_DELIVERY=exactly_once` measures the transactional mode (MockCluster only; tansu has
//! no transactions). `WG_E2E_PARTITIONS` (default 4) sets the input partitions.
//!
//! `WG_E2E_WEBHOOK=1` adds a subscription of every alert (`min_severity = "low"`) with a signed
//! webhook to a receiver on 127.0.0.1 that answers 200 (`WG_E2E_WEBHOOK_IN_FLIGHT`, default
//! 16, sets `max_in_flight`; `WG_E2E_WEBHOOK_DELAY_MS` makes the receiver slow). The throughput
//! phase then also reports the webhooks delivered and their rate, measured from the first
//! delivery to the last, so scoring throughput with and without the subscription compare.
//! `WG_E2E_PHASES=throughput` (or `latency`) runs one phase only. `WG_E2E_SHADOW=1` scores a
//! shadow candidate (`decision.freeze = 0.8`) beside the live config; the throughput phase
//! prints the profiles held live and by the shadow, and the process's RSS.
//!
//! Run: `cargo bench --bench e2e`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use walletguard::service;
use walletguard::service::channels::{Subscription, WebhookConfig};
use walletguard::service::config::Config;
use walletguard::service::kafka::Delivery;
use walletguard::service::kafka::{client_config, Role};
use walletguard::service::metrics::{quantile_of, Metrics};
use walletguard::service::shutdown::Shutdown;
use walletguard::tools::loadgen;
use walletguard::tools::sim::SimParams;

mod common;
use common::{assert_all_kept, env, Brokers};

fn processed(m: &Metrics) -> u64 {
    let mut n = 0;
    for fam in m.registry.gather() {
        if fam.name() == "walletguard_events_total"
            || fam.name() == "walletguard_invalid_events_total"
        {
            for mm in fam.get_metric() {
                n += mm.get_counter().get_value() as u64;
            }
        }
    }
    n
}

/// The process's resident memory, MiB (Linux; 0 elsewhere).
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Alert copies routed to the bench subscription, and those its webhook delivered.
fn webhook_counts(m: &Metrics) -> (u64, u64) {
    (
        m.subscription_alerts.with_label_values(&["bench"]).get(),
        m.webhook_deliveries
            .with_label_values(&["bench", "delivered"])
            .get(),
    )
}

/// A receiver on 127.0.0.1 that counts the requests it answers 200, after `delay_ms`; returns
/// its URL.
fn receiver(rt: &tokio::runtime::Runtime, count: Arc<AtomicU64>, delay_ms: u64) -> String {
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = l.local_addr().expect("receiver address");
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |_body: axum::body::Bytes| {
                let count = count.clone();
                async move {
                    if delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/hook")
    })
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Criterion-style filters are passed by `cargo bench`; ignore them.
    let events: u64 = env("WG_E2E_EVENTS", 1_000_000);
    let rate: u64 = env("WG_E2E_RATE", 20_000);
    let seconds: u64 = env("WG_E2E_SECONDS", 20);
    let partitions: i32 = env("WG_E2E_PARTITIONS", 4);
    let delivery = match std::env::var("WG_E2E_DELIVERY").as_deref() {
        Ok("exactly_once") => Delivery::ExactlyOnce,
        _ => Delivery::AtLeastOnce,
    };
    let brokers = Brokers::open(env("WG_E2E_MOCK_BROKERS", 3));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let webhook = env("WG_E2E_WEBHOOK", 0u8) == 1;
    let received = Arc::new(AtomicU64::new(0));
    let hook_url =
        webhook.then(|| receiver(&rt, received.clone(), env("WG_E2E_WEBHOOK_DELAY_MS", 0u64)));
    let phases = std::env::var("WG_E2E_PHASES").unwrap_or_default();
    for (phase, load_first) in [("throughput", true), ("latency", false)] {
        if !phases.is_empty() && !phases.split(',').any(|p| p == phase) {
            continue;
        }
        let tag = format!("{}-{}", phase, std::process::id());
        let mut cfg = Config::default();
        cfg.kafka.brokers = brokers.addr.clone();
        cfg.kafka.delivery = delivery;
        cfg.kafka.group_id = format!("bench-{tag}");
        cfg.kafka.instance_id = tag.clone();
        cfg.kafka.input_topics = vec![format!("events-{tag}")];
        cfg.kafka.changelog_topic = format!("profiles-{tag}");
        cfg.kafka.alerts_topic = format!("alerts-{tag}");
        cfg.kafka.commands_topic = format!("commands-{tag}");
        cfg.kafka.dlq_topic = format!("dlq-{tag}");
        // Each phase has its own topics: the mock cluster refuses to create one twice.
        cfg.kafka.lists_topic = format!("lists-{tag}");
        cfg.kafka.partitions = partitions;
        cfg.subscriptions.clear();
        if let Some(url) = &hook_url {
            cfg.kafka.undelivered_topic = format!("undelivered-{tag}");
            cfg.subscriptions.push(Subscription {
                name: "bench".into(),
                topic: format!("sub-bench-{tag}"),
                min_severity: "low".into(),
                actions: vec![],
                reason_codes: vec![],
                webhook: Some(WebhookConfig {
                    url: url.clone(),
                    secret_env: "WG_E2E_HOOK_SECRET".into(),
                    timeout_ms: 5_000,
                    max_attempts: 6,
                    backoff_ms: 100,
                    max_in_flight: env("WG_E2E_WEBHOOK_IN_FLIGHT", 16),
                }),
            });
        }
        if env("WG_E2E_SHADOW", 0u8) == 1 {
            let f = std::env::temp_dir().join(format!("wg-e2e-shadow-{tag}.toml"));
            std::fs::write(&f, "[decision]\nfreeze = 0.8\n").expect("candidate file");
            cfg.shadow.config = f.display().to_string();
        }
        cfg.http.enabled = false;
        cfg.kafka.commit_interval_ms = env("WG_E2E_COMMIT_MS", cfg.kafka.commit_interval_ms);
        cfg.kafka.queue_batches = env("WG_E2E_QUEUE", cfg.kafka.queue_batches);
        cfg.kafka.max_batch = env("WG_E2E_MAX_BATCH", cfg.kafka.max_batch);
        cfg.kafka.changelog_flush_ms = env("WG_E2E_FLUSH_MS", cfg.kafka.changelog_flush_ms);
        // With a decisions topic every event has an output, so its latency includes a broker
        // acknowledgement; without, an allowed event's latency ends when it is scored.
        if env("WG_E2E_DECISIONS", 0u8) == 1 {
            cfg.kafka.decisions_topic = format!("decisions-{tag}");
        }
        // `WG_E2E_PRODUCER=key=value,key=value`: producer settings to compare (linger.ms...).
        for (var, map) in [
            ("WG_E2E_PRODUCER", &mut cfg.kafka.producer),
            ("WG_E2E_CONSUMER", &mut cfg.kafka.consumer),
        ] {
            if let Ok(kv) = std::env::var(var) {
                for pair in kv.split(',').filter(|p| !p.is_empty()) {
                    if let Some((k, v)) = pair.split_once('=') {
                        map.insert(k.into(), v.into());
                    }
                }
            }
        }
        brokers.create_topics(&rt, &mut cfg);
        let sim = SimParams {
            users: 100_000,
            days: 60,
            seed: 9,
            ..SimParams::default()
        };
        let stop_load = Shutdown::new();
        let load = |n: Option<u64>, rate: u64, dur: Option<Duration>| {
            let mut pc = client_config(&cfg.kafka, Role::Admin);
            // Compressed like a real upstream producer; it also lets MockCluster, which keeps
            // only the newest 5 MiB of each partition, hold more events.
            pc.set("compression.type", "lz4");
            let (p, c) = loadgen::producer(pc).expect("producer");
            let mut o =
                loadgen::LoadOptions::new(sim.clone(), cfg.kafka.input_topics[0].clone(), rate);
            o.duration = dur;
            o.max_events = n;
            loadgen::stream(&p, &c, &o, &stop_load, |_| {}).expect("load")
        };
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let stop = Shutdown::new();
        // The service as the binary runs it (HTTP is off in the bench config).
        let run = |cfg: Config, metrics: Arc<Metrics>, stop: Shutdown| {
            let mut options = service::Options::new().expect("metrics");
            options.metrics = metrics;
            options
                .secrets
                .insert("WG_E2E_HOOK_SECRET".into(), "bench-secret".into());
            rt.spawn(service::run(cfg, Vec::new(), options, stop))
        };
        if load_first {
            let s = load(Some(events), 0, None);
            eprintln!(
                "loaded {} events in {:.1} s (delivered {}, failed {})",
                s.sent, s.seconds, s.delivered, s.failed
            );
            assert_all_kept(&cfg, &cfg.kafka.input_topics[0], s.delivered);
            let t0 = Instant::now();
            let h = run(cfg.clone(), metrics.clone(), stop.clone());
            let mut first: Option<Instant> = None;
            let mut first_hook: Option<Instant> = None;
            while processed(&metrics) < s.sent {
                if first.is_none() && processed(&metrics) > 0 {
                    first = Some(Instant::now());
                }
                if webhook && first_hook.is_none() && webhook_counts(&metrics).1 > 0 {
                    first_hook = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(20));
                if t0.elapsed().as_millis() % 5000 < 20 {
                    eprintln!("processed {} of {}", processed(&metrics), s.sent);
                    if std::env::var("WG_E2E_DEBUG").is_ok() {
                        for l in metrics.render().lines().filter(|l| {
                            l.contains("retries")
                                || l.contains("errors_total")
                                || l.contains("changelog_records")
                                || l.contains("batch_events_count")
                        }) {
                            eprintln!("  {l}");
                        }
                    }
                }
                if t0.elapsed() > Duration::from_secs(600) {
                    break;
                }
            }
            let end = Instant::now();
            let from = first.unwrap_or(t0);
            let n = processed(&metrics);
            println!(
                "e2e throughput {:?} partitions={partitions}: {n} events in {:.2} s after the first = {:.0} events/s (startup incl. restore and group join {:.2} s)",
                delivery,
                (end - from).as_secs_f64(),
                n as f64 / (end - from).as_secs_f64(),
                (from - t0).as_secs_f64()
            );
            let gauge = |name: &str| -> i64 {
                metrics
                    .registry
                    .gather()
                    .iter()
                    .filter(|f| f.name() == name)
                    .flat_map(|f| {
                        f.get_metric()
                            .iter()
                            .map(|m| m.get_gauge().get_value() as i64)
                    })
                    .sum()
            };
            println!(
                "profiles held: {} live, {} shadow; process RSS {} MiB",
                gauge("walletguard_profiles"),
                gauge("walletguard_shadow_profiles"),
                rss_mib()
            );
            if webhook {
                // Deliveries run beside scoring; wait for the rest, then rate them from the
                // first delivery to the last.
                let mut last = (0, 0);
                let w0 = Instant::now();
                loop {
                    let (routed, delivered) = webhook_counts(&metrics);
                    if first_hook.is_none() && delivered > 0 {
                        first_hook = Some(Instant::now());
                    }
                    if delivered >= routed && routed > 0 && (routed, delivered) == last {
                        break;
                    }
                    last = (routed, delivered);
                    if w0.elapsed() > Duration::from_secs(600) {
                        eprintln!("webhooks: gave up waiting");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let (routed, delivered) = webhook_counts(&metrics);
                let hooks_end = Instant::now();
                let hooks_from = first_hook.unwrap_or(from);
                println!(
                    "webhooks: {routed} alerts routed to the subscription, {delivered} delivered ({} requests received) in {:.2} s from the first delivery = {:.0} webhooks/s; all delivered {:.2} s after scoring ended",
                    received.load(Ordering::Relaxed),
                    (hooks_end - hooks_from).as_secs_f64(),
                    delivered as f64 / (hooks_end - hooks_from).as_secs_f64().max(1e-9),
                    (hooks_end - end).as_secs_f64()
                );
            }
            stop.trigger();
            rt.block_on(h).expect("join").expect("run");
        } else {
            let h = run(cfg.clone(), metrics.clone(), stop.clone());
            std::thread::sleep(Duration::from_secs(3));
            let s = load(None, rate, Some(Duration::from_secs(seconds)));
            let t0 = Instant::now();
            while processed(&metrics) < s.sent && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let (none, some) = (metrics.latency(false), metrics.latency(true));
            let ms = |hs: &[&prometheus::Histogram], q: f64| {
                quantile_of(hs, q).map_or(f64::NAN, |v| v * 1000.0)
            };
            println!(
                "e2e latency {:?} at {rate}/s for {seconds} s: {} events, p50 {:.1} ms, p99 {:.1} ms; with outputs ({} events) p50 {:.1} ms, p99 {:.1} ms",
                delivery,
                s.sent,
                ms(&[none, some], 0.5),
                ms(&[none, some], 0.99),
                some.get_sample_count(),
                ms(&[some], 0.5),
                ms(&[some], 0.99),
            );
            stop.trigger();
            rt.block_on(h).expect("join").expect("run");
        }
    }
}
