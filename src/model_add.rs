//! `skulk model add FILE --card CARD`: puts a GGUF file that is already on
//! this machine where a rank looks for it, `<modelDir>/<org>--<name>/
//! <ggufFile>` (the card names the directory and the file name), so a
//! `connection: local` ring, or a host you copy the directory to, finds it.
//!
//! The invariant it guards: what lands there is the card's model. The file
//! (for a split model, every part, found beside the first) must add up to
//! the card's `storageSize`, and an existing file of another size is never
//! replaced. The file is hard-linked when the model directory is on the same
//! filesystem, else copied through a temporary name and renamed, so an
//! interrupted copy never leaves a file of the right name and wrong content.

use std::path::{Path, PathBuf};

use crate::card::ModelCard;
use crate::gguf::split_name;

#[derive(Debug, thiserror::Error)]
pub enum ModelAddError {
    #[error("card `{model_id}` names no `ggufFile`, and ranks load GGUF files\n\nhint: derive a GGUF card with `skulk card new --from-gguf {file}`")]
    NotGguf { model_id: String, file: String },
    #[error("`{file}` ({size} bytes{parts}) is not the model of card `{model_id}`, whose `storageSize.inBytes` is {expected}\n\nhint: pass the card of this file (`skulk card new --from-gguf {file}` makes one)")]
    WrongSize {
        file: String,
        size: u64,
        parts: String,
        model_id: String,
        expected: u64,
    },
    #[error("`{dest}` already exists with {size} bytes, not the card's {expected}\n\nhint: remove it if it is a stale or partial copy, then run this again")]
    Occupied {
        dest: PathBuf,
        size: u64,
        expected: u64,
    },
    #[error("cannot {op} `{path}`: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
}

impl ModelAddError {
    /// The file or card given is wrong (exit 1), rather than the filesystem.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, ModelAddError::Io { .. })
    }
}

/// How one file got to its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// It was there already, with the right size.
    Present,
    Linked,
    Copied,
}

/// One file put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    pub dest: PathBuf,
    pub how: Placed,
}

/// Where the card's model lives under `model_dir`.
pub fn destination(card: &ModelCard, model_dir: &Path) -> Option<PathBuf> {
    let file = card.gguf_file.as_deref()?;
    Some(crate::settings::paths::model_store(model_dir, &card.model_id).join(file))
}

/// Puts `file` (and, for a split model, its other parts) where `card`'s
/// ranks look for it under `model_dir`.
pub fn add(file: &Path, card: &ModelCard, model_dir: &Path) -> Result<Vec<Added>, ModelAddError> {
    let shown = file.display().to_string();
    let dest = destination(card, model_dir).ok_or_else(|| ModelAddError::NotGguf {
        model_id: card.model_id.clone(),
        file: shown.clone(),
    })?;
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |error| ModelAddError::Io { op, path, error }
    };
    // The parts to place, source and destination.
    let dest_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pairs: Vec<(PathBuf, PathBuf)> = match (split_name(&file_name), split_name(&dest_name)) {
        (Some(from), Some(to)) if from.count == to.count => (1..=from.count)
            .map(|i| {
                (
                    file.with_file_name(from.part(i)),
                    dest.with_file_name(to.part(i)),
                )
            })
            .collect(),
        _ => vec![(file.to_path_buf(), dest.clone())],
    };
    let mut total = 0u64;
    for (from, _) in &pairs {
        total += std::fs::metadata(from).map_err(io("read", from))?.len();
    }
    let expected = card.storage_size.in_bytes;
    if total != expected {
        return Err(ModelAddError::WrongSize {
            file: shown,
            size: total,
            parts: if pairs.len() > 1 {
                format!(" in {} parts", pairs.len())
            } else {
                String::new()
            },
            model_id: card.model_id.clone(),
            expected,
        });
    }
    // Existing files must be the same size (checked before anything moves).
    for (from, to) in &pairs {
        if let Ok(m) = std::fs::metadata(to) {
            let want = std::fs::metadata(from).map_err(io("read", from))?.len();
            if m.len() != want {
                return Err(ModelAddError::Occupied {
                    dest: to.clone(),
                    size: m.len(),
                    expected: want,
                });
            }
        }
    }
    let mut added = Vec::new();
    for (from, to) in &pairs {
        let how = if to.exists() {
            Placed::Present
        } else {
            let dir = to.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            place(from, to).map_err(io("copy into", to))?
        };
        added.push(Added {
            dest: to.clone(),
            how,
        });
    }
    Ok(added)
}

/// Hard link, else copy through a temporary file and rename.
fn place(from: &Path, to: &Path) -> std::io::Result<Placed> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(Placed::Linked);
    }
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    let tmp = to.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = std::fs::copy(from, &tmp).and_then(|_| std::fs::rename(&tmp, to));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| Placed::Copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::Memory;

    fn card(file: &str, bytes: u64) -> ModelCard {
        let mut c: ModelCard = serde_json::from_value(serde_json::json!({
            "modelId": "org/m",
            "storageSize": {"inBytes": 0},
            "nLayers": 2,
            "hiddenSize": 8,
            "supportsTensor": false,
            "tasks": ["TextGeneration"],
            "ggufFile": file
        }))
        .unwrap();
        c.storage_size = Memory::from_bytes(bytes);
        c
    }

    #[test]
    fn a_file_lands_where_ranks_look_and_twice_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.gguf");
        std::fs::write(&src, b"GGUF1234").unwrap();
        let models = dir.path().join("models");
        let c = card("m.Q4.gguf", 8);
        let added = add(&src, &c, &models).unwrap();
        let dest = models.join("org--m/m.Q4.gguf");
        assert_eq!(added[0].dest, dest);
        assert_eq!(added[0].how, Placed::Linked);
        assert_eq!(std::fs::read(&dest).unwrap(), b"GGUF1234");
        assert_eq!(add(&src, &c, &models).unwrap()[0].how, Placed::Present);
    }

    #[test]
    fn the_wrong_file_or_an_occupied_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.gguf");
        std::fs::write(&src, b"GGUF1234").unwrap();
        let models = dir.path().join("models");
        let e = add(&src, &card("m.gguf", 9), &models).unwrap_err();
        assert!(e.is_invalid_input());
        assert!(e.to_string().contains("`storageSize.inBytes` is 9"), "{e}");
        assert!(!models.exists(), "nothing written");
        std::fs::create_dir_all(models.join("org--m")).unwrap();
        std::fs::write(models.join("org--m/m.gguf"), b"short").unwrap();
        let e = add(&src, &card("m.gguf", 8), &models).unwrap_err();
        assert!(matches!(e, ModelAddError::Occupied { size: 5, .. }), "{e}");
    }

    #[test]
    fn every_part_of_a_split_model_is_placed() {
        let dir = tempfile::tempdir().unwrap();
        for (i, body) in [(1, "GGUFa"), (2, "bb")] {
            std::fs::write(dir.path().join(format!("x-0000{i}-of-00002.gguf")), body).unwrap();
        }
        let models = dir.path().join("models");
        let c = card("X-00001-of-00002.gguf", 7);
        let added = add(&dir.path().join("x-00001-of-00002.gguf"), &c, &models).unwrap();
        assert_eq!(added.len(), 2);
        assert_eq!(
            std::fs::read(models.join("org--m/X-00002-of-00002.gguf")).unwrap(),
            b"bb"
        );
    }
}
