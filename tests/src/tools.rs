//! Finds the external programs the tests run for real: `nats-server`, the Claude Code CLI,
//! `actionlint` and `shellcheck`, and this workspace's own binaries.
//!
//! `scripts/setup` installs them into `.tools/bin` of the workspace. An environment variable
//! overrides that (`WARROOM_NATS_SERVER_BIN`, `WARROOM_CLAUDE_BIN`, `WARROOM_ACTIONLINT_BIN`,
//! `WARROOM_SHELLCHECK_BIN`), and `PATH` is the last resort, so a machine that has them
//! installed elsewhere works too.

use std::path::{Path, PathBuf};

/// The workspace root (the folder holding the virtual `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test kit lives one level below the workspace root")
        .to_path_buf()
}

/// The `nats-server` binary the tests start.
pub fn nats_server() -> PathBuf {
    find("nats-server", "WARROOM_NATS_SERVER_BIN")
}

/// The `claude` binary (the Claude Code CLI) the tests run.
pub fn claude() -> PathBuf {
    find("claude", "WARROOM_CLAUDE_BIN")
}

/// `actionlint`, which checks GitHub Actions workflows (those `claude-warroom init` writes).
pub fn actionlint() -> PathBuf {
    find("actionlint", "WARROOM_ACTIONLINT_BIN")
}

/// `shellcheck`, which `actionlint` runs on every `run:` script, and the tests on hooks.
pub fn shellcheck() -> PathBuf {
    find("shellcheck", "WARROOM_SHELLCHECK_BIN")
}

/// A binary of this workspace, e.g. `claude-warroom`, from the target folder the running
/// test binary was built into (`target/<profile>/`). `cargo nextest run --workspace` builds
/// every package's binaries before it runs a test.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "`{}` is missing: build it first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// A program of `.tools/bin` (or `PATH`), unless `env_var` names its path.
pub fn find_tool(name: &str, env_var: &str) -> PathBuf {
    find(name, env_var)
}

fn find(name: &str, env_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    let local = workspace_root().join(".tools/bin").join(name);
    if local.exists() {
        return local;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "`{name}` was not found: run `scripts/setup` (it installs it into .tools/bin), \
         or set {env_var} to its path"
    );
}
