//! Storage of the live flows: a hash index of small slots over dense, chunked flow storage.
//!
//! Why not `HashMap<FlowKey, Flow>`: a map sized for N flows holds between 1.14 N and 2.3 N
//! buckets of key + flow (~230 bytes each), and doubles with a transient copy of both tables.
//! Here the hash table holds only a `u32` per bucket (5 bytes with its control byte); the
//! flows themselves live densely in fixed 1,024-flow chunks, so memory is ~flows × size_of
//! Flow plus at most two spare chunks, growth never copies a flow, and a sweep walks the
//! flows in memory order.
//!
//! Guarantees: every key appears at most once; indices stay dense (`0..len`) because removal
//! moves the last flow into the hole and re-points its index slot; iteration order depends
//! only on the order of inserts and removals, never on hash values.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::{Flow, FlowKey};

/// Flows per chunk.
const CHUNK: usize = 1024;

#[derive(Default)]
pub struct FlowStore {
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    chunks: Vec<Vec<Flow>>,
    len: usize,
}

impl std::fmt::Debug for FlowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowStore").field("len", &self.len).finish()
    }
}

impl FlowStore {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    fn slot(&self, index: u32) -> &Flow {
        let i = index as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    /// The index of `key`'s flow, given `hash = self.hash(key)`.
    pub fn find(&self, hash: u64, key: &FlowKey) -> Option<u32> {
        self.index
            .find(hash, |&i| self.slot(i).key == *key)
            .copied()
    }

    /// Hint: the flows `hash` may belong to will be read soon. Reads only the index (reading
    /// a flow's key would wait for exactly the miss this hides).
    pub fn prefetch_flows(&self, hash: u64) {
        // The closure sees every slot whose 7-bit tag matches and refuses it, so nothing is
        // found and no flow is read.
        let _ = self.index.find(hash, |&i| {
            let flow: *const Flow = self.slot(i);
            crate::prefetch::prefetch_bytes(flow.cast(), std::mem::size_of::<Flow>());
            false
        });
    }

    pub fn get_mut(&mut self, index: u32) -> &mut Flow {
        let i = index as usize;
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }

    /// Adds a flow whose key is not present yet; `hash` is `self.hash(&flow.key)`.
    pub fn insert(&mut self, hash: u64, flow: Flow) -> u32 {
        let index = self.len as u32;
        let chunk = self.len / CHUNK;
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[chunk].push(flow);
        self.len += 1;
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index.insert_unique(hash, index, |&i| {
            let i = i as usize;
            hasher.hash_one(chunks[i / CHUNK][i % CHUNK].key)
        });
        index
    }

    /// Removes `key`'s flow, if present.
    pub fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        let hash = self.hash(key);
        let chunks = &self.chunks;
        let entry = self
            .index
            .find_entry(hash, |&i| {
                let i = i as usize;
                chunks[i / CHUNK][i % CHUNK].key == *key
            })
            .ok()?;
        let (index, _) = entry.remove();
        let index = index as usize;
        let last = self.len - 1;
        let last_flow = self.chunks[last / CHUNK].pop()?;
        self.len = last;
        // Keep one empty chunk as a spare; free the rest so memory follows the live count.
        while self.chunks.len() > self.len / CHUNK + 2 {
            self.chunks.pop();
        }
        if index == last {
            return Some(last_flow);
        }
        // The last flow fills the hole; its index slot follows it.
        let moved_hash = self.hasher.hash_one(last_flow.key);
        let removed = std::mem::replace(&mut self.chunks[index / CHUNK][index % CHUNK], last_flow);
        if let Some(slot) = self.index.find_mut(moved_hash, |&i| i as usize == last) {
            *slot = index as u32;
        }
        Some(removed)
    }

    pub fn values(&self) -> impl Iterator<Item = &Flow> {
        self.chunks.iter().flatten()
    }

    /// Empties the store, returning every flow sorted by `key` in chunks of at most 1,024
    /// (sorted in place: no second copy of the flows is ever held).
    pub fn take_sorted<K: Ord>(&mut self, key: impl Fn(&Flow) -> K) -> Vec<Vec<Flow>> {
        let mut chunks = std::mem::take(&mut self.chunks);
        chunks.retain(|c| !c.is_empty());
        // Every chunk but the last is full, so position i lives at (i / CHUNK, i % CHUNK).
        let mut order: Vec<(K, u32)> = chunks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, f)| (key(f), i as u32))
            .collect();
        order.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)));
        // Apply the permutation cycle by cycle: position p receives the flow from order[p].
        let mut placed = vec![false; order.len()];
        for start in 0..order.len() {
            let mut p = start;
            while !placed[p] {
                placed[p] = true;
                let from = order[p].1 as usize;
                if from == start {
                    break;
                }
                swap_flows(&mut chunks, p, from);
                p = from;
            }
        }
        *self = FlowStore::default();
        chunks
    }
}

/// Swaps the flows at two positions of chunked storage.
fn swap_flows(chunks: &mut [Vec<Flow>], x: usize, y: usize) {
    let ((cx, ix), (cy, iy)) = ((x / CHUNK, x % CHUNK), (y / CHUNK, y % CHUNK));
    if cx == cy {
        chunks[cx].swap(ix, iy);
        return;
    }
    let ((low, low_i), (high, high_i)) = if cx < cy {
        ((cx, ix), (cy, iy))
    } else {
        ((cy, iy), (cx, ix))
    };
    let (head, tail) = chunks.split_at_mut(high);
    std::mem::swap(&mut head[low][low_i], &mut tail[0][high_i]);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::flow::Endpoint;

    fn key(n: u16) -> FlowKey {
        let ep = |port| Endpoint {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8)),
            port,
        };
        FlowKey::from_packet(6, ep(n), ep(80), false).0
    }

    proptest! {
        /// Any sequence of inserts and removals leaves exactly the flows a plain map would
        /// hold, each findable under its key, with dense indices.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u16..3000), 1..4000)) {
            let mut store = FlowStore::default();
            let mut reference: HashMap<FlowKey, u64> = HashMap::new();
            for (serial, (insert, n)) in ops.into_iter().enumerate() {
                let k = key(n);
                let hash = store.hash(&k);
                if insert {
                    if store.find(hash, &k).is_none() {
                        store.insert(hash, Flow::new(k, serial as u64, true, 0));
                        reference.insert(k, serial as u64);
                    }
                } else {
                    let removed = store.remove(&k).map(|f| f.serial);
                    prop_assert_eq!(removed, reference.remove(&k));
                }
                prop_assert_eq!(store.len(), reference.len());
            }
            for (k, serial) in &reference {
                let index = store.find(store.hash(k), k);
                prop_assert!(index.is_some_and(|i| (i as usize) < store.len()));
                prop_assert_eq!(index.map(|i| store.get_mut(i).serial), Some(*serial));
            }
            prop_assert_eq!(store.values().count(), reference.len());
            prop_assert!(store.chunks.len() <= store.len() / CHUNK + 2, "spare chunks are freed");
            let all: Vec<Flow> = store.take_sorted(|f| f.serial).into_iter().flatten().collect();
            prop_assert_eq!(all.len(), reference.len());
            prop_assert!(all.windows(2).all(|w| w[0].serial < w[1].serial), "sorted");
            prop_assert_eq!(store.len(), 0);
        }
    }
}
