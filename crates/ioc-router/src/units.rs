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
//! status change moves a unit in or out of its tree; a position update is a
//! remove + insert of one point, never a rebuild.

use std::collections::HashMap;

use ioc_model::UnitKind;
use rstar::primitives::GeomWithData;
use rstar::RTree;

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

type Entry = GeomWithData<[f64; 3], u32>;

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
    point: [f64; 3],
    available: bool,
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
#[derive(Debug, Default, Clone)]
pub struct UnitIndex {
    /// unit id → slot in `units`; slots are reused by nobody (units are few
    /// and long-lived), which keeps ids in the trees stable.
    slots: HashMap<String, u32>,
    units: Vec<Indexed>,
    /// Available units of each kind, in `kind_slot` order.
    trees: [RTree<Entry>; 4],
}

impl UnitIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of units known (available or not).
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// True when no unit is known.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Number of available units of a kind.
    pub fn available_count(&self, kind: UnitKind) -> usize {
        self.trees[kind_slot(kind)].size()
    }

    /// Inserts or moves a unit and sets its availability. O(log n): at most
    /// one remove and one insert.
    pub fn upsert(&mut self, unit_id: &str, kind: UnitKind, lat: f64, lon: f64, available: bool) {
        let point = to_unit_sphere(lat, lon);
        match self.slots.get(unit_id).copied() {
            Some(slot) => {
                let u = &mut self.units[slot as usize];
                if u.available {
                    self.trees[kind_slot(u.kind)].remove(&Entry::new(u.point, slot));
                }
                u.kind = kind;
                u.point = point;
                u.available = available;
                if available {
                    self.trees[kind_slot(kind)].insert(Entry::new(point, slot));
                }
            }
            None => {
                let slot = u32::try_from(self.units.len()).unwrap_or(u32::MAX);
                self.slots.insert(unit_id.to_string(), slot);
                self.units.push(Indexed {
                    unit_id: unit_id.to_string(),
                    kind,
                    point,
                    available,
                });
                if available {
                    self.trees[kind_slot(kind)].insert(Entry::new(point, slot));
                }
            }
        }
    }

    /// Changes only availability. Returns false for an unknown unit.
    pub fn set_available(&mut self, unit_id: &str, available: bool) -> bool {
        let Some(slot) = self.slots.get(unit_id).copied() else {
            return false;
        };
        let u = &mut self.units[slot as usize];
        if u.available != available {
            let tree = &mut self.trees[kind_slot(u.kind)];
            if available {
                tree.insert(Entry::new(u.point, slot));
            } else {
                tree.remove(&Entry::new(u.point, slot));
            }
            u.available = available;
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
        self.trees[kind_slot(kind)]
            .nearest_neighbor_iter_with_distance_2(&q)
            .map(|(e, d2)| {
                let u = &self.units[e.data as usize];
                Nearby {
                    unit_id: &u.unit_id,
                    kind: u.kind,
                    distance_m: chord_to_metres(d2.sqrt()),
                }
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
        #[test]
        fn matches_brute_force(
            units in prop::collection::vec((-90.0f64..=90.0, -180.0f64..=180.0, kind_strategy(), any::<bool>()), 1..120),
            moves in prop::collection::vec((0usize..120, -90.0f64..=90.0, -180.0f64..=180.0, any::<bool>()), 0..40),
            q in (-90.0f64..=90.0, -180.0f64..=180.0, kind_strategy(), 1usize..8),
        ) {
            let mut idx = UnitIndex::new();
            let mut truth: Vec<(String, UnitKind, f64, f64, bool)> = Vec::new();
            for (i, (lat, lon, kind, avail)) in units.iter().enumerate() {
                let id = format!("u{i}");
                idx.upsert(&id, *kind, *lat, *lon, *avail);
                truth.push((id, *kind, *lat, *lon, *avail));
            }
            for (i, lat, lon, avail) in moves {
                let i = i % truth.len();
                let kind = truth[i].1;
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
            for (g, w) in got.iter().zip(&want) {
                // Ties may come in either order; distances must agree.
                prop_assert!((g.distance_m - w.0).abs() < 1e-3, "{} vs {}", g.distance_m, w.0);
            }
        }
    }
}
