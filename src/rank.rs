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

mod head;
mod text;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::api::{
    self, ApiConfig, ApiError, Backend, CardChat, Event, EventStream, Health, RankMetrics,
    ValidGeneration,
};
use crate::engine::{
    BatchOutput, Constraint, EngineError, EngineOptions, Sampler, SamplingParams, SeqSpan, Stage,
    StageInput, Tokenizer,
};
use crate::ring::{
    self, Frame, KvOp, RingConfig, RingError, RingEvent, RingSender, Sampled, WireFormat,
};

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

impl RankError {
    /// Exit status for the process: every failure of a running rank is a
    /// runtime failure (2).
    pub fn exit_code(&self) -> u8 {
        2
    }
}

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

/// The GGUF a rank loads for `layers` of `model`: `model` itself when the
/// range is the whole model, else a slice cut once (streaming, see
/// `gguf::slice_layers`) into `cache_dir` and reused by later runs. The
/// file name holds `model_key` (e.g. the model's sha256) and the range, so a
/// changed model or range never reuses a stale slice; the slice is written to
/// a temporary name and renamed, so an interrupted cut leaves no bad file.
pub fn rank_local_gguf(
    model: &std::path::Path,
    model_key: &str,
    layers: Range<u32>,
    total_layers: u32,
    cache_dir: &std::path::Path,
) -> Result<PathBuf, crate::gguf::GgufError> {
    if layers.start == 0 && layers.end == total_layers {
        return Ok(model.to_path_buf());
    }
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let key: String = model_key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    let path = cache_dir.join(slice_file_name(&stem, &key, &layers));
    if path.is_file() {
        return Ok(path);
    }
    let io = |op, error| crate::gguf::GgufError::Io {
        op,
        path: cache_dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(cache_dir).map_err(|e| io("create", e))?;
    let tmp = cache_dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    crate::gguf::slice_layers(model, &tmp, layers.start, layers.end)?;
    std::fs::rename(&tmp, &path).map_err(|e| io("rename into", e))?;
    Ok(path)
}

/// The slice cache's name for layers `layers` cut from the model file whose
/// name without `.gguf` is `stem`, with content key `key`:
/// `<stem>.<key>.layers-<start>-<end>.gguf`. `down --purge` matches it with
/// `key` = `*`.
pub fn slice_file_name(stem: &str, key: &str, layers: &Range<u32>) -> String {
    format!("{stem}.{key}.layers-{}-{}.gguf", layers.start, layers.end)
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

fn check(s: &RankSettings) -> Result<(), RankError> {
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

/// Messages to the engine thread.
enum EngineMsg {
    /// The ring is formed; frames may be sent.
    RingUp(RingSender),
    Frame(Frame),
    Job(Job),
    Stop,
}

struct Job {
    generation: ValidGeneration,
    events: mpsc::Sender<Event>,
    /// Counts the request as running or waiting until it is dropped.
    _ticket: Ticket,
}

/// One request counted in [`Shared::active`], from `submit` until its job
/// is dropped (finished, cancelled, refused or lost with the engine).
struct Ticket(Arc<Shared>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Messages to the supervisor (the rank's async main loop).
enum Supervise {
    Loaded,
    Ready,
    EngineFailed(RankError),
    RingFailed(RingError),
    /// Shutdown and abort frames, handled here rather than on the engine thread.
    Frame(Frame),
}

/// State shared by rank 0's API backend, engine thread and supervisor.
struct Shared {
    ready: AtomicBool,
    failed: watch::Sender<Option<ApiError>>,
    tokenizer: OnceLock<Arc<dyn Tokenizer>>,
    /// Requests submitted and not yet over: running or waiting.
    active: AtomicUsize,
    /// Requests admitted to the ring now, and when the oldest of them was
    /// (`/health` reports both; rank 0's scheduler keeps them current).
    running: Mutex<(usize, Option<std::time::Instant>)>,
    /// This rank's measurements (served on `/metrics`).
    metrics: Arc<RankMetrics>,
}

struct RankBackend {
    shared: Arc<Shared>,
    engine: std_mpsc::Sender<EngineMsg>,
    parallel: usize,
    /// Requests that may wait behind the `parallel` running ones.
    capacity: usize,
}

impl Backend for RankBackend {
    fn health(&self) -> Health {
        if let Some(e) = self.shared.failed.borrow().as_ref() {
            return Health::Failed(e.to_string());
        }
        if self.shared.ready.load(Ordering::SeqCst) {
            Health::Ready
        } else {
            Health::Starting
        }
    }

    fn load(&self) -> api::Load {
        let (running, since) = *self.shared.running.lock().unwrap();
        let active = self.shared.active.load(Ordering::SeqCst);
        api::Load {
            running,
            running_for: since.map(|t| t.elapsed()),
            waiting: active.saturating_sub(running),
        }
    }

    fn tokenizer(&self) -> Result<Arc<dyn Tokenizer>, ApiError> {
        if let Some(e) = self.shared.failed.borrow().as_ref() {
            return Err(e.clone());
        }
        self.shared
            .tokenizer
            .get()
            .cloned()
            .ok_or(ApiError::NotReady)
    }

    fn submit(&self, generation: ValidGeneration) -> Result<EventStream, ApiError> {
        if let Some(e) = self.shared.failed.borrow().as_ref() {
            return Err(e.clone());
        }
        if !self.shared.ready.load(Ordering::SeqCst) {
            return Err(ApiError::NotReady);
        }
        let ticket = Ticket(self.shared.clone());
        if self.shared.active.fetch_add(1, Ordering::SeqCst) >= self.parallel + self.capacity {
            return Err(ApiError::QueueFull {
                capacity: self.capacity,
            });
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER_EVENTS);
        let job = Job {
            generation,
            events: tx,
            _ticket: ticket,
        };
        if self.engine.send(EngineMsg::Job(job)).is_err() {
            return Err(ApiError::ShuttingDown);
        }
        Ok(with_failure(rx, self.shared.failed.subscribe()))
    }
}

/// A request's events, ended early by an error when the rank fails (so the
/// client hears about it even while the engine thread is busy).
fn with_failure(
    rx: mpsc::Receiver<Event>,
    failed: watch::Receiver<Option<ApiError>>,
) -> EventStream {
    Box::pin(futures::stream::unfold(
        Some((rx, failed)),
        |state| async move {
            let (mut rx, mut failed) = state?;
            let failure = tokio::select! {
                biased;
                ev = rx.recv() => Ok(ev),
                e = failed.wait_for(Option::is_some) => Err(match e {
                    Ok(e) => e.clone().expect("waited for Some"),
                    Err(_) => ApiError::ShuttingDown,
                }),
            };
            match failure {
                // The engine thread dropped the request because the rank is
                // failing: say why, not that the client was too slow.
                Ok(None) if failed.borrow().is_some() => {
                    let e = failed.borrow().clone().expect("checked Some");
                    Some((Event::Error(e), None))
                }
                Ok(ev) => {
                    let ev = ev?;
                    let more = !matches!(ev, Event::Done { .. } | Event::Error(_));
                    Some((ev, more.then_some((rx, failed))))
                }
                Err(e) => Some((Event::Error(e), None)),
            }
        },
    ))
}

fn log(rank: u32, msg: impl std::fmt::Display) {
    crate::output::progress(format!("skulk rank {rank}: {msg}"));
}

struct Rank {
    s: RankSettings,
    control: Control,
    engine_tx: std_mpsc::Sender<EngineMsg>,
    sup_rx: mpsc::UnboundedReceiver<Supervise>,
    sup_tx: mpsc::UnboundedSender<Supervise>,
    shared: Arc<Shared>,
    engine_done: std_mpsc::Receiver<()>,
    api_stop: Arc<Notify>,
    api_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Rank {
    async fn run(s: RankSettings, loader: Loader, control: Control) -> Result<(), RankError> {
        let rank = s.rank;
        let (engine_tx, engine_rx) = std_mpsc::channel();
        let (sup_tx, sup_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            ready: AtomicBool::new(false),
            failed: watch::channel(None).0,
            tokenizer: OnceLock::new(),
            active: AtomicUsize::new(0),
            running: Mutex::new((0, None)),
            metrics: Arc::new(RankMetrics::new(s.rank)),
        });

        // Rank 0 binds the API first, so a busy port fails at once; /health
        // answers 503 until the ring is ready.
        let api_listener = match &s.api {
            Some(a) => {
                let addr = SocketAddr::new(a.bind_addr, a.port);
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| RankError::ApiBind { rank, addr, source })?;
                Some(l)
            }
            None => None,
        };

        let (done_tx, engine_done) = std_mpsc::channel();
        let worker = EngineThread {
            rank,
            world: s.world_size,
            chunk: if s.engine.n_batch == 0 {
                DEFAULT_CHUNK
            } else {
                s.engine.n_batch
            } as usize,
            inbox: Inbox {
                rx: engine_rx,
                frames: VecDeque::new(),
                jobs: VecDeque::new(),
            },
            micro_batches: s.micro_batches as usize,
            parallel: s.parallel as usize,
            sup: sup_tx.clone(),
            shared: shared.clone(),
            out: None,
        };
        std::thread::Builder::new()
            .name(format!("skulk-rank{rank}-engine"))
            .spawn(move || {
                worker.main(loader);
                let _ = done_tx.send(());
            })
            .expect("spawn the engine thread");

        let mut me = Rank {
            s,
            control,
            engine_tx,
            sup_rx,
            sup_tx,
            shared,
            engine_done,
            api_stop: Arc::new(Notify::new()),
            api_task: None,
        };
        if let (Some(listener), Some(a)) = (api_listener, me.s.api.clone()) {
            if let Ok(addr) = listener.local_addr() {
                log(rank, format!("API on http://{addr}"));
                me.control.set_api_addr(addr);
            }
            let backend = Arc::new(RankBackend {
                shared: me.shared.clone(),
                engine: me.engine_tx.clone(),
                parallel: me.s.parallel as usize,
                capacity: a.queue_capacity,
            });
            let app = api::router(
                backend,
                ApiConfig {
                    model_id: me.s.model_id.clone(),
                    context_limit: me.s.context_limit,
                    api_key: a.api_key.clone(),
                    default_max_tokens: a.default_max_tokens,
                    plan_digest: me.s.plan_digest.clone(),
                    card: a.card.clone(),
                    rank_metrics: me.shared.metrics.clone(),
                },
            );
            let stop = me.api_stop.clone();
            me.api_task = Some(tokio::spawn(api::serve(listener, app, async move {
                stop.notified().await
            })));
        }
        if let Some(m) = me.s.metrics.clone() {
            // A rank's metrics are not worth failing the rank for: a busy
            // port is said and the rank runs on.
            match tokio::net::TcpListener::bind(m.addr).await {
                Ok(listener) => {
                    log(rank, format!("metrics on http://{}/metrics", m.addr));
                    let app = api::metrics_router(me.shared.metrics.clone(), m.api_key);
                    let stop = me.api_stop.clone();
                    tokio::spawn(api::serve(
                        listener,
                        app,
                        async move { stop.notified().await },
                    ));
                }
                Err(e) => log(
                    rank,
                    format!("warning: cannot serve metrics on `{}`: {e}", m.addr),
                ),
            }
        }

        let result = me.supervise().await;
        me.wind_down(&result).await;
        result
    }

    /// Form the ring (while the engine loads), then watch it until it stops
    /// or fails.
    async fn supervise(&mut self) -> Result<(), RankError> {
        let rank = self.s.rank;
        let control = self.control.clone();
        let sender = if self.s.world_size > 1 {
            let cfg = RingConfig {
                rank,
                world: self.s.world_size,
                listen: SocketAddr::new(self.s.bind_addr, self.s.ring_port),
                next: SocketAddr::new(self.s.next_addr, self.s.ring_port),
                plan_digest: self.s.plan_digest.clone(),
                secret: self.s.secret.clone(),
                formation_deadline: self.s.formation_deadline,
                wire: self.s.wire,
                silence: self.s.silence,
            };
            // A load failure during formation is kept, and told to the ring
            // once it is formed, so every rank exits with the reason.
            let mut load_error = None;
            let form = ring::form(&cfg);
            tokio::pin!(form);
            let formed = loop {
                tokio::select! {
                    formed = &mut form => break formed.map_err(|source| RankError::Ring { rank, source })?,
                    msg = self.sup_rx.recv() => match msg {
                        Some(Supervise::EngineFailed(e)) => {
                            log(rank, format!("{e}\n(waiting for the ring to tell the other ranks)"));
                            load_error = Some(e)
                        }
                        Some(Supervise::Loaded) => log(rank, "model loaded"),
                        _ => {}
                    },
                    _ = control.inner.kill.notified() => return Err(RankError::Killed { rank }),
                    _ = control.stop_requested() => return Ok(()),
                }
            };
            log(
                rank,
                format!(
                    "ring formed: rank {} -> {rank} -> rank {}",
                    cfg.prev_rank(),
                    cfg.next_rank()
                ),
            );
            let sink = {
                let engine = self.engine_tx.clone();
                let sup = self.sup_tx.clone();
                let metrics = self.shared.metrics.clone();
                Arc::new(move |ev: RingEvent| match ev {
                    RingEvent::Frame(f @ (Frame::Shutdown { .. } | Frame::Abort { .. })) => {
                        let _ = sup.send(Supervise::Frame(f));
                    }
                    RingEvent::Frame(f) => {
                        let _ = engine.send(EngineMsg::Frame(f));
                    }
                    RingEvent::Failed(e) => {
                        let _ = sup.send(Supervise::RingFailed(e));
                    }
                    RingEvent::Hop(d) => metrics.hop.observe(d),
                })
            };
            let sender = ring::start(formed, &cfg, sink);
            if let Some(e) = load_error {
                self.abort_ring(&sender, &e).await;
                return Err(e);
            }
            let _ = self.engine_tx.send(EngineMsg::RingUp(sender.clone()));
            Some(sender)
        } else {
            None
        };

        let mut stopping = false;
        let stop_wait = tokio::time::sleep(Duration::from_secs(3600 * 24 * 365));
        tokio::pin!(stop_wait);
        loop {
            tokio::select! {
                msg = self.sup_rx.recv() => {
                    let Some(msg) = msg else { return Ok(()) };
                    match msg {
                        Supervise::Loaded => log(rank, "model loaded"),
                        Supervise::Ready => log(rank, "ring ready"),
                        Supervise::EngineFailed(e) => {
                            if let Some(s) = &sender {
                                self.abort_ring(s, &e).await;
                            }
                            return Err(e);
                        }
                        Supervise::RingFailed(e) => {
                            if stopping {
                                continue;
                            }
                            return Err(RankError::Ring { rank, source: e });
                        }
                        Supervise::Frame(Frame::Shutdown { origin }) => {
                            if origin == rank {
                                // Our stop went all the way round.
                                return Ok(());
                            }
                            log(rank, format!("stopping: rank {origin} asked the ring to stop"));
                            if let Some(s) = &sender {
                                s.send(Frame::Shutdown { origin });
                                s.clone().flush(FLUSH_LIMIT).await;
                            }
                            return Ok(());
                        }
                        Supervise::Frame(Frame::Abort { rank: origin, message }) => {
                            if origin != rank {
                                if let Some(s) = &sender {
                                    s.send(Frame::Abort { rank: origin, message: message.clone() });
                                    s.clone().flush(FLUSH_LIMIT).await;
                                }
                            }
                            return Err(RankError::Aborted { rank: origin, message });
                        }
                        Supervise::Frame(_) => {}
                    }
                }
                _ = control.inner.kill.notified() => {
                    if let Some(s) = &sender {
                        s.sever();
                    }
                    return Err(RankError::Killed { rank });
                }
                _ = control.stop_requested(), if !stopping => {
                    log(rank, "stopping the ring");
                    match &sender {
                        None => return Ok(()),
                        Some(s) => {
                            stopping = true;
                            s.send(Frame::Shutdown { origin: rank });
                            stop_wait.as_mut().reset(tokio::time::Instant::now() + FLUSH_LIMIT);
                        }
                    }
                }
                _ = &mut stop_wait, if stopping => return Ok(()),
            }
        }
    }

    /// Send this rank's failure around the ring and wait (bounded) until it
    /// comes back, so that every rank exits with the reason rather than with
    /// a lost neighbour.
    async fn abort_ring(&mut self, sender: &RingSender, e: &RankError) {
        let rank = self.s.rank;
        sender.send(Frame::Abort {
            rank,
            message: e.to_string(),
        });
        let deadline = tokio::time::sleep(FLUSH_LIMIT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                msg = self.sup_rx.recv() => match msg {
                    Some(Supervise::Frame(Frame::Abort { rank: origin, .. })) if origin == rank => break,
                    None => break,
                    _ => {}
                },
                _ = &mut deadline => break,
            }
        }
        sender.clone().flush(FLUSH_LIMIT).await;
    }

    /// Tell the API's clients, stop the API and the engine thread.
    async fn wind_down(&mut self, result: &Result<(), RankError>) {
        let why = match result {
            Ok(()) => ApiError::ShuttingDown,
            Err(e) => ApiError::RingFailed(e.to_string()),
        };
        self.shared.ready.store(false, Ordering::SeqCst);
        self.shared.failed.send_replace(Some(why));
        let _ = self.engine_tx.send(EngineMsg::Stop);
        if matches!(result, Err(RankError::Killed { .. })) {
            return;
        }
        self.api_stop.notify_one();
        if let Some(task) = self.api_task.take() {
            let _ = tokio::time::timeout(FLUSH_LIMIT, task).await;
        }
        // Let the engine finish its forward pass: a process must not exit
        // while llama.cpp runs on another thread.
        let done = std::mem::replace(&mut self.engine_done, std_mpsc::channel().1);
        let _ = tokio::task::spawn_blocking(move || done.recv_timeout(FLUSH_LIMIT)).await;
    }
}

/// The engine thread's mailbox, with what arrived out of turn set aside.
struct Inbox {
    rx: std_mpsc::Receiver<EngineMsg>,
    /// Frames that came before the ring sender.
    frames: VecDeque<Frame>,
    /// Requests that came before the ring sender.
    jobs: VecDeque<Job>,
}

/// The engine thread stops (without an error of its own).
struct Stopped;

enum Fault {
    Stopped,
    Fatal(RankError),
}

impl From<Stopped> for Fault {
    fn from(_: Stopped) -> Fault {
        Fault::Stopped
    }
}

/// The sampler of one request, with its grammar. Rank 0 checked the grammar
/// against the same vocabulary before the request started; should it still
/// fail here, the request gets no token (and ends with an error) instead of
/// unconstrained output.
fn sampler_for(params: &SamplingParams, tok: &dyn Tokenizer, rank: u32) -> Sampler {
    let constraint = params.grammar.as_ref().map(|g| match tok.constraint(g) {
        Ok(c) => c,
        Err(e) => {
            log(rank, format!("cannot build the request's grammar: {e}"));
            Box::new(Nothing) as Box<dyn Constraint>
        }
    });
    Sampler::constrained(params, constraint)
}

/// Allows no token.
struct Nothing;

impl Constraint for Nothing {
    fn apply(&mut self, candidates: &mut [(i32, f32)]) {
        for c in candidates {
            c.1 = f32::NEG_INFINITY;
        }
    }

    fn accept(&mut self, _: i32) {}
}

struct EngineThread {
    rank: u32,
    world: u32,
    /// Tokens per prompt chunk (the engine options' batch).
    chunk: usize,
    /// Rank 0: micro-batches in the ring at once (0: one per rank).
    micro_batches: usize,
    /// Requests served at once.
    parallel: usize,
    inbox: Inbox,
    sup: mpsc::UnboundedSender<Supervise>,
    shared: Arc<Shared>,
    out: Option<RingSender>,
}

impl EngineThread {
    fn main(mut self, loader: Loader) {
        let rank = self.rank;
        let Loaded { stage, tokenizer } = match loader() {
            Ok(l) => l,
            Err(source) => {
                let _ = self
                    .sup
                    .send(Supervise::EngineFailed(RankError::Engine { rank, source }));
                return;
            }
        };
        let _ = self.shared.tokenizer.set(tokenizer.clone());
        let _ = self.sup.send(Supervise::Loaded);
        if self.world > 1 {
            // Wait for the ring; keep frames that come first, in order.
            loop {
                match self.inbox.rx.recv() {
                    Ok(EngineMsg::RingUp(s)) => {
                        self.out = Some(s);
                        break;
                    }
                    Ok(EngineMsg::Frame(f)) => self.inbox.frames.push_back(f),
                    Ok(EngineMsg::Job(j)) => self.inbox.jobs.push_back(j),
                    Ok(EngineMsg::Stop) | Err(_) => return,
                }
            }
        }
        let result = if rank == 0 {
            self.head(stage, tokenizer)
        } else {
            self.tail(stage, &*tokenizer)
        };
        if let Err(Fault::Fatal(e)) = result {
            let _ = self.sup.send(Supervise::EngineFailed(e));
        }
    }

    fn send(&self, f: Frame) {
        if let Some(out) = &self.out {
            out.send(f);
        }
    }

    /// One forward pass of this rank's layers over a batch, timed for
    /// `/metrics`.
    fn forward(
        &self,
        stage: &mut dyn Stage,
        spans: &[SeqSpan],
        input: StageInput<'_>,
    ) -> Result<BatchOutput, Fault> {
        let t = std::time::Instant::now();
        let out = stage.forward_batch(spans, input);
        let m = &self.shared.metrics;
        m.forward.observe(t.elapsed());
        let tokens: u64 = spans.iter().map(|s| u64::from(s.n_tokens)).sum();
        m.forward_tokens.fetch_add(tokens, Ordering::Relaxed);
        m.forward_sequences
            .fetch_add(spans.len() as u64, Ordering::Relaxed);
        out.map_err(|e| self.engine_err(e))
    }

    fn engine_err(&self, source: EngineError) -> Fault {
        Fault::Fatal(RankError::Engine {
            rank: self.rank,
            source,
        })
    }

    fn protocol(&self, what: String) -> Fault {
        Fault::Fatal(RankError::Protocol {
            rank: self.rank,
            what,
        })
    }

    /// Next message; frames set aside first.
    fn recv(&mut self) -> Result<EngineMsg, Stopped> {
        if let Some(f) = self.inbox.frames.pop_front() {
            return Ok(EngineMsg::Frame(f));
        }
        match self.inbox.rx.recv() {
            Ok(EngineMsg::Stop) | Err(_) => Err(Stopped),
            Ok(m) => Ok(m),
        }
    }

    /// The next message if one is there.
    fn try_recv(&mut self) -> Result<Option<EngineMsg>, Stopped> {
        if let Some(f) = self.inbox.frames.pop_front() {
            return Ok(Some(EngineMsg::Frame(f)));
        }
        match self.inbox.rx.try_recv() {
            Ok(EngineMsg::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => Err(Stopped),
            Ok(m) => Ok(Some(m)),
            Err(std_mpsc::TryRecvError::Empty) => Ok(None),
        }
    }

    /// The next message, waiting at most `limit`.
    fn recv_timeout(&mut self, limit: Duration) -> Result<Option<EngineMsg>, Stopped> {
        if let Some(f) = self.inbox.frames.pop_front() {
            return Ok(Some(EngineMsg::Frame(f)));
        }
        match self.inbox.rx.recv_timeout(limit) {
            Ok(EngineMsg::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(Stopped),
            Ok(m) => Ok(Some(m)),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Ok(None),
        }
    }

    fn mark_ready(&self) {
        if !self.shared.ready.swap(true, Ordering::SeqCst) {
            let _ = self.sup.send(Supervise::Ready);
        }
    }

    /// Rank 0: schedule the requests (see [`head`]).
    fn head(&mut self, mut stage: Box<dyn Stage>, tok: Arc<dyn Tokenizer>) -> Result<(), Fault> {
        if self.world == 1 {
            self.mark_ready();
        } else {
            self.send(Frame::Ready { seq: 0 });
        }
        if (stage.n_seq_max() as usize) < self.parallel {
            return Err(self.engine_err(EngineError::Context {
                path: PathBuf::from("(engine)"),
                reason: format!(
                    "the KV cache holds {} sequences, but {} requests are to run at once",
                    stage.n_seq_max(),
                    self.parallel
                ),
            }));
        }
        head::Head::new(self, &mut *stage, tok).run()
    }

    /// Ranks 1..n: run each batch from upstream and pass it on; the last
    /// rank samples the spans that ask for a token, each with its request's
    /// sampler, and answers every batch with its tokens. Operations that
    /// only change state (start, kv, end) stop at the last rank.
    fn tail(&mut self, mut stage: Box<dyn Stage>, tok: &dyn Tokenizer) -> Result<(), Fault> {
        let n_embd = stage.n_embd();
        let last = stage.is_last();
        let mut samplers: HashMap<u64, Sampler> = HashMap::new();
        loop {
            let f = match self.recv()? {
                EngineMsg::Frame(f) => f,
                _ => continue,
            };
            match f {
                Frame::Start { req, params } => {
                    if last {
                        samplers.insert(req, sampler_for(&params, tok, self.rank));
                    } else {
                        self.send(Frame::Start { req, params });
                    }
                }
                Frame::End { req } => {
                    if last {
                        samplers.remove(&req);
                    } else {
                        self.send(Frame::End { req });
                    }
                }
                Frame::Kv { slot, op } => {
                    let KvOp::Truncate { from } = op;
                    stage
                        .truncate_seq(slot, from)
                        .map_err(|e| self.engine_err(e))?;
                    if !last {
                        self.send(Frame::Kv { slot, op });
                    }
                }
                Frame::Ready { seq } => self.send(Frame::Ready { seq }),
                Frame::Batch { id, spans, rows } => {
                    let n_tokens: usize = spans.iter().map(|s| s.n_tokens as usize).sum();
                    if rows.len() != n_tokens * n_embd {
                        return Err(self.protocol(format!(
                            "batch of {} values for {n_tokens} rows of width {n_embd}",
                            rows.len()
                        )));
                    }
                    let seq_spans: Vec<SeqSpan> = spans
                        .iter()
                        .map(|s| SeqSpan {
                            seq: s.slot,
                            pos0: s.pos0,
                            n_tokens: s.n_tokens,
                            logits: s.sample,
                        })
                        .collect();
                    let input = StageInput::Hidden {
                        data: &rows,
                        n_tokens,
                    };
                    let out = self.forward(&mut *stage, &seq_spans, input)?;
                    match out {
                        BatchOutput::Hidden(rows) => self.send(Frame::Batch { id, spans, rows }),
                        BatchOutput::Logits(logits) => {
                            let tokens = spans
                                .iter()
                                .filter(|s| s.sample)
                                .zip(logits)
                                // A request that ended meanwhile has no sampler.
                                .filter_map(|(s, logits)| {
                                    samplers.get_mut(&s.req).map(|sm| {
                                        let t = sm.next(&logits);
                                        Sampled {
                                            req: s.req,
                                            pos: s.pos0 + s.n_tokens,
                                            token: t.token,
                                            logprobs: t.logprobs,
                                        }
                                    })
                                })
                                .collect();
                            self.send(Frame::Tokens { id, tokens });
                        }
                    }
                }
                other => {
                    return Err(self.protocol(format!(
                        "rank {} received a `{}` frame",
                        self.rank,
                        other.kind_name()
                    )))
                }
            }
        }
    }
}
