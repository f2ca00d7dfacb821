//! What a layer-range cut of each architecture needs beyond renumbering its
//! blocks: the behaviour llama.cpp derives from the total layer count or
//! from a block's absolute index, and how a cut keeps it.
//!
//! Three outcomes per architecture and range (`docs/architectures.md` has
//! the table, with the vendored llama.cpp source lines):
//! - a key rewritten in the cut ([`cut_keys`]), so that llama.cpp loading
//!   the cut computes what the whole model computes for those blocks;
//! - a refused cut ([`check_cut`]), where no key can make llama.cpp do the
//!   same, with the rule a plan must follow instead;
//! - nothing, for behaviour that depends on neither.
//!
//! Invariant: every cut that [`check_cut`] accepts, loaded with the keys of
//! [`cut_keys`], is equivalent to its blocks of the whole model (proved per
//! architecture by `tests/integration/arch_equivalence.rs`). The checks are pure
//! functions of a header, so preflight can run them on a header read from a
//! remote host before any rank starts.

use std::fmt;

use super::read::GgufHeader;
use super::slice::{is_swa, SWA_PERIODIC};
use super::value::{Array, Value};

/// A cut that llama.cpp would compute differently from the whole model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutRefusal {
    pub arch: String,
    pub start: u32,
    pub end: u32,
    /// What llama.cpp would do with the cut.
    pub reason: String,
    /// The rule a plan must follow instead.
    pub hint: String,
}

impl fmt::Display for CutRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layers `{}..{}` of this `{}` model cannot run as one rank: {}\n\nhint: {}",
            self.start, self.end, self.arch, self.reason, self.hint
        )
    }
}

/// The facts of a whole model that its cuts depend on.
struct Model<'a> {
    h: &'a GgufHeader,
    arch: &'a str,
    /// Blocks in the file (`block_count`), trailing prediction blocks
    /// included.
    total: u64,
    /// Trailing next-token-prediction blocks (`nextn_predict_layers`).
    nextn: u64,
}

impl<'a> Model<'a> {
    fn new(h: &'a GgufHeader) -> Option<Model<'a>> {
        let arch = h.architecture().ok()?;
        let total = h.block_count().ok()?;
        let nextn = h
            .get(&format!("{arch}.nextn_predict_layers"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(total);
        Some(Model {
            h,
            arch,
            total,
            nextn,
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    fn get(&self, suffix: &str) -> Option<&'a Value> {
        self.h.get(&self.key(suffix))
    }

    fn u64(&self, suffix: &str) -> Option<u64> {
        self.get(suffix).and_then(Value::as_u64)
    }

    fn f64(&self, suffix: &str) -> Option<f64> {
        match self.get(suffix)? {
            Value::F32(x) => Some(f64::from(*x)),
            Value::F64(x) => Some(*x),
            v => v.as_u64().map(|x| x as f64),
        }
    }

    /// The `il`-th entry of a per-layer key, or its scalar value.
    fn per_layer(&self, suffix: &str, il: u64) -> Option<u64> {
        match self.get(suffix)? {
            Value::Array(a) => a.to_u64s()?.get(il as usize).copied(),
            v => v.as_u64(),
        }
    }

    /// Blocks llama.cpp runs in a file of `n` blocks of which `nextn` are
    /// prediction blocks (`llama_hparams::n_layer()`).
    fn trunk(&self) -> u64 {
        self.total - self.nextn
    }

    /// Prediction blocks inside `[s, e)`.
    fn nextn_in(&self, s: u64, e: u64) -> u64 {
        e.saturating_sub(self.trunk().max(s))
    }

    fn n_vocab(&self) -> u64 {
        self.u64("vocab_size").unwrap_or_else(|| {
            self.h
                .get("tokenizer.ggml.tokens")
                .and_then(Value::as_array)
                .map_or(0, |a| a.len() as u64)
        })
    }
}

fn refusal(m: &Model, start: u32, end: u32, reason: String, hint: String) -> CutRefusal {
    CutRefusal {
        arch: m.arch.to_string(),
        start,
        end,
        reason,
        hint,
    }
}

/// Whether llama.cpp types a DeepSeek-V2 file of `trunk` blocks as the
/// "Lite" model, which has no `q_lora_rank` (`models/deepseek2.cpp`,
/// `is_lite`).
fn deepseek2_is_lite(trunk: u64, n_vocab: u64) -> bool {
    trunk == 26 || trunk == 27 || (trunk == 48 && n_vocab == 128_256)
}

/// The gating function llama.cpp picks for a DeepSeek-V2 file of `trunk`
/// blocks without `expert_gating_func` (`models/deepseek2.cpp`): sigmoid
/// (2) for GLM 4.7 Lite's shape, else softmax (1).
fn deepseek2_default_gating(trunk: u64, n_vocab: u64) -> u32 {
    if (trunk == 47 || trunk == 48) && n_vocab == 154_880 {
        2
    } else {
        1
    }
}

/// Gemma 2 and 3 scale queries by `1/sqrt(n_embd / n_head)` when the file
/// has the 27B model's block count (46 and 62), else by
/// `1/sqrt(head_dim)` (`models/gemma2.cpp`, `models/gemma3.cpp`).
fn gemma_query_scale(m: &Model, trunk: u64, first_layer: u64) -> Option<f64> {
    let size_27b = match m.arch {
        "gemma2" => 46,
        "gemma3" => 62,
        _ => return None,
    };
    let n_embd = m.u64("embedding_length")? as f64;
    let n_head = m.per_layer("attention.head_count", first_layer)? as f64;
    let head_dim = m
        .u64("attention.key_length")
        .map_or(n_embd / n_head, |k| k as f64);
    Some(if trunk == size_27b {
        1.0 / (n_embd / n_head).sqrt()
    } else {
        1.0 / head_dim.sqrt()
    })
}

/// Architectures whose sliding-window attention is on whatever
/// `sliding_window` says (llama.cpp sets the window type unconditionally in
/// `load_arch_hparams`); the others turn it on with a positive window.
const SWA_ALWAYS: &[&str] = &["gemma2", "cohere2", "gpt-oss", "llama4"];

/// For each block of `[s, e)`, whether it attends through the sliding
/// window; `None` when the model has no sliding-window layers.
fn swa_layers(m: &Model, s: u64, e: u64) -> Option<Vec<bool>> {
    let &(_, default, dense_first) = SWA_PERIODIC.iter().find(|p| p.0 == m.arch)?;
    let window = m.u64("attention.sliding_window");
    let on = if SWA_ALWAYS.contains(&m.arch) {
        window != Some(0)
    } else {
        window.is_some_and(|w| w > 0)
    };
    if !on {
        return None;
    }
    let flags = match m.get("attention.sliding_window_pattern") {
        Some(Value::Array(a)) => a.to_u64s()?.iter().map(|&v| v != 0).collect::<Vec<_>>(),
        scalar => {
            let period = scalar.and_then(Value::as_u64).unwrap_or(default);
            (0..m.total)
                .map(|il| il < m.trunk() && is_swa(il, period, dense_first))
                .collect()
        }
    };
    flags.get(s as usize..e as usize).map(<[bool]>::to_vec)
}

/// For each block of `[s, e)` of a hybrid model, whether it keeps a
/// recurrent state (and not a KV cache); `None` for other models.
fn recurrent_layers(m: &Model, s: u64, e: u64) -> Option<Vec<bool>> {
    let trunk = m.trunk();
    let flags: Vec<bool> = match m.arch {
        "qwen3next" | "qwen35moe" => match m.get("attention.recurrent_layers") {
            Some(Value::Array(a)) => a.to_u64s()?.iter().map(|&v| v != 0).collect(),
            _ => {
                let interval = m.u64("full_attention_interval").unwrap_or(4).max(1);
                (0..m.total)
                    .map(|il| il < trunk && (il + 1) % interval != 0)
                    .collect()
            }
        },
        // A block without KV heads is recurrent (nemotron_h: and without a
        // feed-forward, which makes it a plain MLP block).
        "lfm2" | "granitehybrid" => (0..m.total)
            .map(|il| m.per_layer("attention.head_count_kv", il) == Some(0))
            .collect(),
        "nemotron_h" => (0..m.total)
            .map(|il| {
                il < trunk
                    && m.per_layer("attention.head_count_kv", il) == Some(0)
                    && m.per_layer("feed_forward_length", il) == Some(0)
            })
            .collect(),
        _ => return None,
    };
    flags.get(s as usize..e as usize).map(<[bool]>::to_vec)
}

/// Blocks of a hybrid model that attend through a KV cache.
fn attention_layers(m: &Model) -> Vec<u64> {
    let Some(recurrent) = recurrent_layers(m, 0, m.total) else {
        return Vec::new();
    };
    (0..m.trunk())
        .filter(|&il| {
            !recurrent[il as usize]
                && (m.arch != "nemotron_h" || m.per_layer("attention.head_count_kv", il) != Some(0))
        })
        .collect()
}

/// The llama4 cut rule: (boundary multiple, or `None` when no cut works).
fn llama4_boundary(m: &Model) -> Option<u64> {
    if m.u64("attention.sliding_window") == Some(0) {
        // Without chunked attention llama.cpp skips RoPE on the last block of
        // the file (`n_no_rope_layer_step = n_layer`): every cut would.
        return None;
    }
    // No RoPE on every 4th block and a mixture of experts on every
    // `interleave_moe_layer_step`-th block, both by absolute index.
    let step = m.u64("interleave_moe_layer_step").unwrap_or(1).max(1);
    Some(lcm(4, step))
}

fn lcm(a: u64, b: u64) -> u64 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

/// The boundary rule of an architecture, for planners and messages: cuts
/// must start at multiples of the returned value (1: anywhere).
pub fn boundary_multiple(header: &GgufHeader) -> Option<u64> {
    let m = Model::new(header)?;
    match m.arch {
        "llama4" => llama4_boundary(&m),
        _ => Some(1),
    }
}

/// Refuses the cut `[start, end)` of the model `header` describes when
/// llama.cpp would compute its blocks differently from the whole model,
/// whatever keys the cut carried. The whole model is never refused.
pub fn check_cut(header: &GgufHeader, start: u32, end: u32) -> Result<(), CutRefusal> {
    let Some(m) = Model::new(header) else {
        return Ok(());
    };
    let (s, e) = (u64::from(start), u64::from(end));
    if s == 0 && e == m.total {
        return Ok(());
    }
    let trunk = (e - s) - m.nextn_in(s, e);
    if trunk == 0 {
        return Err(refusal(
            &m,
            start,
            end,
            "they are only next-token-prediction blocks, which llama.cpp loads but does not run"
                .into(),
            format!(
                "give the rank holding the last layers at least one of layers `0..{}`",
                m.trunk()
            ),
        ));
    }
    // llama.cpp asserts that a model with sliding-window attention has a
    // sliding-window layer (`llama_model::create_memory`).
    if swa_layers(&m, s, e).is_some_and(|flags| !flags.contains(&true)) {
        return Err(refusal(
            &m,
            start,
            end,
            "they hold no sliding-window layer, and llama.cpp cannot run a model with sliding-window attention that has none".into(),
            "give every rank at least one sliding-window layer (only ranks of one global-attention layer lack one)".into(),
        ));
    }
    // llama.cpp's hybrid memory needs layers of both kinds: a cut of
    // recurrent blocks only aborts on its first decode (an empty KV cache),
    // and so does one of attention blocks only (an empty recurrent state).
    if let Some(recurrent) = recurrent_layers(&m, s, e) {
        let trunk_flags = &recurrent[..trunk as usize];
        let attention: Vec<u64> = attention_layers(&m);
        let has_attention = attention.iter().any(|&il| (s..e).contains(&il));
        let has_recurrent = trunk_flags.contains(&true);
        if !has_attention || !has_recurrent {
            let shown: Vec<String> = attention.iter().map(u64::to_string).collect();
            return Err(refusal(
                &m,
                start,
                end,
                format!(
                    "they hold no {} layer, and llama.cpp cannot run a hybrid model's rank without one",
                    if has_attention { "recurrent" } else { "attention" }
                ),
                format!(
                    "give every rank at least one attention layer (this model's are {}) and one recurrent layer, e.g. with `skulk plan --layers`",
                    shown.join(", ")
                ),
            ));
        }
    }
    match m.arch {
        "deepseek2" => {
            let has_q_lora = m.u64("attention.q_lora_rank").unwrap_or(0) > 0;
            if has_q_lora && deepseek2_is_lite(trunk, m.n_vocab()) {
                return Err(refusal(
                    &m,
                    start,
                    end,
                    format!(
                        "llama.cpp takes a DeepSeek-V2 file of `{trunk}` layers for the Lite model, \
                         which has no query compression (`q_lora_rank`), and would not load it"
                    ),
                    "give no rank of this model exactly 26 or 27 layers".into(),
                ));
            }
        }
        // EXAONE 4 32B's sliding window is switched on by the block count
        // alone.
        "exaone4" if (m.trunk() == 64) != (trunk == 64) => {
            return Err(refusal(
                &m,
                start,
                end,
                "llama.cpp turns on EXAONE 4's sliding-window attention only in a file of exactly 64 layers (the 32B model), so a cut would attend differently".into(),
                "run this model on one host (a one-rank plan)".into(),
            ));
        }
        "llama4" => match llama4_boundary(&m) {
            None => {
                return Err(refusal(
                    &m,
                    start,
                    end,
                    "without chunked attention (`sliding_window` 0) llama.cpp skips RoPE on the last layer of each file, so every cut would".into(),
                    "run this model on one host (a one-rank plan)".into(),
                ))
            }
            Some(k) if s % k != 0 => {
                return Err(refusal(
                    &m,
                    start,
                    end,
                    format!(
                        "llama.cpp picks Llama 4's layers without RoPE (every 4th) and its mixture-of-experts layers (every `interleave_moe_layer_step`-th) by their index in the file, so a cut must start on a multiple of `{k}`"
                    ),
                    format!("start every rank's layers at a multiple of {k}"),
                ))
            }
            Some(_) if !(s..e).any(|il| (il + 1) % 4 == 0) => {
                return Err(refusal(
                    &m,
                    start,
                    end,
                    "they hold no layer without RoPE (every 4th), and llama.cpp aborts on the first decode of such a Llama 4 file (its attention-temperature input goes unused)".into(),
                    "give every rank at least 4 layers".into(),
                ))
            }
            Some(_) => {}
        },
        "gemma2" => {
            let whole = gemma_query_scale(&m, m.trunk(), 0);
            let cut = gemma_query_scale(&m, trunk, s);
            let full_rope = match (m.u64("rope.dimension_count"), m.u64("attention.key_length")) {
                (Some(r), Some(k)) => r == k,
                (Some(_), None) | (None, _) => true,
            };
            if whole.is_none() || cut.is_none() || (whole != cut && !full_rope) {
                return Err(refusal(
                    &m,
                    start,
                    end,
                    "llama.cpp picks this model's attention scale from its layer count, and skulk can carry it into a cut only through a RoPE factor, which needs RoPE on every head dimension".into(),
                    "run this model on one host (a one-rank plan)".into(),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Per-layer weights the cut `[start, end)` must carry multiplied by a
/// factor (tensor name suffix after `blk.N.`, factor), so that llama.cpp
/// computes for its blocks what it computes in the whole model. Assumes
/// [`check_cut`] accepted the cut.
///
/// Gemma 3 scales its normalised, rotated queries by a constant llama.cpp
/// picks from the block count (27B: `1/sqrt(n_embd/n_head)`, else
/// `1/sqrt(head_dim)`); the query norm's weights, applied just before,
/// carry the ratio. Only queries change: the keys in the (f16) KV cache stay
/// bit for bit the whole model's, so the cut differs from it by f32
/// rounding alone.
pub fn cut_weight_scales(header: &GgufHeader, start: u32, end: u32) -> Vec<(String, f64)> {
    let Some(m) = Model::new(header) else {
        return Vec::new();
    };
    let (s, e) = (u64::from(start), u64::from(end));
    let trunk = (e - s) - m.nextn_in(s, e);
    if m.arch != "gemma3" {
        return Vec::new();
    }
    match (
        gemma_query_scale(&m, m.trunk(), 0),
        gemma_query_scale(&m, trunk, s),
    ) {
        (Some(whole), Some(cut)) if whole != cut => {
            vec![("attn_q_norm.weight".to_string(), whole / cut)]
        }
        _ => Vec::new(),
    }
}

/// Keys the cut `[start, end)` must carry (set or replaced) so that
/// llama.cpp derives for it what it derives for those blocks of the whole
/// model. Assumes [`check_cut`] accepted the cut.
pub fn cut_keys(header: &GgufHeader, start: u32, end: u32) -> Vec<(String, Value)> {
    let Some(m) = Model::new(header) else {
        return Vec::new();
    };
    let (s, e) = (u64::from(start), u64::from(end));
    let trunk = (e - s) - m.nextn_in(s, e);
    let mut keys = Vec::new();
    match m.arch {
        "deepseek2" => {
            let n_vocab = m.n_vocab();
            let has_q_lora = m.u64("attention.q_lora_rank").unwrap_or(0) > 0;
            // A Lite whole model cut to a non-Lite size: llama.cpp then
            // requires `q_lora_rank`; 0 keeps the uncompressed query.
            if !has_q_lora && !deepseek2_is_lite(trunk, n_vocab) {
                keys.push((m.key("attention.q_lora_rank"), Value::U32(0)));
            }
            // The default gating function depends on the block count: say
            // the whole model's explicitly.
            let gating = m.u64("expert_gating_func").unwrap_or(0);
            if gating == 0 {
                keys.push((
                    m.key("expert_gating_func"),
                    Value::U32(deepseek2_default_gating(m.trunk(), n_vocab)),
                ));
            }
        }
        "gemma2" => {
            if let (Some(whole), Some(cut)) = (
                gemma_query_scale(&m, m.trunk(), 0),
                gemma_query_scale(&m, trunk, s),
            ) {
                if whole != cut {
                    // Gemma 2 has no query norm to rescale (see
                    // `cut_weight_scales`). Queries and keys both pass
                    // through RoPE, whose attention factor multiplies them:
                    // sqrt(ratio) each scales every attention logit by the
                    // ratio.
                    let base = m.f64("rope.scaling.attn_factor").unwrap_or(1.0);
                    let factor = base * (whole / cut).sqrt();
                    keys.push((m.key("rope.scaling.attn_factor"), Value::F32(factor as f32)));
                }
            }
        }
        // llama.cpp scales every input row by `embedding_scale`, hidden rows
        // from the rank before included: they were already scaled.
        "granite" | "granitehybrid" if s > 0 && m.get("embedding_scale").is_some() => {
            keys.push((m.key("embedding_scale"), Value::F32(1.0)));
        }
        "glm4moe" if s > 0 => {
            // llama.cpp aborts on hidden-row input unless the file has
            // M-RoPE sections. Two sections whose positions llama.cpp fills
            // with the same value rotate exactly as NEOX RoPE, this
            // architecture's own.
            let has_sections = m
                .get("rope.dimension_sections")
                .and_then(Value::as_array)
                .and_then(Array::to_u64s)
                .is_some_and(|v| v.len() >= 2 && v[0] > 0 && v[1] > 0);
            if !has_sections {
                keys.push((
                    m.key("rope.dimension_sections"),
                    Value::Array(Array::I32(vec![1, 1, 0, 0])),
                ));
            }
        }
        "qwen3next" | "qwen35moe" if m.get("attention.recurrent_layers").is_none() => {
            // Recurrent (linear-attention) blocks are those whose index + 1
            // is not a multiple of `full_attention_interval`; prediction
            // blocks are full attention.
            let interval = m.u64("full_attention_interval").unwrap_or(4).max(1);
            keys.push((
                m.key("attention.recurrent_layers"),
                Value::Array(Array::Bool(
                    (s..e)
                        .map(|il| il < m.trunk() && (il + 1) % interval != 0)
                        .collect(),
                )),
            ));
        }
        _ => {}
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn header(arch: &str, kv: &[(&str, Value)]) -> GgufHeader {
        let mut metadata = vec![("general.architecture".to_string(), Value::string(arch))];
        for (k, v) in kv {
            metadata.push((format!("{arch}.{k}"), v.clone()));
        }
        GgufHeader {
            path: PathBuf::from("m.gguf"),
            version: 3,
            metadata,
            tensors: Vec::new(),
            alignment: 32,
            data_offset: 0,
            file_len: 0,
        }
    }

    #[test]
    fn whole_models_are_never_refused() {
        let h = header(
            "llama4",
            &[
                ("block_count", Value::U32(48)),
                ("attention.sliding_window", Value::U32(0)),
            ],
        );
        assert!(check_cut(&h, 0, 48).is_ok());
        assert!(check_cut(&h, 0, 24).is_err());
    }

    #[test]
    fn llama4_cuts_start_on_the_no_rope_and_moe_period() {
        let h = header(
            "llama4",
            &[
                ("block_count", Value::U32(48)),
                ("interleave_moe_layer_step", Value::U32(2)),
            ],
        );
        assert!(check_cut(&h, 0, 24).is_ok());
        assert!(check_cut(&h, 24, 48).is_ok());
        let e = check_cut(&h, 22, 48).unwrap_err();
        assert!(e.to_string().contains("multiple of `4`"), "{e}");
        assert_eq!(boundary_multiple(&h), Some(4));
        let h = header(
            "llama4",
            &[
                ("block_count", Value::U32(48)),
                ("interleave_moe_layer_step", Value::U32(3)),
            ],
        );
        assert_eq!(boundary_multiple(&h), Some(12));
    }

    #[test]
    fn deepseek_v3_ranks_of_26_or_27_layers_are_refused() {
        let h = header(
            "deepseek2",
            &[
                ("block_count", Value::U32(62)),
                ("nextn_predict_layers", Value::U32(1)),
                ("attention.q_lora_rank", Value::U32(1536)),
            ],
        );
        assert!(check_cut(&h, 0, 26).is_err());
        assert!(check_cut(&h, 0, 27).is_err());
        assert!(check_cut(&h, 0, 28).is_ok());
        // The prediction block does not count: 35..62 runs 26 blocks,
        // 34..62 27, 33..62 28.
        assert!(check_cut(&h, 35, 62).is_err());
        assert!(check_cut(&h, 34, 62).is_err());
        assert!(check_cut(&h, 33, 62).is_ok());
        // Only the prediction block.
        let e = check_cut(&h, 61, 62).unwrap_err();
        assert!(e.to_string().contains("next-token-prediction"), "{e}");
        // The gating default is written out.
        let keys = cut_keys(&h, 0, 30);
        assert_eq!(
            keys,
            vec![("deepseek2.expert_gating_func".to_string(), Value::U32(1))]
        );
    }

    #[test]
    fn a_lite_deepseek_cut_keeps_its_uncompressed_query() {
        let h = header("deepseek2", &[("block_count", Value::U32(27))]);
        let keys = cut_keys(&h, 0, 13);
        assert!(keys.contains(&("deepseek2.attention.q_lora_rank".to_string(), Value::U32(0))));
    }

    #[test]
    fn gemma3_27b_cuts_carry_the_attention_scale_in_the_query_norm() {
        let h = header(
            "gemma3",
            &[
                ("block_count", Value::U32(62)),
                ("embedding_length", Value::U32(5376)),
                ("attention.head_count", Value::U32(32)),
                ("attention.key_length", Value::U32(128)),
            ],
        );
        assert!(check_cut(&h, 0, 31).is_ok());
        assert!(cut_keys(&h, 0, 31).is_empty());
        let scales = cut_weight_scales(&h, 0, 31);
        assert_eq!(scales.len(), 1);
        assert_eq!(scales[0].0, "attn_q_norm.weight");
        let want = (1.0 / 168f64.sqrt()) / (1.0 / 128f64.sqrt());
        assert!((scales[0].1 - want).abs() < 1e-12, "{scales:?}");
        // The whole model, and a 270M-sized one, need nothing.
        assert!(cut_weight_scales(&h, 0, 62).is_empty());
        let h = header(
            "gemma3",
            &[
                ("block_count", Value::U32(18)),
                ("embedding_length", Value::U32(640)),
                ("attention.head_count", Value::U32(4)),
                ("attention.key_length", Value::U32(256)),
            ],
        );
        assert!(cut_weight_scales(&h, 0, 9).is_empty());
    }

    #[test]
    fn gemma2_27b_cuts_carry_the_attention_scale_in_the_rope_factor() {
        let h = header(
            "gemma2",
            &[
                ("block_count", Value::U32(46)),
                ("embedding_length", Value::U32(4608)),
                ("attention.head_count", Value::U32(32)),
                ("attention.key_length", Value::U32(128)),
            ],
        );
        let keys = cut_keys(&h, 0, 23);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].0, "gemma2.rope.scaling.attn_factor");
        let Value::F32(f) = keys[0].1 else { panic!() };
        let want = ((1.0 / 144f64.sqrt()) / (1.0 / 128f64.sqrt())).sqrt();
        assert!((f64::from(f) - want).abs() < 1e-6, "{f}");
        // With RoPE on part of each head only, no factor works.
        let h = header(
            "gemma2",
            &[
                ("block_count", Value::U32(46)),
                ("embedding_length", Value::U32(4608)),
                ("attention.head_count", Value::U32(32)),
                ("attention.key_length", Value::U32(128)),
                ("rope.dimension_count", Value::U32(64)),
            ],
        );
        assert!(check_cut(&h, 0, 23).is_err());
    }

    #[test]
    fn exaone4_32b_is_refused_and_smaller_ones_are_not() {
        let h = header("exaone4", &[("block_count", Value::U32(64))]);
        assert!(check_cut(&h, 0, 32).is_err());
        let h = header("exaone4", &[("block_count", Value::U32(30))]);
        assert!(check_cut(&h, 0, 15).is_ok());
    }

    #[test]
    fn lcm_of_periods() {
        assert_eq!(lcm(4, 1), 4);
        assert_eq!(lcm(4, 2), 4);
        assert_eq!(lcm(4, 6), 12);
    }
}
