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

use ioc_engine::Engine;
use ioc_model::Topics;
use rdkafka::consumer::{CommitMode, StreamConsumer};
use rdkafka::producer::{Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;

mod clients;
mod meters;
mod outputs;
mod session;

use self::clients::{assign_inputs, blocking, input_consumer, judge, transactional_config};
use self::meters::Meters;
use self::session::{Session, Txn};
use crate::acks::{AckContext, SharedTracker};
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

/// Runs blocking work of a session's start off the runtime; a failure ends
/// the session for a rebuild.
async fn off_runtime<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Ended> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Ended::Rebuild(format!("{what}: {e}"))),
        Err(e) => Err(Ended::Rebuild(format!("{what}: {e}"))),
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
    // Recovery: the engine is rebuilt from the log as committed, off the
    // runtime (a long log is seconds of decoding and replay).
    let (kafka, topic, rebuild) = (
        config.kafka.clone(),
        config.topics.events.clone(),
        Arc::clone(restore),
    );
    let restored = off_runtime("reading the output log", move || {
        crate::read_all_events(&kafka, &topic).map(|log| (rebuild(&log), log.events.len()))
    });
    let (mut engine, events_in_log) = match restored.await {
        Ok(v) => v,
        Err(ended) => return Ok(ended),
    };
    let consumer = Arc::new(input_consumer(config)?);
    let inputs = config.topics.inputs();
    let (c, names) = (
        Arc::clone(&consumer),
        inputs.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
    );
    let assigned = match off_runtime("assigning the inputs", move || {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assign_inputs(&c, &names)
    })
    .await
    {
        Ok(n) => n,
        Err(ended) => return Ok(ended),
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
