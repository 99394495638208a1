//! The scores of `eval --live`: per cluster the four counts (root cause found, expected
//! runbook used, required commands in `audit.jsonl`, no unsupported finding), per scenario
//! whether it passed, and the totals; the table printed and the JSON written.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use warroom_proto::report::NO_RUNBOOK;
use warroom_proto::{ClusterStatus, RequestStatus};
use warroom_scenario::{ClusterSpec, Scenario};

use crate::eval::judge::Verdict;

/// The tool calls of one request's `audit.jsonl`: cluster and command.
pub struct Audit {
    calls: Vec<(String, String)>,
}

impl Audit {
    /// Reads the `tool_call` lines; a line that is not JSON is skipped (it cannot be a call).
    pub fn parse(text: &str) -> Audit {
        let calls = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["event"] == "tool_call")
            .filter_map(|event| {
                let cluster = event["cluster"].as_str()?.to_owned();
                let command = event["input"]["command"].as_str()?.to_owned();
                Some((cluster, command))
            })
            .collect();
        Audit { calls }
    }

    fn ran(&self, cluster: &str, command: &str) -> bool {
        self.calls
            .iter()
            .any(|(c, line)| c == cluster && line.trim() == command)
    }
}

/// One cluster's scores.
#[derive(Debug, Serialize)]
pub struct ClusterScore {
    pub cluster: String,
    /// The cluster's final phase, or `not_run` when the request never finished.
    pub phase: String,
    pub root_cause: Verdict,
    pub runbook: RunbookScore,
    pub commands: CommandsScore,
    pub findings: FindingsScore,
    /// All four passed.
    pub passed: bool,
}

#[derive(Debug, Serialize)]
pub struct RunbookScore {
    pub expected: String,
    /// What `status.json` says the agent followed (`none` when it names none).
    pub used: Option<String>,
    pub passed: bool,
}

#[derive(Debug, Serialize)]
pub struct CommandsScore {
    pub required: usize,
    /// The required commands that are not a tool call of this cluster in `audit.jsonl`.
    pub missing: Vec<String>,
    pub passed: bool,
}

#[derive(Debug, Serialize)]
pub struct FindingsScore {
    /// `None` when there was no structured report to count.
    pub supported: Option<u32>,
    pub unsupported: Option<u32>,
    /// A structured report with no unsupported finding.
    pub passed: bool,
}

impl ClusterScore {
    pub fn new(
        spec: &ClusterSpec,
        line: Option<&ClusterStatus>,
        audit: &Audit,
        root_cause: Verdict,
    ) -> ClusterScore {
        let expected = spec.expect.runbook.clone();
        let used = line.map(|l| l.runbook.clone().unwrap_or_else(|| NO_RUNBOOK.to_owned()));
        let runbook = RunbookScore {
            passed: used.as_deref() == Some(expected.as_str()),
            expected,
            used,
        };
        let missing: Vec<String> = spec
            .expect
            .commands
            .iter()
            .filter(|c| !audit.ran(&spec.name, c))
            .cloned()
            .collect();
        let commands = CommandsScore {
            required: spec.expect.commands.len(),
            passed: missing.is_empty(),
            missing,
        };
        let counts = line.and_then(|l| l.findings);
        let findings = FindingsScore {
            supported: counts.map(|c| c.supported),
            unsupported: counts.map(|c| c.unsupported),
            passed: counts.is_some_and(|c| c.unsupported == 0),
        };
        let passed =
            root_cause.found == Some(true) && runbook.passed && commands.passed && findings.passed;
        ClusterScore {
            cluster: spec.name.clone(),
            phase: line.map_or("not_run", |l| l.phase.as_str()).to_owned(),
            root_cause,
            runbook,
            commands,
            findings,
            passed,
        }
    }
}

/// One scenario's scores.
#[derive(Debug, Serialize)]
pub struct ScenarioScore {
    pub scenario: String,
    pub request: String,
    /// The request's final phase, or `not_run` when it did not end in time.
    pub phase: String,
    /// What the agents' runs cost, in US dollars, as `status.json` reports it.
    pub cost_usd: f64,
    pub clusters: Vec<ClusterScore>,
    /// The request completed and every cluster passed.
    pub passed: bool,
}

impl ScenarioScore {
    pub fn new(
        scenario: &Scenario,
        status: Option<&RequestStatus>,
        clusters: Vec<ClusterScore>,
    ) -> ScenarioScore {
        let completed = status.is_some_and(|s| s.phase == warroom_proto::RequestPhase::Completed);
        ScenarioScore {
            scenario: scenario.name.clone(),
            request: scenario.request_id(),
            phase: status.map_or("not_run", |s| s.phase.as_str()).to_owned(),
            cost_usd: status.map_or(0.0, |s| {
                warroom_proto::total_cost(s.clusters.values().filter_map(|c| c.cost_usd))
            }),
            passed: completed && clusters.iter().all(|c| c.passed),
            clusters,
        }
    }
}

/// Every scenario's scores and the totals.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenarios: Vec<ScenarioScore>,
    pub totals: Totals,
}

/// The totals: scenarios passed, and per score the clusters that passed it.
#[derive(Debug, Serialize)]
pub struct Totals {
    pub scenarios: usize,
    pub passed: usize,
    pub clusters: usize,
    pub root_cause_found: usize,
    pub runbook_used: usize,
    pub commands_present: usize,
    pub no_unsupported: usize,
    pub cost_usd: f64,
}

impl Report {
    pub fn new(scenarios: Vec<ScenarioScore>) -> Report {
        let clusters = || scenarios.iter().flat_map(|s| &s.clusters);
        let count = |pass: fn(&ClusterScore) -> bool| clusters().filter(|c| pass(c)).count();
        let totals = Totals {
            scenarios: scenarios.len(),
            passed: scenarios.iter().filter(|s| s.passed).count(),
            clusters: clusters().count(),
            root_cause_found: count(|c| c.root_cause.found == Some(true)),
            runbook_used: count(|c| c.runbook.passed),
            commands_present: count(|c| c.commands.passed),
            no_unsupported: count(|c| c.findings.passed),
            cost_usd: warroom_proto::total_cost(scenarios.iter().map(|s| s.cost_usd)),
        };
        Report { scenarios, totals }
    }

    /// A table per scenario, a line per cluster, then the totals.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for scenario in &self.scenarios {
            let _ = writeln!(
                out,
                "scenario {} ({}): {}, {}, ${:.2}",
                scenario.scenario,
                scenario.request,
                scenario.phase,
                if scenario.passed { "PASS" } else { "FAIL" },
                scenario.cost_usd
            );
            let _ = writeln!(
                out,
                "  {:<28} {:<12} {:<26} {:<9} unsupported",
                "cluster", "root cause", "runbook (expected)", "commands"
            );
            for cluster in &scenario.clusters {
                let root = format!(
                    "{}{}",
                    mark(cluster.root_cause.found == Some(true)),
                    match cluster.root_cause.found {
                        Some(true) => "found",
                        Some(false) => "not found",
                        None => "no verdict",
                    }
                );
                let runbook = format!(
                    "{}{} ({})",
                    mark(cluster.runbook.passed),
                    cluster.runbook.used.as_deref().unwrap_or("-"),
                    cluster.runbook.expected
                );
                let commands = format!(
                    "{}{}/{}",
                    mark(cluster.commands.passed),
                    cluster.commands.required - cluster.commands.missing.len(),
                    cluster.commands.required
                );
                let unsupported = cluster
                    .findings
                    .unsupported
                    .map_or("-".to_owned(), |n| n.to_string());
                let _ = writeln!(
                    out,
                    "  {:<28} {:<12} {:<26} {:<9} {}{}",
                    cluster.cluster,
                    root,
                    runbook,
                    commands,
                    mark(cluster.findings.passed),
                    unsupported
                );
                let _ = writeln!(out, "    judge: {}", cluster.root_cause.reason);
                for command in &cluster.commands.missing {
                    let _ = writeln!(out, "    missing: {command}");
                }
            }
            out.push('\n');
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "totals: {}/{} scenarios passed; clusters ({}): root cause found {}, runbook used \
             {}, commands present {}, no unsupported finding {}; ${:.2}",
            t.passed,
            t.scenarios,
            t.clusters,
            t.root_cause_found,
            t.runbook_used,
            t.commands_present,
            t.no_unsupported,
            t.cost_usd
        );
        out
    }
}

/// `✓ ` or `✗ ` before a score, so that a failure stands out in the table.
fn mark(passed: bool) -> &'static str {
    if passed { "✓ " } else { "✗ " }
}
