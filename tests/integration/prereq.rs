//! What the tests need from this machine, and the one rule for a missing
//! prerequisite: under CI the test fails (CI has everything: root, the test
//! models, the Python clients, sshd), elsewhere it is skipped with the
//! reason printed, so a developer without root or models can still run the
//! rest.
//!
//! Every early return of a test for something absent goes through [`skip`]
//! (or a helper that calls it, such as `models::model` and
//! `hosts::TestHosts::get`), so no test passes silently under CI.

use std::fmt::Display;
use std::path::PathBuf;

/// Whether these tests run under CI: `CI` is set, not empty, and not
/// `false` or `0` (CI services set `CI=true`; `CI=1` counts too).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A test cannot run here because `why`: under CI this fails the test,
/// elsewhere it prints `skipped: why` and the caller returns.
#[track_caller]
pub fn skip(why: impl Display) {
    assert!(!in_ci(), "CI is set but {why}");
    eprintln!("skipped: {why}");
}

/// `present`, after [`skip`]ping with `why` when it is false:
/// `if !prereq::require(ok, "...") { return; }`.
#[track_caller]
pub fn require(present: bool, why: impl Display) -> bool {
    if !present {
        skip(why);
    }
    present
}

/// Where `scripts/fetch-test-models` puts the test models:
/// `$SKULK_TEST_MODELS`, else `~/.cache/skulk/test-models`.
pub fn test_models_dir() -> PathBuf {
    std::env::var_os("SKULK_TEST_MODELS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            skulk::settings::paths::in_home(".cache/skulk/test-models")
                .expect("HOME is set (or SKULK_TEST_MODELS)")
        })
}

/// Whether `python3` can import every module of `modules` (the clients
/// `scripts/setup` installs).
pub fn python_has(modules: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
