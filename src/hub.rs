//! Hugging Face Hub access, through the `hf-hub` crate: listing a
//! repository's files, reading small files and byte ranges, file metadata
//! (size, LFS sha256) and streamed downloads.
//!
//! Settings come from the environment as the Python `huggingface_hub` reads
//! them ([`crate::settings::env::hub`]): `HF_ENDPOINT` (another hub or a
//! mirror), `HF_TOKEN` (or the token file), and `HF_HUB_OFFLINE`, which this
//! module enforces (hf-hub 1.0 does not): when set, every call fails with
//! [`HubError::Offline`] before any request. Every error names the
//! repository and the endpoint.

use std::ops::Range;

use futures::StreamExt;
use hf_hub::repository::download::HFByteStream;
use hf_hub::repository::RepoTreeEntry;
use hf_hub::{HFClient, HFError, HFRepository, RepoTypeModel};

use crate::gguf::{GgufError, GgufHeader, MAX_HEADER_BYTES};

/// A repository id `ORG/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoId {
    pub owner: String,
    pub name: String,
}

impl RepoId {
    /// Parse `ORG/NAME` (letters, digits, `-`, `_`, `.`; as the hub allows).
    pub fn parse(s: &str) -> Result<RepoId, HubError> {
        let ok = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        match s.split_once('/') {
            Some((owner, name)) if ok(owner) && ok(name) => Ok(RepoId {
                owner: owner.to_string(),
                name: name.to_string(),
            }),
            _ => Err(HubError::BadRepoId {
                repo: s.to_string(),
            }),
        }
    }

    /// The model directory name: `ORG--NAME` (`docs/architecture.md`, "Where
    /// files live").
    pub fn dir_name(&self) -> String {
        format!("{}--{}", self.owner, self.name)
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{repo}` is not a Hugging Face repository id\n\nhint: write it as `ORG/NAME`")]
    BadRepoId { repo: String },

    #[error("`HF_HUB_OFFLINE` is set, so skulk does not contact `{endpoint}` for `{repo}`\n\nhint: unset `HF_HUB_OFFLINE`, or use files already on disk (`card new --from-gguf`)")]
    Offline { repo: String, endpoint: String },

    #[error("`{repo}` on `{endpoint}` needs authentication (HTTP 401){detail}\n\nhint: set `HF_TOKEN` to a token that can read the repository (the hub also answers 401 for a repository that does not exist)")]
    Auth {
        repo: String,
        endpoint: String,
        detail: String,
    },

    #[error("`{endpoint}` refused access to `{repo}` (HTTP 403){detail}\n\nhint: accept the model's terms on its page, or use a token that can read it")]
    Forbidden {
        repo: String,
        endpoint: String,
        detail: String,
    },

    #[error("repository `{repo}` was not found on `{endpoint}`")]
    RepoNotFound { repo: String, endpoint: String },

    #[error("revision `{revision}` of `{repo}` was not found on `{endpoint}`")]
    RevisionNotFound {
        repo: String,
        revision: String,
        endpoint: String,
    },

    #[error("`{file}` was not found in `{repo}` at revision `{revision}` on `{endpoint}`")]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
        endpoint: String,
    },

    #[error("cannot reach `{endpoint}` for `{repo}`: {error}\n\nhint: check the network and `HF_ENDPOINT`")]
    Network {
        repo: String,
        endpoint: String,
        error: String,
    },

    #[error("`{endpoint}` failed for `{repo}`: {error}")]
    Other {
        repo: String,
        endpoint: String,
        error: String,
    },

    #[error("`{file}` in `{repo}` is not a usable GGUF: {error}")]
    Gguf {
        repo: String,
        file: String,
        error: Box<GgufError>,
    },
}

/// A file in a repository listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    pub path: String,
    pub size: u64,
}

/// What a HEAD on a file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub size: u64,
    /// The sha256 of the content, for LFS files (their ETag); git-stored
    /// small files carry a sha1 blob id instead, which is not kept.
    pub sha256: Option<String>,
    /// The commit the revision resolved to.
    pub commit: String,
}

/// Where the hub is and how to talk to it.
pub type HubSettings = crate::settings::env::Hub;

/// The hub when no `HF_ENDPOINT` names another.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A hub client.
#[derive(Clone)]
pub struct Hub {
    client: HFClient,
    offline: bool,
}

/// Requests retried by hf-hub after a transient failure (connection errors,
/// 5xx): few, since downloads resume on their own.
const RETRIES: usize = 2;

impl Hub {
    pub fn new(settings: HubSettings) -> Result<Hub, HubError> {
        let mut b = HFClient::builder()
            .cache_enabled(false)
            .retry_max_attempts(RETRIES);
        let endpoint = settings
            .endpoint
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        b = b.endpoint(endpoint.clone());
        if let Some(t) = settings.token {
            b = b.token(t);
        }
        let client = b.build().map_err(|e| HubError::Other {
            repo: String::new(),
            endpoint,
            error: e.to_string(),
        })?;
        Ok(Hub {
            client,
            offline: settings.offline,
        })
    }

    pub fn from_env() -> Result<Hub, HubError> {
        Hub::new(crate::settings::env::hub())
    }

    pub fn endpoint(&self) -> &str {
        self.client.endpoint()
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    fn repo(&self, repo: &RepoId) -> Result<HFRepository<RepoTypeModel>, HubError> {
        if self.offline {
            return Err(HubError::Offline {
                repo: repo.to_string(),
                endpoint: self.endpoint().to_string(),
            });
        }
        Ok(self.client.model(repo.owner.clone(), repo.name.clone()))
    }

    /// Turn an hf-hub error into one naming the repository and endpoint.
    pub fn error(&self, repo: &RepoId, revision: &str, file: Option<&str>, e: HFError) -> HubError {
        let (repo, endpoint) = (repo.to_string(), self.endpoint().to_string());
        // `HttpErrorContext` is not exported by hf-hub; its message field is.
        macro_rules! detail {
            ($ctx:expr) => {
                $ctx.server_message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            };
        }
        match e {
            HFError::AuthRequired { context } => HubError::Auth {
                repo,
                endpoint,
                detail: detail!(context),
            },
            HFError::Forbidden { context } => HubError::Forbidden {
                repo,
                endpoint,
                detail: detail!(context),
            },
            HFError::RepoNotFound { .. } => HubError::RepoNotFound { repo, endpoint },
            HFError::RevisionNotFound { .. } => HubError::RevisionNotFound {
                repo,
                revision: revision.to_string(),
                endpoint,
            },
            HFError::EntryNotFound { path, .. } => HubError::FileNotFound {
                repo,
                revision: revision.to_string(),
                file: file.map(str::to_string).unwrap_or(path),
                endpoint,
            },
            // Paginated listings report every status as `Http`.
            HFError::Http { context } if context.status == 401 => HubError::Auth {
                repo,
                endpoint,
                detail: detail!(context),
            },
            HFError::Http { context } if context.status == 403 => HubError::Forbidden {
                repo,
                endpoint,
                detail: detail!(context),
            },
            HFError::Http { context } if context.status == 404 => match file {
                Some(f) => HubError::FileNotFound {
                    repo,
                    revision: revision.to_string(),
                    file: f.to_string(),
                    endpoint,
                },
                None => HubError::RepoNotFound { repo, endpoint },
            },
            HFError::Request { source, .. } => HubError::Network {
                repo,
                endpoint,
                error: error_chain(&source),
            },
            other => HubError::Other {
                repo,
                endpoint,
                error: other.to_string(),
            },
        }
    }

    /// Every file of the repository at `revision`, with sizes.
    pub async fn list_files(
        &self,
        repo: &RepoId,
        revision: &str,
    ) -> Result<Vec<RepoFile>, HubError> {
        let r = self.repo(repo)?;
        let err = |e| self.error(repo, revision, None, e);
        let stream = r
            .list_tree()
            .revision(revision)
            .recursive(true)
            .send()
            .map_err(err)?;
        futures::pin_mut!(stream);
        let mut files = Vec::new();
        while let Some(entry) = stream.next().await {
            if let RepoTreeEntry::File { path, size, .. } = entry.map_err(err)? {
                files.push(RepoFile { path, size });
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// A whole (small) file, or a byte range of one.
    pub async fn read(
        &self,
        repo: &RepoId,
        revision: &str,
        file: &str,
        range: Option<Range<u64>>,
    ) -> Result<Vec<u8>, HubError> {
        let r = self.repo(repo)?;
        let bytes = r
            .download_file_to_bytes()
            .filename(file)
            .revision(revision)
            .maybe_range(range)
            .send()
            .await
            .map_err(|e| self.error(repo, revision, Some(file), e))?;
        Ok(bytes.to_vec())
    }

    /// Size, sha256 (LFS files) and resolved commit of a file.
    pub async fn file_meta(
        &self,
        repo: &RepoId,
        revision: &str,
        file: &str,
    ) -> Result<RemoteFile, HubError> {
        let r = self.repo(repo)?;
        let meta = r
            .get_file_metadata()
            .filepath(file)
            .revision(revision)
            .send()
            .await
            .map_err(|e| self.error(repo, revision, Some(file), e))?;
        let etag = meta.etag.trim_matches('"').to_ascii_lowercase();
        let sha256 =
            (etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(etag);
        Ok(RemoteFile {
            size: meta.file_size,
            sha256,
            commit: meta.commit_hash,
        })
    }

    /// Stream `file` (from `range.start` when given). Returns the length the
    /// server announced and the byte stream.
    pub async fn stream(
        &self,
        repo: &RepoId,
        revision: &str,
        file: &str,
        range: Option<Range<u64>>,
    ) -> Result<(Option<u64>, HFByteStream), HubError> {
        let r = self.repo(repo)?;
        r.download_file_stream()
            .filename(file)
            .revision(revision)
            .maybe_range(range)
            .send()
            .await
            .map_err(|e| self.error(repo, revision, Some(file), e))
    }

    /// The GGUF header of a remote file of `size` bytes, read with range
    /// requests in growing windows (1 MiB, then x4) until it parses; the
    /// weights are never downloaded.
    pub async fn gguf_header(
        &self,
        repo: &RepoId,
        revision: &str,
        file: &str,
        size: u64,
    ) -> Result<GgufHeader, HubError> {
        /// First window: the Python Skulk reads 1 MiB windows; most headers
        /// (vocabularies below ~50k tokens) fit in one.
        const FIRST_WINDOW: u64 = 1 << 20;
        let name = std::path::PathBuf::from(format!("{}/{repo}/{file}", self.endpoint()));
        let limit = size.min(MAX_HEADER_BYTES);
        let mut buf: Vec<u8> = Vec::new();
        let mut want = FIRST_WINDOW.min(limit);
        loop {
            if (buf.len() as u64) < want {
                let more = self
                    .read(repo, revision, file, Some(buf.len() as u64..want))
                    .await?;
                if more.is_empty() {
                    want = buf.len() as u64;
                }
                buf.extend_from_slice(&more);
            }
            match GgufHeader::parse(&buf[..], size, &name) {
                Ok(h) => return Ok(h),
                // The window ended inside the header: read further.
                Err(GgufError::Truncated { offset, need, .. })
                    if offset + need > buf.len() as u64
                        && offset + need <= size
                        && (buf.len() as u64) < limit =>
                {
                    want = (want * 4).max(offset + need).min(limit);
                }
                Err(error) => {
                    return Err(HubError::Gguf {
                        repo: repo.to_string(),
                        file: file.to_string(),
                        error: Box::new(error),
                    })
                }
            }
        }
    }
}

/// An error and its sources, `: `-joined (reqwest hides the cause, e.g.
/// "connection refused", in its source chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        let r = RepoId::parse("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
        assert_eq!(r.dir_name(), "HuggingFaceTB--SmolLM2-135M-Instruct");
        assert_eq!(r.to_string(), "HuggingFaceTB/SmolLM2-135M-Instruct");
        for bad in ["gpt2", "a/b/c", "/b", "a/", "a/..", "a b/c", ""] {
            assert!(
                matches!(RepoId::parse(bad), Err(HubError::BadRepoId { .. })),
                "{bad}"
            );
        }
    }
}
