//! The dispatcher's metrics, declared once: exported as `warroom_dispatcher_<name>`
//! (`_total` appended to a counter's), listed in `deploy/METRICS.md`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use warroom_runtime::{DaemonMetrics, RuntimeMetrics};

/// The dispatcher's readiness and metrics.
pub type Health = warroom_runtime::Health<Metrics>;

/// What the dispatcher counts; each field is registered in [`DaemonMetrics::register`].
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests_accepted: Counter,
    pub requests_over_limit: Counter,
    pub notices: Counter,
    /// Alerted on with `requests_active` (`deploy/METRICS.md`).
    pub requests_finished: Counter,
    pub tasks_published: Counter,
    pub statuses_published: Counter,
    pub reports: Counter,
    pub reports_ignored: Counter,
    pub timeouts: Counter,
    pub bad_messages: Counter,
    pub retries: Counter,
    /// The requests in flight: those not final, or whose last snapshot is not published yet.
    pub requests_active: Gauge,
    /// How long the oldest request in flight has been so, queued time included; 0 when none.
    pub oldest_active_request_age_seconds: Gauge,
    /// Unix seconds of the last heartbeat seen from any runner replica of a cluster.
    pub runner_last_heartbeat_timestamp_seconds: Family<ClusterLabels, Gauge>,
    /// `active` (the lease) and `dead_letters_total` (counted by the consumers themselves:
    /// the messages set aside and the payloads that did not even decode).
    pub runtime: RuntimeMetrics,
}

/// One series per runner cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

impl DaemonMetrics for Metrics {
    const DAEMON: &'static str = "dispatcher";

    fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "requests_accepted",
            "Requests accepted from the gateway",
            self.requests_accepted.clone(),
        );
        r.register(
            "requests_over_limit",
            "Requests refused because their engineer was at the limit of active requests",
            self.requests_over_limit.clone(),
        );
        r.register(
            "notices",
            "Notices added to the status of requests",
            self.notices.clone(),
        );
        r.register(
            "requests_finished",
            "Requests that reached a final phase",
            self.requests_finished.clone(),
        );
        r.register(
            "tasks_published",
            "Tasks published to runner clusters",
            self.tasks_published.clone(),
        );
        r.register(
            "statuses_published",
            "Status snapshots published",
            self.statuses_published.clone(),
        );
        r.register("reports", "Runner reports received", self.reports.clone());
        r.register(
            "reports_ignored",
            "Runner reports ignored (unknown request, stale attempt, already final)",
            self.reports_ignored.clone(),
        );
        r.register(
            "timeouts",
            "Cluster runs expired by the pickup or run timeout",
            self.timeouts.clone(),
        );
        r.register(
            "bad_messages",
            "Messages dead-lettered because they can never be handled",
            self.bad_messages.clone(),
        );
        r.register(
            "retries",
            "Messages whose handling failed, handed back to be redelivered",
            self.retries.clone(),
        );
        r.register(
            "requests_active",
            "Requests in flight (not final, or their last snapshot not yet published)",
            self.requests_active.clone(),
        );
        r.register(
            "oldest_active_request_age_seconds",
            "Seconds since the oldest request in flight was accepted, queued time included; 0 when none",
            self.oldest_active_request_age_seconds.clone(),
        );
        r.register(
            "runner_last_heartbeat_timestamp_seconds",
            "Unix seconds (NATS server clock) of the last heartbeat seen from any runner replica of the cluster",
            self.runner_last_heartbeat_timestamp_seconds.clone(),
        );
        self.runtime.register(r);
    }
}
