//! A fixture Slack incoming webhook on a free loopback port: it answers as Slack does (`ok`,
//! or an error status), records the text of every message it accepted, and can be told to
//! fail the next calls or to hang after receiving one.
//!
//! ```no_run
//! # async fn example() {
//! use warroom_testkit::{DEFAULT_TIMEOUT, SlackFixture};
//! let slack = SlackFixture::start(&[]).await;
//! // Give `slack.url()` to the publisher as --slack-webhook-url, then:
//! let messages = slack.wait_delivered(1, DEFAULT_TIMEOUT).await;
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

use crate::wait_for;

/// The webhook's path, shaped like Slack's `/services/<team>/<bot>/<secret>`.
const PATH: &str = "/services/T000/B000/XXXX";

/// How the fixture answers one webhook call.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// An error status, with `Retry-After` seconds if given; the message is not delivered.
    Fail(u16, Option<u64>),
    /// The message reaches Slack, and the answer never comes: the sender is cut off (the
    /// test stops it) between sending and hearing back.
    Hang,
}

#[derive(Default)]
struct Webhook {
    /// Answers to give before the default `200 ok`, in order.
    script: Mutex<VecDeque<Answer>>,
    /// The text of every message Slack accepted (or got before hanging).
    delivered: Mutex<Vec<String>>,
    /// Every call, delivered or not.
    calls: Mutex<u32>,
    hung: Notify,
}

/// An incoming-webhook server speaking Slack's answers; it stops when dropped.
pub struct SlackFixture {
    url: String,
    state: Arc<Webhook>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SlackFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL is what a test hands over as the webhook; it names no real secret.
        f.debug_struct("SlackFixture")
            .field("url", &self.url)
            .finish()
    }
}

impl SlackFixture {
    /// Starts the server; it gives the answers of `script` first, then `200 ok`.
    pub async fn start(script: &[Answer]) -> SlackFixture {
        let state = Arc::new(Webhook::default());
        lock(&state.script).extend(script.iter().copied());
        let app = axum::Router::new()
            .route(PATH, axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!(
            "http://{}{PATH}",
            listener.local_addr().expect("an address")
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SlackFixture { url, state, server }
    }

    /// The webhook URL, for `--slack-webhook-url` or `WARROOM_SLACK_WEBHOOK_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds `answer` to the answers given before the default `200 ok`.
    pub fn then(&self, answer: Answer) {
        lock(&self.state.script).push_back(answer);
    }

    /// The text of every message accepted so far, in the order received.
    pub fn delivered(&self) -> Vec<String> {
        lock(&self.state.delivered).clone()
    }

    /// Every call so far, delivered or not.
    pub fn calls(&self) -> u32 {
        *lock(&self.state.calls)
    }

    /// Waits until at least `count` messages were accepted; returns them all.
    pub async fn wait_delivered(&self, count: usize, timeout: Duration) -> Vec<String> {
        wait_for(format!("{count} Slack messages"), timeout, || {
            let delivered = self.delivered();
            async move { (delivered.len() >= count).then_some(delivered) }
        })
        .await
    }

    /// Resolves when a call answered [`Answer::Hang`] has been received.
    pub async fn hung(&self) {
        self.state.hung.notified().await;
    }
}

impl Drop for SlackFixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A lock that a panicking test thread does not make unusable for the others.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn receive(
    axum::extract::State(state): axum::extract::State<Arc<Webhook>>,
    body: String,
) -> Response {
    *lock(&state.calls) += 1;
    let answer = lock(&state.script).pop_front();
    let text = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["text"].as_str().map(str::to_owned));
    let Some(text) = text else {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    match answer {
        Some(Answer::Fail(code, after)) => {
            let code = StatusCode::from_u16(code).expect("a status code");
            let mut response = (code, "rate_limited or server_error").into_response();
            if let Some(after) = after {
                response.headers_mut().insert(
                    "retry-after",
                    after.to_string().parse().expect("a header value"),
                );
            }
            response
        }
        Some(Answer::Hang) => {
            lock(&state.delivered).push(text);
            state.hung.notify_one();
            std::future::pending::<Response>().await
        }
        None => {
            lock(&state.delivered).push(text);
            "ok".into_response()
        }
    }
}
