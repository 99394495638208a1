//! Finds who signed each commit that added or changed a request file, with the real `git`,
//! trusting only the keys of the policy.
//!
//! [`Verifier::new`] writes, into a private temporary folder, an allowed-signers file with
//! every OpenSSH key of the policy (principal: the engineer's or trusted key's name) and a
//! GnuPG home holding only the policy's `gpgPublicKeys`. [`Verifier::commits`] then runs one
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
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::policy::{KeyOwner, KeyRef, WarroomPolicy};
use crate::{Error, Result};

/// Which commits to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitRange {
    /// Every commit reachable from `head` (the safe choice: a file's whole history).
    UpTo { head: String },
    /// Commits reachable from `head` but not from `since` (`since..head`).
    Since { since: String, head: String },
}

impl CommitRange {
    fn revisions(&self) -> Result<String> {
        let (text, revs) = match self {
            CommitRange::UpTo { head } => (head.clone(), vec![head]),
            CommitRange::Since { since, head } => (format!("{since}..{head}"), vec![since, head]),
        };
        // A revision is passed after `--end-of-options`, but one that is empty or holds
        // `..` or white space would still change the range's meaning.
        for rev in revs {
            if rev.is_empty()
                || rev.contains("..")
                || rev.starts_with('-')
                || rev.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::Unexpected {
                    command: "git log".to_owned(),
                    detail: format!("`{rev}` is not a usable revision for a commit range"),
                });
            }
        }
        Ok(text)
    }
}

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
    /// The full commit id.
    pub commit: String,
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

/// The name of the namespace git signs commits in (`ssh-keygen -Y sign -n git`).
const SSH_NAMESPACE: &str = "git";

/// Verifies commit signatures against one policy's keys. Build one per policy version (at
/// load and at every reload); it owns a private temporary folder removed on drop.
#[derive(Debug)]
pub struct Verifier {
    policy: WarroomPolicy,
    dir: tempfile::TempDir,
    allowed_signers: PathBuf,
    revocations: PathBuf,
    gnupg_home: PathBuf,
    home: PathBuf,
}

impl Verifier {
    /// Prepares the allowed-signers file and the GnuPG keyring for `policy`. Fails when gpg
    /// cannot import `gpgPublicKeys`, or when a listed GPG fingerprint has no public key
    /// there: a policy whose keys cannot be checked is refused at load, not at the first
    /// request.
    pub fn new(policy: &WarroomPolicy) -> Result<Verifier> {
        let prepare = |what| move |source| Error::Prepare { what, source };
        let dir = tempfile::Builder::new()
            .prefix("warroom-access-")
            .tempdir()
            .map_err(prepare("a temporary folder"))?;
        let allowed_signers = dir.path().join("allowed_signers");
        let revocations = dir.path().join("revoked_keys");
        let gnupg_home = dir.path().join("gnupg");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).map_err(prepare("an empty HOME"))?;
        create_private_dir(&gnupg_home).map_err(prepare("a GnuPG home"))?;
        // No key server, no agent: verification needs neither, and a key fetched from
        // outside would widen trust. `trust-model always` because trust here comes from
        // the keyring holding only the policy's keys, not from a web of trust.
        std::fs::write(
            gnupg_home.join("gpg.conf"),
            "trust-model always\nno-auto-key-retrieve\nno-autostart\n",
        )
        .map_err(prepare("gpg.conf"))?;
        // Revocation is done by removing a key from the policy; an empty list keeps
        // ssh-keygen from reading one named by some other configuration.
        std::fs::write(&revocations, "").map_err(prepare("the revocation list"))?;

        let mut lines = String::new();
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
        for (principal, keys) in owners {
            for key in keys.iter() {
                // Only the validated algorithm and base64 blob are written, never the
                // comment, so nothing from the policy can add options to the file.
                if let KeyRef::Ssh {
                    algorithm, base64, ..
                } = key.key()
                {
                    lines.push_str(&format!(
                        "{principal} namespaces=\"{SSH_NAMESPACE}\" {algorithm} {base64}\n"
                    ));
                }
            }
        }
        std::fs::write(&allowed_signers, lines).map_err(prepare("the allowed-signers file"))?;

        let verifier = Verifier {
            policy: policy.clone(),
            dir,
            allowed_signers,
            revocations,
            gnupg_home,
            home,
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
        self.dir.path()
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
        let revisions = range.revisions()?;
        let args = [
            "--literal-pathspecs",
            "log",
            "-z",
            "--no-show-signature",
            "--format=%H%x1f%G?%x1f%GF%x1f%GP%x1f%GK%x1f%GS%x1f%ae",
            "--end-of-options",
            &revisions,
            "--",
            path,
        ];
        let stdout = self.git(repo, &args)?;
        let text = String::from_utf8_lossy(&stdout);
        text.split('\0')
            .map(|record| record.trim_matches('\n'))
            .filter(|record| !record.is_empty())
            .map(|record| self.record(record))
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
        let mut touched: BTreeMap<String, Vec<String>> =
            paths.iter().map(|p| (p.clone(), Vec::new())).collect();
        if paths.is_empty() {
            return Ok(BTreeMap::new());
        }
        let revisions = range.revisions()?;
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
        let stdout = self.git(repo, &args)?;
        let mut order = Vec::new();
        for record in stdout.split(|b| *b == 0x1e).filter(|r| !r.is_empty()) {
            let mut parts = record
                .split(|b| *b == 0)
                .map(|part| String::from_utf8_lossy(part).trim_matches('\n').to_owned())
                .filter(|part| !part.is_empty());
            let Some(commit) = parts.next() else { continue };
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

    /// The verified signature of each of `commits` (full object ids), one git process.
    fn signatures(
        &self,
        repo: &Path,
        commits: &[String],
    ) -> Result<BTreeMap<String, CommitSignature>> {
        if commits.is_empty() {
            return Ok(BTreeMap::new());
        }
        if let Some(bad) = commits
            .iter()
            .find(|c| c.is_empty() || !c.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(Error::Unexpected {
                command: "git log".to_owned(),
                detail: format!("`{bad}` is not a commit id"),
            });
        }
        let mut args = vec![
            "log",
            "-z",
            "--no-walk=unsorted",
            "--no-show-signature",
            "--format=%H%x1f%G?%x1f%GF%x1f%GP%x1f%GK%x1f%GS%x1f%ae",
            "--end-of-options",
        ];
        args.extend(commits.iter().map(String::as_str));
        let stdout = self.git(repo, &args)?;
        let text = String::from_utf8_lossy(&stdout);
        text.split('\0')
            .map(|record| record.trim_matches('\n'))
            .filter(|record| !record.is_empty())
            .map(|record| {
                let signature = self.record(record)?;
                Ok((signature.commit.clone(), signature))
            })
            .collect()
    }

    /// One `git log` record, mapped to a signature status.
    fn record(&self, record: &str) -> Result<CommitSignature> {
        let fields: Vec<&str> = record.splitn(7, '\x1f').collect();
        let [
            commit,
            code,
            signing_fpr,
            primary_fpr,
            key,
            principal,
            author_email,
        ] = fields[..]
        else {
            return Err(Error::Unexpected {
                command: "git log".to_owned(),
                detail: format!("a record with {} fields: {record:?}", fields.len()),
            });
        };
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
            commit: commit.to_owned(),
            status,
            author_email: author_email.to_owned(),
        })
    }

    /// Runs git in `repo` with a clean environment and our signing settings.
    fn git(&self, repo: &Path, args: &[&str]) -> Result<Vec<u8>> {
        let mut command = Command::new("git");
        command.arg("-C").arg(repo);
        let settings = [
            format!(
                "gpg.ssh.allowedSignersFile={}",
                self.allowed_signers.display()
            ),
            format!("gpg.ssh.revocationFile={}", self.revocations.display()),
            "gpg.program=gpg".to_owned(),
            "gpg.ssh.program=ssh-keygen".to_owned(),
            "gpg.x509.program=gpgsm".to_owned(),
            "log.showSignature=false".to_owned(),
            "log.follow=false".to_owned(),
            "core.fsmonitor=false".to_owned(),
        ];
        for setting in &settings {
            command.arg("-c").arg(setting);
        }
        command.args(args);
        let output = self
            .clean(&mut command)
            .output()
            .map_err(|source| Error::Spawn {
                program: "git",
                source,
            })?;
        if !output.status.success() {
            return Err(Error::Command {
                command: format!("git {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(output.stdout)
    }

    /// A command with nothing from the caller's environment but `PATH` (and nss_wrapper's
    /// variables, see `warroom_runtime::identity`): no `GIT_DIR`,
    /// `GIT_CONFIG_*`, `GNUPGHOME` or `HOME` of the user can reach git, ssh-keygen or gpg.
    fn clean<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .env("HOME", &self.home)
            .env("GNUPGHOME", &self.gnupg_home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // `ssh-keygen -Y verify` stops with "No user exists for uid ..." under an arbitrary
        // OpenShift UID unless nss_wrapper names it (the one exception to the clean slate).
        warroom_runtime::identity::apply(command)
    }

    /// Imports `gpgPublicKeys` and checks that every GPG fingerprint of the policy is in the
    /// keyring, as a primary key or a subkey.
    fn import_gpg_keys(&self) -> Result<()> {
        if self.policy.gpg_public_keys.is_empty() {
            return Ok(());
        }
        for armored in &self.policy.gpg_public_keys {
            let mut command = Command::new("gpg");
            self.clean(&mut command)
                .args([
                    "--batch",
                    "--no-tty",
                    "--import-options",
                    "import-minimal",
                    "--import",
                ])
                .stdin(Stdio::piped());
            let mut child = command.spawn().map_err(|source| Error::Spawn {
                program: "gpg",
                source,
            })?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(armored.as_bytes())
                    .map_err(|source| Error::Spawn {
                        program: "gpg",
                        source,
                    })?;
            }
            let output = child.wait_with_output().map_err(|source| Error::Spawn {
                program: "gpg",
                source,
            })?;
            if !output.status.success() {
                return Err(Error::Command {
                    command: "gpg --import (a key of gpgPublicKeys)".to_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                });
            }
        }
        let mut command = Command::new("gpg");
        self.clean(&mut command).args([
            "--batch",
            "--no-tty",
            "--with-colons",
            "--fingerprint",
            "--fingerprint",
            "--list-keys",
        ]);
        let output = command.output().map_err(|source| Error::Spawn {
            program: "gpg",
            source,
        })?;
        if !output.status.success() {
            return Err(Error::Command {
                command: "gpg --list-keys".to_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        // `fpr:::::::::<FINGERPRINT>:` lines, for primary keys and subkeys alike.
        let listing = String::from_utf8_lossy(&output.stdout);
        let present: Vec<&str> = listing
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .filter_map(|l| l.split(':').nth(9))
            .collect();
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

/// A folder only its owner can read (gpg warns about, and may refuse, a shared home).
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_revisions_that_change_their_meaning() {
        for bad in ["", "-n1", "a..b", "a b", "a\nb"] {
            let range = CommitRange::UpTo {
                head: bad.to_owned(),
            };
            assert!(range.revisions().is_err(), "{bad:?} was accepted");
        }
        let range = CommitRange::Since {
            since: "abc".to_owned(),
            head: "HEAD".to_owned(),
        };
        assert_eq!(range.revisions().ok(), Some("abc..HEAD".to_owned()));
    }
}
