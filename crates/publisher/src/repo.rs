//! The publisher's working clone: fetch the branch, reset to it, commit, push.
//!
//! The clone holds nothing of its own between batches. An attempt starts from the remote's
//! branch exactly (a detached checkout of the fetched commit, with every untracked and
//! ignored file removed), or from the commit this clone has just pushed there, whose tree it
//! still is; a push only lands while the branch is still at that start ([`Repo::push`]). A
//! push lost to a concurrent push is redone on the new head: the publisher only writes
//! `results/`, engineers only add `requests/`, and nothing is lost or merged by hand. The remote URL is given to every command instead of being stored as a
//! named remote, and a token only ever travels in the environment of the git process.

use std::path::Path;
use std::time::Duration;

use warroom_git::{CommitId, Git, SecretString};

use warroom_runtime::config::InvalidConfig;

use crate::config::Signing;
use crate::{Error, Result};

/// Longest wait for a fetch or a push; a hung connection must not stop the publisher.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The local branch used only while the remote has no branch to start from.
const UNBORN_BRANCH: &str = "refs/heads/warroom-publisher-unborn";

/// What became of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The branch is now at `HEAD`.
    Landed,
    /// Git refused or failed the push; the batch is redone on the branch's new head.
    Refused(Refusal),
}

/// Git's reason for not pushing: most often the branch moved since the batch's base (someone
/// else pushed first), else whatever else failed. Its text is git's own, for the log and the
/// retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Git's standard error and its porcelain report, trimmed.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A working clone that follows one branch of one remote.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    git: Git,
    url: String,
    branch: String,
    /// Where the fetched branch is kept locally.
    tracking: String,
}

impl Repo {
    /// Opens the clone in `dir`, creating it when missing. A non-empty folder that is not a
    /// git repository is refused rather than emptied: it could be anybody's files.
    ///
    /// With `signing`, every command gets the signing settings with `-c`, so every commit is
    /// signed (git fails the commit, and so the batch, when it cannot sign); without it the
    /// clone's `commit.gpgsign=false` keeps a signing setup in the environment from applying.
    pub async fn open(
        dir: &Path,
        url: &str,
        branch: &str,
        token: Option<SecretString>,
        author: (&str, &str),
        signing: Option<&Signing>,
    ) -> Result<Self> {
        let work_dir = |source: std::io::Error| Error::WorkDir {
            path: dir.display().to_string(),
            source,
        };
        tokio::fs::create_dir_all(dir).await.map_err(work_dir)?;
        let mut git = Git::new(dir)
            .with_token(token)
            .with_identity(author.0, author.1);
        if let Some(signing) = signing {
            for (key, value) in signing.git_config() {
                git = git.with_config(key, value);
            }
        }
        if !dir.join(".git").exists() {
            let mut entries = tokio::fs::read_dir(dir).await.map_err(work_dir)?;
            if entries.next_entry().await.map_err(work_dir)?.is_some() {
                return Err(Error::Config(InvalidConfig::one(format!(
                    "the work directory {} is not empty and not a git repository; give an \
                     empty folder or the publisher's own clone",
                    dir.display()
                ))));
            }
            git.run_async(&["init", "--quiet"]).await?;
        }
        // A crash in the middle of a commit leaves the index locked; nobody else uses this
        // clone, so the lock is stale.
        let lock = dir.join(".git").join("index.lock");
        if lock.exists() {
            tokio::fs::remove_file(&lock).await.map_err(work_dir)?;
        }
        for (key, value) in [
            ("commit.gpgsign", "false"),
            ("core.autocrlf", "false"),
            ("core.hooksPath", "/dev/null"),
            ("advice.detachedHead", "false"),
        ] {
            git.run_async(&["config", "--local", key, value]).await?;
        }
        Ok(Repo {
            git,
            url: url.to_owned(),
            branch: branch.to_owned(),
            tracking: format!("refs/remotes/origin/{branch}"),
        })
    }

    pub fn dir(&self) -> &Path {
        self.git.dir()
    }

    /// Fetches the branch and returns the commit it points at, or `None` when the remote has
    /// no such branch yet.
    ///
    /// Only the branch's last commit is fetched (`--depth 1`): the publisher commits on top
    /// of the tip and never reads history, so its first fetch after a start costs the same
    /// at ten commits or a hundred thousand, and the working clone is kept across restarts.
    /// A push from the shallow clone carries just the new commit, whose parent the remote has.
    pub async fn fetch(&self) -> Result<Option<CommitId>> {
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.tracking);
        let args = [
            "fetch",
            "--quiet",
            "--no-tags",
            "--depth",
            "1",
            &self.url,
            &refspec,
        ];
        let out = within("git fetch", self.git.output_async(&args)).await??;
        if !out.success {
            if out.stderr.contains("couldn't find remote ref") {
                let _ = self
                    .git
                    .output_async(&["update-ref", "-d", &self.tracking])
                    .await?;
                return Ok(None);
            }
            return Err(Error::Git(self.git.failed(&args, &out.stderr)));
        }
        let head = self.git.resolve_async(&self.tracking).await?;
        if head.is_none() {
            return Err(Error::Git(self.git.unexpected(
                &args,
                format!("the fetch left no commit at {}", self.tracking),
            )));
        }
        Ok(head)
    }

    /// Makes the working tree exactly `base` (or empty when there is none), dropping
    /// whatever a failed attempt left.
    pub async fn reset(&self, base: Option<&str>) -> Result<()> {
        match base {
            Some(commit) => {
                self.git
                    .run_async(&["checkout", "--quiet", "--force", "--detach", commit])
                    .await?;
            }
            None => {
                let _ = self
                    .git
                    .output_async(&["update-ref", "-d", UNBORN_BRANCH])
                    .await?;
                self.git
                    .run_async(&["symbolic-ref", "HEAD", UNBORN_BRANCH])
                    .await?;
                self.git.run_async(&["read-tree", "--empty"]).await?;
            }
        }
        self.git.run_async(&["clean", "-ffdxq"]).await?;
        Ok(())
    }

    /// Commits every change of the working tree; `false` when there was nothing to commit.
    ///
    /// The new files go into one pack (`core.bigFileThreshold=1` makes `git add` stream every
    /// blob into a single pack of the batch) rather than one loose object file each: a wide
    /// request's batch adds hundreds of reports and audit files, and creating a file per
    /// object cost a second per batch of 1,000 on the CI machine's file system (see
    /// `docs/benchmarks.md`). Git's automatic maintenance after a commit consolidates the
    /// packs.
    pub async fn commit(&self, message: &str) -> Result<bool> {
        self.git
            .run_async(&[
                "-c",
                "core.bigFileThreshold=1",
                "add",
                "--all",
                "--force",
                ".",
            ])
            .await?;
        let diff = self
            .git
            .output_async(&["diff", "--cached", "--quiet"])
            .await?;
        if diff.success {
            return Ok(false);
        }
        self.git
            .run_async(&["commit", "--quiet", "--no-verify", "--message", message])
            .await?;
        Ok(true)
    }

    /// Pushes `HEAD` to the branch, only if the branch still points at `base`, the commit
    /// the batch was applied to (`None`: only if it does not exist yet). `HEAD` is a child of
    /// `base`, so a push that lands is a fast-forward; one that finds the branch moved is
    /// refused, whether or not the publisher had seen the move. [`Pushed::Refused`] carries
    /// git's reason, for the log and the retry; `Err` is git not finishing in time or not
    /// running at all.
    pub async fn push(&self, base: Option<&str>) -> Result<Pushed> {
        let target = format!("HEAD:refs/heads/{}", self.branch);
        let lease = format!(
            "--force-with-lease=refs/heads/{}:{}",
            self.branch,
            base.unwrap_or_default()
        );
        let out = within(
            "git push",
            self.git
                .output_async(&["push", "--quiet", "--porcelain", &lease, &self.url, &target]),
        )
        .await??;
        if out.success {
            return Ok(Pushed::Landed);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let message = format!("{} {}", out.stderr.trim(), stdout.trim())
            .trim()
            .to_owned();
        Ok(Pushed::Refused(Refusal { message }))
    }

    /// The commit `HEAD` points at.
    pub async fn head(&self) -> Result<CommitId> {
        let args = ["rev-parse", "HEAD"];
        let head = self.git.run_async(&args).await?;
        Ok(self.git.commit_id(&args, &head)?)
    }
}

/// Runs `future`, or gives up after [`NETWORK_TIMEOUT`] (git is killed when its future is
/// dropped).
async fn within<T>(what: &'static str, future: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(NETWORK_TIMEOUT, future)
        .await
        .map_err(|_| Error::Timeout {
            what,
            after: NETWORK_TIMEOUT,
        })
}
