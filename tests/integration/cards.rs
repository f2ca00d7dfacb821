//! The curated cards in `cards/` and real Python Skulk catalog cards validate.

use std::path::{Path, PathBuf};

use skulk::card::ModelCard;
use skulk::validate::{collect, validate_targets, Report};

use crate::models;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validate_dir(relative: &str) -> Report {
    let dir = root().join(relative);
    let targets = collect(&[dir.to_string_lossy().into_owned()]).unwrap();
    validate_targets(&targets)
}

fn problems(report: &Report) -> Vec<String> {
    report
        .files
        .iter()
        .flat_map(|f| {
            f.problems
                .iter()
                .map(move |d| format!("{}: {} {}", f.path, d.pointer, d.message))
        })
        .collect()
}

#[test]
fn every_curated_card_is_valid_without_warnings() {
    let report = validate_dir("cards");
    assert_eq!(problems(&report), Vec::<String>::new());
    assert!(report.files.len() >= 12, "{} cards", report.files.len());
    assert!(report.files.iter().all(|f| f.kind == Some("card")));
}

#[test]
fn python_skulk_catalog_cards_validate() {
    let report = validate_dir("tests/fixtures/skulk-catalog");
    assert_eq!(problems(&report), Vec::<String>::new());
    assert_eq!(report.files.len(), 8);
}

/// The whole Python Skulk 1.3.0 catalog validates: no errors, and only the
/// two warnings its own files earn (file names that do not match the model
/// id).
#[test]
fn python_skulk_1_3_0_catalog_validates() {
    let report = validate_dir("tests/fixtures/skulk-catalog-1.3.0");
    assert_eq!(report.files.len(), 98);
    assert!(report.files.iter().all(|f| f.kind == Some("card")));
    assert!(
        report.files.iter().all(|f| f.valid),
        "{:#?}",
        problems(&report)
    );
    let mut warned: Vec<String> = report
        .files
        .iter()
        .filter(|f| !f.problems.is_empty())
        .map(|f| {
            Path::new(&f.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    warned.sort();
    assert_eq!(
        warned,
        [
            "mlx-community--GLM-5-8bit.toml",
            "mlx-community--GLM-5-bf16.toml"
        ],
        "{:#?}",
        problems(&report)
    );
    assert!(
        problems(&report)
            .iter()
            .all(|p| p.contains("does not match the model id")),
        "{:#?}",
        problems(&report)
    );
}

fn card(path: &Path) -> ModelCard {
    let (_, value) = skulk::load::load(path).unwrap();
    serde_json::from_value(value).unwrap()
}

/// The test-model cards describe the real files (`scripts/fetch-test-models`;
/// skipped, or a failure under CI, where they are absent).
#[test]
fn test_model_cards_match_the_real_files() {
    for name in [
        "local--SmolLM2-135M-Instruct.Q4_1.yaml",
        "local--gemma-3-270m-q4_k_m.yaml",
    ] {
        let card = card(&root().join("cards").join(name));
        let file = card.gguf_file.clone().expect("a GGUF card");
        assert_eq!(
            card.model_id,
            format!("local/{}", file.trim_end_matches(".gguf"))
        );
        let Some(path) = models::model(&file) else {
            continue;
        };
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(card.storage_size.in_bytes, meta.len(), "{name}");
        let header = skulk::gguf::GgufHeader::read(&path).unwrap();
        assert_eq!(card.family, header.architecture().unwrap(), "{name}");
    }
}

/// `skulk plan` reads a GGUF card's `family` as the file's architecture
/// (`card new --from-gguf` writes it so): the curated ones say it.
#[test]
fn gguf_cards_name_their_architecture_in_family() {
    for entry in std::fs::read_dir(root().join("cards")).unwrap() {
        let card = card(&entry.unwrap().path());
        if card.is_gguf() {
            assert!(
                skulk::engine::LLAMA_CPP_ARCHITECTURES.contains(&card.family.as_str()),
                "{}: family `{}`",
                card.model_id,
                card.family
            );
        }
    }
}

#[test]
fn gguf_cards_run_on_llama_cpp_cpu() {
    for entry in std::fs::read_dir(root().join("cards")).unwrap() {
        let card = card(&entry.unwrap().path());
        if card.is_gguf() {
            assert!(
                card.placement.compatible_backends.contains("llama_cpp-cpu"),
                "{}",
                card.model_id
            );
            assert!(!card.supports_tensor, "{}", card.model_id);
        }
    }
}
