//! `warroom-runner`: runs the Claude Code CLI on one cluster's warroom tasks.

use std::process::ExitCode;

use warroom_runner::{Config, run};
use warroom_runtime::{daemon, shutdown};

#[tokio::main]
async fn main() -> ExitCode {
    daemon::main::<Config, _, _>(|settings, health| run(settings, health, shutdown::signal())).await
}
