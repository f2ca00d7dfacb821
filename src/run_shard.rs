//! `skulk run-shard`: turns a verified plan document and this host's files
//! into [`RankSettings`] and runs the rank.
//!
//! Everything a rank does before joining the ring happens here, in order:
//! read and verify the plan, pick this rank's spec, refuse what the llama.cpp
//! engine cannot run, find and check the model file (`<modelDir>/<org>--<name>/
//! <ggufFile>`, sizes against the card), cut the rank-local GGUF into the
//! slice cache (keyed by a model fingerprint and the layer range), read the
//! ring secret and API key (environment, a file or standard input; never a
//! command line), and resolve the addresses. Every error names the host and
//! the path or field involved.

use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::engine::EngineOptions;
use crate::gguf::split_name;
use crate::inventory::GpuLayers;
use crate::plan::document::{PlanDocument, PlanFileError, RankSelector, RankSpec};
use crate::rank::{self, ApiSettings, MetricsSettings, RankSettings};
use crate::ring::WireFormat;
use crate::settings::{env, paths};

/// Context budget when neither the plan nor the card gives one: llama.cpp
/// preallocates `n_ctx`, and this is the planner's GGUF cap.
const FALLBACK_CONTEXT: u32 = 8192;

/// Bytes hashed at each end of the model file for its cache fingerprint: the
/// GGUF header (names, shapes, offsets) lives at the start, and the last
/// tensor's data at the end.
const FINGERPRINT_WINDOW: u64 = 1 << 20;

/// Which rank of the plan this process runs.
#[derive(Debug, Clone)]
pub enum Selector {
    Node(String),
    Rank(u32),
}

/// Where the ring secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `--secret-file`.
    File(PathBuf),
    /// `SKULK_RING_SECRET`, else standard input when it is not a terminal.
    EnvOrStdin,
}

/// Resolved `run-shard` settings (no clap types).
#[derive(Debug, Clone)]
pub struct Settings {
    pub plan: PathBuf,
    pub selector: Selector,
    pub secret: SecretSource,
    pub api_key_file: Option<PathBuf>,
    pub threads: Option<u32>,
    /// `--gpu-layers`: overrides the plan's offload.
    pub gpu_layers: Option<GpuLayers>,
    /// `--wire`: the format of the hidden rows this rank sends.
    pub wire: WireFormat,
    /// `--max-tokens`: overrides the plan's default completion length.
    pub max_tokens: Option<u32>,
    /// `--micro-batches`: rank 0's micro-batches in the ring (default: one
    /// per rank).
    pub micro_batches: Option<u32>,
    pub formation_timeout: Duration,
    /// The rank-local slice cache.
    pub cache_dir: PathBuf,
    /// Where the ring reports a slow neighbour (`apply` passes the run
    /// directory's `ring-health`, which `status` reads).
    pub health_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunShardError {
    /// The plan file is unreadable or invalid (exit 1).
    #[error("plan `{path}`: {message}")]
    Plan { path: PathBuf, message: String },
    /// Anything on this host (exit 2).
    #[error("host `{host}`: {message}")]
    Host { host: String, message: String },
    #[error(transparent)]
    Rank(#[from] rank::RankError),
}

impl RunShardError {
    /// Whether the plan document itself is at fault (exit 1).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, RunShardError::Plan { .. })
    }
}

/// `GOMP_SPINCOUNT` for ranks: how long an idle OpenMP worker spins before it
/// sleeps. libgomp's default (300,000 spins, about a millisecond) makes the
/// workers of a rank that has just passed its rows on keep spinning while
/// the next rank computes; with several ranks on one host they take each
/// other's cores. Measured with `scripts/bench-ring` (3 local ranks, 2
/// threads each, 2 cores): decode 46 tok/s with the default against 75 with
/// 10,000, where one process does 88-92. A short spin costs a rank alone on
/// its host only the wake-up of its workers once per token.
#[cfg(feature = "openmp")]
pub const RANK_SPINCOUNT: &str = "10000";

/// Bounds libgomp's spin-wait for this rank (see [`RANK_SPINCOUNT`]).
/// libgomp reads its settings from the environment once, when the process
/// starts, so this re-executes the running binary with `GOMP_SPINCOUNT` set.
/// It returns (doing nothing) when the user chose a policy already
/// (`GOMP_SPINCOUNT` or `OMP_WAIT_POLICY` is set), and after a failed exec,
/// which leaves the rank correct but slower with neighbours on its host.
#[cfg(feature = "openmp")]
pub fn bound_openmp_spin() {
    use std::os::unix::process::CommandExt;
    if env::openmp_wait_policy_set() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(env::GOMP_SPINCOUNT, RANK_SPINCOUNT)
        .exec();
    crate::output::warn(format!(
        "skulk run-shard: could not re-execute `{}` with GOMP_SPINCOUNT={RANK_SPINCOUNT} \
         ({err}); ranks sharing this host's cores will run slower",
        exe.display()
    ));
}

/// Run one rank until the ring stops or fails.
pub fn run(settings: Settings) -> Result<(), RunShardError> {
    let resolved = resolve(&settings)?;
    if let Some(path) = &settings.health_file {
        let _ = std::fs::remove_file(path);
        crate::ring::report_health_to(path.clone());
    }
    #[cfg(feature = "engine")]
    if resolved.engine.gpu_layers > 0 && !crate::engine::supports_gpu_offload() {
        crate::output::warn(format!(
            "skulk run-shard: the plan offloads {} layer(s) of rank {} to the GPU, \
             but this skulk was built without a GPU backend (cargo feature `cuda`, `metal` or \
             `vulkan`): running them on the CPU",
            match resolved.engine.gpu_layers {
                u32::MAX => "all".to_string(),
                n => n.to_string(),
            },
            resolved.rank
        ));
    }
    crate::output::progress(format!(
        "skulk run-shard: rank {}/{} layers {}..{} of {} from `{}`",
        resolved.rank,
        resolved.world_size,
        resolved.layers.start,
        resolved.layers.end,
        resolved.total_layers,
        resolved.model_path.display()
    ));
    rank::run_rank(resolved)?;
    Ok(())
}

/// Everything up to, but not including, starting the rank.
pub fn resolve(settings: &Settings) -> Result<RankSettings, RunShardError> {
    let plan_err = |message: String| RunShardError::Plan {
        path: settings.plan.clone(),
        message,
    };
    let document = PlanDocument::read(&settings.plan).map_err(|e| match e {
        PlanFileError::Document { error, .. } => plan_err(error.to_string()),
        other => plan_err(other.to_string()),
    })?;
    let selector = match &settings.selector {
        Selector::Node(node) => RankSelector::Node(node),
        Selector::Rank(rank) => RankSelector::Rank(*rank),
    };
    let spec = document
        .rank_spec(selector)
        .map_err(|e| plan_err(e.to_string()))?;
    crate::backend::check_runnable(&spec).map_err(|e| plan_err(e.to_string()))?;
    let host_err = |message: String| RunShardError::Host {
        host: spec.node.clone(),
        message,
    };

    let model_path = model_file(&spec).map_err(host_err)?;
    let model_files = check_model_size(&spec, &model_path).map_err(host_err)?;
    let layers = spec.start_layer..spec.end_layer;
    let key = model_fingerprint(&model_files).map_err(host_err)?;
    let local = rank::rank_local_gguf(
        &model_path,
        &key,
        layers.clone(),
        spec.n_layers,
        &settings.cache_dir,
    )
    .map_err(|e| host_err(format!("cannot cut the rank-local model: {e}")))?;

    let secret = if spec.world_size > 1 {
        read_secret(&settings.secret).map_err(host_err)?
    } else {
        Vec::new()
    };
    let api_key =
        env::api_key(settings.api_key_file.as_deref()).map_err(|e| host_err(e.to_string()))?;
    let bind_addr = resolve_ip(&spec.address).map_err(host_err)?;
    let api = if spec.rank == 0 {
        Some(ApiSettings {
            bind_addr: resolve_ip(&spec.api.address).map_err(host_err)?,
            port: spec.api.port,
            api_key: api_key.clone(),
            default_max_tokens: settings
                .max_tokens
                .or(spec.api.max_tokens)
                .unwrap_or(crate::api::DEFAULT_MAX_TOKENS),
            queue_capacity: spec.serving.queue as usize,
            card: crate::api::CardChat::from_card(&spec.model_card),
        })
    } else {
        None
    };
    // Other ranks serve their own metrics on their plan address, at the
    // plan's API port.
    let metrics = (spec.rank != 0).then(|| MetricsSettings {
        addr: std::net::SocketAddr::new(bind_addr, spec.api.port),
        api_key: api_key.clone(),
    });
    let next_addr = match &spec.next {
        Some(peer) => resolve_ip(&peer.address).map_err(host_err)?,
        None => resolve_ip(&spec.address).map_err(host_err)?,
    };
    let context_limit = context_limit(&spec);
    Ok(RankSettings {
        rank: spec.rank,
        world_size: spec.world_size,
        bind_addr,
        next_addr,
        ring_port: spec.ring_port,
        plan_digest: spec.plan_digest.clone(),
        secret,
        layers,
        total_layers: spec.n_layers,
        model_path: local,
        model_id: spec.model_card.model_id.clone(),
        engine: EngineOptions {
            threads: settings.threads.or(spec.threads).unwrap_or(0),
            gpu_layers: match settings.gpu_layers.unwrap_or(spec.gpu_layers) {
                GpuLayers::All => u32::MAX,
                GpuLayers::Count(n) => n,
            },
            n_ctx: context_limit,
            n_seq_max: spec.serving.parallel,
            n_batch: 0,
        },
        context_limit,
        parallel: spec.serving.parallel,
        micro_batches: settings.micro_batches.unwrap_or(spec.machines),
        api,
        formation_deadline: settings.formation_timeout,
        wire: settings.wire,
        silence: silence_policy(&spec),
        metrics,
    })
}

/// The plan's silence limits over skulk's defaults.
fn silence_policy(spec: &RankSpec) -> crate::ring::SilencePolicy {
    let mut policy = crate::ring::SilencePolicy::default();
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    if let Some(v) = spec.ring.silence_limit_ms {
        policy.serving = ms(v);
    }
    if let Some(v) = spec.ring.loading_silence_limit_ms {
        policy.loading = ms(v);
    }
    policy
}

/// `<modelDir>/<org>--<name>/<ggufFile>`, `modelDir` resolved on this host.
fn model_file(spec: &RankSpec) -> Result<PathBuf, String> {
    let dir = paths::resolve(&spec.model_dir).map_err(|e| e.to_string())?;
    let file = spec.gguf_file.as_deref().unwrap_or_default();
    Ok(paths::model_store(&dir, &spec.model_card.model_id).join(file))
}

/// The model file (or every part of a split model) must exist with the card's
/// size. Returns the files (the parts of a split model, in order).
fn check_model_size(spec: &RankSpec, path: &Path) -> Result<Vec<PathBuf>, String> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files: Vec<PathBuf> = match split_name(&file_name) {
        Some(group) => (1..=group.count)
            .map(|i| path.with_file_name(group.part(i)))
            .collect(),
        None => vec![path.to_path_buf()],
    };
    let mut total = 0u64;
    for file in &files {
        let meta = std::fs::metadata(file).map_err(|e| {
            format!(
                "model file `{}` is missing or unreadable: {e}\n\nhint: put it there with `skulk model add FILE --card CARD --model-dir {}`, or run `skulk apply --fetch` to download it",
                file.display(),
                spec.model_dir
            )
        })?;
        total += meta.len();
    }
    let expected = spec.model_card.storage_size.in_bytes;
    if expected > 0 && total != expected {
        return Err(format!(
            "model file `{}` has {total} bytes but the card says `storageSize.inBytes: {expected}` (truncated or a different file)",
            path.display()
        ));
    }
    Ok(files)
}

/// A cheap, content-derived key for the slice cache: sha256 over each
/// file's size and its first and last MiB (every part of a split model). A
/// changed model changes its header or its size; hashing gigabytes at every
/// start would not be cheap.
fn model_fingerprint(files: &[PathBuf]) -> Result<String, String> {
    let mut hasher = Sha256::new();
    for path in files {
        let fail = |e: std::io::Error| format!("cannot read model file `{}`: {e}", path.display());
        let mut file = std::fs::File::open(path).map_err(fail)?;
        let len = file.metadata().map_err(fail)?.len();
        hasher.update(len.to_le_bytes());
        let mut buf = vec![0u8; FINGERPRINT_WINDOW.min(len) as usize];
        file.read_exact(&mut buf).map_err(fail)?;
        hasher.update(&buf);
        file.seek(SeekFrom::Start(len - buf.len() as u64))
            .map_err(fail)?;
        file.read_exact(&mut buf).map_err(fail)?;
        hasher.update(&buf);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn context_limit(spec: &RankSpec) -> u32 {
    let limit = spec
        .context_token_limit
        .or_else(|| Some(spec.model_card.context_length).filter(|&n| n > 0))
        .unwrap_or(u64::from(FALLBACK_CONTEXT));
    u32::try_from(limit).unwrap_or(u32::MAX)
}

fn read_secret(source: &SecretSource) -> Result<Vec<u8>, String> {
    let secret = match source {
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the ring secret file `{}`: {e}", path.display()))?,
        SecretSource::EnvOrStdin => match env::ring_secret() {
            Some(value) => value,
            None if !std::io::stdin().is_terminal() => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| format!("cannot read the ring secret from standard input: {e}"))?;
                text
            }
            None => return Err(format!(
                "no ring secret: set `{}`, pass `--secret-file`, or pipe it on standard input\n\nhint: `skulk apply` hands every rank the secret it makes for the plan",
                env::RING_SECRET
            )),
        },
    };
    let secret = secret.trim();
    if secret.is_empty() {
        return Err("the ring secret is empty".into());
    }
    Ok(secret.as_bytes().to_vec())
}

/// An address of the plan as an IP: literal, or resolved once.
fn resolve_ip(address: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Ok(ip);
    }
    (address, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve address `{address}`: {e}"))?
        .map(|a| a.ip())
        .next()
        .ok_or_else(|| format!("address `{address}` resolves to nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_content_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.gguf");
        let key = |files: &[&PathBuf]| {
            model_fingerprint(&files.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>()).unwrap()
        };
        std::fs::write(&a, b"GGUF one").unwrap();
        let first = key(&[&a]);
        assert_eq!(first, key(&[&a]));
        std::fs::write(&a, b"GGUF two").unwrap();
        assert_ne!(first, key(&[&a]));
        std::fs::write(&a, b"GGUF one!").unwrap();
        assert_ne!(first, key(&[&a]));
        // A split model: a change in a later part changes the key.
        let b = dir.path().join("b.gguf");
        std::fs::write(&b, b"part two").unwrap();
        let split = key(&[&a, &b]);
        assert_ne!(split, key(&[&a]));
        std::fs::write(&b, b"part 2").unwrap();
        assert_ne!(split, key(&[&a, &b]));
    }

    #[test]
    fn secret_file_is_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "abc123\n").unwrap();
        assert_eq!(
            read_secret(&SecretSource::File(path.clone())).unwrap(),
            b"abc123"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret(&SecretSource::File(path))
            .unwrap_err()
            .contains("empty"));
    }

    #[test]
    fn addresses_resolve_to_ips() {
        assert_eq!(
            resolve_ip("127.0.0.2").unwrap(),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert!(resolve_ip("localhost").unwrap().is_loopback());
    }
}
