//! Synthetic-file tests of the reader, writer and slicer. Files are built by
//! [`GgufBuilder`] or by hand (for input the writer would never produce).

use std::path::Path;

use proptest::prelude::*;

use super::*;

const ARCH: &str = "llama";
const LAYERS: u64 = 4;
const EMBD: u64 = 64;

/// Deterministic, tensor-specific bytes.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn q4_0_bytes(dims: &[u64]) -> usize {
    (dims.iter().product::<u64>() / 32 * 18) as usize
}

/// A four-layer model using every metadata kind, with per-layer arrays.
fn synthetic() -> GgufBuilder {
    let mut b = GgufBuilder::new()
        .kv("general.architecture", Value::string(ARCH))
        .kv("general.name", Value::string("synthetic"))
        .kv("llama.block_count", Value::U32(LAYERS as u32))
        .kv("llama.embedding_length", Value::U32(EMBD as u32))
        .kv("llama.context_length", Value::U64(128))
        .kv(
            "llama.attention.head_count_kv",
            Value::Array(Array::I32(vec![2, 4, 4, 2])),
        )
        .kv(
            "llama.feed_forward_length",
            Value::Array(Array::U32(vec![10, 11, 12, 13])),
        )
        .kv(
            "llama.attention.sliding_window_pattern",
            Value::Array(Array::Bool(vec![true, false, true, false])),
        )
        .kv(
            "llama.not_per_layer",
            Value::Array(Array::F32(vec![1.0, 2.0, 3.0])),
        )
        .kv("general.file_type", Value::U32(2))
        .kv("t.u8", Value::U8(200))
        .kv("t.i8", Value::I8(-3))
        .kv("t.u16", Value::U16(65000))
        .kv("t.i16", Value::I16(-300))
        .kv("t.i32", Value::I32(-70000))
        .kv("t.f32", Value::F32(0.5))
        .kv("t.bool", Value::Bool(true))
        .kv("t.i64", Value::I64(-1))
        .kv("t.f64", Value::F64(-2.25))
        .kv("t.empty", Value::Array(Array::Str(vec![])))
        .kv(
            "t.nested",
            Value::Array(Array::Array(vec![
                Array::U8(vec![1, 2]),
                Array::Str(vec![b"a".to_vec(), vec![0xff, 0xfe]]),
                Array::Array(vec![Array::I64(vec![-5]), Array::F64(vec![])]),
            ])),
        )
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(Array::Str(vec![b"<s>".to_vec(), vec![0xc3], b"x".to_vec()])),
        )
        .kv("tokenizer.chat_template", Value::string("{{ messages }}"));
    b = b.tensor(
        "token_embd.weight",
        &[EMBD, 8],
        GgmlType::F32,
        pattern(1, (EMBD * 8 * 4) as usize),
    );
    for l in 0..LAYERS {
        let seed = 10 + l as u8 * 3;
        b = b
            .tensor(
                &format!("blk.{l}.attn_norm.weight"),
                &[EMBD],
                GgmlType::F32,
                pattern(seed, (EMBD * 4) as usize),
            )
            .tensor(
                &format!("blk.{l}.attn_q.weight"),
                &[EMBD, 3],
                GgmlType::Q4_0,
                pattern(seed + 1, q4_0_bytes(&[EMBD, 3])),
            );
    }
    b.tensor(
        "output_norm.weight",
        &[EMBD],
        GgmlType::F32,
        pattern(99, (EMBD * 4) as usize),
    )
}

fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    GgufHeader::parse(bytes, bytes.len() as u64, Path::new("test.gguf"))
}

/// The bytes of tensor `name` in a whole file.
fn tensor_bytes<'a>(file: &'a [u8], h: &GgufHeader, name: &str) -> &'a [u8] {
    let t = h.tensor(name).unwrap_or_else(|| panic!("tensor {name}"));
    let start = (h.data_offset + t.offset) as usize;
    &file[start..start + t.n_bytes().unwrap() as usize]
}

#[test]
fn roundtrip_keeps_metadata_tensors_and_data() {
    let b = synthetic();
    let bytes = b.to_bytes();
    let h = parse(&bytes).unwrap();
    assert_eq!(h.version, WRITE_VERSION);
    assert_eq!(h.metadata, b.metadata);
    assert_eq!(h.alignment, 32);
    assert_eq!(h.data_offset % 32, 0);
    assert_eq!(h.tensors.len(), b.tensors.len());
    for (t, (bt, data)) in h.tensors.iter().zip(&b.tensors) {
        assert_eq!(
            (&t.name, &t.dims, t.ggml_type),
            (&bt.name, &bt.dims, bt.ggml_type)
        );
        assert_eq!(t.offset % 32, 0);
        assert_eq!(tensor_bytes(&bytes, &h, &t.name), &data[..]);
    }
    // Writing what was read gives the same bytes.
    let mut again = Vec::new();
    write_header(&mut again, &h.metadata, &h.tensors).unwrap();
    assert_eq!(again, bytes[..h.data_offset as usize]);
}

#[test]
fn accessors_read_model_shape() {
    let h = parse(&synthetic().to_bytes()).unwrap();
    assert_eq!(h.architecture().unwrap(), "llama");
    assert_eq!(h.block_count().unwrap(), 4);
    assert_eq!(h.embedding_length().unwrap(), 64);
    assert_eq!(h.context_length().unwrap(), Some(128));
    assert_eq!(
        h.head_count_kv().unwrap(),
        Some(4),
        "max of the per-layer array"
    );
    assert_eq!(h.quantization().unwrap().as_deref(), Some("Q4_0"));
    assert_eq!(
        h.tensor("blk.0.attn_q.weight").unwrap().n_bytes(),
        Some(q4_0_bytes(&[EMBD, 3]) as u64)
    );
}

#[test]
fn quantization_falls_back_to_dominant_matrix_type() {
    let mut b = synthetic();
    b.metadata.retain(|(k, _)| k != "general.file_type");
    let h = parse(&b.to_bytes()).unwrap();
    // token_embd (F32, 2 KiB) outweighs the four Q4_0 matrices (4 x 216 B).
    assert_eq!(h.quantization().unwrap().as_deref(), Some("F32"));
    b.metadata.push(("general.file_type".into(), Value::U32(4)));
    let h = parse(&b.to_bytes()).unwrap();
    assert_eq!(
        h.quantization().unwrap().as_deref(),
        Some("F32"),
        "unknown id 4 falls back"
    );
}

#[test]
fn missing_and_mistyped_keys_are_named() {
    let mut b = synthetic();
    b.metadata.retain(|(k, _)| k != "llama.block_count");
    let err = parse(&b.to_bytes()).unwrap().block_count().unwrap_err();
    assert!(
        matches!(&err, GgufError::MissingKey { key, .. } if key == "llama.block_count"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "`test.gguf` has no metadata key `llama.block_count`"
    );

    let mut b = synthetic();
    b.metadata[2].1 = Value::string("four");
    let err = parse(&b.to_bytes()).unwrap().block_count().unwrap_err();
    assert_eq!(
        err.to_string(),
        "`test.gguf`: metadata key `llama.block_count` is a string (`four`), expected a non-negative integer"
    );
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = synthetic().to_bytes();
    let h = parse(&bytes).unwrap();
    let last = h
        .tensors
        .iter()
        .map(|t| h.data_offset + t.offset + t.n_bytes().unwrap())
        .max()
        .unwrap();
    assert_eq!(h.data_end(), last);
    for len in 0..bytes.len() {
        let r = parse(&bytes[..len]);
        if (len as u64) < last {
            match r {
                Err(GgufError::NotGguf { .. }) => assert!(len < 4, "len {len}"),
                Err(
                    GgufError::Truncated { len: l, .. } | GgufError::DataTruncated { len: l, .. },
                ) => {
                    assert_eq!(l, len as u64)
                }
                other => panic!("prefix of {len} bytes: {other:?}"),
            }
        } else {
            // Only the last tensor's padding is missing: still a whole model.
            r.unwrap();
        }
    }
}

/// A header by hand: magic, version, counts, then `body`.
fn raw(version: u32, n_tensors: u64, n_kv: u64, body: &[u8]) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend(version.to_le_bytes());
    v.extend(n_tensors.to_le_bytes());
    v.extend(n_kv.to_le_bytes());
    v.extend(body);
    v
}

fn s(text: &[u8]) -> Vec<u8> {
    let mut v = (text.len() as u64).to_le_bytes().to_vec();
    v.extend(text);
    v
}

fn kv(key: &str, ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = s(key.as_bytes());
    v.extend(ty.to_le_bytes());
    v.extend(payload);
    v
}

fn tensor_info(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut v = s(name.as_bytes());
    v.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        v.extend(d.to_le_bytes());
    }
    v.extend(ty.to_le_bytes());
    v.extend(offset.to_le_bytes());
    v
}

fn malformed(bytes: &[u8], needle: &str) {
    match parse(bytes) {
        Err(e @ GgufError::Malformed { .. }) => {
            assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`")
        }
        other => panic!("expected malformed ({needle}): {other:?}"),
    }
}

fn truncated(bytes: &[u8], needle: &str) {
    match parse(bytes) {
        Err(e @ (GgufError::Truncated { .. } | GgufError::DataTruncated { .. })) => {
            assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`")
        }
        other => panic!("expected truncated ({needle}): {other:?}"),
    }
}

#[test]
fn bad_magic_and_versions() {
    let err = parse(b"PK\x03\x04 a zip file").unwrap_err();
    assert_eq!(
        err.to_string(),
        "`test.gguf` is not a GGUF file: it starts with `PK\\x03\\x04`, not `GGUF`"
    );
    assert!(matches!(parse(b"").unwrap_err(), GgufError::NotGguf { .. }));
    for (version, extra) in [
        (1u32, "obsolete"),
        (4, "versions 2 and 3"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        let err = parse(&raw(version, 0, 0, &[])).unwrap_err();
        assert!(matches!(err, GgufError::UnsupportedVersion { .. }));
        assert!(err.to_string().contains(extra), "{err}");
    }
    let h = parse(&raw(2, 0, 0, &[])).unwrap();
    assert_eq!((h.version, h.tensors.len(), h.metadata.len()), (2, 0, 0));
}

#[test]
fn hostile_counts_and_lengths_are_bounded() {
    truncated(
        &raw(3, u64::MAX, 0, &[]),
        "tensor count (`18446744073709551615` tensors)",
    );
    truncated(&raw(3, 0, u64::MAX, &[]), "metadata count");
    // A key claiming an 2^64-byte name.
    let mut body = u64::MAX.to_le_bytes().to_vec();
    body.extend([0u8; 64]);
    truncated(&raw(3, 0, 1, &body), "metadata key 0");
    // An array claiming 2^64 - 1 strings.
    let mut arr = 8u32.to_le_bytes().to_vec();
    arr.extend(u64::MAX.to_le_bytes());
    truncated(
        &raw(3, 0, 1, &kv("a", 9, &arr)),
        "value of `a` (`18446744073709551615` array elements)",
    );
    // A string value longer than the file.
    truncated(
        &raw(3, 0, 1, &kv("a", 8, &1000u64.to_le_bytes())),
        "value of `a`",
    );
    // Nested arrays deeper than the bound.
    let mut nested = Vec::new();
    for _ in 0..20 {
        nested.extend(9u32.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    nested.extend([0u8; 64]);
    malformed(
        &raw(3, 0, 1, &kv("deep", 9, &nested)),
        "nests arrays deeper than 8",
    );
}

#[test]
fn header_larger_than_the_cap_is_refused_without_allocating() {
    // A 200 MiB string in a 300 MiB "file" that is never materialised.
    let mut prefix = raw(3, 0, 1, &s(b"big"));
    prefix.extend(8u32.to_le_bytes());
    prefix.extend((200u64 << 20).to_le_bytes());
    let reader = std::io::Read::chain(&prefix[..], std::io::repeat(b'a'));
    let err = GgufHeader::parse(reader, 300 << 20, Path::new("big.gguf")).unwrap_err();
    assert!(matches!(err, GgufError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("larger than 128 MiB"), "{err}");
}

#[test]
fn malformed_fields_are_named() {
    malformed(&raw(3, 0, 1, &kv("a", 13, &[0; 8])), "type of `a` is `13`");
    let mut body = kv("a", 4, &[0; 4]);
    body.extend(kv("a", 4, &[0; 4]));
    malformed(&raw(3, 0, 2, &body), "duplicate metadata key `a`");
    malformed(
        &raw(3, 0, 1, &[s(&[0xff]), vec![0; 16]].concat()),
        "metadata key 0 is not UTF-8",
    );
    for (payload, ty) in [
        (0u32.to_le_bytes().to_vec(), 4u32),
        (3u32.to_le_bytes().to_vec(), 4),
        (32u64.to_le_bytes().to_vec(), 10),
    ] {
        malformed(
            &raw(3, 0, 1, &kv("general.alignment", ty, &payload)),
            "`general.alignment` is",
        );
    }
    let pad = [0u8; 64];
    malformed(
        &raw(
            3,
            1,
            0,
            &[tensor_info("t", &[1, 1, 1, 1, 1], 0, 0), pad.to_vec()].concat(),
        ),
        "`5` dimensions",
    );
    malformed(
        &raw(
            3,
            1,
            0,
            &[tensor_info("t", &[u64::MAX, 2], 0, 0), pad.to_vec()].concat(),
        ),
        "too large",
    );
    malformed(
        &raw(
            3,
            1,
            0,
            &[tensor_info("t", &[33], 2, 0), pad.to_vec()].concat(),
        ),
        "not a multiple of Q4_0's block of 32",
    );
    malformed(
        &raw(
            3,
            1,
            0,
            &[tensor_info("t", &[4], 0, 8), pad.to_vec()].concat(),
        ),
        "offset `8`, not a multiple",
    );
    let two = [tensor_info("t", &[4], 0, 0), tensor_info("t", &[4], 0, 32)].concat();
    malformed(
        &raw(3, 2, 0, &[two, pad.to_vec()].concat()),
        "duplicate tensor `t`",
    );
    // Data past the end of the file.
    truncated(
        &raw(3, 1, 0, &tensor_info("t", &[1024], 0, 0)),
        "data of tensor `t`",
    );
    // An unknown tensor type is readable; only sizing it fails.
    let h = parse(&raw(
        3,
        1,
        0,
        &[tensor_info("t", &[4], 77, 0), pad.to_vec()].concat(),
    ))
    .unwrap();
    assert_eq!(h.tensors[0].n_bytes(), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Random byte flips and cuts never panic.
    #[test]
    fn mutated_files_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                 cut in any::<prop::sample::Index>()) {
        let mut bytes = synthetic().to_bytes();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let len = cut.index(bytes.len() + 1);
        let _ = parse(&bytes[..len]);
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn slice_cuts_layers_renames_and_slices_per_layer_arrays() {
    let dir = tempdir();
    let src = dir.path().join("model.gguf");
    let dst = dir.path().join("part.gguf");
    synthetic().write(&src).unwrap();
    let report = slice_layers(&src, &dst, 1, 3).unwrap();

    let src_bytes = std::fs::read(&src).unwrap();
    let out_bytes = std::fs::read(&dst).unwrap();
    let sh = parse(&src_bytes).unwrap();
    let h = parse(&out_bytes).unwrap();
    assert_eq!(report.bytes_written, out_bytes.len() as u64);
    assert_eq!(report.tensors_kept, 6);
    assert_eq!(report.layer_tensors, 4);
    assert_eq!(
        report.sliced_arrays,
        [
            "llama.attention.head_count_kv",
            "llama.feed_forward_length",
            "llama.attention.sliding_window_pattern"
        ]
    );

    assert_eq!(h.block_count().unwrap(), 2);
    assert_eq!(
        h.get("llama.block_count"),
        Some(&Value::U32(2)),
        "type kept"
    );
    assert_eq!(
        h.get("llama.attention.head_count_kv"),
        Some(&Value::Array(Array::I32(vec![4, 4])))
    );
    assert_eq!(
        h.get("llama.feed_forward_length"),
        Some(&Value::Array(Array::U32(vec![11, 12])))
    );
    assert_eq!(
        h.get("llama.attention.sliding_window_pattern"),
        Some(&Value::Array(Array::Bool(vec![false, true])))
    );
    assert_eq!(h.get("llama.not_per_layer"), sh.get("llama.not_per_layer"));
    assert_eq!(h.get("t.nested"), sh.get("t.nested"));
    assert_eq!(
        h.get("tokenizer.ggml.tokens"),
        sh.get("tokenizer.ggml.tokens")
    );
    assert_eq!(h.get(KEY_SLICE_START), Some(&Value::U32(1)));
    assert_eq!(h.get(KEY_SLICE_END), Some(&Value::U32(3)));
    assert_eq!(h.get(KEY_SLICE_TOTAL), Some(&Value::U32(4)));

    let names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "token_embd.weight",
            "blk.0.attn_norm.weight",
            "blk.0.attn_q.weight",
            "blk.1.attn_norm.weight",
            "blk.1.attn_q.weight",
            "output_norm.weight"
        ]
    );
    for (out, orig) in [
        ("token_embd.weight", "token_embd.weight"),
        ("blk.0.attn_norm.weight", "blk.1.attn_norm.weight"),
        ("blk.0.attn_q.weight", "blk.1.attn_q.weight"),
        ("blk.1.attn_q.weight", "blk.2.attn_q.weight"),
        ("output_norm.weight", "output_norm.weight"),
    ] {
        assert_eq!(
            tensor_bytes(&out_bytes, &h, out),
            tensor_bytes(&src_bytes, &sh, orig),
            "{out}"
        );
    }
    // llama.cpp's layout rule: each tensor at the padded end of the previous.
    let mut expect = 0;
    for t in &h.tensors {
        assert_eq!(t.offset, expect, "{}", t.name);
        expect = (expect + t.n_bytes().unwrap()).next_multiple_of(h.alignment);
    }
    assert_eq!(h.data_offset + expect, out_bytes.len() as u64);
}

#[test]
fn slicing_every_layer_is_the_source_plus_slice_keys() {
    let dir = tempdir();
    let src = dir.path().join("model.gguf");
    let dst = dir.path().join("all.gguf");
    let b = synthetic();
    b.write(&src).unwrap();
    slice_layers(&src, &dst, 0, LAYERS as u32).unwrap();
    let expected = b
        .kv(KEY_SLICE_START, Value::U32(0))
        .kv(KEY_SLICE_END, Value::U32(LAYERS as u32))
        .kv(KEY_SLICE_TOTAL, Value::U32(LAYERS as u32))
        .to_bytes();
    assert!(
        std::fs::read(&dst).unwrap() == expected,
        "byte-identical to the builder's file"
    );
}

#[test]
fn slice_of_a_slice_replaces_slice_keys() {
    let dir = tempdir();
    let src = dir.path().join("model.gguf");
    synthetic().write(&src).unwrap();
    slice_layers(&src, &dir.path().join("a.gguf"), 1, 4).unwrap();
    slice_layers(&dir.path().join("a.gguf"), &dir.path().join("b.gguf"), 1, 2).unwrap();
    let h = GgufHeader::read(&dir.path().join("b.gguf")).unwrap();
    assert_eq!(
        h.metadata
            .iter()
            .filter(|(k, _)| k.starts_with("skulk.slice."))
            .count(),
        3
    );
    assert_eq!(h.get(KEY_SLICE_TOTAL), Some(&Value::U32(3)));
    assert_eq!(
        h.get("llama.feed_forward_length"),
        Some(&Value::Array(Array::U32(vec![12])))
    );
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn slice_errors_leave_no_files() {
    let dir = tempdir();
    let src = dir.path().join("model.gguf");
    synthetic().write(&src).unwrap();
    let dst = dir.path().join("out.gguf");
    for (s, e) in [(2, 2), (3, 1), (0, 5)] {
        let err = slice_layers(&src, &dst, s, e).unwrap_err();
        assert!(matches!(err, GgufError::BadRange { total: 4, .. }), "{err}");
    }
    assert!(slice_layers(&src, &dst, 0, 5)
        .unwrap_err()
        .to_string()
        .ends_with("layer range `[0, 5)` is not a non-empty range inside the model's `4` layers"));

    // The rename fails (the destination is a directory): the temp file goes.
    let blocked = dir.path().join("blocked.gguf");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    let err = slice_layers(&src, &blocked, 0, 1).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::Io {
                op: "rename into place",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());

    let not_gguf = dir.path().join("notes.txt");
    std::fs::write(&not_gguf, b"hello world").unwrap();
    assert!(matches!(
        slice_layers(&not_gguf, &dst, 0, 1),
        Err(GgufError::NotGguf { .. })
    ));
    assert!(matches!(
        slice_layers(&dir.path().join("missing.gguf"), &dst, 0, 1),
        Err(GgufError::Io { op: "open", .. })
    ));
    assert!(!dst.exists());
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn sha256_streams_the_file() {
    let dir = tempdir();
    let p = dir.path().join("abc");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(
        file_sha256(&p).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// A model of `layers` layers of architecture `arch` with extra metadata.
fn tiny(arch: &str, layers: u32, extra: Vec<(&str, Value)>) -> GgufBuilder {
    let mut b = GgufBuilder::new()
        .kv("general.architecture", Value::string(arch))
        .kv(&format!("{arch}.block_count"), Value::U32(layers))
        .kv(&format!("{arch}.embedding_length"), Value::U32(32));
    for (k, v) in extra {
        b = b.kv(k, v);
    }
    for l in 0..layers {
        b = b.tensor(
            &format!("blk.{l}.attn_norm.weight"),
            &[32],
            GgmlType::F32,
            pattern(l as u8, 128),
        );
    }
    b
}

fn slice_header(b: &GgufBuilder, start: u32, end: u32) -> (GgufHeader, SliceReport) {
    let dir = tempdir();
    let (src, dst) = (dir.path().join("m.gguf"), dir.path().join("s.gguf"));
    b.write(&src).unwrap();
    let report = slice_layers(&src, &dst, start, end).unwrap();
    (GgufHeader::read(&dst).unwrap(), report)
}

fn bools(s: &str) -> Value {
    Value::Array(Array::Bool(s.chars().map(|c| c == '1').collect()))
}

#[test]
fn index_derived_sliding_window_pattern_is_materialised() {
    // Gemma 3: period 6, layers with il % 6 < 5 are sliding-window.
    let b = tiny(
        "gemma3",
        12,
        vec![("gemma3.attention.sliding_window", Value::U32(512))],
    );
    let (h, report) = slice_header(&b, 3, 9);
    assert_eq!(
        h.get("gemma3.attention.sliding_window_pattern"),
        Some(&bools("110111"))
    );
    assert_eq!(
        report.rewritten_keys,
        ["gemma3.attention.sliding_window_pattern"]
    );
    let (h, _) = slice_header(&b, 0, 12);
    assert_eq!(
        h.get("gemma3.attention.sliding_window_pattern"),
        Some(&bools("111110111110"))
    );

    // A scalar period in the file overrides the default; dense-first archs.
    let b = tiny(
        "gemma3",
        8,
        vec![("gemma3.attention.sliding_window_pattern", Value::U32(4))],
    );
    assert_eq!(
        slice_header(&b, 2, 6)
            .0
            .get("gemma3.attention.sliding_window_pattern"),
        Some(&bools("1011"))
    );
    let b = tiny("cohere2moe", 8, vec![]);
    assert_eq!(
        slice_header(&b, 2, 6)
            .0
            .get("cohere2moe.attention.sliding_window_pattern"),
        Some(&bools("1101"))
    );

    // An explicit per-layer array is cut like any other; llama has no pattern.
    let b = tiny(
        "gemma3",
        4,
        vec![("gemma3.attention.sliding_window_pattern", bools("1010"))],
    );
    let (h, report) = slice_header(&b, 1, 3);
    assert_eq!(
        h.get("gemma3.attention.sliding_window_pattern"),
        Some(&bools("01"))
    );
    assert_eq!(
        report.sliced_arrays,
        ["gemma3.attention.sliding_window_pattern"]
    );
    assert!(report.rewritten_keys.is_empty());
    let (h, _) = slice_header(&tiny("llama", 4, vec![]), 1, 3);
    assert_eq!(h.get("llama.attention.sliding_window_pattern"), None);
}

#[test]
fn leading_dense_and_trailing_nextn_counts_follow_the_range() {
    let b = tiny(
        "deepseek2",
        10,
        vec![
            ("deepseek2.leading_dense_block_count", Value::U32(3)),
            ("deepseek2.nextn_predict_layers", Value::U32(2)),
            // Set, so that the cut rewrites no DeepSeek-specific key.
            ("deepseek2.attention.q_lora_rank", Value::U32(32)),
            ("deepseek2.expert_gating_func", Value::U32(2)),
        ],
    );
    for (s, e, dense, nextn) in [
        (0, 10, 3, 2),
        (0, 2, 2, 0),
        (2, 5, 1, 0),
        (3, 8, 0, 0),
        (5, 9, 0, 1),
        (7, 10, 0, 2),
    ] {
        let (h, report) = slice_header(&b, s, e);
        assert_eq!(
            h.get("deepseek2.leading_dense_block_count"),
            Some(&Value::U32(dense)),
            "[{s},{e})"
        );
        assert_eq!(
            h.get("deepseek2.nextn_predict_layers"),
            Some(&Value::U32(nextn)),
            "[{s},{e})"
        );
        assert_eq!(report.rewritten_keys.len(), 2);
    }
    // A range of prediction blocks only is refused, with the rule.
    let e = slice_err(&b, 8, 10);
    assert!(
        e.contains("next-token-prediction") && e.contains("hint: "),
        "{e}"
    );
}

fn slice_err(b: &GgufBuilder, start: u32, end: u32) -> String {
    let dir = tempdir();
    let (src, dst) = (dir.path().join("m.gguf"), dir.path().join("s.gguf"));
    b.write(&src).unwrap();
    let e = slice_layers(&src, &dst, start, end).unwrap_err();
    assert!(matches!(e, GgufError::CutRefused { .. }), "{e}");
    assert!(!dst.exists(), "a refused cut wrote a file");
    e.to_string()
}

#[test]
fn gemma3_27b_cuts_rescale_the_query_norm_and_nothing_else() {
    // 62 layers of Gemma 3 27B's shape (n_embd / n_head = 168, head 128).
    let mut b = tiny(
        "gemma3",
        62,
        vec![
            ("gemma3.embedding_length", Value::U32(5376)),
            ("gemma3.attention.head_count", Value::U32(32)),
            ("gemma3.attention.key_length", Value::U32(128)),
        ],
    );
    b.metadata
        .retain(|(k, v)| k != "gemma3.embedding_length" || *v == Value::U32(5376));
    let norm: Vec<f32> = (0..4).map(|i| 1.0 + i as f32 / 8.0).collect();
    let bytes: Vec<u8> = norm.iter().flat_map(|v| v.to_le_bytes()).collect();
    for l in 0..62 {
        b = b.tensor(
            &format!("blk.{l}.attn_q_norm.weight"),
            &[4],
            GgmlType::F32,
            bytes.clone(),
        );
    }
    let dir = tempdir();
    let (src, dst) = (dir.path().join("m.gguf"), dir.path().join("s.gguf"));
    b.write(&src).unwrap();
    slice_layers(&src, &dst, 31, 62).unwrap();
    let h = GgufHeader::read(&dst).unwrap();
    let data = std::fs::read(&dst).unwrap();
    let read = |name: &str| {
        let t = h.tensor(name).unwrap();
        let at = (h.data_offset + t.offset) as usize;
        data[at..at + t.n_bytes().unwrap() as usize].to_vec()
    };
    let ratio = (1.0 / 168f64.sqrt()) / (1.0 / 128f64.sqrt());
    let got: Vec<f32> = read("blk.0.attn_q_norm.weight")
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let want: Vec<f32> = norm
        .iter()
        .map(|&v| (f64::from(v) * ratio) as f32)
        .collect();
    assert_eq!(got, want);
    // Other tensors are copied as they are.
    assert_eq!(read("blk.0.attn_norm.weight"), pattern(31, 128));
    // The whole model's own layers are never rescaled (one rank).
    assert!(cut_weight_scales(&GgufHeader::read(&src).unwrap(), 0, 62).is_empty());
}

#[test]
fn architecture_keys_are_set_in_the_cuts_that_need_them() {
    // Granite: hidden rows arrive scaled, so later cuts scale by 1.
    let b = tiny(
        "granite",
        4,
        vec![("granite.embedding_scale", Value::F32(12.0))],
    );
    assert_eq!(
        slice_header(&b, 0, 2).0.get("granite.embedding_scale"),
        Some(&Value::F32(12.0))
    );
    let (h, report) = slice_header(&b, 2, 4);
    assert_eq!(h.get("granite.embedding_scale"), Some(&Value::F32(1.0)));
    assert_eq!(report.rewritten_keys, ["granite.embedding_scale"]);

    // GLM 4.5: M-RoPE sections in later cuts only (the first takes tokens).
    let b = tiny("glm4moe", 4, vec![]);
    assert_eq!(
        slice_header(&b, 0, 2)
            .0
            .get("glm4moe.rope.dimension_sections"),
        None
    );
    assert_eq!(
        slice_header(&b, 2, 4)
            .0
            .get("glm4moe.rope.dimension_sections"),
        Some(&Value::Array(Array::I32(vec![1, 1, 0, 0])))
    );

    // Qwen3-Next: the recurrent layout, derived from the absolute index.
    let b = tiny("qwen3next", 8, vec![]);
    assert_eq!(
        slice_header(&b, 2, 8)
            .0
            .get("qwen3next.attention.recurrent_layers"),
        Some(&bools("101110"))
    );
    // A rank of recurrent layers only is refused.
    let e = slice_err(&b, 0, 3);
    assert!(
        e.contains("no attention layer") && e.contains("3, 7"),
        "{e}"
    );
}

#[test]
fn metadata_prefixes_parse_as_far_as_they_go() {
    let b = tiny("llama", 2, vec![("llama.context_length", Value::U32(4096))]);
    let bytes = b.to_bytes();
    let path = Path::new("remote.gguf");
    let all = GgufHeader::parse_metadata_prefix(&bytes, path).unwrap();
    assert_eq!(all.len(), 4);
    // Cut inside the third key: the first two come back.
    let whole = GgufHeader::parse(&bytes[..], bytes.len() as u64, path).unwrap();
    let mut cut = 24; // magic, version, counts
    for (k, v) in &whole.metadata[..2] {
        cut += 8
            + k.len()
            + 4
            + match v {
                Value::Str(s) => 8 + s.len(),
                _ => 4,
            };
    }
    let some = GgufHeader::parse_metadata_prefix(&bytes[..cut + 5], path).unwrap();
    assert_eq!(some, whole.metadata[..2]);
    assert!(GgufHeader::parse_metadata_prefix(&bytes[..10], path)
        .unwrap()
        .is_empty());
    assert!(GgufHeader::parse_metadata_prefix(b"not a gguf at all", path).is_err());
}
