//! `claude-warroom`, the engineer's command. It runs in the insecure zone and only ever talks
//! to git: it writes and pushes request files, and reads status and results back.
//!
//! Each subcommand lives in its own module with an `Args` struct and a `run` function; this
//! file only parses the command line, dispatches, and turns the outcome into an exit code.

mod cancel;
mod completions;
mod dev;
mod eval;
mod get_results;
mod git;
mod init;
mod investigate;
mod results;
mod schema;
mod session;
mod status;
mod strategies;
mod submit;
mod validate;
mod verify;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Exit code: the request has no results yet (it is pending).
pub const EXIT_NOT_YET: u8 = 3;

/// Troubleshoot OpenShift/HyperShift clusters in the secure zone through git.
///
/// You describe an issue; `claude-warroom investigate` writes a validated request file to
/// `requests/pending/<id>.yaml` in your clone of the warroom repository, commits it and pushes.
/// Inside the secure zone the Claude Code CLI investigates in each target cluster, read-only,
/// and the report comes back to the same repository under `results/<id>/`, where
/// `claude-warroom status` and `claude-warroom get-results` read it. Nothing here talks to a
/// cluster or to NATS: git is the only channel.
#[derive(Debug, Parser)]
#[command(
    name = "claude-warroom",
    version,
    propagate_version = true,
    after_help = "\
Examples:
  claude-warroom investigate --cluster production-hub --namespace clusters-prod-1 \\
      --issue \"etcd latency\" --strategy control-plane-health
  claude-warroom investigate --clusters production-hub,prod-cluster-1 --mode sequential \\
      --issue \"API timeouts\" --prompt \"Find why the API server of prod-cluster-1 times out.\"
  claude-warroom init --github-repo OWNER/NAME --github-actions
  claude-warroom init --publisher-key ./warroom-publisher.pub
  claude-warroom status --verify <id>
  claude-warroom wait <id>                # follow it until it is final
  claude-warroom cancel <id> --reason \"wrong cluster\"
  claude-warroom session start --cluster prod-cluster-1 --duration 2h
  claude-warroom session ask <id> \"And what changed in the router config today?\"
  claude-warroom session stop <id>
  claude-warroom get-results --verify <id>
  claude-warroom validate requests/pending/*.yaml
  claude-warroom strategies
  claude-warroom completions bash > ~/.local/share/bash-completion/completions/claude-warroom
  claude-warroom dev demo
  ANTHROPIC_API_KEY=... claude-warroom eval --live --only etcd-slow-disk

Exit codes: 0 success, 1 error (invalid request, git failure, unknown id, results that fail
--verify), 2 usage error,
3 no results yet (the request is pending); `wait` and `status --watch`: 4 failed, 5 timed_out,
6 cancelled, 7 rejected, 8 not final after --timeout; `eval`: 1 a scenario scored a failure."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per subcommand; each wraps the `Args` of its own module (`src/<command>.rs`
/// with `pub struct Args` and `pub fn run(Args) -> anyhow::Result<ExitCode>`). `dev` only
/// hands its arguments to the separate local-stack binary `warroom-dev`.
// Parsed once per process, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    #[command(visible_alias = "create")]
    Investigate(investigate::Args),
    Init(init::Args),
    Status(status::Args),
    /// Follow a request until it is final: `claude-warroom status --watch`.
    Wait(status::Args),
    Cancel(cancel::Args),
    Session(session::Args),
    GetResults(get_results::Args),
    Validate(validate::Args),
    Schema(schema::Args),
    Strategies(strategies::Args),
    Completions(completions::Args),
    Dev(dev::Args),
    Eval(eval::Args),
}

/// Marks an error as "no results yet" so that it exits with [`EXIT_NOT_YET`].
#[derive(Debug)]
pub struct NotYet(pub String);

impl std::fmt::Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotYet {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Investigate(args) => investigate::run(args),
        Command::Init(args) => init::run(args),
        Command::Status(args) => status::run(args),
        Command::Wait(args) => status::run(status::Args {
            watch: true,
            ..args
        }),
        Command::Cancel(args) => cancel::run(args),
        Command::Session(args) => session::run(args),
        Command::GetResults(args) => get_results::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Strategies(args) => strategies::run(args),
        Command::Completions(args) => completions::run(args, &mut Cli::command()),
        Command::Dev(args) => dev::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match outcome {
        Ok(code) => code,
        // `claude-warroom get-results ID | head`: the reader has all it wanted.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<NotYet>().is_some() {
                ExitCode::from(EXIT_NOT_YET)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
