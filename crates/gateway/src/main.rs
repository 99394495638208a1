//! `warroom-gateway`: follows a git branch and publishes the request files added under
//! `requests/pending/` to NATS. See the library documentation for what it does.

use std::process::ExitCode;

use warroom_gateway::{Config, run};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match warroom_runtime::check::parse_args::<Config>() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if config.common.check {
        return warroom_runtime::check::report("warroom-gateway", config.check());
    }
    warroom_runtime::telemetry::init(&config.common.log_format);
    match run(config, warroom_runtime::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warroom-gateway: {}", warroom_runtime::Chain(&e));
            ExitCode::FAILURE
        }
    }
}
