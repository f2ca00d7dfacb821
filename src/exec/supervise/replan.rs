//! Planning again without lost hosts, from the same card and inventory.
//!
//! A plan document embeds its card but not the inventory it was placed on
//! (nor the flags), so the supervisor is given the inventory and works out
//! the request that made the plan: the one among a few candidates (hosts
//! chosen by the planner, or exactly the plan's hosts, with or without its
//! layer split and context limit; always its ring port, API and silence
//! limits) whose plan has exactly the document's digest. The invariant
//! guarded here: a re-plan is only ever made from inputs proven to
//! reproduce the running plan byte for byte, so the smaller plan differs
//! from it by the lost hosts and nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::card::ModelCard;
use crate::inventory::Inventory;
use crate::plan::{self, PlanDocument, PlanRequest, RankSpec};

/// How the plan's hosts were chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Hosts {
    /// By the planner, from the whole inventory (`--exclude` drops lost ones).
    Chosen,
    /// Exactly these, in ring order (lost ones are left out).
    Given(Vec<String>),
}

/// Makes plans of the same model on the same inventory without some hosts.
#[derive(Clone, Debug)]
pub struct Replanner {
    card: ModelCard,
    inventory: Inventory,
    request: PlanRequest,
    hosts: Hosts,
    inventory_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplanError {
    #[error("inventory `{path}`: {message}")]
    Inventory { path: PathBuf, message: String },
    #[error("inventory `{path}` does not reproduce plan `{digest}` with its card (the plan was made from another inventory, or with flags the supervisor cannot infer)\n\nhint: pass the inventory the plan was made from, or plan again from this one")]
    NotReproduced { path: PathBuf, digest: String },
    #[error("plan `{path}`: {message}")]
    Plan { path: PathBuf, message: String },
}

/// The plan's card and, in rank order, its ranks.
fn parts(doc: &PlanDocument, plan_path: &Path) -> Result<(ModelCard, Vec<RankSpec>), ReplanError> {
    let specs = doc.rank_specs().map_err(|e| ReplanError::Plan {
        path: plan_path.to_owned(),
        message: e.to_string(),
    })?;
    let card = specs
        .first()
        .map(|s| s.model_card.clone())
        .ok_or_else(|| ReplanError::Plan {
            path: plan_path.to_owned(),
            message: "the plan has no ranks".into(),
        })?;
    Ok((card, specs))
}

impl Replanner {
    /// Reads the inventory and finds the request that reproduces `doc`.
    pub fn new(
        doc: &PlanDocument,
        plan_path: &Path,
        inventory_path: &Path,
    ) -> Result<Replanner, ReplanError> {
        let inv_err = |message: String| ReplanError::Inventory {
            path: inventory_path.to_owned(),
            message,
        };
        let (_, value) = crate::load::load(inventory_path).map_err(|e| inv_err(e.to_string()))?;
        let inventory = crate::inventory::parse(&value).map_err(|e| inv_err(e.to_string()))?;
        Replanner::from_parts(doc, plan_path, inventory, inventory_path)
    }

    fn from_parts(
        doc: &PlanDocument,
        plan_path: &Path,
        inventory: Inventory,
        inventory_path: &Path,
    ) -> Result<Replanner, ReplanError> {
        let (card, specs) = parts(doc, plan_path)?;
        let first = &specs[0];
        let nodes: Vec<String> = specs.iter().map(|s| s.node.clone()).collect();
        let layers: Vec<u32> = specs.iter().map(|s| s.end_layer - s.start_layer).collect();
        let base = PlanRequest {
            sharding: first.sharding,
            instance: first.instance,
            port: Some(first.ring_port),
            api_bind: (first.api.address != first.address).then(|| first.api.address.clone()),
            api_port: first.api.port,
            ring: doc.skulk.ring,
            ..PlanRequest::default()
        };
        let contexts = [None, first.context_token_limit];
        let choices = [
            (Hosts::Chosen, None),
            (Hosts::Given(nodes.clone()), None),
            (Hosts::Given(nodes.clone()), Some(layers)),
        ];
        for (hosts, layers) in &choices {
            for context in contexts {
                let mut request = base.clone();
                request.context = context;
                request.layers = layers.clone();
                if let Hosts::Given(n) = hosts {
                    request.nodes = Some(n.clone());
                }
                let Ok(placed) = plan::plan(&card, &inventory, &request) else {
                    continue;
                };
                if PlanDocument::from_plan(&placed).skulk.plan_digest == doc.skulk.plan_digest {
                    // A re-plan keeps the context limit but never a layer
                    // split made for hosts that are gone.
                    request.layers = None;
                    return Ok(Replanner {
                        card,
                        inventory,
                        request,
                        hosts: hosts.clone(),
                        inventory_path: inventory_path.to_owned(),
                    });
                }
            }
        }
        Err(ReplanError::NotReproduced {
            path: inventory_path.to_owned(),
            digest: doc.skulk.plan_digest[..16.min(doc.skulk.plan_digest.len())].to_owned(),
        })
    }

    pub fn inventory_path(&self) -> &Path {
        &self.inventory_path
    }

    /// The plan without `lost`, or why there is none (the planner's own
    /// words, e.g. that the model does not fit the remaining memory).
    pub fn without(&self, lost: &BTreeSet<String>) -> Result<PlanDocument, plan::PlanError> {
        let mut request = self.request.clone();
        match &self.hosts {
            Hosts::Chosen => request.exclude = lost.iter().cloned().collect(),
            Hosts::Given(nodes) => {
                let left: Vec<String> = nodes
                    .iter()
                    .filter(|n| !lost.contains(*n))
                    .cloned()
                    .collect();
                if left.is_empty() {
                    return Err(plan::PlanError::Infeasible(
                        "every host of the plan is lost".into(),
                    ));
                }
                request.nodes = Some(left);
            }
        }
        plan::plan(&self.card, &self.inventory, &request).map(|p| PlanDocument::from_plan(&p))
    }
}

/// What changes from plan `a` to plan `b`, one line per host and one for
/// the API when it moves.
pub fn difference(a: &PlanDocument, b: &PlanDocument) -> Vec<String> {
    let specs = |d: &PlanDocument| d.rank_specs().unwrap_or_default();
    let (sa, sb) = (specs(a), specs(b));
    let layers = |s: &RankSpec| format!("[{}, {})", s.start_layer, s.end_layer);
    let mut lines = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &sa {
        seen.insert(s.node.clone());
        match sb.iter().find(|t| t.node == s.node) {
            Some(t)
                if t.start_layer == s.start_layer
                    && t.end_layer == s.end_layer
                    && t.rank == s.rank =>
            {
                lines.push(format!(
                    "`{}`: rank {}, layers {} (unchanged)",
                    s.node,
                    s.rank,
                    layers(s)
                ));
            }
            Some(t) => lines.push(format!(
                "`{}`: rank {} layers {} -> rank {} layers {}",
                s.node,
                s.rank,
                layers(s),
                t.rank,
                layers(t)
            )),
            None => lines.push(format!(
                "`{}`: rank {} layers {} -> not in the plan",
                s.node,
                s.rank,
                layers(s)
            )),
        }
    }
    for t in sb.iter().filter(|t| !seen.contains(&t.node)) {
        lines.push(format!(
            "`{}`: not in the plan -> rank {} layers {}",
            t.node,
            t.rank,
            layers(t)
        ));
    }
    let api = |d: &PlanDocument| format!("{}:{}", d.skulk.api.address, d.skulk.api.port);
    if api(a) != api(b) {
        lines.push(format!("API: {} -> {}", api(a), api(b)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "modelId: org/m\nstorageSize: {inBytes: 1000000000}\nnLayers: 30\nhiddenSize: 1024\nnumKeyValueHeads: 8\nsupportsTensor: false\ntasks: [TextGeneration]\nggufFile: m.gguf\nplacement:\n  compatibleBackends: [llama_cpp-cpu]\n";

    fn inventory(n: usize, gib: u32) -> Inventory {
        inventory_on(0, n, gib)
    }

    /// `n` hosts `h1..` of `gib` GiB at `10.0.<net>.1..`.
    fn inventory_on(net: u8, n: usize, gib: u32) -> Inventory {
        let mut y = String::from("hosts:\n");
        for i in 1..=n {
            y.push_str(&format!(
                "  - name: h{i}\n    address: 10.0.{net}.{i}\n    memory: {{total: {gib}GiB, available: {gib}GiB}}\n    backends: [llama_cpp-cpu]\n"
            ));
        }
        let v: serde_json::Value = serde_yaml_ng::from_str(&y).unwrap();
        crate::inventory::parse(&v).unwrap()
    }

    fn card() -> ModelCard {
        serde_yaml_ng::from_str(CARD).unwrap()
    }

    fn doc(inv: &Inventory, request: &PlanRequest) -> PlanDocument {
        PlanDocument::from_plan(&plan::plan(&card(), inv, request).unwrap())
    }

    fn lost(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_given_host_list_is_replanned_without_the_lost_host() {
        let inv = inventory(4, 2);
        let given = PlanRequest {
            nodes: Some(vec!["h1".into(), "h2".into(), "h3".into()]),
            ..PlanRequest::default()
        };
        let a = doc(&inv, &given);
        let rp = Replanner::from_parts(&a, Path::new("p.json"), inv, Path::new("i.yaml")).unwrap();
        assert_eq!(
            rp.hosts,
            Hosts::Given(vec!["h1".into(), "h2".into(), "h3".into()])
        );
        // Nothing lost: the very same plan.
        assert_eq!(rp.without(&lost(&[])).unwrap(), a);
        let b = rp.without(&lost(&["h2"])).unwrap();
        let nodes: Vec<String> = b
            .rank_specs()
            .unwrap()
            .iter()
            .map(|s| s.node.clone())
            .collect();
        assert_eq!(nodes, ["h1", "h3"]);
        assert_eq!(b.ring_port(), a.ring_port(), "the ring port stays");
        let diff = difference(&a, &b);
        assert_eq!(diff[1], "`h2`: rank 1 layers [10, 20) -> not in the plan");
        assert!(
            diff[0].starts_with("`h1`: rank 0 layers [0, 10) -> rank 0 layers [0, 15)"),
            "{diff:?}"
        );
        assert!(
            !diff.iter().any(|l| l.starts_with("API")),
            "rank 0 stays: {diff:?}"
        );
        // Losing rank 0 moves the API.
        let c = rp.without(&lost(&["h1"])).unwrap();
        assert!(difference(&a, &c)
            .last()
            .unwrap()
            .starts_with("API: 10.0.0.1:52415 -> 10.0.0.2:52415"));
    }

    #[test]
    fn a_chosen_plan_is_replanned_with_the_host_excluded_and_may_take_a_spare() {
        // 1 GB of weights needs two 2 GiB hosts of the four; the planner
        // picks h1, h2; without h1 it takes two others.
        let inv = inventory(4, 2);
        let a = doc(&inv, &PlanRequest::default());
        let rp = Replanner::from_parts(&a, Path::new("p.json"), inv, Path::new("i.yaml")).unwrap();
        assert_eq!(rp.hosts, Hosts::Chosen);
        let b = rp.without(&lost(&["h1"])).unwrap();
        let nodes: Vec<String> = b
            .rank_specs()
            .unwrap()
            .iter()
            .map(|s| s.node.clone())
            .collect();
        assert!(!nodes.contains(&"h1".to_owned()), "{nodes:?}");
        assert_eq!(b.ring_port(), a.ring_port());
    }

    #[test]
    fn a_plan_that_no_longer_fits_says_so() {
        let inv = inventory(3, 2);
        let all = PlanRequest {
            nodes: Some(vec!["h1".into(), "h2".into(), "h3".into()]),
            ..PlanRequest::default()
        };
        let a = doc(&inv, &all);
        let rp = Replanner::from_parts(&a, Path::new("p.json"), inv, Path::new("i.yaml")).unwrap();
        // Two 2 GiB hosts still hold 1 GB; one does not.
        assert!(rp.without(&lost(&["h3"])).is_ok());
        let e = rp.without(&lost(&["h2", "h3"])).unwrap_err();
        assert!(!e.is_usage(), "{e}");
    }

    #[test]
    fn another_inventory_is_refused() {
        // The same names at other addresses.
        let a = doc(&inventory(3, 2), &PlanRequest::default());
        let e = Replanner::from_parts(
            &a,
            Path::new("p.json"),
            inventory_on(9, 3, 2),
            Path::new("i.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("inventory `i.yaml` does not reproduce plan `"),
            "{e}"
        );
        assert!(
            e.contains("hint: pass the inventory the plan was made from"),
            "{e}"
        );
    }
}
