//! Zones (districts, wards) loaded from any GeoJSON FeatureCollection, with
//! their own R-tree of bounding boxes for point-in-zone lookup.
//!
//! Zones are data, not code: the city's reorganisation into new wards is a
//! file swap. Each feature needs a string `properties.id`; `name`, `name_vi`
//! and `offshore` are optional. Points outside every zone get `None`, and the
//! caller keeps them (null district), it does not drop them.

use std::path::Path;

use geo::{BoundingRect, Contains, Coord, LineString, MultiPolygon, Point, Polygon, Rect};
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
        Ok(Self {
            zones,
            tree: RTree::bulk_load(boxes),
            geojson,
        })
    }

    /// The zone containing the point, if any. O(log n) box lookup plus an
    /// exact polygon test on the few candidate zones.
    pub fn zone_at(&self, lat: f64, lon: f64) -> Option<&Zone> {
        let p = Point::new(lon, lat);
        let probe = AABB::from_point([lon, lat]);
        self.tree
            .locate_in_envelope_intersecting(&probe)
            .map(|b| &self.zones[b.data])
            .find(|z| z.shape.contains(&p) || on_boundary(&z.shape, p))
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
