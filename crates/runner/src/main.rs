//! `warroom-runner`: runs the Claude Code CLI on one cluster's warroom tasks.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match warroom_runtime::check::parse_args::<warroom_runner::Config>() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if config.common.check {
        return warroom_runtime::check::report("warroom-runner", config.check());
    }
    warroom_runtime::telemetry::init(&config.common.log_format);
    match warroom_runner::run(config, warroom_runtime::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warroom-runner: {}", warroom_runtime::Chain(&e));
            ExitCode::FAILURE
        }
    }
}
