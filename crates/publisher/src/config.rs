//! The publisher's command line and environment, and its validation before any I/O.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use warroom_runtime::CommonArgs;
pub use warroom_runtime::config::Secret;
use warroom_runtime::config::{InvalidConfig, Problems, short_hash};

use crate::Result;

/// The longest batch window accepted: messages wait this long before they are committed, and
/// each one's ack timer runs meanwhile.
pub const MAX_BATCH_WINDOW: Duration = Duration::from_secs(60);
/// The most push attempts per batch accepted; each one refetches the remote.
pub const MAX_PUSH_ATTEMPTS: u32 = 100;

/// Writes what the daemons report into `results/<id>/` of the repository: the only git writer.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "warroom-publisher", version, about, long_about = None)]
pub struct Config {
    #[command(flatten)]
    pub git: warroom_runtime::config::GitArgs,

    /// The publisher's own working clone, kept across restarts. It is reset to the remote
    /// branch before every batch, so it holds nothing that is not in the remote: any empty or
    /// previously used folder will do (a non-empty folder that is not a git repository is
    /// refused). Only the branch's tip is fetched (`--depth 1`). Default:
    /// `<system temp dir>/warroom-publisher/<hash of repo and branch>`.
    #[arg(long, env = "WARROOM_PUBLISHER_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

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
    /// every message that is already waiting, without waiting for more. A batch holding a
    /// request's final status is committed as soon as no more messages are waiting, without
    /// waiting out the window. At most 60s.
    #[arg(long, env = "WARROOM_BATCH_WINDOW", default_value = "300ms", value_parser = parse_duration)]
    pub batch_window: Duration,

    /// How many times a batch is pushed (fetching the remote and redoing the batch on its new
    /// head between attempts) before its messages are handed back for a later retry.
    #[arg(long, env = "WARROOM_PUSH_ATTEMPTS", default_value_t = 10)]
    pub push_attempts: u32,

    /// How long NATS waits for the publisher to acknowledge a message before it hands the
    /// message out again; a batch being pushed is marked as still in progress every quarter
    /// of it. Messages a publisher had fetched when it died are written this long later, by
    /// whichever replica is active. At least 1s and longer than --batch-window. Applies when
    /// the publisher's durable consumer is created (the first publisher to start creates it).
    #[arg(long, env = "WARROOM_ACK_WAIT", default_value = "2m", value_parser = parse_duration)]
    pub ack_wait: Duration,

    /// A note (Markdown) put at the top of every report written, the aggregated README.md and
    /// each cluster's report: for example to mark a staging or replay environment. The local
    /// stack's replay mode sets it.
    #[arg(long, env = "WARROOM_REPORT_NOTE")]
    pub report_note: Option<String>,

    /// Sign every result commit with this key, so that engineers can check with
    /// `claude-warroom status --verify` that results were written by this publisher. With
    /// `--signing-format ssh` (the default): an unencrypted OpenSSH private key file, readable
    /// only by its owner (mode 600 or 400); its public key is logged at start. With `openpgp`:
    /// the key id or fingerprint of a secret key without passphrase in the GnuPG keyring
    /// (`GNUPGHOME`). Checked at start: the publisher refuses to run with a key it cannot use.
    #[arg(long, env = "WARROOM_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<String>,

    /// How `--signing-key` signs: `ssh` (git's `gpg.format=ssh`, run by `ssh-keygen`) or
    /// `openpgp` (gpg).
    #[arg(
        long,
        env = "WARROOM_SIGNING_FORMAT",
        value_enum,
        default_value_t = SigningFormat::Ssh
    )]
    pub signing_format: SigningFormat,

    #[command(flatten)]
    pub surfaces: crate::surfaces::SurfaceArgs,

    #[command(flatten)]
    pub s3: crate::s3::S3Args,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// The signature format of result commits: git's `gpg.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SigningFormat {
    /// An SSH key, signed and checked with `ssh-keygen`.
    Ssh,
    /// An OpenPGP key in the GnuPG keyring, signed with `gpg`.
    Openpgp,
}

impl SigningFormat {
    fn as_git(self) -> &'static str {
        match self {
            SigningFormat::Ssh => "ssh",
            SigningFormat::Openpgp => "openpgp",
        }
    }
}

/// A signing key that was checked to work.
#[derive(Debug, Clone)]
pub(crate) struct Signing {
    pub format: SigningFormat,
    /// What git is given as `user.signingkey`: the absolute path of the SSH private key, or
    /// the OpenPGP key id.
    pub key: String,
    /// What identifies the key in the log: the SSH public key line, or the OpenPGP key id.
    pub public: String,
}

impl Signing {
    /// The `-c` settings that make every commit of the publisher's git signed by this key.
    pub fn git_config(&self) -> [(&'static str, &str); 3] {
        [
            ("gpg.format", self.format.as_git()),
            ("user.signingkey", &self.key),
            ("commit.gpgsign", "true"),
        ]
    }
}

pub use warroom_runtime::parse_duration;

/// The configuration after validation (`validate`): what [`crate::run`] works with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) common: CommonArgs,
    /// The remote as git is given it (a local path made absolute).
    pub(crate) repo: String,
    pub(crate) branch: String,
    pub(crate) work_dir: PathBuf,
    pub(crate) token: Option<Secret>,
    pub(crate) author_name: String,
    pub(crate) author_email: String,
    pub(crate) batch_window: Duration,
    pub(crate) push_attempts: u32,
    pub(crate) ack_wait: Duration,
    pub(crate) report_note: Option<String>,
    pub(crate) signing: Option<Signing>,
    pub(crate) surfaces: crate::surfaces::Surfaces,
    /// The S3 mirror of `results/`, when configured.
    pub(crate) s3: Option<crate::s3::S3Settings>,
}

impl warroom_runtime::daemon::Daemon for Config {
    const PROGRAM: &'static str = "warroom-publisher";
    type Settings = Settings;
    type Metrics = crate::metrics::Metrics;

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    /// Checks every value and resolves the defaults, without touching the network or git.
    /// Every problem is reported at once, one per line.
    fn validate(&self) -> Result<Settings, InvalidConfig> {
        let mut problems = Problems::new();
        let settings = self.settings(&mut problems);
        problems.finish()?;
        // `None` only with a problem noted, which `finish` returned.
        settings.ok_or_else(|| InvalidConfig::one("--repo or --work-dir is invalid"))
    }
    /// `--check`: everything `validate` checks (the signing key loaded by
    /// `ssh-keygen` or found by gpg, the token file read). Touches no network. `Ok` is the
    /// summary; `Err` every problem, one per line.
    fn check(&self) -> Result<String, InvalidConfig> {
        let mut problems = Problems::new();
        let settings = self.settings(&mut problems);
        problems.finish()?;
        let settings =
            settings.ok_or_else(|| InvalidConfig::one("--repo or --work-dir is invalid"))?;
        Ok(format!(
            "warroom-publisher: {} branch {}, {}, {}, {}, {}{}",
            settings.repo,
            settings.branch,
            settings.surfaces.summary(),
            settings
                .s3
                .as_ref()
                .map_or_else(|| "S3 mirror off".to_owned(), |s3| s3.summary()),
            match &settings.signing {
                Some(signing) => format!("signing with {}", signing.public),
                None => "results unsigned".to_owned(),
            },
            self.common.summary(),
            if settings.token.is_some() {
                ", git token"
            } else {
                ""
            },
        ))
    }
}

impl Config {
    /// Checks every value into `problems` and, when all are good, returns the settings.
    fn settings(&self, problems: &mut Problems) -> Option<Settings> {
        problems.extend(self.common.problems());
        let repo = self.git.checked_repo(problems);
        problems.check(check_identity("--author-name", &self.author_name));
        problems.check(check_identity("--author-email", &self.author_email));
        if self.batch_window > MAX_BATCH_WINDOW {
            problems.push(format!(
                "--batch-window {:?} is longer than {}s",
                self.batch_window,
                MAX_BATCH_WINDOW.as_secs()
            ));
        } else if self.ack_wait < Duration::from_secs(1) || self.ack_wait <= self.batch_window {
            problems.push(format!(
                "--ack-wait {:?} must be at least 1s and longer than --batch-window ({:?})",
                self.ack_wait, self.batch_window
            ));
        }
        if !(1..=MAX_PUSH_ATTEMPTS).contains(&self.push_attempts) {
            problems.push(format!(
                "--push-attempts {} is out of range; expected 1 to {MAX_PUSH_ATTEMPTS}",
                self.push_attempts
            ));
        }
        let work_dir = problems.check(self.work_dir(repo.as_deref().unwrap_or(&self.git.repo)));
        let token = self.git.token(problems, repo.as_deref());
        let signing = match self.signing_key.as_deref() {
            None => None,
            Some(key) => problems.check(check_signing_key(key, self.signing_format)),
        };
        let surfaces = self.surfaces.settings(problems, &self.git);
        let s3 = self.s3.settings(problems);
        if !problems.is_empty() {
            return None;
        }
        let (Some(repo), Some(work_dir)) = (repo, work_dir) else {
            return None;
        };
        Some(Settings {
            common: self.common.clone(),
            repo,
            branch: self.git.branch.clone(),
            work_dir,
            token,
            author_name: self.author_name.trim().to_owned(),
            author_email: self.author_email.trim().to_owned(),
            batch_window: self.batch_window,
            push_attempts: self.push_attempts,
            ack_wait: self.ack_wait,
            report_note: self
                .report_note
                .as_deref()
                .map(str::trim)
                .filter(|note| !note.is_empty())
                .map(str::to_owned),
            signing,
            surfaces,
            s3,
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
                .join(short_hash(&format!("{repo}\n{}", self.git.branch), 16))),
        }
    }
}

/// Checks that git will be able to sign with `key`: the file is readable and `ssh-keygen`
/// can load it without a passphrase (ssh), or gpg has its secret key (openpgp). This runs
/// local programs but touches no network: a key that cannot sign must stop the publisher at
/// start, not fail every batch later.
fn check_signing_key(key: &str, format: SigningFormat) -> Result<Signing, String> {
    let key = key.trim();
    if key.is_empty() {
        return Err("--signing-key must not be empty".to_owned());
    }
    match format {
        SigningFormat::Ssh => {
            let path = std::path::absolute(Path::new(key))
                .map_err(|e| format!("cannot make the --signing-key {key} absolute: {e}"))?;
            std::fs::read(&path)
                .map_err(|e| format!("cannot read the --signing-key {}: {e}", path.display()))?;
            if let Some(problem) = warroom_git::identity::problem() {
                return Err(format!(
                    "the --signing-key {} cannot be used by ssh-keygen: {problem}",
                    path.display()
                ));
            }
            // `-P ''` so that an encrypted key fails here instead of asking for a passphrase.
            let public = program_output(
                "ssh-keygen",
                warroom_git::identity::apply(&mut Command::new("ssh-keygen"))
                    .args(["-y", "-P", ""])
                    .arg("-f")
                    .arg(&path),
            )
            .map_err(|e| {
                format!(
                    "the --signing-key {} is not a usable SSH private key ({e}); expected an \
                     OpenSSH private key without passphrase, readable only by its owner \
                     (chmod 600)",
                    path.display()
                )
            })?;
            let public = public.lines().next().unwrap_or_default().trim().to_owned();
            Ok(Signing {
                format,
                key: path.display().to_string(),
                public,
            })
        }
        SigningFormat::Openpgp => {
            program_output(
                "gpg",
                Command::new("gpg").args(["--batch", "--list-secret-keys", "--", key]),
            )
            .map_err(|e| {
                format!(
                    "--signing-key {key} with --signing-format openpgp is not a secret key in \
                     the GnuPG keyring ({e}); expected the key id or fingerprint of a key \
                     `gpg --list-secret-keys` shows (GNUPGHOME selects the keyring)"
                )
            })?;
            Ok(Signing {
                format,
                key: key.to_owned(),
                public: key.to_owned(),
            })
        }
    }
}

/// Runs a local program with nothing on stdin and returns its stdout, or what went wrong.
fn program_output(name: &str, command: &mut Command) -> Result<String, String> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run `{name}`: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // ssh-keygen frames a permission problem in a banner of `@`; its last line says it.
        let reason = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('@'))
            .collect::<Vec<_>>()
            .join("; ");
        Err(format!("`{name}` said: {reason}"))
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
    use warroom_runtime::daemon::Daemon as _;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["warroom-publisher"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn an_ack_wait_shorter_than_the_batch_window_is_refused() {
        let err = config(&[
            "--repo",
            "/srv/git/warroom.git",
            "--batch-window",
            "5s",
            "--ack-wait",
            "5s",
        ])
        .validate()
        .expect_err("the ack wait must outlast the window")
        .to_string();
        assert!(
            err.contains("--ack-wait 5s must be at least 1s and longer than --batch-window (5s)"),
            "{err}"
        );
        let ok = config(&["--repo", "/srv/git/warroom.git", "--ack-wait", "3s"])
            .validate()
            .expect("3s outlasts the default window");
        assert_eq!(ok.ack_wait, Duration::from_secs(3));
    }

    /// Every setting, the surfaces' and the S3 mirror's among them, can be given in the
    /// environment (how a Kubernetes Secret or `warroom-dev up`'s shell hands it over), and
    /// `--help` names the variable.
    #[test]
    fn every_setting_has_an_environment_variable_shown_in_help() {
        use clap::CommandFactory as _;
        let mut command = Config::command();
        let help = command.render_long_help().to_string();
        let mut missing = Vec::new();
        for arg in command.get_arguments() {
            let Some(flag) = arg.get_long() else { continue };
            if ["check", "help", "version"].contains(&flag) {
                continue;
            }
            match arg.get_env() {
                Some(env) => {
                    let shown = format!("[env: {}", env.to_string_lossy());
                    assert!(
                        help.contains(&shown),
                        "--{flag}: `{shown}` is not in --help"
                    );
                }
                None => missing.push(format!("--{flag}")),
            }
        }
        assert!(
            missing.is_empty(),
            "without an environment variable: {missing:?}"
        );
        for flag in [
            "--slack-webhook-url",
            "--s3-endpoint",
            "--github-token",
            "--configmap-namespace",
        ] {
            assert!(help.contains(flag), "{flag} is not in --help");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config(&["--repo", "/srv/git/warroom.git"]);
        assert_eq!(c.git.branch, "main");
        assert_eq!(c.batch_window, Duration::from_millis(300));
        assert_eq!(c.push_attempts, 10);
        assert_eq!(c.ack_wait, Duration::from_secs(120));
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

    #[test]
    fn a_signing_key_is_checked_before_the_publisher_starts() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let not_a_key = dir.path().join("not-a-key");
        std::fs::write(&not_a_key, "hello\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&not_a_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        for (key, expected) in [
            (
                missing.display().to_string(),
                "cannot read the --signing-key",
            ),
            (
                not_a_key.display().to_string(),
                "not a usable SSH private key",
            ),
            (" ".to_owned(), "--signing-key must not be empty"),
        ] {
            let err = config(&["--repo", "/r", "--signing-key", &key])
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{key}: {err}");
        }

        let key = dir.path().join("id_ed25519");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "publisher", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(status.success());
        let public = std::fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
        let settings = config(&["--repo", "/r", "--signing-key", &key.display().to_string()])
            .validate()
            .unwrap();
        let signing = settings.signing.unwrap();
        assert_eq!(signing.format, SigningFormat::Ssh);
        assert_eq!(signing.key, key.display().to_string());
        assert_eq!(signing.public, public.trim());
        assert_eq!(
            signing.git_config().map(|(k, _)| k),
            ["gpg.format", "user.signingkey", "commit.gpgsign"]
        );
    }

    #[test]
    fn an_openpgp_key_must_be_in_the_keyring() {
        // No keyring holds a secret key with this made-up id.
        let config = Config::try_parse_from([
            "warroom-publisher",
            "--repo",
            "/r",
            "--signing-format",
            "openpgp",
            "--signing-key",
            "0000000000000000DEADBEEF0000000000000000",
        ])
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("not a secret key in the GnuPG keyring"),
            "{err}"
        );
    }
}
