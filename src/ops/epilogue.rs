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

use super::fused::{Chain, Head, PARAM_WORDS, Wgsl};
use super::random::PHILOX;
use super::unary::ACTIVATIONS;
use super::{GpuArg, Meta};
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder};
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
    /// Records the host's `kernel` with the chain spliced in at `site`: its parameter block is
    /// `own` then the chain's, it reads `reads` (the host's own buffers) then the chain's other
    /// inputs, and writes `numel` elements to each of its outputs. Returns them: the head's
    /// value (of `head_dtype`) if it is written out, then the chain's outputs.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        rec: &mut Recorder,
        kernel: Kernel,
        site: &Site,
        own: &P,
        reads: &[&GpuBuffer],
        numel: usize,
        head_dtype: DType,
        grid: Grid,
    ) -> Result<Vec<GpuBuffer>> {
        self.dispatch_with_trailing(rec, kernel, site, own, reads, numel, head_dtype, grid, &[])
    }

    /// The first binding after the chain's, for a host that binds `reads` buffers of its own:
    /// where a host that writes more than the chain's head binds its other outputs.
    pub fn next_binding(&self, reads: usize) -> u32 {
        (1 + reads + self.inputs.len() + self.head.stored as usize + self.chain.outputs.len()) as u32
    }

    /// As [`Self::dispatch`], with the host's `trailing` outputs bound after the chain's (from
    /// [`Self::next_binding`] on), which `kernel` writes itself.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_with_trailing<P: bytemuck::Pod>(
        &self,
        rec: &mut Recorder,
        kernel: Kernel,
        site: &Site,
        own: &P,
        reads: &[&GpuBuffer],
        numel: usize,
        head_dtype: DType,
        grid: Grid,
        trailing: &[&GpuBuffer],
    ) -> Result<Vec<GpuBuffer>> {
        let code = self.chain.wgsl(1 + reads.len() as u32, Some(self.head));
        let mut kernel = with_chain_libraries(kernel, &code);
        kernel.reads = (reads.len() + self.inputs.len()) as u32;
        kernel.writes = (self.head.stored as usize + self.chain.outputs.len() + trailing.len()) as u32;
        let kernel = kernel
            .with("    // @FIELDS", code.fields)
            .with(site.output_binding, code.bindings)
            .with("// @EPILOGUE", code.functions)
            .with(site.store, code.body);
        let head = self.head.stored.then_some(head_dtype);
        let written: Vec<GpuBuffer> = head
            .into_iter()
            .chain(self.chain.output_dtypes.iter().copied())
            .map(|d| rec.alloc_typed(numel, d))
            .collect::<Result<_>>()?;
        let all_reads: Vec<&GpuBuffer> = reads.iter().chain(self.inputs).copied().collect();
        let writes: Vec<&GpuBuffer> = written.iter().chain(trailing.iter().copied()).collect();
        rec.dispatch(&kernel, &chain_params(own, self.chain)?, &all_reads, &writes, grid)?;
        Ok(written)
    }
}

/// `kernel` with the shared shaders a chain's code calls (activations; Philox for dropout) and
/// `f16` where it uses it.
pub(crate) fn with_chain_libraries<'k>(kernel: Kernel<'k>, code: &Wgsl) -> Kernel<'k> {
    let mut kernel = kernel.with_library(&ACTIVATIONS);
    if code.philox {
        kernel = kernel.with_library(&PHILOX);
    }
    if code.f16 { kernel.with_f16() } else { kernel }
}

/// A host's parameter block: its `own` parameters, then the chain's.
pub(crate) fn chain_params<P: bytemuck::Pod>(own: &P, chain: &Chain) -> Result<[u32; PARAM_WORDS]> {
    let own: &[u32] = bytemuck::cast_slice(bytemuck::bytes_of(own));
    debug_assert_eq!(own.len() % 4, 0, "a host's parameters end on 16 bytes");
    let mut words = [0u32; PARAM_WORDS];
    words[..own.len()].copy_from_slice(own);
    chain.params(&mut words[own.len()..])?;
    Ok(words)
}
