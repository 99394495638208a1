//! The runner's metrics, declared once: exported as `warroom_runner_<name>` (`_total`
//! appended to a counter's), listed in `deploy/METRICS.md`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use warroom_runtime::DaemonMetrics;

/// The runner's readiness and metrics.
pub type Health = warroom_runtime::Health<Metrics>;

/// What the runner counts; each field is registered in [`DaemonMetrics::register`].
#[derive(Debug, Default)]
pub struct Metrics {
    pub tasks: Counter,
    pub tasks_finished: Family<OutcomeLabels, Counter>,
    pub tasks_not_run: Family<NotRunLabels, Counter>,
    pub tasks_handed_back: Counter,
    pub tasks_terminated: Counter,
    pub tool_calls: Counter,
    pub tool_refused: Counter,
    pub model_request_redactions: Counter,
    pub model_requests_unreadable: Counter,
    pub events_dropped: Counter,
    pub pull_errors: Counter,
    /// Unix seconds of the last heartbeat NATS stored (alerted on in the runner's cluster).
    pub heartbeat_timestamp_seconds: Gauge,
    pub heartbeat_errors: Counter,
    /// Findings whose evidence checked out against the run's transcript.
    pub findings_supported: Counter,
    /// Findings kept but marked unsupported: a cited call that did not happen, or a quoted
    /// line that is not in its output.
    pub findings_unsupported: Counter,
    /// Completed runs whose answer was not valid structured output (shown as free text).
    pub answers_unstructured: Counter,
}

/// The series of `tasks_finished_total`: one per outcome of the run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `completed`, `failed`, `timed_out` or `cancelled`.
    pub outcome: &'static str,
}

/// The series of `tasks_not_run_total`: why a delivered task was not run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct NotRunLabels {
    pub reason: NotRun,
}

/// Why a delivered task was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotRun {
    /// `final`: its cluster was already final in the dispatcher's record.
    Final,
    /// `max_runs`: it came back after its last allowed run.
    MaxRuns,
}

impl EncodeLabelValue for NotRun {
    // Not derived: the derive writes the variant's name (`MaxRuns`), not the label value.
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(match self {
            NotRun::Final => "final",
            NotRun::MaxRuns => "max_runs",
        })
    }
}

impl DaemonMetrics for Metrics {
    const DAEMON: &'static str = "runner";

    fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("tasks", "Tasks taken to be run", self.tasks.clone());
        r.register(
            "tasks_finished",
            "Runs finished, by outcome",
            self.tasks_finished.clone(),
        );
        r.register(
            "tasks_not_run",
            "Delivered tasks acknowledged or failed without a run, by reason",
            self.tasks_not_run.clone(),
        );
        r.register(
            "tasks_handed_back",
            "Tasks handed back to the stream at shutdown",
            self.tasks_handed_back.clone(),
        );
        r.register(
            "tasks_terminated",
            "Tasks terminated because they were for another cluster",
            self.tasks_terminated.clone(),
        );
        r.register(
            "tool_calls",
            "Tool calls the agent made",
            self.tool_calls.clone(),
        );
        r.register(
            "tool_refused",
            "Tool calls the guard refused",
            self.tool_refused.clone(),
        );
        r.register(
            "model_request_redactions",
            "Secrets the model proxy still redacted in tool results on their way to the model",
            self.model_request_redactions.clone(),
        );
        r.register(
            "model_requests_unreadable",
            "Model requests refused for tool results the proxy could not read",
            self.model_requests_unreadable.clone(),
        );
        r.register(
            "events_dropped",
            "Events dropped because a run's outbox was full",
            self.events_dropped.clone(),
        );
        r.register(
            "pull_errors",
            "Failed pulls of tasks from NATS",
            self.pull_errors.clone(),
        );
        r.register(
            "heartbeat_timestamp_seconds",
            "Unix seconds of the last heartbeat NATS stored",
            self.heartbeat_timestamp_seconds.clone(),
        );
        r.register(
            "heartbeat_errors",
            "Heartbeats that could not be written",
            self.heartbeat_errors.clone(),
        );
        r.register(
            "findings_supported",
            "Findings whose evidence checked out against the run's transcript",
            self.findings_supported.clone(),
        );
        r.register(
            "findings_unsupported",
            "Findings marked unsupported: the cited call or a quoted line is not in the transcript",
            self.findings_unsupported.clone(),
        );
        r.register(
            "answers_unstructured",
            "Runs whose answer was not valid structured output",
            self.answers_unstructured.clone(),
        );
    }
}
