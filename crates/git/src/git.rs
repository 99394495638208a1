//! [`Git`]: how every git process of claude-warroom is built and run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use secrecy::{ExposeSecret as _, SecretString};

use crate::{CommitId, Error, Result};

/// Where a git command's environment comes from.
#[derive(Debug, Clone)]
enum Environment {
    /// The engineer's own: every variable and configuration file, as when they type `git`.
    Engineers,
    /// The daemons': this process's environment without any `GIT_*` variable but
    /// [`TRANSPORT`] and without an askpass helper, and the [`SEALED`] settings.
    Sealed,
    /// Nothing of this process's environment but `PATH`; `HOME` and `GNUPGHOME` are private
    /// folders. For signature checks, where no setting of the machine may widen trust.
    Isolated { home: PathBuf, gnupg_home: PathBuf },
}

/// What every sealed or isolated command gets: no prompt (a daemon has no terminal, and a
/// wait for one never ends), no system or global configuration (`~/.gitconfig` and
/// `$XDG_CONFIG_HOME/git/config` are not read either, so neither an `url.*.insteadOf` nor a
/// `core.sshCommand` there can redirect a fetch), no replace refs, and English messages,
/// which callers match (`couldn't find remote ref`).
const SEALED: [(&str, &str); 5] = [
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_NO_REPLACE_OBJECTS", "1"),
    ("LC_ALL", "C"),
];

/// The `GIT_*` variables a daemon keeps: how its operator reaches an `ssh://` remote or an
/// `https://` one behind a private CA, set in the daemon's own environment (a Deployment)
/// since no configuration file is read. Anything else (`GIT_DIR`, `GIT_CONFIG_*`, ...) could
/// point git at another repository or configuration.
const TRANSPORT: [&str; 4] = [
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
];

/// Git commands run in one folder, all with the same environment and settings.
#[derive(Clone, Debug)]
pub struct Git {
    dir: PathBuf,
    environment: Environment,
    /// A [`SecretString`], so that the derived `Debug` never shows it.
    token: Option<SecretString>,
    identity: Option<(String, String)>,
    /// `-c key=value` settings given to every command, ahead of the repository's own.
    config: Vec<(String, String)>,
}

/// The output of a git command that ran, whether or not it succeeded.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    /// Stdout as text, trimmed.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_owned()
    }
}

/// Leaves `command` nothing of this process's environment but `PATH` (and nss_wrapper's
/// variables, added by [`Git::command`] and [`crate::signature::Signers`]): no `GIT_DIR`,
/// `GIT_CONFIG_*`, `GNUPGHOME`, `SSH_AUTH_SOCK` or `HOME` of the user reaches git,
/// ssh-keygen or gpg.
pub(crate) fn isolate(command: &mut Command, home: &Path, gnupg_home: &Path) {
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .env("HOME", home)
        .env("GNUPGHOME", gnupg_home)
        .envs(SEALED);
}

/// Refuses a token for a plain `http://` remote, where it would cross the network
/// unencrypted. Config validation calls it before any I/O; [`Git`] calls it again before
/// every command that carries a token.
pub fn refuse_token_over_http(url: &str, token: Option<&SecretString>) -> Result<()> {
    let has_token = token.is_some_and(|t| !t.expose_secret().trim().is_empty());
    if has_token && url.trim().to_ascii_lowercase().starts_with("http://") {
        return Err(Error::TokenOverHttp {
            url: url.trim().to_owned(),
        });
    }
    Ok(())
}

impl Git {
    /// A daemon's git in `dir`: sealed (see [`SEALED`]); nss_wrapper for every child.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Git::with_environment(dir, Environment::Sealed)
    }

    /// The engineer's own git in `dir`: their configuration (identity, credential helpers,
    /// commit signing, hooks) and environment are kept, because a request must be committed
    /// and pushed exactly as they would by hand. Only the CLI uses it, and never to trust
    /// anything (its `--verify` uses [`crate::signature::Signers`]).
    pub fn engineers(dir: impl Into<PathBuf>) -> Self {
        Git::with_environment(dir, Environment::Engineers)
    }

    /// A git with nothing of this process's environment but `PATH`, `home` as `HOME` and
    /// `gnupg_home` as `GNUPGHOME`.
    pub(crate) fn isolated(dir: impl Into<PathBuf>, home: &Path, gnupg_home: &Path) -> Self {
        let environment = Environment::Isolated {
            home: home.to_path_buf(),
            gnupg_home: gnupg_home.to_path_buf(),
        };
        Git::with_environment(dir, environment)
    }

    fn with_environment(dir: impl Into<PathBuf>, environment: Environment) -> Self {
        Git {
            dir: dir.into(),
            environment,
            token: None,
            identity: None,
            config: Vec::new(),
        }
    }

    /// Authenticates HTTPS remotes with this token (GitHub: a PAT or an installation token);
    /// a blank token is none.
    pub fn with_token(mut self, token: Option<SecretString>) -> Self {
        self.token = token.filter(|t| !t.expose_secret().trim().is_empty());
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

    /// The git command for `args`, with the environment and settings every call gets; stdin
    /// is null, stdout and stderr are piped. Fails when a token would go to a plain
    /// `http://` remote named in `args`.
    pub fn command(&self, args: &[&str]) -> Result<Command> {
        if let Some(url) = args
            .iter()
            .find(|a| a.to_ascii_lowercase().starts_with("http://"))
        {
            refuse_token_over_http(url, self.token.as_ref())?;
        }
        let mut command = Command::new("git");
        match &self.environment {
            Environment::Engineers => {}
            Environment::Sealed => {
                let inherited: Vec<OsString> = std::env::vars_os()
                    .map(|(key, _)| key)
                    .filter(|key| {
                        let key = key.to_string_lossy();
                        key.starts_with("GIT_") && !TRANSPORT.contains(&key.as_ref())
                    })
                    .collect();
                for key in inherited {
                    command.env_remove(key);
                }
                command.env_remove("SSH_ASKPASS");
                command.envs(SEALED);
            }
            Environment::Isolated { home, gnupg_home } => {
                isolate(&mut command, home, gnupg_home);
            }
        }
        if !matches!(self.environment, Environment::Engineers) {
            // git runs ssh-keygen to sign and verify, and ssh for ssh:// remotes: both need
            // the user looked up, which an arbitrary OpenShift UID is not without nss_wrapper.
            crate::identity::apply(&mut command);
        }
        for (key, value) in &self.config {
            command.arg("-c").arg(format!("{key}={value}"));
        }
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = &self.token {
            // In the environment, not `-c`: argv is readable by every user of the machine.
            command
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {}", basic_auth(token.expose_secret())),
                );
        }
        if let Some((name, email)) = &self.identity {
            command
                .env("GIT_AUTHOR_NAME", name)
                .env("GIT_AUTHOR_EMAIL", email)
                .env("GIT_COMMITTER_NAME", name)
                .env("GIT_COMMITTER_EMAIL", email);
        }
        Ok(command)
    }

    /// Runs git and returns its stdout as text; a non-zero exit is an error with git's stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let stdout = self.run_bytes(args)?;
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    /// Runs git and returns its stdout; a non-zero exit is an error with git's stderr.
    pub fn run_bytes(&self, args: &[&str]) -> Result<Vec<u8>> {
        self.check(args, self.output(args)?)
    }

    /// Runs git and returns whatever happened, for callers that act on failures (a rejected
    /// push, `merge-base --is-ancestor`).
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        let output = self.command(args)?.output();
        self.finish(args, output)
    }

    /// Runs git with `input` on its stdin and returns its stdout; a non-zero exit is an
    /// error. The input is written from a thread while the output is read, so neither side
    /// can fill its pipe and wait for the other.
    pub fn run_with_input(&self, args: &[&str], input: Vec<u8>) -> Result<Vec<u8>> {
        use std::io::Write as _;
        let mut command = self.command(args)?;
        command.stdin(Stdio::piped());
        let mut child = command.spawn().map_err(|e| self.spawn_error(args, e))?;
        let stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            // A write error means git exited early; its exit status and stderr say why.
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&input);
            }
        });
        let output = child.wait_with_output();
        let _ = writer.join();
        let output = self.finish(args, output)?;
        self.check(args, output)
    }

    /// The commit `rev` names, checked as a [`CommitId`]; `None` when it names none.
    pub fn resolve(&self, rev: &str) -> Result<Option<CommitId>> {
        let spec = format!("{rev}^{{commit}}");
        let args = ["rev-parse", "--verify", "--quiet", &spec];
        let output = self.output(&args)?;
        if !output.success {
            return Ok(None);
        }
        self.commit_id(&args, &output.text()).map(Some)
    }

    /// `text` (git's output for `args`) as a commit id.
    pub fn commit_id(&self, args: &[&str], text: &str) -> Result<CommitId> {
        text.trim().parse().map_err(|source| Error::BadCommitId {
            command: self.command_line(args),
            source,
        })
    }

    /// An [`Error::Failed`] for `args`, for callers that judge an [`Output`] themselves.
    pub fn failed(&self, args: &[&str], stderr: &str) -> Error {
        Error::Failed {
            command: self.command_line(args),
            dir: self.dir.display().to_string(),
            stderr: stderr.trim().to_owned(),
        }
    }

    /// An [`Error::Unexpected`] for `args`, for callers that parse git's output.
    pub fn unexpected(&self, args: &[&str], detail: String) -> Error {
        Error::Unexpected {
            command: self.command_line(args),
            dir: self.dir.display().to_string(),
            detail,
        }
    }

    fn command_line(&self, args: &[&str]) -> String {
        format!("git {}", args.join(" "))
    }

    fn spawn_error(&self, args: &[&str], source: std::io::Error) -> Error {
        Error::Spawn {
            program: "git",
            command: self.command_line(args),
            source,
        }
    }

    fn finish(
        &self,
        args: &[&str],
        output: std::io::Result<std::process::Output>,
    ) -> Result<Output> {
        let output = output.map_err(|e| self.spawn_error(args, e))?;
        Ok(Output {
            success: output.status.success(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    fn check(&self, args: &[&str], output: Output) -> Result<Vec<u8>> {
        if output.success {
            Ok(output.stdout)
        } else {
            Err(self.failed(args, &output.stderr))
        }
    }
}

/// The same commands on tokio's process, for the daemons: built by [`Git::command`], and
/// killed when their future is dropped (a timeout).
#[cfg(feature = "tokio")]
impl Git {
    fn tokio_command(&self, args: &[&str]) -> Result<tokio::process::Command> {
        let mut command = tokio::process::Command::from(self.command(args)?);
        command.kill_on_drop(true);
        Ok(command)
    }

    /// [`Git::run`], async.
    pub async fn run_async(&self, args: &[&str]) -> Result<String> {
        let stdout = self.run_bytes_async(args).await?;
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    /// [`Git::run_bytes`], async.
    pub async fn run_bytes_async(&self, args: &[&str]) -> Result<Vec<u8>> {
        let output = self.output_async(args).await?;
        self.check(args, output)
    }

    /// [`Git::output`], async.
    pub async fn output_async(&self, args: &[&str]) -> Result<Output> {
        let output = self.tokio_command(args)?.output().await;
        self.finish(args, output)
    }

    /// [`Git::run_with_input`], async: the input is written from a task while the output is
    /// read.
    pub async fn run_with_input_async(&self, args: &[&str], input: Vec<u8>) -> Result<Vec<u8>> {
        use tokio::io::AsyncWriteExt as _;
        let mut command = self.tokio_command(args)?;
        command.stdin(Stdio::piped());
        let mut child = command.spawn().map_err(|e| self.spawn_error(args, e))?;
        let stdin = child.stdin.take();
        let writer = tokio::spawn(async move {
            // A write error means git exited early; its exit status and stderr say why.
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
        });
        let output = child.wait_with_output().await;
        let _ = writer.await;
        let output = self.finish(args, output)?;
        self.check(args, output)
    }

    /// [`Git::resolve`], async.
    pub async fn resolve_async(&self, rev: &str) -> Result<Option<CommitId>> {
        let spec = format!("{rev}^{{commit}}");
        let args = ["rev-parse", "--verify", "--quiet", &spec];
        let output = self.output_async(&args).await?;
        if !output.success {
            return Ok(None);
        }
        self.commit_id(&args, &output.text()).map(Some)
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
        let git = Git::new("/tmp").with_token(Some(SecretString::from("s3cr3t")));
        assert!(!format!("{git:?}").contains("s3cr3t"));
    }

    #[test]
    fn basic_auth_is_standard_base64() {
        // echo -n 'x-access-token:abc' | base64
        assert_eq!(basic_auth("abc"), "eC1hY2Nlc3MtdG9rZW46YWJj");
        assert_eq!(basic_auth("ab"), "eC1hY2Nlc3MtdG9rZW46YWI=");
    }
}
