//! Token sampling from the last rank's logits, in pure Rust.
//!
//! Invariant: the token chosen is a function of the logits, the sampling
//! parameters and the seed only (no global RNG, no platform-dependent RNG
//! algorithm), so a request with a seed replays exactly. Temperature 0 is
//! argmax with the lowest id winning ties, which the equivalence test relies
//! on. Order of operations as in Hugging Face transformers and vLLM:
//! temperature, then top-k, then top-p on the tempered distribution.

use std::cmp::Ordering;

use super::SamplingParams;

/// Candidates examined first when top-p runs without top-k; grown 4x until
/// the nucleus is complete. Typical nuclei hold a few dozen tokens, so this
/// avoids sorting the whole vocabulary (49k-262k entries) per token.
const TOP_P_FIRST_WINDOW: usize = 64;

/// Chooses one token id from a row of logits.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Xoshiro256,
    /// (logit, id) candidates, reused between calls.
    scratch: Vec<(f32, i32)>,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        Sampler {
            params: params.clone(),
            rng: Xoshiro256::seeded(params.seed),
            scratch: Vec::new(),
        }
    }

    /// The next token. `logits` has one value per vocabulary id; NaN values
    /// are never chosen. An empty row gives 0.
    pub fn sample(&mut self, logits: &[f32]) -> i32 {
        let p = &self.params;
        let greedy = p.temperature.is_nan() || p.temperature <= 0.0 || p.top_k == 1;
        if greedy {
            return argmax(logits);
        }
        let inv_t = 1.0 / f64::from(p.temperature);
        self.scratch.clear();
        self.scratch.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_finite())
                .map(|(i, &l)| (l, i as i32)),
        );
        let cands = &mut self.scratch;
        if cands.is_empty() {
            // All -inf, +inf or NaN: nothing to weigh, fall back to argmax.
            return argmax(logits);
        }
        let top_k = p.top_k as usize;
        let mut sorted = false;
        if top_k > 0 && top_k < cands.len() {
            cands.select_nth_unstable_by(top_k - 1, by_rank);
            cands.truncate(top_k);
            cands.sort_unstable_by(by_rank);
            sorted = true;
        }
        let max = cands.iter().map(|c| c.0).fold(f32::NEG_INFINITY, f32::max);
        let weight = |l: f32| ((f64::from(l) - f64::from(max)) * inv_t).exp();
        let total: f64 = cands.iter().map(|c| weight(c.0)).sum();

        if p.top_p > 0.0 && p.top_p < 1.0 {
            let target = f64::from(p.top_p) * total;
            let mut window = if sorted {
                cands.len()
            } else {
                TOP_P_FIRST_WINDOW.min(cands.len())
            };
            loop {
                if !sorted || window < cands.len() {
                    if window < cands.len() {
                        cands.select_nth_unstable_by(window - 1, by_rank);
                    }
                    cands[..window].sort_unstable_by(by_rank);
                }
                let mut cum = 0.0;
                let mut keep = None;
                for (i, c) in cands[..window].iter().enumerate() {
                    cum += weight(c.0);
                    if cum >= target {
                        keep = Some(i + 1);
                        break;
                    }
                }
                match keep {
                    Some(n) => {
                        cands.truncate(n);
                        break;
                    }
                    None if window == cands.len() => break,
                    None => {
                        window = (window * 4).min(cands.len());
                        sorted = false;
                    }
                }
            }
        }

        let kept: f64 = cands.iter().map(|c| weight(c.0)).sum();
        let mut u = self.rng.next_f64() * kept;
        for c in cands.iter() {
            u -= weight(c.0);
            if u < 0.0 {
                return c.1;
            }
        }
        // Rounding left a sliver past the last candidate.
        cands.last().map_or(0, |c| c.1)
    }
}

/// Higher logit first, then lower id.
fn by_rank(a: &(f32, i32), b: &(f32, i32)) -> Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

/// Index of the largest logit, the lowest on ties; NaN never wins.
fn argmax(logits: &[f32]) -> i32 {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if l <= b => {}
            _ => best = Some((i, l)),
        }
    }
    best.map_or(0, |(i, _)| i as i32)
}

/// xoshiro256** (Blackman and Vigna), seeded through splitmix64: a fixed,
/// documented algorithm, so seeds replay across builds and rand versions.
#[derive(Debug, Clone)]
struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    fn seeded(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Xoshiro256 {
            s: [next(), next(), next(), next()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, top_k: u32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            seed,
        }
    }

    #[test]
    fn greedy_takes_the_largest_logit_and_the_lowest_id_on_ties() {
        let mut s = Sampler::new(&params(0.0, 1.0, 0, 1));
        assert_eq!(s.sample(&[0.1, 3.0, -2.0, 3.0]), 1);
        assert_eq!(s.sample(&[f32::NAN, -1.0, -1.0]), 1);
        assert_eq!(s.sample(&[5.0]), 0);
        assert_eq!(s.sample(&[]), 0);
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let mut s = Sampler::new(&params(5.0, 1.0, 1, 7));
        for _ in 0..20 {
            assert_eq!(s.sample(&[1.0, 2.0, 2.0, 0.0]), 1);
        }
    }

    #[test]
    fn same_seed_replays_and_other_seeds_differ() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 / 20.0).collect();
        let run = |seed| {
            let mut s = Sampler::new(&params(1.0, 0.95, 0, seed));
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn top_k_never_leaves_the_k_best() {
        let logits: Vec<f32> = (0..500).map(|i| (i % 50) as f32).collect();
        // The 3 best logits are 49.0 at ids 49, 99, 149 (ties broken by id).
        let mut s = Sampler::new(&params(100.0, 1.0, 3, 3));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..300 {
            seen.insert(s.sample(&logits));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![49, 99, 149]);
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // Probabilities 0.5, 0.25, 0.125, ...: top_p 0.7 keeps ids 0 and 1.
        let logits: Vec<f32> = (0..200)
            .map(|i| -(i as f32) * std::f32::consts::LN_2)
            .collect();
        let mut s = Sampler::new(&params(1.0, 0.7, 0, 11));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..400 {
            seen.insert(s.sample(&logits));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn top_p_grows_its_window_past_the_first_64_candidates() {
        // A flat distribution: the nucleus for top_p 0.5 is half of 1000 ids.
        let logits = vec![0.0f32; 1000];
        let mut s = Sampler::new(&params(1.0, 0.5, 0, 5));
        let ids: Vec<i32> = (0..2000).map(|_| s.sample(&logits)).collect();
        assert!(ids.iter().all(|&i| i < 500), "ids beyond the nucleus");
        assert!(
            ids.iter().any(|&i| i >= 64),
            "nucleus cut at the first window"
        );
    }

    #[test]
    fn frequencies_follow_the_tempered_distribution() {
        // Logits ln(3), 0 at temperature 1: ids 0 and 1 with p = 0.75 and 0.25.
        let logits = [3.0f32.ln(), 0.0];
        let mut s = Sampler::new(&params(1.0, 1.0, 0, 99));
        let n = 20_000;
        let zeros = (0..n).filter(|_| s.sample(&logits) == 0).count();
        let p = zeros as f64 / n as f64;
        assert!((p - 0.75).abs() < 0.02, "p(0) = {p}");
    }

    #[test]
    fn non_finite_logits_are_never_sampled() {
        let logits = [f32::NAN, 1.0, f32::NEG_INFINITY, 1.0];
        let mut s = Sampler::new(&params(1.0, 1.0, 0, 8));
        for _ in 0..200 {
            let t = s.sample(&logits);
            assert!(t == 1 || t == 3, "{t}");
        }
    }
}
