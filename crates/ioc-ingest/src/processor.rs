//! The processor: one engine, one writer of the output log, inputs and
//! outputs in Kafka transactions.
//!
//! # States
//!
//! *Standby*: a member of the group `group_id` (see [`crate::ownership`])
//! without the output partition. It reads nothing and writes nothing.
//!
//! *Owner*: assigned the output partition. A session starts:
//! 1. a transactional producer (`transactional.id`, stable across restarts)
//!    runs `init_transactions`, which fences every earlier producer of the
//!    id: a paused predecessor that wakes up has its writes refused and its
//!    open transaction aborted;
//! 2. the engine is restored from `ioc.events` as committed, read to the
//!    end its fetches report ([`crate::read_all_events`]): after step 1
//!    nobody else can append, so that end is final, and no `seq` in the log
//!    is ever issued again;
//! 3. the inputs are assigned by hand, every partition, from the offsets
//!    the group committed (no join of their own, so no rebalance wait);
//! 4. the loop: each input is decoded and applied, its events (or its dead
//!    letter) are produced inside the open transaction; every
//!    `commit_interval` the offsets of the inputs handled are sent to the
//!    transaction and it commits — outputs and offsets become visible
//!    together, or not at all.
//!
//! A session ends on shutdown (the open transaction committed), when the
//! lease is lost or the producer is fenced (open transaction aborted, back
//! to standby), or when it must be rebuilt (a delivery or commit failed, the
//! consumer stalled: the transaction is aborted and a new session restores
//! from the log). Readers of `ioc.events` use `isolation.level =
//! read_committed`, so aborted outputs are never seen: an input whose
//! transaction aborted is consumed again and re-emits its events with the
//! same seqs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ioc_engine::Engine;
use ioc_model::{decode_input, DeadLetter, OutputEvent, Timestamp, Topics};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerGroupMetadata, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::acks::{AckContext, InputOffset, SharedTracker};
use crate::client::KafkaContext;
use crate::events::RecoveredLog;
use crate::health::spawn_lag_watch;
use crate::metrics_names as metric;
use crate::ownership::{Lease, LeaseConsumer};
use crate::{IngestError, KafkaSettings};

pub use crate::health::STALLED_AFTER_S;

/// Processor settings.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    /// Consumer group of the processors: holds the output log's lease and
    /// the committed offsets of the inputs.
    pub group_id: String,
    /// Inputs handled in one transaction at most (bounds memory, the work
    /// redone after an abort, and the commit's size).
    pub max_in_flight: usize,
    /// How often the engine's clock is advanced from the wall clock, so
    /// deadlines fire when no input flows.
    pub tick_interval: Duration,
    /// Group session timeout: how long a crashed or paused owner holds the
    /// lease before a standby gets it.
    pub session_timeout_ms: u64,
    /// How often the open transaction commits: what the screens wait at
    /// most, beyond the work itself, for an input's events (readers see
    /// committed events only).
    pub commit_interval: Duration,
    /// The producer's `transactional.id`: the same for every processor of
    /// the deployment, so that a new owner fences the old one.
    pub transactional_id: String,
    /// Outputs and offsets in Kafka transactions (fencing, nothing of an
    /// aborted attempt visible). False for a broker without transactions
    /// (Tansu 0.6 answers no EndTxn): outputs are flushed and offsets
    /// committed through the group at each commit, at least once, deduped
    /// by seq and input id as before; the lease and the frozen-process
    /// check are then the only fence.
    pub exactly_once: bool,
}

impl ProcessorConfig {
    /// Defaults for a cluster and topic set.
    pub fn new(kafka: KafkaSettings, topics: Topics) -> Self {
        let transactional_id = format!("ioc-processor.{}.0", topics.events);
        Self {
            kafka,
            topics,
            group_id: "ioc-processor".into(),
            max_in_flight: 4096,
            tick_interval: Duration::from_secs(1),
            session_timeout_ms: 6_000,
            commit_interval: Duration::from_millis(5),
            transactional_id,
            exactly_once: true,
        }
    }
}

/// Live status, shared with health endpoints and tests.
#[derive(Debug, Default)]
pub struct ProcessorStatus {
    /// True once the processor owned the output log and started a session.
    pub running: AtomicBool,
    /// True while this processor owns the output log (false on standby).
    pub owner: AtomicBool,
    /// Seq of the last event produced.
    pub last_seq: AtomicU64,
    /// Inputs fully handled (their transaction committed).
    pub handled: AtomicU64,
    /// Inputs dead-lettered.
    pub dead_lettered: AtomicU64,
    /// True once, in a session, the consumer's position reached the end of
    /// every input partition (lag 0): the picture is current. False on
    /// standby.
    pub caught_up: AtomicBool,
    /// Messages between the consumer's position and the partitions' ends,
    /// summed over the assignment, at the last check.
    pub lag: AtomicU64,
    /// Sessions rebuilt (consumer stalled, a delivery or commit failed).
    pub rejoins: AtomicU64,
    /// Times this processor found itself fenced by a newer owner.
    pub fenced: AtomicU64,
    /// Inputs whose outputs await the broker's acknowledgement, at the last
    /// check (every second).
    pub in_flight: AtomicU64,
    /// True while the processor makes no progress with work waiting (inputs
    /// behind, or outputs unacknowledged, and none handled) for
    /// [`STALLED_AFTER_S`] seconds: the screens are then marked stale and
    /// `/readyz` answers 503, whatever the broker's reachability.
    pub stalled: AtomicBool,
}

/// Builds the engine from the output log as recovered (the binary knows
/// the engine's configuration and zones).
pub type Restore = Arc<dyn Fn(&RecoveredLog) -> Engine + Send + Sync>;

/// The processor's consumer of its inputs: assigned by hand, never
/// committing by itself (offsets go into the transactions).
pub type InputConsumer = StreamConsumer<KafkaContext>;

/// The processor's producer: transactional, delivery reports counted per
/// input ticket (in-flight counts and failed deliveries).
type TxnProducer = ThreadedProducer<AckContext>;

/// How long a transactional call (init, offsets, commit, abort) may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// How a session ended.
#[derive(Debug)]
enum Ended {
    /// Shutdown: the open transaction was committed.
    Shutdown,
    /// The group moved the lease elsewhere.
    LeaseLost,
    /// A newer owner fenced this producer.
    Fenced(String),
    /// Something failed that a fresh session repairs.
    Rebuild(String),
    /// The broker cannot do what the configuration asks.
    Unsupported(String),
}

/// Runs the processor until `shutdown` is cancelled or a fatal error: on
/// standby while another process owns the output log, an owner otherwise.
pub async fn run_processor(
    config: ProcessorConfig,
    restore: Restore,
    status: Arc<ProcessorStatus>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let lease_token = CancellationToken::new();
    let (lease, lease_consumer) = crate::ownership::join(
        config
            .kafka
            .consumer_config()
            .set("group.id", &config.group_id)
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                heartbeat_ms(config.session_timeout_ms).to_string(),
            )
            .clone(),
        config.kafka.context("processor lease"),
        &config.topics.events,
        lease_token.clone(),
    )?;
    let _leave = lease_token.drop_guard();
    tracing::info!(group = %config.group_id, transactional_id = %config.transactional_id, "processor started: waiting for the output log's lease");
    let meters = Meters::new();
    let rebuilds = metrics::counter!(metric::CONSUMER_REJOINS);
    let fenced = metrics::counter!(metric::FENCED);
    let owner_gauge = metrics::gauge!(metric::OWNER);
    // The lease term a fenced session saw: the next session waits for the
    // group to say something newer, so a woken predecessor does not fence
    // the owner that fenced it.
    let mut fenced_in_term: Option<u64> = None;
    loop {
        let ready = lease.owned() && fenced_in_term.is_none_or(|t| t != lease.term());
        if !ready {
            status.owner.store(false, Ordering::Relaxed);
            owner_gauge.set(0.0);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = lease.changed(Duration::from_secs(1)) => continue,
            }
        }
        fenced_in_term = None;
        status.owner.store(true, Ordering::Relaxed);
        owner_gauge.set(1.0);
        let term = lease.term();
        let ended = run_owned(
            &config,
            &restore,
            &status,
            &lease,
            &lease_consumer,
            &meters,
            &shutdown,
        )
        .await;
        status.caught_up.store(false, Ordering::Relaxed);
        status.stalled.store(false, Ordering::Relaxed);
        match ended? {
            Ended::Shutdown => return Ok(()),
            Ended::Unsupported(reason) => return Err(IngestError::NoTransactions(reason)),
            Ended::LeaseLost => {
                tracing::warn!("the output log's lease moved to another processor: standing by");
            }
            Ended::Fenced(reason) => {
                status.fenced.fetch_add(1, Ordering::Relaxed);
                fenced.increment(1);
                tracing::warn!(reason = %reason, "fenced by a newer owner of the output log: its writes were refused, standing by");
                fenced_in_term = Some(term);
            }
            Ended::Rebuild(reason) => {
                status.rejoins.fetch_add(1, Ordering::Relaxed);
                rebuilds.increment(1);
                tracing::warn!(reason = %reason, "processor session rebuilt from the output log");
                // Let the group's heartbeat confirm the lease first: a
                // failure may be the first sign that it moved.
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(2 * heartbeat_ms(config.session_timeout_ms))) => {}
                }
            }
        }
    }
}

/// The group heartbeat: a fifth of the session timeout.
fn heartbeat_ms(session_timeout_ms: u64) -> u64 {
    (session_timeout_ms / 5).max(100)
}

/// The transactional producer's config: the shared producer defaults, the
/// `transactional.id`, and timeouts an operator may override. A delivery
/// may wait no longer than the transaction lives (librdkafka refuses
/// otherwise); a dead owner's open transaction holds back read_committed
/// readers until the coordinator aborts it, at most that long (a new owner
/// aborts it at once, in `init_transactions`).
fn transactional_config(config: &ProcessorConfig) -> rdkafka::ClientConfig {
    let mut c = config.kafka.producer_config();
    if !config.exactly_once {
        return c;
    }
    let given = |k: &str| config.kafka.properties.contains_key(k);
    if !given("transaction.timeout.ms") {
        c.set("transaction.timeout.ms", "60000");
    }
    if !given("message.timeout.ms") {
        c.set("message.timeout.ms", "60000");
    }
    c.set("transactional.id", &config.transactional_id);
    c
}

/// The inputs' consumer: the group's committed offsets are read by it, but
/// it never joins (assigned by hand) and never commits (the transactions
/// do).
fn input_consumer(config: &ProcessorConfig) -> Result<InputConsumer, IngestError> {
    Ok(config
        .kafka
        .consumer_config()
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create_with_context(config.kafka.context("processor consumer"))?)
}

/// Assigns every partition of the inputs from the group's committed
/// offsets (the beginning where none). Blocking.
fn assign_inputs(c: &InputConsumer, topics: &[&str]) -> Result<usize, IngestError> {
    let mut all = TopicPartitionList::new();
    for t in topics {
        let md = c.fetch_metadata(Some(t), TXN_TIMEOUT)?;
        for topic in md.topics() {
            if let Some(e) = topic.error() {
                return Err(IngestError::Kafka(KafkaError::MetadataFetch(e.into())));
            }
            for p in topic.partitions() {
                all.add_partition(topic.name(), p.id());
            }
        }
    }
    let committed = c.committed_offsets(all, TXN_TIMEOUT)?;
    let mut from = TopicPartitionList::with_capacity(committed.count());
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        from.add_partition_offset(e.topic(), e.partition(), offset)?;
    }
    let n = from.count();
    c.assign(&from)?;
    Ok(n)
}

/// Runs a blocking Kafka call off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(KafkaError::Canceled)
            .inspect_err(|_| tracing::error!(error = %e, "blocking kafka call panicked"))
    })
}

/// What a failed transactional call means for the session.
fn judge(what: &str, e: &KafkaError) -> Ended {
    let fenced = match e {
        KafkaError::Transaction(r) => {
            r.is_fatal()
                || matches!(
                    r.code(),
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                )
        }
        _ => false,
    };
    if e.to_string().contains("not supported by broker") {
        Ended::Unsupported(format!("{what}: {e}"))
    } else if fenced {
        Ended::Fenced(format!("{what}: {e}"))
    } else {
        Ended::Rebuild(format!("{what}: {e}"))
    }
}

fn retriable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(r) if r.is_retriable())
}

/// The inputs of the open transaction.
#[derive(Debug, Default)]
struct Txn {
    /// Next offset to read per input partition (last handled + 1).
    offsets: Vec<((String, i32), i64)>,
    /// Inputs handled in it.
    inputs: u64,
    /// Outputs produced in it (events, dead letters, ticks' events).
    outputs: u64,
}

impl Txn {
    fn handled(&mut self, topic: &str, partition: i32, offset: i64) {
        self.inputs += 1;
        match self
            .offsets
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic)
        {
            Some((_, next)) => *next = (*next).max(offset + 1),
            None => self
                .offsets
                .push(((topic.to_string(), partition), offset + 1)),
        }
    }

    fn is_empty(&self) -> bool {
        self.inputs == 0 && self.outputs == 0
    }
}

/// One owner session: from `init_transactions` to its end.
async fn run_owned(
    config: &ProcessorConfig,
    restore: &Restore,
    status: &Arc<ProcessorStatus>,
    lease: &Lease,
    lease_consumer: &Arc<LeaseConsumer>,
    meters: &Meters,
    shutdown: &CancellationToken,
) -> Result<Ended, IngestError> {
    let term = lease.term();
    let acks = Arc::new(SharedTracker::default());
    let producer: Arc<TxnProducer> = Arc::new(transactional_config(config).create_with_context(
        AckContext {
            shared: Arc::clone(&acks),
            client: config.kafka.context("processor producer"),
        },
    )?);
    let started = Instant::now();
    if config.exactly_once {
        let p = Arc::clone(&producer);
        if let Err(e) = blocking(move || p.init_transactions(TXN_TIMEOUT)).await {
            return Ok(judge("init_transactions", &e));
        }
    }
    let fenced_at = started.elapsed();
    // Recovery: the engine is rebuilt from the log as committed.
    let log = {
        let (kafka, topic) = (config.kafka.clone(), config.topics.events.clone());
        match tokio::task::spawn_blocking(move || crate::read_all_events(&kafka, &topic)).await {
            Ok(Ok(log)) => log,
            Ok(Err(e)) => return Ok(Ended::Rebuild(format!("reading the output log: {e}"))),
            Err(e) => return Ok(Ended::Rebuild(format!("reading the output log: {e}"))),
        }
    };
    let mut engine = restore(&log);
    let events_in_log = log.events.len();
    drop(log);
    let consumer = Arc::new(input_consumer(config)?);
    let inputs = config.topics.inputs();
    let assigned = {
        let (c, names) = (
            Arc::clone(&consumer),
            inputs.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        );
        match tokio::task::spawn_blocking(move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            assign_inputs(&c, &names)
        })
        .await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Ok(Ended::Rebuild(format!("assigning the inputs: {e}"))),
            Err(e) => return Ok(Ended::Rebuild(format!("assigning the inputs: {e}"))),
        }
    };
    if config.exactly_once {
        if let Err(e) = producer.begin_transaction() {
            return Ok(judge("begin_transaction", &e));
        }
    }
    status.last_seq.store(engine.last_seq(), Ordering::Relaxed);
    status.running.store(true, Ordering::Relaxed);
    meters.seen_ids.set(engine.stats().seen_ids as f64);
    tracing::info!(
        events = events_in_log,
        last_seq = engine.last_seq(),
        partitions = assigned,
        fenced_ms = fenced_at.as_millis() as u64,
        restored_ms = started.elapsed().as_millis() as u64,
        "owner of the output log: earlier producers fenced, state restored, inputs assigned"
    );

    let stalled = Arc::new(tokio::sync::Notify::new());
    let watch_token = shutdown.child_token();
    let _stop_watch = watch_token.clone().drop_guard();
    spawn_lag_watch(
        Arc::clone(&consumer),
        Arc::clone(status),
        Arc::clone(&acks),
        inputs.first().map(|t| t.to_string()).unwrap_or_default(),
        Arc::clone(&stalled),
        watch_token,
    );
    let mut session = Session {
        config,
        engine: &mut engine,
        producer: &producer,
        acks: &acks,
        txn: Txn::default(),
        meters,
        status,
        last_input: None,
        group_committed: Instant::now(),
        committed: Vec::new(),
        group_dirty: false,
        group: None,
    };
    let mut tick = tokio::time::interval(config.tick_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut commit_tick = tokio::time::interval(config.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_in_flight = config.max_in_flight.max(1) as u64;
    // The loop wakes at least every commit interval. A longer gap between
    // two wake-ups means the process was frozen (SIGSTOP, a VM paused, a
    // machine swapping) and may have lost the lease without knowing it yet:
    // it stops writing before anything else and lets a rebuild ask the group
    // again. A broker that implements transactions refuses the writes of a
    // fenced owner anyway; librdkafka's mock cluster does not (decision 21).
    let freeze_limit = Duration::from_millis(2 * heartbeat_ms(config.session_timeout_ms));
    let mut awake = Instant::now();
    let frozen = |awake: &mut Instant| {
        let gap = awake.elapsed();
        *awake = Instant::now();
        (gap > freeze_limit).then(|| {
            Ended::Rebuild(format!(
                "the process was frozen for {} ms: the lease may have moved",
                gap.as_millis()
            ))
        })
    };
    let ended = loop {
        if session.txn.inputs >= max_in_flight {
            if let Err(ended) = session.commit(lease, lease_consumer).await {
                break ended;
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                break match session.commit(lease, lease_consumer).await {
                    Ok(()) => {
                        session.commit_through_group(lease_consumer, CommitMode::Sync);
                        Ended::Shutdown
                    }
                    Err(ended) => ended,
                };
            }
            _ = acks.failed.cancelled() => {
                let reason = acks.lock().failure().map(|f| f.reason.clone()).unwrap_or_default();
                meters.produce_errors.increment(1);
                tracing::error!(error = %reason, "a delivery failed: the transaction is aborted");
                break Ended::Rebuild(format!("delivery failed: {reason}"));
            }
            _ = stalled.notified() => break Ended::Rebuild("consumer stalled".into()),
            _ = commit_tick.tick() => {
                if let Some(ended) = frozen(&mut awake) {
                    break ended;
                }
                if !lease.owned() || lease.term() != term {
                    break Ended::LeaseLost;
                }
                if !session.txn.is_empty() {
                    if let Err(ended) = session.commit(lease, lease_consumer).await {
                        break ended;
                    }
                }
                session.group_commit_due(lease, lease_consumer);
                awake = Instant::now();
            }
            _ = tick.tick() => {
                if let Some(ended) = frozen(&mut awake) {
                    break ended;
                }
                session.on_tick().await;
                awake = Instant::now();
            }
            msg = consumer.recv() => {
                if let Some(ended) = frozen(&mut awake) {
                    break ended;
                }
                match msg {
                    Ok(m) => session.handle_input(&m).await,
                    Err(e) => tracing::warn!(error = %e, "consumer error"),
                }
                awake = Instant::now();
            }
        }
    };
    if config.exactly_once && !matches!(ended, Ended::Shutdown) {
        // Nothing of the open transaction becomes visible; its inputs come
        // again in the next session. A fenced producer cannot abort (the
        // broker already did).
        let p = Arc::clone(&producer);
        if let Err(e) = blocking(move || p.abort_transaction(TXN_TIMEOUT)).await {
            tracing::debug!(error = %e, "abort_transaction");
        }
    }
    // The consumer and producer are closed off the runtime: closing a stuck
    // client may block.
    tokio::task::spawn_blocking(move || {
        drop(consumer);
        drop(producer);
    });
    tracing::info!(ended = ?ended, handled = status.handled.load(Ordering::Relaxed), "processor session ended");
    Ok(ended)
}

/// What the loop of one session works on.
struct Session<'a> {
    config: &'a ProcessorConfig,
    engine: &'a mut Engine,
    producer: &'a Arc<TxnProducer>,
    acks: &'a Arc<SharedTracker>,
    txn: Txn,
    meters: &'a Meters,
    status: &'a ProcessorStatus,
    /// Event time of the newest input and when it came, for the clock.
    last_input: Option<(Timestamp, Instant)>,
    /// When the last transaction's offsets were also committed through the
    /// group (see [`Session::commit`]).
    group_committed: Instant,
    /// Next offset per input partition as of the last committed transaction.
    committed: Vec<((String, i32), i64)>,
    /// True when `committed` moved since the last group commit.
    group_dirty: bool,
    /// The group's metadata as of a number of rebalances.
    group: Option<(u64, Arc<ConsumerGroupMetadata>)>,
}

/// How often the offsets of a committed transaction are also committed
/// through the group membership.
const GROUP_COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How often they are committed again, moved or not.
const GROUP_COMMIT_AGAIN: Duration = Duration::from_secs(1);

impl Session<'_> {
    /// Decodes, validates and applies one input; produces its events, or
    /// its dead letter, in the open transaction.
    async fn handle_input(&mut self, msg: &BorrowedMessage<'_>) {
        let topic = msg.topic();
        let (partition, offset) = (msg.partition(), msg.offset());
        let payload = msg.payload().unwrap_or_default();
        let kind = self.config.topics.kind_of(topic);
        let label = kind.map(|k| k.label()).unwrap_or("unknown");
        let mut cause = None;
        let outcome = match kind {
            None => Err(format!("unknown topic {topic:?}")),
            Some(kind) => match decode_input(kind, payload, Timestamp::now()) {
                Err(e) => Err(e.to_string()),
                Ok(input) => {
                    cause = Engine::dedupe_key(&input);
                    let started = Instant::now();
                    if self.last_input.is_none_or(|(ts, _)| input.ts() >= ts) {
                        self.last_input = Some((input.ts(), started));
                    }
                    let dup_before = self.engine.stats().duplicates;
                    let applied = self.engine.apply(&input);
                    self.meters
                        .apply_seconds
                        .record(started.elapsed().as_secs_f64());
                    if self.engine.stats().duplicates > dup_before {
                        self.meters.duplicates.increment(1);
                    }
                    applied.map_err(|r| format!("rejected: {r}"))
                }
            },
        };
        let ticket = self.acks.lock().open(Some(InputOffset {
            topic: topic.to_string(),
            partition,
            offset,
        }));
        match outcome {
            Ok(events) => {
                self.meters.handled_ok(label);
                if events
                    .iter()
                    .any(|e| matches!(e.body, ioc_model::EventBody::DispatchRecommended(_)))
                {
                    self.meters.recommendations.increment(1);
                }
                // Built only when there is something to produce.
                if !events.is_empty() {
                    let cause = cause.unwrap_or_else(|| format!("{topic}:{partition}:{offset}"));
                    self.txn.outputs += events.len() as u64;
                    produce_events(
                        self.producer,
                        self.acks,
                        ticket,
                        &self.config.topics,
                        &events,
                        &cause,
                        self.meters,
                    )
                    .await;
                }
            }
            Err(reason) => {
                self.meters.dead_lettered(label);
                self.status.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(topic = %topic, partition, offset, reason = %reason, "dead-lettered");
                self.txn.outputs += 1;
                dead_letter(
                    self.producer,
                    self.acks,
                    ticket,
                    &self.config.topics,
                    msg,
                    reason,
                )
                .await;
            }
        }
        self.acks.lock().seal(ticket);
        self.txn.handled(topic, partition, offset);
        self.status
            .last_seq
            .store(self.engine.last_seq(), Ordering::Relaxed);
        self.meters.last_seq.set(self.engine.last_seq() as f64);
    }

    /// Advances the engine's clock: event time, moved on by the wall time
    /// since the last input, so deadlines fire when inputs stop and a
    /// replayed or sped-up stream is not judged by today's wall clock.
    async fn on_tick(&mut self) {
        // A gauge sampled once a tick, off the per-input path.
        self.meters
            .seen_ids
            .set(self.engine.stats().seen_ids as f64);
        let Some((ts, at)) = self.last_input else {
            return;
        };
        let now = ts.plus_millis(i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX));
        let events = self.engine.tick(now);
        if !events.is_empty() {
            let ticket = self.acks.lock().open(None);
            self.txn.outputs += events.len() as u64;
            produce_events(
                self.producer,
                self.acks,
                ticket,
                &self.config.topics,
                &events,
                "tick",
                self.meters,
            )
            .await;
            self.acks.lock().seal(ticket);
            self.status
                .last_seq
                .store(self.engine.last_seq(), Ordering::Relaxed);
        }
    }

    /// Sends the handled inputs' offsets to the open transaction, commits
    /// it and begins the next. Retriable failures are retried; any other
    /// ends the session.
    async fn commit(
        &mut self,
        lease: &Lease,
        lease_consumer: &Arc<LeaseConsumer>,
    ) -> Result<(), Ended> {
        let mut tpl = TopicPartitionList::with_capacity(self.txn.offsets.len());
        for ((t, p), next) in &self.txn.offsets {
            if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*next)) {
                return Err(Ended::Rebuild(format!("offsets of the transaction: {e}")));
            }
        }
        if self.config.exactly_once {
            self.commit_transaction(tpl, lease, lease_consumer).await?;
        } else {
            // Every output acknowledged; then the offsets, through the group.
            let p = Arc::clone(self.producer);
            if let Err(e) = blocking(move || p.flush(TXN_TIMEOUT)).await {
                return Err(Ended::Rebuild(format!("flush: {e}")));
            }
            if self.acks.failed.is_cancelled() {
                let reason = self.acks.lock().failure().map(|f| f.reason.clone());
                return Err(Ended::Rebuild(format!("delivery failed: {reason:?}")));
            }
        }
        self.merge_committed();
        Ok(())
    }

    /// Sends the offsets to the open transaction, commits it and begins the
    /// next.
    async fn commit_transaction(
        &mut self,
        tpl: TopicPartitionList,
        lease: &Lease,
        lease_consumer: &Arc<LeaseConsumer>,
    ) -> Result<(), Ended> {
        let group = self.group_metadata(lease, lease_consumer).await?;
        let tpl = Arc::new(tpl);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (p, tpl, group) = (
                Arc::clone(self.producer),
                Arc::clone(&tpl),
                Arc::clone(&group),
            );
            let done = blocking(move || {
                if tpl.count() > 0 {
                    p.send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)?;
                }
                p.commit_transaction(TXN_TIMEOUT)
            })
            .await;
            match done {
                Ok(()) => break,
                Err(e) if retriable(&e) && attempt < 5 => {
                    tracing::warn!(error = %e, attempt, "commit retried");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(judge("commit_transaction", &e)),
            }
        }
        if let Err(e) = self.producer.begin_transaction() {
            return Err(judge("begin_transaction", &e));
        }
        Ok(())
    }

    /// Records the offsets of the committed inputs, to be committed through
    /// the group, and counts them handled.
    fn merge_committed(&mut self) {
        // The same offsets once more through the group membership, now and
        // then: librdkafka's mock cluster accepts the offsets sent to a
        // transaction but never stores them (its TxnOffsetCommit only
        // answers), and a restart would read every input again. On a real
        // broker this rewrites what the transaction stored, and the group
        // refuses it from a member of an older generation, so a fenced
        // owner cannot move offsets back.
        for ((t, p), next) in &self.txn.offsets {
            match self
                .committed
                .iter_mut()
                .find(|((ct, cp), _)| cp == p && ct == t)
            {
                Some((_, c)) => *c = (*c).max(*next),
                None => self.committed.push(((t.clone(), *p), *next)),
            }
        }
        self.group_dirty = true;
        // Every output of the committed transaction is acknowledged.
        let _ = self.acks.lock().drain_completed();
        let n = self.txn.inputs;
        self.status.handled.fetch_add(n, Ordering::Relaxed);
        self.meters.offsets_stored.increment(n);
        self.meters.transactions.increment(1);
        self.txn = Txn::default();
    }
}

impl Session<'_> {
    /// The group's metadata for the transaction's offsets (its generation
    /// fences an owner that missed a rebalance), fetched again after each
    /// rebalance. librdkafka answers it from its main thread and waits
    /// without a timeout: off the runtime.
    async fn group_metadata(
        &mut self,
        lease: &Lease,
        lease_consumer: &Arc<LeaseConsumer>,
    ) -> Result<Arc<ConsumerGroupMetadata>, Ended> {
        let seen = lease.rebalances();
        if let Some((at, group)) = &self.group {
            if *at == seen {
                return Ok(Arc::clone(group));
            }
        }
        let c = Arc::clone(lease_consumer);
        let group = tokio::task::spawn_blocking(move || c.group_metadata())
            .await
            .ok()
            .flatten()
            .map(Arc::new)
            .ok_or(Ended::LeaseLost)?;
        self.group = Some((seen, Arc::clone(&group)));
        Ok(group)
    }

    /// Commits through the group what the transactions committed since the
    /// last time, if that was [`GROUP_COMMIT_EVERY`] ago.
    fn group_commit_due(&mut self, lease: &Lease, lease_consumer: &LeaseConsumer) {
        if lease.take_commit_failed() {
            self.group_dirty = true;
        }
        // Again every second whatever happened: a commit refused during a
        // rebalance is not always reported back to the context.
        let since = self.group_committed.elapsed();
        if (self.group_dirty && since >= GROUP_COMMIT_EVERY) || since >= GROUP_COMMIT_AGAIN {
            self.commit_through_group(lease_consumer, CommitMode::Async);
        }
    }

    /// Commits the offsets of every transaction committed in this session
    /// through the group membership (see [`Session::commit`]).
    fn commit_through_group(&mut self, lease_consumer: &LeaseConsumer, mode: CommitMode) {
        self.group_committed = Instant::now();
        self.group_dirty = false;
        if self.committed.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(self.committed.len());
        for ((t, p), next) in &self.committed {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*next));
        }
        if let Err(e) = lease_consumer.commit(&tpl, mode) {
            tracing::debug!(error = %e, "group commit of the committed transactions' offsets");
        }
    }
}

/// Produces the dead letter of an input that cannot be applied: its
/// original bytes (up to a bound), where it came from and why.
async fn dead_letter(
    producer: &TxnProducer,
    acks: &SharedTracker,
    ticket: u64,
    topics: &Topics,
    msg: &BorrowedMessage<'_>,
    reason: String,
) {
    let payload = msg.payload().unwrap_or_default();
    let key = msg
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .map(str::to_string);
    let letter = DeadLetter {
        original_base64: base64::engine::general_purpose::STANDARD
            .encode(&payload[..payload.len().min(DeadLetter::MAX_ORIGINAL_BYTES)]),
        original_size: payload.len() as u64,
        original_truncated: payload.len() > DeadLetter::MAX_ORIGINAL_BYTES,
        key: key.clone(),
        topic: msg.topic().to_string(),
        partition: msg.partition(),
        offset: msg.offset(),
        reason,
        ts: Timestamp::now(),
    };
    let bytes = serde_json::to_vec(&letter).unwrap_or_default();
    let record_key = key.unwrap_or_default();
    send(
        producer,
        acks,
        ticket,
        &topics.dlq,
        &record_key,
        &bytes,
        None,
    )
    .await;
}

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
    transactions: metrics::Counter,
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
            transactions: metrics::counter!(metric::TRANSACTIONS),
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

/// Produces the outputs of one input (or one clock tick) as a batch under
/// its ticket: every event carries the input's dedupe key in the
/// `ioc-cause` header, and the last one carries `ioc-batch-end`. Recovery
/// uses both: it ignores a batch cut short by a crash (the input is
/// redelivered and re-emits it, with the same seqs), and remembers every
/// cause as applied.
async fn produce_events(
    producer: &TxnProducer,
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
    producer: &TxnProducer,
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
