//! JSON pointers of a parsed document mapped back to lines and columns of
//! its text, by a light scan per format (`yaml`, `toml`, `json`).

mod scan_json;
mod scan_toml;
mod scan_yaml;

use std::borrow::Cow;
use std::collections::HashMap;

use super::{Format, Location};
use scan_json::JsonScanner;
use scan_toml::toml_spots;
use scan_yaml::yaml_spots;

/// Byte offsets to lines and columns.
pub(super) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    pub(super) fn location(&self, offset: usize) -> Location {
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
