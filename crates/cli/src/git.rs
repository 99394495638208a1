//! The engineer's own `git`, run in their clone of the warroom repository.
//!
//! Unlike the daemons' sealed git, this one is `warroom_git::Git::engineers`: it
//! deliberately keeps the engineer's configuration (identity, credential helpers, commit
//! signing, hooks): the request must be committed exactly as the engineer would commit it by
//! hand, signed by their key if they sign, because the secure zone may check that signature.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use warroom_git::{CommitId, Git, Output};

/// The remote every command works against.
pub const REMOTE: &str = "origin";

/// How the engineer's git signs commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// `user.signingkey` is set: sign with it (`-S`).
    WithKey,
    /// `commit.gpgsign=true` without a key: git signs with its default.
    ByDefault,
    /// Nothing set up: commits are not signed.
    Off,
}

/// A clone of the warroom repository.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The top of the working tree.
    root: PathBuf,
    git: Git,
}

impl Repo {
    /// The repository that contains `dir`.
    pub fn open(dir: &Path) -> Result<Repo> {
        if !dir.is_dir() {
            bail!(
                "{} is not a directory (pass --repo DIR: a clone of the warroom repository)",
                dir.display()
            );
        }
        let output = Git::engineers(dir).output(&["rev-parse", "--show-toplevel"])?;
        if !output.success {
            bail!(
                "{} is not inside a git repository (pass --repo DIR: a clone of the warroom \
                 repository): {}",
                dir.display(),
                output.stderr.trim()
            );
        }
        let root = PathBuf::from(output.text());
        Ok(Repo {
            git: Git::engineers(&root),
            root,
        })
    }

    /// Clones `url` into `dir` (which must not exist or be empty), with the engineer's git
    /// and its credential helpers, and opens the clone.
    pub fn clone_into(url: &str, dir: &Path) -> Result<Repo> {
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
        let target = dir.to_string_lossy();
        // `--` so that neither a URL nor a folder starting with `-` is read as an option.
        Git::engineers(&parent).run(&["clone", "--quiet", "--", url, &target])?;
        Repo::open(dir)
    }

    /// The top of the working tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs git and returns its stdout as text; a non-zero exit is an error with git's stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        Ok(self.git.run(args)?)
    }

    /// Runs git and returns its stdout as bytes; a non-zero exit is an error with git's stderr.
    pub fn output(&self, args: &[&str]) -> Result<Vec<u8>> {
        Ok(self.git.run_bytes(args)?)
    }

    /// Runs git and returns whatever happened, for callers that act on a failure.
    pub fn try_output(&self, args: &[&str]) -> Result<Output> {
        Ok(self.git.output(args)?)
    }

    /// The commit `rev` names, or `None` when it names none.
    pub fn resolve(&self, rev: &str) -> Result<Option<CommitId>> {
        Ok(self.git.resolve(rev)?)
    }

    /// A configuration value, or `None` when it is unset or empty.
    pub fn config(&self, key: &str) -> Option<String> {
        let output = self.try_output(&["config", "--get", key]).ok()?;
        let value = output.text();
        (output.success && !value.is_empty()).then_some(value)
    }

    /// Whether the engineer's git is set up to sign commits: a `user.signingkey` (then
    /// `investigate` passes `-S`, whatever `commit.gpgsign` says), or `commit.gpgsign=true`
    /// (then git signs with its default key).
    pub fn signing(&self) -> Signing {
        if self.config("user.signingkey").is_some() {
            return Signing::WithKey;
        }
        let gpgsign = self
            .try_output(&["config", "--type=bool", "--get", "commit.gpgsign"])
            .ok()
            .filter(|output| output.success)
            .is_some_and(|output| output.text() == "true");
        if gpgsign {
            Signing::ByDefault
        } else {
            Signing::Off
        }
    }

    /// Whether the commit `rev` carries a signature (a `gpgsig` header), whoever made it.
    pub fn is_signed(&self, rev: &str) -> Result<bool> {
        let object = self.output(&["cat-file", "commit", rev])?;
        let text = String::from_utf8_lossy(&object);
        let headers = text.split("\n\n").next().unwrap_or_default();
        Ok(headers
            .lines()
            .any(|line| line.starts_with("gpgsig ") || line.starts_with("gpgsig-sha256 ")))
    }

    /// The branch `HEAD` is on, or `None` on a detached `HEAD`.
    pub fn current_branch(&self) -> Option<String> {
        let output = self
            .try_output(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .ok()?;
        let branch = output.text();
        (output.success && !branch.is_empty()).then_some(branch)
    }

    /// Where git keeps `path` of this clone's git folder (`hooks/pre-commit`, say), honouring
    /// `core.hooksPath` and linked worktrees, as an absolute path.
    pub fn git_path(&self, path: &str) -> Result<PathBuf> {
        let found = PathBuf::from(self.run(&["rev-parse", "--git-path", path])?.trim_end());
        Ok(if found.is_absolute() {
            found
        } else {
            self.root.join(found)
        })
    }

    /// Whether `rev` names a commit.
    pub fn has_commit(&self, rev: &str) -> Result<bool> {
        Ok(self.resolve(rev)?.is_some())
    }

    /// The contents of `path` at `rev`, or `None` when `rev` has no such file.
    pub fn read_at(&self, rev: &str, path: &str) -> Result<Option<Vec<u8>>> {
        let spec = format!("{rev}:{path}");
        // `cat-file -e` exits non-zero without a message exactly when the object is missing,
        // so a real failure of the read below is still reported.
        if !self.try_output(&["cat-file", "-e", &spec])?.success {
            return Ok(None);
        }
        Ok(Some(self.output(&["cat-file", "blob", &spec])?))
    }

    /// Every file under the folder `dir` at `rev`, as paths from the repository root.
    pub fn files_under(&self, rev: &str, dir: &str) -> Result<Vec<String>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let listing = self.run(&["ls-tree", "-r", "-z", "--name-only", rev, "--", &prefix])?;
        Ok(listing
            .split('\0')
            .filter(|path| !path.is_empty())
            .map(str::to_owned)
            .collect())
    }
}
