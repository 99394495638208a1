//! `warroom-publisher`: writes request status, reports and audit logs from NATS into
//! `results/` of the git repository. See the library documentation for what it does.

use std::process::ExitCode;

use warroom_publisher::{Config, run};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match warroom_runtime::check::parse_args::<Config>() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if config.common.check {
        return warroom_runtime::check::report("warroom-publisher", config.check());
    }
    warroom_runtime::telemetry::init(&config.common.log_format);
    match run(config, warroom_runtime::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warroom-publisher: {}", warroom_runtime::Chain(&e));
            ExitCode::FAILURE
        }
    }
}
