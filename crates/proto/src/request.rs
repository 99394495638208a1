//! The `TroubleshootingRequest` file that engineers commit to `requests/pending/<id>.yaml`.
//!
//! The types follow the original design's example field for field; the example parses as
//! written. Parsing and validation live in [`crate::validate`]: these types are only ever
//! built from a file that passed it, so they can be trusted downstream.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::ids::ClusterName;

/// Shortest investigation timeout, in seconds.
pub const MIN_TIMEOUT_SECS: u64 = 30;
/// Longest investigation timeout, in seconds (4 hours). The secure zone may set a lower one.
pub const MAX_TIMEOUT_SECS: u64 = 4 * 60 * 60;

/// A request to investigate an issue in one or more clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "TroubleshootingRequest")]
pub struct TroubleshootingRequest {
    /// Always `warroom.intility.io/v1`.
    #[schemars(regex(pattern = r"^warroom\.intility\.io/v1$"))]
    pub api_version: String,
    /// Always `TroubleshootingRequest`.
    #[schemars(regex(pattern = r"^TroubleshootingRequest$"))]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: RequestSpec,
}

/// Who asked, when, and a human name for the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// A short human name, e.g. `api-timeout-investigation`.
    #[schemars(length(min = 1, max = crate::validate::MAX_NAME_LEN))]
    pub name: String,
    /// When the request was written, RFC 3339 (e.g. `2024-01-15T14:30:00Z`).
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub timestamp: Timestamp,
    /// The engineer who asked; checked against secure-zone policy.
    #[schemars(length(min = 1, max = crate::validate::MAX_NAME_LEN))]
    pub engineer: String,
}

/// What to investigate, where, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestSpec {
    /// The one cluster to investigate. Exactly one of `targetCluster` and `targetClusters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster: Option<ClusterRef>,
    /// Several clusters, investigated as `coordination.mode` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::validate::MAX_CLUSTERS))]
    pub target_clusters: Option<Vec<ClusterRef>>,
    /// How several clusters are investigated; required with `targetClusters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination: Option<Coordination>,
    pub issue: Issue,
    pub investigation: Investigation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
}

/// A cluster, by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterRef {
    #[serde(rename = "type")]
    pub kind: ClusterType,
    /// 1 to 63 letters, digits, `-` or `_`, starting with a letter or digit.
    pub name: ClusterName,
}

/// The HyperShift role of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClusterType {
    /// The hub (management) cluster that hosts control planes.
    Hub,
    /// A hosted cluster.
    Hosted,
}

impl ClusterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterType::Hub => "hub",
            ClusterType::Hosted => "hosted",
        }
    }
}

/// How a multi-cluster request runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Coordination {
    pub mode: CoordinationMode,
}

/// `parallel`: every cluster at once. `sequential`: one after another, in the listed order,
/// each later cluster's prompt carrying the findings of the clusters before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CoordinationMode {
    Sequential,
    Parallel,
}

impl CoordinationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CoordinationMode::Sequential => "sequential",
            CoordinationMode::Parallel => "parallel",
        }
    }
}

/// The problem, as the engineer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Issue {
    /// A short category, e.g. `api-timeout`.
    #[schemars(length(min = 1, max = crate::validate::MAX_NAME_LEN))]
    pub category: String,
    #[schemars(length(min = 1, max = crate::validate::MAX_DESCRIPTION_LEN))]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::validate::MAX_AFFECTED_RESOURCES), inner(length(min = 1, max = crate::validate::MAX_NAME_LEN)))]
    pub affected_resources: Vec<String>,
}

/// What the agent is asked to do and with what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Investigation {
    /// The instructions for the agent.
    #[schemars(length(min = 1, max = crate::validate::MAX_PROMPT_LEN))]
    pub prompt: String,
    /// The tools the agent may use. The secure zone's policy narrows them further: `bash`
    /// only runs read-only `oc`/`kubectl` verbs and plain text tools.
    #[schemars(length(min = 1))]
    pub allowed_tools: Vec<Tool>,
    /// Seconds the investigation may run before it is stopped and reported `timed_out`.
    #[schemars(range(min = MIN_TIMEOUT_SECS, max = MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    /// A named troubleshooting strategy: one of the runbooks, e.g. `control-plane-health`
    /// (`claude-warroom strategies` lists them). Without one, the agent picks a runbook from
    /// their index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = crate::strategy::schema_enum()))]
    pub strategy: Option<String>,
    /// The namespace to focus on, e.g. `clusters-prod-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub namespace: Option<String>,
}

/// A tool a request may ask for. Each maps onto Claude Code tools under a read-only policy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// Shell commands, limited to read-only `oc`/`kubectl` verbs and text tools.
    Bash,
    /// Read files in the task's workspace.
    Read,
    /// Search file contents in the task's workspace.
    Grep,
    /// Find files by name in the task's workspace.
    Glob,
    /// Write files, inside the task's workspace only.
    Write,
    /// Edit files, inside the task's workspace only.
    Edit,
}

impl Tool {
    /// Every tool, in the order of the documentation.
    pub const ALL: [Tool; 6] = [
        Tool::Bash,
        Tool::Read,
        Tool::Grep,
        Tool::Glob,
        Tool::Write,
        Tool::Edit,
    ];

    /// The spelling in a request file.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Bash => "bash",
            Tool::Read => "read",
            Tool::Grep => "grep",
            Tool::Glob => "glob",
            Tool::Write => "write",
            Tool::Edit => "edit",
        }
    }

    /// The tool with this spelling.
    pub fn parse(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Where and how the report is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Output {
    #[serde(default)]
    pub format: OutputFormat,
    /// A folder inside `results/` ending in the request id (a leading `/` means the
    /// repository root): `results/<request-id>/` (the default) or
    /// `results/<folder>/<request-id>/` with at most three folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::validate::MAX_DESTINATION_LEN), regex(pattern = r"^/?(\./)?results(/+[A-Za-z0-9][A-Za-z0-9_-]{0,62}){0,3}/+[A-Za-z0-9][A-Za-z0-9_-]{0,127}/*$"))]
    pub destination: Option<String>,
}

/// The report format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Markdown,
}
