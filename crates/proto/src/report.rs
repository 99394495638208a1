//! The agent's structured answer and the report the runner makes of it.
//!
//! [`AgentReport`] is what the agent must answer: its JSON Schema ([`agent_report_schema`])
//! is handed to the Claude Code CLI's `--json-schema`, which offers the model a
//! `StructuredOutput` tool with that schema as its input and returns the accepted input as
//! the result's `structured_output`. [`CheckedReport`] is the same answer after the runner
//! checked every finding's evidence against the run's own transcript: each finding is kept,
//! marked supported or not, and each piece of evidence names the `audit.jsonl` line it rests
//! on. A later pass (a cross-cluster synthesis) cites findings with [`FindingRef`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ClusterName;

/// The runbook value of an answer that followed no runbook.
pub const NO_RUNBOOK: &str = "none";

/// The most findings, hypotheses, steps and quoted lines an answer may hold, each: the
/// schema says so to the model, and the runner keeps no more. It bounds the report that
/// travels in one status message.
pub const MAX_ITEMS: usize = 20;

/// The longest text of one field of an answer, in characters (the schema's `maxLength`).
pub const MAX_FIELD_CHARS: usize = 4000;

/// The agent's answer, as the `--json-schema` asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentReport {
    /// Two to five sentences: what is wrong and the most likely root cause.
    #[schemars(length(max = 4000))]
    pub summary: String,
    /// What the investigation established, each with the tool call it came from.
    #[schemars(length(max = 20))]
    pub findings: Vec<AgentFinding>,
    /// Causes considered and ruled out, and why.
    #[schemars(length(max = 20))]
    pub ruled_out: Vec<RuledOut>,
    pub confidence: Confidence,
    /// What a human with write access should do next (the agent never does it).
    #[schemars(length(max = 20))]
    pub next_steps: Vec<String>,
    /// What could not be checked, and why (a refused call, missing access, no data).
    #[schemars(length(max = 20))]
    pub not_checked: Vec<String>,
    /// The runbook followed: one of the index's names, or `none`.
    pub runbook: String,
}

/// One finding as the agent states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentFinding {
    /// What was found, in one or two sentences.
    #[schemars(length(max = 4000))]
    pub claim: String,
    /// The tool calls the finding rests on: at least one.
    #[schemars(length(min = 1, max = 20))]
    pub evidence: Vec<Evidence>,
}

/// One tool call a finding rests on, and the lines of its output that show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The `tool_use` id of the call (`toolu_...`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// The command exactly as it was run (for Bash), or the path read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Lines copied verbatim from the call's output, one per entry.
    #[schemars(length(min = 1, max = 20))]
    pub quote: Vec<String>,
}

/// A cause considered and ruled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuledOut {
    #[schemars(length(max = 4000))]
    pub hypothesis: String,
    #[schemars(length(max = 4000))]
    pub why: String,
}

/// How sure the agent is of its root cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// The agent's answer after the runner checked its evidence; findings keep their order, so
/// finding `n` (1-based, as the report numbers them) is `findings[n - 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedReport {
    pub summary: String,
    pub findings: Vec<CheckedFinding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ruled_out: Vec<RuledOut>,
    pub confidence: Confidence,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<String>,
    /// The runbook the agent says it followed; `None` for `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

impl CheckedReport {
    /// How many findings are supported and how many are not.
    pub fn counts(&self) -> FindingCounts {
        let supported = self.findings.iter().filter(|f| f.supported).count();
        FindingCounts {
            supported: u32::try_from(supported).unwrap_or(u32::MAX),
            unsupported: u32::try_from(self.findings.len() - supported).unwrap_or(u32::MAX),
        }
    }
}

/// A finding and the verdict on its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedFinding {
    pub claim: String,
    /// Every piece of evidence checked out: the cited call happened and each quoted line is
    /// in its output as `audit.jsonl` holds it.
    pub supported: bool,
    pub evidence: Vec<CheckedEvidence>,
}

/// One piece of evidence and what the check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedEvidence {
    /// The call's `tool_use` id: as cited, or found from the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub quote: Vec<String>,
    /// The id of the `audit.jsonl` line holding the call's output, when the call was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    /// Why this evidence does not check out; `None` when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The findings of one cluster's answer, by verdict (`status.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingCounts {
    pub supported: u32,
    pub unsupported: u32,
}

/// One cluster finding, as a synthesis over several clusters cites it: the cluster and the
/// finding's 1-based number in that cluster's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRef {
    pub cluster: ClusterName,
    pub finding: u32,
}

/// What one run used: the model, the CLI, the tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFacts {
    /// The model the CLI said it used (its `system/init` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The Claude Code CLI's version (its `system/init` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli_version: Option<String>,
    #[serde(default)]
    pub tokens: Tokens,
}

/// Tokens of a run, as the CLI's result counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    #[serde(default)]
    pub input: u64,
    #[serde(default)]
    pub output: u64,
    #[serde(default)]
    pub cache_read: u64,
    #[serde(default)]
    pub cache_creation: u64,
}

impl Tokens {
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_creation
    }

    pub fn add(&mut self, other: &Tokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_creation += other.cache_creation;
    }
}

/// The JSON Schema of [`AgentReport`], with `runbook` restricted to the index's names and
/// [`NO_RUNBOOK`]. The committed copy is `schema/agent-report.schema.json`.
pub fn agent_report_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(AgentReport))
        .expect("a generated schema is always valid JSON");
    let names: Vec<serde_json::Value> = crate::strategy::names()
        .into_iter()
        .chain([NO_RUNBOOK])
        .map(serde_json::Value::from)
        .collect();
    if let Some(runbook) = schema.pointer_mut("/properties/runbook") {
        runbook["enum"] = serde_json::Value::Array(names);
    }
    // The CLI's validator refuses the draft 2020-12 meta-schema URI (`--json-schema is not a
    // valid JSON Schema: no schema with key or ref ...`); the keywords used here mean the
    // same in the draft it assumes.
    if let Some(fields) = schema.as_object_mut() {
        fields.remove("$schema");
    }
    schema
}

/// The schema as the committed file holds it: pretty-printed, with a final newline.
pub fn agent_report_schema_pretty() -> String {
    let mut text = serde_json::to_string_pretty(&agent_report_schema())
        .expect("a JSON value always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_names_every_runbook_and_none() {
        let schema = agent_report_schema();
        let allowed = schema["properties"]["runbook"]["enum"]
            .as_array()
            .expect("an enum");
        assert!(allowed.iter().any(|v| v == "etcd"), "{allowed:?}");
        assert_eq!(allowed.last().and_then(|v| v.as_str()), Some(NO_RUNBOOK));
        let required = schema["required"].as_array().expect("required fields");
        for field in ["summary", "findings", "confidence", "runbook"] {
            assert!(required.iter().any(|r| r == field), "{field}");
        }
    }

    #[test]
    fn counts_split_supported_from_unsupported() {
        let finding = |supported| CheckedFinding {
            claim: "x".to_owned(),
            supported,
            evidence: Vec::new(),
        };
        let report = CheckedReport {
            summary: String::new(),
            findings: vec![finding(true), finding(false), finding(true)],
            ruled_out: Vec::new(),
            confidence: Confidence::High,
            next_steps: Vec::new(),
            not_checked: Vec::new(),
            runbook: None,
        };
        assert_eq!(
            report.counts(),
            FindingCounts {
                supported: 2,
                unsupported: 1
            }
        );
    }
}
