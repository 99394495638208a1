//! The Slack surface against a fixture incoming-webhook server: the real publisher `run`, a
//! real nats-server, and messages counted where Slack would receive them.

use warroom_publisher::SurfaceLabels;
use warroom_testkit::SlackFixture;
use warroom_testkit::slack::Answer;

use super::*;

/// The request's final update on cluster `hub`, failed with `error`, at revision 3.
fn failed_with(id: &str, error: &str) -> StatusUpdate {
    let mut update = with_cluster(
        status(id, RequestPhase::Failed, 3),
        "hub",
        ClusterPhase::Failed,
    );
    update.status.error = Some(error.to_owned());
    if let Some(line) = update.status.clusters.values_mut().next() {
        line.error = Some(error.to_owned());
    }
    update
}

/// Request `id` completed on `hub`, at `revision`.
fn completed_at(id: &str, revision: u64) -> StatusUpdate {
    with_cluster(
        status(id, RequestPhase::Completed, revision),
        "hub",
        ClusterPhase::Completed,
    )
}

fn slack_labels() -> SurfaceLabels {
    SurfaceLabels { surface: "slack" }
}

impl Stack {
    /// Publishes `update` again without a dedup id: the way a redelivered or repeated update
    /// reaches the publisher.
    async fn status_again(&self, update: &StatusUpdate) {
        self.bus
            .publish(&Subject::Status(update.status.id.clone()), None, update)
            .await
            .expect("the status update is stored");
    }

    /// Waits until the Slack surface's consumer has settled everything.
    async fn wait_slack_drained(&self) {
        wait_until("the Slack consumer is drained", DEFAULT_TIMEOUT, || {
            self.is_drained("publisher-slack")
        })
        .await;
    }

    /// Another publisher replica on the same NATS and remote, with its own clone.
    fn replica(&self, n: u32, args: &[&str]) -> Replica {
        let mut argv = vec![
            "warroom-publisher".to_owned(),
            "--repo".to_owned(),
            self.remote.file_url(),
            "--work-dir".to_owned(),
            self.clone_dir(n).display().to_string(),
            "--batch-window".to_owned(),
            "100ms".to_owned(),
            "--nats-url".to_owned(),
            self.nats.url().to_owned(),
        ];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let settings = Config::try_parse_from(argv)
            .expect("the test's arguments parse")
            .validate()
            .expect("the test's configuration is valid");
        let health = Health::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(warroom_publisher::run(
            settings,
            health.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Replica {
            health,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

struct Replica {
    health: Health,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<warroom_publisher::Result<()>>>,
}

impl Replica {
    async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEFAULT_TIMEOUT, task)
                .await
                .expect("the replica stops within the deadline")
                .expect("the replica did not panic")
                .expect("the replica ends without an error");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_announces_each_request_once_when_it_ends_redacted() {
    let slack = SlackFixture::start(&[]).await;
    let stack = Stack::start_with(&[
        "--slack-webhook-url",
        slack.url(),
        "--slack-report-url",
        "https://git.example/acme/warroom/blob/main/{results_dir}/README.md",
    ])
    .await;
    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    stack
        .status(&status("r-ok", RequestPhase::Accepted, 1))
        .await;
    stack
        .status(&with_cluster(
            status("r-ok", RequestPhase::Running, 2),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    stack.status(&completed_at("r-ok", 3)).await;
    let failed = failed_with("r-bad", &format!("<!channel> kubectl said token={secret}"));
    stack.status(&failed).await;

    let delivered = slack.wait_delivered(2, DEFAULT_TIMEOUT).await;
    stack.wait_status("r-ok", "completed").await;
    stack.wait_status("r-bad", "failed").await;
    let ok = delivered
        .iter()
        .find(|m| m.contains("`r-ok`"))
        .expect("r-ok was announced");
    assert!(ok.contains("*completed*"), "{ok}");
    assert!(ok.contains("`hub`: completed, 1m 23s, $0.0421"), "{ok}");
    assert!(
        ok.contains("<https://git.example/acme/warroom/blob/main/results/r-ok/README.md|Report>"),
        "{ok}"
    );
    let bad = delivered
        .iter()
        .find(|m| m.contains("`r-bad`"))
        .expect("r-bad was announced");
    assert!(bad.contains("*failed*"), "{bad}");
    assert!(!bad.contains(secret), "the token reached Slack: {bad}");
    assert!(bad.contains("[REDACTED:"), "{bad}");
    assert!(
        !bad.contains("<!channel>") && bad.contains("&lt;!channel&gt;"),
        "{bad}"
    );

    // The final update again, as a redelivery brings it: nothing more reaches Slack.
    stack.status_again(&completed_at("r-ok", 3)).await;
    stack.status_again(&failed).await;
    stack.wait_slack_drained().await;
    assert_eq!(slack.delivered().len(), 2, "{:?}", slack.delivered());
    assert_eq!(slack.calls(), 2);
    let metrics = &stack.health.metrics;
    assert_eq!(
        metrics.surface_updates.get_or_create(&slack_labels()).get(),
        2
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_failures_are_retried_until_the_message_lands_and_a_bad_webhook_is_not() {
    // 502, then 429 with Retry-After, then a refused connection... then accepted.
    let slack = SlackFixture::start(&[Answer::Fail(502, None), Answer::Fail(429, Some(1))]).await;
    let stack = Stack::start_with(&["--slack-webhook-url", slack.url(), "--slack-on-start"]).await;
    let started = std::time::Instant::now();
    stack
        .status(&with_cluster(
            status("r-1", RequestPhase::Running, 2),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    let delivered = slack.wait_delivered(1, DEFAULT_TIMEOUT).await;
    assert!(delivered[0].contains("*running*"), "{delivered:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(slack.calls(), 3);
    let metrics = stack.health.metrics.clone();
    assert_eq!(
        metrics.surface_retries.get_or_create(&slack_labels()).get(),
        2
    );
    stack.wait_slack_drained().await;

    // 404: the webhook is gone; retrying cannot help.
    slack.then(Answer::Fail(404, None));
    stack.status(&completed_at("r-1", 3)).await;
    wait_until("the 404 is given up", DEFAULT_TIMEOUT, || {
        let gave_up = metrics.surface_gave_up.get_or_create(&slack_labels()).get();
        async move { gave_up == 1 }
    })
    .await;
    stack.wait_slack_drained().await;
    assert_eq!(slack.calls(), 4);
    assert_eq!(slack.delivered().len(), 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_sends_nothing_twice_across_restarts_and_replicas() {
    let slack = SlackFixture::start(&[]).await;
    let url = slack.url().to_owned();
    let args = [
        "--slack-webhook-url",
        &url,
        "--replica-id",
        "publisher-a",
        "--lease-ttl",
        "2s",
    ];
    let mut stack = Stack::start_with(&args).await;
    stack.status(&completed_on_hub("r-1")).await;
    slack.wait_delivered(1, DEFAULT_TIMEOUT).await;
    stack.wait_slack_drained().await;

    // A restart, and the final update delivered again.
    stack.halt().await;
    stack.spawn_in(1);
    stack.status_again(&completed_on_hub("r-1")).await;
    stack.status(&completed_on_hub("r-2")).await;
    slack.wait_delivered(2, DEFAULT_TIMEOUT).await;
    stack.wait_slack_drained().await;

    // A second replica stands by, takes over when the first stops, and repeats nothing.
    let mut second = stack.replica(
        2,
        &[
            "--slack-webhook-url",
            &url,
            "--replica-id",
            "publisher-b",
            "--lease-ttl",
            "2s",
        ],
    );
    for id in ["r-1", "r-2"] {
        stack.status_again(&completed_on_hub(id)).await;
    }
    // Settled by the first before it stops: a repeat still on its way to a stopping replica
    // would come back only after the ack wait (see `Consumer::hand_back`).
    stack.wait_slack_drained().await;
    stack.halt().await;
    stack.status(&completed_on_hub("r-3")).await;
    for id in ["r-1", "r-2"] {
        stack.status_again(&completed_on_hub(id)).await;
    }
    slack.wait_delivered(3, DEFAULT_TIMEOUT).await;
    stack.wait_slack_drained().await;
    assert_eq!(
        second.health.metrics.runtime.active.get(),
        1,
        "the second took over"
    );
    second.halt().await;

    let delivered = slack.delivered();
    for id in ["r-1", "r-2", "r-3"] {
        let count = delivered
            .iter()
            .filter(|m| m.contains(&format!("`{id}`")))
            .count();
        assert_eq!(count, 1, "{id} announced {count} times: {delivered:?}");
    }
    assert_eq!(slack.calls(), 3);
}

/// At most once: a publisher that dies after Slack got the message and before it recorded
/// it sent leaves a claim without its sent mark; the next one does not send it again, and
/// counts and logs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_sending_and_recording_is_counted_and_not_resent() {
    let slack = SlackFixture::start(&[Answer::Hang]).await;
    let args = [
        "--slack-webhook-url",
        slack.url(),
        "--replica-id",
        "publisher-a",
    ];
    let mut stack = Stack::without_publisher(&args).await;
    // The first publisher runs on a runtime of its own: dropping it is a crash (its tasks
    // and its NATS connection end at once, nothing is handed back).
    let crashing = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    crashing.spawn(warroom_publisher::run(
        stack.settings_in(1),
        Health::new(),
        std::future::pending(),
    ));
    stack.status(&completed_on_hub("r-1")).await;
    tokio::time::timeout(DEFAULT_TIMEOUT, slack.hung())
        .await
        .expect("the message reaches Slack");
    // Slack has the message; the publisher dies before it hears back.
    crashing.shutdown_background();
    assert_eq!(slack.delivered().len(), 1);
    // Until the server has seen the dead connection go, its open pull request would take
    // (and lose, until the ack wait) the repeat published next.
    stack.wait_no_pull_open("publisher-slack").await;

    stack.spawn_in(1);
    stack.status_again(&completed_on_hub("r-1")).await;
    stack.status(&completed_on_hub("r-2")).await;
    slack.wait_delivered(2, DEFAULT_TIMEOUT).await;
    let metrics = stack.health.metrics.clone();
    wait_until(
        "the unconfirmed message is counted",
        DEFAULT_TIMEOUT,
        || {
            let count = metrics
                .surface_unconfirmed
                .get_or_create(&slack_labels())
                .get();
            async move { count == 1 }
        },
    )
    .await;
    // The dead publisher's delivery comes back only after the ack wait; what matters is
    // that the repeat was seen and not sent.
    let delivered = slack.delivered();
    assert_eq!(
        delivered.iter().filter(|m| m.contains("`r-1`")).count(),
        1,
        "{delivered:?}"
    );
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    stack.stop().await;
}
