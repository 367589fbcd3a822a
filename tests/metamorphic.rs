//! `walletguard worlds --metamorphic`: the variants and their comparison.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use walletguard::engine::decision::Action;
use walletguard::engine::event::parse_event;
use walletguard::tools::eval::metamorphic::{self, VariantComparison};
use walletguard::tools::eval::worlds::{self, for_each_event, WorldScorer, WorldsOptions};
use walletguard::tools::sim::{SimEvent, SimParams, Wire, WorldKind, WorldSpec};
use walletguard::{Config, Engine};

fn small(seed: u64, world: WorldSpec) -> SimParams {
    SimParams {
        users: 150,
        days: 20,
        seed,
        attack_rate: 0.2,
        novelty_rate: 0.2,
        world,
        ..SimParams::default()
    }
}

fn json(ev: &SimEvent) -> String {
    let mut v = Vec::new();
    ev.write_json(&mut v);
    String::from_utf8(v).unwrap()
}

const ID_FIELDS: [&str; 4] = ["event_id", "user_id", "device_id", "counterparty"];

#[test]
fn renamed_ids_write_no_original_id_and_rename_consistently() {
    let mut spec = WorldSpec::random(3, Some(WorldKind::Wallet));
    spec.fields.device_id = true;
    let p = small(3, spec.clone());
    let [_, _, renamed] = metamorphic::variant_wires(&spec, p.seed, Wire::of(&spec));
    // original spelling -> renamed spelling, per field, and back.
    let mut fwd: HashMap<String, String> = HashMap::new();
    let mut back: HashMap<String, String> = HashMap::new();
    let mut checked = 0;
    let mut fields_seen = BTreeSet::new();
    for_each_event(&p, |ev| {
        let a = json(ev);
        let r = SimEvent {
            wire: renamed,
            ..*ev
        };
        let b = json(&r);
        assert_eq!(parse_event(b.as_bytes()).unwrap(), r.to_event());
        let (x, y): (Value, Value) = (
            serde_json::from_str(&a).unwrap(),
            serde_json::from_str(&b).unwrap(),
        );
        for k in ID_FIELDS {
            assert_eq!(x.get(k).is_some(), y.get(k).is_some(), "{k}");
            if let (Some(Value::String(o)), Some(Value::String(n))) = (x.get(k), y.get(k)) {
                fields_seen.insert(k);
                assert!(!b.contains(o.as_str()), "{k} {o} still in {b}");
                assert_ne!(o, n);
                let key = format!("{k}:{o}");
                let nkey = format!("{k}:{n}");
                assert_eq!(fwd.entry(key.clone()).or_insert(nkey.clone()), &nkey);
                assert_eq!(back.entry(nkey).or_insert(key.clone()), &key);
                checked += 1;
            }
        }
        // Everything else is written as it was.
        let strip = |v: &Value| {
            let mut v = v.clone();
            for k in ID_FIELDS {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        };
        assert_eq!(strip(&x), strip(&y));
        Ok(())
    })
    .unwrap();
    assert_eq!(fields_seen.len(), 4, "{fields_seen:?}");
    assert!(checked > 5000, "{checked} ids checked");
    assert!(fwd.len() > 1000);
}

#[test]
fn x1000_writes_every_amount_and_balance_exactly_1000_times_in_another_code() {
    for seed in [11, 12, 13, 14, 15, 16] {
        let mut spec = WorldSpec::random(seed, None);
        spec.fields.balance_after = true;
        let p = small(seed, spec.clone());
        let big = metamorphic::currency_x1000(&spec.currency);
        assert_ne!(big.code, spec.currency.code);
        let [x1000, _, _] = metamorphic::variant_wires(&spec, p.seed, Wire::of(&spec));
        let mut money = 0;
        for_each_event(&p, |ev| {
            let a: Value = serde_json::from_str(&json(ev)).unwrap();
            let b: Value = serde_json::from_str(&json(&SimEvent { wire: x1000, ..*ev })).unwrap();
            for k in ["amount", "balance_after"] {
                if let (Some(u), Some(v)) = (a.get(k), b.get(k)) {
                    let (u, v) = (u.as_f64().unwrap(), v.as_f64().unwrap());
                    assert!(
                        (u * 1000.0 - v).abs() <= 1e-9 * v.abs().max(1.0),
                        "seed {seed} {k}: {u} vs {v}"
                    );
                    money += 1;
                }
            }
            if a.get("currency").is_some() {
                assert_eq!(b["currency"], big.code.as_str());
            }
            Ok(())
        })
        .unwrap();
        assert!(money > 500, "seed {seed}: {money}");
    }
}

#[test]
fn a_world_compared_with_itself_has_a_diagonal_flip_matrix() {
    let engine = Engine::new(Config::default());
    let p = small(5, WorldSpec::random(5, Some(WorldKind::Wallet)));
    let (mut a, mut b) = (
        WorldScorer::new(&engine, false),
        WorldScorer::new(&engine, false),
    );
    let mut c = VariantComparison::default();
    for_each_event(&p, |ev| {
        c.add(a.score(&engine, ev)?, b.score(&engine, ev)?);
        Ok(())
    })
    .unwrap();
    assert!(c.events > 1000);
    assert!(c.is_diagonal(), "{:?}", c.flips);
    assert_eq!((c.same_action, c.score_differs), (c.events, 0));
    assert_eq!(c.same_share, Some(1.0));
    // Not diagonal as soon as one action differs.
    c.add(Some((0.1, Action::Allow)), Some((0.9, Action::Freeze)));
    assert!(!c.is_diagonal());
    assert_eq!(c.flips[0][3], 1);
}

#[test]
fn the_variants_are_deterministic() {
    let engine = Engine::new(Config::default());
    let p = small(7, WorldSpec::random(7, Some(WorldKind::Wallet)));
    let (s1, _, m1) = metamorphic::score_world(&engine, &p).unwrap();
    let (s2, _, m2) = metamorphic::score_world(&engine, &p).unwrap();
    assert_eq!(m1, m2);
    assert_eq!(s1.recs.len(), s2.recs.len());
    assert!(m1.x1000.events > 1000 && m1.renamed.events == m1.x1000.events);
    // The records as generated are those of the plain path.
    let (plain, _) = worlds::score_simulation(&engine, &p).unwrap();
    assert_eq!(plain.recs.len(), s1.recs.len());
    assert!(plain
        .recs
        .iter()
        .zip(&s1.recs)
        .all(|(a, b)| a.action == b.action && a.score == b.score));
}

fn opts(metamorphic: bool, out: Option<std::path::PathBuf>) -> WorldsOptions {
    WorldsOptions {
        count: 2,
        first_seed: 1000,
        kind: None,
        base: SimParams {
            users: 120,
            days: 18,
            attack_rate: 0.15,
            ..SimParams::default()
        },
        out,
        threads: 2,
        metamorphic,
    }
}

#[test]
fn worlds_metamorphic_adds_columns_and_json_and_leaves_the_plain_table_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut plain = Vec::new();
    let r0 = worlds::run(&Config::default(), None, &opts(false, None), &mut plain).unwrap();
    let plain = String::from_utf8(plain).unwrap();
    assert!(
        !plain.contains("×1000 same") && !plain.contains("flips"),
        "{plain}"
    );
    assert!(r0.metamorphic.is_none() && r0.worlds.iter().all(|w| w.metamorphic.is_none()));
    let mut out = Vec::new();
    let r = worlds::run(
        &Config::default(),
        None,
        &opts(true, Some(dir.path().to_owned())),
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let head = text.lines().next().unwrap();
    for h in ["×1000 same", "no-id ff", "renamed same", "renamed Δscore"] {
        assert!(head.contains(h), "{head}");
    }
    assert!(text.contains("×1000 flips, all worlds"), "{text}");
    // The plain columns are the same with and without the variants.
    assert_eq!(r.cells(), r0.cells());
    let meta = r.meta_cells().unwrap();
    assert_eq!(meta.len(), 4);
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("worlds.json")).unwrap()).unwrap();
    let m = &json["worlds"][0]["metamorphic"];
    assert_eq!(m["x1000"]["flips"].as_array().unwrap().len(), 4);
    assert!(m["no_identity"]["after"].is_object());
    assert!(m["renamed"]["same_share"].is_number());
    assert!(json["metamorphic"]["worst"]["x1000_same"].is_number());
}

/// The three metamorphic properties of issue 13, on one world of each kind (small, so the suite
/// stays quick; `worlds --metamorphic` measures them at size). Each can fail.
#[test]
fn scaled_currency_missing_fields_and_renamed_ids_keep_the_decisions() {
    let engine = Engine::new(Config::default());
    for (seed, kind) in [
        (21, WorldKind::Wallet),
        (22, WorldKind::Card),
        (23, WorldKind::MobileMoney),
    ] {
        let p = SimParams {
            users: 400,
            days: 25,
            ..small(seed, WorldSpec::random(seed, Some(kind)))
        };
        let (_, _, m) = metamorphic::score_world(&engine, &p).unwrap();
        assert!(m.x1000.events > 5000, "{kind:?}: {} events", m.x1000.events);
        // Every amount and balance ×1000, in another currency: the same action on ≥ 99%.
        let x = m.x1000.same_share.unwrap();
        assert!(x >= 0.99, "{kind:?}: ×1000 same action on {x}");
        // Without device, IP and place, no more honest users are frozen.
        let (before, after) = (
            m.no_identity.before.false_freeze.unwrap(),
            m.no_identity.after.false_freeze.unwrap(),
        );
        assert!(
            after <= before,
            "{kind:?}: false freezes {before} -> {after} without ids"
        );
        // Renamed ids: identical is the goal; 32-bit fingerprints and a payee Bloom filter
        // collide differently under another spelling, so a handful of events may move (README).
        let r = m.renamed.same_share.unwrap();
        assert!(
            r >= 0.999,
            "{kind:?}: renamed ids keep the action on only {r}"
        );
        assert_eq!(m.renamed.validity_differs, 0, "{kind:?}");
    }
}
