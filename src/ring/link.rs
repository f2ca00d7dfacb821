//! Ring formation (listen + connect + handshake under one deadline) and the
//! per-link I/O tasks (frames, heartbeats, failure detection).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, timeout_at, Instant};

use super::frame::{read_frame, Frame, FrameError, WireFormat};
use super::{
    handshake, RingConfig, RingError, CONNECT_RETRY, HANDSHAKE_TIMEOUT, HEARTBEAT_INTERVAL,
    SILENCE_LIMIT,
};

/// Both links of a formed ring, handshakes done.
pub struct Formed {
    /// Accepted from rank `r - 1`: frames come in, heartbeats go out.
    pub upstream: TcpStream,
    pub upstream_addr: SocketAddr,
    /// Connected to rank `r + 1`: frames go out, heartbeats come in.
    pub downstream: TcpStream,
}

/// What the I/O tasks report.
#[derive(Debug)]
pub enum RingEvent {
    /// A frame from rank `r - 1` (heartbeats are consumed by the link).
    Frame(Frame),
    /// A neighbour is gone; the link stops.
    Failed(RingError),
}

/// Notes kept while the ring forms, to explain a missed deadline.
#[derive(Default)]
struct Progress {
    inbound_done: bool,
    outbound_done: bool,
    last_inbound_problem: Option<String>,
    last_outbound_problem: Option<String>,
}

/// Listen on `cfg.listen`, accept rank `r - 1`, connect to rank `r + 1`; all
/// within `cfg.formation_deadline`. The listener is closed when this returns.
pub async fn form(cfg: &RingConfig) -> Result<Formed, RingError> {
    assert!(cfg.world >= 2, "a ring needs two ranks");
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| RingError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let deadline = Instant::now() + cfg.formation_deadline;
    let progress = Mutex::new(Progress::default());
    let both = async {
        tokio::try_join!(
            accept_prev(&listener, cfg, &progress),
            connect_next(cfg, &progress)
        )
    };
    match timeout_at(deadline, both).await {
        Ok(Ok(((upstream, upstream_addr), downstream))) => Ok(Formed {
            upstream,
            upstream_addr,
            downstream,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let p = progress.lock().unwrap();
            let mut parts = Vec::new();
            if !p.inbound_done {
                let mut s = format!(
                    "rank {} never joined on `{}`",
                    cfg.prev_rank(),
                    cfg.listen
                );
                if let Some(why) = &p.last_inbound_problem {
                    s += &format!(" (last attempt: {why})");
                }
                parts.push(s);
            }
            if !p.outbound_done {
                let mut s = format!("rank {} at `{}` was not reachable", cfg.next_rank(), cfg.next);
                if let Some(why) = &p.last_outbound_problem {
                    s += &format!(" (last attempt: {why})");
                }
                parts.push(s);
            }
            let mut detail = parts.join("; ");
            if !detail.contains("hint:") {
                detail += "\n\nhint: start every rank of the plan (`skulk apply`), check that each host \
                           can reach the next one's address and ring port, or raise the formation deadline";
            }
            Err(RingError::FormationTimeout {
                secs: cfg.formation_deadline.as_secs(),
                detail,
            })
        }
    }
}

async fn accept_prev(
    listener: &TcpListener,
    cfg: &RingConfig,
    progress: &Mutex<Progress>,
) -> Result<(TcpStream, SocketAddr), RingError> {
    let prev = cfg.prev_rank();
    let mut pending = FuturesUnordered::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut s, addr) = accepted.map_err(|source| RingError::Accept { addr: cfg.listen, source })?;
                let _ = s.set_nodelay(true);
                pending.push(async move {
                    let r = timeout(HANDSHAKE_TIMEOUT, handshake::accept(&mut s, cfg.identity(), prev)).await;
                    (s, addr, r)
                });
            }
            Some((s, addr, r)) = pending.next(), if !pending.is_empty() => {
                let why = match r {
                    Ok(Ok(())) => {
                        progress.lock().unwrap().inbound_done = true;
                        return Ok((s, addr));
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("handshake timed out after {} s", HANDSHAKE_TIMEOUT.as_secs()),
                };
                eprintln!("skulk rank {}: refused a ring connection from `{addr}`: {why}", cfg.rank);
                progress.lock().unwrap().last_inbound_problem = Some(format!("`{addr}`: {why}"));
            }
        }
    }
}

async fn connect_next(cfg: &RingConfig, progress: &Mutex<Progress>) -> Result<TcpStream, RingError> {
    let next = cfg.next_rank();
    loop {
        let problem = match timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(cfg.next)).await {
            Ok(Ok(mut s)) => {
                let _ = s.set_nodelay(true);
                match timeout(HANDSHAKE_TIMEOUT, handshake::connect(&mut s, cfg.identity(), next))
                    .await
                {
                    Ok(Ok(())) => {
                        progress.lock().unwrap().outbound_done = true;
                        return Ok(s);
                    }
                    Ok(Err(e)) if e.is_refusal() => {
                        return Err(RingError::Handshake {
                            rank: next,
                            addr: cfg.next,
                            source: e,
                        })
                    }
                    Ok(Err(e)) => format!("handshake: {e}"),
                    Err(_) => format!("handshake timed out after {} s", HANDSHAKE_TIMEOUT.as_secs()),
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("connect timed out after {} s", HANDSHAKE_TIMEOUT.as_secs()),
        };
        progress.lock().unwrap().last_outbound_problem = Some(problem);
        sleep(CONNECT_RETRY).await;
    }
}

/// Sends frames to rank `r + 1`. Cheap to clone; `send` never blocks.
#[derive(Clone)]
pub struct RingSender {
    tx: mpsc::UnboundedSender<Out>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl RingSender {
    /// Queue a frame; false when the link is already down.
    pub fn send(&self, frame: Frame) -> bool {
        self.tx.send(Out::Frame(frame)).is_ok()
    }

    /// Let the writer drain what is queued (bounded by `limit`), then stop it.
    pub async fn flush(self, limit: std::time::Duration) {
        let handle = self.writer.lock().unwrap().take();
        let _ = self.tx.send(Out::Close);
        if let Some(h) = handle {
            let _ = timeout(limit, h).await;
        }
    }
}

enum Out {
    Frame(Frame),
    /// Write what came before, then close the connection.
    Close,
}

type Sink = Arc<dyn Fn(RingEvent) + Send + Sync>;

/// Start the four I/O tasks of a formed ring on the current tokio runtime.
/// Frames from rank `r - 1` and failures go to `sink` (from tokio tasks, so
/// it must not block).
pub fn start(formed: Formed, cfg: &RingConfig, sink: Sink) -> RingSender {
    let (up_rd, up_wr) = formed.upstream.into_split();
    let (down_rd, down_wr) = formed.downstream.into_split();
    let prev = (cfg.prev_rank(), formed.upstream_addr);
    let next = (cfg.next_rank(), cfg.next);
    let (tx, rx) = mpsc::unbounded_channel();

    tokio::spawn(read_loop(up_rd, prev, true, sink.clone()));
    tokio::spawn(heartbeat_loop(up_wr, prev, sink.clone()));
    tokio::spawn(read_loop(down_rd, next, false, sink.clone()));
    let writer = tokio::spawn(write_loop(down_wr, rx, cfg.wire, next, sink));
    RingSender {
        tx,
        writer: Arc::new(Mutex::new(Some(writer))),
    }
}

fn lost(peer: (u32, SocketAddr), what: String) -> RingError {
    RingError::PeerLost {
        rank: peer.0,
        addr: peer.1,
        what,
    }
}

/// Read frames until the peer closes, breaks the protocol or goes silent.
/// `data`: frames other than heartbeats are expected (upstream link).
async fn read_loop(mut rd: OwnedReadHalf, peer: (u32, SocketAddr), data: bool, sink: Sink) {
    loop {
        let err = match timeout(SILENCE_LIMIT, read_frame(&mut rd)).await {
            Err(_) => RingError::PeerSilent {
                rank: peer.0,
                addr: peer.1,
            },
            Ok(Ok(Frame::Heartbeat)) => continue,
            Ok(Ok(frame)) if data => {
                sink(RingEvent::Frame(frame));
                continue;
            }
            Ok(Ok(frame)) => RingError::Protocol {
                rank: peer.0,
                addr: peer.1,
                source: FrameError::Malformed {
                    kind: frame.kind_name(),
                    what: "data frame on the return path of a link".into(),
                },
            },
            Ok(Err(FrameError::Closed)) => lost(peer, "connection closed".into()),
            Ok(Err(FrameError::Io(e))) => lost(peer, e.to_string()),
            Ok(Err(source)) => RingError::Protocol {
                rank: peer.0,
                addr: peer.1,
                source,
            },
        };
        sink(RingEvent::Failed(err));
        return;
    }
}

/// Heartbeats back to rank `r - 1`, so it can tell that this rank is alive.
async fn heartbeat_loop(mut wr: OwnedWriteHalf, peer: (u32, SocketAddr), sink: Sink) {
    let beat = Frame::Heartbeat.encode(WireFormat::F32).expect("tiny frame");
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(e) = wr.write_all(&beat).await {
            sink(RingEvent::Failed(lost(peer, e.to_string())));
            return;
        }
    }
}

/// Frames to rank `r + 1`, with a heartbeat whenever the link was idle for a
/// heartbeat interval. Ends on [`Out::Close`] or when every sender is gone
/// (after writing what was queued), or on a write error.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    wire: WireFormat,
    peer: (u32, SocketAddr),
    sink: Sink,
) {
    let beat = Frame::Heartbeat.encode(WireFormat::F32).expect("tiny frame");
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_write = Instant::now();
    loop {
        let bytes = tokio::select! {
            biased;
            frame = rx.recv() => match frame {
                Some(Out::Frame(f)) => match f.encode(wire) {
                    Ok(b) => b,
                    Err(e) => {
                        sink(RingEvent::Failed(RingError::Protocol { rank: peer.0, addr: peer.1, source: e }));
                        return;
                    }
                },
                Some(Out::Close) | None => {
                    let _ = wr.shutdown().await;
                    return;
                }
            },
            _ = tick.tick() => {
                if last_write.elapsed() < HEARTBEAT_INTERVAL {
                    continue;
                }
                beat.clone()
            }
        };
        if let Err(e) = wr.write_all(&bytes).await {
            sink(RingEvent::Failed(lost(peer, e.to_string())));
            return;
        }
        last_write = Instant::now();
    }
}
