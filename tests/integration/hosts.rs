//! Test hosts for integration tests: a set of network namespaces on this
//! machine, each with its own address and its own real `sshd`, made by the
//! scripts in `tests/hosts/` (`up`, `down`, `rekey`; see `common.sh`).
//!
//! `let Some(h) = hosts::TestHosts::get(SET, N) else { return };`
//! The first call for a set brings its hosts up (idempotent); the sets this
//! process created are taken down when it exits, unless
//! `SKULK_TEST_HOSTS_KEEP=1`. Each suite uses its own set number (`SET`,
//! 0..250), so that suites running at once, or tests that change a host
//! (`rekey`), do not disturb each other.
//!
//! Needs root and `ip`/`sshd`. Without them the tests skip with a message,
//! except under CI, where they fail (`prereq`): CI runs as root and must run
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, Once};

use crate::prereq;

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
    /// An address in the hosts' subnet where no host answers.
    pub unused_addr: String,
}

/// The sets brought up in this process, each with its size; `None` for
/// every set once the hosts turned out impossible here.
static HOSTS: Mutex<BTreeMap<u8, Option<&'static TestHosts>>> = Mutex::new(BTreeMap::new());
/// Sets this process created, to take down at exit.
static TEARDOWN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hosts")
        .join(name)
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
    // At exit no test runs any more; a poisoned list is still the list.
    let sets = TEARDOWN.lock().unwrap_or_else(|e| e.into_inner());
    for set in sets.iter() {
        let _ = Command::new(script("down"))
            .env("SKULK_TEST_HOSTS_SET", set.to_string())
            .env_remove("SKULK_TEST_HOSTS_DIR")
            .output();
    }
}

impl TestHosts {
    /// Hosts of set `set`, with exactly `n` hosts, brought up once per
    /// process. `None` (after [`prereq::skip`]: a failure under CI) when this
    /// machine cannot make them.
    pub fn get(set: u8, n: usize) -> Option<&'static TestHosts> {
        // Held while the set comes up, so a set is brought up once.
        let mut sets = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hosts) = sets.get(&set) {
            let hosts = (*hosts)?;
            assert!(
                hosts.addrs.len() == n,
                "one suite must use one host set: asked for set {set} with {n} hosts, have {}",
                hosts.addrs.len()
            );
            return Some(hosts);
        }
        let hosts = match missing_prerequisite() {
            Some(why) => {
                prereq::skip(format!("test hosts need root, ip and sshd: {why}"));
                None
            }
            None => Some(&*Box::leak(Box::new(Self::up(set, n)))),
        };
        sets.insert(set, hosts);
        hosts
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
            TEARDOWN.lock().unwrap_or_else(|e| e.into_inner()).push(set);
            static AT_EXIT: Once = Once::new();
            // SAFETY: registers a plain extern "C" fn that takes no
            // arguments, once per process.
            AT_EXIT.call_once(|| unsafe {
                libc::atexit(teardown);
            });
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
