//! Fuzz target for the card loader and validator: arbitrary bytes must give a
//! report, never a panic, a stack overflow or unbounded memory.
//!
//! The first byte picks the format (YAML, JSON, TOML); the rest is the file.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use skulk::load::{self, Format, SourceMap};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => Format::Yaml,
        1 => Format::Json,
        _ => Format::Toml,
    };
    let Ok(text) = load::check_bytes(bytes.to_vec()) else {
        return;
    };
    // The whole pipeline: parse, schema, typed parse, semantic rules, and
    // positions for every problem.
    let report = skulk::validate::validate_text(Path::new("fuzz.card"), &text, format);
    assert_eq!(report.valid, report.errors() == 0);
    // The source map on its own, for every pointer of the parsed value.
    if let Ok(value) = load::parse(&text, format) {
        let map = SourceMap::build(&text, format, &skulk::card::snake_to_camel);
        let mut pending = vec![(String::new(), &value)];
        while let Some((pointer, value)) = pending.pop() {
            let _ = map.locate(&pointer, true);
            match value {
                serde_json::Value::Object(object) => {
                    for (key, child) in object {
                        let key = skulk::card::snake_to_camel(key);
                        pending.push((format!("{pointer}/{}", skulk::card::escape_pointer(&key)), child));
                    }
                }
                serde_json::Value::Array(items) => {
                    for (index, child) in items.iter().enumerate() {
                        pending.push((format!("{pointer}/{index}"), child));
                    }
                }
                _ => {}
            }
        }
    }
});
