//! The ring with the real llama.cpp engine: ranks of `run_shard_with` in
//! threads on 127.0.N.x (real TCP, the real HTTP API), each loading its
//! rank-local GGUF cut from the test model.
//!
//! Models: `$SKULK_TEST_MODELS` (default `/root/.cache/skulk/test-models`);
//! a missing model skips the test, except under CI (`CI=true`).

#![cfg(feature = "engine")]

mod models;
mod support;

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use skulk::engine::EngineOptions;
use skulk::shard::{rank_local_gguf, Loaded, Loader, ShardError};
use support::*;

use models::{model, GEMMA3, SMOLLM2};

fn splits(counts: &[u32]) -> Vec<std::ops::Range<u32>> {
    let mut start = 0;
    counts
        .iter()
        .map(|&n| {
            start += n;
            start - n..start
        })
        .collect()
}

/// One compute thread per rank: the ranks share the test machine's cores.
fn engine_options() -> EngineOptions {
    EngineOptions {
        threads: 1,
        gpu_layers: 0,
        n_ctx: 1024,
        n_seq_max: 1,
        n_batch: 512,
    }
}

fn start(net: u8, model: &Path, total: u32, counts: &[u32], cache: &Path) -> Ring {
    Ring::start_with(
        net,
        &splits(counts),
        total,
        |s| {
            s.engine = engine_options();
            s.context_limit = 1024;
        },
        |_, s| {
            let path = rank_local_gguf(model, "test", s.layers.clone(), total, cache)
                .unwrap_or_else(|e| panic!("{e}"));
            let (layers, opts) = (s.layers.clone(), skulk::shard::engine_options(s));
            let loader: Loader = Box::new(move || {
                let (stage, tokenizer) = skulk::engine::load(&path, layers, total, &opts)?;
                Ok(Loaded { stage, tokenizer })
            });
            loader
        },
    )
}

const QUESTION: &str = "Write a short poem about foxes in the snow.";

/// Greedy chat answer, 64 tokens, to `messages`: (text, completion tokens,
/// finish reason).
fn answer(ring: &Ring, messages: serde_json::Value) -> (String, u64, String) {
    let r = post(
        ring.api,
        "/v1/chat/completions",
        &json!({"messages": messages, "max_tokens": 64, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    (
        j["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned(),
        j["usage"]["completion_tokens"].as_u64().unwrap(),
        j["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

fn check(name: &str, total: u32, all: &[&[u32]], net0: u8) {
    let Some(model) = model(name) else { return };
    let cache = tempfile::tempdir().unwrap();
    let mut expected = None;
    for (i, counts) in all.iter().enumerate() {
        let ring = start(net0 + i as u8, &model, total, counts, cache.path());
        ring.wait_ready();
        let first = answer(&ring, json!([{"role": "user", "content": QUESTION}]));
        // The next turn: every rank keeps the cached prefix it shares with
        // the first turn (SmolLM2; Gemma 3's sliding window recomputes all).
        let second = answer(
            &ring,
            json!([{"role": "user", "content": QUESTION},
                   {"role": "assistant", "content": first.0},
                   {"role": "user", "content": "Now one about owls."}]),
        );
        let got = (first, second);
        ring.stop();
        eprintln!("{name} {counts:?}: {got:?}");
        match &expected {
            None => {
                assert_eq!(counts.len(), 1, "the first configuration is one process");
                assert!(got.0 .1 > 8 && got.1 .1 > 8, "{got:?}");
                expected = Some(got);
            }
            Some(e) => assert_eq!(&got, e, "{name}: ranks {counts:?} differ from one process"),
        }
    }
}

#[test]
fn smollm2_on_1_to_4_ranks_answers_like_one_process() {
    check(
        SMOLLM2,
        30,
        &[&[30], &[1, 29], &[15, 15], &[7, 11, 12], &[8, 7, 8, 7]],
        61,
    );
}

#[test]
fn gemma3_on_2_ranks_answers_like_one_process() {
    check(GEMMA3, 18, &[&[18], &[9, 9]], 71);
}

#[test]
fn a_killed_middle_rank_fails_the_real_request_within_5_s() {
    let Some(model) = model(SMOLLM2) else { return };
    let cache = tempfile::tempdir().unwrap();
    let mut ring = start(75, &model, 30, &[10, 10, 10], cache.path());
    ring.wait_ready();
    let (status, mut stream) = open(
        ring.api,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Tell me a long story about a fox."}],
                "max_tokens": 900, "temperature": 0, "stream": true}),
    );
    assert_eq!(status, 200);
    // Some tokens flow, then rank 1 dies.
    let mut line = String::new();
    let mut chunks = 0;
    while chunks < 5 {
        line.clear();
        assert!(stream.read_line(&mut line).unwrap() > 0);
        if line.starts_with("data: ") {
            chunks += 1;
        }
    }
    let killed = Instant::now();
    ring.controls[1].kill();
    let error = loop {
        line.clear();
        assert!(
            stream.read_line(&mut line).unwrap() > 0,
            "stream ended without an error"
        );
        if let Some(d) = line.trim_end().strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            if v.get("error").is_some() {
                break v;
            }
        }
    };
    let waited = killed.elapsed();
    assert_eq!(error["error"]["code"], "ring_failed", "{error}");
    assert!(
        waited < Duration::from_secs(5),
        "client told after {waited:?}"
    );
    assert!(matches!(ring.join(1), Err(ShardError::Killed { rank: 1 })));
    for r in [0, 2] {
        assert!(
            matches!(ring.join(r), Err(ShardError::Ring { .. })),
            "rank {r}"
        );
    }
    assert!(std::net::TcpStream::connect(ring.api).is_err());
}
