//! `Bus::consume` and `Consumer::next`: the pull protocol of `bus.rs` (`Puller`).

use std::collections::BTreeSet;

use futures::StreamExt as _;
use warroom_runtime::Consumer;
use warroom_testkit::{NatsServer, wait_for, wait_until};

use crate::{DEADLINE, Note, bus, open_pulls, publish, spec};

/// The next note of `consumer`, acknowledged, or a panic naming `what` at `deadline`.
/// Pull errors are transient (the daemons log them and ask again), so they are skipped.
async fn next_acked(
    consumer: &mut Consumer<Note>,
    deadline: tokio::time::Instant,
    what: &str,
) -> u64 {
    loop {
        match consumer.next_before(deadline).await {
            None => panic!("{what}: no note arrived by the deadline"),
            Some(Err(e)) => eprintln!("{what}: pull error (asking again): {e:?}"),
            Some(Ok(delivery)) => {
                delivery.ack().await;
                return delivery.message.n;
            }
        }
    }
}

/// A backlog of 2,000 notes, with 200 more published while it is being consumed, arrives
/// whole within one deadline (it takes well under a second): every note once, none lost,
/// none twice. Then, with nothing left, a note published
/// while a pull request is open arrives well before that request would expire (30 s).
///
/// Fails if the puller miscounts the messages a request still owes (it would wait for
/// messages that never come until the request expires: the 35 s stall of async-nats's pull
/// stream this puller replaced), if it drops or repeats a message of a batch, or if a status
/// word of an earlier request ends the open one. A request that expects one message more
/// than its batch stalls each batch for a heartbeat gap (5 s, 110 s for the backlog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_arrives_whole_and_a_new_message_without_a_stall() {
    const BACKLOG: u64 = 2_000;
    const DURING: u64 = 200;
    let server = NatsServer::start().await;
    let bus = bus(&server, "puller-backlog").await;
    futures::stream::iter(0..BACKLOG)
        .for_each_concurrent(64, |n| {
            let bus = &bus;
            async move { publish(bus, n).await }
        })
        .await;

    let mut consumer = bus
        .consume::<Note>(spec("backlog"))
        .await
        .expect("consumer");
    let late = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in BACKLOG..BACKLOG + DURING {
                publish(&bus, n).await;
            }
        })
    };
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for i in 0..BACKLOG + DURING {
        let what = format!("note #{i} of the backlog, all due within {DEADLINE:?}");
        let n = next_acked(&mut consumer, deadline, &what).await;
        assert!(
            seen.insert(n),
            "note {n} was delivered twice (after {i} notes)"
        );
    }
    late.await.expect("the late publisher finished");
    assert_eq!(
        seen,
        (0..BACKLOG + DURING).collect::<BTreeSet<_>>(),
        "every note published arrived"
    );

    // Nothing is left: the next pull stays open at the server until a note comes.
    let waiting = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let n = next_acked(
            &mut consumer,
            deadline,
            "the note published while a pull is open",
        )
        .await;
        (n, consumer)
    });
    let js = server.jetstream().await;
    wait_until("the consumer has a pull request open", DEADLINE, || async {
        open_pulls(&js, "backlog").await.unwrap_or(0) >= 1
    })
    .await;
    publish(&bus, 9_999).await;
    let (n, mut consumer) = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the note published while a pull was open arrived without a stall")
        .expect("the consuming task finished");
    assert_eq!(n, 9_999);
    assert_eq!(consumer.pending().await.expect("pending"), 0);
    wait_for("every note is acknowledged", DEADLINE, || async {
        let stream = js
            .get_stream(warroom_proto::Stream::Events.name())
            .await
            .ok()?;
        let info = stream.consumer_info("backlog").await.ok()?;
        (info.num_ack_pending == 0).then_some(())
    })
    .await;
}

/// After the server restarts, the pull request it held is gone; the consumer makes a new
/// one and a note published after the restart arrives.
///
/// Fails if the puller stops re-pulling after a heartbeat gap (it would wait on the lost
/// request forever), or if it gives up the pull subscription on a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumption_resumes_after_the_server_restarts() {
    let mut server = NatsServer::start().await;
    let bus = bus(&server, "puller-restart").await;
    let mut consumer = bus
        .consume::<Note>(spec("restart"))
        .await
        .expect("consumer");
    publish(&bus, 1).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    assert_eq!(
        next_acked(&mut consumer, deadline, "the note before the restart").await,
        1
    );

    let waiting = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let n = next_acked(&mut consumer, deadline, "the note after the restart").await;
        (n, consumer)
    });
    {
        let js = server.jetstream().await;
        wait_until("the consumer has a pull request open", DEADLINE, || async {
            open_pulls(&js, "restart").await.unwrap_or(0) >= 1
        })
        .await;
    }
    server.restart().await;
    publish(&bus, 2).await;
    let (n, _consumer) = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the note published after the restart arrived")
        .expect("the consuming task finished");
    assert_eq!(
        n, 2,
        "the note after the restart, not a repeat of the first"
    );
}

/// A consumer that stops with notes fetched and not handled hands them back at once: another
/// consumer of the same durable gets every one long before the ack wait (ten minutes here)
/// would bring them back.
///
/// Fails if `hand_back` leaves what the subscription holds to the ack wait (the Slack
/// surface's takeover waited two minutes for it), or naks only part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_consumer_hands_back_what_it_fetched() {
    const NOTES: u64 = 200;
    let server = NatsServer::start().await;
    let bus = bus(&server, "puller-hand-back").await;
    futures::stream::iter(0..NOTES)
        .for_each_concurrent(32, |n| {
            let bus = &bus;
            async move { publish(bus, n).await }
        })
        .await;
    let mut hand_back_spec = spec("hand-back");
    hand_back_spec.ack_wait = std::time::Duration::from_secs(600);
    // One pull request asks for every note.
    hand_back_spec.batch = NOTES as usize;
    let mut first = bus
        .consume::<Note>(hand_back_spec.clone())
        .await
        .expect("consumer");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut handled = BTreeSet::new();
    for _ in 0..5 {
        handled.insert(next_acked(&mut first, deadline, "a note before the stop").await);
    }
    // Every other note is now on its way to `first`; a request on the same connection
    // answered after the server sent them all means they have arrived.
    let js = server.jetstream().await;
    wait_until(
        "every note is sent to the first consumer",
        DEADLINE,
        || async {
            let Ok(stream) = js.get_stream(warroom_proto::Stream::Events.name()).await else {
                return false;
            };
            stream
                .consumer_info("hand-back")
                .await
                .is_ok_and(|info| info.num_pending == 0)
        },
    )
    .await;
    first
        .pending()
        .await
        .expect("a round trip on the first's connection");
    first.hand_back().await;
    drop(first);

    let mut second = bus
        .consume::<Note>(hand_back_spec)
        .await
        .expect("the second consumer");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while handled.len() < NOTES as usize {
        handled.insert(next_acked(&mut second, deadline, "a note handed back").await);
    }
    assert_eq!(handled, (0..NOTES).collect::<BTreeSet<_>>());
}
