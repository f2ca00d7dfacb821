//! `card new --from-hf` and model fetching against a fake hub on loopback
//! (tests/support): quant selection, shard groups, auth, offline mode,
//! headers larger than one range window, resumable and verified downloads.

use std::path::Path;
use std::process::{Command, Output};

use skulk::card::ModelCard;
use skulk::fetch::{fetch_card, FetchError, ProgressMode};
use skulk::gguf::{Array, GgmlType, GgufBuilder, Value};
use skulk::hub::{Hub, HubError, HubSettings};

use crate::fake_hub::{FakeFile, FakeHub, FakeRepo, Fault};
use crate::models;

/// A small GGUF: `layers` blocks of `rows` x 32 f32 weights, a
/// `vocab`-token vocabulary (grows the header).
fn gguf(arch: &str, layers: u32, rows: u64, vocab: usize) -> Vec<u8> {
    let tokens: Vec<Vec<u8>> = (0..vocab)
        .map(|i| format!("token-{i:08}").into_bytes())
        .collect();
    let mut b = GgufBuilder::new()
        .kv("general.architecture", Value::string(arch))
        .kv(&format!("{arch}.block_count"), Value::U32(layers))
        .kv(&format!("{arch}.embedding_length"), Value::U32(32))
        .kv(&format!("{arch}.context_length"), Value::U32(4096))
        .kv(&format!("{arch}.attention.head_count_kv"), Value::U32(4))
        .kv("general.file_type", Value::U32(15))
        .kv("tokenizer.ggml.tokens", Value::Array(Array::Str(tokens)));
    for l in 0..layers {
        let data: Vec<u8> = (0..rows * 32 * 4).map(|i| (i as u8) ^ (l as u8)).collect();
        b = b.tensor(
            &format!("blk.{l}.ffn_up.weight"),
            &[32, rows],
            GgmlType::F32,
            data,
        );
    }
    b.to_bytes()
}

fn multi_quant() -> FakeRepo {
    FakeRepo {
        files: vec![
            FakeFile::new("README.md", b"# model".to_vec()),
            FakeFile::new("m-Q8_0.gguf", gguf("llama", 4, 64, 10)),
            FakeFile::new("m-Q4_K_M.gguf", gguf("llama", 4, 16, 10)),
            FakeFile::new("m-f16.gguf", gguf("llama", 4, 128, 10)),
            FakeFile::new("mmproj-m-Q4_K_M.gguf", gguf("clip", 1, 8, 0)),
        ],
        token: None,
    }
}

fn sharded() -> FakeRepo {
    FakeRepo {
        files: vec![
            FakeFile::new(
                "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf",
                gguf("qwen3", 6, 256, 10),
            ),
            FakeFile::new("Q4_K_M/big-Q4_K_M-00002-of-00002.gguf", vec![5u8; 300_000]),
            FakeFile::new(
                "Q8_0/big-Q8_0-00001-of-00001.gguf",
                gguf("qwen3", 6, 512, 10),
            ),
        ],
        token: None,
    }
}

fn safetensors() -> FakeRepo {
    let config = serde_json::json!({
        "architectures": ["Gemma3ForConditionalGeneration"],
        "num_hidden_layers": 99,
        "text_config": {"num_hidden_layers": 26, "hidden_size": 1152, "num_key_value_heads": 1,
                        "max_position_embeddings": 32768},
    });
    let index = serde_json::json!({"metadata": {"total_size": 1_999_844_352u64}, "weight_map": {}});
    FakeRepo {
        files: vec![
            FakeFile::new("config.json", config.to_string().into_bytes()),
            FakeFile::new(
                "model.safetensors.index.json",
                index.to_string().into_bytes(),
            ),
            FakeFile::new("model-00001-of-00002.safetensors", vec![0; 100]),
            FakeFile::new("model-00002-of-00002.safetensors", vec![0; 100]),
        ],
        token: None,
    }
}

fn hub() -> FakeHub {
    let mut private = multi_quant();
    private.token = Some("secret-token".into());
    let big_header = FakeRepo {
        // ~3.3 MiB of vocabulary: the header spans several range windows.
        files: vec![FakeFile::new(
            "big-vocab-Q4_K_M.gguf",
            gguf("llama", 2, 8, 150_000),
        )],
        token: None,
    };
    let mut lying = FakeRepo {
        files: vec![FakeFile::new("m-Q4_K_M.gguf", gguf("llama", 2, 64, 10))],
        token: None,
    };
    lying.files[0].wrong_sha = true;
    FakeHub::start(vec![
        ("org/multi", multi_quant()),
        ("org/sharded", sharded()),
        ("org/private", private),
        ("org/safetensors", safetensors()),
        ("org/bigheader", big_header),
        ("org/lying", lying),
    ])
}

fn skulk(hub: &FakeHub, env: &[(&str, &str)], args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skulk"));
    cmd.args(args)
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_HOME", home.path())
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_HUB_OFFLINE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn card(out: &Output) -> ModelCard {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let card: ModelCard = serde_yaml_ng::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(card.semantic_problems(), vec![]);
    card
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn size(repo: &FakeRepo, path: &str) -> u64 {
    repo.files
        .iter()
        .find(|f| f.path == path)
        .unwrap()
        .data
        .len() as u64
}

#[test]
fn gguf_repo_card_uses_the_preferred_quant_and_reads_only_its_header() {
    let hub = hub();
    let c = card(&skulk(
        &hub,
        &[],
        &["card", "new", "--from-hf", "org/multi"],
    ));
    assert_eq!(c.model_id, "org/multi");
    assert_eq!(c.gguf_file.as_deref(), Some("m-Q4_K_M.gguf"));
    assert_eq!(
        c.storage_size.in_bytes,
        size(&multi_quant(), "m-Q4_K_M.gguf")
    );
    assert_eq!(
        (
            c.n_layers,
            c.hidden_size,
            c.num_key_value_heads,
            c.context_length
        ),
        (4, 32, Some(4), 4096)
    );
    assert_eq!(c.quantization, "Q4_K_M");
    assert!(!c.supports_tensor && c.placement.compatible_backends.contains("llama_cpp-cpu"));
    // Only ranged reads of the chosen file; no other file is downloaded.
    let gets: Vec<_> = hub
        .log()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/resolve/"))
        .collect();
    assert!(
        !gets.is_empty()
            && gets
                .iter()
                .all(|r| r.path.ends_with("m-Q4_K_M.gguf") && r.range.is_some()),
        "{gets:?}"
    );

    let c = card(&skulk(
        &hub,
        &[],
        &[
            "card",
            "new",
            "--from-hf",
            "org/multi",
            "--gguf-file",
            "m-Q8_0.gguf",
            "--model-id",
            "me/m",
            "-o",
            "yaml",
        ],
    ));
    assert_eq!(
        (c.gguf_file.as_deref(), c.model_id.as_str()),
        (Some("m-Q8_0.gguf"), "me/m")
    );

    let out = skulk(
        &hub,
        &[],
        &[
            "card",
            "new",
            "--from-hf",
            "org/multi",
            "--gguf-file",
            "m-Q2_K.gguf",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`org/multi` has no GGUF file `m-Q2_K.gguf`; it has `m-Q4_K_M.gguf`, `m-Q8_0.gguf`, `m-f16.gguf`"), "{}", stderr(&out));
}

#[test]
fn sharded_gguf_repo_card_sums_the_group() {
    let hub = hub();
    let c = card(&skulk(
        &hub,
        &[],
        &["card", "new", "--from-hf", "org/sharded"],
    ));
    let repo = sharded();
    assert_eq!(
        c.gguf_file.as_deref(),
        Some("Q4_K_M/big-Q4_K_M-00001-of-00002.gguf")
    );
    assert_eq!(
        c.storage_size.in_bytes,
        size(&repo, "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf")
            + size(&repo, "Q4_K_M/big-Q4_K_M-00002-of-00002.gguf")
    );
    assert_eq!(c.n_layers, 6);
}

#[test]
fn header_larger_than_one_window_is_read_in_growing_ranges() {
    let hub = hub();
    let c = card(&skulk(
        &hub,
        &[],
        &["card", "new", "--from-hf", "org/bigheader"],
    ));
    assert_eq!(c.n_layers, 2);
    let ranges = hub.gets("big-vocab-Q4_K_M.gguf");
    assert!(ranges.len() >= 2, "{ranges:?}");
    assert_eq!(ranges[0].as_deref(), Some("bytes=0-1048575"));
}

#[test]
fn safetensors_repo_card_comes_from_config_json() {
    let hub = hub();
    let c = card(&skulk(
        &hub,
        &[],
        &["card", "new", "--from-hf", "org/safetensors", "-o", "json"],
    ));
    assert_eq!(
        (
            c.n_layers,
            c.hidden_size,
            c.num_key_value_heads,
            c.context_length
        ),
        (26, 1152, Some(1), 32768)
    );
    assert_eq!(c.storage_size.in_bytes, 1_999_844_352);
    assert_eq!(c.gguf_file, None);
    assert!(!c.supports_tensor && c.trust_remote_code);
}

#[test]
fn auth_offline_and_network_errors_are_clear() {
    let hub = hub();
    let out = skulk(&hub, &[], &["card", "new", "--from-hf", "org/private"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("`org/private` on `http://127.0.0.1:")
            && err.contains("needs authentication (HTTP 401): Invalid credentials"),
        "{err}"
    );
    assert!(err.contains("hint: set `HF_TOKEN`"), "{err}");

    let c = card(&skulk(
        &hub,
        &[("HF_TOKEN", "secret-token")],
        &["card", "new", "--from-hf", "org/private"],
    ));
    assert_eq!(c.gguf_file.as_deref(), Some("m-Q4_K_M.gguf"));
    assert!(hub
        .log()
        .iter()
        .any(|r| r.authorization.as_deref() == Some("Bearer secret-token")));

    let out = skulk(&hub, &[], &["card", "new", "--from-hf", "org/absent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("repository `org/absent` was not found on `http://127.0.0.1:"),
        "{}",
        stderr(&out)
    );

    let out = skulk(
        &hub,
        &[],
        &["card", "new", "--from-hf", "org/multi", "--revision", "v9"],
    );
    assert_eq!(out.status.code(), Some(2));

    hub.clear_log();
    let out = skulk(
        &hub,
        &[("HF_HUB_OFFLINE", "1")],
        &["card", "new", "--from-hf", "org/multi"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`HF_HUB_OFFLINE` is set"),
        "{}",
        stderr(&out)
    );
    assert_eq!(hub.log(), vec![], "offline means no request");

    let out = skulk(
        &hub,
        &[("HF_ENDPOINT", "http://127.0.0.1:1")],
        &["card", "new", "--from-hf", "org/multi"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot reach `http://127.0.0.1:1` for `org/multi`"),
        "{}",
        stderr(&out)
    );

    // A malformed repository id is invalid input (exit 1), not a failure.
    let out = skulk(&hub, &[], &["card", "new", "--from-hf", "gpt2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`gpt2` is not a Hugging Face repository id"));
}

// ---- fetching (library, async) ----

fn hub_client(hub: &FakeHub, offline: bool) -> Hub {
    Hub::new(HubSettings {
        endpoint: Some(hub.url.clone()),
        token: None,
        offline,
    })
    .unwrap()
}

fn gguf_card(model_id: &str, file: &str) -> ModelCard {
    serde_json::from_value(serde_json::json!({
        "modelId": model_id, "storageSize": {"inBytes": 1}, "nLayers": 1, "hiddenSize": 1,
        "supportsTensor": false, "tasks": ["TextGeneration"], "ggufFile": file
    }))
    .unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn data(repo: &FakeRepo, path: &str) -> Vec<u8> {
    repo.files
        .iter()
        .find(|f| f.path == path)
        .unwrap()
        .data
        .to_vec()
}

#[tokio::test]
async fn fetch_downloads_exactly_the_shard_group_verified() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let card = gguf_card("org/sharded", "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf");
    let report = fetch_card(
        &hub_client(&hub, false),
        &card,
        "main",
        dir.path(),
        ProgressMode::Quiet,
    )
    .await
    .unwrap();
    assert_eq!(
        files_under(dir.path()),
        [
            "org--sharded/Q4_K_M/big-Q4_K_M-00001-of-00002.gguf",
            "org--sharded/Q4_K_M/big-Q4_K_M-00002-of-00002.gguf"
        ]
    );
    assert!(report
        .files
        .iter()
        .all(|f| f.sha256_verified && !f.already_present && f.downloaded == f.size));
    for f in [
        "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf",
        "Q4_K_M/big-Q4_K_M-00002-of-00002.gguf",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join("org--sharded").join(f)).unwrap(),
            data(&sharded(), f)
        );
    }
    assert!(
        hub.gets("big-Q8_0-00001-of-00001.gguf").is_empty(),
        "no other quant is fetched"
    );

    // A second fetch finds everything in place and transfers nothing.
    hub.clear_log();
    let report = fetch_card(
        &hub_client(&hub, false),
        &card,
        "main",
        dir.path(),
        ProgressMode::Quiet,
    )
    .await
    .unwrap();
    assert!(report
        .files
        .iter()
        .all(|f| f.already_present && f.downloaded == 0));
    assert!(hub
        .log()
        .iter()
        .all(|r| r.method != "GET" || !r.path.contains("/resolve/")));

    // Offline: present files are accepted without any request; absent ones
    // are an error naming the path.
    hub.clear_log();
    let offline = hub_client(&hub, true);
    fetch_card(&offline, &card, "main", dir.path(), ProgressMode::Quiet)
        .await
        .unwrap();
    let err = fetch_card(
        &offline,
        &gguf_card("org/multi", "m-Q4_K_M.gguf"),
        "main",
        dir.path(),
        ProgressMode::Quiet,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::OfflineMissing { .. }), "{err}");
    assert_eq!(hub.log(), vec![]);
}

#[tokio::test]
async fn broken_transfer_resumes_in_the_same_run() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let file = "Q4_K_M/big-Q4_K_M-00002-of-00002.gguf";
    hub.set_fault(
        file,
        Some(Fault::DropAfter {
            bytes: 100_000,
            times: 1,
        }),
    );
    let card = gguf_card("org/sharded", "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf");
    let report = fetch_card(
        &hub_client(&hub, false),
        &card,
        "main",
        dir.path(),
        ProgressMode::Lines,
    )
    .await
    .unwrap();
    assert_eq!(hub.gets(file), [None, Some("bytes=100000-299999".into())]);
    assert!(report.files[1].sha256_verified);
    assert_eq!(
        std::fs::read(dir.path().join("org--sharded").join(file)).unwrap(),
        data(&sharded(), file)
    );
}

#[tokio::test]
async fn interrupted_download_resumes_in_the_next_run() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let file = "Q4_K_M/big-Q4_K_M-00002-of-00002.gguf";
    // Every attempt of this run breaks after 50 000 more bytes.
    hub.set_fault(
        file,
        Some(Fault::DropAfter {
            bytes: 50_000,
            times: 100,
        }),
    );
    let card = gguf_card("org/sharded", "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf");
    let err = fetch_card(
        &hub_client(&hub, false),
        &card,
        "main",
        dir.path(),
        ProgressMode::Quiet,
    )
    .await
    .unwrap_err();
    let FetchError::Interrupted { have, partial, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*have, 250_000, "five attempts of 50 000 bytes");
    assert!(
        err.to_string()
            .contains("hint: run it again; it resumes from byte 250000"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(partial).unwrap().len(), 250_000);
    let final_path = dir.path().join("org--sharded").join(file);
    assert!(!final_path.exists(), "no final file before it is complete");

    hub.set_fault(file, None);
    hub.clear_log();
    let report = fetch_card(
        &hub_client(&hub, false),
        &card,
        "main",
        dir.path(),
        ProgressMode::Quiet,
    )
    .await
    .unwrap();
    let f = &report.files[1];
    assert_eq!(
        (f.resumed_from, f.downloaded, f.sha256_verified),
        (250_000, 50_000, true)
    );
    assert_eq!(hub.gets(file), [Some("bytes=250000-299999".into())]);
    assert_eq!(std::fs::read(&final_path).unwrap(), data(&sharded(), file));
    assert!(!partial.exists());
}

#[tokio::test]
async fn server_ignoring_ranges_restarts_cleanly() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let file = "m-Q4_K_M.gguf";
    let model = dir.path().join("org--multi");
    std::fs::create_dir_all(&model).unwrap();
    // A stale partial from an earlier run.
    std::fs::write(
        model.join("m-Q4_K_M.gguf.partial"),
        &data(&multi_quant(), file)[..100],
    )
    .unwrap();
    hub.set_fault(file, Some(Fault::IgnoreRange));
    let report = fetch_card(
        &hub_client(&hub, false),
        &gguf_card("org/multi", file),
        "main",
        dir.path(),
        ProgressMode::Quiet,
    )
    .await
    .unwrap();
    assert!(report.files[0].sha256_verified);
    assert_eq!(
        std::fs::read(model.join(file)).unwrap(),
        data(&multi_quant(), file)
    );
}

#[tokio::test]
async fn checksum_mismatch_keeps_nothing() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_card(
        &hub_client(&hub, false),
        &gguf_card("org/lying", "m-Q4_K_M.gguf"),
        "main",
        dir.path(),
        ProgressMode::Quiet,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    assert_eq!(files_under(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn fetch_errors_name_the_repository() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_card(
        &hub_client(&hub, false),
        &gguf_card("org/private", "m-Q4_K_M.gguf"),
        "main",
        dir.path(),
        ProgressMode::Quiet,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, FetchError::Hub(e) if matches!(**e, HubError::Auth { .. })),
        "{err}"
    );
    let err = fetch_card(
        &hub_client(&hub, false),
        &gguf_card("org/multi", "m-Q2_K.gguf"),
        "main",
        dir.path(),
        ProgressMode::Quiet,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("`m-Q2_K.gguf` was not found in `org/multi` at revision `main`"),
        "{err}"
    );
}

/// The real SmolLM2 GGUF served by the fake hub: its 1.7 MiB header is read
/// with range requests, the 98 MB of weights are not transferred.
#[test]
fn real_smollm2_card_from_the_hub_reads_only_the_header() {
    let Some(path) = models::model(models::SMOLLM2) else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let hub = FakeHub::start(vec![(
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
        FakeRepo {
            files: vec![FakeFile::new("SmolLM2-135M-Instruct.Q4_1.gguf", bytes)],
            token: None,
        },
    )]);
    let c = card(&skulk(
        &hub,
        &[],
        &[
            "card",
            "new",
            "--from-hf",
            "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
        ],
    ));
    assert_eq!(
        (
            c.n_layers,
            c.hidden_size,
            c.num_key_value_heads,
            c.context_length
        ),
        (30, 576, Some(3), 8192)
    );
    assert_eq!(
        (c.quantization.as_str(), c.storage_size.in_bytes),
        ("Q4_1", 98_362_432)
    );
    assert_eq!(
        hub.gets("SmolLM2-135M-Instruct.Q4_1.gguf"),
        [
            Some("bytes=0-1048575".into()),
            Some("bytes=1048576-4194303".into())
        ]
    );
}
