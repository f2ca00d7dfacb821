//! `docs/architectures.md` and the README say which architectures skulk
//! splits and what the vendored llama.cpp derives from layer counts and
//! indices. These tests keep them honest: the lists equal
//! `SUPPORTED_ARCHITECTURES`, and the table names the llama.cpp version it
//! was checked against, which must be the one `Cargo.lock` vendors.

use std::path::{Path, PathBuf};

use skulk::engine::{LLAMA_CPP_ARCHITECTURES, SUPPORTED_ARCHITECTURES};

use crate::prereq;

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `llama-cpp-sys-2` version `Cargo.lock` pins.
fn locked_llama_version() -> String {
    let lock = repo_file("Cargo.lock");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"llama-cpp-sys-2\"" {
            let v = lines.next().expect("a version line");
            return v
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("unexpected line `{v}`"))
                .to_string();
        }
    }
    panic!("Cargo.lock has no llama-cpp-sys-2");
}

/// The backticked names of the lines between `<!-- begin NAME -->` and
/// `<!-- end NAME -->` in `text`.
fn marked_names(text: &str, name: &str) -> Vec<String> {
    let begin = format!("<!-- begin {name} -->");
    let end = format!("<!-- end {name} -->");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("no `{begin}` marker"));
    let stop = text[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("no `{end}` marker"))
        + start;
    text[start + begin.len()..stop]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn sorted(v: &[impl AsRef<str>]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.as_ref().to_string()).collect();
    v.sort();
    v
}

#[test]
fn the_architecture_table_was_checked_against_the_vendored_llama_cpp() {
    let doc = repo_file("docs/architectures.md");
    let locked = locked_llama_version();
    let needle = "Checked against llama-cpp-sys-2 ";
    let checked = doc
        .lines()
        .find_map(|l| l.split(needle).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("docs/architectures.md has no `{needle}VERSION` line"))
        .to_string();
    assert_eq!(
        checked, locked,
        "the vendored llama.cpp changed: Cargo.lock has llama-cpp-sys-2 {locked}, but \
         docs/architectures.md was checked against {checked}. Re-check every row of \
         docs/architectures.md (and the source lines it cites) against the new llama.cpp \
         sources, run tests/integration/arch_equivalence.rs, then update the version in the document"
    );
}

#[test]
fn readme_and_table_list_exactly_the_supported_architectures() {
    let want = sorted(SUPPORTED_ARCHITECTURES);
    let readme = marked_names(&repo_file("README.md"), "architectures");
    assert_eq!(
        sorted(&readme),
        want,
        "README.md's architecture list differs from SUPPORTED_ARCHITECTURES"
    );
    let table = marked_names(&repo_file("docs/architectures.md"), "supported");
    assert_eq!(
        sorted(&table),
        want,
        "docs/architectures.md's supported list differs from SUPPORTED_ARCHITECTURES"
    );
}

/// The vendored llama.cpp's `src/llama-arch.cpp`, when cargo's registry
/// holds it (it does wherever the engine was built).
fn vendored_llama_arch() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let version = locked_llama_version();
    let src = home.join("registry").join("src");
    std::fs::read_dir(&src).ok()?.flatten().find_map(|index| {
        let p = index
            .path()
            .join(format!("llama-cpp-sys-2-{version}"))
            .join("llama.cpp/src/llama-arch.cpp");
        p.is_file().then_some(p)
    })
}

#[test]
fn the_known_architectures_are_the_vendored_llama_cpp_ones() {
    let Some(path) = vendored_llama_arch() else {
        return prereq::skip("the vendored llama.cpp source is not in cargo's registry");
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("LLM_ARCH_NAMES = {").expect("LLM_ARCH_NAMES");
    let end = text[start..].find("};").unwrap() + start;
    let names: Vec<&str> = text[start..end]
        .lines()
        .filter(|l| l.trim_start().starts_with("{ LLM_ARCH_"))
        .filter_map(|l| l.split('"').nth(1))
        .filter(|n| *n != "clip" && *n != "(unknown)")
        .collect();
    assert_eq!(
        LLAMA_CPP_ARCHITECTURES,
        names.as_slice(),
        "LLAMA_CPP_ARCHITECTURES differs from {}",
        path.display()
    );
    for arch in SUPPORTED_ARCHITECTURES {
        assert!(
            names.contains(arch),
            "`{arch}` is not a llama.cpp architecture"
        );
    }
}
