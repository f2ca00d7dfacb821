//! Everything a running rank can fail with.

use std::net::SocketAddr;

use crate::engine::EngineError;
use crate::ring::RingError;

#[derive(Debug, thiserror::Error)]
pub enum RankError {
    #[error("invalid rank settings: {0}")]
    Settings(String),
    #[error("rank {rank}: {source}")]
    Ring { rank: u32, source: RingError },
    #[error("rank {rank}: {source}")]
    Engine { rank: u32, source: EngineError },
    #[error("rank {rank}: cannot serve the API on `{addr}`: {source}\n\nhint: the address must belong to this host and the port must be free")]
    ApiBind {
        rank: u32,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("rank {rank}: the API server failed: {source}")]
    Api { rank: u32, source: std::io::Error },
    /// Another rank failed and told the ring.
    #[error("rank {rank} aborted the ring: {message}")]
    Aborted { rank: u32, message: String },
    #[error("rank {rank}: ring protocol violation: {what}")]
    Protocol { rank: u32, what: String },
    #[error("rank {rank}: killed")]
    Killed { rank: u32 },
    #[error("skulk was built without the `engine` feature, so it cannot run a rank\n\nhint: build with `cargo build --release` (the default features)")]
    NoEngine,
}
