//! Bytes held by tensor storage, per device: what is live now and the high-water mark since the
//! last reset — what `Device::memory` reports, as `torch.cuda.memory_allocated` and
//! `max_memory_allocated` do for PyTorch.
//!
//! Counted are the buffers that realized tensors own. A GPU buffer counts its whole size class
//! (what the device allocated, at most 12.5% above the tensor's bytes); buffers idle in the pool
//! and staging buffers for readback do not count.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live and peak bytes of one device's tensor storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by tensors now.
    pub live_bytes: u64,
    /// The most bytes held at once since the device started or since
    /// [`Device::reset_peak_memory`](crate::Device::reset_peak_memory).
    pub peak_bytes: u64,
}

/// Live and peak byte counters, updated as storage is created and dropped.
pub(crate) struct MemoryCounter {
    live: AtomicU64,
    peak: AtomicU64,
}

impl MemoryCounter {
    pub const fn new() -> MemoryCounter {
        MemoryCounter { live: AtomicU64::new(0), peak: AtomicU64::new(0) }
    }

    /// Storage of `bytes` was created.
    pub fn allocated(&self, bytes: u64) {
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(live, Ordering::Relaxed);
    }

    /// Storage of `bytes` was dropped.
    pub fn freed(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// What is live now and the high-water mark.
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            live_bytes: self.live.load(Ordering::Relaxed),
            peak_bytes: self.peak.load(Ordering::Relaxed),
        }
    }

    /// Starts the high-water mark again from what is live now.
    pub fn reset_peak(&self) {
        self.peak.store(self.live.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_the_most_held_at_once_since_the_reset() {
        let m = MemoryCounter::new();
        m.allocated(100);
        m.allocated(50);
        m.freed(100);
        assert_eq!(m.stats(), MemoryStats { live_bytes: 50, peak_bytes: 150 });
        m.reset_peak();
        m.allocated(20);
        m.freed(20);
        assert_eq!(m.stats(), MemoryStats { live_bytes: 50, peak_bytes: 70 });
    }
}
