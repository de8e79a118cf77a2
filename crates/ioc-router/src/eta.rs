//! ETA model: great-circle distance × detour factor ÷ speed, where the speed
//! is learned from the fleet's own pings per kind, zone and hour of day when
//! there are enough of them, and a configured default per kind otherwise.
//!
//! Roads are not straight lines; the detour factor (about 1.3–1.4 in a city
//! grid) turns the great-circle distance into a road-distance estimate.
//! [`LearnedSpeeds`] keeps, for every (kind, zone, UTC hour) bucket, a ring of
//! the most recent observed speeds of *responding* units (the engine feeds
//! only units dispatched or en route, moving faster than a threshold) and
//! answers with their trimmed mean once the bucket holds `min_samples`.
//! The full model and its limits are in `docs/eta.md`.
//!
//! Everything is deterministic: samples come from input messages in order,
//! the hour comes from the message time, never from a clock.

use ioc_model::UnitKind;
use serde::{Deserialize, Serialize};

/// Parameters of the ETA estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtaModel {
    /// Road distance ÷ great-circle distance.
    pub detour_factor: f64,
    /// Default emergency driving speed per kind, km/h, used where nothing
    /// was learned yet.
    pub ambulance_kmh: f64,
    pub fire_engine_kmh: f64,
    pub police_kmh: f64,
    pub rescue_kmh: f64,
    /// Learning speeds from the fleet's pings.
    pub learning: SpeedLearning,
}

impl Default for EtaModel {
    fn default() -> Self {
        Self {
            detour_factor: 1.35,
            ambulance_kmh: 45.0,
            fire_engine_kmh: 40.0,
            police_kmh: 50.0,
            rescue_kmh: 40.0,
            learning: SpeedLearning::default(),
        }
    }
}

/// How speeds are learned from pings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeedLearning {
    /// Off: always the configured defaults.
    pub enabled: bool,
    /// A bucket answers only with at least this many samples.
    pub min_samples: usize,
    /// Most recent samples kept per bucket (older ones are overwritten).
    pub samples_per_bucket: usize,
    /// Slower samples are a unit standing still (at a light, loading a
    /// patient), not a driving speed: ignored.
    pub min_moving_kmh: f64,
    /// Samples above this are GPS noise: ignored.
    pub max_sample_kmh: f64,
    /// Implied speed from two fixes further apart than this is not a speed
    /// sample (the unit may have stopped in between).
    pub max_sample_gap_s: f64,
    /// Fraction of samples dropped at *each* end before averaging.
    pub trim_fraction: f64,
}

impl Default for SpeedLearning {
    fn default() -> Self {
        Self {
            enabled: true,
            min_samples: 20,
            samples_per_bucket: 64,
            min_moving_kmh: 5.0,
            max_sample_kmh: 150.0,
            max_sample_gap_s: 60.0,
            trim_fraction: 0.1,
        }
    }
}

/// Where a speed came from: the reason of a candidate says it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpeedSource {
    /// Trimmed mean of this many recent samples of the bucket.
    Learned { samples: usize },
    /// The configured default of the kind.
    Default,
}

impl EtaModel {
    /// Default speed of a kind, metres per second.
    pub fn speed_mps(&self, kind: UnitKind) -> f64 {
        let kmh = match kind {
            UnitKind::Ambulance => self.ambulance_kmh,
            UnitKind::FireEngine => self.fire_engine_kmh,
            UnitKind::Police => self.police_kmh,
            UnitKind::Rescue => self.rescue_kmh,
        };
        kmh / 3.6
    }

    /// Seconds to cover `distance_m` for a unit of `kind` at its default
    /// speed.
    pub fn eta_s(&self, kind: UnitKind, distance_m: f64) -> f64 {
        distance_m * self.detour_factor / self.speed_mps(kind)
    }

    /// Checks the values make sense; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1.0..=5.0).contains(&self.detour_factor) {
            return Err(format!(
                "eta.detour_factor must be within 1..=5, got {}",
                self.detour_factor
            ));
        }
        for (name, v) in [
            ("ambulance_kmh", self.ambulance_kmh),
            ("fire_engine_kmh", self.fire_engine_kmh),
            ("police_kmh", self.police_kmh),
            ("rescue_kmh", self.rescue_kmh),
        ] {
            if !(1.0..=200.0).contains(&v) {
                return Err(format!("eta.{name} must be within 1..=200, got {v}"));
            }
        }
        let l = &self.learning;
        if !(1..=4096).contains(&l.samples_per_bucket) {
            return Err(format!(
                "eta.learning.samples_per_bucket must be within 1..=4096, got {}",
                l.samples_per_bucket
            ));
        }
        if !(1..=l.samples_per_bucket).contains(&l.min_samples) {
            return Err(format!(
                "eta.learning.min_samples must be within 1..=samples_per_bucket ({}), got {}",
                l.samples_per_bucket, l.min_samples
            ));
        }
        if !(0.0..=50.0).contains(&l.min_moving_kmh) {
            return Err(format!(
                "eta.learning.min_moving_kmh must be within 0..=50, got {}",
                l.min_moving_kmh
            ));
        }
        if !(l.max_sample_kmh > l.min_moving_kmh && l.max_sample_kmh <= 400.0) {
            return Err(format!(
                "eta.learning.max_sample_kmh must be within min_moving_kmh..=400, got {}",
                l.max_sample_kmh
            ));
        }
        if !(1.0..=3600.0).contains(&l.max_sample_gap_s) {
            return Err(format!(
                "eta.learning.max_sample_gap_s must be within 1..=3600, got {}",
                l.max_sample_gap_s
            ));
        }
        if !(0.0..0.5).contains(&l.trim_fraction) {
            return Err(format!(
                "eta.learning.trim_fraction must be within 0..0.5, got {}",
                l.trim_fraction
            ));
        }
        Ok(())
    }
}

/// Hour of day (UTC, 0..24) of a time in Unix milliseconds: the learning
/// bucket. Da Nang is UTC+7, so bucket 1 is 08:00–09:00 local.
pub fn hour_of_day(unix_millis: i64) -> u8 {
    (unix_millis.div_euclid(3_600_000).rem_euclid(24)) as u8
}

/// The most recent samples of one bucket.
#[derive(Debug, Clone, Default, PartialEq)]
struct Ring {
    samples: Vec<f32>,
    /// Where the next sample goes once the ring is full.
    next: usize,
}

/// Speeds learned from the fleet, per (kind, zone, hour). Zone is an index
/// into [`crate::Zones`] (`None`: outside every zone).
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedSpeeds {
    cfg: SpeedLearning,
    zones: usize,
    /// `(kind, zone or the extra "no zone" slot, hour)` flattened.
    buckets: Vec<Ring>,
    samples_total: u64,
}

impl LearnedSpeeds {
    /// An empty table for `zones` zones.
    pub fn new(cfg: SpeedLearning, zones: usize) -> Self {
        Self {
            cfg,
            zones,
            buckets: vec![Ring::default(); 4 * (zones + 1) * 24],
            samples_total: 0,
        }
    }

    fn slot(&self, kind: UnitKind, zone: Option<usize>, hour: u8) -> usize {
        let k = crate::units::kind_slot(kind);
        let z = zone.filter(|z| *z < self.zones).unwrap_or(self.zones);
        (k * (self.zones + 1) + z) * 24 + usize::from(hour % 24)
    }

    /// Samples accepted since start.
    pub fn samples_total(&self) -> u64 {
        self.samples_total
    }

    /// Records an observed speed. Returns false when it is not a sample
    /// (learning off, standing still, or implausibly fast).
    pub fn observe(&mut self, kind: UnitKind, zone: Option<usize>, hour: u8, kmh: f64) -> bool {
        if !self.cfg.enabled
            || !kmh.is_finite()
            || kmh < self.cfg.min_moving_kmh
            || kmh > self.cfg.max_sample_kmh
        {
            return false;
        }
        let cap = self.cfg.samples_per_bucket;
        let slot = self.slot(kind, zone, hour);
        let ring = &mut self.buckets[slot];
        if ring.samples.len() < cap {
            ring.samples.push(kmh as f32);
        } else {
            ring.samples[ring.next] = kmh as f32;
            ring.next = (ring.next + 1) % cap;
        }
        self.samples_total += 1;
        true
    }

    /// Learned speed of a bucket in km/h and its sample count, when it has
    /// enough samples.
    pub fn learned_kmh(
        &self,
        kind: UnitKind,
        zone: Option<usize>,
        hour: u8,
    ) -> Option<(f64, usize)> {
        if !self.cfg.enabled {
            return None;
        }
        let ring = &self.buckets[self.slot(kind, zone, hour)];
        let n = ring.samples.len();
        if n < self.cfg.min_samples.max(1) {
            return None;
        }
        let mut s = ring.samples.clone();
        s.sort_unstable_by(f32::total_cmp);
        let cut = ((n as f64) * self.cfg.trim_fraction).floor() as usize;
        let kept = &s[cut..n - cut];
        let mean = kept.iter().map(|v| f64::from(*v)).sum::<f64>() / kept.len() as f64;
        Some((mean, n))
    }

    /// Speed for a trip, m/s, and where it came from.
    pub fn speed_mps(
        &self,
        model: &EtaModel,
        kind: UnitKind,
        zone: Option<usize>,
        hour: u8,
    ) -> (f64, SpeedSource) {
        match self.learned_kmh(kind, zone, hour) {
            Some((kmh, samples)) => (kmh / 3.6, SpeedSource::Learned { samples }),
            None => (model.speed_mps(kind), SpeedSource::Default),
        }
    }

    /// The fastest speed any trip of `kind` at `hour` may be given, m/s: a
    /// lower bound of ETA for a distance, to stop a nearest walk early.
    pub fn max_speed_mps(&self, model: &EtaModel, kind: UnitKind, hour: u8) -> f64 {
        let mut best = model.speed_mps(kind);
        for z in 0..=self.zones {
            if let Some((kmh, _)) = self.learned_kmh(kind, Some(z), hour) {
                best = best.max(kmh / 3.6);
            }
        }
        best
    }

    /// ETA in seconds from a unit in `from_zone` to a scene in `to_zone`:
    /// half the road distance at each zone's speed (a trip across a district
    /// boundary drives through both). Returns the ETA and the speed sources.
    pub fn eta_s(
        &self,
        model: &EtaModel,
        kind: UnitKind,
        distance_m: f64,
        from_zone: Option<usize>,
        to_zone: Option<usize>,
        hour: u8,
    ) -> (f64, SpeedSource, SpeedSource) {
        let road = distance_m * model.detour_factor;
        let (v1, s1) = self.speed_mps(model, kind, from_zone, hour);
        let (v2, s2) = self.speed_mps(model, kind, to_zone, hour);
        (0.5 * road / v1 + 0.5 * road / v2, s1, s2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_scales_with_distance_and_detour() {
        let m = EtaModel::default();
        let one_km = m.eta_s(UnitKind::Ambulance, 1000.0);
        assert!((one_km - 1000.0 * 1.35 / (45.0 / 3.6)).abs() < 1e-9);
        assert!(m.eta_s(UnitKind::FireEngine, 1000.0) > one_km);
        assert!(m.validate().is_ok());
        let bad = EtaModel {
            detour_factor: 0.5,
            ..EtaModel::default()
        };
        assert!(bad.validate().unwrap_err().contains("detour_factor"));
        let mut bad = EtaModel::default();
        bad.learning.min_samples = 1000;
        assert!(bad.validate().unwrap_err().contains("min_samples"));
    }

    #[test]
    fn hour_buckets_are_utc_hours() {
        assert_eq!(hour_of_day(0), 0);
        assert_eq!(hour_of_day(3_600_000 * 25 + 5), 1);
        assert_eq!(hour_of_day(-1), 23);
    }

    #[test]
    fn a_bucket_answers_only_with_enough_samples_and_trims_outliers() {
        let m = EtaModel::default();
        let mut l = LearnedSpeeds::new(m.learning.clone(), 3);
        for _ in 0..19 {
            assert!(l.observe(UnitKind::Ambulance, Some(1), 8, 30.0));
        }
        assert_eq!(l.learned_kmh(UnitKind::Ambulance, Some(1), 8), None);
        assert_eq!(
            l.speed_mps(&m, UnitKind::Ambulance, Some(1), 8).1,
            SpeedSource::Default
        );
        // Two wild samples among 20 are trimmed away (10 % at each end).
        l.observe(UnitKind::Ambulance, Some(1), 8, 140.0);
        assert_eq!(
            l.learned_kmh(UnitKind::Ambulance, Some(1), 8),
            Some((30.0, 20))
        );
        // Other kinds, zones and hours learn separately.
        assert_eq!(l.learned_kmh(UnitKind::Police, Some(1), 8), None);
        assert_eq!(l.learned_kmh(UnitKind::Ambulance, Some(2), 8), None);
        assert_eq!(l.learned_kmh(UnitKind::Ambulance, Some(1), 9), None);
        // Standing still and noise are not samples.
        assert!(!l.observe(UnitKind::Ambulance, Some(1), 8, 2.0));
        assert!(!l.observe(UnitKind::Ambulance, Some(1), 8, 300.0));
        // The ETA uses the learned speed at the ends that learned one.
        let (eta, s1, s2) = l.eta_s(&m, UnitKind::Ambulance, 1000.0, Some(1), Some(1), 8);
        assert!((eta - 1350.0 / (30.0 / 3.6)).abs() < 1e-6, "{eta}");
        assert_eq!(s1, SpeedSource::Learned { samples: 20 });
        assert_eq!(s2, s1);
        let (mixed, _, s2) = l.eta_s(&m, UnitKind::Ambulance, 1000.0, Some(1), None, 8);
        assert_eq!(s2, SpeedSource::Default);
        assert!(mixed < eta);
        assert!(l.max_speed_mps(&m, UnitKind::Ambulance, 8) >= 45.0 / 3.6);
    }

    #[test]
    fn the_ring_keeps_only_recent_samples() {
        let cfg = SpeedLearning {
            min_samples: 4,
            samples_per_bucket: 4,
            trim_fraction: 0.0,
            ..SpeedLearning::default()
        };
        let mut l = LearnedSpeeds::new(cfg, 1);
        for v in [10.0, 10.0, 10.0, 10.0, 50.0, 50.0, 50.0, 50.0] {
            l.observe(UnitKind::Rescue, None, 0, v);
        }
        assert_eq!(l.learned_kmh(UnitKind::Rescue, None, 0), Some((50.0, 4)));
        assert_eq!(l.samples_total(), 8);
    }
}
