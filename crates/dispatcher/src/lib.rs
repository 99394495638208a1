//! The claude-warroom dispatcher: owns each request's lifecycle.
//!
//! It consumes accepted requests (`WARROOM_REQUESTS`) and runner reports (`WARROOM_RESULTS`),
//! keeps one [`state::RequestState`] per request in the `warroom-requests` bucket (changed only
//! with compare-and-set), publishes one task per target cluster (single, parallel or
//! sequential, the later clusters of a sequential request carrying the earlier ones'
//! findings), enforces the pickup and run timeouts with a periodic sweep, and publishes a full
//! status snapshot at every transition for the publisher to write to git.
//!
//! It follows the runners' heartbeats ([`liveness`]): a dispatched task waits, `queued` with
//! its position in its cluster's queue, as long as a runner of its cluster is live, and fails
//! its cluster only once the cluster has had no live runner for the pickup timeout.
//!
//! Cancellation is not implemented yet: the `cancelled` phases exist in the contract and are
//! handled when a runner reports them, but nothing asks for a cancellation.

mod attempts;
mod config;
mod engine;
mod liveness;
mod metrics;
mod state;
mod store;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warroom_runtime::Chain;

use tokio::sync::mpsc;
use tracing::{info, warn};
use warroom_proto::{GatewayMessage, Inbound, RunnerReport, Stream, names};
use warroom_runtime::bus::PullError;
use warroom_runtime::shutdown::CancellationToken;
use warroom_runtime::{Bus, BusError, Consumer, ConsumerSpec, Delivery, lease};

pub use config::{Config, Settings};
use engine::Engine;
use liveness::Liveness;
pub use metrics::{ClusterLabels, Health, Metrics};
use state::Timeouts;
use store::Store;

/// How long the message being handled may still take once shutdown was asked for. Handling
/// is idempotent and acknowledges last, so a cut-off message is simply redelivered later.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long closing the NATS connection may take at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for the last acks to reach NATS.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long handing back what was fetched but not handled may take at shutdown; what is
/// not handed back by then returns to the stream after the ack wait.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How many messages each consumer fetches at once.
const BATCH: usize = 16;

/// How many times a message is delivered before it is dead-lettered. Handling is idempotent,
/// so redeliveries are harmless; the limit is for a message that fails every time for a
/// reason that looks passing (with the doubling retry delay, about eight minutes of trying).
const MAX_DELIVER: i64 = 20;

/// How long to wait before pulling again after a pull failed (NATS unreachable, the consumer
/// deleted), so a persistent failure is not a busy loop.
const PULL_RETRY: Duration = Duration::from_secs(1);

/// How long a task's record is kept: as long as the streams keep their messages.
const TASK_RECORDS_KEPT: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How many versions of a request's state the bucket keeps, for looking back when debugging.
const BUCKET_HISTORY: i64 = 5;

/// Most runner reports handled together (see `Engine::on_reports`); also how many the
/// report pump may fetch ahead.
const REPORTS_AT_ONCE: usize = 64;

/// Most gateway messages handled together (see `Engine::on_requests`); also how many the
/// request pump may fetch ahead.
const REQUESTS_AT_ONCE: usize = 64;

/// Everything that can go wrong in the dispatcher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(warroom_runtime::config::InvalidConfig),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot {action} request {id} in key-value bucket {bucket}")]
    Kv {
        action: &'static str,
        bucket: &'static str,
        id: String,
        #[source]
        source: warroom_runtime::bus::Cause,
    },
    #[error("the stored state of request {id} is not a state this dispatcher understands")]
    CorruptState {
        id: warroom_proto::RequestId,
        source: serde_json::Error,
    },
    #[error("cannot encode {what}")]
    Encode {
        what: String,
        source: serde_json::Error,
    },
    #[error("request {id} kept changing while the dispatcher worked on it ({attempts} attempts)")]
    Contention {
        id: warroom_proto::RequestId,
        attempts: u32,
    },
    /// A notice about a request with no stored state: retried, since the request itself
    /// may still be on its way, then dead-lettered.
    #[error("a notice names request {0}, which this dispatcher has no state for")]
    UnknownRequest(warroom_proto::RequestId),
}

impl Error {
    /// Whether retrying the message that caused it can never help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::CorruptState { .. } | Error::Encode { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the dispatcher until `shutdown` resolves, reporting readiness and [`Metrics`] into
/// `health` (`active` is 1 while this replica holds the lease).
///
/// One replica works at a time: it holds the `dispatcher` lease ([`lease`]); the others
/// stand by and take over when it stops, dies or loses the lease.
pub async fn run(
    config: Settings,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shutdown = warroom_runtime::shutdown::token(shutdown);
    health.spawn_server(
        config.common.health_addr,
        shutdown.clone().cancelled_owned(),
    );

    // Connecting retries until NATS is up; shutdown must still be able to end that wait.
    let connection = config.common.connection();
    let bus = tokio::select! {
        bus = Bus::connect(&connection, "warroom-dispatcher") => bus?,
        () = shutdown.cancelled() => {
            info!("shutdown before the dispatcher was connected");
            return Ok(());
        }
    };
    health.set_ready(true);
    let spec = config.common.lease(names::DISPATCHER_LEASE);
    let outcome = lease::while_held(&bus, spec, &shutdown, &health.metrics.runtime, |stop| {
        lead(&config, &health, &bus, stop)
    })
    .await;
    health.set_ready(false);
    // The acks of the last messages handled must reach the server, or they are redelivered.
    bus.flush(FLUSH_TIMEOUT).await;
    bus.close(CLOSE_TIMEOUT).await;
    info!("dispatcher stopped");
    outcome
}

/// The active replica's work, until `stop` (shutdown, or the lease lost).
async fn lead(
    config: &Settings,
    health: &Health,
    bus: &Bus,
    stop: CancellationToken,
) -> Result<()> {
    let (engine, requests, results) = tokio::select! {
        ready = setup(bus, config, health, &stop) => ready?,
        () = stop.cancelled() => return Ok(()),
    };
    info!(
        pickup_timeout = %config::human(config.pickup_timeout),
        run_grace = %config::human(config.run_grace),
        sweep_interval = %config::human(config.sweep_interval),
        "dispatcher running"
    );

    let (report_tx, mut reports) = mpsc::channel(REPORTS_AT_ONCE);
    let (request_tx, mut accepted) = mpsc::channel(REQUESTS_AT_ONCE);
    let report_pump = tokio::spawn(pump(results, report_tx, stop.clone()));
    let request_pump = tokio::spawn(pump(requests, request_tx, stop.clone()));

    let mut sweep = tokio::time::interval(config.sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Biased: shutdown first; then runner reports and new requests take turns, so that
    // neither a busy fleet's reports hold back the dispatch of new requests (a burst of
    // requests would wait for every run before it) nor the other way round; the sweep last,
    // so the reports already fetched are applied before any timeout is judged.
    // Whatever else has arrived is handled with the message received (see
    // `Engine::on_reports` and `Engine::on_requests`).
    let mut requests_turn = false;
    loop {
        if std::mem::take(&mut requests_turn) && !stop.is_cancelled() {
            let batch = arrived(&mut accepted, Vec::new(), REQUESTS_AT_ONCE);
            if !batch.is_empty() {
                with_grace(&stop, engine.on_requests(batch)).await;
                continue;
            }
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(delivery) = reports.recv() => {
                requests_turn = true;
                let batch = arrived(&mut reports, vec![delivery], REPORTS_AT_ONCE);
                with_grace(&stop, engine.on_reports(batch)).await;
            }
            Some(delivery) = accepted.recv() => {
                let batch = arrived(&mut accepted, vec![delivery], REQUESTS_AT_ONCE);
                with_grace(&stop, engine.on_requests(batch)).await;
            }
            _ = sweep.tick() => with_grace(&stop, engine.sweep()).await,
        }
    }
    let drain = async {
        hand_back(&mut reports, report_pump).await;
        hand_back(&mut accepted, request_pump).await;
    };
    if tokio::time::timeout(HAND_BACK_TIMEOUT, drain)
        .await
        .is_err()
    {
        warn!(timeout = ?HAND_BACK_TIMEOUT, "handing messages back took too long; the rest return after the ack wait");
    }
    drop(engine);
    bus.flush(FLUSH_TIMEOUT).await;
    Ok(())
}

/// `batch` and whatever else waits in `deliveries`, up to `most` in all.
fn arrived<T>(deliveries: &mut mpsc::Receiver<T>, mut batch: Vec<T>, most: usize) -> Vec<T> {
    while batch.len() < most
        && let Ok(next) = deliveries.try_recv()
    {
        batch.push(next);
    }
    batch
}

/// Pulls deliveries from `consumer` into `deliveries` until shutdown, then returns the
/// consumer so that what it fetched can be handed back.
///
/// [`Consumer::next`] settles a message that does not decode itself, so it must not be cut
/// off half way, as the main loop's `select!` would whenever another branch won. In its own
/// task it runs to its end; the main loop waits on the channel, whose `recv` can be cut off
/// at any point without losing anything.
async fn pump<T: Inbound>(
    mut consumer: Consumer<T>,
    deliveries: mpsc::Sender<Delivery<T>>,
    shutdown: CancellationToken,
) -> Consumer<T> {
    loop {
        // Take a message only once the main loop has room for it, so that at shutdown none
        // is held here, out of reach of the hand-back.
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            permit = deliveries.reserve() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            next = consumer.next() => match next {
                Ok(delivery) => permit.send(delivery),
                Err(e) => pull_failed(&shutdown, &e).await,
            },
        }
    }
    consumer
}

/// Hands what was fetched but not handled back to the server at once (rather than after the
/// ack wait), so the next dispatcher gets it without delay: the delivery the main loop did
/// not take, then whatever the consumer had fetched.
async fn hand_back<T: Inbound>(
    deliveries: &mut mpsc::Receiver<Delivery<T>>,
    pump: tokio::task::JoinHandle<Consumer<T>>,
) {
    deliveries.close();
    while let Some(delivery) = deliveries.recv().await {
        delivery.nak(None).await;
    }
    match pump.await {
        Ok(mut consumer) => consumer.hand_back().await,
        Err(e) => {
            warn!(cause = %Chain(&e), "a consumer task failed; its messages return after the ack wait")
        }
    }
}

/// Connects, opens the buckets and the consumers, starts following the runners' heartbeats,
/// and loads the requests in flight.
async fn setup(
    bus: &Bus,
    config: &Config,
    health: &Health,
    stop: &CancellationToken,
) -> Result<(Engine, Consumer<GatewayMessage>, Consumer<RunnerReport>)> {
    let store = Store::new(bus.bucket(names::REQUESTS_BUCKET, BUCKET_HISTORY).await?);
    let records = bus
        .bucket_with(async_nats::jetstream::kv::Config {
            bucket: names::TASKS_BUCKET.to_owned(),
            history: 1,
            // As long as the tasks they describe can stay in the tasks stream.
            max_age: TASK_RECORDS_KEPT,
            ..Default::default()
        })
        .await?;
    let tasks = bus.stream(Stream::Tasks).await?;
    let results_stream = bus.stream(Stream::Results).await?;
    // The consumers count every message set aside, including those that do not decode.
    let requests = bus
        .consume(consumer_spec(
            Stream::Requests,
            names::DISPATCHER_REQUESTS_CONSUMER,
            config.ack_wait,
        ))
        .await?
        .with_metrics(&health.metrics.runtime);
    let results = bus
        .consume(consumer_spec(
            Stream::Results,
            names::DISPATCHER_RESULTS_CONSUMER,
            config.ack_wait,
        ))
        .await?
        .with_metrics(&health.metrics.runtime);
    // Heartbeats are followed from now on; a waiting task's time without a live runner is
    // never counted from before.
    let liveness = Arc::new(Mutex::new(Liveness::new(warroom_proto::now())));
    let runners = bus.runners_bucket().await?;
    let timeouts = Timeouts {
        pickup: config.pickup_timeout,
        run_grace: config.run_grace,
        progress: config.progress_interval,
        synthesis: (!config.synthesis_timeout.is_zero()).then_some(config.synthesis_timeout),
    };
    let mut engine = Engine::new(
        bus.clone(),
        store,
        records,
        engine::Streams {
            tasks,
            results: results_stream,
        },
        timeouts,
        health.metrics.clone(),
        liveness.clone(),
    );
    engine.load_active().await?;
    tokio::spawn(liveness::watch(
        runners,
        liveness,
        health.metrics.clone(),
        stop.clone(),
    ));
    Ok((engine, requests, results))
}

/// How each of the dispatcher's durable consumers is set up: every subject of its stream.
/// Handling one message takes a few round trips; messages wait in the client's batch before
/// that, well within `ack_wait` (`--ack-wait`).
fn consumer_spec(stream: Stream, durable: &str, ack_wait: Duration) -> ConsumerSpec {
    ConsumerSpec {
        ack_wait,
        max_deliver: MAX_DELIVER,
        batch: BATCH,
        ..ConsumerSpec::new(stream, durable, "claude-warroom dispatcher")
    }
}

/// Logs a failed pull and waits a moment (or until shutdown) before the next one.
async fn pull_failed(shutdown: &CancellationToken, error: &PullError) {
    warn!(consumer = %error.consumer, cause = %Chain(&*error.source), "error pulling messages");
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(PULL_RETRY) => {}
    }
}

/// Runs `work` to its end, unless shutdown was asked for and the grace period ran out.
async fn with_grace(shutdown: &CancellationToken, work: impl Future<Output = ()>) {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = work => {}
        () = deadline => warn!(grace = ?SHUTDOWN_GRACE, "shutdown grace period ran out; unfinished work will be redelivered"),
    }
}
