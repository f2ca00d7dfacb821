//! Write a synthetic random-weight GGUF model of a llama.cpp architecture
//! (`skulk::synth`), with the tokenizer of a real GGUF copied in.
//!
//!     cargo run --release --example gen-model -- --arch llama OUT.gguf
//!
//! Every shape parameter overrides the architecture's small test shape; a
//! Llama 3.2 1B-shaped model (16 blocks, 2048 wide, 32 heads of 64, 8 KV
//! heads, 8192 feed-forward, 128,256 tokens, F16, about 2.5 GB):
//!
//!     cargo run --release --example gen-model -- --arch llama --layers 16 \
//!         --hidden 2048 --heads 32 --kv-heads 8 --head-dim 64 --ff 8192 \
//!         --vocab 128256 --type f16 --untied llama-3.2-1b-shape.gguf

use std::path::PathBuf;

use clap::Parser;
use skulk::gguf::GgmlType;
use skulk::synth::{write_model, SynthSpec};

#[derive(Parser)]
struct Args {
    /// `general.architecture` (llama, qwen3, gemma3, qwen3moe, ...).
    #[arg(long)]
    arch: String,
    #[arg(long)]
    layers: Option<u32>,
    #[arg(long)]
    hidden: Option<u32>,
    #[arg(long)]
    heads: Option<u32>,
    #[arg(long)]
    kv_heads: Option<u32>,
    #[arg(long)]
    head_dim: Option<u32>,
    /// Dense feed-forward width.
    #[arg(long)]
    ff: Option<u32>,
    #[arg(long)]
    experts: Option<u32>,
    #[arg(long)]
    experts_used: Option<u32>,
    /// One expert's feed-forward width.
    #[arg(long)]
    ff_exp: Option<u32>,
    /// Vocabulary size (at least the tokenizer's; padded with unused tokens).
    #[arg(long)]
    vocab: Option<u32>,
    #[arg(long)]
    context: Option<u32>,
    /// Matrix type: f32, f16 or q8_0.
    #[arg(long = "type", default_value = "f16")]
    weight_type: String,
    /// Write a separate `output.weight` instead of sharing the embeddings.
    #[arg(long)]
    untied: bool,
    #[arg(long)]
    seed: Option<u64>,
    /// GGUF whose tokenizer is copied (default: the SmolLM2 test model in
    /// `$SKULK_TEST_MODELS`).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut s = SynthSpec::tiny(&a.arch)?;
    let set = |field: &mut u32, v: Option<u32>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(&mut s.n_layer, a.layers);
    set(&mut s.n_embd, a.hidden);
    set(&mut s.n_head, a.heads);
    set(&mut s.n_head_kv, a.kv_heads);
    set(&mut s.head_dim, a.head_dim);
    set(&mut s.n_ff, a.ff);
    set(&mut s.n_expert, a.experts);
    set(&mut s.n_expert_used, a.experts_used);
    set(&mut s.n_ff_exp, a.ff_exp);
    set(&mut s.n_ctx_train, a.context);
    s.vocab = a.vocab;
    s.tie_output = !a.untied;
    if let Some(seed) = a.seed {
        s.seed = seed;
    }
    s.weight_type = match a.weight_type.to_ascii_lowercase().as_str() {
        "f32" => GgmlType::F32,
        "f16" => GgmlType::F16,
        "q8_0" => GgmlType::Q8_0,
        other => anyhow::bail!("`--type {other}`: expected f32, f16 or q8_0"),
    };
    let tokenizer = a.tokenizer.unwrap_or_else(|| {
        std::env::var_os("SKULK_TEST_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root/.cache/skulk/test-models"))
            .join("SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let report = write_model(&s, &tokenizer, &a.out)?;
    println!(
        "wrote {} ({} bytes, {} tensors, {} tokens)",
        a.out.display(),
        report.bytes,
        report.tensors,
        report.n_vocab
    );
    Ok(())
}
