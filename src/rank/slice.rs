//! The slice cache: the rank-local GGUF cut once from the model for a
//! rank's layers and reused by later runs.

use std::ops::Range;
use std::path::PathBuf;

/// The GGUF a rank loads for `layers` of `model`: `model` itself when the
/// range is the whole model, else a slice cut once (streaming, see
/// `gguf::slice_layers`) into `cache_dir` and reused by later runs. The
/// file name holds `model_key` (e.g. the model's sha256) and the range, so a
/// changed model or range never reuses a stale slice; the slice is written to
/// a temporary name and renamed, so an interrupted cut leaves no bad file.
pub fn rank_local_gguf(
    model: &std::path::Path,
    model_key: &str,
    layers: Range<u32>,
    total_layers: u32,
    cache_dir: &std::path::Path,
) -> Result<PathBuf, crate::gguf::GgufError> {
    if layers.start == 0 && layers.end == total_layers {
        return Ok(model.to_path_buf());
    }
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let key: String = model_key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    let path = cache_dir.join(slice_file_name(&stem, &key, &layers));
    if path.is_file() {
        return Ok(path);
    }
    let io = |op, error| crate::gguf::GgufError::Io {
        op,
        path: cache_dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(cache_dir).map_err(|e| io("create", e))?;
    let tmp = cache_dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    crate::gguf::slice_layers(model, &tmp, layers.start, layers.end)?;
    std::fs::rename(&tmp, &path).map_err(|e| io("rename into", e))?;
    Ok(path)
}

/// The slice cache's name for layers `layers` cut from the model file whose
/// name without `.gguf` is `stem`, with content key `key`:
/// `<stem>.<key>.layers-<start>-<end>.gguf`. `down --purge` matches it with
/// `key` = `*`.
pub fn slice_file_name(stem: &str, key: &str, layers: &Range<u32>) -> String {
    format!("{stem}.{key}.layers-{}-{}.gguf", layers.start, layers.end)
}
