//! The JetStream layout on a three-node cluster, set up right after the cluster formed.

use warroom_proto::Stream;
use warroom_testkit::NatsCluster;

use crate::{DEADLINE, Note, bus_at, publish, spec};

/// Three replicas of every stream, bucket and object store, created as soon as the cluster elected its
/// meta leader (each stream still elects its own), and a note goes through.
///
/// Fails if `ensure_streams` gives up on a JetStream that does not answer yet, or if the
/// replicas setting is not passed to the streams or buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_buckets_have_three_replicas_on_a_fresh_cluster() {
    let cluster = NatsCluster::start(3).await;
    let bus = bus_at(&cluster.urls(), 3, "cluster").await;
    for stream in Stream::ALL {
        let mut handle = bus.stream(stream).await.expect("the stream exists");
        let info = handle.info().await.expect("stream info");
        assert_eq!(
            info.config.num_replicas,
            3,
            "replicas of stream {}",
            stream.name()
        );
    }
    bus.leases(std::time::Duration::from_secs(5))
        .await
        .expect("the leases bucket is created");
    let bucket = format!("KV_{}", warroom_proto::names::LEASES_BUCKET);
    let js = cluster.nodes[0].jetstream().await;
    let mut handle = js.get_stream(&bucket).await.expect("the bucket's stream");
    let info = handle.info().await.expect("bucket stream info");
    assert_eq!(info.config.num_replicas, 3, "replicas of {bucket}");
    // A cluster's conversations object store, as its runner makes it.
    let cluster: warroom_proto::ClusterName = "hub".parse().expect("a cluster name");
    bus.conversations_store(&cluster)
        .await
        .expect("the conversations store");
    let store = format!(
        "OBJ_{}",
        warroom_proto::names::conversations_bucket(&cluster)
    );
    let mut handle = js.get_stream(&store).await.expect("the store's stream");
    let info = handle.info().await.expect("store stream info");
    assert_eq!(info.config.num_replicas, 3, "replicas of {store}");

    let mut consumer = bus
        .consume::<Note>(spec("on-cluster"))
        .await
        .expect("consumer");
    publish(&bus, 3).await;
    let delivery = loop {
        match consumer
            .next_before(tokio::time::Instant::now() + DEADLINE)
            .await
            .expect("the note arrived on the cluster")
        {
            Ok(delivery) => break delivery,
            Err(e) => eprintln!("pull error on the cluster (asking again): {e:?}"),
        }
    };
    assert_eq!(delivery.message.n, 3);
    delivery
        .ack_confirmed()
        .await
        .expect("the ack is confirmed");
}
