//! The gateway's metrics, declared once: exported as `warroom_gateway_<name>` (`_total`
//! appended to a counter's), listed in `deploy/METRICS.md`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use warroom_runtime::DaemonMetrics;

/// The gateway's readiness and metrics.
pub type Health = warroom_runtime::Health<Metrics>;

/// What the gateway counts; each field is registered in [`DaemonMetrics::register`].
#[derive(Debug, Default)]
pub struct Metrics {
    pub polls: Counter,
    pub poll_errors: Counter,
    pub last_poll_timestamp_seconds: Gauge,
    pub fetches: Counter,
    pub requests_accepted: Counter,
    pub requests_rejected: Counter,
    pub policy_refusals: Family<RefusalLabels, Counter>,
    pub policy_reloads: Counter,
    pub policy_reloads_refused: Counter,
    pub requests_changed_after_acceptance: Counter,
    pub request_ids_reused: Counter,
    pub webhook_received: Counter,
    pub webhook_rejected: Counter,
    pub webhook_replays: Counter,
    pub webhook_too_large: Counter,
    pub webhook_wakes: Counter,
}

/// The series of `policy_refusals_total`: one per refusal code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// [`warroom_access::Refusal::code`], a stable machine code (`unsigned`, `bad_signature`).
    pub code: &'static str,
}

impl DaemonMetrics for Metrics {
    const DAEMON: &'static str = "gateway";

    fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("polls", "Polls of the git remote", self.polls.clone());
        r.register(
            "poll_errors",
            "Polls that failed (remote unreachable, git or NATS errors)",
            self.poll_errors.clone(),
        );
        r.register(
            "last_poll_timestamp_seconds",
            "Unix seconds of the last successful poll",
            self.last_poll_timestamp_seconds.clone(),
        );
        r.register(
            "fetches",
            "Fetches into the mirror (the branch had moved)",
            self.fetches.clone(),
        );
        r.register(
            "requests_accepted",
            "Request files accepted and published",
            self.requests_accepted.clone(),
        );
        r.register(
            "requests_rejected",
            "Request files rejected (invalid, not allowed or refused by the policy)",
            self.requests_rejected.clone(),
        );
        r.register(
            "policy_refusals",
            "Requests the policy refused, by refusal code",
            self.policy_refusals.clone(),
        );
        r.register(
            "policy_reloads",
            "Changed policy files loaded",
            self.policy_reloads.clone(),
        );
        r.register(
            "policy_reloads_refused",
            "Changed policy files refused (the previous policy stays in use)",
            self.policy_reloads_refused.clone(),
        );
        r.register(
            "requests_changed_after_acceptance",
            "Accepted request files changed afterwards (never run again)",
            self.requests_changed_after_acceptance.clone(),
        );
        r.register(
            "request_ids_reused",
            "New request files reusing the id of an accepted request (never run)",
            self.request_ids_reused.clone(),
        );
        r.register(
            "webhook_received",
            "Webhook deliveries received",
            self.webhook_received.clone(),
        );
        r.register(
            "webhook_rejected",
            "Webhook deliveries refused for a bad or missing signature",
            self.webhook_rejected.clone(),
        );
        r.register(
            "webhook_replays",
            "Webhook deliveries seen before and ignored",
            self.webhook_replays.clone(),
        );
        r.register(
            "webhook_too_large",
            "Webhook deliveries refused for a body over the limit",
            self.webhook_too_large.clone(),
        );
        r.register(
            "webhook_wakes",
            "Webhook pushes that woke the poller",
            self.webhook_wakes.clone(),
        );
    }
}
