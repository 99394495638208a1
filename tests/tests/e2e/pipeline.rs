//! The product end to end: a request pushed to git comes back as a report in git.

use warroom_proto::{ClusterPhase, RequestPhase};
use warroom_scripted_model::{Conversation, Script, Turn};

use crate::harness::{KUBECTL_PODS, Pipeline, assert_phase, request_yaml};

/// A request pushed as a plain git commit, not through our CLI, runs the real Claude Code
/// CLI in its cluster's runner: the Bash command the model asked for really runs, its output
/// is in `audit.jsonl`, and the model's final text is the cluster's report.
#[tokio::test(flavor = "multi_thread")]
async fn plain_git_commit_comes_back_completed_with_report_and_audit() {
    let script = Script::single(vec![
        Turn::bash("kubectl get pods -n clusters-prod-1"),
        Turn::text("FINDING: kube-apiserver is crash-looping in clusters-prod-1."),
    ]);
    let pipeline = Pipeline::start(&["prod-cluster-1"], script).await;
    let id = "2026-11-24-1000-plain-commit";
    pipeline.push_request(
        id,
        &request_yaml(
            &[("hosted", "prod-cluster-1")],
            "parallel",
            "Why does the API server time out?",
            300,
        ),
    );

    let status = pipeline.wait_report(id, &["prod-cluster-1"]).await;
    assert_phase(&status, RequestPhase::Completed);
    let cluster = &status.clusters["prod-cluster-1"];
    assert_eq!(cluster.phase, ClusterPhase::Completed);
    assert!(cluster.num_turns.is_some_and(|n| n >= 2), "{cluster:?}");

    let report = pipeline
        .result(id, "prod-cluster-1.md")
        .expect("cluster report");
    assert!(
        report.contains("kube-apiserver is crash-looping in clusters-prod-1"),
        "the report holds the model's final text:\n{report}"
    );
    assert_eq!(
        pipeline.kubectl_calls(),
        vec!["get pods -n clusters-prod-1".to_owned()],
        "the command really ran, once"
    );
    let audit = pipeline.audit(id);
    assert!(
        audit.iter().any(|e| e["event"] == "tool_call"
            && e["input"]["command"] == "kubectl get pods -n clusters-prod-1"),
        "the call is audited: {audit:#?}"
    );
    assert!(
        audit.iter().any(|e| e["event"] == "tool_result"
            && e["output"]
                .as_str()
                .is_some_and(|o| o.contains(KUBECTL_PODS))),
        "the command's output is audited: {audit:#?}"
    );
    let readme = pipeline.result(id, "README.md").expect("aggregated report");
    assert!(readme.contains("prod-cluster-1.md"), "{readme}");
    // The stack runs without a policy: every report says nobody verified the request.
    assert_eq!(
        status.verification.as_ref().map(|v| v.verified),
        Some(false),
        "{status:?}"
    );
    assert!(readme.contains("**Not verified.**"), "{readme}");
    assert!(report.contains("**Not verified.**"), "{report}");
    pipeline.shutdown().await;
}

const HUB: &str = "production-hub";
const HOSTED: &str = "prod-cluster-1";

/// Each cluster's own conversation, told apart by the runner's prompt line for the cluster.
fn per_cluster_script(hub_text: &str, hosted_text: &str) -> Script {
    Script::new()
        .with(
            Conversation::new(vec![
                Turn::bash("kubectl get pods -n clusters-prod-1"),
                Turn::text(hub_text),
            ])
            .matching(format!("- Cluster: {HUB} (hub cluster)")),
        )
        .with(
            Conversation::new(vec![
                Turn::bash("kubectl get nodes"),
                Turn::text(hosted_text),
            ])
            .matching(format!("- Cluster: {HOSTED} (hosted cluster)")),
        )
}

/// A parallel request runs on both clusters and gives one report per cluster, each holding
/// its own cluster's findings, and the aggregated README linking both.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_request_gives_a_report_per_cluster_and_the_aggregate() {
    let hub_text = "FINDING-HUB: etcd fsync takes 2s on the hub.";
    let hosted_text = "FINDING-HOSTED: the workers are all Ready.";
    let pipeline = Pipeline::start(&[HUB, HOSTED], per_cluster_script(hub_text, hosted_text)).await;
    let id = "2026-11-24-1010-parallel";
    pipeline.push_request(
        id,
        &request_yaml(
            &[("hub", HUB), ("hosted", HOSTED)],
            "parallel",
            "Why does the API server time out?",
            300,
        ),
    );

    let status = pipeline.wait_report(id, &[HUB, HOSTED]).await;
    assert_phase(&status, RequestPhase::Completed);
    for cluster in [HUB, HOSTED] {
        assert_eq!(status.clusters[cluster].phase, ClusterPhase::Completed);
    }
    let hub = pipeline
        .result(id, &format!("{HUB}.md"))
        .expect("hub report");
    let hosted = pipeline
        .result(id, &format!("{HOSTED}.md"))
        .expect("hosted report");
    assert!(
        hub.contains(hub_text) && !hub.contains(hosted_text),
        "{hub}"
    );
    assert!(
        hosted.contains(hosted_text) && !hosted.contains(hub_text),
        "{hosted}"
    );

    let readme = pipeline.result(id, "README.md").expect("aggregated report");
    // Clusters are counted per phase, then listed grouped by outcome.
    assert!(readme.contains("| completed | 2 |"), "{readme}");
    for cluster in [HUB, HOSTED] {
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| `{cluster}`")))
            .unwrap_or_else(|| panic!("no row for {cluster}:\n{readme}"));
        assert!(row.contains(&format!("({cluster}.md)")), "{row}");
    }
    let mut calls = pipeline.kubectl_calls();
    calls.sort();
    assert_eq!(calls, ["get nodes", "get pods -n clusters-prod-1"]);
    pipeline.shutdown().await;
}

/// A sequential request runs the second cluster only after the first finished, and the
/// second cluster's prompt carries the first cluster's findings.
#[tokio::test(flavor = "multi_thread")]
async fn sequential_request_passes_the_first_findings_to_the_second_cluster() {
    let hub_text = "FINDING-HUB: etcd fsync takes 2s on the hub.";
    let hosted_text = "FINDING-HOSTED: the timeouts follow the hub's etcd.";
    let pipeline = Pipeline::start(&[HUB, HOSTED], per_cluster_script(hub_text, hosted_text)).await;
    let id = "2026-11-24-1020-sequential";
    pipeline.push_request(
        id,
        &request_yaml(
            &[("hub", HUB), ("hosted", HOSTED)],
            "sequential",
            "Why does the API server time out?",
            300,
        ),
    );

    let status = pipeline.wait_report(id, &[HUB, HOSTED]).await;
    assert_phase(&status, RequestPhase::Completed);
    let (hub, hosted) = (&status.clusters[HUB], &status.clusters[HOSTED]);
    assert!(
        hub.finished_at.is_some() && hub.finished_at <= hosted.started_at,
        "the hosted cluster started after the hub finished: {status:?}"
    );

    let turns = pipeline.model.turn_requests();
    let hub_marker = format!("- Cluster: {HUB} (hub cluster)");
    let hosted_marker = format!("- Cluster: {HOSTED} (hosted cluster)");
    let first_hosted = turns
        .iter()
        .position(|r| r.first_user_text().contains(&hosted_marker))
        .expect("the hosted cluster's prompt reached the model");
    let last_hub = turns
        .iter()
        .rposition(|r| r.first_user_text().contains(&hub_marker))
        .expect("the hub's prompt reached the model");
    assert!(
        last_hub < first_hosted,
        "the hub's conversation ended first"
    );
    let prompt = turns[first_hosted].first_user_text();
    assert!(
        prompt.contains(hub_text),
        "the hosted prompt carries the hub's findings:\n{prompt}"
    );
    assert!(
        turns
            .iter()
            .filter(|r| r.first_user_text().contains(&hub_marker))
            .all(|r| !r.first_user_text().contains(hosted_text)),
        "nothing flows backwards"
    );
    pipeline.shutdown().await;
}

/// An invalid request pushed in the same commit as a valid one: the valid one completes,
/// the invalid one is rejected with errors that name its fields.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_request_is_rejected_without_blocking_its_neighbour() {
    let script = Script::single(vec![Turn::text(
        "FINDING: nothing wrong with the valid one.",
    )]);
    let pipeline = Pipeline::start(&[HOSTED], script).await;
    let valid = "2026-11-24-1030-valid";
    let invalid = "2026-11-24-1030-invalid";
    let good = request_yaml(&[("hosted", HOSTED)], "parallel", "Look around.", 300);
    let bad = good
        .replace("    timeout: 300", "    timeot: 300")
        .replace("      - grep", "      - rm-rf");
    pipeline.push_requests(&[(invalid, &bad), (valid, &good)]);

    let status = pipeline.wait_final(valid).await;
    assert_phase(&status, RequestPhase::Completed);

    let rejected = pipeline.wait_final(invalid).await;
    assert_phase(&rejected, RequestPhase::Rejected);
    let fields: Vec<&str> = rejected.errors.iter().map(|e| e.field.as_str()).collect();
    for field in [
        "spec.investigation.timeot",
        "spec.investigation.allowedTools[2]",
    ] {
        assert!(fields.contains(&field), "{field} not named in {fields:?}");
    }
    let error = rejected.error.as_deref().unwrap_or_default();
    assert!(error.contains(&format!("{invalid}.yaml")), "{error}");
    let readme = pipeline
        .result(invalid, "README.md")
        .expect("rejection report");
    assert!(readme.contains("timeot"), "{readme}");
    assert_eq!(
        pipeline.model.turn_requests().len(),
        1,
        "only the valid request reached the model"
    );
    pipeline.shutdown().await;
}

/// Restarting every daemon (gateway included) does not run a processed request again: its
/// conversation, its command and its status stay as they were, while a new request still runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_does_not_run_processed_requests_again() {
    let script = Script::new()
        .with(
            Conversation::new(vec![
                Turn::bash("kubectl get pods -n first"),
                Turn::text("FINDING: first."),
            ])
            .matching("MARKER-FIRST"),
        )
        .with(
            Conversation::new(vec![
                Turn::bash("kubectl get pods -n second"),
                Turn::text("FINDING: second."),
            ])
            .matching("MARKER-SECOND"),
        );
    let mut pipeline = Pipeline::start(&[HOSTED], script).await;
    let first = "2026-11-24-1040-first";
    pipeline.push_request(
        first,
        &request_yaml(&[("hosted", HOSTED)], "parallel", "MARKER-FIRST", 300),
    );
    let before = pipeline.wait_report(first, &[HOSTED]).await;
    assert_phase(&before, RequestPhase::Completed);

    pipeline.restart().await;
    let second = "2026-11-24-1040-second";
    pipeline.push_request(
        second,
        &request_yaml(&[("hosted", HOSTED)], "parallel", "MARKER-SECOND", 300),
    );
    let after = pipeline.wait_report(second, &[HOSTED]).await;
    assert_phase(&after, RequestPhase::Completed);

    assert_eq!(
        pipeline.kubectl_calls(),
        ["get pods -n first", "get pods -n second"],
        "each request ran exactly once"
    );
    let first_turns = pipeline
        .model
        .turn_requests()
        .iter()
        .filter(|r| r.first_user_text().contains("MARKER-FIRST"))
        .count();
    assert_eq!(
        first_turns, 2,
        "the first conversation was not started again"
    );
    assert_eq!(
        pipeline.status(first),
        Some(before),
        "the first status is untouched"
    );
    pipeline.shutdown().await;
}
