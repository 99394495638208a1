//! Reading the Claude Code CLI's `--output-format stream-json` output, and judging how a run
//! ended.
//!
//! Shapes (CLI 2.1.x): an `assistant` event carries `message.content` blocks, among them
//! `tool_use {id, name, input}`; a `user` event carries `tool_result {tool_use_id, content,
//! is_error}` blocks (content a string or text blocks); the last event is `result` with
//! `subtype`, `is_error`, `api_error_status`, `num_turns`, `result` (the final text, absent on
//! `error_max_turns`), `total_cost_usd`, `errors` and `permission_denials`
//! (`[{tool_name, tool_use_id, tool_input}]`). Unknown events and fields are ignored, so a
//! newer CLI that adds some does not break the runner.

use serde::Deserialize;
use serde_json::Value;
use warroom_proto::{Denial, Outcome};

/// Longest tool output kept in an audit event; the rest is cut (the agent saw all of it). The
/// output is cut after it is redacted (`task`), so a secret the cut would split is found
/// whole ([`truncate_redacted`]).
pub const MAX_TOOL_OUTPUT: usize = 4 * 1024;
/// Longest serialized tool input kept in an audit event (a Write call may carry a whole
/// file); also cut after redaction ([`bounded_input`]).
pub const MAX_TOOL_INPUT: usize = 16 * 1024;

/// Something in the stream the runner acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The agent asked for a tool (its input whole: it is redacted, then bounded).
    ToolCall {
        id: String,
        tool: String,
        input: Value,
    },
    /// A tool's output (or the refusal the agent saw), whole: it is redacted, then cut.
    ToolResult {
        id: String,
        is_error: bool,
        output: String,
    },
    /// Text the model wrote; the last of it is the partial report of a run that did not end
    /// with a result.
    Text(String),
    /// The end of the run.
    Result(Box<RunResult>),
    /// The CLI's `system/init` event: the model, the CLI's version, and the session whose
    /// transcript the CLI keeps (the conversation a follow-up turn continues).
    Init {
        model: Option<String>,
        cli_version: Option<String>,
        session_id: Option<String>,
    },
}

/// The CLI's `result` event.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct RunResult {
    #[serde(default)]
    pub subtype: String,
    #[serde(default)]
    pub is_error: bool,
    #[serde(default)]
    pub api_error_status: Option<u16>,
    #[serde(default)]
    pub num_turns: u32,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub total_cost_usd: f64,
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub terminal_reason: Option<String>,
    #[serde(default)]
    pub permission_denials: Vec<RawDenial>,
    /// The answer the `StructuredOutput` tool accepted, with `--json-schema`.
    #[serde(default)]
    pub structured_output: Option<Value>,
    #[serde(default)]
    pub usage: Usage,
}

/// The result's token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
}

impl Usage {
    pub fn to_wire(self) -> warroom_proto::Tokens {
        warroom_proto::Tokens {
            input: self.input_tokens,
            output: self.output_tokens,
            cache_read: self.cache_read_input_tokens,
            cache_creation: self.cache_creation_input_tokens,
        }
    }
}

/// One entry of `permission_denials`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawDenial {
    #[serde(default)]
    pub tool_name: String,
    #[serde(default)]
    pub tool_use_id: String,
    #[serde(default)]
    pub tool_input: Value,
}

impl RawDenial {
    pub fn to_wire(&self) -> Denial {
        Denial {
            tool: self.tool_name.clone(),
            tool_use_id: self.tool_use_id.clone(),
            // Whole: bounded after the runner redacted it.
            input: self.tool_input.clone(),
        }
    }
}

/// The items of one line of output. A line that is not JSON (the CLI should not print any) or
/// an event the runner does not use gives nothing.
pub fn parse_line(line: &str) -> Vec<Item> {
    let Ok(event) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    match event.get("type").and_then(Value::as_str) {
        // An API failure shows as a synthetic assistant message with the error as its text;
        // it is not the model's report, and the result event carries the same error.
        Some("assistant") if is_synthetic(&event) => Vec::new(),
        Some("assistant") => blocks(&event)
            .filter_map(|block| match block.get("type").and_then(Value::as_str) {
                Some("tool_use") => Some(Item::ToolCall {
                    id: str_field(block, "id"),
                    tool: str_field(block, "name"),
                    input: block.get("input").cloned().unwrap_or(Value::Null),
                }),
                Some("text") => block
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|text| !text.trim().is_empty())
                    .map(|text| Item::Text(text.to_owned())),
                _ => None,
            })
            .collect(),
        Some("user") => blocks(&event)
            .filter(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|block| Item::ToolResult {
                id: str_field(block, "tool_use_id"),
                is_error: block
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                output: content_text(block.get("content")),
            })
            .collect(),
        Some("system") if event.get("subtype").and_then(Value::as_str) == Some("init") => {
            let text = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_owned);
            vec![Item::Init {
                model: text("model"),
                cli_version: text("claude_code_version"),
                session_id: text("session_id"),
            }]
        }
        Some("result") => match serde_json::from_value::<RunResult>(event) {
            Ok(result) => vec![Item::Result(Box::new(result))],
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn is_synthetic(event: &Value) -> bool {
    event.get("is_api_error_message").and_then(Value::as_bool) == Some(true)
        || event.pointer("/message/model").and_then(Value::as_str) == Some("<synthetic>")
}

fn blocks(event: &Value) -> impl Iterator<Item = &Value> {
    event
        .pointer("/message/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn str_field(value: &Value, name: &str) -> String {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A tool result's content: a string, or text blocks joined by line breaks.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `text` cut to at most `max` bytes at a character boundary, saying how much was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[... {} more bytes truncated]",
        &text[..end],
        text.len() - end
    )
}

/// `text`, already redacted, cut to at most `max` bytes like [`truncate`], but never inside a
/// `[REDACTED:<kind>]` marker: a marker the cut would split is left out whole.
pub fn truncate_redacted(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = redact_marker_prefix();
    // A marker is short (its kind is one word); one that starts further back ends before `end`.
    let mut from = end.saturating_sub(MAX_MARKER);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let split = text[from..]
        .match_indices(prefix.as_str())
        .map(|(at, _)| from + at)
        .filter(|&start| start < end)
        .find(|&start| {
            text[start..]
                .find(']')
                .is_none_or(|close| start + close + 1 > end)
        });
    if let Some(start) = split {
        end = start;
    }
    format!(
        "{}\n[... {} more bytes truncated]",
        &text[..end],
        text.len() - end
    )
}

/// The longest `[REDACTED:<kind>]` marker looked for around a cut.
const MAX_MARKER: usize = 64;

/// `[REDACTED:`, as the redactor writes it.
fn redact_marker_prefix() -> String {
    let marker = warroom_redact::placeholder("");
    marker.strip_suffix(']').unwrap_or(&marker).to_owned()
}

/// A tool input small enough for an audit event: as is, or a truncated preview of its JSON.
/// Given the redacted input, so that the cut never splits a secret the redactor would find.
pub fn bounded_input(input: &Value) -> Value {
    let text = input.to_string();
    if text.len() <= MAX_TOOL_INPUT {
        return input.clone();
    }
    serde_json::json!({ "truncated": true, "preview": truncate_redacted(&text, MAX_TOOL_INPUT) })
}

/// How the CLI process ended, as far as the runner saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The runner stopped it at the request's timeout.
    TimedOut { timeout_secs: u64 },
    /// It exited by itself (`code` is `None` when a signal ended it).
    Exited { code: Option<i32> },
    /// It could not be started.
    SpawnFailed(String),
}

/// The honest outcome of a run and why it did not complete: only a `success` result with no
/// error and a clean exit is `Completed`.
pub fn judge(
    ending: &Ending,
    result: Option<&RunResult>,
    max_turns: u32,
    stderr: &str,
) -> (Outcome, Option<String>) {
    let stderr = stderr.trim();
    let with_stderr = |reason: String| {
        if stderr.is_empty() {
            reason
        } else {
            format!(
                "{reason}; stderr: {}",
                truncate(last_lines(stderr, 5), 1024)
            )
        }
    };
    let code = match ending {
        Ending::TimedOut { timeout_secs } => {
            return (
                Outcome::TimedOut,
                Some(format!(
                    "the investigation did not finish within its timeout of {timeout_secs} s \
                     and was stopped"
                )),
            );
        }
        Ending::SpawnFailed(cause) => {
            return (
                Outcome::Failed,
                Some(format!("cannot start the Claude Code CLI: {cause}")),
            );
        }
        Ending::Exited { code } => *code,
    };
    let Some(result) = result else {
        let how = match code {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_owned(),
        };
        return (
            Outcome::Failed,
            Some(with_stderr(format!(
                "the Claude Code CLI {how} without a result"
            ))),
        );
    };
    if let Some(reason) = failure(result, max_turns) {
        return (Outcome::Failed, Some(reason));
    }
    match code {
        Some(0) => (Outcome::Completed, None),
        Some(code) => (
            Outcome::Failed,
            Some(with_stderr(format!(
                "the Claude Code CLI reported success but exited with status {code}"
            ))),
        ),
        None => (
            Outcome::Failed,
            Some("the Claude Code CLI was killed by a signal".to_owned()),
        ),
    }
}

/// Why a run's final result says it failed (its `subtype`, `is_error` and API status), or
/// `None` for a `success`.
fn failure(result: &RunResult, max_turns: u32) -> Option<String> {
    let text = result
        .result
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let errors = result.errors.join("; ");
    let detail = text.map(str::to_owned).unwrap_or_else(|| errors.clone());
    match result.subtype.as_str() {
        "error_max_turns" => Some(format!("reached the turn limit of {max_turns} turns")),
        "error_max_budget_usd" => Some("reached the cost budget".to_owned()),
        "error_during_execution" => Some(if errors.is_empty() {
            "the agent failed during execution".to_owned()
        } else {
            format!("the agent failed during execution: {errors}")
        }),
        _ if result.api_error_status.is_some() => Some(format!(
            "the model API failed: HTTP {}: {}",
            result.api_error_status.unwrap_or_default(),
            truncate(&detail, 1024)
        )),
        _ if result.is_error => Some(if detail.is_empty() {
            format!("the agent ended with an error ({})", result.subtype)
        } else {
            format!("the agent ended with an error: {}", truncate(&detail, 1024))
        }),
        "success" => None,
        other => Some(format!("the agent ended with `{other}`")),
    }
}

fn last_lines(text: &str, n: usize) -> &str {
    let mut start = text.len();
    for _ in 0..n {
        match text[..start].rfind('\n') {
            Some(i) => start = i,
            None => return text,
        }
    }
    text[start..].trim_start()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn assistant_tool_use_and_text_blocks_become_items() {
        let line = json!({"type":"assistant","message":{"id":"msg_1","content":[
            {"type":"text","text":"Looking at pods."},
            {"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"kubectl get pods -A"}}
        ]}})
        .to_string();
        assert_eq!(
            parse_line(&line),
            vec![
                Item::Text("Looking at pods.".to_owned()),
                Item::ToolCall {
                    id: "toolu_1".to_owned(),
                    tool: "Bash".to_owned(),
                    input: json!({"command":"kubectl get pods -A"}),
                }
            ]
        );
    }

    #[test]
    fn tool_results_accept_string_and_block_content_whole() {
        let line = json!({"type":"user","message":{"role":"user","content":[
            {"type":"tool_result","tool_use_id":"a","content":"ok","is_error":false},
            {"type":"tool_result","tool_use_id":"b","content":[{"type":"text","text":"x"},{"type":"text","text":"y"}]},
            {"type":"tool_result","tool_use_id":"c","content":"é".repeat(MAX_TOOL_OUTPUT),"is_error":true}
        ]}})
        .to_string();
        let items = parse_line(&line);
        assert_eq!(
            items[0],
            Item::ToolResult {
                id: "a".to_owned(),
                is_error: false,
                output: "ok".to_owned()
            }
        );
        assert_eq!(
            items[1],
            Item::ToolResult {
                id: "b".to_owned(),
                is_error: false,
                output: "x\ny".to_owned()
            }
        );
        let Item::ToolResult {
            is_error, output, ..
        } = &items[2]
        else {
            panic!("{:?}", items[2]);
        };
        assert!(is_error);
        // Whole: the runner redacts it before it cuts it.
        assert_eq!(output, &"é".repeat(MAX_TOOL_OUTPUT));
    }

    #[test]
    fn a_cut_never_splits_a_redaction_marker() {
        let marker = warroom_redact::placeholder("private_key");
        let text = format!("{}{marker} tail", "a".repeat(100));
        for max in 100..100 + marker.len() {
            let cut = truncate_redacted(&text, max);
            assert!(
                cut.starts_with(&format!("{}\n[... ", "a".repeat(100))),
                "cut at {max}: {cut}"
            );
        }
        let cut = truncate_redacted(&text, 100 + marker.len());
        assert!(
            cut.starts_with(&format!("{}{marker}\n[... ", "a".repeat(100))),
            "{cut}"
        );
        assert_eq!(truncate_redacted("short", 10), "short");
        assert_eq!(
            truncate_redacted("aé", 2),
            "a\n[... 2 more bytes truncated]"
        );
    }

    #[test]
    fn result_event_carries_figures_and_denials() {
        let line = json!({"type":"result","subtype":"success","is_error":false,
            "api_error_status":null,"num_turns":4,"result":"done","total_cost_usd":0.0016,
            "permission_denials":[{"tool_name":"Bash","tool_use_id":"toolu_0_1",
                "tool_input":{"command":"kubectl delete pod x"}}],
            "usage":{"input_tokens":200}})
        .to_string();
        let items = parse_line(&line);
        let [Item::Result(result)] = items.as_slice() else {
            panic!("no result");
        };
        assert_eq!(result.num_turns, 4);
        assert_eq!(result.result.as_deref(), Some("done"));
        assert_eq!(
            result.permission_denials[0].to_wire(),
            Denial {
                tool: "Bash".to_owned(),
                tool_use_id: "toolu_0_1".to_owned(),
                input: json!({"command":"kubectl delete pod x"}),
            }
        );
    }

    #[test]
    fn noise_is_ignored() {
        assert!(parse_line("not json").is_empty());
        assert_eq!(
            parse_line(
                r#"{"type":"system","subtype":"init","model":"m","claude_code_version":"2.1.330","session_id":"649ca1c4-03d9"}"#
            ),
            vec![Item::Init {
                model: Some("m".to_owned()),
                cli_version: Some("2.1.330".to_owned()),
                session_id: Some("649ca1c4-03d9".to_owned()),
            }]
        );
        assert!(parse_line(r#"{"type":"system","subtype":"api_retry"}"#).is_empty());
        assert!(parse_line(r#"{"type":"assistant"}"#).is_empty());
        let api_error = json!({"type":"assistant","is_api_error_message":true,"message":{
            "model":"<synthetic>","content":[{"type":"text","text":"API Error: 500 boom"}]}});
        assert!(parse_line(&api_error.to_string()).is_empty());
    }

    fn exited(code: i32) -> Ending {
        Ending::Exited { code: Some(code) }
    }

    #[test]
    fn only_a_clean_success_completes() {
        let ok = RunResult {
            subtype: "success".to_owned(),
            result: Some("report".to_owned()),
            ..RunResult::default()
        };
        assert_eq!(
            judge(&exited(0), Some(&ok), 30, ""),
            (Outcome::Completed, None)
        );
        let (outcome, reason) = judge(&exited(1), Some(&ok), 30, "boom");
        assert_eq!(outcome, Outcome::Failed);
        assert!(
            reason
                .unwrap_or_default()
                .contains("status 1; stderr: boom")
        );
    }

    #[test]
    fn errors_fail_with_readable_reasons() {
        let max_turns = RunResult {
            subtype: "error_max_turns".to_owned(),
            is_error: true,
            errors: vec!["Reached maximum number of turns (2)".to_owned()],
            ..RunResult::default()
        };
        assert_eq!(
            judge(&exited(1), Some(&max_turns), 2, ""),
            (
                Outcome::Failed,
                Some("reached the turn limit of 2 turns".to_owned())
            )
        );

        // The CLI reports an API failure with subtype `success`.
        let api = RunResult {
            subtype: "success".to_owned(),
            is_error: true,
            api_error_status: Some(500),
            result: Some("API Error: 500 Internal server error".to_owned()),
            ..RunResult::default()
        };
        assert_eq!(
            judge(&exited(1), Some(&api), 30, ""),
            (
                Outcome::Failed,
                Some(
                    "the model API failed: HTTP 500: API Error: 500 Internal server error"
                        .to_owned()
                )
            )
        );

        let during = RunResult {
            subtype: "error_during_execution".to_owned(),
            is_error: true,
            errors: vec!["tool crashed".to_owned()],
            ..RunResult::default()
        };
        assert_eq!(
            judge(&exited(1), Some(&during), 30, "").1.as_deref(),
            Some("the agent failed during execution: tool crashed")
        );

        let budget = RunResult {
            subtype: "error_max_budget_usd".to_owned(),
            is_error: true,
            ..RunResult::default()
        };
        assert_eq!(judge(&exited(1), Some(&budget), 30, "").0, Outcome::Failed);

        let generic = RunResult {
            subtype: "success".to_owned(),
            is_error: true,
            result: Some("something broke".to_owned()),
            ..RunResult::default()
        };
        assert_eq!(
            judge(&exited(0), Some(&generic), 30, "").1.as_deref(),
            Some("the agent ended with an error: something broke")
        );
    }

    #[test]
    fn no_result_timeout_and_spawn_failure() {
        let (outcome, reason) = judge(&exited(2), None, 30, "line1\nfatal: bad flag\n");
        assert_eq!(outcome, Outcome::Failed);
        assert_eq!(
            reason.as_deref(),
            Some(
                "the Claude Code CLI exited with status 2 without a result; stderr: \
                 line1\nfatal: bad flag"
            )
        );
        let ok = RunResult {
            subtype: "success".to_owned(),
            ..RunResult::default()
        };
        let (outcome, reason) = judge(&Ending::TimedOut { timeout_secs: 5 }, Some(&ok), 30, "");
        assert_eq!(outcome, Outcome::TimedOut);
        assert!(reason.unwrap_or_default().contains("timeout of 5 s"));
        let (outcome, reason) = judge(&Ending::SpawnFailed("No such file".into()), None, 30, "");
        assert_eq!(outcome, Outcome::Failed);
        assert!(reason.unwrap_or_default().contains("No such file"));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("aé", 2), "a\n[... 2 more bytes truncated]");
    }
}
