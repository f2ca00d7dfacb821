//! Ring frames: the length-prefixed messages ranks exchange once the
//! handshake is done.
//!
//! Wire layout (all integers little-endian):
//!
//! ```text
//! u32 len                      bytes that follow (header + payload), <= MAX_FRAME_LEN
//! u8  kind   u8 flags   u16 0  header, HEADER_LEN bytes in all
//! u64 seq    u32 pos    u32 n
//! payload                      kind-specific, its length checked against `n`
//! ```
//!
//! A `batch` frame carries one micro-batch: `pos` spans ([`Span`],
//! [`SPAN_LEN`] bytes each: sequence slot, request, first position, token
//! count, whether to sample) and then the `n` rows of all spans in span
//! order. A `tokens` frame carries the last rank's answer to one batch: one
//! [`Sampled`] token ([`SAMPLED_LEN`] bytes) per span that asked for one,
//! possibly none (the answer still tells rank 0 that the batch left the
//! ring); with the logprobs flag, a section follows the tokens with each
//! one's log-probabilities, for the requests that asked for them. A `start`
//! frame carries a request's [`SamplingParams`] (settings, grammar,
//! log-probabilities) as JSON, so fields added to them travel without a new
//! layout. `ping` and `pong` probe a link's latency.
//!
//! Invariant guarded here: a decoded [`Frame`] is internally consistent (a
//! batch's spans add up to its rows and its payload holds exactly those rows
//! of whole values, a tokens frame its count of tokens, ...), and no length
//! read from the wire makes skulk allocate more than [`MAX_FRAME_LEN`] bytes.

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::engine::{SamplingParams, TokenLogprobs};

/// Bytes of the fixed header after the length prefix.
pub const HEADER_LEN: usize = 20;

/// Largest frame accepted or sent: 512 rows (one prefill chunk, llama.cpp's
/// default `n_ubatch`) of 32768 f32 values (twice the hidden size of the
/// largest current dense models, e.g. 16384 for Llama 3.1 405B) is 64 MiB.
pub const MAX_FRAME_LEN: u32 = 64 << 20;

/// Longest abort message carried on the wire; longer ones are cut.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Bytes of one span in a batch frame: u64 request, u32 slot, u32 first
/// position, u32 tokens, u8 flags, 3 bytes of padding.
pub const SPAN_LEN: usize = 24;

/// Bytes of one sampled token: u64 request, u32 position, i32 token.
pub const SAMPLED_LEN: usize = 16;

/// Rows of hidden state travel as f32 (exact) or f16 (half the bytes, not
/// bit-identical to a single process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    #[default]
    F32,
    F16,
}

/// A KV-cache operation on one sequence slot, applied by every rank in ring
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    /// Drop the slot's entries at positions `>= from`; `from = 0` empties it.
    Truncate { from: u32 },
}

/// One sequence's share of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The request these tokens belong to (the last rank's sampler).
    pub req: u64,
    /// The KV-cache sequence (llama.cpp `seq_id`) that holds it.
    pub slot: u32,
    /// Position of the span's first token in its sequence.
    pub pos0: u32,
    pub n_tokens: u32,
    /// The last rank samples a token from the span's last row.
    pub sample: bool,
}

/// A token the last rank sampled for request `req`, to be placed at
/// position `pos` of its sequence (`NO_TOKEN` when the request's grammar
/// allowed none), with its log-probabilities when the request asked for
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub req: u64,
    pub pos: u32,
    pub token: i32,
    pub logprobs: Option<TokenLogprobs>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Micro-batch `id`: the spans' rows of hidden state, concatenated in
    /// span order.
    Batch {
        id: u64,
        spans: Vec<Span>,
        rows: Vec<f32>,
    },
    /// The last rank's answer to batch `id`: the tokens sampled for its
    /// spans that asked for one.
    Tokens {
        id: u64,
        tokens: Vec<Sampled>,
    },
    /// A new request: the last rank makes its sampler from `params`
    /// (sampling settings, grammar, log-probabilities).
    Start {
        req: u64,
        params: SamplingParams,
    },
    /// A KV-cache operation on sequence slot `slot`.
    Kv {
        slot: u32,
        op: KvOp,
    },
    /// Rank 0 is done with request `req` (finished, cancelled, or gone); the
    /// last rank drops its sampler, and later tokens of it are dropped.
    End {
        req: u64,
    },
    /// Liveness only; sent on idle links in both directions.
    Heartbeat,
    /// A latency probe down a link, answered by [`Frame::Pong`] with the
    /// same `stamp` (the sender's clock; only the sender reads it).
    Ping {
        stamp: u64,
    },
    Pong {
        stamp: u64,
    },
    /// Goes once around the ring; rank 0 marks the ring ready when its probe
    /// comes back, so every rank has its engine loaded.
    Ready {
        seq: u64,
    },
    /// Orderly stop started by rank `origin`; every rank forwards it and exits 0.
    Shutdown {
        origin: u32,
    },
    /// Rank `rank` failed; every rank forwards it and exits non-zero.
    Abort {
        rank: u32,
        message: String,
    },
}

const KIND_BATCH: u8 = 1;
const KIND_TOKENS: u8 = 2;
const KIND_START: u8 = 3;
const KIND_KV: u8 = 4;
const KIND_END: u8 = 5;
const KIND_HEARTBEAT: u8 = 6;
const KIND_READY: u8 = 7;
const KIND_SHUTDOWN: u8 = 8;
const KIND_ABORT: u8 = 9;
const KIND_PING: u8 = 10;
const KIND_PONG: u8 = 11;

const FLAG_F16: u8 = 1;
/// A tokens frame carries a log-probabilities section after its tokens.
const FLAG_LOGPROBS: u8 = 2;

const SPAN_SAMPLE: u8 = 1;

const KV_TRUNCATE: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length `{0}` is outside {HEADER_LEN}..={MAX_FRAME_LEN} bytes")]
    BadLength(u32),
    #[error("unknown frame kind `{0}`")]
    UnknownKind(u8),
    #[error("malformed {kind} frame: {what}")]
    Malformed { kind: &'static str, what: String },
    #[error("frame to send is {0} bytes, more than the limit of {MAX_FRAME_LEN}")]
    TooLarge(usize),
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

impl Frame {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Frame::Batch { .. } => "batch",
            Frame::Tokens { .. } => "tokens",
            Frame::Start { .. } => "start",
            Frame::Kv { .. } => "kv",
            Frame::End { .. } => "end",
            Frame::Heartbeat => "heartbeat",
            Frame::Ping { .. } => "ping",
            Frame::Pong { .. } => "pong",
            Frame::Ready { .. } => "ready",
            Frame::Shutdown { .. } => "shutdown",
            Frame::Abort { .. } => "abort",
        }
    }

    /// The frame with its length prefix, ready to write.
    pub fn encode(&self, wire: WireFormat) -> Result<Vec<u8>, FrameError> {
        let mut flags = 0u8;
        let extra = match self {
            Frame::Start { params, .. } => {
                Some(serde_json::to_vec(params).expect("sampling parameters serialize"))
            }
            Frame::Tokens { tokens, .. } if tokens.iter().any(|t| t.logprobs.is_some()) => {
                flags |= FLAG_LOGPROBS;
                Some(logprobs_section(tokens))
            }
            _ => None,
        };
        let (kind, seq, pos, n, payload_len) = match self {
            Frame::Batch { id, spans, rows } => {
                let width = match wire {
                    WireFormat::F32 => 4,
                    WireFormat::F16 => {
                        flags |= FLAG_F16;
                        2
                    }
                };
                let n_tokens: u64 = spans.iter().map(|s| u64::from(s.n_tokens)).sum();
                (
                    KIND_BATCH,
                    *id,
                    spans.len() as u32,
                    n_tokens.min(u64::from(u32::MAX)) as u32,
                    spans.len() * SPAN_LEN + rows.len() * width,
                )
            }
            Frame::Tokens { id, tokens } => (
                KIND_TOKENS,
                *id,
                0,
                tokens.len() as u32,
                tokens.len() * SAMPLED_LEN + extra.as_ref().map_or(0, Vec::len),
            ),
            Frame::Start { req, .. } => {
                (KIND_START, *req, 0, 0, extra.as_ref().map_or(0, Vec::len))
            }
            Frame::Kv {
                slot,
                op: KvOp::Truncate { from },
            } => (KIND_KV, u64::from(*slot), *from, 0, 1),
            Frame::End { req } => (KIND_END, *req, 0, 0, 0),
            Frame::Heartbeat => (KIND_HEARTBEAT, 0, 0, 0, 0),
            Frame::Ping { stamp } => (KIND_PING, *stamp, 0, 0, 0),
            Frame::Pong { stamp } => (KIND_PONG, *stamp, 0, 0, 0),
            Frame::Ready { seq } => (KIND_READY, *seq, 0, 0, 0),
            Frame::Shutdown { origin } => (KIND_SHUTDOWN, 0, *origin, 0, 0),
            Frame::Abort { rank, message } => {
                (KIND_ABORT, 0, *rank, 0, message.len().min(MAX_MESSAGE_LEN))
            }
        };
        let len = HEADER_LEN + payload_len;
        if len > MAX_FRAME_LEN as usize {
            return Err(FrameError::TooLarge(len));
        }
        let mut out = Vec::with_capacity(4 + len);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&pos.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        match self {
            Frame::Batch { spans, rows, .. } => {
                for s in spans {
                    out.extend_from_slice(&s.req.to_le_bytes());
                    out.extend_from_slice(&s.slot.to_le_bytes());
                    out.extend_from_slice(&s.pos0.to_le_bytes());
                    out.extend_from_slice(&s.n_tokens.to_le_bytes());
                    out.push(if s.sample { SPAN_SAMPLE } else { 0 });
                    out.extend_from_slice(&[0; 3]);
                }
                match wire {
                    WireFormat::F32 => {
                        for v in rows {
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                    WireFormat::F16 => {
                        for v in rows {
                            out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                        }
                    }
                }
            }
            Frame::Tokens { tokens, .. } => {
                for t in tokens {
                    out.extend_from_slice(&t.req.to_le_bytes());
                    out.extend_from_slice(&t.pos.to_le_bytes());
                    out.extend_from_slice(&t.token.to_le_bytes());
                }
                out.extend_from_slice(extra.as_deref().unwrap_or(&[]));
            }
            Frame::Start { .. } => out.extend_from_slice(extra.as_deref().unwrap_or(&[])),
            Frame::Kv { .. } => out.push(KV_TRUNCATE),
            Frame::Abort { message, .. } => {
                out.extend_from_slice(&message.as_bytes()[..payload_len]);
            }
            _ => {}
        }
        debug_assert_eq!(out.len(), 4 + len);
        Ok(out)
    }

    /// Decode the bytes after the length prefix.
    pub fn decode(body: &[u8]) -> Result<Frame, FrameError> {
        if body.len() < HEADER_LEN || body.len() > MAX_FRAME_LEN as usize {
            return Err(FrameError::BadLength(body.len() as u32));
        }
        let kind = body[0];
        let flags = body[1];
        let seq = u64_at(body, 4);
        let pos = u32_at(body, 12);
        let n = u32_at(body, 16);
        let payload = &body[HEADER_LEN..];
        let malformed = |kind: &'static str, what: String| FrameError::Malformed { kind, what };
        let expect_len = |kind: &'static str, want: usize| {
            if payload.len() == want {
                Ok(())
            } else {
                Err(malformed(
                    kind,
                    format!("payload is {} bytes, expected {want}", payload.len()),
                ))
            }
        };
        Ok(match kind {
            KIND_BATCH => {
                let width = if flags & FLAG_F16 != 0 { 2 } else { 4 };
                let n_spans = pos as usize;
                if n_spans == 0 || n == 0 {
                    return Err(malformed("batch", "no spans or no rows".into()));
                }
                let head = n_spans
                    .checked_mul(SPAN_LEN)
                    .filter(|&h| h < payload.len())
                    .ok_or_else(|| {
                        malformed(
                            "batch",
                            format!("{n_spans} spans do not fit {} bytes", payload.len()),
                        )
                    })?;
                let mut spans = Vec::with_capacity(n_spans);
                let mut total = 0u64;
                for b in payload[..head].chunks_exact(SPAN_LEN) {
                    let span = Span {
                        req: u64_at(b, 0),
                        slot: u32_at(b, 8),
                        pos0: u32_at(b, 12),
                        n_tokens: u32_at(b, 16),
                        sample: b[20] & SPAN_SAMPLE != 0,
                    };
                    if span.n_tokens == 0 {
                        return Err(malformed("batch", "a span of zero tokens".into()));
                    }
                    total += u64::from(span.n_tokens);
                    spans.push(span);
                }
                if total != u64::from(n) {
                    return Err(malformed(
                        "batch",
                        format!("spans of {total} tokens in a batch of {n}"),
                    ));
                }
                let data = &payload[head..];
                if data.len() % (n as usize * width) != 0 {
                    return Err(malformed(
                        "batch",
                        format!(
                            "rows of {} bytes are not {n} rows of {width}-byte values",
                            data.len()
                        ),
                    ));
                }
                let rows = if width == 4 {
                    data.chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect()
                } else {
                    data.chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
                        .collect()
                };
                Frame::Batch {
                    id: seq,
                    spans,
                    rows,
                }
            }
            KIND_TOKENS => {
                let fixed = (n as usize)
                    .checked_mul(SAMPLED_LEN)
                    .filter(|&f| f <= payload.len())
                    .ok_or_else(|| {
                        malformed(
                            "tokens",
                            format!("{n} tokens do not fit {} bytes", payload.len()),
                        )
                    })?;
                if flags & FLAG_LOGPROBS == 0 {
                    expect_len("tokens", fixed)?;
                }
                let mut tokens: Vec<Sampled> = payload[..fixed]
                    .chunks_exact(SAMPLED_LEN)
                    .map(|b| Sampled {
                        req: u64_at(b, 0),
                        pos: u32_at(b, 8),
                        token: u32_at(b, 12) as i32,
                        logprobs: None,
                    })
                    .collect();
                if flags & FLAG_LOGPROBS != 0 {
                    read_logprobs_section(&payload[fixed..], &mut tokens)?;
                }
                Frame::Tokens { id: seq, tokens }
            }
            KIND_START => Frame::Start {
                req: seq,
                params: serde_json::from_slice(payload)
                    .map_err(|e| malformed("start", format!("sampling parameters: {e}")))?,
            },
            KIND_KV => {
                expect_len("kv", 1)?;
                let slot = u32::try_from(seq)
                    .map_err(|_| malformed("kv", format!("slot `{seq}` out of range")))?;
                match payload[0] {
                    KV_TRUNCATE => Frame::Kv {
                        slot,
                        op: KvOp::Truncate { from: pos },
                    },
                    op => return Err(malformed("kv", format!("unknown operation `{op}`"))),
                }
            }
            KIND_END => {
                expect_len("end", 0)?;
                Frame::End { req: seq }
            }
            KIND_HEARTBEAT => {
                expect_len("heartbeat", 0)?;
                Frame::Heartbeat
            }
            KIND_PING => {
                expect_len("ping", 0)?;
                Frame::Ping { stamp: seq }
            }
            KIND_PONG => {
                expect_len("pong", 0)?;
                Frame::Pong { stamp: seq }
            }
            KIND_READY => {
                expect_len("ready", 0)?;
                Frame::Ready { seq }
            }
            KIND_SHUTDOWN => {
                expect_len("shutdown", 0)?;
                Frame::Shutdown { origin: pos }
            }
            KIND_ABORT => {
                if payload.len() > MAX_MESSAGE_LEN {
                    return Err(malformed(
                        "abort",
                        format!("message of {} bytes", payload.len()),
                    ));
                }
                Frame::Abort {
                    rank: pos,
                    message: String::from_utf8_lossy(payload).into_owned(),
                }
            }
            other => return Err(FrameError::UnknownKind(other)),
        })
    }
}

/// Most top log-probabilities one token carries on the wire (the count is
/// a `u8`; the API allows at most `MAX_TOP_LOGPROBS`).
const MAX_WIRE_TOP: usize = u8::MAX as usize;

/// A tokens frame's log-probabilities section: per token, in token order, a
/// `u8` present flag, then (when present) the `f32` log-probability, a `u8`
/// count and that many `(i32 token, f32 log-probability)` pairs. The
/// token's own id is the sampled one and is not repeated.
fn logprobs_section(tokens: &[Sampled]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        match &t.logprobs {
            None => out.push(0),
            Some(lp) => {
                let top = &lp.top[..lp.top.len().min(MAX_WIRE_TOP)];
                out.push(1);
                out.extend_from_slice(&lp.logprob.to_le_bytes());
                out.push(top.len() as u8);
                for (id, l) in top {
                    out.extend_from_slice(&id.to_le_bytes());
                    out.extend_from_slice(&l.to_le_bytes());
                }
            }
        }
    }
    out
}

fn read_logprobs_section(mut b: &[u8], tokens: &mut [Sampled]) -> Result<(), FrameError> {
    let short = || FrameError::Malformed {
        kind: "tokens",
        what: "log-probabilities section ends early".into(),
    };
    let mut take = |n: usize| -> Result<&[u8], FrameError> {
        if b.len() < n {
            return Err(short());
        }
        let (head, rest) = b.split_at(n);
        b = rest;
        Ok(head)
    };
    for t in tokens.iter_mut() {
        if take(1)?[0] == 0 {
            continue;
        }
        let logprob = f32::from_le_bytes(take(4)?.try_into().unwrap());
        let count = take(1)?[0] as usize;
        let mut top = Vec::with_capacity(count);
        for _ in 0..count {
            let pair = take(8)?;
            top.push((
                i32::from_le_bytes(pair[..4].try_into().unwrap()),
                f32::from_le_bytes(pair[4..].try_into().unwrap()),
            ));
        }
        t.logprobs = Some(TokenLogprobs {
            token: t.token,
            logprob,
            top,
        });
    }
    if !b.is_empty() {
        return Err(FrameError::Malformed {
            kind: "tokens",
            what: format!("{} bytes after the log-probabilities", b.len()),
        });
    }
    Ok(())
}

impl fmt::Display for WireFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireFormat::F32 => "f32",
            WireFormat::F16 => "f16",
        })
    }
}

/// Read one frame; the length is checked before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len);
    if (len as usize) < HEADER_LEN || len > MAX_FRAME_LEN {
        return Err(FrameError::BadLength(len));
    }
    let mut body = vec![0u8; len as usize];
    match r.read_exact(&mut body).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    Frame::decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame, wire: WireFormat) -> Frame {
        let bytes = frame.encode(wire).unwrap();
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        Frame::decode(&bytes[4..]).unwrap()
    }

    fn span(req: u64, slot: u32, pos0: u32, n_tokens: u32, sample: bool) -> Span {
        Span {
            req,
            slot,
            pos0,
            n_tokens,
            sample,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let frames = vec![
            Frame::Batch {
                id: 7,
                spans: vec![span(3, 0, 12, 1, true), span(u64::MAX, 255, 0, 2, false)],
                rows: vec![1.5, -2.25, 3.0, f32::MIN_POSITIVE, 0.0, -0.0],
            },
            Frame::Tokens {
                id: u64::MAX,
                tokens: vec![
                    Sampled {
                        req: 3,
                        pos: 99,
                        token: -1,
                        logprobs: None,
                    },
                    Sampled {
                        req: 4,
                        pos: 0,
                        token: 49151,
                        logprobs: None,
                    },
                ],
            },
            // Only some tokens' requests asked for log-probabilities.
            Frame::Tokens {
                id: 2,
                tokens: vec![
                    Sampled {
                        req: 3,
                        pos: 7,
                        token: 42,
                        logprobs: Some(TokenLogprobs {
                            token: 42,
                            logprob: -0.25,
                            top: vec![(42, -0.25), (7, -1.5)],
                        }),
                    },
                    Sampled {
                        req: 4,
                        pos: 1,
                        token: 5,
                        logprobs: None,
                    },
                    Sampled {
                        req: 5,
                        pos: 9,
                        token: 6,
                        logprobs: Some(TokenLogprobs {
                            token: 6,
                            logprob: -3.0,
                            top: vec![],
                        }),
                    },
                ],
            },
            Frame::Tokens {
                id: 1,
                tokens: vec![],
            },
            Frame::Start {
                req: 3,
                params: SamplingParams {
                    temperature: 0.7,
                    top_p: 0.9,
                    top_k: 40,
                    seed: 0xdead_beef_0123,
                    ..SamplingParams::default()
                },
            },
            Frame::Start {
                req: 9,
                params: SamplingParams {
                    temperature: 0.0,
                    logprobs: Some(5),
                    grammar: Some(crate::engine::GrammarSpec {
                        gbnf: "root ::= \"é\"".into(),
                        triggers: vec!["[\\s\\S]*?(<tool_call>)[\\s\\S]*".into()],
                    }),
                    ..SamplingParams::default()
                },
            },
            Frame::Kv {
                slot: 4,
                op: KvOp::Truncate { from: 0 },
            },
            Frame::End { req: 5 },
            Frame::Heartbeat,
            Frame::Ping { stamp: 123_456 },
            Frame::Pong { stamp: u64::MAX },
            Frame::Ready { seq: 11 },
            Frame::Shutdown { origin: 2 },
            Frame::Abort {
                rank: 1,
                message: "failed to load `m.gguf`".into(),
            },
        ];
        for f in frames {
            assert_eq!(round_trip(f.clone(), WireFormat::F32), f);
        }
    }

    #[test]
    fn f16_rows_are_close_and_half_the_size() {
        let rows: Vec<f32> = (0..576).map(|i| (i as f32 - 288.0) / 37.0).collect();
        let f = Frame::Batch {
            id: 1,
            spans: vec![span(1, 0, 0, 1, false)],
            rows: rows.clone(),
        };
        let b32 = f.encode(WireFormat::F32).unwrap();
        let b16 = f.encode(WireFormat::F16).unwrap();
        assert_eq!(b32.len() - 4 - HEADER_LEN - SPAN_LEN, 576 * 4);
        assert_eq!(b16.len() - 4 - HEADER_LEN - SPAN_LEN, 576 * 2);
        let Frame::Batch { rows: back, .. } = Frame::decode(&b16[4..]).unwrap() else {
            panic!("not a batch")
        };
        for (a, b) in rows.iter().zip(&back) {
            assert!((a - b).abs() <= a.abs() / 1024.0 + 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn absurd_lengths_are_rejected_before_allocating() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&u32::MAX.to_le_bytes());
        wire.extend_from_slice(&[0u8; 64]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(read_frame(&mut wire.as_slice())).unwrap_err();
        assert!(matches!(err, FrameError::BadLength(u32::MAX)), "{err}");

        let mut short = Vec::new();
        short.extend_from_slice(&3u32.to_le_bytes());
        short.extend_from_slice(&[0u8; 3]);
        let err = rt.block_on(read_frame(&mut short.as_slice())).unwrap_err();
        assert!(matches!(err, FrameError::BadLength(3)), "{err}");

        // A batch claiming more spans than its payload holds.
        let mut b = Frame::Batch {
            id: 1,
            spans: vec![span(1, 0, 0, 1, false)],
            rows: vec![0.0; 2],
        }
        .encode(WireFormat::F32)
        .unwrap();
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Frame::decode(&b[4..]),
            Err(FrameError::Malformed { kind: "batch", .. })
        ));
    }

    #[test]
    fn inconsistent_payloads_are_rejected() {
        // A tokens frame with 3 payload bytes missing.
        let mut b = Frame::Tokens {
            id: 1,
            tokens: vec![Sampled {
                req: 1,
                pos: 2,
                token: 3,
                logprobs: None,
            }],
        }
        .encode(WireFormat::F32)
        .unwrap();
        b.truncate(b.len() - 3);
        assert!(matches!(
            Frame::decode(&b[4..]),
            Err(FrameError::Malformed { kind: "tokens", .. })
        ));
        // A log-probabilities section cut short, or with bytes after it.
        let with_lp = Frame::Tokens {
            id: 1,
            tokens: vec![Sampled {
                req: 1,
                pos: 2,
                token: 3,
                logprobs: Some(TokenLogprobs {
                    token: 3,
                    logprob: -1.0,
                    top: vec![(3, -1.0)],
                }),
            }],
        }
        .encode(WireFormat::F32)
        .unwrap();
        for bad in [
            &with_lp[..with_lp.len() - 1],
            &[&with_lp[..], &[0]].concat()[..],
        ] {
            let mut b = bad.to_vec();
            let len = (b.len() - 4) as u32;
            b[..4].copy_from_slice(&len.to_le_bytes());
            assert!(matches!(
                Frame::decode(&b[4..]),
                Err(FrameError::Malformed { kind: "tokens", .. })
            ));
        }
        // Rows that are not n whole rows.
        let mut b = Frame::Batch {
            id: 1,
            spans: vec![span(1, 0, 0, 3, false)],
            rows: vec![0.0; 6],
        }
        .encode(WireFormat::F32)
        .unwrap();
        b.extend_from_slice(&[0; 4]);
        assert!(matches!(
            Frame::decode(&b[4..]),
            Err(FrameError::Malformed { kind: "batch", .. })
        ));
        // Spans that do not add up to the batch's rows.
        let mut b = Frame::Batch {
            id: 1,
            spans: vec![span(1, 0, 0, 2, false), span(2, 1, 0, 1, true)],
            rows: vec![0.0; 6],
        }
        .encode(WireFormat::F32)
        .unwrap();
        b[20..24].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(
            Frame::decode(&b[4..]),
            Err(FrameError::Malformed { kind: "batch", .. })
        ));
        // Sampling parameters that are not JSON.
        let mut b = Frame::End { req: 1 }.encode(WireFormat::F32).unwrap();
        b[4] = KIND_START;
        b.extend_from_slice(b"{no");
        let len = (b.len() - 4) as u32;
        b[..4].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(
            Frame::decode(&b[4..]),
            Err(FrameError::Malformed { kind: "start", .. })
        ));
        // Unknown kind.
        let mut b = Frame::Heartbeat.encode(WireFormat::F32).unwrap();
        b[4] = 200;
        assert!(matches!(
            Frame::decode(&b[4..]),
            Err(FrameError::UnknownKind(200))
        ));
    }

    #[test]
    fn oversized_frames_are_not_sent() {
        let f = Frame::Batch {
            id: 1,
            spans: vec![span(1, 0, 0, 1, false)],
            rows: vec![0.0; MAX_FRAME_LEN as usize / 4],
        };
        assert!(matches!(
            f.encode(WireFormat::F32),
            Err(FrameError::TooLarge(_))
        ));
    }
}
