//! `claude-warroom schema`: prints the JSON Schema of request files.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Print the JSON Schema of a TroubleshootingRequest file.
///
/// It is generated from the same types the gateway validates against, and equals the
/// committed `schema/troubleshooting-request.schema.json`. The schema describes the shape;
/// rules that span fields (exactly one of `targetCluster` and `targetClusters`, a
/// destination inside `results/`) are only checked by `claude-warroom validate`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom schema > troubleshooting-request.schema.json
  # VS Code (redhat.vscode-yaml), in settings.json:
  #   \"yaml.schemas\": { \"./troubleshooting-request.schema.json\": \"requests/pending/*.yaml\" }")]
pub struct Args {}

pub fn run(_args: Args) -> Result<ExitCode> {
    let schema = warroom_proto::schema::troubleshooting_request_pretty();
    std::io::stdout()
        .write_all(schema.as_bytes())
        .context("writing the schema to stdout")?;
    Ok(ExitCode::SUCCESS)
}
