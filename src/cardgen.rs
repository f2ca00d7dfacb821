//! Deriving model cards from what a model says about itself: a GGUF header
//! (`skulk card new --from-gguf`) or a Hugging Face repository
//! (`--from-hf`), plus the GGUF naming rules both share (quant preference,
//! `-NNNNN-of-MMMMM` split models; `docs/architecture.md`, "GGUF file
//! names").
//!
//! The derivation is pure ([`card_from_gguf`]); reading the header and
//! listing the split model's files happen at the edge
//! ([`card_from_gguf_path`]). Invariant: a derived card passes the card's
//! semantic rules, or derivation fails naming the file and the field.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::backend::{BackendTag, Compute, Engine};
use crate::card::{Memory, ModelCard, ModelTask, PlacementCardConfig};
use crate::gguf::{split_name, strip_gguf, GgufError, GgufHeader};
use crate::hub::{Hub, HubError, RepoId};

#[derive(Debug, thiserror::Error)]
pub enum CardGenError {
    #[error(transparent)]
    Gguf(#[from] GgufError),

    #[error("`{path}`: `{key}` is `{value}`, but a card needs {need}")]
    Field {
        path: PathBuf,
        key: String,
        value: u64,
        need: &'static str,
    },

    #[error("`{path}` is part of the split model `{base}` of {count} files, but {missing} {verb} missing from `{dir}`")]
    MissingSplitParts {
        path: PathBuf,
        base: String,
        count: u32,
        missing: String,
        verb: &'static str,
        dir: PathBuf,
    },

    #[error(transparent)]
    Hub(Box<HubError>),

    #[error("`{file}` of `{repo}`: {what}")]
    Config {
        repo: String,
        file: String,
        what: String,
    },

    #[error("`{repo}` has no GGUF file `{file}`{available}")]
    NoSuchGguf {
        repo: String,
        file: String,
        available: String,
    },

    #[error("cannot {op} `{path}`: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
}

impl From<HubError> for CardGenError {
    fn from(e: HubError) -> CardGenError {
        CardGenError::Hub(Box::new(e))
    }
}

impl CardGenError {
    /// Whether the input itself is wrong (exit 1) rather than unreadable (2).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            CardGenError::Gguf(GgufError::Io { .. }) | CardGenError::Io { .. } => false,
            CardGenError::Hub(e) => matches!(**e, HubError::Gguf { .. }),
            CardGenError::Gguf(_)
            | CardGenError::Field { .. }
            | CardGenError::MissingSplitParts { .. }
            | CardGenError::Config { .. }
            | CardGenError::NoSuchGguf { .. } => true,
        }
    }
}

/// How a derived card is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOutput {
    Yaml,
    Json,
}

/// The card as a YAML or (pretty) JSON document, newline-terminated.
pub fn render_card(card: &ModelCard, output: CardOutput) -> String {
    match output {
        CardOutput::Yaml => serde_yaml_ng::to_string(card).expect("a card serialises"),
        CardOutput::Json => serde_json::to_string_pretty(card).expect("a card serialises") + "\n",
    }
}

/// The facts a card takes from a GGUF header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufFacts {
    pub architecture: String,
    pub block_count: u64,
    pub embedding_length: u64,
    pub head_count_kv: Option<u64>,
    pub context_length: Option<u64>,
    pub quantization: Option<String>,
}

impl GgufFacts {
    pub fn from_header(h: &GgufHeader) -> Result<GgufFacts, GgufError> {
        Ok(GgufFacts {
            architecture: h.architecture()?.to_string(),
            block_count: h.block_count()?,
            embedding_length: h.embedding_length()?,
            head_count_kv: h.head_count_kv()?,
            context_length: h.context_length()?,
            quantization: h.quantization()?,
        })
    }
}

/// Preference among the llama.cpp computes: the Python Skulk's GGUF cards
/// prefer vulkan, rocm, cuda, cpu (`docs/architecture.md`, "Backend tags");
/// metal, which it does not list, goes before cpu (no host has both metal
/// and another GPU tag).
const LLAMA_CPP_PREFERENCE: [Compute; 5] = [
    Compute::Vulkan,
    Compute::Rocm,
    Compute::Cuda,
    Compute::Metal,
    Compute::Cpu,
];

/// `llama_cpp-<compute>` for each of `computes`.
fn tag_names(computes: &[Compute]) -> impl Iterator<Item = String> + '_ {
    computes
        .iter()
        .map(|&c| BackendTag::new(Engine::LlamaCpp, c).to_string())
}

/// The placement of a GGUF card.
pub fn llama_cpp_placement() -> PlacementCardConfig {
    PlacementCardConfig {
        // Every llama.cpp tag: a GGUF card runs wherever a llama.cpp engine
        // does.
        compatible_backends: std::iter::once(Engine::LlamaCpp.as_str().to_owned())
            .chain(tag_names(&Compute::ALL))
            .collect::<BTreeSet<_>>(),
        backend_preference: tag_names(&LLAMA_CPP_PREFERENCE).collect(),
        ..PlacementCardConfig::default()
    }
}

/// The card of a GGUF model (pure). `path` names the header's file in errors,
/// `gguf_file` is the card's `ggufFile` (the first part, relative to the
/// model directory), `storage_bytes` the size of the whole split model.
pub fn card_from_gguf(
    facts: &GgufFacts,
    path: &Path,
    gguf_file: &str,
    storage_bytes: u64,
    model_id: &str,
) -> Result<ModelCard, CardGenError> {
    let positive_u32 = |suffix: &str, value: u64, need| {
        u32::try_from(value)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| CardGenError::Field {
                path: path.to_path_buf(),
                key: format!("{}.{suffix}", facts.architecture),
                value,
                need,
            })
    };
    let n_layers = positive_u32(
        "block_count",
        facts.block_count,
        "a positive layer count below 2^32",
    )?;
    let hidden_size = positive_u32(
        "embedding_length",
        facts.embedding_length,
        "a positive hidden size below 2^32",
    )?;
    // Unknown (absent) or 0 both mean "not given" on a card.
    let num_key_value_heads = match facts.head_count_kv {
        None | Some(0) => None,
        Some(n) => Some(positive_u32(
            "attention.head_count_kv",
            n,
            "a KV-head count below 2^32",
        )?),
    };
    Ok(ModelCard {
        model_id: model_id.to_string(),
        storage_size: Memory::from_bytes(storage_bytes),
        n_layers,
        hidden_size,
        supports_tensor: false,
        num_key_value_heads,
        tasks: vec![ModelTask::TextGeneration],
        components: None,
        // The GGUF's `general.architecture` (`llama`, `qwen3`, `gemma3`): the
        // family token a card's capability defaults key on, and what `skulk
        // plan` checks to warn when the model cannot be split.
        family: facts.architecture.clone(),
        quantization: facts.quantization.clone().unwrap_or_default(),
        base_model: String::new(),
        gguf_file: Some(gguf_file.to_string()),
        capabilities: Vec::new(),
        context_length: facts.context_length.unwrap_or(0),
        uses_cfg: false,
        trust_remote_code: false,
        is_custom: false,
        vision: None,
        reasoning: None,
        modalities: None,
        tooling: None,
        runtime: None,
        placement: llama_cpp_placement(),
    })
}

/// Quant names in order of preference (`docs/architecture.md`, "GGUF file
/// names"; the Python Skulk's `gguf_quant_rank`): the first one contained in a file name ranks it.
const QUANT_PREFERENCE: [&str; 18] = [
    "q4_k_m", "q4_k_s", "q5_k_m", "q5_k_s", "q6_k", "q4_0", "q5_0", "q8_0", "q3_k_m", "q3_k_l",
    "q3_k_s", "q2_k", "iq4_xs", "iq4_nl", "iq4", "iq3", "iq2", "iq1",
];
/// Rank of an unquantised file (last resort: largest).
const RANK_UNQUANTISED: usize = 10_000;
/// Rank of a file naming no known quant.
const RANK_UNKNOWN: usize = 1_000;

/// Preference rank of a GGUF file name (lower is preferred).
pub fn gguf_quant_rank(name: &str) -> usize {
    let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    if let Some(i) = QUANT_PREFERENCE.iter().position(|q| base.contains(q)) {
        return i;
    }
    if ["bf16", "f16", "fp16", "f32", "fp32"]
        .iter()
        .any(|q| base.contains(q))
    {
        RANK_UNQUANTISED
    } else {
        RANK_UNKNOWN
    }
}

/// Whether a repository file is a model GGUF (not a vision projector).
pub fn is_model_gguf(name: &str) -> bool {
    strip_gguf(name).is_some() && !name.to_ascii_lowercase().contains("mmproj")
}

/// The preferred GGUF among repository file names: minimum of (quant rank,
/// base name), mmproj projectors excluded (`docs/architecture.md`, "GGUF
/// file names"). For a
/// split model this is its first part, which sorts first.
pub fn select_preferred_gguf<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .filter(|n| is_model_gguf(n))
        .min_by_key(|n| (gguf_quant_rank(n), n.rsplit('/').next().unwrap_or(n), *n))
}

/// The files of `name`'s split model among `names` (just `name` when it is
/// not split), first part first, and the group's missing members.
pub fn split_parts<'a>(name: &'a str, names: &[&'a str]) -> (Vec<String>, Vec<String>) {
    match split_name(name) {
        None => (vec![name.to_string()], Vec::new()),
        Some(split) => {
            let mut present = Vec::new();
            let mut missing = Vec::new();
            for i in 1..=split.count {
                let part = split.part(i);
                if names.contains(&part.as_str()) {
                    present.push(part);
                } else {
                    missing.push(part);
                }
            }
            (present, missing)
        }
    }
}

/// Derive the card of the GGUF file at `path` (reads its header; for a
/// split model, the first part's header and every part's size). The model
/// id defaults to `local/<file stem>` (the group's base for a split model).
pub fn card_from_gguf_path(path: &Path, model_id: Option<&str>) -> Result<ModelCard, CardGenError> {
    let io = |op, path: &Path, error| CardGenError::Io {
        op,
        path: path.to_path_buf(),
        error,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (first, storage, stem) = match split_name(&file_name) {
        None => {
            let size = std::fs::metadata(path)
                .map_err(|e| io("read", path, e))?
                .len();
            let stem = strip_gguf(&file_name).unwrap_or(&file_name).to_string();
            (file_name.clone(), size, stem)
        }
        Some(split) => {
            let mut total = 0u64;
            let mut missing = Vec::new();
            for i in 1..=split.count {
                let part = dir.join(split.part(i));
                match std::fs::metadata(&part) {
                    Ok(m) => total += m.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        missing.push(split.part(i))
                    }
                    Err(e) => return Err(io("read", &part, e)),
                }
            }
            if !missing.is_empty() {
                let verb = if missing.len() == 1 { "is" } else { "are" };
                return Err(CardGenError::MissingSplitParts {
                    path: path.to_path_buf(),
                    base: split.base.to_string(),
                    count: split.count,
                    missing: missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    verb,
                    dir,
                });
            }
            (split.part(1), total, split.base.to_string())
        }
    };
    let header_path = dir.join(&first);
    let header_path = if first == file_name {
        path.to_path_buf()
    } else {
        header_path
    };
    let header = GgufHeader::read(&header_path)?;
    let facts = GgufFacts::from_header(&header)?;
    let default_id = format!("local/{stem}");
    card_from_gguf(
        &facts,
        &header_path,
        &first,
        storage,
        model_id.unwrap_or(&default_id),
    )
}

/// Facts a card takes from a transformers `config.json` (reference 1.3,
/// step 2): the first present of the layer-count keys; `text_config`'s
/// values override the top level's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFacts {
    pub layer_count: u64,
    pub hidden_size: Option<u64>,
    pub num_key_value_heads: Option<u64>,
    pub max_position_embeddings: Option<u64>,
    pub architectures: Vec<String>,
}

/// Layer-count keys in the order the Python Skulk tries them.
const LAYER_KEYS: [&str; 6] = [
    "num_hidden_layers",
    "num_layers",
    "n_layer",
    "n_layers",
    "num_decoder_layers",
    "decoder_layers",
];

/// Architectures the Python Skulk serves with tensor parallelism (reference
/// 1.3: `architectures` must be exactly one of these).
const TENSOR_ARCHITECTURES: [&str; 13] = [
    "Glm4MoeLiteForCausalLM",
    "GlmMoeDsaForCausalLM",
    "DeepseekV32ForCausalLM",
    "DeepseekV3ForCausalLM",
    "Qwen3NextForCausalLM",
    "Qwen3MoeForCausalLM",
    "Qwen3_5MoeForConditionalGeneration",
    "Qwen3_5ForConditionalGeneration",
    "MiniMaxM2ForCausalLM",
    "LlamaForCausalLM",
    "GptOssForCausalLM",
    "Step3p5ForCausalLM",
    "NemotronHForCausalLM",
];

/// Read [`ConfigFacts`] from a parsed `config.json` (pure). The error names
/// the missing or malformed key.
fn config_facts(config: &serde_json::Value) -> Result<ConfigFacts, String> {
    let text = config.get("text_config").filter(|t| t.is_object());
    let get = |key: &str| text.and_then(|t| t.get(key)).or_else(|| config.get(key));
    let uint = |key: &str| -> Result<Option<u64>, String> {
        match get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(Some)
                .ok_or_else(|| format!("`{key}` is `{v}`, not a positive integer")),
        }
    };
    let mut layer_count = None;
    for key in LAYER_KEYS {
        if let Some(n) = uint(key)? {
            layer_count = Some(n);
            break;
        }
    }
    let layer_count = layer_count.ok_or_else(|| {
        format!(
            "no layer count (none of {})",
            LAYER_KEYS.map(|k| format!("`{k}`")).join(", ")
        )
    })?;
    let architectures = match get("architectures") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Ok(ConfigFacts {
        layer_count,
        hidden_size: uint("hidden_size")?,
        num_key_value_heads: uint("num_key_value_heads")?,
        max_position_embeddings: uint("max_position_embeddings")?,
        architectures,
    })
}

/// The card of a safetensors (non-GGUF) repository (pure): placement is the
/// card default, as the Python Skulk leaves it.
pub fn card_from_config(
    facts: &ConfigFacts,
    repo: &str,
    storage_bytes: u64,
    model_id: &str,
) -> Result<ModelCard, CardGenError> {
    let config_error = |what: String| CardGenError::Config {
        repo: repo.to_string(),
        file: "config.json".into(),
        what,
    };
    let u32_of = |key: &str, v: u64| {
        u32::try_from(v).map_err(|_| config_error(format!("`{key}` is `{v}`, too large")))
    };
    let hidden_size = facts
        .hidden_size
        .ok_or_else(|| config_error("no `hidden_size`; a card needs the hidden size".into()))?;
    let supports_tensor = facts.architectures.len() == 1
        && TENSOR_ARCHITECTURES.contains(&facts.architectures[0].as_str());
    Ok(ModelCard {
        model_id: model_id.to_string(),
        storage_size: Memory::from_bytes(storage_bytes),
        n_layers: u32_of("num_hidden_layers", facts.layer_count)?,
        hidden_size: u32_of("hidden_size", hidden_size)?,
        supports_tensor,
        num_key_value_heads: facts
            .num_key_value_heads
            .map(|n| u32_of("num_key_value_heads", n))
            .transpose()?,
        tasks: vec![ModelTask::TextGeneration],
        components: None,
        family: String::new(),
        quantization: String::new(),
        base_model: String::new(),
        gguf_file: None,
        capabilities: Vec::new(),
        context_length: facts.max_position_embeddings.unwrap_or(0),
        uses_cfg: false,
        trust_remote_code: true,
        is_custom: false,
        vision: None,
        reasoning: None,
        modalities: None,
        tooling: None,
        runtime: None,
        placement: PlacementCardConfig::default(),
    })
}

/// Derive the card of a hub repository (`card new --from-hf`). A GGUF
/// repository gives a GGUF card for `gguf_file` (default: the preferred
/// quant), sized by its whole split model, with the structure read from the
/// GGUF header by range requests; any other repository a card from its
/// `config.json`, sized by `model.safetensors.index.json`'s
/// `metadata.total_size` (else the sum of its `.safetensors` files).
pub async fn card_from_hf(
    hub: &Hub,
    repo: &RepoId,
    revision: &str,
    gguf_file: Option<&str>,
    model_id: Option<&str>,
) -> Result<ModelCard, CardGenError> {
    let files = hub.list_files(repo, revision).await?;
    let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let size_of = |name: &str| files.iter().find(|f| f.path == name).map_or(0, |f| f.size);
    let repo_name = repo.to_string();
    let model_id = model_id.unwrap_or(&repo_name);

    if let Some(chosen) = gguf_file.or_else(|| select_preferred_gguf(names.iter().copied())) {
        if !names.contains(&chosen) {
            let ggufs: Vec<String> = names
                .iter()
                .filter(|n| is_model_gguf(n))
                .map(|n| format!("`{n}`"))
                .collect();
            return Err(CardGenError::NoSuchGguf {
                repo: repo_name.clone(),
                file: chosen.to_string(),
                available: if ggufs.is_empty() {
                    "; it has no GGUF files".into()
                } else {
                    format!("; it has {}", ggufs.join(", "))
                },
            });
        }
        let (group, missing) = split_parts(chosen, &names);
        if !missing.is_empty() {
            let split = split_name(chosen).expect("only split names miss parts");
            return Err(CardGenError::MissingSplitParts {
                path: PathBuf::from(chosen),
                base: split.base.to_string(),
                count: split.count,
                verb: if missing.len() == 1 { "is" } else { "are" },
                missing: missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                dir: PathBuf::from(format!("{}/{repo_name}", hub.endpoint())),
            });
        }
        let first = &group[0];
        let storage: u64 = group.iter().map(|g| size_of(g)).sum();
        let header = hub
            .gguf_header(repo, revision, first, size_of(first))
            .await?;
        let facts = GgufFacts::from_header(&header)?;
        return card_from_gguf(&facts, &header.path, first, storage, model_id);
    }

    let config_bytes = hub.read(repo, revision, "config.json", None).await?;
    let json = |file: &str, bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| CardGenError::Config {
            repo: repo_name.clone(),
            file: file.to_string(),
            what: format!("not JSON: {e}"),
        })
    };
    let config = json("config.json", &config_bytes)?;
    let facts = config_facts(&config).map_err(|what| CardGenError::Config {
        repo: repo_name.clone(),
        file: "config.json".into(),
        what,
    })?;
    const INDEX: &str = "model.safetensors.index.json";
    let storage = if names.contains(&INDEX) {
        let index = json(INDEX, &hub.read(repo, revision, INDEX, None).await?)?;
        index
            .pointer("/metadata/total_size")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| CardGenError::Config {
                repo: repo_name.clone(),
                file: INDEX.into(),
                what: "no integer `metadata.total_size`".into(),
            })?
    } else {
        files
            .iter()
            .filter(|f| f.path.ends_with(".safetensors"))
            .map(|f| f.size)
            .sum()
    };
    card_from_config(&facts, &repo_name, storage, model_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> GgufFacts {
        GgufFacts {
            architecture: "llama".into(),
            block_count: 30,
            embedding_length: 576,
            head_count_kv: Some(3),
            context_length: Some(8192),
            quantization: Some("Q4_1".into()),
        }
    }

    #[test]
    fn card_carries_header_facts_and_llama_cpp_placement() {
        let card =
            card_from_gguf(&facts(), Path::new("m.gguf"), "m.gguf", 1234, "local/m").unwrap();
        assert_eq!(
            (
                card.n_layers,
                card.hidden_size,
                card.num_key_value_heads,
                card.context_length
            ),
            (30, 576, Some(3), 8192)
        );
        assert_eq!(card.quantization, "Q4_1");
        assert_eq!(card.storage_size.in_bytes, 1234);
        assert_eq!(card.gguf_file.as_deref(), Some("m.gguf"));
        assert!(!card.supports_tensor && !card.trust_remote_code);
        assert_eq!(card.placement.compatible_backends.len(), 6);
        assert!(
            card.semantic_problems().is_empty(),
            "{:?}",
            card.semantic_problems()
        );
    }

    #[test]
    fn zero_or_huge_shape_is_a_named_error() {
        let mut f = facts();
        f.block_count = 0;
        let err = card_from_gguf(&f, Path::new("m.gguf"), "m.gguf", 1, "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`m.gguf`: `llama.block_count` is `0`, but a card needs a positive layer count below 2^32"
        );
        let mut f = facts();
        f.embedding_length = 1 << 40;
        assert!(card_from_gguf(&f, Path::new("m.gguf"), "m.gguf", 1, "x")
            .unwrap_err()
            .to_string()
            .contains("`llama.embedding_length` is `1099511627776`"));
        let mut f = facts();
        f.head_count_kv = Some(0);
        f.context_length = None;
        let card = card_from_gguf(&f, Path::new("m.gguf"), "m.gguf", 1, "x").unwrap();
        assert_eq!((card.num_key_value_heads, card.context_length), (None, 0));
    }

    #[test]
    fn quant_preference_follows_the_reference() {
        assert_eq!(gguf_quant_rank("M-Q4_K_M.gguf"), 0);
        assert_eq!(gguf_quant_rank("m-q8_0.gguf"), 7);
        assert_eq!(gguf_quant_rank("m-IQ4_XS.gguf"), 12);
        assert_eq!(gguf_quant_rank("m-f16.gguf"), 10_000);
        assert_eq!(gguf_quant_rank("m.gguf"), 1_000);
        let names = [
            "m-f16.gguf",
            "m-Q8_0.gguf",
            "mmproj-m-q4_k_m.gguf",
            "big/m-Q4_K_M-00002-of-00002.gguf",
            "big/m-Q4_K_M-00001-of-00002.gguf",
            "README.md",
        ];
        assert_eq!(
            select_preferred_gguf(names),
            Some("big/m-Q4_K_M-00001-of-00002.gguf")
        );
        assert_eq!(
            select_preferred_gguf(["m-f16.gguf", "m.gguf"]),
            Some("m.gguf")
        );
        assert_eq!(select_preferred_gguf(["mmproj.gguf", "a.txt"]), None);
        let (present, missing) = split_parts("big/m-Q4_K_M-00001-of-00002.gguf", &names);
        assert_eq!(
            present,
            [
                "big/m-Q4_K_M-00001-of-00002.gguf",
                "big/m-Q4_K_M-00002-of-00002.gguf"
            ]
        );
        assert!(missing.is_empty());
        let (_, missing) = split_parts("x-00001-of-00003.gguf", &["x-00001-of-00003.gguf"]);
        assert_eq!(missing, ["x-00002-of-00003.gguf", "x-00003-of-00003.gguf"]);
    }
}
