//! Where file tools may read and write: the task's workspace, plus read-only folders such as
//! the context folder. Paths are resolved through symlinks before they are compared, so a link
//! inside the workspace that points at `/etc` does not carry a read outside it.

use std::path::{Component, Path, PathBuf};

/// The folders one tool call may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    root: PathBuf,
    read_only: Vec<PathBuf>,
}

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRefusal {
    /// It names a parent folder (`..`), which is refused before any resolution.
    ParentComponent,
    /// After resolving it lies outside every allowed folder.
    Outside(PathBuf),
    /// It is empty or not valid text.
    Invalid,
    /// It goes through a symlink that does not resolve (dangling, or a loop): where a write
    /// through it lands cannot be known before it happens.
    DanglingSymlink(PathBuf),
}

/// File names that configure the Claude Code CLI when found in the workspace (settings and
/// hooks under `.claude/`, MCP servers, instructions): a write to one would change the agent's
/// own rules. Compared without regard to case.
const AGENT_CONFIG_NAMES: [&str; 5] = [
    ".claude",
    ".mcp.json",
    "claude.md",
    "claude.local.md",
    ".claude.json",
];

impl Workspace {
    /// The workspace at `root` (the hook's `cwd` unless configured), without extra folders.
    pub fn new(root: impl Into<PathBuf>) -> Workspace {
        Workspace {
            root: resolve(&root.into()),
            read_only: Vec::new(),
        }
    }

    /// Adds folders the file tools may read but not write.
    pub fn with_read_only(mut self, folders: impl IntoIterator<Item = PathBuf>) -> Workspace {
        self.read_only
            .extend(folders.into_iter().map(|f| resolve(&f)));
        self
    }

    /// The workspace root as resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The read-only folders as resolved.
    pub fn read_only(&self) -> &[PathBuf] {
        &self.read_only
    }

    /// `path` (relative to the workspace, or absolute) if it may be read.
    pub fn readable(&self, path: &str) -> Result<PathBuf, PathRefusal> {
        let resolved = self.resolve_user_path(path)?;
        if resolved.starts_with(&self.root)
            || self.read_only.iter().any(|f| resolved.starts_with(f))
        {
            Ok(resolved)
        } else {
            Err(PathRefusal::Outside(resolved))
        }
    }

    /// `path` (relative to the workspace, or absolute) if it may be written.
    pub fn writable(&self, path: &str) -> Result<PathBuf, PathRefusal> {
        let resolved = self.resolve_user_path(path)?;
        if resolved.starts_with(&self.root) {
            Ok(resolved)
        } else {
            Err(PathRefusal::Outside(resolved))
        }
    }

    /// The name of the agent-config file or folder (`.claude`, `CLAUDE.md`, ...) that `path`
    /// is or lies under, as written or as resolved, if any.
    pub fn agent_config(&self, path: &str) -> Option<String> {
        // Only the part below the workspace counts: the workspace may itself lie anywhere.
        let written = Path::new(path);
        let written = if written.is_absolute() {
            written.strip_prefix(&self.root).ok()
        } else {
            Some(written)
        };
        let resolved = self.resolve_user_path(path).ok();
        let relative = resolved
            .as_deref()
            .and_then(|r| r.strip_prefix(&self.root).ok());
        for candidate in [written, relative].into_iter().flatten() {
            for part in candidate.components() {
                let name = part.as_os_str().to_string_lossy().to_lowercase();
                if AGENT_CONFIG_NAMES.contains(&name.as_str()) {
                    return Some(part.as_os_str().to_string_lossy().into_owned());
                }
            }
        }
        None
    }

    fn resolve_user_path(&self, path: &str) -> Result<PathBuf, PathRefusal> {
        if path.is_empty() || path.contains('\0') {
            return Err(PathRefusal::Invalid);
        }
        let path = Path::new(path);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(PathRefusal::ParentComponent);
        }
        resolve_checked(&self.root.join(path))
    }
}

/// [`resolve`], refusing a path whose existing part ends in a symlink that does not resolve.
fn resolve_checked(path: &Path) -> Result<PathBuf, PathRefusal> {
    let mut existing = path.to_path_buf();
    loop {
        if existing.canonicalize().is_ok() {
            return Ok(resolve(path));
        }
        if std::fs::symlink_metadata(&existing).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(PathRefusal::DanglingSymlink(existing));
        }
        match existing.parent() {
            Some(parent) => existing = parent.to_path_buf(),
            None => return Ok(resolve(path)),
        }
    }
}

/// `path` with symlinks resolved as far as it exists; the part that does not exist yet (a file
/// about to be written) is appended as written, which is safe because it holds no `..`.
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut missing = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in missing.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            // Nothing of it exists (not even `/`): keep it lexical, normalised.
            _ => return path.components().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_absolute_parent_and_symlinks() {
        let ws_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ctx_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(ws_dir.path().join("out.json"), "{}").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/etc", ws_dir.path().join("etc"))
            .unwrap_or_else(|e| panic!("{e}"));
        let ws = Workspace::new(ws_dir.path()).with_read_only([ctx_dir.path().to_path_buf()]);

        assert!(ws.readable("out.json").is_ok());
        assert!(ws.readable("new/file.txt").is_ok());
        let abs = ws_dir.path().join("out.json");
        assert!(ws.readable(abs.to_str().unwrap_or_default()).is_ok());
        assert_eq!(ws.readable("../x"), Err(PathRefusal::ParentComponent));
        assert!(matches!(
            ws.readable("/etc/passwd"),
            Err(PathRefusal::Outside(_))
        ));
        assert!(matches!(
            ws.readable("etc/passwd"),
            Err(PathRefusal::Outside(_))
        ));
        let ctx = ctx_dir.path().join("notes.md");
        assert!(ws.readable(ctx.to_str().unwrap_or_default()).is_ok());
        assert!(matches!(
            ws.writable(ctx.to_str().unwrap_or_default()),
            Err(PathRefusal::Outside(_))
        ));
        assert!(ws.writable("report.md").is_ok());
    }
}
