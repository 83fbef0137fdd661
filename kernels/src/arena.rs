//! Ahead-of-time placement of tensors at offsets inside a few large buffers (*arenas*), from their lifetimes.
//!
//! Every tensor has a size and an inclusive range of steps during which it must stay intact. Two tensors may
//! share bytes of one arena when their lifetimes do not overlap. The assignment is greedy by size (largest
//! first, the scheme TFLite and MLC call "greedy by size"): each tensor takes the smallest gap between the
//! tensors of an arena that are alive during its lifetime, else the end of the arena that grows the least.
//!
//! One more constraint comes from wgpu: it tracks usage per buffer and per dispatch, and a read-only binding
//! and a read-write binding of one buffer in one dispatch are a validation error even when their ranges are
//! disjoint (`kernels/tests/aliasing.rs`). Tensors bound together in one dispatch are therefore given as
//! *conflicts* and never placed in the same arena. Integers only: the plan is exact and deterministic.

/// One tensor to place: its size and the inclusive range of steps during which it must stay intact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// Bytes.
    pub bytes: u64,
    /// Step that writes it.
    pub first: usize,
    /// Last step that reads it (≥ `first`).
    pub last: usize,
}

impl Lifetime {
    fn overlaps(&self, o: &Lifetime) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// The lower bound of any placement: the most bytes alive at one step.
pub fn peak_live_bytes(ts: &[Lifetime]) -> u64 {
    let mut events: Vec<(usize, bool, u64)> = Vec::with_capacity(2 * ts.len());
    for t in ts {
        events.push((t.first, true, t.bytes));
        events.push((t.last + 1, false, t.bytes));
    }
    // At one step, releases (false) sort before births (true): a tensor dead after step s frees its bytes for
    // a tensor born at s + 1.
    events.sort_unstable();
    let (mut live, mut peak) = (0u64, 0u64);
    for (_, born, b) in events {
        if born {
            live += b;
            peak = peak.max(live);
        } else {
            live -= b;
        }
    }
    peak
}

/// Where each tensor lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// `(arena, byte offset)` of each tensor, in input order.
    pub at: Vec<(usize, u64)>,
    /// Bytes of each arena (the end of its highest tensor, rounded up to the alignment).
    pub arena_bytes: Vec<u64>,
}

impl Placement {
    /// Bytes of all arenas.
    pub fn total_bytes(&self) -> u64 {
        self.arena_bytes.iter().sum()
    }
}

/// A tensor larger than an arena may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// Index of the tensor.
    pub tensor: usize,
    /// Its bytes (rounded up to the alignment).
    pub bytes: u64,
    /// The largest arena allowed.
    pub arena_limit: u64,
}

/// Places `ts` at offsets that are multiples of `align` inside arenas of at most `arena_limit` bytes, so that
/// tensors alive at one step never share a byte and the two tensors of each pair in `conflicts` never share an
/// arena. Each tensor reserves its bytes rounded up to `align` (a binding may be rounded up past the last
/// element, and must not reach into a neighbour).
pub fn place(
    ts: &[Lifetime],
    conflicts: &[(usize, usize)],
    align: u64,
    arena_limit: u64,
) -> Result<Placement, TooLarge> {
    let align = align.max(1);
    let reserve = |t: &Lifetime| t.bytes.max(1).div_ceil(align) * align;
    let mut against: Vec<Vec<usize>> = vec![Vec::new(); ts.len()];
    for &(a, b) in conflicts {
        if a != b && a < ts.len() && b < ts.len() {
            against[a].push(b);
            against[b].push(a);
        }
    }
    let mut order: Vec<usize> = (0..ts.len()).collect();
    // Largest first; among equals the longest-lived first, then input order (deterministic).
    order.sort_by(|&a, &b| {
        let (ta, tb) = (&ts[a], &ts[b]);
        reserve(tb).cmp(&reserve(ta)).then((tb.last - tb.first).cmp(&(ta.last - ta.first))).then(a.cmp(&b))
    });
    const NONE: usize = usize::MAX;
    let mut at = vec![(NONE, 0u64); ts.len()];
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut arena_bytes: Vec<u64> = Vec::new();
    let mut busy: Vec<(u64, u64)> = Vec::new();
    for i in order {
        let t = &ts[i];
        let size = reserve(t);
        if size > arena_limit {
            return Err(TooLarge { tensor: i, bytes: size, arena_limit });
        }
        // Best candidate over the arenas: (growth of the arena, size of the gap used, arena, offset).
        let mut best: Option<(u64, u64, usize, u64)> = None;
        for (a, m) in members.iter().enumerate() {
            if against[i].iter().any(|&j| at[j].0 == a) {
                continue;
            }
            busy.clear();
            busy.extend(
                m.iter().filter(|&&j| ts[j].overlaps(t)).map(|&j| (at[j].1, at[j].1 + reserve(&ts[j]))),
            );
            busy.sort_unstable();
            // Gaps between the live tensors of this arena, then the space above them.
            let mut cursor = 0u64;
            let mut pick: Option<(u64, u64, u64)> = None; // (growth, gap, offset)
            let mut consider = |start: u64, end: Option<u64>| {
                let gap = end.map_or(u64::MAX, |e| e - start);
                if gap < size || start + size > arena_limit {
                    return;
                }
                let growth = (start + size).saturating_sub(arena_bytes[a]);
                let cand = (growth, gap, start);
                if pick.is_none_or(|p| cand < p) {
                    pick = Some(cand);
                }
            };
            for &(s, e) in &busy {
                if s > cursor {
                    consider(cursor, Some(s));
                }
                cursor = cursor.max(e);
            }
            consider(cursor, None);
            if let Some((growth, gap, off)) = pick {
                let cand = (growth, gap, a, off);
                if best.is_none_or(|b| cand < b) {
                    best = Some(cand);
                }
            }
        }
        let (a, off) = match best {
            Some((_, _, a, off)) => (a, off),
            None => {
                members.push(Vec::new());
                arena_bytes.push(0);
                (members.len() - 1, 0)
            }
        };
        at[i] = (a, off);
        members[a].push(i);
        arena_bytes[a] = arena_bytes[a].max(off + size);
    }
    Ok(Placement { at, arena_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(seed: u64, n: usize) -> (Vec<Lifetime>, Vec<(usize, usize)>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ts: Vec<Lifetime> = (0..n)
            .map(|_| {
                let first = rng.random_range(0..200);
                Lifetime {
                    bytes: rng.random_range(1..1_000_000),
                    first,
                    last: first + rng.random_range(0..30),
                }
            })
            .collect();
        // Conflicts between tensors alive together, as dispatches bind them (a few per tensor).
        let mut conflicts = Vec::new();
        for _ in 0..n {
            let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
            if ts[a].overlaps(&ts[b]) {
                conflicts.push((a, b));
            }
        }
        (ts, conflicts)
    }

    fn check(ts: &[Lifetime], conflicts: &[(usize, usize)], p: &Placement, align: u64, limit: u64) {
        for (i, a) in ts.iter().enumerate() {
            let (ai, oi) = p.at[i];
            assert_eq!(oi % align, 0, "tensor {i} misaligned");
            assert!(oi + a.bytes <= p.arena_bytes[ai], "tensor {i} past its arena");
            assert!(p.arena_bytes[ai] <= limit);
            for (j, b) in ts.iter().enumerate().skip(i + 1) {
                let (aj, oj) = p.at[j];
                if ai == aj && a.overlaps(b) {
                    assert!(
                        oi + a.bytes <= oj || oj + b.bytes <= oi,
                        "tensors {i} and {j} are alive together and share bytes"
                    );
                }
            }
        }
        for &(a, b) in conflicts {
            if a != b {
                assert_ne!(p.at[a].0, p.at[b].0, "conflicting tensors {a} and {b} share an arena");
            }
        }
    }

    #[test]
    fn random_lifetimes_are_placed_without_overlap_near_the_live_bound() {
        for seed in 0..20 {
            let (ts, conflicts) = random(seed, 300);
            let live = peak_live_bytes(&ts);
            for (cs, pct) in [(&[][..], 125u128), (&conflicts[..], 130)] {
                let p = place(&ts, cs, 256, u64::MAX).unwrap();
                check(&ts, cs, &p, 256, u64::MAX);
                assert!(p.total_bytes() >= live);
                // Greedy by size lands close to the lower bound (measured over these seeds: mean 1.09, worst 1.19
                // without conflicts and 1.21 with them).
                let limit = (live as u128 * pct / 100) as u64;
                assert!(
                    p.total_bytes() <= limit,
                    "seed {seed}, {} conflicts: {} vs live bound {live}",
                    cs.len(),
                    p.total_bytes()
                );
            }
        }
    }

    #[test]
    fn arenas_respect_their_limit() {
        let (ts, conflicts) = random(3, 200);
        let p = place(&ts, &conflicts, 64, 4_000_000).unwrap();
        check(&ts, &conflicts, &p, 64, 4_000_000);
        assert!(p.arena_bytes.len() > 1);
        let big = [Lifetime { bytes: 5_000_000, first: 0, last: 0 }];
        assert_eq!(place(&big, &[], 64, 4_000_000).unwrap_err().tensor, 0);
    }

    #[test]
    fn a_chain_ping_pongs_inside_the_live_bound() {
        // x0 → x1 → …: each step reads its input and writes its output; the pair bound together conflicts.
        let ts: Vec<Lifetime> = (0..10).map(|i| Lifetime { bytes: 100, first: i, last: i + 1 }).collect();
        let conflicts: Vec<(usize, usize)> = (0..9).map(|i| (i, i + 1)).collect();
        let p = place(&ts, &conflicts, 4, u64::MAX).unwrap();
        check(&ts, &conflicts, &p, 4, u64::MAX);
        assert_eq!(p.total_bytes(), peak_live_bytes(&ts));
        let free = place(&ts, &[], 4, u64::MAX).unwrap();
        assert_eq!(free.arena_bytes.len(), 1);
        assert_eq!(free.total_bytes(), 200);
    }

    #[test]
    fn deterministic_and_empty() {
        let (ts, c) = random(7, 100);
        assert_eq!(place(&ts, &c, 16, u64::MAX), place(&ts, &c, 16, u64::MAX));
        assert_eq!(place(&[], &[], 16, 1).unwrap().total_bytes(), 0);
        assert_eq!(peak_live_bytes(&[]), 0);
    }
}
