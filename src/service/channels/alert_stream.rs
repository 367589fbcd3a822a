//! `GET /alerts/stream`: alerts as Server-Sent Events, for dashboards and on-call tools that
//! want them live without a Kafka client.
//!
//! - Each event is `id: <alert_id>`, `event: alert`, `data: <the alert's JSON>` (the same
//!   record as the alerts topic). `alert_id` is deterministic, so a client that sees one twice
//!   (a crash replays uncommitted events) can drop the second.
//! - Query filters: `min_severity` (`low`..`critical`), `action` and `code` (comma-separated;
//!   any one must match; snoozed reasons do not count).
//! - The last `http.stream_buffer` alerts are kept: a client that reconnects with
//!   `Last-Event-ID` gets the ones after that id first (all kept ones if the id is no longer
//!   there), then the live ones.
//! - A client that falls `http.stream_client_queue` alerts behind is disconnected and counted
//!   (`walletguard_stream_clients_dropped_total`): the partitions publish without waiting.
//! - Alerts carry user ids: the route needs `Authorization: Bearer <token>`, the token read at
//!   startup from the variable `http.stream_token_env` names; without one the route is off.
//!
//! Alerts are published when their batch is scored, before the outputs are acknowledged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::engine::decision::{Action, Severity};
use crate::engine::event::Event;
use crate::engine::pipeline::Outcome;
use crate::service::metrics::Metrics;

/// One published alert.
#[derive(Debug)]
pub struct StreamAlert {
    /// `alert_id`.
    pub id: String,
    /// Its severity.
    pub severity: Severity,
    /// Its action.
    pub action: Action,
    /// Counted reason codes ([`crate::engine::detect::Code::bit`]).
    pub codes: u32,
    /// The alert record, JSON.
    pub json: String,
}

/// What a client asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Lowest severity.
    pub min_severity: Option<Severity>,
    /// Actions; empty: any.
    pub actions: Vec<Action>,
    /// Any of these codes ([`crate::engine::detect::Code::bit`]); 0: any.
    pub codes: u32,
}

/// A query parameter that names nothing known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {param} `{value}`")]
pub struct FilterError {
    /// The parameter.
    pub param: &'static str,
    /// What was sent.
    pub value: String,
}

impl Filter {
    /// From the query parameters `min_severity`, `action` and `code`.
    pub fn parse(
        min_severity: Option<&str>,
        action: Option<&str>,
        code: Option<&str>,
    ) -> Result<Filter, FilterError> {
        let bad = |param, value: &str| FilterError {
            param,
            value: value.to_owned(),
        };
        let items = |s: Option<&str>| -> Vec<String> {
            s.unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let min_severity = match min_severity.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(
                Severity::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| bad("min_severity", s))?,
            ),
            None => None,
        };
        let mut actions = Vec::new();
        for a in items(action) {
            actions.push(
                Action::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == a)
                    .ok_or_else(|| bad("action", &a))?,
            );
        }
        let mut codes = 0;
        for c in items(code) {
            codes |= crate::engine::detect::Code::parse(&c)
                .ok_or_else(|| bad("code", &c))?
                .bit();
        }
        Ok(Filter {
            min_severity,
            actions,
            codes,
        })
    }

    /// Whether `a` passes.
    pub fn matches(&self, a: &StreamAlert) -> bool {
        self.min_severity.is_none_or(|m| a.severity >= m)
            && (self.actions.is_empty() || self.actions.contains(&a.action))
            && (self.codes == 0 || self.codes & a.codes != 0)
    }
}

/// The hub partitions publish to and stream clients read from.
pub struct AlertHub {
    token: String,
    tx: broadcast::Sender<Arc<StreamAlert>>,
    recent: Mutex<VecDeque<Arc<StreamAlert>>>,
    keep: usize,
    metrics: Arc<Metrics>,
}

impl AlertHub {
    /// A hub serving clients that present `token`, keeping `keep` alerts, disconnecting
    /// clients `queue` alerts behind.
    pub fn new(token: String, keep: usize, queue: usize, metrics: Arc<Metrics>) -> AlertHub {
        let (tx, _) = broadcast::channel(queue.max(1));
        AlertHub {
            token,
            tx,
            recent: Mutex::new(VecDeque::with_capacity(keep.min(4096))),
            keep: keep.max(1),
            metrics,
        }
    }

    /// Whether `presented` (the `Authorization` header's value) carries the token. Compared
    /// in constant time.
    pub fn authorized(&self, presented: Option<&str>) -> bool {
        let Some(t) = presented.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let (a, b) = (t.trim().as_bytes(), self.token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    }

    /// Publishes the alert of `ev`'s outcome (call only when `o.alert()`).
    pub fn publish(&self, ev: &Event<'_>, o: &Outcome) {
        let mut json = Vec::with_capacity(512);
        crate::engine::output::write_alert(&mut json, ev, o);
        while json.last() == Some(&b'\n') {
            json.pop();
        }
        let alert = Arc::new(StreamAlert {
            id: crate::engine::output::alert_id(&ev.user_id, &ev.event_id),
            severity: o.decision.severity,
            action: o.decision.action,
            codes: o.decision.signals.iter().fold(0, |m, s| m | s.code.bit()),
            json: String::from_utf8_lossy(&json).into_owned(),
        });
        self.push(alert);
    }

    /// Publishes a built alert.
    pub fn push(&self, alert: Arc<StreamAlert>) {
        // Under the lock, so that a subscriber's backlog and live feed neither overlap nor
        // leave a gap.
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= self.keep {
            recent.pop_front();
        }
        recent.push_back(alert.clone());
        let _ = self.tx.send(alert);
    }

    /// The kept alerts after `last_id` (all kept ones when it is not among them; none without
    /// one), and the live feed from then on.
    pub fn subscribe(
        &self,
        last_id: Option<&str>,
    ) -> (Vec<Arc<StreamAlert>>, broadcast::Receiver<Arc<StreamAlert>>) {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let backlog = match last_id {
            Some(id) => {
                let from = recent.iter().position(|a| a.id == id).map_or(0, |i| i + 1);
                recent.iter().skip(from).cloned().collect()
            }
            None => Vec::new(),
        };
        (backlog, self.tx.subscribe())
    }

    /// The metrics the stream reports into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// How long a quiet stream waits before a keep-alive comment.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The `text/event-stream` frame of one alert.
pub fn frame(a: &StreamAlert) -> String {
    format!("id: {}\nevent: alert\ndata: {}\n\n", a.id, a.json)
}

/// A client's stream: the backlog, then live alerts that pass `filter`, ending when the
/// client falls behind (counted) or the hub is gone.
pub fn client_stream(
    hub: Arc<AlertHub>,
    filter: Filter,
    last_id: Option<String>,
) -> impl futures_util::Stream<Item = Result<String, std::convert::Infallible>> + Send {
    let (backlog, rx) = hub.subscribe(last_id.as_deref());
    hub.metrics.stream_clients.inc();
    let guard = ClientGuard(hub.clone());
    let backlog: VecDeque<Arc<StreamAlert>> = backlog.into_iter().collect();
    futures_util::stream::unfold(
        (backlog, rx, filter, guard),
        |(mut backlog, mut rx, filter, guard)| async move {
            loop {
                let next = match backlog.pop_front() {
                    Some(a) => a,
                    None => match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
                        // A comment line keeps proxies from closing a quiet stream.
                        Err(_) => {
                            return Some((
                                Ok(": keepalive\n\n".to_owned()),
                                (backlog, rx, filter, guard),
                            ))
                        }
                        Ok(Ok(a)) => a,
                        Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                            guard.0.metrics.stream_clients_dropped.inc();
                            tracing::info!("alert stream client fell behind; disconnected");
                            return None;
                        }
                        Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    },
                };
                if filter.matches(&next) {
                    return Some((Ok(frame(&next)), (backlog, rx, filter, guard)));
                }
            }
        },
    )
}

/// Counts a client out when its stream is dropped.
struct ClientGuard(Arc<AlertHub>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.metrics.stream_clients.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn alert(
        i: u32,
        severity: Severity,
        action: Action,
        code: crate::engine::detect::Code,
    ) -> Arc<StreamAlert> {
        Arc::new(StreamAlert {
            id: format!("al-{i}"),
            severity,
            action,
            codes: code.bit(),
            json: format!("{{\"alert_id\":\"al-{i}\"}}"),
        })
    }

    fn hub(keep: usize, queue: usize) -> Arc<AlertHub> {
        let m = Arc::new(Metrics::new().unwrap());
        Arc::new(AlertHub::new("s3cret".into(), keep, queue, m))
    }

    #[test]
    fn filters_parse_and_match() {
        use crate::engine::detect::Code;
        let f = Filter::parse(Some("high"), Some("freeze, step_up"), Some("NEW_DEVICE")).unwrap();
        let ok = alert(1, Severity::Critical, Action::Freeze, Code::NewDevice);
        assert!(f.matches(&ok));
        assert!(!f.matches(&alert(2, Severity::Medium, Action::Freeze, Code::NewDevice)));
        assert!(!f.matches(&alert(3, Severity::High, Action::Review, Code::NewDevice)));
        assert!(!f.matches(&alert(
            4,
            Severity::High,
            Action::Freeze,
            Code::AmountOutlier
        )));
        assert!(Filter::default().matches(&ok));
        assert_eq!(
            Filter::parse(Some("huge"), None, None).unwrap_err().param,
            "min_severity"
        );
        assert_eq!(
            Filter::parse(None, Some("ban"), None).unwrap_err().param,
            "action"
        );
        assert_eq!(
            Filter::parse(None, None, Some("NOPE")).unwrap_err().param,
            "code"
        );
    }

    #[test]
    fn the_token_is_required() {
        let h = hub(10, 10);
        assert!(h.authorized(Some("Bearer s3cret")));
        assert!(!h.authorized(Some("Bearer s3cre")));
        assert!(!h.authorized(Some("s3cret")));
        assert!(!h.authorized(None));
    }

    #[tokio::test]
    async fn last_event_id_resumes_and_a_slow_client_is_dropped() {
        use crate::engine::detect::Code;
        let h = hub(3, 2);
        for i in 1..=5 {
            h.push(alert(i, Severity::High, Action::Review, Code::NewDevice));
        }
        // Only the last three are kept: after al-3 come al-4 and al-5; an id no longer kept
        // gets all three.
        let (b, _) = h.subscribe(Some("al-3"));
        assert_eq!(
            b.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["al-4", "al-5"]
        );
        let (b, _) = h.subscribe(Some("al-1"));
        assert_eq!(b.len(), 3);
        assert!(h.subscribe(None).0.is_empty());

        let mut s = Box::pin(client_stream(
            h.clone(),
            Filter::default(),
            Some("al-4".into()),
        ));
        assert_eq!(h.metrics().stream_clients.get(), 1);
        let first = s.next().await.unwrap().unwrap();
        assert!(
            first.starts_with("id: al-5\nevent: alert\ndata: {"),
            "{first}"
        );
        // Live, then three more than the queue holds without reading: disconnected, counted.
        h.push(alert(6, Severity::High, Action::Review, Code::NewDevice));
        assert!(s.next().await.unwrap().unwrap().starts_with("id: al-6"));
        for i in 7..=10 {
            h.push(alert(i, Severity::High, Action::Review, Code::NewDevice));
        }
        assert!(s.next().await.is_none(), "a lagging client is disconnected");
        assert_eq!(h.metrics().stream_clients_dropped.get(), 1);
        drop(s);
        assert_eq!(h.metrics().stream_clients.get(), 0);
    }
}
