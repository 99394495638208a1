//! Turns the request files of one range of commits into published messages: each file is
//! either published as an `AcceptedRequest`, published as a rejection `StatusUpdate`, or
//! skipped for a logged reason. Problems with a file's content never fail the scan; only
//! git or NATS being unavailable does, and then the whole range is tried again at the next
//! poll (every publish carries a deduplication id, so nothing is published twice).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use warroom_runtime::Chain;

use async_nats::jetstream::kv;
use futures::{StreamExt as _, TryStreamExt as _, stream};
use tracing::{debug, error, info, warn};
use warroom_access::{CommitRange, Refusal, RequestFacts, SignatureStatus, Verifier};
use warroom_git::CommitId;
use warroom_proto::validate::MAX_FILE_BYTES;
use warroom_proto::wire::{AcceptedRequest, RequestSummary, StatusUpdate};
use warroom_proto::{
    ClusterName, FieldError, Notice, NoticeKind, RequestId, RequestNotice, RequestPhase,
    RequestStatus, ResultsDir, Subject, ValidatedRequest, ValidationErrors, Verification,
};
use warroom_runtime::Bus;

use crate::metrics::{Metrics, RefusalLabels};
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
    Since(CommitId),
    /// Every request file present at the head (first start, or the history was rewritten).
    Everything,
}

/// What a scan needs to do its work.
pub(crate) struct Scanner<'a> {
    pub mirror: &'a Mirror,
    pub bus: &'a Bus,
    pub metrics: &'a Metrics,
    pub allowed_clusters: &'a [ClusterName],
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

/// How many files are judged together: their contents are held in memory at once, so this
/// bounds the scan's memory (at most this many times [`MAX_FILE_BYTES`]) whatever the size
/// of the push, while each chunk still costs a fixed handful of git processes.
const CHUNK: usize = 256;

/// How many publishes (and record writes) are in flight at once: their acknowledgements
/// are awaited together instead of one after the other.
const IN_FLIGHT: usize = 64;

/// A request file found in the range, before it is read.
struct Candidate {
    path: String,
    change: Change,
    id: RequestId,
    blob: Blob,
}

impl Candidate {
    /// The rejection of this file.
    fn reject(
        self,
        errors: Vec<FieldError>,
        request: Option<Box<ValidatedRequest>>,
        summary: Option<String>,
    ) -> Plan {
        Plan::Reject {
            path: self.path,
            id: self.id,
            errors,
            request,
            summary,
            version: self.blob.id,
        }
    }
}

/// What one file turns into: the message to publish for it.
enum Plan {
    Reject {
        path: String,
        id: RequestId,
        errors: Vec<FieldError>,
        request: Option<Box<ValidatedRequest>>,
        summary: Option<String>,
        version: String,
    },
    Accept {
        path: String,
        id: RequestId,
        version: String,
        request: Box<ValidatedRequest>,
        trust: Trust,
    },
}

/// Why a file is rejected, and where it was added.
struct Rejection<'a> {
    errors: Vec<FieldError>,
    request: Option<Box<ValidatedRequest>>,
    summary: Option<String>,
    /// The commit that added the file.
    commit: &'a CommitId,
}

/// What the gateway established about who wrote a request, for the dispatcher.
struct Trust {
    verification: Verification,
    /// The policy's limit on the engineer's active requests.
    max_active_requests: Option<u32>,
}

impl Scanner<'_> {
    /// Publishes every request file of `range` up to `head`. Returns only when each file was
    /// published (with an acknowledgement) or deliberately skipped.
    ///
    /// The git work is batched: one listing of the range, one of the folder's blobs, and per
    /// chunk of [`CHUNK`] files one `cat-file --batch` for the contents, one walk of their
    /// history (signatures checked once per commit) and one for their adding commits. The
    /// publishes of a chunk are pipelined, [`IN_FLIGHT`] at a time.
    pub async fn scan(&self, range: &Range, head: &CommitId) -> Result<BTreeMap<String, Verdict>> {
        let blobs = self.mirror.blobs_in(head, PENDING).await?;
        let files = self.files(range, head, &blobs).await?;
        let Sorted {
            mut verdicts,
            mut candidates,
            named,
            repeats,
        } = sort_files(files, blobs);
        verdicts.extend(self.publish(named, head).await?);
        while !candidates.is_empty() {
            let rest = candidates.split_off(candidates.len().min(CHUNK));
            let chunk = std::mem::replace(&mut candidates, rest);
            let plans = self.judge(chunk, head).await?;
            verdicts.extend(self.publish(plans, head).await?);
        }
        for (change, path, id, blob) in repeats {
            // A notice when the first file with this id ran; when it was rejected, its
            // rejection answers the id.
            self.accepted_before(&path, &id, change, true, &blob, head)
                .await?;
            verdicts.insert(path, Verdict::Skipped);
        }
        Ok(verdicts)
    }

    /// The files of `range` under [`PENDING`], with how each changed: the range's listing,
    /// or every file of `blobs` (the folder at the head) in path order.
    async fn files(
        &self,
        range: &Range,
        head: &CommitId,
        blobs: &HashMap<String, Blob>,
    ) -> Result<Vec<(Change, String)>> {
        Ok(match range {
            Range::Since(from) => self.mirror.changed_files(from, head, PENDING).await?,
            Range::Everything => {
                let mut paths: Vec<String> = blobs.keys().cloned().collect();
                paths.sort();
                paths
                    .into_iter()
                    .map(|path| (Change::Present, path))
                    .collect()
            }
        })
    }

    /// Decides what each file of one chunk becomes; an `Err` is git or NATS failing, never
    /// a file's content.
    async fn judge(&self, chunk: Vec<Candidate>, head: &CommitId) -> Result<Vec<Plan>> {
        let chunk = self.new_requests(chunk, head).await?;
        let mut plans = Vec::with_capacity(chunk.len());
        let parsed = self.read_requests(chunk, &mut plans).await?;

        // Who wrote it comes first, so that a forged request learns nothing else.
        let mut signatures = match &self.verifier {
            Some(verifier) => {
                let paths: Vec<String> = parsed.iter().map(|(c, _)| c.path.clone()).collect();
                Some(self.verify(verifier, head, paths).await?)
            }
            None => None,
        };
        for (candidate, request) in parsed {
            let commits = signatures
                .as_mut()
                .map(|signatures| signatures.remove(&candidate.path).unwrap_or_default());
            plans.push(self.decide(candidate, request, commits));
        }
        Ok(plans)
    }

    /// The candidates of `chunk` that were not accepted before (see
    /// [`Scanner::accepted_before`]), their records read concurrently.
    async fn new_requests(&self, chunk: Vec<Candidate>, head: &CommitId) -> Result<Vec<Candidate>> {
        // The futures are made before they are streamed: a closure that makes them inside
        // the stream would not be `Send` for every lifetime, and the gateway's task must be.
        let reads: Vec<_> = chunk
            .iter()
            .map(|c| self.accepted_before(&c.path, &c.id, c.change, false, &c.blob, head))
            .collect();
        let accepted: Vec<bool> = stream::iter(reads)
            .buffered(IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(chunk
            .into_iter()
            .zip(accepted)
            .filter_map(|(candidate, before)| (!before).then_some(candidate))
            .collect())
    }

    /// Reads and parses the files of `chunk` in one `cat-file --batch`. A file too large to
    /// read or not a valid request gets its rejection pushed onto `plans`; the others are
    /// returned with their request.
    async fn read_requests(
        &self,
        chunk: Vec<Candidate>,
        plans: &mut Vec<Plan>,
    ) -> Result<Vec<(Candidate, Box<ValidatedRequest>)>> {
        let readable: Vec<&str> = chunk
            .iter()
            .filter(|c| c.blob.size <= MAX_FILE_BYTES as u64)
            .map(|c| c.blob.id.as_str())
            .collect();
        let contents = self.mirror.read_blobs(&readable).await?;
        let mut parsed = Vec::new();
        for candidate in chunk {
            if candidate.blob.size > MAX_FILE_BYTES as u64 {
                let errors = vec![FieldError {
                    field: String::new(),
                    message: format!(
                        "the file is {} bytes; request files may be at most {MAX_FILE_BYTES} bytes",
                        candidate.blob.size
                    ),
                }];
                plans.push(candidate.reject(errors, None, None));
                continue;
            }
            // Two files with the same content share one blob, so the bytes are cloned when
            // a second file asks for them.
            let bytes = match contents.get(&candidate.blob.id) {
                Some(bytes) => bytes.clone(),
                None => {
                    return Err(Error::Git(warroom_git::Error::Unexpected {
                        command: "git cat-file --batch".to_owned(),
                        dir: self.mirror.dir().display().to_string(),
                        detail: format!("no contents for the blob {}", candidate.blob.id),
                    }));
                }
            };
            match warroom_proto::parse_request(Path::new(&candidate.path), &bytes) {
                Ok(request) => parsed.push((candidate, Box::new(request))),
                Err(ValidationErrors { errors, .. }) => {
                    plans.push(candidate.reject(errors, None, None))
                }
            }
        }
        Ok(parsed)
    }

    /// What one parsed file becomes: refused by the policy (given the signatures of its
    /// `commits` when requests are verified) or by `--allowed-clusters`, else accepted.
    fn decide(
        &self,
        candidate: Candidate,
        mut request: Box<ValidatedRequest>,
        commits: Option<Vec<warroom_access::CommitSignature>>,
    ) -> Plan {
        if let Some(verifier) = &self.verifier {
            within_session_limits(&mut request, verifier.policy());
        }
        let mut trust = Trust {
            verification: Verification::unverified(),
            max_active_requests: None,
        };
        if let (Some(verifier), Some(commits)) = (&self.verifier, commits) {
            match self.authorize(verifier, &candidate.path, &request, &commits) {
                Ok(authorized) => trust = authorized,
                Err(refusal) => {
                    self.metrics
                        .policy_refusals
                        .get_or_create(&RefusalLabels {
                            code: refusal.code(),
                        })
                        .inc();
                    let errors = vec![FieldError {
                        field: refusal_field(&refusal, &request),
                        message: format!("{}: {refusal}", refusal.code()),
                    }];
                    return candidate.reject(errors, Some(request), Some(refusal.to_string()));
                }
            }
        }
        // A results folder always ends in the request id (`ResultsDir`), so two
        // requests can never share one.
        let errors = self.allowed(&request);
        if !errors.is_empty() {
            return candidate.reject(errors, Some(request), None);
        }
        Plan::Accept {
            path: candidate.path,
            id: candidate.id,
            version: candidate.blob.id,
            request,
            trust,
        }
    }

    /// The policy's verdict on the request of the file at `path`, given who signed its
    /// `commits`: what the dispatcher is told about its author, or why it is refused.
    fn authorize(
        &self,
        verifier: &Verifier,
        path: &str,
        request: &ValidatedRequest,
        commits: &[warroom_access::CommitSignature],
    ) -> std::result::Result<Trust, Refusal> {
        // The engineer's active requests are counted by the dispatcher, which holds
        // them: the policy's limit travels with the accepted request.
        let facts = RequestFacts::of(request, 0);
        let policy = verifier.policy();
        let authorized = warroom_access::authorize(policy, &facts, commits)?;
        debug!(file = %path, engineer = %authorized.engineer, commits = authorized.signers.len(), "signatures verified");
        let signed_by: BTreeSet<String> = commits
            .iter()
            .filter_map(|c| match &c.status {
                SignatureStatus::Good { fingerprint } => Some(fingerprint.clone()),
                _ => None,
            })
            .collect();
        Ok(Trust {
            verification: Verification {
                verified: true,
                signed_by: signed_by.into_iter().collect(),
            },
            max_active_requests: policy
                .engineer(&authorized.engineer)
                .and_then(|engineer| policy.max_concurrent_requests(engineer)),
        })
    }

    /// Publishes the messages of `plans`, [`IN_FLIGHT`] at a time, and returns each file's
    /// verdict once every one of them was acknowledged.
    async fn publish(&self, plans: Vec<Plan>, head: &CommitId) -> Result<Vec<(String, Verdict)>> {
        // The commit that added each file: where GitHub shows the request's state.
        let paths: Vec<&str> = plans
            .iter()
            .map(|plan| match plan {
                Plan::Accept { path, .. } | Plan::Reject { path, .. } => path.as_str(),
            })
            .collect();
        let commits = self.mirror.adding_commits(head, &paths).await?;
        let commits = &commits;
        let publishes: Vec<_> = plans
            .into_iter()
            .map(|plan| async move {
                match plan {
                    Plan::Reject {
                        path,
                        id,
                        errors,
                        request,
                        summary,
                        version,
                    } => {
                        let commit = commits.get(&path).unwrap_or(head);
                        let rejection = Rejection {
                            errors,
                            request,
                            summary,
                            commit,
                        };
                        let verdict = self.reject(&path, &id, rejection, &version).await?;
                        Ok((path, verdict))
                    }
                    Plan::Accept {
                        path,
                        id,
                        version,
                        request,
                        trust,
                    } => {
                        let commit = commits.get(&path).unwrap_or(head);
                        let verdict = self
                            .accept(&path, commit, id, &version, *request, trust)
                            .await?;
                        Ok((path, verdict))
                    }
                }
            })
            .collect();
        stream::iter(publishes)
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Publishes an accepted request and records it as accepted.
    async fn accept(
        &self,
        path: &str,
        commit: &str,
        id: RequestId,
        version: &str,
        request: ValidatedRequest,
        trust: Trust,
    ) -> Result<Verdict> {
        let clusters = request.clusters.len();
        let message = AcceptedRequest {
            id: id.clone(),
            commit: commit.to_owned(),
            results_dir: request.results_dir,
            request: request.request,
            verification: Some(trust.verification),
            max_active_requests: trust.max_active_requests,
            session: request.session,
        };
        let stored = self
            .bus
            .publish(&Subject::Request(id.clone()), Some(&id), &message)
            .await?;
        // Recorded after the publish: a crash in between publishes again (deduplicated) at
        // the next scan, and records it then.
        self.record_accepted(&id, version).await?;
        self.metrics.requests_accepted.inc();
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
        head: &CommitId,
    ) -> Result<bool> {
        let Some(accepted) = self.accepted_version(id).await? else {
            return Ok(false);
        };
        if accepted == blob.id {
            debug!(file = %path, request = %id, "already accepted; unchanged");
            return Ok(true);
        }
        let (kind, message) = if change == Change::Added || reused {
            self.metrics.request_ids_reused.inc();
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
            self.metrics.requests_changed_after_acceptance.inc();
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
        self.publish_notice(id, kind, path, blob, head, message)
            .await?;
        Ok(true)
    }

    /// Publishes a notice about the file `path` at `blob` for request `id`'s `status.json`.
    pub(crate) async fn publish_notice(
        &self,
        id: &RequestId,
        kind: NoticeKind,
        path: &str,
        blob: &Blob,
        head: &CommitId,
        message: String,
    ) -> Result<()> {
        let notice = RequestNotice {
            id: id.clone(),
            notice: Notice {
                kind,
                file: path.to_owned(),
                version: blob.id.clone(),
                commit: head.to_string(),
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
        Ok(())
    }

    /// The git object id of the file accepted under `id`, if a request was accepted there.
    pub(crate) async fn accepted_version(&self, id: &RequestId) -> Result<Option<String>> {
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

    /// Who signed the commits that added or changed each of `paths` up to `head`, in two
    /// git processes for the whole chunk ([`Verifier::commits_of_files`]). An `Err` is git
    /// failing (retried at the next poll).
    pub(crate) async fn verify(
        &self,
        verifier: &Arc<Verifier>,
        head: &CommitId,
        paths: Vec<String>,
    ) -> Result<BTreeMap<String, Vec<warroom_access::CommitSignature>>> {
        let verifier = Arc::clone(verifier);
        let repo = self.mirror.dir().to_path_buf();
        let range = CommitRange::UpTo { head: head.clone() };
        let what = || match paths.as_slice() {
            [one] => one.clone(),
            many => format!("{} request files", many.len()),
        };
        let file = what();
        tokio::task::spawn_blocking(move || verifier.commits_of_files(&repo, &range, &paths))
            .await
            .map_err(|e| Error::Verify {
                file: file.clone(),
                source: e.into(),
            })?
            .map_err(|e| Error::Verify {
                file,
                source: e.into(),
            })
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
            .filter(|(_, c)| !self.allowed_clusters.contains(&c.name))
            .map(|(i, c)| FieldError {
                field: cluster_field(request, i),
                message: format!(
                    "the cluster `{}` is not one this gateway may send requests to; allowed: {}",
                    c.name,
                    self.allowed_clusters
                        .iter()
                        .map(ClusterName::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
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
        rejection: Rejection<'_>,
        version: &str,
    ) -> Result<Verdict> {
        let Rejection {
            errors,
            request,
            summary,
            commit,
        } = rejection;
        let request = request.as_deref();
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
                commit: Some(commit.to_string()),
                revision: 1,
                updated_at: warroom_proto::now(),
                verification: None,
                notices: Vec::new(),
                cancelled: None,
                synthesis: None,
                session: None,
                turns: Vec::new(),
            },
            request: request.map(|r| RequestSummary::of(&r.request)),
            reports: BTreeMap::new(),
            synthesis: None,
        };
        let dedup = format!("{id}-rejected-{version}");
        self.bus
            .publish(&Subject::Status(id.clone()), Some(&dedup), &update)
            .await?;
        self.metrics.requests_rejected.inc();
        warn!(request = %id, file = %path, reason = %summary, "request rejected");
        Ok(Verdict::Rejected)
    }
}

/// The files of one scan, sorted before any of them is read.
struct Sorted {
    /// Files that are not request files, or not plain files: skipped.
    verdicts: BTreeMap<String, Verdict>,
    /// Request files to judge, in chunks of [`CHUNK`].
    candidates: Vec<Candidate>,
    /// Files rejected for their name alone.
    named: Vec<Plan>,
    /// Files whose id another file of this scan has (`<id>.yaml` and `<id>.yml`): looked
    /// at once the first one was published, and answered as a re-used id if it ran.
    repeats: Vec<(Change, String, RequestId, Blob)>,
}

/// Sorts the listed `files` by their names and `blobs` (the folder at the head), which
/// gives the candidates their contents' object ids.
fn sort_files(files: Vec<(Change, String)>, mut blobs: HashMap<String, Blob>) -> Sorted {
    let mut seen = HashSet::new();
    let mut sorted = Sorted {
        verdicts: BTreeMap::new(),
        candidates: Vec::new(),
        named: Vec::new(),
        repeats: Vec::new(),
    };
    for (change, path) in files {
        let Some(id) = request_file_id(&path) else {
            sorted.verdicts.insert(path, Verdict::Skipped);
            continue;
        };
        if !seen.insert(id.clone()) {
            warn!(file = %path, request = %id, "another file of the same push already has this request id");
            match blobs.remove(&path) {
                Some(blob) => sorted.repeats.push((change, path, id, blob)),
                None => {
                    sorted.verdicts.insert(path, Verdict::Skipped);
                }
            }
            continue;
        }
        // Whether the request was handled before is decided from the secure zone's own
        // state, never from files under `results/` that anyone who can push could plant:
        // the cursor, the records of accepted requests kept here, the stream's
        // deduplication by request id, and the dispatcher's state record, created once
        // per id.
        // A path git could not give us as UTF-8 cannot be read back by name.
        if path.contains(char::REPLACEMENT_CHARACTER) {
            let errors = vec![FieldError {
                field: String::new(),
                message: "the file name is not valid UTF-8".to_owned(),
            }];
            sorted.named.push(Plan::Reject {
                path,
                id,
                errors,
                request: None,
                summary: None,
                version: "name".to_owned(),
            });
            continue;
        }
        let Some(blob) = blobs.remove(&path) else {
            warn!(file = %path, "ignoring an entry that is not a plain file (a submodule?)");
            sorted.verdicts.insert(path, Verdict::Skipped);
            continue;
        };
        sorted.candidates.push(Candidate {
            path,
            change,
            id,
            blob,
        });
    }
    sorted
}

/// The first 12 characters of a git object id, for messages.
/// A session as the policy grants it: its duration cut to `defaults.maxSessionDuration`, its
/// budget `defaults.sessionBudgetUsd`, and each run's timeout and tools cut to its cluster's
/// ceilings (a session asks for none of its own, so it is narrowed rather than refused).
fn within_session_limits(request: &mut ValidatedRequest, policy: &warroom_access::WarroomPolicy) {
    let Some(terms) = request.session.as_mut() else {
        return;
    };
    let (duration, budget) = policy.session_terms(terms.duration_secs);
    terms.duration_secs = duration;
    terms.budget_usd = budget;
    let investigation = &mut request.request.spec.investigation;
    investigation.timeout = investigation.timeout.min(duration.max(1));
    for cluster in &request.clusters {
        let ceiling = warroom_access::ceiling(policy, cluster.name.as_str());
        if let Some(max) = ceiling.max_timeout_secs {
            investigation.timeout = investigation.timeout.min(max);
        }
        if let Some(tools) = &ceiling.tools {
            let narrowed: Vec<_> = investigation
                .allowed_tools
                .iter()
                .filter(|t| tools.contains(t))
                .copied()
                .collect();
            // None left: the policy's refusal (`tool_not_allowed`) says why.
            if !narrowed.is_empty() {
                investigation.allowed_tools = narrowed;
            }
        }
    }
}

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
            error!(file = %path, cause = %Chain(&e), "cannot derive a request id; ignoring the file");
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
