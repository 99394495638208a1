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
}

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

    fn resolve_user_path(&self, path: &str) -> Result<PathBuf, PathRefusal> {
        if path.is_empty() || path.contains('\0') {
            return Err(PathRefusal::Invalid);
        }
        let path = Path::new(path);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(PathRefusal::ParentComponent);
        }
        Ok(resolve(&self.root.join(path)))
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
