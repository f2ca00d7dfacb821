//! The planner: where each rank of a model runs.
//!
//! [`plan`] is a pure, synchronous, deterministic function of a card, an
//! inventory and a [`PlanRequest`]: no I/O, no clock, no randomness, and
//! ordered maps only, so the same inputs give the same [`Plan`] (and the same
//! plan document bytes) on any machine. It applies the placement rules of
//! `docs/architecture.md` ("Placement") exactly ([`memory`] holds the
//! arithmetic, `search` the polynomial search for the fewest hosts that
//! fit), and where the Python
//! Skulk is random or order-dependent it uses fixed rules: ring order is
//! inventory order, ids and the ring port are derived from a hash of the
//! inputs. A returned `Plan` leaves no decision to `apply`: every rank has
//! its layers, addresses, port, backend and settings. An infeasible request
//! is a [`PlanError`] carrying each host's arithmetic.

pub mod document;
pub mod memory;
mod search;
pub mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::backend::{engine_name, BackendTag};
use crate::card::ModelCard;
use crate::inventory::{canonical_address, GpuLayers, Host, Inventory};
use memory::{
    allocate_layers, usable_quarters, working_set_quarters, Breakdown, ModelMemory,
    GGUF_CONTEXT_CAP, KV_BUDGET_TOKENS, RUNTIME_OVERHEAD_BYTES,
};
use search::{Candidate, Rule};

use crate::settings::ports::{DEFAULT_API_PORT, RING_PORTS};

pub use document::{PlanDocument, RankSpec};

/// Namespace of the UUID v5 ids in plans (fixed and arbitrary; changing it
/// changes every plan's ids).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5c0e_1a3b_7d2f_4e8a_9b61_0c4d_2e7f_8a93);

const GIB: f64 = (1u64 << 30) as f64;

/// How the model is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sharding {
    /// Contiguous layer ranges, one per rank, in ring order.
    Pipeline,
    /// Every rank holds a slice of every layer.
    Tensor,
}

impl fmt::Display for Sharding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sharding::Pipeline => "pipeline",
            Sharding::Tensor => "tensor",
        })
    }
}

/// The instance kind of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InstanceKind {
    /// `MlxRingInstance`: ranks in a TCP ring.
    Ring,
    /// `MlxJacclInstance`: all-to-all RDMA.
    Jaccl,
}

impl fmt::Display for InstanceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceKind::Ring => "ring",
            InstanceKind::Jaccl => "jaccl",
        })
    }
}

/// What the user asks for, resolved from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRequest {
    pub sharding: Sharding,
    pub instance: InstanceKind,
    /// Lower bound on the number of hosts.
    pub min_nodes: Option<u32>,
    /// Hosts never to use.
    pub exclude: Vec<String>,
    /// Exactly these hosts, in this ring order.
    pub nodes: Option<Vec<String>>,
    /// Manual layer split over the chosen hosts in ring order.
    pub layers: Option<Vec<u32>>,
    /// Context tokens to budget for.
    pub context: Option<u64>,
    /// Ring port.
    pub port: Option<u16>,
    /// API bind address (default: rank 0's address).
    pub api_bind: Option<String>,
    pub api_port: u16,
    /// Tokens a request generates when it sets no `max_tokens` (`None`:
    /// the API's default).
    pub max_tokens: Option<u32>,
    /// Requests served at once and waiting.
    pub serving: Serving,
    /// Silence limits for the ranks (absent: skulk's defaults).
    pub ring: Option<document::RingTimeouts>,
}

/// Requests served at once: every rank's KV cache holds `parallel`
/// sequences, all sharing the plan's context budget (one pool of cells, as
/// llama-server's `--kv-unified`; a request alone may use all of it). Up to
/// `queue` more wait for a free sequence; beyond that the API answers 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    pub parallel: u32,
    pub queue: u32,
}

/// Requests served at once by default: llama-server's default slots.
pub const DEFAULT_PARALLEL: u32 = 4;

/// Most requests served at once: llama.cpp's bound on sequence ids.
pub const MAX_PARALLEL: u32 = 256;

/// Requests waiting by default: enough for a burst of clients several times
/// the running requests, bounded so a flood is refused instead of piling up.
pub const DEFAULT_QUEUE: u32 = 64;

impl Default for Serving {
    fn default() -> Self {
        Serving {
            parallel: DEFAULT_PARALLEL,
            queue: DEFAULT_QUEUE,
        }
    }
}

impl Default for PlanRequest {
    fn default() -> Self {
        Self {
            sharding: Sharding::Pipeline,
            instance: InstanceKind::Ring,
            min_nodes: None,
            exclude: Vec::new(),
            nodes: None,
            layers: None,
            context: None,
            port: None,
            api_bind: None,
            api_port: DEFAULT_API_PORT,
            max_tokens: None,
            serving: Serving::default(),
            ring: None,
        }
    }
}

/// A placement: every decision `apply` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub card: ModelCard,
    /// As planned (a single host is always a pipeline ring, see `notes`).
    pub sharding: Sharding,
    pub instance: InstanceKind,
    pub ranks: Vec<Rank>,
    /// Context tokens the fit check reserved KV memory for.
    pub kv_budget_tokens: u64,
    /// Context tokens the ranks may use; `None` when nothing bounds it.
    pub context_token_limit: Option<u64>,
    /// Requests served at once and waiting.
    pub serving: Serving,
    pub ring_port: u16,
    pub api: ApiEndpoint,
    /// Engine of the resolved backends (`llama_cpp`, `mlx`, ...).
    pub engine: String,
    /// `jacclDevices[i][j]`: RDMA interface on rank i towards rank j.
    pub jaccl_devices: Option<Vec<Vec<Option<String>>>>,
    /// Deterministic ids (UUID v5 of the inputs).
    pub instance_id: String,
    /// Things the user may not expect, for stderr.
    pub notes: Vec<String>,
    /// How the hosts were chosen.
    pub chosen_by: Choice,
    /// Hosts in the inventory.
    pub inventory_hosts: usize,
    /// Inventory hosts without a rank, in inventory order, with why.
    pub unused: Vec<Unused>,
    /// Reasons the plan may not run as placed (`split_warnings`), for
    /// stderr; `apply` refuses such a plan in preflight.
    pub warnings: Vec<String>,
    /// Silence limits for the ranks, as requested.
    pub ring: Option<document::RingTimeouts>,
}

/// How a plan's hosts were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The fewest hosts that fit, at least `min_nodes`.
    Fewest { min_nodes: Option<u32> },
    /// Exactly the hosts of `--nodes`.
    Named,
}

/// An inventory host that got no rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unused {
    pub name: String,
    pub why: UnusedWhy,
}

/// Why a host got no rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnusedWhy {
    /// Fewer hosts were enough (or `--nodes` did not name it).
    NotNeeded,
    Excluded,
    /// None of its backends is in the card's `compatibleBackends`.
    Backend,
    /// Less usable memory than the card's `minVramGib`.
    MinVram,
}

impl fmt::Display for UnusedWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnusedWhy::NotNeeded => "not needed",
            UnusedWhy::Excluded => "excluded by `--exclude`",
            UnusedWhy::Backend => "none of its backends is in the card's `compatibleBackends`",
            UnusedWhy::MinVram => "less memory than the card's `minVramGib`",
        })
    }
}

/// One rank of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Rank {
    pub rank: u32,
    pub host: Host,
    pub runner_id: String,
    /// Half-open layer range `[start_layer, end_layer)`.
    pub start_layer: u32,
    pub end_layer: u32,
    pub resolved_backend: String,
    pub gpu_layers: GpuLayers,
    /// Memory for this rank's actual layers (bytes).
    pub memory: Breakdown,
    /// Usable memory (bytes, rounded down).
    pub usable: u64,
    /// Context tokens this host could hold (`None`: KV heads unknown).
    pub context_tokens: Option<u64>,
}

impl Rank {
    pub fn layer_count(&self) -> u32 {
        self.end_layer - self.start_layer
    }
}

/// Where the OpenAI-compatible API listens (rank 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEndpoint {
    pub address: String,
    pub port: u16,
    /// Tokens a request generates when it sets no `max_tokens`.
    pub max_tokens: Option<u32>,
}

/// Formats an address and port as `host:port`, bracketing IPv6 addresses.
pub fn join_host_port(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// The backend a host runs a model with (the Python Skulk's
/// `resolve_node_backend`): among the tags both the card and the host have,
/// the first in the card's preference order, else the alphabetically first.
pub fn resolve_node_backend(
    compatible: &BTreeSet<String>,
    preference: &[String],
    node: &BTreeSet<String>,
) -> Option<String> {
    preference
        .iter()
        .find(|tag| compatible.contains(*tag) && node.contains(*tag))
        .or_else(|| compatible.intersection(node).next())
        .cloned()
}

/// Why no plan was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A flag is wrong whatever the inventory holds (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The card, the inventory and the flags admit no plan (exit 1).
    #[error("{0}")]
    Infeasible(String),
}

impl PlanError {
    pub fn is_usage(&self) -> bool {
        matches!(self, PlanError::Usage(_))
    }
}

fn usage(message: impl Into<String>) -> PlanError {
    PlanError::Usage(message.into())
}

fn infeasible(message: impl Into<String>) -> PlanError {
    PlanError::Infeasible(message.into())
}

/// Why a host is not a candidate.
#[derive(Debug, Clone, PartialEq)]
enum Skip {
    Excluded,
    Backend,
    MinVram,
}

/// The planner's view of the inputs, shared by its steps.
struct Context<'a> {
    card: &'a ModelCard,
    hosts: &'a [Host],
    request: &'a PlanRequest,
    model: ModelMemory,
    usable4: Vec<u128>,
    budget: u64,
}

impl Context<'_> {
    fn model_id(&self) -> &str {
        &self.card.model_id
    }

    fn skip_reason(&self, position: usize, skip: &Skip) -> String {
        let host = &self.hosts[position];
        match skip {
            Skip::Excluded => "excluded by `--exclude`".to_string(),
            Skip::Backend => format!(
                "its backends [{}] include none of the card's compatibleBackends [{}]",
                list(host.backends.iter()),
                list(self.card.placement.compatible_backends.iter())
            ),
            Skip::MinVram => format!(
                "it can use {:.2} GiB, less than the card's minVramGib {}",
                self.usable4[position] as f64 / 4.0 / GIB,
                self.card.placement.min_vram_gib.unwrap_or_default()
            ),
        }
    }

    /// `a: needs X GiB (...) but can use Y GiB (...): fits | does not fit`.
    fn arithmetic_line(&self, position: usize, need: &Breakdown, fits: bool) -> String {
        let host = &self.hosts[position];
        let f = if self.card.is_gguf() { "1.10" } else { "1.30" };
        let kv = if self.model.per_token_kv == 0 {
            String::new()
        } else {
            format!(
                " + {:.2} GiB KV for {} tokens",
                need.kv as f64 / GIB,
                self.budget
            )
        };
        let usable = match host.vram {
            Some(_) => "its vram".to_string(),
            None => format!(
                "min of available {:.2} GiB and 75% of total {:.2} GiB",
                host.memory_available as f64 / GIB,
                host.memory_total as f64 / GIB
            ),
        };
        format!(
            "  {}: needs {:.2} GiB ({:.2} GiB weights x {f}{kv} + {:.2} GiB runtime) but can use {:.2} GiB ({usable}): {}",
            host.name,
            need.need as f64 / GIB,
            need.weights as f64 / GIB,
            RUNTIME_OVERHEAD_BYTES as f64 / GIB,
            self.usable4[position] as f64 / 4.0 / GIB,
            if fits { "fits" } else { "does not fit" }
        )
    }

    /// The model with no KV cache budgeted: what a smaller `--context`
    /// could at best achieve.
    fn without_kv(&self) -> ModelMemory {
        ModelMemory {
            kv_budget: 0,
            ..self.model
        }
    }

    /// Whether `set` would fit (shares as the request's sharding) with no
    /// KV budget.
    fn fits_without_kv(&self, set: &[usize]) -> bool {
        let model = self.without_kv();
        let sum4: u128 = set.iter().map(|&p| self.usable4[p]).sum();
        set.iter().all(|&p| match self.request.sharding {
            Sharding::Pipeline => model.pipeline_host_fits(sum4, self.usable4[p]),
            Sharding::Tensor => model.tensor_host_fits(set.len() as u64, self.usable4[p]),
        })
    }

    /// `hint:` with the ways out; fewer context tokens only when dropping
    /// the KV budget would let the hosts in question fit.
    fn hint(&self, fewer_tokens_would_help: bool) -> String {
        let mut ways = Vec::new();
        if fewer_tokens_would_help && self.model.per_token_kv > 0 && self.budget > 1024 {
            ways.push(format!(
                "budget fewer context tokens (`--context {}`)",
                self.budget / 2
            ));
        }
        ways.push("add hosts".to_string());
        ways.push("use a smaller quant of the model".to_string());
        let last = ways.pop().unwrap();
        format!("\n\nhint: {}, or {last}", ways.join(", "))
    }
}

/// Host names shown for a group of hosts with the same arithmetic before
/// the rest are counted, so 80 identical hosts take one line.
const GROUP_NAMES_SHOWN: usize = 3;

/// Lines `  <host>: <text>` with the same text merged into one line naming
/// the hosts (`  a, b, c and 77 more (80 hosts): <text>`), in order of
/// first appearance. Host names hold no `: `, so the first one ends the name.
fn group_hosts(lines: &[String]) -> Vec<String> {
    let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
    for line in lines {
        let body = line.trim_start();
        let Some((name, text)) = body.split_once(": ") else {
            groups.push((Vec::new(), body));
            continue;
        };
        match groups
            .iter_mut()
            .find(|(names, t)| !names.is_empty() && *t == text)
        {
            Some((names, _)) => names.push(name),
            None => groups.push((vec![name], text)),
        }
    }
    groups
        .into_iter()
        .map(|(names, text)| {
            let who = match names.len() {
                0 => return format!("  {text}"),
                1 => names[0].to_string(),
                n if n <= GROUP_NAMES_SHOWN => format!("{} ({n} hosts)", names.join(", ")),
                n => format!(
                    "{} and {} more ({n} hosts)",
                    names[..GROUP_NAMES_SHOWN].join(", "),
                    n - GROUP_NAMES_SHOWN
                ),
            };
            format!("  {who}: {text}")
        })
        .collect()
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    items
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Places `card` on `inventory` as `request` asks.
pub fn plan(
    card: &ModelCard,
    inventory: &Inventory,
    request: &PlanRequest,
) -> Result<Plan, PlanError> {
    let hosts = inventory.hosts();
    // Past the context it was trained for a model answers poorly (llama.cpp
    // warns about it), and the KV memory for it is wasted: cap it, and say so.
    let capped_context = request
        .context
        .filter(|&asked| card.context_length > 0 && asked > card.context_length);
    let capped;
    let request = match capped_context {
        Some(_) => {
            capped = PlanRequest {
                context: Some(card.context_length),
                ..request.clone()
            };
            &capped
        }
        None => request,
    };
    if card.n_layers == 0 {
        return Err(infeasible(format!(
            "`{}` has no layers (`nLayers` is 0)",
            card.model_id
        )));
    }
    let budget = request
        .context
        .unwrap_or(KV_BUDGET_TOKENS)
        .min(card.placement.max_context_tokens.unwrap_or(u64::MAX));
    let ctx = Context {
        card,
        hosts,
        request,
        model: ModelMemory::new(card, budget),
        usable4: hosts.iter().map(usable_quarters).collect(),
        budget,
    };
    check_flags(&ctx, inventory)?;

    let skips = eligibility(&ctx);
    let mut placed = match &request.nodes {
        Some(names) => {
            let chosen = fixed_hosts(&ctx, inventory, names, &skips)?;
            build_plan(&ctx, chosen)?
        }
        None => search_and_build(&ctx, &skips)?,
    };
    placed.chosen_by = match request.nodes {
        Some(_) => Choice::Named,
        None => Choice::Fewest {
            min_nodes: request.min_nodes,
        },
    };
    placed.inventory_hosts = hosts.len();
    if let Some(asked) = capped_context {
        placed.notes.push(format!(
            "`--context {asked}` is more than `{}` was trained for (`contextLength` {}): the plan budgets and serves {} tokens",
            card.model_id, card.context_length, card.context_length
        ));
    }
    placed.unused = hosts
        .iter()
        .zip(&skips)
        .filter(|(h, _)| !placed.ranks.iter().any(|r| r.host.name == h.name))
        .map(|(h, skip)| Unused {
            name: h.name.clone(),
            why: match skip {
                None => UnusedWhy::NotNeeded,
                Some(Skip::Excluded) => UnusedWhy::Excluded,
                Some(Skip::Backend) => UnusedWhy::Backend,
                Some(Skip::MinVram) => UnusedWhy::MinVram,
            },
        })
        .collect();
    Ok(placed)
}

/// The fewest hosts whose memory fits the continuous share can still fail
/// the integer checks (whole layers per host, room for the context). Then
/// one more host is tried, and so on, so "fewest hosts that fit" holds for
/// the whole plan. When no larger set works either, the first failure is
/// the one reported: it names the hosts and the arithmetic that failed.
fn search_and_build(ctx: &Context<'_>, skips: &[Option<Skip>]) -> Result<Plan, PlanError> {
    let mut first_failure: Option<PlanError> = None;
    let mut floor = None;
    loop {
        let chosen = match search_hosts(ctx, skips, floor) {
            Ok(chosen) => chosen,
            Err(e) => return Err(first_failure.unwrap_or(e)),
        };
        let size = chosen.len();
        match build_plan(ctx, chosen) {
            Ok(plan) => return Ok(plan),
            Err(e @ PlanError::Infeasible(_))
                if ctx.request.layers.is_none() && size < ctx.hosts.len() =>
            {
                first_failure.get_or_insert(e);
                floor = Some(size + 1);
            }
            Err(e) => return Err(first_failure.unwrap_or(e)),
        }
    }
}

fn check_flags(ctx: &Context<'_>, inventory: &Inventory) -> Result<(), PlanError> {
    let request = ctx.request;
    let known = || list(ctx.hosts.iter().map(|h| &h.name));
    for name in &request.exclude {
        if inventory.find(name).is_none() {
            return Err(usage(format!(
                "`--exclude {name}`: the inventory has no host `{name}`; its hosts are {}",
                known()
            )));
        }
    }
    if let Some(nodes) = &request.nodes {
        if request.min_nodes.is_some() || !request.exclude.is_empty() {
            return Err(usage(
                "`--nodes` fixes the hosts; it cannot be combined with `--min-nodes` or `--exclude`",
            ));
        }
        if nodes.is_empty() {
            return Err(usage("`--nodes` names no hosts"));
        }
        let mut seen = BTreeSet::new();
        for name in nodes {
            if inventory.find(name).is_none() {
                return Err(usage(format!(
                    "`--nodes`: the inventory has no host `{name}`; its hosts are {}",
                    known()
                )));
            }
            if !seen.insert(name) {
                return Err(usage(format!("`--nodes` names `{name}` twice")));
            }
        }
    }
    if request.min_nodes == Some(0) {
        return Err(usage("`--min-nodes` must be at least 1"));
    }
    let parallel = request.serving.parallel;
    if !(1..=MAX_PARALLEL).contains(&parallel) {
        return Err(usage(format!(
            "`--parallel {parallel}`: a ring serves 1 to {MAX_PARALLEL} requests at once"
        )));
    }
    if let Some(layers) = &request.layers {
        if request.sharding == Sharding::Tensor {
            return Err(usage(
                "`--layers` splits layers between ranks, which only pipeline sharding does",
            ));
        }
        if layers.is_empty() {
            return Err(usage("`--layers` gives no layer counts"));
        }
        if layers.contains(&0) {
            return Err(usage("`--layers`: every host needs at least one layer"));
        }
        let sum: u64 = layers.iter().map(|&l| u64::from(l)).sum();
        if sum != u64::from(ctx.card.n_layers) {
            return Err(usage(format!(
                "`--layers` adds up to {sum} layers, but `{}` has {}",
                ctx.model_id(),
                ctx.card.n_layers
            )));
        }
        if let Some(nodes) = &request.nodes {
            if nodes.len() != layers.len() {
                return Err(usage(format!(
                    "`--layers` gives {} layer counts for {} hosts in `--nodes`",
                    layers.len(),
                    nodes.len()
                )));
            }
        }
        if let Some(min) = request.min_nodes {
            if (min as usize) > layers.len() {
                return Err(usage(format!(
                    "`--layers` splits over {} hosts, fewer than `--min-nodes {min}`",
                    layers.len()
                )));
            }
        }
    }
    if request.port == Some(0) || request.api_port == 0 {
        return Err(usage("port 0 is not a port"));
    }
    if request.port == Some(request.api_port) {
        return Err(usage(format!(
            "the ring port and the API port are both {}",
            request.api_port
        )));
    }
    if let Some(bind) = &request.api_bind {
        if bind.parse::<std::net::IpAddr>().is_err()
            && crate::inventory::address_problem(bind).is_some()
        {
            return Err(usage(format!(
                "`--api-bind {bind}` is neither an IP address nor a host name"
            )));
        }
    }
    if request.sharding == Sharding::Tensor && !ctx.card.supports_tensor {
        return Err(infeasible(format!(
            "tensor sharding was requested, but `{}` does not support tensor parallelism (`supportsTensor` is false)\n\nhint: use `--sharding pipeline`",
            ctx.model_id()
        )));
    }
    if request.instance == InstanceKind::Jaccl && ctx.hosts.iter().all(|h| h.rdma.is_empty()) {
        return Err(infeasible(
            "a jaccl instance needs RDMA links, but no host of the inventory declares any\n\nhint: list each host's RDMA interface towards every other host under `rdma:` (`rdma: {studio-b: rdma_en3}`), or use `--instance ring`",
        ));
    }
    Ok(())
}

fn eligibility(ctx: &Context<'_>) -> Vec<Option<Skip>> {
    let placement = &ctx.card.placement;
    ctx.hosts
        .iter()
        .enumerate()
        .map(|(position, host)| {
            if ctx.request.exclude.contains(&host.name) {
                Some(Skip::Excluded)
            } else if resolve_node_backend(
                &placement.compatible_backends,
                &placement.backend_preference,
                &host.backends,
            )
            .is_none()
            {
                Some(Skip::Backend)
            } else if placement
                .min_vram_gib
                .is_some_and(|gib| (ctx.usable4[position] as f64) / 4.0 < gib * GIB)
            {
                Some(Skip::MinVram)
            } else {
                None
            }
        })
        .collect()
}

fn rule(ctx: &Context<'_>) -> Rule {
    match ctx.request.sharding {
        Sharding::Pipeline => Rule::Pipeline {
            n_layers: ctx.model.n_layers,
        },
        Sharding::Tensor => Rule::Tensor {
            hidden_size: u64::from(ctx.card.hidden_size),
            kv_heads: ctx.card.num_key_value_heads.map(u64::from),
        },
    }
}

fn skipped_lines(ctx: &Context<'_>, skips: &[Option<Skip>]) -> String {
    let lines: Vec<String> = skips
        .iter()
        .enumerate()
        .filter_map(|(position, skip)| {
            skip.as_ref().map(|skip| {
                format!(
                    "  {}: skipped, {}",
                    ctx.hosts[position].name,
                    ctx.skip_reason(position, skip)
                )
            })
        })
        .collect();
    group_hosts(&lines)
        .into_iter()
        .map(|l| format!("\n{l}"))
        .collect()
}

/// Checks `--nodes`: exactly these hosts, in this order.
fn fixed_hosts(
    ctx: &Context<'_>,
    inventory: &Inventory,
    names: &[String],
    skips: &[Option<Skip>],
) -> Result<Vec<usize>, PlanError> {
    let chosen: Vec<usize> = names
        .iter()
        .map(|n| inventory.find(n).expect("checked").0)
        .collect();
    for &position in &chosen {
        if let Some(skip) = &skips[position] {
            return Err(infeasible(format!(
                "host `{}` cannot run `{}`: {}",
                ctx.hosts[position].name,
                ctx.model_id(),
                ctx.skip_reason(position, skip)
            )));
        }
    }
    let k = chosen.len();
    let rule = rule(ctx);
    if !rule.size_allowed(k) {
        return Err(size_error(ctx, &[k]));
    }
    if ctx.request.instance == InstanceKind::Jaccl && k > 1 {
        for &a in &chosen {
            for &b in &chosen {
                let (ha, hb) = (&ctx.hosts[a], &ctx.hosts[b]);
                if a != b && !ha.rdma.contains_key(&hb.name) {
                    return Err(infeasible(format!(
                        "a jaccl instance needs all-to-all RDMA, but host `{}` declares no RDMA interface towards `{}`\n\nhint: add `{}: <interface>` under the `rdma` map of `{}`, or use `--instance ring`",
                        ha.name, hb.name, hb.name, ha.name
                    )));
                }
            }
        }
    }
    if ctx.request.layers.is_none() {
        check_memory(ctx, &chosen, skips)?;
    }
    Ok(chosen)
}

/// The memory check of a fixed set of hosts (proportional or tensor shares).
fn check_memory(
    ctx: &Context<'_>,
    chosen: &[usize],
    skips: &[Option<Skip>],
) -> Result<(), PlanError> {
    let (lines, all_fit) = set_arithmetic(ctx, chosen);
    if all_fit {
        return Ok(());
    }
    Err(infeasible(format!(
        "`{}` does not fit on {} ({} GiB of weights, {} sharding over {} host{}):\n{}{}{}",
        ctx.model_id(),
        list(chosen.iter().map(|&p| &ctx.hosts[p].name)),
        format_gib(ctx.model.storage),
        ctx.request.sharding,
        chosen.len(),
        if chosen.len() == 1 { "" } else { "s" },
        group_hosts(&lines).join("\n"),
        skipped_lines(ctx, skips),
        ctx.hint(ctx.fits_without_kv(chosen))
    )))
}

fn format_gib(bytes: u128) -> String {
    format!("{:.2}", bytes as f64 / GIB)
}

/// Each host's arithmetic in a set, and whether all fit.
fn set_arithmetic(ctx: &Context<'_>, chosen: &[usize]) -> (Vec<String>, bool) {
    let sum4: u128 = chosen.iter().map(|&p| ctx.usable4[p]).sum();
    let k = chosen.len() as u128;
    let mut all_fit = true;
    let lines = chosen
        .iter()
        .map(|&p| {
            let u4 = ctx.usable4[p];
            let (need, fits) = match ctx.request.sharding {
                Sharding::Pipeline => (
                    ctx.model.breakdown(u4, sum4),
                    ctx.model.pipeline_host_fits(sum4, u4),
                ),
                Sharding::Tensor => (
                    ctx.model.breakdown(1, k),
                    ctx.model.tensor_host_fits(k as u64, u4),
                ),
            };
            all_fit &= fits;
            ctx.arithmetic_line(p, &need, fits)
        })
        .collect();
    (lines, all_fit)
}

fn size_error(ctx: &Context<'_>, sizes: &[usize]) -> PlanError {
    let sizes_text = sizes
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match ctx.request.sharding {
        Sharding::Pipeline => infeasible(format!(
            "`{}` has {} layers, too few for a pipeline over {sizes_text} hosts (each host needs at least one layer)",
            ctx.model_id(),
            ctx.card.n_layers
        )),
        Sharding::Tensor => {
            let kv = match ctx.card.num_key_value_heads {
                Some(kv) => format!(" and numKeyValueHeads `{kv}`"),
                None => String::new(),
            };
            infeasible(format!(
                "tensor sharding over {sizes_text} hosts needs the host count to divide hiddenSize `{}`{kv} of `{}`, and it does not\n\nhint: use `--nodes` with a host count that divides them, or `--sharding pipeline`",
                ctx.card.hidden_size,
                ctx.model_id()
            ))
        }
    }
}

/// The RDMA islands of a jaccl plan: groups of candidates in which every
/// host declares an interface towards every other. Components of the mutual
/// RDMA graph that are not complete are left out: the search assumes RDMA
/// islands are full meshes (as Thunderbolt-connected machines are); for
/// anything else, `--nodes` names the hosts.
fn rdma_islands(ctx: &Context<'_>, candidates: &[Candidate<'_>]) -> Vec<Vec<usize>> {
    let by_name: BTreeMap<&str, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (ctx.hosts[c.position].name.as_str(), i))
        .collect();
    let linked = |a: usize, b: usize| {
        let (ha, hb) = (
            &ctx.hosts[candidates[a].position],
            &ctx.hosts[candidates[b].position],
        );
        ha.rdma.contains_key(&hb.name) && hb.rdma.contains_key(&ha.name)
    };
    let mut component = vec![usize::MAX; candidates.len()];
    let mut islands = Vec::new();
    for start in 0..candidates.len() {
        if component[start] != usize::MAX {
            continue;
        }
        let id = islands.len();
        let mut members = vec![start];
        component[start] = id;
        let mut next = 0;
        while next < members.len() {
            let a = members[next];
            next += 1;
            for peer in ctx.hosts[candidates[a].position].rdma.keys() {
                if let Some(&b) = by_name.get(peer.as_str()) {
                    if component[b] == usize::MAX && linked(a, b) {
                        component[b] = id;
                        members.push(b);
                    }
                }
            }
        }
        members.sort_unstable();
        islands.push(members);
    }
    islands
        .into_iter()
        .filter(|members| {
            members.len() > 1
                && members
                    .iter()
                    .all(|&a| members.iter().all(|&b| a == b || linked(a, b)))
        })
        .collect()
}

/// Finds the fewest hosts that fit.
/// `floor`: try only sets of at least this many hosts (a retry after a
/// smaller set failed the integer checks).
fn search_hosts(
    ctx: &Context<'_>,
    skips: &[Option<Skip>],
    floor: Option<usize>,
) -> Result<Vec<usize>, PlanError> {
    let request = ctx.request;
    let total = ctx.hosts.len();
    let (min_k, max_k) = match &request.layers {
        Some(layers) => (layers.len(), layers.len()),
        None => (
            (request.min_nodes.unwrap_or(1) as usize).max(floor.unwrap_or(0)),
            total,
        ),
    };
    if min_k > total {
        return Err(infeasible(format!(
            "{} hosts are required, but the inventory has only {total}{}",
            min_k,
            if request.layers.is_some() {
                " (`--layers` gives one count per host)"
            } else {
                " (`--min-nodes`)"
            }
        )));
    }
    let candidates: Vec<Candidate<'_>> = ctx
        .hosts
        .iter()
        .enumerate()
        .filter(|(p, _)| skips[*p].is_none())
        .map(|(position, host)| Candidate {
            position,
            usable4: ctx.usable4[position],
            backends: &host.backends,
        })
        .collect();
    if candidates.len() < min_k {
        return Err(infeasible(format!(
            "`{}` needs at least {min_k} host{}, but only {} of the inventory's {total} can run it:{}",
            ctx.model_id(),
            if min_k == 1 { "" } else { "s" },
            candidates.len(),
            skipped_lines(ctx, skips)
        )));
    }
    let islands = (request.instance == InstanceKind::Jaccl).then(|| rdma_islands(ctx, &candidates));
    let rule = rule(ctx);
    let accept = |members: &[usize]| {
        let positions: Vec<usize> = members.iter().map(|&m| candidates[m].position).collect();
        split_holds(ctx, &positions)
    };
    let found = search::fewest_fitting(
        &candidates,
        islands.as_deref(),
        &ctx.card.placement.backend_preference,
        &ctx.model,
        &rule,
        (min_k, max_k),
        &accept,
    );
    if let Some(choice) = found {
        return Ok(choice
            .members
            .iter()
            .map(|&m| candidates[m].position)
            .collect());
    }

    // Nothing fits: say why.
    let max_k = max_k.min(candidates.len());
    let sizes: Vec<usize> = (min_k.max(1)..=max_k).collect();
    let allowed: Vec<usize> = sizes
        .iter()
        .copied()
        .filter(|&k| rule.size_allowed(k))
        .collect();
    if allowed.is_empty() {
        return Err(size_error(ctx, &sizes));
    }
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        candidates[b]
            .usable4
            .cmp(&candidates[a].usable4)
            .then(candidates[a].position.cmp(&candidates[b].position))
    });
    if let Some(islands) = &islands {
        // Would memory alone allow a set, were every host linked to every other?
        let top_fits = |k: usize| {
            let sum4: u128 = order[..k].iter().map(|&i| candidates[i].usable4).sum();
            rule.set_fits(&ctx.model, k, sum4, candidates[order[k - 1]].usable4)
        };
        if let Some(k) = allowed.iter().copied().find(|&k| k > 1 && top_fits(k)) {
            let largest = islands.iter().map(Vec::len).max().unwrap_or(0);
            return Err(infeasible(format!(
                "a jaccl instance of `{}` needs {k} or more hosts with RDMA interfaces towards each other, and the largest such group has {largest}\n\nhint: declare each host's interface towards every other under `rdma`, name the hosts with `--nodes`, or use `--instance ring`",
                ctx.model_id()
            )));
        }
    }
    // Show the largest set that could be tried, with every host's arithmetic.
    let k = *allowed.last().unwrap();
    let mut shown: Vec<usize> = order[..k].iter().map(|&i| candidates[i].position).collect();
    shown.sort_unstable();
    let (lines, all_fit) = set_arithmetic(ctx, &shown);
    if all_fit {
        // The continuous shares fit; the integer split is what fails.
        let sharding = if shown.len() == 1 {
            Sharding::Pipeline
        } else {
            request.sharding
        };
        proportional_split(ctx, &shown, sharding)
            .and_then(|counts| context_room(ctx, &shown, &counts, sharding))?;
    }
    let unused = if k < candidates.len() {
        format!(
            "\n  ({} more host{} with less memory not shown)",
            candidates.len() - k,
            if candidates.len() - k == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let lower = if min_k > 1 {
        format!("{min_k} or more hosts")
    } else {
        "hosts".to_string()
    };
    let shown_text = match (k, candidates.len()) {
        (1, 1) => "on the only host that can run it".to_string(),
        (1, _) => "on the host with the most memory".to_string(),
        (k, n) if k == n => format!("shared among the {k} hosts that can run it"),
        (k, _) => format!("shared among the {k} hosts with the most memory"),
    };
    Err(infeasible(format!(
        "`{}` ({} GiB of weights, {} layers, {} sharding) does not fit on any set of {lower}; {shown_text}:\n{}{unused}{}{}",
        ctx.model_id(),
        format_gib(ctx.model.storage),
        ctx.card.n_layers,
        request.sharding,
        group_hosts(&lines).join("\n"),
        skipped_lines(ctx, skips),
        ctx.hint(ctx.fits_without_kv(&shown))
    )))
}

fn build_plan(ctx: &Context<'_>, chosen: Vec<usize>) -> Result<Plan, PlanError> {
    let card = ctx.card;
    let request = ctx.request;
    let world = chosen.len();
    let n_layers = card.n_layers;
    let mut notes = Vec::new();
    let (sharding, instance) = if world == 1 {
        if request.sharding != Sharding::Pipeline || request.instance != InstanceKind::Ring {
            notes.push(format!(
                "one host is enough, so this is a single-rank pipeline ring rather than {} sharding on a {} instance (as the Python Skulk does)",
                request.sharding, request.instance
            ));
        }
        (Sharding::Pipeline, InstanceKind::Ring)
    } else {
        (request.sharding, request.instance)
    };

    // Layer split.
    let counts: Vec<u64> = match (sharding, &request.layers) {
        (Sharding::Tensor, _) => proportional_split(ctx, &chosen, sharding)?,
        (Sharding::Pipeline, Some(manual)) => {
            let counts: Vec<u64> = manual.iter().map(|&l| u64::from(l)).collect();
            let mut lines = Vec::new();
            let mut all_fit = true;
            for (&p, &l) in chosen.iter().zip(&counts) {
                let fits = ctx.model.layers_host_fits(l, ctx.usable4[p]);
                all_fit &= fits;
                lines.push(format!(
                    "{} ({l} layer{})",
                    ctx.arithmetic_line(
                        p,
                        &ctx.model.breakdown(l as u128, u128::from(n_layers)),
                        fits
                    ),
                    if l == 1 { "" } else { "s" }
                ));
            }
            if !all_fit {
                return Err(infeasible(format!(
                    "the layer split `--layers {}` does not fit `{}` ({} GiB of weights, {n_layers} layers):\n{}{}",
                    counts.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                    ctx.model_id(),
                    format_gib(ctx.model.storage),
                    lines.join("\n"),
                    ctx.hint(chosen.iter().zip(&counts).all(|(&p, &l)| {
                        ctx.without_kv().layers_host_fits(l, ctx.usable4[p])
                    }))
                )));
            }
            counts
        }
        (Sharding::Pipeline, None) => proportional_split(ctx, &chosen, sharding)?,
    };
    context_room(ctx, &chosen, &counts, sharding)?;

    // Addresses: all ranks share the ring port, so no two may share an address.
    let mut addresses: BTreeMap<String, &str> = BTreeMap::new();
    for &p in &chosen {
        let host = &ctx.hosts[p];
        if let Some(other) = addresses.insert(canonical_address(&host.address), &host.name) {
            return Err(infeasible(format!(
                "hosts `{other}` and `{}` share the address `{}`, but every rank of a plan listens on the same ring port at its own address\n\nhint: give each rank on one machine its own address (127.0.0.2, 127.0.0.3, ... on loopback), or `--exclude` one of them",
                host.name, host.address
            )));
        }
    }

    // Ranks.
    let placement = &card.placement;
    let mut ranks = Vec::with_capacity(world);
    let mut start = 0u64;
    for (rank, (&p, &l)) in chosen.iter().zip(&counts).enumerate() {
        let host = &ctx.hosts[p];
        let backend = resolve_node_backend(
            &placement.compatible_backends,
            &placement.backend_preference,
            &host.backends,
        )
        .expect("eligible hosts resolve a backend");
        let (part, whole, range) = match sharding {
            Sharding::Pipeline => (l as u128, u128::from(n_layers), (start, start + l)),
            Sharding::Tensor => (1, world as u128, (0, u64::from(n_layers))),
        };
        let gpu_layers = host
            .gpu_layers
            .unwrap_or_else(|| default_gpu_layers(host, &backend));
        ranks.push(Rank {
            rank: rank as u32,
            host: host.clone(),
            runner_id: String::new(),
            start_layer: range.0 as u32,
            end_layer: range.1 as u32,
            resolved_backend: backend,
            gpu_layers,
            memory: ctx.model.breakdown(part, whole),
            usable: (ctx.usable4[p] / 4) as u64,
            context_tokens: ctx
                .model
                .context_tokens(working_set_quarters(host), part, whole),
        });
        if sharding == Sharding::Pipeline {
            start += l;
        }
    }

    let engine = engine_name(&ranks[0].resolved_backend).to_string();
    if let Some(other) = ranks
        .iter()
        .find(|r| engine_name(&r.resolved_backend) != engine)
    {
        return Err(infeasible(format!(
            "the chosen hosts would run `{}` with different engines: `{}` with `{}`, `{}` with `{}`\n\nhint: narrow the card's compatibleBackends to one engine, or choose hosts with `--nodes`",
            ctx.model_id(),
            ranks[0].host.name,
            ranks[0].resolved_backend,
            other.host.name,
            other.resolved_backend
        )));
    }

    // Context-token limit: the least any host can hold, then the caps.
    let mut limit = ranks.iter().filter_map(|r| r.context_tokens).min();
    let mut caps: Vec<u64> = Vec::new();
    if card.context_length > 0 {
        caps.push(card.context_length);
    }
    if let Some(max) = placement.max_context_tokens {
        caps.push(max);
    }
    match request.context {
        Some(asked) => caps.push(asked),
        None if card.is_gguf() => caps.push(GGUF_CONTEXT_CAP),
        None => {}
    }
    for cap in caps {
        limit = Some(limit.map_or(cap, |l| l.min(cap)));
    }
    if limit == Some(0) {
        return Err(infeasible(format!(
            "the context-token limit of `{}` on these hosts is 0",
            ctx.model_id()
        )));
    }

    // Ports and ids.
    let seed = input_seed(card, sharding, instance, &ranks);
    let ring_port = match request.port {
        Some(port) => port,
        None => derive_port(&seed, request.api_port),
    };
    let instance_uuid = Uuid::new_v5(
        &ID_NAMESPACE,
        format!("instance {} {ring_port}", hex::encode(seed)).as_bytes(),
    );
    for rank in &mut ranks {
        rank.runner_id = Uuid::new_v5(
            &instance_uuid,
            format!("runner {}", rank.host.name).as_bytes(),
        )
        .to_string();
    }
    let api = ApiEndpoint {
        address: request
            .api_bind
            .clone()
            .unwrap_or_else(|| ranks[0].host.address.clone()),
        port: request.api_port,
        max_tokens: request.max_tokens,
    };

    let jaccl_devices = (instance == InstanceKind::Jaccl).then(|| {
        ranks
            .iter()
            .map(|a| {
                ranks
                    .iter()
                    .map(|b| {
                        (a.rank != b.rank)
                            .then(|| a.host.rdma.get(&b.host.name).cloned())
                            .flatten()
                    })
                    .collect()
            })
            .collect()
    });

    let warnings = split_warnings(card, &ranks);
    Ok(Plan {
        card: card.clone(),
        sharding,
        instance,
        ranks,
        kv_budget_tokens: ctx.budget,
        context_token_limit: limit,
        serving: request.serving,
        ring_port,
        api,
        engine,
        jaccl_devices,
        instance_id: instance_uuid.to_string(),
        notes,
        chosen_by: Choice::Named,
        inventory_hosts: 0,
        unused: Vec::new(),
        warnings,
        ring: request
            .ring
            .filter(|r| *r != document::RingTimeouts::default()),
    })
}

/// Warnings about splitting the card's model when its `family` names the
/// GGUF architecture (`card new --from-gguf` records it there): an
/// architecture skulk cannot split, or a layer range llama.cpp would run
/// differently from the whole model. Pure; the authoritative check is
/// preflight's, on the model file's own header.
pub fn split_warnings(card: &ModelCard, ranks: &[Rank]) -> Vec<String> {
    use crate::engine::{LLAMA_CPP_ARCHITECTURES, SUPPORTED_ARCHITECTURES};
    let arch = card.family.as_str();
    if ranks.len() < 2 || card.gguf_file.is_none() || !LLAMA_CPP_ARCHITECTURES.contains(&arch) {
        return Vec::new();
    }
    if !SUPPORTED_ARCHITECTURES.contains(&arch) {
        return vec![format!(
            "the card's family `{arch}` is a llama.cpp architecture skulk cannot split across hosts yet, and this plan has {} ranks; `skulk apply` will refuse it\n\nhint: skulk splits {}; plan it on one host (`--nodes 1`), or correct `family` if it is not the GGUF architecture",
            ranks.len(),
            SUPPORTED_ARCHITECTURES.join(", ")
        )];
    }
    let mut warnings = Vec::new();
    for r in ranks {
        let n = r.layer_count();
        let why = match arch {
            "llama4" if r.start_layer % 4 != 0 => Some(
                "Llama 4 ranks must start on a multiple of 4 layers (llama.cpp picks the layers without RoPE and with experts by their index in the file)".to_string(),
            ),
            "deepseek2" if n == 26 || n == 27 => Some(format!(
                "llama.cpp takes a DeepSeek-V2 file of {n} layers for the Lite model and would not load it"
            )),
            _ => None,
        };
        if let Some(why) = why {
            warnings.push(format!(
                "rank {} holds layers `{}..{}`: {why}; `skulk apply` will refuse it\n\nhint: set the split with `--layers`",
                r.rank, r.start_layer, r.end_layer
            ));
        }
    }
    warnings
}

/// The layer counts of a set in ring order: every layer on every rank for
/// tensor sharding, else the largest-remainder split, with each host's
/// integer share of the raw weights checked again.
fn proportional_split(
    ctx: &Context<'_>,
    chosen: &[usize],
    sharding: Sharding,
) -> Result<Vec<u64>, PlanError> {
    let n_layers = u64::from(ctx.card.n_layers);
    if sharding == Sharding::Tensor {
        return Ok(vec![n_layers; chosen.len()]);
    }
    let weights: Vec<u128> = chosen.iter().map(|&p| ctx.usable4[p]).collect();
    let counts = allocate_layers(n_layers, &weights)
        .map_err(|e| infeasible(format!("`{}`: {e}", ctx.model_id())))?;
    for (rank, (&p, &l)) in chosen.iter().zip(&counts).enumerate() {
        if !ctx.model.raw_weights_fit(l, ctx.usable4[p]) {
            return Err(infeasible(format!(
                "host `{}` (rank {rank}) cannot hold its {l} of {n_layers} layers: they are {} GiB of weights, but it can use {:.2} GiB\n\nhint: split the layers by hand with `--layers`, add hosts, or use a smaller quant of the model",
                ctx.hosts[p].name,
                format_gib(ctx.model.storage * l as u128 / u128::from(n_layers)),
                ctx.usable4[p] as f64 / 4.0 / GIB
            )));
        }
    }
    Ok(counts)
}

/// Every host must have room for some context once its integer share of
/// the layers is known (a plan whose limit is 0 tokens cannot serve).
fn context_room(
    ctx: &Context<'_>,
    chosen: &[usize],
    counts: &[u64],
    sharding: Sharding,
) -> Result<(), PlanError> {
    let n_layers = u128::from(ctx.card.n_layers);
    for (rank, (&p, &l)) in chosen.iter().zip(counts).enumerate() {
        let (part, whole) = match sharding {
            Sharding::Pipeline => (l as u128, n_layers),
            Sharding::Tensor => (1, chosen.len() as u128),
        };
        let host = &ctx.hosts[p];
        if ctx
            .model
            .context_tokens(working_set_quarters(host), part, whole)
            == Some(0)
        {
            let weights = ctx.model.breakdown(part, whole).weights;
            return Err(infeasible(format!(
                "host `{}` (rank {rank}) has no memory left for any context: its working set of {:.2} GiB ({}) holds {:.2} GiB of weights x {} + {:.2} GiB runtime and nothing more\n\nhint: add hosts, or use a smaller quant of the model",
                host.name,
                working_set_quarters(host) as f64 / 4.0 / GIB,
                if host.vram.is_some() { "its vram" } else { "75% of its total memory" },
                weights as f64 / GIB,
                if ctx.card.is_gguf() { "1.10" } else { "1.30" },
                RUNTIME_OVERHEAD_BYTES as f64 / GIB
            )));
        }
    }
    Ok(())
}

/// Whether a set that passes the continuous fit also survives the integer
/// split: the search moves on when it does not.
fn split_holds(ctx: &Context<'_>, chosen: &[usize]) -> bool {
    if ctx.request.layers.is_some() {
        // A manual split is checked, with its own message, when planning.
        return true;
    }
    let sharding = if chosen.len() == 1 {
        Sharding::Pipeline
    } else {
        ctx.request.sharding
    };
    proportional_split(ctx, chosen, sharding)
        .and_then(|counts| context_room(ctx, chosen, &counts, sharding))
        .is_ok()
}

/// GPU offload when the inventory does not say: all layers on a host with
/// `vram` or a GPU backend, none on a CPU backend.
fn default_gpu_layers(host: &Host, backend: &str) -> GpuLayers {
    let gpu_backend = backend.parse::<BackendTag>().is_ok_and(|tag| tag.is_gpu());
    if host.vram.is_some() || gpu_backend {
        GpuLayers::All
    } else {
        GpuLayers::Count(0)
    }
}

/// sha256 of the inputs that shape a plan: the card, the sharding and
/// instance kind, and each rank's host, address and layers.
fn input_seed(
    card: &ModelCard,
    sharding: Sharding,
    instance: InstanceKind,
    ranks: &[Rank],
) -> [u8; 32] {
    let value = serde_json::json!({
        "card": card,
        "sharding": sharding.to_string(),
        "instance": instance.to_string(),
        "ranks": ranks
            .iter()
            .map(|r| serde_json::json!([r.host.name, r.host.address, r.start_layer, r.end_layer]))
            .collect::<Vec<_>>(),
    });
    Sha256::digest(document::canonical_json(&value).as_bytes()).into()
}

/// A ring port from the seed, uniform over [`RING_PORTS`] without the
/// default API port and this plan's API port.
fn derive_port(seed: &[u8; 32], api_port: u16) -> u16 {
    let excluded = |p: u16| p == DEFAULT_API_PORT || p == api_port;
    let count = RING_PORTS.filter(|&p| !excluded(p)).count() as u64;
    let mut index = u64::from_be_bytes(seed[..8].try_into().unwrap()) % count;
    for port in RING_PORTS {
        if excluded(port) {
            continue;
        }
        if index == 0 {
            return port;
        }
        index -= 1;
    }
    unreachable!("index < count")
}

#[cfg(test)]
mod tests;
