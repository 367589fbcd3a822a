//! The `walletguard` command line: parses arguments, loads config, sets up logging, and calls
//! into the library. No product logic lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use walletguard::engine::pipeline::Engine;
use walletguard::service::config::Config;
use walletguard::service::shutdown::Shutdown;
use walletguard::service::signals;
use walletguard::tools::cli::{Cli, Cmd};
use walletguard::tools::replay::{self, Sinks};
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
        Cmd::Calibrate {
            events,
            labels,
            false_freeze,
            alert_budget,
            fit_share,
            weight_reg,
            config,
            lists,
            partitions,
            out,
        } => {
            for (name, v) in [
                ("--false-freeze", false_freeze),
                ("--alert-budget", alert_budget),
            ] {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&v),
                    "{name} must be a share from 0 to 1"
                );
            }
            let base = load(&config)?;
            let lists = match &lists {
                Some(p) => std::sync::Arc::new(walletguard::tools::replay::load_lists(p)?),
                None => Default::default(),
            };
            let cal = walletguard::tools::calibrate::run(
                &base,
                walletguard::tools::calibrate::CalibrateInputs {
                    events: &events,
                    labels: labels.as_deref(),
                    base_name: show(&config),
                    partitions,
                    lists,
                    progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                },
                walletguard::tools::calibrate::Budgets {
                    false_freeze,
                    alert: alert_budget,
                    fit_share,
                    weight_reg,
                },
            )?;
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            walletguard::tools::calibrate::write(&cal, &out, &config, &command)?;
            for c in &cal.changes {
                println!("{} = {} (was {})", c.key, c.to, c.from);
            }
            for l in cal.held_out_lines() {
                println!("{l}");
            }
            for n in &cal.notes {
                println!("note: {n}");
            }
            println!(
                "wrote {} (and .report.json, .report.md beside it)",
                out.display()
            );
            Ok(())
        }
        Cmd::Compare {
            events,
            config,
            config_b,
            overlay,
            labels,
            lists,
            partitions,
            from,
            out,
        } => {
            let live = load(&config)?;
            let cand_files: Vec<PathBuf> = if overlay.is_empty() {
                config_b
            } else {
                config.iter().chain(&overlay).cloned().collect()
            };
            let candidate = load(&cand_files)?;
            let lists = match &lists {
                Some(p) => std::sync::Arc::new(walletguard::tools::replay::load_lists(p)?),
                None => Default::default(),
            };
            let report = walletguard::tools::compare::run(
                &walletguard::engine::pipeline::Engine::new(live),
                &walletguard::engine::pipeline::Engine::new(candidate),
                walletguard::tools::compare::CompareInputs {
                    events: &events,
                    labels: labels.as_deref(),
                    names: (show(&config), show(&cand_files)),
                    partitions,
                    lists,
                    from_ts: from,
                    progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                },
            )?;
            walletguard::tools::compare::write_outputs(&out, &report)?;
            print!("{}", report.table());
            println!(
                "wrote {}/report.json, report.md, flips.png, scores.png",
                out.display()
            );
            Ok(())
        }
        Cmd::Demo {
            users,
            days,
            seed,
            attack_rate,
            rate,
            duration,
            reviews,
            verbose,
            offline,
            partitions,
            config,
        } => {
            use walletguard::tools::demo::{self, DemoOptions};
            let cfg = load(&config)?;
            // The service's INFO lines would land inside the demo's table.
            cfg.log
                .install(if verbose { &cfg.log.level } else { "warn" });
            let opts = DemoOptions {
                sim: SimParams {
                    users,
                    days,
                    seed,
                    attack_rate,
                    ..SimParams::default()
                },
                rate,
                duration: (duration > 0).then(|| Duration::from_secs(duration)),
                windows: None,
                show_reviews: reviews,
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
            if offline {
                demo::offline::run(&Engine::new(cfg), &opts, &interrupt, &mut out)?;
            } else {
                let opts = demo::broker::BrokerDemoOptions {
                    demo: opts,
                    partitions,
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
                &cfg,
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
        Cmd::MockBroker { topics, brokers } => mock_broker(topics, brokers),
        Cmd::Run {
            config,
            watch_interval_s,
        } => {
            let cfg = load(&config)?;
            init_logging(&cfg);
            run_service(cfg, config, watch_interval_s)
        }
        Cmd::Simulate(a) => {
            let params = a.params()?;
            if let (Some(brokers), Some(topic)) = (a.brokers, a.topic) {
                let (rate, max) = (a.rate, a.max_events);
                return simulate_to_kafka(params, brokers, topic, rate, max, &a.config, a.labels);
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
        Cmd::Eval {
            events,
            labels,
            config,
            decisions,
            out,
            save_decisions,
        } => {
            use walletguard::tools::eval;
            let started = std::time::Instant::now();
            let source = match &decisions {
                Some(d) => eval::Source::Decisions(d),
                None => eval::Source::Pipeline {
                    config: Box::new(load(&config)?),
                    name: names(&config),
                    save_decisions: save_decisions.as_deref(),
                },
            };
            let (report, curves) = eval::run(&events, &labels, source)?;
            println!("{}", report.table());
            if let Some(dir) = &out {
                eval::write_outputs(dir, &report, &curves)?;
                println!(
                    "report -> {}/report.json, report.md, pr.png, roc.png",
                    dir.display()
                );
            }
            eprintln!("eval took {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Cmd::Replay {
            input,
            decisions,
            alerts,
            commands,
            dlq,
            lists_out,
            state_out,
            lists,
            config,
            partitions,
        } => {
            let cfg = load(&config)?;
            init_logging(&cfg);
            let sinks = Sinks {
                decisions,
                alerts,
                commands,
                dlq,
                lists: lists_out,
                state: state_out,
            };
            let progress = std::io::stderr().is_terminal();
            let table = match &lists {
                Some(path) => replay::load_lists(path)?,
                None => Default::default(),
            };
            let (summary, profiles) = replay::replay_file(
                &Engine::new(cfg),
                &input,
                &sinks,
                partitions,
                std::sync::Arc::new(table),
                progress,
            )?;
            println!("{summary}");
            println!("profiles     {profiles}");
            Ok(())
        }
    }
}

/// `simulate --brokers B --topic T --rate R`: streams the simulation into Kafka.
fn simulate_to_kafka(
    params: SimParams,
    brokers: String,
    topic: String,
    rate: u64,
    max_events: Option<u64>,
    config: &[PathBuf],
    labels: Option<PathBuf>,
) -> anyhow::Result<()> {
    use walletguard::service::kafka::{client_config, Role};
    use walletguard::tools::loadgen;
    let mut cfg = load(config)?;
    init_logging(&cfg);
    cfg.kafka.brokers = brokers;
    let (producer, count) = loadgen::producer(client_config(&cfg, Role::Admin))?;
    let stop = stop_on_signal()?;
    let mut opts = loadgen::LoadOptions::new(params, topic.clone(), rate);
    opts.max_events = max_events;
    let mut label_out = match &labels {
        Some(p) => {
            sim::write_spec(&opts.sim.world, p)?;
            let out = walletguard::tools::replay::create_output(p)?;
            Some(walletguard::tools::sim::labels::LabelWriter::new(out)?)
        }
        None => None,
    };
    let mut write_err = None;
    let summary = loadgen::stream(&producer, &count, &opts, &stop, |ev| {
        if let Some(w) = label_out.as_mut() {
            let r = w.write_raw(
                ev.event_id().as_bytes(),
                ev.user_id().as_bytes(),
                ev.label(),
                ev.scenario.as_str().as_bytes(),
            );
            if let Err(e) = r {
                write_err.get_or_insert(e);
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    if let Some(w) = label_out {
        w.finish()?;
    }
    println!("{summary} to {topic}");
    Ok(summary.ensure_delivered(&topic)?)
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
    let stop = stop_on_signal()?;
    let summary = walletguard::tools::loadgen::produce_file(&cfg, input, topic, rate, &stop)?;
    println!("{summary} to {topic}");
    Ok(summary.ensure_delivered(topic)?)
}

/// A latch triggered by SIGINT or SIGTERM.
fn stop_on_signal() -> anyhow::Result<Shutdown> {
    let stop = Shutdown::new();
    let flag = stop.clone();
    signals::on_stop(move || {
        flag.trigger();
    })?;
    Ok(stop)
}

/// `mock-broker`: serves a mock cluster until killed or SIGTERM/SIGINT.
fn mock_broker(topics: Vec<(String, i32)>, brokers: i32) -> anyhow::Result<()> {
    use walletguard::tools::mock;
    init_logging(&Config::default());
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = stop_on_signal()?;
    let down = Arc::new(AtomicBool::new(false));
    {
        // Outages on demand: SIGUSR1 down, SIGUSR2 up.
        use tokio::signal::unix::SignalKind;
        let (d, u) = (down.clone(), down.clone());
        signals::on_signals(
            "wg-mock-signals",
            vec![
                (
                    SignalKind::user_defined1(),
                    Arc::new(move || d.store(true, Ordering::SeqCst)),
                ),
                (
                    SignalKind::user_defined2(),
                    Arc::new(move || u.store(false, Ordering::SeqCst)),
                ),
            ],
        )?;
    }
    let opts = mock::MockOptions { brokers, topics };
    let mut out = std::io::stdout();
    mock::serve(&opts, &stop, &down, &mut out)?;
    Ok(())
}

/// `walletguard run`: signals in, the library's service, exit code out.
fn run_service(cfg: Config, paths: Vec<PathBuf>, watch_interval_s: u64) -> anyhow::Result<()> {
    use walletguard::service;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wg-worker")
        .build()?;
    let shutdown = Shutdown::new();
    let mut options = service::Options::new()?;
    options.watch_interval = (watch_interval_s > 0).then(|| Duration::from_secs(watch_interval_s));
    let (flag, reload) = (shutdown.clone(), options.reload.clone());
    let grace = cfg.kafka.shutdown_timeout_s;
    signals::on_stop_and_hup(
        move || {
            if flag.trigger() {
                tracing::info!("signal received; stopping");
                // The service enforces the timeout itself; this is the backstop if it hangs.
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(grace + 10));
                    tracing::error!("shutdown did not finish in time; exiting");
                    std::process::exit(1);
                });
            }
        },
        move || reload.notify_one(),
    )?;
    rt.block_on(service::run(cfg, paths, options, shutdown))?;
    Ok(())
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
