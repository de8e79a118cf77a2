//! Simulator settings: fleet size, arrival rates, ping cadence and how fast
//! the simulated dispatcher answers recommendations. Sits in
//! the `ioc` config file, so unknown keys are rejected rather than ignored.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How big and how busy the simulated city is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Seed of every random choice: same seed, same day.
    pub seed: u64,
    /// Fleet size per unit kind.
    pub ambulances: u32,
    pub fire_engines: u32,
    pub police: u32,
    pub rescue: u32,
    /// Mean emergency calls per hour over a day, repeat calls included; the
    /// actual rate follows a day/night curve around it.
    pub calls_per_hour: f64,
    /// Mean reports per hour from cameras, sensors and the citizen app.
    pub incident_reports_per_hour: f64,
    /// Seconds between two position pings of a unit.
    pub ping_interval_s: f64,
    /// Deliberately malformed messages per hour, to exercise the dead-letter
    /// queue. Zero in normal runs.
    pub invalid_per_hour: f64,
    /// Seconds (sim time) the simulated dispatcher takes to act on a
    /// `dispatch.recommended` that the processor did not auto-assign
    /// (priorities 2-4): it then sends `assign` commands for the best
    /// candidates still free. Zero: never dispatch, those incidents wait for
    /// a human.
    pub dispatch_delay_s: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            ambulances: 24,
            fire_engines: 12,
            police: 30,
            rescue: 8,
            // A real city of 1.2 M has fewer; the demo wants a lively screen.
            calls_per_hour: 120.0,
            incident_reports_per_hour: 40.0,
            ping_interval_s: 5.0,
            invalid_per_hour: 0.0,
            dispatch_delay_s: 45.0,
        }
    }
}

/// A setting is out of its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfigError(String);

impl fmt::Display for SimConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SimConfigError {}

/// Shortest ping interval accepted: faster than any real AVL terminal.
pub const MIN_PING_INTERVAL_S: f64 = 0.1;

impl SimConfig {
    /// Checks ranges; [`crate::Simulator::new`] clamps instead, so a caller
    /// that wants a clear error at start-up calls this first.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        for (name, v) in [
            ("calls_per_hour", self.calls_per_hour),
            ("incident_reports_per_hour", self.incident_reports_per_hour),
            ("invalid_per_hour", self.invalid_per_hour),
            ("dispatch_delay_s", self.dispatch_delay_s),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(SimConfigError(format!(
                    "sim.{name} must be a finite number >= 0, got {v}"
                )));
            }
        }
        if !self.ping_interval_s.is_finite() || self.ping_interval_s < MIN_PING_INTERVAL_S {
            return Err(SimConfigError(format!(
                "sim.ping_interval_s must be >= {MIN_PING_INTERVAL_S}, got {}",
                self.ping_interval_s
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_keys_and_unknown_keys_are_rejected() {
        let c: SimConfig = serde_json::from_str(r#"{"seed":7}"#).unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(c.police, 30);
        assert!(serde_json::from_str::<SimConfig>(r#"{"sead":7}"#).is_err());
        assert!(SimConfig::default().validate().is_ok());
        let bad = SimConfig {
            ping_interval_s: 0.0,
            ..SimConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ping_interval_s"));
        assert_eq!(c.dispatch_delay_s, 45.0);
        let c: SimConfig = serde_json::from_str(r#"{"dispatch_delay_s":0}"#).unwrap();
        assert!(c.validate().is_ok());
        for v in [-1.0, f64::NAN, f64::INFINITY] {
            let bad = SimConfig {
                dispatch_delay_s: v,
                ..SimConfig::default()
            };
            assert!(bad
                .validate()
                .unwrap_err()
                .to_string()
                .contains("dispatch_delay_s"));
        }
    }
}
