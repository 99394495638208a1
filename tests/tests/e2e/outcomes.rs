//! Runs that must not end green: a refused command, a model looping past the turn limit, a
//! run past its timeout and a failing model API, each reported honestly in `status.json`.

use warroom_proto::{ClusterPhase, RequestPhase};
use warroom_scripted_model::{Conversation, Script, Turn};

use crate::harness::{Pipeline, assert_phase, request_yaml};

const CLUSTER: &str = "prod-cluster-1";

fn one_cluster_request(timeout: u64) -> String {
    request_yaml(
        &[("hosted", CLUSTER)],
        "parallel",
        "Why does the API server time out?",
        timeout,
    )
}

/// `kubectl delete` is outside the read-only policy: the CLI refuses it, the refusal is in
/// `audit.jsonl` and counted in the status, and the logging `kubectl` never saw it. The model
/// then finishes normally, so the run itself completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_command_is_refused_audited_and_never_runs() {
    let script = Script::single(vec![
        Turn::bash("kubectl delete pod x -n clusters-prod-1"),
        Turn::bash("kubectl get pods -n clusters-prod-1"),
        Turn::text("FINDING: deleting was refused; the pods are listed."),
    ]);
    let pipeline = Pipeline::start(&[CLUSTER], script).await;
    let id = "2026-11-24-1100-refused-delete";
    pipeline.push_request(id, &one_cluster_request(300));

    let status = pipeline.wait_report(id, &[CLUSTER]).await;
    assert_phase(&status, RequestPhase::Completed);
    assert_eq!(status.clusters[CLUSTER].permission_denials, 1, "{status:?}");

    let calls = pipeline.kubectl_calls();
    assert_eq!(
        calls,
        vec!["get pods -n clusters-prod-1".to_owned()],
        "only the allowed command reached kubectl"
    );
    let audit = pipeline.audit(id);
    let refused: Vec<_> = audit
        .iter()
        .filter(|e| e["event"] == "tool_refused")
        .collect();
    assert_eq!(refused.len(), 1, "{audit:#?}");
    assert_eq!(
        refused[0]["input"]["command"], "kubectl delete pod x -n clusters-prod-1",
        "{audit:#?}"
    );
    let report = pipeline
        .result(id, &format!("{CLUSTER}.md"))
        .expect("report");
    assert!(report.contains("kubectl delete pod x"), "{report}");
    pipeline.shutdown().await;
}

/// A model that never stops asking for tools ends at the runner's `--max-turns` as `failed`,
/// with the turn limit as the reason at both levels of `status.json`.
#[tokio::test(flavor = "multi_thread")]
async fn a_model_looping_past_the_turn_limit_fails_with_the_reason() {
    let script = Script::new().with(
        Conversation::new(vec![Turn::bash("kubectl get pods -n clusters-prod-1")]).repeat_last(),
    );
    let pipeline = Pipeline::start_with(&[CLUSTER], script, |options| {
        options.extra_args.runner = vec!["--max-turns".to_owned(), "2".to_owned()];
    })
    .await;
    let id = "2026-11-24-1110-looping-model";
    pipeline.push_request(id, &one_cluster_request(300));

    let status = pipeline.wait_final(id).await;
    assert_phase(&status, RequestPhase::Failed);
    let cluster = &status.clusters[CLUSTER];
    assert_eq!(cluster.phase, ClusterPhase::Failed);
    let reason = cluster.error.as_deref().unwrap_or_default();
    assert!(reason.contains("turn limit of 2"), "{status:?}");
    assert!(
        status
            .error
            .as_deref()
            .is_some_and(|e| e.contains("turn limit")),
        "{status:?}"
    );
    assert!(
        pipeline.kubectl_calls().len() <= 2,
        "the agent stopped at the limit: {:?}",
        pipeline.kubectl_calls()
    );
    pipeline.shutdown().await;
}

/// A run past its timeout is stopped and ends `timed_out` with the reason. The runner's
/// `--max-timeout` (the secure zone's cap) cuts the request's 30 s to 2 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_past_its_timeout_is_stopped_and_ends_timed_out() {
    let script = Script::single(vec![Turn::Delayed {
        delay_ms: 60_000,
        turn: Box::new(Turn::text("too late")),
    }]);
    let pipeline = Pipeline::start_with(&[CLUSTER], script, |options| {
        options.extra_args.runner = ["--max-timeout", "2s", "--kill-grace", "1s"]
            .map(str::to_owned)
            .to_vec();
    })
    .await;
    let id = "2026-11-24-1120-slow-model";
    pipeline.push_request(id, &one_cluster_request(30));

    let status = pipeline.wait_final(id).await;
    assert_phase(&status, RequestPhase::TimedOut);
    let cluster = &status.clusters[CLUSTER];
    assert_eq!(cluster.phase, ClusterPhase::TimedOut, "{status:?}");
    assert!(
        cluster
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timeout of 2 s")),
        "{status:?}"
    );
    assert!(
        status
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timeout")),
        "{status:?}"
    );
    pipeline.shutdown().await;
}

/// An error from the model API ends the run `failed`, with the API's own message.
#[tokio::test(flavor = "multi_thread")]
async fn a_model_api_error_fails_with_the_api_message() {
    let script = Script::single(vec![Turn::ApiError {
        status: 400,
        error_type: "invalid_request_error".to_owned(),
        message: "scripted refusal 7f3a: this organization is disabled".to_owned(),
    }]);
    let pipeline = Pipeline::start(&[CLUSTER], script).await;
    let id = "2026-11-24-1130-api-error";
    pipeline.push_request(id, &one_cluster_request(300));

    let status = pipeline.wait_final(id).await;
    assert_phase(&status, RequestPhase::Failed);
    let reason = status.clusters[CLUSTER]
        .error
        .as_deref()
        .unwrap_or_default();
    assert!(reason.contains("scripted refusal 7f3a"), "{status:?}");
    assert!(
        status
            .error
            .as_deref()
            .is_some_and(|e| e.contains("scripted refusal 7f3a")),
        "{status:?}"
    );
    assert!(pipeline.kubectl_calls().is_empty());
    pipeline.shutdown().await;
}
