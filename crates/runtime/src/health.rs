//! `/healthz` (the process is up), `/readyz` (connected and serving) and `/metrics`
//! (Prometheus text format) for each daemon.

use crate::Chain;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// The labels of one counter series (`cluster`, `outcome`, ...).
type Labels = Vec<(String, String)>;

/// Counters and gauges a daemon exports, through the Prometheus project's client
/// (`prometheus-client`), under one naming scheme: `warroom_<daemon>_<what>_total` for a
/// counter, `warroom_<daemon>_<what>` for a gauge.
///
/// Callers name a metric by `<what>` (`polls`, `batches_pushed`, `requests_active`); a name
/// given with the daemon's prefix or a `_total` suffix is the same counter, so the scheme
/// holds whatever the call site spells.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    daemon: &'static str,
    registry: Registry,
    counters: BTreeMap<String, Family<Labels, Counter>>,
    gauges: BTreeMap<String, Family<Labels, Gauge>>,
}

impl Metrics {
    /// The counters of `daemon` (`gateway`, `dispatcher`, `runner`, `publisher`).
    pub fn new(daemon: &'static str) -> Metrics {
        Metrics {
            inner: Arc::new(Mutex::new(Inner {
                daemon,
                registry: Registry::with_prefix(format!("warroom_{daemon}")),
                counters: BTreeMap::new(),
                gauges: BTreeMap::new(),
            })),
        }
    }

    fn family(&self, name: &str) -> Family<Labels, Counter> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let short = inner.short(name);
        let short = short.strip_suffix("_total").unwrap_or(&short).to_owned();
        if let Some(family) = inner.counters.get(&short) {
            return family.clone();
        }
        let family = Family::<Labels, Counter>::default();
        inner
            .registry
            .register(short.clone(), format!("{short} (counter)"), family.clone());
        inner.counters.insert(short, family.clone());
        family
    }

    /// Adds `by` to the counter `name` (created at zero on first use).
    pub fn add(&self, name: &str, by: u64) {
        self.family(name).get_or_create(&Vec::new()).inc_by(by);
    }

    /// Adds one to the counter `name`.
    pub fn inc(&self, name: &str) {
        self.add(name, 1);
    }

    /// Adds one to the series of counter `name` with these labels.
    pub fn inc_with(&self, name: &str, labels: &[(&str, &str)]) {
        self.family(name).get_or_create(&owned(labels)).inc();
    }

    /// The value of the counter's unlabelled series.
    pub fn get(&self, name: &str) -> u64 {
        self.family(name).get_or_create(&Vec::new()).get()
    }

    fn gauges(&self, name: &str) -> Family<Labels, Gauge> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let short = inner.short(name);
        if let Some(family) = inner.gauges.get(&short) {
            return family.clone();
        }
        let family = Family::<Labels, Gauge>::default();
        inner
            .registry
            .register(short.clone(), format!("{short} (gauge)"), family.clone());
        inner.gauges.insert(short, family.clone());
        family
    }

    /// Sets the gauge `name` (`warroom_<daemon>_<name>`, created on first use) to `value`.
    pub fn set(&self, name: &str, value: i64) {
        self.gauges(name).get_or_create(&Vec::new()).set(value);
    }

    /// Sets the series of gauge `name` with these labels (`cluster`, ...) to `value`.
    pub fn set_with(&self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.gauges(name).get_or_create(&owned(labels)).set(value);
    }

    /// The value of the gauge `name` (0 until it is set).
    pub fn gauge_value(&self, name: &str) -> i64 {
        self.gauges(name).get_or_create(&Vec::new()).get()
    }

    /// The value of the series of gauge `name` with these labels, if it was ever set.
    pub fn gauge_value_with(&self, name: &str, labels: &[(&str, &str)]) -> Option<i64> {
        self.gauges(name)
            .get(&owned(labels))
            .map(|gauge| gauge.get())
    }

    /// The Prometheus (OpenMetrics) text exposition.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &inner.registry) {
            tracing::error!(cause = %Chain(&e), "cannot encode the metrics");
        }
        out
    }
}

/// Labels as the families key them.
fn owned(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Inner {
    /// `name` without the daemon's prefix, however the call site spelled it.
    fn short(&self, name: &str) -> String {
        let prefix = format!("warroom_{}_", self.daemon);
        name.strip_prefix(&prefix).unwrap_or(name).to_owned()
    }
}

/// Readiness and metrics of one daemon.
#[derive(Debug, Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    pub metrics: Metrics,
}

impl Health {
    /// Not ready yet, no counters, for `daemon` (`gateway`, `dispatcher`, `runner`,
    /// `publisher`).
    pub fn new(daemon: &'static str) -> Health {
        Health {
            ready: Arc::default(),
            metrics: Metrics::new(daemon),
        }
    }

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

async fn metrics(
    State(health): State<Health>,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_follows_the_naming_scheme_whatever_the_call_site_spells() {
        let metrics = Metrics::new("publisher");
        metrics.inc("batches_pushed");
        metrics.inc("batches_pushed_total");
        metrics.inc("warroom_publisher_batches_pushed_total");
        metrics.inc_with("runs", &[("cluster", "hub"), ("outcome", "completed")]);
        assert_eq!(metrics.get("batches_pushed"), 3);
        let text = metrics.render();
        assert!(
            text.contains("warroom_publisher_batches_pushed_total 3"),
            "{text}"
        );
        assert!(
            text.contains(r#"warroom_publisher_runs_total{cluster="hub",outcome="completed"} 1"#),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("warroom_publisher_"), "{line}");
        }
    }

    #[test]
    fn a_gauge_is_named_without_a_suffix_and_holds_the_last_value() {
        let metrics = Metrics::new("dispatcher");
        metrics.set("requests_active", 3);
        metrics.set("warroom_dispatcher_requests_active", 2);
        assert_eq!(metrics.gauge_value("requests_active"), 2);
        let text = metrics.render();
        assert!(
            text.contains("warroom_dispatcher_requests_active 2"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE warroom_dispatcher_requests_active gauge"),
            "{text}"
        );
    }

    #[test]
    fn a_gauge_may_have_one_series_per_label_set() {
        let metrics = Metrics::new("dispatcher");
        metrics.set_with(
            "runner_last_heartbeat_timestamp_seconds",
            &[("cluster", "hub")],
            1_800_000_000,
        );
        metrics.set_with(
            "runner_last_heartbeat_timestamp_seconds",
            &[("cluster", "prod-1")],
            1_800_000_005,
        );
        assert_eq!(
            metrics.gauge_value_with(
                "runner_last_heartbeat_timestamp_seconds",
                &[("cluster", "hub")]
            ),
            Some(1_800_000_000)
        );
        assert_eq!(
            metrics.gauge_value_with(
                "runner_last_heartbeat_timestamp_seconds",
                &[("cluster", "nope")]
            ),
            None
        );
        let text = metrics.render();
        assert!(
            text.contains(
                r#"warroom_dispatcher_runner_last_heartbeat_timestamp_seconds{cluster="prod-1"} 1800000005"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE warroom_dispatcher_runner_last_heartbeat_timestamp_seconds gauge"
            ),
            "{text}"
        );
    }
}
