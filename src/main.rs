//! The `walletguard` command line: parses arguments, loads config, sets up logging, and calls
//! into the library. No product logic lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use walletguard::config::Config;
use walletguard::pipeline::Engine;
use walletguard::replay::{self, Sinks};
use walletguard::sim::{self, SimParams};

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
    /// Generate labelled synthetic traffic: events (JSON lines, `.gz` compresses) and a labels
    /// CSV, deterministic for a seed.
    Simulate {
        /// Number of users.
        #[arg(long, default_value_t = SimParams::default().users)]
        users: u32,
        /// Number of days.
        #[arg(long, default_value_t = SimParams::default().days)]
        days: u32,
        /// Seed of every random choice.
        #[arg(long, default_value_t = SimParams::default().seed)]
        seed: u64,
        /// Events output (files mode).
        #[arg(long, required_unless_present = "brokers")]
        out: Option<PathBuf>,
        /// Labels output (CSV: event_id,user_id,label,scenario). In Kafka mode, optional.
        #[arg(long, required_unless_present = "brokers")]
        labels: Option<PathBuf>,
        /// Kafka mode: stream the events to these bootstrap servers instead of a file.
        #[arg(long, requires = "topic")]
        brokers: Option<String>,
        /// Kafka mode: the topic (keyed by user_id).
        #[arg(long)]
        topic: Option<String>,
        /// Kafka mode: events per second of wall time (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Kafka mode: stop after this many events.
        #[arg(long)]
        max_events: Option<u64>,
        /// Kafka mode: config whose [kafka.librdkafka] settings (TLS, SASL) the producer uses.
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Option<PathBuf>,
        /// Share of users who suffer one attack.
        #[arg(long, default_value_t = SimParams::default().attack_rate)]
        attack_rate: f64,
        /// Share of users who get each benign novelty kind.
        #[arg(long, default_value_t = SimParams::default().novelty_rate)]
        novelty_rate: f64,
        /// Local date of day 0, YYYY-MM-DD.
        #[arg(long, default_value = "2026-09-01")]
        start: String,
    },
    /// Measure detection quality against labels: replays the events through the pipeline (or
    /// reads `--decisions`), prints a table, and writes report.json, report.md and PR/ROC PNGs.
    Eval {
        /// Events (JSON lines, plain or .gz).
        #[arg(long)]
        events: PathBuf,
        /// Labels CSV (event_id,user_id,label,scenario).
        #[arg(long)]
        labels: PathBuf,
        /// Config for the pipeline (default: built-in defaults). Unused with --decisions.
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Option<PathBuf>,
        /// Read decisions from this file instead of running the pipeline.
        #[arg(long)]
        decisions: Option<PathBuf>,
        /// Directory for report.json, report.md, pr.png and roc.png.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the pipeline's decisions here (JSON lines, `.gz` compresses).
        #[arg(long, conflicts_with = "decisions")]
        save_decisions: Option<PathBuf>,
    },
    /// Simulated wallet traffic with hidden attacks, scored live by the real pipeline: alerts
    /// and freezes print as they happen, a scorecard ends the run. Needs nothing installed.
    Demo {
        /// Simulated users.
        #[arg(long, default_value_t = 3000)]
        users: u32,
        /// Simulated days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Share of users who suffer an attack.
        #[arg(long, default_value_t = 0.03)]
        attack_rate: f64,
        /// Simulated events per second of wall time (0 = as fast as possible).
        #[arg(long, default_value_t = 25_000)]
        rate: u64,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// Also print `review` decisions.
        #[arg(long)]
        reviews: bool,
        /// Score in process, without the embedded Kafka broker.
        #[arg(long)]
        offline: bool,
        /// Partitions of the embedded broker's input topic.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Config file (default: built-in defaults).
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the always-on Kafka service: consume wallet events, emit decisions, alerts, commands
    /// and dead letters, keep profiles in the changelog, serve /metrics, /healthz, /readyz.
    /// Stops cleanly on SIGTERM or SIGINT.
    Run {
        /// Config file (default: built-in defaults).
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Option<PathBuf>,
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
        /// Config whose [kafka.librdkafka] settings (TLS, SASL) the consumer uses.
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Option<PathBuf>,
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
        /// Config whose [kafka.librdkafka] settings (TLS, SASL) the producer uses.
        #[arg(long, env = "WALLETGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// A Kafka-protocol test broker (librdkafka's in-process mock cluster) in a process of its
    /// own: creates the topics, prints `bootstrap ADDR`, serves until killed.
    /// SIGUSR1 takes its brokers down, SIGUSR2 brings them back. For tests only: it keeps
    /// everything in memory.
    MockBroker {
        /// Topics to create, NAME:PARTITIONS (repeatable).
        #[arg(long = "topic", value_parser = walletguard::kafka::mock::parse_topic)]
        topics: Vec<(String, i32)>,
        /// Brokers in the cluster.
        #[arg(long, default_value_t = 1)]
        brokers: i32,
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Print the error chain on one line ourselves: `Result` from main would also dump a
    // backtrace whenever RUST_BACKTRACE is set, burying the key at fault.
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::CheckConfig { config } => {
            let cfg = Config::load(config.as_deref())
                .with_context(|| format!("config {}", show(&config)))?;
            println!(
                "config {} is valid ({} detectors enabled)",
                show(&config),
                walletguard::detect::build(&cfg.detectors).len()
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
            offline,
            partitions,
            config,
        } => {
            let engine = engine_from(&config)?;
            let opts = walletguard::demo::DemoOptions {
                sim: SimParams {
                    users,
                    days,
                    seed,
                    attack_rate,
                    ..SimParams::default()
                },
                rate,
                duration: duration.map(std::time::Duration::from_secs),
                show_reviews: reviews,
                color: std::io::stdout().is_terminal(),
            };
            if offline {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                walletguard::demo::run(&engine, &opts, &mut out)?;
                return Ok(());
            }
            let interrupt = Arc::new(AtomicBool::new(false));
            let flag = interrupt.clone();
            // First Ctrl-C: stop the traffic, drain, print the scorecard. Second: leave now.
            ctrlc_handler(move || {
                if flag.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
            })?;
            let kopts = walletguard::kafka::demo::KafkaDemoOptions {
                demo: opts,
                partitions,
                config: engine.config().clone(),
            };
            let mut out = std::io::stdout();
            walletguard::kafka::demo::run(&kopts, interrupt, &mut out)?;
            Ok(())
        }
        Cmd::Consume {
            brokers,
            topic,
            idle_secs,
            config,
        } => {
            let mut cfg = Config::load(config.as_deref())
                .with_context(|| format!("config {}", show(&config)))?;
            init_logging(&cfg);
            cfg.kafka.brokers = brokers;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = walletguard::kafka::tail::dump(
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
            let cfg = Config::load(config.as_deref())
                .with_context(|| format!("config {}", show(&config)))?;
            init_logging(&cfg);
            run_service(cfg, config, watch_interval_s)
        }
        Cmd::Simulate {
            users,
            days,
            seed,
            out,
            labels,
            attack_rate,
            novelty_rate,
            start,
            brokers,
            topic,
            rate,
            max_events,
            config,
        } => {
            let params = SimParams {
                users,
                days,
                seed,
                attack_rate,
                novelty_rate,
                start: sim::parse_date(&start)?,
            };
            if let (Some(brokers), Some(topic)) = (brokers, topic) {
                return simulate_to_kafka(
                    params, brokers, topic, rate, max_events, &config, labels,
                );
            }
            let (Some(out), Some(labels)) = (out, labels) else {
                anyhow::bail!("--out and --labels are required without --brokers");
            };
            let summary = sim::write_files(&params, &out, &labels)?;
            println!("{summary}");
            println!(
                "events -> {}\nlabels -> {}",
                out.display(),
                labels.display()
            );
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
            use walletguard::eval;
            let started = std::time::Instant::now();
            let label_rows = eval::labels::read_labels(&labels)?;
            let scored = match &decisions {
                Some(d) => eval::score_from_decisions(d, &events, &label_rows)?,
                None => {
                    let cfg = Config::load(config.as_deref())
                        .with_context(|| format!("config {}", show(&config)))?;
                    let engine = Engine::new(cfg);
                    eval::score_with_engine(
                        &engine,
                        &events,
                        &label_rows,
                        save_decisions.as_deref(),
                    )?
                }
            };
            let inputs = eval::report::Inputs {
                events: events.display().to_string(),
                labels: labels.display().to_string(),
                config: if decisions.is_none() {
                    config.as_ref().map(|c| c.display().to_string())
                } else {
                    None
                },
                decisions: decisions.as_ref().map(|d| d.display().to_string()),
            };
            let (report, curves) = eval::evaluate(inputs, &scored, &label_rows);
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
            config,
        } => {
            let engine = engine_from(&config)?;
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
            let summary = replay::replay(
                &engine,
                &mut state,
                &input,
                &sinks,
                &mut walletguard::time::now_ms,
                &mut |b| bar.set_position(b.min(total.unwrap_or(u64::MAX))),
            )?;
            bar.finish_and_clear();
            println!("{summary}");
            println!("profiles     {}", state.profiles.len());
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
    config: &Option<PathBuf>,
    labels: Option<PathBuf>,
) -> anyhow::Result<()> {
    use walletguard::kafka::{client_config, loadgen, Role};
    let mut cfg =
        Config::load(config.as_deref()).with_context(|| format!("config {}", show(config)))?;
    init_logging(&cfg);
    cfg.kafka.brokers = brokers;
    let (producer, count) = loadgen::producer(client_config(&cfg, Role::Admin))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc_handler(move || flag.store(true, Ordering::SeqCst))?;
    let opts = loadgen::LoadOptions {
        sim: params,
        topic: topic.clone(),
        rate,
        duration: None,
        max_events,
    };
    let mut label_out = match &labels {
        Some(p) => Some(walletguard::eval::labels::LabelWriter::new(
            walletguard::replay::create_output(p)?,
        )?),
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
    report_load(&summary, &topic)
}

/// Prints what a load run sent; an error unless every event was delivered.
fn report_load(
    summary: &walletguard::kafka::loadgen::LoadSummary,
    topic: &str,
) -> anyhow::Result<()> {
    println!(
        "sent {} events to {} in {:.1} s ({:.0}/s); delivered {}, failed {}",
        summary.sent,
        topic,
        summary.seconds,
        summary.sent as f64 / summary.seconds.max(1e-9),
        summary.delivered,
        summary.failed
    );
    if summary.failed > 0 || summary.delivered < summary.sent {
        anyhow::bail!(
            "{} of {} events were not delivered",
            summary.sent - summary.delivered.min(summary.sent),
            summary.sent
        );
    }
    Ok(())
}

/// `produce --input F --brokers B --topic T --rate R`: streams a file of events into Kafka.
fn produce_file(
    input: &std::path::Path,
    brokers: String,
    topic: &str,
    rate: u64,
    config: &Option<PathBuf>,
) -> anyhow::Result<()> {
    use walletguard::kafka::{client_config, loadgen, Role};
    let mut cfg =
        Config::load(config.as_deref()).with_context(|| format!("config {}", show(config)))?;
    init_logging(&cfg);
    cfg.kafka.brokers = brokers;
    let (mut reader, _) = walletguard::replay::open_input(input)
        .with_context(|| format!("input {}", input.display()))?;
    let (producer, count) = loadgen::producer(client_config(&cfg, Role::Admin))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc_handler(move || flag.store(true, Ordering::SeqCst))?;
    let summary = loadgen::stream_lines(&producer, &count, &mut reader, topic, rate, &stop)?;
    report_load(&summary, topic)
}

/// `mock-broker`: serves a mock cluster until killed or SIGTERM/SIGINT.
fn mock_broker(topics: Vec<(String, i32)>, brokers: i32) -> anyhow::Result<()> {
    use walletguard::kafka::mock;
    init_logging(&Config::default());
    let stop = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc_handler(move || stop.store(true, Ordering::SeqCst))?;
    }
    {
        // Outages on demand: SIGUSR1 down, SIGUSR2 up.
        use tokio::signal::unix::SignalKind;
        let (d, u) = (down.clone(), down.clone());
        on_signals(
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

/// Installs a SIGINT/SIGTERM handler on a small thread of its own.
fn ctrlc_handler(f: impl Fn() + Send + Sync + 'static) -> anyhow::Result<()> {
    signal_handler(f, || {})
}

/// Installs SIGINT/SIGTERM (`stop`) and SIGHUP (`hup`) handlers on a small thread of its own.
fn signal_handler(
    stop: impl Fn() + Send + Sync + 'static,
    hup: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<()> {
    use tokio::signal::unix::SignalKind;
    let stop: Arc<dyn Fn() + Send + Sync> = Arc::new(stop);
    on_signals(
        "wg-signals",
        vec![
            (SignalKind::terminate(), stop.clone()),
            (SignalKind::interrupt(), stop),
            (SignalKind::hangup(), Arc::new(hup)),
        ],
    )
}

/// Signals and what to do on each.
type SignalHandlers = Vec<(tokio::signal::unix::SignalKind, Arc<dyn Fn() + Send + Sync>)>;

/// Runs each handler whenever its signal arrives, on one small thread of its own.
fn on_signals(name: &str, handlers: SignalHandlers) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (kind, f) in handlers {
                    let Ok(mut sig) = tokio::signal::unix::signal(kind) else {
                        return;
                    };
                    tasks.push(tokio::spawn(async move {
                        while sig.recv().await.is_some() {
                            f();
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })?;
    Ok(())
}

/// `walletguard run`: HTTP endpoint, signal handling, config reload and the Kafka service.
fn run_service(cfg: Config, path: Option<PathBuf>, watch_interval_s: u64) -> anyhow::Result<()> {
    use walletguard::http::{self, Health};
    use walletguard::kafka::{self, RunOptions};
    use walletguard::metrics::Metrics;
    use walletguard::pipeline::EngineCell;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wg-worker")
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let grace = cfg.kafka.shutdown_timeout_s;
    let (hup_tx, hup_rx) = std::sync::mpsc::channel::<()>();
    signal_handler(
        move || {
            if !flag.swap(true, Ordering::SeqCst) {
                tracing::info!("signal received; stopping");
                // The session enforces the timeout itself; this is the backstop if it hangs.
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs(grace + 10));
                    tracing::error!("shutdown did not finish in time; exiting");
                    std::process::exit(1);
                });
            }
        },
        move || {
            let _ = hup_tx.send(());
        },
    )?;
    let metrics = Arc::new(Metrics::new()?);
    metrics.set_config_hash(&cfg.detection_hash());
    let engine = Arc::new(EngineCell::new(Engine::new(cfg.clone())));
    {
        let mut reloader =
            walletguard::reload::Reloader::new(path, cfg.clone(), engine.clone(), metrics.clone());
        let handle = rt.handle().clone();
        let interval = std::time::Duration::from_secs(watch_interval_s.max(1));
        std::thread::Builder::new()
            .name("wg-reload".into())
            .spawn(move || loop {
                use std::sync::mpsc::RecvTimeoutError;
                let due = match hup_rx.recv_timeout(interval) {
                    Ok(()) => {
                        tracing::info!("SIGHUP: reloading the config");
                        true
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        watch_interval_s > 0 && reloader.file_changed()
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                if due {
                    // New subscription topics must exist (or be created) before the
                    // partition tasks produce to them.
                    reloader.reload(|c| {
                        handle
                            .block_on(kafka::topics::ensure(c))
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    });
                }
            })?;
    }
    rt.block_on(async move {
        let health = Health::new();
        let http_stop = Arc::new(tokio::sync::Notify::new());
        let server = if cfg.http.enabled {
            let addr: std::net::SocketAddr = cfg.http.listen.parse()?;
            let s = http_stop.clone();
            let (bound, task) = http::serve(addr, metrics.clone(), health.clone(), async move {
                s.notified().await
            })
            .await
            .with_context(|| format!("http.listen {addr}"))?;
            tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
            Some(task)
        } else {
            None
        };
        let result = kafka::run(RunOptions {
            config: cfg,
            engine,
            metrics,
            health,
            stop,
        })
        .await;
        http_stop.notify_waiters();
        if let Some(t) = server {
            let _ = t.await;
        }
        result?;
        Ok(())
    })
}

/// Loads the config (naming the file in errors), starts logging, builds the engine.
fn engine_from(config: &Option<PathBuf>) -> anyhow::Result<Engine> {
    let cfg =
        Config::load(config.as_deref()).with_context(|| format!("config {}", show(config)))?;
    init_logging(&cfg);
    Ok(Engine::new(cfg))
}

fn show(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(built-in defaults and environment)".into())
}
