//! The gateway: git -> NATS.
//!
//! It follows one branch of a git remote. Every poll interval it asks the remote where the
//! branch points (`git ls-remote`, one round trip) and fetches into its bare mirror only when
//! that moved. It then looks at the request files added under `requests/pending/` since the
//! last processed commit, the cursor, which it keeps in the NATS key-value bucket
//! [`names::GATEWAY_BUCKET`] so that a restart neither re-runs nor skips anything. Each file
//! is validated ([`warroom_proto::parse_request`]) and checked against the secure zone's
//! policy; an accepted request is published on `warroom.requests.<id>` (deduplicated by its
//! id), a refused one as a `rejected` status on `warroom.status.<id>`, which the publisher
//! writes into `results/<id>/status.json`. The cursor moves only after every file of the
//! range was published and acknowledged. The same bucket keeps, per accepted request, the
//! git object id of the accepted file: a later version of that file, or a new file reusing
//! the id, is never run (it is logged and counted).
//!
//! A signed GitHub push webhook (`--webhook-addr`, [`webhook`]) wakes the poll loop at once;
//! polling stays the source of truth.
//!
//! Without a cursor (the first start), or when the branch was force-pushed so that the
//! cursor is no longer an ancestor of the head, every request file present at the head whose
//! `results/<id>/status.json` does not exist yet is published.

mod asks;
mod cancels;
mod config;
mod metrics;
mod mirror;
mod scan;
pub mod webhook;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warroom_runtime::Chain;

use async_nats::jetstream::kv;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};
use warroom_access::{PolicyWatcher, Reload};
use warroom_git::CommitId;
use warroom_proto::names;
use warroom_runtime::{Bus, BusError};

pub use config::{Config, MIN_POLL_INTERVAL, Secret, Settings, parse_interval};
pub use metrics::{Health, Metrics, RefusalLabels};

use crate::config::Trust;
use crate::mirror::Mirror;
use crate::scan::{Range, Scanner};
use warroom_runtime::config::short_hash;

/// How long a poll in flight may take to finish once shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How many old cursor values the bucket keeps, for looking back when debugging.
const CURSOR_HISTORY: i64 = 5;

/// What can stop the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(warroom_runtime::config::InvalidConfig),
    #[error(transparent)]
    Git(#[from] warroom_git::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot {action} the cursor `{key}` in bucket {bucket}", bucket = names::GATEWAY_BUCKET)]
    Cursor {
        action: &'static str,
        key: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {action} the record `{key}` in bucket {bucket}", bucket = names::GATEWAY_BUCKET)]
    Record {
        action: &'static str,
        key: String,
        #[source]
        source: BoxError,
    },
    #[error("the policy file cannot be used, so the gateway does not start:\n{0}")]
    Policy(String),
    #[error("cannot verify the signatures of {file}")]
    Verify {
        file: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot listen for webhooks on {addr}")]
    Webhook {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("cannot create the work directory {path}")]
    WorkDir {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause of an error whose sources differ in type (a KV read or write, a task).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Runs the gateway until `shutdown` resolves, reporting readiness and [`Metrics`] into
/// `health` (which tests and an embedding process can read).
pub async fn run(
    settings: Settings,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shutdown = warroom_runtime::shutdown::token(shutdown);
    // The policy is checked before anything connects: a gateway told to use a policy it
    // cannot read must not run requests at all.
    let policy = load_policy(&settings).await?;
    health.spawn_server(
        settings.common.health_addr,
        shutdown.clone().cancelled_owned(),
    );
    let wake = Arc::new(Notify::new());
    if let Some((addr, secret)) = &settings.webhook {
        webhook::serve(
            *addr,
            secret.clone(),
            Arc::clone(&wake),
            Arc::clone(&health.metrics),
            shutdown.clone().cancelled_owned(),
        )
        .await
        .map_err(|source| Error::Webhook {
            addr: *addr,
            source,
        })?;
    }
    info!(
        repo = %settings.repo,
        branch = %settings.branch,
        interval_ms = settings.poll_interval.as_millis() as u64,
        work_dir = %settings.work_dir.display(),
        allowed_clusters = ?settings.allowed_clusters,
        verified = policy.is_some(),
        webhook = ?settings.webhook.as_ref().map(|(addr, _)| addr),
        "gateway starting"
    );
    let mut gateway = tokio::select! {
        gateway = Gateway::connect(settings, health.clone(), policy) => gateway?,
        () = shutdown.cancelled() => {
            info!("shutdown before the gateway was connected");
            return Ok(());
        }
    };
    gateway.poll_until(&shutdown, &wake).await;
    health.set_ready(false);
    info!("gateway stopped");
    Ok(())
}

/// The policy the gateway enforces, read and prepared for verification; `None` without one
/// (`--insecure-allow-unsigned`), which is logged as the risk it is.
async fn load_policy(settings: &Settings) -> Result<Option<Arc<Mutex<PolicyWatcher>>>> {
    let policy = match &settings.trust {
        Trust::Policy(path) => {
            let path = path.clone();
            let watcher = tokio::task::spawn_blocking(move || PolicyWatcher::load(path))
                .await
                .map_err(|e| Error::Policy(e.to_string()))?
                .map_err(|e| Error::Policy(Chain(&e).to_string()))?;
            info!(
                policy = %watcher.path().display(),
                sha256 = %watcher.hash_hex(),
                engineers = watcher.policy().engineers.len(),
                "policy loaded: requests run only when signed by their engineer"
            );
            Some(Arc::new(Mutex::new(watcher)))
        }
        Trust::Unsigned => {
            warn!(
                "INSECURE: running without a policy (--insecure-allow-unsigned): every valid \
                 request runs, and nothing checks who wrote it; anyone who can push to the \
                 repository can run investigations"
            );
            None
        }
    };
    if settings.ignores_insecure_flag {
        warn!("--insecure-allow-unsigned has no effect: a --policy is given and is enforced");
    }
    Ok(policy)
}

/// The running gateway's state.
struct Gateway {
    settings: Settings,
    bus: Bus,
    bucket: kv::Store,
    mirror: Mirror,
    health: Health,
    cursor_key: String,
    /// The last commit whose added request files were all published.
    cursor: Option<CommitId>,
    /// Whether the missing branch was already reported, so it is logged once, not per poll.
    branch_missing: bool,
    /// The policy in use and its file, read again at every poll; `None` without a policy.
    policy: Option<Arc<Mutex<PolicyWatcher>>>,
}

impl Gateway {
    /// Connects to NATS, opens the cursor's bucket and the mirror, and loads the cursor.
    async fn connect(
        settings: Settings,
        health: Health,
        policy: Option<Arc<Mutex<PolicyWatcher>>>,
    ) -> Result<Gateway> {
        let bus = Bus::connect(&settings.common.connection(), "warroom-gateway").await?;
        let bucket = bus.bucket(names::GATEWAY_BUCKET, CURSOR_HISTORY).await?;
        let mirror = Mirror::open(
            &settings.work_dir,
            &settings.repo,
            &settings.branch,
            settings.token.as_ref().map(|t| t.as_ref().clone()),
        )
        .await?;
        let mut gateway = Gateway {
            branch_missing: false,
            cursor_key: cursor_key(&settings.branch),
            cursor: None,
            settings,
            bus,
            bucket,
            mirror,
            health,
            policy,
        };
        gateway.cursor = gateway.load_cursor().await?;
        info!(cursor = gateway.cursor.as_deref().unwrap_or("none"), key = %gateway.cursor_key, "cursor loaded");
        Ok(gateway)
    }

    /// Polls at every interval, or at once when `wake` (a webhook) says so, until
    /// `shutdown`; a poll in flight then gets [`SHUTDOWN_GRACE`] to finish.
    async fn poll_until(
        &mut self,
        shutdown: &warroom_runtime::shutdown::CancellationToken,
        wake: &Notify,
    ) {
        let health = self.health.clone();
        let mut ticker = tokio::time::interval(self.settings.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                () = wake.notified() => {
                    debug!("woken by a webhook");
                    // The next regular poll is a full interval after this one.
                    ticker.reset();
                }
            }
            let poll = self.poll();
            tokio::pin!(poll);
            let result = tokio::select! {
                result = &mut poll => result,
                () = shutdown.cancelled() => {
                    // Let the poll in flight finish, so that what it published is also recorded
                    // in the cursor. Cutting it off is safe too (the range is scanned again and
                    // deduplicated), only noisier.
                    match tokio::time::timeout(SHUTDOWN_GRACE, &mut poll).await {
                        Ok(result) => result,
                        Err(_) => {
                            warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "the poll in flight did not finish within the grace period; it will be redone at the next start");
                            break;
                        }
                    }
                }
            };
            match result {
                Ok(()) => {
                    health.set_ready(true);
                    // The alert on a gateway that stopped polling reads it (deploy/METRICS.md).
                    health
                        .metrics
                        .last_poll_timestamp_seconds
                        .set(warroom_proto::now().unix_timestamp());
                }
                Err(e) => {
                    health.metrics.poll_errors.inc();
                    health.set_ready(false);
                    error!(cause = %Chain(&e), "poll failed; retrying at the next interval");
                }
            }
        }
    }

    /// One head check, and the publishing of whatever it brought.
    async fn poll(&mut self) -> Result<()> {
        self.health.metrics.polls.inc();
        let verifier = self.reload_policy().await;
        let Some(remote) = self.mirror.remote_head().await? else {
            if !self.branch_missing {
                warn!(branch = %self.settings.branch, "the remote has no such branch (yet); waiting for it");
                self.branch_missing = true;
            }
            return Ok(());
        };
        self.branch_missing = false;
        if self.mirror.local_head().await?.as_deref() != Some(remote.as_str()) {
            self.mirror.fetch().await?;
            self.health.metrics.fetches.inc();
            debug!(remote = %remote, "fetched");
        }
        // Work on what was fetched, which may already be newer than what ls-remote said.
        let Some(head) = self.mirror.local_head().await? else {
            warn!(branch = %self.settings.branch, "the fetch brought no branch");
            return Ok(());
        };
        if self.cursor.as_deref() == Some(head.as_str()) {
            return Ok(());
        }
        let range = self.range(&head).await?;
        let scanner = Scanner {
            mirror: &self.mirror,
            bus: &self.bus,
            metrics: &self.health.metrics,
            allowed_clusters: &self.settings.allowed_clusters,
            verifier,
            records: &self.bucket,
        };
        let verdicts = scanner.scan(&range, &head).await?;
        // After the requests: a request and its cancel in one push are both seen, in order.
        let cancels = scanner.scan_cancels(&range, &head).await?;
        // After the cancels: a session stopped in the same push takes no more questions.
        let follow_ups = scanner.scan_follow_ups(&range, &head).await?;
        self.save_cursor(&head).await?;
        info!(head = %head, files = verdicts.len(), cancels, follow_ups, "processed up to head");
        Ok(())
    }

    /// Reads the policy file again; a changed valid version is used from now on, a changed
    /// invalid one is refused (logged once and counted) and the old one stays. Returns the
    /// verifier of the policy in use, `None` without a policy.
    async fn reload_policy(&self) -> Option<Arc<warroom_access::Verifier>> {
        let watcher = Arc::clone(self.policy.as_ref()?);
        let polled = tokio::task::spawn_blocking(move || {
            let mut watcher = watcher.lock().unwrap_or_else(|p| p.into_inner());
            let reload = watcher.poll();
            (reload, watcher.verifier(), watcher.hash_hex())
        })
        .await;
        let (reload, verifier, hash) = match polled {
            Ok(polled) => polled,
            Err(e) => {
                // Only a panic in the policy crate ends up here; the policy in use stays.
                error!(cause = %Chain(&e), "reading the policy file failed");
                let watcher = self.policy.as_ref()?;
                let verifier = watcher.lock().unwrap_or_else(|p| p.into_inner()).verifier();
                return Some(verifier);
            }
        };
        match reload {
            Reload::Unchanged => {}
            Reload::Reloaded => {
                self.health.metrics.policy_reloads.inc();
                info!(sha256 = %hash, engineers = verifier.policy().engineers.len(), "policy reloaded");
            }
            Reload::Refused(e) => {
                self.health.metrics.policy_reloads_refused.inc();
                error!(cause = %Chain(&e), in_use = %hash, "the changed policy file is refused; the previous policy stays in use");
            }
        }
        Some(verifier)
    }

    /// Which files to look at: those added since the cursor, or everything when the cursor
    /// is missing or no longer in the branch's history.
    async fn range(&self, head: &CommitId) -> Result<Range> {
        let Some(cursor) = &self.cursor else {
            info!(head = %head, "no cursor yet: publishing every request at the head that has no results");
            return Ok(Range::Everything);
        };
        if !self.mirror.has_commit(cursor).await? {
            warn!(cursor = %cursor, head = %head, "the cursor is not in the repository (another remote, or rewritten history): publishing every request at the head that has no results");
            return Ok(Range::Everything);
        }
        if !self.mirror.is_ancestor(cursor, head).await? {
            warn!(cursor = %cursor, head = %head, "the branch was force-pushed past the cursor: publishing every request at the head that has no results");
            return Ok(Range::Everything);
        }
        Ok(Range::Since(cursor.clone()))
    }

    /// The cursor as last saved; a value that is not a commit id (written by hand, say) is
    /// no cursor, so every request at the head is looked at again (deduplicated).
    async fn load_cursor(&self) -> Result<Option<CommitId>> {
        let value = self
            .bucket
            .get(&self.cursor_key)
            .await
            .map_err(|e| Error::Cursor {
                action: "read",
                key: self.cursor_key.clone(),
                source: e.into(),
            })?;
        let text = value.map(|v| String::from_utf8_lossy(&v).trim().to_owned());
        Ok(match text.filter(|v| !v.is_empty()).map(|v| v.parse()) {
            None => None,
            Some(Ok(cursor)) => Some(cursor),
            Some(Err(e)) => {
                let e: warroom_git::CommitIdError = e;
                warn!(key = %self.cursor_key, cause = %e, "the saved cursor is not a commit id; ignoring it");
                None
            }
        })
    }

    async fn save_cursor(&mut self, head: &CommitId) -> Result<()> {
        self.bucket
            .put(&self.cursor_key, head.to_string().into_bytes().into())
            .await
            .map_err(|e| Error::Cursor {
                action: "write",
                key: self.cursor_key.clone(),
                source: e.into(),
            })?;
        self.cursor = Some(head.clone());
        Ok(())
    }
}

/// The cursor's key for a branch. Characters a KV key cannot hold become `-`; a hash of the
/// real name then keeps `a/b` and `a-b` apart.
fn cursor_key(branch: &str) -> String {
    let plain = branch
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        return format!("cursor-{branch}");
    }
    let replaced: String = branch
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("cursor-{replaced}-{}", short_hash(branch, 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_keys_are_valid_and_distinct() {
        assert_eq!(cursor_key("main"), "cursor-main");
        let slashed = cursor_key("release/1.2");
        assert!(slashed.starts_with("cursor-release-1-2-"));
        assert_ne!(cursor_key("a/b"), cursor_key("a-b"));
        assert!(
            slashed
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
