//! The fault suite (issue #11): the whole product under faults, with real processes. For each
//! fault a few requests are pushed, the fault strikes while their agents run, and then every
//! request must end in a final phase with one final result per cluster and at most two runs.
//! The suite prints a table: fault, requests, lost, duplicated, re-runs. A request that ends
//! `failed` (say, because the model API stayed down) is final, not lost.
//!
//! The daemon kills run each daemon as its own process (`warroom_dev::Daemons::Processes`), so
//! a SIGKILL takes exactly one daemon, as a crash or an OOM kill would.
//!
//! Covered elsewhere too: a NATS outage mid-run does not stop the agent
//! (`crates/runner/tests`), a standby dispatcher or publisher takes over from a dead one
//! (`crates/dispatcher/tests`, `crates/publisher/tests`), a publisher push losing a race with
//! an engineer's (`a_push_race_with_an_engineer_loses_nothing`).

use std::collections::BTreeMap;
use std::time::Duration;

use warroom_proto::Stream;
use warroom_scripted_model::{Script, Turn};
use warroom_testkit::{NatsCluster, wait_for, wait_until};

use crate::harness::{FINAL_TIMEOUT, Pipeline, request_yaml};

const CLUSTER: &str = "prod-cluster-1";
const REQUESTS: usize = 3;

/// What a fault did to its requests.
struct Tally {
    fault: &'static str,
    requests: usize,
    lost: usize,
    duplicated: usize,
    reruns: u32,
}

/// An agent that answers after a pause, so the fault strikes while it runs.
fn slow_script() -> Script {
    Script::single(vec![
        Turn::text("FINDING: all quiet.").delayed(Duration::from_millis(1500)),
    ])
}

/// Pushes the fault's requests in one commit; returns their ids.
fn push(pipeline: &Pipeline, fault: &str) -> Vec<String> {
    push_from(pipeline, fault, 0)
}

/// Pushes `REQUESTS` requests `<fault>-<first>`, ... in one commit; returns their ids.
fn push_from(pipeline: &Pipeline, fault: &str, first: usize) -> Vec<String> {
    let ids: Vec<String> = (first..first + REQUESTS)
        .map(|n| format!("{fault}-{n}"))
        .collect();
    let yaml = request_yaml(
        &[("hosted", CLUSTER)],
        "parallel",
        "Is anything wrong?",
        300,
    );
    let files: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), yaml.as_str())).collect();
    pipeline.push_requests(&files);
    ids
}

/// Waits until the scripted model has been asked `n` times: that many agents are running.
async fn agents_asked(pipeline: &Pipeline, n: usize) {
    wait_until(
        format!("{n} agent(s) asking the model"),
        FINAL_TIMEOUT,
        || async { pipeline.model.turn_requests().len() >= n },
    )
    .await;
}

/// Waits for every request to end and counts what went wrong.
async fn tally(pipeline: &Pipeline, fault: &'static str, ids: &[String]) -> Tally {
    let mut tally = Tally {
        fault,
        requests: ids.len(),
        lost: 0,
        duplicated: 0,
        reruns: 0,
    };
    for id in ids {
        let status = wait_for(
            format!("{id} final with its report"),
            FINAL_TIMEOUT,
            || async {
                let status = pipeline.status(id).filter(|s| s.phase.is_final())?;
                pipeline.result(id, &format!("{CLUSTER}.md"))?;
                Some(status)
            },
        )
        .await;
        if !status.phase.is_final() {
            tally.lost += 1;
        }
        let mut finished: BTreeMap<String, usize> = BTreeMap::new();
        for line in pipeline.audit(id) {
            if line["event"] == "finished" {
                *finished.entry(line["cluster"].to_string()).or_default() += 1;
            }
        }
        tally.duplicated += finished.values().filter(|n| **n > 1).count();
        for cluster in status.clusters.values() {
            assert!(cluster.attempts <= 2, "{id} ran {} times", cluster.attempts);
            tally.reruns += cluster.attempts.saturating_sub(1);
        }
    }
    tally
}

fn print(tallies: &[Tally]) {
    println!(
        "\n{:<46} {:>8} {:>5} {:>10} {:>7}",
        "fault", "requests", "lost", "duplicated", "re-runs"
    );
    for t in tallies {
        println!(
            "{:<46} {:>8} {:>5} {:>10} {:>7}",
            t.fault, t.requests, t.lost, t.duplicated, t.reruns
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_request_is_lost_duplicated_or_run_more_than_twice_under_faults() {
    let mut tallies = Vec::new();

    // nats-server stopped and started again while an agent runs.
    let mut pipeline = Pipeline::start(&[CLUSTER], slow_script()).await;
    let ids = push(&pipeline, "nats-restart");
    agents_asked(&pipeline, 1).await;
    pipeline.nats.restart().await;
    tallies.push(tally(&pipeline, "nats-server restarted mid-run", &ids).await);
    pipeline.shutdown().await;

    // nats-server killed (SIGKILL) while an agent runs, then started again.
    let mut pipeline = Pipeline::start(&[CLUSTER], slow_script()).await;
    let ids = push(&pipeline, "nats-kill");
    agents_asked(&pipeline, 1).await;
    pipeline.nats.kill();
    pipeline.nats.start_again().await;
    tallies.push(tally(&pipeline, "nats-server killed mid-run", &ids).await);
    pipeline.shutdown().await;

    // Every daemon stopped and started again while an agent runs.
    let mut pipeline = Pipeline::start(&[CLUSTER], slow_script()).await;
    let ids = push(&pipeline, "daemons-restart");
    agents_asked(&pipeline, 1).await;
    pipeline.restart().await;
    tallies.push(tally(&pipeline, "every daemon restarted mid-run", &ids).await);
    pipeline.shutdown().await;

    // The git remote gone while the agents run and finish, then back.
    let pipeline = Pipeline::start(&[CLUSTER], slow_script()).await;
    let ids = push(&pipeline, "git-outage");
    agents_asked(&pipeline, 1).await;
    let remote = pipeline.remote.path();
    let away = remote.with_extension("away");
    std::fs::rename(&remote, &away).expect("take the remote away");
    agents_asked(&pipeline, REQUESTS).await;
    std::fs::rename(&away, &remote).expect("bring the remote back");
    tallies.push(tally(&pipeline, "git remote unreachable mid-run", &ids).await);
    pipeline.shutdown().await;

    // The model API answering 500 and 529 for a while: the CLI retries (here at most 3
    // times) and the runs go on.
    let pipeline = Pipeline::start_with(&[CLUSTER], slow_script(), |options| {
        options
            .extra_args
            .runner
            .extend(["--max-retries".to_owned(), "3".to_owned()]);
    })
    .await;
    pipeline
        .model
        .fail_next([Turn::server_error(), Turn::overloaded()]);
    let ids = push(&pipeline, "model-outage");
    tallies.push(tally(&pipeline, "model API 500 and 529 for a while", &ids).await);
    let errors = pipeline.model.turn_requests().len();
    assert!(
        errors >= REQUESTS + 2,
        "the CLI retried: {errors} turn requests"
    );
    pipeline.shutdown().await;

    print(&tallies);
    for t in &tallies {
        assert_eq!((t.lost, t.duplicated), (0, 0), "{}", t.fault);
    }
}

/// Each daemon, as its own process, killed with SIGKILL while it works and started again;
/// and engineers pushing one request after another while the publisher pushes results. The
/// ack waits are short here (default 60 s to 2 min), so that what a killed daemon had fetched
/// comes back within the test.
#[tokio::test(flavor = "multi_thread")]
async fn no_request_is_lost_when_a_daemon_is_killed_or_pushes_race() {
    let short_ack_waits = |options: &mut warroom_dev::StackOptions| {
        let extra = &mut options.extra_args;
        for args in [&mut extra.dispatcher, &mut extra.publisher] {
            args.extend(["--ack-wait".to_owned(), "2s".to_owned()]);
        }
        extra
            .runner
            .extend(["--ack-wait".to_owned(), "3s".to_owned()]);
    };
    let mut tallies = Vec::new();

    // The runner killed while its agent runs: the task comes back as attempt 2.
    let mut pipeline = Pipeline::start_processes(&[CLUSTER], slow_script(), short_ack_waits).await;
    let ids = push(&pipeline, "runner-kill");
    agents_asked(&pipeline, 1).await;
    let runner = format!("runner-{CLUSTER}");
    pipeline.kill(&runner).await;
    pipeline.start_again(&runner);
    let tally_runner = tally(&pipeline, "runner killed (SIGKILL) mid-run", &ids).await;
    assert!(
        tally_runner.reruns >= 1,
        "the killed run was not run again as attempt 2"
    );
    tallies.push(tally_runner);
    pipeline.shutdown().await;

    // The gateway killed after it accepted a push; more requests pushed while it is down.
    let mut pipeline = Pipeline::start_processes(&[CLUSTER], slow_script(), short_ack_waits).await;
    let mut ids = push(&pipeline, "gateway-kill");
    agents_asked(&pipeline, 1).await;
    pipeline.kill("gateway").await;
    ids.extend(push_from(&pipeline, "gateway-kill", REQUESTS));
    pipeline.start_again("gateway");
    tallies.push(tally(&pipeline, "gateway killed, pushed while down", &ids).await);
    pipeline.shutdown().await;

    // The dispatcher and the publisher, each killed while an agent runs and results flow.
    for (daemon, fault) in [
        ("dispatcher", "dispatcher killed (SIGKILL) mid-run"),
        ("publisher", "publisher killed (SIGKILL) mid-run"),
    ] {
        let mut pipeline =
            Pipeline::start_processes(&[CLUSTER], slow_script(), short_ack_waits).await;
        let ids = push(&pipeline, &format!("{daemon}-kill"));
        agents_asked(&pipeline, 1).await;
        pipeline.kill(daemon).await;
        pipeline.start_again(daemon);
        tallies.push(tally(&pipeline, fault, &ids).await);
        pipeline.shutdown().await;
    }

    // An engineer pushing one request after another while the publisher pushes the earlier
    // ones' statuses: a push rejected as stale is pulled and pushed again, as in real life.
    let pipeline = Pipeline::start_processes(&[CLUSTER], slow_script(), short_ack_waits).await;
    let yaml = request_yaml(
        &[("hosted", CLUSTER)],
        "parallel",
        "Is anything wrong?",
        300,
    );
    let ids: Vec<String> = (0..REQUESTS).map(|n| format!("push-race-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        pipeline.push_request(id, &yaml);
        agents_asked(&pipeline, n + 1).await;
    }
    tallies.push(
        tally(
            &pipeline,
            "engineers pushing while the publisher pushes",
            &ids,
        )
        .await,
    );
    pipeline.shutdown().await;

    print(&tallies);
    for t in &tallies {
        assert_eq!((t.lost, t.duplicated), (0, 0), "{}", t.fault);
    }
}

/// The daemons on a 3-node JetStream cluster with every stream and bucket replicated (R3):
/// a node killed (SIGKILL) while an agent runs costs no request. (While the streams elect
/// new leaders, publishes fail for a few seconds; the daemons retry.)
#[tokio::test(flavor = "multi_thread")]
async fn a_node_of_a_three_node_nats_cluster_killed_mid_run_loses_nothing() {
    let mut cluster = NatsCluster::start(3).await;
    let urls = cluster.urls();
    let pipeline = Pipeline::start_with(&[CLUSTER], slow_script(), |options| {
        options.nats_url = Some(urls.clone());
        let extra = &mut options.extra_args;
        for args in [
            &mut extra.gateway,
            &mut extra.dispatcher,
            &mut extra.runner,
            &mut extra.publisher,
        ] {
            args.extend(["--nats-replicas".to_owned(), "3".to_owned()]);
        }
    })
    .await;
    let ids = push(&pipeline, "node-kill");
    agents_asked(&pipeline, 1).await;
    cluster.nodes[1].kill();
    let tally = tally(&pipeline, "a node of 3 killed mid-run (R3)", &ids).await;
    print(std::slice::from_ref(&tally));
    assert_eq!((tally.lost, tally.duplicated), (0, 0));
    let js = cluster.nodes[0].jetstream().await;
    for stream in [
        Stream::Requests,
        Stream::Tasks,
        Stream::Results,
        Stream::Events,
    ] {
        let mut handle = js
            .get_stream(stream.name())
            .await
            .expect("the stream exists");
        let info = handle.info().await.expect("stream info");
        assert_eq!(info.config.num_replicas, 3, "{}", stream.name());
    }
    pipeline.shutdown().await;
}
