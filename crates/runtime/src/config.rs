//! Checks and types shared by the daemons' configurations: git remotes and branches as
//! flags give them, and secrets that must never be printed.

use secrecy::ExposeSecret as _;
pub use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// A value that must never be printed (a token), held in a [`secrecy::SecretString`]: its
/// `Debug` shows `***` and its memory is wiped when it is dropped.
///
/// A newtype rather than an alias so that the daemons' call sites keep `Secret::new` and
/// `expose()` (and clap can parse it from a flag); reading the value is the one explicit
/// `expose`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

impl From<SecretString> for Secret {
    fn from(secret: SecretString) -> Self {
        Secret(secret)
    }
}

impl AsRef<SecretString> for Secret {
    fn as_ref(&self) -> &SecretString {
        &self.0
    }
}

/// Reads a secret from the file of `setting` (a mounted Kubernetes Secret, say): once, at
/// start, without its trailing line break. An unreadable or empty file is an error naming
/// the setting and the file.
pub fn read_secret_file(setting: &str, path: &std::path::Path) -> Result<Secret, Invalid> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Invalid(format!("{setting} {}: cannot read it: {e}", path.display())))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(Invalid(format!(
            "{setting} {}: the file is empty; expected the secret on its first line",
            path.display()
        )));
    }
    Ok(Secret::new(value))
}

/// A secret that may be given inline (`inline`: its setting and value) or as a file
/// (`file`), never both: the value to use, or the one-line problem.
pub fn secret_setting(
    inline: (&str, Option<&Secret>),
    file: (&str, Option<&std::path::Path>),
) -> Result<Option<Secret>, Invalid> {
    match (inline.1, file.1) {
        (Some(_), Some(_)) => Err(Invalid(format!(
            "{} and {} are both set; give the secret one way only",
            inline.0, file.0
        ))),
        (Some(secret), None) => Ok(Some(secret.clone())),
        (None, Some(path)) => read_secret_file(file.0, path).map(Some),
        (None, None) => Ok(None),
    }
}

/// The remote a daemon reads (the gateway) or writes (the publisher), flattened into its
/// clap configuration: the same flags, variables and checks for both.
#[derive(Debug, Clone, clap::Args)]
pub struct GitArgs {
    /// The git remote: a local path, file://, ssh://, scp-like (git@host:org/repo) or
    /// https:// URL. Never put credentials in the URL: an https token comes from
    /// WARROOM_GIT_TOKEN.
    #[arg(long, env = "WARROOM_REPO")]
    pub repo: String,

    /// The branch: the gateway follows it, the publisher commits results to it.
    #[arg(long, env = "WARROOM_BRANCH", default_value = "main")]
    pub branch: String,

    /// Token for https remotes (GitHub: a PAT or an installation token). Read it from the
    /// environment, not the command line, where other users could see it. Never logged. The
    /// gateway only reads: give it a read-only token, not the publisher's.
    #[arg(long, env = "WARROOM_GIT_TOKEN", hide_env_values = true)]
    pub git_token: Option<Secret>,

    /// A file holding the git token (a mounted Secret), read once at start, its trailing line
    /// break dropped. Instead of --git-token.
    #[arg(long, env = "WARROOM_GIT_TOKEN_FILE", value_name = "FILE")]
    pub git_token_file: Option<std::path::PathBuf>,
}

impl GitArgs {
    /// Checks `--repo` and `--branch` into `problems`: the remote as git should be given it.
    pub fn checked_repo(&self, problems: &mut Problems) -> Option<String> {
        let repo = problems.check(check_repo(&self.repo));
        problems.check(check_branch(&self.branch));
        repo
    }

    /// The token ([`git_token`]) for the checked `repo`.
    pub fn token(&self, problems: &mut Problems, repo: Option<&str>) -> Option<Secret> {
        git_token(
            problems,
            self.git_token.as_ref(),
            self.git_token_file.as_deref(),
            repo,
        )
    }
}

/// The git token of a daemon that reads or pushes `repo`: `--git-token` or
/// `--git-token-file`, never both, blank meaning none; refused over plain `http://`, where it
/// would cross the network unencrypted. Problems are noted in `problems`.
pub fn git_token(
    problems: &mut Problems,
    inline: Option<&Secret>,
    file: Option<&std::path::Path>,
    repo: Option<&str>,
) -> Option<Secret> {
    let token = problems
        .check(secret_setting(
            ("--git-token (WARROOM_GIT_TOKEN)", inline),
            ("--git-token-file (WARROOM_GIT_TOKEN_FILE)", file),
        ))
        .flatten()
        .map(|t| t.expose().trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    if let Some(repo) = repo
        && let Err(refused) =
            warroom_git::refuse_token_over_http(repo, token.as_ref().map(AsRef::as_ref))
    {
        problems.push(format!("--repo: {refused}"));
    }
    token
}

/// Every problem found in a daemon's configuration, each one line naming its flag, so that
/// one run shows all of them (as request validation does) instead of one per try.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn new() -> Self {
        Problems::default()
    }

    /// Notes `problem`.
    pub fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Notes every problem of `problems`.
    pub fn extend(&mut self, problems: impl IntoIterator<Item = String>) {
        self.0.extend(problems);
    }

    /// The value of a check, noting its problem when it failed.
    pub fn check<T, E: std::fmt::Display>(&mut self, checked: Result<T, E>) -> Option<T> {
        checked
            .map_err(|problem| self.push(problem.to_string()))
            .ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when nothing was noted; else every problem noted.
    pub fn finish(self) -> Result<(), InvalidConfig> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidConfig { problems: self.0 })
        }
    }
}

/// One value that cannot be used, as a line naming its flag or file and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Every problem of a daemon's configuration ([`Problems::finish`]): shown one per line,
/// after a count when there are several.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.lines())]
pub struct InvalidConfig {
    pub problems: Vec<String>,
}

impl InvalidConfig {
    /// One problem of its own.
    pub fn one(problem: impl Into<String>) -> InvalidConfig {
        InvalidConfig {
            problems: vec![problem.into()],
        }
    }

    fn lines(&self) -> String {
        match self.problems.as_slice() {
            [one] => one.clone(),
            all => format!("{} problems:\n  {}", all.len(), all.join("\n  ")),
        }
    }
}

/// The remote (`--repo`) as git should be given it, or why it cannot be used: a local path
/// (made absolute), `file://`, `ssh://`, scp-like or `https://` without credentials.
pub fn check_repo(repo: &str) -> Result<String, Invalid> {
    let repo = repo.trim();
    if repo.is_empty() {
        return Err(Invalid("--repo must not be empty".to_owned()));
    }
    // git would read a leading `-` as an option.
    if repo.starts_with('-') {
        return Err(Invalid(format!("--repo `{repo}` must not start with `-`")));
    }
    if repo.chars().any(char::is_control) {
        return Err(Invalid("--repo contains a control character".to_owned()));
    }
    if let Some((scheme, rest)) = repo.split_once("://") {
        match scheme {
            "file" | "ssh" | "git+ssh" | "https" | "http" => {}
            other => {
                return Err(Invalid(format!(
                    "--repo `{repo}` uses the unsupported scheme `{other}`; expected a local \
                     path, file://, ssh:// or https://"
                )));
            }
        }
        if matches!(scheme, "https" | "http") {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') {
                // Refused so that a token never ends up in a log line or a process list.
                return Err(Invalid(
                    "--repo carries credentials in the URL; give the token in WARROOM_GIT_TOKEN \
                     instead"
                        .to_owned(),
                ));
            }
        }
        return Ok(repo.to_owned());
    }
    // git's own rule: a `:` before the first `/` makes it scp-like (`git@host:org/repo`).
    let colon = repo.find(':');
    let slash = repo.find('/');
    if let Some(colon) = colon
        && slash.is_none_or(|slash| colon < slash)
    {
        return Ok(repo.to_owned());
    }
    // A local path: the daemons run git in a folder of their own, so make it absolute.
    std::path::absolute(repo)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| Invalid(format!("cannot make the path `{repo}` absolute: {e}")))
}

/// Refuses branch names git would refuse, or that could be read as an option.
pub fn check_branch(branch: &str) -> Result<(), Invalid> {
    let problem = if branch.is_empty() {
        Some("must not be empty")
    } else if branch.starts_with('-') || branch.starts_with('/') || branch.starts_with('.') {
        Some("must not start with `-`, `/` or `.`")
    } else if branch.ends_with('/') || branch.ends_with('.') || branch.ends_with(".lock") {
        Some("must not end with `/`, `.` or `.lock`")
    } else if branch.contains("..") || branch.contains("//") || branch.contains("@{") {
        Some("must not contain `..`, `//` or `@{`")
    } else if !branch
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        Some("may only hold letters, digits, `-`, `_`, `.` and `/`")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Invalid(format!("--branch `{branch}` {problem}"))),
        None => Ok(()),
    }
}

/// The first `len` hex digits of the SHA-256 of `text`.
pub fn short_hash(text: &str, len: usize) -> String {
    let mut hex = hex::encode(Sha256::digest(text.as_bytes()));
    hex.truncate(len);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_of_every_supported_kind_are_accepted() {
        for repo in [
            "file:///srv/git/w.git",
            "ssh://git@example.com/org/w.git",
            "git@example.com:org/w.git",
            "https://github.com/org/w.git",
        ] {
            assert_eq!(check_repo(repo).as_deref(), Ok(repo));
        }
        let relative = check_repo("some/dir").unwrap();
        assert!(relative.starts_with('/') && relative.ends_with("some/dir"));
    }

    #[test]
    fn dangerous_remotes_and_branches_are_refused() {
        for repo in [
            "",
            "--upload-pack=evil",
            "https://user:tok@github.com/org/w.git",
            "ftp://x/y",
        ] {
            assert!(check_repo(repo).is_err(), "{repo:?} was accepted");
        }
        for branch in ["", "-x", "a..b", "a b", "a/", "x.lock", "a@{1}"] {
            assert!(check_branch(branch).is_err(), "{branch:?} was accepted");
        }
        for branch in ["main", "release/1.2", "feature_x-y"] {
            assert_eq!(check_branch(branch), Ok(()));
        }
    }

    #[test]
    fn problems_are_listed_one_per_line() {
        assert_eq!(Problems::new().finish(), Ok(()));
        let mut one = Problems::new();
        assert_eq!(one.check(Err::<(), _>("--a is bad".to_owned())), None);
        assert_eq!(one.finish().unwrap_err().to_string(), "--a is bad");
        let mut two = Problems::new();
        two.push("--a is bad");
        two.extend(["--b is bad".to_owned()]);
        assert_eq!(
            two.finish().unwrap_err().to_string(),
            "2 problems:\n  --a is bad\n  --b is bad"
        );
    }

    #[test]
    fn a_secret_file_is_read_once_without_its_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "t0k3n\n").unwrap();
        let flag = "--git-token-file (WARROOM_GIT_TOKEN_FILE)";
        let secret = secret_setting(("--git-token", None), (flag, Some(&file))).unwrap();
        assert_eq!(
            secret.map(|s| s.expose().to_owned()).as_deref(),
            Some("t0k3n")
        );

        let both = secret_setting(
            ("--git-token", Some(&Secret::new("x"))),
            (flag, Some(&file)),
        );
        assert!(
            both.unwrap_err()
                .0
                .contains("--git-token and --git-token-file")
        );

        std::fs::write(&file, "\n").unwrap();
        let empty = read_secret_file(flag, &file).unwrap_err().0;
        assert!(
            empty.contains("WARROOM_GIT_TOKEN_FILE") && empty.contains("is empty"),
            "{empty}"
        );
        let missing = read_secret_file(flag, &dir.path().join("none"))
            .unwrap_err()
            .0;
        assert!(missing.contains("none: cannot read it"), "{missing}");
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret: Secret = "s3cr3t".parse().unwrap();
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.expose(), "s3cr3t");
        let wrapped = Secret::from(SecretString::from("t0k3n"));
        assert_eq!(format!("{wrapped:?}"), "***");
        assert_eq!(wrapped.expose(), "t0k3n");
    }
}
