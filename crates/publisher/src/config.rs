//! The publisher's command line and environment, and its validation before any I/O.

use std::path::PathBuf;
use std::time::Duration;

use warroom_runtime::CommonArgs;
pub use warroom_runtime::config::Secret;
use warroom_runtime::config::{Problems, check_branch, check_repo, short_hash};

use crate::{Error, Result};

/// The longest batch window accepted: messages wait this long before they are committed, and
/// each one's ack timer runs meanwhile.
pub const MAX_BATCH_WINDOW: Duration = Duration::from_secs(60);
/// The most push attempts per batch accepted; each one refetches the remote.
pub const MAX_PUSH_ATTEMPTS: u32 = 100;

/// Writes what the daemons report into `results/<id>/` of the repository: the only git writer.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "warroom-publisher", version, about, long_about = None)]
pub struct Config {
    /// The git remote to write to: a local path, file://, ssh://, scp-like (git@host:org/repo)
    /// or https:// URL. Never put credentials in the URL: an https token comes from
    /// WARROOM_GIT_TOKEN.
    #[arg(long, env = "WARROOM_REPO")]
    pub repo: String,

    /// The branch to commit results to.
    #[arg(long, env = "WARROOM_BRANCH", default_value = "main")]
    pub branch: String,

    /// The publisher's own working clone. It is reset to the remote branch before every batch,
    /// so it holds nothing that is not in the remote: any empty or previously used folder will
    /// do (a non-empty folder that is not a git repository is refused). Default:
    /// `<system temp dir>/warroom-publisher/<hash of repo and branch>`.
    #[arg(long, env = "WARROOM_PUBLISHER_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

    /// Token for https remotes (GitHub: a PAT or an installation token). Read it from the
    /// environment, not the command line, where other users could see it. Never logged.
    #[arg(long, env = "WARROOM_GIT_TOKEN", hide_env_values = true)]
    pub git_token: Option<Secret>,

    /// The author and committer name of result commits.
    #[arg(
        long,
        env = "WARROOM_GIT_AUTHOR_NAME",
        default_value = "claude-warroom"
    )]
    pub author_name: String,

    /// The author and committer email of result commits.
    #[arg(
        long,
        env = "WARROOM_GIT_AUTHOR_EMAIL",
        default_value = "warroom@localhost"
    )]
    pub author_email: String,

    /// After the first message of a batch, how long to gather further messages into the same
    /// commit: a number with a unit (`300ms`, `2s`) or a plain number of seconds; `0` commits
    /// every message that is already waiting, without waiting for more. At most 60s.
    #[arg(long, env = "WARROOM_BATCH_WINDOW", default_value = "300ms", value_parser = parse_duration)]
    pub batch_window: Duration,

    /// How many times a batch is pushed (fetching the remote and redoing the batch on its new
    /// head between attempts) before its messages are handed back for a later retry.
    #[arg(long, env = "WARROOM_PUSH_ATTEMPTS", default_value_t = 10)]
    pub push_attempts: u32,

    /// A note (Markdown) put at the top of every report written, the aggregated README.md and
    /// each cluster's report: for example to mark a staging or replay environment. The local
    /// stack's replay mode sets it.
    #[arg(long, env = "WARROOM_REPORT_NOTE")]
    pub report_note: Option<String>,

    #[command(flatten)]
    pub common: CommonArgs,
}

pub use warroom_runtime::parse_duration;

/// The configuration after validation: what `run` works with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The remote as git is given it (a local path made absolute).
    pub repo: String,
    pub branch: String,
    pub work_dir: PathBuf,
    pub token: Option<Secret>,
    pub author_name: String,
    pub author_email: String,
    pub batch_window: Duration,
    pub push_attempts: u32,
    pub report_note: Option<String>,
}

impl Config {
    /// Checks every value and resolves the defaults, without touching the network or git.
    /// Every problem is reported at once, one per line.
    pub(crate) fn validate(&self) -> Result<Settings> {
        let mut problems = Problems::new();
        problems.extend(self.common.problems());
        let repo = problems.check(check_repo(&self.repo));
        problems.check(check_branch(&self.branch));
        problems.check(check_identity("--author-name", &self.author_name));
        problems.check(check_identity("--author-email", &self.author_email));
        if self.batch_window > MAX_BATCH_WINDOW {
            problems.push(format!(
                "--batch-window {:?} is longer than {}s",
                self.batch_window,
                MAX_BATCH_WINDOW.as_secs()
            ));
        }
        if !(1..=MAX_PUSH_ATTEMPTS).contains(&self.push_attempts) {
            problems.push(format!(
                "--push-attempts {} is out of range; expected 1 to {MAX_PUSH_ATTEMPTS}",
                self.push_attempts
            ));
        }
        let work_dir = problems.check(self.work_dir(repo.as_deref().unwrap_or(&self.repo)));
        if self.git_token.is_some() && repo.as_deref().is_some_and(|r| r.starts_with("http://")) {
            problems.push(
                "--repo is a plain http:// URL but a git token is set; the token would cross \
                 the network unencrypted: use https://",
            );
        }
        problems.finish().map_err(Error::Config)?;
        let (Some(repo), Some(work_dir)) = (repo, work_dir) else {
            // Unreachable: a failed check noted a problem, and `finish` returned it.
            return Err(Error::Config("--repo or --work-dir is invalid".to_owned()));
        };
        let token = self
            .git_token
            .as_ref()
            .map(|t| t.expose().trim())
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        Ok(Settings {
            repo,
            branch: self.branch.clone(),
            work_dir,
            token,
            author_name: self.author_name.trim().to_owned(),
            author_email: self.author_email.trim().to_owned(),
            batch_window: self.batch_window,
            push_attempts: self.push_attempts,
            report_note: self
                .report_note
                .as_deref()
                .map(str::trim)
                .filter(|note| !note.is_empty())
                .map(str::to_owned),
        })
    }

    /// `--work-dir` made absolute, or the default for `repo` and the branch.
    fn work_dir(&self, repo: &str) -> Result<PathBuf, String> {
        match &self.work_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                Err("--work-dir must not be empty".to_owned())
            }
            Some(dir) => std::path::absolute(dir)
                .map_err(|e| format!("cannot make the --work-dir {} absolute: {e}", dir.display())),
            None => Ok(std::env::temp_dir()
                .join("warroom-publisher")
                .join(short_hash(&format!("{repo}\n{}", self.branch), 16))),
        }
    }
}

/// Refuses an author name or email git would mangle or refuse (`<`, `>`, line breaks).
fn check_identity(flag: &str, value: &str) -> Result<(), String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{flag} must not be empty"));
    }
    if value
        .chars()
        .any(|c| c.is_control() || c == '<' || c == '>')
    {
        return Err(format!(
            "{flag} `{value}` contains `<`, `>` or a control character"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["warroom-publisher"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config(&["--repo", "/srv/git/warroom.git"]);
        assert_eq!(c.branch, "main");
        assert_eq!(c.batch_window, Duration::from_millis(300));
        assert_eq!(c.push_attempts, 10);
        assert_eq!(c.author_name, "claude-warroom");
        assert_eq!(c.author_email, "warroom@localhost");
        let s = c.validate().unwrap();
        assert!(s.work_dir.starts_with(std::env::temp_dir()));
        assert_eq!(s.repo, "/srv/git/warroom.git");
    }

    #[test]
    fn invalid_values_are_refused_with_the_flag_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--repo", "https://u:t@github.com/o/r.git"], "credentials"),
            (&["--repo", "ftp://x/y"], "scheme"),
            (&["--repo", "/r", "--branch", "a..b"], "--branch"),
            (&["--repo", "/r", "--author-name", "a<b"], "--author-name"),
            (&["--repo", "/r", "--author-email", " "], "--author-email"),
            (&["--repo", "/r", "--push-attempts", "0"], "--push-attempts"),
            (&["--repo", "/r", "--batch-window", "2m"], "--batch-window"),
            (&["--repo", "http://h/r.git", "--git-token", "t"], "http://"),
        ];
        for (args, expected) in cases {
            let err = config(args).validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn every_bad_flag_is_reported_at_once() {
        let c = config(&[
            "--repo",
            "ftp://x/y",
            "--branch",
            "a..b",
            "--author-name",
            "a<b",
            "--push-attempts",
            "0",
            "--batch-window",
            "2m",
            "--nats-url",
            "",
            "--nats-tls-ca",
            "/nonexistent/ca.pem",
        ]);
        let err = c.validate().unwrap_err().to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines[0].contains("7 problems"), "{err}");
        for expected in [
            "scheme",
            "--branch",
            "--author-name",
            "--push-attempts",
            "--batch-window",
            "--nats-url",
            "--nats-tls-ca",
        ] {
            assert_eq!(
                lines.iter().filter(|l| l.contains(expected)).count(),
                1,
                "{expected} is not reported on its own line: {err}"
            );
        }
        assert_eq!(lines.len(), 8, "{err}");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let c = config(&["--repo", "/r", "--git-token", "s3cr3t"]);
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let settings = c.validate().unwrap();
        assert!(!format!("{settings:?}").contains("s3cr3t"));
        assert_eq!(settings.token.as_ref().map(Secret::expose), Some("s3cr3t"));
    }
}
