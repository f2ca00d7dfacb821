//! Planning a 128-layer model over a 1,000-host inventory (the target:
//! under 50 ms; the fewest-hosts search must not be exponential).
//!
//! Cases: a model that needs 16 hosts, one that needs 111 (near the
//! one-layer-per-host limit), a model no set of hosts can hold (the error
//! gives the arithmetic of the 128 largest hosts: a pipeline of 128 layers
//! uses at most 128), plan + document + canonical JSON, and parsing the
//! 1,000-host inventory.
//! Run: `CARGO_TARGET_DIR=/root/.cache/skulk/target-dev cargo bench --no-default-features --bench plan`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

use skulk::card::ModelCard;
use skulk::inventory::{self, Inventory};
use skulk::plan::{plan, PlanDocument, PlanRequest};

const HOSTS: usize = 1000;

/// A deterministic mixed fleet: 8-192 GiB of RAM, a quarter with GPUs,
/// backends drawn from cpu / cuda / vulkan.
fn inventory_value() -> Value {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        // xorshift64*: fixed seed, same fleet every run.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let hosts: Vec<Value> = (0..HOSTS)
        .map(|i| {
            let total_gib = 8 + next() % 185;
            let available_gib = total_gib - next() % (total_gib / 2 + 1);
            let mut backends = vec!["llama_cpp-cpu"];
            let gpu = next() % 4 == 0;
            if gpu {
                backends.push(if next() % 2 == 0 {
                    "llama_cpp-cuda"
                } else {
                    "llama_cpp-vulkan"
                });
            }
            let mut host = json!({
                "name": format!("host-{i:04}"),
                "address": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                "memory": {"total": format!("{total_gib}GiB"), "available": format!("{available_gib}GiB")},
                "backends": backends,
            });
            if gpu {
                host["vram"] = json!(format!("{}GiB", 8 + next() % 41));
            }
            host
        })
        .collect();
    json!({ "hosts": hosts })
}

/// Sizes (GiB) of the feasible cases, found by `SKULK_BENCH_PROBE=1`.
const MEDIUM_GIB: u64 = 2000;
const LARGE_GIB: u64 = 8000;

fn card(storage_gib: u64) -> ModelCard {
    serde_json::from_value(json!({
        "modelId": "bench/model-128",
        "storageSize": {"inBytes": storage_gib << 30},
        "nLayers": 128,
        "hiddenSize": 16384,
        "numKeyValueHeads": 8,
        "supportsTensor": false,
        "tasks": ["TextGeneration"],
        "ggufFile": "model-128.gguf",
        "placement": {
            "compatibleBackends": ["llama_cpp-cpu", "llama_cpp-cuda", "llama_cpp-vulkan"],
            "backendPreference": ["llama_cpp-cuda", "llama_cpp-vulkan", "llama_cpp-cpu"]
        }
    }))
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let value = inventory_value();
    let inventory: Inventory = inventory::parse(&value).unwrap();
    let request = PlanRequest::default();
    let mut group = c.benchmark_group("plan_128_layers_1000_hosts");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(4));

    let medium = card(MEDIUM_GIB);
    let large = card(LARGE_GIB);
    let too_large = card(60_000);
    let ranks = |card: &ModelCard| plan(card, &inventory, &request).map(|p| p.ranks.len());
    if std::env::var_os("SKULK_BENCH_PROBE").is_some() {
        for gib in (250..=8000).step_by(250) {
            println!(
                "{gib} GiB: {:?}",
                ranks(&card(gib)).map_err(|_| "infeasible")
            );
        }
    }
    println!(
        "ranks: medium model {:?}, large model {:?}, 60 TiB model {:?}",
        ranks(&medium),
        ranks(&large),
        ranks(&too_large).map_err(|e| format!("error of {} lines", e.to_string().lines().count()))
    );

    group.bench_function("needs 16 hosts", |b| {
        b.iter(|| plan(black_box(&medium), black_box(&inventory), &request).unwrap())
    });
    group.bench_function("needs 111 hosts", |b| {
        b.iter(|| plan(black_box(&large), black_box(&inventory), &request).unwrap())
    });
    group.bench_function("infeasible, error lists the 128 largest hosts", |b| {
        b.iter(|| plan(black_box(&too_large), black_box(&inventory), &request).unwrap_err())
    });
    group.bench_function("plan + document + JSON (111 ranks)", |b| {
        b.iter(|| {
            let placed = plan(black_box(&large), black_box(&inventory), &request).unwrap();
            PlanDocument::from_plan(&placed).to_json()
        })
    });
    group.bench_function("parse 1000-host inventory", |b| {
        b.iter(|| inventory::parse(black_box(&value)).unwrap())
    });
    group.finish();
}

criterion_group!(plan_benches, benches);
criterion_main!(plan_benches);
