//! The `warroom-dispatcher` binary: parses its configuration, starts logging and runs the
//! dispatcher until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = warroom_dispatcher::Config::parse();
    if config.common.check {
        return warroom_runtime::check::report("warroom-dispatcher", config.check());
    }
    warroom_runtime::telemetry::init(&config.common.log_format);
    match warroom_dispatcher::run(config, warroom_runtime::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warroom-dispatcher: {e}");
            ExitCode::FAILURE
        }
    }
}
