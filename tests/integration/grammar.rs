//! The grammars skulk builds, run through llama.cpp's own grammar engine over
//! SmolLM2's real vocabulary with random logits: whatever a sampler picks
//! under the mask, the text is JSON that validates against the schema the
//! grammar came from, and a forced tool call parses back into a call whose
//! arguments validate. Random logits explore far more of a grammar than a
//! model does, so a hole in a grammar shows here first.

#![cfg(feature = "engine")]

use std::sync::Arc;

use serde_json::{json, Value};
use skulk::api::parse::{Delta, OutputParser, ParserSpec, ToolSyntax};
use skulk::api::profile::ToolDialect;
use skulk::api::schema::{schema_grammar, Grammar};
use skulk::api::tools::{CallGrammar, Tool};
use skulk::engine::{EngineOptions, GrammarSpec, Sampler, SamplingParams, Tokenizer, NO_TOKEN};

use crate::models;

/// Tokens per sample before giving up on it (random text can wander).
const MAX_TOKENS: usize = 120;

/// Samples per grammar: each token of a random sample makes the grammar
/// look at the whole vocabulary (a model's peaked distribution rarely
/// does), so this is the test's cost.
const SAMPLES: u64 = 4;

/// SmolLM2's vocabulary size (its GGUF's `llama.vocab_size`).
const N_VOCAB: i32 = 49152;

fn tokenizer() -> Option<Arc<dyn Tokenizer>> {
    let path = models::model(models::SMOLLM2)?;
    let opts = EngineOptions {
        n_ctx: 256,
        threads: 1,
        ..EngineOptions::default()
    };
    let (_, tok) = skulk::engine::load(
        &path,
        0..models::SMOLLM2_LAYERS,
        models::SMOLLM2_LAYERS,
        &opts,
    )
    .unwrap();
    Some(tok)
}

/// xorshift: the test's own reproducible randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Samples under `gbnf` with random logits (end of generation favoured
/// once allowed); the text, or `None` when it ran out of tokens.
fn sample(tok: &dyn Tokenizer, gbnf: &str, seed: u64) -> Option<String> {
    let spec = GrammarSpec {
        gbnf: gbnf.to_string(),
        triggers: vec![],
    };
    let params = SamplingParams {
        temperature: 1.0,
        seed,
        ..SamplingParams::default()
    };
    let mut s = Sampler::constrained(&params, Some(tok.constraint(&spec).unwrap()));
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Ends of free text come sooner: `<` starts harmony's `<|end|>`.
    let bonus: Vec<f32> = (0..N_VOCAB)
        .map(|t| {
            if tok.is_eog(t) {
                30.0
            } else if tok.token_to_piece_special(t).starts_with(b"<") {
                8.0
            } else {
                0.0
            }
        })
        .collect();
    let mut bytes = Vec::new();
    for _ in 0..MAX_TOKENS {
        let logits: Vec<f32> = bonus.iter().map(|b| b + rng.unit() * 12.0).collect();
        let t = s.next(&logits).token;
        assert_ne!(
            t,
            NO_TOKEN,
            "the grammar allowed no token after {:?}",
            String::from_utf8_lossy(&bytes)
        );
        if tok.is_eog(t) {
            return Some(String::from_utf8(bytes).expect("grammar output is UTF-8"));
        }
        bytes.extend(tok.token_to_piece_special(t));
    }
    eprintln!(
        "unfinished after {MAX_TOKENS} tokens: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    None
}

fn schemas() -> Vec<Value> {
    vec![
        json!({"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 8},
            "pets": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"$ref": "#/$defs/Pet"}},
            "address": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 8},
                "country": {"enum": ["France", "Spain"]}}, "required": ["city", "country"]},
            "nickname": {"anyOf": [{"type": "string", "maxLength": 6}, {"type": "null"}]},
            "score": {"type": "number"},
            "verified": {"type": "boolean"}
        }, "required": ["name", "pets", "address"], "additionalProperties": false,
        "$defs": {"Pet": {"type": "object", "properties": {
            "kind": {"type": "string", "enum": ["cat", "dog"]},
            "age": {"type": "integer", "minimum": 0, "maximum": 30}}, "required": ["kind", "age"]}}}),
        json!({"type": "array", "items": {"type": "integer", "exclusiveMinimum": -5, "maximum": 1234}, "maxItems": 4}),
        json!({"type": "object", "properties": {
            "when": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "id": {"type": "string", "format": "uuid"},
            "tags": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 9}}
        }, "required": ["when", "day", "id"]}),
        json!({"type": "object", "properties": {"tuple": {"type": "array", "prefixItems": [{"const": "x"}, {"type": "integer"}], "items": false}}, "required": ["tuple"]}),
    ]
}

#[test]
fn random_sampling_under_a_schema_grammar_always_validates() {
    let Some(tok) = tokenizer() else { return };
    for (i, schema) in schemas().iter().enumerate() {
        let gbnf = schema_grammar(schema).unwrap_or_else(|e| panic!("schema {i}: {e}"));
        let validator = jsonschema::validator_for(schema).unwrap();
        let mut finished = 0;
        for seed in 1..=SAMPLES {
            let Some(text) = sample(&*tok, &gbnf, seed * 7919 + i as u64) else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("schema {i}, seed {seed}: not JSON ({e}): {text}\n{gbnf}")
            });
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "schema {i}, seed {seed}: {text}\n{errors:?}"
            );
            finished += 1;
        }
        eprintln!("schema {i}: {finished}/{SAMPLES} samples finished and validated");
        assert!(
            finished >= SAMPLES / 2,
            "schema {i}: only {finished} of {SAMPLES} samples finished"
        );
    }
}

#[test]
fn forced_calls_parse_back_into_valid_arguments() {
    let Some(tok) = tokenizer() else { return };
    let params = json!({"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 8},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "unit"]});
    let tools = vec![
        Tool {
            name: "get_weather".into(),
            description: None,
            parameters: params.clone(),
        },
        Tool {
            name: "ping".into(),
            description: None,
            parameters: json!({"type": "object", "properties": {}}),
        },
    ];
    let validator = jsonschema::validator_for(&params).unwrap();
    for (dialect, syntax, mistral_args) in [
        (
            ToolDialect::Hermes,
            ParserSpec::Marked {
                think: None,
                tools: Some(ToolSyntax::Hermes),
            },
            false,
        ),
        (
            ToolDialect::Llama3,
            ParserSpec::Marked {
                think: None,
                tools: Some(ToolSyntax::Llama3),
            },
            false,
        ),
        (
            ToolDialect::Mistral,
            ParserSpec::Marked {
                think: None,
                tools: Some(ToolSyntax::Mistral),
            },
            false,
        ),
        (
            ToolDialect::Mistral,
            ParserSpec::Marked {
                think: None,
                tools: Some(ToolSyntax::Mistral),
            },
            true,
        ),
        (
            ToolDialect::Harmony,
            ParserSpec::Harmony { tools: true },
            false,
        ),
    ] {
        let mut g = Grammar::new();
        let calls = CallGrammar {
            dialect,
            mistral_args,
            tools: &tools,
            parallel: dialect == ToolDialect::Llama3,
        }
        .add(&mut g)
        .unwrap();
        g.set("root", calls);
        let gbnf = g.render();
        let mut parsed = 0;
        for seed in 1..=SAMPLES {
            let Some(text) = sample(&*tok, &gbnf, seed) else {
                continue;
            };
            let mut p = OutputParser::new(syntax.clone());
            let mut deltas = p.push(&text);
            deltas.extend(p.finish());
            let mut calls: Vec<(String, String)> = Vec::new();
            for d in deltas {
                match d {
                    Delta::ToolCallStart { name, .. } => calls.push((name, String::new())),
                    Delta::ToolCallArgs { index, args } => calls[index].1.push_str(&args),
                    Delta::Content(c) if c.trim().is_empty() => {}
                    Delta::Reasoning(_) => {}
                    other => panic!("{dialect:?}: unexpected {other:?} in {text:?}"),
                }
            }
            assert!(!calls.is_empty(), "{dialect:?}: no call in {text:?}");
            for (name, args) in calls {
                let v: Value = serde_json::from_str(&args).unwrap_or_else(|e| {
                    panic!("{dialect:?}: arguments not JSON ({e}): {args} in {text:?}")
                });
                match name.as_str() {
                    "get_weather" => assert!(validator.is_valid(&v), "{dialect:?}: {args}"),
                    "ping" => assert!(v.is_object(), "{dialect:?}: {args}"),
                    other => panic!("{dialect:?}: unknown function {other}"),
                }
            }
            parsed += 1;
        }
        eprintln!(
            "{dialect:?} (mistral [ARGS]: {mistral_args}): {parsed}/{SAMPLES} samples parsed"
        );
        assert!(
            parsed >= SAMPLES / 2,
            "{dialect:?}: only {parsed} of {SAMPLES} samples finished"
        );
    }
}
