//! Loading the policy file and reloading it when its content changes.
//!
//! The gateway calls [`PolicyWatcher::poll`] once per cycle. The file is read by path each
//! time and compared by a SHA-256 of its content, not by modification time: a Kubernetes
//! ConfigMap mount updates by swapping a `..data` symlink, which leaves the path's own
//! metadata unreliable, while the content is what matters. A new version is used only when
//! it parses and its keys can be prepared for verification; otherwise the old one stays and
//! the caller logs the refusal. A refused version is remembered by its hash, so the same bad
//! file is reported once, not at every poll.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest as _;

use crate::policy::{WarroomPolicy, parse_policy};
use crate::signature::Verifier;
use crate::{Error, Result};

/// Reads and validates the policy file at `path`.
pub fn load(path: &Path) -> Result<WarroomPolicy> {
    let bytes = read(path)?;
    parse(path, &bytes)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<WarroomPolicy> {
    let name = path.display().to_string();
    parse_policy(&name, bytes).map_err(|errors| Error::Invalid { path: name, errors })
}

/// What one [`PolicyWatcher::poll`] did.
#[derive(Debug)]
pub enum Reload {
    /// The content is the one in use, or the one refused last time.
    Unchanged,
    /// A new valid version is now in use.
    Reloaded,
    /// A new version could not be read or is invalid; the previous one stays in use.
    Refused(Error),
}

/// The policy in use, with its verifier, and the hash of the file it came from.
#[derive(Debug)]
pub struct PolicyWatcher {
    path: PathBuf,
    verifier: Arc<Verifier>,
    /// The hash of the content in use.
    hash: [u8; 32],
    /// The hash of the content last refused, so it is reported only once.
    refused: Option<[u8; 32]>,
}

impl PolicyWatcher {
    /// Loads the policy at start. An unreadable or invalid file is an error: the gateway
    /// must not start without the policy it was told to use.
    pub fn load(path: impl Into<PathBuf>) -> Result<PolicyWatcher> {
        let path = path.into();
        let bytes = read(&path)?;
        let policy = parse(&path, &bytes)?;
        let verifier = Verifier::new(&policy)?;
        Ok(PolicyWatcher {
            path,
            verifier: Arc::new(verifier),
            hash: sha2::Sha256::digest(&bytes).into(),
            refused: None,
        })
    }

    /// Reads the file again and switches to it when its content changed and it is valid.
    pub fn poll(&mut self) -> Reload {
        let bytes = match read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) => return Reload::Refused(error),
        };
        let hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        if hash == self.hash || Some(hash) == self.refused {
            return Reload::Unchanged;
        }
        let prepared = parse(&self.path, &bytes).and_then(|policy| Verifier::new(&policy));
        match prepared {
            Ok(verifier) => {
                self.verifier = Arc::new(verifier);
                self.hash = hash;
                self.refused = None;
                Reload::Reloaded
            }
            Err(error) => {
                self.refused = Some(hash);
                Reload::Refused(error)
            }
        }
    }

    /// The policy in use.
    pub fn policy(&self) -> &WarroomPolicy {
        self.verifier.policy()
    }

    /// The verifier of the policy in use; an `Arc` so a scan in `spawn_blocking` can keep
    /// it while the watcher reloads.
    pub fn verifier(&self) -> Arc<Verifier> {
        Arc::clone(&self.verifier)
    }

    /// The SHA-256 of the policy file in use, in hex, for logs and `/metrics`.
    pub fn hash_hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
