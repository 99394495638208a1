//! The Claude Code `PreToolUse` hook protocol: the JSON object the CLI writes to the hook's
//! stdin, the answer it reads from stdout, and the decision record appended for the audit log.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Decision, Guard, ToolCall};

/// The fields of the hook input the guard uses; the CLI sends more (`transcript_path`,
/// `permission_mode`, `tool_use_id`), which are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct HookInput {
    /// The CLI session.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The CLI's working directory: the task workspace.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// `PreToolUse`.
    #[serde(default)]
    pub hook_event_name: Option<String>,
    /// The tool.
    pub tool_name: String,
    /// The tool's input.
    #[serde(default)]
    pub tool_input: Value,
}

/// What the hook prints.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookOutput {
    /// The decision in the CLI's terms.
    pub hook_specific_output: HookSpecificOutput,
}

/// The `hookSpecificOutput` object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookSpecificOutput {
    /// Always `PreToolUse`.
    pub hook_event_name: &'static str,
    /// `allow` or `deny`.
    pub permission_decision: &'static str,
    /// The reason, shown to the model when denied.
    pub permission_decision_reason: String,
}

impl HookOutput {
    /// The answer for `decision`.
    pub fn new(decision: &Decision) -> HookOutput {
        HookOutput {
            hook_specific_output: HookSpecificOutput {
                hook_event_name: "PreToolUse",
                permission_decision: if decision.allowed { "allow" } else { "deny" },
                permission_decision_reason: format!("[{}] {}", decision.rule, decision.reason),
            },
        }
    }
}

/// One line of the decisions file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DecisionRecord {
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The CLI session, if the input named one.
    pub session_id: Option<String>,
    /// The tool, or `""` when the input could not be read.
    pub tool: String,
    /// A short summary of the input: the command, the path, or the start of unreadable input.
    pub input: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// The rule.
    pub rule: String,
    /// The reason.
    pub reason: String,
}

/// The longest input summary kept in a record.
const SUMMARY_LEN: usize = 2000;

fn truncate(s: &str) -> String {
    match s.char_indices().nth(SUMMARY_LEN) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

fn summary(tool: &str, input: &Value) -> String {
    let field = |name: &str| input.get(name).and_then(Value::as_str);
    let text = match tool {
        "Bash" => field("command").map(str::to_owned),
        _ => field("file_path")
            .or_else(|| field("notebook_path"))
            .or_else(|| field("path"))
            .or_else(|| field("pattern"))
            .map(str::to_owned),
    };
    truncate(&text.unwrap_or_else(|| input.to_string()))
}

/// Decides the raw hook input `stdin`. `workspace` overrides the input's `cwd`. Malformed
/// input is denied, never an error: the safe answer to what cannot be read is no.
pub fn decide(guard: &Guard, stdin: &str, workspace: Option<&Path>) -> (Decision, DecisionRecord) {
    let (decision, session_id, tool, input) = match serde_json::from_str::<HookInput>(stdin) {
        Err(err) => (
            Decision::deny(
                "hook.malformed-input",
                format!("the hook input is not a tool call: {err}"),
            ),
            None,
            String::new(),
            truncate(stdin),
        ),
        Ok(hook) => {
            let summary = summary(&hook.tool_name, &hook.tool_input);
            let decision = match (
                workspace.map(Path::to_path_buf).or(hook.cwd.clone()),
                hook.hook_event_name.as_deref(),
            ) {
                (_, Some(event)) if event != "PreToolUse" => Decision::deny(
                    "hook.wrong-event",
                    format!("the guard answers PreToolUse hooks only, not `{event}`"),
                ),
                (None, _) => Decision::deny(
                    "hook.no-workspace",
                    "the hook input has no `cwd` and no --workspace was given, so no path can be checked",
                ),
                (Some(root), _) => {
                    let ws = guard.workspace(root);
                    let call = ToolCall {
                        tool_name: hook.tool_name.clone(),
                        tool_input: hook.tool_input,
                    };
                    guard.check(&call, &ws)
                }
            };
            (decision, hook.session_id, hook.tool_name, summary)
        }
    };
    let record = DecisionRecord {
        time: now(),
        session_id,
        tool,
        input,
        decision: if decision.allowed { "allow" } else { "deny" }.to_owned(),
        rule: decision.rule.to_owned(),
        reason: decision.reason.clone(),
    };
    (decision, record)
}

/// The current time, RFC 3339 UTC, as decision records carry it.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
