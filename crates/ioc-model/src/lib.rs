//! Domain model of the IOC event processor: the messages of the contract
//! (`../shared/DESIGN.md`), their validation, and the decoding every adapter
//! uses so that a message means the same thing everywhere.
//!
//! Decoding is strict where the contract is strict (required fields, types,
//! ranges, enum values) and lenient where it is lenient (unknown extra fields
//! are ignored). A message that fails gets a [`DecodeError`] whose text is the
//! dead-letter reason.

mod input;
mod output;
mod time;
mod topics;
mod validate;

pub use crate::input::{
    Category, Command, CommandOp, EmergencyCall, IncidentReport, IncidentSource, Line, Location,
    PositionPing, UnitKind, UnitStatus, UnitStatusReport,
};
pub use crate::output::{
    AlertKind, AlertStatus, AlertView, Candidate, CommandRejection, Correlation, DeadLetter,
    DispatchAssignment, DispatchRecommendation, EventBody, ExcludedUnit, GeoPoint, IncidentStatus,
    IncidentView, KindNeed, OutputEvent, SwapSuggestion, UnitView,
};
pub use crate::time::Timestamp;
pub use crate::topics::Topics;
pub use crate::validate::{Validate, MAX_ID_LEN, MAX_TEXT_LEN};

use serde::de::DeserializeOwned;

/// Largest message we decode. Larger ones are dead-lettered unparsed, so a
/// 1 MB message costs a length check, not a parse.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How far into the future an input timestamp may be before we call it wrong
/// (clock skew of a terminal, not a message from tomorrow).
pub const MAX_FUTURE_SKEW_MS: i64 = 60 * 60 * 1000;

/// Earliest input timestamp we accept (2000-01-01T00:00:00Z).
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;

/// A value failed a semantic check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(String);

impl ValidationError {
    /// A validation error with the given reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// Why an input message could not be accepted. The `Display` text is the
/// dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("too large: {size} bytes, limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not utf-8 json: {0}")]
    Malformed(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
}

/// The five input streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    Call,
    Incident,
    Position,
    Unit,
    Command,
}

impl InputKind {
    /// Every input kind.
    pub const ALL: [InputKind; 5] = [
        InputKind::Call,
        InputKind::Incident,
        InputKind::Position,
        InputKind::Unit,
        InputKind::Command,
    ];

    /// A short, bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            InputKind::Call => "calls",
            InputKind::Incident => "incidents",
            InputKind::Position => "positions",
            InputKind::Unit => "units",
            InputKind::Command => "commands",
        }
    }
}

/// A decoded, validated input message.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Call(EmergencyCall),
    Incident(IncidentReport),
    Position(PositionPing),
    Unit(UnitStatusReport),
    Command(Command),
}

impl Input {
    /// The input's own id, used to deduplicate redeliveries.
    pub fn id(&self) -> &str {
        match self {
            Input::Call(c) => &c.call_id,
            Input::Incident(i) => &i.incident_id,
            Input::Position(p) => &p.unit_id,
            Input::Unit(u) => &u.unit_id,
            Input::Command(c) => &c.command_id,
        }
    }

    /// The event time the input carries.
    pub fn ts(&self) -> Timestamp {
        match self {
            Input::Call(c) => c.received_at,
            Input::Incident(i) => i.reported_at,
            Input::Position(p) => p.ts,
            Input::Unit(u) => u.ts,
            Input::Command(c) => c.ts,
        }
    }

    /// Which stream it belongs to.
    pub fn kind(&self) -> InputKind {
        match self {
            Input::Call(_) => InputKind::Call,
            Input::Incident(_) => InputKind::Incident,
            Input::Position(_) => InputKind::Position,
            Input::Unit(_) => InputKind::Unit,
            Input::Command(_) => InputKind::Command,
        }
    }
}

/// Shape checks serde's derives are too lenient for: a derived struct
/// visitor also accepts a JSON array in field order, and an internally
/// tagged enum accepts an integer variant index as its tag. The contract
/// says objects and strings, so anything else is refused here.
fn check_shape(kind: InputKind, value: &serde_json::Value) -> Result<(), DecodeError> {
    let must_be_object = |field: &str| match value.get(field) {
        Some(v) if !v.is_object() => Err(DecodeError::Invalid(format!(
            "{field} must be an object, got {}",
            json_kind(v)
        ))),
        _ => Ok(()),
    };
    match kind {
        InputKind::Call | InputKind::Incident => must_be_object("location"),
        InputKind::Command => match value.get("op") {
            Some(v) if !v.is_string() => Err(DecodeError::Invalid(format!(
                "op must be a string, got {}",
                json_kind(v)
            ))),
            _ => Ok(()),
        },
        InputKind::Position | InputKind::Unit => Ok(()),
    }
}

fn decode_one<T: DeserializeOwned + Validate>(
    kind: InputKind,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    // Fast path for the kinds with only scalar fields (positions, the bulk of
    // the traffic, and unit status): straight into the type when the message
    // is an object, which is all `check_shape` asks of them. Anything it
    // refuses takes the path below, which decides and gives the reason. (An
    // unknown field is skipped here without serde_json's nesting limit, which
    // the parse below applies: such a message is accepted, as the contract
    // asks of unknown fields, instead of being refused as too deep.)
    if matches!(kind, InputKind::Position | InputKind::Unit) && text.trim_start().starts_with('{') {
        if let Ok(msg) = serde_json::from_str::<T>(text) {
            msg.validate()
                .map_err(|e| DecodeError::Invalid(e.to_string()))?;
            return Ok(msg);
        }
    }
    decode_via_value(kind, text)
}

/// The general path of [`decode_one`]: every check, every reason.
fn decode_via_value<T: DeserializeOwned + Validate>(
    kind: InputKind,
    text: &str,
) -> Result<T, DecodeError> {
    // Parse to a generic value first so that syntax errors and schema errors
    // get different reasons; serde_json's recursion limit guards nesting.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(DecodeError::Invalid(format!(
            "expected a JSON object, got {}",
            json_kind(&value)
        )));
    }
    check_shape(kind, &value)?;
    let msg: T = serde_json::from_value(value).map_err(|e| DecodeError::Invalid(e.to_string()))?;
    msg.validate()
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    Ok(msg)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Decodes and validates one input message of the given kind.
///
/// `now` bounds timestamps: more than [`MAX_FUTURE_SKEW_MS`] ahead of it, or
/// before 2000, is invalid. Past timestamps are otherwise accepted, because a
/// replay after a restart legitimately carries old ones.
pub fn decode_input(kind: InputKind, bytes: &[u8], now: Timestamp) -> Result<Input, DecodeError> {
    let input = match kind {
        InputKind::Call => Input::Call(decode_one(kind, bytes)?),
        InputKind::Incident => Input::Incident(decode_one(kind, bytes)?),
        InputKind::Position => Input::Position(decode_one(kind, bytes)?),
        InputKind::Unit => Input::Unit(decode_one(kind, bytes)?),
        InputKind::Command => Input::Command(decode_one(kind, bytes)?),
    };
    let ts = input.ts().unix_millis();
    if ts < MIN_TIMESTAMP_MS {
        return Err(DecodeError::Invalid(format!(
            "timestamp {} is before 2000-01-01",
            input.ts()
        )));
    }
    if ts > now.unix_millis().saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(DecodeError::Invalid(format!(
            "timestamp {} is more than 1 h ahead of the processor clock {}",
            input.ts(),
            now
        )));
    }
    Ok(input)
}

/// Masks a phone number for screens that must not see it: keeps the last
/// two digits, e.g. `0905123467` → `********67`.
pub fn mask_phone(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(|c| c.is_ascii_digit()).collect();
    let keep = digits.len().min(2);
    let mut out: String = std::iter::repeat_n('*', digits.len() - keep).collect();
    out.extend(&digits[digits.len() - keep..]);
    out
}

/// JSON Schemas generated from the Rust types, by file name under `schemas/`.
/// The checked-in files are tested against these, so they cannot drift.
pub fn json_schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn schema<T: schemars::JsonSchema>() -> serde_json::Value {
        let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default()
    }
    // Outputs are described as we write them: every field we always
    // serialize (such as a null `district`) is required.
    fn output_schema<T: schemars::JsonSchema>() -> serde_json::Value {
        let generator = schemars::generate::SchemaSettings::draft2020_12()
            .for_serialize()
            .into_generator();
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default()
    }
    vec![
        ("call.schema.json", schema::<EmergencyCall>()),
        ("incident.schema.json", schema::<IncidentReport>()),
        ("position.schema.json", schema::<PositionPing>()),
        ("unit.schema.json", schema::<UnitStatusReport>()),
        ("command.schema.json", schema::<Command>()),
        ("event.schema.json", output_schema::<OutputEvent>()),
        ("dead_letter.schema.json", output_schema::<DeadLetter>()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse("2026-11-23T09:00:00Z").unwrap()
    }

    #[test]
    fn decodes_a_valid_call_and_ignores_unknown_fields() {
        let raw = br#"{"call_id":"c1","received_at":"2026-11-23T08:00:00Z","line":"115",
            "location":{"lat":16.06,"lon":108.22},"category":"medical","extra":{"x":1}}"#;
        let input = decode_input(InputKind::Call, raw, now()).unwrap();
        match input {
            Input::Call(c) => {
                assert_eq!(c.call_id, "c1");
                assert_eq!(c.line, Line::Ambulance);
            }
            other => panic!("expected a call, got {other:?}"),
        }
    }

    #[test]
    fn rejects_out_of_range_latitude_with_a_reason() {
        let raw = br#"{"call_id":"c1","received_at":"2026-11-23T08:00:00Z","line":"115",
            "location":{"lat":123.0,"lon":108.22},"category":"medical"}"#;
        let err = decode_input(InputKind::Call, raw, now()).unwrap_err();
        assert!(err.to_string().contains("location.lat"), "{err}");
    }

    proptest::proptest! {
        /// The fast path for positions and unit status decides exactly as
        /// the general path: same value, or the same reason. Messages built
        /// from valid ones with fields dropped, duplicated, mistyped, out of
        /// range, unknown (nested too) or the whole message as an array.
        #[test]
        fn fast_decode_agrees_with_the_general_path(
            lat in proptest::prop_oneof![-100.0f64..100.0, proptest::strategy::Just(f64::NAN)],
            lon in -200.0f64..200.0,
            speed in proptest::option::of(-10.0f64..500.0),
            drop in 0usize..8,
            extra in proptest::sample::select(vec![
                "", r#","x":1"#, r#","x":{"y":[1,{"z":null}]}"#, r#","lat":16.0"#,
                r#","speed_kmh":"fast""#, r#","ts":"yesterday""#, r#","unit_id":7"#,
                r#","kind":"tank""#, r#","status":{"available":null}"#, r#","station":null"#,
            ]),
            as_array in proptest::bool::weighted(0.1),
        ) {
            let mut fields = vec![
                r#""unit_id":"u1""#.to_string(),
                r#""ts":"2026-11-23T08:00:00.500Z""#.to_string(),
                format!(r#""lat":{}"#, if lat.is_nan() { "null".to_string() } else { lat.to_string() }),
                format!(r#""lon":{lon}"#),
            ];
            if let Some(v) = speed {
                fields.push(format!(r#""speed_kmh":{v}"#));
            }
            if drop < fields.len() {
                fields.remove(drop);
            }
            let ping = if as_array {
                format!("[{}]", fields.iter().map(|f| f.split_once(':').unwrap().1).collect::<Vec<_>>().join(","))
            } else {
                format!("{{{}{extra}}}", fields.join(","))
            };
            let unit = format!(
                r#"{{"unit_id":"u1","ts":"2026-11-23T08:00:00Z","kind":"ambulance","status":"available"{extra}}}"#
            );
            proptest::prop_assert_eq!(
                decode_one::<PositionPing>(InputKind::Position, ping.as_bytes()),
                decode_via_value::<PositionPing>(InputKind::Position, &ping),
                "{}", ping
            );
            proptest::prop_assert_eq!(
                decode_one::<UnitStatusReport>(InputKind::Unit, unit.as_bytes()),
                decode_via_value::<UnitStatusReport>(InputKind::Unit, &unit),
                "{}", unit
            );
        }
    }

    #[test]
    fn rejects_unknown_enum_value_and_missing_field() {
        let raw =
            br#"{"unit_id":"u1","ts":"2026-11-23T08:00:00Z","kind":"tank","status":"available"}"#;
        let err = decode_input(InputKind::Unit, raw, now()).unwrap_err();
        assert!(err.to_string().contains("tank"), "{err}");
        let raw = br#"{"unit_id":"u1","ts":"2026-11-23T08:00:00Z","lat":16.0}"#;
        let err = decode_input(InputKind::Position, raw, now()).unwrap_err();
        assert!(err.to_string().contains("lon"), "{err}");
    }

    #[test]
    fn rejects_malformed_huge_and_nested_input() {
        assert!(matches!(
            decode_input(InputKind::Call, b"{not json", now()),
            Err(DecodeError::Malformed(_))
        ));
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode_input(InputKind::Call, &huge, now()),
            Err(DecodeError::TooLarge { .. })
        ));
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode_input(InputKind::Call, nested.as_bytes(), now()).is_err());
        assert!(matches!(
            decode_input(InputKind::Call, b"[1,2]", now()),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn rejects_timestamps_far_in_the_future_or_past() {
        let raw = br#"{"unit_id":"u1","ts":"2030-01-01T00:00:00Z","lat":16.0,"lon":108.0}"#;
        assert!(decode_input(InputKind::Position, raw, now()).is_err());
        let raw = br#"{"unit_id":"u1","ts":"1990-01-01T00:00:00Z","lat":16.0,"lon":108.0}"#;
        assert!(decode_input(InputKind::Position, raw, now()).is_err());
    }

    #[test]
    fn command_op_is_flattened_into_the_message() {
        let raw = br#"{"command_id":"k1","ts":"2026-11-23T08:00:00Z","issued_by":"disp-1",
            "op":"assign","incident_id":"i1","unit_id":"u1"}"#;
        let input = decode_input(InputKind::Command, raw, now()).unwrap();
        let Input::Command(cmd) = input else {
            panic!("expected a command")
        };
        assert_eq!(
            cmd.op,
            CommandOp::Assign {
                incident_id: "i1".into(),
                unit_id: "u1".into()
            }
        );
        let raw = br#"{"command_id":"k1","ts":"2026-11-23T08:00:00Z","issued_by":"d",
            "op":"set_priority","incident_id":"i1","priority":9}"#;
        assert!(decode_input(InputKind::Command, raw, now()).is_err());
    }

    #[test]
    fn output_event_has_the_contract_shape_and_round_trips() {
        let ev = OutputEvent {
            seq: 7,
            ts: now(),
            district: Some("hai_chau".into()),
            body: EventBody::AlertAcknowledged(AlertView {
                alert_id: "a1".into(),
                kind: AlertKind::StaleGps,
                status: AlertStatus::Acknowledged,
                severity: 2,
                district: Some("hai_chau".into()),
                incident_id: None,
                unit_id: Some("u1".into()),
                message: "no fix".into(),
                raised_at: now(),
                acknowledged_by: Some("op".into()),
            }),
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["type"], "alert.acknowledged");
        assert_eq!(v["district"], "hai_chau");
        assert_eq!(v["data"]["alert_id"], "a1");
        let back: OutputEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn masks_all_but_last_two_digits() {
        assert_eq!(mask_phone("0905 123 467"), "********67");
        assert_eq!(mask_phone("+84905123467"), "*********67");
        assert_eq!(mask_phone("7"), "7");
        assert!(!mask_phone("0905123467").contains("0905"));
    }
}
