//! Epilogues: a fused elementwise chain (`fused.rs`) run in the store of the GPU kernel that
//! computes one of its inputs, so that value never goes through memory and the chain costs no
//! dispatch of its own; and prologues, a chain run in the loads of the kernel that reads its
//! last value ([`PrologueHost`]: a reduction). The kernel is the chain's host: a matmul or a convolution (a bias and an
//! activation on the accumulator), a max-pooling gradient (a ReLU's gradient behind it), a
//! reduction (a mean's division).
//!
//! A host's shader marks four places: the last field of its parameter block (`// @FIELDS`),
//! its output binding, a line `// @EPILOGUE` for the chain's functions, and its store, a line
//! that writes value `v` (f32) at element `i` of the output. The splice replaces the output
//! binding with the chain's bindings and the store with the chain's body.

use super::fused::{Chain, Head, PARAM_WORDS};
use super::random::PHILOX;
use super::unary::ACTIVATIONS;
use super::{GpuArg, Meta};
use crate::backend::wgpu::{GpuBuffer, Kernel, Recorder};
use crate::{DType, Result, Shape};

/// An op whose GPU kernel can store its output through a chain.
pub(crate) trait EpilogueHost {
    /// Whether this node's kernel can: its inputs' shapes, and its output's shape and dtype.
    fn takes_epilogue(&self, inputs: &[&Shape], out: &Shape, dtype: DType) -> bool;

    /// The 32-bit words of the kernel's own parameter block, before the chain's fields (a
    /// multiple of 4: the chain's fields start on 16 bytes).
    fn prefix_words(&self) -> usize;

    /// The buffers the kernel binds before the chain's (its operands and tables).
    fn own_bindings(&self) -> usize;

    /// Records the kernel with `epilogue` in its store. Returns the buffers written: the op's
    /// own output if the chain's head is written out, then the chain's outputs.
    fn launch_epilogue(
        &self,
        args: &[GpuArg],
        out: &Meta,
        epilogue: &Epilogue,
        rec: &mut Recorder,
    ) -> Result<Vec<GpuBuffer>>;
}

/// An op whose GPU kernel can compute its only input from a chain as it reads it (a prologue):
/// the chain's last value, which nothing else reads, never goes through memory. A reduction
/// does this (`reduce.wgsl`'s `load_x`): the sum of a chain is one kernel.
pub(crate) trait PrologueHost {
    /// Whether this node's kernel can, for an output of `dtype`.
    fn takes_prologue(&self, dtype: DType) -> bool;

    /// The 32-bit words of the kernel's own parameter block, before the chain's fields.
    fn prefix_words(&self) -> usize;

    /// Records the kernel reading its input as `chain` computes it from `inputs`; returns the
    /// output.
    fn launch_prologue(
        &self,
        chain: &Chain,
        inputs: &[&GpuBuffer],
        out: &Meta,
        rec: &mut Recorder,
    ) -> Result<GpuBuffer>;
}

/// A chain to splice into a host's store: the chain, which of its inputs the host computes
/// (and whether that value is written out too), and the buffers of its other inputs, in order.
pub(crate) struct Epilogue<'a> {
    pub chain: &'a Chain,
    pub head: Head,
    pub inputs: &'a [&'a GpuBuffer],
}

/// Where a host's shader takes the chain (see the module doc): the exact text of its output
/// binding line and of its store line.
pub(crate) struct Site {
    pub output_binding: &'static str,
    pub store: &'static str,
}

impl Epilogue<'_> {
    /// The host's `kernel` with the chain spliced in at `site`: the chain's bindings follow the
    /// host's `own` ones.
    pub fn splice<'k>(&self, kernel: Kernel<'k>, own: usize, site: &Site) -> Kernel<'k> {
        let code = self.chain.wgsl(1 + own as u32, Some(self.head));
        let mut kernel = kernel.with_library(&ACTIVATIONS);
        if code.philox {
            kernel = kernel.with_library(&PHILOX);
        }
        if code.f16 {
            kernel = kernel.with_f16();
        }
        kernel.reads = (own + self.inputs.len()) as u32;
        kernel.writes = (self.head.stored as usize + self.chain.outputs.len()) as u32;
        kernel
            .with("    // @FIELDS", code.fields)
            .with(site.output_binding, code.bindings)
            .with("// @EPILOGUE", code.functions)
            .with(site.store, code.body)
    }

    /// The parameter block: the host's `own` parameters, then the chain's.
    pub fn params<P: bytemuck::Pod>(&self, own: &P) -> Result<[u32; PARAM_WORDS]> {
        let own: &[u32] = bytemuck::cast_slice(bytemuck::bytes_of(own));
        debug_assert_eq!(own.len() % 4, 0, "a host's parameters end on 16 bytes");
        let mut words = [0u32; PARAM_WORDS];
        words[..own.len()].copy_from_slice(own);
        self.chain.params(&mut words[own.len()..])?;
        Ok(words)
    }

    /// Fresh buffers for what the kernel writes, `numel` elements each: the head's value (of
    /// `head_dtype`) if it is written out, then the chain's outputs.
    pub fn outputs(&self, numel: usize, head_dtype: DType, rec: &Recorder) -> Result<Vec<GpuBuffer>> {
        let head = self.head.stored.then_some(head_dtype);
        head.into_iter()
            .chain(self.chain.output_dtypes.iter().copied())
            .map(|d| rec.alloc_typed(numel, d))
            .collect()
    }
}
