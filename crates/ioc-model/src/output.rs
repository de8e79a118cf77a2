//! Output events on `ioc.events`: what screens and other systems consume.
//!
//! Every event is `{seq, ts, type, district, data}`. `type` and `data` come
//! from [`EventBody`], an adjacently tagged enum, so the Rust type and the
//! wire contract cannot disagree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::input::{Category, Line, UnitKind, UnitStatus};
use crate::time::Timestamp;

/// A WGS84 point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

/// One processor output event.
// `Serialize` and `Deserialize` are written by hand (below) for speed, not
// for a different shape: serde's derive for a `flatten`ed adjacently tagged
// body buffers the whole event into an intermediate tree before building it,
// and every position ping's `unit.updated` goes through both (the processor
// encodes it, the gateway decodes it). The derived `JsonSchema` still reads
// the `serde` attributes, and the contract tests hold the two to the same
// wire form (schemas/, examples/).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
pub struct OutputEvent {
    /// Strictly increasing, gap-free over the whole output log.
    pub seq: u64,
    /// Event time (from the input that caused it).
    pub ts: Timestamp,
    /// Zone id the event belongs to, or null when outside every zone.
    pub district: Option<String>,
    #[serde(flatten)]
    pub body: EventBody,
}

impl OutputEvent {
    /// The id of the entity the event is about (its Kafka key).
    pub fn entity_id(&self) -> &str {
        self.body.entity_id()
    }
}

impl Serialize for OutputEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("OutputEvent", 5)?;
        st.serialize_field("seq", &self.seq)?;
        st.serialize_field("ts", &self.ts)?;
        st.serialize_field("district", &self.district)?;
        st.serialize_field("type", self.body.type_name())?;
        st.serialize_field("data", &BodyData(&self.body))?;
        st.end()
    }
}

/// The `data` of an event: the body's payload without its tag.
struct BodyData<'a>(&'a EventBody);

impl Serialize for BodyData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            EventBody::IncidentOpened(v)
            | EventBody::IncidentUpdated(v)
            | EventBody::IncidentClosed(v) => v.serialize(s),
            EventBody::DispatchRecommended(v) => v.serialize(s),
            EventBody::DispatchAssigned(v) | EventBody::DispatchUnassigned(v) => v.serialize(s),
            EventBody::UnitUpdated(v) => v.serialize(s),
            EventBody::AlertRaised(v)
            | EventBody::AlertAcknowledged(v)
            | EventBody::AlertCleared(v) => v.serialize(s),
            EventBody::CommandRejected(v) => v.serialize(s),
        }
    }
}

/// The wire `type` of an event, read without allocating.
#[derive(Clone, Copy, Deserialize)]
enum EventType {
    #[serde(rename = "incident.opened")]
    IncidentOpened,
    #[serde(rename = "incident.updated")]
    IncidentUpdated,
    #[serde(rename = "incident.closed")]
    IncidentClosed,
    #[serde(rename = "dispatch.recommended")]
    DispatchRecommended,
    #[serde(rename = "dispatch.assigned")]
    DispatchAssigned,
    #[serde(rename = "dispatch.unassigned")]
    DispatchUnassigned,
    #[serde(rename = "unit.updated")]
    UnitUpdated,
    #[serde(rename = "alert.raised")]
    AlertRaised,
    #[serde(rename = "alert.acknowledged")]
    AlertAcknowledged,
    #[serde(rename = "alert.cleared")]
    AlertCleared,
    #[serde(rename = "command.rejected")]
    CommandRejected,
}

impl<'de> serde::de::DeserializeSeed<'de> for EventType {
    type Value = EventBody;

    /// `data` read straight into the payload type `type` names.
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<EventBody, D::Error> {
        Ok(match self {
            EventType::IncidentOpened => EventBody::IncidentOpened(Deserialize::deserialize(d)?),
            EventType::IncidentUpdated => EventBody::IncidentUpdated(Deserialize::deserialize(d)?),
            EventType::IncidentClosed => EventBody::IncidentClosed(Deserialize::deserialize(d)?),
            EventType::DispatchRecommended => {
                EventBody::DispatchRecommended(Deserialize::deserialize(d)?)
            }
            EventType::DispatchAssigned => {
                EventBody::DispatchAssigned(Deserialize::deserialize(d)?)
            }
            EventType::DispatchUnassigned => {
                EventBody::DispatchUnassigned(Deserialize::deserialize(d)?)
            }
            EventType::UnitUpdated => EventBody::UnitUpdated(Deserialize::deserialize(d)?),
            EventType::AlertRaised => EventBody::AlertRaised(Deserialize::deserialize(d)?),
            EventType::AlertAcknowledged => {
                EventBody::AlertAcknowledged(Deserialize::deserialize(d)?)
            }
            EventType::AlertCleared => EventBody::AlertCleared(Deserialize::deserialize(d)?),
            EventType::CommandRejected => EventBody::CommandRejected(Deserialize::deserialize(d)?),
        })
    }
}

impl<'de> Deserialize<'de> for OutputEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Seq,
            Ts,
            District,
            Type,
            Data,
            #[serde(other)]
            Other,
        }

        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OutputEvent;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an output event {seq, ts, district, type, data}")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OutputEvent, A::Error> {
                use serde::de::Error;
                let (mut seq, mut ts, mut district) = (None, None, None);
                let mut kind: Option<EventType> = None;
                let mut body = None;
                // `data` before `type` (any JSON writer may order keys so):
                // kept as a tree until the type is known.
                let mut early_data: Option<serde_json::Value> = None;
                while let Some(key) = map.next_key::<Field>()? {
                    match key {
                        Field::Seq => seq = Some(map.next_value()?),
                        Field::Ts => ts = Some(map.next_value()?),
                        Field::District => district = Some(map.next_value::<Option<String>>()?),
                        Field::Type => kind = Some(map.next_value()?),
                        Field::Data => match kind {
                            Some(k) => body = Some(map.next_value_seed(k)?),
                            None => early_data = Some(map.next_value()?),
                        },
                        Field::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let kind = kind.ok_or_else(|| A::Error::missing_field("type"))?;
                let body = match (body, early_data) {
                    (Some(b), _) => b,
                    (None, Some(v)) => serde::de::DeserializeSeed::deserialize(kind, v)
                        .map_err(A::Error::custom)?,
                    (None, None) => return Err(A::Error::missing_field("data")),
                };
                Ok(OutputEvent {
                    seq: seq.ok_or_else(|| A::Error::missing_field("seq"))?,
                    ts: ts.ok_or_else(|| A::Error::missing_field("ts"))?,
                    district: district.flatten(),
                    body,
                })
            }
        }

        d.deserialize_struct(
            "OutputEvent",
            &["seq", "ts", "district", "type", "data"],
            Visitor,
        )
    }
}

/// Event type and payload, serialized as `"type": ..., "data": {...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum EventBody {
    #[serde(rename = "incident.opened")]
    IncidentOpened(IncidentView),
    #[serde(rename = "incident.updated")]
    IncidentUpdated(IncidentView),
    #[serde(rename = "incident.closed")]
    IncidentClosed(IncidentView),
    #[serde(rename = "dispatch.recommended")]
    DispatchRecommended(DispatchRecommendation),
    #[serde(rename = "dispatch.assigned")]
    DispatchAssigned(DispatchAssignment),
    #[serde(rename = "dispatch.unassigned")]
    DispatchUnassigned(DispatchAssignment),
    #[serde(rename = "unit.updated")]
    UnitUpdated(UnitView),
    #[serde(rename = "alert.raised")]
    AlertRaised(AlertView),
    #[serde(rename = "alert.acknowledged")]
    AlertAcknowledged(AlertView),
    #[serde(rename = "alert.cleared")]
    AlertCleared(AlertView),
    #[serde(rename = "command.rejected")]
    CommandRejected(CommandRejection),
}

impl EventBody {
    /// The wire `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::IncidentOpened(_) => "incident.opened",
            EventBody::IncidentUpdated(_) => "incident.updated",
            EventBody::IncidentClosed(_) => "incident.closed",
            EventBody::DispatchRecommended(_) => "dispatch.recommended",
            EventBody::DispatchAssigned(_) => "dispatch.assigned",
            EventBody::DispatchUnassigned(_) => "dispatch.unassigned",
            EventBody::UnitUpdated(_) => "unit.updated",
            EventBody::AlertRaised(_) => "alert.raised",
            EventBody::AlertAcknowledged(_) => "alert.acknowledged",
            EventBody::AlertCleared(_) => "alert.cleared",
            EventBody::CommandRejected(_) => "command.rejected",
        }
    }

    /// The id of the entity the event is about.
    pub fn entity_id(&self) -> &str {
        match self {
            EventBody::IncidentOpened(i)
            | EventBody::IncidentUpdated(i)
            | EventBody::IncidentClosed(i) => &i.incident_id,
            EventBody::DispatchRecommended(r) => &r.incident_id,
            EventBody::DispatchAssigned(a) | EventBody::DispatchUnassigned(a) => &a.incident_id,
            EventBody::UnitUpdated(u) => &u.unit_id,
            EventBody::AlertRaised(a)
            | EventBody::AlertAcknowledged(a)
            | EventBody::AlertCleared(a) => &a.alert_id,
            EventBody::CommandRejected(c) => &c.command_id,
        }
    }
}

/// Incident lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Waiting for units (recommended, not yet assigned).
    Open,
    /// At least one unit assigned.
    Dispatched,
    /// Closed by an operator.
    Closed,
}

/// Why a call was attached to an existing incident instead of opening one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Correlation {
    pub call_id: String,
    pub distance_m: f64,
    /// Seconds between the incident's last activity and this call.
    pub after_s: f64,
    /// Where the call came from (the incident keeps its first location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoPoint>,
}

/// The current picture of one incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentView {
    pub incident_id: String,
    pub status: IncidentStatus,
    pub category: Category,
    pub priority: u8,
    pub location: GeoPoint,
    pub district: Option<String>,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    /// Where it came from: `call:113`, `camera`, ...
    pub source: String,
    /// Calls attached to this incident (the first one included).
    pub call_count: u32,
    /// Caller's phone number of the latest call. Personal data: the gateway
    /// masks it for every screen but the dispatcher's console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Units currently assigned.
    pub assigned_units: Vec<String>,
    /// Set on an update caused by a correlated call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Correlation>,
    /// When the incident must have units assigned before it escalates.
    pub assign_deadline: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
}

/// One ranked candidate unit for an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Candidate {
    pub unit_id: String,
    pub kind: UnitKind,
    /// Great-circle distance from the unit's last fix.
    pub distance_m: f64,
    /// Estimated time of arrival in seconds.
    pub eta_s: f64,
    /// Human-readable why: "nearest available fire_engine", "stale fix 4 min".
    pub reason: String,
}

/// How many units of a kind an incident needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KindNeed {
    pub kind: UnitKind,
    pub count: u32,
}

/// Ranked candidates for an incident, grouped by the kinds it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DispatchRecommendation {
    pub incident_id: String,
    pub priority: u8,
    pub category: Category,
    /// Kinds and counts the dispatch rules ask for, still unfilled.
    pub needs: Vec<KindNeed>,
    /// Best first within each kind.
    pub candidates: Vec<Candidate>,
    /// True when priority 1 made the engine assign the best ones itself.
    pub auto_assign: bool,
    /// Kinds for which no available unit was found.
    pub unfilled: Vec<UnitKind>,
    /// Available units near enough to be listed but left out, with why
    /// (no position fix for too long).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ExcludedUnit>,
    /// Set when this recommendation suggests replacing an assigned unit that
    /// is still far away by a closer one that just became available. Such a
    /// recommendation has no `needs`; `candidates` holds the closer unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapSuggestion>,
}

/// An available unit left out of a recommendation, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExcludedUnit {
    pub unit_id: String,
    pub kind: UnitKind,
    /// Great-circle distance from the unit's last fix.
    pub distance_m: f64,
    /// For example "last fix 20 min ago".
    pub reason: String,
}

/// Replace an assigned, still distant unit by a closer available one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SwapSuggestion {
    /// The assigned unit, still en route.
    pub replace_unit_id: String,
    /// The closer unit that became available.
    pub with_unit_id: String,
    /// ETA of the assigned unit from its last fix, seconds.
    pub replace_eta_s: f64,
    /// ETA of the closer unit, seconds.
    pub with_eta_s: f64,
    /// `replace_eta_s - with_eta_s`: what the swap would save.
    pub eta_gain_s: f64,
}

/// A unit assigned to (or released from) an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DispatchAssignment {
    pub incident_id: String,
    pub unit_id: String,
    pub kind: UnitKind,
    /// `auto` for priority-1 auto-assignment, else the operator's `sub`.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
}

/// The current picture of one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UnitView {
    pub unit_id: String,
    pub kind: UnitKind,
    pub status: UnitStatus,
    /// Last known position, absent until the first ping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<GeoPoint>,
    pub district: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_district: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fix: Option<Timestamp>,
}

/// Kinds of alert the engine raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A new incident opened in a district.
    IncidentOpened,
    /// An incident is still unassigned past its priority's deadline.
    UnassignedDeadline,
    /// An on-duty unit stopped sending positions.
    StaleGps,
    /// Many calls close together in a short time.
    CallSurge,
    /// No available unit of a kind near a district.
    CoverageGap,
}

/// Alert lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Raised,
    Acknowledged,
    Cleared,
}

/// The current picture of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertView {
    pub alert_id: String,
    pub kind: AlertKind,
    pub status: AlertStatus,
    /// 1 = most severe (follows incident priority where there is one).
    pub severity: u8,
    pub district: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_id: Option<String>,
    pub message: String,
    pub raised_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
}

/// A command the engine refused, with the reason the operator sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandRejection {
    pub command_id: String,
    pub op: String,
    pub issued_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    pub reason: String,
}

/// A dead letter on `ioc.dlq`: nothing is silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetter {
    /// The original message bytes, base64 (standard alphabet, padded); only
    /// the first [`DeadLetter::MAX_ORIGINAL_BYTES`] when `original_truncated`.
    pub original_base64: String,
    /// Size of the original message in bytes.
    #[serde(default)]
    pub original_size: u64,
    /// True when the original was too large to carry whole: it is still on
    /// its topic at `partition`/`offset` for as long as retention keeps it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub original_truncated: bool,
    /// Original key, if it was UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Why it was rejected, e.g. `invalid: location.lat must be within -90..=90, got 123`.
    pub reason: String,
    /// When the processor rejected it.
    pub ts: Timestamp,
}

impl DeadLetter {
    /// Most original bytes a dead letter carries: base64 of this stays well
    /// under Kafka's default 1 MB message limit, so a huge hostile message
    /// cannot make its own dead letter undeliverable.
    pub const MAX_ORIGINAL_BYTES: usize = 256 * 1024;
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = r#"{"seq":7,"ts":"2026-11-23T08:00:00.000Z","district":"hai_chau","type":"unit.updated","data":{"unit_id":"u1","kind":"ambulance","status":"available","district":"hai_chau"}}"#;

    #[test]
    fn decodes_with_keys_in_any_order_and_ignores_unknown_ones() {
        let e: OutputEvent = serde_json::from_str(UNIT).unwrap();
        assert_eq!(e.seq, 7);
        assert_eq!(e.district.as_deref(), Some("hai_chau"));
        assert_eq!(e.entity_id(), "u1");
        assert_eq!(serde_json::to_string(&e).unwrap(), UNIT);
        // `data` before `type`, an unknown key, `district` missing.
        let reordered = r#"{"data":{"unit_id":"u1","kind":"ambulance","status":"available","district":"hai_chau"},"x":[1,{"y":2}],"type":"unit.updated","ts":"2026-11-23T08:00:00Z","seq":7}"#;
        let r: OutputEvent = serde_json::from_str(reordered).unwrap();
        assert_eq!(r.body, e.body);
        assert_eq!((r.seq, r.ts, r.district), (7, e.ts, None));
    }

    #[test]
    fn refuses_unknown_types_missing_fields_and_mismatched_data() {
        for (bad, why) in [
            (
                UNIT.replace("unit.updated", "unit.exploded"),
                "unknown variant",
            ),
            (UNIT.replace(r#""seq":7,"#, ""), "missing field `seq`"),
            (
                UNIT.replace(r#""type":"unit.updated","#, ""),
                "missing field `type`",
            ),
            (
                r#"{"seq":1,"ts":"2026-11-23T08:00:00Z","district":null,"type":"unit.updated"}"#
                    .to_string(),
                "missing field `data`",
            ),
            // An incident's type over a unit's data.
            (
                UNIT.replace("unit.updated", "incident.opened"),
                "unknown variant `available`",
            ),
            (
                UNIT.replace(r#""data":{"#, r#""data":{"x":1},"y":{"#),
                "missing field",
            ),
        ] {
            let err = serde_json::from_str::<OutputEvent>(&bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }
}
