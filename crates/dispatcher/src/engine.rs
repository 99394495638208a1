//! The dispatcher's work: accepted requests and runner reports in, tasks and status snapshots
//! out, every step driven by the stored state.
//!
//! Each message is handled to the end before the next one about the same request: apply it
//! to the stored state (compare-and-set), then [`Engine::drive`] the request, which repeatedly
//! asks the state what is due ([`RequestState::next_step`]) and does it. Messages about
//! different requests that arrived together are handled concurrently ([`Engine::on_requests`],
//! [`Engine::on_reports`]): each costs a few round trips to NATS, so a burst is handled at the
//! rate NATS answers rather than one round trip after another. Side effects are ordered so
//! that a crash at any point is repaired by simply driving the request again:
//!
//! - a task is published (dedup id `<id>-<cluster>`) *before* the dispatch is recorded, so a
//!   crash in between publishes it again, which JetStream discards as a duplicate;
//! - a status snapshot is published (dedup id `<id>-<revision>`) only *after* its revision is
//!   stored, and `published_revision` is recorded after that, so a crash in between publishes
//!   the same snapshot again, again discarded as a duplicate;
//! - a message is acknowledged only after all of that.
//!
//! Messages arrive as typed [`Delivery`]s: the bus has already decoded them and checked them
//! against their subject (a payload that does not decode is dead-lettered before it gets
//! here), so request ids and cluster names are checked identities from here on.
//!
//! Handling one message about a request at a time also keeps each request's snapshots in
//! revision order on the events stream, which is the order the publisher writes them to git.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use warroom_runtime::Chain;

use async_nats::jetstream::{kv, stream};
use futures::{StreamExt as _, TryStreamExt as _};
use tracing::{debug, error, info, instrument, warn};
use warroom_proto::wire::FollowUpOrder;
use warroom_proto::{
    AcceptedRequest, CancelOrder, ClusterName, GatewayMessage, RequestId, RequestNotice,
    RunnerReport, Subject, Timestamp, names,
};
use warroom_runtime::{Bus, Delivery};

use crate::Metrics;
use crate::liveness::{Liveness, Queues, View};
use crate::state::{
    Applied, CancelOutcome, FollowUpOutcome, PodStep, RequestState, Step, Timeouts,
};
use crate::store::{Modified, Store, Versioned};
use crate::{Error, Result};

/// A guard against a livelock in [`Engine::drive`]: no request needs this many steps at once
/// (a 32-cluster request that expires entirely needs 64).
const MAX_STEPS: usize = 256;

/// How many task publishes of one dispatch are in flight at once.
const TASKS_IN_FLIGHT: usize = 64;

/// How long a message whose handling failed for a passing reason (NATS unavailable, a write
/// conflict storm) waits before its first redelivery; each further one waits twice as long,
/// up to [`MAX_RETRY_DELAY`] (the runtime's one retry policy, `warroom_runtime::retry`). The
/// consumer's delivery limit bounds the retries, so the growing delay is what lets a message
/// outlast a NATS hiccup of a few minutes.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);

/// The longest wait before a redelivery.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The dispatcher's state between messages: connections, and the requests still in flight.
#[derive(Debug)]
pub struct Engine {
    bus: Bus,
    store: Store,
    /// The per-task records runners check before running a task (`crate::attempts`).
    records: kv::Store,
    tasks: stream::Stream,
    /// The results stream, to see whether runner reports wait for this dispatcher's
    /// consumer, delivered or not.
    results: stream::Stream,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
    /// What the engine keeps in memory about the requests in flight. Locked only between
    /// awaits: the requests handled concurrently share it.
    book: Mutex<Book>,
    /// Which runners are live, from their heartbeats (kept up to date by
    /// [`crate::liveness::watch`]).
    liveness: Arc<Mutex<Liveness>>,
}

/// The requests in flight, as the engine last left them.
#[derive(Debug, Default)]
struct Book {
    /// Requests that are not final (or whose last snapshot is unpublished): what the sweep
    /// visits. Rebuilt from the bucket at start, so a restart loses none.
    active: BTreeMap<RequestId, Active>,
    /// Where the dispatched tasks of the requests in flight wait.
    queues: Queues,
}

/// What the engine keeps of a request in flight.
#[derive(Debug)]
struct Active {
    /// When it was accepted.
    created_at: Timestamp,
    /// Whose it is, for the engineer's limit of active requests.
    engineer: String,
    /// Whether it is final (only its last snapshot is still to publish).
    is_final: bool,
}

impl Active {
    fn of(state: &RequestState) -> Active {
        Active {
            created_at: state.created_at,
            engineer: state.engineer().to_owned(),
            is_final: state.phase.is_final(),
        }
    }
}

/// The streams the engine reads besides its consumers: the tasks stream (to take expired
/// tasks back) and the results stream (to see whether reports wait).
#[derive(Debug)]
pub struct Streams {
    pub tasks: stream::Stream,
    pub results: stream::Stream,
}

impl Engine {
    pub fn new(
        bus: Bus,
        store: Store,
        records: kv::Store,
        Streams { tasks, results }: Streams,
        timeouts: Timeouts,
        metrics: Arc<Metrics>,
        liveness: Arc<Mutex<Liveness>>,
    ) -> Self {
        Engine {
            bus,
            store,
            records,
            tasks,
            results,
            timeouts,
            metrics,
            book: Mutex::new(Book::default()),
            liveness,
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds the requests a previous run left unfinished; the next sweep drives them on.
    pub async fn load_active(&mut self) -> Result<()> {
        for id in self.store.ids().await? {
            match self.store.load(&id).await {
                Ok(Some((state, _))) if state.is_active() => self.track(&state),
                Ok(_) => {}
                Err(e @ Error::CorruptState { .. }) => {
                    error!(request = %id, cause = %Chain(&e), "skipping a request whose stored state cannot be read");
                }
                Err(e) => return Err(e),
            }
        }
        self.count_active();
        info!(
            active = self.book().active.len(),
            "requests in flight loaded"
        );
        Ok(())
    }

    /// Handles messages of the gateway that arrived together, settling each: those about
    /// different requests concurrently, those about one request in their order (see
    /// [`lanes`]).
    pub async fn on_requests(&self, deliveries: Vec<Delivery<GatewayMessage>>) {
        let lanes = lanes(deliveries).into_iter().map(|lane| async move {
            for delivery in lane {
                self.on_request(delivery).await;
            }
        });
        futures::future::join_all(lanes).await;
    }

    /// Handles one message of the gateway (an accepted request or a notice about one) and
    /// settles its delivery.
    pub async fn on_request(&self, delivery: Delivery<GatewayMessage>) {
        let outcome = match &delivery.message {
            GatewayMessage::Accepted(request) => self.accept((**request).clone()).await,
            GatewayMessage::Notice(notice) => self.notice(notice).await,
            GatewayMessage::Cancel(order) => self.cancel(order).await,
            GatewayMessage::FollowUp(order) => self.follow_up(order).await,
        };
        self.settle(&delivery, outcome).await;
    }

    /// Handles runner reports that arrived together. Those about one request are applied in
    /// one compare-and-set, and the request is driven (its snapshot published) once, so the
    /// results of a wide request cost a few snapshots rather than one each; then every
    /// delivery is settled with its group's outcome. The groups of different requests are
    /// handled concurrently.
    pub async fn on_reports(&self, deliveries: Vec<Delivery<RunnerReport>>) {
        let mut groups: Vec<(RequestId, Vec<Delivery<RunnerReport>>)> = Vec::new();
        for delivery in deliveries {
            let id = delivery.message.about().0.clone();
            match groups.iter_mut().find(|(group, _)| *group == id) {
                Some((_, members)) => members.push(delivery),
                None => groups.push((id, vec![delivery])),
            }
        }
        let groups = groups.into_iter().map(|(id, members)| async move {
            let reports: Vec<&RunnerReport> = members.iter().map(|d| &d.message).collect();
            let outcome = self.reports(&id, &reports).await;
            match outcome {
                Ok(()) => {
                    for delivery in &members {
                        delivery.ack().await;
                    }
                }
                Err(e) => {
                    for delivery in &members {
                        self.settle_failure(delivery, &e).await;
                    }
                }
            }
        });
        futures::future::join_all(groups).await;
    }

    /// Acknowledges a handled message; dead-letters one that can never be handled; hands one
    /// that failed for a passing reason back for redelivery, until its last delivery.
    async fn settle<T>(&self, delivery: &Delivery<T>, outcome: Result<()>) {
        match outcome {
            Ok(()) => delivery.ack().await,
            Err(e) => self.settle_failure(delivery, &e).await,
        }
    }

    /// [`Engine::settle`] for a message whose handling failed with `e`.
    async fn settle_failure<T>(&self, delivery: &Delivery<T>, e: &Error) {
        let subject = &delivery.subject;
        match e {
            e if e.is_permanent() => {
                self.metrics.bad_messages.inc();
                error!(%subject, cause = %Chain(&e), "dead-lettering a message that cannot be handled");
                let reason = Chain(e).to_string();
                delivery.term(&reason).await;
            }
            e => {
                let delay = retry_delay(delivery.delivered());
                let reason = Chain(e).to_string();
                if delivery.retry(delay, &reason).await {
                    error!(%subject, cause = %Chain(&e), deliveries = delivery.delivered(), "handling kept failing; the message was dead-lettered");
                } else {
                    self.metrics.retries.inc();
                    warn!(%subject, cause = %Chain(&e), retry_in = ?delay, "handling failed; the message will be redelivered");
                }
            }
        }
    }

    /// Takes an accepted request: stores it once, then drives it.
    #[instrument(skip_all, fields(request = %request.id))]
    async fn accept(&self, request: AcceptedRequest) -> Result<()> {
        let id = request.id.clone();
        let limit = request.max_active_requests;
        let mut state = RequestState::new(request, warroom_proto::now());
        state.synthesis_timeout_secs = self.timeouts.synthesis.map(|bound| bound.as_secs().max(1));
        if let Some(limit) = limit {
            let active = self.active_of(state.engineer(), &id);
            if active >= limit as usize {
                self.metrics.requests_over_limit.inc();
                warn!(engineer = %state.engineer(), active, limit, "refusing a request: the engineer is at their limit of active requests");
                state.refuse_over_limit(active, limit);
            }
        }
        if let Some(revision) = self.store.create(&state).await? {
            self.metrics.requests_accepted.inc();
            info!(clusters = state.clusters.len(), mode = ?state.mode, "request accepted");
            // Counted against the engineer's limit from now on, even if driving it fails
            // before the end.
            self.track(&state);
            self.drive(&id, false, Some((state, revision))).await
        } else {
            // Redelivered, or published twice: the stored state says how far it got.
            info!("request already known; resuming from its stored state");
            self.drive(&id, false, None).await
        }
    }

    /// How many requests of `engineer` other than `except` are in flight (not final). The
    /// book is this dispatcher's own account of every request it drives: the bucket is only
    /// written by the dispatcher holding the lease, and the book is rebuilt from the bucket
    /// when a replica takes the lease.
    fn active_of(&self, engineer: &str, except: &RequestId) -> usize {
        self.book()
            .active
            .iter()
            .filter(|(id, active)| *id != except && !active.is_final && active.engineer == engineer)
            .count()
    }

    /// Records a notice of the gateway in its request's status. A notice for a request this
    /// dispatcher does not know (yet) is retried: the request it follows may still be on its
    /// way.
    #[instrument(skip_all, fields(request = %notice.id))]
    async fn notice(&self, notice: &RequestNotice) -> Result<()> {
        let now = warroom_proto::now();
        let modified = self
            .store
            .modify(&notice.id, |state| {
                state.add_notice(notice.notice.clone(), now)
            })
            .await?;
        match modified {
            Modified::Missing => Err(Error::UnknownRequest(notice.id.clone())),
            Modified::Changed(state, revision) => {
                self.metrics.notices.inc();
                info!(kind = ?notice.notice.kind, file = %notice.notice.file, "notice added to the request's status");
                self.drive(&notice.id, false, Some((state, revision))).await
            }
            Modified::Unchanged(..) => Ok(()),
        }
    }

    /// Applies an authorized cancel to its request: the clusters that did not end are
    /// `cancelled`, their queued tasks taken back, and the task records (which runners check
    /// before and while they run) say `cancelled`, so no queued task starts and every running
    /// agent is stopped by its runner. A cancel of a request that ended is answered with a
    /// notice. Like a notice, a cancel of a request not known (yet) is retried.
    #[instrument(skip_all, fields(request = %order.id))]
    async fn cancel(&self, order: &CancelOrder) -> Result<()> {
        let now = warroom_proto::now();
        let mut outcome = CancelOutcome::Repeat;
        let modified = self
            .store
            .modify(&order.id, |state| {
                outcome = state.cancel(order, now);
                outcome != CancelOutcome::Repeat
            })
            .await?;
        match modified {
            Modified::Missing => Err(Error::UnknownRequest(order.id.clone())),
            Modified::Changed(state, revision) => {
                match &outcome {
                    CancelOutcome::Cancelled(queued) => {
                        info!(by = %order.cancel.by, reason = ?order.cancel.reason, "request cancelled");
                        for (cluster, sequence) in queued {
                            self.take_back_task(&order.id, cluster, *sequence).await;
                        }
                    }
                    _ => {
                        info!(by = %order.cancel.by, phase = %state.phase, "cancel of a request that already ended; answered with a notice")
                    }
                }
                self.drive(&order.id, false, Some((state, revision))).await
            }
            Modified::Unchanged(..) => Ok(()),
        }
    }

    /// Adds an authorized follow-up question to its request as a new turn (or a notice saying
    /// why not), then drives the request. Like a cancel, one for a request not known (yet) is
    /// retried.
    #[instrument(skip_all, fields(request = %order.id, turn = order.turn))]
    async fn follow_up(&self, order: &FollowUpOrder) -> Result<()> {
        let now = warroom_proto::now();
        let mut outcome = FollowUpOutcome::Repeat;
        let modified = self
            .store
            .modify(&order.id, |state| {
                outcome = state.on_follow_up(order, now);
                outcome != FollowUpOutcome::Repeat
            })
            .await?;
        match modified {
            Modified::Missing => Err(Error::UnknownRequest(order.id.clone())),
            Modified::Changed(state, revision) => {
                match &outcome {
                    FollowUpOutcome::Refused(why) => {
                        info!(by = %order.engineer, reason = %why, "follow-up refused with a notice");
                    }
                    _ => {
                        info!(by = %order.engineer, cluster = ?order.cluster, "follow-up turn added")
                    }
                }
                self.drive(&order.id, false, Some((state, revision))).await
            }
            Modified::Unchanged(..) => Ok(()),
        }
    }

    /// Applies a runner's report to its request, then drives the request.
    #[instrument(skip_all, fields(request = %report.about().0, cluster = %report.about().1))]
    async fn report(&self, report: &RunnerReport) -> Result<()> {
        let (id, cluster) = report.about();
        let now = warroom_proto::now();
        let mut applied = Applied::Unchanged;
        let modified = self
            .store
            .modify(id, |state| {
                applied = state.apply(report, now, self.timeouts.progress);
                applied == Applied::Changed
            })
            .await?;
        self.metrics.reports.inc();
        let kind = match report {
            RunnerReport::Started { .. } => "started",
            RunnerReport::Finished(_) => "finished",
            RunnerReport::Synthesis(_) => "synthesis",
            RunnerReport::TurnStarted { .. } => "turn started",
            RunnerReport::TurnFinished(_) => "turn finished",
            RunnerReport::SessionPod(_) => "session pod",
            RunnerReport::Progress { .. } => "progress",
        };
        let known = match modified {
            Modified::Missing => {
                self.metrics.reports_ignored.inc();
                warn!(request = %id, cluster = %cluster, report = kind, "ignoring a report for an unknown request");
                return Ok(());
            }
            Modified::Changed(state, revision) | Modified::Unchanged(state, revision) => {
                (state, revision)
            }
        };
        match applied {
            Applied::UnknownCluster => {
                self.metrics.reports_ignored.inc();
                warn!(request = %id, cluster = %cluster, report = kind, "ignoring a report for a cluster the request does not target");
            }
            Applied::AlreadyFinal => {
                self.metrics.reports_ignored.inc();
                info!(request = %id, cluster = %cluster, report = kind, "ignoring a report for a cluster that already has its result");
            }
            Applied::Unchanged => {
                debug!(request = %id, cluster = %cluster, report = kind, "report already applied");
            }
            Applied::Changed => {
                let state = &known.0;
                let phase = state
                    .clusters
                    .iter()
                    .find(|c| c.name == *cluster)
                    .map(|c| c.phase.as_str())
                    .unwrap_or_default();
                if matches!(report, RunnerReport::Progress { .. }) {
                    debug!(request = %id, cluster = %cluster, "progress applied");
                } else {
                    info!(request = %id, cluster = %cluster, report = kind, cluster_phase = phase, request_phase = %state.phase, "runner report applied");
                }
            }
        }
        // Driving also repairs whatever a crash left undone for this request, even when the
        // report itself was a repeat.
        self.drive(id, false, Some(known)).await
    }

    /// Applies several runner reports about request `id` in one compare-and-set, in their
    /// order, then drives the request once.
    #[instrument(skip_all, fields(request = %id, reports = reports.len()))]
    async fn reports(&self, id: &RequestId, reports: &[&RunnerReport]) -> Result<()> {
        if let [one] = reports {
            return self.report(one).await;
        }
        let now = warroom_proto::now();
        let mut applied = Vec::with_capacity(reports.len());
        let modified = self
            .store
            .modify(id, |state| {
                let before = state.revision;
                applied = reports
                    .iter()
                    .map(|report| state.apply(report, now, self.timeouts.progress))
                    .collect();
                // The reports handled together are one transition, published as one
                // snapshot: the revisions a reader sees still grow by one.
                state.revision = state.revision.min(before + 1);
                applied.contains(&Applied::Changed)
            })
            .await?;
        self.metrics.reports.inc_by(reports.len() as u64);
        let known = match modified {
            Modified::Missing => {
                self.metrics.reports_ignored.inc_by(reports.len() as u64);
                warn!(
                    reports = reports.len(),
                    "ignoring reports for an unknown request"
                );
                return Ok(());
            }
            Modified::Changed(state, revision) | Modified::Unchanged(state, revision) => {
                (state, revision)
            }
        };
        for (report, applied) in reports.iter().zip(&applied) {
            let (_, cluster) = report.about();
            match applied {
                Applied::UnknownCluster | Applied::AlreadyFinal => {
                    self.metrics.reports_ignored.inc();
                    info!(cluster = %cluster, outcome = ?applied, "ignoring a runner report");
                }
                Applied::Unchanged => debug!(cluster = %cluster, "report already applied"),
                Applied::Changed => debug!(cluster = %cluster, "runner report applied"),
            }
        }
        info!(
            applied = applied.iter().filter(|a| **a == Applied::Changed).count(),
            "runner reports applied together"
        );
        self.drive(id, false, Some(known)).await
    }

    /// Visits every request in flight: publishes what is unpublished, expires what ran out of
    /// time, dispatches what is due. A failure on one request does not stop the others.
    ///
    /// Only the sweep expires clusters, and only while no runner report waits undelivered in
    /// the results stream: after an outage of the dispatcher, the `started` and `finished`
    /// reports that arrived meanwhile are applied first, so a cluster whose runner did its
    /// work is never failed for a timeout that only the dispatcher's absence caused.
    pub async fn sweep(&self) {
        // Delivered but unacknowledged reports count too: between two messages nothing is
        // being handled, so they are still on their way to this dispatcher.
        let backlog = self
            .results
            .consumer_info(names::DISPATCHER_RESULTS_CONSUMER)
            .await;
        let expire = match backlog {
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
                warn!(cause = %Chain(&e), "cannot read the results backlog; timeouts deferred");
                false
            }
        };
        let ids: Vec<RequestId> = self.book().active.keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.drive(&id, expire, None).await {
                warn!(request = %id, cause = %Chain(&e), "sweep could not drive a request; retrying at the next sweep");
            }
        }
        // The oldest request's age grows between transitions too.
        self.count_active();
    }

    /// Does whatever the stored state says is due, one step at a time, until nothing is;
    /// with `expire`, that includes ending clusters that ran out of time. `known` is the
    /// stored state when the caller has just read or written it; each step that writes the
    /// state goes on from what it wrote, and only a step that did not (a conflict) reads it
    /// again.
    #[instrument(skip_all, fields(request = %id, expire))]
    pub async fn drive(
        &self,
        id: &RequestId,
        expire: bool,
        known: Option<Versioned>,
    ) -> Result<()> {
        let mut known = known;
        for _ in 0..MAX_STEPS {
            let loaded = match known.take() {
                Some(known) => Some(known),
                None => self.store.load(id).await?,
            };
            let Some((state, revision)) = loaded else {
                let mut book = self.book();
                book.active.remove(id);
                book.queues.forget(id);
                drop(book);
                self.count_active();
                return Ok(());
            };
            let now = warroom_proto::now();
            let step = {
                let liveness = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
                let book = self.book();
                let view = View {
                    liveness: &liveness,
                    queues: &book.queues,
                };
                state.next_step(now, expire.then_some(self.timeouts), &view)
            };
            let Some(step) = step else {
                self.track(&state);
                return Ok(());
            };
            known = self.take(id, step, state, revision, now).await?;
        }
        Err(Error::Contention {
            id: id.clone(),
            attempts: u32::try_from(MAX_STEPS).unwrap_or(u32::MAX),
        })
    }

    /// Does one step of a request's state; the state as stored then, or `None` when someone
    /// else moved it on meanwhile (the caller reads it again).
    async fn take(
        &self,
        id: &RequestId,
        step: Step,
        state: RequestState,
        revision: u64,
        now: warroom_proto::Timestamp,
    ) -> Result<Option<Versioned>> {
        let known = match step {
            Step::PublishStatus => self.publish_status(state, revision).await?,
            Step::Dispatch(due) => self.dispatch(state, revision, &due, now).await?,
            Step::Requeue(moved) => {
                let mut next = state;
                if next.requeue(&moved, now)
                    && let Some(revision) = self.store.update(&next, revision).await?
                {
                    debug!(request = %id, moved = ?moved, "tasks moved up in their queues");
                    return Ok(Some((next, revision)));
                }
                None
            }
            Step::DispatchTurn(index) => self.dispatch_turn(state, revision, index, now).await?,
            Step::EndSession(why) => {
                let mut next = state;
                let take_back = next.end_session(&why, now);
                if let Some(revision) = self.store.update(&next, revision).await? {
                    info!(request = %id, reason = %why, "session ended");
                    for (cluster, sequence) in &take_back {
                        self.take_back_task(id, cluster, *sequence).await;
                    }
                    return Ok(Some((next, revision)));
                }
                None
            }
            Step::Synthesize(index) => self.synthesize(state, revision, index, now).await?,
            Step::Pod(order) => self.order_pod(state, revision, order, now).await?,
            step @ (Step::Expire { .. } | Step::ExpireTurn { .. } | Step::ExpireSynthesis(_)) => {
                self.expire(id, step, state, revision, now).await?
            }
        };
        Ok(known)
    }
    /// Ends what ran out of time (a cluster, a turn, a synthesis) and takes its task back off
    /// its queue; the state as stored then.
    async fn expire(
        &self,
        id: &RequestId,
        step: Step,
        state: RequestState,
        revision: u64,
        now: warroom_proto::Timestamp,
    ) -> Result<Option<Versioned>> {
        let known = match step {
            Step::ExpireTurn { turn, phase, error } => {
                let mut next = state;
                if next.expire_turn(turn, phase, &error, now)
                    && let Some(revision) = self.store.update(&next, revision).await?
                {
                    self.metrics.timeouts.inc();
                    let expired = &next.turns[turn];
                    warn!(request = %id, cluster = %expired.cluster, turn = expired.turn, phase = %phase, reason = %error, "follow-up turn ran out of time");
                    if let Some(sequence) = expired.task_sequence {
                        self.take_back_task(id, &expired.cluster, sequence).await;
                    }
                    return Ok(Some((next, revision)));
                }
                None
            }
            Step::ExpireSynthesis(error) => {
                let mut next = state;
                if next.expire_synthesis(&error, now)
                    && let Some(revision) = self.store.update(&next, revision).await?
                {
                    warn!(request = %id, reason = %error, "the synthesis did not come; the request ends without it");
                    if let Some(synthesis) = &next.synthesis
                        && let (Some(cluster), Some(sequence)) =
                            (&synthesis.cluster, synthesis.task_sequence)
                    {
                        self.take_back_task(id, cluster, sequence).await;
                    }
                    return Ok(Some((next, revision)));
                }
                None
            }
            Step::Expire {
                cluster,
                phase,
                error,
            } => {
                let mut next = state;
                if next.expire(cluster, phase, &error, now)
                    && let Some(revision) = self.store.update(&next, revision).await?
                {
                    self.metrics.timeouts.inc();
                    let name = &next.clusters[cluster].name;
                    warn!(request = %id, cluster = %name, phase = %phase, reason = %error, "cluster ran out of time");
                    if let Some(sequence) = next.clusters[cluster].task_sequence {
                        self.take_back_task(id, name, sequence).await;
                    }
                    return Ok(Some((next, revision)));
                }
                None
            }
            _ => None,
        };
        Ok(known)
    }

    /// Publishes the current revision's snapshot and records that it went out; the state as
    /// stored then, unless someone else moved it on meanwhile.
    async fn publish_status(
        &self,
        mut state: RequestState,
        revision: u64,
    ) -> Result<Option<Versioned>> {
        // Records first: once a final status is out, a redelivered task finds its cluster
        // final and is not run again.
        crate::attempts::sync_records(&self.records, &mut state, warroom_proto::now()).await;
        let snapshot = state.snapshot();
        let id = state.id().clone();
        let dedup = format!("{id}-{}", state.revision);
        let stored = self
            .bus
            .publish(&Subject::Status(id.clone()), Some(&dedup), &snapshot)
            .await?;
        let duplicate = stored.duplicate;
        self.metrics.statuses_published.inc();
        if state.phase.is_final() && !duplicate {
            self.metrics.requests_finished.inc();
        }
        info!(request = %id, revision = state.revision, phase = %state.phase, duplicate, error = state.error.as_deref().unwrap_or(""), "status published");
        // A conflict here only means someone moved the request on meanwhile; the next step
        // re-reads it and publishes whatever revision is then unpublished.
        if state.mark_published(state.revision)
            && let Some(revision) = self.store.update(&state, revision).await?
        {
            return Ok(Some((state, revision)));
        }
        Ok(None)
    }

    /// Publishes the tasks of the due clusters, then records the dispatch; the state as
    /// stored then, unless someone else moved it on meanwhile.
    async fn dispatch(
        &self,
        mut state: RequestState,
        revision: u64,
        due: &[usize],
        now: warroom_proto::Timestamp,
    ) -> Result<Option<Versioned>> {
        let tasks: Vec<(usize, warroom_proto::Task)> = due
            .iter()
            .filter_map(|&index| Some((index, state.task_for(index)?)))
            .collect();
        // The publishes of a wide parallel request are pipelined, their acknowledgements
        // awaited together, [`TASKS_IN_FLIGHT`] at a time.
        let bus = &self.bus;
        let publishes: Vec<_> = tasks
            .iter()
            .map(|(index, task)| async move {
                let cluster = &task.cluster.name;
                let dedup = format!("{}-{cluster}", task.request_id);
                let ack = bus
                    .publish(&Subject::Task(cluster.clone()), Some(&dedup), task)
                    .await?;
                Ok::<_, Error>((*index, task, ack))
            })
            .collect();
        let acks: Vec<_> = futures::stream::iter(publishes)
            .buffered(TASKS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut queued = Vec::with_capacity(acks.len());
        let mut placed = Vec::with_capacity(acks.len());
        for (index, task, ack) in acks {
            self.metrics.tasks_published.inc();
            let position = self
                .book()
                .queues
                .position(&task.cluster.name, ack.sequence);
            info!(request = %state.id(), cluster = %task.cluster.name, sequence = ack.sequence, duplicate = ack.duplicate, position, prior_findings = task.prior_findings.len(), "task published");
            queued.push((index, Some(ack.sequence)));
            placed.push((index, position));
        }
        if state.mark_dispatched(&queued, now) {
            state.place(&placed);
            // On a conflict the next step re-reads: the tasks already out are deduplicated.
            if let Some(revision) = self.store.update(&state, revision).await? {
                return Ok(Some((state, revision)));
            }
        }
        Ok(None)
    }

    /// Sends a follow-up turn's task to its cluster's runner, then records the dispatch; the
    /// state as stored then.
    async fn dispatch_turn(
        &self,
        state: RequestState,
        revision: u64,
        index: usize,
        now: warroom_proto::Timestamp,
    ) -> Result<Option<Versioned>> {
        let Some(task) = state.turn_task(index) else {
            return Ok(None);
        };
        let turn = state.turns[index].turn;
        let dedup = format!("{}-{}-turn-{turn}", task.request_id, task.cluster.name);
        self.send_task(
            state,
            revision,
            &task,
            &dedup,
            "follow-up turn",
            |state, sequence| state.mark_turn_dispatched(index, sequence, now),
        )
        .await
    }

    /// Sends the session's pod order to its cluster's runner, then records it; the state as
    /// stored then.
    async fn order_pod(
        &self,
        state: RequestState,
        revision: u64,
        step: PodStep,
        now: warroom_proto::Timestamp,
    ) -> Result<Option<Versioned>> {
        let Some(task) = state.pod_task(step) else {
            return Ok(None);
        };
        let dedup = state.pod_dedup(step);
        self.send_task(
            state,
            revision,
            &task,
            &dedup,
            "session pod order",
            |state, _| state.mark_pod_ordered(step, now),
        )
        .await
    }

    /// Sends the request's synthesis task to the runner of the cluster at `index`, then
    /// records where it went; the state as stored then.
    async fn synthesize(
        &self,
        state: RequestState,
        revision: u64,
        index: usize,
        now: warroom_proto::Timestamp,
    ) -> Result<Option<Versioned>> {
        let Some(task) = state.synthesis_task(index) else {
            return Ok(None);
        };
        let cluster = task.cluster.name.clone();
        let dedup = format!("{}-{cluster}-synthesis", task.request_id);
        self.send_task(
            state,
            revision,
            &task,
            &dedup,
            "synthesis task",
            |state, sequence| state.mark_synthesis_requested(&cluster, sequence, now),
        )
        .await
    }

    /// Publishes one `task` of `state` to its cluster's queue under `dedup`, then records it
    /// with `mark` (given the task's stream sequence) and stores the state; the state as
    /// stored then, `None` when someone else moved it on meanwhile.
    async fn send_task(
        &self,
        mut state: RequestState,
        revision: u64,
        task: &warroom_proto::Task,
        dedup: &str,
        what: &str,
        mark: impl FnOnce(&mut RequestState, u64) -> bool,
    ) -> Result<Option<Versioned>> {
        let cluster = &task.cluster.name;
        let ack = self
            .bus
            .publish(&Subject::Task(cluster.clone()), Some(dedup), task)
            .await?;
        self.metrics.tasks_published.inc();
        info!(request = %state.id(), cluster = %cluster, sequence = ack.sequence, duplicate = ack.duplicate, dedup, "{what} published");
        if mark(&mut state, ack.sequence)
            && let Some(revision) = self.store.update(&state, revision).await?
        {
            return Ok(Some((state, revision)));
        }
        Ok(None)
    }

    /// Removes an expired task from the queue, so a runner that comes up late does not start
    /// an investigation whose cluster has already been reported failed. Best effort: a runner
    /// may have taken it meanwhile, and its late reports are then ignored.
    async fn take_back_task(&self, id: &RequestId, cluster: &ClusterName, sequence: u64) {
        match self.tasks.delete_message(sequence).await {
            Ok(_) => {
                info!(request = %id, cluster = %cluster, sequence, "expired task taken off the queue")
            }
            Err(e) => {
                debug!(request = %id, cluster = %cluster, sequence, cause = %Chain(&e), "expired task was no longer queued")
            }
        }
    }

    fn track(&self, state: &RequestState) {
        let mut book = self.book();
        if state.is_active() {
            book.active.insert(state.id().clone(), Active::of(state));
        } else {
            book.active.remove(state.id());
        }
        book.queues.track(state);
        drop(book);
        self.count_active();
    }

    /// Exports the number of requests in flight and the age of the oldest.
    fn count_active(&self) {
        let book = self.book();
        self.metrics
            .requests_active
            .set(i64::try_from(book.active.len()).unwrap_or(i64::MAX));
        let oldest = book
            .active
            .values()
            .map(|active| active.created_at)
            .min()
            .map_or(0, |created| {
                (warroom_proto::now() - created).whole_seconds().max(0)
            });
        self.metrics.oldest_active_request_age_seconds.set(oldest);
    }
}

/// Splits gateway messages that arrived together into lanes handled concurrently, each in its
/// order: one lane per request; and, for the requests that carry a limit of active requests,
/// one per engineer, so that two requests of one engineer are never counted against the
/// limit at the same time.
fn lanes(deliveries: Vec<Delivery<GatewayMessage>>) -> Vec<Vec<Delivery<GatewayMessage>>> {
    split_into_lanes(deliveries, |delivery| match &delivery.message {
        GatewayMessage::Accepted(request) => (
            &request.id,
            request
                .max_active_requests
                .map(|_| request.request.metadata.engineer.as_str()),
        ),
        GatewayMessage::Notice(notice) => (&notice.id, None),
        GatewayMessage::Cancel(order) => (&order.id, None),
        GatewayMessage::FollowUp(order) => (&order.id, None),
    })
}

/// [`lanes`], for items that `key` says are about a request and (when its order matters
/// against the engineer's other requests) an engineer. When the two would split one lane (a
/// request's messages across two engineers' lanes), everything goes in one lane.
fn split_into_lanes<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> (&RequestId, Option<&str>),
) -> Vec<Vec<T>> {
    let mut lane_of = Vec::with_capacity(items.len());
    {
        let mut by_id: HashMap<&RequestId, usize> = HashMap::new();
        let mut by_engineer: HashMap<&str, usize> = HashMap::new();
        let mut lanes = 0;
        for item in &items {
            let (id, engineer) = key(item);
            let of_id = by_id.get(id).copied();
            let of_engineer = engineer.and_then(|e| by_engineer.get(e).copied());
            let lane = match (of_id, of_engineer) {
                (Some(a), Some(b)) if a != b => {
                    lane_of.clear();
                    break;
                }
                (Some(lane), _) | (None, Some(lane)) => lane,
                (None, None) => {
                    lanes += 1;
                    lanes - 1
                }
            };
            by_id.insert(id, lane);
            if let Some(engineer) = engineer {
                by_engineer.insert(engineer, lane);
            }
            lane_of.push(lane);
        }
    }
    if lane_of.len() != items.len() {
        return vec![items];
    }
    let mut split: Vec<Vec<T>> = Vec::new();
    for (item, lane) in items.into_iter().zip(lane_of) {
        if lane == split.len() {
            split.push(Vec::new());
        }
        split[lane].push(item);
    }
    split
}

/// The wait before redelivering a message that failed `delivered` times: [`RETRY_DELAY`],
/// doubling with each delivery, at most [`MAX_RETRY_DELAY`].
fn retry_delay(delivered: i64) -> Duration {
    let retry = usize::try_from(delivered.max(1)).unwrap_or(usize::MAX);
    warroom_runtime::retry::delay(RETRY_DELAY, MAX_RETRY_DELAY, retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_a_limit() {
        assert_eq!(retry_delay(0), RETRY_DELAY);
        assert_eq!(retry_delay(1), RETRY_DELAY);
        assert_eq!(retry_delay(2), RETRY_DELAY * 2);
        assert_eq!(retry_delay(3), RETRY_DELAY * 4);
        assert_eq!(retry_delay(1_000), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(i64::MAX), MAX_RETRY_DELAY);
    }

    fn id(name: &str) -> RequestId {
        RequestId::new(name.to_owned()).expect("a valid id")
    }

    /// Lanes of `(request, engineer if limited)` items, as the items' positions.
    fn split(items: &[(&str, Option<&str>)]) -> Vec<Vec<usize>> {
        let items: Vec<(usize, RequestId, Option<&str>)> = items
            .iter()
            .enumerate()
            .map(|(n, (request, engineer))| (n, id(request), *engineer))
            .collect();
        split_into_lanes(items, |(_, request, engineer)| (request, *engineer))
            .into_iter()
            .map(|lane| lane.into_iter().map(|(n, ..)| n).collect())
            .collect()
    }

    #[test]
    fn messages_of_different_requests_go_in_different_lanes() {
        assert_eq!(
            split(&[("a", None), ("b", None), ("c", None)]),
            [vec![0], vec![1], vec![2]]
        );
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn messages_of_one_request_stay_in_one_lane_in_their_order() {
        assert_eq!(
            split(&[("a", None), ("b", None), ("a", None), ("a", None)]),
            [vec![0, 2, 3], vec![1]]
        );
    }

    #[test]
    fn limited_requests_of_one_engineer_share_a_lane() {
        assert_eq!(
            split(&[
                ("a", Some("carol")),
                ("b", Some("dave")),
                ("c", Some("carol")),
                ("d", None),
                // A notice about `c` follows it in carol's lane.
                ("c", None),
            ]),
            [vec![0, 2, 4], vec![1], vec![3]]
        );
    }

    #[test]
    fn a_request_that_would_join_two_lanes_puts_everything_in_one() {
        // `b` is in its own lane when carol's second request names it too.
        assert_eq!(
            split(&[("a", Some("carol")), ("b", None), ("b", Some("carol"))]),
            [vec![0, 1, 2]]
        );
    }
}
