//! The wire contract of claude-warroom.
//!
//! Everything that crosses a process boundary is defined here and nowhere else: the request
//! file engineers write (`TroubleshootingRequest`, `SessionRequest`) and its validation, the
//! messages the daemons exchange over NATS (`Task`, `AuditEvent`, `RunnerReport`,
//! `StatusUpdate`), the `results/<id>/status.json` contract (`RequestStatus`), and the
//! stream, subject, consumer and bucket names. This crate does no I/O.

pub mod cancel;
pub mod followup;
pub mod ids;
pub mod names;
pub mod report;
pub mod request;
pub mod schema;
pub mod session;
pub mod status;
pub mod strategy;
pub mod synthesis;
pub mod validate;
pub mod walk;
pub mod wire;

pub use ids::{ClusterName, InvalidToken, ReplicaId, RequestId, ResultsDir};
pub use names::{Stream, Subject};
pub use report::{
    AgentReport, CheckedEvidence, CheckedFinding, CheckedReport, Confidence, FindingCounts,
    FindingRef, RunFacts, Tokens,
};
pub use request::{
    ClusterRef, ClusterType, Coordination, CoordinationMode, Investigation, Issue, Metadata,
    Output, OutputFormat, RequestSpec, Tool, TroubleshootingRequest,
};
pub use session::SessionRequest;
pub use status::{
    AnswerForm, Cancellation, ClusterPhase, ClusterStatus, Notice, NoticeKind, PodPhase, Progress,
    Queued, RequestPhase, RequestStatus, SessionState, SessionStatus, SynthesisPhase,
    SynthesisStatus, TurnStatus, Verification,
};
pub use strategy::{Strategy, strategies};
pub use validate::{FieldError, ValidatedRequest, ValidationErrors, parse_request};
pub use wire::{
    AcceptedRequest, AuditEvent, AuditKind, CancelOrder, ClusterReport, Denial, Finding,
    FollowUpOrder, FollowUpTurn, GatewayMessage, Inbound, Outcome, PodOrder, PodReport,
    PublisherInput, RequestNotice, RequestSummary, RunnerHeartbeat, RunnerReport, SessionTerms,
    StatusUpdate, SynthesisResult, Task, TaskRecord, TaskResult, TurnResult, Undecodable,
};

/// The `apiVersion` of every request file this version understands.
pub const API_VERSION: &str = "warroom.intility.io/v1";

/// The `kind` of an ad-hoc or cross-cluster investigation request.
pub const KIND_TROUBLESHOOTING: &str = "TroubleshootingRequest";

/// The `kind` of a persistent-session request.
pub const KIND_SESSION: &str = "SessionRequest";

/// The sum of `costs` in US dollars: 0.0 when there are none. (`Iterator::sum` of no `f64`
/// is -0.0, which prints as `$-0.00`.)
pub fn total_cost(costs: impl IntoIterator<Item = f64>) -> f64 {
    costs.into_iter().fold(0.0, |total, cost| total + cost)
}

/// Timestamps on the wire and in `status.json` are RFC 3339 in UTC.
pub type Timestamp = time::OffsetDateTime;

/// The current time, in UTC.
pub fn now() -> Timestamp {
    time::OffsetDateTime::now_utc()
}
