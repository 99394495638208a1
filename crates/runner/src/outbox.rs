//! What a run sends to NATS, in order, through outages: the `started` report, every audit
//! event, the result. The agent never waits on NATS and is never stopped because NATS is
//! unreachable: messages go into a bounded buffer that one task publishes, one after the
//! other, retrying each until it is stored (its deduplication id makes a retry that did reach
//! the stream harmless).
//!
//! The buffer is bounded by count and bytes. When it is full, the first events are kept (how
//! the investigation started) and the newest ones (how it ended): events in between are
//! dropped, and a single `events_dropped` audit event with their number takes their place.
//! Reports are never dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warroom_runtime::Chain;

use tokio::sync::watch;
use tracing::{error, info, warn};
use warroom_proto::{
    AuditEvent, AuditKind, ClusterName, RequestId, ResultsDir, RunnerReport, Subject,
};
use warroom_runtime::shutdown::CancellationToken;
use warroom_runtime::{Bus, BusError};

use crate::Metrics;

/// The most messages one run keeps while NATS is unreachable.
pub const MAX_BUFFERED: usize = 10_000;
/// The most bytes (of encoded messages) one run keeps while NATS is unreachable.
pub const MAX_BUFFERED_BYTES: usize = 32 * 1024 * 1024;
/// The first pause after a failed publish; doubled up to [`MAX_RETRY_PAUSE`].
const RETRY_PAUSE: Duration = Duration::from_millis(250);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// A message waiting to be published.
#[derive(Debug, Clone)]
pub enum Message {
    Report(RunnerReport),
    Event(AuditEvent),
}

#[derive(Debug)]
struct Item {
    subject: Subject,
    dedup: String,
    message: Message,
    bytes: usize,
}

impl Item {
    fn droppable(&self) -> bool {
        matches!(self.message, Message::Event(_))
    }
}

/// The limits of a [`Buffer`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub count: usize,
    pub bytes: usize,
}

/// The ordered buffer: `head`, then (when `dropped > 0`) the place of the dropped events,
/// then `tail`. Pure, so its bounds are tested without NATS.
#[derive(Debug, Default)]
struct Buffer {
    head: VecDeque<Item>,
    dropped: u64,
    tail: VecDeque<Item>,
    count: usize,
    bytes: usize,
}

/// What [`Buffer::pop`] hands out next.
#[derive(Debug)]
enum Next {
    Item(Box<Item>),
    /// This many events were dropped here.
    Dropped(u64),
}

impl Buffer {
    /// Adds `item` at the end; returns how many events had to be dropped to make room.
    fn push(&mut self, item: Item, limits: Limits) -> u64 {
        self.count += 1;
        self.bytes += item.bytes;
        // The first half of the room keeps the first events; once it is taken, items go to
        // the tail, whose oldest events make room when the whole buffer is full.
        let half = Limits {
            count: limits.count / 2,
            bytes: limits.bytes / 2,
        };
        if self.dropped == 0 && self.tail.is_empty() && self.within(half) {
            self.head.push_back(item);
            return 0;
        }
        self.tail.push_back(item);
        let mut dropped = 0;
        while !self.within(limits) {
            let Some(at) = self.tail.iter().position(Item::droppable) else {
                break;
            };
            if let Some(gone) = self.tail.remove(at) {
                self.count -= 1;
                self.bytes -= gone.bytes;
                dropped += 1;
            }
        }
        self.dropped += dropped;
        dropped
    }

    fn within(&self, limits: Limits) -> bool {
        self.count <= limits.count && self.bytes <= limits.bytes
    }

    /// The next thing to publish, in order.
    fn pop(&mut self) -> Option<Next> {
        if let Some(item) = self.head.pop_front() {
            return Some(self.taken(item));
        }
        if self.dropped > 0 {
            let dropped = std::mem::take(&mut self.dropped);
            // What follows the marker is now simply the buffer.
            std::mem::swap(&mut self.head, &mut self.tail);
            return Some(Next::Dropped(dropped));
        }
        let item = self.tail.pop_front()?;
        Some(self.taken(item))
    }

    fn taken(&mut self, item: Item) -> Next {
        self.count -= 1;
        self.bytes -= item.bytes;
        Next::Item(Box::new(item))
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.head.is_empty() && self.tail.is_empty() && self.dropped == 0
    }
}

/// Who the run's events are about, to write the `events_dropped` event.
#[derive(Debug, Clone)]
pub struct RunIdentity {
    pub request: RequestId,
    pub cluster: ClusterName,
    pub results_dir: ResultsDir,
    pub attempt: u32,
    /// The follow-up turn of the run; 0 for the investigation.
    pub turn: u32,
}

/// One run's outbox, with the task that publishes it.
#[derive(Debug)]
pub struct Outbox {
    buffer: Arc<Mutex<Buffer>>,
    limits: Limits,
    /// Messages not yet stored by NATS, the one being published included.
    pending: watch::Sender<usize>,
    metrics: Arc<Metrics>,
    flusher: tokio::task::JoinHandle<()>,
}

impl Outbox {
    /// Starts publishing on `bus`; the flusher stops at `shutdown` or when the outbox goes.
    pub fn start(
        bus: Bus,
        run: RunIdentity,
        limits: Limits,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Outbox {
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let (pending, _) = watch::channel(0usize);
        let flusher = tokio::spawn(flush(bus, run, buffer.clone(), pending.clone(), shutdown));
        Outbox {
            buffer,
            limits,
            pending,
            metrics,
            flusher,
        }
    }

    /// Queues `message` for `subject` with its deduplication id.
    pub fn send(&self, subject: Subject, dedup: String, message: Message) {
        let bytes = match &message {
            Message::Report(report) => serde_json::to_vec(report).map(|b| b.len()),
            Message::Event(event) => serde_json::to_vec(event).map(|b| b.len()),
        }
        .unwrap_or(0);
        let item = Item {
            subject,
            dedup,
            message,
            bytes,
        };
        let dropped = lock(&self.buffer).push(item, self.limits);
        if dropped > 0 {
            self.metrics.events_dropped.inc_by(dropped);
        }
        let dropped = usize::try_from(dropped).unwrap_or(usize::MAX);
        self.pending
            .send_modify(|n| *n = (*n + 1).saturating_sub(dropped));
    }

    /// Waits until every message queued so far is stored by NATS.
    pub async fn drained(&self) {
        let mut pending = self.pending.subscribe();
        let _ = pending.wait_for(|n| *n == 0).await;
    }

    /// Messages not yet stored by NATS.
    pub fn pending(&self) -> usize {
        *self.pending.borrow()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.flusher.abort();
    }
}

fn lock(buffer: &Mutex<Buffer>) -> std::sync::MutexGuard<'_, Buffer> {
    // A panic while holding the lock leaves a consistent buffer: every change is one step.
    buffer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Publishes the buffer in order until shutdown.
async fn flush(
    bus: Bus,
    run: RunIdentity,
    buffer: Arc<Mutex<Buffer>>,
    pending: watch::Sender<usize>,
    shutdown: CancellationToken,
) {
    let mut changed = pending.subscribe();
    let mut markers = 0u64;
    loop {
        let next = lock(&buffer).pop();
        let Some(next) = next else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = changed.changed() => continue,
            }
        };
        let (subject, dedup, message, counted) = match next {
            Next::Item(item) => {
                let Item {
                    subject,
                    dedup,
                    message,
                    ..
                } = *item;
                (subject, dedup, message, true)
            }
            Next::Dropped(count) => {
                markers += 1;
                warn!(count, "events were dropped while NATS was unreachable");
                let id = format!(
                    "{}/{}/{}{}/dropped-{markers}",
                    run.request,
                    run.cluster,
                    if run.turn == 0 {
                        String::new()
                    } else {
                        format!("turn-{}-", run.turn)
                    },
                    run.attempt
                );
                let event = AuditEvent {
                    id: id.clone(),
                    request_id: run.request.clone(),
                    cluster: run.cluster.clone(),
                    results_dir: run.results_dir.clone(),
                    at: warroom_proto::now(),
                    attempt: run.attempt,
                    turn: run.turn,
                    kind: AuditKind::EventsDropped { count },
                    redacted: Default::default(),
                };
                let subject = Subject::Event(run.request.clone(), run.cluster.clone());
                (subject, id, Message::Event(event), false)
            }
        };
        if !publish_until_stored(&bus, &subject, &dedup, &message, &shutdown).await {
            return;
        }
        if counted {
            pending.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

/// Publishes one message, retrying until NATS stored it; `false` when shutdown came first.
/// A message that cannot be encoded is logged and skipped: it would fail every time.
async fn publish_until_stored(
    bus: &Bus,
    subject: &Subject,
    dedup: &str,
    message: &Message,
    shutdown: &CancellationToken,
) -> bool {
    let mut failures = 0usize;
    loop {
        let published = match message {
            Message::Report(report) => bus.publish(subject, Some(dedup), report).await,
            Message::Event(event) => bus.publish(subject, Some(dedup), event).await,
        };
        match published {
            Ok(_) => {
                if failures > 0 {
                    info!(%subject, failures, "NATS is back; publishing what was buffered");
                }
                return true;
            }
            Err(e @ BusError::Encode { .. }) => {
                error!(cause = %Chain(&e), %subject, "cannot encode a message; skipping it");
                return true;
            }
            Err(e) => {
                failures += 1;
                let pause = warroom_runtime::retry::delay(RETRY_PAUSE, MAX_RETRY_PAUSE, failures);
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(cause = %Chain(&e), %subject, failures, "cannot publish; the run goes on and its messages wait");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> Item {
        let event: AuditEvent = serde_json::from_value(serde_json::json!({
            "id": format!("r1/hub/1/{n}"), "request_id": "r1", "cluster": "hub",
            "results_dir": "results/r1", "at": "2026-11-24T10:00:00Z",
            "event": "tool_result", "tool_use_id": "t", "is_error": false, "output": "x"
        }))
        .unwrap();
        Item {
            subject: Subject::Event("r1".parse().unwrap(), "hub".parse().unwrap()),
            dedup: event.id.clone(),
            message: Message::Event(event),
            bytes: 10,
        }
    }

    fn report() -> Item {
        let mut item = event(999);
        item.message = Message::Report(RunnerReport::Started {
            request_id: "r1".parse().unwrap(),
            cluster: "hub".parse().unwrap(),
            runner: "r".to_owned(),
            at: warroom_proto::now(),
            attempt: 1,
        });
        item
    }

    fn drain(buffer: &mut Buffer) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(next) = buffer.pop() {
            out.push(match next {
                Next::Item(item) => match item.message {
                    Message::Event(e) => e.id.rsplit('/').next().unwrap().to_owned(),
                    Message::Report(_) => "report".to_owned(),
                },
                Next::Dropped(n) => format!("dropped {n}"),
            });
        }
        out
    }

    #[test]
    fn a_full_buffer_keeps_the_first_and_the_last_events_and_counts_the_rest() {
        let limits = Limits {
            count: 4,
            bytes: 1_000,
        };
        let mut buffer = Buffer::default();
        for n in 0..10 {
            buffer.push(event(n), limits);
        }
        buffer.push(report(), limits);
        assert_eq!(drain(&mut buffer), ["0", "1", "dropped 7", "9", "report"]);
        assert!(buffer.is_empty());
        assert_eq!((buffer.count, buffer.bytes), (0, 0));
    }

    #[test]
    fn the_byte_limit_counts_too_and_reports_are_never_dropped() {
        let limits = Limits {
            count: 100,
            bytes: 25,
        };
        let mut buffer = Buffer::default();
        buffer.push(report(), limits);
        for n in 0..5 {
            buffer.push(event(n), limits);
        }
        buffer.push(report(), limits);
        assert_eq!(drain(&mut buffer), ["report", "dropped 5", "report"]);
    }

    #[test]
    fn once_drained_the_buffer_starts_over() {
        let limits = Limits {
            count: 2,
            bytes: 1_000,
        };
        let mut buffer = Buffer::default();
        for n in 0..4 {
            buffer.push(event(n), limits);
        }
        // While the first events go out, more arrive: they stay in order behind the marker.
        assert_eq!(drain(&mut buffer), ["0", "dropped 2", "3"]);
        buffer.push(event(7), limits);
        assert_eq!(drain(&mut buffer), ["7"]);
    }
}
