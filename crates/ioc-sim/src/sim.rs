//! The simulated day: a discrete-event loop over a time-ordered queue.
//!
//! Everything the city does is a scheduled event (a ping, a call, a unit
//! arriving somewhere); [`Simulator::advance`] pops every event due up to the
//! given time, in time order, and returns the messages they produce.
//! [`Simulator::observe`] feeds back the processor's decisions (assignments,
//! closures), which schedule more events.
//!
//! A unit's life, as its crew terminal reports it:
//!
//! ```text
//! available (idle at station or patrolling)
//!   └─ dispatch.assigned ─▶ dispatched ─(turnout)─▶ en_route ─(arrival)─▶ on_scene
//!        ─(service time)─▶ returning ─(back at station)─▶ available
//! ```
//!
//! When the last unit of an incident leaves the scene the simulator sends a
//! `close_incident` command (issued by `sim`). An unassignment or a closure
//! by someone else sends the unit home early.
//!
//! The simulator also plays the dispatcher for what the processor does not
//! auto-assign (priorities 2-4). A `dispatch.recommended` with
//! `auto_assign == false` becomes a plan, acted on
//! [`SimConfig::dispatch_delay_s`] of sim time later: for each entry of
//! `needs`, `assign` commands (issued by `sim-dispatcher`) for the first
//! candidates of that kind it believes free, minus the units of that kind
//! assigned to the incident since the recommendation. A unit is believed
//! busy while it is assigned per `dispatch.assigned` (simulated units: until
//! they leave the incident; others: until unassigned or the incident
//! closes) or while an `assign` the simulator sent for it is neither
//! confirmed nor rejected (`command.rejected`), for at most
//! [`PENDING_ASSIGN_MS`]. A later recommendation for the incident replaces
//! the plan; a closure or complete assignment in the meantime cancels it.
//!
//! Determinism: randomness comes from separate ChaCha streams of one seed
//! (layout, arrivals, fleet, invalid messages), so the calls of a day do not
//! depend on what the processor decided, and the same seed with the same
//! sequence of `advance` / `observe` calls gives byte-identical output.
//! Stale events (a unit re-planned after an event was queued) are skipped by
//! a per-unit generation counter rather than removed from the heap.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use ioc_model::{
    Category, Command, CommandOp, DispatchRecommendation, EmergencyCall, EventBody, IncidentReport,
    IncidentStatus, IncidentView, InputKind, Line, Location, OutputEvent, PositionPing, Timestamp,
    UnitKind, UnitStatus, UnitStatusReport,
};
use ioc_router::Zones;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::land::{Land, LatLon};
use crate::motion::Motion;
use crate::traffic;
use crate::{Outgoing, SimConfig, MIN_PING_INTERVAL_S};

/// Who the simulator is when it issues commands.
pub const SIM_ISSUER: &str = "sim";

/// Who the simulated dispatcher is when it assigns units.
pub const SIM_DISPATCHER: &str = "sim-dispatcher";

/// How long an `assign` the simulated dispatcher sent keeps its unit
/// reserved when neither `dispatch.assigned` nor `command.rejected` comes
/// back (a lost message): after that the unit counts as free again.
pub const PENDING_ASSIGN_MS: i64 = 5 * 60_000;

/// Shortest time a unit spends on scene, even if it arrives after the
/// incident's service time has run out (it still has to check in).
const MIN_ON_SCENE_MS: i64 = 4 * 60_000;

/// Radius of police patrols around their post, and of the short moves other
/// units make (fuel, lunch, a training drive).
const POLICE_PATROL_M: f64 = 2_500.0;
const OTHER_MOVE_M: f64 = 800.0;

/// Distance within which a repeat call is placed from the first one; below
/// the processor's default correlation radius (300 m).
const REPEAT_CALL_MAX_M: f64 = 180.0;

/// RNG stream ids: one per concern, so that one does not shift another.
const STREAM_LAYOUT: u64 = 1;
const STREAM_ARRIVALS: u64 = 2;
const STREAM_FLEET: u64 = 3;
const STREAM_INVALID: u64 = 4;

/// A fixed post units start from and return to.
#[derive(Debug, Clone)]
struct Station {
    id: String,
    at: LatLon,
    zone: String,
}

/// What a unit is doing, from the simulator's side.
#[derive(Debug, Clone, PartialEq)]
enum Task {
    /// Available; `home` is true when parked at or driving to its station.
    Idle {
        home: bool,
    },
    /// Assigned, crew getting to the vehicle.
    Turnout {
        incident: String,
    },
    EnRoute {
        incident: String,
    },
    OnScene {
        incident: String,
    },
    Returning,
}

impl Task {
    fn incident(&self) -> Option<&str> {
        match self {
            Task::Turnout { incident }
            | Task::EnRoute { incident }
            | Task::OnScene { incident } => Some(incident),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Unit {
    id: String,
    kind: UnitKind,
    station: usize,
    task: Task,
    motion: Motion,
    /// Bumped whenever the unit's plan changes; queued events carry the
    /// generation they were made for and are ignored if it moved on.
    generation: u64,
    /// When the next position ping is due.
    next_ping_ms: i64,
    /// Last position sent, as sent. A GPS receiver holds its last fix when
    /// it loses the sky (a bridge, a tunnel); we do the same in the rare
    /// case a planned ping would fall in a sliver between two zones that
    /// route planning did not catch, so no ping is ever off land.
    last_sent: LatLon,
}

/// An incident as the processor announced it, plus what the simulator did
/// about it.
#[derive(Debug, Clone)]
struct KnownIncident {
    location: LatLon,
    category: Category,
    opened_at_ms: i64,
    /// Units the processor assigned to it.
    units: BTreeSet<usize>,
    /// When the work on scene is done, set at the first arrival.
    service_until_ms: Option<i64>,
    closed: bool,
    close_sent: bool,
    /// What the simulated dispatcher will do about it, if anything.
    plan: Option<DispatchPlan>,
}

/// A recommendation the simulated dispatcher will act on.
#[derive(Debug, Clone)]
struct DispatchPlan {
    /// The recommendation as received: a replay of it changes nothing.
    rec: DispatchRecommendation,
    /// Matches the `Due::Dispatch` scheduled for it; a newer plan for the
    /// same incident makes the older event stale.
    generation: u64,
    /// Units assigned to the incident since the recommendation, with their
    /// kind: they fill its `needs`.
    assigned_since: BTreeMap<String, UnitKind>,
}

/// An `assign` the simulated dispatcher sent and has not seen the outcome of.
#[derive(Debug, Clone)]
struct PendingAssign {
    command_id: String,
    incident_id: String,
    sent_ms: i64,
}

/// A call still to come for an incident that already has one.
#[derive(Debug, Clone)]
struct RepeatCall {
    line: Line,
    category: Category,
    location: LatLon,
    caller: String,
}

#[derive(Debug, Clone)]
enum Due {
    Ping(usize),
    NewCall,
    RepeatCall(Box<RepeatCall>),
    NewReport,
    Invalid,
    /// A message decided in `observe`, sent by the next `advance`.
    Emit(Box<Outgoing>),
    /// A status report decided outside `advance` (an acknowledgment).
    Status {
        unit: usize,
        generation: u64,
        status: UnitStatus,
    },
    Depart {
        unit: usize,
        generation: u64,
    },
    Arrive {
        unit: usize,
        generation: u64,
    },
    Release {
        unit: usize,
        generation: u64,
    },
    /// The simulated dispatcher acts on the incident's plan.
    Dispatch {
        incident: String,
        generation: u64,
    },
    IdleMove {
        unit: usize,
        generation: u64,
    },
}

#[derive(Debug)]
struct Scheduled {
    at_ms: i64,
    /// Insertion order: ties at the same millisecond run first-in first-out.
    seq: u64,
    due: Due,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at_ms, self.seq).cmp(&(other.at_ms, other.seq))
    }
}

/// A deterministic simulator of a Da Nang day. See the module docs.
#[derive(Debug)]
pub struct Simulator {
    config: SimConfig,
    land: Land,
    start_ms: i64,
    /// Time of the last `advance` (or the start): `observe` acts at this time.
    now_ms: i64,
    started: bool,
    ping_interval_ms: i64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    next_seq: u64,
    stations: Vec<Station>,
    units: Vec<Unit>,
    unit_by_id: HashMap<String, usize>,
    /// Incidents the processor told us about, by its incident id. Ordered so
    /// that iteration never depends on hashing.
    incidents: BTreeMap<String, KnownIncident>,
    call_to_scene: BTreeMap<String, f64>,
    /// Sim time between a recommendation and the dispatcher's assignments;
    /// `None`: the simulated dispatcher is off.
    dispatch_delay_ms: Option<i64>,
    next_plan: u64,
    /// Assignments sent by the simulated dispatcher, by unit id.
    pending_assign: BTreeMap<String, PendingAssign>,
    /// Units the simulator does not drive that the processor assigned, with
    /// their incident: they are not free for the dispatcher.
    foreign_busy: BTreeMap<String, String>,
    arrivals_rng: ChaCha8Rng,
    fleet_rng: ChaCha8Rng,
    invalid_rng: ChaCha8Rng,
    calls_sent: u64,
    reports_sent: u64,
    commands_sent: u64,
    invalid_sent: u64,
}

fn rng_stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// JSON bytes of a contract message. Serializing these plain structs cannot
/// fail (string keys, no maps with non-string keys).
fn to_json<T: Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).expect("contract messages always serialize")
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl Simulator {
    /// Lays out stations over the land zones and puts every unit at its
    /// station. Settings out of range are clamped (see [`SimConfig::validate`]).
    ///
    /// Panics if `zones` has no land zone.
    pub fn new(config: SimConfig, zones: &Zones, start: Timestamp) -> Self {
        let land = Land::new(zones);
        let start_ms = start.unix_millis();
        let ping_interval_ms = (config.ping_interval_s.max(MIN_PING_INTERVAL_S) * 1000.0)
            .round()
            .clamp(100.0, 86_400_000.0) as i64;
        let delay = config.dispatch_delay_s;
        let dispatch_delay_ms = (delay.is_finite() && delay > 0.0)
            .then(|| (delay * 1000.0).round().clamp(1.0, 86_400_000.0) as i64);
        let mut layout_rng = rng_stream(config.seed, STREAM_LAYOUT);
        let mut stations = Vec::new();
        let mut units = Vec::new();
        let fleet = [
            (UnitKind::Ambulance, config.ambulances),
            (UnitKind::FireEngine, config.fire_engines),
            (UnitKind::Police, config.police),
            (UnitKind::Rescue, config.rescue),
        ];
        for (kind, count) in fleet {
            let first_station = stations.len();
            let per = traffic::units_per_station(kind);
            let n_stations = count.div_ceil(per) as usize;
            Self::place_stations(&land, kind, n_stations, &mut stations, &mut layout_rng);
            for n in 0..count as usize {
                let station = first_station + n % n_stations;
                units.push(Unit {
                    id: format!("{}-{:02}", traffic::kind_prefix(kind), n + 1),
                    kind,
                    station,
                    task: Task::Idle { home: true },
                    motion: Motion::parked(stations[station].at, start_ms),
                    generation: 0,
                    next_ping_ms: start_ms,
                    last_sent: stations[station].at,
                });
            }
        }
        let unit_by_id = units
            .iter()
            .enumerate()
            .map(|(i, u)| (u.id.clone(), i))
            .collect();
        Self {
            arrivals_rng: rng_stream(config.seed, STREAM_ARRIVALS),
            fleet_rng: rng_stream(config.seed, STREAM_FLEET),
            invalid_rng: rng_stream(config.seed, STREAM_INVALID),
            config,
            land,
            start_ms,
            now_ms: start_ms,
            started: false,
            ping_interval_ms,
            queue: BinaryHeap::new(),
            next_seq: 0,
            stations,
            units,
            unit_by_id,
            incidents: BTreeMap::new(),
            call_to_scene: BTreeMap::new(),
            dispatch_delay_ms,
            next_plan: 0,
            pending_assign: BTreeMap::new(),
            foreign_busy: BTreeMap::new(),
            calls_sent: 0,
            reports_sent: 0,
            commands_sent: 0,
            invalid_sent: 0,
        }
    }

    /// Stations of one kind: the first ones one per zone (busiest zones
    /// first) so every district is covered, the rest weighted toward the
    /// dense districts, kept at least ~1.2 km apart when possible.
    fn place_stations(
        land: &Land,
        kind: UnitKind,
        n: usize,
        stations: &mut Vec<Station>,
        rng: &mut ChaCha8Rng,
    ) {
        let mut by_weight: Vec<usize> = (0..land.zones.len()).collect();
        by_weight.sort_by(|&a, &b| {
            land.zones[b]
                .weight
                .total_cmp(&land.zones[a].weight)
                .then(a.cmp(&b))
        });
        let first = stations.len();
        for k in 0..n {
            let mut best = None;
            for attempt in 0..40 {
                let p = if k < by_weight.len() {
                    land.sample_in_zone_index(by_weight[k], rng)
                } else {
                    land.sample_point(rng)
                };
                let clear = stations[first..]
                    .iter()
                    .all(|s: &Station| s.at.distance_m(p) > 1_200.0);
                if clear || attempt == 39 {
                    best = Some(p);
                    break;
                }
            }
            let at = best.unwrap_or_else(|| land.sample_point(rng));
            let zone = land.zone_id_at(at).unwrap_or_default().to_string();
            stations.push(Station {
                id: format!("st-{}-{:02}", traffic::kind_prefix(kind), k + 1),
                at,
                zone,
            });
        }
    }

    /// Sim time of the last `advance` (the start time before any).
    pub fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.now_ms)
    }

    /// Sim time the day started at.
    pub fn start_time(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.start_ms)
    }

    /// Unit ids, in registration order.
    pub fn unit_ids(&self) -> impl Iterator<Item = &str> {
        self.units.iter().map(|u| u.id.as_str())
    }

    /// Unit registrations (`ioc.units`, status available, with station and
    /// home district) and first positions, all at the start time. Also
    /// schedules the day. Calling it twice returns nothing the second time.
    pub fn start(&mut self) -> Vec<Outgoing> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        let t = self.start_ms;
        let mut out = Vec::with_capacity(self.units.len() * 2);
        for u in 0..self.units.len() {
            self.report_status(u, UnitStatus::Available, t, &mut out);
        }
        let n = self.units.len() as i64;
        for u in 0..self.units.len() {
            self.ping(u, t, &mut out);
            // Stagger the fleet over one interval so pings do not arrive in
            // bursts of the whole fleet at once.
            let phase = self.ping_interval_ms * (u as i64 + 1) / (n + 1);
            self.units[u].next_ping_ms = t + phase.max(1);
            self.schedule(t + phase.max(1), Due::Ping(u));
            let first_move_s = if self.units[u].kind == UnitKind::Police {
                self.fleet_rng.gen_range(10.0..300.0)
            } else {
                self.fleet_rng.gen_range(600.0..5_400.0)
            };
            self.schedule(
                t + (first_move_s * 1000.0) as i64,
                Due::IdleMove {
                    unit: u,
                    generation: 0,
                },
            );
        }
        let primary_rate = self.config.calls_per_hour / (1.0 + traffic::EXPECTED_REPEATS);
        if let Some(at) = traffic::next_arrival(&mut self.arrivals_rng, t, primary_rate) {
            self.schedule(at, Due::NewCall);
        }
        let report_rate = self.config.incident_reports_per_hour;
        if let Some(at) = traffic::next_arrival(&mut self.arrivals_rng, t, report_rate) {
            self.schedule(at, Due::NewReport);
        }
        let invalid_rate = self.config.invalid_per_hour;
        if let Some(at) = traffic::next_uniform_arrival(&mut self.invalid_rng, t, invalid_rate) {
            self.schedule(at, Due::Invalid);
        }
        out
    }

    /// Everything due after the previous call and up to `now` (sim time),
    /// in time order. A `now` earlier than the previous one returns nothing.
    pub fn advance(&mut self, now: Timestamp) -> Vec<Outgoing> {
        let mut out = if self.started {
            Vec::new()
        } else {
            self.start()
        };
        let now_ms = now.unix_millis();
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at_ms > now_ms {
                break;
            }
            let Some(Reverse(item)) = self.queue.pop() else {
                break;
            };
            self.handle(item.at_ms, item.due, &mut out);
        }
        self.now_ms = self.now_ms.max(now_ms);
        out
    }

    /// Reacts to the processor's output: remembers incidents, sends assigned
    /// units out, brings units home when their incident is closed or they
    /// are unassigned, and plans the simulated dispatcher's assignments for
    /// recommendations that were not auto-assigned (see the module docs).
    /// Everything else is ignored. Idempotent for replayed events. Acts at
    /// the time of the last `advance`; the resulting messages come out of
    /// the next one (the dispatcher's `dispatch_delay_s` later).
    pub fn observe(&mut self, ev: &OutputEvent) {
        match &ev.body {
            EventBody::IncidentOpened(view) | EventBody::IncidentUpdated(view) => {
                self.learn_incident(view);
                if view.status == IncidentStatus::Closed {
                    self.incident_closed(&view.incident_id);
                }
            }
            EventBody::IncidentClosed(view) => {
                self.learn_incident(view);
                self.incident_closed(&view.incident_id);
            }
            // A swap suggestion is advice about units already on the way,
            // not a new plan for the incident: the simulated dispatcher
            // leaves it to humans and keeps its pending plan.
            EventBody::DispatchRecommended(rec) if rec.swap.is_some() => {}
            EventBody::DispatchRecommended(rec) => self.recommended(rec),
            EventBody::DispatchAssigned(a) => {
                self.pending_assign.remove(&a.unit_id);
                if !self.unit_by_id.contains_key(&a.unit_id) {
                    self.foreign_busy
                        .insert(a.unit_id.clone(), a.incident_id.clone());
                }
                if let Some(plan) = self
                    .incidents
                    .get_mut(&a.incident_id)
                    .and_then(|i| i.plan.as_mut())
                {
                    plan.assigned_since.insert(a.unit_id.clone(), a.kind);
                }
                self.assigned(&a.incident_id, &a.unit_id);
            }
            EventBody::CommandRejected(r) => {
                self.pending_assign
                    .retain(|_, p| p.command_id != r.command_id);
            }
            EventBody::DispatchUnassigned(a) => {
                if self.foreign_busy.get(&a.unit_id) == Some(&a.incident_id) {
                    self.foreign_busy.remove(&a.unit_id);
                }
                if let Some(plan) = self
                    .incidents
                    .get_mut(&a.incident_id)
                    .and_then(|i| i.plan.as_mut())
                {
                    plan.assigned_since.remove(&a.unit_id);
                }
                if let Some(&u) = self.unit_by_id.get(&a.unit_id) {
                    if self.units[u].task.incident() == Some(a.incident_id.as_str()) {
                        if let Some(inc) = self.incidents.get_mut(&a.incident_id) {
                            inc.units.remove(&u);
                        }
                        let t = self.now_ms;
                        self.go_home(u, t);
                        self.queue_status(u, t);
                        self.maybe_close(&a.incident_id, t, None);
                    }
                }
            }
            _ => {}
        }
    }

    /// Call-to-scene time (seconds) of every incident a unit reached so far,
    /// ordered by incident id.
    pub fn call_to_scene_s(&self) -> Vec<f64> {
        self.call_to_scene.values().copied().collect()
    }

    /// The same, with the processor's incident ids.
    pub fn call_to_scene_by_incident(&self) -> &BTreeMap<String, f64> {
        &self.call_to_scene
    }

    // ---- internals -------------------------------------------------------

    fn schedule(&mut self, at_ms: i64, due: Due) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Scheduled { at_ms, seq, due }));
    }

    fn handle(&mut self, t: i64, due: Due, out: &mut Vec<Outgoing>) {
        match due {
            Due::Ping(u) => {
                self.ping(u, t, out);
                let next = t + self.ping_interval_ms;
                self.units[u].next_ping_ms = next;
                self.schedule(next, Due::Ping(u));
            }
            Due::NewCall => {
                self.new_call(t, out);
                let rate = self.config.calls_per_hour / (1.0 + traffic::EXPECTED_REPEATS);
                if let Some(at) = traffic::next_arrival(&mut self.arrivals_rng, t, rate) {
                    self.schedule(at, Due::NewCall);
                }
            }
            Due::RepeatCall(call) => {
                let caller = call.caller.clone();
                self.emit_call(t, call.line, call.category, call.location, caller, out);
            }
            Due::NewReport => {
                self.new_report(t, out);
                let rate = self.config.incident_reports_per_hour;
                if let Some(at) = traffic::next_arrival(&mut self.arrivals_rng, t, rate) {
                    self.schedule(at, Due::NewReport);
                }
            }
            Due::Invalid => {
                self.invalid(t, out);
                let rate = self.config.invalid_per_hour;
                if let Some(at) = traffic::next_uniform_arrival(&mut self.invalid_rng, t, rate) {
                    self.schedule(at, Due::Invalid);
                }
            }
            Due::Emit(outgoing) => out.push(*outgoing),
            Due::Status {
                unit,
                generation,
                status,
            } => {
                if self.units[unit].generation == generation {
                    self.report_status(unit, status, t, out);
                }
            }
            Due::Depart { unit, generation } => {
                if self.units[unit].generation == generation {
                    self.depart(unit, t, out);
                }
            }
            Due::Arrive { unit, generation } => {
                if self.units[unit].generation == generation {
                    self.arrive(unit, t, out);
                }
            }
            Due::Release { unit, generation } => {
                if self.units[unit].generation == generation {
                    if let Task::OnScene { incident } = self.units[unit].task.clone() {
                        self.go_home(unit, t);
                        self.flush_status(unit, t, out);
                        self.maybe_close(&incident, t, Some(out));
                    }
                }
            }
            Due::IdleMove { unit, generation } => {
                if self.units[unit].generation == generation {
                    self.idle_move(unit, t);
                }
            }
            Due::Dispatch {
                incident,
                generation,
            } => self.dispatch(&incident, generation, t, out),
        }
    }

    fn ping(&mut self, u: usize, t: i64, out: &mut Vec<Outgoing>) {
        let fix = self.units[u].motion.fix_at(t);
        let mut at = LatLon::new(round6(fix.at.lat), round6(fix.at.lon));
        if !self.land.on_land(at) {
            at = self.units[u].last_sent;
        }
        self.units[u].last_sent = at;
        let unit = &self.units[u];
        let moving = fix.speed_kmh > 0.0;
        let heading = round1(fix.heading_deg);
        let msg = PositionPing {
            unit_id: unit.id.clone(),
            ts: Timestamp::from_unix_millis(t),
            lat: at.lat,
            lon: at.lon,
            speed_kmh: Some(round1(fix.speed_kmh)),
            heading_deg: moving.then_some(if heading >= 360.0 { 0.0 } else { heading }),
        };
        out.push(Outgoing {
            kind: InputKind::Position,
            key: unit.id.clone(),
            payload: to_json(&msg),
        });
    }

    fn report_status(&self, u: usize, status: UnitStatus, t: i64, out: &mut Vec<Outgoing>) {
        let unit = &self.units[u];
        let station = &self.stations[unit.station];
        let msg = UnitStatusReport {
            unit_id: unit.id.clone(),
            ts: Timestamp::from_unix_millis(t),
            kind: unit.kind,
            status,
            station: Some(station.id.clone()),
            home_district: (!station.zone.is_empty()).then(|| station.zone.clone()),
        };
        out.push(Outgoing {
            kind: InputKind::Unit,
            key: unit.id.clone(),
            payload: to_json(&msg),
        });
    }

    /// Status a task implies, reported right away by the caller.
    fn flush_status(&self, u: usize, t: i64, out: &mut Vec<Outgoing>) {
        let status = match self.units[u].task {
            Task::Idle { .. } => UnitStatus::Available,
            Task::Turnout { .. } => UnitStatus::Dispatched,
            Task::EnRoute { .. } => UnitStatus::EnRoute,
            Task::OnScene { .. } => UnitStatus::OnScene,
            Task::Returning => UnitStatus::Returning,
        };
        self.report_status(u, status, t, out);
    }

    /// Plans a drive from where the unit is at `t` to `to`, checks that every
    /// ping it will send on the way is on land (re-planning with slightly
    /// different speeds if one falls in a sliver of water), and installs it.
    fn drive(&mut self, u: usize, to: LatLon, t: i64, emergency: bool, patrol: bool) -> i64 {
        let unit = &self.units[u];
        let from = unit.motion.fix_at(t).at;
        let leg_start = unit.motion.leg_start_at(t);
        let (lo, hi) = traffic::speed_range_kmh(unit.kind, emergency, patrol);
        let first_ping = unit.next_ping_ms.max(t);
        let mut chosen = None;
        for _ in 0..10 {
            let points = self
                .land
                .route(from, to, &mut self.fleet_rng)
                .or_else(|| {
                    let mut r = self.land.route(leg_start, to, &mut self.fleet_rng)?;
                    r.insert(0, from);
                    Some(r)
                })
                .unwrap_or_else(|| vec![from, to]);
            let speeds: Vec<f64> = (1..points.len())
                .map(|_| self.fleet_rng.gen_range(lo..hi))
                .collect();
            let motion = Motion::drive(points, t, speeds);
            let ok = self.pings_on_land(&motion, first_ping);
            chosen = Some(motion);
            if ok {
                break;
            }
            tracing::debug!(
                unit = %self.units[u].id,
                t,
                "planned drive puts a ping off land; re-planning"
            );
        }
        let motion = chosen.unwrap_or_else(|| Motion::parked(from, t));
        let end = motion.end_ms();
        let unit = &mut self.units[u];
        unit.motion = motion;
        end
    }

    fn pings_on_land(&self, motion: &Motion, first_ping: i64) -> bool {
        let mut p = first_ping;
        while p <= motion.end_ms() {
            // Checked as it will be sent: rounded to the wire's 6 decimals.
            let at = motion.fix_at(p).at;
            if !self
                .land
                .on_land(LatLon::new(round6(at.lat), round6(at.lon)))
            {
                return false;
            }
            p += self.ping_interval_ms;
        }
        true
    }

    fn new_call(&mut self, t: i64, out: &mut Vec<Outgoing>) {
        let rng = &mut self.arrivals_rng;
        let location = self.land.sample_point(rng);
        let (line, category) = traffic::call_kind(rng);
        let caller = traffic::phone_number(rng);
        // Repeat callers and other witnesses of the same incident.
        let extra = match rng.gen_range(0..100) {
            0..=4 => 2,
            5..=24 => 1,
            _ => 0,
        };
        let mut delays: Vec<i64> = (0..extra).map(|_| rng.gen_range(30_000..300_000)).collect();
        delays.sort_unstable();
        for delay in delays {
            let rng = &mut self.arrivals_rng;
            let r = rng.gen_range(20.0..REPEAT_CALL_MAX_M);
            let a = rng.gen::<f64>() * std::f64::consts::TAU;
            let near = location.offset_m(r * a.cos(), r * a.sin());
            let near = if self.land.on_land(near) {
                near
            } else {
                location
            };
            let caller = if rng.gen_bool(0.5) {
                caller.clone()
            } else {
                traffic::phone_number(rng)
            };
            let repeat = RepeatCall {
                line,
                category,
                location: near,
                caller,
            };
            self.schedule(t + delay, Due::RepeatCall(Box::new(repeat)));
        }
        self.emit_call(t, line, category, location, caller, out);
    }

    fn emit_call(
        &mut self,
        t: i64,
        line: Line,
        category: Category,
        location: LatLon,
        caller: String,
        out: &mut Vec<Outgoing>,
    ) {
        self.calls_sent += 1;
        let call_id = format!("sim-call-{:06}", self.calls_sent);
        let rng = &mut self.arrivals_rng;
        let accuracy = rng.gen_range(8.0..120.0_f64).round();
        let msg = EmergencyCall {
            call_id: call_id.clone(),
            received_at: Timestamp::from_unix_millis(t),
            line,
            location: Location {
                lat: round6(location.lat),
                lon: round6(location.lon),
                accuracy_m: Some(accuracy),
            },
            category,
            caller: Some(caller),
            note: traffic::call_note(category, rng),
        };
        out.push(Outgoing {
            kind: InputKind::Call,
            key: call_id,
            payload: to_json(&msg),
        });
    }

    fn new_report(&mut self, t: i64, out: &mut Vec<Outgoing>) {
        self.reports_sent += 1;
        let incident_id = format!("sim-inc-{:06}", self.reports_sent);
        let rng = &mut self.arrivals_rng;
        let location = self.land.sample_point(rng);
        let (source, category) = traffic::report_kind(rng);
        let msg = IncidentReport {
            incident_id: incident_id.clone(),
            reported_at: Timestamp::from_unix_millis(t),
            source,
            category,
            priority: traffic::priority(rng),
            location: Location {
                lat: round6(location.lat),
                lon: round6(location.lon),
                accuracy_m: None,
            },
            description: Some(traffic::report_description(source, category)),
        };
        out.push(Outgoing {
            kind: InputKind::Incident,
            key: incident_id,
            payload: to_json(&msg),
        });
    }

    /// A message the processor must dead-letter: malformed JSON, a latitude
    /// out of range, or an unknown enum value.
    fn invalid(&mut self, t: i64, out: &mut Vec<Outgoing>) {
        self.invalid_sent += 1;
        let key = format!("sim-bad-{:06}", self.invalid_sent);
        let ts = Timestamp::from_unix_millis(t).to_rfc3339();
        let rng = &mut self.invalid_rng;
        let (kind, payload) = match rng.gen_range(0..4) {
            0 => (
                InputKind::Call,
                // Truncated mid-object, as a crashed producer would leave it.
                format!(r#"{{"call_id":"{key}","received_at":"{ts}","line":"115","loca"#),
            ),
            1 => (
                InputKind::Position,
                format!(
                    r#"{{"unit_id":"{key}","ts":"{ts}","lat":{:.4},"lon":108.2}}"#,
                    rng.gen_range(91.0..180.0)
                ),
            ),
            2 => (
                InputKind::Unit,
                format!(r#"{{"unit_id":"{key}","ts":"{ts}","kind":"tank","status":"available"}}"#),
            ),
            _ => (
                InputKind::Call,
                format!(
                    r#"{{"call_id":"{key}","received_at":"{ts}","line":"116","location":{{"lat":16.06,"lon":108.22}},"category":"medical"}}"#
                ),
            ),
        };
        out.push(Outgoing {
            kind,
            key,
            payload: payload.into_bytes(),
        });
    }

    fn learn_incident(&mut self, view: &IncidentView) {
        let location = LatLon::new(view.location.lat, view.location.lon);
        let entry = self
            .incidents
            .entry(view.incident_id.clone())
            .or_insert_with(|| KnownIncident {
                location,
                category: view.category,
                opened_at_ms: view.opened_at.unix_millis(),
                units: BTreeSet::new(),
                service_until_ms: None,
                closed: false,
                close_sent: false,
                plan: None,
            });
        entry.location = location;
        entry.category = view.category;
        entry.opened_at_ms = view.opened_at.unix_millis();
    }

    fn incident_closed(&mut self, incident_id: &str) {
        let Some(inc) = self.incidents.get_mut(incident_id) else {
            return;
        };
        if inc.closed {
            return;
        }
        inc.closed = true;
        inc.plan = None;
        self.foreign_busy.retain(|_, i| i != incident_id);
        self.pending_assign
            .retain(|_, p| p.incident_id != incident_id);
        let units: Vec<usize> = inc.units.iter().copied().collect();
        let t = self.now_ms;
        for u in units {
            if self.units[u].task.incident() == Some(incident_id) {
                self.go_home(u, t);
                self.queue_status(u, t);
            }
        }
    }

    fn assigned(&mut self, incident_id: &str, unit_id: &str) {
        let Some(&u) = self.unit_by_id.get(unit_id) else {
            return;
        };
        let Some(inc) = self.incidents.get_mut(incident_id) else {
            return;
        };
        if inc.closed || self.units[u].task.incident() == Some(incident_id) {
            return; // replayed event, or an assignment to a finished incident
        }
        inc.units.insert(u);
        let t = self.now_ms;
        // A unit pulled off another incident leaves it.
        if let Some(previous) = self.units[u].task.incident().map(str::to_string) {
            if let Some(prev) = self.incidents.get_mut(&previous) {
                prev.units.remove(&u);
            }
        }
        let unit = &mut self.units[u];
        let here = unit.motion.fix_at(t).at;
        unit.motion = Motion::parked(here, t);
        unit.task = Task::Turnout {
            incident: incident_id.to_string(),
        };
        unit.generation += 1;
        let generation = unit.generation;
        let turnout = traffic::turnout_s(unit.kind, &mut self.fleet_rng);
        self.queue_status(u, t);
        self.schedule(
            t + (turnout * 1000.0) as i64,
            Due::Depart {
                unit: u,
                generation,
            },
        );
    }

    /// Plans (or replaces, or cancels) the simulated dispatcher's answer to a
    /// recommendation for a known, open incident.
    fn recommended(&mut self, rec: &DispatchRecommendation) {
        let delay = self.dispatch_delay_ms;
        let Some(inc) = self.incidents.get_mut(&rec.incident_id) else {
            return;
        };
        if inc.closed {
            return;
        }
        if inc.plan.as_ref().is_some_and(|p| p.rec == *rec) {
            return; // replayed event
        }
        let wanted = !rec.auto_assign && rec.needs.iter().any(|n| n.count > 0);
        let Some(delay) = delay.filter(|_| wanted) else {
            // Auto-assigned (or nothing to do): a pending plan is obsolete.
            inc.plan = None;
            return;
        };
        self.next_plan += 1;
        let generation = self.next_plan;
        inc.plan = Some(DispatchPlan {
            rec: rec.clone(),
            generation,
            assigned_since: BTreeMap::new(),
        });
        let at = self.now_ms + delay;
        self.schedule(
            at,
            Due::Dispatch {
                incident: rec.incident_id.clone(),
                generation,
            },
        );
    }

    /// True when the dispatcher may assign the unit: not assigned to an
    /// incident as far as it knows, and not promised by one of its own
    /// recent `assign` commands.
    fn believed_free(&self, unit_id: &str, t: i64) -> bool {
        if self
            .pending_assign
            .get(unit_id)
            .is_some_and(|p| t - p.sent_ms < PENDING_ASSIGN_MS)
        {
            return false;
        }
        match self.unit_by_id.get(unit_id) {
            Some(&u) => self.units[u].task.incident().is_none(),
            None => !self.foreign_busy.contains_key(unit_id),
        }
    }

    /// The simulated dispatcher acts on a plan: `assign` commands for the
    /// best free candidates of each kind still needed.
    fn dispatch(&mut self, incident_id: &str, generation: u64, t: i64, out: &mut Vec<Outgoing>) {
        let Some(inc) = self.incidents.get_mut(incident_id) else {
            return;
        };
        if inc.closed || inc.plan.as_ref().map(|p| p.generation) != Some(generation) {
            return; // closed, or replaced by a newer recommendation
        }
        let Some(plan) = inc.plan.take() else {
            return;
        };
        let mut picks: Vec<String> = Vec::new();
        for need in &plan.rec.needs {
            let filled = plan
                .assigned_since
                .values()
                .filter(|&&k| k == need.kind)
                .count();
            let missing = (need.count as usize).saturating_sub(filled);
            let free: Vec<String> = plan
                .rec
                .candidates
                .iter()
                .filter(|c| c.kind == need.kind)
                .filter(|c| !picks.contains(&c.unit_id) && self.believed_free(&c.unit_id, t))
                .take(missing)
                .map(|c| c.unit_id.clone())
                .collect();
            picks.extend(free);
        }
        for unit_id in picks {
            self.commands_sent += 1;
            let command_id = format!("sim-cmd-{:06}", self.commands_sent);
            let msg = Command {
                command_id: command_id.clone(),
                ts: Timestamp::from_unix_millis(t),
                issued_by: SIM_DISPATCHER.to_string(),
                op: CommandOp::Assign {
                    incident_id: incident_id.to_string(),
                    unit_id: unit_id.clone(),
                },
            };
            out.push(Outgoing {
                kind: InputKind::Command,
                key: incident_id.to_string(),
                payload: to_json(&msg),
            });
            self.pending_assign.insert(
                unit_id,
                PendingAssign {
                    command_id,
                    incident_id: incident_id.to_string(),
                    sent_ms: t,
                },
            );
        }
    }

    /// Queues the status of the unit's current task for the next `advance`.
    fn queue_status(&mut self, u: usize, t: i64) {
        let status = match self.units[u].task {
            Task::Idle { .. } => UnitStatus::Available,
            Task::Turnout { .. } => UnitStatus::Dispatched,
            Task::EnRoute { .. } => UnitStatus::EnRoute,
            Task::OnScene { .. } => UnitStatus::OnScene,
            Task::Returning => UnitStatus::Returning,
        };
        let generation = self.units[u].generation;
        self.schedule(
            t,
            Due::Status {
                unit: u,
                generation,
                status,
            },
        );
    }

    fn depart(&mut self, u: usize, t: i64, out: &mut Vec<Outgoing>) {
        let Task::Turnout { incident } = self.units[u].task.clone() else {
            return;
        };
        let Some(target) = self
            .incidents
            .get(&incident)
            .filter(|i| !i.closed)
            .map(|i| i.location)
        else {
            self.go_home(u, t);
            self.flush_status(u, t, out);
            return;
        };
        let end = self.drive(u, target, t, true, false);
        let unit = &mut self.units[u];
        unit.task = Task::EnRoute { incident };
        unit.generation += 1;
        let generation = unit.generation;
        self.flush_status(u, t, out);
        self.schedule(
            end,
            Due::Arrive {
                unit: u,
                generation,
            },
        );
    }

    fn arrive(&mut self, u: usize, t: i64, out: &mut Vec<Outgoing>) {
        match self.units[u].task.clone() {
            Task::EnRoute { incident } => {
                let Some(inc) = self.incidents.get_mut(&incident) else {
                    self.go_home(u, t);
                    self.flush_status(u, t, out);
                    return;
                };
                if !self.call_to_scene.contains_key(&incident) {
                    let secs = (t - inc.opened_at_ms) as f64 / 1000.0;
                    self.call_to_scene.insert(incident.clone(), secs.max(0.0));
                }
                let service_until = match inc.service_until_ms {
                    Some(s) => s,
                    None => {
                        let s = t
                            + (traffic::service_time_s(inc.category, &mut self.fleet_rng) * 1000.0)
                                as i64;
                        inc.service_until_ms = Some(s);
                        s
                    }
                };
                let unit = &mut self.units[u];
                unit.task = Task::OnScene { incident };
                unit.generation += 1;
                let generation = unit.generation;
                self.flush_status(u, t, out);
                self.schedule(
                    service_until.max(t + MIN_ON_SCENE_MS),
                    Due::Release {
                        unit: u,
                        generation,
                    },
                );
            }
            Task::Returning => {
                let unit = &mut self.units[u];
                unit.task = Task::Idle { home: true };
                unit.generation += 1;
                self.flush_status(u, t, out);
                self.schedule_idle_move(u, t);
            }
            Task::Idle { .. } => self.schedule_idle_move(u, t),
            Task::Turnout { .. } | Task::OnScene { .. } => {}
        }
    }

    /// Leaves whatever it was doing and drives back to its station.
    fn go_home(&mut self, u: usize, t: i64) {
        let home = self.stations[self.units[u].station].at;
        let end = self.drive(u, home, t, false, false);
        let unit = &mut self.units[u];
        unit.task = Task::Returning;
        unit.generation += 1;
        let generation = unit.generation;
        self.schedule(
            end,
            Due::Arrive {
                unit: u,
                generation,
            },
        );
    }

    /// Sends `close_incident` once every unit of the incident has left it.
    fn maybe_close(&mut self, incident_id: &str, t: i64, out: Option<&mut Vec<Outgoing>>) {
        let Some(inc) = self.incidents.get(incident_id) else {
            return;
        };
        if inc.closed || inc.close_sent || inc.service_until_ms.is_none() {
            return;
        }
        let busy = inc
            .units
            .iter()
            .any(|&u| self.units[u].task.incident() == Some(incident_id));
        if busy {
            return;
        }
        if let Some(inc) = self.incidents.get_mut(incident_id) {
            inc.close_sent = true;
        }
        self.commands_sent += 1;
        let msg = Command {
            command_id: format!("sim-cmd-{:06}", self.commands_sent),
            ts: Timestamp::from_unix_millis(t),
            issued_by: SIM_ISSUER.to_string(),
            op: CommandOp::CloseIncident {
                incident_id: incident_id.to_string(),
            },
        };
        let outgoing = Outgoing {
            kind: InputKind::Command,
            key: incident_id.to_string(),
            payload: to_json(&msg),
        };
        match out {
            Some(out) => out.push(outgoing),
            // From `observe`: nothing to return to, so it waits in a
            // pending list flushed by the next `advance`.
            None => self.pending_close(outgoing, t),
        }
    }

    fn pending_close(&mut self, outgoing: Outgoing, t: i64) {
        self.schedule(t, Due::Emit(Box::new(outgoing)));
    }

    fn schedule_idle_move(&mut self, u: usize, t: i64) {
        let unit = &self.units[u];
        let home = matches!(unit.task, Task::Idle { home: true });
        let dwell_s = match (unit.kind, home) {
            (UnitKind::Police, _) => self.fleet_rng.gen_range(60.0..360.0),
            (_, true) => self.fleet_rng.gen_range(2_400.0..7_200.0),
            (_, false) => self.fleet_rng.gen_range(300.0..1_200.0),
        };
        let generation = unit.generation;
        self.schedule(
            t + (dwell_s * 1000.0) as i64,
            Due::IdleMove {
                unit: u,
                generation,
            },
        );
    }

    /// An available unit moves a little: police patrol around their post,
    /// others make a short trip and come back.
    fn idle_move(&mut self, u: usize, t: i64) {
        let Task::Idle { home } = self.units[u].task else {
            return;
        };
        let kind = self.units[u].kind;
        let station = self.stations[self.units[u].station].at;
        let go_home = match kind {
            UnitKind::Police => !home && self.fleet_rng.gen_bool(0.25),
            _ => !home,
        };
        let target = if go_home {
            station
        } else {
            let radius = if kind == UnitKind::Police {
                POLICE_PATROL_M
            } else {
                OTHER_MOVE_M
            };
            self.land.sample_near(station, radius, &mut self.fleet_rng)
        };
        let end = self.drive(u, target, t, false, kind == UnitKind::Police);
        let unit = &mut self.units[u];
        unit.task = Task::Idle { home: go_home };
        unit.generation += 1;
        let generation = unit.generation;
        self.schedule(
            end,
            Due::Arrive {
                unit: u,
                generation,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioc_model::{decode_input, DispatchAssignment, GeoPoint, Input, OutputEvent};
    use rand::SeedableRng;
    use std::path::Path;

    fn danang() -> Zones {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data/danang/districts.geojson"
        );
        Zones::load(Path::new(path)).unwrap()
    }

    fn start() -> Timestamp {
        // 07:00 in Da Nang.
        Timestamp::parse("2026-11-23T00:00:00Z").unwrap()
    }

    /// Runs `hours` of sim time in steps of `step_s`, returning every message
    /// with the `now` it was returned at.
    fn run(sim: &mut Simulator, hours: f64, step_s: i64) -> Vec<(Timestamp, Outgoing)> {
        let mut out: Vec<(Timestamp, Outgoing)> =
            sim.start().into_iter().map(|o| (sim.now(), o)).collect();
        let end = sim.now().plus_millis((hours * 3_600_000.0) as i64);
        let mut now = sim.now();
        while now < end {
            now = now.plus_millis(step_s * 1000).min(end);
            out.extend(sim.advance(now).into_iter().map(|o| (now, o)));
        }
        out
    }

    fn on_land(zones: &Zones, lat: f64, lon: f64) -> bool {
        zones.zone_at(lat, lon).is_some_and(|z| !z.offshore)
    }

    fn incident_view(id: &str, at: LatLon, category: Category, opened: Timestamp) -> IncidentView {
        IncidentView {
            incident_id: id.into(),
            status: IncidentStatus::Open,
            category,
            priority: 1,
            location: GeoPoint {
                lat: at.lat,
                lon: at.lon,
            },
            district: None,
            opened_at: opened,
            updated_at: opened,
            source: "call:115".into(),
            call_count: 1,
            caller: None,
            line: None,
            description: None,
            assigned_units: vec![],
            correlation: None,
            assign_deadline: opened,
            closed_at: None,
        }
    }

    fn event(seq: u64, ts: Timestamp, body: EventBody) -> OutputEvent {
        OutputEvent {
            seq,
            ts,
            district: None,
            body,
        }
    }

    #[test]
    fn same_seed_same_day_other_seed_other_day() {
        let zones = danang();
        let cfg = SimConfig::default();
        let a = run(&mut Simulator::new(cfg.clone(), &zones, start()), 1.0, 30);
        let b = run(&mut Simulator::new(cfg.clone(), &zones, start()), 1.0, 30);
        assert_eq!(a, b);
        let other = SimConfig { seed: 7, ..cfg };
        let c = run(&mut Simulator::new(other, &zones, start()), 1.0, 30);
        assert_ne!(a, c);
        // How often `advance` is called does not change what happens.
        let d = run(
            &mut Simulator::new(SimConfig::default(), &zones, start()),
            1.0,
            7,
        );
        let strip =
            |v: &[(Timestamp, Outgoing)]| v.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>();
        assert_eq!(strip(&a), strip(&d));
    }

    #[test]
    fn every_message_decodes_and_everything_is_on_land() {
        let zones = danang();
        let mut sim = Simulator::new(SimConfig::default(), &zones, start());
        let out = run(&mut sim, 2.0, 20);
        let (mut calls, mut reports, mut pings, mut units) = (0, 0, 0, 0);
        let mut p1 = 0;
        for (now, o) in &out {
            let input = decode_input(o.kind, &o.payload, *now)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.payload)));
            assert_eq!(input.kind(), o.kind);
            assert!(input.ts() <= *now);
            match input {
                Input::Call(c) => {
                    calls += 1;
                    assert_eq!(o.key, c.call_id);
                    assert!(on_land(&zones, c.location.lat, c.location.lon), "{c:?}");
                    let caller = c.caller.unwrap();
                    assert!(caller.starts_with('0') && caller.len() == 10, "{caller}");
                }
                Input::Incident(i) => {
                    reports += 1;
                    p1 += usize::from(i.priority == 1);
                    assert_eq!(o.key, i.incident_id);
                    assert!(on_land(&zones, i.location.lat, i.location.lon), "{i:?}");
                }
                Input::Position(p) => {
                    pings += 1;
                    assert_eq!(o.key, p.unit_id);
                    assert!(on_land(&zones, p.lat, p.lon), "{p:?}");
                }
                Input::Unit(u) => {
                    units += 1;
                    let home = u.home_district.unwrap();
                    assert!(!zones.get(&home).unwrap().offshore);
                }
                Input::Command(_) => {}
            }
        }
        assert_eq!(units, 74, "only registrations without feedback");
        assert!(
            calls > 100 && reports > 30 && pings > 74 * 1000,
            "{calls} {reports} {pings}"
        );
        assert!(p1 > 0);
    }

    #[test]
    fn each_unit_pings_every_interval() {
        let zones = danang();
        let cfg = SimConfig {
            ping_interval_s: 5.0,
            ..SimConfig::default()
        };
        let mut sim = Simulator::new(cfg, &zones, start());
        let out = run(&mut sim, 0.5, 3);
        let mut by_unit: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (_, o) in out.iter().filter(|(_, o)| o.kind == InputKind::Position) {
            let p: PositionPing = serde_json::from_slice(&o.payload).unwrap();
            by_unit
                .entry(p.unit_id)
                .or_default()
                .push(p.ts.unix_millis());
        }
        assert_eq!(by_unit.len(), 74);
        for (unit, ts) in by_unit {
            // The first fix is at the start; after it the fleet is staggered.
            assert!(ts[1] - ts[0] <= 5_000, "{unit}");
            for w in ts[1..].windows(2) {
                assert_eq!(w[1] - w[0], 5_000, "{unit}");
            }
        }
    }

    #[test]
    fn invalid_messages_fail_to_decode_and_only_they_do() {
        let zones = danang();
        let cfg = SimConfig {
            invalid_per_hour: 120.0,
            ping_interval_s: 60.0,
            ..SimConfig::default()
        };
        let mut sim = Simulator::new(cfg, &zones, start());
        let out = run(&mut sim, 1.0, 60);
        let mut bad = 0;
        for (now, o) in &out {
            let res = decode_input(o.kind, &o.payload, *now);
            if o.key.starts_with("sim-bad-") {
                bad += 1;
                assert!(res.is_err(), "{}", String::from_utf8_lossy(&o.payload));
            } else {
                assert!(res.is_ok());
            }
        }
        assert!((60..200).contains(&bad), "{bad}");
    }

    #[test]
    fn calls_over_a_day_follow_the_configured_rate() {
        let zones = danang();
        let cfg = SimConfig {
            ping_interval_s: 3_600.0,
            ..SimConfig::default()
        };
        let mut sim = Simulator::new(cfg, &zones, start());
        let out = run(&mut sim, 24.0, 300);
        let calls = out
            .iter()
            .filter(|(_, o)| o.kind == InputKind::Call)
            .count();
        // 120/h × 24 h = 2880, repeat calls included.
        assert!((2_450..3_300).contains(&calls), "{calls}");
        let reports = out
            .iter()
            .filter(|(_, o)| o.kind == InputKind::Incident)
            .count();
        assert!((800..1_150).contains(&reports), "{reports}");
    }

    #[test]
    fn some_calls_are_repeats_close_in_space_and_time() {
        let zones = danang();
        let mut sim = Simulator::new(SimConfig::default(), &zones, start());
        let calls: Vec<EmergencyCall> = run(&mut sim, 2.0, 60)
            .into_iter()
            .filter(|(_, o)| o.kind == InputKind::Call)
            .map(|(_, o)| serde_json::from_slice(&o.payload).unwrap())
            .collect();
        let repeats = calls
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                calls[..*i].iter().any(|p| {
                    let d = LatLon::new(p.location.lat, p.location.lon)
                        .distance_m(LatLon::new(c.location.lat, c.location.lon));
                    let dt = c.received_at.unix_millis() - p.received_at.unix_millis();
                    d < 300.0 && dt <= 300_000 && p.category == c.category
                })
            })
            .count();
        assert!(repeats * 10 > calls.len(), "{repeats} of {}", calls.len());
        let mut ids: Vec<&str> = calls.iter().map(|c| c.call_id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), calls.len());
    }

    #[test]
    fn an_assigned_unit_drives_there_works_closes_and_comes_back() {
        let zones = danang();
        let mut sim = Simulator::new(SimConfig::default(), &zones, start());
        let mut log = run(&mut sim, 0.1, 5);
        // An incident in central Hải Châu.
        let scene = LatLon::new(16.0678, 108.2208);
        assert!(on_land(&zones, scene.lat, scene.lon));
        let t0 = sim.now();
        let view = incident_view("inc-1", scene, Category::Medical, t0);
        sim.observe(&event(1, t0, EventBody::IncidentOpened(view.clone())));
        sim.observe(&event(
            2,
            t0,
            EventBody::DispatchRecommended(DispatchRecommendation {
                incident_id: "inc-1".into(),
                priority: 1,
                category: Category::Medical,
                needs: vec![],
                candidates: vec![],
                auto_assign: true,
                unfilled: vec![],
                excluded: vec![],
                swap: None,
            }),
        ));
        let assigned = EventBody::DispatchAssigned(DispatchAssignment {
            incident_id: "inc-1".into(),
            unit_id: "amb-01".into(),
            kind: UnitKind::Ambulance,
            by: "auto".into(),
            distance_m: None,
            eta_s: None,
        });
        sim.observe(&event(3, t0, assigned.clone()));
        // A replay of the same event changes nothing.
        sim.observe(&event(3, t0, assigned));
        let start_len = log.len();
        let mut now = t0;
        for _ in 0..(4 * 3600 / 5) {
            now = now.plus_millis(5_000);
            log.extend(sim.advance(now).into_iter().map(|o| (now, o)));
        }
        let mine = &log[start_len..];
        let mut statuses = Vec::new();
        let mut dists = Vec::new();
        let mut closed = None;
        for (_, o) in mine {
            match o.kind {
                InputKind::Unit => {
                    let u: UnitStatusReport = serde_json::from_slice(&o.payload).unwrap();
                    if u.unit_id == "amb-01" {
                        statuses.push((u.status, u.ts));
                    }
                }
                InputKind::Position => {
                    let p: PositionPing = serde_json::from_slice(&o.payload).unwrap();
                    if p.unit_id == "amb-01" {
                        dists.push((p.ts, LatLon::new(p.lat, p.lon).distance_m(scene)));
                    }
                }
                InputKind::Command => {
                    let c: Command = serde_json::from_slice(&o.payload).unwrap();
                    assert_eq!(c.issued_by, "sim");
                    assert_eq!(o.key, "inc-1");
                    closed = Some(c);
                }
                _ => {}
            }
        }
        let seq: Vec<UnitStatus> = statuses.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seq,
            [
                UnitStatus::Dispatched,
                UnitStatus::EnRoute,
                UnitStatus::OnScene,
                UnitStatus::Returning,
                UnitStatus::Available
            ]
        );
        let (en_route_at, on_scene_at) = (statuses[1].1, statuses[2].1);
        let driving: Vec<f64> = dists
            .iter()
            .filter(|(t, _)| *t >= en_route_at && *t <= on_scene_at)
            .map(|(_, d)| *d)
            .collect();
        assert!(driving.len() >= 2);
        assert!(driving[driving.len() - 1] < driving[0]);
        // Standing at the scene at the first ping after arrival.
        let at_scene = dists.iter().find(|(t, _)| *t >= on_scene_at).unwrap().1;
        assert!(at_scene < 1.0, "{at_scene}");
        let close = closed.expect("a close_incident command");
        assert_eq!(
            close.op,
            CommandOp::CloseIncident {
                incident_id: "inc-1".into()
            }
        );
        let secs = sim.call_to_scene_s();
        assert_eq!(secs.len(), 1);
        let expected = (on_scene_at.unix_millis() - t0.unix_millis()) as f64 / 1000.0;
        assert!((secs[0] - expected).abs() < 1e-6);
        // The close came after the medical service time (10-22 min).
        let served = (close.ts.unix_millis() - on_scene_at.unix_millis()) / 60_000;
        assert!((10..=22).contains(&served), "{served}");
    }

    #[test]
    fn a_closure_by_the_processor_sends_units_home() {
        let zones = danang();
        let mut sim = Simulator::new(SimConfig::default(), &zones, start());
        run(&mut sim, 0.05, 5);
        let t0 = sim.now();
        let scene = LatLon::new(16.0544, 108.2022);
        let mut view = incident_view("inc-2", scene, Category::Fire, t0);
        sim.observe(&event(1, t0, EventBody::IncidentOpened(view.clone())));
        sim.observe(&event(
            2,
            t0,
            EventBody::DispatchAssigned(DispatchAssignment {
                incident_id: "inc-2".into(),
                unit_id: "fire-01".into(),
                kind: UnitKind::FireEngine,
                by: "disp".into(),
                distance_m: None,
                eta_s: None,
            }),
        ));
        let t1 = t0.plus_millis(120_000);
        sim.advance(t1);
        view.status = IncidentStatus::Closed;
        sim.observe(&event(3, t1, EventBody::IncidentClosed(view)));
        let out = run_for(&mut sim, 3.0);
        let statuses: Vec<UnitStatus> = out
            .iter()
            .filter(|o| o.kind == InputKind::Unit)
            .map(|o| serde_json::from_slice::<UnitStatusReport>(&o.payload).unwrap())
            .filter(|u| u.unit_id == "fire-01")
            .map(|u| u.status)
            .collect();
        assert_eq!(statuses, [UnitStatus::Returning, UnitStatus::Available]);
        assert!(out.iter().all(|o| o.kind != InputKind::Command));
    }

    /// A quiet city: a small fleet, no calls or reports of its own, so that
    /// every command comes from the test's events.
    fn quiet(dispatch_delay_s: f64) -> SimConfig {
        SimConfig {
            ambulances: 4,
            fire_engines: 6,
            police: 4,
            rescue: 1,
            calls_per_hour: 0.0,
            incident_reports_per_hour: 0.0,
            ping_interval_s: 60.0,
            dispatch_delay_s,
            ..SimConfig::default()
        }
    }

    fn recommendation(id: &str, needs: &[(UnitKind, u32)], units: &[&str]) -> EventBody {
        let kind_of = |u: &str| match u.split('-').next() {
            Some("amb") => UnitKind::Ambulance,
            Some("fire") => UnitKind::FireEngine,
            Some("pol") => UnitKind::Police,
            _ => UnitKind::Rescue,
        };
        EventBody::DispatchRecommended(DispatchRecommendation {
            incident_id: id.into(),
            priority: 3,
            category: Category::Fire,
            needs: needs
                .iter()
                .map(|&(kind, count)| ioc_model::KindNeed { kind, count })
                .collect(),
            candidates: units
                .iter()
                .enumerate()
                .map(|(i, u)| ioc_model::Candidate {
                    unit_id: (*u).into(),
                    kind: kind_of(u),
                    distance_m: 100.0 * i as f64,
                    eta_s: 10.0 * i as f64,
                    reason: String::new(),
                })
                .collect(),
            auto_assign: false,
            unfilled: vec![],
            excluded: vec![],
            swap: None,
        })
    }

    fn assignment(incident: &str, unit: &str, kind: UnitKind) -> EventBody {
        EventBody::DispatchAssigned(DispatchAssignment {
            incident_id: incident.into(),
            unit_id: unit.into(),
            kind,
            by: "disp".into(),
            distance_m: None,
            eta_s: None,
        })
    }

    /// The commands in `out`, decoded as the processor decodes them.
    fn commands(out: &[Outgoing], now: Timestamp) -> Vec<(String, Command)> {
        out.iter()
            .filter(|o| o.kind == InputKind::Command)
            .map(|o| match decode_input(o.kind, &o.payload, now) {
                Ok(Input::Command(c)) => (o.key.clone(), c),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// (incident, unit) of the `assign` commands among them.
    fn assigns(cmds: &[(String, Command)]) -> Vec<(String, String)> {
        cmds.iter()
            .filter_map(|(_, c)| match &c.op {
                CommandOp::Assign {
                    incident_id,
                    unit_id,
                } => Some((incident_id.clone(), unit_id.clone())),
                _ => None,
            })
            .collect()
    }

    fn open(sim: &mut Simulator, id: &str, at: LatLon) {
        let t = sim.now();
        let view = incident_view(id, at, Category::Fire, t);
        sim.observe(&event(0, t, EventBody::IncidentOpened(view)));
    }

    #[test]
    fn the_dispatcher_assigns_the_best_free_candidates_after_the_delay() {
        let zones = danang();
        let mut sim = Simulator::new(quiet(45.0), &zones, start());
        sim.start();
        let t0 = start().plus_millis(60_000);
        sim.advance(t0);
        let scene = LatLon::new(16.0544, 108.2022);
        open(&mut sim, "inc-9", scene.offset_m(500.0, 0.0));
        // fire-01 is busy elsewhere.
        sim.observe(&event(
            1,
            t0,
            assignment("inc-9", "fire-01", UnitKind::FireEngine),
        ));
        open(&mut sim, "inc-7", scene);
        let rec = recommendation(
            "inc-7",
            &[
                (UnitKind::FireEngine, 2),
                (UnitKind::Ambulance, 1),
                (UnitKind::Police, 1),
            ],
            &[
                "fire-01", "fire-03", "fire-05", "fire-02", "amb-02", "amb-04", "pol-01", "pol-02",
            ],
        );
        sim.observe(&event(2, t0, rec.clone()));
        sim.observe(&event(2, t0, rec)); // a replay changes nothing
                                         // Before the dispatcher acts, a human assigns one fire engine (not a
                                         // candidate) and the ambulance.
        let t1 = t0.plus_millis(20_000);
        assert!(commands(&sim.advance(t1), t1).is_empty());
        sim.observe(&event(
            3,
            t1,
            assignment("inc-7", "fire-04", UnitKind::FireEngine),
        ));
        sim.observe(&event(
            4,
            t1,
            assignment("inc-7", "amb-03", UnitKind::Ambulance),
        ));
        let almost = t0.plus_millis(44_999);
        assert!(commands(&sim.advance(almost), almost).is_empty());
        let due = t0.plus_millis(45_000);
        let cmds = commands(&sim.advance(due), due);
        assert_eq!(
            assigns(&cmds),
            [
                ("inc-7".to_string(), "fire-03".to_string()),
                ("inc-7".to_string(), "pol-01".to_string()),
            ]
        );
        for (key, c) in &cmds {
            assert_eq!(key, "inc-7");
            assert_eq!(c.issued_by, SIM_DISPATCHER);
            assert_eq!(c.ts, due);
            assert!(c.command_id.starts_with("sim-cmd-"));
        }
        assert_ne!(cmds[0].1.command_id, cmds[1].1.command_id);
        // Done: nothing more for this recommendation.
        let later = due.plus_millis(60_000);
        assert!(commands(&sim.advance(later), later).is_empty());

        // Its own unconfirmed assignments are not free: the next incident
        // gets the next candidates.
        open(&mut sim, "inc-8", scene.offset_m(0.0, 400.0));
        let rec = recommendation(
            "inc-8",
            &[(UnitKind::FireEngine, 2)],
            &["fire-03", "fire-04", "fire-05", "fire-06"],
        );
        sim.observe(&event(5, later, rec));
        let due = later.plus_millis(45_000);
        let cmds = commands(&sim.advance(due), due);
        assert_eq!(
            assigns(&cmds),
            [
                ("inc-8".to_string(), "fire-05".to_string()),
                ("inc-8".to_string(), "fire-06".to_string()),
            ]
        );
    }

    #[test]
    fn the_dispatcher_leaves_incidents_assigned_closed_or_re_recommended_meanwhile() {
        let zones = danang();
        let mut sim = Simulator::new(quiet(45.0), &zones, start());
        sim.start();
        let t0 = start().plus_millis(60_000);
        sim.advance(t0);
        let scene = LatLon::new(16.0544, 108.2022);
        for (k, id) in ["inc-a", "inc-b", "inc-c", "inc-d"].iter().enumerate() {
            open(&mut sim, id, scene.offset_m(300.0 * k as f64, 0.0));
        }
        let needs = [(UnitKind::FireEngine, 1), (UnitKind::Ambulance, 1)];
        for id in ["inc-a", "inc-b", "inc-c", "inc-d"] {
            let rec = recommendation(id, &needs, &["fire-02", "amb-01"]);
            sim.observe(&event(1, t0, rec));
        }
        let t1 = t0.plus_millis(10_000);
        sim.advance(t1);
        // inc-a: fully assigned by a human.
        sim.observe(&event(
            2,
            t1,
            assignment("inc-a", "fire-05", UnitKind::FireEngine),
        ));
        sim.observe(&event(
            3,
            t1,
            assignment("inc-a", "amb-04", UnitKind::Ambulance),
        ));
        // inc-b: closed.
        let mut view = incident_view("inc-b", scene, Category::Fire, t0);
        view.status = IncidentStatus::Closed;
        sim.observe(&event(4, t1, EventBody::IncidentClosed(view)));
        // inc-c: priority raised to 1, the processor auto-assigns.
        let EventBody::DispatchRecommended(mut auto) =
            recommendation("inc-c", &needs, &["fire-03", "amb-02"])
        else {
            unreachable!()
        };
        auto.priority = 1;
        auto.auto_assign = true;
        sim.observe(&event(5, t1, EventBody::DispatchRecommended(auto)));
        // inc-d: a new recommendation replaces the pending one.
        let rec = recommendation("inc-d", &[(UnitKind::Police, 1)], &["pol-03"]);
        sim.observe(&event(6, t1, rec));
        let due = t0.plus_millis(45_000);
        assert!(commands(&sim.advance(due), due).is_empty());
        let due = t1.plus_millis(45_000);
        let cmds = commands(&sim.advance(due), due);
        assert_eq!(
            assigns(&cmds),
            [("inc-d".to_string(), "pol-03".to_string())]
        );
        // inc-a's crews close it when done; nothing else is assigned.
        let later = due.plus_millis(3_600_000);
        assert!(assigns(&commands(&sim.advance(later), later)).is_empty());
    }

    #[test]
    fn a_zero_dispatch_delay_never_dispatches() {
        let zones = danang();
        let mut sim = Simulator::new(quiet(0.0), &zones, start());
        sim.start();
        let t0 = start().plus_millis(60_000);
        sim.advance(t0);
        open(&mut sim, "inc-1", LatLon::new(16.0544, 108.2022));
        let rec = recommendation("inc-1", &[(UnitKind::FireEngine, 1)], &["fire-01"]);
        sim.observe(&event(1, t0, rec));
        let later = t0.plus_millis(6 * 3_600_000);
        assert!(commands(&sim.advance(later), later).is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3))]
        /// Whatever the seed and whatever the processor assigns, every
        /// message decodes and no unit ever leaves the land.
        #[test]
        fn any_seed_and_assignments_keep_units_on_land(
            seed in 0u64..1_000_000,
            picks in proptest::collection::vec((0usize..74, 0u64..1_000), 1..6),
        ) {
            let zones = danang();
            let cfg = SimConfig { seed, invalid_per_hour: 0.0, ..SimConfig::default() };
            let mut sim = Simulator::new(cfg, &zones, start());
            let mut log: Vec<(Timestamp, Outgoing)> =
                sim.start().into_iter().map(|o| (sim.now(), o)).collect();
            let ids: Vec<String> = sim.unit_ids().map(str::to_string).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut now = sim.now();
            for (k, (unit, delay_s)) in picks.iter().enumerate() {
                now = now.plus_millis(*delay_s as i64 * 1000);
                log.extend(sim.advance(now).into_iter().map(|o| (now, o)));
                let scene = sim.land.sample_point(&mut rng);
                let id = format!("inc-{k}");
                let view = incident_view(&id, scene, Category::Fire, now);
                sim.observe(&event(0, now, EventBody::IncidentOpened(view)));
                sim.observe(&event(0, now, EventBody::DispatchAssigned(DispatchAssignment {
                    incident_id: id,
                    unit_id: ids[*unit % ids.len()].clone(),
                    kind: UnitKind::FireEngine,
                    by: "auto".into(),
                    distance_m: None,
                    eta_s: None,
                })));
            }
            let end = now.plus_millis(90 * 60_000);
            while now < end {
                now = now.plus_millis(20_000);
                log.extend(sim.advance(now).into_iter().map(|o| (now, o)));
            }
            for (now, o) in &log {
                let input = decode_input(o.kind, &o.payload, *now);
                proptest::prop_assert!(input.is_ok());
                if let Ok(Input::Position(p)) = input {
                    proptest::prop_assert!(on_land(&zones, p.lat, p.lon), "{:?}", p);
                }
            }
        }
    }

    fn run_for(sim: &mut Simulator, hours: f64) -> Vec<Outgoing> {
        let end = sim.now().plus_millis((hours * 3_600_000.0) as i64);
        let mut now = sim.now();
        let mut out = Vec::new();
        while now < end {
            now = now.plus_millis(10_000);
            out.extend(sim.advance(now));
        }
        out
    }
}
