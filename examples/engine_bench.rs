//! Decode and prefill speed of the engine: the whole model in one stage
//! against the same model cut into 2 and 3 layer-range stages chained in one
//! process (no network: this measures what the cut itself costs).
//!
//! ```text
//! cargo run --release --example engine_bench -- [MODEL.gguf] [--threads N] [--gpu-layers N] [--prompt-tokens N] [--runs N] [--splits 30,15/15,10/10/10]
//! ```
//! Prints a table: prefill tok/s for a 512-token prompt, decode tok/s for 64
//! greedy tokens, the ratio against one stage, and decode time per stage.
//!
//! `--rss START..END` instead loads that one rank-local cut, runs the same
//! prefill and decode through it alone (zero hidden rows on non-first ranks)
//! and prints the process's peak RSS: run it once per rank.

#[cfg(feature = "engine")]
fn main() -> anyhow::Result<()> {
    bench::main()
}

#[cfg(not(feature = "engine"))]
fn main() {
    eprintln!("engine_bench needs the `engine` cargo feature");
    std::process::exit(2);
}

#[cfg(feature = "engine")]
mod bench {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context};
    use skulk::engine::{
        load, EngineOptions, Sampler, SamplingParams, Stage, StageInput, StageOutput,
    };
    use skulk::gguf::{slice_layers, GgufHeader};

    /// The benchmark sizes: a 512-token prompt, 64 decoded tokens.
    const PROMPT_TOKENS: usize = 512;
    const DECODE_TOKENS: usize = 64;

    struct Run {
        prefill: Duration,
        decode: Duration,
        per_stage: Vec<Duration>,
    }

    pub fn main() -> anyhow::Result<()> {
        let mut args = std::env::args().skip(1);
        let mut model = None;
        let mut threads = 2u32;
        let mut gpu_layers = 0u32;
        let mut prompt_tokens = PROMPT_TOKENS;
        let mut runs = 3usize;
        let mut splits: Option<String> = None;
        let mut n_batch = PROMPT_TOKENS as u32;
        let mut rss: Option<(u32, u32)> = None;
        while let Some(a) = args.next() {
            match a.as_str() {
                "--rss" => {
                    let r = args.next().context("--rss START..END")?;
                    let (s, e) = r.split_once("..").context("--rss START..END")?;
                    rss = Some((s.parse()?, e.parse()?));
                }
                "--n-batch" => n_batch = args.next().context("--n-batch N")?.parse()?,
                "--threads" => threads = args.next().context("--threads N")?.parse()?,
                "--gpu-layers" => gpu_layers = args.next().context("--gpu-layers N")?.parse()?,
                "--prompt-tokens" => {
                    prompt_tokens = args.next().context("--prompt-tokens N")?.parse()?
                }
                "--runs" => runs = args.next().context("--runs N")?.parse()?,
                "--splits" => splits = Some(args.next().context("--splits A/B,C/D/E")?),
                _ if a.starts_with("--") => bail!("unknown flag `{a}`"),
                _ => model = Some(PathBuf::from(a)),
            }
        }
        let model = model.unwrap_or_else(|| {
            let dir = std::env::var_os("SKULK_TEST_MODELS")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root/.cache/skulk/test-models"));
            dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
        });
        let total = GgufHeader::read(&model)?.block_count()? as u32;
        let splits: Vec<Vec<u32>> = match splits {
            Some(s) => s
                .split(',')
                .map(|c| {
                    c.split('/')
                        .map(str::parse)
                        .collect::<Result<Vec<u32>, _>>()
                })
                .collect::<Result<_, _>>()?,
            None => vec![
                vec![total],
                vec![total / 2, total - total / 2],
                vec![total / 3, total / 3, total - 2 * (total / 3)],
            ],
        };
        let dir = tempfile::tempdir()?;
        let opts = EngineOptions {
            threads,
            gpu_layers,
            n_ctx: (prompt_tokens + DECODE_TOKENS + 16) as u32,
            n_seq_max: 1,
            n_batch,
        };
        if let Some((start, end)) = rss {
            return rss_one_rank(&model, start, end, total, &opts, dir.path());
        }
        println!(
            "model {}, {threads} threads/stage, {gpu_layers} GPU layers/stage, n_batch {n_batch}, {runs} runs (best)",
            model.display(),
        );
        println!(
            "{:<14} {:>12} {:>11} {:>9}  decode ms/token per stage",
            "stages", "prefill t/s", "decode t/s", "vs 1"
        );
        let mut base = None;
        for split in &splits {
            if split.iter().sum::<u32>() != total {
                bail!("split {split:?} does not sum to {total} layers");
            }
            let mut stages = Vec::new();
            let mut tokenizer = None;
            let mut start = 0;
            for &n in split {
                let end = start + n;
                let path = if split.len() == 1 {
                    model.clone()
                } else {
                    let p = dir.path().join(format!("{start}-{end}.gguf"));
                    if !p.exists() {
                        slice_layers(&model, &p, start, end)?;
                    }
                    p
                };
                let (s, t) = load(&path, start..end, total, &opts)?;
                stages.push(s);
                tokenizer.get_or_insert(t);
                start = end;
            }
            let tok = tokenizer.expect("at least one stage");
            let text =
                "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(64);
            let mut prompt = tok.tokenize(&text, true)?;
            prompt.truncate(prompt_tokens.max(1));
            let mut best: Option<Run> = None;
            for _ in 0..runs {
                let r = run(&mut stages, &prompt)?;
                best = Some(match best {
                    Some(b) if b.decode <= r.decode => Run {
                        prefill: b.prefill.min(r.prefill),
                        ..b
                    },
                    Some(b) => Run {
                        prefill: b.prefill.min(r.prefill),
                        ..r
                    },
                    None => r,
                });
            }
            let b = best.expect("runs >= 1");
            let prefill = prompt.len() as f64 / b.prefill.as_secs_f64();
            let decode = DECODE_TOKENS as f64 / b.decode.as_secs_f64();
            let base_decode = *base.get_or_insert(decode);
            let per_stage: Vec<String> = b
                .per_stage
                .iter()
                .map(|d| format!("{:.2}", d.as_secs_f64() * 1e3 / DECODE_TOKENS as f64))
                .collect();
            let label = split
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("/");
            println!(
                "{label:<14} {prefill:>12.1} {decode:>11.1} {:>9.2}  {}",
                decode / base_decode,
                per_stage.join(" + ")
            );
        }
        Ok(())
    }

    /// `(VmHWM, VmRSS)` of this process in MiB.
    fn rss_mib() -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let field = |name: &str| -> anyhow::Result<f64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/self/status"))?;
            let kib: f64 = line
                .split_whitespace()
                .nth(1)
                .context("malformed line")?
                .parse()?;
            Ok(kib / 1024.0)
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }

    fn rss_one_rank(
        model: &std::path::Path,
        start: u32,
        end: u32,
        total: u32,
        opts: &EngineOptions,
        dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        let path = if (start, end) == (0, total) {
            model.to_path_buf()
        } else {
            let p = dir.join("cut.gguf");
            slice_layers(model, &p, start, end)?;
            p
        };
        let cut_bytes = std::fs::metadata(&path)?.len();
        let (before, _) = rss_mib()?;
        let (mut stage, tok) = load(&path, start..end, total, opts)?;
        let (loaded, _) = rss_mib()?;
        let text = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(64);
        let mut prompt = tok.tokenize(&text, true)?;
        prompt.truncate(PROMPT_TOKENS);
        let n_embd = stage.n_embd();
        let mut step = |input: &[i32], pos: u32| -> anyhow::Result<()> {
            if stage.is_first() {
                stage.forward(StageInput::Tokens(input), pos)?;
            } else {
                let zeros = vec![0.0f32; input.len() * n_embd];
                stage.forward(
                    StageInput::Hidden {
                        data: &zeros,
                        n_tokens: input.len(),
                    },
                    pos,
                )?;
            }
            Ok(())
        };
        step(&prompt, 0)?;
        for i in 0..DECODE_TOKENS {
            step(&prompt[i..i + 1], (prompt.len() + i) as u32)?;
        }
        let (peak, now) = rss_mib()?;
        println!(
            "rank {start}..{end} of {total}: file {:.1} MiB; RSS before load {before:.1}, after load {loaded:.1}, peak {peak:.1}, end {now:.1} MiB (n_batch {})",
            cut_bytes as f64 / (1 << 20) as f64,
            opts.n_batch
        );
        Ok(())
    }

    /// One prefill of `prompt` and 64 greedy decode steps from an empty cache.
    fn run(stages: &mut [Box<dyn Stage>], prompt: &[i32]) -> anyhow::Result<Run> {
        for s in stages.iter_mut() {
            s.truncate_kv(0)?;
        }
        let mut per_stage = vec![Duration::ZERO; stages.len()];
        let mut sampler = Sampler::new(&SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            ..SamplingParams::default()
        });
        let t0 = Instant::now();
        let logits = chain(stages, prompt, 0, None)?;
        let prefill = t0.elapsed();
        let mut token = sampler.sample(&logits);
        let t1 = Instant::now();
        for pos in prompt.len()..prompt.len() + DECODE_TOKENS {
            let logits = chain(stages, &[token], pos as u32, Some(&mut per_stage))?;
            token = sampler.sample(&logits);
        }
        Ok(Run {
            prefill,
            decode: t1.elapsed(),
            per_stage,
        })
    }

    fn chain(
        stages: &mut [Box<dyn Stage>],
        input: &[i32],
        pos: u32,
        mut per_stage: Option<&mut Vec<Duration>>,
    ) -> anyhow::Result<Vec<f32>> {
        let mut hidden: Option<Vec<f32>> = None;
        for (i, stage) in stages.iter_mut().enumerate() {
            let t = Instant::now();
            let out = match &hidden {
                None => stage.forward(StageInput::Tokens(input), pos)?,
                Some(h) => stage.forward(
                    StageInput::Hidden {
                        data: h,
                        n_tokens: input.len(),
                    },
                    pos,
                )?,
            };
            if let Some(p) = per_stage.as_deref_mut() {
                p[i] += t.elapsed();
            }
            match out {
                StageOutput::Hidden(h) => hidden = Some(h),
                StageOutput::Logits(l) => return Ok(l),
            }
        }
        bail!("the last stage returned hidden rows")
    }
}
