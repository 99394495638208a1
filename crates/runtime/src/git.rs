//! Runs the real `git` binary for the gateway (reads) and the publisher (writes).
//!
//! Every call is non-interactive (`GIT_TERMINAL_PROMPT=0`), ignores the machine's system
//! configuration, and fails with git's own stderr in the error. An HTTPS token is handed to
//! git through `GIT_CONFIG_*` environment variables, so it never shows in a process list or
//! in a remote URL that could be logged.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::config::Secret;

/// A failed git command.
#[derive(Debug, thiserror::Error)]
#[error("`git {args}` in {dir} failed: {message}")]
pub struct GitError {
    pub args: String,
    pub dir: String,
    pub message: String,
}

/// Git commands run in one folder.
#[derive(Clone, Debug)]
pub struct Git {
    dir: PathBuf,
    /// Kept as a [`Secret`], so that the derived `Debug` of a `Git` never shows it.
    token: Option<Secret>,
    identity: Option<(String, String)>,
    /// `-c key=value` settings given to every command, ahead of the repository's own.
    config: Vec<(String, String)>,
}

/// The output of a git command.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Git {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Git {
            dir: dir.into(),
            token: None,
            identity: None,
            config: Vec::new(),
        }
    }

    /// Authenticates HTTPS remotes with this token (GitHub: a PAT or an installation token).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty()).map(Secret::new);
        self
    }

    /// Commits as this author and committer.
    pub fn with_identity(mut self, name: &str, email: &str) -> Self {
        self.identity = Some((name.to_owned(), email.to_owned()));
        self
    }

    /// Gives every command `-c key=value`, which wins over the repository's configuration
    /// (the publisher's commit signing, for example, so that no file in the clone can turn
    /// it off).
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs git and returns its stdout as text; a non-zero exit is an error.
    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let output = self.output(args).await?;
        if output.success {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(self.error(args, output.stderr.trim().to_owned()))
        }
    }

    /// Runs git and returns its stdout as bytes; a non-zero exit is an error.
    pub async fn run_bytes(&self, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let output = self.output(args).await?;
        if output.success {
            Ok(output.stdout)
        } else {
            Err(self.error(args, output.stderr.trim().to_owned()))
        }
    }

    /// Runs git with `input` on its stdin and returns its stdout; a non-zero exit is an
    /// error. For the batch commands (`cat-file --batch`) that answer many questions in one
    /// process. The input is written while the output is read, so neither side can fill
    /// its pipe and wait for the other.
    pub async fn run_with_input(&self, args: &[&str], input: Vec<u8>) -> Result<Vec<u8>, GitError> {
        use tokio::io::AsyncWriteExt as _;
        let mut command = self.command(args);
        command.stdin(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| self.error(args, format!("cannot run git: {e}")))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| self.error(args, "git's stdin is not a pipe".to_owned()))?;
        let writer = tokio::spawn(async move {
            // A write error means git exited early; its exit status and stderr say why.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| self.error(args, format!("cannot run git: {e}")))?;
        let _ = writer.await;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(self.error(
                args,
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ))
        }
    }

    /// Runs git and returns whatever happened, for callers that act on failures (a rejected
    /// push, `merge-base --is-ancestor`).
    pub async fn output(&self, args: &[&str]) -> Result<Output, GitError> {
        let output = self
            .command(args)
            .output()
            .await
            .map_err(|e| self.error(args, format!("cannot run git: {e}")))?;
        Ok(Output {
            success: output.status.success(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// The git command for `args`, with the environment and settings every call gets.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        for (key, value) in &self.config {
            command.arg("-c").arg(format!("{key}={value}"));
        }
        command
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // git runs ssh-keygen to sign and verify, and ssh for ssh:// remotes: both need the
        // user looked up, which an arbitrary OpenShift UID is not without nss_wrapper.
        crate::identity::apply_tokio(&mut command);
        if let Some(token) = &self.token {
            command
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {}", basic_auth(token.expose())),
                );
        }
        if let Some((name, email)) = &self.identity {
            command
                .env("GIT_AUTHOR_NAME", name)
                .env("GIT_AUTHOR_EMAIL", email)
                .env("GIT_COMMITTER_NAME", name)
                .env("GIT_COMMITTER_EMAIL", email);
        }
        command
    }

    fn error(&self, args: &[&str], message: String) -> GitError {
        GitError {
            args: args.join(" "),
            dir: self.dir.display().to_string(),
            message,
        }
    }
}

/// `x-access-token:<token>` in base64, as GitHub expects for token authentication over HTTPS.
fn basic_auth(token: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let git = Git::new("/tmp").with_token(Some("s3cr3t".to_owned()));
        assert!(!format!("{git:?}").contains("s3cr3t"));
    }

    #[test]
    fn basic_auth_is_standard_base64() {
        // echo -n 'x-access-token:abc' | base64
        assert_eq!(basic_auth("abc"), "eC1hY2Nlc3MtdG9rZW46YWJj");
        assert_eq!(basic_auth("ab"), "eC1hY2Nlc3MtdG9rZW46YWI=");
    }
}
