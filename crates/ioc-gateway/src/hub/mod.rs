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
//! unmasked), and the full frame is built once per channel and per distinct
//! `prev_seq` and shared as reference-counted bytes by every subscriber
//! whose `prev_seq` agrees, which is all of them once they have received one
//! event. Routing is a map lookup per channel the event belongs to (at most
//! three), so publish touches only the clients that get the event.
//!
//! Slow clients: once a client's queue is half full, unit positions are no
//! longer queued for it but held back per channel, latest per unit (a newer
//! position of the same unit replaces the held one: that frame is
//! "coalesced"). Held positions are always newer than everything queued on
//! their channel, so they go out in seq order: before the next incident,
//! dispatch or alert event of that channel, or when the writer has drained
//! the queue to a quarter. `prev_seq` is computed when a frame is queued, so
//! the chain the client sees stays exact and coalescing never looks like a
//! gap. Incident, dispatch and alert events are never held or dropped: if
//! they do not fit, the client is closed as slow and resumes with `since`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use ioc_model::{EventBody, OutputEvent};
use serde_json::{json, Value};

use crate::channel::Channel;
use crate::picture::{has_caller, masked_event, Picture, Scope};
use crate::telemetry;

mod client;
mod frames;
mod subscriber;

pub use self::client::{
    ClientLink, CLOSE_EXPIRED, CLOSE_IDLE, CLOSE_RATE_LIMITED, CLOSE_SHUTDOWN, CLOSE_TOO_BIG,
};
use self::frames::event_frame;
pub use self::frames::{status_frame, StaleReason};
use self::subscriber::{Outcome, Subscriber, SHARED_FRAMES};

/// Everything publish and subscribe must see atomically.
#[derive(Default)]
struct HubState {
    /// Whether any event was applied (seq 0 is then a duplicate).
    applied_any: bool,
    /// Seq of the last applied event.
    last_seq: u64,
    /// Why the picture may be behind (broker cut, or the processor making
    /// no progress); None when it is live.
    stale: Option<StaleReason>,
    picture: Picture,
    /// The last `history_len` events, oldest first, for `since` replay.
    history: VecDeque<Logged>,
    /// Every connected client, for status broadcasts.
    clients: HashMap<u64, Arc<ClientLink>>,
    /// Subscribers by channel; a channel without subscribers has no entry.
    channels: HashMap<Channel, HashMap<u64, Subscriber>>,
}

/// An event of the history, with what routing needs beyond the event.
struct Logged {
    ev: Arc<OutputEvent>,
    /// The district a `unit.updated` event's unit left (see
    /// [`Channel::routes`]): replay sends it there too, like publish did.
    left: Option<Box<str>>,
}

/// The picture, history and subscribers of a gateway.
pub struct Hub {
    state: Mutex<HubState>,
    history_len: usize,
    /// Known zone ids, to refuse subscriptions to districts that do not exist.
    zones: HashSet<String>,
    meters: HubMeters,
}

/// The hub's counters, resolved once: `counter!` with a label is a registry
/// lookup, and publishing runs once per event and channel.
struct HubMeters {
    published: metrics::Counter,
    /// By [`kind_index`].
    out: [metrics::Counter; 4],
    coalesced: [metrics::Counter; 4],
}

impl HubMeters {
    fn new() -> Self {
        let kinds = [
            Channel::City,
            Channel::Dispatch,
            Channel::District(String::new()),
            Channel::Units,
        ];
        Self {
            published: metrics::counter!(telemetry::EVENTS_PUBLISHED),
            out: kinds
                .clone()
                .map(|c| metrics::counter!(telemetry::WS_MESSAGES_OUT, "channel_kind" => c.kind())),
            coalesced: kinds
                .map(|c| metrics::counter!(telemetry::WS_COALESCED, "channel_kind" => c.kind())),
        }
    }

    fn out(&self, channel: &Channel) -> &metrics::Counter {
        &self.out[kind_index(channel)]
    }
}

/// Position of a channel's kind in [`HubMeters`]' arrays.
fn kind_index(channel: &Channel) -> usize {
    match channel {
        Channel::City => 0,
        Channel::Dispatch => 1,
        Channel::District(_) => 2,
        Channel::Units => 3,
    }
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
            meters: HubMeters::new(),
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
        self.publish_with_json(ev, None)
    }

    /// [`Hub::publish`] with the event's serialization at hand (the output
    /// log's payload), sent as is instead of serializing the event again
    /// where that is safe (see [`raw_ok`]).
    pub fn publish_with_json(&self, ev: OutputEvent, json: Option<Arc<str>>) -> bool {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.applied_any && ev.seq <= st.last_seq {
            return false;
        }
        let left = departed_district(&st.picture, &ev);
        st.picture.apply(&ev);
        st.applied_any = true;
        st.last_seq = ev.seq;
        let ev = Arc::new(ev);
        if self.history_len > 0 {
            st.history.push_back(Logged {
                ev: ev.clone(),
                left: left.as_deref().map(Box::from),
            });
            while st.history.len() > self.history_len {
                st.history.pop_front();
            }
        }
        self.meters.published.increment(1);

        // The coalescing key of a position; None for every other event.
        let position: Option<Arc<str>> = match &ev.body {
            EventBody::UnitUpdated(u) => Some(Arc::from(u.unit_id.as_str())),
            _ => None,
        };
        let mut plain_json: Option<Arc<str>> = None;
        let mut masked_json: Option<Arc<str>> = None;
        for channel in Channel::routes(&ev, left.as_deref()) {
            let Some(subs) = st.channels.get_mut(&channel) else {
                continue;
            };
            let event_json: Arc<str> = if channel.masks_callers() && has_caller(&ev) {
                masked_json
                    .get_or_insert_with(|| to_json(&masked_event(&ev)).into())
                    .clone()
            } else if let (true, Some(json)) = (raw_ok(&channel, &ev), &json) {
                json.clone()
            } else {
                plain_json
                    .get_or_insert_with(|| to_json(&*ev).into())
                    .clone()
            };
            let name = to_json(&channel.name());
            let mut shared: Vec<(u64, Utf8Bytes)> = Vec::with_capacity(SHARED_FRAMES);
            let mut gone = Vec::new();
            let (mut delivered, mut coalesced) = (0u64, 0u64);
            for (id, sub) in subs.iter_mut() {
                let outcome = match &position {
                    Some(unit) if !sub.held.is_empty() || sub.link.under_pressure() => {
                        let outcome = sub.hold(unit, ev.seq, &event_json);
                        if matches!(outcome, Outcome::Held { .. }) && sub.link.wants_flush() {
                            // The writer drained the queue meanwhile.
                            let room = sub.link.high_water().saturating_sub(sub.link.queued());
                            match sub.flush(&name, room) {
                                Some(n) => delivered += n,
                                None => {
                                    gone.push(*id);
                                    continue;
                                }
                            }
                        }
                        outcome
                    }
                    _ => {
                        let held_before = sub.held.len() as u64;
                        let outcome = sub.deliver(&name, ev.seq, &event_json, &mut shared);
                        delivered += held_before;
                        outcome
                    }
                };
                match outcome {
                    Outcome::Queued => delivered += 1,
                    Outcome::Held { replaced } => coalesced += u64::from(replaced),
                    Outcome::Gone => gone.push(*id),
                }
            }
            for id in gone {
                subs.remove(&id);
            }
            if subs.is_empty() {
                st.channels.remove(&channel);
            }
            self.meters.out(&channel).increment(delivered);
            if coalesced > 0 {
                self.meters.coalesced[kind_index(&channel)].increment(coalesced);
            }
        }
        true
    }

    /// Queues positions held back for `link`, oldest first, up to half its
    /// queue; called by its writer once the queue has drained.
    pub fn flush_held(&self, link: &ClientLink) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let mut still_holding = false;
        let mut gone = Vec::new();
        for (channel, subs) in st.channels.iter_mut() {
            let Some(sub) = subs.get_mut(&link.id) else {
                continue;
            };
            if sub.held.is_empty() {
                continue;
            }
            let room = link.high_water().saturating_sub(link.queued());
            match sub.flush(&to_json(&channel.name()), room) {
                Some(sent) => {
                    self.meters.out(channel).increment(sent);
                    still_holding |= !sub.held.is_empty();
                }
                None => gone.push(channel.clone()),
            }
        }
        for channel in gone {
            remove_subscriber(st, &channel, link.id);
        }
        link.holding.store(still_holding, Ordering::Relaxed);
    }

    /// Adds a client; tells it at once if the picture is stale.
    pub fn register(&self, link: Arc<ClientLink>) {
        let mut st = lock(&self.state);
        if let Some(reason) = st.stale {
            link.push(status_frame(Some(reason), st.last_seq));
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
        self.meters.out(&channel).increment(frames);
        st.channels
            .entry(channel)
            .or_default()
            .insert(link.id, Subscriber::new(link.clone(), prev_seq));
    }

    /// Removes a client from one channel.
    pub fn unsubscribe(&self, id: u64, channel: &Channel) {
        remove_subscriber(&mut lock(&self.state), channel, id);
    }

    /// Marks the picture stale (with the reason) or live (None) and tells
    /// every client when that changes.
    pub fn set_stale(&self, stale: Option<StaleReason>) {
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

/// Whether the output log's bytes of `ev` may go to `channel` unchanged:
/// on a channel that does not mask callers, or for `unit.updated` (the
/// volume event; a unit carries no caller data). Anything else on a masking
/// channel is re-serialized from what this gateway parsed, so a field it
/// does not understand (a newer processor's) never reaches a public screen.
fn raw_ok(channel: &Channel, ev: &OutputEvent) -> bool {
    !channel.masks_callers() || matches!(ev.body, EventBody::UnitUpdated(_))
}

/// The district a `unit.updated` event moves its unit out of: the one the
/// picture holds for the unit before the event, when the event is routed
/// elsewhere (another district, or none). Its screen showed the unit, so it
/// must get this update to drop it. None for every other event.
fn departed_district(picture: &Picture, ev: &OutputEvent) -> Option<String> {
    let EventBody::UnitUpdated(u) = &ev.body else {
        return None;
    };
    picture
        .unit(&u.unit_id)?
        .district
        .as_deref()
        .filter(|old| ev.district.as_deref() != Some(*old))
        .map(str::to_string)
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
        if oldest.ev.seq > since.saturating_add(1) {
            return None;
        }
    }
    let start = st.history.partition_point(|e| e.ev.seq <= since);
    let events: Vec<Arc<OutputEvent>> = st
        .history
        .range(start..)
        .filter(|e| channel.carries(&e.ev, e.left.as_deref()))
        .map(|e| e.ev.clone())
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

#[cfg(test)]
mod tests {
    use super::client::CLOSE_SLOW;
    use super::*;
    use crate::picture::fixtures::*;
    use ioc_model::{EventBody, Timestamp};
    use tokio::sync::mpsc;

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
    fn a_unit_leaving_a_district_is_sent_there_once_and_replayed_there() {
        let hub = Hub::new(100, HashSet::new());
        hub.publish(ev(1, "a", EventBody::UnitUpdated(unit("u1", "a"))));
        let (a, mut rx_a) = ClientLink::new(1, 16);
        let (b, mut rx_b) = ClientLink::new(2, 16);
        let (c, mut rx_c) = ClientLink::new(3, 16);
        hub.subscribe(&a, Channel::District("a".into()), None);
        hub.subscribe(&b, Channel::District("b".into()), None);
        hub.subscribe(&c, Channel::District("c".into()), None);
        let _ = (drain(&mut rx_a), drain(&mut rx_b), drain(&mut rx_c));
        hub.publish(ev(2, "b", EventBody::UnitUpdated(unit("u1", "b"))));
        hub.publish(ev(3, "b", EventBody::UnitUpdated(unit("u1", "b"))));
        // A unit seen for the first time leaves nowhere.
        hub.publish(ev(4, "b", EventBody::UnitUpdated(unit("u2", "b"))));
        let seqs = |frames: Vec<Value>| -> Vec<(u64, u64)> {
            frames
                .iter()
                .map(|f| (f["seq"].as_u64().unwrap(), f["prev_seq"].as_u64().unwrap()))
                .collect()
        };
        assert_eq!(
            seqs(drain(&mut rx_a)),
            vec![(2, 1)],
            "only the leaving update"
        );
        assert_eq!(seqs(drain(&mut rx_b)), vec![(2, 1), (3, 2), (4, 3)]);
        assert!(drain(&mut rx_c).is_empty());
        // A unit leaving every district (outside the zones) is sent to the
        // one it left as well.
        let mut outside = unit("u2", "b");
        outside.district = None;
        hub.publish(OutputEvent {
            district: None,
            ..ev(5, "b", EventBody::UnitUpdated(outside))
        });
        assert_eq!(seqs(drain(&mut rx_b)), vec![(5, 4)]);
        // Resuming with since replays what publish sent.
        let (late, mut rx_late) = ClientLink::new(4, 16);
        hub.subscribe(&late, Channel::District("a".into()), Some(1));
        assert_eq!(seqs(drain(&mut rx_late)), vec![(2, 1)]);
        let (late_b, mut rx_late_b) = ClientLink::new(5, 16);
        hub.subscribe(&late_b, Channel::District("b".into()), Some(1));
        assert_eq!(
            seqs(drain(&mut rx_late_b)),
            vec![(2, 1), (3, 2), (4, 3), (5, 4)]
        );
        // Fresh snapshots: the unit is in b only; u2 is in no district.
        let snap = |channel: &str| {
            let (link, mut rx) = ClientLink::new(9, 16);
            hub.subscribe(&link, Channel::District(channel.into()), None);
            let units: Vec<String> = drain(&mut rx)[0]["data"]["units"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["unit_id"].as_str().unwrap().to_string())
                .collect();
            hub.unregister(9, &[Channel::District(channel.into())].into());
            units
        };
        assert!(snap("a").is_empty());
        assert_eq!(snap("b"), vec!["u1".to_string()]);
    }

    #[test]
    fn event_frames_are_what_format_made() {
        for (seq, prev) in [
            (0u64, 0u64),
            (7, 3),
            (u64::MAX, u64::MAX - 1),
            (1_000_000, 999_999),
        ] {
            let frame = event_frame(r#""units""#, seq, prev, r#"{"a":1}"#);
            assert_eq!(
                frame.as_str(),
                format!(
                    r#"{{"op":"event","channel":"units","seq":{seq},"prev_seq":{prev},"event":{{"a":1}}}}"#
                )
            );
        }
    }

    #[test]
    fn the_log_payload_is_sent_as_is_only_for_unit_updates_on_public_channels() {
        let hub = Hub::new(100, HashSet::new());
        let (link, mut rx) = ClientLink::new(1, 16);
        hub.subscribe(&link, Channel::Units, None);
        hub.subscribe(&link, Channel::City, None);
        let _ = drain(&mut rx);
        // Payloads with a field this gateway does not know.
        for event in [
            ev(1, "a", EventBody::UnitUpdated(unit("u1", "a"))),
            ev(2, "a", EventBody::IncidentOpened(incident("i1", "a", None))),
        ] {
            let mut raw: Value = serde_json::to_value(&event).unwrap();
            raw["future_field"] = Value::from("x");
            assert!(hub.publish_with_json(event, Some(raw.to_string().into())));
        }
        let frames = drain(&mut rx);
        assert_eq!(frames.len(), 2);
        for f in &frames {
            let carried = f["event"].get("future_field").is_some();
            match f["channel"].as_str() {
                Some("units") => assert!(carried, "units uses the log's bytes"),
                Some("city") => assert!(!carried, "city re-serializes what it parsed"),
                other => panic!("unexpected channel {other:?}"),
            }
        }
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
        hub.subscribe(&link, Channel::City, None);
        for seq in 1..=5 {
            let id = format!("i{seq}");
            hub.publish(ev(
                seq,
                "a",
                EventBody::IncidentOpened(incident(&id, "a", None)),
            ));
        }
        assert!(link.closing().is_cancelled());
        assert_eq!(link.close_reason(), Some(CLOSE_SLOW));
        assert!(lock(&hub.state).channels.is_empty());
    }

    #[test]
    fn positions_coalesce_for_a_client_behind_and_keep_the_chain_exact() {
        let hub = Hub::new(100, HashSet::new());
        // Queue of 6: positions are held from 3 queued frames on.
        let (link, mut rx) = ClientLink::new(1, 6);
        hub.subscribe(&link, Channel::District("a".into()), None); // snapshot seq 0
        hub.publish(ev(1, "a", EventBody::UnitUpdated(unit("u1", "a"))));
        hub.publish(ev(2, "a", EventBody::UnitUpdated(unit("u2", "a"))));
        for round in 0..50 {
            let seq = 3 + 2 * round;
            hub.publish(ev(seq, "a", EventBody::UnitUpdated(unit("u1", "a"))));
            hub.publish(ev(seq + 1, "a", EventBody::UnitUpdated(unit("u2", "a"))));
        }
        assert!(!link.closing().is_cancelled(), "positions must not close");
        // Held: latest u1 (101) and u2 (102). An alert sends them out first.
        hub.publish(ev(103, "a", EventBody::AlertRaised(alert("x", "a"))));
        assert!(!link.closing().is_cancelled());
        let frames = drain(&mut rx);
        let chain: Vec<(u64, u64)> = frames[1..]
            .iter()
            .map(|f| (f["seq"].as_u64().unwrap(), f["prev_seq"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            chain,
            vec![(1, 0), (2, 1), (101, 2), (102, 101), (103, 102)]
        );
        assert_eq!(frames[3]["event"]["data"]["unit_id"], "u1");
        assert_eq!(frames[4]["event"]["data"]["unit_id"], "u2");
    }

    #[test]
    fn held_positions_go_out_when_the_writer_has_drained() {
        let hub = Hub::new(100, HashSet::new());
        let (link, mut rx) = ClientLink::new(1, 8);
        hub.subscribe(&link, Channel::Units, None);
        for seq in 1..=40 {
            let unit_id = format!("u{}", seq % 10);
            hub.publish(ev(seq, "a", EventBody::UnitUpdated(unit(&unit_id, "a"))));
        }
        let mut got = drain(&mut rx);
        assert!(link.wants_flush());
        // Each flush refills the queue up to half; the writer calls it again.
        while link.wants_flush() {
            hub.flush_held(&link);
            got.extend(drain(&mut rx));
        }
        let events = &got[1..];
        let mut prev = 0;
        for f in events {
            assert_eq!(f["prev_seq"].as_u64(), Some(prev));
            prev = f["seq"].as_u64().unwrap();
        }
        // Every unit's latest position arrived.
        assert_eq!(prev, 40);
        let latest: HashSet<u64> = events[events.len() - 10..]
            .iter()
            .map(|f| f["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(latest, (31..=40).collect());
        assert!(events.len() < 40, "nothing was coalesced");
        assert!(!link.closing().is_cancelled());
    }

    #[test]
    fn incidents_that_do_not_fit_close_even_with_positions_held() {
        let hub = Hub::new(100, HashSet::new());
        let (link, _rx) = ClientLink::new(1, 4);
        hub.subscribe(&link, Channel::District("a".into()), None);
        for seq in 1..=20 {
            hub.publish(ev(seq, "a", EventBody::UnitUpdated(unit("u1", "a"))));
        }
        assert!(!link.closing().is_cancelled());
        for seq in 21..=25 {
            let id = format!("i{seq}");
            hub.publish(ev(
                seq,
                "a",
                EventBody::IncidentOpened(incident(&id, "a", None)),
            ));
        }
        assert_eq!(link.close_reason(), Some(CLOSE_SLOW));
    }

    #[test]
    fn one_frame_is_shared_by_subscribers_with_the_same_prev_seq() {
        let hub = Hub::new(100, HashSet::new());
        let mut rxs = Vec::new();
        for id in 0..10 {
            let (link, rx) = ClientLink::new(id, 8);
            hub.subscribe(&link, Channel::City, None);
            rxs.push((link, rx));
        }
        hub.publish(ev(1, "a", EventBody::AlertRaised(alert("x", "a"))));
        let frames: Vec<Utf8Bytes> = rxs
            .iter_mut()
            .map(|(_, rx)| {
                rx.try_recv().unwrap(); // snapshot
                rx.try_recv().unwrap()
            })
            .collect();
        let first = frames[0].as_str().as_ptr();
        assert!(frames.iter().all(|f| f.as_str().as_ptr() == first));
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
