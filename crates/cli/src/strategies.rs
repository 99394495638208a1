//! `claude-warroom strategies`: the runbooks a request may name with `--strategy`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// List the troubleshooting strategies: the runbooks `--strategy` may name.
///
/// One line per runbook: its name, then when to use it. The list is the runbook index
/// (`context/runbooks/README.md`) compiled into this command, the same list the gateway
/// checks requests against, so a name printed here is never refused. Without `--strategy`
/// the agent picks a runbook from the same index.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom strategies
  claude-warroom strategies --json | jq -r '.[].name'")]
pub struct Args {
    /// Print a JSON array of `{\"name\", \"description\"}` objects, for scripts.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let strategies = warroom_proto::strategies();
    let text = if args.json {
        let list: Vec<serde_json::Value> = strategies
            .iter()
            .map(|s| serde_json::json!({ "name": s.name, "description": s.description }))
            .collect();
        let mut text = serde_json::to_string_pretty(&list).context("serializing the list")?;
        text.push('\n');
        text
    } else {
        render(strategies)
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// One line per strategy: the name padded to the longest, then the description.
fn render(strategies: &[warroom_proto::Strategy]) -> String {
    let width = strategies.iter().map(|s| s.name.len()).max().unwrap_or(0);
    strategies
        .iter()
        .map(|s| format!("{:width$}  {}\n", s.name, s.description))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_padded_to_one_column() {
        let strategy = |name: &str, description: &str| warroom_proto::Strategy {
            name: name.to_owned(),
            description: description.to_owned(),
        };
        assert_eq!(
            render(&[
                strategy("etcd", "etcd is slow."),
                strategy("api-latency", "slow API.")
            ]),
            "etcd         etcd is slow.\napi-latency  slow API.\n"
        );
    }
}
