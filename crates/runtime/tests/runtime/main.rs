//! The runtime's own tests of its NATS bus and leases, each against a real nats-server
//! (`warroom-testkit`): the puller under a backlog and across a server restart, dead letters,
//! leases, and the layout on a three-node cluster.
//!
//! Every test names, in its comment, the broken variant of the code it would catch.

mod cluster;
mod dead_letters;
mod lease;
mod puller;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use warroom_proto::{Inbound, RequestId, Stream, Subject, Undecodable};
use warroom_runtime::{Bus, Connection, ConsumerSpec};
use warroom_testkit::NatsServer;

/// The deadline of every wait on the server: generous for a loaded two-core machine, and
/// still shorter than the 30 s a lost pull request would stall a consumer.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The message the tests send: a number, on a request's status subject (the events stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub n: u64,
}

impl Inbound for Note {
    fn decode(subject: &Subject, payload: &[u8]) -> Result<Self, Undecodable> {
        match subject {
            Subject::Status(_) => {
                serde_json::from_slice(payload).map_err(|e| format!("not a note: {e}").into())
            }
            other => Err(format!("a note arrived on `{other}`").into()),
        }
    }
}

/// The subject every note goes to.
pub fn subject() -> Subject {
    Subject::Status(RequestId::new("r-test").expect("a valid request id"))
}

/// A bus connected to `url` (comma-separated for a cluster) with `replicas`.
pub async fn bus_at(url: &str, replicas: usize, name: &str) -> Bus {
    let connection = Connection {
        replicas,
        ..Connection::plain(url)
    };
    tokio::time::timeout(DEADLINE, Bus::connect(&connection, name))
        .await
        .unwrap_or_else(|_| panic!("Bus::connect to {url} did not finish within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("Bus::connect to {url} failed: {e:?}"))
}

/// A bus on a single server, one replica.
pub async fn bus(server: &NatsServer, name: &str) -> Bus {
    bus_at(server.url(), 1, name).await
}

/// A consumer of the events stream with the defaults of [`ConsumerSpec::new`].
pub fn spec(durable: &str) -> ConsumerSpec {
    ConsumerSpec::new(Stream::Events, durable, "warroom-runtime test consumer")
}

/// Publishes note `n`, asking again while the bus reconnects.
pub async fn publish(bus: &Bus, n: u64) {
    warroom_testkit::wait_for_ok(format!("note {n} is stored"), DEADLINE, || async {
        bus.publish(&subject(), None, &Note { n }).await
    })
    .await;
}

/// The number of pull requests the server holds open for consumer `durable`.
pub async fn open_pulls(js: &async_nats::jetstream::Context, durable: &str) -> Option<usize> {
    let stream = js.get_stream(Stream::Events.name()).await.ok()?;
    let info = stream.consumer_info(durable).await.ok()?;
    Some(info.num_waiting)
}
