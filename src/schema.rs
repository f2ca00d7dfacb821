//! JSON schemas generated from the Rust document types.
//!
//! The types are the single source of truth: `schemas/*.schema.json` are
//! generated from them with schemars (`skulk schema KIND`), committed, and a
//! test fails when a committed file differs from what the code generates.
//! The validator compiles the same generated schemas, so what `skulk
//! validate` checks and what editors see can never drift apart.

use std::sync::OnceLock;

use serde_json::Value;

use crate::card::ModelCard;

/// The documents that have a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SchemaKind {
    Card,
    Inventory,
    Plan,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 3] = [SchemaKind::Card, SchemaKind::Inventory, SchemaKind::Plan];

    /// The argument of `skulk schema`.
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::Card => "card",
            SchemaKind::Inventory => "inventory",
            SchemaKind::Plan => "plan",
        }
    }

    /// Where the generated schema is committed, relative to the repository root.
    pub fn committed_path(self) -> &'static str {
        match self {
            SchemaKind::Card => "schemas/model-card.schema.json",
            SchemaKind::Inventory => "schemas/inventory.schema.json",
            SchemaKind::Plan => "schemas/plan.schema.json",
        }
    }
}

/// The schema of `kind` as generated from the types, or `None` while that
/// document type is not part of this build.
pub fn schema(kind: SchemaKind) -> Option<Value> {
    let schema = match kind {
        SchemaKind::Card => schemars::schema_for!(ModelCard),
        SchemaKind::Inventory => schemars::schema_for!(crate::inventory::InventoryFile),
        SchemaKind::Plan => schemars::schema_for!(crate::plan::PlanDocument),
    };
    Some(finish(schema.to_value()))
}

/// Puts `$schema`, `title` and `description` first, and turns the integer
/// formats schemars writes (`uint32`, annotations a validator ignores) into
/// bounds it checks, so a number the typed parse would refuse fails the
/// schema instead, with a pointer and a plain message.
fn finish(schema: Value) -> Value {
    let Value::Object(mut map) = bound_integers(schema) else {
        unreachable!("schemars generates an object schema")
    };
    let mut out = serde_json::Map::new();
    for key in ["$schema", "title", "description"] {
        if let Some(value) = map.shift_remove(key) {
            out.insert(key.to_string(), value);
        }
    }
    out.extend(map);
    Value::Object(out)
}

fn bound_integers(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut map: serde_json::Map<String, Value> = map
                .into_iter()
                .map(|(key, value)| (key, bound_integers(value)))
                .collect();
            let bounds: Option<(i64, u64)> = match map.get("format").and_then(Value::as_str) {
                Some("uint8") => Some((0, u8::MAX.into())),
                Some("uint16") => Some((0, u16::MAX.into())),
                Some("uint32") => Some((0, u32::MAX.into())),
                Some("uint64") => Some((0, u64::MAX)),
                Some("int32") => Some((i32::MIN.into(), i32::MAX as u64)),
                Some("int64") => Some((i64::MIN, i64::MAX as u64)),
                _ => None,
            };
            if let Some((min, max)) = bounds {
                map.entry("minimum").or_insert(min.into());
                map.entry("maximum").or_insert(max.into());
            }
            Value::Object(map)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(bound_integers).collect()),
        other => other,
    }
}

/// The schema as committed: pretty JSON with a trailing newline.
pub fn schema_text(kind: SchemaKind) -> Option<String> {
    let value = schema(kind)?;
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value serialises");
    text.push('\n');
    Some(text)
}

/// The compiled validator for `kind`, built once per process.
pub fn validator(kind: SchemaKind) -> Option<&'static jsonschema::Validator> {
    static CELLS: [OnceLock<Option<jsonschema::Validator>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let index = SchemaKind::ALL.iter().position(|k| *k == kind)?;
    CELLS[index]
        .get_or_init(|| {
            let schema = schema(kind)?;
            Some(
                jsonschema::options()
                    .should_validate_formats(false)
                    .build(&schema)
                    .expect("generated schemas compile"),
            )
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_schemas_compile() {
        for kind in SchemaKind::ALL {
            if schema(kind).is_some() {
                assert!(validator(kind).is_some(), "{}", kind.name());
            }
        }
    }

    #[test]
    fn card_schema_is_strict_and_camel_case() {
        let schema = schema(SchemaKind::Card).unwrap();
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            required,
            [
                "modelId",
                "storageSize",
                "nLayers",
                "hiddenSize",
                "supportsTensor",
                "tasks"
            ]
        );
        assert_eq!(schema["properties"]["nLayers"]["minimum"], 1);
    }
}
