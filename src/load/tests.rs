//! Loading, bounded parsing and source maps, on hostile and ordinary input.

use super::*;
use serde_json::json;

fn yaml(text: &str) -> Result<Value, ParseError> {
    parse(text, Format::Yaml)
}

fn same(key: &str) -> String {
    key.to_string()
}

#[test]
fn the_three_formats_give_the_same_value() {
    let expected = json!({"a": {"b": [1, 2.5, "x", true, null]}});
    assert_eq!(
        yaml("a:\n  b: [1, 2.5, x, true, null]\n").unwrap(),
        expected
    );
    assert_eq!(
        parse(r#"{"a": {"b": [1, 2.5, "x", true, null]}}"#, Format::Json).unwrap(),
        expected
    );
    let toml = parse("[a]\nb = [1, 2.5, \"x\", true]\n", Format::Toml).unwrap();
    assert_eq!(toml, json!({"a": {"b": [1, 2.5, "x", true]}}));
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let err = yaml("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
    assert!(err.location.is_some(), "{err:?}");
    assert!(!err.message.contains(" at line "), "{}", err.message);
}

#[test]
fn json_syntax_error_has_line_and_column() {
    let err = parse("{\n  \"a\": 1,\n  \"b\": }\n", Format::Json).unwrap_err();
    assert_eq!(err.location, Some(Location { line: 3, column: 8 }));
    assert_eq!(err.message, "expected value");
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let err = parse("a = 1\nb = = 2\n", Format::Toml).unwrap_err();
    assert_eq!(err.location.map(|l| l.line), Some(2));
}

#[test]
fn duplicate_keys_are_errors_in_every_format() {
    let err = yaml("b: 0\nc:\n  a: 1\n  a: 2\n").unwrap_err();
    assert_eq!(err.message, "duplicate key `a`");
    assert_eq!(err.location, Some(Location { line: 4, column: 3 }));
    let err = parse(r#"{"a": 1, "a": 2}"#, Format::Json).unwrap_err();
    assert!(err.message.contains("duplicate key `a`"), "{err:?}");
    assert!(parse("a = 1\na = 2\n", Format::Toml).is_err());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep_json = "[".repeat(100_000) + &"]".repeat(100_000);
    let err = parse(&deep_json, Format::Json).unwrap_err();
    assert!(err.message.contains("deeper than 64") || err.message.contains("recursion"));
    let deep_yaml = "[".repeat(100_000) + &"]".repeat(100_000);
    assert!(yaml(&deep_yaml).is_err());
    let deep_toml = format!("a = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse(&deep_toml, Format::Toml).is_err());
    let dotted = vec!["a"; 100_000].join(".");
    assert!(parse(&format!("{dotted} = 1\n"), Format::Toml).is_err());
    assert!(parse(&format!("[{dotted}]\nb = 1\n"), Format::Toml).is_err());
    let inline = "a = {b = ".repeat(10_000) + "1" + &"}".repeat(10_000);
    assert!(parse(&inline, Format::Toml).is_err());
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(parse(&ok, Format::Json).is_ok());
    let too_deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    let err = parse(&too_deep, Format::Json).unwrap_err();
    assert!(err.message.contains("deeper than 64"), "{err:?}");
}

#[test]
fn yaml_alias_bomb_is_bounded() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
    }
    let err = yaml(&bomb).unwrap_err();
    assert!(
        err.message.contains("more than 1000000 values")
            || err.message.contains("repetition limit"),
        "{err:?}"
    );
}

#[test]
fn yaml_wide_alias_expansion_is_bounded_by_the_value_budget() {
    // Few jumps (within serde_yaml_ng's own limit), huge expansion.
    let mut text = String::from("a: &a [");
    text.push_str(&"1,".repeat(20_000));
    text.push_str("]\nb: [");
    text.push_str(&"*a,".repeat(200));
    text.push_str("]\n");
    let err = yaml(&text).unwrap_err();
    assert!(err.message.contains("more than 1000000 values"), "{err:?}");
}

#[test]
fn non_finite_numbers_and_tags_are_errors() {
    assert!(yaml("a: .nan\n")
        .unwrap_err()
        .message
        .contains("not finite"));
    assert!(yaml("a: !custom 3\n")
        .unwrap_err()
        .message
        .contains("tagged"));
    assert!(parse("a = inf\n", Format::Toml).is_err());
}

#[test]
fn more_than_one_yaml_document_is_an_error() {
    assert!(yaml("a: 1\n---\nb: 2\n").is_err());
}

#[test]
fn toml_datetimes_become_strings() {
    let value = parse("d = 1979-05-27T07:32:00Z\n", Format::Toml).unwrap();
    assert_eq!(value, json!({"d": "1979-05-27T07:32:00Z"}));
}

#[test]
fn yaml_scalar_keys_become_strings() {
    assert_eq!(
        yaml("1: a\ntrue: b\n").unwrap(),
        json!({"1": "a", "true": "b"})
    );
    assert!(yaml("[1]: a\n").is_err());
}

#[test]
fn bytes_checks() {
    assert!(matches!(
        check_bytes(Vec::new()),
        Err((None, LoadErrorKind::Empty))
    ));
    assert!(matches!(
        check_bytes(b"  \n\t\n".to_vec()),
        Err((None, LoadErrorKind::Empty))
    ));
    let err = check_bytes(b"a: 1\nb: \xff\n".to_vec()).unwrap_err();
    assert_eq!(err.0, Some(Location { line: 2, column: 4 }));
    assert!(matches!(err.1, LoadErrorKind::NotUtf8 { offset: 8 }));
    let big = vec![b' '; MAX_FILE_BYTES as usize + 1];
    assert!(matches!(
        check_bytes(big),
        Err((None, LoadErrorKind::TooLarge))
    ));
    assert_eq!(check_bytes("\u{feff}a: 1".into()).unwrap(), "a: 1");
}

#[test]
fn positions_are_stripped_from_messages() {
    assert_eq!(
            strip_positions("did not find expected key at line 3 column 1, while parsing a block mapping at line 1 column 1"),
            "did not find expected key, while parsing a block mapping"
        );
    assert_eq!(strip_positions("a at b"), "a at b");
    assert_eq!(strip_positions("x at position 12"), "x");
}

#[test]
fn yaml_source_map_finds_keys_and_values() {
    let text = "a: 1\nlist:\n  - x\n  - {k: v}\nnested:\n  in_bytes: 3\n";
    let map = SourceMap::build(text, Format::Yaml, &crate::card::snake_to_camel);
    assert_eq!(
        map.locate("/a", false),
        Some(Location { line: 1, column: 4 })
    );
    assert_eq!(
        map.locate("/a", true),
        Some(Location { line: 1, column: 1 })
    );
    assert_eq!(
        map.locate("/list/1/k", false),
        Some(Location { line: 4, column: 9 })
    );
    assert_eq!(
        map.locate("/nested/inBytes", true),
        Some(Location { line: 6, column: 3 })
    );
    // Unknown pointers fall back to the nearest ancestor.
    assert_eq!(
        map.locate("/list/1/zz", false),
        Some(Location { line: 4, column: 6 })
    );
    assert_eq!(map.locate("", false), Some(Location { line: 1, column: 1 }));
}

#[test]
fn json_source_map_finds_keys_and_values() {
    let text = "{\n  \"a\": 1,\n  \"b\": [true, {\"c\\u00e9\": null}],\n  \"d/e\": \"x\"\n}\n";
    let map = SourceMap::build(text, Format::Json, &same);
    assert_eq!(
        map.locate("/a", false),
        Some(Location { line: 2, column: 8 })
    );
    assert_eq!(
        map.locate("/a", true),
        Some(Location { line: 2, column: 3 })
    );
    assert_eq!(
        map.locate("/b/1/cé", false),
        Some(Location {
            line: 3,
            column: 27
        })
    );
    assert_eq!(
        map.locate("/d~1e", false),
        Some(Location {
            line: 4,
            column: 10
        })
    );
}

#[test]
fn toml_source_map_finds_keys_and_values() {
    let text = "n_layers = 3\n\n[storage_size]\nin_bytes = 5\n";
    let map = SourceMap::build(text, Format::Toml, &crate::card::snake_to_camel);
    assert_eq!(
        map.locate("/nLayers", false),
        Some(Location {
            line: 1,
            column: 12
        })
    );
    assert_eq!(
        map.locate("/nLayers", true),
        Some(Location { line: 1, column: 1 })
    );
    assert_eq!(
        map.locate("/storageSize/inBytes", false),
        Some(Location {
            line: 4,
            column: 12
        })
    );
}

#[test]
fn read_source_refuses_unknown_extensions_and_reports_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("card.txt");
    std::fs::write(&txt, "a: 1").unwrap();
    assert!(matches!(
        read_source(&txt).unwrap_err().kind,
        LoadErrorKind::UnsupportedExtension
    ));
    let missing = read_source(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(missing.is_io());
}
