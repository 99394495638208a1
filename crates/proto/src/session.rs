//! The `SessionRequest` file: a persistent troubleshooting session in one cluster
//! (`claude-warroom session start --cluster X --duration 2h`).
//!
//! Defined now so the contract is fixed; the gateway rejects it with "not supported yet"
//! until the session workflow is implemented.

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
}
