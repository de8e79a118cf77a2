//! `runner::run` against the embedded Kafka-protocol broker: the simulator
//! registers its fleet, pings positions, and reacts to a `dispatch.assigned`
//! read from `ioc.events` with the unit's status reports.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ioc_ingest::EmbeddedBroker;
use ioc_model::{
    decode_input, Category, DispatchAssignment, EventBody, GeoPoint, IncidentStatus, IncidentView,
    Input, OutputEvent, Timestamp, Topics, UnitKind, UnitStatus, UnitView,
};
use ioc_router::Zones;
use ioc_sim::{runner, SimConfig, Simulator};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const UNIT: &str = "amb-01";
const INCIDENT: &str = "inc-runner-1";

fn danang() -> Zones {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/danang/districts.geojson"
    );
    Zones::load(Path::new(path)).unwrap()
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// `incident.opened` at a point on land in Hải Châu, then `dispatch.assigned`
/// of [`UNIT`] to it: what the processor would write.
fn processor_events(now: Timestamp) -> [OutputEvent; 2] {
    let view = IncidentView {
        incident_id: INCIDENT.into(),
        status: IncidentStatus::Open,
        category: Category::Medical,
        priority: 2,
        location: GeoPoint {
            lat: 16.0544,
            lon: 108.2022,
        },
        district: Some("hai_chau".into()),
        opened_at: now,
        updated_at: now,
        source: "call:115".into(),
        call_count: 1,
        caller: None,
        line: None,
        description: None,
        assigned_units: vec![],
        correlation: None,
        assign_deadline: now.plus_millis(600_000),
        closed_at: None,
    };
    [
        OutputEvent {
            seq: 1,
            ts: now,
            district: Some("hai_chau".into()),
            body: EventBody::IncidentOpened(view),
        },
        OutputEvent {
            seq: 2,
            ts: now,
            district: Some("hai_chau".into()),
            body: EventBody::DispatchAssigned(DispatchAssignment {
                incident_id: INCIDENT.into(),
                unit_id: UNIT.into(),
                kind: UnitKind::Ambulance,
                by: "disp".into(),
                distance_m: None,
                eta_s: None,
            }),
        },
    ]
}

/// Everything read from the simulator's topics so far.
#[derive(Default)]
struct Seen {
    registered: BTreeSet<String>,
    pinged: BTreeSet<String>,
    reacted: bool,
    messages: usize,
}

impl Seen {
    /// Takes every message available now, checking that each decodes.
    fn drain(&mut self, consumer: &BaseConsumer, topics: &Topics, wait: Duration) -> usize {
        let mut n = 0;
        while let Some(res) = consumer.poll(if n == 0 { wait } else { Duration::ZERO }) {
            let m = res.expect("consumer error");
            let kind = topics.kind_of(m.topic()).expect("an input topic");
            let payload = m.payload().expect("a payload");
            // Sim time runs ahead of wall time (speed 60), by minutes.
            let now = Timestamp::now().plus_millis(600_000);
            let input = decode_input(kind, payload, now).unwrap_or_else(|e| {
                panic!("{e}: {}", String::from_utf8_lossy(payload));
            });
            assert_eq!(m.key(), Some(input_key(&input).as_bytes()));
            match input {
                Input::Unit(u) => {
                    if u.status == UnitStatus::Available && u.station.is_some() {
                        self.registered.insert(u.unit_id.clone());
                    }
                    if u.unit_id == UNIT
                        && matches!(u.status, UnitStatus::Dispatched | UnitStatus::EnRoute)
                    {
                        self.reacted = true;
                    }
                }
                Input::Position(p) => {
                    self.pinged.insert(p.unit_id);
                }
                other => panic!("unexpected on units/positions: {other:?}"),
            }
            n += 1;
        }
        self.messages += n;
        n
    }
}

fn input_key(input: &Input) -> String {
    match input {
        Input::Unit(u) => u.unit_id.clone(),
        Input::Position(p) => p.unit_id.clone(),
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_feeds_the_broker_and_reacts_to_dispatches() {
    let topics = Topics::default();
    let broker = EmbeddedBroker::start(&topics).unwrap();
    let bootstrap = broker.bootstrap_servers();

    let config = SimConfig {
        ambulances: 3,
        fire_engines: 2,
        police: 3,
        rescue: 1,
        calls_per_hour: 30.0,
        incident_reports_per_hour: 10.0,
        ping_interval_s: 5.0,
        ..SimConfig::default()
    };
    let sim = Simulator::new(config, &danang(), Timestamp::now());
    let units: BTreeSet<String> = sim.unit_ids().map(str::to_string).collect();
    assert!(units.contains(UNIT));

    let producer: FutureProducer = client(&bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let events: StreamConsumer = client(&bootstrap)
        .set("group.id", "ioc-sim-runner-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topics.events, 0, Offset::End)
        .unwrap();
    events.assign(&tpl).unwrap();

    let token = CancellationToken::new();
    let task = tokio::spawn(runner::run(
        sim,
        producer,
        events,
        topics.clone(),
        60.0,
        token.clone(),
    ));

    // The simulator's inputs, every partition, from the beginning.
    let reader: BaseConsumer = client(&bootstrap)
        .set("group.id", "ioc-sim-runner-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in [(&topics.units, 3), (&topics.positions, 6)] {
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
    }
    reader.assign(&tpl).unwrap();

    // The processor's side: write the assignment to `ioc.events`. Written
    // again until the simulator reacts, since its consumer starts at the
    // end of the log and may not have resolved that offset yet; the
    // simulator ignores a replayed assignment.
    let writer: FutureProducer = client(&bootstrap).create().unwrap();
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    tokio::time::sleep(Duration::from_millis(500)).await;
    while !seen.reacted && Instant::now() < deadline {
        // The processor applies each registration (`unit.updated`), which
        // the runner waits for before it sends positions; then the incident
        // and the assignment.
        let applied = units.iter().map(|id| OutputEvent {
            seq: 0,
            ts: Timestamp::now(),
            district: None,
            body: EventBody::UnitUpdated(UnitView {
                unit_id: id.clone(),
                kind: UnitKind::Ambulance,
                status: UnitStatus::Available,
                position: None,
                district: None,
                station: None,
                home_district: None,
                incident_id: None,
                speed_kmh: None,
                heading_deg: None,
                last_fix: None,
            }),
        });
        for ev in applied.chain(processor_events(Timestamp::now())) {
            let payload = serde_json::to_vec(&ev).unwrap();
            let record = FutureRecord::to(&topics.events)
                .key(ev.entity_id())
                .payload(&payload);
            writer
                .send(record, Duration::from_secs(5))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
        let round = Instant::now() + Duration::from_millis(1_000);
        while !seen.reacted && Instant::now() < round {
            seen.drain(&reader, &topics, Duration::from_millis(50));
            tokio::task::yield_now().await;
        }
    }

    token.cancel();
    tokio::time::timeout(Duration::from_secs(8), task)
        .await
        .expect("the runner stops when cancelled")
        .unwrap()
        .unwrap();
    // Whatever was delivered before the stop.
    while seen.drain(&reader, &topics, Duration::from_millis(300)) > 0 {}

    assert!(seen.reacted, "no dispatched/en_route status for {UNIT}");
    assert_eq!(seen.registered, units, "every unit registered");
    assert_eq!(seen.pinged, units, "every unit pinged");
    assert!(seen.messages > units.len() * 2, "{}", seen.messages);
    drop(broker);
}
