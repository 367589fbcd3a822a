//! `walletguard compare` on hand-built streams: a config against itself changes nothing, and a
//! threshold change flips exactly the events its threshold predicts, under exactly their
//! reason codes. Layered config files: the later file wins, and a bad key names its file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;
use walletguard::engine::pipeline::Engine;
use walletguard::service::config::{Config, Layer};
use walletguard::tools::compare::{self, CompareInputs, CompareReport};
use walletguard::tools::replay::{self, Partitioned, Sinks};

const START: Date = (2026, 3, 2);
const DAY: Date = (2026, 4, 7);

/// Five users, five weeks of ordinary life each, then something unusual: a trip to London, a
/// new phone paying a new payee, a large transfer to a new payee from home, a takeover from
/// Lagos draining the balance, and nothing at all.
fn stream() -> Vec<String> {
    let mut lines = Vec::new();
    let mut s = Story::new("u-trip", 20_000.0, Actor::new("d-trip", SHANGHAI), 1);
    s.live_in_shanghai(START, 36);
    s.actor = Actor::new("d-trip", LONDON);
    for i in 0..3 {
        s.london_day(add_days(DAY, i));
    }
    lines.extend(s.lines());
    let mut s = Story::new("u-phone", 20_000.0, Actor::new("d-old", SHANGHAI), 2);
    s.live_in_shanghai(START, 36);
    s.actor = Actor::new("d-new", SHANGHAI);
    let t = local_ms(CST, DAY, 10, 0);
    s.security(t, "device_bind");
    s.login(t + MIN);
    s.transfer(t + 3 * MIN, Amount::Cents(300_000), "p-landlord");
    lines.extend(s.lines());
    let mut s = Story::new("u-big", 40_000.0, Actor::new("d-big", SHANGHAI), 3);
    s.live_in_shanghai(START, 36);
    let t = local_ms(CST, DAY, 15, 0);
    s.login(t);
    s.transfer(t + 2 * MIN, Amount::BalanceShare(0.6), "p-car-dealer");
    lines.extend(s.lines());
    let mut s = Story::new("u-ato", 30_000.0, Actor::new("d-victim", SHANGHAI), 4);
    s.live_in_shanghai(START, 36);
    s.actor = Actor::new("d-thief", LAGOS);
    let t = local_ms(CST, DAY, 3, 0);
    s.security(t, "password_reset");
    s.login(t + MIN);
    s.transfer(t + 4 * MIN, Amount::BalanceShare(0.5), "p-mule-1");
    s.transfer(t + 9 * MIN, Amount::BalanceShare(0.9), "p-mule-2");
    lines.extend(s.lines());
    let mut s = Story::new("u-calm", 10_000.0, Actor::new("d-calm", SHANGHAI), 5);
    s.live_in_shanghai(START, 40);
    lines.extend(s.lines());
    // One stream in time order, as a topic would hold it.
    let mut keyed: Vec<(i64, String)> = lines
        .into_iter()
        .map(|l| {
            let v: Value = serde_json::from_str(&l).expect("story line");
            let ts = match &v["ts"] {
                Value::Number(n) => n.as_i64().unwrap_or(0),
                Value::String(s) => walletguard::engine::time::parse_rfc3339(s).unwrap_or(0),
                _ => 0,
            };
            (ts, l)
        })
        .collect();
    keyed.sort_by_key(|(ts, _)| *ts);
    keyed.into_iter().map(|(_, l)| l).collect()
}

fn shipped() -> Layer {
    Layer {
        name: "walletguard.toml".into(),
        text: std::fs::read_to_string(config_path()).expect("shipped config"),
    }
}

/// The shipped config with `overlay` laid over it. Reviewed events are learned, so that a
/// review threshold changes decisions and nothing the profiles learn.
fn config(overlay: &str) -> Config {
    let learn = Layer {
        name: "learn.toml".into(),
        text: "[decision]\nlearn_reviewed = true\n".into(),
    };
    let over = Layer {
        name: "overlay.toml".into(),
        text: overlay.into(),
    };
    Config::from_layers_with_env(&[shipped(), learn, over], std::iter::empty()).expect("config")
}

/// Every decision of a replay: event id → (score, action, reason codes).
fn decisions(cfg: &Config, input: &Path) -> Vec<(String, f64, String, Vec<String>)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.jsonl");
    let engine = Engine::new(cfg.clone());
    let mut router = Partitioned::new(&engine, 1, Default::default());
    let sinks = Sinks {
        decisions: Some(out.clone()),
        ..Sinks::default()
    };
    replay::replay(&engine, &mut router, input, &sinks, &mut || 0, &mut |_| {}).unwrap();
    read_jsonl(&out)
        .into_iter()
        .map(|v| {
            let codes = v["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r.get("snoozed").is_none())
                .filter_map(|r| r["code"].as_str().map(String::from))
                .collect();
            (
                v["event_id"].as_str().unwrap().to_owned(),
                v["score"].as_f64().unwrap(),
                v["action"].as_str().unwrap().to_owned(),
                codes,
            )
        })
        .collect()
}

fn compare(a: &Config, b: &Config, input: &Path) -> CompareReport {
    compare::run(
        &Engine::new(a.clone()),
        &Engine::new(b.clone()),
        CompareInputs {
            events: input,
            labels: None,
            names: ("a".into(), "b".into()),
            partitions: 1,
            lists: Default::default(),
            from_ts: None,
            progress: false,
        },
    )
    .expect("compare")
}

fn write_stream() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("events.jsonl");
    write_lines(&p, &stream());
    (dir, p)
}

#[test]
fn a_config_compared_with_itself_gives_a_diagonal_matrix() {
    let (_dir, input) = write_stream();
    let cfg = config("");
    let r = compare(&cfg, &cfg, &input);
    let m = r.flips.matrix;
    let n = stream().len() as u64;
    assert_eq!(r.flips.events, n);
    for (a, row) in m.iter().enumerate() {
        for (b, v) in row.iter().enumerate() {
            if a != b {
                assert_eq!(*v, 0, "off-diagonal {a},{b}: {m:?}");
            }
        }
    }
    // The stream is not trivial: something was alerted and something frozen.
    assert!(m[1][1] + m[2][2] > 0 && m[3][3] > 0, "{m:?}");
    assert_eq!((r.flips.flipped_up, r.flips.flipped_down), (0, 0));
    assert_eq!((r.flips.freeze_appears, r.flips.freeze_disappears), (0, 0));
    assert_eq!(r.flips.scores_live, r.flips.scores_candidate);
}

/// A review threshold halfway across the widest gap between live scores inside `range`.
fn threshold_in(scores: &[f64], range: (f64, f64)) -> f64 {
    let mut s: Vec<f64> = scores
        .iter()
        .copied()
        .filter(|x| *x > range.0 && *x < range.1)
        .collect();
    s.sort_by(f64::total_cmp);
    s.dedup();
    let (lo, hi) = s
        .windows(2)
        .map(|w| (w[0], w[1]))
        .max_by(|x, y| (x.1 - x.0).total_cmp(&(y.1 - y.0)))
        .expect("two scores in range");
    (lo + hi) / 2.0
}

#[test]
fn a_review_threshold_change_flips_exactly_the_events_between_the_thresholds() {
    let (_dir, input) = write_stream();
    let live = config("");
    let d = decisions(&live, &input);
    let scores: Vec<f64> = d.iter().map(|x| x.1).collect();
    let review = live.decision.review;
    for (range, direction) in [
        ((0.2, review), "lower"),
        ((review, live.decision.step_up), "raise"),
    ] {
        let t = threshold_in(&scores, range);
        let candidate = config(&format!("[decision]\nreview = {t}\n"));
        // What the thresholds predict: allow ↔ review for scores between them; nothing else.
        let mut want = [[0u64; 4]; 4];
        let mut want_codes: BTreeMap<String, u64> = BTreeMap::new();
        let idx = |a: &str| {
            ["allow", "review", "step_up", "freeze"]
                .iter()
                .position(|x| *x == a)
                .unwrap()
        };
        for (_, score, action, codes) in &d {
            let a = idx(action);
            let b = match action.as_str() {
                "allow" if *score >= t => 1,
                "review" if *score < t => 0,
                _ => a,
            };
            want[a][b] += 1;
            if a != b {
                for c in codes {
                    *want_codes.entry(c.clone()).or_default() += 1;
                }
            }
        }
        let flipped: u64 = (0..4)
            .flat_map(|a| (0..4).map(move |b| (a, b)))
            .filter(|(a, b)| a != b)
            .map(|(a, b)| want[a][b])
            .sum();
        assert!(
            flipped > 0,
            "{direction}: the threshold {t} must flip something"
        );
        let r = compare(&live, &candidate, &input);
        assert_eq!(r.flips.matrix, want, "{direction}: review = {t}");
        let got_codes: BTreeMap<String, u64> = r
            .flips
            .by_reason
            .iter()
            .filter(|x| x.up + x.down > 0)
            .map(|x| (x.code.to_owned(), x.up + x.down))
            .collect();
        assert_eq!(got_codes, want_codes, "{direction}: flips by reason");
        // Review never freezes: no user's freeze appears or disappears.
        assert_eq!((r.flips.freeze_appears, r.flips.freeze_disappears), (0, 0));
    }
}

#[test]
fn a_freeze_threshold_raised_out_of_reach_lists_the_users_whose_freeze_disappears() {
    let (_dir, input) = write_stream();
    let live = config("");
    let d = decisions(&live, &input);
    let frozen: std::collections::BTreeSet<&str> = d
        .iter()
        .filter(|x| x.2 == "freeze")
        .map(|x| x.0.as_str())
        .collect();
    assert!(!frozen.is_empty());
    // Out of reach of the score, and of the stranger's high stake (a floor, not a score).
    let candidate =
        config("[decision]\nfreeze = 1.0\n[decision.habit_stake]\nstranger_freeze = 1.0\n");
    let r = compare(&live, &candidate, &input);
    assert_eq!(r.flips.matrix[3][3], 0, "nothing reaches a score of 1");
    assert!(r.flips.freeze_disappears >= 1);
    let ato = r
        .flips
        .disappears
        .iter()
        .find(|c| c.user_id == "u-ato")
        .expect("the takeover's freeze disappears");
    assert_eq!(ato.live.action, "freeze");
    assert_ne!(ato.candidate.action, "freeze");
    assert!(!ato.live.reasons.is_empty());
}

#[test]
fn the_cli_writes_every_output_and_overlays_layer_in_order() {
    let (dir, input) = write_stream();
    let over = dir.path().join("over.toml");
    std::fs::write(&over, "[decision]\nfreeze = 0.8\n").unwrap();
    let over2 = dir.path().join("over2.toml");
    std::fs::write(
        &over2,
        "[decision]\nfreeze = 1.0\n[decision.habit_stake]\nstranger_freeze = 1.0\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let bin = env!("CARGO_BIN_EXE_walletguard");
    let run = |extra: &[&Path]| {
        let mut c = std::process::Command::new(bin);
        c.env_remove("WALLETGUARD_CONFIG")
            .args(["compare", "--events"])
            .arg(&input)
            .arg("--config")
            .arg(config_path());
        for o in extra {
            c.arg("--overlay").arg(o);
        }
        c.arg("--out").arg(&out);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let report: Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        (String::from_utf8_lossy(&o.stdout).into_owned(), report)
    };
    // The later overlay wins: freeze = 1.0 leaves nothing frozen by the candidate.
    let (stdout, r) = run(&[&over, &over2]);
    assert!(stdout.contains("live \\ candidate"), "{stdout}");
    assert_eq!(r["matrix"][3][3], 0, "{}", r["matrix"]);
    let (_, r2) = run(&[&over2, &over]);
    assert_ne!(r2["matrix"], r["matrix"], "order of overlays matters");
    for f in ["report.json", "report.md", "flips.png", "scores.png"] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 100, "{f}");
    }
    // A bad key in an overlay is named with its file.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[decision]\nfreez = 0.9\n").unwrap();
    let o = std::process::Command::new(bin)
        .env_remove("WALLETGUARD_CONFIG")
        .args(["check-config", "--config"])
        .arg(config_path())
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("bad.toml") && err.contains("decision.freez"),
        "{err}"
    ); // A missing labels file is named, and its OS error said once.
    let o = std::process::Command::new(bin)
        .env_remove("WALLETGUARD_CONFIG")
        .args(["compare", "--events"])
        .arg(&input)
        .arg("--config-b")
        .arg(config_path())
        .arg("--labels")
        .arg(dir.path().join("missing.csv"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("missing.csv"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}
