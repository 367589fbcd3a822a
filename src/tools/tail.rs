//! `walletguard consume`: reads a topic from the beginning and writes its values as JSON
//! lines, until no record has arrived for a while. For checks and scripts (the end-to-end test
//! counts decisions with it) where kcat is not installed.

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;

use crate::service::kafka::KafkaConfig;

use crate::service::kafka::{client_config, KafkaError, Role};

/// Writes every value of `topic` (one per line) to `out`, stopping after `idle` without a new
/// record. Returns the number of records.
pub fn dump(
    cfg: &KafkaConfig,
    topic: &str,
    idle: Duration,
    out: &mut dyn Write,
) -> Result<u64, KafkaError> {
    let consumer: BaseConsumer = client_config(cfg, Role::Admin)
        .set("group.id", format!("{}-consume", cfg.group_id))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(KafkaError::Client)?;
    crate::service::kafka::assign_all_from_beginning(&consumer, topic, "does not exist")?;
    let io = |e: std::io::Error| KafkaError::Internal(format!("writing: {e}"));
    let mut n = 0u64;
    let mut last = Instant::now();
    while last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                n += 1;
                out.write_all(m.payload().unwrap_or(b"null")).map_err(io)?;
                out.write_all(b"\n").map_err(io)?;
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consume error"),
            None => {}
        }
    }
    out.flush().map_err(io)?;
    Ok(n)
}
