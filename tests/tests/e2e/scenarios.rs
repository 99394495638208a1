//! The recorded incident scenarios of `tests/scenarios/`, each run through the real pipeline:
//! the real Claude Code CLI plays the scenario's scripted model turns, runs real Bash tool
//! calls under the real guard against a recorded `oc`/`kubectl` that answers from the
//! scenario's outputs for its cluster, and the runner checks the answer's evidence. Per
//! scenario the test asserts the report's structure, that every supported finding's quoted
//! lines are in the `audit.jsonl` line it links to, that the planted finding is marked
//! unsupported and counted, and that the expected runbook and commands are there.
//!
//! The scenarios are split into [`GROUPS`] tests; the scenarios of a group share one stack
//! (a runner per cluster, cluster names unique across scenarios) and run a few at a time, so
//! the suite costs a few stack starts and the CLI runs themselves.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;
use warroom_proto::report::AgentReport;
use warroom_proto::{AnswerForm, ClusterPhase, RequestPhase, RequestStatus, SynthesisPhase};
use warroom_scripted_model::{Conversation, Script, Turn};
use warroom_testkit::scenario::{self, Scenario, Scripted as _};
use warroom_testkit::wait_for;

use crate::harness::Pipeline;

/// The scenarios' requests in flight at once. Each cluster of a request is one CLI run, a
/// Node.js process; on a two-core machine a handful at a time finishes sooner than all.
const IN_FLIGHT: usize = 3;

/// How long a group waits for one of its running requests to finish (it takes seconds):
/// below the three minutes after which nextest ends a test (`.config/nextest.toml`), so that
/// a hung scenario fails with its name rather than being killed without it.
const WAIT_TIMEOUT: Duration = Duration::from_secs(150);

/// How often the remote is looked at while scenarios run; each look is a few git processes.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The requests' `timeout` in seconds: a run takes seconds, and a hung one ends as
/// `timed_out`, with its cluster in `status.json`, before [`WAIT_TIMEOUT`].
const REQUEST_TIMEOUT_SECS: u64 = 120;

fn load() -> Vec<Scenario> {
    scenario::load_all(&scenario::scenarios_dir()).unwrap_or_else(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{}", all.join("\n"))
    })
}

fn request_id(scenario: &Scenario) -> String {
    format!("scenario-{}", scenario.name)
}

/// Every scenario reads, checks (outputs for every scripted command, the expected runbook
/// and commands in the script, a planted finding, a valid synthesis) and answers in the
/// report's schema; there are at least 20 and they cover single and multi-cluster cases.
#[test]
fn every_scenario_is_well_formed() {
    let scenarios = load();
    assert!(
        scenarios.len() >= 20,
        "{} scenarios; the suite promises at least 20",
        scenarios.len()
    );
    let multi = scenarios
        .iter()
        .filter(|s| s.spec.clusters.len() > 1)
        .count();
    assert!(multi >= 3, "only {multi} multi-cluster scenarios");
    for scenario in &scenarios {
        for recording in &scenario.recordings {
            if let Err(e) = serde_json::from_value::<AgentReport>(recording.model_answer()) {
                panic!(
                    "scenario {}: {}.yaml: the answer is not an agent report: {e}",
                    scenario.name, recording.cluster
                );
            }
        }
    }
}

/// The scenarios are split into this many groups, each its own test on its own stack, so
/// that the test runner spreads them over the cores and no one test runs for long.
const GROUPS: usize = 4;

#[tokio::test(flavor = "multi_thread")]
async fn scenarios_replay_group_1_of_4() {
    replay_group(0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scenarios_replay_group_2_of_4() {
    replay_group(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scenarios_replay_group_3_of_4() {
    replay_group(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scenarios_replay_group_4_of_4() {
    replay_group(3).await;
}

/// Replays the scenarios whose place in the sorted list is `group` modulo [`GROUPS`] through
/// the real pipeline, a few at a time on one stack. `WARROOM_SCENARIO=<name>` replays only
/// that scenario (in its group), for working on one.
async fn replay_group(group: usize) {
    let started = Instant::now();
    let only = std::env::var("WARROOM_SCENARIO").ok();
    let scenarios: Vec<Scenario> = load()
        .into_iter()
        .enumerate()
        .filter(|(i, s)| i % GROUPS == group && only.as_ref().is_none_or(|o| *o == s.name))
        .map(|(_, s)| s)
        .collect();
    if scenarios.is_empty() {
        return;
    }
    let (pipeline, _answers) = stack_for(&scenarios, scenario::Scenario::conversations).await;
    let clusters: Vec<&String> = scenarios
        .iter()
        .flat_map(|s| s.recordings.iter().map(|r| &r.cluster))
        .collect();
    let statuses = run_all(&pipeline, &scenarios).await;
    let ran = started.elapsed();
    let mut failures = Vec::new();
    for scenario in &scenarios {
        let status = &statuses[&request_id(scenario)];
        let problems = check(&pipeline, scenario, status);
        if !problems.is_empty() {
            failures.push(format!(
                "scenario {} ({}):\n  - {}",
                scenario.name,
                scenario.dir.display(),
                problems.join("\n  - ")
            ));
        }
    }
    eprintln!(
        "group {}: {} scenarios ({} clusters) replayed in {:.1} s",
        group + 1,
        scenarios.len(),
        clusters.len(),
        ran.as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    pipeline.shutdown().await;
}

/// A synthesis that fails (here the model answers in prose, never in the synthesis's form)
/// never fails its request: the clusters' reports stand, `status.json` says why there is no
/// synthesis, and the README says so where the synthesis would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_synthesis_leaves_the_request_and_its_reports_standing() {
    let scenario = load()
        .into_iter()
        .find(|s| s.name == "multi-mirror-registry-down")
        .expect("the scenario exists");
    let (pipeline, _answers) = stack_for(std::slice::from_ref(&scenario), |scenario| {
        let mut conversations = scenario.conversations();
        conversations[0] = Conversation::new(vec![Turn::text(
            "The clusters look alike to me; I will not fill in a form.",
        )])
        .matching(format!(
            "{} {}\n",
            scenario::PROMPT_HEADING,
            scenario.request_id()
        ));
        conversations
    })
    .await;
    let statuses = run_all(&pipeline, std::slice::from_ref(&scenario)).await;
    let status = &statuses[&request_id(&scenario)];
    assert_eq!(status.phase, RequestPhase::Completed, "{status:#?}");
    let synthesis = status.synthesis.as_ref().expect("a synthesis line");
    assert_eq!(synthesis.phase, SynthesisPhase::Failed, "{synthesis:#?}");
    let error = synthesis.error.as_deref().unwrap_or_default();
    assert!(error.contains("synthesis"), "{error}");
    assert!(
        status
            .clusters
            .values()
            .all(|c| c.phase == ClusterPhase::Completed)
    );
    let readme = pipeline
        .result(&request_id(&scenario), "README.md")
        .expect("a README");
    assert!(
        readme.contains("> **No synthesis:** ")
            && readme.contains("The cluster reports below stand on their own."),
        "{readme}"
    );
    for cluster in &scenario.recordings {
        assert!(
            pipeline
                .result(&request_id(&scenario), &format!("{}.md", cluster.cluster))
                .is_some(),
            "{} has its report",
            cluster.cluster
        );
    }
    pipeline.shutdown().await;
}

/// A stack for `scenarios`: each cluster's runner answering from its recorded outputs, the
/// scripted model playing the conversations `script_of` gives for each scenario. The folder of
/// recorded answers lives as long as the returned guard.
async fn stack_for(
    scenarios: &[Scenario],
    script_of: impl Fn(&Scenario) -> Vec<Conversation>,
) -> (Pipeline, tempfile::TempDir) {
    let answers = tempfile::Builder::new()
        .prefix("warroom-scenarios-")
        .tempdir()
        .expect("create the answers folder");
    let bin = answers.path().join("bin");
    scenario::install_recorded_kubectl(&bin).expect("install the recorded kubectl");
    let mut runner_of = BTreeMap::new();
    let mut script = Script::new();
    let mut clusters = Vec::new();
    for scenario in scenarios {
        for recording in &scenario.recordings {
            let kubeconfig = recording
                .write_answers(&answers.path().join(&recording.cluster), &scenario.name)
                .expect("write the recorded answers");
            runner_of.insert(
                recording.cluster.clone(),
                vec!["--kubeconfig".to_owned(), kubeconfig.display().to_string()],
            );
            clusters.push(recording.cluster.clone());
        }
        for conversation in script_of(scenario) {
            script = script.with(conversation);
        }
    }
    let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let pipeline = Pipeline::start_with(&names, script, |options| {
        options.agent_path = vec![bin.clone()];
        options.extra_args.runner_of = runner_of;
        // Fewer, larger commits: every commit is several git processes, and twenty
        // scenarios write thousands of audit lines.
        options.extra_args.publisher = vec!["--batch-window".to_owned(), "1s".to_owned()];
    })
    .await;
    (pipeline, answers)
}

/// Pushes the scenarios' requests, at most [`IN_FLIGHT`] running at once, and returns each
/// one's final status by request id.
async fn run_all(pipeline: &Pipeline, scenarios: &[Scenario]) -> BTreeMap<String, RequestStatus> {
    let mut waiting: VecDeque<&Scenario> = scenarios.iter().collect();
    let mut running: Vec<String> = Vec::new();
    let mut done = BTreeMap::new();
    while !waiting.is_empty() || !running.is_empty() {
        let mut batch = Vec::new();
        while running.len() + batch.len() < IN_FLIGHT
            && let Some(scenario) = waiting.pop_front()
        {
            batch.push((
                request_id(scenario),
                scenario.request_yaml(REQUEST_TIMEOUT_SECS),
            ));
        }
        if !batch.is_empty() {
            let files: Vec<(&str, &str)> = batch
                .iter()
                .map(|(id, yaml)| (id.as_str(), yaml.as_str()))
                .collect();
            pipeline.push_requests(&files);
            running.extend(batch.into_iter().map(|(id, _)| id));
        }
        let mut last_look: Option<(Instant, String)> = None;
        let finished = wait_for(
            format!("one of {running:?} to reach a final phase"),
            WAIT_TIMEOUT,
            || {
                let due = last_look.as_ref().is_none_or(|(at, head)| {
                    at.elapsed() >= LOOK_EVERY && *head != pipeline.remote.head()
                });
                let found = due.then(|| {
                    last_look = Some((Instant::now(), pipeline.remote.head()));
                    final_statuses(pipeline, &running)
                });
                async move { found.filter(|f| !f.is_empty()) }
            },
        )
        .await;
        for status in finished {
            running.retain(|id| *id != status.id.as_str());
            done.insert(status.id.to_string(), status);
        }
    }
    done
}

/// The statuses among `ids` that are final, with every cluster report written.
fn final_statuses(pipeline: &Pipeline, ids: &[String]) -> Vec<RequestStatus> {
    ids.iter()
        .filter_map(|id| pipeline.status(id))
        .filter(|status| status.phase.is_final())
        .filter(|status| {
            status.clusters.iter().all(|(cluster, line)| {
                line.report.is_none()
                    || pipeline
                        .result(status.id.as_str(), &format!("{cluster}.md"))
                        .is_some()
            })
        })
        .collect()
}

/// Everything wrong with one scenario's results.
fn check(pipeline: &Pipeline, scenario: &Scenario, status: &RequestStatus) -> Vec<String> {
    let id = request_id(scenario);
    let mut problems = Vec::new();
    if status.phase != RequestPhase::Completed {
        problems.push(format!(
            "the request ended {} ({:?}), not completed",
            status.phase.as_str(),
            status.error
        ));
    }
    let audit = pipeline.audit(&id);
    for (spec, recording) in scenario.spec.clusters.iter().zip(&scenario.recordings) {
        let cluster = spec.name.as_str();
        let mut problem = |p: String| problems.push(format!("cluster {cluster}: {p}"));
        let Some(line) = status.clusters.get(cluster) else {
            problem("not in status.json".to_owned());
            continue;
        };
        if line.phase != ClusterPhase::Completed {
            problem(format!(
                "ended {}: {:?}",
                line.phase.as_str(),
                line.error.as_deref()
            ));
        }
        if line.answer != Some(AnswerForm::Structured) {
            problem(format!("answer is {:?}, not structured", line.answer));
        }
        let expected_runbook = Some(spec.expect.runbook.as_str()).filter(|r| *r != "none");
        if line.runbook.as_deref() != expected_runbook {
            problem(format!(
                "status.json says runbook {:?}, expected {expected_runbook:?}",
                line.runbook
            ));
        }
        let planted = recording.planted();
        let total = recording.findings().len();
        let counts = line.findings.unwrap_or_default();
        if (counts.supported as usize, counts.unsupported as usize)
            != (total - planted.len(), planted.len())
        {
            problem(format!(
                "status.json counts {} supported and {} unsupported findings; expected {} and {}",
                counts.supported,
                counts.unsupported,
                total - planted.len(),
                planted.len()
            ));
        }
        let ours: Vec<&Value> = audit.iter().filter(|e| e["cluster"] == cluster).collect();
        for event in &ours {
            if event["event"] == "tool_refused"
                || (event["event"] == "tool_result" && event["is_error"] == true)
            {
                problem(format!("a tool call failed or was refused: {event}"));
            }
        }
        for required in &spec.expect.commands {
            let ran = ours.iter().any(|e| {
                e["event"] == "tool_call" && e["input"]["command"].as_str() == Some(required)
            });
            if !ran {
                problem(format!("`{required}` is not in audit.jsonl"));
            }
        }
        match pipeline.result(&id, &format!("{cluster}.md")) {
            None => problem("has no report".to_owned()),
            Some(report) => {
                for p in check_report(&report, &audit, cluster, recording.findings(), &planted) {
                    problem(p);
                }
            }
        }
    }
    if let (Some(expected), Some(recording)) = (&scenario.spec.synthesis, &scenario.synthesis) {
        let readme = pipeline.result(&id, "README.md").unwrap_or_default();
        problems.extend(check_synthesis(status, &readme, expected, recording));
    }
    problems
}

/// Checks a multi-cluster request's synthesis: completed, its claims counted as planted, and
/// the README opening with it, naming the shared cause and the outlier in supported claims,
/// every supported claim's citations linked to the cluster reports and the planted claims
/// marked UNSUPPORTED.
fn check_synthesis(
    status: &RequestStatus,
    readme: &str,
    expected: &scenario::SynthesisSpec,
    recording: &scenario::SynthesisRecording,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(line) = &status.synthesis else {
        return vec!["status.json has no synthesis".to_owned()];
    };
    if line.phase != SynthesisPhase::Completed {
        problems.push(format!(
            "the synthesis ended {}: {:?}",
            line.phase.as_str(),
            line.error
        ));
    }
    let planted = recording.planted();
    let unsupported = planted.iter().filter(|p| **p).count();
    let counts = line.claims.unwrap_or_default();
    if (counts.supported as usize, counts.unsupported as usize)
        != (planted.len() - unsupported, unsupported)
    {
        problems.push(format!(
            "status.json counts {} supported and {} unsupported synthesis claims; expected {} \
             and {unsupported}",
            counts.supported,
            counts.unsupported,
            planted.len() - unsupported
        ));
    }
    let (Some(opening), Some(overview)) = (
        readme.find("## Synthesis across clusters"),
        readme.find("| Request |"),
    ) else {
        problems.push(format!(
            "the README has no synthesis or no overview:\n{readme}"
        ));
        return problems;
    };
    if opening > overview {
        problems.push("the README does not open with the synthesis".to_owned());
    }
    let claims: Vec<&str> = readme[opening..overview]
        .lines()
        .filter(|l| {
            l.split_once(". ")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        })
        .collect();
    if claims.len() != planted.len() {
        problems.push(format!(
            "the README shows {} synthesis claims, expected {}",
            claims.len(),
            planted.len()
        ));
    }
    for (claim, planted) in claims.iter().zip(&planted) {
        let marked = claim.contains("**UNSUPPORTED**");
        if marked != *planted {
            problems.push(format!(
                "synthesis claim {claim:?} is {}marked UNSUPPORTED",
                if marked { "" } else { "not " }
            ));
        }
    }
    let shared = format!("_shared cause_ ({})", expected.shared_by.join(", "));
    let outlier = format!("_outlier_ ({})", expected.outlier);
    for (what, needle) in [("shared cause", &shared), ("outlier", &outlier)] {
        if !claims
            .iter()
            .any(|c| c.contains("**Supported.**") && c.contains(needle.as_str()))
        {
            problems.push(format!(
                "no supported synthesis claim names the {what} as {needle:?}"
            ));
        }
    }
    for cluster in expected.shared_by.iter().chain([&expected.outlier]) {
        let link = format!("]({cluster}.md)");
        if !readme[opening..overview].contains(&link) {
            problems.push(format!("the synthesis links no finding of {cluster}"));
        }
    }
    problems
}

/// One finding as the cluster report renders it.
#[derive(Debug, Default)]
struct RenderedFinding {
    supported: bool,
    /// Per piece of evidence: its `audit.jsonl` line (1-based), when linked, and its quotes.
    evidence: Vec<(Option<usize>, Vec<String>)>,
}

/// Checks a cluster report: its summary, runbook and findings, every supported one's quotes
/// against the audit line it links to, the planted ones marked unsupported.
fn check_report(
    report: &str,
    audit: &[Value],
    cluster: &str,
    written: &[Value],
    planted: &[usize],
) -> Vec<String> {
    let mut problems = Vec::new();
    for section in ["## Summary", "## Findings", "| Runbook |", "Findings: "] {
        if !report.contains(section) {
            problems.push(format!("the report has no `{section}`:\n{report}"));
        }
    }
    let counted = format!(
        "Findings: {} supported, {} unsupported.",
        written.len() - planted.len(),
        planted.len()
    );
    if !report.contains(&counted) {
        problems.push(format!("the report does not say `{counted}`"));
    }
    let findings = rendered_findings(report);
    if findings.len() != written.len() {
        problems.push(format!(
            "the report shows {} findings, the answer had {}:\n{report}",
            findings.len(),
            written.len()
        ));
    }
    for (n, finding) in findings.iter().enumerate() {
        let number = n + 1;
        if planted.contains(&n) {
            if finding.supported {
                problems.push(format!(
                    "finding {number} is planted (fabricated evidence) but marked supported"
                ));
            }
            continue;
        }
        if !finding.supported {
            problems.push(format!(
                "finding {number} is marked unsupported, but its evidence was recorded:\n{report}"
            ));
            continue;
        }
        if finding.evidence.is_empty() {
            problems.push(format!(
                "supported finding {number} shows no evidence in the report:\n{report}"
            ));
        }
        for (line, quotes) in &finding.evidence {
            let Some(line) = line else {
                problems.push(format!(
                    "supported finding {number} has evidence without an audit.jsonl link"
                ));
                continue;
            };
            let event = audit.get(line - 1);
            let output = event
                .filter(|e| {
                    e["event"] == "tool_result" && e["is_error"] == false && e["cluster"] == cluster
                })
                .and_then(|e| e["output"].as_str());
            let Some(output) = output else {
                problems.push(format!(
                    "supported finding {number} links audit.jsonl line {line}, which is not a \
                     tool's output on this cluster: {event:?}"
                ));
                continue;
            };
            let lines: Vec<String> = output.lines().map(normalise).collect();
            for quote in quotes {
                if !lines.iter().any(|l| l.contains(&normalise(quote))) {
                    problems.push(format!(
                        "supported finding {number} quotes `{quote}`, which is not in the output \
                         on audit.jsonl line {line}"
                    ));
                }
            }
        }
    }
    problems
}

/// The findings of the report's `## Findings` section.
fn rendered_findings(report: &str) -> Vec<RenderedFinding> {
    let section = report
        .split("\n## Findings\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    let mut findings: Vec<RenderedFinding> = Vec::new();
    for line in section.lines() {
        if let Some((number, rest)) = line.split_once(". **")
            && number.parse::<usize>().is_ok()
        {
            findings.push(RenderedFinding {
                supported: rest.starts_with("Supported.**"),
                evidence: Vec::new(),
            });
        } else if let Some(call) = line.strip_prefix("   - ") {
            let link = call
                .split_once("(audit.jsonl#L")
                .and_then(|(_, rest)| rest.split_once(')'))
                .and_then(|(n, _)| n.parse().ok());
            if let Some(finding) = findings.last_mut() {
                finding.evidence.push((link, Vec::new()));
            }
        } else if let Some(quote) = line.strip_prefix("     - ")
            && let Some((_, quotes)) = findings.last_mut().and_then(|f| f.evidence.last_mut())
        {
            quotes.push(code_span(quote));
        }
    }
    findings
}

/// The text of a Markdown code span as the publisher writes it (a fence of backticks longer
/// than any run inside, padded with a space when the text starts or ends with one).
fn code_span(span: &str) -> String {
    let fence = span.len() - span.trim_start_matches('`').len();
    let inner = &span[fence..span.len().saturating_sub(fence).max(fence)];
    let padded = inner.len() >= 2 && inner.starts_with(' ') && inner.ends_with(' ');
    if padded {
        inner[1..inner.len() - 1].to_owned()
    } else {
        inner.to_owned()
    }
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
