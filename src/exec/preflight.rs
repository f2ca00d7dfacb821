//! Preflight: what must hold on every host before any rank starts.
//!
//! The facts come from one read-only script per host
//! ([`script::preflight`](super::script::preflight)); the checks here are
//! pure functions of the facts and the plan, so every rule is tested without
//! a host. A check either passes, fails with a message naming the value
//! found and the value needed, or (with `--install` / `--fetch`) asks for a
//! fix that `apply` performs after every host has passed.

use super::remote::RemotePath;
use super::script::{mem_available, parse_listeners, port_busy, Listener, Report};
use super::target::{Deployment, RankTarget};
use crate::engine::SUPPORTED_ARCHITECTURES;
use crate::gguf::{check_cut, GgufHeader};
use crate::settings::paths::{DEFAULT_MODEL_DIR, INSTALLED_SKULK, SLICE_CACHE_DIR};

/// What preflight may fix instead of failing.
#[derive(Clone, Debug, Default)]
pub struct PreflightOptions {
    /// `--install`: copy this binary where skulk is missing or differs.
    pub install: bool,
    /// `--fetch`: download a missing model on the host.
    pub fetch: bool,
    /// `skulk --version` of this binary (`skulk 0.1.0`).
    pub local_version: String,
    /// `uname -sm` of the platform this binary runs on (`Linux x86_64`).
    pub local_platform: String,
    /// Skip the port checks (a dry run that would first stop ranks holding them).
    pub skip_ports: bool,
}

impl PreflightOptions {
    pub fn for_this_binary(install: bool, fetch: bool) -> Self {
        PreflightOptions {
            install,
            fetch,
            local_version: local_version(),
            local_platform: local_platform(),
            skip_ports: false,
        }
    }
}

/// `skulk --version` of this binary.
pub fn local_version() -> String {
    format!("skulk {}", env!("CARGO_PKG_VERSION"))
}

/// What `uname -sm` prints on the platform this binary was built for.
pub fn local_platform() -> String {
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "freebsd" => "FreeBSD",
        other => other,
    };
    let arch = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("macos", "aarch64") => "arm64",
        (_, arch) => arch,
    };
    format!("{os} {arch}")
}

/// The facts one host reported.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub home: String,
    pub uname: String,
    /// Absolute path of the host's skulk, when found.
    pub skulk: Option<String>,
    pub skulk_version: Option<String>,
    pub model: ModelState,
    pub model_sha256: Option<String>,
    pub disk_available: Option<u64>,
    pub mem_available: Option<u64>,
    pub listeners: Vec<Listener>,
    /// The first bytes of the model file (rank 0 of a split plan).
    pub gguf_head: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ModelState {
    #[default]
    Missing,
    NotAFile,
    Size(u64),
}

impl Facts {
    pub fn parse(text: &str) -> Facts {
        let r = Report::parse(text);
        let nonempty = |k: &str| r.get(k).filter(|v| !v.is_empty()).map(str::to_owned);
        Facts {
            home: r.get("home").unwrap_or_default().to_owned(),
            uname: r.get("uname").unwrap_or_default().trim().to_owned(),
            skulk: nonempty("skulk"),
            skulk_version: nonempty("skulk_version").map(|v| v.trim().to_owned()),
            model: match r.get("model_size") {
                None => ModelState::Missing,
                Some("not-a-file") => ModelState::NotAFile,
                Some(n) => n
                    .trim()
                    .parse()
                    .map_or(ModelState::NotAFile, ModelState::Size),
            },
            model_sha256: nonempty("model_sha256"),
            disk_available: r.number("disk_avail_kib").map(|k| k * 1024),
            mem_available: mem_available(&r.section("meminfo")),
            listeners: parse_listeners(&r.section("listeners")),
            gguf_head: {
                let head = r
                    .sections_named("gguf_head")
                    .next()
                    .map(|lines| parse_od_hex(lines.iter().map(String::as_str)));
                head
            },
        }
    }
}

/// Bytes from `od -An -v -tx1` output (hex pairs separated by spaces); a
/// malformed pair ends the bytes.
fn parse_od_hex<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for word in lines.flat_map(str::split_ascii_whitespace) {
        match u8::from_str_radix(word, 16) {
            Ok(b) if word.len() == 2 => out.push(b),
            _ => return out,
        }
    }
    out
}

/// What stops the plan's split of the model whose header starts with
/// `head` (read on rank 0's host): an architecture skulk cannot split, a
/// layer count other than the plan's, or a rank's range llama.cpp would run
/// differently from the whole model.
pub fn split_problems(dep: &Deployment, path: &str, head: &[u8]) -> Vec<String> {
    let at = std::path::Path::new(path);
    let metadata = match GgufHeader::parse_metadata_prefix(head, at) {
        Ok(m) => m,
        Err(e) => return vec![e.to_string()],
    };
    let header = GgufHeader {
        path: at.to_path_buf(),
        version: 3,
        metadata,
        tensors: Vec::new(),
        alignment: crate::gguf::DEFAULT_ALIGNMENT,
        data_offset: 0,
        file_len: 0,
    };
    // Keys beyond the bytes read are unknown: say nothing rather than guess.
    let Ok(arch) = header.architecture() else {
        return Vec::new();
    };
    let n = dep.ranks.len();
    if !SUPPORTED_ARCHITECTURES.contains(&arch) {
        return vec![format!(
            "model file `{path}` has architecture `{arch}`, which skulk cannot split across hosts yet (this plan has {n} ranks)\n\nhint: skulk splits {}; run this model on one host (a one-rank plan runs any architecture llama.cpp supports)",
            SUPPORTED_ARCHITECTURES.join(", ")
        )];
    }
    let mut problems = Vec::new();
    if let (Ok(total), Some(r)) = (header.block_count(), dep.ranks.first()) {
        if total != u64::from(r.n_layers) {
            problems.push(format!(
                "model file `{path}` has `{total}` layers, the plan splits `{}`\n\nhint: fix the card's `nLayers` and plan again",
                r.n_layers
            ));
            return problems;
        }
    }
    for r in &dep.ranks {
        if let Err(refusal) = check_cut(&header, r.start_layer, r.end_layer) {
            problems.push(format!("rank {} on `{}`: {refusal}", r.rank, r.node));
        }
    }
    problems
}

/// The outcome of preflight on one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Failures, each a complete sentence about this host.
    pub problems: Vec<String>,
    /// `--install` will copy this binary to the host.
    pub install: bool,
    /// `--fetch` will download the model on the host.
    pub fetch: bool,
}

/// Where the skulk binary was looked for, for messages.
pub fn skulk_place(explicit: Option<&str>) -> String {
    match explicit {
        Some(p) => format!("`{p}`"),
        None => format!("`~/{INSTALLED_SKULK}` or on the login shell's PATH"),
    }
}

/// Checks one rank's host.
pub fn check(
    dep: &Deployment,
    rank: &RankTarget,
    facts: &Facts,
    opts: &PreflightOptions,
    skulk_place: &str,
) -> Verdict {
    let mut v = Verdict::default();

    // skulk: present and the same version.
    let wrong = match (&facts.skulk, &facts.skulk_version) {
        (None, _) => Some(format!("skulk not found ({skulk_place})")),
        (Some(path), version) if version.as_deref() != Some(opts.local_version.as_str()) => {
            Some(format!(
                "`{path}` reports `{}`, this is `{}`",
                version.as_deref().unwrap_or(""),
                opts.local_version
            ))
        }
        _ => None,
    };
    if let Some(wrong) = wrong {
        if !opts.install {
            v.problems.push(format!(
                "{wrong}\n\nhint: pass `--install` to copy this skulk binary to the host"
            ));
        } else if facts.uname != opts.local_platform {
            v.problems.push(format!(
                "{wrong}, and `--install` cannot fix it: the host runs `{}`, this skulk binary is built for `{}`\n\nhint: install a skulk built for `{}` on the host",
                facts.uname, opts.local_platform, facts.uname
            ));
        } else {
            v.install = true;
        }
    }

    // The model file: present, right size, right digest.
    let path = rank.model.path();
    let want = rank.model.size;
    match facts.model {
        ModelState::Size(n) if n == want => {
            if let Some(sha) = &rank.model.sha256 {
                let got = facts.model_sha256.as_deref().unwrap_or("");
                if !got.eq_ignore_ascii_case(sha) {
                    v.problems.push(format!(
                        "model file `{path}` has sha256 `{got}`, the plan expects `{sha}`\n\nhint: the file is corrupt or a different model; remove it and copy or fetch it again"
                    ));
                }
            }
        }
        ModelState::Missing if opts.fetch => v.fetch = true,
        ModelState::Missing => v.problems.push(format!(
            "model file `{path}` is missing\n\nhint: pass `--fetch` to download it on the host, or put the GGUF there yourself: `skulk model add FILE --card CARD{}` on the host (or copy `{}` there)",
            match &rank.model.dir {
                dir if *dir == RemotePath::parse(DEFAULT_MODEL_DIR) => String::new(),
                dir => format!(" --model-dir {dir}"),
            },
            rank.model.relative
        )),
        ModelState::Size(n) if rank.model.split && n > 0 && n <= want => {}
        ModelState::Size(n) if opts.fetch && n < want => v.fetch = true,
        ModelState::Size(n) => v.problems.push(format!(
            "model file `{path}` has {n} bytes, the plan expects {want}\n\nhint: the file is truncated or a different quant; replace it"
        )),
        ModelState::NotAFile => v.problems.push(format!("model path `{path}` is not a regular file")),
    }

    // The model's split, judged from its header on rank 0's host.
    if rank.rank == 0 && dep.ranks.len() > 1 {
        if let Some(head) = &facts.gguf_head {
            v.problems
                .extend(split_problems(dep, &path.to_string(), head));
        }
    }

    // Ports.
    if !opts.skip_ports {
        if port_busy(&facts.listeners, &rank.address, dep.ring_port) {
            v.problems.push(format!(
                "ring port `{}` on `{}` is already in use\n\nhint: stop what listens there, or plan with another `--port`",
                dep.ring_port, rank.address
            ));
        }
        if rank.rank == 0 && port_busy(&facts.listeners, &dep.api_address, dep.api_port) {
            v.problems.push(format!(
                "API port `{}` on `{}` is already in use\n\nhint: stop what listens there, or plan with another `--api-port`",
                dep.api_port, dep.api_address
            ));
        }
    }

    // Memory for the host's share.
    if let (Some(need), Some(avail)) = (rank.need_bytes, facts.mem_available) {
        if avail < need {
            v.problems.push(format!(
                "`{}` of memory available, the rank's share needs `{}` (layers {})\n\nhint: free memory on the host, or plan again with the host's current `memory.available`",
                gib(avail),
                gib(need),
                rank.layers()
            ));
        }
    }

    // Disk for the rank-local slice: at least the rank's proportional share
    // of the weights (a lower bound: the cut also keeps the global tensors).
    if !rank.whole_model() && rank.n_layers > 0 {
        let share = (u128::from(want) * u128::from(rank.end_layer - rank.start_layer)
            / u128::from(rank.n_layers)) as u64;
        if let Some(avail) = facts.disk_available {
            if avail < share {
                v.problems.push(format!(
                    "`{}` free for the slice cache `~/{}`, the rank's layers {} need at least `{}`\n\nhint: free disk space on the host",
                    gib(avail),
                    SLICE_CACHE_DIR,
                    rank.layers(),
                    gib(share)
                ));
            }
        }
    }
    v
}

/// Bytes as GiB with two decimals.
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::target::fixtures;

    fn opts() -> PreflightOptions {
        PreflightOptions {
            install: false,
            fetch: false,
            local_version: "skulk 0.1.0".into(),
            local_platform: "Linux x86_64".into(),
            skip_ports: false,
        }
    }

    fn good(dep: &Deployment) -> Facts {
        Facts {
            home: "/home/skulk".into(),
            uname: "Linux x86_64".into(),
            skulk: Some("/home/skulk/.local/bin/skulk".into()),
            skulk_version: Some("skulk 0.1.0".into()),
            model: ModelState::Size(dep.ranks[0].model.size),
            model_sha256: None,
            disk_available: Some(10 << 30),
            mem_available: Some(8 << 30),
            listeners: vec![],
            gguf_head: None,
        }
    }

    /// The first bytes of a GGUF with `kv` (and `general.architecture`),
    /// as rank 0's preflight reports them: only the start of the file.
    fn head(arch: &str, kv: &[(&str, crate::gguf::Value)]) -> Vec<u8> {
        use crate::gguf::{GgufBuilder, Value};
        let mut b = GgufBuilder::new().kv("general.architecture", Value::string(arch));
        for (k, v) in kv {
            b = b.kv(&format!("{arch}.{k}"), v.clone());
        }
        // A vocabulary after the architecture's keys, cut off by the prefix.
        b = b.kv(
            "tokenizer.ggml.tokens",
            Value::Array(crate::gguf::Array::Str(vec![b"tok".to_vec(); 40_000])),
        );
        let mut bytes = b.to_bytes();
        bytes.truncate(crate::exec::script::GGUF_HEAD_BYTES);
        bytes
    }

    fn facts_with_head(d: &Deployment, head: Vec<u8>) -> Facts {
        Facts {
            gguf_head: Some(head),
            ..good(d)
        }
    }

    #[test]
    fn an_architecture_skulk_cannot_split_fails_on_rank_0_naming_it() {
        use crate::gguf::Value;
        let d = fixtures::deployment(3);
        let facts = facts_with_head(&d, head("rwkv7", &[("block_count", Value::U32(30))]));
        let v = check(&d, &d.ranks[0], &facts, &opts(), "x");
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        let p = &v.problems[0];
        assert!(
            p.contains("architecture `rwkv7`")
                && p.contains("cannot split across hosts")
                && p.contains("qwen3moe")
                && p.contains("hint: ")
                && p.contains("one host"),
            "{p}"
        );
        // Only rank 0 reads the header.
        assert_eq!(
            check(&d, &d.ranks[1], &facts, &opts(), "x"),
            Verdict::default()
        );
        // One rank runs any architecture.
        let one = fixtures::deployment(1);
        let facts = facts_with_head(&one, head("rwkv7", &[("block_count", Value::U32(30))]));
        assert_eq!(
            check(&one, &one.ranks[0], &facts, &opts(), "x"),
            Verdict::default()
        );
    }

    #[test]
    fn ranges_llama_cpp_would_run_differently_fail_naming_the_rank_and_the_rule() {
        use crate::gguf::Value;
        // 30 layers over 3 ranks: 0..10, 10..20, 20..30; Llama 4 needs
        // multiples of 4.
        let d = fixtures::deployment(3);
        let facts = facts_with_head(
            &d,
            head(
                "llama4",
                &[
                    ("block_count", Value::U32(30)),
                    ("interleave_moe_layer_step", Value::U32(2)),
                ],
            ),
        );
        let v = check(&d, &d.ranks[0], &facts, &opts(), "x");
        // 20 is a multiple of 4, 10 is not.
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(
            v.problems[0].starts_with("rank 1 on `h2`: layers `10..20`")
                && v.problems[0].contains("hint: start every rank's layers at a multiple of 4"),
            "{:?}",
            v.problems
        );
        // A supported architecture cut anywhere passes.
        let facts = facts_with_head(&d, head("qwen3", &[("block_count", Value::U32(30))]));
        assert_eq!(
            check(&d, &d.ranks[0], &facts, &opts(), "x"),
            Verdict::default()
        );
        // A layer count other than the plan's.
        let facts = facts_with_head(&d, head("qwen3", &[("block_count", Value::U32(28))]));
        let v = check(&d, &d.ranks[0], &facts, &opts(), "x");
        assert!(
            v.problems[0].contains("has `28` layers, the plan splits `30`"),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn od_output_parses_to_bytes() {
        assert_eq!(
            parse_od_hex([" 47 47 55 46 03 00", " 00 00"].into_iter()),
            vec![0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0]
        );
        assert_eq!(parse_od_hex([" 47 zz 01"].into_iter()), vec![0x47]);
    }

    #[test]
    fn a_ready_host_passes() {
        let d = fixtures::deployment(3);
        let v = check(&d, &d.ranks[0], &good(&d), &opts(), "x");
        assert_eq!(v, Verdict::default());
    }

    #[test]
    fn every_failure_on_a_host_is_reported_together() {
        let d = fixtures::deployment(3);
        let mut f = good(&d);
        f.skulk_version = Some("skulk 0.0.9".into());
        f.model = ModelState::Missing;
        f.listeners = parse_listeners(&[
            "tcp        0      0 10.0.0.1:50001          0.0.0.0:*               LISTEN",
            "tcp        0      0 0.0.0.0:52415           0.0.0.0:*               LISTEN",
        ]);
        f.mem_available = Some(100 << 20);
        f.disk_available = Some(1 << 20);
        let v = check(&d, &d.ranks[0], &f, &opts(), "x");
        let all = v.problems.join("\n---\n");
        assert_eq!(v.problems.len(), 6, "{all}");
        assert!(
            all.contains("reports `skulk 0.0.9`, this is `skulk 0.1.0`"),
            "{all}"
        );
        assert!(
            all.contains(
                "model file `~/.cache/skulk/models/org--model/model.Q4_1.gguf` is missing"
            ),
            "{all}"
        );
        assert!(
            all.contains("ring port `50001` on `10.0.0.1` is already in use"),
            "{all}"
        );
        assert!(
            all.contains("API port `52415` on `10.0.0.1` is already in use"),
            "{all}"
        );
        assert!(
            all.contains("`0.10 GiB` of memory available, the rank's share needs `0.39 GiB`"),
            "{all}"
        );
        assert!(all.contains("free for the slice cache"), "{all}");
        // The API port only matters on rank 0.
        let v1 = check(&d, &d.ranks[1], &f, &opts(), "x");
        assert!(!v1.problems.join("\n").contains("API port"));
    }

    #[test]
    fn install_and_fetch_turn_failures_into_fixes() {
        let d = fixtures::deployment(2);
        let mut f = good(&d);
        f.skulk = None;
        f.skulk_version = None;
        f.model = ModelState::Missing;
        let o = PreflightOptions {
            install: true,
            fetch: true,
            ..opts()
        };
        let v = check(&d, &d.ranks[1], &f, &o, "x");
        assert_eq!(
            v,
            Verdict {
                problems: vec![],
                install: true,
                fetch: true
            }
        );
        // Not across platforms.
        f.uname = "Darwin arm64".into();
        let v = check(&d, &d.ranks[1], &f, &o, "x");
        assert!(!v.install);
        assert!(
            v.problems[0].contains(
                "the host runs `Darwin arm64`, this skulk binary is built for `Linux x86_64`"
            ),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn wrong_size_and_digest_fail() {
        let mut d = fixtures::deployment(1);
        let mut f = good(&d);
        f.model = ModelState::Size(5);
        let v = check(&d, &d.ranks[0], &f, &opts(), "x");
        assert!(
            v.problems[0].contains("has 5 bytes, the plan expects 98362432"),
            "{:?}",
            v.problems
        );
        d.ranks[0].model.sha256 = Some("AB".into());
        f.model = ModelState::Size(d.ranks[0].model.size);
        f.model_sha256 = Some("ab".into());
        assert!(check(&d, &d.ranks[0], &f, &opts(), "x").problems.is_empty());
        f.model_sha256 = Some("cd".into());
        let v = check(&d, &d.ranks[0], &f, &opts(), "x");
        assert!(
            v.problems[0].contains("has sha256 `cd`, the plan expects `AB`"),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn facts_parse_from_the_scripts_output() {
        let f = Facts::parse("home=/h\nuname=Linux x86_64\nskulk=\nmodel_size=12\ndisk_avail_kib=2\n::begin meminfo\nMemAvailable: 3 kB\n::end\n::begin listeners\n::end\n");
        assert_eq!(f.skulk, None);
        assert_eq!(f.model, ModelState::Size(12));
        assert_eq!(f.disk_available, Some(2048));
        assert_eq!(f.mem_available, Some(3072));
    }

    #[test]
    fn this_platform_is_named_like_uname() {
        let out = std::process::Command::new("uname")
            .arg("-sm")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            local_platform()
        );
    }
}
