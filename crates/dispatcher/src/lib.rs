//! The claude-warroom dispatcher: owns each request's lifecycle.
//!
//! It consumes accepted requests (`WARROOM_REQUESTS`) and runner reports (`WARROOM_RESULTS`),
//! keeps one [`state::RequestState`] per request in the `warroom-requests` bucket (changed only
//! with compare-and-set), publishes one task per target cluster (single, parallel or
//! sequential, the later clusters of a sequential request carrying the earlier ones'
//! findings), enforces the pickup and run timeouts with a periodic sweep, and publishes a full
//! status snapshot at every transition for the publisher to write to git.
//!
//! Cancellation is not implemented yet: the `cancelled` phases exist in the contract and are
//! handled when a runner reports them, but nothing asks for a cancellation.

pub mod config;
pub mod engine;
pub mod state;
pub mod store;

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{self, pull};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tracing::{info, warn};
use warroom_proto::names;
use warroom_runtime::{Bus, BusError, Health};

pub use config::Config;
use engine::Engine;
use state::Timeouts;
use store::Store;

/// How long the message being handled may still take once shutdown was asked for. Handling
/// is idempotent and acknowledges last, so a cut-off message is simply redelivered later.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long the dispatcher may hold a message before the server redelivers it. Handling one
/// message takes a few round trips; messages wait in the client's batch before that.
const ACK_WAIT: Duration = Duration::from_secs(60);

/// How long closing the NATS connection may take at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many messages each consumer fetches at once.
const BATCH: usize = 16;

/// How many versions of a request's state the bucket keeps, for looking back when debugging.
const BUCKET_HISTORY: i64 = 5;

/// Everything that can go wrong in the dispatcher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot create or open consumer {consumer} on stream {stream}: {message}")]
    Consumer {
        stream: &'static str,
        consumer: &'static str,
        message: String,
    },
    #[error("the message stream of consumer {consumer} ended unexpectedly")]
    Subscription { consumer: &'static str },
    #[error("cannot {action} request {id} in key-value bucket {bucket}: {message}")]
    Kv {
        action: &'static str,
        bucket: &'static str,
        id: String,
        message: String,
    },
    #[error(
        "the stored state of request {id} is not a state this dispatcher understands: {source}"
    )]
    CorruptState {
        id: String,
        source: serde_json::Error,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: String,
        source: serde_json::Error,
    },
    #[error("cannot publish to {subject}: {message}")]
    Publish { subject: String, message: String },
    /// A message that can never be handled, whatever is retried.
    #[error("{0}")]
    InvalidMessage(String),
    #[error("request {id} kept changing while the dispatcher worked on it ({attempts} attempts)")]
    Contention { id: String, attempts: u32 },
}

impl Error {
    /// Whether retrying the message that caused it can never help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::InvalidMessage(_) | Error::CorruptState { .. } | Error::Encode { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the dispatcher until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let health = Health::default();
    health.spawn_server(config.common.health_addr, stopped(stop_rx.clone()));

    // Connecting retries until NATS is up; shutdown must still be able to end that wait.
    let setup = setup(&config, &health);
    let (mut engine, mut requests, mut results) = tokio::select! {
        ready = setup => ready?,
        () = stopped(stop_rx.clone()) => {
            info!("shutdown before the dispatcher was connected");
            return Ok(());
        }
    };
    health.set_ready(true);
    info!(
        pickup_timeout = %config::human(config.pickup_timeout),
        run_grace = %config::human(config.run_grace),
        sweep_interval = %config::human(config.sweep_interval),
        "dispatcher running"
    );

    let mut sweep = tokio::time::interval(config.sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = stopped(stop_rx.clone());
    tokio::pin!(stop);
    // Biased, in this order: shutdown first; runner reports before new requests, so work in
    // flight ends before more is taken on; the sweep last, so the reports already fetched are
    // applied before any timeout is judged.
    let outcome = loop {
        tokio::select! {
            biased;
            () = &mut stop => break Ok(()),
            next = results.next() => match next {
                Some(Ok(message)) => {
                    with_grace(&stop_rx, engine.on_report_message(message)).await;
                }
                Some(Err(e)) => warn!(consumer = names::DISPATCHER_RESULTS_CONSUMER, cause = %e, "error pulling runner reports"),
                None => break Err(Error::Subscription { consumer: names::DISPATCHER_RESULTS_CONSUMER }),
            },
            next = requests.next() => match next {
                Some(Ok(message)) => {
                    with_grace(&stop_rx, engine.on_request_message(message)).await;
                }
                Some(Err(e)) => warn!(consumer = names::DISPATCHER_REQUESTS_CONSUMER, cause = %e, "error pulling requests"),
                None => break Err(Error::Subscription { consumer: names::DISPATCHER_REQUESTS_CONSUMER }),
            },
            _ = sweep.tick() => with_grace(&stop_rx, engine.sweep()).await,
        }
    };
    health.set_ready(false);
    hand_back(&mut requests).await;
    hand_back(&mut results).await;
    let client = engine.client();
    drop((engine, requests, results));
    close(client).await;
    info!("dispatcher stopped");
    outcome
}

/// Hands the messages already fetched but not handled back to the server at once (rather
/// than after the ack wait), so the next dispatcher gets them without delay.
async fn hand_back(messages: &mut pull::Stream) {
    while let Some(Some(Ok(message))) = messages.next().now_or_never() {
        if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
            warn!(subject = %message.subject, cause = %e, "cannot hand a message back");
        }
    }
}

/// Unsubscribes and closes the connection, so the server stops handing this dispatcher
/// messages it would no longer handle (they would wait out the ack wait before redelivery
/// to the next dispatcher).
async fn close(client: async_nats::Client) {
    if let Err(e) = client.drain().await {
        warn!(cause = %e, "cannot drain the NATS connection");
        return;
    }
    // The client says it has closed by refusing commands: a flush fails once it is gone.
    let closed = async {
        while client.flush().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, closed).await.is_err() {
        warn!(timeout = ?CLOSE_TIMEOUT, "the NATS connection did not close in time");
    }
}

/// Connects, opens the bucket and the consumers, and loads the requests in flight.
async fn setup(config: &Config, health: &Health) -> Result<(Engine, pull::Stream, pull::Stream)> {
    let bus = Bus::connect(&config.common.nats_url, "warroom-dispatcher").await?;
    let store = Store::new(bus.bucket(names::REQUESTS_BUCKET, BUCKET_HISTORY).await?);
    let tasks = bus
        .jetstream
        .get_stream(names::TASKS_STREAM)
        .await
        .map_err(|e| BusError::Stream {
            name: names::TASKS_STREAM.to_owned(),
            message: e.to_string(),
        })?;
    let (_, requests) = consume(
        &bus,
        names::REQUESTS_STREAM,
        names::DISPATCHER_REQUESTS_CONSUMER,
    )
    .await?;
    let (results_consumer, results) = consume(
        &bus,
        names::RESULTS_STREAM,
        names::DISPATCHER_RESULTS_CONSUMER,
    )
    .await?;
    let timeouts = Timeouts {
        pickup: config.pickup_timeout,
        run_grace: config.run_grace,
    };
    let mut engine = Engine::new(
        bus,
        store,
        tasks,
        results_consumer,
        timeouts,
        health.metrics.clone(),
    );
    engine.load_active().await?;
    Ok((engine, requests, results))
}

/// Opens (creating it the first time) a durable pull consumer and its message stream.
async fn consume(
    bus: &Bus,
    stream: &'static str,
    name: &'static str,
) -> Result<(consumer::PullConsumer, pull::Stream)> {
    let failed = |e: &dyn std::fmt::Display| Error::Consumer {
        stream,
        consumer: name,
        message: e.to_string(),
    };
    let consumer: consumer::PullConsumer = bus
        .jetstream
        .get_stream(stream)
        .await
        .map_err(|e| failed(&e))?
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_owned()),
                description: Some("claude-warroom dispatcher".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| failed(&e))?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .messages()
        .await
        .map_err(|e| failed(&e))?;
    Ok((consumer, messages))
}

/// Runs `work` to its end, unless shutdown was asked for and the grace period ran out.
async fn with_grace(stop: &watch::Receiver<bool>, work: impl Future<Output = ()>) {
    let deadline = async {
        stopped(stop.clone()).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = work => {}
        () = deadline => warn!(grace = ?SHUTDOWN_GRACE, "shutdown grace period ran out; unfinished work will be redelivered"),
    }
}

/// Resolves once shutdown was asked for (at once if it already was).
async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after it sent `true`.
    let _ = stop.wait_for(|stopped| *stopped).await;
}
