//! The few GitHub REST calls the surface makes, through octocrab, with GitHub's answers
//! turned into [`Failure`]s and its secondary rate limits respected.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use octocrab::Octocrab;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;

use warroom_runtime::config::Secret;

use crate::surfaces::Failure;

/// The longest a rate-limit reset is waited for before the framework's own limit applies.
const MAX_RESET_WAIT: Duration = Duration::from_secs(3600);

/// A GitHub REST client for one repository.
pub struct Api {
    connect: Connect,
    /// Built at the first call: octocrab starts a task when it is built, so it needs the
    /// runtime, which the configuration's checks run without.
    client: OnceLock<Octocrab>,
    /// `/repos/<owner>/<name>`.
    repo_path: String,
    writes: WriteLimit,
}

/// The credential given.
#[derive(Clone)]
pub enum Credential {
    Token(Secret),
    App {
        id: u64,
        installation: u64,
        key: Vec<u8>,
    },
}

/// How to reach GitHub.
#[derive(Clone)]
pub struct Connect {
    pub api_url: String,
    pub timeout: Duration,
    pub credential: Credential,
}

impl Connect {
    /// The octocrab client; with `build` false, only checks that it can be made (the URL,
    /// the App's key) without starting anything. Touches no network either way.
    pub(super) fn build(&self, build: bool) -> Result<Option<Octocrab>, String> {
        let api_url = &self.api_url;
        let builder = Octocrab::builder()
            .base_uri(api_url.as_str())
            .map_err(|e| format!("--github-api-url {api_url} is not a usable URL: {e}"))?
            .set_connect_timeout(Some(self.timeout))
            .set_read_timeout(Some(self.timeout))
            .set_write_timeout(Some(self.timeout));
        let built = |b: Result<Octocrab, octocrab::Error>| {
            b.map_err(|e| {
                format!(
                    "cannot set up the GitHub client: {}",
                    warroom_runtime::Chain(&e)
                )
            })
        };
        match &self.credential {
            Credential::Token(token) => {
                let builder = builder.personal_token(token.expose().to_owned());
                if !build {
                    return Ok(None);
                }
                Ok(Some(built(builder.build())?))
            }
            Credential::App {
                id,
                installation,
                key,
            } => {
                let builder = builder.app_from_rsa_pem((*id).into(), key).map_err(|_| {
                    "--github-app-key-file is not an RSA private key in PEM form (the key \
                     GitHub gives for an App: -----BEGIN RSA PRIVATE KEY-----)"
                        .to_owned()
                })?;
                if !build {
                    return Ok(None);
                }
                let app = built(builder.build())?;
                Ok(Some(built(app.installation((*installation).into()))?))
            }
        }
    }
}

/// What a call answered: its JSON, or what went wrong.
pub type Answer<T> = Result<T, Failure>;

impl Api {
    pub fn new(connect: Connect, repo_path: String, writes: WriteLimit) -> Api {
        Api {
            connect,
            client: OnceLock::new(),
            repo_path,
            writes,
        }
    }

    fn client(&self) -> Answer<&Octocrab> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        match self.connect.build(true) {
            Ok(Some(client)) => Ok(self.client.get_or_init(|| client)),
            Ok(None) => Err(Failure::Permanent("no GitHub client was built".to_owned())),
            Err(problem) => Err(Failure::Permanent(problem)),
        }
    }

    /// `POST` (`write`: a content-creating request, paced by [`WriteLimit`]).
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Answer<T> {
        self.writes.take().await;
        let response = self
            .client()?
            ._post(self.uri(path)?, Some(body))
            .await
            .map_err(|e| self.transport(e))?;
        self.read(path, response).await
    }

    /// `PATCH`: edits count against the secondary limits as well.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Answer<T> {
        self.writes.take().await;
        let response = self
            .client()?
            ._patch(self.uri(path)?, Some(body))
            .await
            .map_err(|e| self.transport(e))?;
        self.read(path, response).await
    }

    /// `GET`: not paced (reads do not count against the secondary write limit).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Answer<T> {
        let response = self
            .client()?
            ._get(self.uri(path)?)
            .await
            .map_err(|e| self.transport(e))?;
        self.read(path, response).await
    }

    /// A path under the repository, relative, so that octocrab prefixes its base URL
    /// (`/api/v3` of a GitHub Enterprise server kept) and sends its credentials.
    fn uri(&self, path: &str) -> Answer<http::Uri> {
        let full = format!("{}{path}", self.repo_path);
        full.parse()
            .map_err(|e| Failure::Permanent(format!("the GitHub path {full} is invalid: {e}")))
    }

    /// A request that got no HTTP answer (connection refused, timeout), or whose
    /// installation token could not be had.
    fn transport(&self, error: octocrab::Error) -> Failure {
        transport(&error)
    }
}

/// What a call that got no answer of its own means.
fn transport(error: &octocrab::Error) -> Failure {
    {
        if let octocrab::Error::GitHub { source, .. } = error {
            // The installation token exchange answered with an error.
            return classify(
                source.status_code,
                &http::HeaderMap::new(),
                &source.message,
                "the request for a GitHub App installation token",
            );
        }
        if let octocrab::Error::JWT { .. } = error {
            return Failure::Permanent(format!(
                "cannot sign the GitHub App token: {}",
                warroom_runtime::Chain(error)
            ));
        }
        Failure::retry(format!(
            "GitHub did not answer: {}",
            warroom_runtime::Chain(error)
        ))
    }
}

impl Api {
    /// The answer's JSON, or its status turned into a [`Failure`] (a rate limit also pauses
    /// every write).
    async fn read<T: DeserializeOwned>(
        &self,
        path: &str,
        response: http::Response<BoxBody<Bytes, octocrab::Error>>,
    ) -> Answer<T> {
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| Failure::retry(format!("reading GitHub's answer to {path}: {e}")))?
            .to_bytes();
        if parts.status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Permanent(format!("GitHub's answer to {path} is not as expected: {e}"))
            });
        }
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        let failure = classify(parts.status, &parts.headers, &message, path);
        if let Failure::Retry {
            after: Some(after), ..
        } = &failure
        {
            self.writes.pause(*after).await;
        }
        Err(failure)
    }
}

/// What an error answer means: 5xx and rate limits (403/429 with `Retry-After`, an
/// exhausted `x-ratelimit-remaining`, or a secondary-limit message) are worth another try,
/// after the time GitHub gave; anything else (401, 404, 422, a 403 for a missing permission)
/// fails again however often it is tried.
pub fn classify(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    message: &str,
    what: &str,
) -> Failure {
    let reason = format!("GitHub answered {status} to {what}: {message}");
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let reset = header("x-ratelimit-reset")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|epoch| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            Duration::from_secs(epoch.saturating_sub(now).max(1)).min(MAX_RESET_WAIT)
        });
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    if status.is_server_error() {
        return Failure::Retry {
            after: retry_after,
            reason,
        };
    }
    let rate_limited = status == http::StatusCode::TOO_MANY_REQUESTS
        || (status == http::StatusCode::FORBIDDEN
            && (retry_after.is_some()
                || exhausted
                || message.to_ascii_lowercase().contains("rate limit")));
    if rate_limited {
        // Secondary limits without a header: GitHub asks for at least a minute.
        let after = retry_after
            .or(if exhausted { reset } else { None })
            .unwrap_or(Duration::from_secs(60));
        return Failure::Retry {
            after: Some(after),
            reason,
        };
    }
    Failure::Permanent(reason)
}

/// Paces content-creating requests (`POST`, `PATCH`) of every request shown to at most
/// `per_minute`, evenly spaced, as GitHub's secondary rate limits ask; a rate-limit answer
/// holds back every write until the time it gave.
pub struct WriteLimit {
    interval: Duration,
    next: Mutex<Instant>,
}

impl WriteLimit {
    pub fn per_minute(per_minute: u32) -> WriteLimit {
        WriteLimit {
            interval: Duration::from_secs(60) / per_minute.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this write's turn.
    pub async fn take(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// No write before `after` from now.
    async fn pause(&self, after: Duration) {
        let mut next = self.next.lock().await;
        *next = (*next).max(Instant::now() + after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn server_errors_and_rate_limits_are_retried_the_rest_is_not() {
        let none = headers(&[]);
        let retry = |f: Failure| match f {
            Failure::Retry { after, .. } => after,
            Failure::Permanent(reason) => panic!("not retried: {reason}"),
        };
        assert_eq!(
            retry(classify(http::StatusCode::BAD_GATEWAY, &none, "", "x")),
            None
        );
        assert_eq!(
            retry(classify(
                http::StatusCode::FORBIDDEN,
                &headers(&[("retry-after", "7")]),
                "You have exceeded a secondary rate limit",
                "x"
            )),
            Some(Duration::from_secs(7))
        );
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        let after = retry(classify(
            http::StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset.to_string()),
            ]),
            "API rate limit exceeded",
            "x",
        ))
        .unwrap();
        assert!(
            after > Duration::from_secs(25) && after <= Duration::from_secs(30),
            "{after:?}"
        );
        assert_eq!(
            retry(classify(
                http::StatusCode::TOO_MANY_REQUESTS,
                &none,
                "",
                "x"
            )),
            Some(Duration::from_secs(60))
        );
        for status in [401, 403, 404, 422] {
            let status = http::StatusCode::from_u16(status).unwrap();
            assert!(
                matches!(
                    classify(status, &none, "Resource not accessible by integration", "x"),
                    Failure::Permanent(_)
                ),
                "{status}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_spaced_evenly() {
        let limit = WriteLimit::per_minute(60);
        let start = Instant::now();
        for _ in 0..3 {
            limit.take().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        limit.pause(Duration::from_secs(10)).await;
        limit.take().await;
        assert_eq!(start.elapsed(), Duration::from_secs(12));
    }
}
