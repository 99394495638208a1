//! Whether a delivered task may run: the check before the agent starts.
//!
//! A task is run at most [`MAX_RUNS`] times. Its attempt number is JetStream's delivery
//! count: a task comes back only when its runner did not settle it (crashed, was stopped, or
//! lost NATS past the ack wait). Before running it, the runner reads the dispatcher's record of
//! the task (`warroom-tasks`, key `<cluster>.<request>`, readable by this cluster's runner
//! only): a task whose cluster is already final is acknowledged and not run. When the record
//! cannot be read, the task runs: the dispatcher still ignores a second final result.
//!
//! A follow-up turn is checked the same way against its own record
//! (`<cluster>.<request>.turn-<n>`, [`names::turn_record_key`]): the investigation it follows
//! is always final by then.

use warroom_proto::status::MAX_RUNS;
use warroom_proto::{ClusterPhase, TaskRecord, names};
use warroom_runtime::Bus;

/// What the check decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Run it.
    Run,
    /// Run it, although the dispatcher's record could not be read (the reason).
    RunUnchecked(String),
    /// The cluster is already final: acknowledge and do not run.
    AlreadyFinal(ClusterPhase),
    /// The task came back after [`MAX_RUNS`] runs: fail the cluster instead of running it.
    TooManyRuns,
}

/// Decides on a task (or turn) delivered for the `attempt`-th time, by its record `key` in
/// the tasks bucket ([`names::task_record_key`] or [`names::turn_record_key`]).
pub async fn check(bus: &Bus, key: &str, attempt: u32) -> Verdict {
    let record = bus.read_key::<TaskRecord>(names::TASKS_BUCKET, key).await;
    decide(record.map_err(|e| e.to_string()), attempt)
}

/// The pure decision, from the record (or why it could not be read) and the attempt.
pub fn decide(record: Result<Option<TaskRecord>, String>, attempt: u32) -> Verdict {
    match record {
        Ok(Some(record)) if record.phase.is_final() => Verdict::AlreadyFinal(record.phase),
        _ if attempt > MAX_RUNS => Verdict::TooManyRuns,
        Ok(_) => Verdict::Run,
        Err(cause) => Verdict::RunUnchecked(cause),
    }
}

/// How often a running task's record is read to learn that its request was cancelled: one
/// direct get per running task and interval, the only read a runner's NATS user may make of
/// the bucket. It bounds the time from the dispatcher's cancel to the agent's SIGINT.
pub const CANCEL_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The error of a run stopped because its request was cancelled (`status.json` says who
/// cancelled it and why).
pub const CANCELLED_REASON: &str = "the request was cancelled while the agent ran; the agent \
     was interrupted (SIGINT), then every process of the run was killed";

/// Returns once the record `key` (the task's, or the turn's) says `cancelled`, reading it
/// every `every`. A record that cannot be read is read again at the next interval: only the
/// dispatcher's word cancels.
pub async fn cancelled(bus: &Bus, key: &str, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match bus.read_key::<TaskRecord>(names::TASKS_BUCKET, key).await {
            Ok(Some(record)) if record.phase == ClusterPhase::Cancelled => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(cause = %e, "cannot read the task's record to check for a cancel; trying again")
            }
        }
    }
}

/// Why a task delivered after [`MAX_RUNS`] runs fails instead of running.
pub fn too_many_runs_reason(attempt: u32) -> String {
    format!(
        "not run a {} time: runs are capped at {MAX_RUNS} (one extra run after an interrupted \
         first), and each earlier run was interrupted before it reported a result (its runner \
         crashed, was stopped, or lost NATS for longer than the ack wait)",
        ordinal(attempt)
    )
}

fn ordinal(n: u32) -> String {
    match n {
        1 => "first".to_owned(),
        2 => "second".to_owned(),
        3 => "third".to_owned(),
        n => format!("{n}th"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(phase: ClusterPhase) -> Result<Option<TaskRecord>, String> {
        Ok(Some(TaskRecord {
            phase,
            attempts: 1,
            updated_at: warroom_proto::now(),
        }))
    }

    #[test]
    fn final_clusters_are_not_run_and_a_third_delivery_fails() {
        assert_eq!(decide(Ok(None), 1), Verdict::Run);
        assert_eq!(decide(record(ClusterPhase::Running), 2), Verdict::Run);
        for phase in [
            ClusterPhase::Completed,
            ClusterPhase::Failed,
            ClusterPhase::TimedOut,
            ClusterPhase::Cancelled,
        ] {
            assert_eq!(decide(record(phase), 2), Verdict::AlreadyFinal(phase));
            // Final wins over the cap: nothing to fail.
            assert_eq!(decide(record(phase), 3), Verdict::AlreadyFinal(phase));
        }
        assert_eq!(
            decide(record(ClusterPhase::Running), 3),
            Verdict::TooManyRuns
        );
        assert_eq!(decide(Err("down".into()), 3), Verdict::TooManyRuns);
        assert_eq!(
            decide(Err("no responders".into()), 1),
            Verdict::RunUnchecked("no responders".into())
        );
        assert!(too_many_runs_reason(3).contains("third"));
    }
}
