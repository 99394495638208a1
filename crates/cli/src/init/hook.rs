//! The pre-commit hook `init` installs: it runs `claude-warroom validate --staged`, so a bad
//! request file is refused before it is committed. A hook of the engineer's own is never
//! replaced.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::Step;
use super::files;
use crate::git::Repo;

/// The hook, as this version of the CLI writes it.
pub const HOOK: &str = include_str!("../../templates/pre-commit");
/// The line that marks a hook as ours (of this or an earlier version).
const MARKER: &str = "# claude-warroom pre-commit hook";
/// What a hook must run to do our check.
const CHECK: &str = "claude-warroom validate --staged";
/// Where `--chain-hook` moves a hook of the engineer's own; ours runs it first.
const LOCAL: &str = "pre-commit.local";

/// Installs the hook where git looks for it (`core.hooksPath` is honoured).
pub fn install(repo: &Repo, chain: bool) -> Result<Step> {
    let path = repo.git_path("hooks/pre-commit")?;
    let shown = relative(repo, &path);
    let existing = match std::fs::read(&path) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("reading {shown}")),
    };
    let Some(existing) = existing else {
        write(&path)?;
        return Ok(Step::report(
            "hook",
            true,
            format_args!("installed {shown} (runs `{CHECK}`)"),
        ));
    };
    if existing == HOOK {
        if is_executable(&path)? {
            return Ok(Step::report(
                "hook",
                false,
                format_args!("{shown} already installed"),
            ));
        }
        write(&path)?;
        return Ok(Step::report(
            "hook",
            true,
            format_args!("made {shown} executable"),
        ));
    }
    if existing.contains(MARKER) {
        write(&path)?;
        return Ok(Step::report(
            "hook",
            true,
            format_args!("updated {shown} to this version's hook"),
        ));
    }
    if existing.contains(CHECK) {
        return Ok(Step::report(
            "hook",
            false,
            format_args!("{shown} is your own and already runs `{CHECK}`"),
        ));
    }
    if !chain {
        bail!(
            "{shown} already exists and is not claude-warroom's; it was left as it is. Either \
             run `claude-warroom init --chain-hook` (it moves yours to {LOCAL}, and ours runs \
             it first), or add the line `{CHECK} || exit 1` to yours"
        );
    }
    let local = path.with_file_name(LOCAL);
    let local_shown = relative(repo, &local);
    if local.exists() {
        bail!(
            "cannot chain: both {shown} and {local_shown} exist; merge them into \
             {local_shown} and run init again"
        );
    }
    std::fs::rename(&path, &local)
        .with_context(|| format!("moving {shown} to {}", local.display()))?;
    write(&path)?;
    Ok(Step::report(
        "hook",
        true,
        format_args!(
            "moved your hook to {} and installed {shown}, which runs it first",
            local_shown
        ),
    ))
}

fn write(path: &Path) -> Result<()> {
    files::write(path, HOOK.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

fn is_executable(path: &Path) -> Result<bool> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    Ok(mode & 0o111 == 0o111)
}

/// `path` from the repository root when it is inside it (`.git/hooks/pre-commit`).
fn relative(repo: &Repo, path: &Path) -> String {
    path.strip_prefix(repo.root())
        .unwrap_or(path)
        .display()
        .to_string()
}
