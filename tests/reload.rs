//! Hot config reload of `walletguard run` (a child process on rdkafka's `MockCluster`, HTTP on
//! 127.0.0.1): SIGHUP reloads, a changed file reloads by itself, the new detection settings
//! apply to the events that follow, an invalid file is rejected and the running config kept,
//! and restart-only keys are reported, not applied.

mod kafka_common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

use kafka_common::*;
use walletguard::service::channels::Subscription;
use walletguard::tools::sim::SimParams;

/// Waits until `/metrics` satisfies `cond`; panics with the child's log otherwise.
fn wait_metrics(svc: &mut ChildService, port: u16, what: &str, cond: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(text) = http_get(port, "/metrics") {
            if cond(&text) {
                return;
            }
        }
        svc.assert_running();
        assert!(
            Instant::now() < deadline,
            "waited in vain for {what}; metrics:\n{}\nlog:\n{}",
            http_get(port, "/metrics").unwrap_or_default(),
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reloads(text: &str, result: &str) -> f64 {
    sample(
        text,
        &format!("walletguard_config_reloads_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(-1.0)
}

fn hash_is(text: &str, hash: &str) -> bool {
    sample(text, &format!("walletguard_config_info{{hash=\"{hash}\"}}")) == Some(1.0)
        && text
            .lines()
            .filter(|l| l.starts_with("walletguard_config_info{"))
            .count()
            == 1
}

#[test]
fn config_reloads_live_and_keeps_the_running_config_when_invalid() {
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("reload");
    let mut cfg = config(&brokers, &mut names, "r");
    let port = free_port();
    cfg.http.enabled = true;
    cfg.http.listen = format!("127.0.0.1:{port}");
    create_topics(&mock, &cfg, 2);
    let every_alert = uniq("sub-every");
    mock.create_topic(&every_alert, OUT_PARTS, 1)
        .expect("subscription topic");

    let msgs = sim_events(&SimParams {
        users: 120,
        days: 12,
        seed: 5,
        attack_rate: 0.2,
        ..Default::default()
    });
    let half = msgs.len() / 2;
    produce_all(&brokers, &names.input, &msgs[..half]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("r.toml");
    let mut svc = ChildService::start_with(dir.path(), "r", &cfg, &["--watch-interval-s", "1"]);
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    let up = decisions.wait_for(|r| distinct_events(r) >= half);
    svc.assert_running();
    assert!(up, "the first half was not decided:\n{}", svc.log());
    let started = cfg.detection_hash();
    wait_metrics(&mut svc, port, "the started config's hash", |t| {
        hash_is(t, &started)
    });

    // 1. SIGHUP with the file as started: a reload that changes nothing.
    let st = std::process::Command::new("kill")
        .args(["-HUP", &svc.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(st.success());
    wait_metrics(&mut svc, port, "an unchanged reload on SIGHUP", |t| {
        reloads(t, "unchanged") == 1.0 && reloads(t, "applied") == 0.0
    });

    // 2. The file changes: a subscription copying every alert is added, live.
    let mut cfg2 = cfg.clone();
    cfg2.subscriptions.push(Subscription {
        name: "every".into(),
        topic: every_alert.clone(),
        min_severity: "low".into(),
        actions: vec![],
        reason_codes: vec![],
        webhook: None,
    });
    write_config(&path, &cfg2);
    let new_hash = cfg2.detection_hash();
    assert_ne!(new_hash, started);
    wait_metrics(&mut svc, port, "the new config applied", |t| {
        reloads(t, "applied") == 1.0 && hash_is(t, &new_hash)
    });
    assert!(
        svc.log().contains("config reloaded"),
        "no reload logged:\n{}",
        svc.log()
    );

    // Events produced after the reload are scored under it: each of their alerts is copied
    // to the new topic, and no alert of the first half is.
    produce_all(&brokers, &names.input, &msgs[half..]);
    let all = decisions.wait_for(|r| distinct_events(r) >= msgs.len());
    assert!(all, "not every event was decided:\n{}", svc.log());
    let mut alerts = Reader::new(&brokers, &names.alerts, OUT_PARTS, false);
    alerts.drain();
    let mut copies = Reader::new(&brokers, &every_alert, OUT_PARTS, false);
    copies.drain();
    let first_half: HashSet<String> = msgs[..half]
        .iter()
        .map(|m| {
            let v: serde_json::Value =
                serde_json::from_slice(m.payload.as_deref().expect("payload")).expect("event JSON");
            v["event_id"].as_str().expect("event_id").to_owned()
        })
        .collect();
    let alerted = alerts.by_event();
    let copied = copies.by_event();
    let later: HashSet<&String> = alerted
        .keys()
        .filter(|id| !first_half.contains(*id))
        .collect();
    assert!(
        !later.is_empty(),
        "test premise: the second half has alerts"
    );
    let copied_ids: HashSet<&String> = copied.keys().collect();
    assert_eq!(
        copied_ids, later,
        "alerts copied by the reloaded subscription must be exactly the second half's"
    );

    // 3. An invalid file is rejected with its key named; the running config stays.
    write_text(&path, "[decision]\nfreeze = 7.0\n");
    wait_metrics(&mut svc, port, "the invalid file rejected", |t| {
        reloads(t, "rejected") == 1.0 && hash_is(t, &new_hash)
    });
    assert!(
        svc.log().contains("decision.freeze"),
        "the rejection does not name the key:\n{}",
        svc.log()
    );

    // 4. A restart-only key changes: reported, not applied.
    let mut cfg3 = cfg2.clone();
    cfg3.kafka.max_batch = 77;
    write_config(&path, &cfg3);
    wait_metrics(&mut svc, port, "a restart-only key reported", |t| {
        sample(t, "walletguard_config_restart_pending") == Some(1.0)
            && reloads(t, "unchanged") == 2.0
            && hash_is(t, &new_hash)
    });
    assert!(
        svc.log().contains("kafka.max_batch"),
        "the restart-only key is not named:\n{}",
        svc.log()
    );
    svc.assert_running();
    // SIGTERM: still a clean stop after all that.
    let st = std::process::Command::new("kill")
        .args(["-TERM", &svc.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(st.success());
    let status = svc.child.wait().expect("wait");
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        svc.log()
    );
}
