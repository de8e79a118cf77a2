//! Delivery tracking of the processor: which inputs have every output
//! acknowledged, so their offsets may be stored, strictly in input order.
//!
//! Each input (or clock tick) gets a *ticket*, a number that grows by one
//! per input. Its outputs go to the producer with the ticket as delivery
//! opaque; librdkafka's delivery callback ([`AckContext::delivery`], on the
//! producer's polling thread) counts the acknowledgement against the ticket.
//! The processor loop drains the completed *prefix* of tickets now and then
//! ([`Tracker::drain_completed`]) and stores the offsets of that prefix in
//! one call. An input whose outputs are not all acknowledged holds back
//! every later input, whatever its partition: offsets never pass an
//! unacknowledged output. A failed delivery poisons its ticket: the prefix
//! never grows past it, and the processor stops.
//!
//! This replaces one `FutureProducer` delivery future (a oneshot channel and
//! a heap allocation) per output, awaited one by one by a finalizer task:
//! a counter per input and one lock per delivery report instead.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::client::KafkaContext;

/// Where an input came from: its offset is stored once it is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One input's outputs on their way to the broker.
#[derive(Debug)]
struct Slot {
    /// Outputs enqueued but not acknowledged yet.
    outstanding: u32,
    /// True once every output of the input has been enqueued (the count
    /// above can reach 0 between two sends of the same input).
    sealed: bool,
    /// `None` for clock ticks.
    offset: Option<InputOffset>,
}

/// The first failed delivery: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    pub ticket: u64,
    pub reason: String,
}

/// In-flight inputs in ticket order. Pure: no Kafka, no clock.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Ticket of `slots[0]`.
    base: u64,
    slots: VecDeque<Slot>,
    failure: Option<DeliveryFailure>,
}

impl Tracker {
    /// Opens a ticket for one input (`offset` is `None` for a clock tick).
    /// Call [`Tracker::add_output`] per output, then [`Tracker::seal`].
    pub fn open(&mut self, offset: Option<InputOffset>) -> u64 {
        self.slots.push_back(Slot {
            outstanding: 0,
            sealed: false,
            offset,
        });
        self.base + self.slots.len() as u64 - 1
    }

    /// One more output of `ticket` was handed to the producer.
    pub fn add_output(&mut self, ticket: u64) {
        if let Some(slot) = self.slot_mut(ticket) {
            slot.outstanding += 1;
        }
    }

    /// Every output of `ticket` has been handed to the producer.
    pub fn seal(&mut self, ticket: u64) {
        if let Some(slot) = self.slot_mut(ticket) {
            slot.sealed = true;
        }
    }

    /// The broker acknowledged one output of `ticket` (`Ok`), or the
    /// producer gave up on it (`Err`). Returns true when this made the
    /// oldest ticket complete (worth waking the drainer).
    pub fn ack(&mut self, ticket: u64, result: Result<(), String>) -> bool {
        if let Err(reason) = result {
            self.fail(ticket, reason);
            return false;
        }
        let front = ticket == self.base;
        match self.slot_mut(ticket) {
            Some(slot) => {
                slot.outstanding = slot.outstanding.saturating_sub(1);
                front && slot.outstanding == 0 && slot.sealed
            }
            None => false,
        }
    }

    /// Records a failed (or refused) output of `ticket`; the first failure
    /// is kept. Offsets never advance past `ticket` afterwards.
    pub fn fail(&mut self, ticket: u64, reason: String) {
        if self.failure.is_none() {
            self.failure = Some(DeliveryFailure { ticket, reason });
        }
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<&DeliveryFailure> {
        self.failure.as_ref()
    }

    /// Inputs opened and not yet drained.
    pub fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Removes the longest prefix of complete inputs (sealed, every output
    /// acknowledged, before any failure) and returns their offsets, in
    /// input order; ticks are dropped silently.
    pub fn drain_completed(&mut self) -> Vec<InputOffset> {
        let stop = self.failure.as_ref().map_or(u64::MAX, |f| f.ticket);
        let mut out = Vec::new();
        while let Some(front) = self.slots.front() {
            if self.base >= stop || !front.sealed || front.outstanding > 0 {
                break;
            }
            if let Some(slot) = self.slots.pop_front() {
                out.extend(slot.offset);
            }
            self.base += 1;
        }
        out
    }

    fn slot_mut(&mut self, ticket: u64) -> Option<&mut Slot> {
        let i = usize::try_from(ticket.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i)
    }
}

/// The tracker as shared between the processor loop and the producer's
/// delivery callback.
#[derive(Debug, Default)]
pub struct SharedTracker {
    tracker: Mutex<Tracker>,
    /// Woken when the oldest input completes (room for more in flight,
    /// offsets to store) or a delivery fails.
    pub progress: Notify,
    /// Cancelled on the first failed delivery: the processor stops.
    pub failed: CancellationToken,
}

impl SharedTracker {
    pub fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Producer context: counts delivery reports against their input's ticket;
/// its client errors are those of every client ([`KafkaContext`]).
pub struct AckContext {
    pub shared: Arc<SharedTracker>,
    pub client: KafkaContext,
}

impl ClientContext for AckContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason);
    }
}

impl ProducerContext for AckContext {
    /// The input's ticket (a plain integer: no allocation per message).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        let failed = outcome.is_err();
        let wake = self.shared.lock().ack(ticket as u64, outcome);
        if failed {
            self.shared.failed.cancel();
        }
        if wake || failed {
            self.shared.progress.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(partition: i32, offset: i64) -> Option<InputOffset> {
        Some(InputOffset {
            topic: "ioc.positions".into(),
            partition,
            offset,
        })
    }

    #[test]
    fn a_later_input_acknowledged_first_waits_for_the_earlier_one() {
        let mut t = Tracker::default();
        let a = t.open(at(0, 10));
        t.add_output(a);
        t.add_output(a);
        t.seal(a);
        let b = t.open(at(1, 7));
        t.add_output(b);
        t.seal(b);
        assert!(!t.ack(b, Ok(())));
        assert_eq!(t.drain_completed(), vec![]);
        assert!(!t.ack(a, Ok(())));
        assert_eq!(t.drain_completed(), vec![]);
        assert!(t.ack(a, Ok(())));
        assert_eq!(
            t.drain_completed(),
            vec![at(0, 10).unwrap(), at(1, 7).unwrap()]
        );
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn an_input_is_not_complete_before_it_is_sealed() {
        let mut t = Tracker::default();
        let a = t.open(at(0, 1));
        t.add_output(a);
        t.ack(a, Ok(()));
        // Its second output is not enqueued yet.
        assert_eq!(t.drain_completed(), vec![]);
        t.add_output(a);
        t.seal(a);
        assert_eq!(t.drain_completed(), vec![]);
        t.ack(a, Ok(()));
        assert_eq!(t.drain_completed(), vec![at(0, 1).unwrap()]);
    }

    #[test]
    fn a_failed_delivery_stops_offsets_for_good() {
        let mut t = Tracker::default();
        let a = t.open(at(0, 1));
        t.add_output(a);
        t.seal(a);
        let b = t.open(at(0, 2));
        t.add_output(b);
        t.seal(b);
        let c = t.open(at(0, 3));
        t.add_output(c);
        t.seal(c);
        t.ack(a, Ok(()));
        t.ack(b, Err("timed out".into()));
        t.ack(c, Ok(()));
        assert_eq!(t.drain_completed(), vec![at(0, 1).unwrap()]);
        assert_eq!(t.drain_completed(), vec![]);
        assert_eq!(t.failure().map(|f| f.ticket), Some(b));
    }

    #[test]
    fn ticks_and_inputs_without_outputs_complete_when_sealed() {
        let mut t = Tracker::default();
        let tick = t.open(None);
        t.seal(tick);
        let dup = t.open(at(2, 5)); // a duplicate: no outputs
        t.seal(dup);
        assert_eq!(t.drain_completed(), vec![at(2, 5).unwrap()]);
    }

    proptest! {
        /// Whatever the order of acknowledgements and drains, every offset
        /// drained belongs to an input whose outputs, and those of every
        /// input before it, were all acknowledged at that moment; offsets
        /// come out in input order, each once; and with every output
        /// acknowledged, all of them come out.
        #[test]
        fn offsets_never_pass_an_unacknowledged_output(
            outputs in prop::collection::vec(0u32..4, 1..40),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
            drain_every in 1usize..8,
        ) {
            let mut t = Tracker::default();
            let mut acked = vec![0u32; outputs.len()];
            let mut pending: Vec<u64> = Vec::new();
            for (i, &n) in outputs.iter().enumerate() {
                let ticket = t.open(at(0, i as i64));
                prop_assert_eq!(ticket, i as u64);
                for _ in 0..n {
                    t.add_output(ticket);
                    pending.push(ticket);
                }
                t.seal(ticket);
            }
            let mut drained: Vec<i64> = Vec::new();
            let check = |t: &mut Tracker, acked: &[u32], drained: &mut Vec<i64>| {
                for o in t.drain_completed() {
                    let i = o.offset as usize;
                    for j in 0..=i {
                        assert_eq!(acked[j], outputs[j], "offset {i} passed input {j}");
                    }
                    assert_eq!(drained.last().map_or(0, |l| l + 1), o.offset);
                    drained.push(o.offset);
                }
            };
            for (step, idx) in order.iter().enumerate() {
                if pending.is_empty() {
                    break;
                }
                let ticket = pending.swap_remove(idx.index(pending.len()));
                t.ack(ticket, Ok(()));
                acked[ticket as usize] += 1;
                if step % drain_every == 0 {
                    check(&mut t, &acked, &mut drained);
                }
            }
            for ticket in std::mem::take(&mut pending) {
                t.ack(ticket, Ok(()));
                acked[ticket as usize] += 1;
            }
            check(&mut t, &acked, &mut drained);
            prop_assert_eq!(drained.len(), outputs.len());
            prop_assert_eq!(t.in_flight(), 0);
        }
    }
}
