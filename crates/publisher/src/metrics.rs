//! The publisher's metrics, declared once: exported as `warroom_publisher_<name>` (`_total`
//! appended to a counter's), listed in `deploy/METRICS.md`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use warroom_runtime::{DaemonMetrics, RuntimeMetrics};

/// The publisher's readiness and metrics.
pub type Health = warroom_runtime::Health<Metrics>;

/// What the publisher counts; each field is registered in [`DaemonMetrics::register`].
#[derive(Debug, Default)]
pub struct Metrics {
    pub batches_pushed: Counter,
    pub batches_failed: Counter,
    pub push_retries: Counter,
    /// Failed `git push` attempts (alerted on).
    pub push_failures: Counter,
    pub pushes_on_moved_branch: Counter,
    pub fetches: Counter,
    pub messages_written: Counter,
    pub messages_skipped: Counter,
    pub messages_refused: Counter,
    pub messages_retried: Counter,
    /// Unix seconds of the last successful push (alerted on).
    pub last_push_timestamp_seconds: Gauge,
    /// `active` (the lease) and `dead_letters_total` (counted by the consumer itself).
    pub runtime: RuntimeMetrics,
}

impl DaemonMetrics for Metrics {
    const DAEMON: &'static str = "publisher";

    fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "batches_pushed",
            "Batches committed and pushed",
            self.batches_pushed.clone(),
        );
        r.register(
            "batches_failed",
            "Batches that could not be published, handed back",
            self.batches_failed.clone(),
        );
        r.register(
            "push_retries",
            "Batches redone after a failed attempt",
            self.push_retries.clone(),
        );
        r.register(
            "push_failures",
            "Failed git push attempts",
            self.push_failures.clone(),
        );
        r.register(
            "pushes_on_moved_branch",
            "Pushes on top of this replica's last push refused because the branch had moved",
            self.pushes_on_moved_branch.clone(),
        );
        r.register(
            "fetches",
            "Fetches of the remote before a batch",
            self.fetches.clone(),
        );
        r.register(
            "messages_written",
            "Messages written into the working tree",
            self.messages_written.clone(),
        );
        r.register(
            "messages_skipped",
            "Messages with nothing to write (stale or repeated)",
            self.messages_skipped.clone(),
        );
        r.register(
            "messages_refused",
            "Messages that can never be written, terminated",
            self.messages_refused.clone(),
        );
        r.register(
            "messages_retried",
            "Messages not written for now, handed back",
            self.messages_retried.clone(),
        );
        r.register(
            "last_push_timestamp_seconds",
            "Unix seconds of the last successful push",
            self.last_push_timestamp_seconds.clone(),
        );
        self.runtime.register(r);
    }
}
