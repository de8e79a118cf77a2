//! Thin async adapter: drives a [`Simulator`] in wall-clock time (optionally
//! sped up), produces what it emits to the input topics and feeds it the
//! processor's output events.
//!
//! Two things happen concurrently in one `select!` loop, so the simulator
//! needs no lock: a 200 ms tick advances sim time and enqueues the batch;
//! the events consumer delivers `OutputEvent`s to [`Simulator::observe`].
//! Messages are enqueued in order without waiting for their delivery (the
//! reports are awaited in a side set), so a slow broker delays counting, not
//! the simulated city. A failed delivery is logged and counted, never fatal:
//! the simulator is a load source, not a system of record.

use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use ioc_model::{InputKind, OutputEvent, Timestamp, Topics};
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientContext;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::{Outgoing, Simulator};

/// Messages delivered, by input kind (`topic_kind`: calls, positions, ...).
pub const MESSAGES_PRODUCED: &str = "sim_messages_produced_total";
/// Messages that could not be enqueued or delivered.
pub const PRODUCE_ERRORS: &str = "sim_produce_errors_total";

/// Wall time between two advances of the simulator.
pub const TICK: Duration = Duration::from_millis(200);

/// How long to wait for outstanding deliveries after cancellation.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for the processor to apply the fleet's registrations before
/// the first positions are sent.
const REGISTRATION_WAIT: Duration = Duration::from_secs(30);

/// How long to keep retrying when librdkafka's local queue is full before
/// counting the message as an error.
const QUEUE_FULL_RETRIES: u32 = 100;
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(20);

type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = (InputKind, bool)> + Send>>;

/// Runs the simulator until `shutdown` is cancelled.
///
/// Sim time starts at the simulator's current time and runs at `speed` ×
/// wall time (measured from a monotonic clock, so a stalled tick catches up
/// instead of drifting). `events_consumer` must already be subscribed or
/// assigned to the events topic. Returns an error only for a non-positive
/// or non-finite `speed`.
pub async fn run<P, C>(
    mut sim: Simulator,
    producer: FutureProducer<P>,
    events_consumer: StreamConsumer<C>,
    topics: Topics,
    speed: f64,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    P: ClientContext + 'static,
    C: ConsumerContext + 'static,
{
    if !(speed.is_finite() && speed > 0.0) {
        anyhow::bail!("simulator speed must be a finite number > 0, got {speed}");
    }
    let mut inflight: FuturesUnordered<Delivery> = FuturesUnordered::new();
    let sim_start = sim.now();
    let wall_start = Instant::now();
    tracing::info!(%sim_start, speed, "simulator starting");
    // Registrations go first and get a head start: Kafka orders nothing
    // across topics, and a position of a unit the processor has not seen
    // registered is dead-lettered by contract.
    let (registrations, rest): (Vec<_>, Vec<_>) = sim
        .start()
        .into_iter()
        .partition(|m| m.kind == InputKind::Unit);
    let unit_count = registrations.len();
    enqueue_all(&producer, &topics, registrations, &mut inflight, &shutdown).await;
    while let Some((kind, ok)) = inflight.next().await {
        count(kind, ok);
    }
    // Wait (bounded) until the processor has applied them: its
    // `unit.updated` events on the output log say so.
    let mut registered = std::collections::BTreeSet::new();
    let wait = tokio::time::sleep(REGISTRATION_WAIT);
    tokio::pin!(wait);
    while registered.len() < unit_count {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = &mut wait => {
                tracing::warn!(registered = registered.len(), expected = unit_count, "processor slow to register units; sending positions anyway");
                break;
            }
            msg = events_consumer.recv() => match msg {
                Ok(m) => {
                    let Some(payload) = m.payload() else { continue };
                    if let Ok(ev) = serde_json::from_slice::<OutputEvent>(payload) {
                        if let ioc_model::EventBody::UnitUpdated(u) = &ev.body {
                            registered.insert(u.unit_id.clone());
                        }
                        sim.observe(&ev);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "events consumer error while waiting for registrations"),
            }
        }
    }
    enqueue_all(&producer, &topics, rest, &mut inflight, &shutdown).await;

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut events = events_consumer.stream();
    let mut events_open = true;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some((kind, ok)) = inflight.next(), if !inflight.is_empty() => count(kind, ok),
            _ = tick.tick() => {
                let elapsed_ms = wall_start.elapsed().as_secs_f64() * 1000.0 * speed;
                let now = Timestamp::from_unix_millis(
                    sim_start.unix_millis().saturating_add(elapsed_ms as i64),
                );
                let batch = sim.advance(now);
                enqueue_all(&producer, &topics, batch, &mut inflight, &shutdown).await;
            }
            msg = events.next(), if events_open => match msg {
                Some(Ok(m)) => {
                    let Some(payload) = m.payload() else { continue };
                    match serde_json::from_slice::<OutputEvent>(payload) {
                        Ok(ev) => sim.observe(&ev),
                        Err(e) => tracing::debug!(error = %e, offset = m.offset(), "skipping undecodable output event"),
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "events consumer error"),
                None => {
                    tracing::warn!("events stream ended; simulator keeps running without feedback");
                    events_open = false;
                }
            },
        }
    }
    // Drain: give outstanding deliveries a bounded time to report.
    let drain = async {
        while let Some((kind, ok)) = inflight.next().await {
            count(kind, ok);
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("simulator stopped with deliveries still outstanding");
    }
    tracing::info!(sim_now = %sim.now(), "simulator stopped");
    Ok(())
}

fn count(kind: InputKind, ok: bool) {
    if ok {
        metrics::counter!(MESSAGES_PRODUCED, "topic_kind" => kind.label()).increment(1);
    } else {
        metrics::counter!(PRODUCE_ERRORS).increment(1);
    }
}

/// Enqueues a batch in order. Waits (briefly, cancellably) only when
/// librdkafka's local queue is full: that is the backpressure.
async fn enqueue_all<P: ClientContext + 'static>(
    producer: &FutureProducer<P>,
    topics: &Topics,
    batch: Vec<Outgoing>,
    inflight: &mut FuturesUnordered<Delivery>,
    shutdown: &CancellationToken,
) {
    for msg in batch {
        let topic = topics.input(msg.kind);
        let mut tries = 0;
        loop {
            let record = FutureRecord::to(topic).key(&msg.key).payload(&msg.payload);
            match producer.send_result(record) {
                Ok(delivery) => {
                    inflight.push(Box::pin(report(msg.kind, delivery)));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if tries < QUEUE_FULL_RETRIES && !shutdown.is_cancelled() =>
                {
                    tries += 1;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, topic, key = %msg.key, "cannot enqueue simulator message");
                    count(msg.kind, false);
                    break;
                }
            }
        }
    }
}

async fn report(kind: InputKind, delivery: DeliveryFuture) -> (InputKind, bool) {
    match delivery.await {
        Ok(Ok(_)) => (kind, true),
        Ok(Err((e, _))) => {
            tracing::warn!(error = %e, kind = kind.label(), "simulator message not delivered");
            (kind, false)
        }
        Err(_) => {
            tracing::warn!(
                kind = kind.label(),
                "producer dropped before delivery report"
            );
            (kind, false)
        }
    }
}
