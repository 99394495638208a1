//! Messages between the daemons.
//!
//! gateway -> dispatcher: the accepted [`TroubleshootingRequest`] itself, on
//! `warroom.requests.<id>`. dispatcher -> runner: [`Task`]. runner -> dispatcher:
//! [`RunnerReport`]. runner -> publisher: [`AuditEvent`]. dispatcher and gateway ->
//! publisher: [`StatusUpdate`]. All are JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::ids::{ClusterName, ReplicaId, RequestId, ResultsDir};
use crate::report::{CheckedReport, RunFacts};
use crate::request::{ClusterRef, CoordinationMode, Issue, Tool, TroubleshootingRequest};
use crate::status::{
    Cancellation, ClusterPhase, Notice, PodPhase, Progress, RequestStatus, Verification,
};
use crate::synthesis::{CheckedSynthesis, SynthesisInput};

/// An accepted request, as the gateway publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedRequest {
    pub id: RequestId,
    /// The commit that added the request file.
    pub commit: String,
    /// Where the results go, e.g. `results/<id>`.
    pub results_dir: ResultsDir,
    pub request: TroubleshootingRequest,
    /// Whether the gateway verified who wrote the request; `None` from a gateway older than
    /// this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The policy's limit on the engineer's active requests (`maxConcurrentRequests`), for
    /// the dispatcher, which knows how many are active, to enforce. `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_requests: Option<u32>,
    /// Set when the request is a session (a `SessionRequest` file): its one cluster's
    /// conversation stays open for follow-ups until it is stopped or its duration ends.
    /// `request` is then the investigation the gateway made of the session file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionTerms>,
}

/// What a session was granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTerms {
    /// How long it stays open from its acceptance, in seconds (the file's `spec.duration`,
    /// cut to the policy's ceiling).
    pub duration_secs: u64,
    /// Whether its first turn runs the file's `spec.prompt`; without one the session opens
    /// without running anything until the first follow-up.
    #[serde(default)]
    pub opening_prompt: bool,
    /// Held as a pod for `kubectl exec` (the file's `spec.exec`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exec: bool,
    /// What its runs may cost together (the policy's `defaults.sessionBudgetUsd`); the
    /// session ends once they cost this much. `None`: no budget beyond each run's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
}

/// What the gateway publishes on `warroom.requests.<id>`: the accepted request, or later a
/// notice about its file that the request's `status.json` must answer.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayMessage {
    Accepted(Box<AcceptedRequest>),
    Notice(RequestNotice),
    /// A cancel file the gateway verified and authorized: the dispatcher ends the request.
    Cancel(CancelOrder),
    /// A follow-up file the gateway verified and authorized: a further turn of a cluster's
    /// conversation.
    FollowUp(FollowUpOrder),
}

/// An authorized follow-up question, from the gateway for the dispatcher, published on the
/// request's subject with `ask-<id>-<turn>-<file version>` as its deduplication id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUpOrder {
    pub id: RequestId,
    /// The file's stem: turns are answered in this order, per cluster.
    pub turn: u32,
    /// The cluster whose conversation it continues; `None` when the file named none (the
    /// dispatcher takes the request's only cluster, or refuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterName>,
    pub prompt: String,
    pub engineer: String,
    #[serde(with = "time::serde::rfc3339")]
    pub asked_at: Timestamp,
    /// The file, e.g. `requests/ask/<id>/2.yaml`.
    pub file: String,
    /// The git object id of the file.
    pub version: String,
    /// The commit at which the gateway saw it.
    pub commit: String,
    /// Whether the gateway verified who wrote it (`false` without a policy).
    pub verified: bool,
}

/// An authorized cancellation of a request, from the gateway for the dispatcher, published
/// on the request's subject with `cancel-<id>-<file version>` as its deduplication id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub id: RequestId,
    pub cancel: Cancellation,
    /// The git object id of the cancel file (a second cancel file is a second order).
    pub version: String,
    /// The commit at which the gateway saw the cancel file.
    pub commit: String,
}

/// Something about an accepted request's file that is answered in its `status.json`, not
/// only in a log: the file was changed after acceptance, or a new file re-used the id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestNotice {
    pub id: RequestId,
    pub notice: Notice,
}

/// One cluster's share of a request, for that cluster's runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub request_id: RequestId,
    /// Where the request's results go; carried so that the runner's events name it.
    pub results_dir: ResultsDir,
    pub cluster: ClusterRef,
    pub engineer: String,
    pub issue: Issue,
    /// The engineer's instructions, as written in the request.
    pub prompt: String,
    pub allowed_tools: Vec<Tool>,
    pub timeout_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CoordinationMode>,
    /// In sequential mode, what the clusters before this one found, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prior_findings: Vec<Finding>,
    /// Set on the request's cross-cluster synthesis task, which runs after every cluster
    /// ended, on one of its clusters' runners: a tool-less pass over these reports instead of
    /// an investigation ([`crate::synthesis`]). Its result is a [`RunnerReport::Synthesis`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<Box<SynthesisInput>>,
    /// Set on a follow-up turn: the runner continues the cluster's conversation (kept in the
    /// conversations object store) with this question instead of starting an
    /// investigation. Its reports are `TurnStarted` and `TurnFinished`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpTurn>,
    /// Set on a session's pod order (`spec.exec`): the runner holds (creates) or releases
    /// (deletes) the session's pod ([`crate::names::session_pod_name`]) instead of running
    /// anything. Its report is a [`RunnerReport::SessionPod`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOrder>,
}

/// What a runner is to do with a session's pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PodOrder {
    /// Create the pod, to live until `expires_at` (the session's end) and no longer: a hold
    /// that arrives after it is refused, and the pod's own deadline ends it there.
    Hold {
        #[serde(with = "time::serde::rfc3339")]
        expires_at: Timestamp,
        /// What the pod's model calls may cost together (the session's budget).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget_usd: Option<f64>,
    },
    /// Delete the pod (the session ended); a pod already gone is released too.
    Release,
}

/// The question of a follow-up turn, as its task carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUpTurn {
    pub turn: u32,
    pub prompt: String,
    /// The engineer who asked.
    pub asked_by: String,
}

/// The dispatcher's record of one task, kept in [`crate::names::TASKS_BUCKET`] under
/// [`crate::names::task_record_key`] once a runner started it: what a runner checks before it
/// runs a delivered task (a task whose cluster is final is acknowledged and not run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub phase: ClusterPhase,
    /// Runs started so far (see [`crate::status::ClusterStatus::attempts`]).
    #[serde(default)]
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

/// What one cluster's investigation found, handed to the next cluster in sequential mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub cluster: ClusterName,
    pub phase: ClusterPhase,
    pub report: String,
}

/// A runner's word about a task, for the dispatcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunnerReport {
    /// The runner took the task and started the agent.
    Started {
        request_id: RequestId,
        cluster: ClusterName,
        /// Which replica took it (its host name).
        runner: String,
        #[serde(with = "time::serde::rfc3339")]
        at: Timestamp,
        /// Which run of the task this is: JetStream's delivery count, 1 the first time (0
        /// from a runner that predates attempts).
        #[serde(default, skip_serializing_if = "is_zero")]
        attempt: u32,
    },
    /// The agent ended, one way or another.
    Finished(TaskResult),
    /// How far the agent got while it runs, at most once per the runner's
    /// `--progress-interval`.
    Progress {
        request_id: RequestId,
        cluster: ClusterName,
        /// The run of the task it is about (as in `Started`).
        #[serde(default, skip_serializing_if = "is_zero")]
        attempt: u32,
        /// The follow-up turn it is about; 0 (left out) for the investigation.
        #[serde(default, skip_serializing_if = "is_zero")]
        turn: u32,
        progress: Progress,
    },
    /// The end of a request's cross-cluster synthesis run, on the subject of the cluster
    /// whose runner ran it.
    Synthesis(SynthesisResult),
    /// The runner took a follow-up turn and started the agent on it.
    TurnStarted {
        request_id: RequestId,
        cluster: ClusterName,
        turn: u32,
        runner: String,
        #[serde(with = "time::serde::rfc3339")]
        at: Timestamp,
    },
    /// A follow-up turn ended; its answer went to the publisher as a `turn_answer` event.
    TurnFinished(TurnResult),
    /// What became of a session's pod: held, removed, or not made (with the reason).
    SessionPod(PodReport),
}

/// A runner's word about a session's pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodReport {
    pub request_id: RequestId,
    pub cluster: ClusterName,
    /// The pod's name.
    pub pod: String,
    /// `held`, `removed` or `failed`.
    pub phase: PodPhase,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
}

/// How a follow-up turn ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnResult {
    pub request_id: RequestId,
    pub cluster: ClusterName,
    pub turn: u32,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default)]
    pub num_turns: u32,
    /// Whether the turn continued the stored conversation (`false`: there was none, so it
    /// started a new one).
    #[serde(default)]
    pub resumed: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: Timestamp,
}

/// How a synthesis run ended: the checked synthesis, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesisResult {
    pub request_id: RequestId,
    /// The cluster whose runner ran it.
    pub cluster: ClusterName,
    /// `Some` when the run gave a synthesis in its form; its claims checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<CheckedSynthesis>,
    /// Why there is no synthesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunFacts>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: Timestamp,
}

/// How an investigation ended. Only `Completed` is a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Failed,
    TimedOut,
    Cancelled,
}

impl Outcome {
    pub fn phase(self) -> ClusterPhase {
        match self {
            Outcome::Completed => ClusterPhase::Completed,
            Outcome::Failed => ClusterPhase::Failed,
            Outcome::TimedOut => ClusterPhase::TimedOut,
            Outcome::Cancelled => ClusterPhase::Cancelled,
        }
    }
}

/// The end of one cluster's investigation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub request_id: RequestId,
    pub cluster: ClusterName,
    pub outcome: Outcome,
    /// The agent's final text (its report); partial findings when it did not complete.
    pub final_text: String,
    /// Why it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default)]
    pub num_turns: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permission_denials: Vec<Denial>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: Timestamp,
    /// The run of the task that produced this result (see [`RunnerReport::Started`]); 0 from
    /// a runner that predates attempts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// The agent's structured answer with its evidence checked; `None` when the run gave no
    /// valid structured answer (then `final_text` is its free text, shown as unstructured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Box<CheckedReport>>,
    /// The model, CLI version and tokens of the run, as far as the CLI said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunFacts>,
}

/// For `skip_serializing_if`: an attempt of 0 is "not said".
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How often a runner replica rewrites its heartbeat.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a heartbeat stays valid: the runners bucket's max age, and how old the last
/// heartbeat of a replica may be for the dispatcher to count the replica as live. Several
/// intervals, so that a slow write or two does not make a busy runner look gone.
pub const HEARTBEAT_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// What a runner replica says about itself every [`HEARTBEAT_INTERVAL`], in the runners
/// bucket under `<cluster>.<replica>` ([`crate::names::heartbeat_key`]). Written by a task of
/// its own, independent of the agents it runs, so a replica busy with long investigations
/// still counts as live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerHeartbeat {
    pub cluster: ClusterName,
    pub replica: ReplicaId,
    /// The host it runs on (the name `RunnerReport::Started` gives).
    pub host: String,
    /// How many tasks it runs at once at most (`--concurrency`).
    pub concurrency: u32,
    /// How many tasks it runs now.
    pub running: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: Timestamp,
    /// When this heartbeat was written, by the runner's clock (the dispatcher judges age by
    /// the NATS server's time of the write instead).
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
}

/// A tool call the policy refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Denial {
    pub tool: String,
    pub tool_use_id: String,
    pub input: serde_json::Value,
}

/// One line of `results/<id>/audit.jsonl`: something the agent did or was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique per event (`<request>/<cluster>/<task attempt>/<sequence>`), so a redelivered
    /// event is written once.
    pub id: String,
    pub request_id: RequestId,
    pub cluster: ClusterName,
    /// The request's results folder, where this event's `audit.jsonl` line goes.
    pub results_dir: ResultsDir,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// The run of the task this event belongs to (1 the first time, 2 for the one extra run
    /// after an interrupted first), so that the lines of an interrupted attempt stay apart
    /// from the report's; 0 from a runner that predates attempts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// The follow-up turn this event belongs to; 0 (left out) for the investigation itself.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub turn: u32,
    #[serde(flatten)]
    pub kind: AuditKind,
    /// What redaction removed from this event before it was published, by kind: counts,
    /// never the values. The runner fills it; the publisher adds what its own pass removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redacted: Redacted,
}

/// Values removed by redaction, by kind (`{"jwt": 1, "password": 2}`): never the values.
/// A plain map, so that the contract does not depend on the redactor.
pub type Redacted = BTreeMap<String, u64>;

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditKind {
    /// The agent started, with the effective tool rules.
    Started {
        runner: String,
        allowed: Vec<String>,
        denied: Vec<String>,
    },
    /// The agent asked for a tool.
    ToolCall {
        tool_use_id: String,
        tool: String,
        input: serde_json::Value,
    },
    /// What a tool call returned (truncated), or the refusal the agent saw.
    ToolResult {
        tool_use_id: String,
        is_error: bool,
        output: String,
    },
    /// The policy refused a tool call.
    ToolRefused {
        tool_use_id: String,
        tool: String,
        input: serde_json::Value,
    },
    /// The runner's tool-call guard allowed a call, and why (its refusals are in
    /// `ToolRefused`, with `guard_rule` and `guard_reason` in the input).
    GuardAllowed {
        tool: String,
        /// The command, path or pattern the guard decided on.
        input: String,
        rule: String,
        reason: String,
    },
    /// The runner could not reach NATS for a while and its buffer of events ran full: this
    /// many events between the ones before and after this line were dropped.
    EventsDropped { count: u64 },
    /// The agent ended.
    Finished {
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// What redaction removed from the result the runner sent with this ending (the
        /// final text, the error and the refused calls' inputs), by kind.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        report_redacted: Redacted,
    },
    /// A follow-up turn's answer, redacted: the publisher writes it to its own file
    /// (`turn-<n>.md`), not to `audit.jsonl`.
    TurnAnswer {
        /// The turn answered, the event's `turn` too. Written as `answered_turn`: the kind is
        /// flattened into the event, whose own `turn` field would otherwise appear twice and
        /// the event not decode.
        #[serde(rename = "answered_turn")]
        turn: u32,
        /// The question, as the engineer asked it.
        question: String,
        asked_by: String,
        outcome: Outcome,
        /// The agent's answer (its final text; partial when it did not complete).
        answer: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default)]
        cost_usd: f64,
        /// Whether it continued the cluster's stored conversation.
        resumed: bool,
    },
}

/// A request's status at one transition, with what the publisher needs to write the reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub status: RequestStatus,
    /// A summary of the request for the aggregated report; absent when it could not be parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestSummary>,
    /// The reports of clusters that finished, by cluster name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reports: BTreeMap<ClusterName, ClusterReport>,
    /// The cross-cluster synthesis, once a runner gave one (`status.synthesis` says how it
    /// went); the README opens with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<CheckedSynthesis>,
}

/// What the aggregated report says about the request itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSummary {
    pub name: String,
    pub engineer: String,
    pub category: String,
    pub description: String,
    pub prompt: String,
}

impl RequestSummary {
    pub fn of(request: &TroubleshootingRequest) -> Self {
        RequestSummary {
            name: request.metadata.name.clone(),
            engineer: request.metadata.engineer.clone(),
            category: request.spec.issue.category.clone(),
            description: request.spec.issue.description.clone(),
            prompt: request.spec.investigation.prompt.clone(),
        }
    }
}

/// One cluster's report, written to `<results_dir>/<cluster>.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterReport {
    pub final_text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permission_denials: Vec<Denial>,
    /// The structured answer with its evidence checked (see [`TaskResult::report`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured: Option<CheckedReport>,
}

/// A message as a consumer receives it: decoded from its payload and checked against the
/// subject it arrived on, so that no message can speak for another request or cluster than
/// its subject names. A failure is permanent: the same bytes fail the same way every time.
pub trait Inbound: Sized {
    fn decode(subject: &crate::Subject, payload: &[u8]) -> Result<Self, Undecodable>;
}

/// Why a message cannot be used: its payload is not the message its subject promises, or it
/// speaks for another request or cluster than the subject names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Undecodable {
    /// What is wrong, as a sentence (`not a task: missing field ...`).
    pub reason: String,
}

impl From<String> for Undecodable {
    fn from(reason: String) -> Undecodable {
        Undecodable { reason }
    }
}

fn json<T: serde::de::DeserializeOwned>(what: &str, payload: &[u8]) -> Result<T, Undecodable> {
    serde_json::from_slice(payload).map_err(|e| format!("not {what}: {e}").into())
}

fn mismatch(what: &str, found: &str, subject: &crate::Subject) -> Undecodable {
    format!("{what} `{found}` arrived on the subject `{subject}`").into()
}

impl Inbound for GatewayMessage {
    fn decode(subject: &crate::Subject, payload: &[u8]) -> Result<Self, Undecodable> {
        // A notice is told apart by its `notice` field, a cancel by `cancel`, a follow-up by
        // `turn`; everything else is read as an accepted request, as every gateway has
        // always published.
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            notice: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            cancel: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            turn: Option<serde::de::IgnoredAny>,
        }
        let probe: Probe = json("a gateway message", payload)?;
        if probe.turn.is_some() {
            let order: FollowUpOrder = json("a follow-up order", payload)?;
            return match subject {
                crate::Subject::Request(id) if *id == order.id => {
                    Ok(GatewayMessage::FollowUp(order))
                }
                _ => Err(mismatch("the follow-up of", &order.id, subject)),
            };
        }
        if probe.cancel.is_some() {
            let order: CancelOrder = json("a cancel order", payload)?;
            return match subject {
                crate::Subject::Request(id) if *id == order.id => Ok(GatewayMessage::Cancel(order)),
                _ => Err(mismatch("the cancel of", &order.id, subject)),
            };
        }
        if probe.notice.is_none() {
            return AcceptedRequest::decode(subject, payload)
                .map(|accepted| GatewayMessage::Accepted(Box::new(accepted)));
        }
        let notice: RequestNotice = json("a request notice", payload)?;
        match subject {
            crate::Subject::Request(id) if *id == notice.id => Ok(GatewayMessage::Notice(notice)),
            _ => Err(mismatch("the notice on", &notice.id, subject)),
        }
    }
}

impl Inbound for AcceptedRequest {
    fn decode(subject: &crate::Subject, payload: &[u8]) -> Result<Self, Undecodable> {
        let message: AcceptedRequest = json("an accepted request", payload)?;
        match subject {
            crate::Subject::Request(id) if *id == message.id => Ok(message),
            _ => Err(mismatch("the request", &message.id, subject)),
        }
    }
}

impl Inbound for Task {
    fn decode(subject: &crate::Subject, payload: &[u8]) -> Result<Self, Undecodable> {
        let task: Task = json("a task", payload)?;
        match subject {
            crate::Subject::Task(cluster) if *cluster == task.cluster.name => Ok(task),
            _ => Err(mismatch("the task for", &task.cluster.name, subject)),
        }
    }
}

impl RunnerReport {
    /// The request and cluster the report is about.
    pub fn about(&self) -> (&RequestId, &ClusterName) {
        match self {
            RunnerReport::Started {
                request_id,
                cluster,
                ..
            } => (request_id, cluster),
            RunnerReport::Finished(result) => (&result.request_id, &result.cluster),
            RunnerReport::Synthesis(result) => (&result.request_id, &result.cluster),
            RunnerReport::TurnStarted {
                request_id,
                cluster,
                ..
            } => (request_id, cluster),
            RunnerReport::TurnFinished(result) => (&result.request_id, &result.cluster),
            RunnerReport::SessionPod(report) => (&report.request_id, &report.cluster),
            RunnerReport::Progress {
                request_id,
                cluster,
                ..
            } => (request_id, cluster),
        }
    }
}

impl Inbound for RunnerReport {
    fn decode(subject: &crate::Subject, payload: &[u8]) -> Result<Self, Undecodable> {
        let report: RunnerReport = json("a runner report", payload)?;
        let (request, cluster) = report.about();
        match subject {
            crate::Subject::Result(r, c) if r == request && c == cluster => Ok(report),
            _ => Err(mismatch(
                "the report on",
                &format!("{request}/{cluster}"),
                subject,
            )),
        }
    }
}

/// What the publisher consumes from the events stream.
#[derive(Debug, Clone, PartialEq)]
pub enum PublisherInput {
    Status(Box<StatusUpdate>),
    Event(Box<AuditEvent>),
}

impl PublisherInput {
    pub fn request_id(&self) -> &RequestId {
        match self {
            PublisherInput::Status(update) => &update.status.id,
            PublisherInput::Event(event) => &event.request_id,
        }
    }

    /// The folder the message writes into.
    pub fn results_dir(&self) -> &ResultsDir {
        match self {
            PublisherInput::Status(update) => &update.status.results_dir,
            PublisherInput::Event(event) => &event.results_dir,
        }
    }
}

impl Inbound for PublisherInput {
    fn decode(subject: &crate::Subject, payload: &[u8]) -> Result<Self, Undecodable> {
        let input = match subject {
            crate::Subject::Status(id) => {
                let update: StatusUpdate = json("a status update", payload)?;
                if update.status.id != *id {
                    return Err(mismatch("the status of", &update.status.id, subject));
                }
                PublisherInput::Status(Box::new(update))
            }
            crate::Subject::Event(id, cluster) => {
                let event: AuditEvent = json("an audit event", payload)?;
                if event.request_id != *id || event.cluster != *cluster {
                    return Err(mismatch(
                        "the event of",
                        &format!("{}/{}", event.request_id, event.cluster),
                        subject,
                    ));
                }
                if event.id.is_empty() {
                    return Err("the audit event has an empty id".to_owned().into());
                }
                PublisherInput::Event(Box::new(event))
            }
            other => {
                return Err(format!("unexpected subject `{other}` on the events stream").into());
            }
        };
        if input.results_dir().request_id() != input.request_id().as_str() {
            return Err(format!(
                "the results folder `{}` does not belong to request `{}`",
                input.results_dir(),
                input.request_id()
            )
            .into());
        }
        Ok(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_json(extra: &str) -> String {
        format!(
            r#"{{"id":"r1/hub/1/3","request_id":"r1","cluster":"hub","results_dir":"results/r1",
                "at":"2026-11-24T10:00:00Z","event":"finished","outcome":"completed"{extra}}}"#
        )
    }

    #[test]
    fn audit_events_without_redaction_counts_still_decode() {
        let event: AuditEvent = serde_json::from_str(&event_json("")).unwrap();
        assert!(event.redacted.is_empty());
        let AuditKind::Finished {
            report_redacted, ..
        } = &event.kind
        else {
            panic!("not a finished event: {event:?}");
        };
        assert!(report_redacted.is_empty());
        let written = serde_json::to_string(&event).unwrap();
        assert!(!written.contains("redacted"), "{written}");
    }

    #[test]
    fn redaction_counts_round_trip_beside_the_flattened_kind() {
        let event: AuditEvent = serde_json::from_str(&event_json(
            r#","redacted":{"jwt":1},"report_redacted":{"password":2}"#,
        ))
        .unwrap();
        assert_eq!(event.redacted, Redacted::from([("jwt".to_owned(), 1)]));
        let AuditKind::Finished {
            report_redacted, ..
        } = &event.kind
        else {
            panic!("not a finished event: {event:?}");
        };
        assert_eq!(report_redacted["password"], 2);
        let again: AuditEvent =
            serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert_eq!(again, event);
    }

    #[test]
    fn a_turn_answer_round_trips_beside_the_events_turn() {
        let event = AuditEvent {
            id: "r1/hub/turn-2-1/7".to_owned(),
            request_id: RequestId::new("r1").unwrap(),
            cluster: ClusterName::new("hub").unwrap(),
            results_dir: "results/r1".parse().unwrap(),
            at: crate::now(),
            attempt: 1,
            turn: 2,
            kind: AuditKind::TurnAnswer {
                turn: 2,
                question: "why?".to_owned(),
                asked_by: "jane".to_owned(),
                outcome: Outcome::Completed,
                answer: "because".to_owned(),
                error: None,
                cost_usd: 0.5,
                resumed: true,
            },
            redacted: Redacted::new(),
        };
        let written = serde_json::to_string(&event).unwrap();
        assert_eq!(written.matches(r#""turn":"#).count(), 1, "{written}");
        let again: AuditEvent = serde_json::from_str(&written).unwrap();
        assert_eq!(again, event);
    }
}
