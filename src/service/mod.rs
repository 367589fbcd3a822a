//! `walletguard run` as one library call: [`run`] wires metrics, health, the engine, the config
//! reloader and the HTTP endpoint around the Kafka service, and shuts them down in order.
//!
//! The binary, the broker demo, the Kafka tests and the end-to-end benchmark all call [`run`],
//! so the service they exercise is the one that is deployed. What differs between them is
//! only in [`Options`]: who owns the metrics registry, whether the config file is watched, and
//! whether a taken HTTP port is fatal.
//!
//! Shutdown, once the [`Shutdown`] latch is triggered: the consumer stops polling, every
//! partition drains (its queued batches scored, their outputs acknowledged), the producer is
//! flushed, offsets are committed (or the last transaction), the consumer closes; only then
//! do the reloader and the HTTP server stop, so `/metrics` stays scrapeable through the drain.

pub mod channels;
pub mod config;
pub mod http;
pub mod kafka;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod shadow;
pub mod shutdown;
pub mod signals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use channels::alert_stream::AlertHub;
use channels::webhooks;
use config::Config;
use http::Health;
use kafka::{KafkaError, RunOptions, RunSummary};
use live::{Live, LiveCell};
use metrics::Metrics;
use reload::Reloader;
use shutdown::Shutdown;

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The Kafka service failed (see [`KafkaError`] for which failures are retryable).
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// `http.listen` is not an address.
    #[error("http.listen: {0:?} is not an address like 0.0.0.0:9464")]
    Listen(String),
    /// The HTTP endpoint could not be bound.
    #[error("http.listen {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `[shadow] config` candidate cannot be loaded.
    #[error("shadow.config: {0}")]
    Shadow(#[source] crate::service::config::ConfigError),
    /// The metrics registry rejected a metric (a programming error).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The process could not set up its runtime or its signal handlers.
    #[error("process setup: {0}")]
    Process(#[source] std::io::Error),
}

/// `walletguard run` as a process: a multi-threaded runtime, SIGTERM/SIGINT to stop (with a
/// backstop exit if the drain overruns `kafka.shutdown_timeout_s` by 10 s), SIGHUP to
/// reload, and [`run`] until it returns.
pub fn run_process(
    cfg: Config,
    paths: Vec<PathBuf>,
    watch_interval: Option<Duration>,
) -> Result<RunSummary, ServiceError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wg-worker")
        .build()
        .map_err(ServiceError::Process)?;
    let shutdown = Shutdown::new();
    let mut options = Options::new()?;
    options.watch_interval = watch_interval;
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
    )
    .map_err(ServiceError::Process)?;
    rt.block_on(run(cfg, paths, options, shutdown))
}

/// What differs between the callers of [`run`].
pub struct Options {
    /// The registry metrics go to (a caller that reads them keeps a clone).
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness, served on `/healthz` and `/readyz`.
    pub health: Arc<Health>,
    /// Reload the config when its file changes, looking this often; `None`: only on request.
    pub watch_interval: Option<Duration>,
    /// `notify_one()` asks for a reload now (the binary does on SIGHUP). A request made before
    /// the reloader waits is kept, not lost.
    pub reload: Arc<Notify>,
    /// When `http.listen` is taken, serve on any free loopback port instead of failing (the
    /// demo, which may run beside a real instance).
    pub http_any_port: bool,
    /// Told the bound HTTP address (`None` when HTTP is off) once it serves, before consuming.
    pub on_http: Option<oneshot::Sender<Option<SocketAddr>>>,
    /// The bearer token of `/alerts/stream`, instead of the variable `http.stream_token_env`
    /// names (the demo makes one up).
    pub stream_token: Option<String>,
    /// Values of secret variables (`webhook.secret_env`) that take precedence over the
    /// environment (the demo makes its webhook secret up).
    pub secrets: std::collections::HashMap<String, String>,
}

impl Options {
    /// A fresh metrics registry and health state, no file watching, HTTP as configured.
    pub fn new() -> Result<Options, ServiceError> {
        Ok(Options {
            metrics: Arc::new(Metrics::new()?),
            health: Health::new(),
            watch_interval: None,
            reload: Arc::new(Notify::new()),
            http_any_port: false,
            on_http: None,
            stream_token: None,
            secrets: Default::default(),
        })
    }
}

/// Runs the service until `shutdown` is triggered (Ok) or a fatal error (Err), then stops it in
/// the order the module doc gives. `config` is the startup config, loaded from the files
/// `config_paths` in order (none: defaults and the environment); the reloader reads them
/// again.
///
/// Must be called inside a multi-thread tokio runtime: the consumer thread blocks on it.
pub async fn run(
    config: Config,
    config_paths: Vec<PathBuf>,
    options: Options,
    shutdown: Shutdown,
) -> Result<RunSummary, ServiceError> {
    let Options {
        metrics,
        health,
        watch_interval,
        reload,
        http_any_port,
        on_http,
        stream_token,
        secrets,
    } = options;
    metrics.set_config_hash(&config.detection_hash());
    let engine = Arc::new(LiveCell::new(Live::new(config.clone())));
    if let Some(c) = config.shadow_candidate().map_err(ServiceError::Shadow)? {
        tracing::info!(hash = %c.detection_hash(), "shadow candidate scored beside the live config");
        engine.replace_shadow(Some(Live::new(c)));
        metrics.shadow_active.set(1);
    }
    let stream = alert_hub(&config, &metrics, stream_token);
    // Stops the reloader and the HTTP server, after the Kafka service has returned.
    let after = Shutdown::new();
    // Webhook deliveries read Kafka on their own and stop after the scoring service (so they
    // deliver what it produced while draining; the rest is delivered after a restart).
    let deliveries = if webhooks::any(&config.subscriptions) {
        Some(webhooks::start(
            &config.kafka,
            &config.subscriptions,
            &secrets,
            metrics.clone(),
            after.clone(),
        )?)
    } else {
        None
    };

    let server = if config.http.enabled {
        let addr: SocketAddr = config
            .http
            .listen
            .parse()
            .map_err(|_| ServiceError::Listen(config.http.listen.clone()))?;
        let stop = after.clone();
        let served = match http::serve(
            addr,
            metrics.clone(),
            health.clone(),
            stream.clone(),
            async move { stop.wait().await },
        )
        .await
        {
            Err(e) if http_any_port => {
                tracing::warn!(%addr, error = %e, "http.listen is taken; serving on a free loopback port");
                let stop = after.clone();
                http::serve(
                    ([127, 0, 0, 1], 0).into(),
                    metrics.clone(),
                    health.clone(),
                    stream.clone(),
                    async move { stop.wait().await },
                )
                .await
            }
            other => other,
        };
        let (bound, task) = match served {
            Ok(b) => b,
            Err(source) => {
                // Stops the webhook deliveries already started.
                after.trigger();
                return Err(ServiceError::Http { addr, source });
            }
        };
        tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
        Some((bound, task))
    } else {
        None
    };
    if let Some(tx) = on_http {
        let _ = tx.send(server.as_ref().map(|(a, _)| *a));
    }

    let reloader = Reloader::new(
        config_paths,
        config.clone(),
        engine.clone(),
        metrics.clone(),
    );
    let reloading = tokio::spawn(reload_loop(reloader, watch_interval, reload, after.clone()));

    let result = kafka::run(RunOptions {
        config,
        engine,
        metrics,
        health,
        shutdown,
        stream,
    })
    .await;

    after.trigger();
    if let Some(d) = deliveries {
        d.join().await;
    }
    let _ = reloading.await;
    if let Some((_, task)) = server {
        let _ = task.await;
    }
    Ok(result?)
}

/// The alert stream's hub when `http.stream_token_env` names a variable that holds a token.
fn alert_hub(
    config: &Config,
    metrics: &Arc<Metrics>,
    token: Option<String>,
) -> Option<Arc<AlertHub>> {
    let h = &config.http;
    if !h.enabled || (h.stream_token_env.is_empty() && token.is_none()) {
        return None;
    }
    match token
        .ok_or(())
        .or_else(|_| std::env::var(&h.stream_token_env).map_err(|_| ()))
    {
        Ok(token) if !token.trim().is_empty() => Some(Arc::new(AlertHub::new(
            token.trim().to_owned(),
            h.stream_buffer,
            h.stream_client_queue,
            metrics.clone(),
        ))),
        _ => {
            tracing::warn!(variable = %h.stream_token_env, "http.stream_token_env names an unset or empty variable; /alerts/stream is off");
            None
        }
    }
}

/// Reloads the config on request, or when the file changed (looked at every `interval`),
/// until `stop`.
async fn reload_loop(
    mut reloader: Reloader,
    interval: Option<Duration>,
    requests: Arc<Notify>,
    stop: Shutdown,
) {
    // Without watching, the timer only bounds how long a loop turn waits.
    let tick = interval.unwrap_or(Duration::from_secs(3600));
    let handle = tokio::runtime::Handle::current();
    loop {
        let asked = tokio::select! {
            _ = stop.wait() => return,
            _ = requests.notified() => true,
            _ = tokio::time::sleep(tick) => false,
        };
        if asked {
            tracing::info!("reload requested; reloading the config");
        }
        let watching = interval.is_some();
        let handle = handle.clone();
        // File reads and the topic check block: off the async workers.
        let turn = tokio::task::spawn_blocking(move || {
            if asked || (watching && reloader.file_changed()) {
                // New subscription topics must exist (or be created) before the partition
                // tasks produce to them.
                reloader.reload(|c| {
                    handle
                        .block_on(kafka::topics::ensure(c))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            }
            reloader
        })
        .await;
        match turn {
            Ok(r) => reloader = r,
            Err(e) => {
                tracing::error!(error = %e, "config reloader failed; reloads are off");
                return;
            }
        }
    }
}
