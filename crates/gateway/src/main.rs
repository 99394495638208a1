//! `warroom-gateway`: follows a git branch and publishes the request files added under
//! `requests/pending/` to NATS. See the library documentation for what it does.

use clap::Parser as _;
use warroom_gateway::{Config, run};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    warroom_runtime::telemetry::init(&config.common.log_format);
    if let Err(e) = run(config, warroom_runtime::shutdown::signal()).await {
        eprintln!("warroom-gateway: {e}");
        std::process::exit(1);
    }
}
