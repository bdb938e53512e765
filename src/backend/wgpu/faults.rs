//! Out-of-range indices found by GPU kernels.
//!
//! A kernel that reads integer data as indices or labels (gather, index_select, cross-entropy,
//! …) must not read out of bounds, and the user must get the same `kiln::Error` as on the CPU,
//! where the op validates its input first. So such a kernel skips a bad element and reports it:
//! the recorder hands its dispatch a *fault word* in a small buffer of the realize, bound at
//! [`FAULT_BINDING`], and the kernel keeps the smallest bad position there with the prelude's
//! `report_fault` (`shaders/common.wgsl`: a word holds u32::MAX − position, so `atomicMax`
//! keeps the smallest, and 0 means none). After the realize's one submission the words are read
//! back (one more small copy and a wait, once per realize that holds such kernels), and the
//! first word set, in recording order, names the op, the input and the position: the same fault
//! the CPU reference finds first.

use super::GpuBuffer;
use crate::backend::Storage;
use crate::{DType, Result, Tensor};

/// Fault words per buffer (the smallest buffer of the pool holds 64 u32s).
const WORDS: usize = 64;

/// The binding of the fault words, as declared in `shaders/common.wgsl` (past any kernel's own).
pub(crate) const FAULT_BINDING: u32 = 15;

/// One dispatch's fault word: which input of which node it checks.
pub(crate) struct FaultSlot {
    /// The checked input of the node (its index among the node's inputs).
    pub arg: usize,
    /// What the values are (`"index"`).
    pub what: &'static str,
    /// Valid values are `0..bound`.
    pub bound: usize,
    /// The node and its checked input's storage and dtype, filled in by the realizer once the
    /// op has recorded its launch (the input may be released before the words are read).
    pub node: Option<Tensor>,
    pub input: Option<(Storage, DType, usize)>,
}

/// The fault words of one recorder.
#[derive(Default)]
pub(crate) struct FaultLog {
    buffers: Vec<GpuBuffer>,
    slots: Vec<FaultSlot>,
}

impl FaultLog {
    /// Whether any dispatch reports faults.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Registers a slot; returns its word within the current buffer and whether a new buffer
    /// must be started (allocated and cleared by the caller, then passed to [`FaultLog::push_buffer`]).
    pub fn register(&mut self, arg: usize, what: &'static str, bound: usize) -> (u32, bool) {
        let k = self.slots.len();
        self.slots.push(FaultSlot { arg, what, bound, node: None, input: None });
        ((k % WORDS) as u32, k.is_multiple_of(WORDS))
    }

    /// Bytes of a fault buffer.
    pub fn buffer_bytes() -> u64 {
        (WORDS * 4) as u64
    }

    pub fn push_buffer(&mut self, buffer: GpuBuffer) {
        self.buffers.push(buffer);
    }

    /// The buffer the next fault-reporting dispatch binds.
    pub fn current(&self) -> Option<&GpuBuffer> {
        self.buffers.last()
    }

    /// The slots registered since the first `from`, for the realizer to fill in.
    pub fn slots_from(&mut self, from: usize) -> &mut [FaultSlot] {
        &mut self.slots[from..]
    }

    /// How many slots there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// After the recorded work was submitted: the first slot whose kernel found a bad element,
    /// with the smallest bad position. Waits for the GPU.
    pub fn first_fault(&self) -> Result<Option<(usize, &FaultSlot, usize)>> {
        for (b, buffer) in self.buffers.iter().enumerate() {
            let words = buffer.download(DType::U32, WORDS)?;
            let words = words.as_slice::<u32>();
            let slots = self.slots.iter().enumerate().skip(b * WORDS).take(WORDS);
            for ((k, slot), &word) in slots.zip(words) {
                if word != 0 {
                    return Ok(Some((k, slot, (u32::MAX - word) as usize)));
                }
            }
        }
        Ok(None)
    }
}
