//! `walletguard simulate` and `walletguard eval`: determinism, label/event agreement, exact
//! metrics on hand-made cases, clear errors, and valid PNG curves.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use walletguard::engine::event::{parse_event, Status};
use walletguard::tools::eval::{self, labels::read_labels, report::Sources, EvalError};
use walletguard::tools::sim::{self, Scenario, SimParams, Simulator};
use walletguard::{Config, Engine};

fn params(seed: u64) -> SimParams {
    SimParams {
        users: 400,
        days: 24,
        seed,
        // More attacks than the default so every scenario shows up in a small run.
        attack_rate: 0.15,
        novelty_rate: 0.1,
        ..SimParams::default()
    }
}

fn simulate(dir: &Path, name: &str, p: &SimParams) -> (PathBuf, PathBuf) {
    let ev = dir.join(format!("{name}.jsonl"));
    let lab = dir.join(format!("{name}.csv"));
    sim::write_files(p, &ev, &lab).unwrap();
    (ev, lab)
}

fn inputs(ev: &Path, lab: &Path) -> Sources {
    Sources {
        events: ev.display().to_string(),
        labels: lab.display().to_string(),
        decisions: None,
        config: None,
    }
}

#[test]
fn simulate_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, l1) = simulate(dir.path(), "a", &params(7));
    let (e2, l2) = simulate(dir.path(), "b", &params(7));
    let (e3, _) = simulate(dir.path(), "c", &params(8));
    assert_eq!(fs::read(&e1).unwrap(), fs::read(&e2).unwrap());
    assert_eq!(fs::read(&l1).unwrap(), fs::read(&l2).unwrap());
    assert_ne!(fs::read(&e1).unwrap(), fs::read(&e3).unwrap());

    // The in-memory iterator yields exactly what the file holds.
    let mut lines = Vec::new();
    for ev in Simulator::new(&params(7)).unwrap() {
        ev.write_json(&mut lines);
        lines.push(b'\n');
    }
    assert_eq!(lines, fs::read(&e1).unwrap());
}

#[test]
fn labels_match_events_and_events_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let p = params(3);
    let (ev, lab) = simulate(dir.path(), "s", &p);
    let events = fs::read_to_string(&ev).unwrap();
    let labels = fs::read_to_string(&lab).unwrap();
    let mut rows = labels.lines();
    assert_eq!(rows.next(), Some("event_id,user_id,label,scenario"));

    let day0 = p.day0_ms();
    let mut last_ts = i64::MIN;
    let mut balance: HashMap<String, f64> = HashMap::new();
    let mut seen_scenarios: HashMap<String, usize> = HashMap::new();
    let mut drain_transfers: HashMap<String, usize> = HashMap::new();
    let mut n = 0;
    for line in events.lines() {
        n += 1;
        let e = parse_event(line.as_bytes()).unwrap_or_else(|err| panic!("{err}: {line}"));
        let row: Vec<&str> = rows
            .next()
            .expect("a label row per event")
            .split(',')
            .collect();
        assert_eq!(row.len(), 4);
        assert_eq!((row[0], row[1]), (&*e.event_id, &*e.user_id));
        let attack = row[2] == "1";
        assert!(row[2] == "0" || attack);
        *seen_scenarios.entry(row[3].to_owned()).or_default() += 1;
        let known_attack = Scenario::ATTACKS.iter().any(|s| s.as_str() == row[3]);
        assert_eq!(attack, known_attack, "label and scenario agree: {row:?}");
        if attack {
            assert!(
                e.ts_ms >= day0 + 14 * 86_400_000,
                "attacks start after 14 days of history"
            );
        }
        if row[3] == "slow_drain" && e.kind.is_money_out() {
            *drain_transfers.entry(e.user_id.to_string()).or_default() += 1;
        }
        assert!(e.ts_ms >= last_ts, "time order");
        last_ts = e.ts_ms;
        if let Some(b) = e.balance_after {
            let amount = e.amount.unwrap();
            if let Some(prev) = balance.get(&*e.user_id) {
                let expect = match (e.status, e.kind.is_money_in()) {
                    (Status::Failed, _) => *prev,
                    (_, true) => prev + amount,
                    (_, false) => prev - amount,
                };
                assert!((expect - b).abs() < 0.005, "balance of {line}");
            }
            if e.status == Status::Failed && e.kind.is_money_out() {
                let r = e.failure_reason.as_deref().unwrap();
                if r == "insufficient_funds" {
                    assert!(amount > b, "fails only when the balance is short: {line}");
                }
            }
            balance.insert(e.user_id.to_string(), b);
        } else {
            assert!(!e.kind.is_money(), "every money event has balance_after");
        }
    }
    assert_eq!(rows.next(), None, "no extra label rows");
    // A slow drain is a series: it plays out inside the window (here 10 days after the 14 of
    // history, 1-3 days between transfers), never cut to a transfer or two by its end.
    assert!(!drain_transfers.is_empty());
    for (user, k) in &drain_transfers {
        assert!(*k >= 3, "{user}: slow drain of {k} transfers");
    }
    assert!(n > 10_000);
    // Every scenario and novelty kind of the (default) world.
    let world = &p.world;
    let novelties = world.novelties.iter().map(|n| n.kind);
    for s in world.attacks.iter().copied().chain(novelties) {
        assert!(seen_scenarios.contains_key(s.as_str()), "{s:?} present");
    }
    assert_eq!(seen_scenarios.len(), 1 + 6 + 5, "{seen_scenarios:?}");
    // Both ts forms the contract allows appear, strings most.
    let millis = events.lines().filter(|l| l.contains("\"ts\":1")).count();
    assert!(millis > 0 && millis < n / 3);
    assert!(events.contains("+08:00\"") && events.contains("Z\""));
}

#[test]
fn to_event_matches_the_json_form() {
    let sim = Simulator::new(&SimParams {
        users: 50,
        days: 3,
        ..SimParams::default()
    })
    .unwrap();
    let mut buf = Vec::new();
    for ev in sim.take(2000) {
        buf.clear();
        ev.write_json(&mut buf);
        let parsed = parse_event(&buf).unwrap();
        assert_eq!(parsed, ev.to_event());
    }
}

const EVENTS: &str = r#"{"event_id":"a1","user_id":"v","ts":"2026-09-20T01:00:00Z","type":"login","device_id":"x"}
{"event_id":"b1","user_id":"b","ts":"2026-09-20T01:00:30Z","type":"payment","amount":20,"counterparty":"m-1","balance_after":80}
{"event_id":"a2","user_id":"v","ts":"2026-09-20T01:01:00Z","type":"transfer","amount":100,"counterparty":"p-9","balance_after":900}
{"event_id":"b2","user_id":"b","ts":"2026-09-20T01:02:00Z","type":"login"}
not an event
{"event_id":"a3","user_id":"v","ts":"2026-09-20T01:03:00Z","type":"transfer","amount":300,"counterparty":"p-9","balance_after":600}
{"event_id":"a4","user_id":"v","ts":"2026-09-20T01:04:00Z","type":"transfer","amount":600,"counterparty":"p-9","balance_after":0}
{"event_id":"c1","user_id":"c","ts":"2026-09-20T02:00:00Z","type":"login","device_id":"new"}
"#;

const LABELS: &str = "event_id,user_id,label,scenario
a1,v,1,account_takeover
a2,v,1,account_takeover
a3,v,1,account_takeover
a4,v,1,account_takeover
b1,b,0,
b2,b,0,
c1,c,0,new_phone
";

fn decisions(f: impl Fn(&str) -> (f64, &'static str)) -> String {
    ["a1", "b1", "a2", "b2", "a3", "a4", "c1"]
        .iter()
        .map(|id| {
            let (s, a) = f(id);
            format!("{{\"event_id\":\"{id}\",\"user_id\":\"?\",\"score\":{s},\"action\":\"{a}\",\"reasons\":[]}}\n")
        })
        .collect()
}

fn eval_decisions(dir: &Path, dec: &str) -> Result<eval::report::Report, EvalError> {
    let (ev, lab, d) = (dir.join("e.jsonl"), dir.join("l.csv"), dir.join("d.jsonl"));
    fs::write(&ev, EVENTS).unwrap();
    fs::write(&lab, LABELS).unwrap();
    fs::write(&d, dec).unwrap();
    let labels = read_labels(&lab)?;
    let scored = eval::score_from_decisions(&d, &ev, &labels)?;
    Ok(eval::evaluate(inputs(&ev, &lab), &scored, &labels).0)
}

#[test]
fn perfect_scorer_gets_everything_and_all_allow_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let perfect = eval_decisions(
        dir.path(),
        &decisions(|id| {
            if id.starts_with('a') {
                (0.99, "freeze")
            } else {
                (0.01, "allow")
            }
        }),
    )
    .unwrap();
    let f = &perfect.figures;
    assert_eq!(perfect.invalid_events, 1);
    let ato = &f.scenarios[0];
    assert_eq!(ato.scenario, "account_takeover");
    assert_eq!(ato.instances, 1);
    assert_eq!(ato.recall, Some(1.0));
    assert_eq!(ato.freeze_recall, Some(1.0));
    assert_eq!(ato.money_out, 1000.0);
    assert_eq!(ato.money_saved_share, Some(1.0));
    assert_eq!(ato.median_delay_events, Some(0.0));
    assert_eq!(ato.median_delay_seconds, Some(0.0));
    assert_eq!(f.overall.pr_auc, Some(1.0));
    assert_eq!(f.overall.roc_auc, Some(1.0));
    assert_eq!(f.overall.alert_precision, Some(1.0));
    assert_eq!(f.overall.benign_users, 2);
    assert_eq!(f.overall.false_freeze_rate_benign_users, Some(0.0));
    assert_eq!(f.novelties[0].kind, "new_phone");
    assert_eq!(f.novelties[0].false_freeze_rate, Some(0.0));

    let none = eval_decisions(dir.path(), &decisions(|_| (0.0, "allow"))).unwrap();
    let ato = &none.figures.scenarios[0];
    assert_eq!(ato.recall, Some(0.0));
    assert_eq!(ato.freeze_recall, Some(0.0));
    assert_eq!(ato.money_saved_share, Some(0.0));
    assert_eq!(ato.median_delay_events, None);
    assert_eq!(none.figures.overall.alert_precision, None);
    assert_eq!(none.figures.overall.roc_auc, Some(0.5));

    // A late freeze: on the 3rd money-out (600 of 1000), after the freeze window.
    let late = eval_decisions(
        dir.path(),
        &decisions(|id| match id {
            "a3" => (0.6, "review"),
            "a4" => (0.95, "freeze"),
            "c1" => (0.92, "freeze"),
            _ => (0.1, "allow"),
        }),
    )
    .unwrap();
    let ato = &late.figures.scenarios[0];
    assert_eq!(ato.recall, Some(1.0));
    assert_eq!(ato.freeze_recall, Some(0.0));
    assert_eq!(ato.money_saved_share, Some(0.6));
    assert_eq!(ato.median_delay_events, Some(2.0));
    assert_eq!(ato.median_delay_seconds, Some(180.0));
    let o = &late.figures.overall;
    assert_eq!(o.false_freeze_rate_benign_users, Some(0.5));
    assert_eq!(late.figures.novelties[0].false_freeze_rate, Some(1.0));
    assert_eq!(o.alert_precision, Some(2.0 / 3.0));
}

#[test]
fn malformed_inputs_give_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut dec = decisions(|_| (0.5, "review"));
    dec = dec.replacen("\"review\"", "\"maybe\"", 2);
    let msg = eval_decisions(dir.path(), &dec).unwrap_err().to_string();
    assert!(
        msg.contains("d.jsonl line 1") && msg.contains("maybe"),
        "{msg}"
    );

    let dec = decisions(|_| (1.5, "review"));
    let msg = eval_decisions(dir.path(), &dec).unwrap_err().to_string();
    assert!(msg.contains("line 1") && msg.contains("score"), "{msg}");

    let dec = "{\"event_id\":\"a1\",\"score\":0.1}\n";
    let msg = eval_decisions(dir.path(), dec).unwrap_err().to_string();
    assert!(msg.contains("line 1") && msg.contains("action"), "{msg}");

    let dec = decisions(|_| (0.1, "allow")).replace("\"c1\"", "\"zz\"");
    let msg = eval_decisions(dir.path(), &dec).unwrap_err().to_string();
    assert!(
        msg.contains("e.jsonl line 8") && msg.contains("no decision"),
        "{msg}"
    );

    let lab = dir.path().join("bad.csv");
    for (text, want) in [
        ("event_id,user_id,label,scenario\na1,v,2,x\n", "line 2"),
        (
            "event_id,user_id,label,scenario\na1,v,0,\na1,v,0,\n",
            "line 3",
        ),
        (
            "event_id,user_id,label,scenario\na1,v\n",
            "expected 4 fields",
        ),
        ("id,user,label,scenario\n", "header"),
        ("", "empty"),
    ] {
        fs::write(&lab, text).unwrap();
        let msg = read_labels(&lab).unwrap_err().to_string();
        assert!(msg.contains("bad.csv") && msg.contains(want), "{msg}");
    }

    // An event without a label row.
    let ev = dir.path().join("e.jsonl");
    fs::write(&lab, "event_id,user_id,label,scenario\na1,v,1,x\n").unwrap();
    let labels = read_labels(&lab).unwrap();
    let engine = Engine::new(Config::default());
    let msg = eval::score_with_engine(&engine, &ev, &labels, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 2") && msg.contains("\"b1\""), "{msg}");
}

#[test]
fn pipeline_and_decisions_modes_agree_and_pngs_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (ev, lab) = simulate(dir.path(), "s", &params(5));
    let labels = read_labels(&lab).unwrap();
    let engine = Engine::new(Config::default());
    let saved = dir.path().join("decisions.jsonl.gz");
    let scored = eval::score_with_engine(&engine, &ev, &labels, Some(&saved)).unwrap();
    let (report, curves) = eval::evaluate(inputs(&ev, &lab), &scored, &labels);
    let names: Vec<&str> = report
        .figures
        .scenarios
        .iter()
        .map(|s| s.scenario.as_str())
        .collect();
    assert_eq!(names.len(), 7, "six scenarios and `all`: {names:?}");
    assert_eq!(report.figures.novelties.len(), 5);

    let reread = eval::score_from_decisions(&saved, &ev, &labels).unwrap();
    let (report2, _) = eval::evaluate(inputs(&ev, &lab), &reread, &labels);
    // Scores in the file have four decimals, so AUCs may move slightly; all else is equal.
    let mut a = report.figures.clone();
    let mut b = report2.figures.clone();
    for f in [&mut a, &mut b] {
        f.overall.pr_auc = None;
        f.overall.roc_auc = None;
    }
    assert_eq!(a, b);

    let out = dir.path().join("report");
    eval::write_outputs(&out, &report, &curves).unwrap();
    for name in ["pr.png", "roc.png"] {
        let file = fs::File::open(out.join(name)).unwrap();
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut img = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut img).unwrap();
        assert_eq!((info.width, info.height), eval::plot::SIZE, "{name}");
        // Not blank: the curve and axes put non-white pixels in.
        assert!(img.iter().any(|&b| b < 128), "{name} has ink");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("report.json")).unwrap()).unwrap();
    assert!(json["overall"]["roc_auc"].is_number());
    assert!(json["scenarios"].as_array().unwrap().len() == 7);
    let md = fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| account_takeover |") && md.contains("pr.png"));
    assert!(report.table().contains("false-freeze"));
}

#[test]
fn rejects_bad_parameters() {
    let bad = SimParams {
        attack_rate: 1.5,
        ..SimParams::default()
    };
    assert!(Simulator::new(&bad).is_err());
    assert!(sim::parse_date("2026-13").is_err());
    assert_eq!(sim::parse_date("2026-09-01").unwrap(), (2026, 9, 1));
}
