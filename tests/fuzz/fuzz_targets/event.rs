//! Any bytes through the whole per-event pipeline: parse, validate, score, decide, learn.
//! The state is kept across inputs (as a partition keeps it), so the fuzzer also reaches
//! profiles built by earlier inputs. Never a panic; an error is always a typed dead letter.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use walletguard::service::config::Config;
use walletguard::engine::pipeline::{Engine, State};

thread_local! {
    static ENGINE: (Engine, RefCell<State>) = {
        let engine = Engine::new(Config::default());
        let state = RefCell::new(engine.new_state());
        (engine, state)
    };
}

fuzz_target!(|data: &[u8]| {
    ENGINE.with(|(engine, state)| {
        let mut state = state.borrow_mut();
        // Many profiles accumulate over a long run; start afresh now and then.
        if state.profiles.len() > 100_000 {
            *state = engine.new_state();
        }
        match engine.process_bytes(&mut state, data, 1_790_000_000_000) {
            Ok((_, outcome)) => {
                let s = outcome.decision.score;
                assert!((0.0..=1.0).contains(&s), "score {s} out of [0, 1]");
            }
            Err(e) => {
                assert!(!e.reason().is_empty());
            }
        }
    });
});
