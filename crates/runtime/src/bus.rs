//! The typed NATS bus every daemon uses: the JetStream layout, typed publishing, and typed
//! durable consumers whose deliveries settle themselves.
//!
//! Streams and buckets are created with the same configuration by every daemon that uses
//! them, so the daemons can start in any order. Subjects and stream names come from
//! [`warroom_proto::names`] only; this module never spells one.
//!
//! A consumer yields [`Delivery`]s: a decoded, subject-checked message plus the ways to
//! settle it. A message that can never be handled is terminated with its reason and copied to
//! the dead-letter stream ([`Delivery::term`]); one that failed for now is handed back with a
//! delay ([`Delivery::retry`]) until its last delivery, after which it is dead-lettered too.
//! No message can stall a stream.

use crate::Chain;
use std::marker::PhantomData;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, kv, object_store, stream};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use warroom_proto::{Inbound, Stream, Subject, names};

use prometheus_client::metrics::counter::Counter;

use crate::metrics::RuntimeMetrics;

/// The cause of a failed NATS operation: async-nats has an error type per operation, and
/// the bus keeps whichever it got as the source.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot read the NATS credentials {path}")]
    Credentials {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create or open JetStream stream {name}")]
    Stream {
        name: String,
        #[source]
        source: Cause,
    },
    #[error("cannot create or open key-value bucket {name}")]
    Bucket {
        name: String,
        #[source]
        source: Cause,
    },
    #[error("cannot create or open object store {name}")]
    ObjectStore {
        name: String,
        #[source]
        source: Cause,
    },
    #[error("cannot open consumer {consumer} on stream {stream}")]
    Consumer {
        stream: &'static str,
        consumer: String,
        #[source]
        source: Cause,
    },
    #[error("cannot publish to {subject}")]
    Publish {
        subject: String,
        #[source]
        source: Cause,
    },
    #[error("cannot encode a message for {subject}")]
    Encode {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// How long accepted requests and results are kept in their streams.
const KEEP_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How long a repeated `Nats-Msg-Id` is recognised as a duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The default retention of the events stream (raw tool output, already redacted at the
/// source): the publisher reads it within seconds, so a week leaves room for an outage.
pub const DEFAULT_EVENTS_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How long a conversation is kept after its last turn: as long as the accepted request it
/// follows up is kept in its stream, so a request that can still be read can still be
/// followed up.
pub const CONVERSATIONS_KEPT_FOR: Duration = KEEP_FOR;

/// How a daemon reaches NATS.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub url: String,
    /// A `.creds` file (JWT and NKey seed) for decentralised auth.
    pub creds: Option<std::path::PathBuf>,
    /// A file holding an NKey seed (`SU...`), for NKey users in the server's config.
    pub nkey_seed: Option<std::path::PathBuf>,
    /// The CA that signed the server's certificate; its presence turns TLS on.
    pub tls_ca: Option<std::path::PathBuf>,
    /// The client certificate and key, for mutual TLS.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Replicas of each stream and bucket this daemon creates (1, or 3 on a NATS cluster).
    pub replicas: usize,
    /// How long the events stream keeps messages.
    pub events_retention: Duration,
}

impl Connection {
    /// A plain connection to `url`, one replica, default retention.
    pub fn plain(url: &str) -> Connection {
        Connection {
            url: url.to_owned(),
            replicas: 1,
            events_retention: DEFAULT_EVENTS_RETENTION,
            ..Connection::default()
        }
    }
}

/// A connected client with JetStream and the warroom layout in place. It does not hand out
/// its raw client: everything goes through typed subjects and messages.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    replicas: usize,
    events_retention: Duration,
}

/// What the stream said when it stored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The message's sequence in its stream.
    pub sequence: u64,
    /// It repeated a deduplication id seen within the window and was not stored again.
    pub duplicate: bool,
}

/// How often the streams are asked for before a JetStream that does not answer fails the
/// start (about 30 s of pauses in all).
pub const STREAM_SETUP_ATTEMPTS: u32 = 10;

impl Bus {
    /// Connects (retrying while the server is not up yet) and makes sure every stream exists.
    ///
    /// Replies (JetStream API answers, pulled messages) come to inboxes under
    /// `_INBOX.<name>`, so that a locked-down server can let each component subscribe to its
    /// own inboxes only (see `warroom-admin nats-auth`).
    pub async fn connect(connection: &Connection, name: &str) -> Result<Bus> {
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .custom_inbox_prefix(inbox_prefix(name))
            .retry_on_initial_connect();
        if let Some(path) = &connection.creds {
            options =
                options
                    .credentials_file(path)
                    .await
                    .map_err(|source| BusError::Credentials {
                        path: path.display().to_string(),
                        source,
                    })?;
        }
        if let Some(path) = &connection.nkey_seed {
            let seed =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| BusError::Credentials {
                        path: path.display().to_string(),
                        source,
                    })?;
            options = options.nkey(seed.trim().to_owned());
        }
        if let Some(ca) = &connection.tls_ca {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&connection.tls_cert, &connection.tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        // `nats://a:4222,nats://b:4222`: every server of a cluster, so that the client finds
        // one when the first is down (it also learns the others from the servers).
        let servers: Vec<async_nats::ServerAddr> = connection
            .url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::parse)
            .collect::<std::io::Result<_>>()
            .map_err(|e| BusError::Connect {
                url: connection.url.clone(),
                source: async_nats::ConnectError::from(e),
            })?;
        let client = options
            .connect(servers.as_slice())
            .await
            .map_err(|source| BusError::Connect {
                url: connection.url.clone(),
                source,
            })?;
        let jetstream = jetstream::new(client.clone());
        let bus = Bus {
            client,
            jetstream,
            replicas: connection.replicas.max(1),
            events_retention: connection.events_retention,
        };
        bus.ensure_streams().await?;
        Ok(bus)
    }

    /// Creates the warroom streams that do not exist yet.
    ///
    /// A JetStream that does not answer yet (a cluster still electing its leaders after a
    /// start or the loss of a node) is asked again with growing pauses, up to
    /// [`STREAM_SETUP_ATTEMPTS`] times, before the error is returned. A runner may not create
    /// them on a locked-down server (see `warroom-admin nats-auth`): until a control-plane
    /// daemon has, it fails at start.
    pub async fn ensure_streams(&self) -> Result<()> {
        use crate::retry::Retryable as _;
        use async_nats::jetstream::context::CreateStreamErrorKind;
        for config in stream_configs(self.replicas, self.events_retention) {
            let name = config.name.clone();
            (|| self.jetstream.get_or_create_stream(config.clone()))
                .retry(crate::retry::backoff(
                    Duration::from_millis(200),
                    Duration::from_secs(5),
                    STREAM_SETUP_ATTEMPTS as usize - 1,
                ))
                .when(|e| {
                    matches!(
                        e.kind(),
                        CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable
                    )
                })
                .notify(|e, pause| {
                    tracing::warn!(stream = %name, cause = %Chain(e), retry_in = ?pause, "JetStream does not answer yet; asking again");
                })
                .await
                .map_err(|e| BusError::Stream {
                    name: name.clone(),
                    source: e.into(),
                })?;
        }
        Ok(())
    }

    /// Opens a key-value bucket, creating it when it does not exist.
    pub async fn bucket(&self, name: &str, history: i64) -> Result<kv::Store> {
        self.bucket_with(kv::Config {
            bucket: name.to_owned(),
            history,
            ..Default::default()
        })
        .await
    }

    /// Opens a key-value bucket, creating it with `config` (file storage, this bus's
    /// replicas) when it does not exist.
    pub async fn bucket_with(&self, config: kv::Config) -> Result<kv::Store> {
        if let Ok(store) = self.jetstream.get_key_value(&config.bucket).await {
            return Ok(store);
        }
        let name = config.bucket.clone();
        self.jetstream
            .create_key_value(kv::Config {
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                ..config
            })
            .await
            .map_err(|e| BusError::Bucket {
                name,
                source: e.into(),
            })
    }

    /// Opens the runners bucket (`names::RUNNERS_BUCKET`: runner heartbeats), creating it
    /// when it does not exist: one value per key, each removed
    /// [`warroom_proto::wire::HEARTBEAT_TTL`] after it was written, so a replica that stopped
    /// writing disappears from it. Every daemon opens it with this same configuration. A
    /// runner may not create it on a locked-down server (see `warroom-admin nats-auth`):
    /// until the dispatcher has, opening it fails and the runner tries again.
    pub async fn runners_bucket(&self) -> Result<kv::Store> {
        self.bucket_with(kv::Config {
            bucket: names::RUNNERS_BUCKET.to_owned(),
            description: "claude-warroom runner heartbeats, <cluster>.<replica>".to_owned(),
            history: 1,
            max_age: warroom_proto::wire::HEARTBEAT_TTL,
            ..Default::default()
        })
        .await
    }

    /// Opens `cluster`'s conversations object store (`names::conversations_bucket`: the
    /// Claude Code transcripts its runners keep between the turns of a conversation),
    /// creating it when it does not exist: file storage, this bus's replicas, each object kept
    /// for [`CONVERSATIONS_KEPT_FOR`] after its last write. The cluster's runner creates it on
    /// first use; its permissions reach that store and no other.
    pub async fn conversations_store(
        &self,
        cluster: &warroom_proto::ClusterName,
    ) -> Result<object_store::ObjectStore> {
        self.object_store_with(object_store::Config {
            bucket: names::conversations_bucket(cluster),
            description: Some(format!(
                "claude-warroom conversations of cluster {cluster}, <cluster>.<request>: a \
                 Claude Code transcript"
            )),
            max_age: CONVERSATIONS_KEPT_FOR,
            ..Default::default()
        })
        .await
    }

    /// Opens an object store, creating it with `config` (file storage, this bus's replicas)
    /// when it does not exist.
    async fn object_store_with(
        &self,
        config: object_store::Config,
    ) -> Result<object_store::ObjectStore> {
        if let Ok(store) = self.jetstream.get_object_store(&config.bucket).await {
            return Ok(store);
        }
        let name = config.bucket.clone();
        self.jetstream
            .create_object_store(object_store::Config {
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                ..config
            })
            .await
            .map_err(|e| BusError::ObjectStore {
                name,
                source: e.into(),
            })
    }

    /// Reads the value of `key` in key-value `bucket` with one direct get, without opening the
    /// bucket (no stream info): the request subject names the key
    /// (`$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>`), so a NATS user can be allowed to
    /// read some keys of a bucket and no others. `None` when the key has no value (never
    /// written, deleted or purged).
    pub async fn read_key<T: serde::de::DeserializeOwned>(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<T>, Cause> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        let stream = self
            .jetstream
            .get_stream_no_info(format!("KV_{bucket}"))
            .await?;
        let message = match stream
            .direct_get_last_for_subject(format!("$KV.{bucket}.{key}"))
            .await
        {
            Ok(message) => message,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // A deleted or purged key keeps a marker message with an empty payload.
        let removed = message
            .headers
            .get("KV-Operation")
            .is_some_and(|op| op.as_str() != "PUT");
        if removed || message.payload.is_empty() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&message.payload)?))
    }

    /// Publishes `message` as JSON on `subject` and waits until the stream stored it. With
    /// `dedup_id`, a repeat within the duplicate window is acknowledged but not stored again.
    pub async fn publish<T: Serialize>(
        &self,
        subject: &Subject,
        dedup_id: Option<&str>,
        message: &T,
    ) -> Result<Stored> {
        let payload = serde_json::to_vec(message).map_err(|source| BusError::Encode {
            subject: subject.to_string(),
            source,
        })?;
        self.publish_bytes(subject, dedup_id, payload).await
    }

    async fn publish_bytes(
        &self,
        subject: &Subject,
        dedup_id: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<Stored> {
        let mut publish = jetstream::message::PublishMessage::build().payload(payload.into());
        if let Some(id) = dedup_id {
            publish = publish.message_id(id);
        }
        let failed = |source: Cause| BusError::Publish {
            subject: subject.to_string(),
            source,
        };
        let ack = self
            .jetstream
            .send_publish(subject.to_string(), publish)
            .await
            .map_err(|e| failed(e.into()))?
            .await
            .map_err(|e| failed(e.into()))?;
        Ok(Stored {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// Opens (creating it the first time) a durable pull consumer and yields its typed
    /// deliveries.
    pub async fn consume<T: Inbound>(&self, spec: ConsumerSpec) -> Result<Consumer<T>> {
        let failed = |source: Cause| BusError::Consumer {
            stream: spec.stream.name(),
            consumer: spec.durable.clone(),
            source,
        };
        let consumer: consumer::PullConsumer = self
            .jetstream
            .get_stream(spec.stream.name())
            .await
            .map_err(|e| failed(e.into()))?
            .get_or_create_consumer(
                &spec.durable,
                consumer::pull::Config {
                    durable_name: Some(spec.durable.clone()),
                    description: Some(spec.description.clone()),
                    filter_subject: spec.filter.clone().unwrap_or_default(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: spec.ack_wait,
                    max_deliver: spec.max_deliver,
                    max_ack_pending: spec.max_ack_pending,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed(e.into()))?;
        Ok(Consumer {
            bus: self.clone(),
            consumer,
            spec,
            messages: None,
            dead_letters: None,
            _type: PhantomData,
        })
    }

    /// Sends what is buffered (acks above all) to the server, waiting at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        match tokio::time::timeout(timeout, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(cause = %Chain(&e), "cannot flush the NATS connection"),
            Err(_) => tracing::warn!(?timeout, "flushing the NATS connection timed out"),
        }
    }

    /// Unsubscribes and closes the connection, so the server stops handing this daemon
    /// messages it would no longer handle.
    pub async fn close(&self, timeout: Duration) {
        if let Err(e) = self.client.drain().await {
            tracing::warn!(cause = %Chain(&e), "cannot drain the NATS connection");
            return;
        }
        // The client says it has closed by refusing commands: a flush fails once it is gone.
        let client = self.client.clone();
        let closed = async move {
            while client.flush().await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(timeout, closed).await.is_err() {
            tracing::warn!(?timeout, "the NATS connection did not close in time");
        }
    }

    /// The JetStream stream handle, for the few callers that read stream state (the
    /// dispatcher counts queued tasks).
    pub async fn stream(&self, stream: Stream) -> Result<jetstream::stream::Stream> {
        self.jetstream
            .get_stream(stream.name())
            .await
            .map_err(|e| BusError::Stream {
                name: stream.name().to_owned(),
                source: e.into(),
            })
    }

    /// Publishes raw bytes on a subject with core NATS (no stream): acks with a reason.
    async fn reply(&self, subject: String, payload: Vec<u8>) -> Result<(), Cause> {
        Ok(self.client.publish(subject, payload.into()).await?)
    }
}

/// How a durable consumer is set up.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: Stream,
    pub durable: String,
    pub description: String,
    /// Only messages on this subject or subject pattern (a [`Subject`], or one of
    /// [`names`](warroom_proto::names)' patterns such as `warroom.status.*`); every subject
    /// of the stream when `None`.
    pub filter: Option<String>,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Deliveries before a message is dead-lettered by [`Delivery::retry`].
    pub max_deliver: i64,
    pub max_ack_pending: i64,
    /// Messages per pull request.
    pub batch: usize,
}

impl ConsumerSpec {
    /// A consumer with sensible defaults: 30 s ack wait, 10 deliveries, 1000 pending.
    pub fn new(stream: Stream, durable: impl Into<String>, description: &str) -> ConsumerSpec {
        ConsumerSpec {
            stream,
            durable: durable.into(),
            description: description.to_owned(),
            filter: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            max_ack_pending: 1000,
            batch: 100,
        }
    }
}

/// How long one pull request of [`Consumer::next`] stays open at the server.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How often the server tells an open pull request with nothing to deliver that it is still
/// there. Twice this without a word, and the request is taken for lost (a reconnect, a
/// restarted server) and made again.
const PULL_HEARTBEAT: Duration = Duration::from_millis(2500);

/// How long [`Consumer::hand_back`] waits for the server to confirm the unsubscribe, handing
/// back what arrives meanwhile; a server that does not answer leaves the rest to the ack wait.
pub const HAND_BACK_WAIT: Duration = Duration::from_secs(5);

/// A durable pull consumer yielding typed deliveries.
pub struct Consumer<T> {
    bus: Bus,
    consumer: consumer::PullConsumer,
    spec: ConsumerSpec,
    messages: Option<Puller>,
    /// Where the dead letters of this consumer's messages are counted.
    dead_letters: Option<Counter>,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("durable", &self.spec.durable)
            .finish()
    }
}

/// The server did not confirm an ack or a nak (`what`) that was sent with
/// [`Delivery::ack_confirmed`] or [`Delivery::nak_confirmed`].
#[derive(Debug, thiserror::Error)]
#[error("the server did not confirm the {what} of a message")]
pub struct AckError {
    pub what: &'static str,
    #[source]
    pub source: Cause,
}

/// What a pull returned that was not a usable message.
#[derive(Debug, thiserror::Error)]
#[error("cannot pull from consumer {consumer}")]
pub struct PullError {
    pub consumer: String,
    #[source]
    pub source: Cause,
}

impl PullError {
    fn new(consumer: &str, source: impl Into<Cause>) -> PullError {
        PullError {
            consumer: consumer.to_owned(),
            source: source.into(),
        }
    }
}

impl<T: Inbound> Consumer<T> {
    /// Counts every message of this consumer that goes to the dead letters in
    /// [`RuntimeMetrics::dead_letters`]: those that do not decode (set aside here, before the
    /// daemon sees them) and those the daemon terminates or retries for the last time.
    pub fn with_metrics(mut self, metrics: &RuntimeMetrics) -> Self {
        self.dead_letters = Some(metrics.dead_letters.clone());
        self
    }

    /// The next delivery, waiting as long as it takes. A message that does not decode or
    /// does not match its subject is terminated and dead-lettered (on a task of its own, so
    /// this future is safe to drop in a `select!`) and never reaches the caller. Errors are
    /// transient (the caller logs them and asks again).
    pub async fn next(&mut self) -> Result<Delivery<T>, PullError> {
        loop {
            let message = self.next_raw().await?;
            if let Some(delivery) = self.check(message).await {
                return Ok(delivery);
            }
        }
    }

    /// The next delivery if one arrives before `deadline`.
    pub async fn next_before(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Option<Result<Delivery<T>, PullError>> {
        tokio::time::timeout_at(deadline, self.next()).await.ok()
    }

    /// Hands the messages already fetched but not handled back to the server at once (rather
    /// than after the ack wait), so another replica gets them without delay. The
    /// subscription is drained rather than dropped, so what was already read from the socket
    /// is handed back too; waits at most [`HAND_BACK_WAIT`] for it. A message the server sent
    /// in the instant before it saw the unsubscribe can still be lost (async-nats closes a
    /// drained subscription without waiting for the server's answer) and comes back after
    /// the ack wait. The consumer pulls afresh if used again.
    pub async fn hand_back(&mut self) {
        let Some(mut puller) = self.messages.take() else {
            return;
        };
        if let Err(e) = puller.subscriber.drain().await {
            tracing::warn!(durable = %self.spec.durable, cause = %e, "cannot drain the pull subscription");
        }
        let deadline = tokio::time::Instant::now() + HAND_BACK_WAIT;
        while let Ok(Some(message)) =
            tokio::time::timeout_at(deadline, puller.subscriber.next()).await
        {
            if !matches!(message.status, None | Some(async_nats::StatusCode::OK)) {
                continue;
            }
            let message = jetstream::Message {
                message,
                context: self.bus.jetstream.clone(),
            };
            if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
                tracing::warn!(subject = %message.subject, cause = %Chain(&*e), "cannot hand a message back");
            }
        }
    }

    /// Pulls at most one message, waiting up to `expires`: for workers that take one job at
    /// a time and leave the rest in the stream for other replicas. `None` when nothing came.
    pub async fn fetch_one(&mut self, expires: Duration) -> Result<Option<Delivery<T>>, PullError> {
        let mut batch = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(expires)
            .messages()
            .await
            .map_err(|e| PullError::new(&self.spec.durable, e))?;
        let message = match batch.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(PullError::new(&self.spec.durable, e)),
            Some(Ok(message)) => message,
        };
        Ok(self.check(message).await)
    }

    /// Decodes and checks a message; terminates and dead-letters it when it can never be
    /// handled.
    async fn check(&self, message: jetstream::Message) -> Option<Delivery<T>> {
        let subject = match Subject::parse(message.subject.as_str()) {
            Ok(subject) => subject,
            Err(e) => {
                let delivery = self.raw(message);
                let reason = e.to_string();
                // On its own task: the caller may drop `next()` (a `select!` branch that lost)
                // and the message must be settled all the same.
                tokio::spawn(async move { delivery.term_raw(&reason).await });
                return None;
            }
        };
        match T::decode(&subject, &message.payload) {
            Ok(decoded) => Some(Delivery {
                message: decoded,
                subject,
                raw: self.raw(message),
            }),
            Err(reason) => {
                tracing::error!(consumer = %self.spec.durable, subject = %subject, reason = %reason, "message refused; terminating it");
                let delivery = self.raw(message);
                tokio::spawn(async move { delivery.term_raw(&reason.reason).await });
                None
            }
        }
    }

    fn raw(&self, message: jetstream::Message) -> RawDelivery {
        RawDelivery {
            bus: self.bus.clone(),
            durable: self.spec.durable.clone(),
            stream: self.spec.stream,
            max_deliver: self.spec.max_deliver,
            dead_letters: self.dead_letters.clone(),
            message,
        }
    }

    /// The number of messages waiting for this consumer and not yet delivered.
    pub async fn pending(&mut self) -> Result<u64, PullError> {
        let info = self
            .consumer
            .info()
            .await
            .map_err(|e| PullError::new(&self.spec.durable, e))?;
        Ok(info.num_pending)
    }

    /// The next message of the consumer, pulling as needed.
    ///
    /// The pull requests are made here rather than by `async-nats`'s pull stream: that one
    /// counts the messages still owed to it from a task of its own, and when the messages of a
    /// new request are read before that task has counted the request, it believes more are
    /// owed than the server will send. It then waits for them without asking again until its
    /// request would have expired, 35 s; a dispatcher working through a backlog of reports
    /// stalled this way. Here one request is open at a time, counted before anything can
    /// arrive for it, and each request has an inbox of its own (`<inbox>.<n>`), so a late
    /// status word (expired, ended) about an earlier request never ends the open one. A
    /// message counted against the wrong request only makes the next request come early.
    ///
    /// Safe to drop at any await: the subscription keeps what arrives meanwhile, and a
    /// request counts as made only once it was sent.
    async fn next_raw(&mut self) -> Result<jetstream::Message, PullError> {
        let durable = self.spec.durable.clone();
        let failed = |e: &dyn std::fmt::Display| PullError::new(&durable, e.to_string());
        if self.messages.is_none() {
            let client = &self.bus.client;
            let inbox = client.new_inbox();
            let subscriber = client
                .subscribe(format!("{inbox}.*"))
                .await
                .map_err(|e| failed(&e))?;
            self.messages = Some(Puller {
                subscriber,
                inbox,
                next_subject: format!(
                    "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
                    self.spec.stream.name(),
                    self.spec.durable
                ),
                request: 0,
                owed: 0,
            });
        }
        let batch = self.spec.batch;
        let Some(puller) = self.messages.as_mut() else {
            return Err(failed(&"no pull subscription"));
        };
        loop {
            if puller.owed == 0 {
                let request = puller.request + 1;
                let body = serde_json::json!({
                    "batch": batch,
                    "expires": PULL_EXPIRES.as_nanos(),
                    "idle_heartbeat": PULL_HEARTBEAT.as_nanos(),
                });
                self.bus
                    .client
                    .publish_with_reply(
                        puller.next_subject.clone(),
                        format!("{}.{request}", puller.inbox),
                        body.to_string().into(),
                    )
                    .await
                    .map_err(|e| failed(&e))?;
                puller.request = request;
                puller.owed = batch;
            }
            let message =
                match tokio::time::timeout(PULL_HEARTBEAT * 2, puller.subscriber.next()).await {
                    // Not even a heartbeat: the request is gone; make it again.
                    Err(_) => {
                        puller.owed = 0;
                        continue;
                    }
                    Ok(None) => {
                        self.messages = None;
                        return Err(failed(&"the pull subscription ended"));
                    }
                    Ok(Some(message)) => message,
                };
            let of_open_request = message
                .subject
                .as_str()
                .rsplit_once('.')
                .and_then(|(_, n)| n.parse::<u64>().ok())
                == Some(puller.request);
            let description = message.description.clone().unwrap_or_default();
            match message.status {
                // A message keeps its own subject, so it is counted against the open
                // request: the server answers requests in their order.
                None | Some(async_nats::StatusCode::OK) => {
                    puller.owed = puller.owed.saturating_sub(1);
                    return Ok(jetstream::Message {
                        message,
                        context: self.bus.jetstream.clone(),
                    });
                }
                Some(async_nats::StatusCode::IDLE_HEARTBEAT) => {}
                // The request expired, or ended (a leadership change): make the next one.
                Some(async_nats::StatusCode::TIMEOUT | async_nats::StatusCode::NOT_FOUND) => {
                    if of_open_request {
                        puller.owed = 0;
                    }
                }
                Some(async_nats::StatusCode::REQUEST_TERMINATED) => {
                    if of_open_request {
                        puller.owed = 0;
                    }
                    if description == "Consumer Deleted" || description.starts_with("Exceeded") {
                        self.messages = None;
                        return Err(failed(&format!("the server ended the pull: {description}")));
                    }
                }
                Some(status) => {
                    if of_open_request {
                        puller.owed = 0;
                    }
                    return Err(failed(&format!(
                        "the server answered the pull with {status} {description}"
                    )));
                }
            }
        }
    }
}

/// The pull requests of one [`Consumer`] ([`Consumer::next_raw`]).
struct Puller {
    /// Every request's messages and status words (sent to `<inbox>.<request>`).
    subscriber: async_nats::Subscriber,
    inbox: String,
    /// Where pull requests go: `$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`.
    next_subject: String,
    /// The number of the open request (0 before the first).
    request: u64,
    /// Messages the open request may still bring; 0 when none is open.
    owed: usize,
}

/// One message of a consumer, decoded and checked against its subject.
#[derive(Debug)]
pub struct Delivery<T> {
    pub message: T,
    pub subject: Subject,
    raw: RawDelivery,
}

/// Marks one delivered message as still being worked on.
#[derive(Debug, Clone)]
pub struct Progress(jetstream::Message);

impl Progress {
    pub async fn in_progress(&self) {
        if let Err(e) = self.0.ack_with(AckKind::Progress).await {
            tracing::warn!(cause = %Chain(&*e), "cannot mark a message as in progress");
        }
    }
}

/// What the dead-letter stream keeps of a message that could not be handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub stream: String,
    pub consumer: String,
    pub subject: String,
    pub stream_sequence: u64,
    pub deliveries: i64,
    pub reason: String,
    /// The message as it was, when it is text (it is JSON for every warroom message).
    pub payload: String,
}

#[derive(Debug)]
struct RawDelivery {
    bus: Bus,
    durable: String,
    stream: Stream,
    max_deliver: i64,
    dead_letters: Option<Counter>,
    message: jetstream::Message,
}

impl RawDelivery {
    fn delivered(&self) -> i64 {
        self.message.info().map(|i| i.delivered).unwrap_or(1)
    }

    fn stream_sequence(&self) -> u64 {
        self.message.info().map(|i| i.stream_sequence).unwrap_or(0)
    }

    async fn settle(&self, kind: AckKind) {
        if let Err(e) = self.message.ack_with(kind).await {
            tracing::warn!(subject = %self.message.subject, cause = %Chain(&*e), "cannot settle a message; it will be redelivered");
        }
    }

    /// Copies the message to the dead-letter stream, then terminates it with the reason.
    /// Returns whether it was dead-lettered (else it was handed back for later).
    async fn term_raw(&self, reason: &str) -> bool {
        let letter = DeadLetter {
            stream: self.stream.name().to_owned(),
            consumer: self.durable.clone(),
            subject: self.message.subject.to_string(),
            stream_sequence: self.stream_sequence(),
            deliveries: self.delivered(),
            reason: reason.to_owned(),
            payload: String::from_utf8_lossy(&self.message.payload).into_owned(),
        };
        let dedup = format!("{}-{}", self.durable, letter.stream_sequence);
        let subject = Subject::DeadLetter(self.durable.clone());
        if let Err(e) = self.bus.publish(&subject, Some(&dedup), &letter).await {
            // Keep the message rather than lose it: it comes back after a delay.
            tracing::error!(cause = %Chain(&e), "cannot dead-letter a message; handing it back");
            self.settle(AckKind::Nak(Some(Duration::from_secs(30))))
                .await;
            return false;
        }
        if let Some(dead_letters) = &self.dead_letters {
            dead_letters.inc();
        }
        // `+TERM <reason>` (NATS 2.10+) puts the reason into the server's advisory.
        let term = format!("+TERM {}", reason.replace(['\n', '\r'], " "));
        let sent = match self.message.reply.as_ref() {
            Some(reply) => self.bus.reply(reply.to_string(), term.into_bytes()).await,
            None => Err("the message has no reply subject".into()),
        };
        if let Err(e) = sent {
            tracing::warn!(cause = %Chain(&*e), "cannot terminate a message; it will be redelivered");
        }
        true
    }
}

impl<T> Delivery<T> {
    /// Done: the message is removed from the consumer's pending set.
    pub async fn ack(&self) {
        self.raw.settle(AckKind::Ack).await;
    }

    /// Done, and wait until the server confirmed it (for work that must not run twice).
    pub async fn ack_confirmed(&self) -> Result<(), AckError> {
        self.raw.message.double_ack().await.map_err(|e| AckError {
            what: "ack",
            source: e,
        })
    }

    /// Still being worked on: resets the ack wait.
    pub async fn in_progress(&self) {
        self.raw.settle(AckKind::Progress).await;
    }

    /// Hand back for redelivery after `delay`, no questions asked (shutdown, a busy runner).
    pub async fn nak(&self, delay: Option<Duration>) {
        self.raw.settle(AckKind::Nak(delay)).await;
    }

    /// A handle that only marks the message as still being worked on, for a task that keeps
    /// a long job from being redelivered while the owner of the delivery awaits the job.
    pub fn progress_handle(&self) -> Progress {
        Progress(self.raw.message.clone())
    }

    /// Hand back at once and wait until the server confirmed it.
    pub async fn nak_confirmed(&self, delay: Option<Duration>) -> Result<(), AckError> {
        self.raw
            .message
            .double_ack_with(AckKind::Nak(delay))
            .await
            .map_err(|e| AckError {
                what: "nak",
                source: e,
            })
    }

    /// A transient failure: redelivered after `delay`, unless this was the last delivery the
    /// consumer allows, in which case it is dead-lettered and terminated with `reason`.
    /// Returns whether it was dead-lettered.
    pub async fn retry(&self, delay: Duration, reason: &str) -> bool {
        if self.raw.delivered() >= self.raw.max_deliver {
            let reason = format!(
                "gave up after {} deliveries: {reason}",
                self.raw.delivered()
            );
            self.raw.term_raw(&reason).await
        } else {
            self.raw.settle(AckKind::Nak(Some(delay))).await;
            false
        }
    }

    /// A permanent failure: dead-lettered and terminated with `reason`. Returns whether it
    /// was dead-lettered (else it was handed back, to be tried again later).
    pub async fn term(&self, reason: &str) -> bool {
        self.raw.term_raw(reason).await
    }

    /// The size of the message's payload in bytes.
    pub fn size(&self) -> usize {
        self.raw.message.payload.len()
    }

    /// How many times the server delivered this message (1 the first time).
    pub fn delivered(&self) -> i64 {
        self.raw.delivered()
    }

    /// The message's sequence in its stream.
    pub fn stream_sequence(&self) -> u64 {
        self.raw.stream_sequence()
    }

    /// Whether this is the last delivery the consumer allows.
    pub fn is_last_delivery(&self) -> bool {
        self.raw.delivered() >= self.raw.max_deliver
    }
}

/// The inbox prefix of a client named `name`: `_INBOX.<name>`, with every character that
/// cannot be in a subject token replaced by `_`.
pub fn inbox_prefix(name: &str) -> String {
    let token: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("_INBOX.{token}")
}

/// The streams, as every daemon creates them.
pub fn stream_configs(replicas: usize, events_retention: Duration) -> Vec<stream::Config> {
    Stream::ALL
        .into_iter()
        .map(|s| {
            let base = stream::Config {
                name: s.name().to_owned(),
                subjects: s.subjects(),
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_age: KEEP_FOR,
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: replicas.max(1),
                ..Default::default()
            };
            match s {
                Stream::Tasks => stream::Config {
                    retention: stream::RetentionPolicy::WorkQueue,
                    ..base
                },
                Stream::Events => stream::Config {
                    max_age: events_retention,
                    ..base
                },
                _ => base,
            }
        })
        .collect()
}
