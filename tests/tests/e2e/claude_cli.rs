//! The scripted model drives the real Claude Code CLI: a tool call it asks for really runs
//! under the CLI's own permission system, its output comes back as a `tool_result`, and the
//! final text becomes the CLI's `result`. Commands outside the read-only policy are refused
//! and reported in `permission_denials`; API errors and turn limits end the run as the runner
//! expects.
//!
//! Every run gets a fresh `HOME` and an empty working directory, and a clean environment, so
//! nothing from the machine (credentials, settings, a real `ANTHROPIC_BASE_URL`) leaks in.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use warroom_scripted_model::{Answer, Conversation, Script, ScriptedModel, ToolCall, Turn};
use warroom_testkit::tools;

/// Each run takes about a second; the bound only stops a hung CLI from hanging the suite.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// The strict read-only policy the runner uses (see /tmp/claude-cli-findings.md): only the
/// listed tools exist, nothing prompts, and Bash may only run `kubectl get`, plus what the
/// CLI itself classifies as read-only (`echo`, `pwd`, `date`, pipes into `grep`, ...).
const READ_ONLY_POLICY: &[&str] = &[
    "--permission-mode",
    "dontAsk",
    "--tools",
    "Bash,Read,Grep,Glob",
    "--allowedTools",
    "Bash(kubectl get:*)",
];

/// A fresh `HOME` and an empty working directory, removed on drop.
struct Sandbox {
    _dir: TempDir,
    home: PathBuf,
    work: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let home = dir.path().join("home");
        let work = dir.path().join("work");
        std::fs::create_dir(&home).expect("create HOME");
        std::fs::create_dir(&work).expect("create the working directory");
        Sandbox {
            _dir: dir,
            home,
            work,
        }
    }
}

/// What one headless CLI run printed.
struct CliRun {
    status: ExitStatus,
    events: Vec<Value>,
    stderr: String,
}

impl CliRun {
    /// The final `result` event; the run printed exactly one.
    fn result(&self) -> &Value {
        let results: Vec<&Value> = self
            .events
            .iter()
            .filter(|event| event["type"] == "result")
            .collect();
        assert_eq!(
            results.len(),
            1,
            "expected one result event; {}",
            self.describe()
        );
        results[0]
    }

    fn init(&self) -> &Value {
        self.events
            .iter()
            .find(|event| event["type"] == "system" && event["subtype"] == "init")
            .unwrap_or_else(|| panic!("no system/init event; {}", self.describe()))
    }

    fn describe(&self) -> String {
        let events: Vec<String> = self.events.iter().map(Value::to_string).collect();
        format!(
            "exit: {}\nstdout events:\n{}\nstderr:\n{}",
            self.status,
            events.join("\n"),
            self.stderr
        )
    }
}

/// Runs `claude -p <prompt> --output-format stream-json --verbose <args>` against `model` in
/// `sandbox`, to completion.
async fn run_claude(
    model: &ScriptedModel,
    sandbox: &Sandbox,
    prompt: &str,
    args: &[&str],
) -> CliRun {
    let mut command = tokio::process::Command::new(tools::claude());
    command
        .args(["-p", prompt, "--output-format", "stream-json", "--verbose"])
        .args(args)
        .current_dir(&sandbox.work)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", &sandbox.home)
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("ANTHROPIC_API_KEY", "test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        // Without this an API error is retried for minutes before the run ends.
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the CLI did not finish within {CLI_TIMEOUT:?}"))
        .expect("start the claude CLI");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let events = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("stream-json line is not JSON ({err}): {line}"))
        })
        .collect();
    CliRun {
        status: output.status,
        events,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A token no other run prints: the standard library's randomly keyed hasher, unseeded.
fn unique_token() -> String {
    format!("{:016x}", RandomState::new().build_hasher().finish())
}

#[tokio::test]
async fn cli_runs_a_scripted_bash_call_and_returns_the_final_text() {
    let output = format!("warroom-{}", unique_token());
    let final_text = "All pods healthy: the scripted model drove the CLI.";
    let model = ScriptedModel::start(Script::single(vec![
        Turn::bash(format!("echo {output}")),
        Turn::text(final_text),
    ]))
    .await
    .expect("start the scripted model");
    let sandbox = Sandbox::new();
    let prompt = "Are the pods on cluster proof healthy?";

    let run = run_claude(&model, &sandbox, prompt, READ_ONLY_POLICY).await;

    assert!(run.status.success(), "{}", run.describe());
    let result = run.result();
    assert_eq!(result["subtype"], "success", "{}", run.describe());
    assert_eq!(result["is_error"], false, "{}", run.describe());
    assert_eq!(result["result"], final_text, "{}", run.describe());
    assert_eq!(result["permission_denials"], serde_json::json!([]));
    assert!(
        result["total_cost_usd"].as_f64() > Some(0.0),
        "usage reached the CLI's cost: {result}"
    );
    let mut init_tools: Vec<&str> = run.init()["tools"]
        .as_array()
        .expect("init lists tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    init_tools.sort_unstable();
    assert_eq!(init_tools, ["Bash", "Glob", "Grep", "Read"]);

    // The model saw the prompt, then the command's real output as a successful tool result.
    let turns = model.turn_requests();
    assert_eq!(turns.len(), 2, "one request per scripted turn: {turns:#?}");
    assert!(
        turns[0].first_user_text().contains(prompt),
        "{}",
        turns[0].first_user_text()
    );
    assert!(
        turns[0]
            .system_text()
            .contains(&sandbox.work.display().to_string())
    );
    assert!(turns[0].tool_names().iter().any(|name| name == "Bash"));
    assert!(!turns[0].tool_names().iter().any(|name| name == "Write"));
    let results = model.tool_results();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0].content_text.trim(), output);
    assert!(!results[0].is_error, "{results:#?}");
}

#[tokio::test]
async fn cli_refuses_a_command_outside_the_policy() {
    let sandbox = Sandbox::new();
    // A write inside the working directory is as much outside a read-only policy as the
    // delete, and unlike the delete (there is no cluster) its effect would be visible.
    let marker = sandbox.work.join(format!("written-{}", unique_token()));
    let model = ScriptedModel::start(Script::single(vec![
        Turn::tools(vec![
            ToolCall::bash("kubectl delete pod x"),
            ToolCall::bash(format!("touch {}", marker.display())),
        ]),
        Turn::text("The delete was refused."),
    ]))
    .await
    .expect("start the scripted model");

    let run = run_claude(&model, &sandbox, "Delete pod x.", READ_ONLY_POLICY).await;

    // Refusals do not fail the run: they are only visible in permission_denials.
    assert!(run.status.success(), "{}", run.describe());
    let result = run.result();
    assert_eq!(result["subtype"], "success", "{}", run.describe());
    assert_eq!(result["result"], "The delete was refused.");
    let denials = result["permission_denials"]
        .as_array()
        .unwrap_or_else(|| panic!("permission_denials is an array: {result}"));
    let denied: Vec<(&str, &str)> = denials
        .iter()
        .map(|denial| {
            (
                denial["tool_name"].as_str().unwrap_or_default(),
                denial["tool_input"]["command"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let touch = format!("touch {}", marker.display());
    assert_eq!(
        denied,
        [("Bash", "kubectl delete pod x"), ("Bash", touch.as_str())]
    );
    assert!(!marker.exists(), "the refused command ran anyway");

    // The model got an error tool result for each refused call, under the same id.
    let results = model.tool_results();
    for denial in denials {
        let id = denial["tool_use_id"]
            .as_str()
            .expect("a denial names its tool_use_id");
        let seen = results
            .iter()
            .find(|result| result.tool_use_id == id)
            .unwrap_or_else(|| panic!("no tool result for denied call {id}: {results:#?}"));
        assert!(seen.is_error, "{seen:?}");
        assert!(seen.content_text.contains("denied"), "{seen:?}");
    }
}

#[tokio::test]
async fn cli_ends_at_once_on_an_api_error_without_retries() {
    let model = ScriptedModel::start(Script::single(vec![Turn::overloaded()]))
        .await
        .expect("start the scripted model");
    let sandbox = Sandbox::new();

    let run = run_claude(&model, &sandbox, "Anything.", READ_ONLY_POLICY).await;

    assert_eq!(run.status.code(), Some(1), "{}", run.describe());
    let result = run.result();
    // The CLI reports API errors with subtype success: is_error and the status tell.
    assert_eq!(result["is_error"], true, "{}", run.describe());
    assert_eq!(result["api_error_status"], 529, "{}", run.describe());
    assert_eq!(result["terminal_reason"], "api_error", "{}", run.describe());
    assert_eq!(
        model.turn_requests().len(),
        1,
        "CLAUDE_CODE_MAX_RETRIES=0 means no retry"
    );
}

#[tokio::test]
async fn cli_stops_a_looping_model_at_max_turns() {
    let script =
        Script::new().with(Conversation::new(vec![Turn::bash("echo again")]).repeat_last());
    let model = ScriptedModel::start(script)
        .await
        .expect("start the scripted model");
    let sandbox = Sandbox::new();
    let mut args = READ_ONLY_POLICY.to_vec();
    args.extend(["--max-turns", "2"]);

    let run = run_claude(&model, &sandbox, "Loop.", &args).await;

    assert_eq!(run.status.code(), Some(1), "{}", run.describe());
    let result = run.result();
    assert_eq!(result["subtype"], "error_max_turns", "{}", run.describe());
    assert_eq!(result["is_error"], true);
    let turns: Vec<Answer> = model
        .turn_requests()
        .into_iter()
        .map(|r| r.answer)
        .collect();
    assert_eq!(
        turns,
        [
            Answer::Turn {
                conversation: 0,
                turn: 0
            },
            Answer::Turn {
                conversation: 0,
                turn: 1
            },
        ]
    );
}

#[tokio::test]
async fn cli_fails_loudly_when_the_script_runs_out() {
    // The script ends with a tool call, so the CLI comes back for a turn that does not exist.
    let model = ScriptedModel::start(Script::single(vec![Turn::bash("echo one")]))
        .await
        .expect("start the scripted model");
    let sandbox = Sandbox::new();

    let run = run_claude(&model, &sandbox, "Anything.", READ_ONLY_POLICY).await;

    assert_eq!(run.status.code(), Some(1), "{}", run.describe());
    let result = run.result();
    assert_eq!(result["is_error"], true, "{}", run.describe());
    assert_eq!(result["api_error_status"], 400, "{}", run.describe());
    let text = result["result"].as_str().unwrap_or_default();
    assert!(
        text.contains("no turn 1"),
        "the script's message reaches the result: {text}"
    );
    assert!(
        model
            .requests()
            .iter()
            .any(|r| matches!(r.answer, Answer::Refused { status: 400, .. })),
        "{:#?}",
        model.requests()
    );
}

/// The first layer of redaction before the model, alone with the real CLI (no runner, no
/// proxy): `warroom-guard post-tool-use` registered as the `PostToolUse` hook replaces an
/// output that holds a secret, and the model receives only the redacted copy.
#[tokio::test]
async fn a_post_tool_use_hook_hands_the_model_the_redacted_output() {
    // The secret is in a file the tools read, never in anything the model writes.
    let secret = format!("Pg-pr0d-{}", unique_token());
    let sandbox = Sandbox::new();
    let file = sandbox.work.join("app.env");
    std::fs::write(&file, format!("db ready password={secret}\n")).expect("write app.env");
    let model = ScriptedModel::start(Script::single(vec![
        Turn::bash("cat app.env"),
        Turn::tool("Read", serde_json::json!({"file_path": file})),
        Turn::text("done"),
    ]))
    .await
    .expect("start the scripted model");
    let guard = tools::workspace_binary("warroom-guard");
    let settings = sandbox.home.join("hook-settings.json");
    let hook = serde_json::json!({
        "hooks": {"PostToolUse": [{
            "matcher": "*",
            "hooks": [{
                "type": "command",
                "command": format!("'{}' post-tool-use", guard.display()),
                "timeout": 10,
            }],
        }]},
    });
    std::fs::write(&settings, hook.to_string()).expect("write the settings");
    let settings = settings.display().to_string();
    let mut args = READ_ONLY_POLICY.to_vec();
    args.extend(["--settings", settings.as_str()]);

    let run = run_claude(&model, &sandbox, "Is the database up?", &args).await;

    assert!(run.status.success(), "{}", run.describe());
    let results = model.tool_results();
    assert_eq!(results.len(), 2, "{results:#?}");
    for result in &results {
        let seen = &result.content_text;
        assert!(
            seen.contains("db ready password=[REDACTED:") && !result.is_error,
            "the model got the redacted output: {result:#?}"
        );
    }
    for request in model.requests() {
        assert!(
            !request.body.to_string().contains(&secret),
            "the secret reached the model: {}",
            request.body
        );
    }
}
