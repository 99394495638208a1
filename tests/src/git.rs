//! Real `git` for tests: a seeded bare remote in a temporary directory and working clones of it.
//!
//! Every command runs hermetically: no system or global config (`GIT_CONFIG_NOSYSTEM=1`,
//! `GIT_CONFIG_GLOBAL=/dev/null`), never a prompt (`GIT_TERMINAL_PROMPT=0`), English messages
//! (`LC_ALL=C`), and none of the `GIT_*` variables that a surrounding git (a hook running the
//! tests, say) may have exported. Identities live in each clone's local config. So a fresh CI
//! machine with no git identity behaves exactly like a developer's machine.
//!
//! The helpers block while git runs (milliseconds for these tiny repositories), which is fine
//! inside async tests too; on a multi-threaded runtime wrap a long sequence in
//! `tokio::task::block_in_place` if a server in the same runtime must keep answering.
//!
//! ```no_run
//! use warroom_testkit::BareRemote;
//! let remote = BareRemote::new();
//! let clone = remote.work_clone();
//! clone.write("requests/pending/r1.json", "{}");
//! clone.commit_all("add r1");
//! clone.push();
//! assert_eq!(remote.read("requests/pending/r1.json").as_deref(), Some("{}"));
//! ```

use std::ffi::OsStr;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The branch every test remote starts with.
pub const MAIN_BRANCH: &str = "main";

/// The committer identity written into each clone's local config.
pub const TEST_USER_NAME: &str = "Warroom Test";
/// The committer email written into each clone's local config.
pub const TEST_USER_EMAIL: &str = "test@warroom.invalid";

/// Environment variables a surrounding git process may set that would redirect our commands
/// to another repository, index or identity.
const INHERITED_GIT_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_EDITOR",
    "GIT_SEQUENCE_EDITOR",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
];

/// A `git` command with the hermetic environment described in the module docs, run in `dir`.
/// Use it (or `tokio::process::Command::from(command(dir))`) for anything the helpers below
/// do not cover.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    for var in INHERITED_GIT_VARS {
        cmd.env_remove(var);
    }
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ADVICE", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    cmd
}

/// A git command that exited non-zero, with everything needed to see why.
#[derive(Debug, Clone)]
pub struct GitFailure {
    /// The command line, for the message.
    pub command: String,
    /// Where it ran.
    pub dir: PathBuf,
    /// The exit status, as text.
    pub status: String,
    /// Everything it printed to stdout.
    pub stdout: String,
    /// Everything it printed to stderr; git's reason is here.
    pub stderr: String,
}

impl fmt::Display for GitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` in {} failed ({})\n--- stderr ---\n{}--- stdout ---\n{}",
            self.command,
            self.dir.display(),
            self.status,
            self.stderr,
            self.stdout
        )
    }
}

impl std::error::Error for GitFailure {}

/// Runs git with `args` in `dir` and returns its stdout, or the failure.
pub fn try_git<I, S>(dir: &Path, args: I) -> Result<String, GitFailure>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let command_line = || {
        let mut line = String::from("git");
        for arg in &args {
            line.push(' ');
            line.push_str(&arg.as_ref().to_string_lossy());
        }
        line
    };
    let output: Output = command(dir).args(&args).output().unwrap_or_else(|err| {
        panic!(
            "running `{}` failed: {err} (is git installed?)",
            command_line()
        )
    });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(GitFailure {
            command: command_line(),
            dir: dir.to_path_buf(),
            status: output.status.to_string(),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Runs git with `args` in `dir` and returns its stdout; panics with git's output on failure.
pub fn git<I, S>(dir: &Path, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    try_git(dir, args).unwrap_or_else(|failure| panic!("{failure}"))
}

/// A bare repository in a temporary directory, standing in for the real git remote.
///
/// It starts with branch `main` holding one commit: a `README.md` and
/// `requests/pending/.gitkeep`.
#[derive(Debug)]
pub struct BareRemote {
    /// Holds the repository; removed on drop.
    dir: TempDir,
}

impl BareRemote {
    /// Creates and seeds the remote. Panics with git's output if that fails.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("warroom-remote-")
            .tempdir()
            .expect("creating a temporary directory for a bare git remote");
        let remote = BareRemote { dir };
        git(
            remote.dir.path(),
            [
                "init",
                "--quiet",
                "--bare",
                "--initial-branch",
                MAIN_BRANCH,
                "remote.git",
            ],
        );
        // Seed through an ordinary clone, exactly as a user would, and throw the clone away.
        let seed = remote.work_clone();
        // Cloning an empty repository leaves HEAD on git's built-in default branch, which
        // depends on the git version: name ours explicitly.
        seed.git(["symbolic-ref", "HEAD", &format!("refs/heads/{MAIN_BRANCH}")]);
        seed.write(
            "README.md",
            "# Test remote\n\nCreated by warroom-testkit for one test.\n",
        );
        seed.write("requests/pending/.gitkeep", "");
        seed.commit_all("Initial commit");
        seed.push();
        remote
    }

    /// The repository's path; git accepts it as a remote URL.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    /// The repository as a plain path string, usable wherever git wants a remote URL.
    pub fn url(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    /// The repository as a `file://` URL, for code that insists on a URL with a scheme.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.url())
    }

    /// A new working clone of this remote.
    pub fn work_clone(&self) -> WorkClone {
        WorkClone::new(&self.url())
    }

    /// The commit `main` points at.
    pub fn head(&self) -> String {
        self.git(["rev-parse", MAIN_BRANCH]).trim().to_owned()
    }

    /// The contents of `path` on `main`, or `None` if `main` has no such file.
    pub fn read(&self, path: &str) -> Option<String> {
        let spec = format!("{MAIN_BRANCH}:{path}");
        // `--verify --quiet` exits non-zero without a message exactly when the file is
        // missing, so a real failure of `cat-file` below still panics.
        self.try_git(["rev-parse", "--verify", "--quiet", &spec])
            .ok()?;
        Some(self.git(["cat-file", "blob", &spec]))
    }

    /// Adds `commits` commits on top of `main`, each rewriting `history.txt`, with
    /// `git fast-import` (100,000 take a few seconds): a repository with a long history, for
    /// the benchmarks.
    pub fn add_history(&self, commits: usize) {
        use std::fmt::Write as _;
        let parent = self.head();
        let mut stream = String::with_capacity(commits * 160);
        for n in 0..commits {
            let message = format!("history {n}\n");
            let content = format!("commit {n}\n");
            let _ = write!(
                stream,
                "commit refs/heads/{MAIN_BRANCH}\ncommitter History <history@example.com> {} +0000\n\
                 data {}\n{message}",
                1_700_000_000 + n,
                message.len()
            );
            if n == 0 {
                let _ = writeln!(stream, "from {parent}");
            }
            let _ = write!(
                stream,
                "M 100644 inline history.txt\ndata {}\n{content}\n",
                content.len()
            );
        }
        let mut child = command(&self.path())
            .args(["fast-import", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("start git fast-import");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("fast-import's stdin");
            stdin
                .write_all(stream.as_bytes())
                .expect("feed git fast-import");
        }
        let status = child.wait().expect("wait for git fast-import");
        assert!(status.success(), "git fast-import failed: {status}");
    }

    /// The subjects of the commits on `main`, newest first.
    pub fn log_subjects(&self) -> Vec<String> {
        self.git(["log", "--format=%s", MAIN_BRANCH])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Runs git in the bare repository; panics with git's output on failure.
    pub fn git<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        git(&self.path(), args)
    }

    /// Runs git in the bare repository and returns the failure instead of panicking.
    pub fn try_git<I, S>(&self, args: I) -> Result<String, GitFailure>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        try_git(&self.path(), args)
    }
}

impl Default for BareRemote {
    fn default() -> Self {
        Self::new()
    }
}

/// A working clone in a temporary directory, committing as [`TEST_USER_NAME`].
#[derive(Debug)]
pub struct WorkClone {
    /// Holds the clone; removed on drop.
    dir: TempDir,
}

impl WorkClone {
    /// Clones `url` (a path or any URL git understands) and sets the test identity in the
    /// clone's local config. Panics with git's output if that fails.
    pub fn new(url: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("warroom-clone-")
            .tempdir()
            .expect("creating a temporary directory for a git clone");
        git(dir.path(), ["clone", "--quiet", url, "."]);
        let clone = WorkClone { dir };
        for (key, value) in [
            ("user.name", TEST_USER_NAME),
            ("user.email", TEST_USER_EMAIL),
            // A developer's signing setup never reaches us (no global config), but say it.
            ("commit.gpgsign", "false"),
            ("tag.gpgsign", "false"),
            ("core.autocrlf", "false"),
        ] {
            clone.git(["config", "--local", key, value]);
        }
        clone
    }

    /// The clone's working tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `path` (relative to the clone), creating parent directories.
    pub fn write(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
        let full = self.inside(path.as_ref());
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("creating {} failed: {err}", parent.display()));
        }
        std::fs::write(&full, contents)
            .unwrap_or_else(|err| panic!("writing {} failed: {err}", full.display()));
    }

    /// The contents of `path` (relative to the clone) in the working tree, or `None` if there
    /// is no such file.
    pub fn read(&self, path: impl AsRef<Path>) -> Option<String> {
        let full = self.inside(path.as_ref());
        match std::fs::read_to_string(&full) {
            Ok(text) => Some(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => panic!("reading {} failed: {err}", full.display()),
        }
    }

    /// Removes the file `path` (relative to the clone) from the working tree.
    pub fn remove(&self, path: impl AsRef<Path>) {
        let full = self.inside(path.as_ref());
        std::fs::remove_file(&full)
            .unwrap_or_else(|err| panic!("removing {} failed: {err}", full.display()));
    }

    /// Stages every change and commits it; returns the new commit. Panics if there is nothing
    /// to commit.
    pub fn commit_all(&self, message: &str) -> String {
        self.git(["add", "--all"]);
        self.git(["commit", "--quiet", "--message", message]);
        self.head()
    }

    /// Pushes the current branch to `origin`; panics with git's output if it is rejected.
    pub fn push(&self) {
        self.try_push()
            .unwrap_or_else(|failure| panic!("{failure}"));
    }

    /// Pushes the current branch to `origin` and returns the failure (a rejected push from a
    /// stale clone, say) instead of panicking.
    pub fn try_push(&self) -> Result<(), GitFailure> {
        self.try_git(["push", "--quiet", "origin", "HEAD"])
            .map(drop)
    }

    /// Fetches `origin` and rebases local commits onto it; panics with git's output on a
    /// conflict or any other failure.
    pub fn pull(&self) {
        self.git(["pull", "--quiet", "--rebase"]);
    }

    /// The commit `HEAD` points at.
    pub fn head(&self) -> String {
        self.git(["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Runs git in the clone and returns its stdout (untrimmed); panics with git's output on
    /// failure.
    pub fn git<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        git(self.path(), args)
    }

    /// Runs git in the clone and returns the failure instead of panicking.
    pub fn try_git<I, S>(&self, args: I) -> Result<String, GitFailure>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        try_git(self.path(), args)
    }

    /// `path` inside the clone; panics on an absolute path or `..`, which would escape it.
    fn inside(&self, path: &Path) -> PathBuf {
        assert!(
            path.components()
                .all(|part| matches!(part, Component::Normal(_) | Component::CurDir)),
            "{} is not a plain relative path inside the clone",
            path.display()
        );
        self.path().join(path)
    }
}

/// An SSH key pair made by the real `ssh-keygen -t ed25519 -N ''` in a temporary directory,
/// for signing commits and checking their signatures in tests.
#[derive(Debug)]
pub struct SshKey {
    /// Holds the key files; removed on drop.
    dir: TempDir,
    public: String,
}

impl SshKey {
    /// A new key pair whose public key carries `comment`. Panics if `ssh-keygen` fails.
    pub fn generate(comment: &str) -> SshKey {
        let dir = tempfile::Builder::new()
            .prefix("warroom-ssh-key-")
            .tempdir()
            .expect("creating a temporary directory for an SSH key");
        let private = dir.path().join("id_ed25519");
        let output = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&private)
            .stdin(Stdio::null())
            .output()
            .expect("running ssh-keygen (is openssh-client installed?)");
        assert!(
            output.status.success(),
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let public = std::fs::read_to_string(dir.path().join("id_ed25519.pub"))
            .expect("reading the public key ssh-keygen wrote")
            .trim()
            .to_owned();
        SshKey { dir, public }
    }

    /// The private key file (mode 600).
    pub fn private_key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// The public key file, next to the private one.
    pub fn public_key_file(&self) -> PathBuf {
        self.dir.path().join("id_ed25519.pub")
    }

    /// The public key line: `ssh-ed25519 AAAA... <comment>`.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The key's `SHA256:...` fingerprint, as git's `%GK` prints it.
    pub fn fingerprint(&self) -> String {
        let output = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(self.public_key_file())
            .stdin(Stdio::null())
            .output()
            .expect("running ssh-keygen -l");
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .nth(1)
            .expect("ssh-keygen -l prints `<bits> <fingerprint> ...`")
            .to_owned()
    }

    /// Writes an allowed-signers file trusting this key for `principal` and returns its path,
    /// for `git -c gpg.ssh.allowedSignersFile=<path> verify-commit`.
    pub fn allowed_signers(&self, principal: &str) -> PathBuf {
        let path = self.dir.path().join(format!("allowed_signers-{principal}"));
        std::fs::write(&path, format!("{principal} {}\n", self.public))
            .expect("writing an allowed-signers file");
        path
    }

    /// `-c` arguments that make a git command sign its commit with this key.
    pub fn signing_args(&self) -> Vec<String> {
        [
            "gpg.format=ssh".to_owned(),
            format!("user.signingkey={}", self.private_key().display()),
            "commit.gpgsign=true".to_owned(),
        ]
        .into_iter()
        .flat_map(|setting| ["-c".to_owned(), setting])
        .collect()
    }
}
