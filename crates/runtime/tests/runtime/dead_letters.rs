//! Settling deliveries that fail: `Delivery::retry`, `Delivery::term`, and messages that do
//! not decode, all ending in the dead-letter stream and the `dead_letters` counter.

use std::time::Duration;

use warroom_proto::{Stream, Subject};
use warroom_runtime::{Bus, Consumer, DeadLetter, Delivery, RuntimeMetrics};
use warroom_testkit::{NatsServer, wait_for, wait_until};

use crate::{DEADLINE, Note, bus, publish, spec, subject};

async fn next(consumer: &mut Consumer<Note>, what: &str) -> Delivery<Note> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match consumer.next_before(deadline).await {
            None => panic!("{what}: nothing arrived within {DEADLINE:?}"),
            Some(Err(e)) => eprintln!("{what}: pull error (asking again): {e:?}"),
            Some(Ok(delivery)) => return delivery,
        }
    }
}

/// The dead letter of consumer `durable` for stream sequence `sequence`, once stored.
async fn dead_letter(server: &NatsServer, durable: &str, sequence: u64) -> DeadLetter {
    let js = server.jetstream().await;
    let subject = Subject::DeadLetter(durable.to_owned()).to_string();
    wait_for(
        format!("the dead letter of {durable} for sequence {sequence} on {subject}"),
        DEADLINE,
        || async {
            let stream = js.get_stream(Stream::DeadLetters.name()).await.ok()?;
            let message = stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .ok()?;
            let letter: DeadLetter = serde_json::from_slice(&message.payload)
                .unwrap_or_else(|e| panic!("the dead letter on {subject} is not JSON: {e}"));
            (letter.stream_sequence == sequence).then_some(letter)
        },
    )
    .await
}

/// Waits until the server holds no unacknowledged message for `durable`: the last delivery
/// was settled (a `+TERM` counts), not left to be redelivered after the ack wait.
async fn settled(server: &NatsServer, durable: &str) {
    let js = server.jetstream().await;
    wait_until(
        format!("consumer {durable} has nothing pending or unacknowledged"),
        DEADLINE,
        || async {
            let Ok(stream) = js.get_stream(Stream::Events.name()).await else {
                return false;
            };
            stream
                .consumer_info(durable)
                .await
                .is_ok_and(|info| info.num_ack_pending == 0 && info.num_pending == 0)
        },
    )
    .await;
}

async fn consumer(bus: &Bus, durable: &str, metrics: &RuntimeMetrics) -> Consumer<Note> {
    let mut spec = spec(durable);
    spec.max_deliver = 3;
    bus.consume::<Note>(spec)
        .await
        .expect("consumer")
        .with_metrics(metrics)
}

/// A note retried on every delivery is handed back twice and dead-lettered on its third and
/// last delivery, with the reason and the count, and counted once.
///
/// Fails if `retry` dead-letters before the consumer's last delivery (off by one against
/// `max_deliver`), never dead-letters (the message would be redelivered until the server
/// drops it silently), or does not count the dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_dead_letters_on_the_last_delivery() {
    let server = NatsServer::start().await;
    let bus = bus(&server, "dead-retry").await;
    let metrics = RuntimeMetrics::default();
    let mut consumer = consumer(&bus, "retried", &metrics).await;
    publish(&bus, 7).await;
    for delivery_number in 1..=3 {
        let delivery = next(&mut consumer, &format!("delivery {delivery_number}")).await;
        assert_eq!(delivery.message, Note { n: 7 });
        assert_eq!(delivery.delivered(), delivery_number);
        assert_eq!(delivery.is_last_delivery(), delivery_number == 3);
        let dead = delivery.retry(Duration::from_millis(50), "flaky").await;
        assert_eq!(
            dead,
            delivery_number == 3,
            "retry on delivery {delivery_number} of 3 dead-lettered: {dead}"
        );
    }
    let letter = dead_letter(&server, "retried", 1).await;
    assert_eq!(
        letter,
        DeadLetter {
            stream: Stream::Events.name().to_owned(),
            consumer: "retried".to_owned(),
            subject: subject().to_string(),
            stream_sequence: 1,
            deliveries: 3,
            reason: "gave up after 3 deliveries: flaky".to_owned(),
            payload: r#"{"n":7}"#.to_owned(),
        }
    );
    assert_eq!(metrics.dead_letters.get(), 1);
    settled(&server, "retried").await;
}

/// `term` dead-letters at once, with the reason, and the message is not delivered again:
/// the next delivery is the next note.
///
/// Fails if `term` only naks (the note would come back), loses the reason, or terminates
/// without writing the dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_dead_letters_with_its_reason() {
    let server = NatsServer::start().await;
    let bus = bus(&server, "dead-term").await;
    let metrics = RuntimeMetrics::default();
    let mut consumer = consumer(&bus, "termed", &metrics).await;
    publish(&bus, 1).await;
    publish(&bus, 2).await;
    let first = next(&mut consumer, "the first note").await;
    assert_eq!(first.message.n, 1);
    assert!(
        first.term("cannot be handled, ever").await,
        "term dead-lettered"
    );
    let letter = dead_letter(&server, "termed", 1).await;
    assert_eq!(letter.reason, "cannot be handled, ever");
    assert_eq!(letter.deliveries, 1);
    assert_eq!(letter.payload, r#"{"n":1}"#);
    let second = next(&mut consumer, "the note after the terminated one").await;
    assert_eq!(
        second.message.n, 2,
        "the terminated note was not delivered again"
    );
    second.ack().await;
    assert_eq!(metrics.dead_letters.get(), 1);
    settled(&server, "termed").await;
}

/// A message that does not decode never reaches the caller: it is dead-lettered with the
/// decoder's reason and counted, and the good note behind it is delivered.
///
/// Fails if `next` returns the decoding error instead of going on (the consumer would stop
/// at the bad message), naks it (it would block the stream until its deliveries ran out),
/// or sets it aside without a dead letter or without counting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_dead_lettered_and_the_next_one_delivered() {
    let server = NatsServer::start().await;
    let bus = bus(&server, "dead-decode").await;
    let metrics = RuntimeMetrics::default();
    let mut consumer = consumer(&bus, "decoding", &metrics).await;
    let js = server.jetstream().await;
    js.publish(subject().to_string(), "not json".into())
        .await
        .expect("publish the bad message")
        .await
        .expect("the bad message is stored");
    publish(&bus, 2).await;
    let good = next(&mut consumer, "the note behind the bad message").await;
    assert_eq!(good.message.n, 2);
    assert_eq!(good.stream_sequence(), 2);
    good.ack().await;
    let letter = dead_letter(&server, "decoding", 1).await;
    assert!(
        letter.reason.starts_with("not a note:"),
        "the dead letter gives the decoder's reason, got {:?}",
        letter.reason
    );
    assert_eq!(letter.payload, "not json");
    wait_until(
        "the bad message is counted as a dead letter",
        DEADLINE,
        || async { metrics.dead_letters.get() == 1 },
    )
    .await;
    settled(&server, "decoding").await;
}
