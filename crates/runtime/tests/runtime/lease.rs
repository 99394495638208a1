//! Leases (`warroom_runtime::lease`): one holder at a time, take-over when the holder stops
//! or dies, and a holder that cannot renew stops before anyone else can take over.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;
use warroom_runtime::lease::{Held, LeaseSpec, acquire, while_held};
use warroom_runtime::{Bus, BusError, RuntimeMetrics};
use warroom_testkit::{NatsServer, wait_for, wait_until};

use crate::{DEADLINE, bus};

const KEY: &str = "test-lease";

fn spec(holder: &str, ttl: Duration) -> LeaseSpec {
    LeaseSpec {
        key: KEY,
        holder: holder.to_owned(),
        ttl,
    }
}

/// The holder named in the lease key and its revision; `None` when nobody holds it.
async fn holder(store: &kv::Store) -> Option<(String, u64)> {
    let entry = store.entry(KEY).await.expect("read the lease key")?;
    if entry.operation != kv::Operation::Put {
        return None;
    }
    Some((
        String::from_utf8_lossy(&entry.value).into_owned(),
        entry.revision,
    ))
}

async fn take(bus: &Bus, holder: &str, ttl: Duration) -> Held {
    tokio::time::timeout(
        DEADLINE,
        acquire(bus, spec(holder, ttl), &CancellationToken::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("{holder} did not get the lease within {DEADLINE:?}"))
    .unwrap_or_else(|e| panic!("{holder} could not ask for the lease: {e:?}"))
    .unwrap_or_else(|| panic!("{holder} was stopped before it got the lease"))
}

/// While the first replica holds the lease and renews it, a second stands by; when the
/// first releases it (a clean stop), its key is deleted at once and the second takes over.
///
/// Fails if `create` is replaced by a plain `put` (two holders at once), if the holder stops
/// renewing (the standby would take over while it works), or if `release` leaves the key
/// to run out instead of deleting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_waits_while_held_and_takes_over_on_release() {
    let ttl = Duration::from_secs(3);
    let server = NatsServer::start().await;
    let bus = bus(&server, "lease-release").await;
    let store = bus.leases(ttl).await.expect("leases bucket");
    let first = take(&bus, "first", ttl).await;
    let (name, taken) = holder(&store).await.expect("the first holds the key");
    assert_eq!(name, "first");

    let stop_second = CancellationToken::new();
    let second = {
        let bus = bus.clone();
        let stop = stop_second.clone();
        tokio::spawn(async move { acquire(&bus, spec("second", ttl), &stop).await })
    };
    // Two renewals span more than one TTL: had the first stopped renewing, the key would
    // have run out and the second would have it.
    wait_until("the first renews its lease twice", DEADLINE, || async {
        holder(&store).await.is_some_and(|(name, revision)| {
            assert_eq!(
                name, "first",
                "the lease changed hands while the first held it"
            );
            revision >= taken + 2
        })
    })
    .await;
    assert!(
        !second.is_finished(),
        "the second stands by while the first holds the lease"
    );
    assert!(!first.is_lost(), "the first still holds the lease");

    first.release().await;
    assert_eq!(
        holder(&store).await,
        None,
        "release deletes the key at once rather than let it run out"
    );
    let second = tokio::time::timeout(DEADLINE, second)
        .await
        .expect("the second took over within the deadline")
        .expect("the second's task finished")
        .expect("the second could ask for the lease")
        .expect("the second got the lease, not a stop");
    assert_eq!(
        holder(&store).await.map(|(name, _)| name).as_deref(),
        Some("second")
    );
    assert!(!second.is_lost());
    stop_second.cancel();
}

/// Two replicas run `while_held`: only the first works (gauge `active` 1, the other's 0);
/// when the first is stopped, its work is cancelled, `while_held` returns, and the second
/// starts working.
///
/// Fails if `while_held` runs the work without the lease, does not cancel the work at stop,
/// or keeps the lease after it returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_held_runs_one_worker_and_hands_over_at_stop() {
    let ttl = Duration::from_secs(3);
    let server = NatsServer::start().await;
    let bus = bus(&server, "lease-while-held").await;
    let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let replica = |name: &'static str, stop: CancellationToken, metrics: RuntimeMetrics| {
        let bus = bus.clone();
        let started = started.clone();
        tokio::spawn(async move {
            while_held(&bus, spec(name, ttl), &stop, &metrics, |token| {
                let started = started.clone();
                async move {
                    started.send(name).expect("the test listens");
                    token.cancelled().await;
                    Ok::<(), BusError>(())
                }
            })
            .await
        })
    };
    let (stop_a, metrics_a) = (CancellationToken::new(), RuntimeMetrics::default());
    let a = replica("a", stop_a.clone(), metrics_a.clone());
    assert_eq!(
        tokio::time::timeout(DEADLINE, started_rx.recv())
            .await
            .expect("a worker started"),
        Some("a")
    );
    let (stop_b, metrics_b) = (CancellationToken::new(), RuntimeMetrics::default());
    let b = replica("b", stop_b.clone(), metrics_b.clone());
    let store = bus.leases(ttl).await.expect("leases bucket");
    let (_, taken) = holder(&store).await.expect("a holds the key");
    wait_until(
        "a renews its lease twice while b stands by",
        DEADLINE,
        || async {
            holder(&store)
                .await
                .is_some_and(|(name, revision)| name == "a" && revision >= taken + 2)
        },
    )
    .await;
    assert!(
        started_rx.try_recv().is_err(),
        "b did not start working while a held the lease"
    );
    assert_eq!(metrics_a.active.get(), 1);
    assert_eq!(metrics_b.active.get(), 0);

    stop_a.cancel();
    tokio::time::timeout(DEADLINE, a)
        .await
        .expect("a's while_held returned after its stop")
        .expect("a's task finished")
        .expect("a's while_held succeeded");
    assert_eq!(metrics_a.active.get(), 0);
    assert_eq!(
        tokio::time::timeout(DEADLINE, started_rx.recv())
            .await
            .expect("b's worker started"),
        Some("b")
    );
    assert_eq!(metrics_b.active.get(), 1);
    stop_b.cancel();
    tokio::time::timeout(DEADLINE, b)
        .await
        .expect("b's while_held returned after its stop")
        .expect("b's task finished")
        .expect("b's while_held succeeded");
}

/// A holder whose task is dropped without releasing (a killed pod) stops its work at once
/// but leaves its key; the key runs out after the TTL and the standby takes over then.
///
/// Fails if dropping a `Held` neither stops its renewal nor cancels its token: the key would
/// be renewed for ever (the standby would never take over) and the work would go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holder_is_taken_over_after_its_ttl() {
    let ttl = Duration::from_secs(2);
    let server = NatsServer::start().await;
    let bus = bus(&server, "lease-dead").await;
    let store = bus.leases(ttl).await.expect("leases bucket");
    let first = take(&bus, "first", ttl).await;
    let work = first.token();
    let second = {
        let bus = bus.clone();
        tokio::spawn(
            async move { acquire(&bus, spec("second", ttl), &CancellationToken::new()).await },
        )
    };
    drop(first);
    assert!(
        work.is_cancelled(),
        "the dead holder's work is cancelled with it"
    );
    assert_eq!(
        holder(&store).await.map(|(name, _)| name).as_deref(),
        Some("first"),
        "a holder that died did not release its key"
    );
    let second = tokio::time::timeout(DEADLINE, second)
        .await
        .expect("the second took over once the dead holder's key ran out")
        .expect("the second's task finished")
        .expect("the second could ask for the lease")
        .expect("the second got the lease");
    assert_eq!(
        holder(&store).await.map(|(name, _)| name).as_deref(),
        Some("second")
    );
    drop(second);
}

/// A holder that cannot reach the server stops its work before its key can run out, that
/// is within the TTL of its last renewal; only then could a standby take over.
///
/// Fails if the holder goes on working without renewals, or if a renewal that hangs (the
/// client waits out its request timeout while disconnected) pushes the stop past the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_cannot_renew_stops_within_its_ttl() {
    // Long enough that the margin between giving up (two thirds) and running out (all of
    // it) is two seconds, and short enough that a renewal hanging for the client's 5 s
    // request timeout goes past it.
    let ttl = Duration::from_secs(6);
    let mut server = NatsServer::start().await;
    let bus = bus(&server, "lease-cut-off").await;
    let store = bus.leases(ttl).await.expect("leases bucket");
    let held = take(&bus, "holder", ttl).await;
    let work = held.token();
    let (_, taken) = holder(&store).await.expect("the holder holds the key");
    // The moment of a renewal, observed right after it: the key runs out a TTL later.
    let renewed = wait_for("the holder renews its lease", DEADLINE, || async {
        holder(&store)
            .await
            .filter(|(_, revision)| *revision > taken)
            .map(|_| Instant::now())
    })
    .await;
    server.stop().await;
    wait_until("the cut-off holder stops its work", DEADLINE, || async {
        work.is_cancelled()
    })
    .await;
    let stopped_after = renewed.elapsed();
    assert!(
        stopped_after < ttl,
        "the holder stopped working {stopped_after:?} after its last renewal; its key ran out \
         after {ttl:?}, so a standby could have taken over while it still worked"
    );
    assert!(held.is_lost());
}
