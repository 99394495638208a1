//! A fixture GitHub REST API on a free loopback port, under `/api/v3` as GitHub Enterprise
//! serves it: commit statuses, check runs, commit comments and the GitHub App installation
//! token exchange, in GitHub's JSON shapes. It records every request it receives and can be
//! told to fail the next writes (a 502, a rate limit with `Retry-After`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

/// The path prefix, as on a GitHub Enterprise server.
pub const PREFIX: &str = "/api/v3";

/// One request the fixture received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The path without [`PREFIX`], with its query.
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
    pub at: Instant,
    /// The status the fixture answered.
    pub answered: u16,
}

/// A commit status as GitHub keeps it (one of the list of a commit).
#[derive(Debug, Clone)]
pub struct CommitStatus {
    pub sha: String,
    pub context: String,
    pub state: String,
    pub description: String,
    pub target_url: String,
}

/// A check run with every state it was given, oldest first.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: u64,
    pub sha: String,
    pub name: String,
    /// Each create or edit: `status` and `conclusion` (if any).
    pub states: Vec<(String, Option<String>)>,
    pub details_url: String,
    pub summary: String,
}

/// A commit comment with each body it had.
#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub sha: String,
    pub bodies: Vec<String>,
}

/// How the fixture checks credentials.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `Authorization: Bearer <token>`.
    Token(String),
    /// A GitHub App: a JWT whose `iss` is the app id buys an installation token.
    App { app_id: u64, installation: u64 },
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Received>,
    statuses: Vec<CommitStatus>,
    check_runs: BTreeMap<u64, CheckRun>,
    comments: BTreeMap<u64, Comment>,
    next_id: u64,
    /// Installation tokens issued.
    tokens: Vec<String>,
    /// Answers for the next writes, instead of doing them.
    faults: VecDeque<(u16, Vec<(String, String)>)>,
}

/// The fixture server; stops when dropped.
pub struct GitHubFixture {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHubFixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHubFixture {
    /// Serves on a free loopback port, accepting `credentials`.
    pub async fn start(credentials: Credentials) -> GitHubFixture {
        let state = Arc::new(Mutex::new(State {
            next_id: 1000,
            ..State::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the GitHub fixture");
        let addr = listener.local_addr().expect("the fixture's address");
        let shared = state.clone();
        let credentials = Arc::new(credentials);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                let credentials = credentials.clone();
                async move { answer(&state, &credentials, method, uri, headers, body) }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GitHubFixture { addr, state, task }
    }

    /// The API URL to give `--github-api-url`.
    pub fn api_url(&self) -> String {
        format!("http://{}{PREFIX}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers the next `count` writes (`POST`, `PATCH` under `/repos`) with `status` and
    /// `headers` instead of doing them.
    pub fn fail_next_writes(&self, count: usize, status: u16, headers: &[(&str, &str)]) {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut state = self.state();
        for _ in 0..count {
            state.faults.push_back((status, headers.clone()));
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state().received.clone()
    }

    /// Every commit status written, oldest first.
    pub fn statuses(&self) -> Vec<CommitStatus> {
        self.state().statuses.clone()
    }

    /// The states written for the status `context`, oldest first.
    pub fn status_states(&self, context: &str) -> Vec<String> {
        self.state()
            .statuses
            .iter()
            .filter(|s| s.context == context)
            .map(|s| s.state.clone())
            .collect()
    }

    pub fn check_runs(&self) -> Vec<CheckRun> {
        self.state().check_runs.values().cloned().collect()
    }

    pub fn comments(&self) -> Vec<Comment> {
        self.state().comments.values().cloned().collect()
    }

    /// Installation tokens issued to the GitHub App.
    pub fn tokens_issued(&self) -> usize {
        self.state().tokens.len()
    }
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Long because it is the whole fixture API: one match over the routes GitHub serves.
fn answer(
    state: &Mutex<State>,
    credentials: &Credentials,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let path_and_query = uri
        .path_and_query()
        .map_or(uri.path(), |p| p.as_str())
        .to_owned();
    let path = path_and_query
        .strip_prefix(PREFIX)
        .unwrap_or(&path_and_query)
        .to_owned();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, response) = route(
        &mut state,
        credentials,
        &method,
        &path,
        authorization.as_deref(),
        &body,
    );
    state.received.push(Received {
        method: method.to_string(),
        path,
        body,
        authorization,
        at: Instant::now(),
        answered: status.as_u16(),
    });
    response
}

fn route(
    state: &mut State,
    credentials: &Credentials,
    method: &Method,
    path_and_query: &str,
    authorization: Option<&str>,
    body: &Value,
) -> (StatusCode, Response) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            json_answer(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        )
    };
    if let ["app", "installations", id, "access_tokens"] = parts.as_slice() {
        if *method != Method::POST {
            return not_found();
        }
        return issue_token(state, credentials, id, authorization);
    }
    let ["repos", _owner, _name, rest @ ..] = parts.as_slice() else {
        return not_found();
    };
    if !authorized(state, credentials, authorization) {
        return (
            StatusCode::UNAUTHORIZED,
            json_answer(
                StatusCode::UNAUTHORIZED,
                json!({"message": "Bad credentials"}),
            ),
        );
    }
    let write = *method == Method::POST || *method == Method::PATCH;
    if write && let Some((status, headers)) = state.faults.pop_front() {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = json_answer(
            code,
            json!({"message": "You have exceeded a secondary rate limit (fixture)"}),
        );
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                axum::http::HeaderValue::from_str(&v),
            ) {
                response.headers_mut().insert(k, v);
            }
        }
        return (code, response);
    }
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let created = |state: &mut State| {
        state.next_id += 1;
        state.next_id
    };
    match (method.clone(), rest) {
        (Method::POST, ["statuses", sha]) => {
            let id = created(state);
            state.statuses.push(CommitStatus {
                sha: (*sha).to_owned(),
                context: text("context"),
                state: text("state"),
                description: text("description"),
                target_url: text("target_url"),
            });
            (
                StatusCode::CREATED,
                json_answer(
                    StatusCode::CREATED,
                    json!({"id": id, "state": text("state")}),
                ),
            )
        }
        (Method::POST, ["check-runs"]) => {
            let id = created(state);
            let run = CheckRun {
                id,
                sha: text("head_sha"),
                name: text("name"),
                states: vec![(
                    text("status"),
                    body.get("conclusion")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                )],
                details_url: text("details_url"),
                summary: body["output"]["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            };
            state.check_runs.insert(id, run);
            (
                StatusCode::CREATED,
                json_answer(StatusCode::CREATED, json!({"id": id})),
            )
        }
        (Method::PATCH, ["check-runs", id]) => {
            let Some(run) = id
                .parse()
                .ok()
                .and_then(|id: u64| state.check_runs.get_mut(&id))
            else {
                return not_found();
            };
            run.states.push((
                text("status"),
                body.get("conclusion")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ));
            run.details_url = text("details_url");
            run.summary = body["output"]["summary"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let id = run.id;
            (
                StatusCode::OK,
                json_answer(StatusCode::OK, json!({"id": id})),
            )
        }
        (Method::GET, ["commits", sha, "check-runs"]) => {
            let name = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("check_name="))
                .unwrap_or_default()
                .replace("%2F", "/");
            let runs: Vec<Value> = state
                .check_runs
                .values()
                .filter(|r| r.sha == *sha && (name.is_empty() || r.name == name))
                .map(|r| json!({"id": r.id, "name": r.name}))
                .collect();
            (
                StatusCode::OK,
                json_answer(
                    StatusCode::OK,
                    json!({"total_count": runs.len(), "check_runs": runs}),
                ),
            )
        }
        (Method::POST, ["commits", sha, "comments"]) => {
            let id = created(state);
            state.comments.insert(
                id,
                Comment {
                    id,
                    sha: (*sha).to_owned(),
                    bodies: vec![text("body")],
                },
            );
            (
                StatusCode::CREATED,
                json_answer(StatusCode::CREATED, json!({"id": id, "body": text("body")})),
            )
        }
        (Method::GET, ["commits", sha, "comments"]) => {
            let comments: Vec<Value> = state
                .comments
                .values()
                .filter(|c| c.sha == *sha)
                .map(|c| json!({"id": c.id, "body": c.bodies.last()}))
                .collect();
            (
                StatusCode::OK,
                json_answer(StatusCode::OK, Value::Array(comments)),
            )
        }
        (Method::PATCH, ["comments", id]) => {
            let Some(comment) = id
                .parse()
                .ok()
                .and_then(|id: u64| state.comments.get_mut(&id))
            else {
                return not_found();
            };
            comment.bodies.push(text("body"));
            let id = comment.id;
            (
                StatusCode::OK,
                json_answer(StatusCode::OK, json!({"id": id})),
            )
        }
        _ => not_found(),
    }
}

/// Whether `authorization` carries the token, or an installation token issued.
fn authorized(state: &State, credentials: &Credentials, authorization: Option<&str>) -> bool {
    let Some(bearer) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return false;
    };
    match credentials {
        Credentials::Token(token) => bearer == token,
        Credentials::App { .. } => state.tokens.iter().any(|t| t == bearer),
    }
}

/// `POST /app/installations/<id>/access_tokens`: a JWT signed by the app (its `iss` the app
/// id, not expired) buys a token for the installation.
fn issue_token(
    state: &mut State,
    credentials: &Credentials,
    installation: &str,
    authorization: Option<&str>,
) -> (StatusCode, Response) {
    let unauthorized = |why: &str| {
        (
            StatusCode::UNAUTHORIZED,
            json_answer(StatusCode::UNAUTHORIZED, json!({"message": why})),
        )
    };
    let Credentials::App {
        app_id,
        installation: expected,
    } = credentials
    else {
        return unauthorized("not a GitHub App fixture");
    };
    if installation != expected.to_string() {
        return (
            StatusCode::NOT_FOUND,
            json_answer(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        );
    }
    let Some(claims) = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(jwt_claims)
    else {
        return unauthorized("A JSON web token could not be decoded");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let iss = claims.get("iss").and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    });
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    if iss != Some(*app_id) || exp < now {
        return unauthorized("'Issuer' claim ('iss') must be the app id, and not expired");
    }
    let token = format!("ghs_fixture{}", state.tokens.len() + 1);
    state.tokens.push(token.clone());
    let expires = time_in(now + 3600);
    (
        StatusCode::CREATED,
        json_answer(
            StatusCode::CREATED,
            json!({"token": token, "expires_at": expires, "permissions": {"checks": "write"}}),
        ),
    )
}

/// The claims of an RS256 JWT (the signature is not checked: the fixture has no key).
fn jwt_claims(jwt: &str) -> Option<Value> {
    let mut parts = jwt.split('.');
    let header = parts.next()?;
    let claims = parts.next()?;
    parts.next()?;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .ok()?,
    )
    .ok()?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return None;
    }
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .ok()?,
    )
    .ok()
}

/// `epoch` as GitHub writes times: `2026-12-07T15:00:00Z`.
fn time_in(epoch: u64) -> String {
    i64::try_from(epoch)
        .ok()
        .and_then(|e| time::OffsetDateTime::from_unix_timestamp(e).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
