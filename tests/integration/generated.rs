//! Generated files (schemas, shell completions) are committed; these tests
//! fail when a committed file differs from what the code generates, and say
//! how to regenerate. `UPDATE_GENERATED=1 cargo test --release --test integration
//! generated::` rewrites them.

use std::path::{Path, PathBuf};

use skulk::schema::{self, SchemaKind};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `path` with `expected`; rewrites it in update mode.
fn check_generated(path: &Path, expected: &str, command: &str) {
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, expected).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == expected,
        "`{}` is stale or missing.\n\nhint: regenerate it with\n    {command}\nor all generated files with\n    UPDATE_GENERATED=1 cargo test --release --test integration generated::",
        path.display()
    );
}

#[test]
fn committed_schemas_are_up_to_date() {
    for kind in SchemaKind::ALL {
        let Some(text) = schema::schema_text(kind) else {
            continue;
        };
        let path = root().join(kind.committed_path());
        let command = format!(
            "cargo run --release -- schema {} > {}",
            kind.name(),
            kind.committed_path()
        );
        check_generated(&path, &text, &command);
    }
}

const SHELLS: [(clap_complete::Shell, &str); 5] = [
    (clap_complete::Shell::Bash, "bash"),
    (clap_complete::Shell::Zsh, "zsh"),
    (clap_complete::Shell::Fish, "fish"),
    (clap_complete::Shell::PowerShell, "ps1"),
    (clap_complete::Shell::Elvish, "elv"),
];

#[test]
fn committed_completions_are_up_to_date() {
    for (shell, extension) in SHELLS {
        let mut script = Vec::new();
        skulk::cli::write_completions(shell, &mut script);
        let script = String::from_utf8(script).expect("completion scripts are UTF-8");
        let relative = format!("completions/skulk.{extension}");
        let command = format!(
            "cargo run --release -- completions {} > {relative}",
            shell.to_string().to_lowercase()
        );
        check_generated(&root().join(&relative), &script, &command);
    }
}

fn committed_card_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join(SchemaKind::Card.committed_path()))
        .expect("the card schema is committed");
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the committed card schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, value: &serde_json::Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn committed_card_schema_accepts_the_seed_example_card() {
    let validator = committed_card_validator();
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/seed-create-instance-params.json"))
            .unwrap();
    let params: serde_json::Value = serde_json::from_str(&text).unwrap();
    let card = &params["instance"]["MlxRingInstance"]["shardAssignments"]["runnerToShard"]
        ["runner-1"]["PipelineShardMetadata"]["modelCard"];
    assert!(card.is_object());
    assert_eq!(schema_errors(&validator, card), Vec::<String>::new());
}

#[test]
fn committed_card_schema_accepts_every_curated_card() {
    let validator = committed_card_validator();
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("cards")).unwrap() {
        let path = entry.unwrap().path();
        if skulk::load::Format::from_path(&path).is_none() {
            continue;
        }
        let (_, value) = skulk::load::load(&path).unwrap();
        assert_eq!(
            schema_errors(&validator, &value),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} curated cards");
}
