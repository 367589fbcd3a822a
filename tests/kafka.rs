//! The Kafka service end to end on rdkafka's embedded `MockCluster` (127.0.0.1 only): the
//! decisions of `walletguard run` equal the pure engine's, dead letters, at-least-once across a
//! SIGKILL, state moving through the changelog on a rebalance, a broker outage, and the
//! exactly-once path. Each test has its own cluster and uniquely named topics and groups.

mod common;
mod kafka_common;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use serde_json::Value;

use common::{add_days, local_ms, Actor, Amount, Story, CST, LAGOS, MIN, SHANGHAI};
use kafka_common::*;
use walletguard::engine::pipeline::Engine;
use walletguard::service::kafka::Delivery;
use walletguard::tools::sim::SimParams;

/// Every repeat equals its first decision, and the first decisions equal the pure engine's:
/// the run decided as one uninterrupted engine, whatever happened to it.
fn assert_decided_as_one_engine(
    got: HashMap<String, Vec<Value>>,
    want: &HashMap<String, Vec<Value>>,
) {
    assert_repeats_identical("decisions", &got);
    let once: HashMap<String, Vec<Value>> = got
        .into_iter()
        .map(|(k, mut v)| {
            v.truncate(1);
            (k, v)
        })
        .collect();
    assert_same("decisions", &once, want);
}

/// Compares what came back over Kafka with what the pure engine produced, event by event.
fn assert_same(what: &str, got: &HashMap<String, Vec<Value>>, want: &HashMap<String, Vec<Value>>) {
    let mut missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    missing.sort();
    let mut extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    extra.sort();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} events missing (first {:?}), {} unexpected (first {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    let mut ids: Vec<&String> = want.keys().collect();
    ids.sort();
    let mut differing = 0;
    let mut first = None;
    for id in ids {
        if got[id] != want[id] {
            differing += 1;
            first.get_or_insert(id);
        }
    }
    if let Some(id) = first {
        panic!(
            "{what}: {differing} of {} events differ; first {id}:\n  kafka:  {:?}\n  engine: {:?}",
            want.len(),
            got[id],
            want[id]
        );
    }
}

fn small_world(users: u32, days: u32, seed: u64) -> SimParams {
    SimParams {
        users,
        days,
        seed,
        attack_rate: 0.1,
        ..Default::default()
    }
}

fn payloads(msgs: &[Msg]) -> impl Iterator<Item = &[u8]> {
    msgs.iter().map(|m| m.payload.as_deref().unwrap_or(b""))
}

/// 1. Every decision, alert and command over Kafka (4 input partitions) equals what the pure
///    engine produces from the same events; the core's results depend only on each user's own
///    order, which keying by `user_id` preserves.
#[test]
fn decisions_over_kafka_equal_the_pure_engine() {
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("equal");
    let cfg = config(&brokers, &mut names, "a");
    create_topics(&mock, &cfg, 4);

    // With feedback after the alerts: cases ride in the changelog, blocks go to the lists.
    let engine = Engine::new(cfg.clone());
    let lists_topic = cfg.kafka.lists_topic.clone();
    let msgs = with_feedback(&engine, sim_events(&small_world(200, 20, 5)));
    let want = expected_partitioned(&engine, &msgs, 4);
    assert!(want.errors.is_empty(), "simulated events are valid");
    assert!(!want.lists.is_empty(), "confirmed frauds published blocks");
    assert!(
        !want.commands.is_empty(),
        "the world should contain commands"
    );
    produce_all(&brokers, &names.input, &msgs);

    let rt = runtime();
    let svc = Service::start(&rt, cfg);
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    let arrived = decisions.wait_for(|r| r.len() >= want.valid);
    let summary = svc.stop(&rt).expect("run returns Ok after stop");
    assert_eq!(summary.sessions, 1);
    assert!(
        arrived,
        "only {} of {} decisions arrived",
        decisions.recs.len(),
        want.valid
    );
    decisions.drain();
    assert_eq!(
        decisions.recs.len(),
        want.valid,
        "one decision per valid event"
    );
    for r in &decisions.recs {
        let v = r.json();
        assert_eq!(
            r.key_str().as_deref(),
            v["user_id"].as_str(),
            "keyed by user"
        );
        assert_eq!(r.header("action").as_deref(), v["action"].as_str());
    }
    assert_same("decisions", &decisions.by_event(), &want.decisions);

    let mut alerts = Reader::new(&brokers, &names.alerts, OUT_PARTS, false);
    alerts.drain();
    let got: HashMap<String, Vec<Value>> = alerts
        .by_event()
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(strip_times).collect()))
        .collect();
    assert_same("alerts", &got, &want.alerts);

    let mut commands = Reader::new(&brokers, &names.commands, OUT_PARTS, false);
    commands.drain();
    let got: HashMap<String, Vec<Value>> = commands
        .by_event()
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(strip_times).collect()))
        .collect();
    assert_same("commands", &got, &want.commands);

    let mut lists = Reader::new(&brokers, &lists_topic, OUT_PARTS, false);
    lists.drain();
    let mut got: Vec<(String, Value)> = lists
        .recs
        .iter()
        .map(|r| (r.key_str().unwrap_or_default(), r.json()))
        .collect();
    let mut want_lists = want.lists.clone();
    let order = |v: &mut Vec<(String, Value)>| v.sort_by_key(|(k, v)| (k.clone(), v.to_string()));
    order(&mut got);
    order(&mut want_lists);
    assert_eq!(
        got, want_lists,
        "list entries over Kafka equal the engine's"
    );

    // The changelog: written coalesced (fewer records than events), and each user's latest
    // record is exactly the pure engine's final profile.
    let mut changelog = Reader::new(&brokers, &names.changelog, 4, false);
    changelog.drain();
    assert!(
        changelog.recs.len() < want.valid,
        "{} changelog records for {} events: not coalesced",
        changelog.recs.len(),
        want.valid
    );
    // Records are keyed by the user's 64-bit key, big-endian (so that a removed profile can be
    // tombstoned without its user id).
    // Each partition's learned population is one more key, written whenever it changed.
    let mut latest: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut populations: HashMap<i32, Vec<u8>> = HashMap::new();
    for r in &changelog.recs {
        if let (Some(k), Some(v)) = (r.key.clone(), r.payload.clone()) {
            if k == walletguard::service::kafka::stamp::POPULATION_KEY {
                populations.insert(r.partition, v);
            } else {
                latest.insert(k, v);
            }
        }
    }
    for (p, want_pop) in want.populations.iter().enumerate() {
        assert!(
            populations.get(&(p as i32)) == Some(want_pop),
            "partition {p}: the changelog's latest population differs from the engine's"
        );
    }
    assert_eq!(latest.len(), want.profiles.len(), "one profile per user");
    for (uid, bytes) in &want.profiles {
        let key = walletguard::engine::baseline::keys::user_key(uid)
            .to_be_bytes()
            .to_vec();
        assert!(
            latest.get(&key) == Some(bytes),
            "user {uid}: the changelog's latest profile differs from the engine's"
        );
    }
    drop(rt);
    drop(mock);
}

/// 2. Invalid messages go to the DLQ with their error and source position, and the partition
///    keeps flowing: the valid events after them get decisions.
#[test]
fn dead_letters_keep_the_partition_flowing() {
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("dlq");
    let cfg = config(&brokers, &mut names, "a");
    create_topics(&mock, &cfg, 2);
    let engine = Engine::new(cfg.clone());

    let mut s = Story::new("u-dlq", 3_000.0, Actor::new("d-own", SHANGHAI), 19);
    s.live_in_shanghai((2026, 3, 2), 4);
    let lines = s.lines();
    let mut missing_user: Value = serde_json::from_str(&lines[1]).expect("story JSON");
    missing_user
        .as_object_mut()
        .expect("object")
        .remove("user_id");
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 - 10));
    assert_eq!(huge.len(), 1024 * 1024);

    // (payload, Some(expected error reason) for a bad one)
    let mut plan: Vec<(Option<Vec<u8>>, Option<&str>)> =
        vec![(Some(lines[0].clone().into()), None)];
    plan.push((
        Some(b"{\"event_id\": \"e-broken\", ".to_vec()),
        Some("malformed_json"),
    ));
    plan.push((
        Some(vec![b'{', 0xff, 0xfe, b'"', 0xc3, 0x28, b'}']),
        Some("not_utf8"),
    ));
    plan.push((
        Some(missing_user.to_string().into_bytes()),
        Some("missing_field"),
    ));
    plan.push((Some(huge.into_bytes()), Some("too_large")));
    plan.push((None, Some("malformed_json")));
    for l in &lines[1..] {
        plan.push((Some(l.clone().into_bytes()), None));
    }
    let msgs: Vec<Msg> = plan
        .iter()
        .map(|(p, _)| Msg {
            key: Some(b"u-dlq".to_vec()),
            payload: p.clone(),
            partition: Some(0),
        })
        .collect();
    let want = expected(&engine, payloads(&msgs));
    assert_eq!(want.valid, lines.len());
    produce_all(&brokers, &names.input, &msgs);

    let rt = runtime();
    let svc = Service::start(&rt, cfg);
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    let mut dlq = Reader::new(&brokers, &names.dlq, OUT_PARTS, false);
    let bad = plan.iter().filter(|(_, e)| e.is_some()).count();
    let arrived = decisions.wait_for(|r| r.len() >= lines.len());
    let dead = dlq.wait_for(|r| r.len() >= bad);
    let metrics = svc.metrics.clone();
    svc.stop(&rt).expect("run returns Ok after stop");
    assert!(
        arrived,
        "only {} of {} decisions: the partition stopped at a bad message",
        decisions.recs.len(),
        lines.len()
    );
    assert!(dead, "only {} of {bad} dead letters", dlq.recs.len());
    decisions.drain();
    dlq.drain();
    assert_same("decisions", &decisions.by_event(), &want.decisions);
    assert_eq!(dlq.recs.len(), bad, "one dead letter per bad message");

    let mut by_offset: HashMap<i64, &Rec> = HashMap::new();
    for r in &dlq.recs {
        let v = r.json();
        let off = v["offset"].as_i64().expect("offset");
        assert!(
            by_offset.insert(off, r).is_none(),
            "two dead letters for offset {off}"
        );
    }
    for (offset, ((payload, reason), m)) in plan.iter().zip(&msgs).enumerate() {
        let Some(reason) = reason else { continue };
        let offset = offset as i64;
        let r = by_offset
            .get(&offset)
            .unwrap_or_else(|| panic!("no dead letter for offset {offset} ({reason})"));
        let v = r.json();
        let raw = payload.as_deref().unwrap_or(b"");
        let err = match engine.process_bytes(&mut engine.new_state(), raw, NOW_MS) {
            Err(e) => {
                assert_eq!(e.reason(), *reason, "test plan");
                e.to_string()
            }
            Ok(_) => panic!("test plan: offset {offset} is valid"),
        };
        let cut = &raw[..raw.len().min(64 * 1024)];
        let (want_payload, want_err) = match std::str::from_utf8(cut) {
            Ok(s) => (s.to_owned(), err),
            Err(_) => (
                walletguard::engine::output::base64(cut),
                format!("{err} (payload is base64)"),
            ),
        };
        assert_eq!(v["error"], want_err.as_str(), "error of offset {offset}");
        assert_eq!(v["topic"], names.input.as_str(), "topic of offset {offset}");
        assert_eq!(v["partition"], 0, "partition of offset {offset}");
        assert_eq!(
            v["payload"],
            want_payload.as_str(),
            "payload of offset {offset}"
        );
        assert_eq!(r.key, m.key, "key of offset {offset}");
        assert_eq!(r.header("error").as_deref(), Some(*reason));
        assert_eq!(
            r.header("source_topic").as_deref(),
            Some(names.input.as_str())
        );
        assert_eq!(r.header("source_partition").as_deref(), Some("0"));
        assert_eq!(r.header("source_offset"), Some(offset.to_string()));
        match *reason {
            "too_large" => {
                assert!(
                    want_err.starts_with("event is 1048576 bytes, over the 65536-byte limit"),
                    "{want_err}"
                );
                assert_eq!(
                    v["payload"].as_str().map(str::len),
                    Some(64 * 1024),
                    "cut to 64 KiB"
                );
            }
            "not_utf8" => assert!(want_err.ends_with("(payload is base64)"), "{want_err}"),
            "missing_field" => assert_eq!(want_err, "missing field `user_id`"),
            "malformed_json" => assert!(want_err.starts_with("malformed JSON"), "{want_err}"),
            _ => {}
        }
    }
    let invalid = |r: &str| metrics.invalid.with_label_values(&[r]).get();
    assert_eq!(invalid("malformed_json"), 2);
    assert_eq!(invalid("not_utf8"), 1);
    assert_eq!(invalid("missing_field"), 1);
    assert_eq!(invalid("too_large"), 1);
    drop(rt);
    drop(mock);
}

/// Input keys and headers are never trusted: absent, empty, huge or non-UTF-8 keys and
/// headers (many, huge, null or binary values) change no decision, and a dead letter of a
/// message with a huge key carries the key cut to `MAX_DLQ_KEY_BYTES` and its full length,
/// so it still fits the producer's limit and the partition keeps flowing.
#[test]
fn hostile_keys_and_headers_are_harmless() {
    use walletguard::service::kafka::records::MAX_DLQ_KEY_BYTES;
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("hostile");
    let cfg = config(&brokers, &mut names, "a");
    create_topics(&mock, &cfg, 2);
    let engine = Engine::new(cfg.clone());

    let mut s = Story::new("u-hostile", 3_000.0, Actor::new("d-own", SHANGHAI), 23);
    s.live_in_shanghai((2026, 3, 2), 4);
    let lines = s.lines();
    let big_key: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 | 0x80).collect();
    let big_value = vec![0xFFu8; 200_000];
    let many: Vec<String> = (0..64).map(|i| format!("h{i}")).collect();
    let keys: [Option<Vec<u8>>; 5] = [
        None,
        Some(Vec::new()),
        Some(vec![0xff, 0xfe, 0x00, 0xc3, 0x28]),
        Some(big_key.clone()),
        Some(b"u-hostile".to_vec()),
    ];
    /// Header name and value (`None`: a null value).
    type Headers<'a> = Vec<(&'a str, Option<&'a [u8]>)>;
    // (message, headers, whether it is bad)
    let mut plan: Vec<(Msg, Headers<'_>, Option<&str>)> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let headers: Headers<'_> = match i % 4 {
            0 => vec![],
            1 => many
                .iter()
                .map(|n| (n.as_str(), Some(&b"\x00\xff"[..])))
                .collect(),
            2 => vec![("user_id", Some(&big_value[..])), ("wg.inh", None)],
            _ => vec![
                ("", Some(&[0xc3, 0x28][..])),
                ("event_id", Some(&b"forged"[..])),
            ],
        };
        let m = Msg {
            key: keys[i % keys.len()].clone(),
            payload: Some(l.clone().into_bytes()),
            partition: Some(0),
        };
        plan.push((m, headers, None));
        if i % 7 == 3 {
            // A bad message with a huge non-UTF-8 key.
            let m = Msg {
                key: Some(big_key.clone()),
                payload: Some(b"{\"event_id\": ".to_vec()),
                partition: Some(0),
            };
            plan.push((m, vec![("x", Some(&big_value[..]))], Some("bad")));
        }
    }
    let msgs: Vec<Msg> = plan.iter().map(|(m, _, _)| m.clone()).collect();
    let want = expected(&engine, payloads(&msgs));
    assert_eq!(want.valid, lines.len());
    let (p, count) = producer(&brokers);
    for (m, h, _) in &plan {
        send_with_headers(&p, &names.input, m, h);
    }
    flush(&p, &count, plan.len() as u64);

    let rt = runtime();
    let svc = Service::start(&rt, cfg);
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    let mut dlq = Reader::new(&brokers, &names.dlq, OUT_PARTS, false);
    let bad = plan.iter().filter(|(_, _, e)| e.is_some()).count();
    assert!(bad >= 2, "test plan");
    let arrived = decisions.wait_for(|r| r.len() >= lines.len());
    let dead = dlq.wait_for(|r| r.len() >= bad);
    svc.stop(&rt).expect("run returns Ok after stop");
    assert!(
        arrived,
        "only {} of {} decisions",
        decisions.recs.len(),
        lines.len()
    );
    assert!(dead, "only {} of {bad} dead letters", dlq.recs.len());
    decisions.drain();
    dlq.drain();
    assert_same("decisions", &decisions.by_event(), &want.decisions);
    assert_eq!(dlq.recs.len(), bad, "one dead letter per bad message");
    for r in &dlq.recs {
        assert_eq!(
            r.key.as_deref(),
            Some(&big_key[..MAX_DLQ_KEY_BYTES]),
            "key cut"
        );
        assert_eq!(
            r.header("source_key_bytes"),
            Some(big_key.len().to_string())
        );
        let raw = b"{\"event_id\": ";
        let reason = match engine.process_bytes(&mut engine.new_state(), raw, NOW_MS) {
            Err(e) => e.reason(),
            Ok(_) => panic!("test plan: the bad payload is valid"),
        };
        assert_eq!(r.header("error").as_deref(), Some(reason));
    }
    drop(rt);
    drop(mock);
}

/// 3. At-least-once across a crash: instance A (a child process) is SIGKILLed mid-stream,
///    without a final commit; B takes over the group. Every event has a decision, and an event
///    decided twice got identical decisions (and alerts).
#[test]
fn at_least_once_across_a_sigkill() {
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("crash");
    let mut cfg_a = config(&brokers, &mut names, "a");
    cfg_a.kafka.max_batch = 50;
    // A consumes continuously rather than in fetch-wait bursts, so it is busy when killed.
    cfg_a
        .kafka
        .consumer
        .insert("fetch.wait.max.ms".into(), "20".into());
    create_topics(&mock, &cfg_a, 4);
    let cfg_b = config(&brokers, &mut names, "b");

    let engine = Engine::new(cfg_a.clone());
    let msgs = with_feedback(&engine, sim_events(&small_world(150, 15, 8)));
    let want = expected_partitioned(&engine, &msgs, 4);
    assert!(want.errors.is_empty());
    let total_ids = want.decisions.len();
    let first = msgs.len() / 10;

    // Phase 1: A is up and has consumed the first tenth.
    produce_all(&brokers, &names.input, &msgs[..first]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = ChildService::start(dir.path(), "a", &cfg_a);
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    let up = decisions.wait_for(|r| r.len() >= first);
    a.assert_running();
    assert!(
        up,
        "instance A did not decide the first events:\n{}",
        a.log()
    );

    // Phase 2: stream the rest; past halfway, SIGKILL A at a moment when it has decided events
    // whose offsets it has not committed yet (the tail a crash must replay).
    let streamer = stream(&brokers, &names.input, msgs[first..].to_vec(), 1500);
    let half = msgs.len() as i64 / 2;
    let probe = OffsetsProbe::new(&brokers, &names.group, &names.input, 4);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        decisions.poll(Duration::from_millis(20));
        let decided = decisions.recs.len() as i64;
        if decided >= half && probe.sum() + 50 <= decided {
            break;
        }
        a.assert_running();
        assert!(
            std::time::Instant::now() < deadline,
            "instance A stalled at {decided} decisions, {} committed:\n{}",
            probe.sum(),
            a.log()
        );
    }
    a.child.kill().expect("SIGKILL A");
    let status = a.child.wait().expect("wait A");
    assert!(!status.success(), "A was killed, not stopped");
    decisions.poll(Duration::from_millis(500));
    let seen_at_kill = decisions.recs.len() as i64;
    let committed_at_kill = probe.sum();
    assert!(
        committed_at_kill < seen_at_kill,
        "test premise: A died with an uncommitted tail ({committed_at_kill} committed, \
         {seen_at_kill} decided)"
    );

    // B takes over once the group expires A's session.
    let rt = runtime();
    let b = Service::start(&rt, cfg_b);
    let all = decisions.wait_for(|r| distinct_events(r) >= total_ids);
    streamer.join().expect("streamer");
    let restored = b.metrics.restore_records.get();
    b.stop(&rt).expect("B returns Ok after stop");
    // A graceful stop drains every partition and commits what the drained tasks acknowledged.
    assert_eq!(
        probe.sum(),
        msgs.len() as i64,
        "after B's stop every consumed offset is committed"
    );
    assert!(
        all,
        "only {} of {total_ids} events decided after the crash",
        distinct_events(&decisions.recs)
    );
    decisions.drain();
    let got = decisions.by_event();
    let missing: Vec<&String> = want
        .decisions
        .keys()
        .filter(|k| !got.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "events without a decision: {missing:?}");
    let repeated = got.values().filter(|v| v.len() > 1).count() as i64;
    let drifted = got
        .values()
        .filter(|v| v.len() > 1 && v.iter().any(|d| *d != v[0]))
        .count();
    eprintln!(
        "crash test: {} events; at the kill A had decided {seen_at_kill} and committed \
         {committed_at_kill} offsets; {repeated} events were decided again by B ({drifted} with a \
         different decision), which restored {restored} changelog records",
        msgs.len()
    );
    assert!(restored > 0, "B restored no profile from the changelog");
    // B resumes from the committed offsets: every event A decided past them is decided again.
    assert!(
        repeated >= seen_at_kill - committed_at_kill,
        "{repeated} repeats, but A left {} decided events uncommitted",
        seen_at_kill - committed_at_kill
    );
    for (id, v) in &got {
        assert!(
            v.iter()
                .all(|d| d["event_id"] == id.as_str() && d["user_id"] == v[0]["user_id"]),
            "repeats of {id} disagree on ids: {v:?}"
        );
    }
    // B restores the profiles as of the committed offsets (changelog stamps), so a repeat is
    // scored exactly as A scored it, and the whole run decides as one uninterrupted engine.
    assert_decided_as_one_engine(got, &want.decisions);

    let mut alerts = Reader::new(&brokers, &names.alerts, OUT_PARTS, false);
    alerts.drain();
    let alerts: HashMap<String, Vec<Value>> = alerts
        .by_event()
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(strip_times).collect()))
        .collect();
    for (id, v) in &alerts {
        let ids: std::collections::HashSet<&str> =
            v.iter().filter_map(|a| a["alert_id"].as_str()).collect();
        assert_eq!(ids.len(), 1, "event {id} got different alert ids: {v:?}");
    }
    drop(rt);
    drop(mock);
}

/// The takeover story of `tests/stories.rs`: five weeks of `u-lin`'s life in Shanghai, then a
/// password reset from a never-seen device in Lagos, a login, a new card and three draining
/// transfers to a new payee. Returns the lines up to the reset and the rest.
fn takeover_story() -> (Vec<String>, Vec<String>) {
    let mut s = Story::new("u-lin", 6_000.0, Actor::new("d-own", SHANGHAI), 7);
    s.live_in_shanghai((2026, 3, 2), 36);
    s.lines();
    let night = add_days((2026, 3, 2), 36);
    s.actor = Actor::new("d-attacker", LAGOS);
    let t = local_ms(CST, night, 3, 2) + 14_000;
    let reset = s.security(t, "password_reset");
    s.login(t + 3 * MIN + 21_000);
    s.plan(
        t + 6 * MIN + 5_000,
        "payment_method_bind",
        None,
        Some("card-tok-5f0e9a"),
    );
    s.transfer(t + 9 * MIN, Amount::BalanceShare(0.4), "mule-1");
    s.transfer(t + 11 * MIN + 30_000, Amount::BalanceShare(0.5), "mule-1");
    s.transfer(t + 14 * MIN, Amount::BalanceShare(1.0), "mule-1");
    let lines = s.lines();
    let at = lines
        .iter()
        .position(|l| l.contains(&format!("\"{reset}\"")))
        .expect("reset line");
    let rest = lines[at + 1..].to_vec();
    let mut head = lines;
    head.truncate(at + 1);
    (head, rest)
}

/// 4. A rebalance moves a user's profile through the changelog: A learns `u-lin`'s history,
///    B joins and A leaves, and B (which never saw the history) freezes the account on the
///    takeover, exactly as the pure engine does with the whole story.
#[test]
fn rebalance_moves_state_through_the_changelog() {
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("rebalance");
    let cfg_a = config(&brokers, &mut names, "a");
    let cfg_b = config(&brokers, &mut names, "b");
    create_topics(&mock, &cfg_a, 2);

    let (head, rest) = takeover_story();
    let engine = Engine::new(cfg_a.clone());
    let full = expected(&engine, head.iter().chain(&rest).map(|l| l.as_bytes()));
    let fresh = expected(&engine, rest.iter().map(|l| l.as_bytes()));
    let rest_ids: Vec<String> = rest
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("story JSON");
            v["event_id"].as_str().expect("event_id").to_owned()
        })
        .collect();
    let want_rest: HashMap<String, Vec<Value>> = rest_ids
        .iter()
        .map(|id| (id.clone(), full.decisions[id].clone()))
        .collect();
    assert!(
        full.commands
            .values()
            .flatten()
            .any(|c| c["command"] == "freeze_account"),
        "the whole story ends in a freeze"
    );
    assert_ne!(
        want_rest, fresh.decisions,
        "test premise: the takeover is judged differently without the user's history"
    );

    let rt = runtime();
    let a = Service::start(&rt, cfg_a);
    let key = |l: &String| Msg::keyed("u-lin", l.clone());
    produce_all(
        &brokers,
        &names.input,
        &head.iter().map(key).collect::<Vec<_>>(),
    );
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    assert!(
        decisions.wait_for(|r| r.len() >= head.len()),
        "A decided {} of {} events",
        decisions.recs.len(),
        head.len()
    );
    let mut changelog = Reader::new(&brokers, &names.changelog, 2, false);
    let lin_key = walletguard::engine::baseline::keys::user_key("u-lin").to_be_bytes();
    assert!(
        changelog.wait_for(|r| r.iter().any(|c| c.key.as_deref() == Some(&lin_key[..]))),
        "no changelog record of u-lin"
    );

    // B joins (cooperative rebalance), then A leaves: every partition ends up on B.
    let b = Service::start(&rt, cfg_b);
    b.wait_metrics("B to be assigned a partition", |m| m.assigned.get() >= 1);
    a.stop(&rt).expect("A returns Ok after stop");
    b.wait_metrics("B to own both partitions", |m| m.assigned.get() == 2);
    b.wait_metrics("B to finish restoring", |m| m.restoring.get() == 0);

    produce_all(
        &brokers,
        &names.input,
        &rest.iter().map(key).collect::<Vec<_>>(),
    );
    let mut commands = Reader::new(&brokers, &names.commands, OUT_PARTS, false);
    let frozen = commands.wait_for(|r| {
        r.iter().any(|c| {
            let v = c.json();
            v["command"] == "freeze_account" && v["user_id"] == "u-lin"
        })
    });
    let all = decisions.wait_for(|r| r.len() >= head.len() + rest.len());
    let restored = b.metrics.restore_records.get();
    b.stop(&rt).expect("B returns Ok after stop");
    assert!(restored > 0, "B restored nothing from the changelog");
    assert!(
        all,
        "B decided only {} events",
        decisions.recs.len() - head.len()
    );
    let got = decisions.by_event();
    let got_rest: HashMap<String, Vec<Value>> = rest_ids
        .iter()
        .map(|id| (id.clone(), got.get(id).cloned().unwrap_or_default()))
        .collect();
    assert_same("takeover decisions on B", &got_rest, &want_rest);
    assert!(
        frozen,
        "no freeze_account for u-lin: B did not get A's profile"
    );
    drop(rt);
    drop(mock);
}

/// 5. The leader of every input partition goes down for a few seconds mid-stream; when it is
///    back, every event still gets its decision.
#[test]
fn broker_outage_mid_stream() {
    init_logging();
    let mock = MockCluster::new(3).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("outage");
    let cfg = config(&brokers, &mut names, "a");
    create_topics(&mock, &cfg, 4);
    let leader = 2;
    for p in 0..4 {
        mock.partition_leader(&names.input, p, Some(leader))
            .expect("set leader");
    }

    let msgs = sim_events(&small_world(120, 12, 21));
    let want = expected_partitioned(&Engine::new(cfg.clone()), &msgs, 4);
    let total_ids = want.decisions.len();

    let rt = runtime();
    let svc = Service::start(&rt, cfg);
    let streamer = stream(&brokers, &names.input, msgs.clone(), 1500);
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    assert!(
        decisions.wait_for(|r| r.len() >= msgs.len() / 3),
        "the service did not start deciding"
    );
    mock.broker_down(leader).expect("broker down");
    decisions.poll(Duration::from_secs(4));
    mock.broker_up(leader).expect("broker up");
    let all = decisions.wait_for(|r| distinct_events(r) >= total_ids);
    streamer.join().expect("streamer");
    assert!(!svc.finished(), "run ended during the outage");
    svc.stop(&rt).expect("run returns Ok after stop");
    assert!(
        all,
        "only {} of {total_ids} events decided after the outage",
        distinct_events(&decisions.recs)
    );
    decisions.drain();
    let got = decisions.by_event();
    assert_decided_as_one_engine(got, &want.decisions);
    drop(rt);
    drop(mock);
}

/// 6. Exactly-once on the mock cluster (which supports transactions): a read_committed reader
///    sees exactly one decision per event, equal to the engine's, transactions are committed,
///    and `run` returns Ok after stop.
#[test]
fn exactly_once_commits_transactions() {
    init_logging();
    let mock = MockCluster::new(3).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("eos");
    let mut cfg = config(&brokers, &mut names, "a");
    cfg.kafka.delivery = Delivery::ExactlyOnce;
    cfg.kafka.transactional_id = uniq("txn");
    create_topics(&mock, &cfg, 3);

    let msgs = sim_events(&small_world(100, 12, 33));
    let want = expected_partitioned(&Engine::new(cfg.clone()), &msgs, 3);
    let want_alerts: usize = want.alerts.values().map(Vec::len).sum();
    assert!(want_alerts > 0, "the world should contain alerts");

    let rt = runtime();
    let svc = Service::start(&rt, cfg);
    let streamer = stream(&brokers, &names.input, msgs.clone(), 2000);
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, true);
    let all = decisions.wait_for(|r| r.len() >= want.valid);
    streamer.join().expect("streamer");
    let metrics = svc.metrics.clone();
    let summary = svc.stop(&rt).expect("run returns Ok after stop");
    assert!(
        all,
        "only {} of {} decisions committed",
        decisions.recs.len(),
        want.valid
    );
    decisions.drain();
    assert_eq!(
        decisions.recs.len(),
        want.valid,
        "exactly one decision per event"
    );
    assert_same("decisions", &decisions.by_event(), &want.decisions);

    let mut alerts = Reader::new(&brokers, &names.alerts, OUT_PARTS, true);
    alerts.drain();
    assert_eq!(
        alerts.recs.len(),
        want_alerts,
        "exactly one alert per alerted event"
    );
    let committed = metrics.transactions.with_label_values(&["committed"]).get();
    assert!(committed > 0, "no transaction committed");
    assert_eq!(
        metrics.transactions.with_label_values(&["aborted"]).get(),
        0,
        "no transaction aborted"
    );
    assert_eq!(summary.sessions, 1);
    drop(rt);
    drop(mock);
}

/// 7. A changelog written by an older release (records keyed by user id, stamp header `wg.in`)
///    is restored, and migrated: the service tombstones the id key and writes the profile again
///    under the user's 64-bit key, after the tombstone, and decides exactly as the pure engine
///    does with the history's profile (an older release kept no learned population).
#[test]
fn an_older_releases_changelog_is_restored_and_migrated() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer};
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("legacy");
    let cfg = config(&brokers, &mut names, "a");
    create_topics(&mock, &cfg, 1);

    let (head, rest) = takeover_story();
    let engine = Engine::new(cfg.clone());
    let before = expected(&engine, head.iter().map(|l| l.as_bytes()));
    let full = expected(&engine, head.iter().chain(&rest).map(|l| l.as_bytes()));
    // The history's profile, as an older release wrote it: keyed by the user id, stamped with
    // input offset 0 (the input holds none of the history, so nothing is committed).
    let profile = before.profiles["u-lin"].clone();
    let mut stamp = Vec::new();
    walletguard::service::kafka::stamp::encode(&[0], &mut stamp);
    let (p, count) = producer(&brokers);
    p.send(
        BaseRecord::<[u8], [u8]>::to(&names.changelog)
            .partition(0)
            .key(&b"u-lin"[..])
            .payload(&profile[..])
            .headers(OwnedHeaders::new().insert(Header {
                key: walletguard::service::kafka::stamp::HEADER,
                value: Some(&stamp[..]),
            })),
    )
    .map_err(|(e, _)| e)
    .expect("send the legacy record");
    p.flush(Duration::from_secs(10)).expect("flush");
    assert_eq!(count.ok.load(std::sync::atomic::Ordering::Relaxed), 1);

    let rt = runtime();
    let svc = Service::start(&rt, cfg);
    svc.wait_metrics("the partition to be restored", |m| {
        m.assigned.get() == 1 && m.restoring.get() == 0
    });
    let key = |l: &String| Msg::keyed("u-lin", l.clone());
    produce_all(
        &brokers,
        &names.input,
        &rest.iter().map(key).collect::<Vec<_>>(),
    );
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    assert!(
        decisions.wait_for(|r| r.len() >= rest.len()),
        "decided {} of {} events",
        decisions.recs.len(),
        rest.len()
    );
    let lin_key = walletguard::engine::baseline::keys::user_key("u-lin").to_be_bytes();
    let mut changelog = Reader::new(&brokers, &names.changelog, 1, false);
    let migrated = changelog.wait_for(|r| {
        r.iter()
            .any(|c| c.key.as_deref() == Some(&lin_key[..]) && c.payload.is_some())
    });
    svc.stop(&rt).expect("run returns Ok after stop");
    assert!(migrated, "no record of u-lin under its 64-bit key");
    let tomb = changelog
        .recs
        .iter()
        .find(|c| c.key.as_deref() == Some(&b"u-lin"[..]) && c.payload.is_none())
        .expect("a tombstone for the id key");
    let first_new = changelog
        .recs
        .iter()
        .filter(|c| c.key.as_deref() == Some(&lin_key[..]))
        .map(|c| c.offset)
        .min()
        .expect("a record under the 64-bit key");
    assert!(tomb.offset < first_new, "the tombstone comes first");
    // An older release wrote no learned population (nor its signal rates): the service
    // restores the profile alone, so the reference is the engine holding the history's
    // profile and a fresh population.
    let mut state = engine.new_state();
    for l in &head {
        engine
            .process_bytes(&mut state, l.as_bytes(), NOW_MS)
            .expect("story event");
    }
    state.population = engine.new_state().population;
    let mut want: HashMap<String, Value> = HashMap::new();
    for l in &rest {
        let (ev, o) = engine
            .process_bytes(&mut state, l.as_bytes(), NOW_MS)
            .expect("story event");
        let mut buf = Vec::new();
        walletguard::engine::output::write_decision(&mut buf, &ev, &o);
        want.insert(
            ev.event_id.to_string(),
            serde_json::from_slice(&buf).expect("decision JSON"),
        );
    }
    let got = decisions.by_event();
    for l in &rest {
        let v: Value = serde_json::from_str(l).expect("story JSON");
        let id = v["event_id"].as_str().expect("event_id");
        assert_eq!(
            got.get(id).and_then(|d| d.first()),
            want.get(id),
            "event {id}: decided as with the whole history's profile"
        );
        assert_eq!(
            full.decisions[id].first().map(|d| &d["action"]),
            want.get(id).map(|d| &d["action"]),
            "event {id}: the population alone changes no action"
        );
    }
    drop(rt);
    drop(mock);
}

/// 9. A confirmed mule is blocked by every instance (issue 14): two instances of one group,
///    one partition each. On A's partition, `u-zhao` is taken over and pays `p-mule-77`; an
///    analyst confirms it, and A publishes the block to the lists topic. On B's partition,
///    `u-wu` later pays the same account from their own phone and is frozen, `BLOCKLISTED`;
///    the pure engine without the verdict lets that payment through.
#[test]
fn a_confirmed_mule_is_blocked_on_another_instance() {
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("mule");
    let cfg_a = config(&brokers, &mut names, "a");
    let cfg_b = config(&brokers, &mut names, "b");
    create_topics(&mock, &cfg_a, 2);

    let day = add_days((2026, 3, 2), 36);
    let t = local_ms(CST, day, 10, 0);
    let mut victim = Story::new("u-zhao", 20_000.0, Actor::new("d-zhao", SHANGHAI), 21);
    victim.live_in_shanghai((2026, 3, 2), 36);
    victim.actor = Actor::new("d-thief", SHANGHAI);
    victim.login(t);
    let stolen = victim.transfer(t + 2 * MIN, Amount::Cents(80_000), "p-mule-77");
    let mut a_lines = victim.lines();
    let verdict = serde_json::json!({
        "event_id": "fb-mule", "user_id": "u-zhao", "ts": t + 60 * MIN, "type": "case_verdict",
        "ref_event_id": stolen, "verdict": "confirmed_fraud"
    })
    .to_string();
    a_lines.push(verdict);
    let mut payer = Story::new("u-wu", 20_000.0, Actor::new("d-wu", SHANGHAI), 22);
    payer.live_in_shanghai((2026, 3, 2), 36);
    let b_history = payer.lines();
    let paid = payer.transfer(t + 180 * MIN, Amount::Cents(20_000), "p-mule-77");
    let b_last = payer.lines()[b_history.len()..].to_vec();

    // Premise: on its own, u-wu's payment is no freeze.
    let engine = Engine::new(cfg_a.clone());
    let alone = expected(
        &engine,
        b_history.iter().chain(&b_last).map(|l| l.as_bytes()),
    );
    assert_ne!(
        alone.decisions[&paid][0]["action"], "freeze",
        "test premise: u-wu's payment alone is not frozen"
    );

    let lists_topic = cfg_a.kafka.lists_topic.clone();
    let rt = runtime();
    let a = Service::start(&rt, cfg_a);
    let b = Service::start(&rt, cfg_b);
    a.wait_metrics("A to own one partition", |m| m.assigned.get() == 1);
    b.wait_metrics("B to own one partition", |m| m.assigned.get() == 1);
    let on = |p: i32, lines: &[String], user: &str| -> Vec<Msg> {
        lines
            .iter()
            .map(|l| Msg {
                partition: Some(p),
                ..Msg::keyed(user, l.clone())
            })
            .collect()
    };
    produce_all(&brokers, &names.input, &on(0, &a_lines, "u-zhao"));
    produce_all(&brokers, &names.input, &on(1, &b_history, "u-wu"));
    let mut lists = Reader::new(&brokers, &lists_topic, OUT_PARTS, false);
    assert!(
        lists.wait_for(|r| r.iter().any(|x| x.json()["value"] == "p-mule-77")),
        "the block was not published"
    );
    // Both instances hold it (B read it from the topic).
    b.wait_metrics("B to hold the block", |m| {
        m.list_entries
            .with_label_values(&["counterparty", "block"])
            .get()
            >= 1
    });
    produce_all(&brokers, &names.input, &on(1, &b_last, "u-wu"));
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    assert!(
        decisions.wait_for(|r| r.iter().any(|d| d.json()["event_id"] == paid.as_str())),
        "no decision for u-wu's payment"
    );
    let d = decisions.by_event()[&paid][0].clone();
    let hits = b
        .metrics
        .list_hits
        .with_label_values(&["counterparty", "block"])
        .get()
        + a.metrics
            .list_hits
            .with_label_values(&["counterparty", "block"])
            .get();
    a.stop(&rt).expect("A stops");
    b.stop(&rt).expect("B stops");
    assert_eq!(d["action"], "freeze", "{d}");
    assert_eq!(d["reasons"][0]["code"], "BLOCKLISTED", "{d}");
    assert!(hits >= 1, "list hits counted");
    drop(rt);
    drop(mock);
}

/// Sends `sig` (`STOP`, `CONT`) to a child process.
fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} failed");
}

/// 10. A stalled member: of two instances in one group, A stops (SIGSTOP, as a paused VM or a
///     throttled container) for twice its session while events stream, so the group gives all
///     partitions to B; then A resumes with its work in flight. A must notice at once that it
///     stalled (`/readyz` 503, `walletguard_stalls_total`), write nothing more for partitions
///     it held, and the whole run must decide every event exactly as the pure engine does, a
///     repeat identical to the first decision.
#[test]
fn a_member_paused_past_its_session_writes_nothing_stale() {
    init_logging();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let mut names = Names::new("pause");
    let mut cfg_a = config(&brokers, &mut names, "a");
    let port_a = free_port();
    cfg_a.http.enabled = true;
    cfg_a.http.listen = format!("127.0.0.1:{port_a}");
    cfg_a.kafka.max_batch = 50;
    cfg_a
        .kafka
        .consumer
        .insert("fetch.wait.max.ms".into(), "20".into());
    create_topics(&mock, &cfg_a, 4);
    let mut cfg_b = config(&brokers, &mut names, "b");
    cfg_b.kafka.max_batch = 50;

    let engine = Engine::new(cfg_a.clone());
    let msgs = with_feedback(&engine, sim_events(&small_world(200, 20, 11)));
    let want = expected_partitioned(&engine, &msgs, 4);
    assert!(want.errors.is_empty());
    let total_ids = want.decisions.len();
    let first = msgs.len() / 10;

    produce_all(&brokers, &names.input, &msgs[..first]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = ChildService::start(dir.path(), "a", &cfg_a);
    let mut b = ChildService::start(dir.path(), "b", &cfg_b);
    let mut decisions = Reader::new(&brokers, &names.decisions, OUT_PARTS, false);
    assert!(
        decisions.wait_for(|r| r.len() >= first),
        "the first events were not decided:\n{}\n{}",
        a.log(),
        b.log()
    );
    // Both hold partitions before the pause.
    let deadline = std::time::Instant::now() + WAIT;
    while !a.log().contains("partitions assigned") || !b.log().contains("partitions assigned") {
        a.assert_running();
        b.assert_running();
        assert!(
            std::time::Instant::now() < deadline,
            "both never held partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Stream the rest; A stops mid-stream for 12 s (session 6 s), then resumes.
    let streamer = stream(&brokers, &names.input, msgs[first..].to_vec(), 600);
    std::thread::sleep(Duration::from_secs(2));
    signal(&a.child, "STOP");
    std::thread::sleep(Duration::from_secs(12));
    signal(&a.child, "CONT");
    // Within moments of resuming, A says it is not ready (its partitions are in doubt).
    let resumed = std::time::Instant::now();
    let mut saw_unready = false;
    while resumed.elapsed() < Duration::from_secs(3) {
        if let Some(t) = http_get(port_a, "/metrics") {
            if sample(&t, "walletguard_stalls_total").unwrap_or(0.0) >= 1.0 {
                saw_unready = http_get(port_a, "/readyz").is_some_and(|b| b.contains("not ready"));
                if saw_unready {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        saw_unready,
        "A did not report the stall and readiness lost within 3 s of resuming:\n{}",
        a.log()
    );

    let all = decisions.wait_for(|r| distinct_events(r) >= total_ids);
    streamer.join().expect("streamer");
    a.assert_running();
    b.assert_running();
    assert!(
        all,
        "only {} of {total_ids} events decided after the pause:\nA:\n{}\nB:\n{}",
        distinct_events(&decisions.recs),
        a.log(),
        b.log()
    );
    decisions.drain();
    let got = decisions.by_event();
    assert_decided_as_one_engine(got, &want.decisions);
    // A took partitions again after the stall and ended ready.
    let deadline = std::time::Instant::now() + WAIT;
    while http_get(port_a, "/readyz").is_none_or(|b| !b.starts_with("ready")) {
        assert!(
            std::time::Instant::now() < deadline,
            "A never ready again:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = http_get(port_a, "/metrics").unwrap_or_default();
    eprintln!(
        "pause test: {} events; A fenced {} outputs, {} changelog records, {} offsets, {} commits",
        msgs.len(),
        sample(&text, "walletguard_fenced_total{what=\"outputs\"}").unwrap_or(0.0),
        sample(&text, "walletguard_fenced_total{what=\"changelog\"}").unwrap_or(0.0),
        sample(&text, "walletguard_fenced_total{what=\"offsets\"}").unwrap_or(0.0),
        sample(&text, "walletguard_fenced_total{what=\"commit\"}").unwrap_or(0.0),
    );
    drop(mock);
}
