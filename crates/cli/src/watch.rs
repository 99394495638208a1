//! `claude-warroom status --watch` (and `claude-warroom wait`): follows a request until it is
//! final, fetching its `status.json` every `--interval`.
//!
//! Every transition is one line (the request's phase, each cluster's phase, a session's state
//! and each follow-up turn's phase). On a terminal a live view under those lines shows each
//! cluster with its elapsed time, turns, tool calls and last tool call, redrawn in place; in
//! a pipe only the transition lines are printed. The exit code says how the request ended
//! ([`exit_code`]); a session is final when its request is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use warroom_proto::{
    ClusterName, ClusterPhase, ClusterStatus, Progress, RequestPhase, RequestStatus, TurnStatus,
};

use crate::NotYet;
use crate::results::{Results, Target};

/// Exit codes of `status --watch` / `wait` beyond 0 (completed), 1 (error) and 2 (usage).
pub const EXIT_FAILED: u8 = 4;
pub const EXIT_TIMED_OUT: u8 = 5;
pub const EXIT_CANCELLED: u8 = 6;
pub const EXIT_REJECTED: u8 = 7;
/// `--timeout` passed before the request was final.
pub const EXIT_STILL_RUNNING: u8 = 8;

/// The exit code for a request that ended in `phase`.
pub fn exit_code(phase: RequestPhase) -> u8 {
    match phase {
        RequestPhase::Completed => 0,
        RequestPhase::Failed => EXIT_FAILED,
        RequestPhase::TimedOut => EXIT_TIMED_OUT,
        RequestPhase::Cancelled => EXIT_CANCELLED,
        RequestPhase::Rejected => EXIT_REJECTED,
        // Not final: only `--timeout` ends a watch before the request does.
        _ => EXIT_STILL_RUNNING,
    }
}

/// How a watch runs.
pub struct Watch<'a> {
    pub target: &'a Target,
    pub json: bool,
    pub interval: Duration,
    pub timeout: Option<Duration>,
}

impl Watch<'_> {
    /// Follows the request until it is final (or `--timeout`), printing as it goes.
    pub fn run(&self) -> Result<ExitCode> {
        let started = Instant::now();
        let live = !self.json && std::io::stdout().is_terminal();
        let mut view = View::new(live);
        let mut last: Option<RequestStatus> = None;
        let mut said_pending = false;
        loop {
            match self.target.locate() {
                Ok(results) => {
                    let status = results.status.clone();
                    if last.as_ref().is_none_or(|l| l.revision != status.revision) {
                        self.show(&mut view, last.as_ref(), &results)?;
                        last = Some(status);
                    }
                }
                Err(err) if err.downcast_ref::<NotYet>().is_some() => {
                    if !said_pending {
                        view.line(&format!(
                            "{}  pending: not picked up by the secure zone yet",
                            clock()
                        ))?;
                        said_pending = true;
                    }
                }
                Err(err) => return Err(err),
            }
            if let Some(status) = &last
                && status.phase.is_final()
            {
                view.finish()?;
                return Ok(ExitCode::from(exit_code(status.phase)));
            }
            let waited = started.elapsed();
            if self.timeout.is_some_and(|timeout| waited >= timeout) {
                view.finish()?;
                eprintln!(
                    "claude-warroom: {} is not final after {} (--timeout)",
                    self.target.id(),
                    format_elapsed(waited.as_secs())
                );
                return Ok(ExitCode::from(EXIT_STILL_RUNNING));
            }
            view.wait(self.interval, last.as_ref())?;
        }
    }

    /// Prints what changed since `before`.
    fn show(
        &self,
        view: &mut View,
        before: Option<&RequestStatus>,
        results: &Results,
    ) -> Result<()> {
        let status = &results.status;
        if self.json {
            // One status per line, compact, for scripts (`jq -c`, `while read`).
            let line = serde_json::to_string(status).context("encoding the status")?;
            return view.line(&line);
        }
        for line in transitions(before, status) {
            view.line(&format!("{}  {line}", clock()))?;
        }
        if status.phase.is_final() {
            view.clear()?;
            let summary =
                crate::status::render(status, &results.dir, &results.rev, warroom_proto::now());
            view.line(&format!("\n{}", summary.trim_end()))?;
        }
        Ok(())
    }
}

/// The lines that say what changed from `before` to `now`: the request's phase, then each
/// cluster's, in name order, then the session's state and each follow-up turn's phase.
pub fn transitions(before: Option<&RequestStatus>, now: &RequestStatus) -> Vec<String> {
    let mut lines = Vec::new();
    if before.is_none_or(|b| b.phase != now.phase) {
        let mut line = format!("{} {}", now.id, now.phase);
        if let Some(error) = &now.error {
            let _ = write!(line, ": {}", printable(error));
        }
        lines.push(line);
    }
    let empty = BTreeMap::new();
    let old = before.map_or(&empty, |b| &b.clusters);
    for (name, cluster) in &now.clusters {
        let was = old.get(name).map(|c| c.phase);
        if was == Some(cluster.phase) {
            continue;
        }
        let mut line = match was {
            Some(was) => format!("  {name}: {was} -> {}", cluster.phase),
            None => format!("  {name}: {}", cluster.phase),
        };
        if let Some(error) = cluster
            .error
            .as_deref()
            .filter(|_| cluster.phase.is_final())
        {
            let _ = write!(line, " ({})", printable(error));
        }
        lines.push(line);
    }
    if let Some(session) = &now.session
        && before.and_then(|b| b.session.as_ref()).map(|s| s.state) != Some(session.state)
    {
        let mut line = format!("  session: {}", session.state.as_str());
        if let Some(why) = &session.ended {
            let _ = write!(line, " ({})", printable(why));
        }
        lines.push(line);
    }
    let old_turns = before.map_or(&[][..], |b| &b.turns[..]);
    for turn in &now.turns {
        let was = old_turns
            .iter()
            .find(|t| t.turn == turn.turn)
            .map(|t| t.phase);
        if was == Some(turn.phase) {
            continue;
        }
        let mut line = match was {
            Some(was) => format!(
                "  turn {} ({}): {was} -> {}",
                turn.turn, turn.cluster, turn.phase
            ),
            None => format!("  turn {} ({}): {}", turn.turn, turn.cluster, turn.phase),
        };
        if let Some(error) = turn.error.as_deref().filter(|_| turn.phase.is_final()) {
            let _ = write!(line, " ({})", printable(error));
        }
        lines.push(line);
    }
    lines
}

/// One cluster's line of the live view.
pub fn progress_line(
    name: &ClusterName,
    cluster: &ClusterStatus,
    now: warroom_proto::Timestamp,
) -> String {
    let mut line = format!("  {:<24} {:<10}", name.as_str(), cluster.phase.as_str());
    if cluster.phase == ClusterPhase::Running
        && let Some(started) = cluster.started_at
    {
        let elapsed = (now - started).whole_seconds().max(0);
        let _ = write!(line, " {:>8}", format_elapsed(elapsed as u64));
    }
    if let Some(progress) = &cluster.progress {
        let _ = write!(line, "  {}", progress_summary(progress));
    } else if let Some(queued) = &cluster.queued {
        let _ = write!(line, " queued #{}", queued.position);
    }
    line
}

/// A running follow-up turn's line of the live view.
pub fn turn_progress_line(turn: &TurnStatus) -> String {
    let mut line = format!(
        "  turn {:<19} {:<10}",
        format!("{} ({})", turn.turn, turn.cluster),
        turn.phase.as_str()
    );
    if let Some(progress) = &turn.progress {
        let _ = write!(line, "  {}", progress_summary(progress));
    }
    line
}

/// `4 turns, 12 tool calls (1 refused), $0.42  last: Bash: oc get pods`.
pub fn progress_summary(progress: &Progress) -> String {
    let mut line = format!(
        "{} turns, {} tool calls",
        progress.turns, progress.tool_calls
    );
    if progress.refused > 0 {
        let _ = write!(line, " ({} refused)", progress.refused);
    }
    if let Some(cost) = progress.cost_usd {
        let _ = write!(line, ", ${cost:.2}");
    }
    if let Some(call) = progress.last_tool_calls.last() {
        let _ = write!(line, "  last: {}", printable(call));
    }
    line
}

/// `1h02m03s`, `4m05s`, `9s`.
fn format_elapsed(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m{:02}s", secs / 3600, secs % 3600 / 60, secs % 60),
    }
}

/// Text from the secure zone (an error, a tool call the agent chose) as one terminal-safe
/// line: control characters (escape sequences included) become `?`, and it is cut at 160
/// characters.
pub fn printable(text: &str) -> String {
    let mut out: String = crate::status::printable(text).chars().take(160).collect();
    if text.chars().count() > 160 {
        out.push('…');
    }
    out
}

fn clock() -> String {
    let format = time::macros::format_description!("[hour]:[minute]:[second]");
    warroom_proto::now()
        .to_offset(time::UtcOffset::UTC)
        .format(format)
        .unwrap_or_default()
}

/// Where the watch prints: transition lines, and on a terminal the live view below them.
struct View {
    live: bool,
    /// Lines of the live view on screen now, erased before anything else is printed.
    drawn: usize,
    out: std::io::Stdout,
}

impl View {
    fn new(live: bool) -> View {
        View {
            live,
            drawn: 0,
            out: std::io::stdout(),
        }
    }

    /// Prints a line above the live view.
    fn line(&mut self, text: &str) -> Result<()> {
        self.clear()?;
        let mut out = self.out.lock();
        writeln!(out, "{text}").context("writing to stdout")?;
        out.flush().context("writing to stdout")
    }

    /// Erases the live view.
    fn clear(&mut self) -> Result<()> {
        if self.drawn > 0 {
            let mut out = self.out.lock();
            // Up to the view's first line, then erase to the end of the screen.
            write!(out, "\x1b[{}F\x1b[J", self.drawn).context("writing to stdout")?;
            self.drawn = 0;
        }
        Ok(())
    }

    /// Draws the live view of `status` (a terminal only).
    fn draw(&mut self, status: &RequestStatus) -> Result<()> {
        if !self.live || status.clusters.is_empty() {
            return Ok(());
        }
        self.clear()?;
        let now = warroom_proto::now();
        let mut out = self.out.lock();
        for (name, cluster) in &status.clusters {
            writeln!(out, "{}", progress_line(name, cluster, now)).context("writing to stdout")?;
        }
        let running: Vec<&TurnStatus> = status
            .turns
            .iter()
            .filter(|t| t.phase == ClusterPhase::Running)
            .collect();
        for turn in &running {
            writeln!(out, "{}", turn_progress_line(turn)).context("writing to stdout")?;
        }
        out.flush().context("writing to stdout")?;
        self.drawn = status.clusters.len() + running.len();
        Ok(())
    }

    /// Waits `interval`, redrawing the live view every second so elapsed times move.
    fn wait(&mut self, interval: Duration, status: Option<&RequestStatus>) -> Result<()> {
        let end = Instant::now() + interval;
        loop {
            if let Some(status) = status {
                self.draw(status)?;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(if self.live {
                Duration::from_secs(1)
            } else {
                left
            }));
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(value: serde_json::Value) -> RequestStatus {
        let mut base = serde_json::json!({
            "id": "r1", "phase": "running", "results_dir": "results/r1", "revision": 4,
            "updated_at": "2026-11-24T10:00:00Z",
            "session": {"state": "open", "duration_secs": 7200,
                        "expires_at": "2026-11-24T12:00:00Z", "turns": 0, "cost_usd": 0.0}
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), value.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(base).expect("a status")
    }

    #[test]
    fn a_session_and_its_turns_have_transition_lines() {
        let first = status(serde_json::json!({}));
        assert_eq!(transitions(None, &first), ["r1 running", "  session: open"]);
        let asked = status(serde_json::json!({"turns": [
            {"turn": 1, "cluster": "prod-1", "asked_by": "alice",
             "asked_at": "2026-11-24T10:01:00Z", "phase": "running"}
        ]}));
        assert_eq!(
            transitions(Some(&first), &asked),
            ["  turn 1 (prod-1): running"]
        );
        let ended = status(serde_json::json!({
            "session": {"state": "ended", "duration_secs": 7200,
                        "expires_at": "2026-11-24T12:00:00Z", "turns": 1, "cost_usd": 0.1,
                        "ended": "stopped by alice\u{1b}[2J"},
            "turns": [
                {"turn": 1, "cluster": "prod-1", "asked_by": "alice",
                 "asked_at": "2026-11-24T10:01:00Z", "phase": "failed", "error": "boom"}
            ]
        }));
        assert_eq!(
            transitions(Some(&asked), &ended),
            [
                "  session: ended (stopped by alice?[2J)",
                "  turn 1 (prod-1): running -> failed (boom)"
            ]
        );
    }
}
