//! The judge of `eval --live`: a model reads one cluster's report against the scenario's
//! expected root-cause facts and says whether the report established them.
//!
//! It runs through the real Claude Code CLI (`claude -p`), with no tools, asked for a
//! structured answer (`--json-schema`), in an empty folder with a HOME of its own and an
//! environment holding only what the CLI needs (PATH and the model's key and address), so
//! that nothing of the engineer's own Claude setup (settings, hooks, memory) sways it. The
//! prompt is `crates/cli/templates/judge-prompt.md`, committed so that a score can be read
//! against the words that produced it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use warroom_scenario::{ClusterSpec, Scenario};

/// The judge's instructions, with `{{cluster}}`, `{{scenario}}`, `{{prompt}}`, `{{facts}}`
/// and `{{report}}` to fill in.
pub const PROMPT: &str = include_str!("../../templates/judge-prompt.md");

/// How long one judgement may take.
const JUDGE_TIMEOUT: Duration = Duration::from_secs(300);

/// The judge's answer, as `--json-schema` asks for it.
const ANSWER_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "found": {"type": "boolean"},
    "facts": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "fact": {"type": "string"},
          "established": {"type": "boolean"},
          "why": {"type": "string"}
        },
        "required": ["fact", "established", "why"]
      }
    },
    "reason": {"type": "string"}
  },
  "required": ["found", "facts", "reason"]
}"#;

/// What the judge decided about one cluster's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether every expected fact is established; `None` when there was nothing to judge or
    /// the judge gave no usable answer (then `reason` says why), which scores as not found.
    pub found: Option<bool>,
    #[serde(default)]
    pub facts: Vec<FactVerdict>,
    pub reason: String,
}

/// The judge's word on one expected fact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FactVerdict {
    pub fact: String,
    pub established: bool,
    #[serde(default)]
    pub why: String,
}

impl Verdict {
    /// The cluster has no report: nothing was found.
    pub fn no_report() -> Verdict {
        Verdict {
            found: None,
            facts: Vec::new(),
            reason: "no report to judge".to_owned(),
        }
    }

    fn failed(why: String) -> Verdict {
        Verdict {
            found: None,
            facts: Vec::new(),
            reason: format!("the judge gave no verdict: {why}"),
        }
    }
}

/// The Claude Code CLI, run as the judge.
pub struct Judge {
    claude: PathBuf,
    model: Option<String>,
    /// An empty working folder and HOME for every run.
    place: PathBuf,
}

impl Judge {
    pub fn new(claude: &Path, model: Option<&str>, work: &Path) -> Result<Judge> {
        let place = work.join("judge");
        std::fs::create_dir_all(place.join("home"))
            .with_context(|| format!("cannot create {}", place.display()))?;
        Ok(Judge {
            claude: claude.to_path_buf(),
            model: model.map(str::to_owned),
            place,
        })
    }

    /// Judges `report`, the cluster `spec` of `scenario`. A judge that fails is a verdict
    /// of its own (no answer, scored as not found), not an error: the other scores stand.
    pub fn judge(&self, scenario: &Scenario, spec: &ClusterSpec, report: &str) -> Verdict {
        let prompt = prompt(scenario, spec, report);
        match self.ask(&prompt) {
            Ok(verdict) => verdict,
            Err(error) => Verdict::failed(format!("{error:#}")),
        }
    }

    fn ask(&self, prompt: &str) -> Result<Verdict> {
        let mut command = Command::new(&self.claude);
        command.args([
            "-p",
            "--output-format",
            "json",
            "--no-session-persistence",
            "--max-turns",
            "3",
            "--tools=",
            "--json-schema",
            ANSWER_SCHEMA,
        ]);
        if let Some(model) = &self.model {
            command.args(["--model", model]);
        }
        command
            .current_dir(&self.place)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.place.join("home"))
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
        for key in ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.claude.display()))?;
        let pid = child.id();
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(prompt.as_bytes())
                .context("cannot give the judge its prompt")?;
        }
        // The output is read on a thread so that a judge that hangs can be stopped.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(child.wait_with_output());
        });
        let output = match receiver.recv_timeout(JUDGE_TIMEOUT) {
            Ok(output) => output.context("cannot read the judge's answer")?,
            Err(_) => {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                bail!("no answer within {} s", JUDGE_TIMEOUT.as_secs());
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "{} exited with {}: {}{}",
                self.claude.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                stdout.trim()
            );
        }
        parse_answer(&stdout)
    }
}

/// The verdict in the CLI's `--output-format json` result: its `structured_output`.
fn parse_answer(stdout: &str) -> Result<Verdict> {
    let result: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("the CLI's output is not JSON: {}", stdout.trim()))?;
    let Some(answer) = result.get("structured_output").filter(|a| !a.is_null()) else {
        bail!("the judge gave no structured answer: {}", stdout.trim());
    };
    let verdict: JudgeAnswer = serde_json::from_value(answer.clone())
        .with_context(|| format!("the judge's answer has another form: {answer}"))?;
    Ok(Verdict {
        found: Some(verdict.found),
        facts: verdict.facts,
        reason: verdict.reason,
    })
}

/// The judge's answer as the schema asks for it.
#[derive(Deserialize)]
struct JudgeAnswer {
    found: bool,
    facts: Vec<FactVerdict>,
    reason: String,
}

/// The judge's prompt for one cluster.
pub fn prompt(scenario: &Scenario, spec: &ClusterSpec, report: &str) -> String {
    let facts: String = spec
        .expect
        .root_cause
        .iter()
        .enumerate()
        .map(|(n, fact)| format!("{}. {}\n", n + 1, fact.trim()))
        .collect();
    PROMPT
        .replace("{{cluster}}", &spec.name)
        .replace("{{scenario}}", &scenario.name)
        .replace("{{prompt}}", scenario.spec.request.prompt.trim())
        .replace("{{facts}}", facts.trim_end())
        .replace("{{report}}", report.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_the_structured_output_of_the_result() {
        let stdout = r#"{"type":"result","subtype":"success","result":"","structured_output":
            {"found":false,"facts":[{"fact":"a","established":false,"why":"not said"}],
             "reason":"names another cause"}}"#;
        let verdict = parse_answer(stdout).expect("a verdict");
        assert_eq!(verdict.found, Some(false));
        assert_eq!(verdict.facts.len(), 1);
        assert_eq!(verdict.reason, "names another cause");
        assert!(parse_answer(r#"{"type":"result","result":"yes"}"#).is_err());
    }

    #[test]
    fn the_prompt_has_no_placeholder_left() {
        let dir = warroom_testkit::tools::workspace_root().join("tests/scenarios/etcd-slow-disk");
        let scenario = Scenario::load(&dir).expect("the scenario loads");
        let spec = &scenario.spec.clusters[0];
        let text = prompt(&scenario, spec, "# Report\nThe disk is slow.");
        assert!(!text.contains("{{"), "{text}");
        assert!(text.contains(&format!("cluster `{}`", spec.name)), "{text}");
        assert!(text.contains("The disk is slow."), "{text}");
        assert!(text.contains(spec.expect.root_cause[0].trim()), "{text}");
    }
}
