//! Ranks of `run_rank_with` in threads on 127.0.N.x, talking over real TCP,
//! serving the real HTTP API; the engine is the toy layered model of
//! `support` (the llama.cpp engine's own tests are in `engine_*.rs`).

// One-rank layer lists read as what they are.
#![allow(clippy::single_range_in_vec_init)]

use std::io::{BufRead, Read};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use skulk::rank::RankError;

use crate::serial;
use crate::support::*;

fn completion(ring: &Ring, prompt: &str, extra: serde_json::Value) -> (String, serde_json::Value) {
    let mut body =
        json!({"model": "toy/model", "prompt": prompt, "max_tokens": 40, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = post(ring.api, "/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    (j["choices"][0]["text"].as_str().unwrap().to_owned(), j)
}

#[test]
fn one_to_four_ranks_give_the_same_text_as_one_process() {
    let _shared = serial::shared();
    let splits: [&[std::ops::Range<u32>]; 6] = [
        &[0..12],
        &[0..1, 1..12],
        &[0..6, 6..12],
        &[0..3, 3..7, 7..12],
        &[0..2, 2..5, 5..9, 9..12],
        &[0..1, 1..2, 2..3, 3..12],
    ];
    let mut results = Vec::new();
    for (i, split) in splits.iter().enumerate() {
        let ring = Ring::start(21 + i as u8, split, |_| {}, |_| ToyRank::default());
        ring.wait_ready();
        // Greedy; then the same request again on the same ring (every rank
        // keeps the cached prompt but its last token); then seeded sampling.
        let (greedy, j) = completion(&ring, "the quick brown fox", json!({}));
        let (again, _) = completion(&ring, "the quick brown fox", json!({}));
        let (other, _) = completion(&ring, "jumps over", json!({}));
        let (sampled, _) = completion(
            &ring,
            "the quick brown fox",
            json!({"temperature": 0.9, "top_p": 0.95, "top_k": 20, "seed": 1234}),
        );
        assert_eq!(greedy, again, "split {split:?}");
        assert_eq!(j["usage"]["prompt_tokens"], 19);
        results.push((split.to_vec(), greedy, other, sampled));
        ring.stop();
    }
    let (_, g0, o0, s0) = &results[0];
    eprintln!("greedy {g0:?}\nother {o0:?}\nsampled {s0:?}");
    assert!(!g0.is_empty());
    for (split, g, o, s) in &results[1..] {
        assert_eq!(g, g0, "greedy text of split {split:?}");
        assert_eq!(o, o0, "second prompt of split {split:?}");
        assert_eq!(s, s0, "seeded sampling of split {split:?}");
    }
}

#[test]
fn chat_streams_openai_chunks_with_the_same_text_as_a_whole_answer() {
    let _shared = serial::shared();
    let ring = Ring::start(31, &[0..5, 5..12], |_| {}, |_| ToyRank::default());
    ring.wait_ready();
    let req = json!({"model": "x", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20, "temperature": 0});
    let whole = post(ring.api, "/v1/chat/completions", &req);
    assert_eq!(whole.status, 200, "{}", whole.body);
    let whole = whole.json();
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["model"], "toy/model");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let text = whole["choices"][0]["message"]["content"].as_str().unwrap();
    let usage = &whole["usage"];
    assert_eq!(usage["prompt_tokens"], "<user>hello\n<assistant>".len());
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    sreq["stream_options"] = json!({"include_usage": true});
    let r = post(ring.api, "/v1/chat/completions", &sreq);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let data = r.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    let fin = &chunks[chunks.len() - 2];
    assert_eq!(
        fin["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    let last = &chunks[chunks.len() - 1];
    assert_eq!(last["choices"], json!([]));
    // The same counts; the repeated prompt came from the cache but its last
    // token.
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(last["usage"][k], usage[k], "{k}");
    }
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        last["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
        usage["prompt_tokens"].as_u64().map(|n| n - 1)
    );
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    ring.stop();
}

#[test]
fn finish_reasons_stop_strings_and_the_context_limit() {
    let _shared = serial::shared();
    let ring = Ring::start(
        32,
        &[0..12],
        |s| s.context_limit = 64,
        |_| ToyRank::default(),
    );
    ring.wait_ready();
    let (full, j) = completion(&ring, "abc", json!({"max_tokens": 30}));
    assert_eq!(j["choices"][0]["finish_reason"], "length");
    assert_eq!(j["usage"]["completion_tokens"], 30);
    assert_eq!(full.len(), 30);
    // A stop string taken from the middle of the greedy text cuts it there.
    let stop = &full[10..13];
    let cut = full.find(stop).unwrap();
    let (text, j) = completion(&ring, "abc", json!({"max_tokens": 30, "stop": [stop]}));
    assert_eq!(text, full[..cut]);
    assert_eq!(j["choices"][0]["finish_reason"], "stop");
    // Omitted max_tokens: the rest of the context (64 - 3).
    let (text, j) = completion(&ring, "abc", json!({"max_tokens": null}));
    if j["choices"][0]["finish_reason"] == "length" {
        assert_eq!(text.len(), 61);
    }
    // Too long a prompt is refused before any work.
    let r = post(
        ring.api,
        "/v1/completions",
        &json!({"prompt": "x".repeat(64)}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = post(
        ring.api,
        "/v1/completions",
        &json!({"prompt": "abc", "max_tokens": 62}),
    );
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    ring.stop();
}

#[test]
fn errors_have_the_openai_shape() {
    let _shared = serial::shared();
    let ring = Ring::start(
        33,
        &[0..12],
        |s| s.api.as_mut().unwrap().api_key = Some("sk-test".into()),
        |_| ToyRank::default(),
    );
    ring.wait_ready();
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
    // No key, wrong key: 401.
    for headers in [vec![], vec![("Authorization", "Bearer nope")]] {
        let r = request(
            ring.api,
            "POST",
            "/v1/chat/completions",
            &headers,
            Some(&chat.to_string()),
        );
        assert_eq!(r.status, 401);
        let e = r.json();
        assert_eq!(e["error"]["code"], "invalid_api_key");
        assert!(e["error"]["message"].as_str().unwrap().contains("Bearer"));
    }
    let auth = [("Authorization", "Bearer sk-test")];
    let r = request(
        ring.api,
        "POST",
        "/v1/chat/completions",
        &auth,
        Some(&chat.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // /health needs no key; /v1/models does.
    assert_eq!(get(ring.api, "/health").status, 200);
    assert_eq!(get(ring.api, "/v1/models").status, 401);
    let m = request(ring.api, "GET", "/v1/models", &auth, None).json();
    assert_eq!(m["data"][0]["id"], "toy/model");
    // Bad JSON, n=2, unknown route, wrong method.
    let r = request(
        ring.api,
        "POST",
        "/v1/chat/completions",
        &auth,
        Some("{not json"),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON body"));
    let mut two = chat.clone();
    two["n"] = json!(2);
    let r = request(
        ring.api,
        "POST",
        "/v1/chat/completions",
        &auth,
        Some(&two.to_string()),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("n"))
    );
    let r = request(ring.api, "GET", "/v1/nope", &auth, None);
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let r = request(ring.api, "GET", "/v1/chat/completions", &auth, None);
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    ring.stop();
}

#[test]
fn a_full_queue_answers_429_and_waiting_requests_run_in_turn() {
    let _shared = serial::shared();
    let gate = Gate::closed();
    let g = gate.clone();
    let ring = Ring::start(
        34,
        &[0..12],
        |s| s.parallel = 1,
        move |_| ToyRank {
            gate: Some(g.clone()),
            ..ToyRank::default()
        },
    );
    ring.wait_ready();
    let req = |content: &str| json!({"messages": [{"role": "user", "content": content}], "max_tokens": 5, "temperature": 0, "stream": true});
    // The first request runs (and waits at the gate) ...
    let (s, first) = open(ring.api, "/v1/chat/completions", &req("a"));
    assert_eq!(s, 200);
    gate.wait_arrived(1);
    // ... two wait in the queue (capacity 2) ...
    let (s1, q1) = open(ring.api, "/v1/chat/completions", &req("b"));
    let (s2, q2) = open(ring.api, "/v1/chat/completions", &req("c"));
    assert_eq!((s1, s2), (200, 200));
    // `/health` counts the three as in flight (for a supervisor's drain).
    assert_eq!(get(ring.api, "/health").json()["inFlight"], 3);
    // ... and the next is turned away.
    let r = post(ring.api, "/v1/chat/completions", &req("d"));
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "queue_full");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    gate.open();
    for mut s in [first, q1, q2] {
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.contains("data: [DONE]"), "{body}");
    }
    wait_until(Duration::from_secs(5), || {
        get(ring.api, "/health").json()["inFlight"] == 0
    });
    ring.stop();
}

#[test]
fn a_client_that_disconnects_cancels_its_request() {
    let _shared = serial::shared();
    let gate = Gate::closed();
    let toy = ToyRank {
        gate: Some(gate.clone()),
        ..ToyRank::default()
    };
    let forwards = toy.forwards.clone();
    let ring = Ring::start(35, &[0..12], |_| {}, move |_| toy.clone());
    ring.wait_ready();
    for stream in [true, false] {
        let long = json!({"prompt": "ab", "max_tokens": 1500, "temperature": 0, "stream": stream});
        let before = forwards.load(Ordering::SeqCst);
        let arrived = gate.arrived.load(Ordering::SeqCst);
        let mut s = std::net::TcpStream::connect(ring.api).unwrap();
        std::io::Write::write_all(
            &mut s,
            format!(
                "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                long.to_string().len(),
                long
            )
            .as_bytes(),
        )
        .unwrap();
        gate.wait_arrived(arrived + 1);
        drop(s);
        gate.open();
        // The next request runs once the abandoned one is cancelled.
        let (text, _) = completion(&ring, "xy", json!({"max_tokens": 3}));
        assert_eq!(text.len(), 3);
        let spent = forwards.load(Ordering::SeqCst) - before;
        assert!(
            spent < 1000,
            "stream={stream}: {spent} forward passes: the abandoned request ran on"
        );
        // Close the gate again for the next round.
        gate.close();
    }
    ring.stop();
}

#[test]
fn health_is_503_until_every_rank_has_loaded() {
    let _shared = serial::shared();
    let load_gate = Gate::closed();
    let lg = load_gate.clone();
    let ring = Ring::start(
        36,
        &[0..4, 4..8, 8..12],
        |_| {},
        move |r| ToyRank {
            load_gate: (r == 2).then(|| lg.clone()),
            ..ToyRank::default()
        },
    );
    load_gate.wait_arrived(1);
    let h = get(ring.api, "/health");
    assert_eq!(h.status, 503);
    assert_eq!(h.json()["status"], "starting");
    let r = post(
        ring.api,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "ring_not_ready");
    load_gate.open();
    ring.wait_ready();
    let (text, _) = completion(&ring, "hi", json!({"max_tokens": 4}));
    assert_eq!(text.len(), 4);
    ring.stop();
}

#[test]
fn a_rank_that_cannot_load_its_model_stops_every_rank_with_the_reason() {
    let _shared = serial::shared();
    let mut ring = Ring::start(
        37,
        &[0..4, 4..8, 8..12],
        |_| {},
        |r| ToyRank {
            missing: (r == 2).then(|| "/models/toy.gguf".into()),
            ..ToyRank::default()
        },
    );
    let errors: Vec<String> = (0..3)
        .map(|r| ring.join(r).unwrap_err().to_string())
        .collect();
    assert!(
        errors[2].starts_with("rank 2: model file `/models/toy.gguf` not found"),
        "{}",
        errors[2]
    );
    for e in &errors[..2] {
        assert!(
            e.starts_with(
                "rank 2 aborted the ring: rank 2: model file `/models/toy.gguf` not found"
            ),
            "{e}"
        );
    }
}

#[test]
fn a_killed_middle_rank_fails_the_request_within_5_s_and_every_rank_exits() {
    let _shared = serial::shared();
    let gate = Gate::closed();
    let g = gate.clone();
    let mut ring = Ring::start(
        38,
        &[0..4, 4..8, 8..12],
        |_| {},
        move |r| ToyRank {
            gate: (r == 1).then(|| g.clone()),
            ..ToyRank::default()
        },
    );
    ring.wait_ready();
    let (status, mut stream) = open(
        ring.api,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    );
    assert_eq!(status, 200);
    gate.wait_arrived(1);
    // Rank 1 is inside a forward pass; it dies.
    let killed = Instant::now();
    ring.controls[1].kill();
    let mut error = None;
    let mut line = String::new();
    while stream.read_line(&mut line).unwrap() > 0 {
        if let Some(d) = line.trim_end().strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            if v.get("error").is_some() {
                error = Some(v);
                break;
            }
        }
        line.clear();
    }
    let waited = killed.elapsed();
    let error = error.expect("an error event");
    assert_eq!(error["error"]["code"], "ring_failed");
    // Rank 0 reports the first loss it sees: rank 1, or rank 2 when rank 2
    // saw rank 1 go and exited first.
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("rank 0: lost rank "),
        "{error}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "client told after {waited:?}"
    );
    assert!(matches!(ring.join(1), Err(RankError::Killed { rank: 1 })));
    for r in [0, 2] {
        match ring.join(r) {
            Err(RankError::Ring { rank, .. }) if rank == r as u32 => {}
            other => panic!("rank {r}: {other:?}"),
        }
    }
    // Nothing is left listening: neither the API nor the ring port.
    assert!(std::net::TcpStream::connect(ring.api).is_err());
    for r in 0..3 {
        assert!(std::net::TcpStream::connect((ip(38, r), ring.ring_port)).is_err());
    }
    gate.open();
}

#[test]
fn an_orderly_stop_from_any_rank_stops_every_rank_cleanly() {
    let _shared = serial::shared();
    let mut ring = Ring::start(39, &[0..4, 4..8, 8..12], |_| {}, |_| ToyRank::default());
    ring.wait_ready();
    ring.controls[1].stop();
    for r in 0..3 {
        ring.join(r).unwrap();
    }
}

#[test]
fn a_rank_with_another_secret_is_refused_and_the_ring_never_serves() {
    let _shared = serial::shared();
    let mut ring = Ring::start(
        40,
        &[0..6, 6..12],
        |s| {
            if s.rank == 1 {
                s.secret = b"another apply".to_vec();
            }
            s.formation_deadline = Duration::from_secs(2);
        },
        |_| ToyRank::default(),
    );
    let e0 = ring.join(0).unwrap_err().to_string();
    let e1 = ring.join(1).unwrap_err().to_string();
    for e in [&e0, &e1] {
        assert!(e.contains("authentication failed"), "{e}");
    }
}

/// The next turn of a conversation (a prompt that extends an earlier prompt
/// and its answer) reuses the cached prefix on every rank: fewer forward
/// passes, and the same text as a fresh ring that computes everything.
#[test]
fn a_follow_up_prompt_reuses_the_cached_prefix_on_every_rank() {
    let _shared = serial::shared();
    let split: &[std::ops::Range<u32>] = &[0..4, 4..8, 8..12];
    let first = "the quick brown fox";
    let fresh = Ring::start(41, split, |_| {}, |_| ToyRank::default());
    fresh.wait_ready();
    let (answer, _) = completion(&fresh, first, json!({"max_tokens": 8}));
    let follow_up = format!("{first}{answer} and then");
    let (expected, _) = {
        let again = Ring::start(42, split, |_| {}, |_| ToyRank::default());
        again.wait_ready();
        let r = completion(&again, &follow_up, json!({}));
        again.stop();
        r
    };

    let forwards: Vec<_> = (0..3).map(|_| ToyRank::default().forwards).collect();
    let counters = forwards.clone();
    let ring = Ring::start(
        43,
        split,
        |_| {},
        move |r| ToyRank {
            forwards: counters[r as usize].clone(),
            ..ToyRank::default()
        },
    );
    ring.wait_ready();
    let (got_answer, _) = completion(&ring, first, json!({"max_tokens": 8}));
    assert_eq!(got_answer, answer);
    let before: Vec<usize> = forwards.iter().map(|f| f.load(Ordering::SeqCst)).collect();
    let (got, j) = completion(&ring, &follow_up, json!({}));
    let spent: Vec<usize> = forwards
        .iter()
        .zip(&before)
        .map(|(f, b)| f.load(Ordering::SeqCst) - b)
        .collect();
    assert_eq!(got, expected);
    // Prompt tokens are still counted whole.
    assert_eq!(j["usage"]["prompt_tokens"], follow_up.len() as u64, "{j}");
    // Only " and then" (9 tokens, chunks of 4) is prefilled again; the rest
    // of the forward passes are one per generated token.
    let generated = j["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    for (rank, n) in spent.iter().enumerate() {
        assert_eq!(
            *n,
            9usize.div_ceil(4) + generated - 1,
            "rank {rank}: {spent:?}"
        );
    }
    ring.stop();
    fresh.stop();
}

/// The `data:` payloads of a stream, read as they come; `None` at the end.
fn next_data(stream: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(d) = line.trim_end().strip_prefix("data: ") {
            return Some(d.to_owned());
        }
    }
}

/// The text of a streamed completion and how it ended (`[DONE]` or the
/// error's code).
fn read_stream(stream: &mut impl BufRead) -> (String, String) {
    let mut text = String::new();
    while let Some(d) = next_data(stream) {
        if d == "[DONE]" {
            return (text, "done".into());
        }
        let v: serde_json::Value = serde_json::from_str(&d).unwrap();
        if let Some(code) = v["error"]["code"].as_str() {
            return (text, code.to_owned());
        }
        if let Some(t) = v["choices"][0]["text"].as_str() {
            text.push_str(t);
        }
    }
    (text, "eof".into())
}

const PROMPTS: [&str; 8] = [
    "the quick brown fox",
    "jumps over",
    "a lazy dog sleeps",
    "in the sun",
    "once upon a time there was",
    "zebra",
    "hello world, said the",
    "many prompts at once",
];

/// Greedy completions of `prompts`, all sent at once.
fn all_at_once(ring: &Ring, prompts: &[&str], max_tokens: u32) -> Vec<(String, serde_json::Value)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| s.spawn(move || completion(ring, p, json!({"max_tokens": max_tokens}))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Eight requests at once on 4 sequences (4 run, 4 wait), on one process
/// and on 3 ranks: each answer is the one it gets alone, and the ranks
/// really ran several requests per batch.
#[test]
fn concurrent_requests_all_complete_with_the_text_they_get_alone() {
    let _shared = serial::shared();
    let splits: [&[std::ops::Range<u32>]; 2] = [&[0..12], &[0..3, 3..7, 7..12]];
    let mut alone_first: Option<Vec<String>> = None;
    for (i, split) in splits.iter().enumerate() {
        let toy = ToyRank::default();
        let batches = toy.batches.clone();
        let ring = Ring::start(
            44 + i as u8,
            split,
            |s| {
                if let Some(a) = s.api.as_mut() {
                    a.queue_capacity = 4;
                }
            },
            move |_| toy.clone(),
        );
        ring.wait_ready();
        let alone: Vec<String> = PROMPTS
            .iter()
            .map(|p| completion(&ring, p, json!({"max_tokens": 24})).0)
            .collect();
        let before = batches.lock().unwrap().len();
        let together = all_at_once(&ring, &PROMPTS, 24);
        for ((p, a), (t, j)) in PROMPTS.iter().zip(&alone).zip(&together) {
            assert_eq!(
                t, a,
                "{split:?}: prompt {p:?} answered differently alongside others"
            );
            assert_eq!(j["usage"]["completion_tokens"], 24);
        }
        let widest = batches.lock().unwrap()[before..]
            .iter()
            .map(Vec::len)
            .max()
            .unwrap();
        assert!(
            widest >= 2,
            "{split:?}: no batch held more than one request"
        );
        assert!(
            widest <= 4,
            "{split:?}: {widest} requests in one batch, 4 allowed"
        );
        if let Some(first) = &alone_first {
            assert_eq!(&alone, first, "{split:?} differs from one process");
        }
        alone_first = Some(alone);
        ring.stop();
    }
}

/// With 3 ranks, rank 0 cuts the running requests into micro-batches (about
/// a third each), so that every rank has one to work on; one process runs
/// them all in each step.
#[test]
fn three_ranks_pipeline_micro_batches_of_the_running_requests() {
    let _shared = serial::shared();
    for (net, split, widest_decode) in [
        (46u8, &[0..12][..], 6usize),
        (47, &[0..3, 3..7, 7..12][..], 2),
    ] {
        // Each forward pass takes 2 ms, so the six requests, arriving a few
        // milliseconds apart on a busy machine, join before the first ends.
        let toy = ToyRank {
            delay: Some(Duration::from_millis(2)),
            ..ToyRank::default()
        };
        let batches = toy.batches.clone();
        let ring = Ring::start(
            net,
            split,
            |s| {
                s.parallel = 6;
                s.engine.n_batch = 64;
            },
            move |_| toy.clone(),
        );
        ring.wait_ready();
        let together = all_at_once(&ring, &PROMPTS[..6], 30);
        assert!(together.iter().all(|(t, _)| t.len() == 30));
        let log = batches.lock().unwrap();
        // Decoding steps: every span is one token.
        let decode: Vec<usize> = log
            .iter()
            .filter(|b| b.iter().all(|s| s.n_tokens == 1))
            .map(Vec::len)
            .collect();
        let widest = *decode.iter().max().unwrap();
        assert_eq!(
            widest, widest_decode,
            "{split:?}: decode batch sizes {decode:?}"
        );
        drop(log);
        ring.stop();
    }
}

#[test]
fn cancelling_one_stream_mid_batch_leaves_the_others_running() {
    let _shared = serial::shared();
    // Each rank its own batch log; every forward pass takes 2 ms, so the
    // requests are still running when the test reads them.
    let logs: Vec<ToyRank> = (0..3)
        .map(|_| ToyRank {
            delay: Some(Duration::from_millis(2)),
            ..ToyRank::default()
        })
        .collect();
    let rank0 = logs[0].batches.clone();
    let ring = Ring::start(
        48,
        &[0..4, 4..8, 8..12],
        |_| {},
        move |r| logs[r as usize].clone(),
    );
    ring.wait_ready();
    // Alone, each prompt takes a sequence of its own (least recently used
    // first); at once each finds its cached prefix: slots 0, 1, 2.
    let alone: Vec<String> = PROMPTS[..3]
        .iter()
        .map(|p| completion(&ring, p, json!({"max_tokens": 200})).0)
        .collect();
    let mut streams: Vec<_> = PROMPTS[..3]
        .iter()
        .map(|p| {
            let (status, s) = open(
                ring.api,
                "/v1/completions",
                &json!({"prompt": p, "max_tokens": 200, "temperature": 0, "stream": true}),
            );
            assert_eq!(status, 200);
            s
        })
        .collect();
    // All three are generating; then the second client leaves.
    let mut start = Vec::new();
    for s in streams.iter_mut() {
        let mut text = String::new();
        for _ in 0..3 {
            let d: serde_json::Value = serde_json::from_str(&next_data(s).unwrap()).unwrap();
            text += d["choices"][0]["text"].as_str().unwrap();
        }
        start.push(text);
    }
    let cut = rank0.lock().unwrap().len();
    let mut c = streams.pop().unwrap();
    drop(streams.pop());
    let mut a = streams.pop().unwrap();
    let (ta, ea) = read_stream(&mut a);
    let (tc, ec) = read_stream(&mut c);
    assert_eq!((ea.as_str(), ec.as_str()), ("done", "done"));
    assert_eq!(start[0].clone() + &ta, alone[0]);
    assert_eq!(start[2].clone() + &tc, alone[2]);
    // The abandoned request left the batches soon after, while the others
    // ran to the end.
    let log = rank0.lock().unwrap();
    let in_slot = |slot: u32| {
        log[cut..]
            .iter()
            .filter(|b| b.iter().any(|s| s.seq == slot))
            .count()
    };
    let (kept, left) = (in_slot(0), in_slot(1));
    assert!(kept > 100, "slot 0 ran {kept} batches after the cut");
    assert!(
        left * 4 < kept,
        "the abandoned slot ran {left} batches, slot 0 {kept}"
    );
    drop(log);
    ring.stop();
}

#[test]
fn a_full_queue_answers_429_and_a_client_that_leaves_the_queue_frees_its_place() {
    let _shared = serial::shared();
    let gate = Gate::closed();
    let g = gate.clone();
    // Rank 1 waits at the gate, so rank 0 stays free to watch its queue.
    let ring = Ring::start(
        49,
        &[0..6, 6..12],
        |s| {
            s.parallel = 2;
            if let Some(a) = s.api.as_mut() {
                a.queue_capacity = 1;
            }
        },
        move |r| ToyRank {
            gate: (r == 1).then(|| g.clone()),
            ..ToyRank::default()
        },
    );
    ring.wait_ready();
    let req = |p: &str| json!({"prompt": p, "max_tokens": 5, "temperature": 0, "stream": true});
    // Two run (and wait at rank 1's gate), one waits for a sequence ...
    let (s1, r1) = open(ring.api, "/v1/completions", &req("ab"));
    let (s2, r2) = open(ring.api, "/v1/completions", &req("cd"));
    gate.wait_arrived(1);
    let (s3, r3) = open(ring.api, "/v1/completions", &req("ef"));
    assert_eq!((s1, s2, s3), (200, 200, 200));
    // ... and the next is refused.
    let r = post(ring.api, "/v1/completions", &req("gh"));
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "queue_full");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    // The waiting client leaves: its place in the queue is free again.
    drop(r3);
    let mut r4 = None;
    wait_until(Duration::from_secs(10), || {
        let (s, r) = open(ring.api, "/v1/completions", &req("ij"));
        if s == 200 {
            r4 = Some(r);
        }
        s == 200
    });
    gate.open();
    for mut s in [r1, r2, r4.unwrap()] {
        let (text, end) = read_stream(&mut s);
        assert_eq!((text.len(), end.as_str()), (5, "done"));
    }
    ring.stop();
}

/// A finished request's sequence keeps its cache; the next turn of that
/// conversation finds it among the others and reuses it.
#[test]
fn a_follow_up_reuses_its_own_conversations_sequence_among_several() {
    let _shared = serial::shared();
    let ring = Ring::start(
        50,
        &[0..6, 6..12],
        |s| s.parallel = 3,
        |_| ToyRank::default(),
    );
    ring.wait_ready();
    let a = "the quick brown fox";
    let (answer_a, _) = completion(&ring, a, json!({"max_tokens": 8}));
    let (_, _) = completion(&ring, "something else entirely", json!({"max_tokens": 8}));
    let (_, _) = completion(&ring, "and a third one", json!({"max_tokens": 8}));
    let follow_up = format!("{a}{answer_a} and then");
    let (_, j) = completion(&ring, &follow_up, json!({"max_tokens": 4}));
    // Everything but the last token of the first turn came from its cache.
    assert_eq!(
        j["usage"]["prompt_tokens_details"]["cached_tokens"],
        (a.len() + answer_a.len() - 1) as u64,
        "{j}"
    );
    ring.stop();
}

/// A KV pool too small for every request at once: requests pause and resume
/// (their tokens recomputed), and each still gets the answer it gets alone.
#[test]
fn requests_that_outgrow_the_shared_pool_pause_and_still_answer_in_full() {
    let _shared = serial::shared();
    let alone = {
        let ring = Ring::start(51, &[0..12], |_| {}, |_| ToyRank::default());
        ring.wait_ready();
        let alone: Vec<String> = PROMPTS[..4]
            .iter()
            .map(|p| completion(&ring, p, json!({"max_tokens": 60})).0)
            .collect();
        ring.stop();
        alone
    };
    let pool = 96;
    let rank0 = ToyRank::default();
    let log = rank0.batches.clone();
    let ring = Ring::start_with(
        53,
        &[0..4, 4..8, 8..12],
        TOTAL_LAYERS,
        |s| {
            s.context_limit = pool;
            s.parallel = 4;
        },
        move |r, s| {
            let toy = if r == 0 {
                rank0.clone()
            } else {
                ToyRank::default()
            };
            toy_loader(s.layers.clone(), TOTAL_LAYERS, pool, toy)
        },
    );
    ring.wait_ready();
    let together = all_at_once(&ring, &PROMPTS[..4], 60);
    for ((p, a), (t, j)) in PROMPTS.iter().zip(&alone).zip(&together) {
        assert_eq!(t, a, "prompt {p:?}");
        assert_eq!(j["choices"][0]["finish_reason"], "length", "{j}");
    }
    // Each request alone feeds its prompt and 59 of its 60 tokens; more
    // means some were computed again after a pause.
    let fed: u32 = log
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .map(|s| s.n_tokens)
        .sum();
    let once: u32 = PROMPTS[..4].iter().map(|p| p.len() as u32 + 59).sum();
    assert!(fed > once, "{fed} tokens fed, {once} without pauses");
    ring.stop();
}

#[test]
fn a_rank_killed_under_load_ends_every_stream_with_an_error_and_every_rank_exits() {
    let _shared = serial::shared();
    let gate = Gate::closed();
    let g = gate.clone();
    let mut ring = Ring::start(
        52,
        &[0..4, 4..8, 8..12],
        |_| {},
        move |r| ToyRank {
            gate: (r == 1).then(|| g.clone()),
            ..ToyRank::default()
        },
    );
    ring.wait_ready();
    let mut streams: Vec<_> = PROMPTS[..6]
        .iter()
        .map(|p| {
            let (status, s) = open(
                ring.api,
                "/v1/completions",
                &json!({"prompt": p, "max_tokens": 1000, "temperature": 0, "stream": true}),
            );
            assert_eq!(status, 200);
            s
        })
        .collect();
    // Let some steps through, then stop rank 1 inside a forward pass.
    gate.open();
    for s in streams.iter_mut().take(4) {
        next_data(s).expect("a chunk");
    }
    gate.close();
    let arrived = gate.arrived.load(Ordering::SeqCst);
    gate.wait_arrived(arrived + 1);
    let killed = Instant::now();
    ring.controls[1].kill();
    // Every stream, running (4) or waiting (2), ends with the ring's error.
    for (i, s) in streams.iter_mut().enumerate() {
        let (_, end) = read_stream(s);
        assert_eq!(end, "ring_failed", "stream {i}");
    }
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "clients told after {waited:?}"
    );
    assert!(matches!(ring.join(1), Err(RankError::Killed { rank: 1 })));
    for r in [0, 2] {
        assert!(
            matches!(ring.join(r), Err(RankError::Ring { .. })),
            "rank {r}"
        );
    }
    assert!(std::net::TcpStream::connect(ring.api).is_err());
    for r in 0..3 {
        assert!(std::net::TcpStream::connect((ip(52, r), ring.ring_port)).is_err());
    }
    gate.open();
}
