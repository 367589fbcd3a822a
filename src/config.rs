//! Typed, validated configuration; mirrors `config/walletguard.toml` key for key.
//!
//! Loading order: built-in defaults ← TOML file ← `WALLETGUARD_*` environment variables
//! (`WALLETGUARD_DECISION__FREEZE=0.9` sets `decision.freeze`; `__` separates levels because
//! keys themselves contain `_`). Every struct is `deny_unknown_fields`, and every error names
//! the key at fault.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::baseline::SLOT_CAPACITY;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "WALLETGUARD_";
/// Environment variables with the prefix that are not config keys.
pub const ENV_RESERVED: &[&str] = &["WALLETGUARD_CONFIG", "WALLETGUARD_LOG"];

/// Why a configuration could not be loaded. Each variant names the key (dotted path) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config is not valid TOML: {msg}")]
    Syntax {
        /// toml's message, with line and column.
        msg: String,
    },
    /// A key is unknown or has the wrong type.
    #[error("config key `{key}`: {msg}")]
    Type {
        /// Dotted path of the key.
        key: String,
        /// What was wrong.
        msg: String,
    },
    /// A value breaks a rule (range, ordering, sum).
    #[error("config key `{key}`: {msg}")]
    Invalid {
        /// Dotted path of the key.
        key: String,
        /// The rule that was broken.
        msg: String,
    },
    /// An environment override does not name a key or does not parse.
    #[error("environment variable {var}: {msg}")]
    Env {
        /// The variable.
        var: String,
        /// What was wrong.
        msg: String,
    },
}

impl ConfigError {
    /// The key at fault, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Type { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

fn invalid(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        msg: msg.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Currency, time zone and duplicate handling.
    pub general: GeneralConfig,
    /// Per-user baseline sizes and decay.
    pub baseline: BaselineConfig,
    /// Population prior for users with little history.
    pub prior: PriorConfig,
    /// Detector weights and parameters.
    pub detectors: DetectorsConfig,
    /// Score → action mapping and command rules.
    pub decision: DecisionConfig,
    /// Logging.
    pub log: LogConfig,
    /// Brokers, topics and delivery of `run` (restart to change).
    pub kafka: KafkaConfig,
    /// Metrics and health endpoint.
    pub http: HttpConfig,
    /// Further alert topics, by severity, action and reason code.
    #[serde(default = "default_subscriptions")]
    pub subscriptions: Vec<Subscription>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            general: Default::default(),
            baseline: Default::default(),
            prior: Default::default(),
            detectors: Default::default(),
            decision: Default::default(),
            log: Default::default(),
            kafka: Default::default(),
            http: Default::default(),
            subscriptions: default_subscriptions(),
        }
    }
}

/// `[general]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// Currency assumed when an event has none; money out in another currency is scored but
    /// not learned into the amount baseline.
    pub default_currency: String,
    /// Users' local UTC offset, `±HH:MM`; the hour-of-day baseline is kept in this zone.
    pub utc_offset: String,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            default_currency: "CNY".into(),
            utc_offset: "+08:00".into(),
        }
    }
}

/// `[baseline]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Half-life of the behavioural baseline, in days.
    pub half_life_days: f64,
    /// Half-life of the short-term counters (failed attempts, tiny payments), in minutes.
    pub fast_half_life_minutes: f64,
    /// Known devices remembered per user.
    pub devices: usize,
    /// Known payees (transfers, withdrawal cards, recharge numbers) remembered per user.
    pub counterparties: usize,
    /// Known merchants remembered per user.
    pub merchants: usize,
    /// Known networks (IPv4 prefixes of `ipv4_prefix_bits`, IPv6 /48s) remembered per user.
    pub ip_prefixes: usize,
    /// Known geo cells remembered per user.
    pub geo_cells: usize,
    /// Size of a geo cell, in degrees of latitude and longitude.
    pub geo_cell_degrees: f64,
    /// Leading bits of an IPv4 address that name its network (8 to 32). 16 rather than 24:
    /// mobile carriers hand a phone addresses from pools whose third octet changes from one
    /// session to the next, so a /24 calls the owner's own carrier "a new network" all day.
    pub ipv4_prefix_bits: u8,
    /// Shrinkage constant k: a user's own estimate gets weight n/(n+k) against the prior.
    pub shrinkage_k: f64,
    /// A profile idle this many days of event time expires: it is dropped from memory and
    /// tombstoned in the changelog, and the user's next event starts a new one. 0 = never.
    pub profile_ttl_days: f64,
    /// At most this many profiles per partition (per replay): a flood of new user ids evicts
    /// the least recently active ones (counted). 0 = no cap.
    pub max_profiles_per_partition: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            half_life_days: 30.0,
            fast_half_life_minutes: 30.0,
            devices: 3,
            counterparties: 4,
            merchants: 3,
            ip_prefixes: 2,
            geo_cells: 2,
            geo_cell_degrees: 0.5,
            ipv4_prefix_bits: 16,
            shrinkage_k: 8.0,
            // Beyond the dormant-reactivation horizon (three times its 60 days), so an
            // account asleep for half a year is still recognised when it wakes.
            profile_ttl_days: 400.0,
            // About 330 MB of profiles and index per partition at the cap.
            max_profiles_per_partition: 1_000_000,
        }
    }
}

/// `[prior]`: the population baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorConfig {
    /// Mean of ln(1 + amount) of money out across users.
    pub amount_log_mean: f64,
    /// Standard deviation of ln(1 + amount) across users.
    pub amount_log_sd: f64,
    /// Relative activity per local hour 0..23 across users (normalised on load).
    pub hour_weights: Vec<f64>,
    /// Money-out events per day of a typical user.
    pub out_per_day: f64,
}

impl Default for PriorConfig {
    fn default() -> Self {
        PriorConfig {
            amount_log_mean: 4.0,
            amount_log_sd: 1.3,
            hour_weights: vec![
                0.4, 0.25, 0.15, 0.1, 0.1, 0.15, 0.4, 0.9, 1.3, 1.4, 1.4, 1.5, 1.7, 1.5, 1.3, 1.3,
                1.3, 1.4, 1.6, 1.7, 1.7, 1.5, 1.1, 0.7,
            ],
            out_per_day: 2.0,
        }
    }
}

/// `[detectors]`: common surprise mapping plus one table per detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorsConfig {
    /// Tail probability at which a statistical detector starts to score.
    pub surprise_p_start: f64,
    /// Tail probability at which it scores 1.
    pub surprise_p_full: f64,
    /// `AMOUNT_OUTLIER`.
    pub amount_outlier: AmountOutlierConfig,
    /// `NEW_DEVICE`.
    pub new_device: NoveltyConfig,
    /// `NEW_COUNTERPARTY`.
    pub new_counterparty: NewCounterpartyConfig,
    /// `NEW_LOCATION`.
    pub new_location: NoveltyConfig,
    /// `IMPOSSIBLE_TRAVEL`.
    pub impossible_travel: ImpossibleTravelConfig,
    /// `VELOCITY_BURST`.
    pub velocity_burst: VelocityBurstConfig,
    /// `UNUSUAL_HOUR`.
    pub unusual_hour: UnusualHourConfig,
    /// `CREDENTIAL_CHANGE_THEN_SPEND`.
    pub credential_change: CredentialChangeConfig,
    /// `BALANCE_DRAIN`.
    pub balance_drain: BalanceDrainConfig,
    /// `FAILED_ATTEMPTS_BURST`.
    pub failed_attempts: FailedAttemptsConfig,
    /// `CARD_TESTING`.
    pub card_testing: CardTestingConfig,
    /// `DORMANT_REACTIVATION`.
    pub dormant_reactivation: DormantConfig,
    /// `NEW_RECHARGE_NUMBER`.
    pub new_recharge_number: SimpleConfig,
    /// `PAYEE_BUILDUP`.
    pub payee_buildup: PayeeBuildupConfig,
    /// `CONCURRENT_STRANGER`.
    pub concurrent_stranger: ConcurrentStrangerConfig,
}

impl Default for DetectorsConfig {
    fn default() -> Self {
        DetectorsConfig {
            surprise_p_start: 0.02,
            surprise_p_full: 1e-5,
            amount_outlier: AmountOutlierConfig::default(),
            new_device: NoveltyConfig {
                enabled: true,
                weight: 0.45,
            },
            new_counterparty: NewCounterpartyConfig::default(),
            new_location: NoveltyConfig {
                enabled: true,
                weight: 0.35,
            },
            impossible_travel: ImpossibleTravelConfig::default(),
            velocity_burst: VelocityBurstConfig::default(),
            unusual_hour: UnusualHourConfig::default(),
            credential_change: CredentialChangeConfig::default(),
            balance_drain: BalanceDrainConfig::default(),
            failed_attempts: FailedAttemptsConfig::default(),
            card_testing: CardTestingConfig::default(),
            dormant_reactivation: DormantConfig::default(),
            new_recharge_number: SimpleConfig {
                enabled: true,
                weight: 0.2,
            },
            payee_buildup: PayeeBuildupConfig::default(),
            concurrent_stranger: ConcurrentStrangerConfig::default(),
        }
    }
}

/// A detector with only an on/off switch and a weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleConfig {
    /// Run this detector.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Weight of its score in the noisy-OR, in [0, 1].
    pub weight: f64,
}

fn yes() -> bool {
    true
}

/// Novelty detectors (`NEW_DEVICE`, `NEW_LOCATION`).
pub type NoveltyConfig = SimpleConfig;

/// `[detectors.amount_outlier]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmountOutlierConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Amounts at or below this never count as outliers (default currency units).
    pub min_amount: f64,
    /// Floor on the per-user standard deviation of ln(1+amount), so a user who always pays
    /// the same amount is not alarmed by a small change.
    pub min_sd: f64,
    /// Multiplier on the score of a familiar outflow (a merchant payment from a device the
    /// user already uses, or a transfer or withdrawal to an established payee): a large
    /// purchase on one's own phone or a large sum to family is ordinary; the amount still
    /// counts with other evidence (an odd hour, a new place, a burst).
    pub familiar_factor: f64,
}

impl Default for AmountOutlierConfig {
    fn default() -> Self {
        AmountOutlierConfig {
            enabled: true,
            weight: 0.55,
            min_amount: 50.0,
            min_sd: 0.35,
            familiar_factor: 0.4,
        }
    }
}

/// `[detectors.new_counterparty]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewCounterpartyConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Multiplier for `payment` (new merchants are common and low risk) relative to
    /// `transfer` and `withdrawal`.
    pub payment_factor: f64,
}

impl Default for NewCounterpartyConfig {
    fn default() -> Self {
        NewCounterpartyConfig {
            enabled: true,
            weight: 0.4,
            payment_factor: 0.35,
        }
    }
}

/// `[detectors.impossible_travel]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImpossibleTravelConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Speed above which travel is impossible, km/h (airliners cruise near 900).
    pub max_speed_kmh: f64,
    /// Jumps shorter than this are ignored (GPS and IP-geolocation noise), km.
    pub min_distance_km: f64,
    /// Hours any trip of at least `min_distance_km` takes on top of flying time (airports).
    pub trip_overhead_hours: f64,
}

impl Default for ImpossibleTravelConfig {
    fn default() -> Self {
        ImpossibleTravelConfig {
            enabled: true,
            weight: 0.75,
            max_speed_kmh: 1000.0,
            min_distance_km: 150.0,
            trip_overhead_hours: 1.0,
        }
    }
}

/// `[detectors.velocity_burst]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VelocityBurstConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Bursts smaller than this many money-out events (this one included) never score.
    pub min_count: u32,
    /// Multiplier on the expected count in a short window, for human sessions (≥ 1).
    pub burstiness: f64,
}

impl Default for VelocityBurstConfig {
    fn default() -> Self {
        VelocityBurstConfig {
            enabled: true,
            weight: 0.45,
            min_count: 5,
            burstiness: 4.0,
        }
    }
}

/// `[detectors.unusual_hour]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnusualHourConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Probability of the hour (±1 h smoothing) under which it starts to score.
    pub p_start: f64,
    /// Probability at which it scores 1.
    pub p_full: f64,
}

impl Default for UnusualHourConfig {
    fn default() -> Self {
        UnusualHourConfig {
            enabled: true,
            weight: 0.3,
            p_start: 0.03,
            p_full: 0.002,
        }
    }
}

/// `[detectors.credential_change]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialChangeConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// How long after a change money out is suspicious, hours.
    pub window_hours: f64,
    /// Score when the change came from a known device.
    pub known_device_score: f64,
    /// Score when the change came from a device never seen before.
    pub new_device_score: f64,
}

impl Default for CredentialChangeConfig {
    fn default() -> Self {
        CredentialChangeConfig {
            enabled: true,
            weight: 0.6,
            window_hours: 48.0,
            known_device_score: 0.35,
            new_device_score: 0.9,
        }
    }
}

/// `[detectors.balance_drain]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceDrainConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Share of the balance before the event at which it starts to score.
    pub start_share: f64,
    /// Share at which it scores 1.
    pub full_share: f64,
    /// Outflows at or below this amount never score.
    pub min_amount: f64,
    /// Multiplier on the score of a familiar outflow (a merchant payment from a device the
    /// user already uses, or a transfer or withdrawal to an established payee): people top up
    /// and spend their whole balance at shops, or move it to their own card, all the time;
    /// a thief cashes a balance out to a new person or card.
    pub familiar_factor: f64,
}

impl Default for BalanceDrainConfig {
    fn default() -> Self {
        BalanceDrainConfig {
            enabled: true,
            weight: 0.6,
            start_share: 0.4,
            full_share: 0.9,
            min_amount: 100.0,
            familiar_factor: 0.4,
        }
    }
}

/// `[detectors.failed_attempts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailedAttemptsConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Recent failures (decayed, this one included) at which it starts to score.
    pub start_count: f64,
    /// Recent failures at which it scores 1.
    pub full_count: f64,
}

impl Default for FailedAttemptsConfig {
    fn default() -> Self {
        FailedAttemptsConfig {
            enabled: true,
            weight: 0.5,
            start_count: 3.0,
            full_count: 10.0,
        }
    }
}

/// `[detectors.card_testing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardTestingConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// A payment at or below this amount is "tiny".
    pub tiny_amount: f64,
    /// Recent tiny payments to new merchants (decayed) at which it starts to score.
    pub start_count: f64,
    /// Count at which it scores 1.
    pub full_count: f64,
    /// `start_count` when the payment comes from a stranger: a device the user never used,
    /// in a place or network the user was never seen in.
    pub stranger_start_count: f64,
    /// `full_count` for a stranger.
    pub stranger_full_count: f64,
}

impl Default for CardTestingConfig {
    fn default() -> Self {
        CardTestingConfig {
            enabled: true,
            weight: 0.85,
            tiny_amount: 5.0,
            start_count: 2.5,
            full_count: 6.0,
            stranger_start_count: 1.5,
            stranger_full_count: 2.0,
        }
    }
}

/// `[detectors.payee_buildup]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayeeBuildupConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// A payee first paid at most this many days ago is "young".
    pub window_days: f64,
    /// Days of history a user needs before a first-time payee counts as young (in a new
    /// account every payee is new).
    pub min_history_days: f64,
    /// Money-out attempts to the young payee (this one included) at which the count factor
    /// reaches 1; it is 0 at one attempt and rises linearly.
    pub full_count: f64,
    /// Total to the young payee (this one included), as a share of the user's usual money
    /// out in 30 days, at which it starts to score.
    pub start_share: f64,
    /// The share at which the amount factor reaches 1 (log scale in between).
    pub full_share: f64,
}

impl Default for PayeeBuildupConfig {
    fn default() -> Self {
        PayeeBuildupConfig {
            enabled: true,
            weight: 0.5,
            window_days: 14.0,
            min_history_days: 7.0,
            full_count: 2.0,
            start_share: 0.05,
            full_share: 0.2,
        }
    }
}

/// `[detectors.concurrent_stranger]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrentStrangerConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// A stranger acting at most this many minutes after the user's own device scores 1.
    pub full_minutes: f64,
    /// From `full_minutes` the score falls linearly to 0 at this many minutes.
    pub zero_minutes: f64,
}

impl Default for ConcurrentStrangerConfig {
    fn default() -> Self {
        ConcurrentStrangerConfig {
            enabled: true,
            weight: 0.3,
            full_minutes: 60.0,
            zero_minutes: 240.0,
        }
    }
}

/// `[detectors.dormant_reactivation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DormantConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Silence after which an account counts as dormant, days.
    pub dormant_days: f64,
    /// Money out below this multiple of the user's typical amount never scores.
    pub min_amount_ratio: f64,
}

impl Default for DormantConfig {
    fn default() -> Self {
        DormantConfig {
            enabled: true,
            weight: 0.5,
            dormant_days: 60.0,
            min_amount_ratio: 2.0,
        }
    }
}

/// `[decision]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionConfig {
    /// Score at or above which the action is `review`.
    pub review: f64,
    /// Score at or above which the action is `step_up`.
    pub step_up: f64,
    /// Score at or above which the action is `freeze`.
    pub freeze: f64,
    /// Score at or above which severity is `medium` (below it, alerts are `low`).
    pub severity_medium: f64,
    /// Score at or above which severity is `high`.
    pub severity_high: f64,
    /// Score at or above which severity is `critical`.
    pub severity_critical: f64,
    /// Bonus for a full account-takeover chain (credential change → new device or location →
    /// new payee → large or draining outflow), scaled by the chain's strength.
    pub chain_bonus: f64,
    /// At most one `freeze_account` per user within this many hours.
    pub freeze_cooldown_hours: f64,
    /// Learn events scored `review` into the baseline. Off by default: an attacker's first,
    /// merely suspicious event would otherwise make their device and place "known" for the
    /// next one. `step_up` and above are never learned.
    pub learn_reviewed: bool,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            review: 0.45,
            step_up: 0.75,
            freeze: 0.88,
            severity_medium: 0.6,
            severity_high: 0.75,
            severity_critical: 0.88,
            chain_bonus: 0.7,
            freeze_cooldown_hours: 24.0,
            learn_reviewed: false,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `RUST_LOG` syntax; `RUST_LOG` wins when set.
    pub level: String,
    /// `auto` (JSON unless stderr is a terminal), `json` or `text`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "auto".into(),
        }
    }
}

/// How outputs and consumed offsets are tied together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// An input offset is stored only after every output of its event (and the changelog of
    /// its batch) is acknowledged. A crash replays the uncommitted tail; deterministic ids make
    /// the repeats harmless downstream.
    AtLeastOnce,
    /// Outputs, changelog and offsets are committed in one Kafka transaction per batch.
    /// Downstream consumers must read with `isolation.level=read_committed`.
    ExactlyOnce,
}

/// `[kafka]`: the `run` service's brokers, topics and delivery. Not reloadable: a change needs
/// a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Consumer group shared by all instances.
    pub group_id: String,
    /// Stable name of this instance (defaults to the host name when empty). It makes the
    /// `transactional.id` and the client id stable and, with `static_membership`, names the
    /// consumer's static group membership.
    pub instance_id: String,
    /// With an explicit `instance_id`, join the group as a static member
    /// (`group.instance.id` = `instance_id`): a restarted instance gets its partitions back
    /// at once instead of waiting for a rebalance that waits for its dead predecessor. The
    /// cost: on shutdown a static member does not leave, so its partitions move to another
    /// instance only after `session.timeout.ms`. Off by default: tansu 0.6 never expires a
    /// dead static member, and repeated kills left its group without any assignment.
    pub static_membership: bool,
    /// Input topics, keyed by `user_id`.
    pub input_topics: Vec<String>,
    /// Alerts for every non-`allow` decision.
    pub alerts_topic: String,
    /// `freeze_account` / `require_step_up` commands.
    pub commands_topic: String,
    /// Dead letters: invalid input, with the error and its source position.
    pub dlq_topic: String,
    /// One decision per valid event; empty = not written.
    pub decisions_topic: String,
    /// Compacted changelog of profiles, co-partitioned with the input.
    pub changelog_topic: String,
    /// `min.compaction.lag.ms` of a changelog created by `create_topics`: how long older
    /// versions of a profile survive compaction. A restart after a crash restores profiles as
    /// of the committed offsets, which needs the versions written just before them, so this
    /// bounds how long a crashed instance may stay down and still repeat its decisions exactly.
    pub changelog_min_compaction_lag_ms: u64,
    /// At-least-once: changed profiles are collected for this long (ms) and written once, only
    /// their latest version, before the offsets of those events are stored. 0 = after every
    /// batch. Exactly-once always writes per batch, inside the batch's transaction.
    pub changelog_flush_ms: u64,
    /// At-least-once: write the changelog early once this many changed profiles are pending.
    pub changelog_max_pending: usize,
    /// `at_least_once` (default) or `exactly_once`.
    pub delivery: Delivery,
    /// Transactional id for `exactly_once`; empty = `walletguard-<group_id>-<instance_id>`.
    pub transactional_id: String,
    /// Most events a partition task scores before producing and acknowledging them.
    pub max_batch: usize,
    /// Batches a partition may have queued or in flight: the bound that creates back-pressure.
    pub queue_batches: usize,
    /// Offsets are committed (or, exactly-once, transactions committed) at this interval.
    pub commit_interval_ms: u64,
    /// Give up (and exit non-zero) when restoring one partition's profiles takes longer.
    pub restore_timeout_s: u64,
    /// On start, create missing topics (inputs, outputs, subscriptions, the compacted
    /// changelog with the input's partition count). Off: missing topics are an error.
    pub create_topics: bool,
    /// Partitions of topics created by `create_topics` when the input does not exist yet.
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication_factor: i32,
    /// On SIGTERM/SIGINT: most seconds to drain, flush and commit before exiting.
    pub shutdown_timeout_s: u64,
    /// librdkafka properties for every client (consumer, producer, restore reader), passed
    /// through unchanged: TLS, SASL, timeouts, compression. Keys may use `_` for `.` so that
    /// environment overrides work (`WALLETGUARD_KAFKA__LIBRDKAFKA__SECURITY_PROTOCOL=ssl`).
    pub librdkafka: std::collections::BTreeMap<String, String>,
    /// librdkafka properties for the consumer only.
    pub consumer: std::collections::BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    pub producer: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "walletguard".into(),
            instance_id: String::new(),
            static_membership: false,
            input_topics: vec!["wallet.events".into()],
            alerts_topic: "wallet.alerts".into(),
            commands_topic: "wallet.commands".into(),
            dlq_topic: "wallet.events.dlq".into(),
            decisions_topic: String::new(),
            changelog_topic: "walletguard.profiles".into(),
            changelog_min_compaction_lag_ms: 3_600_000,
            changelog_flush_ms: 1000,
            changelog_max_pending: 100_000,
            delivery: Delivery::AtLeastOnce,
            transactional_id: String::new(),
            max_batch: 2000,
            queue_batches: 16,
            commit_interval_ms: 1000,
            restore_timeout_s: 300,
            create_topics: false,
            partitions: 12,
            replication_factor: 1,
            shutdown_timeout_s: 30,
            librdkafka: Default::default(),
            // Fetch in pieces of at least 64 KiB, waiting at most 10 ms for them: with
            // fetch.min.bytes=1 the broker answers a stream of tiny fetches, which on tansu cut
            // throughput from 257k to 172k events/s and raised p50 latency from 1.2 to 14 ms.
            consumer: [
                ("fetch.min.bytes".to_string(), "65536".to_string()),
                ("fetch.wait.max.ms".to_string(), "10".to_string()),
                // A dead member is noticed within 10 s instead of librdkafka's 45 s, and a
                // rebalance waits at most 60 s (not 5 minutes) for members that do not rejoin.
                ("session.timeout.ms".to_string(), "10000".to_string()),
                ("heartbeat.interval.ms".to_string(), "1000".to_string()),
                ("max.poll.interval.ms".to_string(), "60000".to_string()),
            ]
            .into(),
            producer: [
                ("compression.type".to_string(), "lz4".to_string()),
                ("linger.ms".to_string(), "1".to_string()),
            ]
            .into(),
        }
    }
}

/// `[http]`: the metrics and health endpoint of `run` and `demo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz`.
    pub enabled: bool,
    /// Listen address. Loopback by default; set `0.0.0.0:9898` in a container.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: "127.0.0.1:9898".into(),
        }
    }
}

/// One `[[subscriptions]]` entry: copies of matching alerts go to a further topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Name, used as the metric label.
    pub name: String,
    /// Topic the copies go to.
    pub topic: String,
    /// Lowest severity copied: `low`, `medium`, `high` or `critical`.
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    /// Actions copied (`review`, `step_up`, `freeze`); empty = any.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Copied only when the alert has at least one of these reason codes; empty = any.
    #[serde(default)]
    pub reason_codes: Vec<String>,
}

fn default_min_severity() -> String {
    "low".into()
}

/// The subscriptions shipped by default: critical alerts, and takeover chains.
fn default_subscriptions() -> Vec<Subscription> {
    vec![
        Subscription {
            name: "critical".into(),
            topic: "wallet.alerts.critical".into(),
            min_severity: "critical".into(),
            actions: vec![],
            reason_codes: vec![],
        },
        Subscription {
            name: "ato".into(),
            topic: "wallet.alerts.ato".into(),
            min_severity: "low".into(),
            actions: vec![],
            reason_codes: vec!["ATO_CHAIN".into()],
        },
    ]
}

impl Config {
    /// Loads `path` (or only defaults when `None`), applies `WALLETGUARD_*` overrides from the
    /// process environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        Config::from_toml_with_env(&text, std::env::vars())
    }

    /// Parses TOML text, applies overrides from `env` (name, value pairs), and validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Syntax { msg: e.to_string() })?;
        // Start from the defaults and lay the file over them, so a partial table (say
        // `[detectors.new_device]` with only `enabled = false`) or a lone environment override
        // keeps every other key's default.
        let mut root =
            toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Syntax {
                msg: format!("defaults do not serialise: {e}"),
            })?;
        merge(&mut root, file);
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_RESERVED.contains(&k.as_str()))
            .collect();
        overrides.sort();
        for (var, value) in overrides {
            apply_env(&mut root, &var, &value)?;
        }
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
                ConfigError::Type {
                    key: e.path().to_string(),
                    msg: e.into_inner().to_string(),
                }
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A short digest of everything but `[kafka]` and `[http]`: what a reload can change.
    /// Exported as `walletguard_config_info{hash}`.
    pub fn detection_hash(&self) -> String {
        let mut c = self.clone();
        c.kafka = KafkaConfig::default();
        c.http = HttpConfig::default();
        let text = toml::to_string(&c).unwrap_or_default();
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }

    /// Parses TOML text without looking at the environment.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, std::iter::empty())
    }

    /// Checks every rule that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.general;
        let c = g.default_currency.as_bytes();
        if c.len() != 3 || !c.iter().all(u8::is_ascii_alphabetic) {
            return Err(invalid(
                "general.default_currency",
                "must be a 3-letter code",
            ));
        }
        if crate::time::parse_offset(&g.utc_offset).is_none() {
            return Err(invalid(
                "general.utc_offset",
                "must look like +08:00 or -05:30",
            ));
        }
        let b = &self.baseline;
        positive("baseline.half_life_days", b.half_life_days)?;
        if b.half_life_days > 365.0 {
            // The day-stepped fixed-point decay loses precision beyond a year.
            return Err(invalid("baseline.half_life_days", "must be at most 365"));
        }
        positive("baseline.fast_half_life_minutes", b.fast_half_life_minutes)?;
        positive("baseline.geo_cell_degrees", b.geo_cell_degrees)?;
        if b.geo_cell_degrees > 10.0 {
            return Err(invalid("baseline.geo_cell_degrees", "must be at most 10"));
        }
        if !(8..=32).contains(&b.ipv4_prefix_bits) {
            return Err(invalid(
                "baseline.ipv4_prefix_bits",
                "must be between 8 and 32",
            ));
        }
        positive("baseline.shrinkage_k", b.shrinkage_k)?;
        if !(b.profile_ttl_days >= 0.0 && b.profile_ttl_days <= 36_500.0) {
            return Err(invalid(
                "baseline.profile_ttl_days",
                "must be between 0 (never) and 36500",
            ));
        }
        if b.max_profiles_per_partition == 1 {
            return Err(invalid(
                "baseline.max_profiles_per_partition",
                "must be 0 (no cap) or at least 2",
            ));
        }
        for (key, v) in [
            ("baseline.devices", b.devices),
            ("baseline.counterparties", b.counterparties),
            ("baseline.merchants", b.merchants),
            ("baseline.ip_prefixes", b.ip_prefixes),
            ("baseline.geo_cells", b.geo_cells),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let slots = b.devices + b.counterparties + b.merchants + b.ip_prefixes + b.geo_cells;
        if slots > SLOT_CAPACITY {
            return Err(invalid(
                "baseline.counterparties",
                format!(
                    "devices + counterparties + merchants + ip_prefixes + geo_cells = {slots}, \
                     over the {SLOT_CAPACITY} slots a profile holds"
                ),
            ));
        }
        let p = &self.prior;
        positive("prior.amount_log_sd", p.amount_log_sd)?;
        if !p.amount_log_mean.is_finite() || p.amount_log_mean < 0.0 {
            return Err(invalid(
                "prior.amount_log_mean",
                "must be a finite number ≥ 0",
            ));
        }
        positive("prior.out_per_day", p.out_per_day)?;
        if p.hour_weights.len() != 24 {
            return Err(invalid(
                "prior.hour_weights",
                format!("needs 24 values, has {}", p.hour_weights.len()),
            ));
        }
        if p.hour_weights.iter().any(|w| !w.is_finite() || *w <= 0.0) {
            return Err(invalid("prior.hour_weights", "every weight must be > 0"));
        }
        let d = &self.detectors;
        unit("detectors.surprise_p_start", d.surprise_p_start)?;
        unit("detectors.surprise_p_full", d.surprise_p_full)?;
        if d.surprise_p_full <= 0.0 || d.surprise_p_full >= d.surprise_p_start {
            return Err(invalid(
                "detectors.surprise_p_full",
                "must be > 0 and below surprise_p_start",
            ));
        }
        for (key, w) in [
            ("detectors.amount_outlier.weight", d.amount_outlier.weight),
            ("detectors.new_device.weight", d.new_device.weight),
            (
                "detectors.new_counterparty.weight",
                d.new_counterparty.weight,
            ),
            (
                "detectors.new_counterparty.payment_factor",
                d.new_counterparty.payment_factor,
            ),
            ("detectors.new_location.weight", d.new_location.weight),
            (
                "detectors.impossible_travel.weight",
                d.impossible_travel.weight,
            ),
            ("detectors.velocity_burst.weight", d.velocity_burst.weight),
            ("detectors.unusual_hour.weight", d.unusual_hour.weight),
            (
                "detectors.credential_change.weight",
                d.credential_change.weight,
            ),
            (
                "detectors.credential_change.known_device_score",
                d.credential_change.known_device_score,
            ),
            (
                "detectors.credential_change.new_device_score",
                d.credential_change.new_device_score,
            ),
            ("detectors.balance_drain.weight", d.balance_drain.weight),
            (
                "detectors.balance_drain.familiar_factor",
                d.balance_drain.familiar_factor,
            ),
            (
                "detectors.amount_outlier.familiar_factor",
                d.amount_outlier.familiar_factor,
            ),
            ("detectors.failed_attempts.weight", d.failed_attempts.weight),
            ("detectors.card_testing.weight", d.card_testing.weight),
            ("detectors.payee_buildup.weight", d.payee_buildup.weight),
            (
                "detectors.concurrent_stranger.weight",
                d.concurrent_stranger.weight,
            ),
            (
                "detectors.dormant_reactivation.weight",
                d.dormant_reactivation.weight,
            ),
            (
                "detectors.new_recharge_number.weight",
                d.new_recharge_number.weight,
            ),
            ("detectors.unusual_hour.p_start", d.unusual_hour.p_start),
            ("detectors.unusual_hour.p_full", d.unusual_hour.p_full),
            (
                "detectors.balance_drain.start_share",
                d.balance_drain.start_share,
            ),
            (
                "detectors.balance_drain.full_share",
                d.balance_drain.full_share,
            ),
        ] {
            unit(key, w)?;
        }
        if d.unusual_hour.p_full >= d.unusual_hour.p_start {
            return Err(invalid(
                "detectors.unusual_hour.p_full",
                "must be below p_start",
            ));
        }
        if !(d.concurrent_stranger.full_minutes >= 0.0
            && d.concurrent_stranger.zero_minutes > d.concurrent_stranger.full_minutes)
        {
            return Err(invalid(
                "detectors.concurrent_stranger.zero_minutes",
                "must be above full_minutes, which must be >= 0",
            ));
        }
        if d.balance_drain.full_share <= d.balance_drain.start_share {
            return Err(invalid(
                "detectors.balance_drain.full_share",
                "must be above start_share",
            ));
        }
        for (key, v) in [
            (
                "detectors.failed_attempts.start_count",
                d.failed_attempts.start_count,
            ),
            (
                "detectors.failed_attempts.full_count",
                d.failed_attempts.full_count,
            ),
            (
                "detectors.card_testing.start_count",
                d.card_testing.start_count,
            ),
            (
                "detectors.card_testing.full_count",
                d.card_testing.full_count,
            ),
            (
                "detectors.card_testing.stranger_start_count",
                d.card_testing.stranger_start_count,
            ),
            (
                "detectors.card_testing.stranger_full_count",
                d.card_testing.stranger_full_count,
            ),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                return Err(invalid(
                    key,
                    format!("must be a finite number ≥ 1, got {v}"),
                ));
            }
        }
        let most = crate::baseline::RING_DELTAS as u32 + 2;
        if d.velocity_burst.min_count < 2 || d.velocity_burst.min_count > most {
            return Err(invalid(
                "detectors.velocity_burst.min_count",
                format!("must be within 2..={most} (the money-out times a profile remembers, plus this one)"),
            ));
        }
        if d.failed_attempts.full_count <= d.failed_attempts.start_count {
            return Err(invalid(
                "detectors.failed_attempts.full_count",
                "must be above start_count",
            ));
        }
        if d.card_testing.full_count <= d.card_testing.start_count {
            return Err(invalid(
                "detectors.card_testing.full_count",
                "must be above start_count",
            ));
        }
        if d.card_testing.stranger_full_count <= d.card_testing.stranger_start_count {
            return Err(invalid(
                "detectors.card_testing.stranger_full_count",
                "must be above stranger_start_count",
            ));
        }
        positive(
            "detectors.payee_buildup.start_share",
            d.payee_buildup.start_share,
        )?;
        if !(d.payee_buildup.full_share > d.payee_buildup.start_share
            && d.payee_buildup.full_share.is_finite())
        {
            return Err(invalid(
                "detectors.payee_buildup.full_share",
                "must be a finite number above start_share",
            ));
        }
        if !(d.payee_buildup.full_count.is_finite() && d.payee_buildup.full_count > 1.0) {
            return Err(invalid(
                "detectors.payee_buildup.full_count",
                "must be a finite number above 1",
            ));
        }
        if !(d.payee_buildup.min_history_days >= 0.0 && d.payee_buildup.min_history_days <= 365.0) {
            return Err(invalid(
                "detectors.payee_buildup.min_history_days",
                "must be within [0, 365]",
            ));
        }
        // The window is stored in a profile as seconds in a u32 (a tick).
        if !(d.payee_buildup.window_days > 0.0 && d.payee_buildup.window_days <= 365.0) {
            return Err(invalid(
                "detectors.payee_buildup.window_days",
                "must be within (0, 365]",
            ));
        }
        if !(d.velocity_burst.burstiness >= 1.0 && d.velocity_burst.burstiness.is_finite()) {
            return Err(invalid(
                "detectors.velocity_burst.burstiness",
                "must be a finite number ≥ 1",
            ));
        }
        positive(
            "detectors.impossible_travel.max_speed_kmh",
            d.impossible_travel.max_speed_kmh,
        )?;
        nonneg(
            "detectors.impossible_travel.trip_overhead_hours",
            d.impossible_travel.trip_overhead_hours,
        )?;
        nonneg(
            "detectors.impossible_travel.min_distance_km",
            d.impossible_travel.min_distance_km,
        )?;
        positive(
            "detectors.credential_change.window_hours",
            d.credential_change.window_hours,
        )?;
        positive(
            "detectors.dormant_reactivation.dormant_days",
            d.dormant_reactivation.dormant_days,
        )?;
        nonneg(
            "detectors.dormant_reactivation.min_amount_ratio",
            d.dormant_reactivation.min_amount_ratio,
        )?;
        nonneg(
            "detectors.amount_outlier.min_amount",
            d.amount_outlier.min_amount,
        )?;
        positive("detectors.amount_outlier.min_sd", d.amount_outlier.min_sd)?;
        nonneg(
            "detectors.balance_drain.min_amount",
            d.balance_drain.min_amount,
        )?;
        positive(
            "detectors.card_testing.tiny_amount",
            d.card_testing.tiny_amount,
        )?;
        let k = &self.decision;
        for (key, v) in [
            ("decision.review", k.review),
            ("decision.step_up", k.step_up),
            ("decision.freeze", k.freeze),
            ("decision.severity_medium", k.severity_medium),
            ("decision.severity_high", k.severity_high),
            ("decision.severity_critical", k.severity_critical),
            ("decision.chain_bonus", k.chain_bonus),
        ] {
            unit(key, v)?;
        }
        if !(k.review > 0.0 && k.review <= k.step_up && k.step_up <= k.freeze) {
            return Err(invalid(
                "decision.step_up",
                "thresholds must satisfy 0 < review ≤ step_up ≤ freeze ≤ 1",
            ));
        }
        if !(k.severity_medium <= k.severity_high && k.severity_high <= k.severity_critical) {
            return Err(invalid(
                "decision.severity_high",
                "severity thresholds must satisfy medium ≤ high ≤ critical",
            ));
        }
        nonneg("decision.freeze_cooldown_hours", k.freeze_cooldown_hours)?;
        if !["auto", "json", "text"].contains(&self.log.format.as_str()) {
            return Err(invalid("log.format", "must be auto, json or text"));
        }
        self.validate_service()
    }

    /// The rules of `[kafka]`, `[http]` and `[[subscriptions]]`.
    fn validate_service(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        for (key, v) in [
            ("kafka.brokers", &k.brokers),
            ("kafka.group_id", &k.group_id),
            ("kafka.alerts_topic", &k.alerts_topic),
            ("kafka.commands_topic", &k.commands_topic),
            ("kafka.dlq_topic", &k.dlq_topic),
            ("kafka.changelog_topic", &k.changelog_topic),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if k.input_topics.is_empty() || k.input_topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.input_topics",
                "needs at least one topic, none empty",
            ));
        }
        let outputs = [
            &k.alerts_topic,
            &k.commands_topic,
            &k.dlq_topic,
            &k.decisions_topic,
            &k.changelog_topic,
        ];
        if let Some(t) = k.input_topics.iter().find(|t| outputs.contains(t)) {
            return Err(invalid(
                "kafka.input_topics",
                format!("`{t}` is also an output topic; that would feed outputs back as input"),
            ));
        }
        if k.max_batch == 0 || k.max_batch > 1_000_000 {
            return Err(invalid("kafka.max_batch", "must be within 1..=1000000"));
        }
        if k.queue_batches == 0 || k.queue_batches > 1024 {
            return Err(invalid("kafka.queue_batches", "must be within 1..=1024"));
        }
        if k.changelog_flush_ms > 60_000 {
            return Err(invalid(
                "kafka.changelog_flush_ms",
                "must be at most 60000 (offsets wait for the changelog)",
            ));
        }
        if k.changelog_max_pending == 0 {
            return Err(invalid("kafka.changelog_max_pending", "must be at least 1"));
        }
        if k.commit_interval_ms == 0 {
            return Err(invalid("kafka.commit_interval_ms", "must be at least 1"));
        }
        if k.restore_timeout_s == 0 {
            return Err(invalid("kafka.restore_timeout_s", "must be at least 1"));
        }
        if k.partitions < 1 {
            return Err(invalid("kafka.partitions", "must be at least 1"));
        }
        if k.replication_factor < 1 {
            return Err(invalid("kafka.replication_factor", "must be at least 1"));
        }
        if k.shutdown_timeout_s == 0 {
            return Err(invalid("kafka.shutdown_timeout_s", "must be at least 1"));
        }
        for (table, map) in [
            ("kafka.librdkafka", &k.librdkafka),
            ("kafka.consumer", &k.consumer),
            ("kafka.producer", &k.producer),
        ] {
            for key in map.keys() {
                // These are set by walletguard itself; letting them through would silently
                // break the delivery guarantee.
                let norm = key.replace('_', ".");
                if matches!(
                    norm.as_str(),
                    "enable.auto.offset.store"
                        | "transactional.id"
                        | "group.id"
                        | "bootstrap.servers"
                        | "isolation.level"
                        | "enable.idempotence"
                ) {
                    return Err(invalid(
                        &format!("{table}.{key}"),
                        "is set by walletguard (use the [kafka] keys for brokers, group and delivery)",
                    ));
                }
            }
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:9898",
                    self.http.listen
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, sub) in self.subscriptions.iter().enumerate() {
            let key = |f: &str| format!("subscriptions[{i}].{f}");
            if sub.name.trim().is_empty() || !names.insert(sub.name.as_str()) {
                return Err(invalid(&key("name"), "must be non-empty and unique"));
            }
            if sub.topic.trim().is_empty() {
                return Err(invalid(&key("topic"), "must not be empty"));
            }
            if k.input_topics.contains(&sub.topic) {
                return Err(invalid(&key("topic"), "must not be an input topic"));
            }
            if crate::decision::Severity::parse(&sub.min_severity).is_none() {
                return Err(invalid(
                    &key("min_severity"),
                    "must be low, medium, high or critical",
                ));
            }
            for a in &sub.actions {
                match crate::decision::Action::parse(a) {
                    Some(crate::decision::Action::Allow) | None => {
                        return Err(invalid(
                            &key("actions"),
                            format!("`{a}` is not review, step_up or freeze"),
                        ))
                    }
                    Some(_) => {}
                }
            }
            for c in &sub.reason_codes {
                if crate::detect::Code::parse(c).is_none() {
                    return Err(invalid(
                        &key("reason_codes"),
                        format!("`{c}` is not a reason code"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be a finite number > 0, got {v}"),
        ))
    }
}

fn nonneg(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be a finite number ≥ 0, got {v}"),
        ))
    }
}

fn unit(key: &str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, format!("must be within 0..=1, got {v}")))
    }
}

/// Lays `over` onto `base`, table by table; other values replace.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Applies one `WALLETGUARD_A__B=value` override to the TOML tree. The value is read as a
/// TOML value when it parses as one (numbers, booleans, arrays), else as a plain string.
fn apply_env(root: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.into(),
            msg: "empty key segment (use __ between levels, e.g. WALLETGUARD_DECISION__FREEZE)"
                .into(),
        });
    }
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = path.split_last().ok_or_else(|| ConfigError::Env {
        var: var.into(),
        msg: "no key".into(),
    })?;
    let mut table = root;
    for seg in parents {
        let entry = table
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.into(),
            msg: format!("`{seg}` is not a table"),
        })?;
    }
    table.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn shipped_file_matches_defaults() {
        // The commented file in config/ documents every knob; it must stay loadable, and its
        // values are the defaults the code ships with.
        let text = include_str!("../config/walletguard.toml");
        let cfg = Config::from_toml(text).unwrap();
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn partial_tables_and_lone_overrides_keep_defaults() {
        let cfg = Config::from_toml("[detectors.new_device]\nenabled = false\n").unwrap();
        assert!(!cfg.detectors.new_device.enabled);
        assert_eq!(
            cfg.detectors.new_device.weight,
            Config::default().detectors.new_device.weight
        );
        let cfg = Config::from_toml_with_env(
            "",
            vec![(
                "WALLETGUARD_DETECTORS__NEW_LOCATION__ENABLED".to_string(),
                "false".to_string(),
            )],
        )
        .unwrap();
        assert!(!cfg.detectors.new_location.enabled);
    }

    #[test]
    fn silent_misconfigurations_are_rejected() {
        for (text, key) in [
            (
                "[detectors.payee_buildup]\nfull_share = 0.01\n",
                "detectors.payee_buildup.full_share",
            ),
            (
                "[detectors.payee_buildup]\nwindow_days = 0\n",
                "detectors.payee_buildup.window_days",
            ),
            (
                "[detectors.payee_buildup]\nfull_count = 1\n",
                "detectors.payee_buildup.full_count",
            ),
            (
                "[detectors.card_testing]\nstranger_full_count = 1.0\n",
                "detectors.card_testing.stranger_full_count",
            ),
            (
                "[detectors.failed_attempts]\nstart_count = -5.0\n",
                "detectors.failed_attempts.start_count",
            ),
            (
                "[detectors.card_testing]\nfull_count = inf\n",
                "detectors.card_testing.full_count",
            ),
            (
                "[detectors.velocity_burst]\nmin_count = 12\n",
                "detectors.velocity_burst.min_count",
            ),
            (
                "[baseline]\nhalf_life_days = 1000.0\n",
                "baseline.half_life_days",
            ),
        ] {
            let e = Config::from_toml(text).unwrap_err();
            assert_eq!(e.key(), Some(key), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[decision]\nfreez = 0.9\n").unwrap_err();
        assert_eq!(e.key(), Some("decision.freez"));
        assert!(e.to_string().contains("unknown field `freez`"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::from_toml("[detectors.balance_drain]\nweight = \"high\"\n").unwrap_err();
        assert_eq!(e.key(), Some("detectors.balance_drain.weight"), "{e}");
    }

    #[test]
    fn rule_violations_are_named() {
        let e = Config::from_toml("[decision]\nreview = 0.9\nstep_up = 0.5\n").unwrap_err();
        assert_eq!(e.key(), Some("decision.step_up"));
        let e = Config::from_toml("[general]\nutc_offset = \"8\"\n").unwrap_err();
        assert_eq!(e.key(), Some("general.utc_offset"));
        let e = Config::from_toml("[baseline]\ncounterparties = 40\n").unwrap_err();
        assert_eq!(e.key(), Some("baseline.counterparties"));
        let e = Config::from_toml("[baseline]\nipv4_prefix_bits = 33\n").unwrap_err();
        assert_eq!(e.key(), Some("baseline.ipv4_prefix_bits"));
        let e = Config::from_toml("[prior]\nhour_weights = [1.0]\n").unwrap_err();
        assert_eq!(e.key(), Some("prior.hour_weights"));
    }

    #[test]
    fn env_overrides_apply_and_are_checked() {
        let env = vec![
            (
                "WALLETGUARD_DECISION__FREEZE".to_string(),
                "0.95".to_string(),
            ),
            (
                "WALLETGUARD_GENERAL__DEFAULT_CURRENCY".to_string(),
                "USD".to_string(),
            ),
            ("WALLETGUARD_CONFIG".to_string(), "/ignored".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let cfg = Config::from_toml_with_env("", env).unwrap();
        assert_eq!(cfg.decision.freeze, 0.95);
        assert_eq!(cfg.general.default_currency, "USD");
        let e = Config::from_toml_with_env(
            "",
            vec![("WALLETGUARD_DECISION__FROZE".to_string(), "1".to_string())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("froze"), "{e}");
        let e = Config::from_toml_with_env(
            "",
            vec![("WALLETGUARD_DECISION__FREEZE".to_string(), "2".to_string())],
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("decision.freeze"));
    }

    /// Every value of the shipped file replaced, one at a time, by values of other types and
    /// out-of-range numbers, and unknown keys added to every section: each result is a config
    /// or an error that names a key (or, for text that is no longer TOML, a syntax error).
    /// `WG_FUZZ_SCALE` = n adds n − 1 random values per key (outside CI).
    #[test]
    fn any_mutation_of_the_shipped_file_is_a_config_or_names_its_key() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/walletguard.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let fixed = [
            "-1",
            "0",
            "1",
            "0.5",
            "-0.0",
            "nan",
            "inf",
            "-inf",
            "1e300",
            "9223372036854775807",
            "\"x\"",
            "\"\"",
            "true",
            "[]",
            "[1, \"a\"]",
            "{}",
            "{ a = 1 }",
            "1979-05-27",
        ];
        let rounds = crate::fuzz_scale() - 1;
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut cases = 0u64;
        let mut check = |mutated: String, what: &str| {
            cases += 1;
            match Config::from_toml(&mutated) {
                Ok(_) | Err(ConfigError::Syntax { .. }) => {}
                Err(e) => assert!(
                    e.key().is_some_and(|k| !k.is_empty()),
                    "{what}: error names no key: {e}"
                ),
            }
        };
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if t.starts_with('#') || t.starts_with('[') || !t.contains(" = ") {
                if t.starts_with('[') && !t.starts_with("[[") {
                    let mut m = lines.clone();
                    m.insert(i + 1, "bogus_key_xyz = 1");
                    check(m.join("\n"), &format!("unknown key after line {}", i + 1));
                }
                continue;
            }
            let Some((k, _)) = line.split_once(" = ") else {
                continue;
            };
            let mut values: Vec<String> = fixed.iter().map(|v| v.to_string()).collect();
            for _ in 0..rounds {
                let n = next();
                values.push(match n % 4 {
                    0 => format!("{}", n as i64),
                    1 => format!("{:e}", f64::from_bits(n)).replace("NaN", "nan"),
                    2 => format!("\"{}\"", n % 1000),
                    _ => format!("{}", (n % 200_000) as i64 - 100_000),
                });
            }
            for v in values {
                let mut m = lines.clone();
                let replaced = format!("{k} = {v}");
                m[i] = &replaced;
                check(m.join("\n"), &format!("line {}: {replaced}", i + 1));
            }
        }
        eprintln!("{cases} config mutations checked");
        assert!(cases > 1_000, "only {cases} cases");
    }
}
