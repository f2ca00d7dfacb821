//! `skulk card new --from-gguf`: the real binary on the real test models and
//! on synthetic (split, broken) GGUF files.

use std::path::Path;
use std::process::{Command, Output};

use skulk::card::ModelCard;
use skulk::gguf::{Array, GgmlType, GgufBuilder, Value};

use crate::models::model;

fn skulk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skulk"))
        .args(args)
        .output()
        .expect("skulk runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The card parses strictly, satisfies the JSON schema of the card type and
/// has no semantic problems: what `skulk validate` checks of one card.
fn valid_card(json: serde_json::Value) -> ModelCard {
    let schema = serde_json::to_value(schemars::schema_for!(ModelCard)).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "schema errors: {errors:?}");
    let card: ModelCard = serde_json::from_value(json).unwrap();
    assert_eq!(card.semantic_problems(), vec![]);
    card
}

fn card_new(path: &Path, extra: &[&str]) -> ModelCard {
    let mut args = vec!["card", "new", "--from-gguf", path.to_str().unwrap()];
    args.extend(extra);
    let yaml = stdout(&skulk(&args));
    let value: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let card = valid_card(value);
    // `-o json` prints the same card.
    args.extend(["-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&skulk(&args))).unwrap();
    assert_eq!(valid_card(json), card);
    card
}

fn llama_cpp_backends() -> Vec<String> {
    [
        "llama_cpp",
        "llama_cpp-cpu",
        "llama_cpp-cuda",
        "llama_cpp-metal",
        "llama_cpp-rocm",
        "llama_cpp-vulkan",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn smollm2_card() {
    let Some(path) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let card = card_new(&path, &[]);
    assert_eq!(card.model_id, "local/SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(card.storage_size.in_bytes, 98_362_432);
    assert_eq!((card.n_layers, card.hidden_size), (30, 576));
    assert_eq!(card.num_key_value_heads, Some(3));
    assert_eq!(card.context_length, 8192);
    assert_eq!(card.quantization, "Q4_1");
    assert_eq!(
        card.gguf_file.as_deref(),
        Some("SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert!(!card.supports_tensor);
    assert_eq!(
        card.placement
            .compatible_backends
            .into_iter()
            .collect::<Vec<_>>(),
        llama_cpp_backends()
    );
    let card = card_new(
        &path,
        &["--model-id", "HuggingFaceTB/SmolLM2-135M-Instruct"],
    );
    assert_eq!(card.model_id, "HuggingFaceTB/SmolLM2-135M-Instruct");
}

#[test]
fn gemma3_card() {
    let Some(path) = model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let card = card_new(&path, &[]);
    assert_eq!(card.model_id, "local/gemma-3-270m-q4_k_m");
    assert_eq!(card.storage_size.in_bytes, 253_113_024);
    assert_eq!((card.n_layers, card.hidden_size), (18, 640));
    assert_eq!(card.num_key_value_heads, Some(1));
    assert_eq!(card.context_length, 32768);
    assert_eq!(card.quantization, "Q4_K_M");
    // The GGUF's `general.architecture` is the card's family.
    assert_eq!(card.family, "gemma3");
}

#[test]
fn yaml_output_is_the_expected_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-Q8_0.gguf");
    tiny(4).write(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let yaml = stdout(&skulk(&[
        "card",
        "new",
        "--from-gguf",
        path.to_str().unwrap(),
    ]));
    assert_eq!(
        yaml,
        format!(
            "modelId: local/tiny-Q8_0
storageSize:
  inBytes: {size}
nLayers: 4
hiddenSize: 32
supportsTensor: false
numKeyValueHeads: 2
tasks:
- TextGeneration
family: qwen3
quantization: Q8_0
ggufFile: tiny-Q8_0.gguf
contextLength: 2048
trustRemoteCode: false
placement:
  compatibleBackends:
  - llama_cpp
  - llama_cpp-cpu
  - llama_cpp-cuda
  - llama_cpp-metal
  - llama_cpp-rocm
  - llama_cpp-vulkan
  backendPreference:
  - llama_cpp-vulkan
  - llama_cpp-rocm
  - llama_cpp-cuda
  - llama_cpp-metal
  - llama_cpp-cpu
"
        )
    );
}

fn tiny(layers: u32) -> GgufBuilder {
    let mut b = GgufBuilder::new()
        .kv("general.architecture", Value::string("qwen3"))
        .kv("qwen3.block_count", Value::U32(layers))
        .kv("qwen3.embedding_length", Value::U32(32))
        .kv("qwen3.context_length", Value::U32(2048))
        .kv(
            "qwen3.attention.head_count_kv",
            Value::Array(Array::U32(vec![2; layers as usize])),
        )
        .kv("general.file_type", Value::U32(7));
    for l in 0..layers {
        b = b.tensor(
            &format!("blk.{l}.attn_norm.weight"),
            &[32],
            GgmlType::F32,
            vec![0; 128],
        );
    }
    b
}

#[test]
fn shard_group_is_sized_whole_and_named_by_its_first_shard() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("big-Q8_0-00001-of-00003.gguf");
    tiny(4).write(&first).unwrap();
    for (i, len) in [(2, 1000usize), (3, 24)] {
        std::fs::write(
            dir.path().join(format!("big-Q8_0-0000{i}-of-00003.gguf")),
            vec![7u8; len],
        )
        .unwrap();
    }
    let total = std::fs::metadata(&first).unwrap().len() + 1024;
    // Any shard of the group names the whole group.
    for arg in [
        "big-Q8_0-00001-of-00003.gguf",
        "big-Q8_0-00003-of-00003.gguf",
    ] {
        let card = card_new(&dir.path().join(arg), &[]);
        assert_eq!(card.storage_size.in_bytes, total);
        assert_eq!(
            card.gguf_file.as_deref(),
            Some("big-Q8_0-00001-of-00003.gguf")
        );
        assert_eq!(card.model_id, "local/big-Q8_0");
        assert_eq!(card.n_layers, 4);
    }
    std::fs::remove_file(dir.path().join("big-Q8_0-00002-of-00003.gguf")).unwrap();
    let out = skulk(&["card", "new", "--from-gguf", first.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "split model `big-Q8_0` of 3 files, but `big-Q8_0-00002-of-00003.gguf` is missing"
        ),
        "{err}"
    );
}

#[test]
fn broken_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let not_gguf = dir.path().join("notes.gguf");
    std::fs::write(&not_gguf, "hello, this is text").unwrap();
    let out = skulk(&["card", "new", "--from-gguf", not_gguf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: `{}` is not a GGUF file: it starts with `hell`, not `GGUF`\n",
            not_gguf.display()
        )
    );

    let truncated = dir.path().join("cut.gguf");
    let bytes = tiny(2).to_bytes();
    std::fs::write(&truncated, &bytes[..100]).unwrap();
    let out = skulk(&["card", "new", "--from-gguf", truncated.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is truncated or corrupt") && err.contains("the file ends at byte 100"),
        "{err}"
    );

    let no_arch = dir.path().join("noarch.gguf");
    let mut b = tiny(2);
    b.metadata.retain(|(k, _)| k != "qwen3.embedding_length");
    b.write(&no_arch).unwrap();
    let out = skulk(&["card", "new", "--from-gguf", no_arch.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("has no metadata key `qwen3.embedding_length`"));

    let missing = dir.path().join("missing.gguf");
    let out = skulk(&["card", "new", "--from-gguf", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
