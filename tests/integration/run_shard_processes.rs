//! `skulk run-shard` as real processes on loopback addresses, with the real
//! SmolLM2 model: a plan made by `skulk plan`, one process per rank, the API
//! on rank 0. Covers what in-process ring tests cannot: the plan file, the
//! secret from the environment, the rank-local cut into the slice cache,
//! process exit codes, and listeners left behind.
//!
//! Each test uses its own loopback network (127.0.N.x) so tests can run in
//! parallel; the API port and ring port are per address.

#![cfg(feature = "engine")]

use std::io::{BufRead, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{models, prereq, serial, support};

const CARD: &str = "cards/local--SmolLM2-135M-Instruct.Q4_1.yaml";
const MODEL_DIR_NAME: &str = "local--SmolLM2-135M-Instruct.Q4_1";
const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const RING_PORT: u16 = 47000;
const API_PORT: u16 = 47001;

fn test_model() -> Option<PathBuf> {
    models::model(MODEL_FILE)
}

fn skulk() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skulk"))
}

/// A plan over `ranks` loopback hosts 127.0.`net`.1.. with the model linked
/// into a private model directory.
struct Setup {
    dir: tempfile::TempDir,
    net: u8,
    /// The card `skulk plan` reads.
    card: PathBuf,
}

impl Setup {
    fn new(net: u8, model: &Path) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models").join(MODEL_DIR_NAME);
        std::fs::create_dir_all(&models).unwrap();
        std::os::unix::fs::symlink(model, models.join(MODEL_FILE)).unwrap();
        let card = Path::new(env!("CARGO_MANIFEST_DIR")).join(CARD);
        Setup { dir, net, card }
    }

    /// The model split into `parts` files as `gguf-split` writes them, and a
    /// card naming the first (`storageSize` their total).
    fn split(net: u8, model: &Path, parts: usize) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models").join(MODEL_DIR_NAME);
        std::fs::create_dir_all(&models).unwrap();
        let first = models::split_like_gguf_split(model, &models, parts);
        let total: u64 = std::fs::read_dir(&models)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        let card = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(CARD))
            .unwrap()
            .replace(
                &format!("ggufFile: {MODEL_FILE}"),
                &format!("ggufFile: {}", first.file_name().unwrap().to_string_lossy()),
            )
            .replace("inBytes: 98362432", &format!("inBytes: {total}"));
        let card_path = dir.path().join("split-card.yaml");
        std::fs::write(&card_path, card).unwrap();
        Setup {
            dir,
            net,
            card: card_path,
        }
    }

    fn addr(&self, host: u32) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.net, host as u8)
    }

    fn api(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.addr(1)), API_PORT)
    }

    /// Writes an inventory of `ranks` hosts and plans with `extra` flags.
    fn plan(&self, name: &str, ranks: u32, extra: &[&str]) -> PathBuf {
        // `SKULK_TEST_BACKEND=llama_cpp-cuda` (a `cuda` build) runs the
        // same tests with every layer on the GPU.
        let backend =
            std::env::var("SKULK_TEST_BACKEND").unwrap_or_else(|_| "llama_cpp-cpu".into());
        let mut inventory = String::from("hosts:\n");
        for r in 1..=ranks {
            inventory += &format!(
                "  - name: h{r}\n    address: {}\n    connection: local\n    memory: {{total: 2GiB, available: 1536MiB}}\n    threads: 1\n    backends: [{backend}]\n    modelDir: {}\n",
                self.addr(r),
                self.dir.path().join("models").display()
            );
        }
        let inventory_path = self.dir.path().join(format!("{name}.inventory.yaml"));
        std::fs::write(&inventory_path, inventory).unwrap();
        let nodes: Vec<String> = (1..=ranks).map(|r| format!("h{r}")).collect();
        let plan = self.dir.path().join(format!("{name}.json"));
        let out = skulk()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["plan", "--card"])
            .arg(&self.card)
            .arg("--inventory")
            .arg(&inventory_path)
            .args(["--nodes", &nodes.join(",")])
            .args(["--port", &RING_PORT.to_string()])
            .args(["--api-port", &API_PORT.to_string()])
            .args(extra)
            .arg("--out")
            .arg(&plan)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skulk plan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        plan
    }

    fn start(&self, plan: &Path, rank: u32, secret: &str) -> Child {
        self.start_with(plan, rank, secret, &[])
    }

    fn start_with(&self, plan: &Path, rank: u32, secret: &str, extra: &[&str]) -> Child {
        skulk()
            .args(["run-shard", "--plan"])
            .arg(plan)
            .args(["--rank", &rank.to_string(), "--formation-timeout", "20"])
            .args(extra)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .env("SKULK_RING_SECRET", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn start_all(&self, plan: &Path, ranks: u32) -> Vec<Child> {
        (0..ranks)
            .map(|r| self.start(plan, r, "test-secret"))
            .collect()
    }

    fn wait_healthy(&self, children: &mut [Child]) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if TcpStream::connect_timeout(&self.api(), Duration::from_millis(200)).is_ok()
                && support::get(self.api(), "/health").status == 200
            {
                return;
            }
            for (rank, child) in children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("rank {rank} exited early ({status}): {}", stderr_of(child));
                }
            }
            assert!(Instant::now() < deadline, "the ring never became healthy");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn kill_all(children: &mut [Child]) {
    for child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn chat(api: SocketAddr, prompt: &str, max_tokens: u32) -> String {
    let response = support::post(
        api,
        "/v1/chat/completions",
        &json!({
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0
        }),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

#[test]
fn three_processes_answer_like_one() {
    let _shared = serial::shared();
    let Some(model) = test_model() else { return };
    let prompt = "Name three colours of the rainbow.";

    let one = Setup::new(61, &model);
    let plan = one.plan("one", 1, &[]);
    let mut ranks = one.start_all(&plan, 1);
    one.wait_healthy(&mut ranks);
    let expected = chat(one.api(), prompt, 64);
    kill_all(&mut ranks);

    let three = Setup::new(62, &model);
    let plan = three.plan("three", 3, &["--layers", "7,11,12"]);
    let mut ranks = three.start_all(&plan, 3);
    three.wait_healthy(&mut ranks);
    let got = chat(three.api(), prompt, 64);
    // The rank-local cuts were written once into the slice cache.
    let cached = std::fs::read_dir(three.dir.path().join("cache"))
        .unwrap()
        .count();
    kill_all(&mut ranks);
    eprintln!("one rank: {expected:?}\nthree ranks: {got:?}");
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    assert_eq!(cached, 3);
}

#[test]
fn killing_a_middle_rank_fails_the_request_fast_and_stops_every_rank() {
    let _shared = serial::shared();
    let Some(model) = test_model() else { return };
    let setup = Setup::new(63, &model);
    let plan = setup.plan("kill", 3, &[]);
    let mut ranks = setup.start_all(&plan, 3);
    setup.wait_healthy(&mut ranks);

    let (status, mut stream) = support::open(
        setup.api(),
        "/v1/chat/completions",
        &json!({
            "messages": [{"role": "user", "content": "Tell a very long story about a fox."}],
            "max_tokens": 4000,
            "temperature": 0,
            "stream": true
        }),
    );
    assert_eq!(status, 200);
    // Generation is under way once content arrives.
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stream.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
        if line.contains("\"content\"") {
            break;
        }
    }
    ranks[1].kill().unwrap();
    let killed = Instant::now();
    let mut rest = String::new();
    let mut saw_error = false;
    loop {
        line.clear();
        match stream.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if line.contains("\"error\"") {
                    saw_error = true;
                    rest.push_str(&line);
                    break;
                }
            }
        }
    }
    let failed_after = killed.elapsed();
    assert!(saw_error, "no error event after the kill: {rest}");
    assert!(
        failed_after < Duration::from_secs(5),
        "the client waited {failed_after:?} for the error"
    );

    for rank in [0usize, 2] {
        let status = wait_exit(&mut ranks[rank], Duration::from_secs(10))
            .unwrap_or_else(|| panic!("rank {rank} did not exit after losing a neighbour"));
        assert!(!status.success(), "rank {rank} exited with {status}");
    }
    let _ = ranks[1].wait();
    for host in 1..=3 {
        let addr = SocketAddr::new(IpAddr::V4(setup.addr(host)), RING_PORT);
        assert!(!listening(addr), "{addr} still listening");
    }
    assert!(!listening(setup.api()), "the API is still listening");
}

/// Six streams on a ring serving four at once (two wait): all answer while
/// the ring runs; then the middle rank is killed and every stream, running
/// or waiting, ends with an error, and no process or listener is left.
#[test]
fn killing_a_middle_rank_under_load_fails_every_stream_and_stops_every_rank() {
    let _shared = serial::shared();
    let Some(model) = test_model() else { return };
    let setup = Setup::new(71, &model);
    let plan = setup.plan("load", 3, &["--parallel", "4"]);
    let mut ranks = setup.start_all(&plan, 3);
    setup.wait_healthy(&mut ranks);

    let mut streams: Vec<_> = (0..6)
        .map(|i| {
            let (status, s) = support::open(
                setup.api(),
                "/v1/chat/completions",
                &json!({
                    "messages": [{"role": "user", "content": format!("Story {i}: tell a very long story about a fox.")}],
                    "max_tokens": 4000,
                    "temperature": 0,
                    "stream": true
                }),
            );
            assert_eq!(status, 200);
            s
        })
        .collect();
    // The four running streams have content before the kill.
    let mut line = String::new();
    for s in streams.iter_mut().take(4) {
        loop {
            line.clear();
            assert!(s.read_line(&mut line).unwrap() > 0, "stream ended early");
            if line.contains("\"content\":\"") && !line.contains("\"content\":\"\"") {
                break;
            }
        }
    }
    ranks[1].kill().unwrap();
    let killed = Instant::now();
    for (i, s) in streams.iter_mut().enumerate() {
        let mut saw_error = false;
        loop {
            line.clear();
            match s.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.contains("\"error\"") => {
                    saw_error = true;
                    break;
                }
                Ok(_) => {}
            }
        }
        assert!(saw_error, "stream {i}: no error event after the kill");
    }
    let failed_after = killed.elapsed();
    assert!(
        failed_after < Duration::from_secs(5),
        "the clients waited {failed_after:?} for the error"
    );
    for rank in [0usize, 2] {
        let status = wait_exit(&mut ranks[rank], Duration::from_secs(10))
            .unwrap_or_else(|| panic!("rank {rank} did not exit after losing a neighbour"));
        assert!(!status.success(), "rank {rank} exited with {status}");
    }
    let _ = ranks[1].wait();
    for host in 1..=3 {
        let addr = SocketAddr::new(IpAddr::V4(setup.addr(host)), RING_PORT);
        assert!(!listening(addr), "{addr} still listening");
    }
    assert!(!listening(setup.api()), "the API is still listening");
}

#[test]
fn a_rank_from_another_plan_is_refused_at_handshake() {
    let _shared = serial::shared();
    let Some(model) = test_model() else { return };
    let setup = Setup::new(64, &model);
    let plan = setup.plan("a", 2, &[]);
    let other = setup.plan("b", 2, &["--layers", "10,20"]);
    let mut rank0 = setup.start(&plan, 0, "test-secret");
    let mut rank1 = setup.start(&other, 1, "test-secret");
    let status0 = wait_exit(&mut rank0, Duration::from_secs(40)).expect("rank 0 exits");
    let status1 = wait_exit(&mut rank1, Duration::from_secs(40)).expect("rank 1 exits");
    let (err0, err1) = (stderr_of(&mut rank0), stderr_of(&mut rank1));
    assert_eq!(status0.code(), Some(2), "{err0}");
    assert_eq!(status1.code(), Some(2), "{err1}");
    let both = format!("{err0}\n{err1}");
    assert!(
        both.contains("plan digest mismatch"),
        "no plan mismatch named: {both}"
    );
}

#[test]
fn a_wrong_secret_is_refused_at_handshake() {
    let _shared = serial::shared();
    let Some(model) = test_model() else { return };
    let setup = Setup::new(65, &model);
    let plan = setup.plan("s", 2, &[]);
    let mut rank0 = setup.start(&plan, 0, "right");
    let mut rank1 = setup.start(&plan, 1, "wrong");
    let status0 = wait_exit(&mut rank0, Duration::from_secs(40)).expect("rank 0 exits");
    let status1 = wait_exit(&mut rank1, Duration::from_secs(40)).expect("rank 1 exits");
    assert!(!status0.success() && !status1.success());
    let both = format!("{}\n{}", stderr_of(&mut rank0), stderr_of(&mut rank1));
    assert!(both.contains("authentication failed"), "{both}");
}

#[test]
fn missing_or_truncated_model_is_a_clear_error_naming_host_and_path() {
    let _shared = serial::shared();
    let Some(model) = test_model() else { return };
    let setup = Setup::new(66, &model);
    let plan = setup.plan("m", 1, &[]);
    let linked = setup
        .dir
        .path()
        .join("models")
        .join(MODEL_DIR_NAME)
        .join(MODEL_FILE);

    std::fs::remove_file(&linked).unwrap();
    let mut child = setup.start(&plan, 0, "x");
    let status = wait_exit(&mut child, Duration::from_secs(20)).unwrap();
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("host `h1`"), "{err}");
    assert!(err.contains(&linked.display().to_string()), "{err}");
    assert!(err.contains("missing"), "{err}");

    let mut bytes = std::fs::read(&model).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&linked, bytes).unwrap();
    let mut child = setup.start(&plan, 0, "x");
    let status = wait_exit(&mut child, Duration::from_secs(20)).unwrap();
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("host `h1`"), "{err}");
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn the_openai_python_client_talks_to_the_api() {
    let _shared = serial::shared();
    let Some(model) = test_model() else { return };
    if !prereq::require(
        prereq::python_has("openai"),
        "the Python `openai` package is missing (scripts/setup installs it)",
    ) {
        return;
    }
    let setup = Setup::new(67, &model);
    let plan = setup.plan("openai", 2, &[]);
    let mut ranks = setup.start_all(&plan, 2);
    setup.wait_healthy(&mut ranks);
    let script = format!(
        r#"
import openai
client = openai.OpenAI(base_url="http://{api}/v1", api_key="unused")
models = [m.id for m in client.models.list().data]
assert models == ["local/SmolLM2-135M-Instruct.Q4_1"], models
r = client.chat.completions.create(model=models[0], messages=[{{"role": "user", "content": "Say hello."}}], max_tokens=16, temperature=0)
full = r.choices[0].message.content
assert r.usage.completion_tokens > 0 and r.choices[0].finish_reason in ("stop", "length"), r
parts = []
for chunk in client.chat.completions.create(model=models[0], messages=[{{"role": "user", "content": "Say hello."}}], max_tokens=16, temperature=0, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
assert "".join(parts) == full, ("".join(parts), full)
c = client.completions.create(model=models[0], prompt="The capital of France is", max_tokens=8, temperature=0)
assert c.choices[0].text, c
print("OK", repr(full))
"#,
        api = setup.api()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    kill_all(&mut ranks);
    assert!(
        out.status.success(),
        "openai client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK"));
}

/// A model split by `gguf-split`: one rank loads it whole (llama.cpp reads
/// the parts), two ranks cut their layers from the parts; the answers match
/// the unsplit model's.
#[test]
fn a_split_model_runs_whole_and_cut() {
    let _shared = serial::shared();
    let Some(model) = test_model() else { return };
    let prompt = "Name three colours of the rainbow.";
    let answer = |setup: &Setup, name: &str, ranks: u32| {
        let plan = setup.plan(name, ranks, &[]);
        let mut children = setup.start_all(&plan, ranks);
        setup.wait_healthy(&mut children);
        let text = chat(setup.api(), prompt, 24);
        kill_all(&mut children);
        text
    };
    let whole = answer(&Setup::new(68, &model), "whole", 1);
    let split = Setup::split(69, &model, 3);
    assert_eq!(answer(&split, "one", 1), whole);
    assert_eq!(answer(&split, "two", 2), whole);
    assert!(!whole.is_empty());
}

/// A binary without a GPU backend asked to offload (here by `--gpu-layers`)
/// says so and serves from the CPU.
#[test]
fn a_cpu_build_asked_to_offload_says_so_and_runs_on_the_cpu() {
    let _shared = serial::shared();
    if cfg!(any(feature = "cuda", feature = "metal", feature = "vulkan")) {
        return;
    }
    let Some(model) = test_model() else { return };
    let setup = Setup::new(70, &model);
    let plan = setup.plan("gpu", 1, &[]);
    let mut ranks = vec![setup.start_with(&plan, 0, "test-secret", &["--gpu-layers", "all"])];
    setup.wait_healthy(&mut ranks);
    assert!(!chat(setup.api(), "Hi", 4).is_empty());
    kill_all(&mut ranks);
    let err = stderr_of(&mut ranks[0]);
    assert!(err.contains("built without a GPU backend"), "stderr: {err}");
}
