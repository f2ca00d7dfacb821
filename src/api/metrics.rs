//! Prometheus metrics in the text exposition format (version 0.0.4): what
//! rank 0 serves on `/metrics`, and what every rank measures of itself.
//!
//! Invariant: counters only grow, a histogram's buckets are cumulative and
//! its `+Inf` bucket equals its count; every family is written with its
//! `# HELP` and `# TYPE` lines once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Bucket bounds for time to first token, in seconds (a short prompt on a
/// CPU takes tens of milliseconds, a long one on a large model many
/// seconds).
pub const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Bucket bounds for the time between tokens and a rank's forward pass, in
/// seconds (a decode step takes 1 ms on a GPU to a second for a large model
/// on CPUs).
pub const STEP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Bucket bounds for one ring hop (network latency between two ranks).
pub const HOP_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// A histogram with fixed bounds; observations are lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), plus one for `+Inf`.
    counts: Vec<AtomicU64>,
    /// Sum of observations in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in self.bounds.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        cum += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cum}");
    }
}

/// What one rank measures of its own work (every rank has one).
#[derive(Debug)]
pub struct RankMetrics {
    pub rank: u32,
    /// This rank's forward passes (prefill chunks and decode steps).
    pub forward: Histogram,
    /// Latency of the link to the next rank (half a heartbeat round trip).
    pub hop: Histogram,
    /// Tokens (rows) of all forward passes: over `forward`'s count, the
    /// mean batch, which says how well requests share the steps.
    pub forward_tokens: AtomicU64,
    /// Sequences of all forward passes (a prompt chunk or a decode token of
    /// one request is one).
    pub forward_sequences: AtomicU64,
}

impl RankMetrics {
    pub fn new(rank: u32) -> RankMetrics {
        RankMetrics {
            rank,
            forward: Histogram::new(STEP_BUCKETS),
            hop: Histogram::new(HOP_BUCKETS),
            forward_tokens: AtomicU64::new(0),
            forward_sequences: AtomicU64::new(0),
        }
    }

    /// The rank's families, in text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let labels = format!("rank=\"{}\"", self.rank);
        family(
            &mut out,
            "skulk_forward_seconds",
            "histogram",
            "Time of this rank's forward passes over its layers (prefill chunks and decode steps).",
        );
        self.forward
            .write(&mut out, "skulk_forward_seconds", &labels);
        for (name, help, value) in [
            (
                "skulk_forward_tokens_total",
                "Tokens (rows) of this rank's forward passes; over skulk_forward_seconds_count, the mean batch.",
                &self.forward_tokens,
            ),
            (
                "skulk_forward_sequences_total",
                "Sequences in this rank's forward passes (each prompt chunk or decode token of a request counts once).",
                &self.forward_sequences,
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name}{{{labels}}} {}", value.load(Ordering::Relaxed));
        }
        family(
            &mut out,
            "skulk_ring_hop_seconds",
            "histogram",
            "Latency of the ring link from this rank to the next (half of a heartbeat's round trip).",
        );
        self.hop.write(&mut out, "skulk_ring_hop_seconds", &labels);
        out
    }
}

/// What rank 0's API measures.
#[derive(Debug)]
pub struct ApiMetrics {
    /// (route, HTTP status) -> answers.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    pub ttft: Histogram,
    pub inter_token: Histogram,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BUCKETS),
            inter_token: Histogram::new(STEP_BUCKETS),
        }
    }
}

impl ApiMetrics {
    pub fn request(&self, route: &str, status: u16) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry((route.to_string(), status)).or_insert(0) += 1;
    }

    pub fn tokens(&self, prompt: u32, generated: u32) {
        self.prompt_tokens
            .fetch_add(u64::from(prompt), Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(u64::from(generated), Ordering::Relaxed);
    }

    /// The API's families, and the scheduler's `load` (requests waiting
    /// and running), in text format.
    pub fn render(&self, load: super::Load) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "skulk_requests_total",
            "counter",
            "API requests answered, by route and HTTP status.",
        );
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, status), n) in requests.iter() {
            let _ = writeln!(
                out,
                "skulk_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape_label(route)
            );
        }
        drop(requests);
        family(
            &mut out,
            "skulk_prompt_tokens_total",
            "counter",
            "Prompt tokens of the generations run (tokens in).",
        );
        let _ = writeln!(
            out,
            "skulk_prompt_tokens_total {}",
            self.prompt_tokens.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "skulk_generated_tokens_total",
            "counter",
            "Tokens generated (tokens out).",
        );
        let _ = writeln!(
            out,
            "skulk_generated_tokens_total {}",
            self.generated_tokens.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "skulk_queue_depth",
            "gauge",
            "Requests accepted and waiting for a sequence slot.",
        );
        let _ = writeln!(out, "skulk_queue_depth {}", load.waiting);
        family(
            &mut out,
            "skulk_running_requests",
            "gauge",
            "Requests generating now (each holds a sequence slot of the batch).",
        );
        let _ = writeln!(out, "skulk_running_requests {}", load.running);
        family(
            &mut out,
            "skulk_time_to_first_token_seconds",
            "histogram",
            "Time from a request's arrival to its first generated token.",
        );
        self.ttft
            .write(&mut out, "skulk_time_to_first_token_seconds", "");
        family(
            &mut out,
            "skulk_inter_token_seconds",
            "histogram",
            "Time between consecutive generated tokens of a request.",
        );
        self.inter_token
            .write(&mut out, "skulk_inter_token_seconds", "");
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_is_the_count() {
        let h = Histogram::new(&[0.1, 1.0]);
        for ms in [50, 50, 500, 5000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.write(&mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"0.1\"} 2\nx_bucket{a=\"b\",le=\"1\"} 3\nx_bucket{a=\"b\",le=\"+Inf\"} 4\nx_sum{a=\"b\"} 5.6\nx_count{a=\"b\"} 4\n"
        );
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let m = ApiMetrics::default();
        m.request("/v1/chat/completions", 200);
        m.request("/v1/chat/completions", 200);
        m.request("/v1/messages", 400);
        m.tokens(10, 3);
        let text = m.render(crate::api::Load {
            running: 3,
            running_for: None,
            waiting: 2,
        });
        assert!(text
            .contains("skulk_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2\n"));
        assert!(text.contains("skulk_requests_total{route=\"/v1/messages\",status=\"400\"} 1\n"));
        assert!(text.contains("skulk_prompt_tokens_total 10\n"));
        assert!(text.contains("skulk_generated_tokens_total 3\n"));
        assert!(text.contains("skulk_queue_depth 2\n"));
        assert!(text.contains("skulk_running_requests 3\n"));
        assert_eq!(
            text.matches("# TYPE skulk_requests_total counter").count(),
            1
        );
    }
}
