//! Subnormal floats on the CPU: flushed to zero while kiln computes, as TensorFlow's CPU
//! kernels do and as GPUs may (WGSL lets an implementation flush f32 subnormals).
//!
//! A subnormal (an f32 below 2⁻¹²⁶ ≈ 1.2e-38 in magnitude) costs x86 cores a microcode assist
//! of a hundred cycles or more wherever an operation reads or produces one. Training makes
//! them: a saturated gate's slope σ(x)·σ(−x), the products of tiny gradients, Adam's decaying
//! second moments. In `char_lstm`'s 200 steps on the 2-core Intel development VM they made
//! the whole run 1.45× as long (47.7–50.3 s against 32.8–35.6 s flushed), the validation loss
//! the same to four digits.
//!
//! So kiln's CPU work runs with the two bits of the SSE control register (MXCSR) that flush
//! them: FTZ (results) and DAZ (inputs). The thread that calls a realize or an optimizer step
//! has them for that call only ([`flushed`] puts its mode back); rayon's threads, where the
//! kernels' split work runs, keep them from kiln's first parallel realize on
//! ([`flush_global_pool`], [`flush_this_thread`]).
//! `KILN_FLUSH_DENORMALS=0` keeps IEEE subnormals instead (read once per process). Other
//! architectures keep their default mode.

use std::sync::OnceLock;

/// Whether kiln flushes subnormals: unless the environment sets `KILN_FLUSH_DENORMALS=0`.
pub(crate) fn flushing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("KILN_FLUSH_DENORMALS").map_or(true, |v| v.trim() != "0"))
}

/// The calling thread's floating-point mode while kiln computes: subnormals flushed from
/// creation to drop (if [`flushing`]), the previous mode back after.
pub(crate) struct Flushed {
    previous: Option<u32>,
}

impl Drop for Flushed {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            mode::set(previous);
        }
    }
}

/// Flushes subnormals for a piece of kiln's CPU work: on this thread until the guard is
/// dropped, and on rayon's global pool (see [`flush_global_pool`]).
pub(crate) fn for_cpu_work() -> Flushed {
    flush_global_pool();
    flushed()
}

/// Flushes subnormals on this thread until the guard is dropped.
pub(crate) fn flushed() -> Flushed {
    if !flushing() {
        return Flushed { previous: None };
    }
    let previous = mode::get();
    mode::set(previous | mode::FLUSH);
    Flushed { previous: Some(previous) }
}

/// Flushes subnormals on this thread for good: a thread of rayon's pools, which runs kiln's
/// split work.
pub(crate) fn flush_this_thread() {
    if flushing() {
        mode::set(mode::get() | mode::FLUSH);
    }
}

/// Flushes subnormals on every thread of rayon's global pool, for good, the first time a thread
/// outside the pools asks: before kiln's first parallel realize runs there. (The threads of
/// another pool a realize runs on are flushed as they take part in it: `cpu_threads`.)
pub(crate) fn flush_global_pool() {
    static DONE: OnceLock<()> = OnceLock::new();
    if flushing() && rayon::current_thread_index().is_none() {
        DONE.get_or_init(|| {
            rayon::broadcast(|_| flush_this_thread());
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod mode {
    use std::arch::asm;

    /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    pub const FLUSH: u32 = 1 << 15 | 1 << 6;

    /// This thread's MXCSR.
    pub fn get() -> u32 {
        let mut csr = 0u32;
        // SAFETY: stores the register into a local
        unsafe { asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags)) };
        csr
    }

    /// Sets this thread's MXCSR.
    pub fn set(csr: u32) {
        // SAFETY: loads a value read from the register, with only the flushing bits changed
        unsafe { asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags)) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod mode {
    /// No flushing bits here: the mode stays the default.
    pub const FLUSH: u32 = 0;

    pub fn get() -> u32 {
        0
    }

    pub fn set(_: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subnormal product, computed where the compiler cannot fold it.
    fn tiny_product() -> f32 {
        std::hint::black_box(1e-30f32) * std::hint::black_box(1e-10f32)
    }

    #[test]
    fn a_guard_flushes_subnormals_and_puts_the_threads_mode_back() {
        if !flushing() || cfg!(not(target_arch = "x86_64")) {
            return;
        }
        assert!(tiny_product() > 0.0, "IEEE subnormals outside the guard");
        // the control bits: the six low ones are sticky exception flags, which the products raise
        let control = || mode::get() & !0x3f;
        let before = control();
        {
            let _flushed = flushed();
            assert_eq!(tiny_product(), 0.0, "flushed inside");
        }
        assert_eq!(control(), before);
        assert!(tiny_product() > 0.0);
    }
}
