//! The buffer pool, and `GpuBuffer`, a tensor's storage on a GPU.
//!
//! Creating GPU buffers is slow, so freed buffers are kept in the pool by size class and handed
//! out again. Size classes are a power of two split in eight steps (at most 12.5% waste above
//! 2 KiB).
//!
//! A buffer freed while its thread records work (a realize frees each intermediate at its last
//! recorded use) may still be written or read by that unsubmitted work. It is safe to hand out
//! again to the same recording — every later use is recorded after the earlier ones, and the GPU
//! runs commands in order — but not to another thread, whose work could be submitted first and
//! then overwritten. So such a buffer is held for its own thread's recording
//! ([`RecordingScope`]) and joins the shared pool when the recording ends.
//!
//! Idle buffers are kept up to a byte budget ([`DEFAULT_POOL_BYTES`], or `KILN_GPU_POOL_BYTES`);
//! past it the least recently used are freed, along with the cached bind groups that bind them
//! (a bind group keeps its buffers alive). On out-of-memory the whole pool is freed.

use super::context::{GpuContext, lock};
use super::idle::Idle;
use crate::backend::cpu::CpuStorage;
use crate::backend::memory::{MemoryCounter, MemoryStats};
use crate::{DType, Error, Result};
use std::cell::RefCell;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of idle buffers a GPU's pool keeps when `KILN_GPU_POOL_BYTES` does not say otherwise.
pub const DEFAULT_POOL_BYTES: u64 = 1 << 30;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Test-only fault injection: when set, the next new buffer fails as if the GPU were out of
/// memory (both attempts), to test that the failure is an error and corrupts nothing.
static INJECT_OOM: AtomicBool = AtomicBool::new(false);

/// Makes the next GPU buffer creation fail with out-of-memory (for testing).
#[doc(hidden)]
pub fn inject_out_of_memory_once() {
    INJECT_OOM.store(true, Ordering::SeqCst);
}

/// How many GPU tensor buffers exist right now, on all GPUs (for the memory tests).
pub fn live_buffers() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Freed buffers by size class, up to a byte budget.
pub(crate) struct BufferPool {
    idle: Mutex<Idle<wgpu::Buffer>>,
    /// Buffers ever created (a pool that keeps growing means a leak).
    created: AtomicUsize,
    /// Bytes of the buffers tensors hold, live and peak.
    memory: MemoryCounter,
}

impl BufferPool {
    /// A pool keeping at most `budget` bytes of idle buffers.
    pub fn new(budget: u64) -> BufferPool {
        BufferPool {
            idle: Mutex::new(Idle::new(budget)),
            created: AtomicUsize::new(0),
            memory: MemoryCounter::new(),
        }
    }

    /// A pool with the budget of `KILN_GPU_POOL_BYTES` (a number of bytes), or
    /// [`DEFAULT_POOL_BYTES`] when it is not set.
    pub fn from_env() -> Result<BufferPool> {
        let budget = match std::env::var("KILN_GPU_POOL_BYTES") {
            Err(_) => DEFAULT_POOL_BYTES,
            Ok(v) => v.trim().parse().map_err(|_| {
                Error::Invalid(format!(
                    "KILN_GPU_POOL_BYTES={v:?} is not a number of bytes (e.g. 536870912 for 512 MiB)"
                ))
            })?,
        };
        Ok(BufferPool::new(budget))
    }

    /// How many distinct buffers this pool has created.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    /// How many idle buffers the pool keeps, and their bytes.
    pub fn idle(&self) -> (usize, u64) {
        let idle = lock(&self.idle);
        (idle.len(), idle.bytes())
    }

    /// Bytes of the buffers tensors hold now, and the most held at once since the last reset.
    pub fn memory(&self) -> MemoryStats {
        self.memory.stats()
    }

    /// Starts the high-water mark of [`BufferPool::memory`] again from what is live now.
    pub fn reset_peak(&self) {
        self.memory.reset_peak();
    }

    /// Frees every pooled buffer.
    pub fn trim(&self) {
        // dropped after the lock is released
        let freed = lock(&self.idle).clear();
        drop(freed);
    }
}

/// Buffers freed on one thread while it records for one context (see the module doc).
struct Recording {
    ctx: usize,
    /// Recorders open on this thread for the context. Freed buffers are handed back out only
    /// while one is open: of two, either could be submitted first.
    open: usize,
    freed: Vec<wgpu::Buffer>,
}

thread_local! {
    static RECORDING: RefCell<Vec<Recording>> = const { RefCell::new(Vec::new()) };
}

/// Held by a recorder while it records for a context: buffers this thread frees meanwhile are
/// reused only by this recording, then go to the shared pool when the scope ends.
pub(crate) struct RecordingScope {
    ctx: Arc<GpuContext>,
}

impl RecordingScope {
    pub(crate) fn open(ctx: &Arc<GpuContext>) -> RecordingScope {
        RECORDING.with_borrow_mut(|open| match open.iter_mut().find(|r| r.ctx == ctx.index) {
            Some(r) => r.open += 1,
            None => open.push(Recording { ctx: ctx.index, open: 1, freed: Vec::new() }),
        });
        RecordingScope { ctx: ctx.clone() }
    }
}

impl Drop for RecordingScope {
    fn drop(&mut self) {
        let freed = RECORDING.with_borrow_mut(|open| {
            let at = open.iter().position(|r| r.ctx == self.ctx.index)?;
            open[at].open -= 1;
            (open[at].open == 0).then(|| open.swap_remove(at).freed)
        });
        for buffer in freed.into_iter().flatten() {
            put_in_pool(&self.ctx, buffer);
        }
    }
}

/// A buffer of `class` bytes freed earlier in this thread's only open recording for `ctx`.
fn take_freed_while_recording(ctx: usize, class: u64) -> Option<wgpu::Buffer> {
    RECORDING.with_borrow_mut(|open| {
        let r = open.iter_mut().find(|r| r.ctx == ctx && r.open == 1)?;
        let at = r.freed.iter().rposition(|b| b.size() == class)?;
        Some(r.freed.swap_remove(at))
    })
}

/// Keeps `buffer` for this thread's open recording for `ctx`, or gives it back when none is open.
fn hold_while_recording(ctx: usize, buffer: wgpu::Buffer) -> Option<wgpu::Buffer> {
    RECORDING.with_borrow_mut(|open| match open.iter_mut().find(|r| r.ctx == ctx) {
        Some(r) => {
            r.freed.push(buffer);
            None
        }
        None => Some(buffer),
    })
}

/// Returns `buffer` to `ctx`'s shared pool, freeing what the budget evicts.
fn put_in_pool(ctx: &GpuContext, buffer: wgpu::Buffer) {
    let evicted = lock(&ctx.pool.idle).put(buffer.size(), buffer);
    if !evicted.is_empty() {
        // their cached bind groups would keep them (and their memory) alive
        ctx.bind_groups.forget_buffers(&evicted);
    }
}

/// The size class that holds `bytes`.
fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    if bytes <= 2048 {
        return bytes.div_ceil(256) * 256;
    }
    let top = 63 - bytes.leading_zeros() as u64; // 2^top <= bytes < 2^(top+1)
    let step = 1u64 << (top - 3);
    bytes.div_ceil(step) * step
}

/// A tensor's storage on a GPU. Dropping it returns the buffer to its context's pool.
pub struct GpuBuffer {
    ctx: Arc<GpuContext>,
    buffer: Option<wgpu::Buffer>,
    /// Bytes the tensor occupies (the buffer may be larger: its size class).
    bytes: u64,
}

impl GpuBuffer {
    /// A buffer of at least `bytes` from `ctx`'s pool, or a new one.
    pub(crate) fn alloc(ctx: &Arc<GpuContext>, bytes: u64) -> Result<GpuBuffer> {
        let bytes = bytes.max(4);
        let limit = ctx.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::TooLarge {
                device: format!("gpu:{} ({})", ctx.index, ctx.info.name),
                detail: format!(
                    "{bytes} bytes exceed the largest storage binding this adapter allows ({limit} bytes)"
                ),
            });
        }
        let class = size_class(bytes).min(limit.max(bytes));
        let reused =
            take_freed_while_recording(ctx.index, class).or_else(|| lock(&ctx.pool.idle).take(class));
        let buffer = match reused {
            Some(b) => b,
            None => create(ctx, class)?,
        };
        LIVE.fetch_add(1, Ordering::Relaxed);
        ctx.pool.memory.allocated(buffer.size());
        Ok(GpuBuffer { ctx: ctx.clone(), buffer: Some(buffer), bytes })
    }

    /// The wgpu buffer.
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("present until drop")
    }

    /// Bytes the tensor occupies.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The context this buffer belongs to.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// A binding of exactly the tensor's bytes.
    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.raw(),
            offset: 0,
            size: NonZeroU64::new(self.binding_size()),
        })
    }

    /// Bytes bound: the tensor's bytes rounded up to whole 32-bit words.
    pub(crate) fn binding_size(&self) -> u64 {
        self.bytes.div_ceil(4) * 4
    }

    /// Copies the first `numel` elements back to the host. Waits for the GPU.
    pub fn download(&self, dtype: DType, numel: usize) -> Result<CpuStorage> {
        let bytes = (dtype.gpu_words(numel) as u64 * 4).max(4);
        let device = &self.ctx.device;
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(self.raw(), 0, &staging, 0, bytes);
        self.ctx.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.ctx.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu(format!("reading back a tensor: {e}"))),
            Err(_) => return Err(Error::DeviceLost("the readback never completed".into())),
        }
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading back a tensor: {e:?}")))?;
        let words: &[u32] = bytemuck::cast_slice(&view);
        Ok(CpuStorage::from_gpu_words(dtype, words, numel))
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        self.ctx.pool.memory.freed(self.raw().size());
        if let Some(buffer) = self.buffer.take().and_then(|b| hold_while_recording(self.ctx.index, b)) {
            put_in_pool(&self.ctx, buffer);
        }
    }
}

/// Creates a new pool buffer, turning an allocation failure into `Error::OutOfMemory` (after
/// freeing the pool and trying once more).
fn create(ctx: &GpuContext, size: u64) -> Result<wgpu::Buffer> {
    let injected = INJECT_OOM.swap(false, Ordering::SeqCst);
    let attempt = || {
        if injected {
            return Err(wgpu::Error::OutOfMemory { source: "injected by a test".into() });
        }
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln tensor"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        match pollster::block_on(scope.pop()) {
            None => Ok(buffer),
            Some(e) => Err(e),
        }
    };
    let buffer = attempt().or_else(|_| {
        ctx.pool.trim();
        ctx.bind_groups.clear();
        attempt()
    });
    match buffer {
        Ok(b) => {
            ctx.pool.created.fetch_add(1, Ordering::Relaxed);
            Ok(b)
        }
        Err(e) => Err(Error::OutOfMemory(format!("allocating {size} bytes on {}: {e}", ctx.info.name))),
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_at_most_an_eighth() {
        for bytes in [1u64, 255, 256, 257, 2048, 2049, 4096, 5000, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = size_class(bytes);
            assert!(c >= bytes);
            assert!(c <= 256 || (c - bytes) as f64 <= bytes as f64 / 8.0 + 256.0, "{bytes} -> {c}");
            assert_eq!(size_class(c), c, "classes are fixed points");
        }
    }
}
