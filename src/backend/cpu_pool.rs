//! Reuse of large CPU buffers.
//!
//! A fresh allocation of many megabytes comes from the OS as untouched pages, and the first
//! write to each 4 KiB page traps into the kernel: for a (8192, 4096) f32 softmax that costs
//! more than the arithmetic (on the development machine: 70 ms with fresh outputs, 42 ms with
//! pooled ones). So a freed CPU buffer of at least [`MIN_BYTES`] is kept, by dtype and length,
//! and handed to the next output of that size; the pool holds at most [`MAX_BYTES`] and frees
//! what does not fit. Smaller buffers are left to the allocator, whose heap already reuses them.

use super::cpu::CpuData;
use crate::dtype::{DType, Element};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Buffers smaller than this are not pooled (glibc's malloc serves up to 32 MiB from its heap
/// once it has seen such sizes freed, but a first use of each size still faults).
pub const MIN_BYTES: usize = 1 << 20;

/// The most memory the pool keeps.
pub const MAX_BYTES: usize = 1 << 30;

#[derive(Default)]
struct Shelves {
    free: HashMap<(DType, usize), Vec<CpuData>>,
    bytes: usize,
}

static POOL: Mutex<Option<Shelves>> = Mutex::new(None);

fn shelves() -> MutexGuard<'static, Option<Shelves>> {
    // the pool holds no invariant a panic could break mid-way: keep using it
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A vector of `n` copies of `value`, in a pooled buffer when one of that size is free.
pub fn filled<T: Element>(n: usize, value: T) -> Vec<T> {
    if n * std::mem::size_of::<T>() >= MIN_BYTES {
        let reused = shelves().as_mut().and_then(|s| {
            let data = s.free.get_mut(&(T::DTYPE, n))?.pop()?;
            s.bytes -= n * std::mem::size_of::<T>();
            Some(data)
        });
        if let Some(mut v) = reused.and_then(|d| T::into_vec(d).ok()) {
            v.fill(value);
            return v;
        }
    }
    vec![value; n]
}

/// A vector of `n` zeros (see [`filled`]).
pub fn zeroed<T: Element>(n: usize) -> Vec<T> {
    filled(n, T::from_f64(0.0))
}

/// Takes a dropped tensor's data into the pool when it is large enough and there is room;
/// returns whether it was kept.
pub(crate) fn give(data: CpuData) -> bool {
    let (len, bytes) = (data.len(), data.len() * data.dtype().size_bytes());
    if bytes < MIN_BYTES {
        return false;
    }
    let mut guard = shelves();
    let s = guard.get_or_insert_with(Shelves::default);
    let kept = s.bytes + bytes <= MAX_BYTES;
    if kept {
        s.bytes += bytes;
        s.free.entry((data.dtype(), len)).or_default().push(data);
    }
    kept
}

/// Bytes held in the pool now.
pub fn pooled_bytes() -> usize {
    shelves().as_ref().map_or(0, |s| s.bytes)
}

/// Frees every pooled buffer (for a program about to need the memory for something else).
pub fn trim() {
    *shelves() = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_come_back_zeroed_and_small_ones_are_not_kept() {
        let n = MIN_BYTES / 4 + 7; // f32 elements: just over the threshold
        let mut v = zeroed::<f32>(n);
        v.fill(3.0);
        let ptr = v.as_ptr();
        assert!(give(CpuData::F32(v)));
        // no other test asks for this odd length, so the same buffer comes back, zeroed
        let w = zeroed::<f32>(n);
        assert_eq!((w.as_ptr(), w.len()), (ptr, n));
        assert!(w.iter().all(|&x| x == 0.0));
        // a different dtype or length is never handed the same buffer
        assert!(give(CpuData::F32(w)));
        assert_eq!(zeroed::<f64>(n / 2).len(), n / 2);
        assert_eq!(filled::<f32>(n - 1, 2.0).iter().filter(|&&x| x == 2.0).count(), n - 1);
        assert!(!give(CpuData::F32(vec![1.0; 16])));
    }
}
