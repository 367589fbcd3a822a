//! walletguard: an always-on stream processor that protects digital-wallet users from
//! unauthorized activity. It keeps a behavioural baseline per user, scores every wallet event
//! against it, and emits decisions, alerts and `freeze_account` / `require_step_up` commands.
//!
//! # Layout
//!
//! The modules read in the order an event travels through them. Everything above the line is
//! the pure core: no Kafka, no tokio, no metrics, and time comes in as an argument.
//!
//! - [`time`]: RFC 3339 parsing/formatting and the compact tick clock profiles use.
//! - [`bytes`]: the byte cursor every changelog codec reads with.
//! - [`validate`]: the value rules (`positive`, `unit`, ...) and the [`validate::Invalid`]
//!   error every config section uses to check itself.
//! - [`config`]: the one typed, validated config, assembled from the sections the modules own
//!   (`[baseline]` and `[prior]` in [`baseline`], `[detectors.*]` beside each detector,
//!   `[decision]` in [`decision`]) plus the service's own; loading, defaults, environment
//!   overrides; mirrors `config/walletguard.toml`.
//! - [`event`]: wire bytes → validated [`event::Event`], or a typed [`event::EventError`] that
//!   becomes a dead letter.
//! - [`baseline`]: the 256-byte per-user [`baseline::Profile`] (online decayed statistics,
//!   bounded sets of hashes, short-term windows), the population [`baseline::Prior`] (config)
//!   and [`baseline::Population`] (learned per partition, in the changelog; with it
//!   [`baseline::rates`], how often each reason code fires here), and the
//!   [`baseline::ProfileStore`] that holds the profiles.
//! - [`detect`]: one file per detector behind the [`detect::Detector`] trait, each with its
//!   config table and that table's rules; each returns [`detect::Signal`]s.
//! - [`decision`]: signals → score (weighted noisy-OR plus a takeover-chain bonus, weights
//!   corrected by the learned rates), action, severity, sorted reasons.
//! - [`feedback`]: step-up results, analyst verdicts and unfreezes (contract v2) applied to
//!   the user's profile and [`feedback::Case`] (evidence of recent alerts, snoozes, failed
//!   step-ups); [`lists`]: the allow/block entries of `walletguard.lists` and the table every
//!   partition scores against (blocks are `BLOCKLISTED` evidence, allows mute novelty).
//! - [`notify`]: `notify_user` notices for logins and money out from a never-seen device or
//!   place and reviewed money out, rate-limited per user, messages from localized templates.
//! - [`pipeline`]: PURE `(state, event, now) → outcome`; the only entry the adapters call.
//! - [`output`]: outcome → the contract's JSON records, with deterministic ids.
//!
//! ---
//!
//! - [`replay`]: the file adapter: JSON lines (or `.gz`) in, decision/alert/command/DLQ files
//!   out, through the same pipeline.
//! - [`sim`]: `walletguard simulate`: deterministic, labelled synthetic traffic with attacks
//!   and benign novelties, as an in-memory iterator or files, in the original world or one
//!   drawn at random ([`sim::WorldSpec`]: wallet, card or mobile money, currency scale,
//!   optional fields, habits, honest behaviours, attack styles).
//! - [`eval`]: `walletguard eval`: per-scenario recall, freeze recall, money saved, delays,
//!   PR/ROC, false alarms, from the pipeline or a decisions file, as a table, JSON, Markdown
//!   and PNG curves; and `walletguard worlds` ([`eval::worlds`]): the same figures over many
//!   random worlds scored in memory, with the worst and median of each, and its metamorphic
//!   checks ([`eval::metamorphic`]: amounts ×1000, no identity fields, renamed ids); both score
//!   a simulated world in memory through [`eval::scoring`].
//! - [`calibrate`]: `walletguard calibrate`: learns priors, fits detector weights (with
//!   labels) and sets thresholds within a false-freeze and an alert budget on the first part
//!   of a history, checks them on the rest, and writes a commented overlay.
//! - [`shadow`]: the `[shadow]` candidate scored beside the live engine by `run` (its own
//!   in-memory state, never acting) and the flip counts of a batch.
//! - [`compare`]: `walletguard compare`: the same events under a live and a candidate config,
//!   each with its own state: the flip matrix, flips by reason, freezes that appear or
//!   disappear, score distributions, and with labels every eval figure of both.
//! - [`kafka`]: the consumer-group service (a consumer thread, one task per partition,
//!   outputs, changelog restore, at-least-once or exactly-once); its modules depend one way,
//!   `consumer → partition → {session, batch, records, produce, pending, acks}`; beside them
//!   `kafka::lists_topic` reads the whole lists topic into the process's [`lists::ListsCell`].
//! - [`service`]: `walletguard run` as one call, [`service::run`]: engine, reloader and HTTP
//!   around [`kafka`], stopped in order by a [`shutdown::Shutdown`]. The binary, the broker
//!   demo, the Kafka tests and the e2e bench all call it.
//! - [`shutdown`]: the one stop latch, polled or awaited.
//! - [`metrics`]: the Prometheus metrics, on their own registry, passed in.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, and `/alerts/stream` ([`alert_stream`]:
//!   alerts as Server-Sent Events, filtered, resumable, behind a bearer token).
//! - [`reload`]: hot config reload (SIGHUP or file change): detection settings swap live,
//!   restart-only keys are named and kept.
//! - [`demo`]: `walletguard demo`: simulated traffic with hidden attacks scored live, on an
//!   embedded broker through [`service::run`] ([`demo::broker`]) or in process
//!   ([`demo::offline`]); warm-up, live lines in causal order, a scorecard.
//! - [`cli`] and [`signals`]: the command line's arguments and Unix signals, for the binary.

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
