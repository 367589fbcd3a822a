//! The `walletguard` command line: parses arguments, loads config, sets up logging, and calls
//! into the library. No product logic lives here.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use walletguard::config::Config;
use walletguard::pipeline::Engine;
use walletguard::replay::{self, Sinks};

#[derive(Parser)]
#[command(
    name = "walletguard",
    version,
    about = "Protects wallet users from unauthorized activity"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Score a file of JSON-lines events (plain or .gz; `-` for stdin) through the pipeline.
    Replay {
        /// Input events.
        #[arg(long)]
        input: PathBuf,
        /// Write one decision per valid event here.
        #[arg(long)]
        decisions: Option<PathBuf>,
        /// Write alerts here.
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Write commands here.
        #[arg(long)]
        commands: Option<PathBuf>,
        /// Write dead letters (invalid lines) here.
        #[arg(long)]
        dlq: Option<PathBuf>,
        /// Config file (default: built-in defaults).
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Load and validate a config, reporting the key at fault.
    CheckConfig {
        /// Config file.
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match cfg.log.format.as_str() {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { config } => {
            let cfg = Config::load(config.as_deref())
                .with_context(|| format!("config {}", show(&config)))?;
            println!(
                "config {} is valid ({} detectors enabled)",
                show(&config),
                walletguard::detect::build(&cfg).len()
            );
            Ok(())
        }
        Cmd::Replay {
            input,
            decisions,
            alerts,
            commands,
            dlq,
            config,
        } => {
            let cfg = Config::load(config.as_deref())
                .with_context(|| format!("config {}", show(&config)))?;
            init_logging(&cfg);
            let engine = Engine::new(cfg);
            let mut state = engine.new_state();
            let sinks = Sinks {
                decisions,
                alerts,
                commands,
                dlq,
            };
            let total = std::fs::metadata(&input).ok().map(|m| m.len());
            let bar = if std::io::stderr().is_terminal() {
                let b = indicatif::ProgressBar::new(total.unwrap_or(0));
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            } else {
                indicatif::ProgressBar::hidden()
            };
            // Compressed input advances faster than the bar's byte total; cap it.
            let summary =
                replay::replay(&engine, &mut state, &input, &sinks, &mut now_ms, &mut |b| {
                    bar.set_position(b.min(total.unwrap_or(u64::MAX)))
                })?;
            bar.finish_and_clear();
            println!("{summary}");
            println!("profiles     {}", state.profiles.len());
            Ok(())
        }
    }
}

fn show(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(defaults)".into())
}
