//! `walletguard demo`: the whole service on an embedded Kafka-protocol broker, with nothing
//! installed.
//!
//! 1. starts rdkafka's `MockCluster` (3 brokers on 127.0.0.1) and creates the topics;
//! 2. prints the bootstrap address, so `kcat -b ADDR -C -t wallet.alerts` can watch;
//! 3. streams simulated traffic with hidden attacks into `wallet.events`;
//! 4. runs the real `run` pipeline against it, serving `/metrics`;
//! 5. reads `wallet.decisions` and `wallet.commands` back and prints step-ups, freezes and
//!    commands live, with the simulator's truth beside them;
//! 6. on Ctrl-C, `--duration` or the end of the simulation, drains and prints a scorecard.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::decision::Action;
use crate::demo::{self, DemoOptions, Scorecard, Users};
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::pipeline::{CommandKind, Engine, EngineCell};
use crate::sim::SimEvent;

use super::loadgen::{self, LoadOptions};
use super::{client_config, KafkaError, Role, RunOptions};

/// Options of the Kafka demo.
#[derive(Debug, Clone)]
pub struct KafkaDemoOptions {
    /// Traffic, pacing and printing.
    pub demo: DemoOptions,
    /// Partitions of the input (and changelog) topic.
    pub partitions: i32,
    /// The pipeline's config; brokers and topic creation are overridden.
    pub config: Config,
}

/// The simulator's truth for the events sent so far, by event id.
#[derive(Default)]
struct Truth {
    events: Vec<SimEvent>,
    index: HashMap<(u32, u32), usize>,
}

/// Parses the simulator's event ids, `e-<user>-<seq>`.
fn parse_event_id(id: &str) -> Option<(u32, u32)> {
    let rest = id.strip_prefix("e-")?;
    let (u, s) = rest.split_once('-')?;
    Some((u.parse().ok()?, s.parse().ok()?))
}

/// Topics the demo creates on the mock cluster.
fn demo_topics(cfg: &Config, partitions: i32) -> Vec<(String, i32)> {
    let k = &cfg.kafka;
    let mut v: Vec<(String, i32)> = k
        .input_topics
        .iter()
        .map(|t| (t.clone(), partitions))
        .collect();
    v.push((k.changelog_topic.clone(), partitions));
    for t in [
        &k.alerts_topic,
        &k.commands_topic,
        &k.dlq_topic,
        &k.decisions_topic,
    ] {
        v.push((t.clone(), 3));
    }
    for s in &cfg.subscriptions {
        v.push((s.topic.clone(), 3));
    }
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

/// Runs the demo until the simulation ends, `duration` passes or `interrupt` is set. Prints to
/// `out`; returns the scorecard.
pub fn run(
    opts: &KafkaDemoOptions,
    interrupt: Arc<AtomicBool>,
    out: &mut (dyn Write + Send),
) -> Result<Scorecard, KafkaError> {
    let mock = MockCluster::new(3).map_err(KafkaError::Client)?;
    let mut cfg = opts.config.clone();
    cfg.kafka.brokers = mock.bootstrap_servers();
    cfg.kafka.create_topics = false;
    if cfg.kafka.decisions_topic.is_empty() {
        // The demo reads every decision back to keep its scorecard.
        cfg.kafka.decisions_topic = "wallet.decisions".into();
    }
    for (t, n) in demo_topics(&cfg, opts.partitions) {
        mock.create_topic(&t, n, 1).map_err(KafkaError::Client)?;
    }
    let c = opts.demo.color;
    let io = |e: std::io::Error| KafkaError::Internal(format!("writing output: {e}"));
    writeln!(
        out,
        "{} embedded Kafka (3 brokers) at {}\n  watch it: kcat -b {} -C -t {}",
        demo::paint(c, "1", "walletguard demo:"),
        cfg.kafka.brokers,
        cfg.kafka.brokers,
        cfg.kafka.alerts_topic
    )
    .map_err(io)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| KafkaError::Internal(format!("runtime: {e}")))?;
    let card = rt.block_on(run_async(opts, cfg, interrupt, out));
    drop(mock);
    card
}

async fn run_async(
    opts: &KafkaDemoOptions,
    cfg: Config,
    interrupt: Arc<AtomicBool>,
    out: &mut (dyn Write + Send),
) -> Result<Scorecard, KafkaError> {
    let c = opts.demo.color;
    let io = |e: std::io::Error| KafkaError::Internal(format!("writing output: {e}"));
    let metrics = Arc::new(Metrics::new()?);
    // As `run` does, so the demo's /metrics shows every series a deployment scrapes.
    metrics.set_config_hash(&cfg.detection_hash());
    let health = Health::new();
    let http_stop = Arc::new(tokio::sync::Notify::new());
    let http_addr = if cfg.http.enabled {
        let want: std::net::SocketAddr = cfg
            .http
            .listen
            .parse()
            .map_err(|_| KafkaError::Internal("http.listen".into()))?;
        let stop = http_stop.clone();
        let served = match http::serve(want, metrics.clone(), health.clone(), async move {
            stop.notified().await
        })
        .await
        {
            Ok(a) => Some(a),
            Err(_) => {
                // The port is taken (another walletguard?): any free loopback port will do.
                let stop = http_stop.clone();
                http::serve(
                    ([127, 0, 0, 1], 0).into(),
                    metrics.clone(),
                    health.clone(),
                    async move { stop.notified().await },
                )
                .await
                .ok()
            }
        };
        served.map(|(a, _)| a)
    } else {
        None
    };
    if let Some(a) = http_addr {
        writeln!(
            out,
            "  metrics:  curl -s http://{a}/metrics | grep walletguard_"
        )
        .map_err(io)?;
    }
    writeln!(
        out,
        "  traffic:  {} users, {} days, seed {}, {} events/s; attacks and honest novelties are hidden in it",
        opts.demo.sim.users, opts.demo.sim.days, opts.demo.sim.seed, opts.demo.rate
    )
    .map_err(io)?;
    writeln!(out, "{}", demo::header_line(c)).map_err(io)?;

    let stop_pipeline = Arc::new(AtomicBool::new(false));
    let engine = Arc::new(EngineCell::new(Engine::new(cfg.clone())));
    let pipeline = tokio::spawn(super::run(RunOptions {
        config: cfg.clone(),
        engine,
        metrics: metrics.clone(),
        health: health.clone(),
        stop: stop_pipeline.clone(),
    }));

    // Traffic.
    let truth = Arc::new(Mutex::new(Truth::default()));
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = {
        let truth = truth.clone();
        let stop_load = stop_load.clone();
        let lopts = LoadOptions {
            sim: opts.demo.sim.clone(),
            topic: cfg.kafka.input_topics[0].clone(),
            rate: opts.demo.rate,
            duration: opts.demo.duration,
            max_events: None,
        };
        let pcfg = client_config(&cfg, Role::Admin);
        tokio::task::spawn_blocking(move || {
            let (producer, count) = loadgen::producer(pcfg)?;
            loadgen::stream(&producer, &count, &lopts, &stop_load, |ev| {
                let mut t = truth.lock().unwrap_or_else(|p| p.into_inner());
                let i = t.events.len();
                t.events.push(*ev);
                t.index.insert((ev.user, ev.seq), i);
            })
        })
    };

    // Reader of decisions and commands.
    let reader: BaseConsumer = client_config(&cfg, Role::Admin)
        .set("group.id", "walletguard-demo-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(KafkaError::Client)?;
    let mut tpl = TopicPartitionList::new();
    for t in [&cfg.kafka.decisions_topic, &cfg.kafka.commands_topic] {
        for p in 0..3 {
            tpl.add_partition_offset(t, p, Offset::Beginning)
                .map_err(KafkaError::Client)?;
        }
    }
    reader.assign(&tpl).map_err(KafkaError::Client)?;

    let started = Instant::now();
    let mut decided: HashMap<usize, Action> = HashMap::new();
    let mut frozen: HashSet<usize> = HashSet::new();
    let mut load_done: Option<u64> = None;
    let mut load = Some(load);
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if interrupt.load(Ordering::SeqCst) {
            stop_load.store(true, Ordering::SeqCst);
        }
        if let Some(h) = load.as_ref() {
            if h.is_finished() {
                if let Some(h) = load.take() {
                    let summary = h.await.map_err(|e| KafkaError::Internal(e.to_string()))??;
                    load_done = Some(summary.sent);
                    drain_deadline = Some(Instant::now() + Duration::from_secs(60));
                }
            }
        }
        if let Some(sent) = load_done {
            if decided.len() as u64 >= sent
                || drain_deadline.is_some_and(|d| Instant::now() > d)
                || interrupt.load(Ordering::SeqCst) && decided.len() as u64 >= sent
            {
                break;
            }
        }
        let batch = tokio::task::block_in_place(|| {
            let mut v = Vec::new();
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
                v.push((m.topic().to_owned(), m.payload().map(|p| p.to_vec())));
                while v.len() < 5000 {
                    match reader.poll(Duration::ZERO) {
                        Some(Ok(m)) => {
                            v.push((m.topic().to_owned(), m.payload().map(|p| p.to_vec())))
                        }
                        _ => break,
                    }
                }
            }
            v
        });
        let t = truth.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, payload) in batch {
            let Some(payload) = payload else { continue };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                continue;
            };
            let Some(idx) = v["event_id"]
                .as_str()
                .and_then(parse_event_id)
                .and_then(|k| t.index.get(&k).copied())
            else {
                continue;
            };
            let ev = &t.events[idx];
            if topic == cfg.kafka.commands_topic {
                if v["command"] == CommandKind::FreezeAccount.as_str() && frozen.insert(idx) {
                    let line = format!(
                        "{}  {}  {}",
                        " ".repeat(19),
                        demo::paint(c, "1;31", "→ freeze_account"),
                        v["reason"].as_str().unwrap_or("")
                    );
                    writeln!(out, "{line}").map_err(io)?;
                }
                continue;
            }
            let action = v["action"]
                .as_str()
                .and_then(Action::parse)
                .unwrap_or(Action::Allow);
            decided.insert(idx, action);
            let show =
                action >= Action::StepUp || (opts.demo.show_reviews && action == Action::Review);
            if show {
                let reasons: Vec<&str> = v["reasons"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .take(3)
                            .filter_map(|r| r["code"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                let score = v["score"].as_f64().unwrap_or(0.0);
                writeln!(
                    out,
                    "{}",
                    demo::decision_line(c, ev, action, score, &reasons, false)
                )
                .map_err(io)?;
            }
        }
    }

    stop_pipeline.store(true, Ordering::SeqCst);
    let run_result = pipeline
        .await
        .map_err(|e| KafkaError::Internal(e.to_string()))?;
    http_stop.notify_waiters();
    run_result?;

    // Scorecard: the pipeline's decisions and freezes, laid over the simulator's truth in
    // send order, exactly as the in-process demo counts them.
    let t = truth.lock().unwrap_or_else(|p| p.into_inner());
    let mut users: Users = HashMap::new();
    let mut card = Scorecard::default();
    for (i, ev) in t.events.iter().enumerate() {
        let Some(action) = decided.get(&i) else {
            continue;
        };
        card.events += 1;
        card.by_action[*action as usize] += 1;
        let cmd = frozen.contains(&i).then_some(CommandKind::FreezeAccount);
        demo::track(&mut users, ev, *action, cmd);
    }
    card.seconds = started.elapsed().as_secs_f64();
    demo::summarize(&mut card, &users);
    demo::print_scorecard(&card, c, out).map_err(io)?;
    if card.events < t.events.len() as u64 {
        writeln!(
            out,
            "  ({} of {} events sent were not decided before the demo stopped)",
            t.events.len() as u64 - card.events,
            t.events.len()
        )
        .map_err(io)?;
    }
    Ok(card)
}
