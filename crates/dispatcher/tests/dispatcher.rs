//! The dispatcher against a real nats-server. No runner runs: each test plays the runner
//! itself, pulling tasks from `warroom.tasks.<cluster>` and publishing `RunnerReport`s, and
//! reads the status snapshots the publisher would read from the events stream.
//!
//! The test publishes through the typed [`Bus`], like the other daemons, and inspects the
//! streams with its own raw JetStream client; every subject and stream name comes from
//! [`Subject`] and [`Stream`].

use std::time::{Duration, Instant};
use warroom_runtime::daemon::Daemon as _;

use async_nats::jetstream::{self, consumer::pull};
use clap::Parser;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warroom_dispatcher::{Config, Health};
use warroom_proto::names;
use warroom_proto::{
    AcceptedRequest, ClusterName, ClusterPhase, ClusterRef, ClusterType, Coordination,
    CoordinationMode, Denial, Investigation, Issue, Metadata, Outcome, RequestId, RequestPhase,
    RequestSpec, ResultsDir, RunnerReport, StatusUpdate, Stream, Subject, Task, TaskRecord,
    TaskResult, Tool, TroubleshootingRequest,
};
use warroom_proto::{ReplicaId, RunnerHeartbeat};
use warroom_runtime::{Bus, Connection};
use warroom_testkit::{DEFAULT_TIMEOUT, NatsServer, wait_until};

/// A nats-server, clients, and the dispatcher running against them.
struct Harness {
    server: NatsServer,
    /// Publishes the way the gateway and the runners do.
    bus: Bus,
    /// The test's own raw client, for inspecting streams and publishing garbage.
    nats: async_nats::Client,
    js: jetstream::Context,
    dispatcher: Option<Dispatcher>,
    /// The running dispatcher's metrics.
    health: Health,
}

struct Dispatcher {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<warroom_dispatcher::Result<()>>,
}

impl Harness {
    /// Starts nats-server and the dispatcher with `args` on top of a fast sweep.
    async fn start(args: &[&str]) -> Harness {
        let mut harness = Harness::without_dispatcher().await;
        harness.start_dispatcher(args);
        harness
    }

    /// Starts nats-server (with the warroom streams) but no dispatcher.
    async fn without_dispatcher() -> Harness {
        let server = NatsServer::start().await;
        let bus = Bus::connect(&Connection::plain(server.url()), "dispatcher-test")
            .await
            .expect("test client connects");
        let nats = server.connect().await;
        let js = jetstream::new(nats.clone());
        Harness {
            server,
            bus,
            nats,
            js,
            dispatcher: None,
            health: Health::new(),
        }
    }

    fn start_dispatcher(&mut self, args: &[&str]) {
        let mut argv = vec![
            "warroom-dispatcher",
            "--nats-url",
            self.server.url(),
            "--sweep-interval",
            "100ms",
        ];
        argv.extend_from_slice(args);
        let config = Config::try_parse_from(argv).expect("test config parses");
        let (stop, stopped) = oneshot::channel::<()>();
        self.health = Health::new();
        let settings = config.validate().expect("test config is valid");
        let handle = tokio::spawn(warroom_dispatcher::run(
            settings,
            self.health.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        self.dispatcher = Some(Dispatcher { stop, handle });
    }

    /// Asks the dispatcher to stop and waits until it did, cleanly.
    async fn stop_dispatcher(&mut self) {
        let Some(dispatcher) = self.dispatcher.take() else {
            return;
        };
        let _ = dispatcher.stop.send(());
        let outcome = tokio::time::timeout(DEFAULT_TIMEOUT, dispatcher.handle)
            .await
            .expect("dispatcher stops within the deadline")
            .expect("dispatcher task did not panic");
        outcome.expect("dispatcher ends without an error");
    }

    fn js(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes an accepted request the way the gateway does (dedup id = request id).
    async fn submit(&self, request: &AcceptedRequest) {
        self.submit_with_id(request, &request.id).await;
    }

    async fn submit_with_id(&self, request: &AcceptedRequest, dedup: &str) {
        self.bus
            .publish(&Subject::Request(request.id.clone()), Some(dedup), request)
            .await
            .expect("request published");
    }

    async fn report(&self, report: &RunnerReport) {
        let (id, cluster) = report.about();
        self.bus
            .publish(&Subject::Result(id.clone(), cluster.clone()), None, report)
            .await
            .expect("report published");
    }

    async fn started(&self, id: &str, cluster: &str) {
        self.report(&RunnerReport::Started {
            request_id: request_id(id),
            cluster: cluster_name(cluster),
            runner: format!("runner-{cluster}-0"),
            at: warroom_proto::now(),
            attempt: 1,
        })
        .await;
    }

    async fn finished(
        &self,
        id: &str,
        cluster: &str,
        outcome: Outcome,
        text: &str,
        error: Option<&str>,
    ) {
        let now = warroom_proto::now();
        self.report(&RunnerReport::Finished(TaskResult {
            report: None,
            run: None,
            request_id: request_id(id),
            cluster: cluster_name(cluster),
            outcome,
            final_text: text.to_owned(),
            error: error.map(str::to_owned),
            cost_usd: 0.42,
            num_turns: 7,
            permission_denials: vec![Denial {
                tool: "Bash".to_owned(),
                tool_use_id: "toolu_1".to_owned(),
                input: serde_json::json!({"command": "kubectl delete pod x"}),
            }],
            started_at: now - time::Duration::seconds(30),
            finished_at: now,
            attempt: 1,
        }))
        .await;
    }

    /// The runner side of a cluster: its durable work-queue consumer, as the runner makes it.
    async fn runner(&self, cluster: &str) -> Runner {
        let cluster = cluster_name(cluster);
        let durable = names::runner_consumer(&cluster);
        let consumer: jetstream::consumer::PullConsumer = self
            .js()
            .get_stream(Stream::Tasks.name())
            .await
            .expect("tasks stream exists")
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: Subject::Task(cluster).to_string(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .expect("runner consumer created");
        let messages = consumer.messages().await.expect("runner pulls");
        Runner { consumer, messages }
    }

    /// Writes a heartbeat for `replica` of `cluster` into the runners bucket, as a runner
    /// does every few seconds (one lasts 30 s).
    async fn heartbeat(&self, cluster: &str, replica: &str, running: u32) {
        let beat = RunnerHeartbeat {
            cluster: cluster_name(cluster),
            replica: ReplicaId::new(replica).expect("valid replica id"),
            host: replica.to_owned(),
            concurrency: 1,
            running,
            started_at: warroom_proto::now(),
            at: warroom_proto::now(),
        };
        let key = names::heartbeat_key(&beat.cluster, &beat.replica);
        self.bus
            .runners_bucket()
            .await
            .expect("runners bucket")
            .put(&key, serde_json::to_vec(&beat).expect("encode").into())
            .await
            .expect("heartbeat written");
    }

    /// Removes a replica's heartbeat, as a runner does when it stops.
    async fn heartbeat_gone(&self, cluster: &str, replica: &str) {
        let key = names::heartbeat_key(
            &cluster_name(cluster),
            &ReplicaId::new(replica).expect("valid replica id"),
        );
        self.bus
            .runners_bucket()
            .await
            .expect("runners bucket")
            .delete(&key)
            .await
            .expect("heartbeat removed");
    }

    /// Every status snapshot of request `id`, from the first on.
    async fn statuses(&self, id: &str) -> Statuses {
        let messages = self
            .js()
            .get_stream(Stream::Events.name())
            .await
            .expect("events stream exists")
            .create_consumer(pull::OrderedConfig {
                filter_subject: Subject::Status(request_id(id)).to_string(),
                ..Default::default()
            })
            .await
            .expect("status consumer created")
            .messages()
            .await
            .expect("status messages");
        Statuses {
            messages,
            seen: Vec::new(),
        }
    }

    /// Waits until the dispatcher has handled (acknowledged or terminated) every message on
    /// the requests stream, `count` in all.
    async fn requests_handled(&self, count: u64) {
        self.handled(Stream::Requests, names::DISPATCHER_REQUESTS_CONSUMER, count)
            .await;
    }

    /// The last status snapshot of request `id` on the events stream.
    async fn last_status(&self, id: &str) -> StatusUpdate {
        let message = self
            .js()
            .get_stream(Stream::Events.name())
            .await
            .expect("events stream exists")
            .get_last_raw_message_by_subject(&Subject::Status(request_id(id)).to_string())
            .await
            .expect("a status was published");
        serde_json::from_slice(&message.payload).expect("status is a StatusUpdate")
    }

    /// Waits until `consumer` (the dispatcher's) has handled every message of `stream`,
    /// `count` in all.
    async fn handled(&self, stream: Stream, consumer: &'static str, count: u64) {
        let stream = self
            .js()
            .get_stream(stream.name())
            .await
            .expect("stream exists");
        wait_until(
            format!("the dispatcher handled all {count} messages of its consumer {consumer}"),
            DEFAULT_TIMEOUT,
            || {
                let stream = stream.clone();
                async move {
                    let Ok(mut consumer) = stream.get_consumer::<pull::Config>(consumer).await
                    else {
                        return false;
                    };
                    let Ok(info) = consumer.info().await else {
                        return false;
                    };
                    info.delivered.stream_sequence >= count
                        && info.num_pending == 0
                        && info.num_ack_pending == 0
                }
            },
        )
        .await;
    }

    /// How many messages the tasks stream holds for `cluster`.
    async fn queued_tasks(&self, cluster: &str) -> u64 {
        self.stored(&Subject::Task(cluster_name(cluster))).await
    }

    /// How many messages the stream of `subject` holds on it.
    async fn stored(&self, subject: &Subject) -> u64 {
        let stream = self
            .js()
            .get_stream(subject.stream().name())
            .await
            .expect("stream exists");
        let info = stream
            .info_with_subjects(subject.to_string())
            .await
            .expect("stream info");
        let mut total = 0;
        let mut subjects = info;
        while let Some(entry) = subjects.next().await {
            let (_, count) = entry.expect("subject count");
            total += u64::try_from(count).expect("count fits");
        }
        total
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.handle.abort();
        }
    }
}

struct Runner {
    consumer: jetstream::consumer::PullConsumer,
    messages: pull::Stream,
}

impl Runner {
    /// Takes the next task off the queue (acknowledging it, as a runner does at the end).
    async fn take(&mut self) -> Task {
        let message = tokio::time::timeout(DEFAULT_TIMEOUT, self.messages.next())
            .await
            .expect("a task arrives within the deadline")
            .expect("task stream open")
            .expect("task message");
        message.ack().await.expect("task acked");
        serde_json::from_slice(&message.payload).expect("task is a Task")
    }

    /// Tasks queued for this runner and not yet delivered to it.
    async fn waiting(&mut self) -> u64 {
        self.consumer
            .info()
            .await
            .expect("consumer info")
            .num_pending
    }
}

struct Statuses {
    messages: pull::Ordered,
    seen: Vec<StatusUpdate>,
}

impl Statuses {
    /// Reads snapshots until one satisfies `done`, and returns it.
    async fn until(&mut self, what: &str, done: impl Fn(&StatusUpdate) -> bool) -> StatusUpdate {
        self.until_within(what, DEFAULT_TIMEOUT, done).await
    }

    /// [`Statuses::until`] with a deadline of its own, for the widest requests.
    async fn until_within(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&StatusUpdate) -> bool,
    ) -> StatusUpdate {
        let deadline = Instant::now() + within;
        if let Some(found) = self.seen.iter().find(|s| done(s)) {
            return found.clone();
        }
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(remaining, self.messages.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for a status where {what}; seen: {:#?}",
                        self.phases()
                    )
                })
                .expect("status stream open")
                .expect("status message");
            let update: StatusUpdate =
                serde_json::from_slice(&next.payload).expect("status is a StatusUpdate");
            self.seen.push(update.clone());
            if done(&update) {
                return update;
            }
        }
    }

    async fn phase(&mut self, phase: RequestPhase) -> StatusUpdate {
        self.until(&format!("the request is {phase}"), |s| {
            s.status.phase == phase
        })
        .await
    }

    async fn final_status(&mut self) -> StatusUpdate {
        self.until("the request is final", |s| s.status.phase.is_final())
            .await
    }

    fn phases(&self) -> Vec<(u64, RequestPhase)> {
        self.seen
            .iter()
            .map(|s| (s.status.revision, s.status.phase))
            .collect()
    }
}

fn request_id(id: &str) -> RequestId {
    RequestId::new(id).expect("test request ids are valid")
}

fn cluster_name(name: &str) -> ClusterName {
    ClusterName::new(name).expect("test cluster names are valid")
}

fn cluster(name: &str) -> ClusterRef {
    ClusterRef {
        kind: if name.contains("hub") {
            ClusterType::Hub
        } else {
            ClusterType::Hosted
        },
        name: cluster_name(name),
    }
}

/// An accepted request for `clusters`: one cluster without a mode is `targetCluster`.
fn request(id: &str, clusters: &[&str], mode: Option<CoordinationMode>) -> AcceptedRequest {
    let refs: Vec<ClusterRef> = clusters.iter().map(|c| cluster(c)).collect();
    let (target_cluster, target_clusters) = match mode {
        None => (refs.first().cloned(), None),
        Some(_) => (None, Some(refs)),
    };
    let id = request_id(id);
    AcceptedRequest {
        results_dir: ResultsDir::default_for(&id),
        id,
        commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        request: TroubleshootingRequest {
            api_version: warroom_proto::API_VERSION.to_owned(),
            kind: warroom_proto::KIND_TROUBLESHOOTING.to_owned(),
            metadata: Metadata {
                name: "api-timeout-investigation".to_owned(),
                timestamp: time::OffsetDateTime::parse(
                    "2026-11-23T14:30:00Z",
                    &time::format_description::well_known::Rfc3339,
                )
                .expect("valid timestamp"),
                engineer: "ada@example.com".to_owned(),
            },
            spec: RequestSpec {
                target_cluster,
                target_clusters,
                coordination: mode.map(|mode| Coordination { mode }),
                issue: Issue {
                    category: "api-timeout".to_owned(),
                    description: "the API server times out".to_owned(),
                    affected_resources: Vec::new(),
                },
                investigation: Investigation {
                    prompt: "Find out why the API server times out.".to_owned(),
                    allowed_tools: vec![Tool::Bash, Tool::Read],
                    timeout: 300,
                    strategy: Some("control-plane-health".to_owned()),
                    namespace: Some("clusters-prod-1".to_owned()),
                },
                output: None,
            },
        },
        verification: None,
        max_active_requests: None,
        session: None,
    }
}

#[tokio::test]
async fn a_single_cluster_request_goes_through_every_phase_in_order() {
    let harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-single").await;
    let mut runner = harness.runner("prod-1").await;
    harness
        .submit(&request("r-single", &["prod-1"], None))
        .await;

    let task = runner.take().await;
    assert_eq!(task.request_id, "r-single");
    assert_eq!(task.cluster, cluster("prod-1"));
    assert_eq!(task.engineer, "ada@example.com");
    assert_eq!(task.timeout_secs, 300);
    assert_eq!(task.allowed_tools, [Tool::Bash, Tool::Read]);
    assert_eq!(task.strategy.as_deref(), Some("control-plane-health"));
    assert_eq!(task.mode, None);
    assert!(task.prior_findings.is_empty());

    let dispatched = statuses.phase(RequestPhase::Dispatched).await;
    assert_eq!(
        dispatched.status.clusters["prod-1"].phase,
        ClusterPhase::Dispatched
    );
    harness.started("r-single", "prod-1").await;
    let running = statuses.phase(RequestPhase::Running).await;
    assert_eq!(
        running.status.clusters["prod-1"].phase,
        ClusterPhase::Running
    );
    harness
        .finished(
            "r-single",
            "prod-1",
            Outcome::Completed,
            "etcd is slow.",
            None,
        )
        .await;
    let done = statuses.final_status().await;

    assert_eq!(
        statuses.phases(),
        [
            (1, RequestPhase::Accepted),
            (2, RequestPhase::Dispatched),
            (3, RequestPhase::Running),
            (4, RequestPhase::Completed),
        ]
    );
    let status = &done.status;
    assert_eq!(status.id, "r-single");
    assert_eq!(status.error, None);
    assert_eq!(status.results_dir, "results/r-single");
    assert_eq!(status.engineer.as_deref(), Some("ada@example.com"));
    assert_eq!(status.mode, None);
    let prod = &status.clusters["prod-1"];
    assert_eq!(prod.phase, ClusterPhase::Completed);
    assert_eq!(prod.cost_usd, Some(0.42));
    assert_eq!(prod.num_turns, Some(7));
    assert_eq!(prod.permission_denials, 1);
    assert_eq!(prod.duration_secs, Some(30.0));
    assert_eq!(prod.report.as_deref(), Some("prod-1.md"));
    assert_eq!(done.reports["prod-1"].final_text, "etcd is slow.");
    assert_eq!(done.reports["prod-1"].permission_denials.len(), 1);
    let summary = done.request.expect("status carries the request summary");
    assert_eq!(summary.name, "api-timeout-investigation");
    assert_eq!(summary.engineer, "ada@example.com");
}

#[tokio::test]
async fn a_parallel_request_dispatches_every_cluster_and_completes_when_all_finished() {
    let harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-par").await;
    let mut hub = harness.runner("production-hub").await;
    let mut prod = harness.runner("prod-cluster-1").await;
    harness
        .submit(&request(
            "r-par",
            &["production-hub", "prod-cluster-1"],
            Some(CoordinationMode::Parallel),
        ))
        .await;

    // Both tasks are out before any runner reported anything.
    let hub_task = hub.take().await;
    let prod_task = prod.take().await;
    assert_eq!(hub_task.mode, Some(CoordinationMode::Parallel));
    assert_eq!(prod_task.cluster, cluster("prod-cluster-1"));
    let dispatched = statuses.phase(RequestPhase::Dispatched).await;
    assert!(
        dispatched
            .status
            .clusters
            .values()
            .all(|c| c.phase == ClusterPhase::Dispatched)
    );

    harness.started("r-par", "production-hub").await;
    harness.started("r-par", "prod-cluster-1").await;
    harness
        .finished(
            "r-par",
            "production-hub",
            Outcome::Completed,
            "hub fine",
            None,
        )
        .await;
    let one_done = statuses
        .until("the hub completed", |s| {
            s.status.clusters["production-hub"].phase == ClusterPhase::Completed
        })
        .await;
    assert_eq!(one_done.status.phase, RequestPhase::Running);
    assert_eq!(one_done.reports.len(), 1);
    harness
        .finished(
            "r-par",
            "prod-cluster-1",
            Outcome::Completed,
            "prod fine",
            None,
        )
        .await;
    let done = statuses.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::Completed);
    assert_eq!(done.status.mode, Some(CoordinationMode::Parallel));
    assert_eq!(done.reports["production-hub"].final_text, "hub fine");
    assert_eq!(done.reports["prod-cluster-1"].final_text, "prod fine");
    let revisions: Vec<u64> = statuses.seen.iter().map(|s| s.status.revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[1] == w[0] + 1),
        "revisions grow by one: {revisions:?}"
    );
}

#[tokio::test]
async fn a_parallel_request_fails_with_the_reason_of_the_cluster_that_failed() {
    let harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-fail").await;
    let mut hub = harness.runner("production-hub").await;
    let mut prod = harness.runner("prod-cluster-1").await;
    harness
        .submit(&request(
            "r-fail",
            &["production-hub", "prod-cluster-1"],
            Some(CoordinationMode::Parallel),
        ))
        .await;
    hub.take().await;
    prod.take().await;
    harness.started("r-fail", "prod-cluster-1").await;
    harness
        .finished(
            "r-fail",
            "prod-cluster-1",
            Outcome::Failed,
            "Partial: the API server pods restart.",
            Some("reached the turn limit (30 turns)"),
        )
        .await;
    harness
        .finished(
            "r-fail",
            "production-hub",
            Outcome::Completed,
            "hub fine",
            None,
        )
        .await;
    let done = statuses.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::Failed);
    assert_eq!(
        done.status.error.as_deref(),
        Some("prod-cluster-1: reached the turn limit (30 turns)")
    );
    let prod_status = &done.status.clusters["prod-cluster-1"];
    assert_eq!(prod_status.phase, ClusterPhase::Failed);
    assert_eq!(
        prod_status.error.as_deref(),
        Some("reached the turn limit (30 turns)")
    );
    // The partial findings still reach the engineer.
    assert_eq!(
        done.reports["prod-cluster-1"].final_text,
        "Partial: the API server pods restart."
    );

    // A late report about a cluster that already has its result changes nothing.
    let final_revision = done.status.revision;
    harness
        .finished("r-fail", "prod-cluster-1", Outcome::Completed, "late", None)
        .await;
    harness.started("r-fail", "no-such-cluster").await;
    harness.started("no-such-request", "prod-cluster-1").await;
    // A later request proves the reports before it were handled.
    let mut later = harness.statuses("r-after").await;
    harness
        .submit(&request("r-after", &["prod-cluster-1"], None))
        .await;
    prod.take().await;
    harness
        .finished("r-after", "prod-cluster-1", Outcome::Completed, "ok", None)
        .await;
    later.final_status().await;
    let mut again = harness.statuses("r-fail").await;
    let last = again
        .until("the final revision", |s| {
            s.status.revision == final_revision
        })
        .await;
    assert_eq!(
        last.reports["prod-cluster-1"].final_text,
        "Partial: the API server pods restart."
    );
    let kv = harness
        .js()
        .get_key_value(names::REQUESTS_BUCKET)
        .await
        .expect("requests bucket");
    let stored: serde_json::Value =
        serde_json::from_slice(&kv.get("r-fail").await.expect("read").expect("stored"))
            .expect("json");
    assert_eq!(stored["revision"], final_revision);
}

#[tokio::test]
async fn a_sequential_request_hands_the_first_clusters_findings_to_the_next() {
    let harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-seq").await;
    let mut hub = harness.runner("production-hub").await;
    let mut prod = harness.runner("prod-cluster-1").await;
    harness
        .submit(&request(
            "r-seq",
            &["production-hub", "prod-cluster-1"],
            Some(CoordinationMode::Sequential),
        ))
        .await;
    let first = hub.take().await;
    assert!(first.prior_findings.is_empty());
    assert_eq!(first.mode, Some(CoordinationMode::Sequential));
    let dispatched = statuses.phase(RequestPhase::Dispatched).await;
    assert_eq!(
        dispatched.status.clusters["prod-cluster-1"].phase,
        ClusterPhase::Pending
    );
    // The hub's task is published before its dispatch is recorded, so a second task sent at
    // the same time would be queued by now.
    assert_eq!(harness.queued_tasks("prod-cluster-1").await, 0);
    assert_eq!(prod.waiting().await, 0);

    harness.started("r-seq", "production-hub").await;
    statuses.phase(RequestPhase::Running).await;
    assert_eq!(harness.queued_tasks("prod-cluster-1").await, 0);
    harness
        .finished(
            "r-seq",
            "production-hub",
            Outcome::Completed,
            "The hub's etcd is slow.",
            None,
        )
        .await;

    let second = prod.take().await;
    assert_eq!(second.cluster, cluster("prod-cluster-1"));
    assert_eq!(second.prior_findings.len(), 1);
    assert_eq!(second.prior_findings[0].cluster, "production-hub");
    assert_eq!(second.prior_findings[0].phase, ClusterPhase::Completed);
    assert_eq!(second.prior_findings[0].report, "The hub's etcd is slow.");
    let handed_on = statuses
        .until("the second cluster is dispatched", |s| {
            s.status.clusters["prod-cluster-1"].phase == ClusterPhase::Dispatched
        })
        .await;
    assert_eq!(
        handed_on.status.clusters["production-hub"].phase,
        ClusterPhase::Completed
    );

    harness.started("r-seq", "prod-cluster-1").await;
    harness
        .finished(
            "r-seq",
            "prod-cluster-1",
            Outcome::Completed,
            "prod ok",
            None,
        )
        .await;
    let done = statuses.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::Completed);
    assert_eq!(done.status.mode, Some(CoordinationMode::Sequential));
}

#[tokio::test]
async fn a_sequential_request_continues_after_a_failed_cluster_and_ends_failed() {
    let harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-seqf").await;
    let mut hub = harness.runner("production-hub").await;
    let mut prod = harness.runner("prod-cluster-1").await;
    harness
        .submit(&request(
            "r-seqf",
            &["production-hub", "prod-cluster-1"],
            Some(CoordinationMode::Sequential),
        ))
        .await;
    hub.take().await;
    harness
        .finished(
            "r-seqf",
            "production-hub",
            Outcome::TimedOut,
            "",
            Some("stopped after the 300 s timeout"),
        )
        .await;
    let second = prod.take().await;
    assert_eq!(second.prior_findings[0].phase, ClusterPhase::TimedOut);
    assert!(
        second.prior_findings[0]
            .report
            .contains("stopped after the 300 s timeout"),
        "{:?}",
        second.prior_findings[0]
    );
    harness
        .finished("r-seqf", "prod-cluster-1", Outcome::Completed, "ok", None)
        .await;
    let done = statuses.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::TimedOut);
    assert_eq!(
        done.status.error.as_deref(),
        Some("production-hub: stopped after the 300 s timeout")
    );
}

#[tokio::test]
async fn the_same_request_published_twice_is_dispatched_once() {
    let harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-twice").await;
    let twice = request("r-twice", &["prod-1"], None);
    harness.submit_with_id(&twice, "first").await;
    harness.submit_with_id(&twice, "second").await;
    harness.requests_handled(2).await;

    assert_eq!(harness.queued_tasks("prod-1").await, 1);
    statuses.phase(RequestPhase::Dispatched).await;
    assert_eq!(
        statuses.phases(),
        [(1, RequestPhase::Accepted), (2, RequestPhase::Dispatched)]
    );
    // The request still runs to its end normally.
    let mut runner = harness.runner("prod-1").await;
    runner.take().await;
    harness
        .finished("r-twice", "prod-1", Outcome::Completed, "done", None)
        .await;
    let done = statuses.final_status().await;
    assert_eq!(done.status.revision, 3);
    assert_eq!(harness.queued_tasks("prod-1").await, 0);
}

#[tokio::test]
async fn garbage_does_not_stop_the_next_valid_message() {
    let harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-valid").await;
    harness
        .nats
        .publish(
            Subject::Request(request_id("junk")).to_string(),
            "{ not json".into(),
        )
        .await
        .expect("garbage published");
    harness
        .bus
        .publish(
            &Subject::Request(request_id("junk2")),
            None,
            &serde_json::json!({"id": "junk2"}),
        )
        .await
        .expect("wrong shape published");
    harness
        .nats
        .publish(
            Subject::Result(request_id("r-valid"), cluster_name("prod-1")).to_string(),
            "\u{0}\u{1}".into(),
        )
        .await
        .expect("garbage report published");
    harness.nats.flush().await.expect("flushed");

    let mut runner = harness.runner("prod-1").await;
    harness.submit(&request("r-valid", &["prod-1"], None)).await;
    runner.take().await;
    harness.started("r-valid", "prod-1").await;
    harness
        .finished("r-valid", "prod-1", Outcome::Completed, "fine", None)
        .await;
    let done = statuses.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::Completed);
    // The garbage was terminated, not left for endless redelivery, and kept for an operator.
    harness.requests_handled(3).await;
    harness
        .handled(Stream::Results, names::DISPATCHER_RESULTS_CONSUMER, 3)
        .await;
    let dead = |consumer: &str| Subject::DeadLetter(consumer.to_owned());
    assert_eq!(
        harness
            .stored(&dead(names::DISPATCHER_REQUESTS_CONSUMER))
            .await,
        2
    );
    assert_eq!(
        harness
            .stored(&dead(names::DISPATCHER_RESULTS_CONSUMER))
            .await,
        1
    );
}

#[tokio::test]
async fn a_task_for_a_cluster_without_a_live_runner_fails_with_the_reason() {
    let harness = Harness::start(&["--pickup-timeout", "1s"]).await;
    let mut statuses = harness.statuses("r-orphan").await;
    harness
        .submit(&request("r-orphan", &["lonely-cluster"], None))
        .await;
    let dispatched = statuses.phase(RequestPhase::Dispatched).await;
    let queued = dispatched.status.clusters["lonely-cluster"]
        .queued
        .clone()
        .expect("a dispatched task is shown queued");
    assert_eq!(queued.position, 1);
    let done = statuses.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::Failed);
    let error = done.status.clusters["lonely-cluster"]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.starts_with(
            "no runner of cluster lonely-cluster has ever sent a heartbeat (none since the \
             dispatcher started following them at "
        ) && error.ends_with("); the task waited 1s without a live runner"),
        "{error}"
    );
    assert_eq!(
        done.status.error.as_deref(),
        Some(format!("lonely-cluster: {error}").as_str())
    );
    assert_eq!(done.status.clusters["lonely-cluster"].queued, None);
    assert_eq!(
        done.status.clusters["lonely-cluster"].report.as_deref(),
        Some("lonely-cluster.md")
    );
    assert!(done.reports["lonely-cluster"].final_text.contains(&error));
    // The expired task is off the queue: a runner coming up late does not start it.
    assert_eq!(harness.queued_tasks("lonely-cluster").await, 0);
}

/// A cluster whose runner is live but busy: the second request waits `queued` at position 1
/// however long past the pickup timeout, and only once the runner stops (its heartbeat gone)
/// does the pickup timeout run, failing the task with the time of the last heartbeat. The
/// runner's heartbeat and the oldest request's age are exported for the deploy's alerts.
#[tokio::test]
async fn a_task_waits_queued_while_its_cluster_has_a_live_runner() {
    // The runner was beating before the dispatcher started: the dispatcher reads the
    // heartbeats already in the bucket, not only those written after it started.
    let mut harness = Harness::without_dispatcher().await;
    harness.heartbeat("busy-1", "busy-1-0-ab12", 0).await;
    harness.start_dispatcher(&["--pickup-timeout", "1s"]);
    let mut first = harness.statuses("r-first").await;
    let mut second = harness.statuses("r-second").await;
    let mut runner = harness.runner("busy-1").await;
    harness.submit(&request("r-first", &["busy-1"], None)).await;
    let dispatched = first.phase(RequestPhase::Dispatched).await;
    assert_eq!(
        dispatched.status.clusters["busy-1"]
            .queued
            .as_ref()
            .map(|q| q.position),
        Some(1)
    );
    runner.take().await;
    harness.started("r-first", "busy-1").await;
    first.phase(RequestPhase::Running).await;

    harness
        .submit(&request("r-second", &["busy-1"], None))
        .await;
    let queued = second
        .until("r-second is queued at position 1", |s| {
            s.status.clusters["busy-1"]
                .queued
                .as_ref()
                .is_some_and(|q| q.position == 1)
        })
        .await;
    let since = queued.status.clusters["busy-1"]
        .queued
        .as_ref()
        .map(|q| q.since)
        .expect("queued");
    // Well past the pickup timeout, the task still waits: the runner is only busy.
    wait_until(
        "three pickup timeouts have passed",
        DEFAULT_TIMEOUT,
        || async { warroom_proto::now() - since > time::Duration::seconds(3) },
    )
    .await;
    let still = harness.last_status("r-second").await;
    assert_eq!(still.status.phase, RequestPhase::Dispatched, "{still:#?}");
    assert_eq!(
        still.status.clusters["busy-1"]
            .queued
            .as_ref()
            .map(|q| q.position),
        Some(1)
    );

    let metrics = harness.health.render();
    let beat = r#"warroom_dispatcher_runner_last_heartbeat_timestamp_seconds{cluster="busy-1"} "#;
    let last_beat: i64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(beat))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no heartbeat gauge for busy-1:\n{metrics}"));
    assert!(
        (warroom_proto::now().unix_timestamp() - last_beat).abs() < 60,
        "{metrics}"
    );
    let oldest = harness
        .health
        .metrics
        .oldest_active_request_age_seconds
        .get();
    // The first request is over three seconds old; the gauge is as of the last sweep, in
    // whole seconds.
    assert!(oldest >= 2, "{metrics}");
    assert!(
        metrics.contains("# TYPE warroom_dispatcher_oldest_active_request_age_seconds gauge"),
        "{metrics}"
    );

    // The runner stops: now the pickup timeout runs, and the waiting task fails, naming the
    // last heartbeat.
    harness.heartbeat_gone("busy-1", "busy-1-0-ab12").await;
    let done = second.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::Failed);
    let error = done.status.clusters["busy-1"]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.starts_with("no runner of cluster busy-1 has sent a heartbeat since 20")
            && error.ends_with("; the task waited 1s without a live runner"),
        "{error}"
    );
    // The running cluster of the first request is not touched by the pickup timeout.
    assert_eq!(
        harness.last_status("r-first").await.status.phase,
        RequestPhase::Running
    );
    assert_eq!(harness.queued_tasks("busy-1").await, 0);
}

#[tokio::test]
async fn a_started_cluster_without_a_result_times_out() {
    let harness = Harness::start(&["--run-grace", "500ms"]).await;
    let mut statuses = harness.statuses("r-slow").await;
    let mut runner = harness.runner("prod-1").await;
    let mut slow = request("r-slow", &["prod-1"], None);
    // Below the file contract's minimum, which the dispatcher does not re-check: it keeps
    // the test short.
    slow.request.spec.investigation.timeout = 1;
    harness.submit(&slow).await;
    runner.take().await;
    harness.started("r-slow", "prod-1").await;
    statuses.phase(RequestPhase::Running).await;
    let done = statuses.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::TimedOut);
    assert_eq!(
        done.status.error.as_deref(),
        Some(
            "prod-1: no result from cluster prod-1 within the request timeout (1s) plus \
             500ms grace after its runner started"
        )
    );
    // A result that arrives after that is ignored.
    harness
        .finished("r-slow", "prod-1", Outcome::Completed, "late", None)
        .await;
    harness
        .handled(Stream::Results, names::DISPATCHER_RESULTS_CONSUMER, 2)
        .await;
    let last = harness.last_status("r-slow").await;
    assert_eq!(last.status.phase, RequestPhase::TimedOut);
    assert_eq!(last.status.revision, done.status.revision);
}

#[tokio::test]
async fn a_restarted_dispatcher_completes_the_request_it_had_dispatched() {
    let mut harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-restart").await;
    let mut runner = harness.runner("prod-1").await;
    harness
        .submit(&request("r-restart", &["prod-1"], None))
        .await;
    let task = runner.take().await;
    assert_eq!(task.request_id, "r-restart");
    statuses.phase(RequestPhase::Dispatched).await;

    harness.stop_dispatcher().await;
    // The runner keeps working while no dispatcher runs; its reports wait in the stream.
    harness.started("r-restart", "prod-1").await;
    harness.start_dispatcher(&[]);
    harness
        .finished(
            "r-restart",
            "prod-1",
            Outcome::Completed,
            "after restart",
            None,
        )
        .await;

    let done = statuses.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::Completed);
    assert_eq!(done.reports["prod-1"].final_text, "after restart");
    // The `started` report waited during the outage: applied alone it shows `running`
    // (revision 3) before `completed`; applied together with the result, one snapshot
    // goes straight to `completed`.
    let phases = statuses.phases();
    assert!(
        phases
            == [
                (1, RequestPhase::Accepted),
                (2, RequestPhase::Dispatched),
                (3, RequestPhase::Running),
                (4, RequestPhase::Completed),
            ]
            || phases
                == [
                    (1, RequestPhase::Accepted),
                    (2, RequestPhase::Dispatched),
                    (3, RequestPhase::Completed),
                ],
        "{phases:?}"
    );
    // Nothing was dispatched twice.
    assert_eq!(harness.queued_tasks("prod-1").await, 0);
    harness.stop_dispatcher().await;
}

#[tokio::test]
async fn reports_that_arrived_during_an_outage_beat_the_pickup_timeout() {
    let mut harness = Harness::start(&["--pickup-timeout", "1s"]).await;
    let mut statuses = harness.statuses("r-outage").await;
    let mut runner = harness.runner("prod-1").await;
    harness
        .submit(&request("r-outage", &["prod-1"], None))
        .await;
    runner.take().await;
    let dispatched = statuses.phase(RequestPhase::Dispatched).await;
    harness.stop_dispatcher().await;
    harness.started("r-outage", "prod-1").await;
    // The dispatcher stays away longer than the pickup timeout.
    let dispatched_at = dispatched.status.updated_at;
    wait_until("the pickup timeout has passed", DEFAULT_TIMEOUT, || async {
        warroom_proto::now() - dispatched_at > time::Duration::milliseconds(1500)
    })
    .await;
    harness.start_dispatcher(&["--pickup-timeout", "1s"]);
    let running = statuses.phase(RequestPhase::Running).await;
    assert_eq!(running.status.revision, 3, "{:?}", statuses.phases());
    harness
        .finished("r-outage", "prod-1", Outcome::Completed, "fine", None)
        .await;
    let done = statuses.final_status().await;
    assert_eq!(
        done.status.phase,
        RequestPhase::Completed,
        "{:?}",
        done.status.error
    );
    harness.stop_dispatcher().await;
}

#[tokio::test]
async fn a_request_stored_but_never_dispatched_is_resumed_at_start() {
    let mut harness = Harness::without_dispatcher().await;
    // What a dispatcher that crashed right after storing the request leaves behind.
    let kv = harness
        .bus
        .bucket(names::REQUESTS_BUCKET, 5)
        .await
        .expect("requests bucket");
    let accepted = request("r-crashed", &["prod-1"], None);
    let now = warroom_proto::now();
    let stored = serde_json::json!({
        "accepted": accepted,
        "mode": null,
        "phase": "accepted",
        "clusters": [{"name": "prod-1", "kind": "hosted", "phase": "pending"}],
        "revision": 1,
        "published_revision": 0,
        "created_at": now.format(&time::format_description::well_known::Rfc3339).expect("format"),
        "updated_at": now.format(&time::format_description::well_known::Rfc3339).expect("format"),
    });
    kv.create(
        "r-crashed",
        serde_json::to_vec(&stored).expect("json").into(),
    )
    .await
    .expect("stored");

    let mut statuses = harness.statuses("r-crashed").await;
    let mut runner = harness.runner("prod-1").await;
    harness.start_dispatcher(&[]);
    let task = runner.take().await;
    assert_eq!(task.request_id, "r-crashed");
    statuses.phase(RequestPhase::Dispatched).await;
    assert_eq!(
        statuses.phases(),
        [(1, RequestPhase::Accepted), (2, RequestPhase::Dispatched)]
    );
    harness.stop_dispatcher().await;
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_before_connecting() {
    // `run` takes only `Settings`, which only a valid configuration becomes: the refusal
    // comes before anything can connect (nothing listens on port 1 either).
    let config = Config::try_parse_from([
        "warroom-dispatcher",
        "--nats-url",
        "nats://127.0.0.1:1",
        "--pickup-timeout",
        "0s",
    ])
    .expect("parses");
    let error = config.validate().expect_err("refused").to_string();
    assert!(error.contains("--pickup-timeout"), "{error}");
}

/// A dispatcher replica started with `--replica-id id` and a short lease, and its health.
fn spawn_replica(
    server: &NatsServer,
    id: &str,
) -> (JoinHandle<warroom_dispatcher::Result<()>>, Health) {
    let config = Config::try_parse_from([
        "warroom-dispatcher",
        "--nats-url",
        server.url(),
        "--sweep-interval",
        "100ms",
        "--replica-id",
        id,
        "--lease-ttl",
        "2s",
    ])
    .expect("test config parses");
    let health = Health::new();
    let settings = config.validate().expect("test config is valid");
    let handle = tokio::spawn(warroom_dispatcher::run(
        settings,
        health.clone(),
        std::future::pending(),
    ));
    (handle, health)
}

async fn wait_active(health: &Health, what: &str) {
    let health = health.clone();
    wait_until(what, DEFAULT_TIMEOUT, || {
        let health = health.clone();
        async move { health.metrics.runtime.active.get() == 1 }
    })
    .await;
}

/// Two replicas: one works, the other stands by; when the active one dies (its task is
/// dropped, as a killed pod's process), the standby takes over once the lease ran out and
/// finishes the request the first one dispatched, with nothing dispatched twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_dispatcher_takes_over_when_the_active_one_dies() {
    let harness = Harness::without_dispatcher().await;
    let mut statuses = harness.statuses("r-lease").await;
    let mut runner = harness.runner("prod-1").await;
    let (first, first_health) = spawn_replica(&harness.server, "dispatcher-a");
    wait_active(&first_health, "the first replica holds the lease").await;
    let (second, second_health) = spawn_replica(&harness.server, "dispatcher-b");

    harness.submit(&request("r-lease", &["prod-1"], None)).await;
    let task = runner.take().await;
    assert_eq!(task.request_id, "r-lease");
    statuses.phase(RequestPhase::Dispatched).await;
    assert_eq!(first_health.metrics.requests_accepted.get(), 1);
    assert_eq!(
        second_health.metrics.runtime.active.get(),
        0,
        "the second replica stands by"
    );
    assert_eq!(second_health.metrics.requests_accepted.get(), 0);

    first.abort();
    assert!(first.await.is_err_and(|e| e.is_cancelled()));
    // The runner's reports come once the second replica took over: reports sent while the
    // dead replica's pull was still open at the server would wait out the ack wait.
    wait_active(&second_health, "the second replica takes over").await;
    harness.started("r-lease", "prod-1").await;
    harness
        .finished("r-lease", "prod-1", Outcome::Completed, "taken over", None)
        .await;
    let done = statuses.final_status().await;
    assert_eq!(done.status.phase, RequestPhase::Completed);
    assert_eq!(done.reports["prod-1"].final_text, "taken over");
    assert_eq!(
        harness.queued_tasks("prod-1").await,
        0,
        "nothing dispatched twice"
    );
    second.abort();
}

#[tokio::test]
async fn a_parallel_request_at_the_cluster_limit_fans_out_and_completes() {
    let harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-wide").await;
    let names: Vec<String> = (0..warroom_proto::validate::MAX_CLUSTERS)
        .map(|n| format!("hosted-{n:03}"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    harness
        .submit(&request("r-wide", &names, Some(CoordinationMode::Parallel)))
        .await;

    // Every cluster's task is queued before any runner answered.
    let tasks = harness
        .js()
        .get_stream(Stream::Tasks.name())
        .await
        .expect("the tasks stream");
    wait_until("a task per cluster", DEFAULT_TIMEOUT, || {
        let mut tasks = tasks.clone();
        async move {
            tasks.info().await.map(|i| i.state.messages).unwrap_or(0)
                == warroom_proto::validate::MAX_CLUSTERS as u64
        }
    })
    .await;
    assert_eq!(harness.queued_tasks("hosted-499").await, 1);

    for (n, cluster) in names.iter().enumerate() {
        let (outcome, error) = if n % 50 == 0 {
            (Outcome::Failed, Some("the API server did not answer"))
        } else {
            (Outcome::Completed, None)
        };
        harness
            .finished("r-wide", cluster, outcome, "etcd is healthy", error)
            .await;
    }
    // A generous deadline: counts are asserted here, not speed. Each result is one state
    // update and one full snapshot today, about 70 ms in a debug build (docs/benchmarks.md).
    let done = statuses
        .until_within("the request is final", Duration::from_secs(240), |s| {
            s.status.phase.is_final()
        })
        .await;
    assert_eq!(done.status.phase, RequestPhase::Failed);
    assert_eq!(done.status.clusters.len(), names.len());
    assert_eq!(done.reports.len(), names.len());
    let failed = done
        .status
        .clusters
        .values()
        .filter(|c| c.phase == ClusterPhase::Failed)
        .count();
    assert_eq!(failed, 10);
}

/// A run interrupted and started again: the status shows two attempts and what became of the
/// first; the task's record says the cluster is final once its result is in, so a runner
/// would not run a redelivered task again; a second result is ignored.
#[tokio::test]
async fn a_rerun_shows_as_attempt_2_and_the_record_turns_final() {
    let mut harness = Harness::start(&[]).await;
    let mut statuses = harness.statuses("r-rerun").await;
    let mut runner = harness.runner("prod-1").await;
    harness.submit(&request("r-rerun", &["prod-1"], None)).await;
    runner.take().await;
    for (attempt, replica) in [(1, "runner-a"), (2, "runner-b")] {
        harness
            .report(&RunnerReport::Started {
                request_id: request_id("r-rerun"),
                cluster: cluster_name("prod-1"),
                runner: replica.to_owned(),
                at: warroom_proto::now(),
                attempt,
            })
            .await;
    }
    let rerun = statuses
        .until("the second attempt", |s| {
            s.status.clusters["prod-1"].attempts == 2
        })
        .await;
    let line = &rerun.status.clusters["prod-1"];
    assert_eq!(line.phase, ClusterPhase::Running);
    let interrupted = line.interrupted.as_deref().unwrap_or_default();
    assert!(
        interrupted.starts_with("attempt 1 on runner runner-a"),
        "{interrupted}"
    );
    let records = harness
        .bus
        .bucket(names::TASKS_BUCKET, 1)
        .await
        .expect("the task records");
    let key = names::task_record_key(&cluster_name("prod-1"), &request_id("r-rerun"));
    let record = |entry: Option<bytes::Bytes>| -> Option<TaskRecord> {
        entry.map(|bytes| serde_json::from_slice(&bytes).expect("a task record"))
    };
    let running = record(records.get(&key).await.expect("read")).expect("a record");
    assert_eq!(
        (running.phase, running.attempts),
        (ClusterPhase::Running, 2)
    );

    harness
        .finished("r-rerun", "prod-1", Outcome::Completed, "second run", None)
        .await;
    let done = statuses.final_status().await;
    assert_eq!(done.status.clusters["prod-1"].attempts, 2);
    let finished = record(records.get(&key).await.expect("read")).expect("a record");
    assert_eq!(finished.phase, ClusterPhase::Completed);

    // A late result of the interrupted attempt changes nothing.
    harness
        .finished(
            "r-rerun",
            "prod-1",
            Outcome::Failed,
            "first run",
            Some("late"),
        )
        .await;
    harness
        .handled(Stream::Results, names::DISPATCHER_RESULTS_CONSUMER, 4)
        .await;
    let last = harness.last_status("r-rerun").await;
    assert_eq!(last.status.revision, done.status.revision);
    assert_eq!(last.reports["prod-1"].final_text, "second run");
    harness.stop_dispatcher().await;
}

/// Runner reports and new requests take turns: a request that arrives behind a backlog of
/// reports is dispatched while the backlog is still being worked through, not after it (a
/// burst of requests would otherwise wait for every earlier run's reports).
#[tokio::test(flavor = "multi_thread")]
async fn a_new_request_is_dispatched_while_a_backlog_of_reports_waits() {
    const BACKLOG: usize = 3000;
    let mut harness = Harness::without_dispatcher().await;
    // Reports about requests this dispatcher does not know: each is read, ignored and acked.
    let reports: Vec<RunnerReport> = (0..BACKLOG)
        .map(|n| RunnerReport::Started {
            request_id: request_id(&format!("r-gone-{n}")),
            cluster: cluster_name("prod-1"),
            runner: "runner-0".to_owned(),
            at: warroom_proto::now(),
            attempt: 1,
        })
        .collect();
    futures::stream::iter(&reports)
        .for_each_concurrent(64, |report| harness.report(report))
        .await;
    harness.submit(&request("r-new", &["prod-1"], None)).await;
    harness.start_dispatcher(&[]);

    wait_until("the new request's task", DEFAULT_TIMEOUT, || async {
        harness.queued_tasks("prod-1").await >= 1
    })
    .await;
    let mut consumer = harness
        .js()
        .get_stream(Stream::Results.name())
        .await
        .expect("the results stream")
        .get_consumer::<pull::Config>(names::DISPATCHER_RESULTS_CONSUMER)
        .await
        .expect("the dispatcher's results consumer");
    let info = consumer.info().await.expect("consumer info");
    let waiting = info.num_pending + info.num_ack_pending as u64;
    assert!(
        waiting > 0,
        "the request was dispatched only after all {BACKLOG} reports were handled"
    );
    harness
        .handled(
            Stream::Results,
            names::DISPATCHER_RESULTS_CONSUMER,
            BACKLOG as u64,
        )
        .await;
}

/// Requests that arrive together are handled concurrently, but an engineer's limit of active
/// requests still counts each of their requests once: of carol's five requests, published
/// before the dispatcher starts (so that they reach it in one batch), exactly her limit is
/// dispatched and the rest are rejected; dave's requests, in the same batch, are not held to
/// carol's count.
#[tokio::test]
async fn a_burst_of_one_engineers_requests_is_held_to_their_limit() {
    let mut harness = Harness::without_dispatcher().await;
    let of = |id: &str, engineer: &str| {
        let mut request = request(id, &["prod-1"], None);
        request.request.metadata.engineer = engineer.to_owned();
        request.max_active_requests = Some(2);
        request
    };
    let carols: Vec<String> = (0..5).map(|n| format!("r-carol-{n}")).collect();
    let daves: Vec<String> = (0..2).map(|n| format!("r-dave-{n}")).collect();
    for id in &carols {
        harness.submit(&of(id, "carol")).await;
    }
    for id in &daves {
        harness.submit(&of(id, "dave")).await;
    }
    harness.start_dispatcher(&[]);

    let mut outcomes = Vec::new();
    for id in carols.iter().chain(&daves) {
        let mut statuses = harness.statuses(id).await;
        let status = statuses
            .until("the request was dispatched or rejected", |s| {
                matches!(
                    s.status.phase,
                    RequestPhase::Dispatched | RequestPhase::Rejected
                )
            })
            .await;
        outcomes.push((id.clone(), status));
    }
    let dispatched = |engineer: &str| {
        outcomes
            .iter()
            .filter(|(id, s)| id.contains(engineer) && s.status.phase == RequestPhase::Dispatched)
            .count()
    };
    assert_eq!(dispatched("carol"), 2, "{outcomes:#?}");
    assert_eq!(dispatched("dave"), 2, "{outcomes:#?}");
    for (id, status) in &outcomes {
        if status.status.phase == RequestPhase::Rejected {
            assert!(id.contains("carol"), "{id} was rejected: {status:#?}");
            assert_eq!(status.status.errors.len(), 1, "{status:#?}");
            assert_eq!(status.status.errors[0].field, "metadata.engineer");
            assert!(
                status.status.errors[0]
                    .message
                    .starts_with("too_many_requests: the engineer `carol` already has 2 active requests; the limit is 2"),
                "{status:#?}"
            );
        }
    }
    harness.stop_dispatcher().await;
}

/// `warroom-dispatcher --check`: a good configuration passes without NATS being there; a bad
/// one lists every problem at once, one line each naming the setting and the file.
#[test]
fn check_reads_every_file_and_reports_every_problem_without_connecting() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_warroom-dispatcher"));
    let url = warroom_testkit::unused_nats_url();
    let good = warroom_testkit::run_check(bin, &["--nats-url", &url], &[]);
    good.assert_ok();
    assert!(good.stdout.contains(&url), "{good:#?}");

    let dir = tempfile::tempdir().expect("a temporary folder");
    let creds = dir.path().join("dispatcher.creds");
    std::fs::write(
        &creds,
        "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n",
    )
    .expect("writing the creds");
    let key = dir.path().join("tls.key");
    std::fs::write(&key, "not a key\n").expect("writing the key");
    let bad = warroom_testkit::run_check(
        bin,
        &[
            "--nats-creds",
            creds.to_str().expect("utf-8"),
            "--nats-tls-cert",
            "/nonexistent/tls.crt",
            "--nats-tls-key",
            key.to_str().expect("utf-8"),
            "--sweep-interval",
            "0s",
        ],
        &[("WARROOM_NATS_URL", &url)],
    );
    bad.assert_problems(
        "warroom-dispatcher",
        &[
            "has no `-----BEGIN USER NKEY SEED-----` section",
            "--nats-tls-cert /nonexistent/tls.crt",
            "not a PEM private key",
            "--sweep-interval must be longer than zero",
        ],
    );
}
