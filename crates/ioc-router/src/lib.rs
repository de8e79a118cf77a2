//! Geospatial router: the R-tree of responder units, nearest-available
//! queries ranked by ETA, and zones for point-in-zone lookup.
//!
//! Pure and synchronous: no I/O beyond loading a zones file, no clock reads.

mod eta;
mod units;
mod zones;

pub use crate::eta::{hour_of_day, EtaModel, LearnedSpeeds, SpeedLearning, SpeedSource};
pub use crate::units::{
    chord_to_metres, distance_m, to_unit_sphere, Nearby, UnitIndex, DEFAULT_MARGIN_M,
    EARTH_RADIUS_M,
};
pub use crate::zones::{Zone, Zones};

/// Errors of the router crate.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("invalid zones: {0}")]
    Zones(String),
    #[error("cannot load zones from {path}: {reason}")]
    ZonesFile { path: String, reason: String },
}

impl RouterError {
    pub(crate) fn zones(reason: impl Into<String>) -> Self {
        RouterError::Zones(reason.into())
    }
}
