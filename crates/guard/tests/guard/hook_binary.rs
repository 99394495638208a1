//! Runs the built `warroom-guard` binary as the Claude Code CLI does: hook JSON on stdin, the
//! decision on stdout, exit code 0.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Run {
    status: i32,
    output: Value,
    stderr: String,
}

fn run(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warroom-guard"))
        .args(args)
        .env_remove("WARROOM_GUARD_CONFIG")
        .env_remove("WARROOM_GUARD_WORKSPACE")
        .env_remove("WARROOM_GUARD_DECISIONS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("no stdin"))
        .write_all(stdin.as_bytes())
        .unwrap_or_else(|e| panic!("stdin: {e}"));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    Run {
        status: out.status.code().unwrap_or(-1),
        output: serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout {stdout:?}: {e}")),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn bash(cwd: &Path, command: &str) -> String {
    json!({
        "session_id": "s-1",
        "transcript_path": "/tmp/t.jsonl",
        "cwd": cwd,
        "permission_mode": "dontAsk",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "list pods"},
        "tool_use_id": "toolu_1"
    })
    .to_string()
}

fn decision(run: &Run) -> (&str, &str) {
    let out = &run.output["hookSpecificOutput"];
    assert_eq!(out["hookEventName"], "PreToolUse", "{}", run.output);
    (
        out["permissionDecision"].as_str().unwrap_or_default(),
        out["permissionDecisionReason"].as_str().unwrap_or_default(),
    )
}

#[test]
fn allows_a_read_only_command() {
    let ws = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        &[],
        &bash(ws.path(), "kubectl get pods -A | grep -v Running"),
    );
    assert_eq!(run.status, 0);
    assert_eq!(decision(&run).0, "allow", "{}", run.output);
}

#[test]
fn denies_with_rule_and_reason() {
    let ws = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = run(
        &[],
        &bash(ws.path(), "kubectl get SeCrEtS -n openshift-config"),
    );
    assert_eq!(run.status, 0);
    let (d, reason) = decision(&run);
    assert_eq!(d, "deny");
    assert!(
        reason.starts_with(
            "[kubectl.refused-kind] `kubectl get SeCrEtS` is refused: Secrets carry credentials"
        ),
        "{reason}"
    );
}

#[test]
fn malformed_stdin_is_denied_with_exit_zero() {
    for stdin in [
        "",
        "not json",
        "{}",
        "[1,2]",
        "{\"tool_name\": 5}",
        "\u{0}\u{ff}",
    ] {
        let run = run(&[], stdin);
        assert_eq!(run.status, 0, "{stdin:?}: {}", run.stderr);
        let (d, reason) = decision(&run);
        assert_eq!(d, "deny", "{stdin:?}");
        assert!(
            reason.starts_with("[hook.malformed-input]"),
            "{stdin:?}: {reason}"
        );
    }
}

#[test]
fn bad_config_and_bad_arguments_deny_everything() {
    let ws = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = ws.path().join("guard.yaml");
    std::fs::write(&config, "programs:\n  - name: /bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
    let config = config.to_string_lossy().to_string();
    let run_cfg = run(&["--config", &config], &bash(ws.path(), "kubectl get pods"));
    assert_eq!(run_cfg.status, 0);
    let (d, reason) = decision(&run_cfg);
    assert_eq!(d, "deny");
    assert!(
        reason.contains("programs[0].name") && reason.contains("guard.yaml"),
        "{reason}"
    );

    let run_args = run(&["--no-such-flag"], &bash(ws.path(), "kubectl get pods"));
    assert_eq!(run_args.status, 0);
    assert_eq!(decision(&run_args).0, "deny");
}

#[test]
fn workspace_flag_overrides_cwd_and_decisions_are_appended() {
    let ws = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(ws.path().join("pods.json"), "{}").unwrap_or_else(|e| panic!("{e}"));
    let log = ws.path().join("decisions.jsonl");
    let log_arg = log.to_string_lossy().to_string();
    let ws_arg = ws.path().to_string_lossy().to_string();

    // The hook's cwd is `other`, but --workspace says the workspace is `ws`.
    let first = run(
        &["--workspace", &ws_arg, "--decisions", &log_arg],
        &bash(other.path(), "jq . pods.json"),
    );
    assert_eq!(decision(&first).0, "allow", "{}", first.output);
    let second = run(
        &["--decisions", &log_arg],
        &bash(ws.path(), "kubectl exec -it x -- sh"),
    );
    assert_eq!(decision(&second).0, "deny");
    let third = run(&["--decisions", &log_arg], "garbage");
    assert_eq!(decision(&third).0, "deny");

    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["tool"], "Bash");
    assert_eq!(lines[0]["input"], "jq . pods.json");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["session_id"], "s-1");
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[1]["rule"], "kubectl.verb");
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("exec")
    );
    assert_eq!(lines[2]["rule"], "hook.malformed-input");
    assert_eq!(lines[2]["input"], "garbage");
    for line in &lines {
        let time = line["time"].as_str().unwrap_or_default();
        assert!(time.len() >= 20 && time.contains('T'), "{time}");
    }
}

#[test]
fn env_vars_configure_the_binary() {
    let ws = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/guard.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_warroom-guard"))
        .env("WARROOM_GUARD_CONFIG", &example)
        .env_remove("WARROOM_GUARD_WORKSPACE")
        .env_remove("WARROOM_GUARD_DECISIONS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(
                    bash(ws.path(), "oc adm node-logs node-1 --unit=kubelet").as_bytes(),
                )?;
            }
            child.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        output["hookSpecificOutput"]["permissionDecision"], "allow",
        "{output}"
    );
}

#[test]
fn non_bash_tools_through_the_binary() {
    let ws = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let input = |tool: &str, tool_input: Value| {
        json!({"session_id": "s", "cwd": ws.path(), "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input}).to_string()
    };
    let write = run(
        &[],
        &input(
            "Write",
            json!({"file_path": ws.path().join("report.md"), "content": "x"}),
        ),
    );
    assert_eq!(decision(&write).0, "allow");
    let read = run(&[], &input("Read", json!({"file_path": "/etc/shadow"})));
    assert_eq!(decision(&read).0, "deny");
    let fetch = run(&[], &input("WebFetch", json!({"url": "http://x"})));
    assert_eq!(decision(&fetch).0, "deny");
}

/// `case` nested `depth` levels around a plain command, each last item without its `;;`:
/// valid bash, and exponential for brush-parser (measured here: 8 levels 0.1 s, 10 levels
/// 0.5 s, 12 levels 2.5 s; 20 levels would take many minutes).
pub fn nested_case(depth: usize) -> String {
    format!(
        "{}kubectl get pods{}",
        "case a in a) ".repeat(depth),
        " esac".repeat(depth)
    )
}

/// Runs the binary on `stdin` and returns its stdout, or fails the test when it has not
/// finished within `deadline` (the child is killed then).
fn run_within(stdin: &str, deadline: Duration) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warroom-guard"))
        .env_remove("WARROOM_GUARD_CONFIG")
        .env_remove("WARROOM_GUARD_WORKSPACE")
        .env_remove("WARROOM_GUARD_DECISIONS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let mut stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("no stdin"))
        .write_all(stdin.as_bytes())
        .unwrap_or_else(|e| panic!("stdin: {e}"));
    let (tx, rx) = mpsc::channel();
    // Reading stdout to its end finishes when the process has exited (or closed it).
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let started = Instant::now();
    let Ok(out) = rx.recv_timeout(deadline) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the guard did not answer within {deadline:?}");
    };
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(status.success(), "exit status {status}");
    println!("answered in {:?}", started.elapsed());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout {out:?}: {e}"))
}

#[test]
fn deeply_nested_case_is_denied_in_bounded_time() {
    let ws = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for depth in [20, 24, 28] {
        let command = nested_case(depth);
        assert!(command.len() < 700, "{} bytes", command.len());
        let output = run_within(&bash(ws.path(), &command), Duration::from_secs(5));
        let out = &output["hookSpecificOutput"];
        assert_eq!(out["permissionDecision"], "deny", "depth {depth}: {output}");
        assert!(
            out["permissionDecisionReason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("[shell.too-deep]"),
            "depth {depth}: {output}"
        );
    }
}

#[test]
fn the_deadline_leaves_a_stuck_decision_behind() {
    let (_keep, never) = mpsc::channel::<()>();
    let started = Instant::now();
    // The work waits on a channel nobody sends on: it never finishes by itself.
    let stuck = warroom_guard::cli::run_with_deadline(Duration::from_millis(100), move || {
        never.recv().is_ok()
    });
    assert_eq!(stuck, None);
    assert!(started.elapsed() < Duration::from_secs(5));
    let quick = warroom_guard::cli::run_with_deadline(Duration::from_secs(60), || 42);
    assert_eq!(quick, Some(42));
    assert!(warroom_guard::DECISION_DEADLINE <= Duration::from_secs(2));
}
