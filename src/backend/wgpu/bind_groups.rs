//! The bind-group cache: a training loop binds the same pool buffers to the same kernels step
//! after step, and creating a bind group is one of the larger costs of recording a dispatch.
//!
//! The cache holds at most [`BindGroupCache::CAPACITY`] groups; when full it drops the least
//! recently used eighth, so a hot working set survives a burst of one-off bindings. A cached
//! bind group keeps its buffers alive, so the buffer pool asks it to forget the groups of the
//! buffers it frees ([`BindGroupCache::forget_buffers`]).

use super::context::lock;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// A bind group's identity: its layout and each binding's buffer and size.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct BindKey {
    pub layout: wgpu::BindGroupLayout,
    pub buffers: Vec<(wgpu::Buffer, u64)>,
}

/// Bind groups already created, by layout and buffers bound.
pub(crate) struct BindGroupCache {
    groups: Mutex<Recent<BindKey, wgpu::BindGroup>>,
}

impl Default for BindGroupCache {
    fn default() -> BindGroupCache {
        BindGroupCache { groups: Mutex::new(Recent::new(Self::CAPACITY)) }
    }
}

impl BindGroupCache {
    /// Most bind groups kept.
    pub const CAPACITY: usize = 8192;

    /// The bind group for `key`, created by `create` on a miss.
    pub fn get(&self, key: BindKey, create: impl FnOnce() -> wgpu::BindGroup) -> wgpu::BindGroup {
        lock(&self.groups).get_or_insert_with(key, create).clone()
    }

    /// Forgets every bind group that binds one of `buffers`, so that none keeps them alive.
    pub fn forget_buffers(&self, buffers: &[wgpu::Buffer]) {
        // evictions come a few buffers at a time: a scan of them per binding is enough
        lock(&self.groups).retain(|key| key.buffers.iter().all(|(b, _)| !buffers.contains(b)));
    }

    /// Forgets every bind group (and so releases the buffers they hold).
    pub fn clear(&self) {
        lock(&self.groups).entries.clear();
    }
}

/// A map of at most `capacity` entries that, when full, drops its least recently used eighth
/// (one scan per `capacity / 8` insertions).
struct Recent<K, V> {
    /// Each value with the tick of its last use.
    entries: HashMap<K, (V, u64)>,
    tick: u64,
    capacity: usize,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    fn new(capacity: usize) -> Recent<K, V> {
        Recent { entries: HashMap::new(), tick: 0, capacity: capacity.max(1) }
    }

    /// The value of `key`, made by `create` on a miss; either way now the most recently used.
    fn get_or_insert_with(&mut self, key: K, create: impl FnOnce() -> V) -> &V {
        self.tick += 1;
        let tick = self.tick;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.drop_least_recent();
        }
        let entry = self.entries.entry(key).or_insert_with(|| (create(), tick));
        entry.1 = tick;
        &entry.0
    }

    /// Drops the least recently used eighth of the entries (at least one).
    fn drop_least_recent(&mut self) {
        let count = (self.entries.len() / 8).max(1);
        let mut ticks: Vec<u64> = self.entries.values().map(|(_, t)| *t).collect();
        // ticks are distinct: the `count` smallest are those below the count-th
        let newest_kept = *ticks.select_nth_unstable(count).1;
        self.entries.retain(|_, (_, t)| *t >= newest_kept);
    }

    /// Keeps only the entries whose key passes `keep`.
    fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    /// Looks `key` up, counting creations in `created`.
    fn touch(cache: &mut Recent<u32, u32>, key: u32, created: &mut usize) {
        let value = *cache.get_or_insert_with(key, || {
            *created += 1;
            key * 10
        });
        assert_eq!(value, key * 10);
    }

    #[test]
    fn a_hot_working_set_survives_a_stream_of_one_off_entries() {
        let mut cache = Recent::new(64);
        let (mut hot_created, mut cold_created) = (0, 0);
        for cold in 1000..11_000 {
            for hot in 0..16 {
                touch(&mut cache, hot, &mut hot_created);
            }
            touch(&mut cache, cold, &mut cold_created);
            assert!(cache.entries.len() <= 64);
        }
        assert_eq!(hot_created, 16, "each hot entry is created once");
        assert_eq!(cold_created, 10_000);
    }

    #[test]
    fn the_least_recently_used_go_first() {
        let mut cache = Recent::new(64);
        let mut created = 0;
        for key in 0..64 {
            touch(&mut cache, key, &mut created);
        }
        touch(&mut cache, 0, &mut created); // now the most recent
        touch(&mut cache, 64, &mut created); // full: drops an eighth, the least recently used
        let kept: Vec<u32> = (0..=64).filter(|k| cache.entries.contains_key(k)).collect();
        let want: Vec<u32> = [0].into_iter().chain(9..=64).collect();
        assert_eq!(kept, want);
        assert_eq!(created, 65);
    }
}
