//! Loading card and inventory files: the only place those files are read.
//!
//! A file becomes a [`serde_json::Value`] in two steps: [`read_source`] reads
//! the bytes (refusing empty, oversized and non-UTF-8 files) and [`parse`]
//! turns YAML, JSON or TOML text into a value. Parsing is bounded whatever
//! the input: nesting deeper than [`MAX_DEPTH`] and documents that expand to
//! more than [`MAX_VALUES`] values (a YAML alias bomb) are errors, never a
//! stack overflow, an exhausted memory or a panic. Duplicate keys are errors
//! in every format. Errors carry a line and column.
//!
//! Where a later check finds a problem at a JSON pointer, [`SourceMap`] maps
//! the pointer back to a line and column in the text. It is built only when a
//! file has problems, with a light event scan of the text.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Largest file read, in bytes. A model card is a few KiB and an inventory
/// of hundreds of hosts well under 1 MiB; 8 MiB leaves room for generous
/// comments while keeping a hostile file from tying up memory.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Deepest nesting of arrays and objects accepted. Cards nest 3 levels
/// (`placement` -> `compatibleBackends` -> item); 64 is far beyond any real
/// document and well below the parsers' own recursion limits (128).
pub const MAX_DEPTH: usize = 64;

/// Most values (scalars, arrays, objects) one document may expand to. An
/// 8 MiB JSON file of `[0,0,...]` holds about 4 million; a real card about 50.
/// The bound is what stops YAML aliases from expanding exponentially
/// (`a: &a [x, x]`, `b: &b [*a, *a]`, ...): serde_yaml_ng bounds the number of
/// alias jumps (100 per event) but not the size of what they expand to.
pub const MAX_VALUES: usize = 1_000_000;

/// File formats, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Toml,
}

impl Format {
    /// The format for a file name's extension (`.yaml`, `.yml`, `.json`,
    /// `.toml`, any case), or `None`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Toml => "TOML",
        }
    }
}

/// A position in a text: 1-based line and 1-based column in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A file's text, read and checked.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub format: Format,
    pub text: String,
}

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    /// Reading failed (missing, unreadable, a directory): a runtime failure,
    /// not a problem in the file.
    #[error("cannot read the file: {0}")]
    Io(#[source] std::io::Error),
    #[error("unsupported file extension; expected `.yaml`, `.yml`, `.json` or `.toml`")]
    UnsupportedExtension,
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("the file is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("invalid {format}: {message}", format = .format.name())]
    Syntax { format: Format, message: String },
}

/// A file that could not be loaded: `path:line:column: message`.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    pub path: PathBuf,
    pub location: Option<Location>,
    #[source]
    pub kind: LoadErrorKind,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(location) = self.location {
            write!(f, ":{location}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl LoadError {
    /// Whether the failure is in reading (exit 2) rather than in the file's
    /// content (exit 1).
    pub fn is_io(&self) -> bool {
        matches!(self.kind, LoadErrorKind::Io(_))
    }
}

/// A parse failure in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub format: Format,
    pub message: String,
    pub location: Option<Location>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "invalid {}: {}", self.format.name(), self.message)
    }
}

/// Reads a card or inventory file: at most [`MAX_FILE_BYTES`], UTF-8, not
/// empty, with a known extension. A leading byte-order mark is dropped.
pub fn read_source(path: &Path) -> Result<Source, LoadError> {
    let fail = |location, kind| LoadError {
        path: path.to_path_buf(),
        location,
        kind,
    };
    let format =
        Format::from_path(path).ok_or_else(|| fail(None, LoadErrorKind::UnsupportedExtension))?;
    let file = std::fs::File::open(path).map_err(|e| fail(None, LoadErrorKind::Io(e)))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(None, LoadErrorKind::Io(e)))?;
    let text = check_bytes(bytes).map_err(|(location, kind)| fail(location, kind))?;
    Ok(Source {
        path: path.to_path_buf(),
        format,
        text,
    })
}

/// The checks [`read_source`] applies to a file's bytes.
pub fn check_bytes(bytes: Vec<u8>) -> Result<String, (Option<Location>, LoadErrorKind)> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err((None, LoadErrorKind::TooLarge));
    }
    let mut text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let offset = err.utf8_error().valid_up_to();
            let valid = std::str::from_utf8(&err.as_bytes()[..offset]).unwrap_or_default();
            let location = LineIndex::new(valid).location(offset);
            return Err((Some(location), LoadErrorKind::NotUtf8 { offset }));
        }
    };
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    if text.trim().is_empty() {
        return Err((None, LoadErrorKind::Empty));
    }
    Ok(text)
}

/// Reads and parses a file.
pub fn load(path: &Path) -> Result<(Source, Value), LoadError> {
    let source = read_source(path)?;
    match parse(&source.text, source.format) {
        Ok(value) => Ok((source, value)),
        Err(err) => Err(LoadError {
            path: source.path,
            location: err.location,
            kind: LoadErrorKind::Syntax {
                format: err.format,
                message: err.message,
            },
        }),
    }
}

/// Parses YAML, JSON or TOML text into a JSON value, bounded by
/// [`MAX_DEPTH`] and [`MAX_VALUES`]. Pure: no I/O.
pub fn parse(text: &str, format: Format) -> Result<Value, ParseError> {
    let budget = Cell::new(MAX_VALUES);
    let seed = ValueSeed {
        budget: &budget,
        depth: 0,
    };
    let fail = |message: String, location: Option<Location>| ParseError {
        format,
        message: strip_positions(&message),
        location,
    };
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let result = seed
                .deserialize(&mut de)
                .and_then(|value| de.end().map(|()| value));
            result.map_err(|err| {
                let location = (err.line() > 0).then(|| Location {
                    line: err.line(),
                    column: err.column().max(1),
                });
                fail(err.to_string(), location)
            })
        }
        Format::Yaml => {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            seed.deserialize(de).map_err(|err| {
                let mut location = err.location().map(|l| Location {
                    line: l.line(),
                    column: l.column(),
                });
                let message = yaml_message(&err.to_string());
                if message.starts_with("duplicate key") {
                    // serde_yaml_ng marks the mapping; point at the key.
                    location = yaml_duplicate_key(text).or(location);
                }
                fail(message, location)
            })
        }
        Format::Toml => {
            let located = |err: toml::de::Error| {
                let location = err
                    .span()
                    .map(|span| LineIndex::new(text).location(span.start));
                fail(err.message().to_string(), location)
            };
            let de = toml::Deserializer::parse(text).map_err(located)?;
            seed.deserialize(de).map_err(located)
        }
    }
}

/// Messages raised while building the value, which serde_yaml_ng prefixes
/// with the path of the value (`a[0][0]...: `); the position already says
/// where.
const OWN_MESSAGES: [&str; 9] = [
    "duplicate key",
    "the document nests",
    "the document expands",
    "the number",
    "the integer",
    "tagged ",
    "keys must be",
    "a key is null",
    "binary values",
];

/// A serde_yaml_ng message in plain words.
fn yaml_message(message: &str) -> String {
    let message = strip_positions(message);
    for own in OWN_MESSAGES {
        if let Some(at) = message.find(own) {
            if at == 0 || message[..at].ends_with(": ") {
                return message[at..].to_string();
            }
        }
    }
    match message.as_str() {
        "repetition limit exceeded" => {
            "aliases (`*name`) expand the document too far (serde_yaml_ng's repetition limit)"
                .to_string()
        }
        "recursion limit exceeded" => format!("the document nests deeper than {MAX_DEPTH} levels"),
        _ => message,
    }
}

/// The position of the first key repeated within one YAML mapping.
fn yaml_duplicate_key(text: &str) -> Option<Location> {
    use std::collections::HashSet;
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::Marker;

    /// Per open collection: for a mapping, its keys so far and whether the
    /// next node is a key.
    enum Frame {
        Map { keys: HashSet<String>, at_key: bool },
        Seq,
    }
    struct Receiver {
        stack: Vec<Frame>,
        found: Option<Location>,
    }
    impl Receiver {
        /// A node starts; returns whether it is a mapping key.
        fn node(&mut self) -> bool {
            match self.stack.last_mut() {
                Some(Frame::Map { at_key, .. }) => {
                    let is_key = *at_key;
                    *at_key = !*at_key;
                    is_key
                }
                _ => false,
            }
        }
    }
    impl MarkedEventReceiver for Receiver {
        fn on_event(&mut self, event: Event, marker: Marker) {
            if self.found.is_some() {
                return;
            }
            match event {
                // `node()` runs for every scalar (it advances the key/value state).
                Event::Scalar(value, ..) if self.node() => {
                    if let Some(Frame::Map { keys, .. }) = self.stack.last_mut() {
                        if !keys.insert(value) {
                            self.found = Some(Location {
                                line: marker.line(),
                                column: marker.col() + 1,
                            });
                        }
                    }
                }
                Event::Alias(_) => {
                    self.node();
                }
                Event::MappingStart(..) => {
                    self.node();
                    self.stack.push(Frame::Map {
                        keys: HashSet::new(),
                        at_key: true,
                    });
                }
                Event::SequenceStart(..) => {
                    self.node();
                    self.stack.push(Frame::Seq);
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    self.stack.pop();
                }
                _ => {}
            }
        }
    }
    let mut receiver = Receiver {
        stack: Vec::new(),
        found: None,
    };
    let _ = Parser::new_from_str(text).load(&mut receiver, false);
    receiver.found
}

/// Removes ` at line N column M` and ` at position N` from a parser message
/// (the location is reported separately).
fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 4..];
        let skipped = skip_position(tail);
        if skipped == 0 {
            out.push_str(" at ");
        }
        rest = &tail[skipped..];
    }
    out.push_str(rest);
    out.trim().to_string()
}

/// Length of a leading `line N column M` or `position N` in `text`, or 0.
fn skip_position(text: &str) -> usize {
    fn number(text: &str) -> usize {
        text.bytes().take_while(u8::is_ascii_digit).count()
    }
    if let Some(rest) = text.strip_prefix("line ") {
        let n = number(rest);
        if n > 0 {
            if let Some(after) = rest[n..].strip_prefix(" column ") {
                let m = number(after);
                if m > 0 {
                    return "line ".len() + n + " column ".len() + m;
                }
            }
        }
    } else if let Some(rest) = text.strip_prefix("position ") {
        let n = number(rest);
        if n > 0 {
            return "position ".len() + n;
        }
    }
    0
}

/// Builds a [`Value`] from any self-describing deserializer, counting values
/// against a shared budget and nesting against [`MAX_DEPTH`].
struct ValueSeed<'b> {
    budget: &'b Cell<usize>,
    depth: usize,
}

impl ValueSeed<'_> {
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.budget.get().checked_sub(1) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "the document expands to more than {MAX_VALUES} values (YAML aliases?)"
            ))),
        }
    }

    fn nested<E: de::Error>(&self) -> Result<ValueSeed<'_>, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "the document nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(ValueSeed {
            budget: self.budget,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// The key serde uses to carry a TOML datetime through `deserialize_any`.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        if let Ok(v) = i64::try_from(v) {
            self.visit_i64(v)
        } else if let Ok(v) = u64::try_from(v) {
            self.visit_u64(v)
        } else {
            Err(E::custom(format!("the integer {v} is out of range")))
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("the integer {v} is out of range"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.spend()?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("the number `{v}` is not finite")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not supported"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed {
            budget: inner.budget,
            depth: inner.depth,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == TOML_DATETIME_KEY && out.is_empty() {
                // A TOML datetime: keep its text.
                let text: String = map.next_value()?;
                return Ok(Value::String(text));
            }
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(ValueSeed {
                budget: inner.budget,
                depth: inner.depth,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "tagged values (`!tag`) are not supported",
        ))
    }
}

/// Object keys: strings, or scalars written as keys (`1:` in YAML), which
/// become their text so the schema can name them.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom("a key is null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom("keys must be strings, not lists"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom("keys must be strings, not mappings"))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom("tagged keys (`!tag`) are not supported"))
    }
}

/// Byte offsets to lines and columns.
struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset) - 1;
        let start = self.starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Location {
            line: line + 1,
            column: column + 1,
        }
    }
}

/// Where a key and its value sit in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spot {
    /// The key, for an object member.
    pub key: Option<Location>,
    /// The start of the value.
    pub value: Location,
}

/// JSON pointers of a parsed document mapped to positions in its text.
///
/// Keys are passed through the same renaming the document's value went
/// through (snake_case to camelCase for cards), so pointers computed on the
/// normalised value find their original text.
#[derive(Debug, Default)]
pub struct SourceMap {
    spots: HashMap<String, Spot>,
}

impl SourceMap {
    /// Scans `text` (which parsed without errors) for the position of every
    /// value. An unexpected scan error leaves the map partial, never fails.
    pub fn build(text: &str, format: Format, rename_key: &dyn Fn(&str) -> String) -> Self {
        let mut map = SourceMap::default();
        match format {
            Format::Yaml => yaml_spots(text, rename_key, &mut map.spots),
            Format::Json => JsonScanner::new(text, rename_key, &mut map.spots).document(),
            Format::Toml => toml_spots(text, rename_key, &mut map.spots),
        }
        map
    }

    /// The spot of `pointer`, or of its nearest ancestor that has one.
    pub fn spot(&self, pointer: &str) -> Option<Spot> {
        let mut pointer = pointer;
        loop {
            if let Some(spot) = self.spots.get(pointer) {
                return Some(*spot);
            }
            if pointer.is_empty() {
                return None;
            }
            pointer = &pointer[..pointer.rfind('/').unwrap_or(0)];
        }
    }

    /// Where a problem at `pointer` is reported: the value's start, or the
    /// key's when `at_key` and the pointer names an object member.
    pub fn locate(&self, pointer: &str, at_key: bool) -> Option<Location> {
        let exact = self.spots.get(pointer);
        match exact {
            Some(spot) if at_key => Some(spot.key.unwrap_or(spot.value)),
            Some(spot) => Some(spot.value),
            None => self.spot(pointer).map(|spot| spot.value),
        }
    }
}

fn escape(key: &str) -> Cow<'_, str> {
    if key.contains(['~', '/']) {
        Cow::Owned(key.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(key)
    }
}

fn yaml_spots(text: &str, rename: &dyn Fn(&str) -> String, spots: &mut HashMap<String, Spot>) {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::Marker;

    enum Frame {
        /// A mapping at `pointer` (None: inside a complex key, not recorded);
        /// `key` is Some between a key and its value.
        Map {
            pointer: Option<String>,
            key: Option<(Option<String>, Location)>,
            /// No key seen yet: a block mapping's start event is marked after
            /// its first key, so the first key's position replaces it.
            first: bool,
        },
        Seq {
            pointer: Option<String>,
            next: usize,
        },
    }

    struct Receiver<'r> {
        rename: &'r dyn Fn(&str) -> String,
        spots: &'r mut HashMap<String, Spot>,
        stack: Vec<Frame>,
        done: bool,
    }

    impl Receiver<'_> {
        /// Called at the start of every node; returns the node's pointer
        /// (None when not recorded) or Err(()) for a mapping key.
        fn start(
            &mut self,
            mark: Location,
            scalar_key: Option<&str>,
        ) -> Result<Option<String>, ()> {
            match self.stack.last_mut() {
                None => {
                    if self.done {
                        return Ok(None);
                    }
                    self.done = true;
                    Ok(Some(String::new()))
                }
                Some(Frame::Seq { pointer, next }) => {
                    let child = pointer.as_ref().map(|p| format!("{p}/{next}"));
                    *next += 1;
                    Ok(child)
                }
                Some(Frame::Map {
                    pointer,
                    key,
                    first,
                }) => match key.take() {
                    None => {
                        if std::mem::take(first) {
                            if let Some(spot) = pointer.as_ref().and_then(|p| self.spots.get_mut(p))
                            {
                                spot.value = mark;
                            }
                        }
                        let child = match (pointer.as_ref(), scalar_key) {
                            (Some(p), Some(k)) => {
                                Some(format!("{p}/{}", escape(&(self.rename)(k))))
                            }
                            _ => None,
                        };
                        *key = Some((child, mark));
                        Err(())
                    }
                    Some((child, key_mark)) => {
                        if let Some(child) = &child {
                            self.spots.insert(
                                child.clone(),
                                Spot {
                                    key: Some(key_mark),
                                    value: mark,
                                },
                            );
                        }
                        Ok(child)
                    }
                },
            }
        }

        fn record(&mut self, pointer: &Option<String>, mark: Location) {
            if let Some(pointer) = pointer {
                self.spots.entry(pointer.clone()).or_insert(Spot {
                    key: None,
                    value: mark,
                });
            }
        }
    }

    impl MarkedEventReceiver for Receiver<'_> {
        fn on_event(&mut self, event: Event, marker: Marker) {
            let mark = Location {
                line: marker.line(),
                column: marker.col() + 1,
            };
            match event {
                Event::Scalar(value, ..) => {
                    if let Ok(pointer) = self.start(mark, Some(&value)) {
                        self.record(&pointer, mark);
                    }
                }
                Event::Alias(_) => {
                    if let Ok(pointer) = self.start(mark, None) {
                        self.record(&pointer, mark);
                    }
                }
                Event::SequenceStart(..) => {
                    let pointer = self.start(mark, None).unwrap_or(None);
                    self.record(&pointer, mark);
                    self.stack.push(Frame::Seq { pointer, next: 0 });
                }
                Event::MappingStart(..) => {
                    let pointer = self.start(mark, None).unwrap_or(None);
                    self.record(&pointer, mark);
                    self.stack.push(Frame::Map {
                        pointer,
                        key: None,
                        first: true,
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    self.stack.pop();
                }
                _ => {}
            }
        }
    }

    let mut receiver = Receiver {
        rename,
        spots,
        stack: Vec::new(),
        done: false,
    };
    let _ = Parser::new_from_str(text).load(&mut receiver, false);
}

fn toml_spots(text: &str, rename: &dyn Fn(&str) -> String, spots: &mut HashMap<String, Spot>) {
    use toml::de::{DeTable, DeValue};
    use toml::Spanned;

    fn walk(
        value: &Spanned<DeValue<'_>>,
        pointer: String,
        key: Option<Location>,
        index: &LineIndex<'_>,
        rename: &dyn Fn(&str) -> String,
        spots: &mut HashMap<String, Spot>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let spot = Spot {
            key,
            value: index.location(value.span().start),
        };
        match value.get_ref() {
            DeValue::Table(table) => {
                for (k, v) in table {
                    let child = format!("{pointer}/{}", escape(&rename(k.get_ref())));
                    let key = Some(index.location(k.span().start));
                    walk(v, child, key, index, rename, spots, depth + 1);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(
                        item,
                        format!("{pointer}/{i}"),
                        None,
                        index,
                        rename,
                        spots,
                        depth + 1,
                    );
                }
            }
            _ => {}
        }
        spots.insert(pointer, spot);
    }

    let Ok(root) = DeTable::parse(text) else {
        return;
    };
    let index = LineIndex::new(text);
    let span = root.span();
    let root = Spanned::new(span, DeValue::Table(root.into_inner()));
    walk(&root, String::new(), None, &index, rename, spots, 0);
    // The root table starts at the first line, not at its first key.
    spots.insert(
        String::new(),
        Spot {
            key: None,
            value: Location { line: 1, column: 1 },
        },
    );
}

/// A scanner that records where each value of a JSON text starts. It trusts
/// the text to be valid JSON (serde_json parsed it already) and stops
/// quietly where it is not.
struct JsonScanner<'t, 'r> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    line: usize,
    line_start: usize,
    rename: &'r dyn Fn(&str) -> String,
    spots: &'r mut HashMap<String, Spot>,
}

impl<'t, 'r> JsonScanner<'t, 'r> {
    fn new(
        text: &'t str,
        rename: &'r dyn Fn(&str) -> String,
        spots: &'r mut HashMap<String, Spot>,
    ) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            line: 1,
            line_start: 0,
            rename,
            spots,
        }
    }

    fn document(mut self) {
        let _ = self.value(String::new(), None, 0);
    }

    fn here(&self) -> Location {
        let column = self
            .text
            .get(self.line_start..self.pos)
            .map_or(1, |s| s.chars().count() + 1);
        Location {
            line: self.line,
            column,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.line_start = self.pos;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                _ => break,
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn value(&mut self, pointer: String, key: Option<Location>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        let at = self.here();
        self.spots.insert(pointer.clone(), Spot { key, value: at });
        match self.peek()? {
            b'{' => {
                self.pos += 1;
                self.skip_ws();
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Some(());
                }
                loop {
                    self.skip_ws();
                    let key_at = self.here();
                    let name = self.string()?;
                    self.skip_ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.pos += 1;
                    let child = format!("{pointer}/{}", escape(&(self.rename)(&name)));
                    self.value(child, Some(key_at), depth + 1)?;
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b'}' => {
                            self.pos += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                self.skip_ws();
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Some(());
                }
                let mut index = 0usize;
                loop {
                    self.value(format!("{pointer}/{index}"), None, depth + 1)?;
                    index += 1;
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            _ => {
                // Number or literal: up to the next delimiter.
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.pos += 1;
                }
                Some(())
            }
        }
    }

    /// Reads a string token, decoding escapes.
    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = self.text.get(self.pos..)?;
            let stop = rest.find(['"', '\\'])?;
            out.push_str(&rest[..stop]);
            self.pos += stop;
            if self.peek()? == b'"' {
                self.pos += 1;
                return Some(out);
            }
            // Backslash escape.
            self.pos += 1;
            let escaped = self.peek()?;
            self.pos += 1;
            match escaped {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let high = self.hex4()?;
                    let code = if (0xD800..0xDC00).contains(&high)
                        && self.text.get(self.pos..self.pos + 2) == Some("\\u")
                    {
                        self.pos += 2;
                        let low = self.hex4()?;
                        0x10000 + ((high - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF)
                    } else {
                        high
                    };
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                _ => return None,
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + 4)?;
        let code = u32::from_str_radix(digits, 16).ok()?;
        self.pos += 4;
        Some(code)
    }
}

#[cfg(test)]
mod tests {
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
}
