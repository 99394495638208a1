//! `claude-warroom schema`: prints the JSON Schema of request files.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Print the JSON Schema of a TroubleshootingRequest file (or, with `--kind cancel`, of a
/// CancelRequest file; with `--kind follow-up`, of a FollowUp file).
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
pub struct Args {
    /// Which file's schema: `request` (requests/pending/*.yaml), `cancel`
    /// (requests/cancel/*.yaml) or `follow-up` (requests/ask/*/*.yaml).
    #[arg(long, value_enum, default_value_t = Kind::Request)]
    pub kind: Kind,
}

/// The kinds of file engineers write.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Request,
    Cancel,
    FollowUp,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let schema = match args.kind {
        Kind::Request => warroom_proto::schema::troubleshooting_request_pretty(),
        Kind::Cancel => warroom_proto::cancel::schema_pretty(),
        Kind::FollowUp => warroom_proto::followup::schema_pretty(),
    };
    std::io::stdout()
        .write_all(schema.as_bytes())
        .context("writing the schema to stdout")?;
    Ok(ExitCode::SUCCESS)
}
