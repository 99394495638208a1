//! NATS stream, subject, consumer and key-value bucket names.
//!
//! Only this module spells a subject: [`Subject`] builds every `warroom.*` subject from
//! checked identities ([`RequestId`], [`ClusterName`]) and parses one back, and [`Stream`]
//! gives each stream its subject filters. No request can widen a subscription with `*` or
//! `>` or split a token with `.`, because the identities cannot hold those characters.

use std::fmt;

use crate::ids::{ClusterName, ReplicaId, RequestId};

/// Dispatcher state, one key per request id, updated with compare-and-set.
pub const REQUESTS_BUCKET: &str = "warroom-requests";
/// Gateway cursor: the last commit whose added request files were all published.
pub const GATEWAY_BUCKET: &str = "warroom-gateway";
/// The publisher's own record of the last status revision it pushed per request, so a
/// `status.json` planted in git by someone else can neither freeze nor suppress a request.
pub const PUBLISHER_BUCKET: &str = "warroom-publisher";
/// The key in [`PUBLISHER_BUCKET`] holding the last commit whose `results/` the publisher's
/// S3 mirror uploaded. A dot cannot be part of a request id, so it never meets a request's key.
pub const S3_MIRRORED_KEY: &str = "s3.mirrored";
/// Leases of the daemons that run one active replica at a time (keys [`DISPATCHER_LEASE`],
/// [`PUBLISHER_LEASE`]): a key lives as long as the bucket's maximum age unless its holder
/// renews it, so a crashed holder's lease runs out by itself.
pub const LEASES_BUCKET: &str = "warroom-leases";
/// The lease key of the active dispatcher.
pub const DISPATCHER_LEASE: &str = "dispatcher";
/// The lease key of the active publisher.
pub const PUBLISHER_LEASE: &str = "publisher";

/// The dispatcher's per-task record ([`crate::wire::TaskRecord`]), one key per cluster and
/// request ([`task_record_key`]): what a runner reads before it runs a delivered task. A
/// runner may read only its own cluster's keys; the request state above stays the
/// dispatcher's alone.
pub const TASKS_BUCKET: &str = "warroom-tasks";

/// The key of one task's record in [`TASKS_BUCKET`]: `<cluster>.<request>`, cluster first so
/// that one subject pattern (`<cluster>.>`) covers a cluster's records and no other's.
pub fn task_record_key(cluster: &ClusterName, request: &RequestId) -> String {
    format!("{cluster}.{request}")
}

/// The key of a follow-up turn's record in [`TASKS_BUCKET`]: `<cluster>.<request>.turn-<n>`,
/// below its cluster like every record a runner reads.
pub fn turn_record_key(cluster: &ClusterName, request: &RequestId, turn: u32) -> String {
    format!("{cluster}.{request}.turn-{turn}")
}

/// Runner heartbeats: one key per runner replica, [`heartbeat_key`], rewritten every
/// [`crate::wire::HEARTBEAT_INTERVAL`] and expiring [`crate::wire::HEARTBEAT_TTL`] after its
/// last write (the bucket's max age). A runner may write only its own cluster's keys; the
/// dispatcher reads them all.
pub const RUNNERS_BUCKET: &str = "warroom-runners";

/// The heartbeat key of one runner replica in [`RUNNERS_BUCKET`]: `<cluster>.<replica>`.
pub fn heartbeat_key(cluster: &ClusterName, replica: &ReplicaId) -> String {
    format!("{cluster}.{replica}")
}

/// Every heartbeat key of `cluster`'s replicas, as a key pattern: `<cluster>.*`.
pub fn heartbeat_keys(cluster: &ClusterName) -> String {
    format!("{cluster}.*")
}

/// The cluster and replica of a heartbeat key; `None` for a key that is not one.
pub fn parse_heartbeat_key(key: &str) -> Option<(ClusterName, ReplicaId)> {
    let (cluster, replica) = key.split_once('.')?;
    Some((
        ClusterName::new(cluster).ok()?,
        ReplicaId::new(replica).ok()?,
    ))
}

/// The object stores (not key-value buckets: a transcript outgrows NATS's 1 MiB message
/// limit) holding the Claude Code conversations of runs that may be followed up: one store
/// per cluster ([`conversations_bucket`]: `warroom-conversations-<cluster>`), so a runner's
/// NATS permissions reach its own cluster's conversations only; in it one object per request
/// ([`conversation_object`]), the CLI's session transcript (its JSONL file) with the session
/// id in the object's metadata. Any replica of the cluster's runner restores it into a fresh
/// HOME and continues it with `claude --resume`, so nothing of a conversation has to stay on
/// a runner's disk between turns.
pub const CONVERSATIONS_BUCKET: &str = "warroom-conversations";

/// The conversations store of `cluster`: `warroom-conversations-<cluster>` (a cluster name is
/// a valid bucket name part).
pub fn conversations_bucket(cluster: &ClusterName) -> String {
    format!("{CONVERSATIONS_BUCKET}-{cluster}")
}

/// The object name of one conversation in its cluster's store ([`conversations_bucket`]):
/// `<cluster>.<request>`, cluster first as in [`task_record_key`].
pub fn conversation_object(cluster: &ClusterName, request: &RequestId) -> String {
    format!("{cluster}.{request}")
}

/// The Kubernetes object name of request `id` with `prefix`: `<prefix>-<id>` when the id is a
/// valid name in lowercase, else the id lowercased with `_` as `-` and a hash of the exact id
/// appended, so that two ids differing only in case or `_` never share an object (a request
/// id may hold uppercase letters and `_` and end with `-`; a name is DNS-1123: lowercase,
/// `-`, ending alphanumeric). A request id has at most 128 characters, so the name stays
/// well within the 253 of an object name.
pub fn kube_name(prefix: &str, id: &RequestId) -> String {
    let id = id.as_str();
    let clean = id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && id.ends_with(|c: char| c.is_ascii_alphanumeric());
    if clean {
        return format!("{prefix}-{id}");
    }
    let lowered: String = id
        .chars()
        .map(|c| match c {
            '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    format!("{prefix}-{lowered}-{}", short_hash(id))
}

/// The request id as a Kubernetes label value (at most 63 characters, alphanumeric at both
/// ends): the id itself when it is one, else its first 54 characters and a hash. The exact id
/// goes into an annotation beside it.
pub fn kube_label_value(id: &RequestId) -> String {
    let id = id.as_str();
    if id.len() <= 63 && id.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return id.to_owned();
    }
    let head: String = id.chars().take(54).collect();
    format!("{}-{}", head.trim_end_matches(['-', '_']), short_hash(id))
}

fn short_hash(text: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text.as_bytes());
    hex::encode(&digest[..4])
}

/// The pod holding session `id` for `kubectl exec` (`spec.exec`), in its runner's namespace:
/// `warroom-session-<id>` ([`kube_name`]). Known before the pod exists, so a release finds it
/// whichever replica made it.
pub fn session_pod_name(id: &RequestId) -> String {
    kube_name("warroom-session", id)
}

/// The durable consumer of the dispatcher on [`Stream::Requests`].
pub const DISPATCHER_REQUESTS_CONSUMER: &str = "dispatcher-requests";
/// The durable consumer of the dispatcher on [`Stream::Results`].
pub const DISPATCHER_RESULTS_CONSUMER: &str = "dispatcher-results";
/// The durable consumer of the publisher on [`Stream::Events`].
pub const PUBLISHER_CONSUMER: &str = "publisher";

/// What each of the publisher's surfaces outside git showed for each request, one key per
/// surface and request (`<surface>.<request>`): so that nothing is shown twice.
pub const SURFACES_BUCKET: &str = "warroom-surfaces";

/// The publisher's surfaces outside git, each with its own durable consumer of the status
/// snapshots ([`surface_consumer`]).
pub const SURFACES: [&str; 3] = ["github", "slack", "configmap"];

/// The durable consumer of one publisher surface on [`Stream::Events`]: `publisher-<surface>`.
pub fn surface_consumer(surface: &str) -> String {
    format!("publisher-{surface}")
}

/// The durable consumer shared by a cluster's runner replicas.
pub fn runner_consumer(cluster: &ClusterName) -> String {
    format!("runner-{cluster}")
}

/// The JetStream streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Accepted requests, kept for audit: `warroom.requests.<request>`.
    Requests,
    /// Per-cluster tasks, work-queue retention: `warroom.tasks.<cluster>`.
    Tasks,
    /// Runner reports (started, finished) for the dispatcher:
    /// `warroom.results.<request>.<cluster>`.
    Results,
    /// Everything the publisher writes to git, in one stream so that one consumer sees it in
    /// the order it happened: audit events (`warroom.events.<request>.<cluster>`) and request
    /// status snapshots (`warroom.status.<request>`). A terminal status is published only
    /// after the runner's last event was stored, so the publisher never writes a final
    /// status before the audit lines that led to it.
    Events,
    /// Messages that could not be handled after their last delivery, kept for an operator:
    /// `warroom.dead.<consumer>`.
    DeadLetters,
}

impl Stream {
    /// Every stream, in the order they are created.
    pub const ALL: [Stream; 5] = [
        Stream::Requests,
        Stream::Tasks,
        Stream::Results,
        Stream::Events,
        Stream::DeadLetters,
    ];

    /// The stream's JetStream name.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Requests => "WARROOM_REQUESTS",
            Stream::Tasks => "WARROOM_TASKS",
            Stream::Results => "WARROOM_RESULTS",
            Stream::Events => "WARROOM_EVENTS",
            Stream::DeadLetters => "WARROOM_DEAD_LETTERS",
        }
    }

    /// The subject filters the stream captures.
    pub fn subjects(self) -> Vec<String> {
        let all = |kind: &str, tokens: usize| {
            let mut subject = format!("{PREFIX}.{kind}");
            for _ in 0..tokens {
                subject.push_str(".*");
            }
            subject
        };
        match self {
            Stream::Requests => vec![all(REQUESTS, 1)],
            Stream::Tasks => vec![all(TASKS, 1)],
            Stream::Results => vec![all(RESULTS, 2)],
            Stream::Events => vec![all(EVENTS, 2), all(STATUS, 1)],
            Stream::DeadLetters => vec![all(DEAD, 1)],
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const PREFIX: &str = "warroom";
const REQUESTS: &str = "requests";
const TASKS: &str = "tasks";
const RESULTS: &str = "results";
const EVENTS: &str = "events";
const STATUS: &str = "status";
const DEAD: &str = "dead";

/// The subject pattern of every request's status snapshots, `warroom.status.*`: the filter
/// of the consumers that show requests' states outside git.
pub fn all_statuses() -> String {
    format!("{PREFIX}.{STATUS}.*")
}

/// Every `warroom.*` subject, built from checked identities.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An accepted request: `warroom.requests.<request>`.
    Request(RequestId),
    /// A cluster's task queue: `warroom.tasks.<cluster>`.
    Task(ClusterName),
    /// A runner's reports on one request: `warroom.results.<request>.<cluster>`.
    Result(RequestId, ClusterName),
    /// A runner's audit and progress events: `warroom.events.<request>.<cluster>`.
    Event(RequestId, ClusterName),
    /// A request's status snapshots: `warroom.status.<request>`.
    Status(RequestId),
    /// Dead letters of one durable consumer: `warroom.dead.<consumer>`. The consumer name
    /// is one of this module's constants or [`runner_consumer`], all valid tokens.
    DeadLetter(String),
}

/// A subject that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{subject}` is not a warroom subject: {reason}")]
pub struct UnknownSubject {
    pub subject: String,
    pub reason: String,
}

impl Subject {
    /// The stream that stores messages on this subject.
    pub fn stream(&self) -> Stream {
        match self {
            Subject::Request(_) => Stream::Requests,
            Subject::Task(_) => Stream::Tasks,
            Subject::Result(..) => Stream::Results,
            Subject::Event(..) | Subject::Status(_) => Stream::Events,
            Subject::DeadLetter(_) => Stream::DeadLetters,
        }
    }

    /// The request this subject is about, when it is about one.
    pub fn request(&self) -> Option<&RequestId> {
        match self {
            Subject::Request(r) | Subject::Result(r, _) | Subject::Event(r, _) => Some(r),
            Subject::Status(r) => Some(r),
            Subject::Task(_) | Subject::DeadLetter(_) => None,
        }
    }

    /// The cluster this subject is about, when it is about one.
    pub fn cluster(&self) -> Option<&ClusterName> {
        match self {
            Subject::Task(c) | Subject::Result(_, c) | Subject::Event(_, c) => Some(c),
            _ => None,
        }
    }

    /// Parses a subject built by [`Subject`]'s `Display`.
    pub fn parse(subject: &str) -> Result<Subject, UnknownSubject> {
        let fail = |reason: String| UnknownSubject {
            subject: subject.chars().take(200).collect(),
            reason,
        };
        let tokens: Vec<&str> = subject.split('.').collect();
        if tokens.first() != Some(&PREFIX) {
            return Err(fail(format!("it does not start with `{PREFIX}.`")));
        }
        let request = |t: &str| RequestId::new(t).map_err(|e| fail(e.to_string()));
        let cluster = |t: &str| ClusterName::new(t).map_err(|e| fail(e.to_string()));
        match tokens[1..] {
            [REQUESTS, r] => Ok(Subject::Request(request(r)?)),
            [TASKS, c] => Ok(Subject::Task(cluster(c)?)),
            [RESULTS, r, c] => Ok(Subject::Result(request(r)?, cluster(c)?)),
            [EVENTS, r, c] => Ok(Subject::Event(request(r)?, cluster(c)?)),
            [STATUS, r] => Ok(Subject::Status(request(r)?)),
            [DEAD, consumer] if !consumer.is_empty() => {
                Ok(Subject::DeadLetter(consumer.to_owned()))
            }
            _ => Err(fail("unknown kind or wrong number of tokens".to_owned())),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Request(r) => write!(f, "{PREFIX}.{REQUESTS}.{r}"),
            Subject::Task(c) => write!(f, "{PREFIX}.{TASKS}.{c}"),
            Subject::Result(r, c) => write!(f, "{PREFIX}.{RESULTS}.{r}.{c}"),
            Subject::Event(r, c) => write!(f, "{PREFIX}.{EVENTS}.{r}.{c}"),
            Subject::Status(r) => write!(f, "{PREFIX}.{STATUS}.{r}"),
            Subject::DeadLetter(consumer) => write!(f, "{PREFIX}.{DEAD}.{consumer}"),
        }
    }
}

impl From<&Subject> for String {
    fn from(subject: &Subject) -> String {
        subject.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RequestId {
        RequestId::new(s).unwrap()
    }
    fn c(s: &str) -> ClusterName {
        ClusterName::new(s).unwrap()
    }

    #[test]
    fn subjects_round_trip_and_land_in_their_stream() {
        let all = [
            (
                Subject::Request(r("r1")),
                "warroom.requests.r1",
                Stream::Requests,
            ),
            (Subject::Task(c("hub")), "warroom.tasks.hub", Stream::Tasks),
            (
                Subject::Result(r("r1"), c("hub")),
                "warroom.results.r1.hub",
                Stream::Results,
            ),
            (
                Subject::Event(r("r1"), c("hub")),
                "warroom.events.r1.hub",
                Stream::Events,
            ),
            (
                Subject::Status(r("r1")),
                "warroom.status.r1",
                Stream::Events,
            ),
            (
                Subject::DeadLetter("publisher".to_owned()),
                "warroom.dead.publisher",
                Stream::DeadLetters,
            ),
        ];
        for (subject, text, stream) in all {
            assert_eq!(subject.to_string(), text);
            assert_eq!(Subject::parse(text).unwrap(), subject);
            assert_eq!(subject.stream(), stream);
            let filters = stream.subjects();
            let matches = filters.iter().any(|f| {
                let f: Vec<&str> = f.split('.').collect();
                let s: Vec<&str> = text.split('.').collect();
                f.len() == s.len() && f.iter().zip(&s).all(|(f, s)| *f == "*" || f == s)
            });
            assert!(matches, "{text} is not captured by {filters:?}");
        }
    }

    #[test]
    fn heartbeat_keys_name_their_cluster_and_replica() {
        let replica = ReplicaId::new("runner-0-ab12").unwrap();
        let key = heartbeat_key(&c("hub"), &replica);
        assert_eq!(key, "hub.runner-0-ab12");
        assert_eq!(parse_heartbeat_key(&key), Some((c("hub"), replica)));
        assert_eq!(heartbeat_keys(&c("hub")), "hub.*");
        for bad in ["hub", "hub.", ".r", "hub.r.x", "a*.r", ""] {
            assert_eq!(parse_heartbeat_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn foreign_or_malformed_subjects_are_refused() {
        for bad in [
            "other.requests.r1",
            "warroom.requests",
            "warroom.requests.r1.extra",
            "warroom.events.r1",
            "warroom.tasks.a*",
            "warroom.unknown.r1",
            "",
        ] {
            assert!(Subject::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
