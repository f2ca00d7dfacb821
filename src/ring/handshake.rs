//! The ring handshake: who is on the other end of a TCP connection.
//!
//! The connecting rank (`r`) opens a connection to its successor (`r + 1`,
//! the last rank to rank 0). Both sides prove, before any frame flows, that
//! they run the same protocol version, the same plan (digest), the same world
//! size, sit at the expected ranks, and hold the same per-apply secret. The
//! secret never crosses the wire: each side sends an HMAC-SHA256 over the whole
//! transcript, which includes a fresh random nonce from each side, so a
//! recorded handshake cannot be replayed.
//!
//! ```text
//! connector                                   listener
//! "SKULKRNG" u16 version, HELLO(rank, world, nonce_c, digest)  ->
//!            <- CHALLENGE(rank, world, nonce_s, digest, mac("server"))  | REFUSE(text)
//! PROOF(mac("client")) | REFUSE(text)                          ->
//!            <- ACCEPT | REFUSE(text)
//! ```
//!
//! Every message after the fixed 10-byte preamble is `u8 tag, u16 len, body`;
//! the REFUSE message (tag 255, UTF-8 text) keeps this layout in every future
//! version so a mismatched peer can always say why it hung up.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bumped whenever the handshake or the frame layout changes.
pub const PROTOCOL_VERSION: u16 = 3;
pub const MAGIC: [u8; 8] = *b"SKULKRNG";
/// A plan digest is a 64-character hex sha256; anything much longer is not one.
const MAX_DIGEST_LEN: usize = 256;
const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;

const TAG_HELLO: u8 = 1;
const TAG_CHALLENGE: u8 = 2;
const TAG_PROOF: u8 = 3;
const TAG_ACCEPT: u8 = 4;
const TAG_REFUSE: u8 = 255;

/// What this rank claims and checks.
#[derive(Clone, Copy)]
pub struct Identity<'a> {
    pub plan_digest: &'a str,
    pub rank: u32,
    pub world: u32,
    pub secret: &'a [u8],
}

/// Why one side refused the other. The text is what goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotSkulk,
    Version {
        connecting: u16,
        listening: u16,
    },
    PlanDigest {
        connecting: String,
        listening: String,
    },
    WorldSize {
        connecting: u32,
        listening: u32,
    },
    Rank {
        /// `connecting` or `listening`.
        side: &'static str,
        found: u32,
        expected: u32,
    },
    Auth,
    Malformed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotSkulk => write!(f, "the peer does not speak the skulk ring protocol"),
            Refusal::Version { connecting, listening } => write!(
                f,
                "protocol version mismatch: the connecting rank speaks version `{connecting}`, \
                 the listening rank `{listening}`\n\n\
                 hint: run the same skulk version on every host"
            ),
            Refusal::PlanDigest { connecting, listening } => write!(
                f,
                "plan digest mismatch: the connecting rank runs plan `{connecting}`, \
                 the listening rank plan `{listening}`\n\n\
                 hint: every rank must run the same plan.json; re-run `skulk apply` to restart them all"
            ),
            Refusal::WorldSize { connecting, listening } => write!(
                f,
                "world size mismatch: the connecting rank has `{connecting}` ranks, \
                 the listening rank `{listening}`"
            ),
            Refusal::Rank { side, found, expected } => write!(
                f,
                "rank mismatch: the {side} rank is rank `{found}`, expected rank `{expected}`\n\n\
                 hint: check the ring order and addresses in the plan"
            ),
            Refusal::Auth => write!(
                f,
                "authentication failed: the peer does not hold this apply's ring secret\n\n\
                 hint: every rank of one `skulk apply` must get the same secret \
                 (environment or `--secret-file`)"
            ),
            Refusal::Malformed(what) => write!(f, "malformed handshake: {what}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// This side refused the peer (and told it why).
    #[error("{0}")]
    Refused(Refusal),
    /// The peer refused this side; its reason.
    #[error("the peer refused: {0}")]
    RefusedByPeer(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl HandshakeError {
    /// A refusal is definitive; an I/O error (peer restarting, connection
    /// reset) may be retried.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, HandshakeError::Io(_))
    }
}

struct Hello {
    rank: u32,
    world: u32,
    nonce: [u8; NONCE_LEN],
    digest: String,
}

impl Hello {
    fn new(id: &Identity<'_>) -> Hello {
        Hello {
            rank: id.rank,
            world: id.world,
            nonce: rand::random(),
            digest: id.plan_digest.to_owned(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(42 + self.digest.len());
        b.extend_from_slice(&self.rank.to_le_bytes());
        b.extend_from_slice(&self.world.to_le_bytes());
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&(self.digest.len() as u16).to_le_bytes());
        b.extend_from_slice(self.digest.as_bytes());
        b
    }

    /// Parse a hello at the start of `b`; returns it and the bytes it used.
    fn decode(b: &[u8]) -> Result<(Hello, usize), Refusal> {
        let bad = |what: &str| Refusal::Malformed(what.to_owned());
        if b.len() < 42 {
            return Err(bad("hello too short"));
        }
        let rank = u32::from_le_bytes(b[0..4].try_into().unwrap());
        let world = u32::from_le_bytes(b[4..8].try_into().unwrap());
        let nonce: [u8; NONCE_LEN] = b[8..40].try_into().unwrap();
        let dlen = u16::from_le_bytes(b[40..42].try_into().unwrap()) as usize;
        if dlen > MAX_DIGEST_LEN || b.len() < 42 + dlen {
            return Err(bad("plan digest length out of bounds"));
        }
        let digest = std::str::from_utf8(&b[42..42 + dlen])
            .map_err(|_| bad("plan digest is not UTF-8"))?
            .to_owned();
        Ok((
            Hello {
                rank,
                world,
                nonce,
                digest,
            },
            42 + dlen,
        ))
    }
}

fn mac(secret: &[u8], label: &[u8], client: &[u8], server: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"skulk ring handshake ");
    m.update(label);
    m.update(&MAGIC);
    m.update(&PROTOCOL_VERSION.to_le_bytes());
    m.update(&(client.len() as u16).to_le_bytes());
    m.update(client);
    m.update(&(server.len() as u16).to_le_bytes());
    m.update(server);
    m
}

async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, tag: u8, body: &[u8]) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(3 + body.len());
    b.push(tag);
    b.extend_from_slice(&(body.len() as u16).to_le_bytes());
    b.extend_from_slice(body);
    w.write_all(&b).await?;
    w.flush().await
}

async fn read_msg<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 3];
    r.read_exact(&mut head).await?;
    let len = u16::from_le_bytes([head[1], head[2]]) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok((head[0], body))
}

/// Tell the peer why, then fail with the same reason.
async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, why: Refusal) -> HandshakeError {
    let text = why.to_string();
    // Best effort: the peer may already be gone.
    let _ = write_msg(s, TAG_REFUSE, &text.as_bytes()[..text.len().min(4096)]).await;
    HandshakeError::Refused(why)
}

fn peer_refusal(body: &[u8]) -> HandshakeError {
    HandshakeError::RefusedByPeer(String::from_utf8_lossy(body).into_owned())
}

/// Connector side: this rank is `id.rank`, the listener must be `expected_peer`.
pub async fn connect<S>(
    s: &mut S,
    id: Identity<'_>,
    expected_peer: u32,
) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = Hello::new(&id).encode();
    let mut pre = Vec::with_capacity(10);
    pre.extend_from_slice(&MAGIC);
    pre.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    s.write_all(&pre).await?;
    write_msg(s, TAG_HELLO, &hello).await?;

    let (tag, body) = read_msg(s).await?;
    match tag {
        TAG_CHALLENGE => {}
        TAG_REFUSE => return Err(peer_refusal(&body)),
        t => return Err(refuse(s, Refusal::Malformed(format!("unexpected message `{t}`"))).await),
    }
    let (theirs, used) = match Hello::decode(&body) {
        Ok(x) => x,
        Err(why) => return Err(refuse(s, why).await),
    };
    let server_hello = &body[..used];
    let server_mac = &body[used..];
    if theirs.digest != id.plan_digest {
        let why = Refusal::PlanDigest {
            connecting: id.plan_digest.to_owned(),
            listening: theirs.digest,
        };
        return Err(refuse(s, why).await);
    }
    if theirs.world != id.world {
        let why = Refusal::WorldSize {
            connecting: id.world,
            listening: theirs.world,
        };
        return Err(refuse(s, why).await);
    }
    if theirs.rank != expected_peer {
        let why = Refusal::Rank {
            side: "listening",
            found: theirs.rank,
            expected: expected_peer,
        };
        return Err(refuse(s, why).await);
    }
    if mac(id.secret, b"server", &hello, server_hello)
        .verify_slice(server_mac)
        .is_err()
    {
        return Err(refuse(s, Refusal::Auth).await);
    }
    let proof = mac(id.secret, b"client", &hello, server_hello)
        .finalize()
        .into_bytes();
    write_msg(s, TAG_PROOF, &proof).await?;
    let (tag, body) = read_msg(s).await?;
    match tag {
        TAG_ACCEPT => Ok(()),
        TAG_REFUSE => Err(peer_refusal(&body)),
        t => Err(refuse(s, Refusal::Malformed(format!("unexpected message `{t}`"))).await),
    }
}

/// Listener side: this rank is `id.rank`, the connector must be `expected_peer`.
pub async fn accept<S>(
    s: &mut S,
    id: Identity<'_>,
    expected_peer: u32,
) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut pre = [0u8; 10];
    s.read_exact(&mut pre).await?;
    if pre[..8] != MAGIC {
        return Err(refuse(s, Refusal::NotSkulk).await);
    }
    let version = u16::from_le_bytes([pre[8], pre[9]]);
    if version != PROTOCOL_VERSION {
        let why = Refusal::Version {
            connecting: version,
            listening: PROTOCOL_VERSION,
        };
        return Err(refuse(s, why).await);
    }
    let (tag, client_hello) = read_msg(s).await?;
    if tag != TAG_HELLO {
        return Err(refuse(s, Refusal::Malformed(format!("unexpected message `{tag}`"))).await);
    }
    let theirs = match Hello::decode(&client_hello) {
        Ok((h, used)) if used == client_hello.len() => h,
        Ok(_) => {
            return Err(refuse(s, Refusal::Malformed("trailing bytes after hello".into())).await)
        }
        Err(why) => return Err(refuse(s, why).await),
    };
    if theirs.digest != id.plan_digest {
        let why = Refusal::PlanDigest {
            connecting: theirs.digest,
            listening: id.plan_digest.to_owned(),
        };
        return Err(refuse(s, why).await);
    }
    if theirs.world != id.world {
        let why = Refusal::WorldSize {
            connecting: theirs.world,
            listening: id.world,
        };
        return Err(refuse(s, why).await);
    }
    if theirs.rank != expected_peer {
        let why = Refusal::Rank {
            side: "connecting",
            found: theirs.rank,
            expected: expected_peer,
        };
        return Err(refuse(s, why).await);
    }
    let server_hello = Hello::new(&id).encode();
    let server_mac = mac(id.secret, b"server", &client_hello, &server_hello)
        .finalize()
        .into_bytes();
    let mut challenge = server_hello.clone();
    challenge.extend_from_slice(&server_mac);
    write_msg(s, TAG_CHALLENGE, &challenge).await?;

    let (tag, body) = read_msg(s).await?;
    match tag {
        TAG_PROOF => {}
        TAG_REFUSE => return Err(peer_refusal(&body)),
        t => return Err(refuse(s, Refusal::Malformed(format!("unexpected message `{t}`"))).await),
    }
    if body.len() != MAC_LEN
        || mac(id.secret, b"client", &client_hello, &server_hello)
            .verify_slice(&body)
            .is_err()
    {
        return Err(refuse(s, Refusal::Auth).await);
    }
    write_msg(s, TAG_ACCEPT, &[]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    const DIGEST: &str = "7f3a0c1e9d2b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b8a9f";

    fn id<'a>(digest: &'a str, rank: u32, world: u32, secret: &'a [u8]) -> Identity<'a> {
        Identity {
            plan_digest: digest,
            rank,
            world,
            secret,
        }
    }

    /// Run a real TCP handshake on loopback: the connector as `c`, expecting
    /// the listener `expected_listener`; the listener as `l`.
    async fn pair(
        c: Identity<'_>,
        expected_listener: u32,
        l: Identity<'_>,
        expected_connector: u32,
    ) -> (Result<(), HandshakeError>, Result<(), HandshakeError>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = async {
            let (mut s, _) = listener.accept().await.unwrap();
            accept(&mut s, l, expected_connector).await
        };
        let client = async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            connect(&mut s, c, expected_listener).await
        };
        tokio::join!(client, server)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn matching_ranks_are_accepted() {
        let (c, s) = rt().block_on(pair(
            id(DIGEST, 2, 3, b"secret"),
            0,
            id(DIGEST, 0, 3, b"secret"),
            2,
        ));
        c.unwrap();
        s.unwrap();
    }

    #[test]
    fn wrong_plan_digest_is_refused_on_both_sides() {
        let (c, s) = rt().block_on(pair(
            id("other-plan", 0, 2, b"secret"),
            1,
            id(DIGEST, 1, 2, b"secret"),
            0,
        ));
        let c = c.unwrap_err().to_string();
        let s = s.unwrap_err().to_string();
        assert!(
            c.starts_with("the peer refused: plan digest mismatch"),
            "{c}"
        );
        assert!(c.contains("`other-plan`") && c.contains(DIGEST), "{c}");
        assert!(s.starts_with("plan digest mismatch"), "{s}");
        assert!(
            s.contains("hint: every rank must run the same plan.json"),
            "{s}"
        );
    }

    #[test]
    fn wrong_secret_is_refused_on_both_sides_and_never_sent() {
        let (c, s) = rt().block_on(pair(
            id(DIGEST, 0, 2, b"secret-of-apply-1"),
            1,
            id(DIGEST, 1, 2, b"secret-of-apply-2"),
            0,
        ));
        // The connector checks the listener's MAC first and refuses it.
        let c = c.unwrap_err();
        assert!(matches!(c, HandshakeError::Refused(Refusal::Auth)), "{c}");
        let s = s.unwrap_err().to_string();
        assert!(
            s.starts_with("the peer refused: authentication failed"),
            "{s}"
        );
    }

    #[test]
    fn a_connector_without_the_secret_cannot_replay_a_proof() {
        // A peer that skips verification and sends a made-up proof is refused
        // by the listener.
        rt().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = async {
                let (mut s, _) = listener.accept().await.unwrap();
                accept(&mut s, id(DIGEST, 1, 2, b"secret"), 0).await
            };
            let client = async {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let mut pre = MAGIC.to_vec();
                pre.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
                s.write_all(&pre).await.unwrap();
                let hello = Hello::new(&id(DIGEST, 0, 2, b"")).encode();
                write_msg(&mut s, TAG_HELLO, &hello).await.unwrap();
                let (tag, _) = read_msg(&mut s).await.unwrap();
                assert_eq!(tag, TAG_CHALLENGE);
                write_msg(&mut s, TAG_PROOF, &[0u8; MAC_LEN]).await.unwrap();
                let (tag, body) = read_msg(&mut s).await.unwrap();
                (tag, String::from_utf8(body).unwrap())
            };
            let (client, server) = tokio::join!(client, server);
            assert_eq!(client.0, TAG_REFUSE);
            assert!(
                client.1.starts_with("authentication failed"),
                "{}",
                client.1
            );
            assert!(matches!(
                server.unwrap_err(),
                HandshakeError::Refused(Refusal::Auth)
            ));
        });
    }

    #[test]
    fn wrong_version_is_refused_with_a_reason() {
        rt().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = async {
                let (mut s, _) = listener.accept().await.unwrap();
                accept(&mut s, id(DIGEST, 1, 2, b"secret"), 0).await
            };
            let client = async {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let mut pre = MAGIC.to_vec();
                pre.extend_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
                s.write_all(&pre).await.unwrap();
                let (tag, body) = read_msg(&mut s).await.unwrap();
                (tag, String::from_utf8(body).unwrap())
            };
            let (client, server) = tokio::join!(client, server);
            assert_eq!(client.0, TAG_REFUSE);
            assert!(
                client.1.starts_with(&format!(
                    "protocol version mismatch: the connecting rank speaks version `{}`",
                    PROTOCOL_VERSION + 1
                )),
                "{}",
                client.1
            );
            assert!(matches!(
                server.unwrap_err(),
                HandshakeError::Refused(Refusal::Version { .. })
            ));
        });
    }

    #[test]
    fn wrong_rank_and_world_size_are_refused() {
        let (c, s) = rt().block_on(pair(
            id(DIGEST, 1, 3, b"k"),
            2,
            id(DIGEST, 2, 3, b"k"),
            // The listener expects rank 1; make it expect rank 0 instead.
            0,
        ));
        assert!(c.unwrap_err().to_string().contains("rank mismatch"));
        assert!(matches!(
            s.unwrap_err(),
            HandshakeError::Refused(Refusal::Rank {
                side: "connecting",
                found: 1,
                expected: 0
            })
        ));
        let (c, s) = rt().block_on(pair(id(DIGEST, 0, 2, b"k"), 1, id(DIGEST, 1, 3, b"k"), 0));
        assert!(c.unwrap_err().to_string().contains("world size mismatch"));
        assert!(s.unwrap_err().to_string().contains("world size mismatch"));
    }

    #[test]
    fn a_stranger_is_refused() {
        rt().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = async {
                let (mut s, _) = listener.accept().await.unwrap();
                accept(&mut s, id(DIGEST, 1, 2, b"secret"), 0).await
            };
            let client = async {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            };
            let ((), server) = tokio::join!(client, server);
            assert!(matches!(
                server.unwrap_err(),
                HandshakeError::Refused(Refusal::NotSkulk)
            ));
        });
    }
}
