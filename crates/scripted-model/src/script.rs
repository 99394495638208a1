//! The script: which answers the scripted model gives, conversation by conversation and turn
//! by turn, and the stateless choice of the answer for one request.
//!
//! A script is data (serde), so a recorded demo investigation can be loaded from a JSON or
//! YAML file; the builder functions are for tests. In a file a turn looks like this:
//!
//! ```yaml
//! conversations:
//!   - matcher: cluster-a          # optional
//!     repeat_last: false          # optional: answer the last turn forever
//!     turns:
//!       - kind: tool_use
//!         text: Let me look at the pods.   # optional text before the calls
//!         calls:
//!           - name: Bash
//!             input: { command: kubectl get pods -A, description: List pods }
//!       - kind: delayed
//!         delay_ms: 2000
//!         turn: { kind: text, text: All pods healthy. }
//!       - kind: api_error
//!         status: 529
//!         error_type: overloaded_error
//!         message: Overloaded
//! ```

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Everything the scripted model will answer: one or more conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Tried in order; the first whose matcher fits the request answers it.
    pub conversations: Vec<Conversation>,
}

/// One CLI run's conversation: the turns the model plays, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversation {
    /// A substring that must appear in the request's system prompt or first user message for
    /// this conversation to answer it. `None` matches every request, so put such a
    /// conversation last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
    /// The model's turns: turn `i` answers a request whose history holds `i` assistant
    /// messages.
    pub turns: Vec<Turn>,
    /// Answer the last turn again for every later index (a model that never stops, to test
    /// `--max-turns`). Without it, a request past the last turn is refused with an
    /// `invalid_request_error`, which ends the CLI run with an error naming the script.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat_last: bool,
}

/// One answer of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Turn {
    /// Ask the CLI to run one or more tools (`stop_reason: tool_use`), optionally after some
    /// text.
    ToolUse {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        calls: Vec<ToolCall>,
    },
    /// Final text: ends the conversation (`stop_reason: end_turn`).
    Text { text: String },
    /// Fail the request with an HTTP status and an Anthropic error body
    /// (`{"type":"error","error":{"type":error_type,"message":message}}`).
    ApiError {
        status: u16,
        error_type: String,
        message: String,
    },
    /// Wait before giving `turn` (to make a run exceed its timeout, or to pace a replay).
    Delayed { delay_ms: u64, turn: Box<Turn> },
}

/// One `tool_use` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The `tool_use` id; generated from the conversation, turn and call indices when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool's name as the CLI knows it: `Bash`, `Read`, `Grep`, `Glob`, `Write`, ...
    pub name: String,
    /// The tool's input; must be a JSON object.
    pub input: Value,
}

impl Script {
    /// A script with one conversation that answers every request.
    pub fn single(turns: Vec<Turn>) -> Script {
        Script {
            conversations: vec![Conversation::new(turns)],
        }
    }

    /// A script with no conversations yet; add them with [`Script::with`].
    pub fn new() -> Script {
        Script {
            conversations: Vec::new(),
        }
    }

    /// Adds a conversation after the existing ones.
    pub fn with(mut self, conversation: Conversation) -> Script {
        self.conversations.push(conversation);
        self
    }

    /// Parses a script from JSON text.
    pub fn from_json(text: &str) -> Result<Script> {
        Self::parse_json(text, "the inline script")
    }

    /// Parses a script from YAML text.
    pub fn from_yaml(text: &str) -> Result<Script> {
        Self::parse_yaml(text, "the inline script")
    }

    /// Loads and validates a script file; `.json` is read as JSON, `.yaml`/`.yml` as YAML.
    pub fn load(path: impl AsRef<Path>) -> Result<Script> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadScript {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = format!("the script file {}", path.display());
        let script = match path.extension().and_then(|ext| ext.to_str()) {
            Some("json") => Self::parse_json(&text, &origin)?,
            Some("yaml" | "yml") => Self::parse_yaml(&text, &origin)?,
            _ => {
                return Err(Error::UnknownScriptFormat {
                    path: path.to_path_buf(),
                });
            }
        };
        script
            .validate()
            .map_err(|err| Error::InvalidScript(format!("{origin}: {err}")))?;
        Ok(script)
    }

    fn parse_json(text: &str, origin: &str) -> Result<Script> {
        serde_json::from_str(text).map_err(|source| Error::Json {
            origin: origin.to_owned(),
            source,
        })
    }

    fn parse_yaml(text: &str, origin: &str) -> Result<Script> {
        serde_yaml_ng::from_str(text).map_err(|source| Error::Yaml {
            origin: origin.to_owned(),
            source,
        })
    }

    /// Checks what serde cannot: every conversation can be reached and has turns, tool calls
    /// are well formed, error statuses are errors. [`crate::ScriptedModel::start`] calls it,
    /// so a broken script fails the test at once rather than as a confusing CLI error.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidScript(message));
        if self.conversations.is_empty() {
            return invalid("the script has no conversations".to_owned());
        }
        let mut catch_all: Option<usize> = None;
        for (c, conversation) in self.conversations.iter().enumerate() {
            if let Some(earlier) = catch_all {
                return invalid(format!(
                    "conversation {c} can never answer: conversation {earlier} before it has \
                     no matcher and answers every request"
                ));
            }
            match &conversation.matcher {
                None => catch_all = Some(c),
                Some(matcher) if matcher.is_empty() => {
                    return invalid(format!(
                        "conversation {c} has an empty matcher: leave it out to match everything"
                    ));
                }
                Some(_) => {}
            }
            if conversation.turns.is_empty() {
                return invalid(format!("conversation {c} has no turns"));
            }
            for (t, turn) in conversation.turns.iter().enumerate() {
                turn.validate().map_err(|err| {
                    Error::InvalidScript(format!("conversation {c}, turn {t}: {err}"))
                })?;
            }
        }
        Ok(())
    }

    /// Chooses the answer for a request, from what identifies its conversation (the system
    /// prompt and the first user message) and how far it is (the number of assistant messages
    /// in its history).
    pub(crate) fn select(
        &self,
        system: &str,
        first_user: &str,
        assistant_turns: usize,
    ) -> Selection<'_> {
        let found = self
            .conversations
            .iter()
            .enumerate()
            .find(|(_, conversation)| {
                conversation
                    .matcher
                    .as_deref()
                    .is_none_or(|m| system.contains(m) || first_user.contains(m))
            });
        let Some((conversation, script)) = found else {
            return Selection::NoMatch;
        };
        let answer = match script.turns.get(assistant_turns) {
            Some(turn) => Some(turn),
            None if script.repeat_last => script.turns.last(),
            None => None,
        };
        match answer {
            Some(answer) => Selection::Turn {
                conversation,
                turn: assistant_turns,
                answer,
            },
            None => Selection::Exhausted {
                conversation,
                turn: assistant_turns,
                len: script.turns.len(),
            },
        }
    }
}

impl Default for Script {
    fn default() -> Self {
        Script::new()
    }
}

/// The outcome of [`Script::select`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Selection<'s> {
    /// Answer with this turn.
    Turn {
        conversation: usize,
        turn: usize,
        answer: &'s Turn,
    },
    /// The conversation matched but has no turn at this index.
    Exhausted {
        conversation: usize,
        turn: usize,
        len: usize,
    },
    /// No conversation's matcher fits the request.
    NoMatch,
}

impl Conversation {
    /// A conversation that answers every request.
    pub fn new(turns: Vec<Turn>) -> Conversation {
        Conversation {
            matcher: None,
            turns,
            repeat_last: false,
        }
    }

    /// Only answers requests whose system prompt or first user message contains `matcher`.
    pub fn matching(mut self, matcher: impl Into<String>) -> Conversation {
        self.matcher = Some(matcher.into());
        self
    }

    /// Repeats the last turn for every later index.
    pub fn repeat_last(mut self) -> Conversation {
        self.repeat_last = true;
        self
    }
}

impl Turn {
    /// One `Bash` call running `command`.
    pub fn bash(command: impl Into<String>) -> Turn {
        Turn::tools(vec![ToolCall::bash(command)])
    }

    /// One call of any tool.
    pub fn tool(name: impl Into<String>, input: Value) -> Turn {
        Turn::tools(vec![ToolCall::new(name, input)])
    }

    /// Several tool calls in one assistant message (the CLI runs them, then answers all).
    pub fn tools(calls: Vec<ToolCall>) -> Turn {
        Turn::ToolUse { text: None, calls }
    }

    /// The final answer in structured form: a call of the `StructuredOutput` tool the CLI
    /// adds under `--json-schema`, whose accepted input becomes the result's
    /// `structured_output` and ends the run.
    pub fn structured(answer: Value) -> Turn {
        Turn::tool("StructuredOutput", answer)
    }

    /// Final text: the CLI's `result`.
    pub fn text(text: impl Into<String>) -> Turn {
        Turn::Text { text: text.into() }
    }

    /// An HTTP error with an Anthropic error body.
    pub fn api_error(
        status: u16,
        error_type: impl Into<String>,
        message: impl Into<String>,
    ) -> Turn {
        Turn::ApiError {
            status,
            error_type: error_type.into(),
            message: message.into(),
        }
    }

    /// `500 api_error`, as the API answers an internal failure.
    pub fn server_error() -> Turn {
        Turn::api_error(500, "api_error", "Internal server error")
    }

    /// `529 overloaded_error`, as the API answers when it is overloaded.
    pub fn overloaded() -> Turn {
        Turn::api_error(529, "overloaded_error", "Overloaded")
    }

    /// Gives this turn only after `delay`.
    pub fn delayed(self, delay: Duration) -> Turn {
        Turn::Delayed {
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            turn: Box::new(self),
        }
    }

    /// Puts `text` before a tool-use turn's calls (a model that explains what it is about
    /// to do). Other turns are returned unchanged.
    pub fn with_text(self, text: impl Into<String>) -> Turn {
        match self {
            Turn::ToolUse { calls, .. } => Turn::ToolUse {
                text: Some(text.into()),
                calls,
            },
            Turn::Delayed { delay_ms, turn } => Turn::Delayed {
                delay_ms,
                turn: Box::new(turn.with_text(text)),
            },
            other => other,
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Turn::ToolUse { calls, .. } => {
                if calls.is_empty() {
                    return Err("a tool_use turn needs at least one call".to_owned());
                }
                for (i, call) in calls.iter().enumerate() {
                    if call.name.is_empty() {
                        return Err(format!("call {i} has an empty tool name"));
                    }
                    if !call.input.is_object() {
                        return Err(format!(
                            "call {i} ({}) has input {}, expected a JSON object",
                            call.name, call.input
                        ));
                    }
                }
                Ok(())
            }
            Turn::Text { .. } => Ok(()),
            Turn::ApiError { status, .. } if !(400..=599).contains(status) => Err(format!(
                "api_error status {status} is not an HTTP error status (400..=599)"
            )),
            Turn::ApiError { .. } => Ok(()),
            Turn::Delayed { turn, .. } => turn.validate(),
        }
    }
}

impl ToolCall {
    /// A call of `name` with `input` (a JSON object).
    pub fn new(name: impl Into<String>, input: Value) -> ToolCall {
        ToolCall {
            id: None,
            name: name.into(),
            input,
        }
    }

    /// A `Bash` call. The CLI's `Bash` tool also takes an optional `description`, which only
    /// labels the call in its output.
    pub fn bash(command: impl Into<String>) -> ToolCall {
        ToolCall::new("Bash", json!({ "command": command.into() }))
    }

    /// Sets an explicit `tool_use` id (otherwise one is generated).
    pub fn with_id(mut self, id: impl Into<String>) -> ToolCall {
        self.id = Some(id.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_clusters() -> Script {
        Script::new()
            .with(
                Conversation::new(vec![Turn::bash("a1"), Turn::text("a done")])
                    .matching("cluster-a"),
            )
            .with(Conversation::new(vec![Turn::text("b done")]).matching("cluster-b"))
    }

    #[test]
    fn turn_index_is_the_number_of_assistant_messages() {
        let script = Script::single(vec![
            Turn::bash("one"),
            Turn::bash("two"),
            Turn::text("end"),
        ]);
        for (index, expected) in [(0, "one"), (1, "two")] {
            match script.select("", "", index) {
                Selection::Turn {
                    conversation: 0,
                    turn,
                    answer: Turn::ToolUse { calls, .. },
                } => {
                    assert_eq!(turn, index);
                    assert_eq!(calls[0].input["command"], expected);
                }
                other => panic!("turn {index}: unexpected {other:?}"),
            }
        }
        assert!(matches!(
            script.select("", "", 2),
            Selection::Turn {
                answer: Turn::Text { .. },
                ..
            }
        ));
    }

    #[test]
    fn past_the_last_turn_is_exhausted_unless_repeating() {
        let script = Script::single(vec![Turn::bash("loop")]);
        assert_eq!(
            script.select("", "", 3),
            Selection::Exhausted {
                conversation: 0,
                turn: 3,
                len: 1
            }
        );

        let looping = Script::new()
            .with(Conversation::new(vec![Turn::text("x"), Turn::bash("loop")]).repeat_last());
        match looping.select("", "", 7) {
            Selection::Turn {
                turn: 7, answer, ..
            } => assert_eq!(answer, &Turn::bash("loop")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn matcher_looks_at_system_prompt_and_first_user_message() {
        let script = two_clusters();
        assert!(matches!(
            script.select("investigate cluster-b", "", 0),
            Selection::Turn {
                conversation: 1,
                ..
            }
        ));
        assert!(matches!(
            script.select("", "pods on cluster-a are failing", 1),
            Selection::Turn {
                conversation: 0,
                turn: 1,
                ..
            }
        ));
        assert_eq!(
            script.select("cluster-c", "cluster-c", 0),
            Selection::NoMatch
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let unreachable = Script::single(vec![Turn::text("x")])
            .with(Conversation::new(vec![Turn::text("y")]).matching("b"));
        let err = unreachable
            .validate()
            .expect_err("a conversation after a catch-all");
        assert!(
            err.to_string().contains("conversation 1 can never answer"),
            "{err}"
        );

        let bad_input = Script::single(vec![Turn::tool("Bash", json!("ls"))]);
        let err = bad_input
            .validate()
            .expect_err("tool input that is not an object");
        assert!(err.to_string().contains("conversation 0, turn 0"), "{err}");

        let bad_status = Script::single(vec![
            Turn::api_error(200, "api_error", "no").delayed(Duration::from_millis(1)),
        ]);
        assert!(bad_status.validate().is_err());

        assert!(Script::new().validate().is_err());
        assert!(Script::single(vec![]).validate().is_err());
        assert!(two_clusters().validate().is_ok());
    }

    #[test]
    fn script_round_trips_through_json_and_yaml() {
        let script = Script::new().with(
            Conversation::new(vec![
                Turn::tools(vec![
                    ToolCall::bash("kubectl get pods -A").with_id("toolu_x"),
                ])
                .with_text("Looking."),
                Turn::overloaded(),
                Turn::text("done").delayed(Duration::from_millis(1500)),
            ])
            .matching("cluster-a")
            .repeat_last(),
        );
        let json = serde_json::to_string(&script).expect("serialize to JSON");
        assert_eq!(Script::from_json(&json).expect("parse JSON"), script);
        let yaml = serde_yaml_ng::to_string(&script).expect("serialize to YAML");
        assert_eq!(Script::from_yaml(&yaml).expect("parse YAML"), script);
    }

    #[test]
    fn yaml_file_format_reads_as_documented() {
        let yaml = r"
conversations:
  - matcher: cluster-a
    turns:
      - kind: tool_use
        calls:
          - name: Bash
            input: { command: kubectl get pods -A, description: List pods }
      - kind: delayed
        delay_ms: 2000
        turn: { kind: text, text: All pods healthy. }
      - kind: api_error
        status: 529
        error_type: overloaded_error
        message: Overloaded
";
        let script = Script::from_yaml(yaml).expect("the documented YAML parses");
        assert_eq!(
            script.conversations[0].turns[0],
            Turn::tool(
                "Bash",
                json!({"command": "kubectl get pods -A", "description": "List pods"})
            )
        );
        assert_eq!(
            script.conversations[0].turns[1],
            Turn::text("All pods healthy.").delayed(Duration::from_secs(2))
        );
        assert_eq!(script.conversations[0].turns[2], Turn::overloaded());

        let err = Script::from_yaml("conversations:\n  - turns:\n      - kind: shout\n")
            .expect_err("unknown kind");
        assert!(err.to_string().contains("inline script"), "{err}");
    }

    #[test]
    fn load_picks_the_format_from_the_extension() {
        let dir =
            std::env::temp_dir().join(format!("warroom-scripted-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let script = Script::single(vec![Turn::text("hi")]);
        let json_path = dir.join("s.json");
        std::fs::write(
            &json_path,
            serde_json::to_string(&script).expect("serialize"),
        )
        .expect("write");
        assert_eq!(Script::load(&json_path).expect("load JSON"), script);
        let txt_path = dir.join("s.txt");
        std::fs::write(&txt_path, "").expect("write");
        assert!(matches!(
            Script::load(&txt_path),
            Err(Error::UnknownScriptFormat { .. })
        ));
        assert!(matches!(
            Script::load(dir.join("missing.yaml")),
            Err(Error::ReadScript { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
