//! `skulk apply --watch` all the way: a supervisor keeping SmolLM2 up on
//! three SSH test hosts (set 7) while its ranks are killed, frozen and cut
//! off, with short grace periods so the runs stay short. The tests start
//! ranks and time what they see, so they run one at a time and alone
//! (`serial::alone`).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::apply_support::*;
use crate::hosts::TestHosts;
use crate::serial;

const SET: u8 = 7;
const N: usize = 3;

/// The test hosts and the model, or `None` (after `prereq::skip`: a
/// failure under CI) where this machine cannot run the tests.
fn prerequisites() -> Option<&'static TestHosts> {
    if !engine_built() {
        return None;
    }
    let h = TestHosts::get(SET, N)?;
    smol_model()?;
    Some(h)
}

/// A running `skulk apply --watch`, its stderr collected as it comes.
struct Watcher {
    child: Child,
    log: Arc<Mutex<String>>,
    endpoint: Arc<Mutex<Vec<String>>>,
}

impl Watcher {
    fn start(h: &TestHosts, plan: &Path, extra: &[&str]) -> Watcher {
        let mut args = apply_args(h, plan, &["--watch", "--timeout", "120"]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(skulk_bin())
            .args(&args)
            .env_remove("SKULK_API_KEY")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start skulk apply --watch");
        let log = Arc::new(Mutex::new(String::new()));
        let endpoint = Arc::new(Mutex::new(Vec::new()));
        let (l, err) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[watch] {line}");
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (e, out) = (endpoint.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                e.lock().unwrap().push(line);
            }
        });
        Watcher {
            child,
            log,
            endpoint,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds `needle` `count` times; fails after `limit`.
    fn wait_for_n(&mut self, needle: &str, count: usize, limit: Duration) -> Instant {
        let end = Instant::now() + limit;
        loop {
            if self.log().matches(needle).count() >= count {
                return Instant::now();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the supervisor exited ({status}) before `{needle}`:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < end,
                "no `{needle}` (x{count}) within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&mut self, needle: &str, limit: Duration) -> Instant {
        self.wait_for_n(needle, 1, limit)
    }

    /// The endpoint last printed on stdout. The supervisor notes "serving"
    /// on stderr just before it prints the endpoint on stdout, and the two
    /// pipes are read by different threads: wait a little for it.
    fn endpoint(&self) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.endpoint.lock().unwrap().last().cloned() {
                return e;
            }
            assert!(
                Instant::now() < end,
                "no endpoint on stdout:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT (Ctrl-C), then the exit code.
    fn interrupt(mut self) -> (i32, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                return (status.code().unwrap_or(-1), self.log());
            }
            assert!(
                Instant::now() < end,
                "the supervisor did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watcher {
    /// SIGTERM first: the supervisor then stops the ranks it started (unless
    /// `--keep-running`), so a test that failed half-way does not leave its
    /// ring on the hosts for the next test to find. SIGKILL if it hangs.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Takes a test host's network link down; up again when dropped.
struct LinkDown {
    veth: String,
}

impl LinkDown {
    fn new(h: &TestHosts, i: usize) -> LinkDown {
        let veth = format!("sk{}-h{i}", h.set);
        link(&veth, "down");
        LinkDown { veth }
    }

    fn restore(self) {}
}

impl Drop for LinkDown {
    fn drop(&mut self) {
        link(&self.veth, "up");
    }
}

fn link(veth: &str, state: &str) {
    let st = Command::new("ip")
        .args(["link", "set", veth, state])
        .status()
        .expect("ip link");
    assert!(st.success(), "ip link set {veth} {state}");
}

/// `host:port` of an endpoint `http://host:port/v1`.
fn authority(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned()
}

/// One HTTP request; the status and body.
fn http(endpoint: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(authority(endpoint))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn healthy(endpoint: &str) -> bool {
    http(endpoint, "GET", "/health", "").is_ok_and(|(s, _)| s == 200)
}

/// A greedy completion must succeed; its text.
fn complete(endpoint: &str) -> String {
    let body = r#"{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":8,"temperature":0}"#;
    let (status, text) = http(endpoint, "POST", "/v1/chat/completions", body).unwrap();
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// pid of the rank of `node` in the plan's run directory.
fn rank_pid(plan: &Path, node: &str) -> u32 {
    let state = runs_dir(plan).join(node).join("state");
    let text = fs::read_to_string(&state).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .expect("pid in the state record")
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) is not a running rank.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn status_json(h: &TestHosts, plan: &Path) -> serde_json::Value {
    let r = skulk(&[
        "status",
        s(plan),
        "--known-hosts",
        s(&h.known_hosts),
        "-o",
        "json",
    ]);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr))
}

/// Nothing of the plans with these digests runs or listens on any host.
fn assert_all_gone(h: &TestHosts, digests: &[String], ports: &[u16]) {
    for digest in digests {
        let d16 = &digest[..16];
        let procs = processes_with(&format!("runs/{d16}/"));
        assert!(
            procs.is_empty(),
            "processes of plan {d16} still running: {procs:?}"
        );
    }
    for ns in &h.netns {
        let l = listening(ns);
        for p in ports {
            assert!(
                !l.contains(&format!(":{p} ")),
                "port {p} still listening in {ns}:\n{l}"
            );
        }
    }
}

/// Three real ranks over the three hosts, with `--nodes`.
fn three_rank_plan(h: &TestHosts, sc: &Scratch, port: u16) -> (PathBuf, PathBuf) {
    let inv = sc.inventory(h, &sc.hosts(h, N, true));
    let plan = sc.plan(&inv, &["h1", "h2", "h3"], port);
    (inv, plan)
}

#[test]
fn a_killed_rank_is_restarted_and_the_ring_serves_again_within_10_s() {
    let _alone = serial::alone();
    let Some(h) = prerequisites() else { return };
    let sc = Scratch::new();
    let port = ring_port(30);
    let (inv, plan) = three_rank_plan(h, &sc, port);
    let mut w = Watcher::start(h, &plan, &["--inventory", s(&inv)]);
    w.wait_for("serving plan", Duration::from_secs(180));
    let endpoint = w.endpoint();
    let before = complete(&endpoint);
    let old: Vec<u32> = ["h1", "h2", "h3"]
        .iter()
        .map(|n| rank_pid(&plan, n))
        .collect();

    // A streaming request; the middle rank dies while it streams.
    let mut stream = TcpStream::connect(authority(&endpoint)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = r#"{"messages":[{"role":"user","content":"Count from one to one thousand."}],"max_tokens":2000,"temperature":0,"stream":true}"#;
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !line.starts_with("data: {") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early"
        );
    }
    let killed = Instant::now();
    let st = Command::new("kill")
        .args(["-9", &old[1].to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    assert!(
        !rest.contains("data: [DONE]"),
        "the request finished with a rank dead:\n{rest}"
    );
    assert!(
        rest.contains("\"error\""),
        "the stream ends with an error event:\n{rest}"
    );

    // Serving again within 10 s.
    while !healthy(&endpoint) {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "not serving again:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = killed.elapsed();
    eprintln!("kill -9 -> serving again: {:.1} s", took.as_secs_f64());
    assert!(
        took < Duration::from_secs(10),
        "serving again after {took:?}:\n{}",
        w.log()
    );
    // The API can answer before the supervisor's next health check sees
    // it: wait for its second `serving plan` (the first was at the start).
    w.wait_for_n("serving plan", 2, Duration::from_secs(10));
    assert_eq!(
        complete(&endpoint),
        before,
        "the restarted ring answers as before"
    );
    for pid in &old {
        assert!(!alive(*pid), "old rank {pid} still runs");
    }
    let d16 = &plan_digest(&plan)[..16];
    assert_eq!(
        processes_with(&format!("runs/{d16}/")).len(),
        N,
        "one rank per host"
    );

    let v = status_json(h, &plan);
    assert_eq!(v["supervisor"]["condition"], "serving", "{v}");
    let history = v["supervisor"]["history"].to_string();
    assert!(history.contains("failed: "), "{history}");

    // A frozen rank (SIGSTOP) is detected too, and replaced.
    let frozen = rank_pid(&plan, "h2");
    let st = Command::new("kill")
        .args(["-STOP", &frozen.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let stopped_at = Instant::now();
    w.wait_for_n("failed:", 2, Duration::from_secs(30));
    eprintln!(
        "SIGSTOP -> ring failure noticed: {:.1} s",
        stopped_at.elapsed().as_secs_f64()
    );
    w.wait_for_n("serving plan", 3, Duration::from_secs(60));
    assert!(!alive(frozen), "the frozen rank was stopped");
    complete(&endpoint);

    let (code, log) = w.interrupt();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("interrupted: bringing plan"), "{log}");
    assert_all_gone(h, &[plan_digest(&plan)], &[port, 52415]);
}

#[test]
fn a_host_lost_past_the_grace_is_planned_around_and_returned_to() {
    let _alone = serial::alone();
    let Some(h) = prerequisites() else { return };
    let sc = Scratch::new();
    let port = ring_port(31);
    let (inv, plan) = three_rank_plan(h, &sc, port);
    let mut w = Watcher::start(
        h,
        &plan,
        &["--inventory", s(&inv), "--grace", "5", "--drain", "5"],
    );
    w.wait_for("serving plan", Duration::from_secs(180));
    let endpoint = w.endpoint();
    let text = complete(&endpoint);

    let down = LinkDown::new(h, 3);
    let cut = Instant::now();
    w.wait_for("degraded: serving plan", Duration::from_secs(120));
    eprintln!(
        "link down -> serving on the smaller plan: {:.1} s (grace 5 s)",
        cut.elapsed().as_secs_f64()
    );
    let log = w.log();
    assert!(log.contains("planned without `h3`: plan "), "{log}");
    assert!(
        log.contains("`h3`: rank 2 layers [20, 30) -> not in the plan"),
        "{log}"
    );
    let degraded = state_degraded_path(&plan);
    assert!(
        degraded.exists(),
        "the smaller plan is written beside the plan"
    );
    let degraded_digest = plan_digest(&degraded);
    // Rank 0 stays on h1: the API stays where it was.
    assert!(healthy(&endpoint));
    assert_eq!(complete(&endpoint), text, "two ranks answer like three");
    let v = status_json(h, &plan);
    assert_eq!(v["supervisor"]["condition"], "degraded", "{v}");
    assert_eq!(v["supervisor"]["without"], serde_json::json!(["h3"]), "{v}");
    assert_eq!(v["ranks"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["planDigest"], degraded_digest, "{v}");
    let table = skulk(&["status", s(&plan), "--known-hosts", s(&h.known_hosts)]);
    assert!(
        table.stdout.contains("degraded: running plan ")
            && table.stdout.contains("without host `h3` since "),
        "{}",
        table.stdout
    );

    // The host comes back: the full plan again.
    down.restore();
    let back = Instant::now();
    let d16 = plan_digest(&plan)[..16].to_owned();
    w.wait_for(
        &format!("serving plan {d16} again"),
        Duration::from_secs(120),
    );
    eprintln!(
        "link up -> full plan serving: {:.1} s",
        back.elapsed().as_secs_f64()
    );
    assert!(
        w.log().contains("answer again; moving back to plan"),
        "{}",
        w.log()
    );
    assert_eq!(complete(&endpoint), text);
    let v = status_json(h, &plan);
    assert_eq!(v["supervisor"]["condition"], "serving", "{v}");
    assert_eq!(v["ranks"].as_array().unwrap().len(), 3, "{v}");

    let (code, log) = w.interrupt();
    assert_eq!(code, 0, "{log}");
    assert!(!degraded.exists(), "the smaller plan is gone with it");
    assert_all_gone(h, &[plan_digest(&plan), degraded_digest], &[port, 52415]);
}

/// The API host itself is lost: the smaller plan has a new rank 0, the
/// supervisor prints the new endpoint and `status` says where the API went;
/// when the host returns, the API is back where it was.
#[test]
fn a_lost_api_host_moves_the_api_and_status_says_where() {
    let _alone = serial::alone();
    let Some(h) = prerequisites() else { return };
    let sc = Scratch::new();
    let port = ring_port(35);
    let (inv, plan) = three_rank_plan(h, &sc, port);
    let mut w = Watcher::start(
        h,
        &plan,
        &["--inventory", s(&inv), "--grace", "5", "--drain", "5"],
    );
    w.wait_for("serving plan", Duration::from_secs(180));
    let first = w.endpoint();
    let text = complete(&first);

    let down = LinkDown::new(h, 1);
    w.wait_for("degraded: serving plan", Duration::from_secs(120));
    let log = w.log();
    assert!(log.contains("planned without `h1`: plan "), "{log}");
    // The new endpoint follows the note on stdout.
    let end = Instant::now() + Duration::from_secs(10);
    let moved = loop {
        let e = w.endpoint();
        if e != first {
            break e;
        }
        assert!(
            Instant::now() < end,
            "the endpoint did not move:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(moved.contains(&format!("//{}:", h.addrs[1])), "{moved}");
    assert_eq!(complete(&moved), text, "two ranks answer like three");
    let v = status_json(h, &plan);
    assert_eq!(v["supervisor"]["condition"], "degraded", "{v}");
    assert_eq!(v["supervisor"]["without"], serde_json::json!(["h1"]), "{v}");
    assert_eq!(v["supervisor"]["endpoint"], moved.as_str(), "{v}");
    let degraded_digest = plan_digest(&state_degraded_path(&plan));

    down.restore();
    let d16 = plan_digest(&plan)[..16].to_owned();
    w.wait_for(
        &format!("serving plan {d16} again"),
        Duration::from_secs(120),
    );
    let end = Instant::now() + Duration::from_secs(10);
    while w.endpoint() != first {
        assert!(
            Instant::now() < end,
            "the API did not come back:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(complete(&first), text);

    let (code, log) = w.interrupt();
    assert_eq!(code, 0, "{log}");
    assert_all_gone(h, &[plan_digest(&plan), degraded_digest], &[port, 52415]);
}

fn state_degraded_path(plan: &Path) -> PathBuf {
    plan.with_file_name("plan.degraded.json")
}

#[test]
fn a_host_the_model_cannot_do_without_is_waited_for_and_stopping_then_fails() {
    let _alone = serial::alone();
    let Some(h) = prerequisites() else { return };
    let sc = Scratch::new();
    let port = ring_port(32);
    // 600 MiB per host: three hosts hold SmolLM2 with 8192 tokens of KV
    // (0.40 GiB each, 0.44 usable), two do not (0.48 GiB each).
    let specs = sc.hosts(h, N, true);
    let mut y = String::from("hosts:\n");
    for sp in &specs {
        y.push_str(&format!(
            "  - name: {}\n    address: {}\n    connection: ssh\n    ssh: {{user: {}, port: 22, identityFile: {}}}\n    memory: {{total: 600MiB, available: 600MiB}}\n    threads: 1\n    backends: [llama_cpp-cpu]\n    modelDir: {}\n",
            sp.name,
            sp.address,
            h.user,
            h.key.display(),
            sp.model_dir.as_ref().unwrap().display()
        ));
    }
    let inv = sc.path("inventory.yaml");
    fs::write(&inv, y).unwrap();
    let plan = sc.plan(&inv, &["h1", "h2", "h3"], port);
    let mut w = Watcher::start(h, &plan, &["--inventory", s(&inv), "--grace", "3"]);
    w.wait_for("serving plan", Duration::from_secs(180));
    let endpoint = w.endpoint();

    let _down = LinkDown::new(h, 3);
    w.wait_for(
        "the model no longer fits without `h3`",
        Duration::from_secs(90),
    );
    // It keeps trying (and says so once), never gives up by itself.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "the supervisor gave up:\n{}",
        w.log()
    );
    let v = status_json(h, &plan);
    assert_eq!(v["supervisor"]["condition"], "recovering", "{v}");
    // Meanwhile clients of the API host (h1, alive) hear 503 and when to
    // come back, not connection refused.
    w.wait_for(
        "standby listener on `h1` answers 503",
        Duration::from_secs(30),
    );
    let mut c = TcpStream::connect(authority(&endpoint)).unwrap();
    write!(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}").unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 503 "), "{raw}");
    assert!(raw.contains("\r\nRetry-After: 5\r\n"), "{raw}");
    let (code, log) = w.interrupt();
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("stopped while the plan was not serving (it was recovering)"),
        "{log}"
    );
    assert_eq!(log.matches("the model no longer fits").count(), 1, "{log}");
    drop(_down);
    // h3 is reachable again: nothing of the plan anywhere.
    skulk(&["down", s(&plan), "--known-hosts", s(&h.known_hosts)]).expect(0);
    assert_all_gone(h, &[plan_digest(&plan)], &[port, 52415]);
}

#[test]
fn a_second_supervisor_is_refused_and_down_stops_the_first_for_good() {
    let _alone = serial::alone();
    let Some(h) = prerequisites() else { return };
    let sc = Scratch::new();
    let port = ring_port(33);
    let (_, plan) = three_rank_plan(h, &sc, port);
    let mut w = Watcher::start(h, &plan, &["--keep-running"]);
    w.wait_for("serving plan", Duration::from_secs(180));

    let second = skulk(&strs(&apply_args(h, &plan, &["--watch"])));
    let second = second.expect(2);
    second.assert_stderr_has(&format!(
        "plan `{}` is already supervised by pid {}",
        &plan_digest(&plan)[..16],
        w.child.id()
    ));

    // `down` stops the supervisor (even with --keep-running) and the ranks.
    let d = skulk(&["down", s(&plan), "--known-hosts", s(&h.known_hosts)]).expect(0);
    d.assert_stderr_has("stopped the supervisor of plan");
    let status = w.child.try_wait().unwrap();
    assert!(status.is_some(), "the supervisor still runs:\n{}", w.log());
    assert!(
        w.log().contains("`skulk down`: bringing plan"),
        "{}",
        w.log()
    );
    assert_all_gone(h, &[plan_digest(&plan)], &[port, 52415]);
    let v = status_json(h, &plan);
    assert_eq!(v["supervisor"]["condition"], "stopped", "{v}");
    assert!(v["supervisor"]["supervisorPid"].is_null(), "{v}");
}

/// A plan of SmolLM2 over the three hosts whose ranks wait `silence_ms` on a
/// silent neighbour while serving (`skulk plan --silence-limit`).
fn plan_with_silence_limit(h: &TestHosts, sc: &Scratch, port: u16, silence_ms: u32) -> PathBuf {
    use skulk::plan::document::RingTimeouts;
    use skulk::plan::{PlanDocument, PlanRequest};
    let inv_path = sc.inventory(h, &sc.hosts(h, N, true));
    let card: skulk::card::ModelCard = serde_yaml_ng::from_str(SMOL_CARD).unwrap();
    let inv: serde_json::Value =
        serde_yaml_ng::from_str(&fs::read_to_string(&inv_path).unwrap()).unwrap();
    let inv = skulk::inventory::parse(&inv).unwrap();
    let request = PlanRequest {
        nodes: Some(vec!["h1".into(), "h2".into(), "h3".into()]),
        port: Some(port),
        ring: Some(RingTimeouts {
            silence_limit_ms: Some(silence_ms),
            loading_silence_limit_ms: None,
        }),
        ..PlanRequest::default()
    };
    let placed = skulk::plan::plan(&card, &inv, &request).unwrap();
    let path = sc.path("plan.json");
    fs::write(&path, PlanDocument::from_plan(&placed).to_json()).unwrap();
    path
}

#[test]
fn a_briefly_frozen_rank_is_reported_slow_and_not_dropped() {
    let _alone = serial::alone();
    let Some(h) = prerequisites() else { return };
    let sc = Scratch::new();
    let port = ring_port(34);
    let plan = plan_with_silence_limit(h, &sc, port, 8000);
    let r = skulk(&strs(&apply_args(h, &plan, &["--timeout", "120"]))).expect(0);
    let endpoint = r.stdout.trim().to_owned();
    let text = complete(&endpoint);
    let pids: Vec<u32> = ["h1", "h2", "h3"]
        .iter()
        .map(|n| rank_pid(&plan, n))
        .collect();

    // Rank 1 stops answering for 2 s and a status call: longer than its
    // usual gaps, shorter than the plan's 8 s limit.
    let stopped = Instant::now();
    Command::new("kill")
        .args(["-STOP", &pids[1].to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2_000));
    let v = status_json(h, &plan);
    Command::new("kill")
        .args(["-CONT", &pids[1].to_string()])
        .status()
        .unwrap();
    let frozen_for = stopped.elapsed();
    let slow: Vec<String> = v["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["slowNeighbour"].as_str().map(str::to_owned))
        .collect();
    assert!(
        slow.iter().any(|s| s.starts_with("rank 1 at `10.213.7.2:")),
        "status names the slow rank ({frozen_for:?} frozen): {v}"
    );
    // Not dropped: the same ranks serve the same answer, and say so.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(complete(&endpoint), text);
    for pid in &pids {
        assert!(alive(*pid), "rank {pid} was dropped");
    }
    let logs = skulk(&["logs", s(&plan), "--known-hosts", s(&h.known_hosts)]).expect(0);
    assert!(
        logs.stdout.contains("is slow; still waiting"),
        "{}",
        logs.stdout
    );
    assert!(
        logs.stdout.contains("is answering again after"),
        "{}",
        logs.stdout
    );
    let v = status_json(h, &plan);
    assert!(
        v["ranks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["slowNeighbour"].is_null()),
        "no longer slow: {v}"
    );
    skulk(&["down", s(&plan), "--known-hosts", s(&h.known_hosts)]).expect(0);
    assert_all_gone(h, &[plan_digest(&plan)], &[port, 52415]);
}
