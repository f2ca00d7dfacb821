//! skulk's ring: the TCP links between the ranks of one plan.
//!
//! Rank `r` listens on its plan address and the plan's ring port, accepts
//! exactly one authenticated connection from rank `r - 1`, and connects to
//! rank `r + 1` (the last rank to rank 0, closing the ring). Data flows one
//! way around the ring: micro-batches of hidden rows from rank 0 to the last
//! rank, and the tokens sampled for each batch from the last rank back to
//! rank 0. Both directions of every
//! connection carry heartbeats, so each rank watches both neighbours.
//!
//! Invariants guarded here: nothing but a peer that passed the handshake
//! ([`handshake`]) ever gets a frame; the listener only binds the given
//! address and is closed once the ring is formed; a neighbour that closes its
//! connection, breaks the protocol, or stays silent longer than the
//! [`SilencePolicy`] allows is reported exactly as a [`RingError`] through
//! the event sink, so the rank can fail its in-flight request and exit
//! instead of hanging.

pub mod detector;
pub mod frame;
pub mod handshake;
mod link;

use std::net::SocketAddr;
use std::time::Duration;

pub use detector::{Phase, SilencePolicy};
pub use frame::{Frame, FrameError, KvOp, Sampled, Span, WireFormat, MAX_FRAME_LEN};
pub use handshake::{HandshakeError, Refusal, PROTOCOL_VERSION};
pub use link::{form, report_health_to, start, Formed, RingEvent, RingSender};

/// Default time for all ranks of a plan to find each other (120 s, see
/// `docs/architecture.md`, "Ring formation": model loading runs in parallel,
/// so this only covers process start and network reachability).
pub const DEFAULT_FORMATION_DEADLINE: Duration = Duration::from_secs(120);

/// An idle link sends a heartbeat this often.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// An idle link probes its latency this often (a ping answered by a pong,
/// in place of a heartbeat), for the ring hop metric.
pub const HOP_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// One handshake, from TCP connect to accept, must finish within this; a
/// stalled peer cannot hold the listener.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between connection attempts to the next rank while it starts.
pub const CONNECT_RETRY: Duration = Duration::from_millis(200);

/// Everything a rank needs to join its ring.
#[derive(Clone)]
pub struct RingConfig {
    pub rank: u32,
    pub world: u32,
    /// This rank's plan address and the ring port.
    pub listen: SocketAddr,
    /// Rank `rank + 1`'s (rank 0's for the last rank).
    pub next: SocketAddr,
    pub plan_digest: String,
    pub secret: Vec<u8>,
    pub formation_deadline: Duration,
    pub wire: WireFormat,
    /// How long a silent neighbour is waited for (see [`detector`]).
    pub silence: SilencePolicy,
}

impl RingConfig {
    pub fn prev_rank(&self) -> u32 {
        (self.rank + self.world - 1) % self.world
    }

    pub fn next_rank(&self) -> u32 {
        (self.rank + 1) % self.world
    }

    fn identity(&self) -> handshake::Identity<'_> {
        handshake::Identity {
            plan_digest: &self.plan_digest,
            rank: self.rank,
            world: self.world,
            secret: &self.secret,
        }
    }
}

impl std::fmt::Debug for RingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingConfig")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("listen", &self.listen)
            .field("next", &self.next)
            .field("plan_digest", &self.plan_digest)
            .field("secret", &"<redacted>")
            .field("formation_deadline", &self.formation_deadline)
            .field("wire", &self.wire)
            .field("silence", &self.silence)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error(
        "cannot listen for ring peers on `{addr}`: {source}\n\n\
         hint: the address must belong to this host, and no other process (an older rank?) may hold the ring port"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("ring handshake with rank {rank} at `{addr}` failed: {source}")]
    Handshake {
        rank: u32,
        addr: SocketAddr,
        source: HandshakeError,
    },
    #[error("the ring did not form within {secs} s: {detail}")]
    FormationTimeout { secs: u64, detail: String },
    #[error("lost rank {rank} at `{addr}`: {what}")]
    PeerLost {
        rank: u32,
        addr: SocketAddr,
        what: String,
    },
    #[error(
        "rank {rank} at `{addr}` went silent: nothing received for {:.1} s, past the {} limit of {:.1} s\n\nhint: a frozen or overloaded host; raise the limits with `skulk plan --silence-limit` / `--loading-silence-limit` if the host is merely slow",
        silent.as_secs_f64(), phase.as_str(), limit.as_secs_f64()
    )]
    PeerSilent {
        rank: u32,
        addr: SocketAddr,
        silent: Duration,
        limit: Duration,
        phase: Phase,
    },
    #[error("rank {rank} at `{addr}` broke the ring protocol: {source}")]
    Protocol {
        rank: u32,
        addr: SocketAddr,
        source: FrameError,
    },
    #[error("cannot accept ring connections on `{addr}`: {source}")]
    Accept {
        addr: SocketAddr,
        source: std::io::Error,
    },
}
