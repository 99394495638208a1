//! The follow-up files of one range of commits (`requests/ask/<id>/<turn>.yaml`), turned
//! into a `FollowUpOrder` for the dispatcher or a `follow_up_refused` notice in the request's
//! status.
//!
//! They are judged like cancel files (`cancels`): the request's owner is read from the
//! accepted version of its file the gateway recorded; with a policy, the commit that made the
//! follow-up file's current version must be signed by the engineer it names, who must own the
//! request or be an admin (`warroom_access::authorize_follow_up`). Without one every valid
//! follow-up of an accepted request is passed on, marked unverified.

use std::path::Path;

use tracing::{info, warn};
use warroom_git::CommitId;
use warroom_proto::followup::{
    ASK_DIR, MAX_FOLLOW_UP_FILE_BYTES, ValidatedFollowUp, parse_follow_up,
};
use warroom_proto::wire::FollowUpOrder;
use warroom_proto::{NoticeKind, RequestId, Subject};

use crate::Result;
use crate::mirror::Blob;
use crate::scan::{Range, Scanner};

/// What the gateway decided about one follow-up file.
enum Decision {
    /// Pass it on to the dispatcher (verified or not).
    Ask(Box<ValidatedFollowUp>, bool),
    /// Refused: answered in the request's status, nothing runs.
    Refuse(String),
    /// No request to answer in: logged only.
    Ignore,
}

impl Scanner<'_> {
    /// Reads every follow-up file of `range` up to `head` and publishes what each becomes,
    /// per request in the order of their turns. Returns how many files it looked at. An `Err`
    /// is git or NATS failing (the range is read again at the next poll; every publish
    /// carries a deduplication id).
    pub async fn scan_follow_ups(&self, range: &Range, head: &CommitId) -> Result<usize> {
        let blobs = self.mirror.blobs_below(head, ASK_DIR).await?;
        let mut paths: Vec<String> = match range {
            Range::Since(from) => self
                .mirror
                .changed_files(from, head, ASK_DIR)
                .await?
                .into_iter()
                .map(|(_, path)| path)
                .collect(),
            Range::Everything => blobs.keys().cloned().collect(),
        };
        paths.retain(|p| p.ends_with(".yaml") || p.ends_with(".yml"));
        // Exactly `requests/ask/<id>/<turn>.yaml`: a deeper file would otherwise be read as a
        // follow-up of the folder just above it.
        paths.retain(|p| {
            let direct = p.split('/').count() == 4;
            if !direct {
                warn!(file = %p, "ignoring a follow-up path that is not requests/ask/<id>/<turn>.yaml");
            }
            direct
        });
        // Turn 10 after turn 9: by folder, then by the number the stem holds.
        paths.sort_by_key(|p| {
            let path = Path::new(p);
            let folder = path.parent().map(Path::to_path_buf);
            let turn = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            (folder, turn, p.clone())
        });
        for path in &paths {
            let Some(blob) = blobs.get(path) else {
                warn!(file = %path, "ignoring a follow-up path that is not a plain file in requests/ask/<id>/");
                continue;
            };
            let (id, decision) = self.judge_follow_up(path, blob, head).await?;
            match (id, decision) {
                (Some(_), Decision::Ask(follow_up, verified)) => {
                    self.publish_follow_up(path, *follow_up, verified, blob, head)
                        .await?;
                }
                (Some(id), Decision::Refuse(message)) => {
                    warn!(request = %id, file = %path, reason = %message, "follow-up refused");
                    self.publish_notice(
                        &id,
                        NoticeKind::FollowUpRefused,
                        path,
                        blob,
                        head,
                        message,
                    )
                    .await?;
                }
                _ => {}
            }
        }
        Ok(paths.len())
    }

    /// Reads, validates and authorizes one follow-up file.
    async fn judge_follow_up(
        &self,
        path: &str,
        blob: &Blob,
        head: &CommitId,
    ) -> Result<(Option<RequestId>, Decision)> {
        let folder_id = Path::new(path)
            .parent()
            .and_then(Path::file_name)
            .and_then(|s| s.to_str())
            .and_then(|s| RequestId::new(s).ok());
        let parsed = self
            .read_small(
                path,
                blob,
                MAX_FOLLOW_UP_FILE_BYTES,
                "follow-up files",
                parse_follow_up,
            )
            .await?;
        let follow_up = match parsed {
            Ok(follow_up) => follow_up,
            Err(errors) => {
                warn!(file = %path, reason = %errors, "follow-up file refused: invalid");
                let known = match &folder_id {
                    Some(id) => self.accepted_version(id).await?.is_some(),
                    None => false,
                };
                let decision = if known {
                    Decision::Refuse(format!(
                        "the follow-up file {path} was refused: it is invalid ({}); nothing ran",
                        errors.summary()
                    ))
                } else {
                    Decision::Ignore
                };
                return Ok((folder_id, decision));
            }
        };
        let id = follow_up.id.clone();
        let Some(owner) = self.owner_of(&id).await? else {
            warn!(file = %path, request = %id, "a follow-up of a request this secure zone never accepted; ignored");
            return Ok((Some(id), Decision::Ignore));
        };
        let decision = match &self.verifier {
            None => Decision::Ask(Box::new(follow_up), false),
            Some(verifier) => {
                let commits = self.newest_signature(verifier, head, path).await?;
                let actor = &follow_up.follow_up.metadata.engineer;
                match warroom_access::authorize_follow_up(
                    verifier.policy(),
                    actor,
                    &owner,
                    &commits,
                ) {
                    Ok(()) => Decision::Ask(Box::new(follow_up), true),
                    Err(refusal) => Decision::Refuse(format!(
                        "the follow-up file {path} was refused ({}): {refusal}; nothing ran",
                        refusal.code()
                    )),
                }
            }
        };
        Ok((Some(id), decision))
    }

    async fn publish_follow_up(
        &self,
        path: &str,
        follow_up: ValidatedFollowUp,
        verified: bool,
        blob: &Blob,
        head: &CommitId,
    ) -> Result<()> {
        let id = follow_up.id.clone();
        let order = FollowUpOrder {
            id: id.clone(),
            turn: follow_up.turn,
            cluster: follow_up.follow_up.spec.cluster.clone(),
            prompt: follow_up.follow_up.spec.prompt.clone(),
            engineer: follow_up.follow_up.metadata.engineer.clone(),
            asked_at: follow_up.follow_up.metadata.timestamp,
            file: path.to_owned(),
            version: blob.id.clone(),
            commit: head.to_string(),
            verified,
        };
        info!(request = %id, file = %path, turn = order.turn, by = %order.engineer, verified, "follow-up authorized");
        let dedup = format!("{id}-ask-{}-{}", order.turn, blob.id);
        self.bus
            .publish(&Subject::Request(id), Some(&dedup), &order)
            .await?;
        Ok(())
    }
}
