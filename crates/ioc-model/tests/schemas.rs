//! The checked-in JSON Schemas under `schemas/` are exactly what
//! `ioc_model::json_schemas()` generates from the Rust types, so the contract
//! files cannot drift from the code.
//!
//! After changing a message type, regenerate them with
//!
//! ```text
//! UPDATE_SCHEMAS=1 cargo test -p ioc-model --test schemas
//! ```
//!
//! and commit the result together with the type change.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

const REGENERATE: &str = "UPDATE_SCHEMAS=1 cargo test -p ioc-model --test schemas";

fn schemas_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas"))
}

/// The exact bytes a schema file must hold: pretty-printed, trailing newline.
fn render(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema serializes");
    text.push('\n');
    text
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn checked_in_schemas_match_the_rust_types() {
    let dir = schemas_dir();
    let update = updating();
    let mut stale = Vec::new();
    for (name, schema) in ioc_model::json_schemas() {
        let path = dir.join(name);
        let want = render(&schema);
        let have = fs::read_to_string(&path).ok();
        if have.as_deref() == Some(want.as_str()) {
            continue;
        }
        if update {
            fs::write(&path, &want).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            eprintln!("updated {}", path.display());
        } else if have.is_none() {
            stale.push(format!("schemas/{name} is missing"));
        } else {
            let have = have.unwrap_or_default();
            let line = have
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
            stale.push(format!(
                "schemas/{name} differs from what the Rust types generate (first at line {})",
                line + 1
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "checked-in JSON Schemas are out of date:\n  {}\nregenerate them with `{REGENERATE}` \
         and review the diff",
        stale.join("\n  ")
    );
}

#[test]
fn no_stray_schema_files() {
    let generated: BTreeSet<String> = ioc_model::json_schemas()
        .into_iter()
        .map(|(name, _)| name.to_string())
        .collect();
    let on_disk: BTreeSet<String> = fs::read_dir(schemas_dir())
        .expect("schemas/ exists")
        .map(|e| {
            e.expect("readable dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".schema.json"))
        .collect();
    let stray: Vec<_> = on_disk.difference(&generated).collect();
    assert!(
        stray.is_empty(),
        "schemas/ holds schema files no Rust type generates: {stray:?}; delete them or add \
         the type to ioc_model::json_schemas()"
    );
}

#[test]
fn generated_schemas_are_valid_draft_2020_12() {
    for (name, schema) in ioc_model::json_schemas() {
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{name} is not a valid JSON Schema: {e}");
        }
        jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|e| panic!("{name} does not compile: {e}"));
    }
}
