//! The ingest loop: one task owns the engine (one writer of state, one
//! order); a finalizer task acknowledges inputs in order.
//!
//! For each input message: decode and validate it; apply it to the engine;
//! produce the output events to `ioc.events` (or a dead letter with the
//! reason to `ioc.dlq`) under the input's ticket (see [`crate::acks`]). The
//! producer's delivery callback counts acknowledgements per ticket; the loop
//! stores the offsets of the longest prefix of inputs whose outputs are all
//! acknowledged, in input order, so a crash can redeliver but never skip. If
//! a delivery fails (the DLQ or the events topic is unavailable past the
//! producer's timeout) offsets stop at that input and the processor stops
//! with an error: it stops committing rather than skipping.
//!
//! Shutdown (cancel): stop fetching, flush the producer (every in-flight
//! delivery acknowledged), store the last offsets, commit synchronously,
//! return.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ioc_engine::Engine;
use ioc_model::{decode_input, DeadLetter, OutputEvent, Timestamp, Topics};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::acks::{AckContext, InputOffset, SharedTracker};
use crate::client::KafkaContext;
use crate::metrics_names as metric;
use crate::{IngestError, KafkaSettings};

/// The processor's consumer, with the client context of every Kafka client
/// of the process (errors logged, authentication and TLS failures recorded).
type StreamConsumer = rdkafka::consumer::StreamConsumer<KafkaContext>;

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
    /// Times the consumer was replaced because it stalled.
    pub rejoins: AtomicU64,
    /// Inputs whose outputs await the broker's acknowledgement, at the last
    /// check (every second).
    pub in_flight: AtomicU64,
}

/// Seconds a processor may go with the broker answering, inputs waiting
/// (or nothing assigned) and none handled, nothing in flight, before it
/// leaves and rejoins its group.
const STALL_REJOIN_S: u32 = 30;

/// The stall watch: librdkafka's consumer has been seen, rarely, to stay
/// stuck after the whole cluster was away (no assignment after the rejoin,
/// or a fetcher that never resumes; librdkafka issues 1546, 2164, 3082),
/// while the broker answers and inputs wait: a processor that would then
/// never handle another input. Counted here, acted on by the lag watch.
#[derive(Debug, Default)]
struct StallWatch {
    /// Seconds in a row that looked stalled.
    stalled_s: u32,
    handled: u64,
}

impl StallWatch {
    /// One second's check: inputs handled so far, inputs in flight, the lag
    /// over the assignment with the number of assigned partitions (None when
    /// it could not be measured), and whether the broker answered at all (an
    /// outage is not a stall). True when it has looked stalled for `after_s`
    /// seconds in a row (and counting starts again).
    fn step(
        &mut self,
        handled: u64,
        in_flight: usize,
        measured: Option<(i64, usize)>,
        reachable: bool,
        after_s: u32,
    ) -> bool {
        let progressed = handled != self.handled;
        self.handled = handled;
        let looks_stalled = !progressed
            && in_flight == 0
            && match measured {
                Some((lag, partitions)) => lag > 0 || partitions == 0,
                // The broker answers but the consumer's group does not.
                None => reachable,
            };
        self.stalled_s = if looks_stalled { self.stalled_s + 1 } else { 0 };
        if self.stalled_s >= after_s {
            self.stalled_s = 0;
            true
        } else {
            false
        }
    }
}

/// Messages waiting for the whole group over every partition of `topics`
/// (committed offset, or the beginning, to the end); None if the broker
/// or the group coordinator does not answer.
fn group_lag(c: &StreamConsumer, topics: &[&str]) -> Option<i64> {
    let metadata = c.fetch_metadata(None, Duration::from_secs(2)).ok()?;
    let mut all = rdkafka::TopicPartitionList::new();
    for t in metadata
        .topics()
        .iter()
        .filter(|t| topics.contains(&t.name()))
    {
        for p in t.partitions() {
            all.add_partition(t.name(), p.id());
        }
    }
    let committed = c.committed_offsets(all, Duration::from_secs(2)).ok()?;
    lag_over(c, &committed, None)
}

/// Messages from each partition's offset in `at` to its end, summed. A
/// partition without an offset (nothing consumed since the assignment, or
/// nothing committed) counts from its offset in `fallback`, else from the
/// beginning. None if a watermark cannot be read.
fn lag_over(
    c: &StreamConsumer,
    at: &rdkafka::TopicPartitionList,
    fallback: Option<&rdkafka::TopicPartitionList>,
) -> Option<i64> {
    let mut lag = 0i64;
    for p in at.elements() {
        let (low, high) = c
            .fetch_watermarks(p.topic(), p.partition(), Duration::from_secs(1))
            .ok()?;
        let from = match p.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => match fallback
                .and_then(|f| f.find_partition(p.topic(), p.partition()))
                .map(|e| e.offset())
            {
                Some(rdkafka::Offset::Offset(o)) => o,
                _ => low,
            },
        };
        lag += (high - from).max(0);
    }
    Some(lag)
}

/// Every second: the consumer's lag over its assignment, as a metric and
/// as the processor's "caught up" readiness.
fn spawn_lag_watch(
    consumer: Arc<StreamConsumer>,
    status: Arc<ProcessorStatus>,
    acks: Arc<SharedTracker>,
    inputs: Vec<String>,
    stalled: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Seconds with inputs waiting and none handled (a stuck consumer
        // shows here first: issue notes on the broker-outage test).
        let (mut idle_s, mut handled_before) = (0u32, 0u64);
        let mut stall = StallWatch::default();
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
                let lag = lag_over(&c, &positions, Some(&committed))?;
                Some((lag, positions.count()))
            })
            .await
            .ok()
            .flatten();
            let (handled, in_flight) = (
                status.handled.load(Ordering::Relaxed),
                acks.lock().in_flight(),
            );
            status.in_flight.store(in_flight as u64, Ordering::Relaxed);
            // The broker answering though the consumer's own view could
            // not be measured: its group layer is stuck, not the cluster.
            let reachable = measured.is_some() || {
                let (c, topic) = (Arc::clone(&consumer), inputs.first().cloned());
                tokio::task::spawn_blocking(move || {
                    c.fetch_metadata(topic.as_deref(), Duration::from_secs(1))
                        .is_ok()
                })
                .await
                .unwrap_or(false)
            };
            if stall.step(handled, in_flight, measured, reachable, STALL_REJOIN_S) {
                // Nothing assigned (a quiet group with more members than
                // partitions, or a join in progress) is a stall only if the
                // group is known to have inputs waiting.
                let nothing_assigned = measured == Some((0, 0));
                let waiting = if nothing_assigned {
                    let (c, topics) = (Arc::clone(&consumer), inputs.clone());
                    tokio::task::spawn_blocking(move || {
                        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                        group_lag(&c, &names)
                    })
                    .await
                    .ok()
                    .flatten()
                } else {
                    None
                };
                if !nothing_assigned || waiting.is_some_and(|n| n > 0) {
                    tracing::error!(
                        stalled_s = STALL_REJOIN_S,
                        lag_over_assignment = ?measured,
                        group_lag = ?waiting,
                        handled,
                        "consumer stalled with the broker answering and inputs waiting: replacing it"
                    );
                    stalled.notify_one();
                    return;
                }
            }
            if let Some((lag, partitions)) = measured {
                let handled = status.handled.load(Ordering::Relaxed);
                idle_s = if lag > 0 && handled == handled_before {
                    idle_s + 1
                } else {
                    0
                };
                handled_before = handled;
                if idle_s == 10 {
                    tracing::warn!(
                        lag,
                        partitions,
                        handled,
                        "processor has inputs waiting and handled none for 10 s"
                    );
                }
                metrics::gauge!(metric::CONSUMER_LAG).set(lag as f64);
                status.lag.store(lag.max(0) as u64, Ordering::Relaxed);
                if partitions > 0 && lag == 0 && !status.caught_up.swap(true, Ordering::Relaxed) {
                    tracing::info!(partitions, "processor caught up with its inputs");
                }
            }
        }
    })
}

/// The processor's producer: delivery reports counted per input ticket.
type AckProducer = ThreadedProducer<AckContext>;

/// How often the loop stores the offsets of completed inputs when nothing
/// else wakes it (inputs stopped; the last acknowledgements came later).
const STORE_INTERVAL: Duration = Duration::from_millis(20);

/// Metric handles resolved once: a `metrics::counter!` with labels is a
/// registry lookup (hash of name and labels) per call, on every input.
struct Meters {
    ok: Vec<(&'static str, metrics::Counter)>,
    dlq: Vec<(&'static str, metrics::Counter, metrics::Counter)>,
    apply_seconds: metrics::Histogram,
    duplicates: metrics::Counter,
    recommendations: metrics::Counter,
    events_produced: metrics::Counter,
    last_seq: metrics::Gauge,
    seen_ids: metrics::Gauge,
    offsets_stored: metrics::Counter,
    produce_errors: metrics::Counter,
}

impl Meters {
    fn new() -> Self {
        let labels = [
            "calls",
            "incidents",
            "positions",
            "units",
            "commands",
            "unknown",
        ];
        Self {
            ok: labels
                .iter()
                .map(|&l| {
                    (
                        l,
                        metrics::counter!(metric::INGEST_MESSAGES, "topic" => l, "outcome" => "ok"),
                    )
                })
                .collect(),
            dlq: labels
                .iter()
                .map(|&l| {
                    (
                        l,
                        metrics::counter!(metric::INGEST_MESSAGES, "topic" => l, "outcome" => "dlq"),
                        metrics::counter!(metric::DLQ_MESSAGES, "topic" => l),
                    )
                })
                .collect(),
            apply_seconds: metrics::histogram!(metric::ENGINE_APPLY_SECONDS),
            duplicates: metrics::counter!(metric::DUPLICATES),
            recommendations: metrics::counter!(metric::RECOMMENDATIONS),
            events_produced: metrics::counter!(metric::EVENTS_PRODUCED),
            last_seq: metrics::gauge!(metric::LAST_SEQ),
            seen_ids: metrics::gauge!(metric::SEEN_IDS),
            offsets_stored: metrics::counter!(metric::OFFSETS_STORED),
            produce_errors: metrics::counter!(metric::PRODUCE_ERRORS),
        }
    }

    fn handled_ok(&self, label: &'static str) {
        match self.ok.iter().find(|(l, _)| *l == label) {
            Some((_, c)) => c.increment(1),
            None => metrics::counter!(metric::INGEST_MESSAGES, "topic" => label, "outcome" => "ok")
                .increment(1),
        }
    }

    fn dead_lettered(&self, label: &'static str) {
        match self.dlq.iter().find(|(l, _, _)| *l == label) {
            Some((_, a, b)) => {
                a.increment(1);
                b.increment(1);
            }
            None => {
                metrics::counter!(metric::INGEST_MESSAGES, "topic" => label, "outcome" => "dlq")
                    .increment(1);
                metrics::counter!(metric::DLQ_MESSAGES, "topic" => label).increment(1);
            }
        }
    }
}

/// The processor's consumer of its inputs (offsets stored by the loop,
/// committed by librdkafka every second).
fn input_consumer(config: &ProcessorConfig) -> Result<StreamConsumer, IngestError> {
    Ok(config
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
        .create_with_context(config.kafka.context("processor consumer"))?)
}

/// Runs the processor until `shutdown` is cancelled or a delivery fails.
/// `engine` must already be restored from the output log.
pub async fn run_processor(
    config: ProcessorConfig,
    mut engine: Engine,
    status: Arc<ProcessorStatus>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let mut consumer = Arc::new(input_consumer(&config)?);
    let acks = Arc::new(SharedTracker::default());
    let producer: AckProducer = config
        .kafka
        .producer_config()
        .create_with_context(AckContext {
            shared: Arc::clone(&acks),
            client: config.kafka.context("processor producer"),
        })?;
    let inputs = config.topics.inputs();
    consumer.subscribe(&inputs)?;
    status.last_seq.store(engine.last_seq(), Ordering::Relaxed);
    tracing::info!(group = %config.group_id, topics = ?inputs, last_seq = engine.last_seq(), "processor started");

    let meters = Meters::new();
    meters.seen_ids.set(engine.stats().seen_ids as f64);
    let max_in_flight = config.max_in_flight.max(1);
    let input_names: Vec<String> = inputs.iter().map(|t| t.to_string()).collect();
    let stalled = Arc::new(tokio::sync::Notify::new());
    let watch = |consumer: &Arc<StreamConsumer>| {
        spawn_lag_watch(
            Arc::clone(consumer),
            Arc::clone(&status),
            Arc::clone(&acks),
            input_names.clone(),
            Arc::clone(&stalled),
            shutdown.clone(),
        )
    };
    let mut lag_watch = watch(&consumer);
    let rejoins = metrics::counter!(metric::CONSUMER_REJOINS);
    let mut tick = tokio::time::interval(config.tick_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store_tick = tokio::time::interval(STORE_INTERVAL);
    store_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_input: Option<(Timestamp, Instant)> = None;
    let result = loop {
        // Bound the inputs in flight (memory, and the redelivery window
        // after a crash): wait for the oldest to be acknowledged. Shutdown
        // and failure are answered below, not held up here.
        while acks.lock().in_flight() >= max_in_flight
            && !acks.failed.is_cancelled()
            && !shutdown.is_cancelled()
        {
            store_completed(&acks, &consumer, &status, &meters);
            if acks.lock().in_flight() < max_in_flight {
                break;
            }
            tokio::select! {
                _ = acks.progress.notified() => {}
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(STORE_INTERVAL) => {}
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            _ = acks.failed.cancelled() => {
                // Store what completed before the failure, then stop.
                store_completed(&acks, &consumer, &status, &meters);
                let reason = acks.lock().failure().map(|f| f.reason.clone()).unwrap_or_default();
                meters.produce_errors.increment(1);
                tracing::error!(error = %reason, "delivery failed: offsets stop here");
                break Err(IngestError::Delivery {
                    topic: "output".into(),
                    reason,
                });
            }
            _ = store_tick.tick() => store_completed(&acks, &consumer, &status, &meters),
            _ = stalled.notified() => {
                // A new consumer in the same group: it joins afresh and
                // resumes from the committed offsets (what was handled since
                // the last commit comes again and is deduplicated). The old
                // one is closed off the runtime: closing a stuck consumer
                // may block.
                lag_watch.abort();
                store_completed(&acks, &consumer, &status, &meters);
                let fresh = match input_consumer(&config) {
                    Ok(c) => Arc::new(c),
                    Err(e) => break Err(e),
                };
                if let Err(e) = fresh.subscribe(&inputs) {
                    break Err(e.into());
                }
                let old = std::mem::replace(&mut consumer, fresh);
                tokio::task::spawn_blocking(move || drop(old));
                lag_watch = watch(&consumer);
                status.rejoins.fetch_add(1, Ordering::Relaxed);
                rejoins.increment(1);
                tracing::warn!("processor's consumer replaced; it rejoins its group");
            }
            _ = tick.tick() => {
                // A gauge sampled once a tick, off the per-input path.
                meters.seen_ids.set(engine.stats().seen_ids as f64);
                // Event time, advanced by the wall time since the last input:
                // deadlines fire when inputs stop, and a replayed or sped-up
                // stream is not judged by today's wall clock.
                let now = match last_input {
                    Some((ts, at)) => ts.plus_millis(i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX)),
                    None => continue,
                };
                let events = engine.tick(now);
                if !events.is_empty() {
                    let ticket = acks.lock().open(None);
                    produce_events(&producer, &acks, ticket, &config.topics, &events, "tick", &meters).await;
                    acks.lock().seal(ticket);
                    status.last_seq.store(engine.last_seq(), Ordering::Relaxed);
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
                let topic = msg.topic();
                let (partition, offset) = (msg.partition(), msg.offset());
                let payload = msg.payload().unwrap_or_default();
                let kind = config.topics.kind_of(topic);
                let label = kind.map(|k| k.label()).unwrap_or("unknown");
                let mut cause = None;
                let outcome = match kind {
                    None => Err(format!("unknown topic {topic:?}")),
                    Some(kind) => match decode_input(kind, payload, Timestamp::now()) {
                        Err(e) => Err(e.to_string()),
                        Ok(input) => {
                            cause = Engine::dedupe_key(&input);
                            let started = Instant::now();
                            if last_input.is_none_or(|(ts, _)| input.ts() >= ts) {
                                last_input = Some((input.ts(), started));
                            }
                            let dup_before = engine.stats().duplicates;
                            let applied = engine.apply(&input);
                            meters.apply_seconds.record(started.elapsed().as_secs_f64());
                            if engine.stats().duplicates > dup_before {
                                meters.duplicates.increment(1);
                            }
                            applied.map_err(|r| format!("rejected: {r}"))
                        }
                    },
                };
                let ticket = acks.lock().open(Some(InputOffset {
                    topic: topic.to_string(),
                    partition,
                    offset,
                }));
                match outcome {
                    Ok(events) => {
                        meters.handled_ok(label);
                        if events.iter().any(|e| matches!(e.body, ioc_model::EventBody::DispatchRecommended(_))) {
                            meters.recommendations.increment(1);
                        }
                        // Built only when there is something to produce.
                        if !events.is_empty() {
                            let cause = cause.unwrap_or_else(|| format!("{topic}:{partition}:{offset}"));
                            produce_events(&producer, &acks, ticket, &config.topics, &events, &cause, &meters).await;
                        }
                    }
                    Err(reason) => {
                        meters.dead_lettered(label);
                        status.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(topic = %topic, partition, offset, reason = %reason, "dead-lettered");
                        let key = msg.key().and_then(|k| std::str::from_utf8(k).ok()).map(str::to_string);
                        let letter = DeadLetter {
                            original_base64: base64::engine::general_purpose::STANDARD
                                .encode(&payload[..payload.len().min(DeadLetter::MAX_ORIGINAL_BYTES)]),
                            original_size: payload.len() as u64,
                            original_truncated: payload.len() > DeadLetter::MAX_ORIGINAL_BYTES,
                            key: key.clone(),
                            topic: topic.to_string(),
                            partition,
                            offset,
                            reason,
                            ts: Timestamp::now(),
                        };
                        let bytes = serde_json::to_vec(&letter).unwrap_or_default();
                        let record_key = key.unwrap_or_default();
                        send(&producer, &acks, ticket, &config.topics.dlq, &record_key, &bytes, None).await;
                    }
                }
                acks.lock().seal(ticket);
                status.last_seq.store(engine.last_seq(), Ordering::Relaxed);
                meters.last_seq.set(engine.last_seq() as f64);
            }
        }
    };

    // Drain: every in-flight output acknowledged and its offset stored.
    lag_watch.abort();
    if let Err(e) = &producer.flush(Timeout::After(Duration::from_secs(10))) {
        tracing::warn!(error = %e, "producer flush at shutdown");
    }
    store_completed(&acks, &consumer, &status, &meters);
    let drained = {
        let t = acks.lock();
        t.failure().is_none() && t.in_flight() == 0
    };
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

/// Stores the offsets of the inputs completed since the last call (every
/// output acknowledged, every earlier input too): the highest offset per
/// partition, in one call.
fn store_completed(
    acks: &SharedTracker,
    consumer: &StreamConsumer,
    status: &ProcessorStatus,
    meters: &Meters,
) {
    let completed = acks.lock().drain_completed();
    if completed.is_empty() {
        return;
    }
    let n = completed.len() as u64;
    // Input order within a partition is offset order: the last one wins.
    let mut latest: Vec<&InputOffset> = Vec::new();
    for o in &completed {
        match latest
            .iter_mut()
            .find(|l| l.partition == o.partition && l.topic == o.topic)
        {
            Some(l) => *l = o,
            None => latest.push(o),
        }
    }
    let mut tpl = TopicPartitionList::with_capacity(latest.len());
    for o in &latest {
        // The stored offset is the next message to read.
        if let Err(e) =
            tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset + 1))
        {
            tracing::warn!(topic = %o.topic, partition = o.partition, error = %e, "offset not stored");
        }
    }
    match consumer.store_offsets(&tpl) {
        Ok(()) => {}
        // After a rebalance a partition may be gone: the new owner will
        // redeliver, and the engine dedupes. The others are stored.
        Err(e) => tracing::warn!(error = %e, "some offsets not stored"),
    }
    status.handled.fetch_add(n, Ordering::Relaxed);
    meters.offsets_stored.increment(n);
}

/// Produces the outputs of one input (or one clock tick) as a batch under
/// its ticket: every event carries the input's dedupe key in the
/// `ioc-cause` header, and the last one carries `ioc-batch-end`. Recovery
/// uses both: it ignores a batch cut short by a crash (the input is
/// redelivered and re-emits it, with the same seqs), and remembers every
/// cause as applied.
async fn produce_events(
    producer: &AckProducer,
    acks: &SharedTracker,
    ticket: u64,
    topics: &Topics,
    events: &[OutputEvent],
    cause: &str,
    meters: &Meters,
) {
    let mut bytes = Vec::with_capacity(512);
    for (i, ev) in events.iter().enumerate() {
        bytes.clear();
        if serde_json::to_writer(&mut bytes, ev).is_err() {
            bytes.clear();
        }
        let mut headers = OwnedHeaders::new_with_capacity(2).insert(Header {
            key: crate::events::CAUSE_HEADER,
            value: Some(cause),
        });
        if i + 1 == events.len() {
            headers = headers.insert(Header {
                key: crate::events::BATCH_END_HEADER,
                value: Some("1"),
            });
        }
        send(
            producer,
            acks,
            ticket,
            &topics.events,
            ev.entity_id(),
            &bytes,
            Some(headers),
        )
        .await;
    }
    meters.events_produced.increment(events.len() as u64);
}

/// Enqueues one record under `ticket`, waiting (not dropping) while
/// librdkafka's queue is full. Any other refusal fails the ticket: it
/// counts as a failed delivery, so offsets stop there instead of the loop
/// spinning on it.
async fn send(
    producer: &AckProducer,
    acks: &SharedTracker,
    ticket: u64,
    topic: &str,
    key: &str,
    payload: &[u8],
    mut headers: Option<OwnedHeaders>,
) {
    // Counted before the send: the delivery report may come first.
    acks.lock().add_output(ticket);
    loop {
        let mut record = BaseRecord::with_opaque_to(topic, ticket as usize)
            .key(key)
            .payload(payload);
        if let Some(h) = headers.take() {
            record = record.headers(h);
        }
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                headers = record.headers;
                tracing::debug!("producer queue full, waiting");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => {
                tracing::error!(topic, error = %e, "output refused by the producer");
                acks.lock().fail(ticket, e.to_string());
                acks.failed.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_watch_fires_after_seconds_in_a_row_with_inputs_waiting_and_none_handled() {
        let mut w = StallWatch::default();
        let waiting = Some((5, 3));
        // Handling inputs: never.
        for s in 0..100 {
            assert!(!w.step(s, 0, waiting, true, 3));
        }
        // Stuck with inputs waiting: on the third second, then counting again.
        assert!(!w.step(99, 0, waiting, true, 3));
        assert!(!w.step(99, 0, waiting, true, 3));
        assert!(w.step(99, 0, waiting, true, 3));
        assert!(!w.step(99, 0, waiting, true, 3));
        // Nothing assigned looks stalled too (the lag watch then asks the group).
        let mut w = StallWatch::default();
        assert!(!w.step(0, 0, Some((0, 0)), true, 2));
        assert!(w.step(0, 0, Some((0, 0)), true, 2));
        // Not a stall: caught up, outputs awaiting acknowledgement (the
        // producer's problem), or the broker away (an outage). Each breaks
        // the run of seconds.
        let mut w = StallWatch::default();
        for interruption in [Some((0, 3)), waiting, None] {
            let in_flight = usize::from(interruption == waiting);
            assert!(!w.step(7, 0, waiting, true, 2));
            assert!(!w.step(7, in_flight, interruption, false, 2));
        }
        assert!(!w.step(7, 0, waiting, true, 2));
        assert!(w.step(7, 0, waiting, true, 2));
        // The broker answers but the consumer's own view cannot be measured
        // (its group does not answer): stalled.
        let mut w = StallWatch::default();
        assert!(!w.step(0, 0, None, true, 2));
        assert!(w.step(0, 0, None, true, 2));
    }
}
