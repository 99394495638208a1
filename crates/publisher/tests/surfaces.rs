//! The surfaces' framework ([`warroom_publisher::surfaces::run`]) against a real nats-server,
//! with a surface that records what it is asked to show and fails when told to: coalescing,
//! retries, give-up, and nothing shown twice across a restart.

#![allow(clippy::unwrap_used)] // a poisoned lock in a test is a failed test

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use warroom_proto::{RequestPhase, RequestStatus, StatusUpdate, Subject};
use warroom_publisher::surfaces::{self, Context, Failure, Limits, Shown, Surface};
use warroom_publisher::{Metrics, SurfaceLabels};
use warroom_runtime::shutdown::CancellationToken;
use warroom_runtime::{Bus, Connection};
use warroom_testkit::{DEFAULT_TIMEOUT, NatsServer, wait_until};

/// What the recording surface does with the next snapshots it is asked to show.
#[derive(Debug, Clone)]
enum Next {
    Fail(Failure),
}

/// Shows nothing anywhere: it records each snapshot it was asked to show, after the failures
/// it was told to return first.
#[derive(Default)]
struct Recording {
    shown: Mutex<Vec<(String, u64, RequestPhase)>>,
    script: Mutex<Vec<Next>>,
    tries: Mutex<u32>,
}

impl Recording {
    fn failing_first(failures: Vec<Failure>) -> Self {
        Recording {
            script: Mutex::new(failures.into_iter().map(Next::Fail).collect()),
            ..Recording::default()
        }
    }

    fn shown(&self) -> Vec<(String, u64, RequestPhase)> {
        self.shown.lock().unwrap().clone()
    }
}

impl Surface for Recording {
    const NAME: &'static str = "github";

    async fn show(&self, status: &RequestStatus, context: &mut Context) -> Result<Shown, Failure> {
        *self.tries.lock().unwrap() += 1;
        let next = {
            let mut script = self.script.lock().unwrap();
            (!script.is_empty()).then(|| script.remove(0))
        };
        if let Some(Next::Fail(failure)) = next {
            return Err(failure);
        }
        context
            .record
            .handles
            .insert("seen".to_owned(), status.revision.to_string());
        self.shown
            .lock()
            .unwrap()
            .push((status.id.to_string(), status.revision, status.phase));
        Ok(Shown::Done)
    }
}

fn update(id: &str, phase: RequestPhase, revision: u64) -> StatusUpdate {
    let id: warroom_proto::RequestId = id.parse().unwrap();
    StatusUpdate {
        status: RequestStatus {
            results_dir: warroom_proto::ResultsDir::default_for(&id),
            id,
            phase,
            clusters: BTreeMap::new(),
            error: None,
            errors: Vec::new(),
            mode: None,
            engineer: Some("alice".to_owned()),
            commit: Some("a".repeat(40)),
            revision,
            updated_at: warroom_proto::now(),
            verification: None,
            notices: Vec::new(),
            cancelled: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        },
        request: None,
        reports: BTreeMap::new(),
        synthesis: None,
    }
}

struct Setup {
    _nats: NatsServer,
    bus: Bus,
}

impl Setup {
    async fn start() -> Setup {
        let nats = NatsServer::start().await;
        let bus = Bus::connect(&Connection::plain(nats.url()), "surfaces-test")
            .await
            .expect("the test connects to NATS");
        bus.ensure_streams().await.expect("the streams exist");
        Setup { _nats: nats, bus }
    }

    /// Publishes a snapshot; `copy` tells apart two publications of the same revision (a
    /// redelivery by the dispatcher).
    async fn publish(&self, update: &StatusUpdate, copy: u32) {
        let id = &update.status.id;
        let dedup = format!("{id}-{}-{copy}", update.status.revision);
        self.bus
            .publish(&Subject::Status(id.clone()), Some(&dedup), update)
            .await
            .expect("the snapshot is stored");
    }

    /// Runs `surface` until the returned token is cancelled.
    fn run(
        &self,
        surface: Arc<Recording>,
        metrics: Arc<Metrics>,
        give_up_after: Duration,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let stop = CancellationToken::new();
        let bus = self.bus.clone();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            surfaces::run(&bus, surface, metrics, Limits { give_up_after }, token)
                .await
                .expect("the surface runs");
        });
        (stop, task)
    }
}

/// The recording surface's count in one of the surface metrics.
fn count(metrics: &Metrics, family: fn(&Metrics) -> &Family<SurfaceLabels, Counter>) -> u64 {
    family(metrics)
        .get_or_create(&SurfaceLabels { surface: "github" })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_snapshots_is_shown_once_at_its_newest() {
    let setup = Setup::start().await;
    // Five transitions of one request and one of another wait before the surface starts:
    // what an engineer would see is the newest of each, shown once.
    for revision in 1..=5 {
        let phase = if revision == 5 {
            RequestPhase::Completed
        } else {
            RequestPhase::Running
        };
        setup.publish(&update("burst-a", phase, revision), 0).await;
    }
    setup
        .publish(&update("burst-b", RequestPhase::Rejected, 1), 0)
        .await;
    let surface = Arc::new(Recording::default());
    let metrics = Arc::new(Metrics::default());
    let (stop, task) = setup.run(surface.clone(), metrics.clone(), Duration::from_secs(60));
    wait_until("both requests are shown", DEFAULT_TIMEOUT, || async {
        surface.shown().len() >= 2 && count(&metrics, |m| &m.surface_skipped) >= 4
    })
    .await;
    let mut shown = surface.shown();
    shown.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        shown,
        vec![
            ("burst-a".to_owned(), 5, RequestPhase::Completed),
            ("burst-b".to_owned(), 1, RequestPhase::Rejected),
        ],
        "only the newest snapshot of each request is shown"
    );
    assert_eq!(count(&metrics, |m| &m.surface_updates), 2);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_failure_is_retried_and_a_permanent_one_is_given_up() {
    let setup = Setup::start().await;
    let surface = Arc::new(Recording::failing_first(vec![
        Failure::Retry {
            after: Some(Duration::from_millis(50)),
            reason: "502 Bad Gateway".to_owned(),
        },
        Failure::Retry {
            after: None,
            reason: "403 rate limited".to_owned(),
        },
    ]));
    let metrics = Arc::new(Metrics::default());
    let (stop, task) = setup.run(surface.clone(), metrics.clone(), Duration::from_secs(60));
    setup
        .publish(&update("flaky", RequestPhase::Completed, 3), 0)
        .await;
    wait_until(
        "the final state lands after two failures",
        DEFAULT_TIMEOUT,
        || async { !surface.shown().is_empty() },
    )
    .await;
    assert_eq!(
        surface.shown(),
        vec![("flaky".to_owned(), 3, RequestPhase::Completed)]
    );
    assert_eq!(count(&metrics, |m| &m.surface_retries), 2);
    assert_eq!(*surface.tries.lock().unwrap(), 3);

    // A permanent failure is not retried: counted, acknowledged, and the request's next
    // snapshot is tried afresh.
    surface
        .script
        .lock()
        .unwrap()
        .push(Next::Fail(Failure::Permanent(
            "422 No commit found".to_owned(),
        )));
    setup
        .publish(&update("doomed", RequestPhase::Running, 1), 0)
        .await;
    wait_until(
        "the permanent failure is given up",
        DEFAULT_TIMEOUT,
        || async { count(&metrics, |m| &m.surface_gave_up) == 1 },
    )
    .await;
    setup
        .publish(&update("doomed", RequestPhase::Failed, 2), 0)
        .await;
    wait_until("the next snapshot is shown", DEFAULT_TIMEOUT, || async {
        surface.shown().iter().any(|(id, _, _)| id == "doomed")
    })
    .await;
    assert_eq!(
        count(&metrics, |m| &m.surface_retries),
        2,
        "a permanent failure is not retried"
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_failures_are_given_up_after_the_limit() {
    let setup = Setup::start().await;
    let failures = (0..1000)
        .map(|_| Failure::retry("503 Service Unavailable"))
        .collect();
    let surface = Arc::new(Recording::failing_first(failures));
    let metrics = Arc::new(Metrics::default());
    let (stop, task) = setup.run(surface.clone(), metrics.clone(), Duration::from_secs(1));
    setup
        .publish(&update("down", RequestPhase::Completed, 2), 0)
        .await;
    wait_until("the snapshot is given up", DEFAULT_TIMEOUT, || async {
        count(&metrics, |m| &m.surface_gave_up) == 1
    })
    .await;
    assert!(surface.shown().is_empty());
    assert!(count(&metrics, |m| &m.surface_retries) >= 1);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_shown_twice_across_a_restart() {
    let setup = Setup::start().await;
    let metrics = Arc::new(Metrics::default());
    let first = Arc::new(Recording::default());
    let (stop, task) = setup.run(first.clone(), metrics.clone(), Duration::from_secs(60));
    setup
        .publish(&update("again", RequestPhase::Completed, 4), 0)
        .await;
    wait_until("the state is shown", DEFAULT_TIMEOUT, || async {
        !first.shown().is_empty()
    })
    .await;
    stop.cancel();
    task.await.unwrap();

    // After a restart, the same snapshot published again (a redelivery) and an older one
    // are not shown; a newer one is.
    let second = Arc::new(Recording::default());
    let (stop, task) = setup.run(second.clone(), metrics.clone(), Duration::from_secs(60));
    setup
        .publish(&update("again", RequestPhase::Completed, 4), 1)
        .await;
    setup
        .publish(&update("again", RequestPhase::Running, 3), 1)
        .await;
    wait_until("both are skipped", DEFAULT_TIMEOUT, || async {
        count(&metrics, |m| &m.surface_skipped) >= 2
    })
    .await;
    setup
        .publish(&update("later", RequestPhase::Completed, 1), 0)
        .await;
    wait_until("a new request is shown", DEFAULT_TIMEOUT, || async {
        !second.shown().is_empty()
    })
    .await;
    assert_eq!(
        second.shown(),
        vec![("later".to_owned(), 1, RequestPhase::Completed)],
        "the restarted surface shows only what it had not shown"
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_alone_is_not_shown_again() {
    let setup = Setup::start().await;
    let surface = Arc::new(Recording::default());
    let metrics = Arc::new(Metrics::default());
    let (stop, task) = setup.run(surface.clone(), metrics.clone(), Duration::from_secs(60));
    let running = |revision: u64, turns: u32| {
        let mut update = update("busy", RequestPhase::Running, revision);
        let mut cluster = warroom_proto::ClusterStatus::new(
            warroom_proto::ClusterType::Hosted,
            warroom_proto::ClusterPhase::Running,
        );
        cluster.progress = Some(warroom_proto::Progress {
            at: warroom_proto::now(),
            turns,
            tool_calls: turns,
            refused: 0,
            cost_usd: None,
            last_tool_calls: Vec::new(),
        });
        update
            .status
            .clusters
            .insert("hub".parse().unwrap(), cluster);
        update
    };
    setup.publish(&running(2, 1), 0).await;
    wait_until("the running state is shown", DEFAULT_TIMEOUT, || async {
        surface.shown().len() == 1
    })
    .await;
    // Two snapshots for progress alone: nothing new to show.
    setup.publish(&running(3, 5), 0).await;
    wait_until("the first progress is skipped", DEFAULT_TIMEOUT, || async {
        count(&metrics, |m| &m.surface_skipped) >= 1
    })
    .await;
    setup.publish(&running(4, 9), 0).await;
    wait_until(
        "the second progress is skipped",
        DEFAULT_TIMEOUT,
        || async { count(&metrics, |m| &m.surface_skipped) >= 2 },
    )
    .await;
    setup
        .publish(&update("busy", RequestPhase::Completed, 5), 0)
        .await;
    wait_until("the final state is shown", DEFAULT_TIMEOUT, || async {
        surface.shown().len() == 2
    })
    .await;
    assert_eq!(
        surface.shown(),
        vec![
            ("busy".to_owned(), 2, RequestPhase::Running),
            ("busy".to_owned(), 5, RequestPhase::Completed),
        ]
    );
    stop.cancel();
    task.await.unwrap();
}
