//! The ring with the real llama.cpp engine: ranks of `run_rank_with` in
//! threads on 127.0.N.x (real TCP, the real HTTP API), each loading its
//! rank-local GGUF cut from the test model.
//!
//! Models: `$SKULK_TEST_MODELS` (default `~/.cache/skulk/test-models`);
//! a missing model skips the test, except under CI, where it fails
//! (`prereq`).

#![cfg(feature = "engine")]

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use skulk::engine::EngineOptions;
use skulk::rank::{rank_local_gguf, Loaded, Loader, RankError};

use crate::support::*;

use crate::models::{model, GEMMA3, SMOLLM2};
use crate::serial;

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
            let (layers, opts) = (s.layers.clone(), skulk::rank::engine_options(s));
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
    let _shared = serial::shared();
    check(
        SMOLLM2,
        30,
        &[&[30], &[1, 29], &[15, 15], &[7, 11, 12], &[8, 7, 8, 7]],
        80,
    );
}

#[test]
fn gemma3_on_2_ranks_answers_like_one_process() {
    let _shared = serial::shared();
    check(GEMMA3, 18, &[&[18], &[9, 9]], 85);
}

#[test]
fn a_killed_middle_rank_fails_the_real_request_within_5_s() {
    let _shared = serial::shared();
    let Some(model) = model(SMOLLM2) else { return };
    let cache = tempfile::tempdir().unwrap();
    let mut ring = start(87, &model, 30, &[10, 10, 10], cache.path());
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
    assert!(matches!(ring.join(1), Err(RankError::Killed { rank: 1 })));
    for r in [0, 2] {
        assert!(
            matches!(ring.join(r), Err(RankError::Ring { .. })),
            "rank {r}"
        );
    }
    assert!(std::net::TcpStream::connect(ring.api).is_err());
}

const QUESTIONS: [&str; 8] = [
    "Write a short poem about foxes in the snow.",
    "What is the capital of France?",
    "Explain photosynthesis to a child.",
    "List three uses of a paperclip.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "Tell me a joke about computers.",
    "How do bees make honey?",
];

/// Greedy answers (64 tokens) to `questions`, sent all at once in order
/// (each is queued before the next is sent), read as they stream.
fn answers_at_once(ring: &Ring, questions: &[&str]) -> Vec<String> {
    let streams: Vec<_> = questions
        .iter()
        .map(|q| {
            let (status, s) = open(
                ring.api,
                "/v1/chat/completions",
                &json!({"messages": [{"role": "user", "content": q}], "max_tokens": 64,
                        "temperature": 0, "stream": true}),
            );
            assert_eq!(status, 200);
            s
        })
        .collect();
    streams
        .into_iter()
        .map(|mut s| {
            let mut text = String::new();
            let mut line = String::new();
            loop {
                line.clear();
                assert!(s.read_line(&mut line).unwrap() > 0, "stream ended early");
                let Some(d) = line.trim_end().strip_prefix("data: ") else {
                    continue;
                };
                if d == "[DONE]" {
                    return text;
                }
                let v: serde_json::Value = serde_json::from_str(d).unwrap();
                assert!(v.get("error").is_none(), "{v}");
                if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                    text.push_str(t);
                }
            }
        })
        .collect()
}

fn start_parallel(net: u8, model: &Path, counts: &[u32], cache: &Path, micro_batches: u32) -> Ring {
    let total = 30;
    Ring::start_with(
        net,
        &splits(counts),
        total,
        |s| {
            s.engine = engine_options();
            s.context_limit = 4096;
            s.parallel = 9;
            s.micro_batches = micro_batches;
            if let Some(a) = s.api.as_mut() {
                a.queue_capacity = 16;
            }
        },
        |_, s| {
            let path = rank_local_gguf(model, "test", s.layers.clone(), total, cache)
                .unwrap_or_else(|e| panic!("{e}"));
            let (layers, opts) = (s.layers.clone(), skulk::rank::engine_options(s));
            let loader: Loader = Box::new(move || {
                let (stage, tokenizer) = skulk::engine::load(&path, layers, total, &opts)?;
                Ok(Loaded { stage, tokenizer })
            });
            loader
        },
    )
}

/// Eight requests sent while a long prompt is being computed all join at
/// the same step, so one process and a ring that runs one batch at a time
/// (`micro_batches` 1) run the same batches, and answer the same, token for
/// token. (Alone, a request can answer differently: llama.cpp's kernels
/// round differently for batches of other shapes; the test prints how many
/// of the eight do, for the record.)
#[test]
fn smollm2_requests_at_once_on_3_ranks_answer_like_one_process_given_the_same_batches() {
    let _shared = serial::shared();
    let Some(model) = model(SMOLLM2) else { return };
    let cache = tempfile::tempdir().unwrap();
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(90);
    let mut runs = Vec::new();
    for (i, counts) in [&[30u32][..], &[10, 10, 10]].iter().enumerate() {
        let ring = start_parallel(88 + i as u8, &model, counts, cache.path(), 1);
        ring.wait_ready();
        let alone: Vec<String> = QUESTIONS
            .iter()
            .map(|q| answer(&ring, json!([{"role": "user", "content": q}])).0)
            .collect();
        let (blocker, together) = std::thread::scope(|s| {
            let r = &ring;
            let blocker = s.spawn(|| answer(r, json!([{"role": "user", "content": long}])).0);
            std::thread::sleep(Duration::from_secs(1));
            let together = answers_at_once(r, &QUESTIONS);
            (blocker.join().unwrap(), together)
        });
        ring.stop();
        let same = alone.iter().zip(&together).filter(|(a, t)| a == t).count();
        eprintln!("{counts:?}: {same} of 8 answers at once equal the answer alone");
        runs.push((alone, blocker, together));
    }
    let (alone1, blocker1, together1) = &runs[0];
    let (alone3, blocker3, together3) = &runs[1];
    assert_eq!(alone3, alone1, "alone: 3 ranks differ from one process");
    assert_eq!(
        blocker3, blocker1,
        "the long request: 3 ranks differ from one process"
    );
    for (q, (a, b)) in QUESTIONS.iter().zip(together1.iter().zip(together3)) {
        assert_eq!(b, a, "{q:?} at once: 3 ranks differ from one process");
    }
}

/// Generated models (random weights, SmolLM2's tokenizer) of the
/// architectures whose cuts need more than renumbering (mixture of experts,
/// MLA with leading dense layers, sliding windows, recurrent layers), served
/// by the real ring with four requests at once: a request alone answers on
/// 2 ranks as in one process, its next turn too (prefix reuse, or none for
/// recurrent models), and requests at once all finish without an error.
/// `tests/integration/arch_equivalence.rs` proves the cuts in one process; this proves
/// the ring, the KV pool of several sequences and the scheduler run them.
#[test]
fn generated_architectures_serve_requests_at_once_on_2_ranks_like_one_process() {
    let _shared = serial::shared();
    use skulk::synth::{write_model, SynthSpec};
    let Some(tokenizer) = model(SMOLLM2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let archs = [
        "qwen3moe",
        "deepseek2",
        "gemma2",
        "gpt-oss",
        "glm4moe",
        "qwen3next",
        "lfm2",
    ];
    for (a, arch) in archs.iter().enumerate() {
        let spec = SynthSpec::tiny(arch).unwrap();
        let total = spec.n_layer;
        let path = dir.path().join(format!("{arch}.gguf"));
        write_model(&spec, &tokenizer, &path).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let cache = dir.path().join(format!("cache-{arch}"));
        let half = total / 2;
        let mut runs = Vec::new();
        for (i, counts) in [vec![total], vec![half, total - half]].iter().enumerate() {
            let net = 110 + (2 * a + i) as u8;
            let ring = Ring::start_with(
                net,
                &splits(counts),
                total,
                |s| {
                    s.engine = engine_options();
                    s.context_limit = 1024;
                    s.parallel = 4;
                },
                |_, s| {
                    let path = rank_local_gguf(&path, arch, s.layers.clone(), total, &cache)
                        .unwrap_or_else(|e| panic!("{arch}: {e}"));
                    let (layers, opts) = (s.layers.clone(), skulk::rank::engine_options(s));
                    let loader: Loader = Box::new(move || {
                        let (stage, tokenizer) = skulk::engine::load(&path, layers, total, &opts)?;
                        Ok(Loaded { stage, tokenizer })
                    });
                    loader
                },
            );
            ring.wait_ready();
            let first = answer(&ring, json!([{"role": "user", "content": QUESTION}]));
            let second = answer(
                &ring,
                json!([{"role": "user", "content": QUESTION},
                       {"role": "assistant", "content": first.0},
                       {"role": "user", "content": "Now one about owls."}]),
            );
            let at_once = answers_at_once(&ring, &QUESTIONS[..4]);
            ring.stop();
            assert!(
                first.1 > 0 && second.1 > 0,
                "{arch} {counts:?}: {first:?} {second:?}"
            );
            assert_eq!(at_once.len(), 4);
            eprintln!("{arch} {counts:?}: {:?}", first.0);
            runs.push((first, second));
        }
        assert_eq!(runs[1], runs[0], "{arch}: 2 ranks differ from one process");
    }
}
