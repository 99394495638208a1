//! Finds who signed each commit that added or changed a request file, with the real `git`,
//! trusting only the keys of the policy.
//!
//! [`Verifier::new`] writes, through `warroom_git::signature::Signers`, an allowed-signers
//! file with every OpenSSH key of the policy (principal: the engineer's or trusted key's
//! name) and a GnuPG home holding only the policy's `gpgPublicKeys`. [`Verifier::commits`] then runs one
//! `git log --format=%G?...` over the commits that touched the file, with a clean
//! environment and every signing-related setting given on the command line, so neither the
//! user's nor the repository's configuration (`gpg.program`, `log.showSignature`, another
//! allowed-signers file, a replace ref) can widen trust or change what is read.
//!
//! What "the commits that touched the file" means, exactly: `git log <range> -- <path>` with
//! git's default history simplification and no `--follow`. That lists every commit whose
//! change to the file survives at the head: a merge that took one side's version of the file
//! is TREESAME to that side, so git follows only that side, and the other side's discarded
//! edits are not shown (they are not in the file being run). A merge whose version differs
//! from every parent (a conflict resolution, an "evil merge") is listed itself and must be
//! signed like any other commit. `--full-history` would also list the discarded side's
//! commits and refuse requests for text that is not in them, so it is not used. A rename
//! into `requests/pending/` is listed as the commit that added the path: its signer vouches
//! for the content it moved, and the history of the old path is not followed.
//!
//! Everything here blocks on child processes; async callers wrap it in `spawn_blocking`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use warroom_git::CommitId;
pub use warroom_git::signature::CommitRange;
use warroom_git::signature::{Signature, Signers};

use crate::policy::{KeyOwner, KeyRef, WarroomPolicy};
use crate::{Error, Result};

/// What git's verification said about one commit, mapped against the policy's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// No signature (`%G?` = `N`).
    Unsigned,
    /// A signature that does not match the commit (`B`): tampered, or a broken signer.
    Bad { fingerprint: Option<String> },
    /// A good signature by a key that has expired, or a signature that has (`X`, `Y`).
    Expired { fingerprint: String },
    /// A good signature by a revoked key (`R`).
    Revoked { fingerprint: String },
    /// A valid signature by a key the policy does not list: SSH `U` (valid, not in the
    /// allowed signers), or GPG `E` with a key id (the key is not in our keyring).
    UnknownKey { fingerprint: String },
    /// git could not check the signature and named no key (`E`), or reported something
    /// this crate does not expect; `detail` says what.
    CannotCheck { detail: String },
    /// A signature git verified with a key of the policy; `fingerprint` is that key's, as
    /// the policy lists it, so [`WarroomPolicy::key_owner`] finds its owner.
    Good { fingerprint: String },
}

/// The signature of one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSignature {
    pub commit: CommitId,
    pub status: SignatureStatus,
    /// The commit's author email, which names the engineer when a `trustedKeys` key (a
    /// hosting provider's web-flow key) signed the commit.
    pub author_email: String,
}

/// Who a commit's signature names, once checked against the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// A key of this engineer.
    Engineer(String),
    /// A trusted key (by its name) vouching for the commit's author email.
    Trusted { key: String, author_email: String },
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Engineer(name) => write!(f, "engineer `{name}`"),
            Signer::Trusted { key, author_email } => {
                write!(f, "trusted key `{key}` for author {author_email}")
            }
        }
    }
}

/// Verifies commit signatures against one policy's keys. Build one per policy version (at
/// load and at every reload); it owns a private temporary folder removed on drop.
#[derive(Debug)]
pub struct Verifier {
    policy: WarroomPolicy,
    signers: Signers,
}

impl Verifier {
    /// Prepares the allowed-signers file and the GnuPG keyring for `policy`. Fails when gpg
    /// cannot import `gpgPublicKeys`, or when a listed GPG fingerprint has no public key
    /// there: a policy whose keys cannot be checked is refused at load, not at the first
    /// request.
    pub fn new(policy: &WarroomPolicy) -> Result<Verifier> {
        let owners = policy
            .engineers
            .iter()
            .map(|e| (e.name.as_str(), &e.keys))
            .chain(
                policy
                    .trusted_keys
                    .iter()
                    .map(|t| (t.name.as_str(), &t.keys)),
            );
        let ssh_keys = owners.flat_map(|(principal, keys)| {
            keys.iter().filter_map(move |key| match key.key() {
                KeyRef::Ssh(key) => Some((principal, key)),
                KeyRef::Gpg { .. } => None,
            })
        });
        let verifier = Verifier {
            policy: policy.clone(),
            signers: Signers::new(ssh_keys)?,
        };
        verifier.import_gpg_keys()?;
        Ok(verifier)
    }

    /// The policy this verifier checks against.
    pub fn policy(&self) -> &WarroomPolicy {
        &self.policy
    }

    /// The private folder holding the allowed-signers file and the GnuPG home.
    pub fn dir(&self) -> &Path {
        self.signers.dir()
    }

    /// Every commit in `range` that added or changed `path` in the repository `repo` (a bare
    /// mirror or a clone), newest first, with its verified signature. See the module
    /// documentation for which commits that is.
    pub fn commits(
        &self,
        repo: &Path,
        range: &CommitRange,
        path: &str,
    ) -> Result<Vec<CommitSignature>> {
        self.signers
            .signatures(repo, range, &[path])?
            .into_iter()
            .map(|signature| self.judge(signature))
            .collect()
    }

    /// [`Verifier::commits`] for many files at once, in two git processes whatever their
    /// number: one `git log` over `range` limited to `paths` names the commits that touched
    /// each of them, then one `git log --no-walk` verifies the signature of each of those
    /// commits once (a commit that added a thousand files is checked once, not a thousand
    /// times). Returns every path of `paths`, each with its commits newest first; a path no
    /// commit touched has none.
    ///
    /// The walk simplifies history against the set of `paths` rather than each path alone.
    /// Without merges the two are the same. At a merge git follows a parent whose version
    /// of the whole set is the merge's: every file's version there is the merge's too, so
    /// each file's content is still traced through commits that produced it, and a merge
    /// whose version of a file differs from every parent is still listed for that file
    /// (`-c` names exactly those files). The only difference is stricter: where a merge
    /// differs from every parent in some other file of the set, both sides are walked, and
    /// an edit to this file discarded on one side is listed too.
    pub fn commits_of_files(
        &self,
        repo: &Path,
        range: &CommitRange,
        paths: &[String],
    ) -> Result<BTreeMap<String, Vec<CommitSignature>>> {
        let mut touched: BTreeMap<String, Vec<CommitId>> =
            paths.iter().map(|p| (p.clone(), Vec::new())).collect();
        if paths.is_empty() {
            return Ok(BTreeMap::new());
        }
        let revisions = range.revisions();
        let mut args = vec![
            "--literal-pathspecs",
            "log",
            "-z",
            "--no-show-signature",
            "--no-renames",
            "--name-only",
            "-c",
            "--format=%x1e%H",
            "--end-of-options",
            &revisions,
            "--",
        ];
        args.extend(paths.iter().map(String::as_str));
        let git = self.signers.git(repo);
        let stdout = git.run_bytes(&args)?;
        let mut order = Vec::new();
        for record in stdout.split(|b| *b == 0x1e).filter(|r| !r.is_empty()) {
            let mut parts = record
                .split(|b| *b == 0)
                .map(|part| String::from_utf8_lossy(part).trim_matches('\n').to_owned())
                .filter(|part| !part.is_empty());
            let Some(commit) = parts.next() else { continue };
            let commit = git.commit_id(&args, &commit)?;
            let mut any = false;
            for path in parts {
                if let Some(commits) = touched.get_mut(&path) {
                    commits.push(commit.clone());
                    any = true;
                }
            }
            if any {
                order.push(commit);
            }
        }
        let signatures = self.signatures(repo, &order)?;
        touched
            .into_iter()
            .map(|(path, commits)| {
                let commits = commits
                    .iter()
                    .map(|commit| {
                        signatures
                            .get(commit)
                            .cloned()
                            .ok_or_else(|| Error::Unexpected {
                                command: "git log --no-walk".to_owned(),
                                detail: format!("no record for the commit {commit}"),
                            })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((path, commits))
            })
            .collect()
    }

    /// The verified signature of each of `commits`, one git process.
    fn signatures(
        &self,
        repo: &Path,
        commits: &[CommitId],
    ) -> Result<BTreeMap<CommitId, CommitSignature>> {
        self.signers
            .signatures_of(repo, commits)?
            .into_iter()
            .map(|signature| {
                let signature = self.judge(signature)?;
                Ok((signature.commit.clone(), signature))
            })
            .collect()
    }

    /// git's verdict on one commit, mapped against the policy's keys.
    fn judge(&self, signature: Signature) -> Result<CommitSignature> {
        let code = signature.code.as_str();
        let (signing_fpr, primary_fpr, key, principal) = (
            signature.signing_key.as_str(),
            signature.primary_key.as_str(),
            signature.key.as_str(),
            signature.signer.as_str(),
        );
        let named = [primary_fpr, signing_fpr, key]
            .into_iter()
            .find(|f| !f.is_empty())
            .map(str::to_owned);
        // The policy's fingerprint of the key, whether git named the primary key, the
        // signing subkey (GPG) or the key itself (SSH).
        let known = [primary_fpr, signing_fpr, key]
            .into_iter()
            .filter(|f| !f.is_empty())
            .find_map(|f| {
                // The policy writes GPG fingerprints in upper case; SSH ones are base64, where
                // case matters.
                let fingerprint = if f.starts_with("SHA256:") {
                    f.to_owned()
                } else {
                    f.to_ascii_uppercase()
                };
                self.policy.key_owner(f).map(|owner| (fingerprint, owner))
            });
        let status = match (code, known) {
            ("N", _) => SignatureStatus::Unsigned,
            ("B", _) => SignatureStatus::Bad { fingerprint: named },
            ("X" | "Y", _) => SignatureStatus::Expired {
                fingerprint: named.unwrap_or_default(),
            },
            ("R", _) => SignatureStatus::Revoked {
                fingerprint: named.unwrap_or_default(),
            },
            ("G" | "U", Some((_, owner))) if key.starts_with("SHA256:") => {
                // SSH: `G` is only given for a key found in the allowed-signers file, and
                // the principal git found must be the one this policy gave the key.
                let name = match owner {
                    KeyOwner::Engineer(e) => e.name.as_str(),
                    KeyOwner::Trusted(t) => t.name.as_str(),
                };
                if code == "G" && principal == name {
                    SignatureStatus::Good {
                        fingerprint: key.to_owned(),
                    }
                } else {
                    SignatureStatus::CannotCheck {
                        detail: format!(
                            "git reported `{code}` with principal `{principal}` for the key \
                             {key} of `{name}`"
                        ),
                    }
                }
            }
            // GPG: our keyring holds only the policy's keys, so a good signature (`U`
            // only means the web of trust says nothing) by a listed key is that key's.
            ("G" | "U", Some((fingerprint, _))) => SignatureStatus::Good { fingerprint },
            ("G" | "U", None) => SignatureStatus::UnknownKey {
                fingerprint: named.unwrap_or_default(),
            },
            ("E", _) => match named {
                Some(fingerprint) => SignatureStatus::UnknownKey { fingerprint },
                None => SignatureStatus::CannotCheck {
                    detail: "git could not check the signature and named no key (an \
                             unsupported signature format?)"
                        .to_owned(),
                },
            },
            (other, _) => SignatureStatus::CannotCheck {
                detail: format!("git reported the unknown signature status `{other}`"),
            },
        };
        Ok(CommitSignature {
            status,
            author_email: signature.author_email.clone(),
            commit: signature.commit,
        })
    }

    /// Imports `gpgPublicKeys` and checks that every GPG fingerprint of the policy is in the
    /// keyring, as a primary key or a subkey.
    fn import_gpg_keys(&self) -> Result<()> {
        if self.policy.gpg_public_keys.is_empty() {
            return Ok(());
        }
        for armored in &self.policy.gpg_public_keys {
            self.signers.import_gpg(armored)?;
        }
        let present = self.signers.gpg_fingerprints()?;
        for (field, key) in self.policy.all_keys() {
            if let KeyRef::Gpg { fingerprint } = key.key()
                && !present.iter().any(|p| p.eq_ignore_ascii_case(fingerprint))
            {
                return Err(Error::MissingGpgKey {
                    field,
                    fingerprint: fingerprint.clone(),
                });
            }
        }
        Ok(())
    }
}
