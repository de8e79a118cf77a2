//! Engine tests: behaviour examples and property tests of the invariants.

use super::*;
use ioc_model::{IncidentSource, Line, Location};
use proptest::prelude::*;

fn zones() -> Arc<Zones> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/danang/districts.geojson"
    );
    Arc::new(Zones::load(std::path::Path::new(path)).unwrap())
}

fn t(s: i64) -> Timestamp {
    // 2026-11-23T08:00:00Z + s seconds
    Timestamp::from_unix_millis(1_795_420_800_000 + s * 1000)
}

fn engine() -> Engine {
    Engine::new(EngineConfig::default(), zones(), 0)
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
    // Hai Chau centre ~ (16.0678, 108.2208)
    let fleet = [
        ("amb-1", UnitKind::Ambulance, 16.0700, 108.2200),
        ("amb-2", UnitKind::Ambulance, 16.0300, 108.2000),
        ("amb-3", UnitKind::Ambulance, 16.1000, 108.1500),
        ("fire-1", UnitKind::FireEngine, 16.0600, 108.2100),
        ("fire-2", UnitKind::FireEngine, 16.0500, 108.2400),
        ("pol-1", UnitKind::Police, 16.0650, 108.2250),
    ];
    for (i, (id, kind, lat, lon)) in fleet.iter().enumerate() {
        e.apply(&unit(id, *kind, UnitStatus::Available, i as i64))
            .unwrap();
        e.apply(&ping(id, *lat, *lon, i as i64)).unwrap();
    }
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
    let mut s = 1000i64;
    let mut out = Vec::new();
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
            Step::Ping(u, lat, lon) => Ok(ping(&uid(*u), *lat, *lon, s)),
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
                s += i64::from(*d);
                Err(t(s))
            }
        });
    }
    out
}

fn run(e: &mut Engine, inputs: &[Result<Input, Timestamp>]) -> Vec<OutputEvent> {
    let mut all = Vec::new();
    for i in inputs {
        match i {
            Ok(input) => {
                if let Ok(evs) = e.apply(input) {
                    all.extend(evs);
                }
            }
            Err(now) => all.extend(e.tick(*now)),
        }
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn engine_invariants_hold_for_any_input_sequence(steps in prop::collection::vec(step(), 1..150)) {
        let inputs = to_inputs(&steps);
        let mut e = engine();
        let events = run(&mut e, &inputs);

        // seq strictly increasing and gap-free from 1
        for (i, ev) in events.iter().enumerate() {
            prop_assert_eq!(ev.seq, i as u64 + 1);
        }
        // No unit on two incidents, and incident and unit views agree.
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for inc in e.incidents() {
            for u in &inc.assigned_units {
                prop_assert!(owner.insert(u, &inc.incident_id).is_none(), "unit {} on two incidents", u);
            }
        }
        for u in e.units() {
            match &u.incident_id {
                Some(i) => prop_assert_eq!(owner.get(u.unit_id.as_str()).copied(), Some(i.as_str())),
                None => prop_assert!(!owner.contains_key(u.unit_id.as_str())),
            }
        }
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
        let mut again = engine();
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

        // Redelivering every input a second time changes nothing more
        // except clock-driven alerts, which are idempotent too.
        let replayed = run(&mut e, &inputs);
        prop_assert!(replayed.iter().all(|ev| !matches!(ev.body, EventBody::IncidentOpened(_) | EventBody::DispatchAssigned(_))), "replay opened or assigned again");
    }
}
