//! The five input messages of the contract (`ioc.calls`, `ioc.incidents`,
//! `ioc.positions`, `ioc.units`, `ioc.commands`) and their shared enums.
//!
//! Serde does the structural checks (required fields, types, enum values);
//! [`Validate`] does the semantic ones (ranges, lengths) that serde cannot.
//! Unknown extra fields are ignored on purpose: producers may be newer than us.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::validate::{check_coord, check_id, check_opt_text, check_priority, Validate};
use crate::ValidationError;

/// Emergency line a call came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Line {
    /// 113: police.
    #[serde(rename = "113")]
    Police,
    /// 114: fire and rescue.
    #[serde(rename = "114")]
    FireRescue,
    /// 115: ambulance.
    #[serde(rename = "115")]
    Ambulance,
}

/// What happened: drives which unit kinds are needed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Medical,
    Fire,
    TrafficAccident,
    Crime,
    Flood,
    Rescue,
    Other,
}

impl Category {
    /// Every category, in contract order.
    pub const ALL: [Category; 7] = [
        Category::Medical,
        Category::Fire,
        Category::TrafficAccident,
        Category::Crime,
        Category::Flood,
        Category::Rescue,
        Category::Other,
    ];

    /// The wire name (`traffic_accident`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Medical => "medical",
            Category::Fire => "fire",
            Category::TrafficAccident => "traffic_accident",
            Category::Crime => "crime",
            Category::Flood => "flood",
            Category::Rescue => "rescue",
            Category::Other => "other",
        }
    }
}

/// Kind of responder unit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    Ambulance,
    FireEngine,
    Police,
    Rescue,
}

impl UnitKind {
    /// Every kind, in contract order.
    pub const ALL: [UnitKind; 4] = [
        UnitKind::Ambulance,
        UnitKind::FireEngine,
        UnitKind::Police,
        UnitKind::Rescue,
    ];

    /// The wire name (`fire_engine`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Ambulance => "ambulance",
            UnitKind::FireEngine => "fire_engine",
            UnitKind::Police => "police",
            UnitKind::Rescue => "rescue",
        }
    }
}

/// Lifecycle status of a unit, as reported by its crew or set by dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitStatus {
    Available,
    Dispatched,
    EnRoute,
    OnScene,
    Returning,
    OutOfService,
}

impl UnitStatus {
    /// On duty for an incident: GPS must keep flowing and it cannot be
    /// assigned elsewhere.
    pub fn is_committed(self) -> bool {
        matches!(
            self,
            UnitStatus::Dispatched | UnitStatus::EnRoute | UnitStatus::OnScene
        )
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitStatus::Available => "available",
            UnitStatus::Dispatched => "dispatched",
            UnitStatus::EnRoute => "en_route",
            UnitStatus::OnScene => "on_scene",
            UnitStatus::Returning => "returning",
            UnitStatus::OutOfService => "out_of_service",
        }
    }
}

/// Who reported an incident on `ioc.incidents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentSource {
    Camera,
    Sensor,
    CitizenApp,
    Police,
    Operator,
}

/// A WGS84 point with an optional horizontal accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Location {
    /// Latitude in decimal degrees, -90..=90.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    /// Longitude in decimal degrees, -180..=180.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
    /// Radius of the 68% confidence circle in metres, when the source knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100000.0))]
    pub accuracy_m: Option<f64>,
}

/// One answered emergency call (`ioc.calls`, key `call_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmergencyCall {
    /// Unique id from the telephony system; replays carry the same id.
    pub call_id: String,
    pub received_at: Timestamp,
    pub line: Line,
    pub location: Location,
    pub category: Category,
    /// Caller's phone number: personal data, shown unmasked only to dispatchers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An incident reported by another system (`ioc.incidents`, key `incident_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentReport {
    pub incident_id: String,
    pub reported_at: Timestamp,
    pub source: IncidentSource,
    pub category: Category,
    /// 1 = life-threatening ... 4 = minor.
    #[schemars(range(min = 1, max = 4))]
    pub priority: u8,
    pub location: Location,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An AVL position ping (`ioc.positions`, key `unit_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PositionPing {
    pub unit_id: String,
    pub ts: Timestamp,
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 400.0))]
    pub speed_kmh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 360.0))]
    pub heading_deg: Option<f64>,
}

/// Unit registration or status change from a crew terminal (`ioc.units`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UnitStatusReport {
    pub unit_id: String,
    pub ts: Timestamp,
    pub kind: UnitKind,
    pub status: UnitStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// Zone id of the unit's home district, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_district: Option<String>,
}

/// An operator command (`ioc.commands`, key `incident_id`), written by the
/// gateway and applied by the engine like any other input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Command {
    pub command_id: String,
    pub ts: Timestamp,
    /// `sub` of the operator's token.
    pub issued_by: String,
    #[serde(flatten)]
    pub op: CommandOp,
}

/// What a command asks for, tagged by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CommandOp {
    Assign {
        incident_id: String,
        unit_id: String,
    },
    Unassign {
        incident_id: String,
        unit_id: String,
    },
    CloseIncident {
        incident_id: String,
    },
    AckAlert {
        alert_id: String,
    },
    SetPriority {
        incident_id: String,
        #[schemars(range(min = 1, max = 4))]
        priority: u8,
    },
}

impl CommandOp {
    /// The incident the command is about, if any (also its Kafka key).
    pub fn incident_id(&self) -> Option<&str> {
        match self {
            CommandOp::Assign { incident_id, .. }
            | CommandOp::Unassign { incident_id, .. }
            | CommandOp::CloseIncident { incident_id }
            | CommandOp::SetPriority { incident_id, .. } => Some(incident_id),
            CommandOp::AckAlert { .. } => None,
        }
    }

    /// The wire name of the op.
    pub fn name(&self) -> &'static str {
        match self {
            CommandOp::Assign { .. } => "assign",
            CommandOp::Unassign { .. } => "unassign",
            CommandOp::CloseIncident { .. } => "close_incident",
            CommandOp::AckAlert { .. } => "ack_alert",
            CommandOp::SetPriority { .. } => "set_priority",
        }
    }
}

impl Validate for Location {
    fn validate(&self) -> Result<(), ValidationError> {
        check_coord("location", self.lat, self.lon)?;
        if let Some(acc) = self.accuracy_m {
            if !acc.is_finite() || !(0.0..=100_000.0).contains(&acc) {
                return Err(ValidationError::new(format!(
                    "location.accuracy_m must be within 0..=100000, got {acc}"
                )));
            }
        }
        Ok(())
    }
}

impl Validate for EmergencyCall {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("call_id", &self.call_id)?;
        self.location.validate()?;
        if let Some(caller) = &self.caller {
            let ok = !caller.is_empty()
                && caller.len() <= 32
                && caller
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-'));
            if !ok {
                return Err(ValidationError::new(
                    "caller must be a phone number of at most 32 digits, '+', '-' or spaces",
                ));
            }
        }
        check_opt_text("note", self.note.as_deref())
    }
}

impl Validate for IncidentReport {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("incident_id", &self.incident_id)?;
        check_priority(self.priority)?;
        self.location.validate()?;
        check_opt_text("description", self.description.as_deref())
    }
}

impl Validate for PositionPing {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("unit_id", &self.unit_id)?;
        check_coord("position", self.lat, self.lon)?;
        if let Some(v) = self.speed_kmh {
            if !v.is_finite() || !(0.0..=400.0).contains(&v) {
                return Err(ValidationError::new(format!(
                    "speed_kmh must be within 0..=400, got {v}"
                )));
            }
        }
        if let Some(h) = self.heading_deg {
            if !h.is_finite() || !(0.0..=360.0).contains(&h) {
                return Err(ValidationError::new(format!(
                    "heading_deg must be within 0..=360, got {h}"
                )));
            }
        }
        Ok(())
    }
}

impl Validate for UnitStatusReport {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("unit_id", &self.unit_id)?;
        if let Some(s) = &self.station {
            check_id("station", s)?;
        }
        if let Some(d) = &self.home_district {
            check_id("home_district", d)?;
        }
        Ok(())
    }
}

impl Validate for Command {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("command_id", &self.command_id)?;
        check_id("issued_by", &self.issued_by)?;
        match &self.op {
            CommandOp::Assign {
                incident_id,
                unit_id,
            }
            | CommandOp::Unassign {
                incident_id,
                unit_id,
            } => {
                check_id("incident_id", incident_id)?;
                check_id("unit_id", unit_id)
            }
            CommandOp::CloseIncident { incident_id } => check_id("incident_id", incident_id),
            CommandOp::AckAlert { alert_id } => check_id("alert_id", alert_id),
            CommandOp::SetPriority {
                incident_id,
                priority,
            } => {
                check_id("incident_id", incident_id)?;
                check_priority(*priority)
            }
        }
    }
}
