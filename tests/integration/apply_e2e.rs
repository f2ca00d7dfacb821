//! `skulk apply` all the way: real `run-shard` ranks started over SSH on
//! three test hosts (set 6), the OpenAI Python client against rank 0's API,
//! `status`, `logs`, a killed rank, `down`. These tests start ranks, so they
//! run one at a time (a running plan is "a different plan" to any other),
//! and alone (`serial::alone`).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::apply_support::*;
use crate::hosts::TestHosts;
use crate::{fake_hub, prereq, serial};

const SET: u8 = 6;
const N: usize = 3;

/// Nothing of the plan runs or listens on any host.
fn assert_all_gone(h: &TestHosts, plan: &Path, ports: &[u16]) {
    let d16 = &plan_digest(plan)[..16];
    let procs = processes_with(&format!("runs/{d16}/"));
    assert!(
        procs.is_empty(),
        "processes of the plan still running: {procs:?}"
    );
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

#[test]
fn a_rank_that_cannot_start_fails_apply_which_stops_the_others_and_shows_its_log() {
    let _alone = serial::alone();
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    let sc = Scratch::new();
    // Sparse model files of the right size pass preflight, but every build
    // of run-shard refuses them (no engine: not available; engine: not a
    // GGUF), so every rank exits soon after it starts.
    let inv = sc.inventory(h, &sc.hosts(h, N, false));
    let port = ring_port(20);
    let plan = sc.plan(&inv, &["h1", "h2", "h3"], port);
    // And skulk is installed by apply itself, into a directory of this test.
    let dest = sc.path("bin/skulk");
    let mut a = vec!["apply".to_owned(), s(&plan).to_owned()];
    a.extend(host_flags(h));
    a.extend([
        "--remote-skulk".into(),
        s(&dest).into(),
        "--install".into(),
        "--timeout".into(),
        "60".into(),
    ]);
    let r = skulk(&strs(&a)).expect(2);
    let installed =
        fs::read(&dest).unwrap_or_else(|e| panic!("{}: {e}\n{}", dest.display(), r.stderr));
    assert!(
        installed == fs::read(skulk_bin()).unwrap(),
        "installed binary differs"
    );
    r.assert_stderr_has("installing skulk at");
    r.assert_stderr_has("the ring did not form");
    r.assert_stderr_has("every rank of the plan was stopped");
    let d16 = &plan_digest(&plan)[..16];
    r.assert_stderr_has(&format!("last lines of `~/.cache/skulk/runs/{d16}/h"));
    assert!(
        r.stderr.contains("| === "),
        "log lines quoted: {}",
        r.stderr
    );
    assert_all_gone(h, &plan, &[port, 52415]);
    // Logs stay for `skulk logs`; the secret and state do not.
    for i in 1..=N {
        let dir = runs_dir(&plan).join(format!("h{i}"));
        assert!(dir.join("rank.log").exists());
        for f in ["secret", "plan.json", "state", "rank.pid"] {
            assert!(!dir.join(f).exists(), "{f} removed from {}", dir.display());
        }
    }
    let l = skulk(&[
        "logs",
        s(&plan),
        "--known-hosts",
        s(&h.known_hosts),
        "--node",
        "h2",
    ])
    .expect(0);
    assert!(
        l.stdout.lines().all(|x| x.starts_with("h2 | ")),
        "{}",
        l.stdout
    );
    assert!(
        l.stdout.contains("run-shard") || l.stdout.contains("==="),
        "{}",
        l.stdout
    );
    skulk(&["down", s(&plan), "--known-hosts", s(&h.known_hosts)]).expect(0);
    assert!(
        !runs_dir(&plan).join("h1/secret").exists(),
        "down removes the secret"
    );
}

/// `--fetch` downloads a missing model on the host through its own skulk,
/// from the hub this machine is configured for (`HF_ENDPOINT` reaches the
/// host on stdin). Two local ranks (this machine, no SSH) and a fake hub.
#[test]
fn fetch_downloads_a_missing_model_on_the_hosts() {
    let _alone = serial::alone();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let hub = fake_hub::FakeHub::start(vec![(
        "org/tiny-GGUF",
        fake_hub::FakeRepo {
            files: vec![fake_hub::FakeFile::new("tiny.Q4_0.gguf", data.clone())],
            token: None,
        },
    )]);
    let card = format!(
        "modelId: org/tiny-GGUF\nstorageSize: {{inBytes: {}}}\nnLayers: 2\nhiddenSize: 8\nsupportsTensor: false\ntasks: [TextGeneration]\nggufFile: tiny.Q4_0.gguf\nplacement:\n  compatibleBackends: [llama_cpp-cpu]\n",
        data.len()
    );
    let sc = Scratch::new();
    let specs: Vec<HostSpec> = (1..=2)
        .map(|i| HostSpec {
            name: format!("l{i}"),
            address: format!("127.0.0.{}", 10 + i),
            model_dir: Some(sc.path(&format!("models-l{i}"))),
            local: true,
        })
        .collect();
    let inv = sc.inventory_with(None, &specs);
    let plan = sc.plan_card(&card, &inv, &["l1", "l2"], ring_port(23));
    let env = [("HF_ENDPOINT", hub.url.as_str())];
    let base = ["apply", s(&plan), "--remote-skulk", skulk_bin()];

    // Without --fetch: preflight names both hosts' missing files.
    let r = skulk_env(&base, &env).expect(2);
    r.assert_stderr_has("preflight failed on 2 of 2 hosts");
    r.assert_stderr_has("pass `--fetch`");
    // A dry run shows the fetch, and fetches nothing.
    let mut dry = base.to_vec();
    dry.extend(["--fetch", "--dry-run"]);
    let r = skulk_env(&dry, &env).expect(0);
    assert_eq!(
        r.stdout.matches("### fetch model").count(),
        2,
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("fetch-model --plan \"$d\"/plan.json --node l1"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains(&hub.url),
        "settings travel on stdin: {}",
        r.stdout
    );
    assert!(hub.log().is_empty(), "a dry run downloads nothing");
    // With it: both hosts download; then preflight reads rank 0's GGUF
    // header, and the file being no real GGUF, nothing starts.
    let mut run = base.to_vec();
    run.extend(["--fetch", "--timeout", "30"]);
    let r = skulk_env(&run, &env);
    for spec in &specs {
        let file = spec
            .model_dir
            .as_ref()
            .unwrap()
            .join("org--tiny-GGUF/tiny.Q4_0.gguf");
        let got =
            fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}\n{}", file.display(), r.stderr));
        assert!(got == data, "fetched file differs");
        r.assert_stderr_has(&format!("{}: fetching `org/tiny-GGUF`", spec.name));
        // The host's own progress lines, passed on as they came.
        r.assert_stderr_has(&format!("{}: fetch: `tiny.Q4_0.gguf`: done", spec.name));
    }
    let r = r.expect(2);
    r.assert_stderr_has("is not a GGUF file");
    r.assert_stderr_has("nothing was started");
    skulk(&["down", s(&plan)]).expect(0);
}

/// The main flow (README "Using it"): plan, apply, a chat completion with the
/// `openai` client, status, a killed rank, down.
#[test]
fn three_ranks_serve_the_openai_client_then_status_kill_and_down() {
    let _alone = serial::alone();
    if !engine_built() {
        return;
    }
    let Some(h) = TestHosts::get(SET, N) else {
        return;
    };
    if smol_model().is_none()
        || !prereq::require(
            prereq::python_has("openai"),
            "the Python `openai` package is missing (run scripts/setup)",
        )
    {
        return;
    }
    let sc = Scratch::new();
    let inv = sc.inventory(h, &sc.hosts(h, N, true));
    let port = ring_port(21);
    let plan = sc.plan(&inv, &["h1", "h2", "h3"], port);
    let key = "skulk-test-key";
    let env = [("SKULK_API_KEY", key)];
    let apply = apply_args(h, &plan, &["--timeout", "180"]);
    let kh = h.known_hosts.display().to_string();

    let r = skulk_env(&strs(&apply), &env).expect(0);
    let endpoint = r.stdout.trim().to_owned();
    assert_eq!(
        endpoint,
        format!("http://{}:52415/v1", h.addrs[0]),
        "{}",
        r.stderr
    );

    // Again: a no-op that says so.
    let again = skulk_env(&strs(&apply), &env).expect(0);
    assert!(
        again.stderr.contains("already running; nothing to do"),
        "{}",
        again.stderr
    );
    assert_eq!(again.stdout.trim(), endpoint);

    // A different plan on the same hosts is refused without --replace.
    let other = Scratch::new();
    let other_inv = other.inventory(h, &other.hosts(h, N, false));
    let other_plan = other.plan(&other_inv, &["h1", "h2", "h3"], ring_port(22));
    let refused = skulk(&strs(&apply_args(h, &other_plan, &[]))).expect(2);
    refused.assert_stderr_has("a different plan is running");
    refused.assert_stderr_has("--replace");

    // The official client, streaming and not.
    let model = "local/SmolLM2-135M-Instruct.Q4_1";
    let py = format!(
        r#"
import sys
from openai import OpenAI
c = OpenAI(base_url="{endpoint}", api_key="{key}", timeout=120, max_retries=0)
r = c.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "What is the capital of France?"}}], max_tokens=16, temperature=0)
text = r.choices[0].message.content
assert text.strip(), r
assert r.usage.completion_tokens > 0, r
parts = [ch.choices[0].delta.content or "" for ch in c.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Say hello."}}], max_tokens=8, temperature=0, stream=True) if ch.choices]
assert "".join(parts).strip(), parts
print(text)
"#
    );
    let out = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(
        out.status.success(),
        "openai client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Status: all three running, their layers cover the model once.
    let st = skulk_env(
        &["status", s(&plan), "--known-hosts", &kh, "-o", "json"],
        &env,
    )
    .expect(0);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["health"]["state"], "ready", "{}", st.stdout);
    let ranks = v["ranks"].as_array().unwrap();
    let mut next = 0;
    for (i, r) in ranks.iter().enumerate() {
        assert_eq!(r["state"], "running", "{}", st.stdout);
        assert_eq!(r["node"], format!("h{}", i + 1));
        assert_eq!(r["layers"][0], next);
        next = r["layers"][1].as_u64().unwrap();
    }
    assert_eq!(next, 30);
    let table = skulk_env(&["status", s(&plan), "--known-hosts", &kh], &env).expect(0);
    assert!(
        table.stdout.contains(&format!("API {endpoint}: ready")),
        "{}",
        table.stdout
    );

    let logs = skulk(&["logs", s(&plan), "--known-hosts", &kh]).expect(0);
    for i in 1..=N {
        assert!(logs.stdout.contains(&format!("h{i} | ")), "{}", logs.stdout);
    }

    // Kill the middle rank: status reports it, the API fails fast.
    let pid = ranks[1]["pid"].as_u64().unwrap();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let py = format!(
        r#"
from openai import OpenAI
c = OpenAI(base_url="{endpoint}", api_key="{key}", timeout=60, max_retries=0)
try:
    c.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Count to one hundred."}}], max_tokens=64)
except Exception as e:
    print("failed:", type(e).__name__)
else:
    raise SystemExit("the API answered with a rank dead")
"#
    );
    let out = Command::new("python3").args(["-c", &py]).output().unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The ring's fail-fast bound is 5 s; allow the client and the kill their share.
    assert!(
        took < Duration::from_secs(15),
        "the API took {took:?} to fail"
    );
    let st = skulk_env(
        &["status", s(&plan), "--known-hosts", &kh, "-o", "json"],
        &env,
    )
    .expect(3);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["ranks"][1]["state"], "exited", "{}", st.stdout);
    // Why: the killed rank left no error; the others say they lost it.
    assert_eq!(
        v["ranks"][1]["reason"], "it left no error in its log (killed, or out of memory?)",
        "{}",
        st.stdout
    );
    st.assert_stderr_has(&format!(
        "`skulk logs {} --node h2` shows why rank 1 stopped",
        s(&plan)
    ));
    assert_ne!(v["health"]["state"], "ready", "{}", st.stdout);

    // Applying a plan whose ranks died starts the whole ring again.
    let r = skulk_env(&strs(&apply), &env).expect(0);
    assert_eq!(r.stdout.trim(), endpoint, "{}", r.stderr);
    skulk_env(&["status", s(&plan), "--known-hosts", &kh], &env).expect(0);

    // `--replace` stops it for another plan (whose sparse model files then
    // fail to load: apply fails, and stops that plan's ranks too).
    let replaced = skulk(&strs(&apply_args(
        h,
        &other_plan,
        &["--replace", "--timeout", "60"],
    )));
    replaced.assert_stderr_has(&format!(
        "plan `{}` (`--replace`)",
        &plan_digest(&plan)[..16]
    ));
    replaced.expect(2);
    let st = skulk(&["status", s(&plan), "--known-hosts", &kh, "-o", "json"]).expect(3);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    for r in v["ranks"].as_array().unwrap() {
        assert_ne!(r["state"], "running", "{}", st.stdout);
    }
    assert_all_gone(h, &other_plan, &[ring_port(22)]);

    // Down cleans up, and is safe twice.
    for _ in 0..2 {
        skulk(&["down", s(&plan), "--known-hosts", &kh]).expect(0);
        assert_all_gone(h, &plan, &[port, 52415]);
    }
    for i in 1..=N {
        let dir = runs_dir(&plan).join(format!("h{i}"));
        assert!(dir.join("rank.log").exists(), "logs kept");
        for f in ["secret", "api-key", "plan.json", "state", "rank.pid"] {
            assert!(!dir.join(f).exists(), "{f} removed from {}", dir.display());
        }
    }
}

/// A whole POST, its answer read until `limit` bytes or the end.
fn post(addr: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Two local ranks (`connection: local`, no SSH): `status` says how busy
/// the ring is; a plan written over the file of a running one finds the old
/// ring, which `down --digest` stops; a request without `max_tokens` gets
/// the plan's default.
#[test]
fn a_local_ring_reports_busy_and_a_replanned_file_still_finds_its_ring() {
    let _alone = serial::alone();
    if !engine_built() || smol_model().is_none() {
        return;
    }
    let sc = Scratch::new();
    let specs: Vec<HostSpec> = (1..=2)
        .map(|i| HostSpec {
            name: format!("l{i}"),
            address: format!("127.0.0.{}", 30 + i),
            model_dir: Some(sc.model_dir(&format!("models-l{i}"), true)),
            local: true,
        })
        .collect();
    let inv = sc.inventory_with(None, &specs);
    let card = sc.path("card.yaml");
    fs::write(&card, SMOL_CARD).unwrap();
    let plan = sc.path("plan.json");
    let port = ring_port(24).to_string();
    let plan_with = |extra: &[&str]| {
        let mut a = vec![
            "plan",
            "--card",
            s(&card),
            "--inventory",
            s(&inv),
            "--nodes",
            "l1,l2",
            "--port",
            &port,
            "--out",
            s(&plan),
            "-q",
        ];
        a.extend(extra);
        skulk(&a).expect(0);
        plan_digest(&plan)
    };
    let first = plan_with(&[]);
    let apply = [
        "apply",
        s(&plan),
        "--remote-skulk",
        skulk_bin(),
        "--timeout",
        "120",
    ];
    skulk(&apply).expect(0);
    let api = "127.0.0.31:52415";

    // The API states its limits.
    let models = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(api).unwrap();
        write!(
            c,
            "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut t = String::new();
        c.read_to_string(&mut t).unwrap();
        t
    };
    assert!(
        models.contains("\"default_max_tokens\":2048") && models.contains("\"max_model_len\":8192"),
        "{models}"
    );

    // Busy: a long request is running; status says so, with its age.
    let long = std::thread::spawn(move || {
        post(
            api,
            "/v1/completions",
            r#"{"prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "max_tokens": 600, "temperature": 0}"#,
        )
    });
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(api).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut t = String::new();
        c.read_to_string(&mut t).unwrap();
        t
    };
    let until = Instant::now() + Duration::from_secs(20);
    while !get("/health").contains("\"running\":1") {
        assert!(Instant::now() < until, "the long request never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1100));
    let st = skulk(&["status", s(&plan), "-o", "json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["health"]["state"], "ready", "{}", st.stdout);
    assert_eq!(v["health"]["running"], 1, "{}", st.stdout);
    assert!(
        v["health"]["runningSeconds"].as_u64().is_some(),
        "{}",
        st.stdout
    );
    let table = skulk(&["status", s(&plan)]).expect(0);
    assert!(
        table.stdout.contains("ready, busy: 1 request running for"),
        "{}",
        table.stdout
    );
    let answer = long.join().unwrap();
    assert!(answer.contains("\"completion_tokens\""), "{answer}");
    let table = skulk(&["status", s(&plan)]).expect(0);
    assert!(table.stdout.contains("ready, idle"), "{}", table.stdout);

    // Re-plan into the same file: status and down find the first ring.
    let second = plan_with(&["--context", "4096", "--max-tokens", "5"]);
    assert_ne!(first, second);
    let st = skulk(&["status", s(&plan)]).expect(3);
    assert!(
        st.stdout.contains(&format!(
            "answers for plan `{}`, not this one",
            &first[..16]
        )),
        "{}",
        st.stdout
    );
    assert!(
        st.stdout.contains(&format!(
            "runs rank 0 of another plan `{}` (local/SmolLM2-135M-Instruct.Q4_1), started",
            &first[..16]
        )),
        "{}",
        st.stdout
    );
    st.assert_stderr_has(&format!(
        "`skulk down {} --digest {}` stops it",
        s(&plan),
        &first[..16]
    ));
    // Without `--digest`, down names the old ring and leaves it: its ports
    // are this plan's too, so down fails and says how to stop it.
    let d = skulk(&["down", s(&plan)]).expect(2);
    d.assert_stderr_has("of another plan");
    d.assert_stderr_has(&format!("--digest {}", &first[..16]));
    skulk(&["down", s(&plan), "--digest", &first[..12]]).expect(0);
    assert!(processes_with(&format!("runs/{}/", &first[..16])).is_empty());
    let st = skulk(&["status", s(&plan)]).expect(3);
    st.assert_stderr_has(&format!("`skulk apply {}` starts it", s(&plan)));

    // The second plan, as YAML on standard output (`-o yaml > p.yaml`), is
    // applied as it is; a request without `max_tokens` gets its default.
    let yaml = skulk(&[
        "plan",
        "--card",
        s(&card),
        "--inventory",
        s(&inv),
        "--nodes",
        "l1,l2",
        "--port",
        &port,
        "--context",
        "4096",
        "--max-tokens",
        "5",
        "-o",
        "yaml",
    ])
    .expect(0)
    .stdout;
    let yaml_plan = sc.path("p.yaml");
    fs::write(&yaml_plan, yaml).unwrap();
    skulk(&[
        "apply",
        s(&yaml_plan),
        "--remote-skulk",
        skulk_bin(),
        "--timeout",
        "120",
    ])
    .expect(0);
    skulk(&["status", s(&plan)]).expect(0);
    let answer = post(
        api,
        "/v1/chat/completions",
        r#"{"messages": [{"role": "user", "content": "Tell me a long story."}], "temperature": 0}"#,
    );
    assert!(
        answer.contains("\"completion_tokens\":5")
            && answer.contains("\"finish_reason\":\"length\""),
        "{answer}"
    );
    skulk(&["down", s(&yaml_plan)]).expect(0);
    assert!(processes_with(&format!("runs/{}/", &second[..16])).is_empty());
}
