//! `claude-warroom init`: sets up an engineer's clone of the warroom repository, the
//! design's first command. It clones (or opens) the repository, prepares its layout, installs
//! the pre-commit hook that validates staged requests, optionally writes the GitHub Actions
//! workflows, checks commit signing, and records the publisher's key for `--verify`.
//!
//! Every step is idempotent: it compares what is there with what it would write, changes
//! only what is missing, and never replaces something the engineer changed without being
//! told to (`--force` for workflows, `--chain-hook` for a hook of their own).

mod files;
mod hook;
mod signing;
mod workflows;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::git::{REMOTE, Repo};
use crate::verify::{CONFIG_KEY, PublisherKey};

pub use workflows::Workflow;

/// Set up a clone of the warroom repository (run it again at any time: it changes nothing
/// that is already in place).
///
/// 1. With --github-repo, clones the repository into --dir (default: a folder named after
///    it), unless --dir already is a clone of it; without, uses the clone --dir is in.
///
/// 2. Creates `requests/pending/` and `results/` (each with a `.gitkeep`) where missing;
///    commit them yourself.
///
/// 3. Installs the pre-commit hook: it runs `claude-warroom validate --staged` on the request
///    files a commit adds or changes under `requests/`. A pre-commit hook of your own is
///    never replaced: init stops and says what to do (--chain-hook keeps yours and runs it
///    first).
///
/// 4. With --github-actions, writes the GitHub Actions workflows (embedded in this binary):
///    `validate` checks every pushed request file in CI; `image` builds and pushes the
///    container image on tags (for the repository holding the claude-warroom source). A
///    workflow you changed is left alone unless you pass --force.
///
/// 5. Checks that git signs your commits (a secure zone with a policy rejects unsigned
///    requests) and prints the exact commands to run when it does not.
///
/// 6. With --publisher-key, records the secure zone publisher's SSH public key in the clone
///    (`git config warroom.publisherKey`), where `status --verify` and `get-results --verify`
///    read it. Ask the secure zone's operators for it (the publisher logs it at start;
///    `warroom-dev` prints its own).
///
/// Everything it reports goes to stderr, one line per step.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom init --github-repo intility/warroom-requests
  claude-warroom init --github-repo git@github.example.com:team/warroom.git --dir ~/warroom
  cd ~/warroom && claude-warroom init                      # an existing clone
  claude-warroom init --github-actions                     # + .github/workflows/warroom-validate.yml
  claude-warroom init --github-actions=validate,image      # + warroom-image.yml
  claude-warroom init --publisher-key ./warroom-publisher.pub
  claude-warroom init --publisher-key SHA256:bswpMwHxxg/IFHZzWEdOk5a7l9jLvQB+Bo+ck1u2zxM
  claude-warroom status --verify <ID>

Exit codes: 0 set up (signing advice, if any, is printed but does not fail); 1 a step could
not be done (a clone of another repository, a pre-commit hook or workflow of your own in
the way, git failed); 2 usage error.")]
pub struct Args {
    /// The publisher's SSH public key: a `.pub` file, the key line, or its `SHA256:...`
    /// fingerprint (as `ssh-keygen -l` prints it). Replaces a recorded one.
    #[arg(long, value_name = "KEY")]
    pub publisher_key: Option<String>,

    /// The clone to set up; with --github-repo, where to clone to. Default: the current
    /// folder's clone; with --github-repo, a folder named after the repository.
    #[arg(long, visible_alias = "dir", value_name = "DIR", env = "WARROOM_REPO")]
    pub repo: Option<PathBuf>,

    /// The warroom repository to clone: `OWNER/NAME` on github.com (cloned over https), or
    /// any URL or path git clones (`git@host:owner/name.git`, `https://...`, `/srv/warroom.git`).
    #[arg(long, value_name = "OWNER/NAME|URL")]
    pub github_repo: Option<String>,

    /// Write GitHub Actions workflows into `.github/workflows/`: `validate` (the default)
    /// checks pushed request files; `image` builds and pushes the image on tags.
    #[arg(
        long,
        value_name = "WORKFLOW",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "validate",
        value_delimiter = ','
    )]
    pub github_actions: Vec<Workflow>,

    /// Replace workflows that differ from this version's templates.
    #[arg(long)]
    pub force: bool,

    /// Keep a pre-commit hook that is not ours: move it to `pre-commit.local`, which our hook
    /// runs first.
    #[arg(long)]
    pub chain_hook: bool,
}

/// What one step found or did.
struct Step {
    /// Whether it changed anything.
    changed: bool,
}

impl Step {
    fn report(name: &str, changed: bool, message: impl std::fmt::Display) -> Step {
        eprintln!("{name}: {message}");
        Step { changed }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    // Parse the key first: a bad one is a usage mistake, found before anything is cloned.
    let publisher_key = args
        .publisher_key
        .as_deref()
        .map(|value| PublisherKey::from_arg(value).context("--publisher-key"))
        .transpose()?;
    let (repo, clone) = open_or_clone(&args)?;
    let mut steps = vec![clone];
    steps.push(files::layout(&repo)?);
    steps.push(hook::install(&repo, args.chain_hook)?);
    let mut chosen = args.github_actions.clone();
    chosen.sort();
    chosen.dedup();
    for workflow in chosen {
        steps.push(workflows::write(&repo, workflow, args.force)?);
    }
    signing::check(&repo).print();
    steps.push(publisher(&repo, publisher_key)?);
    if steps.iter().any(|step| step.changed) {
        eprintln!("init: {} is set up", repo.root().display());
    } else {
        eprintln!("init: everything was already in place; nothing changed");
    }
    Ok(ExitCode::SUCCESS)
}

/// The clone to set up: cloned from --github-repo when it is not there yet.
fn open_or_clone(args: &Args) -> Result<(Repo, Step)> {
    let Some(spec) = &args.github_repo else {
        let dir = args.repo.clone().unwrap_or_else(|| PathBuf::from("."));
        let repo = match Repo::open(&dir) {
            Ok(repo) => repo,
            Err(err) => bail!(
                "{err:#}; to clone the warroom repository, pass --github-repo OWNER/NAME (or \
                 a URL)"
            ),
        };
        let step = Step::report(
            "clone",
            false,
            format_args!("{} (an existing clone)", repo.root().display()),
        );
        return Ok((repo, step));
    };
    let url = clone_url(spec)?;
    let dir = match &args.repo {
        Some(dir) => dir.clone(),
        // Already inside a clone of it: that one.
        None if clone_at(Path::new("."), &url, false)?.is_some() => PathBuf::from("."),
        None => PathBuf::from(default_folder(&url)?),
    };
    if let Some(repo) = clone_at(&dir, &url, true)? {
        let message = format!("{} is a clone of {url} (already in place)", dir.display());
        return Ok((repo, Step::report("clone", false, message)));
    }
    let repo = Repo::clone_into(&url, &dir)
        .with_context(|| format!("cloning {url} into {}", dir.display()))?;
    let message = format!("cloned {url} into {}", repo.root().display());
    Ok((repo, Step::report("clone", true, message)))
}

/// The clone whose top folder is `dir`, if it is one of `url`. Another repository there is
/// an error when `strict`, else `None`.
fn clone_at(dir: &Path, url: &str, strict: bool) -> Result<Option<Repo>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let Ok(repo) = Repo::open(dir) else {
        return Ok(None);
    };
    let top = std::fs::canonicalize(repo.root()).ok();
    if top.is_none() || top != std::fs::canonicalize(dir).ok() {
        // A folder inside some other repository: a new clone goes there.
        return Ok(None);
    }
    let origin = repo.config(&format!("remote.{REMOTE}.url"));
    match origin {
        Some(origin) if same_remote(&origin, url) => Ok(Some(repo)),
        _ if !strict => Ok(None),
        origin => bail!(
            "{} is already a git clone, of {} rather than {url}: pass --dir with another \
             folder, or run init there without --github-repo",
            dir.display(),
            origin.map_or_else(|| format!("no `{REMOTE}` remote"), |o| format!("`{o}`"))
        ),
    }
}

/// The URL git clones for --github-repo: `OWNER/NAME` is on github.com; anything else that
/// looks like a URL or a path is taken as it is.
fn clone_url(spec: &str) -> Result<String> {
    let spec = spec.trim();
    let is_url_or_path =
        spec.contains("://") || spec.contains(':') || spec.starts_with(['/', '.', '~']);
    if is_url_or_path {
        return Ok(spec.to_owned());
    }
    let valid = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match spec.split_once('/') {
        Some((owner, name)) if valid(owner) && valid(name) => {
            let name = name.strip_suffix(".git").unwrap_or(name);
            Ok(format!("https://github.com/{owner}/{name}.git"))
        }
        _ => bail!(
            "--github-repo `{spec}`: expected OWNER/NAME (a GitHub repository), a git URL \
             (https://..., ssh://..., git@host:owner/name.git) or a path (./warroom.git)"
        ),
    }
}

/// The folder `git clone URL` would make: the last part of the URL without `.git`.
fn default_folder(url: &str) -> Result<String> {
    let name = remote_parts(url).pop().unwrap_or_default();
    if name.is_empty() || name == ".." {
        bail!("cannot name a folder after {url}: pass --dir");
    }
    Ok(name)
}

/// The parts of a remote URL or path, without a trailing `/` or `.git`.
fn remote_parts(url: &str) -> Vec<String> {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    url.split(['/', ':'])
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether two remotes name the same repository: the same folder for local paths, else the
/// same last two parts (`owner/name`), whatever the scheme: `git@github.com:o/n.git` and
/// `https://github.com/o/n` are one repository.
fn same_remote(a: &str, b: &str) -> bool {
    let local = |url: &str| {
        let path = url.strip_prefix("file://").unwrap_or(url);
        std::fs::canonicalize(path).ok()
    };
    if let (Some(a), Some(b)) = (local(a), local(b)) {
        return a == b;
    }
    let last_two = |url: &str| {
        let parts = remote_parts(url);
        let start = parts.len().saturating_sub(2);
        parts[start..].join("/").to_lowercase()
    };
    last_two(a) == last_two(b)
}

/// Records the publisher key when one is given (and differs), or says what is recorded.
fn publisher(repo: &Repo, key: Option<PublisherKey>) -> Result<Step> {
    let recorded = repo.config(CONFIG_KEY);
    let Some(key) = key else {
        return Ok(match recorded.map(|value| value.parse::<PublisherKey>()) {
            Some(Ok(known)) => Step::report(
                "publisher key",
                false,
                format_args!("{} (git config {CONFIG_KEY})", known.fingerprint()),
            ),
            Some(Err(e)) => Step::report(
                "publisher key",
                false,
                format_args!(
                    "git config {CONFIG_KEY} holds no valid key ({e}); set it again \
                              with: claude-warroom init --publisher-key KEY"
                ),
            ),
            None => Step::report(
                "publisher key",
                false,
                "none recorded; to check results with --verify, ask the secure zone's \
                 operators for it and run: claude-warroom init --publisher-key KEY",
            ),
        });
    };
    let fingerprint = key.fingerprint();
    let value = key.to_string();
    if recorded.as_deref() == Some(value.as_str()) {
        return Ok(Step::report(
            "publisher key",
            false,
            format_args!("{fingerprint} already recorded (git config {CONFIG_KEY})"),
        ));
    }
    repo.output(&["config", "--local", CONFIG_KEY, &value])?;
    Ok(Step::report(
        "publisher key",
        true,
        format_args!(
            "recorded the publisher key {fingerprint} in {} (git config {CONFIG_KEY}); check \
             results with: claude-warroom status --verify <ID>",
            repo.root().display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_name_are_github_and_anything_else_is_cloned_as_given() {
        assert_eq!(
            clone_url("intility/warroom").unwrap(),
            "https://github.com/intility/warroom.git"
        );
        assert_eq!(
            clone_url("intility/warroom.git").unwrap(),
            "https://github.com/intility/warroom.git"
        );
        for given in [
            "git@github.com:o/n.git",
            "https://ghe.example.com/o/n",
            "file:///srv/n.git",
            "/srv/n.git",
            "./n.git",
        ] {
            assert_eq!(clone_url(given).unwrap(), given);
        }
        for bad in ["warroom", "a/b/c", "o/.hidden", "o/n m"] {
            let err = clone_url(bad).unwrap_err().to_string();
            assert!(
                err.contains("--github-repo") && err.contains("OWNER/NAME"),
                "{err}"
            );
        }
    }

    #[test]
    fn one_repository_under_any_scheme() {
        assert!(same_remote(
            "git@github.com:Intility/warroom.git",
            "https://github.com/intility/warroom"
        ));
        assert!(!same_remote(
            "https://github.com/intility/warroom.git",
            "https://github.com/intility/other.git"
        ));
        assert_eq!(
            default_folder("https://github.com/o/warroom.git/").unwrap(),
            "warroom"
        );
        assert_eq!(default_folder("/srv/git/remote.git").unwrap(), "remote");
    }
}
