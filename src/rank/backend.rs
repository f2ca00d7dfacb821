//! Rank 0's API backend: admits requests (up to `parallel` running and
//! `queue_capacity` waiting), hands them to the engine thread, and ends
//! every request's stream with the rank's failure when it fails.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, watch};

use crate::api::{
    self, ApiError, Backend, Event, EventStream, Health, RankMetrics, ValidGeneration,
};
use crate::engine::Tokenizer;

use super::{EngineMsg, STREAM_BUFFER_EVENTS};

pub(super) struct Job {
    pub(super) generation: ValidGeneration,
    pub(super) events: mpsc::Sender<Event>,
    /// Counts the request as running or waiting until it is dropped.
    pub(super) _ticket: Ticket,
}

/// One request counted in [`Shared::active`], from `submit` until its job
/// is dropped (finished, cancelled, refused or lost with the engine).
pub(super) struct Ticket(Arc<Shared>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// State shared by rank 0's API backend, engine thread and supervisor.
pub(super) struct Shared {
    pub(super) ready: AtomicBool,
    pub(super) failed: watch::Sender<Option<ApiError>>,
    pub(super) tokenizer: OnceLock<Arc<dyn Tokenizer>>,
    /// Requests submitted and not yet over: running or waiting.
    pub(super) active: AtomicUsize,
    /// Requests admitted to the ring now, and when the oldest of them was
    /// (`/health` reports both; rank 0's scheduler keeps them current).
    pub(super) running: Mutex<(usize, Option<std::time::Instant>)>,
    /// This rank's measurements (served on `/metrics`).
    pub(super) metrics: Arc<RankMetrics>,
}

pub(super) struct RankBackend {
    pub(super) shared: Arc<Shared>,
    pub(super) engine: std_mpsc::Sender<EngineMsg>,
    pub(super) parallel: usize,
    /// Requests that may wait behind the `parallel` running ones.
    pub(super) capacity: usize,
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
pub(super) fn with_failure(
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
