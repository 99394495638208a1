//! `claude-warroom eval --live`: runs the recorded incident scenarios (`tests/scenarios/`)
//! against a real model and scores each run.
//!
//! The recorded `oc`/`kubectl` outputs still stand in for the clusters: every scenario's
//! clusters get a runner of the local stack (`warroom-dev up`, a process of its own, since
//! this command links no daemon) whose kubeconfig points at that cluster's recorded answers.
//! The requests go in as commits to a throwaway bare remote, exactly as an engineer's would,
//! and everything scored is read back from `results/<id>/` there: `status.json`,
//! `audit.jsonl` and the cluster reports. The root cause is judged by a model, through the
//! real Claude Code CLI without tools (`judge`); the other three scores are counted
//! (`score`).

mod judge;
mod score;
mod stack;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use warroom_proto::RequestStatus;
use warroom_scenario::Scenario;

use crate::eval::score::{ClusterScore, Report, ScenarioScore};

/// Exit code: every scenario ran, and at least one scored a failure.
const EXIT_SCORED_FAILURE: u8 = 1;
/// Exit code: `eval` without `--live`, which is the only mode there is.
const EXIT_USAGE: u8 = 2;

/// How often the remote is read while requests run.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long a request may take past its own `--timeout` (the stack's start, the pickup, the
/// publisher's last push) before the eval gives up on it.
const GRACE: Duration = Duration::from_secs(120);

/// Run the recorded incident scenarios against a real model and score each run.
///
/// Needs `--live` and ANTHROPIC_API_KEY (ANTHROPIC_BASE_URL is honoured): it spends real
/// tokens. Recorded `oc`/`kubectl` outputs still stand in for the clusters. Every scenario's
/// clusters get a runner of the local stack (`warroom-dev up`, found next to this executable
/// or on PATH), each with a kubeconfig that points at its cluster's recorded answers; the
/// requests are pushed to a throwaway remote and the results read back from it.
///
/// Each cluster is scored on four counts: the planted root cause found (a judge model reads
/// the report against the scenario's `expect.root_cause` facts; its prompt is
/// crates/cli/templates/judge-prompt.md), the expected runbook used, every
/// `expect.commands` entry in `audit.jsonl`, and no unsupported finding. A scenario passes
/// when its request completed and every cluster passes all four. Prints a table per scenario
/// and the totals; `--json` writes them too.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ANTHROPIC_API_KEY=... claude-warroom eval --live
  ANTHROPIC_API_KEY=... claude-warroom eval --live --only etcd-slow-disk,oauth-down \\
      --json eval.json --model claude-sonnet-4-5

Exit codes: 0 every scenario passed, 1 a scenario scored a failure (or an error), 2 without
--live or ANTHROPIC_API_KEY. The scenarios' format and how to add one: tests/scenarios/README.md.")]
pub struct Args {
    /// Run against the real model (ANTHROPIC_API_KEY). Required: a live run costs tokens, and
    /// the replay that costs nothing is the CI test suite (tests/scenarios/README.md).
    #[arg(long)]
    live: bool,

    /// The folder of scenarios: one sub-folder per scenario, with its `scenario.yaml`.
    #[arg(long, value_name = "DIR", default_value = "tests/scenarios")]
    scenarios: PathBuf,

    /// Only these scenarios (folder names), comma-separated.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    only: Vec<String>,

    /// Also write the scores as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// The model the agents use (the runners' --model); default: the Claude Code CLI's.
    #[arg(long)]
    model: Option<String>,

    /// The model the judge uses; default: --model, else the Claude Code CLI's.
    #[arg(long, value_name = "MODEL")]
    judge_model: Option<String>,

    /// Each request's investigation timeout.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// How many scenarios run at once (each cluster is one agent).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    parallel: u16,

    /// The Claude Code CLI, for the runners and the judge; default: WARROOM_CLAUDE_BIN, else
    /// `claude` on PATH.
    #[arg(long, value_name = "FILE")]
    claude_bin: Option<PathBuf>,

    /// Keep the work folder (the remote with every result, the stack's logs) and print where
    /// it is; it is removed otherwise.
    #[arg(long)]
    keep: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if !args.live {
        eprintln!(
            "error: `claude-warroom eval` runs the recorded scenarios against a real model and \
             spends tokens: say so with `--live` (it needs ANTHROPIC_API_KEY). The replay with \
             the scripted model, which costs nothing, is the test suite: see \
             tests/scenarios/README.md."
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    if !std::env::var("ANTHROPIC_API_KEY").is_ok_and(|k| !k.trim().is_empty()) {
        eprintln!(
            "error: `eval --live` needs ANTHROPIC_API_KEY (the runners and the judge call the \
             model with it; ANTHROPIC_BASE_URL is honoured)"
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let scenarios = load(&args.scenarios, &args.only)?;
    let claude = claude_bin(args.claude_bin.as_deref())?;
    let dev = crate::dev::find_binary().context(
        "`eval --live` runs the local stack `warroom-dev` (build it with `cargo build -p \
         warroom-dev`), next to `claude-warroom` or on PATH",
    )?;

    let work = tempfile::Builder::new()
        .prefix("warroom-eval-")
        .tempdir()
        .context("cannot create the work folder")?;
    let outcome = evaluate(&args, &scenarios, &claude, &dev, work.path());
    if args.keep || outcome.is_err() {
        let kept = work.keep();
        eprintln!("eval: the work folder is kept in {}", kept.display());
    }
    let report = outcome?;

    print!("{}", report.table());
    if let Some(file) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(file, text + "\n")
            .with_context(|| format!("cannot write --json {}", file.display()))?;
    }
    Ok(if report.totals.passed == report.totals.scenarios {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SCORED_FAILURE)
    })
}

/// Every scenario of `dir`, or those `only` names, checked.
fn load(dir: &Path, only: &[String]) -> Result<Vec<Scenario>> {
    let all = warroom_scenario::load_all(dir).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("--scenarios {}: {}", dir.display(), text.join("\n"))
    })?;
    if all.is_empty() {
        bail!(
            "--scenarios {}: no scenario (a folder with a scenario.yaml) there",
            dir.display()
        );
    }
    if let Some(unknown) = only.iter().find(|o| !all.iter().any(|s| s.name == **o)) {
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "--only {unknown}: no such scenario in {}; there are: {}",
            dir.display(),
            names.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|s| only.is_empty() || only.contains(&s.name))
        .collect())
}

/// The Claude Code CLI: `--claude-bin`, WARROOM_CLAUDE_BIN, or `claude` on PATH.
fn claude_bin(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("WARROOM_CLAUDE_BIN") {
        return Ok(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("claude"))
        .find(|p| p.is_file())
        .context(
            "the Claude Code CLI was not found: give --claude-bin, set WARROOM_CLAUDE_BIN, or put \
             `claude` on PATH",
        )
}

/// Runs every scenario on one local stack and scores it.
fn evaluate(
    args: &Args,
    scenarios: &[Scenario],
    claude: &Path,
    dev: &Path,
    work: &Path,
) -> Result<Report> {
    let remote = stack::Remote::create(work)?;
    let mut stack = stack::LocalStack::start(&stack::StackSetup {
        dev,
        claude,
        model: args.model.as_deref(),
        remote: &remote,
        scenarios,
        work,
    })?;
    eprintln!(
        "eval: the local stack runs {} scenario(s) against the model; its log is {}",
        scenarios.len(),
        stack.log().display()
    );
    let statuses = run_requests(args, scenarios, &remote, &mut stack);
    let stopped = stack.stop();
    let statuses = statuses?;
    stopped?;

    let judge = judge::Judge::new(
        claude,
        args.judge_model.as_deref().or(args.model.as_deref()),
        work,
    )?;
    let mut scores = Vec::new();
    for scenario in scenarios {
        let status = statuses.get(&scenario.request_id());
        scores.push(score_scenario(scenario, status, &remote, &judge)?);
    }
    Ok(Report::new(scores))
}

/// Pushes the scenarios' requests, at most `--parallel` running at once, and returns each
/// one's final status by request id; a request that is not final in time has none.
fn run_requests(
    args: &Args,
    scenarios: &[Scenario],
    remote: &stack::Remote,
    stack: &mut stack::LocalStack,
) -> Result<BTreeMap<String, RequestStatus>> {
    let mut waiting: VecDeque<&Scenario> = scenarios.iter().collect();
    let mut running: Vec<(String, Instant)> = Vec::new();
    let mut done = BTreeMap::new();
    let deadline_of = |pushed: Instant| pushed + args.timeout + GRACE;
    while !waiting.is_empty() || !running.is_empty() {
        while running.len() < usize::from(args.parallel)
            && let Some(scenario) = waiting.pop_front()
        {
            let id = scenario.request_id();
            remote.push_request(&id, &scenario.request_yaml(args.timeout.as_secs().max(1)))?;
            eprintln!("eval: {} pushed as request {id}", scenario.name);
            running.push((id, Instant::now()));
        }
        stack.check_running()?;
        let mut still = Vec::new();
        for (id, pushed) in running.drain(..) {
            match remote.final_status(&id)? {
                Some(status) => {
                    eprintln!("eval: {id} ended {}", status.phase.as_str());
                    done.insert(id, status);
                }
                None if Instant::now() > deadline_of(pushed) => {
                    eprintln!(
                        "eval: {id} is not final after its timeout and {GRACE:?}; scored as not run"
                    );
                }
                None => still.push((id, pushed)),
            }
        }
        running = still;
        if !running.is_empty() {
            std::thread::sleep(LOOK_EVERY);
        }
    }
    Ok(done)
}

/// Scores one scenario from its final status (none: it never finished) and its results.
fn score_scenario(
    scenario: &Scenario,
    status: Option<&RequestStatus>,
    remote: &stack::Remote,
    judge: &judge::Judge,
) -> Result<ScenarioScore> {
    let id = scenario.request_id();
    let audit = match status {
        Some(_) => remote.read(&format!("results/{id}/audit.jsonl"))?,
        None => None,
    };
    let audit = score::Audit::parse(audit.as_deref().unwrap_or_default());
    let mut clusters = Vec::new();
    for (spec, _) in scenario.clusters() {
        let line = status.and_then(|s| {
            s.clusters
                .iter()
                .find(|(name, _)| name.as_str() == spec.name)
                .map(|(_, line)| line)
        });
        let report = match line.and_then(|l| l.report.as_deref()) {
            Some(file) => remote.read(&format!("results/{id}/{file}"))?,
            None => None,
        };
        let verdict = match &report {
            Some(report) => judge.judge(scenario, spec, report),
            None => judge::Verdict::no_report(),
        };
        clusters.push(ClusterScore::new(spec, line, &audit, verdict));
    }
    Ok(ScenarioScore::new(scenario, status, clusters))
}
