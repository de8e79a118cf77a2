//! The loop's working set in one owner session: the engine, the open
//! transaction's inputs, and what each input, tick and commit does to them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioc_engine::Engine;
use ioc_model::{decode_input, OutputEvent, Timestamp};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerGroupMetadata};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use super::clients::{blocking, judge, retriable};
use super::meters::Meters;
use super::outputs::{dead_letter, produce_events};
use super::{Ended, ProcessorConfig, ProcessorStatus, TxnProducer, TXN_TIMEOUT};
use crate::acks::{InputOffset, SharedTracker};
use crate::ownership::{Lease, LeaseConsumer};

/// The inputs of the open transaction.
#[derive(Debug, Default)]
pub(super) struct Txn {
    /// Next offset to read per input partition (last handled + 1).
    pub(super) offsets: Vec<((String, i32), i64)>,
    /// Inputs handled in it.
    pub(super) inputs: u64,
    /// Outputs produced in it (events, dead letters, ticks' events).
    pub(super) outputs: u64,
}

impl Txn {
    pub(super) fn handled(&mut self, topic: &str, partition: i32, offset: i64) {
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

    pub(super) fn is_empty(&self) -> bool {
        self.inputs == 0 && self.outputs == 0
    }
}

/// What the loop of one session works on.
pub(super) struct Session<'a> {
    pub(super) config: &'a ProcessorConfig,
    pub(super) engine: &'a mut Engine,
    pub(super) producer: &'a Arc<TxnProducer>,
    pub(super) acks: &'a Arc<SharedTracker>,
    pub(super) txn: Txn,
    pub(super) meters: &'a Meters,
    pub(super) status: &'a ProcessorStatus,
    /// Event time of the newest input and when it came, for the clock.
    pub(super) last_input: Option<(Timestamp, Instant)>,
    /// When the last transaction's offsets were also committed through the
    /// group (see [`Session::commit`]).
    pub(super) group_committed: Instant,
    /// Next offset per input partition as of the last committed transaction.
    pub(super) committed: Vec<((String, i32), i64)>,
    /// True when `committed` moved since the last group commit.
    pub(super) group_dirty: bool,
    /// The group's metadata as of a number of rebalances.
    pub(super) group: Option<(u64, Arc<ConsumerGroupMetadata>)>,
}

/// How often the offsets of a committed transaction are also committed
/// through the group membership.
const GROUP_COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How often they are committed again, moved or not.
const GROUP_COMMIT_AGAIN: Duration = Duration::from_secs(1);

impl Session<'_> {
    /// Decodes, validates and applies one input; produces its events, or
    /// its dead letter, in the open transaction.
    pub(super) async fn handle_input(&mut self, msg: &BorrowedMessage<'_>) {
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
                    self.produce(ticket, &events, &cause).await;
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

    /// Produces the events of one input or tick, in the open transaction.
    async fn produce(&mut self, ticket: u64, events: &[OutputEvent], cause: &str) {
        self.txn.outputs += events.len() as u64;
        produce_events(
            self.producer,
            self.acks,
            ticket,
            &self.config.topics,
            events,
            cause,
            self.meters,
        )
        .await;
    }

    /// Advances the engine's clock: event time, moved on by the wall time
    /// since the last input, so deadlines fire when inputs stop and a
    /// replayed or sped-up stream is not judged by today's wall clock.
    pub(super) async fn on_tick(&mut self) {
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
            self.produce(ticket, &events, "tick").await;
            self.acks.lock().seal(ticket);
            self.status
                .last_seq
                .store(self.engine.last_seq(), Ordering::Relaxed);
        }
    }

    /// Sends the handled inputs' offsets to the open transaction, commits
    /// it and begins the next. Retriable failures are retried; any other
    /// ends the session.
    pub(super) async fn commit(
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
            self.meters.transactions.increment(1);
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
        self.txn = Txn::default();
    }

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
    pub(super) fn group_commit_due(&mut self, lease: &Lease, lease_consumer: &LeaseConsumer) {
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
    pub(super) fn commit_through_group(
        &mut self,
        lease_consumer: &LeaseConsumer,
        mode: CommitMode,
    ) {
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
