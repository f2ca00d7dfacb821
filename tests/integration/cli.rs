//! Golden CLI tests: each folder `tests/cli/<command>/<case>/` holds input
//! files, `cmd` (one line: `skulk ARGS...`, split on whitespace), and the
//! expected `stdout`, `stderr` and exit `code`.
//! `UPDATE_GOLDEN=1 cargo test --release --test integration golden_cli_cases`
//! rewrites the expectations from the current binary (review the diff).
//!
//! Each case runs in a fresh copy of its folder, with `HOME` set to the
//! copy's `home/` (so `~/.cache/skulk/runs` state a case ships is what
//! `status`, `down` and `logs` find, and nothing of the machine leaks in),
//! and that copy's path shown as `[CASE]` and UTC timestamps
//! (`2025-01-31T12:00:00.000Z`, as rank logs write them) as `[TIME]` in the
//! outputs. Optional files:
//! - `setup`: a POSIX shell script run in the copy first (same `HOME`); the
//!   processes it starts in the background it lists, one pid a line, in
//!   `pids`, and they are killed after the case;
//! - `close-stdout-after`: a byte count; standard output is closed after
//!   reading that much, as `| head -c N` does.
//!
//! This file also runs every shell block of the README against a local ring
//! (`readme_shell_examples_run`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{models, prereq, serial};

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

/// Copies `from` into `to` (files and directories; symlinks as links).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
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
    let scratch = tempfile::Builder::new()
        .prefix("skulk-golden.")
        .tempdir()
        .unwrap();
    let work = scratch.path().join("case");
    copy_tree(dir, &work);
    let home = work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    if work.join("setup").is_file() {
        let status = Command::new("sh")
            .arg("setup")
            .current_dir(&work)
            .env("HOME", &home)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{}: setup failed", dir.display());
    }
    let close_after: Option<usize> = std::fs::read_to_string(work.join("close-stdout-after"))
        .ok()
        .map(|n| {
            n.trim()
                .parse()
                .expect("close-stdout-after holds a byte count")
        });
    let mut child = Command::new(env!("CARGO_BIN_EXE_skulk"))
        .args(words)
        .current_dir(&work)
        .env("NO_COLOR", "1")
        .env("HOME", &home)
        .env_remove("SKULK_API_KEY")
        .env_remove("SKULK_LOG_COMMANDS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut e = Vec::new();
        stderr_pipe.read_to_end(&mut e).unwrap();
        e
    });
    let mut stdout = Vec::new();
    match close_after {
        Some(n) => {
            stdout.resize(n, 0);
            stdout_pipe.read_exact(&mut stdout).unwrap();
            drop(stdout_pipe);
        }
        None => {
            stdout_pipe.read_to_end(&mut stdout).unwrap();
        }
    }
    let status = child.wait().unwrap();
    let stderr = errors.join().unwrap();
    if let Ok(pids) = std::fs::read_to_string(work.join("pids")) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
    let shown = work.display().to_string();
    let clean = |b: &[u8]| mask_timestamps(&String::from_utf8_lossy(b).replace(&shown, "[CASE]"));
    Outcome {
        stdout: clean(&stdout),
        stderr: clean(&stderr),
        code: status
            .code()
            .map_or_else(|| "signal".to_string(), |c| c.to_string())
            + "\n",
    }
}

/// `[TIME]` for every `YYYY-MM-DDTHH:MM:SS.mmmZ` in `text`.
fn mask_timestamps(text: &str) -> String {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let fits = bytes.len() - i >= SHAPE.len()
            && SHAPE.iter().zip(&bytes[i..]).all(|(shape, b)| match shape {
                b'd' => b.is_ascii_digit(),
                c => c == b,
            });
        if fits {
            out.push_str("[TIME]");
            i += SHAPE.len();
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
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
        "{}\n\nhint: if the new output is right, run `UPDATE_GOLDEN=1 cargo test --release --test integration golden_cli_cases` and review the diff",
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

/// What a README shell block's first line says when the test must not run
/// it (it needs real hosts, the network, or installs packages).
const NOT_RUN: &str = "not run by the README test";

/// The ```sh blocks of the README, in order.
fn readme_sh_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in readme.lines() {
        match &mut open {
            None if line.trim_end() == "```sh" => open = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.push(open.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// Every shell example of the README runs as written (`bash -euo pipefail`,
/// from a directory with the repository's `cards/` and `examples/`, `skulk`
/// on the `PATH`, a scratch `HOME` holding the test models): the one-machine
/// ring is applied, answers `curl`, and is taken down. Blocks whose first
/// line says they are not run by this test are named and left out.
#[test]
fn readme_shell_examples_run() {
    let blocks = readme_sh_blocks();
    assert!(
        blocks.len() >= 3,
        "the README's shell blocks were not found"
    );
    // The examples apply and stop a ring of three real ranks.
    let _alone = serial::alone();
    if !prereq::require(
        cfg!(feature = "engine"),
        "skulk is built without the engine, so no ring can run",
    ) || models::model(models::SMOLLM2).is_none()
        || !prereq::require(
            Command::new("curl").arg("--version").output().is_ok(),
            "`curl` is not installed (run scripts/setup)",
        )
    {
        return;
    }
    let models_dir = prereq::test_models_dir();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::Builder::new()
        .prefix("skulk-readme.")
        .tempdir()
        .unwrap();
    let home = scratch.path().join("home");
    std::fs::create_dir_all(home.join(".cache/skulk")).unwrap();
    std::os::unix::fs::symlink(&models_dir, home.join(".cache/skulk/test-models")).unwrap();
    let work = scratch.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for dir in ["cards", "examples"] {
        std::os::unix::fs::symlink(root.join(dir), work.join(dir)).unwrap();
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_skulk"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |script: &str| {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(&work)
            .env("HOME", &home)
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .env_remove("SKULK_API_KEY")
            .output()
            .unwrap()
    };
    let mut failures = Vec::new();
    let mut ran = 0;
    for block in &blocks {
        if block
            .lines()
            .next()
            .is_some_and(|l| l.starts_with('#') && l.contains(NOT_RUN))
        {
            continue;
        }
        ran += 1;
        let out = run(block);
        if !out.status.success() {
            failures.push(format!(
                "this README block failed ({}):\n{block}--- stdout\n{}--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    // Whatever happened, leave no rank running.
    if work.join("plan.json").exists() {
        let _ = run("skulk down plan.json");
    }
    assert!(ran >= 2, "only {ran} README blocks ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `inventory probe --local` looks at this machine without SSH and prints
/// an entry that is a valid inventory of one `connection: local` host.
#[test]
fn probing_this_machine_gives_a_valid_local_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skulk"))
        .args(["inventory", "probe", "--local"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("connection: local"), "{yaml}");
    assert!(yaml.contains("address: 127.0.0.1"), "{yaml}");
    assert!(!yaml.contains("ssh:"), "{yaml}");
    std::fs::write(dir.path().join("here.yaml"), &yaml).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_skulk"))
        .args(["validate", "here.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{yaml}\n{check:?}");
}

/// One `~` rule: a path that needs the home directory when `HOME` is not
/// set is an error naming `HOME` and the path (never `/` or the current
/// directory), while an absolute path needs no home.
#[test]
fn an_unset_home_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&cases_root().join("model/add"), dir.path());
    let add = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_skulk"))
            .args(["model", "add", "tiny-Q4_K_M.gguf", "--card", "card.yaml"])
            .args(extra)
            .current_dir(dir.path())
            .env_remove("HOME")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for (args, path) in [
        (&[][..], "~/.cache/skulk/models"),
        (&["--model-dir", "models"][..], "models"),
    ] {
        let out = add(args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("error: `HOME` is not set, so `{path}` cannot be resolved\n\nhint: set `HOME`, or give an absolute path\n")
        );
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n == "models" || n == ".cache"),
        "{names:?}"
    );
    let absolute = dir.path().join("abs");
    let out = add(&["--model-dir", absolute.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(absolute
        .join("local--tiny-Q4_K_M/tiny-Q4_K_M.gguf")
        .is_file());
}
