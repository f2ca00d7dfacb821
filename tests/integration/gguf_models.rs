//! The GGUF reader and slicer on the real test models (SmolLM2-135M Q4_1 and
//! Gemma 3 270M Q4_K_M), fetched by `scripts/fetch-test-models` into
//! `$SKULK_TEST_MODELS` (default `~/.cache/skulk/test-models`). When a
//! model is absent the test is skipped, except under CI, where it fails
//! (`prereq`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use skulk::gguf::{
    slice_layers, Array, GgufError, GgufHeader, Value, KEY_SLICE_END, KEY_SLICE_START,
    KEY_SLICE_TOTAL,
};

use crate::models::{model, split_like_gguf_split, GEMMA3, SMOLLM2};

fn tensor_data(path: &Path, h: &GgufHeader, name: &str) -> Vec<u8> {
    let t = h
        .tensor(name)
        .unwrap_or_else(|| panic!("{}: no tensor {name}", path.display()));
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::Start(h.data_offset + t.offset)).unwrap();
    let mut v = vec![0u8; t.n_bytes().unwrap() as usize];
    f.read_exact(&mut v).unwrap();
    v
}

/// Every tensor lies inside the file, sized by its type, and tensors do not
/// overlap (the gap to the next one is alignment padding only).
fn check_tensor_sizes(h: &GgufHeader) {
    let mut by_offset: Vec<_> = h.tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let end = pair[0].offset + pair[0].n_bytes().expect("known type");
        assert!(
            end <= pair[1].offset && pair[1].offset - end < h.alignment,
            "{} -> {}",
            pair[0].name,
            pair[1].name
        );
    }
    let last = by_offset.last().unwrap();
    assert!(h.data_offset + last.offset + last.n_bytes().unwrap() <= h.file_len);
}

#[test]
fn smollm2_header() {
    let Some(path) = model(SMOLLM2) else { return };
    let h = GgufHeader::read(&path).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.architecture().unwrap(), "llama");
    assert_eq!(h.block_count().unwrap(), 30);
    assert_eq!(h.embedding_length().unwrap(), 576);
    assert_eq!(h.head_count_kv().unwrap(), Some(3));
    assert_eq!(h.context_length().unwrap(), Some(8192));
    assert_eq!(h.quantization().unwrap().as_deref(), Some("Q4_1"));
    assert_eq!(h.tensors.len(), 272);
    assert_eq!(
        (h.alignment, h.data_offset, h.file_len),
        (32, 1_785_664, 98_362_432)
    );
    assert_eq!(
        h.tensor("blk.0.ffn_down.weight").unwrap().n_bytes(),
        Some(552_960)
    );
    check_tensor_sizes(&h);
}

#[test]
fn gemma3_header() {
    let Some(path) = model(GEMMA3) else { return };
    let h = GgufHeader::read(&path).unwrap();
    assert_eq!(h.architecture().unwrap(), "gemma3");
    assert_eq!(h.block_count().unwrap(), 18);
    assert_eq!(h.embedding_length().unwrap(), 640);
    assert_eq!(h.head_count_kv().unwrap(), Some(1));
    assert_eq!(h.context_length().unwrap(), Some(32768));
    assert_eq!(h.quantization().unwrap().as_deref(), Some("Q4_K_M"));
    assert_eq!(h.tensors.len(), 236);
    assert_eq!(h.data_offset, 6_525_120);
    check_tensor_sizes(&h);
}

/// Slice `src` at `cuts` and check that the parts together are the source.
fn slice_and_check(src: &Path, cuts: &[u32]) {
    let sh = GgufHeader::read(src).unwrap();
    let total = sh.block_count().unwrap() as u32;
    let bc_key = sh.arch_key("block_count").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut layer_bytes = 0u64;
    for w in cuts.windows(2) {
        let (s, e) = (w[0], w[1]);
        let dst = dir.path().join(format!("part-{s}-{e}.gguf"));
        let report = slice_layers(src, &dst, s, e).unwrap();
        let h = GgufHeader::read(&dst).unwrap();
        assert_eq!(report.bytes_written, h.file_len);
        assert_eq!(h.block_count().unwrap(), u64::from(e - s));
        assert_eq!(h.get(KEY_SLICE_START), Some(&Value::U32(s)));
        assert_eq!(h.get(KEY_SLICE_END), Some(&Value::U32(e)));
        assert_eq!(h.get(KEY_SLICE_TOTAL), Some(&Value::U32(total)));
        // All other metadata (tokenizer, chat template, hyperparameters) is kept.
        let changed = |k: &String| {
            *k == bc_key || k.starts_with("skulk.") || report.rewritten_keys.contains(k)
        };
        let kept: Vec<_> = h.metadata.iter().filter(|(k, _)| !changed(k)).collect();
        let orig: Vec<_> = sh.metadata.iter().filter(|(k, _)| !changed(k)).collect();
        assert_eq!(kept, orig);

        // Expected tensors: the globals, and the range's blocks renamed.
        let mut expected = Vec::new();
        for t in &sh.tensors {
            match t.name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
                Some((n, rest)) => {
                    let n: u32 = n.parse().unwrap();
                    if (s..e).contains(&n) {
                        expected.push((format!("blk.{}.{rest}", n - s), t));
                    }
                }
                None => expected.push((t.name.clone(), t)),
            }
        }
        let names: Vec<_> = h.tensors.iter().map(|t| t.name.clone()).collect();
        assert_eq!(
            names,
            expected.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
        );
        assert_eq!(report.tensors_kept, expected.len());
        for (name, orig) in &expected {
            let t = h.tensor(name).unwrap();
            assert_eq!(
                (&t.dims, t.ggml_type),
                (&orig.dims, orig.ggml_type),
                "{name}"
            );
            assert!(
                tensor_data(&dst, &h, name) == tensor_data(src, &sh, &orig.name),
                "data of {name}"
            );
            if name.starts_with("blk.") {
                layer_bytes += t.n_bytes().unwrap();
            }
        }
    }
    let src_layer_bytes: u64 = sh
        .tensors
        .iter()
        .filter(|t| t.name.starts_with("blk."))
        .map(|t| t.n_bytes().unwrap())
        .sum();
    assert_eq!(
        layer_bytes, src_layer_bytes,
        "the parts' layers add up to the source's"
    );
}

#[test]
fn smollm2_slices_in_three() {
    let Some(path) = model(SMOLLM2) else { return };
    slice_and_check(&path, &[0, 10, 20, 30]);
}

#[test]
fn gemma3_slices_in_two() {
    let Some(path) = model(GEMMA3) else { return };
    slice_and_check(&path, &[0, 9, 18]);
}

/// Gemma 3's sliding-window layers follow the global index (period 6, the
/// sixth layer global), so each slice carries them explicitly.
#[test]
fn gemma3_slice_keeps_the_global_sliding_window_pattern() {
    let Some(path) = model(GEMMA3) else { return };
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("part.gguf");
    let report = slice_layers(&path, &dst, 9, 18).unwrap();
    assert_eq!(
        report.rewritten_keys,
        ["gemma3.attention.sliding_window_pattern"]
    );
    let h = GgufHeader::read(&dst).unwrap();
    let expected: Vec<bool> = (9..18).map(|il| il % 6 < 5).collect();
    assert_eq!(
        h.get("gemma3.attention.sliding_window_pattern"),
        Some(&Value::Array(Array::Bool(expected)))
    );
}

/// A model split by `gguf-split` is cut from its first file into the same
/// bytes as the unsplit model (no `split.*` keys left in the cut).
#[test]
fn a_split_model_cuts_into_the_same_files_as_the_whole_one() {
    let Some(path) = model(SMOLLM2) else { return };
    let dir = tempfile::tempdir().unwrap();
    let first = split_like_gguf_split(&path, dir.path(), 3);
    assert!(first.ends_with("SmolLM2-135M-Instruct.Q4_1-00001-of-00003.gguf"));
    for (start, end) in [(0, 10), (10, 20), (20, 30), (0, 30)] {
        let from_split = dir.path().join(format!("split-{start}-{end}.gguf"));
        let from_whole = dir.path().join(format!("whole-{start}-{end}.gguf"));
        let a = slice_layers(&first, &from_split, start, end).unwrap();
        let b = slice_layers(&path, &from_whole, start, end).unwrap();
        assert_eq!(a, b);
        let (a, b) = (
            std::fs::read(&from_split).unwrap(),
            std::fs::read(&from_whole).unwrap(),
        );
        assert!(a == b, "layers {start}..{end}: the cuts differ");
        let h = GgufHeader::read(&from_split).unwrap();
        assert!(h.metadata.iter().all(|(k, _)| !k.starts_with("split.")));
    }
}

#[test]
fn a_split_model_with_a_missing_part_is_an_error_naming_it() {
    let Some(path) = model(SMOLLM2) else { return };
    let dir = tempfile::tempdir().unwrap();
    let first = split_like_gguf_split(&path, dir.path(), 2);
    let second = dir
        .path()
        .join("SmolLM2-135M-Instruct.Q4_1-00002-of-00002.gguf");
    std::fs::remove_file(&second).unwrap();
    let err = slice_layers(&first, &dir.path().join("cut.gguf"), 0, 10).unwrap_err();
    assert!(matches!(err, GgufError::Split { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&second.display().to_string()), "{msg}");
    assert!(msg.contains("is missing"), "{msg}");
    assert!(!dir.path().join("cut.gguf").exists());
    // The second part alone is not a model to cut.
    let first_again = split_like_gguf_split(&path, dir.path(), 2);
    let err = slice_layers(&second, &dir.path().join("cut.gguf"), 0, 10).unwrap_err();
    assert!(err.to_string().contains("not the first part"), "{err}");
    assert!(first_again.is_file());
}
