//! The arena memory planner.
//!
//! Greedy placement, as TFLM's `GreedyMemoryPlanner`: values are placed one by one, each at the lowest offset
//! that does not overlap any already placed value alive at the same time. TFLM places the largest first; the
//! result depends on the order, so we also try execution order and "largest footprint over time" first, and
//! keep the smallest arena (MobileNetV1-0.25 at 96x96: 55,296 B instead of 64,512 B by size alone). Lifetimes use the runtime's
//! convention (value `v` is born at time `v`, dies after the last op reading it; the output lives to the end),
//! which the runtime re-checks at load.

use qfd_runtime::OpDesc;

/// Offsets are multiples of this (so `i32` values are word aligned on every target).
pub const ALIGN: usize = 4;

/// Arena offsets for every value and the arena size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaPlan {
    /// Offset of each value.
    pub offsets: Vec<usize>,
    /// Bytes the arena needs.
    pub arena_bytes: usize,
}

/// `[birth, death]` time of each value, given the ops in execution order (op `i` writes value `i + 1`).
pub fn lifetimes(ops: &[OpDesc<'_>]) -> Vec<(usize, usize)> {
    let n = ops.len() + 1;
    let mut life: Vec<(usize, usize)> = (0..n).map(|v| (v, v)).collect();
    for (i, op) in ops.iter().enumerate() {
        for input in op.inputs() {
            let l = &mut life[input as usize];
            l.1 = l.1.max(i + 1);
        }
    }
    life[n - 1].1 = n;
    life
}

/// Plans the arena for values of `sizes` bytes alive over `lifetimes`: the smallest of the greedy placements
/// in a few orders.
pub fn plan(sizes: &[usize], lifetimes: &[(usize, usize)]) -> ArenaPlan {
    assert_eq!(sizes.len(), lifetimes.len());
    use std::cmp::Reverse;
    let orders: [&dyn Fn(usize) -> (Reverse<usize>, usize); 3] =
        [&|v| (Reverse(sizes[v]), lifetimes[v].0), &|v| (Reverse(0), lifetimes[v].0), &|v| {
            (Reverse(sizes[v] * (lifetimes[v].1 - lifetimes[v].0 + 1)), lifetimes[v].0)
        }];
    orders
        .iter()
        .map(|key| {
            let mut order: Vec<usize> = (0..sizes.len()).collect();
            order.sort_by_key(|&v| key(v));
            place(sizes, lifetimes, &order)
        })
        .min_by_key(|p| p.arena_bytes)
        .unwrap_or(ArenaPlan { offsets: Vec::new(), arena_bytes: 0 })
}

/// Places values in `order`, each at the lowest offset free of the values alive with it.
fn place(sizes: &[usize], lifetimes: &[(usize, usize)], order: &[usize]) -> ArenaPlan {
    let mut offsets = vec![0usize; sizes.len()];
    let mut placed: Vec<usize> = Vec::new();
    let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 <= b.1 && b.0 <= a.1;
    for &v in order {
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&p| overlaps(lifetimes[p], lifetimes[v]))
            .map(|&p| (offsets[p], offsets[p] + sizes[p]))
            .collect();
        busy.sort_unstable();
        let mut offset = 0;
        for (start, end) in busy {
            if offset + sizes[v] <= start {
                break;
            }
            offset = offset.max(end.next_multiple_of(ALIGN));
        }
        offsets[v] = offset;
        placed.push(v);
    }
    let arena_bytes = (0..sizes.len()).map(|v| offsets[v] + sizes[v]).max().unwrap_or(0);
    ArenaPlan { offsets, arena_bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_lifetimes_share_memory() {
        // A chain a -> b -> c: a and c never live together.
        let p = plan(&[100, 100, 100], &[(0, 1), (1, 2), (2, 3)]);
        assert_eq!(p.arena_bytes, 200);
        assert_eq!(p.offsets[0], p.offsets[2]);
        assert_ne!(p.offsets[0], p.offsets[1]);
    }

    #[test]
    fn overlapping_values_never_share_bytes() {
        let sizes = [10, 7, 33, 4, 16, 9];
        let life = [(0, 3), (1, 2), (2, 5), (3, 4), (4, 6), (5, 6)];
        let p = plan(&sizes, &life);
        for a in 0..sizes.len() {
            for b in a + 1..sizes.len() {
                let t = life[a].0 <= life[b].1 && life[b].0 <= life[a].1;
                let m = p.offsets[a] < p.offsets[b] + sizes[b] && p.offsets[b] < p.offsets[a] + sizes[a];
                assert!(!(t && m), "values {a} and {b} collide: {p:?}");
            }
            assert_eq!(p.offsets[a] % ALIGN, 0);
        }
    }
}
