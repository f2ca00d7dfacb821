//! The search for the fewest hosts that fit, in polynomial time.
//!
//! For each size k from the lower bound up, the first size with a fitting
//! set wins (a set "fits" by the continuous shares of `docs/architecture.md`, "Placement"; the
//! planner's integer-split check then accepts or refuses it, and a refused
//! set gives way to the next best of the same size, else to the next size). Among fitting sets of that size the choice is, in order: the
//! best backend preference score (`len(pref) - i` for the first preferred tag
//! `pref[i]` that every host of the set advertises, else 0), the larger total
//! usable memory, then the earlier inventory positions (sorted position lists
//! compared lexicographically).
//!
//! Why checking one set per size, pool and preference tag is enough: whether
//! a set fits depends only on its total and its smallest usable memory, and
//! gets easier as either grows (proved at
//! [`ModelMemory::pipeline_set_fits`]; for tensor sharding only the smallest
//! counts). The k hosts with the most usable memory maximise both at once, so
//! if any k-subset of a list fits, its top k does. A set with score
//! `len(pref) - i` lies within the hosts advertising `pref[i]`; so trying
//! `pref[0]`, `pref[1]`, ... and finally all hosts, the first list whose top
//! k fits gives the best score, and its top k also has the largest total
//! among sets of that score. Ties in total are sets that swap hosts of equal
//! usable memory at the cut; taking the earliest such hosts (the sort key is
//! usable memory descending, then position ascending) gives the
//! lexicographically smallest positions. The cost is one sort per list and
//! O(1) per size and list with prefix sums: O(p n log n) for n hosts and p
//! preferred tags, against 2^n subsets. `tests` checks all of this against
//! brute force.

use std::collections::BTreeSet;

use super::memory::ModelMemory;

/// A host the search may use.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<'a> {
    /// Inventory position.
    pub position: usize,
    /// Usable memory, quarter bytes.
    pub usable4: u128,
    pub backends: &'a BTreeSet<String>,
}

/// What makes a set of k hosts acceptable besides memory.
#[derive(Debug, Clone)]
pub(crate) enum Rule {
    /// Pipeline: at most one host per layer.
    Pipeline { n_layers: u64 },
    /// Tensor: k divides the hidden size and the KV heads.
    Tensor {
        hidden_size: u64,
        kv_heads: Option<u64>,
    },
}

impl Rule {
    pub fn size_allowed(&self, k: usize) -> bool {
        let k64 = k as u64;
        match self {
            Rule::Pipeline { n_layers } => k64 <= *n_layers,
            Rule::Tensor {
                hidden_size,
                kv_heads,
            } => hidden_size % k64 == 0 && kv_heads.is_none_or(|h| h % k64 == 0),
        }
    }

    /// Whether the k hosts with total `sum4` and smallest `min4` fit.
    pub fn set_fits(&self, model: &ModelMemory, k: usize, sum4: u128, min4: u128) -> bool {
        match self {
            Rule::Pipeline { .. } => model.pipeline_set_fits(sum4, min4),
            Rule::Tensor { .. } => model.tensor_host_fits(k as u64, min4),
        }
    }
}

/// One list of hosts in search order with prefix sums of usable memory.
struct Ranked {
    /// Indices into the candidate slice, by usable memory descending, then
    /// position ascending.
    order: Vec<usize>,
    /// `prefix[k]` = total usable memory of `order[..k]`.
    prefix: Vec<u128>,
}

impl Ranked {
    fn new(candidates: &[Candidate<'_>], members: impl Iterator<Item = usize>) -> Self {
        let mut order: Vec<usize> = members.collect();
        order.sort_by(|&a, &b| {
            candidates[b]
                .usable4
                .cmp(&candidates[a].usable4)
                .then(candidates[a].position.cmp(&candidates[b].position))
        });
        let mut prefix = Vec::with_capacity(order.len() + 1);
        prefix.push(0u128);
        for &i in &order {
            prefix.push(prefix.last().unwrap() + candidates[i].usable4);
        }
        Self { order, prefix }
    }
}

/// A chosen set and its selection key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    /// Indices into the candidate slice, in inventory order.
    pub members: Vec<usize>,
    pub score: usize,
    pub sum4: u128,
    positions: Vec<usize>,
}

impl Choice {
    /// Whether `self` is preferred to `other` (same size).
    fn better_than(&self, other: &Choice) -> bool {
        match self
            .score
            .cmp(&other.score)
            .then(self.sum4.cmp(&other.sum4))
        {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.positions < other.positions,
        }
    }
}

/// Finds the fewest hosts (at least `min_k`, at most `max_k`) that fit,
/// chosen as the module documentation says.
///
/// `pools`, when given, are groups of candidates a set of two or more hosts
/// must stay within (for jaccl plans: the all-to-all RDMA islands); a set of
/// one host may be any candidate. `None`: every candidate is one pool.
///
/// `accept` is the planner's check of the integer layer split, which the
/// continuous fit does not capture (a host may get up to one layer more than
/// its proportional share). Per size, the fitting sets found (one per pool)
/// are tried best first; when none is accepted the search goes on with the
/// next size. Returns `None` when no size gives an accepted set.
pub(crate) fn fewest_fitting(
    candidates: &[Candidate<'_>],
    pools: Option<&[Vec<usize>]>,
    preference: &[String],
    model: &ModelMemory,
    rule: &Rule,
    (min_k, max_k): (usize, usize),
    accept: &dyn Fn(&[usize]) -> bool,
) -> Option<Choice> {
    if candidates.is_empty() || min_k > max_k {
        return None;
    }
    let everyone = vec![(0..candidates.len()).collect::<Vec<_>>()];
    let rank_pools = |pools: &[Vec<usize>]| -> Vec<Vec<Ranked>> {
        pools
            .iter()
            .map(|pool| {
                let mut lists: Vec<Ranked> = preference
                    .iter()
                    .map(|tag| {
                        Ranked::new(
                            candidates,
                            pool.iter()
                                .copied()
                                .filter(|&i| candidates[i].backends.contains(tag)),
                        )
                    })
                    .collect();
                lists.push(Ranked::new(candidates, pool.iter().copied()));
                lists
            })
            .collect()
    };
    let singles = rank_pools(&everyone);
    let grouped = pools.map(rank_pools);
    let max_k = max_k.min(candidates.len());
    for k in min_k.max(1)..=max_k {
        if !rule.size_allowed(k) {
            continue;
        }
        let ranked = match &grouped {
            Some(grouped) if k > 1 => grouped,
            _ => &singles,
        };
        let mut found: Vec<Choice> = Vec::new();
        for lists in ranked {
            for (i, list) in lists.iter().enumerate() {
                if list.order.len() < k {
                    continue;
                }
                let sum4 = list.prefix[k];
                let min4 = candidates[list.order[k - 1]].usable4;
                if !rule.set_fits(model, k, sum4, min4) {
                    continue;
                }
                let mut members = list.order[..k].to_vec();
                members.sort_by_key(|&m| candidates[m].position);
                let choice = Choice {
                    positions: members.iter().map(|&m| candidates[m].position).collect(),
                    members,
                    score: preference.len() - i,
                    sum4,
                };
                found.push(choice);
                // The first fitting list is this pool's best score.
                break;
            }
        }
        found.sort_by(|a, b| {
            if a.better_than(b) {
                std::cmp::Ordering::Less
            } else if b.better_than(a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        if let Some(choice) = found.into_iter().find(|c| accept(&c.members)) {
            return Some(choice);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u128 = 1 << 30;

    fn model(storage_gib: u128, kv_gib: u128, n_layers: u64) -> ModelMemory {
        ModelMemory {
            storage: storage_gib * GIB,
            kv_budget: kv_gib * GIB,
            f_tenths: 11,
            n_layers,
            per_token_kv: 0,
        }
    }

    /// The backend preference score of a set, by the rule's definition.
    fn score(set: &[usize], tags: &[BTreeSet<String>], preference: &[String]) -> usize {
        preference
            .iter()
            .position(|p| set.iter().all(|&m| tags[m].contains(p)))
            .map_or(0, |i| preference.len() - i)
    }

    /// Whether every host of the set fits, host by host (no shortcut).
    fn fits_by_host(set: &[usize], usable: &[u128], m: &ModelMemory, rule: &Rule) -> bool {
        let sum: u128 = set.iter().map(|&i| usable[i]).sum();
        rule.size_allowed(set.len())
            && set.iter().all(|&i| match rule {
                Rule::Pipeline { .. } => m.pipeline_host_fits(sum, usable[i]),
                Rule::Tensor { .. } => m.tensor_host_fits(set.len() as u64, usable[i]),
            })
    }

    /// Brute force over all subsets: the best fitting set of the smallest size.
    fn brute_force(
        usable: &[u128],
        tags: &[BTreeSet<String>],
        preference: &[String],
        m: &ModelMemory,
        rule: &Rule,
        min_k: usize,
    ) -> Option<(Vec<usize>, usize, u128)> {
        let n = usable.len();
        for k in min_k.max(1)..=n {
            let mut best: Option<(usize, u128, Vec<usize>)> = None;
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize != k {
                    continue;
                }
                let set: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
                if !fits_by_host(&set, usable, m, rule) {
                    continue;
                }
                let key = (
                    score(&set, tags, preference),
                    set.iter().map(|&i| usable[i]).sum::<u128>(),
                );
                let better = match &best {
                    None => true,
                    Some((s, t, positions)) => {
                        (key.0, key.1) > (*s, *t)
                            || ((key.0, key.1) == (*s, *t) && set < *positions)
                    }
                };
                if better {
                    best = Some((key.0, key.1, set));
                }
            }
            if let Some((s, t, set)) = best {
                return Some((set, s, t));
            }
        }
        None
    }

    /// Hosts in inventory order with these usable GiB, all with `tags`.
    fn same_backends<'a>(gib: &[u128], tags: &'a BTreeSet<String>) -> Vec<Candidate<'a>> {
        gib.iter()
            .enumerate()
            .map(|(i, g)| Candidate {
                position: i,
                usable4: 4 * g * GIB,
                backends: tags,
            })
            .collect()
    }

    fn tagset(bits: u8) -> BTreeSet<String> {
        ["llama_cpp-cuda", "llama_cpp-vulkan", "llama_cpp-cpu"]
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, t)| t.to_string())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn greedy_search_equals_brute_force(
            // Usable memory in GiB steps (ties are common on purpose).
            usable_gib in prop::collection::vec(1u128..12, 1..8),
            tag_bits in prop::collection::vec(1u8..8, 8),
            storage in 1u128..40,
            kv in 0u128..4,
            n_layers in 1u64..10,
            tensor in any::<bool>(),
            hidden in prop::sample::select(vec![12u64, 16, 30, 64]),
            prefs in prop::sample::select(vec![0usize, 1, 2, 3]),
            min_k in 1usize..4,
        ) {
            let n = usable_gib.len();
            let usable: Vec<u128> = usable_gib.iter().map(|g| 4 * g * GIB).collect();
            let tags: Vec<BTreeSet<String>> = (0..n).map(|i| tagset(tag_bits[i])).collect();
            let preference: Vec<String> = ["llama_cpp-cuda", "llama_cpp-vulkan", "llama_cpp-cpu"][..prefs]
                .iter().map(|s| s.to_string()).collect();
            let m = model(storage, kv, n_layers);
            let rule = if tensor {
                Rule::Tensor { hidden_size: hidden, kv_heads: None }
            } else {
                Rule::Pipeline { n_layers }
            };
            let candidates: Vec<Candidate> = (0..n)
                .map(|i| Candidate { position: i, usable4: usable[i], backends: &tags[i] })
                .collect();
            let got = fewest_fitting(&candidates, None, &preference, &m, &rule, (min_k, n), &|_| true);
            let want = brute_force(&usable, &tags, &preference, &m, &rule, min_k);
            match (got, want) {
                (None, None) => {}
                (Some(c), Some((set, s, t))) => {
                    prop_assert_eq!(&c.members, &set);
                    prop_assert_eq!(c.score, s);
                    prop_assert_eq!(c.sum4, t);
                    prop_assert!(fits_by_host(&c.members, &usable, &m, &rule));
                }
                (got, want) => prop_assert!(false, "greedy {:?} vs brute force {:?}", got, want),
            }
        }
    }

    #[test]
    fn fewest_hosts_win_over_preference_and_memory() {
        let cpu = tagset(0b100);
        let cuda = tagset(0b001);
        let candidates = vec![
            Candidate {
                position: 0,
                usable4: 4 * 40 * GIB,
                backends: &cpu,
            },
            Candidate {
                position: 1,
                usable4: 4 * 12 * GIB,
                backends: &cuda,
            },
            Candidate {
                position: 2,
                usable4: 4 * 12 * GIB,
                backends: &cuda,
            },
        ];
        let pools = [vec![0, 1, 2]];
        let pools = Some(&pools[..]);
        let pref = vec!["llama_cpp-cuda".to_string()];
        let m = model(16, 0, 32);
        let rule = Rule::Pipeline { n_layers: 32 };
        let one = fewest_fitting(&candidates, pools, &pref, &m, &rule, (1, 3), &|_| true).unwrap();
        assert_eq!(
            one.members,
            [0],
            "one cpu host beats two preferred cuda hosts"
        );
        let two = fewest_fitting(&candidates, pools, &pref, &m, &rule, (2, 3), &|_| true).unwrap();
        assert_eq!(
            two.members,
            [1, 2],
            "at two hosts, the preferred pair wins over more memory"
        );
        assert_eq!(two.score, 1);
    }

    #[test]
    fn a_rejected_set_gives_way_to_the_next_best_or_the_next_size() {
        let tags = tagset(0b001);
        let candidates = same_backends(&[20, 20, 20, 20], &tags);
        let m = model(14, 0, 32);
        let rule = Rule::Pipeline { n_layers: 32 };
        // Host 0 alone would fit; when that set is refused, the next size.
        let not_alone = |members: &[usize]| members != [0];
        let choice = fewest_fitting(&candidates, None, &[], &m, &rule, (1, 4), &not_alone).unwrap();
        assert_eq!(choice.members, [0, 1]);
        // Two islands of two: the earlier is best; refused, the other one.
        let islands = [vec![0, 1], vec![2, 3]];
        let no_zero = |members: &[usize]| !members.contains(&0);
        let choice = fewest_fitting(
            &candidates,
            Some(&islands[..]),
            &[],
            &m,
            &rule,
            (2, 4),
            &no_zero,
        )
        .unwrap();
        assert_eq!(choice.members, [2, 3]);
    }

    #[test]
    fn pools_confine_multi_host_sets_but_not_single_hosts() {
        let tags = tagset(0b001);
        let candidates = same_backends(&[10, 10, 10, 30], &tags);
        let pools = [vec![0, 1], vec![2]];
        let pools = Some(&pools[..]);
        let m = model(14, 0, 32);
        let rule = Rule::Pipeline { n_layers: 32 };
        // Host 3 is in no pool (no RDMA) but may run alone.
        assert_eq!(
            fewest_fitting(&candidates, pools, &[], &m, &rule, (1, 4), &|_| true)
                .unwrap()
                .members,
            [3]
        );
        // Two hosts: only the pool {0, 1} has two.
        assert_eq!(
            fewest_fitting(&candidates, pools, &[], &m, &rule, (2, 4), &|_| true)
                .unwrap()
                .members,
            [0, 1]
        );
        assert_eq!(
            fewest_fitting(&candidates, pools, &[], &m, &rule, (3, 4), &|_| true),
            None
        );
    }

    #[test]
    fn thousand_hosts_search_is_polynomial() {
        let tags = tagset(0b111);
        let candidates: Vec<Candidate> = (0..1000)
            .map(|i| Candidate {
                position: i,
                usable4: 4 * GIB * (8 + (i as u128 * 7919) % 57),
                backends: &tags,
            })
            .collect();
        let pref: Vec<String> = vec!["llama_cpp-cuda".into(), "llama_cpp-cpu".into()];
        let m = model(1500, 40, 128);
        let rule = Rule::Pipeline { n_layers: 128 };
        let choice =
            fewest_fitting(&candidates, None, &pref, &m, &rule, (1, 1000), &|_| true).unwrap();
        let sum: u128 = choice.members.iter().map(|&i| candidates[i].usable4).sum();
        assert_eq!(sum, choice.sum4);
        assert!(choice.members.len() > 20 && choice.members.len() <= 128);
    }
}
