//! The Anthropic Messages wire format of the answers: a whole JSON message, or the same
//! message as the server-sent-event stream the CLI reads when it asks for `"stream": true`.

use serde_json::{Value, json};

/// Deltas are cut into pieces of at most this many characters, as the real API streams them,
/// so the client's accumulation of partial text and partial JSON is exercised.
const DELTA_CHARS: usize = 48;

/// One assistant message, ready to be written either way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub id: String,
    pub model: String,
    pub content: Vec<Block>,
    pub stop_reason: StopReason,
    pub usage: Usage,
}

/// A content block of a reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    EndTurn,
    ToolUse,
}

/// Token counts. The CLI computes `total_cost_usd` from them, so they must be present and
/// non-zero for a cost to appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl StopReason {
    fn as_str(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::ToolUse => "tool_use",
        }
    }
}

impl Block {
    fn to_json(&self) -> Value {
        match self {
            Block::Text(text) => json!({ "type": "text", "text": text }),
            Block::ToolUse { id, name, input } => {
                json!({ "type": "tool_use", "id": id, "name": name, "input": input })
            }
        }
    }

    /// The block as `content_block_start` announces it: empty, filled by the deltas.
    fn start_json(&self) -> Value {
        match self {
            Block::Text(_) => json!({ "type": "text", "text": "" }),
            Block::ToolUse { id, name, .. } => {
                json!({ "type": "tool_use", "id": id, "name": name, "input": {} })
            }
        }
    }

    fn deltas(&self) -> Vec<Value> {
        match self {
            Block::Text(text) => chunks(text, DELTA_CHARS)
                .into_iter()
                .map(|piece| json!({ "type": "text_delta", "text": piece }))
                .collect(),
            Block::ToolUse { input, .. } => chunks(&input.to_string(), DELTA_CHARS)
                .into_iter()
                .map(|piece| json!({ "type": "input_json_delta", "partial_json": piece }))
                .collect(),
        }
    }

    /// A rough token count (four bytes a token), for usage.
    pub(crate) fn estimated_tokens(&self) -> u64 {
        let bytes = match self {
            Block::Text(text) => text.len(),
            Block::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
        };
        estimate_tokens(bytes)
    }
}

/// A rough token count for `bytes` of text: four bytes a token, at least one.
pub(crate) fn estimate_tokens(bytes: usize) -> u64 {
    u64::try_from(bytes / 4).unwrap_or(u64::MAX).max(1)
}

impl Reply {
    /// The non-streaming answer: one JSON message.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content.iter().map(Block::to_json).collect::<Vec<_>>(),
            "stop_reason": self.stop_reason.as_str(),
            "stop_sequence": null,
            "usage": self.full_usage(self.usage.output_tokens),
        })
    }

    /// The streaming answer: the events in the order the API sends them.
    pub(crate) fn events(&self) -> Vec<(&'static str, Value)> {
        let mut events = vec![
            (
                "message_start",
                json!({
                    "type": "message_start",
                    "message": {
                        "id": self.id,
                        "type": "message",
                        "role": "assistant",
                        "model": self.model,
                        "content": [],
                        "stop_reason": null,
                        "stop_sequence": null,
                        // The API reports the input at the start and the final output count
                        // in `message_delta`; the CLI adds them up the same way.
                        "usage": self.full_usage(1),
                    }
                }),
            ),
            ("ping", json!({ "type": "ping" })),
        ];
        for (index, block) in self.content.iter().enumerate() {
            events.push((
                "content_block_start",
                json!({ "type": "content_block_start", "index": index, "content_block": block.start_json() }),
            ));
            for delta in block.deltas() {
                events.push((
                    "content_block_delta",
                    json!({ "type": "content_block_delta", "index": index, "delta": delta }),
                ));
            }
            events.push((
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": index }),
            ));
        }
        events.push((
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": { "stop_reason": self.stop_reason.as_str(), "stop_sequence": null },
                "usage": { "output_tokens": self.usage.output_tokens },
            }),
        ));
        events.push(("message_stop", json!({ "type": "message_stop" })));
        events
    }

    /// The streaming answer as the bytes of a `text/event-stream` body.
    pub(crate) fn to_sse(&self) -> String {
        self.events()
            .iter()
            .map(|(name, data)| sse_event(name, data))
            .collect()
    }

    fn full_usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.usage.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        })
    }
}

/// One server-sent event. `data` is compact JSON, which never contains a newline, so one
/// `data:` line is enough.
pub(crate) fn sse_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The Anthropic error body.
pub(crate) fn error_body(error_type: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": error_type, "message": message } })
}

/// `text` cut into pieces of at most `max` characters, on character boundaries. Empty text
/// gives no pieces.
fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest
            .char_indices()
            .nth(max)
            .map_or(rest.len(), |(index, _)| index);
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(content: Vec<Block>, stop_reason: StopReason) -> Reply {
        Reply {
            id: "msg_1".into(),
            model: "claude-test".into(),
            content,
            stop_reason,
            usage: Usage {
                input_tokens: 1000,
                output_tokens: 20,
            },
        }
    }

    /// Parses an SSE body back into (event, data) pairs, checking the framing on the way.
    fn parse_sse(body: &str) -> Vec<(String, Value)> {
        assert!(body.ends_with("\n\n"), "the stream ends with a blank line");
        body.trim_end_matches('\n')
            .split("\n\n")
            .map(|event| {
                let mut lines = event.lines();
                let name = lines
                    .next()
                    .and_then(|l| l.strip_prefix("event: "))
                    .expect("event line");
                let data = lines
                    .next()
                    .and_then(|l| l.strip_prefix("data: "))
                    .expect("data line");
                assert_eq!(lines.next(), None, "one data line per event");
                (
                    name.to_owned(),
                    serde_json::from_str(data).expect("data is JSON"),
                )
            })
            .collect()
    }

    #[test]
    fn stream_has_the_api_event_sequence() {
        let input = json!({ "command": "kubectl get pods -A", "description": "List all pods in every namespace" });
        let sse = reply(
            vec![
                Block::Text("Let me look.".into()),
                Block::ToolUse {
                    id: "toolu_1".into(),
                    name: "Bash".into(),
                    input: input.clone(),
                },
            ],
            StopReason::ToolUse,
        )
        .to_sse();
        let events = parse_sse(&sse);
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        for (name, data) in &events {
            assert_eq!(
                data["type"],
                name.as_str(),
                "the data's type repeats the event name"
            );
        }
        assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 1000);
        assert_eq!(
            events[2].1["content_block"],
            json!({ "type": "text", "text": "" })
        );
        assert_eq!(
            events[3].1["delta"],
            json!({ "type": "text_delta", "text": "Let me look." })
        );
        assert_eq!(events[5].1["index"], 1);
        assert_eq!(
            events[5].1["content_block"],
            json!({ "type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {} })
        );

        // The partial JSON pieces put together give the input back.
        let partial: String = events[6..8]
            .iter()
            .map(|(_, data)| {
                assert_eq!(data["delta"]["type"], "input_json_delta");
                data["delta"]["partial_json"]
                    .as_str()
                    .expect("partial_json is a string")
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&partial).expect("pieces form JSON"),
            input
        );

        assert_eq!(events[9].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[9].1["usage"]["output_tokens"], 20);
    }

    #[test]
    fn final_text_ends_the_turn() {
        let events = parse_sse(
            &reply(
                vec![Block::Text("All pods healthy.".into())],
                StopReason::EndTurn,
            )
            .to_sse(),
        );
        let delta = events
            .iter()
            .find(|(name, _)| name == "message_delta")
            .expect("message_delta");
        assert_eq!(delta.1["delta"]["stop_reason"], "end_turn");
    }

    #[test]
    fn json_message_has_whole_blocks() {
        let message = reply(
            vec![Block::ToolUse {
                id: "toolu_1".into(),
                name: "Bash".into(),
                input: json!({"command": "ls"}),
            }],
            StopReason::ToolUse,
        )
        .to_json();
        assert_eq!(message["type"], "message");
        assert_eq!(message["role"], "assistant");
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(message["content"][0]["input"]["command"], "ls");
        assert_eq!(message["usage"]["input_tokens"], 1000);
        assert_eq!(message["usage"]["output_tokens"], 20);
    }

    #[test]
    fn chunks_respect_character_boundaries() {
        assert!(chunks("", 3).is_empty());
        assert_eq!(chunks("abcdefg", 3), ["abc", "def", "g"]);
        assert_eq!(chunks("äöüß€", 2), ["äö", "üß", "€"]);
    }

    #[test]
    fn text_with_newlines_stays_on_one_data_line() {
        let sse = reply(
            vec![Block::Text("line one\nline two\n\n".into())],
            StopReason::EndTurn,
        )
        .to_sse();
        let text: String = parse_sse(&sse)
            .iter()
            .filter(|(name, _)| name == "content_block_delta")
            .filter_map(|(_, data)| data["delta"]["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text, "line one\nline two\n\n");
    }

    #[test]
    fn error_body_has_the_api_shape() {
        assert_eq!(
            error_body("overloaded_error", "Overloaded"),
            json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } })
        );
    }
}
