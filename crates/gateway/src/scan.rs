//! Turns the request files of one range of commits into published messages: each file is
//! either published as an `AcceptedRequest`, published as a rejection `StatusUpdate`, or
//! skipped for a logged reason. Problems with a file's content never fail the scan; only
//! git or NATS being unavailable does, and then the whole range is tried again at the next
//! poll (every publish carries a deduplication id, so nothing is published twice).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use tracing::{debug, error, info, warn};
use warroom_proto::validate::MAX_FILE_BYTES;
use warroom_proto::wire::{AcceptedRequest, RequestSummary, StatusUpdate};
use warroom_proto::{
    FieldError, RequestId, RequestPhase, RequestStatus, ResultsDir, Subject, ValidatedRequest,
    ValidationErrors,
};
use warroom_runtime::{Bus, Metrics};

use crate::Result;
use crate::mirror::Mirror;
use warroom_runtime::config::short_hash;

/// The folder engineers add request files to.
pub(crate) const PENDING: &str = "requests/pending/";

/// Longest sanitized id body, before the hash suffix.
const SANITIZED_MAX: usize = 100;

/// Which files a scan looks at.
#[derive(Debug, Clone)]
pub(crate) enum Range {
    /// Files added after `from` up to the head.
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
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    Rejected,
    Skipped,
}

impl Scanner<'_> {
    /// Publishes every request file of `range` up to `head`. Returns only when each file was
    /// published (with an acknowledgement) or deliberately skipped.
    pub async fn scan(&self, range: &Range, head: &str) -> Result<BTreeMap<String, Verdict>> {
        let paths = match range {
            Range::Since(from) => self.mirror.added_files(from, head, PENDING).await?,
            Range::Everything => self.mirror.files_in(head, PENDING).await?,
        };
        let mut seen = HashSet::new();
        let mut verdicts = BTreeMap::new();
        for path in paths {
            let verdict = self.file(&path, head, &mut seen).await?;
            verdicts.insert(path, verdict);
        }
        Ok(verdicts)
    }

    /// Handles one file; an `Err` is git or NATS failing, never the file's content.
    async fn file(&self, path: &str, head: &str, seen: &mut HashSet<RequestId>) -> Result<Verdict> {
        let Some(name) = path.strip_prefix(PENDING) else {
            return Ok(Verdict::Skipped);
        };
        if name.contains('/') {
            warn!(file = %path, "ignoring a file in a subfolder of requests/pending/; requests must be direct children");
            return Ok(Verdict::Skipped);
        }
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            debug!(file = %path, "ignoring a file that is not .yaml or .yml");
            return Ok(Verdict::Skipped);
        }
        let stem = Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let id = match RequestId::new(stem) {
            Ok(id) => id,
            Err(_) => match RequestId::new(sanitized_id(path)) {
                Ok(id) => {
                    warn!(file = %path, request = %id, "the file name is not a valid request id; its rejection goes to a sanitized id");
                    id
                }
                Err(e) => {
                    // Unreachable: a sanitized id is made of valid characters only.
                    error!(file = %path, cause = %e, "cannot derive a request id; ignoring the file");
                    return Ok(Verdict::Skipped);
                }
            },
        };
        if !seen.insert(id.clone()) {
            warn!(file = %path, request = %id, "another file of the same push already has this request id; ignoring this one");
            return Ok(Verdict::Skipped);
        }
        // Whether the request was handled before is decided from the secure zone's own
        // state, never from files under `results/` that anyone who can push could plant:
        // the cursor, the stream's deduplication by request id, and the dispatcher's state
        // record, created once per id.
        // A path git could not give us as UTF-8 cannot be read back by name.
        if path.contains(char::REPLACEMENT_CHARACTER) {
            let errors = vec![FieldError {
                field: String::new(),
                message: "the file name is not valid UTF-8".to_owned(),
            }];
            return self.reject(path, &id, errors, None).await;
        }

        let Some(size) = self.mirror.blob_size(head, path).await? else {
            warn!(file = %path, "ignoring an entry that is not a plain file (a submodule?)");
            return Ok(Verdict::Skipped);
        };
        if size > MAX_FILE_BYTES as u64 {
            let errors = vec![FieldError {
                field: String::new(),
                message: format!(
                    "the file is {size} bytes; request files may be at most {MAX_FILE_BYTES} bytes"
                ),
            }];
            return self.reject(path, &id, errors, None).await;
        }
        let bytes = self.mirror.read(head, path).await?;
        let request = match warroom_proto::parse_request(Path::new(path), &bytes) {
            Ok(request) => request,
            Err(ValidationErrors { errors, .. }) => {
                return self.reject(path, &id, errors, None).await;
            }
        };

        // A results folder always ends in the request id (`ResultsDir`), so two requests can
        // never share one.
        let errors = self.authorize(&request);
        if !errors.is_empty() {
            return self.reject(path, &id, errors, Some(&request)).await;
        }

        let commit = self
            .mirror
            .adding_commit(head, path)
            .await?
            .unwrap_or_else(|| head.to_owned());
        let message = AcceptedRequest {
            id: id.clone(),
            commit: commit.clone(),
            results_dir: request.results_dir.clone(),
            request: request.request,
        };
        let stored = self
            .bus
            .publish(&Subject::Request(id.clone()), Some(&id), &message)
            .await?;
        let duplicate = stored.duplicate;
        self.metrics.inc("requests_accepted");
        info!(
            request = %id,
            file = %path,
            commit = %commit,
            clusters = request.clusters.len(),
            duplicate,
            "request accepted"
        );
        Ok(Verdict::Accepted)
    }

    /// The secure-zone policy's objections to the request's target clusters.
    fn authorize(&self, request: &ValidatedRequest) -> Vec<FieldError> {
        if self.allowed_clusters.is_empty() {
            return Vec::new();
        }
        let single = request.request.spec.target_cluster.is_some();
        request
            .clusters
            .iter()
            .enumerate()
            .filter(|(_, c)| !self.allowed_clusters.iter().any(|a| *a == c.name.as_str()))
            .map(|(i, c)| FieldError {
                field: if single {
                    "spec.targetCluster.name".to_owned()
                } else {
                    format!("spec.targetClusters[{i}].name")
                },
                message: format!(
                    "the cluster `{}` is not one this gateway may send requests to; allowed: {}",
                    c.name,
                    self.allowed_clusters.join(", ")
                ),
            })
            .collect()
    }

    /// Publishes the rejection of one file, for the publisher to write into
    /// `results/<id>/status.json`.
    async fn reject(
        &self,
        path: &str,
        id: &RequestId,
        errors: Vec<FieldError>,
        request: Option<&ValidatedRequest>,
    ) -> Result<Verdict> {
        let summary = ValidationErrors {
            file: path.to_owned(),
            errors: errors.clone(),
        }
        .summary();
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
            },
            request: request.map(|r| RequestSummary::of(&r.request)),
            reports: BTreeMap::new(),
        };
        let dedup = format!("{id}-rejected");
        self.bus
            .publish(&Subject::Status(id.clone()), Some(&dedup), &update)
            .await?;
        self.metrics.inc("requests_rejected");
        warn!(request = %id, file = %path, reason = %summary, "request rejected");
        Ok(Verdict::Rejected)
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
