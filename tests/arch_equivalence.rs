//! Split equivalence for every architecture skulk allows: a synthetic
//! random-weight model of the architecture (`skulk::synth`, generated here,
//! with SmolLM2's tokenizer) runs whole and cut into 2, 3 and 4 layer-range
//! stages (every two-rank boundary, even and uneven three- and four-rank
//! splits), and every split gives the whole model's greedy tokens and, for
//! the last prompt token, bitwise the same logits.
//!
//! The stages run chained in this process (as in `engine_equivalence.rs`):
//! a ring passes each stage's f32 rows on unchanged, so this is what the
//! ranks of a ring compute, at a fraction of the cost of starting processes
//! (`ring_engine.rs` and `run_shard_processes.rs` cover the ring itself).
//!
//! The tokenizer comes from `$SKULK_TEST_MODELS` (default
//! `/root/.cache/skulk/test-models`); when it is absent the tests say so
//! and pass, except under CI (`CI=true`), where they fail.

#![cfg(feature = "engine")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use skulk::engine::{
    load, ChatMessage, EngineError, EngineOptions, Sampler, SamplingParams, Stage, StageInput,
    StageOutput, Tokenizer, SUPPORTED_ARCHITECTURES,
};
use skulk::gguf::slice_layers;
use skulk::synth::{write_model, SynthSpec, SYNTH_ARCHITECTURES};

mod models;
use models::{model, SMOLLM2};

/// Greedy tokens compared per split (the issue asks for at least 32).
const N_GENERATE: usize = 32;

/// One compute thread per stage (tests run in parallel on few cores; the
/// result does not depend on it).
fn opts() -> EngineOptions {
    EngineOptions {
        threads: 1,
        gpu_layers: std::env::var("SKULK_TEST_GPU_LAYERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        n_ctx: 256,
        n_batch: 512,
    }
}

/// Writes the synthetic model `spec` into `dir`; `None` when the tokenizer
/// source is absent (outside CI).
fn synth(spec: &SynthSpec, dir: &Path) -> Option<PathBuf> {
    let tokenizer = model(SMOLLM2)?;
    let path = dir.join(format!("{}-{}.gguf", spec.arch, spec.n_layer));
    write_model(spec, &tokenizer, &path).unwrap_or_else(|e| panic!("{}: {e}", spec.arch));
    Some(path)
}

/// Cuts `model` at `counts` (cached in `dir`) and loads the stages.
fn stages(
    model: &Path,
    total: u32,
    counts: &[u32],
    dir: &Path,
) -> Result<(Vec<Box<dyn Stage>>, Arc<dyn Tokenizer>), String> {
    assert_eq!(counts.iter().sum::<u32>(), total, "split {counts:?}");
    let mut out = Vec::new();
    let mut tokenizer = None;
    let mut start = 0;
    for &n in counts {
        let end = start + n;
        let path = if counts.len() == 1 {
            model.to_path_buf()
        } else {
            let p = dir.join(format!("cut-{start}-{end}.gguf"));
            if !p.exists() {
                slice_layers(model, &p, start, end).map_err(|e| e.to_string())?;
            }
            p
        };
        let (stage, tok) = load(&path, start..end, total, &opts()).map_err(|e| e.to_string())?;
        out.push(stage);
        tokenizer.get_or_insert(tok);
        start = end;
    }
    Ok((out, tokenizer.expect("at least one stage")))
}

/// Runs `input` at `pos` through the stages; the last one's logits.
fn chain(stages: &mut [Box<dyn Stage>], input: &[i32], pos: u32) -> Vec<f32> {
    let mut hidden: Option<Vec<f32>> = None;
    for (i, stage) in stages.iter_mut().enumerate() {
        let inp = match &hidden {
            None => StageInput::Tokens(input),
            Some(h) => StageInput::Hidden {
                data: h,
                n_tokens: input.len(),
            },
        };
        match stage
            .forward(inp, pos)
            .unwrap_or_else(|e| panic!("stage {i}: {e}"))
        {
            StageOutput::Hidden(h) => hidden = Some(h),
            StageOutput::Logits(l) => return l,
        }
    }
    panic!("the last stage returned hidden rows")
}

/// The logits of the prompt's last token and the greedy tokens after it.
struct Run {
    logits: Vec<f32>,
    tokens: Vec<i32>,
}

fn generate(stages: &mut [Box<dyn Stage>], prompt: &[i32]) -> Run {
    let mut sampler = Sampler::new(&SamplingParams {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
    });
    let first = chain(stages, prompt, 0);
    let mut tokens = vec![sampler.sample(&first)];
    let mut pos = prompt.len() as u32;
    while tokens.len() < N_GENERATE {
        let logits = chain(stages, &tokens[tokens.len() - 1..], pos);
        pos += 1;
        tokens.push(sampler.sample(&logits));
    }
    Run {
        logits: first,
        tokens,
    }
}

fn prompt(tok: &dyn Tokenizer) -> Vec<i32> {
    let text = tok
        .apply_chat_template(
            &[ChatMessage {
                role: "user".into(),
                content: "Write a short poem about foxes in the snow, and say why they are red."
                    .into(),
            }],
            true,
        )
        .unwrap();
    tok.tokenize(&text, true).unwrap()
}

/// Splits of `total` layers into 2, 3 and 4 stages: every two-stage
/// boundary, plus even and uneven three- and four-stage splits.
fn default_splits(total: u32) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = (1..total).map(|b| vec![b, total - b]).collect();
    if total >= 3 {
        let third = total / 3;
        out.push(vec![third, third, total - 2 * third]);
        out.push(vec![1, total - 2, 1]);
    }
    if total >= 4 {
        let q = total / 4;
        out.push(vec![q, q, q, total - 3 * q]);
        out.push(vec![1, 2, total - 4, 1]);
    }
    out.retain(|s| s.iter().all(|&n| n > 0));
    out
}

/// How a split's logits must match the whole model's.
#[derive(Clone, Copy, Debug)]
enum Match {
    Bitwise,
    /// Largest difference over the logits, relative to the largest logit
    /// magnitude (for cuts whose fix is not bitwise, see
    /// `docs/architectures.md`).
    Relative(f32),
}

/// Runs the whole model, then every split, and compares.
fn check_splits(arch: &str, spec: &SynthSpec, splits: &[Vec<u32>], want: Match) {
    assert!(
        SUPPORTED_ARCHITECTURES.contains(&arch),
        "{arch} is tested but not allowed"
    );
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = synth(spec, dir.path()) else {
        return;
    };
    let total = spec.n_layer;
    let (mut whole, tok) = stages(&path, total, &[total], dir.path()).unwrap();
    let prompt = prompt(tok.as_ref());
    let expected = generate(&mut whole, &prompt);
    drop(whole);
    assert!(
        expected.logits.iter().all(|x| x.is_finite()),
        "{arch}: the whole model's logits are not finite"
    );
    let text: Vec<u8> = expected
        .tokens
        .iter()
        .flat_map(|&t| tok.token_to_piece(t))
        .collect();
    eprintln!(
        "{arch}: whole model ({total} layers): {:?}",
        String::from_utf8_lossy(&text)
    );
    for split in splits {
        let (mut s, _) =
            stages(&path, total, split, dir.path()).unwrap_or_else(|e| panic!("{arch} {split:?}: {e}"));
        let got = generate(&mut s, &prompt);
        match want {
            Match::Bitwise => {
                let same = got
                    .logits
                    .iter()
                    .zip(&expected.logits)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{arch}: split {split:?}: the last prompt token's logits differ from the whole model's (max difference {})",
                    max_diff(&got.logits, &expected.logits)
                );
            }
            Match::Relative(bound) => {
                let scale = expected.logits.iter().fold(0f32, |m, x| m.max(x.abs()));
                let diff = max_diff(&got.logits, &expected.logits);
                assert!(
                    diff <= bound * scale,
                    "{arch}: split {split:?}: logits differ by {diff}, more than {bound} of {scale}"
                );
            }
        }
        assert_eq!(
            got.tokens, expected.tokens,
            "{arch}: split {split:?}: greedy tokens differ from the whole model's"
        );
    }
    eprintln!("{arch}: {} splits identical", splits.len());
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn tiny(arch: &str) -> SynthSpec {
    SynthSpec::tiny(arch).unwrap()
}

fn check_default(arch: &str) {
    let spec = tiny(arch);
    check_splits(arch, &spec, &default_splits(spec.n_layer), Match::Bitwise);
}

#[test]
fn every_generated_model_loads_and_generates_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    for arch in SYNTH_ARCHITECTURES {
        let spec = tiny(arch);
        let Some(path) = synth(&spec, dir.path()) else {
            return;
        };
        let total = spec.n_layer;
        let (mut whole, tok) =
            stages(&path, total, &[total], dir.path()).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let run = generate(&mut whole, &prompt(tok.as_ref()));
        assert!(
            run.logits.iter().all(|x| x.is_finite()),
            "{arch}: logits are not finite"
        );
        eprintln!("{arch}: generated {:?}", &run.tokens[..8]);
    }
}

#[test]
fn llama() {
    check_default("llama");
}

#[test]
fn mistral3() {
    check_default("mistral3");
}

#[test]
fn qwen2() {
    check_default("qwen2");
}

#[test]
fn qwen3() {
    check_default("qwen3");
}

#[test]
fn gemma2() {
    check_default("gemma2");
}

#[test]
fn gemma3() {
    check_default("gemma3");
}

#[test]
fn phi3() {
    check_default("phi3");
}

#[test]
fn olmo2() {
    check_default("olmo2");
}

#[test]
fn cohere2() {
    check_default("cohere2");
}

#[test]
fn exaone4() {
    check_default("exaone4");
}

#[test]
fn granite() {
    check_default("granite");
}

#[test]
fn qwen3moe() {
    check_default("qwen3moe");
}

#[test]
fn gpt_oss() {
    check_default("gpt-oss");
}

#[test]
fn deepseek2() {
    check_default("deepseek2");
}

#[test]
fn glm4moe() {
    check_default("glm4moe");
}

#[test]
fn minimax_m2() {
    check_default("minimax-m2");
}

#[test]
fn llama4() {
    check_default("llama4");
}

#[test]
fn qwen3next() {
    check_default("qwen3next");
}

#[test]
fn qwen35moe() {
    check_default("qwen35moe");
}

#[test]
fn nemotron_h() {
    check_default("nemotron_h");
}

#[test]
fn lfm2() {
    check_default("lfm2");
}

#[test]
fn granitehybrid() {
    check_default("granitehybrid");
}

#[allow(dead_code)]
fn unused(_: EngineError) {}
