//! The HTTP edge: `/metrics` (Prometheus text), `/healthz` (the process is alive and its
//! pipeline has not failed), `/readyz` (started, the brokers reachable, no partition
//! restoring state, not suspended after a stall, and every assigned partition consumed), and, when a token is configured, `/alerts/stream` (see
//! [`crate::service::channels::alert_stream`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::validate::{invalid, Checked};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::service::channels::alert_stream::{client_stream, AlertHub, Filter};
use crate::service::metrics::Metrics;

/// Liveness and readiness shared between the pipeline and the HTTP server.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    failed: AtomicBool,
    restoring: AtomicI64,
    brokers_down: AtomicBool,
    suspended: AtomicBool,
    unfetched: AtomicI64,
}

impl Health {
    /// A fresh, not yet started state.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// The pipeline is connected and consuming.
    pub fn set_started(&self, v: bool) {
        self.started.store(v, Ordering::SeqCst);
    }

    /// The pipeline hit a fatal error: `/healthz` answers 503 so an orchestrator restarts it.
    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Whether any broker is reachable. Not ready while none is: the instance is alive (it
    /// reconnects by itself, so a restart would not help) but makes no progress.
    pub fn set_brokers_up(&self, up: bool) {
        self.brokers_down.store(!up, Ordering::SeqCst);
    }

    /// A partition started (+1) or finished (-1) restoring.
    pub fn restoring(&self, delta: i64) {
        self.restoring.fetch_add(delta, Ordering::SeqCst);
    }

    /// Writes are held after a stall of the process until its partitions are fenced and
    /// taken again: not ready meanwhile.
    pub fn set_suspended(&self, v: bool) {
        self.suspended.store(v, Ordering::SeqCst);
    }

    /// Partitions assigned to this instance that it is not consuming: not ready while any.
    pub fn set_unfetched(&self, n: i64) {
        self.unfetched.store(n, Ordering::SeqCst);
    }

    /// Alive: not failed.
    pub fn is_live(&self) -> bool {
        !self.failed.load(Ordering::SeqCst)
    }

    /// Ready: started, alive, brokers reachable, no partition restoring, not suspended after
    /// a stall, and every assigned partition consumed.
    pub fn is_ready(&self) -> bool {
        self.not_ready_because().is_empty()
    }

    /// Why the instance is not ready (empty when it is): what `/readyz` answers, so an
    /// operator (or a soak) sees the cause without reading logs.
    pub fn not_ready_because(&self) -> Vec<&'static str> {
        let mut why = Vec::new();
        if !self.is_live() {
            why.push("failed");
        }
        if !self.started.load(Ordering::SeqCst) {
            why.push("not started");
        }
        if self.brokers_down.load(Ordering::SeqCst) {
            why.push("no broker answering");
        }
        if self.restoring.load(Ordering::SeqCst) > 0 {
            why.push("restoring partitions");
        }
        if self.suspended.load(Ordering::SeqCst) {
            why.push("suspended after a stall");
        }
        if self.unfetched.load(Ordering::SeqCst) > 0 {
            why.push("assigned partitions not consumed");
        }
        why
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stream: Option<Arc<AlertHub>>,
}

/// The router, without a socket: tests call it with `oneshot`. `/alerts/stream` exists only
/// with a `stream` hub.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>, stream: Option<Arc<AlertHub>>) -> Router {
    let mut r = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if stream.is_some() {
        r = r.route("/alerts/stream", get(alerts_stream));
    }
    r.with_state(AppState {
        metrics,
        health,
        stream,
    })
}

/// Query parameters of `/alerts/stream`.
#[derive(Debug, Default, serde::Deserialize)]
struct StreamQuery {
    min_severity: Option<String>,
    action: Option<String>,
    code: Option<String>,
}

async fn alerts_stream(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(q): Query<StreamQuery>,
) -> axum::response::Response {
    let Some(hub) = s.stream else {
        return (StatusCode::NOT_FOUND, "off\n").into_response();
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !hub.authorized(auth) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response();
    }
    let filter = match Filter::parse(
        q.min_severity.as_deref(),
        q.action.as_deref(),
        q.code.as_deref(),
    ) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = axum::body::Body::from_stream(client_stream(hub, filter, last));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_live() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failed\n")
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let why = s.health.not_ready_because();
    if why.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join(", ")),
        )
    }
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address (useful with
/// port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stream: Option<Arc<AlertHub>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(metrics, health, stream);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((local, task))
}

/// `[http]`: the metrics and health endpoint of `run` and `demo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz`.
    pub enabled: bool,
    /// Listen address. Loopback by default; set `0.0.0.0:9898` in a container.
    pub listen: String,
    /// Name of the environment variable holding the bearer token of `GET /alerts/stream`;
    /// empty, or the variable unset or empty: the route is off (alerts carry user ids).
    pub stream_token_env: String,
    /// Recent alerts kept for reconnects with `Last-Event-ID`.
    pub stream_buffer: usize,
    /// Alerts a stream client may fall behind before it is disconnected.
    pub stream_client_queue: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: "127.0.0.1:9898".into(),
            stream_token_env: String::new(),
            stream_buffer: 1000,
            stream_client_queue: 256,
        }
    }
}

impl HttpConfig {
    /// Checks the rules of `[http]`; the error names the key.
    pub fn validate(&self) -> Checked {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                format!("`{}` is not an address like 127.0.0.1:9898", self.listen),
            ));
        }
        if !(1..=1_000_000).contains(&self.stream_buffer) {
            return Err(invalid("http.stream_buffer", "must be 1 to 1000000"));
        }
        if !(1..=1_000_000).contains(&self.stream_client_queue) {
            return Err(invalid("http.stream_client_queue", "must be 1 to 1000000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_status(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let code = buf[9..12].parse().unwrap();
        (code, buf)
    }

    #[tokio::test]
    async fn endpoints_follow_health_and_serve_metrics() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let health = Health::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, task) = serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics,
            health.clone(),
            None,
            async {
                let _ = rx.await;
            },
        )
        .await
        .unwrap();
        assert_eq!(get_status(addr, "/healthz").await.0, 200);
        assert_eq!(get_status(addr, "/readyz").await.0, 503);
        health.set_started(true);
        assert_eq!(get_status(addr, "/readyz").await.0, 200);
        health.restoring(1);
        assert_eq!(get_status(addr, "/readyz").await.0, 503);
        health.restoring(-1);
        health.set_suspended(true);
        assert_eq!(
            get_status(addr, "/readyz").await.0,
            503,
            "suspended after a stall"
        );
        health.set_suspended(false);
        health.set_unfetched(2);
        assert_eq!(
            get_status(addr, "/readyz").await.0,
            503,
            "partitions not consumed"
        );
        health.set_unfetched(0);
        assert_eq!(get_status(addr, "/readyz").await.0, 200);
        let (code, body) = get_status(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("walletguard_build_info"));
        health.set_failed();
        assert_eq!(get_status(addr, "/healthz").await.0, 503);
        assert_eq!(get_status(addr, "/readyz").await.0, 503);
        let _ = tx.send(());
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_alert_stream_needs_the_token_filters_and_resumes() {
        use crate::engine::decision::{Action, Severity};
        use crate::engine::detect::Code;
        use crate::service::channels::alert_stream::StreamAlert;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let metrics = Arc::new(Metrics::new().unwrap());
        let hub = Arc::new(AlertHub::new("tok".into(), 100, 100, metrics.clone()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, task) = serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics.clone(),
            Health::new(),
            Some(hub.clone()),
            async {
                let _ = rx.await;
            },
        )
        .await
        .unwrap();
        assert_eq!(get_status(addr, "/alerts/stream").await.0, 401);
        let push = |i: u32, action: Action| {
            hub.push(Arc::new(StreamAlert {
                id: format!("al-{i}"),
                severity: Severity::High,
                action,
                codes: Code::NewDevice.bit(),
                json: format!("{{\"n\":{i}}}"),
            }))
        };
        push(1, Action::Review);
        push(2, Action::Freeze);
        let open = |query: &'static str, last: Option<&'static str>| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let last = last
                .map(|l| format!("Last-Event-ID: {l}\r\n"))
                .unwrap_or_default();
            s.write_all(
                format!("GET /alerts/stream{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n{last}\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            s
        };
        let read_until = |mut s: tokio::net::TcpStream, needle: &'static str| async move {
            let mut text = String::new();
            let mut buf = [0u8; 4096];
            while !text.contains(needle) {
                let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
                    .await
                    .expect("stream data in time")
                    .unwrap();
                assert!(n > 0, "stream closed early: {text}");
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            text
        };
        // Resume after al-1, only freezes: al-2 from the buffer, then live al-4 (al-3 is a
        // review).
        let s = open("?action=freeze", Some("al-1")).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        push(3, Action::Review);
        push(4, Action::Freeze);
        let text = read_until(s, "id: al-4").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("text/event-stream"), "{text}");
        assert!(
            text.contains("id: al-2\nevent: alert\ndata: {\"n\":2}"),
            "{text}"
        );
        assert!(!text.contains("al-1") && !text.contains("al-3"), "{text}");
        assert_eq!(
            get_status(addr, "/alerts/stream?min_severity=bogus")
                .await
                .0,
            401,
            "the token is checked first"
        );
        let mut bad = open("?min_severity=bogus", None).await;
        let mut head = [0u8; 12];
        bad.read_exact(&mut head).await.unwrap();
        assert_eq!(&head[9..12], b"400");
        let _ = tx.send(());
        drop(task);
    }
}
