//! The Claude Code conversations a runner keeps between the turns of a follow-up session, in
//! the NATS object store (`names::CONVERSATIONS_BUCKET`), so that any replica of the
//! cluster's runner can continue one and nothing of it stays on a runner's disk.
//!
//! A conversation is the CLI's session transcript, the JSONL file it writes to
//! `$HOME/.claude/projects/<cwd, each character but a letter or digit made '-'>/<session>.jsonl`
//! ([`transcript_path`]), plus its session id. [`Conversations::save`] stores that file
//! after a turn; [`Conversations::restore`] writes it back under a fresh HOME and workspace
//! before the next, and gives the session id to pass to `claude --resume`.
//!
//! The transcript is stored as the CLI wrote it. Its lines name the old workspace (`cwd`,
//! and the environment the model was shown), and checked with the pinned CLI (2.1.330) that
//! does not stop a resume in another HOME and workspace: the CLI tells the model of the new
//! working directory itself (an "Environment update" message), keeps the session id, and
//! appends the next turn to the same file, so what is saved after turn 2 begins with what
//! was saved after turn 1. Rewriting the lines would change what the model saw.
//!
//! Not carried: the files the CLI keeps beside a transcript (`<session>/tool-results/`, a
//! tool output too large to send, of which the model was shown a preview and the path). The
//! preview is in the transcript; the path, under the old HOME, is gone after a restore.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use async_nats::jetstream::object_store::{self, GetErrorKind, ObjectMetadata, ObjectStore};
use tokio::io::AsyncReadExt as _;
use warroom_proto::{ClusterName, RequestId, names};
use warroom_runtime::bus::Cause;
use warroom_runtime::{Bus, BusError};

/// The largest transcript kept, 16 MiB. A turn of the CLI writes about 150 KiB of
/// transcript before any tool output (its tool and skill listings), and the runner cuts each
/// tool output it publishes to 4 KiB, so this leaves room for long conversations while
/// bounding what one restore writes to a runner's disk and memory.
pub const MAX_TRANSCRIPT_BYTES: u64 = 16 * 1024 * 1024;

/// The object metadata entry holding the conversation's session id.
const SESSION_ID: &str = "session-id";
/// The longest session id accepted; the CLI's are UUIDs (36 characters).
const MAX_SESSION_ID: usize = 64;

/// Errors keeping or restoring a conversation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the conversations object store")]
    Store(#[source] BusError),
    #[error(
        "`{0}` is not a Claude Code session id: expected 1 to {MAX_SESSION_ID} ASCII letters, \
         digits and `-`"
    )]
    SessionId(String),
    #[error("cannot read the transcript {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the transcript {} is over the {MAX_TRANSCRIPT_BYTES} bytes a conversation may keep",
        path.display()
    )]
    TooLarge { path: PathBuf },
    #[error("cannot store conversation {key}")]
    Put {
        key: ConversationKey,
        #[source]
        source: object_store::PutError,
    },
    #[error("cannot fetch conversation {key}")]
    Get {
        key: ConversationKey,
        #[source]
        source: Cause,
    },
    #[error(
        "stored conversation {key} is {size} bytes, over the {MAX_TRANSCRIPT_BYTES} bytes a \
         conversation may keep"
    )]
    StoredTooLarge { key: ConversationKey, size: u64 },
    #[error("stored conversation {key} has no session id (object metadata `{SESSION_ID}`)")]
    NoSessionId { key: ConversationKey },
    #[error("cannot write the transcript {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which conversation: that of one request on one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    pub cluster: ClusterName,
    pub request: RequestId,
}

impl ConversationKey {
    pub fn new(cluster: ClusterName, request: RequestId) -> ConversationKey {
        ConversationKey { cluster, request }
    }

    /// Its name in the object store: checked tokens joined by a dot, always a valid name.
    fn object_name(&self) -> String {
        names::conversation_object(&self.cluster, &self.request)
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object_name())
    }
}

/// The conversations object store.
#[derive(Clone)]
pub struct Conversations {
    store: ObjectStore,
}

impl fmt::Debug for Conversations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conversations").finish_non_exhaustive()
    }
}

impl Conversations {
    /// Opens `cluster`'s store, creating it when it does not exist.
    pub async fn open(bus: &Bus, cluster: &ClusterName) -> Result<Conversations> {
        let store = bus
            .conversations_store(cluster)
            .await
            .map_err(Error::Store)?;
        Ok(Conversations { store })
    }

    /// Stores the transcript of session `session_id`, which the CLI wrote under `home` while
    /// running in `cwd`, as conversation `key`, replacing what `key` held.
    pub async fn save(
        &self,
        key: &ConversationKey,
        home: &Path,
        cwd: &Path,
        session_id: &str,
    ) -> Result<()> {
        check_session_id(session_id)?;
        let path = transcript_path(home, cwd, session_id);
        let transcript = read_bounded(&path).await?;
        let meta = ObjectMetadata {
            name: key.object_name(),
            description: Some("a Claude Code session transcript (JSONL)".to_owned()),
            metadata: HashMap::from([(SESSION_ID.to_owned(), session_id.to_owned())]),
            ..Default::default()
        };
        self.store
            .put(meta, &mut transcript.as_slice())
            .await
            .map_err(|source| Error::Put {
                key: key.clone(),
                source,
            })?;
        Ok(())
    }

    /// Writes conversation `key` where the CLI looks for it when run with HOME `home` in
    /// `cwd`, and returns its session id, for `claude --resume`. `None` when there is no
    /// such conversation.
    pub async fn restore(
        &self,
        key: &ConversationKey,
        home: &Path,
        cwd: &Path,
    ) -> Result<Option<String>> {
        let get_failed = |source: Cause| Error::Get {
            key: key.clone(),
            source,
        };
        let object = match self.store.get(key.object_name()).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(get_failed(e.into())),
        };
        let size = object.info().size as u64;
        if size > MAX_TRANSCRIPT_BYTES {
            return Err(Error::StoredTooLarge {
                key: key.clone(),
                size,
            });
        }
        let session_id = object
            .info()
            .metadata
            .get(SESSION_ID)
            .cloned()
            .ok_or_else(|| Error::NoSessionId { key: key.clone() })?;
        check_session_id(&session_id)?;
        let mut transcript = Vec::new();
        object
            .take(MAX_TRANSCRIPT_BYTES + 1)
            .read_to_end(&mut transcript)
            .await
            .map_err(|e| get_failed(e.into()))?;
        if transcript.len() as u64 > MAX_TRANSCRIPT_BYTES {
            let size = transcript.len() as u64;
            return Err(Error::StoredTooLarge {
                key: key.clone(),
                size,
            });
        }
        let path = transcript_path(home, cwd, &session_id);
        write(&path, &transcript).await?;
        Ok(Some(session_id))
    }
}

/// Where the CLI keeps the transcript of session `session_id` run with HOME `home` in `cwd`:
/// `<home>/.claude/projects/<cwd>/<session>.jsonl`, where the CLI turns `cwd` into one folder
/// name by replacing every character but an ASCII letter or digit with `-` (one per UTF-16
/// unit, as the CLI's JavaScript counts them): `/tmp/.tmpX_1` is `-tmp--tmpX-1`.
pub fn transcript_path(home: &Path, cwd: &Path, session_id: &str) -> PathBuf {
    let mut folder = String::new();
    for c in cwd.to_string_lossy().chars() {
        if c.is_ascii_alphanumeric() {
            folder.push(c);
        } else {
            folder.extend(std::iter::repeat_n('-', c.len_utf16()));
        }
    }
    home.join(".claude")
        .join("projects")
        .join(folder)
        .join(format!("{session_id}.jsonl"))
}

/// A session id becomes a file name: it must not be able to leave its folder.
fn check_session_id(session_id: &str) -> Result<()> {
    let valid = !session_id.is_empty()
        && session_id.len() <= MAX_SESSION_ID
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::SessionId(session_id.to_owned()))
    }
}

/// Reads `path` whole, refusing it past [`MAX_TRANSCRIPT_BYTES`] without reading further.
async fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let read_failed = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(read_failed)?;
    let mut transcript = Vec::new();
    file.take(MAX_TRANSCRIPT_BYTES + 1)
        .read_to_end(&mut transcript)
        .await
        .map_err(read_failed)?;
    if transcript.len() as u64 > MAX_TRANSCRIPT_BYTES {
        return Err(Error::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(transcript)
}

async fn write(path: &Path, transcript: &[u8]) -> Result<()> {
    let write_failed = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(folder) = path.parent() {
        tokio::fs::create_dir_all(folder)
            .await
            .map_err(write_failed)?;
    }
    tokio::fs::write(path, transcript)
        .await
        .map_err(write_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transcript_lies_where_the_cli_keeps_it() {
        // Observed with CLI 2.1.330: cwd `/tmp/convexp/w.A_x` -> `-tmp-convexp-w-A-x`.
        assert_eq!(
            transcript_path(Path::new("/h"), Path::new("/tmp/convexp/w.A_x"), "abc-1"),
            Path::new("/h/.claude/projects/-tmp-convexp-w-A-x/abc-1.jsonl")
        );
        assert_eq!(
            transcript_path(Path::new("/h"), Path::new("/w/é"), "s"),
            Path::new("/h/.claude/projects/-w--/s.jsonl")
        );
    }

    #[test]
    fn a_session_id_cannot_name_another_file() {
        for bad in ["", "../x", "a/b", "a.b", &"a".repeat(MAX_SESSION_ID + 1)] {
            let err = check_session_id(bad).expect_err(bad);
            assert!(
                err.to_string().contains("not a Claude Code session id"),
                "{err}"
            );
        }
        check_session_id("649ca1c4-03d9-4eb4-a5e6-17ee0ff1cb24").expect("a UUID");
    }

    #[tokio::test]
    async fn a_transcript_over_the_bound_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.jsonl");
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(MAX_TRANSCRIPT_BYTES + 1).expect("grow");
        let err = read_bounded(&path).await.expect_err("too large");
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("over the 16777216 bytes"), "{err}");
        file.set_len(MAX_TRANSCRIPT_BYTES).expect("shrink");
        assert_eq!(
            read_bounded(&path).await.expect("at the bound").len() as u64,
            MAX_TRANSCRIPT_BYTES
        );
    }
}
