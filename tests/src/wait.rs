//! Waiting on a condition with a deadline: how every test synchronises, instead of sleeping.
//!
//! Each function polls a check every few milliseconds until it succeeds, and panics with the
//! description (and, where there is one, the last value observed) once the deadline passes.
//! A check that itself hangs, such as a request nobody answers, is cut off at the deadline
//! too, so a wait never outlives it.
//!
//! ```no_run
//! # async fn example(kv: async_nats::jetstream::kv::Store) {
//! use warroom_testkit::{DEFAULT_TIMEOUT, wait_for};
//! let value = wait_for("key `a` appears in the bucket", DEFAULT_TIMEOUT, || async {
//!     kv.get("a").await.ok().flatten()
//! })
//! .await;
//! # }
//! ```

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::{Duration, Instant};

/// A deadline that suits most waits in tests: long enough for a loaded two-core CI machine,
/// short enough that a hung test fails well before the test runner's own timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The pause between two checks; short, because checks against local servers are cheap.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Some(value)` and returns that value. Panics with
/// `description` if that has not happened within `timeout`.
pub async fn wait_for<T, F, Fut>(description: impl Display, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(description, timeout, || {
        let next = check();
        async move { next.await.ok_or(None) }
    })
    .await
}

/// Polls `check` until it returns `true`. Panics with `description` if that has not
/// happened within `timeout`.
pub async fn wait_until<F, Fut>(description: impl Display, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(description, timeout, || {
        let next = check();
        async move { if next.await { Ok(()) } else { Err(None) } }
    })
    .await;
}

/// Polls `check` until it returns `Ok(value)` and returns that value. Panics with
/// `description` and the last `Err` observed if that has not happened within `timeout`:
/// return what you saw as the error (the current state, the error of a request) so that a
/// timeout explains itself.
pub async fn wait_for_ok<T, E, F, Fut>(
    description: impl Display,
    timeout: Duration,
    mut check: F,
) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    poll(description, timeout, || {
        let next = check();
        async move { next.await.map_err(|err| Some(format!("{err:?}"))) }
    })
    .await
}

/// The loop behind every wait: `Err(Some(seen))` means "not yet, and this is what I saw".
async fn poll<T, F, Fut>(description: impl Display, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Option<String>>>,
{
    // Wall-clock time, not tokio's: with a paused tokio clock the deadline must still mean
    // real time, because the servers we wait on run in real time.
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0_u32;
    let mut last_seen: Option<String> = None;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(seen)) => {
                if seen.is_some() {
                    last_seen = seen;
                }
            }
            Err(_) => {
                panic!(
                    "timed out after {:.1?} waiting for: {description} (the check itself did \
                     not finish before the deadline; {attempts} attempts{})",
                    start.elapsed(),
                    last_seen_suffix(last_seen.as_deref())
                );
            }
        }
        if Instant::now() + POLL_INTERVAL > deadline {
            panic!(
                "timed out after {:.1?} waiting for: {description} ({attempts} attempts{})",
                start.elapsed(),
                last_seen_suffix(last_seen.as_deref())
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn last_seen_suffix(last_seen: Option<&str>) -> String {
    last_seen.map_or_else(String::new, |seen| format!("; last observed: {seen}"))
}
