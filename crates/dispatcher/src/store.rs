//! The requests bucket: one [`RequestState`] per request id, created once and changed only
//! with compare-and-set, so two writers (a dispatcher and its restarted self, or two replicas)
//! can never overwrite each other's transition.

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use bytes::Bytes;
use futures::TryStreamExt;
use tracing::error;
use warroom_proto::{RequestId, names};
use warroom_runtime::Chain;

use crate::state::RequestState;
use crate::{Error, Result};

/// How many times a change is re-read and re-applied after compare-and-set conflicts before
/// the dispatcher gives up on it for now (the message is redelivered, the sweep retries).
const MAX_CAS_ATTEMPTS: u32 = 50;

/// The requests bucket.
#[derive(Clone, Debug)]
pub struct Store {
    kv: kv::Store,
}

/// The stored state and the bucket revision it was read at (the compare-and-set token).
pub type Versioned = (RequestState, u64);

/// What [`Store::modify`] did.
#[derive(Debug)]
pub enum Modified {
    /// No such request.
    Missing,
    /// The change had nothing to do; the state as it is, and its revision.
    Unchanged(RequestState, u64),
    /// The change was stored; the new state, and its revision.
    Changed(RequestState, u64),
}

impl Store {
    pub fn new(kv: kv::Store) -> Self {
        Store { kv }
    }

    /// The request's state, or `None` when there is no such request.
    pub async fn load(&self, id: &RequestId) -> Result<Option<Versioned>> {
        let entry = self
            .kv
            .entry(id.as_str())
            .await
            .map_err(|e| kv_error("read", id, e))?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        if entry.operation != Operation::Put {
            return Ok(None);
        }
        let state = serde_json::from_slice(&entry.value).map_err(|source| Error::CorruptState {
            id: id.clone(),
            source,
        })?;
        Ok(Some((state, entry.revision)))
    }

    /// Stores a new request and returns its revision; `None` when the id is already taken (by
    /// this very request, redelivered or published twice).
    pub async fn create(&self, state: &RequestState) -> Result<Option<u64>> {
        let id = state.id();
        match self.kv.create(id, encode(state)?).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(kv_error("create", id, e)),
        }
    }

    /// Writes `state` if the entry is still at `revision` and returns its new revision; `None`
    /// on a conflict (someone changed it since it was read: re-read and re-apply).
    pub async fn update(&self, state: &RequestState, revision: u64) -> Result<Option<u64>> {
        let id = state.id();
        match self.kv.update(id, encode(state)?, revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(kv_error("update", id, e)),
        }
    }

    /// Reads, applies `change` (which says whether it changed anything) and writes back with
    /// compare-and-set, re-reading and re-applying on every conflict.
    pub async fn modify(
        &self,
        id: &RequestId,
        mut change: impl FnMut(&mut RequestState) -> bool,
    ) -> Result<Modified> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some((mut state, revision)) = self.load(id).await? else {
                return Ok(Modified::Missing);
            };
            if !change(&mut state) {
                return Ok(Modified::Unchanged(state, revision));
            }
            if let Some(revision) = self.update(&state, revision).await? {
                return Ok(Modified::Changed(state, revision));
            }
        }
        Err(Error::Contention {
            id: id.clone(),
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    /// Every request id in the bucket. A key that is not a request id was not written by a
    /// dispatcher; it is logged and left alone.
    pub async fn ids(&self) -> Result<Vec<RequestId>> {
        let keys = self.kv.keys().await.map_err(|e| kv_error("list", "*", e))?;
        let keys: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|e| kv_error("list", "*", e))?;
        Ok(keys
            .into_iter()
            .filter_map(|key| match RequestId::new(key) {
                Ok(id) => Some(id),
                Err(e) => {
                    error!(bucket = names::REQUESTS_BUCKET, cause = %Chain(&e), "skipping a key that is not a request id");
                    None
                }
            })
            .collect())
    }
}

fn encode(state: &RequestState) -> Result<Bytes> {
    serde_json::to_vec(state)
        .map(Bytes::from)
        .map_err(|source| Error::Encode {
            what: format!("the state of request {}", state.id()),
            source,
        })
}

fn kv_error(
    action: &'static str,
    id: &str,
    error: impl Into<warroom_runtime::bus::Cause>,
) -> Error {
    Error::Kv {
        action,
        bucket: names::REQUESTS_BUCKET,
        id: id.to_owned(),
        source: error.into(),
    }
}
