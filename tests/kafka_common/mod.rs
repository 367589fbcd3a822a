//! Helpers of the Kafka integration tests: unique names, configs, topics on a `MockCluster`,
//! a test producer, a group-less reader of output topics, an in-process service handle, a
//! child-process service, and the pure engine's expected outputs for comparison.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use walletguard::engine::pipeline::Engine;
use walletguard::service::config::Config;
use walletguard::service::http::Health;
use walletguard::service::kafka::RunSummary;
use walletguard::service::metrics::Metrics;
use walletguard::service::shutdown::Shutdown;
use walletguard::service::{self, ServiceError};
use walletguard::tools::loadgen::{self, Counting, DeliveryCount};
use walletguard::tools::sim::{SimParams, Simulator};

/// The fixed processing clock of the pure engine (decisions do not depend on it).
pub const NOW_MS: i64 = 1_780_272_000_000;

/// Generous deadline for anything the tests wait on.
pub const WAIT: Duration = Duration::from_secs(90);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or earlier run against the same cluster) uses.
pub fn uniq(tag: &str) -> String {
    format!(
        "wgt-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Logs of the service (warnings by default, `RUST_LOG` to change) into the test output.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rdkafka::client reports the readers' partition-EOF events as errors: noise.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rdkafka::client=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The topics and group of one test.
#[derive(Debug, Clone)]
pub struct Names {
    pub input: String,
    pub alerts: String,
    pub commands: String,
    pub dlq: String,
    pub decisions: String,
    pub changelog: String,
    pub subscriptions: Vec<String>,
    pub group: String,
}

impl Names {
    pub fn new(test: &str) -> Names {
        let t = |s: &str| uniq(&format!("{test}.{s}"));
        Names {
            input: t("events"),
            alerts: t("alerts"),
            commands: t("commands"),
            dlq: t("dlq"),
            decisions: t("decisions"),
            changelog: t("profiles"),
            subscriptions: Vec::new(),
            group: t("group"),
        }
    }
}

/// Partitions of every output topic.
pub const OUT_PARTS: i32 = 3;

/// The shipped config (read as text, so `WALLETGUARD_*` in the environment changes nothing),
/// pointed at `brokers` and the topics of `names`, with quick group timing and small batches.
pub fn config(brokers: &str, names: &mut Names, instance: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/walletguard.toml");
    let text = std::fs::read_to_string(path).expect("read config/walletguard.toml");
    let mut cfg = Config::from_toml(&text).expect("shipped config is valid");
    let k = &mut cfg.kafka;
    k.brokers = brokers.to_owned();
    k.group_id = names.group.clone();
    k.instance_id = instance.to_owned();
    k.input_topics = vec![names.input.clone()];
    k.alerts_topic = names.alerts.clone();
    k.commands_topic = names.commands.clone();
    k.dlq_topic = names.dlq.clone();
    k.decisions_topic = names.decisions.clone();
    k.changelog_topic = names.changelog.clone();
    k.lists_topic = format!("{}-lists", names.changelog);
    k.undelivered_topic = format!("{}-undelivered", names.alerts);
    k.create_topics = false;
    k.max_batch = 200;
    k.commit_interval_ms = 200;
    k.restore_timeout_s = 60;
    k.shutdown_timeout_s = 30;
    k.consumer
        .insert("session.timeout.ms".into(), "6000".into());
    k.consumer
        .insert("heartbeat.interval.ms".into(), "500".into());
    cfg.http.enabled = false;
    cfg.http.listen = "127.0.0.1:0".into();
    if names.subscriptions.is_empty() {
        names.subscriptions = cfg
            .subscriptions
            .iter()
            .map(|s| uniq(&format!("sub-{}", s.name)))
            .collect();
    }
    for (s, t) in cfg.subscriptions.iter_mut().zip(&names.subscriptions) {
        s.topic = t.clone();
    }
    cfg.validate().expect("test config is valid");
    cfg
}

/// Creates every topic of `cfg` on the mock cluster: input and changelog with `partitions`,
/// outputs with [`OUT_PARTS`].
pub fn create_topics<C: rdkafka::ClientContext>(
    mock: &MockCluster<'_, C>,
    cfg: &Config,
    partitions: i32,
) {
    let k = &cfg.kafka;
    let mut topics: Vec<(String, i32)> = vec![
        (k.input_topics[0].clone(), partitions),
        (k.changelog_topic.clone(), partitions),
        (k.lists_topic.clone(), OUT_PARTS),
        (k.alerts_topic.clone(), OUT_PARTS),
        (k.commands_topic.clone(), OUT_PARTS),
        (k.dlq_topic.clone(), OUT_PARTS),
    ];
    if !k.decisions_topic.is_empty() {
        topics.push((k.decisions_topic.clone(), OUT_PARTS));
    }
    for s in &cfg.subscriptions {
        topics.push((s.topic.clone(), OUT_PARTS));
    }
    if cfg.subscriptions.iter().any(|s| s.webhook.is_some()) {
        topics.push((k.undelivered_topic.clone(), OUT_PARTS));
    }
    for (t, n) in topics {
        mock.create_topic(&t, n, 1)
            .unwrap_or_else(|e| panic!("create topic {t}: {e}"));
    }
}

// ----- input -----

/// One input message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub partition: Option<i32>,
}

impl Msg {
    /// A JSON line keyed by `user_id`.
    pub fn keyed(user: &str, payload: impl Into<Vec<u8>>) -> Msg {
        Msg {
            key: Some(user.as_bytes().to_vec()),
            payload: Some(payload.into()),
            partition: None,
        }
    }
}

/// The simulated world's events, keyed by `user_id`, in stream order.
pub fn sim_events(params: &SimParams) -> Vec<Msg> {
    Simulator::new(params)
        .expect("simulator")
        .map(|ev| {
            let mut line = Vec::new();
            ev.write_json(&mut line);
            let mut key = Vec::new();
            ev.write_user_id(&mut key);
            Msg {
                key: Some(key),
                payload: Some(line),
                partition: None,
            }
        })
        .collect()
}

/// `msgs` with feedback (contract v2) after each event the pure `engine` alerts on (scored in
/// one state, in order): a `step_up_result` (passed or failed), a `case_verdict`
/// (false positive or confirmed fraud) or an `account_unfrozen`, in turn, one second later,
/// keyed like the event. Exercises the feedback cases in the changelog and the lists topic.
pub fn with_feedback(engine: &Engine, msgs: Vec<Msg>) -> Vec<Msg> {
    let mut state = engine.new_state();
    let mut out = Vec::with_capacity(msgs.len() * 11 / 10);
    let mut n = 0usize;
    for m in msgs {
        let raw = m.payload.clone().unwrap_or_default();
        let alerted = match engine.process_bytes(&mut state, &raw, NOW_MS) {
            Ok((ev, o)) if o.alert() && !ev.kind.is_feedback() => {
                Some((ev.event_id.to_string(), ev.user_id.to_string(), ev.ts_ms))
            }
            _ => None,
        };
        out.push(m.clone());
        if let Some((id, user, ts)) = alerted {
            n += 1;
            let extra = match n % 5 {
                0 => json!({"type": "step_up_result", "result": "passed"}),
                1 => json!({"type": "step_up_result", "result": "failed"}),
                2 => json!({"type": "case_verdict", "verdict": "false_positive"}),
                3 => json!({"type": "case_verdict", "verdict": "confirmed_fraud"}),
                _ => json!({"type": "account_unfrozen"}),
            };
            let mut v = json!({"event_id": format!("fb-{id}"), "user_id": user, "ts": ts + 1000, "ref_event_id": id});
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            let line = v.to_string().into_bytes();
            // Processed here too, so that later selections see its effect.
            let _ = engine.process_bytes(&mut state, &line, NOW_MS);
            out.push(Msg {
                key: m.key.clone(),
                payload: Some(line),
                partition: m.partition,
            });
        }
    }
    out
}

/// A producer that accepts messages up to 5 MB and counts failed deliveries.
pub fn producer(brokers: &str) -> (ThreadedProducer<Counting>, Arc<DeliveryCount>) {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c.set("message.max.bytes", "5000000");
    loadgen::producer(c).expect("test producer")
}

/// Enqueues one message (waiting on a full queue).
pub fn send(p: &ThreadedProducer<Counting>, topic: &str, m: &Msg) {
    send_with_headers(p, topic, m, &[]);
}

/// Enqueues one message with `headers` (name, value; `None`: a null value).
pub fn send_with_headers(
    p: &ThreadedProducer<Counting>,
    topic: &str,
    m: &Msg,
    headers: &[(&str, Option<&[u8]>)],
) {
    let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
    if !headers.is_empty() {
        let mut h = rdkafka::message::OwnedHeaders::new_with_capacity(headers.len());
        for (key, value) in headers {
            h = h.insert(rdkafka::message::Header { key, value: *value });
        }
        rec = rec.headers(h);
    }
    if let Some(k) = &m.key {
        rec = rec.key(&k[..]);
    }
    if let Some(v) = &m.payload {
        rec = rec.payload(&v[..]);
    }
    if let Some(part) = m.partition {
        rec = rec.partition(part);
    }
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("produce to {topic}: {e}"),
        }
    }
}

/// Flushes and checks that every message so far was delivered.
pub fn flush(p: &ThreadedProducer<Counting>, count: &DeliveryCount, expect: u64) {
    p.flush(Duration::from_secs(120))
        .expect("flush test producer");
    assert_eq!(
        count.failed.load(Ordering::SeqCst),
        0,
        "test producer: deliveries failed"
    );
    assert_eq!(
        count.ok.load(Ordering::SeqCst),
        expect,
        "test producer: delivered"
    );
}

/// Produces `msgs` into `topic` and waits until all are acknowledged.
pub fn produce_all(brokers: &str, topic: &str, msgs: &[Msg]) {
    let (p, count) = producer(brokers);
    for m in msgs {
        send(&p, topic, m);
    }
    flush(&p, &count, msgs.len() as u64);
}

/// Streams `msgs` into `topic` from a thread at about `rate` messages per second.
pub fn stream(
    brokers: &str,
    topic: &str,
    msgs: Vec<Msg>,
    rate: u64,
) -> std::thread::JoinHandle<()> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let (p, count) = producer(&brokers);
        let t0 = Instant::now();
        for (i, m) in msgs.iter().enumerate() {
            if i % 20 == 0 {
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(w) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(w);
                }
            }
            send(&p, &topic, m);
        }
        flush(&p, &count, msgs.len() as u64);
    })
}

// ----- output -----

/// One record read back.
#[derive(Debug, Clone)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Rec {
    /// The value as JSON (panics on anything else: every output is JSON).
    pub fn json(&self) -> Value {
        let p = self.payload.as_deref().expect("record has a value");
        serde_json::from_slice(p).unwrap_or_else(|e| {
            panic!(
                "output is not JSON ({e}): {}",
                String::from_utf8_lossy(&p[..p.len().min(300)])
            )
        })
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The key as text.
    pub fn key_str(&self) -> Option<String> {
        self.key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }
}

/// A group-less reader of every partition of one topic from the beginning.
pub struct Reader {
    consumer: BaseConsumer,
    topic: String,
    eof: HashMap<i32, bool>,
    pub recs: Vec<Rec>,
}

impl Reader {
    pub fn new(brokers: &str, topic: &str, partitions: i32, read_committed: bool) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", uniq("reader"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // Follow the outputs closely (the crash test kills an instance mid-work).
            .set("fetch.wait.max.ms", "20")
            .set(
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign reader");
        Reader {
            consumer,
            topic: topic.to_owned(),
            eof: (0..partitions).map(|p| (p, false)).collect(),
            recs: Vec::new(),
        }
    }

    /// Reads what arrives within about `wait`; returns how many records were read.
    pub fn poll(&mut self, wait: Duration) -> usize {
        let t0 = Instant::now();
        let mut n = 0;
        loop {
            let left = wait.saturating_sub(t0.elapsed());
            match self.consumer.poll(left) {
                Some(Ok(m)) => {
                    n += 1;
                    self.eof.insert(m.partition(), false);
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| (x.key.to_owned(), x.value.map(|v| v.to_vec())))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.recs.push(Rec {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| k.to_vec()),
                        payload: m.payload().map(|p| p.to_vec()),
                        headers,
                    });
                }
                Some(Err(RdError::PartitionEOF(p))) => {
                    self.eof.insert(p, true);
                }
                Some(Err(e)) => {
                    eprintln!("reader of {}: {e}", self.topic);
                }
                None => {}
            }
            if t0.elapsed() >= wait {
                return n;
            }
        }
    }

    /// Polls until `done(records)` holds or `WAIT` passes; returns whether it held.
    pub fn wait_for(&mut self, mut done: impl FnMut(&[Rec]) -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            if done(&self.recs) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            self.poll(Duration::from_millis(200));
        }
    }

    /// Reads until every partition reached its end (call when nothing more is produced).
    pub fn drain(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let n = self.poll(Duration::from_millis(300));
            if n == 0 && self.eof.values().all(|e| *e) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "reader of {} did not reach the end",
                self.topic
            );
        }
    }

    /// Every record's JSON value, grouped by its `event_id`, in read order.
    pub fn by_event(&self) -> HashMap<String, Vec<Value>> {
        let mut m: HashMap<String, Vec<Value>> = HashMap::new();
        for r in &self.recs {
            let v = r.json();
            let id = v["event_id"].as_str().expect("event_id").to_owned();
            m.entry(id).or_default().push(v);
        }
        m
    }
}

/// Distinct `event_id`s among `recs` (which must be JSON with an `event_id`).
pub fn distinct_events(recs: &[Rec]) -> usize {
    let mut ids = std::collections::HashSet::new();
    for r in recs {
        let v = r.json();
        ids.insert(v["event_id"].as_str().unwrap_or("").to_owned());
    }
    ids.len()
}

/// Reads the offsets a group has committed on a topic (without joining the group).
pub struct OffsetsProbe {
    consumer: BaseConsumer,
    tpl: TopicPartitionList,
}

impl OffsetsProbe {
    pub fn new(brokers: &str, group: &str, topic: &str, partitions: i32) -> OffsetsProbe {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("offsets probe");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        OffsetsProbe { consumer, tpl }
    }

    /// Sum of the committed offsets (a partition without one counts 0).
    pub fn sum(&self) -> i64 {
        let got = self
            .consumer
            .committed_offsets(self.tpl.clone(), Duration::from_secs(10))
            .expect("committed offsets");
        got.elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum()
    }
}

// ----- the service -----

/// A `run` in this process: the library's [`service::run`], as the binary calls it.
pub struct Service {
    pub stop: Shutdown,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    handle: Option<tokio::task::JoinHandle<Result<RunSummary, ServiceError>>>,
}

impl Service {
    pub fn start(rt: &tokio::runtime::Runtime, cfg: Config) -> Service {
        let stop = Shutdown::new();
        let options = service::Options::new().expect("metrics");
        let (metrics, health) = (options.metrics.clone(), options.health.clone());
        let handle = rt.spawn(service::run(cfg, Vec::new(), options, stop.clone()));
        Service {
            stop,
            metrics,
            health,
            handle: Some(handle),
        }
    }

    /// Whether `run` already returned (an error, since nobody asked it to stop).
    pub fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Asks it to stop and waits for `run` to return.
    pub fn stop(mut self, rt: &tokio::runtime::Runtime) -> Result<RunSummary, ServiceError> {
        self.stop.trigger();
        let h = self.handle.take().expect("running");
        rt.block_on(async { tokio::time::timeout(WAIT, h).await })
            .expect("run did not return within the deadline after stop")
            .expect("run panicked")
    }

    /// Waits until `cond(metrics)` holds; panics if `run` ends first or on the deadline.
    pub fn wait_metrics(&self, what: &str, cond: impl Fn(&Metrics) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond(&self.metrics) {
            assert!(!self.finished(), "run ended while waiting for {what}");
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

/// A multi-thread runtime for `run`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Writes `cfg` as TOML to `path`, atomically (a watcher never sees half a file).
pub fn write_config(path: &Path, cfg: &Config) {
    write_text(path, &toml::to_string(cfg).expect("config as TOML"));
}

/// Writes `text` to `path` atomically.
pub fn write_text(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// A free port on 127.0.0.1 (free when asked; good enough for a test's child process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` on `127.0.0.1:port` (HTTP/1.0); the body, or `None` while nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// The value of the sample `series` (name with labels, as exposed) in a metrics text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `walletguard run --config <file>` in a child process; its log goes to `<file>.log`.
pub struct ChildService {
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
}

impl ChildService {
    pub fn start(dir: &Path, name: &str, cfg: &Config) -> ChildService {
        ChildService::start_with(dir, name, cfg, &[])
    }

    /// Like [`ChildService::start`], with extra `run` arguments.
    pub fn start_with(dir: &Path, name: &str, cfg: &Config, args: &[&str]) -> ChildService {
        let path = dir.join(format!("{name}.toml"));
        write_config(&path, cfg);
        let log = dir.join(format!("{name}.log"));
        let logf = std::fs::File::create(&log).expect("log file");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_walletguard"));
        cmd.arg("run").arg("--config").arg(&path).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("WALLETGUARD_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(logf);
        let child = cmd.spawn().expect("start walletguard run");
        ChildService { child, log }
    }

    /// The child's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with its log) if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("walletguard run exited with {st}:\n{}", self.log());
        }
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- the pure engine's view -----

/// What the pure core produces for some messages, processed in order with one state.
#[derive(Debug, Default)]
pub struct Expected {
    /// Decisions by event id, in processing order.
    pub decisions: HashMap<String, Vec<Value>>,
    /// Alerts by event id, without `emitted_at`.
    pub alerts: HashMap<String, Vec<Value>>,
    /// Commands by event id, without `issued_at`.
    pub commands: HashMap<String, Vec<Value>>,
    /// Valid messages.
    pub valid: usize,
    /// Invalid messages, with the error text.
    pub errors: Vec<String>,
    /// Every user's final profile, encoded as a changelog value.
    pub profiles: HashMap<String, Vec<u8>>,
    /// Every input partition's final learned population, encoded as a changelog value.
    pub populations: Vec<Vec<u8>>,
    /// List entries feedback published, as (key, value).
    pub lists: Vec<(String, Value)>,
}

/// Removes the processing-time fields of alerts and commands.
pub fn strip_times(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("emitted_at");
        o.remove("issued_at");
    }
    v
}

/// Runs `payloads` through `engine` with a fresh state.
pub fn expected<'a>(engine: &Engine, payloads: impl IntoIterator<Item = &'a [u8]>) -> Expected {
    expected_in(engine, 1, payloads.into_iter().map(|p| (0, p)))
}

/// [`expected`] of `msgs` produced into a topic of `partitions` partitions: each message is
/// scored with the state (profiles and learned population) of its partition, its explicit one
/// or the one Kafka's default key hashing gives its key, as the service does.
pub fn expected_partitioned(engine: &Engine, msgs: &[Msg], partitions: u32) -> Expected {
    expected_in(
        engine,
        partitions,
        msgs.iter().map(|m| {
            let p = match (m.partition, &m.key) {
                (Some(p), _) => p as u32,
                (None, Some(k)) => walletguard::tools::replay::kafka_partition(k, partitions),
                (None, None) => panic!("an unkeyed message without a partition lands at random"),
            };
            (p, m.payload.as_deref().unwrap_or(b""))
        }),
    )
}

fn expected_in<'a>(
    engine: &Engine,
    partitions: u32,
    payloads: impl IntoIterator<Item = (u32, &'a [u8])>,
) -> Expected {
    let mut states: Vec<_> = (0..partitions).map(|_| engine.new_state()).collect();
    let mut out = Expected::default();
    for (p, raw) in payloads {
        let state = &mut states[p as usize];
        match engine.process_bytes(state, raw, NOW_MS) {
            Ok((ev, o)) => {
                out.valid += 1;
                out.profiles.insert(ev.user_id.to_string(), Vec::new());
                let id = ev.event_id.to_string();
                let mut buf = Vec::new();
                walletguard::engine::output::write_decision(&mut buf, &ev, &o);
                let v: Value = serde_json::from_slice(&buf).expect("decision JSON");
                out.decisions.entry(id.clone()).or_default().push(v);
                if o.alert() {
                    buf.clear();
                    walletguard::engine::output::write_alert(&mut buf, &ev, &o);
                    let v: Value = serde_json::from_slice(&buf).expect("alert JSON");
                    out.alerts
                        .entry(id.clone())
                        .or_default()
                        .push(strip_times(v));
                }
                if let Some(kind) = o.command {
                    buf.clear();
                    walletguard::engine::output::write_command(
                        &mut buf,
                        &ev,
                        &o,
                        kind,
                        engine.command_message(&ev, &o, kind).as_deref(),
                    );
                    let v: Value = serde_json::from_slice(&buf).expect("command JSON");
                    out.commands.entry(id).or_default().push(strip_times(v));
                }
            }
            Err(e) => out.errors.push(e.to_string()),
        }
        for e in state.blocks.drain(..) {
            let v: Value = serde_json::from_slice(&e.to_json()).expect("list JSON");
            out.lists.push((e.key(), v));
        }
    }
    for (uid, bytes) in out.profiles.iter_mut() {
        let key = walletguard::engine::baseline::keys::user_key(uid);
        if let Some(s) = states.iter().find(|s| s.profiles.get(key).is_some()) {
            if let Some(prof) = s.profiles.get(key) {
                let case = s.cases.get(&key);
                walletguard::engine::feedback::record::encode_record(
                    prof,
                    case,
                    engine.params(),
                    bytes,
                );
            }
        }
    }
    out.populations = states
        .iter()
        .map(|s| {
            let mut b = Vec::new();
            s.population.encode(&mut b);
            b
        })
        .collect();
    out
}

/// Checks that every event with several records has identical ones (at-least-once repeats
/// must be harmless); returns how many events were repeated.
pub fn assert_repeats_identical(what: &str, got: &HashMap<String, Vec<Value>>) -> usize {
    let mut repeated = 0;
    let mut differing = Vec::new();
    for (id, vs) in got {
        if vs.len() > 1 {
            repeated += 1;
            if vs.iter().any(|v| *v != vs[0]) {
                differing.push((id.clone(), vs.clone()));
            }
        }
    }
    if !differing.is_empty() {
        differing.sort_by(|a, b| a.0.cmp(&b.0));
        let (id, vs) = &differing[0];
        panic!(
            "{} of {repeated} repeated events have differing {what}; first: {id}:\n{}",
            differing.len(),
            vs.iter()
                .map(|v| format!("  {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    repeated
}
