//! `claude-warroom status`: where a request is, read from `status.json` in git.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use warroom_proto::{PodPhase, RequestStatus, SessionState, SessionStatus, Timestamp, TurnStatus};

use crate::results::Target;

/// Show where a request is: its phase, each cluster's phase, and any error.
///
/// Fetches `origin/<BRANCH>` and reads the request's `status.json`, which the secure zone's
/// publisher rewrites at every transition. It is usually `results/<ID>/status.json`; for a
/// request with `spec.output.destination` it is in that folder. Reads git only.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom status 2026-01-15-1430-etcd-latency-3f9a2c
  claude-warroom status --request-id 2026-01-15-1430-etcd-latency-3f9a2c --json | jq .phase
  watch -n 10 claude-warroom status <ID>
  claude-warroom status --verify <ID>     # refuse results the publisher did not sign

Phases: accepted, dispatched, running; final: completed, failed, timed_out, cancelled,
rejected (the request was invalid or not allowed; the errors are listed). A dispatched
cluster shows its place in its cluster's queue, `dispatched (queued #2)`: it waits as long
as a runner of that cluster is alive, however busy.

Exit codes: 0 the status was shown, 1 error (unknown id, git failure; with --verify, a
commit of the results folder not signed by the publisher), 2 usage error, 3 no status yet
(the request is pending: the secure zone has not picked it up yet).

With --watch (or `claude-warroom wait <ID>`): follows the request until it is final, one line
per transition (and on a terminal a live view of each cluster: elapsed time, turns, tool
calls, the last tool call). Exit codes then: 0 completed, 1 error, 2 usage error, 4 failed,
5 timed_out, 6 cancelled, 7 rejected, 8 still not final after --timeout.")]
pub struct Args {
    #[command(flatten)]
    pub target: Target,

    /// Print `status.json` exactly as committed, for scripts. With --watch: every new status,
    /// one compact JSON document per line.
    #[arg(long)]
    pub json: bool,

    /// Follow the request until it is final (see the exit codes below).
    #[arg(long, short = 'w')]
    pub watch: bool,

    /// With --watch: how often to fetch (`10s`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    pub interval: std::time::Duration,

    /// With --watch: stop waiting after this long (exit code 8).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub timeout: Option<std::time::Duration>,
}

/// `10s`, `2m`, `500ms`; at least 100 ms, so a watch never hammers the git server.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let duration = parse_duration(text)?;
    if duration < std::time::Duration::from_millis(100) {
        return Err(format!("`{text}` is shorter than 100ms"));
    }
    Ok(duration)
}

/// A duration as every flag of the command takes it: `10s`, `2m`, `1h30m`.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like `10s` or `2m`: {e}"))
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.watch {
        return crate::watch::Watch {
            target: &args.target,
            json: args.json,
            interval: args.interval,
            timeout: args.timeout,
        }
        .run();
    }
    let results = args.target.locate()?;
    results.report_verification();
    let mut stdout = std::io::stdout().lock();
    if args.json {
        stdout
            .write_all(&results.status_bytes)
            .context("writing to stdout")?;
    } else {
        let text = render(
            &results.status,
            &results.dir,
            &results.rev,
            warroom_proto::now(),
        );
        stdout
            .write_all(text.as_bytes())
            .context("writing to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The status for people.
pub(crate) fn render(status: &RequestStatus, dir: &str, rev: &str, now: Timestamp) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "request   {}", status.id);
    let _ = writeln!(out, "phase     {}", status.phase);
    if let Some(mode) = status.mode {
        let _ = writeln!(out, "mode      {}", mode.as_str());
    }
    if let Some(engineer) = &status.engineer {
        let _ = writeln!(out, "engineer  {engineer}");
    }
    let _ = writeln!(
        out,
        "updated   {} ({}, revision {})",
        format_time(status.updated_at),
        ago(now - status.updated_at),
        status.revision
    );
    let _ = writeln!(out, "results   {dir}/ on {rev}");
    match &status.verification {
        Some(v) if v.verified => {
            let _ = writeln!(out, "verified  yes, signed by {}", v.signed_by.join(", "));
        }
        Some(_) => {
            let _ = writeln!(
                out,
                "verified  NO: the gateway runs without a policy; nobody checked who wrote this request"
            );
        }
        None => {}
    }
    for notice in &status.notices {
        // The message names a file whose name anyone who can push chooses: no control
        // characters reach the terminal.
        let _ = writeln!(
            out,
            "notice    {}: {}",
            notice.kind.as_str(),
            printable(&notice.message)
        );
    }
    // Errors quote what came from the secure zone (an agent's words, a file name anyone who
    // can push chose): no control characters reach the terminal.
    if let Some(error) = &status.error {
        let _ = writeln!(out, "error     {}", printable(error));
    }
    for error in &status.errors {
        let _ = writeln!(out, "  - {}", printable(&error.to_string()));
    }
    if let Some(synthesis) = &status.synthesis {
        let detail = match (&synthesis.claims, &synthesis.error) {
            (Some(claims), _) => format!(
                ": {} claims supported, {} unsupported (README.md opens with it)",
                claims.supported, claims.unsupported
            ),
            (None, Some(error)) => format!(": {}", printable(error)),
            (None, None) => String::new(),
        };
        let _ = writeln!(out, "synthesis {}{detail}", synthesis.phase.as_str());
    }
    if let Some(session) = &status.session {
        let _ = writeln!(out, "session   {}", session_line(session, now));
        if let Some(pod) = pod_line(session) {
            let _ = writeln!(out, "pod       {pod}");
        }
    }

    if !status.clusters.is_empty() {
        let rows: Vec<[String; 7]> = status
            .clusters
            .iter()
            .map(|(name, cluster)| {
                [
                    name.to_string(),
                    cluster.kind.as_str().to_owned(),
                    match &cluster.queued {
                        Some(queued) => format!("{} (queued #{})", cluster.phase, queued.position),
                        None => cluster.phase.as_str().to_owned(),
                    },
                    cluster.duration_secs.map_or("-".to_owned(), duration),
                    cluster
                        .cost_usd
                        .map_or("-".to_owned(), |c| format!("${c:.2}")),
                    cluster.num_turns.map_or("-".to_owned(), |n| n.to_string()),
                    cluster.permission_denials.to_string(),
                ]
            })
            .collect();
        let header = [
            "CLUSTER", "TYPE", "PHASE", "DURATION", "COST", "TURNS", "DENIED",
        ];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        out.push('\n');
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (cell, width) in cells.iter().zip(widths) {
                let _ = write!(text, "{cell:<width$}  ");
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&header.map(str::to_owned));
        for row in &rows {
            line(row);
        }
        for (name, cluster) in &status.clusters {
            if let Some(error) = &cluster.error {
                let _ = writeln!(out, "{name}: {}", printable(error));
            }
        }
    }
    if !status.turns.is_empty() {
        out.push('\n');
        out.push_str(&turn_lines(&status.turns));
    }
    if status.phase.is_final() && status.phase != warroom_proto::RequestPhase::Rejected {
        let _ = writeln!(out, "\nreport: claude-warroom get-results {}", status.id);
    }
    out
}

/// The session in a line: `open, 1h12m left, 3 turns, $0.42`, or `ended: stopped by alice
/// (3 turns, $0.42)`.
fn session_line(session: &SessionStatus, now: Timestamp) -> String {
    let turns = match session.turns {
        1 => "1 turn".to_owned(),
        n => format!("{n} turns"),
    };
    let figures = format!("{turns}, ${:.2}", session.cost_usd);
    match session.state {
        SessionState::Open => {
            let left = (session.expires_at - now).whole_seconds();
            let left = if left > 0 {
                format!("{} left", remaining(left.unsigned_abs()))
            } else {
                "its time is up".to_owned()
            };
            format!("open, {left}, {figures}")
        }
        // Why it ended is the secure zone's text, naming whoever stopped it.
        SessionState::Ended => match &session.ended {
            Some(why) => format!("ended: {} ({figures})", printable(why)),
            None => format!("ended ({figures})"),
        },
    }
}

/// The session's pod in a line: `warroom-session-x held: kubectl exec -it warroom-session-x
/// -c session -- claude`, or where it is and why it failed.
fn pod_line(session: &SessionStatus) -> Option<String> {
    let phase = session.pod_phase?;
    let pod = session.pod.as_deref().map(printable).unwrap_or_default();
    Some(match phase {
        PodPhase::Held if session.state == SessionState::Open => format!(
            "{pod} held: kubectl exec -it {pod} -c session -- claude \
             (in the runner's namespace)"
        ),
        PodPhase::Failed => format!(
            "{pod} failed: {}",
            session
                .pod_error
                .as_deref()
                .map(printable)
                .unwrap_or_default()
        ),
        phase => format!("{pod} {}", phase.as_str()),
    })
}

/// One line per follow-up turn, `turn 2  prod-1  completed  turn-2.md`, the clusters and
/// phases in columns, then each turn's error.
fn turn_lines(turns: &[TurnStatus]) -> String {
    let cluster_width = turns
        .iter()
        .map(|t| t.cluster.as_str().len())
        .max()
        .unwrap_or(0);
    let phase_width = turns
        .iter()
        .map(|t| t.phase.as_str().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for turn in turns {
        let mut line = format!(
            "turn {}  {:<cluster_width$}  {:<phase_width$}",
            turn.turn,
            turn.cluster.as_str(),
            turn.phase.as_str()
        );
        if let Some(report) = &turn.report {
            let _ = write!(line, "  {}", printable(report));
        }
        if let Some(progress) = turn.progress.as_ref().filter(|_| !turn.phase.is_final()) {
            let _ = write!(line, "  {}", crate::watch::progress_summary(progress));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for turn in turns {
        if let Some(error) = &turn.error {
            let _ = writeln!(out, "turn {}: {}", turn.turn, printable(error));
        }
    }
    out
}

/// `1h12m`, `12m`, `40s`: what is left of a session.
fn remaining(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// `text` with every control character (escape sequences, newlines) shown as `?`.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn format_time(at: Timestamp) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(format)
        .unwrap_or_else(|_| at.to_string())
}

/// "3 min ago", for a glance at how fresh a status is.
fn ago(elapsed: time::Duration) -> String {
    let secs = elapsed.whole_seconds();
    if secs < 0 {
        return "in the future: check your clock".to_owned();
    }
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h {} min ago", secs / 3600, secs % 3600 / 60),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// `2m 13s`.
fn duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::macros::datetime;
    use warroom_proto::{ClusterPhase, ClusterStatus, ClusterType, RequestPhase};

    use super::*;

    #[test]
    fn render_shows_every_cluster_and_the_error() {
        let mut clusters = BTreeMap::new();
        let mut hub = ClusterStatus::new(ClusterType::Hub, ClusterPhase::Completed);
        hub.duration_secs = Some(133.4);
        hub.cost_usd = Some(0.4213);
        hub.num_turns = Some(12);
        clusters.insert("production-hub".parse().unwrap(), hub);
        let mut hosted = ClusterStatus::new(ClusterType::Hosted, ClusterPhase::Failed);
        hosted.error = Some("the agent hit the turn limit".to_owned());
        clusters.insert("prod-cluster-1".parse().unwrap(), hosted);
        let status = RequestStatus {
            id: "r1".parse().unwrap(),
            phase: RequestPhase::Failed,
            clusters,
            error: Some("prod-cluster-1 failed".to_owned()),
            errors: Vec::new(),
            mode: Some(warroom_proto::CoordinationMode::Sequential),
            engineer: Some("a@b.c".to_owned()),
            results_dir: "results/r1".parse().unwrap(),
            commit: None,
            revision: 7,
            updated_at: datetime!(2026-01-15 14:30:00 UTC),
            verification: None,
            notices: Vec::new(),
            cancelled: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        };
        let text = render(
            &status,
            "results/r1",
            "origin/main",
            datetime!(2026-01-15 14:33:10 UTC),
        );
        assert!(text.contains("phase     failed"), "{text}");
        assert!(
            text.contains("2026-01-15 14:30:00 UTC (3 min ago, revision 7)"),
            "{text}"
        );
        assert!(text.contains("error     prod-cluster-1 failed"), "{text}");
        assert!(
            text.contains("production-hub  hub     completed  2m 13s    $0.42  12"),
            "{text}"
        );
        assert!(
            text.contains("prod-cluster-1: the agent hit the turn limit"),
            "{text}"
        );
    }

    #[test]
    fn a_queued_cluster_shows_its_place() {
        let mut waiting = ClusterStatus::new(ClusterType::Hosted, ClusterPhase::Dispatched);
        waiting.queued = Some(warroom_proto::Queued {
            position: 2,
            since: datetime!(2026-01-15 14:30:00 UTC),
        });
        let status = RequestStatus {
            id: "r1".parse().unwrap(),
            phase: RequestPhase::Dispatched,
            clusters: BTreeMap::from([("prod-cluster-1".parse().unwrap(), waiting)]),
            error: None,
            errors: Vec::new(),
            mode: None,
            engineer: None,
            results_dir: "results/r1".parse().unwrap(),
            commit: None,
            revision: 2,
            updated_at: datetime!(2026-01-15 14:30:00 UTC),
            verification: None,
            notices: Vec::new(),
            cancelled: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        };
        let text = render(
            &status,
            "results/r1",
            "origin/main",
            datetime!(2026-01-15 14:31:00 UTC),
        );
        assert!(
            text.contains("prod-cluster-1  hosted  dispatched (queued #2)"),
            "{text}"
        );
    }

    #[test]
    fn render_says_who_signed_and_lists_notices_without_control_characters() {
        let mut status = RequestStatus {
            id: "r1".parse().unwrap(),
            phase: RequestPhase::Completed,
            clusters: BTreeMap::new(),
            error: None,
            errors: Vec::new(),
            mode: None,
            engineer: None,
            results_dir: "results/r1".parse().unwrap(),
            commit: None,
            revision: 3,
            updated_at: datetime!(2026-01-15 14:30:00 UTC),
            verification: Some(warroom_proto::Verification {
                verified: true,
                signed_by: vec!["SHA256:abc".to_owned()],
            }),
            notices: vec![warroom_proto::Notice {
                kind: warroom_proto::NoticeKind::ChangedAfterAcceptance,
                file: "requests/pending/r1.yaml".to_owned(),
                version: "v2".to_owned(),
                commit: "c2".to_owned(),
                at: datetime!(2026-01-15 14:31:00 UTC),
                message: "requests/pending/r1\u{1b}[2J.yaml was changed".to_owned(),
            }],
            cancelled: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        };
        let now = datetime!(2026-01-15 14:33:10 UTC);
        let text = render(&status, "results/r1", "origin/main", now);
        assert!(
            text.contains("verified  yes, signed by SHA256:abc"),
            "{text}"
        );
        assert!(
            text.contains(
                "notice    changed_after_acceptance: requests/pending/r1?[2J.yaml was changed"
            ),
            "{text}"
        );
        status.verification = Some(warroom_proto::Verification::unverified());
        let text = render(&status, "results/r1", "origin/main", now);
        assert!(text.contains("verified  NO"), "{text}");
    }

    #[test]
    fn the_synthesis_is_one_line_with_its_counts_or_why_there_is_none() {
        let mut status = status_for_synthesis();
        let now = status.updated_at;
        status.synthesis = Some(warroom_proto::SynthesisStatus {
            phase: warroom_proto::SynthesisPhase::Completed,
            cluster: None,
            claims: Some(warroom_proto::FindingCounts {
                supported: 2,
                unsupported: 1,
            }),
            error: None,
            cost_usd: None,
            run: None,
        });
        let text = render(&status, "results/r1", "main", now);
        assert!(
            text.contains("synthesis completed: 2 claims supported, 1 unsupported"),
            "{text}"
        );
        let line = status.synthesis.as_mut().expect("set above");
        line.phase = warroom_proto::SynthesisPhase::Failed;
        line.claims = None;
        line.error = Some("no synthesis\u{1b}[2J within 10m".to_owned());
        let text = render(&status, "results/r1", "main", now);
        assert!(
            text.contains("synthesis failed: no synthesis?[2J within 10m"),
            "{text}"
        );
    }

    fn status_for_synthesis() -> RequestStatus {
        serde_json::from_value(serde_json::json!({
            "id": "r1", "phase": "running", "results_dir": "results/r1", "revision": 4,
            "updated_at": "2026-11-24T10:00:00Z"
        }))
        .expect("a status")
    }

    #[test]
    fn a_session_shows_its_state_and_a_line_per_turn() {
        let mut status: RequestStatus = serde_json::from_value(serde_json::json!({
            "id": "s1", "phase": "running", "results_dir": "results/s1", "revision": 9,
            "updated_at": "2026-11-24T10:00:00Z",
            "session": {"state": "open", "duration_secs": 7200,
                        "expires_at": "2026-11-24T11:12:30Z", "turns": 3, "cost_usd": 0.4213},
            "turns": [
                {"turn": 1, "cluster": "prod-1", "asked_by": "alice",
                 "asked_at": "2026-11-24T09:10:00Z", "phase": "completed", "report": "turn-1.md"},
                {"turn": 2, "cluster": "production-hub", "asked_by": "alice",
                 "asked_at": "2026-11-24T09:20:00Z", "phase": "failed",
                 "report": "turn-2\u{1b}[2J.md", "error": "the agent\nhit the turn limit"},
                {"turn": 3, "cluster": "prod-1", "asked_by": "bob",
                 "asked_at": "2026-11-24T09:50:00Z", "phase": "pending"}
            ]
        }))
        .expect("a status");
        let now = status.updated_at;
        let text = render(&status, "results/s1", "origin/main", now);
        for expected in [
            "session   open, 1h12m left, 3 turns, $0.42\n",
            "turn 1  prod-1          completed  turn-1.md\n",
            "turn 2  production-hub  failed     turn-2?[2J.md\n",
            "turn 3  prod-1          pending\n",
            "turn 2: the agent?hit the turn limit\n",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }

        let session = status.session.as_mut().expect("set above");
        session.state = SessionState::Ended;
        session.ended = Some("stopped by alice".to_owned());
        let text = render(&status, "results/s1", "origin/main", now);
        assert!(
            text.contains("session   ended: stopped by alice (3 turns, $0.42)\n"),
            "{text}"
        );
    }

    #[test]
    fn what_is_left_of_a_session_reads_naturally() {
        assert_eq!(remaining(40), "40s");
        assert_eq!(remaining(12 * 60 + 5), "12m");
        assert_eq!(remaining(72 * 60), "1h12m");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(5.4), "5s");
        assert_eq!(duration(133.0), "2m 13s");
        assert_eq!(duration(7322.0), "2h 02m");
    }
}
