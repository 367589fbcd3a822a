//! The `walletguard` command line's arguments (clap), parsed by the binary, which then calls
//! the library. Kept in the library so a test can check the definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::tools::eval::worlds::WorldsOptions;
use crate::tools::sim::{SimError, SimParams, WorldKind, WorldSpec};

/// `walletguard`: the command line.
#[derive(Parser)]
#[command(
    name = "walletguard",
    version,
    about = "Protects wallet users from unauthorized activity"
)]
pub struct Cli {
    #[command(subcommand)]
    /// The subcommand.
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Cmd {
    /// Score a file of JSON-lines events (plain or .gz; `-` for stdin) through the pipeline.
    Replay(crate::tools::replay::ReplayArgs),
    /// Generate labelled synthetic traffic: events (JSON lines, `.gz` compresses), a labels
    /// CSV and the world's spec (`<labels>.world.json`), deterministic for a seed.
    Simulate(SimulateArgs),
    /// Measure detection quality against labels: replays the events through the pipeline (or
    /// reads `--decisions`), prints a table, and writes report.json, report.md and PR/ROC PNGs.
    Eval(crate::tools::eval::EvalArgs),
    /// Tune the config to a history within budgets: learn the priors, fit the detector
    /// weights (with labels) and set the action thresholds on the first part of the history
    /// by time, check them on the rest, and write an overlay of only the changed keys, each
    /// commented with its figures (and `<out>.report.json`, `<out>.report.md`).
    Calibrate(crate::tools::calibrate::CalibrateArgs),
    /// Score the same events under a live and a candidate config, each with its own state,
    /// and report what changes: the 4×4 flip matrix of actions, flips by reason code, the
    /// users whose freeze appears or disappears, score distributions, and with labels every
    /// eval figure of both. Writes report.json, report.md, flips.png and scores.png.
    Compare(crate::tools::compare::CompareArgs),
    /// Simulated wallet traffic with hidden attacks, scored live by the real pipeline: alerts
    /// and freezes print as they happen, a scorecard ends the run. Needs nothing installed.
    Demo(crate::tools::demo::DemoArgs),
    /// Run the always-on Kafka service: consume wallet events, emit decisions, alerts, commands
    /// and dead letters, keep profiles in the changelog, serve /metrics, /healthz, /readyz.
    /// Stops cleanly on SIGTERM or SIGINT.
    Run {
        /// Config files, laid over the built-in defaults in order (repeat `--config` for
        /// overlays: a later file's keys win).
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Vec<PathBuf>,
        /// Reload the config when the file changes, checking every this many seconds (0: only
        /// on SIGHUP). Detection settings apply live; restart-only keys are logged.
        #[arg(long, default_value_t = 5)]
        watch_interval_s: u64,
    },
    /// Print a topic's values from the beginning as JSON lines, until it is idle (for checks
    /// and scripts; kcat does the same).
    Consume {
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Stop after this many seconds without a new record.
        #[arg(long, default_value_t = 5)]
        idle_secs: u64,
        /// Config files (layered in order) whose [kafka.librdkafka] settings (TLS, SASL) the
        /// consumer uses.
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Vec<PathBuf>,
    },
    /// Stream a file of JSON-lines events (plain or .gz; `-` for stdin) into a topic, each
    /// keyed by its user_id, at a steady rate.
    Produce {
        /// Input events.
        #[arg(long)]
        input: PathBuf,
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Events per second of wall time (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Config files (layered in order) whose [kafka.librdkafka] settings (TLS, SASL) the
        /// producer uses.
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Vec<PathBuf>,
    },
    /// A Kafka-protocol test broker (librdkafka's in-process mock cluster) in a process of its
    /// own: creates the topics, prints `bootstrap ADDR`, serves until killed.
    /// SIGUSR1 takes its brokers down, SIGUSR2 brings them back. For tests only: it keeps
    /// everything in memory.
    MockBroker {
        /// Topics to create, NAME:PARTITIONS (repeatable).
        #[arg(long = "topic", value_parser = crate::tools::mock::parse_topic)]
        topics: Vec<(String, i32)>,
        /// Brokers in the cluster.
        #[arg(long, default_value_t = 1)]
        brokers: i32,
    },
    /// Score many random worlds (wallet, card, mobile money; any currency scale and set of
    /// fields) through the pipeline in memory and print one row per world, then the WORST and
    /// MEDIAN rows.
    Worlds(WorldsArgs),
    /// Load and validate a config, reporting the key at fault.
    CheckConfig {
        /// Config files, laid over the built-in defaults in order (repeat `--config` for
        /// overlays: a later file's keys win).
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Vec<PathBuf>,
    },
}

/// `walletguard simulate`'s arguments.
#[derive(Args)]
pub struct SimulateArgs {
    /// Number of users.
    #[arg(long, default_value_t = SimParams::default().users)]
    pub users: u32,
    /// Number of days.
    #[arg(long, default_value_t = SimParams::default().days)]
    pub days: u32,
    /// Seed of every random choice (and of the world, for `--world random` and the kinds).
    #[arg(long, default_value_t = SimParams::default().seed)]
    pub seed: u64,
    /// The world: `default` (the original simulator), `random` (a spec drawn from the seed),
    /// `wallet`, `card` or `mobile_money` (a spec of that kind drawn from the seed), or a spec
    /// file (`.json`, as simulate writes next to the labels).
    #[arg(long, default_value = "default")]
    pub world: String,
    /// Events output (files mode).
    #[arg(long, required_unless_present = "brokers")]
    pub out: Option<PathBuf>,
    /// Labels output (CSV: event_id,user_id,label,scenario). In Kafka mode, optional.
    #[arg(long, required_unless_present = "brokers")]
    pub labels: Option<PathBuf>,
    /// Kafka mode: stream the events to these bootstrap servers instead of a file.
    #[arg(long, requires = "topic")]
    pub brokers: Option<String>,
    /// Kafka mode: the topic (keyed by user_id).
    #[arg(long)]
    pub topic: Option<String>,
    /// Kafka mode: events per second of wall time (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Kafka mode: stop after this many events.
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Kafka mode: config files (layered in order) whose [kafka.librdkafka] settings (TLS,
    /// SASL) the producer uses.
    #[arg(long, env = "WALLETGUARD_CONFIG")]
    pub config: Vec<PathBuf>,
    /// Share of users who suffer one attack.
    #[arg(long, default_value_t = SimParams::default().attack_rate)]
    pub attack_rate: f64,
    /// Share of users who get each benign novelty kind (times the world's weight of the kind).
    #[arg(long, default_value_t = SimParams::default().novelty_rate)]
    pub novelty_rate: f64,
    /// Local date of day 0, YYYY-MM-DD.
    #[arg(long, default_value = "2026-09-01")]
    pub start: String,
}

impl SimulateArgs {
    /// The simulation the arguments describe.
    pub fn params(&self) -> Result<SimParams, SimError> {
        Ok(SimParams {
            users: self.users,
            days: self.days,
            seed: self.seed,
            attack_rate: self.attack_rate,
            novelty_rate: self.novelty_rate,
            start: crate::tools::sim::parse_date(&self.start)?,
            world: WorldSpec::named(&self.world, self.seed)?,
        })
    }
}

/// `walletguard worlds`'s arguments.
#[derive(Args)]
pub struct WorldsArgs {
    /// Worlds to score.
    #[arg(long, default_value_t = 20)]
    pub count: u32,
    /// Seed of the first world; the others follow it.
    #[arg(long, default_value_t = 1000)]
    pub first_seed: u64,
    /// Users per world.
    #[arg(long, default_value_t = 3000)]
    pub users: u32,
    /// Days per world.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// `random` (any kind), or `wallet`, `card` or `mobile_money` for worlds of one kind.
    #[arg(long, default_value = "random")]
    pub world: String,
    /// Config files, laid over the built-in defaults in order (repeat `--config` for
    /// overlays: a later file's keys win).
    #[arg(long, env = "WALLETGUARD_CONFIG")]
    pub config: Vec<PathBuf>,
    /// Also write worlds.json (every world's spec and full report) and worlds.md here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also score each world's metamorphic variants (amounts ×1000, no device/ip/geo,
    /// renamed ids) and report how its decisions change, event by event.
    #[arg(long)]
    pub metamorphic: bool,
}

impl WorldsArgs {
    /// The harness options the arguments describe.
    pub fn options(&self) -> Result<WorldsOptions, SimError> {
        let kind = match self.world.as_str() {
            "random" => None,
            k => Some(WorldKind::parse(k).ok_or_else(|| SimError::Invalid {
                name: "world",
                msg: format!("{k:?} is not random, wallet, card or mobile_money"),
            })?),
        };
        Ok(WorldsOptions {
            count: self.count,
            first_seed: self.first_seed,
            kind,
            base: SimParams {
                users: self.users,
                days: self.days,
                ..SimParams::default()
            },
            out: self.out.clone(),
            threads: 2,
            metamorphic: self.metamorphic,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["walletguard", "demo", "--duration", "0"]).unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::Demo(crate::tools::demo::DemoArgs { duration: 0, .. })
        ));
        let c = Cli::try_parse_from(["walletguard", "demo"]).unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::Demo(crate::tools::demo::DemoArgs {
                duration: 30,
                verbose: false,
                ..
            })
        ));
        let c = Cli::try_parse_from(["walletguard", "simulate", "--out", "e", "--labels", "l"])
            .unwrap();
        let Cmd::Simulate(a) = c.cmd else {
            panic!("simulate")
        };
        assert_eq!(a.params().unwrap(), SimParams::default());
        let c = Cli::try_parse_from(["walletguard", "worlds", "--count", "2", "--world", "card"])
            .unwrap();
        let Cmd::Worlds(a) = c.cmd else {
            panic!("worlds")
        };
        let o = a.options().unwrap();
        assert_eq!((o.count, o.first_seed, o.base.users), (2, 1000, 3000));
        assert_eq!(o.kind, Some(WorldKind::Card));
    }
}
