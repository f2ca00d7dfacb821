//! One rank's compute: a contiguous layer range of a GGUF model.
//!
//! The ring and the API only know the [`Stage`] and [`Tokenizer`] traits and
//! the pure-Rust [`Sampler`]; the llama.cpp implementation ([`load`]) lives
//! behind the `engine` cargo feature. The invariant this module guards:
//! chaining the stages of a model's layer ranges in order gives, token for
//! token, what the whole model gives in one stage (proved by
//! `tests/integration/arch_equivalence.rs` for every architecture in
//! [`SUPPORTED_ARCHITECTURES`], on generated models, and by
//! `tests/integration/engine_equivalence.rs` on real ones).

use std::path::PathBuf;

mod sampler;

#[cfg(feature = "engine")]
mod ffi;
#[cfg(feature = "engine")]
mod llama;

pub use sampler::{Sampled, Sampler, TokenLogprobs, NO_TOKEN};

#[cfg(feature = "engine")]
pub use ffi::supports_gpu_offload;
#[cfg(feature = "engine")]
pub use llama::load;

/// Architectures (GGUF `general.architecture`) whose layer-range stages are
/// proved equivalent to the whole model by `tests/integration/arch_equivalence.rs` (and
/// `tests/integration/engine_equivalence.rs` on real models), with the cut rules of
/// `gguf::check_cut` (`docs/architectures.md`). Any other architecture runs
/// only whole (one rank): per-layer attributes that llama.cpp derives from
/// the layer index or the layer count, or transformations of injected
/// hidden rows, could otherwise give wrong output silently.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    // dense
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
    // mixture of experts
    "qwen3moe",
    "gpt-oss",
    "deepseek2",
    "glm4moe",
    "minimax-m2",
    "llama4",
    // hybrid: attention and recurrent layers
    "qwen3next",
    "qwen35moe",
    "nemotron_h",
    "lfm2",
    "granitehybrid",
];

/// Every `general.architecture` the vendored llama.cpp knows
/// (`LLM_ARCH_NAMES` in its `src/llama-arch.cpp`, without the `clip`
/// placeholder), in its order. A one-rank plan runs any of them; `skulk
/// plan` reads a card's `family` as the architecture when it is one.
pub const LLAMA_CPP_ARCHITECTURES: &[&str] = &[
    "llama",
    "llama4",
    "deci",
    "falcon",
    "grok",
    "gpt2",
    "gptj",
    "gptneox",
    "mpt",
    "baichuan",
    "starcoder",
    "refact",
    "bert",
    "modern-bert",
    "nomic-bert",
    "nomic-bert-moe",
    "neo-bert",
    "jina-bert-v2",
    "jina-bert-v3",
    "eurobert",
    "bloom",
    "stablelm",
    "qwen",
    "qwen2",
    "qwen2moe",
    "qwen2vl",
    "qwen3",
    "qwen3moe",
    "qwen3next",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "clef",
    "qwen4exp",
    "phi2",
    "phi3",
    "phimoe",
    "plamo",
    "plamo2",
    "plamo3",
    "codeshell",
    "orion",
    "internlm2",
    "minicpm",
    "minicpm3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4-assistant",
    "gemma-embedding",
    "starcoder2",
    "mamba",
    "mamba2",
    "maple",
    "jamba",
    "falcon-h1",
    "xverse",
    "command-r",
    "cohere2",
    "cohere2moe",
    "dbrx",
    "olmo",
    "olmo2",
    "olmoe",
    "muse-glimmer",
    "openelm",
    "arctic",
    "deepseek",
    "deepseek2",
    "deepseek2-ocr",
    "deepseek32",
    "deepseek4",
    "chatglm",
    "glm4",
    "glm4moe",
    "glm-dsa",
    "bitnet",
    "t5",
    "t5encoder",
    "jais",
    "jais2",
    "nemotron",
    "nemotron_h",
    "nemotron_h_moe",
    "exaone",
    "exaone4",
    "exaone-moe",
    "rwkv6",
    "rwkv6qwen2",
    "rwkv7",
    "arwkv7",
    "granite",
    "granitemoe",
    "granitehybrid",
    "graniteswitch",
    "granite_swa",
    "chameleon",
    "wavtokenizer-dec",
    "plm",
    "bailingmoe",
    "bailingmoe2",
    "bailingmoe3",
    "dots1",
    "dots3note",
    "arcee",
    "afmoe",
    "laguna",
    "ernie4_5",
    "ernie4_5-moe",
    "hunyuan-moe",
    "hunyuan-dense",
    "hunyuan_vl",
    "hy_v3",
    "hy_v4",
    "smollm3",
    "gpt-oss",
    "lfm2",
    "lfm2moe",
    "dream",
    "smallthinker",
    "llada",
    "llada-moe",
    "seed_oss",
    "grovemoe",
    "apertus",
    "minimax-01",
    "hrm_text",
    "minimax-m2",
    "minimax-m3",
    "cogvlm",
    "rnd1",
    "pangu-embedded",
    "mistral3",
    "eagle3",
    "dflash",
    "mistral4",
    "paddleocr",
    "mimo2",
    "step35",
    "spark2_5",
    "llama-embed",
    "maincoder",
    "kimi-linear",
    "kimi-k3",
    "glm5-next",
    "talkie",
    "mellum",
    "nanbeige",
    "qwen3tts",
    "pockettts",
];

/// Input of one forward pass: tokens on the first rank, hidden rows elsewhere.
pub enum StageInput<'a> {
    Tokens(&'a [i32]),
    /// `n_tokens x n_embd` f32 values, row-major.
    Hidden {
        data: &'a [f32],
        n_tokens: usize,
    },
}

/// Output of one single-sequence forward pass ([`Stage::forward`]).
#[derive(Debug)]
pub enum StageOutput {
    /// `n_tokens x n_embd` row-major (non-last ranks).
    Hidden(Vec<f32>),
    /// Logits of the last token, `n_vocab` values (last rank).
    Logits(Vec<f32>),
}

/// One sequence's share of a batch: `n_tokens` consecutive positions of
/// sequence `seq` starting at `pos0` (the sequence's next position in the
/// cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqSpan {
    /// Sequence id, below [`Stage::n_seq_max`].
    pub seq: u32,
    pub pos0: u32,
    pub n_tokens: u32,
    /// The last rank returns the logits of this span's last token.
    pub logits: bool,
}

/// Output of [`Stage::forward_batch`].
#[derive(Debug)]
pub enum BatchOutput {
    /// Every row of the batch, in span order (non-last ranks).
    Hidden(Vec<f32>),
    /// `n_vocab` logits per span that asked for them, in span order (last
    /// rank).
    Logits(Vec<Vec<f32>>),
}

/// One rank's share of a model: its layers and its KV cache, which holds up
/// to [`Stage::n_seq_max`] sequences in one pool of [`Stage::n_ctx`] cells.
pub trait Stage: Send {
    fn n_embd(&self) -> usize;
    fn n_vocab(&self) -> usize;
    /// Cells of the KV cache, shared by all sequences; also the highest
    /// position (exclusive) any one sequence may reach.
    fn n_ctx(&self) -> u32;
    /// Sequences the cache holds at once (ids `0..n_seq_max`).
    fn n_seq_max(&self) -> u32;
    /// Tokens of one llama.cpp decode: a longer batch is cut into decodes of
    /// this many tokens (the same cut on every rank).
    fn max_batch(&self) -> usize;
    fn is_first(&self) -> bool;
    fn is_last(&self) -> bool;
    /// Run one batch: the tokens (or rows) of `spans`, concatenated in span
    /// order. Each span's sequence must appear once, and its `pos0` must be
    /// the sequence's next position (0 after `truncate_seq(seq, 0)`).
    fn forward_batch(
        &mut self,
        spans: &[SeqSpan],
        input: StageInput<'_>,
    ) -> Result<BatchOutput, EngineError>;
    /// Drop sequence `seq`'s KV entries at positions >= `from` (0 drops all
    /// of them); other sequences are untouched.
    fn truncate_seq(&mut self, seq: u32, from: u32) -> Result<(), EngineError>;
    /// Whether [`Stage::truncate_seq`] at any position keeps a prefix that
    /// later tokens can attend to exactly as if it had just been computed
    /// (false for sliding-window caches, which forget old positions).
    fn reuses_prefixes(&self) -> bool;

    /// Run `input` as sequence 0 at consecutive positions from `pos0`.
    fn forward(&mut self, input: StageInput<'_>, pos0: u32) -> Result<StageOutput, EngineError> {
        let n_tokens = match &input {
            StageInput::Tokens(t) => t.len(),
            StageInput::Hidden { n_tokens, .. } => *n_tokens,
        };
        let span = SeqSpan {
            seq: 0,
            pos0,
            n_tokens: u32::try_from(n_tokens).unwrap_or(u32::MAX),
            logits: true,
        };
        Ok(match self.forward_batch(&[span], input)? {
            BatchOutput::Hidden(rows) => StageOutput::Hidden(rows),
            BatchOutput::Logits(mut rows) => StageOutput::Logits(rows.pop().unwrap_or_default()),
        })
    }

    /// Drop sequence 0's entries at positions >= `from`.
    fn truncate_kv(&mut self, from: u32) -> Result<(), EngineError> {
        self.truncate_seq(0, from)
    }
}

/// Text <-> tokens; available on every rank (rank-local GGUFs keep the
/// tokenizer metadata).
pub trait Tokenizer: Send + Sync {
    /// Render `messages` with the model's chat template (or the
    /// architecture's built-in one when the GGUF carries none).
    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError>;
    /// Special tokens written in `text` (e.g. `<|im_start|>`) are parsed as
    /// such; `add_special` adds BOS/EOS where the model asks for them.
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<i32>, EngineError>;
    /// Bytes of one token (may be a partial UTF-8 sequence); empty for ids
    /// outside the vocabulary and for control tokens.
    fn token_to_piece(&self, token: i32) -> Vec<u8>;
    /// End of generation (EOS, EOT, ...); false for ids outside the vocabulary.
    fn is_eog(&self, token: i32) -> bool;
    /// Bytes of one token with control tokens written out (`<|channel|>`,
    /// `[TOOL_CALLS]`): what an output parser looking for such markers
    /// reads.
    fn token_to_piece_special(&self, token: i32) -> Vec<u8> {
        self.token_to_piece(token)
    }
    /// The GGUF's Jinja chat template (`tokenizer.chat_template`), if any.
    fn chat_template(&self) -> Option<String> {
        None
    }
    /// Text of the BOS and EOS tokens, which chat templates write
    /// themselves (`bos_token`, `eos_token`).
    fn bos_eos_text(&self) -> (Option<String>, Option<String>) {
        (None, None)
    }
    /// A grammar constraint over this vocabulary. Errors when the grammar
    /// does not parse, or when the tokenizer cannot constrain sampling.
    fn constraint(&self, grammar: &GrammarSpec) -> Result<Box<dyn Constraint>, EngineError> {
        let _ = grammar;
        Err(EngineError::Grammar {
            reason: "this engine cannot constrain sampling with a grammar".into(),
        })
    }
}

/// Limits which tokens may come next (a grammar); lives on the sampling
/// rank, one per request.
pub trait Constraint: Send {
    /// Sets the logit of every candidate that may not come next to -inf.
    /// Candidates are `(token, logit)`; any subset of the vocabulary.
    fn apply(&mut self, candidates: &mut [(i32, f32)]);
    /// Advances past `token`, which [`Constraint::apply`] allowed.
    fn accept(&mut self, token: i32);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Everything the sampling rank needs to choose tokens for one request
/// (settings, grammar, log-probabilities). It travels to the last rank as
/// one value per request (serialized in the ring's `start` frame), so a
/// field added here reaches the sampler without a protocol change beyond
/// the field itself (give it a `#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// 0 = greedy (argmax, lowest id on ties).
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 disables it.
    pub top_p: f32,
    /// 0 disables it.
    pub top_k: u32,
    pub seed: u64,
    /// Tokens outside this grammar are never sampled (structured output,
    /// forced tool calls).
    #[serde(default)]
    pub grammar: Option<GrammarSpec>,
    /// Report log-probabilities: `None` no; `Some(n)` the sampled token's
    /// and the `n` most likely (0..=[`MAX_TOP_LOGPROBS`]).
    #[serde(default)]
    pub logprobs: Option<u8>,
}

/// OpenAI's limit on `top_logprobs`.
pub const MAX_TOP_LOGPROBS: u8 = 20;

impl Default for SamplingParams {
    /// OpenAI's defaults: temperature 1, no nucleus or top-k cut, seed 0.
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            grammar: None,
            logprobs: None,
        }
    }
}

/// A GBNF grammar (llama.cpp's dialect) whose `root` rule the output must
/// match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrammarSpec {
    pub gbnf: String,
    /// Lazy grammar: sampling is free until one of these regular
    /// expressions (ECMAScript syntax, matched against all the text
    /// generated so far; the first capture group marks where the grammar
    /// starts) matches; empty = constrained from the first token.
    pub triggers: Vec<String>,
}

/// Per-rank llama.cpp settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Compute threads (decode and batch); 0 = the host's available cores.
    pub threads: u32,
    /// Layers of this rank to offload to a GPU: 0 = CPU only, a value at or
    /// above the rank's layer count (e.g. `u32::MAX`) = all of them plus the
    /// output layer. Needs a GPU cargo feature; ignored by a CPU build.
    pub gpu_layers: u32,
    /// KV cache size in tokens, shared by all sequences; 0 = the model's
    /// training context.
    pub n_ctx: u32,
    /// Sequences the KV cache holds at once (requests served together);
    /// 0 counts as 1.
    pub n_seq_max: u32,
    /// Tokens per llama.cpp decode call (logical and physical batch); 0 = 512.
    /// Capped so that a non-final rank's logits buffer (`n_batch x n_vocab`
    /// f32, which llama.cpp fills although the graph stops early) stays
    /// within 64 MiB. Every rank of a ring must use the same value: it fixes
    /// where a long prompt is cut into ubatches, and so the exact arithmetic
    /// (the cap depends only on this value and the vocabulary).
    pub n_batch: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: 0,
            gpu_layers: 0,
            n_ctx: 4096,
            n_seq_max: 1,
            n_batch: 512,
        }
    }
}

/// Everything the engine can fail with; each message names the model file.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file `{}` not found\n\nhint: fetch the model, or check `modelDir` and `ggufFile`", path.display())]
    ModelNotFound { path: PathBuf },
    #[error("model file `{}` cannot be read: {reason}", path.display())]
    ModelUnreadable { path: PathBuf, reason: String },
    /// The GGUF reader refused the file; its error names the file.
    #[error("model file {error}")]
    ModelInvalid {
        path: PathBuf,
        error: Box<crate::gguf::GgufError>,
    },
    #[error("model file `{}` is truncated: it has {actual} bytes but its tensors need {expected}\n\nhint: the download or copy was interrupted; fetch it again", path.display())]
    ModelTruncated {
        path: PathBuf,
        actual: u64,
        expected: u64,
    },
    #[error("model file `{}` has architecture `{arch}`, which skulk cannot split into layer ranges yet\n\nhint: skulk splits {}; run this model on one host (a one-rank plan runs any architecture llama.cpp supports)", path.display(), SUPPORTED_ARCHITECTURES.join(", "))]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    #[error("model file `{}`: {reason}", path.display())]
    LayerRange { path: PathBuf, reason: String },
    #[error("model file `{}`: llama.cpp could not load it: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("model `{}`: llama.cpp could not create a context: {reason}", path.display())]
    Context { path: PathBuf, reason: String },
    #[error("model `{}`: invalid stage input: {reason}", path.display())]
    Input { path: PathBuf, reason: String },
    #[error("model `{}`: positions `{pos0}..{end}` exceed the context of `{n_ctx}` tokens", path.display())]
    ContextFull {
        path: PathBuf,
        pos0: u32,
        end: u64,
        n_ctx: u32,
    },
    #[error("model `{}`: llama_decode failed with code `{code}`: {reason}", path.display())]
    Decode {
        path: PathBuf,
        code: i32,
        reason: String,
    },
    #[error("model `{}`: KV cache: {reason}", path.display())]
    Kv { path: PathBuf, reason: String },
    #[error("model `{}`: chat template: {reason}", path.display())]
    ChatTemplate { path: PathBuf, reason: String },
    #[error("model `{}`: tokenizer: {reason}", path.display())]
    Tokenize { path: PathBuf, reason: String },
    #[error("grammar: {reason}")]
    Grammar { reason: String },
}
