//! `walletguard simulate --world` and `walletguard worlds`.

use std::fs;

use walletguard::sim::{self, SimParams};

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
