//! walletguard: an always-on stream processor that protects digital-wallet users from
//! unauthorized activity. It keeps a behavioural baseline per user, scores every wallet event
//! against it, and emits decisions, alerts and `freeze_account` / `require_step_up` commands.
//!
//! # Layout
//!
//! Three rooms, with arrows one way: [`tools`] → [`service`] → [`engine`], and [`tools`] →
//! [`engine`] (checked by `tests/architecture.rs`, with no import cycle anywhere).
//!
//! **[`engine`]: the pure core**, in the order an event travels. No Kafka, no tokio, no HTTP,
//! no metrics; time comes in as an argument.
//! - [`engine::event`]: wire bytes → validated [`engine::event::Event`], or a typed
//!   [`engine::event::EventError`] that becomes a dead letter.
//! - [`engine::baseline`]: the per-user [`engine::baseline::Profile`] (online decayed
//!   statistics, bounded sets of hashes, short-term windows), the population prior and the
//!   population learned per partition, and the [`engine::baseline::ProfileStore`].
//! - [`engine::detect`]: one file per detector behind [`engine::detect::Detector`], each with
//!   its config table; the `registry!` rows give every code its wire name, changelog bit,
//!   family and table.
//! - [`engine::decision`]: signals → score, action, severity, sorted reasons.
//! - [`engine::feedback`]: step-up results, analyst verdicts and unfreezes applied to a user's
//!   profile and feedback case; [`engine::lists`]: the allow/block lists scored against;
//!   [`engine::notify`]: `notify_user` notices.
//! - [`engine::pipeline`]: PURE `(state, event, now) → outcome`, built from
//!   [`engine::pipeline::EngineConfig`] (the engine's own config sections, nothing else).
//! - [`engine::unit`]: the per-partition unit of work every driver uses: a state and its upkeep
//!   (sweeps, removal counts, published blocks).
//! - [`engine::output`]: outcome → the contract's JSON records, with deterministic ids.
//! - [`engine::time`], [`engine::bytes`] (the byte cursor of the changelog codecs),
//!   [`engine::validate`] (the value rules every config section checks itself with).
//!
//! **[`service`]: `walletguard run` around the engine.** [`service::run`] wires metrics,
//! health, the engine, the config reloader and HTTP around [`service::kafka`] (consumer
//! thread, one task per partition, outputs, changelog restore, at-least-once or
//! exactly-once) and stops them in order. [`service::config`] loads the config files, lays
//! them over the defaults, applies `WALLETGUARD_*` and asks each section to check itself;
//! [`service::live`] holds the config in force, swapped whole by [`service::reload`];
//! [`service::channels`] carries alerts to subscribers (webhooks, the live stream);
//! [`service::http`], [`service::metrics`], [`service::shadow`], [`service::logging`],
//! [`service::shutdown`], [`service::signals`].
//!
//! **[`tools`]: the other subcommands**, each with its arguments and a `command()`:
//! [`tools::replay`] (files through the engine, N emulated partitions), [`tools::sim`]
//! (labelled synthetic worlds), [`tools::eval`] (detection figures, worlds, metamorphic
//! checks), [`tools::calibrate`], [`tools::compare`], [`tools::demo`], [`tools::loadgen`],
//! [`tools::mock`] (a mock broker), [`tools::tail`]; [`tools::cli`] composes the command line.
//!
//! Where a new detector, subscription channel or subcommand goes: README, *Layout*.

pub mod engine;
pub mod service;
pub mod tools;

pub use engine::pipeline::{Engine, Outcome, State};
pub use service::config::Config;

/// Helpers of the in-tree fuzz tests.
#[cfg(test)]
pub(crate) mod fuzz {
    /// How many times over the fuzz tests run their random cases: `WG_FUZZ_SCALE` (default 1,
    /// the CI size). Outside CI, `WG_FUZZ_SCALE=20 cargo test --release --lib` runs over a
    /// million cases in all.
    pub fn scale() -> u64 {
        std::env::var("WG_FUZZ_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1u64)
            .max(1)
    }

    /// xorshift64: a tiny, seedable, portable generator, so a failing case replays exactly.
    pub struct XorShift(pub u64);

    impl XorShift {
        /// The next value (never 0 for a non-zero seed).
        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// A value below `n`.
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }
}
