//! `concat`: joins tensors along an axis, and `assemble`, which places them at given positions
//! along an axis in zeros (how autograd sums the gradients of many slices of one tensor). On
//! the GPU each input is one strided copy into its slab of the output (the strided-copy kernel
//! of `movement.wgsl`, or a plain buffer copy where both sides are contiguous).

use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance};
use crate::backend::cpu::{CpuData, CpuStorage};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Recorder};
use crate::ops::layout::around;
use crate::ops::movement::strided_copy;
use crate::{Element, Result, Shape, Tensor};
use rayon::prelude::*;

/// Input i fills positions `starts[i]..starts[i] + its size` of the output along `axis`;
/// positions no input covers are zero.
pub(crate) struct Concat {
    axis: usize,
    starts: Vec<usize>,
}

impl Concat {
    /// Whether some output position is not covered by an input.
    fn has_gaps(&self, inputs: &[&Shape], out: &Shape) -> bool {
        let covered: usize = inputs.iter().map(|s| s.dim(self.axis)).sum();
        covered < out.dim(self.axis)
    }
}

/// Output elements below which a concat copies on one thread: splitting a smaller copy costs
/// more than it saves.
const PARALLEL_ELEMENTS: usize = 1 << 16;

/// The output of a concat on the CPU: each input's blocks copied into place, in zeros where
/// the inputs leave gaps. The blocks are disjoint, so a large output copies them in parallel
/// (a recurrent layer's gradient assembles 128 steps of 128 KiB each; a copy on one thread is
/// bound by that core's share of the memory bandwidth).
fn place<T: Element>(args: &[CpuArg], starts: &[usize], axis: usize, out: &Shape) -> Vec<T> {
    let (outer, size, inner) = around(out.dims(), axis);
    let covered: usize = args.iter().map(|a| a.shape.dim(axis)).sum();
    // inputs that cover the output write every element of it: no zeros first
    let mut y =
        if covered == size { cpu_pool::for_overwrite(out.numel()) } else { cpu_pool::zeroed(out.numel()) };
    if y.is_empty() {
        return y;
    }
    // the inputs by position along the axis, so that each output row splits into their blocks
    let mut order: Vec<usize> = (0..args.len()).collect();
    order.sort_by_key(|&i| starts[i]);
    let mut copies: Vec<(&mut [T], &[T])> = Vec::with_capacity(outer * args.len());
    for (o, mut row) in y.chunks_mut(size * inner).enumerate() {
        let mut at = 0;
        for &i in &order {
            let block = args[i].shape.dim(axis) * inner;
            let (gap, rest) = row.split_at_mut(starts[i] * inner - at);
            let (dst, rest) = rest.split_at_mut(block);
            copies.push((dst, &args[i].data.as_slice::<T>()[o * block..(o + 1) * block]));
            (row, at) = (rest, at + gap.len() + block);
        }
    }
    if out.numel() < PARALLEL_ELEMENTS {
        copies.into_iter().for_each(|(dst, src)| dst.copy_from_slice(src));
    } else {
        copies.into_par_iter().for_each(|(dst, src)| dst.copy_from_slice(src));
    }
    y
}

impl Op for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }

    fn describe(&self) -> String {
        format!("concat(axis {}, starts {:?})", self.axis, self.starts)
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        let (starts, axis, shape) = (&self.starts, self.axis, out.shape);
        CpuStorage::new(match args[0].data.data() {
            CpuData::F32(_) => CpuData::F32(place(args, starts, axis, shape)),
            CpuData::F64(_) => CpuData::F64(place(args, starts, axis, shape)),
            CpuData::F16(_) => CpuData::F16(place(args, starts, axis, shape)),
            CpuData::I32(_) => CpuData::I32(place(args, starts, axis, shape)),
            CpuData::U32(_) => CpuData::U32(place(args, starts, axis, shape)),
            CpuData::Bool(_) => CpuData::Bool(place(args, starts, axis, shape)),
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let y = rec.alloc_elems(out.shape.numel())?;
        let shapes: Vec<&Shape> = args.iter().map(|a| a.shape).collect();
        if self.has_gaps(&shapes, out.shape) {
            rec.clear(&y);
        }
        let out_strides = out.shape.strides();
        for (a, &start) in args.iter().zip(&self.starts) {
            // input a fills axis positions start..start+n of the output
            let at = start * out_strides[self.axis];
            strided_copy(
                rec,
                "concat",
                a.buf,
                &y,
                a.shape.dims(),
                (0, a.shape.strides()),
                (at, out_strides.clone()),
            )?;
        }
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        g.inputs
            .iter()
            .zip(&self.starts)
            .map(|(input, &start)| Some(g.grad.narrow(self.axis as isize, start, input.dims()[self.axis])))
            .collect()
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // copies values
        Tolerance::Exact
    }
}

impl Tensor {
    /// Joins `tensors` along `axis`; all other dimensions must match.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let a = Tensor::zeros([2, 1], &Device::Cpu);
    /// let b = Tensor::ones([2, 2], &Device::Cpu);
    /// assert_eq!(Tensor::concat(&[a, b], 1).dims(), &[2, 3]);
    /// ```
    #[track_caller]
    pub fn concat(tensors: &[Tensor], axis: isize) -> Tensor {
        let Some(first) = tensors.first() else {
            panic!("concat: no tensors given");
        };
        let a = first.shape().axis("concat", axis);
        let mut dims = first.dims().to_vec();
        dims[a] = 0;
        for t in tensors {
            let compatible = t.rank() == first.rank()
                && t.dtype() == first.dtype()
                && (0..t.rank()).all(|d| d == a || t.dims()[d] == first.dims()[d]);
            if !compatible {
                panic!(
                    "concat: {} {} does not match {} {} outside axis {a}",
                    t.shape(),
                    t.dtype(),
                    first.shape(),
                    first.dtype()
                );
            }
            dims[a] += t.dims()[a];
        }
        if tensors.len() == 1 {
            return first.clone();
        }
        let starts = tensors
            .iter()
            .scan(0, |at, t| {
                let start = *at;
                *at += t.dims()[a];
                Some(start)
            })
            .collect();
        Tensor::from_op(Concat { axis: a, starts }, tensors.to_vec(), Shape::new(dims), first.dtype())
    }

    /// A tensor of `shape` holding zeros, with each `(start, part)` placed at positions
    /// `start..start + part's size` along `axis` (the parts may not overlap). How autograd sums
    /// the gradients of many slices of one tensor.
    #[track_caller]
    pub(crate) fn assemble(shape: &Shape, axis: usize, parts: &[(usize, Tensor)]) -> Tensor {
        let mut parts = parts.to_vec();
        parts.sort_by_key(|(start, _)| *start);
        let mut end = 0;
        for (start, p) in &parts {
            let fits = p.rank() == shape.rank()
                && (0..p.rank()).all(|d| d == axis || p.dims()[d] == shape.dim(d))
                && *start >= end
                && start + p.dims()[axis] <= shape.dim(axis);
            if !fits {
                panic!("assemble: part {} at {start} does not fit {shape} along axis {axis}", p.shape());
            }
            end = start + p.dims()[axis];
        }
        let (starts, inputs): (Vec<usize>, Vec<Tensor>) = parts.into_iter().unzip();
        let dtype = inputs[0].dtype();
        Tensor::from_op(Concat { axis, starts }, inputs, shape.clone(), dtype)
    }

    /// Stacks equally shaped tensors along a new axis.
    #[track_caller]
    pub fn stack(tensors: &[Tensor], axis: isize) -> Tensor {
        let parts: Vec<Tensor> = tensors.iter().map(|t| t.unsqueeze(axis)).collect();
        Tensor::concat(&parts, axis)
    }
}
