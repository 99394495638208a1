//! The GitHub surface: one status per request on the commit that added its request file.
//!
//! Authenticated as a GitHub App, the status is a check run named `claude-warroom/<id>`,
//! created once and then edited in place (its id is in the record's handles). With a token it
//! is a commit status with the context `claude-warroom/<id>`, which GitHub itself replaces in
//! place. Optionally, one commit comment carries the summary, edited in place as well.
//!
//! Nothing is created twice: before creating a check run or a comment, the surface claims
//! it in the record (compare-and-set); a later try that finds the claim but no id (a crash
//! between the two) looks the check run up by name, or the comment by its hidden marker,
//! before creating one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tracing::debug;
use warroom_proto::{RequestPhase, RequestStatus};
use warroom_runtime::config::{Problems, Secret, read_secret_file, secret_setting};

use super::{Context, Failure, Shown, Surface};

mod api;
mod render;

use api::{Answer, Api, Connect, Credential, WriteLimit};
use render::State;

/// The record handle holding the check run's id.
const CHECK_RUN: &str = "check_run";
/// The record handle holding the comment's id.
const COMMENT: &str = "comment";
/// A handle's value while its object is being created.
const CREATING: &str = "creating";
/// GitHub's limit on a check run's summary is 65,535 characters.
const SUMMARY_LIMIT: usize = 60_000;

/// The GitHub surface's command line and environment.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The GitHub REST API the GitHub surface talks to. GitHub Enterprise Server:
    /// `https://<host>/api/v3`.
    #[arg(
        long,
        env = "WARROOM_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,

    /// The repository whose commits show the request states, `owner/name`. Default: read from
    /// --repo when it is an https or ssh URL.
    #[arg(long, env = "WARROOM_GITHUB_REPO", value_name = "OWNER/NAME")]
    pub github_repo: Option<String>,

    /// Where the links of the statuses point (the report on the web). Default: from
    /// --github-api-url (`https://api.github.com` → `https://github.com`,
    /// `https://<host>/api/v3` → `https://<host>`).
    #[arg(long, env = "WARROOM_GITHUB_WEB_URL")]
    pub github_web_url: Option<String>,

    /// A token that may write commit statuses (classic: `repo:status`; fine-grained: "Commit
    /// statuses: write"): each request then shows as a commit status. Read from the
    /// environment, never logged. Turns the GitHub surface on.
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<Secret>,

    /// A file holding the GitHub token (a mounted Secret), instead of GITHUB_TOKEN.
    #[arg(long, env = "WARROOM_GITHUB_TOKEN_FILE", value_name = "FILE")]
    pub github_token_file: Option<PathBuf>,

    /// Authenticate as this GitHub App (with --github-app-installation-id and
    /// --github-app-key-file): each request then shows as a check run. Instead of a token.
    #[arg(long, env = "WARROOM_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,

    /// The GitHub App's installation on the repository's owner.
    #[arg(long, env = "WARROOM_GITHUB_APP_INSTALLATION_ID")]
    pub github_app_installation_id: Option<u64>,

    /// The GitHub App's private key (PEM), read once at start.
    #[arg(long, env = "WARROOM_GITHUB_APP_KEY_FILE", value_name = "FILE")]
    pub github_app_key_file: Option<PathBuf>,

    /// Also keep one comment on the request's commit with the summary (the per-cluster
    /// table), edited in place at each transition. Needs "Contents: write" (fine-grained
    /// token or App) or `repo` (classic token).
    #[arg(long, env = "WARROOM_GITHUB_COMMENT")]
    pub github_comment: bool,

    /// The most content-creating GitHub requests (status, check run and comment writes) per
    /// minute, over every request: GitHub's secondary rate limit is 80. Writes are spaced
    /// evenly; a rate-limit answer pauses them all until the time GitHub gave.
    #[arg(long, env = "WARROOM_GITHUB_WRITES_PER_MINUTE", default_value_t = 80)]
    pub github_writes_per_minute: u32,

    /// How long one GitHub request may take (connecting, sending, reading) before it is
    /// given up and retried.
    #[arg(long, env = "WARROOM_GITHUB_TIMEOUT", default_value = "30s", value_parser = warroom_runtime::parse_duration)]
    pub github_timeout: Duration,
}

/// Whether the GitHub surface is on.
#[derive(Debug, Clone)]
pub enum Setting {
    /// Off, and why (for the start log and `--check`).
    Off(String),
    On(Arc<GitHub>),
}

impl Setting {
    pub fn summary(&self) -> String {
        match self {
            Setting::Off(why) => format!("GitHub off ({why})"),
            Setting::On(github) => format!(
                "GitHub {} on {} via {}{}",
                match github.auth {
                    Auth::Token => "commit statuses",
                    Auth::App => "check runs",
                },
                github.repo,
                github.api_url,
                if github.comment { " with comments" } else { "" }
            ),
        }
    }
}

/// How the surface authenticates, which decides what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Token,
    App,
}

/// Shows each request's state on its commit in one GitHub repository.
pub struct GitHub {
    api: Api,
    auth: Auth,
    /// `owner/name`.
    repo: String,
    api_url: String,
    /// The web address of the repository, for the links.
    repo_web: String,
    /// The branch the results are pushed to.
    branch: String,
    comment: bool,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("repo", &self.repo)
            .field("api_url", &self.api_url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Args {
    /// Checks the GitHub settings into `problems`; `remote` and `branch` are the publisher's
    /// (`--repo`, `--branch`).
    pub(crate) fn settings(&self, problems: &mut Problems, remote: &str, branch: &str) -> Setting {
        let Some(credential) = self.credential(problems) else {
            return Setting::Off("no GITHUB_TOKEN, --github-token-file or GitHub App".to_owned());
        };
        let repo = match (&self.github_repo, repo_from_remote(remote)) {
            (Some(given), _) => problems.check(check_repo(given.trim())),
            (None, Some(derived)) => Some(derived),
            // A token that is only in the environment (a developer's shell, say) with a
            // local remote: nothing to show on, and nothing asked for.
            (None, None)
                if matches!(credential, Credential::Token(_))
                    && self.github_token_file.is_none() =>
            {
                return Setting::Off(format!(
                    "GITHUB_TOKEN is set, but the remote {remote} is not a GitHub URL; give \
                     --github-repo to turn it on"
                ));
            }
            (None, None) => {
                problems.push(format!(
                    "--github-repo: the GitHub repository cannot be told from --repo {remote} \
                     (expected https://<host>/<owner>/<name> or git@<host>:<owner>/<name>); \
                     give --github-repo owner/name (WARROOM_GITHUB_REPO)"
                ));
                None
            }
        };
        let api_url = problems.check(check_api_url(&self.github_api_url));
        if !(1..=60_000).contains(&self.github_writes_per_minute) {
            problems.push(format!(
                "--github-writes-per-minute {} is out of range; expected 1 to 60000",
                self.github_writes_per_minute
            ));
        }
        if self.github_timeout < Duration::from_secs(1) {
            problems.push(format!(
                "--github-timeout {:?} is shorter than 1s",
                self.github_timeout
            ));
        }
        let web = match &self.github_web_url {
            Some(web) => problems.check(check_web_url(web)),
            None => api_url.as_deref().map(web_from_api),
        };
        let (Some(repo), Some(api_url), Some(web)) = (repo, api_url, web) else {
            return Setting::Off("invalid settings".to_owned());
        };
        let auth = match credential {
            Credential::Token(_) => Auth::Token,
            Credential::App { .. } => Auth::App,
        };
        let connect = Connect {
            api_url: api_url.clone(),
            timeout: self.github_timeout,
            credential,
        };
        match connect.build(false) {
            Ok(_) => Setting::On(Arc::new(GitHub {
                api: Api::new(
                    connect,
                    format!("/repos/{repo}"),
                    WriteLimit::per_minute(self.github_writes_per_minute),
                ),
                auth,
                repo_web: format!("{web}/{repo}"),
                repo,
                api_url,
                branch: branch.to_owned(),
                comment: self.github_comment,
            })),
            Err(problem) => {
                problems.push(problem);
                Setting::Off("invalid settings".to_owned())
            }
        }
    }

    /// The token or the App, if one is given; both, or an incomplete App, is a problem.
    fn credential(&self, problems: &mut Problems) -> Option<Credential> {
        let token = problems
            .check(secret_setting(
                ("--github-token (GITHUB_TOKEN)", self.github_token.as_ref()),
                (
                    "--github-token-file (WARROOM_GITHUB_TOKEN_FILE)",
                    self.github_token_file.as_deref(),
                ),
            ))
            .flatten()
            .filter(|t| !t.expose().trim().is_empty());
        let app = [
            self.github_app_id.is_some(),
            self.github_app_installation_id.is_some(),
            self.github_app_key_file.is_some(),
        ];
        if app.iter().any(|given| *given) && token.is_some() {
            problems.push(
                "both a GitHub token and a GitHub App are given; give one: a token shows commit \
                 statuses, an App check runs",
            );
            return None;
        }
        if let Some(token) = token {
            let value = token.expose().trim();
            if !value.chars().all(|c| c.is_ascii_graphic()) {
                problems
                    .push("the GitHub token contains spaces or characters a header cannot carry");
                return None;
            }
            return Some(Credential::Token(Secret::new(value)));
        }
        match (
            self.github_app_id,
            self.github_app_installation_id,
            &self.github_app_key_file,
        ) {
            (None, None, None) => None,
            (Some(id), Some(installation), Some(file)) => {
                let key = problems.check(read_secret_file(
                    "--github-app-key-file (WARROOM_GITHUB_APP_KEY_FILE)",
                    file,
                ))?;
                Some(Credential::App {
                    id,
                    installation,
                    key: key.expose().as_bytes().to_vec(),
                })
            }
            _ => {
                problems.push(
                    "a GitHub App needs all of --github-app-id, --github-app-installation-id \
                     and --github-app-key-file",
                );
                None
            }
        }
    }
}

/// `owner/name` checked: two names of letters, digits, `-`, `_` and `.`.
fn check_repo(repo: &str) -> Result<String, String> {
    let ok = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok(owner) && ok(name) => Ok(repo.to_owned()),
        _ => Err(format!(
            "--github-repo `{repo}` is not owner/name (letters, digits, `-`, `_` and `.`)"
        )),
    }
}

/// The GitHub repository of a remote URL: `https://host/owner/name(.git)`,
/// `ssh://git@host[:port]/owner/name.git` or `git@host:owner/name.git`.
fn repo_from_remote(remote: &str) -> Option<String> {
    let remote = remote.trim();
    let path = if let Some(rest) = ["https://", "http://", "ssh://"]
        .iter()
        .find_map(|scheme| remote.strip_prefix(scheme))
    {
        rest.split_once('/')?.1
    } else {
        // scp-like: `[user@]host:path`, where no `/` comes before the `:`.
        let (host, path) = remote.split_once(':')?;
        if host.is_empty() || host.contains('/') {
            return None;
        }
        path
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    check_repo(path).ok()
}

/// The API URL checked: http(s), no credentials, no trailing `/`.
fn check_api_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("--github-api-url {url} must start with https:// or http://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err(format!(
            "--github-api-url {url} must name a host and carry no credentials"
        ));
    }
    if url.starts_with("http://") && !is_loopback(host) {
        return Err(format!(
            "--github-api-url {url}: the GitHub credentials would cross the network in clear; \
             use https:// (plain http is accepted only for a loopback fixture)"
        ));
    }
    Ok(url.to_owned())
}

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

fn check_web_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(url.to_owned())
    } else {
        Err(format!(
            "--github-web-url {url} must start with https:// or http://"
        ))
    }
}

/// The web address of the GitHub behind an API URL.
fn web_from_api(api: &str) -> String {
    if let Some(server) = api.strip_suffix("/api/v3") {
        return server.to_owned();
    }
    for scheme in ["https://", "http://"] {
        if let Some(host) = api
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("api."))
        {
            return format!("{scheme}{host}");
        }
    }
    api.to_owned()
}

/// The parts of GitHub's answers the surface reads.
#[derive(Deserialize)]
struct Created {
    id: u64,
}

#[derive(Deserialize)]
struct CheckRuns {
    check_runs: Vec<Created>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: String,
}

impl Surface for GitHub {
    const NAME: &'static str = "github";
    /// Requests in flight at once: GitHub answers in a few hundred milliseconds, and the
    /// writes are paced by [`WriteLimit`] anyway.
    const CONCURRENCY: usize = 8;

    async fn show(&self, status: &RequestStatus, context: &mut Context) -> Result<Shown, Failure> {
        let Some(sha) = status.commit.as_deref() else {
            debug!(request = %status.id, "no commit known for the request; nothing to show on GitHub");
            return Ok(Shown::Done);
        };
        let report = self.report_url(status);
        match self.auth {
            Auth::Token => self.commit_status(sha, status, &report).await?,
            Auth::App => {
                if self.check_run(sha, status, &report, context).await? == Shown::ClaimedElsewhere {
                    return Ok(Shown::ClaimedElsewhere);
                }
            }
        }
        if self.comment {
            return self.comment(sha, status, &report, context).await;
        }
        Ok(Shown::Done)
    }
}

impl GitHub {
    /// The request's report on the web: `<web>/<owner>/<name>/blob/<branch>/<results>/README.md`.
    fn report_url(&self, status: &RequestStatus) -> String {
        format!(
            "{}/blob/{}/{}/README.md",
            self.repo_web, self.branch, status.results_dir
        )
    }

    /// The commit status `claude-warroom/<id>`, which GitHub replaces in place.
    async fn commit_status(&self, sha: &str, status: &RequestStatus, report: &str) -> Answer<()> {
        let body = json!({
            "state": State::of(status.phase).as_status(),
            "target_url": report,
            "description": render::description(status),
            "context": format!("claude-warroom/{}", status.id),
        });
        self.api
            .post::<_, serde_json::Value>(&format!("/statuses/{sha}"), &body)
            .await?;
        Ok(())
    }

    /// The check run `claude-warroom/<id>`: created once, then edited in place.
    async fn check_run(
        &self,
        sha: &str,
        status: &RequestStatus,
        report: &str,
        context: &mut Context,
    ) -> Result<Shown, Failure> {
        let name = format!("claude-warroom/{}", status.id);
        let mut body = json!({
            "name": name,
            "status": render::check_run_status(status.phase),
            "details_url": report,
            "external_id": status.id.to_string(),
            "output": {
                "title": render::title(status),
                "summary": capped(render::summary(status, report, None)),
            },
        });
        if status.phase.is_final() {
            body["conclusion"] = json!(conclusion(status.phase));
        }
        let existing = match self.claim(CHECK_RUN, context).await? {
            Claim::Elsewhere => return Ok(Shown::ClaimedElsewhere),
            Claim::Known(id) => Some(id),
            Claim::Unsure => {
                let path = format!(
                    "/commits/{sha}/check-runs?check_name={}",
                    name.replace('/', "%2F")
                );
                let found: CheckRuns = self.api.get(&path).await?;
                found.check_runs.first().map(|run| run.id)
            }
            Claim::New => None,
        };
        if let Some(id) = existing {
            self.api
                .patch::<_, serde_json::Value>(&format!("/check-runs/{id}"), &body)
                .await?;
            remember(CHECK_RUN, id, context).await;
            return Ok(Shown::Done);
        }
        body["head_sha"] = json!(sha);
        let created: Created = self.api.post("/check-runs", &body).await?;
        remember(CHECK_RUN, created.id, context).await;
        Ok(Shown::Done)
    }

    /// The one comment on the commit, found again by its hidden marker.
    async fn comment(
        &self,
        sha: &str,
        status: &RequestStatus,
        report: &str,
        context: &mut Context,
    ) -> Result<Shown, Failure> {
        let marker = format!("claude-warroom:{}", status.id);
        let body = json!({ "body": capped(render::summary(status, report, Some(&marker))) });
        let existing = match self.claim(COMMENT, context).await? {
            Claim::Elsewhere => return Ok(Shown::ClaimedElsewhere),
            Claim::Known(id) => Some(id),
            Claim::Unsure => {
                let comments: Vec<Comment> = self
                    .api
                    .get(&format!("/commits/{sha}/comments?per_page=100"))
                    .await?;
                let marker = format!("<!-- {marker} -->");
                comments
                    .iter()
                    .find(|c| c.body.starts_with(&marker))
                    .map(|c| c.id)
            }
            Claim::New => None,
        };
        if let Some(id) = existing {
            self.api
                .patch::<_, serde_json::Value>(&format!("/comments/{id}"), &body)
                .await?;
            remember(COMMENT, id, context).await;
            return Ok(Shown::Done);
        }
        let created: Created = self
            .api
            .post(&format!("/commits/{sha}/comments"), &body)
            .await?;
        remember(COMMENT, created.id, context).await;
        Ok(Shown::Done)
    }

    /// What the record says of the object `handle`; claims it (compare-and-set) when
    /// nothing does, so that two replicas never both create it.
    async fn claim(&self, handle: &str, context: &mut Context) -> Result<Claim, Failure> {
        match context.record.handles.get(handle).map(String::as_str) {
            Some(CREATING) => return Ok(Claim::Unsure),
            Some(id) => {
                if let Ok(id) = id.parse() {
                    return Ok(Claim::Known(id));
                }
                return Ok(Claim::Unsure);
            }
            None => {}
        }
        context
            .record
            .handles
            .insert(handle.to_owned(), CREATING.to_owned());
        match context.save().await {
            Ok(()) => Ok(Claim::New),
            Err(conflict) => {
                debug!(cause = %conflict, "another replica is creating it");
                Ok(Claim::Elsewhere)
            }
        }
    }
}

/// What the record says of an object to create once.
enum Claim {
    /// Created before, with this id.
    Known(u64),
    /// Claimed before, but its id was not recorded: it may exist.
    Unsure,
    /// Claimed now: create it.
    New,
    /// Another replica claimed it just now.
    Elsewhere,
}

/// Records the id of `handle` at once, so that a crash before the snapshot is recorded does
/// not make the next try look it up.
async fn remember(handle: &str, id: u64, context: &mut Context) {
    let id = id.to_string();
    if context.record.handles.get(handle) == Some(&id) {
        return;
    }
    context.record.handles.insert(handle.to_owned(), id);
    if let Err(conflict) = context.save().await {
        debug!(cause = %conflict, "the id is recorded with the snapshot instead");
    }
}

/// A check run's conclusion: success only for `completed`.
fn conclusion(phase: RequestPhase) -> &'static str {
    match State::of(phase) {
        State::Success => "success",
        State::Pending | State::Failure => "failure",
    }
}

fn capped(mut text: String) -> String {
    if text.len() > SUMMARY_LIMIT {
        let mut end = SUMMARY_LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n\n(cut: see the report)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        github: Args,
    }

    /// The setting for `args` with the publisher's remote `remote`, or every problem.
    fn setting(args: &[&str], remote: &str) -> Result<Setting, String> {
        use clap::Parser as _;
        let mut all = vec!["warroom-publisher"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).map_err(|e| e.to_string())?;
        let mut problems = Problems::new();
        let setting = cli.github.settings(&mut problems, remote, "main");
        problems.finish().map_err(|e| e.to_string())?;
        Ok(setting)
    }

    #[test]
    fn without_credentials_the_surface_is_off_and_says_so() {
        let off = setting(&[], "https://github.com/acme/warroom.git").unwrap();
        assert!(
            off.summary().starts_with("GitHub off (no GITHUB_TOKEN"),
            "{}",
            off.summary()
        );
        // A token only in the environment of a stack on a local remote: off, with the way on.
        let off = setting(&["--github-token", "ghp_x"], "/srv/git/warroom.git").unwrap();
        assert!(
            off.summary().contains("give --github-repo"),
            "{}",
            off.summary()
        );
    }

    #[test]
    fn a_token_turns_commit_statuses_on_for_the_remote_repository() {
        let on = setting(
            &["--github-token", "ghp_x", "--github-comment"],
            "git@github.com:acme/warroom.git",
        )
        .unwrap();
        assert_eq!(
            on.summary(),
            "GitHub commit statuses on acme/warroom via https://api.github.com with comments"
        );
        let Setting::On(github) = on else {
            panic!("on")
        };
        assert_eq!(github.repo_web, "https://github.com/acme/warroom");
    }

    #[test]
    fn bad_github_settings_are_refused_with_the_flag_named() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_key = dir.path().join("key.pem");
        std::fs::write(&not_a_key, "hello\n").unwrap();
        let key = not_a_key.display().to_string();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "ghp_x\n").unwrap();
        let token_file = token_file.display().to_string();
        let remote = "https://github.com/acme/warroom";
        for (args, remote, expected) in [
            (
                vec!["--github-app-id", "1"],
                remote,
                "needs all of --github-app-id",
            ),
            (
                vec!["--github-token", "t", "--github-app-id", "1"],
                remote,
                "both a GitHub token and a GitHub App",
            ),
            (
                vec![
                    "--github-app-id",
                    "1",
                    "--github-app-installation-id",
                    "2",
                    "--github-app-key-file",
                    &key,
                ],
                remote,
                "not an RSA private key",
            ),
            (
                vec!["--github-token-file", &token_file],
                "/srv/git/w.git",
                "--github-repo: the GitHub repository cannot be told",
            ),
            (
                vec!["--github-token", "t", "--github-repo", "acme"],
                remote,
                "--github-repo `acme`",
            ),
            (
                vec![
                    "--github-token",
                    "t",
                    "--github-api-url",
                    "http://ghe.example.com",
                ],
                remote,
                "in clear",
            ),
            (
                vec!["--github-token", "t", "--github-writes-per-minute", "0"],
                remote,
                "--github-writes-per-minute 0",
            ),
            (
                vec!["--github-token", "t t"],
                remote,
                "the GitHub token contains spaces",
            ),
        ] {
            let err = match setting(&args, remote) {
                Ok(s) => panic!("{args:?} accepted: {}", s.summary()),
                Err(e) => e,
            };
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_repository_is_read_from_the_remote() {
        for (remote, repo) in [
            ("https://github.com/acme/warroom.git", Some("acme/warroom")),
            ("https://github.com/acme/warroom", Some("acme/warroom")),
            ("git@github.com:acme/warroom.git", Some("acme/warroom")),
            (
                "ssh://git@ghe.example.com:2222/acme/war.room.git",
                Some("acme/war.room"),
            ),
            (
                "https://ghe.example.com/acme/warroom/",
                Some("acme/warroom"),
            ),
            ("/srv/git/warroom.git", None),
            ("file:///srv/git/warroom.git", None),
            ("https://github.com/warroom.git", None),
        ] {
            assert_eq!(repo_from_remote(remote).as_deref(), repo, "{remote}");
        }
    }

    #[test]
    fn the_web_address_follows_the_api() {
        assert_eq!(web_from_api("https://api.github.com"), "https://github.com");
        assert_eq!(
            web_from_api("https://ghe.example.com/api/v3"),
            "https://ghe.example.com"
        );
        assert_eq!(
            web_from_api("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_flag_named() {
        assert!(
            check_api_url("ftp://x")
                .unwrap_err()
                .contains("--github-api-url")
        );
        assert!(check_api_url("http://ghe.example.com/api/v3").is_err());
        assert_eq!(
            check_api_url("http://127.0.0.1:9/api/v3/").unwrap(),
            "http://127.0.0.1:9/api/v3"
        );
        assert!(check_repo("acme").unwrap_err().contains("--github-repo"));
        assert!(check_repo("acme/../x").is_err());
    }
}
