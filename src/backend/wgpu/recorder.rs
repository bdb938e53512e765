//! `Recorder`: records the dispatches of one realize into one command encoder and submits them
//! once.
//!
//! Each dispatch's parameters go into a shared uniform buffer at a 256-byte-aligned dynamic
//! offset (1,024 dispatches per buffer, buffers reused across realizes), written once just
//! before submission, so an op costs no buffer creation of its own; its bind group is usually
//! found in the context's cache.
//! Uploads are recorded as copies from a staging buffer into the encoder (not written through
//! the queue), so they stay ordered with the dispatches around them even when the pool hands a
//! destination buffer out again.

use super::bind_groups::BindKey;
use super::context::{GpuContext, lock};
use super::faults::{FAULT_BINDING, FaultLog, FaultSlot};
use super::pipeline::Kernel;
use super::pool::{GpuBuffer, RecordingScope};
use crate::DType;
use crate::backend::cpu::CpuStorage;
use crate::{Error, Result};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Bytes per dispatch in the parameter buffer (the dynamic-offset alignment WebGPU guarantees).
const PARAM_SLOT: usize = 256;
/// Dispatches per parameter buffer.
const PARAM_SLOTS: usize = 1024;

/// How many workgroups a dispatch launches.
///
/// A grid with a dimension over the adapter's per-dimension limit (65,535 on most) is folded:
/// its workgroups, numbered x fastest, are laid out row by row on a 2-D grid `limit` wide, with
/// spare workgroups at the end of the last row. Kernels unfold their workgroup with
/// `flat_workgroup` or `grid_workgroup` (`shaders/common.wgsl`), which give the same answer on
/// a grid that was not folded, and return at once from a spare one.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Grid {
    /// `n` workgroups along one logical axis (kernels unfold with `flat_workgroup`).
    Linear(u32),
    /// A logical 3-D grid (kernels unfold with `grid_workgroup`; a spare workgroup gets a z past
    /// the last).
    Dims(u32, u32, u32),
}

/// Records GPU work for one context. See the module doc.
pub struct Recorder {
    ctx: Arc<GpuContext>,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Parameter buffers in use, each with the bytes to write into it at submission; the last
    /// one is being filled. A realize of more dispatches than one holds just takes another.
    uniforms: Vec<(wgpu::Buffer, Vec<u8>)>,
    /// Fault words of the dispatches that check indices (see `faults.rs`).
    faults: FaultLog,
    /// Keeps the buffers this thread frees while recording for this recording; declared last,
    /// so it ends after the encoder is submitted or dropped.
    _scope: RecordingScope,
}

/// What the realizer needs of a faulty slot once its recorder is gone.
pub(crate) struct FaultSlotInfo {
    pub what: &'static str,
    pub bound: usize,
    pub node: Option<crate::Tensor>,
    pub input: Option<(crate::backend::Storage, crate::DType, usize)>,
}

impl FaultSlotInfo {
    fn of(slot: &FaultSlot) -> FaultSlotInfo {
        FaultSlotInfo {
            what: slot.what,
            bound: slot.bound,
            node: slot.node.clone(),
            input: slot.input.clone(),
        }
    }
}

thread_local! {
    /// Dispatches recorded on this thread, for tests that count them ([`dispatches`]).
    static DISPATCHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// The kernels dispatched on this thread while [`log_dispatches`] is on, as `shader:entry`
    /// and what rides along (`Kernel::name`).
    static DISPATCH_LOG: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Starts (`true`) or stops recording the name of every kernel this thread dispatches; stopping
/// returns the names recorded since the start, in order. For finding what a training step
/// spends its dispatches on (`examples/bench.rs --dispatches`).
pub fn log_dispatches(on: bool) -> Vec<String> {
    DISPATCH_LOG.with(|log| std::mem::replace(&mut *log.borrow_mut(), on.then(Vec::new)).unwrap_or_default())
}

/// How many kernel dispatches this thread has recorded (buffer copies and clears are not
/// dispatches). Per thread, so a test counts its own work while others run.
#[doc(hidden)]
pub fn dispatches() -> u64 {
    DISPATCHES.with(|d| d.get())
}

/// Parameter buffers handed back by finished recorders, per context.
static SPARE_UNIFORMS: Mutex<Vec<(usize, wgpu::Buffer)>> = Mutex::new(Vec::new());

impl Recorder {
    /// A recorder for `ctx`.
    pub fn new(ctx: Arc<GpuContext>) -> Recorder {
        let _scope = RecordingScope::open(&ctx);
        Recorder { ctx, encoder: None, pass: None, uniforms: Vec::new(), faults: FaultLog::default(), _scope }
    }

    /// The context this recorder submits to.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// A fresh buffer for `bytes` bytes.
    pub fn alloc(&self, bytes: u64) -> Result<GpuBuffer> {
        GpuBuffer::alloc(&self.ctx, bytes)
    }

    /// A fresh buffer for `numel` 32-bit elements.
    pub fn alloc_elems(&self, numel: usize) -> Result<GpuBuffer> {
        self.alloc(numel as u64 * 4)
    }

    /// A fresh buffer for `numel` elements of `dtype`, in whole 32-bit words.
    pub fn alloc_typed(&self, numel: usize, dtype: DType) -> Result<GpuBuffer> {
        self.alloc(dtype.gpu_words(numel) as u64 * 4)
    }

    /// Records a dispatch of `kernel` with parameters `params`, reading `reads` and writing
    /// `writes` (no buffer may appear in both).
    pub(crate) fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: &Kernel,
        params: &P,
        reads: &[&GpuBuffer],
        writes: &[&GpuBuffer],
        grid: Grid,
    ) -> Result<()> {
        debug_assert_eq!(reads.len() as u32, kernel.reads, "{}", kernel.entry);
        debug_assert_eq!(writes.len() as u32, kernel.writes, "{}", kernel.entry);
        debug_assert!(
            writes.iter().all(|w| reads.iter().all(|r| !std::ptr::eq(r.raw(), w.raw()))),
            "{}: a buffer bound as both input and output",
            kernel.entry
        );
        let (x, y, z) = self.grid_dims(grid, kernel.entry)?;
        if x == 0 || y == 0 || z == 0 {
            return Ok(());
        }
        let pipeline = self.ctx.pipelines.get(&self.ctx, kernel)?;
        let bytes = bytemuck::bytes_of(params);
        assert!(bytes.len() <= PARAM_SLOT, "{}: parameters over {PARAM_SLOT} bytes", kernel.entry);
        let (uniform, offset) = self.param_slot(bytes);
        let fault_words = match kernel.faults {
            true => Some(self.faults.current().expect("fault_word() before a dispatch that reports faults")),
            false => None,
        };
        let mut buffers = vec![(uniform.clone(), PARAM_SLOT as u64)];
        let bound = reads.iter().chain(writes).copied().chain(fault_words);
        buffers.extend(bound.map(|b| (b.raw().clone(), b.binding_size())));
        let key = BindKey { layout: pipeline.layout.clone(), buffers };
        let bind_group = self.ctx.bind_groups.get(key, || {
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniform,
                    offset: 0,
                    size: wgpu::BufferSize::new(PARAM_SLOT as u64),
                }),
            }];
            for (i, b) in reads.iter().chain(writes).enumerate() {
                entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.binding() });
            }
            if let Some(words) = fault_words {
                entries.push(wgpu::BindGroupEntry { binding: FAULT_BINDING, resource: words.binding() });
            }
            self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry),
                layout: &pipeline.layout,
                entries: &entries,
            })
        });
        DISPATCHES.with(|d| d.set(d.get() + 1));
        DISPATCH_LOG.with(|log| {
            if let Some(names) = log.borrow_mut().as_mut() {
                names.push(kernel.name());
            }
        });
        let pass = self.pass();
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[offset as u32]);
        pass.dispatch_workgroups(x, y, z);
        Ok(())
    }

    /// A fault word for the next dispatch, which checks input `arg` of the node being recorded
    /// against `0..bound` and reports the smallest bad position with `report_fault` (see
    /// `faults.rs`). The kernel must be built `with_fault_reports`.
    pub(crate) fn fault_word(&mut self, arg: usize, what: &'static str, bound: usize) -> Result<u32> {
        let (word, new_buffer) = self.faults.register(arg, what, bound);
        if new_buffer {
            let buffer = self.alloc(FaultLog::buffer_bytes())?;
            self.clear(&buffer);
            self.faults.push_buffer(buffer);
        }
        Ok(word)
    }

    /// The fault slots registered since the first `from` (the realizer fills in the node).
    pub(crate) fn fault_slots_from(&mut self, from: usize) -> &mut [FaultSlot] {
        self.faults.slots_from(from)
    }

    /// How many fault slots have been registered.
    pub(crate) fn fault_slot_count(&self) -> usize {
        self.faults.len()
    }

    /// Submits everything recorded and, if any dispatch checks indices, waits for the GPU and
    /// returns the first fault found: (slot number, slot, smallest bad position).
    pub(crate) fn submit_and_find_fault(mut self) -> Result<Option<(usize, usize, FaultSlotInfo)>> {
        self.submit_pending()?;
        if self.faults.is_empty() {
            return Ok(None);
        }
        Ok(self.faults.first_fault()?.map(|(k, slot, position)| (k, position, FaultSlotInfo::of(slot))))
    }

    /// Records an upload of `data` into a fresh buffer.
    pub fn upload(&mut self, data: &CpuStorage) -> Result<GpuBuffer> {
        let words = data.to_gpu_words();
        let buffer = self.alloc_typed(data.len(), data.dtype())?;
        if !words.is_empty() {
            let staging = self.ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("kiln upload"),
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::COPY_SRC,
            });
            let bytes = words.len() as u64 * 4;
            self.encoder().copy_buffer_to_buffer(&staging, 0, buffer.raw(), 0, bytes);
        }
        Ok(buffer)
    }

    /// Records a copy of `bytes` bytes between buffers (offsets and size multiples of 4).
    pub fn copy(&mut self, src: &GpuBuffer, src_offset: u64, dst: &GpuBuffer, dst_offset: u64, bytes: u64) {
        if bytes > 0 {
            self.encoder().copy_buffer_to_buffer(src.raw(), src_offset, dst.raw(), dst_offset, bytes);
        }
    }

    /// Records zero-filling a buffer.
    pub fn clear(&mut self, buffer: &GpuBuffer) {
        let bytes = buffer.bytes().div_ceil(4) * 4;
        self.encoder().clear_buffer(buffer.raw(), 0, Some(bytes));
    }

    /// Submits everything recorded. Does not wait for the GPU.
    pub fn submit(mut self) -> Result<()> {
        self.submit_pending()
    }

    /// Submits everything recorded and waits for the GPU to finish it.
    pub fn submit_and_wait(mut self) -> Result<()> {
        self.submit_pending()?;
        self.ctx.wait()
    }

    fn submit_pending(&mut self) -> Result<()> {
        self.pass = None;
        if let Some(encoder) = self.encoder.take() {
            for (uniform, params) in &mut self.uniforms {
                if !params.is_empty() {
                    self.ctx.queue.write_buffer(uniform, 0, params);
                    params.clear();
                }
            }
            self.ctx.queue.submit([encoder.finish()]);
        }
        self.ctx.take_error()
    }

    /// The open compute pass (opening one if needed).
    fn pass(&mut self) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self.encoder_raw().begin_compute_pass(&Default::default()).forget_lifetime();
            self.pass = Some(pass);
        }
        self.pass.as_mut().expect("opened above")
    }

    /// The encoder, with any compute pass closed (for copies).
    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder_raw()
    }

    fn encoder_raw(&mut self) -> &mut wgpu::CommandEncoder {
        let device = &self.ctx.device;
        self.encoder.get_or_insert_with(|| device.create_command_encoder(&Default::default()))
    }

    /// Stores one dispatch's parameters; returns the buffer and offset they will be at.
    fn param_slot(&mut self, bytes: &[u8]) -> (wgpu::Buffer, usize) {
        let full = self.uniforms.last().is_none_or(|(_, p)| p.len() == PARAM_SLOT * PARAM_SLOTS);
        if full {
            let mut spare = lock(&SPARE_UNIFORMS);
            let reused = spare.iter().position(|(i, _)| *i == self.ctx.index).map(|p| spare.remove(p).1);
            drop(spare);
            let buffer = reused.unwrap_or_else(|| {
                self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kiln params"),
                    size: (PARAM_SLOT * PARAM_SLOTS) as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
            self.uniforms.push((buffer, Vec::with_capacity(PARAM_SLOT * PARAM_SLOTS)));
        }
        let (buffer, params) = self.uniforms.last_mut().expect("pushed above");
        let offset = params.len();
        params.extend_from_slice(bytes);
        params.resize(offset + PARAM_SLOT, 0);
        (buffer.clone(), offset)
    }

    /// The workgroups to launch for `grid`, folded if a dimension is over the limit (see
    /// [`Grid`]).
    fn grid_dims(&self, grid: Grid, entry: &str) -> Result<(u32, u32, u32)> {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let logical = match grid {
            Grid::Linear(n) => (n, 1, 1),
            Grid::Dims(x, y, z) => (x, y, z),
        };
        let total = u64::from(logical.0) * u64::from(logical.1) * u64::from(logical.2);
        let rows = total.div_ceil(u64::from(max));
        // kernels number workgroups with 32-bit integers
        if total > u64::from(u32::MAX) || rows > u64::from(max) {
            return Err(Error::TooLarge {
                device: format!("gpu:{} ({})", self.ctx.index, self.ctx.info.name),
                detail: format!(
                    "{entry} needs a grid of {logical:?} workgroups, more than fit a {max}×{max} grid"
                ),
            });
        }
        if logical.0 <= max && logical.1 <= max && logical.2 <= max {
            Ok(logical)
        } else {
            Ok((max, rows as u32, 1))
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.pass = None;
        let mut spare = lock(&SPARE_UNIFORMS);
        spare.extend(self.uniforms.drain(..).map(|(b, _)| (self.ctx.index, b)));
    }
}
