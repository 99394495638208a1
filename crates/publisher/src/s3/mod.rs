//! The S3 mirror: every file the publisher pushes under `results/` is also put in an
//! S3-compatible bucket, as `<prefix>/results/<id>/<file>`, with the bytes git holds (written
//! redacted by the git loop), and every file deleted there is deleted.
//!
//! The mirror is a task of its own beside the git loop, under the same lease, and never holds
//! it back: after each push the git loop only replaces the newest pushed commit in a watch
//! channel ([`Pushed`]). The mirror reads what changed under `results/` between the last
//! commit it mirrored and that one, from the working clone (objects only, through
//! `warroom-git`), uploads and deletes, and then records the commit in
//! [`names::PUBLISHER_BUCKET`] under [`names::S3_MIRRORED_KEY`]. A round that fails (the
//! bucket unreachable or refusing writes) is counted, logged and retried with backoff, each
//! time towards the newest pushed commit; several pushes made meanwhile become one diff.
//! After a restart or a change of replica the record says where to resume.
//!
//! The clone is shallow (`--depth 1`), so the recorded commit may not be in it (a new work
//! directory, a replica that never pushed it). Then, and when nothing was recorded yet, the
//! mirror compares the whole bucket below `<prefix>/results/` with `results/` at the pushed
//! commit instead: it uploads each file whose MD5 is not the object's ETag and deletes each
//! object git does not have.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::{StreamExt as _, TryStreamExt as _};
use md5::{Digest as _, Md5};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore as _, PutOptions, RetryConfig};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use warroom_git::CommitId;
use warroom_proto::names;
use warroom_runtime::shutdown::CancellationToken;
use warroom_runtime::{Chain, retry};

use crate::metrics::Metrics;
use crate::repo::Repo;

mod config;
pub use config::{S3Args, S3Settings};

/// The first pause after a failed round; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two rounds.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// Uploads and deletes in flight at once.
const CONCURRENCY: usize = 8;
/// Files read from git by one `git cat-file`, and so held in memory at once.
const CHUNK: usize = 64;
/// How long one request to the bucket may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The newest commit the git loop pushed: what the mirror catches up with.
pub(crate) type Pushed = watch::Sender<Option<CommitId>>;

/// Why a round of the mirror failed; the round is retried.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("cannot reach the S3 bucket to {what} {key}")]
    Store {
        what: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot read results/ from the working clone")]
    Git(#[source] crate::Error),
    #[error("cannot {what} the last mirrored commit in NATS KV")]
    Record {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("`{path}` cannot be an S3 key")]
    Key {
        path: String,
        #[source]
        source: object_store::path::Error,
    },
    #[error("cannot set up the S3 client")]
    Client(#[source] object_store::Error),
}

impl S3Settings {
    /// The S3 client. It retries nothing itself: every failure ends the round, which is
    /// retried (and counted) by [`run`].
    fn client(&self) -> Result<AmazonS3, MirrorError> {
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&self.bucket_endpoint)
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(self.access_key_id.expose())
            .with_secret_access_key(self.secret_access_key.expose())
            .with_virtual_hosted_style_request(!self.path_style)
            // The client options first: they would replace an `allow_http` set before them.
            .with_client_options(object_store::ClientOptions::new().with_timeout(REQUEST_TIMEOUT))
            .with_allow_http(self.endpoint.starts_with("http://"))
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            });
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token.expose());
        }
        builder.build().map_err(MirrorError::Client)
    }
}

/// Mirrors every commit sent on `pushed` until `stop` is cancelled.
pub(crate) async fn run(
    settings: &S3Settings,
    repo: Repo,
    records: kv::Store,
    metrics: Arc<Metrics>,
    mut pushed: watch::Receiver<Option<CommitId>>,
    stop: CancellationToken,
) {
    let store = match settings.client() {
        Ok(store) => store,
        Err(e) => {
            // The settings were checked; the client refusing them is a bug, not an outage.
            tracing::error!(cause = %Chain(&e), "the S3 mirror cannot start; results go to git only");
            return;
        }
    };
    let mirror = Mirror {
        store,
        prefix: settings.prefix.clone(),
        repo,
        records,
        metrics,
    };
    info!(mirror = %settings.summary(), "mirroring results/ to S3");
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = pushed.changed() => if changed.is_err() { return },
        }
        let mut failures = 0usize;
        loop {
            let Some(target) = pushed.borrow_and_update().clone() else {
                break;
            };
            let round = tokio::select! {
                () = stop.cancelled() => return,
                round = mirror.catch_up(&target) => round,
            };
            let Err(e) = round else { break };
            failures += 1;
            mirror.metrics.s3_failures.inc();
            let pause = retry::delay(FIRST_PAUSE, MAX_PAUSE, failures);
            warn!(commit = %target, failures, cause = %Chain(&e), retry_in = ?pause, "the S3 mirror is behind; retrying");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// One bucket, the clone the results are read from, and the record of progress.
struct Mirror {
    store: AmazonS3,
    /// The folder keys start with, without slashes; empty for none.
    prefix: String,
    repo: Repo,
    records: kv::Store,
    metrics: Arc<Metrics>,
}

/// What one round has to do.
struct Plan {
    /// Files to upload: path and blob.
    upload: Vec<(String, String)>,
    /// Paths whose objects are to be deleted.
    delete: Vec<String>,
}

impl Mirror {
    /// Makes the bucket hold `results/` as of `target` and records it.
    async fn catch_up(&self, target: &CommitId) -> Result<(), MirrorError> {
        let mirrored = self.mirrored().await?;
        if mirrored.as_ref() == Some(target) {
            return Ok(());
        }
        let Plan { upload, delete } = match &mirrored {
            Some(from)
                if self
                    .repo
                    .has_commit(from.as_str())
                    .await
                    .map_err(MirrorError::Git)? =>
            {
                self.diff(from, target).await?
            }
            _ => {
                info!(commit = %target, mirrored = mirrored.as_ref().map_or("none", CommitId::as_str), "the last mirrored commit is not in the clone; comparing the whole bucket with results/");
                self.metrics.s3_full_syncs.inc();
                self.compare(target).await?
            }
        };
        let (uploads, deletes) = (upload.len(), delete.len());
        self.upload(upload).await?;
        futures::stream::iter(delete)
            .map(|path| self.delete(path))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;
        self.records
            .put(
                names::S3_MIRRORED_KEY,
                target.as_str().to_owned().into_bytes().into(),
            )
            .await
            .map_err(|e| MirrorError::Record {
                what: "record",
                source: Box::new(e),
            })?;
        self.metrics
            .s3_last_mirror_timestamp_seconds
            .set(warroom_proto::now().unix_timestamp());
        info!(commit = %target, uploads, deletes, "results/ mirrored to S3");
        Ok(())
    }

    /// The commit mirrored last, from the record.
    async fn mirrored(&self) -> Result<Option<CommitId>, MirrorError> {
        let value = self
            .records
            .get(names::S3_MIRRORED_KEY)
            .await
            .map_err(|e| MirrorError::Record {
                what: "read",
                source: Box::new(e),
            })?;
        let Some(value) = value else { return Ok(None) };
        match std::str::from_utf8(&value)
            .ok()
            .and_then(|text| text.parse().ok())
        {
            Some(commit) => Ok(Some(commit)),
            None => {
                warn!(
                    key = names::S3_MIRRORED_KEY,
                    "the last mirrored commit is unreadable; comparing the whole bucket"
                );
                Ok(None)
            }
        }
    }

    /// The files under `results/` that changed from `from` to `to`.
    async fn diff(&self, from: &CommitId, to: &CommitId) -> Result<Plan, MirrorError> {
        let changes = self
            .repo
            .results_changed(from.as_str(), to.as_str())
            .await
            .map_err(MirrorError::Git)?;
        debug!(from = %from, to = %to, changes = changes.len(), "results/ changed");
        let mut upload = Vec::new();
        let mut delete = Vec::new();
        for (path, blob) in changes {
            match blob {
                Some(blob) => upload.push((path, blob)),
                None => delete.push(path),
            }
        }
        Ok(Plan { upload, delete })
    }

    /// Everything that differs between the bucket and `results/` at `commit`: files whose
    /// MD5 is not their object's ETag (or without an object), and objects without a file.
    async fn compare(&self, commit: &CommitId) -> Result<Plan, MirrorError> {
        let files = self
            .repo
            .results_at(commit.as_str())
            .await
            .map_err(MirrorError::Git)?;
        let listed = self.key("results")?;
        let mut objects: HashMap<String, String> = self
            .store
            .list(Some(&listed))
            .map_ok(|meta| {
                let etag = meta.e_tag.unwrap_or_default().trim_matches('"').to_owned();
                (meta.location.to_string(), etag)
            })
            .try_collect()
            .await
            .map_err(|source| MirrorError::Store {
                what: "list",
                key: listed.to_string(),
                source,
            })?;
        let mut upload = Vec::new();
        for chunk in files.chunks(CHUNK) {
            let blobs: Vec<&str> = chunk.iter().map(|(_, blob)| blob.as_str()).collect();
            let contents = self
                .repo
                .read_blobs(&blobs)
                .await
                .map_err(MirrorError::Git)?;
            for ((path, blob), bytes) in chunk.iter().zip(contents) {
                let key = self.key(path)?.to_string();
                let same = objects
                    .remove(&key)
                    .is_some_and(|etag| etag == hex_md5(&bytes));
                if !same {
                    upload.push((path.clone(), blob.clone()));
                }
            }
        }
        // What is left has no file in git: it was deleted while nothing was mirrored.
        let prefix = self.key("")?.to_string();
        let delete = objects
            .into_keys()
            .map(|key| {
                key.strip_prefix(&prefix)
                    .map(|k| k.trim_start_matches('/').to_owned())
                    .unwrap_or(key)
            })
            .collect();
        Ok(Plan { upload, delete })
    }

    /// Uploads `files` (path, blob), reading them from git a chunk at a time.
    async fn upload(&self, files: Vec<(String, String)>) -> Result<(), MirrorError> {
        for chunk in files.chunks(CHUNK) {
            let blobs: Vec<&str> = chunk.iter().map(|(_, blob)| blob.as_str()).collect();
            let contents = self
                .repo
                .read_blobs(&blobs)
                .await
                .map_err(MirrorError::Git)?;
            let paths: Vec<String> = chunk.iter().map(|(path, _)| path.clone()).collect();
            futures::stream::iter(paths.into_iter().zip(contents))
                .map(|(path, bytes)| self.put(path, bytes))
                .buffer_unordered(CONCURRENCY)
                .try_collect::<()>()
                .await?;
        }
        Ok(())
    }

    async fn put(&self, path: String, bytes: Vec<u8>) -> Result<(), MirrorError> {
        let key = self.key(&path)?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type(&path).into());
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&key, bytes::Bytes::from(bytes).into(), options)
            .await
            .map_err(|source| MirrorError::Store {
                what: "upload",
                key: key.to_string(),
                source,
            })?;
        self.metrics.s3_uploads.inc();
        Ok(())
    }

    async fn delete(&self, path: String) -> Result<(), MirrorError> {
        let key = self.key(&path)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(MirrorError::Store {
                    what: "delete",
                    key: key.to_string(),
                    source,
                });
            }
        }
        self.metrics.s3_deletes.inc();
        Ok(())
    }

    /// The key of a path of the repository: `<prefix>/<path>`.
    fn key(&self, path: &str) -> Result<Path, MirrorError> {
        let key = match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{path}", self.prefix),
        };
        Path::parse(&key).map_err(|source| MirrorError::Key {
            path: path.to_owned(),
            source,
        })
    }
}

/// The lower-case hexadecimal MD5 of `bytes`: an S3 object's ETag when it was put whole.
fn hex_md5(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Md5::digest(bytes).iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// The content type of a results file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("json") => "application/json",
        Some("jsonl") => "application/jsonl",
        Some("md") => "text/markdown; charset=utf-8",
        Some("txt" | "log") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("results/r-1/status.json"), "application/json");
        assert_eq!(content_type("results/r-1/audit.jsonl"), "application/jsonl");
        assert_eq!(
            content_type("results/r-1/prod-1.md"),
            "text/markdown; charset=utf-8"
        );
        assert_eq!(content_type("results/r-1/blob"), "application/octet-stream");
    }

    #[test]
    fn md5_is_the_etag_of_a_whole_put() {
        assert_eq!(hex_md5(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
