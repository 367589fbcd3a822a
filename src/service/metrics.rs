//! The service's Prometheus metrics: one [`Metrics`] value on its own [`Registry`], created by
//! the binary and passed to the Kafka layer and the HTTP server (never a global, so tests and
//! the demo can run several pipelines in one process).
//!
//! Names follow `walletguard_<name>_<unit>`; counters end in `_total`, durations in
//! `_seconds`. No label ever carries a user id: label values come from small fixed sets
//! (event types, actions, severities, reason codes, topic names, partition numbers,
//! subscription names).

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::engine::decision::{Action, Decision};
use crate::engine::detect::Code;
use crate::engine::event::EventType;
use crate::engine::pipeline::{CommandKind, Outcome};

/// Every metric the service exports.
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// `walletguard_events_total{type}`: valid events consumed.
    pub events: IntCounterVec,
    /// `walletguard_invalid_events_total{reason}`: inputs sent to the dead-letter topic.
    pub invalid: IntCounterVec,
    /// `walletguard_decisions_total{action}`.
    pub decisions: IntCounterVec,
    /// `walletguard_alerts_total{severity}`.
    pub alerts: IntCounterVec,
    /// `walletguard_alert_reasons_total{code}`: reason codes carried by alerts.
    pub alert_reasons: IntCounterVec,
    /// `walletguard_commands_total{command}`: `freeze_account` and `require_step_up`.
    pub commands: IntCounterVec,
    /// `walletguard_feedback_total{kind, matched}`: feedback events applied, by what they said
    /// and whether the event they refer to was still remembered.
    pub feedback: IntCounterVec,
    /// `walletguard_snoozed_hits_total{code}`: signals computed but muted by a snooze.
    pub snoozed_hits: IntCounterVec,
    /// `walletguard_shadow_decisions_total{live, candidate}`: every event scored by both the
    /// live engine and the shadow candidate, by both actions: the flip matrix.
    pub shadow_decisions: IntCounterVec,
    /// `walletguard_shadow_alert_reasons_total{code}`: reason codes of the candidate's alerts
    /// (beside `walletguard_alert_reasons_total` of the live ones).
    pub shadow_reasons: IntCounterVec,
    /// `walletguard_shadow_profiles{partition}`: profiles the candidate holds.
    pub shadow_profiles: IntGaugeVec,
    /// `walletguard_shadow_active`: 1 while a candidate is shadow-scored.
    pub shadow_active: IntGauge,
    /// `walletguard_list_entries_published_total{kind}`: block entries feedback published.
    pub lists_published: IntCounterVec,
    /// `walletguard_feedback_cases{partition}`: users with feedback state held.
    pub cases: IntGaugeVec,
    /// `walletguard_webhook_deliveries_total{subscription, result}`: alerts a webhook settled,
    /// `delivered` or `undelivered` (written to the undelivered topic).
    pub webhook_deliveries: IntCounterVec,
    /// `walletguard_webhook_retries_total{subscription}`: failed attempts retried.
    pub webhook_retries: IntCounterVec,
    /// `walletguard_webhook_delivery_seconds{subscription}`: first attempt to a 2xx answer.
    pub webhook_latency: prometheus::HistogramVec,
    /// `walletguard_stream_clients`: clients connected to `GET /alerts/stream`.
    pub stream_clients: prometheus::IntGauge,
    /// `walletguard_stream_clients_dropped_total`: stream clients disconnected for falling
    /// behind.
    pub stream_clients_dropped: prometheus::IntCounter,
    /// `walletguard_list_entries{kind, list}`: entries of `walletguard.lists` held.
    pub list_entries: IntGaugeVec,
    /// `walletguard_list_hits_total{kind, list}`: events that matched a list entry.
    pub list_hits: IntCounterVec,
    /// `walletguard_list_records_total{result}`: lists-topic records read, by what they did
    /// (`upserted`, `removed`, `expired`, `invalid`).
    pub list_records: IntCounterVec,
    /// `walletguard_subscription_alerts_total{subscription}`: alert copies routed.
    pub subscription_alerts: IntCounterVec,
    /// `walletguard_processing_latency_seconds{outputs}`: receipt of a message to all its
    /// outputs acknowledged (or its transaction committed). `outputs="some"`: messages with an
    /// alert, command, decision or dead letter; `"none"`: allowed events with no decisions
    /// topic, whose processing ends when they are scored.
    pub latency: HistogramVec,
    /// The two series of `latency`, resolved once: `[none, some]`.
    latency_of: [Histogram; 2],
    /// `walletguard_event_time_lag_seconds`: processing time minus event time.
    pub event_lag: Histogram,
    /// `walletguard_consumer_lag_messages{topic,partition}`: from librdkafka statistics.
    pub consumer_lag: IntGaugeVec,
    /// `walletguard_assigned_partitions`.
    pub assigned: IntGauge,
    /// `walletguard_fetch_rewinds_total`: seeks back because the broker delivered a partition
    /// from beyond its assigned start offset (a broker answering a fetch inside a batch with
    /// the next batch).
    pub fetch_rewinds: IntCounter,
    /// `walletguard_kafka_brokers_up`: brokers the consumer is connected to and hearing from,
    /// from librdkafka statistics (0 during an outage, and while a broker hangs).
    pub brokers_up: IntGauge,
    /// `walletguard_profiles{partition}`: profiles held in memory.
    pub profiles: IntGaugeVec,
    /// `walletguard_restoring_partitions`: partitions whose state is being restored.
    pub restoring: IntGauge,
    /// `walletguard_restore_duration_seconds`: per partition.
    pub restore_seconds: Histogram,
    /// `walletguard_restore_records_total`: changelog records read on restore.
    pub restore_records: IntCounter,
    /// `walletguard_profiles_removed_total{reason}`: profiles dropped by the lifecycle,
    /// `ttl` (idle beyond `baseline.profile_ttl_days`) or `cap` (evicted by
    /// `baseline.max_profiles_per_partition`).
    pub profiles_removed: IntCounterVec,
    /// `walletguard_changelog_records_total`: profile versions written.
    pub changelog_records: IntCounter,
    /// `walletguard_rebalances_total{kind}`: `assign`, `revoke`, `lost`.
    pub rebalances: IntCounterVec,
    /// `walletguard_fenced_total{what}`: writes (`outputs`, `offsets`) and offset commits
    /// (`commit`) refused because the partition's assignment had ended or a stall made it
    /// doubtful.
    pub fenced: IntCounterVec,
    /// `walletguard_stalls_total`: stalls of the whole process of half the session timeout or
    /// more; each fences every partition the instance held.
    pub stalls: IntCounter,
    /// `walletguard_unfetched_partitions`: partitions assigned to this instance that it is not
    /// consuming (no task, or nothing fetched for `kafka.unfetched_after_s` while records
    /// wait). Not ready while above 0.
    pub unfetched: IntGauge,
    /// `walletguard_partition_repairs_total{kind}`: `adopted` (assigned by the client but
    /// without a task: started from the committed offset), `released` (a task for a partition
    /// the client no longer has), `refetched` (not fetched for too long: restarted),
    /// `rejoined` (the group gave this instance nothing while nobody made progress).
    pub repairs: IntCounterVec,
    /// `walletguard_producer_errors_total{topic}`: failed deliveries (each is retried).
    pub producer_errors: IntCounterVec,
    /// `walletguard_producer_retries_total{reason}`: `queue_full` or `delivery_failed`.
    pub producer_retries: IntCounterVec,
    /// `walletguard_transactions_total{outcome}`: `committed` or `aborted`.
    pub transactions: IntCounterVec,
    /// `walletguard_batch_events`: events per partition batch.
    pub batch_events: Histogram,
    /// `walletguard_build_info{version}`: always 1.
    pub build_info: IntGaugeVec,
    /// `walletguard_config_info{hash}`: 1 for the detection config in use.
    pub config_info: IntGaugeVec,
    /// `walletguard_config_reloads_total{result}`: `applied`, `unchanged` or `rejected`.
    pub config_reloads: IntCounterVec,
    /// `walletguard_config_restart_pending`: keys changed in the config file that only take
    /// effect on restart (0 when the running config is the file's).
    pub config_restart_pending: IntGauge,
}

/// Histogram buckets for latencies: 250 µs to about 60 s in steps of √2, fine enough to read
/// a p99 against a 20 ms goal.
fn latency_buckets() -> Vec<f64> {
    // Parameters are constant and valid.
    exponential_buckets(0.00025, std::f64::consts::SQRT_2, 36).unwrap_or_default()
}

/// The `q` quantile (0..1) of a histogram, interpolated linearly within its bucket, as
/// Prometheus' `histogram_quantile` does. `None` when it is empty.
pub fn quantile(h: &Histogram, q: f64) -> Option<f64> {
    quantile_of(&[h], q)
}

/// [`quantile`] over the merged buckets of several histograms with the same buckets (the
/// series of one histogram vector).
pub fn quantile_of(hs: &[&Histogram], q: f64) -> Option<f64> {
    use prometheus::core::Metric;
    let ms: Vec<_> = hs.iter().map(|h| h.metric()).collect();
    let first = ms.first()?;
    let total: f64 = ms
        .iter()
        .map(|m| m.get_histogram().get_sample_count() as f64)
        .sum();
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev_bound = 0.0;
    let mut prev_count = 0.0;
    for (i, b) in first.get_histogram().get_bucket().iter().enumerate() {
        let c: f64 = ms
            .iter()
            .filter_map(|m| m.get_histogram().get_bucket().get(i))
            .map(|b| b.cumulative_count() as f64)
            .sum();
        if c >= rank {
            let share = if c > prev_count {
                (rank - prev_count) / (c - prev_count)
            } else {
                1.0
            };
            return Some(prev_bound + (b.upper_bound() - prev_bound) * share);
        }
        prev_bound = b.upper_bound();
        prev_count = c;
    }
    Some(prev_bound)
}

macro_rules! reg {
    ($reg:expr, $m:expr) => {{
        let m = $m?;
        $reg.register(Box::new(m.clone()))?;
        m
    }};
}

impl Metrics {
    /// The shadow flip matrix so far: `[live][candidate]`, indexed like
    /// [`crate::engine::decision::Action::ALL`].
    pub fn shadow_matrix(&self) -> [[u64; 4]; 4] {
        use crate::engine::decision::Action;
        let mut n = [[0u64; 4]; 4];
        for (i, a) in Action::ALL.iter().enumerate() {
            for (j, b) in Action::ALL.iter().enumerate() {
                n[i][j] = self
                    .shadow_decisions
                    .with_label_values(&[a.as_str(), b.as_str()])
                    .get();
            }
        }
        n
    }

    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let r = Registry::new();
        let cv = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let latency = reg!(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "walletguard_processing_latency_seconds",
                    "Receipt of a message to all its outputs acknowledged; outputs=none: \
                     scored, nothing to produce."
                )
                .buckets(latency_buckets()),
                &["outputs"]
            )
        );
        let m = Metrics {
            events: reg!(
                r,
                cv(
                    "walletguard_events_total",
                    "Valid events consumed, by type.",
                    &["type"]
                )
            ),
            invalid: reg!(
                r,
                cv(
                    "walletguard_invalid_events_total",
                    "Invalid inputs sent to the dead-letter topic, by reason.",
                    &["reason"]
                )
            ),
            decisions: reg!(
                r,
                cv(
                    "walletguard_decisions_total",
                    "Decisions, by action.",
                    &["action"]
                )
            ),
            alerts: reg!(
                r,
                cv(
                    "walletguard_alerts_total",
                    "Alerts, by severity.",
                    &["severity"]
                )
            ),
            alert_reasons: reg!(
                r,
                cv(
                    "walletguard_alert_reasons_total",
                    "Reason codes carried by alerts.",
                    &["code"]
                )
            ),
            feedback: reg!(
                r,
                cv(
                    "walletguard_feedback_total",
                    "Feedback events applied, by kind and whether their event was remembered.",
                    &["kind", "matched"]
                )
            ),
            snoozed_hits: reg!(
                r,
                cv(
                    "walletguard_snoozed_hits_total",
                    "Signals computed but muted by a snooze (false-positive verdict, passed step-up, unfreeze).",
                    &["code"]
                )
            ),
            shadow_decisions: reg!(
                r,
                cv(
                    "walletguard_shadow_decisions_total",
                    "Events scored by the live config and the shadow candidate, by both actions (the flip matrix).",
                    &["live", "candidate"]
                )
            ),
            shadow_reasons: reg!(
                r,
                cv(
                    "walletguard_shadow_alert_reasons_total",
                    "Reason codes carried by the shadow candidate's alerts (never sent).",
                    &["code"]
                )
            ),
            shadow_profiles: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "walletguard_shadow_profiles",
                        "Profiles the shadow candidate holds in memory, by partition."
                    ),
                    &["partition"]
                )
            ),
            shadow_active: reg!(
                r,
                IntGauge::new(
                    "walletguard_shadow_active",
                    "1 while a shadow candidate config is scored beside the live one."
                )
            ),
            lists_published: reg!(
                r,
                cv(
                    "walletguard_list_entries_published_total",
                    "List entries published by feedback, by kind.",
                    &["kind"]
                )
            ),
            webhook_deliveries: reg!(
                r,
                cv(
                    "walletguard_webhook_deliveries_total",
                    "Alerts a webhook settled, by subscription and result (delivered, undelivered).",
                    &["subscription", "result"]
                )
            ),
            webhook_retries: reg!(
                r,
                cv(
                    "walletguard_webhook_retries_total",
                    "Failed webhook attempts that were retried, by subscription.",
                    &["subscription"]
                )
            ),
            webhook_latency: reg!(
                r,
                prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "walletguard_webhook_delivery_seconds",
                        "Webhook delivery time, first attempt to a 2xx answer, by subscription."
                    )
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
                    &["subscription"]
                )
            ),
            stream_clients: reg!(
                r,
                prometheus::IntGauge::new(
                    "walletguard_stream_clients",
                    "Clients connected to GET /alerts/stream."
                )
            ),
            stream_clients_dropped: reg!(
                r,
                prometheus::IntCounter::new(
                    "walletguard_stream_clients_dropped_total",
                    "Alert stream clients disconnected for falling behind."
                )
            ),
            list_entries: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "walletguard_list_entries",
                        "Entries of the lists topic held, by kind and list."
                    ),
                    &["kind", "list"]
                )
            ),
            list_hits: reg!(
                r,
                cv(
                    "walletguard_list_hits_total",
                    "Events that matched a list entry, by kind and list.",
                    &["kind", "list"]
                )
            ),
            list_records: reg!(
                r,
                cv(
                    "walletguard_list_records_total",
                    "Lists-topic records read, by result (upserted, removed, expired, invalid).",
                    &["result"]
                )
            ),
            cases: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "walletguard_feedback_cases",
                        "Users with feedback state (recent alert evidence, snoozes, failed step-ups) held, by partition."
                    ),
                    &["partition"]
                )
            ),
            commands: reg!(
                r,
                cv(
                    "walletguard_commands_total",
                    "Commands issued, by command.",
                    &["command"]
                )
            ),
            subscription_alerts: reg!(
                r,
                cv(
                    "walletguard_subscription_alerts_total",
                    "Alert copies routed to each subscription.",
                    &["subscription"]
                )
            ),
            latency_of: [
                latency.with_label_values(&["none"]),
                latency.with_label_values(&["some"]),
            ],
            latency,
            event_lag: reg!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "walletguard_event_time_lag_seconds",
                        "Processing time minus event time."
                    )
                    .buckets(exponential_buckets(0.001, 4.0, 14).unwrap_or_default())
                )
            ),
            consumer_lag: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "walletguard_consumer_lag_messages",
                        "Consumer lag per input partition, from librdkafka statistics."
                    ),
                    &["topic", "partition"]
                )
            ),
            assigned: reg!(
                r,
                IntGauge::new(
                    "walletguard_assigned_partitions",
                    "Input partitions assigned to this instance."
                )
            ),
            fetch_rewinds: reg!(
                r,
                IntCounter::new(
                    "walletguard_fetch_rewinds_total",
                    "Seeks back because the broker delivered a partition from beyond its assigned start offset."
                )
            ),
            brokers_up: reg!(
                r,
                IntGauge::new(
                    "walletguard_kafka_brokers_up",
                    "Brokers the consumer is connected to and hearing from (state UP, not silent 10 s with requests waiting)."
                )
            ),
            profiles: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "walletguard_profiles",
                        "User profiles held in memory, by partition."
                    ),
                    &["partition"]
                )
            ),
            restoring: reg!(
                r,
                IntGauge::new(
                    "walletguard_restoring_partitions",
                    "Partitions whose state is being restored from the changelog."
                )
            ),
            restore_seconds: reg!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "walletguard_restore_duration_seconds",
                        "Time to restore one partition's profiles."
                    )
                    .buckets(exponential_buckets(0.01, 2.0, 16).unwrap_or_default())
                )
            ),
            restore_records: reg!(
                r,
                IntCounter::new(
                    "walletguard_restore_records_total",
                    "Changelog records read while restoring."
                )
            ),
            changelog_records: reg!(
                r,
                IntCounter::new(
                    "walletguard_changelog_records_total",
                    "Profile versions written to the changelog."
                )
            ),
            profiles_removed: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "walletguard_profiles_removed_total",
                        "Profiles dropped by the lifecycle: ttl (idle) or cap (evicted by max_profiles_per_partition)."
                    ),
                    &["reason"]
                )
            ),
            rebalances: reg!(
                r,
                cv(
                    "walletguard_rebalances_total",
                    "Consumer-group rebalances seen, by kind.",
                    &["kind"]
                )
            ),
            fenced: reg!(
                r,
                cv(
                    "walletguard_fenced_total",
                    "Writes and offset commits refused because the partition's assignment had ended or a stall made it doubtful, by what.",
                    &["what"]
                )
            ),
            stalls: reg!(
                r,
                IntCounter::new(
                    "walletguard_stalls_total",
                    "Stalls of the whole process of half the session timeout or more (each fences every partition held)."
                )
            ),
            unfetched: reg!(
                r,
                IntGauge::new(
                    "walletguard_unfetched_partitions",
                    "Partitions assigned to this instance that it is not consuming."
                )
            ),
            repairs: reg!(
                r,
                cv(
                    "walletguard_partition_repairs_total",
                    "Partitions whose consumption was repaired, by kind: adopted, released, refetched; rejoined: the group was wedged and the instance joined again.",
                    &["kind"]
                )
            ),
            producer_errors: reg!(
                r,
                cv(
                    "walletguard_producer_errors_total",
                    "Failed deliveries (each is retried), by topic.",
                    &["topic"]
                )
            ),
            producer_retries: reg!(
                r,
                cv(
                    "walletguard_producer_retries_total",
                    "Produce retries, by reason.",
                    &["reason"]
                )
            ),
            transactions: reg!(
                r,
                cv(
                    "walletguard_transactions_total",
                    "Kafka transactions, by outcome.",
                    &["outcome"]
                )
            ),
            batch_events: reg!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("walletguard_batch_events", "Events per partition batch.")
                        .buckets(exponential_buckets(1.0, 4.0, 10).unwrap_or_default())
                )
            ),
            build_info: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("walletguard_build_info", "Build information; always 1."),
                    &["version"]
                )
            ),
            config_info: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "walletguard_config_info",
                        "The detection config in use (hash); always 1."
                    ),
                    &["hash"]
                )
            ),
            config_reloads: reg!(
                r,
                cv(
                    "walletguard_config_reloads_total",
                    "Config reloads, by result.",
                    &["result"]
                )
            ),
            config_restart_pending: reg!(
                r,
                IntGauge::new(
                    "walletguard_config_restart_pending",
                    "Config keys changed in the file that only take effect on restart."
                )
            ),
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Touch the fixed label sets so every series exists from the start: dashboards and
        // rate() see zeros rather than gaps, and alert rules can refer to them before the first
        // freeze.
        for t in EventType::ALL {
            m.events.with_label_values(&[t.as_str()]);
        }
        for a in Action::ALL {
            m.decisions.with_label_values(&[a.as_str()]);
        }
        for s in crate::engine::decision::Severity::ALL {
            m.alerts.with_label_values(&[s.as_str()]);
        }
        for c in [
            CommandKind::FreezeAccount,
            CommandKind::RequireStepUp,
            CommandKind::NotifyUser,
        ] {
            m.commands.with_label_values(&[c.as_str()]);
        }
        for r in [
            "too_large",
            "not_utf8",
            "malformed_json",
            "bad_type",
            "missing_field",
            "invalid_field",
        ] {
            m.invalid.with_label_values(&[r]);
        }
        for k in ["assign", "revoke", "lost"] {
            m.rebalances.with_label_values(&[k]);
        }
        for w in ["outputs", "changelog", "offsets", "commit"] {
            m.fenced.with_label_values(&[w]);
        }
        for k in ["adopted", "released", "refetched", "rejoined"] {
            m.repairs.with_label_values(&[k]);
        }
        for o in ["committed", "aborted"] {
            m.transactions.with_label_values(&[o]);
        }
        for r in ["applied", "unchanged", "rejected"] {
            m.config_reloads.with_label_values(&[r]);
        }
        for r in ["queue_full", "delivery_failed"] {
            m.producer_retries.with_label_values(&[r]);
        }
        for r in ["ttl", "cap"] {
            m.profiles_removed.with_label_values(&[r]);
        }
        for k in crate::engine::event::Feedback::ALL {
            for matched in ["true", "false"] {
                m.feedback.with_label_values(&[k.as_str(), matched]);
            }
        }
        for k in crate::engine::lists::ListKind::ALL {
            m.lists_published.with_label_values(&[k.as_str()]);
        }
        for c in Code::ALL {
            m.snoozed_hits.with_label_values(&[c.as_str()]);
            m.shadow_reasons.with_label_values(&[c.as_str()]);
        }
        for a in crate::engine::decision::Action::ALL {
            for b in crate::engine::decision::Action::ALL {
                m.shadow_decisions
                    .with_label_values(&[a.as_str(), b.as_str()]);
            }
        }
        for k in crate::engine::lists::ListKind::ALL {
            for l in ["block", "allow"] {
                m.list_entries.with_label_values(&[k.as_str(), l]);
                m.list_hits.with_label_values(&[k.as_str(), l]);
            }
        }
        for r in ["upserted", "removed", "expired", "invalid"] {
            m.list_records.with_label_values(&[r]);
        }
        Ok(m)
    }

    /// The latency series for a message with (`true`) or without outputs.
    pub fn latency(&self, outputs: bool) -> &Histogram {
        &self.latency_of[outputs as usize]
    }

    /// Adds a batch's counts. Partition tasks count into a local [`Tally`] and flush once per
    /// batch, so the hot path does no label hashing or locking per event.
    pub fn flush(&self, t: &mut Tally) {
        for (i, k) in EventType::ALL.iter().enumerate() {
            if t.events[i] > 0 {
                self.events
                    .with_label_values(&[k.as_str()])
                    .inc_by(t.events[i]);
            }
        }
        for (i, a) in Action::ALL.iter().enumerate() {
            if t.decisions[i] > 0 {
                self.decisions
                    .with_label_values(&[a.as_str()])
                    .inc_by(t.decisions[i]);
            }
        }
        for (i, s) in crate::engine::decision::Severity::ALL.iter().enumerate() {
            if t.alerts[i] > 0 {
                self.alerts
                    .with_label_values(&[s.as_str()])
                    .inc_by(t.alerts[i]);
            }
        }
        for (i, c) in Code::ALL.iter().enumerate() {
            if t.reasons[i] > 0 {
                self.alert_reasons
                    .with_label_values(&[c.as_str()])
                    .inc_by(t.reasons[i]);
            }
        }
        for (i, c) in Code::ALL.iter().enumerate() {
            if t.snoozed[i] > 0 {
                self.snoozed_hits
                    .with_label_values(&[c.as_str()])
                    .inc_by(t.snoozed[i]);
            }
        }
        for (i, k) in crate::engine::event::Feedback::ALL.iter().enumerate() {
            for (m, label) in ["false", "true"].iter().enumerate() {
                if t.feedback[i][m] > 0 {
                    self.feedback
                        .with_label_values(&[k.as_str(), label])
                        .inc_by(t.feedback[i][m]);
                }
            }
        }
        for (bit, n) in t.listed.iter().enumerate() {
            if *n > 0 {
                let kind = crate::engine::lists::ListKind::ALL[bit % 4].as_str();
                let list = if bit >= 4 { "allow" } else { "block" };
                self.list_hits.with_label_values(&[kind, list]).inc_by(*n);
            }
        }
        for (i, c) in [
            CommandKind::FreezeAccount,
            CommandKind::RequireStepUp,
            CommandKind::NotifyUser,
        ]
        .iter()
        .enumerate()
        {
            if t.commands[i] > 0 {
                self.commands
                    .with_label_values(&[c.as_str()])
                    .inc_by(t.commands[i]);
            }
        }
        *t = Tally::default();
    }

    /// Shows `hash` as the loaded config, replacing the previous one.
    pub fn set_config_hash(&self, hash: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let enc = prometheus::TextEncoder::new();
        // Encoding registered, well-formed metrics into a Vec does not fail.
        let _ = enc.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Per-batch counts of scored events, flushed into [`Metrics`] with [`Metrics::flush`].
#[derive(Debug, Default, Clone)]
pub struct Tally {
    events: [u64; EventType::ALL.len()],
    decisions: [u64; Action::ALL.len()],
    alerts: [u64; crate::engine::decision::Severity::ALL.len()],
    reasons: [u64; Code::ALL.len()],
    snoozed: [u64; Code::ALL.len()],
    commands: [u64; 3],
    feedback: [[u64; 2]; crate::engine::event::Feedback::ALL.len()],
    /// By [`crate::engine::lists::Hits`] bit.
    listed: [u64; 8],
}

impl Tally {
    /// Counts one scored event: its type, decision, alert reasons and command.
    pub fn add(&mut self, kind: EventType, out: &Outcome) {
        self.events[index_of(&EventType::ALL, &kind)] += 1;
        let d: &Decision = &out.decision;
        self.decisions[index_of(&Action::ALL, &d.action)] += 1;
        if d.action != Action::Allow {
            self.alerts[index_of(&crate::engine::decision::Severity::ALL, &d.severity)] += 1;
            for s in d.signals.iter() {
                self.reasons[index_of(&Code::ALL, &s.code)] += 1;
            }
        }
        for s in d.signals.snoozed() {
            self.snoozed[index_of(&Code::ALL, &s.code)] += 1;
        }
        let mut hits = out.listed;
        while hits != 0 {
            self.listed[hits.trailing_zeros() as usize] += 1;
            hits &= hits - 1;
        }
        if let Some(f) = out.feedback {
            self.feedback[index_of(&crate::engine::event::Feedback::ALL, &f.kind)]
                [f.matched as usize] += 1;
        }
        match out.command {
            Some(CommandKind::FreezeAccount) => self.commands[0] += 1,
            Some(CommandKind::RequireStepUp) => self.commands[1] += 1,
            Some(CommandKind::NotifyUser) => self.commands[2] += 1,
            None => {}
        }
    }
}

/// Position of `x` in `all` (the enums' `ALL` lists are short; this compiles to a few
/// compares).
fn index_of<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|a| a == x).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_merge_the_output_classes() {
        let m = Metrics::new().unwrap();
        let all =
            Histogram::with_opts(HistogramOpts::new("x", "x").buckets(latency_buckets())).unwrap();
        for i in 0..1000 {
            let v = 0.0005 * (i % 97) as f64;
            m.latency(i % 10 == 0).observe(v);
            all.observe(v);
        }
        assert_eq!(m.latency(true).get_sample_count(), 100);
        assert_eq!(m.latency(false).get_sample_count(), 900);
        for q in [0.5, 0.9, 0.99] {
            let merged = quantile_of(&[m.latency(false), m.latency(true)], q).unwrap();
            let want = quantile(&all, q).unwrap();
            assert!((merged - want).abs() < 1e-12, "q {q}: {merged} vs {want}");
        }
        assert_eq!(quantile_of(&[], 0.5), None);
        assert!(m.render().contains("outputs=\"some\""));
    }

    #[test]
    fn names_follow_the_convention_and_series_exist_up_front() {
        let m = Metrics::new().unwrap();
        let text = m.render();
        for fam in m.registry.gather() {
            let name = fam.name();
            assert!(name.starts_with("walletguard_"), "{name}");
            if fam.get_field_type() == prometheus::proto::MetricType::COUNTER {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(text.contains("walletguard_build_info{version=\""));
        assert!(text.contains("walletguard_decisions_total{action=\"freeze\"} 0"));
        assert!(text.contains("walletguard_commands_total{command=\"freeze_account\"} 0"));
    }

    #[test]
    fn config_hash_replaces_the_previous_one() {
        let m = Metrics::new().unwrap();
        m.set_config_hash("aaa");
        m.set_config_hash("bbb");
        let text = m.render();
        assert!(!text.contains("hash=\"aaa\""));
        assert!(text.contains("walletguard_config_info{hash=\"bbb\"} 1"));
    }
}
