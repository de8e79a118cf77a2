//! Tunables of dispatch, ranking, swaps and alerts: serde types with
//! defaults in one place and a `validate()` that names the bad field. Each
//! is a key or section of `[engine]` in the processor's config file
//! (`dispatch_policy`, `[engine.fix]`, `[engine.swap]`, `[engine.alerts]`).

use ioc_model::UnitKind;
use serde::{Deserialize, Serialize};

use crate::EngineError;

fn bad(field: &str, want: &str, got: impl std::fmt::Display) -> EngineError {
    EngineError::Config(format!("engine.{field} must be {want}, got {got}"))
}

/// Which available units an incident is offered: what priority 1 gets at
/// once and what the dispatcher sees first for the others.
///
/// `home_district` exists to measure what ranking by ETA buys the city
/// (`emergency_time` in `loadtest/`, README "What it buys the city"); see
/// `docs/decisions.md` for its exact rule.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DispatchPolicy {
    /// The nearest available units of the needed kind anywhere, ranked by
    /// ETA (learned speeds, stale fixes ranked down).
    #[default]
    NearestEta,
    /// The old way: the available units of the needed kind whose home
    /// district (their station's district) is the incident's district,
    /// ranked by ETA among them. When they are fewer than asked for, the
    /// list is completed with the nearest by ETA from elsewhere, each saying
    /// so in its reason (a real centre calls a neighbour).
    HomeDistrict,
}

impl DispatchPolicy {
    /// Every policy, in a stable order.
    pub const ALL: [DispatchPolicy; 2] = [DispatchPolicy::NearestEta, DispatchPolicy::HomeDistrict];

    /// The config-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DispatchPolicy::NearestEta => "nearest_eta",
            DispatchPolicy::HomeDistrict => "home_district",
        }
    }
}

impl std::fmt::Display for DispatchPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DispatchPolicy {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                bad(
                    "dispatch_policy",
                    "nearest_eta or home_district",
                    format!("{s:?}"),
                )
            })
    }
}

/// How the age and plausibility of a unit's position fix are judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixPolicy {
    /// A fix older than this (at recommendation time) ranks the unit down:
    /// its position is less certain. Pings carry no accuracy in the
    /// contract, so the age of the fix is the accuracy we know.
    pub stale_after_s: u64,
    /// A fix older than this leaves the unit out of recommendations (listed
    /// under `excluded` with the reason).
    pub exclude_after_s: u64,
    /// Seconds added to a stale unit's ranking score per minute of
    /// staleness beyond `stale_after_s`.
    pub stale_penalty_s_per_min: f64,
    /// A ping implying a faster move than this since the last fix is a GPS
    /// jump: refused (dead letter) and counted.
    pub max_plausible_kmh: f64,
    /// ... unless it moved less than this (fix noise of a parked unit).
    pub jump_tolerance_m: f64,
}

impl Default for FixPolicy {
    fn default() -> Self {
        Self {
            stale_after_s: 120,
            exclude_after_s: 30 * 60,
            stale_penalty_s_per_min: 30.0,
            max_plausible_kmh: 250.0,
            jump_tolerance_m: 200.0,
        }
    }
}

impl FixPolicy {
    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        if !(1..=86_400).contains(&self.stale_after_s) {
            return Err(bad(
                "fix.stale_after_s",
                "within 1..=86400",
                self.stale_after_s,
            ));
        }
        if !(self.stale_after_s..=7 * 86_400).contains(&self.exclude_after_s) {
            return Err(bad(
                "fix.exclude_after_s",
                "within stale_after_s..=604800",
                self.exclude_after_s,
            ));
        }
        if !(0.0..=3600.0).contains(&self.stale_penalty_s_per_min) {
            return Err(bad(
                "fix.stale_penalty_s_per_min",
                "within 0..=3600",
                self.stale_penalty_s_per_min,
            ));
        }
        if !(20.0..=2000.0).contains(&self.max_plausible_kmh) {
            return Err(bad(
                "fix.max_plausible_kmh",
                "within 20..=2000",
                self.max_plausible_kmh,
            ));
        }
        if !(0.0..=10_000.0).contains(&self.jump_tolerance_m) {
            return Err(bad(
                "fix.jump_tolerance_m",
                "within 0..=10000",
                self.jump_tolerance_m,
            ));
        }
        Ok(())
    }
}

/// When to suggest replacing an assigned unit that is still far away by a
/// closer one that just became available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwapPolicy {
    pub enabled: bool,
    /// Suggest only when the swap saves at least this much ETA: turning a
    /// crew around has a cost, and small gains are within ETA error.
    pub min_gain_s: f64,
    /// ... and only for assigned units still at least this far (ETA) away.
    pub min_remaining_eta_s: f64,
}

impl Default for SwapPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            min_gain_s: 90.0,
            min_remaining_eta_s: 180.0,
        }
    }
}

impl SwapPolicy {
    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        if !(1.0..=7200.0).contains(&self.min_gain_s) {
            return Err(bad("swap.min_gain_s", "within 1..=7200", self.min_gain_s));
        }
        if !(0.0..=7200.0).contains(&self.min_remaining_eta_s) {
            return Err(bad(
                "swap.min_remaining_eta_s",
                "within 0..=7200",
                self.min_remaining_eta_s,
            ));
        }
        Ok(())
    }
}

/// Alerts the engine raises from the state of the city, checked on a timer
/// of event time (never a wall clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertPolicy {
    /// Period of the checks below (stale GPS, surge end, coverage), in
    /// seconds of event time.
    pub check_every_s: u64,
    /// An on-duty unit (dispatched, en route, on scene) with no ping for
    /// this long raises `stale_gps`; 0 turns it off.
    pub gps_stale_after_s: u64,
    /// This many calls ...; 0 turns call-surge alerts off.
    pub surge_calls: usize,
    /// ... within this distance of a call ...
    pub surge_radius_m: f64,
    /// ... within this time raise `call_surge`.
    pub surge_window_s: u64,
    /// Kinds watched for coverage; empty turns coverage alerts off.
    pub coverage_kinds: Vec<UnitKind>,
    /// A zone with no available unit of a watched kind within this distance
    /// of its representative point has a coverage gap ...
    pub coverage_radius_m: f64,
    /// ... raised once it lasted this long (a unit busy for a minute is not
    /// a gap; also quiets start-up, when positions trickle in).
    pub coverage_grace_s: u64,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            check_every_s: 1,
            gps_stale_after_s: 120,
            surge_calls: 5,
            surge_radius_m: 500.0,
            surge_window_s: 10 * 60,
            coverage_kinds: UnitKind::ALL.to_vec(),
            coverage_radius_m: 10_000.0,
            coverage_grace_s: 60,
        }
    }
}

impl AlertPolicy {
    /// No time-driven alerts at all (tests of other behaviour).
    pub fn off() -> Self {
        Self {
            gps_stale_after_s: 0,
            surge_calls: 0,
            coverage_kinds: Vec::new(),
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        if !(1..=3600).contains(&self.check_every_s) {
            return Err(bad(
                "alerts.check_every_s",
                "within 1..=3600",
                self.check_every_s,
            ));
        }
        if self.gps_stale_after_s > 86_400 {
            return Err(bad(
                "alerts.gps_stale_after_s",
                "within 0..=86400",
                self.gps_stale_after_s,
            ));
        }
        if self.surge_calls == 1 || self.surge_calls > 1000 {
            return Err(bad(
                "alerts.surge_calls",
                "0 (off) or within 2..=1000",
                self.surge_calls,
            ));
        }
        if !(1.0..=50_000.0).contains(&self.surge_radius_m) {
            return Err(bad(
                "alerts.surge_radius_m",
                "within 1..=50000",
                self.surge_radius_m,
            ));
        }
        if !(1..=86_400).contains(&self.surge_window_s) {
            return Err(bad(
                "alerts.surge_window_s",
                "within 1..=86400",
                self.surge_window_s,
            ));
        }
        if !(100.0..=500_000.0).contains(&self.coverage_radius_m) {
            return Err(bad(
                "alerts.coverage_radius_m",
                "within 100..=500000",
                self.coverage_radius_m,
            ));
        }
        if self.coverage_grace_s > 86_400 {
            return Err(bad(
                "alerts.coverage_grace_s",
                "within 0..=86400",
                self.coverage_grace_s,
            ));
        }
        Ok(())
    }
}
