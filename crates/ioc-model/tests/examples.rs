//! The contract examples under `schemas/examples/` prove that the JSON
//! Schemas and the Rust types agree, both ways:
//!
//! - every `valid-*.json` input decodes with [`decode_input`] AND validates
//!   against the checked-in schema, and so does the Rust value serialized back;
//! - every `invalid-*.json` input fails [`decode_input`] with a reason that
//!   contains the fragment in its [`Invalid`] entry AND fails the schema,
//!   except where the entry says why the schema cannot (or does not yet) tell;
//! - every `valid-*.json` output (event, dead letter) deserializes into the
//!   Rust type, validates against its schema, and serializes back to exactly
//!   the same JSON, which validates too.
//!
//! Every file needs an entry here and every entry a file, so an example
//! cannot be added without saying what it should prove.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use base64::Engine as _;
use ioc_model::{decode_input, DeadLetter, Input, InputKind, OutputEvent, Timestamp, Topics};
use jsonschema::Validator;
use serde_json::Value;

fn schemas_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas"))
}

/// The processor clock for every example: after all of their timestamps, and
/// less than the allowed 1 h skew before none of the valid ones.
fn now() -> Timestamp {
    Timestamp::parse("2026-11-23T12:00:00Z").unwrap()
}

/// A validator for a checked-in schema, checking `format` too (`date-time`).
fn validator(schema_file: &str) -> Validator {
    let path = schemas_dir().join(schema_file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_SCHEMAS=1 cargo test -p ioc-model --test schemas",
            path.display()
        )
    });
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{schema_file} does not compile: {e}"))
}

fn schema_errors(validator: &Validator, value: &Value) -> Result<(), String> {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} (at {:?})", e, e.instance_path().as_str()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// `Ok` when the bytes are one JSON document the schema accepts.
fn schema_verdict(validator: &Validator, bytes: &[u8]) -> Result<(), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    schema_errors(validator, &value)
}

/// The examples of one message: (file name, bytes), valid and invalid, sorted.
struct Examples {
    valid: Vec<(String, Vec<u8>)>,
    invalid: Vec<(String, Vec<u8>)>,
}

fn examples(message: &str) -> Examples {
    let dir = schemas_dir().join("examples").join(message);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Examples {
        valid: Vec::new(),
        invalid: Vec::new(),
    };
    for name in names {
        let bytes = fs::read(dir.join(&name)).unwrap();
        if !name.ends_with(".json") {
            panic!("examples/{message}/{name}: only *.json files belong here");
        } else if name.starts_with("valid-") {
            out.valid.push((name, bytes));
        } else if name.starts_with("invalid-") {
            out.invalid.push((name, bytes));
        } else {
            panic!("examples/{message}/{name}: name must start with valid- or invalid-");
        }
    }
    out
}

/// What the JSON Schema says about an example the decoder rejects.
#[derive(Debug, Clone, Copy)]
enum SchemaSays {
    /// The schema rejects it too (the normal case).
    Rejects,
    /// The schema accepts it: the rule cannot be written in JSON Schema.
    CannotExpress(&'static str),
    /// The schema accepts it although JSON Schema could express the rule: the
    /// Rust types lack the schemars attribute. A known gap, reported; when the
    /// attribute is added this becomes `Rejects` and the test says so.
    Gap(&'static str),
}

/// What `decode_input` says about an invalid example.
#[derive(Debug, Clone, Copy)]
enum DecoderSays {
    /// It rejects it with a reason containing this fragment (the normal case).
    Rejects(&'static str),
}

/// An invalid example: its file, what the decoder must say (a fragment of
/// the dead-letter reason, i.e. the `DecodeError` text) and the schema's
/// verdict.
#[derive(Debug, Clone, Copy)]
struct Invalid {
    file: &'static str,
    decoder: DecoderSays,
    schema: SchemaSays,
}

const fn rejects(file: &'static str, reason: &'static str) -> Invalid {
    Invalid {
        file,
        decoder: DecoderSays::Rejects(reason),
        schema: SchemaSays::Rejects,
    }
}

const fn cannot_express(file: &'static str, reason: &'static str, why: &'static str) -> Invalid {
    Invalid {
        file,
        decoder: DecoderSays::Rejects(reason),
        schema: SchemaSays::CannotExpress(why),
    }
}

const fn gap(file: &'static str, reason: &'static str, why: &'static str) -> Invalid {
    Invalid {
        file,
        decoder: DecoderSays::Rejects(reason),
        schema: SchemaSays::Gap(why),
    }
}

// Why a schema cannot say what the decoder checks.
const CLOCK: &str = "the accepted time window depends on the processor clock and the \
                     2000-01-01 floor; `format: date-time` has no bounds";
const INTEGRAL_FLOAT: &str = "JSON Schema counts 2.0 as an integer (same number as 2); \
                              serde's u8 rejects a float token";
// Gaps: JSON Schema could say it, the generated schema does not (see report).
const EMPTY_ID: &str = "ids lack `minLength: 1` (check_id)";
const LONG_ID: &str = "ids lack `maxLength: 128` (check_id counts bytes, JSON Schema counts \
                       code points)";
const CONTROL_CHAR: &str = "ids lack a `pattern` excluding control characters (check_id)";
const PHONE: &str = "caller lacks `pattern: ^[0-9+ -]{1,32}$`";
const LONG_TEXT: &str = "description/note lack `maxLength: 4096` (bytes in the decoder)";

const CALL_INVALID: &[Invalid] = &[
    rejects("invalid-missing-call-id.json", "missing field `call_id`"),
    rejects("invalid-missing-location.json", "missing field `location`"),
    rejects(
        "invalid-lat-string.json",
        "invalid type: string \"16.0678\"",
    ),
    rejects("invalid-line-number.json", "invalid type: integer `115`"),
    rejects(
        "invalid-lat-range.json",
        "location.lat must be within -90..=90, got 123",
    ),
    rejects(
        "invalid-lon-range.json",
        "location.lon must be within -180..=180, got -180.5",
    ),
    rejects("invalid-accuracy-negative.json", "location.accuracy_m"),
    rejects("invalid-unknown-line.json", "unknown variant `112`"),
    rejects(
        "invalid-unknown-category.json",
        "unknown variant `earthquake`",
    ),
    rejects("invalid-null-line.json", "invalid type: null"),
    rejects(
        "invalid-timestamp-not-rfc3339.json",
        "expected an RFC 3339 timestamp",
    ),
    rejects(
        "invalid-timestamp-without-offset.json",
        "expected an RFC 3339 timestamp",
    ),
    rejects("invalid-array.json", "expected a JSON object, got an array"),
    rejects(
        "invalid-malformed.json",
        "not utf-8 json: trailing comma at line 7",
    ),
    // NaN is not JSON: it cannot reach either the decoder or the schema.
    rejects(
        "invalid-nan.json",
        "not utf-8 json: expected value at line 5",
    ),
    cannot_express(
        "invalid-timestamp-before-2000.json",
        "before 2000-01-01",
        CLOCK,
    ),
    cannot_express(
        "invalid-timestamp-in-the-future.json",
        "more than 1 h ahead",
        CLOCK,
    ),
    gap(
        "invalid-empty-id.json",
        "call_id must not be empty",
        EMPTY_ID,
    ),
    gap(
        "invalid-id-too-long.json",
        "call_id must be at most 128 bytes",
        LONG_ID,
    ),
    gap(
        "invalid-id-control-char.json",
        "call_id must not contain control characters",
        CONTROL_CHAR,
    ),
    gap(
        "invalid-caller-not-a-phone-number.json",
        "caller must be a phone number",
        PHONE,
    ),
];

const INCIDENT_INVALID: &[Invalid] = &[
    rejects(
        "invalid-priority-0.json",
        "priority must be within 1..=4, got 0",
    ),
    rejects(
        "invalid-priority-5.json",
        "priority must be within 1..=4, got 5",
    ),
    rejects("invalid-priority-300.json", "invalid value: integer `300`"),
    rejects(
        "invalid-priority-negative.json",
        "invalid value: integer `-1`",
    ),
    rejects(
        "invalid-priority-fractional.json",
        "invalid type: floating point `2.5`",
    ),
    rejects("invalid-priority-string.json", "invalid type: string \"1\""),
    rejects("invalid-missing-priority.json", "missing field `priority`"),
    rejects("invalid-unknown-source.json", "unknown variant `drone`"),
    rejects("invalid-source-wrong-case.json", "unknown variant `Camera`"),
    rejects(
        "invalid-lat-range.json",
        "location.lat must be within -90..=90, got -90.5",
    ),
    rejects(
        "invalid-location-array.json",
        "location must be an object, got an array",
    ),
    rejects("invalid-id-number.json", "invalid type: integer `42`"),
    rejects(
        "invalid-timestamp-impossible-date.json",
        "expected an RFC 3339 timestamp",
    ),
    rejects(
        "invalid-timestamp-epoch-millis.json",
        "invalid type: integer `1763884800000`",
    ),
    rejects(
        "invalid-string.json",
        "expected a JSON object, got a string",
    ),
    rejects(
        "invalid-truncated.json",
        "not utf-8 json: EOF while parsing",
    ),
    cannot_express(
        "invalid-priority-integral-float.json",
        "invalid type: floating point `2.0`",
        INTEGRAL_FLOAT,
    ),
    gap(
        "invalid-empty-id.json",
        "incident_id must not be empty",
        EMPTY_ID,
    ),
    gap(
        "invalid-description-too-long.json",
        "description must be at most 4096 bytes",
        LONG_TEXT,
    ),
];

const POSITION_INVALID: &[Invalid] = &[
    rejects("invalid-missing-lon.json", "missing field `lon`"),
    rejects("invalid-missing-ts.json", "missing field `ts`"),
    rejects(
        "invalid-lat-range.json",
        "position.lat must be within -90..=90, got 90.0001",
    ),
    rejects(
        "invalid-lon-range.json",
        "position.lon must be within -180..=180, got 200",
    ),
    // 1e400 overflows f64: serde_json refuses it, so it is not JSON to either side.
    rejects(
        "invalid-lat-overflow.json",
        "not utf-8 json: number out of range",
    ),
    rejects(
        "invalid-speed-negative.json",
        "speed_kmh must be within 0..=400, got -3",
    ),
    rejects(
        "invalid-heading-range.json",
        "heading_deg must be within 0..=360, got 361",
    ),
    rejects(
        "invalid-lat-string.json",
        "invalid type: string \"16.0544\"",
    ),
    rejects("invalid-heading-bool.json", "invalid type: boolean `true`"),
    rejects(
        "invalid-number.json",
        "expected a JSON object, got a number",
    ),
    rejects("invalid-null.json", "expected a JSON object, got null"),
    rejects(
        "invalid-timestamp-month-13.json",
        "expected an RFC 3339 timestamp",
    ),
    rejects(
        "invalid-malformed.json",
        "not utf-8 json: key must be a string",
    ),
    rejects("invalid-not-utf8.json", "not utf-8 json: invalid utf-8"),
    gap(
        "invalid-empty-id.json",
        "unit_id must not be empty",
        EMPTY_ID,
    ),
];

const UNIT_INVALID: &[Invalid] = &[
    rejects("invalid-unknown-kind.json", "unknown variant `tank`"),
    rejects("invalid-unknown-status.json", "unknown variant `busy`"),
    rejects(
        "invalid-status-wrong-case.json",
        "unknown variant `Available`",
    ),
    rejects("invalid-missing-status.json", "missing field `status`"),
    rejects("invalid-missing-unit-id.json", "missing field `unit_id`"),
    rejects("invalid-kind-number.json", "invalid type: integer `3`"),
    rejects("invalid-kind-array.json", "invalid type: sequence"),
    rejects("invalid-null-id.json", "invalid type: null"),
    rejects(
        "invalid-timestamp-word.json",
        "expected an RFC 3339 timestamp, got \"yesterday\"",
    ),
    rejects("invalid-array.json", "expected a JSON object, got an array"),
    rejects(
        "invalid-malformed-trailing-brace.json",
        "not utf-8 json: trailing characters",
    ),
    rejects(
        "invalid-empty-message.json",
        "not utf-8 json: EOF while parsing a value",
    ),
    gap(
        "invalid-empty-id.json",
        "unit_id must not be empty",
        EMPTY_ID,
    ),
    gap(
        "invalid-empty-station.json",
        "station must not be empty",
        EMPTY_ID,
    ),
    gap(
        "invalid-home-district-control-char.json",
        "home_district must not contain control characters",
        CONTROL_CHAR,
    ),
];

const COMMAND_INVALID: &[Invalid] = &[
    rejects("invalid-unknown-op.json", "unknown variant `teleport`"),
    rejects("invalid-op-wrong-case.json", "unknown variant `Assign`"),
    rejects("invalid-missing-op.json", "missing field `op`"),
    rejects(
        "invalid-op-number.json",
        "op must be a string, got a number",
    ),
    rejects(
        "invalid-assign-missing-unit-id.json",
        "missing field `unit_id`",
    ),
    rejects(
        "invalid-close-missing-incident-id.json",
        "missing field `incident_id`",
    ),
    rejects(
        "invalid-ack-alert-id-number.json",
        "invalid type: integer `17`",
    ),
    rejects(
        "invalid-priority-0.json",
        "priority must be within 1..=4, got 0",
    ),
    rejects(
        "invalid-priority-5.json",
        "priority must be within 1..=4, got 5",
    ),
    rejects(
        "invalid-priority-string.json",
        "invalid type: string \"high\"",
    ),
    rejects(
        "invalid-missing-command-id.json",
        "missing field `command_id`",
    ),
    rejects(
        "invalid-timestamp-without-offset.json",
        "expected an RFC 3339 timestamp",
    ),
    rejects(
        "invalid-string.json",
        "expected a JSON object, got a string",
    ),
    rejects(
        "invalid-malformed-unclosed.json",
        "not utf-8 json: EOF while parsing an object",
    ),
    gap(
        "invalid-empty-issued-by.json",
        "issued_by must not be empty",
        EMPTY_ID,
    ),
    gap(
        "invalid-empty-incident-id.json",
        "incident_id must not be empty",
        EMPTY_ID,
    ),
];

/// The Rust value of a decoded input, serialized as a producer would send it.
fn serialize_input(input: &Input) -> Value {
    match input {
        Input::Call(m) => serde_json::to_value(m),
        Input::Incident(m) => serde_json::to_value(m),
        Input::Position(m) => serde_json::to_value(m),
        Input::Unit(m) => serde_json::to_value(m),
        Input::Command(m) => serde_json::to_value(m),
    }
    .expect("inputs serialize")
}

fn check_input_examples(kind: InputKind, message: &str, schema_file: &str, table: &[Invalid]) {
    let validator = validator(schema_file);
    let all = examples(message);
    let mut problems = Vec::new();
    assert!(
        all.valid.len() >= 3,
        "examples/{message}: want several valid-*.json"
    );
    assert!(
        all.invalid.len() >= 5,
        "examples/{message}: want several invalid-*.json"
    );

    for (name, bytes) in &all.valid {
        let at = format!("examples/{message}/{name}");
        match decode_input(kind, bytes, now()) {
            Err(e) => problems.push(format!("{at}: decode_input rejects a valid example: {e}")),
            Ok(input) => {
                // What a Rust producer (simulator, gateway) would write for it
                // must satisfy the schema and decode to the same value.
                let out = serialize_input(&input);
                if let Err(e) = schema_errors(&validator, &out) {
                    problems.push(format!(
                        "{at}: re-serialized Rust value fails {schema_file}: {e}"
                    ));
                }
                let again = decode_input(kind, out.to_string().as_bytes(), now());
                if again.as_ref() != Ok(&input) {
                    problems.push(format!("{at}: does not round-trip: {again:?} != {input:?}"));
                }
            }
        }
        if let Err(e) = schema_verdict(&validator, bytes) {
            problems.push(format!("{at}: {schema_file} rejects a valid example: {e}"));
        }
    }

    let files: BTreeSet<&str> = all.invalid.iter().map(|(n, _)| n.as_str()).collect();
    for entry in table {
        if !files.contains(entry.file) {
            problems.push(format!(
                "examples/{message}/{}: listed in the test's table but missing on disk",
                entry.file
            ));
        }
    }
    for (name, bytes) in &all.invalid {
        let at = format!("examples/{message}/{name}");
        let Some(entry) = table.iter().find(|e| e.file == name) else {
            problems.push(format!(
                "{at}: no entry in the test's table: add the reason fragment it must produce"
            ));
            continue;
        };
        match (decode_input(kind, bytes, now()), entry.decoder) {
            (Ok(input), DecoderSays::Rejects(_)) => {
                problems.push(format!("{at}: decode_input accepts it: {input:?}"));
            }
            (Err(e), DecoderSays::Rejects(reason)) if !e.to_string().contains(reason) => problems
                .push(format!(
                    "{at}: reason {:?} does not contain {reason:?}",
                    e.to_string()
                )),
            (Err(_), DecoderSays::Rejects(_)) => {}
        }
        match (schema_verdict(&validator, bytes), entry.schema) {
            (Err(_), SchemaSays::Rejects)
            | (Ok(()), SchemaSays::CannotExpress(_) | SchemaSays::Gap(_)) => {}
            (Ok(()), SchemaSays::Rejects) => {
                problems.push(format!("{at}: {schema_file} accepts an invalid example"));
            }
            (Err(e), SchemaSays::CannotExpress(why) | SchemaSays::Gap(why)) => {
                problems.push(format!(
                "{at}: {schema_file} now rejects it ({e}); the table said it could not ({why}): \
                 change its entry to `rejects`"
            ))
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn call_examples_agree_with_schema_and_decoder() {
    check_input_examples(InputKind::Call, "call", "call.schema.json", CALL_INVALID);
}

#[test]
fn incident_examples_agree_with_schema_and_decoder() {
    check_input_examples(
        InputKind::Incident,
        "incident",
        "incident.schema.json",
        INCIDENT_INVALID,
    );
}

#[test]
fn position_examples_agree_with_schema_and_decoder() {
    check_input_examples(
        InputKind::Position,
        "position",
        "position.schema.json",
        POSITION_INVALID,
    );
}

#[test]
fn unit_examples_agree_with_schema_and_decoder() {
    check_input_examples(InputKind::Unit, "unit", "unit.schema.json", UNIT_INVALID);
}

#[test]
fn command_examples_agree_with_schema_and_decoder() {
    check_input_examples(
        InputKind::Command,
        "command",
        "command.schema.json",
        COMMAND_INVALID,
    );
}

/// Output examples: parse, validate, deserialize into `T`, serialize back to
/// exactly the same JSON (so the example is what the processor really writes),
/// validate that too. Returns the values for further checks.
fn check_output_examples<T>(message: &str, schema_file: &str) -> Vec<(String, T)>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let validator = validator(schema_file);
    let all = examples(message);
    assert!(
        all.invalid.is_empty(),
        "examples/{message}: output examples are valid-*.json only"
    );
    let mut problems = Vec::new();
    let mut values = Vec::new();
    for (name, bytes) in all.valid {
        let at = format!("examples/{message}/{name}");
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{at}: not JSON: {e}"));
                continue;
            }
        };
        if let Err(e) = schema_errors(&validator, &value) {
            problems.push(format!("{at}: {schema_file} rejects it: {e}"));
        }
        let rust: T = match serde_json::from_value(value.clone()) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{at}: does not deserialize: {e}"));
                continue;
            }
        };
        let back = serde_json::to_value(&rust).expect("outputs serialize");
        if let Err(e) = schema_errors(&validator, &back) {
            problems.push(format!(
                "{at}: serialized Rust value fails {schema_file}: {e}"
            ));
        }
        if back != value {
            problems.push(format!(
                "{at}: the Rust type writes it differently (keep examples in canonical \
                 form: `.000Z` timestamps, floats with a point, no null optional fields):\n    \
                 {back}"
            ));
        }
        values.push((name, rust));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    values
}

#[test]
fn event_examples_round_trip_and_cover_every_type() {
    let events = check_output_examples::<OutputEvent>("event", "event.schema.json");
    let covered: BTreeSet<String> = events
        .iter()
        .map(|(_, e)| e.body.type_name().to_string())
        .collect();
    let schema = read_schema("event.schema.json");
    let types = variant_consts(&schema, "type");
    assert_eq!(
        covered, types,
        "examples/event: want one valid-*.json per event type in event.schema.json"
    );
}

#[test]
fn dead_letter_examples_round_trip_and_carry_the_real_reason() {
    let letters = check_output_examples::<DeadLetter>("dead_letter", "dead_letter.schema.json");
    assert!(letters.len() >= 3, "examples/dead_letter: want several");
    let topics = Topics::default();
    let mut problems = Vec::new();
    for (name, letter) in &letters {
        let at = format!("examples/dead_letter/{name}");
        let original =
            match base64::engine::general_purpose::STANDARD.decode(&letter.original_base64) {
                Ok(bytes) => bytes,
                Err(e) => {
                    problems.push(format!(
                        "{at}: original_base64 is not standard padded base64: {e}"
                    ));
                    continue;
                }
            };
        let Some(kind) = topics.kind_of(&letter.topic) else {
            problems.push(format!(
                "{at}: topic {:?} is not an input topic",
                letter.topic
            ));
            continue;
        };
        match decode_input(kind, &original, now()) {
            Ok(_) => problems.push(format!("{at}: the original message decodes fine")),
            Err(e) if e.to_string() != letter.reason => problems.push(format!(
                "{at}: reason {:?} is not what decode_input says: {:?}",
                letter.reason,
                e.to_string()
            )),
            Err(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

fn read_schema(file: &str) -> Value {
    let text = fs::read_to_string(schemas_dir().join(file)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The values of a string enum in `$defs`, whether schemars wrote it as
/// `enum` or as `oneOf` of `const`s (when variants carry doc comments).
fn enum_values(schema: &Value, def: &str) -> BTreeSet<String> {
    let def_schema = &schema["$defs"][def];
    let values: BTreeSet<String> = if let Some(list) = def_schema["enum"].as_array() {
        list.iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    } else {
        def_schema["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["const"].as_str().map(String::from))
            .collect()
    };
    assert!(!values.is_empty(), "no enum {def} in schema");
    values
}

/// The tag values of a tagged `oneOf` at the schema root (`op`, `type`).
fn variant_consts(schema: &Value, tag: &str) -> BTreeSet<String> {
    let values: BTreeSet<String> = schema["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["properties"][tag]["const"].as_str().map(String::from))
        .collect();
    assert!(!values.is_empty(), "no oneOf tagged by {tag}");
    values
}

/// The values at a JSON pointer across the valid examples of some messages,
/// restricted to examples where `filter` holds.
fn used(messages: &[&str], pointer: &str, filter: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for message in messages {
        for (_, bytes) in examples(message).valid {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            if !filter(&v) {
                continue;
            }
            match v.pointer(pointer) {
                Some(Value::String(s)) => {
                    out.insert(s.clone());
                }
                Some(Value::Number(n)) => {
                    out.insert(n.to_string());
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn every_enum_value_appears_in_a_valid_example() {
    let call = read_schema("call.schema.json");
    let incident = read_schema("incident.schema.json");
    let unit = read_schema("unit.schema.json");
    let command = read_schema("command.schema.json");
    let event = read_schema("event.schema.json");
    let all = |_: &Value| true;
    let is = |prefix: &'static str| {
        move |v: &Value| v["type"].as_str().is_some_and(|t| t.starts_with(prefix))
    };
    let priorities = |schema: &Value| -> BTreeSet<String> {
        let p = &schema["properties"]["priority"];
        let (lo, hi) = (
            p["minimum"].as_u64().unwrap(),
            p["maximum"].as_u64().unwrap(),
        );
        (lo..=hi).map(|n| n.to_string()).collect()
    };
    let checks: Vec<(&str, BTreeSet<String>, BTreeSet<String>)> = vec![
        (
            "call line",
            enum_values(&call, "Line"),
            used(&["call"], "/line", all),
        ),
        (
            "call category",
            enum_values(&call, "Category"),
            used(&["call"], "/category", all),
        ),
        (
            "incident category",
            enum_values(&incident, "Category"),
            used(&["incident"], "/category", all),
        ),
        (
            "incident source",
            enum_values(&incident, "IncidentSource"),
            used(&["incident"], "/source", all),
        ),
        (
            "incident priority",
            priorities(&incident),
            used(&["incident"], "/priority", all),
        ),
        (
            "unit kind",
            enum_values(&unit, "UnitKind"),
            used(&["unit"], "/kind", all),
        ),
        (
            "unit status",
            enum_values(&unit, "UnitStatus"),
            used(&["unit"], "/status", all),
        ),
        (
            "command op",
            variant_consts(&command, "op"),
            used(&["command"], "/op", all),
        ),
        (
            "event type",
            variant_consts(&event, "type"),
            used(&["event"], "/type", all),
        ),
        (
            "alert kind",
            enum_values(&event, "AlertKind"),
            used(&["event"], "/data/kind", is("alert.")),
        ),
        (
            "alert status",
            enum_values(&event, "AlertStatus"),
            used(&["event"], "/data/status", is("alert.")),
        ),
        (
            "incident status",
            enum_values(&event, "IncidentStatus"),
            used(&["event"], "/data/status", is("incident.")),
        ),
    ];
    let mut problems = Vec::new();
    for (what, want, have) in checks {
        let missing: Vec<_> = want.difference(&have).collect();
        if !missing.is_empty() {
            problems.push(format!("{what}: no valid example uses {missing:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What the decoder (the `time` crate's RFC 3339 parser) and the schema's
/// `format: date-time` (RFC 3339 section 5.6 ABNF) say about timestamps. All
/// lie inside the decoder's clock window, so only the format decides. They
/// agree except where a case says otherwise (each a reported difference).
#[test]
fn timestamp_formats_agree_between_decoder_and_schema() {
    // (timestamp, decoder accepts, schema accepts)
    let cases: &[(&str, bool, bool)] = &[
        ("2026-11-23T08:00:00Z", true, true),
        ("2026-11-23T08:00:00.5Z", true, true),
        ("2026-11-23T08:00:00.123456789Z", true, true),
        ("2026-11-23T15:00:00+07:00", true, true),
        ("2026-11-23T08:00:00-00:00", true, true),
        ("2026-11-23t08:00:00z", true, true),
        ("2024-02-29T08:00:00Z", true, true),
        ("2016-12-31T23:59:60Z", true, true),
        // RFC 3339's note allows a space for readability, its ABNF (and so
        // JSON Schema's date-time) does not; the `time` crate accepts it.
        ("2026-11-23 08:00:00Z", true, false),
        ("2026-11-23T08:00:00", false, false),
        ("2026-11-23T08:00Z", false, false),
        ("2026-11-23", false, false),
        ("2026-11-23T08:00:00+0700", false, false),
        ("2026-11-23T08:00:00.Z", false, false),
        ("2026-02-29T08:00:00Z", false, false),
        ("2026-11-31T08:00:00Z", false, false),
        ("2026-11-23T24:00:00Z", false, false),
        ("2026-11-23T08:60:00Z", false, false),
        ("2026-11-23T08:00:00+24:00", false, false),
        ("26-11-23T08:00:00Z", false, false),
        ("", false, false),
    ];
    let validator = validator("position.schema.json");
    let mut problems = Vec::new();
    for &(ts, decoder_ok, schema_ok) in cases {
        let msg = serde_json::json!({"unit_id": "amb-07", "ts": ts, "lat": 16.0, "lon": 108.0});
        let decoded = decode_input(InputKind::Position, msg.to_string().as_bytes(), now());
        let schema = schema_errors(&validator, &msg);
        if decoded.is_ok() != decoder_ok || schema.is_ok() != schema_ok {
            problems.push(format!(
                "{ts:?}: want decoder ok={decoder_ok}, schema ok={schema_ok}; decoder says \
                 {:?}, schema says {:?}",
                decoded.map(|_| ()),
                schema
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
