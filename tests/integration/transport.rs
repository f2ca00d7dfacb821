//! The SSH and local transports against real hosts: test hosts with their own
//! sshd (set 1, three hosts; see `hosts`) and this machine.
//! Host 1 and 2 serve the command and file tests, host 2 also the
//! known_hosts tests that only use private copies of known_hosts, and host 3
//! belongs to the changed-key test alone, which regenerates its key.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::hosts::TestHosts;
use crate::serial;
use skulk::exec::{
    ExitStatus, LocalTransport, SshOptions, SshTransport, Transport, TransportError,
};

const SET: u8 = 1;
const N: usize = 3;

fn opts(h: &TestHosts) -> SshOptions {
    SshOptions {
        identity_file: Some(h.key.clone()),
        connect_timeout: Duration::from_secs(5),
        ..SshOptions::new(&h.user, h.known_hosts.clone())
    }
}

fn connect(h: &TestHosts, i: usize) -> SshTransport {
    SshTransport::connect(&format!("h{i}"), &h.addrs[i - 1], &opts(h))
        .unwrap_or_else(|e| panic!("connect to h{i}: {e}"))
}

/// Deterministic bytes that do not compress or repeat (xorshift64).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// --- behaviour every transport shares -------------------------------------

fn check_commands(t: &dyn Transport) {
    let out = t.run("echo out; echo err >&2; exit 7", None).unwrap();
    assert_eq!(out.status, ExitStatus::Code(7));
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");

    let out = t.run("kill -TERM $$", None).unwrap();
    assert_eq!(out.status, ExitStatus::Signal("TERM".into()));

    // No stdin: the command sees it closed at once.
    let out = t.run("cat; echo done", None).unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout_str(), "done\n");

    let err = t.run_checked("echo boom >&2; exit 4", None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("exit code 4") && msg.contains("boom"), "{msg}");
    assert!(msg.contains(&format!("`{}`", t.host().name)), "{msg}");
}

fn check_stdin(t: &dyn Transport) {
    let secret = b"ring-secret-0123456789abcdef\n";
    let out = t
        .run("read -r line; printf '%s' \"$line\" | wc -c", Some(secret))
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "28");

    // Several MiB through stdin while the command echoes them on stdout and
    // stderr: larger than any channel window, so both directions must flow
    // at once or this deadlocks.
    let data = noise(6 << 20, 42);
    let out = t.run("tee /dev/stderr", Some(&data)).unwrap();
    assert!(out.status.success(), "{}", out.stderr_str());
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data && out.stderr == data);

    // A command that stops reading early still completes.
    let out = t
        .run("head -c 10 >/dev/null; echo ok", Some(&data))
        .unwrap();
    assert_eq!(out.stdout_str(), "ok\n");
}

fn check_files(t: &dyn Transport, remote_dir: &Path) {
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("payload");
    let data = noise(3 << 20, 7);
    fs::write(&src, &data).unwrap();

    t.run_checked(
        &format!("rm -rf {0} && mkdir -p {0}", remote_dir.display()),
        None,
    )
    .unwrap();
    let dest = remote_dir.join("skulk bin"); // a space, to exercise quoting
    t.upload(&src, &dest, 0o750).unwrap();
    assert_eq!(t.read_file(&dest).unwrap().as_deref(), Some(&data[..]));
    let out = t
        .run_checked(&format!("stat -c %a '{}'", dest.display()), None)
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "750");

    // Replacing keeps no temporary file behind and applies the new mode.
    fs::write(&src, b"v2").unwrap();
    t.upload(&src, &dest, 0o600).unwrap();
    assert_eq!(t.read_file(&dest).unwrap().as_deref(), Some(&b"v2"[..]));
    let out = t
        .run_checked(
            &format!(
                "stat -c %a '{}'; ls -A '{}'",
                dest.display(),
                remote_dir.display()
            ),
            None,
        )
        .unwrap();
    assert_eq!(out.stdout_str(), "600\nskulk bin\n");

    assert_eq!(t.read_file(&remote_dir.join("missing")).unwrap(), None);
    let err = t.read_file(remote_dir).unwrap_err(); // a directory
    assert!(err.to_string().contains(&format!("`{}`", t.host().name)));
    let err = t
        .upload(&src, &remote_dir.join("no/such/dir/x"), 0o644)
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("`{}`", t.host().name)),
        "{err}"
    );

    t.run_checked(&format!("rm -rf {}", remote_dir.display()), None)
        .unwrap();
}

/// `run_streaming` hands output over while the command still runs: the
/// command prints a line, then waits (up to 20 s) for a file that only the
/// output callback creates when it has seen that line, then prints another.
/// A transport that buffered output until the end would see `timeout`.
fn check_streaming(t: &dyn Transport, flag: &Path) {
    let _ = fs::remove_file(flag);
    let f = flag.display();
    let command = format!(
        "echo first; i=0; while [ ! -e {f} ]; do i=$((i+1)); [ $i -gt 2000 ] && {{ echo timeout; exit 1; }}; sleep 0.01; done; echo second"
    );
    let mut seen = Vec::new();
    let out = t
        .run_streaming(&command, None, &mut |chunk| {
            seen.extend_from_slice(chunk);
            if seen.starts_with(b"first\n") && !flag.exists() {
                fs::write(flag, "").unwrap();
            }
        })
        .unwrap();
    let _ = fs::remove_file(flag);
    assert_eq!(out.stdout_str(), "first\nsecond\n", "{}", out.stderr_str());
    assert_eq!(seen, out.stdout);
}

fn scratch(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/tmp/skulk-transport-test-{}-{tag}",
        std::process::id()
    ))
}

#[test]
fn local_runs_commands() {
    let _shared = serial::shared();
    check_commands(&LocalTransport::new("here"));
    check_streaming(&LocalTransport::new("here"), &scratch("local-flag"));
}

#[test]
fn local_delivers_stdin() {
    let _shared = serial::shared();
    check_stdin(&LocalTransport::new("here"));
}

#[test]
fn local_uploads_and_reads_files() {
    let _shared = serial::shared();
    check_files(&LocalTransport::new("here"), &scratch("local"));
}

// --- SSH -------------------------------------------------------------------

#[test]
fn ssh_runs_commands_inside_the_host() {
    let _shared = serial::shared();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    let t = connect(h, 1);
    assert_eq!(t.host().name, "h1");
    assert_eq!(t.host().address, format!("{}:22", h.addrs[0]));
    check_commands(&t);
    // The test hosts share this machine's file system.
    check_streaming(&t, &scratch("ssh-flag"));
    // It really is the host: its network namespace has the host's address.
    let out = t.run_checked("ip -4 -o addr show dev eth0", None).unwrap();
    assert!(out.stdout_str().contains(&format!("{}/24", h.addrs[0])));
}

#[test]
fn ssh_delivers_stdin() {
    let _shared = serial::shared();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    check_stdin(&connect(h, 2));
}

#[test]
fn ssh_uploads_and_reads_files() {
    let _shared = serial::shared();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    check_files(&connect(h, 1), &scratch("ssh"));
}

#[test]
fn ssh_refuses_an_unknown_host_unless_accept_new() {
    let _shared = serial::shared();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("ssh/known_hosts"); // neither file nor dir exists
    let mut o = SshOptions {
        known_hosts: kh.clone(),
        ..opts(h)
    };

    let err = SshTransport::connect("h2", &h.addrs[1], &o)
        .err()
        .expect("unknown host refused");
    assert!(
        matches!(err, TransportError::UnknownHostKey { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("`h2`") && msg.contains(&h.addrs[1]), "{msg}");
    assert!(msg.contains(&h.fingerprint(2)), "{msg}");
    assert!(msg.contains("--accept-new-host-keys"), "{msg}");
    assert!(!kh.exists(), "refusing must not write known_hosts");

    o.accept_new = true;
    let t = SshTransport::connect("h2", &h.addrs[1], &o).unwrap();
    assert!(t.run("true", None).unwrap().status.success());
    let recorded = fs::read_to_string(&kh).unwrap();
    let expected = fs::read_to_string(h.dir.join("h2/ssh_host_ed25519_key.pub")).unwrap();
    let key: Vec<&str> = expected.split_whitespace().take(2).collect();
    assert_eq!(recorded, format!("{} {} {}\n", h.addrs[1], key[0], key[1]));

    // Now known: accepted without the flag, and not recorded twice.
    o.accept_new = false;
    SshTransport::connect("h2", &h.addrs[1], &o).unwrap();
    o.accept_new = true;
    SshTransport::connect("h2", &h.addrs[1], &o).unwrap();
    assert_eq!(fs::read_to_string(&kh).unwrap(), recorded);

    // OpenSSH's own checker agrees with the line we wrote.
    let status = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .arg("-i")
        .arg(&h.key)
        .arg(format!("root@{}", h.addrs[1]))
        .arg("true")
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn ssh_matches_hashed_known_hosts_entries() {
    let _shared = serial::shared();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    // Other hosts' lines, a comment and a line libssh2 cannot parse around
    // the one that matters, then hashed as Debian's ssh does by default.
    let mut text =
        String::from("# comment\n@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJunk\n");
    text.push_str(&fs::read_to_string(&h.known_hosts).unwrap());
    fs::write(&kh, text).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&kh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hashed = fs::read_to_string(&kh).unwrap();
    assert!(!hashed.contains(&h.addrs[1]) && hashed.contains("|1|"));
    let o = SshOptions {
        known_hosts: kh,
        ..opts(h)
    };
    let t = SshTransport::connect("h2", &h.addrs[1], &o).unwrap();
    assert!(t.run("true", None).unwrap().status.success());
}

#[test]
fn ssh_always_refuses_a_changed_host_key() {
    let _shared = serial::shared();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("known_hosts.before");
    fs::copy(&h.known_hosts, &old).unwrap();
    let before = fs::read(&old).unwrap();
    connect(h, 3); // the recorded key works before the host is reinstalled

    let new_fp = h.rekey(3);
    assert_eq!(new_fp, h.fingerprint(3));
    for accept_new in [false, true] {
        let o = SshOptions {
            known_hosts: old.clone(),
            accept_new,
            ..opts(h)
        };
        let err = SshTransport::connect("h3", &h.addrs[2], &o)
            .err()
            .expect("changed key refused");
        assert!(
            matches!(err, TransportError::HostKeyChanged { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("`h3`") && msg.contains(&h.addrs[2]), "{msg}");
        assert!(msg.contains(&new_fp), "fingerprint missing: {msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }
    // The old file was left alone; the updated one connects.
    assert_eq!(fs::read(&old).unwrap(), before);
    connect(h, 3);
}

#[test]
fn ssh_io_timeout_ends_a_silent_command() {
    let _shared = serial::shared();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    // Long enough for a quick command on a loaded machine (other suites run
    // beside this one), well short of the silent one.
    let o = SshOptions {
        io_timeout: Some(Duration::from_secs(2)),
        ..opts(h)
    };
    let t = SshTransport::connect("h2", &h.addrs[1], &o).unwrap();
    assert!(t.run("echo hi", None).unwrap().status.success());
    let err = t.run("sleep 10", None).unwrap_err();
    assert!(matches!(err, TransportError::IoTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("`h2`"), "{err}");
}

#[test]
fn ssh_refuses_a_key_that_is_not_authorised() {
    let _shared = serial::shared();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("stranger");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let o = SshOptions {
        identity_file: Some(key.clone()),
        ..opts(h)
    };
    let err = SshTransport::connect("h1", &h.addrs[0], &o)
        .err()
        .expect("unauthorised key refused");
    assert!(matches!(err, TransportError::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("`root`") && msg.contains("`h1`"), "{msg}");
    assert!(msg.contains(&key.display().to_string()), "{msg}");
}

#[test]
fn ssh_to_an_unreachable_address_fails_within_the_connect_timeout() {
    let _shared = serial::shared();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    let o = SshOptions {
        connect_timeout: Duration::from_secs(2),
        ..opts(h)
    };
    let start = Instant::now();
    let err = SshTransport::connect("ghost", &h.unused_addr, &o)
        .err()
        .expect("nobody at the unused address");
    // Without the limit the kernel would retry the SYN for about two minutes;
    // the bound is loose so a busy machine cannot make this fail.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            err,
            TransportError::ConnectTimeout { .. } | TransportError::Connect { .. }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`ghost`") && msg.contains(&h.unused_addr),
        "{msg}"
    );
}

#[test]
fn ssh_handshake_with_a_silent_server_times_out_naming_the_host() {
    let _shared = serial::shared();
    // Accepts TCP but never speaks SSH: only the handshake timeout ends it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let o = SshOptions {
        port,
        connect_timeout: Duration::from_secs(1),
        ..SshOptions::new("root", dir.path().join("known_hosts"))
    };
    let start = Instant::now();
    let err = SshTransport::connect("mute", "127.0.0.1", &o)
        .err()
        .expect("silent server");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(err, TransportError::ConnectTimeout { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`mute`") && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );
    drop(listener);
}
