//! The environment variables skulk reads, each named once and read one way.
//!
//! | variable | read by | meaning |
//! |---|---|---|
//! | `HOME` | [`home`] | this machine's home directory (`~`) |
//! | `USER`, else `LOGNAME` | [`login_user`] | the SSH login when an inventory names none |
//! | `SKULK_RING_SECRET` | [`ring_secret`] | a rank's ring secret (else `--secret-file` or standard input) |
//! | `SKULK_API_KEY` | [`api_key`] | the API bearer token (else `--api-key-file`) |
//! | `SKULK_LOG_COMMANDS` | [`log_commands`] | echo every command run on a host (any value but `0`) |
//! | `SKULK_LLAMA_LOG` | [`llama_log`] | also print llama.cpp's log from this level up |
//! | `NO_COLOR` | [`no_color`] | no colour, when set and not empty (no-color.org) |
//! | `SSH_AUTH_SOCK` | [`ssh_agent`] | an ssh-agent to try first |
//! | `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` | [`hub`] | the Hugging Face hub, as `huggingface_hub` reads them |
//! | `GOMP_SPINCOUNT`, `OMP_WAIT_POLICY` | [`openmp_wait_policy_set`] | the user chose OpenMP's spin-wait |
//!
//! A variable that is set but empty counts as unset everywhere (an empty
//! key is no key, an empty `HOME` no home).

use std::path::{Path, PathBuf};

/// Environment variable holding a rank's ring secret (set by `skulk apply`
/// only through a file; this is for ranks started by hand).
pub const RING_SECRET: &str = "SKULK_RING_SECRET";
/// Environment variable holding the API bearer token.
pub const API_KEY: &str = "SKULK_API_KEY";
/// The variables that carry secrets, which a rank's shell unsets before the
/// rank starts (secrets reach it only through 0600 files).
pub const SECRETS: [&str; 2] = [RING_SECRET, API_KEY];
/// libgomp's spin count, which `run-shard` sets for itself.
pub const GOMP_SPINCOUNT: &str = "GOMP_SPINCOUNT";
/// The Hugging Face settings `apply --fetch` hands to the hosts.
pub const HF_FORWARDED: [&str; 3] = ["HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE"];

/// A variable's value, `None` when unset, empty or not UTF-8.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// This machine's home directory (`HOME`).
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The local user name (`USER`, else `LOGNAME`).
pub fn login_user() -> Option<String> {
    var("USER").or_else(|| var("LOGNAME"))
}

/// `SKULK_RING_SECRET`, trimmed; `None` when unset or blank.
pub fn ring_secret() -> Option<String> {
    var(RING_SECRET).and_then(trimmed)
}

/// Why a secret file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the {what} file `{}`: {source}", path.display())]
pub struct SecretFileError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The API bearer token: the content of `file` when given, else
/// `SKULK_API_KEY`; trimmed, and `None` when blank (no key: the API is open).
pub fn api_key(file: Option<&Path>) -> Result<Option<String>, SecretFileError> {
    let key = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|source| SecretFileError {
            what: "API key",
            path: path.to_path_buf(),
            source,
        })?,
        None => var(API_KEY).unwrap_or_default(),
    };
    Ok(trimmed(key))
}

fn trimmed(value: String) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// `SKULK_LOG_COMMANDS`: set to anything but `0`.
pub fn log_commands() -> bool {
    std::env::var_os("SKULK_LOG_COMMANDS").is_some_and(|v| v != "0")
}

/// The least severe llama.cpp log message `SKULK_LLAMA_LOG` asks to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlamaLog {
    Debug,
    Info,
    Warn,
    Error,
}

/// `SKULK_LLAMA_LOG=debug|info|warn|error`; `None` (the default, and any
/// other value): llama.cpp's log is kept for error messages only.
pub fn llama_log() -> Option<LlamaLog> {
    match var("SKULK_LLAMA_LOG")?.as_str() {
        "debug" => Some(LlamaLog::Debug),
        "info" => Some(LlamaLog::Info),
        "warn" => Some(LlamaLog::Warn),
        "error" => Some(LlamaLog::Error),
        _ => None,
    }
}

/// `NO_COLOR` set to anything non-empty (no-color.org).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether an ssh-agent is there to ask (`SSH_AUTH_SOCK`).
pub fn ssh_agent() -> bool {
    std::env::var_os("SSH_AUTH_SOCK").is_some_and(|v| !v.is_empty())
}

/// Whether the user chose OpenMP's spin-wait policy (`GOMP_SPINCOUNT` or
/// `OMP_WAIT_POLICY` set), which `run-shard` then leaves alone.
pub fn openmp_wait_policy_set() -> bool {
    std::env::var_os(GOMP_SPINCOUNT).is_some() || std::env::var_os("OMP_WAIT_POLICY").is_some()
}

/// The Hugging Face hub settings of the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hub {
    /// `HF_ENDPOINT` (another hub or a mirror).
    pub endpoint: Option<String>,
    /// `HF_TOKEN`; when unset the hub client reads its token file.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE`: true for `1`, `true`, `yes` or `on` in any case, as
    /// in `huggingface_hub`.
    pub offline: bool,
}

/// The hub settings, read now.
pub fn hub() -> Hub {
    Hub {
        endpoint: var("HF_ENDPOINT"),
        token: var("HF_TOKEN"),
        offline: var("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
    }
}

/// `1`, `true`, `yes` or `on`, any case, surrounding blanks ignored.
fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// The set variables of [`HF_FORWARDED`], as this machine has them.
pub fn hf_forwarded() -> Vec<(&'static str, String)> {
    HF_FORWARDED
        .iter()
        .filter_map(|&name| std::env::var(name).ok().map(|value| (name, value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_takes_the_values_huggingface_hub_takes() {
        for yes in ["1", "true", "TRUE", " yes ", "On"] {
            assert!(truthy(yes), "{yes}");
        }
        for no in ["0", "false", "", "no", "off", "2"] {
            assert!(!truthy(no), "{no}");
        }
    }

    #[test]
    fn an_api_key_file_is_trimmed_and_a_blank_one_is_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  sk-1\n").unwrap();
        assert_eq!(api_key(Some(&path)).unwrap().as_deref(), Some("sk-1"));
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(api_key(Some(&path)).unwrap(), None);
        let missing = dir.path().join("missing");
        let e = api_key(Some(&missing)).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "cannot read the API key file `{}`",
                missing.display()
            )),
            "{e}"
        );
    }
}
