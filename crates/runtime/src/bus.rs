//! The NATS connection and the JetStream layout the daemons share.
//!
//! Streams and buckets are created with the same configuration by every daemon that uses
//! them, so the daemons can start in any order. Stream names and subjects come from
//! [`warroom_proto::names`] only.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use serde::Serialize;
use warroom_proto::names;

/// Errors talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("cannot create or open JetStream stream {name}: {message}")]
    Stream { name: String, message: String },
    #[error("cannot create or open key-value bucket {name}: {message}")]
    Bucket { name: String, message: String },
    #[error("cannot publish to {subject}: {message}")]
    Publish { subject: String, message: String },
    #[error("cannot encode a message for {subject}: {source}")]
    Encode {
        subject: String,
        source: serde_json::Error,
    },
}

pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// How long accepted requests, results and events are kept in their streams.
const KEEP_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How long a repeated `Nats-Msg-Id` is recognised as a duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// A connected client with JetStream and the warroom layout in place.
#[derive(Clone, Debug)]
pub struct Bus {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
}

impl Bus {
    /// Connects (retrying while the server is not up yet) and makes sure every stream exists.
    pub async fn connect(url: &str, name: &str) -> Result<Bus> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|source| BusError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let jetstream = jetstream::new(client.clone());
        let bus = Bus { client, jetstream };
        bus.ensure_streams().await?;
        Ok(bus)
    }

    /// Creates the warroom streams that do not exist yet.
    pub async fn ensure_streams(&self) -> Result<()> {
        for config in stream_configs() {
            let name = config.name.clone();
            self.jetstream
                .get_or_create_stream(config)
                .await
                .map_err(|e| BusError::Stream {
                    name,
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Opens a key-value bucket, creating it when it does not exist.
    pub async fn bucket(&self, name: &str, history: i64) -> Result<kv::Store> {
        if let Ok(store) = self.jetstream.get_key_value(name).await {
            return Ok(store);
        }
        self.jetstream
            .create_key_value(kv::Config {
                bucket: name.to_owned(),
                history,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::Bucket {
                name: name.to_owned(),
                message: e.to_string(),
            })
    }

    /// Publishes `message` as JSON and waits until the stream stored it. With `dedup_id`, a
    /// repeat within the duplicate window is acknowledged but not stored again; the return
    /// value says whether it was such a duplicate.
    pub async fn publish<T: Serialize>(
        &self,
        subject: &str,
        dedup_id: Option<&str>,
        message: &T,
    ) -> Result<bool> {
        let payload = serde_json::to_vec(message).map_err(|source| BusError::Encode {
            subject: subject.to_owned(),
            source,
        })?;
        let mut publish = jetstream::message::PublishMessage::build().payload(payload.into());
        if let Some(id) = dedup_id {
            publish = publish.message_id(id);
        }
        let failed = |e: &dyn std::fmt::Display| BusError::Publish {
            subject: subject.to_owned(),
            message: e.to_string(),
        };
        let ack = self
            .jetstream
            .send_publish(subject.to_owned(), publish)
            .await
            .map_err(|e| failed(&e))?
            .await
            .map_err(|e| failed(&e))?;
        Ok(ack.duplicate)
    }
}

/// The streams, as every daemon creates them.
pub fn stream_configs() -> Vec<stream::Config> {
    let limits = |name: &str, subjects: Vec<String>| stream::Config {
        name: name.to_owned(),
        subjects,
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: KEEP_FOR,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    vec![
        limits(
            names::REQUESTS_STREAM,
            vec!["warroom.requests.*".to_owned()],
        ),
        stream::Config {
            retention: stream::RetentionPolicy::WorkQueue,
            ..limits(names::TASKS_STREAM, vec!["warroom.tasks.*".to_owned()])
        },
        limits(
            names::RESULTS_STREAM,
            vec!["warroom.results.*.*".to_owned()],
        ),
        limits(
            names::EVENTS_STREAM,
            vec![
                "warroom.events.*.*".to_owned(),
                "warroom.status.*".to_owned(),
            ],
        ),
    ]
}
