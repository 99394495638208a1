//! The requests the CLI sent, as captured by the server, with helpers to read back what
//! tests assert on: the prompt, the system prompt, the tools offered and the tool results.

use serde_json::Value;

/// One HTTP request the server received, whatever its path.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query string, e.g. `/v1/messages`.
    pub path: String,
    /// The query string without `?`, e.g. `beta=true` (the CLI adds it to every call).
    pub query: Option<String>,
    /// Header names (lower case) and values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body; `Null` when the body was empty or not JSON.
    pub body: Value,
    /// How the server answered it.
    pub answer: Answer,
}

/// How the server answered a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// With turn `turn` of conversation `conversation` of the script (either a message or,
    /// for an `api_error` turn, the scripted error).
    Turn { conversation: usize, turn: usize },
    /// A `/v1/messages` request without a `tools` field: one of the CLI's helper calls
    /// (topic or title generation and the like), answered with a short text and never
    /// counted as a conversation turn.
    SideRequest,
    /// `POST /v1/messages/count_tokens`, answered with an estimate.
    CountTokens,
    /// `GET /api/hello`, the CLI's connectivity probe.
    Hello,
    /// Refused with an HTTP error; `reason` says why (unknown path, no conversation matches,
    /// script exhausted, body not JSON, server shutting down).
    Refused { status: u16, reason: String },
}

/// A `tool_result` block the CLI sent back to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResultSeen {
    /// The id of the `tool_use` block it answers.
    pub tool_use_id: String,
    /// The result's text: the `content` string, or its text blocks joined by newlines.
    pub content_text: String,
    /// `is_error` as sent: `true` for refused permissions, unknown tools and failing commands.
    pub is_error: bool,
}

impl CapturedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether the server answered it with a turn of the script (the CLI's structured-output
    /// nudge included: see [`CapturedRequest::is_nudge`]).
    pub fn is_turn(&self) -> bool {
        matches!(self.answer, Answer::Turn { .. })
    }

    /// Whether it is the CLI's one nudge to answer in the `--json-schema` form, sent after the
    /// model ended in plain text: not a step of the agent's investigation.
    pub fn is_nudge(&self) -> bool {
        self.last_user_text()
            .contains(crate::server::STRUCTURED_OUTPUT_NUDGE)
    }

    /// The `model` the CLI asked for.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Whether the CLI asked for a streamed (SSE) answer.
    pub fn is_stream(&self) -> bool {
        self.body
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The `messages` history (empty when absent).
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The number of assistant messages in the history: the index of the turn this request
    /// asks for.
    pub fn assistant_turns(&self) -> usize {
        self.messages()
            .iter()
            .filter(|message| role(message) == Some("assistant"))
            .count()
    }

    /// The system prompt's text: the top-level `system` field, plus the text of any
    /// `system`-role messages in the history. The CLI (2.1.330) sends its environment
    /// section (working directory, platform) as such a message rather than in `system`;
    /// including both keeps tests independent of where a given CLI version puts it.
    pub fn system_text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(system) = self.body.get("system") {
            parts.push(content_text(system));
        }
        for message in self.messages() {
            if role(message) == Some("system") {
                parts.push(message.get("content").map(content_text).unwrap_or_default());
            }
        }
        parts.retain(|part| !part.is_empty());
        parts.join("\n")
    }

    /// All text of the first user message, blocks joined by newlines. Besides the prompt it
    /// holds the `<system-reminder>` blocks the CLI adds before it.
    pub fn first_user_text(&self) -> String {
        self.messages()
            .iter()
            .find(|message| role(message) == Some("user"))
            .and_then(|message| message.get("content"))
            .map(content_text)
            .unwrap_or_default()
    }

    /// All text of the last message when it is a user message (for example the CLI's nudge
    /// to call `StructuredOutput`), else empty.
    pub fn last_user_text(&self) -> String {
        self.messages()
            .last()
            .filter(|message| role(message) == Some("user"))
            .and_then(|message| message.get("content"))
            .map(content_text)
            .unwrap_or_default()
    }

    /// The names of the tools the CLI offered the model (what `--tools` left).
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|tool| tool.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// Every `tool_result` block in the user messages of the history, in order. Each request
    /// carries the whole history, so the last request of a conversation has them all.
    pub fn tool_results(&self) -> Vec<ToolResultSeen> {
        self.messages()
            .iter()
            .filter(|message| role(message) == Some("user"))
            .filter_map(|message| message.get("content").and_then(Value::as_array))
            .flatten()
            .filter(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|block| ToolResultSeen {
                tool_use_id: block
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                content_text: block.get("content").map(content_text).unwrap_or_default(),
                is_error: block
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
            .collect()
    }
}

fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// The text of a `content` (or `system`) value: a plain string, or the `text` of its blocks
/// joined by newlines (other blocks, such as images, have no text and are skipped).
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A second request of a CLI conversation, shaped as 2.1.330 sends it.
    fn second_request() -> CapturedRequest {
        CapturedRequest {
            method: "POST".into(),
            path: "/v1/messages".into(),
            query: Some("beta=true".into()),
            headers: vec![("x-api-key".into(), "test".into())],
            body: json!({
                "model": "claude-opus-5-5",
                "stream": true,
                "system": [
                    {"type": "text", "text": "You are a Claude agent."},
                    {"type": "text", "text": "Investigate cluster-a.", "cache_control": {"type": "ephemeral"}}
                ],
                "tools": [{"name": "Bash"}, {"name": "Read"}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "<system-reminder>attribution</system-reminder>"},
                        {"type": "text", "text": "check the pods"}
                    ]},
                    {"role": "system", "content": "# Environment\nPrimary working directory: /tmp/w"},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "toolu_0_0_0", "name": "Bash", "input": {"command": "echo hi"}},
                        {"type": "tool_use", "id": "toolu_0_0_1", "name": "Bash", "input": {"command": "rm x"}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_0_0_0", "content": "hi", "is_error": false},
                        {"type": "tool_result", "tool_use_id": "toolu_0_0_1", "is_error": true,
                         "content": [{"type": "text", "text": "Permission to use Bash has been denied"}]}
                    ]}
                ]
            }),
            answer: Answer::Turn {
                conversation: 0,
                turn: 1,
            },
        }
    }

    #[test]
    fn reads_prompt_system_and_history() {
        let request = second_request();
        assert_eq!(request.header("X-Api-Key"), Some("test"));
        assert_eq!(request.model(), Some("claude-opus-5-5"));
        assert!(request.is_stream());
        assert!(request.is_turn());
        assert_eq!(request.assistant_turns(), 1);
        assert_eq!(
            request.system_text(),
            "You are a Claude agent.\nInvestigate cluster-a.\n# Environment\nPrimary working directory: /tmp/w"
        );
        assert_eq!(
            request.first_user_text(),
            "<system-reminder>attribution</system-reminder>\ncheck the pods"
        );
        assert_eq!(request.tool_names(), ["Bash", "Read"]);
    }

    #[test]
    fn reads_tool_results_in_both_content_shapes() {
        assert_eq!(
            second_request().tool_results(),
            [
                ToolResultSeen {
                    tool_use_id: "toolu_0_0_0".into(),
                    content_text: "hi".into(),
                    is_error: false,
                },
                ToolResultSeen {
                    tool_use_id: "toolu_0_0_1".into(),
                    content_text: "Permission to use Bash has been denied".into(),
                    is_error: true,
                },
            ]
        );
    }

    #[test]
    fn missing_fields_read_as_empty() {
        let request = CapturedRequest {
            body: Value::Null,
            ..second_request()
        };
        assert_eq!(request.assistant_turns(), 0);
        assert_eq!(request.system_text(), "");
        assert_eq!(request.first_user_text(), "");
        assert!(request.tool_results().is_empty());
        assert!(request.tool_names().is_empty());
        assert!(!request.is_stream());
    }
}
