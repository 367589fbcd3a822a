//! `walletguard calibrate` on a simulated world whose base config freezes too many honest
//! users: the calibrated overlay brings the false-freeze share within the budget on the
//! held-out later part, and the overlay, loaded over the same files, reproduces the figures
//! calibrate reported.

mod common;

use std::path::{Path, PathBuf};

use walletguard::engine::pipeline::Engine;
use walletguard::service::config::Config;
use walletguard::tools::calibrate::{self, Budgets, CalibrateInputs};
use walletguard::tools::compare::{self, CompareInputs};

fn simulate(dir: &Path) -> (PathBuf, PathBuf) {
    let (events, labels) = (dir.join("events.jsonl"), dir.join("labels.csv"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_walletguard"))
        .env_remove("WALLETGUARD_CONFIG")
        .args([
            "simulate", "--users", "1500", "--days", "30", "--seed", "21", "--out",
        ])
        .arg(&events)
        .arg("--labels")
        .arg(&labels)
        .output()
        .expect("run simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (events, labels)
}

#[test]
fn calibrate_brings_false_freezes_within_budget_out_of_time_and_its_overlay_reproduces_them() {
    let dir = tempfile::tempdir().unwrap();
    let (events, labels) = simulate(dir.path());
    // A deployment whose freeze threshold sits just above its step-up: too harsh.
    let harsh = dir.path().join("harsh.toml");
    std::fs::write(&harsh, "[decision]\nstep_up = 0.46\nfreeze = 0.47\n").unwrap();
    let files = vec![common::config_path(), harsh];
    let base = Config::load_layers(&files).unwrap();
    let budget = 0.002;
    let cal = calibrate::run(
        &base,
        CalibrateInputs {
            events: &events,
            labels: Some(&labels),
            base_name: "harsh".into(),
            partitions: 1,
            lists: Default::default(),
            progress: false,
        },
        Budgets {
            false_freeze: budget,
            fit_share: 0.5,
            ..Budgets::default()
        },
    )
    .expect("calibrate");
    let b = &cal.held_out.budget;
    let (before, after) = (
        b.false_freeze_share[0].unwrap(),
        b.false_freeze_share[1].unwrap(),
    );
    assert!(
        before > budget,
        "the base must be over budget held out: {before}"
    );
    assert!(
        after <= budget,
        "calibrated held out {after} > budget {budget}"
    );
    assert!(cal.held_out.from_ts == Some(cal.split_ts));
    assert!(cal.held_out.eval.is_some(), "labels give the eval tables");
    let freeze = cal
        .changes
        .iter()
        .find(|c| c.key == "decision.freeze")
        .expect("the freeze threshold moves");
    assert!(
        freeze.why.contains("users without confirmed fraud"),
        "{}",
        freeze.why
    );

    // The overlay holds only the changed keys, and loaded over the same files it gives the
    // same config (`write` checks that too) and the same held-out figures.
    let overlay = dir.path().join("overlay.toml");
    calibrate::write(&cal, &overlay, &files, "test").expect("write overlay");
    let text = std::fs::read_to_string(&overlay).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    fn leaves(t: &toml::Table) -> usize {
        t.values()
            .map(|v| match v {
                toml::Value::Table(t) => leaves(t),
                _ => 1,
            })
            .sum()
    }
    assert_eq!(leaves(&table), cal.changes.len(), "{text}");
    assert!(text.contains("# fit part after its warm-up"), "{text}");
    let mut layered = files.clone();
    layered.push(overlay.clone());
    let loaded = Config::load_layers(&layered).unwrap();
    assert_eq!(loaded, cal.candidate);
    let again = compare::run(
        &Engine::new(base.clone()),
        &Engine::new(loaded),
        CompareInputs {
            events: &events,
            labels: Some(&labels),
            names: ("harsh".into(), "overlay".into()),
            partitions: 1,
            lists: Default::default(),
            from_ts: Some(cal.split_ts),
            progress: false,
        },
    )
    .unwrap();
    assert_eq!(again.budget, cal.held_out.budget);
    assert_eq!(again.flips.matrix, cal.held_out.flips.matrix);
    assert_eq!(
        again.eval.as_ref().map(|e| &e.figures),
        cal.held_out.eval.as_ref().map(|e| &e.figures)
    );
    for side in [".report.json", ".report.md"] {
        let p = dir.path().join(format!("overlay.toml{side}"));
        assert!(std::fs::metadata(&p).unwrap().len() > 100, "{side}");
    }
}

/// Calibrates `events` under the harsh base of the test above, with or without `labels`.
fn calibrate_harsh(dir: &Path, events: &Path, labels: Option<&Path>) -> calibrate::Calibration {
    let harsh = dir.join("harsh.toml");
    std::fs::write(&harsh, "[decision]\nstep_up = 0.46\nfreeze = 0.47\n").unwrap();
    let base = Config::load_layers(&[common::config_path(), harsh]).unwrap();
    calibrate::run(
        &base,
        CalibrateInputs {
            events,
            labels,
            base_name: "harsh".into(),
            partitions: 1,
            lists: Default::default(),
            progress: false,
        },
        Budgets {
            false_freeze: 0.002,
            fit_share: 0.5,
            ..Budgets::default()
        },
    )
    .expect("calibrate")
}

#[test]
fn confirmed_fraud_verdicts_in_the_history_stand_in_for_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (events, labels) = simulate(dir.path());
    // One `confirmed_fraud` verdict per attacked user, on one of their attack events, at
    // the history's last instant (so the time split does not move).
    let text = std::fs::read_to_string(&events).unwrap();
    let last = text
        .lines()
        .filter_map(|l| walletguard::engine::event::parse_event(l.as_bytes()).ok())
        .map(|e| e.ts_ms)
        .max()
        .unwrap();
    let mut attacked = std::collections::BTreeMap::new();
    for row in std::fs::read_to_string(&labels).unwrap().lines().skip(1) {
        let f: Vec<&str> = row.split(',').collect();
        if f.get(2) == Some(&"1") {
            attacked.entry(f[1].to_owned()).or_insert(f[0].to_owned());
        }
    }
    assert!(
        attacked.len() >= 5,
        "the world has attacks: {}",
        attacked.len()
    );
    let mut with_verdicts = text.clone();
    for (n, (user, event)) in attacked.iter().enumerate() {
        let v = serde_json::json!({"event_id": format!("verdict-{n}"), "user_id": user,
            "ts": last, "type": "case_verdict", "ref_event_id": event, "verdict": "confirmed_fraud"});
        with_verdicts.push_str(&format!("{v}\n"));
    }
    let verdicts = dir.path().join("verdicts.jsonl");
    std::fs::write(&verdicts, with_verdicts).unwrap();

    let by_labels = calibrate_harsh(dir.path(), &events, Some(&labels));
    let by_verdicts = calibrate_harsh(dir.path(), &verdicts, None);
    let neither = calibrate_harsh(dir.path(), &events, None);
    // The same users count as confirmed, so the same thresholds and the same held-out share
    // of honest users frozen.
    assert_eq!(by_verdicts.fit_users, by_labels.fit_users);
    assert!(by_labels.fit_users.1 < by_labels.fit_users.0);
    let d = |c: &calibrate::Calibration| {
        let d = &c.candidate.decision;
        (d.review, d.step_up, d.freeze)
    };
    assert_eq!(d(&by_verdicts), d(&by_labels));
    let (bv, bl) = (&by_verdicts.held_out.budget, &by_labels.held_out.budget);
    assert_eq!(bv.unconfirmed_users, bl.unconfirmed_users);
    assert_eq!(bv.frozen_unconfirmed, bl.frozen_unconfirmed);
    assert!(
        by_verdicts.held_out.eval.is_none(),
        "no labels, no eval tables"
    );
    // Without either, every frozen user counts against the budget.
    assert_eq!(neither.fit_users.1, neither.fit_users.0);
    assert_eq!(neither.held_out.budget.confirmed_users, 0);
}

#[test]
fn calibrate_without_separable_labels_keeps_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (events, labels) = simulate(dir.path());
    // Labels that say nothing: the attacked users are labelled honest and as many honest
    // users, picked by their place in the file, are labelled attacked.
    let text = std::fs::read_to_string(&labels).unwrap();
    let mut rows: Vec<Vec<String>> = text
        .lines()
        .skip(1)
        .map(|r| r.split(',').map(str::to_owned).collect())
        .collect();
    let attacked: std::collections::BTreeSet<String> = rows
        .iter()
        .filter(|f| f[2] == "1")
        .map(|f| f[1].clone())
        .collect();
    let mut honest: Vec<String> = rows
        .iter()
        .map(|f| f[1].clone())
        .filter(|u| !attacked.contains(u))
        .collect();
    honest.dedup();
    honest.sort();
    honest.dedup();
    let step = (honest.len() / attacked.len().max(1)).max(1);
    let fake: std::collections::BTreeSet<String> = honest
        .iter()
        .step_by(step)
        .take(attacked.len())
        .cloned()
        .collect();
    assert!(fake.len() >= 5, "{}", fake.len());
    for f in &mut rows {
        f[2] = if fake.contains(&f[1]) { "1" } else { "0" }.into();
    }
    let noise = dir.path().join("noise.csv");
    let mut out = String::from("event_id,user_id,label,scenario,benign_kind,amount\n");
    for f in &rows {
        out.push_str(&f.join(","));
        out.push('\n');
    }
    std::fs::write(&noise, out).unwrap();

    let thresholds = |c: &calibrate::Calibration| {
        let d = &c.candidate.decision;
        (d.review, d.step_up, d.freeze)
    };
    let harsh = (0.45, 0.46, 0.47);
    for (name, cal) in [
        ("no labels", calibrate_harsh(dir.path(), &events, None)),
        (
            "labels that say nothing",
            calibrate_harsh(dir.path(), &events, Some(&noise)),
        ),
    ] {
        assert_eq!(thresholds(&cal), harsh, "{name}: {:?}", cal.notes);
        assert!(
            cal.notes
                .iter()
                .any(|n| n.contains("thresholds kept at the base")),
            "{name}: {:?}",
            cal.notes
        );
    }
    // The real labels separate, and calibrate moves the harsh freeze threshold.
    let real = calibrate_harsh(dir.path(), &events, Some(&labels));
    assert_ne!(thresholds(&real), harsh, "{:?}", real.notes);
    assert!(!real
        .notes
        .iter()
        .any(|n| n.contains("thresholds kept at the base")));
}
