//! The `warroom-dispatcher` binary: parses its configuration, starts logging and runs the
//! dispatcher until SIGTERM or SIGINT.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match warroom_runtime::check::parse_args::<warroom_dispatcher::Config>() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if config.common.check {
        return warroom_runtime::check::report("warroom-dispatcher", config.check());
    }
    warroom_runtime::telemetry::init(&config.common.log_format);
    match warroom_dispatcher::run(config, warroom_runtime::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warroom-dispatcher: {}", warroom_runtime::Chain(&e));
            ExitCode::FAILURE
        }
    }
}
