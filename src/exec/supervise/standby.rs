//! The standby listener: while no ring serves, something on the API host
//! answers at the API address with `503 Service Unavailable` and a
//! `Retry-After`, so clients back off instead of seeing connection refused.
//!
//! `skulk standby` (hidden; started by the supervisor on the API host, in
//! the run directory of the plan's rank 0) binds the plan's API address,
//! answers every request so, and exits after a bounded lifetime: a
//! supervisor that died cannot leave it holding the port for long. The
//! supervisor stops it before any rank of the plan starts (the rank binds
//! the same port); `skulk down` stops it with the rank (`script::stop`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::exec::remote::Action;
use crate::exec::script::{SkulkLocation, STOP_STANDBY_SH};
use crate::exec::target::RunLayout;
use crate::output;
use crate::plan::document::{PlanDocument, RankSelector};

/// The file in the run directory that holds the standby's pid.
pub const PID_FILE: &str = "standby.pid";

/// Longest a standby lives without being started again: the supervisor
/// restarts it while it still waits, and an orphan frees the API port by
/// then.
pub const LIFETIME: Duration = Duration::from_secs(600);

/// Bytes of a request read before answering (the answer does not depend on
/// it; reading lets the client finish sending).
const MAX_REQUEST: usize = 16 * 1024;

/// How long one client may take to send its request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StandbyError {
    #[error("plan `{path}`: {message}")]
    Plan { path: String, message: String },
    #[error("cannot answer on `{addr}`: {source}\n\nhint: a rank of the plan, or another process, holds the API port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The answer to every request.
pub fn response(path: &str, retry_after: u32) -> String {
    let body = if path == "/health" {
        serde_json::json!({"status": "restarting", "inFlight": 0})
    } else {
        serde_json::json!({"error": {
            "message": format!("the model is being restarted by its supervisor; retry in {retry_after} s"),
            "type": "server_error",
            "param": null,
            "code": "ring_restarting",
        }})
    }
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The API address of the plan at `plan` (rank 0's bind address).
pub fn api_addr(plan: &Path) -> Result<SocketAddr, StandbyError> {
    let err = |message: String| StandbyError::Plan {
        path: plan.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(plan).map_err(|e| err(e.to_string()))?;
    let doc = PlanDocument::from_json(&text).map_err(|e| err(e.to_string()))?;
    let spec = doc
        .rank_spec(RankSelector::Rank(0))
        .map_err(|e| err(e.to_string()))?;
    let host = spec.api.address.trim_matches(['[', ']']);
    let ip = host
        .parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(&(host, 0))
                .map_err(|e| e.to_string())
                .and_then(|mut a| a.next().map(|a| a.ip()).ok_or_else(|| "no address".into()))
        })
        .map_err(|e| err(format!("API address `{host}`: {e}")))?;
    Ok(SocketAddr::new(ip, spec.api.port))
}

/// Serves 503 at `addr` for `lifetime`.
pub fn serve(addr: SocketAddr, retry_after: u32, lifetime: Duration) -> Result<(), StandbyError> {
    let listener = TcpListener::bind(addr).map_err(|source| StandbyError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StandbyError::Bind { addr, source })?;
    output::progress(format!(
        "skulk standby: answering 503 (Retry-After: {retry_after}) on http://{addr}"
    ));
    let end = Instant::now() + lifetime;
    while Instant::now() < end {
        match listener.accept() {
            Ok((s, _)) => {
                std::thread::spawn(move || answer(s, retry_after));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    output::progress(format!(
        "skulk standby: lifetime of {} s over; exiting",
        lifetime.as_secs()
    ));
    Ok(())
}

fn answer(mut s: TcpStream, retry_after: u32) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = s.set_write_timeout(Some(CLIENT_TIMEOUT));
    let mut req = Vec::new();
    let mut buf = [0u8; 2048];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < MAX_REQUEST {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&req);
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/");
    let _ = s.write_all(response(path, retry_after).as_bytes());
    let _ = s.flush();
}

/// Starts the standby in `layout` (where the plan copy is) with `skulk`,
/// detached like a rank; stops an older one there first. Prints `pid=N`.
pub fn launch(layout: &RunLayout, skulk: &SkulkLocation, retry_after: u32) -> Action {
    let mut s = String::from("set -e\n");
    s.push_str(&format!("d={}\ncd \"$d\"\n", layout.dir.sh()));
    s.push_str(&skulk.resolve_sh());
    s.push_str("[ -n \"$skulk\" ] || { echo \"skulk not found on this host\" >&2; exit 1; }\n");
    s.push_str(STOP_STANDBY_SH);
    s.push_str("detach=; if command -v setsid >/dev/null 2>&1; then detach=setsid; fi\n");
    s.push_str(&format!(
        "nohup $detach sh -c 'echo $$ >\"$0\"/{PID_FILE}; exec \"$@\"' \"$d\" \"$skulk\" standby --plan \"$d\"/plan.json --retry-after {retry_after} --lifetime {} </dev/null >>standby.log 2>&1 &\n",
        LIFETIME.as_secs()
    ));
    s.push_str(&format!(
        "n=0; while [ ! -s {PID_FILE} ]; do n=$((n + 1)); [ $n -le 100 ] || {{ echo \"the standby did not start\" >&2; exit 1; }}; sleep 0.05; done\necho \"pid=$(cat {PID_FILE})\"\n"
    ));
    Action::run("start standby listener", s)
}

/// Stops the standby in `layout`, if one runs.
pub fn stop(layout: &RunLayout) -> Action {
    Action::run(
        "stop standby listener",
        format!("d={}\n{STOP_STANDBY_SH}", layout.dir.sh()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_gets_503_with_retry_after() {
        let r = response("/v1/chat/completions", 5);
        assert!(
            r.starts_with("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n"),
            "{r}"
        );
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "ring_restarting");
        let h = response("/health", 2);
        assert!(h.contains("\"status\":\"restarting\""), "{h}");
    }

    #[test]
    fn a_served_standby_answers_clients_until_its_lifetime_ends() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let t = std::thread::spawn(move || serve(addr, 3, Duration::from_secs(2)));
        let mut h = None;
        for _ in 0..100 {
            if let Ok(a) =
                crate::exec::health::get("127.0.0.1", port, "/health", None, Duration::from_secs(1))
            {
                h = Some(a);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let h = h.expect("the standby answers");
        assert_eq!(h.0, 503, "{h:?}");
        assert!(h.1.contains("restarting"), "{h:?}");
        t.join().unwrap().unwrap();
        // Gone after its lifetime: the port is free again.
        assert!(TcpListener::bind(addr).is_ok());
    }
}
