//! Ring benchmark: one process per rank on 127.0.90.x (each rank is this
//! program re-executed as `child`), the real engine and API; prints decode
//! and prefill tokens/s and each rank's peak RSS for each split.
//!
//! ```text
//! cargo run --release --example ring_bench -- MODEL TOTAL_LAYERS [SPLIT...]
//!   SPLIT: layer counts, e.g. 30 15,15 10,10,10 (default: all three)
//!   env: BENCH_THREADS (per rank, default: cores / ranks, at least 1),
//!        BENCH_TOKENS (decode tokens, 64), BENCH_PROMPT (prefill tokens, ~512),
//!        BENCH_RUNS (3), BENCH_F16=1 (f16 rows on the wire)
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use skulk::engine::EngineOptions;
use skulk::ring::WireFormat;
use skulk::shard::{self, ApiSettings, Control, Loaded, ShardSettings};

const NET: u8 = 90;
const API_PORT: u16 = 18_080;
const RING_PORT: u16 = 18_081;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ip(r: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, NET, r as u8 + 1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(&args[2..]);
    }
    let model = PathBuf::from(args.get(1).expect("MODEL"));
    let total: u32 = args.get(2).expect("TOTAL_LAYERS").parse().unwrap();
    let mut splits: Vec<Vec<u32>> = args[3..]
        .iter()
        .map(|s| s.split(',').map(|n| n.parse().unwrap()).collect())
        .collect();
    if splits.is_empty() {
        let h = total / 2;
        let t = total / 3;
        splits = vec![vec![total], vec![h, total - h], vec![t, t, total - 2 * t]];
    }
    let cache = std::env::temp_dir().join("skulk-ring-bench");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "| ranks | split | threads/rank | decode tok/s | prefill tok/s (prompt) | peak RSS per rank (MiB) |"
    );
    println!("|---|---|---|---|---|---|");
    for split in &splits {
        let threads = env_num("BENCH_THREADS", (cores / split.len()).max(1));
        let mut ranks = Vec::new();
        let mut start = 0;
        for (r, &n) in split.iter().enumerate() {
            let layers = start..start + n;
            start += n;
            let path = shard::rank_local_gguf(&model, "bench", layers.clone(), total, &cache)
                .unwrap_or_else(|e| panic!("{e}"));
            let child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "child",
                    &r.to_string(),
                    &split.len().to_string(),
                    &layers.start.to_string(),
                    &layers.end.to_string(),
                    &total.to_string(),
                    path.to_str().unwrap(),
                    &threads.to_string(),
                ])
                .spawn()
                .unwrap();
            ranks.push(child);
        }
        let api = SocketAddr::new(IpAddr::V4(ip(0)), API_PORT);
        wait_ready(api, &mut ranks);
        let runs = env_num("BENCH_RUNS", 3);
        let mut decode = Vec::new();
        let mut prefill = Vec::new();
        let mut prompt_tokens = 0;
        for _ in 0..runs {
            decode.push(decode_rate(api, env_num("BENCH_TOKENS", 64)));
            let (rate, n) = prefill_rate(api, env_num("BENCH_PROMPT", 512));
            prefill.push(rate);
            prompt_tokens = n;
        }
        let rss: Vec<String> = ranks
            .iter()
            .map(|c| format!("{:.0}", peak_rss_kib(c.id()) as f64 / 1024.0))
            .collect();
        println!(
            "| {} | {} | {threads} | {} | {} ({prompt_tokens}) | {} |",
            split.len(),
            split
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("/"),
            fmt_runs(&decode),
            fmt_runs(&prefill),
            rss.join(" / ")
        );
        unsafe { libc::kill(ranks[0].id() as i32, libc::SIGTERM) };
        for mut c in ranks {
            let _ = c.wait();
        }
    }
}

fn fmt_runs(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "{:.1} (runs {:.1}-{:.1})",
        s[s.len() / 2],
        s[0],
        s[s.len() - 1]
    )
}

fn child(a: &[String]) {
    let rank: u32 = a[0].parse().unwrap();
    let world: u32 = a[1].parse().unwrap();
    let layers = a[2].parse().unwrap()..a[3].parse().unwrap();
    let total: u32 = a[4].parse().unwrap();
    let path = PathBuf::from(&a[5]);
    let threads: u32 = a[6].parse().unwrap();
    let s = ShardSettings {
        rank,
        world_size: world,
        bind_addr: IpAddr::V4(ip(rank)),
        next_addr: IpAddr::V4(ip((rank + 1) % world)),
        ring_port: RING_PORT,
        plan_digest: "bench".into(),
        secret: b"bench-secret".to_vec(),
        layers: layers.clone(),
        total_layers: total,
        model_path: path.clone(),
        model_id: "bench".into(),
        engine: EngineOptions {
            threads,
            gpu_layers: 0,
            n_ctx: 2048,
            n_batch: 512,
        },
        context_limit: 2048,
        api: (rank == 0).then(|| ApiSettings {
            bind_addr: IpAddr::V4(ip(0)),
            port: API_PORT,
            api_key: None,
            queue_capacity: 4,
        }),
        formation_deadline: Duration::from_secs(60),
        wire: if std::env::var("BENCH_F16").is_ok_and(|v| v == "1") {
            WireFormat::F16
        } else {
            WireFormat::F32
        },
    };
    let opts = shard::engine_options(&s);
    let loader: shard::Loader = Box::new(move || {
        let (stage, tokenizer) = skulk::engine::load(&path, layers, total, &opts)?;
        Ok(Loaded { stage, tokenizer })
    });
    if let Err(e) = shard::run_shard_with(s, loader, Control::with_signals()) {
        eprintln!("rank {rank}: {e}");
        std::process::exit(2);
    }
}

fn wait_ready(api: SocketAddr, ranks: &mut [Child]) {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http(api, "GET", "/health", None) {
            if r.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        for c in ranks.iter_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("a rank exited: {status}");
            }
        }
        assert!(Instant::now() < end, "ring not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Tokens/s between the first and the last streamed token of a greedy answer.
fn decode_rate(api: SocketAddr, tokens: usize) -> f64 {
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "Write a long story about a fox who lives in the snow."}],
        "max_tokens": tokens, "temperature": 0, "stream": true
    })
    .to_string();
    let mut s = TcpStream::connect(api).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut first = None;
    let mut last = Instant::now();
    let mut n = 0usize;
    while r.read_line(&mut line).unwrap() > 0 {
        if line.contains("\"content\":\"") && !line.contains("\"content\":\"\"") {
            last = Instant::now();
            first.get_or_insert(last);
            n += 1;
        }
        line.clear();
    }
    // Chunks, not tokens: a token whose text is held back (partial UTF-8,
    // none here) would merge into the next chunk.
    (n - 1) as f64 / (last - first.unwrap()).as_secs_f64()
}

/// Prompt tokens/s of a one-token completion of a long prompt.
fn prefill_rate(api: SocketAddr, approx_tokens: usize) -> (f64, u64) {
    let words = "the quick brown fox jumps over the lazy dog ".repeat(approx_tokens / 9);
    let body = serde_json::json!({"prompt": words, "max_tokens": 1, "temperature": 0}).to_string();
    let t = Instant::now();
    let r = http(api, "POST", "/v1/completions", Some(&body)).unwrap();
    let dt = t.elapsed().as_secs_f64();
    let json = &r[r.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {r}"));
    let n = v["usage"]["prompt_tokens"].as_u64().unwrap();
    (n as f64 / dt, n)
}

fn peak_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
