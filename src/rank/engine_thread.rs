//! The engine thread: owns the stage, runs rank 0's scheduler (`head`) or
//! a middle or last rank's forward passes, and samples on the last rank.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::engine::{
    BatchOutput, Constraint, EngineError, Sampler, SamplingParams, SeqSpan, Stage, StageInput,
    Tokenizer,
};
use crate::ring::{Frame, KvOp, RingSender, Sampled};

use super::{head, log, Job, Loaded, Loader, RankError, Shared, Supervise};

/// Messages to the engine thread.
pub(super) enum EngineMsg {
    /// The ring is formed; frames may be sent.
    RingUp(RingSender),
    Frame(Frame),
    Job(Job),
    Stop,
}

/// The engine thread's mailbox, with what arrived out of turn set aside.
pub(super) struct Inbox {
    pub(super) rx: std_mpsc::Receiver<EngineMsg>,
    /// Frames that came before the ring sender.
    pub(super) frames: VecDeque<Frame>,
    /// Requests that came before the ring sender.
    pub(super) jobs: VecDeque<Job>,
}

/// The engine thread stops (without an error of its own).
pub(super) struct Stopped;

pub(super) enum Fault {
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
pub(super) fn sampler_for(params: &SamplingParams, tok: &dyn Tokenizer, rank: u32) -> Sampler {
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
pub(super) struct Nothing;

impl Constraint for Nothing {
    fn apply(&mut self, candidates: &mut [(i32, f32)]) {
        for c in candidates {
            c.1 = f32::NEG_INFINITY;
        }
    }

    fn accept(&mut self, _: i32) {}
}

pub(super) struct EngineThread {
    pub(super) rank: u32,
    pub(super) world: u32,
    /// Tokens per prompt chunk (the engine options' batch).
    pub(super) chunk: usize,
    /// Rank 0: micro-batches in the ring at once (0: one per rank).
    pub(super) micro_batches: usize,
    /// Requests served at once.
    pub(super) parallel: usize,
    pub(super) inbox: Inbox,
    pub(super) sup: mpsc::UnboundedSender<Supervise>,
    pub(super) shared: Arc<Shared>,
    pub(super) out: Option<RingSender>,
}

impl EngineThread {
    pub(super) fn main(mut self, loader: Loader) {
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

    pub(super) fn send(&self, f: Frame) {
        if let Some(out) = &self.out {
            out.send(f);
        }
    }

    /// One forward pass of this rank's layers over a batch, timed for
    /// `/metrics`.
    pub(super) fn forward(
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

    pub(super) fn engine_err(&self, source: EngineError) -> Fault {
        Fault::Fatal(RankError::Engine {
            rank: self.rank,
            source,
        })
    }

    pub(super) fn protocol(&self, what: String) -> Fault {
        Fault::Fatal(RankError::Protocol {
            rank: self.rank,
            what,
        })
    }

    /// Next message; frames set aside first.
    pub(super) fn recv(&mut self) -> Result<EngineMsg, Stopped> {
        if let Some(f) = self.inbox.frames.pop_front() {
            return Ok(EngineMsg::Frame(f));
        }
        match self.inbox.rx.recv() {
            Ok(EngineMsg::Stop) | Err(_) => Err(Stopped),
            Ok(m) => Ok(m),
        }
    }

    /// The next message if one is there.
    pub(super) fn try_recv(&mut self) -> Result<Option<EngineMsg>, Stopped> {
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
    pub(super) fn recv_timeout(&mut self, limit: Duration) -> Result<Option<EngineMsg>, Stopped> {
        if let Some(f) = self.inbox.frames.pop_front() {
            return Ok(Some(EngineMsg::Frame(f)));
        }
        match self.inbox.rx.recv_timeout(limit) {
            Ok(EngineMsg::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(Stopped),
            Ok(m) => Ok(Some(m)),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Ok(None),
        }
    }

    pub(super) fn mark_ready(&self) {
        if !self.shared.ready.swap(true, Ordering::SeqCst) {
            let _ = self.sup.send(Supervise::Ready);
        }
    }

    /// Rank 0: schedule the requests (see [`head`]).
    pub(super) fn head(
        &mut self,
        mut stage: Box<dyn Stage>,
        tok: Arc<dyn Tokenizer>,
    ) -> Result<(), Fault> {
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
    pub(super) fn tail(
        &mut self,
        mut stage: Box<dyn Stage>,
        tok: &dyn Tokenizer,
    ) -> Result<(), Fault> {
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
