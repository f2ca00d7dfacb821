//! The rank's async main loop: binds the API, starts the engine thread,
//! forms the ring while the engine loads, watches it until it stops or
//! fails, and winds down in order.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::api::{self, ApiConfig, ApiError, RankMetrics};
use crate::ring::{self, Frame, RingConfig, RingError, RingEvent, RingSender};

use super::{
    log, Control, EngineMsg, EngineThread, Inbox, Loader, RankBackend, RankError, RankSettings,
    Shared, DEFAULT_CHUNK, FLUSH_LIMIT,
};

/// Messages to the supervisor (the rank's async main loop).
pub(super) enum Supervise {
    Loaded,
    Ready,
    EngineFailed(RankError),
    RingFailed(RingError),
    /// Shutdown and abort frames, handled here rather than on the engine thread.
    Frame(Frame),
}

pub(super) struct Rank {
    pub(super) s: RankSettings,
    pub(super) control: Control,
    pub(super) engine_tx: std_mpsc::Sender<EngineMsg>,
    pub(super) sup_rx: mpsc::UnboundedReceiver<Supervise>,
    pub(super) sup_tx: mpsc::UnboundedSender<Supervise>,
    pub(super) shared: Arc<Shared>,
    pub(super) engine_done: std_mpsc::Receiver<()>,
    pub(super) api_stop: Arc<Notify>,
    pub(super) api_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Rank {
    pub(super) async fn run(
        s: RankSettings,
        loader: Loader,
        control: Control,
    ) -> Result<(), RankError> {
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
    pub(super) async fn supervise(&mut self) -> Result<(), RankError> {
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
    pub(super) async fn abort_ring(&mut self, sender: &RingSender, e: &RankError) {
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
    pub(super) async fn wind_down(&mut self, result: &Result<(), RankError>) {
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
