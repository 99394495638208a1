//! Runs of a task: counting them, saying what became of an interrupted one, and keeping the
//! per-task records runners check before they run a delivered task.
//!
//! A task runs at most twice ([`warroom_proto::status::MAX_RUNS`]). The runner numbers each
//! run with JetStream's delivery count and refuses a third; the dispatcher keeps the highest
//! number it heard as the cluster's `attempts`. The records in
//! [`warroom_proto::names::TASKS_BUCKET`] (one [`TaskRecord`] per cluster and request) tell a
//! runner that a task's cluster is already final, so a redelivered task (a failed ack, an
//! expired or finished cluster) is acknowledged instead of run again. A runner may read only
//! its own cluster's records; the requests bucket stays the dispatcher's alone.

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use tracing::warn;
use warroom_proto::{ClusterPhase, RequestId, TaskRecord, Timestamp, names};

use crate::state::{ClusterState, RequestState};

/// The cluster's attempt count after a run numbered `attempt` started (0: a runner that does
/// not number its runs, counted as one more).
pub fn next(attempts: u32, attempt: u32) -> u32 {
    if attempt == 0 {
        attempts.saturating_add(1)
    } else {
        attempts.max(attempt)
    }
}

/// What the report says of a run that a later one replaced.
pub fn interrupted(cluster: &ClusterState) -> String {
    let runner = cluster.runner.as_deref().unwrap_or("an unknown runner");
    let started = cluster
        .started_at
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "at an unknown time".to_owned());
    format!(
        "attempt {} on runner {runner}, started {started}, ended without a result (its runner \
         stopped, crashed or lost NATS)",
        cluster.attempts.max(1)
    )
}

/// What a task's record says: the cluster's phase and its attempts.
type Recorded = (ClusterPhase, u32);

/// How many record writes of one snapshot are in flight at once.
const RECORDS_IN_FLIGHT: usize = 64;

/// Writes the record of every cluster that started (again) or ended and whose record does
/// not say so yet, and notes in `state` what was written (stored with the state's next update). A
/// failed write is logged and tried again with the next snapshot: without its record, a
/// redelivered task is run (the runner's check cannot prove it final) and its second result
/// is ignored, which is safe. The writes are pipelined: a wide request's results, applied
/// together, cost one round trip rather than one each.
pub async fn sync_records(records: &kv::Store, state: &mut RequestState, now: Timestamp) {
    let id: RequestId = state.id().clone();
    let due: Vec<(usize, Recorded)> = state
        .clusters
        .iter()
        .enumerate()
        .filter(|(_, c)| c.phase == ClusterPhase::Running || c.phase.is_final())
        .map(|(index, c)| (index, (c.phase, c.attempts)))
        .filter(|(index, now_is)| state.clusters[*index].recorded != Some(*now_is))
        .collect();
    let writes = due.iter().map(|&(index, (phase, attempts))| {
        let key = names::task_record_key(&state.clusters[index].name, &id);
        (key, phase, attempts)
    });
    let written = put_records(records, writes.collect(), now).await;
    for ((index, now_is), outcome) in due.into_iter().zip(written) {
        let cluster = &mut state.clusters[index];
        match outcome {
            Ok(()) => cluster.recorded = Some(now_is),
            Err(cause) => {
                warn!(request = %id, cluster = %cluster.name, %cause, bucket = names::TASKS_BUCKET,
                    "cannot write the task's record; retrying with the next snapshot");
            }
        }
    }
    sync_turn_records(records, state, now).await;
}

/// [`sync_records`] for follow-up turns: each turn's record (`names::turn_record_key`) says
/// when it runs and when it ended, so a redelivered turn is not answered twice.
async fn sync_turn_records(records: &kv::Store, state: &mut RequestState, now: Timestamp) {
    let id = state.id().clone();
    let due: Vec<(usize, ClusterPhase)> = state
        .turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.phase == ClusterPhase::Running || t.phase.is_final())
        .filter(|(_, t)| t.recorded != Some(t.phase))
        .map(|(index, t)| (index, t.phase))
        .collect();
    let writes = due.iter().map(|&(index, phase)| {
        let turn = &state.turns[index];
        (
            names::turn_record_key(&turn.cluster, &id, turn.turn),
            phase,
            1,
        )
    });
    let written = put_records(records, writes.collect(), now).await;
    for ((index, phase), outcome) in due.into_iter().zip(written) {
        let turn = &mut state.turns[index];
        match outcome {
            Ok(()) => turn.recorded = Some(phase),
            Err(cause) => {
                warn!(request = %id, cluster = %turn.cluster, turn = turn.turn, %cause,
                    "cannot write the turn's record; retrying with the next snapshot");
            }
        }
    }
}

/// Writes each `(key, phase, attempts)` record, [`RECORDS_IN_FLIGHT`] at a time; the
/// outcomes in the order given.
async fn put_records(
    records: &kv::Store,
    writes: Vec<(String, ClusterPhase, u32)>,
    now: Timestamp,
) -> Vec<Result<(), String>> {
    futures::stream::iter(writes.into_iter().map(|(key, phase, attempts)| async move {
        let record = TaskRecord {
            phase,
            attempts,
            updated_at: now,
        };
        match serde_json::to_vec(&record) {
            Ok(bytes) => records
                .put(&key, bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }))
    .buffered(RECORDS_IN_FLIGHT)
    .collect()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_follow_the_runners_numbers_or_count_up() {
        assert_eq!(next(0, 1), 1);
        assert_eq!(next(1, 2), 2);
        // A repeated or late number does not count twice.
        assert_eq!(next(2, 2), 2);
        assert_eq!(next(2, 1), 2);
        // A runner that does not number its runs.
        assert_eq!(next(1, 0), 2);
    }
}
