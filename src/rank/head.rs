//! Rank 0's scheduler: continuous batching of up to `parallel` requests,
//! cut into micro-batches that follow each other through the ring.
//!
//! Every request admitted holds a *slot*: one llama.cpp sequence id, the
//! same on every rank. Each step takes the running sequences that have a
//! token to feed (the one just sampled) and a bounded chunk of a prompt,
//! runs rank 0's layers on them as one batch and sends the rows on; the
//! last rank samples every sequence that asked for a token with that
//! request's own sampler (its grammar and log-probabilities included) and
//! sends the tokens back. A new request joins at
//! the next step; a finished or cancelled one leaves at once (its slot's
//! cache stays, as a prefix the next request can reuse). With several ranks,
//! rank 0 keeps up to `max_in_flight` micro-batches in the ring, each with
//! about `running / max_in_flight` of the decoding sequences, so that while
//! rank k runs one, rank k + 1 runs the one before.
//!
//! Invariants guarded here:
//! - Every rank applies the same operations in the same order: only rank 0
//!   issues them (start, kv, batch, end) and the ring is first in, first
//!   out. So what a slot holds on every rank, once the ring drains, is what
//!   rank 0 fed it: [`Slot::cached`].
//! - A sequence waiting for its sampled token is in no new batch (decoding
//!   depends on it); prompt chunks of one sequence may be in several.
//! - The cells all slots hold never exceed the KV pool (`Stage::n_ctx`,
//!   shared by every sequence): idle slots' caches are dropped first, least
//!   recently used first; if running sequences still need room, the newest
//!   one is paused (its slot freed) and resumes, its tokens recomputed where
//!   its cache was dropped, when room is back. A request is never cut short
//!   because others share the pool.
//! - Tokens come back in the order their batches went out; a token for a
//!   request that has ended is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::text::TextStream;
use super::{sampler_for, EngineMsg, EngineThread, Fault, Job, CANCEL_POLL};
use crate::api::types::{FinishReason, Usage};
use crate::api::{ApiError, Event};
use crate::engine::{BatchOutput, Sampler, SeqSpan, Stage, StageInput, Tokenizer, NO_TOKEN};
use crate::ring::{Frame, KvOp, Sampled, Span};

/// Prompt tokens one step takes while other sequences are decoding: a long
/// prompt joins in chunks of this size, so each running stream waits at
/// most one such chunk's compute for its next token (SmolLM2 on 2 CPU
/// cores: about 0.2 s), while a prompt alone goes in full batches.
pub const PREFILL_CHUNK_WHILE_DECODING: usize = 64;

/// Queries in one tile of ggml's CPU flash attention (`GGML_FA_TILE_Q` in
/// the vendored `ggml-cpu/common.h`); a batch of this many rows or more
/// takes the tiled path. A tile skips the KV cells of a block only when
/// every query in it is masked there, which a batch mixing the decode tokens
/// of several sequences never is (their cells interleave in the shared
/// pool): such a tile computes attention over every cell of the pool.
/// Below a tile, each query visits only its own sequence's cells.
pub const ATTENTION_QUERY_TILE: usize = 64;

/// Prompt tokens a step that also decodes takes, beside `decoding` decode
/// tokens: at most [`PREFILL_CHUNK_WHILE_DECODING`], and few enough that
/// the step stays below one [`ATTENTION_QUERY_TILE`] while it can. With 8
/// clients on SmolLM2 (2 cores) this cut the CPU time per token from 27.6
/// to 23.8 ms (`scripts/bench-load`, CPU ms/token).
pub fn prefill_chunk_while_decoding(decoding: usize) -> usize {
    match ATTENTION_QUERY_TILE.checked_sub(decoding + 1) {
        Some(room) if room > 0 => room.min(PREFILL_CHUNK_WHILE_DECODING),
        // Decode tokens alone fill a tile: the step is tiled anyway.
        _ => PREFILL_CHUNK_WHILE_DECODING,
    }
}

/// Steps of decoding reserved per running sequence when a request is
/// admitted: it starts only if the pool holds its prompt and this many more
/// tokens for each sequence already running, so that admitting it does not
/// at once pause another.
const ADMIT_HEADROOM_STEPS: usize = 16;

/// One KV-cache sequence.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Tokens whose keys and values the sequence holds, at positions
    /// `0..cached.len()` (on every rank once the ring drains).
    pub cached: Vec<i32>,
    /// The request using it.
    pub owner: Option<u64>,
    /// When it was last released, for least-recently-used choices.
    pub released: u64,
}

/// The slots and the pool of cells they share.
#[derive(Debug)]
pub(super) struct Slots {
    pub slots: Vec<Slot>,
    /// Cells of the pool.
    pub pool: usize,
    clock: u64,
}

impl Slots {
    pub fn new(parallel: usize, pool: usize) -> Slots {
        Slots {
            slots: (0..parallel).map(|_| Slot::default()).collect(),
            pool,
            clock: 0,
        }
    }

    pub fn used(&self) -> usize {
        self.slots.iter().map(|s| s.cached.len()).sum()
    }

    /// Cells used by slots that a request holds.
    pub fn owned_used(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.owner.is_some())
            .map(|s| s.cached.len())
            .sum()
    }

    pub fn free(&self) -> usize {
        self.pool.saturating_sub(self.used())
    }

    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(|s| s.owner.is_none())
    }

    /// The free slot for a request whose sequence is `tokens`, and how many
    /// of its tokens that slot's cache already holds: the longest common
    /// prefix (when `reuse`), then the least recently released. At least
    /// the last token is always computed again, for its logits.
    pub fn choose(&self, tokens: &[i32], reuse: bool) -> Option<(usize, usize)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.owner.is_none())
            .map(|(i, s)| {
                let common = if reuse {
                    common_prefix(&s.cached, tokens).min(tokens.len().saturating_sub(1))
                } else {
                    0
                };
                (i, common, s.released)
            })
            // Longest prefix first, then the oldest release, then the lowest id.
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)).then(b.0.cmp(&a.0)))
            .map(|(i, common, _)| (i, common))
    }

    /// The idle slot to empty first to make room: the least recently
    /// released one that holds anything.
    pub fn eviction(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.owner.is_none() && !s.cached.is_empty())
            .min_by_key(|(i, s)| (s.released, *i))
            .map(|(i, _)| i)
    }

    pub fn release(&mut self, slot: usize) {
        self.clock += 1;
        self.slots[slot].owner = None;
        self.slots[slot].released = self.clock;
    }
}

/// Length of the longest common prefix of `a` and `b`.
pub(super) fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A request admitted to the ring.
struct Seq {
    req: u64,
    /// `None` while paused for room.
    slot: Option<usize>,
    job: Job,
    /// The prompt, then every generated token still to be fed.
    tokens: Vec<i32>,
    /// Tokens of `tokens` the slot holds (positions `0..fed`).
    fed: usize,
    /// A token was asked for and has not come back yet.
    awaiting: bool,
    /// Micro-batches holding some of its tokens that have not come back.
    in_flight: usize,
    /// Id of the last batch it was in (fairness: the longest waiting goes first).
    last_batch: u64,
    text: TextStream,
    generated: u32,
    /// Prompt tokens taken from a cache when it was admitted.
    cached: u32,
    /// When it was admitted (`/health` reports the oldest's age).
    admitted: std::time::Instant,
}

impl Seq {
    fn remaining(&self) -> usize {
        self.tokens.len() - self.fed
    }

    fn ready(&self) -> bool {
        self.slot.is_some() && !self.awaiting && self.remaining() > 0
    }
}

/// A micro-batch in the ring.
struct InFlight {
    id: u64,
    reqs: Vec<u64>,
}

/// A micro-batch about to run: its spans and their tokens in span order.
struct Planned {
    spans: Vec<Span>,
    tokens: Vec<i32>,
}

pub(super) struct Head<'a> {
    t: &'a mut EngineThread,
    stage: &'a mut dyn Stage,
    tok: Arc<dyn Tokenizer>,
    local: bool,
    slots: Slots,
    reuse: bool,
    /// Tokens per micro-batch (one llama.cpp decode on every rank).
    max_batch: usize,
    max_in_flight: usize,
    /// Requests not admitted yet, in arrival order.
    waiting: VecDeque<Job>,
    /// Admitted requests, in admission order (paused ones included).
    seqs: Vec<Seq>,
    in_flight: VecDeque<InFlight>,
    /// One process: the samplers (the last rank keeps them otherwise).
    samplers: HashMap<u64, Sampler>,
    next_req: u64,
    next_batch: u64,
}

impl<'a> Head<'a> {
    pub fn new(
        t: &'a mut EngineThread,
        stage: &'a mut dyn Stage,
        tok: Arc<dyn Tokenizer>,
    ) -> Head<'a> {
        let local = t.world == 1;
        let (parallel, chunk, micro_batches) = (t.parallel.max(1), t.chunk, t.micro_batches);
        let pool = stage.n_ctx() as usize;
        let reuse = stage.reuses_prefixes();
        let max_batch = chunk.min(stage.max_batch()).max(1);
        let max_in_flight = if local {
            1
        } else if micro_batches == 0 {
            t.world as usize
        } else {
            micro_batches
        };
        let waiting = std::mem::take(&mut t.inbox.jobs);
        Head {
            t,
            stage,
            tok,
            local,
            slots: Slots::new(parallel, pool),
            reuse,
            max_batch,
            max_in_flight,
            waiting,
            seqs: Vec::new(),
            in_flight: VecDeque::new(),
            samplers: HashMap::new(),
            next_req: 0,
            next_batch: 0,
        }
    }

    /// Serve until the rank stops or fails; on a failure every admitted
    /// request hears why.
    pub fn run(&mut self) -> Result<(), Fault> {
        let result = self.serve();
        if let Err(Fault::Fatal(e)) = &result {
            for s in &self.seqs {
                let _ = s
                    .job
                    .events
                    .try_send(Event::Error(ApiError::Internal(e.to_string())));
            }
        }
        result
    }

    fn serve(&mut self) -> Result<(), Fault> {
        loop {
            while let Some(msg) = self.t.try_recv()? {
                self.take(msg)?;
            }
            self.drop_cancelled();
            self.admit()?;
            let mut sent = false;
            while self.in_flight.len() < self.max_in_flight {
                let Some(batch) = self.plan()? else { break };
                self.run_batch(batch)?;
                sent = true;
                if self.local {
                    // One step per turn: requests that arrived meanwhile
                    // join the next step.
                    break;
                }
            }
            if sent {
                continue;
            }
            let busy = !self.seqs.is_empty() || !self.waiting.is_empty();
            let msg = if busy {
                self.t.recv_timeout(CANCEL_POLL)?
            } else {
                Some(self.t.recv()?)
            };
            if let Some(msg) = msg {
                self.take(msg)?;
            }
        }
    }

    fn take(&mut self, msg: EngineMsg) -> Result<(), Fault> {
        match msg {
            EngineMsg::Job(job) => self.waiting.push_back(job),
            EngineMsg::Frame(f) => self.frame(f)?,
            EngineMsg::RingUp(_) => {}
            EngineMsg::Stop => return Err(Fault::Stopped),
        }
        Ok(())
    }

    fn frame(&mut self, f: Frame) -> Result<(), Fault> {
        match f {
            Frame::Ready { .. } => self.t.mark_ready(),
            Frame::Tokens { id, tokens } => {
                let Some(batch) = self.in_flight.pop_front() else {
                    return Err(self.t.protocol(format!(
                        "tokens for batch `{id}`, but no batch is in the ring"
                    )));
                };
                if batch.id != id {
                    return Err(self.t.protocol(format!(
                        "tokens for batch `{id}` arrived, expected batch `{}`",
                        batch.id
                    )));
                }
                for req in batch.reqs {
                    if let Some(s) = self.seqs.iter_mut().find(|s| s.req == req) {
                        s.in_flight -= 1;
                    }
                }
                for t in tokens {
                    self.token(t)?;
                }
            }
            other => {
                return Err(self
                    .t
                    .protocol(format!("rank 0 received a `{}` frame", other.kind_name())))
            }
        }
        Ok(())
    }

    /// Requests whose client went away: waiting ones leave the queue,
    /// running ones end at once.
    fn drop_cancelled(&mut self) {
        self.waiting.retain(|j| !j.events.is_closed());
        let gone: Vec<u64> = self
            .seqs
            .iter()
            .filter(|s| s.job.events.is_closed())
            .map(|s| s.req)
            .collect();
        for req in gone {
            self.end(req);
        }
    }

    /// Give free slots to paused requests first, then to waiting ones in
    /// arrival order, while the pool has room for them.
    fn admit(&mut self) -> Result<(), Fault> {
        while self.slots.has_free_slot() {
            let paused = self.seqs.iter().position(|s| s.slot.is_none());
            let tokens: &[i32] = match paused {
                Some(i) => &self.seqs[i].tokens,
                None => match self.waiting.front() {
                    Some(j) => &j.generation.prompt,
                    None => return Ok(()),
                },
            };
            let (slot, keep) = self
                .slots
                .choose(tokens, self.reuse)
                .expect("a free slot exists");
            let running = self.seqs.iter().filter(|s| s.slot.is_some()).count();
            let room = self.slots.pool.saturating_sub(self.slots.owned_used());
            if tokens.len() + running * ADMIT_HEADROOM_STEPS > room && running > 0 {
                return Ok(());
            }
            self.truncate(slot, keep)?;
            let req = match paused {
                Some(i) => {
                    let s = &mut self.seqs[i];
                    s.slot = Some(slot);
                    s.fed = keep;
                    s.req
                }
                None => {
                    let job = self.waiting.pop_front().expect("checked above");
                    self.start(job, slot, keep)
                }
            };
            self.slots.slots[slot].owner = Some(req);
        }
        Ok(())
    }

    /// A new request in `slot`, whose cache holds its first `keep` tokens.
    fn start(&mut self, job: Job, slot: usize, keep: usize) -> u64 {
        self.next_req += 1;
        let req = self.next_req;
        let params = job.generation.params.clone();
        if self.local {
            self.samplers
                .insert(req, sampler_for(&params, &*self.tok, self.t.rank));
        } else {
            self.t.send(Frame::Start { req, params });
        }
        self.seqs.push(Seq {
            req,
            slot: Some(slot),
            tokens: job.generation.prompt.clone(),
            fed: keep,
            awaiting: false,
            in_flight: 0,
            last_batch: 0,
            text: TextStream::new(job.generation.stop.clone()),
            generated: 0,
            cached: keep as u32,
            admitted: std::time::Instant::now(),
            job,
        });
        self.publish_load();
        req
    }

    /// Cut `slot` to its first `keep` tokens on every rank.
    fn truncate(&mut self, slot: usize, keep: usize) -> Result<(), Fault> {
        if keep >= self.slots.slots[slot].cached.len() {
            return Ok(());
        }
        if !self.local {
            self.t.send(Frame::Kv {
                slot: slot as u32,
                op: KvOp::Truncate { from: keep as u32 },
            });
        }
        self.stage
            .truncate_seq(slot as u32, keep as u32)
            .map_err(|e| self.t.engine_err(e))?;
        self.slots.slots[slot].cached.truncate(keep);
        Ok(())
    }

    /// The next micro-batch, or `None` when nothing can run now.
    fn plan(&mut self) -> Result<Option<Planned>, Fault> {
        loop {
            let Some(batch) = self.pick() else {
                return Ok(None);
            };
            let need = batch.tokens.len();
            if need <= self.slots.free() {
                return Ok(Some(batch));
            }
            // Room: idle caches first, then pause the newest sequence that
            // has nothing in the ring; then plan again.
            if let Some(slot) = self.slots.eviction() {
                self.truncate(slot, 0)?;
                continue;
            }
            let victim = self
                .seqs
                .iter()
                .rposition(|s| s.slot.is_some() && s.in_flight == 0 && !s.awaiting);
            match victim {
                Some(i) if self.seqs.iter().filter(|s| s.slot.is_some()).count() > 1 => {
                    let slot = self.seqs[i].slot.take().expect("checked");
                    self.seqs[i].fed = 0;
                    self.slots.release(slot);
                }
                // Everything else is in the ring: what fits goes now.
                _ => return Ok(self.fit(batch)),
            }
        }
    }

    /// The spans of `batch` that fit the free cells, decoding sequences first.
    fn fit(&self, batch: Planned) -> Option<Planned> {
        let mut free = self.slots.free();
        let mut out = Planned {
            spans: Vec::new(),
            tokens: Vec::new(),
        };
        let mut at = 0;
        for span in batch.spans {
            let n = span.n_tokens as usize;
            if n <= free {
                out.tokens.extend_from_slice(&batch.tokens[at..at + n]);
                out.spans.push(span);
                free -= n;
            }
            at += n;
        }
        (!out.spans.is_empty()).then_some(out)
    }

    /// Choose a micro-batch: decoding sequences (those with one token to
    /// feed), at most their share of the pipeline, longest waiting first;
    /// then prompt chunks, in admission order, within the batch's tokens.
    fn pick(&self) -> Option<Planned> {
        let running = self.seqs.iter().filter(|s| s.slot.is_some()).count();
        let share = running.div_ceil(self.max_in_flight).max(1);
        let mut decode: Vec<&Seq> = self
            .seqs
            .iter()
            .filter(|s| s.ready() && s.remaining() == 1)
            .collect();
        decode.sort_by_key(|s| s.last_batch);
        decode.truncate(share.min(self.max_batch));
        // Sequences past their prompt (or waiting for its first token).
        let decoding = self
            .seqs
            .iter()
            .any(|s| s.slot.is_some() && (s.awaiting || s.remaining() <= 1));
        let mut budget = self.max_batch - decode.len();
        if decoding || !decode.is_empty() {
            budget = budget.min(prefill_chunk_while_decoding(decode.len()));
        }
        let mut spans = Vec::new();
        let mut tokens = Vec::new();
        let mut add = |s: &Seq, n: usize| {
            spans.push(Span {
                req: s.req,
                slot: s.slot.expect("ready sequences hold a slot") as u32,
                pos0: s.fed as u32,
                n_tokens: n as u32,
                sample: s.fed + n == s.tokens.len(),
            });
            tokens.extend_from_slice(&s.tokens[s.fed..s.fed + n]);
        };
        for s in &decode {
            add(s, 1);
        }
        for s in self.seqs.iter().filter(|s| s.ready() && s.remaining() > 1) {
            if budget == 0 {
                break;
            }
            let n = s.remaining().min(budget);
            add(s, n);
            budget -= n;
        }
        (!spans.is_empty()).then_some(Planned { spans, tokens })
    }

    fn run_batch(&mut self, batch: Planned) -> Result<(), Fault> {
        self.next_batch += 1;
        let id = self.next_batch;
        let spans: Vec<SeqSpan> = batch
            .spans
            .iter()
            .map(|s| SeqSpan {
                seq: s.slot,
                pos0: s.pos0,
                n_tokens: s.n_tokens,
                logits: s.sample,
            })
            .collect();
        let out = self
            .t
            .forward(self.stage, &spans, StageInput::Tokens(&batch.tokens))?;
        let mut at = 0;
        for span in &batch.spans {
            let n = span.n_tokens as usize;
            let s = self
                .seqs
                .iter_mut()
                .find(|s| s.req == span.req)
                .expect("planned from the running sequences");
            s.fed += n;
            s.awaiting |= span.sample;
            s.last_batch = id;
            if !self.local {
                s.in_flight += 1;
            }
            self.slots.slots[span.slot as usize]
                .cached
                .extend_from_slice(&batch.tokens[at..at + n]);
            at += n;
        }
        match out {
            BatchOutput::Hidden(rows) => {
                let reqs = batch.spans.iter().map(|s| s.req).collect();
                self.t.send(Frame::Batch {
                    id,
                    spans: batch.spans,
                    rows,
                });
                self.in_flight.push_back(InFlight { id, reqs });
            }
            BatchOutput::Logits(rows) => {
                let sampled: Vec<Sampled> = batch
                    .spans
                    .iter()
                    .filter(|s| s.sample)
                    .zip(rows)
                    .map(|(span, logits)| {
                        let t = self
                            .samplers
                            .get_mut(&span.req)
                            .expect("a sampler per running request")
                            .next(&logits);
                        Sampled {
                            req: span.req,
                            pos: span.pos0 + span.n_tokens,
                            token: t.token,
                            logprobs: t.logprobs,
                        }
                    })
                    .collect();
                for t in sampled {
                    self.token(t)?;
                }
            }
        }
        Ok(())
    }

    /// A sampled token: stream its log-probabilities and text, then end the
    /// request or queue the token to be fed.
    fn token(&mut self, t: Sampled) -> Result<(), Fault> {
        let Some(i) = self.seqs.iter().position(|s| s.req == t.req) else {
            // A request that ended while its batch was in the ring.
            return Ok(());
        };
        let s = &mut self.seqs[i];
        if !s.awaiting || t.pos as usize != s.tokens.len() {
            return Err(self.t.protocol(format!(
                "token for position `{}` of request `{}` arrived, expected position `{}`",
                t.pos,
                t.req,
                s.tokens.len()
            )));
        }
        s.awaiting = false;
        let req = s.req;
        if t.token == NO_TOKEN {
            // The grammar allowed no token: end the request, not the ring.
            let _ = s.job.events.try_send(Event::Error(ApiError::Internal(
                "the request's grammar allows no next token".into(),
            )));
            self.end(req);
            return Ok(());
        }
        if self.tok.is_eog(t.token) {
            self.finish(i, FinishReason::Stop);
            return Ok(());
        }
        s.generated += 1;
        // Client gone, or too slow (the receiver then sees the stream end
        // without a result): the request ends.
        if let Some(lp) = t.logprobs {
            if s.job.events.try_send(Event::Logprobs(lp)).is_err() {
                self.end(req);
                return Ok(());
            }
        }
        // The answer's parser reads markers written as control tokens.
        let bytes = if s.job.generation.render_special {
            self.tok.token_to_piece_special(t.token)
        } else {
            self.tok.token_to_piece(t.token)
        };
        let (piece, stopped) = s.text.push(&bytes);
        if !piece.is_empty() && s.job.events.try_send(Event::Text(piece)).is_err() {
            self.end(req);
            return Ok(());
        }
        if let Some(stop) = stopped {
            if s.job.events.try_send(Event::StopSequence(stop)).is_err() {
                self.end(req);
                return Ok(());
            }
            self.finish(i, FinishReason::Stop);
        } else if s.generated >= s.job.generation.max_tokens || t.pos + 1 >= self.stage.n_ctx() {
            self.finish(i, FinishReason::Length);
        } else {
            s.tokens.push(t.token);
        }
        Ok(())
    }

    /// Request `i` is complete: the rest of its text, its result, its end.
    fn finish(&mut self, i: usize, finish: FinishReason) {
        let s = &mut self.seqs[i];
        let rest = s.text.finish();
        // Text held back as a possible stop string's start (empty after a
        // stop string, which clears it). A full or closed channel ends the
        // request without a result, as a cancellation.
        let events = &s.job.events;
        if rest.is_empty() || events.try_send(Event::Text(rest)).is_ok() {
            let usage = Usage::new(s.job.generation.prompt.len() as u32, s.cached, s.generated);
            let _ = events.try_send(Event::Done { finish, usage });
        }
        let req = s.req;
        self.end(req);
    }

    /// Request `req` leaves: its sampler goes, its slot is free (the cache
    /// stays for the next request that shares its prefix).
    fn end(&mut self, req: u64) {
        let Some(i) = self.seqs.iter().position(|s| s.req == req) else {
            return;
        };
        let s = self.seqs.remove(i);
        if self.local {
            self.samplers.remove(&req);
        } else {
            self.t.send(Frame::End { req });
        }
        if let Some(slot) = s.slot {
            self.slots.release(slot);
        }
        self.publish_load();
    }

    /// Tell `/health` how many requests run and since when the oldest has.
    fn publish_load(&self) {
        let oldest = self.seqs.iter().map(|s| s.admitted).min();
        *self.t.shared.running.lock().unwrap() = (self.seqs.len(), oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(caches: &[&[i32]]) -> Slots {
        let mut s = Slots::new(caches.len(), 100);
        for (slot, cache) in s.slots.iter_mut().zip(caches) {
            slot.cached = cache.to_vec();
        }
        s
    }

    #[test]
    fn a_request_gets_the_free_slot_with_the_longest_shared_prefix() {
        let mut s = slots(&[&[1, 2], &[1, 2, 3, 4], &[9]]);
        assert_eq!(s.choose(&[1, 2, 3, 7], true), Some((1, 3)));
        // Without prefix reuse, the least recently released (all 0: lowest id).
        assert_eq!(s.choose(&[1, 2, 3, 7], false), Some((0, 0)));
        // Busy slots are not chosen.
        s.slots[1].owner = Some(5);
        assert_eq!(s.choose(&[1, 2, 3, 7], true), Some((0, 2)));
        // The last prompt token is always computed again.
        assert_eq!(s.choose(&[1, 2], true), Some((0, 1)));
        s.slots[0].owner = Some(6);
        s.slots[2].owner = Some(7);
        assert_eq!(s.choose(&[1], true), None);
    }

    #[test]
    fn a_step_that_decodes_stays_below_one_attention_tile_while_it_can() {
        assert_eq!(prefill_chunk_while_decoding(0), 63);
        assert_eq!(prefill_chunk_while_decoding(8), 55);
        assert_eq!(prefill_chunk_while_decoding(62), 1);
        for decoding in 0..63 {
            let chunk = prefill_chunk_while_decoding(decoding);
            assert!(chunk >= 1 && decoding + chunk < ATTENTION_QUERY_TILE);
        }
        // Decode tokens that fill a tile by themselves: prompts still move.
        assert_eq!(
            prefill_chunk_while_decoding(63),
            PREFILL_CHUNK_WHILE_DECODING
        );
        assert_eq!(
            prefill_chunk_while_decoding(200),
            PREFILL_CHUNK_WHILE_DECODING
        );
    }

    #[test]
    fn ties_go_to_the_least_recently_released_slot() {
        let mut s = slots(&[&[], &[], &[]]);
        s.release(2);
        s.release(0);
        s.release(1);
        assert_eq!(s.choose(&[4, 5], true), Some((2, 0)));
        assert_eq!(s.eviction(), None, "empty caches are not evicted");
        s.slots[0].cached = vec![1];
        s.slots[1].cached = vec![1];
        assert_eq!(s.eviction(), Some(0));
        s.slots[0].owner = Some(1);
        assert_eq!(s.eviction(), Some(1));
        assert_eq!((s.used(), s.owned_used(), s.free()), (2, 1, 98));
    }
}
