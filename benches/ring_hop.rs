//! What the ring itself costs per decoded token: 1 to 4 ranks of
//! `run_rank_with` on 127.0.95.x (real TCP, real API, streaming), with the
//! tests' toy stage, whose compute is a few microseconds, so the time per
//! token is the ring's hops, wake-ups and the API. Prints a table; compare
//! against the engine's per-token compute (tens of ms for SmolLM2 here).
//!
//! `cargo bench --no-default-features --bench ring_hop`

// One-rank layer lists read as what they are.
#![allow(clippy::single_range_in_vec_init)]

// The integration tests' toy model and ring; this bench uses a part of it.
#[path = "../tests/integration/support.rs"]
#[allow(dead_code)]
mod support;

use std::io::BufRead;
use std::time::Instant;

use serde_json::json;
use support::*;

/// Tokens per measured answer; the toy vocabulary has no EOG in greedy
/// decoding of this prompt within this many tokens.
const TOKENS: usize = 400;
const RUNS: usize = 5;

fn main() {
    println!("| ranks | hops per token | µs per token (median of {RUNS}) | µs per hop |");
    println!("|---|---|---|---|");
    let splits: [&[std::ops::Range<u32>]; 4] = [
        &[0..12],
        &[0..6, 6..12],
        &[0..4, 4..8, 8..12],
        &[0..3, 3..6, 6..9, 9..12],
    ];
    for (i, split) in splits.iter().enumerate() {
        let ring = Ring::start(95 + i as u8, split, |_| {}, |_| ToyRank::default());
        ring.wait_ready();
        let mut per_token: Vec<f64> = (0..RUNS).map(|_| run(&ring)).collect();
        per_token.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let med = per_token[RUNS / 2];
        let hops = split.len();
        println!(
            "| {hops} | {} | {med:.0} | {} |",
            if hops == 1 { 0 } else { hops },
            if hops == 1 {
                "-".to_string()
            } else {
                format!("{:.0}", med / hops as f64)
            }
        );
        ring.stop();
    }
}

/// Microseconds between consecutive streamed tokens.
fn run(ring: &Ring) -> f64 {
    let (status, mut s) = open(
        ring.api,
        "/v1/completions",
        &json!({"prompt": "ab", "max_tokens": TOKENS, "temperature": 0, "stream": true}),
    );
    assert_eq!(status, 200);
    let mut line = String::new();
    let mut first = None;
    let mut last = Instant::now();
    let mut n = 0usize;
    while s.read_line(&mut line).unwrap() > 0 {
        if line.starts_with("data: {")
            && line.contains("\"text\":\"")
            && !line.contains("\"text\":\"\"")
        {
            last = Instant::now();
            first.get_or_insert(last);
            n += 1;
        }
        line.clear();
    }
    (last - first.unwrap()).as_secs_f64() * 1e6 / (n - 1) as f64
}
