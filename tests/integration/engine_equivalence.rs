//! The engine's correctness test: N layer-range stages chained in one process
//! (rank-local GGUFs cut by `skulk::gguf::slice_layers`) produce, for a fixed
//! prompt and greedy sampling, exactly the whole model's 64 tokens. Also the
//! engine's load-time errors and KV-cache operations on the real models.
//!
//! Models: `$SKULK_TEST_MODELS` (default `~/.cache/skulk/test-models`),
//! fetched by `scripts/fetch-test-models`. When one is absent the test is
//! skipped, except under CI, where it fails (`prereq`).

#![cfg(feature = "engine")]

use std::path::Path;
use std::sync::Arc;

use skulk::engine::{
    load, BatchOutput, ChatMessage, EngineError, EngineOptions, Sampler, SamplingParams, SeqSpan,
    Stage, StageInput, StageOutput, Tokenizer,
};
use skulk::gguf::slice_layers;

use crate::models::{model, GEMMA3, GEMMA3_LAYERS, SMOLLM2, SMOLLM2_LAYERS};
use crate::serial;

/// Tokens generated per configuration (each step after the prompt reads the
/// KV cache every rank wrote, so a cache bug shows in the tokens).
const N_GENERATE: usize = 64;

/// One compute thread per stage: the test harness runs tests in parallel, and
/// ggml's worker threads spin at barriers, so more threads than cores slows
/// every test down several times. Results do not depend on the thread count
/// (the baseline and the splits use the same one anyway).
/// `SKULK_TEST_GPU_LAYERS` (a `cuda`/`metal`/`vulkan` build) offloads that
/// many layers of every stage, the baseline's too.
fn opts(n_batch: u32) -> EngineOptions {
    EngineOptions {
        threads: 1,
        gpu_layers: std::env::var("SKULK_TEST_GPU_LAYERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        n_ctx: 512,
        n_seq_max: 1,
        n_batch,
    }
}

/// Cuts `model` at the given layer counts into `dir` and loads the stages.
fn stages(
    model: &Path,
    total: u32,
    counts: &[u32],
    dir: &Path,
    opts: &EngineOptions,
) -> (Vec<Box<dyn Stage>>, Arc<dyn Tokenizer>) {
    assert_eq!(counts.iter().sum::<u32>(), total, "split {counts:?}");
    let mut out = Vec::new();
    let mut tokenizer = None;
    let mut start = 0;
    for &n in counts {
        let end = start + n;
        let path = if counts.len() == 1 {
            model.to_path_buf()
        } else {
            let p = dir.join(format!("{start}-{end}.gguf"));
            if !p.exists() {
                slice_layers(model, &p, start, end).unwrap_or_else(|e| panic!("{e}"));
            }
            p
        };
        let (stage, tok) = load(&path, start..end, total, opts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stage.is_first(), start == 0);
        assert_eq!(stage.is_last(), end == total);
        out.push(stage);
        tokenizer.get_or_insert(tok);
        start = end;
    }
    (out, tokenizer.unwrap())
}

/// Runs `input` at `pos` through every stage in order; the last one's logits.
fn chain(stages: &mut [Box<dyn Stage>], input: &[i32], pos: u32) -> Vec<f32> {
    let n_stages = stages.len();
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
            StageOutput::Hidden(h) => {
                assert_eq!(h.len(), input.len() * stage.n_embd());
                hidden = Some(h);
            }
            StageOutput::Logits(l) => {
                assert_eq!(i, n_stages - 1, "only the last stage gives logits");
                assert_eq!(l.len(), stage.n_vocab());
                return l;
            }
        }
    }
    panic!("the last stage returned hidden rows")
}

/// Greedy generation of `n` tokens after `prompt`, starting at position `pos`.
fn generate(stages: &mut [Box<dyn Stage>], prompt: &[i32], pos: u32, n: usize) -> Vec<i32> {
    let mut sampler = Sampler::new(&SamplingParams {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
        ..SamplingParams::default()
    });
    let mut out = Vec::with_capacity(n);
    let mut pos = pos;
    let mut input = prompt.to_vec();
    while out.len() < n {
        let logits = chain(stages, &input, pos);
        let t = sampler.sample(&logits);
        pos += input.len() as u32;
        out.push(t);
        input = vec![t];
    }
    out
}

/// Runs one batch (the spans' tokens in span order) through every stage;
/// the logits of the spans that ask for them.
fn chain_batch(stages: &mut [Box<dyn Stage>], spans: &[SeqSpan], tokens: &[i32]) -> Vec<Vec<f32>> {
    let mut hidden: Option<Vec<f32>> = None;
    for (i, stage) in stages.iter_mut().enumerate() {
        let inp = match &hidden {
            None => StageInput::Tokens(tokens),
            Some(h) => StageInput::Hidden {
                data: h,
                n_tokens: tokens.len(),
            },
        };
        match stage
            .forward_batch(spans, inp)
            .unwrap_or_else(|e| panic!("stage {i}: {e}"))
        {
            BatchOutput::Hidden(h) => hidden = Some(h),
            BatchOutput::Logits(l) => {
                assert_eq!(l.len(), spans.iter().filter(|s| s.logits).count());
                return l;
            }
        }
    }
    panic!("the last stage returned hidden rows")
}

/// Greedy generation for several prompts at once, one sequence each, the
/// way rank 0 schedules them: the first half starts at once, the others
/// join one per step (their prompts in the same batches as the others'
/// decoding tokens, in chunks of at most 7 tokens); sequence `i` stops after
/// `n - 3 * i` tokens, so batches shrink too. Returns each sequence's tokens.
fn generate_batched(
    stages: &mut [Box<dyn Stage>],
    prompts: &[Vec<i32>],
    n: usize,
) -> Vec<Vec<i32>> {
    struct Seq {
        tokens: Vec<i32>,
        fed: usize,
        out: Vec<i32>,
        want: usize,
    }
    let mut seqs: Vec<Seq> = Vec::new();
    let mut greedy = Sampler::new(&SamplingParams {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
        ..SamplingParams::default()
    });
    let mut next = 0;
    loop {
        let joining = if next == 0 { prompts.len() / 2 } else { 1 };
        for _ in 0..joining {
            if next < prompts.len() {
                seqs.push(Seq {
                    tokens: prompts[next].clone(),
                    fed: 0,
                    out: Vec::new(),
                    want: n - 3 * next,
                });
                next += 1;
            }
        }
        let mut spans = Vec::new();
        let mut tokens = Vec::new();
        for (i, s) in seqs.iter().enumerate() {
            if s.out.len() >= s.want {
                continue;
            }
            let k = (s.tokens.len() - s.fed).min(if s.fed == 0 { 7 } else { usize::MAX });
            spans.push(SeqSpan {
                seq: i as u32,
                pos0: s.fed as u32,
                n_tokens: k as u32,
                logits: s.fed + k == s.tokens.len(),
            });
            tokens.extend_from_slice(&s.tokens[s.fed..s.fed + k]);
        }
        if spans.is_empty() {
            break;
        }
        let logits = chain_batch(stages, &spans, &tokens);
        let mut rows = logits.into_iter();
        for span in &spans {
            let s = &mut seqs[span.seq as usize];
            s.fed += span.n_tokens as usize;
            if span.logits {
                let t = greedy.sample(&rows.next().unwrap());
                s.out.push(t);
                s.tokens.push(t);
            }
        }
    }
    seqs.into_iter().map(|s| s.out).collect()
}

fn prompt(tok: &dyn Tokenizer) -> Vec<i32> {
    let text = tok
        .apply_chat_template(
            &[ChatMessage {
                role: "user".into(),
                content: "Write a short poem about foxes in the snow.".into(),
            }],
            true,
        )
        .unwrap();
    tok.tokenize(&text, true).unwrap()
}

/// Every split's tokens equal the whole model's.
fn check_splits(name: &str, total: u32, splits: &[&[u32]]) {
    let Some(model) = model(name) else { return };
    let dir = tempfile::tempdir().unwrap();
    let o = opts(512);
    let (mut whole, tok) = stages(&model, total, &[total], dir.path(), &o);
    let prompt = prompt(tok.as_ref());
    let expected = generate(&mut whole, &prompt, 0, N_GENERATE);
    drop(whole);
    let text: Vec<u8> = expected
        .iter()
        .flat_map(|&t| tok.token_to_piece(t))
        .collect();
    eprintln!("{name}: whole model: {:?}", String::from_utf8_lossy(&text));
    for &split in splits {
        let (mut s, _) = stages(&model, total, split, dir.path(), &o);
        let got = generate(&mut s, &prompt, 0, N_GENERATE);
        assert_eq!(
            got, expected,
            "{name}: split {split:?} differs from the whole model"
        );
        eprintln!("{name}: split {split:?}: identical");
    }
}

/// Greedy text of the whole model and of a two-stage split for `prompt`
/// (already templated where needed), `n` tokens.
fn greedy_text(name: &str, total: u32, prompt: &str, n: usize) -> Option<String> {
    let model = model(name)?;
    let dir = tempfile::tempdir().unwrap();
    let o = opts(512);
    let half = total / 2;
    let mut texts = Vec::new();
    for split in [&[total][..], &[half, total - half][..]] {
        let (mut s, tok) = stages(&model, total, split, dir.path(), &o);
        let ids = tok.tokenize(prompt, true).unwrap();
        let out = generate(&mut s, &ids, 0, n);
        let bytes: Vec<u8> = out.iter().flat_map(|&t| tok.token_to_piece(t)).collect();
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    assert_eq!(
        texts[0],
        texts[1],
        "{name}: split {half}/{} differs",
        total - half
    );
    eprintln!("{name}: {prompt:?} -> {:?}", texts[0]);
    texts.pop()
}

/// The engine as a whole (not only its splits) gives the text these models
/// are known to give: a fact from the instruct model, a name from the
/// pre-trained Gemma 3 270M (the PyPI GGUF is the base model, so it
/// continues text; under a chat template it only echoes the turn back).
#[test]
fn whole_models_write_sensible_text() {
    let _shared = serial::shared();
    let smol_prompt =
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    if let Some(text) = greedy_text(SMOLLM2, SMOLLM2_LAYERS, smol_prompt, 12) {
        assert!(text.contains("Paris"), "SmolLM2 answered {text:?}");
    }
    let gemma_prompt = "Once upon a time, there was a little girl named";
    if let Some(text) = greedy_text(GEMMA3, GEMMA3_LAYERS, gemma_prompt, 8) {
        assert!(text.starts_with(" Lily"), "Gemma 3 continued with {text:?}");
    }
}

#[test]
fn smollm2_stages_give_the_whole_models_tokens() {
    let _shared = serial::shared();
    check_splits(
        SMOLLM2,
        SMOLLM2_LAYERS,
        &[&[1, 29], &[15, 15], &[29, 1], &[7, 11, 12], &[8, 7, 8, 7]],
    );
}

/// Several sequences in every batch, joining and leaving at different steps,
/// prompts mixed with decoding tokens: each split gives the whole model's
/// tokens for every sequence (the same batches through the same layers give
/// the same numbers, whatever the ranks).
fn check_batched_splits(name: &str, total: u32, splits: &[&[u32]]) {
    let Some(model) = model(name) else { return };
    let dir = tempfile::tempdir().unwrap();
    let o = EngineOptions {
        n_seq_max: 6,
        n_ctx: 1024,
        ..opts(512)
    };
    let (mut whole, tok) = stages(&model, total, &[total], dir.path(), &o);
    let questions = [
        "Write a short poem about foxes in the snow.",
        "What is the capital of France?",
        "Explain photosynthesis to a child.",
        "List three uses of a paperclip.",
        "Why is the sky blue?",
        "Tell me a joke about computers.",
    ];
    let prompts: Vec<Vec<i32>> = questions
        .iter()
        .map(|q| {
            let text = tok
                .apply_chat_template(
                    &[ChatMessage {
                        role: "user".into(),
                        content: q.to_string(),
                    }],
                    true,
                )
                .unwrap();
            tok.tokenize(&text, true).unwrap()
        })
        .collect();
    let expected = generate_batched(&mut whole, &prompts, 32);
    drop(whole);
    for &split in splits {
        let (mut s, _) = stages(&model, total, split, dir.path(), &o);
        let got = generate_batched(&mut s, &prompts, 32);
        assert_eq!(got, expected, "{name}: split {split:?} differs in a batch");
        eprintln!("{name}: batched split {split:?}: identical");
    }
}

#[test]
fn smollm2_stages_give_the_whole_models_tokens_for_batches_of_sequences() {
    let _shared = serial::shared();
    check_batched_splits(SMOLLM2, SMOLLM2_LAYERS, &[&[15, 15], &[7, 11, 12]]);
}

#[test]
fn gemma3_stages_give_the_whole_models_tokens_for_batches_of_sequences() {
    let _shared = serial::shared();
    check_batched_splits(GEMMA3, GEMMA3_LAYERS, &[&[9, 9]]);
}

#[test]
fn gemma3_stages_give_the_whole_models_tokens() {
    let _shared = serial::shared();
    // 9/9: the second rank starts off Gemma 3's sliding-window period (6),
    // so it needs the per-layer pattern; 5/13: the first rank holds only
    // sliding-window layers (no global-attention KV cache at all).
    check_splits(GEMMA3, GEMMA3_LAYERS, &[&[9, 9], &[5, 13]]);
}

#[test]
fn prompts_longer_than_a_batch_are_cut_at_the_same_places_on_every_rank() {
    let _shared = serial::shared();
    let Some(model) = model(SMOLLM2) else { return };
    let dir = tempfile::tempdir().unwrap();
    // 5 tokens per decode: the prompt runs as several ubatches.
    let o = opts(5);
    let (mut whole, tok) = stages(&model, SMOLLM2_LAYERS, &[SMOLLM2_LAYERS], dir.path(), &o);
    let prompt = prompt(tok.as_ref());
    assert!(prompt.len() > 10);
    let expected = generate(&mut whole, &prompt, 0, 16);
    let (mut split, _) = stages(&model, SMOLLM2_LAYERS, &[10, 20], dir.path(), &o);
    assert_eq!(generate(&mut split, &prompt, 0, 16), expected);
}

#[test]
fn truncating_the_kv_cache_replays_the_same_tokens() {
    let _shared = serial::shared();
    let Some(model) = model(SMOLLM2) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (mut s, tok) = stages(&model, SMOLLM2_LAYERS, &[12, 18], dir.path(), &opts(512));
    let prompt = prompt(tok.as_ref());
    let first = generate(&mut s, &prompt, 0, 8);

    // Keep the prompt, drop the generated tokens, generate again.
    let keep = prompt.len() as u32 - 1;
    for st in s.iter_mut() {
        st.truncate_kv(keep).unwrap();
    }
    let again = generate(&mut s, &prompt[keep as usize..], keep, 8);
    assert_eq!(again, first);

    // A position that does not follow the cache is refused with a hint.
    let err = s[0]
        .forward(StageInput::Tokens(&prompt[..1]), 3)
        .unwrap_err();
    assert!(matches!(err, EngineError::Input { .. }), "{err}");
    assert!(err.to_string().contains("truncate the KV cache"), "{err}");

    // Clearing starts over.
    for st in s.iter_mut() {
        st.truncate_kv(0).unwrap();
    }
    assert_eq!(generate(&mut s, &prompt, 0, 8), first);
}

#[test]
fn stage_inputs_are_checked() {
    let _shared = serial::shared();
    let Some(model) = model(SMOLLM2) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = stages(&model, SMOLLM2_LAYERS, &[15, 15], dir.path(), &opts(512));
    let n_embd = s[1].n_embd();
    assert_eq!(n_embd, 576);
    assert_eq!(s[1].n_vocab(), 49152);
    assert_eq!(s[1].n_ctx(), 512);

    let e = s[1].forward(StageInput::Tokens(&[1, 2]), 0).unwrap_err();
    assert!(e.to_string().contains("does not hold layer 0"), "{e}");
    let e = s[0]
        .forward(
            StageInput::Hidden {
                data: &vec![0.0; n_embd],
                n_tokens: 1,
            },
            0,
        )
        .unwrap_err();
    assert!(e.to_string().contains("first rank"), "{e}");
    let e = s[1]
        .forward(
            StageInput::Hidden {
                data: &[0.0; 10],
                n_tokens: 1,
            },
            0,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("`10` values for `1` rows of `576`"),
        "{e}"
    );
    let e = s[0].forward(StageInput::Tokens(&[49152]), 0).unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
    let e = s[0].forward(StageInput::Tokens(&[1; 20]), 500).unwrap_err();
    assert!(matches!(e, EngineError::ContextFull { .. }), "{e}");
    // The stage still works after refused inputs.
    assert!(matches!(
        s[0].forward(StageInput::Tokens(&[1, 2, 3]), 0).unwrap(),
        StageOutput::Hidden(h) if h.len() == 3 * n_embd
    ));
}

#[test]
fn batch_inputs_are_checked_and_sequences_are_separate() {
    let _shared = serial::shared();
    let Some(model) = model(SMOLLM2) else { return };
    let dir = tempfile::tempdir().unwrap();
    let o = EngineOptions {
        n_seq_max: 2,
        ..opts(512)
    };
    let (mut s, _) = stages(&model, SMOLLM2_LAYERS, &[30], dir.path(), &o);
    let st = &mut s[0];
    assert_eq!(st.n_seq_max(), 2);
    let span = |seq, pos0, n_tokens| SeqSpan {
        seq,
        pos0,
        n_tokens,
        logits: true,
    };
    let e = st
        .forward_batch(&[span(2, 0, 1)], StageInput::Tokens(&[1]))
        .unwrap_err();
    assert!(
        e.to_string().contains("outside the cache's `2` sequences"),
        "{e}"
    );
    let e = st
        .forward_batch(&[span(0, 0, 1), span(0, 1, 1)], StageInput::Tokens(&[1, 2]))
        .unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");
    let e = st
        .forward_batch(&[span(0, 0, 2)], StageInput::Tokens(&[1]))
        .unwrap_err();
    assert!(e.to_string().contains("`1` tokens for spans of `2`"), "{e}");
    // Two sequences in one batch; dropping one leaves the other in place.
    let out = st
        .forward_batch(
            &[span(0, 0, 3), span(1, 0, 2)],
            StageInput::Tokens(&[1, 2, 3, 4, 5]),
        )
        .unwrap();
    assert!(matches!(out, BatchOutput::Logits(l) if l.len() == 2));
    st.truncate_seq(1, 0).unwrap();
    let out = st
        .forward_batch(&[span(0, 3, 1), span(1, 0, 1)], StageInput::Tokens(&[6, 7]))
        .unwrap();
    assert!(matches!(out, BatchOutput::Logits(l) if l.len() == 2));
    let e = st
        .forward_batch(&[span(1, 5, 1)], StageInput::Tokens(&[1]))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("sequence `1` starts at position `5`"),
        "{e}"
    );
}

#[test]
fn tokenizer_renders_templates_and_round_trips_text() {
    let _shared = serial::shared();
    let Some(smol) = model(SMOLLM2) else { return };
    let dir = tempfile::tempdir().unwrap();
    // The tokenizer of a non-first rank-local cut works like the whole model's.
    let (_, tok) = stages(&smol, SMOLLM2_LAYERS, &[10, 20], dir.path(), &opts(512));
    let msgs = [
        ChatMessage {
            role: "system".into(),
            content: "Be brief.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        },
    ];
    let text = tok.apply_chat_template(&msgs, true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = tok.tokenize(&text, true).unwrap();
    // Special tokens written in the text are parsed as such.
    let im_end = tok.tokenize("<|im_end|>", false).unwrap();
    assert_eq!(im_end.len(), 1);
    assert!(ids.contains(&im_end[0]));
    assert!(tok.is_eog(im_end[0]));
    let words = tok.tokenize("Foxes run.", false).unwrap();
    assert!(!words.iter().any(|&t| tok.is_eog(t)));
    let back: Vec<u8> = words.iter().flat_map(|&t| tok.token_to_piece(t)).collect();
    assert_eq!(back, b"Foxes run.");
    assert!(tok.token_to_piece(-1).is_empty());
    assert!(!tok.is_eog(1 << 30));

    // Gemma 3's GGUF carries no template: the built-in `gemma` one is used.
    let Some(gemma) = model(GEMMA3) else { return };
    let (_, tok) = stages(
        &gemma,
        GEMMA3_LAYERS,
        &[GEMMA3_LAYERS],
        dir.path(),
        &opts(512),
    );
    let text = tok.apply_chat_template(&msgs[1..], true).unwrap();
    assert_eq!(
        text,
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
}

/// A GGUF v3 header with string metadata and no tensors.
fn tiny_gguf(kv: &[(&str, &str)]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        b.extend((k.len() as u64).to_le_bytes());
        b.extend(k.as_bytes());
        b.extend(8u32.to_le_bytes()); // GGUF_TYPE_STRING
        b.extend((v.len() as u64).to_le_bytes());
        b.extend(v.as_bytes());
    }
    b
}

fn load_err(path: &Path, layers: std::ops::Range<u32>, total: u32) -> EngineError {
    match load(path, layers, total, &opts(512)) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn bad_model_files_are_clear_errors_naming_the_file() {
    let _shared = serial::shared();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let e = load_err(&missing, 0..30, 30);
    assert!(matches!(e, EngineError::ModelNotFound { .. }), "{e}");
    assert!(e.to_string().contains("missing.gguf"), "{e}");

    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a gguf file at all").unwrap();
    let e = load_err(&garbage, 0..30, 30);
    assert!(matches!(e, EngineError::ModelInvalid { .. }), "{e}");
    assert!(e.to_string().contains("garbage.gguf"), "{e}");

    let gpt2 = dir.path().join("gpt2.gguf");
    std::fs::write(&gpt2, tiny_gguf(&[("general.architecture", "gpt2")])).unwrap();
    // A range of an architecture skulk does not split is refused; the whole
    // model would run (here it fails later, having no layers at all).
    let e = load_err(&gpt2, 0..6, 12);
    assert!(
        matches!(e, EngineError::UnsupportedArchitecture { .. }),
        "{e}"
    );
    assert!(
        !matches!(
            load_err(&gpt2, 0..12, 12),
            EngineError::UnsupportedArchitecture { .. }
        ),
        "a whole model of any architecture is not refused for it"
    );
    assert!(
        e.to_string().contains("`gpt2`") && e.to_string().contains("gpt2.gguf"),
        "{e}"
    );

    let e = load_err(&gpt2, 5..5, 12);
    assert!(matches!(e, EngineError::LayerRange { .. }), "{e}");

    let Some(smol) = model(SMOLLM2) else { return };
    // The whole file given for a rank's range.
    let e = load_err(&smol, 0..15, SMOLLM2_LAYERS);
    assert!(matches!(e, EngineError::LayerRange { .. }), "{e}");
    assert!(e.to_string().contains("rank-local"), "{e}");

    // A cut loaded as another range than the one it was cut for.
    let cut = dir.path().join("10-20.gguf");
    slice_layers(&smol, &cut, 10, 20).unwrap();
    let e = load_err(&cut, 0..10, SMOLLM2_LAYERS);
    assert!(matches!(e, EngineError::LayerRange { .. }), "{e}");

    // Truncated: half of a cut.
    let bytes = std::fs::read(&cut).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&truncated, 10..20, SMOLLM2_LAYERS);
    assert!(matches!(e, EngineError::ModelTruncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated.gguf"), "{e}");
}
