//! Operator commands of claude-warroom. `nats-auth` locks NATS down: it writes the server's
//! authorization config, with one NKey user per component and the subjects that component may
//! publish and subscribe to, and each component's NKey seed; optionally a CA with server and
//! client certificates for TLS.

pub mod nats_auth;
pub mod permissions;
pub mod tls;

use std::path::PathBuf;

pub use nats_auth::{Generated, Options, generate};
pub use permissions::{Component, Permissions};

/// Errors of the operator commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--clusters: {0}")]
    Cluster(String),
    #[error(
        "{} already exist(s) in {dir}: pass --keep-existing to keep them (and add what is \
         missing), or --force to replace them with new ones",
        files.join(", ")
    )]
    Exists { dir: String, files: Vec<String> },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make an NKey for {component}: {message}")]
    Nkey { component: String, message: String },
    #[error("{path} is not an NKey user seed (`SU...`): {message}")]
    BadSeed { path: PathBuf, message: String },
    #[error("cannot make the TLS certificate {what}")]
    Tls {
        what: String,
        #[source]
        source: rcgen::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The command line of `warroom-admin`.
#[derive(Debug, clap::Parser)]
#[command(name = "warroom-admin", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Writes `nats-auth.conf` (the server's `authorization` block, to `include` from
    /// nats-server.conf) and one NKey seed per component (`<component>.nk`, mode 0600):
    /// gateway, dispatcher, publisher and `runner-<cluster>` for every cluster.
    NatsAuth(NatsAuthArgs),
    /// Commands on the secure zone's policy file (`WarroomPolicy`).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Reads FILE as the gateway would at start (parsed, every key usable, the GPG keys
    /// imported into a scratch keyring), prints every problem with its field path, one per
    /// line, and exits 1; or prints `ok: <summary>` and exits 0. Touches no network.
    Check {
        /// The policy file.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct NatsAuthArgs {
    /// The clusters that run a runner, comma-separated (e.g. `hub,prod-1`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub clusters: Vec<String>,
    /// Where to write the seeds and the configs.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a CA, a server certificate for these names and addresses, comma-separated,
    /// and a client certificate per component (`nats-tls.conf` holds the server's `tls` block).
    #[arg(long, value_delimiter = ',')]
    pub tls_hosts: Vec<String>,
    /// Where the server finds the TLS files named in `nats-tls.conf`.
    #[arg(long, default_value = "/etc/nats/tls")]
    pub tls_server_dir: PathBuf,
    /// Keep the seeds (and the CA) already in --out and make only what is missing: adding a
    /// cluster, or rotating one component after deleting its seed. The config is rewritten.
    #[arg(long, conflicts_with = "force")]
    pub keep_existing: bool,
    /// Replace every seed and certificate in --out with new ones.
    #[arg(long)]
    pub force: bool,
}

/// Runs one command, printing what it did.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Policy(PolicyCommand::Check { file }) => Ok(warroom_runtime::check::report(
            "warroom-admin policy check",
            check_policy(&file),
        )),
        Command::NatsAuth(args) => {
            let clusters = args
                .clusters
                .iter()
                .map(|c| {
                    warroom_proto::ClusterName::new(c.trim())
                        .map_err(|e| Error::Cluster(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            let generated = generate(&Options {
                clusters,
                out: args.out,
                tls_hosts: args.tls_hosts,
                tls_server_dir: args.tls_server_dir,
                keep_existing: args.keep_existing,
                force: args.force,
            })?;
            for line in generated.summary() {
                println!("{line}");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// `policy check`: the summary of a usable policy file, or every problem, one per line, each
/// naming the file and the field.
pub fn check_policy(
    file: &std::path::Path,
) -> Result<String, warroom_runtime::config::InvalidConfig> {
    match warroom_access::PolicyWatcher::load(file) {
        Ok(watcher) => {
            let policy = watcher.policy();
            Ok(format!(
                "{}: {} engineers, {} trusted keys, sha256 {}",
                file.display(),
                policy.engineers.len(),
                policy.trusted_keys.len(),
                watcher.hash_hex()
            ))
        }
        Err(warroom_access::Error::Invalid { path, errors }) => {
            Err(warroom_runtime::config::InvalidConfig {
                problems: errors.iter().map(|e| format!("{path}: {e}")).collect(),
            })
        }
        Err(e) => Err(warroom_runtime::config::InvalidConfig::one(format!(
            "{}: {}",
            file.display(),
            warroom_runtime::Chain(&e)
        ))),
    }
}
