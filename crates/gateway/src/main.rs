//! `warroom-gateway`: follows a git branch and publishes the request files added under
//! `requests/pending/` to NATS. See the library documentation for what it does.

use std::process::ExitCode;

use warroom_gateway::{Config, run};
use warroom_runtime::{daemon, shutdown};

#[tokio::main]
async fn main() -> ExitCode {
    daemon::main::<Config, _, _>(|settings, health| run(settings, health, shutdown::signal())).await
}
