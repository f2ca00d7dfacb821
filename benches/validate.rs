//! `skulk validate` over 1,000 card files (target: under 1 s on the 2-core
//! dev machine). The files are the curated cards of `cards/` repeated with
//! distinct model ids and file names, in YAML, JSON and TOML, written to a
//! temporary directory; each iteration collects, loads, checks the schema
//! and the semantic rules of every file, and renders the text report.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use skulk::validate::{self, ReportFormat, Settings};

const FILES: usize = 1000;

fn write_cards(dir: &Path) {
    let cards = Path::new(env!("CARGO_MANIFEST_DIR")).join("cards");
    let mut sources: Vec<serde_json::Value> = std::fs::read_dir(&cards)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| serde_yaml_ng::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    sources.sort_by_key(|v| v["modelId"].as_str().unwrap().to_string());
    for i in 0..FILES {
        let mut card = sources[i % sources.len()].clone();
        let id = format!("bench/card-{i:04}");
        card["modelId"] = serde_json::Value::String(id.clone());
        let stem = id.replace('/', "--");
        match i % 3 {
            0 => std::fs::write(
                dir.join(format!("{stem}.yaml")),
                serde_yaml_ng::to_string(&card).unwrap(),
            ),
            1 => std::fs::write(
                dir.join(format!("{stem}.json")),
                serde_json::to_string_pretty(&card).unwrap(),
            ),
            _ => std::fs::write(
                dir.join(format!("{stem}.toml")),
                toml::to_string(&card).unwrap(),
            ),
        }
        .unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    write_cards(dir.path());
    let settings = Settings {
        paths: vec![dir.path().to_string_lossy().into_owned()],
        format: ReportFormat::Text,
        deny_warnings: false,
    };
    let mut out = Vec::new();
    let outcome = validate::run(&settings, &mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains(&format!("{FILES} files checked: {FILES} valid")),
        "{outcome:?}: {text}"
    );
    let mut group = c.benchmark_group("validate");
    group.sample_size(10);
    group.bench_function("1000 card files (yaml/json/toml)", |b| {
        b.iter(|| {
            out.clear();
            validate::run(&settings, &mut out).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
