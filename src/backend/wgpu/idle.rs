//! Idle buffers by size class under a byte budget: the buffer pool's shelves.
//!
//! A buffer put back is kept for reuse as long as the idle bytes stay within the budget; past it,
//! the least recently used idle buffers (those put back longest ago) are evicted and handed to
//! the caller to free. A taken buffer is the most recently put back of its class.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Idle buffers `B` by size class (the class is the buffer's size in bytes).
pub(crate) struct Idle<B> {
    /// Every idle buffer with its class, by the tick it was put back at: oldest first.
    by_age: BTreeMap<u64, (u64, B)>,
    /// The ticks of each class's idle buffers, oldest first.
    by_class: HashMap<u64, VecDeque<u64>>,
    tick: u64,
    bytes: u64,
    budget: u64,
}

impl<B> Idle<B> {
    /// Empty shelves that keep at most `budget` idle bytes.
    pub fn new(budget: u64) -> Idle<B> {
        Idle { by_age: BTreeMap::new(), by_class: HashMap::new(), tick: 0, bytes: 0, budget }
    }

    /// The most recently put back idle buffer of `class`, if any.
    pub fn take(&mut self, class: u64) -> Option<B> {
        let tick = self.by_class.get_mut(&class)?.pop_back()?;
        let (_, buffer) = self.by_age.remove(&tick).expect("every class tick is in by_age");
        self.bytes -= class;
        Some(buffer)
    }

    /// Puts `buffer` of `class` bytes back; returns the buffers evicted to stay within the budget
    /// (least recently used first; `buffer` itself when it alone exceeds the budget).
    #[must_use = "evicted buffers are the caller's to free"]
    pub fn put(&mut self, class: u64, buffer: B) -> Vec<B> {
        self.tick += 1;
        self.by_age.insert(self.tick, (class, buffer));
        self.by_class.entry(class).or_default().push_back(self.tick);
        self.bytes += class;
        let mut evicted = Vec::new();
        while self.bytes > self.budget {
            let (_, (class, buffer)) = self.by_age.pop_first().expect("idle bytes mean an idle buffer");
            // the oldest idle buffer overall is the oldest of its class
            self.by_class.get_mut(&class).and_then(VecDeque::pop_front);
            self.bytes -= class;
            evicted.push(buffer);
        }
        evicted
    }

    /// Bytes of the idle buffers.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How many idle buffers there are.
    pub fn len(&self) -> usize {
        self.by_age.len()
    }

    /// Evicts every idle buffer.
    pub fn clear(&mut self) -> Vec<B> {
        self.by_class.clear();
        self.bytes = 0;
        std::mem::take(&mut self.by_age).into_values().map(|(_, b)| b).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Idle;

    #[test]
    fn idle_bytes_never_exceed_the_budget() {
        let mut idle = Idle::new(10_000);
        let mut evicted = 0;
        for i in 0..1000u64 {
            let class = 256 * (1 + i * 7 % 13);
            evicted += idle.put(class, i).len();
            assert!(idle.bytes() <= 10_000, "{} idle bytes after {i}", idle.bytes());
            if i % 3 == 0 {
                idle.take(256);
            }
        }
        assert!(evicted > 0);
        // a buffer over the budget on its own is not kept (nor, then, anything older)
        assert_eq!(idle.put(20_000, 9999).last(), Some(&9999));
        assert_eq!((idle.len(), idle.bytes()), (0, 0));
    }

    #[test]
    fn the_least_recently_used_go_first_and_take_gives_the_most_recent() {
        let mut idle = Idle::new(1024);
        for (class, name) in [(256, 'a'), (512, 'b'), (256, 'c')] {
            assert!(idle.put(class, name).is_empty());
        }
        // 1280 bytes: a, the oldest, goes; then 1536: b
        assert_eq!(idle.put(256, 'd'), vec!['a']);
        assert_eq!(idle.put(512, 'e'), vec!['b']);
        assert_eq!(idle.bytes(), 1024);
        assert_eq!(idle.take(256), Some('d'));
        assert_eq!(idle.take(256), Some('c'));
        assert_eq!(idle.take(256), None);
        assert_eq!(idle.take(512), Some('e'));
        assert_eq!(idle.bytes(), 0);
    }

    #[test]
    fn a_taken_buffer_is_no_longer_evictable() {
        let mut idle = Idle::new(768);
        assert!(idle.put(256, 1).is_empty());
        assert!(idle.put(256, 2).is_empty());
        assert_eq!(idle.take(256), Some(2));
        assert!(idle.put(512, 3).is_empty());
        assert_eq!(idle.put(256, 4), vec![1]);
        assert_eq!(idle.len(), 2);
        assert_eq!(idle.clear(), vec![3, 4]);
        assert_eq!((idle.len(), idle.bytes()), (0, 0));
    }
}
