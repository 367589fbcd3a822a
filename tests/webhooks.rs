//! Signed webhooks end to end (issue 14), on rdkafka's `MockCluster` with a receiver on
//! 127.0.0.1: every alert a subscription matches is POSTed with a Standard Webhooks signature
//! that verifies, after retries when the endpoint fails at first; an endpoint that stays down
//! sends the alert to the undelivered topic; and a SIGKILL mid-delivery loses no webhook.

mod kafka_common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rdkafka::mocking::MockCluster;
use sha2::Sha256;

use kafka_common::*;
use walletguard::service::channels::{Subscription, WebhookConfig};
use walletguard::service::config::Config;
use walletguard::tools::sim::SimParams;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    ts: String,
    signature: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Got>>,
    /// Requests still to answer 500.
    fail_first: AtomicI64,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicI64,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let delay = r.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    r.got.lock().unwrap().push(Got {
        id: h("webhook-id"),
        ts: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body: body.to_vec(),
    });
    if r.fail_first.fetch_sub(1, Ordering::SeqCst) > 0 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Starts a receiver on 127.0.0.1; returns its URL.
fn receiver(rt: &tokio::runtime::Runtime, r: Arc<Receiver>) -> String {
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(r);
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/hook")
    })
}

/// Verifies a Standard Webhooks signature header against `secret` (raw text key).
fn verifies(g: &Got, secret: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}.", g.id, g.ts).as_bytes());
    mac.update(&g.body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    g.signature.split(' ').any(|s| s == want)
}

fn webhook(url: &str, secret_env: &str, max_attempts: u32) -> WebhookConfig {
    WebhookConfig {
        url: url.to_owned(),
        secret_env: secret_env.to_owned(),
        timeout_ms: 2_000,
        max_attempts,
        backoff_ms: 20,
        max_in_flight: 4,
    }
}

fn subscription(name: &str, min_severity: &str, hook: WebhookConfig) -> Subscription {
    Subscription {
        name: name.to_owned(),
        topic: uniq(&format!("sub-{name}")),
        min_severity: min_severity.to_owned(),
        actions: vec![],
        reason_codes: vec![],
        webhook: Some(hook),
    }
}

fn world() -> Vec<Msg> {
    sim_events(&SimParams {
        users: 120,
        days: 20,
        seed: 5,
        attack_rate: 0.15,
        ..Default::default()
    })
}

/// The alert ids on `topic` (read to its end).
fn ids_on(brokers: &str, topic: &str) -> Vec<String> {
    let mut r = Reader::new(brokers, topic, OUT_PARTS, false);
    r.drain();
    r.recs
        .iter()
        .filter_map(|x| x.json()["alert_id"].as_str().map(str::to_owned))
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn webhooks_are_signed_retried_and_dead_lettered() {
    init_logging();
    std::env::set_var("WG_TEST_HOOK_SECRET_A", "s3cret-a");
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let rt = runtime();
    let recv = Arc::new(Receiver::default());
    recv.fail_first.store(3, Ordering::SeqCst);
    let url = receiver(&rt, recv.clone());
    let mut names = Names::new("hooks");
    let mut cfg: Config = config(&brokers, &mut names, "a");
    // A port nobody listens on: connection refused at every attempt.
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    cfg.subscriptions = vec![
        subscription("high", "low", webhook(&url, "WG_TEST_HOOK_SECRET_A", 6)),
        subscription("down", "high", webhook(&dead, "WG_TEST_HOOK_SECRET_A", 2)),
    ];
    cfg.validate().expect("valid");
    create_topics(&mock, &cfg, 2);
    let (high_topic, down_topic) = (
        cfg.subscriptions[0].topic.clone(),
        cfg.subscriptions[1].topic.clone(),
    );
    let undelivered_topic = cfg.kafka.undelivered_topic.clone();

    let msgs = world();
    let svc = Service::start(&rt, cfg);
    produce_all(&brokers, &names.input, &msgs);
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    assert!(
        decisions.wait_for(|r| distinct_events(r) >= msgs.len()),
        "not all decided"
    );
    let want_high: HashSet<String> = ids_on(&brokers, &high_topic).into_iter().collect();
    let want_down: HashSet<String> = ids_on(&brokers, &down_topic).into_iter().collect();
    assert!(
        want_high.len() >= 5,
        "test premise: high alerts ({})",
        want_high.len()
    );
    assert!(!want_down.is_empty(), "test premise: critical alerts");

    let delivered = || -> HashSet<String> {
        let got = recv.got.lock().unwrap();
        // The first three requests were answered 500: they are retries, not deliveries.
        got.iter().skip(3).map(|g| g.id.clone()).collect()
    };
    wait_until("every high alert delivered", || {
        want_high.is_subset(&delivered())
    });
    let mut undelivered = Reader::new(&brokers, &undelivered_topic, OUT_PARTS, false);
    assert!(
        undelivered.wait_for(|r| {
            let ids: HashSet<String> = r
                .iter()
                .filter_map(|x| x.json()["alert_id"].as_str().map(str::to_owned))
                .collect();
            want_down.is_subset(&ids)
        }),
        "not every alert of the dead endpoint reached the undelivered topic"
    );
    let m = svc.metrics.clone();
    svc.stop(&rt).expect("stops");

    let got = recv.got.lock().unwrap().clone();
    for g in &got {
        assert!(verifies(g, "s3cret-a"), "signature does not verify: {g:?}");
        let body: serde_json::Value = serde_json::from_slice(&g.body).expect("JSON body");
        assert_eq!(
            body["alert_id"],
            g.id.as_str(),
            "webhook-id is the alert_id"
        );
        let ts: i64 = g.ts.parse().expect("timestamp");
        assert!(
            (ts - walletguard::engine::time::now_ms() / 1000).abs() < 600,
            "send time: {ts}"
        );
    }
    // Nothing but the subscription's alerts.
    let ids: HashSet<String> = got.iter().map(|g| g.id.clone()).collect();
    assert!(ids.is_subset(&want_high));
    let label = |name: &str, r: &str| m.webhook_deliveries.with_label_values(&[name, r]).get();
    assert!(m.webhook_retries.with_label_values(&["high"]).get() >= 3);
    assert!(label("high", "delivered") >= want_high.len() as u64);
    assert!(label("down", "undelivered") >= want_down.len() as u64);
    assert_eq!(label("down", "delivered"), 0);
    assert!(m.webhook_retries.with_label_values(&["down"]).get() >= want_down.len() as u64);
    let rec = undelivered.recs[0].json();
    assert_eq!(rec["subscription"], "down");
    assert_eq!(rec["attempts"], 2);
    assert!(
        rec["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{rec}"
    );
    assert!(rec["alert"]["alert_id"].is_string(), "{rec}");
    drop(rt);
    drop(mock);
}

#[test]
fn a_sigkill_mid_delivery_loses_no_webhook() {
    init_logging();
    std::env::set_var("WG_TEST_HOOK_SECRET_B", "s3cret-b");
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let rt = runtime();
    let recv = Arc::new(Receiver::default());
    // Slow enough that deliveries are still in flight when the process is killed.
    recv.delay_ms.store(150, Ordering::SeqCst);
    let url = receiver(&rt, recv.clone());
    let mut names = Names::new("hookkill");
    let mut cfg = config(&brokers, &mut names, "a");
    let mut hook = webhook(&url, "WG_TEST_HOOK_SECRET_B", 6);
    hook.max_in_flight = 2;
    cfg.subscriptions = vec![subscription("all", "low", hook)];
    cfg.validate().expect("valid");
    create_topics(&mock, &cfg, 2);
    let topic = cfg.subscriptions[0].topic.clone();

    let msgs = world();
    produce_all(&brokers, &names.input, &msgs);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = ChildService::start(dir.path(), "a", &cfg);
    let deadline = Instant::now() + WAIT;
    while recv.got.lock().unwrap().len() < 8 {
        a.assert_running();
        assert!(Instant::now() < deadline, "no deliveries:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    a.child.kill().expect("SIGKILL");
    let _ = a.child.wait();
    let before = recv.got.lock().unwrap().len();
    let want: HashSet<String> = ids_on(&brokers, &topic).into_iter().collect();
    assert!(
        want.len() > before + 5,
        "test premise: the kill came mid-delivery ({before} of {})",
        want.len()
    );
    recv.delay_ms.store(0, Ordering::SeqCst);
    let mut b = ChildService::start(dir.path(), "b", &cfg);
    wait_until("every alert delivered after the restart", || {
        b.assert_running();
        let got: HashSet<String> = recv
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|g| g.id.clone())
            .collect();
        want.is_subset(&got)
    });
    // At least once, never under another id; a redelivery carries the same id and the same
    // alert (an alert the crash made the scoring re-emit differs only in `emitted_at`).
    let got = recv.got.lock().unwrap().clone();
    let mut bodies: HashMap<String, serde_json::Value> = HashMap::new();
    for g in &got {
        assert!(want.contains(&g.id), "unknown webhook-id {}", g.id);
        assert!(verifies(g, "s3cret-b"));
        let mut v: serde_json::Value = serde_json::from_slice(&g.body).expect("JSON");
        v.as_object_mut().map(|o| o.remove("emitted_at"));
        if let Some(b) = bodies.insert(g.id.clone(), v.clone()) {
            assert_eq!(b, v, "a redelivery of {} differs", g.id);
        }
    }
    assert!(got.len() >= want.len());
    drop(b);
    drop(rt);
    drop(mock);
}
