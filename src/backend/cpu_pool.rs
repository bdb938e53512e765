//! Reuse of CPU buffers.
//!
//! A fresh allocation of more than glibc's mmap threshold (128 KiB at first) comes from the OS
//! as untouched pages, the first write to each 4 KiB page traps into the kernel, and freeing
//! it returns the pages: for a (8192, 4096) f32 softmax that costs more than the arithmetic (on
//! the development machine: 70 ms with fresh outputs, 42 ms with pooled ones). So a freed CPU
//! buffer of at least [`MIN_BYTES`] is kept, by dtype and length, and handed to the next output
//! of that size; the pool holds at most [`MAX_BYTES`] and frees what does not fit. Smaller
//! buffers are left to the allocator, whose heap already reuses them.
//!
//! An output its op writes in full takes its buffer as it is ([`for_overwrite`]): filling it
//! first cost the char-GPT's CPU step about a tenth of its time.

use super::cpu::CpuData;
use crate::dtype::{DType, Element};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Buffers smaller than this are not pooled. An eighth of glibc's first mmap threshold: the
/// char-GPT's activations, (12, 64, 128) f32 or 384 KiB, are pooled (a bound of 1 MiB left them
/// to mmap and page faults: its CPU step took ~20% longer, 2026-12-02), and so is an LSTM
/// step's hidden state, 32 × 256 f32 or 32 KiB (a copy of it took 10 µs from the allocator, 7.5
/// from the pool, on the development machine).
pub const MIN_BYTES: usize = 1 << 14;

/// The most memory the pool keeps.
pub const MAX_BYTES: usize = 1 << 30;

/// The most bytes the pool keeps of one size, though it keeps at least 256 buffers of any size
/// (`shelf_limit`): more than a training step frees of one size and takes again (a 2-layer
/// LSTM over 128 steps frees about 512 buffers of 128 KiB at the end of its backward pass and
/// takes them again in the next step), and a bound on buffers of a size that is given back
/// more often than asked for (in `char_gpt`'s step, about one 384 KiB buffer a step: the
/// process grew by 0.5 GB over 1000 steps without a bound).
pub const MAX_SHELF_BYTES: usize = 128 << 20;
const MIN_PER_SIZE: usize = 256;

/// The most buffers of `bytes` each that the pool keeps.
fn shelf_limit(bytes: usize) -> usize {
    (MAX_SHELF_BYTES / bytes.max(1)).max(MIN_PER_SIZE)
}

/// Freed buffers by (dtype, length), holding at most `capacity` bytes.
struct Shelves {
    free: HashMap<(DType, usize), Vec<CpuData>>,
    bytes: usize,
    capacity: usize,
}

impl Shelves {
    fn new(capacity: usize) -> Shelves {
        Shelves { free: HashMap::new(), bytes: 0, capacity }
    }

    /// A kept buffer of `len` elements of `dtype`, if there is one.
    fn take(&mut self, dtype: DType, len: usize) -> Option<CpuData> {
        let data = self.free.get_mut(&(dtype, len))?.pop()?;
        self.bytes -= len * dtype.size_bytes();
        Some(data)
    }

    /// Keeps `data` if it is large enough and fits; returns whether it was kept.
    fn put(&mut self, data: CpuData) -> bool {
        let (dtype, len) = (data.dtype(), data.len());
        let bytes = len * dtype.size_bytes();
        let shelf = self.free.entry((dtype, len)).or_default();
        let kept =
            bytes >= MIN_BYTES && self.bytes + bytes <= self.capacity && shelf.len() < shelf_limit(bytes);
        if kept {
            self.bytes += bytes;
            shelf.push(data);
        }
        kept
    }
}

/// The process's pool, created on first use (a `HashMap` cannot be built in a `static`).
static POOL: Mutex<Option<Shelves>> = Mutex::new(None);

/// Runs `f` on the pool.
fn with_pool<R>(f: impl FnOnce(&mut Shelves) -> R) -> R {
    // the pool holds no invariant a panic could break mid-way: keep using it
    let mut guard = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    f(guard.get_or_insert_with(|| Shelves::new(MAX_BYTES)))
}

/// A vector of `n` copies of `value`, in a pooled buffer when one of that size is free.
pub fn filled<T: Element>(n: usize, value: T) -> Vec<T> {
    match pooled(n) {
        Some(mut v) => {
            v.fill(value);
            v
        }
        None => vec![value; n],
    }
}

/// A vector of `n` zeros (see [`filled`]).
pub fn zeroed<T: Element>(n: usize) -> Vec<T> {
    filled(n, T::from_f64(0.0))
}

/// A vector of `n` elements for an output its caller writes in full: a pooled buffer as its
/// last tensor left it, without the cost of filling it, or zeros from the allocator.
///
/// In debug builds (the tests') every element starts as NaN instead (0 for integers, true for
/// booleans), so that an element an op forgets to write shows in its results rather than
/// passing on a stale value.
pub fn for_overwrite<T: Element>(n: usize) -> Vec<T> {
    if cfg!(debug_assertions) {
        return filled(n, T::from_f64(f64::NAN));
    }
    pooled(n).unwrap_or_else(|| vec![T::from_f64(0.0); n])
}

/// A pooled buffer of `n` elements as its last tensor left it, if the size is pooled and one
/// is free.
fn pooled<T: Element>(n: usize) -> Option<Vec<T>> {
    if n * std::mem::size_of::<T>() < MIN_BYTES {
        return None;
    }
    with_pool(|s| s.take(T::DTYPE, n)).and_then(|data| T::into_vec(data).ok())
}

/// Takes a dropped tensor's data into the pool when it is large enough and there is room.
pub(crate) fn give(data: CpuData) {
    // most tensors are small: decide that without the lock
    if data.len() * data.dtype().size_bytes() >= MIN_BYTES {
        with_pool(|s| s.put(data));
    }
}

/// Bytes held in the pool now.
pub fn pooled_bytes() -> usize {
    with_pool(|s| s.bytes)
}

/// Frees every pooled buffer (for a program about to need the memory for something else).
pub fn trim() {
    with_pool(|s| *s = Shelves::new(MAX_BYTES));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shelves_keep_large_buffers_by_dtype_and_length_up_to_their_capacity() {
        let n = MIN_BYTES / 4; // f32 elements: exactly the threshold
        let mut shelves = Shelves::new(MIN_BYTES + MIN_BYTES / 2);
        assert!(!shelves.put(CpuData::F32(vec![1.0; 16])), "small buffers are left to the allocator");
        assert!(shelves.put(CpuData::F32(vec![1.0; n])));
        assert!(!shelves.put(CpuData::F32(vec![2.0; n])), "over capacity");
        assert_eq!(shelves.bytes, MIN_BYTES);
        assert!(shelves.take(DType::F32, n - 1).is_none() && shelves.take(DType::I32, n).is_none());
        assert!(matches!(shelves.take(DType::F32, n), Some(CpuData::F32(v)) if v.len() == n));
        assert_eq!(shelves.bytes, 0);
        assert!(shelves.take(DType::F32, n).is_none());
        // at most shelf_limit of one size, whatever the room
        let mut roomy = Shelves::new(usize::MAX);
        let limit = shelf_limit(n * 4);
        let kept = (0..limit + 3).filter(|_| roomy.put(CpuData::F32(vec![0.0; n]))).count();
        assert_eq!(kept, limit);
        assert_eq!(shelf_limit(384 << 10), 341);
        assert_eq!(shelf_limit(64 << 20), MIN_PER_SIZE);
    }

    #[test]
    fn a_dropped_large_tensor_is_handed_back_zeroed() {
        let n = MIN_BYTES / 4 + 7; // an odd length no other test asks for
        let mut v = zeroed::<f32>(n);
        v.fill(3.0);
        let ptr = v.as_ptr();
        drop(super::super::cpu::CpuStorage::from_vec(v));
        assert!(pooled_bytes() >= n * 4);
        let w = zeroed::<f32>(n);
        assert_eq!((w.as_ptr(), w.len()), (ptr, n));
        assert!(w.iter().all(|&x| x == 0.0));
        assert_eq!(filled::<f32>(n - 1, 2.0).iter().filter(|&&x| x == 2.0).count(), n - 1);
    }
}
