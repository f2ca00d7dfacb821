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
//! Invariant guarded here: a decoded [`Frame`] is internally consistent (a
//! hidden-row payload holds exactly `n` rows of whole values, a token frame one
//! token, ...), and no length read from the wire makes skulk allocate more than
//! [`MAX_FRAME_LEN`] bytes.

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::engine::{GrammarSpec, SamplingParams, TokenLogprobs};

/// Bytes of the fixed header after the length prefix.
pub const HEADER_LEN: usize = 20;

/// Largest frame accepted or sent: 512 rows (one prefill chunk, llama.cpp's
/// default `n_ubatch`) of 32768 f32 values (twice the hidden size of the
/// largest current dense models, e.g. 16384 for Llama 3.1 405B) is 64 MiB.
pub const MAX_FRAME_LEN: u32 = 64 << 20;

/// Longest abort message carried on the wire; longer ones are cut.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Rows of hidden state travel as f32 (exact) or f16 (half the bytes, not
/// bit-identical to a single process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    #[default]
    F32,
    F16,
}

/// A KV-cache operation, applied by every rank in ring order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    /// Drop entries at positions `>= from`; `from = 0` clears the cache.
    Truncate { from: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `n_tokens` rows of hidden state for positions `pos0..pos0 + n_tokens`.
    /// `sample`: the last rank samples a token from the last row's logits.
    Hidden {
        seq: u64,
        pos0: u32,
        n_tokens: u32,
        sample: bool,
        rows: Vec<f32>,
    },
    /// The token sampled by the last rank, to be placed at position `pos`
    /// (`NO_TOKEN` when the request's grammar allowed none), with its
    /// log-probabilities when the request asked for them.
    Token {
        seq: u64,
        pos: u32,
        token: i32,
        logprobs: Option<TokenLogprobs>,
    },
    /// A new request: the last rank makes its sampler from `params`
    /// (sampling settings, grammar, log-probabilities).
    Start {
        seq: u64,
        params: SamplingParams,
    },
    Kv {
        seq: u64,
        op: KvOp,
    },
    /// Rank 0 abandoned request `seq` (client gone); later frames of it are
    /// dropped.
    Cancel {
        seq: u64,
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

const KIND_HIDDEN: u8 = 1;
const KIND_TOKEN: u8 = 2;
const KIND_START: u8 = 3;
const KIND_KV: u8 = 4;
const KIND_CANCEL: u8 = 5;
const KIND_HEARTBEAT: u8 = 6;
const KIND_READY: u8 = 7;
const KIND_SHUTDOWN: u8 = 8;
const KIND_ABORT: u8 = 9;
const KIND_PING: u8 = 10;
const KIND_PONG: u8 = 11;

const FLAG_F16: u8 = 1;
const FLAG_SAMPLE: u8 = 2;
/// A token frame carries log-probabilities after the token.
const FLAG_LOGPROBS: u8 = 4;

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

impl Frame {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Frame::Hidden { .. } => "hidden",
            Frame::Token { .. } => "token",
            Frame::Start { .. } => "start",
            Frame::Kv { .. } => "kv",
            Frame::Cancel { .. } => "cancel",
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
        let (kind, seq, pos, n, payload_len) = match self {
            Frame::Hidden {
                seq,
                pos0,
                n_tokens,
                sample,
                rows,
            } => {
                if *sample {
                    flags |= FLAG_SAMPLE;
                }
                let width = match wire {
                    WireFormat::F32 => 4,
                    WireFormat::F16 => {
                        flags |= FLAG_F16;
                        2
                    }
                };
                (KIND_HIDDEN, *seq, *pos0, *n_tokens, rows.len() * width)
            }
            Frame::Token {
                seq, pos, logprobs, ..
            } => {
                let extra = match logprobs {
                    Some(lp) => {
                        flags |= FLAG_LOGPROBS;
                        4 + 1 + 8 * lp.top.len().min(u8::MAX as usize)
                    }
                    None => 0,
                };
                (KIND_TOKEN, *seq, *pos, 1, 4 + extra)
            }
            Frame::Start { seq, params } => (KIND_START, *seq, 0, 0, start_payload(params).len()),
            Frame::Kv {
                seq,
                op: KvOp::Truncate { from },
            } => (KIND_KV, *seq, *from, 0, 1),
            Frame::Cancel { seq } => (KIND_CANCEL, *seq, 0, 0, 0),
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
            Frame::Hidden { rows, .. } => match wire {
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
            },
            Frame::Token {
                token, logprobs, ..
            } => {
                out.extend_from_slice(&token.to_le_bytes());
                if let Some(lp) = logprobs {
                    let top = &lp.top[..lp.top.len().min(u8::MAX as usize)];
                    out.extend_from_slice(&lp.logprob.to_le_bytes());
                    out.push(top.len() as u8);
                    for (id, l) in top {
                        out.extend_from_slice(&id.to_le_bytes());
                        out.extend_from_slice(&l.to_le_bytes());
                    }
                }
            }
            Frame::Start { params, .. } => out.extend_from_slice(&start_payload(params)),
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
        let seq = u64::from_le_bytes(body[4..12].try_into().unwrap());
        let pos = u32::from_le_bytes(body[12..16].try_into().unwrap());
        let n = u32::from_le_bytes(body[16..20].try_into().unwrap());
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
            KIND_HIDDEN => {
                let width = if flags & FLAG_F16 != 0 { 2 } else { 4 };
                if n == 0 {
                    return Err(malformed("hidden", "zero rows".into()));
                }
                if payload.is_empty() || payload.len() % (n as usize * width) != 0 {
                    return Err(malformed(
                        "hidden",
                        format!(
                            "payload of {} bytes is not {n} rows of {width}-byte values",
                            payload.len()
                        ),
                    ));
                }
                let rows = if width == 4 {
                    payload
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect()
                } else {
                    payload
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
                        .collect()
                };
                Frame::Hidden {
                    seq,
                    pos0: pos,
                    n_tokens: n,
                    sample: flags & FLAG_SAMPLE != 0,
                    rows,
                }
            }
            KIND_TOKEN => {
                if payload.len() < 4 {
                    return Err(malformed(
                        "token",
                        format!("payload is {} bytes, expected at least 4", payload.len()),
                    ));
                }
                let token = i32::from_le_bytes(payload[..4].try_into().unwrap());
                let logprobs = if flags & FLAG_LOGPROBS != 0 {
                    let mut r = Reader::new(&payload[4..], "token");
                    let logprob = r.f32()?;
                    let n = r.u8()?;
                    let mut top = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        top.push((r.i32()?, r.f32()?));
                    }
                    r.end()?;
                    Some(TokenLogprobs {
                        token,
                        logprob,
                        top,
                    })
                } else {
                    expect_len("token", 4)?;
                    None
                };
                Frame::Token {
                    seq,
                    pos,
                    token,
                    logprobs,
                }
            }
            KIND_START => Frame::Start {
                seq,
                params: decode_start(payload)?,
            },
            KIND_KV => {
                expect_len("kv", 1)?;
                match payload[0] {
                    KV_TRUNCATE => Frame::Kv {
                        seq,
                        op: KvOp::Truncate { from: pos },
                    },
                    op => return Err(malformed("kv", format!("unknown operation `{op}`"))),
                }
            }
            KIND_CANCEL => {
                expect_len("cancel", 0)?;
                Frame::Cancel { seq }
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

/// A start frame's payload: sampling settings (20 bytes), the
/// log-probabilities request (`u8` present, `u8` count), the grammar (`u8`
/// present, then `u32` length and text, `u16` trigger count, each `u32`
/// length and text).
fn start_payload(p: &SamplingParams) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&p.temperature.to_le_bytes());
    out.extend_from_slice(&p.top_p.to_le_bytes());
    out.extend_from_slice(&p.top_k.to_le_bytes());
    out.extend_from_slice(&p.seed.to_le_bytes());
    match p.logprobs {
        Some(n) => out.extend_from_slice(&[1, n]),
        None => out.extend_from_slice(&[0, 0]),
    }
    match &p.grammar {
        None => out.push(0),
        Some(g) => {
            out.push(1);
            let text = |out: &mut Vec<u8>, s: &str| {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            };
            text(&mut out, &g.gbnf);
            out.extend_from_slice(&(g.triggers.len().min(u16::MAX as usize) as u16).to_le_bytes());
            for t in g.triggers.iter().take(u16::MAX as usize) {
                text(&mut out, t);
            }
        }
    }
    out
}

fn decode_start(payload: &[u8]) -> Result<SamplingParams, FrameError> {
    let mut r = Reader::new(payload, "start");
    let temperature = r.f32()?;
    let top_p = r.f32()?;
    let top_k = r.u32()?;
    let seed = r.u64()?;
    let logprobs = match (r.u8()?, r.u8()?) {
        (0, _) => None,
        (_, n) => Some(n),
    };
    let grammar = match r.u8()? {
        0 => None,
        _ => {
            let gbnf = r.text()?;
            let n = r.u16()?;
            let mut triggers = Vec::with_capacity(n as usize);
            for _ in 0..n {
                triggers.push(r.text()?);
            }
            Some(GrammarSpec { gbnf, triggers })
        }
    };
    r.end()?;
    Ok(SamplingParams {
        temperature,
        top_p,
        top_k,
        seed,
        grammar,
        logprobs,
    })
}

/// Reads little-endian fields of a payload, each read checked.
struct Reader<'a> {
    buf: &'a [u8],
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], kind: &'static str) -> Reader<'a> {
        Reader { buf, kind }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Malformed {
                kind: self.kind,
                what: format!("payload ends {} bytes early", n - self.buf.len()),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn f32(&mut self) -> Result<f32, FrameError> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn text(&mut self) -> Result<String, FrameError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::Malformed {
            kind: self.kind,
            what: "text is not UTF-8".into(),
        })
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Malformed {
                kind: self.kind,
                what: format!("{} bytes after the last field", self.buf.len()),
            })
        }
    }
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

    #[test]
    fn every_kind_round_trips() {
        let frames = vec![
            Frame::Hidden {
                seq: 7,
                pos0: 12,
                n_tokens: 2,
                sample: true,
                rows: vec![1.5, -2.25, 3.0, f32::MIN_POSITIVE, 0.0, -0.0],
            },
            Frame::Token {
                seq: u64::MAX,
                pos: 99,
                token: -1,
                logprobs: None,
            },
            Frame::Token {
                seq: 2,
                pos: 7,
                token: 42,
                logprobs: Some(TokenLogprobs {
                    token: 42,
                    logprob: -0.25,
                    top: vec![(42, -0.25), (7, -1.5)],
                }),
            },
            Frame::Start {
                seq: 3,
                params: SamplingParams {
                    temperature: 0.7,
                    top_p: 0.9,
                    top_k: 40,
                    seed: 0xdead_beef_0123,
                    ..SamplingParams::default()
                },
            },
            Frame::Start {
                seq: 9,
                params: SamplingParams {
                    temperature: 0.0,
                    logprobs: Some(5),
                    grammar: Some(GrammarSpec {
                        gbnf: "root ::= \"é\"".into(),
                        triggers: vec!["[\\s\\S]*?(<tool_call>)[\\s\\S]*".into()],
                    }),
                    ..SamplingParams::default()
                },
            },
            Frame::Kv {
                seq: 4,
                op: KvOp::Truncate { from: 0 },
            },
            Frame::Cancel { seq: 5 },
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
        let f = Frame::Hidden {
            seq: 1,
            pos0: 0,
            n_tokens: 1,
            sample: false,
            rows: rows.clone(),
        };
        let b32 = f.encode(WireFormat::F32).unwrap();
        let b16 = f.encode(WireFormat::F16).unwrap();
        assert_eq!(b32.len() - 4 - HEADER_LEN, 576 * 4);
        assert_eq!(b16.len() - 4 - HEADER_LEN, 576 * 2);
        let Frame::Hidden { rows: back, .. } = Frame::decode(&b16[4..]).unwrap() else {
            panic!("not hidden")
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
    }

    #[test]
    fn inconsistent_payloads_are_rejected() {
        // A token frame with 3 payload bytes.
        let mut b = Frame::Token {
            seq: 1,
            pos: 2,
            token: 3,
            logprobs: None,
        }
        .encode(WireFormat::F32)
        .unwrap();
        b.pop();
        assert!(matches!(
            Frame::decode(&b[4..]),
            Err(FrameError::Malformed { kind: "token", .. })
        ));
        // Hidden rows whose payload is not n whole rows.
        let mut b = Frame::Hidden {
            seq: 1,
            pos0: 0,
            n_tokens: 3,
            sample: false,
            rows: vec![0.0; 6],
        }
        .encode(WireFormat::F32)
        .unwrap();
        b.extend_from_slice(&[0; 4]);
        assert!(matches!(
            Frame::decode(&b[4..]),
            Err(FrameError::Malformed { kind: "hidden", .. })
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
        let f = Frame::Hidden {
            seq: 1,
            pos0: 0,
            n_tokens: 1,
            sample: false,
            rows: vec![0.0; MAX_FRAME_LEN as usize / 4],
        };
        assert!(matches!(
            f.encode(WireFormat::F32),
            Err(FrameError::TooLarge(_))
        ));
    }
}
