//! Engine throughput on position pings, the dominant input (every unit
//! every 1–10 s): `Engine::apply` end to end for one ping (jump check, zone
//! lookup, speed learning, index update, the `unit.updated` event), on one
//! core, with all alerts on at their defaults.
//!
//! Run: `cargo bench -p ioc-engine --bench engine -- --quick`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ioc_engine::{Engine, EngineConfig};
use ioc_model::{Input, PositionPing, Timestamp, UnitKind, UnitStatus, UnitStatusReport};
use ioc_router::Zones;

const UNITS: usize = 2_000;
const T0: i64 = 1_795_420_800_000;

fn zones() -> Arc<Zones> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/danang/districts.geojson"
    );
    Arc::new(Zones::load(std::path::Path::new(path)).unwrap())
}

/// A deterministic pseudo-random number in [0, 1).
fn noise(i: u64) -> f64 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i >> 29);
    (x % 1_000_003) as f64 / 1_000_003.0
}

/// An engine with a registered, located fleet (a quarter of it on duty),
/// and `rounds` pings per unit, each unit moving ~10 m per second.
fn setup(rounds: usize) -> (Engine, Vec<Input>) {
    let mut e = Engine::new(EngineConfig::default(), zones(), 0);
    let mut pos = Vec::with_capacity(UNITS);
    for i in 0..UNITS {
        let status = if i % 4 == 0 {
            UnitStatus::EnRoute
        } else {
            UnitStatus::Available
        };
        e.apply(&Input::Unit(UnitStatusReport {
            unit_id: format!("u{i}"),
            ts: Timestamp::from_unix_millis(T0),
            kind: UnitKind::ALL[i % 4],
            status,
            station: None,
            home_district: None,
        }))
        .unwrap();
        pos.push((
            15.98 + 0.15 * noise(2 * i as u64),
            108.1 + 0.15 * noise(2 * i as u64 + 1),
        ));
    }
    let mut pings = Vec::with_capacity(rounds * UNITS);
    for r in 0..rounds {
        for (i, p) in pos.iter_mut().enumerate() {
            let k = (r * UNITS + i) as u64;
            p.0 += 0.0001 * (noise(3 * k) - 0.5);
            p.1 += 0.0001 * (noise(3 * k + 1) - 0.5);
            pings.push(Input::Position(PositionPing {
                unit_id: format!("u{i}"),
                // One round per second, units spread over it.
                ts: Timestamp::from_unix_millis(T0 + 1000 * (r as i64 + 1) + i as i64 / 4),
                lat: p.0,
                lon: p.1,
                speed_kmh: Some(30.0 + 20.0 * noise(3 * k + 2)),
                heading_deg: None,
            }));
        }
    }
    (e, pings)
}

fn positions(c: &mut Criterion) {
    let (engine, pings) = setup(50);
    // Once, plainly: events per second over the whole stream.
    let mut e = engine.clone();
    let start = Instant::now();
    let mut events = 0usize;
    for p in &pings {
        events += e.apply(p).map(|v| v.len()).unwrap_or(0);
    }
    let el = start.elapsed();
    println!(
        "engine: {} pings in {:.1?}: {:.0} pings/s on one core ({} output events, {} gps jumps)",
        pings.len(),
        el,
        pings.len() as f64 / el.as_secs_f64(),
        events,
        e.stats().gps_jumps
    );
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(pings.len() as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("apply_position_pings", |b| {
        b.iter_batched(
            || engine.clone(),
            |mut e| {
                for p in &pings {
                    black_box(e.apply(p).ok());
                }
                e
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, positions);
criterion_main!(benches);
