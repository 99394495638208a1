//! `claude-warroom init`: records in the engineer's clone what later commands need to know
//! about the secure zone, today the publisher's public key for `--verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::git::Repo;
use crate::verify::{CONFIG_KEY, PublisherKey};

/// Set up this clone: remember the secure zone's publisher key.
///
/// Writes the publisher's SSH public key to the clone's local git configuration
/// (`git config warroom.publisherKey`), where `status --verify` and `get-results --verify`
/// read it to check that every results commit was signed by the publisher. Ask the secure
/// zone's operators for the key (the publisher logs it at start; `warroom-dev` prints its
/// own). Running it again replaces the key.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom init --publisher-key ./warroom-publisher.pub
  claude-warroom init --publisher-key 'ssh-ed25519 AAAAC3Nza... warroom-publisher'
  claude-warroom init --publisher-key SHA256:bswpMwHxxg/IFHZzWEdOk5a7l9jLvQB+Bo+ck1u2zxM
  claude-warroom status --verify <ID>")]
pub struct Args {
    /// The publisher's SSH public key: a `.pub` file, the key line, or its `SHA256:...`
    /// fingerprint (as `ssh-keygen -l` prints it).
    #[arg(long, value_name = "KEY")]
    pub publisher_key: String,

    /// A clone of the warroom repository.
    #[arg(long, value_name = "DIR", env = "WARROOM_REPO", default_value = ".")]
    pub repo: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let key = PublisherKey::from_arg(&args.publisher_key)?;
    // Parsing checked that the key data holds a key; its fingerprint is how git names it.
    let fingerprint = key.fingerprint();
    let repo = Repo::open(&args.repo)?;
    repo.output(&["config", "--local", CONFIG_KEY, &key.to_string()])?;
    eprintln!(
        "recorded the publisher key {fingerprint} in {} (git config {CONFIG_KEY}); check \
         results with: claude-warroom status --verify <ID>",
        repo.root().display()
    );
    Ok(ExitCode::SUCCESS)
}
