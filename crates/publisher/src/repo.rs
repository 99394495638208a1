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

/// What the S3 mirror reads of a commit: the files under `results/`, by path, with their
/// blob ids. Only reads objects, so it runs beside the git loop's work on the same clone.
impl Repo {
    /// Whether the clone holds `commit`: a shallow clone may not hold an older one.
    pub async fn has_commit(&self, commit: &str) -> Result<bool> {
        let spec = format!("{commit}^{{commit}}");
        Ok(self
            .git
            .output_async(&["cat-file", "-e", &spec])
            .await?
            .success)
    }

    /// The files under `results/` that differ between the commits `from` and `to`: each one
    /// added or changed with its blob at `to`, or deleted (`None`).
    pub async fn results_changed(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Option<String>)>> {
        let args = [
            "diff-tree",
            "-r",
            "-z",
            "--raw",
            "--no-renames",
            "--no-commit-id",
            from,
            to,
            "--",
            RESULTS,
        ];
        let out = self.git.run_bytes_async(&args).await?;
        let mut fields = out.split(|b| *b == 0).filter(|f| !f.is_empty());
        let mut changes = Vec::new();
        // `:<old mode> <new mode> <old blob> <new blob> <status>` then the path.
        while let Some(meta) = fields.next() {
            let meta = String::from_utf8_lossy(meta);
            let Some(path) = fields.next() else {
                return Err(Error::Git(
                    self.git.unexpected(&args, format!("no path after {meta}")),
                ));
            };
            let path = String::from_utf8_lossy(path).into_owned();
            let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
            let [_, new_mode, _, new_blob, status] = parts[..] else {
                return Err(Error::Git(
                    self.git.unexpected(&args, format!("cannot read `{meta}`")),
                ));
            };
            if status.starts_with('D') {
                changes.push((path, None));
            } else if is_file_mode(new_mode) {
                changes.push((path, Some(new_blob.to_owned())));
            }
        }
        Ok(changes)
    }

    /// Every file under `results/` at `commit`, with its blob.
    pub async fn results_at(&self, commit: &str) -> Result<Vec<(String, String)>> {
        let args = ["ls-tree", "-r", "-z", "--full-tree", commit, "--", RESULTS];
        let out = self.git.run_bytes_async(&args).await?;
        let mut files = Vec::new();
        // `<mode> <type> <blob>\t<path>`
        for entry in out.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            let Some((meta, path)) = entry.split_once('\t') else {
                return Err(Error::Git(
                    self.git.unexpected(&args, format!("cannot read `{entry}`")),
                ));
            };
            let parts: Vec<&str> = meta.split(' ').collect();
            if let [mode, "blob", blob] = parts[..]
                && is_file_mode(mode)
            {
                files.push((path.to_owned(), blob.to_owned()));
            }
        }
        Ok(files)
    }

    /// The contents of `blobs`, in order, read by one `git cat-file --batch`.
    pub async fn read_blobs(&self, blobs: &[&str]) -> Result<Vec<Vec<u8>>> {
        let args = ["cat-file", "--batch"];
        let mut input = String::new();
        for blob in blobs {
            input.push_str(blob);
            input.push('\n');
        }
        let out = self
            .git
            .run_with_input_async(&args, input.into_bytes())
            .await?;
        let mut rest = &out[..];
        let mut contents = Vec::with_capacity(blobs.len());
        for blob in blobs {
            // `<blob> blob <size>\n<content>\n`, or `<blob> missing\n`.
            let unexpected = |detail: String| Error::Git(self.git.unexpected(&args, detail));
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| unexpected(format!("no header for {blob}")))?;
            let header = String::from_utf8_lossy(&rest[..end]).into_owned();
            let size = match header.split(' ').collect::<Vec<_>>()[..] {
                [_, "blob", size] => size.parse::<usize>().ok(),
                _ => None,
            }
            .ok_or_else(|| unexpected(format!("`{header}` for {blob}")))?;
            let start = end + 1;
            if rest.len() < start + size + 1 {
                return Err(unexpected(format!("{blob} is cut short")));
            }
            contents.push(rest[start..start + size].to_vec());
            rest = &rest[start + size + 1..];
        }
        Ok(contents)
    }
}

/// The folder the publisher writes and the S3 mirror copies.
const RESULTS: &str = "results/";

/// A regular file (executable or not): neither a symbolic link nor a submodule.
fn is_file_mode(mode: &str) -> bool {
    matches!(mode, "100644" | "100755")
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
