//! The dispatcher's work: accepted requests and runner reports in, tasks and status snapshots
//! out, every step driven by the stored state.
//!
//! Each message is handled to the end before the next one: apply it to the stored state
//! (compare-and-set), then [`Engine::drive`] the request, which repeatedly asks the state what
//! is due ([`RequestState::next_step`]) and does it. Side effects are ordered so that a crash
//! at any point is repaired by simply driving the request again:
//!
//! - a task is published (dedup id `<id>-<cluster>`) *before* the dispatch is recorded, so a
//!   crash in between publishes it again, which JetStream discards as a duplicate;
//! - a status snapshot is published (dedup id `<id>-<revision>`) only *after* its revision is
//!   stored, and `published_revision` is recorded after that, so a crash in between publishes
//!   the same snapshot again, again discarded as a duplicate;
//! - a message is acknowledged only after all of that.
//!
//! One task handling one message at a time also keeps each request's snapshots in revision
//! order on the events stream, which is the order the publisher writes them to git.

use std::collections::BTreeSet;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind, stream};
use serde::Serialize;
use tracing::{debug, error, info, instrument, warn};
use warroom_proto::names::{self, MAX_CLUSTER_NAME_LEN, MAX_REQUEST_ID_LEN, check_token};
use warroom_proto::{AcceptedRequest, RunnerReport};
use warroom_runtime::{Bus, Metrics};

use crate::state::{Applied, RequestState, Step, Timeouts};
use crate::store::{Modified, Store};
use crate::{Error, Result};

/// A guard against a livelock in [`Engine::drive`]: no request needs this many steps at once
/// (a 32-cluster request that expires entirely needs 64).
const MAX_STEPS: usize = 256;

/// How long a message whose handling failed for a passing reason (NATS unavailable, a write
/// conflict storm) waits before it is redelivered.
pub const RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// The counters the dispatcher exports on `/metrics`.
const COUNTERS: [&str; 9] = [
    "warroom_dispatcher_requests_accepted_total",
    "warroom_dispatcher_requests_finished_total",
    "warroom_dispatcher_tasks_published_total",
    "warroom_dispatcher_statuses_published_total",
    "warroom_dispatcher_reports_total",
    "warroom_dispatcher_reports_ignored_total",
    "warroom_dispatcher_timeouts_total",
    "warroom_dispatcher_bad_messages_total",
    "warroom_dispatcher_retries_total",
];

/// The dispatcher's state between messages: connections, and the requests still in flight.
#[derive(Debug)]
pub struct Engine {
    bus: Bus,
    store: Store,
    tasks: stream::Stream,
    /// The results consumer, to see whether runner reports wait undelivered.
    results: PullConsumer,
    timeouts: Timeouts,
    metrics: Metrics,
    /// Requests that are not final (or whose last snapshot is unpublished): what the sweep
    /// visits. Rebuilt from the bucket at start, so a restart loses none.
    active: BTreeSet<String>,
}

impl Engine {
    pub fn new(
        bus: Bus,
        store: Store,
        tasks: stream::Stream,
        results: PullConsumer,
        timeouts: Timeouts,
        metrics: Metrics,
    ) -> Self {
        // Every counter shows up in /metrics from the start, at zero.
        for name in COUNTERS {
            metrics.add(name, 0);
        }
        Engine {
            bus,
            store,
            tasks,
            results,
            timeouts,
            metrics,
            active: BTreeSet::new(),
        }
    }

    /// Finds the requests a previous run left unfinished; the next sweep drives them on.
    pub async fn load_active(&mut self) -> Result<()> {
        for id in self.store.ids().await? {
            match self.store.load(&id).await {
                Ok(Some((state, _))) if state.is_active() => {
                    self.active.insert(id);
                }
                Ok(_) => {}
                Err(e @ Error::CorruptState { .. }) => {
                    error!(request = %id, cause = %e, "skipping a request whose stored state cannot be read");
                }
                Err(e) => return Err(e),
            }
        }
        info!(active = self.active.len(), "requests in flight loaded");
        Ok(())
    }

    /// Handles one message of the requests stream and acknowledges it.
    pub async fn on_request_message(&mut self, message: jetstream::Message) {
        let outcome = match serde_json::from_slice::<AcceptedRequest>(&message.payload) {
            Ok(request) => self.accept(request).await,
            Err(e) => Err(Error::InvalidMessage(format!(
                "{} is not an accepted request: {e}",
                message.subject
            ))),
        };
        self.settle_message(&message, outcome).await;
    }

    /// Handles one message of the results stream and acknowledges it.
    pub async fn on_report_message(&mut self, message: jetstream::Message) {
        let outcome = match serde_json::from_slice::<RunnerReport>(&message.payload) {
            Ok(report) => self.report(report).await,
            Err(e) => Err(Error::InvalidMessage(format!(
                "{} is not a runner report: {e}",
                message.subject
            ))),
        };
        self.settle_message(&message, outcome).await;
    }

    /// Acknowledges a handled message; terminates one that can never be handled; hands one
    /// that failed for a passing reason back for redelivery.
    async fn settle_message(&self, message: &jetstream::Message, outcome: Result<()>) {
        let ack = match outcome {
            Ok(()) => AckKind::Ack,
            Err(e) if e.is_permanent() => {
                self.metrics.inc("warroom_dispatcher_bad_messages_total");
                error!(subject = %message.subject, cause = %e, "dropping a message that cannot be handled");
                AckKind::Term
            }
            Err(e) => {
                self.metrics.inc("warroom_dispatcher_retries_total");
                warn!(subject = %message.subject, cause = %e, retry_in = ?RETRY_DELAY, "handling failed; the message will be redelivered");
                AckKind::Nak(Some(RETRY_DELAY))
            }
        };
        if let Err(e) = message.ack_with(ack).await {
            // Not acknowledged means redelivered after the ack wait; handling is idempotent.
            warn!(subject = %message.subject, cause = %e, "cannot acknowledge a message");
        }
    }

    /// Takes an accepted request: stores it once, then drives it.
    #[instrument(skip_all, fields(request = %request.id))]
    async fn accept(&mut self, request: AcceptedRequest) -> Result<()> {
        if let Some(why) = check_token(&request.id, MAX_REQUEST_ID_LEN) {
            return Err(Error::InvalidMessage(format!(
                "request id `{}` {why}",
                request.id
            )));
        }
        let id = request.id.clone();
        let state = RequestState::new(request, warroom_proto::now());
        if self.store.create(&state).await? {
            self.metrics
                .inc("warroom_dispatcher_requests_accepted_total");
            info!(clusters = state.clusters.len(), mode = ?state.mode, "request accepted");
        } else {
            // Redelivered, or published twice: the stored state says how far it got.
            info!("request already known; resuming from its stored state");
        }
        self.drive(&id, false).await
    }

    /// Applies a runner's report to its request, then drives the request.
    async fn report(&mut self, report: RunnerReport) -> Result<()> {
        let (id, cluster) = match &report {
            RunnerReport::Started {
                request_id,
                cluster,
                ..
            } => (request_id.clone(), cluster.clone()),
            RunnerReport::Finished(result) => (result.request_id.clone(), result.cluster.clone()),
        };
        if let Some(why) = check_token(&id, MAX_REQUEST_ID_LEN)
            .or_else(|| check_token(&cluster, MAX_CLUSTER_NAME_LEN))
        {
            return Err(Error::InvalidMessage(format!(
                "report names request `{id}` and cluster `{cluster}`, one of which {why}"
            )));
        }
        let now = warroom_proto::now();
        let mut applied = Applied::Unchanged;
        let modified = self
            .store
            .modify(&id, |state| {
                applied = match &report {
                    RunnerReport::Started { runner, at, .. } => {
                        state.on_started(&cluster, runner, *at, now)
                    }
                    RunnerReport::Finished(result) => state.on_finished(result, now),
                };
                applied == Applied::Changed
            })
            .await?;
        self.metrics.inc("warroom_dispatcher_reports_total");
        let kind = match report {
            RunnerReport::Started { .. } => "started",
            RunnerReport::Finished(_) => "finished",
        };
        match (modified, applied) {
            (Modified::Missing, _) => {
                self.metrics.inc("warroom_dispatcher_reports_ignored_total");
                warn!(request = %id, cluster = %cluster, report = kind, "ignoring a report for an unknown request");
                return Ok(());
            }
            (_, Applied::UnknownCluster) => {
                self.metrics.inc("warroom_dispatcher_reports_ignored_total");
                warn!(request = %id, cluster = %cluster, report = kind, "ignoring a report for a cluster the request does not target");
            }
            (_, Applied::AlreadyFinal) => {
                self.metrics.inc("warroom_dispatcher_reports_ignored_total");
                info!(request = %id, cluster = %cluster, report = kind, "ignoring a report for a cluster that already has its result");
            }
            (_, Applied::Unchanged) => {
                debug!(request = %id, cluster = %cluster, report = kind, "report already applied");
            }
            (Modified::Changed(state) | Modified::Unchanged(state), Applied::Changed) => {
                let phase = state
                    .clusters
                    .iter()
                    .find(|c| c.name == cluster)
                    .map(|c| c.phase.as_str())
                    .unwrap_or_default();
                info!(request = %id, cluster = %cluster, report = kind, cluster_phase = phase, request_phase = %state.phase, "runner report applied");
            }
        }
        // Driving also repairs whatever a crash left undone for this request, even when the
        // report itself was a repeat.
        self.drive(&id, false).await
    }

    /// Visits every request in flight: publishes what is unpublished, expires what ran out of
    /// time, dispatches what is due. A failure on one request does not stop the others.
    ///
    /// Only the sweep expires clusters, and only while no runner report waits undelivered in
    /// the results stream: after an outage of the dispatcher, the `started` and `finished`
    /// reports that arrived meanwhile are applied first, so a cluster whose runner did its
    /// work is never failed for a timeout that only the dispatcher's absence caused.
    pub async fn sweep(&mut self) {
        // Delivered but unacknowledged reports count too: between two messages nothing is
        // being handled, so they are still on their way to this dispatcher.
        let expire = match self.results.info().await {
            Ok(info) if info.num_pending + info.num_ack_pending as u64 > 0 => {
                debug!(
                    undelivered = info.num_pending,
                    unacknowledged = info.num_ack_pending,
                    "runner reports waiting; timeouts deferred"
                );
                false
            }
            Ok(_) => true,
            Err(e) => {
                warn!(cause = %e, "cannot read the results backlog; timeouts deferred");
                false
            }
        };
        let ids: Vec<String> = self.active.iter().cloned().collect();
        for id in ids {
            if let Err(e) = self.drive(&id, expire).await {
                warn!(request = %id, cause = %e, "sweep could not drive a request; retrying at the next sweep");
            }
        }
    }

    /// Does whatever the stored state says is due, one step at a time, until nothing is;
    /// with `expire`, that includes ending clusters that ran out of time.
    #[instrument(skip_all, fields(request = %id, expire))]
    pub async fn drive(&mut self, id: &str, expire: bool) -> Result<()> {
        for _ in 0..MAX_STEPS {
            let Some((state, revision)) = self.store.load(id).await? else {
                self.active.remove(id);
                return Ok(());
            };
            let now = warroom_proto::now();
            let Some(step) = state.next_step(now, expire.then_some(self.timeouts)) else {
                self.track(&state);
                return Ok(());
            };
            match step {
                Step::PublishStatus => self.publish_status(state, revision).await?,
                Step::Dispatch(due) => self.dispatch(state, revision, &due, now).await?,
                Step::Expire {
                    cluster,
                    phase,
                    error,
                } => {
                    let mut next = state;
                    if next.expire(cluster, phase, &error, now)
                        && self.store.update(&next, revision).await?
                    {
                        self.metrics.inc("warroom_dispatcher_timeouts_total");
                        let name = &next.clusters[cluster].name;
                        warn!(request = %id, cluster = %name, phase = %phase, reason = %error, "cluster ran out of time");
                        if let Some(sequence) = next.clusters[cluster].task_sequence {
                            self.take_back_task(id, name, sequence).await;
                        }
                    }
                }
            }
        }
        Err(Error::Contention {
            id: id.to_owned(),
            attempts: u32::try_from(MAX_STEPS).unwrap_or(u32::MAX),
        })
    }

    /// Publishes the current revision's snapshot and records that it went out.
    async fn publish_status(&mut self, mut state: RequestState, revision: u64) -> Result<()> {
        let snapshot = state.snapshot();
        let id = state.id().to_owned();
        let subject = names::status_subject(&id);
        let dedup = format!("{id}-{}", state.revision);
        let duplicate = self.bus.publish(&subject, Some(&dedup), &snapshot).await?;
        self.metrics
            .inc("warroom_dispatcher_statuses_published_total");
        if state.phase.is_final() && !duplicate {
            self.metrics
                .inc("warroom_dispatcher_requests_finished_total");
        }
        info!(request = %id, revision = state.revision, phase = %state.phase, duplicate, error = state.error.as_deref().unwrap_or(""), "status published");
        // A conflict here only means someone moved the request on meanwhile; the next step
        // re-reads it and publishes whatever revision is then unpublished.
        if state.mark_published(state.revision) {
            self.store.update(&state, revision).await?;
        }
        Ok(())
    }

    /// Publishes the tasks of the due clusters, then records the dispatch.
    async fn dispatch(
        &mut self,
        mut state: RequestState,
        revision: u64,
        due: &[usize],
        now: warroom_proto::Timestamp,
    ) -> Result<()> {
        let mut queued = Vec::with_capacity(due.len());
        for &index in due {
            let Some(task) = state.task_for(index) else {
                continue;
            };
            let cluster = task.cluster.name.clone();
            let subject = names::task_subject(&cluster);
            let dedup = format!("{}-{cluster}", state.id());
            let ack = self.publish(&subject, &dedup, &task).await?;
            self.metrics.inc("warroom_dispatcher_tasks_published_total");
            info!(request = %state.id(), cluster = %cluster, sequence = ack.sequence, duplicate = ack.duplicate, prior_findings = task.prior_findings.len(), "task published");
            queued.push((index, Some(ack.sequence)));
        }
        if state.mark_dispatched(&queued, now) {
            // On a conflict the next step re-reads: the tasks already out are deduplicated.
            self.store.update(&state, revision).await?;
        }
        Ok(())
    }

    /// Removes an expired task from the queue, so a runner that comes up late does not start
    /// an investigation whose cluster has already been reported failed. Best effort: a runner
    /// may have taken it meanwhile, and its late reports are then ignored.
    async fn take_back_task(&self, id: &str, cluster: &str, sequence: u64) {
        match self.tasks.delete_message(sequence).await {
            Ok(_) => {
                info!(request = %id, cluster = %cluster, sequence, "expired task taken off the queue")
            }
            Err(e) => {
                debug!(request = %id, cluster = %cluster, sequence, cause = %e, "expired task was no longer queued")
            }
        }
    }

    /// Publishes `message` as JSON with a dedup id and returns the stream's acknowledgement
    /// (with the message's sequence, which [`Bus::publish`] does not return).
    async fn publish<T: Serialize>(
        &self,
        subject: &str,
        dedup: &str,
        message: &T,
    ) -> Result<jetstream::publish::PublishAck> {
        let payload = serde_json::to_vec(message).map_err(|source| Error::Encode {
            what: format!("the message for {subject}"),
            source,
        })?;
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(dedup);
        let failed = |e: &dyn std::fmt::Display| Error::Publish {
            subject: subject.to_owned(),
            message: e.to_string(),
        };
        self.bus
            .jetstream
            .send_publish(subject.to_owned(), publish)
            .await
            .map_err(|e| failed(&e))?
            .await
            .map_err(|e| failed(&e))
    }

    /// The NATS client, for closing it at shutdown.
    pub fn client(&self) -> async_nats::Client {
        self.bus.client.clone()
    }

    fn track(&mut self, state: &RequestState) {
        if state.is_active() {
            self.active.insert(state.id().to_owned());
        } else {
            self.active.remove(state.id());
        }
    }
}
