//! Synthetic GGUF models: small random-weight models of llama.cpp
//! architectures, for the split-equivalence tests and for benchmarks.
//!
//! A synthetic model has the metadata keys and exactly the tensors (names,
//! shapes) that the vendored llama.cpp's `src/models/<arch>.cpp`
//! (`load_arch_hparams`, `load_arch_tensors`) asks for, and the tokenizer of
//! a real model copied in (every `tokenizer.*` key), so text goes in and out.
//! Its weights are random: whether N ranks compute exactly what one process
//! computes does not depend on the model being trained.
//!
//! Invariants: the output is a pure function of the [`SynthSpec`] and the
//! tokenizer (each tensor's values come from its own generator seeded by the
//! spec's seed and the tensor's name, so adding a tensor changes no other);
//! the file is streamed (memory independent of its size), written to a
//! temporary name and renamed into place only when complete.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::gguf::{
    alignment_of, layout_offsets, write_header, write_padding, Array, GgmlType, GgufError,
    GgufHeader, TensorInfo, Value,
};

/// The architectures the generator knows, each checked by a test that loads
/// and runs its model in llama.cpp.
pub const SYNTH_ARCHITECTURES: &[&str] = &[
    "llama",
    "mistral3",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3",
    "phi3",
    "olmo2",
    "cohere2",
    "exaone4",
    "granite",
    "qwen3moe",
    "gpt-oss",
    "deepseek2",
    "glm4moe",
    "minimax-m2",
    "llama4",
    "qwen3next",
    "qwen35moe",
    "nemotron_h",
    "lfm2",
    "granitehybrid",
];

/// `general.name` of every synthetic model. It must not contain `phi3` or
/// `phi-3`: llama.cpp's vocabulary loader then looks up a `</s>` token, which
/// the copied tokenizer need not have.
pub const SYNTH_NAME: &str = "skulk synthetic model";

/// Everything that shapes a synthetic model. [`SynthSpec::tiny`] gives the
/// test shape of each architecture; every field may be overridden.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// `general.architecture`, one of [`SYNTH_ARCHITECTURES`].
    pub arch: String,
    /// Transformer blocks, including `nextn` trailing prediction blocks.
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    /// Dense feed-forward width.
    pub n_ff: u32,
    /// Routed experts (0 for dense architectures).
    pub n_expert: u32,
    pub n_expert_used: u32,
    /// Width of one expert's feed-forward.
    pub n_ff_exp: u32,
    /// `<arch>.context_length`.
    pub n_ctx_train: u32,
    /// Sliding-window size where the architecture has one (0: none).
    pub sliding_window: u32,
    /// Leading dense blocks of a mixture-of-experts model.
    pub dense_lead: u32,
    /// Trailing next-token-prediction (MTP) blocks.
    pub nextn: u32,
    /// Llama 4: every `moe_step`-th block is a mixture of experts.
    pub moe_step: u32,
    /// Share the token embeddings with the output head (no `output.weight`)
    /// where the architecture allows it.
    pub tie_output: bool,
    /// Type of the matrices (F32, F16, Q8_0); vectors and recurrent-state
    /// parameters are always F32.
    pub weight_type: GgmlType,
    /// Vocabulary size; `None` uses the tokenizer's. A larger value pads the
    /// tokenizer with unused tokens.
    pub vocab: Option<u32>,
    pub seed: u64,
}

/// Why a model could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("architecture `{arch}` is not one the generator knows\n\nhint: known architectures: {}", SYNTH_ARCHITECTURES.join(", "))]
    UnknownArchitecture { arch: String },
    #[error("invalid shape for `{arch}`: {reason}")]
    Shape { arch: String, reason: String },
    #[error("tokenizer source `{}` has no `tokenizer.ggml.tokens` list", path.display())]
    NoTokenizer { path: PathBuf },
    #[error("vocabulary of `{vocab}` is smaller than the tokenizer's `{tokens}` tokens")]
    VocabTooSmall { vocab: u32, tokens: u32 },
    #[error("weight type `{0}` is not one the generator writes (F32, F16, Q8_0)")]
    WeightType(GgmlType),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("cannot {op} `{}`: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

impl SynthSpec {
    /// The small test shape of `arch`: a few MB with the SmolLM2 tokenizer
    /// (49,152 tokens), at least one of each special layer kind.
    pub fn tiny(arch: &str) -> Result<SynthSpec, SynthError> {
        if !SYNTH_ARCHITECTURES.contains(&arch) {
            return Err(SynthError::UnknownArchitecture { arch: arch.into() });
        }
        let mut s = SynthSpec {
            arch: arch.to_string(),
            n_layer: 8,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_ff: 128,
            n_expert: 0,
            n_expert_used: 0,
            n_ff_exp: 0,
            n_ctx_train: 4096,
            sliding_window: 0,
            dense_lead: 0,
            nextn: 0,
            moe_step: 0,
            tie_output: true,
            weight_type: GgmlType::F16,
            vocab: None,
            seed: 0x5eed_5eed,
        };
        let moe = |s: &mut SynthSpec| {
            s.n_expert = 4;
            s.n_expert_used = 2;
            s.n_ff_exp = 32;
        };
        match arch {
            // Windows smaller than the test prompts, so the sliding layers
            // really forget.
            "gemma2" | "cohere2" | "olmo2" | "gpt-oss" => s.sliding_window = 8,
            "gemma3" => {
                s.sliding_window = 8;
                s.n_layer = 13;
            }
            "phi3" | "granite" | "exaone4" | "mistral3" => s.tie_output = false,
            "qwen3moe" | "qwen3next" | "qwen35moe" => moe(&mut s),
            "deepseek2" => {
                moe(&mut s);
                s.n_head_kv = 1;
                s.dense_lead = 2;
                s.nextn = 1;
                s.n_layer = 9;
            }
            "glm4moe" => {
                moe(&mut s);
                s.head_dim = 32;
                s.dense_lead = 1;
                s.nextn = 1;
                s.n_layer = 9;
            }
            "minimax-m2" => {
                moe(&mut s);
                s.n_ff = 32;
                s.head_dim = 32;
            }
            "llama4" => {
                moe(&mut s);
                s.moe_step = 2;
            }
            _ => {}
        }
        if arch == "gpt-oss" {
            moe(&mut s);
        }
        Ok(s)
    }

    fn shape_err(&self, reason: impl Into<String>) -> SynthError {
        SynthError::Shape {
            arch: self.arch.clone(),
            reason: reason.into(),
        }
    }
}

/// How a tensor's values are drawn.
#[derive(Debug, Clone, Copy)]
enum Init {
    /// Uniform in `±1/sqrt(fan_in)`, fan-in being the first dimension.
    Matrix,
    /// Uniform in `[lo, hi)`.
    Uniform(f32, f32),
}

/// A norm's weights: around 1.
const NORM: Init = Init::Uniform(0.8, 1.2);
/// A bias: small.
const BIAS: Init = Init::Uniform(-0.05, 0.05);

struct TensorSpec {
    name: String,
    dims: Vec<u64>,
    init: Init,
    /// Stored as F32 whatever the spec's weight type (vectors, convolution
    /// and state-space parameters that ggml reads as F32).
    f32_only: bool,
}

/// Metadata and tensors of one model, built per architecture.
struct Layout {
    arch: String,
    kv: Vec<(String, Value)>,
    tensors: Vec<TensorSpec>,
}

impl Layout {
    fn key(&mut self, suffix: &str, v: Value) {
        self.kv.push((format!("{}.{suffix}", self.arch), v));
    }
    fn u32(&mut self, suffix: &str, v: u32) {
        self.key(suffix, Value::U32(v));
    }
    fn f32(&mut self, suffix: &str, v: f32) {
        self.key(suffix, Value::F32(v));
    }
    fn arr(&mut self, suffix: &str, v: Vec<i32>) {
        self.key(suffix, Value::Array(Array::I32(v)));
    }
    fn t(&mut self, name: impl Into<String>, dims: &[u32], init: Init) {
        self.tensors.push(TensorSpec {
            name: name.into(),
            dims: dims.iter().map(|&d| u64::from(d)).collect(),
            init,
            f32_only: dims.len() == 1,
        });
    }
    fn t32(&mut self, name: impl Into<String>, dims: &[u32], init: Init) {
        self.tensors.push(TensorSpec {
            name: name.into(),
            dims: dims.iter().map(|&d| u64::from(d)).collect(),
            init,
            f32_only: true,
        });
    }
    fn m(&mut self, name: impl Into<String>, dims: &[u32]) {
        self.t(name, dims, Init::Matrix);
    }
    fn norm(&mut self, name: impl Into<String>, n: u32) {
        self.t(name, &[n], NORM);
    }
}

/// `blk.<i>.<name>.weight`.
fn w(i: u32, name: &str) -> String {
    format!("blk.{i}.{name}.weight")
}

/// `blk.<i>.<name>.bias`.
fn b(i: u32, name: &str) -> String {
    format!("blk.{i}.{name}.bias")
}

/// The metadata and tensor list of `spec` (no tokenizer keys).
fn layout(spec: &SynthSpec, n_vocab: u32) -> Result<Layout, SynthError> {
    let s = spec;
    let (n, h, kv, hd, ff) = (s.n_embd, s.n_head, s.n_head_kv, s.head_dim, s.n_ff);
    let (ne, ffe) = (s.n_expert, s.n_ff_exp);
    let arch = s.arch.as_str();
    if s.n_layer == 0 || n == 0 || h == 0 || hd == 0 {
        return Err(s.shape_err("layers, hidden size, heads and head size must be positive"));
    }
    if s.nextn >= s.n_layer || s.dense_lead >= s.n_layer {
        return Err(
            s.shape_err("the leading dense and trailing prediction blocks leave no other block")
        );
    }
    let moe_arch = matches!(
        arch,
        "qwen3moe"
            | "gpt-oss"
            | "deepseek2"
            | "glm4moe"
            | "minimax-m2"
            | "llama4"
            | "qwen3next"
            | "qwen35moe"
    );
    if moe_arch && (ne == 0 || s.n_expert_used == 0 || s.n_expert_used > ne || ffe == 0) {
        return Err(
            s.shape_err("a mixture of experts needs experts, experts used and an expert width")
        );
    }
    // Architectures whose attention projections are `n_embd x n_embd`.
    if matches!(
        arch,
        "qwen2" | "phi3" | "olmo2" | "cohere2" | "exaone4" | "lfm2"
    ) && h * hd != n
    {
        return Err(s.shape_err(format!(
            "heads x head size must equal the hidden size (`{h}` x `{hd}` != `{n}`)"
        )));
    }
    let mut l = Layout {
        arch: arch.to_string(),
        kv: vec![
            ("general.architecture".into(), Value::string(arch)),
            ("general.name".into(), Value::string(SYNTH_NAME)),
        ],
        tensors: Vec::new(),
    };
    let file_type = match s.weight_type {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q8_0 => 7,
        t => return Err(SynthError::WeightType(t)),
    };
    l.kv.push(("general.file_type".into(), Value::U32(file_type)));
    l.u32("context_length", s.n_ctx_train);
    l.u32("embedding_length", n);
    l.u32("block_count", s.n_layer);
    l.u32("attention.head_count", h);
    l.u32("attention.key_length", hd);
    l.u32("attention.value_length", hd);
    l.f32("rope.freq_base", 10000.0);
    if !matches!(arch, "cohere2" | "nemotron_h") {
        l.f32("attention.layer_norm_rms_epsilon", 1e-5);
    }
    // Architectures with per-layer arrays set these themselves.
    if !matches!(arch, "nemotron_h" | "lfm2" | "granitehybrid") {
        l.u32("feed_forward_length", ff);
        l.u32("attention.head_count_kv", kv);
    }
    if ne > 0 {
        l.u32("expert_count", ne);
        l.u32("expert_used_count", s.n_expert_used);
        l.u32("expert_feed_forward_length", ffe);
    }
    if s.sliding_window > 0 {
        l.u32("attention.sliding_window", s.sliding_window);
    }

    l.m("token_embd.weight", &[n, n_vocab]);
    let out_norm = if arch == "lfm2" {
        "token_embd_norm.weight"
    } else {
        "output_norm.weight"
    };
    l.norm(out_norm, n);
    let output_required = matches!(arch, "olmo2" | "gpt-oss" | "minimax-m2");
    let output_forbidden = matches!(arch, "gemma2" | "gemma3" | "cohere2");
    if output_required || (!s.tie_output && !output_forbidden) {
        l.m("output.weight", &[n, n_vocab]);
    }

    // Shared building blocks.
    let attn_qkv = |l: &mut Layout, i: u32, q: u32, k: u32, v: u32| {
        l.m(w(i, "attn_q"), &[n, q]);
        l.m(w(i, "attn_k"), &[n, k]);
        l.m(w(i, "attn_v"), &[n, v]);
    };
    let ffn = |l: &mut Layout, i: u32, width: u32| {
        l.m(w(i, "ffn_gate"), &[n, width]);
        l.m(w(i, "ffn_down"), &[width, n]);
        l.m(w(i, "ffn_up"), &[n, width]);
    };
    let experts = |l: &mut Layout, i: u32, width: u32| {
        l.m(w(i, "ffn_gate_inp"), &[n, ne]);
        l.m(w(i, "ffn_gate_exps"), &[n, width, ne]);
        l.m(w(i, "ffn_down_exps"), &[width, n, ne]);
        l.m(w(i, "ffn_up_exps"), &[n, width, ne]);
    };
    let shared_expert = |l: &mut Layout, i: u32, width: u32| {
        l.m(w(i, "ffn_gate_shexp"), &[n, width]);
        l.m(w(i, "ffn_down_shexp"), &[width, n]);
        l.m(w(i, "ffn_up_shexp"), &[n, width]);
    };
    let nextn_block = |l: &mut Layout, i: u32| {
        l.m(w(i, "nextn.eh_proj"), &[2 * n, n]);
        l.norm(w(i, "nextn.enorm"), n);
        l.norm(w(i, "nextn.hnorm"), n);
    };
    let layers = 0..s.n_layer;

    match arch {
        "llama" | "mistral3" | "granite" => {
            l.u32("rope.dimension_count", hd);
            if arch == "llama" {
                // Llama 3's per-frequency RoPE factors (global tensor).
                l.t("rope_freqs.weight", &[hd / 2], Init::Uniform(1.0, 8.0));
            }
            if arch == "granite" {
                l.f32("logit_scale", 8.0);
                l.f32("residual_scale", 0.22);
                l.f32("embedding_scale", 12.0);
                l.f32("attention.scale", 0.015625);
            }
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                attn_qkv(&mut l, i, h * hd, kv * hd, kv * hd);
                l.m(w(i, "attn_output"), &[h * hd, n]);
                l.norm(w(i, "ffn_norm"), n);
                ffn(&mut l, i, ff);
            }
        }
        "qwen2" => {
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                attn_qkv(&mut l, i, n, kv * hd, kv * hd);
                l.t(b(i, "attn_q"), &[n], BIAS);
                l.t(b(i, "attn_k"), &[kv * hd], BIAS);
                l.t(b(i, "attn_v"), &[kv * hd], BIAS);
                l.m(w(i, "attn_output"), &[n, n]);
                l.norm(w(i, "ffn_norm"), n);
                ffn(&mut l, i, ff);
            }
        }
        "qwen3" | "qwen3moe" => {
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                attn_qkv(&mut l, i, h * hd, kv * hd, kv * hd);
                l.m(w(i, "attn_output"), &[h * hd, n]);
                l.norm(w(i, "attn_k_norm"), hd);
                l.norm(w(i, "attn_q_norm"), hd);
                l.norm(w(i, "ffn_norm"), n);
                if arch == "qwen3" {
                    ffn(&mut l, i, ff);
                } else {
                    experts(&mut l, i, ffe);
                }
            }
        }
        "gemma2" | "gemma3" => {
            if arch == "gemma2" {
                l.f32("attn_logit_softcapping", 50.0);
                l.f32("final_logit_softcapping", 30.0);
            }
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                attn_qkv(&mut l, i, h * hd, kv * hd, kv * hd);
                l.m(w(i, "attn_output"), &[h * hd, n]);
                l.norm(w(i, "post_attention_norm"), n);
                if arch == "gemma3" {
                    l.norm(w(i, "attn_k_norm"), hd);
                    l.norm(w(i, "attn_q_norm"), hd);
                }
                l.norm(w(i, "ffn_norm"), n);
                ffn(&mut l, i, ff);
                l.norm(w(i, "post_ffw_norm"), n);
            }
        }
        "phi3" => {
            l.u32("rope.dimension_count", hd);
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                l.m(w(i, "attn_qkv"), &[n, n + 2 * kv * hd]);
                l.m(w(i, "attn_output"), &[n, n]);
                l.norm(w(i, "ffn_norm"), n);
                l.m(w(i, "ffn_down"), &[ff, n]);
                l.m(w(i, "ffn_up"), &[n, 2 * ff]);
            }
        }
        "olmo2" => {
            for i in layers {
                attn_qkv(&mut l, i, n, kv * hd, kv * hd);
                l.m(w(i, "attn_output"), &[n, n]);
                l.norm(w(i, "attn_q_norm"), n);
                l.norm(w(i, "attn_k_norm"), kv * hd);
                l.norm(w(i, "post_attention_norm"), n);
                ffn(&mut l, i, ff);
                l.norm(w(i, "post_ffw_norm"), n);
            }
        }
        "cohere2" => {
            l.f32("logit_scale", 0.25);
            l.f32("attention.layer_norm_epsilon", 1e-5);
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                attn_qkv(&mut l, i, n, kv * hd, kv * hd);
                l.m(w(i, "attn_output"), &[n, n]);
                ffn(&mut l, i, ff);
            }
        }
        "exaone4" => {
            for i in layers {
                attn_qkv(&mut l, i, h * hd, kv * hd, kv * hd);
                l.m(w(i, "attn_output"), &[n, n]);
                l.norm(w(i, "post_attention_norm"), n);
                l.norm(w(i, "attn_q_norm"), hd);
                l.norm(w(i, "attn_k_norm"), hd);
                ffn(&mut l, i, ff);
                l.norm(w(i, "post_ffw_norm"), n);
            }
        }
        "gpt-oss" => {
            l.u32("rope.dimension_count", hd);
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                l.norm(w(i, "post_attention_norm"), n);
                attn_qkv(&mut l, i, h * hd, kv * hd, kv * hd);
                l.t(b(i, "attn_q"), &[h * hd], BIAS);
                l.t(b(i, "attn_k"), &[kv * hd], BIAS);
                l.t(b(i, "attn_v"), &[kv * hd], BIAS);
                l.m(w(i, "attn_output"), &[h * hd, n]);
                l.t(w(i, "attn_sinks"), &[h], Init::Uniform(-1.0, 1.0));
                experts(&mut l, i, ffe);
                l.t(b(i, "attn_output"), &[n], BIAS);
                l.t(b(i, "ffn_gate_inp"), &[ne], BIAS);
                l.t32(b(i, "ffn_gate_exps"), &[ffe, ne], BIAS);
                l.t32(b(i, "ffn_down_exps"), &[n, ne], BIAS);
                l.t32(b(i, "ffn_up_exps"), &[ffe, ne], BIAS);
            }
        }
        "deepseek2" => {
            // Multi-head latent attention as current GGUFs store it (the
            // decompression matrices split into `attn_k_b` and `attn_v_b`).
            let (q_lora, kv_lora, rope, nope, v_mla) = (32, 32, hd, hd, hd);
            l.u32("leading_dense_block_count", s.dense_lead);
            l.u32("nextn_predict_layers", s.nextn);
            l.u32("attention.q_lora_rank", q_lora);
            l.u32("attention.kv_lora_rank", kv_lora);
            l.u32("attention.key_length_mla", nope + rope);
            l.u32("attention.value_length_mla", v_mla);
            // The cache holds the compressed latent plus the rope part.
            set_key(&mut l, "attention.key_length", Value::U32(kv_lora + rope));
            set_key(&mut l, "attention.value_length", Value::U32(kv_lora));
            l.u32("rope.dimension_count", rope);
            l.u32("expert_shared_count", 1);
            l.f32("expert_weights_scale", 2.5);
            l.key("expert_weights_norm", Value::Bool(true));
            l.u32("expert_gating_func", 2);
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                l.norm(w(i, "attn_q_a_norm"), q_lora);
                l.norm(w(i, "attn_kv_a_norm"), kv_lora);
                l.m(w(i, "attn_q_a"), &[n, q_lora]);
                l.m(w(i, "attn_q_b"), &[q_lora, h * (nope + rope)]);
                l.m(w(i, "attn_kv_a_mqa"), &[n, kv_lora + rope]);
                l.m(w(i, "attn_k_b"), &[nope, kv_lora, h]);
                l.m(w(i, "attn_v_b"), &[kv_lora, v_mla, h]);
                l.m(w(i, "attn_output"), &[h * v_mla, n]);
                l.norm(w(i, "ffn_norm"), n);
                if i < s.dense_lead {
                    ffn(&mut l, i, ff);
                } else {
                    experts(&mut l, i, ffe);
                    l.t(b(i, "exp_probs_b"), &[ne], BIAS);
                    shared_expert(&mut l, i, ffe);
                }
                if i >= s.n_layer - s.nextn {
                    nextn_block(&mut l, i);
                }
            }
        }
        "glm4moe" => {
            l.u32("leading_dense_block_count", s.dense_lead);
            l.u32("nextn_predict_layers", s.nextn);
            l.u32("expert_shared_count", 1);
            l.f32("expert_weights_scale", 2.5);
            l.key("expert_weights_norm", Value::Bool(true));
            l.u32("expert_gating_func", 2);
            // GLM 4.5 rotates half of each head.
            l.u32("rope.dimension_count", hd / 2);
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                attn_qkv(&mut l, i, h * hd, kv * hd, kv * hd);
                l.t(b(i, "attn_q"), &[h * hd], BIAS);
                l.t(b(i, "attn_k"), &[kv * hd], BIAS);
                l.t(b(i, "attn_v"), &[kv * hd], BIAS);
                l.m(w(i, "attn_output"), &[h * hd, n]);
                l.norm(w(i, "post_attention_norm"), n);
                if i < s.dense_lead {
                    ffn(&mut l, i, ff);
                } else {
                    experts(&mut l, i, ffe);
                    l.t(b(i, "exp_probs_b"), &[ne], BIAS);
                    shared_expert(&mut l, i, ffe);
                }
                if i >= s.n_layer - s.nextn {
                    nextn_block(&mut l, i);
                }
            }
        }
        "minimax-m2" => {
            l.u32("rope.dimension_count", hd / 2);
            l.u32("expert_gating_func", 2);
            set_key(&mut l, "expert_feed_forward_length", Value::U32(ff));
            for i in layers {
                attn_qkv(&mut l, i, h * hd, kv * hd, kv * hd);
                l.m(w(i, "attn_output"), &[h * hd, n]);
                l.norm(w(i, "attn_norm"), n);
                l.norm(w(i, "attn_q_norm"), h * hd);
                l.norm(w(i, "attn_k_norm"), kv * hd);
                l.norm(w(i, "ffn_norm"), n);
                experts(&mut l, i, ff);
                l.t(b(i, "exp_probs_b"), &[ne], BIAS);
            }
        }
        "llama4" => {
            if s.moe_step == 0 {
                return Err(s.shape_err("Llama 4 needs a mixture-of-experts step"));
            }
            l.u32("interleave_moe_layer_step", s.moe_step);
            l.u32("rope.dimension_count", hd);
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                attn_qkv(&mut l, i, h * hd, kv * hd, kv * hd);
                l.m(w(i, "attn_output"), &[h * hd, n]);
                l.norm(w(i, "ffn_norm"), n);
                if (i + 1) % s.moe_step == 0 {
                    experts(&mut l, i, ffe);
                    shared_expert(&mut l, i, ffe);
                } else {
                    ffn(&mut l, i, ff);
                }
            }
        }
        "qwen3next" | "qwen35moe" => {
            // Gated delta net: k heads of `state` keys, v heads of `state`
            // values.
            let (d_conv, state, k_heads, v_heads) = (4u32, 16u32, 2u32, 4u32);
            let (key_dim, value_dim) = (state * k_heads, state * v_heads);
            l.u32("ssm.conv_kernel", d_conv);
            l.u32("ssm.inner_size", value_dim);
            l.u32("ssm.state_size", state);
            l.u32("ssm.time_step_rank", v_heads);
            l.u32("ssm.group_count", k_heads);
            l.u32("full_attention_interval", 4);
            l.u32("expert_shared_feed_forward_length", ffe);
            if arch == "qwen35moe" {
                // Interleaved M-RoPE over a quarter of each head.
                l.u32("rope.dimension_count", hd / 2);
                l.arr("rope.dimension_sections", vec![2, 1, 1, 0]);
            } else {
                l.u32("rope.dimension_count", hd / 2);
            }
            for i in layers {
                l.norm(w(i, "attn_norm"), n);
                l.norm(w(i, "post_attention_norm"), n);
                if (i + 1) % 4 == 0 {
                    attn_qkv(&mut l, i, h * hd * 2, kv * hd, kv * hd);
                    l.m(w(i, "attn_output"), &[h * hd, n]);
                    l.norm(w(i, "attn_q_norm"), hd);
                    l.norm(w(i, "attn_k_norm"), hd);
                } else {
                    l.m(w(i, "attn_qkv"), &[n, key_dim * 2 + value_dim]);
                    l.m(w(i, "attn_gate"), &[n, value_dim]);
                    l.t32(
                        w(i, "ssm_conv1d"),
                        &[d_conv, key_dim * 2 + value_dim],
                        Init::Matrix,
                    );
                    l.t(b(i, "ssm_dt"), &[v_heads], BIAS);
                    l.t(
                        format!("blk.{i}.ssm_a"),
                        &[v_heads],
                        Init::Uniform(-1.0, -0.1),
                    );
                    if arch == "qwen3next" {
                        l.m(w(i, "ssm_ba"), &[n, 2 * v_heads]);
                    } else {
                        l.m(w(i, "ssm_beta"), &[n, v_heads]);
                        l.m(w(i, "ssm_alpha"), &[n, v_heads]);
                    }
                    l.norm(w(i, "ssm_norm"), state);
                    l.m(w(i, "ssm_out"), &[value_dim, n]);
                }
                experts(&mut l, i, ffe);
                l.t(w(i, "ffn_gate_inp_shexp"), &[n], Init::Matrix);
                shared_expert(&mut l, i, ffe);
            }
        }
        "nemotron_h" | "granitehybrid" => {
            // Mamba 2 mixer: d_inner = 2 x hidden, heads of 16 channels.
            let (d_conv, d_inner, d_state, groups) = (4u32, 2 * n, 16u32, 2u32);
            let ssm_heads = d_inner / 16;
            l.u32("ssm.conv_kernel", d_conv);
            l.u32("ssm.inner_size", d_inner);
            l.u32("ssm.state_size", d_state);
            l.u32("ssm.time_step_rank", ssm_heads);
            l.u32("ssm.group_count", groups);
            // Layer kinds: M = Mamba, A = attention, F = feed-forward
            // (nemotron_h has separate blocks; granitehybrid puts a
            // feed-forward in every block).
            let kinds: Vec<char> = (0..s.n_layer)
                .map(|i| match (arch, i % 4) {
                    ("nemotron_h", 1) => 'F',
                    (_, 2) => 'A',
                    _ => 'M',
                })
                .collect();
            let kv_arr = kinds
                .iter()
                .map(|&k| if k == 'A' { kv as i32 } else { 0 })
                .collect();
            l.arr("attention.head_count_kv", kv_arr);
            if arch == "nemotron_h" {
                let ff_arr = kinds
                    .iter()
                    .map(|&k| if k == 'F' { ff as i32 } else { 0 })
                    .collect();
                l.arr("feed_forward_length", ff_arr);
                l.f32("attention.layer_norm_epsilon", 1e-5);
                l.f32("attention.layer_norm_rms_epsilon", 1e-5);
            } else {
                l.u32("feed_forward_length", ff);
                l.f32("logit_scale", 8.0);
                l.f32("residual_scale", 0.22);
                l.f32("embedding_scale", 12.0);
                l.f32("attention.scale", 0.015625);
                l.u32("rope.dimension_count", hd);
            }
            let d_in_proj = 2 * d_inner + 2 * groups * d_state + ssm_heads;
            for (i, &kind) in (0..s.n_layer).zip(&kinds) {
                l.norm(w(i, "attn_norm"), n);
                match kind {
                    'M' => {
                        l.m(w(i, "ssm_in"), &[n, d_in_proj]);
                        l.t32(
                            w(i, "ssm_conv1d"),
                            &[d_conv, d_inner + 2 * groups * d_state],
                            Init::Matrix,
                        );
                        l.t(b(i, "ssm_conv1d"), &[d_inner + 2 * groups * d_state], BIAS);
                        l.t(b(i, "ssm_dt"), &[ssm_heads], BIAS);
                        l.t32(
                            format!("blk.{i}.ssm_a"),
                            &[1, ssm_heads],
                            Init::Uniform(-1.0, -0.1),
                        );
                        l.t32(
                            format!("blk.{i}.ssm_d"),
                            &[1, ssm_heads],
                            Init::Uniform(0.5, 1.5),
                        );
                        l.t32(w(i, "ssm_norm"), &[d_inner / groups, groups], NORM);
                        l.m(w(i, "ssm_out"), &[d_inner, n]);
                    }
                    'A' => {
                        attn_qkv(&mut l, i, h * hd, kv * hd, kv * hd);
                        l.m(w(i, "attn_output"), &[h * hd, n]);
                    }
                    _ => {
                        l.m(w(i, "ffn_down"), &[ff, n]);
                        l.m(w(i, "ffn_up"), &[n, ff]);
                    }
                }
                if arch == "granitehybrid" {
                    l.norm(w(i, "ffn_norm"), n);
                    ffn(&mut l, i, ff);
                }
            }
        }
        "lfm2" => {
            let l_cache = 3u32;
            l.u32("shortconv.l_cache", l_cache);
            // Attention every third block, short convolutions elsewhere.
            let kv_arr = (0..s.n_layer)
                .map(|i| if i % 3 == 2 { kv as i32 } else { 0 })
                .collect();
            l.arr("attention.head_count_kv", kv_arr);
            l.u32("feed_forward_length", ff);
            for i in layers {
                l.norm(w(i, "ffn_norm"), n);
                ffn(&mut l, i, ff);
                l.norm(w(i, "attn_norm"), n);
                if i % 3 == 2 {
                    l.norm(w(i, "attn_q_norm"), hd);
                    l.norm(w(i, "attn_k_norm"), hd);
                    attn_qkv(&mut l, i, n, kv * hd, kv * hd);
                    l.m(w(i, "attn_output"), &[n, n]);
                } else {
                    l.t32(w(i, "shortconv.conv"), &[l_cache, n], Init::Matrix);
                    l.m(w(i, "shortconv.in_proj"), &[n, 3 * n]);
                    l.m(w(i, "shortconv.out_proj"), &[n, n]);
                }
            }
        }
        _ => return Err(SynthError::UnknownArchitecture { arch: arch.into() }),
    }
    Ok(l)
}

/// Replaces an already-set `<arch>.<suffix>` key.
fn set_key(l: &mut Layout, suffix: &str, v: Value) {
    let key = format!("{}.{suffix}", l.arch);
    match l.kv.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = v,
        None => l.kv.push((key, v)),
    }
}

/// A deterministic generator per tensor (splitmix64): stable across
/// platforms and crate versions, unlike the `rand` crate's seeded engines.
struct SplitMix(u64);

impl SplitMix {
    fn for_tensor(seed: u64, name: &str) -> SplitMix {
        // FNV-1a of the name, mixed with the seed.
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        SplitMix(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)` with 24 bits of resolution.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

/// ggml's reference Q8_0 quantisation (`quantize_row_q8_0_ref`): blocks of 32
/// values, an f16 scale `max|x| / 127` and 32 rounded i8.
fn quantize_q8_0(values: &[f32], out: &mut Vec<u8>) {
    for block in values.chunks(32) {
        let amax = block.iter().fold(0f32, |m, &x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|&x| (x * id).round() as i8 as u8));
    }
}

/// What [`write_model`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthReport {
    pub bytes: u64,
    pub tensors: usize,
    pub n_vocab: u32,
}

/// Writes the model `spec` describes to `out`, with the tokenizer of the GGUF
/// file `tokenizer_from`.
pub fn write_model(
    spec: &SynthSpec,
    tokenizer_from: &Path,
    out: &Path,
) -> Result<SynthReport, SynthError> {
    let source = GgufHeader::read(tokenizer_from)?;
    let mut tokenizer: Vec<(String, Value)> = source
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .cloned()
        .collect();
    let n_tokens = match source.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len() as u32,
        _ => {
            return Err(SynthError::NoTokenizer {
                path: tokenizer_from.into(),
            })
        }
    };
    let n_vocab = spec.vocab.unwrap_or(n_tokens);
    if n_vocab < n_tokens {
        return Err(SynthError::VocabTooSmall {
            vocab: n_vocab,
            tokens: n_tokens,
        });
    }
    if n_vocab > n_tokens {
        pad_vocabulary(&mut tokenizer, n_tokens, n_vocab);
    }
    let layout = layout(spec, n_vocab)?;
    let mut metadata = layout.kv;
    metadata.extend(tokenizer);

    let mut infos: Vec<TensorInfo> = Vec::with_capacity(layout.tensors.len());
    for t in &layout.tensors {
        let ggml_type = if t.f32_only {
            GgmlType::F32
        } else {
            match spec.weight_type {
                GgmlType::Q8_0 if t.dims[0] % 32 != 0 => GgmlType::F16,
                ty => ty,
            }
        };
        infos.push(TensorInfo {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type,
            offset: 0,
        });
    }
    let alignment = alignment_of(&metadata);
    layout_offsets(&mut infos, alignment).expect("the generator writes known types");

    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.synth.tmp", std::process::id()));
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |error| SynthError::Io { op, path, error }
    };
    let result = (|| {
        let file = File::create(&tmp).map_err(io("create", &tmp))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let data_offset = write_header(&mut w, &metadata, &infos).map_err(io("write", &tmp))?;
        let mut pos = 0u64;
        let mut buf = Vec::new();
        for (t, info) in layout.tensors.iter().zip(&infos) {
            let mut rng = SplitMix::for_tensor(spec.seed, &t.name);
            let (lo, hi) = match t.init {
                Init::Matrix => {
                    let a = 1.0 / (t.dims[0] as f32).sqrt();
                    (-a, a)
                }
                Init::Uniform(lo, hi) => (lo, hi),
            };
            let row = t.dims[0] as usize;
            let total = info.n_elements().expect("known") as usize;
            // Rows are generated in chunks of about a million values.
            let rows_per_chunk = ((1usize << 20) / row).max(1);
            let mut values = Vec::with_capacity(rows_per_chunk * row);
            let mut done = 0usize;
            while done < total {
                let take = (rows_per_chunk * row).min(total - done);
                values.clear();
                values.extend((0..take).map(|_| rng.uniform(lo, hi)));
                buf.clear();
                match info.ggml_type {
                    GgmlType::F32 => buf.extend(values.iter().flat_map(|v| v.to_le_bytes())),
                    GgmlType::F16 => buf.extend(
                        values
                            .iter()
                            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes()),
                    ),
                    GgmlType::Q8_0 => quantize_q8_0(&values, &mut buf),
                    other => return Err(SynthError::WeightType(other)),
                }
                w.write_all(&buf).map_err(io("write", &tmp))?;
                done += take;
            }
            pos += info.n_bytes().expect("known");
            pos += write_padding(&mut w, pos, alignment).map_err(io("write", &tmp))?;
        }
        w.flush().map_err(io("write", &tmp))?;
        let file = w.into_inner().map_err(|e| SynthError::Io {
            op: "write",
            path: tmp.clone(),
            error: e.into_error(),
        })?;
        file.sync_all().map_err(io("sync", &tmp))?;
        fs::rename(&tmp, out).map_err(io("rename into place", out))?;
        Ok(SynthReport {
            bytes: data_offset + pos,
            tensors: infos.len(),
            n_vocab,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Appends unused tokens `<|skulk_pad_N|>` so the vocabulary has `n_vocab`
/// entries (llama.cpp requires one per embedding row).
fn pad_vocabulary(kv: &mut [(String, Value)], n_tokens: u32, n_vocab: u32) {
    /// `LLAMA_TOKEN_TYPE_UNUSED`.
    const UNUSED: i32 = 5;
    for (key, value) in kv.iter_mut() {
        match (key.as_str(), value) {
            ("tokenizer.ggml.tokens", Value::Array(Array::Str(v))) => {
                v.extend((n_tokens..n_vocab).map(|i| format!("<|skulk_pad_{i}|>").into_bytes()))
            }
            ("tokenizer.ggml.token_type", Value::Array(Array::I32(v))) => {
                v.resize(n_vocab as usize, UNUSED)
            }
            ("tokenizer.ggml.scores", Value::Array(Array::F32(v))) => {
                v.resize(n_vocab as usize, 0.0)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_matches_ggml_reference_layout() {
        let values: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let mut out = Vec::new();
        quantize_q8_0(&values, &mut out);
        assert_eq!(out.len(), 34);
        let d = half::f16::from_le_bytes([out[0], out[1]]).to_f32();
        assert!((d - 16.0 / 127.0).abs() < 1e-3);
        assert_eq!(out[2] as i8, -127);
        assert_eq!(out[2 + 16] as i8, 0);
    }

    #[test]
    fn tensor_values_depend_on_seed_and_name_only() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = SplitMix::for_tensor(1, "x");
                move |_| r.next()
            })
            .collect();
        let mut r = SplitMix::for_tensor(1, "x");
        assert_eq!(a, (0..4).map(|_| r.next()).collect::<Vec<_>>());
        assert_ne!(
            SplitMix::for_tensor(1, "x").next(),
            SplitMix::for_tensor(1, "y").next()
        );
        assert_ne!(
            SplitMix::for_tensor(1, "x").next(),
            SplitMix::for_tensor(2, "x").next()
        );
    }

    #[test]
    fn every_known_architecture_has_a_layout() {
        for arch in SYNTH_ARCHITECTURES {
            let spec = SynthSpec::tiny(arch).unwrap();
            let l = layout(&spec, 1000).unwrap_or_else(|e| panic!("{arch}: {e}"));
            assert!(l.tensors.iter().any(|t| t.name == "token_embd.weight"));
            assert!(
                l.tensors.iter().any(|t| t.name.starts_with("blk.0.")),
                "{arch}"
            );
        }
        assert!(matches!(
            SynthSpec::tiny("gpt2"),
            Err(SynthError::UnknownArchitecture { .. })
        ));
    }
}
