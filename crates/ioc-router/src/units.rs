//! The spatial index of responder units: exact great-circle nearest
//! neighbours among the *available* units of one kind.
//!
//! Units are points on the unit sphere (3-D). For two points on the sphere
//! the straight chord between them grows monotonically with the great-circle
//! angle, so an R-tree ordered by Euclidean distance in 3-D gives exact
//! great-circle order: no projection error, no special case at the poles or
//! across the antimeridian.
//!
//! There is one tree per unit kind holding only that kind's available
//! units. A query for "the 3 nearest available ambulances" is then a plain
//! k-nearest walk that never visits a fire engine or a busy ambulance: the
//! filter is applied by construction, not by over-fetching and hoping. A
//! status change moves a unit in or out of its tree.
//!
//! Position updates are lazy (the "lazy-update R-tree" of Kwon, Lee and Lee,
//! 2002): the tree holds for each unit a small box around the position it
//! had when it was last inserted, and the exact
//! position lives beside the tree. A ping that stays inside the box only
//! overwrites the exact position (a hash lookup and a compare); one that
//! leaves it is a remove + insert of the box, never a rebuild. A vehicle's
//! pings move it tens of metres, so most pings never touch the tree.
//! Queries stay exact: the box's distance is a lower bound of the unit's
//! true distance, so the nearest walk over boxes, refined by exact distances
//! in a small heap, yields units in exact great-circle order
//! (`NearestAvailable`). Ties come out in unit id order, whatever the order
//! units were registered in (a restored engine recommends the same units).
//!
//! Boxes cost queries: overlapping boxes make the walk visit more of them.
//! So a box's half-width is the smaller of the margin (100 m by default) and
//! `SPACING_FRACTION` of the mean spacing of the kind's available units when
//! it is inserted: a city fleet gets the full margin, a fleet packed denser
//! than one unit per ~300 m gets smaller boxes (BENCHMARKS.md has the
//! trade-off measured at 100k and 1M units).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use ioc_model::UnitKind;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::RTree;

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Half-width of a unit's box in the tree, metres, by default: pings that
/// stay within it do not touch the tree. 100 m is one to three pings of a
/// vehicle in town and a few per cent of the spacing of a city's units;
/// `BENCHMARKS.md` has the update/query trade-off measured for 0–400 m.
pub const DEFAULT_MARGIN_M: f64 = 100.0;

/// A box's half-width is at most this fraction of the mean spacing of the
/// available units of its kind.
pub const SPACING_FRACTION: f64 = 0.3;

type Entry = GeomWithData<Rectangle<[f64; 3]>, u32>;

fn entry(center: [f64; 3], half: f64, slot: u32) -> Entry {
    let lo = [center[0] - half, center[1] - half, center[2] - half];
    let hi = [center[0] + half, center[1] + half, center[2] + half];
    GeomWithData::new(Rectangle::from_corners(lo, hi), slot)
}

/// Squared chord, summed in the same order as rstar sums a box's distance,
/// so that (rounding being monotonic) a box's distance never exceeds the
/// distance of a point inside it.
fn chord_2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

/// Unit vector on the sphere for a WGS84 point.
pub fn to_unit_sphere(lat: f64, lon: f64) -> [f64; 3] {
    let (lat, lon) = (lat.to_radians(), lon.to_radians());
    let (slat, clat) = lat.sin_cos();
    let (slon, clon) = lon.sin_cos();
    [clat * clon, clat * slon, slat]
}

/// Great-circle distance in metres for a chord length on the unit sphere.
pub fn chord_to_metres(chord: f64) -> f64 {
    2.0 * (chord / 2.0).clamp(-1.0, 1.0).asin() * EARTH_RADIUS_M
}

/// Great-circle distance in metres between two WGS84 points.
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let a = to_unit_sphere(lat1, lon1);
    let b = to_unit_sphere(lat2, lon2);
    let d2: f64 = (0..3).map(|i| (a[i] - b[i]).powi(2)).sum();
    chord_to_metres(d2.sqrt())
}

pub(crate) fn kind_slot(kind: UnitKind) -> usize {
    match kind {
        UnitKind::Ambulance => 0,
        UnitKind::FireEngine => 1,
        UnitKind::Police => 2,
        UnitKind::Rescue => 3,
    }
}

#[derive(Debug, Clone)]
struct Indexed {
    unit_id: String,
    kind: UnitKind,
    /// Exact position.
    point: [f64; 3],
    /// Centre and half-width of the unit's box in its kind's tree; `Some`
    /// exactly when the unit is available.
    boxed: Option<([f64; 3], f64)>,
}

/// A unit found by a nearest query.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearby<'a> {
    pub unit_id: &'a str,
    pub kind: UnitKind,
    /// Great-circle distance from the query point, metres.
    pub distance_m: f64,
}

/// R-trees of available units, one per kind, keyed by unit id.
#[derive(Debug, Clone)]
pub struct UnitIndex {
    /// unit id → slot in `units`; slots are reused by nobody (units are few
    /// and long-lived), which keeps ids in the trees stable.
    slots: HashMap<String, u32>,
    units: Vec<Indexed>,
    /// Available units of each kind, in `kind_slot` order, as boxes.
    trees: [RTree<Entry>; 4],
    /// Largest half-width of a box on the unit sphere (chord units).
    max_half: f64,
    /// Moves of available units: (inside their box, box moved in the tree).
    moves: (u64, u64),
}

impl Default for UnitIndex {
    fn default() -> Self {
        Self::with_margin_m(DEFAULT_MARGIN_M)
    }
}

impl UnitIndex {
    /// An empty index with the default box margin.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index whose boxes have a half-width of `margin_m` metres.
    /// 0 makes every move a remove + insert (a plain point R-tree).
    pub fn with_margin_m(margin_m: f64) -> Self {
        Self {
            slots: HashMap::new(),
            units: Vec::new(),
            trees: Default::default(),
            max_half: margin_m.max(0.0) / EARTH_RADIUS_M,
            moves: (0, 0),
        }
    }

    /// Half-width for a box entering `tree`: the margin, or less where the
    /// kind's available units are dense (mean spacing from the tree's extent
    /// and size; the two widest axes of its root box span the area).
    fn half_for(max_half: f64, tree: &RTree<Entry>) -> f64 {
        let n = tree.size();
        if n < 16 || max_half == 0.0 {
            return max_half;
        }
        let env = tree.root().envelope();
        let (lo, hi) = (env.lower(), env.upper());
        let mut ext = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
        ext.sort_by(f64::total_cmp);
        let spacing = (ext[1] * ext[2] / n as f64).sqrt();
        max_half.min(SPACING_FRACTION * spacing)
    }

    /// Number of units known (available or not).
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// True when no unit is known.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Moves of available units so far: (absorbed by their box, moved their
    /// box in the tree). The share of the second is what position updates
    /// cost beyond a hash lookup.
    pub fn move_counts(&self) -> (u64, u64) {
        self.moves
    }

    /// Number of available units of a kind.
    pub fn available_count(&self, kind: UnitKind) -> usize {
        self.trees[kind_slot(kind)].size()
    }

    /// Inserts or moves a unit and sets its availability. A move that stays
    /// inside the unit's box is O(1); otherwise at most one remove and one
    /// insert, O(log n).
    pub fn upsert(&mut self, unit_id: &str, kind: UnitKind, lat: f64, lon: f64, available: bool) {
        let point = to_unit_sphere(lat, lon);
        let slot = match self.slots.get(unit_id).copied() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.units.len()).unwrap_or(u32::MAX);
                self.slots.insert(unit_id.to_string(), slot);
                self.units.push(Indexed {
                    unit_id: unit_id.to_string(),
                    kind,
                    point,
                    boxed: None,
                });
                slot
            }
        };
        let u = &mut self.units[slot as usize];
        let keep = available
            && u.kind == kind
            && u.boxed
                .is_some_and(|(c, h)| (0..3).all(|i| point[i] >= c[i] - h && point[i] <= c[i] + h));
        u.point = point;
        if keep {
            self.moves.0 += 1;
            return;
        }
        if available && u.boxed.is_some() && u.kind == kind {
            self.moves.1 += 1;
        }
        if let Some((c, h)) = u.boxed.take() {
            self.trees[kind_slot(u.kind)].remove(&entry(c, h, slot));
        }
        u.kind = kind;
        if available {
            let tree = &mut self.trees[kind_slot(kind)];
            let h = Self::half_for(self.max_half, tree);
            u.boxed = Some((point, h));
            tree.insert(entry(point, h, slot));
        }
    }

    /// Changes only availability. Returns false for an unknown unit.
    pub fn set_available(&mut self, unit_id: &str, available: bool) -> bool {
        let Some(slot) = self.slots.get(unit_id).copied() else {
            return false;
        };
        let u = &mut self.units[slot as usize];
        let tree = &mut self.trees[kind_slot(u.kind)];
        match (u.boxed, available) {
            (None, true) => {
                let h = Self::half_for(self.max_half, tree);
                u.boxed = Some((u.point, h));
                tree.insert(entry(u.point, h, slot));
            }
            (Some((c, h)), false) => {
                tree.remove(&entry(c, h, slot));
                u.boxed = None;
            }
            _ => {}
        }
        true
    }

    /// The `k` nearest available units of `kind` to a point, nearest first,
    /// by exact great-circle distance. O(k log n) expected.
    pub fn nearest_available(
        &self,
        kind: UnitKind,
        lat: f64,
        lon: f64,
        k: usize,
    ) -> Vec<Nearby<'_>> {
        self.nearest_available_iter(kind, lat, lon)
            .take(k)
            .collect()
    }

    /// The available units of `kind`, nearest first, lazily: a caller that
    /// ranks by something else than distance (ETA, staleness) walks only as
    /// far as its own stopping rule needs. Each step is O(log n) amortised.
    pub fn nearest_available_iter(
        &self,
        kind: UnitKind,
        lat: f64,
        lon: f64,
    ) -> impl Iterator<Item = Nearby<'_>> + '_ {
        let q = to_unit_sphere(lat, lon);
        NearestAvailable {
            units: &self.units,
            walk: self.trees[kind_slot(kind)]
                .nearest_neighbor_iter_with_distance_2(&q)
                .peekable(),
            q,
            refined: BinaryHeap::new(),
        }
    }
}

/// A unit whose exact distance is known, ordered nearest (then lowest unit
/// id) first in a max-heap.
struct Refined<'a> {
    d2: f64,
    unit: &'a Indexed,
}

impl PartialEq for Refined<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Refined<'_> {}

impl Ord for Refined<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .d2
            .total_cmp(&self.d2)
            .then_with(|| other.unit.unit_id.cmp(&self.unit.unit_id))
    }
}

impl PartialOrd for Refined<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Available units of one kind in exact distance order: the tree's walk
/// yields boxes by their distance, a lower bound of their unit's exact
/// distance; a unit is yielded once its exact distance is below the bound
/// of every box not yet walked.
struct NearestAvailable<'a, W: Iterator<Item = (&'a Entry, f64)>> {
    units: &'a [Indexed],
    walk: std::iter::Peekable<W>,
    q: [f64; 3],
    refined: BinaryHeap<Refined<'a>>,
}

impl<'a, W: Iterator<Item = (&'a Entry, f64)>> Iterator for NearestAvailable<'a, W> {
    type Item = Nearby<'a>;

    fn next(&mut self) -> Option<Nearby<'a>> {
        loop {
            let bound = self.walk.peek().map(|(_, lb)| *lb);
            match (self.refined.peek(), bound) {
                (Some(best), Some(lb)) if best.d2 < lb => break,
                (Some(_), None) => break,
                (None, None) => return None,
                _ => {}
            }
            if let Some((e, _)) = self.walk.next() {
                let unit = &self.units[e.data as usize];
                let d2 = chord_2(&unit.point, &self.q);
                self.refined.push(Refined { d2, unit });
            }
        }
        let best = self.refined.pop()?;
        let u = best.unit;
        Some(Nearby {
            unit_id: &u.unit_id,
            kind: u.kind,
            distance_m: chord_to_metres(best.d2.sqrt()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn distance_matches_known_value() {
        // Da Nang cathedral to Marble Mountains: about 8.4 km.
        let d = distance_m(16.0668, 108.2230, 16.0036, 108.2636);
        assert!((d - 8_220.0).abs() < 300.0, "{d}");
        assert!(distance_m(10.0, 179.9, 10.0, -179.9) < 25_000.0);
    }

    #[test]
    fn nearest_skips_busy_units_and_other_kinds() {
        let mut idx = UnitIndex::new();
        idx.upsert("amb-near-busy", UnitKind::Ambulance, 16.060, 108.220, false);
        idx.upsert("fire-near", UnitKind::FireEngine, 16.061, 108.221, true);
        idx.upsert("amb-far", UnitKind::Ambulance, 16.100, 108.200, true);
        idx.upsert("amb-mid", UnitKind::Ambulance, 16.070, 108.220, true);
        let got: Vec<_> = idx
            .nearest_available(UnitKind::Ambulance, 16.060, 108.220, 5)
            .into_iter()
            .map(|n| n.unit_id)
            .collect();
        assert_eq!(got, vec!["amb-mid", "amb-far"]);
        idx.set_available("amb-near-busy", true);
        let first = idx.nearest_available(UnitKind::Ambulance, 16.060, 108.220, 1);
        assert_eq!(first[0].unit_id, "amb-near-busy");
        assert!(first[0].distance_m < 1.0);
    }

    #[test]
    fn moving_a_unit_updates_the_tree_in_place() {
        let mut idx = UnitIndex::new();
        idx.upsert("a", UnitKind::Police, 0.0, 0.0, true);
        idx.upsert("b", UnitKind::Police, 0.0, 1.0, true);
        idx.upsert("a", UnitKind::Police, 0.0, 2.0, true);
        assert_eq!(idx.available_count(UnitKind::Police), 2);
        let got = idx.nearest_available(UnitKind::Police, 0.0, 0.0, 1);
        assert_eq!(got[0].unit_id, "b");
        assert_eq!(idx.move_counts(), (0, 1));
        // 10 m further: inside its box, the tree is not touched, and the
        // exact position is what queries see.
        idx.upsert("a", UnitKind::Police, 0.0, 2.0001, true);
        assert_eq!(idx.move_counts(), (1, 1));
        let got = idx.nearest_available(UnitKind::Police, 0.0, 2.0001, 1);
        assert_eq!(got[0].unit_id, "a");
        assert!(got[0].distance_m < 0.01, "{}", got[0].distance_m);
    }

    #[test]
    fn ties_come_out_in_unit_id_order_whatever_the_registration_order() {
        // Three ambulances parked at one hospital, one a little further.
        let ids = ["amb-c", "amb-a", "amb-d", "amb-b"];
        let at = |id: &str| if id == "amb-d" { 16.0610 } else { 16.0600 };
        let mut orders = Vec::new();
        for rotation in 0..ids.len() {
            let mut idx = UnitIndex::new();
            for i in 0..ids.len() {
                let id = ids[(i + rotation) % ids.len()];
                idx.upsert(id, UnitKind::Ambulance, at(id), 108.22, true);
            }
            let got: Vec<String> = idx
                .nearest_available(UnitKind::Ambulance, 16.0590, 108.22, 4)
                .iter()
                .map(|n| n.unit_id.to_string())
                .collect();
            orders.push(got);
        }
        assert_eq!(orders[0], vec!["amb-a", "amb-b", "amb-c", "amb-d"]);
        assert!(orders.iter().all(|o| *o == orders[0]), "{orders:?}");
    }

    #[test]
    fn dense_fleets_get_smaller_boxes() {
        // 400 units on a 20 x 20 grid 50 m apart: spacing 50 m, so boxes of
        // at most 0.3 x 50 m = 15 m, not the 100 m margin.
        let mut idx = UnitIndex::new();
        for i in 0..400 {
            let (r, c) = ((i / 20) as f64, (i % 20) as f64);
            idx.upsert(
                &format!("u{i}"),
                UnitKind::Police,
                16.0 + r * 0.00045,
                108.2 + c * 0.00047,
                true,
            );
        }
        let h = UnitIndex::half_for(idx.max_half, &idx.trees[kind_slot(UnitKind::Police)]);
        let metres = h * EARTH_RADIUS_M;
        assert!(metres < 20.0 && metres > 10.0, "{metres}");
        let sparse = UnitIndex::new();
        assert_eq!(
            UnitIndex::half_for(sparse.max_half, &sparse.trees[0]) * EARTH_RADIUS_M,
            DEFAULT_MARGIN_M
        );
    }

    fn kind_strategy() -> impl Strategy<Value = UnitKind> {
        prop_oneof![
            Just(UnitKind::Ambulance),
            Just(UnitKind::FireEngine),
            Just(UnitKind::Police),
            Just(UnitKind::Rescue)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The index answers exactly what a brute-force scan over every unit
        /// answers, anywhere on Earth, after arbitrary moves.
        /// Moves are jumps anywhere or steps of up to ~1 km (inside or just
        /// outside a box); box margins from none to a quarter of the Earth.
        #[test]
        fn matches_brute_force(
            units in prop::collection::vec((-90.0f64..=90.0, -180.0f64..=180.0, kind_strategy(), any::<bool>()), 1..120),
            moves in prop::collection::vec((0usize..120, -90.0f64..=90.0, -180.0f64..=180.0, any::<bool>(), any::<bool>()), 0..80),
            q in (-90.0f64..=90.0, -180.0f64..=180.0, kind_strategy(), 1usize..8),
            margin_m in prop_oneof![Just(0.0), Just(DEFAULT_MARGIN_M), 1.0f64..2_000.0, Just(10_000_000.0)],
        ) {
            let mut idx = UnitIndex::with_margin_m(margin_m);
            let mut truth: Vec<(String, UnitKind, f64, f64, bool)> = Vec::new();
            for (i, (lat, lon, kind, avail)) in units.iter().enumerate() {
                let id = format!("u{i}");
                idx.upsert(&id, *kind, *lat, *lon, *avail);
                truth.push((id, *kind, *lat, *lon, *avail));
            }
            for (i, lat, lon, avail, step) in moves {
                let i = i % truth.len();
                let kind = truth[i].1;
                let (lat, lon) = if step {
                    // lat/lon drawn from the whole Earth, scaled to <= 0.01 deg.
                    ((truth[i].2 + lat / 9_000.0).clamp(-90.0, 90.0), truth[i].3 + lon / 18_000.0)
                } else {
                    (lat, lon)
                };
                idx.upsert(&truth[i].0.clone(), kind, lat, lon, avail);
                truth[i] = (truth[i].0.clone(), kind, lat, lon, avail);
            }
            let (qlat, qlon, qkind, k) = q;
            let got = idx.nearest_available(qkind, qlat, qlon, k);
            let mut want: Vec<(f64, &str)> = truth
                .iter()
                .filter(|t| t.1 == qkind && t.4)
                .map(|t| (distance_m(qlat, qlon, t.2, t.3), t.0.as_str()))
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0));
            want.truncate(k);
            prop_assert_eq!(got.len(), want.len());
            // The lazy walk yields every available unit of the kind, in order.
            let all: Vec<f64> = idx.nearest_available_iter(qkind, qlat, qlon).map(|n| n.distance_m).collect();
            prop_assert_eq!(all.len(), idx.available_count(qkind));
            prop_assert!(all.windows(2).all(|w| w[0] <= w[1]), "{:?}", all);
            for (g, w) in got.iter().zip(&want) {
                // Ties may come in either order; distances must agree.
                prop_assert!((g.distance_m - w.0).abs() < 1e-3, "{} vs {}", g.distance_m, w.0);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// A dense fleet in a ~2 km square (anywhere on Earth, poles and
        /// antimeridian included) moving in steps comparable to the box
        /// margin: the boxes overlap and the refinement order matters.
        #[test]
        fn dense_fleet_matches_brute_force(
            centre in (-89.9f64..=89.9, -180.0f64..=180.0),
            units in prop::collection::vec((0.0f64..0.02, 0.0f64..0.02, any::<bool>()), 1..80),
            steps in prop::collection::vec((0usize..80, -0.003f64..0.003, -0.003f64..0.003, any::<bool>()), 0..200),
            margin_m in 0.0f64..500.0,
            q in (0.0f64..0.02, 0.0f64..0.02, 1usize..12),
        ) {
            let at = |dlat: f64, dlon: f64| ((centre.0 + dlat).clamp(-90.0, 90.0), centre.1 + dlon);
            let mut idx = UnitIndex::with_margin_m(margin_m);
            let mut truth: Vec<(f64, f64, bool)> = Vec::new();
            for (i, (dlat, dlon, avail)) in units.iter().enumerate() {
                let (lat, lon) = at(*dlat, *dlon);
                idx.upsert(&format!("u{i}"), UnitKind::Ambulance, lat, lon, *avail);
                truth.push((lat, lon, *avail));
            }
            for (i, dlat, dlon, avail) in steps {
                let i = i % truth.len();
                let (lat, lon) = ((truth[i].0 + dlat).clamp(-90.0, 90.0), truth[i].1 + dlon);
                idx.upsert(&format!("u{i}"), UnitKind::Ambulance, lat, lon, avail);
                truth[i] = (lat, lon, avail);
            }
            let (qlat, qlon) = at(q.0, q.1);
            let got = idx.nearest_available(UnitKind::Ambulance, qlat, qlon, q.2);
            let mut want: Vec<f64> = truth
                .iter()
                .filter(|t| t.2)
                .map(|t| distance_m(qlat, qlon, t.0, t.1))
                .collect();
            want.sort_by(f64::total_cmp);
            want.truncate(q.2);
            let got: Vec<f64> = got.iter().map(|n| n.distance_m).collect();
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() < 1e-6, "{:?} vs {:?}", got, want);
            }
        }
    }
}
