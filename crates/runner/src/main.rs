//! `warroom-runner`: runs the Claude Code CLI on one cluster's warroom tasks.

use std::process::ExitCode;

use warroom_runner::pod_programs::Program;
use warroom_runner::{Config, run};
use warroom_runtime::{daemon, shutdown};

#[tokio::main]
async fn main() -> ExitCode {
    // `model-proxy` and `session-shell` are the programs of a session pod; without a
    // subcommand this is the runner daemon.
    if let Some(program) = Program::from_args() {
        return program.run().await;
    }
    daemon::main::<Config, _, _>(|settings, health| run(settings, health, shutdown::signal())).await
}
