//! A llama-architecture GGUF of realistic shape with random weights, for
//! benchmarks where compute (not fixed per-token costs) dominates. The
//! vocabulary and chat template are copied from a donor GGUF (e.g. SmolLM2),
//! so the API can tokenize and render prompts; the answers are noise.
//!
//! ```text
//! cargo run --release --example random_model -- \
//!     --tokenizer-from SmolLM2-135M-Instruct.Q4_1.gguf --shape llama-3.2-1b \
//!     --type q8_0 --out /tmp/llama-1b-random.Q8_0.gguf
//! ```
//!
//! The file is streamed to disk (its size is that of the real model); the
//! weights come from a fixed-seed generator, so two runs write the same
//! bytes. Shapes: `llama-3.2-1b` (16 layers, 2048 wide, 32/8 heads, FFN
//! 8192), `llama-3.2-3b` (28 layers, 3072 wide, 24/8 heads, FFN 8192); the
//! embeddings are tied to the output, as in Llama 3.2.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use skulk::gguf::{layout_offsets, write_header, write_padding, GgmlType, GgufHeader, TensorInfo};
use skulk::gguf::{Array, Value};

struct Shape {
    layers: u64,
    embd: u64,
    heads: u64,
    kv_heads: u64,
    ffn: u64,
}

fn shape(name: &str) -> anyhow::Result<Shape> {
    Ok(match name {
        "llama-3.2-1b" => Shape {
            layers: 16,
            embd: 2048,
            heads: 32,
            kv_heads: 8,
            ffn: 8192,
        },
        "llama-3.2-3b" => Shape {
            layers: 28,
            embd: 3072,
            heads: 24,
            kv_heads: 8,
            ffn: 8192,
        },
        other => bail!("unknown shape `{other}`; known: llama-3.2-1b, llama-3.2-3b"),
    })
}

/// splitmix64: a fixed generator, so the file is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Standard deviation of the random weights: small enough that activations
/// stay finite through the layers.
const WEIGHT_STD: f32 = 0.02;

/// Writes `n` random values of type `ty` (F16 or Q8_0; F32 tensors here are
/// norms, all 1.0).
fn write_data(w: &mut impl Write, ty: GgmlType, n: u64, rng: &mut Rng) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 20);
    let uniform = |rng: &mut Rng| -> f32 {
        // Uniform in [-sqrt(3), sqrt(3)) std: unit variance.
        ((rng.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 1.732
    };
    let mut left = n;
    while left > 0 {
        buf.clear();
        if ty == GgmlType::F32 {
            let k = left.min(1 << 16);
            for _ in 0..k {
                buf.extend_from_slice(&1.0f32.to_le_bytes());
            }
            left -= k;
        } else if ty == GgmlType::F16 {
            let k = left.min(1 << 16);
            for _ in 0..k {
                let v = half::f16::from_f32(uniform(rng) * WEIGHT_STD);
                buf.extend_from_slice(&v.to_le_bytes());
            }
            left -= k;
        } else {
            // Q8_0: blocks of 32 values, an f16 scale then 32 int8.
            let blocks = (left / 32).min(1 << 12);
            let scale = half::f16::from_f32(WEIGHT_STD * 1.732 / 127.0);
            for _ in 0..blocks {
                buf.extend_from_slice(&scale.to_le_bytes());
                for _ in 0..4 {
                    let r = rng.next();
                    for b in 0..8 {
                        let q = ((r >> (8 * b)) & 0xff) as u8 as i8;
                        buf.push(q.max(-127) as u8);
                    }
                }
            }
            left -= blocks * 32;
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut donor = None;
    let mut shape_name = "llama-3.2-1b".to_string();
    let mut ty = GgmlType::Q8_0;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("`{a}` needs a value"));
        match a.as_str() {
            "--tokenizer-from" => donor = Some(PathBuf::from(value()?)),
            "--shape" => shape_name = value()?,
            "--type" => {
                ty = match value()?.as_str() {
                    "f16" => GgmlType::F16,
                    "q8_0" => GgmlType::Q8_0,
                    other => bail!("`--type {other}`: f16 or q8_0"),
                }
            }
            "--out" => out = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument `{other}`"),
        }
    }
    let donor = donor.context("`--tokenizer-from GGUF` is required")?;
    let out = out.context("`--out FILE` is required")?;
    let s = shape(&shape_name)?;
    let header = GgufHeader::read(&donor)?;
    let tokens = match header.get("tokenizer.ggml.tokens") {
        Some(Value::Array(Array::Str(t))) => t.len() as u64,
        _ => bail!("`{}` has no `tokenizer.ggml.tokens`", donor.display()),
    };
    let head_dim = s.embd / s.heads;
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::Str(b"llama".to_vec())),
        (
            "general.name".into(),
            Value::Str(format!("random {shape_name}").into_bytes()),
        ),
        (
            "general.file_type".into(),
            Value::U32(if ty == GgmlType::F16 { 1 } else { 7 }),
        ),
        ("llama.block_count".into(), Value::U32(s.layers as u32)),
        ("llama.context_length".into(), Value::U32(8192)),
        ("llama.embedding_length".into(), Value::U32(s.embd as u32)),
        ("llama.feed_forward_length".into(), Value::U32(s.ffn as u32)),
        (
            "llama.attention.head_count".into(),
            Value::U32(s.heads as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            Value::U32(s.kv_heads as u32),
        ),
        (
            "llama.rope.dimension_count".into(),
            Value::U32(head_dim as u32),
        ),
        ("llama.rope.freq_base".into(), Value::F32(500_000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("llama.vocab_size".into(), Value::U32(tokens as u32)),
    ];
    meta.extend(
        header
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .cloned(),
    );

    let mut tensors = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, t: GgmlType| {
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type: t,
            offset: 0,
        })
    };
    add("token_embd.weight".into(), vec![s.embd, tokens], ty);
    add("output_norm.weight".into(), vec![s.embd], GgmlType::F32);
    let kv = s.kv_heads * head_dim;
    for l in 0..s.layers {
        let b = |n: &str| format!("blk.{l}.{n}.weight");
        add(b("attn_norm"), vec![s.embd], GgmlType::F32);
        add(b("attn_q"), vec![s.embd, s.embd], ty);
        add(b("attn_k"), vec![s.embd, kv], ty);
        add(b("attn_v"), vec![s.embd, kv], ty);
        add(b("attn_output"), vec![s.embd, s.embd], ty);
        add(b("ffn_norm"), vec![s.embd], GgmlType::F32);
        add(b("ffn_gate"), vec![s.embd, s.ffn], ty);
        add(b("ffn_up"), vec![s.embd, s.ffn], ty);
        add(b("ffn_down"), vec![s.ffn, s.embd], ty);
    }
    let alignment = skulk::gguf::alignment_of(&meta);
    layout_offsets(&mut tensors, alignment)
        .map_err(|i| anyhow::anyhow!("tensor {i} has an unsized type"))?;
    let file = File::create(&out).with_context(|| format!("create `{}`", out.display()))?;
    let mut w = BufWriter::with_capacity(4 << 20, file);
    let mut pos = write_header(&mut w, &meta, &tensors)?;
    let mut rng = Rng(0x5eed);
    for t in &tensors {
        let n = t.n_elements().context("tensor size")?;
        write_data(&mut w, t.ggml_type, n, &mut rng)?;
        pos += t.n_bytes().context("tensor size")?;
        pos += write_padding(&mut w, pos, alignment)?;
    }
    w.flush()?;
    eprintln!(
        "{}: {shape_name}, {} layers, {} tensors, {:.2} GiB",
        out.display(),
        s.layers,
        tensors.len(),
        pos as f64 / (1u64 << 30) as f64
    );
    Ok(())
}
