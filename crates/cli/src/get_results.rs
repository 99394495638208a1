//! `claude-warroom get-results`: a request's reports, read from git.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::NotYet;
use crate::results::{Results, Target};

/// Print a request's aggregated report and each cluster's report, or copy them all.
///
/// Fetches `origin/<BRANCH>` and reads the request's results folder: usually `results/<ID>/`,
/// or the folder its `spec.output.destination` names. Prints `README.md` (the aggregated
/// report: each cluster's phase, duration and cost) and then every cluster's report and every
/// follow-up answer (`turn-<n>.md`, in turn order), each
/// after a `==> PATH <==` line. With `--output DIR` it copies the whole folder (status.json,
/// reports, audit.jsonl) to DIR instead. Reads git only.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom get-results 2026-01-15-1430-etcd-latency-3f9a2c | less
  claude-warroom get-results --request-id 2026-01-15-1430-etcd-latency-3f9a2c --output ./report
  jq -r .command ./report/audit.jsonl     # every command the agent ran or was refused
  claude-warroom get-results --verify <ID>   # only results the publisher signed

A request that is still running shows the reports of the clusters that finished so far.

Exit codes: 0 results were shown or copied, 1 error (unknown id, git failure; with --verify,
a commit of the results folder not signed by the publisher), 2 usage error, 3 no results yet
(the request is pending, or no cluster has finished).")]
pub struct Args {
    #[command(flatten)]
    pub target: Target,

    /// Copy every file of the results folder into DIR (created if missing) instead of
    /// printing the reports.
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let results = args.target.locate()?;
    results.report_verification();
    match &args.output {
        Some(dir) => copy(&results, dir)?,
        None => print(&results)?,
    }
    if !results.status.phase.is_final() {
        eprintln!(
            "note: request {} is still {}; these results are partial",
            results.id, results.status.phase
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The reports to print: the aggregated one first, then each cluster's in name order, then
/// the follow-up answers in turn order.
fn reports(results: &Results) -> Result<Vec<String>> {
    let files = results.files()?;
    let mut reports: Vec<String> = files
        .iter()
        .filter(|f| *f == "README.md")
        .cloned()
        .collect();
    // Cluster reports are the Markdown files next to README.md; status.json names them too,
    // but a report written by an older publisher may not be listed there.
    let mut others: Vec<&String> = files
        .iter()
        .filter(|f| f.ends_with(".md") && *f != "README.md" && !f.contains('/'))
        .collect();
    // The follow-up answers (`turn-<n>.md`) come last, in the order they were asked.
    others.sort_by_key(|f| (turn_of(f), (*f).clone()));
    reports.extend(others.into_iter().cloned());
    Ok(reports)
}

/// The turn a follow-up answer's file holds (`turn-12.md`: 12); 0 for any other report.
fn turn_of(file: &str) -> u32 {
    file.strip_prefix("turn-")
        .and_then(|rest| rest.strip_suffix(".md"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn print(results: &Results) -> Result<()> {
    let reports = reports(results)?;
    if reports.is_empty() {
        return Err(NotYet(format!(
            "no results for {} yet: the request is {} and no report has been written to `{}/`",
            results.id, results.status.phase, results.dir
        ))
        .into());
    }
    let mut stdout = std::io::stdout().lock();
    for (i, name) in reports.iter().enumerate() {
        let Some(text) = results.read(name)? else {
            continue;
        };
        if i > 0 {
            writeln!(stdout).context("writing to stdout")?;
        }
        writeln!(stdout, "==> {}/{name} <==", results.dir).context("writing to stdout")?;
        stdout.write_all(&text).context("writing to stdout")?;
        if !text.ends_with(b"\n") {
            writeln!(stdout).context("writing to stdout")?;
        }
    }
    Ok(())
}

fn copy(results: &Results, dir: &Path) -> Result<()> {
    let files = results.files()?;
    for name in &files {
        // git never stores `..` or absolute paths in a tree; checked anyway, since the
        // repository is written from another zone.
        let relative = Path::new(name);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            anyhow::bail!("refusing to copy `{name}`: not a plain relative path");
        }
        let Some(bytes) = results.read(name)? else {
            continue;
        };
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?;
    }
    eprintln!(
        "copied {} files from {}/ on {} to {}",
        files.len(),
        results.dir,
        results.rev,
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_up_answers_sort_by_their_turn_after_the_cluster_reports() {
        let mut files = vec!["turn-10.md", "hub.md", "turn-2.md", "a-cluster.md"];
        files.sort_by_key(|f| (turn_of(f), (*f).to_owned()));
        assert_eq!(files, ["a-cluster.md", "hub.md", "turn-2.md", "turn-10.md"]);
        assert_eq!(turn_of("turn-x.md"), 0);
    }
}
