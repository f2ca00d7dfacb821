//! The plan document: what `skulk plan -o json` prints and `--out` writes,
//! and what `skulk apply` and `skulk run-shard` read.
//!
//! Its top-level `instance` is exactly the seed's `CreateInstanceParams
//! .instance` (externally tagged `MlxRingInstance` / `MlxJacclInstance`, the
//! full model card in every shard with defaults omitted), so the file can be
//! POSTed to a Python Skulk cluster's `/instance`; everything skulk adds sits
//! under the one extra key `skulk`. The invariant guarded here is
//! byte-stability: a document is always written in one canonical form (keys
//! sorted at every level, as in the seed's example, two-space indentation),
//! `planDigest` is the sha256 of the compact canonical form without the
//! digest, and [`PlanDocument::from_json`] refuses a document whose digest
//! does not match or whose parts disagree (ranks, runners, nodes, layers), so
//! a parsed document is one a planner could have written. No secret is ever
//! part of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{join_host_port, InstanceKind, Plan, Serving, Sharding, MAX_PARALLEL};
use crate::card::{normalize_model_id, ModelCard};
use crate::inventory::{Connection, GpuLayers, SshSettings};

/// Version of the `skulk` section; a reader refuses other versions.
pub const FORMAT_VERSION: u32 = 1;

/// The address the Python Skulk writes for ranks that are not ring
/// neighbours (RFC 5737 documentation range, port 0).
pub const PLACEHOLDER_IP: &str = "198.51.100.1";

/// A plan document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "PlanDocument")]
pub struct PlanDocument {
    /// The instance, exactly as a Python Skulk cluster's `POST /instance`
    /// takes it.
    pub instance: Instance,
    /// What skulk adds: connection settings, API endpoint, engine, digest.
    pub skulk: SkulkSection,
}

/// An instance (externally tagged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum Instance {
    MlxRingInstance(RingInstance),
    MlxJacclInstance(JacclInstance),
}

/// Ranks connected in a TCP ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingInstance {
    pub instance_id: String,
    pub shard_assignments: ShardAssignments,
    /// Per node, one entry per rank: its own address, its ring neighbours'
    /// addresses and `198.51.100.1:0` for the others; empty for one node.
    pub hosts_by_node: BTreeMap<String, Vec<WireHost>>,
    /// The ring port, shared by all ranks.
    pub ephemeral_port: u16,
    /// Context tokens a request may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_token_limit: Option<u64>,
}

/// Ranks connected all-to-all over RDMA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JacclInstance {
    pub instance_id: String,
    pub shard_assignments: ShardAssignments,
    /// `[i][j]`: RDMA interface on rank i towards rank j; null on the
    /// diagonal.
    pub jaccl_devices: Vec<Vec<Option<String>>>,
    /// Per node, the coordinator's `ip:port` (rank 0).
    pub jaccl_coordinators: BTreeMap<String, String>,
    /// Context tokens a request may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_token_limit: Option<u64>,
}

/// An address and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireHost {
    pub ip: String,
    pub port: u16,
}

/// Which runner holds which shard on which node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardAssignments {
    pub model_id: String,
    pub runner_to_shard: BTreeMap<String, ShardMetadata>,
    pub node_to_runner: BTreeMap<String, String>,
}

/// A shard (externally tagged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ShardMetadata {
    PipelineShardMetadata(Shard),
    TensorShardMetadata(Shard),
}

impl ShardMetadata {
    pub fn shard(&self) -> &Shard {
        match self {
            ShardMetadata::PipelineShardMetadata(s) | ShardMetadata::TensorShardMetadata(s) => s,
        }
    }

    pub fn sharding(&self) -> Sharding {
        match self {
            ShardMetadata::PipelineShardMetadata(_) => Sharding::Pipeline,
            ShardMetadata::TensorShardMetadata(_) => Sharding::Tensor,
        }
    }
}

/// One rank's share of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Shard {
    /// The full model card (fields equal to their defaults omitted).
    pub model_card: ModelCard,
    pub device_rank: u32,
    pub world_size: u32,
    /// First layer of the half-open range `[startLayer, endLayer)`.
    pub start_layer: u32,
    pub end_layer: u32,
    /// Total layers of the model.
    pub n_layers: u32,
    /// Backend tag this rank runs with (`llama_cpp-cpu`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_backend: Option<String>,
    /// Python Skulk test hook; always false in skulk's plans.
    #[serde(default, skip_serializing_if = "is_false")]
    pub immediate_exception: bool,
    /// Python Skulk test hook; never set in skulk's plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub should_timeout: Option<f64>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Everything skulk adds to the wire instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkulkSection {
    /// Version of this section's format.
    pub format_version: u32,
    /// Engine the ranks run (`llama_cpp`, `mlx`, ...).
    pub engine: String,
    /// Where rank 0 serves the OpenAI-compatible API.
    pub api: ApiSettings,
    /// Per node: how to reach it and how its rank runs.
    pub hosts: BTreeMap<String, HostSettings>,
    /// Requests served at once and waiting (absent in plans written before
    /// skulk batched requests: the defaults then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<ServingSettings>,
    /// How long ranks wait on a silent ring neighbour (absent: skulk's
    /// defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<RingTimeouts>,
    /// sha256 (hex) of the canonical plan without this field; ranks compare
    /// it when they connect.
    pub plan_digest: String,
}

/// How many requests rank 0 serves at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServingSettings {
    /// Requests served at once: sequences in every rank's KV cache, which
    /// share the context budget (`contextTokenLimit` cells in all).
    #[schemars(range(min = 1, max = 256))]
    pub parallel: u32,
    /// Requests that may wait for a free sequence; beyond them the API
    /// answers 429.
    pub queue: u32,
}

impl From<Serving> for ServingSettings {
    fn from(s: Serving) -> Self {
        ServingSettings {
            parallel: s.parallel,
            queue: s.queue,
        }
    }
}

/// How long a rank waits on a silent ring neighbour before it declares it
/// lost; an absent field takes skulk's default (3 s while serving, adapted
/// upwards on an irregular link; 60 s while the ring forms and loads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingTimeouts {
    /// While serving, in milliseconds (at least 1000: two heartbeats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000))]
    pub silence_limit_ms: Option<u32>,
    /// While the ring forms and the ranks load, in milliseconds (at least
    /// 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000))]
    pub loading_silence_limit_ms: Option<u32>,
}

/// The shortest silence limit a plan may set: two heartbeat intervals.
pub const MIN_SILENCE_LIMIT_MS: u32 = 1000;

/// The API endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiSettings {
    pub address: String,
    pub port: u16,
    /// Most tokens a request generates when it sets no `max_tokens`
    /// (`skulk plan --max-tokens`; absent: the API's default, 2048).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// How to reach a node and run its rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSettings {
    /// SSH target and ring address.
    pub address: String,
    pub connection: Connection,
    /// Absent for a `local` node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSettings>,
    /// Where the node keeps models; `~` is expanded on the node.
    pub model_dir: String,
    /// Compute threads (absent: the node's cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    pub gpu_layers: GpuLayers,
}

/// Why a plan file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    /// Unreadable, or not JSON or YAML.
    #[error(transparent)]
    Load(crate::load::LoadError),
    /// A card or an inventory where a plan was expected.
    #[error("`{}` is {kind}, not a plan\n\nhint: make a plan with `skulk plan --card CARD --inventory INVENTORY --out plan.json`", path.display())]
    WrongKind {
        path: std::path::PathBuf,
        kind: &'static str,
    },
    #[error("plan `{}`: {error}", path.display())]
    Document {
        path: std::path::PathBuf,
        error: DocumentError,
    },
}

impl PlanFileError {
    /// Reading failed (exit 2) rather than the content being wrong (exit 1).
    pub fn is_io(&self) -> bool {
        matches!(self, PlanFileError::Load(e) if e.is_io())
    }
}

/// Why a plan document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("not a plan document: {pointer}: {message}")]
    Malformed { pointer: String, message: String },
    #[error("plan format version {found} is not supported (this skulk reads version {FORMAT_VERSION})\n\nhint: plan again with this skulk")]
    Version { found: u32 },
    #[error("the plan digest does not match its content (recorded `{recorded}`, computed `{computed}`); the plan was edited after `skulk plan` wrote it\n\nhint: plan again instead of editing the file")]
    Digest { recorded: String, computed: String },
    #[error("inconsistent plan: {0}")]
    Inconsistent(String),
    #[error("the plan has no node `{0}`")]
    NoSuchNode(String),
    #[error("the plan has no rank {rank} (it has {world})")]
    NoSuchRank { rank: u32, world: u32 },
}

/// A rank, by node name or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankSelector<'a> {
    Node(&'a str),
    Rank(u32),
}

/// A neighbour in the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub rank: u32,
    pub node: String,
    pub address: String,
}

/// Everything one rank needs to run, from a verified document.
#[derive(Debug, Clone, PartialEq)]
pub struct RankSpec {
    pub rank: u32,
    pub world_size: u32,
    pub node: String,
    pub runner_id: String,
    pub instance_id: String,
    pub instance: InstanceKind,
    pub sharding: Sharding,
    /// Half-open layer range.
    pub start_layer: u32,
    pub end_layer: u32,
    /// Total layers of the model.
    pub n_layers: u32,
    /// This rank's address (it listens here on `ring_port`).
    pub address: String,
    /// Rank `rank + 1` (rank 0 after the last); `None` for a single rank.
    pub next: Option<Peer>,
    /// Rank `rank - 1` (the last before rank 0); `None` for a single rank.
    pub previous: Option<Peer>,
    pub ring_port: u16,
    pub api: ApiSettings,
    pub model_card: ModelCard,
    pub model_dir: String,
    /// `org--name`: the model's directory under `model_dir`.
    pub normalized_model_id: String,
    /// The GGUF file under that directory.
    pub gguf_file: Option<String>,
    pub threads: Option<u32>,
    pub gpu_layers: GpuLayers,
    pub context_token_limit: Option<u64>,
    /// Requests served at once and waiting.
    pub serving: Serving,
    pub resolved_backend: Option<String>,
    pub engine: String,
    pub plan_digest: String,
    pub connection: Connection,
    pub ssh: Option<SshSettings>,
    /// The plan's silence limits (fields absent: skulk's defaults).
    pub ring: RingTimeouts,
    /// Machines the ring runs on: distinct host addresses, with every
    /// loopback address and every `local` node counted as this one machine.
    /// Ranks on one machine share its cores, so keeping micro-batches in
    /// flight between them buys no compute (rank 0's default).
    pub machines: u32,
}

impl RankSpec {
    /// `<modelDir>/<org>--<name>`: where the node keeps the model.
    pub fn model_path_dir(&self) -> String {
        format!(
            "{}/{}",
            self.model_dir.trim_end_matches('/'),
            self.normalized_model_id
        )
    }

    /// `host:port` of this rank's ring listener.
    pub fn listen(&self) -> String {
        join_host_port(&self.address, self.ring_port)
    }
}

/// Compact JSON with object keys sorted at every level.
pub fn canonical_json(value: &Value) -> String {
    let mut value = value.clone();
    value.sort_all_objects();
    serde_json::to_string(&value).expect("a JSON value serialises")
}

impl PlanDocument {
    /// The document for a plan, its digest filled in.
    pub fn from_plan(plan: &Plan) -> Self {
        let world = plan.ranks.len() as u32;
        let n_layers = plan.card.n_layers;
        let mut runner_to_shard = BTreeMap::new();
        let mut node_to_runner = BTreeMap::new();
        let mut hosts = BTreeMap::new();
        for rank in &plan.ranks {
            let shard = Shard {
                model_card: plan.card.clone(),
                device_rank: rank.rank,
                world_size: world,
                start_layer: rank.start_layer,
                end_layer: rank.end_layer,
                n_layers,
                resolved_backend: Some(rank.resolved_backend.clone()),
                immediate_exception: false,
                should_timeout: None,
            };
            let shard = match plan.sharding {
                Sharding::Pipeline => ShardMetadata::PipelineShardMetadata(shard),
                Sharding::Tensor => ShardMetadata::TensorShardMetadata(shard),
            };
            runner_to_shard.insert(rank.runner_id.clone(), shard);
            node_to_runner.insert(rank.host.name.clone(), rank.runner_id.clone());
            hosts.insert(
                rank.host.name.clone(),
                HostSettings {
                    address: rank.host.address.clone(),
                    connection: rank.host.connection,
                    ssh: rank.host.ssh.clone(),
                    model_dir: rank.host.model_dir().to_string(),
                    threads: rank.host.threads,
                    gpu_layers: rank.gpu_layers,
                },
            );
        }
        let shard_assignments = ShardAssignments {
            model_id: plan.card.model_id.clone(),
            runner_to_shard,
            node_to_runner,
        };
        let instance = match plan.instance {
            InstanceKind::Ring => Instance::MlxRingInstance(RingInstance {
                instance_id: plan.instance_id.clone(),
                shard_assignments,
                hosts_by_node: ring_hosts(plan),
                ephemeral_port: plan.ring_port,
                context_token_limit: plan.context_token_limit,
            }),
            InstanceKind::Jaccl => {
                let coordinator = join_host_port(&plan.ranks[0].host.address, plan.ring_port);
                Instance::MlxJacclInstance(JacclInstance {
                    instance_id: plan.instance_id.clone(),
                    shard_assignments,
                    jaccl_devices: plan.jaccl_devices.clone().unwrap_or_default(),
                    jaccl_coordinators: plan
                        .ranks
                        .iter()
                        .map(|r| (r.host.name.clone(), coordinator.clone()))
                        .collect(),
                    context_token_limit: plan.context_token_limit,
                })
            }
        };
        let mut document = PlanDocument {
            instance,
            skulk: SkulkSection {
                format_version: FORMAT_VERSION,
                engine: plan.engine.clone(),
                api: ApiSettings {
                    address: plan.api.address.clone(),
                    port: plan.api.port,
                    max_tokens: plan.api.max_tokens,
                },
                hosts,
                serving: Some(plan.serving.into()),
                ring: plan.ring,
                plan_digest: String::new(),
            },
        };
        document.skulk.plan_digest = document.compute_digest();
        document
    }

    /// The document as a JSON value with sorted keys.
    pub fn to_value(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("a plan document serialises");
        value.sort_all_objects();
        value
    }

    /// The canonical text: pretty JSON, keys sorted, trailing newline.
    pub fn to_json(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(&self.to_value()).expect("a JSON value serialises");
        text.push('\n');
        text
    }

    /// The same document as YAML, keys sorted.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.to_value()).expect("a JSON value serialises as YAML")
    }

    /// sha256 (hex) of the compact canonical document without `planDigest`.
    pub fn compute_digest(&self) -> String {
        let mut value = serde_json::to_value(self).expect("a plan document serialises");
        if let Some(skulk) = value.get_mut("skulk").and_then(Value::as_object_mut) {
            skulk.remove("planDigest");
        }
        // As `canonical_json`, without copying the value first.
        value.sort_all_objects();
        let canonical = serde_json::to_vec(&value).expect("a JSON value serialises");
        hex::encode(Sha256::digest(&canonical))
    }

    /// Parses a plan document and checks it: format version, digest, and
    /// that its parts agree.
    pub fn from_json(text: &str) -> Result<Self, DocumentError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let document: PlanDocument =
            serde_path_to_error::deserialize(&mut de).map_err(|err| DocumentError::Malformed {
                pointer: crate::inventory::pointer_of(err.path()),
                message: err.inner().to_string(),
            })?;
        de.end().map_err(|err| DocumentError::Malformed {
            pointer: "/".into(),
            message: err.to_string(),
        })?;
        document.verify()?;
        Ok(document)
    }

    /// Reads a plan file, JSON or YAML (YAML for a `.yaml` or `.yml` name,
    /// JSON otherwise), with the bounded parser of card and inventory files,
    /// and checks it as [`Self::from_json`] does.
    pub fn read(path: &std::path::Path) -> Result<Self, PlanFileError> {
        use crate::load::{self, Format, LoadError, LoadErrorKind};
        let fail = |location, kind| {
            PlanFileError::Load(LoadError {
                path: path.to_path_buf(),
                location,
                kind,
            })
        };
        let (text, format) = match load::read_source(path) {
            Ok(source) => (source.text, source.format),
            // Any other name: the JSON `skulk plan` writes by default.
            Err(e) if matches!(e.kind, LoadErrorKind::UnsupportedExtension) => {
                let bytes = std::fs::read(path).map_err(|e| fail(None, LoadErrorKind::Io(e)))?;
                let text = load::check_bytes(bytes).map_err(|(l, k)| fail(l, k))?;
                (text, Format::Json)
            }
            Err(e) => return Err(PlanFileError::Load(e)),
        };
        let value = load::parse(&text, format).map_err(|e| {
            fail(
                e.location,
                LoadErrorKind::Syntax {
                    format: e.format,
                    message: e.message,
                },
            )
        })?;
        if let Some(kind) = crate::validate::other_kind(&value, crate::validate::DocKind::Plan) {
            return Err(PlanFileError::WrongKind {
                path: path.to_path_buf(),
                kind,
            });
        }
        Self::from_value(&value).map_err(|error| PlanFileError::Document {
            path: path.to_path_buf(),
            error,
        })
    }

    /// [`Self::from_json`] for an already parsed document.
    pub fn from_value(value: &Value) -> Result<Self, DocumentError> {
        let document: PlanDocument =
            serde_path_to_error::deserialize(value).map_err(|err| DocumentError::Malformed {
                pointer: crate::inventory::pointer_of(err.path()),
                message: err.inner().to_string(),
            })?;
        document.verify()?;
        Ok(document)
    }

    /// Checks the format version, the digest and that the parts agree.
    pub fn verify(&self) -> Result<(), DocumentError> {
        if self.skulk.format_version != FORMAT_VERSION {
            return Err(DocumentError::Version {
                found: self.skulk.format_version,
            });
        }
        if let Some(t) = &self.skulk.ring {
            for (field, v) in [
                ("silenceLimitMs", t.silence_limit_ms),
                ("loadingSilenceLimitMs", t.loading_silence_limit_ms),
            ] {
                if let Some(v) = v.filter(|v| *v < MIN_SILENCE_LIMIT_MS) {
                    return Err(DocumentError::Inconsistent(format!(
                        "/skulk/ring/{field}: `{v}` is below {MIN_SILENCE_LIMIT_MS} ms (two heartbeats)"
                    )));
                }
            }
        }
        let computed = self.compute_digest();
        if computed != self.skulk.plan_digest {
            return Err(DocumentError::Digest {
                recorded: self.skulk.plan_digest.clone(),
                computed,
            });
        }
        let parallel = self.serving().parallel;
        if !(1..=MAX_PARALLEL).contains(&parallel) {
            return Err(DocumentError::Inconsistent(format!(
                "`skulk.serving.parallel` is `{parallel}`; a ring serves 1 to {MAX_PARALLEL} requests at once"
            )));
        }
        self.ordered_ranks().map(|_| ())
    }

    fn assignments(&self) -> &ShardAssignments {
        match &self.instance {
            Instance::MlxRingInstance(i) => &i.shard_assignments,
            Instance::MlxJacclInstance(i) => &i.shard_assignments,
        }
    }

    pub fn instance_id(&self) -> &str {
        match &self.instance {
            Instance::MlxRingInstance(i) => &i.instance_id,
            Instance::MlxJacclInstance(i) => &i.instance_id,
        }
    }

    pub fn instance_kind(&self) -> InstanceKind {
        match &self.instance {
            Instance::MlxRingInstance(_) => InstanceKind::Ring,
            Instance::MlxJacclInstance(_) => InstanceKind::Jaccl,
        }
    }

    /// Requests served at once and waiting (the defaults for plans that
    /// predate the setting).
    pub fn serving(&self) -> Serving {
        self.skulk
            .serving
            .map_or_else(Serving::default, |s| Serving {
                parallel: s.parallel,
                queue: s.queue,
            })
    }

    pub fn context_token_limit(&self) -> Option<u64> {
        match &self.instance {
            Instance::MlxRingInstance(i) => i.context_token_limit,
            Instance::MlxJacclInstance(i) => i.context_token_limit,
        }
    }

    /// The ring port (for jaccl: the coordinator's port).
    pub fn ring_port(&self) -> u16 {
        match &self.instance {
            Instance::MlxRingInstance(i) => i.ephemeral_port,
            Instance::MlxJacclInstance(i) => i
                .jaccl_coordinators
                .values()
                .next()
                .and_then(|c| c.rsplit_once(':'))
                .and_then(|(_, port)| port.parse().ok())
                .unwrap_or(0),
        }
    }

    /// The model card (the same in every shard).
    pub fn model_card(&self) -> &ModelCard {
        &self
            .assignments()
            .runner_to_shard
            .values()
            .next()
            .expect("a verified document has a shard")
            .shard()
            .model_card
    }

    /// (node, runner, shard) in rank order, checking that the parts agree.
    fn ordered_ranks(&self) -> Result<Vec<(&str, &str, &ShardMetadata)>, DocumentError> {
        let bad = |m: String| Err(DocumentError::Inconsistent(m));
        let assignments = self.assignments();
        let world = assignments.node_to_runner.len();
        if world == 0 {
            return bad("no nodes".into());
        }
        if assignments.runner_to_shard.len() != world {
            return bad(format!(
                "{} runners for {world} nodes",
                assignments.runner_to_shard.len()
            ));
        }
        let node_names: BTreeSet<&String> = assignments.node_to_runner.keys().collect();
        let host_names: BTreeSet<&String> = self.skulk.hosts.keys().collect();
        if node_names != host_names {
            return bad("`skulk.hosts` does not name the same nodes as `nodeToRunner`".into());
        }
        let mut slots: Vec<Option<(&str, &str, &ShardMetadata)>> = vec![None; world];
        let first = assignments
            .runner_to_shard
            .values()
            .next()
            .expect("world > 0");
        for (node, runner) in &assignments.node_to_runner {
            let Some(meta) = assignments.runner_to_shard.get(runner) else {
                return bad(format!(
                    "node `{node}` has runner `{runner}`, which has no shard"
                ));
            };
            let shard = meta.shard();
            if shard.world_size as usize != world {
                return bad(format!(
                    "runner `{runner}` has world size {}, but the plan has {world} nodes",
                    shard.world_size
                ));
            }
            if meta.sharding() != first.sharding() || shard.model_card != first.shard().model_card {
                return bad(format!(
                    "runner `{runner}` differs from the others in sharding or model card"
                ));
            }
            if shard.model_card.model_id != assignments.model_id {
                return bad(format!("runner `{runner}` holds a different model"));
            }
            let rank = shard.device_rank as usize;
            if rank >= world || slots[rank].is_some() {
                return bad(format!("device rank {rank} is out of range or repeated"));
            }
            slots[rank] = Some((node.as_str(), runner.as_str(), meta));
        }
        let ranks: Vec<_> = slots
            .into_iter()
            .map(|s| s.expect("all ranks filled"))
            .collect();
        let n_layers = first.shard().model_card.n_layers;
        let mut next_start = 0;
        for (node, _, meta) in &ranks {
            let shard = meta.shard();
            if shard.n_layers != n_layers {
                return bad(format!("node `{node}`: nLayers differs from the card's"));
            }
            let (start, end) = match meta {
                ShardMetadata::PipelineShardMetadata(_) => (next_start, shard.end_layer),
                ShardMetadata::TensorShardMetadata(_) => (0, n_layers),
            };
            if shard.start_layer != start
                || shard.end_layer != end
                || start >= end
                || end > n_layers
            {
                return bad(format!(
                    "node `{node}` has layers [{}, {}), not a contiguous share of [0, {n_layers})",
                    shard.start_layer, shard.end_layer
                ));
            }
            next_start = end;
        }
        if first.sharding() == Sharding::Pipeline && next_start != n_layers {
            return bad(format!("the layers end at {next_start}, not {n_layers}"));
        }
        match &self.instance {
            Instance::MlxRingInstance(i) => {
                let keys: BTreeSet<&String> = i.hosts_by_node.keys().collect();
                if keys != node_names {
                    return bad(
                        "`hostsByNode` does not name the same nodes as `nodeToRunner`".into(),
                    );
                }
                let expected = if world == 1 { 0 } else { world };
                if i.hosts_by_node.values().any(|l| l.len() != expected) {
                    return bad(format!(
                        "a `hostsByNode` list does not have {expected} entries"
                    ));
                }
            }
            Instance::MlxJacclInstance(i) => {
                if i.jaccl_devices.len() != world
                    || i.jaccl_devices.iter().any(|r| r.len() != world)
                {
                    return bad(format!("`jacclDevices` is not {world} x {world}"));
                }
                let keys: BTreeSet<&String> = i.jaccl_coordinators.keys().collect();
                if keys != node_names {
                    return bad(
                        "`jacclCoordinators` does not name the same nodes as `nodeToRunner`".into(),
                    );
                }
            }
        }
        Ok(ranks)
    }

    /// Everything one rank needs.
    pub fn rank_spec(&self, selector: RankSelector<'_>) -> Result<RankSpec, DocumentError> {
        let ranks = self.ordered_ranks()?;
        let world = ranks.len() as u32;
        let index = match selector {
            RankSelector::Rank(rank) => {
                if rank >= world {
                    return Err(DocumentError::NoSuchRank { rank, world });
                }
                rank as usize
            }
            RankSelector::Node(name) => ranks
                .iter()
                .position(|(node, _, _)| *node == name)
                .ok_or_else(|| DocumentError::NoSuchNode(name.to_string()))?,
        };
        let peer = |i: usize| {
            let node = ranks[i].0;
            Peer {
                rank: i as u32,
                node: node.to_string(),
                address: self.skulk.hosts[node].address.clone(),
            }
        };
        let machines = ranks
            .iter()
            .map(|(node, _, _)| machine_key(&self.skulk.hosts[*node]))
            .collect::<BTreeSet<_>>()
            .len() as u32;
        let (node, runner, meta) = ranks[index];
        let shard = meta.shard();
        let host = &self.skulk.hosts[node];
        let n = ranks.len();
        Ok(RankSpec {
            rank: index as u32,
            world_size: world,
            node: node.to_string(),
            runner_id: runner.to_string(),
            instance_id: self.instance_id().to_string(),
            instance: self.instance_kind(),
            sharding: meta.sharding(),
            start_layer: shard.start_layer,
            end_layer: shard.end_layer,
            n_layers: shard.n_layers,
            address: host.address.clone(),
            next: (n > 1).then(|| peer((index + 1) % n)),
            previous: (n > 1).then(|| peer((index + n - 1) % n)),
            ring_port: self.ring_port(),
            api: self.skulk.api.clone(),
            model_card: shard.model_card.clone(),
            model_dir: host.model_dir.clone(),
            normalized_model_id: normalize_model_id(&shard.model_card.model_id),
            gguf_file: shard.model_card.gguf_file.clone(),
            threads: host.threads,
            gpu_layers: host.gpu_layers,
            context_token_limit: self.context_token_limit(),
            serving: self.serving(),
            resolved_backend: shard.resolved_backend.clone(),
            engine: self.skulk.engine.clone(),
            plan_digest: self.skulk.plan_digest.clone(),
            connection: host.connection,
            ssh: host.ssh.clone(),
            ring: self.skulk.ring.unwrap_or_default(),
            machines,
        })
    }

    /// Every rank's spec, in rank order.
    pub fn rank_specs(&self) -> Result<Vec<RankSpec>, DocumentError> {
        let world = self.assignments().node_to_runner.len() as u32;
        (0..world)
            .map(|r| self.rank_spec(RankSelector::Rank(r)))
            .collect()
    }
}

impl fmt::Display for PlanDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// `hostsByNode`: empty for one rank; else per rank its own address, its
/// neighbours' addresses at the ring port, the placeholder for the others.
fn ring_hosts(plan: &Plan) -> BTreeMap<String, Vec<WireHost>> {
    let n = plan.ranks.len();
    plan.ranks
        .iter()
        .enumerate()
        .map(|(r, rank)| {
            let list = if n == 1 {
                Vec::new()
            } else {
                (0..n)
                    .map(|j| {
                        if j == r || j == (r + 1) % n || j == (r + n - 1) % n {
                            WireHost {
                                ip: plan.ranks[j].host.address.clone(),
                                port: plan.ring_port,
                            }
                        } else {
                            WireHost {
                                ip: PLACEHOLDER_IP.to_string(),
                                port: 0,
                            }
                        }
                    })
                    .collect()
            };
            (rank.host.name.clone(), list)
        })
        .collect()
}

/// Which machine a host is, as far as the plan can tell: `None` for this
/// one (a `local` node or a loopback address), else its address.
fn machine_key(host: &HostSettings) -> Option<&str> {
    let loopback = host
        .address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
        || host.address.eq_ignore_ascii_case("localhost");
    (host.connection != Connection::Local && !loopback).then_some(host.address.as_str())
}
