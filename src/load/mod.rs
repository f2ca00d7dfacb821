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
//!
//! Files: `bounded` (the value builder that enforces the bounds),
//! `messages` (parser messages in plain words, a duplicate YAML key's
//! position) and `source_map` (pointers back to positions, with one scanner
//! per format).

mod bounded;
mod messages;
mod source_map;

use std::cell::Cell;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeSeed;
use serde_json::Value;

use bounded::ValueSeed;
use messages::{strip_positions, yaml_duplicate_key, yaml_message};
use source_map::LineIndex;
pub use source_map::{SourceMap, Spot};

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

#[cfg(test)]
mod tests;
