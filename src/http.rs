//! The HTTP edge: `/metrics` (Prometheus text), `/healthz` (the process is alive and its
//! pipeline has not failed) and `/readyz` (started, the brokers reachable, and no partition
//! restoring state).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

/// Liveness and readiness shared between the pipeline and the HTTP server.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    failed: AtomicBool,
    restoring: AtomicI64,
    brokers_down: AtomicBool,
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

    /// Alive: not failed.
    pub fn is_live(&self) -> bool {
        !self.failed.load(Ordering::SeqCst)
    }

    /// Ready: started, alive, brokers reachable, and no partition restoring.
    pub fn is_ready(&self) -> bool {
        self.is_live()
            && self.started.load(Ordering::SeqCst)
            && !self.brokers_down.load(Ordering::SeqCst)
            && self.restoring.load(Ordering::SeqCst) <= 0
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The router, without a socket: tests call it with `oneshot`.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
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
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address (useful with
/// port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(metrics, health);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((local, task))
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
        let (code, body) = get_status(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("walletguard_build_info"));
        health.set_failed();
        assert_eq!(get_status(addr, "/healthz").await.0, 503);
        assert_eq!(get_status(addr, "/readyz").await.0, 503);
        let _ = tx.send(());
        task.await.unwrap().unwrap();
    }
}
