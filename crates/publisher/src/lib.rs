//! The publisher: NATS -> git, the only writer of the repository.
//!
//! It consumes [`names::EVENTS_STREAM`] with the durable pull consumer
//! [`names::PUBLISHER_CONSUMER`]: request status snapshots (`warroom.status.<id>`,
//! [`StatusUpdate`](warroom_proto::StatusUpdate)) and the runners' audit events
//! (`warroom.events.<id>.<cluster>`, [`AuditEvent`](warroom_proto::AuditEvent)), in stream
//! order. After the first message it gathers whatever else arrives within the batch window
//! and turns the batch into one commit:
//!
//! 1. fetch the branch and reset the working clone to it exactly;
//! 2. write every message of the batch under `results/` (`status.json`, `<cluster>.md`,
//!    `README.md`, `audit.jsonl`), redacted ([`redact`]);
//! 3. commit and push, fast-forward only.
//!
//! When the push is rejected (an engineer pushed a request meanwhile), the batch is redone
//! from step 1 on the new head, up to `--push-attempts` times. Since the publisher owns
//! `results/` and engineers only add `requests/`, redoing the batch loses nothing. The
//! messages are acknowledged only after the push succeeded; a batch that cannot be pushed is
//! handed back (nak with a delay) and retried later. A message that can never be written (it
//! does not decode, or a path in it would leave `results/`) is logged and terminated, and
//! never holds up the others.
//!
//! Reporting to GitHub (a commit status or a comment per request) belongs after a successful
//! push: [`Published`] is what such a reporter would receive.

mod config;
pub use warroom_redact as redact;
mod render;
mod repo;
mod tree;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::{FutureExt as _, StreamExt as _};
use tracing::{debug, error, info, warn};
use warroom_proto::{RequestPhase, names};
use warroom_runtime::{Bus, BusError, Health, git::GitError};

pub use config::{Config, MAX_BATCH_WINDOW, MAX_PUSH_ATTEMPTS, Secret, parse_duration};

use crate::config::Settings;
use crate::repo::Repo;
use crate::tree::{Applied, Item, Problem, Summary, Tree};

/// How long the server waits for an ack before redelivering. Generous, because a batch's
/// messages wait for a push; progress acks extend it while a push takes longer.
const ACK_WAIT: Duration = Duration::from_secs(120);
/// How often the messages of a batch in progress are marked as still being worked on.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// The most messages in one commit.
const MAX_BATCH: usize = 500;
/// The most messages delivered and not yet acknowledged: several batches' worth.
const MAX_ACK_PENDING: i64 = 4 * MAX_BATCH as i64;
/// How many messages one pull asks for.
const PULL_BATCH: usize = 200;
/// When a batch could not be pushed, how long before its messages come back.
const NAK_DELAY: Duration = Duration::from_secs(10);
/// How long the batch in flight may take to finish once shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// The pause before reopening the consumer after its message stream failed.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// What can stop the publisher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot open consumer {consumer} on stream {stream}: {message}", consumer = names::PUBLISHER_CONSUMER, stream = names::EVENTS_STREAM)]
    Consumer { message: String },
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("cannot use the work directory {path}: {source}")]
    WorkDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the apply step stopped unexpectedly: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a successful push published, for whoever reports it further (a GitHub status surface
/// would hook in here).
#[derive(Debug, Clone)]
pub struct Published {
    /// The commit pushed; `None` when the batch changed nothing.
    pub commit: Option<String>,
    /// Requests whose status was written, with the phase written.
    pub statuses: Vec<(String, RequestPhase)>,
    /// Messages that changed files.
    pub written: usize,
    /// Messages with nothing to write (duplicates, older snapshots).
    pub skipped: usize,
}

/// Runs the publisher until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_with_health(config, Health::default(), shutdown).await
}

/// [`run`], reporting readiness and counters into `health`: `batches_pushed_total`,
/// `batches_failed_total`, `push_retries_total`, `messages_written_total`,
/// `messages_skipped_total`, `messages_refused_total`.
pub async fn run_with_health(
    config: Config,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let settings = config.validate()?;
    let shutdown = shutdown.boxed().shared();

    health.spawn_server(config.common.health_addr, shutdown.clone());

    info!(
        repo = %settings.repo,
        branch = %settings.branch,
        work_dir = %settings.work_dir.display(),
        batch_window_ms = settings.batch_window.as_millis() as u64,
        push_attempts = settings.push_attempts,
        "publisher starting"
    );
    let setup = async {
        let bus = Bus::connect(&config.common.nats_url, "warroom-publisher").await?;
        let repo = Repo::open(
            &settings.work_dir,
            &settings.repo,
            &settings.branch,
            settings.token.as_ref().map(|t| t.expose().to_owned()),
            (&settings.author_name, &settings.author_email),
        )
        .await?;
        let messages = open_messages(&bus).await?;
        Ok::<_, Error>((bus, repo, messages))
    };
    let (bus, repo, mut messages) = tokio::select! {
        setup = setup => setup?,
        () = shutdown.clone() => {
            info!("shutdown before the publisher was connected");
            return Ok(());
        }
    };
    health.set_ready(true);

    let mut publisher = Publisher {
        settings,
        repo,
        dirs: HashMap::new(),
        scanned: false,
        health: health.clone(),
    };
    'outer: loop {
        // The first message of a batch: wait as long as it takes.
        let first = tokio::select! {
            biased;
            () = shutdown.clone() => break,
            next = messages.next() => next,
        };
        let mut batch = Vec::new();
        match first {
            Some(Ok(message)) => batch.push(message),
            Some(Err(e)) => {
                warn!(cause = %e, "error pulling messages");
                if is_fatal(&e) {
                    match reopen(&bus, &health, &shutdown).await {
                        Some(reopened) => messages = reopened,
                        None => break,
                    }
                }
                continue;
            }
            None => {
                match reopen(&bus, &health, &shutdown).await {
                    Some(reopened) => messages = reopened,
                    None => break,
                }
                continue;
            }
        }
        // Whatever else arrives within the window joins the same commit.
        let deadline = tokio::time::Instant::now() + publisher.settings.batch_window;
        let mut stopping = false;
        while batch.len() < MAX_BATCH {
            tokio::select! {
                biased;
                () = shutdown.clone() => { stopping = true; break; }
                next = tokio::time::timeout_at(deadline, messages.next()) => match next {
                    Ok(Some(Ok(message))) => batch.push(message),
                    Ok(Some(Err(e))) => warn!(cause = %e, "error pulling messages"),
                    Ok(None) | Err(_) => break,
                },
            }
        }

        let batch = Arc::new(batch);
        let work = publisher.handle(batch.clone());
        tokio::pin!(work);
        let done = tokio::select! {
            () = &mut work => true,
            () = shutdown.clone() => {
                stopping = true;
                tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await.is_ok()
            }
        };
        if !done {
            warn!(
                grace_secs = SHUTDOWN_GRACE.as_secs(),
                messages = batch.len(),
                "the batch in flight did not finish within the grace period; handing it back"
            );
            for message in batch.iter() {
                let _ = message.ack_with(AckKind::Nak(None)).await;
            }
        }
        if stopping {
            break 'outer;
        }
    }
    health.set_ready(false);
    info!("publisher stopped");
    Ok(())
}

/// Whether a pull error means the message stream is gone and must be reopened.
fn is_fatal(error: &consumer::pull::MessagesError) -> bool {
    matches!(
        error.kind(),
        consumer::pull::MessagesErrorKind::ConsumerDeleted
            | consumer::pull::MessagesErrorKind::NoResponders
    )
}

/// Opens (creating it the first time) the durable consumer and its message stream.
async fn open_messages(bus: &Bus) -> Result<consumer::pull::Stream> {
    let failed = |e: &dyn std::fmt::Display| Error::Consumer {
        message: e.to_string(),
    };
    let consumer: consumer::PullConsumer = bus
        .jetstream
        .get_stream(names::EVENTS_STREAM)
        .await
        .map_err(|e| failed(&e))?
        .get_or_create_consumer(
            names::PUBLISHER_CONSUMER,
            consumer::pull::Config {
                durable_name: Some(names::PUBLISHER_CONSUMER.to_owned()),
                description: Some("claude-warroom publisher: results into git".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| failed(&e))?;
    consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .messages()
        .await
        .map_err(|e| failed(&e))
}

/// Reopens the message stream, retrying until it works; `None` when shutdown was asked
/// for meanwhile.
async fn reopen(
    bus: &Bus,
    health: &Health,
    shutdown: &(impl Future<Output = ()> + Clone),
) -> Option<consumer::pull::Stream> {
    health.set_ready(false);
    loop {
        tokio::select! {
            () = shutdown.clone() => return None,
            () = tokio::time::sleep(REOPEN_DELAY) => {}
        }
        match open_messages(bus).await {
            Ok(stream) => {
                health.set_ready(true);
                info!("consumer reopened");
                return Some(stream);
            }
            Err(e) => warn!(cause = %e, "cannot reopen the consumer; retrying"),
        }
    }
}

/// The running publisher's state.
struct Publisher {
    settings: Settings,
    repo: Repo,
    /// Request id -> results folder, from the status updates seen (see [`Tree`]).
    dirs: HashMap<String, String>,
    /// Whether the folders of earlier requests were read from the tree since the start.
    scanned: bool,
    health: Health,
}

/// Why one attempt at a batch did not land.
enum AttemptError {
    /// The push was refused (the remote moved, or it failed); the batch is redone.
    Push(String),
    /// Anything else: fetching, writing, committing.
    Other(Error),
}

impl From<Error> for AttemptError {
    fn from(e: Error) -> Self {
        AttemptError::Other(e)
    }
}

impl Publisher {
    /// Publishes one batch and settles each of its messages: ack after the push, term for
    /// messages that can never be written, nak when the batch could not be pushed.
    async fn handle(&mut self, batch: Arc<Vec<jetstream::Message>>) {
        let metrics = self.health.metrics.clone();
        // Decode and check first: a message that fails here fails on every attempt.
        let mut items = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            match tree::prepare(message.subject.as_str(), &message.payload) {
                Ok(item) => items.push((index, item)),
                Err(reason) => {
                    metrics.inc("messages_refused_total");
                    error!(subject = %message.subject, reason = %reason, "message refused; terminating it");
                    settle(message, AckKind::Term).await;
                }
            }
        }
        if items.is_empty() {
            return;
        }
        let items = Arc::new(items);

        let work = self.publish(items.clone());
        tokio::pin!(work);
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = progress.tick() => {
                    for (index, _) in items.iter() {
                        let _ = batch[*index].ack_with(AckKind::Progress).await;
                    }
                }
            }
        };

        match outcome {
            Ok((published, refused)) => {
                for (index, item) in items.iter() {
                    let message = &batch[*index];
                    if let Some(reason) = refused.get(index) {
                        metrics.inc("messages_refused_total");
                        error!(subject = %message.subject, request = %item.request_id(), reason = %reason, "message refused; terminating it");
                        settle(message, AckKind::Term).await;
                    } else {
                        settle(message, AckKind::Ack).await;
                    }
                }
                if published.commit.is_some() {
                    metrics.inc("batches_pushed_total");
                }
                metrics.add("messages_written_total", published.written as u64);
                metrics.add("messages_skipped_total", published.skipped as u64);
                info!(
                    commit = published.commit.as_deref().unwrap_or("none"),
                    messages = items.len(),
                    statuses = ?published.statuses,
                    "batch published"
                );
            }
            Err(e) => {
                metrics.inc("batches_failed_total");
                error!(cause = %e, messages = items.len(), retry_in_secs = NAK_DELAY.as_secs(), "the batch could not be published; handing its messages back");
                for (index, _) in items.iter() {
                    settle(&batch[*index], AckKind::Nak(Some(NAK_DELAY))).await;
                }
            }
        }
    }

    /// Applies the batch to the remote's head, commits and pushes, redoing it all when the
    /// push is rejected. Returns what was pushed and the messages refused on the way.
    async fn publish(
        &mut self,
        items: Arc<Vec<(usize, Item)>>,
    ) -> Result<(Published, HashMap<usize, String>)> {
        let attempts = self.settings.push_attempts;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(items.clone()).await {
                Ok(result) => return Ok(result),
                Err(AttemptError::Push(reason)) => {
                    self.health.metrics.inc("push_retries_total");
                    warn!(attempt, attempts, reason = %reason, "push rejected; redoing the batch on the new head");
                    last = reason;
                }
                Err(AttemptError::Other(e)) => {
                    self.health.metrics.inc("push_retries_total");
                    warn!(attempt, attempts, cause = %e, "the batch failed; retrying");
                    last = e.to_string();
                }
            }
            if attempt < attempts {
                // Short and growing: a concurrent engineer's push is over in moments.
                let backoff =
                    Duration::from_millis(100 * u64::from(attempt)).min(Duration::from_secs(3));
                tokio::time::sleep(backoff).await;
            }
        }
        Err(Error::Git(GitError {
            args: "push".to_owned(),
            dir: self.repo.dir().display().to_string(),
            message: format!("gave up after {attempts} attempts; the last failure: {last}"),
        }))
    }

    /// One attempt: fetch, reset, apply, commit, push.
    async fn attempt(
        &mut self,
        items: Arc<Vec<(usize, Item)>>,
    ) -> Result<(Published, HashMap<usize, String>), AttemptError> {
        let base = self.repo.fetch().await?;
        self.repo.reset(base.as_deref()).await?;
        debug!(
            base = base.as_deref().unwrap_or("none"),
            "working clone reset to the remote"
        );

        // The file work runs on the blocking pool; the folder map travels there and back.
        let root = self.repo.dir().to_path_buf();
        let mut dirs = std::mem::take(&mut self.dirs);
        let scan = !self.scanned;
        let note = self.settings.report_note.clone();
        let applied = tokio::task::spawn_blocking(move || {
            if scan {
                for (id, dir) in tree::scan_dirs(&root) {
                    dirs.entry(id).or_insert(dir);
                }
            }
            let result = apply_all(&root, &mut dirs, &items, note.as_deref());
            (dirs, result)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        let (dirs, result) = applied;
        self.dirs = dirs;
        self.scanned = true;
        let (summary, refused) = result?;
        let (written, skipped) = (summary.written, summary.skipped);

        let statuses: Vec<(String, RequestPhase)> = summary
            .requests
            .iter()
            .filter_map(|(id, phase, _)| phase.map(|p| (id.clone(), p)))
            .collect();
        if !self.repo.commit(&summary.commit_message()).await? {
            debug!("the batch changed nothing; no commit");
            return Ok((
                Published {
                    commit: None,
                    statuses,
                    written,
                    skipped,
                },
                refused,
            ));
        }
        self.repo.push().await?.map_err(AttemptError::Push)?;
        let commit = self.repo.head().await?;
        Ok((
            Published {
                commit: Some(commit),
                statuses,
                written,
                skipped,
            },
            refused,
        ))
    }
}

/// Writes every item into the tree at `root`, in order.
fn apply_all(
    root: &std::path::Path,
    dirs: &mut HashMap<String, String>,
    items: &[(usize, Item)],
    note: Option<&str>,
) -> Result<(Summary, HashMap<usize, String>)> {
    let mut tree = Tree::new(root, dirs).with_note(note);
    let mut refused = HashMap::new();
    for (index, item) in items {
        match tree.apply(item) {
            Ok(Applied::Written) => tree.summary.written += 1,
            Ok(Applied::Skipped(reason)) => {
                tree.summary.skipped += 1;
                debug!(request = %item.request_id(), reason = %reason, "nothing to write");
            }
            Ok(Applied::Refused(reason)) => {
                refused.insert(*index, reason);
            }
            Err(Problem::Io { path, source }) => {
                return Err(Error::Write {
                    path: path.display().to_string(),
                    source,
                });
            }
            Err(Problem::Refused(reason)) => {
                refused.insert(*index, reason);
            }
        }
    }
    Ok((tree.summary, refused))
}

/// Acks, naks or terminates a message; a failure only means it comes back, which is safe.
async fn settle(message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        warn!(subject = %message.subject, cause = %e, "cannot settle a message; it will be redelivered");
    }
}
