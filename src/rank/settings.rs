//! A rank's settings, resolved from the plan by `run_shard` (no clap or
//! plan types here), and the check that they describe one rank of a ring.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::CardChat;
use crate::engine::EngineOptions;
use crate::ring::{self, WireFormat};

use super::{RankError, MAX_PARALLEL};

/// Settings of one rank, resolved from the plan by the caller (no clap or
/// plan types here).
#[derive(Clone)]
pub struct RankSettings {
    pub rank: u32,
    pub world_size: u32,
    /// This rank's plan address: the ring listens here.
    pub bind_addr: IpAddr,
    /// Rank `rank + 1`'s address (rank 0's for the last rank).
    pub next_addr: IpAddr,
    /// The plan's ring port, the same on every rank.
    pub ring_port: u16,
    pub plan_digest: String,
    /// The per-apply ring secret (never logged).
    pub secret: Vec<u8>,
    /// This rank's layers, `[start, end)` of `total_layers`.
    pub layers: Range<u32>,
    pub total_layers: u32,
    /// The GGUF that `engine::load` gets for `layers`: the whole model when
    /// this rank holds every layer, else the rank-local slice (see
    /// [`rank_local_gguf`]).
    pub model_path: PathBuf,
    /// The model card's id, served by the API.
    pub model_id: String,
    /// `n_ctx` 0 or below `context_limit` is raised to `context_limit`.
    pub engine: EngineOptions,
    /// Prompt plus completion tokens per request, and the KV cache's cells
    /// that all requests in flight share.
    pub context_limit: u32,
    /// Requests served at once: sequences in every rank's KV cache. Every
    /// rank of a ring must use the same value.
    pub parallel: u32,
    /// Rank 0: micro-batches kept in the ring at once (`run-shard` defaults
    /// it to the plan's machines); 0 = one per rank.
    pub micro_batches: u32,
    /// Rank 0 only.
    pub api: Option<ApiSettings>,
    pub formation_deadline: Duration,
    /// f16 rows halve the ring's traffic but are not bit-identical to one
    /// process; f32 is the default.
    pub wire: WireFormat,
    /// How long a silent neighbour is waited for (the plan's, else defaults).
    pub silence: ring::SilencePolicy,
    /// Ranks other than 0: where this rank serves its own `/metrics`
    /// (rank 0 serves them with the API).
    pub metrics: Option<MetricsSettings>,
}

#[derive(Clone)]
pub struct ApiSettings {
    pub bind_addr: IpAddr,
    pub port: u16,
    pub api_key: Option<String>,
    /// Requests that may wait while `parallel` others run.
    pub queue_capacity: usize,
    /// Tokens a request generates when it sets no `max_tokens`.
    pub default_max_tokens: u32,
    /// The card's chat settings (tool dialect, reasoning, renderer).
    pub card: CardChat,
}

/// A rank's own `/metrics` listener (ranks other than 0).
#[derive(Clone)]
pub struct MetricsSettings {
    pub addr: SocketAddr,
    /// Required like the API's key when set.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for RankSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RankSettings")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("bind_addr", &self.bind_addr)
            .field("next_addr", &self.next_addr)
            .field("ring_port", &self.ring_port)
            .field("plan_digest", &self.plan_digest)
            .field("secret", &"<redacted>")
            .field("layers", &self.layers)
            .field("total_layers", &self.total_layers)
            .field("model_path", &self.model_path)
            .field("model_id", &self.model_id)
            .field("engine", &self.engine)
            .field("context_limit", &self.context_limit)
            .field("parallel", &self.parallel)
            .field("micro_batches", &self.micro_batches)
            .field(
                "api",
                &self
                    .api
                    .as_ref()
                    .map(|a| (a.bind_addr, a.port, a.queue_capacity)),
            )
            .field("formation_deadline", &self.formation_deadline)
            .field("wire", &self.wire)
            .field("silence", &self.silence)
            .field("metrics", &self.metrics.as_ref().map(|m| m.addr))
            .finish()
    }
}
/// The engine options a rank loads with: the KV cache holds the context
/// limit, shared by `parallel` sequences.
pub fn engine_options(s: &RankSettings) -> EngineOptions {
    let mut opts = s.engine.clone();
    if opts.n_ctx < s.context_limit {
        opts.n_ctx = s.context_limit;
    }
    opts.n_seq_max = s.parallel;
    opts
}

pub(super) fn check(s: &RankSettings) -> Result<(), RankError> {
    let bad = |m: String| Err(RankError::Settings(m));
    if s.world_size == 0 || s.rank >= s.world_size {
        return bad(format!(
            "rank `{}` is outside a world of `{}` ranks",
            s.rank, s.world_size
        ));
    }
    if s.layers.start >= s.layers.end || s.layers.end > s.total_layers {
        return bad(format!(
            "layer range `{}..{}` is empty or beyond the model's `{}` layers",
            s.layers.start, s.layers.end, s.total_layers
        ));
    }
    if s.context_limit < 2 {
        return bad(format!(
            "context limit `{}` is below 2 tokens",
            s.context_limit
        ));
    }
    if s.parallel == 0 || s.parallel > MAX_PARALLEL {
        return bad(format!(
            "`{}` requests at once is outside 1..={MAX_PARALLEL}",
            s.parallel
        ));
    }
    if (s.rank == 0) != s.api.is_some() {
        return bad("rank 0, and only rank 0, serves the API".into());
    }
    if s.world_size > 1 && s.secret.is_empty() {
        return bad("the ring secret is empty".into());
    }
    Ok(())
}
