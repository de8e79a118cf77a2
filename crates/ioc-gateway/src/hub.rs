//! Fan-out hub: the picture, the bounded history for `since` replay, and the
//! subscribers of every channel, all behind one lock.
//!
//! One lock is what makes a snapshot and the events after it atomic with
//! respect to [`Hub::publish`]: a subscription takes its snapshot and joins
//! the channel in the same critical section, so no event is lost or doubled.
//! The critical sections never await and never block: frames go to each
//! client's bounded queue with `try_send`, and a client whose queue is full
//! is closed as a slow consumer (it resumes with `since`).
//!
//! Each event is serialized once (twice when it carries a caller: masked and
//! unmasked), and the full frame is built once per channel and shared as
//! reference-counted bytes by every subscriber whose `prev_seq` agrees, which
//! is all of them once they have received one event.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use ioc_model::OutputEvent;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::channel::Channel;
use crate::picture::{has_caller, masked_event, Picture, Scope};
use crate::telemetry;

/// A websocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

/// Queue full: the client cannot keep up.
pub const CLOSE_SLOW: CloseReason = CloseReason {
    code: 1008,
    reason: "slow consumer: resume with since",
};
/// The gateway is stopping.
pub const CLOSE_SHUTDOWN: CloseReason = CloseReason {
    code: 1001,
    reason: "server shutting down",
};
/// The token's `exp` passed.
pub const CLOSE_EXPIRED: CloseReason = CloseReason {
    code: 1008,
    reason: "token expired",
};
/// No frame from the client within the idle timeout.
pub const CLOSE_IDLE: CloseReason = CloseReason {
    code: 1001,
    reason: "idle timeout",
};
/// Inbound message over the size limit.
pub const CLOSE_TOO_BIG: CloseReason = CloseReason {
    code: 1009,
    reason: "message too big",
};

/// The hub's handle on one websocket client.
pub struct ClientLink {
    /// Connection id, unique per process.
    pub id: u64,
    /// Bounded outbound queue drained by the connection's writer.
    tx: mpsc::Sender<Utf8Bytes>,
    /// Cancelled when the connection must end, for whatever reason.
    closing: CancellationToken,
    /// The close frame to send; the first reason wins.
    reason: Mutex<Option<CloseReason>>,
}

impl ClientLink {
    /// A link and the receiving end of its queue.
    pub fn new(id: u64, queue: usize) -> (Arc<ClientLink>, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let link = ClientLink {
            id,
            tx,
            closing: CancellationToken::new(),
            reason: Mutex::new(None),
        };
        (Arc::new(link), rx)
    }

    /// Asks the connection to end with `reason` (None: no close frame of
    /// ours, e.g. the peer already closed). Returns false if it was already
    /// ending.
    pub fn close(&self, reason: Option<CloseReason>) -> bool {
        let mut slot = lock(&self.reason);
        if self.closing.is_cancelled() {
            return false;
        }
        *slot = reason;
        self.closing.cancel();
        true
    }

    /// The token cancelled when the connection must end.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// The close frame chosen, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        *lock(&self.reason)
    }

    /// Queues a frame without waiting. A full queue closes the client as a
    /// slow consumer: we never block publish and never grow memory.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        if self.closing.is_cancelled() {
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close(Some(CLOSE_SLOW)) {
                    metrics::counter!(telemetry::WS_SLOW_DISCONNECTS).increment(1);
                    tracing::warn!(conn = self.id, "slow websocket consumer disconnected");
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Free slots in the queue right now.
    fn free_slots(&self) -> usize {
        self.tx.capacity()
    }
}

/// One subscriber of a channel.
struct Subscriber {
    link: Arc<ClientLink>,
    /// Seq of the last frame this client got on this channel (snapshot,
    /// replayed or live event): the `prev_seq` of its next event frame.
    prev_seq: u64,
}

/// Everything publish and subscribe must see atomically.
#[derive(Default)]
struct HubState {
    /// Whether any event was applied (seq 0 is then a duplicate).
    applied_any: bool,
    /// Seq of the last applied event.
    last_seq: u64,
    /// Broker cut: the picture may be behind.
    stale: bool,
    picture: Picture,
    /// The last `history_len` events, oldest first, for `since` replay.
    history: VecDeque<Arc<OutputEvent>>,
    /// Every connected client, for status broadcasts.
    clients: HashMap<u64, Arc<ClientLink>>,
    /// Subscribers by channel; a channel without subscribers has no entry.
    channels: HashMap<Channel, HashMap<u64, Subscriber>>,
}

/// The picture, history and subscribers of a gateway.
pub struct Hub {
    state: Mutex<HubState>,
    history_len: usize,
    /// Known zone ids, to refuse subscriptions to districts that do not exist.
    zones: HashSet<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-written in
    // a way worse than refusing service forever, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub fn new(history_len: usize, zones: HashSet<String>) -> Hub {
        Hub {
            state: Mutex::new(HubState::default()),
            history_len,
            zones,
        }
    }

    /// Known zone ids (empty when no zones were loaded).
    pub fn zones(&self) -> &HashSet<String> {
        &self.zones
    }

    /// Seq of the last applied event (0 before any).
    pub fn last_seq(&self) -> u64 {
        lock(&self.state).last_seq
    }

    /// Connected websocket clients.
    pub fn connections(&self) -> usize {
        lock(&self.state).clients.len()
    }

    /// Reads the picture under the lock.
    pub fn with_picture<R>(&self, f: impl FnOnce(&Picture) -> R) -> R {
        f(&lock(&self.state).picture)
    }

    /// Applies an event and fans it out. Returns false for a duplicate
    /// (seq not above the last applied one).
    pub fn publish(&self, ev: OutputEvent) -> bool {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.applied_any && ev.seq <= st.last_seq {
            return false;
        }
        st.picture.apply(&ev);
        st.applied_any = true;
        st.last_seq = ev.seq;
        let ev = Arc::new(ev);
        if self.history_len > 0 {
            st.history.push_back(ev.clone());
            while st.history.len() > self.history_len {
                st.history.pop_front();
            }
        }
        metrics::counter!(telemetry::EVENTS_PUBLISHED).increment(1);

        let mut plain_json: Option<String> = None;
        let mut masked_json: Option<String> = None;
        for channel in Channel::routes(&ev) {
            let Some(subs) = st.channels.get_mut(&channel) else {
                continue;
            };
            let event_json: &str = if channel.masks_callers() && has_caller(&ev) {
                masked_json.get_or_insert_with(|| to_json(&masked_event(&ev)))
            } else {
                plain_json.get_or_insert_with(|| to_json(&*ev))
            };
            let name = to_json(&channel.name());
            let mut shared: Option<(u64, Utf8Bytes)> = None;
            let mut gone = Vec::new();
            let mut delivered = 0u64;
            for (id, sub) in subs.iter_mut() {
                let frame = match &shared {
                    Some((prev, frame)) if *prev == sub.prev_seq => frame.clone(),
                    _ => {
                        let frame = event_frame(&name, ev.seq, sub.prev_seq, event_json);
                        if shared.is_none() {
                            shared = Some((sub.prev_seq, frame.clone()));
                        }
                        frame
                    }
                };
                if sub.link.push(frame) {
                    sub.prev_seq = ev.seq;
                    delivered += 1;
                } else {
                    gone.push(*id);
                }
            }
            for id in gone {
                subs.remove(&id);
            }
            if subs.is_empty() {
                st.channels.remove(&channel);
            }
            metrics::counter!(telemetry::WS_MESSAGES_OUT, "channel_kind" => channel.kind())
                .increment(delivered);
        }
        true
    }

    /// Adds a client; tells it at once if the picture is stale.
    pub fn register(&self, link: Arc<ClientLink>) {
        let mut st = lock(&self.state);
        if st.stale {
            link.push(status_frame(true, st.last_seq));
        }
        st.clients.insert(link.id, link);
    }

    /// Removes a client from every channel and from the client list.
    pub fn unregister(&self, id: u64, channels: &HashSet<Channel>) {
        let mut st = lock(&self.state);
        for channel in channels {
            remove_subscriber(&mut st, channel, id);
        }
        st.clients.remove(&id);
    }

    /// Subscribes a client: replays history after `since` when it still holds
    /// every event after it, else sends a fresh snapshot; then the client
    /// receives every later event of the channel. Atomic with publish.
    pub fn subscribe(&self, link: &Arc<ClientLink>, channel: Channel, since: Option<u64>) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let name = to_json(&channel.name());
        let replay = since.and_then(|since| {
            replayable(st, &channel, since, link.free_slots()).map(|evs| (since, evs))
        });
        let mut frames = 1;
        let prev_seq = match replay {
            Some((since, events)) => {
                frames = events.len() as u64;
                let mut prev = since;
                for ev in events {
                    let json = if channel.masks_callers() && has_caller(&ev) {
                        to_json(&masked_event(&ev))
                    } else {
                        to_json(&*ev)
                    };
                    if !link.push(event_frame(&name, ev.seq, prev, &json)) {
                        return;
                    }
                    prev = ev.seq;
                }
                prev
            }
            None => {
                let data = snapshot_data(&st.picture, &channel);
                let frame = json!({
                    "op": "snapshot",
                    "channel": channel.name(),
                    "seq": st.last_seq,
                    "data": data,
                });
                if !link.push(frame.to_string().into()) {
                    return;
                }
                st.last_seq
            }
        };
        metrics::counter!(telemetry::WS_MESSAGES_OUT, "channel_kind" => channel.kind())
            .increment(frames);
        st.channels.entry(channel).or_default().insert(
            link.id,
            Subscriber {
                link: link.clone(),
                prev_seq,
            },
        );
    }

    /// Removes a client from one channel.
    pub fn unsubscribe(&self, id: u64, channel: &Channel) {
        remove_subscriber(&mut lock(&self.state), channel, id);
    }

    /// Marks the picture stale (broker cut) or fresh and tells every client.
    /// Only changes are broadcast.
    pub fn set_stale(&self, stale: bool) {
        let mut st = lock(&self.state);
        if st.stale == stale {
            return;
        }
        st.stale = stale;
        let frame = status_frame(stale, st.last_seq);
        for link in st.clients.values() {
            link.push(frame.clone());
        }
    }
}

fn remove_subscriber(st: &mut HubState, channel: &Channel, id: u64) {
    if let Some(subs) = st.channels.get_mut(channel) {
        subs.remove(&id);
        if subs.is_empty() {
            st.channels.remove(channel);
        }
    }
}

/// The events of `channel` after `since`, if the history still holds every
/// event after `since` and they fit in the client's queue; None means "send
/// a snapshot instead" (which also costs one frame instead of many).
fn replayable(
    st: &HubState,
    channel: &Channel,
    since: u64,
    room: usize,
) -> Option<Vec<Arc<OutputEvent>>> {
    if since > st.last_seq {
        // A seq from the future (another log, or a reset one): start over.
        return None;
    }
    if since < st.last_seq {
        let oldest = st.history.front()?;
        if oldest.seq > since.saturating_add(1) {
            return None;
        }
    }
    let start = st.history.partition_point(|e| e.seq <= since);
    let events: Vec<Arc<OutputEvent>> = st
        .history
        .range(start..)
        .filter(|e| channel.carries(e))
        .cloned()
        .collect();
    (events.len() <= room).then_some(events)
}

/// The snapshot `data` of a channel.
fn snapshot_data(picture: &Picture, channel: &Channel) -> Value {
    match channel {
        Channel::City => picture.snapshot(Scope {
            district: None,
            mask_callers: true,
        }),
        Channel::Dispatch => picture.snapshot(Scope {
            district: None,
            mask_callers: false,
        }),
        Channel::District(id) => picture.snapshot(Scope {
            district: Some(id),
            mask_callers: true,
        }),
        Channel::Units => picture.units_snapshot(),
    }
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    // Our own types always serialize; an empty object keeps the frame valid
    // if that ever changes.
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// `{"op":"event",...}` around an already serialized event.
fn event_frame(channel_json: &str, seq: u64, prev_seq: u64, event_json: &str) -> Utf8Bytes {
    format!(
        r#"{{"op":"event","channel":{channel_json},"seq":{seq},"prev_seq":{prev_seq},"event":{event_json}}}"#
    )
    .into()
}

/// `{"op":"status","stale":..,"seq":..}`.
pub fn status_frame(stale: bool, seq: u64) -> Utf8Bytes {
    json!({"op": "status", "stale": stale, "seq": seq})
        .to_string()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picture::fixtures::*;
    use ioc_model::{EventBody, Timestamp};

    fn ev(seq: u64, district: &str, body: EventBody) -> OutputEvent {
        OutputEvent {
            seq,
            ts: Timestamp::from_unix_millis(1_700_000_000_000),
            district: Some(district.into()),
            body,
        }
    }

    fn drain(rx: &mut mpsc::Receiver<Utf8Bytes>) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(f) = rx.try_recv() {
            out.push(serde_json::from_str(f.as_str()).unwrap());
        }
        out
    }

    #[test]
    fn snapshot_then_events_with_prev_seq_per_channel() {
        let hub = Hub::new(100, HashSet::new());
        hub.publish(ev(
            1,
            "a",
            EventBody::IncidentOpened(incident("i1", "a", None)),
        ));
        let (link, mut rx) = ClientLink::new(1, 16);
        hub.subscribe(&link, Channel::District("a".into()), None);
        hub.publish(ev(
            2,
            "b",
            EventBody::IncidentOpened(incident("i2", "b", None)),
        ));
        hub.publish(ev(3, "a", EventBody::UnitUpdated(unit("u1", "a"))));
        hub.publish(ev(4, "a", EventBody::AlertRaised(alert("x", "a"))));
        let frames = drain(&mut rx);
        assert_eq!(frames[0]["op"], "snapshot");
        assert_eq!(frames[0]["seq"], 1);
        assert_eq!(frames[0]["data"]["incidents"][0]["incident_id"], "i1");
        assert_eq!(frames[1]["seq"], 3);
        assert_eq!(frames[1]["prev_seq"], 1);
        assert_eq!(frames[2]["seq"], 4);
        assert_eq!(frames[2]["prev_seq"], 3);
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn duplicates_are_ignored() {
        let hub = Hub::new(100, HashSet::new());
        assert!(hub.publish(ev(5, "a", EventBody::UnitUpdated(unit("u1", "a")))));
        assert!(!hub.publish(ev(5, "a", EventBody::UnitUpdated(unit("u1", "a")))));
        assert!(!hub.publish(ev(4, "a", EventBody::UnitUpdated(unit("u1", "a")))));
        assert_eq!(hub.last_seq(), 5);
    }

    #[test]
    fn full_queue_closes_the_client_as_slow() {
        let hub = Hub::new(100, HashSet::new());
        let (link, _rx) = ClientLink::new(1, 2);
        hub.subscribe(&link, Channel::Units, None);
        for seq in 1..=5 {
            hub.publish(ev(seq, "a", EventBody::UnitUpdated(unit("u1", "a"))));
        }
        assert!(link.closing().is_cancelled());
        assert_eq!(link.close_reason(), Some(CLOSE_SLOW));
        assert!(lock(&hub.state).channels.is_empty());
    }

    #[test]
    fn since_replays_or_falls_back_to_snapshot() {
        let hub = Hub::new(3, HashSet::new());
        for seq in 1..=5 {
            hub.publish(ev(seq, "a", EventBody::UnitUpdated(unit("u1", "a"))));
        }
        // history holds 3..=5: since 2 is replayable, since 1 is not.
        let (link, mut rx) = ClientLink::new(1, 16);
        hub.subscribe(&link, Channel::Units, Some(2));
        let frames = drain(&mut rx);
        let seqs: Vec<_> = frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(frames[0]["prev_seq"], 2);
        let (link, mut rx) = ClientLink::new(2, 16);
        hub.subscribe(&link, Channel::Units, Some(1));
        let frames = drain(&mut rx);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["op"], "snapshot");
        assert_eq!(frames[0]["seq"], 5);
    }
}
