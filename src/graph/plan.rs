//! Memory planning by tensor lifetime.
//!
//! The executor records a graph once per shape; every intermediate tensor has a first step (where it is
//! written) and a last step (its last reader). Tensors whose lifetimes do not overlap can share storage. We
//! assign each tensor a *slot* — one device buffer — rather than an offset inside one arena: wgpu tracks usage per
//! buffer, so two tensors at different offsets of one buffer could not be bound read-only and read-write in the
//! same dispatch. The assignment is greedy, largest tensor first, into the first slot whose tensors are all
//! dead or not yet born during its lifetime (the scheme of ratchet's allocator and of TFLite's "greedy by size").

pub use trajattn_kernels::arena::{peak_live_bytes, Lifetime};

/// The result: a slot per tensor and each slot's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Slot index of each tensor, in input order.
    pub slot_of: Vec<usize>,
    /// Bytes of each slot (the largest tensor placed in it).
    pub slot_bytes: Vec<u64>,
}

impl Plan {
    /// Bytes the plan allocates (sum of slot sizes).
    pub fn total_bytes(&self) -> u64 {
        self.slot_bytes.iter().sum()
    }
}

/// Greedy-by-size slot assignment with best fit (deterministic: ties broken by input order).
pub fn plan(ts: &[Lifetime]) -> Plan {
    let mut order: Vec<usize> = (0..ts.len()).collect();
    order.sort_by(|&a, &b| ts[b].bytes.cmp(&ts[a].bytes).then(a.cmp(&b)));
    let mut slots: Vec<Vec<usize>> = Vec::new();
    let mut slot_bytes: Vec<u64> = Vec::new();
    let mut slot_of = vec![usize::MAX; ts.len()];
    for i in order {
        let t = ts[i];
        let fits =
            |members: &Vec<usize>| members.iter().all(|&j| ts[j].last < t.first || ts[j].first > t.last);
        // Best fit: the smallest slot free for this lifetime (all slots are at least this large, tensors come
        // largest first), so small tensors do not block the big slots that later big tensors need.
        let best = (0..slots.len()).filter(|&k| fits(&slots[k])).min_by_key(|&k| (slot_bytes[k], k));
        match best {
            Some(s) => {
                slots[s].push(i);
                slot_bytes[s] = slot_bytes[s].max(t.bytes);
                slot_of[i] = s;
            }
            None => {
                slot_of[i] = slots.len();
                slots.push(vec![i]);
                slot_bytes.push(t.bytes);
            }
        }
    }
    Plan { slot_of, slot_bytes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(seed: u64, n: usize) -> Vec<Lifetime> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let first = rng.random_range(0..200);
                Lifetime {
                    bytes: rng.random_range(1..1_000_000),
                    first,
                    last: first + rng.random_range(0..30),
                }
            })
            .collect()
    }

    #[test]
    fn no_slot_holds_two_live_tensors_and_sizes_cover_members() {
        for seed in 0..20 {
            let ts = random(seed, 300);
            let p = plan(&ts);
            for (i, a) in ts.iter().enumerate() {
                assert!(p.slot_bytes[p.slot_of[i]] >= a.bytes);
                for (j, b) in ts.iter().enumerate().skip(i + 1) {
                    if p.slot_of[i] == p.slot_of[j] {
                        assert!(
                            a.last < b.first || b.last < a.first,
                            "tensors {i} and {j} overlap in one slot"
                        );
                    }
                }
            }
            // Never below the lower bound, and far below allocating every tensor on its own.
            let naive: u64 = ts.iter().map(|t| t.bytes).sum();
            assert!(p.total_bytes() >= peak_live_bytes(&ts));
            assert!(p.total_bytes() < naive / 3, "seed {seed}: {} vs naive {naive}", p.total_bytes());
        }
    }

    #[test]
    fn a_chain_needs_two_slots() {
        // x0 → x1 → x2 → …: each step reads its input and writes its output, so two buffers ping-pong.
        let ts: Vec<Lifetime> = (0..10).map(|i| Lifetime { bytes: 100, first: i, last: i + 1 }).collect();
        let p = plan(&ts);
        assert_eq!(p.slot_bytes.len(), 2);
        assert_eq!(p.total_bytes(), peak_live_bytes(&ts));
    }

    #[test]
    fn deterministic() {
        let ts = random(7, 100);
        assert_eq!(plan(&ts), plan(&ts));
        assert_eq!(plan(&[]).total_bytes(), 0);
    }
}
