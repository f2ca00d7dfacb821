use proptest::prelude::*;
use serde_json::{json, Value};

use super::document::{PlanDocument, RankSelector};
use super::*;
use crate::inventory;

const GIB: u64 = 1 << 30;

fn card(value: Value) -> ModelCard {
    let mut base = json!({
        "modelId": "org/model",
        "storageSize": {"inBytes": 4 * GIB},
        "nLayers": 32,
        "hiddenSize": 2048,
        "supportsTensor": false,
        "tasks": ["TextGeneration"],
        "placement": {"compatibleBackends": ["llama_cpp-cpu", "llama_cpp-cuda", "mlx"]}
    });
    for (k, v) in value.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

/// Hosts `(name, usable GiB as vram)` on 10.0.0.x, llama_cpp-cpu.
fn vram_hosts(hosts: &[(&str, &str)]) -> Inventory {
    let entries: Vec<Value> = hosts
        .iter()
        .enumerate()
        .map(|(i, (name, vram))| {
            json!({
                "name": name,
                "address": format!("10.0.0.{}", i + 1),
                "memory": {"total": "256GiB"},
                "vram": vram,
                "backends": ["llama_cpp-cpu"]
            })
        })
        .collect();
    inventory::parse(&json!({ "hosts": entries })).unwrap()
}

fn inv(value: Value) -> Inventory {
    inventory::parse(&value).unwrap()
}

fn layers(plan: &Plan) -> Vec<(String, u32, u32)> {
    plan.ranks
        .iter()
        .map(|r| (r.host.name.clone(), r.start_layer, r.end_layer))
        .collect()
}

fn counts(plan: &Plan) -> Vec<u32> {
    plan.ranks.iter().map(Rank::layer_count).collect()
}

fn err(result: Result<Plan, PlanError>) -> String {
    match result {
        Ok(plan) => panic!("expected an error, got {:?}", layers(&plan)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn one_host_gets_every_layer() {
    let plan = plan(
        &card(json!({})),
        &vram_hosts(&[("a", "16GiB")]),
        &PlanRequest::default(),
    )
    .unwrap();
    assert_eq!(layers(&plan), [("a".to_string(), 0, 32)]);
    assert_eq!(plan.engine, "llama_cpp");
    assert_eq!(plan.ranks[0].resolved_backend, "llama_cpp-cpu");
}

#[test]
fn context_limit_of_the_reference_is_53657() {
    // 4 GiB card, 32 layers, 8 KV heads on a 16 GiB host: the Python
    // Skulk's `int((12 GiB - 4 GiB x 1.3 - 256 MiB) / 131072)`.
    let card = card(json!({"numKeyValueHeads": 8, "placement": {"compatibleBackends": ["mlx"]}}));
    let inventory = inv(json!({"hosts": [{
        "name": "a", "address": "10.0.0.1",
        "memory": {"total": "16GiB", "available": "16GiB"},
        "backends": ["mlx"]
    }]}));
    let plan = plan(&card, &inventory, &PlanRequest::default()).unwrap();
    assert_eq!(plan.context_token_limit, Some(53657));
}

#[test]
fn context_limit_caps() {
    let inventory = inv(json!({"hosts": [{
        "name": "a", "address": "10.0.0.1", "memory": {"total": "64GiB"}, "backends": ["mlx", "llama_cpp-cpu"]
    }]}));
    // Card context 1000 on 64 GiB: 1000.
    let c = card(json!({"numKeyValueHeads": 8, "contextLength": 1000}));
    assert_eq!(
        plan(&c, &inventory, &PlanRequest::default())
            .unwrap()
            .context_token_limit,
        Some(1000)
    );
    // Nothing known: no limit.
    let c = card(json!({"placement": {"compatibleBackends": ["mlx"]}}));
    assert_eq!(
        plan(&c, &inventory, &PlanRequest::default())
            .unwrap()
            .context_token_limit,
        None
    );
    // GGUF: at most 8192, unless --context asks for more.
    let c = card(
        json!({"numKeyValueHeads": 8, "ggufFile": "m.gguf", "placement": {"compatibleBackends": ["llama_cpp-cpu"]}}),
    );
    assert_eq!(
        plan(&c, &inventory, &PlanRequest::default())
            .unwrap()
            .context_token_limit,
        Some(8192)
    );
    let more = PlanRequest {
        context: Some(20000),
        ..Default::default()
    };
    assert_eq!(
        plan(&c, &inventory, &more).unwrap().context_token_limit,
        Some(20000)
    );
    let less = PlanRequest {
        context: Some(2048),
        ..Default::default()
    };
    assert_eq!(
        plan(&c, &inventory, &less).unwrap().context_token_limit,
        Some(2048)
    );
    // GGUF without KV heads: the 8192 cap alone.
    let c =
        card(json!({"ggufFile": "m.gguf", "placement": {"compatibleBackends": ["llama_cpp-cpu"]}}));
    assert_eq!(
        plan(&c, &inventory, &PlanRequest::default())
            .unwrap()
            .context_token_limit,
        Some(8192)
    );
    // maxContextTokens caps both the budget and the limit.
    let c = card(
        json!({"numKeyValueHeads": 8, "placement": {"compatibleBackends": ["mlx"], "maxContextTokens": 3000}}),
    );
    let p = plan(&c, &inventory, &PlanRequest::default()).unwrap();
    assert_eq!(
        (p.context_token_limit, p.kv_budget_tokens),
        (Some(3000), 3000)
    );
}

#[test]
fn layers_split_in_proportion_to_usable_memory() {
    // 12 GiB of weights (x1.3, MLX) need all three hosts.
    let c = card(
        json!({"nLayers": 12, "storageSize": {"inBytes": 12 * GIB}, "placement": {"compatibleBackends": ["llama_cpp-cpu"]}}),
    );
    let p = plan(
        &c,
        &vram_hosts(&[("a", "5GiB"), ("b", "5GiB"), ("c", "10GiB")]),
        &PlanRequest::default(),
    )
    .unwrap();
    assert_eq!(counts(&p), [3, 3, 6]);
    let p = plan(
        &c,
        &vram_hosts(&[("a", "3.12GiB"), ("b", "4.68GiB"), ("c", "10.92GiB")]),
        &PlanRequest::default(),
    )
    .unwrap();
    assert_eq!(counts(&p), [2, 3, 7]);
    assert_eq!(
        layers(&p),
        [("a".into(), 0, 2), ("b".into(), 2, 5), ("c".into(), 5, 12)]
    );
}

#[test]
fn exact_fit_of_weights_is_rejected() {
    // 1 host with 8 GiB available of 16 GiB, an 8 GiB card of 10 layers.
    let inventory = inv(json!({"hosts": [{
        "name": "a", "address": "10.0.0.1",
        "memory": {"total": "16GiB", "available": "8GiB"},
        "backends": ["llama_cpp-cpu"]
    }]}));
    let big = card(json!({"nLayers": 10, "storageSize": {"inBytes": 8 * GIB}}));
    let message = err(plan(&big, &inventory, &PlanRequest::default()));
    assert!(
        message.contains("a: needs 10.65 GiB (8.00 GiB weights x 1.30 + 0.25 GiB runtime) but can use 8.00 GiB (min of available 8.00 GiB and 75% of total 16.00 GiB): does not fit"),
        "{message}"
    );
    assert!(
        message.ends_with("hint: add hosts, or use a smaller quant of the model"),
        "{message}"
    );
    let small = card(json!({"nLayers": 10, "storageSize": {"inBytes": 5 * GIB}}));
    assert!(plan(&small, &inventory, &PlanRequest::default()).is_ok());
}

#[test]
fn need_equal_to_usable_fits_one_byte_less_does_not() {
    let c =
        card(json!({"nLayers": 10, "storageSize": {"inBytes": 10 * GIB}, "ggufFile": "m.gguf"}));
    // need = 10 GiB x 1.1 + 256 MiB = 11.25 GiB.
    let exact = 11 * GIB + GIB / 4;
    assert!(plan(
        &c,
        &vram_hosts(&[("a", &exact.to_string())]),
        &PlanRequest::default()
    )
    .is_ok());
    let short = (exact - 1).to_string();
    assert!(plan(&c, &vram_hosts(&[("a", &short)]), &PlanRequest::default()).is_err());
}

#[test]
fn fewest_hosts_are_used_and_min_nodes_is_a_lower_bound() {
    let c = card(json!({"storageSize": {"inBytes": 6 * GIB}}));
    let hosts = vram_hosts(&[("a", "16GiB"), ("b", "16GiB"), ("c", "16GiB")]);
    assert_eq!(
        plan(&c, &hosts, &PlanRequest::default())
            .unwrap()
            .ranks
            .len(),
        1
    );
    let two = PlanRequest {
        min_nodes: Some(2),
        ..Default::default()
    };
    assert_eq!(
        layers(&plan(&c, &hosts, &two).unwrap()),
        [("a".into(), 0, 16), ("b".into(), 16, 32)]
    );
    let four = PlanRequest {
        min_nodes: Some(4),
        ..Default::default()
    };
    let message = err(plan(&c, &hosts, &four));
    assert_eq!(
        message,
        "4 hosts are required, but the inventory has only 3 (`--min-nodes`)"
    );
}

#[test]
fn larger_hosts_are_preferred_and_ring_order_is_inventory_order() {
    let c = card(json!({"storageSize": {"inBytes": 20 * GIB}}));
    let hosts = vram_hosts(&[
        ("small", "8GiB"),
        ("big1", "16GiB"),
        ("mid", "12GiB"),
        ("big2", "16GiB"),
    ]);
    let p = plan(&c, &hosts, &PlanRequest::default()).unwrap();
    assert_eq!(
        p.ranks
            .iter()
            .map(|r| r.host.name.as_str())
            .collect::<Vec<_>>(),
        ["big1", "big2"]
    );
}

#[test]
fn excluded_hosts_are_never_used() {
    let c = card(json!({"storageSize": {"inBytes": 6 * GIB}}));
    let hosts = vram_hosts(&[("a", "16GiB"), ("b", "16GiB")]);
    let request = PlanRequest {
        exclude: vec!["a".into()],
        ..Default::default()
    };
    assert_eq!(
        layers(&plan(&c, &hosts, &request).unwrap()),
        [("b".into(), 0, 32)]
    );
    let request = PlanRequest {
        exclude: vec!["zz".into()],
        ..Default::default()
    };
    let e = plan(&c, &hosts, &request).unwrap_err();
    assert!(e.is_usage());
    assert_eq!(
        e.to_string(),
        "`--exclude zz`: the inventory has no host `zz`; its hosts are `a`, `b`"
    );
}

#[test]
fn nodes_fix_hosts_and_order() {
    let c = card(json!({"storageSize": {"inBytes": 6 * GIB}}));
    let hosts = vram_hosts(&[("a", "16GiB"), ("b", "16GiB"), ("c", "8GiB")]);
    let request = PlanRequest {
        nodes: Some(vec!["c".into(), "a".into()]),
        ..Default::default()
    };
    let p = plan(&c, &hosts, &request).unwrap();
    assert_eq!(layers(&p), [("c".into(), 0, 11), ("a".into(), 11, 32)]);
    let request = PlanRequest {
        nodes: Some(vec!["a".into(), "a".into()]),
        ..Default::default()
    };
    assert!(plan(&c, &hosts, &request).unwrap_err().is_usage());
}

#[test]
fn manual_layers_are_used_and_checked_against_memory() {
    let c = card(json!({"storageSize": {"inBytes": 16 * GIB}}));
    let hosts = vram_hosts(&[("a", "16GiB"), ("b", "16GiB")]);
    let request = PlanRequest {
        layers: Some(vec![10, 22]),
        ..Default::default()
    };
    let p = plan(&c, &hosts, &request).unwrap();
    assert_eq!(counts(&p), [10, 22]);
    // 30 of 32 layers on one 16 GiB host: 15 GiB x 1.3 does not fit.
    let request = PlanRequest {
        layers: Some(vec![30, 2]),
        ..Default::default()
    };
    let message = err(plan(&c, &hosts, &request));
    assert!(
        message.starts_with("the layer split `--layers 30,2` does not fit"),
        "{message}"
    );
    assert!(message.contains("a: needs 19.75 GiB (15.00 GiB weights x 1.30 + 0.25 GiB runtime) but can use 16.00 GiB (its vram): does not fit (30 layers)"), "{message}");
    let request = PlanRequest {
        layers: Some(vec![10, 20]),
        ..Default::default()
    };
    assert_eq!(
        plan(&c, &hosts, &request).unwrap_err(),
        PlanError::Usage("`--layers` adds up to 30 layers, but `org/model` has 32".into())
    );
}

#[test]
fn integer_split_is_checked_again() {
    // Fits continuously (0.375 of 13 GiB on b), but b gets 1 of 2 layers.
    let c = card(json!({"nLayers": 2, "storageSize": {"inBytes": 13 * GIB}, "ggufFile": "m.gguf"}));
    let message = err(plan(
        &c,
        &vram_hosts(&[("a", "10GiB"), ("b", "6GiB")]),
        &PlanRequest::default(),
    ));
    assert!(message.starts_with("host `b` (rank 1) cannot hold its 1 of 2 layers: they are 6.50 GiB of weights, but it can use 6.00 GiB"), "{message}");
}

#[test]
fn a_host_with_no_room_for_context_is_an_error() {
    let c = card(
        json!({"nLayers": 2, "numKeyValueHeads": 8, "storageSize": {"inBytes": 11 * GIB}, "placement": {"compatibleBackends": ["llama_cpp-cpu"]}}),
    );
    let message = err(plan(
        &c,
        &vram_hosts(&[("a", "10GiB"), ("b", "6GiB")]),
        &PlanRequest::default(),
    ));
    assert!(
        message.starts_with("host `b` (rank 1) has no memory left for any context"),
        "{message}"
    );
}

#[test]
fn a_set_whose_integer_split_fails_gives_way_to_a_larger_one() {
    // Two hosts fit by continuous shares, but `a` gets 3 of 4 layers and
    // then has no room for context; three hosts work.
    let c = card(
        json!({"nLayers": 4, "numKeyValueHeads": 8, "storageSize": {"inBytes": 13 * GIB}, "ggufFile": "m.gguf"}),
    );
    let p = plan(
        &c,
        &vram_hosts(&[("a", "10GiB"), ("b", "6GiB"), ("c", "6GiB")]),
        &PlanRequest::default(),
    )
    .unwrap();
    assert_eq!(counts(&p), [2, 1, 1]);
    let two = PlanRequest {
        nodes: Some(vec!["a".into(), "b".into()]),
        ..Default::default()
    };
    let message = err(plan(
        &c,
        &vram_hosts(&[("a", "10GiB"), ("b", "6GiB"), ("c", "6GiB")]),
        &two,
    ));
    assert!(
        message.starts_with("host `a` (rank 0) has no memory left for any context"),
        "{message}"
    );
}

#[test]
fn tensor_sharding_rules() {
    let hosts = vram_hosts(&[("a", "16GiB"), ("b", "16GiB"), ("c", "16GiB")]);
    let tensor = |nodes: &[&str]| PlanRequest {
        sharding: Sharding::Tensor,
        nodes: Some(nodes.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let no = card(json!({}));
    assert!(err(plan(&no, &hosts, &tensor(&["a", "b"])))
        .contains("does not support tensor parallelism"));
    let yes = card(
        json!({"supportsTensor": true, "numKeyValueHeads": 8, "storageSize": {"inBytes": 20 * GIB}}),
    );
    let p = plan(&yes, &hosts, &tensor(&["a", "b"])).unwrap();
    assert_eq!(p.sharding, Sharding::Tensor);
    assert_eq!(layers(&p), [("a".into(), 0, 32), ("b".into(), 0, 32)]);
    let message = err(plan(&yes, &hosts, &tensor(&["a", "b", "c"])));
    assert!(message.starts_with("tensor sharding over 3 hosts needs the host count to divide hiddenSize `2048` and numKeyValueHeads `8`"), "{message}");
    // The search skips sizes that do not divide: 20 GiB needs 2 hosts.
    let search = PlanRequest {
        sharding: Sharding::Tensor,
        ..Default::default()
    };
    assert_eq!(plan(&yes, &hosts, &search).unwrap().ranks.len(), 2);
    // Tensor memory: a 16 + 24 pair whose sum covers the model, but the even
    // split overloads the 16.
    let pair = vram_hosts(&[("a", "16GiB"), ("b", "24GiB")]);
    let big = card(json!({"supportsTensor": true, "storageSize": {"inBytes": 26 * GIB}}));
    assert!(err(plan(&big, &pair, &tensor(&["a", "b"]))).contains("a: needs 17.15 GiB"));
    assert!(plan(
        &big,
        &pair,
        &PlanRequest {
            nodes: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        }
    )
    .is_ok());
}

#[test]
fn a_single_host_is_always_a_pipeline_ring() {
    let c = card(json!({"supportsTensor": true}));
    let hosts = vram_hosts(&[("a", "16GiB")]);
    let request = PlanRequest {
        sharding: Sharding::Tensor,
        ..Default::default()
    };
    let p = plan(&c, &hosts, &request).unwrap();
    assert_eq!(
        (p.sharding, p.instance),
        (Sharding::Pipeline, InstanceKind::Ring)
    );
    assert_eq!(p.notes.len(), 1);
}

#[test]
fn backend_mismatch_and_preference() {
    let mlx_only = card(json!({"placement": {"compatibleBackends": ["mlx"]}}));
    let hosts = vram_hosts(&[("a", "16GiB")]);
    let message = err(plan(&mlx_only, &hosts, &PlanRequest::default()));
    assert_eq!(
        message,
        "`org/model` needs at least 1 host, but only 0 of the inventory's 1 can run it:\n  a: skipped, its backends [`llama_cpp-cpu`] include none of the card's compatibleBackends [`mlx`]"
    );
    let preferring = card(json!({"placement": {
        "compatibleBackends": ["llama_cpp-cpu", "llama_cpp-cuda"],
        "backendPreference": ["llama_cpp-cuda", "llama_cpp-cpu"]
    }}));
    let hosts = inv(json!({"hosts": [
        {"name": "cpu", "address": "10.0.0.1", "memory": {"total": "64GiB"}, "backends": ["llama_cpp-cpu"]},
        {"name": "gpu", "address": "10.0.0.2", "memory": {"total": "32GiB"}, "vram": "24GiB", "backends": ["llama_cpp-cpu", "llama_cpp-cuda"]}
    ]}));
    let p = plan(&preferring, &hosts, &PlanRequest::default()).unwrap();
    assert_eq!(p.ranks[0].host.name, "gpu");
    assert_eq!(p.ranks[0].resolved_backend, "llama_cpp-cuda");
    assert_eq!(p.ranks[0].gpu_layers, GpuLayers::All);
    let request = PlanRequest {
        nodes: Some(vec!["cpu".into()]),
        ..Default::default()
    };
    assert_eq!(
        plan(&preferring, &hosts, &request).unwrap().ranks[0].gpu_layers,
        GpuLayers::Count(0)
    );
}

#[test]
fn resolve_node_backend_matches_the_reference() {
    let set = |tags: &[&str]| tags.iter().map(|t| t.to_string()).collect::<BTreeSet<_>>();
    let compat = set(&["llama_cpp-vulkan", "llama_cpp-rocm"]);
    let node = set(&["llama_cpp-rocm", "llama_cpp-vulkan"]);
    let pref = vec!["llama_cpp-vulkan".to_string(), "llama_cpp-rocm".to_string()];
    assert_eq!(
        resolve_node_backend(&compat, &pref, &node).as_deref(),
        Some("llama_cpp-vulkan")
    );
    assert_eq!(
        resolve_node_backend(&compat, &[], &node).as_deref(),
        Some("llama_cpp-rocm")
    );
    assert_eq!(resolve_node_backend(&compat, &pref, &set(&["mlx"])), None);
}

#[test]
fn min_vram_gib_excludes_small_hosts() {
    let c =
        card(json!({"placement": {"compatibleBackends": ["llama_cpp-cpu"], "minVramGib": 20.0}}));
    let hosts = vram_hosts(&[("small", "16GiB"), ("big", "24GiB")]);
    assert_eq!(
        plan(&c, &hosts, &PlanRequest::default()).unwrap().ranks[0]
            .host
            .name,
        "big"
    );
}

fn jaccl_hosts(links: bool) -> Inventory {
    let rdma = |me: usize| -> Value {
        if !links {
            return json!({});
        }
        let mut map = serde_json::Map::new();
        for other in 0..3 {
            if other != me && !(me == 2 && other == 0 && !links) {
                map.insert(format!("m{other}"), json!(format!("rdma_en{}", other + 2)));
            }
        }
        Value::Object(map)
    };
    inv(json!({"hosts": (0..3).map(|i| json!({
        "name": format!("m{i}"), "address": format!("10.0.1.{}", i + 1),
        "memory": {"total": "64GiB"}, "backends": ["mlx"], "rdma": rdma(i)
    })).collect::<Vec<_>>()}))
}

#[test]
fn jaccl_devices_and_coordinators() {
    let c = card(
        json!({"supportsTensor": true, "storageSize": {"inBytes": 60 * GIB}, "placement": {"compatibleBackends": ["mlx"]}}),
    );
    let request = PlanRequest {
        instance: InstanceKind::Jaccl,
        ..Default::default()
    };
    let p = plan(&c, &jaccl_hosts(true), &request).unwrap();
    assert_eq!(p.instance, InstanceKind::Jaccl);
    let devices = p.jaccl_devices.clone().unwrap();
    assert_eq!(devices.len(), p.ranks.len());
    assert_eq!(devices[0][0], None);
    assert_eq!(devices[0][1].as_deref(), Some("rdma_en3"));
    assert_eq!(devices[1][0].as_deref(), Some("rdma_en2"));
    let doc = PlanDocument::from_plan(&p);
    let value = doc.to_value();
    let coordinators = &value["instance"]["MlxJacclInstance"]["jacclCoordinators"];
    assert_eq!(
        coordinators["m1"],
        json!(format!("10.0.1.1:{}", p.ring_port))
    );
    let message = err(plan(&c, &jaccl_hosts(false), &request));
    assert!(
        message.starts_with(
            "a jaccl instance needs RDMA links, but no host of the inventory declares any"
        ),
        "{message}"
    );
}

#[test]
fn jaccl_with_a_missing_link_names_it() {
    let c = card(
        json!({"storageSize": {"inBytes": 60 * GIB}, "placement": {"compatibleBackends": ["mlx"]}}),
    );
    let hosts = inv(json!({"hosts": [
        {"name": "m0", "address": "10.0.1.1", "memory": {"total": "64GiB"}, "backends": ["mlx"], "rdma": {"m1": "en1"}},
        {"name": "m1", "address": "10.0.1.2", "memory": {"total": "64GiB"}, "backends": ["mlx"]}
    ]}));
    let request = PlanRequest {
        instance: InstanceKind::Jaccl,
        nodes: Some(vec!["m0".into(), "m1".into()]),
        ..Default::default()
    };
    let message = err(plan(&c, &hosts, &request));
    assert!(message.starts_with("a jaccl instance needs all-to-all RDMA, but host `m1` declares no RDMA interface towards `m0`"), "{message}");
    let search = PlanRequest {
        instance: InstanceKind::Jaccl,
        ..Default::default()
    };
    let message = err(plan(&c, &hosts, &search));
    assert!(message.starts_with("a jaccl instance of `org/model` needs 2 or more hosts with RDMA interfaces towards each other, and the largest such group has 0"), "{message}");
}

#[test]
fn shared_addresses_cannot_be_in_one_plan() {
    let hosts = inv(json!({"hosts": [
        {"name": "a", "address": "10.0.0.1", "memory": {"total": "16GiB"}, "backends": ["llama_cpp-cpu"]},
        {"name": "b", "address": "10.0.0.1", "ssh": {"port": 2222}, "memory": {"total": "16GiB"}, "backends": ["llama_cpp-cpu"]}
    ]}));
    let c = card(json!({"storageSize": {"inBytes": 12 * GIB}}));
    assert!(err(plan(&c, &hosts, &PlanRequest::default()))
        .starts_with("hosts `a` and `b` share the address `10.0.0.1`"));
}

#[test]
fn ports_are_derived_deterministically_or_given() {
    let c = card(json!({}));
    let hosts = vram_hosts(&[("a", "16GiB")]);
    let p = plan(&c, &hosts, &PlanRequest::default()).unwrap();
    assert!(RING_PORTS.contains(&p.ring_port));
    assert_ne!(p.ring_port, DEFAULT_API_PORT);
    assert_eq!(
        plan(&c, &hosts, &PlanRequest::default()).unwrap().ring_port,
        p.ring_port
    );
    let given = PlanRequest {
        port: Some(50000),
        ..Default::default()
    };
    assert_eq!(plan(&c, &hosts, &given).unwrap().ring_port, 50000);
    let clash = PlanRequest {
        port: Some(52415),
        ..Default::default()
    };
    assert!(plan(&c, &hosts, &clash).unwrap_err().is_usage());
    // The API port is never derived as the ring port.
    for seed in 0u8..=255 {
        let port = derive_port(&[seed; 32], 50000);
        assert!(port != 50000 && port != DEFAULT_API_PORT);
    }
    let api = PlanRequest {
        api_bind: Some("0.0.0.0".into()),
        api_port: 8080,
        ..Default::default()
    };
    let p = plan(&c, &hosts, &api).unwrap();
    assert_eq!(
        p.api,
        ApiEndpoint {
            address: "0.0.0.0".into(),
            port: 8080,
            max_tokens: None
        }
    );
}

#[test]
fn derive_port_covers_the_range_uniformly_without_52415() {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&0u64.to_be_bytes());
    assert_eq!(derive_port(&seed, DEFAULT_API_PORT), 49152);
    let before = (52415 - 49152) as u64;
    seed[..8].copy_from_slice(&before.to_be_bytes());
    assert_eq!(derive_port(&seed, DEFAULT_API_PORT), 52416);
    seed[..8].copy_from_slice(&(16382u64).to_be_bytes());
    assert_eq!(derive_port(&seed, DEFAULT_API_PORT), 65535);
    seed[..8].copy_from_slice(&(16383u64).to_be_bytes());
    assert_eq!(derive_port(&seed, DEFAULT_API_PORT), 49152);
}

#[test]
fn document_round_trips_and_rank_specs_follow_the_ring() {
    let c = card(
        json!({"storageSize": {"inBytes": 30 * GIB}, "ggufFile": "sub/m-Q4_K_M.gguf", "numKeyValueHeads": 8}),
    );
    let hosts = inv(json!({"hosts": [
        {"name": "a", "address": "10.0.0.1", "memory": {"total": "16GiB"}, "backends": ["llama_cpp-cpu"], "threads": 4},
        {"name": "b", "address": "10.0.0.2", "connection": "local", "memory": {"total": "16GiB"}, "backends": ["llama_cpp-cpu"], "modelDir": "/srv/models/"},
        {"name": "c", "address": "10.0.0.3", "ssh": {"user": "u", "port": 2200}, "memory": {"total": "16GiB"}, "backends": ["llama_cpp-cpu"]},
        {"name": "d", "address": "10.0.0.4", "memory": {"total": "16GiB"}, "backends": ["llama_cpp-cpu"]}
    ]}));
    let p = plan(
        &c,
        &hosts,
        &PlanRequest {
            min_nodes: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.ranks.len(), 4);
    let doc = PlanDocument::from_plan(&p);
    let text = doc.to_json();
    let parsed = PlanDocument::from_json(&text).unwrap();
    assert_eq!(parsed, doc);
    assert_eq!(parsed.to_json(), text, "a no-op re-plan is byte-identical");

    let ring = &doc.to_value()["instance"]["MlxRingInstance"];
    let port = p.ring_port;
    assert_eq!(
        ring["hostsByNode"]["a"],
        json!([
            {"ip": "10.0.0.1", "port": port},
            {"ip": "10.0.0.2", "port": port},
            {"ip": "198.51.100.1", "port": 0},
            {"ip": "10.0.0.4", "port": port}
        ])
    );
    let spec = parsed.rank_spec(RankSelector::Node("b")).unwrap();
    assert_eq!(
        (
            spec.rank,
            spec.world_size,
            spec.start_layer,
            spec.end_layer,
            spec.n_layers
        ),
        (1, 4, 8, 16, 32)
    );
    assert_eq!(spec.previous.as_ref().unwrap().address, "10.0.0.1");
    assert_eq!(spec.next.as_ref().unwrap().address, "10.0.0.3");
    assert_eq!(spec.ring_port, port);
    assert_eq!(spec.model_path_dir(), "/srv/models/org--model");
    assert_eq!(spec.gguf_file.as_deref(), Some("sub/m-Q4_K_M.gguf"));
    assert_eq!(spec.connection, crate::inventory::Connection::Local);
    assert_eq!(spec.ssh, None);
    assert_eq!(spec.api.address, "10.0.0.1");
    assert_eq!(spec.api.port, DEFAULT_API_PORT);
    assert_eq!(spec.context_token_limit, p.context_token_limit);
    assert_eq!(spec.plan_digest, doc.skulk.plan_digest);
    let last = parsed.rank_spec(RankSelector::Rank(3)).unwrap();
    assert_eq!(last.node, "d");
    assert_eq!(last.next.unwrap().rank, 0);
    let a = parsed.rank_spec(RankSelector::Rank(0)).unwrap();
    assert_eq!(a.threads, Some(4));
    assert_eq!(a.model_dir, crate::settings::paths::DEFAULT_MODEL_DIR);
    let c_spec = parsed.rank_spec(RankSelector::Node("c")).unwrap();
    assert_eq!(c_spec.ssh.unwrap().port, 2200);
    assert!(matches!(
        parsed.rank_spec(RankSelector::Rank(4)),
        Err(document::DocumentError::NoSuchRank { .. })
    ));
    assert!(matches!(
        parsed.rank_spec(RankSelector::Node("zz")),
        Err(document::DocumentError::NoSuchNode(_))
    ));
    assert_eq!(parsed.rank_specs().unwrap().len(), 4);

    // Machines: `b` is `local`, so it is the machine skulk runs on; the
    // others are three more.
    assert_eq!(spec.machines, 4);
    // Loopback addresses and `local` nodes are all this one machine (a ring
    // of local ranks), and one address named twice is one machine.
    let mut same = parsed.clone();
    for (node, address) in [("a", "127.0.9.1"), ("c", "127.0.9.3"), ("d", "localhost")] {
        same.skulk.hosts.get_mut(node).unwrap().address = address.into();
    }
    assert_eq!(same.rank_spec(RankSelector::Rank(2)).unwrap().machines, 1);
    same.skulk.hosts.get_mut("a").unwrap().address = "10.0.0.9".into();
    same.skulk.hosts.get_mut("c").unwrap().address = "10.0.0.9".into();
    assert_eq!(same.rank_spec(RankSelector::Rank(0)).unwrap().machines, 2);
}

#[test]
fn an_edited_document_is_refused() {
    let p = plan(
        &card(json!({})),
        &vram_hosts(&[("a", "16GiB"), ("b", "16GiB")]),
        &PlanRequest {
            min_nodes: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let text = PlanDocument::from_plan(&p).to_json();
    let edited = text.replacen("\"endLayer\": 16", "\"endLayer\": 17", 1);
    assert_ne!(edited, text);
    assert!(matches!(
        PlanDocument::from_json(&edited),
        Err(document::DocumentError::Digest { .. })
    ));
    // A consistent-looking but inconsistent document with a matching digest.
    let mut doc = PlanDocument::from_plan(&p);
    if let document::Instance::MlxRingInstance(ring) = &mut doc.instance {
        for meta in ring.shard_assignments.runner_to_shard.values_mut() {
            if let document::ShardMetadata::PipelineShardMetadata(s) = meta {
                s.device_rank = 0;
            }
        }
    }
    doc.skulk.plan_digest = doc.compute_digest();
    assert!(matches!(
        PlanDocument::from_json(&doc.to_json()),
        Err(document::DocumentError::Inconsistent(_))
    ));
    let unknown = text.replacen("\"engine\"", "\"extra\": 1,\n    \"engine\"", 1);
    match PlanDocument::from_json(&unknown) {
        Err(document::DocumentError::Malformed { pointer, message }) => {
            assert_eq!(pointer, "/skulk/extra");
            assert!(message.starts_with("unknown field `extra`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn seed_example_card_on_one_host_matches_the_seed_shape() {
    let seed_card: ModelCard = serde_json::from_value(json!({
        "hiddenSize": 2048,
        "modelId": "mlx-community/Llama-3.2-1B-Instruct-4bit",
        "nLayers": 32,
        "storageSize": {"inBytes": 2147483648u64},
        "supportsTensor": false,
        "tasks": ["TextGeneration"]
    }))
    .unwrap();
    let hosts = inv(
        json!({"hosts": [{"name": "node-1", "address": "10.0.0.1", "memory": {"total": "16GiB"}, "backends": ["mlx"]}]}),
    );
    let p = plan(&seed_card, &hosts, &PlanRequest::default()).unwrap();
    let mut value = PlanDocument::from_plan(&p).to_value();
    let ring = value["instance"]["MlxRingInstance"]
        .as_object_mut()
        .unwrap();
    let runner = p.ranks[0].runner_id.clone();
    // Replace skulk's own ids and port by the seed's, then compare exactly.
    ring.insert(
        "instanceId".into(),
        json!("00000000-0000-0000-0000-000000000000"),
    );
    ring.insert("ephemeralPort".into(), json!(52416));
    let assignments = ring["shardAssignments"].as_object_mut().unwrap();
    assignments.insert("nodeToRunner".into(), json!({"node-1": "runner-1"}));
    let shard = assignments["runnerToShard"][&runner].clone();
    assignments.insert("runnerToShard".into(), json!({"runner-1": shard}));
    let seed = json!({"MlxRingInstance": {
        "ephemeralPort": 52416,
        "hostsByNode": {"node-1": []},
        "instanceId": "00000000-0000-0000-0000-000000000000",
        "shardAssignments": {
            "modelId": "mlx-community/Llama-3.2-1B-Instruct-4bit",
            "nodeToRunner": {"node-1": "runner-1"},
            "runnerToShard": {"runner-1": {"PipelineShardMetadata": {
                "deviceRank": 0,
                "endLayer": 32,
                "modelCard": {
                    "hiddenSize": 2048,
                    "modelId": "mlx-community/Llama-3.2-1B-Instruct-4bit",
                    "nLayers": 32,
                    "storageSize": {"inBytes": 2147483648u64},
                    "supportsTensor": false,
                    "tasks": ["TextGeneration"]
                },
                "nLayers": 32,
                "resolvedBackend": "mlx",
                "startLayer": 0,
                "worldSize": 1
            }}}
        }
    }});
    assert_eq!(value["instance"], seed);
}

#[test]
fn ids_are_uuid_v5_and_stable() {
    let c = card(json!({}));
    let hosts = vram_hosts(&[("a", "16GiB"), ("b", "16GiB")]);
    let request = PlanRequest {
        min_nodes: Some(2),
        ..Default::default()
    };
    let p = plan(&c, &hosts, &request).unwrap();
    let id = Uuid::parse_str(&p.instance_id).unwrap();
    assert_eq!(id.get_version_num(), 5);
    assert_ne!(p.ranks[0].runner_id, p.ranks[1].runner_id);
    assert_eq!(
        plan(&c, &hosts, &request).unwrap().instance_id,
        p.instance_id
    );
    let other = plan(&card(json!({"modelId": "org/other"})), &hosts, &request).unwrap();
    assert_ne!(other.instance_id, p.instance_id);
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct HostGen {
    total_mib: u64,
    available_permille: u64,
    vram_mib: Option<u64>,
}

fn host_gen() -> impl Strategy<Value = HostGen> {
    (
        512u64..96 * 1024,
        1u64..=1000,
        prop::option::weighted(0.2, 512u64..48 * 1024),
    )
        .prop_map(|(total_mib, available_permille, vram_mib)| HostGen {
            total_mib,
            available_permille,
            vram_mib,
        })
}

fn inventory_of(hosts: &[HostGen]) -> Inventory {
    let entries: Vec<Value> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let total = h.total_mib * 1024 * 1024;
            let mut entry = json!({
                "name": format!("h{i}"),
                "address": format!("10.1.{}.{}", i / 200, i % 200 + 1),
                "memory": {"total": total, "available": (total * h.available_permille / 1000).max(inventory::MIN_BARE_BYTES)},
                "backends": ["llama_cpp-cpu"]
            });
            if let Some(v) = h.vram_mib {
                entry["vram"] = json!(v * 1024 * 1024);
            }
            entry
        })
        .collect();
    inventory::parse(&json!({ "hosts": entries })).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn plans_keep_their_invariants(
        hosts in prop::collection::vec(host_gen(), 1..9),
        n_layers in 1u32..128,
        storage_mib in 1u64..160 * 1024,
        kv in prop::option::of(1u32..16),
        gguf in any::<bool>(),
        min_nodes in prop::option::of(1u32..4),
    ) {
        let inventory = inventory_of(&hosts);
        let mut c = card(json!({
            "nLayers": n_layers,
            "storageSize": {"inBytes": storage_mib * 1024 * 1024},
            "placement": {"compatibleBackends": ["llama_cpp-cpu"]}
        }));
        c.num_key_value_heads = kv;
        c.gguf_file = gguf.then(|| "m.gguf".to_string());
        let request = PlanRequest { min_nodes, ..Default::default() };
        let result = plan(&c, &inventory, &request);
        let Ok(p) = result else {
            let e = result.unwrap_err();
            prop_assert!(!e.is_usage(), "{e}");
            return Ok(());
        };
        // Every layer exactly once, ranges contiguous in rank order.
        let mut next = 0;
        for (i, r) in p.ranks.iter().enumerate() {
            prop_assert_eq!(r.rank as usize, i);
            prop_assert_eq!(r.start_layer, next);
            prop_assert!(r.end_layer > r.start_layer);
            next = r.end_layer;
        }
        prop_assert_eq!(next, n_layers);
        // Ring order is inventory order.
        let positions: Vec<usize> = p.ranks.iter().map(|r| inventory.find(&r.host.name).unwrap().0).collect();
        prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(p.ranks.len() >= min_nodes.unwrap_or(1) as usize);
        // No host over its usable memory: the continuous need and the
        // integer share of the raw weights.
        let model = ModelMemory::new(&c, p.kv_budget_tokens);
        let usable: Vec<u128> = p.ranks.iter().map(|r| usable_quarters(&r.host)).collect();
        let sum: u128 = usable.iter().sum();
        for (r, &u4) in p.ranks.iter().zip(&usable) {
            prop_assert!(model.pipeline_host_fits(sum, u4));
            prop_assert!(model.raw_weights_fit(u64::from(r.layer_count()), u4));
            prop_assert!(u128::from(r.memory.weights) * 4 <= u4);
        }
        // Fewest hosts: no smaller set of the largest hosts fits, either by
        // the continuous share or, when it does, as a whole plan (whole
        // layers, context) on exactly those hosts.
        let mut order: Vec<(u128, usize)> = inventory
            .hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| (usable_quarters(h), i))
            .collect();
        order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for k in min_nodes.unwrap_or(1) as usize..p.ranks.len() {
            let top: u128 = order[..k].iter().map(|o| o.0).sum();
            if k as u64 > u64::from(n_layers) || !model.pipeline_set_fits(top, order[k - 1].0) {
                continue;
            }
            let mut members: Vec<usize> = order[..k].iter().map(|o| o.1).collect();
            members.sort_unstable();
            let names = members.iter().map(|&i| inventory.hosts()[i].name.clone()).collect();
            let fixed = PlanRequest { nodes: Some(names), ..Default::default() };
            prop_assert!(plan(&c, &inventory, &fixed).is_err(), "{k} hosts would do");
        }
        // Byte-identical output for identical input; no-op re-plan.
        let text = PlanDocument::from_plan(&p).to_json();
        let again = PlanDocument::from_plan(&plan(&c, &inventory, &request).unwrap()).to_json();
        prop_assert_eq!(&text, &again);
        let parsed = PlanDocument::from_json(&text).unwrap();
        prop_assert_eq!(parsed.to_json(), text);
    }
}

/// Two hosts fit the continuous share (5 GiB x 1.10 + 0.25 GiB <= 6.5 GiB
/// each), but 3 whole layers split 2 + 1, and 2 layers are 6.67 GiB of raw
/// weights on a 6.5 GiB host: the planner must go on to three hosts rather
/// than report the model as infeasible.
#[test]
fn a_set_that_fails_the_whole_layer_check_makes_the_planner_try_one_more_host() {
    let card = card(json!({
        "storageSize": {"inBytes": 10 * GIB},
        "nLayers": 3,
        "ggufFile": "m.gguf"
    }));
    let hosts = vram_hosts(&[("a", "6.5GiB"), ("b", "6.5GiB"), ("c", "6.5GiB")]);
    let plan = plan(&card, &hosts, &PlanRequest::default()).unwrap();
    assert_eq!(counts(&plan), [1, 1, 1]);

    // With only two hosts there is no larger set: the whole-layer failure is
    // what the error reports.
    let two = vram_hosts(&[("a", "6.5GiB"), ("b", "6.5GiB")]);
    let message = err(super::plan(&card, &two, &PlanRequest::default()));
    assert!(
        message.contains("cannot hold its 2 of 3 layers"),
        "{message}"
    );
}

#[test]
fn hosts_with_the_same_arithmetic_share_one_line() {
    let lines: Vec<String> = (1..=80)
        .map(|i| format!("  box-{i:02}: needs 9.00 GiB but can use 4.00 GiB: does not fit"))
        .chain(["  big: needs 9.00 GiB but can use 12.00 GiB: fits".to_string()])
        .collect();
    assert_eq!(
        group_hosts(&lines),
        [
            "  box-01, box-02, box-03 and 77 more (80 hosts): needs 9.00 GiB but can use 4.00 GiB: does not fit",
            "  big: needs 9.00 GiB but can use 12.00 GiB: fits",
        ]
    );
    let two = ["  a: x".to_string(), "  b: x".to_string()];
    assert_eq!(group_hosts(&two), ["  a, b (2 hosts): x"]);
}

#[test]
fn requests_at_once_are_recorded_and_older_plans_get_the_defaults() {
    let request = PlanRequest {
        serving: Serving {
            parallel: 8,
            queue: 10,
        },
        ..PlanRequest::default()
    };
    let placed = plan(&card(json!({})), &vram_hosts(&[("a", "16GiB")]), &request).unwrap();
    let doc = PlanDocument::from_plan(&placed);
    let parsed = PlanDocument::from_json(&doc.to_json()).unwrap();
    let spec = parsed.rank_spec(RankSelector::Rank(0)).unwrap();
    assert_eq!(spec.serving, request.serving);

    // A plan written before the setting existed (no `serving`) keeps its
    // digest and serves with the defaults.
    let mut old = doc.clone();
    old.skulk.serving = None;
    old.skulk.plan_digest = old.compute_digest();
    assert!(!old.to_json().contains("serving"));
    let parsed = PlanDocument::from_json(&old.to_json()).unwrap();
    assert_eq!(parsed.serving(), Serving::default());
    assert_eq!(parsed.serving().parallel, DEFAULT_PARALLEL);

    // Out of range, even with a matching digest.
    let mut bad = doc.clone();
    bad.skulk.serving = Some(document::ServingSettings {
        parallel: 0,
        queue: 1,
    });
    bad.skulk.plan_digest = bad.compute_digest();
    let e = PlanDocument::from_json(&bad.to_json()).unwrap_err();
    assert!(
        e.to_string().contains("`skulk.serving.parallel` is `0`"),
        "{e}"
    );
    let e = err(plan(
        &card(json!({})),
        &vram_hosts(&[("a", "16GiB")]),
        &PlanRequest {
            serving: Serving {
                parallel: 257,
                queue: 0,
            },
            ..PlanRequest::default()
        },
    ));
    assert!(e.contains("`--parallel 257`"), "{e}");
}

#[test]
fn split_warnings_follow_the_cards_architecture() {
    let gguf = |family: &str| card(json!({"family": family, "ggufFile": "m.gguf"}));
    let two = vram_hosts(&[("a", "4GiB"), ("b", "4GiB"), ("c", "4GiB")]);
    let split = |c: &ModelCard, layers: Option<Vec<u32>>| {
        plan(
            c,
            &two,
            &PlanRequest {
                nodes: Some(vec!["a".into(), "b".into()]),
                layers,
                ..PlanRequest::default()
            },
        )
        .unwrap()
    };
    // Not a llama.cpp architecture, or a supported one: nothing.
    assert!(split(&gguf("qwen3"), None).warnings.is_empty());
    assert!(split(&gguf("my-family"), None).warnings.is_empty());
    // A llama.cpp architecture skulk cannot split: one warning.
    let w = split(&gguf("rwkv7"), None).warnings;
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("`rwkv7`") && w[0].contains("2 ranks"),
        "{w:?}"
    );
    // The same model on one host is not cut.
    let one = plan(
        &gguf("rwkv7"),
        &vram_hosts(&[("a", "16GiB")]),
        &PlanRequest::default(),
    )
    .unwrap();
    assert!(one.warnings.is_empty());
    // Not a GGUF card: skulk does not run it.
    let mlx = card(json!({"family": "rwkv7"}));
    assert!(split(&mlx, None).warnings.is_empty());
    // Llama 4: ranks start on multiples of 4.
    assert_eq!(split(&gguf("llama4"), Some(vec![14, 18])).warnings.len(), 1);
    assert!(split(&gguf("llama4"), Some(vec![16, 16]))
        .warnings
        .is_empty());
}

/// The one "can skulk's engine run this rank" rule, on real plans.
#[test]
fn the_engine_runs_pipeline_rings_of_gguf_llama_cpp_models_only() {
    use crate::backend::{check_runnable, NotRunnable};
    let hosts = vram_hosts(&[("a", "16GiB"), ("b", "16GiB")]);
    let spec = |card: &ModelCard, request: &PlanRequest| {
        let p = plan(card, &hosts, request).unwrap();
        let doc = PlanDocument::from_plan(&p);
        doc.rank_spec(RankSelector::Rank(0)).unwrap()
    };
    let gguf = card(json!({"ggufFile": "m.gguf"}));
    assert_eq!(
        check_runnable(&spec(&gguf, &PlanRequest::default())),
        Ok("m.gguf")
    );
    assert_eq!(
        check_runnable(&spec(&card(json!({})), &PlanRequest::default())),
        Err(NotRunnable::NotGguf("org/model".into()))
    );
    let tensor = card(json!({"ggufFile": "m.gguf", "supportsTensor": true, "numKeyValueHeads": 8}));
    let request = PlanRequest {
        sharding: Sharding::Tensor,
        nodes: Some(vec!["a".into(), "b".into()]),
        ..Default::default()
    };
    assert_eq!(
        check_runnable(&spec(&tensor, &request)),
        Err(NotRunnable::Tensor)
    );
    let mut other = spec(&gguf, &PlanRequest::default());
    other.resolved_backend = Some("mlx-metal".into());
    assert_eq!(
        check_runnable(&other),
        Err(NotRunnable::Backend("mlx-metal".into()))
    );
    other.engine = "mlx".into();
    assert_eq!(
        check_runnable(&other),
        Err(NotRunnable::Engine("mlx".into()))
    );
}
