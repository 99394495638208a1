//! `warroom-publisher`: writes request status, reports and audit logs from NATS into
//! `results/` of the git repository. See the library documentation for what it does.

use clap::Parser as _;
use warroom_publisher::{Config, run};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    warroom_runtime::telemetry::init(&config.common.log_format);
    if let Err(e) = run(config, warroom_runtime::shutdown::signal()).await {
        eprintln!("warroom-publisher: {e}");
        std::process::exit(1);
    }
}
