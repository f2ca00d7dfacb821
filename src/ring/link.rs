//! Ring formation (listen + connect + handshake under one deadline) and the
//! per-link I/O (frames, heartbeats, latency probes, failure detection).
//!
//! Heartbeats flow on each link from the moment its own handshake is done,
//! even while this rank still waits for its other link, so a neighbour that
//! formed first never mistakes a slow formation for silence. Once formed,
//! the links run on a thread of their own (a one-thread runtime), so neither
//! the engine nor the API's work can delay a heartbeat or a failure verdict;
//! a monitor on that thread judges each link's silence with a
//! [`Detector`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, timeout_at, Instant};

use super::detector::{Detector, Verdict};
use super::frame::{read_frame, Frame, FrameError, WireFormat};
use super::{
    handshake, RingConfig, RingError, CONNECT_RETRY, HANDSHAKE_TIMEOUT, HEARTBEAT_INTERVAL,
    HOP_PROBE_INTERVAL,
};

/// Where this process's ring writes what it thinks of its neighbours
/// (`skulk status` shows it); set once by `run-shard`.
static HEALTH_FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Makes the ring of this process write `slow=...` to `path` while a
/// neighbour is slow, and remove it when the neighbour answers again.
pub fn report_health_to(path: std::path::PathBuf) {
    let _ = HEALTH_FILE.set(path);
}

fn report_health(slow: Option<&str>) {
    let Some(path) = HEALTH_FILE.get() else {
        return;
    };
    // Best effort: a full disk must not take the ring down.
    let _ = match slow {
        Some(what) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            std::fs::write(path, format!("slow={what}\nslow_since={now}\n"))
        }
        None => std::fs::remove_file(path),
    };
}

/// How often the monitor judges each link's silence.
const MONITOR_EVERY: Duration = Duration::from_millis(100);

/// A monitor tick this late means this process itself was starved (or
/// stopped): its readers get one round to catch up before any verdict, so
/// our own stall is never blamed on a neighbour.
const MONITOR_LATE: Duration = Duration::from_millis(500);

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
    /// Latency of the link to rank `r + 1`: half a ping's round trip.
    Hop(std::time::Duration),
}

/// Notes kept while the ring forms, to explain a missed deadline.
#[derive(Default)]
struct Progress {
    inbound_done: bool,
    outbound_done: bool,
    last_inbound_problem: Option<String>,
    last_outbound_problem: Option<String>,
}

fn heartbeat_bytes() -> Vec<u8> {
    Frame::Heartbeat
        .encode(WireFormat::F32)
        .expect("a heartbeat frame encodes")
}

/// Listen on `cfg.listen`, accept rank `r - 1`, connect to rank `r + 1`; all
/// within `cfg.formation_deadline`. A link whose handshake is done carries
/// heartbeats while the other one forms. The listener is closed when this
/// returns.
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
        let accept = accept_prev(&listener, cfg, &progress);
        let connect = connect_next(cfg, &progress);
        tokio::pin!(accept, connect);
        let mut up: Option<(TcpStream, SocketAddr)> = None;
        let mut down: Option<TcpStream> = None;
        let beat = heartbeat_bytes();
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = &mut accept, if up.is_none() => up = Some(r?),
                r = &mut connect, if down.is_none() => down = Some(r?),
                _ = tick.tick() => {
                    // A failed write means the peer is gone; the link's
                    // reader reports that once the ring starts.
                    if let Some((s, _)) = &mut up {
                        let _ = s.write_all(&beat).await;
                    }
                    if let Some(s) = &mut down {
                        let _ = s.write_all(&beat).await;
                    }
                }
            }
            if let (Some(_), Some(_)) = (&up, &down) {
                let (upstream, upstream_addr) = up.take().expect("checked");
                let downstream = down.take().expect("checked");
                return Ok::<_, RingError>((upstream, upstream_addr, downstream));
            }
        }
    };
    match timeout_at(deadline, both).await {
        Ok(Ok((upstream, upstream_addr, downstream))) => Ok(Formed {
            upstream,
            upstream_addr,
            downstream,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let p = progress.lock().unwrap();
            let mut parts = Vec::new();
            let mut hint = None;
            let mut explain = |mut s: String, why: &Option<String>| {
                if let Some(why) = why {
                    let (text, h) = match why.split_once("\n\nhint: ") {
                        Some((text, h)) => (text, Some(h.to_owned())),
                        None => (why.as_str(), None),
                    };
                    s += &format!(" (last attempt: {text})");
                    hint = h.or(hint.take());
                }
                parts.push(s);
            };
            if !p.inbound_done {
                let s = format!("rank {} never joined on `{}`", cfg.prev_rank(), cfg.listen);
                explain(s, &p.last_inbound_problem);
            }
            if !p.outbound_done {
                let s = format!(
                    "rank {} at `{}` was not reachable",
                    cfg.next_rank(),
                    cfg.next
                );
                explain(s, &p.last_outbound_problem);
            }
            let hint = hint.unwrap_or_else(|| {
                "start every rank of the plan (`skulk apply`), check that each host can reach \
                 the next one's address and ring port, or raise the formation deadline"
                    .to_owned()
            });
            Err(RingError::FormationTimeout {
                secs: cfg.formation_deadline.as_secs(),
                detail: format!("{}\n\nhint: {hint}", parts.join("; ")),
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
                crate::output::warn(format!("skulk rank {}: refused a ring connection from `{addr}`: {why}", cfg.rank));
                progress.lock().unwrap().last_inbound_problem = Some(format!("`{addr}`: {why}"));
            }
        }
    }
}

async fn connect_next(
    cfg: &RingConfig,
    progress: &Mutex<Progress>,
) -> Result<TcpStream, RingError> {
    let next = cfg.next_rank();
    loop {
        let problem =
            match timeout(HANDSHAKE_TIMEOUT, connect_from(cfg.listen.ip(), cfg.next)).await {
                Ok(Ok(mut s)) => {
                    let _ = s.set_nodelay(true);
                    match timeout(
                        HANDSHAKE_TIMEOUT,
                        handshake::connect(&mut s, cfg.identity(), next),
                    )
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
                        Err(_) => format!(
                            "handshake timed out after {} s",
                            HANDSHAKE_TIMEOUT.as_secs()
                        ),
                    }
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("connect timed out after {} s", HANDSHAKE_TIMEOUT.as_secs()),
            };
        progress.lock().unwrap().last_outbound_problem = Some(problem);
        sleep(CONNECT_RETRY).await;
    }
}

/// Connect from this rank's own address (so the peer sees the plan address,
/// and the route is the one the plan chose), any local port.
async fn connect_from(local: std::net::IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if local.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(to).await
}

/// Sends frames to rank `r + 1`. Cheap to clone; `send` never blocks. When
/// the last clone is dropped, the ring's thread stops and both links close.
#[derive(Clone)]
pub struct RingSender {
    tx: mpsc::UnboundedSender<Out>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    thread: Arc<StopOnDrop>,
}

impl RingSender {
    /// Queue a frame; false when the link is already down.
    pub fn send(&self, frame: Frame) -> bool {
        self.tx.send(Out::Frame(frame)).is_ok()
    }

    /// Close both links at once, unsent frames and all, though other clones
    /// of this sender live on (a rank that vanishes: its engine thread may
    /// be inside a forward pass, holding one).
    pub fn sever(&self) {
        self.thread.stop();
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

/// Ends the ring thread when dropped.
struct StopOnDrop(Mutex<Option<oneshot::Sender<()>>>);

impl StopOnDrop {
    fn stop(&self) {
        if let Some(tx) = self.0.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Out {
    Frame(Frame),
    /// Write what came before, then close the connection.
    Close,
}

type Sink = Arc<dyn Fn(RingEvent) + Send + Sync>;

/// One direction of listening: what arrives from one neighbour, judged by
/// its detector.
struct Watch {
    me: u32,
    peer: (u32, SocketAddr),
    detector: Mutex<Detector>,
    /// The verdict was given (a link is declared lost once).
    done: AtomicBool,
}

impl Watch {
    fn heard(&self) {
        let again = self
            .detector
            .lock()
            .unwrap()
            .heard(Instant::now().into_std());
        if let Some(silent) = again {
            crate::output::note(format!(
                "skulk rank {}: rank {} at `{}` is answering again after {:.1} s of silence",
                self.me,
                self.peer.0,
                self.peer.1,
                silent.as_secs_f64()
            ));
            report_health(None);
        }
    }
}

/// A reader that tells its link's detector whenever bytes arrive, so a
/// large frame in transit never counts as silence.
struct Heard<R> {
    inner: R,
    watch: Arc<Watch>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Heard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.heard();
        }
        polled
    }
}

/// Both links' watches.
struct Links {
    up: Arc<Watch>,
    down: Arc<Watch>,
}

impl Links {
    fn serving(&self) {
        for w in [&self.up, &self.down] {
            w.detector.lock().unwrap().serving();
        }
    }
}

/// Start the I/O of a formed ring on a thread of its own. Frames from rank
/// `r - 1` and failures go to `sink` (called from that thread, so it must
/// not block).
pub fn start(formed: Formed, cfg: &RingConfig, sink: Sink) -> RingSender {
    let prev = (cfg.prev_rank(), formed.upstream_addr);
    let next = (cfg.next_rank(), cfg.next);
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let (writer_tx, writer_rx) = std::sync::mpsc::channel();
    let now = Instant::now().into_std();
    let watch = |peer| {
        Arc::new(Watch {
            me: cfg.rank,
            peer,
            detector: Mutex::new(Detector::new(cfg.silence, now)),
            done: AtomicBool::new(false),
        })
    };
    let links = Arc::new(Links {
        up: watch(prev),
        down: watch(next),
    });
    let rank = cfg.rank;
    let wire = cfg.wire;
    let fail_sink = sink.clone();
    let moved = formed
        .upstream
        .into_std()
        .and_then(|u| formed.downstream.into_std().map(|d| (u, d)));
    let spawned = moved.and_then(|(up, down)| {
        std::thread::Builder::new()
            .name(format!("skulk-rank{rank}-ring"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        sink(RingEvent::Failed(lost(
                            prev,
                            format!("cannot start the ring's thread: {e}"),
                        )));
                        return;
                    }
                };
                rt.block_on(async move {
                    let (up, down) = match (TcpStream::from_std(up), TcpStream::from_std(down)) {
                        (Ok(u), Ok(d)) => (u, d),
                        (Err(e), _) | (_, Err(e)) => {
                            sink(RingEvent::Failed(lost(
                                prev,
                                format!("cannot move the link to the ring's thread: {e}"),
                            )));
                            return;
                        }
                    };
                    let (up_rd, up_wr) = up.into_split();
                    let (down_rd, down_wr) = down.into_split();
                    // Pings that came down the upstream link, to be answered
                    // on it; pongs time the downstream link from `epoch`.
                    let (pongs, pings) = mpsc::unbounded_channel();
                    let epoch = Instant::now();
                    tokio::spawn(read_loop(
                        up_rd,
                        links.up.clone(),
                        Upstream::Data {
                            serving: links.clone(),
                            rank,
                            pongs,
                        },
                        sink.clone(),
                    ));
                    tokio::spawn(heartbeat_loop(up_wr, prev, pings, sink.clone()));
                    tokio::spawn(read_loop(
                        down_rd,
                        links.down.clone(),
                        Upstream::Return { epoch },
                        sink.clone(),
                    ));
                    let writer =
                        tokio::spawn(write_loop(down_wr, rx, wire, next, epoch, sink.clone()));
                    let _ = writer_tx.send(writer);
                    tokio::spawn(monitor(links, sink));
                    let _ = stop_rx.await;
                });
                // Dropping the runtime ends the tasks and closes both links.
            })
            .map(|_| ())
    });
    if let Err(e) = spawned {
        fail_sink(RingEvent::Failed(lost(
            prev,
            format!("cannot start the ring's thread: {e}"),
        )));
    }
    let writer = writer_rx.recv().ok();
    RingSender {
        tx,
        writer: Arc::new(Mutex::new(writer)),
        thread: Arc::new(StopOnDrop(Mutex::new(Some(stop_tx)))),
    }
}

fn lost(peer: (u32, SocketAddr), what: String) -> RingError {
    RingError::PeerLost {
        rank: peer.0,
        addr: peer.1,
        what,
    }
}

/// Which link a reader reads, and what it does with what is not a heartbeat.
enum Upstream {
    /// From rank `r - 1`: data frames, and pings to answer (handed to the
    /// heartbeat task). The frame that shows the whole ring has loaded
    /// (`Ready` back at rank 0, the first request's `Start` or batch
    /// elsewhere) moves every detector of this rank to the serving phase.
    Data {
        serving: Arc<Links>,
        rank: u32,
        pongs: mpsc::UnboundedSender<u64>,
    },
    /// The return path from rank `r + 1`: heartbeats and pongs only, whose
    /// round trip since `epoch` is the link's latency.
    Return { epoch: Instant },
}

/// Read frames until the peer closes or breaks the protocol (silence is the
/// monitor's to judge).
async fn read_loop(rd: OwnedReadHalf, watch: Arc<Watch>, role: Upstream, sink: Sink) {
    let peer = watch.peer;
    let mut rd = Heard { inner: rd, watch };
    let mut loaded = false;
    loop {
        let err = match (read_frame(&mut rd).await, &role) {
            (Ok(Frame::Heartbeat), _) => continue,
            (Ok(Frame::Ping { stamp }), Upstream::Data { pongs, .. }) => {
                let _ = pongs.send(stamp);
                continue;
            }
            (Ok(Frame::Pong { stamp }), Upstream::Return { epoch }) => {
                let now = epoch.elapsed().as_micros() as u64;
                if let Some(rtt) = now.checked_sub(stamp) {
                    sink(RingEvent::Hop(Duration::from_micros(rtt / 2)));
                }
                continue;
            }
            (Ok(frame @ (Frame::Ping { .. } | Frame::Pong { .. })), _)
            | (Ok(frame), Upstream::Return { .. }) => RingError::Protocol {
                rank: peer.0,
                addr: peer.1,
                source: FrameError::Malformed {
                    kind: frame.kind_name(),
                    what: "frame on the wrong path of a link".into(),
                },
            },
            (Ok(frame), Upstream::Data { serving, rank, .. }) => {
                let whole_ring = match &frame {
                    Frame::Ready { .. } => *rank == 0,
                    Frame::Start { .. } | Frame::Batch { .. } => true,
                    _ => false,
                };
                if whole_ring && !loaded {
                    loaded = true;
                    serving.serving();
                }
                sink(RingEvent::Frame(frame));
                continue;
            }
            (Err(FrameError::Closed), _) => lost(peer, "connection closed".into()),
            (Err(FrameError::Io(e)), _) => lost(peer, e.to_string()),
            (Err(source), _) => RingError::Protocol {
                rank: peer.0,
                addr: peer.1,
                source,
            },
        };
        if !rd.watch.done.swap(true, Ordering::SeqCst) {
            sink(RingEvent::Failed(err));
        }
        return;
    }
}

/// Judges both links' silence every [`MONITOR_EVERY`]: a slow neighbour is
/// logged, a lost one reported.
async fn monitor(links: Arc<Links>, sink: Sink) {
    let mut tick = tokio::time::interval(MONITOR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expected = Instant::now();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let late = now.saturating_duration_since(expected) > MONITOR_LATE;
        expected = now + MONITOR_EVERY;
        if late {
            // This thread was starved: let the readers drain first.
            tokio::task::yield_now().await;
            continue;
        }
        for w in [&links.up, &links.down] {
            if w.done.load(Ordering::SeqCst) {
                continue;
            }
            let verdict = w.detector.lock().unwrap().judge(now.into_std());
            match verdict {
                Verdict::Fine => {}
                Verdict::Slow { silent, usual } => {
                    let what = format!(
                        "rank {} at `{}`: nothing received for {:.1} s (usually every {:.2} s)",
                        w.peer.0,
                        w.peer.1,
                        silent.as_secs_f64(),
                        usual.as_secs_f64()
                    );
                    crate::output::warn(format!(
                        "skulk rank {}: {what} is slow; still waiting",
                        w.me
                    ));
                    report_health(Some(&what));
                }
                Verdict::Lost {
                    silent,
                    limit,
                    phase,
                } => {
                    if !w.done.swap(true, Ordering::SeqCst) {
                        sink(RingEvent::Failed(RingError::PeerSilent {
                            rank: w.peer.0,
                            addr: w.peer.1,
                            silent,
                            limit,
                            phase,
                        }));
                    }
                }
            }
        }
        if links.up.done.load(Ordering::SeqCst) && links.down.done.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Heartbeats back to rank `r - 1`, so it can tell that this rank is
/// alive, and pongs answering its pings.
async fn heartbeat_loop(
    mut wr: OwnedWriteHalf,
    peer: (u32, SocketAddr),
    mut pings: mpsc::UnboundedReceiver<u64>,
    sink: Sink,
) {
    let beat = heartbeat_bytes();
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        let bytes = tokio::select! {
            _ = tick.tick() => beat.clone(),
            stamp = pings.recv() => match stamp {
                Some(stamp) => Frame::Pong { stamp }.encode(WireFormat::F32).expect("tiny frame"),
                None => beat.clone(),
            },
        };
        if let Err(e) = wr.write_all(&bytes).await {
            sink(RingEvent::Failed(lost(peer, e.to_string())));
            return;
        }
    }
}

/// Frames to rank `r + 1`, with a heartbeat whenever the link was idle for a
/// heartbeat interval (a ping, stamped with the time since `epoch`, every
/// [`HOP_PROBE_INTERVAL`]). Ends on [`Out::Close`] or when every sender is
/// gone (after writing what was queued), or on a write error.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    wire: WireFormat,
    peer: (u32, SocketAddr),
    epoch: Instant,
    sink: Sink,
) {
    let mut last_probe = Instant::now() - HOP_PROBE_INTERVAL;
    let beat = heartbeat_bytes();
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
                if last_probe.elapsed() >= HOP_PROBE_INTERVAL {
                    last_probe = Instant::now();
                    let stamp = epoch.elapsed().as_micros() as u64;
                    Frame::Ping { stamp }.encode(WireFormat::F32).expect("tiny frame")
                } else {
                    beat.clone()
                }
            }
        };
        if let Err(e) = wr.write_all(&bytes).await {
            sink(RingEvent::Failed(lost(peer, e.to_string())));
            return;
        }
        last_write = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{KvOp, Phase, SilencePolicy, DEFAULT_FORMATION_DEADLINE};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Ranks on `127.0.<net>.1`, `127.0.<net>.2`, ... sharing one port.
    fn configs(net: u8, world: u32, digest: impl Fn(u32) -> String) -> Vec<RingConfig> {
        let port = free_port();
        let addr =
            |r: u32| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, net, r as u8 + 1)), port);
        (0..world)
            .map(|r| RingConfig {
                rank: r,
                world,
                listen: addr(r),
                next: addr((r + 1) % world),
                plan_digest: digest(r),
                secret: b"apply-secret".to_vec(),
                formation_deadline: DEFAULT_FORMATION_DEADLINE,
                wire: WireFormat::F32,
                silence: SilencePolicy::default(),
            })
            .collect()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// The next event that is not a latency report.
    async fn next_event(rx: &mut mpsc::UnboundedReceiver<RingEvent>) -> RingEvent {
        loop {
            match rx.recv().await.unwrap() {
                RingEvent::Hop(_) => continue,
                other => return other,
            }
        }
    }

    #[test]
    fn an_idle_ring_measures_each_hop() {
        let cfgs = configs(19, 2, |_| "digest".into());
        rt().block_on(async {
            let formed = futures::future::try_join_all(cfgs.iter().map(form))
                .await
                .unwrap();
            let mut senders = Vec::new();
            let mut events = Vec::new();
            for (f, cfg) in formed.into_iter().zip(&cfgs) {
                let (sink, rx) = channel_sink();
                senders.push(start(f, cfg, sink));
                events.push(rx);
            }
            // Each rank's first probe goes out after a heartbeat interval
            // of silence; loopback answers well within a second.
            for rx in &mut events {
                match timeout(Duration::from_secs(5), rx.recv()).await {
                    Ok(Some(RingEvent::Hop(d))) => assert!(d < Duration::from_secs(1), "{d:?}"),
                    other => panic!("expected a hop measurement, got {other:?}"),
                }
            }
            drop(senders);
        });
    }

    fn channel_sink() -> (Sink, mpsc::UnboundedReceiver<RingEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(move |e| {
                let _ = tx.send(e);
            }),
            rx,
        )
    }

    #[test]
    fn three_ranks_form_a_ring_and_frames_go_round() {
        let cfgs = configs(11, 3, |_| "digest".into());
        rt().block_on(async {
            let formed = futures::future::try_join_all(cfgs.iter().map(form))
                .await
                .unwrap();
            let mut senders = Vec::new();
            let mut events = Vec::new();
            for (f, cfg) in formed.into_iter().zip(&cfgs) {
                let (sink, rx) = channel_sink();
                senders.push(start(f, cfg, sink));
                events.push(rx);
            }
            // Rank 0 sends; each rank passes it on; it comes back to rank 0.
            let frame = Frame::Kv {
                slot: 9,
                op: KvOp::Truncate { from: 0 },
            };
            assert!(senders[0].send(frame.clone()));
            for r in [1usize, 2, 0] {
                match next_event(&mut events[r]).await {
                    RingEvent::Frame(f) => {
                        assert_eq!(f, frame, "at rank {r}");
                        if r != 0 {
                            senders[r].send(f);
                        }
                    }
                    other => panic!("rank {r}: {other:?}"),
                }
            }
        });
    }

    #[test]
    fn listener_binds_only_its_address_and_closes_once_formed() {
        let cfgs = configs(12, 2, |_| "digest".into());
        rt().block_on(async {
            let formed = futures::future::try_join_all(cfgs.iter().map(form))
                .await
                .unwrap();
            // 127.0.12.1 holds the port, 127.0.12.3 (same port) does not.
            let other = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 12, 3)),
                cfgs[0].listen.port(),
            );
            assert!(TcpStream::connect(other).await.is_err());
            // After formation nothing listens on the ring port any more.
            assert!(TcpStream::connect(cfgs[0].listen).await.is_err());
            drop(formed);
        });
    }

    #[test]
    fn a_rank_from_another_plan_is_refused() {
        // Rank 1 runs another plan. Rank 0 refuses its connection and rank 1
        // refuses rank 0's: the connector's refusal is fatal at once, the
        // listener keeps waiting for a valid predecessor until its deadline
        // and then names the refusal.
        let mut cfgs = configs(13, 2, |r| {
            if r == 1 {
                "plan-b".into()
            } else {
                "plan-a".into()
            }
        });
        cfgs[0].formation_deadline = Duration::from_secs(2);
        rt().block_on(async {
            let (a, b) = tokio::join!(form(&cfgs[0]), form(&cfgs[1]));
            let b = b.err().expect("rank 1 must be refused").to_string();
            assert!(b.starts_with("ring handshake with rank 0 at `127.0.13.1:"), "{b}");
            assert!(b.contains("plan digest mismatch"), "{b}");
            let a = a.err().expect("rank 0 must not form").to_string();
            assert!(a.starts_with("the ring did not form within 2 s: rank 1 never joined"), "{a}");
            assert!(a.contains("(last attempt: `127.0.13.2:"), "{a}");
            assert!(a.contains("plan digest mismatch"), "{a}");
            assert!(a.ends_with("hint: every rank must run the same plan.json; re-run `skulk apply` to restart them all"), "{a}");
        });
    }

    #[test]
    fn a_missing_rank_is_a_formation_timeout_naming_it() {
        let mut cfgs = configs(14, 3, |_| "digest".into());
        cfgs[0].formation_deadline = Duration::from_millis(500);
        let err = rt().block_on(form(&cfgs[0])).err().unwrap().to_string();
        assert!(err.contains("rank 2 never joined on `127.0.14.1:"), "{err}");
        assert!(err.contains("rank 1 at `127.0.14.2:"), "{err}");
        assert!(err.contains("hint: start every rank"), "{err}");
    }

    #[test]
    fn a_busy_port_is_a_bind_error() {
        let cfgs = configs(15, 2, |_| "digest".into());
        let _holder = std::net::TcpListener::bind(cfgs[0].listen).unwrap();
        let err = rt().block_on(form(&cfgs[0])).err().unwrap();
        assert!(matches!(err, RingError::Bind { .. }), "{err}");
    }

    #[test]
    fn a_lost_neighbour_is_reported_on_both_sides() {
        let cfgs = configs(16, 3, |_| "digest".into());
        let rt = rt();
        rt.block_on(async {
            let mut formed = futures::future::try_join_all(cfgs.iter().map(form))
                .await
                .unwrap();
            // Rank 1 vanishes: its sockets close without a goodbye.
            drop(formed.remove(1));
            let mut events = Vec::new();
            let mut senders = Vec::new();
            for (f, cfg) in formed.into_iter().zip([&cfgs[0], &cfgs[2]]) {
                let (sink, rx) = channel_sink();
                senders.push(start(f, cfg, sink));
                events.push(rx);
            }
            // Rank 0 loses its successor, rank 2 its predecessor.
            for (i, rx) in events.iter_mut().enumerate() {
                match next_event(rx).await {
                    RingEvent::Failed(RingError::PeerLost { rank: 1, .. }) => {}
                    other => panic!("rank {}: {other:?}", i * 2),
                }
            }
        });
    }

    #[test]
    fn a_silent_neighbour_is_declared_dead() {
        // Rank 1 completes the handshakes but then never writes (a frozen
        // process): rank 0 and rank 2 hear nothing and report it once the
        // loading limit (1 s here) has passed.
        let mut cfgs = configs(17, 3, |_| "digest".into());
        for c in &mut cfgs {
            c.silence = SilencePolicy {
                loading: Duration::from_secs(1),
                serving: Duration::from_secs(1),
            };
        }
        rt().block_on(async {
            let mut formed = futures::future::try_join_all(cfgs.iter().map(form))
                .await
                .unwrap();
            let frozen = formed.remove(1);
            let mut events = Vec::new();
            for (f, cfg) in formed.into_iter().zip([&cfgs[0], &cfgs[2]]) {
                let (sink, rx) = channel_sink();
                std::mem::forget(start(f, cfg, sink));
                events.push(rx);
            }
            for rx in &mut events {
                match next_event(rx).await {
                    RingEvent::Failed(e @ RingError::PeerSilent { rank: 1, .. }) => {
                        let RingError::PeerSilent {
                            silent,
                            limit,
                            phase,
                            ..
                        } = &e
                        else {
                            unreachable!()
                        };
                        assert_eq!(*phase, Phase::Loading);
                        assert_eq!(*limit, Duration::from_secs(1));
                        assert!(*silent >= *limit);
                        let text = e.to_string();
                        assert!(text.contains("past the loading limit of 1.0 s"), "{text}");
                    }
                    other => panic!("{other:?}"),
                }
                // Reported once per link.
                if let Ok(again) =
                    tokio::time::timeout(Duration::from_millis(500), next_event(rx)).await
                {
                    panic!("a second event after the silence: {again:?}");
                }
            }
            drop(frozen);
        });
    }

    #[test]
    fn a_rank_that_formed_first_hears_neighbours_still_forming() {
        // Ranks 1..3 of a 4-rank ring start; rank 0 comes 2.5 s later. Rank
        // 2 forms at once (rank 1 connected, rank 3 accepted) and starts
        // watching; ranks 1 and 3 wait for rank 0, and send heartbeats on
        // the links they have meanwhile, so rank 2 does not declare them
        // silent (loading limit 1 s here).
        let mut cfgs = configs(18, 4, |_| "digest".into());
        for c in &mut cfgs {
            c.silence = SilencePolicy {
                loading: Duration::from_secs(1),
                serving: Duration::from_secs(1),
            };
        }
        rt().block_on(async {
            let late = cfgs[0].clone();
            let early: Vec<_> = cfgs[1..]
                .iter()
                .cloned()
                .map(|c| tokio::spawn(async move { form(&c).await }))
                .collect();
            let mut early = early.into_iter();
            let (r1, r2, r3) = (
                early.next().unwrap(),
                early.next().unwrap(),
                early.next().unwrap(),
            );
            let formed2 = r2.await.unwrap().unwrap();
            let (sink, mut events2) = channel_sink();
            let sender2 = start(formed2, &cfgs[2], sink);
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            // Latency reports aside, rank 2 heard nothing.
            loop {
                match events2.try_recv() {
                    Ok(RingEvent::Hop(_)) => continue,
                    Ok(other) => panic!("rank 2 heard {other:?} while its neighbours formed"),
                    Err(_) => break,
                }
            }
            let formed0 = form(&late).await.unwrap();
            let (f1, f3) = (r1.await.unwrap().unwrap(), r3.await.unwrap().unwrap());
            let mut senders = vec![];
            let mut events = vec![];
            for (f, cfg) in [(formed0, &cfgs[0]), (f1, &cfgs[1]), (f3, &cfgs[3])] {
                let (sink, rx) = channel_sink();
                senders.push(start(f, cfg, sink));
                events.push(rx);
            }
            // A frame goes all the way round: 0 -> 1 -> 2 -> 3 -> 0.
            let frame = Frame::Ready { seq: 0 };
            assert!(senders[0].send(frame.clone()));
            let pass = |rx: &mut mpsc::UnboundedReceiver<RingEvent>| loop {
                match rx.try_recv() {
                    Ok(RingEvent::Hop(_)) => continue,
                    Ok(RingEvent::Frame(f)) => break f,
                    other => panic!("{other:?}"),
                }
            };
            let wait = || tokio::time::sleep(Duration::from_millis(300));
            wait().await;
            senders[1].send(pass(&mut events[1]));
            wait().await;
            sender2.send(pass(&mut events2));
            wait().await;
            senders[2].send(pass(&mut events[2]));
            wait().await;
            assert_eq!(pass(&mut events[0]), frame);
        });
    }
}
