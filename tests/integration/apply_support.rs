//! Shared by the `apply` suites: the SmolLM2 card, inventories of the test
//! hosts with a private model directory per test, plans made by the real
//! `skulk plan`, and running the real `skulk` binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use skulk::card::ModelCard;
use skulk::gguf::{GgufBuilder, Value};
use skulk::plan::{PlanDocument, PlanRequest};

use crate::hosts::TestHosts;
use crate::{models, prereq};

/// The skulk binary under test: cargo's, or `SKULK_TEST_BIN` (for runs
/// where several checkouts share one target directory and cargo's copy may
/// be another checkout's).
pub fn skulk_bin() -> &'static str {
    static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::env::var("SKULK_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_skulk").to_owned())
    });
    &BIN
}

/// The SmolLM2 test model's card (figures from its GGUF header and size;
/// the same card as `cards/local--SmolLM2-135M-Instruct.Q4_1.yaml`).
pub const SMOL_CARD: &str = "\
modelId: local/SmolLM2-135M-Instruct.Q4_1
storageSize:
  inBytes: 98362432
nLayers: 30
hiddenSize: 576
numKeyValueHeads: 3
supportsTensor: false
tasks: [TextGeneration]
family: llama
quantization: Q4_1
contextLength: 8192
ggufFile: SmolLM2-135M-Instruct.Q4_1.gguf
trustRemoteCode: false
placement:
  compatibleBackends: [llama_cpp, llama_cpp-cpu]
";

pub const SMOL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SMOL_STORE: &str = "local--SmolLM2-135M-Instruct.Q4_1";
pub const SMOL_SIZE: u64 = 98_362_432;

/// The real test model, or `None` after `prereq::skip` (a failure under
/// CI) when it was not fetched (scripts/fetch-test-models).
#[track_caller]
pub fn smol_model() -> Option<PathBuf> {
    models::model(SMOL_FILE)
}

/// The runs directory of the plan's ranks (logs, pid and state files): the
/// test hosts log in as the user running these tests (root: the hosts need
/// it) and share this machine's files, so it is under this home directory.
pub fn runs_dir(plan: &Path) -> PathBuf {
    skulk::settings::paths::in_home(skulk::settings::paths::RUNS_DIR)
        .expect("HOME is set")
        .join(&plan_digest(plan)[..16])
}

/// Whether skulk was built with the engine (`run-shard` can serve a model);
/// `prereq::skip` (a failure under CI) when not.
#[track_caller]
pub fn engine_built() -> bool {
    prereq::require(
        cfg!(feature = "engine"),
        "skulk is built without the engine (`run-shard` cannot run)",
    )
}

/// How a test's host entry differs from the plain test host.
#[derive(Clone, Debug, Default)]
pub struct HostSpec {
    pub name: String,
    pub address: String,
    /// `None`: no modelDir line (the default `~/.cache/skulk/models`).
    pub model_dir: Option<PathBuf>,
    /// `connection: local` (spawned on this machine) instead of SSH.
    pub local: bool,
}

/// One test's scratch space: its own directory, model directories,
/// inventory and plan.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("skulk-apply-test.")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A model directory holding a model file for the card: a symlink to the
    /// real model when `real`, else a sparse file of the right size that
    /// starts with a GGUF header of SmolLM2's architecture and layer count
    /// (enough for every check before a rank loads it).
    pub fn model_dir(&self, name: &str, real: bool) -> PathBuf {
        self.model_dir_of(name, real, "llama")
    }

    /// As [`Scratch::model_dir`], the sparse file's header saying `arch`.
    pub fn model_dir_of(&self, name: &str, real: bool, arch: &str) -> PathBuf {
        let dir = self.path(name);
        let store = dir.join(SMOL_STORE);
        fs::create_dir_all(&store).unwrap();
        let file = store.join(SMOL_FILE);
        if real {
            let src = smol_model().expect("test model fetched");
            std::os::unix::fs::symlink(src, &file).unwrap();
        } else {
            let header = GgufBuilder::new()
                .kv("general.architecture", Value::string(arch))
                .kv(&format!("{arch}.block_count"), Value::U32(30))
                .to_bytes();
            fs::write(&file, header).unwrap();
            let f = fs::OpenOptions::new().write(true).open(&file).unwrap();
            f.set_len(SMOL_SIZE).unwrap();
        }
        dir
    }

    /// The test hosts `1..=n` as inventory entries, each with its own model
    /// directory (a sparse model unless `real`).
    pub fn hosts(&self, h: &TestHosts, n: usize, real: bool) -> Vec<HostSpec> {
        (1..=n)
            .map(|i| HostSpec {
                name: format!("h{i}"),
                address: h.addrs[i - 1].clone(),
                model_dir: Some(self.model_dir(&format!("models-h{i}"), real)),
                local: false,
            })
            .collect()
    }

    pub fn inventory(&self, h: &TestHosts, specs: &[HostSpec]) -> PathBuf {
        self.inventory_with(Some(h), specs)
    }

    /// An inventory of `specs`; SSH entries log in as the test hosts say.
    pub fn inventory_with(&self, h: Option<&TestHosts>, specs: &[HostSpec]) -> PathBuf {
        let mut y = String::from("hosts:\n");
        for s in specs {
            let connection = match (s.local, h) {
                (true, _) => "local".to_owned(),
                (false, Some(h)) => format!(
                    "ssh\n    ssh: {{user: {}, port: 22, identityFile: {}}}",
                    h.user,
                    h.key.display()
                ),
                (false, None) => panic!("SSH host `{}` without test hosts", s.name),
            };
            y.push_str(&format!(
                "  - name: {}\n    address: {}\n    connection: {connection}\n    memory: {{total: 4GiB, available: 3GiB}}\n    threads: 1\n    backends: [llama_cpp-cpu]\n",
                s.name, s.address,
            ));
            if let Some(d) = &s.model_dir {
                y.push_str(&format!("    modelDir: {}\n", d.display()));
            }
        }
        let p = self.path("inventory.yaml");
        fs::write(&p, y).unwrap();
        p
    }

    /// A plan of the SmolLM2 card over `nodes` of `inventory` with ring
    /// port `port`, written to `plan.json` here.
    pub fn plan(&self, inventory: &Path, nodes: &[&str], port: u16) -> PathBuf {
        self.plan_card(SMOL_CARD, inventory, nodes, port)
    }

    /// The planner's document for `card` (YAML) over `nodes` of
    /// `inventory`, as `skulk plan --nodes .. --port .. --out` writes it
    /// (made through the library, so these tests do not depend on how the
    /// `plan` subcommand prints).
    pub fn plan_card(&self, card: &str, inventory: &Path, nodes: &[&str], port: u16) -> PathBuf {
        let card: ModelCard = serde_yaml_ng::from_str(card).expect("test card parses");
        let inv: serde_json::Value =
            serde_yaml_ng::from_str(&fs::read_to_string(inventory).unwrap()).unwrap();
        let inv = skulk::inventory::parse(&inv).unwrap_or_else(|e| panic!("inventory: {e:?}"));
        let request = PlanRequest {
            nodes: Some(nodes.iter().map(|n| n.to_string()).collect()),
            port: Some(port),
            ..PlanRequest::default()
        };
        let plan = skulk::plan::plan(&card, &inv, &request).unwrap_or_else(|e| panic!("plan: {e}"));
        let out_path = self.path("plan.json");
        fs::write(&out_path, PlanDocument::from_plan(&plan).to_json()).unwrap();
        out_path
    }
}

/// A finished `skulk` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Fails, showing the whole stderr, unless it contains `needle`.
    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) {
        assert!(self.stderr.contains(needle), "{}", self.stderr);
    }

    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `skulk` with `args`.
pub fn skulk(args: &[&str]) -> Run {
    skulk_env(args, &[])
}

pub fn skulk_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(skulk_bin());
    c.args(args)
        .env_remove("SKULK_API_KEY")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    Run::from(c.output().expect("run skulk"))
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The common flags for commands against the test hosts: their known_hosts
/// and this build of skulk as the hosts' skulk (they share this filesystem).
pub fn host_flags(h: &TestHosts) -> Vec<String> {
    vec!["--known-hosts".into(), h.known_hosts.display().to_string()]
}

/// `apply PLAN` flags using this binary as the hosts' skulk.
pub fn apply_args(h: &TestHosts, plan: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["apply".to_owned(), s(plan).to_owned()];
    a.extend(host_flags(h));
    a.extend(["--remote-skulk".to_owned(), skulk_bin().to_owned()]);
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Listening TCP sockets in a host's network namespace, as `ss -Hltn` lines.
pub fn listening(netns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "ss", "-Hltn"])
        .output()
        .expect("ss in namespace");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes whose command line contains `needle` (`pgrep -f`), as pids.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-f", "--", needle])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&p| p != std::process::id())
        .collect()
}

/// The plan's digest, read from the document.
pub fn plan_digest(plan: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(plan).unwrap()).unwrap();
    v["skulk"]["planDigest"]
        .as_str()
        .expect("skulk.planDigest in plan")
        .to_owned()
}

/// The ring port of a test's plan: fixed per test (so plans of different
/// tests differ and a test can bind the port itself), below the planner's
/// derived range 49152..65535.
pub fn ring_port(test: u16) -> u16 {
    40000 + test
}
