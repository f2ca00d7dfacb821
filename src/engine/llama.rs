//! The llama.cpp [`Stage`] and [`Tokenizer`]: one rank runs a rank-local GGUF
//! (blocks `start..end` of the model renumbered from 0, global tensors kept).
//!
//! Invariant: a stage feeds and returns exactly what the whole model computes
//! at its layer boundary. Non-final ranks stop the graph after their last
//! layer's output (`l_out-{n-1}`) and mark every token as output (otherwise
//! llama.cpp drops the rows of non-output tokens inside the last layer);
//! non-first ranks feed the received rows through `llama_batch.embd`. Where
//! llama.cpp would transform those rows before the first layer, the cut or
//! the rank undoes it exactly: Gemma 3's sqrt(n_embd) applies to token rows
//! only; Granite's `embedding_scale` is 1 in non-first cuts
//! (`gguf::cut_keys`); Gemma 2 scales every row, so the rank overwrites the
//! scaled rows with the received ones (`INPUT_SCALED`). Each decode holds at
//! most `n_batch` = `n_ubatch` tokens, so the capture fires once per decode
//! and every rank cuts a long prompt at the same places as the whole model.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::gguf::{GgufError, GgufHeader, Value, KEY_SLICE_END, KEY_SLICE_START, KEY_SLICE_TOTAL};

use super::ffi::{Context, ContextParams, GrammarMask, Input, Model, TokenMeta};
use super::{
    BatchOutput, ChatMessage, Constraint, EngineError, EngineOptions, GrammarSpec, SeqSpan, Stage,
    StageInput, Tokenizer, SUPPORTED_ARCHITECTURES,
};

/// llama.cpp's default logical batch, used when the options give 0.
const DEFAULT_N_BATCH: u32 = 512;

/// Bound on a non-final rank's logits output buffer. Such a rank marks every
/// token as output, and llama.cpp then reserves, zero-fills and copies
/// `n_batch x n_vocab` f32 logits per decode even though the graph stops
/// before the lm_head: 96 MiB at 512 tokens for SmolLM2's 49k vocabulary,
/// 512 MiB for Gemma 3's 262k, more than the 270M model's weights. Capping
/// the batch at `budget / (4 * n_vocab)` tokens (SmolLM2 341, Llama 3 130,
/// Gemma 3 64) bounds it; prefill on CPU loses little at these sizes (see
/// the bench numbers in the report).
const LOGITS_BUDGET_BYTES: usize = 64 << 20;

/// Smallest batch the cap may give, so huge vocabularies still prefill in
/// reasonable chunks.
const MIN_N_BATCH: u32 = 16;

/// Tokens per decode call: the requested batch, capped by the logits budget.
/// A function of the request and the vocabulary only, so every rank of a
/// model (and the whole model in one process) cuts prompts at the same
/// places, which keeps their arithmetic identical.
fn effective_n_batch(requested: u32, n_vocab: usize) -> u32 {
    let requested = if requested == 0 {
        DEFAULT_N_BATCH
    } else {
        requested
    };
    let cap = (LOGITS_BUDGET_BYTES / (4 * n_vocab.max(1))).min(u32::MAX as usize) as u32;
    requested.min(cap.max(MIN_N_BATCH))
}

/// The graph tensor holding a layer's output (`<name>-<layer>`), where it is
/// not llama.cpp's usual `l_out`: Nemotron-H names its blocks' outputs
/// `nemotron_h_block_out` and uses `l_out` for the feed-forward's output
/// before the residual (`models/nemotron-h.cpp`), which would be wrong.
const LAYER_OUTPUT: &[(&str, &str)] = &[("nemotron_h", "nemotron_h_block_out")];

/// Architectures whose graph scales every input row, hidden rows from the
/// rank before included (which are already scaled), and the graph tensor
/// holding the scaled rows: a non-first rank overwrites it with the rows it
/// received, so its first layer sees exactly what the whole model's does
/// (`models/gemma2.cpp`: `ggml_scale(inpL, sqrtf(n_embd))`, named
/// `inp_scaled`). Dividing the rows beforehand would not be exact.
const INPUT_SCALED: &[(&str, &str)] = &[("gemma2", "inp_scaled")];

/// Gemma 3's built-in sliding-window pattern: every 6th layer is global
/// (llama.cpp `llama_model_gemma3::load_arch_hparams`, `load_swa_pattern(ml, 6)`).
const GEMMA3_DEFAULT_SWA_PATTERN: u64 = 6;

/// Loads the rank-local GGUF at `model_path`, which holds `layers` of a model
/// of `total_layers`, as one stage plus the tokenizer.
// The return type is the interface the ring codes against, spelled out.
#[allow(clippy::type_complexity)]
pub fn load(
    model_path: &Path,
    layers: Range<u32>,
    total_layers: u32,
    opts: &EngineOptions,
) -> Result<(Box<dyn Stage>, Arc<dyn Tokenizer>), EngineError> {
    let path = model_path.to_path_buf();
    if layers.start >= layers.end || layers.end > total_layers {
        return Err(EngineError::LayerRange {
            path,
            reason: format!(
                "layer range `{}..{}` is empty or beyond the model's `{total_layers}` layers",
                layers.start, layers.end
            ),
        });
    }
    let n_local = (layers.end - layers.start) as usize;
    let (arch, nextn) = check_file(&path, &layers, total_layers)?;
    // Trailing next-token-prediction blocks are loaded but not run (the
    // cut's `nextn_predict_layers` counts those it holds).
    let n_trunk = n_local.saturating_sub(nextn);
    if n_trunk == 0 {
        return Err(EngineError::LayerRange {
            path,
            reason: format!(
                "layers `{}..{}` are only next-token-prediction blocks, which llama.cpp does not run\n\n\
                 hint: give this rank at least one of the model's other layers",
                layers.start, layers.end
            ),
        });
    }

    let n_gpu_layers = if opts.gpu_layers as usize >= n_local {
        -1 // all layers and the output layer
    } else {
        opts.gpu_layers as i32
    };
    let model = Model::load(&path, n_gpu_layers).map_err(|reason| EngineError::Load {
        path: path.clone(),
        reason,
    })?;
    if model.n_layer() != n_trunk {
        return Err(EngineError::LayerRange {
            path,
            reason: format!(
                "llama.cpp loaded `{}` layers, expected `{n_trunk}`",
                model.n_layer()
            ),
        });
    }
    let model = Arc::new(model);
    let is_first = layers.start == 0;
    let is_last = layers.end == total_layers;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
    } else {
        opts.threads.min(i32::MAX as u32) as i32
    };
    let n_batch = effective_n_batch(opts.n_batch, model.n_vocab());
    let n_seq_max = opts.n_seq_max.max(1);
    let params = ContextParams {
        n_ctx: opts.n_ctx,
        n_batch,
        n_seq_max,
        threads,
        capture: (!is_last).then(|| {
            let name = LAYER_OUTPUT
                .iter()
                .find(|(a, _)| *a == arch)
                .map_or("l_out", |(_, name)| name);
            format!("{name}-{}", n_trunk - 1)
        }),
        inject: INPUT_SCALED
            .iter()
            .find(|(a, _)| !is_first && *a == arch)
            .map(|(_, tensor)| tensor.to_string()),
    };
    let ctx = Context::new(model.clone(), &params).map_err(|reason| EngineError::Context {
        path: path.clone(),
        reason,
    })?;
    let template = model.chat_template();
    let stage = LlamaStage {
        path: path.clone(),
        n_embd: model.n_embd(),
        n_vocab: model.n_vocab(),
        n_ctx: ctx.n_ctx(),
        n_batch: n_batch as usize,
        n_seq_max,
        n_swa: model.n_swa(),
        recurrent: model.has_recurrent_state(),
        is_first,
        is_last,
        ctx,
        meta: Vec::new(),
    };
    let tokenizer = LlamaTokenizer {
        path,
        arch,
        template,
        model,
        pieces: OnceLock::new(),
    };
    Ok((Box::new(stage), Arc::new(tokenizer)))
}

/// Checks the file before llama.cpp sees it: present, a GGUF, complete, an
/// allowed architecture, and cut to the rank's layer count with the
/// per-layer metadata its architecture needs. Returns the architecture and
/// the number of trailing next-token-prediction blocks the file holds.
fn check_file(
    path: &Path,
    layers: &Range<u32>,
    total_layers: u32,
) -> Result<(String, usize), EngineError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(EngineError::ModelUnreadable {
                path: path.into(),
                reason: "not a regular file".into(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EngineError::ModelNotFound { path: path.into() })
        }
        Err(e) => {
            return Err(EngineError::ModelUnreadable {
                path: path.into(),
                reason: e.to_string(),
            })
        }
    };
    let invalid = |error| EngineError::ModelInvalid {
        path: path.into(),
        error: Box::new(error),
    };
    let gguf = GgufHeader::read(path).map_err(|error| match error {
        GgufError::DataTruncated { end, len, .. } => EngineError::ModelTruncated {
            path: path.into(),
            actual: len,
            expected: end,
        },
        GgufError::Io { error, .. } => EngineError::ModelUnreadable {
            path: path.into(),
            reason: error.to_string(),
        },
        error => invalid(error),
    })?;
    let arch = gguf.architecture().map_err(invalid)?.to_string();
    // A whole model is not cut: llama.cpp runs it as it would alone.
    let whole = layers.start == 0 && layers.end == total_layers;
    if !whole && !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(EngineError::UnsupportedArchitecture {
            path: path.into(),
            arch,
        });
    }
    let n_local = u64::from(layers.end - layers.start);
    let key = format!("{arch}.block_count");
    match gguf.get(&key) {
        Some(v) if v.as_u64() == Some(n_local) => {}
        other => {
            return Err(EngineError::LayerRange {
                path: path.into(),
                reason: format!(
                    "`{key}` is {}, but the rank's layer range `{}..{}` has `{n_local}` layers\n\n\
                     hint: a rank loads its rank-local cut of the model, not the whole file",
                    other.map_or("missing".to_string(), |v| format!("`{v}`")),
                    layers.start,
                    layers.end
                ),
            })
        }
    }
    // Cuts made by `skulk::gguf::slice_layers` say which range they hold.
    let slice = [KEY_SLICE_START, KEY_SLICE_END, KEY_SLICE_TOTAL]
        .map(|key| gguf.get(key).and_then(Value::as_u64));
    if let [Some(s), Some(e), Some(t)] = slice {
        if (s, e, t)
            != (
                u64::from(layers.start),
                u64::from(layers.end),
                u64::from(total_layers),
            )
        {
            return Err(EngineError::LayerRange {
                path: path.into(),
                reason: format!(
                    "the file was cut for layers `{s}..{e}` of `{t}`, but this rank holds `{}..{}` of `{total_layers}`",
                    layers.start, layers.end
                ),
            });
        }
    }
    if arch == "gemma3" {
        check_gemma3_swa(path, &gguf, layers)?;
    }
    let nextn = gguf
        .get(&format!("{arch}.nextn_predict_layers"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    Ok((arch, nextn))
}

/// llama.cpp derives Gemma 3's sliding-window layers from the layer index
/// (`il % 6 < 5`) unless `gemma3.attention.sliding_window_pattern` is a
/// per-layer array. A cut renumbered from 0 keeps the right pattern only if
/// its first layer is a multiple of the period; otherwise the cut must carry
/// the array (one entry per local layer).
fn check_gemma3_swa(
    path: &Path,
    gguf: &GgufHeader,
    layers: &Range<u32>,
) -> Result<(), EngineError> {
    let window = gguf
        .get("gemma3.attention.sliding_window")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if window == 0 {
        return Ok(());
    }
    let n_local = (layers.end - layers.start) as usize;
    let key = "gemma3.attention.sliding_window_pattern";
    let period = match gguf.get(key) {
        Some(Value::Array(a)) if a.len() == n_local => return Ok(()),
        Some(Value::Array(a)) => {
            return Err(EngineError::LayerRange {
                path: path.into(),
                reason: format!(
                    "`{key}` has `{}` entries, expected one per local layer (`{n_local}`)",
                    a.len()
                ),
            })
        }
        Some(v) => v.as_u64().unwrap_or(0),
        None => GEMMA3_DEFAULT_SWA_PATTERN,
    };
    if period == 0 || u64::from(layers.start) % period == 0 {
        return Ok(());
    }
    Err(EngineError::LayerRange {
        path: path.into(),
        reason: format!(
            "layers `{}..{}` start off the sliding-window period `{period}`, but `{key}` is not a per-layer array\n\n\
             hint: cut the rank-local file with `skulk::gguf::slice_layers`, which writes one \
             pattern entry per layer from the original layer indices",
            layers.start, layers.end
        ),
    })
}

struct LlamaStage {
    path: PathBuf,
    n_embd: usize,
    n_vocab: usize,
    n_ctx: u32,
    n_batch: usize,
    n_seq_max: u32,
    n_swa: u32,
    /// Some layers keep a recurrent state, which cannot be cut back to a
    /// prefix: the same on every rank of a model (an architecture property),
    /// so all ranks agree not to reuse prefixes.
    recurrent: bool,
    is_first: bool,
    is_last: bool,
    ctx: Context,
    /// Per-token positions, sequences and output flags, reused.
    meta: Vec<TokenMeta>,
}

impl LlamaStage {
    fn input_error(&self, reason: impl Into<String>) -> EngineError {
        EngineError::Input {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

impl Stage for LlamaStage {
    fn n_embd(&self) -> usize {
        self.n_embd
    }

    fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    fn is_first(&self) -> bool {
        self.is_first
    }

    fn is_last(&self) -> bool {
        self.is_last
    }

    fn reuses_prefixes(&self) -> bool {
        self.n_swa == 0 && !self.recurrent
    }

    fn n_seq_max(&self) -> u32 {
        self.n_seq_max
    }

    fn max_batch(&self) -> usize {
        self.n_batch
    }

    fn forward_batch(
        &mut self,
        spans: &[SeqSpan],
        input: StageInput<'_>,
    ) -> Result<BatchOutput, EngineError> {
        let n_tokens: usize = spans.iter().map(|s| s.n_tokens as usize).sum();
        match input {
            StageInput::Tokens(t) if self.is_first => {
                if t.len() != n_tokens {
                    return Err(
                        self.input_error(format!("`{}` tokens for spans of `{n_tokens}`", t.len()))
                    );
                }
            }
            StageInput::Tokens(_) => {
                return Err(self.input_error("tokens sent to a rank that does not hold layer 0"))
            }
            StageInput::Hidden { .. } if self.is_first => {
                return Err(self.input_error("hidden rows sent to the first rank"))
            }
            StageInput::Hidden { data, n_tokens: n } => {
                if n != n_tokens || data.len() != n_tokens * self.n_embd {
                    return Err(self.input_error(format!(
                        "`{}` values for `{n}` rows of `{}` (spans of `{n_tokens}` tokens)",
                        data.len(),
                        self.n_embd
                    )));
                }
            }
        }
        if n_tokens == 0 || spans.iter().any(|s| s.n_tokens == 0) {
            return Err(self.input_error("no tokens"));
        }
        self.meta.clear();
        for (i, span) in spans.iter().enumerate() {
            if span.seq >= self.n_seq_max {
                return Err(self.input_error(format!(
                    "sequence `{}` is outside the cache's `{}` sequences",
                    span.seq, self.n_seq_max
                )));
            }
            if spans[..i].iter().any(|s| s.seq == span.seq) {
                return Err(self.input_error(format!(
                    "sequence `{}` appears twice in one batch",
                    span.seq
                )));
            }
            let end = u64::from(span.pos0) + u64::from(span.n_tokens);
            if end > u64::from(self.n_ctx) {
                return Err(EngineError::ContextFull {
                    path: self.path.clone(),
                    pos0: span.pos0,
                    end,
                    n_ctx: self.n_ctx,
                });
            }
            let (_, pos_max) = self.ctx.seq_pos_range(span.seq);
            if i64::from(span.pos0) != i64::from(pos_max) + 1 {
                return Err(self.input_error(format!(
                    "sequence `{}` starts at position `{}` but the KV cache holds its positions up to `{pos_max}`\n\n\
                     hint: truncate the KV cache of sequence `{}` to `{}` first",
                    span.seq, span.pos0, span.seq, span.pos0
                )));
            }
            let last = span.n_tokens - 1;
            self.meta.extend((0..span.n_tokens).map(|k| TokenMeta {
                pos: (span.pos0 + k) as i32,
                seq: span.seq as i32,
                // Non-final ranks need every row: llama.cpp drops the rows of
                // non-output tokens inside the last layer.
                output: !self.is_last || (span.logits && k == last),
            }));
        }
        let mut hidden = Vec::new();
        let mut logits = Vec::new();
        let mut start = 0;
        while start < n_tokens {
            let n = (n_tokens - start).min(self.n_batch);
            let chunk = match input {
                StageInput::Tokens(t) => Input::Tokens(&t[start..start + n]),
                StageInput::Hidden { data, .. } => {
                    Input::Embd(&data[start * self.n_embd..(start + n) * self.n_embd], n)
                }
            };
            self.ctx
                .decode(chunk, &self.meta[start..start + n])
                .map_err(|(code, reason)| EngineError::Decode {
                    path: self.path.clone(),
                    code,
                    reason,
                })?;
            if self.is_last {
                for (i, m) in self.meta[start..start + n].iter().enumerate() {
                    if !m.output {
                        continue;
                    }
                    let row = self.ctx.logits_ith(i).ok_or_else(|| EngineError::Decode {
                        path: self.path.clone(),
                        code: 0,
                        reason: "llama.cpp returned no logits".into(),
                    })?;
                    logits.push(row);
                }
            } else {
                let rows = self.ctx.take_captured();
                if rows.len() != n * self.n_embd {
                    return Err(EngineError::Decode {
                        path: self.path.clone(),
                        code: 0,
                        reason: format!(
                            "captured `{}` values of the last layer's output, expected `{}`",
                            rows.len(),
                            n * self.n_embd
                        ),
                    });
                }
                if hidden.is_empty() {
                    hidden = rows;
                } else {
                    hidden.extend_from_slice(&rows);
                }
            }
            start += n;
        }
        Ok(if self.is_last {
            BatchOutput::Logits(logits)
        } else {
            BatchOutput::Hidden(hidden)
        })
    }

    fn truncate_seq(&mut self, seq: u32, from: u32) -> Result<(), EngineError> {
        if seq >= self.n_seq_max {
            return Err(EngineError::Kv {
                path: self.path.clone(),
                reason: format!(
                    "sequence `{seq}` is outside the cache's `{}` sequences",
                    self.n_seq_max
                ),
            });
        }
        let from_i = i32::try_from(from).unwrap_or(i32::MAX);
        if !self.ctx.seq_rm(seq, from_i) {
            self.ctx.seq_rm(seq, 0);
            return Err(EngineError::Kv {
                path: self.path.clone(),
                reason: format!(
                    "cannot drop positions from `{from}` on in sequence `{seq}`; the sequence was dropped"
                ),
            });
        }
        if from == 0 {
            return Ok(());
        }
        // A sliding-window cache forgets positions older than its window; if
        // it already forgot some that the token at `from` attends to, keeping
        // the rest would give a different answer than recomputing them (the
        // same test as llama-server's).
        let (pos_min, pos_max) = self.ctx.seq_pos_range(seq);
        let needed = i64::from(from) - i64::from(self.n_swa);
        if self.n_swa > 0 && pos_max >= 0 && i64::from(pos_min) > needed.max(0) {
            self.ctx.seq_rm(seq, 0);
            return Err(EngineError::Kv {
                path: self.path.clone(),
                reason: format!(
                    "the sliding-window cache no longer holds positions before `{pos_min}` of sequence `{seq}`, so the \
                     prefix up to `{from}` cannot be kept; the sequence was dropped\n\n\
                     hint: send the whole prompt again from position 0"
                ),
            });
        }
        Ok(())
    }
}

struct LlamaTokenizer {
    path: PathBuf,
    arch: String,
    /// The GGUF's own template, if any.
    template: Option<String>,
    model: Arc<Model>,
    /// Every token's bytes, made once for the first grammar.
    pieces: OnceLock<Arc<Pieces>>,
}

/// Each token's bytes (control tokens written out, as llama.cpp's grammar
/// sees them) and whether they are complete UTF-8 on their own.
struct Pieces {
    bytes: Vec<Box<[u8]>>,
    whole: Vec<bool>,
}

impl Tokenizer for LlamaTokenizer {
    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        // GGUFs without a template get their family's llama.cpp built-in one
        // (the Gemma 3 270M GGUF from PyPI carries none).
        let template = match (&self.template, self.arch.as_str()) {
            (Some(t), _) => t.as_str(),
            (None, "gemma3") => "gemma",
            (None, _) => "chatml",
        };
        let msgs: Vec<(String, String)> = messages
            .iter()
            .map(|m| (m.role.clone(), m.content.clone()))
            .collect();
        Model::apply_chat_template(template, &msgs, add_generation_prompt).map_err(|reason| {
            EngineError::ChatTemplate {
                path: self.path.clone(),
                reason,
            }
        })
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<i32>, EngineError> {
        self.model
            .tokenize(text, add_special)
            .map_err(|reason| EngineError::Tokenize {
                path: self.path.clone(),
                reason,
            })
    }

    fn token_to_piece(&self, token: i32) -> Vec<u8> {
        self.model.token_to_piece(token)
    }

    fn is_eog(&self, token: i32) -> bool {
        self.model.is_eog(token)
    }

    fn token_to_piece_special(&self, token: i32) -> Vec<u8> {
        self.model.token_to_piece_special(token)
    }

    fn chat_template(&self) -> Option<String> {
        self.template.clone()
    }

    fn bos_eos_text(&self) -> (Option<String>, Option<String>) {
        self.model.bos_eos_text()
    }

    fn constraint(&self, grammar: &GrammarSpec) -> Result<Box<dyn Constraint>, EngineError> {
        let mask = GrammarMask::new(self.model.clone(), &grammar.gbnf, &grammar.triggers)
            .map_err(|reason| EngineError::Grammar { reason })?;
        let pieces = self
            .pieces
            .get_or_init(|| {
                let bytes: Vec<Box<[u8]>> = (0..self.model.n_vocab() as i32)
                    .map(|t| self.model.token_to_piece_special(t).into_boxed_slice())
                    .collect();
                let whole = bytes
                    .iter()
                    .map(|b| std::str::from_utf8(b).is_ok())
                    .collect();
                Arc::new(Pieces { bytes, whole })
            })
            .clone();
        Ok(Box::new(LlamaConstraint {
            mask,
            pieces,
            pending: Vec::new(),
        }))
    }
}

/// llama.cpp's grammar as the sampler's [`Constraint`], plus UTF-8: the
/// grammar decodes bytes leniently (an overlong `C0 A2` passes for `"`, a
/// code point past U+10FFFF for a character), so tokens that would make the
/// output invalid UTF-8 are masked here first, and the text a grammar
/// admits is the text the client gets.
struct LlamaConstraint {
    mask: GrammarMask,
    pieces: Arc<Pieces>,
    /// The start of a character whose remaining bytes have not come yet.
    pending: Vec<u8>,
}

impl LlamaConstraint {
    /// Whether `token` keeps the output a valid UTF-8 prefix.
    fn utf8_ok(&self, token: i32) -> bool {
        let Some(piece) = usize::try_from(token)
            .ok()
            .and_then(|t| self.pieces.bytes.get(t))
        else {
            return true;
        };
        if self.pending.is_empty() && self.pieces.whole[token as usize] {
            return true;
        }
        let mut buf = self.pending.clone();
        buf.extend_from_slice(piece);
        match std::str::from_utf8(&buf) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
    }
}

impl Constraint for LlamaConstraint {
    fn apply(&mut self, candidates: &mut [(i32, f32)]) {
        for c in candidates.iter_mut() {
            if c.1 > f32::NEG_INFINITY && !self.utf8_ok(c.0) {
                c.1 = f32::NEG_INFINITY;
            }
        }
        self.mask.apply(candidates);
    }

    fn accept(&mut self, token: i32) {
        let accepted = self.mask.accept(token);
        debug_assert!(
            accepted,
            "the sampler chose token {token}, which the grammar forbids"
        );
        if let Some(piece) = usize::try_from(token)
            .ok()
            .and_then(|t| self.pieces.bytes.get(t))
        {
            self.pending.extend_from_slice(piece);
            let keep = match std::str::from_utf8(&self.pending) {
                Ok(_) => 0,
                Err(e) => self.pending.len() - e.valid_up_to(),
            };
            self.pending.drain(..self.pending.len() - keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_capped_by_the_logits_budget_of_the_vocabulary() {
        assert_eq!(effective_n_batch(0, 49152), 341);
        assert_eq!(effective_n_batch(512, 49152), 341);
        assert_eq!(effective_n_batch(64, 49152), 64);
        assert_eq!(effective_n_batch(512, 262144), 64);
        assert_eq!(effective_n_batch(512, 32000), 512);
        assert_eq!(effective_n_batch(512, 10_000_000), MIN_N_BATCH);
        assert_eq!(effective_n_batch(5, 10_000_000), 5);
    }
}
