//! One rank's compute: a contiguous layer range of a GGUF model.
//!
//! The ring and the API only know the [`Stage`] and [`Tokenizer`] traits; the
//! llama.cpp implementation lives behind the `engine` cargo feature.

use std::fmt;

/// Input of one forward pass: tokens on the first rank, hidden rows elsewhere.
pub enum StageInput<'a> {
    Tokens(&'a [i32]),
    /// `n_tokens x n_embd` f32 values, row-major.
    Hidden {
        data: &'a [f32],
        n_tokens: usize,
    },
}

/// Output of one forward pass.
pub enum StageOutput {
    /// `n_tokens x n_embd` row-major (non-last ranks).
    Hidden(Vec<f32>),
    /// Logits of the last token, `n_vocab` values (last rank).
    Logits(Vec<f32>),
}

#[derive(Debug, thiserror::Error)]
pub struct EngineError(pub String);

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub trait Stage: Send {
    fn n_embd(&self) -> usize;
    fn n_vocab(&self) -> usize;
    fn n_ctx(&self) -> u32;
    fn is_first(&self) -> bool;
    fn is_last(&self) -> bool;
    /// Run `input` at consecutive positions starting at `pos0` (sequence 0).
    fn forward(&mut self, input: StageInput<'_>, pos0: u32) -> Result<StageOutput, EngineError>;
    /// Drop KV entries at positions >= `from` (0 clears the cache).
    fn truncate_kv(&mut self, from: u32) -> Result<(), EngineError>;
}

pub trait Tokenizer: Send + Sync {
    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError>;
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<i32>, EngineError>;
    fn token_to_piece(&self, token: i32) -> Vec<u8>;
    fn is_eog(&self, token: i32) -> bool;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub seed: u64,
}
