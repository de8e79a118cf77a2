//! ETA model: great-circle distance × detour factor ÷ speed of the kind.
//!
//! Roads are not straight lines; the detour factor (about 1.3–1.4 in a city
//! grid) turns the great-circle distance into a road-distance estimate.
//! Speeds per kind are configured defaults; learning them from the fleet's
//! own pings is a later refinement (see `docs/eta.md`).

use ioc_model::UnitKind;
use serde::{Deserialize, Serialize};

/// Parameters of the ETA estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtaModel {
    /// Road distance ÷ great-circle distance.
    pub detour_factor: f64,
    /// Average emergency driving speed, km/h.
    pub ambulance_kmh: f64,
    pub fire_engine_kmh: f64,
    pub police_kmh: f64,
    pub rescue_kmh: f64,
}

impl Default for EtaModel {
    fn default() -> Self {
        Self {
            detour_factor: 1.35,
            ambulance_kmh: 45.0,
            fire_engine_kmh: 40.0,
            police_kmh: 50.0,
            rescue_kmh: 40.0,
        }
    }
}

impl EtaModel {
    /// Speed of a kind, metres per second.
    pub fn speed_mps(&self, kind: UnitKind) -> f64 {
        let kmh = match kind {
            UnitKind::Ambulance => self.ambulance_kmh,
            UnitKind::FireEngine => self.fire_engine_kmh,
            UnitKind::Police => self.police_kmh,
            UnitKind::Rescue => self.rescue_kmh,
        };
        kmh / 3.6
    }

    /// Seconds to cover `distance_m` for a unit of `kind`.
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
        Ok(())
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
    }
}
