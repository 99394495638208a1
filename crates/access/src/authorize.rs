//! The decision whether a request may run: pure, from the policy, the request's facts and
//! the signatures [`crate::Verifier`] found. No I/O, so every rule is tested directly.
//!
//! The checks run in this order, and the first that fails is the [`Refusal`]:
//!
//! 1. `metadata.engineer` is an engineer of the policy (`unknown_engineer`).
//! 2. At least one commit added or changed the file (`no_commits`), and every one of them
//!    carries a good signature (`unsigned`, `bad_signature`, `expired_key`, `revoked_key`,
//!    `cannot_check`) by a key of the policy (`unknown_key`) that belongs to that engineer
//!    (`other_engineer`); a trusted key counts for the engineer whose `emails` holds the
//!    commit's author email (`unattributed` when none does).
//! 3. The engineer may target every cluster of the request (`cluster_not_allowed`).
//! 4. Each cluster's ceilings hold: the timeout (`timeout_above_ceiling`) and the tools
//!    (`tool_not_allowed`).
//! 5. The engineer has fewer active requests than their limit (`too_many_requests`).
//!
//! Signatures come before everything else so that a forged request learns nothing about
//! the engineer's clusters or limits from its rejection.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use warroom_proto::{Tool, ValidatedRequest};

use crate::policy::{KeyOwner, WarroomPolicy};
use crate::signature::{CommitSignature, SignatureStatus, Signer};

/// What the decision needs to know about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    /// `metadata.engineer`.
    pub engineer: String,
    /// The target clusters' names.
    pub clusters: Vec<String>,
    /// `spec.investigation.timeout`, in seconds.
    pub timeout_secs: u64,
    /// `spec.investigation.allowedTools`.
    pub tools: Vec<Tool>,
    /// How many other requests of this engineer are active (accepted and not finished).
    pub active_requests: usize,
}

impl RequestFacts {
    /// The facts of a validated request; `active_requests` comes from the caller's state.
    pub fn of(request: &ValidatedRequest, active_requests: usize) -> RequestFacts {
        let investigation = &request.request.spec.investigation;
        RequestFacts {
            engineer: request.request.metadata.engineer.clone(),
            clusters: request
                .clusters
                .iter()
                .map(|c| c.name.to_string())
                .collect(),
            timeout_secs: investigation.timeout,
            tools: investigation.allowed_tools.clone(),
            active_requests,
        }
    }
}

/// The ceilings that apply to one cluster (the tightest of every matching rule).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ceiling {
    /// Longest timeout, in seconds; `None` when no rule sets one.
    pub max_timeout_secs: Option<u64>,
    /// The only tools allowed; `None` when no rule restricts them.
    pub tools: Option<BTreeSet<Tool>>,
}

/// A request the policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The engineer, as the policy names them.
    pub engineer: String,
    /// Each commit that added or changed the file, and who signed it.
    pub signers: Vec<(String, Signer)>,
    /// The ceilings of each target cluster, for the runner to enforce as well.
    pub ceilings: BTreeMap<String, Ceiling>,
}

/// Why a request may not run (or a cancellation may not happen).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the engineer `{engineer}` (metadata.engineer) is not in the secure zone's policy")]
    UnknownEngineer { engineer: String },
    #[error("no commit in the range added or changed the request file, so none can vouch for it")]
    NoCommits,
    #[error(
        "commit {commit} added or changed the request file without a signature; every such \
         commit must be signed (SSH or GPG) by the engineer"
    )]
    Unsigned { commit: String },
    #[error("commit {commit} has a bad signature (it does not match the commit's content)")]
    BadSignature { commit: String },
    #[error("commit {commit} is signed with an expired key or signature ({fingerprint})")]
    ExpiredKey { commit: String, fingerprint: String },
    #[error("commit {commit} is signed with a revoked key ({fingerprint})")]
    RevokedKey { commit: String, fingerprint: String },
    #[error("the signature of commit {commit} could not be checked: {detail}")]
    CannotCheck { commit: String, detail: String },
    #[error("commit {commit} is signed with the key {fingerprint}, which the policy does not list")]
    UnknownKey { commit: String, fingerprint: String },
    #[error(
        "commit {commit} is signed with a key of `{key_owner}`, not of `{engineer}` who is \
         named in metadata.engineer"
    )]
    KeyOfAnotherEngineer {
        commit: String,
        key_owner: String,
        engineer: String,
    },
    #[error(
        "commit {commit} is signed by the trusted key `{key}`, but its author email \
         `{author_email}` is not one of any engineer's `emails`"
    )]
    Unattributed {
        commit: String,
        key: String,
        author_email: String,
    },
    #[error("the engineer `{engineer}` may not target the cluster `{cluster}`")]
    ClusterNotAllowed { engineer: String, cluster: String },
    #[error(
        "the timeout of {timeout_secs} s is above the ceiling of {ceiling_secs} s for the \
         cluster `{cluster}`"
    )]
    TimeoutAboveCeiling {
        cluster: String,
        timeout_secs: u64,
        ceiling_secs: u64,
    },
    #[error("the tool `{}` is not allowed on the cluster `{cluster}`; allowed: {}", .tool.as_str(), tool_list(.allowed))]
    ToolNotAllowed {
        cluster: String,
        tool: Tool,
        allowed: Vec<Tool>,
    },
    #[error("the engineer `{engineer}` already has {active} active {}; the limit is {limit}", if *.active == 1 { "request" } else { "requests" })]
    TooManyRequests {
        engineer: String,
        active: usize,
        limit: u32,
    },
    #[error(
        "`{actor}` may not cancel a request of `{owner}`; only the owner and the policy's \
         admins may"
    )]
    NotAllowedToCancel { actor: String, owner: String },
    #[error(
        "`{actor}` may not ask follow-up questions of a request of `{owner}`; only the owner \
         and the policy's admins may"
    )]
    NotAllowedToAsk { actor: String, owner: String },
}

fn tool_list(tools: &[Tool]) -> String {
    if tools.is_empty() {
        return "none".to_owned();
    }
    tools
        .iter()
        .map(|t| format!("`{}`", t.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Refusal {
    /// A stable machine code, for `status.json` and metrics; never renamed.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownEngineer { .. } => "unknown_engineer",
            Refusal::NoCommits => "no_commits",
            Refusal::Unsigned { .. } => "unsigned",
            Refusal::BadSignature { .. } => "bad_signature",
            Refusal::ExpiredKey { .. } => "expired_key",
            Refusal::RevokedKey { .. } => "revoked_key",
            Refusal::CannotCheck { .. } => "cannot_check",
            Refusal::UnknownKey { .. } => "unknown_key",
            Refusal::KeyOfAnotherEngineer { .. } => "other_engineer",
            Refusal::Unattributed { .. } => "unattributed",
            Refusal::ClusterNotAllowed { .. } => "cluster_not_allowed",
            Refusal::TimeoutAboveCeiling { .. } => "timeout_above_ceiling",
            Refusal::ToolNotAllowed { .. } => "tool_not_allowed",
            Refusal::TooManyRequests { .. } => "too_many_requests",
            Refusal::NotAllowedToCancel { .. } => "not_allowed_to_cancel",
            Refusal::NotAllowedToAsk { .. } => "not_allowed_to_ask",
        }
    }

    /// Every code, in the order the checks run.
    pub const CODES: [&'static str; 16] = [
        "unknown_engineer",
        "no_commits",
        "unsigned",
        "bad_signature",
        "expired_key",
        "revoked_key",
        "cannot_check",
        "unknown_key",
        "other_engineer",
        "unattributed",
        "cluster_not_allowed",
        "timeout_above_ceiling",
        "tool_not_allowed",
        "too_many_requests",
        "not_allowed_to_cancel",
        "not_allowed_to_ask",
    ];
}

/// Decides whether a request may run. `commits` are the signatures of every commit that
/// added or changed the request file ([`crate::Verifier::commits`]).
pub fn authorize(
    policy: &WarroomPolicy,
    request: &RequestFacts,
    commits: &[CommitSignature],
) -> Result<Authorized, Refusal> {
    let engineer = policy
        .engineer(&request.engineer)
        .ok_or_else(|| Refusal::UnknownEngineer {
            engineer: request.engineer.clone(),
        })?;
    let signers = signed_by(policy, engineer.name.as_str(), commits)?;

    for cluster in &request.clusters {
        if !engineer.may_target(cluster) {
            return Err(Refusal::ClusterNotAllowed {
                engineer: request.engineer.clone(),
                cluster: cluster.clone(),
            });
        }
    }

    let mut ceilings = BTreeMap::new();
    for cluster in &request.clusters {
        let ceiling = ceiling(policy, cluster);
        if let Some(max) = ceiling.max_timeout_secs
            && request.timeout_secs > max
        {
            return Err(Refusal::TimeoutAboveCeiling {
                cluster: cluster.clone(),
                timeout_secs: request.timeout_secs,
                ceiling_secs: max,
            });
        }
        if let Some(allowed) = &ceiling.tools
            && let Some(tool) = request.tools.iter().find(|t| !allowed.contains(t))
        {
            return Err(Refusal::ToolNotAllowed {
                cluster: cluster.clone(),
                tool: *tool,
                allowed: allowed.iter().copied().collect(),
            });
        }
        ceilings.insert(cluster.clone(), ceiling);
    }

    if let Some(limit) = policy.max_concurrent_requests(engineer)
        && request.active_requests >= limit as usize
    {
        return Err(Refusal::TooManyRequests {
            engineer: request.engineer.clone(),
            active: request.active_requests,
            limit,
        });
    }

    Ok(Authorized {
        engineer: engineer.name.to_string(),
        signers,
        ceilings,
    })
}

/// Decides whether `actor` may cancel a request of `owner`: the owner and admins may. The
/// commits are those that added the cancellation, checked like a request's: every one must
/// be signed by `actor`.
pub fn authorize_cancel(
    policy: &WarroomPolicy,
    actor: &str,
    owner: &str,
    commits: &[CommitSignature],
) -> Result<(), Refusal> {
    let engineer = policy
        .engineer(actor)
        .ok_or_else(|| Refusal::UnknownEngineer {
            engineer: actor.to_owned(),
        })?;
    signed_by(policy, engineer.name.as_str(), commits)?;
    if actor == owner || policy.is_admin(actor) {
        Ok(())
    } else {
        Err(Refusal::NotAllowedToCancel {
            actor: actor.to_owned(),
            owner: owner.to_owned(),
        })
    }
}

/// Decides whether `actor` may ask a follow-up question of a request of `owner`: the commit
/// that made the follow-up file must be signed by `actor`, who must own the request or be an
/// admin (as for a cancel: a follow-up runs the owner's agent again, on the owner's
/// clusters).
pub fn authorize_follow_up(
    policy: &WarroomPolicy,
    actor: &str,
    owner: &str,
    commits: &[CommitSignature],
) -> Result<(), Refusal> {
    match authorize_cancel(policy, actor, owner, commits) {
        Err(Refusal::NotAllowedToCancel { actor, owner }) => {
            Err(Refusal::NotAllowedToAsk { actor, owner })
        }
        other => other,
    }
}

/// The ceilings of one cluster: the lowest timeout and the common tools of every rule whose
/// pattern matches it.
pub fn ceiling(policy: &WarroomPolicy, cluster: &str) -> Ceiling {
    let mut ceiling = Ceiling::default();
    for rule in policy.clusters.iter().filter(|r| r.name.matches(cluster)) {
        if let Some(max) = rule.max_timeout {
            ceiling.max_timeout_secs = Some(ceiling.max_timeout_secs.map_or(max, |m| m.min(max)));
        }
        if let Some(tools) = &rule.tools {
            let tools: BTreeSet<Tool> = tools.iter().copied().collect();
            ceiling.tools = Some(match ceiling.tools {
                None => tools,
                Some(before) => before.intersection(&tools).copied().collect(),
            });
        }
    }
    ceiling
}

/// Checks that every commit is signed by `engineer` and says by which key.
fn signed_by(
    policy: &WarroomPolicy,
    engineer: &str,
    commits: &[CommitSignature],
) -> Result<Vec<(String, Signer)>, Refusal> {
    if commits.is_empty() {
        return Err(Refusal::NoCommits);
    }
    let mut signers = Vec::with_capacity(commits.len());
    for signature in commits {
        // A refusal is a message (its text reaches the status file), so it keeps the id as text.
        let commit = signature.commit.to_string();
        let fingerprint = match &signature.status {
            SignatureStatus::Good { fingerprint } => fingerprint,
            SignatureStatus::Unsigned => return Err(Refusal::Unsigned { commit }),
            SignatureStatus::Bad { .. } => return Err(Refusal::BadSignature { commit }),
            SignatureStatus::Expired { fingerprint } => {
                return Err(Refusal::ExpiredKey {
                    commit,
                    fingerprint: fingerprint.clone(),
                });
            }
            SignatureStatus::Revoked { fingerprint } => {
                return Err(Refusal::RevokedKey {
                    commit,
                    fingerprint: fingerprint.clone(),
                });
            }
            SignatureStatus::CannotCheck { detail } => {
                return Err(Refusal::CannotCheck {
                    commit,
                    detail: detail.clone(),
                });
            }
            SignatureStatus::UnknownKey { fingerprint } => {
                return Err(Refusal::UnknownKey {
                    commit,
                    fingerprint: fingerprint.clone(),
                });
            }
        };
        // The verifier maps keys against the policy it was built with; mapping again here
        // keeps the decision right if the caller pairs signatures with a newer policy.
        let signer = match policy.key_owner(fingerprint) {
            None => {
                return Err(Refusal::UnknownKey {
                    commit,
                    fingerprint: fingerprint.clone(),
                });
            }
            Some(KeyOwner::Engineer(owner)) if owner.name.as_str() == engineer => {
                Signer::Engineer(engineer.to_owned())
            }
            Some(KeyOwner::Engineer(owner)) => {
                return Err(Refusal::KeyOfAnotherEngineer {
                    commit,
                    key_owner: owner.name.to_string(),
                    engineer: engineer.to_owned(),
                });
            }
            Some(KeyOwner::Trusted(key)) => {
                match policy.engineer_by_email(&signature.author_email) {
                    Some(owner) if owner.name.as_str() == engineer => Signer::Trusted {
                        key: key.name.to_string(),
                        author_email: signature.author_email.clone(),
                    },
                    Some(owner) => {
                        return Err(Refusal::KeyOfAnotherEngineer {
                            commit,
                            key_owner: owner.name.to_string(),
                            engineer: engineer.to_owned(),
                        });
                    }
                    None => {
                        return Err(Refusal::Unattributed {
                            commit,
                            key: key.name.to_string(),
                            author_email: signature.author_email.clone(),
                        });
                    }
                }
            }
        };
        signers.push((commit, signer));
    }
    Ok(signers)
}

impl fmt::Display for Ceiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max_timeout_secs {
            Some(max) => write!(f, "timeout at most {max} s")?,
            None => f.write_str("no timeout ceiling")?,
        }
        match &self.tools {
            Some(tools) => {
                let tools: Vec<Tool> = tools.iter().copied().collect();
                write!(f, ", tools: {}", tool_list(&tools))
            }
            None => f.write_str(", any tool"),
        }
    }
}
