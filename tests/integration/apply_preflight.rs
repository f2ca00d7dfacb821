//! `skulk apply` up to the point where ranks would start, and `status`,
//! `down`, `inventory probe`, against real SSH test hosts (set 5, three
//! hosts; see `hosts`): host keys, preflight failures (all hosts
//! reported together, nothing started), dry runs. Nothing here starts a
//! rank, so these tests can run in parallel on the same hosts; each test
//! plans with its own ring port and model directories, so plans differ.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::apply_support::*;
use crate::hosts::TestHosts;
use crate::serial;

const SET: u8 = 5;
const N: usize = 3;

fn test_hosts() -> Option<&'static TestHosts> {
    TestHosts::get(SET, N)
}

/// Three hosts, sparse model files, a plan over all three with `port`.
fn three_host_plan(h: &TestHosts, sc: &Scratch, port: u16) -> std::path::PathBuf {
    let inv = sc.inventory(h, &sc.hosts(h, N, false));
    sc.plan(&inv, &["h1", "h2", "h3"], port)
}

#[test]
fn unknown_host_keys_are_refused_and_not_recorded() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let plan = three_host_plan(h, &sc, ring_port(1));
    let kh = sc.path("known_hosts");
    fs::write(&kh, "").unwrap();
    let r = skulk(&[
        "apply",
        s(&plan),
        "--known-hosts",
        s(&kh),
        "--remote-skulk",
        skulk_bin(),
    ])
    .expect(2);
    r.assert_stderr_has("cannot connect to 3 of 3 hosts");
    for i in 1..=N {
        r.assert_stderr_has(&format!(
            "`h{i}` (`{}:22`) is not in known_hosts",
            h.addrs[i - 1]
        ));
        r.assert_stderr_has(&h.fingerprint(i));
    }
    r.assert_stderr_has("--accept-new-host-keys");
    assert_eq!(fs::read_to_string(&kh).unwrap(), "", "nothing recorded");
    assert!(!runs_dir(&plan).exists(), "nothing written on the hosts");
}

#[test]
fn changed_host_keys_are_refused_even_when_accepting_new_ones() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let plan = three_host_plan(h, &sc, ring_port(2));
    // known_hosts that records another key for every host, as if each had
    // been reinstalled or someone were in the middle.
    let other = sc.path("other_key");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", s(&other)])
        .status()
        .unwrap();
    assert!(ok.success());
    let pubkey = fs::read_to_string(sc.path("other_key.pub")).unwrap();
    let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    let kh = sc.path("known_hosts");
    let lines: String = h
        .addrs
        .iter()
        .map(|a| format!("{a} {}\n", key.join(" ")))
        .collect();
    fs::write(&kh, &lines).unwrap();
    let r = skulk(&[
        "apply",
        s(&plan),
        "--known-hosts",
        s(&kh),
        "--accept-new-host-keys",
        "--remote-skulk",
        skulk_bin(),
    ])
    .expect(2);
    for i in 1..=N {
        r.assert_stderr_has(&format!("host key of `h{i}`"));
        r.assert_stderr_has(&h.fingerprint(i));
    }
    r.assert_stderr_has("has CHANGED");
    assert_eq!(
        fs::read_to_string(&kh).unwrap(),
        lines,
        "known_hosts untouched"
    );
}

#[test]
fn new_host_keys_are_recorded_with_the_flag_and_a_dry_run_starts_nothing() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let plan = three_host_plan(h, &sc, ring_port(3));
    let kh = sc.path("known_hosts");
    let r = skulk(&[
        "apply",
        s(&plan),
        "--known-hosts",
        s(&kh),
        "--accept-new-host-keys",
        "--remote-skulk",
        skulk_bin(),
        "--dry-run",
        "--timeout",
        "77",
    ])
    .expect(0);
    let recorded = fs::read_to_string(&kh).unwrap();
    for a in &h.addrs {
        assert!(
            recorded
                .lines()
                .any(|l| l.starts_with(&format!("{a} ssh-ed25519 "))),
            "{recorded}"
        );
    }
    // Every host's steps, in rank order, with the real paths and flags.
    let out = &r.stdout;
    let mut at = 0;
    for i in 1..=N {
        let head = format!(
            "## rank {} on `h{i}` (root@{}:22), layers ",
            i - 1,
            h.addrs[i - 1]
        );
        let pos = out[at..]
            .find(&head)
            .unwrap_or_else(|| panic!("no `{head}` after byte {at}:\n{out}"));
        at += pos;
        let section = &out[at..];
        for step in ["### copy plan", "### write ring secret", "### start rank"] {
            assert!(section.contains(step), "{step} missing:\n{section}");
        }
        assert!(
            section.contains(&format!(
                "{} run-shard --plan \"$d\"/plan.json --node h{i} --secret-file \"$d\"/secret --formation-timeout 77",
                skulk_bin()
            )),
            "{section}"
        );
    }
    assert!(
        out.contains("(stdin: the ring secret of this apply, 64 hex digits)"),
        "{out}"
    );
    assert!(
        !out.contains("### install skulk"),
        "skulk is in place: {out}"
    );
    // Nothing was started or written.
    assert!(!runs_dir(&plan).exists());
    let st = skulk(&["status", s(&plan), "--known-hosts", s(&kh), "-o", "json"]).expect(3);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    for r in v["ranks"].as_array().unwrap() {
        assert_eq!(r["state"], "absent", "{}", st.stdout);
    }
}

#[test]
fn install_is_part_of_the_dry_run_where_skulk_is_missing() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let plan = three_host_plan(h, &sc, ring_port(4));
    let dest = sc.path("bin/skulk");
    let mut args = vec!["apply", s(&plan), "--known-hosts"];
    let kh = h.known_hosts.display().to_string();
    args.extend([kh.as_str(), "--remote-skulk", s(&dest)]);
    // Without --install: a preflight failure on every host.
    let r = skulk(&args).expect(2);
    assert!(
        r.stderr
            .contains("preflight failed on 3 of 3 hosts; nothing was started"),
        "{}",
        r.stderr
    );
    r.assert_stderr_has(&format!("skulk not found (`{}`)", dest.display()));
    r.assert_stderr_has("hint: pass `--install`");
    // With it: the copy is planned, and the rank starts the copy.
    args.extend(["--install", "--dry-run"]);
    let r = skulk(&args).expect(0);
    assert_eq!(
        r.stdout.matches("### install skulk").count(),
        N,
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(&format!("scp {} -> {}", skulk_bin(), dest.display())),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("{} run-shard", dest.display())),
        "{}",
        r.stdout
    );
    assert!(!dest.exists(), "a dry run copies nothing");
}

#[test]
fn a_wrong_skulk_version_fails_preflight_on_every_host() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let plan = three_host_plan(h, &sc, ring_port(5));
    let fake = sc.path("old-skulk");
    fs::write(&fake, "#!/bin/sh\necho 'skulk 0.0.1'\n").unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut a = vec!["apply".to_owned(), s(&plan).to_owned()];
    a.extend(host_flags(h));
    a.extend(["--remote-skulk".into(), s(&fake).into()]);
    let r = skulk(&strs(&a)).expect(2);
    assert!(
        r.stderr
            .contains("preflight failed on 3 of 3 hosts; nothing was started"),
        "{}",
        r.stderr
    );
    let want = format!(
        "`{}` reports `skulk 0.0.1`, this is `skulk {}`",
        fake.display(),
        env!("CARGO_PKG_VERSION")
    );
    for i in 1..=N {
        r.assert_stderr_has(&format!("host `h{i}` (`{}`): {want}", h.addrs[i - 1]));
    }
    assert!(!runs_dir(&plan).exists(), "nothing written");
}

#[test]
fn a_missing_model_fails_preflight_naming_host_and_path() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let mut specs = sc.hosts(h, N, false);
    let empty = sc.path("empty-models");
    fs::create_dir_all(&empty).unwrap();
    specs[1].model_dir = Some(empty.clone());
    let inv = sc.inventory(h, &specs);
    let plan = sc.plan(&inv, &["h1", "h2", "h3"], ring_port(6));
    let r = skulk(&strs(&apply_args(h, &plan, &[]))).expect(2);
    assert!(
        r.stderr
            .contains("preflight failed on 1 of 3 hosts; nothing was started"),
        "{}",
        r.stderr
    );
    let path = empty.join(SMOL_STORE).join(SMOL_FILE);
    r.assert_stderr_has(&format!(
        "host `h2` (`{}`): model file `{}` is missing",
        h.addrs[1],
        path.display()
    ));
    assert!(
        !r.stderr.contains("host `h1`") && !r.stderr.contains("host `h3`"),
        "{}",
        r.stderr
    );
    assert!(!runs_dir(&plan).exists());
}

#[test]
fn an_architecture_skulk_cannot_split_fails_preflight_on_rank_0_before_anything_starts() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    // Every host's model file says `rwkv7`, a llama.cpp architecture skulk
    // does not split; only rank 0's host reads the header.
    let mut specs = sc.hosts(h, N, false);
    for (i, spec) in specs.iter_mut().enumerate() {
        spec.model_dir = Some(sc.model_dir_of(&format!("rwkv-h{}", i + 1), false, "rwkv7"));
    }
    let inv = sc.inventory(h, &specs);
    let plan = sc.plan(&inv, &["h1", "h2", "h3"], ring_port(11));
    let r = skulk(&strs(&apply_args(h, &plan, &[]))).expect(2);
    r.assert_stderr_has("preflight failed on 1 of 3 hosts; nothing was started");
    r.assert_stderr_has(&format!("host `h1` (`{}`): model file `", h.addrs[0]));
    r.assert_stderr_has("has architecture `rwkv7`, which skulk cannot split across hosts yet (this plan has 3 ranks)");
    r.assert_stderr_has("hint: skulk splits llama, mistral3,");
    r.assert_stderr_has("run this model on one host");
    assert!(!runs_dir(&plan).exists(), "nothing written on the hosts");
}

#[test]
fn a_busy_ring_port_fails_preflight() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let port = ring_port(7);
    let plan = three_host_plan(h, &sc, port);
    // Something else listens on host 3's address at the plan's ring port.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &h.netns[2], "python3", "-c"])
        .arg("import socket,sys,time\ns=socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()\nprint('listening', flush=True); time.sleep(300)")
        .args([&h.addrs[2], &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening");
    let r = skulk(&strs(&apply_args(h, &plan, &[])));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let r = r.expect(2);
    r.assert_stderr_has(&format!(
        "host `h3` (`{}`): ring port `{port}` on `{}` is already in use",
        h.addrs[2], h.addrs[2]
    ));
    r.assert_stderr_has("preflight failed on 1 of 3 hosts");
}

#[test]
fn an_unreachable_host_fails_within_the_connect_timeout_naming_it() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let mut specs = sc.hosts(h, 2, false);
    specs[1].address = h.unused_addr.clone();
    let inv = sc.inventory(h, &specs);
    let plan = sc.plan(&inv, &["h1", "h2"], ring_port(8));
    let started = Instant::now();
    let r = skulk(&strs(&apply_args(h, &plan, &[]))).expect(2);
    // The transport's connect timeout is 10 s; the hosts are tried in parallel.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    r.assert_stderr_has("cannot connect to 1 of 2 hosts");
    r.assert_stderr_has(&format!("`h2` (`{}:22`)", h.unused_addr));
}

#[test]
fn plans_the_engines_cannot_run_are_refused() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let inv = sc.inventory(h, &sc.hosts(h, 2, false));
    let text = fs::read_to_string(&inv)
        .unwrap()
        .replace("[llama_cpp-cpu]", "[mlx]");
    fs::write(&inv, text).unwrap();
    let card = "modelId: mlx-community/Tiny-4bit\nstorageSize: {inBytes: 1000000}\nnLayers: 4\nhiddenSize: 64\nsupportsTensor: true\ntasks: [TextGeneration]\n";
    let plan = sc.plan_card(card, &inv, &["h1", "h2"], ring_port(9));
    let r = skulk(&strs(&apply_args(h, &plan, &[]))).expect(1);
    r.assert_stderr_has("`mlx`");
    r.assert_stderr_has(s(&plan));
}

#[test]
fn status_and_down_of_a_plan_that_never_ran() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let sc = Scratch::new();
    let plan = three_host_plan(h, &sc, ring_port(10));
    let kh = h.known_hosts.display().to_string();
    let st = skulk(&["status", s(&plan), "--known-hosts", &kh]).expect(3);
    st.assert_stderr_has(&format!("`skulk apply {}` starts it", s(&plan)));
    assert_eq!(st.stdout.matches(" absent ").count(), N, "{}", st.stdout);
    assert!(
        st.stdout.contains("unreachable") || st.stdout.contains("not ready"),
        "{}",
        st.stdout
    );
    for _ in 0..2 {
        let d = skulk(&["down", s(&plan), "--known-hosts", &kh]).expect(0);
        assert_eq!(
            d.stderr
                .matches("nothing of this plan running; cleaned up")
                .count(),
            N,
            "{}",
            d.stderr
        );
    }
}

#[test]
fn probe_prints_inventory_entries_from_the_hosts() {
    let _shared = serial::shared();
    let Some(h) = test_hosts() else { return };
    let targets: Vec<String> = h.addrs[..2]
        .iter()
        .map(|a| format!("{}@{a}", h.user))
        .collect();
    let mut args = vec!["inventory", "probe"];
    args.extend(targets.iter().map(String::as_str));
    let key = h.key.display().to_string();
    let kh = h.known_hosts.display().to_string();
    args.extend(["-i", &key, "--known-hosts", &kh]);
    let r = skulk(&args).expect(0);
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&r.stdout).unwrap();
    let hosts = v["hosts"].as_sequence().unwrap();
    assert_eq!(hosts.len(), 2);
    // The test hosts share this machine's kernel: same memory and cores.
    let nproc = Command::new("nproc").output().unwrap();
    let cores: u64 = String::from_utf8_lossy(&nproc.stdout)
        .trim()
        .parse()
        .unwrap();
    for (e, a) in hosts.iter().zip(&h.addrs) {
        assert_eq!(e["address"].as_str(), Some(a.as_str()));
        assert_eq!(e["ssh"]["user"].as_str(), Some(h.user.as_str()));
        assert_eq!(e["threads"].as_u64(), Some(cores), "{}", r.stdout);
        assert!(
            e["memory"]["total"].as_str().unwrap().ends_with("iB"),
            "{}",
            r.stdout
        );
    }
    assert_ne!(
        hosts[0]["name"], hosts[1]["name"],
        "names are unique: {}",
        r.stdout
    );
    // Without the engine the entries list a default build's backend (and
    // skulk says so), so they are still a valid inventory.
    let backends = hosts[0]["backends"].as_sequence().unwrap();
    assert!(!backends.is_empty(), "{}", r.stdout);
    assert_eq!(
        r.stderr.contains("built without the llama.cpp engine"),
        !cfg!(feature = "engine"),
        "{}",
        r.stderr
    );
}
