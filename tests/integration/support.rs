//! Test support: a small deterministic layered model behind the engine's
//! `Stage`/`Tokenizer` traits (llama.cpp is not built without the `engine`
//! feature), ranks of `run_rank_with` on 127.0.N.x in threads, and a tiny
//! HTTP/1.1 client over a real TCP socket.
//!
//! The toy model is a real layer stack in the sense the ring cares about:
//! each layer keeps a per-sequence, per-position cache (truncated by
//! `truncate_seq`) that its output depends on, positions must be
//! contiguous, and splitting the layers over ranks gives bit-identical
//! results only when the ring carries rows, positions, sequences and cache
//! operations exactly. A batch's sequences never see each other's rows.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use skulk::engine::{
    BatchOutput, ChatMessage, EngineError, EngineOptions, SeqSpan, Stage, StageInput, Tokenizer,
};
use skulk::rank::{self, ApiSettings, Control, Loaded, Loader, RankError, RankSettings};
use skulk::ring::WireFormat;

pub const N_EMBD: usize = 8;
pub const EOG: i32 = 256;
pub const N_VOCAB: usize = 257;

/// A gate a stage waits at before each forward pass while it is closed.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    /// Forward passes that reached the gate.
    pub arrived: AtomicUsize,
}

impl Gate {
    pub fn closed() -> Arc<Gate> {
        Arc::new(Gate::default())
    }
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
    pub fn close(&self) {
        *self.open.lock().unwrap() = false;
    }
    fn pass(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let g = self.open.lock().unwrap();
        let _g = self.cv.wait_while(g, |open| !*open).unwrap();
    }
    /// Wait until `n` passes arrived.
    pub fn wait_arrived(&self, n: usize) {
        wait_until(Duration::from_secs(20), || {
            self.arrived.load(Ordering::SeqCst) >= n
        });
    }
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "condition not met within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sequences a toy stage holds.
pub const TOY_SEQUENCES: u32 = 16;

pub struct ToyStage {
    layers: Range<u32>,
    total: u32,
    n_ctx: u32,
    /// Per sequence, per local layer, the input row at each position.
    kv: Vec<Vec<Vec<[f32; N_EMBD]>>>,
    gate: Option<Arc<Gate>>,
    /// Each forward pass takes at least this long.
    delay: Option<Duration>,
    pub forwards: Arc<AtomicUsize>,
    /// Spans of every batch run, in order.
    pub batches: Arc<Mutex<Vec<Vec<SeqSpan>>>>,
}

fn weight(l: u32, j: usize, k: usize) -> f32 {
    ((l as usize * 31 + j * 7 + k * 3) as f32 * 0.61).sin() * 0.5
}

fn embed(t: i32) -> [f32; N_EMBD] {
    std::array::from_fn(|j| ((t as f32 + 1.0) * (j as f32 + 1.0) * 0.37).sin())
}

/// Logits: letters, space and EOG only.
fn logits(h: &[f32; N_EMBD]) -> Vec<f32> {
    (0..N_VOCAB)
        .map(|v| {
            let allowed = (97..=122).contains(&v) || v == 32 || v == EOG as usize;
            if !allowed {
                return -1e9;
            }
            let bias = if v == EOG as usize { -2.0 } else { 0.0 };
            bias + (0..N_EMBD)
                .map(|j| h[j] * ((v * 13 + j * 5) as f32 * 0.29).cos())
                .sum::<f32>()
        })
        .collect()
}

impl ToyStage {
    pub fn new(layers: Range<u32>, total: u32, n_ctx: u32) -> ToyStage {
        let n = (layers.end - layers.start) as usize;
        ToyStage {
            layers,
            total,
            n_ctx,
            kv: vec![vec![Vec::new(); n]; TOY_SEQUENCES as usize],
            gate: None,
            delay: None,
            forwards: Arc::new(AtomicUsize::new(0)),
            batches: Arc::default(),
        }
    }

    fn err(&self, reason: String) -> EngineError {
        EngineError::Input {
            path: PathBuf::from("toy.gguf"),
            reason,
        }
    }

    fn layer(&mut self, seq: usize, li: usize, x: [f32; N_EMBD]) -> [f32; N_EMBD] {
        let l = self.layers.start + li as u32;
        self.kv[seq][li].push(x);
        let rows = &self.kv[seq][li];
        let mut mean = [0f32; N_EMBD];
        for r in rows {
            for j in 0..N_EMBD {
                mean[j] += r[j];
            }
        }
        for m in &mut mean {
            *m /= rows.len() as f32;
        }
        std::array::from_fn(|j| {
            let s: f32 = (0..N_EMBD).map(|k| weight(l, j, k) * x[k]).sum();
            (s + 0.5 * mean[j]).tanh() + x[j]
        })
    }
}

impl Stage for ToyStage {
    fn n_embd(&self) -> usize {
        N_EMBD
    }
    fn n_vocab(&self) -> usize {
        N_VOCAB
    }
    fn n_ctx(&self) -> u32 {
        self.n_ctx
    }
    fn is_first(&self) -> bool {
        self.layers.start == 0
    }
    fn is_last(&self) -> bool {
        self.layers.end == self.total
    }
    fn n_seq_max(&self) -> u32 {
        TOY_SEQUENCES
    }
    fn max_batch(&self) -> usize {
        usize::MAX
    }
    fn forward_batch(
        &mut self,
        spans: &[SeqSpan],
        input: StageInput<'_>,
    ) -> Result<BatchOutput, EngineError> {
        if let Some(g) = &self.gate {
            g.pass();
        }
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        self.forwards.fetch_add(1, Ordering::SeqCst);
        self.batches.lock().unwrap().push(spans.to_vec());
        let rows: Vec<[f32; N_EMBD]> = match input {
            StageInput::Tokens(t) => {
                assert!(self.is_first(), "tokens given to a later stage");
                t.iter().map(|&t| embed(t)).collect()
            }
            StageInput::Hidden { data, n_tokens } => {
                assert!(!self.is_first(), "hidden rows given to the first stage");
                assert_eq!(data.len(), n_tokens * N_EMBD);
                data.chunks_exact(N_EMBD)
                    .map(|c| c.try_into().unwrap())
                    .collect()
            }
        };
        let total: usize = spans.iter().map(|s| s.n_tokens as usize).sum();
        if rows.len() != total {
            return Err(self.err(format!("{} rows for spans of {total}", rows.len())));
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut logits_out = Vec::new();
        let mut rows = rows.into_iter();
        for span in spans {
            let seq = span.seq as usize;
            if seq >= self.kv.len() {
                return Err(self.err(format!("sequence `{seq}` out of range")));
            }
            if span.pos0 as usize != self.kv[seq][0].len() {
                return Err(self.err(format!(
                    "sequence `{seq}`: position `{}` but the cache holds `{}`",
                    span.pos0,
                    self.kv[seq][0].len()
                )));
            }
            if (span.pos0 + span.n_tokens) as usize > self.n_ctx as usize {
                return Err(self.err("context full".into()));
            }
            let mut last = [0f32; N_EMBD];
            for mut x in rows.by_ref().take(span.n_tokens as usize) {
                for li in 0..self.kv[seq].len() {
                    x = self.layer(seq, li, x);
                }
                out.push(x);
                last = x;
            }
            if span.logits {
                logits_out.push(logits(&last));
            }
        }
        Ok(if self.is_last() {
            BatchOutput::Logits(logits_out)
        } else {
            BatchOutput::Hidden(out.into_iter().flatten().collect())
        })
    }
    fn truncate_seq(&mut self, seq: u32, from: u32) -> Result<(), EngineError> {
        let Some(layers) = self.kv.get_mut(seq as usize) else {
            return Err(self.err(format!("sequence `{seq}` out of range")));
        };
        for l in layers {
            l.truncate(from as usize);
        }
        Ok(())
    }
    fn reuses_prefixes(&self) -> bool {
        true
    }
}

/// One token per byte; `EOG` ends generation.
pub struct ByteTokenizer;

impl Tokenizer for ByteTokenizer {
    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        let mut s: String = messages
            .iter()
            .map(|m| format!("<{}>{}\n", m.role, m.content))
            .collect();
        if add_generation_prompt {
            s.push_str("<assistant>");
        }
        Ok(s)
    }
    fn tokenize(&self, text: &str, _add_special: bool) -> Result<Vec<i32>, EngineError> {
        Ok(text.bytes().map(i32::from).collect())
    }
    fn token_to_piece(&self, token: i32) -> Vec<u8> {
        if (0..256).contains(&token) {
            vec![token as u8]
        } else {
            Vec::new()
        }
    }
    fn is_eog(&self, token: i32) -> bool {
        token == EOG
    }
}

/// How one toy rank is built.
#[derive(Clone, Default)]
pub struct ToyRank {
    /// Forward passes wait here.
    pub gate: Option<Arc<Gate>>,
    /// Loading waits here.
    pub load_gate: Option<Arc<Gate>>,
    /// Loading fails with this path "not found".
    pub missing: Option<PathBuf>,
    /// Each forward pass takes at least this long.
    pub delay: Option<Duration>,
    pub forwards: Arc<AtomicUsize>,
    /// Spans of every batch the stage ran.
    pub batches: Arc<Mutex<Vec<Vec<SeqSpan>>>>,
}

pub fn toy_loader(layers: Range<u32>, total: u32, n_ctx: u32, opts: ToyRank) -> Loader {
    Box::new(move || {
        if let Some(g) = &opts.load_gate {
            g.pass();
        }
        if let Some(path) = opts.missing {
            return Err(EngineError::ModelNotFound { path });
        }
        let mut stage = ToyStage::new(layers, total, n_ctx);
        stage.gate = opts.gate;
        stage.delay = opts.delay;
        stage.forwards = opts.forwards;
        stage.batches = opts.batches;
        Ok(Loaded {
            stage: Box::new(stage),
            tokenizer: Arc::new(ByteTokenizer),
        })
    })
}

pub fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Host `host` (0-based) of loopback network 127.0.`net`.x. All suites run
/// in one process, so each owns its networks: `shard` 21..=53, `dialects`
/// 54..=58, `run_shard_processes` 61..=71, `ring_engine` 80..=89 and
/// 110..=123, `api_clients` 90..=91 (127.0.0.x is the README's and
/// `apply_e2e`'s).
pub fn ip(net: u8, host: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host as u8 + 1)
}

pub const TOTAL_LAYERS: u32 = 12;

/// Settings of `rank` in a ring on 127.0.`net`.x (rank r at .r+1).
pub fn settings(net: u8, port: u16, rank: u32, layers: Range<u32>, world: u32) -> RankSettings {
    RankSettings {
        rank,
        world_size: world,
        bind_addr: IpAddr::V4(ip(net, rank)),
        next_addr: IpAddr::V4(ip(net, (rank + 1) % world)),
        ring_port: port,
        plan_digest: "toy-plan-digest".into(),
        secret: b"per-apply-secret".to_vec(),
        layers,
        total_layers: TOTAL_LAYERS,
        model_path: PathBuf::from("/models/toy.gguf"),
        model_id: "toy/model".into(),
        // A small batch makes short prompts go through the ring in chunks.
        engine: EngineOptions {
            n_batch: 4,
            ..EngineOptions::default()
        },
        context_limit: 2048,
        parallel: 4,
        micro_batches: 0,
        api: (rank == 0).then(|| ApiSettings {
            bind_addr: IpAddr::V4(ip(net, 0)),
            port: 0,
            api_key: None,
            queue_capacity: 2,
            default_max_tokens: skulk::api::DEFAULT_MAX_TOKENS,
            card: skulk::api::CardChat {
                model_id: "toy/model".into(),
                ..Default::default()
            },
        }),
        formation_deadline: Duration::from_secs(30),
        wire: WireFormat::F32,
        silence: skulk::ring::SilencePolicy::default(),
        metrics: None,
    }
}

pub struct Ring {
    pub controls: Vec<Control>,
    pub threads: Vec<Option<JoinHandle<Result<(), RankError>>>>,
    pub api: SocketAddr,
    pub ring_port: u16,
}

impl Ring {
    /// Start one thread per rank with the toy model; `splits` are the layer
    /// ranges in order.
    pub fn start(
        net: u8,
        splits: &[Range<u32>],
        customize: impl FnMut(&mut RankSettings),
        mut toy: impl FnMut(u32) -> ToyRank,
    ) -> Ring {
        Ring::start_with(net, splits, TOTAL_LAYERS, customize, |r, s| {
            toy_loader(s.layers.clone(), TOTAL_LAYERS, 4096, toy(r))
        })
    }

    /// Start one thread per rank with the loader `loader(rank, settings)`.
    pub fn start_with(
        net: u8,
        splits: &[Range<u32>],
        total_layers: u32,
        mut customize: impl FnMut(&mut RankSettings),
        mut loader: impl FnMut(u32, &RankSettings) -> Loader,
    ) -> Ring {
        let world = splits.len() as u32;
        let port = free_port(ip(net, 0));
        let mut controls = Vec::new();
        let mut threads = Vec::new();
        for (r, layers) in splits.iter().enumerate() {
            let r = r as u32;
            let mut s = settings(net, port, r, layers.clone(), world);
            s.total_layers = total_layers;
            customize(&mut s);
            let loader = loader(r, &s);
            let control = Control::new();
            let c = control.clone();
            threads.push(Some(std::thread::spawn(move || {
                rank::run_rank_with(s, loader, c)
            })));
            controls.push(control);
        }
        let api = controls[0]
            .api_addr(Duration::from_secs(20))
            .expect("rank 0 binds its API");
        Ring {
            controls,
            threads,
            api,
            ring_port: port,
        }
    }

    pub fn wait_ready(&self) {
        wait_until(Duration::from_secs(120), || {
            get(self.api, "/health").status == 200
        });
    }

    /// Join rank `r`'s thread.
    pub fn join(&mut self, r: usize) -> Result<(), RankError> {
        self.threads[r].take().unwrap().join().unwrap()
    }

    pub fn stop(mut self) {
        self.controls[0].stop();
        for r in 0..self.threads.len() {
            self.join(r).unwrap();
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// `data:` payloads of an SSE body.
    pub fn sse_data(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }
}

fn write_request(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: skulk\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    if let Some(b) = body {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    req += "\r\n";
    if let Some(b) = body {
        req += b;
    }
    s.write_all(req.as_bytes()).unwrap();
}

/// Read the status line and headers.
pub fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    (status, headers)
}

fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = nl + 2;
        let end = (start + size).min(rest.len());
        out.extend_from_slice(&rest[start..end]);
        rest = &rest[(end + 2).min(rest.len())..];
    }
    out
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    write_request(&mut s, method, path, headers, body);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let mut raw = Vec::new();
    r.read_to_end(&mut raw).unwrap();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(&raw) } else { raw };
    Response {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], None)
}

pub fn post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Response {
    request(addr, "POST", path, &[], Some(&body.to_string()))
}

/// Send a request and return the stream once the head is read (for
/// streaming requests that the test reads, or abandons, later).
pub fn open(addr: SocketAddr, path: &str, body: &serde_json::Value) -> (u16, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write_request(&mut s, "POST", path, &[], Some(&body.to_string()));
    let mut r = BufReader::new(s);
    let (status, _) = read_head(&mut r);
    (status, r)
}
