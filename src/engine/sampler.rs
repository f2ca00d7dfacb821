//! Token sampling from the last rank's logits, in pure Rust.
//!
//! Invariant: the token chosen is a function of the logits, the sampling
//! parameters and the seed only (no global RNG, no platform-dependent RNG
//! algorithm), so a request with a seed replays exactly. Temperature 0 is
//! argmax with the lowest id winning ties, which the equivalence test relies
//! on. Order of operations as in Hugging Face transformers and vLLM:
//! temperature, then top-k, then top-p on the tempered distribution. A
//! grammar restricts what is left (a draw from the nucleus that the grammar
//! allows, found by rejection, or from the allowed part of the nucleus;
//! when the nucleus holds nothing allowed, from the allowed tokens tempered
//! and cut afresh). A constrained sampler never returns a token its
//! [`Constraint`] forbids: when nothing is allowed it returns [`NO_TOKEN`].
//!
//! Log-probabilities are those of the model's own distribution (the raw
//! logits' log-softmax), before temperature, top-k/top-p and the grammar,
//! as vLLM reports them.

use std::cmp::Ordering;

use super::{Constraint, SamplingParams};

/// Returned instead of a token when the constraint allows none.
pub const NO_TOKEN: i32 = -1;

/// Candidates tried first under a grammar at temperature 0: if one of the
/// most likely few is allowed, the best of them is the answer and the
/// grammar need not look at the whole vocabulary.
const GREEDY_GRAMMAR_WINDOW: usize = 32;

/// Draws from the nucleus checked one by one against the grammar before it
/// looks at the whole nucleus: a grammar usually allows the likely tokens,
/// and checking one costs a fraction of checking 49k-262k.
const REJECTION_TRIES: usize = 8;

/// The sampled token and, when asked for, its log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: i32,
    pub logprobs: Option<TokenLogprobs>,
}

/// Log-probability of the sampled token and of the most likely ones.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub token: i32,
    pub logprob: f32,
    /// Most likely first (lowest id first on ties).
    pub top: Vec<(i32, f32)>,
}

/// Candidates examined first when top-p runs without top-k; grown 4x until
/// the nucleus is complete. Typical nuclei hold a few dozen tokens, so this
/// avoids sorting the whole vocabulary (49k-262k entries) per token.
const TOP_P_FIRST_WINDOW: usize = 64;

/// Chooses one token id from a row of logits.
pub struct Sampler {
    params: SamplingParams,
    rng: Xoshiro256,
    /// (logit, id) candidates, reused between calls.
    scratch: Vec<(f32, i32)>,
    constraint: Option<Box<dyn Constraint>>,
    /// The grammar's candidates, reused between calls.
    masked: Vec<(i32, f32)>,
    /// Logits with the grammar's mask applied.
    row: Vec<f32>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("params", &self.params)
            .field("constrained", &self.constraint.is_some())
            .finish()
    }
}

impl Sampler {
    /// A sampler without a grammar (`params.grammar` is not looked at).
    pub fn new(params: &SamplingParams) -> Self {
        Sampler::constrained(params, None)
    }

    /// A sampler whose tokens `constraint` must allow (made from
    /// `params.grammar` by the tokenizer).
    pub fn constrained(params: &SamplingParams, constraint: Option<Box<dyn Constraint>>) -> Self {
        Sampler {
            params: params.clone(),
            rng: Xoshiro256::seeded(params.seed),
            scratch: Vec::new(),
            constraint,
            masked: Vec::new(),
            row: Vec::new(),
        }
    }

    /// The next token and, if the parameters ask for them, its
    /// log-probabilities. [`NO_TOKEN`] when the constraint allows none.
    pub fn next(&mut self, logits: &[f32]) -> Sampled {
        let logprobs = self
            .params
            .logprobs
            .map(|top| (top, log_softmax_norm(logits)));
        let token = match self.constraint.take() {
            None => self.sample(logits),
            Some(mut c) => {
                let t = self.sample_constrained(&mut *c, logits);
                if t != NO_TOKEN {
                    c.accept(t);
                }
                self.constraint = Some(c);
                t
            }
        };
        Sampled {
            token,
            logprobs: logprobs.map(|(top, lse)| TokenLogprobs {
                token,
                logprob: logits
                    .get(usize::try_from(token).unwrap_or(usize::MAX))
                    .map_or(f32::NEG_INFINITY, |&l| (f64::from(l) - lse) as f32),
                top: top_logprobs(logits, top as usize, lse),
            }),
        }
    }

    fn sample_constrained(&mut self, c: &mut dyn Constraint, logits: &[f32]) -> i32 {
        let p = &self.params;
        let greedy = p.temperature.is_nan() || p.temperature <= 0.0 || p.top_k == 1;
        if greedy {
            // The best few first: the best allowed among them is the best
            // allowed overall.
            self.masked.clear();
            self.masked.extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| !l.is_nan())
                    .map(|(i, &l)| (i as i32, l)),
            );
            let n = GREEDY_GRAMMAR_WINDOW.min(self.masked.len());
            if n > 0 && n < self.masked.len() {
                self.masked
                    .select_nth_unstable_by(n - 1, |a, b| by_rank(&(a.1, a.0), &(b.1, b.0)));
            }
            self.masked[..n].sort_unstable_by(|a, b| by_rank(&(a.1, a.0), &(b.1, b.0)));
            let window = &mut self.masked[..n];
            c.apply(window);
            if let Some(&(t, _)) = window.iter().find(|(_, l)| *l > f32::NEG_INFINITY) {
                return t;
            }
            return self.masked_argmax(c, logits);
        }
        if let Some(max) = self.nucleus(logits) {
            // Rejection: a draw from the nucleus that the grammar allows is
            // a draw from the nucleus restricted to the grammar.
            for _ in 0..REJECTION_TRIES {
                let t = self.draw(max);
                let mut one = [(t, logits[t as usize])];
                c.apply(&mut one);
                if one[0].1 > f32::NEG_INFINITY {
                    return t;
                }
            }
            // The grammar allows little of the nucleus: restrict it.
            self.masked.clear();
            self.masked
                .extend(self.scratch.iter().map(|&(l, i)| (i, l)));
            c.apply(&mut self.masked);
            let allowed: Vec<(f32, i32)> = self
                .masked
                .iter()
                .filter(|(_, l)| *l > f32::NEG_INFINITY)
                .map(|&(i, l)| (l, i))
                .collect();
            if !allowed.is_empty() {
                self.scratch = allowed;
                return self.draw(max);
            }
        }
        // Nothing allowed in the nucleus: the allowed tokens, tempered and
        // cut as the request says.
        if !self.mask_vocabulary(c, logits) {
            return NO_TOKEN;
        }
        let row = std::mem::take(&mut self.row);
        let t = self.sample(&row);
        self.row = row;
        // The grammar's last look was at the whole vocabulary.
        t
    }

    /// The best token the grammar allows, looking at the whole vocabulary.
    fn masked_argmax(&mut self, c: &mut dyn Constraint, logits: &[f32]) -> i32 {
        if !self.mask_vocabulary(c, logits) {
            return NO_TOKEN;
        }
        argmax(&self.row)
    }

    /// `self.row`: every logit, `-inf` where the grammar forbids the token.
    /// False when it forbids them all.
    fn mask_vocabulary(&mut self, c: &mut dyn Constraint, logits: &[f32]) -> bool {
        self.masked.clear();
        self.masked
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as i32, l)));
        c.apply(&mut self.masked);
        self.row.clear();
        self.row.extend(self.masked.iter().map(|&(_, l)| l));
        self.row.iter().any(|l| *l > f32::NEG_INFINITY)
    }

    /// The next token without a grammar. `logits` has one value per
    /// vocabulary id; NaN values are never chosen. An empty row gives 0.
    pub fn sample(&mut self, logits: &[f32]) -> i32 {
        let p = &self.params;
        let greedy = p.temperature.is_nan() || p.temperature <= 0.0 || p.top_k == 1;
        if greedy {
            return argmax(logits);
        }
        match self.nucleus(logits) {
            Some(max) => self.draw(max),
            // All -inf, +inf or NaN: nothing to weigh, fall back to argmax.
            None => argmax(logits),
        }
    }

    fn weight(&self, l: f32, max: f32) -> f64 {
        let inv_t = 1.0 / f64::from(self.params.temperature);
        ((f64::from(l) - f64::from(max)) * inv_t).exp()
    }

    /// Fills `scratch` with the candidates temperature, top-k and top-p
    /// keep; returns the largest logit among them (`None`: no finite logit).
    fn nucleus(&mut self, logits: &[f32]) -> Option<f32> {
        let p = &self.params;
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
            return None;
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
        Some(max)
    }

    /// One draw from `scratch`, weighted by the tempered probabilities
    /// (`max`: the logit the weights are relative to).
    fn draw(&mut self, max: f32) -> i32 {
        let kept: f64 = self.scratch.iter().map(|c| self.weight(c.0, max)).sum();
        let mut u = self.rng.next_f64() * kept;
        for c in self.scratch.iter() {
            u -= self.weight(c.0, max);
            if u < 0.0 {
                return c.1;
            }
        }
        // Rounding left a sliver past the last candidate.
        self.scratch.last().map_or(0, |c| c.1)
    }
}

/// log(sum(exp(logit))) over the finite logits (the log-softmax's norm).
fn log_softmax_norm(logits: &[f32]) -> f64 {
    let max = logits
        .iter()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if max == f32::NEG_INFINITY {
        return f64::INFINITY;
    }
    let sum: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| (f64::from(l) - f64::from(max)).exp())
        .sum();
    f64::from(max) + sum.ln()
}

/// The `n` most likely tokens with their log-probabilities.
fn top_logprobs(logits: &[f32], n: usize, lse: f64) -> Vec<(i32, f32)> {
    if n == 0 {
        return Vec::new();
    }
    let mut c: Vec<(f32, i32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (l, i as i32))
        .collect();
    let n = n.min(c.len());
    if n == 0 {
        return Vec::new();
    }
    if n < c.len() {
        c.select_nth_unstable_by(n - 1, by_rank);
        c.truncate(n);
    }
    c.sort_unstable_by(by_rank);
    c.into_iter()
        .map(|(l, i)| (i, (f64::from(l) - lse) as f32))
        .collect()
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
            ..SamplingParams::default()
        }
    }

    /// Allows only even ids, and records what it was told to accept.
    struct Evens(std::sync::Arc<std::sync::Mutex<Vec<i32>>>);
    impl Constraint for Evens {
        fn apply(&mut self, candidates: &mut [(i32, f32)]) {
            for c in candidates {
                if c.0 % 2 == 1 {
                    c.1 = f32::NEG_INFINITY;
                }
            }
        }
        fn accept(&mut self, token: i32) {
            self.0.lock().unwrap().push(token);
        }
    }

    #[test]
    fn a_constraint_masks_before_sampling_and_sees_each_token() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32).collect();
        for (t, k) in [(0.0, 0), (1.5, 0), (1.0, 5)] {
            let mut s =
                Sampler::constrained(&params(t, 0.9, k, 3), Some(Box::new(Evens(seen.clone()))));
            for _ in 0..50 {
                let tok = s.next(&logits).token;
                assert_eq!(tok % 2, 0, "{tok} at temperature {t}");
            }
        }
        // Greedy: the best even id (logit 6 at ids 6, 20, 34, ...; 6 first).
        let mut s =
            Sampler::constrained(&params(0.0, 1.0, 0, 1), Some(Box::new(Evens(seen.clone()))));
        assert_eq!(s.next(&logits).token, 6);
        assert_eq!(seen.lock().unwrap().len(), 151);
        // Nothing allowed: no token, nothing accepted.
        let mut s =
            Sampler::constrained(&params(0.7, 1.0, 0, 1), Some(Box::new(Evens(seen.clone()))));
        let odd_only = [f32::NEG_INFINITY, 2.0, f32::NEG_INFINITY];
        assert_eq!(s.next(&odd_only).token, NO_TOKEN);
        assert_eq!(seen.lock().unwrap().len(), 151);
    }

    #[test]
    fn logprobs_are_the_raw_log_softmax() {
        // ln(3), 0, -inf: p = 0.75, 0.25, 0.
        let logits = [3.0f32.ln(), 0.0, f32::NEG_INFINITY];
        let mut p = params(0.0, 1.0, 0, 1);
        p.logprobs = Some(2);
        let s = Sampler::new(&p).next(&logits);
        assert_eq!(s.token, 0);
        let lp = s.logprobs.unwrap();
        assert!((lp.logprob - 0.75f32.ln()).abs() < 1e-6, "{lp:?}");
        assert_eq!(lp.top.len(), 2);
        assert_eq!(lp.top[0].0, 0);
        assert_eq!(lp.top[1].0, 1);
        assert!((lp.top[1].1 - 0.25f32.ln()).abs() < 1e-6);
        // Temperature does not change them.
        p.temperature = 2.0;
        p.logprobs = Some(0);
        let s = Sampler::new(&p).next(&logits);
        let lp = s.logprobs.unwrap();
        assert!(lp.top.is_empty());
        let want = if s.token == 0 {
            0.75f32.ln()
        } else {
            0.25f32.ln()
        };
        assert!((lp.logprob - want).abs() < 1e-6);
        // Not asked for: none.
        assert!(Sampler::new(&params(0.0, 1.0, 0, 1))
            .next(&logits)
            .logprobs
            .is_none());
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
