//! A busy cluster queues work instead of failing it: the real runner (one task at a time)
//! investigates the first request, held inside a `kubectl` call, while the second request's
//! `status.json` shows it `queued` at position 1, well past the dispatcher's pickup timeout;
//! released, the first completes and then the second.

use std::time::Duration;

use warroom_proto::{ClusterPhase, RequestPhase};
use warroom_scripted_model::{Conversation, Script, Turn};
use warroom_testkit::wait_for;

use crate::harness::{FINAL_TIMEOUT, Pipeline, assert_phase, request_yaml};

const CLUSTER: &str = "busy-cluster";
/// The call the first investigation makes, which the test holds.
const HELD: &str = "get pods -n clusters-busy -l app=slow";
/// Short, so that the test sees the second request outlive it several times over.
const PICKUP_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_a_busy_cluster_waits_queued_and_runs_after_the_first() {
    let script = Script::new()
        .with(
            Conversation::new(vec![
                Turn::bash(format!("kubectl {HELD}")),
                Turn::text("FINDING: the first investigation is done."),
            ])
            .matching("FIRST-INVESTIGATION"),
        )
        .with(
            Conversation::new(vec![Turn::text(
                "FINDING: the second investigation is done.",
            )])
            .matching("SECOND-INVESTIGATION"),
        );
    let pipeline = Pipeline::start_with(&[CLUSTER], script, |options| {
        options.extra_args.dispatcher = vec![
            "--pickup-timeout".to_owned(),
            "2s".to_owned(),
            "--sweep-interval".to_owned(),
            "200ms".to_owned(),
        ];
    })
    .await;
    pipeline.kubectl_hold(HELD);
    let request = |marker: &str| {
        request_yaml(
            &[("hosted", CLUSTER)],
            "parallel",
            &format!("{marker}: why does the API server time out?"),
            300,
        )
    };

    let first = "2026-11-24-1200-busy-first";
    pipeline.push_request(first, &request("FIRST-INVESTIGATION"));
    wait_for(
        "the first investigation is inside kubectl",
        FINAL_TIMEOUT,
        || async { pipeline.kubectl_held(HELD).then_some(()) },
    )
    .await;

    let second = "2026-11-24-1200-busy-second";
    pipeline.push_request(second, &request("SECOND-INVESTIGATION"));
    let queued = wait_for(
        "the second request queued at position 1 in status.json",
        FINAL_TIMEOUT,
        || async {
            let status = pipeline.status(second)?;
            let cluster = &status.clusters[CLUSTER];
            (cluster.phase == ClusterPhase::Dispatched
                && cluster.queued.as_ref().is_some_and(|q| q.position == 1))
            .then_some(status)
        },
    )
    .await;
    assert_phase(&queued, RequestPhase::Dispatched);
    let since = queued.clusters[CLUSTER]
        .queued
        .as_ref()
        .map(|q| q.since)
        .expect("queued");

    // Three pickup timeouts later the first still runs and the second still waits: a live
    // runner's queue is never failed by the pickup timeout.
    let deadline = since + PICKUP_TIMEOUT * 3;
    wait_for(
        "three pickup timeouts have passed",
        FINAL_TIMEOUT,
        || async { (warroom_proto::now() > deadline).then_some(()) },
    )
    .await;
    let waiting = pipeline
        .status(second)
        .expect("the second request's status");
    assert_phase(&waiting, RequestPhase::Dispatched);
    assert_eq!(
        waiting.clusters[CLUSTER]
            .queued
            .as_ref()
            .map(|q| q.position),
        Some(1),
        "{waiting:?}"
    );
    let running = pipeline.status(first).expect("the first request's status");
    assert_phase(&running, RequestPhase::Running);

    pipeline.kubectl_release(HELD);
    let first_done = pipeline.wait_final(first).await;
    assert_phase(&first_done, RequestPhase::Completed);
    let second_done = pipeline.wait_final(second).await;
    assert_phase(&second_done, RequestPhase::Completed);
    assert_eq!(second_done.clusters[CLUSTER].queued, None);
    // One task at a time: the second started only once the first had finished.
    let first_finished = first_done.clusters[CLUSTER]
        .finished_at
        .expect("the first request's end");
    let second_started = second_done.clusters[CLUSTER]
        .started_at
        .expect("the second request's start");
    assert!(
        second_started >= first_finished,
        "the second started at {second_started}, before the first finished at {first_finished}"
    );
    let report = pipeline
        .result(second, &format!("{CLUSTER}.md"))
        .expect("the second request's report");
    assert!(
        report.contains("the second investigation is done"),
        "{report}"
    );
    pipeline.shutdown().await;
}
