//! Rank 0's readiness, as `apply` and `status` see it: one `GET /health`
//! over plain HTTP/1.1 from this machine. The API answers 200 only when the
//! whole ring is up, so 200 is the one answer that means ready.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Serialize;

use super::target::bracket;

/// Longest wait for one health answer; the endpoint does no work.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Bytes of a response kept for messages.
const MAX_RESPONSE: u64 = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Health {
    /// 200.
    Ready,
    /// Any other HTTP status.
    NotReady { status: u16, body: String },
    /// No HTTP answer (refused, timed out, not HTTP).
    Unreachable { error: String },
}

impl Health {
    pub fn is_ready(&self) -> bool {
        *self == Health::Ready
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Ready => f.write_str("ready"),
            Health::NotReady { status, body } if body.is_empty() => {
                write!(f, "not ready (HTTP {status})")
            }
            Health::NotReady { status, body } => {
                write!(f, "not ready (HTTP {status}: {})", body.trim())
            }
            Health::Unreachable { error } => write!(f, "unreachable ({error})"),
        }
    }
}

/// `GET /health` at `host:port`, with the bearer token when one is given.
pub fn check(host: &str, port: u16, api_key: Option<&str>, timeout: Duration) -> Health {
    match get(host, port, "/health", api_key, timeout) {
        Ok((200, _)) => Health::Ready,
        Ok((status, body)) => Health::NotReady { status, body },
        Err(e) => Health::Unreachable {
            error: e.to_string(),
        },
    }
}

/// `GET path` at `host:port`: the status and the body.
pub fn get(
    host: &str,
    port: u16,
    path: &str,
    api_key: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let addr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let auth = api_key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}:{port}\r\n{auth}Accept: */*\r\nConnection: close\r\n\r\n",
        bracket(host)
    );
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "request ended early");
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (port, h)
    }

    #[test]
    fn status_200_is_ready_and_the_token_is_sent() {
        let (port, h) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(
            check("127.0.0.1", port, Some("tok"), HEALTH_TIMEOUT),
            Health::Ready
        );
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Authorization: Bearer tok\r\n"), "{req}");
    }

    #[test]
    fn other_statuses_and_silence_are_not_ready() {
        let (port, _h) = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\nring forming");
        assert_eq!(
            check("127.0.0.1", port, None, HEALTH_TIMEOUT),
            Health::NotReady {
                status: 503,
                body: "ring forming".into()
            }
        );
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(matches!(
            check("127.0.0.1", port, None, HEALTH_TIMEOUT),
            Health::Unreachable { .. }
        ));
    }
}
