//! Live progress: while the real Claude Code CLI runs an investigation (held inside its second
//! `kubectl` call), the request's `status.json` in git shows the cluster's turns, tool calls
//! and last tool call; the final status shows none, and the number of `status.json` commits
//! stays within the transitions plus one per progress interval.

use std::time::Instant;

use warroom_proto::{ClusterPhase, RequestPhase};
use warroom_scripted_model::{Conversation, Script, Turn};
use warroom_testkit::wait_for;

use crate::harness::{FINAL_TIMEOUT, Pipeline, assert_phase, request_yaml};

const CLUSTER: &str = "watched-cluster";
const HELD: &str = "get pods -n clusters-watched -l app=slow";

#[tokio::test(flavor = "multi_thread")]
async fn a_running_agents_progress_shows_in_status_json() {
    let script = Script::new().with(Conversation::new(vec![
        Turn::bash("kubectl get nodes"),
        Turn::bash(format!("kubectl {HELD}")),
        Turn::text("FINDING: the slow pods are fine."),
    ]));
    let pipeline = Pipeline::start_with(&[CLUSTER], script, |options| {
        options.extra_args.dispatcher = vec!["--progress-interval".to_owned(), "1s".to_owned()];
        options.extra_args.runner = vec!["--progress-interval".to_owned(), "1s".to_owned()];
    })
    .await;
    pipeline.kubectl_hold(HELD);
    let id = "2026-12-07-1500-progress";
    let pushed = Instant::now();
    pipeline.push_request(
        id,
        &request_yaml(
            &[("hosted", CLUSTER)],
            "parallel",
            "Why are pods slow?",
            300,
        ),
    );

    let progress = wait_for(
        "status.json shows the running agent's progress",
        FINAL_TIMEOUT,
        || async {
            let status = pipeline.status(id)?;
            let cluster = &status.clusters[CLUSTER];
            if cluster.phase != ClusterPhase::Running {
                return None;
            }
            cluster.progress.clone()
        },
    )
    .await;
    assert!(progress.tool_calls >= 1, "{progress:?}");
    assert!(progress.turns >= 1, "{progress:?}");
    assert_eq!(
        progress.last_tool_calls.first().map(String::as_str),
        Some("Bash: kubectl get nodes"),
        "{progress:?}"
    );
    assert!(progress.cost_usd.is_some(), "{progress:?}");

    wait_for(
        "the agent is inside the held call",
        FINAL_TIMEOUT,
        || async { pipeline.kubectl_held(HELD).then_some(()) },
    )
    .await;
    pipeline.kubectl_release(HELD);
    let status = pipeline.wait_final(id).await;
    let took = pushed.elapsed().as_secs();
    assert_phase(&status, RequestPhase::Completed);
    assert!(
        status.clusters[CLUSTER].progress.is_none(),
        "a finished cluster shows its figures, not its progress: {status:?}"
    );

    // Bounded: accepted, dispatched, running and completed, plus at most one progress
    // snapshot per second (the interval) of the whole request, and one for a partial second.
    let commits = pipeline
        .remote
        .git([
            "log",
            "--format=%H",
            "main",
            "--",
            &format!("results/{id}/status.json"),
        ])
        .lines()
        .count() as u64;
    assert!(
        commits <= 4 + took + 1,
        "{commits} commits of status.json for a request that took {took} s"
    );
    pipeline.shutdown().await;
}
