//! A fake Hugging Face Hub for tests: serves repositories from memory in the
//! hub's URL scheme (`/api/models/{repo}/tree/{rev}`,
//! `/{repo}/resolve/{rev}/{file}` with HEAD, ranges and LFS ETags), with
//! token-protected repositories and injectable transfer faults, on
//! `127.0.0.1:0` in a thread of its own. Every request is logged.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use sha2::{Digest, Sha256};

/// A commit id the fake hub resolves every revision to.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Clone)]
pub struct FakeFile {
    pub path: String,
    pub data: Arc<Vec<u8>>,
    /// Served as an LFS file (ETag = sha256), like weights on the hub.
    pub lfs: bool,
    /// Lie about the sha256 (checksum-failure tests).
    pub wrong_sha: bool,
    sha256: String,
}

impl FakeFile {
    pub fn new(path: &str, data: Vec<u8>) -> FakeFile {
        let lfs = path.ends_with(".gguf") || path.ends_with(".safetensors");
        FakeFile {
            path: path.into(),
            sha256: hex::encode(Sha256::digest(&data[..])),
            data: Arc::new(data),
            lfs,
            wrong_sha: false,
        }
    }

    pub fn sha256(&self) -> String {
        self.sha256.clone()
    }
}

#[derive(Clone, Default)]
pub struct FakeRepo {
    pub files: Vec<FakeFile>,
    /// Bearer token required for every request.
    pub token: Option<String>,
}

/// A transfer fault for GETs of one file.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Send this many bytes of the body, then break the connection; for the
    /// next `times` GETs.
    DropAfter { bytes: usize, times: u32 },
    /// Answer range requests with the whole file (200).
    IgnoreRange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    repos: HashMap<String, FakeRepo>,
    faults: HashMap<String, Fault>,
    log: Vec<Request>,
}

#[derive(Clone)]
pub struct FakeHub {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeHub {
    /// Start serving `repos` (`ORG/NAME` -> repository).
    pub fn start(repos: Vec<(&str, FakeRepo)>) -> FakeHub {
        let inner = Arc::new(Mutex::new(Inner {
            repos: repos.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Inner::default()
        }));
        let state = inner.clone();
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        FakeHub {
            url: format!("http://{addr}"),
            inner,
        }
    }

    pub fn set_fault(&self, file: &str, fault: Option<Fault>) {
        let mut g = self.inner.lock().unwrap();
        match fault {
            Some(f) => g.faults.insert(file.to_string(), f),
            None => g.faults.remove(file),
        };
    }

    pub fn log(&self) -> Vec<Request> {
        self.inner.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.inner.lock().unwrap().log.clear();
    }

    /// Range headers of GETs of `file`'s resolve URL.
    pub fn gets(&self, file: &str) -> Vec<Option<String>> {
        self.log()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.contains("/resolve/") && r.path.ends_with(file))
            .map(|r| r.range)
            .collect()
    }
}

fn status(code: StatusCode, error: &str) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({ "error": error }).to_string(),
        ))
        .unwrap()
}

/// Undo the URL's percent-encoding.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    State(state): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_string();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut g = state.lock().unwrap();
    g.log.push(Request {
        method: method.to_string(),
        path: path.clone(),
        range: header("range"),
        authorization: header("authorization"),
    });
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/models/{org}/{name}/tree/{rev} or /{org}/{name}/resolve/{rev}/{file...}
    let (repo_id, rest) =
        if segs.len() >= 6 && segs[0] == "api" && segs[1] == "models" && segs[4] == "tree" {
            (format!("{}/{}", segs[2], segs[3]), None)
        } else if segs.len() >= 5 && segs[2] == "resolve" {
            (
                format!("{}/{}", segs[0], segs[1]),
                Some(decode(&segs[4..].join("/"))),
            )
        } else {
            return status(StatusCode::NOT_FOUND, "not found");
        };
    let Some(repo) = g.repos.get(&repo_id).cloned() else {
        return status(StatusCode::NOT_FOUND, "Repository not found");
    };
    if let Some(token) = &repo.token {
        if header("authorization").as_deref() != Some(&format!("Bearer {token}")) {
            return status(
                StatusCode::UNAUTHORIZED,
                "Invalid credentials in Authorization header",
            );
        }
    }
    let rev = decode(if rest.is_none() { segs[5] } else { segs[3] });
    if rev != "main" && rev != COMMIT {
        return status(StatusCode::NOT_FOUND, "Invalid rev id");
    }
    let Some(file_path) = rest else {
        let entries: Vec<_> = repo
            .files
            .iter()
            .map(|f| {
                let mut e = serde_json::json!({
                    "type": "file", "oid": "0000000000000000000000000000000000000000",
                    "size": f.data.len(), "path": f.path,
                });
                if f.lfs {
                    e["lfs"] = serde_json::json!({"oid": f.sha256(), "size": f.data.len(), "pointerSize": 134});
                }
                e
            })
            .collect();
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(serde_json::Value::Array(entries).to_string()))
            .unwrap();
    };
    let Some(file) = repo.files.iter().find(|f| f.path == file_path).cloned() else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("x-error-code", "EntryNotFound")
            .body(Body::from("{\"error\":\"Entry not found\"}"))
            .unwrap();
    };
    let len = file.data.len();
    let etag = if file.wrong_sha {
        "f".repeat(64)
    } else if file.lfs {
        file.sha256()
    } else {
        "1111111111111111111111111111111111111111".into()
    };
    let base = || {
        Response::builder()
            .header("etag", format!("\"{etag}\""))
            .header("x-repo-commit", COMMIT)
            .header("accept-ranges", "bytes")
    };
    if method == Method::HEAD {
        return base()
            .header("content-length", len)
            .header("x-linked-size", len)
            .body(Body::empty())
            .unwrap();
    }
    let fault = g.faults.get(&file_path).cloned();
    let mut range = header("range").and_then(|r| {
        let r = r.strip_prefix("bytes=")?;
        let (a, b) = r.split_once('-')?;
        let a: usize = a.parse().ok()?;
        let b: usize = if b.is_empty() {
            len - 1
        } else {
            b.parse().ok()?
        };
        (a <= b && b < len).then_some((a, b))
    });
    if matches!(fault, Some(Fault::IgnoreRange)) {
        range = None;
    }
    let (start, end, code) = match range {
        Some((a, b)) => (a, b + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, len, StatusCode::OK),
    };
    let body = file.data[start..end].to_vec();
    let mut resp = base().status(code).header("content-length", body.len());
    if code == StatusCode::PARTIAL_CONTENT {
        resp = resp.header("content-range", format!("bytes {start}-{}/{len}", end - 1));
    }
    if let Some(Fault::DropAfter { bytes, times }) = fault {
        if times > 0 {
            g.faults.insert(
                file_path.clone(),
                Fault::DropAfter {
                    bytes,
                    times: times - 1,
                },
            );
            let head = body[..bytes.min(body.len())].to_vec();
            // The pause lets the sent bytes reach the client before the
            // connection is torn down.
            let stream = futures::StreamExt::chain(
                futures::stream::once(async move {
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(head))
                }),
                futures::stream::once(async {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    Err(std::io::Error::other("injected fault: connection dropped"))
                }),
            );
            return resp.body(Body::from_stream(stream)).unwrap();
        }
    }
    resp.body(Body::from(body)).unwrap()
}
