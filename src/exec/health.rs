//! Rank 0's readiness, as `apply` and `status` see it: one `GET /health`
//! over plain HTTP/1.1 from this machine. The API answers 200 only when the
//! whole ring is up, so 200 is the one answer that means ready; its body
//! says which plan answers and how busy the ring is.

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
    Ready(Load),
    /// Any other HTTP status.
    NotReady { status: u16, body: String },
    /// No HTTP answer (refused, timed out, not HTTP).
    Unreachable { error: String },
}

/// What a ready API says about itself (absent fields: an older skulk).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    /// The digest of the plan whose ring answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_digest: Option<String>,
    /// Requests generating now.
    pub running: u64,
    /// How long the oldest running request has been running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_seconds: Option<u64>,
    /// Requests waiting for their turn.
    pub waiting: u64,
}

impl Load {
    /// Reads the body of a 200 answer (`{"status": "ok", "plan": ...}`).
    fn parse(body: &str) -> Load {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        Load {
            plan_digest: v["plan"].as_str().map(str::to_owned),
            running: v["running"].as_u64().unwrap_or(0),
            running_seconds: v["running_seconds"].as_u64(),
            waiting: v["waiting"].as_u64().unwrap_or(0),
        }
    }
}

impl fmt::Display for Load {
    /// `idle`, or `busy: 1 request running for 2m03s, 2 waiting`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.running == 0 && self.waiting == 0 {
            return f.write_str("idle");
        }
        write!(
            f,
            "busy: {} request{} running",
            self.running,
            if self.running == 1 { "" } else { "s" }
        )?;
        if let Some(s) = self.running_seconds {
            write!(f, " for {}", super::status::duration(s))?;
        }
        if self.waiting > 0 {
            write!(f, ", {} waiting", self.waiting)?;
        }
        Ok(())
    }
}

impl Health {
    /// Ready, and serving the plan with this digest (an API of an older
    /// skulk, which does not say, is taken at its word).
    pub fn is_ready_for(&self, digest: &str) -> bool {
        match self {
            Health::Ready(load) => load.plan_digest.as_deref().is_none_or(|d| d == digest),
            _ => false,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Ready(load) => write!(f, "ready, {load}"),
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
        Ok((200, body)) => Health::Ready(Load::parse(&body)),
        Ok((status, body)) => Health::NotReady { status, body },
        Err(e) => Health::Unreachable {
            error: e.to_string(),
        },
    }
}

fn get(
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
            Health::Ready(Load::default())
        );
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Authorization: Bearer tok\r\n"), "{req}");
    }

    #[test]
    fn a_busy_ring_says_so_with_the_age_of_its_request() {
        let (port, _h) = serve_once(
            "HTTP/1.1 200 OK\r\n\r\n{\"status\":\"ok\",\"plan\":\"ab12\",\"running\":1,\"running_seconds\":123,\"waiting\":2}",
        );
        let h = check("127.0.0.1", port, None, HEALTH_TIMEOUT);
        let Health::Ready(load) = &h else {
            panic!("{h:?}")
        };
        assert_eq!(load.plan_digest.as_deref(), Some("ab12"));
        assert_eq!(
            h.to_string(),
            "ready, busy: 1 request running for 2m03s, 2 waiting"
        );
        assert_eq!(Load::default().to_string(), "idle");
        assert!(h.is_ready_for("ab12") && !h.is_ready_for("cd34"));
        assert!(Health::Ready(Load::default()).is_ready_for("cd34"));
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
