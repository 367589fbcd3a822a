//! `walletguard mock-broker`: librdkafka's `MockCluster` as a process of its own, for tests
//! that must kill and restart `walletguard run` without taking the broker down with it (the
//! soak suite), and for broker-outage tests.
//!
//! It creates the named topics (the mock does not serve CreateTopics), prints
//! `bootstrap <addr>` on stdout, and serves until it is killed. Signals model
//! an outage: `SIGUSR1` takes every broker down, `SIGUSR2` brings them back. The mock keeps
//! every record (no compaction) up to librdkafka's fixed cap of 5 MB per partition, beyond
//! which it silently drops the oldest. Since a test that lost records to that cap would blame
//! walletguard for the broker's doing, the mock watches its low watermarks and prints
//! `dropped TOPIC PARTITION LOW` on stderr the first time a partition loses its head.

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;

use crate::service::kafka::KafkaError;
use crate::service::shutdown::Shutdown;

/// What to serve.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Brokers in the cluster.
    pub brokers: i32,
    /// Topics to create, with their partition counts.
    pub topics: Vec<(String, i32)>,
}

/// Parses `name:partitions` (partitions default to 1).
pub fn parse_topic(s: &str) -> Result<(String, i32), String> {
    match s.rsplit_once(':') {
        Some((name, n)) => {
            let n: i32 = n
                .parse()
                .map_err(|_| format!("{s:?}: partitions must be a number"))?;
            if name.is_empty() || n < 1 {
                return Err(format!("{s:?}: want NAME:PARTITIONS with PARTITIONS >= 1"));
            }
            Ok((name.to_owned(), n))
        }
        None if !s.is_empty() => Ok((s.to_owned(), 1)),
        None => Err("empty topic name".into()),
    }
}

/// Serves until `stop` is triggered. `down` is polled: while it is true every broker is down.
pub fn serve(
    opts: &MockOptions,
    stop: &Shutdown,
    down: &Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<(), KafkaError> {
    let mock = MockCluster::new(opts.brokers).map_err(KafkaError::Client)?;
    for (t, n) in &opts.topics {
        mock.create_topic(t, *n, 1).map_err(KafkaError::Client)?;
    }
    let _ = writeln!(out, "bootstrap {}", mock.bootstrap_servers());
    let _ = out.flush();
    let watcher: Option<BaseConsumer> = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .create()
        .ok();
    let mut dropped: HashSet<(String, i32)> = HashSet::new();
    let mut last_check = Instant::now();
    let mut is_down = false;
    while !stop.is_triggered() {
        if let (Some(w), false) = (&watcher, is_down) {
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                for (t, n) in &opts.topics {
                    for p in 0..*n {
                        if dropped.contains(&(t.clone(), p)) {
                            continue;
                        }
                        if let Ok((low, _)) = w.fetch_watermarks(t, p, Duration::from_secs(2)) {
                            if low > 0 {
                                eprintln!("dropped {t} {p} {low}");
                                dropped.insert((t.clone(), p));
                            }
                        }
                    }
                }
            }
        }
        let want = down.load(Ordering::SeqCst);
        if want != is_down {
            for b in 1..=opts.brokers {
                let r = if want {
                    mock.broker_down(b)
                } else {
                    mock.broker_up(b)
                };
                if let Err(e) = r {
                    tracing::warn!(broker = b, error = %e, "changing broker state");
                }
            }
            is_down = want;
            tracing::info!(down = want, "mock brokers");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Errors of `walletguard mock-broker`.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The signal handlers could not be installed.
    #[error("signals: {0}")]
    Signals(#[from] std::io::Error),
    /// The mock cluster failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// `walletguard mock-broker`: serves a mock cluster until SIGTERM/SIGINT (or a kill), with
/// outages on demand: SIGUSR1 takes it down, SIGUSR2 up again.
pub fn command(topics: Vec<(String, i32)>, brokers: i32) -> Result<(), MockError> {
    use crate::service::signals;
    use tokio::signal::unix::SignalKind;
    let stop = signals::stop_latch()?;
    let down = Arc::new(AtomicBool::new(false));
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
    let opts = MockOptions { brokers, topics };
    serve(&opts, &stop, &down, &mut std::io::stdout())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_specs() {
        assert_eq!(parse_topic("a:4"), Ok(("a".into(), 4)));
        assert_eq!(
            parse_topic("wallet.events"),
            Ok(("wallet.events".into(), 1))
        );
        assert_eq!(parse_topic("x.y:z:2"), Ok(("x.y:z".into(), 2)));
        assert!(parse_topic("a:0").is_err());
        assert!(parse_topic("a:x").is_err());
        assert!(parse_topic(":3").is_err());
        assert!(parse_topic("").is_err());
    }
}
