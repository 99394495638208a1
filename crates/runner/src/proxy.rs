//! The model-API proxy: the only holder of the model API key, and the meter of every run's
//! spend.
//!
//! Each run gets its own [`Proxy`] on `127.0.0.1:0`. The CLI is pointed at it
//! (`ANTHROPIC_BASE_URL`) with a placeholder key ([`PLACEHOLDER_KEY`]); the proxy forwards
//! `POST /v1/messages` and `POST /v1/messages/count_tokens` to the real endpoint
//! ([`ModelApi`]), replacing whatever key the caller sent by the real one, and answers every
//! other path with an Anthropic-shaped 404. So the key never enters the agent's process tree:
//! no command the agent runs can print it, whatever it reads.
//!
//! On the way out the proxy redacts every tool result in the request ([`redact_request`]):
//! the model provider is outside the secure zone, and a secret a tool printed must not reach
//! it. This is the second layer, behind the CLI's `PostToolUse` hook (`warroom-guard
//! post-tool-use`), which redacts each output before the CLI even adds it to the
//! conversation; a request the proxy cannot read is forwarded only when it carries no tool
//! result at all.
//!
//! On the way back the proxy reads each answer's `usage` (a JSON message, or the
//! `message_start` and `message_delta` events of an SSE stream, which pass through unchanged
//! as they arrive) and prices it with [`Prices`]. Once a run's spend reaches its budget, the
//! next call is refused with an Anthropic-shaped `invalid_request_error` the CLI does not
//! retry, and [`Spend::judge`] turns the run into `failed: budget exceeded`.

use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use warroom_runtime::Chain;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::Stream;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::{debug, warn};
use warroom_proto::Outcome;

use warroom_redact as redact;

use crate::{ApiKey, Error, Result};

/// The `ANTHROPIC_API_KEY` the CLI gets: a placeholder the proxy replaces. It lets the CLI
/// start (it wants some key) and is worth nothing anywhere else.
pub const PLACEHOLDER_KEY: &str = "warroom-proxy";
/// The real endpoint when `--anthropic-base-url` is not given.
pub const DEFAULT_UPSTREAM: &str = "https://api.anthropic.com";
/// A request late in a long investigation carries the whole history; the CLI's own limit is
/// what bounds it.
const MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;
/// The most of a JSON (not streamed) answer read for its usage; larger answers pass unmetered.
const MAX_METERED_JSON: usize = 16 * 1024 * 1024;
/// An SSE line longer than this is a content delta, never a usage event: it is not kept.
const MAX_SSE_LINE: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one model family costs, in USD per million tokens. Cache writes cost 1.25 times the
/// input price and cache reads 0.1 times (Anthropic's five-minute cache).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl FromStr for Price {
    type Err = String;

    /// `INPUT/OUTPUT` in USD per million tokens, e.g. `3/15`.
    fn from_str(text: &str) -> std::result::Result<Price, String> {
        let parse = |part: &str| {
            part.trim()
                .parse::<f64>()
                .ok()
                .filter(|value| value.is_finite() && *value >= 0.0)
        };
        match text.split_once('/') {
            Some((input, output)) => match (parse(input), parse(output)) {
                (Some(input), Some(output)) => Ok(Price { input, output }),
                _ => Err(format!(
                    "{text:?}: expected INPUT/OUTPUT in USD per million tokens, two \
                     non-negative numbers such as 3/15"
                )),
            },
            None => Err(format!(
                "{text:?}: expected INPUT/OUTPUT in USD per million tokens, such as 3/15"
            )),
        }
    }
}

impl std::fmt::Display for Price {
    /// `INPUT/OUTPUT`, as [`Price::from_str`] reads it back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.input, self.output)
    }
}

/// The price table, by model family: the family is the first of `opus`, `sonnet`, `haiku`
/// that the model name contains. A model of no known family is priced as `opus`, the
/// dearest, so an unknown name never makes the budget looser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub opus: Price,
    pub sonnet: Price,
    pub haiku: Price,
}

impl Prices {
    pub fn for_model(&self, model: &str) -> Price {
        let model = model.to_ascii_lowercase();
        if model.contains("sonnet") {
            self.sonnet
        } else if model.contains("haiku") {
            self.haiku
        } else {
            self.opus
        }
    }
}

/// Tokens of one answer, or summed over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_write: u64,
    pub cache_read: u64,
}

impl Tokens {
    /// What these tokens cost at `price`, in USD.
    pub fn cost(&self, price: Price) -> f64 {
        #[expect(
            clippy::cast_precision_loss,
            reason = "token counts are far below 2^52"
        )]
        let usd = (self.input as f64 * price.input
            + self.output as f64 * price.output
            + self.cache_write as f64 * price.input * 1.25
            + self.cache_read as f64 * price.input * 0.1)
            / 1_000_000.0;
        usd
    }

    /// Overwrites the counts a `usage` object names (the API's counts are running totals, so
    /// a later event replaces an earlier one).
    fn update(&mut self, usage: &Value) {
        let field = |name: &str| usage.get(name).and_then(Value::as_u64);
        if let Some(n) = field("input_tokens") {
            self.input = n;
        }
        if let Some(n) = field("output_tokens") {
            self.output = n;
        }
        if let Some(n) = field("cache_creation_input_tokens") {
            self.cache_write = n;
        }
        if let Some(n) = field("cache_read_input_tokens") {
            self.cache_read = n;
        }
    }

    fn add(&mut self, other: Tokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_write += other.cache_write;
        self.cache_read += other.cache_read;
    }
}

/// The real model API: where the proxies forward to, with which key, at which prices and
/// budget. Built once per runner; cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct ModelApi {
    base: String,
    key: Option<ApiKey>,
    client: reqwest::Client,
    prices: Prices,
    budget_usd: f64,
}

impl std::fmt::Debug for ModelApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelApi")
            .field("base", &self.base)
            .field("key", &self.key)
            .field("prices", &self.prices)
            .field("budget_usd", &self.budget_usd)
            .finish_non_exhaustive()
    }
}

impl ModelApi {
    /// `base` is the real endpoint (`https://api.anthropic.com`), without a trailing `/`.
    pub fn new(
        base: &str,
        key: Option<ApiKey>,
        prices: Prices,
        budget_usd: f64,
    ) -> Result<ModelApi> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // The CLI sees the upstream's redirects, not a silently followed one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::ModelClient)?;
        Ok(ModelApi {
            base: base.trim_end_matches('/').to_owned(),
            key,
            client,
            prices,
            budget_usd,
        })
    }

    pub fn budget_usd(&self) -> f64 {
        self.budget_usd
    }
}

/// What a run spent, as its proxy counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    /// Answers metered (forwarded `/v1/messages` calls).
    pub requests: u64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub budget_usd: f64,
    /// Calls refused because the budget was spent.
    pub refused: u64,
    /// Values redacted from requests on their way to the model: what the `PostToolUse` hook
    /// left in the tool results. A value in the history counts once for every request that
    /// carries it.
    pub redacted: u64,
    /// Requests refused because they carried tool results the proxy could not read.
    pub unreadable: u64,
}

impl Spend {
    /// The outcome of a run, given how the CLI's end was judged: a run whose calls were
    /// refused for the budget failed for that reason, whatever the CLI made of the refusal.
    pub fn judge(&self, outcome: Outcome, error: Option<String>) -> (Outcome, Option<String>) {
        if self.refused == 0 {
            return (outcome, error);
        }
        (
            Outcome::Failed,
            Some(format!(
                "budget exceeded: the model calls cost ${:.4} of the run's ${:.2} budget; \
                 {} further call(s) were refused",
                self.cost_usd, self.budget_usd, self.refused
            )),
        )
    }
}

/// One run's proxy. Serves until dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    api: ModelApi,
    ledger: Mutex<Spend>,
}

impl Shared {
    fn spend(&self) -> Spend {
        *self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether another call may go out; counts the refusal when not.
    fn admit(&self) -> std::result::Result<(), Spend> {
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        if ledger.cost_usd >= ledger.budget_usd {
            ledger.refused += 1;
            return Err(*ledger);
        }
        Ok(())
    }

    /// Counts what [`redact_request`] did to one request.
    fn count_redaction(&self, redacted: Option<u64>) {
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        match redacted {
            Some(n) => ledger.redacted += n,
            None => ledger.unreadable += 1,
        }
    }

    fn record(&self, model: &str, tokens: Tokens) {
        let cost = tokens.cost(self.api.prices.for_model(model));
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        ledger.requests += 1;
        ledger.tokens.add(tokens);
        ledger.cost_usd += cost;
        debug!(
            model,
            ?tokens,
            cost,
            total = ledger.cost_usd,
            "model call metered"
        );
    }
}

impl Proxy {
    /// Binds `127.0.0.1:0` and serves in a task of the current runtime.
    pub async fn start(api: &ModelApi) -> std::io::Result<Proxy> {
        Proxy::start_on(api, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Binds `addr` and serves in a task of the current runtime: a session pod's proxy, on
    /// the fixed loopback port its `session` container is pointed at.
    pub async fn start_on(api: &ModelApi, addr: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            api: api.clone(),
            ledger: Mutex::new(Spend {
                budget_usd: api.budget_usd,
                ..Spend::default()
            }),
        });
        let router = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                warn!(cause = %Chain(&e), "the model API proxy stopped");
            }
        });
        Ok(Proxy {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, the agent's `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the run spent so far.
    pub fn spend(&self) -> Spend {
        self.shared.spend()
    }

    /// A handle that reads what the run spent, while the proxy serves.
    pub fn meter(&self) -> Meter {
        Meter(self.shared.clone())
    }
}

/// Reads a running proxy's [`Spend`] ([`Proxy::meter`]).
#[derive(Debug, Clone)]
pub struct Meter(Arc<Shared>);

impl Meter {
    pub fn spend(&self) -> Spend {
        self.0.spend()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The run is over: nothing may call the model on its behalf any more.
        self.server.abort();
    }
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(spend) = shared.admit() {
        warn!(
            cost = spend.cost_usd,
            budget = spend.budget_usd,
            "the run's budget is spent; refusing a model call"
        );
        let mut response = error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!(
                "warroom: budget exceeded: this investigation's model calls cost ${:.4} of its \
                 ${:.2} budget",
                spend.cost_usd, spend.budget_usd
            ),
        );
        // The Anthropic SDKs honour this: the refusal is final, not worth a retry.
        response
            .headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
        return response;
    }
    let model = serde_json::from_slice::<ModelField>(&body)
        .ok()
        .and_then(|m| m.model)
        .unwrap_or_default();
    let body = match redacted(&shared, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    forward(&shared, &uri, &headers, body, Some(model)).await
}

async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Counting is free: not metered, and not refused for the budget. It carries the
    // conversation all the same, so it is redacted like a turn.
    let body = match redacted(&shared, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    forward(&shared, &uri, &headers, body, None).await
}

/// `body` with its tool results redacted ([`redact_request`], on the blocking pool: a long
/// history is a few MB of text), counted in the run's ledger; or the answer that refuses it.
async fn redacted(shared: &Shared, body: Bytes) -> std::result::Result<Bytes, Response> {
    let outcome = tokio::task::spawn_blocking(move || redact_request(body))
        .await
        .unwrap_or_else(|e| Err(Unreadable(format!("the redaction stopped: {e}"))));
    match outcome {
        Ok((body, removed)) => {
            shared.count_redaction(Some(removed.total()));
            if !removed.is_empty() {
                debug!(
                    removed = removed.total(),
                    kinds = ?removed.iter().collect::<Vec<_>>(),
                    "tool output redacted on its way to the model"
                );
            }
            Ok(body)
        }
        Err(reason) => {
            shared.count_redaction(None);
            warn!(%reason, "a request to the model is not forwarded");
            let mut response = error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("warroom proxy: the request is not forwarded: {reason}"),
            );
            response
                .headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
            Err(response)
        }
    }
}

/// Why a request body is not forwarded: it may carry a tool's output in a form the proxy
/// cannot read, so it cannot be redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// A request body as it may leave for the model API, and what was removed from it: the text
/// of every `tool_result` block in `messages` (string content, and `text` blocks; image
/// blocks pass; any other block is redacted string by string, keeping its shape) and of the
/// user's own text blocks (which the CLI fills with file contents and reminders too) is
/// redacted. Nothing else changes: a body with nothing to remove is forwarded byte for byte,
/// and the answer is never touched.
///
/// A body that is not JSON, or has no `messages` list, is forwarded unchanged only when it
/// does not mention `tool_result` at all; otherwise it is refused (the error says why), since
/// it may carry a tool's output in a form the proxy cannot read.
pub fn redact_request(body: Bytes) -> std::result::Result<(Bytes, redact::Counts), Unreadable> {
    let mentions_tool_results = || {
        body.windows(TOOL_RESULT.len())
            .any(|window| window == TOOL_RESULT.as_bytes())
    };
    let mut request = match serde_json::from_slice::<Value>(&body) {
        Ok(request) => request,
        Err(_) if !mentions_tool_results() => return Ok((body, redact::Counts::new())),
        Err(e) => {
            return Err(Unreadable(format!(
                "the body mentions {TOOL_RESULT} but is not JSON ({e})"
            )));
        }
    };
    let Some(messages) = request.get_mut("messages").and_then(Value::as_array_mut) else {
        if mentions_tool_results() {
            return Err(Unreadable(format!(
                "the body mentions {TOOL_RESULT} but has no `messages` list"
            )));
        }
        return Ok((body, redact::Counts::new()));
    };
    let mut removed = redact::Counts::new();
    for message in messages.iter_mut() {
        let user = message.get("role").and_then(Value::as_str) == Some("user");
        match message.get_mut("content") {
            Some(Value::Array(blocks)) => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some(TOOL_RESULT) => {
                            if let Some(content) = block.get_mut("content") {
                                redact_content(content, &mut removed);
                            }
                        }
                        Some("text") if user => redact_text_block(block, &mut removed),
                        _ => {}
                    }
                }
            }
            Some(text @ Value::String(_)) if user => removed.merge(&redact::json(text)),
            _ => {}
        }
    }
    if removed.is_empty() {
        return Ok((body, removed));
    }
    match serde_json::to_vec(&request) {
        Ok(redacted) => Ok((Bytes::from(redacted), removed)),
        Err(e) => Err(Unreadable(format!(
            "the redacted body cannot be encoded: {e}"
        ))),
    }
}

/// The content block type that carries a tool's output back to the model.
const TOOL_RESULT: &str = "tool_result";

/// Redacts a `tool_result`'s `content`: a string, or a list of blocks.
fn redact_content(content: &mut Value, removed: &mut redact::Counts) {
    match content {
        Value::Array(blocks) => {
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => redact_text_block(block, removed),
                    // Image data is base64 the rules could mistake for a secret.
                    Some("image") => {}
                    _ => removed.merge(&redact::json(block)),
                }
            }
        }
        other => removed.merge(&redact::json(other)),
    }
}

/// Redacts the `text` of a `{"type": "text", "text": ..}` block.
fn redact_text_block(block: &mut Value, removed: &mut redact::Counts) {
    if let Some(text) = block.get_mut("text") {
        removed.merge(&redact::json(text));
    }
}

async fn not_found(uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found_error",
        &format!(
            "warroom proxy: only /v1/messages is served, not {}",
            uri.path()
        ),
    )
}

#[derive(serde::Deserialize)]
struct ModelField {
    model: Option<String>,
}

/// Sends the request upstream with the real key; `meter` (the requested model) says the
/// answer's usage counts against the budget.
async fn forward(
    shared: &Arc<Shared>,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    meter: Option<String>,
) -> Response {
    let api = &shared.api;
    let target = match uri.query() {
        Some(query) => format!("{}{}?{query}", api.base, uri.path()),
        None => format!("{}{}", api.base, uri.path()),
    };
    let mut outgoing = HeaderMap::new();
    for (name, value) in headers {
        if forwarded_request_header(name) {
            outgoing.append(name.clone(), value.clone());
        }
    }
    if let Some(key) = &api.key
        && let Ok(mut value) = HeaderValue::from_str(&key.0)
    {
        value.set_sensitive(true);
        outgoing.insert("x-api-key", value);
    }
    let upstream = match api
        .client
        .post(&target)
        .headers(outgoing)
        .body(body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => {
            warn!(cause = %Chain(&e), target = %api.base, "cannot reach the model API");
            // A 5xx: the CLI retries it as it would a real API outage.
            return error_response(
                StatusCode::BAD_GATEWAY,
                "api_error",
                &format!("warroom proxy: cannot reach the model API: {e}"),
            );
        }
    };

    let status = upstream.status();
    let mut response_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if forwarded_response_header(name) {
            response_headers.append(name.clone(), value.clone());
        }
    }
    let is_sse = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));

    let body = match metered_body(shared, upstream, meter, status, is_sse).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

/// The upstream answer's body for the caller: a successful answer to a metered request
/// (`meter`: its model) has its usage counted against the budget as it passes, streamed or
/// whole; every other answer passes as it is. A metered answer that breaks off becomes the
/// error response.
async fn metered_body(
    shared: &Arc<Shared>,
    upstream: reqwest::Response,
    meter: Option<String>,
    status: StatusCode,
    is_sse: bool,
) -> std::result::Result<Body, Response> {
    Ok(match meter {
        Some(model) if status.is_success() && is_sse => Body::from_stream(Metered {
            inner: Box::pin(upstream.bytes_stream()),
            meter: SseMeter::default(),
            sink: Some((Arc::clone(shared), model)),
        }),
        Some(model) if status.is_success() => {
            let small = upstream
                .content_length()
                .is_none_or(|len| len <= MAX_METERED_JSON as u64);
            if small {
                match upstream.bytes().await {
                    Ok(bytes) => {
                        meter_json(shared, &model, &bytes);
                        Body::from(bytes)
                    }
                    Err(e) => {
                        return Err(error_response(
                            StatusCode::BAD_GATEWAY,
                            "api_error",
                            &format!("warroom proxy: the model API's answer broke off: {e}"),
                        ));
                    }
                }
            } else {
                warn!("an answer too large to meter passes unmetered");
                Body::from_stream(upstream.bytes_stream())
            }
        }
        _ => Body::from_stream(upstream.bytes_stream()),
    })
}

/// Hop-by-hop headers, the caller's credentials and `accept-encoding` stay behind: the key is
/// the proxy's to add, and an uncompressed answer is one the proxy can read the usage of.
fn forwarded_request_header(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "x-api-key"
            | "authorization"
            | "accept-encoding"
    )
}

fn forwarded_response_header(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

fn meter_json(shared: &Shared, model: &str, bytes: &[u8]) {
    let Ok(message) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let Some(usage) = message.get("usage") else {
        return;
    };
    let mut tokens = Tokens::default();
    tokens.update(usage);
    let model = message
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(model);
    shared.record(model, tokens);
}

/// Reads the usage out of an SSE stream as it passes.
#[derive(Debug, Default)]
struct SseMeter {
    line: Vec<u8>,
    /// The current line is longer than [`MAX_SSE_LINE`]: dropped up to its end.
    skipping: bool,
    tokens: Tokens,
    model: Option<String>,
}

impl SseMeter {
    fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let (part, rest, ended) = match chunk.iter().position(|b| *b == b'\n') {
                Some(at) => (&chunk[..at], &chunk[at + 1..], true),
                None => (chunk, &[][..], false),
            };
            if !self.skipping {
                if self.line.len() + part.len() > MAX_SSE_LINE {
                    self.line.clear();
                    self.skipping = true;
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if ended {
                if !self.skipping {
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                self.skipping = false;
            }
            chunk = rest;
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let Ok(event) = serde_json::from_slice::<Value>(data.trim_ascii()) else {
            return;
        };
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(usage) = event.pointer("/message/usage") {
                    self.tokens.update(usage);
                }
                if let Some(model) = event.pointer("/message/model").and_then(Value::as_str) {
                    self.model = Some(model.to_owned());
                }
            }
            Some("message_delta") => {
                if let Some(usage) = event.get("usage") {
                    self.tokens.update(usage);
                }
            }
            _ => {}
        }
    }
}

/// An SSE body passed through unchanged, chunk by chunk, metered on the way; its usage is
/// recorded when it ends or is dropped (a CLI that hangs up mid-answer still pays for what
/// was generated).
struct Metered {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    meter: SseMeter,
    sink: Option<(Arc<Shared>, String)>,
}

impl Metered {
    fn settle(&mut self) {
        if let Some((shared, requested)) = self.sink.take() {
            let model = self.meter.model.as_deref().unwrap_or(&requested);
            shared.record(model, self.meter.tokens);
        }
    }
}

impl Stream for Metered {
    type Item = reqwest::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => self.meter.feed(chunk),
            Poll::Ready(None | Some(Err(_))) => self.settle(),
            Poll::Pending => {}
        }
        next
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.settle();
    }
}

fn error_response(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json!({ "type": "error", "error": { "type": error_type, "message": message } }).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICES: Prices = Prices {
        opus: Price {
            input: 15.0,
            output: 75.0,
        },
        sonnet: Price {
            input: 3.0,
            output: 15.0,
        },
        haiku: Price {
            input: 1.0,
            output: 5.0,
        },
    };

    #[test]
    fn prices_parse_and_pick_the_family() {
        assert_eq!(
            "3/15".parse::<Price>(),
            Ok(Price {
                input: 3.0,
                output: 15.0
            })
        );
        assert_eq!(" 0.8 / 4 ".parse::<Price>().map(|p| p.output), Ok(4.0));
        for bad in ["3", "3/x", "-1/2", "inf/1", "/"] {
            assert!(bad.parse::<Price>().is_err(), "{bad}");
        }
        assert_eq!(PRICES.for_model("claude-sonnet-4-5-20250929").input, 3.0);
        assert_eq!(PRICES.for_model("claude-3-5-haiku-latest").input, 1.0);
        assert_eq!(PRICES.for_model("claude-opus-4-1").input, 15.0);
        // Unknown families are priced as the dearest.
        assert_eq!(PRICES.for_model("claude-scripted").input, 15.0);
    }

    #[test]
    fn cost_counts_cache_tokens_at_their_rates() {
        let tokens = Tokens {
            input: 1_000_000,
            output: 100_000,
            cache_write: 1_000_000,
            cache_read: 1_000_000,
        };
        let cost = tokens.cost(PRICES.sonnet);
        assert!((cost - (3.0 + 1.5 + 3.75 + 0.3)).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn sse_usage_is_read_across_chunk_boundaries() {
        let stream = "event: message_start\n\
            data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":1200,\"output_tokens\":1,\"cache_read_input_tokens\":50}}}\n\n\
            event: content_block_delta\n\
            data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n\
            event: message_delta\r\n\
            data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":345}}\r\n\r\n";
        for size in [1, 7, 64, stream.len()] {
            let mut meter = SseMeter::default();
            for chunk in stream.as_bytes().chunks(size) {
                meter.feed(chunk);
            }
            assert_eq!(
                meter.tokens,
                Tokens {
                    input: 1200,
                    output: 345,
                    cache_write: 0,
                    cache_read: 50
                },
                "chunks of {size}"
            );
            assert_eq!(meter.model.as_deref(), Some("claude-haiku-4-5"));
        }
        // An overlong line is skipped; the next one is still read.
        let mut meter = SseMeter::default();
        meter.feed(&vec![b'x'; MAX_SSE_LINE + 10]);
        meter.feed(b"\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n");
        assert_eq!(meter.tokens.output, 9);
    }

    #[test]
    fn a_refused_call_fails_the_run_for_the_budget() {
        let spend = Spend {
            cost_usd: 0.5,
            budget_usd: 0.25,
            ..Spend::default()
        };
        assert_eq!(
            spend.judge(Outcome::Completed, None),
            (Outcome::Completed, None),
            "a run that needed no refused call keeps its outcome"
        );
        let refused = Spend {
            refused: 1,
            ..spend
        };
        let (outcome, error) = refused.judge(Outcome::Failed, Some("HTTP 400".to_owned()));
        assert_eq!(outcome, Outcome::Failed);
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with("budget exceeded: ")
                    && e.contains("$0.5000 of the run's $0.25 budget")),
            "{error:?}"
        );
    }

    /// A password and a bearer token, built from parts so no secret-looking literal is
    /// committed.
    fn planted() -> (String, String) {
        (
            ["Pg", "-pr0d-", "Hunter", "77x"].concat(),
            [
                "eyJhbGciOiJIUzI1NiJ9",
                ".",
                "eyJzdWIiOiJ4In0",
                ".",
                "Xq3Lm9Vb2Nc7Zr4Wd8Kp1Hs5",
            ]
            .concat(),
        )
    }

    /// A turn request whose history carries tool results with the planted values.
    fn turn_body(password: &str, token: &str) -> Value {
        json!({
            "model": "claude-scripted",
            "max_tokens": 1024,
            "stream": false,
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Why does x fail?"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash",
                     "input": {"command": "kubectl get cm app -o yaml"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "Bash",
                     "input": {"command": "kubectl logs x"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1",
                     "content": format!("data:\n  DB_HOST: db\n  DB_PASSWORD: {password}\n")},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
                        {"type": "text", "text": format!("GET / Authorization: Bearer {token}")},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo"}}
                    ]}
                ]}
            ]
        })
    }

    #[test]
    fn tool_results_are_redacted_and_nothing_else_changes() {
        let (password, token) = planted();
        let body = Bytes::from(turn_body(&password, &token).to_string());
        let (out, removed) = redact_request(body).expect("forwarded");
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains(&password), "{text}");
        assert!(!text.contains(&token), "{text}");
        assert!(removed.total() >= 2, "{removed:?}");
        let out: Value = serde_json::from_slice(&out).expect("still JSON");
        let results = &out["messages"][2]["content"];
        let first = results[0]["content"].as_str().expect("string content");
        assert!(
            first.contains("DB_HOST: db") && first.contains("[REDACTED:"),
            "{first}"
        );
        let second = results[1]["content"][0]["text"]
            .as_str()
            .expect("text block");
        assert!(
            second.starts_with("GET / Authorization: Bearer [REDACTED:"),
            "{second}"
        );
        // Everything else is as it was.
        assert_eq!(results[1]["content"][1]["source"]["data"], "iVBORw0KGgo");
        assert_eq!(
            out["messages"][1],
            turn_body(&password, &token)["messages"][1]
        );
        assert_eq!(out["tools"], turn_body(&password, &token)["tools"]);
        assert_eq!(out["max_tokens"], 1024);
    }

    #[test]
    fn a_clean_body_is_forwarded_byte_for_byte() {
        let clean = Bytes::from(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"NAME READY x 1/1"}]}],  "z":1}"#,
        );
        let (out, removed) = redact_request(clean.clone()).expect("forwarded");
        assert_eq!(out, clean);
        assert!(removed.is_empty());
    }

    #[test]
    fn an_unreadable_body_is_forwarded_only_without_tool_results() {
        for plain in [&b"not json at all"[..], br#"{"model":"m","prompt":"hi"}"#] {
            let (out, removed) = redact_request(Bytes::from_static(plain)).expect("forwarded");
            assert_eq!(&out[..], plain);
            assert!(removed.is_empty());
        }
        for hidden in [
            &br#"{"messages":[{"content":[{"type":"tool_result","content":"x"#[..],
            br#"{"model":"m","history":[{"type":"tool_result","content":"x"}]}"#,
        ] {
            let refused = redact_request(Bytes::from_static(hidden))
                .expect_err("refused")
                .0;
            assert!(refused.contains("tool_result"), "{refused}");
        }
    }

    /// The proxy alone, without the CLI's hook: a request carrying a secret in a tool result
    /// reaches the model API redacted, and the run's ledger counts it.
    #[tokio::test]
    async fn the_proxy_forwards_tool_results_redacted() {
        use warroom_scripted_model::{Script, ScriptedModel, Turn};
        // The request's history holds one assistant turn: the script's second turn answers.
        let script = Script::single(vec![Turn::bash("kubectl logs x"), Turn::text("done")]);
        let model = ScriptedModel::start(script).await.expect("scripted model");
        let api = ModelApi::new(&model.base_url(), None, PRICES, 10.0).expect("model api");
        let proxy = Proxy::start(&api).await.expect("proxy");
        let (password, token) = planted();
        let answer = reqwest::Client::new()
            .post(format!("{}/v1/messages", proxy.base_url()))
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .body(turn_body(&password, &token).to_string())
            .send()
            .await
            .expect("the proxy answers");
        assert!(answer.status().is_success(), "{:?}", answer.text().await);
        let requests = model.requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        let seen = requests[0].body.to_string();
        assert!(seen.contains("[REDACTED:"), "{seen}");
        assert!(!seen.contains(&password), "{seen}");
        assert!(!seen.contains(&token), "{seen}");
        assert!(proxy.spend().redacted >= 2, "{:?}", proxy.spend());

        // A body that hides tool results from the proxy never reaches the model.
        let refused = reqwest::Client::new()
            .post(format!("{}/v1/messages", proxy.base_url()))
            .body(format!(
                "{{\"messages\": [{{\"tool_result\": \"{password}\""
            ))
            .send()
            .await
            .expect("the proxy answers");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert_eq!(model.requests().len(), 1);
        assert_eq!(proxy.spend().unreadable, 1);
    }

    #[test]
    fn credentials_and_encodings_of_the_caller_stay_behind() {
        for name in ["x-api-key", "authorization", "accept-encoding", "host"] {
            assert!(!forwarded_request_header(&HeaderName::from_static(name)));
        }
        for name in ["anthropic-version", "anthropic-beta", "content-type"] {
            assert!(forwarded_request_header(&HeaderName::from_static(name)));
        }
    }
}
