//! The hook's command line: what the `warroom-guard` binary runs, as a library function so
//! that another binary (the local stack's `warroom-dev`, started under the name
//! `warroom-guard`) can be the guard too. It reads one hook JSON object on stdin, prints the
//! decision and always exits 0, because a failing hook may let the call through: every
//! failure, a bad config included, becomes a deny with its reason.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use crate::hook::{DecisionRecord, HookOutput, decide};
use crate::{DECISION_DEADLINE, Decision, Guard};
use clap::Parser;

/// Decides one Claude Code tool call (PreToolUse hook): reads the hook JSON on stdin and prints
/// an allow or deny decision.
#[derive(Debug, Parser)]
#[command(name = "warroom-guard", version)]
struct Args {
    /// Guard configuration (YAML) extending the built-in rules.
    #[arg(long, env = "WARROOM_GUARD_CONFIG")]
    config: Option<PathBuf>,
    /// The task workspace; defaults to the hook input's `cwd`.
    #[arg(long, env = "WARROOM_GUARD_WORKSPACE")]
    workspace: Option<PathBuf>,
    /// Appends one JSON line per decision to this file.
    #[arg(long, env = "WARROOM_GUARD_DECISIONS")]
    decisions: Option<PathBuf>,
}

/// Stdin beyond this is not a tool call the guard reads (commands are capped far lower).
const MAX_INPUT: u64 = 1024 * 1024;

/// Runs the hook: parses the process's arguments, decides the call on stdin, prints the
/// answer.
pub fn main() {
    // `warroom-guard post-tool-use`: the PostToolUse hook, which redacts a tool's output.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "post-tool-use")
    {
        crate::post_tool_use::main();
    }
    // Argument errors must not end in clap's exit code 2: a failing hook may not block the
    // call, so they are answered with a deny like everything else.
    let args = Args::try_parse();
    if let Err(err) = &args
        && matches!(
            err.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
        )
    {
        let _ = err.print();
        return;
    }

    // Stdin is read before anything can refuse, so the CLI can always write the whole tool
    // call and never sees a broken pipe.
    let mut stdin = String::new();
    let read = std::io::stdin().take(MAX_INPUT).read_to_string(&mut stdin);

    let args = match args {
        Ok(args) => args,
        Err(err) => {
            answer(&Decision::deny(
                "hook.bad-arguments",
                format!(
                    "the guard was started with invalid arguments: {}",
                    err.to_string().lines().next().unwrap_or_default()
                ),
            ));
            return;
        }
    };

    // The decision runs on a worker thread under a deadline: a hook that outlives the CLI's
    // hook timeout lets the call through, so an input that makes any part of the guard slow
    // (brush-parser is exponential in some nestings) is refused when the deadline passes,
    // and the process exits with the worker still running.
    let config = args.config.clone();
    let workspace = args.workspace.clone();
    let input = stdin.clone();
    let worker = move || {
        let guard = match &config {
            None => Ok(Guard::builtin()),
            Some(path) => Guard::load(path),
        };
        match (guard, read) {
            (Err(err), _) => {
                let err = err.with_cause();
                eprintln!("warroom-guard: {err}");
                let d = Decision::deny(
                    "hook.bad-config",
                    format!(
                        "the guard cannot load its configuration, so every call is refused: {err}"
                    ),
                );
                let record = record_for(&d, &input);
                (d, record)
            }
            (Ok(_), Err(err)) => {
                let d = Decision::deny(
                    "hook.malformed-input",
                    format!("the hook input could not be read: {err}"),
                );
                let record = record_for(&d, "");
                (d, record)
            }
            (Ok(guard), Ok(_)) => decide(&guard, &input, workspace.as_deref()),
        }
    };
    let finished = run_with_deadline(DECISION_DEADLINE, worker);
    let timed_out = finished.is_none();
    let (decision, record) = finished.unwrap_or_else(|| {
        let d = Decision::deny(
            "hook.deadline",
            format!(
                "the guard could not decide within {} ms, so the call is refused; run a shorter, plain command (one command or a pipeline, no nesting)",
                DECISION_DEADLINE.as_millis()
            ),
        );
        let record = record_for(&d, &stdin);
        (d, record)
    });
    answer(&decision);

    if let Some(path) = &args.decisions
        && let Err(err) = append(path, &record)
    {
        // The decision is already printed; a lost audit line is reported, not fatal.
        eprintln!(
            "warroom-guard: cannot append to decisions file {}: {err}",
            path.display()
        );
    }
    if timed_out {
        // The worker that missed the deadline is still running; the answer is out, so end
        // the process now rather than leave it to whoever called this function.
        std::process::exit(0);
    }
}

/// Runs `work` on a thread of its own and returns its result, or `None` when it has not
/// finished after `deadline`. The thread is left running; the hook process exits soon after.
pub fn run_with_deadline<T: Send + 'static>(
    deadline: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("decide".to_owned())
        .spawn(move || {
            // The receiver is gone only when the deadline passed; nothing is left to tell.
            let _ = tx.send(work());
        });
    if spawned.is_err() {
        return None;
    }
    rx.recv_timeout(deadline).ok()
}

fn record_for(decision: &Decision, input: &str) -> DecisionRecord {
    DecisionRecord {
        time: crate::hook::now(),
        session_id: None,
        tool: String::new(),
        input: input.chars().take(2000).collect(),
        decision: "deny".to_owned(),
        rule: decision.rule.to_owned(),
        reason: decision.reason.clone(),
    }
}

fn answer(decision: &Decision) {
    let output = HookOutput::new(decision);
    let line = serde_json::to_string(&output).unwrap_or_else(|_| {
        r#"{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"deny","permissionDecisionReason":"[hook.internal] the guard could not encode its answer"}}"#.to_owned()
    });
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn append(path: &std::path::Path, record: &DecisionRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    line.push('\n');
    // One write of one line with O_APPEND, so concurrent hooks never interleave within a line.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line.as_bytes())
}
