//! The router's hot paths side by side with the alternatives, in the same
//! run, on the same points and queries, so that the ratios survive a noisy
//! machine:
//!
//! * `nearest_available_k5/{n}`: the 5 nearest *available ambulances* among
//!   n units (4 kinds, half of them available) to a query point in Da Nang.
//! * `position_update/{n}`: an available unit moves by up to ~50 m (what a
//!   1–10 s ping does); remove + insert for the others, the lazy update
//!   (remove + insert only when the unit leaves its box) for ours.
//! * `margin/...`: ours with box margins 0–400 m: update cost for a random
//!   walk and for driving (70 m straight per ping), query cost after driving.
//! * `zone_lookup`: the district of a point.
//!
//! Contenders: `ours` (`ioc_router::UnitIndex`: one rstar tree per kind of
//! available units only, points on the unit sphere), `brute_force` (a scan of
//! every unit), `rstar_one_tree` (plain rstar, one tree of all units,
//! filtering by kind and availability during the nearest-neighbour walk),
//! `rtree_rs_one_tree` (Tile38's R-tree ported to Rust, same filtering), and
//! `kiddo_per_kind` (a k-d tree per kind of available units: kiddo has no
//! filtered query, so it gets our layout). All in 3-D on the unit sphere:
//! exact great-circle order for every contender.
//!
//! After criterion, `latency percentiles` prints p50/p99/p99.9 of single
//! queries (timed one by one, ~25 ns of timer overhead included), which is
//! what the targets are stated in.
//!
//! Run: `cargo bench -p ioc-router --bench router -- --quick`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ioc_model::UnitKind;
use ioc_router::{to_unit_sphere, UnitIndex, Zones};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rstar::primitives::GeomWithData;
use rstar::RTree;

const KINDS: [UnitKind; 4] = UnitKind::ALL;
const K: usize = 5;
/// Fleet sizes benchmarked; `IOC_BENCH_SIZES=1000,10000,...` overrides
/// (the scaling curves in `loadtest/scaling.sh` add 1k).
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

fn sizes() -> Vec<usize> {
    std::env::var("IOC_BENCH_SIZES")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| SIZES.to_vec())
}
const LAT: std::ops::Range<f64> = 15.9..16.2;
const LON: std::ops::Range<f64> = 107.9..108.35;

type Entry = GeomWithData<[f64; 3], u32>;

/// One unit of the synthetic fleet.
#[derive(Clone, Copy)]
struct U {
    kind: UnitKind,
    available: bool,
    lat: f64,
    lon: f64,
    p: [f64; 3],
}

fn kslot(k: UnitKind) -> usize {
    KINDS.iter().position(|x| *x == k).unwrap_or(0)
}

fn d2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
}

/// Every contender built over the same fleet.
struct Fixture {
    units: Vec<U>,
    ids: Vec<String>,
    ours: UnitIndex,
    rstar_all: RTree<Entry>,
    rtree_rs_all: rtree_rs::RTree<3, f64, u32>,
    kiddo: Vec<kiddo::float::kdtree::KdTree<f64, u32, 3, 32, u32>>,
    queries: Vec<(f64, f64, [f64; 3])>,
}

fn fixture(n: usize) -> Fixture {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let units: Vec<U> = (0..n)
        .map(|i| {
            let (lat, lon) = (rng.gen_range(LAT), rng.gen_range(LON));
            U {
                kind: KINDS[i % 4],
                available: rng.gen_bool(0.5),
                lat,
                lon,
                p: to_unit_sphere(lat, lon),
            }
        })
        .collect();
    let ids: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let mut ours = UnitIndex::new();
    for (i, u) in units.iter().enumerate() {
        ours.upsert(&ids[i], u.kind, u.lat, u.lon, u.available);
    }
    let rstar_all = RTree::bulk_load(
        units
            .iter()
            .enumerate()
            .map(|(i, u)| Entry::new(u.p, i as u32))
            .collect(),
    );
    let mut rtree_rs_all = rtree_rs::RTree::new();
    for (i, u) in units.iter().enumerate() {
        rtree_rs_all.insert(rtree_rs::Rect::new_point(u.p), i as u32);
    }
    let mut kiddo: Vec<_> = (0..4)
        .map(|_| kiddo::float::kdtree::KdTree::<f64, u32, 3, 32, u32>::with_capacity(n / 4 + 1))
        .collect();
    for (i, u) in units.iter().enumerate() {
        if u.available {
            kiddo[kslot(u.kind)].add(&u.p, i as u32);
        }
    }
    let queries = (0..1024)
        .map(|_| {
            let (lat, lon) = (rng.gen_range(LAT), rng.gen_range(LON));
            (lat, lon, to_unit_sphere(lat, lon))
        })
        .collect();
    Fixture {
        units,
        ids,
        ours,
        rstar_all,
        rtree_rs_all,
        kiddo,
        queries,
    }
}

fn wanted(u: &U) -> bool {
    u.kind == UnitKind::Ambulance && u.available
}

fn brute_force(f: &Fixture, q: &[f64; 3]) -> Vec<u32> {
    let mut d: Vec<(f64, u32)> = f
        .units
        .iter()
        .enumerate()
        .filter(|(_, u)| wanted(u))
        .map(|(i, u)| (d2(&u.p, q), i as u32))
        .collect();
    let k = K.min(d.len());
    if k < d.len() {
        d.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0));
    }
    d.truncate(k);
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    d.into_iter().map(|x| x.1).collect()
}

fn rstar_one_tree(f: &Fixture, q: &[f64; 3]) -> Vec<u32> {
    f.rstar_all
        .nearest_neighbor_iter(q)
        .filter(|e| wanted(&f.units[e.data as usize]))
        .take(K)
        .map(|e| e.data)
        .collect()
}

fn rtree_rs_one_tree(f: &Fixture, q: &[f64; 3]) -> Vec<u32> {
    let probe = rtree_rs::Rect::new_point(*q);
    f.rtree_rs_all
        .nearby(|rect, data| match data {
            // Units we do not want sink to the end of the queue: filtered
            // during the walk, never returned before a wanted one.
            Some(i) if !wanted(&f.units[*i as usize]) => f64::INFINITY,
            _ => rect.box_dist(&probe),
        })
        .take(K)
        .take_while(|it| it.dist.is_finite())
        .map(|it| *it.data)
        .collect()
}

fn kiddo_per_kind(f: &Fixture, q: &[f64; 3]) -> Vec<u32> {
    f.kiddo[kslot(UnitKind::Ambulance)]
        .nearest_n::<kiddo::SquaredEuclidean>(q, K)
        .into_iter()
        .map(|n| n.item)
        .collect()
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

fn fixtures() -> &'static Vec<(usize, Fixture)> {
    use std::sync::OnceLock;
    static F: OnceLock<Vec<(usize, Fixture)>> = OnceLock::new();
    F.get_or_init(|| {
        sizes()
            .into_iter()
            .map(|n| {
                let t = Instant::now();
                let f = fixture(n);
                eprintln!("fixture {n}: built in {:.1?}", t.elapsed());
                (n, f)
            })
            .collect()
    })
}

fn nearest(c: &mut Criterion) {
    let mut group = c.benchmark_group("nearest_available_k5");
    for (n, f) in fixtures() {
        // Every contender answers the same (exact) thing.
        for (_, _, q) in f.queries.iter().take(50) {
            let want: Vec<f64> = brute_force(f, q)
                .iter()
                .map(|i| d2(&f.units[*i as usize].p, q))
                .collect();
            let (lat, lon) = f
                .queries
                .iter()
                .find(|x| x.2 == *q)
                .map(|x| (x.0, x.1))
                .unwrap();
            let ours: Vec<f64> = f
                .ours
                .nearest_available(UnitKind::Ambulance, lat, lon, K)
                .iter()
                .map(|n| n.distance_m)
                .collect();
            let want_m: Vec<f64> = want
                .iter()
                .map(|d| ioc_router::chord_to_metres(d.sqrt()))
                .collect();
            assert_eq!(ours.len(), want_m.len());
            assert!(ours.iter().zip(&want_m).all(|(a, b)| (a - b).abs() < 1e-6));
            for got in [
                rstar_one_tree(f, q),
                rtree_rs_one_tree(f, q),
                kiddo_per_kind(f, q),
            ] {
                let got: Vec<f64> = got.iter().map(|i| d2(&f.units[*i as usize].p, q)).collect();
                assert_eq!(got.len(), want.len());
                assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-15));
            }
        }
        let mut i = 0usize;
        let mut next = || {
            i = (i + 1) % f.queries.len();
            f.queries[i]
        };
        group.bench_function(BenchmarkId::new("ours", n), |b| {
            b.iter(|| {
                let (lat, lon, _) = next();
                black_box(
                    f.ours
                        .nearest_available(UnitKind::Ambulance, lat, lon, K)
                        .len(),
                )
            })
        });
        group.bench_function(BenchmarkId::new("rstar_one_tree", n), |b| {
            b.iter(|| black_box(rstar_one_tree(f, &next().2)))
        });
        group.bench_function(BenchmarkId::new("rtree_rs_one_tree", n), |b| {
            b.iter(|| black_box(rtree_rs_one_tree(f, &next().2)))
        });
        group.bench_function(BenchmarkId::new("kiddo_per_kind", n), |b| {
            b.iter(|| black_box(kiddo_per_kind(f, &next().2)))
        });
        if *n <= 100_000 {
            group.bench_function(BenchmarkId::new("brute_force", n), |b| {
                b.iter(|| black_box(brute_force(f, &next().2)))
            });
        }
    }
    group.finish();
}

/// Small moves of available units, the same sequence for every contender.
fn moves(f: &Fixture, count: usize) -> Vec<(u32, f64, f64)> {
    moves_of(f, count, usize::MAX)
}

/// Small moves of up to `movers` available units.
fn moves_of(f: &Fixture, count: usize, movers: usize) -> Vec<(u32, f64, f64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let avail: Vec<u32> = (0..f.units.len() as u32)
        .filter(|i| f.units[*i as usize].available)
        .take(movers)
        .collect();
    (0..count)
        .map(|_| {
            let i = avail[rng.gen_range(0..avail.len())];
            // ~50 m at most: 0.00045 degrees.
            (
                i,
                rng.gen_range(-0.00045..0.00045),
                rng.gen_range(-0.00045..0.00045),
            )
        })
        .collect()
}

fn update(c: &mut Criterion) {
    let mut group = c.benchmark_group("position_update");
    for (n, f) in fixtures() {
        let mv = moves(f, 4096);
        // Each contender owns a copy it may mutate; positions drift by the
        // moves, the same for all.
        let mut ours = f.ours.clone();
        let mut pos: Vec<(f64, f64)> = f.units.iter().map(|u| (u.lat, u.lon)).collect();
        let mut j = 0usize;
        group.bench_function(BenchmarkId::new("ours", n), |b| {
            b.iter(|| {
                let (i, dlat, dlon) = mv[j % mv.len()];
                j += 1;
                let p = &mut pos[i as usize];
                *p = (p.0 + dlat, p.1 + dlon);
                let u = &f.units[i as usize];
                ours.upsert(&f.ids[i as usize], u.kind, p.0, p.1, true);
            })
        });
        let mut tree = f.rstar_all.clone();
        let mut pts: Vec<[f64; 3]> = f.units.iter().map(|u| u.p).collect();
        let mut pos: Vec<(f64, f64)> = f.units.iter().map(|u| (u.lat, u.lon)).collect();
        let mut j = 0usize;
        group.bench_function(BenchmarkId::new("rstar_one_tree", n), |b| {
            b.iter(|| {
                let (i, dlat, dlon) = mv[j % mv.len()];
                j += 1;
                let p = &mut pos[i as usize];
                *p = (p.0 + dlat, p.1 + dlon);
                let np = to_unit_sphere(p.0, p.1);
                tree.remove(&Entry::new(pts[i as usize], i));
                tree.insert(Entry::new(np, i));
                pts[i as usize] = np;
            })
        });
        let mut tree = rtree_rs::RTree::<3, f64, u32>::new();
        for (i, u) in f.units.iter().enumerate() {
            tree.insert(rtree_rs::Rect::new_point(u.p), i as u32);
        }
        let mut pts: Vec<[f64; 3]> = f.units.iter().map(|u| u.p).collect();
        let mut pos: Vec<(f64, f64)> = f.units.iter().map(|u| (u.lat, u.lon)).collect();
        let mut j = 0usize;
        group.bench_function(BenchmarkId::new("rtree_rs_one_tree", n), |b| {
            b.iter(|| {
                let (i, dlat, dlon) = mv[j % mv.len()];
                j += 1;
                let p = &mut pos[i as usize];
                *p = (p.0 + dlat, p.1 + dlon);
                let np = to_unit_sphere(p.0, p.1);
                tree.remove(rtree_rs::Rect::new_point(pts[i as usize]), &i);
                tree.insert(rtree_rs::Rect::new_point(np), i);
                pts[i as usize] = np;
            })
        });
        let mut trees = f.kiddo.clone();
        let mut pts: Vec<[f64; 3]> = f.units.iter().map(|u| u.p).collect();
        let mut pos: Vec<(f64, f64)> = f.units.iter().map(|u| (u.lat, u.lon)).collect();
        let mut j = 0usize;
        group.bench_function(BenchmarkId::new("kiddo_per_kind", n), |b| {
            b.iter(|| {
                let (i, dlat, dlon) = mv[j % mv.len()];
                j += 1;
                let p = &mut pos[i as usize];
                *p = (p.0 + dlat, p.1 + dlon);
                let np = to_unit_sphere(p.0, p.1);
                let t = &mut trees[kslot(f.units[i as usize].kind)];
                t.remove(&pts[i as usize], i);
                t.add(&np, i);
                pts[i as usize] = np;
            })
        });
    }
    group.finish();
}

/// Fleet size of the margin trade-off: the largest benchmarked size up to
/// this (`IOC_BENCH_MARGIN_AT`, default 100k).
fn margin_size() -> usize {
    std::env::var("IOC_BENCH_MARGIN_AT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// A vehicle's pings: each unit drives straight at 50 km/h with a ping every
/// 5 s (~70 m), turning back at the edge of the city; the same sequence for
/// every margin.
fn drives(f: &Fixture, count: usize) -> Vec<(u32, f64, f64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    // 1,000 units on the move (the rest parked), so each drives many pings.
    let avail: Vec<u32> = (0..f.units.len() as u32)
        .filter(|i| f.units[*i as usize].available)
        .take(1000)
        .collect();
    let mut heading: HashMap<u32, f64> = HashMap::new();
    let mut pos: HashMap<u32, (f64, f64)> = HashMap::new();
    (0..count)
        .map(|_| {
            let i = avail[rng.gen_range(0..avail.len())];
            let h = *heading
                .entry(i)
                .or_insert_with(|| rng.gen_range(0.0..std::f64::consts::TAU));
            let u = &f.units[i as usize];
            let p = pos.entry(i).or_insert((u.lat, u.lon));
            let step = 70.0 / 111_320.0;
            let (mut dlat, mut dlon) = (step * h.cos(), step * h.sin() / p.0.to_radians().cos());
            if !LAT.contains(&(p.0 + dlat)) || !LON.contains(&(p.1 + dlon)) {
                heading.insert(i, h + std::f64::consts::PI);
                (dlat, dlon) = (-dlat, -dlon);
            }
            *p = (p.0 + dlat, p.1 + dlon);
            (i, dlat, dlon)
        })
        .collect()
}

/// The lazy update's trade-off: box margin (0 = every move is a remove +
/// insert) against update cost (random walk of <= 50 m steps, and driving)
/// and query cost, at the largest benchmarked size up to 100k.
fn margins(c: &mut Criterion) {
    let Some((n, f)) = fixtures().iter().rfind(|(n, _)| *n <= margin_size()) else {
        return;
    };
    let mut group = c.benchmark_group("margin");
    let walk = moves_of(f, 1 << 16, 1000);
    let drive = drives(f, 1 << 16);
    for margin in [0.0, 50.0, 100.0, 200.0, 400.0] {
        let mut idx = UnitIndex::with_margin_m(margin);
        for (i, u) in f.units.iter().enumerate() {
            idx.upsert(&f.ids[i], u.kind, u.lat, u.lon, u.available);
        }
        for (name, mv) in [("update_walk", &walk), ("update_drive", &drive)] {
            let mut idx = idx.clone();
            let mut pos: Vec<(f64, f64)> = f.units.iter().map(|u| (u.lat, u.lon)).collect();
            let mut j = 0usize;
            group.bench_function(BenchmarkId::new(format!("{name}/{n}"), margin), |b| {
                b.iter(|| {
                    let (i, dlat, dlon) = mv[j % mv.len()];
                    j += 1;
                    let p = &mut pos[i as usize];
                    *p = (p.0 + dlat, p.1 + dlon);
                    let u = &f.units[i as usize];
                    idx.upsert(&f.ids[i as usize], u.kind, p.0, p.1, true);
                })
            });
        }
        // Queries after a day of driving: every unit has moved.
        let mut pos: Vec<(f64, f64)> = f.units.iter().map(|u| (u.lat, u.lon)).collect();
        for &(i, dlat, dlon) in &drive {
            let p = &mut pos[i as usize];
            *p = (p.0 + dlat, p.1 + dlon);
            idx.upsert(&f.ids[i as usize], f.units[i as usize].kind, p.0, p.1, true);
        }
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new(format!("nearest_k5/{n}"), margin), |b| {
            b.iter(|| {
                i = (i + 1) % f.queries.len();
                let (lat, lon, _) = f.queries[i];
                black_box(
                    idx.nearest_available(UnitKind::Ambulance, lat, lon, K)
                        .len(),
                )
            })
        });
    }
    group.finish();
}

fn danang() -> Zones {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/danang/districts.geojson"
    );
    Zones::load(std::path::Path::new(path)).unwrap()
}

fn zone_lookup(c: &mut Criterion) {
    use geo::Contains;
    let zones = danang();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let pts: Vec<(f64, f64)> = (0..1024)
        .map(|_| (rng.gen_range(LAT), rng.gen_range(LON)))
        .collect();
    let all: Vec<_> = zones.iter().collect();
    let mut rtree_rs_boxes = rtree_rs::RTree::<2, f64, usize>::new();
    for (i, z) in all.iter().enumerate() {
        let (lo, hi) = (z.bbox.min(), z.bbox.max());
        rtree_rs_boxes.insert(rtree_rs::Rect::new([lo.x, lo.y], [hi.x, hi.y]), i);
    }
    let mut group = c.benchmark_group("zone_lookup");
    let mut i = 0usize;
    group.bench_function("ours", |b| {
        b.iter(|| {
            i = (i + 1) % pts.len();
            black_box(zones.zone_at(pts[i].0, pts[i].1).map(|z| z.id.len()))
        })
    });
    group.bench_function("ours_exact_polygons", |b| {
        b.iter(|| {
            i = (i + 1) % pts.len();
            black_box(zones.zone_at_exact(pts[i].0, pts[i].1).map(|z| z.id.len()))
        })
    });
    group.bench_function("brute_force", |b| {
        b.iter(|| {
            i = (i + 1) % pts.len();
            let p = geo::Point::new(pts[i].1, pts[i].0);
            black_box(all.iter().position(|z| z.shape.contains(&p)))
        })
    });
    group.bench_function("rtree_rs_boxes", |b| {
        b.iter(|| {
            i = (i + 1) % pts.len();
            let p = geo::Point::new(pts[i].1, pts[i].0);
            let probe = rtree_rs::Rect::new_point([pts[i].1, pts[i].0]);
            black_box(
                rtree_rs_boxes
                    .search(probe)
                    .find(|it| all[*it.data].shape.contains(&p))
                    .map(|it| *it.data),
            )
        })
    });
    group.finish();
}

/// p50 / p99 / p99.9 of single queries and updates, timed one by one.
fn percentiles(_: &mut Criterion) {
    fn pct(mut v: Vec<u64>) -> String {
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
        format!(
            "p50 {:>6.2} µs  p99 {:>6.2} µs  p99.9 {:>6.2} µs",
            at(0.5),
            at(0.99),
            at(0.999)
        )
    }
    println!("\nlatency percentiles (single operations, 20,000 each)");
    for (n, f) in fixtures() {
        let mut t = Vec::with_capacity(20_000);
        for j in 0..20_000 {
            let (lat, lon, _) = f.queries[j % f.queries.len()];
            let s = Instant::now();
            black_box(f.ours.nearest_available(UnitKind::Ambulance, lat, lon, K));
            t.push(s.elapsed().as_nanos() as u64);
        }
        println!("nearest_available_k5/ours/{n:<8} {}", pct(t));
        let mut t = Vec::with_capacity(20_000);
        for j in 0..20_000 {
            let q = f.queries[j % f.queries.len()].2;
            let s = Instant::now();
            black_box(rstar_one_tree(f, &q));
            t.push(s.elapsed().as_nanos() as u64);
        }
        println!("nearest_available_k5/rstar_one_tree/{n:<8} {}", pct(t));
        let mut ours = f.ours.clone();
        let mv = moves(f, 20_000);
        let mut pos: Vec<(f64, f64)> = f.units.iter().map(|u| (u.lat, u.lon)).collect();
        let mut t = Vec::with_capacity(20_000);
        for (i, dlat, dlon) in mv {
            let p = &mut pos[i as usize];
            *p = (p.0 + dlat, p.1 + dlon);
            let u = &f.units[i as usize];
            let s = Instant::now();
            ours.upsert(&f.ids[i as usize], u.kind, p.0, p.1, true);
            t.push(s.elapsed().as_nanos() as u64);
        }
        println!("position_update/ours/{n:<8} {}", pct(t));
    }
    let _ = HashMap::<u8, u8>::new();
    margin_percentiles(pct);
}

/// The margin trade-off as p50/p99 of single operations (more robust than
/// means on a busy machine) and the share of pings that touch the tree,
/// which no noise can change.
fn margin_percentiles(pct: fn(Vec<u64>) -> String) {
    let Some((n, f)) = fixtures().iter().rfind(|(n, _)| *n <= margin_size()) else {
        return;
    };
    // 1,000 units moving 40 pings each; the first 20 warm the boxes up.
    let walk = moves_of(f, 40_000, 1000);
    let drive = drives(f, 40_000);
    println!("\nmargin trade-off at {n} units, box margin capped at 0-400 m (20,000 timed operations each)");
    for margin in [0.0, 50.0, 100.0, 200.0, 400.0] {
        let mut base = UnitIndex::with_margin_m(margin);
        for (i, u) in f.units.iter().enumerate() {
            base.upsert(&f.ids[i], u.kind, u.lat, u.lon, u.available);
        }
        for (name, mv) in [("walk", &walk), ("drive", &drive)] {
            let mut idx = base.clone();
            let mut pos: Vec<(f64, f64)> = f.units.iter().map(|u| (u.lat, u.lon)).collect();
            let (mut t, mut touched) = (Vec::with_capacity(20_000), 0u64);
            // The first half warms the boxes up (units leave their
            // registration point), the second half is timed.
            for (j, &(i, dlat, dlon)) in mv.iter().enumerate() {
                let p = &mut pos[i as usize];
                *p = (p.0 + dlat, p.1 + dlon);
                let u = &f.units[i as usize];
                if j == mv.len() / 2 {
                    touched = idx.move_counts().1;
                }
                let s = Instant::now();
                idx.upsert(&f.ids[i as usize], u.kind, p.0, p.1, true);
                let e = s.elapsed().as_nanos() as u64;
                if j >= mv.len() / 2 {
                    t.push(e);
                }
            }
            let touched = idx.move_counts().1 - touched;
            println!(
                "cap {margin:>3} m  update_{name:<5}  {}  tree touched by {:>5.1} % of pings",
                pct(t),
                100.0 * touched as f64 / (mv.len() / 2) as f64
            );
            if name == "drive" {
                let mut t = Vec::with_capacity(20_000);
                for j in 0..20_000 {
                    let (lat, lon, _) = f.queries[j % f.queries.len()];
                    let s = Instant::now();
                    black_box(idx.nearest_available(UnitKind::Ambulance, lat, lon, K));
                    t.push(s.elapsed().as_nanos() as u64);
                }
                println!("cap {margin:>3} m  nearest_k5    {}", pct(t));
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = nearest, update, margins, zone_lookup, percentiles
}
criterion_main!(benches);
