//! The channels that carry alerts to subscribers besides the subscription topics themselves:
//! signed webhooks and the live stream.

pub mod alert_stream;
pub mod webhooks;

use serde::{Deserialize, Serialize};

use crate::engine::validate::{invalid, Checked};

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
    /// Also POST each copy to an HTTP endpoint, signed (Standard Webhooks), delivered from
    /// `topic` by a consumer group of its own (see [`crate::service::channels::webhooks`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

/// `webhook = { ... }` of a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint, `http://` or `https://`.
    pub url: String,
    /// Name of the environment variable holding the signing secret(s): `whsec_<base64>` (the
    /// Standard Webhooks form) or raw text; several, separated by spaces, sign with each (key
    /// rotation).
    pub secret_env: String,
    /// Per attempt.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
    /// Attempts before the alert goes to `kafka.undelivered_topic`.
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (capped at 5 minutes), with jitter.
    #[serde(default = "default_webhook_backoff")]
    pub backoff_ms: u64,
    /// Deliveries in flight at once (offsets are still committed in order).
    #[serde(default = "default_webhook_in_flight")]
    pub max_in_flight: usize,
}

fn default_webhook_timeout() -> u64 {
    5_000
}
fn default_webhook_attempts() -> u32 {
    6
}
fn default_webhook_backoff() -> u64 {
    1_000
}
fn default_webhook_in_flight() -> usize {
    16
}

fn default_min_severity() -> String {
    "low".into()
}

/// The subscriptions shipped by default: critical alerts, and takeover chains.
pub fn default_subscriptions() -> Vec<Subscription> {
    vec![
        Subscription {
            name: "critical".into(),
            topic: "wallet.alerts.critical".into(),
            min_severity: "critical".into(),
            actions: vec![],
            reason_codes: vec![],
            webhook: None,
        },
        Subscription {
            name: "ato".into(),
            topic: "wallet.alerts.ato".into(),
            min_severity: "low".into(),
            actions: vec![],
            reason_codes: vec!["ATO_CHAIN".into()],
            webhook: None,
        },
    ]
}

/// Checks the rules of `[[subscriptions]]`: names unique, topics not `inputs`, webhooks,
/// severities, actions and reason codes that exist. The error names the key.
pub fn validate(subs: &[Subscription], inputs: &[String]) -> Checked {
    let mut names = std::collections::HashSet::new();
    for (i, sub) in subs.iter().enumerate() {
        let key = |f: &str| format!("subscriptions[{i}].{f}");
        if sub.name.trim().is_empty() || !names.insert(sub.name.as_str()) {
            return Err(invalid(&key("name"), "must be non-empty and unique"));
        }
        if sub.topic.trim().is_empty() {
            return Err(invalid(&key("topic"), "must not be empty"));
        }
        if inputs.contains(&sub.topic) {
            return Err(invalid(&key("topic"), "must not be an input topic"));
        }
        if let Some(w) = &sub.webhook {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(invalid(
                    &key("webhook.url"),
                    "must start with http:// or https://",
                ));
            }
            if w.secret_env.trim().is_empty() {
                return Err(invalid(
                    &key("webhook.secret_env"),
                    "must name the environment variable that holds the secret",
                ));
            }
            if !(1..=600_000).contains(&w.timeout_ms) {
                return Err(invalid(&key("webhook.timeout_ms"), "must be 1 to 600000"));
            }
            if !(1..=100).contains(&w.max_attempts) {
                return Err(invalid(&key("webhook.max_attempts"), "must be 1 to 100"));
            }
            if w.backoff_ms > 3_600_000 {
                return Err(invalid(
                    &key("webhook.backoff_ms"),
                    "must be at most 3600000",
                ));
            }
            if !(1..=1024).contains(&w.max_in_flight) {
                return Err(invalid(&key("webhook.max_in_flight"), "must be 1 to 1024"));
            }
        }
        if crate::engine::decision::Severity::parse(&sub.min_severity).is_none() {
            return Err(invalid(
                &key("min_severity"),
                "must be low, medium, high or critical",
            ));
        }
        for a in &sub.actions {
            match crate::engine::decision::Action::parse(a) {
                Some(crate::engine::decision::Action::Allow) | None => {
                    return Err(invalid(
                        &key("actions"),
                        format!("`{a}` is not review, step_up or freeze"),
                    ))
                }
                Some(_) => {}
            }
        }
        for c in &sub.reason_codes {
            if crate::engine::detect::Code::parse(c).is_none() {
                return Err(invalid(
                    &key("reason_codes"),
                    format!("`{c}` is not a reason code"),
                ));
            }
        }
    }
    Ok(())
}
