//! `/healthz` (the process is up), `/readyz` (connected and serving) and `/metrics`
//! (Prometheus text format) for each daemon.

use crate::Chain;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::registry::Registry;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::DaemonMetrics;

/// Readiness and metrics of one daemon: `M` is its metrics struct, whose fields the daemon
/// records into and tests read.
#[derive(Debug)]
pub struct Health<M> {
    ready: Arc<AtomicBool>,
    /// The registry of `metrics`, complete from the start: rendering it takes no lock.
    registry: Arc<Registry>,
    pub metrics: Arc<M>,
}

// Not derived: a derive would ask `M: Clone`, and the metrics are shared, not cloned.
impl<M> Clone for Health<M> {
    fn clone(&self) -> Self {
        Health {
            ready: self.ready.clone(),
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<M: DaemonMetrics> Default for Health<M> {
    fn default() -> Self {
        Health::new()
    }
}

impl<M: DaemonMetrics> Health<M> {
    /// Not ready yet, every metric registered at zero.
    pub fn new() -> Health<M> {
        let metrics = M::default();
        Health {
            ready: Arc::default(),
            registry: Arc::new(metrics.registry()),
            metrics: Arc::new(metrics),
        }
    }
}

impl<M: Send + Sync + 'static> Health<M> {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The Prometheus (OpenMetrics) text exposition of every metric of the daemon.
    pub fn render(&self) -> String {
        render(&self.registry)
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
                tracing::error!(%addr, cause = %Chain(&e), "cannot serve /healthz, /readyz and /metrics");
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
            .route("/readyz", get(readyz::<M>))
            .route("/metrics", get(metrics::<M>))
            .with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The OpenMetrics text exposition of `registry`; an error (none is expected of a `String`)
/// is logged and leaves what was encoded so far.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(cause = %Chain(&e), "cannot encode the metrics");
    }
    out
}

async fn readyz<M: Send + Sync + 'static>(
    State(health): State<Health<M>>,
) -> (StatusCode, &'static str) {
    if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics<M: Send + Sync + 'static>(
    State(health): State<Health<M>>,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.render(),
    )
}
