//! The ingest loop: one task owns the engine (one writer of state, one
//! order); a finalizer task acknowledges inputs in order.
//!
//! For each input message: decode and validate it; apply it to the engine;
//! produce the output events to `ioc.events` (or a dead letter with the
//! reason to `ioc.dlq`); hand the delivery futures and the message's offset
//! to the finalizer. The finalizer awaits the deliveries in input order and
//! only then stores the offset, so a crash can redeliver but never skip. If
//! a delivery fails (the DLQ or the events topic is unavailable past the
//! producer's timeout) the finalizer stops storing offsets and the processor
//! stops with an error: it stops committing rather than skipping.
//!
//! Shutdown (cancel): stop fetching, drain the finalizer (every in-flight
//! delivery acknowledged), commit stored offsets synchronously, return.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ioc_engine::Engine;
use ioc_model::{decode_input, DeadLetter, OutputEvent, Timestamp, Topics};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics_names as metric;
use crate::{IngestError, KafkaSettings};

/// Processor settings.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    /// Consumer group of the processors.
    pub group_id: String,
    /// Inputs whose outputs may be in flight at once (bounds memory and the
    /// redelivery window after a crash).
    pub max_in_flight: usize,
    /// How often the engine's clock is advanced from the wall clock, so
    /// deadlines fire when no input flows.
    pub tick_interval: Duration,
    /// Consumer group session timeout: how long a crashed processor holds
    /// its partitions before the group hands them to another.
    pub session_timeout_ms: u64,
}

impl ProcessorConfig {
    /// Defaults for a cluster and topic set.
    pub fn new(kafka: KafkaSettings, topics: Topics) -> Self {
        Self {
            kafka,
            topics,
            group_id: "ioc-processor".into(),
            max_in_flight: 4096,
            tick_interval: Duration::from_secs(1),
            session_timeout_ms: 10_000,
        }
    }
}

/// Live status, shared with health endpoints and tests.
#[derive(Debug, Default)]
pub struct ProcessorStatus {
    /// True once the consumer got its first assignment or message.
    pub running: AtomicBool,
    /// Seq of the last event produced.
    pub last_seq: AtomicU64,
    /// Inputs fully handled (offset stored).
    pub handled: AtomicU64,
    /// Inputs dead-lettered.
    pub dead_lettered: AtomicU64,
    /// True once, after an assignment, the consumer's position reached the
    /// end of every assigned partition (lag 0): the picture is current.
    pub caught_up: AtomicBool,
    /// Messages between the consumer's position and the partitions' ends,
    /// summed over the assignment, at the last check.
    pub lag: AtomicU64,
}

/// Every second: the consumer's lag over its assignment, as a metric and
/// as the processor's "caught up" readiness.
fn spawn_lag_watch(
    consumer: Arc<StreamConsumer>,
    status: Arc<ProcessorStatus>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let c = Arc::clone(&consumer);
            let measured = tokio::task::spawn_blocking(move || -> Option<(i64, usize)> {
                let positions = c.position().ok()?;
                // A partition nothing has been consumed from since the
                // assignment has no position yet: it starts at the group's
                // committed offset, or at the beginning when there is none.
                let committed = c
                    .committed_offsets(positions.clone(), Duration::from_secs(1))
                    .ok()?;
                let mut lag = 0i64;
                for p in positions.elements() {
                    let (low, high) = c
                        .fetch_watermarks(p.topic(), p.partition(), Duration::from_secs(1))
                        .ok()?;
                    let at = match p.offset() {
                        rdkafka::Offset::Offset(o) => o,
                        _ => match committed
                            .find_partition(p.topic(), p.partition())
                            .map(|e| e.offset())
                        {
                            Some(rdkafka::Offset::Offset(o)) => o,
                            _ => low,
                        },
                    };
                    lag += (high - at).max(0);
                }
                Some((lag, positions.count()))
            })
            .await
            .ok()
            .flatten();
            if let Some((lag, partitions)) = measured {
                metrics::gauge!(metric::CONSUMER_LAG).set(lag as f64);
                status.lag.store(lag.max(0) as u64, Ordering::Relaxed);
                if partitions > 0 && lag == 0 && !status.caught_up.swap(true, Ordering::Relaxed) {
                    tracing::info!(partitions, "processor caught up with its inputs");
                }
            }
        }
    })
}

/// One output on its way to the broker.
enum Delivery {
    /// Enqueued; resolves when the broker acknowledges or gives up.
    InFlight(DeliveryFuture),
    /// Refused before it left (e.g. larger than the producer allows).
    Refused(String),
}

/// Outputs of one input, awaiting acknowledgement.
struct Pending {
    deliveries: Vec<(String, Delivery)>,
    /// Offset to store once delivered (`None` for clock ticks).
    offset: Option<(String, i32, i64)>,
}

/// Runs the processor until `shutdown` is cancelled or a delivery fails.
/// `engine` must already be restored from the output log.
pub async fn run_processor(
    config: ProcessorConfig,
    mut engine: Engine,
    status: Arc<ProcessorStatus>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let consumer: Arc<StreamConsumer> = Arc::new(
        config
            .kafka
            .consumer_config()
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout_ms / 5).max(100).to_string(),
            )
            .create()?,
    );
    let producer: FutureProducer = config.kafka.producer_config().create()?;
    let inputs = config.topics.inputs();
    consumer.subscribe(&inputs)?;
    status.last_seq.store(engine.last_seq(), Ordering::Relaxed);
    tracing::info!(group = %config.group_id, topics = ?inputs, last_seq = engine.last_seq(), "processor started");

    let (tx, rx) = mpsc::channel::<Pending>(config.max_in_flight.max(1));
    let failed = CancellationToken::new();
    let finalizer = tokio::spawn(finalize(
        rx,
        Arc::clone(&consumer),
        Arc::clone(&status),
        failed.clone(),
    ));

    let lag_watch = spawn_lag_watch(Arc::clone(&consumer), Arc::clone(&status), shutdown.clone());
    let mut tick = tokio::time::interval(config.tick_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_input: Option<(Timestamp, Instant)> = None;
    let result = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            _ = failed.cancelled() => break Err(IngestError::Delivery {
                topic: "output".into(),
                reason: "a delivery failed; see the log".into(),
            }),
            _ = tick.tick() => {
                // Event time, advanced by the wall time since the last input:
                // deadlines fire when inputs stop, and a replayed or sped-up
                // stream is not judged by today's wall clock.
                let now = match last_input {
                    Some((ts, at)) => ts.plus_millis(i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX)),
                    None => continue,
                };
                let events = engine.tick(now);
                if !events.is_empty() {
                    let deliveries = produce_events(&producer, &config.topics, &events, "tick").await;
                    status.last_seq.store(engine.last_seq(), Ordering::Relaxed);
                    if tx.send(Pending { deliveries, offset: None }).await.is_err() {
                        break Ok(());
                    }
                }
            }
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                        continue;
                    }
                };
                status.running.store(true, Ordering::Relaxed);
                let topic = msg.topic().to_string();
                let (partition, offset) = (msg.partition(), msg.offset());
                let payload = msg.payload().unwrap_or_default();
                let key = msg.key().and_then(|k| std::str::from_utf8(k).ok()).map(str::to_string);
                let kind = config.topics.kind_of(&topic);
                let label = kind.map(|k| k.label()).unwrap_or("unknown");
                let mut cause = format!("{topic}:{partition}:{offset}");
                let outcome = match kind {
                    None => Err(format!("unknown topic {topic:?}")),
                    Some(kind) => match decode_input(kind, payload, Timestamp::now()) {
                        Err(e) => Err(e.to_string()),
                        Ok(input) => {
                            if let Some(key) = Engine::dedupe_key(&input) {
                                cause = key;
                            }
                            let started = Instant::now();
                            if last_input.is_none_or(|(ts, _)| input.ts() >= ts) {
                                last_input = Some((input.ts(), started));
                            }
                            let dup_before = engine.stats().duplicates;
                            let applied = engine.apply(&input);
                            metrics::histogram!(metric::ENGINE_APPLY_SECONDS).record(started.elapsed().as_secs_f64());
                            if engine.stats().duplicates > dup_before {
                                metrics::counter!(metric::DUPLICATES).increment(1);
                            }
                            applied.map_err(|r| format!("rejected: {r}"))
                        }
                    },
                };
                let deliveries = match outcome {
                    Ok(events) => {
                        metrics::counter!(metric::INGEST_MESSAGES, "topic" => label, "outcome" => "ok").increment(1);
                        if events.iter().any(|e| matches!(e.body, ioc_model::EventBody::DispatchRecommended(_))) {
                            metrics::counter!(metric::RECOMMENDATIONS).increment(1);
                        }
                        produce_events(&producer, &config.topics, &events, &cause).await
                    }
                    Err(reason) => {
                        metrics::counter!(metric::INGEST_MESSAGES, "topic" => label, "outcome" => "dlq").increment(1);
                        metrics::counter!(metric::DLQ_MESSAGES, "topic" => label).increment(1);
                        status.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(topic = %topic, partition, offset, reason = %reason, "dead-lettered");
                        let letter = DeadLetter {
                            original_base64: base64::engine::general_purpose::STANDARD
                                .encode(&payload[..payload.len().min(DeadLetter::MAX_ORIGINAL_BYTES)]),
                            original_size: payload.len() as u64,
                            original_truncated: payload.len() > DeadLetter::MAX_ORIGINAL_BYTES,
                            key: key.clone(),
                            topic: topic.clone(),
                            partition,
                            offset,
                            reason,
                            ts: Timestamp::now(),
                        };
                        let bytes = serde_json::to_vec(&letter).unwrap_or_default();
                        let record_key = key.clone().unwrap_or_default();
                        vec![(config.topics.dlq.clone(), send(&producer, &config.topics.dlq, &record_key, &bytes).await)]
                    }
                };
                status.last_seq.store(engine.last_seq(), Ordering::Relaxed);
                metrics::gauge!(metric::LAST_SEQ).set(engine.last_seq() as f64);
                if tx.send(Pending { deliveries, offset: Some((topic, partition, offset)) }).await.is_err() {
                    break Ok(());
                }
            }
        }
    };

    // Drain: every in-flight output acknowledged and its offset stored.
    lag_watch.abort();
    drop(tx);
    let drained = finalizer.await.unwrap_or(false);
    let _ = producer.flush(Timeout::After(Duration::from_secs(10)));
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => tracing::info!(
            handled = status.handled.load(Ordering::Relaxed),
            "offsets committed"
        ),
        // Nothing stored yet is not an error worth shouting about.
        Err(e) => tracing::debug!(error = %e, "final commit"),
    }
    consumer.unsubscribe();
    if !drained && result.is_ok() {
        return Err(IngestError::Delivery {
            topic: "output".into(),
            reason: "a delivery failed during shutdown".into(),
        });
    }
    result
}

/// Produces the outputs of one input (or one clock tick) as a batch: every
/// event carries the input's dedupe key in the `ioc-cause` header, and the
/// last one carries `ioc-batch-end`. Recovery uses both: it ignores a batch
/// cut short by a crash (the input is redelivered and re-emits it, with the
/// same seqs), and remembers every cause as applied.
async fn produce_events(
    producer: &FutureProducer,
    topics: &Topics,
    events: &[OutputEvent],
    cause: &str,
) -> Vec<(String, Delivery)> {
    let mut out = Vec::with_capacity(events.len());
    for (i, ev) in events.iter().enumerate() {
        let bytes = serde_json::to_vec(ev).unwrap_or_default();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: crate::events::CAUSE_HEADER,
            value: Some(cause),
        });
        if i + 1 == events.len() {
            headers = headers.insert(Header {
                key: crate::events::BATCH_END_HEADER,
                value: Some("1"),
            });
        }
        out.push((
            topics.events.clone(),
            send_with(
                producer,
                &topics.events,
                ev.entity_id(),
                &bytes,
                Some(headers),
            )
            .await,
        ));
    }
    metrics::counter!(metric::EVENTS_PRODUCED).increment(events.len() as u64);
    out
}

/// Enqueues one record, waiting (not dropping) while librdkafka's queue is
/// full. Any other refusal is returned as such: it counts as a failed
/// delivery, so offsets stop there instead of the loop spinning on it.
async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) -> Delivery {
    send_with(producer, topic, key, payload, None).await
}

async fn send_with(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) -> Delivery {
    loop {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(h) = &headers {
            record = record.headers(h.clone());
        }
        match producer.send_result(record) {
            Ok(f) => return Delivery::InFlight(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tracing::debug!("producer queue full, waiting");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Delivery::Refused(e.to_string()),
        }
    }
}

/// Awaits deliveries in input order and stores offsets behind them. Returns
/// false if a delivery failed (and stops storing from there on).
async fn finalize(
    mut rx: mpsc::Receiver<Pending>,
    consumer: Arc<StreamConsumer>,
    status: Arc<ProcessorStatus>,
    failed: CancellationToken,
) -> bool {
    while let Some(p) = rx.recv().await {
        for (topic, d) in p.deliveries {
            let failure = match d {
                Delivery::Refused(e) => Some(e),
                Delivery::InFlight(f) => match f.await {
                    Ok(Ok(_)) => None,
                    Ok(Err((e, _))) => Some(e.to_string()),
                    Err(_) => Some("delivery cancelled".to_string()),
                },
            };
            let ok = match failure {
                None => true,
                Some(e) => {
                    tracing::error!(topic = %topic, error = %e, "delivery failed: offsets stop here");
                    false
                }
            };
            if !ok {
                metrics::counter!(metric::PRODUCE_ERRORS).increment(1);
                failed.cancel();
                return false;
            }
        }
        if let Some((topic, partition, offset)) = p.offset {
            // librdkafka stores offset + 1: the next message to read.
            match consumer.store_offset(&topic, partition, offset) {
                Ok(()) => {
                    status.handled.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(metric::OFFSETS_STORED).increment(1);
                }
                // After a rebalance the partition may be gone: the new owner
                // will redeliver, and the engine dedupes.
                Err(e) => {
                    tracing::warn!(topic = %topic, partition, offset, error = %e, "offset not stored")
                }
            }
        }
    }
    true
}
