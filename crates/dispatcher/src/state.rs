//! A request's lifecycle as the dispatcher stores it (one key-value entry per request), and the
//! pure rules that move it forward.
//!
//! Nothing here does I/O. The engine reads a [`RequestState`], asks [`RequestState::next_step`]
//! what is due, does it, and writes the changed state back with compare-and-set. Because every
//! decision is derived from the stored state alone, a dispatcher that crashed between two steps
//! picks up exactly where the stored state says it stopped, and applying the same runner report
//! twice changes nothing the second time.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use warroom_proto::synthesis::{CheckedSynthesis, SynthesisCluster, SynthesisInput};
use warroom_proto::wire::{FollowUpOrder, FollowUpTurn, TurnResult};
use warroom_proto::{
    AcceptedRequest, AnswerForm, CancelOrder, Cancellation, ClusterName, ClusterPhase, ClusterRef,
    ClusterReport, ClusterStatus, ClusterType, CoordinationMode, Denial, FieldError, Finding,
    Notice, NoticeKind, PodOrder, PodPhase, PodReport, Progress, Queued, RequestId, RequestPhase,
    RequestStatus, RequestSummary, RunnerReport, SessionState, SessionStatus, StatusUpdate,
    SynthesisPhase, SynthesisResult, SynthesisStatus, Task, TaskResult, Timestamp, TurnStatus,
};

use crate::config::human;
use crate::liveness::{Outside, Presence};

/// How many bytes of report text one request keeps, shared by its clusters. A status snapshot
/// carries every finished cluster's report and must stay under NATS's default 1 MiB message
/// limit together with everything else it holds; a longer report is cut, and says so. Each
/// cluster's error and refused tool calls get a quarter of its share each on top (see
/// [`RequestState::on_finished`]), and its status line about 400 bytes: at 500 clusters
/// that is about 900 KiB in all (a test checks it).
pub const REPORT_BUDGET_BYTES: usize = 448 * 1024;

/// How many bytes the cross-cluster synthesis keeps in a status snapshot, beside the
/// clusters' [`REPORT_BUDGET_BYTES`]; claims past it are left out, from the last.
pub const SYNTHESIS_BUDGET_BYTES: usize = 64 * 1024;

/// The timeouts the dispatcher enforces.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A dispatched task fails its cluster once the cluster has had no live runner for this
    /// long; while it has one, however busy, the task waits.
    pub pickup: Duration,
    /// Added to the request's own timeout before a started cluster is declared timed out.
    pub run_grace: Duration,
    /// At most how often a running request gets a new snapshot for its agents' progress.
    pub progress: Duration,
    /// How long a cross-cluster synthesis may take once asked for (plus `run_grace`); `None`:
    /// requests get no synthesis.
    pub synthesis: Option<Duration>,
}

/// One follow-up turn of a request, as the dispatcher keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnState {
    pub turn: u32,
    pub cluster: ClusterName,
    pub asked_by: String,
    pub prompt: String,
    #[serde(with = "time::serde::rfc3339")]
    pub asked_at: Timestamp,
    /// The git object id of the follow-up file.
    pub version: String,
    pub phase: ClusterPhase,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub dispatched_at: Option<Timestamp>,
    #[serde(default)]
    pub task_sequence: Option<u64>,
    #[serde(default)]
    pub runner: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub running_since: Option<Timestamp>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub resumed: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
    /// The phase last written to the turn's record (`names::turn_record_key`).
    #[serde(default)]
    pub recorded: Option<ClusterPhase>,
    /// Cancelled while it ran (its session ended): its runner's report, when it comes, still
    /// brings what the run cost.
    #[serde(default)]
    pub awaiting_report: bool,
    /// How far its agent got, while it runs.
    #[serde(default)]
    pub progress: Option<Progress>,
}

impl TurnState {
    fn status(&self) -> TurnStatus {
        TurnStatus {
            turn: self.turn,
            cluster: self.cluster.clone(),
            asked_by: self.asked_by.clone(),
            asked_at: self.asked_at,
            phase: self.phase,
            finished_at: self.finished_at,
            cost_usd: self.cost_usd,
            resumed: self.resumed,
            error: self.error.clone(),
            progress: (self.phase == ClusterPhase::Running)
                .then(|| self.progress.clone())
                .flatten(),
            report: self
                .phase
                .is_final()
                .then(|| warroom_proto::status::turn_file(self.turn)),
        }
    }

    /// Ends a turn that never ran.
    fn end_unrun(&mut self, phase: ClusterPhase, error: String, now: Timestamp) {
        self.phase = phase;
        self.error = Some(error);
        self.finished_at = Some(now);
    }
}

/// A session's term, as the dispatcher keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub duration_secs: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: Timestamp,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended_at: Option<Timestamp>,
    #[serde(default)]
    pub ended: Option<String>,
    /// The pod holding the session for `kubectl exec`, once its runner was told to make it.
    #[serde(default)]
    pub pod: Option<String>,
    /// What its runs may cost together; it ends once they cost this much.
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// Held as a pod (`spec.exec`).
    #[serde(default)]
    pub exec: bool,
    /// Where the pod is, once it was asked for.
    #[serde(default)]
    pub pod_phase: Option<PodPhase>,
    #[serde(default)]
    pub pod_error: Option<String>,
    /// Release orders sent so far: each gets its own deduplication id, because a hold that
    /// ran after a release makes the pod again and needs another.
    #[serde(default)]
    pub pod_releases: u32,
}

impl SessionRecord {
    fn is_open(&self) -> bool {
        self.ended_at.is_none()
    }

    /// The pod order due now: a hold once an open session asks for its pod, a release once
    /// the session ended and its pod may exist.
    fn pod_order_due(&self) -> Option<PodStep> {
        if !self.exec {
            return None;
        }
        match self.pod_phase {
            None if self.is_open() => Some(PodStep::Hold),
            Some(PodPhase::Requested | PodPhase::Held) if !self.is_open() => Some(PodStep::Release),
            _ => None,
        }
    }
}

/// Which pod order a step sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodStep {
    Hold,
    Release,
}

/// What became of a follow-up order.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowUpOutcome {
    /// A new turn waits for its cluster's conversation.
    Added,
    /// Refused with a notice in the request's status; nothing runs.
    Refused(String),
    /// This file version was answered before.
    Repeat,
}

/// The dispatcher's record of a request's cross-cluster synthesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesisState {
    pub phase: SynthesisPhase,
    /// The cluster whose runner was sent the synthesis task.
    #[serde(default)]
    pub cluster: Option<ClusterName>,
    /// When the task was sent, by the dispatcher's clock (the bound counts from it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub requested_at: Option<Timestamp>,
    /// The task's sequence in the tasks stream, so an expired one can be taken back.
    #[serde(default)]
    pub task_sequence: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub report: Option<CheckedSynthesis>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub run: Option<warroom_proto::RunFacts>,
}

impl SynthesisState {
    fn pending() -> SynthesisState {
        SynthesisState {
            phase: SynthesisPhase::Pending,
            cluster: None,
            requested_at: None,
            task_sequence: None,
            error: None,
            report: None,
            cost_usd: None,
            run: None,
        }
    }

    fn fail(&mut self, error: String) {
        self.phase = SynthesisPhase::Failed;
        self.error = Some(error);
    }

    fn status(&self) -> SynthesisStatus {
        SynthesisStatus {
            phase: self.phase,
            cluster: self.cluster.clone(),
            claims: self.report.as_ref().map(CheckedSynthesis::counts),
            error: self.error.clone(),
            cost_usd: self.cost_usd,
            run: self.run.clone(),
        }
    }
}

/// One request, as stored under its id in the requests bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestState {
    pub accepted: AcceptedRequest,
    /// `Some` for a request with `targetClusters`.
    #[serde(default)]
    pub mode: Option<CoordinationMode>,
    pub phase: RequestPhase,
    /// Why the request did not complete, once it is final.
    #[serde(default)]
    pub error: Option<String>,
    /// The target clusters in the order of the request (the order sequential mode follows).
    pub clusters: Vec<ClusterState>,
    /// The status revision: grows by one at every transition; `<id>-<revision>` is the dedup
    /// id of the status snapshot published for it.
    pub revision: u64,
    /// The last revision whose snapshot the event stream confirmed. Lower than `revision` only
    /// between a transition and its publication, or after a crash in between, so whoever
    /// reads the state next publishes it.
    #[serde(default)]
    pub published_revision: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    /// What happened to the request's file after it was accepted, from the gateway.
    #[serde(default)]
    pub notices: Vec<Notice>,
    /// Why the dispatcher refused the request (the engineer's limit on active requests).
    #[serde(default)]
    pub errors: Vec<FieldError>,
    /// When a snapshot was last made for progress alone ([`Timeouts::progress`]).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub progress_shown_at: Option<Timestamp>,
    /// Who cancelled the request, when and why, once a cancel ended it.
    #[serde(default)]
    pub cancellation: Option<Cancellation>,
    /// The git object ids of the cancel files already answered, so a repeated order (a
    /// redelivery, a rescan of the repository) changes nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancel_versions: Vec<String>,
    /// How long this request's cross-cluster synthesis may take once its task is sent, in
    /// seconds; `None`: it gets none (the dispatcher ran with `--synthesis-timeout 0`, or
    /// the request was stored before synthesis existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis_timeout_secs: Option<u64>,
    /// The cross-cluster synthesis, from when every cluster ended (only for a request that
    /// gets one: see [`RequestState::wants_synthesis`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<SynthesisState>,
    /// For a session: its term, and whether and why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionRecord>,
    /// The follow-up turns asked, in the order they came.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<TurnState>,
}

/// One cluster's part of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: ClusterName,
    pub kind: ClusterType,
    pub phase: ClusterPhase,
    /// How many times a runner started this task (a redelivered task starts again).
    #[serde(default)]
    pub attempts: u32,
    /// The runner replica that started it last.
    #[serde(default)]
    pub runner: Option<String>,
    /// When the task was queued, by the dispatcher's clock (the pickup timeout counts from it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub dispatched_at: Option<Timestamp>,
    /// The task's sequence in the tasks stream, so an expired task can be taken back.
    #[serde(default)]
    pub task_sequence: Option<u64>,
    /// When the dispatcher learned that the runner started, by its own clock (the run timeout
    /// counts from it, so a runner's clock skew cannot shorten or stretch it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub running_since: Option<Timestamp>,
    /// When the agent started and ended, as the runner reported.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<Timestamp>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub num_turns: Option<u32>,
    #[serde(default)]
    pub permission_denials: Vec<Denial>,
    /// Refused tool calls left out of `permission_denials` because they did not fit the
    /// cluster's share of the status message (they are still counted in `status.json`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub permission_denials_dropped: u32,
    /// Why it failed, timed out or was cancelled.
    #[serde(default)]
    pub error: Option<String>,
    /// The report (the agent's final text, or the dispatcher's explanation when no runner
    /// answered); `Some` once the cluster is final.
    #[serde(default)]
    pub final_text: Option<String>,
    /// The agent's structured answer with its evidence checked, when it gave one that fits
    /// the cluster's share of the status message.
    #[serde(default)]
    pub structured: Option<warroom_proto::CheckedReport>,
    /// The model, CLI version and tokens of the run.
    #[serde(default)]
    pub run: Option<warroom_proto::RunFacts>,
    /// While dispatched: the task's place among its cluster's waiting tasks (1 = next).
    #[serde(default)]
    pub queue_position: Option<u32>,
    /// What became of the earlier run, when a runner started the task again.
    #[serde(default)]
    pub interrupted: Option<String>,
    /// How far the running agent got, as its runner last reported; shown while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The phase and attempts last written to the task's record in the tasks bucket
    /// ([`crate::attempts::sync_records`]), so each change is written once.
    #[serde(default)]
    pub recorded: Option<(ClusterPhase, u32)>,
    /// Cancelled while it ran: the runner's partial report is still to come, and is taken
    /// into the cluster's report when it arrives (the cluster stays `cancelled`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_report: bool,
}

/// What a cancel order did to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The request is now `cancelled`; these dispatched tasks wait in their queues and are
    /// to be taken back (cluster, stream sequence).
    Cancelled(Vec<(ClusterName, u64)>),
    /// The request had already ended (or was cancelled before): a notice says so.
    Ignored,
    /// This cancel file was answered before: nothing to do.
    Repeat,
}

/// What is due next for a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The current revision's snapshot has not been published yet.
    PublishStatus,
    /// A cluster ran out of time waiting for a runner or for its result.
    Expire {
        cluster: usize,
        phase: ClusterPhase,
        error: String,
    },
    /// These clusters' tasks are to be queued now.
    Dispatch(Vec<usize>),
    /// These dispatched clusters' tasks moved in their queues: (cluster, new position).
    Requeue(Vec<(usize, u32)>),
    /// Every cluster ended: send the synthesis task to the runner of this cluster.
    Synthesize(usize),
    /// This follow-up turn's task is to be queued now.
    DispatchTurn(usize),
    /// A follow-up turn ran out of time waiting for a runner or for its result.
    ExpireTurn {
        turn: usize,
        phase: ClusterPhase,
        error: String,
    },
    /// The session's duration ended.
    EndSession(String),
    /// Send the session's pod order (hold or release) to its cluster's runner.
    Pod(PodStep),
    /// The synthesis did not come within its bound: end the request without it.
    ExpireSynthesis(String),
}

/// What applying a runner report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed: a new revision to store and publish.
    Changed,
    /// Already applied (a redelivered report): nothing to do.
    Unchanged,
    /// The request has no such target cluster.
    UnknownCluster,
    /// The cluster already has its final result; later reports about it are ignored.
    AlreadyFinal,
}

impl RequestState {
    /// The state of a request that was just accepted: every cluster pending, revision 1.
    pub fn new(accepted: AcceptedRequest, now: Timestamp) -> Self {
        let spec = &accepted.request.spec;
        let (targets, mode) = match (&spec.target_clusters, &spec.target_cluster) {
            (Some(many), _) => (
                many.clone(),
                Some(
                    spec.coordination
                        .as_ref()
                        .map_or(CoordinationMode::Parallel, |c| c.mode),
                ),
            ),
            (None, Some(one)) => (vec![one.clone()], None),
            (None, None) => (Vec::new(), None),
        };
        let mut clusters: Vec<ClusterState> = Vec::with_capacity(targets.len());
        for target in targets {
            // Validation refuses a cluster named twice; should one slip through, it is
            // investigated once, because its name is its key in the status and its subject.
            if !clusters.iter().any(|c| c.name == target.name) {
                clusters.push(ClusterState::pending(&target));
            }
        }
        // Cluster names are `ClusterName`s, checked when the request was decoded, so none can
        // widen a subject. The gateway refuses a request without targets; should one slip
        // through, it ends here as failed, with the reason.
        let (phase, error) = if clusters.is_empty() {
            (
                RequestPhase::Failed,
                Some("the request names no target cluster".to_owned()),
            )
        } else {
            (RequestPhase::Accepted, None)
        };
        RequestState {
            accepted,
            mode,
            phase,
            error,
            clusters,
            revision: 1,
            published_revision: 0,
            created_at: now,
            updated_at: now,
            notices: Vec::new(),
            errors: Vec::new(),
            progress_shown_at: None,
            cancellation: None,
            cancel_versions: Vec::new(),
            synthesis_timeout_secs: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        }
        .opened_as_session(now)
    }

    /// A session's state: its term set, and, when its file asked no first question, its
    /// cluster ready for follow-ups at once (nothing runs until the first one).
    fn opened_as_session(mut self, now: Timestamp) -> Self {
        let Some(terms) = self.accepted.session.clone() else {
            return self;
        };
        let secs = i64::try_from(terms.duration_secs).unwrap_or(i64::MAX);
        self.session = Some(SessionRecord {
            duration_secs: terms.duration_secs,
            expires_at: now.saturating_add(time::Duration::seconds(secs)),
            ended_at: None,
            ended: None,
            pod: None,
            budget_usd: terms.budget_usd,
            exec: terms.exec,
            pod_phase: None,
            pod_error: None,
            pod_releases: 0,
        });
        if !terms.opening_prompt && self.phase != RequestPhase::Failed {
            for cluster in &mut self.clusters {
                cluster.phase = ClusterPhase::Completed;
                cluster.finished_at = Some(now);
                cluster.final_text = Some(
                    "The session opened without a first question: nothing ran yet. Ask with \
                     `claude-warroom session ask`; each answer lands in its own `turn-<n>.md`."
                        .to_owned(),
                );
            }
            self.phase = RequestPhase::Running;
        }
        self
    }

    /// Takes an authorized follow-up question: a new turn of its cluster's conversation, or
    /// a notice saying why not.
    pub fn on_follow_up(&mut self, order: &FollowUpOrder, now: Timestamp) -> FollowUpOutcome {
        if let Some(earlier) = self.turns.iter().find(|t| t.turn == order.turn) {
            if earlier.version == order.version {
                return FollowUpOutcome::Repeat;
            }
            let message = format!(
                "{} asks turn {} again, which was asked before (by {}); a changed follow-up \
                 never runs: add a new file with the next number",
                order.file, order.turn, earlier.asked_by
            );
            return self.refuse_follow_up(order, message, now);
        }
        if self
            .notices
            .iter()
            .any(|n| n.kind == NoticeKind::FollowUpRefused && n.version == order.version)
        {
            return FollowUpOutcome::Repeat;
        }
        let cluster = match self.turn_cluster(order) {
            Ok(cluster) => cluster,
            Err(message) => return self.refuse_follow_up(order, message, now),
        };
        if self.phase == RequestPhase::Rejected {
            let message = format!(
                "{} follows up a request that was rejected; nothing ran",
                order.file
            );
            return self.refuse_follow_up(order, message, now);
        }
        if let Some(session) = &self.session
            && let (Some(at), Some(why)) = (session.ended_at, &session.ended)
        {
            let message = format!(
                "{} came after the session ended ({why}, at {}); nothing ran",
                order.file,
                rfc3339(at)
            );
            return self.refuse_follow_up(order, message, now);
        }
        self.turns.push(TurnState {
            turn: order.turn,
            cluster,
            asked_by: order.engineer.clone(),
            prompt: order.prompt.clone(),
            asked_at: order.asked_at,
            version: order.version.clone(),
            phase: ClusterPhase::Pending,
            dispatched_at: None,
            task_sequence: None,
            runner: None,
            running_since: None,
            finished_at: None,
            cost_usd: None,
            resumed: None,
            error: None,
            recorded: None,
            awaiting_report: false,
            progress: None,
        });
        self.transition(now);
        FollowUpOutcome::Added
    }

    /// The cluster whose conversation a follow-up continues, or why it has none.
    fn turn_cluster(&self, order: &FollowUpOrder) -> Result<ClusterName, String> {
        match (&order.cluster, self.clusters.as_slice()) {
            (Some(name), clusters) if clusters.iter().any(|c| c.name == *name) => Ok(name.clone()),
            (Some(name), clusters) => {
                let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
                let message = format!(
                    "{} asks cluster {name}, which is not a cluster of this request ({}); \
                     nothing ran",
                    order.file,
                    names.join(", ")
                );
                Err(message)
            }
            (None, [one]) => Ok(one.name.clone()),
            (None, clusters) => {
                let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
                let message = format!(
                    "{} names no cluster, and this request has several ({}): say which with \
                     `spec.cluster` (`session ask --cluster`); nothing ran",
                    order.file,
                    names.join(", ")
                );
                Err(message)
            }
        }
    }

    fn refuse_follow_up(
        &mut self,
        order: &FollowUpOrder,
        message: String,
        now: Timestamp,
    ) -> FollowUpOutcome {
        self.notices.push(Notice {
            kind: NoticeKind::FollowUpRefused,
            file: order.file.clone(),
            version: order.version.clone(),
            commit: order.commit.clone(),
            at: now,
            message: message.clone(),
        });
        self.transition(now);
        FollowUpOutcome::Refused(message)
    }

    /// The first waiting turn that may run now: its cluster's investigation ended, no
    /// earlier turn of the cluster is still open, and (for a session) the session is open.
    fn due_turn(&self) -> Option<usize> {
        if self.session.as_ref().is_some_and(|s| !s.is_open()) {
            return None;
        }
        let mut order: Vec<usize> = (0..self.turns.len()).collect();
        order.sort_by_key(|&i| self.turns[i].turn);
        order.into_iter().find(|&i| {
            let turn = &self.turns[i];
            turn.phase == ClusterPhase::Pending
                && self
                    .clusters
                    .iter()
                    .any(|c| c.name == turn.cluster && c.phase.is_final())
                && !self.turns.iter().any(|other| {
                    other.cluster == turn.cluster
                        && other.turn < turn.turn
                        && !other.phase.is_final()
                })
        })
    }

    /// The task of the turn at `index`: the request's task for its cluster, with the
    /// question.
    pub fn turn_task(&self, index: usize) -> Option<Task> {
        let turn = self.turns.get(index)?;
        let cluster = self.clusters.iter().position(|c| c.name == turn.cluster)?;
        let mut task = self.task_for(cluster)?;
        task.prior_findings = Vec::new();
        task.follow_up = Some(FollowUpTurn {
            turn: turn.turn,
            prompt: turn.prompt.clone(),
            asked_by: turn.asked_by.clone(),
        });
        Some(task)
    }

    /// The session's pod order for its cluster's runner: the request's task with `pod` set.
    pub fn pod_task(&self, step: PodStep) -> Option<Task> {
        let session = self.session.as_ref()?;
        let mut task = self.task_for(0)?;
        task.prior_findings = Vec::new();
        task.pod = Some(match step {
            PodStep::Hold => PodOrder::Hold {
                expires_at: session.expires_at,
                budget_usd: session.budget_usd,
            },
            PodStep::Release => PodOrder::Release,
        });
        Some(task)
    }

    /// The deduplication id of the pod order `step`.
    pub fn pod_dedup(&self, step: PodStep) -> String {
        let id = self.id();
        let cluster = self.clusters.first().map(|c| c.name.as_str()).unwrap_or("");
        match step {
            PodStep::Hold => format!("{id}-{cluster}-pod-hold"),
            PodStep::Release => format!(
                "{id}-{cluster}-pod-release-{}",
                self.session.as_ref().map_or(0, |s| s.pod_releases) + 1
            ),
        }
    }

    /// Records that the pod order `step` was queued.
    pub fn mark_pod_ordered(&mut self, step: PodStep, now: Timestamp) -> bool {
        let pod = warroom_proto::names::session_pod_name(self.id());
        let Some(session) = &mut self.session else {
            return false;
        };
        if session.pod_order_due() != Some(step) {
            return false;
        }
        session.pod = Some(pod);
        match step {
            PodStep::Hold => session.pod_phase = Some(PodPhase::Requested),
            PodStep::Release => {
                session.pod_phase = Some(PodPhase::Releasing);
                session.pod_releases += 1;
            }
        }
        self.transition(now);
        true
    }

    /// A runner said what became of the session's pod.
    pub fn on_pod(&mut self, report: &PodReport, now: Timestamp) -> Applied {
        if self.clusters.first().map(|c| &c.name) != Some(&report.cluster) {
            return Applied::UnknownCluster;
        }
        let Some(session) = &mut self.session else {
            return Applied::UnknownCluster;
        };
        if !session.exec || session.pod_phase.is_none() {
            return Applied::UnknownCluster;
        }
        let phase = match report.phase {
            // A hold that ran after a release made the pod again: it is held, and the next
            // step releases it once more.
            PodPhase::Held => PodPhase::Held,
            PodPhase::Removed => PodPhase::Removed,
            // A failed hold leaves no pod; a failed release leaves one, which its deadline
            // ends (the runner also deletes expired session pods by itself).
            PodPhase::Failed => PodPhase::Failed,
            PodPhase::Requested | PodPhase::Releasing => return Applied::Unchanged,
        };
        let error = report.error.as_deref().map(|e| truncate(e, 4096));
        if session.pod_phase == Some(phase) && session.pod_error == error {
            return Applied::Unchanged;
        }
        session.pod_phase = Some(phase);
        session.pod_error = error;
        self.transition(now);
        Applied::Changed
    }

    /// Records that the turn at `index` was queued (with its stream sequence).
    pub fn mark_turn_dispatched(&mut self, index: usize, sequence: u64, now: Timestamp) -> bool {
        match self.turns.get_mut(index) {
            Some(turn) if turn.phase == ClusterPhase::Pending => {
                turn.phase = ClusterPhase::Dispatched;
                turn.dispatched_at = Some(now);
                turn.task_sequence = Some(sequence);
                self.transition(now);
                true
            }
            _ => false,
        }
    }

    /// Applies one runner report (progress shown at most once per `progress_every`).
    pub fn apply(
        &mut self,
        report: &RunnerReport,
        now: Timestamp,
        progress_every: Duration,
    ) -> Applied {
        let (_, cluster) = report.about();
        match report {
            RunnerReport::Started {
                runner,
                at,
                attempt,
                ..
            } => self.on_started(cluster, runner, *at, *attempt, now),
            RunnerReport::Finished(result) => self.on_finished(result, now),
            RunnerReport::Synthesis(result) => self.on_synthesis(result, now),
            RunnerReport::TurnStarted {
                turn, runner, at, ..
            } => self.on_turn_started(cluster, *turn, runner, *at, now),
            RunnerReport::TurnFinished(result) => self.on_turn_finished(result, now),
            RunnerReport::SessionPod(pod) => self.on_pod(pod, now),
            RunnerReport::Progress {
                attempt,
                turn,
                progress,
                ..
            } => self.on_progress(cluster, (*attempt, *turn), progress, now, progress_every),
        }
    }

    /// Turn `turn` of `cluster`'s conversation.
    fn turn_mut(&mut self, cluster: &ClusterName, turn: u32) -> Option<&mut TurnState> {
        self.turns
            .iter_mut()
            .find(|t| t.turn == turn && t.cluster == *cluster)
    }

    /// A runner started a follow-up turn.
    pub fn on_turn_started(
        &mut self,
        cluster: &ClusterName,
        turn: u32,
        runner: &str,
        _at: Timestamp,
        now: Timestamp,
    ) -> Applied {
        let Some(state) = self.turn_mut(cluster, turn) else {
            return Applied::UnknownCluster;
        };
        if state.phase.is_final() {
            return Applied::AlreadyFinal;
        }
        if state.phase == ClusterPhase::Running && state.runner.as_deref() == Some(runner) {
            return Applied::Unchanged;
        }
        state.phase = ClusterPhase::Running;
        state.runner = Some(runner.to_owned());
        state.running_since = Some(now);
        self.transition(now);
        Applied::Changed
    }

    /// A runner reported how a follow-up turn ended (its answer went to the publisher).
    pub fn on_turn_finished(&mut self, result: &TurnResult, now: Timestamp) -> Applied {
        let Some(state) = self.turn_mut(&result.cluster, result.turn) else {
            return Applied::UnknownCluster;
        };
        if state.phase.is_final() {
            if !state.awaiting_report {
                return Applied::AlreadyFinal;
            }
            // Cancelled while it ran: it stays cancelled, with what it cost.
            state.awaiting_report = false;
            state.cost_usd = Some(result.cost_usd);
            state.resumed = Some(result.resumed);
            self.transition(now);
            return Applied::Changed;
        }
        state.phase = result.outcome.phase();
        state.finished_at = Some(result.finished_at);
        state.cost_usd = Some(result.cost_usd);
        state.resumed = Some(result.resumed);
        state.error = result.error.as_deref().map(|e| truncate(e, 4096));
        self.transition(now);
        Applied::Changed
    }

    /// Ends a turn that ran out of time.
    pub fn expire_turn(
        &mut self,
        index: usize,
        phase: ClusterPhase,
        error: &str,
        now: Timestamp,
    ) -> bool {
        match self.turns.get_mut(index) {
            Some(turn) if !turn.phase.is_final() => {
                turn.end_unrun(phase, error.to_owned(), now);
                self.transition(now);
                true
            }
            _ => false,
        }
    }

    /// Ends the session (stopped, or its duration over): turns not yet queued never run;
    /// the dispatched ones taken back are returned (cluster, stream sequence).
    pub fn end_session(&mut self, why: &str, now: Timestamp) -> Vec<(ClusterName, u64)> {
        let take_back = self.close_session(why, now);
        self.transition(now);
        take_back
    }

    /// [`RequestState::end_session`] without the transition.
    fn close_session(&mut self, why: &str, now: Timestamp) -> Vec<(ClusterName, u64)> {
        let Some(session) = &mut self.session else {
            return Vec::new();
        };
        if !session.is_open() {
            return Vec::new();
        }
        session.ended_at = Some(now);
        session.ended = Some(why.to_owned());
        let mut take_back = Vec::new();
        for turn in &mut self.turns {
            if turn.phase == ClusterPhase::Running {
                // Its record says `cancelled` with the next snapshot, and its runner stops the
                // agent; the partial answer still lands in its turn file.
                turn.phase = ClusterPhase::Cancelled;
                turn.error = Some(format!(
                    "the session ended ({why}) while this turn ran; its runner was told to stop \
                     the agent"
                ));
                turn.finished_at = Some(now);
                turn.awaiting_report = true;
                continue;
            }
            if matches!(turn.phase, ClusterPhase::Pending | ClusterPhase::Dispatched) {
                if let (ClusterPhase::Dispatched, Some(sequence)) = (turn.phase, turn.task_sequence)
                {
                    take_back.push((turn.cluster.clone(), sequence));
                }
                turn.end_unrun(
                    ClusterPhase::Cancelled,
                    format!("the session ended ({why}) before this turn ran"),
                    now,
                );
            }
        }
        take_back
    }

    /// What is due for the session and the turns at `now`, before the request's own steps.
    fn turn_step(
        &self,
        now: Timestamp,
        timeouts: Option<Timeouts>,
        outside: &dyn Outside,
    ) -> Option<Step> {
        if let Some(session) = &self.session
            && session.is_open()
            && now >= session.expires_at
        {
            return Some(Step::EndSession(format!(
                "its duration of {} ended",
                human(Duration::from_secs(session.duration_secs))
            )));
        }
        if let Some(session) = &self.session
            && session.is_open()
            && let Some(budget) = session.budget_usd
            && self.session_cost() >= budget
        {
            return Some(Step::EndSession(format!(
                "its budget of ${budget:.2} was spent (${:.2})",
                self.session_cost()
            )));
        }
        if self.phase != RequestPhase::Rejected
            && let Some(order) = self.session.as_ref().and_then(SessionRecord::pod_order_due)
        {
            return Some(Step::Pod(order));
        }
        if let Some(timeouts) = timeouts {
            let request_timeout =
                Duration::from_secs(self.accepted.request.spec.investigation.timeout);
            let run_limit = request_timeout.saturating_add(timeouts.run_grace);
            for (index, turn) in self.turns.iter().enumerate() {
                let expired = match turn.phase {
                    ClusterPhase::Dispatched => {
                        let Some(error) =
                            unpicked(&turn.cluster, turn.dispatched_at, now, timeouts, outside)
                        else {
                            continue;
                        };
                        (ClusterPhase::Failed, error)
                    }
                    ClusterPhase::Running
                        if elapsed(turn.running_since, now) >= Some(run_limit) =>
                    {
                        (
                            ClusterPhase::TimedOut,
                            format!(
                                "no answer to turn {} from cluster {} within the request timeout \
                                 ({}) plus {} grace",
                                turn.turn,
                                turn.cluster,
                                human(request_timeout),
                                human(timeouts.run_grace)
                            ),
                        )
                    }
                    _ => continue,
                };
                return Some(Step::ExpireTurn {
                    turn: index,
                    phase: expired.0,
                    error: expired.1,
                });
            }
        }
        self.due_turn().map(Step::DispatchTurn)
    }

    /// Applies an authorized cancel: every cluster not final ends `cancelled` (a running one
    /// keeps a place for its runner's partial report), and the request ends `cancelled` with
    /// who, when and why. A request that already ended gets a `cancel_ignored` notice and
    /// nothing else changes.
    pub fn cancel(&mut self, order: &CancelOrder, now: Timestamp) -> CancelOutcome {
        if self.cancel_versions.contains(&order.version) {
            return CancelOutcome::Repeat;
        }
        self.cancel_versions.push(order.version.clone());
        let file = &order.cancel.file;
        if self.phase.is_final() {
            let message = match &self.cancellation {
                Some(earlier) => format!(
                    "{file} asked to cancel this request, but it was already {} at {}; nothing changed",
                    earlier.describe(),
                    rfc3339(earlier.at)
                ),
                None => format!(
                    "{file} asked to cancel this request, but it had already ended {}; nothing changed",
                    self.phase
                ),
            };
            self.notices.push(Notice {
                kind: NoticeKind::CancelIgnored,
                file: file.clone(),
                version: order.version.clone(),
                commit: order.commit.clone(),
                at: now,
                message,
            });
            self.transition(now);
            return CancelOutcome::Ignored;
        }
        let mut cancellation = order.cancel.clone();
        cancellation.at = now;
        let why = cancellation.describe();
        let mut take_back = Vec::new();
        let mut cancelled_any = false;
        for cluster in &mut self.clusters {
            cancelled_any |= !cluster.phase.is_final();
            match cluster.phase {
                ClusterPhase::Pending | ClusterPhase::Dispatched => {
                    if let (ClusterPhase::Dispatched, Some(sequence)) =
                        (cluster.phase, cluster.task_sequence)
                    {
                        take_back.push((cluster.name.clone(), sequence));
                    }
                    cluster.phase = ClusterPhase::Cancelled;
                    cluster.finished_at = Some(now);
                    cluster.error = Some(format!("{why}, before it started"));
                    cluster.final_text = Some(format!(
                        "This investigation was {why}, before it started: nothing ran in this cluster."
                    ));
                }
                ClusterPhase::Running => {
                    cluster.phase = ClusterPhase::Cancelled;
                    cluster.error = Some(why.clone());
                    cluster.awaiting_report = true;
                    cluster.final_text = Some(format!(
                        "This investigation was {why}, while it ran. Its runner was told to stop \
                         the agent; the partial report replaces this text when it arrives."
                    ));
                }
                _ => {}
            }
        }
        // A cancel is how a session is stopped (`session stop`): the session ends, and the
        // request is `cancelled` only when it cut an investigation short.
        if self.session.as_ref().is_some_and(SessionRecord::is_open) {
            let stopped = match &cancellation.reason {
                Some(reason) => format!("stopped by {}: {reason}", cancellation.by),
                None => format!("stopped by {}", cancellation.by),
            };
            take_back.extend(self.close_session(&stopped, now));
        }
        if cancelled_any || self.session.is_none() {
            self.cancellation = Some(cancellation);
        }
        self.transition(now);
        CancelOutcome::Cancelled(take_back)
    }

    /// Refuses a new request because its engineer already has `active` requests in flight,
    /// as many as the policy's limit or more: it ends `rejected`, and nothing is dispatched.
    pub fn refuse_over_limit(&mut self, active: usize, limit: u32) {
        let engineer = &self.accepted.request.metadata.engineer;
        let requests = if active == 1 { "request" } else { "requests" };
        let reason = format!(
            "the engineer `{engineer}` already has {active} active {requests}; the limit is {limit} (maxConcurrentRequests): push it again under a new id once one of them has finished"
        );
        self.phase = RequestPhase::Rejected;
        self.errors = vec![FieldError {
            field: "metadata.engineer".to_owned(),
            message: format!("too_many_requests: {reason}"),
        }];
        self.error = Some(reason);
    }

    /// Adds a notice from the gateway, once per file and version; `false` when it was
    /// already there.
    pub fn add_notice(&mut self, notice: Notice, now: Timestamp) -> bool {
        if self
            .notices
            .iter()
            .any(|n| n.version == notice.version && n.file == notice.file)
        {
            return false;
        }
        self.notices.push(notice);
        self.transition(now);
        true
    }

    /// The engineer named in the request.
    pub fn engineer(&self) -> &str {
        &self.accepted.request.metadata.engineer
    }

    pub fn id(&self) -> &RequestId {
        &self.accepted.id
    }

    /// Whether the request still needs the dispatcher: not final, or its last snapshot not
    /// yet published.
    pub fn is_active(&self) -> bool {
        !self.phase.is_final()
            || self.published_revision < self.revision
            || self.turns.iter().any(|t| !t.phase.is_final())
            || self.session.as_ref().is_some_and(|s| {
                s.pod_order_due().is_some()
                    || matches!(s.pod_phase, Some(PodPhase::Requested | PodPhase::Releasing))
            })
    }

    /// What is due next at `now`, or `None` when the request waits for a runner (or is done).
    /// Without `timeouts`, nothing expires (see [`crate::engine::Engine::sweep`] for when);
    /// `outside` says which clusters have a live runner and where tasks wait.
    ///
    /// The order matters: the pending snapshot goes out first, so statuses are published in
    /// revision order; expiries come before dispatches, so in sequential mode a cluster that
    /// timed out hands over to the next one in the same sweep.
    pub fn next_step(
        &self,
        now: Timestamp,
        timeouts: Option<Timeouts>,
        outside: &dyn Outside,
    ) -> Option<Step> {
        if self.published_revision < self.revision {
            return Some(Step::PublishStatus);
        }
        if let Some(step) = self.turn_step(now, timeouts, outside) {
            return Some(step);
        }
        if self.phase.is_final() {
            return None;
        }
        if let Some(synthesis) = &self.synthesis {
            return self.synthesis_step(synthesis, now, timeouts, outside);
        }
        if let Some(expiry) = timeouts.and_then(|t| self.expiry(now, t, outside)) {
            return Some(expiry);
        }
        let moved = self.queue_moves(outside);
        if !moved.is_empty() {
            return Some(Step::Requeue(moved));
        }
        let due = self.due_for_dispatch();
        if due.is_empty() {
            None
        } else {
            Some(Step::Dispatch(due))
        }
    }

    /// The first cluster that ran out of time at `now`, if any.
    ///
    /// A dispatched task never runs out of time while its cluster has a live runner: it is
    /// queued behind that runner's other work. Only while no runner of the cluster is live
    /// does the pickup timeout run, counted from the later of the dispatch and the moment the
    /// cluster lost its last live runner (never before this dispatcher began to follow
    /// heartbeats).
    fn expiry(&self, now: Timestamp, timeouts: Timeouts, outside: &dyn Outside) -> Option<Step> {
        let request_timeout = Duration::from_secs(self.accepted.request.spec.investigation.timeout);
        let run_limit = request_timeout.saturating_add(timeouts.run_grace);
        for (index, cluster) in self.clusters.iter().enumerate() {
            let expired = match cluster.phase {
                ClusterPhase::Dispatched => {
                    let Some(error) =
                        unpicked(&cluster.name, cluster.dispatched_at, now, timeouts, outside)
                    else {
                        continue;
                    };
                    (ClusterPhase::Failed, error)
                }
                ClusterPhase::Running if elapsed(cluster.running_since, now) >= Some(run_limit) => {
                    (
                        ClusterPhase::TimedOut,
                        format!(
                            "no result from cluster {} within the request timeout ({}) plus {} \
                         grace after its runner started",
                            cluster.name,
                            human(request_timeout),
                            human(timeouts.run_grace)
                        ),
                    )
                }
                _ => continue,
            };
            return Some(Step::Expire {
                cluster: index,
                phase: expired.0,
                error: expired.1,
            });
        }
        None
    }

    /// What a request whose clusters all ended needs for its synthesis: the task sent, or
    /// the end of its wait.
    fn synthesis_step(
        &self,
        synthesis: &SynthesisState,
        now: Timestamp,
        timeouts: Option<Timeouts>,
        outside: &dyn Outside,
    ) -> Option<Step> {
        if synthesis.phase != SynthesisPhase::Pending {
            return None;
        }
        let bound = Duration::from_secs(self.synthesis_timeout_secs.unwrap_or(0));
        let Some(requested_at) = synthesis.requested_at else {
            // The runner of the first cluster with findings that has a live runner; without
            // any, the first with findings (its task waits like any other).
            let candidates: Vec<usize> = self
                .clusters
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.structured
                        .as_ref()
                        .is_some_and(|r| r.counts().supported > 0)
                })
                .map(|(i, _)| i)
                .collect();
            let live = candidates.iter().copied().find(|&i| {
                matches!(
                    outside.presence(&self.clusters[i].name, now),
                    Presence::Live
                )
            });
            return live.or(candidates.first().copied()).map(Step::Synthesize);
        };
        let timeouts = timeouts?;
        let limit = bound.saturating_add(timeouts.run_grace);
        (elapsed(Some(requested_at), now) >= Some(limit)).then(|| {
            Step::ExpireSynthesis(format!(
                "no synthesis from the runner of {} within {} plus {} grace; the cluster \
                 reports stand on their own",
                synthesis.cluster.as_ref().map_or("?", ClusterName::as_str),
                human(bound),
                human(timeouts.run_grace)
            ))
        })
    }

    /// Whether this request, every cluster of which just ended, gets a cross-cluster
    /// synthesis: several clusters, not cancelled, synthesis on, and at least two clusters
    /// with supported findings to compare.
    pub fn wants_synthesis(&self) -> bool {
        self.synthesis.is_none()
            && self.synthesis_timeout_secs.is_some_and(|secs| secs > 0)
            && self.cancellation.is_none()
            && self.clusters.len() >= 2
            && self.synthesis_input().with_supported_findings() >= 2
    }

    /// The cluster reports the synthesis runs over.
    pub fn synthesis_input(&self) -> SynthesisInput {
        SynthesisInput::new(self.clusters.iter().map(|c| SynthesisCluster {
            name: c.name.clone(),
            phase: c.phase,
            report: c.structured.clone(),
            left_out: false,
        }))
    }

    /// The synthesis task, for the runner of the cluster at `index`.
    pub fn synthesis_task(&self, index: usize) -> Option<Task> {
        let mut task = self.task_for(index)?;
        task.allowed_tools = Vec::new();
        task.prior_findings = Vec::new();
        task.timeout_secs = self.synthesis_timeout_secs.unwrap_or(0).max(1);
        task.synthesis = Some(Box::new(self.synthesis_input()));
        Some(task)
    }

    /// Records that the synthesis task went to `cluster`'s runner (not a transition: the
    /// status already says the synthesis is pending).
    pub fn mark_synthesis_requested(
        &mut self,
        cluster: &ClusterName,
        sequence: u64,
        now: Timestamp,
    ) -> bool {
        match &mut self.synthesis {
            Some(synthesis)
                if synthesis.phase == SynthesisPhase::Pending
                    && synthesis.requested_at.is_none() =>
            {
                synthesis.cluster = Some(cluster.clone());
                synthesis.requested_at = Some(now);
                synthesis.task_sequence = Some(sequence);
                true
            }
            _ => false,
        }
    }

    /// A runner reported the synthesis: the request ends with it (or with its failure noted).
    pub fn on_synthesis(&mut self, result: &SynthesisResult, now: Timestamp) -> Applied {
        let Some(synthesis) = &mut self.synthesis else {
            return Applied::AlreadyFinal;
        };
        if synthesis.phase != SynthesisPhase::Pending {
            return Applied::AlreadyFinal;
        }
        synthesis.cluster = Some(result.cluster.clone());
        synthesis.cost_usd = Some(result.cost_usd);
        synthesis.run = result.run.clone();
        match (&result.synthesis, &result.error) {
            (Some(report), _) => {
                synthesis.phase = SynthesisPhase::Completed;
                synthesis.report = Some(within_synthesis_budget(report.clone()));
            }
            (None, error) => synthesis.fail(error.as_deref().map_or_else(
                || "the synthesis run gave no synthesis".to_owned(),
                |e| truncate(e, 4096),
            )),
        }
        self.transition(now);
        Applied::Changed
    }

    /// Ends the wait for a synthesis that did not come.
    pub fn expire_synthesis(&mut self, error: &str, now: Timestamp) -> bool {
        match &mut self.synthesis {
            Some(synthesis) if synthesis.phase == SynthesisPhase::Pending => {
                synthesis.fail(error.to_owned());
                self.transition(now);
                true
            }
            _ => false,
        }
    }

    /// The dispatched clusters whose place in their queue is not the recorded one.
    fn queue_moves(&self, outside: &dyn Outside) -> Vec<(usize, u32)> {
        self.clusters
            .iter()
            .enumerate()
            .filter(|(_, c)| c.phase == ClusterPhase::Dispatched)
            .filter_map(|(index, c)| {
                let position = outside.position(&c.name, c.task_sequence?);
                (c.queue_position != Some(position)).then_some((index, position))
            })
            .collect()
    }

    /// Records where just-dispatched clusters wait, as part of the transition
    /// [`RequestState::mark_dispatched`] started (no revision of its own): call it right after.
    pub fn place(&mut self, positions: &[(usize, u32)]) {
        self.set_positions(positions);
    }

    /// Dispatched clusters moved in their queues: a new revision when a place changed.
    pub fn requeue(&mut self, positions: &[(usize, u32)], now: Timestamp) -> bool {
        let changed = self.set_positions(positions);
        if changed {
            self.transition(now);
        }
        changed
    }

    fn set_positions(&mut self, positions: &[(usize, u32)]) -> bool {
        let mut changed = false;
        for &(index, position) in positions {
            if let Some(cluster) = self.clusters.get_mut(index)
                && cluster.phase == ClusterPhase::Dispatched
                && cluster.queue_position != Some(position)
            {
                cluster.queue_position = Some(position);
                changed = true;
            }
        }
        changed
    }

    /// The pending clusters whose tasks are to be queued now.
    ///
    /// Sequential mode queues one cluster at a time, in the request's order, once every
    /// cluster before it is final. A cluster that failed or timed out does not stop the
    /// sequence: the next cluster still runs, and its task carries the failure (with whatever
    /// partial findings there were) among its prior findings. The engineer asked for every
    /// cluster's view; a broken hub investigation is itself a finding for the hosted cluster,
    /// and the request still ends `failed`, naming the cluster that failed and why.
    fn due_for_dispatch(&self) -> Vec<usize> {
        match self.mode {
            Some(CoordinationMode::Sequential) => self
                .clusters
                .iter()
                .position(|c| !c.phase.is_final())
                .filter(|&i| self.clusters[i].phase == ClusterPhase::Pending)
                .into_iter()
                .collect(),
            _ => self
                .clusters
                .iter()
                .enumerate()
                .filter(|(_, c)| c.phase == ClusterPhase::Pending)
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// The task for the cluster at `index`, with the findings of the clusters before it in
    /// sequential mode.
    pub fn task_for(&self, index: usize) -> Option<Task> {
        let cluster = self.clusters.get(index)?;
        let request = &self.accepted.request;
        let investigation = &request.spec.investigation;
        let prior_findings = if self.mode == Some(CoordinationMode::Sequential) {
            self.clusters[..index]
                .iter()
                .filter(|c| c.phase.is_final())
                .map(ClusterState::finding)
                .collect()
        } else {
            Vec::new()
        };
        Some(Task {
            request_id: self.accepted.id.clone(),
            results_dir: self.accepted.results_dir.clone(),
            cluster: ClusterRef {
                kind: cluster.kind,
                name: cluster.name.clone(),
            },
            engineer: request.metadata.engineer.clone(),
            issue: request.spec.issue.clone(),
            prompt: investigation.prompt.clone(),
            allowed_tools: investigation.allowed_tools.clone(),
            timeout_secs: investigation.timeout,
            strategy: investigation.strategy.clone(),
            namespace: investigation.namespace.clone(),
            mode: self.mode,
            prior_findings,
            synthesis: None,
            follow_up: None,
            pod: None,
        })
    }

    /// Records that the tasks of these clusters were queued (with their stream sequences).
    pub fn mark_dispatched(&mut self, queued: &[(usize, Option<u64>)], now: Timestamp) -> bool {
        let mut changed = false;
        for &(index, sequence) in queued {
            if let Some(cluster) = self.clusters.get_mut(index)
                && cluster.phase == ClusterPhase::Pending
            {
                cluster.phase = ClusterPhase::Dispatched;
                cluster.dispatched_at = Some(now);
                cluster.task_sequence = sequence;
                changed = true;
            }
        }
        if changed {
            self.transition(now);
        }
        changed
    }

    /// A runner started (or restarted) a cluster's task; `attempt` is the run's number as
    /// the runner saw it (JetStream's delivery count), 0 from a runner that does not say.
    pub fn on_started(
        &mut self,
        cluster: &ClusterName,
        runner: &str,
        at: Timestamp,
        attempt: u32,
        now: Timestamp,
    ) -> Applied {
        let Some(state) = self.clusters.iter_mut().find(|c| c.name == *cluster) else {
            return Applied::UnknownCluster;
        };
        if state.phase.is_final() {
            return Applied::AlreadyFinal;
        }
        if state.phase == ClusterPhase::Running
            && state.runner.as_deref() == Some(runner)
            && state.started_at == Some(at)
        {
            return Applied::Unchanged;
        }
        // A late `started` of an attempt that a later one already superseded changes nothing.
        if attempt != 0 && attempt < state.attempts {
            return Applied::Unchanged;
        }
        if state.phase == ClusterPhase::Running {
            state.interrupted = Some(crate::attempts::interrupted(state));
        }
        // A task that is still `pending` here was queued by a dispatcher that crashed before
        // it recorded the dispatch; the runner has it, so it counts as started all the same.
        state.phase = ClusterPhase::Running;
        state.attempts = crate::attempts::next(state.attempts, attempt);
        state.runner = Some(runner.to_owned());
        state.started_at = Some(at);
        state.running_since = Some(now);
        self.transition(now);
        Applied::Changed
    }

    /// A runner reported how far a running cluster's agent got. The progress is kept, and it
    /// makes a new snapshot only when the request had none for progress within `every`: a
    /// request's progress is shown at most once per `every`, every cluster's together (a
    /// transition shows the latest at once).
    pub fn on_progress(
        &mut self,
        cluster: &ClusterName,
        (attempt, turn): (u32, u32),
        progress: &Progress,
        now: Timestamp,
        every: Duration,
    ) -> Applied {
        if turn > 0 {
            return self.on_turn_progress(cluster, turn, progress, now, every);
        }
        let Some(state) = self.clusters.iter_mut().find(|c| c.name == *cluster) else {
            return Applied::UnknownCluster;
        };
        if state.phase.is_final() {
            return Applied::AlreadyFinal;
        }
        // Only the run the dispatcher knows as running reports progress: a late report of
        // an earlier attempt, or one that overtook its `started`, changes nothing.
        let current = attempt == 0 || attempt == state.attempts;
        if state.phase != ClusterPhase::Running
            || !current
            || state.progress.as_ref() == Some(progress)
        {
            return Applied::Unchanged;
        }
        state.progress = Some(progress.clone());
        self.show_progress(now, every);
        Applied::Changed
    }

    /// A runner reported how far a follow-up turn's agent got.
    fn on_turn_progress(
        &mut self,
        cluster: &ClusterName,
        turn: u32,
        progress: &Progress,
        now: Timestamp,
        every: Duration,
    ) -> Applied {
        let Some(state) = self.turn_mut(cluster, turn) else {
            return Applied::UnknownCluster;
        };
        if state.phase.is_final() {
            return Applied::AlreadyFinal;
        }
        if state.phase != ClusterPhase::Running || state.progress.as_ref() == Some(progress) {
            return Applied::Unchanged;
        }
        state.progress = Some(progress.clone());
        self.show_progress(now, every);
        Applied::Changed
    }

    /// Shows the progress applied in a new snapshot, at most once per `every` per request.
    fn show_progress(&mut self, now: Timestamp, every: Duration) {
        let due = self
            .progress_shown_at
            .is_none_or(|shown| now - shown >= every);
        if due {
            self.progress_shown_at = Some(now);
            self.revision += 1;
            self.updated_at = now;
        }
    }

    /// A runner reported a cluster's result.
    pub fn on_finished(&mut self, result: &TaskResult, now: Timestamp) -> Applied {
        let budget = REPORT_BUDGET_BYTES / self.clusters.len().max(1);
        let Some(state) = self.clusters.iter_mut().find(|c| c.name == result.cluster) else {
            return Applied::UnknownCluster;
        };
        if state.awaiting_report {
            state.take_partial_report(result, budget);
            self.transition(now);
            return Applied::Changed;
        }
        if state.phase.is_final() {
            return Applied::AlreadyFinal;
        }
        let phase = result.outcome.phase();
        state.phase = phase;
        state.started_at = Some(result.started_at);
        state.finished_at = Some(result.finished_at);
        state.cost_usd = Some(result.cost_usd);
        state.num_turns = Some(result.num_turns);
        // The refused calls and the error share the cluster's budget with its report, so a
        // request at the cluster limit still fits one message.
        let (kept, dropped) = within_budget(&result.permission_denials, budget / 4);
        state.permission_denials = kept;
        state.permission_denials_dropped = dropped;
        state.error = match (&result.error, phase) {
            (Some(error), _) => Some(truncate(error, budget / 4)),
            (None, ClusterPhase::Completed) => None,
            (None, phase) => Some(format!("ended {phase} without giving a reason")),
        };
        state.final_text = Some(truncate(&result.final_text, budget));
        // The structured answer repeats the final text in another form; one that does not fit
        // the budget is left out, and the (cut) final text still carries the answer.
        state.structured =
            result.report.as_deref().cloned().filter(|report| {
                serde_json::to_vec(report).map_or(0, |bytes| bytes.len()) <= budget
            });
        state.run = result.run.clone();
        self.transition(now);
        Applied::Changed
    }

    /// Ends a cluster that ran out of time, with the dispatcher's explanation as its report.
    pub fn expire(
        &mut self,
        index: usize,
        phase: ClusterPhase,
        error: &str,
        now: Timestamp,
    ) -> bool {
        let Some(state) = self.clusters.get_mut(index) else {
            return false;
        };
        if state.phase.is_final() {
            return false;
        }
        state.phase = phase;
        state.finished_at = Some(now);
        state.error = Some(error.to_owned());
        state.final_text = Some(format!(
            "The dispatcher ended this investigation as {phase}: {error}. No report was \
             received from the cluster's runner."
        ));
        self.transition(now);
        true
    }

    /// Records that the snapshot of `revision` was published.
    pub fn mark_published(&mut self, revision: u64) -> bool {
        if self.published_revision >= revision {
            return false;
        }
        self.published_revision = revision;
        true
    }

    /// A new revision: bumps the counter and derives the request's phase from its clusters.
    fn transition(&mut self, now: Timestamp) {
        self.revision += 1;
        self.updated_at = now;
        // Only a waiting task has a place in a queue.
        for cluster in &mut self.clusters {
            if cluster.phase != ClusterPhase::Dispatched {
                cluster.queue_position = None;
            }
        }
        if self.phase.is_final() || self.clusters.is_empty() {
            return;
        }
        if self.clusters.iter().all(|c| c.phase.is_final()) {
            // An open session ends only when it is stopped or its time is up.
            if self.session.as_ref().is_some_and(SessionRecord::is_open) {
                self.phase = RequestPhase::Running;
                return;
            }
            if self.wants_synthesis() {
                self.synthesis = Some(SynthesisState::pending());
            }
            if let Some(synthesis) = &mut self.synthesis
                && synthesis.phase == SynthesisPhase::Pending
            {
                if let Some(cancellation) = &self.cancellation {
                    synthesis.fail(format!(
                        "the request was {} before its synthesis came",
                        cancellation.describe()
                    ));
                } else {
                    // The clusters' reports are out; the request ends with its synthesis.
                    self.phase = RequestPhase::Running;
                    return;
                }
            }
            self.finish();
        } else if self
            .clusters
            .iter()
            .any(|c| c.phase == ClusterPhase::Running || c.phase.is_final())
        {
            self.phase = RequestPhase::Running;
        } else if self
            .clusters
            .iter()
            .any(|c| c.phase == ClusterPhase::Dispatched)
        {
            self.phase = RequestPhase::Dispatched;
        }
    }

    /// Every cluster is final: the request ends, with a reason unless all completed.
    fn finish(&mut self) {
        if let Some(cancellation) = &self.cancellation {
            self.phase = RequestPhase::Cancelled;
            self.error = Some(format!(
                "{} at {}",
                cancellation.describe(),
                rfc3339(cancellation.at)
            ));
            return;
        }
        let any = |phase| self.clusters.iter().any(|c| c.phase == phase);
        let (phase, cluster_phase) = if self
            .clusters
            .iter()
            .all(|c| c.phase == ClusterPhase::Completed)
        {
            (RequestPhase::Completed, ClusterPhase::Completed)
        } else if any(ClusterPhase::Failed) {
            (RequestPhase::Failed, ClusterPhase::Failed)
        } else if any(ClusterPhase::TimedOut) {
            (RequestPhase::TimedOut, ClusterPhase::TimedOut)
        } else {
            (RequestPhase::Cancelled, ClusterPhase::Cancelled)
        };
        self.phase = phase;
        if phase == RequestPhase::Completed {
            self.error = None;
            return;
        }
        let reasons: Vec<String> = self
            .clusters
            .iter()
            .filter(|c| c.phase != ClusterPhase::Completed)
            .map(|c| {
                let reason = c
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("ended {} without giving a reason", c.phase));
                if c.phase == cluster_phase {
                    format!("{}: {reason}", c.name)
                } else {
                    format!("{} ({}): {reason}", c.name, c.phase)
                }
            })
            .collect();
        self.error = Some(reasons.join("; "));
    }

    /// What every run of the request cost so far: its clusters' and its turns'.
    fn session_cost(&self) -> f64 {
        warroom_proto::total_cost(
            self.clusters
                .iter()
                .filter_map(|c| c.cost_usd)
                .chain(self.turns.iter().filter_map(|t| t.cost_usd)),
        )
    }

    /// The session's line in `status.json`: its term and what it cost so far.
    fn session_status(&self, session: &SessionRecord) -> SessionStatus {
        let cost = self.session_cost();
        SessionStatus {
            state: if session.is_open() {
                SessionState::Open
            } else {
                SessionState::Ended
            },
            duration_secs: session.duration_secs,
            expires_at: session.expires_at,
            ended_at: session.ended_at,
            ended: session.ended.clone(),
            turns: u32::try_from(
                self.turns
                    .iter()
                    .filter(|t| t.phase == ClusterPhase::Completed)
                    .count(),
            )
            .unwrap_or(u32::MAX),
            cost_usd: cost,
            pod: session.pod.clone(),
            pod_phase: session.pod_phase,
            pod_error: session.pod_error.clone(),
        }
    }

    /// The full snapshot published for the current revision.
    pub fn snapshot(&self) -> StatusUpdate {
        // A request the dispatcher refused never reached its clusters.
        let refused = self.phase == RequestPhase::Rejected;
        let clusters = self
            .clusters
            .iter()
            .filter(|_| !refused)
            .map(|c| (c.name.clone(), c.status()))
            .collect();
        let reports = self
            .clusters
            .iter()
            .filter_map(|c| {
                c.final_text.as_ref().map(|text| {
                    (
                        c.name.clone(),
                        ClusterReport {
                            final_text: text.clone(),
                            permission_denials: c.permission_denials.clone(),
                            structured: c.structured.clone(),
                        },
                    )
                })
            })
            .collect();
        StatusUpdate {
            status: RequestStatus {
                id: self.accepted.id.clone(),
                phase: self.phase,
                clusters,
                error: self.error.clone(),
                errors: self.errors.clone(),
                mode: self.mode,
                engineer: Some(self.accepted.request.metadata.engineer.clone()),
                results_dir: self.accepted.results_dir.clone(),
                commit: Some(self.accepted.commit.clone()),
                revision: self.revision,
                updated_at: self.updated_at,
                verification: self.accepted.verification.clone(),
                notices: self.notices.clone(),
                cancelled: self.cancellation.clone(),
                synthesis: self.synthesis.as_ref().map(SynthesisState::status),
                session: self.session.as_ref().map(|s| self.session_status(s)),
                turns: self.turns.iter().map(TurnState::status).collect(),
            },
            request: Some(RequestSummary::of(&self.accepted.request)),
            reports,
            synthesis: self.synthesis.as_ref().and_then(|s| s.report.clone()),
        }
    }
}

impl ClusterState {
    fn pending(target: &ClusterRef) -> Self {
        ClusterState {
            name: target.name.clone(),
            kind: target.kind,
            phase: ClusterPhase::Pending,
            attempts: 0,
            runner: None,
            dispatched_at: None,
            task_sequence: None,
            running_since: None,
            started_at: None,
            finished_at: None,
            cost_usd: None,
            num_turns: None,
            permission_denials: Vec::new(),
            permission_denials_dropped: 0,
            error: None,
            final_text: None,
            structured: None,
            run: None,
            queue_position: None,
            interrupted: None,
            progress: None,
            recorded: None,
            awaiting_report: false,
        }
    }

    /// The partial report of a run that was cancelled while it ran: what the agent found
    /// and spent so far. The cluster stays `cancelled`, with the cancel as its error.
    fn take_partial_report(&mut self, result: &TaskResult, budget: usize) {
        self.awaiting_report = false;
        self.started_at = Some(result.started_at);
        self.finished_at = Some(result.finished_at);
        self.cost_usd = Some(result.cost_usd);
        self.num_turns = Some(result.num_turns);
        let (kept, dropped) = within_budget(&result.permission_denials, budget / 4);
        self.permission_denials = kept;
        self.permission_denials_dropped = dropped;
        let why = self.error.clone().unwrap_or_default();
        let text = if result.final_text.trim().is_empty() {
            format!("This investigation was {why}, while it ran; the agent had no findings yet.")
        } else {
            format!(
                "> This investigation was {why}, while it ran: what follows is partial.\n\n{}",
                result.final_text
            )
        };
        self.final_text = Some(truncate(&text, budget));
    }

    /// This cluster's line in `status.json`.
    fn status(&self) -> ClusterStatus {
        let duration_secs = match (self.started_at, self.finished_at) {
            (Some(start), Some(end)) => Some((end - start).as_seconds_f64().max(0.0)),
            _ => None,
        };
        ClusterStatus {
            kind: self.kind,
            phase: self.phase,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_secs,
            cost_usd: self.cost_usd,
            num_turns: self.num_turns,
            run: self.run.clone(),
            runbook: self.structured.as_ref().and_then(|r| r.runbook.clone()),
            findings: self.structured.as_ref().map(|r| r.counts()),
            answer: match (self.phase, &self.structured) {
                (_, Some(_)) => Some(AnswerForm::Structured),
                (ClusterPhase::Completed, None) => Some(AnswerForm::Unstructured),
                _ => None,
            },
            permission_denials: u32::try_from(self.permission_denials.len())
                .unwrap_or(u32::MAX)
                .saturating_add(self.permission_denials_dropped),
            error: self.error.clone(),
            report: self
                .final_text
                .as_ref()
                .map(|_| format!("{}.md", self.name)),
            queued: match (self.phase, self.queue_position, self.dispatched_at) {
                (ClusterPhase::Dispatched, Some(position), Some(since)) => {
                    Some(Queued { position, since })
                }
                _ => None,
            },
            attempts: self.attempts,
            interrupted: self.interrupted.clone(),
            progress: self
                .progress
                .clone()
                .filter(|_| self.phase == ClusterPhase::Running),
        }
    }

    /// What this (final) cluster hands to the next one in sequential mode.
    fn finding(&self) -> Finding {
        let text = self.final_text.clone().unwrap_or_default();
        let report = match (&self.error, self.phase) {
            (_, ClusterPhase::Completed) | (None, _) => text,
            (Some(error), phase) if text.trim().is_empty() => {
                format!("This investigation ended {phase} without findings: {error}")
            }
            (Some(error), phase) => {
                format!("{text}\n\n(This investigation ended {phase}: {error})")
            }
        };
        Finding {
            cluster: self.name.clone(),
            phase: self.phase,
            report,
        }
    }
}

/// Why a task of `cluster` queued at `dispatched_at` fails at `now`: its cluster has had no
/// live runner for the pickup timeout (counted from the later of the dispatch and the moment
/// the last runner went); `None` while it may still wait.
fn unpicked(
    cluster: &ClusterName,
    dispatched_at: Option<Timestamp>,
    now: Timestamp,
    timeouts: Timeouts,
    outside: &dyn Outside,
) -> Option<String> {
    let Presence::Absent {
        last_heartbeat,
        since,
    } = outside.presence(cluster, now)
    else {
        return None;
    };
    let without_runner = dispatched_at.map(|at| at.max(since));
    (elapsed(without_runner, now) >= Some(timeouts.pickup))
        .then(|| no_live_runner(cluster, last_heartbeat, since, timeouts.pickup))
}

/// Why a waiting task failed: no runner of its cluster is live, since when, and how long the
/// task waited.
fn no_live_runner(
    cluster: &ClusterName,
    last_heartbeat: Option<Timestamp>,
    since: Timestamp,
    waited: Duration,
) -> String {
    match last_heartbeat {
        Some(last) => format!(
            "no runner of cluster {cluster} has sent a heartbeat since {}; the task waited {} \
             without a live runner",
            rfc3339(last),
            human(waited)
        ),
        None => format!(
            "no runner of cluster {cluster} has ever sent a heartbeat (none since the \
             dispatcher started following them at {}); the task waited {} without a live \
             runner",
            rfc3339(since),
            human(waited)
        ),
    }
}

/// `report`, its last claims left out while it is over [`SYNTHESIS_BUDGET_BYTES`].
fn within_synthesis_budget(mut report: CheckedSynthesis) -> CheckedSynthesis {
    let size = |r: &CheckedSynthesis| serde_json::to_vec(r).map_or(usize::MAX, |b| b.len());
    while size(&report) > SYNTHESIS_BUDGET_BYTES && report.claims.pop().is_some() {}
    if size(&report) > SYNTHESIS_BUDGET_BYTES {
        report.summary = truncate(&report.summary, SYNTHESIS_BUDGET_BYTES / 2);
    }
    report
}

/// `2026-11-24T10:00:00Z`: to the second, in UTC.
fn rfc3339(at: Timestamp) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(format)
        .unwrap_or_else(|_| at.to_string())
}

/// How long ago `since` was at `now`; `None` without a start (never expires).
fn elapsed(since: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let since = since?;
    Some(Duration::try_from(now - since).unwrap_or(Duration::ZERO))
}

/// The first of `denials` whose JSON fits in `limit` bytes, and how many were left out.
fn within_budget(denials: &[Denial], limit: usize) -> (Vec<Denial>, u32) {
    let mut used: usize = 0;
    let kept: Vec<Denial> = denials
        .iter()
        .take_while(|denial| {
            used = used
                .saturating_add(serde_json::to_vec(denial).map_or(usize::MAX, |json| json.len()));
            used <= limit
        })
        .cloned()
        .collect();
    let dropped = u32::try_from(denials.len() - kept.len()).unwrap_or(u32::MAX);
    (kept, dropped)
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `text` cut to at most about `limit` bytes (on a character boundary), with a note saying so.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n\n[The dispatcher cut this report here: {} more bytes did not fit the status \
         message.]",
        &text[..cut],
        text.len() - cut
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use warroom_proto::{
        Coordination, Investigation, Issue, Metadata, Outcome, RequestSpec, ResultsDir, Tool,
        TroubleshootingRequest,
    };

    const TIMEOUTS: Timeouts = Timeouts {
        pickup: Duration::from_secs(600),
        run_grace: Duration::from_secs(120),
        progress: Duration::from_secs(30),
        synthesis: Some(Duration::from_secs(300)),
    };

    fn at(secs: i64) -> Timestamp {
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000 + secs)
    }

    fn name(cluster: &str) -> ClusterName {
        ClusterName::new(cluster).expect("valid cluster name")
    }

    fn request(clusters: &[&str], mode: Option<CoordinationMode>) -> RequestState {
        request_with_id("r1", clusters, mode)
    }

    /// A request `id` for `clusters` (one without a mode), published and not dispatched.
    pub(crate) fn request_for(id: &str, clusters: &[&str]) -> RequestState {
        let mode = (clusters.len() > 1).then_some(CoordinationMode::Parallel);
        request_with_id(id, clusters, mode)
    }

    fn request_with_id(
        id: &str,
        clusters: &[&str],
        mode: Option<CoordinationMode>,
    ) -> RequestState {
        let refs: Vec<ClusterRef> = clusters
            .iter()
            .map(|cluster| ClusterRef {
                kind: ClusterType::Hosted,
                name: name(cluster),
            })
            .collect();
        let (target_cluster, target_clusters) = match mode {
            None => (refs.first().cloned(), None),
            Some(_) => (None, Some(refs)),
        };
        let accepted = AcceptedRequest {
            id: RequestId::new(id).expect("valid id"),
            commit: "abc".to_owned(),
            results_dir: ResultsDir::default_for(&RequestId::new(id).expect("valid id")),
            request: TroubleshootingRequest {
                api_version: warroom_proto::API_VERSION.to_owned(),
                kind: warroom_proto::KIND_TROUBLESHOOTING.to_owned(),
                metadata: Metadata {
                    name: "api-timeout".to_owned(),
                    timestamp: at(0),
                    engineer: "ada".to_owned(),
                },
                spec: RequestSpec {
                    target_cluster,
                    target_clusters,
                    coordination: mode.map(|mode| Coordination { mode }),
                    issue: Issue {
                        category: "api-timeout".to_owned(),
                        description: "the API times out".to_owned(),
                        affected_resources: Vec::new(),
                    },
                    investigation: Investigation {
                        prompt: "find out why".to_owned(),
                        allowed_tools: vec![Tool::Bash],
                        timeout: 300,
                        strategy: None,
                        namespace: None,
                    },
                    output: None,
                },
            },
            verification: None,
            max_active_requests: None,
            session: None,
        };
        let mut state = RequestState::new(accepted, at(0));
        state.published_revision = state.revision;
        state
    }

    fn result(cluster: &str, outcome: Outcome, error: Option<&str>, text: &str) -> TaskResult {
        TaskResult {
            report: None,
            run: None,
            request_id: RequestId::new("r1").expect("valid id"),
            cluster: name(cluster),
            outcome,
            final_text: text.to_owned(),
            error: error.map(str::to_owned),
            cost_usd: 0.25,
            num_turns: 3,
            permission_denials: Vec::new(),
            started_at: at(10),
            finished_at: at(70),
            attempt: 1,
        }
    }

    /// The world around a request, as the rules see it: whether every cluster has a live
    /// runner (else none ever sent a heartbeat, or the last came at `last_heartbeat`), and
    /// how many tasks wait ahead of each of this request's.
    struct World {
        live: bool,
        last_heartbeat: Option<Timestamp>,
        /// Since when no runner is live, in seconds after `at(0)` (when the dispatcher
        /// started).
        since: i64,
        ahead: u32,
    }

    impl Outside for World {
        fn presence(&self, _: &ClusterName, _: Timestamp) -> Presence {
            if self.live {
                Presence::Live
            } else {
                Presence::Absent {
                    last_heartbeat: self.last_heartbeat,
                    since: at(self.since),
                }
            }
        }

        fn position(&self, _: &ClusterName, _: u64) -> u32 {
            self.ahead + 1
        }
    }

    /// No runner anywhere, since the dispatcher started at `at(0)`.
    const NOBODY: World = World {
        live: false,
        last_heartbeat: None,
        since: 0,
        ahead: 0,
    };

    /// Every cluster has a live runner.
    const LIVE: World = World {
        live: true,
        last_heartbeat: None,
        since: 0,
        ahead: 0,
    };

    /// Applies `next_step` the way the engine does, without I/O, until nothing is due; no
    /// runner is live.
    fn settle(state: &mut RequestState, now: Timestamp) -> Vec<Step> {
        settle_in(state, now, &NOBODY)
    }

    /// [`settle`] in `world`.
    fn settle_in(state: &mut RequestState, now: Timestamp, world: &World) -> Vec<Step> {
        let mut steps = Vec::new();
        while let Some(step) = state.next_step(now, Some(TIMEOUTS), world) {
            match &step {
                Step::PublishStatus => {
                    state.mark_published(state.revision);
                }
                Step::Expire {
                    cluster,
                    phase,
                    error,
                } => {
                    state.expire(*cluster, *phase, error, now);
                }
                Step::Dispatch(due) => {
                    let queued: Vec<_> = due.iter().map(|&i| (i, Some(7))).collect();
                    state.mark_dispatched(&queued, now);
                    let placed: Vec<_> = due.iter().map(|&i| (i, world.ahead + 1)).collect();
                    state.place(&placed);
                }
                Step::Requeue(moved) => {
                    state.requeue(moved, now);
                }
                Step::Synthesize(index) => {
                    let cluster = state.clusters[*index].name.clone();
                    state.mark_synthesis_requested(&cluster, 11, now);
                }
                Step::DispatchTurn(index) => {
                    state.mark_turn_dispatched(*index, 13, now);
                }
                Step::ExpireTurn { turn, phase, error } => {
                    state.expire_turn(*turn, *phase, error, now);
                }
                Step::EndSession(why) => {
                    state.end_session(why, now);
                }
                Step::Pod(order) => {
                    state.mark_pod_ordered(*order, now);
                }
                Step::ExpireSynthesis(error) => {
                    state.expire_synthesis(error, now);
                }
            }
            steps.push(step);
        }
        steps
    }

    #[test]
    fn an_accepted_request_with_nothing_dispatched_resumes_with_its_dispatch() {
        let mut state = request(&["hub"], None);
        assert_eq!(state.phase, RequestPhase::Accepted);
        assert_eq!(
            state.next_step(at(1), Some(TIMEOUTS), &NOBODY),
            Some(Step::Dispatch(vec![0]))
        );
        settle(&mut state, at(1));
        assert_eq!(state.phase, RequestPhase::Dispatched);
        assert_eq!(state.revision, 2);
        assert_eq!(state.published_revision, 2);
        // Dispatching again is a no-op: the stored state says it is done.
        assert!(!state.mark_dispatched(&[(0, Some(9))], at(2)));
        assert_eq!(state.clusters[0].task_sequence, Some(7));
    }

    #[test]
    fn an_unpublished_revision_is_published_before_anything_else() {
        let mut state = request(&["hub"], None);
        state.published_revision = 0;
        assert_eq!(
            state.next_step(at(1), Some(TIMEOUTS), &NOBODY),
            Some(Step::PublishStatus)
        );
        assert!(state.is_active());
    }

    #[test]
    fn parallel_dispatches_every_cluster_and_fails_naming_the_failed_one() {
        let mut state = request(&["hub", "prod-1"], Some(CoordinationMode::Parallel));
        settle(&mut state, at(1));
        assert!(
            state
                .clusters
                .iter()
                .all(|c| c.phase == ClusterPhase::Dispatched)
        );
        assert_eq!(
            state.on_started(&name("hub"), "r-0", at(10), 0, at(10)),
            Applied::Changed
        );
        assert_eq!(state.phase, RequestPhase::Running);
        let done = result("hub", Outcome::Completed, None, "all good");
        assert_eq!(state.on_finished(&done, at(70)), Applied::Changed);
        assert_eq!(state.phase, RequestPhase::Running);
        let failed = result(
            "prod-1",
            Outcome::Failed,
            Some("reached the turn limit (30 turns)"),
            "partial",
        );
        assert_eq!(state.on_finished(&failed, at(80)), Applied::Changed);
        assert_eq!(state.phase, RequestPhase::Failed);
        assert_eq!(
            state.error.as_deref(),
            Some("prod-1: reached the turn limit (30 turns)")
        );
        // A late or repeated result changes nothing.
        assert_eq!(state.on_finished(&done, at(90)), Applied::AlreadyFinal);
        assert_eq!(
            state.on_started(&name("nope"), "r-0", at(10), 0, at(90)),
            Applied::UnknownCluster
        );
        let snapshot = state.snapshot();
        assert_eq!(snapshot.reports["hub"].final_text, "all good");
        assert_eq!(snapshot.status.clusters["hub"].duration_secs, Some(60.0));
        assert_eq!(
            snapshot.status.clusters["prod-1"].report.as_deref(),
            Some("prod-1.md")
        );
    }

    #[test]
    fn sequential_hands_findings_on_and_continues_after_a_failure() {
        let mut state = request(&["hub", "a", "b"], Some(CoordinationMode::Sequential));
        settle(&mut state, at(1));
        let phases: Vec<_> = state.clusters.iter().map(|c| c.phase).collect();
        assert_eq!(
            phases,
            [
                ClusterPhase::Dispatched,
                ClusterPhase::Pending,
                ClusterPhase::Pending
            ]
        );
        state.on_finished(
            &result("hub", Outcome::Failed, Some("API error 500"), ""),
            at(70),
        );
        assert_eq!(
            settle(&mut state, at(70)),
            [
                Step::PublishStatus,
                Step::Dispatch(vec![1]),
                Step::PublishStatus
            ]
        );
        assert_eq!(state.clusters[1].phase, ClusterPhase::Dispatched);
        let task = state.task_for(1).expect("task for a");
        assert_eq!(task.prior_findings.len(), 1);
        assert_eq!(task.prior_findings[0].phase, ClusterPhase::Failed);
        assert!(task.prior_findings[0].report.contains("API error 500"));
        state.on_finished(
            &result("a", Outcome::Completed, None, "etcd is slow"),
            at(80),
        );
        settle(&mut state, at(80));
        let task = state.task_for(2).expect("task for b");
        let clusters: Vec<_> = task
            .prior_findings
            .iter()
            .map(|f| f.cluster.as_str())
            .collect();
        assert_eq!(clusters, ["hub", "a"]);
        assert_eq!(task.prior_findings[1].report, "etcd is slow");
        state.on_finished(&result("b", Outcome::Completed, None, "ok"), at(90));
        assert_eq!(state.phase, RequestPhase::Failed);
        assert_eq!(state.error.as_deref(), Some("hub: API error 500"));
    }

    #[test]
    fn progress_is_shown_at_most_once_per_interval_and_only_while_running() {
        let every = Duration::from_secs(30);
        let progress = |turns: u32| Progress {
            at: at(i64::from(turns)),
            turns,
            tool_calls: turns * 2,
            refused: 0,
            cost_usd: Some(0.01),
            last_tool_calls: vec![format!("oc get pods # {turns}")],
        };
        let mut state = request(&["hub", "a"], Some(CoordinationMode::Parallel));
        settle(&mut state, at(0));
        // Before its `started`, a cluster's progress changes nothing.
        assert_eq!(
            state.on_progress(&name("a"), (1, 0), &progress(1), at(2), every),
            Applied::Unchanged
        );
        state.on_started(&name("a"), "r-0", at(5), 1, at(5));
        state.on_started(&name("hub"), "r-0", at(5), 1, at(5));
        let revision = state.revision;
        assert_eq!(
            state.on_progress(&name("a"), (1, 0), &progress(2), at(10), every),
            Applied::Changed
        );
        assert_eq!(
            state.revision,
            revision + 1,
            "the first progress is shown at once"
        );
        // The other cluster's progress 10 s later is kept, but makes no snapshot of its own…
        assert_eq!(
            state.on_progress(&name("hub"), (1, 0), &progress(3), at(20), every),
            Applied::Changed
        );
        assert_eq!(state.revision, revision + 1);
        // …the next one after the interval does, and shows both.
        state.on_progress(&name("a"), (1, 0), &progress(4), at(40), every);
        assert_eq!(state.revision, revision + 2);
        let update = state.snapshot();
        let shown: Vec<u32> = update
            .status
            .clusters
            .values()
            .map(|c| c.progress.as_ref().map_or(0, |p| p.turns))
            .collect();
        assert_eq!(shown, [4, 3], "both clusters' latest progress, a then hub");
        // A report of an earlier attempt is ignored; a finished cluster shows none.
        assert_eq!(
            state.on_progress(&name("a"), (7, 0), &progress(9), at(90), every),
            Applied::Unchanged
        );
        state.on_finished(&result("a", Outcome::Completed, None, "done"), at(95));
        let update = state.snapshot();
        assert!(update.status.clusters[&name("a")].progress.is_none());
        assert_eq!(
            state.on_progress(&name("a"), (1, 0), &progress(10), at(99), every),
            Applied::AlreadyFinal
        );
    }

    #[test]
    fn a_running_turn_shows_its_progress_until_it_ends() {
        let every = Duration::from_secs(30);
        let progress = |calls: u32| Progress {
            at: at(i64::from(calls)),
            turns: 1,
            tool_calls: calls,
            refused: 0,
            cost_usd: Some(0.02),
            last_tool_calls: vec![format!("Bash: oc get pods # {calls}")],
        };
        let mut state = session(false);
        state.on_follow_up(&ask(1, None, "v1"), at(5));
        settle_in(&mut state, at(6), &LIVE);
        // Not running yet: nothing to show.
        assert_eq!(
            state.on_progress(&name("hub"), (1, 1), &progress(1), at(7), every),
            Applied::Unchanged
        );
        state.on_turn_started(&name("hub"), 1, "r-0", at(8), at(8));
        let revision = state.revision;
        assert_eq!(
            state.on_progress(&name("hub"), (1, 1), &progress(2), at(9), every),
            Applied::Changed
        );
        assert_eq!(state.revision, revision + 1);
        let shown = state.snapshot().status.turns[0].progress.clone();
        assert_eq!(shown.map(|p| p.tool_calls), Some(2));
        // The investigation's cluster is final: a report without the turn is not the turn's.
        assert_eq!(
            state.on_progress(&name("hub"), (1, 0), &progress(3), at(10), every),
            Applied::AlreadyFinal
        );
        // Another turn, or another cluster, is not this one.
        assert_eq!(
            state.on_progress(&name("hub"), (1, 2), &progress(3), at(10), every),
            Applied::UnknownCluster
        );
        state.on_turn_finished(&turn_result("hub", 1, Outcome::Completed), at(30));
        assert_eq!(state.snapshot().status.turns[0].progress, None);
        assert_eq!(
            state.on_progress(&name("hub"), (1, 1), &progress(4), at(31), every),
            Applied::AlreadyFinal
        );
    }

    #[test]
    fn pickup_and_run_timeouts_end_clusters_with_reasons() {
        let mut state = request(&["hub", "a"], Some(CoordinationMode::Parallel));
        settle(&mut state, at(0));
        state.on_started(&name("a"), "r-0", at(5), 0, at(5));
        assert_eq!(settle(&mut state, at(424)), [Step::PublishStatus]);
        // 300 s request timeout + 120 s grace, counted from when the start was learned.
        settle(&mut state, at(5 + 420));
        assert_eq!(state.clusters[1].phase, ClusterPhase::TimedOut);
        assert_eq!(state.clusters[0].phase, ClusterPhase::Dispatched);
        assert_eq!(settle(&mut state, at(599)), []);
        settle(&mut state, at(600));
        assert_eq!(state.clusters[0].phase, ClusterPhase::Failed);
        assert_eq!(
            state.clusters[0].error.as_deref(),
            Some(
                "no runner of cluster hub has ever sent a heartbeat (none since the dispatcher \
                 started following them at 2027-01-15T08:00:00Z); the task waited 10m without \
                 a live runner"
            )
        );
        assert_eq!(state.phase, RequestPhase::Failed);
        let error = state.error.clone().unwrap_or_default();
        assert!(
            error.starts_with("hub: no runner of cluster hub"),
            "{error}"
        );
        assert!(
            error.contains("a (timed_out): no result from cluster a within the request timeout (5m) plus 2m grace"),
            "{error}"
        );
        assert!(!state.is_active());
        assert!(
            state.snapshot().reports["hub"]
                .final_text
                .contains("no runner")
        );
    }

    #[test]
    fn a_task_waits_as_long_as_its_cluster_has_a_live_runner() {
        let mut state = request(&["hub"], None);
        settle_in(&mut state, at(0), &LIVE);
        // A day later the runner is still busy with other work: the task still waits.
        assert_eq!(settle_in(&mut state, at(86_400), &LIVE), []);
        assert_eq!(state.clusters[0].phase, ClusterPhase::Dispatched);
        assert_eq!(state.phase, RequestPhase::Dispatched);
        let status = state.snapshot().status;
        assert_eq!(
            status.clusters["hub"].queued,
            Some(Queued {
                position: 1,
                since: at(0)
            })
        );
    }

    #[test]
    fn without_a_live_runner_a_task_fails_after_the_pickup_timeout_from_the_last_heartbeat() {
        let mut state = request(&["hub"], None);
        settle_in(&mut state, at(0), &LIVE);
        // The runner's last heartbeat came 5 minutes after the dispatch; 30 s later it had
        // expired, and the 10 minutes without a runner count from then.
        let gone = World {
            live: false,
            last_heartbeat: Some(at(300)),
            since: 330,
            ..NOBODY
        };
        assert_eq!(settle_in(&mut state, at(929), &gone), []);
        settle_in(&mut state, at(930), &gone);
        assert_eq!(state.clusters[0].phase, ClusterPhase::Failed);
        assert_eq!(state.phase, RequestPhase::Failed);
        assert_eq!(
            state.clusters[0].error.as_deref(),
            Some(
                "no runner of cluster hub has sent a heartbeat since 2027-01-15T08:05:00Z; the \
                 task waited 10m without a live runner"
            )
        );
        assert_eq!(state.snapshot().status.clusters["hub"].queued, None);
    }

    #[test]
    fn a_restarted_dispatcher_gives_a_waiting_task_the_whole_pickup_timeout_again() {
        let mut state = request(&["hub"], None);
        settle_in(&mut state, at(0), &LIVE);
        // The dispatcher restarted at 20 min and has heard no heartbeat since: it cannot
        // tell how long the cluster has been without a runner, so it waits the full timeout.
        let restarted = World {
            since: 1200,
            ..NOBODY
        };
        assert_eq!(settle_in(&mut state, at(1799), &restarted), []);
        settle_in(&mut state, at(1800), &restarted);
        assert_eq!(state.clusters[0].phase, ClusterPhase::Failed);
        let error = state.clusters[0].error.clone().unwrap_or_default();
        assert!(
            error.contains("has ever sent a heartbeat")
                && error.contains(
                    "since the dispatcher started following them at 2027-01-15T08:20:00Z"
                ),
            "{error}"
        );
    }

    #[test]
    fn a_waiting_tasks_place_is_set_with_its_dispatch_and_each_move_is_a_revision() {
        let mut state = request(&["hub"], None);
        let behind_two = World { ahead: 2, ..LIVE };
        assert_eq!(
            settle_in(&mut state, at(0), &behind_two),
            [Step::Dispatch(vec![0]), Step::PublishStatus]
        );
        // The place is part of the dispatch's own revision.
        assert_eq!(state.revision, 2);
        assert_eq!(state.clusters[0].queue_position, Some(3));
        assert_eq!(
            state.snapshot().status.clusters["hub"]
                .queued
                .as_ref()
                .map(|q| q.position),
            Some(3)
        );
        // The two ahead of it started: it is next, in a revision of its own.
        let next = World { ahead: 0, ..LIVE };
        assert_eq!(
            settle_in(&mut state, at(60), &next),
            [Step::Requeue(vec![(0, 1)]), Step::PublishStatus]
        );
        assert_eq!(state.revision, 3);
        assert_eq!(settle_in(&mut state, at(61), &next), []);
        // Once started, it is no longer queued.
        state.on_started(&name("hub"), "r-0", at(70), 1, at(70));
        assert_eq!(state.clusters[0].queue_position, None);
        assert_eq!(state.snapshot().status.clusters["hub"].queued, None);
        assert_eq!(
            settle_in(&mut state, at(70), &behind_two),
            [Step::PublishStatus]
        );
    }

    #[test]
    fn a_redelivered_start_is_applied_once_and_a_restart_counts_an_attempt() {
        let mut state = request(&["hub"], None);
        settle(&mut state, at(0));
        assert_eq!(
            state.on_started(&name("hub"), "r-0", at(5), 0, at(5)),
            Applied::Changed
        );
        assert_eq!(
            state.on_started(&name("hub"), "r-0", at(5), 0, at(6)),
            Applied::Unchanged
        );
        assert_eq!(
            state.on_started(&name("hub"), "r-1", at(50), 0, at(50)),
            Applied::Changed
        );
        assert_eq!(state.clusters[0].attempts, 2);
        // The second start says what became of the first, for the status and the report.
        let status = &state.snapshot().status.clusters[&name("hub")];
        assert_eq!(status.attempts, 2);
        let interrupted = status.interrupted.as_deref().unwrap_or_default();
        assert!(
            interrupted.starts_with("attempt 1 on runner r-0")
                && interrupted.contains("without a result"),
            "{interrupted}"
        );
    }

    #[test]
    fn numbered_attempts_count_once_and_a_stale_start_is_ignored() {
        let mut state = request(&["hub"], None);
        settle(&mut state, at(0));
        assert_eq!(
            state.on_started(&name("hub"), "r-0", at(5), 1, at(5)),
            Applied::Changed
        );
        assert_eq!(
            state.on_started(&name("hub"), "r-1", at(50), 2, at(50)),
            Applied::Changed
        );
        assert_eq!(state.clusters[0].attempts, 2);
        // Attempt 1's start, buffered through an outage, arrives late: it changes nothing.
        assert_eq!(
            state.on_started(&name("hub"), "r-0", at(6), 1, at(60)),
            Applied::Unchanged
        );
        assert_eq!(state.clusters[0].runner.as_deref(), Some("r-1"));
        assert_eq!(
            state.on_finished(&result("hub", Outcome::Completed, None, "done"), at(80)),
            Applied::Changed
        );
        // A second final result, from either attempt, is ignored.
        assert_eq!(
            state.on_finished(&result("hub", Outcome::Failed, Some("late"), ""), at(90)),
            Applied::AlreadyFinal
        );
        assert_eq!(state.clusters[0].phase, ClusterPhase::Completed);
    }

    #[test]
    fn long_reports_are_cut_on_a_character_boundary() {
        let text = "é".repeat(10);
        let cut = truncate(&text, 5);
        assert!(cut.starts_with("éé\n\n[The dispatcher cut"), "{cut}");
        assert_eq!(truncate("short", 5), "short");
    }

    #[test]
    fn a_request_without_targets_fails_with_the_reason() {
        let mut state = request(&[], None);
        assert_eq!(state.phase, RequestPhase::Failed);
        assert_eq!(
            state.error.as_deref(),
            Some("the request names no target cluster")
        );
        state.published_revision = 0;
        assert_eq!(settle(&mut state, at(1)), [Step::PublishStatus]);
        assert!(!state.is_active());
    }

    #[test]
    fn tasks_carry_the_requests_results_dir() {
        let state = request(&["hub"], None);
        let task = state.task_for(0).expect("task for hub");
        assert_eq!(task.results_dir, "results/r1");
        assert_eq!(task.request_id, "r1");
        assert_eq!(task.cluster.name, "hub");
    }

    #[test]
    fn a_stored_cluster_name_that_could_widen_a_subject_is_refused_on_load() {
        let state = request(&["hub"], None);
        let mut json = serde_json::to_value(&state).expect("encode");
        json["clusters"][0]["name"] = "prod.*".into();
        let error = serde_json::from_value::<RequestState>(json).expect_err("refused");
        assert!(error.to_string().contains("cluster name"), "{error}");
    }

    #[test]
    fn a_request_at_the_cluster_limit_fits_one_nats_message() {
        // NATS's default max_payload; the snapshot and the KV record must each fit in it.
        const MAX_PAYLOAD: usize = 1024 * 1024;
        let names: Vec<String> = (0..warroom_proto::validate::MAX_CLUSTERS)
            .map(|n| format!("hosted-cluster-with-a-long-name-{n:03}"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut state = request(&names, Some(CoordinationMode::Parallel));
        settle(&mut state, at(0));
        let long = "the etcd leader changed twice in the last hour. ".repeat(200);
        let reason = "the agent ended with an error: ".repeat(8);
        for (n, cluster) in names.iter().enumerate() {
            let (outcome, error) = if n % 2 == 0 {
                (Outcome::Completed, None)
            } else {
                (Outcome::Failed, Some(reason.as_str()))
            };
            let mut result = result(cluster, outcome, error, &long);
            result.permission_denials = (0..3)
                .map(|i| Denial {
                    tool: "Bash".to_owned(),
                    tool_use_id: format!("toolu_{n}_{i}"),
                    input: serde_json::json!({"command": "kubectl get secrets -A -o yaml"}),
                })
                .collect();
            state.on_started(&name(cluster), "runner-1", at(5), 1, at(5));
            assert_eq!(state.on_finished(&result, at(60)), Applied::Changed);
        }
        settle(&mut state, at(60));
        assert!(state.phase.is_final(), "{:?}", state.phase);
        let snapshot = serde_json::to_vec(&state.snapshot()).expect("encode the snapshot");
        let record = serde_json::to_vec(&state).expect("encode the state");
        assert!(
            snapshot.len() < MAX_PAYLOAD,
            "snapshot of {} bytes",
            snapshot.len()
        );
        assert!(
            record.len() < MAX_PAYLOAD,
            "state record of {} bytes",
            record.len()
        );
        // Refused calls left out of the message are still counted.
        let status = state.snapshot().status;
        assert!(status.clusters.values().all(|c| c.permission_denials == 3));
    }

    #[test]
    fn the_state_survives_a_round_trip_through_json() {
        let mut state = request(&["hub"], None);
        settle(&mut state, at(0));
        let json = serde_json::to_vec(&state).expect("encode");
        let back: RequestState = serde_json::from_slice(&json).expect("decode");
        assert_eq!(back, state);
    }

    #[test]
    fn a_request_over_its_engineers_limit_is_rejected_and_never_dispatched() {
        let mut state = request(&["hub", "hosted-1"], Some(CoordinationMode::Parallel));
        state.published_revision = 0;
        state.refuse_over_limit(2, 2);
        assert_eq!(state.phase, RequestPhase::Rejected);
        let steps = settle(&mut state, at(1));
        assert_eq!(steps, vec![Step::PublishStatus], "only its status goes out");
        let snapshot = state.snapshot();
        assert!(snapshot.status.clusters.is_empty(), "{snapshot:?}");
        assert_eq!(snapshot.status.errors.len(), 1);
        assert_eq!(snapshot.status.errors[0].field, "metadata.engineer");
        assert!(
            snapshot.status.errors[0]
                .message
                .starts_with("too_many_requests: the engineer `ada` already has 2 active requests; the limit is 2"),
            "{:?}",
            snapshot.status.errors
        );
        assert!(!state.is_active());
    }

    #[test]
    fn a_notice_is_added_once_and_published_even_after_the_request_finished() {
        let mut state = request(&["hub"], None);
        state.phase = RequestPhase::Completed;
        let notice = warroom_proto::Notice {
            kind: warroom_proto::NoticeKind::ChangedAfterAcceptance,
            file: "requests/pending/r1.yaml".to_owned(),
            version: "v2".to_owned(),
            commit: "c2".to_owned(),
            at: at(5),
            message: "changed".to_owned(),
        };
        let revision = state.revision;
        assert!(state.add_notice(notice.clone(), at(6)));
        assert_eq!(state.revision, revision + 1);
        assert!(
            !state.add_notice(notice.clone(), at(7)),
            "the same notice twice"
        );
        assert_eq!(state.revision, revision + 1);
        assert_eq!(
            state.phase,
            RequestPhase::Completed,
            "a notice changes no phase"
        );
        assert_eq!(
            state.next_step(at(8), Some(TIMEOUTS), &NOBODY),
            Some(Step::PublishStatus)
        );
        assert_eq!(state.snapshot().status.notices, vec![notice]);
    }

    fn order(version: &str) -> CancelOrder {
        CancelOrder {
            id: RequestId::new("r1").expect("valid id"),
            cancel: Cancellation {
                by: "alice".to_owned(),
                requested_at: at(20),
                at: at(20),
                reason: Some("wrong cluster".to_owned()),
                file: "requests/cancel/r1.yaml".to_owned(),
                verified: true,
            },
            version: version.to_owned(),
            commit: "c3".to_owned(),
        }
    }

    #[test]
    fn a_cancel_ends_queued_and_running_clusters_and_keeps_the_partial_report() {
        let mut state = request(
            &["hub", "prod-1", "prod-2"],
            Some(CoordinationMode::Sequential),
        );
        settle(&mut state, at(1));
        assert_eq!(
            state.on_started(&name("hub"), "r-0", at(10), 1, at(10)),
            Applied::Changed
        );
        let CancelOutcome::Cancelled(take_back) = state.cancel(&order("v1"), at(30)) else {
            panic!("cancelled");
        };
        assert!(take_back.is_empty(), "sequential: nothing else was queued");
        assert_eq!(state.phase, RequestPhase::Cancelled);
        assert!(
            state
                .clusters
                .iter()
                .all(|c| c.phase == ClusterPhase::Cancelled)
        );
        let error = state.error.clone().expect("a reason");
        assert!(
            error.starts_with("cancelled by alice: wrong cluster at "),
            "{error}"
        );
        let snapshot = state.snapshot();
        let cancelled = snapshot.status.cancelled.expect("who, when, why");
        assert_eq!((cancelled.by.as_str(), cancelled.at), ("alice", at(30)));
        assert!(
            snapshot.reports[&name("prod-1")]
                .final_text
                .contains("before it started")
        );

        // The runner's partial report of the running cluster is kept; the phase stays.
        let partial = result(
            "hub",
            Outcome::Cancelled,
            Some("interrupted"),
            "found a slow etcd",
        );
        assert_eq!(state.on_finished(&partial, at(35)), Applied::Changed);
        let hub = &state.clusters[0];
        assert_eq!(hub.phase, ClusterPhase::Cancelled);
        assert_eq!(
            hub.error.as_deref(),
            Some("cancelled by alice: wrong cluster")
        );
        let text = hub.final_text.as_deref().expect("report");
        assert!(
            text.contains("what follows is partial") && text.contains("found a slow etcd"),
            "{text}"
        );
        assert_eq!(state.on_finished(&partial, at(36)), Applied::AlreadyFinal);

        // A repeated order changes nothing; a second cancel file gets a notice only.
        let revision = state.revision;
        assert_eq!(state.cancel(&order("v1"), at(40)), CancelOutcome::Repeat);
        assert_eq!(state.revision, revision);
        assert_eq!(state.cancel(&order("v2"), at(41)), CancelOutcome::Ignored);
        assert_eq!(state.phase, RequestPhase::Cancelled);
        assert_eq!(state.notices.len(), 1);
        assert_eq!(state.notices[0].kind, NoticeKind::CancelIgnored);
        assert!(
            state.notices[0]
                .message
                .contains("already cancelled by alice")
        );
    }

    #[test]
    fn a_cancel_of_a_finished_request_changes_nothing_but_a_notice() {
        let mut state = request(&["hub"], None);
        settle(&mut state, at(1));
        state.on_started(&name("hub"), "r-0", at(10), 1, at(10));
        state.on_finished(&result("hub", Outcome::Completed, None, "done"), at(20));
        assert_eq!(state.phase, RequestPhase::Completed);
        let before = state.clone();
        assert_eq!(state.cancel(&order("v1"), at(30)), CancelOutcome::Ignored);
        assert_eq!(state.phase, RequestPhase::Completed);
        assert_eq!(state.clusters, before.clusters);
        assert_eq!(state.cancellation, None);
        assert!(
            state.notices[0].message.contains("already ended completed"),
            "{:?}",
            state.notices
        );
        let queued = {
            let mut parallel = request(&["hub", "prod-1"], Some(CoordinationMode::Parallel));
            settle(&mut parallel, at(1));
            for cluster in &mut parallel.clusters {
                cluster.task_sequence = Some(7);
            }
            parallel.cancel(&order("v1"), at(2))
        };
        assert_eq!(
            queued,
            CancelOutcome::Cancelled(vec![(name("hub"), 7), (name("prod-1"), 7)])
        );
    }

    /// A result with a structured answer of `findings` (supported or not).
    fn structured(cluster: &str, findings: &[bool]) -> TaskResult {
        use warroom_proto::{CheckedFinding, CheckedReport, Confidence};
        let mut result = result(cluster, Outcome::Completed, None, "report");
        result.report = Some(Box::new(CheckedReport {
            summary: format!("{cluster} summary"),
            findings: findings
                .iter()
                .map(|&supported| CheckedFinding {
                    claim: "a finding".to_owned(),
                    supported,
                    evidence: Vec::new(),
                })
                .collect(),
            ruled_out: Vec::new(),
            confidence: Confidence::High,
            next_steps: Vec::new(),
            not_checked: Vec::new(),
            runbook: None,
        }));
        result
    }

    /// A parallel request of `clusters` that gets a synthesis, every cluster started.
    fn synthesized(clusters: &[&str]) -> RequestState {
        let mut state = request(clusters, Some(CoordinationMode::Parallel));
        state.synthesis_timeout_secs = Some(300);
        settle(&mut state, at(1));
        for cluster in clusters {
            state.on_started(&name(cluster), "r-0", at(10), 1, at(10));
        }
        state
    }

    fn synthesis_result(
        cluster: &str,
        synthesis: Option<warroom_proto::synthesis::CheckedSynthesis>,
    ) -> SynthesisResult {
        SynthesisResult {
            request_id: RequestId::new("r1").expect("valid id"),
            cluster: name(cluster),
            synthesis,
            error: Some("the model gave no answer".to_owned()),
            cost_usd: 0.05,
            run: None,
            started_at: at(80),
            finished_at: at(90),
        }
    }

    #[test]
    fn a_request_with_findings_in_two_clusters_ends_with_its_synthesis() {
        use warroom_proto::Confidence;
        use warroom_proto::synthesis::CheckedSynthesis;
        let mut state = synthesized(&["a", "b", "c"]);
        state.on_finished(&structured("a", &[true]), at(70));
        state.on_finished(&result("b", Outcome::Failed, Some("boom"), ""), at(71));
        state.on_finished(&structured("c", &[false, true]), at(72));
        // Every cluster ended, and their reports are out; the request waits for the synthesis.
        assert_eq!(state.phase, RequestPhase::Running);
        let pending = state.snapshot();
        assert_eq!(
            pending.status.synthesis.as_ref().map(|s| s.phase),
            Some(SynthesisPhase::Pending)
        );
        assert_eq!(pending.reports.len(), 3);
        // The first cluster with findings whose runner is live runs it.
        let steps = settle_in(&mut state, at(73), &LIVE);
        assert!(steps.contains(&Step::Synthesize(0)), "{steps:?}");
        let task = state.synthesis_task(0).expect("a task");
        let input = task.synthesis.as_deref().expect("a synthesis task");
        assert!(task.allowed_tools.is_empty());
        assert_eq!(task.timeout_secs, 300);
        assert_eq!(input.clusters.len(), 3);
        assert_eq!(input.with_supported_findings(), 2);
        assert_eq!(
            state.synthesis.as_ref().and_then(|s| s.cluster.clone()),
            Some(name("a"))
        );
        // Asked once: a second sweep sends nothing.
        assert_eq!(settle_in(&mut state, at(74), &LIVE), Vec::new());

        let report = CheckedSynthesis {
            summary: "a and c share a cause".to_owned(),
            claims: Vec::new(),
            confidence: Confidence::Medium,
        };
        let applied = state.on_synthesis(&synthesis_result("a", Some(report.clone())), at(90));
        assert_eq!(applied, Applied::Changed);
        // The request's phase is its clusters' own: the synthesis never changes it.
        assert_eq!(state.phase, RequestPhase::Failed);
        let done = state.snapshot();
        assert_eq!(done.synthesis, Some(report));
        assert_eq!(
            done.status
                .synthesis
                .as_ref()
                .map(|s| (s.phase, s.cost_usd)),
            Some((SynthesisPhase::Completed, Some(0.05)))
        );
        // A redelivered result changes nothing.
        assert_eq!(
            state.on_synthesis(&synthesis_result("a", None), at(91)),
            Applied::AlreadyFinal
        );
    }

    #[test]
    fn a_synthesis_that_fails_or_never_comes_only_adds_a_note() {
        let ended = |state: &mut RequestState| {
            state.on_finished(&structured("a", &[true]), at(70));
            state.on_finished(&structured("b", &[true]), at(71));
        };
        let mut failed = synthesized(&["a", "b"]);
        ended(&mut failed);
        settle_in(&mut failed, at(72), &LIVE);
        failed.on_synthesis(&synthesis_result("a", None), at(80));
        assert_eq!(failed.phase, RequestPhase::Completed);
        assert_eq!(failed.error, None);
        let status = failed
            .snapshot()
            .status
            .synthesis
            .expect("a synthesis status");
        assert_eq!(status.phase, SynthesisPhase::Failed);
        assert_eq!(status.error.as_deref(), Some("the model gave no answer"));

        let mut silent = synthesized(&["a", "b"]);
        ended(&mut silent);
        settle_in(&mut silent, at(72), &LIVE);
        // Within its bound (300 s plus the 120 s grace) it waits.
        assert_eq!(settle_in(&mut silent, at(72 + 419), &LIVE), Vec::new());
        let steps = settle_in(&mut silent, at(72 + 420), &LIVE);
        assert!(
            matches!(steps.first(), Some(Step::ExpireSynthesis(e)) if e.contains("no synthesis from the runner of a within 5m")),
            "{steps:?}"
        );
        assert_eq!(silent.phase, RequestPhase::Completed);
        assert_eq!(
            silent.on_synthesis(&synthesis_result("a", None), at(600)),
            Applied::AlreadyFinal
        );
    }

    #[test]
    fn no_synthesis_without_two_clusters_with_findings_or_when_turned_off_or_cancelled() {
        let mut one = synthesized(&["a", "b"]);
        one.on_finished(&structured("a", &[true]), at(70));
        one.on_finished(&structured("b", &[false]), at(71));
        assert_eq!(one.phase, RequestPhase::Completed);
        assert_eq!(one.synthesis, None);
        assert_eq!(one.snapshot().status.synthesis, None);

        let mut off = synthesized(&["a", "b"]);
        off.synthesis_timeout_secs = None;
        off.on_finished(&structured("a", &[true]), at(70));
        off.on_finished(&structured("b", &[true]), at(71));
        assert_eq!(off.phase, RequestPhase::Completed);

        let mut cancelled = synthesized(&["a", "b"]);
        cancelled.on_finished(&structured("a", &[true]), at(70));
        cancelled.on_finished(&structured("b", &[true]), at(71));
        assert_eq!(cancelled.phase, RequestPhase::Running);
        cancelled.cancel(&order("v1"), at(75));
        assert_eq!(cancelled.phase, RequestPhase::Cancelled);
        let status = cancelled.snapshot().status.synthesis.expect("a status");
        assert_eq!(status.phase, SynthesisPhase::Failed);
        assert!(
            status
                .error
                .as_deref()
                .is_some_and(|e| e.contains("cancelled by alice")),
            "{status:?}"
        );
    }

    fn ask(turn: u32, cluster: Option<&str>, version: &str) -> FollowUpOrder {
        FollowUpOrder {
            id: RequestId::new("r1").expect("valid id"),
            turn,
            cluster: cluster.map(name),
            prompt: format!("question {turn}"),
            engineer: "alice".to_owned(),
            asked_at: at(100),
            file: format!("requests/ask/r1/{turn}.yaml"),
            version: version.to_owned(),
            commit: "c4".to_owned(),
            verified: true,
        }
    }

    fn turn_result(cluster: &str, turn: u32, outcome: Outcome) -> TurnResult {
        TurnResult {
            request_id: RequestId::new("r1").expect("valid id"),
            cluster: name(cluster),
            turn,
            outcome,
            error: None,
            cost_usd: 0.1,
            num_turns: 2,
            resumed: true,
            started_at: at(110),
            finished_at: at(120),
        }
    }

    #[test]
    fn follow_ups_wait_for_their_clusters_investigation_and_run_one_at_a_time() {
        let mut state = request(&["hub"], None);
        settle_in(&mut state, at(1), &LIVE);
        // Asked while the investigation runs: it waits.
        assert_eq!(
            state.on_follow_up(&ask(1, None, "v1"), at(5)),
            FollowUpOutcome::Added
        );
        assert_eq!(
            state.on_follow_up(&ask(2, Some("hub"), "v2"), at(6)),
            FollowUpOutcome::Added
        );
        assert_eq!(
            state.on_follow_up(&ask(1, None, "v1"), at(7)),
            FollowUpOutcome::Repeat
        );
        assert!(
            !settle_in(&mut state, at(8), &LIVE)
                .iter()
                .any(|s| matches!(s, Step::DispatchTurn(_)))
        );
        state.on_started(&name("hub"), "r-0", at(10), 1, at(10));
        state.on_finished(&result("hub", Outcome::Completed, None, "done"), at(20));
        assert_eq!(state.phase, RequestPhase::Completed);
        // The request stays final; its turns are driven all the same, in order.
        assert!(state.is_active());
        let steps = settle_in(&mut state, at(21), &LIVE);
        assert!(steps.contains(&Step::DispatchTurn(0)), "{steps:?}");
        assert!(!steps.contains(&Step::DispatchTurn(1)), "{steps:?}");
        let task = state.turn_task(0).expect("a task");
        let follow_up = task.follow_up.expect("a follow-up");
        assert_eq!(
            (follow_up.turn, follow_up.prompt.as_str()),
            (1, "question 1")
        );
        assert_eq!(task.allowed_tools, vec![Tool::Bash]);
        assert_eq!(
            state.on_turn_started(&name("hub"), 1, "r-0", at(22), at(22)),
            Applied::Changed
        );
        assert_eq!(
            state.on_turn_finished(&turn_result("hub", 1, Outcome::Completed), at(30)),
            Applied::Changed
        );
        assert_eq!(
            state.on_turn_finished(&turn_result("hub", 1, Outcome::Completed), at(31)),
            Applied::AlreadyFinal
        );
        let steps = settle_in(&mut state, at(32), &LIVE);
        assert!(steps.contains(&Step::DispatchTurn(1)), "{steps:?}");
        let status = state.snapshot().status;
        assert_eq!(status.phase, RequestPhase::Completed);
        let turns: Vec<(u32, ClusterPhase, Option<String>)> = status
            .turns
            .iter()
            .map(|t| (t.turn, t.phase, t.report.clone()))
            .collect();
        assert_eq!(
            turns,
            [
                (1, ClusterPhase::Completed, Some("turn-1.md".to_owned())),
                (2, ClusterPhase::Dispatched, None)
            ]
        );
    }

    #[test]
    fn a_follow_up_without_a_cluster_of_the_request_is_refused_with_a_notice() {
        let mut state = request(&["hub", "prod-1"], Some(CoordinationMode::Parallel));
        let none = state.on_follow_up(&ask(1, None, "v1"), at(5));
        assert!(
            matches!(&none, FollowUpOutcome::Refused(m) if m.contains("names no cluster")),
            "{none:?}"
        );
        let other = state.on_follow_up(&ask(2, Some("elsewhere"), "v2"), at(6));
        assert!(
            matches!(&other, FollowUpOutcome::Refused(m) if m.contains("not a cluster of this request")),
            "{other:?}"
        );
        // The same refused file again changes nothing.
        assert_eq!(
            state.on_follow_up(&ask(1, None, "v1"), at(7)),
            FollowUpOutcome::Repeat
        );
        assert_eq!(
            state.on_follow_up(&ask(1, Some("prod-1"), "v3"), at(8)),
            FollowUpOutcome::Added
        );
        // Turn 1 again, in a changed file: refused, the first stands.
        let again = state.on_follow_up(&ask(1, Some("hub"), "v4"), at(9));
        assert!(
            matches!(&again, FollowUpOutcome::Refused(m) if m.contains("asked before")),
            "{again:?}"
        );
        assert_eq!(state.turns.len(), 1);
        let kinds: Vec<NoticeKind> = state.notices.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, [NoticeKind::FollowUpRefused; 3]);
    }

    fn session(opening_prompt: bool) -> RequestState {
        session_held(opening_prompt, false)
    }

    fn session_held(opening_prompt: bool, exec: bool) -> RequestState {
        let mut accepted = request(&["hub"], None).accepted;
        accepted.session = Some(warroom_proto::SessionTerms {
            duration_secs: 3600,
            opening_prompt,
            exec,
            budget_usd: Some(0.25),
        });
        let mut state = RequestState::new(accepted, at(0));
        state.published_revision = state.revision;
        state
    }

    fn pod_report(phase: PodPhase, error: Option<&str>) -> PodReport {
        PodReport {
            request_id: "r-1".parse().expect("an id"),
            cluster: name("hub"),
            pod: "whatever-the-runner-says".to_owned(),
            phase,
            error: error.map(str::to_owned),
            at: at(2),
        }
    }

    fn pod_of(state: &RequestState) -> (Option<String>, Option<PodPhase>, Option<String>) {
        let session = state.snapshot().status.session.expect("a session");
        (session.pod, session.pod_phase, session.pod_error)
    }

    #[test]
    fn a_session_held_as_a_pod_orders_it_at_the_start_and_releases_it_at_the_end() {
        let mut state = session_held(false, true);
        let steps = settle_in(&mut state, at(1), &LIVE);
        assert_eq!(steps, vec![Step::Pod(PodStep::Hold), Step::PublishStatus]);
        let hold = state.pod_task(PodStep::Hold).expect("a task");
        assert_eq!(
            hold.pod,
            Some(PodOrder::Hold {
                expires_at: at(3600),
                budget_usd: Some(0.25)
            })
        );
        assert_eq!(hold.cluster.name, name("hub"));
        let pod = warroom_proto::names::session_pod_name(state.id());
        assert_eq!(
            pod_of(&state),
            (Some(pod.clone()), Some(PodPhase::Requested), None)
        );
        // Ordered once: nothing more is due while the session is open.
        assert_eq!(settle_in(&mut state, at(2), &LIVE), Vec::new());

        assert_eq!(
            state.on_pod(&pod_report(PodPhase::Held, None), at(3)),
            Applied::Changed
        );
        assert_eq!(
            state.on_pod(&pod_report(PodPhase::Held, None), at(4)),
            Applied::Unchanged
        );
        // The name is the dispatcher's own, whatever a report says.
        assert_eq!(
            pod_of(&state),
            (Some(pod.clone()), Some(PodPhase::Held), None)
        );
        assert!(state.is_active());

        // Stopped: the release goes out, and the request stays active until it is removed.
        state.cancel(&order("v9"), at(20));
        let steps = settle_in(&mut state, at(21), &LIVE);
        assert!(steps.contains(&Step::Pod(PodStep::Release)), "{steps:?}");
        assert_eq!(
            state.pod_task(PodStep::Release).expect("a task").pod,
            Some(PodOrder::Release)
        );
        assert_eq!(state.phase, RequestPhase::Completed);
        assert_eq!(pod_of(&state).1, Some(PodPhase::Releasing));
        assert!(state.is_active());
        let first_release = state.pod_dedup(PodStep::Release);
        // A hold that ran after the release made the pod again: it is released once more,
        // under a new deduplication id.
        state.on_pod(&pod_report(PodPhase::Held, None), at(22));
        let steps = settle_in(&mut state, at(23), &LIVE);
        assert!(steps.contains(&Step::Pod(PodStep::Release)), "{steps:?}");
        assert_ne!(state.pod_dedup(PodStep::Release), first_release);
        state.on_pod(&pod_report(PodPhase::Removed, None), at(24));
        settle_in(&mut state, at(25), &LIVE);
        assert_eq!(pod_of(&state).1, Some(PodPhase::Removed));
        assert!(!state.is_active());
    }

    #[test]
    fn a_held_pod_is_released_when_its_session_runs_out() {
        let mut state = session_held(true, true);
        settle_in(&mut state, at(1), &LIVE);
        state.on_pod(&pod_report(PodPhase::Held, None), at(2));
        assert_eq!(
            settle_in(&mut state, at(3599), &LIVE),
            [Step::PublishStatus]
        );
        let steps = settle_in(&mut state, at(3600), &LIVE);
        assert!(
            steps
                .iter()
                .any(|s| matches!(s, Step::EndSession(why) if why.contains("1h"))),
            "{steps:?}"
        );
        assert!(steps.contains(&Step::Pod(PodStep::Release)), "{steps:?}");
        assert_eq!(pod_of(&state).1, Some(PodPhase::Releasing));
    }

    #[test]
    fn a_pod_that_could_not_be_held_says_why_and_is_not_released() {
        let mut state = session_held(false, true);
        settle_in(&mut state, at(1), &LIVE);
        let why = "this cluster's runner does not hold session pods";
        assert_eq!(
            state.on_pod(&pod_report(PodPhase::Failed, Some(why)), at(2)),
            Applied::Changed
        );
        assert_eq!(pod_of(&state).2.as_deref(), Some(why));
        // The session stays open for follow-ups through git.
        assert_eq!(state.phase, RequestPhase::Running);
        let steps = settle_in(&mut state, at(3600), &LIVE);
        assert!(!steps.contains(&Step::Pod(PodStep::Release)), "{steps:?}");
        assert!(!state.is_active());
    }

    #[test]
    fn pods_are_ordered_only_for_sessions_that_ask_and_reports_for_others_are_ignored() {
        let mut plain = session(false);
        let steps = settle_in(&mut plain, at(1), &LIVE);
        assert!(
            !steps.iter().any(|s| matches!(s, Step::Pod(_))),
            "{steps:?}"
        );
        assert_eq!(
            plain.on_pod(&pod_report(PodPhase::Held, None), at(2)),
            Applied::UnknownCluster
        );
        let mut held = session_held(true, true);
        settle_in(&mut held, at(1), &LIVE);
        let mut other = pod_report(PodPhase::Held, None);
        other.cluster = name("prod-1");
        assert_eq!(held.on_pod(&other, at(2)), Applied::UnknownCluster);
        // A first question runs beside the pod.
        assert!(
            held.clusters[0].phase == ClusterPhase::Dispatched,
            "{:?}",
            held.clusters[0].phase
        );
    }

    #[test]
    fn a_session_stays_open_until_its_duration_ends() {
        let mut state = session(false);
        // No first question: nothing runs, and the session is open, having cost nothing
        // (not -0.0, which would print as `$-0.00`).
        assert_eq!(state.phase, RequestPhase::Running);
        let cost = state.snapshot().status.session.expect("a session").cost_usd;
        assert!(cost == 0.0 && cost.is_sign_positive(), "{cost}");
        assert_eq!(state.clusters[0].phase, ClusterPhase::Completed);
        assert_eq!(settle_in(&mut state, at(1), &LIVE), Vec::new());
        state.on_follow_up(&ask(1, None, "v1"), at(5));
        let steps = settle_in(&mut state, at(6), &LIVE);
        assert!(steps.contains(&Step::DispatchTurn(0)), "{steps:?}");
        state.on_turn_finished(&turn_result("hub", 1, Outcome::Completed), at(30));
        assert_eq!(state.phase, RequestPhase::Running);
        let open = state.snapshot().status.session.expect("a session");
        assert_eq!((open.state, open.turns), (SessionState::Open, 1));
        assert!((open.cost_usd - 0.1).abs() < 1e-9);
        // Asked, not yet run when the time is up: it never runs.
        state.on_follow_up(&ask(2, None, "v2"), at(3000));
        let steps = settle_in(&mut state, at(3600), &NOBODY);
        assert!(
            steps
                .iter()
                .any(|s| matches!(s, Step::EndSession(why) if why.contains("1h")))
                && !steps.iter().any(|s| matches!(s, Step::DispatchTurn(_))),
            "{steps:?}"
        );
        assert_eq!(state.phase, RequestPhase::Completed);
        let ended = state.snapshot().status;
        let session = ended.session.expect("a session");
        assert_eq!(session.state, SessionState::Ended);
        assert_eq!(ended.turns[1].phase, ClusterPhase::Cancelled);
        // A question after the end is refused.
        let late = state.on_follow_up(&ask(3, None, "v3"), at(3700));
        assert!(
            matches!(&late, FollowUpOutcome::Refused(m) if m.contains("after the session ended")),
            "{late:?}"
        );
    }

    #[test]
    fn stopping_a_session_ends_it_completed_or_cancels_its_running_first_question() {
        let mut idle = session(false);
        idle.on_follow_up(&ask(1, None, "v1"), at(5));
        settle_in(&mut idle, at(6), &LIVE);
        assert_eq!(
            idle.cancel(&order("v9"), at(20)),
            CancelOutcome::Cancelled(vec![(name("hub"), 13)])
        );
        assert_eq!(idle.phase, RequestPhase::Completed);
        assert_eq!(idle.cancellation, None);
        let stopped = idle.snapshot().status.session.expect("a session");
        assert_eq!(
            stopped.ended.as_deref(),
            Some("stopped by alice: wrong cluster")
        );

        let mut busy = session(true);
        settle_in(&mut busy, at(1), &LIVE);
        busy.on_started(&name("hub"), "r-0", at(10), 1, at(10));
        busy.cancel(&order("v9"), at(20));
        assert_eq!(busy.phase, RequestPhase::Cancelled);
        assert_eq!(
            busy.snapshot().status.session.expect("a session").state,
            SessionState::Ended
        );
    }

    #[test]
    fn stopping_a_session_stops_its_running_turn_and_keeps_what_it_cost() {
        let mut state = session(false);
        state.on_follow_up(&ask(1, None, "v1"), at(5));
        settle_in(&mut state, at(6), &LIVE);
        state.on_turn_started(&name("hub"), 1, "r-0", at(7), at(7));
        state.cancel(&order("v9"), at(20));
        let turn = &state.snapshot().status.turns[0];
        assert_eq!(turn.phase, ClusterPhase::Cancelled);
        assert!(
            turn.error
                .as_deref()
                .is_some_and(|e| e.contains("while this turn ran")),
            "{turn:?}"
        );
        // Its partial answer still has a file.
        assert_eq!(turn.report.as_deref(), Some("turn-1.md"));
        // The runner's report of the stopped run brings its cost, not another phase.
        let mut stopped = turn_result("hub", 1, Outcome::Cancelled);
        stopped.cost_usd = 0.07;
        assert_eq!(state.on_turn_finished(&stopped, at(25)), Applied::Changed);
        assert_eq!(
            state.on_turn_finished(&stopped, at(26)),
            Applied::AlreadyFinal
        );
        let after = state.snapshot().status;
        assert_eq!(after.turns[0].phase, ClusterPhase::Cancelled);
        assert_eq!(after.turns[0].cost_usd, Some(0.07));
        assert!((after.session.expect("a session").cost_usd - 0.07).abs() < 1e-9);
    }

    #[test]
    fn a_session_ends_once_its_runs_spent_its_budget() {
        let mut state = session(false);
        for turn in 1..=3 {
            state.on_follow_up(&ask(turn, None, &format!("v{turn}")), at(5));
        }
        for turn in 1..=3 {
            settle_in(&mut state, at(10), &LIVE);
            if state.turns[turn - 1].phase == ClusterPhase::Dispatched {
                state
                    .on_turn_finished(&turn_result("hub", turn as u32, Outcome::Completed), at(20));
            }
        }
        settle_in(&mut state, at(30), &LIVE);
        // 0.1 a turn: the third one reached the 0.25 budget.
        assert_eq!(state.phase, RequestPhase::Completed);
        let session = state.snapshot().status.session.expect("a session");
        assert_eq!(session.turns, 3);
        assert_eq!(
            session.ended.as_deref(),
            Some("its budget of $0.25 was spent ($0.30)")
        );
    }
}
