//! Shadow scoring over Kafka (rdkafka's `MockCluster`): the candidate's flip matrix in
//! `walletguard_shadow_decisions_total` equals what `walletguard compare` computes on the same
//! events; the commands are the live engine's alone; the candidate's decisions reach their
//! own topic; and a hot reload replaces the candidate and turns it off.

mod kafka_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_common::*;
use rdkafka::mocking::MockCluster;
use serde_json::Value;
use walletguard::engine::decision::Action;
use walletguard::engine::pipeline::Engine;
use walletguard::tools::compare::{self, CompareInputs};
use walletguard::tools::sim::SimParams;

const CANDIDATE: &str = "[decision]\nreview = 0.35\nstep_up = 0.6\nfreeze = 0.7\n";

fn off_diagonal(m: &[[u64; 4]; 4]) -> u64 {
    (0..4)
        .flat_map(|a| (0..4).map(move |b| (a, b)))
        .filter(|(a, b)| a != b)
        .map(|(a, b)| m[a][b])
        .sum()
}

#[test]
fn the_shadow_matrix_equals_compare_and_no_command_comes_from_the_candidate() {
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("shadow");
    let mut cfg = config(&brokers, &mut names, "s");
    let dir = tempfile::tempdir().unwrap();
    let cand_file = dir.path().join("candidate.toml");
    std::fs::write(&cand_file, CANDIDATE).unwrap();
    cfg.shadow.config = cand_file.display().to_string();
    cfg.shadow.decisions_topic = uniq("shadow-decisions");
    create_topics(&mock, &cfg, 4);
    mock.create_topic(&cfg.shadow.decisions_topic, OUT_PARTS, 1)
        .expect("shadow decisions topic");

    let msgs = sim_events(&SimParams {
        users: 200,
        days: 20,
        seed: 8,
        attack_rate: 0.1,
        ..Default::default()
    });
    let engine = Engine::new(cfg.clone());
    let want = expected_partitioned(&engine, &msgs, 4);
    assert!(!want.commands.is_empty(), "the world has commands");
    // What `compare` says of the same events, emulating the same 4 partitions.
    let events = dir.path().join("events.jsonl");
    let mut text = String::new();
    for m in &msgs {
        text.push_str(std::str::from_utf8(m.payload.as_deref().unwrap()).unwrap());
        text.push('\n');
    }
    std::fs::write(&events, text).unwrap();
    let candidate = cfg.shadow_candidate().unwrap().expect("shadow on");
    let report = compare::run(
        &engine,
        &Engine::new(candidate),
        CompareInputs {
            events: &events,
            labels: None,
            names: ("live".into(), "candidate".into()),
            partitions: 4,
            lists: Default::default(),
            from_ts: None,
            progress: false,
        },
    )
    .unwrap();
    assert!(
        off_diagonal(&report.flips.matrix) > 0,
        "the candidate must flip something"
    );

    produce_all(&brokers, &names.input, &msgs);
    let rt = runtime();
    let svc = Service::start(&rt, cfg.clone());
    svc.wait_metrics("every event shadow-scored", |m| {
        m.shadow_matrix().iter().flatten().sum::<u64>() >= want.valid as u64
    });
    assert_eq!(svc.metrics.shadow_active.get(), 1);
    let got = svc.metrics.shadow_matrix();
    svc.stop(&rt).expect("run returns Ok");
    assert_eq!(got, report.flips.matrix, "shadow metric vs compare");

    // Commands are exactly the live engine's: none from the candidate, which would freeze
    // more (its freeze threshold is lower).
    let mut commands = Reader::new(&brokers, &names.commands, OUT_PARTS, false);
    commands.drain();
    let got_cmds: HashMap<String, Vec<Value>> = commands
        .by_event()
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(strip_times).collect()))
        .collect();
    assert_eq!(got_cmds.len(), want.commands.len());
    for (id, v) in &want.commands {
        assert_eq!(got_cmds.get(id), Some(v), "command of {id}");
    }
    let cand_freezes: u64 = (0..4).map(|a| report.flips.matrix[a][3]).sum();
    let live_freezes: u64 = report.flips.matrix[3].iter().sum();
    assert!(
        cand_freezes > live_freezes,
        "{cand_freezes} vs {live_freezes}"
    );

    // The candidate's decisions, one per event, with the candidate's actions.
    let mut shadow = Reader::new(&brokers, &cfg.shadow.decisions_topic, OUT_PARTS, false);
    assert!(shadow.wait_for(|r| r.len() >= want.valid));
    shadow.drain();
    assert_eq!(shadow.recs.len(), want.valid);
    let mut by_action = [0u64; 4];
    for r in &shadow.recs {
        let a = Action::parse(r.json()["action"].as_str().unwrap()).unwrap();
        by_action[a as usize] += 1;
    }
    let want_cols: Vec<u64> = (0..4)
        .map(|b| (0..4).map(|a| report.flips.matrix[a][b]).sum())
        .collect();
    assert_eq!(by_action.to_vec(), want_cols);
}

fn metric_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn matrix_from_text(text: &str) -> [[u64; 4]; 4] {
    let mut n = [[0u64; 4]; 4];
    for (i, a) in Action::ALL.iter().enumerate() {
        for (j, b) in Action::ALL.iter().enumerate() {
            let s = format!(
                "walletguard_shadow_decisions_total{{candidate=\"{}\",live=\"{}\"}}",
                b.as_str(),
                a.as_str()
            );
            n[i][j] = sample(text, &s).unwrap_or(0.0) as u64;
        }
    }
    n
}

fn wait_text(port: u16, svc: &mut ChildService, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(text) = http_get(port, "/metrics") {
            if cond(&text) {
                return text;
            }
        }
        svc.assert_running();
        assert!(
            Instant::now() < deadline,
            "waited in vain for {what}:\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_reload_replaces_the_candidate_and_turns_it_off() {
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("shadow-reload");
    let mut cfg = config(&brokers, &mut names, "r");
    let port = free_port();
    cfg.http.enabled = true;
    cfg.http.listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let cand_file = dir.path().join("candidate.toml");
    write_text(&cand_file, CANDIDATE);
    cfg.shadow.config = cand_file.display().to_string();
    create_topics(&mock, &cfg, 2);
    let msgs = sim_events(&SimParams {
        users: 150,
        days: 20,
        seed: 9,
        attack_rate: 0.2,
        ..Default::default()
    });
    let third = msgs.len() / 3;
    let counted = |t: &str| metric_sum(t, "walletguard_shadow_decisions_total{");
    produce_all(&brokers, &names.input, &msgs[..third]);
    let mut svc = ChildService::start_with(dir.path(), "r", &cfg, &["--watch-interval-s", "1"]);
    let text = wait_text(port, &mut svc, "the first third shadow-scored", |t| {
        counted(t) >= third as f64
    });
    let first = matrix_from_text(&text);
    assert!(
        off_diagonal(&first) > 0,
        "the candidate flips something: {first:?}"
    );

    // Replace the candidate by one equal to the live config: it restarts from the live state
    // with the live settings, so from now on nothing flips.
    write_text(&cand_file, "# the live config, unchanged\n");
    wait_text(port, &mut svc, "the candidate replaced", |t| {
        sample(t, "walletguard_config_reloads_total{result=\"applied\"}") == Some(1.0)
    });
    produce_all(&brokers, &names.input, &msgs[third..2 * third]);
    let text = wait_text(port, &mut svc, "the second third shadow-scored", |t| {
        counted(t) >= (2 * third) as f64
    });
    let second = matrix_from_text(&text);
    assert_eq!(off_diagonal(&second), off_diagonal(&first), "{second:?}");
    assert_eq!(sample(&text, "walletguard_shadow_active"), Some(1.0));

    // Turn it off in the live file: nothing more is shadow-scored.
    let mut off = cfg.clone();
    off.shadow.config = String::new();
    write_config(&dir.path().join("r.toml"), &off);
    wait_text(port, &mut svc, "shadow turned off", |t| {
        sample(t, "walletguard_shadow_active") == Some(0.0)
    });
    produce_all(&brokers, &names.input, &msgs[2 * third..]);
    let text = wait_text(port, &mut svc, "the rest scored live", |t| {
        metric_sum(t, "walletguard_events_total{") >= msgs.len() as f64
    });
    assert_eq!(
        counted(&text),
        (2 * third) as f64,
        "the last third was not shadow-scored"
    );
}
