//! `concat`: joins tensors along an axis. On the GPU each input is one strided copy into its
//! slab of the output (the strided-copy kernel of `movement.wgsl`, writing with strides).

use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance};
use crate::backend::cpu::{CpuStorage, with_any};
use crate::backend::wgpu::{GpuBuffer, Recorder};
use crate::ops::layout::around;
use crate::ops::movement::{pick, strided_copy};
use crate::{Result, Shape, Tensor};

/// Concatenation along `axis`.
pub(crate) struct Concat {
    axis: usize,
}

impl Op for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }

    fn describe(&self) -> String {
        format!("concat(axis {})", self.axis)
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        // all inputs back to back, then read in output order: for each outer index, each
        // input's (size·inner) block in turn
        let (outer, _, inner) = around(out.shape.dims(), self.axis);
        let mut starts = Vec::with_capacity(args.len());
        let mut total = 0;
        for a in args {
            starts.push(total);
            total += a.data.len();
        }
        let mut order = Vec::with_capacity(out.shape.numel());
        for o in 0..outer {
            for (a, start) in args.iter().zip(&starts) {
                let block = a.shape.dim(self.axis) * inner;
                order.extend((0..block).map(|j| start + o * block + j));
            }
        }
        let joined = join(args);
        CpuStorage::new(with_any!(joined, x => pick(x, &order)))
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let y = rec.alloc_elems(out.shape.numel())?;
        let out_strides = out.shape.strides();
        let mut offset = 0;
        for a in args {
            // input a fills axis positions offset..offset+n of the output
            let start = offset * out_strides[self.axis];
            strided_copy(
                rec,
                "concat",
                a.buf,
                &y,
                a.shape.dims(),
                (0, a.shape.strides()),
                (start, out_strides.clone()),
            )?;
            offset += a.shape.dim(self.axis);
        }
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let mut start = 0;
        g.inputs
            .iter()
            .map(|input| {
                let n = input.dims()[self.axis];
                let part = g.grad.narrow(self.axis as isize, start, n);
                start += n;
                Some(part)
            })
            .collect()
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // copies values
        Tolerance::Exact
    }
}

/// All inputs' elements, one after another, in one storage.
fn join(args: &[CpuArg]) -> CpuStorage {
    use crate::backend::cpu::CpuData;
    macro_rules! cat {
        ($variant:ident) => {
            CpuData::$variant(
                args.iter()
                    .flat_map(|a| match a.data.data() {
                        CpuData::$variant(v) => v.iter().copied(),
                        _ => unreachable!("dtypes are checked when recorded"),
                    })
                    .collect(),
            )
        };
    }
    CpuStorage::new(match args[0].data.data() {
        CpuData::F32(_) => cat!(F32),
        CpuData::F64(_) => cat!(F64),
        CpuData::I32(_) => cat!(I32),
        CpuData::U32(_) => cat!(U32),
        CpuData::Bool(_) => cat!(Bool),
    })
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
        Tensor::from_op(Concat { axis: a }, tensors.to_vec(), Shape::new(dims), first.dtype())
    }

    /// Stacks equally shaped tensors along a new axis.
    #[track_caller]
    pub fn stack(tensors: &[Tensor], axis: isize) -> Tensor {
        let parts: Vec<Tensor> = tensors.iter().map(|t| t.unsqueeze(axis)).collect();
        Tensor::concat(&parts, axis)
    }
}
