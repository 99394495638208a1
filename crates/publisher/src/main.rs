//! `warroom-publisher`: writes request status, reports and audit logs from NATS into
//! `results/` of the git repository. See the library documentation for what it does.

use std::process::ExitCode;

use warroom_publisher::{Config, run};
use warroom_runtime::{daemon, shutdown};

#[tokio::main]
async fn main() -> ExitCode {
    daemon::main::<Config, _, _>(|settings, health| run(settings, health, shutdown::signal())).await
}
