//! Checking that results were written by the publisher: every commit that touched a request's
//! results folder must carry a good signature by the publisher's SSH key.
//!
//! Anyone who can push to the repository can commit a `status.json`; only the secure zone's
//! publisher holds its signing key. So `status --verify` and `get-results --verify` run the
//! real git (which runs `ssh-keygen`) over `git log <rev> -- <results folder>` with an
//! allowed-signers file holding only the publisher's key, in a clean environment with every
//! signing-related setting given on the command line: neither the engineer's configuration
//! nor the clone's (`gpg.ssh.program`, another allowed-signers file, `log.showSignature`, a
//! replace ref) can change what is trusted. It is the same method, and the same code
//! (`warroom_git::signature::Signers`), as the secure zone's `warroom-access` verifier, for
//! the other direction.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use warroom_git::CommitId;
use warroom_git::signature::{CommitRange, Signers, SshFingerprint, SshPublicKey};

use crate::git::Repo;

/// The clone's git setting that holds the publisher's key (written by `claude-warroom init`).
pub const CONFIG_KEY: &str = "warroom.publisherKey";

/// The principal the publisher's key is given in the allowed-signers file.
const PRINCIPAL: &str = "publisher";

/// The publisher's SSH key, as engineers are given it: the public key line, or only its
/// fingerprint. Either way checked (`warroom_git::signature`), so it can be written into an
/// allowed-signers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherKey {
    /// An OpenSSH public key, without its comment.
    Ssh(SshPublicKey),
    /// Only the key's fingerprint, as `ssh-keygen -l` prints it (`SHA256:<43 base64>`).
    Fingerprint(SshFingerprint),
}

impl FromStr for PublisherKey {
    type Err = String;

    /// Reads `ssh-ed25519 AAAA... comment` or `SHA256:...`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.starts_with("SHA256:") {
            return text
                .parse()
                .map(PublisherKey::Fingerprint)
                .map_err(|e| e.to_string());
        }
        text.parse().map(PublisherKey::Ssh).map_err(|e| {
            format!(
                "`{text}` is not an SSH public key ({e}); expected a line like `ssh-ed25519 \
                 AAAA... comment` (the publisher's .pub file) or its `SHA256:...` fingerprint"
            )
        })
    }
}

impl fmt::Display for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublisherKey::Ssh(key) => key.fmt(f),
            PublisherKey::Fingerprint(fingerprint) => fingerprint.fmt(f),
        }
    }
}

impl PublisherKey {
    /// A key given on the command line: the key line, its fingerprint, or a file holding the
    /// key line (a `.pub` file).
    pub fn from_arg(value: &str) -> Result<PublisherKey> {
        let value = value.trim();
        let looks_like_key = value.starts_with("SHA256:") || value.contains(' ');
        if !looks_like_key && Path::new(value).is_file() {
            let text = std::fs::read_to_string(value)
                .with_context(|| format!("reading the publisher key file {value}"))?;
            let line = text
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty() && !line.starts_with('#'))
                .with_context(|| format!("the publisher key file {value} is empty"))?;
            return line
                .parse()
                .map_err(|e: String| anyhow::anyhow!("{value}: {e}"));
        }
        value.parse().map_err(|e: String| {
            anyhow::anyhow!("{e}{}", if looks_like_key { "" } else { " (nor a file)" })
        })
    }

    /// The key the command works with: `--publisher-key` when given, else the clone's
    /// `warroom.publisherKey`.
    pub fn resolve(flag: Option<&str>, repo: &Repo) -> Result<PublisherKey> {
        if let Some(value) = flag {
            return PublisherKey::from_arg(value).context("--publisher-key");
        }
        let Some(value) = repo.config(CONFIG_KEY) else {
            bail!(
                "--verify needs the publisher's public key, and this clone has none: run \
                 `claude-warroom init --publisher-key <KEY.pub file, key line or SHA256:... \
                 fingerprint>` in {} (the secure zone's operators give it; the publisher logs \
                 it at start), or pass --publisher-key",
                repo.root().display()
            );
        };
        value
            .parse()
            .map_err(|e: String| anyhow::anyhow!("git config {CONFIG_KEY}: {e}"))
    }
}

/// Why a commit is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Unsigned,
    OtherKey(String),
    BadSignature,
    CannotCheck(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unsigned => f.write_str("not signed"),
            Problem::OtherKey(key) => {
                write!(f, "signed by an unknown key ({key}), not the publisher's")
            }
            Problem::BadSignature => f.write_str(
                "bad signature (the commit was changed after it was signed, or the signature is \
                 not for it)",
            ),
            Problem::CannotCheck(detail) => write!(f, "signature cannot be checked: {detail}"),
        }
    }
}

/// One commit that touched the results folder and is not the publisher's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    pub commit: CommitId,
    pub subject: String,
    pub author: String,
    pub problem: Problem,
}

/// What a successful check found.
#[derive(Debug)]
pub struct Verified {
    /// How many commits touched the folder, all signed by the publisher.
    pub commits: usize,
    /// The publisher key's fingerprint, as git reported it.
    pub fingerprint: String,
}

/// Checks every commit reachable from `commit` (which `rev` names, for messages) that touched
/// `dir`; an error names each commit that is not signed by `key`, and why.
pub fn verify(
    repo: &Repo,
    commit: &CommitId,
    rev: &str,
    dir: &str,
    key: &PublisherKey,
) -> Result<Verified> {
    // With only a fingerprint there is no key to list: git then reports a cryptographically
    // valid signature as `U` with its key's fingerprint, which is compared below.
    let signers = match key {
        PublisherKey::Ssh(ssh) => Signers::new([(PRINCIPAL, ssh)]),
        PublisherKey::Fingerprint(_) => Signers::new([]),
    }
    .context("preparing the allowed-signers file")?;
    let folder = format!("{}/", dir.trim_end_matches('/'));
    let range = CommitRange::UpTo {
        head: commit.clone(),
    };
    let signatures = signers
        .signatures(repo.root(), &range, &[&folder])
        .with_context(|| format!("verifying the signatures of `{folder}` on `{rev}`"))?;
    let mut fingerprint = None;
    let mut untrusted = Vec::new();
    let count = signatures.len();
    for signature in signatures {
        match judge(key, &signature.code, &signature.key, &signature.signer) {
            Ok(()) => fingerprint = Some(signature.key),
            Err(problem) => untrusted.push(Untrusted {
                commit: signature.commit,
                subject: signature.subject,
                author: format!("{} <{}>", signature.author_name, signature.author_email),
                problem,
            }),
        }
    }
    if count == 0 {
        bail!("no commit on `{rev}` wrote `{folder}`: there is nothing to verify");
    }
    if !untrusted.is_empty() {
        let mut message = format!(
            "refusing the results in `{folder}` on `{rev}`: {} of the {count} commit(s) that \
             wrote them are not signed by the publisher's key ({key}):",
            untrusted.len()
        );
        for u in &untrusted {
            message.push_str(&format!(
                "\n  commit {} \"{}\" by {}: {}",
                u.commit, u.subject, u.author, u.problem
            ));
        }
        message.push_str(
            "\nSomeone other than the secure zone's publisher changed these results; do not \
             act on them, and tell the secure zone's operators.",
        );
        bail!(message);
    }
    Ok(Verified {
        commits: count,
        fingerprint: fingerprint.unwrap_or_default(),
    })
}

/// Maps git's verdict on one commit (`%G?`, `%GK`, `%GS`) to trusted or why not.
fn judge(
    key: &PublisherKey,
    code: &str,
    signing_key: &str,
    principal: &str,
) -> Result<(), Problem> {
    match (code, key) {
        // `G` for SSH is only given for a key in the allowed-signers file, which holds only
        // the publisher's, under its principal.
        ("G", PublisherKey::Ssh { .. }) if principal == PRINCIPAL => Ok(()),
        // Without the key itself, a valid signature is `U`; its key must be the one named.
        ("G" | "U", PublisherKey::Fingerprint(expected)) if signing_key == expected.as_str() => {
            Ok(())
        }
        ("N", _) => Err(Problem::Unsigned),
        ("B", _) => Err(Problem::BadSignature),
        ("G" | "U", _) => Err(Problem::OtherKey(if signing_key.is_empty() {
            "no key named".to_owned()
        } else {
            signing_key.to_owned()
        })),
        ("E", _) if !signing_key.is_empty() => Err(Problem::OtherKey(signing_key.to_owned())),
        ("E", _) => Err(Problem::CannotCheck(
            "not an SSH signature git can check (an OpenPGP or X.509 signature is never the \
             publisher's)"
                .to_owned(),
        )),
        ("X" | "Y", _) => Err(Problem::CannotCheck(
            "the signature or its key has expired".to_owned(),
        )),
        ("R", _) => Err(Problem::CannotCheck("the key was revoked".to_owned())),
        (other, _) => Err(Problem::CannotCheck(format!(
            "git reported the signature status `{other}`"
        ))),
    }
}

impl PublisherKey {
    /// The key's fingerprint, as git names the key that made a signature.
    pub fn fingerprint(&self) -> &SshFingerprint {
        match self {
            PublisherKey::Ssh(key) => key.fingerprint(),
            PublisherKey::Fingerprint(fingerprint) => fingerprint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNhtUJQkx/4Rr/3EA2kEPQKnovFvHKb5tmNpczvTDT8";
    const FINGERPRINT: &str = "SHA256:bswpMwHxxg/IFHZzWEdOk5a7l9jLvQB+Bo+ck1u2zxM";

    #[test]
    fn keys_parse_without_their_comment_and_fingerprints_as_given() {
        let key: PublisherKey = format!("{KEY} warroom-publisher@zone").parse().unwrap();
        assert_eq!(key.to_string(), KEY);
        let fingerprint: PublisherKey = FINGERPRINT.parse().unwrap();
        assert_eq!(
            fingerprint,
            PublisherKey::Fingerprint(FINGERPRINT.parse().unwrap())
        );
    }

    #[test]
    fn anything_else_is_refused_with_what_was_expected() {
        for (text, expected) in [
            ("", "not an SSH public key"),
            ("ssh-ed25519", "not an SSH public key"),
            ("ssh-dss AAAAB3", "not an SSH public key algorithm"),
            ("ssh-ed25519 AAAA\"\nx", "not base64"),
            ("ssh-ed25519 hello", "not base64"),
            ("SHA256:short", "43 base64"),
            ("MD5:aa:bb", "not an SSH public key"),
        ] {
            let err = text.parse::<PublisherKey>().unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn only_the_publishers_good_signature_is_trusted() {
        let key: PublisherKey = KEY.parse().unwrap();
        let by_fingerprint: PublisherKey = FINGERPRINT.parse().unwrap();
        assert_eq!(judge(&key, "G", FINGERPRINT, "publisher"), Ok(()));
        assert_eq!(judge(&by_fingerprint, "U", FINGERPRINT, ""), Ok(()));
        assert_eq!(judge(&key, "N", "", ""), Err(Problem::Unsigned));
        assert_eq!(judge(&key, "B", "", ""), Err(Problem::BadSignature));
        assert_eq!(
            judge(&key, "U", "SHA256:other", ""),
            Err(Problem::OtherKey("SHA256:other".to_owned()))
        );
        assert_eq!(
            judge(&by_fingerprint, "U", "SHA256:other", ""),
            Err(Problem::OtherKey("SHA256:other".to_owned()))
        );
        assert!(matches!(
            judge(&key, "E", "", ""),
            Err(Problem::CannotCheck(_))
        ));
        // A `G` under another principal cannot come from our file; refuse it anyway.
        assert!(judge(&key, "G", FINGERPRINT, "someone").is_err());
    }
}
