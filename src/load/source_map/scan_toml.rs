//! The TOML scanner of the source map (toml's spanned document).

use std::collections::HashMap;

use super::{escape, LineIndex, Spot};
use crate::load::{Location, MAX_DEPTH};

pub(super) fn toml_spots(
    text: &str,
    rename: &dyn Fn(&str) -> String,
    spots: &mut HashMap<String, Spot>,
) {
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
