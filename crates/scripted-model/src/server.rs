//! The HTTP server: routes, the answer to each request, request capture, and the two ways to
//! run it (a [`ScriptedModel`] owned by a test, or [`serve`] in a long-running binary).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::request::{Answer, CapturedRequest, ToolResultSeen};
use crate::script::{Script, Selection, Turn};
use crate::wire::{Block, Reply, StopReason, Usage, error_body, estimate_tokens};

/// Late in a long investigation every request carries the whole history with all tool
/// output; axum's default 2 MB body limit would refuse those.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// What a side request (a CLI helper call, not a conversation turn) is answered with.
const SIDE_REQUEST_TEXT: &str = "scripted-model";

/// A running scripted model, owned by a test. Stops when dropped.
#[derive(Debug)]
pub struct ScriptedModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// State shared by the handlers and the owner.
#[derive(Debug)]
struct Shared {
    script: Script,
    requests: Mutex<Vec<CapturedRequest>>,
    /// The number of captured requests, so waiters wake when one arrives.
    received: watch::Sender<usize>,
    /// Set once on shutdown; scripted delays end early when it is.
    stopping: watch::Sender<bool>,
    next_message: AtomicU64,
    /// Answers given to the next conversation turns instead of the script's (an outage of
    /// the API: 5xx, 529), first in first out.
    outage: Mutex<std::collections::VecDeque<Turn>>,
}

impl ScriptedModel {
    /// Validates `script`, binds `127.0.0.1:0` and starts serving in a task of the current
    /// Tokio runtime. An invalid script is an [`std::io::ErrorKind::InvalidInput`] error.
    pub async fn start(script: Script) -> std::io::Result<ScriptedModel> {
        script
            .validate()
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(script));
        let mut stopping = shared.stopping.subscribe();
        let shutdown = async move {
            // Errs only when the sender is gone, which also means stop.
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let task = tokio::spawn(run(listener, Arc::clone(&shared), shutdown));
        Ok(ScriptedModel {
            addr,
            shared,
            task: Some(task),
        })
    }

    /// Answers the next conversation turns, whichever conversation asks, with `turns` (for
    /// example [`Turn::server_error`] and [`Turn::overloaded`]) before the script answers
    /// again: an API that fails for a while. Side requests are not affected.
    pub fn fail_next(&self, turns: impl IntoIterator<Item = Turn>) {
        self.shared
            .outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(turns);
    }

    /// `http://127.0.0.1:PORT`, the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order (side requests and refused ones
    /// included; see [`CapturedRequest::answer`]).
    pub fn requests(&self) -> Vec<CapturedRequest> {
        self.shared.snapshot()
    }

    /// The agent's turns: the requests answered with a turn of the script, without the CLI's
    /// structured-output nudges ([`ScriptedModel::nudges`]).
    pub fn turn_requests(&self) -> Vec<CapturedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_turn() && !r.is_nudge())
            .collect()
    }

    /// The CLI's nudges to answer in the `--json-schema` form, each answered by the script.
    pub fn nudges(&self) -> Vec<CapturedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_turn() && r.is_nudge())
            .collect()
    }

    /// Every tool result the CLI sent back, over all conversations, each once (by
    /// `tool_use_id`), in the order first seen.
    pub fn tool_results(&self) -> Vec<ToolResultSeen> {
        let mut seen: Vec<ToolResultSeen> = Vec::new();
        for request in self.turn_requests() {
            for result in request.tool_results() {
                if !seen.iter().any(|r| r.tool_use_id == result.tool_use_id) {
                    seen.push(result);
                }
            }
        }
        seen
    }

    /// Waits until `condition` holds for the requests received so far, and returns them; an
    /// [`Error::WaitTimeout`] after `timeout`. For tests that must act while the CLI is
    /// mid-run, e.g. cancel it once it is waiting on a delayed turn.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&[CapturedRequest]) -> bool,
    ) -> Result<Vec<CapturedRequest>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut received = self.shared.received.subscribe();
        loop {
            // Mark the current count as seen before reading, so a request arriving between
            // the check and the wait still wakes us.
            received.borrow_and_update();
            let requests = self.requests();
            if condition(&requests) {
                return Ok(requests);
            }
            let changed = tokio::time::timeout_at(deadline, received.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                return Err(Error::WaitTimeout {
                    timeout,
                    seen: self.requests().len(),
                });
            }
        }
    }

    /// Stops the server: requests in flight finish (scripted delays are cut short) and the
    /// listener closes.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.shared.stopping.send_replace(true);
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        // The serving task sees this and ends on its own; nothing to wait for in a destructor.
        self.shared.stopping.send_replace(true);
    }
}

/// Serves `script` on `listener` until `shutdown` resolves, for a long-running binary (the
/// replay demo). The script is validated first: an invalid one is an
/// [`std::io::ErrorKind::InvalidInput`] error.
pub async fn serve(
    listener: TcpListener,
    script: Script,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    script
        .validate()
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
    let shared = Arc::new(Shared::new(script));
    let stopping = Arc::clone(&shared);
    let shutdown = async move {
        shutdown.await;
        stopping.stopping.send_replace(true);
    };
    run(listener, shared, shutdown).await
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "scripted model listening");
    }
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/api/hello", get(hello))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

impl Shared {
    fn new(script: Script) -> Shared {
        Shared {
            script,
            requests: Mutex::new(Vec::new()),
            received: watch::Sender::new(0),
            stopping: watch::Sender::new(false),
            next_message: AtomicU64::new(1),
            outage: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// The next answer of a scripted outage, if one is under way.
    fn outage_turn(&self) -> Option<Turn> {
        self.outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    fn snapshot(&self) -> Vec<CapturedRequest> {
        // The log is only ever appended to, so a panic elsewhere cannot leave it half-written.
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, request: CapturedRequest) {
        tracing::debug!(
            method = %request.method,
            path = %request.path,
            answer = ?request.answer,
            "scripted model request"
        );
        if let Answer::Refused { status, reason } = &request.answer {
            tracing::warn!(status, reason = %reason, path = %request.path, "scripted model refused a request");
        }
        let count = {
            let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            requests.push(request);
            requests.len()
        };
        self.received.send_replace(count);
    }

    /// Sleeps for `delay`, or less if the server is stopping. Returns whether it slept fully.
    async fn sleep(&self, delay: Duration) -> bool {
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            _ = stopping.wait_for(|stop| *stop) => false,
        }
    }

    /// A server-wide message number, for message and tool-use ids.
    fn next_number(&self) -> u64 {
        self.next_message.fetch_add(1, Ordering::Relaxed)
    }
}

fn capture(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Value,
    answer: Answer,
) -> CapturedRequest {
    CapturedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        answer,
    }
}

/// What a `/v1/messages` request gets, decided before any delay.
enum Plan {
    Reply {
        turn: Turn,
        conversation: usize,
        turn_index: usize,
    },
    Side,
    Refuse {
        status: StatusCode,
        error_type: &'static str,
        message: String,
    },
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (json, parse_error) = match serde_json::from_slice::<Value>(&body) {
        Ok(json) => (json, None),
        Err(err) => (Value::Null, Some(err)),
    };
    let input_tokens = estimate_tokens(body.len());
    // The answer is filled in once the plan is made from the captured request itself.
    let mut request = capture(&method, &uri, &headers, json, Answer::SideRequest);
    let plan = match parse_error {
        None => match plan(&shared.script, &request) {
            // During a scripted outage the turn is answered with the outage's answer.
            Plan::Reply {
                turn,
                conversation,
                turn_index,
            } => Plan::Reply {
                turn: shared.outage_turn().unwrap_or(turn),
                conversation,
                turn_index,
            },
            plan => plan,
        },
        Some(err) => Plan::Refuse {
            status: StatusCode::BAD_REQUEST,
            error_type: "invalid_request_error",
            message: format!("the request body is not JSON: {err}"),
        },
    };
    request.answer = match &plan {
        Plan::Reply {
            conversation,
            turn_index,
            ..
        } => Answer::Turn {
            conversation: *conversation,
            turn: *turn_index,
        },
        Plan::Side => Answer::SideRequest,
        Plan::Refuse {
            status, message, ..
        } => Answer::Refused {
            status: status.as_u16(),
            reason: message.clone(),
        },
    };
    let stream = request.is_stream();
    let model = request.model().unwrap_or("claude-scripted").to_owned();
    // Recorded before any scripted delay, so a test can see the CLI waiting on it.
    shared.record(request);

    let turn = match plan {
        Plan::Refuse {
            status,
            error_type,
            message,
        } => return error_response(status, error_type, &message),
        Plan::Side => Turn::text(SIDE_REQUEST_TEXT),
        Plan::Reply { turn, .. } => turn,
    };
    answer_turn(&shared, turn, model, input_tokens, stream).await
}

/// What the CLI (2.1.330) sends as a user message when the model ended without calling the
/// `StructuredOutput` tool `--json-schema` added.
pub(crate) const STRUCTURED_OUTPUT_NUDGE: &str = "[structured-output-enforce]";

fn plan(script: &Script, request: &CapturedRequest) -> Plan {
    // The CLI's agent loop always sends its tool list (an empty one under `--tools ""`);
    // its helper calls (topic and title generation and the like) send none.
    if request.body.get("tools").is_none() {
        return Plan::Side;
    }
    match script.select(
        &request.system_text(),
        &request.first_user_text(),
        request.assistant_turns(),
    ) {
        Selection::Turn {
            conversation,
            turn,
            answer,
        } => Plan::Reply {
            turn: answer.clone(),
            conversation,
            turn_index: turn,
        },
        // Under `--json-schema` the CLI answers a final text that did not call
        // `StructuredOutput` with one nudge; a script that ends in text answers it with the
        // same text, as a model that cannot give the form would, and the run ends with it.
        Selection::Exhausted {
            conversation, turn, ..
        } if request.last_user_text().contains(STRUCTURED_OUTPUT_NUDGE)
            && final_text(&script.conversations[conversation].turns).is_some() =>
        {
            Plan::Reply {
                turn: final_text(&script.conversations[conversation].turns)
                    .unwrap_or_else(|| Turn::text("")),
                conversation,
                turn_index: turn,
            }
        }
        Selection::Exhausted {
            conversation,
            turn,
            len,
        } => Plan::Refuse {
            status: StatusCode::BAD_REQUEST,
            error_type: "invalid_request_error",
            message: format!(
                "warroom scripted model: conversation {conversation} has {len} turn(s) and \
                 no turn {turn} (the request's history has {turn} assistant messages)"
            ),
        },
        Selection::NoMatch => Plan::Refuse {
            status: StatusCode::BAD_REQUEST,
            error_type: "invalid_request_error",
            message: format!(
                "warroom scripted model: no conversation matches this request (matchers: {:?})",
                script
                    .conversations
                    .iter()
                    .filter_map(|c| c.matcher.as_deref())
                    .collect::<Vec<_>>()
            ),
        },
    }
}

/// The text a conversation ends with (a delayed one's, answered without its delay), if it
/// ends in text.
fn final_text(turns: &[Turn]) -> Option<Turn> {
    let mut last = turns.last()?;
    while let Turn::Delayed { turn, .. } = last {
        last = turn;
    }
    matches!(last, Turn::Text { .. }).then(|| last.clone())
}

async fn answer_turn(
    shared: &Shared,
    mut turn: Turn,
    model: String,
    input_tokens: u64,
    stream: bool,
) -> Response {
    loop {
        turn = match turn {
            Turn::Delayed { delay_ms, turn } => {
                if !shared.sleep(Duration::from_millis(delay_ms)).await {
                    return error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "overloaded_error",
                        "warroom scripted model: shutting down",
                    );
                }
                *turn
            }
            Turn::ApiError {
                status,
                error_type,
                message,
            } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return error_response(status, &error_type, &message);
            }
            Turn::Text { text } => {
                let number = shared.next_number();
                let content = vec![Block::Text(text)];
                return reply_response(
                    number,
                    content,
                    StopReason::EndTurn,
                    model,
                    input_tokens,
                    stream,
                );
            }
            Turn::ToolUse { text, calls } => {
                // Ids must be unique within a conversation; deriving them from the message
                // number makes them unique on the whole server, parallel runs included.
                let number = shared.next_number();
                let mut content: Vec<Block> = text.into_iter().map(Block::Text).collect();
                for (i, call) in calls.into_iter().enumerate() {
                    content.push(Block::ToolUse {
                        id: call
                            .id
                            .unwrap_or_else(|| format!("toolu_scripted_{number:06}_{i}")),
                        name: call.name,
                        input: call.input,
                    });
                }
                return reply_response(
                    number,
                    content,
                    StopReason::ToolUse,
                    model,
                    input_tokens,
                    stream,
                );
            }
        };
    }
}

fn reply_response(
    number: u64,
    content: Vec<Block>,
    stop_reason: StopReason,
    model: String,
    input_tokens: u64,
    stream: bool,
) -> Response {
    let output_tokens = content.iter().map(Block::estimated_tokens).sum();
    let reply = Reply {
        // Distinct ids matter: the CLI merges streamed messages that share an id.
        id: format!("msg_scripted_{number:06}"),
        model,
        content,
        stop_reason,
        usage: Usage {
            input_tokens,
            output_tokens,
        },
    };
    if stream {
        let mut response = Response::new(Body::from(reply.to_sse()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    } else {
        json_response(StatusCode::OK, &reply.to_json())
    }
}

async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input_tokens = estimate_tokens(body.len());
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.record(capture(&method, &uri, &headers, json, Answer::CountTokens));
    json_response(StatusCode::OK, &json!({ "input_tokens": input_tokens }))
}

async fn hello(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    shared.record(capture(&method, &uri, &headers, Value::Null, Answer::Hello));
    json_response(StatusCode::OK, &json!({ "message": "hello" }))
}

async fn not_found(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let message = format!(
        "warroom scripted model: no route for {method} {}",
        uri.path()
    );
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.record(capture(
        &method,
        &uri,
        &headers,
        json,
        Answer::Refused {
            status: StatusCode::NOT_FOUND.as_u16(),
            reason: message.clone(),
        },
    ));
    error_response(StatusCode::NOT_FOUND, "not_found_error", &message)
}

fn error_response(status: StatusCode, error_type: &str, message: &str) -> Response {
    json_response(status, &error_body(error_type, message))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Conversation;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A minimal HTTP/1.1 exchange over a fresh connection: (status, content type, body).
    async fn call(
        addr: SocketAddr,
        method: &str,
        target: &str,
        body: &Value,
    ) -> (u16, String, String) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "{method} {target} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             x-api-key: test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("receive");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let content_type = head
            .lines()
            .find_map(|line| line.strip_prefix("content-type: "))
            .unwrap_or_default()
            .to_owned();
        (status, content_type, body.to_owned())
    }

    fn conversation_request(prompt: &str, history: Vec<Value>, stream: bool) -> Value {
        let mut messages =
            vec![json!({"role": "user", "content": [{"type": "text", "text": prompt}]})];
        messages.extend(history);
        json!({
            "model": "claude-test",
            "stream": stream,
            "system": [{"type": "text", "text": "You are a test."}],
            "tools": [{"name": "Bash"}],
            "messages": messages,
        })
    }

    fn after_tool_use() -> Vec<Value> {
        vec![
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "echo hi"}}]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "hi", "is_error": false}]}),
        ]
    }

    #[tokio::test]
    async fn answers_turns_by_history_length_in_both_formats() {
        let model = ScriptedModel::start(Script::single(vec![
            Turn::bash("echo hi"),
            Turn::text("All good."),
        ]))
        .await
        .expect("start");
        let addr = model.local_addr();

        let (status, content_type, body) = call(
            addr,
            "POST",
            "/v1/messages?beta=true",
            &conversation_request("check", vec![], true),
        )
        .await;
        assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
        assert!(body.starts_with("event: message_start\n"), "{body}");
        assert!(
            body.contains(r#""name":"Bash""#) && body.contains(r#""stop_reason":"tool_use""#),
            "{body}"
        );

        let (status, content_type, body) = call(
            addr,
            "POST",
            "/v1/messages",
            &conversation_request("check", after_tool_use(), false),
        )
        .await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        let message: Value = serde_json::from_str(&body).expect("JSON message");
        assert_eq!(message["content"][0]["text"], "All good.");
        assert_eq!(message["stop_reason"], "end_turn");

        let requests = model.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].path, "/v1/messages");
        assert_eq!(requests[0].query.as_deref(), Some("beta=true"));
        assert_eq!(requests[0].header("x-api-key"), Some("test"));
        assert_eq!(
            requests[0].answer,
            Answer::Turn {
                conversation: 0,
                turn: 0
            }
        );
        assert_eq!(
            requests[1].answer,
            Answer::Turn {
                conversation: 0,
                turn: 1
            }
        );
        assert_eq!(model.tool_results().len(), 1);
        assert_eq!(model.tool_results()[0].content_text, "hi");
        model.shutdown().await.expect("clean shutdown");
    }

    #[tokio::test]
    async fn matchers_route_parallel_conversations() {
        let script = Script::new()
            .with(Conversation::new(vec![Turn::text("from a")]).matching("cluster-a"))
            .with(Conversation::new(vec![Turn::text("from b")]).matching("cluster-b"));
        let model = ScriptedModel::start(script).await.expect("start");
        let (_, _, b) = call(
            model.local_addr(),
            "POST",
            "/v1/messages",
            &conversation_request("look at cluster-b", vec![], false),
        )
        .await;
        let (_, _, a) = call(
            model.local_addr(),
            "POST",
            "/v1/messages",
            &conversation_request("look at cluster-a", vec![], false),
        )
        .await;
        assert!(b.contains("from b") && a.contains("from a"), "{a} {b}");
        let (status, _, body) = call(
            model.local_addr(),
            "POST",
            "/v1/messages",
            &conversation_request("cluster-c", vec![], false),
        )
        .await;
        assert_eq!(status, 400);
        assert!(body.contains("no conversation matches"), "{body}");
    }

    #[tokio::test]
    async fn scripted_errors_and_exhaustion_are_http_errors() {
        let model = ScriptedModel::start(Script::single(vec![Turn::overloaded()]))
            .await
            .expect("start");
        let (status, content_type, body) = call(
            model.local_addr(),
            "POST",
            "/v1/messages",
            &conversation_request("x", vec![], true),
        )
        .await;
        assert_eq!((status, content_type.as_str()), (529, "application/json"));
        let error: Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(error, error_body("overloaded_error", "Overloaded"));

        let (status, _, body) = call(
            model.local_addr(),
            "POST",
            "/v1/messages",
            &conversation_request("x", after_tool_use(), true),
        )
        .await;
        assert_eq!(status, 400);
        assert!(body.contains("has 1 turn(s) and no turn 1"), "{body}");
        assert!(matches!(
            model.requests()[1].answer,
            Answer::Refused { status: 400, .. }
        ));
    }

    #[tokio::test]
    async fn side_requests_and_helpers_do_not_consume_turns() {
        let model = ScriptedModel::start(Script::single(vec![Turn::text("the real answer")]))
            .await
            .expect("start");
        let addr = model.local_addr();
        let mut side = conversation_request("name this conversation", vec![], false);
        side.as_object_mut().expect("object").remove("tools");
        let (status, _, body) = call(addr, "POST", "/v1/messages?beta=true", &side).await;
        assert_eq!(status, 200);
        assert!(body.contains(SIDE_REQUEST_TEXT), "{body}");

        let (status, _, body) = call(
            addr,
            "POST",
            "/v1/messages/count_tokens?beta=true",
            &json!({"messages": []}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            serde_json::from_str::<Value>(&body).expect("JSON")["input_tokens"].as_u64() > Some(0)
        );

        let (status, _, _) = call(addr, "GET", "/api/hello", &Value::Null).await;
        assert_eq!(status, 200);

        let (status, content_type, body) = call(addr, "GET", "/v1/models", &Value::Null).await;
        assert_eq!((status, content_type.as_str()), (404, "application/json"));
        assert!(body.contains("not_found_error"), "{body}");

        let (_, _, body) = call(
            addr,
            "POST",
            "/v1/messages",
            &conversation_request("x", vec![], false),
        )
        .await;
        assert!(body.contains("the real answer"), "{body}");

        let answers: Vec<Answer> = model.requests().into_iter().map(|r| r.answer).collect();
        assert_eq!(
            answers[..3],
            [Answer::SideRequest, Answer::CountTokens, Answer::Hello]
        );
        assert!(matches!(answers[3], Answer::Refused { status: 404, .. }));
        assert_eq!(
            answers[4],
            Answer::Turn {
                conversation: 0,
                turn: 0
            }
        );
    }

    #[tokio::test]
    async fn delayed_turn_is_visible_while_waiting_and_cut_short_by_shutdown() {
        let script = Script::single(vec![
            Turn::text("too late").delayed(Duration::from_secs(3600)),
        ]);
        let model = ScriptedModel::start(script).await.expect("start");
        let addr = model.local_addr();
        let client = tokio::spawn(async move {
            call(
                addr,
                "POST",
                "/v1/messages",
                &conversation_request("x", vec![], true),
            )
            .await
        });

        let seen = model
            .wait_for(Duration::from_secs(10), |requests| !requests.is_empty())
            .await
            .expect("the delayed request arrives");
        assert_eq!(
            seen[0].answer,
            Answer::Turn {
                conversation: 0,
                turn: 0
            }
        );

        let stopped = tokio::time::timeout(Duration::from_secs(10), model.shutdown()).await;
        assert!(
            matches!(stopped, Ok(Ok(()))),
            "shutdown does not wait for the delay: {stopped:?}"
        );
        let (status, _, _) = client.await.expect("client task");
        assert_eq!(status, 503);
    }

    #[tokio::test]
    async fn wait_for_times_out_with_the_count() {
        let model = ScriptedModel::start(Script::single(vec![Turn::text("x")]))
            .await
            .expect("start");
        let err = model
            .wait_for(Duration::from_millis(50), |requests| !requests.is_empty())
            .await
            .expect_err("no request ever comes");
        assert!(matches!(err, Error::WaitTimeout { seen: 0, .. }), "{err}");
    }

    #[tokio::test]
    async fn serve_runs_until_its_shutdown_future_resolves() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Script::single(vec![Turn::text("served")]),
            async move {
                let _ = stopped.await;
            },
        ));
        let (_, _, body) = call(
            addr,
            "POST",
            "/v1/messages",
            &conversation_request("x", vec![], false),
        )
        .await;
        assert!(body.contains("served"), "{body}");
        stop.send(()).expect("server still running");
        let result = tokio::time::timeout(Duration::from_secs(10), server).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");

        let invalid = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let err = serve(invalid, Script::new(), std::future::pending())
            .await
            .expect_err("empty script");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
