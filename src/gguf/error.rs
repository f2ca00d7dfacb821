//! Errors of the GGUF reader, writer and slicer. Every message names the file.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot {op} `{path}`: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },

    #[error("`{path}` is not a GGUF file: {why}")]
    NotGguf { path: PathBuf, why: String },

    #[error("`{path}` has GGUF version `{version}`, which skulk cannot read\n\nhint: skulk reads little-endian GGUF versions 2 and 3{extra}")]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        extra: &'static str,
    },

    #[error("`{path}` is truncated or corrupt: {what} at byte {offset} needs {need} bytes, but the file ends at byte {len}")]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        need: u64,
        len: u64,
    },

    /// The header is whole, but the file ends before the furthest tensor's
    /// data (an interrupted download or copy).
    #[error("`{path}` is truncated or corrupt: the data of tensor `{tensor}` ends at byte {end}, but the file ends at byte {len}\n\nhint: the download or copy was interrupted; fetch it again")]
    DataTruncated {
        path: PathBuf,
        tensor: String,
        /// Bytes the file needs to hold every tensor's data.
        end: u64,
        len: u64,
    },

    #[error("`{path}` is malformed at byte {offset}: {what}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        what: String,
    },

    #[error("`{path}` has no metadata key `{key}`")]
    MissingKey { path: PathBuf, key: String },

    #[error("`{path}`: metadata key `{key}` is {found}, expected {expected}")]
    KeyType {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },

    #[error("`{path}`: tensor `{tensor}` has ggml type `{ggml_type}`, whose size skulk does not know\n\nhint: a newer skulk may know this quantisation")]
    UnknownTensorType {
        path: PathBuf,
        tensor: String,
        ggml_type: u32,
    },

    #[error("`{path}`: layer range `[{start}, {end})` is not a non-empty range inside the model's `{total}` layers")]
    BadRange {
        path: PathBuf,
        start: u64,
        end: u64,
        total: u64,
    },

    #[error("`{path}`: split model part {what}\n\nhint: a model split by llama.cpp's `gguf-split` is read from its first file, `NAME-00001-of-NNNNN.gguf`, with every part beside it")]
    Split { path: PathBuf, what: String },

    #[error("`{path}`: {refusal}")]
    CutRefused {
        path: PathBuf,
        refusal: super::cut::CutRefusal,
    },
}
