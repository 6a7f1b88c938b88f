//! Scores for the nodes that passed the filters, each 0..=100 like kube-scheduler's, weighted
//! as its default profile weights them: NodeResourcesFit's `LeastAllocated` (weight 1, cpu and
//! memory equally) and the spread of a controller's pods across nodes (weight 2, the default
//! PodTopologySpread constraint on `kubernetes.io/hostname`, simplified to "fewest siblings").

use super::cache::{NodeInfo, Usage};
use super::filters::PodRequests;

pub const MAX_NODE_SCORE: i64 = 100;
const LEAST_ALLOCATED_WEIGHT: i64 = 1;
const SPREAD_WEIGHT: i64 = 2;

/// `(allocatable - requested) * 100 / allocatable` per resource, with the pod's own request
/// included and request-less containers counted at Kubernetes' non-zero defaults.
pub fn least_allocated(node: &NodeInfo, usage: &Usage, pod: &PodRequests) -> i64 {
    let score = |alloc: i64, used: i64| {
        if alloc <= 0 || used > alloc {
            0
        } else {
            (alloc - used) * MAX_NODE_SCORE / alloc
        }
    };
    let cpu = score(
        node.allocatable.milli_cpu,
        usage.nonzero_requested.milli_cpu + pod.nonzero.milli_cpu,
    );
    let memory = score(
        node.allocatable.memory,
        usage.nonzero_requested.memory + pod.nonzero.memory,
    );
    (cpu + memory) / 2
}

/// Nodes holding fewer of the pod's siblings score higher; `most` is the largest sibling
/// count among the feasible nodes.
pub fn spread(siblings: u32, most: u32) -> i64 {
    if most == 0 {
        return MAX_NODE_SCORE;
    }
    i64::from(most - siblings.min(most)) * MAX_NODE_SCORE / i64::from(most)
}

/// A feasible node with its raw inputs to scoring.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub least_allocated: i64,
    pub siblings: u32,
}

/// The index of the best candidate. Among equal scores the choice rotates with `turn`, as
/// kube-scheduler picks at random among the best, so ties do not pile onto one node.
pub fn pick(candidates: &[Candidate], turn: usize) -> Option<usize> {
    let most = candidates.iter().map(|c| c.siblings).max()?;
    let total = |c: &Candidate| {
        c.least_allocated * LEAST_ALLOCATED_WEIGHT + spread(c.siblings, most) * SPREAD_WEIGHT
    };
    let best = candidates.iter().map(total).max()?;
    let ties: Vec<usize> = (0..candidates.len())
        .filter(|&i| total(&candidates[i]) == best)
        .collect();
    Some(ties[turn % ties.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::filters::Resources;

    fn node(cpu: i64, memory: i64) -> NodeInfo {
        NodeInfo {
            allocatable: Resources {
                milli_cpu: cpu,
                memory,
            },
            ..Default::default()
        }
    }

    fn requests(cpu: i64, memory: i64) -> PodRequests {
        let r = Resources {
            milli_cpu: cpu,
            memory,
        };
        PodRequests {
            exact: r,
            nonzero: r,
        }
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let pod = requests(1000, 1 << 30);
        let empty = least_allocated(&node(4000, 4 << 30), &Usage::default(), &pod);
        let busy = Usage {
            nonzero_requested: Resources {
                milli_cpu: 2000,
                memory: 2 << 30,
            },
            ..Default::default()
        };
        let half = least_allocated(&node(4000, 4 << 30), &busy, &pod);
        assert_eq!((empty, half), (75, 25));
        assert_eq!(
            least_allocated(&node(0, 0), &Usage::default(), &pod),
            0,
            "a node without allocatable scores nothing rather than dividing by zero"
        );
    }

    #[test]
    fn spread_favours_nodes_with_fewer_siblings() {
        assert_eq!(spread(0, 0), 100);
        assert_eq!(spread(0, 4), 100);
        assert_eq!(spread(2, 4), 50);
        assert_eq!(spread(4, 4), 0);
    }

    #[test]
    fn spread_outweighs_a_small_allocation_difference() {
        let c = |least_allocated, siblings| Candidate {
            least_allocated,
            siblings,
        };
        // Node 0 is a little emptier but already runs a sibling.
        assert_eq!(pick(&[c(90, 1), c(80, 0)], 0), Some(1));
        assert_eq!(pick(&[], 0), None);
    }

    #[test]
    fn ties_rotate() {
        let c = Candidate {
            least_allocated: 50,
            siblings: 0,
        };
        let picks: Vec<_> = (0..3).map(|t| pick(&[c, c, c], t)).collect();
        assert_eq!(picks, [Some(0), Some(1), Some(2)]);
    }
}
