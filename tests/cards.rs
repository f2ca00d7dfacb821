//! The curated cards in `cards/` and real Python Skulk catalog cards validate.

use std::path::{Path, PathBuf};

use skulk::card::ModelCard;
use skulk::validate::{collect, validate_targets, Report};

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

/// The test-model cards describe the real files (checked when the files are
/// present: `scripts/fetch-test-models`).
#[test]
fn test_model_cards_match_the_real_files() {
    let models = std::env::var_os("SKULK_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cache/skulk/test-models"));
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
        let path = models.join(&file);
        let Ok(meta) = std::fs::metadata(&path) else {
            eprintln!("skipping the size check: {} is missing", path.display());
            continue;
        };
        assert_eq!(card.storage_size.in_bytes, meta.len(), "{name}");
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
