//! `walletguard demo`: the whole service on an embedded Kafka-protocol broker, with nothing
//! installed.
//!
//! 1. starts rdkafka's `MockCluster` (3 brokers on 127.0.0.1) and creates the topics;
//! 2. prints the bootstrap address, so `kcat -b ADDR -C -t wallet.alerts` can watch;
//! 3. runs the real service, [`crate::service::run`], against it, serving `/metrics`;
//! 4. streams simulated traffic with hidden attacks into `wallet.events`: the warm-up days at
//!    full speed, then live at the chosen rate, window after window;
//! 5. reads `wallet.decisions` and `wallet.commands` back and prints step-ups and freezes as
//!    they are decided, each with the simulator's truth, and a freeze with its command;
//! 6. at the duration or Ctrl-C, stops the traffic, waits for the last decisions, stops the
//!    service in order and prints a scorecard.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};

use crate::engine::decision::Action;
use crate::engine::pipeline::CommandKind;
use crate::service::config::Config;
use crate::service::kafka::{client_config, KafkaError, Role};
use crate::service::shutdown::Shutdown;
use crate::service::{self, ServiceError};
use crate::tools::loadgen::{self, LoadOptions};
use crate::tools::sim::SimEvent;

use super::{decision_line, header_line, paint, print_scorecard, summarize, track};
use super::{track_feedback_freeze, DemoOptions, Responder, Scorecard, Users};

/// Options of the broker demo.
#[derive(Debug, Clone)]
pub struct BrokerDemoOptions {
    /// Traffic, pacing and printing.
    pub demo: DemoOptions,
    /// Partitions of the input (and changelog) topic.
    pub partitions: i32,
    /// The pipeline's config; brokers and topic creation are overridden.
    pub config: Config,
}

/// Errors of the broker demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The embedded broker or a client of it failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The service failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
    /// A task of the demo panicked.
    #[error("internal: {0}")]
    Internal(String),
}

/// A simulated event's key: (user, seq), parsed from its id `e-<user>-<seq>`.
type EventKey = (u32, u32);

/// Parses the simulator's event ids, `e-<user>-<seq>`.
fn parse_event_id(id: &str) -> Option<EventKey> {
    let rest = id.strip_prefix("e-")?;
    let (u, s) = rest.split_once('-')?;
    Some((u.parse().ok()?, s.parse().ok()?))
}

/// Partitions of the topics the demo reads back.
fn readback_partitions(input_partitions: i32) -> i32 {
    input_partitions.max(24)
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
    v.push((k.lists_topic.clone(), 3));
    // The mock keeps only the newest 5 MB of a partition and drops older records unread: the
    // topics the demo reads back get many partitions, so the warm-up's burst of decisions
    // (tens of MB within seconds) stays readable until the reader gets to it.
    for t in [&k.decisions_topic, &k.commands_topic] {
        v.push((t.clone(), readback_partitions(partitions)));
    }
    for t in [&k.alerts_topic, &k.dlq_topic] {
        v.push((t.clone(), 3));
    }
    for s in &cfg.subscriptions {
        v.push((s.topic.clone(), 3));
    }
    if cfg.subscriptions.iter().any(|s| s.webhook.is_some()) {
        v.push((k.undelivered_topic.clone(), 3));
    }
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

/// Runs the demo until the duration, the last window or `interrupt`. Prints to `out`; returns
/// the scorecard.
pub fn run(
    opts: &BrokerDemoOptions,
    interrupt: &Shutdown,
    out: &mut (dyn Write + Send),
) -> Result<Scorecard, DemoError> {
    let mock = MockCluster::new(3).map_err(KafkaError::Client)?;
    let mut cfg = opts.config.clone();
    cfg.kafka.brokers = mock.bootstrap_servers();
    cfg.kafka.create_topics = false;
    if cfg.kafka.decisions_topic.is_empty() {
        // The demo reads every decision back to keep its scorecard.
        cfg.kafka.decisions_topic = "wallet.decisions".into();
    }
    // A shadow candidate beside the live config, unless the config names one: it scores
    // every event and acts on nothing; its flips are walletguard_shadow_decisions_total.
    let shadow_file = cfg.shadow.config.is_empty().then(|| {
        std::env::temp_dir().join(format!(
            "walletguard-demo-shadow-{}.toml",
            std::process::id()
        ))
    });
    if let Some(f) = &shadow_file {
        std::fs::write(
            f,
            "# walletguard demo: a candidate that freezes at 0.80 instead of 0.88\n[decision]\nfreeze = 0.8\n",
        )?;
        cfg.shadow.config = f.display().to_string();
    }
    // A webhook receiver on loopback: high-severity alerts are POSTed to it, signed, and it
    // verifies each signature (the secret is made up per run).
    let hook_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    hook_listener.set_nonblocking(true)?;
    let hook_url = format!("http://{}/hook", hook_listener.local_addr()?);
    let hook_secret = format!(
        "demo-hook-{:016x}",
        xxhash_rust::xxh3::xxh3_64(&crate::engine::time::now_ms().to_le_bytes())
    );
    cfg.subscriptions
        .push(crate::service::channels::Subscription {
            name: "demo-webhook".into(),
            topic: "wallet.alerts.demo-webhook".into(),
            min_severity: "high".into(),
            actions: vec![],
            reason_codes: vec![],
            webhook: Some(crate::service::channels::WebhookConfig {
                url: hook_url.clone(),
                secret_env: DEMO_SECRET_VAR.into(),
                timeout_ms: 5_000,
                max_attempts: 3,
                backoff_ms: 200,
                max_in_flight: 16,
            }),
        });
    for (t, n) in demo_topics(&cfg, opts.partitions) {
        mock.create_topic(&t, n, 1).map_err(KafkaError::Client)?;
    }
    let c = opts.demo.color;
    writeln!(
        out,
        "{} embedded Kafka (3 brokers) at {}\n  watch it: kcat -b {} -C -t {}",
        paint(c, "1", "walletguard demo:"),
        cfg.kafka.brokers,
        cfg.kafka.brokers,
        cfg.kafka.alerts_topic
    )?;
    writeln!(
        out,
        "  shadow candidate: {} scored beside the live config, acting on nothing (walletguard_shadow_decisions_total)",
        if shadow_file.is_some() { "decision.freeze = 0.80" } else { cfg.shadow.config.as_str() }
    )?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let hooks = Arc::new(HookCounts::default());
    let receiver = {
        let _guard = rt.enter();
        let listener = tokio::net::TcpListener::from_std(hook_listener)?;
        let signer = crate::service::channels::webhooks::Signer::from_secrets(&hook_secret);
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive_hook))
            .with_state((hooks.clone(), signer));
        rt.spawn(async move { axum::serve(listener, app).await })
    };
    writeln!(
        out,
        "  webhooks: high-severity alerts POSTed to {hook_url}, signed (Standard Webhooks), verified on receipt"
    )?;
    let secrets = [(DEMO_SECRET_VAR.to_owned(), hook_secret)]
        .into_iter()
        .collect();
    let card = rt
        .block_on(run_async(opts, cfg, secrets, interrupt, out))
        .map(|mut card| {
            card.webhooks = Some((
                hooks.ok.load(std::sync::atomic::Ordering::Relaxed),
                hooks.bad.load(std::sync::atomic::Ordering::Relaxed),
            ));
            card
        });
    if let Ok(card) = &card {
        if let Some((ok, bad)) = card.webhooks {
            writeln!(
                out,
                "  webhooks: {ok} delivered to the loopback receiver with a valid signature, {bad} without"
            )?;
        }
    }
    receiver.abort();
    drop(mock);
    if let Some(f) = shadow_file {
        let _ = std::fs::remove_file(f);
    }
    card
}

/// The name the demo's webhook secret goes by (never read from the environment).
const DEMO_SECRET_VAR: &str = "WALLETGUARD_DEMO_WEBHOOK_SECRET";

/// What the demo's webhook receiver got.
#[derive(Default)]
struct HookCounts {
    ok: std::sync::atomic::AtomicU64,
    bad: std::sync::atomic::AtomicU64,
}

/// The demo's receiver: verifies the Standard Webhooks signature, counts, answers 204.
async fn receive_hook(
    axum::extract::State((counts, signer)): axum::extract::State<(
        Arc<HookCounts>,
        Option<crate::service::channels::webhooks::Signer>,
    )>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts: i64 = h("webhook-timestamp").parse().unwrap_or(0);
    let want = signer.map(|s| s.sign(h("webhook-id"), ts, &body));
    let valid = want.is_some_and(|w| {
        let got = h("webhook-signature");
        w.split(' ').any(|sig| got.split(' ').any(|g| g == sig))
    });
    let c = if valid { &counts.ok } else { &counts.bad };
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if valid {
        axum::http::StatusCode::NO_CONTENT
    } else {
        axum::http::StatusCode::UNAUTHORIZED
    }
}

/// A decision read back, waiting to be printed and counted.
struct Decided {
    key: EventKey,
    action: Action,
    score: f64,
    reasons: Vec<String>,
}

/// What the reader has seen, and what it holds back for causal order.
///
/// Decisions and commands arrive on two topics, so a freeze's command may be read before or
/// after its decision. A freeze decision is held until its command arrives (or a short grace
/// passes: a user frozen already gets no new command), and the user's later decisions queue
/// behind it, so every user's lines print, and are counted, in the order they were decided.
struct Reader {
    truth: Arc<Mutex<HashMap<EventKey, SimEvent>>>,
    /// Freeze commands whose decision is not read yet.
    commanded: HashSet<EventKey>,
    /// Per user: held decisions, the first one a freeze waiting for its command, and when to
    /// give up waiting.
    held: HashMap<u32, (Instant, Vec<Decided>)>,
    users: Users,
    card: Scorecard,
    decided: u64,
    live_from: i64,
    live: bool,
    /// Where the simulated users' step-up answers go: a producer and the input topic.
    answers: Option<(rdkafka::producer::BaseProducer, String)>,
    responder: Responder,
    /// Challenged events, by the id of their answer, to score the freeze a failure brings.
    challenged: HashMap<String, SimEvent>,
}

/// How long a freeze decision waits for its command before it prints without one.
const COMMAND_GRACE: Duration = Duration::from_secs(2);

impl Reader {
    fn decision(
        &mut self,
        d: Decided,
        opts: &DemoOptions,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        self.decided += 1;
        let user = d.key.0;
        if let Some((_, q)) = self.held.get_mut(&user) {
            q.push(d);
            return Ok(());
        }
        if d.action == Action::Freeze && !self.commanded.contains(&d.key) {
            self.held
                .insert(user, (Instant::now() + COMMAND_GRACE, vec![d]));
            return Ok(());
        }
        self.finish(d, opts, out)
    }

    fn command(
        &mut self,
        key: EventKey,
        opts: &DemoOptions,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let waiting = self
            .held
            .get(&key.0)
            .is_some_and(|(_, q)| q.first().is_some_and(|d| d.key == key));
        self.commanded.insert(key);
        if waiting {
            self.release(key.0, opts, out)?;
        }
        Ok(())
    }

    /// Prints and counts a user's held decisions, holding again at a later freeze that still
    /// waits for its command.
    fn release(
        &mut self,
        user: u32,
        opts: &DemoOptions,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let Some((_, q)) = self.held.remove(&user) else {
            return Ok(());
        };
        let mut rest = q.into_iter();
        if let Some(first) = rest.next() {
            self.finish(first, opts, out)?;
        }
        for d in rest {
            if let Some((_, q)) = self.held.get_mut(&user) {
                q.push(d);
            } else if d.action == Action::Freeze && !self.commanded.contains(&d.key) {
                self.held
                    .insert(user, (Instant::now() + COMMAND_GRACE, vec![d]));
            } else {
                self.finish(d, opts, out)?;
            }
        }
        Ok(())
    }

    /// Releases the users whose grace ran out (all of them with `all`).
    fn expire(
        &mut self,
        all: bool,
        opts: &DemoOptions,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let now = Instant::now();
        let due: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, (t, _))| all || *t <= now)
            .map(|(u, _)| *u)
            .collect();
        for u in due {
            // Its command is not coming: the freeze prints without one.
            self.release(u, opts, out)?;
            while all && self.held.contains_key(&u) {
                self.release(u, opts, out)?;
            }
        }
        Ok(())
    }

    /// The challenged user answers: the owner passes, a thief fails (see [`Responder`]).
    fn answer(&mut self, ev: &SimEvent) {
        let Some((producer, topic)) = &self.answers else {
            return;
        };
        self.responder.challenge(ev);
        for (challenged, line) in self.responder.drain() {
            let user = challenged.user_id();
            let rec = rdkafka::producer::BaseRecord::to(topic)
                .key(user.as_bytes())
                .payload(&line);
            // A full queue or a stopping broker loses an answer, as a user may not answer.
            let _ = producer.send(rec);
            self.challenged
                .insert(format!("su-{}", challenged.event_id()), challenged);
        }
        producer.poll(Duration::ZERO);
    }

    /// A freeze command on a step-up answer (a failure): counted for its user.
    fn answer_freeze(&mut self, answer_id: &str) {
        if let Some(ev) = self.challenged.remove(answer_id) {
            track_feedback_freeze(&mut self.users, &ev);
        }
    }

    /// Counts a decision into the scorecard and prints it if it is interesting and live.
    fn finish(
        &mut self,
        d: Decided,
        opts: &DemoOptions,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let frozen = self.commanded.remove(&d.key);
        let ev = {
            let mut t = self.truth.lock().unwrap_or_else(|p| p.into_inner());
            t.remove(&d.key)
        };
        let Some(ev) = ev else {
            return Ok(());
        };
        let cmd = frozen.then_some(CommandKind::FreezeAccount);
        self.card.events += 1;
        self.card.by_action[d.action as usize] += 1;
        track(&mut self.users, &ev, d.action, cmd);
        if d.action == Action::StepUp {
            self.answer(&ev);
        }
        let c = opts.color;
        let live = ev.ts_ms >= self.live_from;
        if live && !self.live {
            self.live = true;
            writeln!(out, "  live:     baselines warm; streaming")?;
            writeln!(out, "{}", header_line(c))?;
        }
        let show = d.action >= Action::StepUp || (opts.show_reviews && d.action == Action::Review);
        if show && live {
            let reasons: Vec<&str> = d.reasons.iter().map(|s| s.as_str()).collect();
            writeln!(
                out,
                "{}",
                decision_line(c, &ev, d.action, d.score, &reasons, frozen)
            )?;
        }
        Ok(())
    }
}

async fn run_async(
    opts: &BrokerDemoOptions,
    cfg: Config,
    secrets: std::collections::HashMap<String, String>,
    interrupt: &Shutdown,
    out: &mut (dyn Write + Send),
) -> Result<Scorecard, DemoError> {
    let demo = &opts.demo;

    // The service, exactly as `walletguard run` starts it.
    let mut options = service::Options::new()?;
    options.http_any_port = true;
    let health = options.health.clone();
    let (http_tx, http_rx) = tokio::sync::oneshot::channel();
    options.on_http = Some(http_tx);
    // A token for the live alert stream, made up per run (the demo serves on loopback).
    let token = format!(
        "demo-{:016x}",
        xxhash_rust::xxh3::xxh3_64(
            &[
                crate::engine::time::now_ms().to_le_bytes(),
                (std::process::id() as i64).to_le_bytes()
            ]
            .concat()
        )
    );
    options.stream_token = Some(token.clone());
    options.secrets = secrets;
    let metrics = options.metrics.clone();
    let stop_service = Shutdown::new();
    let service = tokio::spawn(service::run(
        cfg.clone(),
        Vec::new(),
        options,
        stop_service.clone(),
    ));
    if let Ok(Some(a)) = http_rx.await {
        writeln!(
            out,
            "  metrics:  curl -s http://{a}/metrics | grep walletguard_"
        )?;
        writeln!(
            out,
            "  alerts:   curl -sN -H 'Authorization: Bearer {token}' 'http://{a}/alerts/stream?min_severity=high'"
        )?;
    }
    writeln!(
        out,
        "  traffic:  {} users, {}-day windows, seed {}; attacks and honest novelties are hidden in it",
        demo.sim.users, demo.sim.days, demo.sim.seed
    )?;
    writeln!(out, "{}", demo.warmup_line())?;

    // The mock drops the oldest records of a partition beyond 5 MB, read or not: the warm-up's
    // burst waits until the service has its partitions and consumes.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !health.is_ready() && Instant::now() < ready_by && !interrupt.is_triggered() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Traffic: the truth of each event is kept until its decision is read.
    let truth: Arc<Mutex<HashMap<EventKey, SimEvent>>> = Arc::default();
    let stop_load = Shutdown::new();
    let mut load = {
        let truth = truth.clone();
        let stop_load = stop_load.clone();
        let mut lopts = LoadOptions::new(
            demo.sim.clone(),
            cfg.kafka.input_topics[0].clone(),
            demo.rate,
        );
        lopts.duration = demo.duration;
        lopts.continuous = demo.windows != Some(1);
        lopts.full_speed_until = Some(demo.live_from());
        let end_ts = demo.end_ts();
        let mut pcfg = client_config(&cfg.kafka, Role::Admin);
        // Compressed as a real upstream producer would: the mock's 5 MB hold more events.
        pcfg.set("compression.type", "lz4");
        Some(tokio::task::spawn_blocking(move || {
            let (producer, count) = loadgen::producer(pcfg)?;
            let stop = stop_load.clone();
            loadgen::stream(&producer, &count, &lopts, &stop_load, |ev| {
                if end_ts.is_some_and(|e| ev.ts_ms >= e) {
                    stop.trigger();
                    return;
                }
                let mut t = truth.lock().unwrap_or_else(|p| p.into_inner());
                t.insert((ev.user, ev.seq), *ev);
            })
        }))
    };

    // Reader of decisions and commands.
    let reader: BaseConsumer = client_config(&cfg.kafka, Role::Admin)
        .set("group.id", "walletguard-demo-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(KafkaError::Client)?;
    let mut tpl = TopicPartitionList::new();
    for t in [&cfg.kafka.decisions_topic, &cfg.kafka.commands_topic] {
        for p in 0..readback_partitions(opts.partitions) {
            tpl.add_partition_offset(t, p, Offset::Beginning)
                .map_err(KafkaError::Client)?;
        }
    }
    reader.assign(&tpl).map_err(KafkaError::Client)?;

    let started = Instant::now();
    let mut r = Reader {
        truth: truth.clone(),
        commanded: HashSet::new(),
        held: HashMap::new(),
        users: HashMap::new(),
        card: Scorecard::default(),
        decided: 0,
        live_from: demo.live_from(),
        live: false,
        answers: client_config(&cfg.kafka, Role::Admin)
            .create::<rdkafka::producer::BaseProducer>()
            .ok()
            .map(|p| (p, cfg.kafka.input_topics[0].clone())),
        responder: Responder::default(),
        challenged: HashMap::new(),
    };
    let mut sent: Option<u64> = None;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if interrupt.is_triggered() {
            stop_load.trigger();
        }
        if load.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(h) = load.take() {
                let summary = h.await.map_err(|e| DemoError::Internal(e.to_string()))??;
                sent = Some(summary.sent);
                drain_deadline = Some(Instant::now() + Duration::from_secs(60));
            }
        }
        if let Some(sent) = sent {
            if r.decided >= sent || drain_deadline.is_some_and(|d| Instant::now() > d) {
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
        for (topic, payload) in batch {
            let Some(payload) = payload else { continue };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                continue;
            };
            if topic == cfg.kafka.commands_topic
                && v["command"] == CommandKind::FreezeAccount.as_str()
            {
                if let Some(id) = v["event_id"].as_str().filter(|i| i.starts_with("su-")) {
                    r.answer_freeze(id);
                    continue;
                }
            }
            let Some(key) = v["event_id"].as_str().and_then(parse_event_id) else {
                continue;
            };
            if topic == cfg.kafka.commands_topic {
                if v["command"] == CommandKind::FreezeAccount.as_str() {
                    r.command(key, demo, out)?;
                }
                continue;
            }
            let action = v["action"]
                .as_str()
                .and_then(Action::parse)
                .unwrap_or(Action::Allow);
            let reasons = v["reasons"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .take(3)
                        .filter_map(|r| r["code"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let d = Decided {
                key,
                action,
                score: v["score"].as_f64().unwrap_or(0.0),
                reasons,
            };
            r.decision(d, demo, out)?;
        }
        r.expire(false, demo, out)?;
    }
    r.expire(true, demo, out)?;

    stop_service.trigger();
    service
        .await
        .map_err(|e| DemoError::Internal(e.to_string()))??;

    if let Some((p, _)) = &r.answers {
        let _ = rdkafka::producer::Producer::flush(p, Duration::from_secs(5));
    }
    let mut card = r.card;
    card.step_ups_answered = r.responder.answered;
    card.seconds = started.elapsed().as_secs_f64();
    summarize(&mut card, &r.users);
    print_scorecard(&card, demo.color, out)?;
    if let Some(sent) = sent.filter(|s| card.events < *s) {
        writeln!(
            out,
            "  ({} of {} events sent were not decided before the demo stopped)",
            sent - card.events,
            sent
        )?;
    }
    shadow_summary(&metrics, out)?;
    Ok(card)
}

/// One line on what the shadow candidate would have done differently.
fn shadow_summary(
    m: &crate::service::metrics::Metrics,
    out: &mut (dyn Write + Send),
) -> Result<(), DemoError> {
    let n = m.shadow_matrix();
    let total: u64 = n.iter().flatten().sum();
    if total == 0 {
        return Ok(());
    }
    let flipped: u64 = total - (0..4).map(|i| n[i][i]).sum::<u64>();
    let freeze = |side: usize| -> u64 {
        (0..4)
            .map(|k| if side == 0 { n[3][k] } else { n[k][3] })
            .sum()
    };
    writeln!(
        out,
        "  shadow candidate: {flipped} of {total} events decided differently; freeze decisions {} live vs {} candidate (walletguard_shadow_decisions_total)",
        freeze(0),
        freeze(1)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(user: u32, seq: u32, action: Action) -> Decided {
        Decided {
            key: (user, seq),
            action,
            score: 0.9,
            reasons: vec!["X".into()],
        }
    }

    fn reader(events: &[(u32, u32)]) -> Reader {
        let mut truth = HashMap::new();
        let sim = crate::tools::sim::Simulator::new(&crate::tools::sim::SimParams {
            users: 2,
            days: 1,
            ..Default::default()
        })
        .unwrap();
        let proto = sim.into_iter().next().unwrap();
        for &(user, seq) in events {
            let mut ev = proto;
            ev.user = user;
            ev.seq = seq;
            truth.insert((user, seq), ev);
        }
        Reader {
            truth: Arc::new(Mutex::new(truth)),
            commanded: HashSet::new(),
            held: HashMap::new(),
            users: HashMap::new(),
            card: Scorecard::default(),
            decided: 0,
            live_from: i64::MIN,
            live: false,
            answers: None,
            responder: Responder::default(),
            challenged: HashMap::new(),
        }
    }

    fn opts() -> DemoOptions {
        DemoOptions {
            sim: Default::default(),
            rate: 0,
            duration: None,
            windows: None,
            show_reviews: false,
            color: false,
        }
    }

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(out)
            .lines()
            .filter(|l| l.contains("FREEZE") || l.contains("STEP-UP"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_freeze_prints_with_its_command_whichever_arrives_first() {
        let o = opts();
        // Decision first, then command.
        let mut r = reader(&[(1, 1), (1, 2), (2, 1)]);
        let mut out = Vec::new();
        r.decision(d(1, 1, Action::Freeze), &o, &mut out).unwrap();
        r.decision(d(1, 2, Action::StepUp), &o, &mut out).unwrap();
        r.decision(d(2, 1, Action::StepUp), &o, &mut out).unwrap();
        assert_eq!(lines(&out).len(), 1, "only the other user's line so far");
        r.command((1, 1), &o, &mut out).unwrap();
        let l = lines(&out);
        assert_eq!(l.len(), 3);
        assert!(
            l[1].contains("FREEZE") && l[1].contains("freeze_account"),
            "{l:?}"
        );
        assert!(
            l[2].contains("STEP-UP"),
            "the user's later line after the freeze: {l:?}"
        );
        assert_eq!(r.card.events, 3);

        // Command first, then decision: printed at once with the command.
        let mut r = reader(&[(1, 1)]);
        let mut out = Vec::new();
        r.command((1, 1), &o, &mut out).unwrap();
        assert!(lines(&out).is_empty());
        r.decision(d(1, 1, Action::Freeze), &o, &mut out).unwrap();
        let l = lines(&out);
        assert_eq!(l.len(), 1);
        assert!(l[0].contains("freeze_account"), "{l:?}");
    }

    #[test]
    fn a_freeze_without_a_command_prints_after_the_grace() {
        let o = opts();
        let mut r = reader(&[(1, 1), (1, 2)]);
        let mut out = Vec::new();
        r.decision(d(1, 1, Action::Freeze), &o, &mut out).unwrap();
        r.decision(d(1, 2, Action::Freeze), &o, &mut out).unwrap();
        r.expire(false, &o, &mut out).unwrap();
        assert!(lines(&out).is_empty(), "still within the grace");
        r.expire(true, &o, &mut out).unwrap();
        let l = lines(&out);
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(l.iter().all(|l| !l.contains("freeze_account")));
        assert_eq!(r.card.events, 2);
        assert!(r.held.is_empty());
    }

    #[test]
    fn event_ids_parse() {
        assert_eq!(parse_event_id("e-0000012-000034"), Some((12, 34)));
        assert_eq!(parse_event_id("e-0000012-1000034"), Some((12, 1_000_034)));
        assert_eq!(parse_event_id("x-1-2"), None);
    }
}
