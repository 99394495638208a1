//! Where a request's state is shown besides git: GitHub, Slack, a ConfigMap per request.
//!
//! Each enabled surface has its own durable consumer of the status snapshots
//! (`warroom.status.*`, consumer `publisher-<surface>`, see [`names::surface_consumer`]), run
//! by the replica that holds the publisher lease. A surface that is down therefore holds back
//! neither git nor the other surfaces: its snapshots wait in the stream.
//!
//! - **Coalesced.** Whatever is waiting is pulled at once and only each request's newest
//!   snapshot is shown; the older ones are acknowledged with it.
//! - **Never twice.** What a surface showed for a request is recorded in
//!   [`names::SURFACES_BUCKET`] under `<surface>.<request>` ([`Record`]): the status revision
//!   shown and the surface's own handles (a check run's id, a comment's id). A snapshot no
//!   newer than the record is not shown again: a redelivery, a publisher restart or a second
//!   replica changes nothing. Records are written with compare-and-set, so two replicas that
//!   both hold a snapshot (while the lease changes hands) cannot both record it; a surface
//!   that must not repeat a side effect claims it first with [`Context::save`].
//! - **Never stuck.** A failure the surface calls temporary ([`Failure::Retry`]) is retried
//!   with backoff (at least as long as the surface was told to wait, for example by a
//!   `Retry-After`), while the messages are kept in progress, until it lands or
//!   `--surface-give-up-after` has passed; then it is counted
//!   (`warroom_publisher_surface_gave_up_total`) and logged, and the next snapshot of that
//!   request is tried afresh.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};
use warroom_proto::{PublisherInput, RequestId, RequestPhase, RequestStatus, Stream, names};
use warroom_runtime::shutdown::CancellationToken;
use warroom_runtime::{Bus, Chain, Consumer, ConsumerSpec, Delivery, retry};

use crate::metrics::{Metrics, SurfaceLabels};
use crate::{Error, Result};

mod config;
pub use config::{SurfaceArgs, Surfaces};

/// After the first waiting snapshot, how long to gather more before showing them: long
/// enough to coalesce a burst, short enough not to be noticed.
const GATHER: Duration = Duration::from_millis(50);
/// The most snapshots pulled into one round.
const MAX_ROUND: usize = 2000;
/// How long NATS waits for an acknowledgement; messages being shown are marked as in
/// progress every quarter of it.
const ACK_WAIT: Duration = Duration::from_secs(120);
/// The first pause after a temporary failure; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two tries, unless the surface was told to wait longer.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// The pause before pulling again after the message stream failed.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// A place outside git where a request's state is shown.
pub trait Surface: Send + Sync + 'static {
    /// The surface's name, one of [`names::SURFACES`]: its consumer, its records' key prefix,
    /// its `surface` label in the metrics.
    const NAME: &'static str;

    /// How many requests are shown at the same time.
    const CONCURRENCY: usize = 4;

    /// Whether `status` is shown at all (Slack, for example, announces only some phases).
    /// A snapshot that is not wanted is acknowledged and leaves the record as it is.
    fn wants(&self, status: &RequestStatus) -> bool {
        let _ = status;
        true
    }

    /// Shows `status`, the newest snapshot of its request, updating in place what
    /// `context.record` says was shown before. On success the framework records the
    /// snapshot's revision.
    fn show(
        &self,
        status: &RequestStatus,
        context: &mut Context,
    ) -> impl Future<Output = Result<Shown, Failure>> + Send;
}

/// What [`Surface::show`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// The snapshot is shown.
    Done,
    /// Another replica claimed this snapshot first (a [`Context::save`] conflict): nothing
    /// was done, and nothing more is recorded.
    ClaimedElsewhere,
}

/// Why a snapshot could not be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try: the endpoint is down, overloaded or rate-limiting. `after` is how
    /// long it asked us to wait (`Retry-After`, a rate-limit reset), if it said.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Will fail again however often it is tried (a 404 for the repository, a 422): logged,
    /// counted, and not retried.
    Permanent(String),
}

impl Failure {
    pub fn retry(reason: impl Into<String>) -> Failure {
        Failure::Retry {
            after: None,
            reason: reason.into(),
        }
    }

    fn reason(&self) -> &str {
        match self {
            Failure::Retry { reason, .. } | Failure::Permanent(reason) => reason,
        }
    }
}

/// What a surface showed for one request, kept in [`names::SURFACES_BUCKET`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The status revision shown last; 0 before the first.
    #[serde(default)]
    pub revision: u64,
    /// The phase shown last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RequestPhase>,
    /// What the surface needs to update in place, by its own names (`check_run`, `comment`,
    /// `sending`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handles: BTreeMap<String, String>,
}

/// A surface's view of one request's record while it shows a snapshot.
pub struct Context {
    /// What was shown before; the surface may change its handles.
    pub record: Record,
    key: String,
    /// The KV revision the record was read at (0: no record yet), for compare-and-set.
    entry: u64,
    records: kv::Store,
}

/// Saving a record lost to another replica's write.
#[derive(Debug, thiserror::Error)]
#[error("the record {key} was changed by another replica")]
pub struct Conflict {
    pub key: String,
}

impl Context {
    /// Writes `record` now, compare-and-set on the revision it was read at: `Err(Conflict)`
    /// when another replica wrote it meanwhile (it claimed the same work), or when it cannot
    /// be written (then nothing may be assumed claimed either).
    pub async fn save(&mut self) -> Result<(), Conflict> {
        let conflict = || Conflict {
            key: self.key.clone(),
        };
        let bytes = serde_json::to_vec(&self.record).map_err(|_| conflict())?;
        let written = if self.entry == 0 {
            self.records.create(&self.key, bytes.into()).await.ok()
        } else {
            self.records
                .update(&self.key, bytes.into(), self.entry)
                .await
                .ok()
        };
        match written {
            Some(revision) => {
                self.entry = revision;
                Ok(())
            }
            None => Err(conflict()),
        }
    }
}

/// How surfaces retry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// After this long of temporary failures, one snapshot is given up (`--surface-give-up-after`).
    pub give_up_after: Duration,
}

impl Surfaces {
    /// Starts every enabled surface, each until `stop` is cancelled. A surface whose consumer
    /// cannot be set up logs why and stops; git publishing goes on.
    pub(crate) fn spawn_all(
        &self,
        bus: &Bus,
        metrics: &Arc<Metrics>,
        stop: &CancellationToken,
    ) -> tokio::task::JoinSet<()> {
        let tasks = tokio::task::JoinSet::new();
        let _ = (bus, metrics, stop, self.limits);
        tasks
    }
}

/// Shows the status snapshots on `surface` until `stop` is cancelled.
pub async fn run<S: Surface>(
    bus: &Bus,
    surface: Arc<S>,
    metrics: Arc<Metrics>,
    limits: Limits,
    stop: CancellationToken,
) -> Result<()> {
    debug_assert!(
        names::SURFACES.contains(&S::NAME),
        "{} is not a known surface",
        S::NAME
    );
    let records = bus.bucket(names::SURFACES_BUCKET, 1).await?;
    let mut messages = tokio::select! {
        messages = consume::<S>(bus, &metrics) => messages?,
        () = stop.cancelled() => return Ok(()),
    };
    info!(surface = S::NAME, "showing request states");
    let shower = Shower {
        surface,
        records,
        metrics,
        limits,
        stop: stop.clone(),
    };
    while let Some(round) = next_round(&mut messages, &stop).await {
        let requests = coalesce(round);
        futures::stream::iter(requests.into_values())
            .for_each_concurrent(S::CONCURRENCY, |(status, deliveries)| {
                shower.show(status, deliveries)
            })
            .await;
    }
    messages.hand_back().await;
    Ok(())
}

async fn consume<S: Surface>(bus: &Bus, metrics: &Metrics) -> Result<Consumer<PublisherInput>> {
    let spec = ConsumerSpec {
        filter: Some(names::all_statuses()),
        ack_wait: ACK_WAIT,
        // Retries happen in place; a redelivery only follows a crash or a lost lease.
        max_deliver: 1000,
        max_ack_pending: 4 * MAX_ROUND as i64,
        batch: 500,
        ..ConsumerSpec::new(
            Stream::Events,
            names::surface_consumer(S::NAME),
            "claude-warroom publisher: request states outside git",
        )
    };
    Ok(bus
        .consume::<PublisherInput>(spec)
        .await
        .map_err(Error::Bus)?
        .with_metrics(&metrics.runtime))
}

/// The snapshots waiting now: the first one waited for, then whatever arrives within
/// [`GATHER`]. `None` when `stop` is cancelled.
async fn next_round(
    messages: &mut Consumer<PublisherInput>,
    stop: &CancellationToken,
) -> Option<Vec<Delivery<PublisherInput>>> {
    let first = loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => return None,
            next = messages.next() => next,
        };
        match next {
            Ok(delivery) => break delivery,
            Err(e) => {
                warn!(cause = %Chain(&e), "error pulling status snapshots");
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(REOPEN_DELAY) => {}
                }
            }
        }
    };
    let mut round = vec![first];
    let end = tokio::time::Instant::now() + GATHER;
    while round.len() < MAX_ROUND {
        match messages.next_before(end).await {
            Some(Ok(delivery)) => round.push(delivery),
            Some(Err(e)) => warn!(cause = %Chain(&e), "error pulling status snapshots"),
            None => break,
        }
    }
    Some(round)
}

/// Each request's newest snapshot, with every delivery that it answers.
fn coalesce(
    round: Vec<Delivery<PublisherInput>>,
) -> HashMap<RequestId, (RequestStatus, Vec<Delivery<PublisherInput>>)> {
    let mut requests: HashMap<RequestId, (RequestStatus, Vec<Delivery<PublisherInput>>)> =
        HashMap::new();
    for delivery in round {
        let PublisherInput::Status(update) = &delivery.message else {
            // The filter lets only statuses through.
            continue;
        };
        let status = &update.status;
        match requests.get_mut(&status.id) {
            Some((newest, deliveries)) => {
                if status.revision > newest.revision {
                    *newest = status.clone();
                }
                deliveries.push(delivery);
            }
            None => {
                requests.insert(status.id.clone(), (status.clone(), vec![delivery]));
            }
        }
    }
    requests
}

/// Shows snapshots on one surface.
struct Shower<S> {
    surface: Arc<S>,
    records: kv::Store,
    metrics: Arc<Metrics>,
    limits: Limits,
    stop: CancellationToken,
}

/// What became of one snapshot.
enum Outcome {
    Shown,
    /// Already shown (a redelivery, another replica), or not wanted.
    Skipped,
    GaveUp,
    /// Shutdown or the lease lost before it was shown: handed back.
    Stopped,
}

impl<S: Surface> Shower<S> {
    /// Shows one request's newest snapshot and settles every delivery it answers.
    async fn show(&self, status: RequestStatus, deliveries: Vec<Delivery<PublisherInput>>) {
        let labels = SurfaceLabels { surface: S::NAME };
        let work = self.show_until_done(&status);
        tokio::pin!(work);
        let every = ACK_WAIT / 4;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = progress.tick() => {
                    for delivery in &deliveries {
                        delivery.in_progress().await;
                    }
                }
            }
        };
        let metric = match outcome {
            Outcome::Shown => &self.metrics.surface_updates,
            Outcome::Skipped => &self.metrics.surface_skipped,
            Outcome::GaveUp => &self.metrics.surface_gave_up,
            Outcome::Stopped => {
                for delivery in &deliveries {
                    delivery.nak(None).await;
                }
                return;
            }
        };
        metric.get_or_create(&labels).inc();
        let coalesced = deliveries.len().saturating_sub(1) as u64;
        self.metrics
            .surface_skipped
            .get_or_create(&labels)
            .inc_by(coalesced);
        for delivery in &deliveries {
            delivery.ack().await;
        }
    }

    /// Tries until the snapshot is shown, is found already shown, fails for good, or the
    /// give-up limit passes.
    async fn show_until_done(&self, status: &RequestStatus) -> Outcome {
        let labels = SurfaceLabels { surface: S::NAME };
        let started = tokio::time::Instant::now();
        let mut failures = 0usize;
        loop {
            let attempt = self.show_once(status).await;
            let failure = match attempt {
                Ok(outcome) => return outcome,
                Err(failure) => failure,
            };
            let request = &status.id;
            let phase = status.phase;
            if let Failure::Permanent(reason) = &failure {
                error!(surface = S::NAME, request = %request, %phase, reason = %reason, "cannot show the request's state; not retrying");
                return Outcome::GaveUp;
            }
            failures += 1;
            let elapsed = started.elapsed();
            if elapsed >= self.limits.give_up_after {
                error!(surface = S::NAME, request = %request, %phase, tries = failures, reason = %failure.reason(), "giving up showing the request's state after {elapsed:?}");
                return Outcome::GaveUp;
            }
            let mut pause = retry::delay(FIRST_PAUSE, MAX_PAUSE, failures);
            if let Failure::Retry {
                after: Some(after), ..
            } = &failure
            {
                pause = pause.max(*after);
            }
            let pause = pause.min(self.limits.give_up_after.saturating_sub(elapsed));
            self.metrics.surface_retries.get_or_create(&labels).inc();
            warn!(surface = S::NAME, request = %request, %phase, reason = %failure.reason(), retry_in = ?pause, "cannot show the request's state yet; retrying");
            tokio::select! {
                () = self.stop.cancelled() => return Outcome::Stopped,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One try: read the record, show the snapshot if it is newer, record it.
    async fn show_once(&self, status: &RequestStatus) -> Result<Outcome, Failure> {
        if self.stop.is_cancelled() {
            return Ok(Outcome::Stopped);
        }
        let key = format!("{}.{}", S::NAME, status.id);
        let (record, entry) = match self.records.entry(&key).await {
            Ok(Some(entry)) => match serde_json::from_slice::<Record>(&entry.value) {
                Ok(record) => (record, entry.revision),
                Err(e) => {
                    warn!(surface = S::NAME, key = %key, cause = %e, "an unreadable record; showing the state afresh");
                    (Record::default(), entry.revision)
                }
            },
            // A deleted or purged key reads as no record; writing it back needs its revision.
            Ok(None) => (Record::default(), 0),
            Err(e) => return Err(Failure::retry(format!("cannot read {key}: {e}"))),
        };
        if record.revision >= status.revision {
            debug!(surface = S::NAME, request = %status.id, shown = record.revision, revision = status.revision, "already shown");
            return Ok(Outcome::Skipped);
        }
        if !self.surface.wants(status) {
            return Ok(Outcome::Skipped);
        }
        let mut context = Context {
            record,
            key,
            entry,
            records: self.records.clone(),
        };
        match self.surface.show(status, &mut context).await? {
            Shown::ClaimedElsewhere => return Ok(Outcome::Skipped),
            Shown::Done => {}
        }
        context.record.revision = status.revision;
        context.record.phase = Some(status.phase);
        if let Err(conflict) = context.save().await {
            // Shown, and another replica recorded meanwhile: whatever it recorded is at
            // least as new, or the next snapshot shows it again.
            debug!(surface = S::NAME, request = %status.id, cause = %conflict, "recorded elsewhere");
        }
        Ok(Outcome::Shown)
    }
}
