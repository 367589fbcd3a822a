//! `walletguard calibrate` on a simulated world whose base config freezes too many honest
//! users: the calibrated overlay brings the false-freeze share within the budget on the
//! held-out later part, and the overlay, loaded over the same files, reproduces the figures
//! calibrate reported.

mod common;

use std::path::{Path, PathBuf};

use walletguard::calibrate::{self, Budgets, Inputs};
use walletguard::compare::{self, CompareInputs};
use walletguard::config::Config;
use walletguard::pipeline::Engine;

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
        Inputs {
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
