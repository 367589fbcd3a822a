//! The `walletguard` command line: parses arguments, loads config, sets up logging, and calls
//! into the library. No product logic lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use walletguard::engine::pipeline::Engine;
use walletguard::service::config::Config;
use walletguard::service::shutdown::Shutdown;
use walletguard::service::signals;
use walletguard::tools::cli::{Cli, Cmd};
use walletguard::tools::replay;
use walletguard::tools::sim::{self, SimParams};

fn init_logging(cfg: &Config) {
    cfg.log.install(&cfg.log.level)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Print the error chain on one line ourselves: `Result` from main would also dump a
    // backtrace whenever RUST_BACKTRACE is set, burying the key at fault.
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::from(2)
        }
    }
}

/// The error chain on one line, `a: b: c`, skipping a cause whose text the message before it
/// already ends with (typed errors that print their OS error also give it as their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !out.is_empty() && out.ends_with(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::CheckConfig { config } => {
            let cfg = load(&config)?;
            println!(
                "config {} is valid ({} detectors enabled)",
                show(&config),
                walletguard::engine::detect::build(&cfg.detectors).len()
            );
            Ok(())
        }
        Cmd::Calibrate(a) => {
            let base = load(&a.config)?;
            Ok(walletguard::tools::calibrate::command(
                &a,
                &base,
                show(&a.config),
            )?)
        }
        Cmd::Compare(a) => {
            let cand_files: Vec<PathBuf> = if a.overlay.is_empty() {
                a.config_b.clone()
            } else {
                a.config.iter().chain(&a.overlay).cloned().collect()
            };
            let (live, candidate) = (load(&a.config)?, load(&cand_files)?);
            let names = (show(&a.config), show(&cand_files));
            Ok(walletguard::tools::compare::command(
                &a, live, candidate, names,
            )?)
        }
        Cmd::Demo(a) => {
            use walletguard::tools::demo::{self, DemoOptions};
            let cfg = load(&a.config)?;
            // The service's INFO lines would land inside the demo's table.
            cfg.log
                .install(if a.verbose { &cfg.log.level } else { "warn" });
            let opts = DemoOptions {
                sim: SimParams {
                    users: a.users,
                    days: a.days,
                    seed: a.seed,
                    attack_rate: a.attack_rate,
                    ..SimParams::default()
                },
                rate: a.rate,
                duration: (a.duration > 0).then(|| Duration::from_secs(a.duration)),
                windows: None,
                show_reviews: a.reviews,
                color: std::io::stdout().is_terminal(),
            };
            // First Ctrl-C: stop the traffic, drain, print the scorecard. Second: leave now.
            let interrupt = Shutdown::new();
            let flag = interrupt.clone();
            signals::on_stop(move || {
                if !flag.trigger() {
                    std::process::exit(130);
                }
            })?;
            let mut out = std::io::stdout();
            if a.offline {
                demo::offline::run(&Engine::new(cfg), &opts, &interrupt, &mut out)?;
            } else {
                let opts = demo::broker::BrokerDemoOptions {
                    demo: opts,
                    partitions: a.partitions,
                    config: cfg,
                };
                demo::broker::run(&opts, &interrupt, &mut out)?;
            }
            Ok(())
        }
        Cmd::Consume {
            brokers,
            topic,
            idle_secs,
            config,
        } => {
            let mut cfg = load(&config)?;
            init_logging(&cfg);
            cfg.kafka.brokers = brokers;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = walletguard::tools::tail::dump(
                &cfg.kafka,
                &topic,
                std::time::Duration::from_secs(idle_secs),
                &mut out,
            )?;
            eprintln!("{n} records");
            Ok(())
        }
        Cmd::Produce {
            input,
            brokers,
            topic,
            rate,
            config,
        } => produce_file(&input, brokers, &topic, rate, &config),
        Cmd::MockBroker { topics, brokers } => {
            init_logging(&Config::default());
            Ok(walletguard::tools::mock::command(topics, brokers)?)
        }
        Cmd::Run {
            config,
            watch_interval_s,
        } => {
            let cfg = load(&config)?;
            init_logging(&cfg);
            let watch = (watch_interval_s > 0).then(|| Duration::from_secs(watch_interval_s));
            walletguard::service::run_process(cfg, config, watch)?;
            Ok(())
        }
        Cmd::Simulate(a) => {
            let params = a.params()?;
            if let (Some(brokers), Some(topic)) = (a.brokers, a.topic) {
                let mut cfg = load(&a.config)?;
                init_logging(&cfg);
                cfg.kafka.brokers = brokers;
                let mut opts = walletguard::tools::loadgen::LoadOptions::new(params, topic, a.rate);
                opts.max_events = a.max_events;
                let stop = signals::stop_latch()?;
                let labels = a.labels.as_deref();
                return Ok(walletguard::tools::loadgen::simulate(
                    &cfg, &opts, labels, &stop,
                )?);
            }
            let (Some(out), Some(labels)) = (a.out, a.labels) else {
                anyhow::bail!("--out and --labels are required without --brokers");
            };
            let summary = sim::write_files(&params, &out, &labels)?;
            println!("{summary}");
            let spec = sim::spec_path(&labels);
            let (o, l, s) = (out.display(), labels.display(), spec.display());
            println!("events -> {o}\nlabels -> {l}\nworld  -> {s}");
            Ok(())
        }
        Cmd::Worlds(a) => {
            let started = std::time::Instant::now();
            let (cfg, opts) = (load(&a.config)?, a.options()?);
            let name = names(&a.config);
            let out = &mut std::io::stdout();
            walletguard::tools::eval::worlds::run(&cfg, name.as_deref(), &opts, out)?;
            eprintln!("worlds took {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Cmd::Eval(a) => {
            let started = std::time::Instant::now();
            let cfg = match a.decisions {
                Some(_) => None,
                None => Some(load(&a.config)?),
            };
            walletguard::tools::eval::command(&a, cfg, names(&a.config))?;
            eprintln!("eval took {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Cmd::Replay(a) => {
            let cfg = load(&a.config)?;
            init_logging(&cfg);
            Ok(replay::command(&a, cfg)?)
        }
    }
}

/// `produce --input F --brokers B --topic T --rate R`: streams a file of events into Kafka.
fn produce_file(
    input: &std::path::Path,
    brokers: String,
    topic: &str,
    rate: u64,
    config: &[PathBuf],
) -> anyhow::Result<()> {
    let mut cfg = load(config)?;
    init_logging(&cfg);
    cfg.kafka.brokers = brokers;
    let stop = signals::stop_latch()?;
    let summary = walletguard::tools::loadgen::produce_file(&cfg, input, topic, rate, &stop)?;
    println!("{summary} to {topic}");
    Ok(summary.ensure_delivered(topic)?)
}

/// Loads the config files laid over the defaults in order; errors name the file and key.
fn load(config: &[PathBuf]) -> anyhow::Result<Config> {
    Config::load_layers(config).map_err(|e| match e.file() {
        Some(_) => anyhow::Error::new(e).context("invalid config"),
        None => anyhow::Error::new(e).context(format!("invalid config {}", show(config))),
    })
}

/// The config files as a list for messages.
fn show(p: &[PathBuf]) -> String {
    if p.is_empty() {
        return "(built-in defaults and environment)".into();
    }
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The config files' names for reports (`None`: the defaults).
fn names(p: &[PathBuf]) -> Option<String> {
    (!p.is_empty()).then(|| show(p))
}
