//! `skulk plan` beyond the golden cases: `--out` writes the JSON plan
//! atomically (the same bytes as `-o json`, nothing left behind on error),
//! and identical inputs give identical bytes run after run.

use std::path::Path;
use std::process::{Command, Output};

use skulk::plan::PlanDocument;

fn golden(case: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cli/plan")
        .join(case)
}

fn skulk_plan(case: &str, extra: &[&str]) -> Output {
    let dir = golden(case);
    Command::new(env!("CARGO_BIN_EXE_skulk"))
        .arg("plan")
        .arg("--card")
        .arg(dir.join("card.yaml"))
        .arg("--inventory")
        .arg(dir.join("inventory.yaml"))
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn out_writes_the_json_plan_and_it_parses_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("plan.json");
    let run = skulk_plan(
        "three-hosts",
        &["-o", "json", "--out", out.to_str().unwrap()],
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.as_bytes(), run.stdout.as_slice());
    assert_eq!(
        entries(tmp.path()),
        ["plan.json"],
        "no temporary file is left"
    );
    let document = PlanDocument::from_json(&written).unwrap();
    assert_eq!(
        document.to_json(),
        written,
        "a no-op re-plan is byte-identical"
    );
    assert_eq!(document.rank_specs().unwrap().len(), 3);
}

#[test]
fn out_with_table_output_still_writes_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("plan.json");
    let run = skulk_plan("one-host", &["--out", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&run.stdout).contains("context limit"));
    PlanDocument::from_json(&std::fs::read_to_string(&out).unwrap()).unwrap();
}

#[test]
fn an_infeasible_plan_writes_nothing_and_keeps_an_old_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("plan.json");
    std::fs::write(&out, "old plan\n").unwrap();
    let run = skulk_plan("exact-fit-rejection", &["--out", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(run.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old plan\n");
    assert_eq!(entries(tmp.path()), ["plan.json"]);
}

#[test]
fn an_unwritable_out_path_is_a_runtime_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("missing-dir/plan.json");
    let run = skulk_plan("one-host", &["--out", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.starts_with("error: cannot write `"), "{stderr}");
    assert!(
        run.stdout.is_empty(),
        "nothing is printed when the file cannot be written"
    );
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn identical_inputs_give_identical_bytes() {
    for case in ["two-hosts", "jaccl", "tensor", "four-hosts"] {
        let first = skulk_plan(case, &["-o", "json"]);
        let second = skulk_plan(case, &["-o", "json"]);
        assert_eq!(first.status.code(), Some(0), "{case}");
        assert_eq!(first.stdout, second.stdout, "{case}");
    }
}

#[test]
fn a_missing_card_file_is_a_runtime_error() {
    let dir = golden("one-host");
    let run = Command::new(env!("CARGO_BIN_EXE_skulk"))
        .args(["plan", "--card", "no-such-card.yaml", "--inventory"])
        .arg(dir.join("inventory.yaml"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.starts_with("error: no-such-card.yaml: cannot read the file"),
        "{stderr}"
    );
}

#[test]
fn the_seed_example_is_reproduced_in_shape_and_assignment() {
    let text = std::fs::read_to_string(golden("seed-example").join("stdout")).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&text).unwrap();
    let seed_text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/seed-create-instance-params.json"),
    )
    .unwrap();
    let seed: serde_json::Value = serde_json::from_str(&seed_text).unwrap();
    let ours_ring = &ours["instance"]["MlxRingInstance"];
    let seed_ring = &seed["instance"]["MlxRingInstance"];
    assert_eq!(ours_ring["hostsByNode"], seed_ring["hostsByNode"]);
    assert_eq!(
        ours_ring["shardAssignments"]["modelId"],
        seed_ring["shardAssignments"]["modelId"]
    );
    let runner = ours_ring["shardAssignments"]["nodeToRunner"]["node-1"]
        .as_str()
        .unwrap();
    let mut shard = ours_ring["shardAssignments"]["runnerToShard"][runner].clone();
    // skulk always records the backend it resolved; the seed's example omits it.
    assert_eq!(shard["PipelineShardMetadata"]["resolvedBackend"], "mlx");
    shard["PipelineShardMetadata"]
        .as_object_mut()
        .unwrap()
        .remove("resolvedBackend");
    assert_eq!(
        shard,
        seed_ring["shardAssignments"]["runnerToShard"]["runner-1"]
    );
    // Same keys in the same (sorted) order, skulk's own ids and port aside.
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(ours_ring), keys(seed_ring));
    assert_eq!(keys(&ours), ["instance", "skulk"]);
}

/// `skulk plan` of the three-hosts case (80 layers split 27/27/26) with the
/// card's `family` replaced.
fn plan_with_family(family: &str, extra: &[&str]) -> Output {
    let dir = golden("three-hosts");
    let card = std::fs::read_to_string(dir.join("card.yaml"))
        .unwrap()
        .replace("family: llama\n", &format!("family: {family}\n"));
    let tmp = tempfile::tempdir().unwrap();
    let card_path = tmp.path().join("card.yaml");
    std::fs::write(&card_path, card).unwrap();
    Command::new(env!("CARGO_BIN_EXE_skulk"))
        .arg("plan")
        .arg("--card")
        .arg(&card_path)
        .arg("--inventory")
        .arg(dir.join("inventory.yaml"))
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn plan_warns_when_the_cards_architecture_cannot_be_split() {
    let run = plan_with_family("rwkv7", &[]);
    assert_eq!(run.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("warning: the card's family `rwkv7` is a llama.cpp architecture skulk cannot split across hosts yet, and this plan has 3 ranks; `skulk apply` will refuse it")
            && stderr.contains("hint: skulk splits llama, mistral3,")
            && stderr.contains("--nodes 1"),
        "{stderr}"
    );
    // A family that is no llama.cpp architecture says nothing either.
    let run = plan_with_family("llama-family", &[]);
    assert!(!String::from_utf8_lossy(&run.stderr).contains("warning"));
}

#[test]
fn plan_warns_about_ranks_llama_cpp_would_run_differently() {
    // 27/27/26 layers: DeepSeek ranks of 26 or 27 layers load as the Lite
    // model; Llama 4 ranks must start on multiples of 4.
    let stderr = String::from_utf8_lossy(&plan_with_family("deepseek2", &[]).stderr).into_owned();
    assert_eq!(stderr.matches("warning: rank").count(), 3, "{stderr}");
    assert!(stderr.contains("warning: rank 2 holds layers `54..80`: llama.cpp takes a DeepSeek-V2 file of 26 layers for the Lite model"), "{stderr}");
    assert!(
        stderr.contains("hint: set the split with `--layers`"),
        "{stderr}"
    );
    let stderr = String::from_utf8_lossy(&plan_with_family("llama4", &[]).stderr).into_owned();
    assert_eq!(stderr.matches("warning: rank").count(), 2, "{stderr}");
    assert!(
        stderr
            .contains("rank 1 holds layers `27..54`: Llama 4 ranks must start on a multiple of 4"),
        "{stderr}"
    );
    let stderr =
        String::from_utf8_lossy(&plan_with_family("llama4", &["--layers", "28,28,24"]).stderr)
            .into_owned();
    assert!(!stderr.contains("warning"), "{stderr}");
}
