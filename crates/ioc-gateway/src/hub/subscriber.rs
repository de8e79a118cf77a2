//! One subscriber of one channel: the chain of `prev_seq` it has been sent,
//! and the unit positions held back for it while its client is behind
//! (latest per unit, flushed in seq order).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use super::client::ClientLink;
use super::frames::event_frame;

/// Most units whose positions one subscription may hold back. A fleet is
/// far smaller; past this the client is closed as slow, so held positions
/// stay bounded whatever the input.
pub(super) const MAX_HELD_PER_CHANNEL: usize = 8192;

/// Distinct `prev_seq` values whose frames publish keeps per channel and
/// event; subscribers beyond them get a frame of their own.
pub(super) const SHARED_FRAMES: usize = 4;

/// One subscriber of a channel.
pub(super) struct Subscriber {
    pub(super) link: Arc<ClientLink>,
    /// Seq of the last frame queued for this client on this channel
    /// (snapshot, replayed or live event): the `prev_seq` of its next frame.
    prev_seq: u64,
    /// Positions held back while the client is behind: latest per unit, all
    /// newer than `prev_seq`. Empty (and unallocated) normally.
    pub(super) held: HashMap<Arc<str>, HeldPosition>,
}

/// A `unit.updated` event waiting for a slow client.
pub(super) struct HeldPosition {
    seq: u64,
    /// The serialized event, shared with every other client.
    event_json: Arc<str>,
}

/// What happened to an event for one subscriber.
pub(super) enum Outcome {
    Queued,
    /// Held back; `replaced` when it coalesced an older held position.
    Held {
        replaced: bool,
    },
    /// The client is closing: remove it from the channel.
    Gone,
}

impl Subscriber {
    pub(super) fn new(link: Arc<ClientLink>, prev_seq: u64) -> Subscriber {
        Subscriber {
            link,
            prev_seq,
            held: HashMap::new(),
        }
    }

    /// Queues an event frame after any held positions (which are older).
    pub(super) fn deliver(
        &mut self,
        channel_json: &str,
        seq: u64,
        event_json: &str,
        shared: &mut Vec<(u64, Utf8Bytes)>,
    ) -> Outcome {
        if !self.held.is_empty() && self.flush(channel_json, usize::MAX).is_none() {
            return Outcome::Gone;
        }
        let prev = self.prev_seq;
        let frame = match shared.iter().find(|(p, _)| *p == prev) {
            Some((_, frame)) => frame.clone(),
            None => {
                let frame = event_frame(channel_json, seq, prev, event_json);
                if shared.len() < SHARED_FRAMES {
                    shared.push((prev, frame.clone()));
                }
                frame
            }
        };
        if self.link.push(frame) {
            self.prev_seq = seq;
            Outcome::Queued
        } else {
            Outcome::Gone
        }
    }

    /// Holds a position back, replacing an older one of the same unit.
    pub(super) fn hold(&mut self, unit: &Arc<str>, seq: u64, event_json: &Arc<str>) -> Outcome {
        let held = HeldPosition {
            seq,
            event_json: event_json.clone(),
        };
        let replaced = self.held.insert(unit.clone(), held).is_some();
        if self.held.len() > MAX_HELD_PER_CHANNEL {
            self.link.close_slow();
            return Outcome::Gone;
        }
        self.link.holding.store(true, Ordering::Relaxed);
        Outcome::Held { replaced }
    }

    /// Queues up to `max` held positions, oldest first. Returns how many
    /// went out, or None if the client was closed as slow.
    pub(super) fn flush(&mut self, channel_json: &str, max: usize) -> Option<u64> {
        let mut order: Vec<(u64, Arc<str>)> = self
            .held
            .iter()
            .map(|(unit, h)| (h.seq, unit.clone()))
            .collect();
        order.sort_unstable_by_key(|(seq, _)| *seq);
        let mut sent = 0;
        for (_, unit) in order.into_iter().take(max) {
            let Some(held) = self.held.remove(&unit) else {
                continue;
            };
            let frame = event_frame(channel_json, held.seq, self.prev_seq, &held.event_json);
            if !self.link.push(frame) {
                return None;
            }
            self.prev_seq = held.seq;
            sent += 1;
        }
        if self.held.is_empty() {
            // Give the memory back: a map that held a fleet stays big.
            self.held = HashMap::new();
        }
        Some(sent)
    }
}
