//! How far a running agent got, for `status.json`: counted from the run's own (redacted) audit
//! events, with the turns and cost its model proxy metered and the refusals its guard
//! recorded, and reported to the dispatcher at most once per `--progress-interval`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use warroom_proto::{AuditKind, Progress};

use crate::proxy::Meter;

/// How many of the last tool calls a report carries.
const LAST_CALLS: usize = 3;
/// The longest line of one tool call in a report.
const CALL_LINE: usize = 160;

/// Counts one run's progress and says when the next report is due.
pub struct Tally {
    every: Duration,
    /// When the last report went out; `None` before the first.
    sent: Option<Instant>,
    tool_calls: u32,
    last: VecDeque<String>,
    meter: Meter,
    decisions: PathBuf,
}

impl Tally {
    /// A tally for one run, whose proxy is `meter` and whose guard writes its decisions to
    /// `decisions`; a report is due at most once per `every`.
    pub fn new(every: Duration, meter: Meter, decisions: PathBuf) -> Tally {
        Tally {
            every,
            sent: None,
            tool_calls: 0,
            last: VecDeque::new(),
            meter,
            decisions,
        }
    }

    /// Counts an audit event (already redacted), and returns a report when one is due.
    pub fn observe(&mut self, kind: &AuditKind) -> Option<Progress> {
        if let AuditKind::ToolCall { tool, input, .. } = kind {
            self.tool_calls = self.tool_calls.saturating_add(1);
            if self.last.len() == LAST_CALLS {
                self.last.pop_front();
            }
            self.last.push_back(call_line(tool, input));
        } else {
            return None;
        }
        let now = Instant::now();
        if self.sent.is_some_and(|sent| now - sent < self.every) {
            return None;
        }
        self.sent = Some(now);
        Some(self.report())
    }

    fn report(&self) -> Progress {
        let spend = self.meter.spend();
        let refused = crate::guard::read_decisions(&self.decisions)
            .iter()
            .filter(|record| record.decision != "allow")
            .count();
        Progress {
            at: warroom_proto::now(),
            turns: u32::try_from(spend.requests).unwrap_or(u32::MAX),
            tool_calls: self.tool_calls,
            refused: u32::try_from(refused).unwrap_or(u32::MAX),
            cost_usd: Some(spend.cost_usd),
            last_tool_calls: self.last.iter().cloned().collect(),
        }
    }
}

/// One line for a tool call: `Bash: oc get pods -n x`, `Read: /path`, else the tool and its
/// input as compact JSON; control characters become spaces, and it is cut at [`CALL_LINE`].
fn call_line(tool: &str, input: &serde_json::Value) -> String {
    let field = ["command", "file_path", "path", "pattern", "url"]
        .iter()
        .find_map(|name| input.get(name).and_then(|v| v.as_str()));
    let what = match field {
        Some(text) => text.to_owned(),
        None => input.to_string(),
    };
    let line = format!("{tool}: {what}");
    let mut short: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(CALL_LINE)
        .collect();
    if line.chars().count() > CALL_LINE {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_one_short_line() {
        let input =
            serde_json::json!({"command": "oc get pods\n-n openshift-etcd", "description": "x"});
        assert_eq!(
            call_line("Bash", &input),
            "Bash: oc get pods -n openshift-etcd"
        );
        let long = serde_json::json!({"command": "x".repeat(500)});
        assert_eq!(call_line("Bash", &long).chars().count(), CALL_LINE + 1);
        let other = serde_json::json!({"a": 1});
        assert_eq!(call_line("Glob", &other), "Glob: {\"a\":1}");
    }
}
