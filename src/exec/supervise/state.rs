//! What a supervisor records, and the lock that keeps it alone.
//!
//! The record is a JSON file beside the plan (`plan.json` ->
//! `plan.state.json`): the plan it keeps up, whether a supervisor runs it
//! now, the plan it is actually running (the desired one, or a smaller one
//! planned without lost hosts), and a timestamped history of every step.
//! `skulk status` and `skulk down` read it; only the supervisor writes it,
//! always whole (a temporary file renamed over the old one).
//!
//! The lock: one supervisor per plan digest on this machine, as an exclusive
//! `flock` on `~/.cache/skulk/supervisors/<digest prefix>.lock`. The kernel
//! releases it when the process ends however it ends, so a crashed
//! supervisor never leaves a stale lock; the file names the holder's pid and
//! state file so a second supervisor, `status` and `down` can find it (also
//! from another copy of the same plan).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::settings::paths::{self, NoHome};

/// Events kept in the state file (the oldest are dropped).
const MAX_HISTORY: usize = 500;

/// Hex digits of the digest that name a lock file (as run directories).
const DIGEST_PREFIX: usize = 16;

/// The state file of the plan at `plan`: `x.json` -> `x.state.json`, `x` ->
/// `x.state.json`.
pub fn state_path(plan: &Path) -> PathBuf {
    let name = plan
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan".to_owned());
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    plan.with_file_name(format!("{stem}.state.json"))
}

/// Where a smaller plan made without lost hosts is written: `x.json` ->
/// `x.degraded.json`.
pub fn degraded_path(plan: &Path) -> PathBuf {
    let name = plan
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan".to_owned());
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    plan.with_file_name(format!("{stem}.degraded.json"))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `HH:MM:SS` of `unix` in this machine's time zone.
pub fn clock(unix: u64) -> String {
    let t = unix as libc::time_t;
    // SAFETY: `libc::tm` is plain integers (and, on some platforms, a
    // nullable pointer), for which all zeroes is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r only reads `t`
    // and writes `tm`.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
    } else {
        let s = unix % 86_400;
        format!("{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
    }
}

/// Where the plan stands, as the supervisor last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Condition {
    /// Applying the plan for the first time.
    Starting,
    /// The desired plan serves.
    Serving,
    /// A smaller plan serves, without the lost hosts.
    Degraded,
    /// No ring serves; the supervisor is bringing one back.
    Recovering,
    /// The supervisor stopped.
    Stopped,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Starting => "starting",
            Condition::Serving => "serving",
            Condition::Degraded => "degraded",
            Condition::Recovering => "recovering",
            Condition::Stopped => "stopped",
        }
    }
}

/// The supervisor process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
    /// The ranks stay up when it stops.
    pub keep_running: bool,
}

/// The plan the ranks run now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub plan_digest: String,
    /// Its plan document (the desired plan's own file, or the degraded one).
    pub plan_path: String,
    /// Hosts of the desired plan it runs without.
    pub without: Vec<String>,
    /// Unix seconds since it serves.
    pub since: u64,
    pub endpoint: String,
}

/// One step, as printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unix seconds.
    pub at: u64,
    pub message: String,
}

/// The state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The plan kept up (the desired state).
    pub plan_digest: String,
    pub plan_path: String,
    pub condition: Condition,
    /// The running supervisor; `None` once it stopped.
    pub supervisor: Option<Holder>,
    pub running: Option<Running>,
    pub history: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read supervisor state `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("supervisor state `{path}` is not valid: {source}\n\nhint: it is rewritten by the next `skulk apply --watch`; remove it if it was edited")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write supervisor state `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock `{path}`: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock the plan's supervisor: {0}")]
    NoHome(#[from] NoHome),
    #[error("plan `{digest}` is already supervised by pid {pid} (state `{state}`)\n\nhint: stop that supervisor (Ctrl-C, or `skulk down` with the plan) first")]
    Held {
        digest: String,
        pid: String,
        state: String,
    },
}

impl State {
    pub fn new(plan_digest: &str, plan_path: &Path) -> State {
        State {
            plan_digest: plan_digest.to_owned(),
            plan_path: plan_path.display().to_string(),
            condition: Condition::Starting,
            supervisor: None,
            running: None,
            history: Vec::new(),
        }
    }

    /// The record at `path`, if there is one.
    pub fn load(path: &Path) -> Result<Option<State>, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Parse {
                path: path.to_owned(),
                source,
            })
    }

    /// Writes the record whole (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let mut text = serde_json::to_string_pretty(self).expect("state serialises");
        text.push('\n');
        let result = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(err)
    }

    /// Records one step.
    pub fn push(&mut self, at: u64, message: String) {
        if self.history.len() >= MAX_HISTORY {
            self.history.remove(0);
        }
        self.history.push(Event { at, message });
    }

    /// The one-line summary `status` prints first, e.g. `degraded: running
    /// plan 5f3a.. without host h3 since 12:03:10; API moved to ...`.
    pub fn headline(&self, desired_endpoint: &str) -> String {
        let who = match &self.supervisor {
            Some(h) => format!("supervised by pid {} since {}", h.pid, clock(h.started)),
            None => "no supervisor running".to_owned(),
        };
        let what = match (&self.condition, &self.running) {
            (Condition::Degraded, Some(r)) => {
                let hosts = r
                    .without
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let api = if r.endpoint == desired_endpoint {
                    format!("API at {}", r.endpoint)
                } else {
                    format!("API moved to {}", r.endpoint)
                };
                format!(
                    "degraded: running plan {} without host {hosts} since {}; {api}",
                    short(&r.plan_digest),
                    clock(r.since)
                )
            }
            (Condition::Serving, Some(r)) => format!(
                "serving plan {} since {}",
                short(&r.plan_digest),
                clock(r.since)
            ),
            (c, _) => c.as_str().to_owned(),
        };
        format!("{what} ({who})")
    }
}

/// Events `status` shows.
pub const STATUS_HISTORY: usize = 12;

/// The supervisor's record as `skulk status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// One line: the condition, what runs, where the API is, who supervises.
    pub headline: String,
    pub condition: Condition,
    pub supervisor_pid: Option<u32>,
    /// The plan the ranks run when it is not the one asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_plan: Option<String>,
    pub without: Vec<String>,
    pub endpoint: Option<String>,
    /// The latest steps, oldest first, each `HH:MM:SS message`.
    pub history: Vec<String>,
}

impl Summary {
    pub fn of(st: &State, desired_endpoint: &str) -> Summary {
        let start = st.history.len().saturating_sub(STATUS_HISTORY);
        Summary {
            headline: st.headline(desired_endpoint),
            condition: st.condition,
            supervisor_pid: st.supervisor.as_ref().map(|h| h.pid),
            running_plan: st
                .running
                .as_ref()
                .filter(|r| r.plan_digest != st.plan_digest)
                .map(|r| r.plan_path.clone()),
            without: st
                .running
                .as_ref()
                .map(|r| r.without.clone())
                .unwrap_or_default(),
            endpoint: st.running.as_ref().map(|r| r.endpoint.clone()),
            history: st.history[start..]
                .iter()
                .map(|e| format!("{} {}", clock(e.at), e.message))
                .collect(),
        }
    }

    /// The lines `status` prints after the rank table.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}
",
            self.headline
        );
        if let Some(p) = &self.running_plan {
            s.push_str(&format!(
                "running plan `{p}` (shown above)
"
            ));
        }
        if !self.history.is_empty() {
            s.push_str(
                "history:
",
            );
            for h in &self.history {
                let mut lines = h.lines();
                s.push_str(&format!(
                    "  {}
",
                    lines.next().unwrap_or("")
                ));
                for l in lines {
                    s.push_str(&format!(
                        "           {l}
"
                    ));
                }
            }
        }
        s
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(DIGEST_PREFIX)]
}

/// The lock file of plan `digest`, in [`paths::supervisors`].
pub fn lock_path(digest: &str) -> Result<PathBuf, NoHome> {
    Ok(lock_path_in(&paths::supervisors()?, digest))
}

fn lock_path_in(dir: &Path, digest: &str) -> PathBuf {
    dir.join(format!("{}.lock", short(digest)))
}

/// `down`'s request that the supervisor holding `lock` bring everything
/// down for good (whatever `--keep-running` said), beside the lock.
fn down_request_at(lock: &Path) -> PathBuf {
    let mut p = lock.as_os_str().to_owned();
    p.push(".down");
    PathBuf::from(p)
}

/// The held lock; released when dropped (or when the process ends).
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Where `skulk down` asks this supervisor to bring everything down.
    pub fn down_request_path(&self) -> PathBuf {
        down_request_at(&self.path)
    }
}

/// What the lock file says about its holder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockInfo {
    pub pid: Option<u32>,
    pub state: Option<PathBuf>,
}

fn open_lock(path: &Path) -> Result<File, StateError> {
    let err = |source| StateError::Lock {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(err)
}

fn try_flock(f: &File) -> std::io::Result<bool> {
    // SAFETY: flock on an open descriptor.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

fn read_info(f: &mut File) -> LockInfo {
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let mut info = LockInfo::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("pid", v)) => info.pid = v.trim().parse().ok(),
            Some(("state", v)) => info.state = Some(PathBuf::from(v)),
            _ => {}
        }
    }
    info
}

/// Takes the lock of plan `digest` for this process, recording `state`;
/// refuses when another process holds it.
pub fn acquire(digest: &str, state: &Path) -> Result<Lock, StateError> {
    acquire_at(&lock_path(digest)?, digest, state)
}

fn acquire_at(path: &Path, digest: &str, state: &Path) -> Result<Lock, StateError> {
    let path = path.to_owned();
    let mut f = open_lock(&path)?;
    if !try_flock(&f).map_err(|source| StateError::Lock {
        path: path.clone(),
        source,
    })? {
        let info = read_info(&mut f);
        return Err(StateError::Held {
            digest: short(digest).to_owned(),
            pid: info.pid.map_or("?".to_owned(), |p| p.to_string()),
            state: info
                .state
                .map_or("?".to_owned(), |p| p.display().to_string()),
        });
    }
    let content = format!("pid={}\nstate={}\n", std::process::id(), state.display());
    let written = f
        .set_len(0)
        .and_then(|_| f.write_all(content.as_bytes()))
        .and_then(|_| f.flush());
    written.map_err(|source| StateError::Lock {
        path: path.clone(),
        source,
    })?;
    Ok(Lock { _file: f, path })
}

/// The supervisor holding the lock of `digest`, if one runs. None without
/// a home directory: no supervisor can have taken a lock here then.
pub fn holder(digest: &str) -> Option<LockInfo> {
    holder_at(&lock_path(digest).ok()?)
}

fn holder_at(path: &Path) -> Option<LockInfo> {
    let mut f = File::open(path).ok()?;
    match try_flock(&f) {
        // Nobody holds it (our probe releases it when `f` closes).
        Ok(true) => None,
        Ok(false) => Some(read_info(&mut f)),
        Err(_) => None,
    }
}

/// Asks the supervisor of `digest` (if one runs here) to bring everything
/// down and exit, and waits up to `limit` for it. Returns its pid and state
/// file when there was one; an error when it did not stop in time.
pub fn stop_holder(digest: &str, limit: Duration) -> Result<Option<LockInfo>, String> {
    let Some(info) = holder(digest) else {
        return Ok(None);
    };
    let lock = lock_path(digest).map_err(|e| e.to_string())?;
    let Some(pid) = info.pid else {
        return Err(format!(
            "a supervisor holds `{}` but it names no pid",
            lock.display()
        ));
    };
    let marker = down_request_at(&lock);
    std::fs::write(&marker, b"down\n")
        .map_err(|e| format!("cannot write `{}`: {e}", marker.display()))?;
    // SAFETY: kill with a pid read from the lock file its holder wrote.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if holder(digest).is_none() {
            let _ = std::fs::remove_file(&marker);
            return Ok(Some(info));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "the supervisor (pid {pid}) did not stop within {} s",
        limit.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_degraded_files_sit_beside_the_plan() {
        assert_eq!(
            state_path(Path::new("/x/plan.json")),
            Path::new("/x/plan.state.json")
        );
        assert_eq!(
            state_path(Path::new("deploy/llama")),
            Path::new("deploy/llama.state.json")
        );
        assert_eq!(
            degraded_path(Path::new("/x/plan.json")),
            Path::new("/x/plan.degraded.json")
        );
    }

    #[test]
    fn a_state_round_trips_and_reads_as_a_headline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.state.json");
        assert_eq!(State::load(&path).unwrap(), None);
        let mut s = State::new(&"ab".repeat(32), Path::new("/x/p.json"));
        s.supervisor = Some(Holder {
            pid: 42,
            started: 1_700_000_000,
            keep_running: false,
        });
        s.condition = Condition::Degraded;
        s.running = Some(Running {
            plan_digest: "cd".repeat(32),
            plan_path: "/x/p.degraded.json".into(),
            without: vec!["h3".into()],
            since: 1_700_000_100,
            endpoint: "http://10.0.0.2:52415/v1".into(),
        });
        s.push(1_700_000_100, "re-planned".into());
        s.save(&path).unwrap();
        let back = State::load(&path).unwrap().unwrap();
        assert_eq!(back, s);
        let line = back.headline("http://10.0.0.1:52415/v1");
        assert!(
            line.starts_with("degraded: running plan cdcdcdcdcdcdcdcd without host `h3` since "),
            "{line}"
        );
        assert!(
            line.contains("API moved to http://10.0.0.2:52415/v1"),
            "{line}"
        );
        assert!(line.contains("(supervised by pid 42 since "), "{line}");
        std::fs::write(&path, "{").unwrap();
        let e = State::load(&path).unwrap_err().to_string();
        assert!(e.contains("is not valid"), "{e}");
    }

    #[test]
    fn the_lock_admits_one_holder_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let digest = "ef".repeat(32);
        let path = lock_path_in(&dir.path().join("supervisors"), &digest);
        let state = dir.path().join("p.state.json");
        assert_eq!(holder_at(&path), None);
        let lock = acquire_at(&path, &digest, &state).unwrap();
        // flock locks belong to the open file description: a second open in
        // this process is refused like another process would be.
        let e = acquire_at(&path, &digest, &state)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "plan `efefefefefefefef` is already supervised by pid {}",
                std::process::id()
            )),
            "{e}"
        );
        let info = holder_at(&path).unwrap();
        assert_eq!(info.pid, Some(std::process::id()));
        assert_eq!(info.state.as_deref(), Some(state.as_path()));
        drop(lock);
        assert_eq!(holder_at(&path), None);
        assert!(acquire_at(&path, &digest, &state).is_ok());
    }
}
