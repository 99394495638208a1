//! `claude-warroom session`: a persistent troubleshooting session in one cluster (`start`,
//! `stop`), and follow-up questions to any request's conversation (`ask`).
//!
//! Each subcommand writes one file under `requests/` and submits it the way `investigate`
//! and `cancel` do (`crate::submit`): `start` a `SessionRequest`, `ask` a `FollowUp`, `stop`
//! a cancel file.

mod ask;
mod start;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

/// Hold a conversation with the secure zone: open a session in one cluster, ask it follow-up
/// questions, stop it.
///
/// A session is a request that stays open: `session start` asks for one in a cluster for a
/// while (at most 8 hours), with or without a first question. Each `session ask` continues
/// the conversation where it left off, and its answer lands in `results/<ID>/turn-<N>.md`.
/// The session ends at `session stop` or when its duration ends. `session ask` takes any
/// request id: it continues that request's investigation too.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  id=$(claude-warroom session start --cluster prod-cluster-1 --duration 2h \\
      --prompt \"Why are the ingress pods restarting?\")
  claude-warroom session ask \"$id\" \"And what changed in the router config today?\"
  claude-warroom status \"$id\"           # the session's state and each turn
  claude-warroom session stop \"$id\"")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The `session` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    Start(start::Args),
    Ask(ask::Args),
    Stop(StopArgs),
}

/// Stop a session: write, commit and push `requests/cancel/<ID>.yaml`, as `cancel` does.
///
/// The session ends: questions that have not started never run, an investigation still
/// running is interrupted, and `status.json` shows the session `ended` ("stopped by <you>:
/// <reason>"). What was answered so far stays in `results/<ID>/`. Only the engineer who
/// started it, or an admin of the secure zone's policy, may stop it; with a policy the
/// commit must be signed. Any request can be stopped this way; it is the same as `cancel`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom session stop 2026-12-07-1030-session-prod-cluster-1-3fa2c1
  claude-warroom session stop <ID> --reason \"found it: the router's config map\"

Exit codes: 0 written, committed and pushed; 1 the id or reason is invalid, a cancel of this
request was already written, or git failed (nothing is pushed); 2 usage error.")]
pub struct StopArgs {
    /// The id of the session (what `session start` printed).
    #[arg(value_name = "ID")]
    pub id: String,

    /// Why, shown in the session's status.json (at most 1024 bytes).
    #[arg(long, value_name = "TEXT", default_value = STOPPED)]
    pub reason: String,

    /// Who is asking. Default: `git config user.email` of the repository, else `user.name`,
    /// else $USER.
    #[arg(long, value_name = "WHO", env = "WARROOM_ENGINEER")]
    pub engineer: Option<String>,

    /// A clone of the warroom repository.
    #[arg(long, value_name = "DIR", env = "WARROOM_REPO", default_value = ".")]
    pub repo: PathBuf,

    /// Commit, but do not push (push later with `git push`).
    #[arg(long)]
    pub no_push: bool,
}

/// The reason of a `session stop` without `--reason`.
const STOPPED: &str = "session stopped";

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Start(args) => start::run(args),
        Command::Ask(args) => ask::run(args),
        // A stop is a cancel: the secure zone ends the session as it ends any request.
        Command::Stop(args) => crate::cancel::run(crate::cancel::Args {
            id: args.id,
            reason: Some(args.reason),
            engineer: args.engineer,
            repo: args.repo,
            no_push: args.no_push,
        }),
    }
}
