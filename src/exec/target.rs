//! What the executor needs from a plan, per rank, and where a rank's files
//! live on its host.
//!
//! A [`Deployment`] is read from a plan document and nothing else: every
//! address, port, layer range, path and connection setting comes from the
//! plan, so `apply` makes no decision the plan did not make. The one rule
//! this module adds is the on-host layout of a run ([`RunLayout`]), which is
//! a pure function of the plan digest and the node name, so `status`, `down`
//! and `logs` find what `apply` left without any local state.

use std::fmt;

use std::path::Path;

use super::remote::{Connection, RemotePath};
use super::ExecError;
use crate::backend::{check_runnable, NotRunnable};
use crate::inventory::Connection as InvConnection;
use crate::plan::memory::{ModelMemory, KV_BUDGET_TOKENS};
use crate::plan::PlanDocument;
use crate::settings::paths::{RUNS_DIR, SLICE_CACHE_DIR};
use crate::settings::ports::DEFAULT_SSH_PORT;

/// Hex digits of the plan digest that name a run directory: 64 bits, so two
/// plans on one host collide with probability about n^2 / 2^65.
const DIGEST_PREFIX: usize = 16;

/// A plan as the executor sees it.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// `planDigest`, lowercase hex.
    pub digest: String,
    /// The plan document's bytes, copied verbatim to every host.
    pub plan_bytes: Vec<u8>,
    pub model_id: String,
    /// The ring port every rank listens on at its own address.
    pub ring_port: u16,
    /// Where rank 0 serves the API.
    pub api_address: String,
    pub api_port: u16,
    /// In rank order.
    pub ranks: Vec<RankTarget>,
}

/// One rank of a plan: where it runs and what it needs there.
#[derive(Clone, Debug)]
pub struct RankTarget {
    pub rank: u32,
    pub world_size: u32,
    /// The plan's node id (the inventory host name).
    pub node: String,
    /// SSH target, ring address and (rank 0) API address.
    pub address: String,
    pub connection: Connection,
    /// `[start, end)` of `n_layers`.
    pub start_layer: u32,
    pub end_layer: u32,
    pub n_layers: u32,
    pub model: ModelFile,
    /// Memory the rank needs on its host by the plan's memory model, bytes.
    pub need_bytes: Option<u64>,
}

/// The model file a rank reads: `<dir>/<org>--<name>/<file>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFile {
    pub dir: RemotePath,
    /// `<org>--<name>/<ggufFile>`.
    pub relative: String,
    /// The card's `storageSize`: the file's size, or for a split GGUF the
    /// whole group's (the first part is then at most this).
    pub size: u64,
    /// The file is the first part of a split GGUF.
    pub split: bool,
    /// Lowercase hex, when the plan gives one.
    pub sha256: Option<String>,
}

impl ModelFile {
    pub fn path(&self) -> RemotePath {
        self.dir.join(&self.relative)
    }
}

impl RankTarget {
    pub fn layout(&self, digest: &str) -> RunLayout {
        RunLayout::new(digest, &self.node)
    }

    pub fn layers(&self) -> LayerRange {
        LayerRange(self.start_layer, self.end_layer)
    }

    /// Whether this rank holds every layer (nothing to cut into the cache).
    pub fn whole_model(&self) -> bool {
        self.start_layer == 0 && self.end_layer == self.n_layers
    }

    /// `user@address:port` or `local`, for messages.
    pub fn reach(&self) -> String {
        match &self.connection {
            Connection::Local => "local".to_owned(),
            Connection::Ssh { user, port, .. } => {
                let user = user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
                format!(
                    "{user}{}:{}",
                    self.address,
                    port.unwrap_or(DEFAULT_SSH_PORT)
                )
            }
        }
    }
}

/// A half-open layer range, shown as `[s, e)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerRange(pub u32, pub u32);

impl fmt::Display for LayerRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.0, self.1)
    }
}

impl Deployment {
    /// Reads a plan document (`skulk plan --out`), verified by its digest,
    /// and refuses what skulk's engine cannot run: jaccl instances, tensor
    /// shards, backends other than llama.cpp, cards without a GGUF file.
    /// `path` is for messages.
    pub fn from_plan_json(path: &Path, bytes: Vec<u8>) -> Result<Deployment, ExecError> {
        let invalid = |m: String| ExecError::Invalid(format!("plan `{}`: {m}", path.display()));
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| invalid("not UTF-8 text, so not a plan document".into()))?;
        let doc = PlanDocument::from_json(text).map_err(|e| invalid(e.to_string()))?;
        Deployment::with_bytes(path, doc, bytes)
    }

    /// A verified plan document, read from `path` (JSON or YAML); the hosts
    /// get its canonical JSON.
    pub fn from_document(path: &Path, doc: PlanDocument) -> Result<Deployment, ExecError> {
        let bytes = doc.to_json().into_bytes();
        Deployment::with_bytes(path, doc, bytes)
    }

    fn with_bytes(path: &Path, doc: PlanDocument, bytes: Vec<u8>) -> Result<Deployment, ExecError> {
        let invalid = |m: String| ExecError::Invalid(format!("plan `{}`: {m}", path.display()));
        let specs = doc.rank_specs().map_err(|e| invalid(e.to_string()))?;
        let mut ranks = Vec::with_capacity(specs.len());
        for spec in &specs {
            let on = |m: String| invalid(format!("rank {} on `{}`: {m}", spec.rank, spec.node));
            let gguf = check_runnable(spec).map_err(|e| match e {
                // The whole plan's, not one rank's.
                NotRunnable::Jaccl | NotRunnable::Engine(_) => invalid(e.to_string()),
                _ => on(e.to_string()),
            })?;
            let connection = match spec.connection {
                InvConnection::Local => Connection::Local,
                InvConnection::Ssh => Connection::Ssh {
                    user: spec.ssh.as_ref().and_then(|s| s.user.clone()),
                    port: spec.ssh.as_ref().map(|s| s.port),
                    identity_file: spec.ssh.as_ref().and_then(|s| s.identity_file.clone()),
                },
            };
            let layers = u128::from(spec.end_layer - spec.start_layer);
            let tokens = spec.context_token_limit.unwrap_or(KV_BUDGET_TOKENS);
            let need = ModelMemory::new(&spec.model_card, tokens)
                .breakdown(layers, u128::from(spec.n_layers))
                .need;
            ranks.push(RankTarget {
                rank: spec.rank,
                world_size: spec.world_size,
                node: spec.node.clone(),
                address: spec.address.clone(),
                connection,
                start_layer: spec.start_layer,
                end_layer: spec.end_layer,
                n_layers: spec.n_layers,
                model: ModelFile {
                    dir: RemotePath::parse(&spec.model_dir),
                    relative: format!("{}/{gguf}", spec.normalized_model_id),
                    size: spec.model_card.storage_size.in_bytes,
                    split: crate::gguf::split_name(gguf).is_some(),
                    sha256: None,
                },
                need_bytes: Some(need),
            });
        }
        let first = specs
            .first()
            .ok_or_else(|| invalid("the plan has no ranks".into()))?;
        Ok(Deployment {
            digest: doc.skulk.plan_digest.clone(),
            plan_bytes: bytes,
            model_id: first.model_card.model_id.clone(),
            ring_port: first.ring_port,
            api_address: first.api.address.clone(),
            api_port: first.api.port,
            ranks,
        })
    }

    /// The first `DIGEST_PREFIX` hex digits of the digest.
    pub fn short_digest(&self) -> &str {
        short(&self.digest)
    }

    /// `http://ADDR:PORT/v1`, the base URL OpenAI clients take. A wildcard
    /// bind address is reached through rank 0's own address.
    pub fn endpoint(&self) -> String {
        let (host, port) = self.api_target();
        format!("http://{}:{port}/v1", bracket(&host))
    }

    /// Where to connect to reach the API.
    pub fn api_target(&self) -> (String, u16) {
        let wildcard = matches!(self.api_address.as_str(), "0.0.0.0" | "::" | "[::]" | "");
        let host = if wildcard {
            self.ranks
                .first()
                .map(|r| r.address.clone())
                .unwrap_or_else(|| "127.0.0.1".to_owned())
        } else {
            self.api_address.clone()
        };
        (host, self.api_port)
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(DIGEST_PREFIX)]
}

/// `[addr]` for IPv6 literals in URLs.
pub fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The files of one rank's run on its host, all in one directory:
/// `~/.cache/skulk/runs/<digest prefix>/<node>/`. The node is part of the
/// path so that ranks of one plan sharing a filesystem (several ranks on one
/// machine, or test hosts) never share files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLayout {
    pub dir: RemotePath,
}

impl RunLayout {
    pub fn new(digest: &str, node: &str) -> RunLayout {
        RunLayout {
            dir: RemotePath::Home(format!("{RUNS_DIR}/{}/{node}", short(digest))),
        }
    }

    pub fn runs_root() -> RemotePath {
        RemotePath::Home(RUNS_DIR.to_owned())
    }

    pub fn slice_cache() -> RemotePath {
        RemotePath::Home(SLICE_CACHE_DIR.to_owned())
    }

    pub fn file(&self, name: &str) -> RemotePath {
        self.dir.join(name)
    }

    /// The plan copy the rank reads.
    pub fn plan(&self) -> RemotePath {
        self.file("plan.json")
    }

    /// The ring secret, hex, mode 0600; removed by `down`.
    pub fn secret(&self) -> RemotePath {
        self.file("secret")
    }

    /// The API bearer token (rank 0 only), mode 0600; removed by `down`.
    pub fn api_key(&self) -> RemotePath {
        self.file("api-key")
    }

    /// stdout and stderr of the rank, appended across starts; kept by `down`.
    pub fn log(&self) -> RemotePath {
        self.file("rank.log")
    }

    /// Written by the rank's shell just before it becomes `skulk run-shard`.
    pub fn pid(&self) -> RemotePath {
        self.file("rank.pid")
    }

    /// The state record: `key=value` lines (see `script::launch`).
    pub fn state(&self) -> RemotePath {
        self.file("state")
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A three-rank deployment over SSH hosts `h1..h3` at 10.0.0.1..3.
    pub fn deployment(n: u32) -> Deployment {
        let layers = 30;
        let ranks = (0..n)
            .map(|i| RankTarget {
                rank: i,
                world_size: n,
                node: format!("h{}", i + 1),
                address: format!("10.0.0.{}", i + 1),
                connection: Connection::Ssh {
                    user: Some("skulk".into()),
                    port: None,
                    identity_file: None,
                },
                start_layer: layers * i / n,
                end_layer: layers * (i + 1) / n,
                n_layers: layers,
                model: ModelFile {
                    dir: RemotePath::parse(crate::settings::paths::DEFAULT_MODEL_DIR),
                    relative: "org--model/model.Q4_1.gguf".into(),
                    size: 98_362_432,
                    split: false,
                    sha256: None,
                },
                need_bytes: Some(400 << 20),
            })
            .collect();
        Deployment {
            digest: "0123456789abcdef".repeat(4),
            plan_bytes: b"{\"plan\":true}\n".to_vec(),
            model_id: "org/model".into(),
            ring_port: 50001,
            api_address: "10.0.0.1".into(),
            api_port: 52415,
            ranks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directories_are_per_plan_and_node() {
        let d = fixtures::deployment(3);
        let a = d.ranks[0].layout(&d.digest);
        let b = d.ranks[1].layout(&d.digest);
        assert_eq!(a.dir.to_string(), "~/.cache/skulk/runs/0123456789abcdef/h1");
        assert_ne!(a.dir, b.dir);
        assert_eq!(
            a.plan().to_string(),
            "~/.cache/skulk/runs/0123456789abcdef/h1/plan.json"
        );
    }

    #[test]
    fn endpoint_uses_rank0_address_for_wildcard_binds() {
        let mut d = fixtures::deployment(2);
        assert_eq!(d.endpoint(), "http://10.0.0.1:52415/v1");
        d.api_address = "0.0.0.0".into();
        d.ranks[0].address = "10.9.9.9".into();
        assert_eq!(d.endpoint(), "http://10.9.9.9:52415/v1");
        d.api_address = "fd00::1".into();
        assert_eq!(d.endpoint(), "http://[fd00::1]:52415/v1");
    }

    #[test]
    fn model_path_follows_the_store_layout() {
        let d = fixtures::deployment(1);
        assert_eq!(
            d.ranks[0].model.path().to_string(),
            "~/.cache/skulk/models/org--model/model.Q4_1.gguf"
        );
    }
}
