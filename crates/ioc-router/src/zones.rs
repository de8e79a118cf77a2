//! Zones (districts, wards) loaded from any GeoJSON FeatureCollection, with
//! their own R-tree of bounding boxes for point-in-zone lookup.
//!
//! Zones are data, not code: the city's reorganisation into new wards is a
//! file swap. Each feature needs a string `properties.id`; `name`, `name_vi`
//! and `offshore` are optional. Points outside every zone get `None`, and the
//! caller keeps them (null district), it does not drop them.
//!
//! Lookups are on the hot path (every position ping), and an exact
//! point-in-polygon test costs a pass over the polygon's edges (hundreds
//! here). A grid over the zones answers most points in O(1): a cell that no
//! zone boundary crosses lies wholly in one zone (or none), decided once at
//! load time; only points in cells crossed by a boundary take the exact
//! path. The answer is the same either way (tested).

use std::path::Path;

use geo::{
    BoundingRect, Contains, Coord, InteriorPoint, LineString, MultiPolygon, Point, Polygon, Rect,
};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};
use serde_json::Value;

use crate::RouterError;

/// One zone: a district or ward polygon with its id.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Id used in channels (`district:<id>`) and events.
    pub id: String,
    /// ASCII display name.
    pub name: String,
    /// Vietnamese display name, when the file has one.
    pub name_vi: Option<String>,
    /// True for zones with no land for units to drive on (Hoàng Sa).
    pub offshore: bool,
    /// The zone's area, WGS84 (x = lon, y = lat).
    pub shape: MultiPolygon<f64>,
    /// Bounding box of `shape`.
    pub bbox: Rect<f64>,
    /// A point standing for where people live in the zone, for coverage:
    /// `properties.populated_point` (`[lon, lat]`) when the file has one,
    /// else an interior point of the shape (inside it even for concave
    /// shapes, unlike a centroid).
    pub representative: Point<f64>,
}

type ZoneBox = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// All zones of a city, indexed for point lookup.
#[derive(Debug, Clone)]
pub struct Zones {
    zones: Vec<Zone>,
    /// Bounding boxes → index into `zones`; lookups test only the few zones
    /// whose box holds the point.
    tree: RTree<ZoneBox>,
    /// The file as loaded, served to dashboards unchanged.
    geojson: Value,
    /// O(1) answers for points away from zone boundaries.
    grid: Grid,
}

/// Cell value: no zone.
const CELL_NONE: u32 = u32::MAX;
/// Cell value: a boundary crosses the cell, test exactly.
const CELL_MIXED: u32 = u32::MAX - 1;

/// A regular lon/lat grid over the land zones, each cell holding the zone
/// that wholly contains it, [`CELL_NONE`], or [`CELL_MIXED`].
#[derive(Debug, Clone, Default)]
struct Grid {
    min_lon: f64,
    min_lat: f64,
    /// Cell size, degrees.
    step_lon: f64,
    step_lat: f64,
    cols: usize,
    rows: usize,
    cells: Vec<u32>,
}

impl Grid {
    /// Longest side of the grid, in cells.
    const SIDE: usize = 1024;

    fn cell_of(&self, lat: f64, lon: f64) -> Option<usize> {
        let c = (lon - self.min_lon) / self.step_lon;
        let r = (lat - self.min_lat) / self.step_lat;
        if !(c >= 0.0 && r >= 0.0) {
            return None;
        }
        let (c, r) = (c as usize, r as usize);
        (c < self.cols && r < self.rows).then_some(r * self.cols + c)
    }
}

impl Zones {
    /// Loads zones from a GeoJSON file.
    pub fn load(path: &Path) -> Result<Self, RouterError> {
        let text = std::fs::read_to_string(path).map_err(|e| RouterError::ZonesFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_geojson_str(&text).map_err(|e| RouterError::ZonesFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Parses a GeoJSON FeatureCollection of Polygon / MultiPolygon features.
    pub fn from_geojson_str(text: &str) -> Result<Self, RouterError> {
        let geojson: Value =
            serde_json::from_str(text).map_err(|e| RouterError::zones(e.to_string()))?;
        let features = geojson
            .get("features")
            .and_then(Value::as_array)
            .ok_or_else(|| RouterError::zones("expected a FeatureCollection with `features`"))?;
        let mut zones = Vec::with_capacity(features.len());
        for (i, f) in features.iter().enumerate() {
            let props = f.get("properties").cloned().unwrap_or(Value::Null);
            let id = props
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    RouterError::zones(format!(
                        "feature {i}: properties.id must be a non-empty string"
                    ))
                })?
                .to_string();
            let name = props
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&id)
                .to_string();
            let name_vi = props
                .get("name_vi")
                .and_then(Value::as_str)
                .map(str::to_string);
            let offshore = props
                .get("offshore")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let geometry = f
                .get("geometry")
                .ok_or_else(|| RouterError::zones(format!("feature {id}: no geometry")))?;
            let shape = parse_geometry(geometry)
                .map_err(|e| RouterError::zones(format!("feature {id}: {e}")))?;
            let bbox = shape
                .bounding_rect()
                .ok_or_else(|| RouterError::zones(format!("feature {id}: empty geometry")))?;
            let representative = match props.get("populated_point") {
                None | Some(Value::Null) => shape.interior_point().ok_or_else(|| {
                    RouterError::zones(format!("feature {id}: no interior point"))
                })?,
                Some(p) => match (p.get(0).and_then(Value::as_f64), p.get(1).and_then(Value::as_f64)) {
                    (Some(x), Some(y))
                        if (-180.0..=180.0).contains(&x) && (-90.0..=90.0).contains(&y) =>
                    {
                        Point::new(x, y)
                    }
                    _ => {
                        return Err(RouterError::zones(format!(
                            "feature {id}: properties.populated_point must be [lon, lat] in range, got {p}"
                        )))
                    }
                },
            };
            if zones.iter().any(|z: &Zone| z.id == id) {
                return Err(RouterError::zones(format!("duplicate zone id {id:?}")));
            }
            zones.push(Zone {
                id,
                name,
                name_vi,
                offshore,
                shape,
                bbox,
                representative,
            });
        }
        let boxes = zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let r = Rectangle::from_corners(
                    [z.bbox.min().x, z.bbox.min().y],
                    [z.bbox.max().x, z.bbox.max().y],
                );
                GeomWithData::new(r, i)
            })
            .collect();
        let mut z = Self {
            zones,
            tree: RTree::bulk_load(boxes),
            geojson,
            grid: Grid::default(),
        };
        z.grid = z.build_grid();
        Ok(z)
    }

    /// The grid over the land zones (offshore ones are few points and take
    /// the exact path): cells crossed by a boundary segment are mixed, the
    /// others get the zone at their centre.
    fn build_grid(&self) -> Grid {
        let land: Vec<&Zone> = self.zones.iter().filter(|z| !z.offshore).collect();
        let Some(first) = land.first() else {
            return Grid::default();
        };
        let mut bb = first.bbox;
        for z in &land {
            bb = Rect::new(
                Coord {
                    x: bb.min().x.min(z.bbox.min().x),
                    y: bb.min().y.min(z.bbox.min().y),
                },
                Coord {
                    x: bb.max().x.max(z.bbox.max().x),
                    y: bb.max().y.max(z.bbox.max().y),
                },
            );
        }
        let (w, h) = (bb.width(), bb.height());
        if !(w > 0.0 && h > 0.0) {
            return Grid::default();
        }
        let step = w.max(h) / Grid::SIDE as f64;
        let cols = ((w / step).ceil() as usize).max(1);
        let rows = ((h / step).ceil() as usize).max(1);
        let mut g = Grid {
            min_lon: bb.min().x,
            min_lat: bb.min().y,
            step_lon: step,
            step_lat: step,
            cols,
            rows,
            cells: vec![CELL_NONE; cols * rows],
        };
        // Every cell a boundary segment touches (with a margin) is mixed:
        // each segment is cut into pieces no longer than a cell, and the
        // cells of each piece's box are marked. Conservative, so a clean
        // cell is never crossed, and tight (a long diagonal segment's own
        // box would mark a whole block of cells it never crosses).
        let eps = step * 1e-6;
        let clamp = |v: f64, n: usize| (v.max(0.0) as usize).min(n - 1);
        let mut mixed = vec![false; cols * rows];
        for z in &self.zones {
            for poly in z.shape.iter() {
                for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                    for seg in ring.lines() {
                        let (dx, dy) = (seg.end.x - seg.start.x, seg.end.y - seg.start.y);
                        let pieces = ((dx.abs().max(dy.abs()) / step).ceil() as usize).max(1);
                        for k in 0..pieces {
                            let (t0, t1) =
                                (k as f64 / pieces as f64, (k + 1) as f64 / pieces as f64);
                            let (ax, bx) = (seg.start.x + dx * t0, seg.start.x + dx * t1);
                            let (ay, by) = (seg.start.y + dy * t0, seg.start.y + dy * t1);
                            let (x0, x1) = (ax.min(bx), ax.max(bx));
                            let (y0, y1) = (ay.min(by), ay.max(by));
                            if x1 < g.min_lon - eps
                                || y1 < g.min_lat - eps
                                || x0 > g.min_lon + w + eps
                                || y0 > g.min_lat + h + eps
                            {
                                continue;
                            }
                            let c0 = clamp((x0 - eps - g.min_lon) / step, cols);
                            let c1 = clamp((x1 + eps - g.min_lon) / step, cols);
                            let r0 = clamp((y0 - eps - g.min_lat) / step, rows);
                            let r1 = clamp((y1 + eps - g.min_lat) / step, rows);
                            for r in r0..=r1 {
                                for c in c0..=c1 {
                                    mixed[r * cols + c] = true;
                                }
                            }
                        }
                    }
                }
            }
        }
        // Clean cells that share a side form regions that no boundary
        // crosses (a boundary between two clean neighbours would touch
        // both), so each region lies in one zone or none: one exact test per
        // region, at the centre of its first cell, then a flood fill.
        let mut done = mixed.clone();
        let mut stack = Vec::new();
        for start in 0..cols * rows {
            if mixed[start] {
                g.cells[start] = CELL_MIXED;
                continue;
            }
            if done[start] {
                continue;
            }
            let (c, r) = (start % cols, start / cols);
            let lon = g.min_lon + (c as f64 + 0.5) * step;
            let lat = g.min_lat + (r as f64 + 0.5) * step;
            let zone = self
                .zone_index_exact(lat, lon)
                .map_or(CELL_NONE, |z| z as u32);
            done[start] = true;
            stack.push(start);
            while let Some(i) = stack.pop() {
                g.cells[i] = zone;
                let (c, r) = (i % cols, i / cols);
                let neighbours = [
                    (c > 0).then(|| i - 1),
                    (c + 1 < cols).then(|| i + 1),
                    (r > 0).then(|| i - cols),
                    (r + 1 < rows).then(|| i + cols),
                ];
                for n in neighbours.into_iter().flatten() {
                    if !done[n] {
                        done[n] = true;
                        stack.push(n);
                    }
                }
            }
        }
        g
    }

    /// Index (in file order) of the zone containing the point, if any.
    /// O(1) away from boundaries, else [`Zones::zone_at_exact`].
    pub fn zone_index_at(&self, lat: f64, lon: f64) -> Option<usize> {
        match self.grid.cell_of(lat, lon).map(|c| self.grid.cells[c]) {
            Some(CELL_NONE) => None,
            Some(CELL_MIXED) | None => self.zone_index_exact(lat, lon),
            Some(z) => Some(z as usize),
        }
    }

    /// The zone containing the point, if any (grid, then exact).
    pub fn zone_at(&self, lat: f64, lon: f64) -> Option<&Zone> {
        self.zone_index_at(lat, lon).map(|i| &self.zones[i])
    }

    /// The zone containing the point by the exact path only: O(log n) box
    /// lookup plus a polygon test on the few candidate zones.
    pub fn zone_at_exact(&self, lat: f64, lon: f64) -> Option<&Zone> {
        self.zone_index_exact(lat, lon).map(|i| &self.zones[i])
    }

    fn zone_index_exact(&self, lat: f64, lon: f64) -> Option<usize> {
        let p = Point::new(lon, lat);
        let probe = AABB::from_point([lon, lat]);
        self.tree
            .locate_in_envelope_intersecting(&probe)
            .map(|b| b.data)
            .filter(|i| {
                let z = &self.zones[*i];
                z.shape.contains(&p) || on_boundary(&z.shape, p)
            })
            .min()
    }

    /// Index of a zone by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.zones.iter().position(|z| z.id == id)
    }

    /// A zone by index (file order).
    pub fn by_index(&self, i: usize) -> Option<&Zone> {
        self.zones.get(i)
    }

    /// Zone id at a point, as an owned string (what events carry).
    pub fn zone_id_at(&self, lat: f64, lon: f64) -> Option<String> {
        self.zone_at(lat, lon).map(|z| z.id.clone())
    }

    /// A zone by id.
    pub fn get(&self, id: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.id == id)
    }

    /// Every zone, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// True when the file held no zones.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The GeoJSON as loaded, for dashboards.
    pub fn geojson(&self) -> &Value {
        &self.geojson
    }
}

fn on_boundary(shape: &MultiPolygon<f64>, p: Point<f64>) -> bool {
    use geo::Intersects;
    shape.iter().any(|poly| poly.exterior().intersects(&p))
}

fn parse_geometry(g: &Value) -> Result<MultiPolygon<f64>, String> {
    let kind = g.get("type").and_then(Value::as_str).unwrap_or("");
    let coords = g.get("coordinates").ok_or("geometry has no coordinates")?;
    match kind {
        "Polygon" => Ok(MultiPolygon::new(vec![parse_polygon(coords)?])),
        "MultiPolygon" => {
            let polys = coords
                .as_array()
                .ok_or("MultiPolygon coordinates must be an array")?
                .iter()
                .map(parse_polygon)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(MultiPolygon::new(polys))
        }
        other => Err(format!(
            "expected a Polygon or MultiPolygon geometry, got {other:?}"
        )),
    }
}

fn parse_polygon(rings: &Value) -> Result<Polygon<f64>, String> {
    let rings = rings
        .as_array()
        .ok_or("polygon must be an array of rings")?;
    let mut parsed = rings.iter().map(parse_ring);
    let exterior = parsed.next().ok_or("polygon has no exterior ring")??;
    let interiors = parsed.collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, interiors))
}

fn parse_ring(ring: &Value) -> Result<LineString<f64>, String> {
    let points = ring
        .as_array()
        .ok_or("ring must be an array of positions")?;
    if points.len() < 4 {
        return Err(format!(
            "ring must have at least 4 positions, got {}",
            points.len()
        ));
    }
    points
        .iter()
        .map(|p| {
            let x = p.get(0).and_then(Value::as_f64);
            let y = p.get(1).and_then(Value::as_f64);
            match (x, y) {
                (Some(x), Some(y))
                    if (-180.0..=180.0).contains(&x) && (-90.0..=90.0).contains(&y) =>
                {
                    Ok(Coord { x, y })
                }
                _ => Err(format!("position must be [lon, lat] in range, got {p}")),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(LineString::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn danang() -> Zones {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data/danang/districts.geojson"
        );
        Zones::load(Path::new(path)).unwrap()
    }

    #[test]
    fn known_points_fall_in_their_districts() {
        let z = danang();
        assert_eq!(z.len(), 8);
        // From data/danang/SOURCES.md.
        assert_eq!(
            z.zone_id_at(16.0036, 108.2636).as_deref(),
            Some("ngu_hanh_son")
        );
        assert_eq!(z.zone_id_at(15.9977, 107.9962).as_deref(), Some("hoa_vang"));
        assert_eq!(
            z.zone_id_at(16.0726, 108.1505).as_deref(),
            Some("lien_chieu")
        );
    }

    #[test]
    fn points_outside_every_zone_get_none() {
        let z = danang();
        assert_eq!(z.zone_id_at(21.0285, 105.8542), None); // Hanoi
        assert_eq!(z.zone_id_at(0.0, 0.0), None);
    }

    #[test]
    fn a_swapped_file_needs_no_code_change() {
        let text = r#"{"type":"FeatureCollection","features":[{"type":"Feature",
            "properties":{"id":"ward_a","name":"Ward A"},
            "geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]}}]}"#;
        let z = Zones::from_geojson_str(text).unwrap();
        assert_eq!(z.zone_id_at(0.5, 0.5).as_deref(), Some("ward_a"));
        assert_eq!(z.zone_id_at(1.5, 0.5), None);
    }

    #[test]
    fn the_grid_answers_exactly_what_the_polygons_answer() {
        use rand::{Rng, SeedableRng};
        let z = danang();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut hits = 0;
        for _ in 0..20_000 {
            let lat = rng.gen_range(15.85..16.25);
            let lon = rng.gen_range(107.8..108.4);
            let fast = z.zone_at(lat, lon).map(|z| z.id.as_str());
            let exact = z.zone_at_exact(lat, lon).map(|z| z.id.as_str());
            assert_eq!(fast, exact, "at {lat},{lon}");
            hits += usize::from(fast.is_some());
        }
        assert!(hits > 5_000, "{hits}");
        // Near the boundaries, where a wrongly clean cell would show: points
        // within two cells of every boundary segment, on both sides.
        let near = z.grid.step_lon * 2.0;
        for zone in z.iter() {
            for poly in zone.shape.iter() {
                for seg in poly.exterior().lines() {
                    for _ in 0..20 {
                        let t: f64 = rng.gen_range(0.0..1.0);
                        let lon = seg.start.x
                            + (seg.end.x - seg.start.x) * t
                            + rng.gen_range(-near..near);
                        let lat = seg.start.y
                            + (seg.end.y - seg.start.y) * t
                            + rng.gen_range(-near..near);
                        let fast = z.zone_at(lat, lon).map(|z| z.id.as_str());
                        let exact = z.zone_at_exact(lat, lon).map(|z| z.id.as_str());
                        assert_eq!(fast, exact, "at {lat},{lon}");
                    }
                }
            }
        }
        // Offshore zones sit outside the grid and still answer.
        let hs = z.get("hoang_sa").unwrap().representative;
        assert_eq!(z.zone_id_at(hs.y(), hs.x()).as_deref(), Some("hoang_sa"));
    }

    #[test]
    fn representative_points_lie_inside_their_zone() {
        let z = danang();
        for zone in z.iter() {
            let p = zone.representative;
            assert_eq!(
                z.zone_id_at(p.y(), p.x()).as_deref(),
                Some(zone.id.as_str())
            );
        }
        let text = r#"{"type":"FeatureCollection","features":[{"type":"Feature",
            "properties":{"id":"a","populated_point":[0.2,0.3]},
            "geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]}}]}"#;
        let z = Zones::from_geojson_str(text).unwrap();
        assert_eq!(z.get("a").unwrap().representative, Point::new(0.2, 0.3));
    }

    #[test]
    fn bad_files_get_clear_errors() {
        let err = Zones::from_geojson_str(r#"{"type":"FeatureCollection"}"#).unwrap_err();
        assert!(err.to_string().contains("features"), "{err}");
        let err = Zones::from_geojson_str(
            r#"{"features":[{"properties":{},"geometry":{"type":"Point","coordinates":[0,0]}}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("properties.id"), "{err}");
    }
}
