//! The cancel files of one range of commits (`requests/cancel/<id>.yaml`), turned into a
//! `CancelOrder` for the dispatcher or a `cancel_refused` notice in the request's status.
//!
//! Who owns the request is read from the secure zone's own state: the accepted version of the
//! request file that the gateway recorded when it accepted it (never the file as it is now,
//! which anyone who can push may have changed). With a policy, the commit that made the cancel
//! file's current version must be signed by the engineer it names, who must own the request
//! or be an admin (`warroom_access::authorize_cancel`). Without one (`--insecure-allow-unsigned`)
//! every valid cancel of an accepted request is passed on, marked unverified, as every
//! request is run unverified then.

use std::path::Path;

use tracing::{info, warn};
use warroom_access::Refusal;
use warroom_git::CommitId;
use warroom_proto::cancel::{CANCEL_DIR, MAX_CANCEL_FILE_BYTES, ValidatedCancel, parse_cancel};
use warroom_proto::{
    CancelOrder, Cancellation, FieldError, NoticeKind, RequestId, Subject, ValidationErrors,
};

use crate::Result;
use crate::mirror::Blob;
use crate::scan::{Range, Scanner};

/// What the gateway decided about one cancel file.
enum Decision {
    /// Pass it on to the dispatcher.
    Order(Cancellation),
    /// Refused: answered in the request's status, nothing else changes.
    Refuse(String),
    /// No request to answer in (no usable id, or an id never accepted): logged only.
    Ignore,
}

impl Scanner<'_> {
    /// Reads every cancel file of `range` up to `head` and publishes what each becomes.
    /// Returns how many files it looked at. An `Err` is git or NATS failing (the whole range
    /// is read again at the next poll; every publish carries a deduplication id).
    pub async fn scan_cancels(&self, range: &Range, head: &CommitId) -> Result<usize> {
        let blobs = self.mirror.blobs_in(head, CANCEL_DIR).await?;
        let mut paths: Vec<String> = match range {
            Range::Since(from) => self
                .mirror
                .changed_files(from, head, CANCEL_DIR)
                .await?
                .into_iter()
                .map(|(_, path)| path)
                .collect(),
            Range::Everything => blobs.keys().cloned().collect(),
        };
        // Like request files: only `.yaml`/`.yml` files count (a README may sit there).
        paths.retain(|p| p.ends_with(".yaml") || p.ends_with(".yml"));
        paths.sort();
        for path in &paths {
            let Some(blob) = blobs.get(path) else {
                warn!(file = %path, "ignoring a cancel path that is not a plain file directly in requests/cancel/");
                continue;
            };
            let (id, decision) = self.judge_cancel(path, blob, head).await?;
            match (id, decision) {
                (Some(id), Decision::Order(cancel)) => {
                    self.publish_order(id, cancel, blob, head).await?
                }
                (Some(id), Decision::Refuse(message)) => {
                    self.refuse_cancel(path, &id, message, blob, head).await?
                }
                _ => {}
            }
        }
        Ok(paths.len())
    }

    /// Reads, validates and authorizes one cancel file.
    async fn judge_cancel(
        &self,
        path: &str,
        blob: &Blob,
        head: &CommitId,
    ) -> Result<(Option<RequestId>, Decision)> {
        let stem_id = Path::new(path)
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| RequestId::new(s).ok());
        let parsed = self
            .read_small(
                path,
                blob,
                MAX_CANCEL_FILE_BYTES,
                "cancel files",
                parse_cancel,
            )
            .await?;
        let cancel = match parsed {
            Ok(cancel) => cancel,
            Err(errors) => {
                warn!(file = %path, reason = %errors, "cancel file refused: invalid");
                // Answered in the request's status.json only when there is such a request:
                // a notice about an id nobody requested could never be applied.
                let known = match &stem_id {
                    Some(id) => self.accepted_version(id).await?.is_some(),
                    None => false,
                };
                let decision = if known {
                    Decision::Refuse(format!(
                        "the cancel file {path} was refused: it is invalid ({}); nothing was cancelled",
                        errors.summary()
                    ))
                } else {
                    Decision::Ignore
                };
                return Ok((stem_id, decision));
            }
        };
        let id = cancel.id.clone();
        let Some(owner) = self.owner_of(&id).await? else {
            warn!(file = %path, request = %id, "a cancel of a request this secure zone never accepted; ignored");
            return Ok((Some(id), Decision::Ignore));
        };
        let decision = match &self.verifier {
            None => Decision::Order(cancellation(path, &cancel, false)),
            Some(verifier) => {
                let commits = self.newest_signature(verifier, head, path).await?;
                let actor = &cancel.cancel.metadata.engineer;
                match warroom_access::authorize_cancel(verifier.policy(), actor, &owner, &commits) {
                    Ok(()) => Decision::Order(cancellation(path, &cancel, true)),
                    Err(refusal) => Decision::Refuse(refused(path, &refusal)),
                }
            }
        };
        Ok((Some(id), decision))
    }

    /// Reads and parses a small file of an engineer (a cancel, a follow-up) with `parse`; one
    /// over `max` bytes is refused without being read.
    pub(crate) async fn read_small<T>(
        &self,
        path: &str,
        blob: &Blob,
        max: usize,
        what: &str,
        parse: impl Fn(&Path, &[u8]) -> std::result::Result<T, ValidationErrors>,
    ) -> Result<std::result::Result<T, ValidationErrors>> {
        if blob.size > max as u64 {
            return Ok(Err(ValidationErrors {
                file: path.to_owned(),
                errors: vec![FieldError {
                    field: String::new(),
                    message: format!(
                        "the file is {} bytes; {what} may be at most {max} bytes",
                        blob.size
                    ),
                }],
            }));
        }
        let contents = self.mirror.read_blobs(&[blob.id.as_str()]).await?;
        let bytes = contents.get(&blob.id).cloned().unwrap_or_default();
        Ok(parse(Path::new(path), &bytes))
    }

    /// The signature of the commit that made the current version of `path`. Only that commit
    /// vouches for it: every version is judged once, when it is seen, so an earlier writer's
    /// refused file does not block the owner's or an admin's later one, and nobody can make a
    /// version another engineer signed.
    pub(crate) async fn newest_signature(
        &self,
        verifier: &std::sync::Arc<warroom_access::Verifier>,
        head: &CommitId,
        path: &str,
    ) -> Result<Vec<warroom_access::CommitSignature>> {
        let mut signatures = self.verify(verifier, head, vec![path.to_owned()]).await?;
        let mut commits = signatures.remove(path).unwrap_or_default();
        commits.truncate(1);
        Ok(commits)
    }

    /// The engineer named in the request file that was accepted under `id`, read from the
    /// version the gateway recorded; `None` when no request was accepted under `id`.
    pub(crate) async fn owner_of(&self, id: &RequestId) -> Result<Option<String>> {
        let Some(version) = self.accepted_version(id).await? else {
            return Ok(None);
        };
        let contents = self.mirror.read_blobs(&[version.as_str()]).await?;
        let path = format!("requests/pending/{id}.yaml");
        let owner = contents
            .get(&version)
            .and_then(|bytes| warroom_proto::parse_request(Path::new(&path), bytes).ok())
            .map(|request| request.request.metadata.engineer);
        if owner.is_none() {
            warn!(request = %id, version = %version, "cannot read the accepted request file to tell who owns it");
        }
        Ok(owner)
    }

    async fn publish_order(
        &self,
        id: RequestId,
        cancel: Cancellation,
        blob: &Blob,
        head: &CommitId,
    ) -> Result<()> {
        info!(request = %id, file = %cancel.file, by = %cancel.by, verified = cancel.verified, "cancel authorized");
        let order = CancelOrder {
            id: id.clone(),
            cancel,
            version: blob.id.clone(),
            commit: head.to_string(),
        };
        let dedup = format!("{id}-cancel-{}", blob.id);
        self.bus
            .publish(&Subject::Request(id), Some(&dedup), &order)
            .await?;
        Ok(())
    }

    async fn refuse_cancel(
        &self,
        path: &str,
        id: &RequestId,
        message: String,
        blob: &Blob,
        head: &CommitId,
    ) -> Result<()> {
        warn!(request = %id, file = %path, reason = %message, "cancel refused");
        self.publish_notice(id, NoticeKind::CancelRefused, path, blob, head, message)
            .await
    }
}

fn cancellation(path: &str, cancel: &ValidatedCancel, verified: bool) -> Cancellation {
    Cancellation {
        by: cancel.cancel.metadata.engineer.clone(),
        requested_at: cancel.cancel.metadata.timestamp,
        // The dispatcher sets the time it ended the request.
        at: cancel.cancel.metadata.timestamp,
        reason: cancel.cancel.spec.reason.clone(),
        file: path.to_owned(),
        verified,
    }
}

fn refused(path: &str, refusal: &Refusal) -> String {
    format!(
        "the cancel file {path} was refused ({}): {refusal}; nothing was cancelled",
        refusal.code()
    )
}
