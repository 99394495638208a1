//! `/healthz` (the process is up), `/readyz` (connected and serving) and `/metrics`
//! (Prometheus text format) for each daemon.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// Counters a daemon exports, by metric name.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    counters: Arc<Mutex<BTreeMap<&'static str, Arc<AtomicU64>>>>,
}

impl Metrics {
    /// Adds `by` to the counter `name` (created at zero on first use).
    pub fn add(&self, name: &'static str, by: u64) {
        let counter = {
            let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            counters.entry(name).or_default().clone()
        };
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// Adds one to the counter `name`.
    pub fn inc(&self, name: &'static str) {
        self.add(name, 1);
    }

    /// The counter's value.
    pub fn get(&self, name: &str) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters.get(name).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, value) in counters.iter() {
            out.push_str(&format!(
                "# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// Readiness and metrics of one daemon.
#[derive(Debug, Default, Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    pub metrics: Metrics,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Serves the endpoints at `addr`, when given, in the background until `shutdown`. Not
    /// being able to serve them is logged, never fatal: the daemon's work goes on.
    pub fn spawn_server(
        &self,
        addr: Option<SocketAddr>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let Some(addr) = addr else { return };
        let server = self.clone();
        tokio::spawn(async move {
            if let Err(e) = server.serve(addr, shutdown).await {
                tracing::error!(%addr, cause = %e, "cannot serve /healthz, /readyz and /metrics");
            }
        });
    }

    /// Serves the endpoints on `addr` until `shutdown` resolves.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(health): State<Health>) -> String {
    health.metrics.render()
}
