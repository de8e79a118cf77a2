//! Who writes the output log: the processor that the consumer group assigns
//! partition 0 of `ioc.events`.
//!
//! Every processor joins the group `processor.group_id` subscribed to the
//! output topic, never reads it (the assigned partitions are paused at
//! once) and writes only while it is assigned that partition. The group is
//! the lease: a processor that stops heartbeating (killed, paused, cut off)
//! loses it after `session.timeout.ms`, and a standby of the same group gets
//! it. The lease alone cannot stop a paused process that wakes up still
//! believing it owns the log; the transactional producer does
//! ([`crate::processor`]): the new owner's `init_transactions` fences every
//! earlier producer of the same `transactional.id`, whose writes and
//! offset commits the broker then refuses.
//!
//! The cooperative-sticky assignor keeps the partition where it is when a
//! member joins or leaves, so a standby that (re)joins does not move the
//! lease away from a healthy owner.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::client::KafkaContext;
use crate::IngestError;

/// The lease as the group last said it.
#[derive(Debug, Default)]
pub struct Lease {
    /// True while this process is assigned the output partition.
    owned: AtomicBool,
    /// Grows at every change of `owned`, so a holder can tell that it lost
    /// the lease and got it back in between two looks.
    changes: AtomicU64,
    /// Woken at every change.
    changed: Notify,
    /// Set when an offset commit through the group failed (a rebalance in
    /// progress, an older generation): the owner commits again.
    commit_failed: AtomicBool,
    /// Grows at every rebalance of the group, whoever got what: the group's
    /// generation changed, and with it the metadata a transaction sends.
    rebalances: AtomicU64,
}

impl Lease {
    /// True while this process owns the output partition.
    pub fn owned(&self) -> bool {
        self.owned.load(Ordering::Acquire)
    }

    /// How many times the lease changed hands (a term number).
    pub fn term(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    fn set(&self, owned: bool) {
        if self.owned.swap(owned, Ordering::AcqRel) != owned {
            self.changes.fetch_add(1, Ordering::AcqRel);
            tracing::info!(owned, "output log lease changed");
            self.changed.notify_waiters();
        }
    }

    /// Rebalances seen so far (see the field).
    pub fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Acquire)
    }

    /// True once after an offset commit through the group failed.
    pub fn take_commit_failed(&self) -> bool {
        self.commit_failed.swap(false, Ordering::AcqRel)
    }

    /// Waits until the lease changes (or `timeout`).
    pub async fn changed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.changed.notified()).await;
    }
}

/// Tracks the assignment of the output partition.
pub struct LeaseContext {
    lease: Arc<Lease>,
    topic: String,
    /// Errors and log lines as every client of the process reports them.
    client: KafkaContext,
}

impl ClientContext for LeaseContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.client.error(error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.client.log(level, fac, message);
    }
}

impl ConsumerContext for LeaseContext {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &rdkafka::TopicPartitionList,
    ) {
        match result {
            Ok(()) => tracing::trace!(
                partitions = offsets.count(),
                "offsets committed through the group"
            ),
            Err(e) => {
                tracing::debug!(error = %e, partitions = offsets.count(), "offsets not committed through the group, again later");
                self.lease.commit_failed.store(true, Ordering::Release);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.lease.rebalances.fetch_add(1, Ordering::AcqRel);
        match rebalance {
            Rebalance::Assign(tpl) => {
                // Never read: the owner writes this topic, it does not follow it.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!(error = %e, "could not pause the lease partitions");
                }
                if tpl.find_partition(&self.topic, 0).is_some() {
                    self.lease.set(true);
                }
            }
            Rebalance::Revoke(tpl) => {
                if tpl.find_partition(&self.topic, 0).is_some() {
                    self.lease.set(false);
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "lease rebalance error");
                self.lease.set(false);
            }
        }
    }
}

/// The group membership that holds the lease.
pub type LeaseConsumer = BaseConsumer<LeaseContext>;

/// Joins the group for the lease and keeps it served (heartbeats,
/// rebalances) on a thread of its own until `shutdown`; on shutdown it
/// leaves the group, so a standby takes over at once instead of after the
/// session timeout.
pub fn join(
    mut config: rdkafka::ClientConfig,
    client: KafkaContext,
    topic: &str,
    shutdown: CancellationToken,
) -> Result<(Arc<Lease>, Arc<LeaseConsumer>), IngestError> {
    let lease = Arc::new(Lease::default());
    config
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("partition.assignment.strategy", "cooperative-sticky");
    let consumer: LeaseConsumer = config.create_with_context(LeaseContext {
        lease: Arc::clone(&lease),
        topic: topic.to_string(),
        client,
    })?;
    consumer.subscribe(&[topic])?;
    let consumer = Arc::new(consumer);
    let served = Arc::clone(&consumer);
    let lost = Arc::clone(&lease);
    std::thread::Builder::new()
        .name("ioc-lease".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                // Paused: nothing arrives; the poll serves the group.
                if let Some(Err(e)) = served.poll(Duration::from_millis(100)) {
                    tracing::debug!(error = %e, "lease consumer");
                }
            }
            served.unsubscribe();
            lost.set(false);
        })?;
    Ok((lease, consumer))
}
