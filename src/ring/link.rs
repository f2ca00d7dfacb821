//! Ring formation (listen + connect + handshake under one deadline) and the
//! per-link I/O tasks (frames, heartbeats, latency probes, failure
//! detection).

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
    HOP_PROBE_INTERVAL, SILENCE_LIMIT,
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
    // Pings that came down the upstream link, to be answered on it.
    let (pongs, pings) = mpsc::unbounded_channel();
    let epoch = Instant::now();

    tokio::spawn(read_loop(up_rd, prev, Some(pongs), epoch, sink.clone()));
    tokio::spawn(heartbeat_loop(up_wr, prev, pings, sink.clone()));
    tokio::spawn(read_loop(down_rd, next, None, epoch, sink.clone()));
    let writer = tokio::spawn(write_loop(down_wr, rx, cfg.wire, next, epoch, sink));
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
/// `pongs`: on the upstream link, where data frames and pings come in (pings
/// are handed to the heartbeat task to answer); on the downstream link
/// (`None`) only heartbeats and pongs, whose round trip since `epoch` is the
/// link's latency.
async fn read_loop(
    mut rd: OwnedReadHalf,
    peer: (u32, SocketAddr),
    pongs: Option<mpsc::UnboundedSender<u64>>,
    epoch: Instant,
    sink: Sink,
) {
    let data = pongs.is_some();
    loop {
        let err = match timeout(SILENCE_LIMIT, read_frame(&mut rd)).await {
            Err(_) => RingError::PeerSilent {
                rank: peer.0,
                addr: peer.1,
            },
            Ok(Ok(Frame::Heartbeat)) => continue,
            Ok(Ok(Frame::Ping { stamp })) if data => {
                if let Some(p) = &pongs {
                    let _ = p.send(stamp);
                }
                continue;
            }
            Ok(Ok(Frame::Pong { stamp })) if !data => {
                let now = epoch.elapsed().as_micros() as u64;
                if let Some(rtt) = now.checked_sub(stamp) {
                    sink(RingEvent::Hop(std::time::Duration::from_micros(rtt / 2)));
                }
                continue;
            }
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

/// Heartbeats back to rank `r - 1`, so it can tell that this rank is
/// alive, and pongs answering its pings.
async fn heartbeat_loop(
    mut wr: OwnedWriteHalf,
    peer: (u32, SocketAddr),
    mut pings: mpsc::UnboundedReceiver<u64>,
    sink: Sink,
) {
    let beat = Frame::Heartbeat
        .encode(WireFormat::F32)
        .expect("tiny frame");
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
    let beat = Frame::Heartbeat
        .encode(WireFormat::F32)
        .expect("tiny frame");
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
    use crate::ring::{KvOp, DEFAULT_FORMATION_DEADLINE};
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
    fn an_idle_ring_measures_each_hop() {
        let cfgs = configs(18, 2, |_| "digest".into());
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
        // process): rank 0 and rank 2 hear nothing and report it.
        let cfgs = configs(17, 3, |_| "digest".into());
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
                    RingEvent::Failed(RingError::PeerSilent { rank: 1, .. }) => {}
                    other => panic!("{other:?}"),
                }
            }
            drop(frozen);
        });
    }
}
