//! Runs the built binary's `post-tool-use` mode as the Claude Code CLI runs a `PostToolUse`
//! hook: the tool's output on stdin, the redacted replacement (or nothing) on stdout, exit 0.
//! This is the first layer of redaction before the model, on its own.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn run(stdin: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warroom-guard"))
        .arg("post-tool-use")
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
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn bash_output(stdout: &str) -> String {
    json!({
        "session_id": "s-1",
        "cwd": "/ws",
        "hook_event_name": "PostToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": "kubectl get cm app -o yaml"},
        "tool_response": {
            "stdout": stdout,
            "stderr": "",
            "interrupted": false,
            "isImage": false,
            "noOutputExpected": false
        },
        "tool_use_id": "toolu_1"
    })
    .to_string()
}

#[test]
fn a_secret_in_a_bash_output_is_replaced_for_the_model() {
    let password = ["Pg", "-pr0d-", "Hunter", "77x"].concat();
    let (status, stdout) = run(&bash_output(&format!(
        "ready=true\npassword={password}\nAuthorization: Bearer {password}abc\n"
    )));
    assert_eq!(status, 0);
    let answer: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout {stdout:?}: {e}"));
    let hook = &answer["hookSpecificOutput"];
    assert_eq!(hook["hookEventName"], "PostToolUse");
    let output = &hook["updatedToolOutput"];
    let text = output["stdout"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("ready=true\npassword=[REDACTED:"),
        "{text}"
    );
    assert!(!stdout.contains(&password), "{stdout}");
    assert_eq!(output["isImage"], false);
    assert_eq!(output["stderr"], "");
}

#[test]
fn a_clean_output_is_left_alone_and_bad_input_is_withheld() {
    let (status, stdout) = run(&bash_output("NAME READY\nx 1/1\n"));
    assert_eq!((status, stdout.as_str()), (0, ""));

    let (status, stdout) = run("{\"tool_response\": ");
    assert_eq!(status, 0);
    let answer: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout {stdout:?}: {e}"));
    let text = answer["hookSpecificOutput"]["updatedToolOutput"]["stdout"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("withheld"), "{text}");
}
