//! Commit signatures, checked by the real git (and through it `ssh-keygen` and `gpg`) with
//! nothing trusted but what the caller lists: [`Signers`] writes, into a private temporary
//! folder, an allowed-signers file and a GnuPG home, and runs git with an isolated
//! environment (no system or global configuration, no `HOME`, `GNUPGHOME` or ssh agent of
//! the user) and every signing-related setting on the command line, so neither the machine's
//! nor the repository's configuration (`gpg.program`, another allowed-signers file,
//! `log.showSignature`, a replace ref) can widen trust or change what is read.
//!
//! The secure zone checks who wrote a request with it (`warroom-access`), the engineer's
//! command checks that results are the publisher's (`claude-warroom --verify`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use base64::Engine as _;
use sha2::Digest as _;

use crate::{CommitId, Error, Git, Result};

/// OpenSSH public key algorithms git can check commit signatures of (what
/// `ssh-keygen -Y sign` can produce).
pub const SSH_KEY_TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
const SSH_NAMESPACE: &str = "git";

/// An OpenSSH public key, without its comment: an algorithm of [`SSH_KEY_TYPES`] and key
/// data that decodes to a key of that algorithm. Built only by [`SshPublicKey::from_str`],
/// so it can be written into an allowed-signers file as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SshPublicKey {
    algorithm: String,
    base64: String,
    fingerprint: SshFingerprint,
}

/// Why a text is not an [`SshPublicKey`] or [`SshFingerprint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("`{algorithm}` is not followed by the key itself")]
    MissingKeyData { algorithm: String },
    #[error(
        "`{algorithm}` is not an SSH public key algorithm git can verify; expected one of: {}",
        SSH_KEY_TYPES.join(", ")
    )]
    UnknownAlgorithm { algorithm: String },
    #[error("the `{algorithm}` key data is not base64 (a truncated copy?)")]
    NotBase64 { algorithm: String },
    #[error(
        "the key data does not hold a `{algorithm}` key (a truncated copy, or the algorithm \
         name of another key?)"
    )]
    WrongKeyData { algorithm: String },
    #[error(
        "`{text}` is not an SSH key fingerprint; expected `SHA256:` and 43 base64 characters, \
         as `ssh-keygen -l -f KEY.pub` prints"
    )]
    NotAFingerprint { text: String },
}

impl FromStr for SshPublicKey {
    type Err = KeyError;

    /// Reads `ssh-ed25519 AAAA... comment` (the comment is dropped).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split_whitespace();
        let algorithm = parts.next().unwrap_or_default().to_owned();
        if !SSH_KEY_TYPES.contains(&algorithm.as_str()) {
            return Err(KeyError::UnknownAlgorithm { algorithm });
        }
        let Some(encoded) = parts.next() else {
            return Err(KeyError::MissingKeyData { algorithm });
        };
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return Err(KeyError::NotBase64 { algorithm });
        };
        if blob_algorithm(&blob) != Some(algorithm.as_bytes()) {
            return Err(KeyError::WrongKeyData { algorithm });
        }
        let digest = sha2::Sha256::digest(&blob);
        let fingerprint = SshFingerprint(format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        ));
        Ok(SshPublicKey {
            algorithm,
            base64: encoded.to_owned(),
            fingerprint,
        })
    }
}

impl SshPublicKey {
    /// `ssh-ed25519`, `ssh-rsa`, ...
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The key data, base64 as in the `.pub` file.
    pub fn base64(&self) -> &str {
        &self.base64
    }

    /// The key's fingerprint, as `ssh-keygen -l` and git's `%GK` print it.
    pub fn fingerprint(&self) -> &SshFingerprint {
        &self.fingerprint
    }
}

impl fmt::Display for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.base64)
    }
}

/// The algorithm name at the start of an SSH public key blob (a length-prefixed string).
fn blob_algorithm(blob: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4usize.checked_add(len)?)
}

/// An SSH key's fingerprint: `SHA256:` and 43 base64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SshFingerprint(String);

impl FromStr for SshFingerprint {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let valid = text.strip_prefix("SHA256:").is_some_and(|hash| {
            hash.len() == 43
                && hash
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        });
        if !valid {
            return Err(KeyError::NotAFingerprint {
                text: text.chars().take(80).collect(),
            });
        }
        Ok(SshFingerprint(text.to_owned()))
    }
}

impl SshFingerprint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SshFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which commits to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitRange {
    /// Every commit reachable from `head` (the safe choice: a file's whole history).
    UpTo { head: CommitId },
    /// Commits reachable from `head` but not from `since` (`since..head`).
    Since { since: CommitId, head: CommitId },
}

impl CommitRange {
    /// The range as git's revision argument. Commit ids cannot hold `..`, white space or a
    /// leading `-`, so it means exactly this range.
    pub fn revisions(&self) -> String {
        match self {
            CommitRange::UpTo { head } => head.to_string(),
            CommitRange::Since { since, head } => format!("{since}..{head}"),
        }
    }
}

/// git's verdict on one commit's signature, as `git log --format` reports it. Callers decide
/// what it means against their keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub commit: CommitId,
    /// `%G?`: `G` good, `B` bad, `U` good by a key of unknown validity, `X`/`Y` expired
    /// signature or key, `R` revoked key, `E` cannot be checked, `N` no signature.
    pub code: String,
    /// `%GF`: the fingerprint of the key that signed (GPG: perhaps a subkey).
    pub signing_key: String,
    /// `%GP`: the fingerprint of its primary key (GPG).
    pub primary_key: String,
    /// `%GK`: the key (SSH: its `SHA256:` fingerprint; GPG: its id).
    pub key: String,
    /// `%GS`: the signer (SSH: the principal of the allowed-signers file).
    pub signer: String,
    pub author_name: String,
    pub author_email: String,
    pub subject: String,
}

/// `git log`'s format for [`Signature`]: fields separated by 0x1f, the subject last.
const FORMAT: &str = "--format=%H%x1f%G?%x1f%GF%x1f%GP%x1f%GK%x1f%GS%x1f%an%x1f%ae%x1f%s";

/// The keys a signature check trusts, and the git that checks with only them. Build one per
/// set of keys; it owns a private temporary folder removed on drop.
#[derive(Debug)]
pub struct Signers {
    dir: tempfile::TempDir,
    allowed_signers: PathBuf,
    revocations: PathBuf,
    gnupg_home: PathBuf,
    home: PathBuf,
}

impl Signers {
    /// An allowed-signers file with `keys`, each for its principal (only the validated
    /// algorithm and key data are written, so nothing can add options to the file), an
    /// empty revocation list, an empty GnuPG home and an empty `HOME`.
    pub fn new<'k>(keys: impl IntoIterator<Item = (&'k str, &'k SshPublicKey)>) -> Result<Self> {
        let prepare = |what| move |source| Error::Prepare { what, source };
        let dir = tempfile::Builder::new()
            .prefix("warroom-signers-")
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
        // the keyring holding only the given keys, not from a web of trust.
        std::fs::write(
            gnupg_home.join("gpg.conf"),
            "trust-model always\nno-auto-key-retrieve\nno-autostart\n",
        )
        .map_err(prepare("gpg.conf"))?;
        // Revocation is done by leaving a key out; an empty list keeps ssh-keygen from
        // reading one named by some other configuration.
        std::fs::write(&revocations, "").map_err(prepare("the revocation list"))?;
        let mut lines = String::new();
        for (principal, key) in keys {
            if principal.is_empty()
                || !principal
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
            {
                return Err(Error::Prepare {
                    what: "the allowed-signers file",
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "`{principal}` cannot be a principal; expected letters, digits and \
                             `.`, `_`, `-`, `@`, `+`"
                        ),
                    ),
                });
            }
            lines.push_str(&format!(
                "{principal} namespaces=\"{SSH_NAMESPACE}\" {key}\n"
            ));
        }
        std::fs::write(&allowed_signers, lines).map_err(prepare("the allowed-signers file"))?;
        Ok(Signers {
            dir,
            allowed_signers,
            revocations,
            gnupg_home,
            home,
        })
    }

    /// The private folder holding the allowed-signers file and the GnuPG home.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// git in `repo` with the isolated environment and every signing setting given with
    /// `-c`, for walks the check needs besides [`Signers::signatures`].
    pub fn git(&self, repo: &Path) -> Git {
        let settings = [
            (
                "gpg.ssh.allowedSignersFile",
                self.allowed_signers.display().to_string(),
            ),
            (
                "gpg.ssh.revocationFile",
                self.revocations.display().to_string(),
            ),
            ("gpg.program", "gpg".to_owned()),
            ("gpg.ssh.program", "ssh-keygen".to_owned()),
            ("gpg.x509.program", "gpgsm".to_owned()),
            ("log.showSignature", "false".to_owned()),
            ("log.follow", "false".to_owned()),
            ("core.fsmonitor", "false".to_owned()),
        ];
        settings.iter().fold(
            Git::isolated(repo, &self.home, &self.gnupg_home),
            |git, (key, value)| git.with_config(key, value),
        )
    }

    /// The signature of every commit in `range` that touched one of `paths` (with git's
    /// default history simplification, no `--follow`; every commit when `paths` is empty),
    /// newest first.
    pub fn signatures(
        &self,
        repo: &Path,
        range: &CommitRange,
        paths: &[&str],
    ) -> Result<Vec<Signature>> {
        let revisions = range.revisions();
        let mut args = vec![
            "--literal-pathspecs",
            "log",
            "-z",
            "--no-show-signature",
            FORMAT,
            "--end-of-options",
            &revisions,
            "--",
        ];
        args.extend_from_slice(paths);
        self.read(repo, &args)
    }

    /// The signature of each of `commits`, in their order, in one git process.
    pub fn signatures_of(&self, repo: &Path, commits: &[CommitId]) -> Result<Vec<Signature>> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![
            "log",
            "-z",
            "--no-walk=unsorted",
            "--no-show-signature",
            FORMAT,
            "--end-of-options",
        ];
        args.extend(commits.iter().map(CommitId::as_str));
        self.read(repo, &args)
    }

    fn read(&self, repo: &Path, args: &[&str]) -> Result<Vec<Signature>> {
        let git = self.git(repo);
        let stdout = git.run_bytes(args)?;
        let text = String::from_utf8_lossy(&stdout);
        text.split('\0')
            .map(|record| record.trim_matches('\n'))
            .filter(|record| !record.is_empty())
            .map(|record| {
                let fields: Vec<&str> = record.splitn(9, '\x1f').collect();
                let [
                    commit,
                    code,
                    signing_key,
                    primary_key,
                    key,
                    signer,
                    name,
                    email,
                    subject,
                ] = fields[..]
                else {
                    return Err(git.unexpected(
                        args,
                        format!("a record with {} fields: {record:?}", fields.len()),
                    ));
                };
                Ok(Signature {
                    commit: git.commit_id(args, commit)?,
                    code: code.to_owned(),
                    signing_key: signing_key.to_owned(),
                    primary_key: primary_key.to_owned(),
                    key: key.to_owned(),
                    signer: signer.to_owned(),
                    author_name: name.to_owned(),
                    author_email: email.to_owned(),
                    subject: subject.to_owned(),
                })
            })
            .collect()
    }

    /// Imports an armored OpenPGP public key into the private GnuPG home (minimal: no
    /// signatures of others, which would not widen trust anyway).
    pub fn import_gpg(&self, armored: &str) -> Result<()> {
        use std::io::Write as _;
        let what = "gpg --import";
        let mut command = self.gpg();
        command
            .args(["--import-options", "import-minimal", "--import"])
            .stdin(Stdio::piped());
        let spawn = |source| Error::Spawn {
            program: "gpg",
            command: what.to_owned(),
            source,
        };
        let mut child = command.spawn().map_err(spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(armored.as_bytes()).map_err(spawn)?;
        }
        let output = child.wait_with_output().map_err(spawn)?;
        if !output.status.success() {
            return Err(Error::Failed {
                command: what.to_owned(),
                dir: self.gnupg_home.display().to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    /// The fingerprints of every key in the private GnuPG home, primary keys and subkeys.
    pub fn gpg_fingerprints(&self) -> Result<Vec<String>> {
        let what = "gpg --list-keys";
        let output = self
            .gpg()
            .args([
                "--with-colons",
                "--fingerprint",
                "--fingerprint",
                "--list-keys",
            ])
            .output()
            .map_err(|source| Error::Spawn {
                program: "gpg",
                command: what.to_owned(),
                source,
            })?;
        if !output.status.success() {
            return Err(Error::Failed {
                command: what.to_owned(),
                dir: self.gnupg_home.display().to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        // `fpr:::::::::<FINGERPRINT>:` lines, for primary keys and subkeys alike.
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .filter_map(|l| l.split(':').nth(9))
            .map(str::to_owned)
            .collect())
    }

    /// gpg with the isolated environment, on the private GnuPG home.
    fn gpg(&self) -> Command {
        let mut command = Command::new("gpg");
        crate::git::isolate(&mut command, &self.home, &self.gnupg_home);
        crate::identity::apply(&mut command);
        command
            .args(["--batch", "--no-tty"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

/// A folder only its owner can read (gpg warns about, and may refuse, a shared home).
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}
