//! Test hosts for integration tests: a set of network namespaces on this
//! machine, each with its own address and its own real `sshd`, made by the
//! scripts beside this file (`up`, `down`, `rekey`; see `common.sh`).
//!
//! Use from a test binary with `mod hosts;` and
//! `let Some(h) = hosts::TestHosts::get(SET, N) else { return };`.
//! The first call in a binary brings the hosts up (idempotent); if this call
//! created them, they are taken down when the test binary exits, unless
//! `SKULK_TEST_HOSTS_KEEP=1`. Each test binary should use its own set number
//! (`SET`, 0..250), so that binaries running in parallel, or tests that change
//! a host (`rekey`), do not disturb each other.
//!
//! Needs root and `ip`/`sshd`. Without them the tests skip with a message,
//! except under `CI=true`, where they fail: CI runs as root and must run them.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub struct TestHosts {
    pub set: u8,
    pub dir: PathBuf,
    /// Addresses of hosts 1..=N, in ring order (`addrs[0]` is host 1).
    pub addrs: Vec<String>,
    /// Network namespace of each host (for `ip netns exec`).
    pub netns: Vec<String>,
    pub user: String,
    /// Client private key authorised on every host.
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// A skulk inventory listing the hosts (names `h1`..`hN`).
    pub inventory: PathBuf,
    /// An address in the hosts' subnet where no host answers.
    pub unused_addr: String,
}

static HOSTS: OnceLock<Option<TestHosts>> = OnceLock::new();
/// Set to tear down at exit, plus one (0: nothing to tear down).
static TEARDOWN_SET: AtomicU32 = AtomicU32::new(0);

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hosts")
        .join(name)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    let sshd = std::env::var("SKULK_TEST_SSHD").unwrap_or_else(|_| "/usr/sbin/sshd".into());
    if !Path::new(&sshd).exists() {
        return Some(format!("`{sshd}` not found (run scripts/setup)"));
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` not found (run scripts/setup)".into());
    }
    None
}

extern "C" fn teardown() {
    let set = TEARDOWN_SET.load(Ordering::SeqCst);
    if set == 0 {
        return;
    }
    let _ = Command::new(script("down"))
        .env("SKULK_TEST_HOSTS_SET", (set - 1).to_string())
        .env_remove("SKULK_TEST_HOSTS_DIR")
        .output();
}

impl TestHosts {
    /// Hosts of set `set`, with exactly `n` hosts, brought up once per test
    /// binary. `None` (after printing why) when this machine cannot make them
    /// and this is not CI.
    pub fn get(set: u8, n: usize) -> Option<&'static TestHosts> {
        let hosts = HOSTS
            .get_or_init(|| {
                if let Some(why) = missing_prerequisite() {
                    if in_ci() {
                        panic!("CI=true but test hosts cannot be made: {why}");
                    }
                    eprintln!("skipping: test hosts need root, ip and sshd: {why}");
                    return None;
                }
                Some(Self::up(set, n))
            })
            .as_ref()?;
        assert!(
            hosts.set == set && hosts.addrs.len() == n,
            "one test binary must use one host set: asked for set {set} with {n} hosts, have set {} with {}",
            hosts.set,
            hosts.addrs.len()
        );
        Some(hosts)
    }

    fn up(set: u8, n: usize) -> TestHosts {
        // The state directory is the scripts' default for the set, so that
        // `tests/hosts/down` with the same SKULK_TEST_HOSTS_SET finds it.
        let dir = if set == 0 {
            PathBuf::from("/tmp/skulk-test-hosts")
        } else {
            PathBuf::from(format!("/tmp/skulk-test-hosts-{set}"))
        };
        let existed = dir.join("env").exists();
        let out = Command::new(script("up"))
            .arg(n.to_string())
            .env("SKULK_TEST_HOSTS_SET", set.to_string())
            .env_remove("SKULK_TEST_HOSTS_DIR")
            .output()
            .expect("run tests/hosts/up");
        assert!(
            out.status.success(),
            "tests/hosts/up {n} (set {set}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !existed && std::env::var_os("SKULK_TEST_HOSTS_KEEP").is_none() {
            TEARDOWN_SET.store(set as u32 + 1, Ordering::SeqCst);
            // SAFETY: registering a plain extern "C" fn.
            unsafe { libc::atexit(teardown) };
        }
        let env = parse_env(&String::from_utf8_lossy(&out.stdout));
        let var = |k: &str| {
            env.get(k)
                .unwrap_or_else(|| panic!("tests/hosts/up printed no {k}"))
                .clone()
        };
        TestHosts {
            set,
            dir: PathBuf::from(var("SKULK_TEST_HOSTS_DIR")),
            addrs: (1..=n)
                .map(|i| var(&format!("SKULK_TEST_HOST_{i}")))
                .collect(),
            netns: (1..=n)
                .map(|i| var(&format!("SKULK_TEST_HOST_{i}_NETNS")))
                .collect(),
            user: var("SKULK_TEST_HOSTS_USER"),
            key: PathBuf::from(var("SKULK_TEST_HOSTS_KEY")),
            known_hosts: PathBuf::from(var("SKULK_TEST_HOSTS_KNOWN_HOSTS")),
            inventory: PathBuf::from(var("SKULK_TEST_HOSTS_INVENTORY")),
            unused_addr: format!("10.213.{set}.200"),
        }
    }

    /// Gives host `i` (1-based) a new host key and restarts its sshd; the
    /// set's known_hosts is updated. Returns the new SHA256 fingerprint.
    pub fn rekey(&self, i: usize) -> String {
        let out = Command::new(script("rekey"))
            .arg(i.to_string())
            .env("SKULK_TEST_HOSTS_SET", self.set.to_string())
            .env_remove("SKULK_TEST_HOSTS_DIR")
            .output()
            .expect("run tests/hosts/rekey");
        assert!(
            out.status.success(),
            "tests/hosts/rekey {i} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// SHA256 fingerprint of host `i`'s current host key, by `ssh-keygen`.
    pub fn fingerprint(&self, i: usize) -> String {
        let pubkey = self.dir.join(format!("h{i}/ssh_host_ed25519_key.pub"));
        let out = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(&pubkey)
            .output()
            .expect("run ssh-keygen");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("fingerprint field")
            .to_owned()
    }
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}
