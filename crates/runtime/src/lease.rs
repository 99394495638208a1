//! Leases in a key-value bucket: one active replica of a daemon at a time, the others on
//! standby, taking over when the active one stops or dies.
//!
//! A lease is a key in [`names::LEASES_BUCKET`], whose maximum age is the lease's time to
//! live: the holder creates the key (`create` fails while someone holds it) and renews it
//! with compare-and-set every third of the TTL; a crashed holder's key ages out, and a
//! standby's next `create` wins. A holder that cannot renew for two thirds of the TTL stops
//! its work before anyone else can take over, so two holders never work at once as long as
//! their clocks run at about the same rate. A clean stop deletes the key, so the standby
//! takes over at once.

use crate::Chain;
use std::time::Duration;

use async_nats::jetstream::kv;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use warroom_proto::names;

use crate::Bus;
use crate::bus::{BusError, Result};
use crate::metrics::RuntimeMetrics;

/// Which lease, held by whom, for how long.
#[derive(Debug, Clone)]
pub struct LeaseSpec {
    /// The key, e.g. [`names::DISPATCHER_LEASE`].
    pub key: &'static str,
    /// Who asks: unique per replica (its pod name, or a random id).
    pub holder: String,
    /// How long a lease lasts without renewal. Every replica of a deployment must use the
    /// same value: the bucket is created with the first one.
    pub ttl: Duration,
}

/// A lease this replica holds. Its work runs under [`Held::token`], which is cancelled when
/// the lease is lost (or the daemon stops).
#[derive(Debug)]
pub struct Held {
    token: CancellationToken,
    renewal: tokio::task::JoinHandle<()>,
    store: kv::Store,
    spec: LeaseSpec,
}

impl Bus {
    /// The leases bucket, created with `ttl` as its maximum age when it does not exist.
    pub async fn leases(&self, ttl: Duration) -> Result<kv::Store> {
        let store = self
            .bucket_with(kv::Config {
                bucket: names::LEASES_BUCKET.to_owned(),
                description: "claude-warroom: which replica of a daemon is active".to_owned(),
                history: 1,
                max_age: ttl,
                ..Default::default()
            })
            .await?;
        Ok(store)
    }
}

/// Waits until this replica holds the lease, or `stop` is cancelled (`None`). A key holding
/// this very holder's name (it restarted before its lease ran out) is taken over at once.
pub async fn acquire(bus: &Bus, spec: LeaseSpec, stop: &CancellationToken) -> Result<Option<Held>> {
    let store = bus.leases(spec.ttl).await?;
    let pause = spec.ttl / 3;
    let mut announced = false;
    loop {
        match try_take(&store, &spec).await {
            Ok(Some(revision)) => {
                info!(lease = spec.key, holder = %spec.holder, "lease acquired: this replica is active");
                let token = stop.child_token();
                let renewal =
                    tokio::spawn(renew(store.clone(), spec.clone(), revision, token.clone()));
                return Ok(Some(Held {
                    token,
                    renewal,
                    store,
                    spec,
                }));
            }
            Ok(None) => {
                if !announced {
                    info!(lease = spec.key, holder = %spec.holder, "another replica holds the lease; standing by");
                    announced = true;
                }
            }
            Err(e) => {
                warn!(lease = spec.key, cause = %Chain(&e), "cannot read the lease; trying again")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Takes the lease if nobody (else) holds it; the key's revision when taken.
async fn try_take(store: &kv::Store, spec: &LeaseSpec) -> Result<Option<u64>> {
    let value = spec.holder.clone().into_bytes();
    match store.create(spec.key, value.clone().into()).await {
        Ok(revision) => return Ok(Some(revision)),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
        Err(e) => return Err(lease_error(spec, e)),
    }
    let Some(entry) = store
        .entry(spec.key)
        .await
        .map_err(|e| lease_error(spec, e))?
    else {
        return Ok(None);
    };
    if entry.value.as_ref() != value.as_slice() {
        return Ok(None);
    }
    // Our own lease, from before a restart: renew it rather than wait for it to run out.
    match store.update(spec.key, value.into(), entry.revision).await {
        Ok(revision) => Ok(Some(revision)),
        Err(_) => Ok(None),
    }
}

fn lease_error(spec: &LeaseSpec, e: impl std::error::Error + Send + Sync + 'static) -> BusError {
    BusError::Bucket {
        name: format!("{} (lease {})", names::LEASES_BUCKET, spec.key),
        source: Box::new(e).into(),
    }
}

/// Renews the lease until `token` is cancelled; cancels `token` when the lease is lost.
async fn renew(store: kv::Store, spec: LeaseSpec, mut revision: u64, token: CancellationToken) {
    let every = spec.ttl / 3;
    // Past this without a renewal, another replica may take over soon: stop first.
    let give_up = spec.ttl * 2 / 3;
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let value = spec.holder.clone().into_bytes();
        // A renewal may hang (the client waits out its request timeout while disconnected):
        // it may not outlast the moment this holder must stop.
        let update = store.update(spec.key, value.clone().into(), revision);
        let Ok(outcome) = tokio::time::timeout_at(renewed + give_up, update).await else {
            warn!(
                lease = spec.key,
                "the lease could not be renewed in time; stopping work before another replica takes over"
            );
            token.cancel();
            return;
        };
        match outcome {
            Ok(next) => {
                revision = next;
                renewed = Instant::now();
                debug!(lease = spec.key, revision, "lease renewed");
                continue;
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Someone else's now, or it ran out and may still be free.
                let retake = tokio::time::timeout_at(renewed + give_up, try_take(&store, &spec));
                if let Ok(Ok(Some(next))) = retake.await {
                    warn!(lease = spec.key, "the lease had run out; taken again");
                    revision = next;
                    renewed = Instant::now();
                    continue;
                }
                warn!(lease = spec.key, holder = %spec.holder, "lease lost to another replica; stopping work");
                token.cancel();
                return;
            }
            Err(e) => {
                warn!(lease = spec.key, cause = %Chain(&e), "cannot renew the lease");
            }
        }
        if renewed.elapsed() >= give_up {
            warn!(
                lease = spec.key,
                "the lease could not be renewed in time; stopping work before another replica takes over"
            );
            token.cancel();
            return;
        }
    }
}

/// Runs `work` whenever this replica holds the lease `spec`, until `stop`: waits for the
/// lease, runs `work` under the lease's token (cancelled when the lease is lost or at
/// `stop`), gives the lease up, and stands by again if it was lost. Sets
/// [`RuntimeMetrics::active`] of `metrics` (1 while working). Returns `work`'s first error.
pub async fn while_held<F, Fut, E>(
    bus: &Bus,
    spec: LeaseSpec,
    stop: &CancellationToken,
    metrics: &RuntimeMetrics,
    mut work: F,
) -> std::result::Result<(), E>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), E>>,
    E: From<BusError>,
{
    metrics.active.set(0);
    while let Some(held) = acquire(bus, spec.clone(), stop).await? {
        metrics.active.set(1);
        let outcome = work(held.token()).await;
        metrics.active.set(0);
        let lost = held.is_lost() && !stop.is_cancelled();
        held.release().await;
        outcome?;
        if !lost {
            break;
        }
        warn!(lease = spec.key, "this replica lost its lease; standing by");
    }
    Ok(())
}

impl Drop for Held {
    /// A holder dropped without [`Held::release`] (its daemon's task was aborted) stops
    /// renewing, and the work under its token stops; the lease then runs out after its TTL,
    /// as if the process had died.
    fn drop(&mut self) {
        self.renewal.abort();
        self.token.cancel();
    }
}

impl Held {
    /// Cancelled when the lease is lost or the daemon stops: the active replica's work runs
    /// under it.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether the lease was lost (rather than the daemon stopped).
    pub fn is_lost(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Stops renewing and gives the lease up, so a standby takes over at once.
    pub async fn release(mut self) {
        self.renewal.abort();
        let _ = (&mut self.renewal).await;
        match self.store.entry(self.spec.key).await {
            Ok(Some(entry)) if entry.value.as_ref() == self.spec.holder.as_bytes() => {
                if let Err(e) = self.store.delete(self.spec.key).await {
                    warn!(lease = self.spec.key, cause = %Chain(&e), "cannot release the lease; it runs out by itself");
                } else {
                    info!(lease = self.spec.key, "lease released");
                }
            }
            _ => {}
        }
    }
}
