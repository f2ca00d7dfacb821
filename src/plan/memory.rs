//! The placement memory model of `docs/architecture.md` ("Placement", the
//! Python Skulk's model), in exact integer arithmetic.
//!
//! The Python Skulk computes these formulas in floating point; here every
//! comparison is exact, so a plan never depends on rounding and the boundary
//! case `need == usable` fits, as the rules say. Two scalings make the
//! rational constants integral: memory is counted in quarter bytes (75% of a
//! total is then exact) and the overhead factor F in tenths (1.10 -> 11,
//! 1.30 -> 13). Inputs are bounded (host sizes <= 1 PiB, see
//! [`crate::inventory::MAX_HOST_BYTES`]); card-side values are unbounded, so
//! the terms that grow with them saturate, which only ever makes a host look
//! too small, never too large.

use crate::card::ModelCard;
use crate::inventory::Host;

/// Tokens of KV cache budgeted in the fit check when `--context` is not
/// given (the Python Skulk's `KV_CONTEXT_BUDGET_TOKENS`).
pub const KV_BUDGET_TOKENS: u64 = 8192;

/// Context cap for GGUF cards: llama.cpp preallocates the whole context, so
/// the limit stays at the budget the fit check reserved (the Python Skulk
/// also caps GGUF cards at 8192) unless `--context` asks for more.
pub const GGUF_CONTEXT_CAP: u64 = 8192;

/// Per-host runtime overhead (the Python Skulk's `MEMORY_OVERHEAD_FLOOR`).
pub const RUNTIME_OVERHEAD_BYTES: u64 = 256 * 1024 * 1024;

/// Weights overhead factor F in tenths: 1.10 for GGUF (llama.cpp maps the
/// file, little extra), 1.30 otherwise (MLX; the Python Skulk raised it from
/// 1.05 after GLM-4.7-Flash ran out of memory).
pub const F_TENTHS_GGUF: u128 = 11;
pub const F_TENTHS_OTHER: u128 = 13;

/// Head dimension assumed in the KV estimate (the Python Skulk's fallback 128)
/// and bytes per element (fp16).
const KV_HEAD_DIM: u128 = 128;
const KV_ELEMENT_BYTES: u128 = 2;

const C: u128 = RUNTIME_OVERHEAD_BYTES as u128;

/// Usable memory in quarter bytes: `vram` if given, else
/// `min(available, 0.75 x total)`.
pub fn usable_quarters(host: &Host) -> u128 {
    match host.vram {
        Some(vram) => 4 * vram as u128,
        None => (4 * host.memory_available as u128).min(3 * host.memory_total as u128),
    }
}

/// The working set the context limit is computed from, in quarter bytes:
/// `vram` if given, else `0.75 x total`.
pub fn working_set_quarters(host: &Host) -> u128 {
    match host.vram {
        Some(vram) => 4 * vram as u128,
        None => 3 * host.memory_total as u128,
    }
}

/// KV cache bytes for `layers` layers and `tokens` tokens:
/// `2 x layers x tokens x kv_heads x 128 x 2` (keys and values, fp16).
pub fn kv_bytes(layers: u64, tokens: u64, kv_heads: Option<u32>) -> u128 {
    match kv_heads {
        None => 0,
        Some(heads) => (2 * KV_HEAD_DIM * KV_ELEMENT_BYTES)
            .saturating_mul(layers as u128)
            .saturating_mul(tokens as u128)
            .saturating_mul(heads as u128),
    }
}

/// What the fit check needs to know about a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelMemory {
    /// Weights bytes (`storageSize.inBytes`).
    pub storage: u128,
    /// KV bytes for all layers at the budgeted tokens.
    pub kv_budget: u128,
    /// Overhead factor F in tenths.
    pub f_tenths: u128,
    pub n_layers: u64,
    /// KV bytes per token, all layers (0 when the KV heads are unknown).
    pub per_token_kv: u128,
}

impl ModelMemory {
    pub fn new(card: &ModelCard, budget_tokens: u64) -> Self {
        let n_layers = u64::from(card.n_layers);
        Self {
            storage: card.storage_size.in_bytes as u128,
            kv_budget: kv_bytes(n_layers, budget_tokens, card.num_key_value_heads),
            f_tenths: if card.is_gguf() {
                F_TENTHS_GGUF
            } else {
                F_TENTHS_OTHER
            },
            n_layers,
            per_token_kv: kv_bytes(n_layers, 1, card.num_key_value_heads),
        }
    }

    /// Ten times the memory the whole model needs besides the per-host
    /// overhead: `10 x (storage x F + KV)`.
    fn w10(&self) -> u128 {
        self.storage
            .saturating_mul(self.f_tenths)
            .saturating_add(self.kv_budget.saturating_mul(10))
    }

    /// Whether every host of a pipeline set fits, given the set's total
    /// usable memory and its smallest usable memory (quarter bytes).
    ///
    /// A host with usable memory `u` in a set with total `S` needs
    /// `W x u / S + C` where `W = storage x F + KV`: its continuous share of
    /// the weights with overhead and of the KV cache, plus the runtime
    /// overhead C. It fits when `W u / S + C <= u`, that is
    /// `C <= u (1 - W / S)`. The right side grows with `u`, so the host with
    /// the least usable memory decides for the whole set, and the set fits
    /// exactly when `C <= min_u (1 - W / S)` — a condition that only gets
    /// easier as `min_u` or `S` grow. Among all sets of k hosts from a pool,
    /// the k with the most usable memory maximise both `min_u` and `S` at
    /// once, so if any k-set fits, that one does: the search for the fewest
    /// hosts checks one set per size (see `search`).
    pub fn pipeline_set_fits(&self, sum4: u128, min4: u128) -> bool {
        // need <= u  <=>  4 W10 u4 + 40 C S4 <= 10 u4 S4   (quarters, tenths)
        let lhs = self
            .w10()
            .saturating_mul(4)
            .saturating_mul(min4)
            .saturating_add(C.saturating_mul(40).saturating_mul(sum4));
        lhs <= min4.saturating_mul(10).saturating_mul(sum4)
    }

    /// Whether one host fits in a pipeline set with total `sum4`.
    pub fn pipeline_host_fits(&self, sum4: u128, u4: u128) -> bool {
        self.pipeline_set_fits(sum4, u4)
    }

    /// Whether a host with `u4` fits in a tensor set of `n` hosts: each
    /// holds `storage / n` of the weights and `KV / n`.
    pub fn tensor_host_fits(&self, n: u64, u4: u128) -> bool {
        // W/n + C <= u4/4  <=>  4 W10 + 40 n C <= 10 n u4
        let n = n as u128;
        let lhs = self
            .w10()
            .saturating_mul(4)
            .saturating_add(C.saturating_mul(40).saturating_mul(n));
        lhs <= u4.saturating_mul(10).saturating_mul(n)
    }

    /// Whether a host holding the layer fraction `layers / n_layers` fits:
    /// the check of a manual `--layers` split.
    pub fn layers_host_fits(&self, layers: u64, u4: u128) -> bool {
        // W l / L + C <= u4/4  <=>  4 W10 l + 40 C L <= 10 L u4
        let l = layers as u128;
        let n_layers = self.n_layers as u128;
        let lhs = self
            .w10()
            .saturating_mul(4)
            .saturating_mul(l)
            .saturating_add(C.saturating_mul(40).saturating_mul(n_layers));
        lhs <= u4.saturating_mul(10).saturating_mul(n_layers)
    }

    /// The integer re-check after the layer split: the host's share of the
    /// raw weights, `storage x layers // n_layers`, is at most its usable
    /// memory (quarter bytes).
    pub fn raw_weights_fit(&self, layers: u64, u4: u128) -> bool {
        let weights = self.storage.saturating_mul(layers as u128) / (self.n_layers as u128).max(1);
        weights.saturating_mul(4) <= u4
    }

    /// The memory a host holding the fraction `part / whole` of every layer
    /// needs, in bytes rounded down, for display: weights, KV and the total
    /// `weights x F + KV + C`.
    pub fn breakdown(&self, part: u128, whole: u128) -> Breakdown {
        let whole = whole.max(1);
        let weights = self.storage.saturating_mul(part) / whole;
        let kv = self.kv_budget.saturating_mul(part) / whole;
        let need = self
            .storage
            .saturating_mul(part)
            .saturating_mul(self.f_tenths)
            .saturating_add(self.kv_budget.saturating_mul(part).saturating_mul(10))
            / whole.saturating_mul(10)
            + C;
        Breakdown {
            weights: clamp(weights),
            kv: clamp(kv),
            need: clamp(need),
        }
    }

    /// The context tokens a host can hold when it carries the fraction
    /// `part / whole` of every layer (pipeline: its layers over all layers;
    /// tensor: 1 over the world size):
    /// `max(0, (WS - storage x f x F - C) / (perTokenKV x f))`, rounded
    /// down. `None` when the KV heads are unknown (no limit from memory).
    pub fn context_tokens(&self, ws4: u128, part: u128, whole: u128) -> Option<u64> {
        if self.per_token_kv == 0 || part == 0 {
            return None;
        }
        // x 40 whole:  (10 whole WS4 - 4 storage part F10 - 40 C whole) / (40 perTok part)
        let numerator = (whole as i128 * 10 * ws4 as i128)
            - (self.storage as i128)
                .saturating_mul(4)
                .saturating_mul(part as i128)
                .saturating_mul(self.f_tenths as i128)
            - 40 * C as i128 * whole as i128;
        if numerator <= 0 {
            return Some(0);
        }
        let denominator = (self.per_token_kv as i128)
            .saturating_mul(40)
            .saturating_mul(part as i128);
        Some(u64::try_from(numerator / denominator).unwrap_or(u64::MAX))
    }
}

/// A host's memory needs, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breakdown {
    pub weights: u64,
    pub kv: u64,
    pub need: u64,
}

fn clamp(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Why layers cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("{n_layers} layers cannot be split over {hosts} hosts (each needs at least one)")]
    TooFewLayers { n_layers: u64, hosts: usize },
    #[error("no hosts to split layers over")]
    NoHosts,
}

/// Splits `n_layers` in proportion to `weights` (usable memory) by largest
/// remainder, as the Python Skulk's `allocate_layers_proportionally`: floor
/// every exact share `n_layers x w / sum`, hand the remaining layers one each
/// to the largest fractional remainders (ties to the earlier host), then give
/// every host left with none one layer taken from the current largest
/// allocation (ties to the earlier host). Exact: remainders are compared as
/// integers over the common denominator.
pub fn allocate_layers(n_layers: u64, weights: &[u128]) -> Result<Vec<u64>, AllocationError> {
    let hosts = weights.len();
    if hosts == 0 {
        return Err(AllocationError::NoHosts);
    }
    if n_layers < hosts as u64 {
        return Err(AllocationError::TooFewLayers { n_layers, hosts });
    }
    let sum: u128 = weights.iter().sum();
    let mut alloc: Vec<u64> = Vec::with_capacity(hosts);
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(hosts);
    if sum == 0 {
        // Degenerate: split evenly, as if every host had the same memory.
        return allocate_layers(n_layers, &vec![1; hosts]);
    }
    for (index, &w) in weights.iter().enumerate() {
        let raw = n_layers as u128 * w;
        alloc.push((raw / sum) as u64);
        remainders.push((raw % sum, index));
    }
    let assigned: u64 = alloc.iter().sum();
    let mut remaining = n_layers - assigned;
    // Largest remainder first; a stable sort keeps ties in host order.
    remainders.sort_by_key(|&(remainder, _)| std::cmp::Reverse(remainder));
    for &(_, index) in &remainders {
        if remaining == 0 {
            break;
        }
        alloc[index] += 1;
        remaining -= 1;
    }
    for index in 0..hosts {
        if alloc[index] == 0 {
            let largest = (0..hosts)
                .max_by(|&a, &b| alloc[a].cmp(&alloc[b]).then(b.cmp(&a)))
                .expect("at least one host");
            alloc[largest] -= 1;
            alloc[index] += 1;
        }
    }
    Ok(alloc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// Fractions as integer weights (per mille, per ten thousand...).
    fn alloc(n: u64, weights: &[u128]) -> Vec<u64> {
        allocate_layers(n, weights).unwrap()
    }

    #[test]
    fn layer_allocation_matches_the_reference_cases() {
        assert_eq!(alloc(12, &[25, 25, 50]), [3, 3, 6]);
        assert_eq!(alloc(12, &[25, 25, 25, 25]), [3, 3, 3, 3]);
        assert_eq!(alloc(20, &[9750, 125, 125]), [18, 1, 1]);
        assert_eq!(alloc(3, &[33, 33, 34]), [1, 1, 1]);
        assert_eq!(alloc(10, &[100]), [10]);
        assert_eq!(
            allocate_layers(2, &[1, 1, 1]),
            Err(AllocationError::TooFewLayers {
                n_layers: 2,
                hosts: 3
            })
        );
        assert_eq!(
            allocate_layers(0, &[1]),
            Err(AllocationError::TooFewLayers {
                n_layers: 0,
                hosts: 1
            })
        );
        // Via usable memory: 5/5/10 GB -> (3,3,6); 3.12/4.68/10.92 -> (2,3,7);
        // 500/500/1000 -> (3,3,6).
        assert_eq!(alloc(12, &[5, 5, 10]), [3, 3, 6]);
        assert_eq!(alloc(12, &[312, 468, 1092]), [2, 3, 7]);
        assert_eq!(alloc(12, &[500, 500, 1000]), [3, 3, 6]);
    }

    #[test]
    fn remainder_ties_go_to_the_earlier_host() {
        assert_eq!(alloc(4, &[1, 1, 1]), [2, 1, 1]);
        assert_eq!(alloc(5, &[1, 1, 1]), [2, 2, 1]);
    }

    fn card(storage: u64, layers: u32, kv: Option<u32>, gguf: bool) -> ModelCard {
        ModelCard {
            model_id: "org/m".into(),
            storage_size: crate::card::Memory::from_bytes(storage),
            n_layers: layers,
            hidden_size: 64,
            supports_tensor: false,
            num_key_value_heads: kv,
            tasks: vec![crate::card::ModelTask::TextGeneration],
            components: None,
            family: String::new(),
            quantization: String::new(),
            base_model: String::new(),
            gguf_file: gguf.then(|| "m.gguf".to_string()),
            capabilities: vec![],
            context_length: 0,
            uses_cfg: false,
            trust_remote_code: true,
            is_custom: false,
            vision: None,
            reasoning: None,
            modalities: None,
            tooling: None,
            runtime: None,
            placement: Default::default(),
        }
    }

    #[test]
    fn context_limit_matches_the_reference_53657() {
        // Card 4 GiB, 32 layers, 8 KV heads, host total 16 GiB, whole model:
        // int((12 GiB - 4 GiB x 1.3 - 256 MiB) / 131072) = 53657.
        let model = ModelMemory::new(&card(4 * GIB, 32, Some(8), false), KV_BUDGET_TOKENS);
        assert_eq!(model.per_token_kv, 131_072);
        let ws4 = 3 * (16 * GIB) as u128;
        assert_eq!(model.context_tokens(ws4, 32, 32), Some(53657));
        assert_eq!(model.context_tokens(ws4, 1, 1), Some(53657));
    }

    #[test]
    fn context_limit_is_none_without_kv_heads_and_zero_when_nothing_fits() {
        let no_kv = ModelMemory::new(&card(4 * GIB, 32, None, false), KV_BUDGET_TOKENS);
        assert_eq!(no_kv.context_tokens(3 * (16 * GIB) as u128, 1, 1), None);
        let big = ModelMemory::new(&card(40 * GIB, 32, Some(8), false), KV_BUDGET_TOKENS);
        assert_eq!(big.context_tokens(3 * (16 * GIB) as u128, 1, 1), Some(0));
    }

    #[test]
    fn exact_fit_of_weights_is_rejected_and_a_smaller_card_fits() {
        // 1 host, 8 GiB available of 16 GiB, 10 layers, KV unknown.
        let u4 = (4 * 8 * GIB as u128).min(3 * 16 * GIB as u128);
        let eight = ModelMemory::new(&card(8 * GIB, 10, None, false), KV_BUDGET_TOKENS);
        assert!(!eight.pipeline_set_fits(u4, u4));
        let five = ModelMemory::new(&card(5 * GIB, 10, None, false), KV_BUDGET_TOKENS);
        assert!(five.pipeline_set_fits(u4, u4));
    }

    #[test]
    fn need_equal_to_usable_fits_and_one_byte_less_does_not() {
        // GGUF, 10 GiB: need = 11 GiB + 256 MiB exactly.
        let model = ModelMemory::new(&card(10 * GIB, 10, None, true), KV_BUDGET_TOKENS);
        let need = 11 * GIB as u128 + C;
        assert!(model.pipeline_set_fits(4 * need, 4 * need));
        assert!(!model.pipeline_set_fits(4 * need - 4, 4 * need - 4));
        assert!(model.tensor_host_fits(1, 4 * need));
        assert!(!model.tensor_host_fits(1, 4 * need - 1));
        assert!(model.layers_host_fits(10, 4 * need));
        assert!(!model.layers_host_fits(10, 4 * need - 1));
        assert_eq!(model.breakdown(1, 1).need as u128, need);
    }

    #[test]
    fn kv_bytes_follow_the_formula() {
        // 2 x 32 layers x 8192 tokens x 8 heads x 128 x 2 bytes = 1 GiB.
        assert_eq!(kv_bytes(32, 8192, Some(8)), GIB as u128);
        assert_eq!(kv_bytes(32, 8192, None), 0);
        assert_eq!(kv_bytes(u64::MAX, u64::MAX, Some(u32::MAX)), u128::MAX);
    }

    #[test]
    fn usable_memory_is_vram_or_min_of_available_and_three_quarters() {
        let mut host = crate::inventory::parse(&serde_json::json!({"hosts": [{
            "name": "a", "address": "10.0.0.1",
            "memory": {"total": "16GiB", "available": "8GiB"},
            "backends": ["mlx"]
        }]}))
        .unwrap()
        .hosts()[0]
            .clone();
        assert_eq!(usable_quarters(&host), 4 * 8 * GIB as u128);
        host.memory_available = 16 * GIB;
        assert_eq!(usable_quarters(&host), 4 * 12 * GIB as u128);
        assert_eq!(working_set_quarters(&host), 4 * 12 * GIB as u128);
        host.vram = Some(24 * GIB);
        assert_eq!(usable_quarters(&host), 4 * 24 * GIB as u128);
        assert_eq!(working_set_quarters(&host), 4 * 24 * GIB as u128);
    }
}
