//! GitHub push webhooks that wake the poller at once (`POST /webhook`).
//!
//! A webhook is only a hint: it makes the next head check happen now instead of at the next
//! interval, and the poll then decides from git alone what is new. So a lost, late or forged
//! delivery can at worst cost or save one head check; it can never make a request run. Still,
//! only deliveries signed with the shared secret (`X-Hub-Signature-256`, an HMAC-SHA256 of the
//! raw body, compared in constant time) wake the poller, bodies are capped at
//! [`MAX_BODY_BYTES`], and a delivery id (`X-GitHub-Delivery`) seen recently wakes nothing
//! again. GitHub's signature does not cover the headers, so the replay check only keeps
//! honest redeliveries from causing extra polls; it is not an authentication.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use warroom_runtime::Chain;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::Metrics;
use crate::config::Secret;

/// The largest delivery accepted; larger ones get 413. GitHub caps push payloads at 25 MB,
/// but a push that large still wakes the poller at its next interval.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How many delivery ids are remembered for the replay check.
const REMEMBERED_DELIVERIES: usize = 1024;

/// The header GitHub signs deliveries in: `sha256=<64 hex digits>`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The header with the delivery's unique id.
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// The header naming the event (`push`, `ping`, ...).
pub const EVENT_HEADER: &str = "x-github-event";

/// Whether `header` is the `X-Hub-Signature-256` of `body` with `secret`. Never panics,
/// whatever the header holds; the comparison takes the same time wherever the first
/// difference is.
pub fn signature_is_valid(secret: &[u8], body: &[u8], header: Option<&[u8]>) -> bool {
    let Some(hex_digest) = header.and_then(|h| h.strip_prefix(b"sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest.trim_ascii()) else {
        return false;
    };
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The last [`REMEMBERED_DELIVERIES`] delivery ids, oldest first out.
#[derive(Debug, Default)]
struct RecentDeliveries {
    order: VecDeque<String>,
    known: HashSet<String>,
}

impl RecentDeliveries {
    /// Remembers `id`; false when it was already remembered.
    fn insert(&mut self, id: &str) -> bool {
        if self.known.contains(id) {
            return false;
        }
        if self.order.len() == REMEMBERED_DELIVERIES
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.known.insert(id.to_owned());
        true
    }
}

#[derive(Clone)]
struct Hook {
    secret: Arc<Secret>,
    wake: Arc<Notify>,
    recent: Arc<Mutex<RecentDeliveries>>,
    metrics: Arc<Metrics>,
}

/// Binds `addr` (an error here stops the gateway: it was asked to listen) and serves
/// `POST /webhook` in the background until `shutdown`. Returns the bound address.
pub(crate) async fn serve(
    addr: SocketAddr,
    secret: Secret,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let hook = Hook {
        secret: Arc::new(secret),
        wake,
        recent: Arc::default(),
        metrics,
    };
    let app = Router::new()
        .route("/webhook", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(hook);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(addr = %bound, cause = %Chain(&e), "the webhook server stopped");
        }
    });
    info!(addr = %bound, "listening for webhooks on POST /webhook");
    Ok(bound)
}

async fn receive(
    State(hook): State<Hook>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (StatusCode, &'static str) {
    hook.metrics.webhook_received.inc();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                hook.metrics.webhook_too_large.inc();
                warn!(
                    limit = MAX_BODY_BYTES,
                    "webhook delivery refused: body too large"
                );
                return (status, "body too large\n");
            }
            warn!(cause = %rejection, "webhook delivery refused: unreadable body");
            return (status, "unreadable body\n");
        }
    };
    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    if !signature_is_valid(hook.secret.expose().as_bytes(), &body, signature) {
        hook.metrics.webhook_rejected.inc();
        warn!(
            signed = signature.is_some(),
            "webhook delivery refused: the X-Hub-Signature-256 does not match the shared secret"
        );
        return (StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    let event = headers
        .get(EVENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let delivery = headers
        .get(DELIVERY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !delivery.is_empty() {
        let new = hook
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(delivery);
        if !new {
            hook.metrics.webhook_replays.inc();
            info!(delivery, event, "webhook delivery seen before; ignored");
            return (StatusCode::OK, "delivery already received\n");
        }
    }
    match event {
        "ping" => {
            info!(delivery, "webhook ping");
            (StatusCode::OK, "pong\n")
        }
        "push" | "" => {
            hook.metrics.webhook_wakes.inc();
            debug!(delivery, "webhook push: waking the poller");
            hook.wake.notify_one();
            (StatusCode::ACCEPTED, "polling now\n")
        }
        other => {
            debug!(delivery, event = other, "webhook event ignored");
            (StatusCode::ACCEPTED, "event ignored\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn githubs_documented_example_verifies() {
        // The example of GitHub's "Validating webhook deliveries" page.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_is_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(header.as_bytes())
        ));
        assert!(!signature_is_valid(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            Some(header.as_bytes())
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = sign(b"k", b"body");
        for header in [
            "",
            "sha256=",
            "sha1=abc",
            &good.replace("sha256=", "sha512="),
            &good[..good.len() - 2],
            &format!("{good}00"),
            "sha256=zz",
        ] {
            assert!(
                !signature_is_valid(b"k", b"body", Some(header.as_bytes())),
                "{header}"
            );
        }
        assert!(!signature_is_valid(b"k", b"body", None));
        assert!(signature_is_valid(b"k", b"body", Some(good.as_bytes())));
    }

    #[test]
    fn recent_deliveries_are_bounded() {
        let mut recent = RecentDeliveries::default();
        assert!(recent.insert("a"));
        assert!(!recent.insert("a"));
        for i in 0..REMEMBERED_DELIVERIES {
            recent.insert(&i.to_string());
        }
        assert_eq!(recent.order.len(), REMEMBERED_DELIVERIES);
        assert_eq!(recent.known.len(), REMEMBERED_DELIVERIES);
        // The oldest was forgotten.
        assert!(recent.insert("a"));
    }

    proptest::proptest! {
        #[test]
        fn the_signature_check_never_panics_and_accepts_only_the_right_mac(
            secret in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            header in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)),
            flip in proptest::prelude::any::<usize>(),
        ) {
            // Arbitrary headers are refused (a random one matching is 2^-256).
            proptest::prop_assert!(!signature_is_valid(&secret, &body, header.as_deref()));
            let good = sign(&secret, &body);
            proptest::prop_assert!(signature_is_valid(&secret, &body, Some(good.as_bytes())));
            // Any changed byte of the body is refused.
            if !body.is_empty() {
                let mut changed = body.clone();
                let i = flip % changed.len();
                changed[i] ^= 0x01;
                proptest::prop_assert!(!signature_is_valid(&secret, &changed, Some(good.as_bytes())));
            }
        }
    }
}
