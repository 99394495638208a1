//! The replica's heartbeat: every [`HEARTBEAT_INTERVAL`] a [`RunnerHeartbeat`] in the runners
//! bucket under `<cluster>.<replica>`, from a task of its own, so a replica whose every slot
//! runs a long investigation still counts as live for the dispatcher. The bucket removes a
//! heartbeat [`warroom_proto::wire::HEARTBEAT_TTL`] after it was written; at shutdown the
//! replica deletes its own at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use warroom_runtime::Chain;

use async_nats::jetstream::kv;
use tracing::{debug, info, warn};
use warroom_proto::wire::HEARTBEAT_INTERVAL;
use warroom_proto::{RunnerHeartbeat, names};
use warroom_runtime::Bus;
use warroom_runtime::shutdown::CancellationToken;

use crate::Metrics;

/// How long one write (or the delete at shutdown) may take before it is given up for this
/// round.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Writes `record` (with `running` and the time filled in) every [`HEARTBEAT_INTERVAL`] until
/// `stop`, then deletes it. Never fails: a write that fails is logged, counted and tried
/// again at the next beat (the bucket may not exist yet on a locked-down server, where only
/// the dispatcher creates it).
pub async fn beat(
    bus: Bus,
    mut record: RunnerHeartbeat,
    running: Arc<AtomicU32>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let key = names::heartbeat_key(&record.cluster, &record.replica);
    let mut bucket: Option<kv::Store> = None;
    let mut failing = false;
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        record.running = running.load(Ordering::Relaxed);
        record.at = warroom_proto::now();
        match write(&bus, &mut bucket, &key, &record).await {
            Ok(()) => {
                metrics
                    .heartbeat_timestamp_seconds
                    .set(record.at.unix_timestamp());
                if failing {
                    info!(key = %key, "heartbeats are written again");
                }
                failing = false;
            }
            Err(cause) => {
                metrics.heartbeat_errors.inc();
                if failing {
                    debug!(key = %key, %cause, "heartbeat still not written");
                } else {
                    warn!(key = %key, %cause, "cannot write the heartbeat; trying again at every beat");
                }
                failing = true;
            }
        }
    }
    // Gone at once rather than after the TTL, so the dispatcher stops counting this replica.
    if let Some(bucket) = bucket {
        match tokio::time::timeout(WRITE_TIMEOUT, bucket.delete(&key)).await {
            Ok(Ok(())) => debug!(key = %key, "heartbeat removed"),
            Ok(Err(e)) => {
                warn!(key = %key, cause = %Chain(&e), "cannot remove the heartbeat; it expires by itself")
            }
            Err(_) => warn!(key = %key, "removing the heartbeat timed out; it expires by itself"),
        }
    }
}

/// One heartbeat: opens the bucket first when it is not open yet.
async fn write(
    bus: &Bus,
    bucket: &mut Option<kv::Store>,
    key: &str,
    record: &RunnerHeartbeat,
) -> Result<(), String> {
    let store = match bucket {
        Some(store) => store,
        None => {
            let opened = tokio::time::timeout(WRITE_TIMEOUT, bus.runners_bucket())
                .await
                .map_err(|_| "opening the runners bucket timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            bucket.insert(opened)
        }
    };
    let value = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    tokio::time::timeout(WRITE_TIMEOUT, store.put(key, value.into()))
        .await
        .map_err(|_| "the write timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(())
}
