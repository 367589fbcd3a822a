//! Minimal broker probe, no walletguard code involved: produces numbered records in batches,
//! then starts a consumer at offsets inside those batches and reports the first offset it is
//! given. A broker that answers a fetch from the middle of a batch with the *next* batch makes
//! a consumer that resumes there skip the rest of the batch silently.
//!
//! `cargo run --release --example tansu_fetch_probe -- 127.0.0.1:9092`
//!
//! With `TOPIC=t GROUP=g COMMIT_AT=150` it writes into topic `t` (which must exist, one
//! partition) and commits offset 150 for group `g`, then exits: the set-up for checking that a
//! consumer of that group starts exactly at 150.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

fn main() {
    let brokers = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let commit_at: Option<i64> = std::env::var("COMMIT_AT").ok().and_then(|v| v.parse().ok());
    let topic = std::env::var("TOPIC").unwrap_or_else(|_| format!("probe-{}", std::process::id()));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if commit_at.is_none() {
        rt.block_on(admin.create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topic");
    }
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set(
            "enable.idempotence",
            std::env::var("PROBE_IDEMPOTENCE")
                .as_deref()
                .unwrap_or("true"),
        )
        .create()
        .expect("producer");
    let n = 2_000i64;
    for i in 0..n {
        let v = i.to_string();
        while producer
            .send(BaseRecord::<str, str>::to(&topic).partition(0).payload(&v))
            .is_err()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        if i % 100 == 99 {
            // Several batches, of about 100 records each.
            producer.flush(Duration::from_secs(10)).expect("flush");
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    if let (Some(at), Ok(group)) = (commit_at, std::env::var("GROUP")) {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(at))
            .expect("tpl");
        c.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .expect("commit");
        println!("wrote {n} records to {topic} in batches of 100; committed {at} for {group}");
        return;
    }
    let mut skipped = 0;
    for start in [0i64, 1, 37, 99, 100, 150, 555, 1_001, 1_999] {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("probe-{}-{start}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set(
                "fetch.min.bytes",
                std::env::var("PROBE_FETCH_MIN_BYTES")
                    .as_deref()
                    .unwrap_or("1"),
            )
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(start))
            .expect("tpl");
        c.assign(&tpl).expect("assign");
        let end = Instant::now() + Duration::from_secs(15);
        let mut first = None;
        while first.is_none() && Instant::now() < end {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                let v: i64 = std::str::from_utf8(m.payload().unwrap_or(b""))
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(-1);
                first = Some((m.offset(), v));
            }
        }
        match first {
            Some((o, v)) if o == start && v == start => {
                println!("start {start}: first record {o} (value {v}) ok")
            }
            Some((o, v)) => {
                skipped += 1;
                println!(
                    "start {start}: first record {o} (value {v}): {} records skipped",
                    o - start
                )
            }
            None => println!("start {start}: nothing within 15 s"),
        }
    }
    println!("{skipped} of 9 starts skipped records");
    std::process::exit(if skipped > 0 { 1 } else { 0 });
}
