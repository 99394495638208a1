//! The `PostToolUse` mode of the hook (`warroom-guard post-tool-use`): redacts a tool's
//! output before the model sees it.
//!
//! The model provider is outside the secure zone, so a secret a tool printed must not reach
//! it. The Claude Code CLI (2.1.x, checked; see `../shared/design/field-notes.md`) sends a
//! `PostToolUse` hook the call with the tool's output as `tool_response`, and when the hook
//! prints `{"hookSpecificOutput":{"hookEventName":"PostToolUse","updatedToolOutput": R}}` it
//! sends `R` to the model instead. `R` must have the shape of `tool_response` (for Bash an
//! object with `stdout`, `stderr`, `interrupted`, `isImage`, `noOutputExpected`; a plain
//! string is ignored there), which [`warroom_redact::json`] keeps.
//!
//! The hook prints a replacement only when something was redacted, and nothing otherwise.
//! With `--record FILE` it appends what it removed (a [`Record`], kinds and counts, never a
//! value) to `FILE`, so that the runner can audit it: the output the runner reads back from
//! the CLI is already redacted.
//! It fails closed: input it cannot read, a redaction that panics or one that takes longer
//! than [`DEADLINE`] withholds the whole output. The runner's model proxy redacts every tool
//! result again on its way to the model, so a hook the CLI could not run is covered too.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The longest hook input read; a longer one (a tool output the CLI would not send whole
/// anyway) is withheld rather than redacted in part.
pub const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// How long redaction may take before the output is withheld. Below the runner's wrapper
/// bound (`warroom_runner::guard::HOOK_BOUND_SECS`, 5 s), which is below the CLI's hook
/// timeout (10 s).
pub const DEADLINE: Duration = Duration::from_secs(3);

/// What the model reads in place of an output that could not be redacted.
pub const WITHHELD: &str = "[warroom: this tool output was withheld because it could not be \
                            redacted; it may hold secrets. Narrow the command (a field, a \
                            selector, fewer lines) and try again.]";

/// What the hook removed from one tool's output: one line of the `--record` file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The call, as the hook input names it (`""` when it could not be read).
    pub tool_use_id: String,
    /// What was removed, by kind.
    pub removed: BTreeMap<String, u64>,
    /// The whole output was withheld (it could not be redacted).
    #[serde(default)]
    pub withheld: bool,
}

/// The hook's answer: what to print, and what to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The hook output replacing the tool's output; `None` leaves the output as it is.
    pub output: Option<Value>,
    /// What was removed; `None` when nothing was.
    pub record: Option<Record>,
}

/// Runs the mode: reads the hook input on stdin, prints the replacement if any, records what
/// was removed, exits 0. `args` are the arguments after `post-tool-use`.
pub fn main() -> ! {
    let record_to = record_path(std::env::args_os().skip(2));
    let mut stdin = String::new();
    let read = std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_string(&mut stdin);
    let answer = match read {
        Ok(n) if (n as u64) <= MAX_INPUT => answer_within(stdin, DEADLINE),
        _ => Answer {
            output: Some(withheld(None)),
            record: Some(Record {
                withheld: true,
                ..Record::default()
            }),
        },
    };
    if let Some(output) = &answer.output {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{output}");
        let _ = stdout.flush();
    }
    if let (Some(path), Some(record)) = (&record_to, &answer.record)
        && let Err(err) = append(path, record)
    {
        // The output is already answered; a lost audit line is reported, not fatal.
        eprintln!(
            "warroom-guard post-tool-use: cannot append to {}: {err}",
            path.display()
        );
    }
    // Exit at once: a redaction still running past the deadline is abandoned, not awaited.
    std::process::exit(0);
}

/// `--record FILE` among `args`; anything else is ignored (the mode has nothing to refuse).
fn record_path(mut args: impl Iterator<Item = std::ffi::OsString>) -> Option<PathBuf> {
    while let Some(arg) = args.next() {
        if arg == "--record" {
            return args.next().map(PathBuf::from);
        }
    }
    None
}

/// Appends `record` as one JSON line, in one write with `O_APPEND`.
fn append(path: &Path, record: &Record) -> std::io::Result<()> {
    let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// Reads a `--record` file: a missing file is empty, a line that does not parse is skipped.
pub fn read_records(path: &Path) -> std::io::Result<Vec<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// [`answer`] on a thread of its own, withheld when it panics or does not finish within
/// `deadline`.
pub fn answer_within(stdin: String, deadline: Duration) -> Answer {
    bounded(stdin, deadline, answer)
}

/// `decide` on a thread of its own, withheld when it panics or does not finish within
/// `deadline`.
fn bounded(stdin: String, deadline: Duration, decide: fn(&str) -> Answer) -> Answer {
    let (tx, rx) = mpsc::channel();
    let input = serde_json::from_str::<Value>(&stdin).ok();
    std::thread::spawn(move || {
        let answer = std::panic::catch_unwind(|| decide(&stdin));
        let _ = tx.send(answer);
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) | Err(_) => Answer {
            output: Some(withheld(
                input.as_ref().and_then(|input| input.get("tool_response")),
            )),
            record: Some(Record {
                tool_use_id: input.as_ref().map(tool_use_id).unwrap_or_default(),
                removed: BTreeMap::new(),
                withheld: true,
            }),
        },
    }
}

fn tool_use_id(input: &Value) -> String {
    input
        .get("tool_use_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The hook's answer to the input `stdin`: the output redacted when something was removed,
/// no output when nothing was, and the output withheld when the input cannot be read.
pub fn answer(stdin: &str) -> Answer {
    let Ok(mut input) = serde_json::from_str::<Value>(stdin) else {
        return Answer {
            output: Some(withheld(None)),
            record: Some(Record {
                withheld: true,
                ..Record::default()
            }),
        };
    };
    let id = tool_use_id(&input);
    let Some(response) = input.get_mut("tool_response") else {
        return Answer {
            output: Some(withheld(None)),
            record: Some(Record {
                tool_use_id: id,
                removed: BTreeMap::new(),
                withheld: true,
            }),
        };
    };
    let removed = warroom_redact::json(response);
    if removed.is_empty() {
        return Answer {
            output: None,
            record: None,
        };
    }
    Answer {
        output: Some(replacement(response.take())),
        record: Some(Record {
            tool_use_id: id,
            removed: removed
                .iter()
                .map(|(kind, n)| (kind.to_owned(), n))
                .collect(),
            withheld: false,
        }),
    }
}

/// The hook output that makes the CLI send `output` to the model.
fn replacement(output: Value) -> Value {
    json!({
        "hookSpecificOutput": {
            "hookEventName": "PostToolUse",
            "updatedToolOutput": output,
        }
    })
}

/// The replacement that withholds an output of `shape` (Bash's when unknown): the same
/// fields, the text of one of them ([`WITHHELD`], in `stdout` where there is one) and every
/// other string emptied, so the CLI still takes it for the tool's output.
fn withheld(shape: Option<&Value>) -> Value {
    let bash = json!({
        "stdout": "",
        "stderr": "",
        "interrupted": false,
        "isImage": false,
        "noOutputExpected": false,
    });
    let mut output = shape.cloned().unwrap_or(bash);
    let mut told = false;
    if let Value::Object(map) = &mut output
        && let Some(Value::String(stdout)) = map.get_mut("stdout")
    {
        WITHHELD.clone_into(stdout);
        told = true;
    }
    empty_strings(&mut output, &mut told);
    replacement(output)
}

/// Empties every string of `value` but the one that tells (the first, unless `told`).
fn empty_strings(value: &mut Value, told: &mut bool) {
    match value {
        Value::String(text) => {
            if *told {
                if text != WITHHELD {
                    text.clear();
                }
            } else {
                WITHHELD.clone_into(text);
                *told = true;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| empty_strings(v, told)),
        Value::Object(map) => map
            .iter_mut()
            .filter(|(key, _)| !is_kind_field(key))
            .for_each(|(_, v)| empty_strings(v, told)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `type` fields name a shape (`"type": "text"`), not content: kept so the shape still reads.
fn is_kind_field(key: &str) -> bool {
    key == "type"
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    /// A replacement's `updatedToolOutput`.
    fn updated(answer: &Value) -> &Map<String, Value> {
        answer["hookSpecificOutput"]["updatedToolOutput"]
            .as_object()
            .expect("an object output")
    }

    /// A Bash call's hook input with `stdout`.
    fn bash_input(stdout: &str) -> String {
        json!({
            "session_id": "s",
            "hook_event_name": "PostToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": "kubectl get cm app -o yaml"},
            "tool_response": {
                "stdout": stdout,
                "stderr": "",
                "interrupted": false,
                "isImage": false,
                "noOutputExpected": false,
            },
            "tool_use_id": "toolu_1",
        })
        .to_string()
    }

    #[test]
    fn a_secret_in_the_output_is_replaced_and_the_shape_kept() {
        let password = ["Pg", "-pr0d-", "Hunter", "77x"].concat();
        let stdout = format!("data:\n  DB_HOST: db\n  DB_PASSWORD: {password}\n");
        let result = answer(&bash_input(&stdout));
        let record = result.record.expect("a record");
        assert_eq!(record.tool_use_id, "toolu_1");
        assert!(!record.withheld);
        assert!(record.removed.values().sum::<u64>() >= 1, "{record:?}");
        let answer = result.output.expect("a replacement");
        assert_eq!(answer["hookSpecificOutput"]["hookEventName"], "PostToolUse");
        let output = updated(&answer);
        let text = output["stdout"].as_str().expect("stdout stays a string");
        assert!(!text.contains(&password), "{text}");
        assert!(text.contains("DB_HOST: db"), "{text}");
        assert!(text.contains("[REDACTED:"), "{text}");
        let mut keys: Vec<&str> = output.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "interrupted",
                "isImage",
                "noOutputExpected",
                "stderr",
                "stdout"
            ]
        );
        assert_eq!(output["interrupted"], false);
    }

    #[test]
    fn a_clean_output_gets_no_answer() {
        assert_eq!(
            answer(&bash_input("NAME READY\nx 1/1\n")),
            Answer {
                output: None,
                record: None
            }
        );
    }

    #[test]
    fn other_tools_keep_their_shape() {
        let token = [
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            ".",
            "eyJzdWIiOiJ3YXJyb29tLXRlc3QifQ",
            ".",
            "Xq3Lm9Vb2Nc7Zr4Wd8Kp1Hs5Jf6Gt0Ye3Ui9Oa2Bz",
        ]
        .concat();
        let input = json!({
            "hook_event_name": "PostToolUse",
            "tool_name": "Read",
            "tool_response": {"type": "text", "file": {
                "filePath": "/ws/notes.txt",
                "content": format!("saved token {token}\n"),
                "numLines": 1,
            }},
        });
        let answer = answer(&input.to_string()).output.expect("a replacement");
        let output = updated(&answer);
        assert_eq!(output["type"], "text");
        assert_eq!(output["file"]["numLines"], 1);
        let content = output["file"]["content"].as_str().expect("content");
        assert!(!content.contains(&token), "{content}");
        assert!(content.starts_with("saved token "), "{content}");
    }

    #[test]
    fn unreadable_input_withholds_the_output() {
        for input in [
            "not json",
            "{\"tool_name\": \"Bash\"}",
            "{\"tool_response\"",
        ] {
            let result = answer(input);
            assert!(result.record.is_some_and(|r| r.withheld), "{input}");
            let answer = result.output.expect("fails closed");
            let output = updated(&answer);
            assert_eq!(output["stdout"], WITHHELD, "{input}");
            assert_eq!(output["stderr"], "", "{input}");
            assert_eq!(output["isImage"], false, "{input}");
        }
    }

    #[test]
    fn a_redaction_past_the_deadline_withholds_the_output_in_its_shape() {
        let password = ["Pg", "-pr0d-", "Hunter", "77x"].concat();
        let stdout = format!("DB_PASSWORD={password}\n");
        // A redaction that never ends (it waits on a channel nobody sends on).
        fn hangs(_: &str) -> Answer {
            let (_tx, rx) = mpsc::channel::<()>();
            let _ = rx.recv();
            Answer {
                output: None,
                record: None,
            }
        }
        let result = bounded(bash_input(&stdout), Duration::from_millis(50), hangs);
        let record = result.record.expect("recorded");
        assert!(record.withheld);
        assert_eq!(record.tool_use_id, "toolu_1");
        let answer = result.output.expect("fails closed");
        let output = updated(&answer);
        assert_eq!(output["stdout"], WITHHELD);
        assert_eq!(output["stderr"], "");
        assert_eq!(output["noOutputExpected"], false);
        assert!(!answer.to_string().contains(&password));

        // An output of another shape: the first string tells, the others are emptied.
        let shape = json!({"type": "text", "file": {"content": password, "filePath": "/x"}});
        let answer = withheld(Some(&shape));
        let output = &answer["hookSpecificOutput"]["updatedToolOutput"];
        assert_eq!(output["type"], "text");
        assert_eq!(output["file"]["content"], WITHHELD);
        assert_eq!(output["file"]["filePath"], "");
    }

    #[test]
    fn a_redaction_that_panics_withholds_the_output() {
        fn panics(_: &str) -> Answer {
            panic!("redaction failed")
        }
        let password = ["Pg", "-pr0d-", "Hunter", "77x"].concat();
        let answer = bounded(
            bash_input(&format!("DB_PASSWORD={password}")),
            DEADLINE,
            panics,
        )
        .output
        .expect("fails closed");
        assert_eq!(updated(&answer)["stdout"], WITHHELD);
        assert!(!answer.to_string().contains(&password));
    }

    #[test]
    fn within_the_deadline_the_answer_is_the_redaction() {
        let password = ["Pg", "-pr0d-", "Hunter", "77x"].concat();
        let input = bash_input(&format!("DB_PASSWORD={password}\n"));
        assert_eq!(answer_within(input.clone(), DEADLINE), answer(&input));
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    fn records_are_appended_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("redactions.jsonl");
        assert_eq!(read_records(&path).expect("missing is empty"), Vec::new());
        let record = Record {
            tool_use_id: "toolu_1".to_owned(),
            removed: BTreeMap::from([("password".to_owned(), 2)]),
            withheld: false,
        };
        append(&path, &record).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"not json\n"))
            .expect("write a broken line");
        append(&path, &record).expect("append");
        assert_eq!(
            read_records(&path).expect("read"),
            vec![record.clone(), record]
        );
        let args = ["--record", "/x/r.jsonl"].map(std::ffi::OsString::from);
        assert_eq!(
            record_path(args.into_iter()),
            Some(PathBuf::from("/x/r.jsonl"))
        );
        assert_eq!(record_path(std::iter::empty()), None);
    }
}
