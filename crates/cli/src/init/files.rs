//! Files `init` writes: the repository layout, and a helper that writes a file only when it
//! is absent or identical, so that running `init` again changes nothing.

use std::path::Path;

use anyhow::{Context, Result};

use super::Step;
use crate::git::Repo;

/// The folders every warroom repository has, from its root: where requests are pushed and
/// where the publisher writes results.
const LAYOUT: [&str; 2] = ["requests/pending", "results"];

/// What [`write_if_absent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file was missing and is written.
    Created,
    /// The file already held exactly these bytes.
    Unchanged,
    /// The file held something else: left alone.
    Differs,
}

/// Writes `contents` to `path` (making its folder) when the file is missing; reports whether
/// it already holds exactly `contents` otherwise.
pub fn write_if_absent(path: &Path, contents: &[u8]) -> Result<Written> {
    match std::fs::read(path) {
        Ok(existing) if existing == contents => return Ok(Written::Unchanged),
        Ok(_) => return Ok(Written::Differs),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    }
    write(path, contents)?;
    Ok(Written::Created)
}

/// Writes `contents` to `path`, making its folder.
pub fn write(path: &Path, contents: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Creates each folder of [`LAYOUT`] that is missing, with an empty `.gitkeep` so that git
/// can track it. A folder that exists (git only checks out folders holding files) is left as
/// it is.
pub fn layout(repo: &Repo) -> Result<Step> {
    let mut created = Vec::new();
    for dir in LAYOUT {
        if repo.root().join(dir).is_dir() {
            continue;
        }
        let keep = format!("{dir}/.gitkeep");
        write(&repo.root().join(&keep), b"")?;
        created.push(keep);
    }
    let folders = LAYOUT.map(|dir| format!("{dir}/")).join(" and ");
    Ok(if created.is_empty() {
        Step::report("layout", false, format_args!("{folders} already in place"))
    } else {
        Step::report(
            "layout",
            true,
            format_args!(
                "created {}; commit and push them: git add {} && git commit -m 'warroom \
                 layout' && git push",
                created.join(", "),
                created.join(" ")
            ),
        )
    })
}
