//! Engine tests: behaviour examples and property tests of the invariants.

use super::*;
use ioc_model::{IncidentSource, Line, Location};
use proptest::prelude::*;

fn zones() -> Arc<Zones> {
    // Loaded once per test binary: building the lookup grid is not free.
    static ZONES: std::sync::OnceLock<Arc<Zones>> = std::sync::OnceLock::new();
    Arc::clone(ZONES.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data/danang/districts.geojson"
        );
        Arc::new(Zones::load(std::path::Path::new(path)).unwrap())
    }))
}

fn t(s: i64) -> Timestamp {
    // 2026-11-23T08:00:00Z + s seconds
    Timestamp::from_unix_millis(1_795_420_800_000 + s * 1000)
}

/// Time-driven alerts off: the examples below look at one behaviour each.
fn quiet() -> EngineConfig {
    EngineConfig {
        alerts: AlertPolicy::off(),
        ..EngineConfig::default()
    }
}

fn engine() -> Engine {
    Engine::new(quiet(), zones(), 0)
}

fn unit(id: &str, kind: UnitKind, status: UnitStatus, s: i64) -> Input {
    Input::Unit(UnitStatusReport {
        unit_id: id.into(),
        ts: t(s),
        kind,
        status,
        station: None,
        home_district: None,
    })
}

fn ping(id: &str, lat: f64, lon: f64, s: i64) -> Input {
    Input::Position(PositionPing {
        unit_id: id.into(),
        ts: t(s),
        lat,
        lon,
        speed_kmh: None,
        heading_deg: None,
    })
}

fn call(id: &str, cat: Category, lat: f64, lon: f64, s: i64) -> Input {
    Input::Call(EmergencyCall {
        call_id: id.into(),
        received_at: t(s),
        line: Line::Ambulance,
        location: Location {
            lat,
            lon,
            accuracy_m: None,
        },
        category: cat,
        caller: Some("0905123467".into()),
        note: None,
    })
}

/// Call `c1` at t+100 s (opens `inc-c1`) and command `k1` closing it at
/// t+200 s: the dedupe ids of the retention tests.
fn call_then_close() -> (Input, Input) {
    let c1 = call("c1", Category::Medical, 16.0678, 108.2208, 100);
    let close = command(
        "k1",
        CommandOp::CloseIncident {
            incident_id: "inc-c1".into(),
        },
        200,
    );
    (c1, close)
}

fn command(id: &str, op: CommandOp, s: i64) -> Input {
    Input::Command(Command {
        command_id: id.into(),
        ts: t(s),
        issued_by: "disp-1".into(),
        op,
    })
}

fn types(evs: &[OutputEvent]) -> Vec<&'static str> {
    evs.iter().map(|e| e.body.type_name()).collect()
}

fn with_fleet(e: &mut Engine) {
    with_fleet_log(e, &mut Vec::new());
}

#[test]
fn a_call_opens_an_incident_in_its_district_and_recommends_nearest_by_eta() {
    let mut e = engine();
    with_fleet(&mut e);
    let evs = e
        .apply(&call("c1", Category::Medical, 16.0678, 108.2208, 100))
        .unwrap();
    assert_eq!(
        types(&evs),
        vec!["incident.opened", "alert.raised", "dispatch.recommended"]
    );
    assert_eq!(evs[0].district.as_deref(), Some("hai_chau"));
    let EventBody::DispatchRecommended(rec) = &evs[2].body else {
        panic!("expected a recommendation")
    };
    assert!(!rec.auto_assign);
    let ids: Vec<&str> = rec.candidates.iter().map(|c| c.unit_id.as_str()).collect();
    assert_eq!(ids, vec!["amb-1", "amb-2", "amb-3"]);
    assert!(rec.candidates.windows(2).all(|w| w[0].eta_s <= w[1].eta_s));
    // seq is gap-free and increasing
    assert!(evs.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[test]
fn priority_one_is_auto_assigned_and_the_units_become_busy() {
    let mut e = engine();
    with_fleet(&mut e);
    let evs = e
        .apply(&call("c1", Category::Fire, 16.0678, 108.2208, 100))
        .unwrap();
    let assigned: Vec<&str> = evs
        .iter()
        .filter_map(|ev| match &ev.body {
            EventBody::DispatchAssigned(a) => Some(a.unit_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(assigned, vec!["amb-1", "fire-1", "fire-2"]);
    let inc = e.incidents().next().unwrap();
    assert_eq!(inc.status, IncidentStatus::Dispatched);
    assert_eq!(e.index().available_count(UnitKind::FireEngine), 0);
    // A second fire finds no fire engine left, and says so.
    let evs = e
        .apply(&call("c2", Category::Fire, 16.0100, 108.2500, 200))
        .unwrap();
    let rec = evs
        .iter()
        .find_map(|ev| match &ev.body {
            EventBody::DispatchRecommended(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert!(rec.unfilled.contains(&UnitKind::FireEngine));
}

#[test]
fn a_nearby_call_of_the_same_kind_attaches_to_the_open_incident() {
    let mut e = engine();
    with_fleet(&mut e);
    e.apply(&call("c1", Category::Medical, 16.0678, 108.2208, 100))
        .unwrap();
    let evs = e
        .apply(&call("c2", Category::Medical, 16.0690, 108.2210, 160))
        .unwrap();
    assert_eq!(types(&evs), vec!["incident.updated"]);
    let EventBody::IncidentUpdated(v) = &evs[0].body else {
        panic!()
    };
    assert_eq!(v.call_count, 2);
    let c = v.correlation.as_ref().unwrap();
    assert_eq!(c.call_id, "c2");
    assert!(
        c.distance_m > 100.0 && c.distance_m < 300.0,
        "{}",
        c.distance_m
    );
    assert_eq!(c.after_s, 60.0);
    // Far away, or much later, opens a new one.
    let evs = e
        .apply(&call("c3", Category::Medical, 16.0000, 108.2500, 200))
        .unwrap();
    assert_eq!(evs[0].body.type_name(), "incident.opened");
    let evs = e
        .apply(&call(
            "c4",
            Category::Medical,
            16.0678,
            108.2208,
            100 + 3600,
        ))
        .unwrap();
    assert_eq!(evs[0].body.type_name(), "incident.opened");
}

#[test]
fn redelivered_inputs_change_nothing() {
    let mut e = engine();
    with_fleet(&mut e);
    let c = call("c1", Category::Medical, 16.0678, 108.2208, 100);
    assert!(!e.apply(&c).unwrap().is_empty());
    assert!(e.apply(&c).unwrap().is_empty());
    assert!(e
        .apply(&ping("amb-1", 16.07, 108.22, 0))
        .unwrap()
        .is_empty());
    assert_eq!(e.stats().duplicates, 1);
    assert_eq!(e.stats().stale_positions, 1);
}

#[test]
fn a_restored_engine_ignores_inputs_marked_seen() {
    // Build a log the way the processor does, then restore from it.
    let mut e = engine();
    let mut log = Vec::new();
    for (id, kind, lat, lon) in [
        ("amb-1", UnitKind::Ambulance, 16.0700, 108.2200),
        ("amb-2", UnitKind::Ambulance, 16.0300, 108.2000),
    ] {
        log.extend(e.apply(&unit(id, kind, UnitStatus::Available, 1)).unwrap());
        log.extend(e.apply(&ping(id, lat, lon, 1)).unwrap());
    }
    let c1 = call("c1", Category::Medical, 16.0678, 108.2208, 100);
    let assign = command(
        "k1",
        CommandOp::Assign {
            incident_id: "inc-c1".into(),
            unit_id: "amb-1".into(),
        },
        110,
    );
    log.extend(e.apply(&c1).unwrap());
    log.extend(e.apply(&assign).unwrap());

    let mut restored = Engine::restore(EngineConfig::default(), zones(), &log);
    // An accepted command's id appears in no event: the adapter passes it.
    restored.mark_seen(&Engine::dedupe_key(&assign).unwrap());
    assert!(restored.apply(&assign).unwrap().is_empty());
    assert!(restored.apply(&c1).unwrap().is_empty());
    assert_eq!(restored.last_seq(), e.last_seq());
    assert_eq!(Engine::dedupe_key(&ping("amb-1", 16.0, 108.0, 1)), None);
}

/// The default dedupe retention, in seconds.
const WEEK_S: i64 = 7 * 24 * 3600;

fn assign(command_id: &str, incident_id: &str, unit_id: &str, s: i64) -> Input {
    command(
        command_id,
        CommandOp::Assign {
            incident_id: incident_id.into(),
            unit_id: unit_id.into(),
        },
        s,
    )
}

fn rejection(evs: &[OutputEvent]) -> &str {
    match evs {
        [OutputEvent {
            body: EventBody::CommandRejected(r),
            ..
        }] => &r.reason,
        _ => panic!("expected one command.rejected, got {:?}", types(evs)),
    }
}

#[test]
fn redeliveries_are_ignored_within_the_dedupe_retention_and_ids_forgotten_after() {
    assert_eq!(EngineConfig::default().dedupe_retention_s, WEEK_S as u64);
    let mut e = engine();
    with_fleet(&mut e);
    assert_eq!(
        e.stats().seen_ids,
        0,
        "units and pings are not deduped by id"
    );
    let (c1, close) = call_then_close();
    assert!(!e.apply(&c1).unwrap().is_empty());
    assert!(!e.apply(&close).unwrap().is_empty());
    // call:c1, command:k1, closed:inc-c1
    assert_eq!(e.stats().seen_ids, 3);

    // A week later to the millisecond: still remembered.
    e.tick(t(100 + WEEK_S));
    assert!(e.apply(&c1).unwrap().is_empty());
    assert!(e.apply(&close).unwrap().is_empty());
    assert_eq!(e.stats().duplicates, 2);
    let evs = e
        .apply(&assign("k2", "inc-c1", "amb-1", 200 + WEEK_S))
        .unwrap();
    assert_eq!(rejection(&evs), "incident inc-c1 is closed");
    assert_eq!(e.stats().seen_ids, 4);

    // Forgotten an hour at a time: the hour of t(100) and t(200) goes when
    // all of it is older than the retention, at t(3600) + a week.
    e.tick(t(3599 + WEEK_S));
    assert_eq!(e.stats().seen_ids, 4);
    e.tick(t(3600 + WEEK_S));
    assert_eq!(e.stats().seen_ids, 1, "only command:k2 is left");
    let evs = e
        .apply(&assign("k3", "inc-c1", "amb-1", 3601 + WEEK_S))
        .unwrap();
    assert_eq!(rejection(&evs), "unknown incident inc-c1");
    // Redelivered now, they apply again: the ids are gone.
    let evs = e.apply(&close).unwrap();
    assert_eq!(rejection(&evs), "unknown incident inc-c1");
    let evs = e.apply(&c1).unwrap();
    assert_eq!(evs[0].body.type_name(), "incident.opened");
    assert_eq!(e.stats().duplicates, 2);
}

#[test]
fn a_call_or_report_whose_incident_is_still_open_is_ignored_after_its_id_is_forgotten() {
    let mut e = engine();
    with_fleet(&mut e);
    let c2 = call("c2", Category::Medical, 16.0678, 108.2208, 100);
    let report = Input::Incident(IncidentReport {
        incident_id: "cam-7".into(),
        reported_at: t(50),
        source: IncidentSource::Camera,
        category: Category::TrafficAccident,
        priority: 3,
        location: Location {
            lat: 16.0500,
            lon: 108.2400,
            accuracy_m: None,
        },
        description: None,
    });
    assert!(!e.apply(&c2).unwrap().is_empty());
    assert!(!e.apply(&report).unwrap().is_empty());
    assert_eq!(e.stats().seen_ids, 2);
    e.tick(t(3600 + WEEK_S));
    assert_eq!(e.stats().seen_ids, 0);
    assert_eq!(e.incidents().count(), 2);
    assert!(e.apply(&c2).unwrap().is_empty(), "inc-c2 is still open");
    assert!(e.apply(&report).unwrap().is_empty(), "cam-7 is still open");
    assert_eq!(e.stats().duplicates, 2);
    assert_eq!(
        e.stats().seen_ids,
        0,
        "not recorded again, as a restore would not"
    );
}

#[test]
fn a_restored_engine_forgets_the_same_ids_as_the_live_one() {
    let mut live = engine();
    let mut log = Vec::new();
    with_fleet_log(&mut live, &mut log);
    let mut causes = Vec::new();
    // (log length, causes length, the live engine) after each input.
    let mut checkpoints = Vec::new();
    let mut step = |e: &mut Engine, input: Input| {
        let evs = e.apply(&input).unwrap();
        if let (Some(key), Some(at)) =
            (Engine::dedupe_key(&input), evs.iter().map(|ev| ev.ts).max())
        {
            causes.push((key, at));
        }
        log.extend(evs.iter().cloned());
        checkpoints.push((log.len(), causes.len(), e.clone()));
        evs
    };
    let h = 3600;
    let (c1, close) = call_then_close();
    step(&mut live, c1.clone());
    step(&mut live, close.clone());
    // Rejected: known from the log; its id is on the event.
    step(&mut live, assign("k2", "inc-c1", "amb-1", 300));
    // The next hour: an incident, a second call attached to it, a command.
    let c2 = call("c2", Category::Fire, 16.0600, 108.2100, 2 * h);
    let c3 = call("c3", Category::Fire, 16.0601, 108.2101, 2 * h + 60);
    step(&mut live, c2.clone());
    let evs = step(&mut live, c3.clone());
    assert_eq!(evs[0].body.type_name(), "incident.updated");
    let set_priority = |id: &str, p: u8, s: i64| {
        command(
            id,
            CommandOp::SetPriority {
                incident_id: "inc-c2".into(),
                priority: p,
            },
            s,
        )
    };
    step(&mut live, set_priority("k4", 4, 2 * h + 120));
    // The first hour has expired: c1's ids are gone, c2's and c3's not.
    step(&mut live, set_priority("k5", 3, 2 * h + 1800 + WEEK_S));
    let ids: Vec<String> = live.seen.snapshot().into_keys().collect();
    assert_eq!(ids, ["call:c2", "call:c3", "command:k4", "command:k5"]);
    // Past the second hour too. This update still names inc-c2 and its
    // correlated call c3: they must not be remembered again on restore.
    let evs = step(&mut live, set_priority("k6", 4, 4 * h + WEEK_S));
    let EventBody::IncidentUpdated(v) = &evs[0].body else {
        panic!("expected incident.updated, got {:?}", types(&evs))
    };
    assert_eq!(v.correlation.as_ref().unwrap().call_id, "c3");
    let ids: Vec<String> = live.seen.snapshot().into_keys().collect();
    assert_eq!(ids, ["command:k5", "command:k6"]);

    // Restored from the log after each input, the causes marked as the
    // processor does: it remembers what the live engine did then.
    for (n_events, n_causes, then) in &checkpoints {
        let restored = restore_marked(quiet(), &log[..*n_events], &causes[..*n_causes]);
        check_same_seen(then, &restored).unwrap();
    }
    let mut restored = restore_marked(quiet(), &log, &causes);
    check_same_seen(&live, &restored).unwrap();
    assert_eq!(restored.stats().seen_ids, 2);

    // Both treat redeliveries alike: the forgotten close is refused as
    // unknown, c1 opens again, c3 attaches again, c2 is ignored (open).
    for input in [close, c1, c3, c2] {
        assert_eq!(
            restored.apply(&input).unwrap(),
            live.apply(&input).unwrap(),
            "{input:?}"
        );
    }
    check_same_seen(&live, &restored).unwrap();
}

#[test]
fn positions_for_unknown_units_are_rejected_with_a_reason() {
    let mut e = engine();
    let err = e.apply(&ping("ghost", 16.0, 108.2, 1)).unwrap_err();
    assert!(err.0.contains("unknown unit"), "{err}");
    assert_eq!(e.last_seq(), 0);
}

#[test]
fn commands_assign_unassign_close_and_reject_with_reasons() {
    let mut e = engine();
    with_fleet(&mut e);
    e.apply(&call("c1", Category::Medical, 16.0678, 108.2208, 100))
        .unwrap();
    e.apply(&call("c2", Category::Medical, 16.0100, 108.2500, 101))
        .unwrap();
    let assign = |cid: &str, inc: &str, u: &str| {
        command(
            cid,
            CommandOp::Assign {
                incident_id: inc.into(),
                unit_id: u.into(),
            },
            110,
        )
    };
    let evs = e.apply(&assign("k1", "inc-c1", "amb-1")).unwrap();
    assert_eq!(types(&evs)[0], "dispatch.assigned");
    // The same unit on a second incident: refused.
    let evs = e.apply(&assign("k2", "inc-c2", "amb-1")).unwrap();
    let EventBody::CommandRejected(r) = &evs[0].body else {
        panic!("{:?}", types(&evs))
    };
    assert!(r.reason.contains("already assigned"), "{}", r.reason);
    let evs = e
        .apply(&command(
            "k3",
            CommandOp::Unassign {
                incident_id: "inc-c1".into(),
                unit_id: "amb-1".into(),
            },
            120,
        ))
        .unwrap();
    assert!(types(&evs).contains(&"dispatch.unassigned"));
    let evs = e
        .apply(&command(
            "k4",
            CommandOp::CloseIncident {
                incident_id: "inc-c1".into(),
            },
            130,
        ))
        .unwrap();
    assert_eq!(types(&evs)[0], "incident.closed");
    let evs = e.apply(&assign("k5", "inc-c1", "amb-2")).unwrap();
    let EventBody::CommandRejected(r) = &evs[0].body else {
        panic!()
    };
    assert!(r.reason.contains("closed"), "{}", r.reason);
}

#[test]
fn unassigned_incidents_escalate_at_their_deadline_and_clear_on_assign() {
    let mut e = engine();
    with_fleet(&mut e);
    e.apply(&call("c1", Category::Medical, 16.0678, 108.2208, 100))
        .unwrap();
    assert!(e.tick(t(100 + 179)).is_empty());
    let evs = e.tick(t(100 + 180));
    assert_eq!(types(&evs), vec!["alert.raised"]);
    let EventBody::AlertRaised(a) = &evs[0].body else {
        panic!()
    };
    assert_eq!(a.kind, AlertKind::UnassignedDeadline);
    assert!(e.tick(t(100 + 500)).is_empty(), "raised once");
    let evs = e
        .apply(&command(
            "k1",
            CommandOp::Assign {
                incident_id: "inc-c1".into(),
                unit_id: "amb-1".into(),
            },
            600,
        ))
        .unwrap();
    assert!(evs.iter().any(|ev| matches!(&ev.body, EventBody::AlertCleared(a) if a.kind == AlertKind::UnassignedDeadline)));
}

#[test]
fn incident_reports_keep_their_id_and_priority() {
    let mut e = engine();
    with_fleet(&mut e);
    let evs = e
        .apply(&Input::Incident(IncidentReport {
            incident_id: "cam-7".into(),
            reported_at: t(50),
            source: IncidentSource::Camera,
            category: Category::TrafficAccident,
            priority: 3,
            location: Location {
                lat: 21.0,
                lon: 105.8,
                accuracy_m: None,
            },
            description: None,
        }))
        .unwrap();
    let EventBody::IncidentOpened(v) = &evs[0].body else {
        panic!()
    };
    assert_eq!(v.incident_id, "cam-7");
    assert_eq!(v.priority, 3);
    assert_eq!(v.source, "camera");
    assert_eq!(
        evs[0].district, None,
        "outside every zone: kept with a null district"
    );
}

// ---- property tests ----

#[derive(Debug, Clone)]
enum Step {
    Call(u8, u8, f64, f64),
    Status(u8, u8),
    Ping(u8, f64, f64),
    /// A small move from the unit's last ping (plausible speed), with a
    /// reported speed sometimes, so speeds are learned.
    Move(u8, f64, f64, Option<f64>),
    Assign(u8, u8),
    Unassign(u8, u8),
    Close(u8),
    Tick(u16),
}

fn step() -> impl Strategy<Value = Step> {
    let lat = 15.95f64..16.15;
    let lon = 108.10f64..108.30;
    prop_oneof![
        (0u8..7, 0u8..30, lat.clone(), lon.clone()).prop_map(|(c, i, a, o)| Step::Call(c, i, a, o)),
        (0u8..12, 0u8..6).prop_map(|(u, s)| Step::Status(u, s)),
        (0u8..12, lat, lon).prop_map(|(u, a, o)| Step::Ping(u, a, o)),
        (
            0u8..12,
            -0.0004f64..0.0004,
            -0.0004f64..0.0004,
            prop::option::of(0.0f64..120.0)
        )
            .prop_map(|(u, a, o, v)| Step::Move(u, a, o, v)),
        (0u8..30, 0u8..12).prop_map(|(i, u)| Step::Assign(i, u)),
        (0u8..30, 0u8..12).prop_map(|(i, u)| Step::Unassign(i, u)),
        (0u8..30).prop_map(Step::Close),
        (1u16..600).prop_map(Step::Tick),
    ]
}

const STATUSES: [UnitStatus; 6] = [
    UnitStatus::Available,
    UnitStatus::Dispatched,
    UnitStatus::EnRoute,
    UnitStatus::OnScene,
    UnitStatus::Returning,
    UnitStatus::OutOfService,
];

fn to_inputs(steps: &[Step]) -> Vec<Result<Input, Timestamp>> {
    to_inputs_scaled(steps, 1)
}

/// [`to_inputs`] with ticks `tick_scale` times longer (hours rather than
/// minutes, to let dedupe ids expire within a run).
fn to_inputs_scaled(steps: &[Step], tick_scale: i64) -> Vec<Result<Input, Timestamp>> {
    let mut s = 1000i64;
    let mut out = Vec::new();
    let mut last: BTreeMap<u8, (f64, f64)> = BTreeMap::new();
    for (n, st) in steps.iter().enumerate() {
        s += 1;
        let uid = |u: u8| format!("u{u}");
        let kind = |u: u8| UnitKind::ALL[(u % 4) as usize];
        out.push(match st {
            Step::Call(c, i, lat, lon) => Ok(call(
                &format!("c{i}"),
                Category::ALL[*c as usize],
                *lat,
                *lon,
                s,
            )),
            Step::Status(u, st) => Ok(unit(&uid(*u), kind(*u), STATUSES[*st as usize], s)),
            Step::Ping(u, lat, lon) => {
                last.insert(*u, (*lat, *lon));
                Ok(ping(&uid(*u), *lat, *lon, s))
            }
            Step::Move(u, dlat, dlon, v) => {
                let (lat, lon) = last.get(u).copied().unwrap_or((16.05, 108.2));
                let (lat, lon) = (lat + dlat, lon + dlon);
                last.insert(*u, (lat, lon));
                Ok(Input::Position(PositionPing {
                    unit_id: uid(*u),
                    ts: t(s),
                    lat,
                    lon,
                    speed_kmh: *v,
                    heading_deg: None,
                }))
            }
            Step::Assign(i, u) => Ok(command(
                &format!("k{n}"),
                CommandOp::Assign {
                    incident_id: format!("inc-c{i}"),
                    unit_id: uid(*u),
                },
                s,
            )),
            Step::Unassign(i, u) => Ok(command(
                &format!("k{n}"),
                CommandOp::Unassign {
                    incident_id: format!("inc-c{i}"),
                    unit_id: uid(*u),
                },
                s,
            )),
            Step::Close(i) => Ok(command(
                &format!("k{n}"),
                CommandOp::CloseIncident {
                    incident_id: format!("inc-c{i}"),
                },
                s,
            )),
            Step::Tick(d) => {
                s += i64::from(*d) * tick_scale;
                Err(t(s))
            }
        });
    }
    out
}

fn run(e: &mut Engine, inputs: &[Result<Input, Timestamp>]) -> Vec<OutputEvent> {
    run_logged(e, inputs).0
}

/// [`run`], and the causes the processor writes on the log with the
/// outputs: each input's dedupe key, with the log's latest time through its
/// outputs (what a restore's clock is there).
fn run_logged(
    e: &mut Engine,
    inputs: &[Result<Input, Timestamp>],
) -> (Vec<OutputEvent>, Vec<(String, Timestamp)>) {
    let mut all = Vec::new();
    let mut causes = Vec::new();
    let mut latest = Timestamp::default();
    for i in inputs {
        let evs = match i {
            Ok(input) => e.apply(input).unwrap_or_default(),
            Err(now) => e.tick(*now),
        };
        latest = evs.iter().map(|ev| ev.ts).fold(latest, Timestamp::max);
        if let (Ok(input), false) = (i, evs.is_empty()) {
            causes.extend(Engine::dedupe_key(input).map(|k| (k, latest)));
        }
        all.extend(evs);
    }
    (all, causes)
}

/// Restores from `log` as the processor does, the causes marked seen at
/// the time of the events that carried them.
fn restore_marked(
    config: EngineConfig,
    log: &[OutputEvent],
    causes: &[(String, Timestamp)],
) -> Engine {
    let mut e = Engine::restore(config, zones(), log);
    for (key, at) in causes {
        e.mark_seen_at(key, *at);
    }
    e
}

/// The restored engine remembers every id the live one does, recorded at
/// the same time (so it forgets it at the same time), and nothing more but
/// the ids of incidents opened by calls (the live engine knows those by
/// their call's id, recorded at the same time).
fn check_same_seen(live: &Engine, restored: &Engine) -> Result<(), TestCaseError> {
    let (a, b) = (live.seen.snapshot(), restored.seen.snapshot());
    for (k, t) in &a {
        prop_assert_eq!(
            b.get(k),
            Some(t),
            "live id {} restored as {:?}",
            k,
            b.get(k)
        );
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        let call = k.strip_prefix("incident:inc-").map(|c| format!("call:{c}"));
        prop_assert!(
            call.is_some_and(|c| b.get(&c) == b.get(k)),
            "restored remembers {} the live engine does not",
            k
        );
    }
    for e in [live, restored] {
        prop_assert_eq!(e.stats().seen_ids, e.seen.len() as u64);
    }
    Ok(())
}

/// No unit on two incidents, and incident and unit views agree.
fn check_one_incident_per_unit(e: &Engine) -> Result<(), TestCaseError> {
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for inc in e.incidents() {
        for u in &inc.assigned_units {
            prop_assert!(
                owner.insert(u, &inc.incident_id).is_none(),
                "unit {} on two incidents",
                u
            );
        }
    }
    for u in e.units() {
        match &u.incident_id {
            Some(i) => prop_assert_eq!(owner.get(u.unit_id.as_str()).copied(), Some(i.as_str())),
            None => prop_assert!(!owner.contains_key(u.unit_id.as_str())),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn engine_invariants_hold_for_any_input_sequence(steps in prop::collection::vec(step(), 1..150)) {
        let inputs = to_inputs(&steps);
        // Everything on, defaults: surge, stale GPS, coverage, swaps, jumps.
        let mut e = Engine::new(EngineConfig::default(), zones(), 0);
        let (events, causes) = run_logged(&mut e, &inputs);

        // seq strictly increasing and gap-free from 1
        for (i, ev) in events.iter().enumerate() {
            prop_assert_eq!(ev.seq, i as u64 + 1);
        }
        check_one_incident_per_unit(&e)?;
        // Every open incident is assigned, or was recommended, or escalated.
        for inc in e.incidents() {
            let recommended = events.iter().any(|ev| matches!(&ev.body, EventBody::DispatchRecommended(r) if r.incident_id == inc.incident_id));
            prop_assert!(!inc.assigned_units.is_empty() || recommended, "incident {} neither assigned nor recommended", inc.incident_id);
        }
        // Available units in the index are exactly the available, located units.
        for kind in UnitKind::ALL {
            let want = e.units().filter(|u| u.kind == kind && u.status == UnitStatus::Available && u.position.is_some()).count();
            prop_assert_eq!(e.index().available_count(kind), want);
        }

        // Replaying the same inputs gives the same outputs.
        let mut again = Engine::new(EngineConfig::default(), zones(), 0);
        prop_assert_eq!(run(&mut again, &inputs), events.clone());

        // Restoring from the output log gives the same state, and the
        // restored engine continues exactly like the original.
        let restored = Engine::restore(EngineConfig::default(), zones(), &events);
        prop_assert_eq!(restored.last_seq(), e.last_seq());
        prop_assert_eq!(restored.incidents().collect::<Vec<_>>(), e.incidents().collect::<Vec<_>>());
        prop_assert_eq!(restored.units().collect::<Vec<_>>(), e.units().collect::<Vec<_>>());
        prop_assert_eq!(restored.alerts().collect::<Vec<_>>(), e.alerts().collect::<Vec<_>>());
        for kind in UnitKind::ALL {
            prop_assert_eq!(restored.index().available_count(kind), e.index().available_count(kind));
        }
        prop_assert_eq!(restored.learned_speeds(), e.learned_speeds());
        // ... and the same dedupe ids, once the causes on the log are marked.
        check_same_seen(&e, &restore_marked(EngineConfig::default(), &events, &causes))?;

        // Redelivering every input a second time changes nothing more
        // except clock-driven alerts, which are idempotent too.
        let replayed = run(&mut e, &inputs);
        prop_assert!(replayed.iter().all(|ev| !matches!(ev.body, EventBody::IncidentOpened(_) | EventBody::DispatchAssigned(_))), "replay opened or assigned again");
    }

    /// Runs of many hours with a one-hour dedupe retention: ids expire,
    /// and call ids come again after they are forgotten. The live engine
    /// and one restored from its log remember and forget the same ids.
    #[test]
    fn live_and_restored_engines_forget_the_same_dedupe_ids(steps in prop::collection::vec(step(), 1..150)) {
        let config = EngineConfig { dedupe_retention_s: 3600, ..EngineConfig::default() };
        let inputs = to_inputs_scaled(&steps, 20);
        let mut live = Engine::new(config.clone(), zones(), 0);
        let (mut events, mut causes) = (Vec::new(), Vec::new());
        let mut restored = Engine::new(config.clone(), zones(), 0);
        // Restored after every few inputs: ids re-recorded after they were
        // forgotten (a call id coming again) must be as live.
        for chunk in inputs.chunks(8) {
            let (evs, cs) = run_logged(&mut live, chunk);
            events.extend(evs);
            causes.extend(cs);
            restored = restore_marked(config.clone(), &events, &causes);
            // The live clock may have moved on without output.
            restored.tick(live.clock);
            check_same_seen(&live, &restored)?;
        }
        check_one_incident_per_unit(&live)?;
        let mut again = Engine::new(config.clone(), zones(), 0);
        prop_assert_eq!(run(&mut again, &inputs), events.clone());
        prop_assert_eq!(again.seen.snapshot(), live.seen.snapshot());
        prop_assert_eq!(restored.incidents().collect::<Vec<_>>(), live.incidents().collect::<Vec<_>>());
        let now = live.clock;
        for later_s in [600, 1800, 3600, 5400, 7200] {
            let at = now.plus_millis(later_s * 1000);
            live.tick(at);
            restored.tick(at);
            check_same_seen(&live, &restored)?;
        }
        // Retention + the bucket after the last id: all forgotten.
        prop_assert_eq!(live.stats().seen_ids, 0);
        prop_assert_eq!(restored.stats().seen_ids, 0);
    }
}

// ---- ETA, fixes, swaps, jumps, alerts ----

fn ping_at(id: &str, lat: f64, lon: f64, s: i64, kmh: Option<f64>) -> Input {
    Input::Position(PositionPing {
        unit_id: id.into(),
        ts: t(s),
        lat,
        lon,
        speed_kmh: kmh,
        heading_deg: None,
    })
}

fn recommendation(evs: &[OutputEvent]) -> &DispatchRecommendation {
    evs.iter()
        .find_map(|ev| match &ev.body {
            EventBody::DispatchRecommended(r) => Some(r),
            _ => None,
        })
        .expect("a recommendation")
}

fn alerts_of(evs: &[OutputEvent], kind: AlertKind) -> Vec<(&'static str, &AlertView)> {
    evs.iter()
        .filter_map(|ev| match &ev.body {
            EventBody::AlertRaised(a) if a.kind == kind => Some(("raised", a)),
            EventBody::AlertCleared(a) if a.kind == kind => Some(("cleared", a)),
            _ => None,
        })
        .collect()
}

#[test]
fn eta_uses_speeds_learned_from_responding_units_once_there_are_enough() {
    let mut config = quiet();
    config.eta.learning.min_samples = 5;
    let mut e = Engine::new(config, zones(), 0);
    // A responding ambulance drives around Hai Chau at a reported 20 km/h.
    e.apply(&unit(
        "amb-busy",
        UnitKind::Ambulance,
        UnitStatus::EnRoute,
        0,
    ))
    .unwrap();
    for i in 0..4 {
        e.apply(&ping_at("amb-busy", 16.0600, 108.2150, i, Some(20.0)))
            .unwrap();
    }
    // An available one: its pings are not driving-to-a-scene speeds.
    e.apply(&unit(
        "amb-1",
        UnitKind::Ambulance,
        UnitStatus::Available,
        0,
    ))
    .unwrap();
    e.apply(&ping_at("amb-1", 16.0700, 108.2200, 5, Some(80.0)))
        .unwrap();
    assert_eq!(e.stats().speed_samples, 4);
    let evs = e
        .apply(&call("c1", Category::Medical, 16.0678, 108.2208, 10))
        .unwrap();
    let c = &recommendation(&evs).candidates[0];
    assert!(c.reason.contains("default 45 km/h"), "{}", c.reason);
    let default_eta = c.eta_s;
    // The fifth sample makes the bucket (ambulance, hai_chau, this hour) speak.
    e.apply(&ping_at("amb-busy", 16.0601, 108.2150, 20, Some(20.0)))
        .unwrap();
    let evs = e
        .apply(&call("c2", Category::Medical, 16.0645, 108.2190, 30))
        .unwrap();
    let c = &recommendation(&evs).candidates[0];
    assert_eq!(c.unit_id, "amb-1");
    assert!(
        c.reason.contains("eta at learned 20 km/h (5 samples)"),
        "{}",
        c.reason
    );
    assert!(!c.reason.contains(" from, "), "one zone: {}", c.reason);
    let want = c.distance_m * 1.35 / (20.0 / 3.6);
    assert!((c.eta_s - want).abs() <= 1.0, "{} vs {want}", c.eta_s);
    assert!(c.eta_s > default_eta);
    // Restore rebuilds the same table from the log's unit.updated events.
    let log: Vec<OutputEvent> = {
        let mut again = Engine::new(e.config.clone(), zones(), 0);
        let mut all = Vec::new();
        for input in [
            unit("amb-busy", UnitKind::Ambulance, UnitStatus::EnRoute, 0),
            ping_at("amb-busy", 16.06, 108.215, 1, Some(20.0)),
            ping_at("amb-busy", 16.0601, 108.215, 2, None),
        ] {
            all.extend(again.apply(&input).unwrap());
        }
        assert_eq!(again.learned_speeds().samples_total(), 2);
        let restored = Engine::restore(again.config.clone(), zones(), &all);
        assert_eq!(restored.learned_speeds(), again.learned_speeds());
        all
    };
    assert!(!log.is_empty());
}

#[test]
fn stale_fixes_are_ranked_down_and_very_old_ones_excluded_with_the_reason() {
    let mut e = engine();
    for (id, s) in [("amb-old", 0), ("amb-stale", 1000), ("amb-fresh", 1500)] {
        e.apply(&unit(id, UnitKind::Ambulance, UnitStatus::Available, s))
            .unwrap();
    }
    // Nearest, but its last fix is 40 min old at the call: excluded.
    e.apply(&ping_at("amb-old", 16.0680, 108.2210, 0, None))
        .unwrap();
    // Next nearest, fix 10 min old: ranked down 8 min × 30 s = 240 s.
    e.apply(&ping_at("amb-stale", 16.0700, 108.2200, 1800, None))
        .unwrap();
    // Further, but fresh.
    e.apply(&ping_at("amb-fresh", 16.0750, 108.2250, 2395, None))
        .unwrap();
    let evs = e
        .apply(&call("c1", Category::Medical, 16.0678, 108.2208, 2400))
        .unwrap();
    let rec = recommendation(&evs);
    let ids: Vec<&str> = rec.candidates.iter().map(|c| c.unit_id.as_str()).collect();
    assert_eq!(ids, vec!["amb-fresh", "amb-stale"]);
    assert!(
        rec.candidates[0].eta_s > rec.candidates[1].eta_s,
        "fresh is further"
    );
    assert!(
        rec.candidates[1]
            .reason
            .contains("stale fix 10 min ago, ranked down 240 s"),
        "{}",
        rec.candidates[1].reason
    );
    assert!(rec.candidates[0].reason.starts_with("#1 by eta"));
    assert_eq!(rec.excluded.len(), 1);
    assert_eq!(rec.excluded[0].unit_id, "amb-old");
    assert!(
        rec.excluded[0].reason.contains("last fix 40 min ago"),
        "{}",
        rec.excluded[0].reason
    );
}

#[test]
fn ranking_is_the_exact_top_k_by_score_not_the_k_nearest() {
    // Five fresh ambulances in a line and one nearer but stale: asking for
    // 3 must walk past the stale one and still return the 3 best scores.
    let mut e = engine();
    for i in 0..5 {
        let id = format!("amb-{i}");
        e.apply(&unit(&id, UnitKind::Ambulance, UnitStatus::Available, 0))
            .unwrap();
        e.apply(&ping_at(
            &id,
            16.0700 + 0.002 * i as f64,
            108.2208,
            590,
            None,
        ))
        .unwrap();
    }
    e.apply(&unit(
        "amb-near",
        UnitKind::Ambulance,
        UnitStatus::Available,
        0,
    ))
    .unwrap();
    e.apply(&ping_at("amb-near", 16.0680, 108.2208, 1, None))
        .unwrap();
    let (ranked, _) = e.rank(UnitKind::Ambulance, 16.0678, 108.2208, 3, t(600));
    let ids: Vec<&str> = ranked.iter().map(|r| r.unit_id.as_str()).collect();
    assert_eq!(ids, vec!["amb-0", "amb-1", "amb-2"]);
    // Brute force over every unit agrees.
    let mut all: Vec<(f64, String)> = e
        .units()
        .map(|u| {
            let (r, _) = e.rank(UnitKind::Ambulance, 16.0678, 108.2208, 10, t(600));
            let s = r.iter().find(|x| x.unit_id == u.unit_id).unwrap().score;
            (s, u.unit_id.clone())
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let want: Vec<&str> = all.iter().take(3).map(|x| x.1.as_str()).collect();
    assert_eq!(ids, want);
}

#[test]
fn a_closer_unit_becoming_available_is_suggested_in_place_of_a_far_one() {
    let mut e = engine();
    e.apply(&unit(
        "amb-far",
        UnitKind::Ambulance,
        UnitStatus::Available,
        0,
    ))
    .unwrap();
    e.apply(&ping_at("amb-far", 16.0000, 108.2500, 0, None))
        .unwrap();
    e.apply(&unit(
        "amb-near",
        UnitKind::Ambulance,
        UnitStatus::OnScene,
        0,
    ))
    .unwrap();
    e.apply(&ping_at("amb-near", 16.0690, 108.2210, 0, None))
        .unwrap();
    e.apply(&call("c1", Category::Medical, 16.0678, 108.2208, 10))
        .unwrap();
    e.apply(&command(
        "k1",
        CommandOp::Assign {
            incident_id: "inc-c1".into(),
            unit_id: "amb-far".into(),
        },
        20,
    ))
    .unwrap();
    // The crew on scene nearby finishes and reports available.
    let evs = e
        .apply(&unit(
            "amb-near",
            UnitKind::Ambulance,
            UnitStatus::Available,
            60,
        ))
        .unwrap();
    let rec = recommendation(&evs);
    let swap = rec.swap.as_ref().expect("a swap suggestion");
    assert_eq!(rec.incident_id, "inc-c1");
    assert_eq!(swap.replace_unit_id, "amb-far");
    assert_eq!(swap.with_unit_id, "amb-near");
    assert!(swap.eta_gain_s >= 90.0, "{swap:?}");
    assert_eq!(swap.eta_gain_s, swap.replace_eta_s - swap.with_eta_s);
    assert!(rec.needs.is_empty() && !rec.auto_assign);
    assert_eq!(rec.candidates[0].unit_id, "amb-near");
    assert_eq!(e.stats().swap_suggestions, 1);
    // A unit that would gain little is not suggested.
    e.apply(&unit(
        "amb-mid",
        UnitKind::Ambulance,
        UnitStatus::OnScene,
        0,
    ))
    .unwrap();
    e.apply(&ping_at("amb-mid", 16.0010, 108.2500, 61, None))
        .unwrap();
    let evs = e
        .apply(&unit(
            "amb-mid",
            UnitKind::Ambulance,
            UnitStatus::Available,
            62,
        ))
        .unwrap();
    assert!(!evs
        .iter()
        .any(|ev| matches!(&ev.body, EventBody::DispatchRecommended(_))));
}

#[test]
fn gps_jumps_are_refused_counted_and_a_confirmed_move_is_accepted() {
    let mut e = engine();
    e.apply(&unit("pol-1", UnitKind::Police, UnitStatus::Available, 0))
        .unwrap();
    e.apply(&ping_at("pol-1", 16.0600, 108.2100, 0, None))
        .unwrap();
    // 50 m in 5 s: fine. 20 km in 10 s: a jump.
    e.apply(&ping_at("pol-1", 16.0604, 108.2100, 5, None))
        .unwrap();
    let err = e
        .apply(&ping_at("pol-1", 16.2400, 108.2100, 15, None))
        .unwrap_err();
    assert!(
        err.0
            .starts_with("gps jump: unit pol-1 moved 20.0 km in 10 s"),
        "{err}"
    );
    assert_eq!(e.stats().gps_jumps, 1);
    let seq = e.last_seq();
    // Back where it was: accepted, the outlier forgotten.
    e.apply(&ping_at("pol-1", 16.0605, 108.2100, 20, None))
        .unwrap();
    assert!(e.last_seq() > seq);
    // Two consistent fixes far away: the unit really is there (e.g. the
    // previous fix was the wrong one), accepted on the second.
    assert!(e
        .apply(&ping_at("pol-1", 16.3000, 108.2100, 25, None))
        .is_err());
    let evs = e
        .apply(&ping_at("pol-1", 16.3001, 108.2100, 30, None))
        .unwrap();
    assert_eq!(types(&evs), vec!["unit.updated"]);
    assert_eq!(e.stats().gps_jumps, 2);
}

#[test]
fn on_duty_units_without_pings_raise_stale_gps_cleared_by_the_next_ping() {
    let mut config = quiet();
    config.alerts.gps_stale_after_s = 120;
    let mut e = Engine::new(config, zones(), 0);
    with_fleet(&mut e);
    e.apply(&call("c1", Category::Fire, 16.0678, 108.2208, 100))
        .unwrap();
    // Auto-assigned at 100 s; last fixes at 0–5 s: on duty since 100 s.
    assert!(alerts_of(&e.tick(t(219)), AlertKind::StaleGps).is_empty());
    let evs = e.tick(t(221));
    let raised = alerts_of(&evs, AlertKind::StaleGps);
    let ids: Vec<&str> = raised
        .iter()
        .map(|(_, a)| a.unit_id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, vec!["amb-1", "fire-1", "fire-2"]);
    assert!(raised
        .iter()
        .all(|(what, a)| *what == "raised" && a.incident_id.as_deref() == Some("inc-c1")));
    assert_eq!(raised[0].1.raised_at, t(220));
    // Raised once; the next ping clears it, going off duty clears another.
    assert!(alerts_of(&e.tick(t(300)), AlertKind::StaleGps).is_empty());
    let evs = e.apply(&ping("fire-1", 16.06, 108.21, 301)).unwrap();
    assert_eq!(alerts_of(&evs, AlertKind::StaleGps)[0].0, "cleared");
    let evs = e
        .apply(&unit(
            "fire-2",
            UnitKind::FireEngine,
            UnitStatus::Returning,
            302,
        ))
        .unwrap();
    assert_eq!(alerts_of(&evs, AlertKind::StaleGps)[0].0, "cleared");
    assert_eq!(
        e.alerts().filter(|a| a.kind == AlertKind::StaleGps).count(),
        1
    );
    // A restored engine knows the open alert and clears it on the ping.
    let mut log = Vec::new();
    let mut again = Engine::new(e.config.clone(), zones(), 0);
    with_fleet(&mut again);
    log.extend(
        again
            .apply(&call("c1", Category::Fire, 16.0678, 108.2208, 100))
            .unwrap(),
    );
    log.extend(again.tick(t(221)));
    let mut full = Vec::new();
    let mut replay = Engine::new(e.config.clone(), zones(), 0);
    with_fleet_log(&mut replay, &mut full);
    full.extend(
        replay
            .apply(&call("c1", Category::Fire, 16.0678, 108.2208, 100))
            .unwrap(),
    );
    full.extend(replay.tick(t(221)));
    let mut restored = Engine::restore(e.config.clone(), zones(), &full);
    let evs = restored.apply(&ping("amb-1", 16.07, 108.22, 230)).unwrap();
    assert_eq!(alerts_of(&evs, AlertKind::StaleGps)[0].0, "cleared");
    assert!(!log.is_empty());
}

/// The test fleet around Hai Chau centre (~16.0678, 108.2208), registered
/// and located; its output events are appended to `log`.
fn with_fleet_log(e: &mut Engine, log: &mut Vec<OutputEvent>) {
    let fleet = [
        ("amb-1", UnitKind::Ambulance, 16.0700, 108.2200),
        ("amb-2", UnitKind::Ambulance, 16.0300, 108.2000),
        ("amb-3", UnitKind::Ambulance, 16.1000, 108.1500),
        ("fire-1", UnitKind::FireEngine, 16.0600, 108.2100),
        ("fire-2", UnitKind::FireEngine, 16.0500, 108.2400),
        ("pol-1", UnitKind::Police, 16.0650, 108.2250),
    ];
    for (i, (id, kind, lat, lon)) in fleet.iter().enumerate() {
        log.extend(
            e.apply(&unit(id, *kind, UnitStatus::Available, i as i64))
                .unwrap(),
        );
        log.extend(e.apply(&ping(id, *lat, *lon, i as i64)).unwrap());
    }
}

#[test]
fn a_call_surge_is_raised_once_and_cleared_when_it_passes() {
    let mut config = quiet();
    config.alerts.surge_calls = 5;
    config.alerts.surge_radius_m = 500.0;
    config.alerts.surge_window_s = 600;
    let mut e = Engine::new(config, zones(), 0);
    let cats = [
        Category::Fire,
        Category::Crime,
        Category::Medical,
        Category::Flood,
    ];
    for (i, cat) in cats.into_iter().enumerate() {
        let evs = e
            .apply(&call(
                &format!("c{i}"),
                cat,
                16.0678 + 0.001 * i as f64,
                108.2208,
                60 * i as i64,
            ))
            .unwrap();
        assert!(alerts_of(&evs, AlertKind::CallSurge).is_empty());
    }
    // A far call does not count.
    e.apply(&call("far", Category::Other, 16.0000, 108.2500, 200))
        .unwrap();
    let evs = e
        .apply(&call("c4", Category::Other, 16.0680, 108.2210, 240))
        .unwrap();
    let surge = alerts_of(&evs, AlertKind::CallSurge);
    assert_eq!(surge.len(), 1);
    assert_eq!(surge[0].1.alert_id, "surge:c4");
    assert_eq!(surge[0].1.district.as_deref(), Some("hai_chau"));
    assert!(
        surge[0]
            .1
            .message
            .starts_with("5 calls within 500 m in 10 min"),
        "{}",
        surge[0].1.message
    );
    // More calls in the same place: the same surge.
    let evs = e
        .apply(&call("c5", Category::Medical, 16.0679, 108.2209, 250))
        .unwrap();
    assert!(alerts_of(&evs, AlertKind::CallSurge).is_empty());
    // Ten minutes after the first calls it thins out below 5: cleared.
    assert!(alerts_of(&e.tick(t(600)), AlertKind::CallSurge).is_empty());
    let evs = e.tick(t(700));
    let cleared = alerts_of(&evs, AlertKind::CallSurge);
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].0, "cleared");
}

#[test]
fn coverage_gaps_are_raised_after_their_grace_and_cleared_when_a_unit_frees_up() {
    let mut config = quiet();
    config.alerts.coverage_kinds = vec![UnitKind::Ambulance];
    config.alerts.coverage_radius_m = 8_000.0;
    config.alerts.coverage_grace_s = 60;
    let mut e = Engine::new(config, zones(), 0);
    // No ambulance located at all: nothing watched.
    assert!(alerts_of(&e.tick(t(1000)), AlertKind::CoverageGap).is_empty());
    with_fleet(&mut e);
    let hv = zones().get("hoa_vang").unwrap().representative;
    assert!(
        alerts_of(&e.tick(t(1030)), AlertKind::CoverageGap).is_empty(),
        "in grace"
    );
    let evs = e.tick(t(1091));
    let gaps = alerts_of(&evs, AlertKind::CoverageGap);
    let ids: Vec<&str> = gaps.iter().map(|(_, a)| a.alert_id.as_str()).collect();
    assert!(ids.contains(&"coverage:hoa_vang:ambulance"), "{ids:?}");
    assert!(!ids.contains(&"coverage:hai_chau:ambulance"), "{ids:?}");
    assert!(
        !ids.iter().any(|i| i.contains("hoang_sa")),
        "offshore is not watched"
    );
    assert!(
        alerts_of(&e.tick(t(1100)), AlertKind::CoverageGap).is_empty(),
        "raised once"
    );
    // An ambulance becomes available near Hoa Vang's populated point.
    e.apply(&unit(
        "amb-hv",
        UnitKind::Ambulance,
        UnitStatus::OutOfService,
        1101,
    ))
    .unwrap();
    e.apply(&ping("amb-hv", hv.y(), hv.x(), 1102)).unwrap();
    let evs = e
        .apply(&unit(
            "amb-hv",
            UnitKind::Ambulance,
            UnitStatus::Available,
            1103,
        ))
        .unwrap();
    let cleared = alerts_of(&evs, AlertKind::CoverageGap);
    assert!(
        cleared
            .iter()
            .any(|(w, a)| *w == "cleared" && a.alert_id == "coverage:hoa_vang:ambulance"),
        "{cleared:?}"
    );
}

#[test]
fn config_is_validated_and_rejects_unknown_fields() {
    assert!(EngineConfig::default().validate().is_ok());
    let mut c = EngineConfig::default();
    c.alerts.surge_calls = 1;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("alerts.surge_calls"));
    let mut c = EngineConfig::default();
    c.fix.exclude_after_s = 10;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("fix.exclude_after_s"));
    let c: EngineConfig = toml::from_str(
        "[fix]\nstale_after_s = 60\n[alerts]\ncoverage_kinds = [\"ambulance\"]\n[eta.learning]\nmin_samples = 10\n",
    )
    .unwrap();
    assert_eq!(c.fix.stale_after_s, 60);
    assert_eq!(c.alerts.coverage_kinds, vec![UnitKind::Ambulance]);
    assert_eq!(c.eta.learning.min_samples, 10);
    assert_eq!(c.swap, SwapPolicy::default());
    let err = toml::from_str::<EngineConfig>("[alerts]\nsurge_cals = 3\n").unwrap_err();
    assert!(err.to_string().contains("surge_cals"), "{err}");
}

/// Two ambulances: one of Sơn Trà's station standing next to a Hải Châu
/// scene, one of Hải Châu's station 3 km away.
fn two_stations(policy: DispatchPolicy) -> Engine {
    let mut e = Engine::new(
        EngineConfig {
            dispatch_policy: policy,
            ..quiet()
        },
        zones(),
        0,
    );
    for (id, home, lat, lon) in [
        ("amb-st", "son_tra", 16.0690, 108.2215),
        ("amb-hc", "hai_chau", 16.0420, 108.2120),
    ] {
        e.apply(&Input::Unit(UnitStatusReport {
            unit_id: id.into(),
            ts: t(0),
            kind: UnitKind::Ambulance,
            status: UnitStatus::Available,
            station: Some(format!("station-{home}")),
            home_district: Some(home.into()),
        }))
        .unwrap();
        e.apply(&ping(id, lat, lon, 1)).unwrap();
    }
    e
}

fn p1_medical(id: &str, s: i64) -> Input {
    Input::Incident(IncidentReport {
        incident_id: id.into(),
        reported_at: t(s),
        source: IncidentSource::Operator,
        category: Category::Medical,
        priority: 1,
        location: Location {
            lat: 16.0678,
            lon: 108.2208,
            accuracy_m: None,
        },
        description: None,
    })
}

fn recommendation_and_assigned(evs: &[OutputEvent]) -> (DispatchRecommendation, Vec<String>) {
    let rec = evs
        .iter()
        .find_map(|ev| match &ev.body {
            EventBody::DispatchRecommended(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a recommendation");
    let assigned = evs
        .iter()
        .filter_map(|ev| match &ev.body {
            EventBody::DispatchAssigned(a) => Some(a.unit_id.clone()),
            _ => None,
        })
        .collect();
    (rec, assigned)
}

#[test]
fn the_two_dispatch_policies_pick_differently_for_the_same_scene() {
    let mut ours = two_stations(DispatchPolicy::NearestEta);
    let evs = ours.apply(&p1_medical("inc-a", 10)).unwrap();
    assert_eq!(evs[0].district.as_deref(), Some("hai_chau"));
    let (rec, assigned) = recommendation_and_assigned(&evs);
    let ids: Vec<&str> = rec.candidates.iter().map(|c| c.unit_id.as_str()).collect();
    assert_eq!(ids, ["amb-st", "amb-hc"]);
    assert_eq!(assigned, ["amb-st"], "nearest by eta, whatever its station");
    assert!(rec.candidates[0].reason.starts_with("#1 by eta:"));

    let mut old = two_stations(DispatchPolicy::HomeDistrict);
    let evs = old.apply(&p1_medical("inc-a", 10)).unwrap();
    let (rec, assigned) = recommendation_and_assigned(&evs);
    let ids: Vec<&str> = rec.candidates.iter().map(|c| c.unit_id.as_str()).collect();
    assert_eq!(ids, ["amb-hc", "amb-st"]);
    assert_eq!(assigned, ["amb-hc"], "the home district's unit, 3 km away");
    let reason = &rec.candidates[0].reason;
    assert!(reason.starts_with("#1 home district hai_chau:"), "{reason}");
    let reason = &rec.candidates[1].reason;
    assert!(
        reason.starts_with("#2 neighbour (no free ambulance of hai_chau left)"),
        "{reason}"
    );
    // The home unit's ETA is the longer one: what the old way costs here.
    assert!(rec.candidates[0].eta_s > rec.candidates[1].eta_s);
}

#[test]
fn home_district_falls_back_to_the_nearest_neighbour_when_its_units_are_busy() {
    let mut old = two_stations(DispatchPolicy::HomeDistrict);
    old.apply(&p1_medical("inc-a", 10)).unwrap();
    // Hải Châu's only ambulance is on inc-a: the next one gets Sơn Trà's.
    let evs = old.apply(&p1_medical("inc-b", 20)).unwrap();
    let (rec, assigned) = recommendation_and_assigned(&evs);
    assert_eq!(assigned, ["amb-st"]);
    assert_eq!(rec.candidates.len(), 1);
    assert!(
        rec.candidates[0]
            .reason
            .starts_with("#1 neighbour (no free ambulance of hai_chau left), by eta:"),
        "{}",
        rec.candidates[0].reason
    );
    // A scene outside every district has no home station: nearest by eta.
    let mut old = two_stations(DispatchPolicy::HomeDistrict);
    let evs = old
        .apply(&Input::Incident(IncidentReport {
            incident_id: "far".into(),
            reported_at: t(30),
            source: IncidentSource::Operator,
            category: Category::Medical,
            priority: 1,
            location: Location {
                lat: 16.20,
                lon: 108.40,
                accuracy_m: None,
            },
            description: None,
        }))
        .unwrap();
    let (rec, assigned) = recommendation_and_assigned(&evs);
    assert_eq!(evs[0].district, None);
    assert_eq!(assigned.len(), 1);
    assert!(
        rec.candidates[0]
            .reason
            .starts_with("scene outside every district, #1 by eta:"),
        "{}",
        rec.candidates[0].reason
    );
}

#[test]
fn dispatch_policy_is_read_from_config_and_unknown_values_are_refused() {
    assert_eq!(
        EngineConfig::default().dispatch_policy,
        DispatchPolicy::NearestEta
    );
    let c: EngineConfig = toml::from_str("dispatch_policy = \"home_district\"\n").unwrap();
    assert_eq!(c.dispatch_policy, DispatchPolicy::HomeDistrict);
    assert!(c.validate().is_ok());
    let err = toml::from_str::<EngineConfig>("dispatch_policy = \"nearest\"\n").unwrap_err();
    assert!(err.to_string().contains("nearest_eta"), "{err}");
    for p in DispatchPolicy::ALL {
        assert_eq!(p.as_str().parse::<DispatchPolicy>().unwrap(), p);
    }
    let err = "closest".parse::<DispatchPolicy>().unwrap_err();
    assert!(err.to_string().contains("dispatch_policy"), "{err}");
}

#[test]
fn dedupe_retention_is_read_from_config_and_out_of_range_values_are_refused() {
    let c: EngineConfig = toml::from_str("dedupe_retention_s = 86400\n").unwrap();
    assert_eq!(c.dedupe_retention_s, 86_400);
    assert!(c.validate().is_ok());
    for bad in [0, 3599, 31_536_001] {
        let c = EngineConfig {
            dedupe_retention_s: bad,
            ..EngineConfig::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("engine.dedupe_retention_s must be within 3600..=31536000"),
            "{err}"
        );
        assert!(err.ends_with(&format!("got {bad}")), "{err}");
    }
    let err = toml::from_str::<EngineConfig>("dedupe_retention_s = -1\n").unwrap_err();
    assert!(err.to_string().contains("dedupe_retention_s"), "{err}");
}

#[test]
fn an_incident_that_found_no_unit_is_offered_the_next_one_that_comes_free() {
    let mut e = engine();
    // One ambulance, busy.
    e.apply(&unit(
        "amb-1",
        UnitKind::Ambulance,
        UnitStatus::Available,
        1,
    ))
    .unwrap();
    e.apply(&ping("amb-1", 16.07, 108.22, 1)).unwrap();
    e.apply(&unit("amb-1", UnitKind::Ambulance, UnitStatus::OnScene, 2))
        .unwrap();
    let evs = e
        .apply(&call("c1", Category::Medical, 16.0678, 108.2208, 10))
        .unwrap();
    let rec = evs
        .iter()
        .find_map(|ev| match &ev.body {
            EventBody::DispatchRecommended(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert!(rec.candidates.is_empty());
    assert_eq!(rec.unfilled, vec![UnitKind::Ambulance]);

    // The crew clears: the waiting incident is offered the unit.
    let evs = e
        .apply(&unit(
            "amb-1",
            UnitKind::Ambulance,
            UnitStatus::Available,
            60,
        ))
        .unwrap();
    let again = evs
        .iter()
        .find_map(|ev| match &ev.body {
            EventBody::DispatchRecommended(r) if r.swap.is_none() => Some(r.clone()),
            _ => None,
        })
        .expect("a fresh recommendation for the waiting incident");
    assert_eq!(again.incident_id, "inc-c1");
    assert_eq!(again.candidates[0].unit_id, "amb-1");
    assert_eq!(e.stats().reoffers, 1);

    // A second free unit of a kind nobody waits for offers nothing.
    e.apply(&unit("pol-1", UnitKind::Police, UnitStatus::OnScene, 61))
        .unwrap();
    e.apply(&ping("pol-1", 16.07, 108.22, 61)).unwrap();
    let evs = e
        .apply(&unit("pol-1", UnitKind::Police, UnitStatus::Available, 62))
        .unwrap();
    assert!(!evs
        .iter()
        .any(|ev| matches!(ev.body, EventBody::DispatchRecommended(_))));
}
