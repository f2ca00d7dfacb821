//! Where skulk's files live, on this machine and on every host.
//!
//! Everything skulk keeps sits under the home directory of the user it runs
//! as: models in the model directory (an inventory host's `modelDir`,
//! default [`DEFAULT_MODEL_DIR`]), each model in
//! `<modelDir>/<org>--<name>/` ([`model_store`]), the rank-local cuts of
//! models in the slice cache ([`SLICE_CACHE_DIR`]), one directory per
//! run of a plan under [`RUNS_DIR`], the supervisors' locks under
//! [`SUPERVISORS_DIR`], and an installed skulk at [`INSTALLED_SKULK`].
//!
//! Invariant: a path of an inventory or a plan (`modelDir`) means one place
//! wherever it is read: an absolute path is itself, and `~`, `~/x` and a
//! relative `x` are under the home directory, the same for `skulk model
//! add`, `fetch-model`, `run-shard` and the executor's remote paths
//! ([`crate::exec::remote::RemotePath`] writes the same rule for a host's
//! shell). A path that needs the home directory when `HOME` is not set is
//! an error, never `/` or the current directory.

use std::path::{Path, PathBuf};

use super::env;

/// Where a host keeps models when its inventory entry gives no `modelDir`.
pub const DEFAULT_MODEL_DIR: &str = "~/.cache/skulk/models";

/// The rank-local slice cache, relative to the home directory: the layer
/// ranges `run-shard` cuts from a model (`--cache-dir`'s default; `down
/// --purge` and the disk check name it too). The directory keeps its first
/// name, `shards`, so the slices already cut on hosts stay found.
pub const SLICE_CACHE_DIR: &str = ".cache/skulk/shards";

/// Parent of every run directory, relative to the home directory (beside
/// the model directory and the slice cache).
pub const RUNS_DIR: &str = ".cache/skulk/runs";

/// The supervisors' lock files (`apply --watch`), one per plan digest,
/// relative to the home directory of the machine the supervisor runs on.
pub const SUPERVISORS_DIR: &str = ".cache/skulk/supervisors";

/// Where `apply --install` puts skulk on a host, relative to the home
/// directory: the XDG user binary directory (`systemd-path
/// user-binaries`).
pub const INSTALLED_SKULK: &str = ".local/bin/skulk";

/// OpenSSH's known_hosts file, relative to the home directory.
pub const KNOWN_HOSTS: &str = ".ssh/known_hosts";

/// The private keys tried, in order, when a host names no identity file and
/// no ssh-agent logs in (OpenSSH's defaults that libssh2 can use), relative
/// to the home directory.
pub const DEFAULT_IDENTITIES: [&str; 3] = [".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"];

/// A path that needs the home directory, which is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`HOME` is not set, so `{path}` cannot be resolved\n\nhint: set `HOME`, or give an absolute path")]
pub struct NoHome {
    /// The path as given (`~/.cache/skulk/models`).
    pub path: String,
}

/// An inventory-style path on this machine: absolute as written, else
/// under the home directory (`~`, `~/x` and `x` alike).
pub fn resolve(path: &str) -> Result<PathBuf, NoHome> {
    resolve_in(path, env::home().as_deref())
}

/// [`resolve`] with the home directory given (`None`: not known).
fn resolve_in(path: &str, home: Option<&Path>) -> Result<PathBuf, NoHome> {
    if path.starts_with('/') {
        return Ok(PathBuf::from(path));
    }
    let home = home.ok_or_else(|| NoHome {
        path: path.to_owned(),
    })?;
    let rest = home_relative(path);
    Ok(if rest.is_empty() {
        home.to_path_buf()
    } else {
        home.join(rest)
    })
}

/// The part of a non-absolute inventory-style path below the home
/// directory: `~` is empty, `~/x` and `x` are `x`. The one reading of `~`
/// for this machine ([`resolve`]) and for hosts' shells.
pub fn home_relative(path: &str) -> &str {
    if path == "~" {
        ""
    } else {
        path.strip_prefix("~/").unwrap_or(path)
    }
}

/// A path under the home directory (`RUNS_DIR`, `KNOWN_HOSTS`, ...).
pub fn in_home(relative: &str) -> Result<PathBuf, NoHome> {
    resolve(&format!("~/{relative}"))
}

/// The slice cache of this machine.
pub fn slice_cache() -> Result<PathBuf, NoHome> {
    in_home(SLICE_CACHE_DIR)
}

/// The supervisors' lock directory of this machine.
pub fn supervisors() -> Result<PathBuf, NoHome> {
    in_home(SUPERVISORS_DIR)
}

/// This user's known_hosts file.
pub fn known_hosts() -> Result<PathBuf, NoHome> {
    in_home(KNOWN_HOSTS)
}

/// Where a model is kept under `model_dir`: `<model_dir>/<org>--<name>`.
pub fn model_store(model_dir: &Path, model_id: &str) -> PathBuf {
    model_dir.join(crate::card::normalize_model_id(model_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_relative_paths_read_tilde_and_relative_alike() {
        assert_eq!(home_relative("~"), "");
        assert_eq!(home_relative("~/models"), "models");
        assert_eq!(home_relative("models"), "models");
        assert_eq!(home_relative("~x/models"), "~x/models");
    }

    #[test]
    fn paths_resolve_under_home_or_as_written() {
        // `HOME` is set wherever the tests run (cargo, CI, scripts/test).
        let home = env::home().expect("HOME is set");
        assert_eq!(resolve("~").unwrap(), home);
        assert_eq!(resolve("~/m").unwrap(), home.join("m"));
        assert_eq!(resolve("m/x").unwrap(), home.join("m/x"));
        assert_eq!(resolve("/srv/~x").unwrap(), PathBuf::from("/srv/~x"));
        assert_eq!(
            slice_cache().unwrap(),
            home.join(".cache/skulk/shards"),
            "the slice cache"
        );
        assert_eq!(
            model_store(Path::new("/m"), "org/name"),
            Path::new("/m/org--name")
        );
    }

    #[test]
    fn without_home_only_absolute_paths_resolve() {
        for path in ["~", "~/models", "models", ""] {
            assert_eq!(
                resolve_in(path, None),
                Err(NoHome {
                    path: path.to_owned()
                }),
                "{path:?} is never `/` or the current directory"
            );
        }
        assert_eq!(resolve_in("/srv/m", None).unwrap(), Path::new("/srv/m"));
        assert_eq!(
            resolve_in("m", Some(Path::new("/h"))).unwrap(),
            Path::new("/h/m")
        );
    }

    #[test]
    fn no_home_names_the_path() {
        let e = NoHome {
            path: "~/.cache/skulk/models".into(),
        };
        assert_eq!(
            e.to_string(),
            "`HOME` is not set, so `~/.cache/skulk/models` cannot be resolved\n\nhint: set `HOME`, or give an absolute path"
        );
    }
}
