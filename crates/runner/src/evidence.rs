//! The evidence check: every finding of the agent's structured answer is held against the
//! run's own transcript before anything is published.
//!
//! The transcript is what the run's `audit.jsonl` lines hold: each tool call and its output
//! after redaction and the cut ([`crate::stream::MAX_TOOL_OUTPUT`]), so a reader can find
//! every supported quote in the audit log. A piece of evidence checks out when the cited call
//! happened (by its `tool_use` id, or by its exact command), was not refused, and every
//! quoted line appears within one line of its output. Whitespace runs count as one space and
//! the ends are trimmed; nothing else is forgiven, so an invented or paraphrased line fails.
//! A finding is supported when it has evidence and all of it checks out; otherwise it is
//! kept, marked unsupported, with the reason.

use std::collections::HashMap;

use serde_json::Value;
use warroom_proto::report::{AgentReport, CheckedEvidence, CheckedFinding, CheckedReport};
use warroom_proto::report::{Evidence, NO_RUNBOOK};

/// The tool the CLI adds for `--json-schema`: the agent's answer, never evidence.
pub const STRUCTURED_OUTPUT_TOOL: &str = "StructuredOutput";

/// The run's tool calls as its audit lines hold them.
#[derive(Debug, Default)]
pub struct Transcript {
    calls: HashMap<String, Call>,
    /// Call ids in the order they were made.
    order: Vec<String>,
}

#[derive(Debug, Default)]
struct Call {
    /// The Bash command, or the path or pattern of a file tool.
    command: String,
    output: Option<String>,
    is_error: bool,
    /// The id of the audit line holding the output.
    audit_id: Option<String>,
}

impl Transcript {
    /// Records a call as published (its input redacted).
    pub fn call(&mut self, id: &str, tool: &str, input: &Value) {
        if id.is_empty() || tool == STRUCTURED_OUTPUT_TOOL {
            return;
        }
        let field = |name: &str| input.get(name).and_then(Value::as_str);
        let command = field("command")
            .or_else(|| field("file_path"))
            .or_else(|| field("pattern"))
            .unwrap_or_default()
            .to_owned();
        if !self.calls.contains_key(id) {
            self.order.push(id.to_owned());
        }
        self.calls.entry(id.to_owned()).or_default().command = command;
    }

    /// Records a call's output as published (redacted, then cut), with its audit line's id.
    pub fn result(&mut self, id: &str, is_error: bool, output: &str, audit_id: &str) {
        if let Some(call) = self.calls.get_mut(id) {
            call.output = Some(output.to_owned());
            call.is_error = is_error;
            call.audit_id = Some(audit_id.to_owned());
        }
    }

    /// The ids of calls whose command is `command` (whitespace normalised), in order.
    fn by_command(&self, command: &str) -> Vec<&str> {
        let wanted = normalise(command);
        self.order
            .iter()
            .filter(|id| {
                self.calls
                    .get(id.as_str())
                    .is_some_and(|c| normalise(&c.command) == wanted)
            })
            .map(String::as_str)
            .collect()
    }
}

/// `text` with its ends trimmed and every whitespace run made one space.
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks `report` against `transcript`.
pub fn check(report: AgentReport, transcript: &Transcript) -> CheckedReport {
    let findings = report
        .findings
        .into_iter()
        .map(|finding| {
            let evidence: Vec<CheckedEvidence> = finding
                .evidence
                .into_iter()
                .map(|e| check_evidence(e, transcript))
                .collect();
            let supported = !evidence.is_empty() && evidence.iter().all(|e| e.problem.is_none());
            CheckedFinding {
                claim: finding.claim,
                supported,
                evidence,
            }
        })
        .collect();
    CheckedReport {
        summary: report.summary,
        findings,
        ruled_out: report.ruled_out,
        confidence: report.confidence,
        next_steps: report.next_steps,
        not_checked: report.not_checked,
        runbook: Some(report.runbook).filter(|r| r != NO_RUNBOOK && !r.trim().is_empty()),
    }
}

fn check_evidence(evidence: Evidence, transcript: &Transcript) -> CheckedEvidence {
    let mut checked = CheckedEvidence {
        tool_use_id: evidence.tool_use_id.clone(),
        command: evidence.command.clone(),
        quote: evidence.quote.clone(),
        audit_id: None,
        problem: None,
    };
    // The calls the evidence may mean: the one its id names (which must then also match
    // its command, if given), else every call of its command.
    let candidates: Vec<&str> = match (&evidence.tool_use_id, &evidence.command) {
        (Some(id), command) => match transcript.calls.get_key_value(id.as_str()) {
            Some((key, call))
                if command
                    .as_ref()
                    .is_none_or(|c| normalise(c) == normalise(&call.command)) =>
            {
                vec![key.as_str()]
            }
            Some(_) => {
                checked.problem = Some(format!(
                    "the call `{id}` ran another command than the one cited"
                ));
                return checked;
            }
            None => {
                checked.problem = Some(format!("no tool call `{id}` happened in this run"));
                return checked;
            }
        },
        (None, Some(command)) => transcript.by_command(command),
        (None, None) => Vec::new(),
    };
    if candidates.is_empty() {
        checked.problem = Some(match &evidence.command {
            Some(command) => format!("no call of `{command}` happened in this run"),
            None => "the evidence names no tool call".to_owned(),
        });
        return checked;
    }
    let quotes: Vec<String> = evidence
        .quote
        .iter()
        .flat_map(|q| q.lines())
        .map(normalise)
        .filter(|q| !q.is_empty())
        .collect();
    if quotes.is_empty() {
        checked.problem = Some("the evidence quotes no line".to_owned());
        return checked;
    }
    let mut last_problem = None;
    for id in candidates {
        let Some(call) = transcript.calls.get(id) else {
            continue;
        };
        match quote_problem(call, &quotes) {
            None => {
                checked.tool_use_id = Some(id.to_owned());
                checked.audit_id = call.audit_id.clone();
                return checked;
            }
            Some(problem) => last_problem = Some(problem),
        }
    }
    checked.problem = last_problem;
    checked
}

/// Why `quotes` are not all in `call`'s output, or `None` when they are.
fn quote_problem(call: &Call, quotes: &[String]) -> Option<String> {
    let Some(output) = &call.output else {
        return Some("the call has no output in the audit log".to_owned());
    };
    if call.is_error {
        return Some("the call was refused or failed; its output is not evidence".to_owned());
    }
    let lines: Vec<String> = output.lines().map(normalise).collect();
    quotes
        .iter()
        .find(|quote| !lines.iter().any(|line| line.contains(quote.as_str())))
        .map(|quote| format!("the line `{quote}` is not in the call's output"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use warroom_proto::report::{AgentFinding, Confidence};

    use super::*;

    fn transcript() -> Transcript {
        let mut t = Transcript::default();
        t.call(
            "toolu_1",
            "Bash",
            &json!({"command": "oc get pods -n clusters-a"}),
        );
        t.result(
            "toolu_1",
            false,
            "NAME      READY   STATUS\netcd-0    1/3     CrashLoopBackOff\n",
            "r/a/1/3",
        );
        t.call("toolu_2", "Bash", &json!({"command": "oc get secrets"}));
        t.result("toolu_2", true, "guard: refused", "r/a/1/5");
        t
    }

    fn report(evidence: Vec<Evidence>) -> AgentReport {
        AgentReport {
            summary: "s".to_owned(),
            findings: vec![AgentFinding {
                claim: "etcd crashes".to_owned(),
                evidence,
            }],
            ruled_out: Vec::new(),
            confidence: Confidence::High,
            next_steps: Vec::new(),
            not_checked: Vec::new(),
            runbook: "etcd".to_owned(),
        }
    }

    fn evidence(id: Option<&str>, command: Option<&str>, quote: &[&str]) -> Evidence {
        Evidence {
            tool_use_id: id.map(str::to_owned),
            command: command.map(str::to_owned),
            quote: quote.iter().map(|q| (*q).to_owned()).collect(),
        }
    }

    fn verdict(e: Evidence) -> CheckedFinding {
        check(report(vec![e]), &transcript()).findings.remove(0)
    }

    #[test]
    fn a_quote_from_the_cited_call_is_supported_with_its_audit_line() {
        let finding = verdict(evidence(
            Some("toolu_1"),
            None,
            &["etcd-0  1/3   CrashLoopBackOff"],
        ));
        assert!(finding.supported, "{finding:?}");
        assert_eq!(finding.evidence[0].audit_id.as_deref(), Some("r/a/1/3"));
        let by_command = verdict(evidence(
            None,
            Some("oc get pods  -n clusters-a"),
            &["CrashLoopBackOff"],
        ));
        assert!(by_command.supported, "{by_command:?}");
        assert_eq!(
            by_command.evidence[0].tool_use_id.as_deref(),
            Some("toolu_1")
        );
    }

    #[test]
    fn invented_calls_and_lines_are_unsupported_with_the_reason() {
        for (e, reason) in [
            (
                evidence(Some("toolu_9"), None, &["etcd-0"]),
                "no tool call `toolu_9`",
            ),
            (
                evidence(None, Some("oc get nodes"), &["etcd-0"]),
                "no call of `oc get nodes`",
            ),
            (
                evidence(Some("toolu_1"), None, &["etcd-0 3/3 Running"]),
                "is not in the call's output",
            ),
            (
                evidence(Some("toolu_1"), Some("oc get nodes"), &["etcd-0"]),
                "another command",
            ),
            (evidence(Some("toolu_2"), None, &["refused"]), "refused"),
            (evidence(Some("toolu_1"), None, &["  "]), "quotes no line"),
            (evidence(None, None, &["etcd-0"]), "names no tool call"),
        ] {
            let finding = verdict(e);
            assert!(!finding.supported, "{finding:?}");
            let problem = finding.evidence[0].problem.clone().unwrap_or_default();
            assert!(problem.contains(reason), "{problem} lacks {reason}");
        }
        // A line split across two output lines is not one quoted line.
        assert!(!verdict(evidence(Some("toolu_1"), None, &["STATUS etcd-0"])).supported);
        // A finding without evidence is unsupported.
        assert!(!check(report(Vec::new()), &transcript()).findings[0].supported);
    }

    #[test]
    fn the_runbook_none_is_no_runbook() {
        let mut answer = report(Vec::new());
        answer.runbook = NO_RUNBOOK.to_owned();
        assert_eq!(check(answer, &transcript()).runbook, None);
    }
}
