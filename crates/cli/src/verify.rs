//! Checking that results were written by the publisher: every commit that touched a request's
//! results folder must carry a good signature by the publisher's SSH key.
//!
//! Anyone who can push to the repository can commit a `status.json`; only the secure zone's
//! publisher holds its signing key. So `status --verify` and `get-results --verify` run the
//! real git (which runs `ssh-keygen`) over `git log <rev> -- <results folder>` with an
//! allowed-signers file holding only the publisher's key, in a clean environment with every
//! signing-related setting given on the command line: neither the engineer's configuration
//! nor the clone's (`gpg.ssh.program`, another allowed-signers file, `log.showSignature`, a
//! replace ref) can change what is trusted. It is the same method as the secure zone's
//! `warroom-access` verifier, for the other direction.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;

use anyhow::{Context, Result, bail};

use crate::git::Repo;

/// The clone's git setting that holds the publisher's key (written by `claude-warroom init`).
pub const CONFIG_KEY: &str = "warroom.publisherKey";

/// The principal the publisher's key is given in the allowed-signers file.
const PRINCIPAL: &str = "publisher";

/// OpenSSH public key algorithms git can verify signatures of.
const ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// The publisher's SSH key, as engineers are given it: the public key line, or only its
/// fingerprint. Built only through [`FromStr`], so it never holds anything but an algorithm
/// and base64, or a `SHA256:` fingerprint, and can be written into an allowed-signers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherKey {
    /// An OpenSSH public key, without its comment.
    Ssh { algorithm: String, blob: String },
    /// Only the key's fingerprint, as `ssh-keygen -l` prints it (`SHA256:<43 base64>`).
    Fingerprint(String),
}

impl FromStr for PublisherKey {
    type Err = String;

    /// Reads `ssh-ed25519 AAAA... comment` or `SHA256:...`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(hash) = text.strip_prefix("SHA256:") {
            let base64 = hash
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
            if hash.len() != 43 || !base64 {
                return Err(format!(
                    "`{text}` is not an SSH key fingerprint; expected `SHA256:` and 43 base64 \
                     characters, as `ssh-keygen -l -f KEY.pub` prints"
                ));
            }
            return Ok(PublisherKey::Fingerprint(text.to_owned()));
        }
        let mut parts = text.split_whitespace();
        let (Some(algorithm), Some(blob)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "`{text}` is not an SSH public key; expected a line like `ssh-ed25519 AAAA... \
                 comment` (the publisher's .pub file) or its `SHA256:...` fingerprint"
            ));
        };
        if !ALGORITHMS.contains(&algorithm) {
            return Err(format!(
                "`{algorithm}` is not an SSH public key algorithm git can verify; expected one \
                 of: {}",
                ALGORITHMS.join(", ")
            ));
        }
        let base64 = blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
        if !blob.starts_with("AAAA") || !base64 {
            return Err(format!(
                "the {algorithm} key `{blob}` is not base64 key data"
            ));
        }
        Ok(PublisherKey::Ssh {
            algorithm: algorithm.to_owned(),
            blob: blob.to_owned(),
        })
    }
}

impl fmt::Display for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublisherKey::Ssh { algorithm, blob } => write!(f, "{algorithm} {blob}"),
            PublisherKey::Fingerprint(fingerprint) => f.write_str(fingerprint),
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
    pub commit: String,
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
    commit: &str,
    rev: &str,
    dir: &str,
    key: &PublisherKey,
) -> Result<Verified> {
    let scratch = tempfile::Builder::new()
        .prefix("claude-warroom-verify-")
        .tempdir()
        .context("creating a temporary folder for the allowed-signers file")?;
    let allowed_signers = scratch.path().join("allowed_signers");
    let revocations = scratch.path().join("revoked_keys");
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).context("creating an empty HOME for git")?;
    // With only a fingerprint there is no key to list: git then reports a cryptographically
    // valid signature as `U` with its key's fingerprint, which is compared below.
    let signers = match key {
        PublisherKey::Ssh { .. } => format!("{PRINCIPAL} namespaces=\"git\" {key}\n"),
        PublisherKey::Fingerprint(_) => String::new(),
    };
    std::fs::write(&allowed_signers, signers).context("writing the allowed-signers file")?;
    std::fs::write(&revocations, "").context("writing an empty revocation list")?;

    let folder = format!("{}/", dir.trim_end_matches('/'));
    let mut command = Command::new("git");
    command.arg("-C").arg(repo.root());
    for setting in [
        format!("gpg.ssh.allowedSignersFile={}", allowed_signers.display()),
        format!("gpg.ssh.revocationFile={}", revocations.display()),
        "gpg.ssh.program=ssh-keygen".to_owned(),
        "gpg.program=gpg".to_owned(),
        "gpg.x509.program=gpgsm".to_owned(),
        "log.showSignature=false".to_owned(),
        "log.follow=false".to_owned(),
        "core.fsmonitor=false".to_owned(),
    ] {
        command.arg("-c").arg(setting);
    }
    command
        .args([
            "--literal-pathspecs",
            "log",
            "-z",
            "--no-show-signature",
            "--format=%H%x1f%G?%x1f%GK%x1f%GS%x1f%an <%ae>%x1f%s",
            "--end-of-options",
            commit,
            "--",
            &folder,
        ])
        .env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let output = command
        .env("HOME", &home)
        .env("GNUPGHOME", scratch.path().join("gnupg"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .context("cannot run git to verify signatures (is git installed?)")?;
    if !output.status.success() {
        bail!(
            "`git log {rev} -- {folder}` failed while verifying signatures: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fingerprint = None;
    let mut untrusted = Vec::new();
    let mut count = 0;
    for record in text.split('\0').map(|r| r.trim_matches('\n')) {
        if record.is_empty() {
            continue;
        }
        count += 1;
        let fields: Vec<&str> = record.splitn(6, '\x1f').collect();
        let [commit, code, signing_key, principal, author, subject] = fields[..] else {
            bail!("unexpected output of `git log` while verifying signatures: {record:?}");
        };
        match judge(key, code, signing_key, principal) {
            Ok(()) => fingerprint = Some(signing_key.to_owned()),
            Err(problem) => untrusted.push(Untrusted {
                commit: commit.to_owned(),
                subject: subject.to_owned(),
                author: author.to_owned(),
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
        ("G" | "U", PublisherKey::Fingerprint(expected)) if signing_key == expected => Ok(()),
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

/// The fingerprint of an SSH public key, from `ssh-keygen -l`, which also checks that the
/// key data is a key.
pub fn fingerprint(key: &PublisherKey) -> Result<String> {
    match key {
        PublisherKey::Fingerprint(fingerprint) => Ok(fingerprint.clone()),
        PublisherKey::Ssh { .. } => {
            let scratch = tempfile::Builder::new()
                .prefix("claude-warroom-key-")
                .tempdir()
                .context("creating a temporary folder")?;
            let file = scratch.path().join("publisher.pub");
            std::fs::write(&file, format!("{key}\n")).context("writing the key to a file")?;
            let output = Command::new("ssh-keygen")
                .arg("-l")
                .arg("-f")
                .arg(&file)
                .stdin(Stdio::null())
                .output()
                .context("cannot run ssh-keygen (install OpenSSH's client: git needs it to check SSH signatures)")?;
            if !output.status.success() {
                bail!(
                    "`{key}` is not a valid SSH public key: ssh-keygen said {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            let listing = String::from_utf8_lossy(&output.stdout);
            listing
                .split_whitespace()
                .nth(1)
                .map(str::to_owned)
                .with_context(|| format!("unexpected output of ssh-keygen -l: {listing}"))
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
            PublisherKey::Fingerprint(FINGERPRINT.to_owned())
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
