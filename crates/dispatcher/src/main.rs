//! The `warroom-dispatcher` binary: parses its configuration, starts logging and runs the
//! dispatcher until SIGTERM or SIGINT.

use std::process::ExitCode;

use warroom_dispatcher::{Config, run};
use warroom_runtime::{daemon, shutdown};

#[tokio::main]
async fn main() -> ExitCode {
    daemon::main::<Config, _, _>(|settings, health| run(settings, health, shutdown::signal())).await
}
