//! One rank of a running plan (`skulk run-shard`): its engine, its ring
//! links and, on rank 0, the API.
//!
//! Threads: the engine ([`Stage`]) lives on one dedicated OS thread fed by a
//! channel ([`EngineMsg`]); ring I/O, the API and supervision run on a small
//! tokio runtime. Rank 0 tokenizes (in the API's validation) and schedules:
//! up to `parallel` requests run at once, each in its own sequence of every
//! rank's KV cache, batched together step by step and cut into micro-batches
//! that follow each other round the ring (see [`head`]). Middle ranks run
//! their layers on each batch they receive and pass it on; the last rank
//! samples every sequence that asked for a token with that request's own
//! parameters and seed, and sends the batch's tokens back to rank 0. With
//! one rank, everything happens in the one process. A finished request's
//! sequence keeps its KV cache; the next request takes the free sequence
//! that shares the longest prefix with its prompt (a conversation's earlier
//! turns), on every rank.
//!
//! Invariants guarded here: at most `parallel` requests run and at most
//! `queue_capacity` wait behind them (429 beyond); a waiting request whose
//! client leaves is dropped from the queue; a failure anywhere in the ring
//! (lost or silent neighbour, engine error on any rank, aborted load) ends
//! every request in flight with an error and makes every rank return an
//! error (exit non-zero) instead of hanging; an orderly stop (SIGTERM or
//! [`Control::stop`] on any rank) goes around the ring and every rank
//! returns `Ok`.
//!
//! Slow streaming clients: each request's events go through a bounded
//! channel of [`STREAM_BUFFER_EVENTS`]. The engine never waits on it: when
//! it is full (the client stopped reading long enough for that many tokens to
//! pile up behind its full TCP window), the request is cancelled, its stream
//! ends with a `slow_consumer` error event, and the others go on.
//!
//! Files: `settings` ([`RankSettings`] and their check), `error`
//! ([`RankError`]), `slice` (the slice cache, [`rank_local_gguf`]),
//! `supervisor` (the async main loop), `backend` (rank 0's API backend),
//! `engine_thread` (the thread that owns the stage), `head` (rank 0's
//! scheduler) and `text` (a request's streamed text).

mod backend;
mod engine_thread;
mod error;
mod head;
mod settings;
mod slice;
mod supervisor;
mod text;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::engine::{EngineError, Stage, Tokenizer};

pub use error::RankError;
pub use settings::{engine_options, ApiSettings, MetricsSettings, RankSettings};
pub use slice::{rank_local_gguf, slice_file_name};

use backend::{Job, RankBackend, Shared};
use engine_thread::{sampler_for, EngineMsg, EngineThread, Fault, Inbox};
use settings::check;
use supervisor::{Rank, Supervise};

/// Events buffered per request before a non-reading client is cut off (see
/// the module documentation). One event is about one token's text.
pub const STREAM_BUFFER_EVENTS: usize = 512;

pub use crate::plan::{DEFAULT_PARALLEL, DEFAULT_QUEUE, MAX_PARALLEL};

/// Default prefill chunk when the engine options leave `n_batch` at 0
/// (llama.cpp's default batch).
const DEFAULT_CHUNK: u32 = 512;

/// How often rank 0 checks for cancelled requests while it waits for the
/// ring's tokens (a wait ends at once when tokens arrive).
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// After an orderly stop or a failure: time for queued frames to reach the
/// neighbour, for the API to send its last error events, and for the engine
/// thread to finish its current forward pass.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// What a rank's engine needs: its stage and the model's tokenizer.
pub struct Loaded {
    pub stage: Box<dyn Stage>,
    pub tokenizer: Arc<dyn Tokenizer>,
}

/// Loads the engine on the engine thread.
pub type Loader = Box<dyn FnOnce() -> Result<Loaded, EngineError> + Send>;

/// Outside control of a running rank: an orderly stop, an abrupt kill (tests
/// use it to play a crashed process), the API's bound address.
#[derive(Clone, Default)]
pub struct Control {
    inner: Arc<ControlInner>,
}

#[derive(Default)]
struct ControlInner {
    stop: Notify,
    kill: Notify,
    signals: bool,
    api_addr: Mutex<Option<SocketAddr>>,
    api_bound: Condvar,
}

impl Control {
    /// Controlled through [`Control::stop`] and [`Control::kill`] only.
    pub fn new() -> Control {
        Control::default()
    }

    /// Also stops in order on SIGTERM and SIGINT (the `skulk run-shard` process).
    pub fn with_signals() -> Control {
        Control {
            inner: Arc::new(ControlInner {
                signals: true,
                ..ControlInner::default()
            }),
        }
    }

    /// Stop the whole ring in order (as SIGTERM does).
    pub fn stop(&self) {
        self.inner.stop.notify_one();
    }

    /// Vanish at once without telling anyone, as a killed process does.
    pub fn kill(&self) {
        self.inner.kill.notify_one();
    }

    /// The API's address once it is bound (rank 0), waiting up to `limit`.
    pub fn api_addr(&self, limit: Duration) -> Option<SocketAddr> {
        let guard = self.inner.api_addr.lock().unwrap();
        let (guard, _) = self
            .inner
            .api_bound
            .wait_timeout_while(guard, limit, |a| a.is_none())
            .unwrap();
        *guard
    }

    fn set_api_addr(&self, addr: SocketAddr) {
        *self.inner.api_addr.lock().unwrap() = Some(addr);
        self.inner.api_bound.notify_all();
    }

    async fn stop_requested(&self) {
        if !self.inner.signals {
            return self.inner.stop.notified().await;
        }
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return self.inner.stop.notified().await,
            };
        tokio::select! {
            _ = self.inner.stop.notified() => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}

/// Run this rank with the llama.cpp engine until the ring stops (`Ok`) or
/// fails (`Err`); stops in order on SIGTERM/SIGINT.
pub fn run_rank(settings: RankSettings) -> Result<(), RankError> {
    #[cfg(feature = "engine")]
    {
        let path = settings.model_path.clone();
        let layers = settings.layers.clone();
        let total = settings.total_layers;
        let opts = engine_options(&settings);
        let loader: Loader = Box::new(move || {
            let (stage, tokenizer) = crate::engine::load(&path, layers, total, &opts)?;
            Ok(Loaded { stage, tokenizer })
        });
        run_rank_with(settings, loader, Control::with_signals())
    }
    #[cfg(not(feature = "engine"))]
    {
        let _ = settings;
        Err(RankError::NoEngine)
    }
}

/// Run one rank with the given engine loader and control.
pub fn run_rank_with(
    settings: RankSettings,
    loader: Loader,
    control: Control,
) -> Result<(), RankError> {
    check(&settings)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        // Ring I/O and the API are light; the cores belong to the engine.
        .worker_threads(2)
        .thread_name(format!("skulk-rank{}-io", settings.rank))
        .enable_all()
        .build()
        .map_err(|source| RankError::Api {
            rank: settings.rank,
            source,
        })?;
    let result = rt.block_on(Rank::run(settings, loader, control));
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

fn log(rank: u32, msg: impl std::fmt::Display) {
    crate::output::progress(format!("skulk rank {rank}: {msg}"));
}
