//! JSON Schema to GBNF: the grammar that makes the sampling rank produce only
//! JSON that validates against a request's schema (`response_format`, the
//! arguments of a forced tool call).
//!
//! Invariant guarded here: every string the grammar accepts is a JSON value
//! that validates against the schema it was built from. A keyword that would
//! constrain the value in a way the grammar cannot express is refused with
//! its JSON pointer ([`SchemaError`]), never ignored; keywords that only
//! annotate (`title`, `description`, `default`, ...) are ignored. Where the
//! grammar is narrower than the schema (a `date` day is 01-28, numbers have at
//! most 16 integral digits, at most one space between tokens, required
//! properties come first), the output still validates.
//!
//! The GBNF dialect is llama.cpp's (`grammars/README.md` of llama.cpp): rules
//! `name ::= ...`, literals in double quotes, character classes, groups and
//! `? * + {m,n}` repetition.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Longest run a `{m,n}` repetition may ask for (`maxLength`, `maxItems`):
/// llama.cpp expands a bounded repetition into one nested rule per
/// optional copy, so a huge bound makes a huge grammar.
pub const MAX_REPETITION: u64 = 1024;

/// Integral digits of a number without bounds (as llama.cpp's schema
/// converter): keeps a model from writing digits until `max_tokens`.
const MAX_INTEGRAL_DIGITS: u32 = 16;

/// Nesting of JSON without a schema (`json_object`, `{}`): a small model
/// asked for any object can nest `{"a": {"a": ...` until its budget runs
/// out; below this depth only scalars are written.
pub const MAX_FREE_DEPTH: usize = 8;

/// Largest absolute bound of an integer range the grammar spells out (15
/// digits, within the digit cap above).
const MAX_RANGE_BOUND: i64 = 999_999_999_999_999;

/// Keywords that describe a value without constraining it.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "example",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "discriminator",
    "$defs",
    "definitions",
    "strict",
    "contentMediaType",
    "contentEncoding",
];

/// A schema the grammar cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at `{pointer}`")]
pub struct SchemaError {
    /// JSON pointer into the schema (`""` is the root).
    pub pointer: String,
    pub what: String,
}

impl SchemaError {
    fn new(pointer: &str, what: impl Into<String>) -> SchemaError {
        SchemaError {
            pointer: if pointer.is_empty() {
                "/".into()
            } else {
                pointer.into()
            },
            what: what.into(),
        }
    }
}

/// Rules shared by every JSON grammar. `space` allows at most one space, so
/// a model cannot fill its budget with whitespace.
const PRIMITIVES: &[(&str, &str)] = &[
    ("space", "\" \"?"),
    ("boolean", "(\"true\" | \"false\") space"),
    ("null", "\"null\" space"),
    (
        "char",
        r#"[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})"#,
    ),
    ("string", "\"\\\"\" char* \"\\\"\" space"),
    ("integral-part", "[0] | [1-9] [0-9]{0,15}"),
    ("decimal-part", "[0-9]{1,16}"),
    (
        "number",
        "(\"-\"? integral-part) (\".\" decimal-part)? ([eE] [-+]? integral-part)? space",
    ),
    ("integer", "(\"-\"? integral-part) space"),
];

/// Builds one GBNF document from rules; names are unique, bodies shared.
#[derive(Debug, Default)]
pub struct Grammar {
    /// Rule name to body, in the order added.
    rules: Vec<(String, String)>,
    by_name: HashMap<String, usize>,
    by_body: HashMap<String, String>,
}

impl Grammar {
    pub fn new() -> Grammar {
        Grammar::default()
    }

    /// The rule `name` of the shared JSON primitives (and what it needs).
    /// `value`, `object` and `array` are any JSON, nested at most
    /// [`MAX_FREE_DEPTH`] deep.
    pub fn primitive(&mut self, name: &str) -> String {
        if matches!(name, "value" | "object" | "array") {
            self.free_json();
            return name.to_string();
        }
        let deps: &[&str] = match name {
            "boolean" | "null" | "space" => &["space"],
            "char" => &[],
            "string" => &["space", "char"],
            "number" | "integer" => &["space", "integral-part", "decimal-part"],
            _ => &[],
        };
        for d in deps.iter().chain(std::iter::once(&name)) {
            if !self.by_name.contains_key(*d) {
                let body = PRIMITIVES
                    .iter()
                    .find(|(n, _)| n == d)
                    .map(|(_, b)| *b)
                    .expect("known primitive");
                self.insert(d, body.to_string());
            }
        }
        name.to_string()
    }

    /// `value`, `object`, `array` and their deeper levels.
    fn free_json(&mut self) {
        if self.by_name.contains_key("value") {
            return;
        }
        for p in ["string", "number", "boolean", "null"] {
            self.primitive(p);
        }
        let level = |kind: &str, d: usize| {
            if d == 0 {
                kind.to_string()
            } else {
                format!("{kind}-{d}")
            }
        };
        for d in 0..=MAX_FREE_DEPTH {
            let (v, o, a) = (level("value", d), level("object", d), level("array", d));
            if d == MAX_FREE_DEPTH {
                self.insert(&v, "string | number | boolean | null".into());
                continue;
            }
            let inner = level("value", d + 1);
            self.insert(&v, format!("{o} | {a} | string | number | boolean | null"));
            self.insert(
                &o,
                format!(
                    "\"{{\" space ( string \":\" space {inner} (\",\" space string \":\" space {inner})* )? \"}}\" space"
                ),
            );
            self.insert(
                &a,
                format!("\"[\" space ( {inner} (\",\" space {inner})* )? \"]\" space"),
            );
        }
    }

    fn insert(&mut self, name: &str, body: String) {
        self.by_name.insert(name.to_string(), self.rules.len());
        self.rules.push((name.to_string(), body));
    }

    /// Adds a rule with a name derived from `hint`; an identical body
    /// already present is reused.
    pub fn rule(&mut self, hint: &str, body: String) -> String {
        if let Some(name) = self.by_body.get(&body) {
            return name.clone();
        }
        let name = self.fresh(hint);
        self.by_body.insert(body.clone(), name.clone());
        self.insert(&name, body);
        name
    }

    /// Reserves a name to be defined later (recursive definitions).
    fn reserve(&mut self, hint: &str) -> String {
        let name = self.fresh(hint);
        self.insert(&name, String::new());
        name
    }

    fn define(&mut self, name: &str, body: String) {
        let i = self.by_name[name];
        self.rules[i].1 = body;
    }

    /// Sets the rule `name` exactly (the `root`).
    pub fn set(&mut self, name: &str, body: String) {
        match self.by_name.get(name) {
            Some(&i) => self.rules[i].1 = body,
            None => self.insert(name, body),
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        let mut base: String = hint
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        base = base.trim_matches('-').to_ascii_lowercase();
        if base.is_empty() {
            base = "r".into();
        }
        // Keep names short enough to read in a log.
        base.truncate(48);
        if reserved(&base) {
            base.push_str("-x");
        }
        let mut name = base.clone();
        let mut i = 1;
        while self.by_name.contains_key(&name) || reserved(&name) {
            i += 1;
            name = format!("{base}-{i}");
        }
        name
    }

    /// The GBNF text; `root` must have been set.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // `root` first, for a reader.
        let mut order: Vec<&(String, String)> = self.rules.iter().collect();
        order.sort_by_key(|(n, _)| n != "root");
        for (name, body) in order {
            let _ = writeln!(out, "{name} ::= {body}");
        }
        out
    }
}

/// Names of the shared rules, never given to a schema's rules.
fn reserved(name: &str) -> bool {
    if PRIMITIVES.iter().any(|(n, _)| *n == name) {
        return true;
    }
    ["value", "object", "array"].iter().any(|k| {
        name == *k
            || name
                .strip_prefix(k)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|d| d.parse::<usize>().is_ok())
    })
}

/// `text` as a GBNF string literal (quotes included).
pub fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON value written compactly, as a GBNF literal followed by `space`.
fn json_literal(g: &mut Grammar, v: &Value) -> String {
    g.primitive("space");
    format!("{} space", literal(&v.to_string()))
}

/// Grammar for any JSON object (`response_format: json_object`).
pub fn json_object_grammar() -> String {
    let mut g = Grammar::new();
    let object = g.primitive("object");
    g.set("root", object);
    g.render()
}

/// A whole grammar whose `root` is a JSON value valid against `schema`.
pub fn schema_grammar(schema: &Value) -> Result<String, SchemaError> {
    let mut g = Grammar::new();
    let root = SchemaCompiler::new(schema).value(&mut g, schema, "", "root-value")?;
    g.set("root", root);
    Ok(g.render())
}

/// Compiles schemas into rules of a [`Grammar`]; `$ref`s to `$defs` or
/// `definitions` become named (possibly recursive) rules.
pub struct SchemaCompiler<'a> {
    root: &'a Value,
    /// `$ref` target to rule name, for refs already compiled or compiling.
    refs: BTreeMap<String, String>,
}

impl<'a> SchemaCompiler<'a> {
    pub fn new(root: &'a Value) -> SchemaCompiler<'a> {
        SchemaCompiler {
            root,
            refs: BTreeMap::new(),
        }
    }

    /// A rule expression (a rule name) for values valid against `schema`,
    /// which sits at `pointer` of the document.
    pub fn value(
        &mut self,
        g: &mut Grammar,
        schema: &Value,
        pointer: &str,
        hint: &str,
    ) -> Result<String, SchemaError> {
        let obj = match schema {
            Value::Bool(true) => return Ok(g.primitive("value")),
            Value::Bool(false) => {
                return Err(SchemaError::new(
                    pointer,
                    "the schema `false` accepts no value",
                ))
            }
            Value::Object(o) => o,
            other => {
                return Err(SchemaError::new(
                    pointer,
                    format!("a schema must be an object or a boolean, not `{other}`"),
                ))
            }
        };
        check_keywords(obj, pointer)?;

        if let Some(r) = obj.get("$ref") {
            if obj
                .keys()
                .any(|k| !ANNOTATIONS.contains(&k.as_str()) && k != "$ref")
            {
                return Err(SchemaError::new(
                    pointer,
                    "`$ref` next to other constraining keywords is not supported",
                ));
            }
            return self.reference(g, r, pointer);
        }
        if let Some(c) = obj.get("const") {
            let body = json_literal(g, c);
            return Ok(g.rule(&format!("{hint}-const"), body));
        }
        if let Some(e) = obj.get("enum") {
            let Value::Array(values) = e else {
                return Err(SchemaError::new(
                    &format!("{pointer}/enum"),
                    "`enum` must be an array",
                ));
            };
            if values.is_empty() {
                return Err(SchemaError::new(
                    &format!("{pointer}/enum"),
                    "an empty `enum` accepts no value",
                ));
            }
            let alts: Vec<String> = values
                .iter()
                .map(|v| format!("({})", json_literal(g, v)))
                .collect();
            return Ok(g.rule(&format!("{hint}-enum"), alts.join(" | ")));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(list) = obj.get(key) {
                return self.alternatives(g, obj, key, list, pointer, hint);
            }
        }
        if let Some(list) = obj.get("allOf") {
            match list {
                Value::Array(items) if items.len() == 1 => {
                    let rest = without(obj, "allOf");
                    if has_constraints(&rest) {
                        return Err(SchemaError::new(
                            pointer,
                            "`allOf` next to other constraining keywords is not supported",
                        ));
                    }
                    return self.value(g, &items[0], &format!("{pointer}/allOf/0"), hint);
                }
                _ => {
                    return Err(SchemaError::new(
                        &format!("{pointer}/allOf"),
                        "`allOf` with more than one schema is not supported",
                    ))
                }
            }
        }

        let nullable = obj.get("nullable") == Some(&Value::Bool(true));
        let types: Vec<&str> = match obj.get("type") {
            None => inferred_types(obj),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => {
                let mut out = Vec::new();
                for (i, t) in ts.iter().enumerate() {
                    match t.as_str() {
                        Some(t) => out.push(t),
                        None => {
                            return Err(SchemaError::new(
                                &format!("{pointer}/type/{i}"),
                                "`type` entries must be strings",
                            ))
                        }
                    }
                }
                out
            }
            Some(other) => {
                return Err(SchemaError::new(
                    &format!("{pointer}/type"),
                    format!("`type` must be a string or an array, not `{other}`"),
                ))
            }
        };
        let mut alts = Vec::new();
        for t in &types {
            alts.push(self.typed(g, obj, t, pointer, hint)?);
        }
        if nullable && !types.contains(&"null") {
            alts.push(g.primitive("null"));
        }
        if alts.is_empty() {
            return Ok(g.primitive("value"));
        }
        if alts.len() == 1 {
            return Ok(alts.pop().unwrap());
        }
        Ok(g.rule(hint, alts.join(" | ")))
    }

    fn alternatives(
        &mut self,
        g: &mut Grammar,
        obj: &Map<String, Value>,
        key: &str,
        list: &Value,
        pointer: &str,
        hint: &str,
    ) -> Result<String, SchemaError> {
        let Value::Array(items) = list else {
            return Err(SchemaError::new(
                &format!("{pointer}/{key}"),
                format!("`{key}` must be an array"),
            ));
        };
        if items.is_empty() {
            return Err(SchemaError::new(
                &format!("{pointer}/{key}"),
                format!("an empty `{key}` accepts no value"),
            ));
        }
        if has_constraints(&without(obj, key)) {
            return Err(SchemaError::new(
                pointer,
                format!("`{key}` next to other constraining keywords is not supported"),
            ));
        }
        let mut alts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            alts.push(self.value(
                g,
                item,
                &format!("{pointer}/{key}/{i}"),
                &format!("{hint}-{i}"),
            )?);
        }
        Ok(g.rule(hint, alts.join(" | ")))
    }

    fn reference(
        &mut self,
        g: &mut Grammar,
        r: &Value,
        pointer: &str,
    ) -> Result<String, SchemaError> {
        let Some(target) = r.as_str() else {
            return Err(SchemaError::new(
                &format!("{pointer}/$ref"),
                "`$ref` must be a string",
            ));
        };
        if let Some(name) = self.refs.get(target) {
            return Ok(name.clone());
        }
        let Some(path) = target.strip_prefix('#') else {
            return Err(SchemaError::new(
                &format!("{pointer}/$ref"),
                format!("`$ref` `{target}` is not a reference inside this schema (`#/...`)"),
            ));
        };
        let root = self.root;
        let Some(def) = root.pointer(path) else {
            return Err(SchemaError::new(
                &format!("{pointer}/$ref"),
                format!("`$ref` `{target}` points to nothing"),
            ));
        };
        let hint = path.rsplit('/').next().unwrap_or("ref").to_string();
        let name = g.reserve(&hint);
        self.refs.insert(target.to_string(), name.clone());
        let body = self.value(g, def, path, &format!("{hint}-x"))?;
        g.define(&name, body);
        Ok(name)
    }

    fn typed(
        &mut self,
        g: &mut Grammar,
        obj: &Map<String, Value>,
        t: &str,
        pointer: &str,
        hint: &str,
    ) -> Result<String, SchemaError> {
        match t {
            "null" => Ok(g.primitive("null")),
            "boolean" => Ok(g.primitive("boolean")),
            "string" => self.string(g, obj, pointer, hint),
            "integer" => integer(g, obj, pointer, hint),
            "number" => number(g, obj, pointer, hint),
            "array" => self.array(g, obj, pointer, hint),
            "object" => self.object(g, obj, pointer, hint),
            other => Err(SchemaError::new(
                &format!("{pointer}/type"),
                format!("unknown type `{other}`"),
            )),
        }
    }

    fn string(
        &mut self,
        g: &mut Grammar,
        obj: &Map<String, Value>,
        pointer: &str,
        hint: &str,
    ) -> Result<String, SchemaError> {
        let min = count(obj, "minLength", pointer)?;
        let max = count(obj, "maxLength", pointer)?;
        if let Some(format) = obj.get("format") {
            if min.is_some() || max.is_some() {
                return Err(SchemaError::new(
                    pointer,
                    "`minLength`/`maxLength` next to `format` is not supported",
                ));
            }
            let Some(format) = format.as_str() else {
                return Err(SchemaError::new(
                    &format!("{pointer}/format"),
                    "`format` must be a string",
                ));
            };
            return string_format(g, format, pointer);
        }
        if min.is_none() && max.is_none() {
            return Ok(g.primitive("string"));
        }
        let min = min.unwrap_or(0);
        if let Some(max) = max {
            if max < min {
                return Err(SchemaError::new(
                    pointer,
                    format!("`maxLength` `{max}` is below `minLength` `{min}`"),
                ));
            }
        }
        g.primitive("string");
        let rep = repetition(min, max);
        Ok(g.rule(
            &format!("{hint}-string"),
            format!("\"\\\"\" char{rep} \"\\\"\" space"),
        ))
    }

    fn array(
        &mut self,
        g: &mut Grammar,
        obj: &Map<String, Value>,
        pointer: &str,
        hint: &str,
    ) -> Result<String, SchemaError> {
        if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
            return Err(SchemaError::new(
                &format!("{pointer}/uniqueItems"),
                "`uniqueItems` is not supported",
            ));
        }
        g.primitive("space");
        let min = count(obj, "minItems", pointer)?.unwrap_or(0);
        let max = count(obj, "maxItems", pointer)?;
        if let Some(max) = max {
            if max < min {
                return Err(SchemaError::new(
                    pointer,
                    format!("`maxItems` `{max}` is below `minItems` `{min}`"),
                ));
            }
        }
        if let Some(prefix) = obj.get("prefixItems") {
            let Value::Array(prefix) = prefix else {
                return Err(SchemaError::new(
                    &format!("{pointer}/prefixItems"),
                    "`prefixItems` must be an array",
                ));
            };
            // A tuple: exactly these items (`items: false`, pydantic's
            // tuples), nothing else supported.
            if obj.get("items") != Some(&Value::Bool(false)) && obj.get("items").is_some() {
                return Err(SchemaError::new(
                    &format!("{pointer}/items"),
                    "`items` next to `prefixItems` is not supported (only `items: false`)",
                ));
            }
            let n = prefix.len() as u64;
            if min > n || max.is_some_and(|m| m < n) {
                return Err(SchemaError::new(
                    pointer,
                    "`minItems`/`maxItems` other than the tuple's length are not supported",
                ));
            }
            let mut parts = Vec::new();
            for (i, item) in prefix.iter().enumerate() {
                parts.push(self.value(
                    g,
                    item,
                    &format!("{pointer}/prefixItems/{i}"),
                    &format!("{hint}-{i}"),
                )?);
            }
            let body = if parts.is_empty() {
                "\"[\" space \"]\" space".to_string()
            } else {
                format!("\"[\" space {} \"]\" space", parts.join(" \",\" space "))
            };
            return Ok(g.rule(&format!("{hint}-tuple"), body));
        }
        let item = match obj.get("items") {
            None => g.primitive("value"),
            Some(items) => self.value(
                g,
                items,
                &format!("{pointer}/items"),
                &format!("{hint}-item"),
            )?,
        };
        let body = match (min, max) {
            (0, Some(0)) => "\"[\" space \"]\" space".to_string(),
            (0, None) => format!("\"[\" space ( {item} (\",\" space {item})* )? \"]\" space"),
            (0, Some(max)) => format!(
                "\"[\" space ( {item} (\",\" space {item}){} )? \"]\" space",
                repetition(0, Some(max - 1))
            ),
            (min, max) => format!(
                "\"[\" space {item} (\",\" space {item}){} \"]\" space",
                repetition(min - 1, max.map(|m| m - 1))
            ),
        };
        Ok(g.rule(&format!("{hint}-array"), body))
    }

    fn object(
        &mut self,
        g: &mut Grammar,
        obj: &Map<String, Value>,
        pointer: &str,
        hint: &str,
    ) -> Result<String, SchemaError> {
        g.primitive("space");
        let props = match obj.get("properties") {
            None => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => {
                return Err(SchemaError::new(
                    &format!("{pointer}/properties"),
                    "`properties` must be an object",
                ))
            }
        };
        let required: Vec<String> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => {
                let mut out = Vec::new();
                for (i, v) in r.iter().enumerate() {
                    match v.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => {
                            return Err(SchemaError::new(
                                &format!("{pointer}/required/{i}"),
                                "`required` entries must be strings",
                            ))
                        }
                    }
                }
                out
            }
            Some(_) => {
                return Err(SchemaError::new(
                    &format!("{pointer}/required"),
                    "`required` must be an array",
                ))
            }
        };
        if obj.contains_key("properties") {
            if let Some(r) = required.iter().find(|r| !props.contains_key(*r)) {
                return Err(SchemaError::new(
                    &format!("{pointer}/required"),
                    format!("required property `{r}` is not among the `properties`"),
                ));
            }
        }
        // A map (`Dict[str, X]`): no `properties`, values of one schema.
        // (`"properties": {}` without `additionalProperties` is written as
        // `{}`: extra properties are never written, as below.)
        let named = obj.contains_key("properties");
        if !named
            || (props.is_empty()
                && matches!(obj.get("additionalProperties"), Some(Value::Object(_))))
        {
            let value = match obj.get("additionalProperties") {
                None | Some(Value::Bool(true)) => g.primitive("value"),
                Some(Value::Bool(false)) => {
                    return Ok(g.rule(&format!("{hint}-empty"), "\"{\" space \"}\" space".into()))
                }
                Some(schema) => self.value(
                    g,
                    schema,
                    &format!("{pointer}/additionalProperties"),
                    &format!("{hint}-value"),
                )?,
            };
            if !required.is_empty() {
                return Err(SchemaError::new(
                    &format!("{pointer}/required"),
                    "`required` without `properties` is not supported",
                ));
            }
            g.primitive("string");
            let kv = g.rule(&format!("{hint}-kv"), format!("string \":\" space {value}"));
            return Ok(g.rule(
                hint,
                format!("\"{{\" space ( {kv} (\",\" space {kv})* )? \"}}\" space"),
            ));
        }
        if let Some(extra) = obj.get("additionalProperties") {
            if !matches!(extra, Value::Bool(_)) && !props.is_empty() {
                return Err(SchemaError::new(
                    &format!("{pointer}/additionalProperties"),
                    "`additionalProperties` as a schema next to `properties` is not supported",
                ));
            }
        }
        // Extra properties are never written (the output stays valid when
        // the schema allows them).
        let mut req = Vec::new();
        let mut opt = Vec::new();
        for (name, schema) in &props {
            let key = literal(&Value::String(name.clone()).to_string());
            let value = self.value(
                g,
                schema,
                &format!("{pointer}/properties/{}", escape_pointer(name)),
                &format!("{hint}-{name}"),
            )?;
            let kv = g.rule(
                &format!("{hint}-{name}-kv"),
                format!("{key} space \":\" space {value}"),
            );
            if required.contains(name) {
                req.push(kv);
            } else {
                opt.push(kv);
            }
        }
        // Optional properties in order, any subset: rest_i ::= kv_i ("," rest_{i+1})? | rest_{i+1}.
        let mut rest: Option<String> = None;
        for (i, kv) in opt.iter().enumerate().rev() {
            let body = match &rest {
                None => kv.clone(),
                Some(next) => format!("{kv} (\",\" space {next})? | {next}"),
            };
            rest = Some(g.rule(&format!("{hint}-rest-{i}"), body));
        }
        let body = match (req.is_empty(), rest) {
            (true, None) => "\"{\" space \"}\" space".to_string(),
            (true, Some(rest)) => format!("\"{{\" space {rest}? \"}}\" space"),
            (false, rest) => {
                let mut b = format!("\"{{\" space {}", req.join(" \",\" space "));
                if let Some(rest) = rest {
                    let _ = write!(b, " (\",\" space {rest})?");
                }
                b.push_str(" \"}\" space");
                b
            }
        };
        Ok(g.rule(hint, body))
    }
}

/// Keywords skulk knows; anything else is refused (an unknown keyword might
/// constrain the value).
fn check_keywords(obj: &Map<String, Value>, pointer: &str) -> Result<(), SchemaError> {
    const KNOWN: &[&str] = &[
        "type",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "nullable",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
    ];
    for key in obj.keys() {
        if !KNOWN.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
            return Err(SchemaError::new(
                &format!("{pointer}/{}", escape_pointer(key)),
                format!("the keyword `{key}` is not supported"),
            ));
        }
    }
    Ok(())
}

/// Types implied by the keywords when `type` is absent (`{"properties":
/// ...}` is an object); none means any value.
fn inferred_types(obj: &Map<String, Value>) -> Vec<&'static str> {
    let has = |k: &str| obj.contains_key(k);
    if has("properties") || has("additionalProperties") || has("required") {
        vec!["object"]
    } else if has("items") || has("prefixItems") || has("minItems") || has("maxItems") {
        vec!["array"]
    } else if has("minLength") || has("maxLength") || has("format") {
        vec!["string"]
    } else if has("minimum") || has("maximum") || has("exclusiveMinimum") || has("exclusiveMaximum")
    {
        vec!["number"]
    } else {
        vec![]
    }
}

fn without(obj: &Map<String, Value>, key: &str) -> Map<String, Value> {
    let mut o = obj.clone();
    o.remove(key);
    o
}

fn has_constraints(obj: &Map<String, Value>) -> bool {
    obj.keys().any(|k| !ANNOTATIONS.contains(&k.as_str()))
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A non-negative count keyword, within [`MAX_REPETITION`].
fn count(obj: &Map<String, Value>, key: &str, pointer: &str) -> Result<Option<u64>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_REPETITION => Ok(Some(n)),
            Some(n) => Err(SchemaError::new(
                &format!("{pointer}/{key}"),
                format!("`{key}` `{n}` is above the supported {MAX_REPETITION}"),
            )),
            None => Err(SchemaError::new(
                &format!("{pointer}/{key}"),
                format!("`{key}` must be a non-negative integer, not `{v}`"),
            )),
        },
    }
}

/// `{min,max}` as GBNF (`*`, `+`, `?` where they say the same).
fn repetition(min: u64, max: Option<u64>) -> String {
    match (min, max) {
        (0, None) => "*".into(),
        (1, None) => "+".into(),
        (0, Some(1)) => "?".into(),
        (m, None) => format!("{{{m},}}"),
        (m, Some(n)) if m == n => format!("{{{m}}}"),
        (m, Some(n)) => format!("{{{m},{n}}}"),
    }
}

fn string_format(g: &mut Grammar, format: &str, pointer: &str) -> Result<String, SchemaError> {
    g.primitive("space");
    // Days stop at 28 so that every date the grammar writes exists.
    const DATE: &str =
        r#"[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | "1" [0-9] | "2" [0-8])"#;
    const TIME: &str = r#"([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])"#;
    let (name, body) = match format {
        "date" => ("date", format!("\"\\\"\" {DATE} \"\\\"\" space")),
        "time" => ("time", format!("\"\\\"\" {TIME} \"\\\"\" space")),
        "date-time" => (
            "date-time",
            format!("\"\\\"\" {DATE} \"T\" {TIME} \"\\\"\" space"),
        ),
        "uuid" => (
            "uuid",
            r#""\"" [0-9a-f]{8} "-" [0-9a-f]{4} "-" [1-5] [0-9a-f]{3} "-" [89ab] [0-9a-f]{3} "-" [0-9a-f]{12} "\"" space"#
                .to_string(),
        ),
        other => {
            return Err(SchemaError::new(
                &format!("{pointer}/format"),
                format!("the string format `{other}` is not supported (supported: `date`, `time`, `date-time`, `uuid`)"),
            ))
        }
    };
    Ok(g.rule(&format!("{name}-string"), body))
}

fn bound(obj: &Map<String, Value>, key: &str, pointer: &str) -> Result<Option<f64>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            SchemaError::new(
                &format!("{pointer}/{key}"),
                format!("`{key}` must be a number, not `{v}`"),
            )
        }),
    }
}

fn number(
    g: &mut Grammar,
    obj: &Map<String, Value>,
    pointer: &str,
    hint: &str,
) -> Result<String, SchemaError> {
    let min = bound(obj, "minimum", pointer)?;
    let xmin = bound(obj, "exclusiveMinimum", pointer)?;
    for key in ["maximum", "exclusiveMaximum"] {
        if obj.contains_key(key) {
            return Err(SchemaError::new(
                &format!("{pointer}/{key}"),
                format!("`{key}` on a `number` is not supported (on an `integer` it is)"),
            ));
        }
    }
    match (min, xmin) {
        (None, None) => Ok(g.primitive("number")),
        (Some(0.0), None) => {
            g.primitive("number");
            Ok(g.rule(
                &format!("{hint}-nonneg"),
                "integral-part (\".\" decimal-part)? ([eE] [-+]? integral-part)? space".into(),
            ))
        }
        _ => Err(SchemaError::new(
            pointer,
            "`minimum`/`exclusiveMinimum` on a `number` is supported only as `minimum: 0`",
        )),
    }
}

fn integer(
    g: &mut Grammar,
    obj: &Map<String, Value>,
    pointer: &str,
    hint: &str,
) -> Result<String, SchemaError> {
    // Lower bounds round up, upper bounds down; exclusive bounds step past.
    let int_bound = |key: &str| -> Result<Option<i64>, SchemaError> {
        let Some(v) = bound(obj, key, pointer)? else {
            return Ok(None);
        };
        let n = match key {
            "minimum" => v.ceil(),
            "exclusiveMinimum" => v.floor() + 1.0,
            "maximum" => v.floor(),
            _ => v.ceil() - 1.0,
        };
        if n.abs() > MAX_RANGE_BOUND as f64 {
            return Err(SchemaError::new(
                &format!("{pointer}/{key}"),
                format!("`{key}` `{v}` is beyond the supported ±{MAX_RANGE_BOUND}"),
            ));
        }
        Ok(Some(n as i64))
    };
    let lo = max_opt(int_bound("minimum")?, int_bound("exclusiveMinimum")?);
    let hi = min_opt(int_bound("maximum")?, int_bound("exclusiveMaximum")?);
    if lo.is_none() && hi.is_none() {
        return Ok(g.primitive("integer"));
    }
    if let (Some(lo), Some(hi)) = (lo, hi) {
        if lo > hi {
            return Err(SchemaError::new(
                pointer,
                format!("no integer lies between the bounds `{lo}` and `{hi}`"),
            ));
        }
    }
    g.primitive("space");
    let body = format!("({}) space", int_range(lo, hi));
    Ok(g.rule(&format!("{hint}-int"), body))
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// GBNF alternatives for the integers in `[lo, hi]` (either unbounded),
/// written without leading zeros and `-0`.
pub fn int_range(lo: Option<i64>, hi: Option<i64>) -> String {
    let mut alts = Vec::new();
    // Negative part: "-" then the magnitudes.
    let neg_lo = lo.is_none_or(|l| l < 0);
    let neg_hi = hi.is_none_or(|h| h < 0);
    if neg_lo {
        // Magnitudes from max(1, -hi) to -lo (unbounded without lo).
        let mag_lo = hi.map_or(1, |h| if h < 0 { -h } else { 1 }).max(1);
        let mag_hi = lo.map(|l| -l);
        if mag_hi.is_none_or(|m| m >= mag_lo) {
            alts.push(format!(
                "\"-\" ({})",
                nonneg_range(mag_lo as u64, mag_hi.map(|m| m as u64))
            ));
        }
    }
    if !neg_hi || hi.is_none() {
        let from = lo.map_or(0, |l| l.max(0)) as u64;
        let to = hi.map(|h| h as u64);
        if to.is_none_or(|t| t >= from) {
            alts.push(nonneg_range(from, to));
        }
    }
    alts.join(" | ")
}

/// Digits of the non-negative integers in `[lo, hi]` (`hi` `None`: up to
/// [`MAX_INTEGRAL_DIGITS`] digits).
fn nonneg_range(lo: u64, hi: Option<u64>) -> String {
    let lo_len = digits(lo);
    let (hi, hi_len) = match hi {
        Some(h) => (h, digits(h)),
        None => (10u64.pow(MAX_INTEGRAL_DIGITS) - 1, MAX_INTEGRAL_DIGITS),
    };
    let mut alts = Vec::new();
    for len in lo_len..=hi_len {
        let start = if len == lo_len {
            lo
        } else {
            10u64.pow(len - 1)
        };
        let end = if len == hi_len {
            hi
        } else {
            10u64.pow(len) - 1
        };
        if start > end {
            continue;
        }
        alts.push(same_length(&start.to_string(), &end.to_string()));
    }
    alts.join(" | ")
}

fn digits(n: u64) -> u32 {
    n.checked_ilog10().map_or(1, |d| d + 1)
}

/// Alternatives for digit strings of one length between `lo` and `hi`.
fn same_length(lo: &str, hi: &str) -> String {
    debug_assert_eq!(lo.len(), hi.len());
    let (a, b) = (lo.as_bytes()[0], hi.as_bytes()[0]);
    if lo.len() == 1 {
        return class(a, b);
    }
    let (lo_rest, hi_rest) = (&lo[1..], &hi[1..]);
    let n = lo_rest.len();
    if a == b {
        return format!("\"{}\" ({})", a as char, same_length(lo_rest, hi_rest));
    }
    let all_low = lo_rest.bytes().all(|c| c == b'0');
    let all_high = hi_rest.bytes().all(|c| c == b'9');
    let mut alts = Vec::new();
    let first_full = if all_low { a } else { a + 1 };
    let last_full = if all_high { b } else { b - 1 };
    if !all_low {
        alts.push(format!(
            "\"{}\" ({})",
            a as char,
            same_length(lo_rest, &"9".repeat(n))
        ));
    }
    if first_full <= last_full {
        alts.push(format!("{} [0-9]{{{n}}}", class(first_full, last_full)));
    }
    if !all_high {
        alts.push(format!(
            "\"{}\" ({})",
            b as char,
            same_length(&"0".repeat(n), hi_rest)
        ));
    }
    alts.join(" | ")
}

fn class(a: u8, b: u8) -> String {
    if a == b {
        format!("\"{}\"", a as char)
    } else {
        format!("[{}-{}]", a as char, b as char)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_escape_quotes_backslashes_and_controls() {
        assert_eq!(literal("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\x01""#);
        assert_eq!(literal("é→"), "\"é→\"");
    }

    #[test]
    fn a_flat_object_puts_required_properties_first() {
        let g = schema_grammar(&json!({
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}},
            "required": ["b"],
            "additionalProperties": false
        }))
        .unwrap();
        assert!(g.starts_with("root ::= root-value\n"), "{g}");
        assert!(
            g.contains(r#"root-value ::= "{" space root-value-b-kv ("," space root-value-rest-0)? "}" space"#),
            "{g}"
        );
        assert!(
            g.contains("root-value-rest-0 ::= root-value-a-kv (\",\" space root-value-rest-1)? | root-value-rest-1"),
            "{g}"
        );
    }

    #[test]
    fn unsupported_keywords_name_their_pointer() {
        let e = schema_grammar(&json!({
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}
        }))
        .unwrap_err();
        assert_eq!(e.pointer, "/properties/code/pattern");
        assert!(e.what.contains("`pattern`"), "{e}");
        let e = schema_grammar(&json!({"type": "string", "format": "email"})).unwrap_err();
        assert_eq!(e.pointer, "/format");
        let e = schema_grammar(&json!({"type": "array", "maxItems": 100000})).unwrap_err();
        assert_eq!(e.pointer, "/maxItems");
        let e = schema_grammar(&json!({"$ref": "#/$defs/Missing"})).unwrap_err();
        assert!(e.what.contains("points to nothing"), "{e}");
        let e = schema_grammar(&json!({"type": "number", "maximum": 1})).unwrap_err();
        assert_eq!(e.pointer, "/maximum");
    }

    #[test]
    fn refs_become_named_rules_and_may_recurse() {
        let g = schema_grammar(&json!({
            "$defs": {"Node": {"type": "object", "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}
            }, "required": ["name", "children"]}},
            "$ref": "#/$defs/Node"
        }))
        .unwrap();
        assert!(g.contains("root ::= node\n"), "{g}");
        assert!(g.contains("node ::= node-x\n"), "{g}");
        assert!(
            g.contains("node-x-children-array ::= \"[\" space ( node (\",\" space node)* )?"),
            "{g}"
        );
    }

    #[test]
    fn schema_rules_never_take_the_shared_names() {
        let g = schema_grammar(&json!({"$defs": {"object": {"type": "object"}, "value-2": {"type": "integer"}},
            "type": "object", "properties": {"a": {"$ref": "#/$defs/object"}, "b": {"$ref": "#/$defs/value-2"}}})).unwrap();
        let names: Vec<&str> = g
            .lines()
            .map(|l| l.split(" ::= ").next().unwrap())
            .collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{g}");
        assert!(
            names.contains(&"object-x")
                || names
                    .iter()
                    .any(|n| n.starts_with("object-") && n.parse::<usize>().is_err()),
            "{g}"
        );
    }

    #[test]
    fn objects_without_named_properties() {
        // No `properties`: any object.
        let g = schema_grammar(&json!({"type": "object"})).unwrap();
        assert!(
            g.contains("root-value-kv ::= string \":\" space value"),
            "{g}"
        );
        // Empty `properties`: extra properties are never written.
        let g = schema_grammar(&json!({"type": "object", "properties": {}})).unwrap();
        assert!(g.contains("root-value ::= \"{\" space \"}\" space"), "{g}");
        let e = schema_grammar(&json!({"type": "object", "properties": {}, "required": ["a"]}))
            .unwrap_err();
        assert!(e.what.contains("`a`"), "{e}");
        // A map of integers.
        let g =
            schema_grammar(&json!({"type": "object", "additionalProperties": {"type": "integer"}}))
                .unwrap();
        assert!(
            g.contains("root-value-kv ::= string \":\" space integer"),
            "{g}"
        );
    }

    #[test]
    fn enums_consts_and_nullable_types() {
        let g = schema_grammar(&json!({"enum": ["red", 1, null]})).unwrap();
        assert!(
            g.contains(r#"root-value-enum ::= ("\"red\"" space) | ("1" space) | ("null" space)"#),
            "{g}"
        );
        let g = schema_grammar(&json!({"type": ["string", "null"]})).unwrap();
        assert!(g.contains("root-value ::= string | null"), "{g}");
        let g = schema_grammar(&json!({"anyOf": [{"type": "integer"}, {"type": "null"}]})).unwrap();
        assert!(g.contains("root-value ::= integer | null"), "{g}");
    }

    /// Checks `int_range` by enumerating: every integer in a window is
    /// accepted exactly when it lies in the range.
    #[test]
    fn integer_ranges_accept_exactly_their_members() {
        for (lo, hi) in [
            (Some(0), Some(9)),
            (Some(1), Some(100)),
            (Some(7), Some(1234)),
            (Some(-15), Some(42)),
            (Some(-300), Some(-20)),
            (Some(10), None),
            (None, Some(-5)),
            (Some(0), None),
            (Some(99), Some(101)),
            (Some(120), Some(129)),
        ] {
            let re = gbnf_alternatives_to_regex(&int_range(lo, hi));
            let re = regex_lite(&re);
            for n in -1500i64..=1500 {
                let want = lo.is_none_or(|l| n >= l) && hi.is_none_or(|h| n <= h);
                assert_eq!(
                    re(&n.to_string()),
                    want,
                    "{n} in {lo:?}..={hi:?}: {}",
                    int_range(lo, hi)
                );
            }
        }
    }

    /// The range grammars use only quoted digits, classes, `[0-9]{n}`,
    /// groups and `|`: translate to a regex for the test above.
    fn gbnf_alternatives_to_regex(g: &str) -> String {
        let mut out = String::from("^(");
        let mut chars = g.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    for d in chars.by_ref() {
                        if d == '"' {
                            break;
                        }
                        if d == '-' {
                            out.push_str("\\-");
                        } else {
                            out.push(d);
                        }
                    }
                }
                ' ' => {}
                c => out.push(c),
            }
        }
        out.push_str(")$");
        out
    }

    /// A tiny regex matcher built on the `regex` crate already in the tree
    /// (through `jsonschema`).
    fn regex_lite(re: &str) -> impl Fn(&str) -> bool {
        let re = regex::Regex::new(re).unwrap();
        move |s| re.is_match(s)
    }

    #[test]
    fn json_object_grammar_is_an_object_root() {
        let g = json_object_grammar();
        assert!(g.starts_with("root ::= object\n"), "{g}");
        assert!(g.contains("value ::= object | array | string | number | boolean | null"));
        assert!(
            g.contains("object-7 ::= \"{\" space ( string \":\" space value-8"),
            "{g}"
        );
        assert!(
            g.contains("value-8 ::= string | number | boolean | null"),
            "{g}"
        );
    }
}
