//! `warroom-runner`: runs the Claude Code CLI on one cluster's warroom tasks.

use clap::Parser as _;

#[tokio::main]
async fn main() {
    let config = warroom_runner::Config::parse();
    warroom_runtime::telemetry::init(&config.common.log_format);
    if let Err(e) = warroom_runner::run(config, warroom_runtime::shutdown::signal()).await {
        eprintln!("warroom-runner: {e}");
        std::process::exit(1);
    }
}
