//! The publisher: NATS -> git, the only writer of the repository.
//!
//! It consumes [`names::EVENTS_STREAM`] with the durable pull consumer
//! [`names::PUBLISHER_CONSUMER`]: request status snapshots (`warroom.status.<id>`,
//! [`StatusUpdate`](warroom_proto::StatusUpdate)) and the runners' audit events
//! (`warroom.events.<id>.<cluster>`, [`AuditEvent`](warroom_proto::AuditEvent)), in stream
//! order. After the first message it gathers whatever else arrives within the batch window
//! and turns the batch into one commit:
//!
//! 1. fetch the branch and reset the working clone to it exactly, unless the clone is the
//!    commit this replica has just pushed there (then it stays as it is);
//! 2. write every message of the batch under `results/` (`status.json`, `<cluster>.md`,
//!    `README.md`, `audit.jsonl`), redacted ([`redact`]);
//! 3. commit and push, only while the branch is still at the commit of step 1.
//!
//! A batch whose status snapshot is a request's last (a final phase) is closed as soon as
//! no more messages are waiting, instead of at the end of the window: nothing of that request
//! follows it, and it is the one an engineer waits for.
//!
//! When the push is rejected (an engineer pushed a request meanwhile), the batch is redone
//! from step 1 on the new head: at once when step 1 had skipped the fetch, otherwise up to
//! `--push-attempts` times. Since the publisher owns
//! `results/` and engineers only add `requests/`, redoing the batch loses nothing. The
//! messages are acknowledged only after the push succeeded; a batch that cannot be pushed is
//! handed back (nak with a delay) and retried later. A message that can never be written (it
//! does not decode, or a path in it would leave `results/`) is logged and terminated, and
//! never holds up the others.
//!
//! After each push, the files changed under `results/` are also mirrored to an S3-compatible
//! bucket when one is configured: see [`s3`]. The mirror follows the pushed commits on a task
//! of its own, so a bucket that is down never holds back git.
//!
//! Besides git, the request's state is shown on the surfaces that are configured (GitHub,
//! Slack, a ConfigMap): see [`surfaces`]. They follow the status snapshots on consumers of
//! their own, so none of them ever holds back git.

mod config;
mod metrics;
pub use warroom_redact as redact;
mod render;
mod repo;
pub mod s3;
pub mod surfaces;
mod tree;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use warroom_runtime::Chain;

use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt as _;
use tracing::{debug, error, info, warn};
use warroom_git::CommitId;
use warroom_proto::{PublisherInput, RequestId, RequestPhase, Stream, names};
use warroom_runtime::retry::{self, Retryable as _};
use warroom_runtime::shutdown::CancellationToken;
use warroom_runtime::{Bus, BusError, Consumer, ConsumerSpec, Delivery, lease};

pub use metrics::{Health, Metrics, SurfaceLabels};

use crate::repo::Repo;
use crate::tree::{Applied, Item, Problem, Summary, Tree};
pub use config::{
    Config, MAX_BATCH_WINDOW, MAX_PUSH_ATTEMPTS, Secret, Settings, SigningFormat, parse_duration,
};

/// The most messages in one commit. A burst of 1,000 requests brings about 4,300 (snapshots
/// and events), and each commit costs about the same whatever it holds: with 500 a burst
/// took nine cycles, one after another, to reach git.
const MAX_BATCH: usize = 5000;
/// The most payload bytes in one commit, so a batch of wide requests' snapshots (each
/// carrying every finished cluster's report) stays small in memory.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// The most messages delivered and not yet acknowledged: two batches' worth.
const MAX_ACK_PENDING: i64 = 2 * MAX_BATCH as i64;
/// How many messages one pull asks for.
const PULL_BATCH: usize = 1000;
/// When a batch could not be pushed, how long before its messages come back.
const NAK_DELAY: Duration = Duration::from_secs(10);
/// How long the batch in flight may take to finish once shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// The pause before pulling again after the message stream failed.
const REOPEN_DELAY: Duration = Duration::from_secs(1);
/// Deliveries of one message before it goes to the dead letters: with the 10 s delay
/// between them, about five minutes of a failing file system or remote.
const MAX_DELIVER: i64 = 30;
/// The reads and writes of the publisher's revision record in flight at once: a batch of a
/// burst touches hundreds of requests, and one round trip each, one after another, was a
/// large part of a cycle.
const KV_CONCURRENCY: usize = 64;
/// How long shutdown waits for the last acks to reach NATS.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// After a final status, how long a batch waits for one more message before it is closed.
const FINAL_SETTLE: Duration = Duration::from_millis(20);
/// Batches committed on this replica's own last push without a fetch, at most, before the
/// next one fetches again: the clone's history since its last (one-commit) fetch stays short.
const MAX_UNFETCHED: u32 = 32;

/// The pause before the first push retry; it doubles with each retry, up to
/// [`MAX_PUSH_PAUSE`]. Short: a concurrent engineer's push is over in moments.
const FIRST_PUSH_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two push attempts.
const MAX_PUSH_PAUSE: Duration = Duration::from_secs(3);

/// What can stop the publisher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(warroom_runtime::config::InvalidConfig),
    #[error(transparent)]
    Git(#[from] warroom_git::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the batch was not pushed after {attempts} attempts; the last refusal: {reason}")]
    PushRefused { attempts: u32, reason: String },
    #[error("shutdown came before the batch could be pushed again")]
    Stopped,
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("cannot use the work directory {path}")]
    WorkDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the apply step stopped unexpectedly")]
    Task(#[source] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a successful push published, for whoever reports it further (a GitHub status surface
/// would hook in here).
#[derive(Debug, Clone)]
pub struct Published {
    /// The commit pushed; `None` when the batch changed nothing.
    pub commit: Option<CommitId>,
    /// Requests whose status was written, with the phase written.
    pub statuses: Vec<(RequestId, RequestPhase)>,
    /// Messages that changed files.
    pub written: usize,
    /// Messages with nothing to write (duplicates, older snapshots).
    pub skipped: usize,
}

/// Runs the publisher until `shutdown` resolves, reporting readiness and [`Metrics`] into
/// `health` (`active` is 1 while this replica holds the lease and writes).
pub async fn run(
    settings: Settings,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shutdown = warroom_runtime::shutdown::token(shutdown);
    health.spawn_server(
        settings.common.health_addr,
        shutdown.clone().cancelled_owned(),
    );
    info!(
        repo = %settings.repo,
        branch = %settings.branch,
        work_dir = %settings.work_dir.display(),
        batch_window_ms = settings.batch_window.as_millis() as u64,
        push_attempts = settings.push_attempts,
        signing_key = settings.signing.as_ref().map_or("none (commits are not signed)", |s| s.public.as_str()),
        surfaces = %settings.surfaces.summary(),
        s3 = settings.s3.as_ref().map_or_else(|| "off".to_owned(), |s3| s3.summary()),
        "publisher starting"
    );
    // Connecting retries until NATS is up; shutdown must still be able to end that wait.
    let (bus, repo) = tokio::select! {
        setup = connect(&settings) => setup?,
        () = shutdown.cancelled() => {
            info!("shutdown before the publisher was connected");
            return Ok(());
        }
    };
    health.set_ready(true);
    let revisions = bus.bucket(names::PUBLISHER_BUCKET, 1).await?;

    // One replica writes at a time: the holder of the `publisher` lease. The others keep
    // their working clone ready and stand by.
    let spec = settings.common.lease(names::PUBLISHER_LEASE);
    let outcome = lease::while_held(&bus, spec, &shutdown, &health.metrics.runtime, |stop| {
        let publisher = Publisher {
            settings: settings.clone(),
            repo: repo.clone(),
            revisions: revisions.clone(),
            health: health.clone(),
            shutdown: stop,
            own_push: std::sync::Mutex::new(None),
            pushed: None,
        };
        let bus = bus.clone();
        let health = health.clone();
        let surfaces = settings.surfaces.clone();
        let s3 = settings.s3.clone();
        let revisions = revisions.clone();
        async move {
            let mut publisher = publisher;
            // The surfaces outside git and the S3 mirror run beside the git work, under the
            // same lease.
            let mut surfaces = surfaces.spawn_all(&bus, &health.metrics, &publisher.shutdown);
            if let Some(s3) = s3 {
                let (pushed, follow) = tokio::sync::watch::channel(None);
                publisher.pushed = Some(pushed);
                let (repo, metrics, stop) = (
                    publisher.repo.clone(),
                    health.metrics.clone(),
                    publisher.shutdown.clone(),
                );
                surfaces.spawn(async move {
                    s3::run(&s3, repo, revisions, metrics, follow, stop).await;
                });
            }
            let outcome = lead(&bus, &publisher, &health).await;
            while surfaces.join_next().await.is_some() {}
            outcome
        }
    })
    .await;
    health.set_ready(false);
    // The acks of the last batch must reach the server, or it is written again.
    bus.flush(FLUSH_TIMEOUT).await;
    info!("publisher stopped");
    outcome
}

/// The active replica's work: batches from the consumer until its token (shutdown, or the
/// lease lost) is cancelled.
async fn lead(bus: &Bus, publisher: &Publisher, health: &Health) -> Result<()> {
    let stop = publisher.shutdown.clone();
    let mut messages = tokio::select! {
        messages = consume(bus, health, publisher.settings.ack_wait) => messages?,
        () = stop.cancelled() => return Ok(()),
    };
    while let Some(batch) = next_batch(&mut messages, publisher, &stop).await {
        publisher.handle_with_grace(batch).await;
        if stop.is_cancelled() {
            break;
        }
    }
    messages.hand_back().await;
    bus.flush(FLUSH_TIMEOUT).await;
    Ok(())
}

/// Connects to NATS and opens the working clone.
async fn connect(settings: &Settings) -> Result<(Bus, Repo)> {
    let bus = Bus::connect(&settings.common.connection(), "warroom-publisher").await?;
    let repo = Repo::open(
        &settings.work_dir,
        &settings.repo,
        &settings.branch,
        settings.token.as_ref().map(|t| t.as_ref().clone()),
        (&settings.author_name, &settings.author_email),
        settings.signing.as_ref(),
    )
    .await?;
    Ok((bus, repo))
}

/// The consumer, whose dead letters (those that do not decode included) are counted in
/// `health`.
/// The ack wait (`--ack-wait`) is generous by default, because a batch's messages wait for a
/// push; progress acks extend it while a push takes longer.
async fn consume(
    bus: &Bus,
    health: &Health,
    ack_wait: Duration,
) -> Result<Consumer<PublisherInput>> {
    let messages = bus
        .consume::<PublisherInput>(ConsumerSpec {
            ack_wait,
            max_deliver: MAX_DELIVER,
            max_ack_pending: MAX_ACK_PENDING,
            batch: PULL_BATCH,
            ..ConsumerSpec::new(
                Stream::Events,
                names::PUBLISHER_CONSUMER,
                "claude-warroom publisher: results into git",
            )
        })
        .await?
        .with_metrics(&health.metrics.runtime);
    Ok(messages)
}

/// The next batch: the first message, waited for as long as it takes, and whatever else
/// arrives within the batch window. `None` at shutdown (a batch already begun is returned,
/// to be finished within the grace period).
async fn next_batch(
    messages: &mut Consumer<PublisherInput>,
    publisher: &Publisher,
    shutdown: &CancellationToken,
) -> Option<Vec<Delivery<PublisherInput>>> {
    let health = &publisher.health;
    let first = loop {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            next = messages.next() => next,
        };
        match next {
            Ok(delivery) => break delivery,
            Err(e) => {
                warn!(cause = %Chain(&e), "error pulling messages");
                health.set_ready(false);
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(REOPEN_DELAY) => {}
                }
            }
        }
    };
    health.set_ready(true);
    let window_end = tokio::time::Instant::now() + publisher.settings.batch_window;
    let mut closing = is_last_of_its_request(&first);
    let mut bytes = first.size();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        let deadline = if closing {
            window_end.min(tokio::time::Instant::now() + FINAL_SETTLE)
        } else {
            window_end
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            next = messages.next_before(deadline) => match next {
                Some(Ok(delivery)) => {
                    closing |= is_last_of_its_request(&delivery);
                    bytes += delivery.size();
                    batch.push(delivery);
                }
                Some(Err(e)) => warn!(cause = %Chain(&e), "error pulling messages"),
                None => break,
            },
        }
    }
    Some(batch)
}

/// A request's final status snapshot: the dispatcher publishes nothing of the request after
/// it, and it is the one the engineer waits for.
fn is_last_of_its_request(delivery: &Delivery<PublisherInput>) -> bool {
    matches!(&delivery.message, PublisherInput::Status(update) if update.status.phase.is_final())
}

/// The running publisher's state.
struct Publisher {
    settings: Settings,
    repo: Repo,
    /// The last status revision this publisher pushed, per request: its own record, so a
    /// `status.json` someone else committed can neither freeze nor suppress a request.
    revisions: async_nats::jetstream::kv::Store,
    health: Health,
    /// Ends the pauses between push attempts, and the attempts themselves.
    shutdown: CancellationToken,
    /// The commit this replica pushed last, while the working clone is exactly that commit.
    own_push: std::sync::Mutex<Option<OwnPush>>,
    /// Where each pushed commit is announced to the S3 mirror, when it runs.
    pushed: Option<s3::Pushed>,
}

/// The commit a replica pushed last ([`Publisher::attempt`] builds on it without a fetch).
#[derive(Debug, Clone)]
struct OwnPush {
    commit: CommitId,
    /// Batches committed on the replica's own pushes since it last fetched.
    unfetched: u32,
}

/// Why one attempt at a batch did not land.
enum AttemptError {
    /// The push was refused (the remote moved, or it failed); the batch is redone.
    Push(String),
    /// Anything else: fetching, committing.
    Other(Error),
}

impl From<Error> for AttemptError {
    fn from(e: Error) -> Self {
        AttemptError::Other(e)
    }
}

/// What became of each message of a batch, by its index.
#[derive(Debug, Default)]
struct Settled {
    /// Can never be written: terminated and dead-lettered with the reason.
    refused: HashMap<usize, String>,
    /// Failed for now (the file system): handed back with a delay, on their own.
    retry: HashMap<usize, String>,
}

impl Publisher {
    /// [`Publisher::handle`], given [`SHUTDOWN_GRACE`] to finish once shutdown was asked for;
    /// a batch that does not finish by then is handed back whole.
    async fn handle_with_grace(&self, batch: Vec<Delivery<PublisherInput>>) {
        let batch = Arc::new(batch);
        let shutdown = self.shutdown.clone();
        let work = self.handle(batch.clone());
        tokio::pin!(work);
        let done = tokio::select! {
            () = &mut work => true,
            () = shutdown.cancelled() => {
                tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await.is_ok()
            }
        };
        if !done {
            warn!(
                grace_secs = SHUTDOWN_GRACE.as_secs(),
                messages = batch.len(),
                "the batch in flight did not finish within the grace period; handing it back"
            );
            for delivery in batch.iter() {
                delivery.nak(None).await;
            }
        }
    }

    /// Publishes one batch and settles each of its messages: ack after the push, term for
    /// messages that can never be written, a bounded retry for messages that failed for now
    /// and for the whole batch when it could not be pushed. One message never holds up the
    /// others.
    async fn handle(&self, batch: Arc<Vec<Delivery<PublisherInput>>>) {
        let metrics = self.health.metrics.clone();
        let items: Arc<Vec<(usize, Item)>> = Arc::new(
            batch
                .iter()
                .enumerate()
                .map(|(index, delivery)| (index, delivery.message.clone()))
                .collect(),
        );

        let work = self.publish(items.clone());
        tokio::pin!(work);
        // The messages of a batch in progress are marked as still being worked on every
        // quarter of the ack wait.
        let every = self.settings.ack_wait / 4;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = progress.tick() => {
                    for delivery in batch.iter() {
                        delivery.in_progress().await;
                    }
                }
            }
        };

        match outcome {
            Ok((published, settled)) => {
                for (index, delivery) in batch.iter().enumerate() {
                    let request = delivery.message.request_id();
                    // Dead letters are counted by the consumer (`with_metrics`).
                    if let Some(reason) = settled.refused.get(&index) {
                        metrics.messages_refused.inc();
                        error!(subject = %delivery.subject, request = %request, reason = %reason, "message refused; terminating it");
                        delivery.term(reason).await;
                    } else if let Some(reason) = settled.retry.get(&index) {
                        metrics.messages_retried.inc();
                        warn!(subject = %delivery.subject, request = %request, reason = %reason, deliveries = delivery.delivered(), "message not written; retrying it later");
                        delivery.retry(NAK_DELAY, reason).await;
                    } else {
                        delivery.ack().await;
                    }
                }
                if published.commit.is_some() {
                    metrics.batches_pushed.inc();
                    metrics
                        .last_push_timestamp_seconds
                        .set(warroom_proto::now().unix_timestamp());
                }
                metrics.messages_written.inc_by(published.written as u64);
                metrics.messages_skipped.inc_by(published.skipped as u64);
                info!(
                    commit = published.commit.as_deref().unwrap_or("none"),
                    messages = items.len(),
                    statuses = ?published.statuses,
                    "batch published"
                );
            }
            Err(Error::Stopped) => {
                info!(
                    messages = items.len(),
                    "shutdown before the batch was pushed; handing it back"
                );
                for delivery in batch.iter() {
                    delivery.nak(None).await;
                }
            }
            Err(e) => {
                metrics.batches_failed.inc();
                error!(cause = %Chain(&e), messages = items.len(), retry_in_secs = NAK_DELAY.as_secs(), "the batch could not be published; handing its messages back");
                let reason = Chain(&e).to_string();
                for delivery in batch.iter() {
                    delivery.retry(NAK_DELAY, &reason).await;
                }
            }
        }
    }

    /// Applies the batch to the remote's head, commits and pushes, redoing it all when the
    /// push is rejected (the runtime's retry policy, at most `--push-attempts` attempts). The
    /// pause between attempts ends at shutdown, and no attempt starts after it: the batch
    /// is then handed back. Returns what was pushed and the messages refused on the way.
    async fn publish(&self, items: Arc<Vec<(usize, Item)>>) -> Result<(Published, Settled)> {
        let attempts = self.settings.push_attempts;
        let metrics = &self.health.metrics;
        let started = AtomicU32::new(0);
        let attempt = || async {
            // The first attempt runs even at shutdown: the run loop's grace period bounds it.
            if started.fetch_add(1, Ordering::Relaxed) > 0 && self.shutdown.is_cancelled() {
                return Err(AttemptError::Other(Error::Stopped));
            }
            self.attempt(items.clone()).await
        };
        let retries = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        let outcome = attempt
            .retry(retry::backoff(FIRST_PUSH_PAUSE, MAX_PUSH_PAUSE, retries))
            .sleep(retry::until(self.shutdown.clone()))
            .when(|e| !matches!(e, AttemptError::Other(Error::Stopped)))
            .notify(|e, pause| {
                metrics.push_retries.inc();
                let attempt = started.load(Ordering::Relaxed);
                match e {
                    AttemptError::Push(reason) => {
                        warn!(attempt, attempts, reason = %reason, retry_in = ?pause, "push rejected; redoing the batch on the new head")
                    }
                    AttemptError::Other(e) => {
                        warn!(attempt, attempts, cause = %Chain(&e), retry_in = ?pause, "the batch failed; retrying")
                    }
                }
            })
            .await;
        outcome.map_err(|e| match e {
            AttemptError::Push(reason) => Error::PushRefused { attempts, reason },
            AttemptError::Other(e) => e,
        })
    }

    /// The revisions this publisher pushed for the requests of `items`' status updates, from
    /// its own record, read [`KV_CONCURRENCY`] at a time. A request it cannot read is left
    /// out: the snapshot is then written (the dispatcher's revisions only grow, so that is at
    /// worst a repeat).
    async fn pushed_revisions(&self, items: &[(usize, Item)]) -> HashMap<RequestId, u64> {
        let ids: HashSet<RequestId> = items
            .iter()
            .filter_map(|(_, item)| match item {
                Item::Status(update) => Some(update.status.id.clone()),
                _ => None,
            })
            .collect();
        // Owned values in the futures: borrowed ones make the publisher's future not `Send`
        // for every lifetime (rust-lang/rust#102211).
        let store = self.revisions.clone();
        futures::stream::iter(ids)
            .map(move |id| {
                let store = store.clone();
                async move {
                    match store.get(id.as_str()).await {
                        Ok(Some(bytes)) => std::str::from_utf8(&bytes)
                            .ok()
                            .and_then(|text| text.parse::<u64>().ok())
                            .map(|revision| (id, revision)),
                        Ok(None) => None,
                        Err(e) => {
                            warn!(request = %id, cause = %Chain(&e), "cannot read the pushed revision");
                            None
                        }
                    }
                }
            })
            .buffer_unordered(KV_CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Records the revisions of the statuses just pushed, [`KV_CONCURRENCY`] at a time. A
    /// failure only means an older snapshot redelivered later could be written once more.
    async fn record_revisions(&self, summary: &Summary) {
        let store = self.revisions.clone();
        let revisions: Vec<(RequestId, u64)> = summary
            .revisions
            .iter()
            .map(|(id, revision)| (id.clone(), *revision))
            .collect();
        futures::stream::iter(revisions)
            .for_each_concurrent(KV_CONCURRENCY, move |(id, revision)| {
                let store = store.clone();
                async move {
                    if let Err(e) = store
                        .put(id.as_str(), revision.to_string().into_bytes().into())
                        .await
                    {
                        warn!(request = %id, cause = %Chain(&e), "cannot record the pushed revision");
                    }
                }
            })
            .await;
    }

    /// One attempt: fetch, reset, apply, commit, push.
    ///
    /// Right after its own push the working clone is that commit exactly, and the branch is
    /// most likely still there: the batch is then applied on top of it without a fetch (a
    /// round trip to the remote, and a checkout). The push lands only while the branch is
    /// still at that commit; when it moved meanwhile (an engineer's push, another replica),
    /// the batch is redone at once on the fetched head, within the same attempt.
    async fn attempt(
        &self,
        items: Arc<Vec<(usize, Item)>>,
    ) -> Result<(Published, Settled), AttemptError> {
        let own = self.own_push_lock().take();
        if let Some(own) = own.filter(|own| own.unfetched < MAX_UNFETCHED) {
            match self
                .apply_and_push(Some(own.commit), own.unfetched + 1, items.clone())
                .await
            {
                Err(AttemptError::Push(reason)) => {
                    self.health.metrics.pushes_on_moved_branch.inc();
                    debug!(reason = %reason, "the branch moved since this replica's last push; redoing the batch on its new head");
                }
                outcome => return outcome,
            }
        }
        self.health.metrics.fetches.inc();
        let base = self.repo.fetch().await?;
        self.repo.reset(base.as_deref()).await?;
        debug!(
            base = base.as_deref().unwrap_or("none"),
            "working clone reset to the remote"
        );
        let outcome = self.apply_and_push(base, 0, items).await;
        if matches!(outcome, Err(AttemptError::Push(_))) {
            self.health.metrics.push_failures.inc();
        }
        outcome
    }

    fn own_push_lock(&self) -> std::sync::MutexGuard<'_, Option<OwnPush>> {
        self.own_push
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies the batch to the working tree, which is `base` exactly, commits and pushes.
    /// `unfetched`: the batches on the replica's own pushes since its last fetch, this one
    /// included. On success the pushed commit is remembered for the next batch.
    async fn apply_and_push(
        &self,
        base: Option<CommitId>,
        unfetched: u32,
        items: Arc<Vec<(usize, Item)>>,
    ) -> Result<(Published, Settled), AttemptError> {
        // The file work runs on the blocking pool.
        let root = self.repo.dir().to_path_buf();
        let note = self.settings.report_note.clone();
        let pushed = self.pushed_revisions(&items).await;
        let (summary, settled) =
            tokio::task::spawn_blocking(move || apply_all(&root, &items, note.as_deref(), &pushed))
                .await
                .map_err(Error::Task)?;
        let (written, skipped) = (summary.written, summary.skipped);

        let statuses: Vec<(RequestId, RequestPhase)> = summary
            .requests
            .iter()
            .filter_map(|r| r.phase.map(|p| (r.id.clone(), p)))
            .collect();
        if !self.repo.commit(&summary.commit_message()).await? {
            debug!("the batch changed nothing; no commit");
            if let Some(commit) = base {
                *self.own_push_lock() = Some(OwnPush { commit, unfetched });
            }
            return Ok((
                Published {
                    commit: None,
                    statuses,
                    written,
                    skipped,
                },
                settled,
            ));
        }
        if let repo::Pushed::Refused(refusal) = self.repo.push(base.as_deref()).await? {
            return Err(AttemptError::Push(refusal.to_string()));
        }
        let commit = self.repo.head().await?;
        *self.own_push_lock() = Some(OwnPush {
            commit: commit.clone(),
            unfetched,
        });
        if let Some(pushed) = &self.pushed {
            // The mirror takes the newest pushed commit when it is ready; git never waits.
            pushed.send_replace(Some(commit.clone()));
        }
        self.record_revisions(&summary).await;
        Ok((
            Published {
                commit: Some(commit),
                statuses,
                written,
                skipped,
            },
            settled,
        ))
    }
}

/// Writes every item into the tree at `root`, in order. An item that can never be written
/// is refused; one that hit a file-system error that may pass is set aside for a retry,
/// together with the later items of the same request (so a request's files keep their
/// order); every other item is written.
fn apply_all(
    root: &std::path::Path,
    items: &[(usize, Item)],
    note: Option<&str>,
    pushed: &HashMap<RequestId, u64>,
) -> (Summary, Settled) {
    let mut tree = Tree::new(root)
        .with_note(note)
        .with_pushed(pushed)
        .with_batch(items.iter().map(|(_, item)| item));
    let mut settled = Settled::default();
    let mut held_back: HashMap<RequestId, String> = HashMap::new();
    for (index, item) in items {
        let request = item.request_id().clone();
        if let Some(reason) = held_back.get(&request) {
            settled.retry.insert(
                *index,
                format!("an earlier message of the request failed: {reason}"),
            );
            continue;
        }
        match tree.apply(item) {
            Ok(Applied::Written) => tree.summary.written += 1,
            Ok(Applied::Skipped(reason)) => {
                tree.summary.skipped += 1;
                debug!(request = %request, reason = %reason, "nothing to write");
            }
            Ok(Applied::Refused(reason)) | Err(Problem::Refused(reason)) => {
                settled.refused.insert(*index, reason);
            }
            Err(Problem::Io { path, source }) => {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let reason = format!("cannot write {rel}: {source}");
                if is_permanent(&source) {
                    settled.refused.insert(*index, reason);
                } else {
                    held_back.insert(request, reason.clone());
                    settled.retry.insert(*index, reason);
                }
            }
        }
    }
    (tree.summary, settled)
}

/// Whether a file-system error will happen again for the same path whatever we do: the
/// name is too long or invalid for this file system, or something is in the way.
fn is_permanent(error: &std::io::Error) -> bool {
    use nix::errno::Errno;
    let Some(code) = error.raw_os_error() else {
        return matches!(
            error.kind(),
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidFilename
        );
    };
    matches!(
        Errno::from_raw(code),
        Errno::ENAMETOOLONG
            | Errno::EINVAL
            | Errno::EISDIR
            | Errno::ENOTDIR
            | Errno::EILSEQ
            | Errno::ELOOP
            | Errno::EFBIG
    )
}
