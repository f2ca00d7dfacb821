//! Model cards: the declarative description of one model.
//!
//! The types mirror the seed's `modelCard` (`CreateInstanceParams`) field for
//! field: camelCase on the wire, strict (an unknown field is an error), doc
//! comments become JSON-schema descriptions. Fields equal to their defaults
//! are omitted when a card is written, as in the seed's example plan, so an
//! embedded card stays short and byte-stable.
//!
//! Input written by the Python Skulk (its TOML catalog) uses snake_case keys;
//! [`snake_to_camel`] turns those into the wire names before validation
//! (`crate::validate` renames every key of a card file with it).
//! Rules that a JSON schema cannot express live in [`ModelCard::semantic_problems`].

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backend::BackendTag;

/// An amount of bytes, as an object (the Python Skulk's `Memory`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Memory {
    /// Size in bytes.
    #[serde(default)]
    pub in_bytes: u64,
}

impl Memory {
    pub const fn from_bytes(in_bytes: u64) -> Self {
        Self { in_bytes }
    }
}

/// The task types a model serves; selects which runner handles it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum ModelTask {
    TextGeneration,
    TextToImage,
    ImageToImage,
    TextEmbedding,
}

/// The persisted, declarative metadata skulk holds for one model.
///
/// This is the model-card interface: the single source of truth for how a
/// model is sized, sharded, placed, and run. It is read by the planner
/// (placement), the downloader (sizing and which files to fetch), and the
/// rank runner (engine and behaviour). camelCase on the wire and strict: an
/// unknown field is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "ModelCard")]
pub struct ModelCard {
    /// The model's identifier (a Hugging Face repo id, e.g.
    /// `mlx-community/Qwen3.5-9B-4bit`, or a custom id). Slashes become `--`
    /// in the on-disk store directory name.
    pub model_id: String,
    /// On-disk size of the weights this card loads (for a GGUF card, just the
    /// selected quant's split parts, not every quant the repo hosts). The
    /// planner uses this for memory-fit and placement-width decisions.
    pub storage_size: Memory,
    /// Number of transformer layers. Drives pipeline sharding (how layers
    /// split across nodes) and KV-cache sizing.
    #[schemars(range(min = 1))]
    pub n_layers: u32,
    /// Model hidden dimension, used in memory/KV-cache estimates.
    #[schemars(range(min = 1))]
    pub hidden_size: u32,
    /// Whether the model may be served with tensor parallelism. GGUF/llama.cpp
    /// cards set this false.
    pub supports_tensor: bool,
    /// KV-head count for grouped-query attention, used in KV-cache sizing.
    /// Null when unknown or not applicable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub num_key_value_heads: Option<u32>,
    /// The task types this model serves (TextGeneration, TextEmbedding,
    /// TextToImage, ImageToImage); selects which runner handles it.
    pub tasks: Vec<ModelTask>,
    /// For multi-component models (e.g. a diffusion stack), the per-component
    /// weight layout. Null for a single-weights model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<ComponentInfo>>,
    /// Model family token (e.g. qwen3, gemma4) used to pick family-specific
    /// defaults during capability resolution. Empty when not classified.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub family: String,
    /// Human quantization label (e.g. 4bit, Q4_K_M); informational.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub quantization: String,
    /// The upstream base model id when this is a quant/finetune of another;
    /// empty if not applicable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_model: String,
    /// For GGUF (llama.cpp) models: the repo-relative path of the weights file
    /// the runner loads (the selected quant's first split part). Null for
    /// non-GGUF (safetensors/MLX) cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf_file: Option<String>,
    /// Free-form capability tags carried for compatibility/auxiliary use; the
    /// structured reasoning/modalities/tooling configs are authoritative.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// The model's advertised maximum context length in tokens (0 if
    /// unknown). The admission ceiling is the smaller of this and what fits
    /// in memory.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub context_length: u64,
    /// Whether the model uses classifier-free guidance (relevant to some
    /// image / diffusion models).
    #[serde(default, skip_serializing_if = "is_false")]
    pub uses_cfg: bool,
    /// Passed to the model loader: whether to execute the repo's custom
    /// Python. Defaults true to match upstream loaders; set false to refuse it.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub trust_remote_code: bool,
    /// Marks an operator-added custom card (not from the curated catalog).
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_custom: bool,
    /// Optional vision (image-input) configuration; null for text-only models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision: Option<VisionCardConfig>,
    /// Optional reasoning/thinking configuration (toggle, budget, format,
    /// default effort); null falls back to family defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningCardConfig>,
    /// Optional extra-modality flags (audio input, native multimodal); null
    /// falls back to family defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<ModalitiesCardConfig>,
    /// Optional tool-calling configuration (support, call format, builtin
    /// tools); null falls back to family defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tooling: Option<ToolingCardConfig>,
    /// Optional runtime-behaviour configuration (prompt renderer, output
    /// parser, MTP/speculative-decoding sidecar, MLX knobs); null falls back
    /// to defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeCapabilityCardConfig>,
    /// Where the model is allowed to run and which backend is preferred: the
    /// `compatibleBackends` hard filter and `backendPreference` soft score the
    /// planner uses to route the model to suitable nodes.
    #[serde(default, skip_serializing_if = "PlacementCardConfig::is_default")]
    pub placement: PlacementCardConfig,
}

/// One component of a multi-component model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentInfo {
    /// Logical name of this component (e.g. text_encoder, transformer).
    pub component_name: String,
    /// Repo-relative subdirectory holding this component's weights.
    pub component_path: String,
    /// On-disk size of this component's weights.
    pub storage_size: Memory,
    /// Layer count for this component when it is shardable; null otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub n_layers: Option<u32>,
    /// Whether this component may be split across nodes (vs. loaded whole).
    pub can_shard: bool,
    /// The component's `*.safetensors.index.json` filename when sharded
    /// across files; null for a single-file component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safetensors_index_filename: Option<String>,
}

/// Vision (image-input) configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VisionCardConfig {
    /// Token id the model uses as the image placeholder in the prompt.
    /// Required by the MLX vision path; null is allowed for a llama.cpp-only
    /// vision GGUF, whose chat handler inserts image features itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_token_id: Option<i64>,
    /// Vision model-type tag (from config.json's vision_config), selecting the
    /// image processor (MLX) or chat handler (llama.cpp). Empty when a bare
    /// GGUF repo only signals vision via its mmproj projector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_type: String,
    /// Repo holding the vision-tower weights when separate from the LM; empty
    /// if bundled with the main weights.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub weights_repo: String,
    /// The literal image placeholder string, when distinct from image_token_id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_token: Option<String>,
    /// Repo providing the image processor/preprocessor config, if not the
    /// main repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor_repo: Option<String>,
    /// Begin-of-image token id, for families that bracket image spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boi_token_id: Option<i64>,
    /// End-of-image token id, for families that bracket image spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eoi_token_id: Option<i64>,
}

/// Reasoning marker formats used by model families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningFormat {
    None,
    TokenDelimited,
    ChannelDelimited,
}

/// Reasoning effort levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
}

/// Reasoning/thinking configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReasoningCardConfig {
    /// Whether the model can have reasoning turned on/off per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_toggle: Option<bool>,
    /// Whether the model accepts a reasoning-effort/budget control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_budget: Option<bool>,
    /// How reasoning is marked in the output stream: none, token_delimited
    /// (special tokens), or channel_delimited (a separate reasoning channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ReasoningFormat>,
    /// Reasoning effort applied when the request does not specify one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_effort: Option<ReasoningEffort>,
    /// The effort value that means "reasoning off" for this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_effort: Option<ReasoningEffort>,
}

/// Extra-modality flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModalitiesCardConfig {
    /// Whether the model accepts audio input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_audio_input: Option<bool>,
    /// Whether the model natively interleaves modalities (vs. a bolt-on
    /// adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_native_multimodal: Option<bool>,
}

/// Tool-call output formats emitted by model families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallFormat {
    Generic,
    Gemma4,
    GptOss,
    Dsml,
}

/// Builtin tool contracts that can be advertised to model families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinToolType {
    WebSearch,
    OpenUrl,
    ExtractPage,
}

/// Tool-calling configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolingCardConfig {
    /// Whether the model supports function/tool calling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_tool_calling: Option<bool>,
    /// The wire format the model emits tool calls in (generic, gemma4,
    /// gpt_oss, dsml), selecting the output parser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_format: Option<ToolCallFormat>,
    /// Builtin tools advertised to this model (e.g. web_search, open_url,
    /// extract_page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin_tools: Option<Vec<BuiltinToolType>>,
}

/// Prompt renderer strategies supported by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromptRendererType {
    Tokenizer,
    Gemma4,
    Dsml,
}

/// Output parser strategies supported by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputParserType {
    Generic,
    Gemma4,
    GptOss,
    #[serde(rename = "deepseek_v32")]
    DeepseekV32,
}

/// How an MTP sidecar stores its RMSNorm weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MtpNormConvention {
    ZeroCentered,
    ActualScale,
}

/// Concatenation order of the MTP fc projection input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MtpConcatOrder {
    EmbedFirst,
    HiddenFirst,
}

/// Speculative-decoding mode for the llama_server (served-backend) engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServedSpecType {
    None,
    DraftMtp,
    DraftEagle3,
    DraftSimple,
    Ngram,
}

/// Runtime-behaviour configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeCapabilityCardConfig {
    /// How prompts are rendered for this model (tokenizer chat template,
    /// gemma4, dsml); null uses the family default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_renderer: Option<PromptRendererType>,
    /// How model output is parsed (generic, gemma4, gpt_oss, deepseek_v32),
    /// e.g. for reasoning/tool-call extraction; null uses the family default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_parser: Option<OutputParserType>,
    /// Per-model override for the MLX `MLX_METAL_FAST_SYNCH` flag. Null means
    /// no opinion (the cluster default applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metal_fast_synch: Option<bool>,
    /// True when native MTP prediction heads are available via sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtp_heads: Option<bool>,
    /// Maximum draft depth the MTP heads support (positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtp_max_depth: Option<i64>,
    /// Hugging Face repo id containing the published mtp.safetensors sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtp_sidecar_repo: Option<String>,
    /// How the sidecar stores its RMSNorm weights: zero_centered
    /// (deviation from 1) or actual_scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtp_norm_convention: Option<MtpNormConvention>,
    /// Concatenation order of the MTP fc projection input: embed_first or
    /// hidden_first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtp_concat_order: Option<MtpConcatOrder>,
    /// Whether speculation may run on multi-node placements of this model.
    /// Null places no restriction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative_multi_node: Option<bool>,
    /// Hugging Face repo id of a companion assistant (drafter) model.
    /// Mutually exclusive with the MTP sidecar fields (`mtpHeads`,
    /// `mtpSidecarRepo`, `mtpNormConvention`, `mtpConcatOrder`);
    /// `mtpMaxDepth` then bounds the assistant's draft depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_model_repo: Option<String>,
    /// Speculative-decoding mode for the llama_server (served-backend)
    /// engine: none, draft_mtp, draft_eagle3, draft_simple, ngram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_spec_type: Option<ServedSpecType>,
    /// Max draft tokens per step for the served engine (positive); null uses
    /// the llama-server default (3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub served_spec_n_max: Option<i64>,
    /// Hugging Face repo of a separate draft GGUF for the served engine.
    /// Pairs with `servedSpecDraftFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_spec_draft_repo: Option<String>,
    /// Repo-relative GGUF filename of the served draft model (in
    /// `servedSpecDraftRepo`). Required when `servedSpecDraftRepo` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_spec_draft_file: Option<String>,
}

/// Where a model may run and which backend is preferred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementCardConfig {
    /// Hard constraint: only route to nodes whose advertised backends
    /// intersect this set. Written sorted.
    #[serde(default = "default_compatible_backends")]
    pub compatible_backends: BTreeSet<String>,
    /// Hard constraint: hosts with less usable memory (GiB) are not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_vram_gib: Option<f64>,
    /// Caps the placement-time context-token budget when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_context_tokens: Option<u64>,
    /// Soft, ordered preference among the node's backend tags (e.g.
    /// `llama_cpp-vulkan`, `llama_cpp-rocm`). Order is significant; empty
    /// means no preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_preference: Vec<String>,
}

impl Default for PlacementCardConfig {
    fn default() -> Self {
        Self {
            compatible_backends: default_compatible_backends(),
            min_vram_gib: None,
            max_context_tokens: None,
            backend_preference: Vec::new(),
        }
    }
}

impl PlacementCardConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_compatible_backends() -> BTreeSet<String> {
    BTreeSet::from([crate::backend::Engine::Mlx.as_str().to_owned()])
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A rule violation found in a card that passed the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON pointer to the offending value (`/runtime/servedSpecDraftFile`).
    pub pointer: String,
    pub message: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl Problem {
    fn error(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
            severity: Severity::Error,
        }
    }
}

impl ModelCard {
    /// Whether this card is run by llama.cpp from a GGUF file.
    pub fn is_gguf(&self) -> bool {
        self.gguf_file.is_some()
    }

    /// Rules the JSON schema cannot express. An empty list means the card is
    /// valid on its own (cross-file rules, such as duplicate ids within a
    /// directory, are checked by the validator).
    pub fn semantic_problems(&self) -> Vec<Problem> {
        self.semantic_problems_in(&serde_json::Value::Null)
    }

    /// [`Self::semantic_problems`] of a card parsed from `document` (its
    /// normalised, camelCase form): a problem with an item of a list the
    /// card keeps as a set (`compatibleBackends`) points at the item as
    /// written there.
    pub fn semantic_problems_in(&self, document: &serde_json::Value) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.model_id.trim().is_empty() {
            problems.push(Problem::error("/modelId", "the model id is empty"));
        }
        if self.n_layers == 0 {
            problems.push(Problem::error("/nLayers", "`nLayers` must be positive"));
        }
        if self.hidden_size == 0 {
            problems.push(Problem::error(
                "/hiddenSize",
                "`hiddenSize` must be positive",
            ));
        }
        if self.num_key_value_heads == Some(0) {
            problems.push(Problem::error(
                "/numKeyValueHeads",
                "`numKeyValueHeads` must be positive when given",
            ));
        }
        if self.tasks.contains(&ModelTask::TextGeneration) && self.storage_size.in_bytes == 0 {
            problems.push(Problem::error(
                "/storageSize/inBytes",
                "a text-generation card needs a positive `storageSize.inBytes` (the planner sizes placements with it)",
            ));
        }
        if let Some(file) = &self.gguf_file {
            if let Some(message) = gguf_path_problem(file) {
                problems.push(Problem::error("/ggufFile", message));
            }
            if self.supports_tensor {
                problems.push(Problem::error(
                    "/supportsTensor",
                    "a GGUF card cannot claim `supportsTensor: true` (llama.cpp has no tensor parallelism here)",
                ));
            }
        }
        if let Some(runtime) = &self.runtime {
            runtime_problems(runtime, &mut problems);
        }
        let written: Vec<&str> = document
            .pointer("/placement/compatibleBackends")
            .and_then(serde_json::Value::as_array)
            .map(|tags| tags.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        placement_problems(&self.placement, &written, &mut problems);
        problems
    }
}

/// `org/name` -> `org--name`, as the Python Skulk's `ModelId.normalize()`.
pub fn normalize_model_id(model_id: &str) -> String {
    model_id.replace('/', "--")
}

fn gguf_path_problem(file: &str) -> Option<String> {
    if file.is_empty() {
        return Some("`ggufFile` is empty".into());
    }
    if file.starts_with('/') || file.starts_with('\\') || file.contains(':') {
        return Some(format!(
            "`ggufFile` `{file}` must be a path relative to the model directory"
        ));
    }
    if file
        .split(['/', '\\'])
        .any(|part| part == ".." || part.is_empty())
    {
        return Some(format!(
            "`ggufFile` `{file}` must not contain `..` or empty path components"
        ));
    }
    if !file.to_ascii_lowercase().ends_with(".gguf") {
        return Some(format!("`ggufFile` `{file}` must end in `.gguf`"));
    }
    None
}

fn runtime_problems(runtime: &RuntimeCapabilityCardConfig, problems: &mut Vec<Problem>) {
    match (
        &runtime.served_spec_draft_repo,
        &runtime.served_spec_draft_file,
    ) {
        (Some(_), None) => problems.push(Problem::error(
            "/runtime/servedSpecDraftFile",
            "`servedSpecDraftRepo` is set but `servedSpecDraftFile` is not; they go together",
        )),
        (None, Some(_)) => problems.push(Problem::error(
            "/runtime/servedSpecDraftRepo",
            "`servedSpecDraftFile` is set but `servedSpecDraftRepo` is not; they go together",
        )),
        _ => {}
    }
    if let Some(file) = &runtime.served_spec_draft_file {
        if let Some(message) = gguf_path_problem(file) {
            problems.push(Problem::error(
                "/runtime/servedSpecDraftFile",
                message.replace("`ggufFile`", "`servedSpecDraftFile`"),
            ));
        }
    }
    if let Some(n) = runtime.served_spec_n_max {
        if n <= 0 {
            problems.push(Problem::error(
                "/runtime/servedSpecNMax",
                format!("`servedSpecNMax` must be positive, got {n}"),
            ));
        }
    }
    if let Some(depth) = runtime.mtp_max_depth {
        if depth <= 0 {
            problems.push(Problem::error(
                "/runtime/mtpMaxDepth",
                format!("`mtpMaxDepth` must be positive, got {depth}"),
            ));
        }
    }
    // A card speculates with either an assistant drafter model or an MTP
    // sidecar, not both. `mtpMaxDepth` is not a sidecar field: the Python
    // Skulk 1.3.0 catalog's Gemma 4 cards set it beside
    // `assistantModelRepo` as the drafter's depth (docs/card-format.md).
    if runtime.assistant_model_repo.is_some() {
        let mtp_fields = [
            ("mtpHeads", runtime.mtp_heads.is_some()),
            ("mtpSidecarRepo", runtime.mtp_sidecar_repo.is_some()),
            ("mtpNormConvention", runtime.mtp_norm_convention.is_some()),
            ("mtpConcatOrder", runtime.mtp_concat_order.is_some()),
        ];
        for (name, present) in mtp_fields {
            if present {
                problems.push(Problem::error(
                    format!("/runtime/{name}"),
                    format!(
                        "`assistantModelRepo` excludes the MTP sidecar fields, but `{name}` is set"
                    ),
                ));
            }
        }
    }
}

/// `written`: `compatibleBackends` in the order of the file, to point at
/// an item (the card keeps the tags sorted).
fn placement_problems(
    placement: &PlacementCardConfig,
    written: &[&str],
    problems: &mut Vec<Problem>,
) {
    for tag in &placement.compatible_backends {
        if let Err(e) = tag.parse::<BackendTag>() {
            let pointer = match written.iter().position(|w| w == tag) {
                Some(index) => format!("/placement/compatibleBackends/{index}"),
                None => "/placement/compatibleBackends".to_owned(),
            };
            problems.push(Problem::error(pointer, e.to_string()));
        }
    }
    for (index, tag) in placement.backend_preference.iter().enumerate() {
        let pointer = format!("/placement/backendPreference/{index}");
        if let Err(e) = tag.parse::<BackendTag>() {
            problems.push(Problem::error(pointer, e.to_string()));
        } else if !placement.compatible_backends.contains(tag) {
            problems.push(Problem::error(
                pointer,
                format!("`{tag}` is preferred but not listed in `compatibleBackends`"),
            ));
        }
    }
    if let Some(gib) = placement.min_vram_gib {
        if !gib.is_finite() || gib < 0.0 {
            problems.push(Problem::error(
                "/placement/minVramGib",
                format!("`minVramGib` must be a non-negative number, got {gib}"),
            ));
        }
    }
    if placement.max_context_tokens == Some(0) {
        problems.push(Problem::error(
            "/placement/maxContextTokens",
            "`maxContextTokens` must be positive when given",
        ));
    }
}

/// `in_bytes` -> `inBytes`; a key without underscores is returned as is.
pub fn snake_to_camel(key: &str) -> String {
    if !key.contains('_') {
        return key.to_string();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for (index, ch) in key.chars().enumerate() {
        if ch == '_' && index > 0 {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
pub fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> serde_json::Value {
        json!({
            "modelId": "org/model",
            "storageSize": {"inBytes": 1000},
            "nLayers": 4,
            "hiddenSize": 64,
            "supportsTensor": false,
            "tasks": ["TextGeneration"]
        })
    }

    fn card(value: serde_json::Value) -> ModelCard {
        serde_json::from_value(value).expect("card parses")
    }

    fn pointers(card: &ModelCard) -> Vec<String> {
        card.semantic_problems()
            .into_iter()
            .map(|p| p.pointer)
            .collect()
    }

    #[test]
    fn seed_example_card_round_trips_with_defaults_omitted() {
        let seed = json!({
            "hiddenSize": 2048,
            "modelId": "mlx-community/Llama-3.2-1B-Instruct-4bit",
            "nLayers": 32,
            "storageSize": {"inBytes": 2147483648u64},
            "supportsTensor": false,
            "tasks": ["TextGeneration"]
        });
        let parsed = card(seed.clone());
        assert!(parsed.trust_remote_code);
        assert_eq!(
            parsed.placement.compatible_backends,
            BTreeSet::from([crate::backend::Engine::Mlx.as_str().to_owned()])
        );
        assert_eq!(serde_json::to_value(&parsed).unwrap(), seed);
        assert!(parsed.semantic_problems().is_empty());
    }

    #[test]
    fn unknown_field_is_rejected() {
        let mut value = minimal();
        value["layers"] = json!(3);
        let err = serde_json::from_value::<ModelCard>(value).unwrap_err();
        assert!(err.to_string().contains("unknown field `layers`"), "{err}");
    }

    #[test]
    fn served_spec_draft_repo_requires_file() {
        let mut value = minimal();
        value["runtime"] = json!({"servedSpecDraftRepo": "org/draft"});
        assert_eq!(pointers(&card(value)), ["/runtime/servedSpecDraftFile"]);
    }

    #[test]
    fn served_spec_draft_file_requires_repo() {
        let mut value = minimal();
        value["runtime"] = json!({"servedSpecDraftFile": "d.gguf"});
        assert_eq!(pointers(&card(value)), ["/runtime/servedSpecDraftRepo"]);
    }

    #[test]
    fn served_spec_draft_pair_is_valid() {
        let mut value = minimal();
        value["runtime"] =
            json!({"servedSpecDraftRepo": "org/draft", "servedSpecDraftFile": "d.gguf"});
        assert!(pointers(&card(value)).is_empty());
    }

    #[test]
    fn assistant_model_repo_excludes_mtp_sidecar_fields() {
        let mut value = minimal();
        value["runtime"] = json!({
            "assistantModelRepo": "org/assistant",
            "mtpHeads": true,
            "mtpSidecarRepo": "org/sidecar",
            "mtpNormConvention": "zero_centered",
            "mtpConcatOrder": "embed_first"
        });
        assert_eq!(
            pointers(&card(value)),
            [
                "/runtime/mtpHeads",
                "/runtime/mtpSidecarRepo",
                "/runtime/mtpNormConvention",
                "/runtime/mtpConcatOrder"
            ]
        );
    }

    #[test]
    fn assistant_model_repo_allows_mtp_max_depth() {
        let mut value = minimal();
        value["runtime"] = json!({"assistantModelRepo": "org/assistant", "mtpMaxDepth": 2});
        assert!(pointers(&card(value)).is_empty());
    }

    #[test]
    fn served_spec_n_max_must_be_positive() {
        let mut value = minimal();
        value["runtime"] = json!({"servedSpecNMax": 0});
        assert_eq!(pointers(&card(value)), ["/runtime/servedSpecNMax"]);
    }

    #[test]
    fn mtp_max_depth_must_be_positive() {
        let mut value = minimal();
        value["runtime"] = json!({"mtpMaxDepth": -2});
        assert_eq!(pointers(&card(value)), ["/runtime/mtpMaxDepth"]);
    }

    #[test]
    fn n_layers_hidden_size_and_kv_heads_must_be_positive() {
        let mut value = minimal();
        value["nLayers"] = json!(0);
        value["hiddenSize"] = json!(0);
        value["numKeyValueHeads"] = json!(0);
        assert_eq!(
            pointers(&card(value)),
            ["/nLayers", "/hiddenSize", "/numKeyValueHeads"]
        );
    }

    #[test]
    fn gguf_file_must_be_a_relative_gguf_path_without_dotdot() {
        for bad in [
            "/abs/model.gguf",
            "../model.gguf",
            "a/../model.gguf",
            "model.bin",
            "",
        ] {
            let mut value = minimal();
            value["ggufFile"] = json!(bad);
            assert_eq!(pointers(&card(value)), ["/ggufFile"], "{bad}");
        }
        let mut value = minimal();
        value["ggufFile"] = json!("sub/Model-Q4_K_M-00001-of-00002.gguf");
        assert!(pointers(&card(value)).is_empty());
    }

    #[test]
    fn backend_preference_must_be_subset_of_compatible_backends() {
        let mut value = minimal();
        value["placement"] = json!({
            "compatibleBackends": ["llama_cpp-cpu"],
            "backendPreference": ["llama_cpp-cuda", "llama_cpp-cpu"]
        });
        assert_eq!(pointers(&card(value)), ["/placement/backendPreference/0"]);
    }

    #[test]
    fn backend_tags_come_from_the_known_vocabulary() {
        let mut value = minimal();
        value["placement"] = json!({"compatibleBackends": ["mlx", "cuda"]});
        assert_eq!(
            pointers(&card(value.clone())),
            ["/placement/compatibleBackends"]
        );
        // With the document, the pointer names the item as written (the
        // card itself keeps the tags sorted).
        value["placement"] = json!({"compatibleBackends": ["mlx", "llama_cpp", "cuda"]});
        let located: Vec<String> = card(value.clone())
            .semantic_problems_in(&value)
            .into_iter()
            .map(|p| p.pointer)
            .collect();
        assert_eq!(located, ["/placement/compatibleBackends/2"]);
    }

    #[test]
    fn text_generation_needs_a_positive_storage_size() {
        let mut value = minimal();
        value["storageSize"] = json!({});
        assert_eq!(pointers(&card(value)), ["/storageSize/inBytes"]);
        let mut value = minimal();
        value["storageSize"] = json!({});
        value["tasks"] = json!(["TextToImage"]);
        assert!(pointers(&card(value)).is_empty());
    }

    #[test]
    fn gguf_card_cannot_claim_tensor_support() {
        let mut value = minimal();
        value["ggufFile"] = json!("m.gguf");
        value["supportsTensor"] = json!(true);
        assert_eq!(pointers(&card(value)), ["/supportsTensor"]);
    }

    #[test]
    fn compatible_backends_are_written_sorted() {
        let mut value = minimal();
        value["placement"] = json!({"compatibleBackends": ["llama_cpp-vulkan", "llama_cpp-cpu"]});
        let out = serde_json::to_value(card(value)).unwrap();
        assert_eq!(
            out["placement"]["compatibleBackends"],
            json!(["llama_cpp-cpu", "llama_cpp-vulkan"])
        );
    }
}
