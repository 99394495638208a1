//! Turns the request files of one range of commits into published messages: each file is
//! either published as an `AcceptedRequest`, published as a rejection `StatusUpdate`, or
//! skipped for a logged reason. Problems with a file's content never fail the scan; only
//! git or NATS being unavailable does, and then the whole range is tried again at the next
//! poll (every publish carries a deduplication id, so nothing is published twice).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use async_nats::jetstream::kv;
use tracing::{debug, error, info, warn};
use warroom_policy::{CommitRange, Refusal, RequestFacts, SignatureStatus, Verifier};
use warroom_proto::validate::MAX_FILE_BYTES;
use warroom_proto::wire::{AcceptedRequest, RequestSummary, StatusUpdate};
use warroom_proto::{
    FieldError, Notice, NoticeKind, RequestId, RequestNotice, RequestPhase, RequestStatus,
    ResultsDir, Subject, ValidatedRequest, ValidationErrors, Verification,
};
use warroom_runtime::{Bus, Metrics};

use crate::mirror::{Blob, Change, Mirror};
use crate::{Error, Result};
use warroom_runtime::config::short_hash;

/// The folder engineers add request files to.
pub(crate) const PENDING: &str = "requests/pending/";

/// Longest sanitized id body, before the hash suffix.
const SANITIZED_MAX: usize = 100;

/// Which files a scan looks at.
#[derive(Debug, Clone)]
pub(crate) enum Range {
    /// Files added or modified after `from` up to the head.
    Since(String),
    /// Every request file present at the head (first start, or the history was rewritten).
    Everything,
}

/// What a scan needs to do its work.
pub(crate) struct Scanner<'a> {
    pub mirror: &'a Mirror,
    pub bus: &'a Bus,
    pub metrics: &'a Metrics,
    pub allowed_clusters: &'a [String],
    /// The policy's verifier; `None` runs requests unverified (`--insecure-allow-unsigned`).
    pub verifier: Option<Arc<Verifier>>,
    /// The gateway's bucket, holding a record per accepted request (see [`accepted_key`]).
    pub records: &'a kv::Store,
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    Rejected,
    Skipped,
}

/// The key of the record kept for each accepted request: its value is the git object id of
/// the file that was accepted, so that a later version of the file is recognised and never
/// run.
pub(crate) fn accepted_key(id: &RequestId) -> String {
    format!("accepted-{id}")
}

impl Scanner<'_> {
    /// Publishes every request file of `range` up to `head`. Returns only when each file was
    /// published (with an acknowledgement) or deliberately skipped.
    pub async fn scan(&self, range: &Range, head: &str) -> Result<BTreeMap<String, Verdict>> {
        let files = match range {
            Range::Since(from) => self.mirror.changed_files(from, head, PENDING).await?,
            Range::Everything => self
                .mirror
                .files_in(head, PENDING)
                .await?
                .into_iter()
                .map(|path| (Change::Present, path))
                .collect(),
        };
        let mut seen = HashSet::new();
        let mut verdicts = BTreeMap::new();
        for (change, path) in files {
            let verdict = self.file(&path, change, head, &mut seen).await?;
            verdicts.insert(path, verdict);
        }
        Ok(verdicts)
    }

    /// Handles one file; an `Err` is git or NATS failing, never the file's content.
    async fn file(
        &self,
        path: &str,
        change: Change,
        head: &str,
        seen: &mut HashSet<RequestId>,
    ) -> Result<Verdict> {
        let Some(id) = request_file_id(path) else {
            return Ok(Verdict::Skipped);
        };
        // Another file of this scan with the same id (`<id>.yaml` and `<id>.yml`): once the
        // first was accepted, this one is answered as a re-used id below.
        let reused = !seen.insert(id.clone());
        if reused {
            warn!(file = %path, request = %id, "another file of the same push already has this request id");
        }
        // Whether the request was handled before is decided from the secure zone's own
        // state, never from files under `results/` that anyone who can push could plant:
        // the cursor, the records of accepted requests kept here, the stream's
        // deduplication by request id, and the dispatcher's state record, created once per
        // id.
        // A path git could not give us as UTF-8 cannot be read back by name.
        if path.contains(char::REPLACEMENT_CHARACTER) {
            let errors = vec![FieldError {
                field: String::new(),
                message: "the file name is not valid UTF-8".to_owned(),
            }];
            return self.reject(path, &id, errors, None, None, "name").await;
        }
        let Some(blob) = self.mirror.blob(head, path).await? else {
            warn!(file = %path, "ignoring an entry that is not a plain file (a submodule?)");
            return Ok(Verdict::Skipped);
        };
        if self
            .accepted_before(path, &id, change, reused, &blob, head)
            .await?
        {
            return Ok(Verdict::Skipped);
        }
        let (request, trust) = match self.judge(path, head, &blob).await? {
            Judged::Runs(request, trust) => (request, trust),
            Judged::Refused {
                errors,
                request,
                summary,
            } => {
                return self
                    .reject(path, &id, errors, request.as_deref(), summary, &blob.id)
                    .await;
            }
        };
        self.accept(path, head, id, &blob, *request, trust).await
    }

    /// Whether a request was accepted under `id` before. A request that was accepted is
    /// never run again, and a later version of its file is never run at all. That is
    /// answered in the request's `status.json` (a [`Notice`] the dispatcher adds), not only
    /// in the log. An id that was rejected before is judged again as new.
    async fn accepted_before(
        &self,
        path: &str,
        id: &RequestId,
        change: Change,
        reused: bool,
        blob: &Blob,
        head: &str,
    ) -> Result<bool> {
        let Some(accepted) = self.accepted_version(id).await? else {
            return Ok(false);
        };
        if accepted == blob.id {
            debug!(file = %path, request = %id, "already accepted; unchanged");
            return Ok(true);
        }
        let (kind, message) = if change == Change::Added || reused {
            self.metrics.inc("request_ids_reused");
            warn!(
                file = %path,
                request = %id,
                "a new request file reuses the id of an accepted request; it does not run, and results/<id>/ keeps the earlier request's results: use a new id"
            );
            (
                NoticeKind::IdReused,
                format!(
                    "{path} (version {}) re-uses the id `{id}` of a request that was already accepted; it was not run, and this folder keeps the earlier request's results. Push the new request under a new id.",
                    short(&blob.id)
                ),
            )
        } else {
            self.metrics.inc("requests_changed_after_acceptance");
            warn!(
                file = %path,
                request = %id,
                accepted = %accepted,
                now = %blob.id,
                "the request file changed after its request was accepted; the new text does not run (the accepted version is the one that runs)"
            );
            (
                NoticeKind::ChangedAfterAcceptance,
                format!(
                    "{path} was changed after the request was accepted (accepted version {}, new version {}); the new text was not run. To run it, push it under a new id.",
                    short(&accepted),
                    short(&blob.id)
                ),
            )
        };
        let notice = RequestNotice {
            id: id.clone(),
            notice: Notice {
                kind,
                file: path.to_owned(),
                version: blob.id.clone(),
                commit: head.to_owned(),
                at: warroom_proto::now(),
                message,
            },
        };
        // One notice per file and version, however often it is scanned (a full rescan
        // after a restart sees an added file as merely present).
        let dedup = format!("{id}-notice-{}-{}", short_hash(path, 8), blob.id);
        self.bus
            .publish(&Subject::Request(id.clone()), Some(&dedup), &notice)
            .await?;
        Ok(true)
    }

    /// Reads, validates and authorizes one request file.
    async fn judge(&self, path: &str, head: &str, blob: &Blob) -> Result<Judged> {
        let refused = |errors, request, summary| Judged::Refused {
            errors,
            request,
            summary,
        };
        if blob.size > MAX_FILE_BYTES as u64 {
            let errors = vec![FieldError {
                field: String::new(),
                message: format!(
                    "the file is {} bytes; request files may be at most {MAX_FILE_BYTES} bytes",
                    blob.size
                ),
            }];
            return Ok(refused(errors, None, None));
        }
        let bytes = self.mirror.read(head, path).await?;
        let request = match warroom_proto::parse_request(Path::new(path), &bytes) {
            Ok(request) => request,
            Err(ValidationErrors { errors, .. }) => return Ok(refused(errors, None, None)),
        };
        let request = Box::new(request);
        // Who wrote it comes first, so that a forged request learns nothing else.
        let trust = match &self.verifier {
            None => Trust {
                verification: Verification::unverified(),
                max_active_requests: None,
            },
            Some(verifier) => match self.verify(verifier, head, path, &request).await? {
                Ok(trust) => trust,
                Err(refusal) => {
                    self.metrics
                        .inc_with("policy_refusals", &[("code", refusal.code())]);
                    let errors = vec![FieldError {
                        field: refusal_field(&refusal, &request),
                        message: format!("{}: {refusal}", refusal.code()),
                    }];
                    return Ok(refused(errors, Some(request), Some(refusal.to_string())));
                }
            },
        };
        // A results folder always ends in the request id (`ResultsDir`), so two requests can
        // never share one.
        let errors = self.allowed(&request);
        if !errors.is_empty() {
            return Ok(refused(errors, Some(request), None));
        }
        Ok(Judged::Runs(request, trust))
    }

    /// Publishes an accepted request and records it as accepted.
    async fn accept(
        &self,
        path: &str,
        head: &str,
        id: RequestId,
        blob: &Blob,
        request: ValidatedRequest,
        trust: Trust,
    ) -> Result<Verdict> {
        let commit = self
            .mirror
            .adding_commit(head, path)
            .await?
            .unwrap_or_else(|| head.to_owned());
        let clusters = request.clusters.len();
        let message = AcceptedRequest {
            id: id.clone(),
            commit: commit.clone(),
            results_dir: request.results_dir,
            request: request.request,
            verification: Some(trust.verification),
            max_active_requests: trust.max_active_requests,
        };
        let stored = self
            .bus
            .publish(&Subject::Request(id.clone()), Some(&id), &message)
            .await?;
        // Recorded after the publish: a crash in between publishes again (deduplicated) at
        // the next scan, and records it then.
        self.record_accepted(&id, &blob.id).await?;
        self.metrics.inc("requests_accepted");
        info!(
            request = %id,
            file = %path,
            commit = %commit,
            clusters,
            verified = self.verifier.is_some(),
            duplicate = stored.duplicate,
            "request accepted"
        );
        Ok(Verdict::Accepted)
    }

    /// The git object id of the file accepted under `id`, if a request was accepted there.
    async fn accepted_version(&self, id: &RequestId) -> Result<Option<String>> {
        let key = accepted_key(id);
        let value = self.records.get(&key).await.map_err(|e| Error::Record {
            action: "read",
            key: key.clone(),
            source: e.into(),
        })?;
        Ok(value
            .map(|v| String::from_utf8_lossy(&v).trim().to_owned())
            .filter(|v| !v.is_empty()))
    }

    async fn record_accepted(&self, id: &RequestId, version: &str) -> Result<()> {
        let key = accepted_key(id);
        self.records
            .put(&key, version.to_owned().into_bytes().into())
            .await
            .map_err(|e| Error::Record {
                action: "write",
                key,
                source: e.into(),
            })?;
        Ok(())
    }

    /// Verifies who signed the commits that added or changed `path` up to `head`, and asks
    /// the policy. The outer `Err` is git failing (retried at the next poll); the inner one
    /// is the policy's refusal.
    async fn verify(
        &self,
        verifier: &Arc<Verifier>,
        head: &str,
        path: &str,
        request: &ValidatedRequest,
    ) -> Result<std::result::Result<Trust, Refusal>> {
        // The engineer's active requests are counted by the dispatcher, which holds them: the
        // policy's limit travels with the accepted request (`max_active_requests`).
        let facts = RequestFacts::of(request, 0);
        let verifier = Arc::clone(verifier);
        let repo = self.mirror.dir().to_path_buf();
        let range = CommitRange::UpTo {
            head: head.to_owned(),
        };
        let file = path.to_owned();
        let decision = tokio::task::spawn_blocking(move || {
            let commits = verifier.commits(&repo, &range, &file)?;
            let policy = verifier.policy();
            let decision = warroom_policy::authorize(policy, &facts, &commits).map(|authorized| {
                let signed_by: BTreeSet<String> = commits
                    .iter()
                    .filter_map(|c| match &c.status {
                        SignatureStatus::Good { fingerprint } => Some(fingerprint.clone()),
                        _ => None,
                    })
                    .collect();
                let limit = policy
                    .engineer(&authorized.engineer)
                    .and_then(|engineer| policy.max_concurrent_requests(engineer));
                debug!(file = %file, engineer = %authorized.engineer, commits = authorized.signers.len(), "signatures verified");
                Trust {
                    verification: Verification {
                        verified: true,
                        signed_by: signed_by.into_iter().collect(),
                    },
                    max_active_requests: limit,
                }
            });
            Ok::<_, warroom_policy::Error>(decision)
        })
        .await
        .map_err(|e| Error::Verify {
            file: path.to_owned(),
            source: e.into(),
        })?
        .map_err(|e| Error::Verify {
            file: path.to_owned(),
            source: e.into(),
        })?;
        Ok(decision)
    }

    /// `--allowed-clusters`' objections to the request's target clusters.
    fn allowed(&self, request: &ValidatedRequest) -> Vec<FieldError> {
        if self.allowed_clusters.is_empty() {
            return Vec::new();
        }
        request
            .clusters
            .iter()
            .enumerate()
            .filter(|(_, c)| !self.allowed_clusters.iter().any(|a| *a == c.name.as_str()))
            .map(|(i, c)| FieldError {
                field: cluster_field(request, i),
                message: format!(
                    "the cluster `{}` is not one this gateway may send requests to; allowed: {}",
                    c.name,
                    self.allowed_clusters.join(", ")
                ),
            })
            .collect()
    }

    /// Publishes the rejection of one file, for the publisher to write into
    /// `results/<id>/status.json`. `version` (the file's object id) is part of the
    /// deduplication id, so a corrected file that is rejected again is still reported.
    async fn reject(
        &self,
        path: &str,
        id: &RequestId,
        errors: Vec<FieldError>,
        request: Option<&ValidatedRequest>,
        summary: Option<String>,
        version: &str,
    ) -> Result<Verdict> {
        let summary = summary.unwrap_or_else(|| {
            ValidationErrors {
                file: path.to_owned(),
                errors: errors.clone(),
            }
            .summary()
        });
        let update = StatusUpdate {
            status: RequestStatus {
                id: id.clone(),
                phase: RequestPhase::Rejected,
                clusters: BTreeMap::new(),
                error: Some(summary.clone()),
                errors,
                mode: request.and_then(|r| r.mode),
                engineer: request.map(|r| r.request.metadata.engineer.clone()),
                results_dir: ResultsDir::default_for(id),
                revision: 1,
                updated_at: warroom_proto::now(),
                verification: None,
                notices: Vec::new(),
            },
            request: request.map(|r| RequestSummary::of(&r.request)),
            reports: BTreeMap::new(),
        };
        let dedup = format!("{id}-rejected-{version}");
        self.bus
            .publish(&Subject::Status(id.clone()), Some(&dedup), &update)
            .await?;
        self.metrics.inc("requests_rejected");
        warn!(request = %id, file = %path, reason = %summary, "request rejected");
        Ok(Verdict::Rejected)
    }
}

/// The first 12 characters of a git object id, for messages.
fn short(object: &str) -> &str {
    object.get(..12).unwrap_or(object)
}

/// The field path of the `index`th target cluster's name.
fn cluster_field(request: &ValidatedRequest, index: usize) -> String {
    if request.request.spec.target_cluster.is_some() {
        "spec.targetCluster.name".to_owned()
    } else {
        format!("spec.targetClusters[{index}].name")
    }
}

/// The field a policy refusal is about: the claimed engineer for everything about who wrote
/// the request, the cluster, timeout or tools for the checks on what it asks.
fn refusal_field(refusal: &Refusal, request: &ValidatedRequest) -> String {
    match refusal {
        Refusal::NoCommits => String::new(),
        Refusal::ClusterNotAllowed { cluster, .. } => request
            .clusters
            .iter()
            .position(|c| c.name.as_str() == cluster)
            .map(|i| cluster_field(request, i))
            .unwrap_or_default(),
        Refusal::TimeoutAboveCeiling { .. } => "spec.investigation.timeout".to_owned(),
        Refusal::ToolNotAllowed { .. } => "spec.investigation.allowedTools".to_owned(),
        _ => "metadata.engineer".to_owned(),
    }
}

/// What the gateway established about who wrote a request, for the dispatcher.
struct Trust {
    verification: Verification,
    /// The policy's limit on the engineer's active requests.
    max_active_requests: Option<u32>,
}

/// What judging a request file decided.
enum Judged {
    /// It runs.
    Runs(Box<ValidatedRequest>, Trust),
    /// It is rejected: the errors, the request when it parsed, and the status's `error`
    /// when it is not the errors' summary.
    Refused {
        errors: Vec<FieldError>,
        request: Option<Box<ValidatedRequest>>,
        summary: Option<String>,
    },
}

/// The request id of a path under `requests/pending/`, or `None` for a path that is not a
/// request file (a subfolder, another extension). A file name that is not a valid id gets a
/// sanitized one, so its rejection still has a place in `results/`.
fn request_file_id(path: &str) -> Option<RequestId> {
    let name = path.strip_prefix(PENDING)?;
    if name.contains('/') {
        warn!(file = %path, "ignoring a file in a subfolder of requests/pending/; requests must be direct children");
        return None;
    }
    if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
        debug!(file = %path, "ignoring a file that is not .yaml or .yml");
        return None;
    }
    let stem = Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if let Ok(id) = RequestId::new(stem) {
        return Some(id);
    }
    match RequestId::new(sanitized_id(path)) {
        Ok(id) => {
            warn!(file = %path, request = %id, "the file name is not a valid request id; its rejection goes to a sanitized id");
            Some(id)
        }
        Err(e) => {
            // Unreachable: a sanitized id is made of valid characters only.
            error!(file = %path, cause = %e, "cannot derive a request id; ignoring the file");
            None
        }
    }
}

/// A valid request id for a file whose stem is not one, so that its rejection still lands
/// in a findable `results/<id>/`: unusable characters become `-`, and a hash of the full
/// path keeps two such files apart.
pub(crate) fn sanitized_id(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name);
    let replaced: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut body: String = replaced
        .trim_matches(|c: char| c == '-' || c == '_')
        .chars()
        .take(SANITIZED_MAX)
        .collect();
    body.truncate(body.trim_end_matches(['-', '_']).len());
    if body.is_empty() {
        body.push_str("request");
    }
    format!("{body}-{}", short_hash(path, 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_ids_are_valid_tokens_and_keep_files_apart() {
        for path in [
            "requests/pending/my request.yaml",
            "requests/pending/.yaml",
            "requests/pending/ä.ö.yml",
            "requests/pending/-lead.yaml",
            &format!("requests/pending/{}.yaml", "x.".repeat(200)),
        ] {
            let id = sanitized_id(path);
            assert!(RequestId::new(id.clone()).is_ok(), "{path} -> {id}");
        }
        assert!(sanitized_id("requests/pending/my request.yaml").starts_with("my-request-"));
        assert_ne!(
            sanitized_id("requests/pending/a b.yaml"),
            sanitized_id("requests/pending/a.b.yaml")
        );
        assert_eq!(
            sanitized_id("requests/pending/.yaml").len(),
            "request-".len() + 8
        );
    }
}
