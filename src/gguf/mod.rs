//! GGUF model files (versions 2 and 3): a header reader that never loads
//! tensor data, a writer, and the streaming layer-range slicer that cuts a
//! rank-local model for `run-shard`.
//!
//! This module owns the byte format. It guards two invariants: hostile or
//! truncated input is a typed error naming the file (never a panic or an
//! unbounded allocation), and cutting a slice uses memory independent of the
//! model's size. Card generation and the engine consume [`GgufHeader`] and
//! [`slice_layers`]; neither parses GGUF bytes itself.

mod cut;
mod error;
mod names;
mod read;
mod slice;
mod types;
mod value;
mod write;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use cut::{boundary_multiple, check_cut, cut_keys, cut_weight_scales, CutRefusal};
pub use error::GgufError;
pub(crate) use names::strip_gguf;
pub use names::{split_name, SplitName};
pub use read::{GgufHeader, TensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS, MAX_HEADER_BYTES};
pub use slice::{
    plan_slice, slice_layers, SlicePlan, SliceReport, COPY_BUFFER_BYTES, KEY_SLICE_END,
    KEY_SLICE_START, KEY_SLICE_TOTAL,
};
pub use types::{file_type_label, GgmlType};
pub use value::{Array, Value, ValueType};
pub use write::{
    alignment_of, layout_offsets, write_header, write_padding, GgufBuilder, WRITE_VERSION,
};

/// The sha256 of the file at `path` as lowercase hex, streamed through a fixed
/// buffer.
pub fn file_sha256(path: &Path) -> Result<String, GgufError> {
    let io = |op, error| GgufError::Io {
        op,
        path: path.to_path_buf(),
        error,
    };
    let mut file = File::open(path).map_err(|e| io("open", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io("read", e)),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}
