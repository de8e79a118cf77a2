//! Decoding and encoding on the hot path of every position ping: the
//! processor decodes the ping and encodes its `unit.updated` event, the
//! gateway's events reader decodes that event again. Baseline in the same
//! run: parsing the same bytes into a `serde_json::Value` (what any JSON
//! consumer pays without knowing the types).
//!
//! Run: `cargo bench -p ioc-model --bench codec -- --quick`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ioc_model::{decode_input, InputKind, OutputEvent, Timestamp};

const PING: &str = r#"{"unit_id":"lt-000042","ts":"2026-11-23T08:00:02.250Z","lat":16.06781,"lon":108.22083,"speed_kmh":30.0}"#;
const UNIT_UPDATED: &str = include_str!("../../../schemas/examples/event/valid-unit-updated.json");
const INCIDENT_OPENED: &str =
    include_str!("../../../schemas/examples/event/valid-incident-opened.json");

fn codec(c: &mut Criterion) {
    let now = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
    let unit: OutputEvent = serde_json::from_str(UNIT_UPDATED).unwrap();
    // Compact, as the processor writes it.
    let unit_bytes = serde_json::to_vec(&unit).unwrap();
    let incident: OutputEvent = serde_json::from_str(INCIDENT_OPENED).unwrap();
    let incident_bytes = serde_json::to_vec(&incident).unwrap();

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("position ping: decode_input", |b| {
        b.iter(|| decode_input(InputKind::Position, black_box(PING.as_bytes()), now).unwrap())
    });
    g.bench_function("position ping: baseline Value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(PING.as_bytes())).unwrap())
    });
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("unit.updated: encode", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&unit)).unwrap();
            buf.len()
        })
    });
    g.bench_function("unit.updated: decode OutputEvent", |b| {
        b.iter(|| serde_json::from_slice::<OutputEvent>(black_box(&unit_bytes)).unwrap())
    });
    g.bench_function("unit.updated: baseline Value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&unit_bytes)).unwrap())
    });
    g.bench_function("incident.opened: decode OutputEvent", |b| {
        b.iter(|| serde_json::from_slice::<OutputEvent>(black_box(&incident_bytes)).unwrap())
    });
    g.bench_function("incident.opened: baseline Value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&incident_bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
