//! Nearest-available k=5 over N units against a brute-force scan of the same
//! points, in the same run, so the figure is a ratio that survives a noisy
//! machine. Run: `cargo bench -p ioc-router --bench router`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ioc_model::UnitKind;
use ioc_router::{distance_m, UnitIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KINDS: [UnitKind; 4] = UnitKind::ALL;

fn fleet(n: usize) -> (UnitIndex, Vec<(UnitKind, f64, f64, bool)>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut idx = UnitIndex::new();
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        let kind = KINDS[i % 4];
        let lat = rng.gen_range(15.9..16.2);
        let lon = rng.gen_range(107.9..108.35);
        let avail = rng.gen_bool(0.5);
        idx.upsert(&format!("u{i}"), kind, lat, lon, avail);
        all.push((kind, lat, lon, avail));
    }
    (idx, all)
}

fn nearest(c: &mut Criterion) {
    let mut group = c.benchmark_group("nearest_available_k5");
    for n in [10_000usize, 100_000] {
        let (idx, all) = fleet(n);
        group.bench_with_input(BenchmarkId::new("rtree_per_kind", n), &n, |b, _| {
            b.iter(|| black_box(idx.nearest_available(UnitKind::Ambulance, 16.05, 108.2, 5)))
        });
        group.bench_with_input(BenchmarkId::new("brute_force", n), &n, |b, _| {
            b.iter(|| {
                let mut d: Vec<f64> = all
                    .iter()
                    .filter(|u| u.0 == UnitKind::Ambulance && u.3)
                    .map(|u| distance_m(16.05, 108.2, u.1, u.2))
                    .collect();
                d.select_nth_unstable_by(5, f64::total_cmp);
                black_box(d[..5].to_vec())
            })
        });
    }
    group.finish();
}

fn update(c: &mut Criterion) {
    let (mut idx, _) = fleet(100_000);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    c.bench_function("position_update_100k", |b| {
        b.iter(|| {
            let i = rng.gen_range(0..100_000);
            idx.upsert(
                &format!("u{i}"),
                KINDS[i % 4],
                rng.gen_range(15.9..16.2),
                rng.gen_range(107.9..108.35),
                true,
            )
        })
    });
}

criterion_group!(benches, nearest, update);
criterion_main!(benches);
