//! What each component may publish and subscribe to, as NATS subject patterns.
//!
//! Every subject comes from [`warroom_proto::names`]; the JetStream API subjects are the ones
//! the daemons' `warroom_runtime::Bus` really sends (found by running the whole
//! pipeline against a server with these permissions). Each component gets its own inbox
//! prefix, `_INBOX.<client name>` (set by `Bus::connect`), so that no component can
//! subscribe to the replies, and pulled messages, of another.

use std::fmt;

use warroom_proto::names::{
    self, DISPATCHER_REQUESTS_CONSUMER, DISPATCHER_RESULTS_CONSUMER, GATEWAY_BUCKET, LEASES_BUCKET,
    PUBLISHER_BUCKET, PUBLISHER_CONSUMER, REQUESTS_BUCKET, RUNNERS_BUCKET, TASKS_BUCKET,
};
use warroom_proto::{ClusterName, Stream, Subject};

/// One NATS user: a daemon, or one cluster's runner (shared by that cluster's replicas).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    Gateway,
    Dispatcher,
    Publisher,
    Runner(ClusterName),
}

impl Component {
    /// The control plane and one runner per cluster.
    pub fn all(clusters: &[ClusterName]) -> Vec<Component> {
        let mut all = vec![
            Component::Gateway,
            Component::Dispatcher,
            Component::Publisher,
        ];
        all.extend(clusters.iter().cloned().map(Component::Runner));
        all
    }

    /// The NATS client name the daemon connects with, which is also its inbox prefix's last
    /// token (`Bus::connect` is called with these names).
    pub fn client_name(&self) -> String {
        match self {
            Component::Gateway => "warroom-gateway".to_owned(),
            Component::Dispatcher => "warroom-dispatcher".to_owned(),
            Component::Publisher => "warroom-publisher".to_owned(),
            Component::Runner(cluster) => format!("warroom-runner-{cluster}"),
        }
    }

    /// What it may do.
    pub fn permissions(&self) -> Permissions {
        let mut p = Permissions::default();
        p.publish.push("$JS.API.INFO".to_owned());
        // `Bus::connect` makes sure every stream exists: INFO first, CREATE when missing.
        // Runners may only look: a stream that does not exist yet makes a runner fail at
        // start until a control-plane daemon created it (Kubernetes restarts it).
        for stream in Stream::ALL.iter().map(ToString::to_string) {
            p.publish.push(format!("$JS.API.STREAM.INFO.{stream}"));
            if !matches!(self, Component::Runner(_)) {
                p.publish.push(format!("$JS.API.STREAM.CREATE.{stream}"));
            }
        }
        match self {
            Component::Gateway => {
                p.publish_on(Subject::Request(any_request()));
                p.publish_on(Subject::Status(any_request()));
                p.bucket(GATEWAY_BUCKET);
            }
            Component::Dispatcher => {
                p.consumer(Stream::Requests, DISPATCHER_REQUESTS_CONSUMER, None);
                p.consumer(Stream::Results, DISPATCHER_RESULTS_CONSUMER, None);
                p.publish_on(Subject::Task(any_cluster()));
                p.publish_on(Subject::Status(any_request()));
                p.bucket(REQUESTS_BUCKET);
                p.bucket_reader(RUNNERS_BUCKET);
                p.bucket(LEASES_BUCKET);
                p.bucket(TASKS_BUCKET);
            }
            Component::Publisher => {
                p.consumer(Stream::Events, PUBLISHER_CONSUMER, None);
                for surface in names::SURFACES {
                    p.consumer(
                        Stream::Events,
                        &names::surface_consumer(surface),
                        Some(&Subject::Status(any_request())),
                    );
                }
                p.bucket(PUBLISHER_BUCKET);
                p.bucket(names::SURFACES_BUCKET);
                p.bucket(LEASES_BUCKET);
            }
            Component::Runner(cluster) => {
                p.consumer(
                    Stream::Tasks,
                    &names::runner_consumer(cluster),
                    Some(&Subject::Task(cluster.clone())),
                );
                p.publish_on(Subject::Result(any_request(), cluster.clone()));
                p.publish_on(Subject::Event(any_request(), cluster.clone()));
                p.heartbeat_writer(cluster);
                // The dispatcher's records of this cluster's tasks, read before a run.
                p.read_keys(TASKS_BUCKET, &format!("{cluster}.>"));
                // Its own cluster's conversations store, which it creates on first use:
                // another cluster's conversations are out of its reach.
                let store = names::conversations_bucket(cluster);
                p.publish.extend([
                    format!("$JS.API.STREAM.INFO.OBJ_{store}"),
                    format!("$JS.API.STREAM.CREATE.OBJ_{store}"),
                ]);
                p.object_store_user(&store);
            }
        }
        p.subscribe.push(format!("_INBOX.{}.>", self.client_name()));
        p
    }
}

impl fmt::Display for Component {
    /// The file stem of its seed and certificate: `gateway`, `runner-hub`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Gateway => f.write_str("gateway"),
            Component::Dispatcher => f.write_str("dispatcher"),
            Component::Publisher => f.write_str("publisher"),
            Component::Runner(cluster) => write!(f, "runner-{cluster}"),
        }
    }
}

/// Subject patterns one user may publish and subscribe to; everything else is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl Permissions {
    /// Publishing on every subject shaped like `subject`, where the placeholder identities
    /// become `*`.
    fn publish_on(&mut self, subject: Subject) {
        let text = subject
            .to_string()
            .replace(PLACEHOLDER_REQUEST, "*")
            .replace(PLACEHOLDER_CLUSTER, "*");
        self.publish.push(text);
    }

    /// Pulling from, acking on and dead-lettering for one durable consumer. With a filter,
    /// only the create request that names the filter in its subject is allowed (NATS 2.10+
    /// checks that it matches the body), so the consumer cannot be widened to other subjects.
    fn consumer(&mut self, stream: Stream, durable: &str, filter: Option<&Subject>) {
        let create = format!("$JS.API.CONSUMER.CREATE.{stream}.{durable}");
        match filter {
            Some(filter) => self.publish.push(format!("{create}.{filter}")),
            None => self.publish.push(create),
        }
        self.publish.extend([
            format!("$JS.API.CONSUMER.INFO.{stream}.{durable}"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
            format!("$JS.ACK.{stream}.{durable}.>"),
            Subject::DeadLetter(durable.to_owned()).to_string(),
        ]);
    }

    /// Reading the keys of `bucket` that match `keys`, one direct get at a time (the key is
    /// in the request's subject, so nothing else of the bucket can be read). No stream info,
    /// no watch, no listing of keys.
    fn read_keys(&mut self, bucket: &str, keys: &str) {
        self.publish.push(format!(
            "$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{keys}"
        ));
    }

    /// Everything on one key-value bucket: its keys, and the JetStream API of the stream
    /// behind it (info, create, direct get, the consumers behind watch and keys).
    fn bucket(&mut self, bucket: &str) {
        self.publish.extend([
            format!("$KV.{bucket}.>"),
            format!("$JS.API.*.*.KV_{bucket}"),
            format!("$JS.API.*.*.KV_{bucket}.>"),
            format!("$JS.FC.KV_{bucket}.>"),
        ]);
    }
}

impl Permissions {
    /// Creating and reading a bucket, not writing it: looking it up, the consumers behind
    /// watch and keys (their deliveries come to the inbox), direct gets.
    fn bucket_reader(&mut self, bucket: &str) {
        self.publish.extend([
            format!("$JS.API.STREAM.INFO.KV_{bucket}"),
            format!("$JS.API.STREAM.CREATE.KV_{bucket}"),
            format!("$JS.API.CONSUMER.*.KV_{bucket}"),
            format!("$JS.API.CONSUMER.*.KV_{bucket}.>"),
            format!("$JS.API.DIRECT.GET.KV_{bucket}.>"),
            format!("$JS.FC.KV_{bucket}.>"),
        ]);
    }

    /// Putting and getting the objects of object store `bucket`, not creating, changing or
    /// deleting the store: the chunks and metadata (`$O.<bucket>.>`), the direct get of an
    /// object's metadata, the purge of a replaced object's chunks, and the ordered consumer
    /// (with its flow control) that reads an object's chunks to the user's inbox.
    ///
    /// An object's subjects name a random id and the encoded object name, not its cluster,
    /// so one cluster's runner can reach every cluster's objects.
    fn object_store_user(&mut self, bucket: &str) {
        let stream = format!("OBJ_{bucket}");
        self.publish.extend([
            format!("$O.{bucket}.>"),
            format!("$JS.API.DIRECT.GET.{stream}.>"),
            format!("$JS.API.STREAM.PURGE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
            format!("$JS.FC.{stream}.>"),
        ]);
    }

    /// Writing (and deleting) the heartbeat keys of `cluster`'s replicas only, after looking
    /// the runners bucket up: a runner may not create it (like the streams), nor read it.
    fn heartbeat_writer(&mut self, cluster: &ClusterName) {
        self.publish.extend([
            format!("$JS.API.STREAM.INFO.KV_{RUNNERS_BUCKET}"),
            format!("$KV.{RUNNERS_BUCKET}.{}", names::heartbeat_keys(cluster)),
        ]);
    }
}

/// Placeholder identities, valid as tokens and replaced by `*` in the permissions.
const PLACEHOLDER_REQUEST: &str = "placeholder-request-id";
const PLACEHOLDER_CLUSTER: &str = "placeholder-cluster";

fn any_request() -> warroom_proto::RequestId {
    warroom_proto::RequestId::new(PLACEHOLDER_REQUEST)
        .unwrap_or_else(|e| unreachable!("the placeholder is a valid request id: {e}"))
}

fn any_cluster() -> ClusterName {
    ClusterName::new(PLACEHOLDER_CLUSTER)
        .unwrap_or_else(|e| unreachable!("the placeholder is a valid cluster name: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str) -> ClusterName {
        ClusterName::new(name).unwrap()
    }

    #[test]
    fn a_runner_may_only_touch_its_own_cluster() {
        let p = Component::Runner(cluster("hub")).permissions();
        assert!(p.publish.contains(&"warroom.results.*.hub".to_owned()));
        assert!(p.publish.contains(&"warroom.events.*.hub".to_owned()));
        assert!(p.publish.contains(
            &"$JS.API.CONSUMER.CREATE.WARROOM_TASKS.runner-hub.warroom.tasks.hub".to_owned()
        ));
        let forbidden_prefixes = ["warroom.requests", "warroom.tasks", "warroom.status"];
        for forbidden in forbidden_prefixes {
            assert!(
                !p.publish.iter().any(|s| s.starts_with(forbidden)),
                "{forbidden} in {:?}",
                p.publish
            );
        }
        // Of the key-value buckets, only its own tasks' records and its own heartbeats
        // (checked below).
        for forbidden in ["STREAM.CREATE", "KV_", "prod"] {
            assert!(
                !p.publish
                    .iter()
                    .filter(|s| !s.contains(TASKS_BUCKET) && !s.contains(RUNNERS_BUCKET))
                    .filter(|s| !s.contains("warroom-conversations-hub"))
                    .any(|s| s.contains(forbidden)),
                "{forbidden} in {:?}",
                p.publish
            );
        }
        // Of the runners bucket, only its own cluster's heartbeats, and a look at the bucket.
        let kv: Vec<&String> = p
            .publish
            .iter()
            .filter(|s| s.contains(RUNNERS_BUCKET))
            .collect();
        assert_eq!(
            kv,
            [
                "$JS.API.STREAM.INFO.KV_warroom-runners",
                "$KV.warroom-runners.hub.*"
            ],
            "{:?}",
            p.publish
        );
        assert_eq!(p.subscribe, vec!["_INBOX.warroom-runner-hub.>".to_owned()]);
        // Its own tasks' records, by direct get, and nothing else of that bucket.
        let records: Vec<&String> = p
            .publish
            .iter()
            .filter(|s| s.contains(TASKS_BUCKET))
            .collect();
        assert_eq!(
            records,
            [&"$JS.API.DIRECT.GET.KV_warroom-tasks.$KV.warroom-tasks.hub.>".to_owned()]
        );
        // Its own cluster's conversations store, which it may create, and no other: every
        // subject names that store as a whole token.
        let store: Vec<&String> = p
            .publish
            .iter()
            .filter(|s| s.contains(names::CONVERSATIONS_BUCKET))
            .collect();
        assert!(
            store.contains(&&"$O.warroom-conversations-hub.>".to_owned()),
            "{store:?}"
        );
        assert!(
            store.contains(&&"$JS.API.STREAM.CREATE.OBJ_warroom-conversations-hub".to_owned()),
            "{store:?}"
        );
        assert!(
            store.iter().all(|s| s
                .split(['.', ' '])
                .any(|token| token.ends_with("warroom-conversations-hub"))),
            "{store:?}"
        );
        for forbidden in ["STREAM.DELETE", "STREAM.UPDATE", "$JS.API.*"] {
            assert!(
                !store.iter().any(|s| s.contains(forbidden)),
                "{forbidden} in {store:?}"
            );
        }
    }

    #[test]
    fn only_runners_write_heartbeats_and_the_dispatcher_reads_them() {
        let dispatcher = Component::Dispatcher.permissions();
        assert!(
            !dispatcher
                .publish
                .iter()
                .any(|s| s.starts_with("$KV.warroom-runners")),
            "{:?}",
            dispatcher.publish
        );
        assert!(
            dispatcher
                .publish
                .contains(&"$JS.API.CONSUMER.*.KV_warroom-runners.>".to_owned())
        );
        for component in [Component::Gateway, Component::Publisher] {
            let p = component.permissions();
            assert!(
                !p.publish.iter().any(|s| s.contains("warroom-runners")),
                "{component}: {:?}",
                p.publish
            );
        }
    }

    #[test]
    fn only_the_dispatcher_publishes_tasks_and_only_the_gateway_requests() {
        let all = Component::all(&[cluster("hub")]);
        for component in all {
            let p = component.permissions();
            assert_eq!(
                p.publish.contains(&"warroom.tasks.*".to_owned()),
                component == Component::Dispatcher
            );
            assert_eq!(
                p.publish.contains(&"warroom.requests.*".to_owned()),
                component == Component::Gateway
            );
        }
    }
}
