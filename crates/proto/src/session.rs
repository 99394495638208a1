//! The `SessionRequest` file: a persistent troubleshooting session in one cluster
//! (`claude-warroom session start --cluster X --duration 2h`).
//!
//! The gateway turns an accepted session file into an investigation of its one cluster
//! (its `prompt`, when it has one) whose conversation stays open for follow-ups
//! (`requests/ask/<id>/<turn>.yaml`) until it is stopped (a cancel file) or `duration` ends.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::request::{ClusterRef, Metadata};

/// Longest session, in seconds (8 hours).
pub const MAX_SESSION_SECS: u64 = 8 * 60 * 60;

/// A request for a persistent session pod in one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "SessionRequest")]
pub struct SessionRequest {
    /// Always `warroom.intility.io/v1`.
    pub api_version: String,
    /// Always `SessionRequest`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: SessionSpec,
}

/// Where the session runs and for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionSpec {
    pub target_cluster: ClusterRef,
    /// How long the session pod lives, in seconds.
    #[schemars(range(min = 60, max = 28800))]
    pub duration: u64,
    /// What the engineer means to look at, shown to whoever approves the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The namespace to focus on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The first question; without one the session opens without running anything until
    /// the first follow-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub prompt: Option<String>,
    /// Also hold the session as a pod an engineer on a secure admin workstation can
    /// `kubectl exec` into (needs the opt-in `session-exec` component of `deploy/`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exec: bool,
}
