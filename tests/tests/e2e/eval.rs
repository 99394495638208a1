//! `claude-warroom eval --live` run for real, without a key: ANTHROPIC_BASE_URL points the
//! stack's runners and the judge at the scripted model, which plays two scenarios' agents and
//! the judge's verdicts. Everything else is what a live run does: the real `claude-warroom`,
//! the real `warroom-dev up` it starts, the real Claude Code CLI for the agents and the judge,
//! the recorded `oc`/`kubectl` per cluster, and the scores read back from the remote.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use warroom_scripted_model::{Conversation, Script, ScriptedModel, Turn};
use warroom_testkit::scenario::{self, Scenario};
use warroom_testkit::tools;

/// Scored as a pass: the agent answers without the planted finding, the judge says found.
const PASSING: &str = "etcd-slow-disk";
/// Scored as a failure on two counts: the planted finding comes out unsupported and the
/// judge says the root cause was not found.
const FAILING: &str = "oauth-down";

fn load(name: &str) -> Scenario {
    Scenario::load(&scenario::scenarios_dir().join(name))
        .unwrap_or_else(|e| panic!("scenario {name}: {e}"))
}

/// The agent's conversation of a one-cluster scenario; `honest` drops the planted findings
/// from its answer, so that every finding checks out.
fn agent(scenario: &Scenario, honest: bool) -> Conversation {
    let recording = &scenario.recordings[0];
    let mut turns = scenario::turns(recording);
    if honest {
        let mut answer = recording.model_answer();
        let planted = recording.planted();
        if let Some(findings) = answer["findings"].as_array_mut() {
            let kept: Vec<Value> = findings
                .iter()
                .enumerate()
                .filter(|(n, _)| !planted.contains(n))
                .map(|(_, f)| f.clone())
                .collect();
            *findings = kept;
        }
        turns.pop();
        turns.push(Turn::structured(answer));
    }
    Conversation::new(turns).matching(format!("- Cluster: {} (", recording.cluster))
}

/// The judge's verdict on the one cluster of `scenario`.
fn judge(scenario: &Scenario, found: bool) -> Conversation {
    let spec = &scenario.spec.clusters[0];
    let facts: Vec<Value> = spec
        .expect
        .root_cause
        .iter()
        .map(|fact| json!({"fact": fact, "established": found, "why": "scripted verdict"}))
        .collect();
    let reason = if found {
        "The report establishes every fact."
    } else {
        "The report names another cause."
    };
    Conversation::new(vec![Turn::structured(
        json!({"found": found, "facts": facts, "reason": reason}),
    )])
    .matching(format!(
        "Judge the investigation of cluster `{}`",
        spec.name
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_live_scores_each_scenario_and_writes_the_totals() {
    let (passing, failing) = (load(PASSING), load(FAILING));
    // The judges first: a report quoted in a judge's prompt must not be taken for an agent's.
    let script = Script::new()
        .with(judge(&passing, true))
        .with(judge(&failing, false))
        .with(agent(&passing, true))
        .with(agent(&failing, false));
    let model = ScriptedModel::start(script)
        .await
        .expect("start the scripted model");
    let work = tempfile::tempdir().expect("a temporary folder");
    let json_file = work.path().join("eval.json");

    let mut command = Command::new(tools::workspace_binary("claude-warroom"));
    command
        .args(["eval", "--live", "--scenarios"])
        .arg(scenario::scenarios_dir())
        .args(["--only", &format!("{PASSING},{FAILING}")])
        .arg("--json")
        .arg(&json_file)
        .args(["--timeout", "90s", "--parallel", "2"])
        .arg("--claude-bin")
        .arg(tools::claude())
        .current_dir(work.path())
        .env("ANTHROPIC_API_KEY", "dummy")
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("WARROOM_NATS_SERVER_BIN", tools::nats_server())
        .env_remove("WARROOM_MODEL");
    // `eval` bounds its own wait by --timeout; this only keeps a broken build from hanging.
    let output = tokio::time::timeout(
        Duration::from_secs(170),
        tokio::process::Command::from(command).output(),
    )
    .await
    .expect("eval ended in time")
    .expect("run claude-warroom eval");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "one scenario fails its scores, so eval exits 1\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).expect("eval wrote --json"))
            .expect("--json is JSON");
    let scenario = |name: &str| -> &Value {
        report["scenarios"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["scenario"] == name))
            .unwrap_or_else(|| panic!("{name} is not in the JSON: {report:#}"))
    };
    let (good, bad) = (scenario(PASSING), scenario(FAILING));
    let context = format!("{report:#}\nstderr:\n{stderr}");
    assert_eq!(good["phase"], "completed", "{context}");
    assert_eq!(good["passed"], true, "{context}");
    let cluster = &good["clusters"][0];
    assert_eq!(cluster["root_cause"]["found"], true, "{context}");
    assert_eq!(cluster["runbook"]["passed"], true, "{context}");
    assert_eq!(cluster["commands"]["missing"], json!([]), "{context}");
    assert_eq!(cluster["findings"]["unsupported"], 0, "{context}");

    assert_eq!(bad["phase"], "completed", "{context}");
    assert_eq!(bad["passed"], false, "{context}");
    let cluster = &bad["clusters"][0];
    assert_eq!(cluster["root_cause"]["found"], false, "{context}");
    assert_eq!(
        cluster["root_cause"]["reason"],
        "The report names another cause."
    );
    assert_eq!(cluster["runbook"]["passed"], true, "{context}");
    assert_eq!(cluster["commands"]["passed"], true, "{context}");
    assert_eq!(cluster["findings"]["unsupported"], 1, "{context}");
    assert_eq!(cluster["findings"]["passed"], false, "{context}");

    assert_eq!(
        report["totals"],
        json!({
            "scenarios": 2, "passed": 1, "clusters": 2, "root_cause_found": 1,
            "runbook_used": 2, "commands_present": 2, "no_unsupported": 1,
            "cost_usd": report["totals"]["cost_usd"],
        }),
        "{context}"
    );
    for line in [
        format!("scenario {PASSING} (scenario-{PASSING}): completed, PASS"),
        format!("scenario {FAILING} (scenario-{FAILING}): completed, FAIL"),
        "judge: The report names another cause.".to_owned(),
        "totals: 1/2 scenarios passed; clusters (2): root cause found 1".to_owned(),
    ] {
        assert!(
            stdout.contains(&line),
            "the table lacks `{line}`:\n{stdout}"
        );
    }
}

/// Without `--live`, or without a key, `eval` says what it needs and exits 2 before
/// starting anything.
#[test]
fn eval_without_live_or_a_key_says_what_it_needs() {
    let run = |args: &[&str], key: Option<&str>| {
        let mut command = Command::new(tools::workspace_binary("claude-warroom"));
        command.args(args).env_remove("ANTHROPIC_API_KEY");
        if let Some(key) = key {
            command.env("ANTHROPIC_API_KEY", key);
        }
        command.output().expect("run claude-warroom eval")
    };
    let without_live = run(&["eval"], Some("dummy"));
    assert_eq!(without_live.status.code(), Some(2), "{without_live:?}");
    let said = String::from_utf8_lossy(&without_live.stderr);
    assert!(
        said.contains("--live") && said.contains("real model"),
        "{said}"
    );

    let without_key = run(&["eval", "--live"], None);
    assert_eq!(without_key.status.code(), Some(2), "{without_key:?}");
    let said = String::from_utf8_lossy(&without_key.stderr);
    assert!(said.contains("ANTHROPIC_API_KEY"), "{said}");
}
