//! Where things may be: the land part of the zones, point sampling weighted
//! toward where people live, and routes that stay on land.
//!
//! The zones file has no road network, so routes are built from straight legs
//! that are checked to stay on land. Most trips in the city are a straight or
//! L-shaped leg; trips that would cross water (the bay between Liên Chiểu and
//! Sơn Trà, the estuary) go over a coarse grid of land points (A*), then get
//! string-pulled so they do not look like a staircase. Every leg is sampled
//! every [`SEGMENT_STEP_M`] metres with the same point-in-zone test the
//! processor uses ([`ioc_router::Zones::zone_at`] semantics), and the
//! simulator checks the exact ping positions of a route again before it
//! drives it, so a ping never lands in the sea or in a sliver between zones.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use geo::{Contains, Coord, Intersects, Line, MultiPolygon, Point, Rect};
use ioc_router::Zones;
use rand::Rng;

/// Mean Earth radius in metres (spherical model, good to 0.5% at city scale).
pub(crate) const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Spacing of on-land checks along a leg. Small enough that a leg cannot
/// cut a headland or a pier, large enough to keep route planning cheap.
pub(crate) const SEGMENT_STEP_M: f64 = 40.0;

/// Spacing of the fallback routing grid.
const GRID_STEP_M: f64 = 600.0;

/// How far (in grid cells) a point may be from the grid node it attaches to.
const ATTACH_CELLS: i32 = 3;

/// A WGS84 position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    pub(crate) fn new(lat: f64, lon: f64) -> Self {
        Self { lat, lon }
    }

    /// Great-circle distance in metres (haversine).
    pub(crate) fn distance_m(self, other: LatLon) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }

    /// Initial bearing toward `other`, degrees clockwise from north in [0, 360).
    pub(crate) fn bearing_deg(self, other: LatLon) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dl = (other.lon - self.lon).to_radians();
        let y = dl.sin() * p2.cos();
        let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
        let deg = y.atan2(x).to_degrees().rem_euclid(360.0);
        // rem_euclid can return 360.0 for tiny negative inputs.
        if deg >= 360.0 {
            0.0
        } else {
            deg
        }
    }

    /// Linear interpolation; fine for legs of a few kilometres.
    pub(crate) fn lerp(self, other: LatLon, f: f64) -> LatLon {
        LatLon::new(
            self.lat + (other.lat - self.lat) * f,
            self.lon + (other.lon - self.lon) * f,
        )
    }

    /// The point `north_m` / `east_m` metres away (local flat approximation).
    pub(crate) fn offset_m(self, north_m: f64, east_m: f64) -> LatLon {
        let dlat = north_m / EARTH_RADIUS_M;
        let dlon = east_m / (EARTH_RADIUS_M * self.lat.to_radians().cos());
        LatLon::new(self.lat + dlat.to_degrees(), self.lon + dlon.to_degrees())
    }
}

/// One land zone, with the weight that decides how much happens in it.
#[derive(Debug, Clone)]
pub(crate) struct LandZone {
    pub id: String,
    shape: MultiPolygon<f64>,
    bbox: Rect<f64>,
    /// Relative share of incidents, calls and stations.
    pub weight: f64,
}

impl LandZone {
    fn contains(&self, p: LatLon) -> bool {
        let pt = Point::new(p.lon, p.lat);
        let (min, max) = (self.bbox.min(), self.bbox.max());
        if p.lon < min.x || p.lon > max.x || p.lat < min.y || p.lat > max.y {
            return false;
        }
        // Same predicate as `Zones::zone_at`, so "on land" here means "in a
        // non-offshore zone" there.
        self.shape.contains(&pt)
            || self
                .shape
                .iter()
                .any(|poly| poly.exterior().intersects(&pt))
    }
}

impl LandZone {
    fn bbox_holds(&self, p: LatLon) -> bool {
        let (min, max) = (self.bbox.min(), self.bbox.max());
        p.lon >= min.x && p.lon <= max.x && p.lat >= min.y && p.lat <= max.y
    }

    /// True when the straight leg lies in the zone's interior: `a` is inside
    /// and the leg crosses or touches no ring of the zone. One pass over the
    /// rings instead of a point-in-polygon test per sample; a `false` says
    /// nothing (the leg may still pass the sampled test).
    fn holds_segment(&self, a: LatLon, b: LatLon) -> bool {
        if !self.bbox_holds(a) || !self.bbox_holds(b) {
            return false;
        }
        if !self.shape.contains(&Point::new(a.lon, a.lat)) {
            return false;
        }
        let line = Line::new(Coord { x: a.lon, y: a.lat }, Coord { x: b.lon, y: b.lat });
        !self.shape.iter().any(|poly| {
            poly.exterior().intersects(&line)
                || poly.interiors().iter().any(|r| r.intersects(&line))
        })
    }
}

/// Relative activity of the Da Nang districts (population and commerce:
/// Hải Châu is the centre, Hòa Vang is rural and mountainous). Zones are
/// data, so an unknown id (a new wards file) simply gets weight 1.
fn activity_weight(zone_id: &str) -> f64 {
    match zone_id {
        "hai_chau" => 1.7,
        "thanh_khe" => 1.4,
        "son_tra" => 1.1,
        "lien_chieu" => 1.1,
        "ngu_hanh_son" => 0.9,
        "cam_le" => 0.9,
        "hoa_vang" => 0.5,
        _ => 1.0,
    }
}

/// A node of the fallback routing grid.
#[derive(Debug, Clone)]
struct GridNode {
    at: LatLon,
    /// (neighbour index, length in metres)
    edges: Vec<(usize, u32)>,
    /// Connected component id; only the largest one is used.
    component: usize,
}

/// The land of a city and the routes over it.
#[derive(Debug, Clone)]
pub(crate) struct Land {
    pub zones: Vec<LandZone>,
    /// Where activity concentrates: sampling within a zone is biased toward
    /// it so that Hòa Vang's incidents sit in its populated east, not on the
    /// Bà Nà mountains.
    core: LatLon,
    origin: LatLon,
    step_lat: f64,
    step_lon: f64,
    nodes: Vec<GridNode>,
    cells: HashMap<(i32, i32), usize>,
    main_component: usize,
}

impl Land {
    /// Builds the land model from every non-offshore zone.
    ///
    /// Panics if there is no land zone at all: a simulator with nowhere to put
    /// units is a configuration error the caller must not get past.
    pub(crate) fn new(zones: &Zones) -> Self {
        let land: Vec<LandZone> = zones
            .iter()
            .filter(|z| !z.offshore)
            .map(|z| LandZone {
                id: z.id.clone(),
                shape: z.shape.clone(),
                bbox: z.bbox,
                weight: activity_weight(&z.id),
            })
            .collect();
        assert!(!land.is_empty(), "the zones file has no land zone");
        let total: f64 = land.iter().map(|z| z.weight).sum();
        let (mut clat, mut clon) = (0.0, 0.0);
        for z in &land {
            let c = z.bbox.center();
            clat += c.y * z.weight / total;
            clon += c.x * z.weight / total;
        }
        let min_lat = land.iter().map(|z| z.bbox.min().y).fold(f64::MAX, f64::min);
        let min_lon = land.iter().map(|z| z.bbox.min().x).fold(f64::MAX, f64::min);
        let max_lat = land.iter().map(|z| z.bbox.max().y).fold(f64::MIN, f64::max);
        let max_lon = land.iter().map(|z| z.bbox.max().x).fold(f64::MIN, f64::max);
        let origin = LatLon::new(min_lat, min_lon);
        let step_lat = (GRID_STEP_M / EARTH_RADIUS_M).to_degrees();
        let step_lon = (GRID_STEP_M
            / (EARTH_RADIUS_M * ((min_lat + max_lat) / 2.0).to_radians().cos()))
        .to_degrees();
        let mut me = Land {
            zones: land,
            core: LatLon::new(clat, clon),
            origin,
            step_lat,
            step_lon,
            nodes: Vec::new(),
            cells: HashMap::new(),
            main_component: 0,
        };
        me.build_grid(max_lat, max_lon);
        me
    }

    fn build_grid(&mut self, max_lat: f64, max_lon: f64) {
        let rows = ((max_lat - self.origin.lat) / self.step_lat).ceil() as i32;
        let cols = ((max_lon - self.origin.lon) / self.step_lon).ceil() as i32;
        for i in 0..=rows {
            for j in 0..=cols {
                let at = self.cell_center(i, j);
                if self.on_land(at) {
                    self.cells.insert((i, j), self.nodes.len());
                    self.nodes.push(GridNode {
                        at,
                        edges: Vec::new(),
                        component: usize::MAX,
                    });
                }
            }
        }
        // Edges to the 4 "forward" neighbours; each added both ways.
        let mut keys: Vec<(i32, i32)> = self.cells.keys().copied().collect();
        keys.sort_unstable();
        for (i, j) in keys {
            let a = self.cells[&(i, j)];
            for (di, dj) in [(0, 1), (1, -1), (1, 0), (1, 1)] {
                if let Some(&b) = self.cells.get(&(i + di, j + dj)) {
                    let (pa, pb) = (self.nodes[a].at, self.nodes[b].at);
                    if self.segment_on_land(pa, pb) {
                        let len = pa.distance_m(pb).round() as u32;
                        self.nodes[a].edges.push((b, len));
                        self.nodes[b].edges.push((a, len));
                    }
                }
            }
        }
        // Connected components by BFS; remember the largest.
        let mut sizes = Vec::new();
        for start in 0..self.nodes.len() {
            if self.nodes[start].component != usize::MAX {
                continue;
            }
            let comp = sizes.len();
            let mut size = 0usize;
            let mut queue = VecDeque::from([start]);
            self.nodes[start].component = comp;
            while let Some(n) = queue.pop_front() {
                size += 1;
                for k in 0..self.nodes[n].edges.len() {
                    let m = self.nodes[n].edges[k].0;
                    if self.nodes[m].component == usize::MAX {
                        self.nodes[m].component = comp;
                        queue.push_back(m);
                    }
                }
            }
            sizes.push(size);
        }
        self.main_component = sizes
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (**s, Reverse(*i)))
            .map(|(i, _)| i)
            .unwrap_or(0);
    }

    fn cell_center(&self, i: i32, j: i32) -> LatLon {
        LatLon::new(
            self.origin.lat + f64::from(i) * self.step_lat,
            self.origin.lon + f64::from(j) * self.step_lon,
        )
    }

    fn cell_of(&self, p: LatLon) -> (i32, i32) {
        (
            ((p.lat - self.origin.lat) / self.step_lat).round() as i32,
            ((p.lon - self.origin.lon) / self.step_lon).round() as i32,
        )
    }

    /// True when the point is inside a land (non-offshore) zone.
    pub(crate) fn on_land(&self, p: LatLon) -> bool {
        self.zones.iter().any(|z| z.contains(p))
    }

    /// Id of the land zone holding the point.
    pub(crate) fn zone_id_at(&self, p: LatLon) -> Option<&str> {
        self.zones
            .iter()
            .find(|z| z.contains(p))
            .map(|z| z.id.as_str())
    }

    /// True when the straight leg stays on land at every sample.
    ///
    /// A leg wholly inside one zone (the common case: grid edges, short
    /// drives) is accepted by one boundary-crossing test, which implies the
    /// sampled test; only legs that cross or touch a zone boundary are
    /// sampled. This keeps building the routing grid cheap in debug builds.
    pub(crate) fn segment_on_land(&self, a: LatLon, b: LatLon) -> bool {
        if self.zones.iter().any(|z| z.holds_segment(a, b)) {
            return true;
        }
        let n = (a.distance_m(b) / SEGMENT_STEP_M).ceil().max(1.0) as usize;
        (0..=n).all(|k| self.on_land(a.lerp(b, k as f64 / n as f64)))
    }

    /// The nearest grid node of the main component reachable in a straight
    /// on-land leg from `p`.
    fn attach(&self, p: LatLon) -> Option<usize> {
        let (ci, cj) = self.cell_of(p);
        let mut candidates: Vec<(f64, usize)> = Vec::new();
        for di in -ATTACH_CELLS..=ATTACH_CELLS {
            for dj in -ATTACH_CELLS..=ATTACH_CELLS {
                if let Some(&n) = self.cells.get(&(ci + di, cj + dj)) {
                    if self.nodes[n].component == self.main_component {
                        candidates.push((p.distance_m(self.nodes[n].at), n));
                    }
                }
            }
        }
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        candidates
            .into_iter()
            .take(8)
            .find(|(_, n)| self.segment_on_land(p, self.nodes[*n].at))
            .map(|(_, n)| n)
    }

    /// True when a route can start or end at `p`: it is on land and connects
    /// to the main road grid (not a rock off Sơn Trà).
    pub(crate) fn routable(&self, p: LatLon) -> bool {
        self.on_land(p) && self.attach(p).is_some()
    }

    /// A random routable point in a zone chosen by weight, biased toward the
    /// city's core.
    pub(crate) fn sample_point(&self, rng: &mut impl Rng) -> LatLon {
        let total: f64 = self.zones.iter().map(|z| z.weight).sum();
        let mut pick = rng.gen::<f64>() * total;
        let mut zone = &self.zones[self.zones.len() - 1];
        for z in &self.zones {
            if pick < z.weight {
                zone = z;
                break;
            }
            pick -= z.weight;
        }
        self.sample_in_zone(zone, rng)
    }

    /// A random routable point in the zone at `index` of [`Land::zones`].
    pub(crate) fn sample_in_zone_index(&self, index: usize, rng: &mut impl Rng) -> LatLon {
        self.sample_in_zone(&self.zones[index], rng)
    }

    fn sample_in_zone(&self, zone: &LandZone, rng: &mut impl Rng) -> LatLon {
        let (min, max) = (zone.bbox.min(), zone.bbox.max());
        let mut fallback = None;
        for _ in 0..10_000 {
            let p = LatLon::new(rng.gen_range(min.y..=max.y), rng.gen_range(min.x..=max.x));
            if !zone.contains(p) {
                continue;
            }
            let accept = (-p.distance_m(self.core) / 12_000.0).exp().max(0.12);
            if rng.gen::<f64>() >= accept {
                fallback.get_or_insert(p);
                continue;
            }
            if self.attach(p).is_some() {
                return p;
            }
        }
        // Only reachable with a zone that is nearly all islands.
        fallback.unwrap_or_else(|| self.nodes[0].at)
    }

    /// A random routable point within `radius_m` of `center`, or `center`
    /// itself when none is found quickly.
    pub(crate) fn sample_near(&self, center: LatLon, radius_m: f64, rng: &mut impl Rng) -> LatLon {
        for _ in 0..40 {
            let r = radius_m * rng.gen::<f64>().sqrt();
            let a = rng.gen::<f64>() * std::f64::consts::TAU;
            let p = center.offset_m(r * a.cos(), r * a.sin());
            if self.routable(p) {
                return p;
            }
        }
        center
    }

    /// Waypoints from `a` to `b` (both included) whose legs stay on land.
    /// `None` when `a` cannot reach the grid.
    pub(crate) fn route(&self, a: LatLon, b: LatLon, rng: &mut impl Rng) -> Option<Vec<LatLon>> {
        if a.distance_m(b) < 1.0 {
            return Some(vec![a, b]);
        }
        if self.segment_on_land(a, b) {
            // City streets are rarely straight lines: prefer an L-shaped
            // route through a corner when both legs stay on land.
            if a.distance_m(b) > 400.0 && rng.gen_bool(0.6) {
                let corners = [LatLon::new(a.lat, b.lon), LatLon::new(b.lat, a.lon)];
                let first = rng.gen_range(0..2);
                for k in 0..2 {
                    let c = corners[(first + k) % 2];
                    if self.segment_on_land(a, c) && self.segment_on_land(c, b) {
                        return Some(vec![a, c, b]);
                    }
                }
            }
            return Some(vec![a, b]);
        }
        let na = self.attach(a)?;
        let nb = self.attach(b)?;
        let nodes = self.astar(na, nb)?;
        let mut pts = Vec::with_capacity(nodes.len() + 2);
        pts.push(a);
        pts.extend(nodes.iter().map(|&n| self.nodes[n].at));
        pts.push(b);
        Some(self.string_pull(pts))
    }

    /// Shortest grid path (node indices, both ends included).
    fn astar(&self, from: usize, to: usize) -> Option<Vec<usize>> {
        let goal = self.nodes[to].at;
        let h = |n: usize| self.nodes[n].at.distance_m(goal) as u64;
        let mut best: HashMap<usize, u64> = HashMap::from([(from, 0)]);
        let mut came: HashMap<usize, usize> = HashMap::new();
        let mut open = BinaryHeap::from([Reverse((h(from), from))]);
        while let Some(Reverse((_, n))) = open.pop() {
            if n == to {
                let mut path = vec![n];
                let mut cur = n;
                while let Some(&prev) = came.get(&cur) {
                    path.push(prev);
                    cur = prev;
                }
                path.reverse();
                return Some(path);
            }
            let g = best[&n];
            for &(m, len) in &self.nodes[n].edges {
                let cand = g + u64::from(len);
                if best.get(&m).is_none_or(|&old| cand < old) {
                    best.insert(m, cand);
                    came.insert(m, n);
                    open.push(Reverse((cand + h(m), m)));
                }
            }
        }
        None
    }

    /// Drops intermediate waypoints whose neighbours see each other over land.
    fn string_pull(&self, pts: Vec<LatLon>) -> Vec<LatLon> {
        const LOOKAHEAD: usize = 10;
        let mut out = vec![pts[0]];
        let mut i = 0;
        while i < pts.len() - 1 {
            let far = (i + LOOKAHEAD).min(pts.len() - 1);
            let mut next = i + 1;
            for j in (i + 2..=far).rev() {
                if self.segment_on_land(pts[i], pts[j]) {
                    next = j;
                    break;
                }
            }
            out.push(pts[next]);
            i = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    pub(crate) fn danang() -> Zones {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data/danang/districts.geojson"
        );
        Zones::load(std::path::Path::new(path)).unwrap()
    }

    #[test]
    fn samples_are_on_land_and_in_non_offshore_zones() {
        let zones = danang();
        let land = Land::new(&zones);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut per_zone: HashMap<String, usize> = HashMap::new();
        for _ in 0..300 {
            let p = land.sample_point(&mut rng);
            let z = zones.zone_at(p.lat, p.lon).expect("in a zone");
            assert!(!z.offshore);
            *per_zone.entry(z.id.clone()).or_default() += 1;
        }
        // Urban Hải Châu gets more than its tiny area would give it.
        assert!(per_zone["hai_chau"] > per_zone["hoa_vang"], "{per_zone:?}");
    }

    #[test]
    fn routes_across_the_bay_stay_on_land() {
        let zones = danang();
        let land = Land::new(&zones);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        // Hòa Khánh (Liên Chiểu) to the Sơn Trà peninsula: straight line is water.
        let a = LatLon::new(16.0726, 108.1505);
        let b = LatLon::new(16.1000, 108.2500);
        assert!(land.on_land(a) && land.on_land(b));
        assert!(!land.segment_on_land(a, b));
        let route = land.route(a, b, &mut rng).expect("route");
        assert_eq!(route.first(), Some(&a));
        assert_eq!(route.last(), Some(&b));
        for w in route.windows(2) {
            assert!(land.segment_on_land(w[0], w[1]));
        }
    }

    #[test]
    fn the_one_zone_shortcut_never_accepts_a_leg_sampling_rejects() {
        let zones = danang();
        let land = Land::new(&zones);
        let sampled = |a: LatLon, b: LatLon| {
            let n = (a.distance_m(b) / SEGMENT_STEP_M).ceil().max(1.0) as usize;
            (0..=n).all(|k| land.on_land(a.lerp(b, k as f64 / n as f64)))
        };
        let (mut total, mut short) = (0, 0);
        for (&(i, j), &a) in &land.cells {
            for (di, dj) in [(0, 1), (1, -1), (1, 1), (0, 3), (2, 3), (4, -1)] {
                if let Some(&b) = land.cells.get(&(i + di, j + dj)) {
                    let (pa, pb) = (land.nodes[a].at, land.nodes[b].at);
                    total += 1;
                    if land.zones.iter().any(|z| z.holds_segment(pa, pb)) {
                        short += 1;
                        assert!(sampled(pa, pb), "{pa:?} {pb:?}");
                    }
                }
            }
        }
        // The shortcut is what makes the grid cheap: most legs take it.
        assert!(short * 10 > total * 8, "{short} of {total}");
    }

    #[test]
    fn bearings_and_distances_are_sane() {
        let a = LatLon::new(16.0, 108.0);
        let north = a.offset_m(1000.0, 0.0);
        let east = a.offset_m(0.0, 1000.0);
        assert!((a.distance_m(north) - 1000.0).abs() < 2.0);
        assert!((a.distance_m(east) - 1000.0).abs() < 2.0);
        assert!(a.bearing_deg(north) < 0.1 || a.bearing_deg(north) > 359.9);
        assert!((a.bearing_deg(east) - 90.0).abs() < 0.1);
    }
}
