//! The gateway's bare mirror of the followed branch, and the git reads it needs.
//!
//! The mirror is only a cache: the cursor lives in NATS, so a lost work directory costs one
//! full fetch and nothing else. Every read names a commit explicitly (`<commit>:<path>`), so
//! the branch moving during a poll never mixes two states of the repository, and every path
//! is taken literally (`--literal-pathspecs`), so a file named `*.yaml` matches only itself.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use warroom_git::{CommitId, Git, SecretString};

use crate::{Error, Result};

/// Longest wait for the remote to name its head. A hung connection must not stop the
/// gateway for good: the next poll tries again.
const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for a fetch; the first one of a large repository takes a while.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Runs `future`, or gives up after `limit` (git is killed when its future is dropped).
async fn within<T>(
    limit: Duration,
    what: &'static str,
    future: impl Future<Output = T>,
) -> Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| Error::Timeout { what, after: limit })
}

/// How a file changed between two commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The path did not exist before.
    Added,
    /// The path existed and its content (or mode) changed.
    Modified,
    /// Present at the head; how it got there is not known (a full scan).
    Present,
}

/// A file's git object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob {
    /// The object id: a hash of the content.
    pub id: String,
    pub size: u64,
}

/// A bare repository holding `refs/heads/<branch>` as last fetched from the remote.
#[derive(Debug, Clone)]
pub(crate) struct Mirror {
    git: Git,
    repo: String,
    refname: String,
}

impl Mirror {
    /// Opens the mirror in `dir`, creating the folder and the bare repository when missing.
    pub async fn open(
        dir: &Path,
        repo: &str,
        branch: &str,
        token: Option<SecretString>,
    ) -> Result<Self> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| Error::WorkDir {
                path: dir.display().to_string(),
                source,
            })?;
        let git = Git::new(dir).with_token(token);
        if !dir.join("HEAD").exists() {
            git.run_async(&["init", "--quiet", "--bare", "."]).await?;
        }
        Ok(Mirror {
            git,
            repo: repo.to_owned(),
            refname: format!("refs/heads/{branch}"),
        })
    }

    /// The mirror's folder, for tools that read it directly (signature verification).
    pub fn dir(&self) -> &Path {
        self.git.dir()
    }

    /// The commit the remote branch points at, or `None` when the remote has no such branch.
    /// This is the cheap check made at every poll: one round trip, no objects transferred.
    pub async fn remote_head(&self) -> Result<Option<CommitId>> {
        let args = ["ls-remote", "--heads", &self.repo, &self.refname];
        let out = within(
            LS_REMOTE_TIMEOUT,
            "git ls-remote",
            self.git.run_async(&args),
        )
        .await??;
        // ls-remote matches patterns against the tail of ref names; keep the exact ref only.
        let sha = out.lines().find_map(|line| {
            let (sha, name) = line.split_once('\t')?;
            (name == self.refname).then_some(sha)
        });
        Ok(sha.map(|sha| self.git.commit_id(&args, sha)).transpose()?)
    }

    /// The commit the mirror's copy of the branch points at, if it was ever fetched.
    pub async fn local_head(&self) -> Result<Option<CommitId>> {
        Ok(self.git.resolve_async(&self.refname).await?)
    }

    /// Fetches the branch (forced, so a force push on the remote is followed too).
    pub async fn fetch(&self) -> Result<()> {
        let refspec = format!("+{0}:{0}", self.refname);
        within(
            FETCH_TIMEOUT,
            "git fetch",
            self.git
                .run_async(&["fetch", "--quiet", "--no-tags", &self.repo, &refspec]),
        )
        .await??;
        Ok(())
    }

    /// Whether `commit` is a commit object in the mirror.
    pub async fn has_commit(&self, commit: &CommitId) -> Result<bool> {
        let spec = format!("{commit}^{{commit}}");
        Ok(self
            .git
            .output_async(&["cat-file", "-e", &spec])
            .await?
            .success)
    }

    /// Whether `ancestor` is `head` or one of its ancestors.
    pub async fn is_ancestor(&self, ancestor: &CommitId, head: &CommitId) -> Result<bool> {
        let args = ["merge-base", "--is-ancestor", ancestor, head];
        let out = self.git.output_async(&args).await?;
        if out.success {
            return Ok(true);
        }
        // Exit status 1 means "not an ancestor"; anything else is a real failure, which
        // `output` reports only through stderr.
        if out.stderr.trim().is_empty() {
            Ok(false)
        } else {
            Err(Error::Git(self.git.failed(&args, &out.stderr)))
        }
    }

    /// The files added or modified under `folder` between `from` and `to`, each with how it
    /// changed (renames count as additions, so a request moved into the folder is seen).
    pub async fn changed_files(
        &self,
        from: &CommitId,
        to: &CommitId,
        folder: &str,
    ) -> Result<Vec<(Change, String)>> {
        let out = self
            .git
            .run_bytes_async(&[
                "--literal-pathspecs",
                "diff",
                "-z",
                "--name-status",
                "--diff-filter=AM",
                "--no-renames",
                from,
                to,
                "--",
                folder,
            ])
            .await?;
        // With -z: `<status>\0<path>\0` for each file.
        let parts = split_z(&out);
        Ok(parts
            .chunks_exact(2)
            .filter_map(|pair| {
                let change = match pair[0].as_str() {
                    "A" => Change::Added,
                    "M" => Change::Modified,
                    _ => return None,
                };
                Some((change, pair[1].clone()))
            })
            .collect())
    }

    /// The plain files (blobs) directly inside `folder` at `commit`, each with its object id
    /// and size, in one git process. A submodule or a subfolder is not a blob and is left
    /// out. The object id is a hash of the content: two versions of a file have the same one
    /// exactly when their bytes are the same.
    pub async fn blobs_in(&self, commit: &CommitId, folder: &str) -> Result<HashMap<String, Blob>> {
        self.list_blobs(commit, folder, false).await
    }

    /// [`Mirror::blobs_in`] for every file below `folder`, at any depth.
    pub async fn blobs_below(
        &self,
        commit: &CommitId,
        folder: &str,
    ) -> Result<HashMap<String, Blob>> {
        self.list_blobs(commit, folder, true).await
    }

    async fn list_blobs(
        &self,
        commit: &CommitId,
        folder: &str,
        recursive: bool,
    ) -> Result<HashMap<String, Blob>> {
        let mut args = vec!["--literal-pathspecs", "ls-tree", "-z", "--long"];
        if recursive {
            args.push("-r");
        }
        args.extend([commit.as_str(), "--", folder]);
        let out = self.git.run_bytes_async(&args).await?;
        // Each entry: `<mode> <type> <object> <size>\t<path>`, the size padded with spaces.
        Ok(split_z(&out)
            .into_iter()
            .filter_map(|entry| {
                let (meta, path) = entry.split_once('\t')?;
                let mut fields = meta.split_whitespace();
                let kind = fields.nth(1)?;
                let id = fields.next()?;
                let size = fields.next()?.parse().ok()?;
                (kind == "blob").then(|| {
                    let blob = Blob {
                        id: id.to_owned(),
                        size,
                    };
                    (path.to_owned(), blob)
                })
            })
            .collect())
    }

    /// The contents of the blobs `ids`, in one `git cat-file --batch`. An id that is not a
    /// blob of the mirror is an error (ids come from [`Mirror::blobs_in`], so that is git
    /// failing, not a file's content).
    pub async fn read_blobs(&self, ids: &[&str]) -> Result<HashMap<String, Vec<u8>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut input = Vec::with_capacity(ids.len() * 41);
        for id in ids {
            input.extend_from_slice(id.as_bytes());
            input.push(b'\n');
        }
        let args = ["cat-file", "--batch"];
        let out = self.git.run_with_input_async(&args, input).await?;
        let malformed = |detail: String| Error::Git(self.git.unexpected(&args, detail));
        // Each answer: `<id> blob <size>\n<contents>\n`, or `<id> missing\n`.
        let mut contents = HashMap::with_capacity(ids.len());
        let mut rest = out.as_slice();
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| malformed("an answer without a header line".to_owned()))?;
            let header = String::from_utf8_lossy(&rest[..end]).into_owned();
            rest = &rest[end + 1..];
            let fields: Vec<&str> = header.split(' ').collect();
            let [id, "blob", size] = fields[..] else {
                return Err(malformed(format!("unexpected answer `{header}`")));
            };
            let size: usize = size
                .parse()
                .map_err(|_| malformed(format!("unexpected size in `{header}`")))?;
            if rest.len() < size + 1 {
                return Err(malformed(format!("the answer for {id} is cut short")));
            }
            contents.insert(id.to_owned(), rest[..size].to_vec());
            rest = &rest[size + 1..];
        }
        Ok(contents)
    }

    /// For each of `paths`, the newest commit reachable from `head` that added it, if git
    /// can tell; one git process for all of them.
    pub async fn adding_commits(
        &self,
        head: &CommitId,
        paths: &[&str],
    ) -> Result<HashMap<String, CommitId>> {
        if paths.is_empty() {
            return Ok(HashMap::new());
        }
        let mut args = vec![
            "--literal-pathspecs",
            "log",
            "-z",
            "--format=%x1e%H",
            "--name-only",
            "--diff-filter=A",
            "--no-renames",
            head,
            "--",
        ];
        args.extend_from_slice(paths);
        let out = self.git.run_bytes_async(&args).await?;
        let mut added: HashMap<String, CommitId> = HashMap::new();
        // Newest first, so the first commit naming a path is the one wanted.
        for record in out.split(|b| *b == 0x1e).filter(|r| !r.is_empty()) {
            let mut parts = split_z(record)
                .into_iter()
                .map(|part| part.trim_matches('\n').to_owned())
                .filter(|part| !part.is_empty());
            let Some(commit) = parts.next() else { continue };
            let commit = self.git.commit_id(&args, &commit)?;
            for path in parts {
                added.entry(path).or_insert_with(|| commit.clone());
            }
        }
        Ok(added)
    }
}

/// Splits git's `-z` output into paths (git never puts a NUL inside one).
fn split_z(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}
