//! The `results/<id>/status.json` contract, which engineers and their tools read.
//!
//! [`RequestStatus`] is serialized as it is into `status.json`; fields are only ever added,
//! never renamed or removed, so scripts written against it keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::ids::{ClusterName, RequestId, ResultsDir};
use crate::request::{ClusterType, CoordinationMode};
use crate::validate::FieldError;

/// Where a request is in its life. `rejected`, `completed`, `failed`, `timed_out` and
/// `cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestPhase {
    /// Validated and authorized by the gateway; the dispatcher owns it now.
    Accepted,
    /// Refused by the gateway; `error` and `errors` say why.
    Rejected,
    /// Tasks are queued for the target clusters; no runner has started yet.
    Dispatched,
    /// At least one cluster's runner is investigating.
    Running,
    /// Every cluster completed.
    Completed,
    /// At least one cluster failed; `error` says which and why.
    Failed,
    /// No cluster failed, but at least one ran out of time.
    TimedOut,
    /// Cancelled before it finished.
    Cancelled,
}

impl RequestPhase {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestPhase::Rejected
                | RequestPhase::Completed
                | RequestPhase::Failed
                | RequestPhase::TimedOut
                | RequestPhase::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestPhase::Accepted => "accepted",
            RequestPhase::Rejected => "rejected",
            RequestPhase::Dispatched => "dispatched",
            RequestPhase::Running => "running",
            RequestPhase::Completed => "completed",
            RequestPhase::Failed => "failed",
            RequestPhase::TimedOut => "timed_out",
            RequestPhase::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for RequestPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one cluster's part of a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterPhase {
    /// Waiting for its turn (sequential mode) or for dispatch.
    Pending,
    /// Its task is queued for the cluster's runner; `queued` says where in the queue.
    Dispatched,
    /// The runner is investigating.
    Running,
    Completed,
    Failed,
    TimedOut,
    Cancelled,
}

impl ClusterPhase {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ClusterPhase::Completed
                | ClusterPhase::Failed
                | ClusterPhase::TimedOut
                | ClusterPhase::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterPhase::Pending => "pending",
            ClusterPhase::Dispatched => "dispatched",
            ClusterPhase::Running => "running",
            ClusterPhase::Completed => "completed",
            ClusterPhase::Failed => "failed",
            ClusterPhase::TimedOut => "timed_out",
            ClusterPhase::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for ClusterPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The content of `results/<id>/status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestStatus {
    /// The request id (the file stem of `requests/pending/<id>.yaml`).
    pub id: RequestId,
    pub phase: RequestPhase,
    /// Each target cluster's own phase and figures, by cluster name.
    #[serde(default)]
    pub clusters: BTreeMap<ClusterName, ClusterStatus>,
    /// A readable reason when the request was rejected, failed, timed out or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every validation error, when the request was rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// `parallel` or `sequential` for a multi-cluster request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CoordinationMode>,
    /// The engineer named in the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engineer: Option<String>,
    /// The repository folder holding this request's results, e.g. `results/<id>`.
    pub results_dir: ResultsDir,
    /// The commit that added the request file, when the gateway knew it: where GitHub shows
    /// the request's state (a commit status or check run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Grows by one at every transition; a reader can tell a newer status from an older one.
    pub revision: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    /// Whether the gateway verified who wrote the request (absent on a rejection and from
    /// older gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// What happened to the request's file after it was accepted, oldest first (cancels
    /// that were refused or came too late among them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Notice>,
    /// Who cancelled the request, when and why; set once its phase is `cancelled` by a cancel
    /// file (absent in statuses written before cancellation existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<Cancellation>,
    /// The cross-cluster synthesis of a request with several clusters, once every cluster
    /// ended: pending while it runs (the request stays `running`), then completed or failed.
    /// Absent for a single cluster, or when fewer than two clusters gave supported findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<SynthesisStatus>,
    /// For a session: whether it is open, until when, what it cost so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionStatus>,
    /// The follow-up questions asked of the request's conversations, in the order asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<TurnStatus>,
}

/// A session's state (`status.json`: `"session": {...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStatus {
    pub state: SessionState,
    /// How long it was granted, in seconds.
    pub duration_secs: u64,
    /// When it ends by itself (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: Timestamp,
    /// When and why it ended, once it did ("stopped by alice", "its duration of 2h ended").
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub ended_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// Follow-up turns answered so far.
    pub turns: u32,
    /// What every run of the session cost so far, in US dollars.
    pub cost_usd: f64,
    /// The pod holding the session for `kubectl exec`, when it was asked for (`spec.exec`):
    /// `kubectl exec -it <pod> -c session -- claude` in the runner's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Where the pod is: requested, held, failed (see `pod_error`), releasing, removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_phase: Option<PodPhase>,
    /// Why the pod could not be held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_error: Option<String>,
}

/// Where a session's pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodPhase {
    /// Its runner was told to make it.
    Requested,
    /// It exists: engineers with `pods/exec` in the runner's namespace can exec into it.
    Held,
    /// It could not be made (`pod_error` says why).
    Failed,
    /// The session ended; its runner was told to delete it.
    Releasing,
    /// It was deleted.
    Removed,
}

impl PodPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Requested => "requested",
            PodPhase::Held => "held",
            PodPhase::Failed => "failed",
            PodPhase::Releasing => "releasing",
            PodPhase::Removed => "removed",
        }
    }
}

/// Whether a session takes questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Open,
    Ended,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Ended => "ended",
        }
    }
}

/// One follow-up turn (`status.json`: `"turns": [...]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnStatus {
    pub turn: u32,
    pub cluster: ClusterName,
    pub asked_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub asked_at: Timestamp,
    /// `pending` (waiting for the cluster's investigation or an earlier turn), `dispatched`,
    /// `running`, then `completed`, `failed`, `timed_out` or `cancelled`.
    pub phase: ClusterPhase,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Whether it continued the cluster's stored conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its answer, relative to the results folder (`turn-2.md`), once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// How far its agent got, while it runs (as a cluster's `progress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// The answer file of follow-up turn `turn` in a results folder.
pub fn turn_file(turn: u32) -> String {
    format!("turn-{turn}.md")
}

/// Where a request's cross-cluster synthesis is (`status.json`: `"synthesis": {...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesisStatus {
    pub phase: SynthesisPhase,
    /// The cluster whose runner was asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterName>,
    /// Its claims by the verdict on their citations, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<crate::report::FindingCounts>,
    /// Why it failed: the per-cluster reports stand, and the request's phase is theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What its model calls cost, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The model and CLI version of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<crate::report::RunFacts>,
}

/// How far a request's synthesis got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynthesisPhase {
    /// Every cluster ended; the synthesis is asked for or running.
    Pending,
    Completed,
    /// No synthesis: `error` says why. Never fails the request.
    Failed,
}

impl SynthesisPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            SynthesisPhase::Pending => "pending",
            SynthesisPhase::Completed => "completed",
            SynthesisPhase::Failed => "failed",
        }
    }
}

/// Who cancelled a request, when and why (`status.json`: `"cancelled": {...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// The engineer named in the cancel file (verified with a policy).
    pub by: String,
    /// When the engineer asked, as the cancel file says.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: Timestamp,
    /// When the dispatcher ended the request.
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The cancel file, e.g. `requests/cancel/<id>.yaml`.
    pub file: String,
    /// Whether the gateway verified who wrote the cancel file (`false` without a policy).
    pub verified: bool,
}

impl Cancellation {
    /// "cancelled by alice: wrong cluster", for errors and reports.
    pub fn describe(&self) -> String {
        match &self.reason {
            Some(reason) => format!("cancelled by {}: {reason}", self.by),
            None => format!("cancelled by {} (no reason given)", self.by),
        }
    }
}

/// How the gateway established who wrote a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// `true`: every commit that added or changed the request file was signed by a key the
    /// secure zone's policy gives the engineer named in the request, who may target each of
    /// its clusters. `false`: the gateway ran without a policy (`--insecure-allow-unsigned`)
    /// and nobody checked who wrote it.
    pub verified: bool,
    /// The signing keys git verified (SSH fingerprints `SHA256:...` or GPG fingerprints), one
    /// per distinct key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_by: Vec<String>,
}

impl Verification {
    /// What a gateway without a policy records.
    pub fn unverified() -> Self {
        Verification {
            verified: false,
            signed_by: Vec::new(),
        }
    }
}

/// Something that happened to an accepted request's file, answered in its `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    /// The request file, e.g. `requests/pending/<id>.yaml`.
    pub file: String,
    /// The git object id of the file's new text (so the same change is noted once).
    pub version: String,
    /// The commit at which the gateway saw it.
    pub commit: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// What happened, and what did not, in words.
    pub message: String,
}

/// What a [`Notice`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The request file was changed after its request was accepted. The new text never runs.
    ChangedAfterAcceptance,
    /// A new request file used the id of a request that was already accepted. It never
    /// runs; the results folder keeps the earlier request's results.
    IdReused,
    /// A cancel file the secure zone refused (its writer may not cancel the request, or its
    /// signatures do not hold, or it is invalid). Nothing changed.
    CancelRefused,
    /// A cancel that came after the request had finished, or after an earlier cancel.
    /// Nothing changed.
    CancelIgnored,
    /// A follow-up the secure zone did not take: its writer may not ask, it names no cluster
    /// of the request, its turn was asked before, or the session had ended. Nothing ran.
    FollowUpRefused,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::ChangedAfterAcceptance => "changed_after_acceptance",
            NoticeKind::IdReused => "id_reused",
            NoticeKind::CancelRefused => "cancel_refused",
            NoticeKind::CancelIgnored => "cancel_ignored",
            NoticeKind::FollowUpRefused => "follow_up_refused",
        }
    }
}

/// One cluster's part of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    #[serde(rename = "type")]
    pub kind: ClusterType,
    pub phase: ClusterPhase,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub started_at: Option<Timestamp>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub finished_at: Option<Timestamp>,
    /// How long the investigation ran, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// What the model calls cost, in US dollars, as the Claude Code CLI reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Model turns used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_turns: Option<u32>,
    /// The model, the Claude Code CLI's version and the tokens of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<crate::report::RunFacts>,
    /// The runbook the agent says it followed (absent: none, or no structured answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// The agent's findings by the verdict on their evidence; absent when the answer was not
    /// structured (see `answer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<crate::report::FindingCounts>,
    /// `structured` or `unstructured`: whether the agent's answer had the report's form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerForm>,
    /// Tool calls the policy refused.
    #[serde(default)]
    pub permission_denials: u32,
    /// Why this cluster failed, timed out or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The cluster's report, relative to the results folder (e.g. `prod-cluster-1.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// How many runs of this cluster's task started: 1 normally, 2 when the first run was
    /// interrupted (its runner crashed or stopped) and the task ran once more. Never more
    /// than [`MAX_RUNS`]. Absent before the first run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// What became of the earlier run when this one is a rerun, e.g. "attempt 1 on runner
    /// r-1, started 2026-11-24T10:00:00Z, ended without a result".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// Set while the cluster is `dispatched`: its task waits in the cluster's queue. Absent
    /// in every other phase (and in statuses written before queues were shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<Queued>,
    /// While the cluster runs: how far its agent got, as last reported. Absent before the
    /// first report and in statuses written before progress was shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// How far a running agent got (`status.json`: `"progress": {"turns": 4, ...}`), reported by
/// its runner at most once per progress interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// When the runner measured it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// Model turns so far.
    pub turns: u32,
    /// Tool calls the agent made so far, refused ones included.
    pub tool_calls: u32,
    /// Tool calls the guard or the permission rules refused.
    pub refused: u32,
    /// What the model calls cost so far, in US dollars, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The last few tool calls, oldest first, one redacted line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_tool_calls: Vec<String>,
}

/// Whether a cluster's answer came in the structured form the runner asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerForm {
    Structured,
    /// Free text only: rendered as it is, marked as unstructured.
    Unstructured,
}

/// How many times one cluster's task is run at most: once, and once more when the first
/// run was interrupted. A third delivery fails the cluster instead of running it.
pub const MAX_RUNS: u32 = 2;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a dispatched task waits (`status.json`: `"queued": {"position": 1, ...}`).
///
/// A task waits as long as a runner of its cluster is live (it sent a heartbeat within the
/// last 30 s), however busy that runner is; only while no runner of the cluster is live does
/// the dispatcher's pickup timeout run, after which the cluster fails with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// The task's place among its cluster's waiting tasks, of every request: 1 = next.
    pub position: u32,
    /// When the task was queued.
    #[serde(with = "time::serde::rfc3339")]
    pub since: Timestamp,
}

impl ClusterStatus {
    /// A cluster that has not started.
    pub fn new(kind: ClusterType, phase: ClusterPhase) -> Self {
        ClusterStatus {
            kind,
            phase,
            started_at: None,
            finished_at: None,
            duration_secs: None,
            cost_usd: None,
            num_turns: None,
            run: None,
            runbook: None,
            findings: None,
            answer: None,
            permission_denials: 0,
            error: None,
            report: None,
            queued: None,
            attempts: 0,
            interrupted: None,
            progress: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_cluster_says_where_it_waits_and_older_statuses_still_read() {
        let since = time::macros::datetime!(2026-11-24 10:00:00 UTC);
        let mut cluster = ClusterStatus::new(ClusterType::Hosted, ClusterPhase::Dispatched);
        cluster.queued = Some(Queued { position: 2, since });
        let json = serde_json::to_value(&cluster).expect("encode");
        assert_eq!(json["phase"], "dispatched");
        assert_eq!(
            json["queued"],
            serde_json::json!({"position": 2, "since": "2026-11-24T10:00:00Z"})
        );
        // A status written before queues were shown has no `queued`, and one that is not
        // queued writes none.
        let old =
            serde_json::json!({"type": "hosted", "phase": "dispatched", "permission_denials": 0});
        let read: ClusterStatus = serde_json::from_value(old).expect("an older status reads");
        assert_eq!(read.queued, None);
        let running = ClusterStatus::new(ClusterType::Hosted, ClusterPhase::Running);
        let json = serde_json::to_value(&running).expect("encode");
        assert!(json.get("queued").is_none(), "{json}");
    }
}
