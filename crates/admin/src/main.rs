//! `warroom-admin`: operator commands (see the library).

use clap::Parser as _;

fn main() -> anyhow::Result<std::process::ExitCode> {
    warroom_admin::run(warroom_admin::Cli::parse())
}
