//! `claude-warroom dev`: hands the command line to `warroom-dev`, the local stack, git-style.
//!
//! The local stack links every daemon, a NATS client and the scripted model; the engineer's
//! command links none of them, so the stack is a binary of its own (crate `crates/dev`).
//! `claude-warroom dev <args>` replaces this process with `warroom-dev <args>`, found next to
//! this executable first, then on `PATH`, so signals (Ctrl-C) and the exit code are
//! `warroom-dev`'s own.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Result;

/// The local-stack binary `claude-warroom dev` runs.
const DEV_BINARY: &str = "warroom-dev";

/// Exit code when `warroom-dev` is not installed: the command cannot be used as it stands.
const EXIT_NOT_INSTALLED: u8 = 2;

/// Run the whole secure zone on one machine (`dev up`, `dev demo`) through `warroom-dev`.
///
/// Everything after `dev` is passed unchanged to the local-stack binary `warroom-dev`, found
/// next to `claude-warroom` or on PATH (build it with `cargo build -p warroom-dev`). `up` runs
/// the gateway, the dispatcher, a runner per cluster and the publisher against a git remote
/// until Ctrl-C; `demo` brings them up on a fresh local remote, submits the design's sample
/// multi-cluster request and prints where its report landed. Without ANTHROPIC_API_KEY the
/// stack runs in replay mode, and every report says so.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom dev demo
  claude-warroom dev up --repo /srv/git/warroom.git --clusters production-hub,prod-cluster-1
  claude-warroom dev up --help      (warroom-dev's own help: every flag of `up`)")]
pub struct Args {
    /// The `warroom-dev` subcommand (`up`, `demo`, `help`) and its flags.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<OsString>,
}

/// `warroom-dev` next to this executable, else on `PATH` (`eval --live` starts it too).
pub fn find_binary() -> Option<PathBuf> {
    find(here().as_deref())
}

/// The folder of this executable.
fn here() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let here = here();
    let Some(binary) = find(here.as_deref()) else {
        let beside = here
            .map(|dir| format!(" (looked in {} and on PATH)", dir.display()))
            .unwrap_or_default();
        eprintln!(
            "error: `claude-warroom dev` needs the local-stack binary `{DEV_BINARY}` (build it \
             with `cargo build -p {DEV_BINARY}`), next to `claude-warroom` or on PATH{beside}; \
             from a checkout, `cargo run -p {DEV_BINARY} -- demo` runs it directly"
        );
        return Ok(ExitCode::from(EXIT_NOT_INSTALLED));
    };
    // `exec` returns only when it failed to replace this process.
    let error = Command::new(&binary).args(&args.args).exec();
    Err(anyhow::Error::new(error).context(format!("cannot run {}", binary.display())))
}

/// `warroom-dev` in `here` (the folder of this executable), else the first on `PATH`.
/// Relative `PATH` entries (an empty one means the current folder) are skipped: a stray file
/// wherever the engineer happens to stand is not run.
fn find(here: Option<&Path>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    here.map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&path).filter(|dir| dir.is_absolute()))
        .map(|dir| dir.join(DEV_BINARY))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
