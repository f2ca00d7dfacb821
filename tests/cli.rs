//! Golden CLI tests: each folder `tests/cli/<command>/<case>/` holds input
//! files, `cmd` (one line: `skulk ARGS...`, split on whitespace, run in the
//! case folder), and the expected `stdout`, `stderr` and exit `code`.
//! `UPDATE_GOLDEN=1 cargo test --no-default-features --test cli` rewrites
//! the expectations from the current binary (review the diff).

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cli")
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for command in std::fs::read_dir(cases_root()).unwrap() {
        let command = command.unwrap().path();
        if !command.is_dir() {
            continue;
        }
        for case in std::fs::read_dir(&command).unwrap() {
            let case = case.unwrap().path();
            if case.join("cmd").is_file() {
                dirs.push(case);
            }
        }
    }
    dirs.sort();
    dirs
}

struct Outcome {
    stdout: String,
    stderr: String,
    code: String,
}

fn run_case(dir: &Path) -> Outcome {
    let cmd = std::fs::read_to_string(dir.join("cmd")).unwrap();
    let mut words = cmd.split_whitespace();
    assert_eq!(
        words.next(),
        Some("skulk"),
        "{}: cmd must start with `skulk`",
        dir.display()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_skulk"))
        .args(words)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Outcome {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output
            .status
            .code()
            .map_or_else(|| "signal".to_string(), |c| c.to_string())
            + "\n",
    }
}

#[test]
fn golden_cli_cases() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    let dirs = case_dirs();
    assert!(!dirs.is_empty(), "no golden cases found");
    for dir in &dirs {
        let outcome = run_case(dir);
        for (name, actual) in [
            ("stdout", &outcome.stdout),
            ("stderr", &outcome.stderr),
            ("code", &outcome.code),
        ] {
            let path = dir.join(name);
            if update {
                std::fs::write(&path, actual).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if &expected != actual {
                failures.push(format!(
                    "{}: {name} differs\n--- expected\n{expected}--- actual\n{actual}",
                    dir.strip_prefix(cases_root()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nhint: if the new output is right, run `UPDATE_GOLDEN=1 cargo test --no-default-features --test cli` and review the diff",
        failures.join("\n")
    );
}

/// A file over the size limit: generated here rather than committed.
#[test]
fn oversized_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let mut text = String::from("modelId: a/b\n");
    while text.len() as u64 <= skulk::load::MAX_FILE_BYTES {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_skulk"))
        .args(["validate", "big.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "big.yaml: the file is larger than 8 MiB\n1 file checked: 0 valid, 1 invalid, 0 warnings\n"
    );
}

/// A directory with no card files means the run cannot start (exit 2).
#[test]
fn directory_without_card_files_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    std::fs::write(dir.path().join("empty/notes.txt"), "a: 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_skulk"))
        .args(["validate", "empty"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: no `.yaml`, `.yml`, `.json` or `.toml` files under `empty`\n"
    );
    assert!(output.stdout.is_empty());
}
