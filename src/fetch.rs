//! Fetching a model onto a host: exactly the files a card needs (its GGUF
//! split model, not every quant of the repository) into
//! `<modelDir>/<org>--<name>/` (`docs/architecture.md`, "Where files live").
//!
//! Invariants: a file appears under its final name only complete and
//! verified (size, and sha256 where the hub gives one); an interrupted
//! download leaves `<file>.partial` and the next attempt, in this run or a
//! later one, resumes from its length with a range request; concurrent
//! fetches of one file (several ranks on one host) serialise on a lock of
//! the partial file.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::card::ModelCard;
use crate::gguf::split_name;
use crate::hub::{Hub, HubError, RepoId};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Hub(Box<HubError>),

    #[error("card `{model_id}` has no `ggufFile`, and skulk runs GGUF models only\n\nhint: derive a GGUF card with `skulk card new --from-hf ORG/NAME`")]
    NotGguf { model_id: String },

    #[error("`{file}` is not a path inside the model directory")]
    BadPath { file: String },

    #[error("cannot {op} `{path}`: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("download of `{file}` from `{repo}` stopped at byte {have} of {size}: {error}\n\nhint: run it again; it resumes from byte {have} (`{partial}`)")]
    Interrupted {
        repo: String,
        file: String,
        have: u64,
        size: u64,
        error: String,
        partial: PathBuf,
    },

    #[error("`{path}` has sha256 `{got}`, but the hub says `{expected}`; the download was removed\n\nhint: run it again; if it fails the same way, the mirror serves a different file")]
    Checksum {
        path: PathBuf,
        expected: String,
        got: String,
    },

    #[error("`{file}` from `{repo}` sent more than its {size} bytes")]
    TooLong {
        repo: String,
        file: String,
        size: u64,
    },

    #[error("`HF_HUB_OFFLINE` is set and `{path}` is not on disk")]
    OfflineMissing { path: PathBuf },
}

impl From<HubError> for FetchError {
    fn from(e: HubError) -> FetchError {
        FetchError::Hub(Box::new(e))
    }
}

/// How progress is shown (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    Lines,
    Quiet,
}

/// Why one transfer attempt ended early.
enum Broken {
    /// A broken transfer: resume.
    Retry(String),
    /// Auth, a vanished file, a local write error: stop.
    Fatal(String),
    /// More bytes than the file has: the download is discarded.
    TooLong,
}

/// One file's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    pub path: PathBuf,
    pub size: u64,
    /// Bytes transferred in this run.
    pub downloaded: u64,
    /// Length of the partial file this run started from (0: from scratch).
    pub resumed_from: u64,
    /// Already complete on disk; nothing transferred.
    pub already_present: bool,
    /// A sha256 from the hub was checked.
    pub sha256_verified: bool,
}

/// Everything one fetch did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchReport {
    pub files: Vec<FetchedFile>,
}

/// Times a download resumes within one run after a broken transfer before
/// giving up (the partial file stays for the next run).
const RESUMES_PER_RUN: u32 = 4;
/// Hashing and copying buffer.
const BUF: usize = 1 << 20;

/// The repository files a GGUF card needs: every part of its `ggufFile`'s
/// group (pure).
pub fn card_files(card: &ModelCard) -> Result<Vec<String>, FetchError> {
    let file = card
        .gguf_file
        .as_deref()
        .ok_or_else(|| FetchError::NotGguf {
            model_id: card.model_id.clone(),
        })?;
    Ok(match split_name(file) {
        Some(s) => (1..=s.count).map(|i| s.part(i)).collect(),
        None => vec![file.to_string()],
    })
}

/// Fetch the files `card` needs from the repository named by its `modelId`.
pub async fn fetch_card(
    hub: &Hub,
    card: &ModelCard,
    revision: &str,
    model_dir: &Path,
    progress: ProgressMode,
) -> Result<FetchReport, FetchError> {
    let repo = RepoId::parse(&card.model_id)?;
    let files = card_files(card)?;
    fetch_files(
        hub,
        &repo,
        revision,
        &files,
        &crate::settings::paths::model_store(model_dir, &card.model_id),
        progress,
    )
    .await
}

/// Fetch `files` of `repo` into `dest`.
pub async fn fetch_files(
    hub: &Hub,
    repo: &RepoId,
    revision: &str,
    files: &[String],
    dest: &Path,
    progress: ProgressMode,
) -> Result<FetchReport, FetchError> {
    let mut report = FetchReport::default();
    for file in files {
        report
            .files
            .push(fetch_one(hub, repo, revision, file, dest, progress).await?);
    }
    Ok(report)
}

fn safe_relative(file: &str) -> bool {
    !file.is_empty()
        && !file.starts_with('/')
        && !file.contains('\\')
        && !file.contains(':')
        && file
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FetchError + 'a {
    move |error| FetchError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

/// Take an exclusive lock on `file` (another skulk on this host may be
/// fetching the same model), waiting while it is held.
async fn lock(file: &File, path: &Path) -> Result<(), FetchError> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on an open descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(io("lock", path)(e));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fetch_one(
    hub: &Hub,
    repo: &RepoId,
    revision: &str,
    file: &str,
    dest: &Path,
    mode: ProgressMode,
) -> Result<FetchedFile, FetchError> {
    if !safe_relative(file) {
        return Err(FetchError::BadPath {
            file: file.to_string(),
        });
    }
    let final_path = dest.join(file);
    let present = |size: Option<u64>| {
        fs::metadata(&final_path)
            .map(|m| m.is_file() && size.is_none_or(|s| m.len() == s))
            .unwrap_or(false)
    };
    if hub.is_offline() {
        if present(None) {
            let size = fs::metadata(&final_path).map(|m| m.len()).unwrap_or(0);
            return Ok(done(&final_path, size, 0, 0, true, false));
        }
        return Err(FetchError::OfflineMissing { path: final_path });
    }
    let meta = hub.file_meta(repo, revision, file).await?;
    if present(Some(meta.size)) {
        return Ok(done(&final_path, meta.size, 0, 0, true, false));
    }
    let dir = final_path.parent().expect("joined path has a parent");
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let part_path = {
        let mut name = final_path.file_name().expect("checked").to_os_string();
        name.push(".partial");
        final_path.with_file_name(name)
    };
    let mut part = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&part_path)
        .map_err(io("open", &part_path))?;
    lock(&part, &part_path).await?;
    if present(Some(meta.size)) {
        // Another process finished it while this one waited.
        if part.metadata().map(|m| m.len() == 0).unwrap_or(false) {
            let _ = fs::remove_file(&part_path);
        }
        return Ok(done(&final_path, meta.size, 0, 0, true, false));
    }

    let mut have = part.metadata().map_err(io("read", &part_path))?.len();
    if have > meta.size {
        part.set_len(0).map_err(io("truncate", &part_path))?;
        have = 0;
    }
    let mut hasher = Sha256::new();
    if meta.sha256.is_some() && have > 0 {
        hash_prefix(&mut part, have, &mut hasher).map_err(io("read", &part_path))?;
    }
    part.seek(SeekFrom::Start(have))
        .map_err(io("seek in", &part_path))?;
    let resumed_from = have;
    let mut bar = Reporter::new(mode, file, meta.size, have);

    let mut resumes = 0;
    while have < meta.size {
        let range = (have > 0).then_some(have..meta.size);
        let outcome: Result<(), Broken> = async {
            let (announced, mut stream) = match hub.stream(repo, revision, file, range).await {
                Ok(s) => s,
                Err(HubError::Network { error, .. }) => return Err(Broken::Retry(error)),
                Err(e) => return Err(Broken::Fatal(e.to_string())),
            };
            if have > 0 && announced == Some(meta.size) {
                // The server ignored the range and sends the whole file.
                let local = |e: std::io::Error| {
                    Broken::Fatal(format!("cannot restart `{}`: {e}", part_path.display()))
                };
                part.set_len(0).map_err(local)?;
                part.seek(SeekFrom::Start(0)).map_err(local)?;
                hasher = Sha256::new();
                have = 0;
                bar.restart();
            }
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| Broken::Retry(e.to_string()))?;
                if have + chunk.len() as u64 > meta.size {
                    return Err(Broken::TooLong);
                }
                part.write_all(&chunk).map_err(|e| {
                    Broken::Fatal(format!("cannot write `{}`: {e}", part_path.display()))
                })?;
                hasher.update(&chunk);
                have += chunk.len() as u64;
                bar.advance(have);
            }
            if have < meta.size {
                return Err(Broken::Retry("the server closed the transfer early".into()));
            }
            Ok(())
        }
        .await;
        let error = match outcome {
            Ok(()) => break,
            Err(Broken::TooLong) => {
                drop(part);
                let _ = fs::remove_file(&part_path);
                return Err(FetchError::TooLong {
                    repo: repo.to_string(),
                    file: file.to_string(),
                    size: meta.size,
                });
            }
            Err(Broken::Retry(e)) if resumes < RESUMES_PER_RUN => {
                resumes += 1;
                bar.note(&format!("transfer broke at byte {have} ({e}); resuming"));
                tokio::time::sleep(Duration::from_millis(100 << resumes)).await;
                continue;
            }
            Err(Broken::Retry(e) | Broken::Fatal(e)) => e,
        };
        let _ = part.sync_all();
        return Err(FetchError::Interrupted {
            repo: repo.to_string(),
            file: file.to_string(),
            have,
            size: meta.size,
            error,
            partial: part_path,
        });
    }
    part.sync_all().map_err(io("sync", &part_path))?;
    let mut verified = false;
    if let Some(expected) = &meta.sha256 {
        let got = hex::encode(hasher.finalize());
        if &got != expected {
            drop(part);
            let _ = fs::remove_file(&part_path);
            return Err(FetchError::Checksum {
                path: final_path,
                expected: expected.clone(),
                got,
            });
        }
        verified = true;
    }
    fs::rename(&part_path, &final_path).map_err(io("rename into place", &final_path))?;
    drop(part);
    bar.finish(verified);
    Ok(done(
        &final_path,
        meta.size,
        meta.size - resumed_from,
        resumed_from,
        false,
        verified,
    ))
}

fn done(
    path: &Path,
    size: u64,
    downloaded: u64,
    resumed_from: u64,
    present: bool,
    verified: bool,
) -> FetchedFile {
    FetchedFile {
        path: path.to_path_buf(),
        size,
        downloaded,
        resumed_from,
        already_present: present,
        sha256_verified: verified,
    }
}

fn hash_prefix(file: &mut File, len: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; BUF];
    let mut left = len;
    while left > 0 {
        let chunk = &mut buf[..left.min(BUF as u64) as usize];
        file.read_exact(chunk)?;
        hasher.update(&*chunk);
        left -= chunk.len() as u64;
    }
    Ok(())
}

/// Longest gap between progress lines when stderr is not a terminal.
/// `apply --fetch` runs the fetch over SSH, where a host silent for
/// [`crate::exec::remote::IO_TIMEOUT`] (300 s) is given up on; a slow link
/// can take longer than that for 10% of a large model.
const LINE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Progress of one file on stderr: an indicatif bar on a terminal, else a
/// line at start, every 10% or [`LINE_INTERVAL`], and at the end.
struct Reporter {
    file: String,
    size: u64,
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    last_decile: u64,
    /// When the last line was printed, and how much was there then.
    last_line: (std::time::Instant, u64),
}

impl Reporter {
    fn new(mode: ProgressMode, file: &str, size: u64, have: u64) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(file.to_string());
            bar.set_position(have);
            bar
        });
        let lines = bar.is_none() && mode != ProgressMode::Quiet;
        let r = Reporter {
            file: file.to_string(),
            size,
            bar,
            lines,
            last_decile: have * 10 / size.max(1),
            last_line: (std::time::Instant::now(), have),
        };
        if r.lines {
            let from = if have > 0 {
                format!(", resuming at {}", mib(have))
            } else {
                String::new()
            };
            crate::output::progress(format!("fetch: `{}`: {}{from}", r.file, mib(size)));
        }
        r
    }

    fn advance(&mut self, have: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(have);
        } else if self.lines {
            let decile = have * 10 / self.size.max(1);
            let (at, then) = self.last_line;
            let elapsed = at.elapsed();
            if (decile > self.last_decile && decile < 10) || elapsed >= LINE_INTERVAL {
                self.last_decile = self.last_decile.max(decile);
                let rate = have.saturating_sub(then) as f64 / elapsed.as_secs_f64().max(1e-3);
                crate::output::progress(format!(
                    "fetch: `{}`: {}% ({} of {}, {}/s)",
                    self.file,
                    have * 100 / self.size.max(1),
                    mib(have),
                    mib(self.size),
                    mib(rate as u64)
                ));
                self.last_line = (std::time::Instant::now(), have);
            }
        }
    }

    fn restart(&mut self) {
        self.last_decile = 0;
        self.last_line = (std::time::Instant::now(), 0);
        self.note("the server ignored the range request; starting over");
    }

    fn note(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("fetch: `{}`: {msg}", self.file)),
            None if self.lines => crate::output::progress(format!("fetch: `{}`: {msg}", self.file)),
            None => {}
        }
    }

    fn finish(&self, verified: bool) {
        let check = if verified {
            "size and sha256 ok"
        } else {
            "size ok"
        };
        match &self.bar {
            Some(bar) => bar.finish_with_message(format!("{} ({check})", self.file)),
            None if self.lines => {
                crate::output::progress(format!("fetch: `{}`: done, {check}", self.file))
            }
            None => {}
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_files_are_the_split_parts() {
        let mut card: ModelCard = serde_json::from_value(serde_json::json!({
            "modelId": "org/m", "storageSize": {"inBytes": 1}, "nLayers": 1, "hiddenSize": 1,
            "supportsTensor": false, "tasks": ["TextGeneration"], "ggufFile": "q/m-Q4_K_M-00001-of-00003.gguf"
        }))
        .unwrap();
        assert_eq!(
            card_files(&card).unwrap(),
            [
                "q/m-Q4_K_M-00001-of-00003.gguf",
                "q/m-Q4_K_M-00002-of-00003.gguf",
                "q/m-Q4_K_M-00003-of-00003.gguf"
            ]
        );
        card.gguf_file = Some("m.gguf".into());
        assert_eq!(card_files(&card).unwrap(), ["m.gguf"]);
        card.gguf_file = None;
        assert!(matches!(card_files(&card), Err(FetchError::NotGguf { .. })));
    }

    #[test]
    fn only_relative_paths_inside_the_directory() {
        for ok in ["m.gguf", "q/m.gguf"] {
            assert!(safe_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../m.gguf",
            "a/../../m",
            "a//b",
            "./m",
            "c:m",
            "a\\b",
        ] {
            assert!(!safe_relative(bad), "{bad}");
        }
    }
}
