//! The Anthropic and Ollama dialects, logprobs and `/metrics` over rings of
//! `run_rank_with` ranks on 127.0.N.x (real TCP, real HTTP), with the toy
//! model of `support`: the shapes each dialect promises, and that what the
//! sampling rank reports (log-probabilities, the stop sequence) crosses the
//! ring unchanged. The real clients against the real model are in
//! `api_clients.rs`.

// One-rank layer lists read as what they are.
#![allow(clippy::single_range_in_vec_init)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use skulk::rank::MetricsSettings;

use crate::serial;
use crate::support::*;

const KEY: &str = "sk-dialects";

fn with_key(s: &mut skulk::rank::RankSettings) {
    if let Some(a) = s.api.as_mut() {
        a.api_key = Some(KEY.into());
    }
}

fn post_with(api: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> Response {
    request(api, "POST", path, headers, Some(&body.to_string()))
}

const BEARER: (&str, &str) = ("Authorization", "Bearer sk-dialects");
const X_API_KEY: (&str, &str) = ("x-api-key", "sk-dialects");

#[test]
fn logprobs_and_stop_sequences_cross_the_ring_unchanged() {
    let _shared = serial::shared();
    let body =
        json!({"prompt": "the quick brown fox", "max_tokens": 12, "temperature": 0, "logprobs": 3});
    let mut results = Vec::new();
    for (i, split) in [&[0..12][..], &[0..4, 4..9, 9..12][..]].iter().enumerate() {
        let ring = Ring::start(54 + i as u8, split, with_key, |_| ToyRank::default());
        ring.wait_ready();
        let r = post_with(ring.api, "/v1/completions", &[BEARER], &body);
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        let lp = j["choices"][0]["logprobs"].clone();
        let text = j["choices"][0]["text"].as_str().unwrap().to_string();
        let tokens: Vec<String> = serde_json::from_value(lp["tokens"].clone()).unwrap();
        assert_eq!(tokens.concat(), text);
        assert_eq!(
            tokens.len() as u64,
            j["usage"]["completion_tokens"].as_u64().unwrap()
        );
        for (k, top) in lp["top_logprobs"].as_array().unwrap().iter().enumerate() {
            let top = top.as_object().unwrap();
            assert_eq!(top.len().min(3), top.len());
            // Greedy: the token taken is the most likely.
            let best = top
                .iter()
                .max_by(|a, b| a.1.as_f64().partial_cmp(&b.1.as_f64()).unwrap())
                .unwrap();
            assert_eq!(best.0, &tokens[k]);
            assert!(lp["token_logprobs"][k].as_f64().unwrap() <= 0.0);
        }
        // Anthropic: a stop sequence taken from the answer ends it there.
        let ask = json!({"max_tokens": 12, "temperature": 0,
                         "messages": [{"role": "user", "content": "the quick brown fox"}]});
        let full = post_with(ring.api, "/v1/messages", &[X_API_KEY], &ask).json();
        let full = full["content"][0]["text"].as_str().unwrap().to_string();
        let stop: String = full.chars().skip(1).take(2).collect();
        let mut with_stop = ask.clone();
        with_stop["stop_sequences"] = json!([stop]);
        let m = post_with(ring.api, "/v1/messages", &[X_API_KEY], &with_stop);
        assert_eq!(m.status, 200, "{}", m.body);
        let m = m.json();
        assert_eq!(m["stop_reason"], "stop_sequence", "{m} (without: {full:?})");
        assert_eq!(m["stop_sequence"], json!(stop));
        let cut = &full[..full.find(&stop).unwrap()];
        assert_eq!(m["content"][0]["text"], json!(cut));
        results.push((lp, m["content"].clone()));
        ring.stop();
    }
    assert_eq!(results[0], results[1], "one rank and three ranks differ");
}

#[test]
fn anthropic_messages_whole_streamed_and_refused() {
    let _shared = serial::shared();
    let ring = Ring::start(56, &[0..5, 5..12], with_key, |_| ToyRank::default());
    ring.wait_ready();
    let req = json!({"model": "toy", "max_tokens": 10, "temperature": 0, "system": [{"type": "text", "text": "be brief"}],
                     "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]});
    let r = post_with(ring.api, "/v1/messages", &[X_API_KEY], &req);
    assert_eq!(r.status, 200, "{}", r.body);
    let m = r.json();
    assert_eq!(
        (m["type"].as_str(), m["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(m["content"][0]["type"], "text");
    let text = m["content"][0]["text"].as_str().unwrap().to_string();
    assert!(["end_turn", "max_tokens"].contains(&m["stop_reason"].as_str().unwrap()));
    assert!(m["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let r = post_with(ring.api, "/v1/messages", &[X_API_KEY], &sreq);
    assert_eq!(r.status, 200);
    let names: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names[..3],
        ["message_start", "ping", "content_block_start"],
        "{names:?}"
    );
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let data: Vec<Value> = r
        .sse_data()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = data
        .iter()
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(
        data[data.len() - 2]["delta"]["stop_reason"],
        m["stop_reason"]
    );

    // Errors in Anthropic's shape: a bad value, a missing key, no key.
    let mut bad = req.clone();
    bad["max_tokens"] = json!(0);
    let r = post_with(ring.api, "/v1/messages", &[X_API_KEY], &bad);
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`max_tokens` is `0`"),
        "{e}"
    );
    let mut missing = req.clone();
    missing.as_object_mut().unwrap().remove("max_tokens");
    let r = post_with(ring.api, "/v1/messages", &[X_API_KEY], &missing);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`max_tokens` is required"));
    let r = post_with(ring.api, "/v1/messages", &[], &req);
    assert_eq!(
        (r.status, r.json()["error"]["type"].clone()),
        (401, json!("authentication_error"))
    );
    // A tool result without its id names the block.
    let mut tr = req.clone();
    tr["messages"] =
        json!([{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]);
    let r = post_with(ring.api, "/v1/messages", &[X_API_KEY], &tr);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`messages[0].content[0]` (tool_result) needs `tool_use_id`"));
    ring.stop();
}

#[test]
fn ollama_streams_ndjson_and_lists_the_model() {
    let _shared = serial::shared();
    let ring = Ring::start(57, &[0..7, 7..12], with_key, |_| ToyRank::default());
    ring.wait_ready();
    let chat = json!({"model": "toy/model", "messages": [{"role": "user", "content": "hello"}],
                      "options": {"temperature": 0, "num_predict": 10}});
    let r = post_with(ring.api, "/api/chat", &[BEARER], &chat);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/x-ndjson"));
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert!(["stop", "length"].contains(&last["done_reason"].as_str().unwrap()));
    assert!(last["eval_count"].as_u64().unwrap() > 0 && last["total_duration"].as_u64().is_some());
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
    let streamed: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    let mut whole = chat.clone();
    whole["stream"] = json!(false);
    let w = post_with(ring.api, "/api/chat", &[BEARER], &whole).json();
    assert_eq!(w["message"]["content"].as_str().unwrap(), streamed);
    assert!(w["created_at"].as_str().unwrap().ends_with('Z'));

    let g = post_with(ring.api, "/api/generate", &[BEARER],
        &json!({"prompt": "hello", "stream": false, "options": {"temperature": 0, "num_predict": 5}})).json();
    assert!(g["response"].is_string() && g["done"] == true, "{g}");
    let tags = request(ring.api, "GET", "/api/tags", &[BEARER], None).json();
    assert_eq!(tags["models"][0]["name"], "toy/model");
    assert!(
        request(ring.api, "GET", "/api/version", &[BEARER], None).json()["version"].is_string()
    );
    assert_eq!(
        request(ring.api, "GET", "/api/ps", &[BEARER], None).json()["models"][0]["model"],
        "toy/model"
    );
    let show = post_with(
        ring.api,
        "/api/show",
        &[BEARER],
        &json!({"model": "toy/model"}),
    )
    .json();
    assert!(
        show["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("completion")),
        "{show}"
    );
    // Errors: Ollama's `{"error": ...}`.
    let r = post_with(ring.api, "/api/show", &[BEARER], &json!({"model": "other"}));
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("`other`"));
    let mut bad = chat.clone();
    bad["options"]["mirostat"] = json!(2);
    let r = post_with(ring.api, "/api/chat", &[BEARER], &bad);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("`options.mirostat`"));
    let mut bad = chat.clone();
    bad["options"]["temperature"] = json!("hot");
    let r = post_with(ring.api, "/api/chat", &[BEARER], &bad);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("`options.temperature`"),
        "{}",
        r.body
    );
    assert_eq!(post_with(ring.api, "/api/chat", &[], &chat).status, 401);
    ring.stop();
}

#[test]
fn metrics_count_requests_and_time_every_rank() {
    let _shared = serial::shared();
    let metrics_port = free_port(ip(58, 1));
    let ring = Ring::start(
        58,
        &[0..6, 6..12],
        |s| {
            with_key(s);
            if s.rank == 1 {
                s.metrics = Some(MetricsSettings {
                    addr: SocketAddr::new(std::net::IpAddr::V4(ip(58, 1)), metrics_port),
                    api_key: Some(KEY.into()),
                });
            }
        },
        |_| ToyRank::default(),
    );
    ring.wait_ready();
    let body =
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "temperature": 0});
    for _ in 0..2 {
        assert_eq!(
            post_with(ring.api, "/v1/chat/completions", &[BEARER], &body).status,
            200
        );
    }
    let mut bad = body.clone();
    bad["temperature"] = json!(9);
    assert_eq!(
        post_with(ring.api, "/v1/chat/completions", &[BEARER], &bad).status,
        400
    );
    // Idle links probe their latency every 2 s.
    std::thread::sleep(Duration::from_millis(2500));
    let m = request(ring.api, "GET", "/metrics", &[BEARER], None);
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let t = &m.body;
    assert!(
        t.contains("skulk_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2\n"),
        "{t}"
    );
    assert!(
        t.contains("skulk_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 1\n"),
        "{t}"
    );
    assert!(t.contains("skulk_queue_depth 0\n"), "{t}");
    let count = |text: &str, name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count(t, "skulk_time_to_first_token_seconds_count") == 2,
        "{t}"
    );
    assert!(count(t, "skulk_inter_token_seconds_count") > 0, "{t}");
    assert!(count(t, "skulk_generated_tokens_total") > 0, "{t}");
    assert!(
        count(t, "skulk_forward_seconds_count{rank=\"0\"}") > 0,
        "{t}"
    );
    assert!(
        count(t, "skulk_ring_hop_seconds_count{rank=\"0\"}") > 0,
        "{t}"
    );
    assert_eq!(get(ring.api, "/metrics").status, 401);
    // Rank 1 serves its own.
    let addr = SocketAddr::new(std::net::IpAddr::V4(ip(58, 1)), metrics_port);
    let r1 = request(addr, "GET", "/metrics", &[BEARER], None);
    assert_eq!(r1.status, 200, "{}", r1.body);
    assert!(
        count(&r1.body, "skulk_forward_seconds_count{rank=\"1\"}") > 0,
        "{}",
        r1.body
    );
    assert!(
        count(&r1.body, "skulk_ring_hop_seconds_count{rank=\"1\"}") > 0,
        "{}",
        r1.body
    );
    assert_eq!(get(addr, "/metrics").status, 401);
    ring.stop();
}
