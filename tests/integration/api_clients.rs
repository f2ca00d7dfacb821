//! The API with the real clients from PyPI (`openai`, `anthropic`,
//! `ollama`, `prometheus_client`; `scripts/setup` installs them) against
//! `skulk run-shard` processes serving SmolLM2, on 1 rank and on 3 ranks.
//! The scripts in `tests/api_clients/` assert what each dialect promises:
//! forced tool calls and structured output validate every time (20 of 20
//! runs of a nested schema at temperature 0.8), streams say what whole
//! answers say, errors come in the dialect's shape naming the field, four
//! requests batched together each keep their own grammar and
//! log-probabilities, and `/metrics` parses, on rank 0 and on every other
//! rank.

#![cfg(feature = "engine")]

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{models, prereq, serial, support};

const CARD: &str = "cards/local--SmolLM2-135M-Instruct.Q4_1.yaml";
const MODEL_ID: &str = "local/SmolLM2-135M-Instruct.Q4_1";
const MODEL_DIR_NAME: &str = "local--SmolLM2-135M-Instruct.Q4_1";
const RING_PORT: u16 = 47100;
const API_PORT: u16 = 47101;
const KEY: &str = "sk-skulk-clients";
const SCRIPTS: [&str; 5] = [
    "openai_client.py",
    "anthropic_client.py",
    "ollama_client.py",
    "constraints_at_once.py",
    "metrics.py",
];

/// Whether python3 has every client; `prereq::skip` (a failure under CI)
/// when not.
fn clients_present() -> bool {
    prereq::require(
        prereq::python_has("openai, anthropic, ollama, prometheus_client, pydantic, httpx"),
        "the Python clients are missing (scripts/setup installs them)",
    )
}

/// Ranks of one plan on 127.0.`net`.x, killed when dropped.
struct Ranks {
    _dir: tempfile::TempDir,
    net: u8,
    children: Vec<Child>,
}

impl Ranks {
    fn start(net: u8, model: &Path, n: u32) -> Ranks {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models").join(MODEL_DIR_NAME);
        std::fs::create_dir_all(&models).unwrap();
        std::os::unix::fs::symlink(model, models.join(models::SMOLLM2)).unwrap();
        let mut inventory = String::from("hosts:\n");
        for r in 1..=n {
            inventory += &format!(
                "  - name: h{r}\n    address: 127.0.{net}.{r}\n    connection: local\n    memory: {{total: 2GiB, available: 1536MiB}}\n    threads: 1\n    backends: [llama_cpp-cpu]\n    modelDir: {}\n",
                dir.path().join("models").display()
            );
        }
        let inv = dir.path().join("inventory.yaml");
        std::fs::write(&inv, inventory).unwrap();
        let plan = dir.path().join("plan.json");
        let nodes: Vec<String> = (1..=n).map(|r| format!("h{r}")).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_skulk"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["plan", "--card", CARD, "--inventory"])
            .arg(&inv)
            .args(["--nodes", &nodes.join(",")])
            .args(["--port", &RING_PORT.to_string()])
            .args(["--api-port", &API_PORT.to_string()])
            .arg("--out")
            .arg(&plan)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skulk plan: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let children = (0..n)
            .map(|r| {
                Command::new(env!("CARGO_BIN_EXE_skulk"))
                    .args(["run-shard", "--plan"])
                    .arg(&plan)
                    .args(["--rank", &r.to_string(), "--formation-timeout", "30"])
                    .arg("--cache-dir")
                    .arg(dir.path().join("cache"))
                    .env("SKULK_RING_SECRET", "clients-secret")
                    .env("SKULK_API_KEY", KEY)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ranks = Ranks {
            _dir: dir,
            net,
            children,
        };
        ranks.wait_healthy();
        ranks
    }

    fn addr(&self, rank: u32) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, self.net, rank as u8 + 1)),
            API_PORT,
        )
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if TcpStream::connect_timeout(&self.addr(0), Duration::from_millis(200)).is_ok()
                && support::get(self.addr(0), "/health").status == 200
            {
                return;
            }
            for (rank, child) in self.children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    panic!("rank {rank} exited early ({status}): {err}");
                }
            }
            assert!(Instant::now() < deadline, "the ring never became healthy");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs one client script; its output is the test's.
    fn run(&self, script: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api_clients");
        let others: Vec<String> = (1..self.children.len() as u32)
            .map(|r| self.addr(r).to_string())
            .collect();
        let started = Instant::now();
        let out = Command::new("python3")
            .arg(dir.join(script))
            .current_dir(&dir)
            .env("SKULK_API", self.addr(0).to_string())
            .env("SKULK_KEY", KEY)
            .env("SKULK_MODEL", MODEL_ID)
            .env("SKULK_RANKS", self.children.len().to_string())
            .env("SKULK_RANK_METRICS", others.join(","))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "{script} on {} rank(s), {:.1} s:\n{stdout}",
            self.children.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success() && stdout.trim_end().ends_with("OK"),
            "{script} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Ranks {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn every_client(net: u8, n: u32) {
    let Some(model) = models::model(models::SMOLLM2) else {
        return;
    };
    if !clients_present() {
        return;
    }
    let ranks = Ranks::start(net, &model, n);
    for script in SCRIPTS {
        ranks.run(script);
    }
}

#[test]
fn every_client_on_one_rank() {
    let _shared = serial::shared();
    every_client(90, 1);
}

#[test]
fn every_client_on_three_ranks() {
    let _shared = serial::shared();
    every_client(91, 3);
}
