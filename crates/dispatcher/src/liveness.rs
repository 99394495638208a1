//! What the dispatcher knows beyond one request: which clusters have a live runner, and where
//! each dispatched task waits in its cluster's queue.
//!
//! Runners write a heartbeat every few seconds into the runners bucket (`<cluster>.<replica>`,
//! [`warroom_proto::RunnerHeartbeat`]); [`watch`] follows the bucket into a [`Liveness`]. A
//! replica is live while its last heartbeat is at most [`HEARTBEAT_TTL`] old, by the NATS
//! server's clock (the time the bucket stored it), so neither a runner's clock nor a lost
//! delete marker can keep a dead replica alive. A cluster is live while one of its replicas is.
//!
//! [`Queues`] indexes the tasks that wait (dispatched, not started) by cluster and stream
//! sequence, which is the order a cluster's runners take them in.
//!
//! The rules a request applies to these ([`Outside`]: a task waits as long as its cluster has a
//! live runner; a task's position) are in [`crate::state`]; nothing here does I/O but
//! [`watch`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warroom_runtime::Chain;

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt as _;
use tracing::{debug, info, warn};
use warroom_proto::wire::HEARTBEAT_TTL;
use warroom_proto::{ClusterName, ClusterPhase, ReplicaId, RequestId, RunnerHeartbeat, Timestamp};
use warroom_runtime::shutdown::CancellationToken;

use crate::metrics::{ClusterLabels, Metrics};
use crate::state::RequestState;

/// How long to wait before watching the bucket again after the watch failed.
const REWATCH_PAUSE: Duration = Duration::from_secs(1);

/// Whether a cluster has a runner that can take its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// At least one replica sent a heartbeat within [`HEARTBEAT_TTL`].
    Live,
    /// None did.
    Absent {
        /// The last heartbeat this dispatcher saw from the cluster, if any.
        last_heartbeat: Option<Timestamp>,
        /// Since when the cluster has had no live runner, as far as this dispatcher knows:
        /// when its last replica stopped (removed its heartbeat) or expired, and never before
        /// the dispatcher began to follow heartbeats (it knows nothing of earlier).
        since: Timestamp,
    },
}

/// What a request's rules need to know from beyond the request ([`RequestState::next_step`]).
pub trait Outside {
    /// Whether `cluster` has a live runner at `now`.
    fn presence(&self, cluster: &ClusterName, now: Timestamp) -> Presence;
    /// The place (1 = next) of the task at stream `sequence` among `cluster`'s waiting tasks.
    fn position(&self, cluster: &ClusterName, sequence: u64) -> u32;
}

/// The runners' heartbeats, as the dispatcher has seen them.
#[derive(Debug)]
pub struct Liveness {
    ttl: Duration,
    watching_since: Timestamp,
    clusters: BTreeMap<ClusterName, Heard>,
}

/// What was heard from one cluster.
#[derive(Debug, Default)]
struct Heard {
    /// Each replica's last heartbeat; a replica that deleted its own (a clean shutdown) is
    /// removed.
    replicas: BTreeMap<ReplicaId, Beat>,
    /// The last heartbeat of any replica, kept when the replica goes.
    last: Option<Timestamp>,
    /// When the last replica that removed its heartbeat did so.
    last_gone: Option<Timestamp>,
}

/// One replica's last heartbeat.
#[derive(Debug, Clone, Copy)]
struct Beat {
    /// When the bucket stored it (the NATS server's clock).
    at: Timestamp,
    /// Its revision in the bucket; an older one arriving late is ignored.
    revision: u64,
}

impl Liveness {
    /// Nothing heard yet; following heartbeats since `watching_since`.
    pub fn new(watching_since: Timestamp) -> Liveness {
        Liveness::with_ttl(watching_since, HEARTBEAT_TTL)
    }

    pub fn with_ttl(watching_since: Timestamp, ttl: Duration) -> Liveness {
        Liveness {
            ttl,
            watching_since,
            clusters: BTreeMap::new(),
        }
    }

    /// A heartbeat of `replica` stored at `at` under `revision`. Returns the cluster's last
    /// heartbeat time after it.
    pub fn heard(
        &mut self,
        cluster: &ClusterName,
        replica: &ReplicaId,
        at: Timestamp,
        revision: u64,
    ) -> Timestamp {
        let heard = self.clusters.entry(cluster.clone()).or_default();
        let newer = heard
            .replicas
            .get(replica)
            .is_none_or(|beat| beat.revision < revision);
        if newer {
            heard
                .replicas
                .insert(replica.clone(), Beat { at, revision });
        }
        let last = heard.last.map_or(at, |last| last.max(at));
        heard.last = Some(last);
        last
    }

    /// `replica` removed its heartbeat (it shut down) at `at`, bucket `revision`.
    pub fn gone(
        &mut self,
        cluster: &ClusterName,
        replica: &ReplicaId,
        at: Timestamp,
        revision: u64,
    ) {
        if let Some(heard) = self.clusters.get_mut(cluster)
            && heard
                .replicas
                .get(replica)
                .is_some_and(|beat| beat.revision < revision)
        {
            heard.replicas.remove(replica);
            heard.last_gone = Some(heard.last_gone.map_or(at, |gone| gone.max(at)));
        }
    }

    /// Whether `cluster` has a live runner at `now`.
    pub fn presence(&self, cluster: &ClusterName, now: Timestamp) -> Presence {
        let heard = self.clusters.get(cluster);
        let live = heard.is_some_and(|heard| {
            heard
                .replicas
                .values()
                .any(|beat| now - beat.at <= self.ttl)
        });
        if live {
            return Presence::Live;
        }
        let expired = heard
            .and_then(|heard| heard.replicas.values().map(|beat| beat.at).max())
            .map(|at| at + self.ttl);
        let gone = heard.and_then(|heard| heard.last_gone);
        let since = [expired, gone]
            .into_iter()
            .flatten()
            .fold(self.watching_since, Timestamp::max);
        Presence::Absent {
            last_heartbeat: heard.and_then(|heard| heard.last),
            since,
        }
    }
}

/// The tasks that wait for a runner, by cluster, in the order the cluster's runners take them.
#[derive(Debug, Default)]
pub struct Queues {
    /// Cluster -> stream sequence of each waiting task -> its request.
    waiting: BTreeMap<ClusterName, BTreeMap<u64, RequestId>>,
    /// Request -> where its tasks wait, to replace them when the request moves on.
    of_request: BTreeMap<RequestId, Vec<(ClusterName, u64)>>,
}

impl Queues {
    /// Records where the tasks of `state` wait now: its dispatched clusters with a stream
    /// sequence, none once the request is final.
    pub fn track(&mut self, state: &RequestState) {
        let waiting: Vec<(ClusterName, u64)> = if state.phase.is_final() {
            Vec::new()
        } else {
            state
                .clusters
                .iter()
                .filter(|c| c.phase == ClusterPhase::Dispatched)
                .filter_map(|c| Some((c.name.clone(), c.task_sequence?)))
                .collect()
        };
        self.replace(state.id(), waiting);
    }

    /// Forgets the request (it is gone from the bucket).
    pub fn forget(&mut self, id: &RequestId) {
        self.replace(id, Vec::new());
    }

    fn replace(&mut self, id: &RequestId, waiting: Vec<(ClusterName, u64)>) {
        for (cluster, sequence) in self.of_request.remove(id).unwrap_or_default() {
            if let Some(queue) = self.waiting.get_mut(&cluster) {
                queue.remove(&sequence);
                if queue.is_empty() {
                    self.waiting.remove(&cluster);
                }
            }
        }
        if waiting.is_empty() {
            return;
        }
        for (cluster, sequence) in &waiting {
            self.waiting
                .entry(cluster.clone())
                .or_default()
                .insert(*sequence, id.clone());
        }
        self.of_request.insert(id.clone(), waiting);
    }

    /// The place (1 = next) of the task at `sequence` among `cluster`'s waiting tasks: one
    /// more than the number of tasks queued before it, whether or not it is tracked yet.
    pub fn position(&self, cluster: &ClusterName, sequence: u64) -> u32 {
        let ahead = self
            .waiting
            .get(cluster)
            .map_or(0, |queue| queue.range(..sequence).count());
        u32::try_from(ahead).unwrap_or(u32::MAX).saturating_add(1)
    }
}

/// Both, as a request's rules see them.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub liveness: &'a Liveness,
    pub queues: &'a Queues,
}

impl Outside for View<'_> {
    fn presence(&self, cluster: &ClusterName, now: Timestamp) -> Presence {
        self.liveness.presence(cluster, now)
    }

    fn position(&self, cluster: &ClusterName, sequence: u64) -> u32 {
        self.queues.position(cluster, sequence)
    }
}

/// Follows the runners bucket into `liveness` until `shutdown`, exporting each cluster's last
/// heartbeat as [`Metrics::runner_last_heartbeat_timestamp_seconds`]. A failed watch is started again: it first delivers every
/// key's latest value, so nothing is missed.
pub async fn watch(
    bucket: kv::Store,
    liveness: Arc<Mutex<Liveness>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        // Every key's latest value first, then each change (`watch_all` would give only
        // the changes).
        match bucket.watch_with_history(">").await {
            Ok(mut entries) => loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = entries.next() => next,
                };
                match next {
                    Some(Ok(entry)) => apply(&liveness, &metrics, &entry),
                    Some(Err(e)) => {
                        warn!(cause = %Chain(&e), "the watch of runner heartbeats failed; watching again");
                        break;
                    }
                    None => {
                        warn!("the watch of runner heartbeats ended; watching again");
                        break;
                    }
                }
            },
            Err(e) => warn!(cause = %Chain(&e), "cannot watch runner heartbeats; trying again"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REWATCH_PAUSE) => {}
        }
    }
}

/// Applies one entry of the runners bucket.
fn apply(liveness: &Mutex<Liveness>, metrics: &Metrics, entry: &kv::Entry) {
    let Some((cluster, replica)) = warroom_proto::names::parse_heartbeat_key(&entry.key) else {
        warn!(key = %entry.key, "ignoring a key of the runners bucket that is not <cluster>.<replica>");
        return;
    };
    let mut liveness = liveness.lock().unwrap_or_else(|p| p.into_inner());
    match entry.operation {
        Operation::Put => {
            // The key is the authority on the cluster (a runner may write only its own
            // cluster's keys); the record is informative.
            match serde_json::from_slice::<RunnerHeartbeat>(&entry.value) {
                Ok(beat) if beat.cluster != cluster => {
                    warn!(key = %entry.key, record_cluster = %beat.cluster, "a heartbeat names another cluster than its key; counted for the key's");
                }
                Ok(beat) => {
                    debug!(%cluster, %replica, running = beat.running, concurrency = beat.concurrency, "runner heartbeat");
                }
                Err(e) => {
                    warn!(key = %entry.key, cause = %Chain(&e), "a heartbeat that does not decode; counted all the same");
                }
            }
            let known = liveness.clusters.contains_key(&cluster);
            let last = liveness.heard(&cluster, &replica, entry.created, entry.revision);
            if !known {
                info!(%cluster, %replica, "first heartbeat from a runner of this cluster");
            }
            metrics
                .runner_last_heartbeat_timestamp_seconds
                .get_or_create(&ClusterLabels {
                    cluster: cluster.as_str().to_owned(),
                })
                .set(last.unix_timestamp());
        }
        Operation::Delete | Operation::Purge => {
            info!(%cluster, %replica, "a runner replica removed its heartbeat (it stopped)");
            liveness.gone(&cluster, &replica, entry.created, entry.revision);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000 + secs)
    }

    fn cluster(name: &str) -> ClusterName {
        ClusterName::new(name).expect("valid cluster name")
    }

    fn replica(name: &str) -> ReplicaId {
        ReplicaId::new(name).expect("valid replica id")
    }

    #[test]
    fn a_cluster_is_live_while_one_replica_beat_within_the_ttl() {
        let mut liveness = Liveness::with_ttl(at(0), Duration::from_secs(30));
        let hub = cluster("hub");
        assert_eq!(
            liveness.presence(&hub, at(1)),
            Presence::Absent {
                last_heartbeat: None,
                since: at(0)
            }
        );
        liveness.heard(&hub, &replica("a"), at(10), 1);
        liveness.heard(&hub, &replica("b"), at(20), 2);
        assert_eq!(liveness.presence(&hub, at(40)), Presence::Live);
        assert_eq!(liveness.presence(&hub, at(50)), Presence::Live);
        // Absent since the last replica's heartbeat expired.
        assert_eq!(
            liveness.presence(&hub, at(51)),
            Presence::Absent {
                last_heartbeat: Some(at(20)),
                since: at(50)
            }
        );
        // Another cluster's runner does not count.
        assert!(matches!(
            liveness.presence(&cluster("prod-1"), at(21)),
            Presence::Absent {
                last_heartbeat: None,
                ..
            }
        ));
    }

    #[test]
    fn a_replica_that_removed_its_heartbeat_no_longer_counts_but_is_remembered() {
        let mut liveness = Liveness::with_ttl(at(0), Duration::from_secs(30));
        let hub = cluster("hub");
        liveness.heard(&hub, &replica("a"), at(10), 5);
        // A delete older than the heartbeat (delivered late) changes nothing.
        liveness.gone(&hub, &replica("a"), at(9), 4);
        assert_eq!(liveness.presence(&hub, at(11)), Presence::Live);
        liveness.gone(&hub, &replica("a"), at(12), 6);
        assert_eq!(
            liveness.presence(&hub, at(13)),
            Presence::Absent {
                last_heartbeat: Some(at(10)),
                since: at(12)
            }
        );
        // A dispatcher that started later knows nothing from before.
        let mut late = Liveness::with_ttl(at(100), Duration::from_secs(30));
        late.heard(&hub, &replica("a"), at(10), 5);
        assert_eq!(
            late.presence(&hub, at(101)),
            Presence::Absent {
                last_heartbeat: Some(at(10)),
                since: at(100)
            }
        );
        // A late, older heartbeat does not move the last one back.
        assert_eq!(liveness.heard(&hub, &replica("b"), at(5), 3), at(10));
    }

    #[test]
    fn positions_follow_the_stream_order_of_a_clusters_waiting_tasks() {
        let mut queues = Queues::default();
        let hub = cluster("hub");
        let waiting = |id: &str, sequence: u64| {
            let mut state = crate::state::tests::request_for(id, &["hub"]);
            state.clusters[0].phase = ClusterPhase::Dispatched;
            state.clusters[0].task_sequence = Some(sequence);
            state
        };
        assert_eq!(queues.position(&hub, 7), 1);
        let first = waiting("r1", 7);
        let second = waiting("r2", 9);
        queues.track(&second);
        queues.track(&first);
        assert_eq!(queues.position(&hub, 7), 1);
        assert_eq!(queues.position(&hub, 9), 2);
        // Another cluster's queue is its own.
        assert_eq!(queues.position(&cluster("prod-1"), 9), 1);
        // The first starts: the second is next.
        let mut started = first.clone();
        started.clusters[0].phase = ClusterPhase::Running;
        queues.track(&started);
        assert_eq!(queues.position(&hub, 9), 1);
        queues.forget(second.id());
        assert_eq!(queues.position(&hub, 100), 1);
        assert!(queues.waiting.is_empty() && queues.of_request.is_empty());
    }
}
