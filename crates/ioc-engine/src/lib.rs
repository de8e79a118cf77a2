//! The engine: the one writer of operational state.
//!
//! A pure, deterministic, synchronous state machine: [`Engine::apply`] takes
//! one decoded input and returns the output events it causes, each with the
//! next `seq`. No I/O and no clock reads: time comes from the inputs
//! themselves, or from [`Engine::tick`] with a time the caller injects. The
//! same inputs in the same order give the same outputs, so the engine can be
//! replayed and property-tested.
//!
//! # State machine, in prose
//!
//! * A **call** first looks for an open incident of a compatible category
//!   within the correlation radius whose last activity is within the
//!   correlation window. If it finds one, the call attaches to it
//!   (`incident.updated` with the distance and time that justified it; a
//!   third call raises the priority by one). Otherwise it opens a new
//!   incident whose priority comes from the dispatch rules.
//! * An **incident report** opens an incident with the reporter's priority.
//! * Every new incident gets `dispatch.recommended`: for each unit kind the
//!   rules ask for, the nearest available units ranked by ETA. Priority 1 is
//!   assigned at once to the best of them (`dispatch.assigned`, the units
//!   turn `dispatched`); other priorities wait for a dispatcher and raise an
//!   `alert.raised` when their deadline passes unassigned.
//! * **Positions** move units in the spatial index (remove + insert). A
//!   ping implying an impossible speed since the last fix (a GPS jump) is
//!   refused and counted, unless a second ping confirms the move. Pings of
//!   responding units feed the learned speeds of the ETA model.
//! * **Unit status** reports register units and follow the crew's lifecycle;
//!   a unit that becomes free again leaves its incident. A unit that
//!   becomes available may be suggested in place of an assigned unit still
//!   far away (`dispatch.recommended` with `swap`, see [`ranking`]).
//! * **Candidates** are ranked by ETA with learned speeds; units with a
//!   stale fix are ranked down or left out, and the candidate says why.
//!   With `dispatch_policy = "home_district"` (the old way, kept as a
//!   baseline) the incident's home-district units come first, see
//!   [`DispatchPolicy`].
//! * **Alerts** from the state of the city (stale GPS, call surge, coverage
//!   gap) are checked on a timer of event time, see [`monitor`].
//! * **Commands** (`assign`, `unassign`, `close_incident`, `ack_alert`,
//!   `set_priority`) come from operators through `ioc.commands`. A command
//!   that cannot apply (closed incident, unit already on another incident)
//!   produces `command.rejected` with the reason: the log says why.
//! * **Redeliveries** of calls, incident reports and commands are ignored by
//!   id; the ids are kept for `dedupe_retention_s` of event time (7 days by
//!   default) and then forgotten, so memory stays bounded (see [`seen`]).
//!
//! Invariants (property-tested): a unit is on at most one incident; every
//! open incident is assigned, recommended or escalated; replay is
//! deterministic; a redelivered input (within the dedupe retention) changes
//! nothing; a restored engine remembers and forgets the same ids.

mod monitor;
mod policy;
mod ranking;
mod rules;
mod seen;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ioc_model::{
    AlertKind, AlertStatus, AlertView, Category, Command, CommandOp, CommandRejection, Correlation,
    DispatchAssignment, DispatchRecommendation, EmergencyCall, EventBody, GeoPoint, IncidentReport,
    IncidentStatus, IncidentView, Input, KindNeed, OutputEvent, PositionPing, Timestamp, UnitKind,
    UnitStatus, UnitStatusReport, UnitView,
};
use ioc_router::{distance_m, hour_of_day, EtaModel, LearnedSpeeds, UnitIndex, Zones};
use serde::{Deserialize, Serialize};

pub use crate::policy::{AlertPolicy, DispatchPolicy, FixPolicy, SwapPolicy};
pub use crate::rules::{CategoryRule, Deadlines, DispatchRules, DEFAULT_RULES_TOML};
use crate::seen::SeenIds;

/// Errors of the engine crate (configuration only: inputs never error, they
/// are rejected with a reason).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid dispatch rules: {0}")]
    Rules(String),
    #[error("invalid engine config: {0}")]
    Config(String),
}

/// Why an input was refused; becomes the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

/// Tunables of the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// A call this close to an open incident may attach to it.
    pub correlation_radius_m: f64,
    /// ... if the incident saw activity this recently.
    pub correlation_window_s: u64,
    /// Candidates listed per needed kind in a recommendation.
    pub candidates_per_kind: usize,
    /// Which units are offered: nearest by ETA (ours), or the incident's
    /// home-district units first (the old way, kept to measure the gain).
    pub dispatch_policy: DispatchPolicy,
    /// ETA model and speed learning.
    pub eta: EtaModel,
    /// Stale fixes and GPS jumps.
    pub fix: FixPolicy,
    /// Swap suggestions.
    pub swap: SwapPolicy,
    /// Stale GPS, call surge and coverage alerts.
    pub alerts: AlertPolicy,
    /// How long, in seconds of event time, the ids of applied calls,
    /// incident reports and commands (and of closed incidents) are kept so
    /// that a redelivery of them is ignored; older ones are forgotten
    /// (within the hour after), so memory stays bounded over months.
    ///
    /// The default, 7 days, is Kafka's default topic retention
    /// (`log.retention.hours = 168`): an older input has been deleted from
    /// its topic, and the processor re-reads only inputs after its consumer
    /// group's committed offset, so nothing older can be redelivered unless
    /// an operator resets the group's offsets. Keep it at least the
    /// retention of the input topics. A command naming an incident closed
    /// longer ago than this is refused as "unknown incident" rather than
    /// "incident ... is closed".
    pub dedupe_retention_s: u64,
    /// Dispatch rules; loaded from a TOML file by the binary when configured.
    #[serde(skip)]
    pub rules: DispatchRules,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            correlation_radius_m: 300.0,
            correlation_window_s: 15 * 60,
            candidates_per_kind: 3,
            dispatch_policy: DispatchPolicy::NearestEta,
            eta: EtaModel::default(),
            fix: FixPolicy::default(),
            swap: SwapPolicy::default(),
            alerts: AlertPolicy::default(),
            dedupe_retention_s: 7 * 24 * 3600,
            rules: DispatchRules::default(),
        }
    }
}

impl EngineConfig {
    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), EngineError> {
        if !(self.correlation_radius_m.is_finite()
            && (0.0..=50_000.0).contains(&self.correlation_radius_m))
        {
            return Err(EngineError::Config(format!(
                "engine.correlation_radius_m must be within 0..=50000, got {}",
                self.correlation_radius_m
            )));
        }
        if !(1..=50).contains(&self.candidates_per_kind) {
            return Err(EngineError::Config(format!(
                "engine.candidates_per_kind must be within 1..=50, got {}",
                self.candidates_per_kind
            )));
        }
        if !(3600..=31_536_000).contains(&self.dedupe_retention_s) {
            return Err(EngineError::Config(format!(
                "engine.dedupe_retention_s must be within 3600..=31536000 (1 hour to 365 days; default 604800, 7 days), got {}",
                self.dedupe_retention_s
            )));
        }
        self.eta.validate().map_err(EngineError::Config)?;
        self.fix.validate()?;
        self.swap.validate()?;
        self.alerts.validate()?;
        self.rules.validate()
    }
}

/// Counters the adapters export as metrics (and one gauge, `seen_ids`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Dedupe keys remembered now (a gauge): ids of calls, incident reports,
    /// commands and closed incidents within `dedupe_retention_s`.
    pub seen_ids: u64,
    /// Inputs seen before (same id), ignored.
    pub duplicates: u64,
    /// Positions older than the unit's last fix, ignored.
    pub stale_positions: u64,
    /// Calls attached to an existing incident.
    pub correlated_calls: u64,
    /// Recommendations emitted.
    pub recommendations: u64,
    /// Units assigned (auto and by command).
    pub assignments: u64,
    /// Commands refused.
    pub rejected_commands: u64,
    /// Pings refused as GPS jumps (implied speed over the plausible maximum).
    pub gps_jumps: u64,
    /// Speed samples the ETA model learned from.
    pub speed_samples: u64,
    /// Swap suggestions emitted.
    pub swap_suggestions: u64,
    /// Fresh recommendations for a waiting incident when a unit came free.
    pub reoffers: u64,
}

#[derive(Debug, Clone)]
struct Incident {
    view: IncidentView,
    /// Kinds and counts still needed, per the rules.
    needs: BTreeMap<UnitKind, u32>,
    /// Kinds its last recommendation could not offer enough units of: a
    /// unit of such a kind that becomes free is offered to it.
    short_of: BTreeSet<UnitKind>,
    /// Last call or report attached: the correlation window runs from here.
    last_activity: Timestamp,
}

#[derive(Debug, Clone)]
struct Unit {
    view: UnitView,
    /// Time of the last status report applied, to ignore older ones.
    status_ts: Timestamp,
    /// Zone index of the last fix: the speed bucket it drives in.
    zone: Option<usize>,
    /// When the unit last went on duty (committed): stale GPS counts from
    /// here if its last fix is older.
    on_duty_since: Option<Timestamp>,
    /// A `stale_gps` alert is open for it (checked on every ping, so a flag
    /// rather than a lookup by formatted id).
    gps_alert: bool,
    /// The last ping refused as a GPS jump. A next ping plausible from it
    /// confirms that the unit really is there (the earlier fix was the
    /// outlier), so one bad fix cannot lock a unit out for good.
    suspect_fix: Option<(Timestamp, f64, f64)>,
}

impl Unit {
    fn new(view: UnitView, status_ts: Timestamp) -> Self {
        Self {
            view,
            status_ts,
            zone: None,
            on_duty_since: None,
            gps_alert: false,
            suspect_fix: None,
        }
    }
}

/// A call remembered for surge detection.
#[derive(Debug, Clone, PartialEq)]
struct RecentCall {
    call_id: String,
    ms: i64,
    lat: f64,
    lon: f64,
}

/// Implied speed, km/h, between two fixes, when they are close enough in
/// time for it to be a driving speed (live and restore use the same rule).
fn implied_kmh(
    a: GeoPoint,
    ta: Timestamp,
    b: GeoPoint,
    tb: Timestamp,
    max_gap_s: f64,
) -> Option<f64> {
    let dt = (tb.unix_millis() - ta.unix_millis()) as f64 / 1000.0;
    (dt > 0.0 && dt <= max_gap_s).then(|| distance_m(a.lat, a.lon, b.lat, b.lon) / dt * 3.6)
}

/// Categories that describe the same emergency seen by different callers.
fn compatible(a: Category, b: Category) -> bool {
    use Category::*;
    a == b
        || matches!(
            (a, b),
            (Fire, Rescue)
                | (Rescue, Fire)
                | (TrafficAccident, Medical)
                | (Medical, TrafficAccident)
        )
}

/// The engine. See the module docs for the state machine.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    zones: Arc<Zones>,
    index: UnitIndex,
    /// Open incidents (closed ones leave; their ids stay in `seen` for the
    /// dedupe retention).
    incidents: BTreeMap<String, Incident>,
    units: BTreeMap<String, Unit>,
    /// Alerts not yet cleared.
    alerts: BTreeMap<String, AlertView>,
    /// Dedupe keys of calls, incident reports and commands already applied,
    /// and of closed incidents, with the time they were recorded; forgotten
    /// after `dedupe_retention_s` (see [`seen`]).
    seen: SeenIds,
    /// (deadline ms, incident id) of open incidents waiting for units.
    deadlines: BTreeSet<(i64, String)>,
    /// Latest event time seen: the engine's notion of now.
    clock: Timestamp,
    /// Seq of the last output event.
    last_seq: u64,
    stats: EngineStats,
    /// Speeds learned from pings, per kind, zone and hour.
    speeds: LearnedSpeeds,
    /// Calls inside the surge window.
    recent_calls: Vec<RecentCall>,
    /// Open call-surge alerts → their centre.
    surges: BTreeMap<String, GeoPoint>,
    /// (zone index, kind) → when its coverage gap began (ms), while within
    /// the grace period or raised.
    gap_since: BTreeMap<(usize, UnitKind), i64>,
    /// Event time (ms) of the next periodic alert check.
    next_check_ms: i64,
}

impl Engine {
    /// A fresh engine whose first output will carry `last_seq + 1`.
    pub fn new(config: EngineConfig, zones: Arc<Zones>, last_seq: u64) -> Self {
        let speeds = LearnedSpeeds::new(config.eta.learning.clone(), zones.len());
        Self {
            config,
            zones,
            index: UnitIndex::new(),
            incidents: BTreeMap::new(),
            units: BTreeMap::new(),
            alerts: BTreeMap::new(),
            seen: SeenIds::default(),
            deadlines: BTreeSet::new(),
            clock: Timestamp::default(),
            last_seq,
            stats: EngineStats::default(),
            speeds,
            recent_calls: Vec::new(),
            surges: BTreeMap::new(),
            gap_since: BTreeMap::new(),
            next_check_ms: i64::MIN,
        }
    }

    /// Rebuilds an engine from its own output log (recovery after a restart
    /// or crash). Events carry full views, so the latest view of each entity
    /// is its state; ids seen in the log are remembered so that redelivered
    /// inputs are ignored. The next output continues the log's `seq`.
    ///
    /// Each id is recorded at the engine time of the log event that first
    /// carries it (the log's latest time so far, as the clock was live) and
    /// forgotten by the same rule as live (`dedupe_retention_s`), as the
    /// log's time advances: a restored engine ignores the redeliveries the
    /// live one would have ignored.
    pub fn restore(config: EngineConfig, zones: Arc<Zones>, log: &[OutputEvent]) -> Self {
        let mut e = Self::new(config, zones, 0);
        for ev in log {
            e.last_seq = e.last_seq.max(ev.seq);
            if ev.ts > e.clock {
                e.clock = ev.ts;
            }
            e.prune_seen();
            match &ev.body {
                EventBody::IncidentOpened(v) | EventBody::IncidentUpdated(v) => {
                    // Ids are recorded by the event of the input that
                    // brought them, not again by every later update
                    // repeating them (the incident's id, its last
                    // correlation): once forgotten, they stay forgotten.
                    let prev = e.incidents.get(&v.incident_id);
                    let first_mention = prev.is_none();
                    let prev_call = prev
                        .and_then(|i| i.view.correlation.as_ref())
                        .map(|c| c.call_id.clone());
                    let prev_activity = prev.map(|i| i.last_activity);
                    let new_call = v
                        .correlation
                        .as_ref()
                        .is_some_and(|c| prev_call.as_deref() != Some(c.call_id.as_str()));
                    if first_mention {
                        e.remember(format!("incident:{}", v.incident_id), ev.ts);
                    }
                    // The calls behind incidents, in log order: the recent
                    // calls of surge detection, as they were live.
                    if let Some(call_id) = v.incident_id.strip_prefix("inc-") {
                        if first_mention
                            && e.remember(format!("call:{call_id}"), ev.ts)
                            && v.source.starts_with("call:")
                        {
                            e.recent_calls.push(RecentCall {
                                call_id: call_id.to_string(),
                                ms: v.opened_at.unix_millis(),
                                lat: v.location.lat,
                                lon: v.location.lon,
                            });
                        }
                    }
                    if let Some(c) = v.correlation.as_ref().filter(|_| new_call) {
                        if e.remember(format!("call:{}", c.call_id), ev.ts) {
                            let at = c.location.unwrap_or(v.location);
                            e.recent_calls.push(RecentCall {
                                call_id: c.call_id.clone(),
                                ms: v.updated_at.unix_millis(),
                                lat: at.lat,
                                lon: at.lon,
                            });
                        }
                    }
                    // The correlation window runs from the opening or the
                    // last call attached, as live; not from a command's
                    // update.
                    let last_activity = match prev_activity {
                        Some(t) if new_call => t.max(v.updated_at),
                        Some(t) => t,
                        None => v.updated_at,
                    };
                    let short_of = e
                        .incidents
                        .get(&v.incident_id)
                        .map(|i| i.short_of.clone())
                        .unwrap_or_default();
                    e.incidents.insert(
                        v.incident_id.clone(),
                        Incident {
                            view: v.clone(),
                            needs: BTreeMap::new(),
                            short_of,
                            last_activity,
                        },
                    );
                }
                EventBody::IncidentClosed(v) => {
                    if e.incidents.remove(&v.incident_id).is_none() {
                        // Opened before the log's start.
                        e.remember(format!("incident:{}", v.incident_id), ev.ts);
                    }
                    e.remember(format!("closed:{}", v.incident_id), ev.ts);
                }
                EventBody::UnitUpdated(v) => e.restore_unit(v, ev.ts),
                EventBody::AlertRaised(a) | EventBody::AlertAcknowledged(a) => {
                    e.alerts.insert(a.alert_id.clone(), a.clone());
                }
                EventBody::AlertCleared(a) => {
                    e.alerts.remove(&a.alert_id);
                }
                EventBody::CommandRejected(c) => {
                    e.remember(format!("command:{}", c.command_id), ev.ts);
                }
                EventBody::DispatchRecommended(r) if r.swap.is_none() => {
                    if let Some(inc) = e.incidents.get_mut(&r.incident_id) {
                        inc.short_of = short_of(r);
                    }
                }
                EventBody::DispatchRecommended(_)
                | EventBody::DispatchAssigned(_)
                | EventBody::DispatchUnassigned(_) => {}
            }
        }
        // Derived state: the spatial index, what each incident still needs,
        // the deadlines still pending, open stale-GPS and surge alerts, the
        // calls still inside the surge window, the next check time.
        for a in e.alerts.values() {
            match a.kind {
                AlertKind::StaleGps => {
                    if let Some(u) = a.unit_id.as_ref().and_then(|id| e.units.get_mut(id)) {
                        u.gps_alert = true;
                    }
                }
                AlertKind::CallSurge => {
                    let call_id = a.alert_id.strip_prefix("surge:").unwrap_or("");
                    // Not found (aged out of the log's window): a NaN centre
                    // counts no calls, so the alert clears at the next check.
                    let centre = e.recent_calls.iter().find(|c| c.call_id == call_id).map_or(
                        GeoPoint {
                            lat: f64::NAN,
                            lon: f64::NAN,
                        },
                        |c| GeoPoint {
                            lat: c.lat,
                            lon: c.lon,
                        },
                    );
                    e.surges.insert(a.alert_id.clone(), centre);
                }
                _ => {}
            }
        }
        let horizon = e.clock.unix_millis() - monitor::secs_ms(e.config.alerts.surge_window_s);
        e.recent_calls.retain(|c| c.ms >= horizon);
        if e.clock != Timestamp::default() {
            e.next_check_ms =
                monitor::next_check_after(e.clock.unix_millis(), e.config.alerts.check_every_s);
        }
        for u in e.units.values() {
            if let Some(p) = u.view.position {
                e.index.upsert(
                    &u.view.unit_id,
                    u.view.kind,
                    p.lat,
                    p.lon,
                    u.view.status == UnitStatus::Available,
                );
            }
        }
        let ids: Vec<String> = e.incidents.keys().cloned().collect();
        for id in ids {
            let rule = e.config.rules.rule(e.incidents[&id].view.category);
            let mut needs = rule.needs.clone();
            for unit_id in &e.incidents[&id].view.assigned_units {
                if let Some(u) = e.units.get(unit_id) {
                    if let Some(n) = needs.get_mut(&u.view.kind) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
            let inc = e.incidents.get_mut(&id).expect("id from keys");
            inc.needs = needs;
            if inc.view.assigned_units.is_empty() {
                e.deadlines
                    .insert((inc.view.assign_deadline.unix_millis(), id.clone()));
            }
        }
        e
    }

    /// Seq of the last output event produced.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Counters since start.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Open incidents.
    pub fn incidents(&self) -> impl Iterator<Item = &IncidentView> {
        self.incidents.values().map(|i| &i.view)
    }

    /// Known units.
    pub fn units(&self) -> impl Iterator<Item = &UnitView> {
        self.units.values().map(|u| &u.view)
    }

    /// Alerts not cleared.
    pub fn alerts(&self) -> impl Iterator<Item = &AlertView> {
        self.alerts.values()
    }

    /// Speeds learned from the fleet's pings.
    pub fn learned_speeds(&self) -> &LearnedSpeeds {
        &self.speeds
    }

    /// One `unit.updated` of the log, in order: the latest view is the
    /// state; a newer fix is a ping, which feeds the learned speeds exactly
    /// as it did live; a move into committed status starts its duty.
    fn restore_unit(&mut self, v: &UnitView, ts: Timestamp) {
        let zone = v.district.as_deref().and_then(|d| self.zones.index_of(d));
        let Some(u) = self.units.get_mut(&v.unit_id) else {
            let mut u = Unit::new(v.clone(), ts);
            u.zone = zone;
            if v.status.is_committed() {
                u.on_duty_since = Some(ts);
            }
            if let (Some(_), Some(fix)) = (v.position, v.last_fix) {
                if let Some(kmh) = v.speed_kmh {
                    if matches!(v.status, UnitStatus::Dispatched | UnitStatus::EnRoute)
                        && self
                            .speeds
                            .observe(v.kind, zone, hour_of_day(fix.unix_millis()), kmh)
                    {
                        self.stats.speed_samples += 1;
                    }
                }
            }
            self.units.insert(v.unit_id.clone(), u);
            return;
        };
        if v.last_fix.is_some() && v.last_fix > u.view.last_fix {
            if let (Some(pos), Some(fix)) = (v.position, v.last_fix) {
                let implied = match (u.view.position, u.view.last_fix) {
                    (Some(a), Some(ta)) => {
                        implied_kmh(a, ta, pos, fix, self.config.eta.learning.max_sample_gap_s)
                    }
                    _ => None,
                };
                if let Some(kmh) = v.speed_kmh.or(implied) {
                    if matches!(v.status, UnitStatus::Dispatched | UnitStatus::EnRoute)
                        && self
                            .speeds
                            .observe(v.kind, zone, hour_of_day(fix.unix_millis()), kmh)
                    {
                        self.stats.speed_samples += 1;
                    }
                }
            }
        }
        if v.status.is_committed() {
            if !u.view.status.is_committed() {
                u.on_duty_since = Some(ts);
            }
        } else {
            u.on_duty_since = None;
        }
        // Only status changes move the status clock, as when applying: a
        // ping's `unit.updated` must not make a later-arriving crew report
        // look old after a restart.
        if v.status != u.view.status {
            u.status_ts = u.status_ts.max(ts);
        }
        u.view = v.clone();
        u.zone = zone;
    }

    /// The spatial index (for brute-force checks in tests and benches).
    pub fn index(&self) -> &UnitIndex {
        &self.index
    }

    /// The key under which an input is remembered as applied, for inputs
    /// deduplicated by id (calls, incident reports, commands). Positions and
    /// unit status are deduplicated by their timestamps instead (`None`).
    /// Adapters record it with each output (a Kafka header) so that a
    /// restored engine knows every input whose effects are in the log.
    pub fn dedupe_key(input: &Input) -> Option<String> {
        match input {
            Input::Call(c) => Some(format!("call:{}", c.call_id)),
            Input::Incident(i) => Some(format!("incident:{}", i.incident_id)),
            Input::Command(c) => Some(format!("command:{}", c.command_id)),
            Input::Position(_) | Input::Unit(_) => None,
        }
    }

    /// Remembers an input as applied (see [`Engine::dedupe_key`]): a
    /// redelivery of it within `dedupe_retention_s` will change nothing.
    /// Recorded at the engine's time (after a restore, the log's latest):
    /// prefer [`Engine::mark_seen_at`] when the time of the log event that
    /// carried the key is known.
    pub fn mark_seen(&mut self, key: &str) {
        self.mark_seen_at(key, self.clock);
    }

    /// [`Engine::mark_seen`] as of `at`, the time of the log event that
    /// carried the key (capped at the engine's time): after a restore, the
    /// key is then forgotten when the live engine would have forgotten it.
    /// A key already remembered keeps its time.
    pub fn mark_seen_at(&mut self, key: &str, at: Timestamp) {
        if self
            .seen
            .insert(key.to_string(), at.min(self.clock).unix_millis())
        {
            self.prune_seen();
            self.stats.seen_ids = self.seen.len() as u64;
        }
    }

    /// Records a dedupe key at the engine's time as of an input (or log
    /// event) of time `ts`: the clock it leaves the engine at. True if new.
    fn remember(&mut self, key: String, ts: Timestamp) -> bool {
        let new = self.seen.insert(key, self.clock.max(ts).unix_millis());
        self.stats.seen_ids = self.seen.len() as u64;
        new
    }

    /// Forgets the dedupe keys older than the retention (see [`seen`]): one
    /// comparison unless the oldest hour of keys has just expired. Called
    /// on every clock advance; the work happens once an hour of event time.
    fn prune_seen(&mut self) {
        let cutoff = self
            .clock
            .unix_millis()
            .saturating_sub(monitor::secs_ms(self.config.dedupe_retention_s));
        if self.seen.prune(cutoff) {
            self.stats.seen_ids = self.seen.len() as u64;
        }
    }

    /// Applies one input. `Err` means the input is refused as a whole (it
    /// goes to the dead-letter topic with the reason) and changed nothing.
    pub fn apply(&mut self, input: &Input) -> Result<Vec<OutputEvent>, Rejection> {
        let mut out = Vec::new();
        match input {
            Input::Call(call) => self.on_call(call, &mut out),
            Input::Incident(report) => self.on_report(report, &mut out),
            Input::Position(ping) => self.on_position(ping, &mut out)?,
            Input::Unit(report) => self.on_unit_status(report, &mut out),
            Input::Command(cmd) => self.on_command(cmd, &mut out),
        }
        self.advance_clock(input.ts(), &mut out);
        Ok(out)
    }

    /// Moves the engine's clock forward to `now` (injected by the caller,
    /// e.g. a once-a-second timer) and raises the alerts that became due.
    pub fn tick(&mut self, now: Timestamp) -> Vec<OutputEvent> {
        let mut out = Vec::new();
        self.advance_clock(now, &mut out);
        out
    }

    fn emit(
        &mut self,
        out: &mut Vec<OutputEvent>,
        ts: Timestamp,
        district: Option<String>,
        body: EventBody,
    ) {
        self.last_seq += 1;
        out.push(OutputEvent {
            seq: self.last_seq,
            ts,
            district,
            body,
        });
    }

    fn advance_clock(&mut self, now: Timestamp, out: &mut Vec<OutputEvent>) {
        if now > self.clock {
            self.clock = now;
        }
        self.prune_seen();
        self.maybe_check(out);
        while let Some((due, id)) = self.deadlines.first().cloned() {
            if due > self.clock.unix_millis() {
                break;
            }
            self.deadlines.pop_first();
            let Some(inc) = self.incidents.get(&id) else {
                continue;
            };
            if !inc.view.assigned_units.is_empty() {
                continue;
            }
            let v = &inc.view;
            let alert = AlertView {
                alert_id: format!("deadline:{id}"),
                kind: AlertKind::UnassignedDeadline,
                status: AlertStatus::Raised,
                severity: v.priority,
                district: v.district.clone(),
                incident_id: Some(id.clone()),
                unit_id: None,
                message: format!(
                    "priority {} {} incident unassigned past its {} s deadline",
                    v.priority,
                    v.category.as_str(),
                    self.config.rules.deadlines.millis(v.priority) / 1000
                ),
                raised_at: Timestamp::from_unix_millis(due),
                acknowledged_by: None,
            };
            self.raise_alert(alert, out);
        }
    }

    fn raise_alert(&mut self, alert: AlertView, out: &mut Vec<OutputEvent>) {
        if self.alerts.contains_key(&alert.alert_id) {
            return;
        }
        let ts = alert.raised_at;
        let district = alert.district.clone();
        self.alerts.insert(alert.alert_id.clone(), alert.clone());
        self.emit(out, ts, district, EventBody::AlertRaised(alert));
    }

    fn clear_alert(&mut self, alert_id: &str, ts: Timestamp, out: &mut Vec<OutputEvent>) {
        if let Some(mut alert) = self.alerts.remove(alert_id) {
            alert.status = AlertStatus::Cleared;
            let district = alert.district.clone();
            self.emit(out, ts, district, EventBody::AlertCleared(alert));
        }
    }

    fn on_call(&mut self, call: &EmergencyCall, out: &mut Vec<OutputEvent>) {
        let key = format!("call:{}", call.call_id);
        // The incident it opened still open: a redelivery whose id was
        // forgotten (open longer than the dedupe retention). Not recorded
        // again, as a restore from the log would not.
        if self.seen.contains(&key)
            || self
                .incidents
                .contains_key(&format!("inc-{}", call.call_id))
        {
            self.stats.duplicates += 1;
            return;
        }
        self.remember(key, call.received_at);
        let (lat, lon) = (call.location.lat, call.location.lon);
        let window_ms = i64::try_from(self.config.correlation_window_s.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        // Nearest compatible open incident within radius and window.
        let mut best: Option<(f64, String)> = None;
        for (id, inc) in &self.incidents {
            if !compatible(inc.view.category, call.category) {
                continue;
            }
            let age = call.received_at.unix_millis() - inc.last_activity.unix_millis();
            if age.abs() > window_ms {
                continue;
            }
            let d = distance_m(lat, lon, inc.view.location.lat, inc.view.location.lon);
            if d <= self.config.correlation_radius_m && best.as_ref().is_none_or(|(bd, _)| d < *bd)
            {
                best = Some((d, id.clone()));
            }
        }
        if let Some((d, id)) = best {
            self.stats.correlated_calls += 1;
            let Some(inc) = self.incidents.get_mut(&id) else {
                return;
            };
            let after_s =
                (call.received_at.unix_millis() - inc.last_activity.unix_millis()) as f64 / 1000.0;
            inc.last_activity = inc.last_activity.max(call.received_at);
            let v = &mut inc.view;
            v.call_count += 1;
            if call.caller.is_some() {
                v.caller.clone_from(&call.caller);
            }
            v.updated_at = call.received_at;
            // Many callers for one incident: it is bigger than first thought.
            let raised = v.call_count == 3 && v.priority > 1;
            if raised {
                v.priority -= 1;
            }
            v.correlation = Some(Correlation {
                call_id: call.call_id.clone(),
                distance_m: (d * 10.0).round() / 10.0,
                after_s,
                location: Some(GeoPoint { lat, lon }),
            });
            let view = v.clone();
            self.emit(
                out,
                call.received_at,
                view.district.clone(),
                EventBody::IncidentUpdated(view),
            );
            if raised {
                self.reschedule_deadline(&id);
                self.recommend(&id, call.received_at, out);
            }
            self.note_call(&call.call_id, call.received_at, lat, lon, out);
            return;
        }
        let rule = self.config.rules.rule(call.category);
        let incident_id = format!("inc-{}", call.call_id);
        self.open_incident(
            incident_id,
            call.category,
            rule.priority,
            lat,
            lon,
            call.received_at,
            format!("call:{}", line_name(call.line)),
            call.caller.clone(),
            Some(call.line),
            call.note.clone(),
            out,
        );
        self.note_call(&call.call_id, call.received_at, lat, lon, out);
    }

    fn on_report(&mut self, r: &IncidentReport, out: &mut Vec<OutputEvent>) {
        let key = format!("incident:{}", r.incident_id);
        // Still open: a redelivery, even if its id was forgotten (open
        // longer than the dedupe retention); not recorded again, as a
        // restore from the log would not.
        if self.seen.contains(&key) || self.incidents.contains_key(&r.incident_id) {
            self.stats.duplicates += 1;
            return;
        }
        self.remember(key, r.reported_at);
        let source = serde_json::to_value(r.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "report".into());
        self.open_incident(
            r.incident_id.clone(),
            r.category,
            r.priority,
            r.location.lat,
            r.location.lon,
            r.reported_at,
            source,
            None,
            None,
            r.description.clone(),
            out,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn open_incident(
        &mut self,
        incident_id: String,
        category: Category,
        priority: u8,
        lat: f64,
        lon: f64,
        ts: Timestamp,
        source: String,
        caller: Option<String>,
        line: Option<ioc_model::Line>,
        description: Option<String>,
        out: &mut Vec<OutputEvent>,
    ) {
        let district = self.zones.zone_id_at(lat, lon);
        let rule = self.config.rules.rule(category);
        let deadline = ts.plus_millis(self.config.rules.deadlines.millis(priority));
        let view = IncidentView {
            incident_id: incident_id.clone(),
            status: IncidentStatus::Open,
            category,
            priority,
            location: GeoPoint { lat, lon },
            district: district.clone(),
            opened_at: ts,
            updated_at: ts,
            source,
            call_count: u32::from(caller.is_some() || line.is_some()),
            caller,
            line,
            description,
            assigned_units: Vec::new(),
            correlation: None,
            assign_deadline: deadline,
            closed_at: None,
        };
        self.incidents.insert(
            incident_id.clone(),
            Incident {
                view: view.clone(),
                needs: rule.needs.clone(),
                short_of: BTreeSet::new(),
                last_activity: ts,
            },
        );
        self.deadlines
            .insert((deadline.unix_millis(), incident_id.clone()));
        self.emit(out, ts, district.clone(), EventBody::IncidentOpened(view));
        if priority <= 2 {
            let alert = AlertView {
                alert_id: format!("opened:{incident_id}"),
                kind: AlertKind::IncidentOpened,
                status: AlertStatus::Raised,
                severity: priority,
                district,
                incident_id: Some(incident_id.clone()),
                unit_id: None,
                message: format!("priority {priority} {} incident opened", category.as_str()),
                raised_at: ts,
                acknowledged_by: None,
            };
            self.raise_alert(alert, out);
        }
        self.recommend(&incident_id, ts, out);
    }

    fn reschedule_deadline(&mut self, id: &str) {
        let Some(inc) = self.incidents.get_mut(id) else {
            return;
        };
        let old = inc.view.assign_deadline.unix_millis();
        self.deadlines.remove(&(old, id.to_string()));
        let new = inc
            .view
            .opened_at
            .plus_millis(self.config.rules.deadlines.millis(inc.view.priority));
        inc.view.assign_deadline = new;
        self.deadlines.insert((new.unix_millis(), id.to_string()));
    }

    /// Ranks candidates for what the incident still needs; auto-assigns
    /// priority 1.
    fn recommend(&mut self, id: &str, ts: Timestamp, out: &mut Vec<OutputEvent>) {
        let Some(inc) = self.incidents.get(id) else {
            return;
        };
        let (lat, lon) = (inc.view.location.lat, inc.view.location.lon);
        let priority = inc.view.priority;
        let category = inc.view.category;
        let district = inc.view.district.clone();
        let needs: Vec<(UnitKind, u32)> = inc
            .needs
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (*k, *n))
            .collect();
        let mut candidates = Vec::new();
        let mut unfilled = Vec::new();
        let mut to_assign = Vec::new();
        let mut excluded = Vec::new();
        for (kind, count) in &needs {
            let k = (*count as usize).max(self.config.candidates_per_kind);
            let (found, left_out) = match self.config.dispatch_policy {
                DispatchPolicy::NearestEta => self.rank(*kind, lat, lon, k, ts),
                DispatchPolicy::HomeDistrict => {
                    self.rank_home_district(*kind, lat, lon, district.as_deref(), k, ts)
                }
            };
            excluded.extend(left_out);
            if found.is_empty() {
                unfilled.push(*kind);
            }
            for (rank, r) in found.iter().enumerate() {
                if priority == 1 && rank < *count as usize {
                    to_assign.push((r.unit_id.clone(), r.distance_m, r.eta_s));
                }
                candidates.push(r.candidate());
            }
        }
        self.stats.recommendations += 1;
        let rec = DispatchRecommendation {
            incident_id: id.to_string(),
            priority,
            category,
            needs: needs
                .iter()
                .map(|(kind, count)| KindNeed {
                    kind: *kind,
                    count: *count,
                })
                .collect(),
            candidates,
            auto_assign: priority == 1,
            unfilled,
            excluded,
            swap: None,
        };
        if let Some(inc) = self.incidents.get_mut(id) {
            inc.short_of = short_of(&rec);
        }
        self.emit(out, ts, district, EventBody::DispatchRecommended(rec));
        for (unit_id, d, eta) in to_assign {
            self.assign(id, &unit_id, "auto", ts, Some((d, eta)), out);
        }
    }

    /// A unit just became free: the most urgent open incident still waiting
    /// for its kind — one whose last recommendation came up short of it, or
    /// that is past its assignment deadline — gets a fresh recommendation
    /// (and, at priority 1, the assignment). Without this an incident that
    /// found no unit when it opened would never be offered one again.
    fn offer_freed_unit(&mut self, unit_id: &str, ts: Timestamp, out: &mut Vec<OutputEvent>) {
        let Some(u) = self.units.get(unit_id) else {
            return;
        };
        if u.view.status != UnitStatus::Available || u.view.position.is_none() {
            return;
        }
        let kind = u.view.kind;
        let waiting = self
            .incidents
            .values()
            .filter(|i| {
                i.needs.get(&kind).is_some_and(|n| *n > 0)
                    && (i.short_of.contains(&kind) || i.view.assign_deadline <= ts)
            })
            .min_by(|a, b| {
                (a.view.priority, a.view.opened_at, &a.view.incident_id).cmp(&(
                    b.view.priority,
                    b.view.opened_at,
                    &b.view.incident_id,
                ))
            })
            .map(|i| i.view.incident_id.clone());
        if let Some(id) = waiting {
            self.stats.reoffers += 1;
            self.recommend(&id, ts, out);
        }
    }

    /// Assigns a unit that is known to be free. Returns false if it is not.
    fn assign(
        &mut self,
        incident_id: &str,
        unit_id: &str,
        by: &str,
        ts: Timestamp,
        route: Option<(f64, f64)>,
        out: &mut Vec<OutputEvent>,
    ) -> bool {
        let Some(unit) = self.units.get_mut(unit_id) else {
            return false;
        };
        let Some(inc) = self.incidents.get_mut(incident_id) else {
            return false;
        };
        if unit.view.incident_id.is_some()
            || unit.view.status.is_committed()
            || unit.view.status == UnitStatus::OutOfService
        {
            return false;
        }
        let kind = unit.view.kind;
        unit.view.status = UnitStatus::Dispatched;
        unit.on_duty_since = Some(ts);
        unit.view.incident_id = Some(incident_id.to_string());
        unit.status_ts = unit.status_ts.max(ts);
        self.index.set_available(unit_id, false);
        if let Some(n) = inc.needs.get_mut(&kind) {
            *n = n.saturating_sub(1);
        }
        inc.view.assigned_units.push(unit_id.to_string());
        inc.view.status = IncidentStatus::Dispatched;
        inc.view.updated_at = ts;
        let inc_view = inc.view.clone();
        let unit_view = unit.view.clone();
        let unit_zone = unit.zone;
        let route = route.or_else(|| {
            unit_view.position.map(|p| {
                let (lat, lon) = (inc_view.location.lat, inc_view.location.lon);
                let d = distance_m(p.lat, p.lon, lat, lon);
                let to_zone = self.zones.zone_index_at(lat, lon);
                (d, self.eta_of(kind, d, unit_zone, to_zone, ts).0)
            })
        });
        self.stats.assignments += 1;
        let district = inc_view.district.clone();
        self.emit(
            out,
            ts,
            district.clone(),
            EventBody::DispatchAssigned(DispatchAssignment {
                incident_id: incident_id.to_string(),
                unit_id: unit_id.to_string(),
                kind,
                by: by.to_string(),
                distance_m: route.map(|r| r.0.round()),
                eta_s: route.map(|r| r.1.round()),
            }),
        );
        self.emit(
            out,
            ts,
            unit_view.district.clone(),
            EventBody::UnitUpdated(unit_view),
        );
        self.emit(out, ts, district, EventBody::IncidentUpdated(inc_view));
        self.clear_alert(&format!("deadline:{incident_id}"), ts, out);
        true
    }

    /// Takes a unit off its incident (unassign, or the crew reports free).
    fn release(
        &mut self,
        unit_id: &str,
        ts: Timestamp,
        out: &mut Vec<OutputEvent>,
    ) -> Option<String> {
        let unit = self.units.get_mut(unit_id)?;
        let incident_id = unit.view.incident_id.take()?;
        if let Some(inc) = self.incidents.get_mut(&incident_id) {
            inc.view.assigned_units.retain(|u| u != unit_id);
            if inc.view.assigned_units.is_empty() {
                inc.view.status = IncidentStatus::Open;
            }
            inc.view.updated_at = ts;
            let view = inc.view.clone();
            self.emit(
                out,
                ts,
                view.district.clone(),
                EventBody::IncidentUpdated(view),
            );
        }
        Some(incident_id)
    }

    /// The hot path (every ping): no allocation unless the unit changed
    /// zone, one zone lookup (a grid cell away from boundaries), one
    /// remove + insert in the index if the unit is available.
    fn on_position(
        &mut self,
        p: &PositionPing,
        out: &mut Vec<OutputEvent>,
    ) -> Result<(), Rejection> {
        let Some(unit) = self.units.get_mut(&p.unit_id) else {
            return Err(Rejection(format!(
                "unknown unit {:?}: register it on the units topic first",
                p.unit_id
            )));
        };
        if unit.view.last_fix.is_some_and(|t| t >= p.ts) {
            self.stats.stale_positions += 1;
            return Ok(());
        }
        let here = GeoPoint {
            lat: p.lat,
            lon: p.lon,
        };
        let mut implied = None;
        if let (Some(prev), Some(t0)) = (unit.view.position, unit.view.last_fix) {
            let fix = &self.config.fix;
            let dt = (p.ts.unix_millis() - t0.unix_millis()) as f64 / 1000.0;
            let d = distance_m(prev.lat, prev.lon, p.lat, p.lon);
            let kmh = d / dt * 3.6;
            if d > fix.jump_tolerance_m && kmh > fix.max_plausible_kmh {
                let confirmed = unit.suspect_fix.is_some_and(|(ts, lat, lon)| {
                    let dt = (p.ts.unix_millis() - ts.unix_millis()) as f64 / 1000.0;
                    let d = distance_m(lat, lon, p.lat, p.lon);
                    dt > 0.0 && (d <= fix.jump_tolerance_m || d / dt * 3.6 <= fix.max_plausible_kmh)
                });
                if !confirmed {
                    unit.suspect_fix = Some((p.ts, p.lat, p.lon));
                    self.stats.gps_jumps += 1;
                    return Err(Rejection(format!(
                        "gps jump: unit {} moved {:.1} km in {:.0} s since its last fix ({:.0} km/h, plausible at most {:.0} km/h)",
                        p.unit_id,
                        d / 1000.0,
                        dt,
                        kmh,
                        fix.max_plausible_kmh
                    )));
                }
            }
            implied = implied_kmh(
                prev,
                t0,
                here,
                p.ts,
                self.config.eta.learning.max_sample_gap_s,
            );
        }
        unit.suspect_fix = None;
        let zone = self.zones.zone_index_at(p.lat, p.lon);
        if zone != unit.zone || unit.view.district.is_none() != zone.is_none() {
            unit.view.district = zone
                .and_then(|z| self.zones.by_index(z))
                .map(|z| z.id.clone());
            unit.zone = zone;
        }
        if matches!(
            unit.view.status,
            UnitStatus::Dispatched | UnitStatus::EnRoute
        ) {
            if let Some(kmh) = p.speed_kmh.or(implied) {
                if self
                    .speeds
                    .observe(unit.view.kind, zone, hour_of_day(p.ts.unix_millis()), kmh)
                {
                    self.stats.speed_samples += 1;
                }
            }
        }
        unit.view.position = Some(here);
        unit.view.speed_kmh = p.speed_kmh;
        unit.view.heading_deg = p.heading_deg;
        unit.view.last_fix = Some(p.ts);
        let available = unit.view.status == UnitStatus::Available;
        let gps_alert = unit.gps_alert;
        let view = unit.view.clone();
        self.index
            .upsert(&p.unit_id, view.kind, p.lat, p.lon, available);
        let district = view.district.clone();
        self.emit(out, p.ts, district, EventBody::UnitUpdated(view));
        if gps_alert {
            self.clear_stale_gps(&p.unit_id, p.ts, out);
        }
        Ok(())
    }

    fn on_unit_status(&mut self, r: &UnitStatusReport, out: &mut Vec<OutputEvent>) {
        let known = self.units.contains_key(&r.unit_id);
        let unit = self.units.entry(r.unit_id.clone()).or_insert_with(|| {
            Unit::new(
                UnitView {
                    unit_id: r.unit_id.clone(),
                    kind: r.kind,
                    status: r.status,
                    position: None,
                    district: None,
                    station: None,
                    home_district: None,
                    incident_id: None,
                    speed_kmh: None,
                    heading_deg: None,
                    last_fix: None,
                },
                Timestamp::from_unix_millis(i64::MIN),
            )
        });
        // Not newer than the last status change (a crew report or an
        // assignment made at that time): a redelivery or out of date, not
        // news. Two reports of one unit in the same millisecond keep the
        // first.
        if r.ts <= unit.status_ts {
            self.stats.duplicates += 1;
            return;
        }
        unit.status_ts = r.ts;
        let was = known.then_some(unit.view.status);
        unit.view.kind = r.kind;
        unit.view.status = r.status;
        if r.status.is_committed() {
            if !was.is_some_and(UnitStatus::is_committed) {
                unit.on_duty_since = Some(r.ts);
            }
        } else {
            unit.on_duty_since = None;
        }
        if r.station.is_some() {
            unit.view.station.clone_from(&r.station);
        }
        if r.home_district.is_some() {
            unit.view.home_district.clone_from(&r.home_district);
        }
        let freed = matches!(
            r.status,
            UnitStatus::Available | UnitStatus::Returning | UnitStatus::OutOfService
        );
        let pos = unit.view.position;
        if let Some(p) = pos {
            self.index.upsert(
                &r.unit_id,
                r.kind,
                p.lat,
                p.lon,
                r.status == UnitStatus::Available,
            );
        }
        if freed {
            self.release(&r.unit_id, r.ts, out);
        }
        if let Some(unit) = self.units.get(&r.unit_id) {
            let view = unit.view.clone();
            self.emit(
                out,
                r.ts,
                view.district.clone(),
                EventBody::UnitUpdated(view),
            );
        }
        if !r.status.is_committed() {
            self.clear_stale_gps(&r.unit_id, r.ts, out);
        }
        if r.status == UnitStatus::Available && was != Some(UnitStatus::Available) {
            self.offer_freed_unit(&r.unit_id, r.ts, out);
            self.suggest_swap(&r.unit_id, r.ts, out);
        }
    }

    fn on_command(&mut self, cmd: &Command, out: &mut Vec<OutputEvent>) {
        if !self.remember(format!("command:{}", cmd.command_id), cmd.ts) {
            self.stats.duplicates += 1;
            return;
        }
        if let Err(reason) = self.try_command(cmd, out) {
            self.stats.rejected_commands += 1;
            let district = cmd
                .op
                .incident_id()
                .and_then(|id| self.incidents.get(id))
                .and_then(|i| i.view.district.clone());
            self.emit(
                out,
                cmd.ts,
                district,
                EventBody::CommandRejected(CommandRejection {
                    command_id: cmd.command_id.clone(),
                    op: cmd.op.name().to_string(),
                    issued_by: cmd.issued_by.clone(),
                    incident_id: cmd.op.incident_id().map(str::to_string),
                    reason,
                }),
            );
        }
    }

    fn open_incident_or_reason(&self, id: &str) -> Result<&Incident, String> {
        self.incidents.get(id).ok_or_else(|| {
            if self.seen.contains(&format!("closed:{id}")) {
                format!("incident {id} is closed")
            } else {
                format!("unknown incident {id}")
            }
        })
    }

    fn try_command(&mut self, cmd: &Command, out: &mut Vec<OutputEvent>) -> Result<(), String> {
        let ts = cmd.ts;
        match &cmd.op {
            CommandOp::Assign {
                incident_id,
                unit_id,
            } => {
                self.open_incident_or_reason(incident_id)?;
                let unit = self
                    .units
                    .get(unit_id)
                    .ok_or_else(|| format!("unknown unit {unit_id}"))?;
                if let Some(other) = &unit.view.incident_id {
                    return Err(format!(
                        "unit {unit_id} is already assigned to incident {other}"
                    ));
                }
                if unit.view.status.is_committed() || unit.view.status == UnitStatus::OutOfService {
                    return Err(format!("unit {unit_id} is {}", unit.view.status.as_str()));
                }
                if !self.assign(incident_id, unit_id, &cmd.issued_by, ts, None, out) {
                    return Err(format!("unit {unit_id} cannot be assigned"));
                }
                Ok(())
            }
            CommandOp::Unassign {
                incident_id,
                unit_id,
            } => {
                self.open_incident_or_reason(incident_id)?;
                let unit = self
                    .units
                    .get(unit_id)
                    .ok_or_else(|| format!("unknown unit {unit_id}"))?;
                if unit.view.incident_id.as_deref() != Some(incident_id.as_str()) {
                    return Err(format!(
                        "unit {unit_id} is not assigned to incident {incident_id}"
                    ));
                }
                let kind = unit.view.kind;
                self.release(unit_id, ts, out);
                if let Some(u) = self.units.get_mut(unit_id) {
                    u.view.status = UnitStatus::Available;
                    u.on_duty_since = None;
                    u.status_ts = u.status_ts.max(ts);
                    if let Some(p) = u.view.position {
                        self.index.upsert(unit_id, kind, p.lat, p.lon, true);
                    }
                    let view = u.view.clone();
                    if let Some(inc) = self.incidents.get_mut(incident_id) {
                        *inc.needs.entry(kind).or_insert(0) += 1;
                    }
                    self.emit(
                        out,
                        ts,
                        self.incidents
                            .get(incident_id)
                            .and_then(|i| i.view.district.clone()),
                        EventBody::DispatchUnassigned(DispatchAssignment {
                            incident_id: incident_id.clone(),
                            unit_id: unit_id.clone(),
                            kind,
                            by: cmd.issued_by.clone(),
                            distance_m: None,
                            eta_s: None,
                        }),
                    );
                    self.emit(out, ts, view.district.clone(), EventBody::UnitUpdated(view));
                    self.clear_stale_gps(unit_id, ts, out);
                    self.offer_freed_unit(unit_id, ts, out);
                    self.suggest_swap(unit_id, ts, out);
                }
                Ok(())
            }
            CommandOp::CloseIncident { incident_id } => {
                self.open_incident_or_reason(incident_id)?;
                let Some(mut inc) = self.incidents.remove(incident_id) else {
                    return Err(format!("unknown incident {incident_id}"));
                };
                self.remember(format!("closed:{incident_id}"), ts);
                self.deadlines
                    .remove(&(inc.view.assign_deadline.unix_millis(), incident_id.clone()));
                // The crews keep their status (they report `returning`
                // themselves) but are no longer on this incident: say so.
                let mut freed = Vec::new();
                for unit_id in &inc.view.assigned_units {
                    if let Some(u) = self.units.get_mut(unit_id) {
                        u.view.incident_id = None;
                        freed.push(u.view.clone());
                    }
                }
                inc.view.status = IncidentStatus::Closed;
                inc.view.closed_at = Some(ts);
                inc.view.updated_at = ts;
                let view = inc.view;
                self.emit(
                    out,
                    ts,
                    view.district.clone(),
                    EventBody::IncidentClosed(view),
                );
                for u in freed {
                    self.emit(out, ts, u.district.clone(), EventBody::UnitUpdated(u));
                }
                let related: Vec<String> = self
                    .alerts
                    .values()
                    .filter(|a| a.incident_id.as_deref() == Some(incident_id.as_str()))
                    .map(|a| a.alert_id.clone())
                    .collect();
                for alert_id in related {
                    self.clear_alert(&alert_id, ts, out);
                }
                Ok(())
            }
            CommandOp::AckAlert { alert_id } => {
                let alert = self
                    .alerts
                    .get_mut(alert_id)
                    .ok_or_else(|| format!("unknown or cleared alert {alert_id}"))?;
                if alert.status == AlertStatus::Acknowledged {
                    return Err(format!("alert {alert_id} is already acknowledged"));
                }
                alert.status = AlertStatus::Acknowledged;
                alert.acknowledged_by = Some(cmd.issued_by.clone());
                let view = alert.clone();
                self.emit(
                    out,
                    ts,
                    view.district.clone(),
                    EventBody::AlertAcknowledged(view),
                );
                Ok(())
            }
            CommandOp::SetPriority {
                incident_id,
                priority,
            } => {
                self.open_incident_or_reason(incident_id)?;
                let Some(inc) = self.incidents.get_mut(incident_id) else {
                    return Err(format!("unknown incident {incident_id}"));
                };
                if inc.view.priority == *priority {
                    return Err(format!(
                        "incident {incident_id} already has priority {priority}"
                    ));
                }
                inc.view.priority = *priority;
                inc.view.updated_at = ts;
                let view = inc.view.clone();
                self.reschedule_deadline(incident_id);
                let view = self
                    .incidents
                    .get(incident_id)
                    .map(|i| i.view.clone())
                    .unwrap_or(view);
                self.emit(
                    out,
                    ts,
                    view.district.clone(),
                    EventBody::IncidentUpdated(view.clone()),
                );
                if view.assigned_units.is_empty() {
                    self.recommend(incident_id, ts, out);
                }
                Ok(())
            }
        }
    }
}

fn line_name(line: ioc_model::Line) -> &'static str {
    match line {
        ioc_model::Line::Police => "113",
        ioc_model::Line::FireRescue => "114",
        ioc_model::Line::Ambulance => "115",
    }
}

#[cfg(test)]
mod tests;

/// Kinds a recommendation offered fewer candidates of than it needed.
fn short_of(rec: &DispatchRecommendation) -> BTreeSet<UnitKind> {
    rec.needs
        .iter()
        .filter(|n| {
            let offered = rec.candidates.iter().filter(|c| c.kind == n.kind).count();
            offered < n.count as usize
        })
        .map(|n| n.kind)
        .collect()
}
