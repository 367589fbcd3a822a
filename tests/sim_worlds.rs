//! `walletguard simulate --world` and `walletguard worlds`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use serde_json::Value;
use walletguard::engine::event::parse_event;
use walletguard::tools::eval::{self, worlds, worlds::WorldsOptions};
use walletguard::tools::sim::{
    self, Currency, Fields, NoveltyRate, Scenario, SimParams, Simulator,
};
use walletguard::tools::sim::{WorldKind, WorldSpec};
use walletguard::{Config, Engine};

/// Digests of `simulate --users 300 --days 21 --seed 5 --attack-rate 0.2 --novelty-rate 0.2`
/// (events, labels) computed before world specs existed: the default world must not change
/// a byte of it.
const BEFORE_SPECS: (u64, u64) = (0xefa3_8c80_2f9d_a420, 0x594a_a3f7_00a2_babb);

#[test]
fn default_world_is_byte_identical_to_the_generator_before_world_specs() {
    let dir = tempfile::tempdir().unwrap();
    let (ev, lab) = (dir.path().join("e.jsonl"), dir.path().join("l.csv"));
    let p = SimParams {
        users: 300,
        days: 21,
        seed: 5,
        attack_rate: 0.2,
        novelty_rate: 0.2,
        ..SimParams::default()
    };
    sim::write_files(&p, &ev, &lab).unwrap();
    let e = xxhash_rust::xxh3::xxh3_64(&fs::read(&ev).unwrap());
    let l = xxhash_rust::xxh3::xxh3_64(&fs::read(&lab).unwrap());
    assert_eq!((e, l), BEFORE_SPECS, "{e:#x} {l:#x}");
}

fn small(seed: u64, world: WorldSpec) -> SimParams {
    SimParams {
        users: 400,
        days: 30,
        seed,
        attack_rate: 0.3,
        novelty_rate: 0.25,
        world,
        ..SimParams::default()
    }
}

/// The events of a simulation as JSON lines, and their label rows `(label, scenario)`.
fn lines(p: &SimParams) -> (Vec<String>, Vec<(u8, Scenario)>) {
    let mut out = Vec::new();
    let mut labels = Vec::new();
    let mut buf = Vec::new();
    for ev in Simulator::new(p).unwrap() {
        buf.clear();
        ev.write_json(&mut buf);
        // The in-memory event is what the line says.
        assert_eq!(parse_event(&buf).unwrap(), ev.to_event());
        out.push(String::from_utf8(buf.clone()).unwrap());
        labels.push((ev.label(), ev.scenario));
    }
    (out, labels)
}

#[test]
fn the_default_world_is_the_default_of_every_entry_point() {
    assert_eq!(SimParams::default().world, WorldSpec::default());
    assert_eq!(
        WorldSpec::named("default", 77).unwrap(),
        WorldSpec::default()
    );
    let (a, _) = lines(&small(4, WorldSpec::default()));
    let (b, _) = lines(&small(4, WorldSpec::named("default", 4).unwrap()));
    assert_eq!(a, b);
}

#[test]
fn a_random_world_is_deterministic_for_its_seed() {
    for seed in [21, 22] {
        assert_eq!(WorldSpec::random(seed, None), WorldSpec::random(seed, None));
        let p = small(seed, WorldSpec::named("random", seed).unwrap());
        assert_eq!(lines(&p), lines(&p));
    }
    assert_ne!(WorldSpec::random(21, None), WorldSpec::random(22, None));
    let a = lines(&small(21, WorldSpec::random(21, Some(WorldKind::Wallet)))).0;
    let b = lines(&small(22, WorldSpec::random(21, Some(WorldKind::Wallet)))).0;
    assert_ne!(a, b, "the simulation seed matters too");
}

/// The fields of a JSON event other than amount, balance and currency.
fn without_money(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["amount", "balance_after", "currency"] {
            m.remove(k);
        }
    }
    v
}

/// A decimal JSON number as an integer count of `1 / 10^decimals`.
fn fixed(v: &Value, decimals: i32) -> i64 {
    (v.as_f64().unwrap() * 10f64.powi(decimals)).round() as i64
}

#[test]
fn scale_1000_multiplies_every_amount_and_balance_by_exactly_1000() {
    for kind in WorldKind::ALL {
        let mut spec = WorldSpec::random(5, Some(kind));
        spec.fields.balance_after = true;
        spec.currency = Currency {
            code: "CNY".into(),
            scale: 1.0,
            decimals: 2,
            step: 1,
        };
        let mut big = spec.clone();
        big.currency = Currency::for_scale(1000.0);
        assert_eq!((big.currency.decimals, big.currency.step), (0, 10));
        let (a, la) = lines(&small(5, spec));
        let (b, lb) = lines(&small(5, big.clone()));
        assert_eq!((a.len(), &la), (b.len(), &lb), "{kind:?}: the same events");
        let mut money = 0;
        for (x, y) in a.iter().zip(&b) {
            let x: Value = serde_json::from_str(x).unwrap();
            let y: Value = serde_json::from_str(y).unwrap();
            assert_eq!(without_money(&x), without_money(&y), "{kind:?}");
            for k in ["amount", "balance_after"] {
                assert_eq!(x.get(k).is_some(), y.get(k).is_some());
                if let (Some(u), Some(v)) = (x.get(k), y.get(k)) {
                    assert_eq!(fixed(u, 2) * 10, fixed(v, 0), "{kind:?} {k}: {x} vs {y}");
                    money += 1;
                }
            }
            if x.get("currency").is_some() {
                assert_eq!(y["currency"], big.currency.code.as_str());
            }
        }
        assert!(money > 1000, "{kind:?}: {money} amounts compared");
    }
}

#[test]
fn a_world_without_device_ip_and_geo_writes_none_of_them() {
    for kind in WorldKind::ALL {
        let mut spec = WorldSpec::random(8, Some(kind));
        spec.fields = Fields {
            device_id: false,
            ip: false,
            geo: false,
            balance_after: false,
        };
        spec.novelties.retain(|n| n.kind != Scenario::Travel);
        let (evs, _) = lines(&small(8, spec));
        assert!(evs.len() > 1000);
        for e in &evs {
            for key in ["device_id", "ip", "geo", "balance_after"] {
                assert!(!e.contains(&format!("\"{key}\"")), "{kind:?}: {e}");
            }
        }
    }
    // And with every field on, a wallet writes them all.
    let mut spec = WorldSpec::random(8, Some(WorldKind::Wallet));
    spec.fields = Fields::default();
    let (evs, _) = lines(&small(8, spec));
    for key in ["device_id", "ip", "geo", "balance_after"] {
        assert!(
            evs.iter().any(|e| e.contains(&format!("\"{key}\""))),
            "{key}"
        );
    }
}

#[test]
fn every_kind_stages_its_attacks_and_its_honest_behaviours_with_labels() {
    for kind in WorldKind::ALL {
        let mut spec = WorldSpec::random(11, Some(kind));
        if kind == WorldKind::Wallet {
            spec.fields = Fields::default();
            spec.attacks = kind.attacks(&spec.fields);
        }
        spec.novelties = kind
            .novelties(&spec.fields)
            .into_iter()
            .map(|k| NoveltyRate {
                kind: k,
                weight: 1.0,
            })
            .collect();
        let p = small(11, spec.clone());
        let (evs, labels) = lines(&p);
        let mut seen: BTreeMap<Scenario, (usize, u8)> = BTreeMap::new();
        for (label, s) in &labels {
            let e = seen.entry(*s).or_default();
            e.0 += 1;
            e.1 |= 1 << label;
        }
        for a in &spec.attacks {
            assert_eq!(
                seen.get(a).map(|e| e.1),
                Some(2),
                "{kind:?}: attack {a:?} labelled 1"
            );
        }
        for n in &spec.novelties {
            let got = seen.get(&n.kind).map(|e| e.1);
            assert_eq!(got, Some(1), "{kind:?}: novelty {:?} labelled 0", n.kind);
        }
        let types: BTreeSet<String> = evs
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap()["type"].to_string())
            .collect();
        match kind {
            WorldKind::Card => assert_eq!(
                types,
                BTreeSet::from(["\"payment\"".into(), "\"refund\"".into()])
            ),
            WorldKind::MobileMoney => assert!(!types.contains("\"login\""), "{types:?}"),
            WorldKind::Wallet => assert!(types.contains("\"login\"")),
        }
    }
}

#[test]
fn a_mule_cashout_shows_no_new_device_and_moves_nearly_the_balance() {
    let mut spec = WorldSpec::random(12, Some(WorldKind::Wallet));
    spec.fields = Fields::default();
    spec.attacks = vec![Scenario::MuleCashout];
    spec.style.share = 1.0;
    let (evs, labels) = lines(&small(12, spec));
    let mut devices: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut checked = 0;
    for (e, (label, _)) in evs.iter().zip(&labels) {
        let v: Value = serde_json::from_str(e).unwrap();
        let user = v["user_id"].as_str().unwrap().to_owned();
        let dev = v
            .get("device_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if *label == 1 {
            if let Some(d) = &dev {
                assert!(devices.get(&user).is_some_and(|s| s.contains(d)), "{e}");
            }
            let big = v["type"] == "transfer"
                && v["status"] == "success"
                && v["amount"].as_f64().unwrap() > 10.0;
            if big {
                let (a, b) = (
                    v["amount"].as_f64().unwrap(),
                    v["balance_after"].as_f64().unwrap(),
                );
                // One transfer takes 92-100% of the balance, or two take 40-60% and then that.
                assert!(b <= a * 1.6, "{e}");
                checked += 1;
            }
        } else if let Some(d) = dev {
            devices.entry(user).or_default().insert(d);
        }
    }
    assert!(checked > 20, "{checked}");
}

#[test]
fn the_in_memory_path_scores_a_world_as_eval_scores_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ev, lab) = (dir.path().join("e.jsonl.gz"), dir.path().join("l.csv"));
    let p = SimParams {
        users: 300,
        ..small(13, WorldSpec::random(13, None))
    };
    sim::write_files(&p, &ev, &lab).unwrap();
    let spec: WorldSpec = serde_json::from_slice(&fs::read(sim::spec_path(&lab)).unwrap()).unwrap();
    assert_eq!(spec, p.world);
    let cfg = Config::default();
    let engine = Engine::new(cfg.clone());
    let source = eval::Source::Pipeline {
        config: Box::new(cfg),
        name: None,
        save_decisions: None,
    };
    let (from_files, _) = eval::run(&ev, &lab, source).unwrap();
    let (scored, names) = worlds::score_simulation(&engine, &p).unwrap();
    let (in_memory, _) = eval::figures::compute(&scored.recs, &names);
    // Users and scenarios are numbered differently (order of appearance in the labels file,
    // or the simulator's numbers), so sums of money add up in another order: equal to the
    // last bits.
    let a = serde_json::to_value(&from_files.figures).unwrap();
    let b = serde_json::to_value(&in_memory).unwrap();
    assert_close(&a, &b, "figures");
}

fn assert_close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{at}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                assert_close(u, v, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (k, u) in x {
                assert_close(u, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn worlds_runs_and_its_worst_row_is_the_worst_of_each_column() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WorldsOptions {
        count: 2,
        first_seed: 1000,
        kind: None,
        base: SimParams {
            users: 200,
            days: 20,
            attack_rate: 0.1,
            ..SimParams::default()
        },
        out: Some(dir.path().to_owned()),
        threads: 2,
        metamorphic: false,
    };
    let mut out = Vec::new();
    let r = worlds::run(&Config::default(), None, &opts, &mut out).unwrap();
    assert_eq!(
        r.worlds.iter().map(|w| w.seed).collect::<Vec<_>>(),
        [1000, 1001]
    );
    let cols: Vec<[Option<f64>; 6]> = r.worlds.iter().map(|w| w.row.columns()).collect();
    let worst = r.worst.columns();
    for i in 0..6 {
        let vals: Vec<f64> = cols.iter().filter_map(|c| c[i]).collect();
        let expect = if i < 2 {
            vals.iter()
                .copied()
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        } else {
            vals.iter()
                .copied()
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
        };
        assert_eq!(worst[i], expect, "column {i}");
    }
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("false-freeze") && lines[0].contains("PR-AUC"),
        "{text}"
    );
    assert!(lines[1].trim_start().starts_with("1000") && lines[2].trim_start().starts_with("1001"));
    assert!(
        lines[3].starts_with("WORST") && lines[4].starts_with("MEDIAN"),
        "{text}"
    );
    // The printed WORST cells are the worst of the printed world cells.
    let cells = r.cells();
    for (i, w) in cells[2].iter().enumerate().skip(6) {
        assert!(w == &cells[0][i] || w == &cells[1][i], "column {i}: {w}");
    }
    let json: Value =
        serde_json::from_slice(&fs::read(dir.path().join("worlds.json")).unwrap()).unwrap();
    assert_eq!(json["worlds"].as_array().unwrap().len(), 2);
    assert!(json["worlds"][0]["spec"]["kind"].is_string());
    assert!(
        json["worlds"][0]["report"]["overall"]["events"]
            .as_u64()
            .unwrap()
            > 0
    );
    let md = fs::read_to_string(dir.path().join("worlds.md")).unwrap();
    assert!(md.contains("| WORST |"), "{md}");
}
