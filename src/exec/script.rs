//! The shell scripts skulk runs on hosts, and the parsers of what they print.
//!
//! Every script is POSIX `sh` (the host's login shell runs it; Linux and
//! macOS), quotes every interpolated value, and prints facts rather than
//! deciding: checks happen here in Rust on the parsed [`Report`], where they
//! are testable. Output format: `key=value` lines, and multi-line sections
//! between `::begin NAME` and `::end`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::remote::{Action, RemotePath};
use super::target::{Deployment, RankTarget, RunLayout};
use super::transport::shell_quote;
use crate::settings::env;
use crate::settings::paths::INSTALLED_SKULK;

/// Where the host's skulk is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkulkLocation {
    /// `~/.local/bin/skulk` when executable (where `--install` puts it),
    /// else `skulk` on the login shell's `PATH`.
    Default,
    /// Exactly this path (`apply --remote-skulk`).
    At(RemotePath),
}

impl SkulkLocation {
    /// Where `--install` copies the binary.
    pub fn install_path(&self) -> RemotePath {
        match self {
            SkulkLocation::Default => RemotePath::Home(INSTALLED_SKULK.to_owned()),
            SkulkLocation::At(p) => p.clone(),
        }
    }

    /// Shell lines that set `$skulk` to the executable's path, or empty.
    pub fn resolve_sh(&self) -> String {
        match self {
            SkulkLocation::Default => format!(
                "if [ -x {p} ]; then skulk={p}; else skulk=$(command -v skulk 2>/dev/null || true); fi\n",
                p = RemotePath::Home(INSTALLED_SKULK.to_owned()).sh()
            ),
            SkulkLocation::At(p) => format!(
                "skulk={}\n[ -x \"$skulk\" ] || skulk=\n",
                p.sh()
            ),
        }
    }
}

/// A shell function: `ours PID DIR` succeeds when PID is alive and is the
/// rank started in DIR (its arguments name `DIR/plan.json`), so a recycled
/// pid or a zombie (empty command line) is never taken for a rank.
const OURS_FN: &str = r#"ours() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/cmdline" ]; then tr '\0' '\n' <"/proc/$1/cmdline"; else ps -o args= -p "$1" 2>/dev/null; fi |
    grep -F -- "$2/plan.json" >/dev/null
}
"#;

/// Stops the standby listener recorded in `$d/standby.pid` (see
/// `supervise::standby`), if it runs: SIGTERM, SIGKILL after 3 s.
pub const STOP_STANDBY_SH: &str = r#"spid=$(cat "$d"/standby.pid 2>/dev/null || true)
if [ -n "$spid" ] && kill -0 "$spid" 2>/dev/null && { if [ -r "/proc/$spid/cmdline" ]; then tr '\0' '\n' <"/proc/$spid/cmdline"; else ps -o args= -p "$spid" 2>/dev/null; fi; } | grep -F -- "$d/plan.json" >/dev/null; then
  kill -TERM "$spid" 2>/dev/null || true
  n=0; while kill -0 "$spid" 2>/dev/null && [ $n -lt 30 ]; do n=$((n + 1)); sleep 0.1; done
  kill -KILL "$spid" 2>/dev/null || true
fi
rm -f "$d"/standby.pid
"#;

/// Prints the host's listening TCP sockets: `/proc/net/tcp{,6}` on Linux,
/// `netstat -an` elsewhere.
const LISTENERS_SH: &str = r#"echo "::begin listeners"
if [ -r /proc/net/tcp ]; then cat /proc/net/tcp; [ -r /proc/net/tcp6 ] && cat /proc/net/tcp6; else netstat -an 2>/dev/null; fi
echo "::end"
"#;

/// Bytes of the model file's start that rank 0's preflight reports: GGUF
/// converters write `general.*` and the architecture's keys before the
/// vocabulary, and those fit in far less.
pub const GGUF_HEAD_BYTES: usize = 64 << 10;

/// Facts preflight needs from one host: home, OS, skulk and its version,
/// the model file (size; sha256 when the plan gives one and the size
/// matches; on rank 0 of a split plan the start of its header), free disk
/// under the slice cache, memory and listening sockets.
pub fn preflight(rank: &RankTarget, skulk: &SkulkLocation) -> Action {
    let mut s = String::new();
    s.push_str("echo \"home=$HOME\"\necho \"uname=$(uname -sm)\"\n");
    s.push_str(&skulk.resolve_sh());
    s.push_str("echo \"skulk=$skulk\"\n");
    s.push_str(
        "[ -z \"$skulk\" ] || echo \"skulk_version=$(\"$skulk\" --version 2>&1 | head -n 1)\"\n",
    );
    s.push_str(&format!("m={}\n", rank.model.path().sh()));
    s.push_str("if [ -f \"$m\" ]; then\n  size=$(wc -c <\"$m\" | tr -d ' ')\n  echo \"model_size=$size\"\n");
    if rank.model.sha256.is_some() {
        s.push_str(&format!(
            "  if [ \"$size\" = {} ]; then echo \"model_sha256=$( (sha256sum \"$m\" 2>/dev/null || shasum -a 256 \"$m\") | cut -d ' ' -f 1)\"; fi\n",
            rank.model.size
        ));
    }
    s.push_str("elif [ -e \"$m\" ]; then echo \"model_size=not-a-file\"; fi\n");
    if rank.rank == 0 && rank.world_size > 1 {
        // The start of the GGUF header (architecture and hyperparameters
        // come before the vocabulary), for the split checks.
        s.push_str(&format!(
            "if [ -f \"$m\" ]; then echo \"::begin gguf_head\"; head -c {GGUF_HEAD_BYTES} \"$m\" | od -An -v -tx1; echo \"::end\"; fi\n"
        ));
    }
    s.push_str(&format!(
        "d={}\nwhile [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done\necho \"disk_avail_kib=$(df -Pk \"$d\" | awk 'NR == 2 {{ print $4 }}')\"\n",
        RunLayout::slice_cache().sh()
    ));
    s.push_str("echo \"::begin meminfo\"\ncat /proc/meminfo 2>/dev/null\necho \"::end\"\n");
    s.push_str(LISTENERS_SH);
    Action::run("preflight", s)
}

/// Lists every run recorded on the host (all plans), with whether its rank
/// process is alive, and the host's clock.
pub fn inspect() -> Action {
    let mut s = String::from(OURS_FN);
    s.push_str("echo \"now=$(date +%s)\"\n");
    s.push_str(&format!(
        "for s in {}/*/*/state; do\n  [ -f \"$s\" ] || continue\n  d=${{s%/state}}\n  pid=$(sed -n 's/^pid=//p' \"$s\" | head -n 1)\n  alive=0; ours \"$pid\" \"$d\" && alive=1\n  echo \"::begin run\"; echo \"dir=$d\"; echo \"alive=$alive\"; cat \"$s\"; [ ! -f \"$d\"/ring-health ] || sed 's/^/ring_/' \"$d\"/ring-health; echo \"::end\"\ndone\n",
        RunLayout::runs_root().sh()
    ));
    Action::run("inspect runs", s)
}

/// Writes `content` (received on stdin) to `path`, private to the user
/// (mode 0600, directories 0700), replacing it atomically.
pub fn write_private(
    purpose: &'static str,
    path: &RemotePath,
    content: Vec<u8>,
    shown_as: impl Into<String>,
) -> Action {
    let p = path.sh();
    let tmp = format!("{p}.tmp");
    let dir = match path {
        RemotePath::Home(s) | RemotePath::Absolute(s) => s.rsplit_once('/').map(|(d, _)| d),
    };
    let mkdir = match (path, dir) {
        (RemotePath::Home(_), Some(d)) => {
            format!("mkdir -p {} && ", RemotePath::Home(d.into()).sh())
        }
        (RemotePath::Absolute(_), Some(d)) if !d.is_empty() => {
            format!("mkdir -p {} && ", shell_quote(d))
        }
        _ => String::new(),
    };
    Action::run_with_stdin(
        purpose,
        format!("umask 077 && {mkdir}cat >{tmp} && mv -f {tmp} {p}\n"),
        content,
        shown_as,
    )
}

/// Makes the directory that will hold `path` (for `--install`).
pub fn mkdir_parent(path: &str) -> Action {
    let dir = path
        .rsplit_once('/')
        .map_or(".", |(d, _)| if d.is_empty() { "/" } else { d });
    Action::run(
        "make install directory",
        format!("mkdir -p {}\n", shell_quote(dir)),
    )
}

/// Prints the first line of `skulk --version` at `path` (after `--install`).
pub fn version_of(path: &str) -> Action {
    Action::run(
        "check skulk version",
        format!("{} --version 2>&1 | head -n 1\n", shell_quote(path)),
    )
}

/// `export NAME='value'` lines for the Hugging Face settings of this
/// machine that `--fetch` hands to the hosts ([`env::hf_forwarded`]):
/// `HF_TOKEN` is a secret, so all of them travel on stdin, as shell
/// assignments the fetch script evaluates.
pub fn hf_env_assignments(vars: &[(&str, String)]) -> Vec<u8> {
    vars.iter()
        .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
        .collect::<String>()
        .into_bytes()
}

/// Downloads the rank's model on the host with the host's skulk
/// (`skulk fetch-model`, reading the plan copy in the run directory).
pub fn fetch(layout: &RunLayout, skulk: &str, node: &str, hf_env: Vec<u8>) -> Action {
    Action::run_with_stdin(
        "fetch model",
        format!(
            "eval \"$(cat)\"\nd={}\nexec {} fetch-model --plan \"$d\"/plan.json --node {} 2>&1\n",
            layout.dir.sh(),
            shell_quote(skulk),
            shell_quote(node)
        ),
        hf_env,
        "this machine's HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE where set, as `export` lines",
    )
}

/// Settings of one launch that are not in the plan.
#[derive(Clone, Debug)]
pub struct LaunchSettings {
    /// The host's skulk, absolute, as preflight found it.
    pub skulk: String,
    /// Seconds the rank waits for the ring to form (`apply --timeout`).
    pub formation_timeout: u64,
    /// Whether an API key file was written (rank 0 with a key).
    pub api_key: bool,
}

/// Starts `skulk run-shard` for `rank`, detached from the session (`setsid`
/// where it exists, `nohup`, stdin from /dev/null, output appended to the
/// run's log), and writes the state record. The rank's shell writes its own
/// pid just before it execs skulk, so the pid is the rank's whatever
/// `setsid` does. Prints `pid=N`.
pub fn launch(dep: &Deployment, rank: &RankTarget, settings: &LaunchSettings) -> Action {
    let layout = rank.layout(&dep.digest);
    let mut args = vec![
        shell_quote(&settings.skulk),
        "run-shard".to_owned(),
        "--plan".to_owned(),
        "\"$d\"/plan.json".to_owned(),
        "--node".to_owned(),
        shell_quote(&rank.node),
        "--secret-file".to_owned(),
        "\"$d\"/secret".to_owned(),
    ];
    if settings.api_key {
        args.extend(["--api-key-file".to_owned(), "\"$d\"/api-key".to_owned()]);
    }
    args.extend([
        "--formation-timeout".to_owned(),
        settings.formation_timeout.to_string(),
        "--cache-dir".to_owned(),
        RunLayout::slice_cache().sh(),
        "--health-file".to_owned(),
        "\"$d\"/ring-health".to_owned(),
    ]);
    let record = [
        ("digest", shell_quote(&dep.digest)),
        ("model", shell_quote(&dep.model_id)),
        ("node", shell_quote(&rank.node)),
        ("address", shell_quote(&rank.address)),
        ("rank", rank.rank.to_string()),
        ("layers", format!("{}-{}", rank.start_layer, rank.end_layer)),
        ("skulk", shell_quote(&settings.skulk)),
    ];
    let mut s = format!(
        "set -e\nd={}\ncd \"$d\"\nrm -f rank.pid state ring-health\n",
        layout.dir.sh()
    );
    s.push_str(&format!(
        "echo \"=== $(date -u +%Y-%m-%dT%H:%M:%SZ) skulk apply: rank {} of plan {}\" >>rank.log\n",
        rank.rank,
        dep.short_digest()
    ));
    // Secrets reach the rank only through the 0600 files; never inherit them.
    s.push_str(&format!("unset {}\n", env::SECRETS.join(" ")));
    s.push_str("detach=; if command -v setsid >/dev/null 2>&1; then detach=setsid; fi\n");
    s.push_str(&format!(
        "nohup $detach sh -c 'echo $$ >\"$0\"/rank.pid; exec \"$@\"' \"$d\" \\\n  {} \\\n  </dev/null >>rank.log 2>&1 &\n",
        args.join(" ")
    ));
    s.push_str(
        "n=0; while [ ! -s rank.pid ]; do n=$((n + 1)); [ $n -le 100 ] || { echo \"the rank did not start\" >&2; exit 1; }; sleep 0.05; done\npid=$(cat rank.pid)\n",
    );
    s.push_str("{\n");
    for (k, v) in record {
        s.push_str(&format!("  echo {k}={v}\n"));
    }
    s.push_str("  echo \"pid=$pid\"\n  echo \"started=$(date +%s)\"\n} >state.tmp\nmv -f state.tmp state\necho \"pid=$pid\"\n");
    Action::run("start rank", s)
}

/// Stops the rank recorded in `dir` (absolute, as `inspect` printed it, or
/// the layout's): SIGTERM, then SIGKILL after `timeout_secs`. Removes the
/// state record and pid file. Prints `stopped=term|kill|none`.
pub fn stop(dir: &StopTarget, timeout_secs: u64) -> Action {
    let mut s = String::from(OURS_FN);
    s.push_str(&format!("d={}\n", dir.sh()));
    s.push_str(&format!(
        "pid=$(sed -n 's/^pid=//p' \"$d\"/state 2>/dev/null | head -n 1)\nhow=none\nif ours \"$pid\" \"$d\"; then\n  kill -TERM \"$pid\" 2>/dev/null || true\n  kill -CONT \"$pid\" 2>/dev/null || true\n  how=term; n=0\n  while ours \"$pid\" \"$d\"; do\n    n=$((n + 1))\n    if [ $n -gt {} ]; then kill -KILL \"$pid\" 2>/dev/null || true; how=kill; break; fi\n    sleep 0.1\n  done\n  n=0; while ours \"$pid\" \"$d\" && [ $n -lt 50 ]; do n=$((n + 1)); sleep 0.1; done\nfi\nrm -f \"$d\"/state \"$d\"/rank.pid\n",
        timeout_secs * 10
    ));
    s.push_str(STOP_STANDBY_SH);
    s.push_str("echo \"stopped=$how\"\n");
    Action::run("stop rank", s)
}

/// A run directory to stop: the plan's own layout, or one found by `inspect`.
#[derive(Clone, Debug)]
pub enum StopTarget {
    Layout(RunLayout),
    Found(String),
}

impl StopTarget {
    fn sh(&self) -> String {
        match self {
            StopTarget::Layout(l) => l.dir.sh(),
            StopTarget::Found(d) => shell_quote(d),
        }
    }
}

/// Removes what `apply` left in the run directory except the log; with
/// `purge`, also the rank's slices in the slice cache.
pub fn clean(layout: &RunLayout, purge: Option<&CachedSlice>) -> Action {
    clean_dir(&StopTarget::Layout(layout.clone()), purge)
}

/// [`clean`] for any run directory, such as another plan's found by
/// [`inspect`].
pub fn clean_dir(dir: &StopTarget, purge: Option<&CachedSlice>) -> Action {
    let mut s = format!(
        "d={}\nrm -f \"$d\"/plan.json \"$d\"/secret \"$d\"/api-key \"$d\"/state \"$d\"/rank.pid \"$d\"/ring-health \"$d\"/*.tmp\n",
        dir.sh()
    );
    if let Some(slice) = purge {
        // The stem quoted, the key a glob.
        let pattern =
            crate::rank::slice_file_name(&shell_quote(&slice.stem), "*", &(slice.start..slice.end));
        s.push_str(&format!(
            "rm -f {}/{pattern}\n",
            RunLayout::slice_cache().sh(),
        ));
    }
    Action::run("clean up", s)
}

/// The rank-local GGUFs `run-shard` cuts for one layer range live in the
/// slice cache under [`crate::rank::slice_file_name`]; the key is the
/// model's, not known here, so `down --purge` removes every key's slice of
/// this range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedSlice {
    pub stem: String,
    pub start: u32,
    pub end: u32,
}

impl CachedSlice {
    pub fn of(rank: &RankTarget) -> CachedSlice {
        let file = rank.model.relative.rsplit('/').next().unwrap_or("");
        CachedSlice {
            stem: file.strip_suffix(".gguf").unwrap_or(file).to_owned(),
            start: rank.start_layer,
            end: rank.end_layer,
        }
    }
}

/// The host's listening TCP sockets.
pub fn listeners() -> Action {
    Action::run("list listening sockets", LISTENERS_SH)
}

/// The last `lines` lines of the rank's log.
pub fn tail(layout: &RunLayout, lines: u32) -> Action {
    Action::run(
        "read log",
        format!(
            "f={}\n[ ! -f \"$f\" ] || tail -n {lines} \"$f\"\n",
            layout.log().sh()
        ),
    )
}

/// The rank's log from byte `offset` on, after a first line `size=N` (the
/// whole file again when it shrank below `offset`).
pub fn log_from(layout: &RunLayout, offset: u64) -> Action {
    Action::run(
        "read log",
        format!(
            "f={}\n[ -f \"$f\" ] || {{ echo size=0; exit 0; }}\noff={offset}\nsize=$(wc -c <\"$f\" | tr -d ' ')\n[ \"$size\" -ge \"$off\" ] || off=0\necho \"size=$size off=$off\"\n[ \"$size\" -le \"$off\" ] || tail -c +$((off + 1)) \"$f\"\n",
            layout.log().sh()
        ),
    )
}

/// `size=N` and the last `lines` lines of the log's first N bytes: where
/// `logs --follow` starts.
pub fn tail_with_size(layout: &RunLayout, lines: u32) -> Action {
    Action::run(
        "read log",
        format!(
            "f={}\n[ -f \"$f\" ] || {{ echo size=0; exit 0; }}\nsize=$(wc -c <\"$f\" | tr -d ' ')\necho \"size=$size\"\nhead -c \"$size\" \"$f\" | tail -n {lines}\n",
            layout.log().sh()
        ),
    )
}

/// Facts for an inventory entry: name, OS, cores, memory, GPU memory.
pub fn probe() -> Action {
    Action::run(
        "probe host",
        "echo \"hostname=$(uname -n)\"\necho \"uname=$(uname -sm)\"\n\
         echo \"cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null)\"\n\
         echo \"memsize=$(sysctl -n hw.memsize 2>/dev/null)\"\n\
         echo \"::begin meminfo\"\ncat /proc/meminfo 2>/dev/null\necho \"::end\"\n\
         if command -v nvidia-smi >/dev/null 2>&1; then echo \"::begin nvidia\"; nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null; echo \"::end\"; fi\n",
    )
}

// ---------------------------------------------------------------------------
// Parsing

/// What a script printed: `key=value` lines outside sections (last wins),
/// and sections in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub fields: BTreeMap<String, String>,
    pub sections: Vec<(String, Vec<String>)>,
}

impl Report {
    pub fn parse(text: &str) -> Report {
        let mut report = Report::default();
        let mut open: Option<(String, Vec<String>)> = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("::begin ") {
                if let Some(done) = open.take() {
                    report.sections.push(done);
                }
                open = Some((name.trim().to_owned(), Vec::new()));
            } else if line == "::end" {
                if let Some(done) = open.take() {
                    report.sections.push(done);
                }
            } else if let Some((_, lines)) = &mut open {
                lines.push(line.to_owned());
            } else if let Some((k, v)) = line.split_once('=') {
                report.fields.insert(k.to_owned(), v.to_owned());
            }
        }
        if let Some(done) = open.take() {
            report.sections.push(done);
        }
        report
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }

    /// The lines of every section called `name`, concatenated.
    pub fn section(&self, name: &str) -> Vec<&str> {
        self.sections
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, l)| l.iter().map(String::as_str))
            .collect()
    }

    pub fn sections_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [String]> + 'a {
        self.sections
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, l)| l.as_slice())
    }
}

/// `key=value` lines into a map (state records, run sections).
pub fn key_values(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One run found on a host by [`inspect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// The run directory, absolute on the host.
    pub dir: String,
    pub alive: bool,
    pub digest: String,
    /// The plan's model id (absent in records of skulk before 0.2).
    pub model: Option<String>,
    pub node: String,
    pub address: String,
    pub rank: Option<u32>,
    pub layers: Option<String>,
    pub pid: Option<u32>,
    /// Unix seconds.
    pub started: Option<u64>,
    /// A slow ring neighbour, as the rank reports it while it lasts.
    pub slow: Option<String>,
}

/// What [`inspect`] found on one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// The host's clock, Unix seconds.
    pub now: Option<u64>,
    pub runs: Vec<RunRecord>,
}

impl Inspection {
    pub fn parse(text: &str) -> Inspection {
        let report = Report::parse(text);
        let runs = report
            .sections_named("run")
            .map(|lines| {
                let kv = key_values(lines);
                let s = |k: &str| kv.get(k).cloned().unwrap_or_default();
                RunRecord {
                    dir: s("dir"),
                    alive: s("alive") == "1",
                    digest: s("digest"),
                    model: kv.get("model").cloned(),
                    node: s("node"),
                    address: s("address"),
                    rank: kv.get("rank").and_then(|v| v.parse().ok()),
                    layers: kv.get("layers").cloned(),
                    pid: kv.get("pid").and_then(|v| v.parse().ok()),
                    started: kv.get("started").and_then(|v| v.parse().ok()),
                    slow: kv.get("ring_slow").cloned(),
                }
            })
            .collect();
        Inspection {
            now: report.number("now"),
            runs,
        }
    }

    /// Runs of other plans than `digest` recorded for `address`, alive or not.
    pub fn others_at<'a>(
        &'a self,
        address: &'a str,
        digest: &'a str,
    ) -> impl Iterator<Item = &'a RunRecord> + 'a {
        self.at(address).filter(move |r| r.digest != digest)
    }

    /// Runs recorded for `address` (a shared filesystem can hold others').
    pub fn at<'a>(&'a self, address: &'a str) -> impl Iterator<Item = &'a RunRecord> + 'a {
        self.runs.iter().filter(move |r| r.address == address)
    }
}

/// `MemAvailable` from `/proc/meminfo` lines, bytes.
pub fn mem_available(meminfo: &[&str]) -> Option<u64> {
    meminfo_field(meminfo, "MemAvailable")
}

/// A `/proc/meminfo` field in bytes (the file's `kB` are KiB).
pub fn meminfo_field(meminfo: &[&str], name: &str) -> Option<u64> {
    meminfo.iter().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        Some(match parts.next() {
            Some("kB") => n * 1024,
            _ => n,
        })
    })
}

/// A listening TCP socket; `addr` `None` is a wildcard (all addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub addr: Option<IpAddr>,
    pub port: u16,
}

/// Listening sockets from `/proc/net/tcp{,6}` lines or `netstat -an` lines.
/// `/proc` addresses are 32-bit words in the host's byte order, read as
/// little-endian (x86-64 and arm64, the hosts skulk builds for).
pub fn parse_listeners(lines: &[&str]) -> Vec<Listener> {
    let mut out = Vec::new();
    for line in lines {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // /proc/net/tcp: `sl local rem st ...`, LISTEN is state 0A.
        if cols.len() > 3 && cols[0].ends_with(':') && cols[3] == "0A" {
            if let Some(l) = proc_addr(cols[1]) {
                out.push(l);
            }
            continue;
        }
        // netstat -an: `tcp[46] recvq sendq local foreign LISTEN`.
        if cols.len() >= 6 && cols[0].starts_with("tcp") && cols[5] == "LISTEN" {
            if let Some(l) = netstat_addr(cols[3]) {
                out.push(l);
            }
        }
    }
    out
}

fn proc_addr(s: &str) -> Option<Listener> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).map(u32::swap_bytes))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(*w)),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(Listener {
        addr: (!ip.is_unspecified()).then_some(ip),
        port,
    })
}

fn netstat_addr(s: &str) -> Option<Listener> {
    // Linux `0.0.0.0:22`, `:::22`; BSD `127.0.0.1.22`, `*.22`.
    let i = s.rfind([':', '.'])?;
    let (addr, port) = (&s[..i], &s[i + 1..]);
    let port = port.parse().ok()?;
    let addr = match addr {
        "*" | "" | "::" | "0.0.0.0" => None,
        a => a
            .trim_end_matches('%')
            .parse::<IpAddr>()
            .ok()
            .filter(|ip| !ip.is_unspecified()),
    };
    Some(Listener { addr, port })
}

/// Whether something listens on `port` at `address` (or on all addresses).
/// An `address` that is not an IP literal matches any listener on the port.
pub fn port_busy(listeners: &[Listener], address: &str, port: u16) -> bool {
    let want: Option<IpAddr> = address.trim_matches(['[', ']']).parse().ok();
    listeners.iter().any(|l| {
        l.port == port
            && match (l.addr, want) {
                (None, _) | (_, None) => true,
                (Some(a), Some(w)) => a == w || mapped(a) == mapped(w),
            }
    })
}

fn mapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::target::fixtures;
    use crate::exec::transport::{LocalTransport, Transport};

    #[test]
    fn reports_split_fields_and_sections() {
        let r = Report::parse("a=1\n::begin x\nl1\nl2=3\n::end\nb=x=y\n::begin x\nl3\n");
        assert_eq!(r.get("a"), Some("1"));
        assert_eq!(r.get("b"), Some("x=y"));
        assert_eq!(r.get("l2"), None);
        assert_eq!(r.section("x"), vec!["l1", "l2=3", "l3"]);
    }

    #[test]
    fn proc_net_tcp_listeners_are_decoded() {
        let lines = [
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
            "   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1",
            "   2: 0100007F:0050 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1",
            "   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 0",
            "   1: 0000000000000000FFFF00000B00000A:1F92 00000000000000000000000000000000:0000 0A 0",
        ];
        let l = parse_listeners(&lines);
        assert_eq!(
            l,
            vec![
                Listener {
                    addr: Some("127.0.0.1".parse().unwrap()),
                    port: 8080
                },
                Listener {
                    addr: None,
                    port: 22
                },
                Listener {
                    addr: Some("::1".parse().unwrap()),
                    port: 8081
                },
                Listener {
                    addr: Some("::ffff:10.0.0.11".parse().unwrap()),
                    port: 8082
                },
            ]
        );
        assert!(port_busy(&l, "127.0.0.1", 8080));
        assert!(!port_busy(&l, "127.0.0.2", 8080));
        assert!(
            port_busy(&l, "10.1.2.3", 22),
            "wildcard listeners take every address"
        );
        assert!(port_busy(&l, "10.0.0.11", 8082), "v4-mapped v6 listener");
        assert!(
            port_busy(&l, "myhost.lan", 8080),
            "names match any listener on the port"
        );
        assert!(
            !port_busy(&l, "127.0.0.1", 80),
            "connections are not listeners"
        );
    }

    #[test]
    fn netstat_listeners_are_decoded() {
        let lines = [
            "tcp        0      0 10.0.0.1:5000           0.0.0.0:*               LISTEN",
            "tcp6       0      0 :::6000                 :::*                    LISTEN",
            "tcp4       0      0  127.0.0.1.7000         *.*                    LISTEN",
            "tcp4       0      0  *.7001                 *.*                    LISTEN",
            "tcp4       0      0  10.0.0.1.7002          10.0.0.2.5000          ESTABLISHED",
        ];
        let l = parse_listeners(&lines);
        assert_eq!(l.len(), 4);
        assert!(port_busy(&l, "10.0.0.1", 5000));
        assert!(port_busy(&l, "10.0.0.9", 6000));
        assert!(port_busy(&l, "127.0.0.1", 7000));
        assert!(port_busy(&l, "10.0.0.3", 7001));
        assert!(!port_busy(&l, "10.0.0.1", 7002));
    }

    #[test]
    fn this_machines_listeners_parse() {
        // A real socket on loopback shows up in the real script's output.
        let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let out = LocalTransport::new("here").run(LISTENERS_SH, None).unwrap();
        let report = Report::parse(&out.stdout_str());
        let l = parse_listeners(&report.section("listeners"));
        assert!(port_busy(&l, "127.0.0.1", port), "{l:?}");
        drop(sock);
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let m = ["MemTotal:       24000000 kB", "MemAvailable:    1000 kB"];
        assert_eq!(mem_available(&m), Some(1_024_000));
        assert_eq!(meminfo_field(&m, "MemTotal"), Some(24_576_000_000));
        assert_eq!(mem_available(&["MemFree: 3 kB"]), None);
    }

    #[test]
    fn inspection_keeps_each_runs_fields() {
        let text = "now=100\n::begin run\ndir=/r/a/h1\nalive=1\ndigest=ab\nnode=h1\naddress=10.0.0.1\nrank=0\nlayers=0-10\npid=42\nstarted=90\n::end\n::begin run\ndir=/r/b/h2\nalive=0\ndigest=cd\nnode=h2\naddress=10.0.0.2\n::end\n";
        let i = Inspection::parse(text);
        assert_eq!(i.now, Some(100));
        assert_eq!(i.runs.len(), 2);
        assert!(i.runs[0].alive && i.runs[0].pid == Some(42) && i.runs[0].started == Some(90));
        assert_eq!(i.at("10.0.0.2").count(), 1);
        assert!(!i.runs[1].alive && i.runs[1].pid.is_none());
    }

    #[test]
    fn launch_passes_secrets_only_as_file_paths() {
        let d = fixtures::deployment(2);
        let a = launch(
            &d,
            &d.ranks[0],
            &LaunchSettings {
                skulk: "/opt/my skulk/skulk".into(),
                formation_timeout: 120,
                api_key: true,
            },
        );
        let s = a.to_string();
        assert!(s.contains("'/opt/my skulk/skulk' run-shard --plan \"$d\"/plan.json --node h1 --secret-file \"$d\"/secret --api-key-file \"$d\"/api-key --formation-timeout 120"), "{s}");
        assert!(s.contains("unset SKULK_RING_SECRET SKULK_API_KEY"));
    }

    /// The real scripts, run by a real shell against a fake HOME: launch a
    /// stand-in rank (a shell that sleeps), find it, stop it, clean up.
    #[test]
    fn launch_inspect_stop_and_clean_run_in_a_real_shell() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        let t = LocalTransport::new("here");
        let d = fixtures::deployment(1);
        let rank = &d.ranks[0];
        let layout = rank.layout(&d.digest);
        let fake = home.path().join("fake-skulk");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"fake rank $*\"\nwhile :; do sleep 1; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let run = |a: &Action| {
            let Action::Run { script, stdin, .. } = a else {
                panic!()
            };
            let out = t
                .run(
                    &format!("HOME={}\n{script}", shell_quote(h)),
                    stdin.as_ref().map(|s| &s.bytes[..]),
                )
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                a.purpose(),
                out.stderr_str()
            );
            out.stdout_str()
        };
        run(&write_private(
            "plan",
            &layout.plan(),
            d.plan_bytes.clone(),
            "plan",
        ));
        run(&write_private(
            "secret",
            &layout.secret(),
            b"00ff\n".to_vec(),
            "secret",
        ));
        let secret = std::fs::metadata(layout.secret().resolve(h)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&secret.permissions()) & 0o777,
            0o600
        );
        let settings = LaunchSettings {
            skulk: fake.to_str().unwrap().into(),
            formation_timeout: 5,
            api_key: false,
        };
        let out = Report::parse(&run(&launch(&d, rank, &settings)));
        let pid: u32 = out.number("pid").unwrap() as u32;
        let found = Inspection::parse(&run(&inspect()));
        let rec = found.at(&rank.address).next().expect("run recorded");
        assert!(rec.alive, "{found:?}");
        assert_eq!(rec.pid, Some(pid));
        assert_eq!(rec.digest, d.digest);
        assert_eq!(rec.dir, layout.dir.resolve(h));
        let stopped = Report::parse(&run(&stop(&StopTarget::Layout(layout.clone()), 5)));
        assert_eq!(stopped.get("stopped"), Some("term"));
        let found = Inspection::parse(&run(&inspect()));
        assert!(found.runs.is_empty(), "state removed: {found:?}");
        // Stopping twice is harmless.
        let again = Report::parse(&run(&stop(&StopTarget::Layout(layout.clone()), 5)));
        assert_eq!(again.get("stopped"), Some("none"));
        run(&clean(&layout, None));
        let log = std::fs::read_to_string(layout.log().resolve(h)).unwrap();
        assert!(log.contains("fake rank run-shard --plan"), "{log}");
        assert!(!std::path::Path::new(&layout.plan().resolve(h)).exists());
        assert!(!std::path::Path::new(&layout.secret().resolve(h)).exists());
        let tail = run(&tail(&layout, 1));
        assert!(tail.starts_with("fake rank"), "{tail}");
        let from = run(&log_from(&layout, 0));
        assert!(from.starts_with("size="), "{from}");
        assert!(from.contains("=== "), "{from}");
    }

    #[test]
    fn hf_settings_reach_the_fetch_on_stdin_only() {
        let env = hf_env_assignments(&[
            ("HF_ENDPOINT", "v'HF_ENDPOINT".into()),
            ("HF_TOKEN", "v'HF_TOKEN".into()),
        ]);
        let text = String::from_utf8(env.clone()).unwrap();
        assert_eq!(
            text,
            "export HF_ENDPOINT='v'\\''HF_ENDPOINT'\nexport HF_TOKEN='v'\\''HF_TOKEN'\n"
        );
        let d = fixtures::deployment(1);
        let a = fetch(
            &d.ranks[0].layout(&d.digest),
            "/bin/echo",
            "h1",
            env.clone(),
        );
        assert!(!a.to_string().contains("HF_TOKEN'"), "{a}");
        // The evaluated assignments reach the command's environment.
        let Action::Run { script, .. } = a else {
            panic!()
        };
        let script = script.replace("exec /bin/echo", "exec env #");
        let out = LocalTransport::new("here")
            .run(&script, Some(&env))
            .unwrap();
        assert!(
            out.stdout_str().contains("HF_TOKEN=v'HF_TOKEN\n"),
            "{}",
            out.stdout_str()
        );
    }

    #[test]
    fn purge_removes_only_this_ranks_slices() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        let d = fixtures::deployment(3);
        let rank = &d.ranks[1];
        let cache = std::path::PathBuf::from(RunLayout::slice_cache().resolve(h));
        std::fs::create_dir_all(&cache).unwrap();
        // Named as run-shard names its cuts.
        let ours = cache.join(crate::rank::slice_file_name(
            "model.Q4_1",
            "0123abcd",
            &(10..20),
        ));
        assert!(ours.ends_with("model.Q4_1.0123abcd.layers-10-20.gguf"));
        let other_range = cache.join("model.Q4_1.0123abcd.layers-0-10.gguf");
        let other_model = cache.join("other.0123abcd.layers-10-20.gguf");
        for f in [&ours, &other_range, &other_model] {
            std::fs::write(f, "x").unwrap();
        }
        let Action::Run { script, .. } =
            clean(&rank.layout(&d.digest), Some(&CachedSlice::of(rank)))
        else {
            panic!()
        };
        let out = LocalTransport::new("here")
            .run(&format!("HOME={}\n{script}", shell_quote(h)), None)
            .unwrap();
        assert!(out.status.success(), "{}", out.stderr_str());
        assert!(!ours.exists());
        assert!(other_range.exists() && other_model.exists());
    }

    #[test]
    fn preflight_reports_the_model_and_skulk() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        let mut d = fixtures::deployment(1);
        d.ranks[0].model.sha256 = Some("x".into());
        d.ranks[0].model.size = 3;
        let model = d.ranks[0].model.path().resolve(h);
        std::fs::create_dir_all(std::path::Path::new(&model).parent().unwrap()).unwrap();
        std::fs::write(&model, "abc").unwrap();
        let Action::Run { script, .. } = preflight(
            &d.ranks[0],
            &SkulkLocation::At(RemotePath::Absolute("/nonexistent/skulk".into())),
        ) else {
            panic!()
        };
        let out = LocalTransport::new("here")
            .run(&format!("HOME={}\n{script}", shell_quote(h)), None)
            .unwrap();
        let r = Report::parse(&out.stdout_str());
        assert_eq!(r.get("home"), Some(h));
        assert_eq!(r.get("skulk"), Some(""));
        assert_eq!(r.number("model_size"), Some(3));
        assert_eq!(
            r.get("model_sha256"),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert!(r.number("disk_avail_kib").unwrap() > 0);
        assert!(mem_available(&r.section("meminfo")).unwrap() > 0);
    }
}
