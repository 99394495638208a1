//! Submitting one new file to the secure zone: written in the engineer's clone, committed
//! alone (signed when their git signs) and pushed.
//!
//! `investigate`, `cancel` and every `session` subcommand submit their file this way, so a
//! request, a cancel and a follow-up question reach the secure zone alike: the gateway may
//! check each commit's signature, and the engineer's other staged work never rides along.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::git::{REMOTE, Repo, Signing};

/// What to set up so that requests are signed, for the warning about an unsigned one.
pub(crate) const SIGNING_HELP: &str = "git config gpg.format ssh; git config user.signingkey \
     ~/.ssh/id_ed25519.pub; git config commit.gpgsign true (add --global for every clone), \
     and give the public key to the secure zone's operators for its policy";

/// A clone of the warroom repository, ready to submit files from.
#[derive(Debug)]
pub(crate) struct Outbox {
    pub repo: Repo,
    /// The branch pushed to: the clone's current one. `None` only on a detached HEAD with
    /// `--no-push`.
    pub branch: Option<String>,
    /// `--no-push`: commit only.
    pub no_push: bool,
}

/// One new file to submit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewFile<'a> {
    /// From the repository root, e.g. `requests/pending/<id>.yaml`.
    pub path: &'a str,
    pub text: &'a str,
    /// The commit's subject, e.g. `request: <id>`.
    pub subject: &'a str,
    /// What the file is, for messages: `request <id>`, `the cancel of <id>`.
    pub what: &'a str,
    /// What a secure zone with a policy does with it when its commit is unsigned, for the
    /// warning: `reject it`, `refuse the cancel`.
    pub unsigned: &'a str,
    /// The request to follow once it is pushed.
    pub id: &'a str,
}

impl Outbox {
    /// Opens the clone that contains `dir`. A detached HEAD, or a clone without the remote,
    /// is an error unless nothing is pushed (`no_push`).
    pub fn open(dir: &Path, no_push: bool) -> Result<Outbox> {
        let repo = Repo::open(dir)?;
        let branch = match (repo.current_branch(), no_push) {
            (Some(branch), _) => Some(branch),
            (None, true) => None,
            (None, false) => bail!(
                "{} is on a detached HEAD; check out the branch the secure zone follows \
                 (usually `main`) or pass --no-push",
                repo.root().display()
            ),
        };
        if !no_push && repo.config(&format!("remote.{REMOTE}.url")).is_none() {
            bail!(
                "{} has no `{REMOTE}` remote to push to; add it, or pass --no-push",
                repo.root().display()
            );
        }
        Ok(Outbox {
            repo,
            branch,
            no_push,
        })
    }

    /// `given`, else `git config user.email` of the clone, else `user.name`, else `$USER`.
    pub fn engineer(&self, given: Option<&str>) -> Result<String> {
        if let Some(engineer) = given {
            return Ok(engineer.to_owned());
        }
        self.repo
            .config("user.email")
            .or_else(|| self.repo.config("user.name"))
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
            .context("cannot tell who you are: set `git config user.email` or pass --engineer")
    }

    /// `origin/<branch>`, when there is a branch and the clone has fetched it.
    pub fn remote_rev(&self) -> Result<Option<String>> {
        let Some(branch) = &self.branch else {
            return Ok(None);
        };
        let rev = format!("{REMOTE}/{branch}");
        Ok(self.repo.has_commit(&rev)?.then_some(rev))
    }

    /// Fetches the branch from the remote, so that [`Outbox::remote_rev`] is current.
    pub fn fetch(&self) -> Result<()> {
        if let Some(branch) = &self.branch {
            self.repo
                .output(&["fetch", "--quiet", REMOTE, branch])
                .with_context(|| format!("fetching {REMOTE}/{branch}"))?;
        }
        Ok(())
    }

    /// Writes, commits and (unless `--no-push`) pushes `file`, saying on stderr what it did.
    pub fn submit(&self, file: NewFile<'_>) -> Result<()> {
        if let Some(branch) = &self.branch
            && !self.no_push
        {
            self.warn_unpushed(branch);
        }
        let signed = self.commit(file)?;
        match &self.branch {
            Some(branch) if !self.no_push => {
                self.push(signed)
                    .with_context(|| self.not_pushed(file.what))?;
                self.say_pushed(branch, file.id);
            }
            _ => self.say_not_pushed(),
        }
        Ok(())
    }

    /// Writes `file` (never over an existing one) and commits it alone; warns when the
    /// commit is not signed. Returns whether it is. When the commit fails, the file is
    /// unstaged and removed again, so that running the command again is clean.
    pub fn commit(&self, file: NewFile<'_>) -> Result<bool> {
        write_new(&self.repo.root().join(file.path), file.text, file.what)?;
        if let Err(err) = self.commit_file(file.path, file.subject) {
            self.forget(file.path);
            return Err(err.context(format!(
                "committing {} failed; nothing was committed",
                file.path
            )));
        }
        eprintln!("committed {}", file.path);
        let signed = self.repo.is_signed("HEAD")?;
        if !signed {
            eprintln!(
                "warning: this commit is not signed; a secure zone with a policy will {}: set \
                 up commit signing with: {SIGNING_HELP}",
                file.unsigned
            );
        }
        Ok(signed)
    }

    /// Takes back the commit [`Outbox::commit`] just made of `path`, which must be `HEAD`:
    /// the branch goes back one commit, the file is unstaged and removed, and whatever else
    /// the engineer had staged stays staged.
    pub fn uncommit(&self, path: &str) -> Result<()> {
        self.repo
            .output(&["reset", "--quiet", "--soft", "HEAD~1"])
            .with_context(|| format!("taking back the commit of {path}"))?;
        self.forget(path);
        Ok(())
    }

    /// Unstages and removes `path`, best effort.
    fn forget(&self, path: &str) {
        let _ =
            self.repo
                .try_output(&["rm", "--cached", "--quiet", "--ignore-unmatch", "--", path]);
        let _ = std::fs::remove_file(self.repo.root().join(path));
    }

    /// Commits only `path`, with `subject`: a pathspec on `git commit` leaves whatever else
    /// the engineer has staged out of the commit and still staged.
    ///
    /// With a `user.signingkey` configured it passes `-S`, so the commit is signed even
    /// without `commit.gpgsign=true`: a secure zone with a policy accepts only signed files.
    fn commit_file(&self, path: &str, subject: &str) -> Result<()> {
        self.repo.output(&["add", "--", path])?;
        let mut args = vec!["commit", "--quiet"];
        if self.repo.signing() == Signing::WithKey {
            args.push("--gpg-sign");
        }
        args.extend(["--message", subject, "--", path]);
        self.repo.output(&args)?;
        Ok(())
    }

    /// Pushes the branch; when the remote moved on, rebases onto it and tries once more. A
    /// signed commit is signed again when the rebase rewrites it.
    pub fn push(&self, signed: bool) -> Result<()> {
        if self.try_push()? {
            return Ok(());
        }
        self.rebase_and_push(signed)
    }

    /// Pushes the branch: `Ok(false)` when the remote refused it as out of date (it moved
    /// on), an error for any other failure.
    pub fn try_push(&self) -> Result<bool> {
        let branch = self.branch()?;
        let output = self
            .repo
            .try_output(&["push", "--porcelain", REMOTE, branch])?;
        if output.success {
            return Ok(true);
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        // `--porcelain` marks a ref the remote refused as out of date with `[rejected]`, in
        // every locale; anything else (authentication, a hook saying no) is not cured by a
        // rebase.
        if !stdout.contains("[rejected]") {
            bail!(
                "`git push {REMOTE} {branch}` failed: {}",
                output.stderr.trim()
            );
        }
        Ok(false)
    }

    /// Rebases onto the remote branch and pushes once more.
    pub fn rebase_and_push(&self, signed: bool) -> Result<()> {
        let branch = self.branch()?;
        eprintln!("{REMOTE}/{branch} moved on; rebasing onto it and pushing again");
        let mut pull = vec!["pull", "--quiet", "--rebase", "--autostash"];
        if signed {
            pull.push("--gpg-sign");
        }
        pull.extend([REMOTE, branch]);
        self.repo
            .output(&pull)
            .context("rebasing onto the remote")?;
        self.repo.output(&["push", "--quiet", REMOTE, branch])?;
        Ok(())
    }

    fn branch(&self) -> Result<&str> {
        self.branch
            .as_deref()
            .context("there is no branch to push (detached HEAD)")
    }

    /// The context of a failed push: the file is committed, only the push is missing.
    pub fn not_pushed(&self, what: &str) -> String {
        format!(
            "{what} is committed in {} but was not pushed; run `git push` there once the \
             problem is fixed",
            self.repo.root().display()
        )
    }

    pub fn say_pushed(&self, branch: &str, id: &str) {
        eprintln!("pushed to {REMOTE}/{branch}; follow it with: claude-warroom status {id}");
    }

    pub fn say_not_pushed(&self) {
        eprintln!("not pushed (--no-push); push with `git push` to submit it");
    }

    /// Says so when the push will carry the engineer's own unpushed commits along.
    pub fn warn_unpushed(&self, branch: &str) {
        let range = format!("{REMOTE}/{branch}..HEAD");
        let Ok(count) = self.repo.run(&["rev-list", "--count", &range]) else {
            return;
        };
        match count.trim().parse::<u64>() {
            Ok(0) | Err(_) => {}
            Ok(n) => eprintln!(
                "warning: {branch} has {n} commit(s) not on {REMOTE}/{branch}; they are pushed \
                 together with the request"
            ),
        }
    }
}

/// Turns validation errors into one message that names each field and the flag or argument
/// that set it (`flag_for`): `what` (`the request`) would be invalid, so nothing was written.
pub(crate) fn invalid(
    what: &str,
    errors: &warroom_proto::ValidationErrors,
    flag_for: impl Fn(&str) -> &'static str,
) -> anyhow::Error {
    let mut message = format!("{what} would be invalid, so nothing was written:");
    for error in &errors.errors {
        let flag = flag_for(&error.field);
        let field = if error.field.is_empty() {
            "file name"
        } else {
            &error.field
        };
        let _ = write!(message, "\n  {field} ({flag}): {}", error.message);
    }
    anyhow::anyhow!(message)
}

/// Now, in whole seconds: the files are read by people.
pub(crate) fn now() -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .context("truncating the time")
}

/// Writes a new file, `what` for messages; never overwrites an existing one.
fn write_new(path: &Path, text: &str, what: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow::anyhow!("{what} was already written: {} exists", path.display())
            }
            _ => anyhow::Error::new(e).context(format!("creating {}", path.display())),
        })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
