//! The layer-range slicer: cuts a rank-local GGUF holding layers `[start,
//! end)` of a model, streamed from the full file.
//!
//! What the cut keeps (the llama.cpp loader must accept it as a model of
//! `end - start` layers):
//! - tensors `blk.start..end-1.*`, renamed `blk.0..`; every tensor not under
//!   `blk.` (the loader requires `token_embd` even on ranks that never embed;
//!   `output_norm`, `output`, `rope_freqs`, ...);
//! - every metadata key, with `<arch>.block_count = end - start` and each
//!   `<arch>.*` array whose length equals the original block count (per-layer
//!   head counts, feed-forward widths, sliding-window patterns) cut to
//!   `[start, end)`; plus `skulk.slice.{start,end,total_layers}` (u32);
//! - keys whose meaning depends on the global layer index rewritten for the
//!   range: the sliding-window pattern of architectures where llama.cpp
//!   derives it from the layer index (materialised as a per-layer bool array,
//!   which the loader reads in preference), `leading_dense_block_count` and
//!   `nextn_predict_layers` (counts of leading/trailing special layers).
//!
//! - per-layer weights multiplied by [`cut_weight_scales`](super::cut_weight_scales)
//!   (Gemma 3 27B's query scale in its query norm; F32, F16 and BF16
//!   tensors only);
//! - the architecture-specific keys of [`cut_keys`](super::cut_keys)
//!   (behaviour llama.cpp keys on the total layer count, e.g. Gemma 3 27B's
//!   attention scale, or on the layer index without a per-layer key).
//!
//! A range llama.cpp would run differently whatever the keys say (e.g. a
//! Llama 4 cut not starting on its 4-layer period) is refused
//! ([`check_cut`](super::check_cut)) before anything is written.
//!
//! A model split by llama.cpp's `gguf-split` (`NAME-00001-of-NNNNN.gguf`,
//! `split.*` metadata) is cut from its first file: tensors are read from
//! whichever part holds them, and the cut is one ordinary file (no `split.*`
//! keys).
//!
//! Invariants: peak memory is the header plus one fixed copy buffer,
//! independent of the model's size; the destination appears only complete
//! (written to a temporary file in its directory, synced, renamed), and the
//! temporary file is removed on any error.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::cut::{check_cut, cut_keys, cut_weight_scales};
use super::error::GgufError;
use super::names::split_name;
use super::read::{GgufHeader, TensorInfo};
use super::types::GgmlType;
use super::value::{Array, Value};
use super::write::{alignment_of, layout_offsets, write_header, write_padding};

/// Tensor data is copied through one buffer of this size: large enough that
/// per-call overhead vanishes against disk throughput, small enough to be
/// noise in a rank's memory.
pub const COPY_BUFFER_BYTES: usize = 1 << 20;

/// Metadata keys skulk adds to a slice (all u32).
pub const KEY_SLICE_START: &str = "skulk.slice.start";
pub const KEY_SLICE_END: &str = "skulk.slice.end";
pub const KEY_SLICE_TOTAL: &str = "skulk.slice.total_layers";

/// Architectures whose llama.cpp loader derives sliding-window layers from
/// the layer index when the GGUF has no per-layer pattern array: (arch,
/// default period, dense_first), from the `load_swa_pattern(ml, period,
/// dense_first)` calls in llama.cpp's `src/models/*.cpp` (llama-cpp-sys-2
/// 0.1.161). Layer `il` is SWA when `period == 0` or, dense first,
/// `il % period != 0`, else `il % period < period - 1`
/// (`llama_hparams::set_swa_pattern`). A scalar pattern key overrides the
/// period.
pub(super) const SWA_PERIODIC: &[(&str, u64, bool)] = &[
    ("afmoe", 4, false),
    ("cohere2", 4, false),
    ("cohere2moe", 4, true),
    ("exaone-moe", 4, false),
    ("exaone4", 4, false),
    ("gemma-embedding", 6, false),
    ("gemma2", 2, false),
    ("gemma3", 6, false),
    ("gemma3n", 5, false),
    ("gpt-oss", 2, false),
    ("laguna", 4, true),
    ("llama4", 4, false),
    ("mellum", 4, false),
    ("modern-bert", 3, true),
    ("muse-glimmer", 4, false),
    ("olmo2", 4, false),
    ("plamo3", 8, false),
    ("smallthinker", 4, true),
];

/// `<arch>.*` arrays that are not one entry per layer, whatever their
/// length happens to be (M-RoPE's four position sections).
const NOT_PER_LAYER: &[&str] = &[".rope.dimension_sections"];

pub(super) fn is_swa(il: u64, period: u64, dense_first: bool) -> bool {
    period == 0
        || if dense_first {
            il % period != 0
        } else {
            il % period < period - 1
        }
}

/// What a slice contains, decided from the source header alone.
#[derive(Debug, Clone)]
pub struct SlicePlan {
    pub metadata: Vec<(String, Value)>,
    /// Output tensor infos, offsets laid out for the output file.
    pub tensors: Vec<TensorInfo>,
    /// For each output tensor, its data offset in the source's data section.
    pub source_offsets: Vec<u64>,
    /// For each output tensor, the factor its values are multiplied by
    /// (`cut_weight_scales`), if any.
    pub scales: Vec<Option<f64>>,
    /// Per-layer metadata arrays that were cut.
    pub sliced_arrays: Vec<String>,
    /// Keys rewritten for the range (besides the block count and the cut
    /// arrays).
    pub rewritten_keys: Vec<String>,
    /// Data section size of the output (padded).
    pub data_bytes: u64,
}

/// What [`slice_layers`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceReport {
    /// Size of the output file.
    pub bytes_written: u64,
    /// Tensors in the output (layer tensors plus global ones).
    pub tensors_kept: usize,
    /// Of those, the `blk.*` tensors.
    pub layer_tensors: usize,
    /// Per-layer metadata arrays that were cut to the range.
    pub sliced_arrays: Vec<String>,
    /// Keys rewritten for the range (see [`SlicePlan::rewritten_keys`]).
    pub rewritten_keys: Vec<String>,
}

/// `blk.<n>.<rest>` -> `(n, rest)`.
fn layer_of(name: &str) -> Option<(u64, &str)> {
    let (n, rest) = name.strip_prefix("blk.")?.split_once('.')?;
    Some((n.parse().ok()?, rest))
}

/// Decide the slice `[start, end)` of `header` (pure).
pub fn plan_slice(header: &GgufHeader, start: u32, end: u32) -> Result<SlicePlan, GgufError> {
    let total = header.block_count()?;
    let (s, e) = (u64::from(start), u64::from(end));
    if s >= e || e > total {
        return Err(GgufError::BadRange {
            path: header.path.clone(),
            start: s,
            end: e,
            total,
        });
    }
    let arch = header.architecture()?;
    check_cut(header, start, end).map_err(|refusal| GgufError::CutRefused {
        path: header.path.clone(),
        refusal,
    })?;
    // Architecture-specific keys for the range (see `cut.rs`), set after
    // the generic rewrites below.
    let arch_keys = cut_keys(header, start, end);
    let arch_prefix = format!("{arch}.");
    let block_count_key = format!("{arch_prefix}block_count");
    let swa_key = format!("{arch_prefix}attention.sliding_window_pattern");
    let dense_lead_key = format!("{arch_prefix}leading_dense_block_count");
    let nextn_key = format!("{arch_prefix}nextn_predict_layers");

    // The per-layer SWA flags of the range, when llama.cpp would otherwise
    // derive them from the (now shifted) layer index.
    let swa_pattern = match (
        SWA_PERIODIC.iter().find(|p| p.0 == arch),
        header.get(&swa_key),
    ) {
        (Some(_), Some(Value::Array(_))) | (None, _) => None,
        (Some(&(_, default, dense_first)), scalar) => {
            let period = match scalar {
                None => default,
                Some(v) => v.as_u64().ok_or_else(|| GgufError::KeyType {
                    path: header.path.clone(),
                    key: swa_key.clone(),
                    expected: "an integer period or a per-layer array",
                    found: format!("a {} (`{v}`)", v.value_type().name()),
                })?,
            };
            Some(Value::Array(Array::Bool(
                (s..e).map(|il| is_swa(il, period, dense_first)).collect(),
            )))
        }
    };

    let mut metadata = Vec::with_capacity(header.metadata.len() + 4);
    let mut sliced_arrays = Vec::new();
    let mut rewritten_keys = Vec::new();
    for (key, value) in &header.metadata {
        if key.starts_with("skulk.slice.") {
            continue;
        }
        if arch_keys.iter().any(|(k, _)| k == key) {
            continue;
        }
        let value = if *key == block_count_key {
            value
                .with_uint(e - s)
                .expect("block_count was read as an unsigned integer")
        } else if *key == swa_key && swa_pattern.is_some() {
            rewritten_keys.push(key.clone());
            swa_pattern.clone().expect("checked")
        } else if (*key == dense_lead_key || *key == nextn_key) && value.as_u64().is_some() {
            let n = value.as_u64().expect("checked");
            // Leading dense layers: those of [0, n) inside the range; trailing
            // next-token-prediction layers: those of [total - n, total).
            let inside = if *key == dense_lead_key {
                n.min(e).saturating_sub(s)
            } else {
                e.saturating_sub(total.saturating_sub(n).max(s))
            };
            rewritten_keys.push(key.clone());
            value
                .with_uint(inside)
                .expect("no larger than the original")
        } else {
            match value {
                Value::Array(a)
                    if key.starts_with(&arch_prefix)
                        && a.len() as u64 == total
                        && !NOT_PER_LAYER.iter().any(|k| key.ends_with(k)) =>
                {
                    sliced_arrays.push(key.clone());
                    Value::Array(a.slice(s as usize..e as usize))
                }
                v => v.clone(),
            }
        };
        metadata.push((key.clone(), value));
    }
    if let (Some(pattern), None) = (&swa_pattern, header.get(&swa_key)) {
        rewritten_keys.push(swa_key.clone());
        metadata.push((swa_key.clone(), pattern.clone()));
    }
    for (key, value) in arch_keys {
        rewritten_keys.push(key.clone());
        metadata.push((key, value));
    }
    let total_u32 = u32::try_from(total).map_err(|_| GgufError::KeyType {
        path: header.path.clone(),
        key: block_count_key.clone(),
        expected: "a u32 layer count",
        found: format!("`{total}`"),
    })?;
    metadata.push((KEY_SLICE_START.into(), Value::U32(start)));
    metadata.push((KEY_SLICE_END.into(), Value::U32(end)));
    metadata.push((KEY_SLICE_TOTAL.into(), Value::U32(total_u32)));

    let weight_scales = cut_weight_scales(header, start, end);
    let mut tensors = Vec::new();
    let mut source_offsets = Vec::new();
    let mut scales = Vec::new();
    for t in &header.tensors {
        let (name, scale) = match layer_of(&t.name) {
            Some((n, rest)) if (s..e).contains(&n) => (
                format!("blk.{}.{rest}", n - s),
                weight_scales
                    .iter()
                    .find(|(suffix, _)| suffix == rest)
                    .map(|&(_, f)| f),
            ),
            Some(_) => continue,
            None => (t.name.clone(), None),
        };
        if scale.is_some() && !SCALABLE.contains(&t.ggml_type) {
            return Err(GgufError::CutRefused {
                path: header.path.clone(),
                refusal: super::cut::CutRefusal {
                    arch: arch.to_string(),
                    start,
                    end,
                    reason: format!(
                        "tensor `{}` must be rescaled in the cut, and skulk rescales only F32, F16 and BF16 tensors, not `{}`",
                        t.name, t.ggml_type
                    ),
                    hint: "run this model on one host (a one-rank plan)".into(),
                },
            });
        }
        scales.push(scale);
        tensors.push(TensorInfo {
            name,
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
            offset: 0,
        });
        source_offsets.push(t.offset);
    }
    let data_bytes = layout_offsets(&mut tensors, alignment_of(&metadata)).map_err(|i| {
        GgufError::UnknownTensorType {
            path: header.path.clone(),
            tensor: tensors[i].name.clone(),
            ggml_type: tensors[i].ggml_type.0,
        }
    })?;
    Ok(SlicePlan {
        metadata,
        tensors,
        source_offsets,
        scales,
        sliced_arrays,
        rewritten_keys,
        data_bytes,
    })
}

/// Tensor types whose values [`scale_values`] can multiply.
const SCALABLE: &[GgmlType] = &[GgmlType::F32, GgmlType::F16, GgmlType::BF16];

/// Multiplies every value of `data` (little-endian, of type `ty`, one of
/// [`SCALABLE`]) by `factor`, rounding once to the type.
fn scale_values(data: &mut [u8], ty: GgmlType, factor: f64) {
    match ty {
        GgmlType::F32 => {
            for b in data.chunks_exact_mut(4) {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                b.copy_from_slice(&((f64::from(v) * factor) as f32).to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for b in data.chunks_exact_mut(2) {
                let v = half::f16::from_le_bytes([b[0], b[1]]).to_f64();
                b.copy_from_slice(&half::f16::from_f64(v * factor).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for b in data.chunks_exact_mut(2) {
                let v = half::bf16::from_le_bytes([b[0], b[1]]).to_f64();
                b.copy_from_slice(&half::bf16::from_f64(v * factor).to_le_bytes());
            }
        }
        other => unreachable!("plan_slice refuses rescaling `{other}`"),
    }
}

/// A file in the destination's directory, removed on drop unless persisted.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn create(dst: &Path) -> Result<TempFile, GgufError> {
        let dir = match dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dst
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut attempt = 0u32;
        loop {
            let path = dir.join(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1
                }
                Err(error) => {
                    return Err(GgufError::Io {
                        op: "create",
                        path,
                        error,
                    })
                }
            }
        }
    }

    fn persist(mut self, dst: &Path) -> Result<(), GgufError> {
        drop(self.file.take());
        fs::rename(&self.path, dst).map_err(|error| GgufError::Io {
            op: "rename into place",
            path: dst.to_path_buf(),
            error,
        })?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// `gguf-split`'s metadata keys (llama.cpp `LLM_KV_SPLIT_*`).
const SPLIT_NO: &str = "split.no";
const SPLIT_COUNT: &str = "split.count";
const SPLIT_PREFIX: &str = "split.";

/// The files of the model whose first (or only) file is `first`, with their
/// headers. One file unless its header says `split.count > 1`; then the
/// parts are named as `gguf-split` names them and must all be there, each
/// with its own `split.no`.
fn model_parts(first: &Path) -> Result<Vec<(PathBuf, GgufHeader)>, GgufError> {
    let header = GgufHeader::read(first)?;
    let count = header.get_u64(SPLIT_COUNT)?.unwrap_or(1);
    if count <= 1 {
        return Ok(vec![(first.to_path_buf(), header)]);
    }
    let split_err = |what: String| GgufError::Split {
        path: first.to_path_buf(),
        what,
    };
    if header.get_u64(SPLIT_NO)?.unwrap_or(0) != 0 {
        return Err(split_err(
            "is not the first part (`split.no` is not 0)".into(),
        ));
    }
    let name = first
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(group) = split_name(&name).filter(|g| g.index == 1 && u64::from(g.count) == count)
    else {
        return Err(split_err(format!(
            "has `split.count = {count}` but its name is not `NAME-00001-of-{count:05}.gguf`"
        )));
    };
    let mut parts = vec![(first.to_path_buf(), header)];
    for i in 2..=group.count {
        let path = first.with_file_name(group.part(i));
        if !path.is_file() {
            return Err(split_err(format!("`{}` is missing", path.display())));
        }
        let h = GgufHeader::read(&path)?;
        if h.get_u64(SPLIT_NO)? != Some(u64::from(i - 1)) {
            return Err(split_err(format!(
                "`{}` does not say `split.no = {}`",
                path.display(),
                i - 1
            )));
        }
        parts.push((path, h));
    }
    Ok(parts)
}

/// One header for all parts: the first part's metadata without `split.*`,
/// every part's tensors, offsets shifted by `bases[i]` (the sum of the
/// earlier parts' data sections), so [`plan_slice`] sees one data section.
fn merged_header(parts: &[(PathBuf, GgufHeader)]) -> (GgufHeader, Vec<u64>) {
    let mut merged = parts[0].1.clone();
    if parts.len() == 1 {
        return (merged, vec![0]);
    }
    merged
        .metadata
        .retain(|(k, _)| !k.starts_with(SPLIT_PREFIX));
    merged.tensors.clear();
    let mut bases = Vec::with_capacity(parts.len());
    let mut base = 0u64;
    for (_, h) in parts {
        bases.push(base);
        merged.tensors.extend(h.tensors.iter().map(|t| TensorInfo {
            offset: t.offset + base,
            ..t.clone()
        }));
        base += h.file_len.saturating_sub(h.data_offset);
    }
    (merged, bases)
}

/// Write the GGUF holding layers `[start, end)` of `src` to `dst` (see the
/// module documentation for what it contains). `src` is the model's only
/// file or, for a split model, its first.
pub fn slice_layers(
    src: &Path,
    dst: &Path,
    start: u32,
    end: u32,
) -> Result<SliceReport, GgufError> {
    let parts = model_parts(src)?;
    let (header, bases) = merged_header(&parts);
    let plan = plan_slice(&header, start, end)?;
    let alignment = alignment_of(&plan.metadata);

    let mut inputs = Vec::with_capacity(parts.len());
    for (path, _) in &parts {
        let file = File::open(path).map_err(|error| GgufError::Io {
            op: "open",
            path: path.clone(),
            error,
        })?;
        inputs.push(file);
    }
    let tmp = TempFile::create(dst)?;
    let dst_err = |error| GgufError::Io {
        op: "write",
        path: tmp.path.clone(),
        error,
    };
    let file = tmp.file.as_ref().expect("open until persisted");
    let mut out = BufWriter::with_capacity(64 << 10, file);
    let data_offset = write_header(&mut out, &plan.metadata, &plan.tensors).map_err(dst_err)?;

    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut pos = 0u64;
    for ((t, &src_offset), scale) in plan
        .tensors
        .iter()
        .zip(&plan.source_offsets)
        .zip(&plan.scales)
    {
        debug_assert_eq!(pos, t.offset);
        let mut left = t.n_bytes().expect("plan_slice checked the types");
        // The part holding this tensor: the last whose base is not past it.
        let i = bases.partition_point(|&b| b <= src_offset) - 1;
        let (path, part) = &parts[i];
        let input = &mut inputs[i];
        let src_err = |op, error| GgufError::Io {
            op,
            path: path.clone(),
            error,
        };
        input
            .seek(SeekFrom::Start(part.data_offset + src_offset - bases[i]))
            .map_err(|e| src_err("seek in", e))?;
        while left > 0 {
            let chunk = &mut buf[..left.min(COPY_BUFFER_BYTES as u64) as usize];
            input.read_exact(chunk).map_err(|e| src_err("read", e))?;
            if let Some(factor) = scale {
                // The buffer holds whole values (its size is a multiple of 4).
                scale_values(chunk, t.ggml_type, *factor);
            }
            out.write_all(chunk).map_err(dst_err)?;
            left -= chunk.len() as u64;
        }
        pos += t.n_bytes().expect("checked");
        pos += write_padding(&mut out, pos, alignment).map_err(dst_err)?;
    }
    debug_assert_eq!(pos, plan.data_bytes);
    out.flush().map_err(dst_err)?;
    drop(out);
    file.sync_all().map_err(dst_err)?;
    tmp.persist(dst)?;

    Ok(SliceReport {
        bytes_written: data_offset + pos,
        tensors_kept: plan.tensors.len(),
        layer_tensors: plan
            .tensors
            .iter()
            .filter(|t| layer_of(&t.name).is_some())
            .count(),
        sliced_arrays: plan.sliced_arrays,
        rewritten_keys: plan.rewritten_keys,
    })
}
