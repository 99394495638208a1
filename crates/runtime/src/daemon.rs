//! The shape every daemon has, and the one `main` that drives it.
//!
//! A daemon is a clap `Config` that turns into its `Settings` before any I/O
//! ([`Daemon::validate`]: every bad flag reported at once), answers `--check`
//! ([`Daemon::check`]: the files it names read too, no network), and one
//! `run(settings, health, shutdown)` that works until `shutdown` resolves. [`main`] is the
//! whole of each daemon's `main.rs`: parse, `--check`, logging, validate, run until SIGTERM
//! or SIGINT, and the exit code, the same way for all four.

use std::future::Future;
use std::process::ExitCode;

use crate::config::InvalidConfig;
use crate::{Chain, CommonArgs, DaemonMetrics, Health};

/// A daemon's configuration, as its `main` and its tests see it.
pub trait Daemon: clap::Parser {
    /// The program (`warroom-gateway`), which starts every line `main` prints.
    const PROGRAM: &'static str;
    /// The configuration, checked and with its defaults resolved.
    type Settings;
    /// The daemon's typed metrics.
    type Metrics: DaemonMetrics;

    /// The flags every daemon takes.
    fn common(&self) -> &CommonArgs;

    /// Checks every value and resolves the defaults, without touching the network: the
    /// settings, or every problem at once.
    fn validate(&self) -> Result<Self::Settings, InvalidConfig>;

    /// `--check`: what [`Daemon::validate`] checks and the files the configuration names,
    /// read as the daemon would at start; the summary, or every problem.
    fn check(&self) -> Result<String, InvalidConfig>;
}

/// The `main` of every daemon. Exit codes: 0 after a clean shutdown or a passed `--check`;
/// 1 for a configuration that cannot be used, a failed `--check` or a daemon that stopped
/// on an error; 2 for a command line clap refuses (outside `--check`).
pub async fn main<C, F, E>(run: impl FnOnce(C::Settings, Health<C::Metrics>) -> F) -> ExitCode
where
    C: Daemon,
    F: Future<Output = Result<(), E>>,
    E: std::error::Error,
{
    let config = match crate::check::parse_args::<C>() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if config.common().check {
        return crate::check::report(C::PROGRAM, config.check());
    }
    crate::telemetry::init(&config.common().log_format);
    let settings = match config.validate() {
        Ok(settings) => settings,
        Err(invalid) => {
            for line in invalid.to_string().lines() {
                eprintln!("{}: {}", C::PROGRAM, line.trim_start());
            }
            return ExitCode::FAILURE;
        }
    };
    match run(settings, Health::new()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {}", C::PROGRAM, Chain(&e));
            ExitCode::FAILURE
        }
    }
}
