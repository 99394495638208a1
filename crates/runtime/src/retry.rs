//! The one retry policy of the daemons and the runtime (stream set-up included): exponential
//! backoff with jitter and a bounded number of attempts (the `backon` crate), and a pause
//! between attempts that ends at shutdown; [`delay`] gives the same pauses, unjittered, for
//! retries the server schedules (a nak's delay).
//!
//! A daemon retries an operation with `(|| op()).retry(retry::backoff(..)).sleep(
//! retry::until(shutdown.clone())).when(|_| !shutdown.is_cancelled())`: the pause ends when
//! shutdown is asked for, and no further attempt is started after it.

use std::future::Future;
use std::time::Duration;

pub use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

/// Waits `first` before the first retry, doubling up to `max`, for at most `retries`
/// retries; each pause is jittered so that replicas failing together do not retry together.
pub fn backoff(first: Duration, max: Duration, retries: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_max_times(retries)
        .with_jitter()
}

/// The pause before retry number `retry` (1 for the first) of the policy without jitter, for
/// retries the server schedules (a nak's delay chosen from the delivery count); `max` past
/// the end.
pub fn delay(first: Duration, max: Duration, retry: usize) -> Duration {
    // Doubling reaches any `max` long before 64 steps; the cap keeps `nth` from walking an
    // endless iterator for a huge delivery count.
    let step = retry.clamp(1, 64) - 1;
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(max)
        .without_max_times()
        .build()
        .nth(step)
        .unwrap_or(max)
        .min(max)
}

/// A sleeper for `backon`'s `.sleep(..)`: the pause ends early when `shutdown` is cancelled.
pub fn until(
    shutdown: CancellationToken,
) -> impl Fn(Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static
{
    move |pause| {
        let shutdown = shutdown.clone();
        Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => {}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn server_scheduled_delays_double_up_to_the_limit() {
        let (first, max) = (Duration::from_secs(2), Duration::from_secs(30));
        assert_eq!(delay(first, max, 0), first);
        assert_eq!(delay(first, max, 1), first);
        assert_eq!(delay(first, max, 2), first * 2);
        assert_eq!(delay(first, max, 3), first * 4);
        assert_eq!(delay(first, max, 100), max);
        assert_eq!(delay(first, max, usize::MAX), max);
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let calls = AtomicUsize::new(0);
        let result: Result<(), &str> = (|| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err("no")
        })
        .retry(backoff(
            Duration::from_millis(10),
            Duration::from_millis(50),
            3,
        ))
        .sleep(until(CancellationToken::new()))
        .await;
        assert_eq!(result, Err("no"));
        assert_eq!(
            calls.load(Ordering::Relaxed),
            4,
            "one attempt and three retries"
        );
    }

    #[tokio::test]
    async fn shutdown_ends_the_pause_and_the_retries() {
        let shutdown = CancellationToken::new();
        let calls = AtomicUsize::new(0);
        let started = std::time::Instant::now();
        let result: Result<(), &str> = (|| async {
            if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                shutdown.cancel();
            }
            Err("no")
        })
        .retry(backoff(Duration::from_secs(60), Duration::from_secs(60), 5))
        .sleep(until(shutdown.clone()))
        .when(|_| !shutdown.is_cancelled())
        .await;
        assert_eq!(result, Err("no"));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_pause_ends_at_shutdown() {
        let shutdown = CancellationToken::new();
        let sleep = until(shutdown.clone());
        let pause = sleep(Duration::from_secs(3600));
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), pause)
            .await
            .expect("the pause ended at shutdown");
    }
}
