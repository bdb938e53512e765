//! `where`: picks elementwise from two tensors by a bool mask, with broadcasting of all three.

use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance};
use crate::backend::cpu::{CpuData, CpuStorage};
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::{MAX_RANK, collapse, offsets, pack, u32_of};
use crate::ops::wgsl::{GPU_TYPES, wgsl_type};
use crate::{DType, Result, Shape, Tensor};

static SHADER: Shader = shader!("select.wgsl");

/// `cond ? a : b`, elementwise.
pub(crate) struct Where;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    rank: u32,
    _pad: [u32; 2],
    shape: [u32; MAX_RANK],
    cond_strides: [u32; MAX_RANK],
    a_strides: [u32; MAX_RANK],
    b_strides: [u32; MAX_RANK],
}

impl Op for Where {
    fn name(&self) -> &'static str {
        "where"
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        // a row at a time: the innermost (collapsed) dimension by its strides, the outer ones by
        // offsets, so a mask broadcast over rows costs one odometer step per row
        let strides: Vec<Vec<usize>> = args.iter().map(|a| a.shape.broadcast_strides(out.shape)).collect();
        let (mut shape, mut strides) = collapse(out.shape.dims(), &strides);
        if shape.is_empty() {
            shape.push(1);
            strides.iter_mut().for_each(|s| s.push(0));
        }
        let (outer, inner) = shape.split_at(shape.len() - 1);
        let inner = inner[0];
        let step: [usize; 3] = std::array::from_fn(|k| strides[k][outer.len()]);
        let starts = |k: usize| offsets(outer, &strides[k][..outer.len()], 0);
        let cond = args[0].data.as_slice::<bool>();
        macro_rules! pick {
            ($x:expr, $y:expr) => {{
                let mut picked = Vec::with_capacity(out.shape.numel());
                for ((c, a), b) in starts(0).zip(starts(1)).zip(starts(2)) {
                    picked.extend((0..inner).map(|j| {
                        if cond[c + j * step[0]] { $x[a + j * step[1]] } else { $y[b + j * step[2]] }
                    }));
                }
                picked
            }};
        }
        CpuStorage::new(match (args[1].data.data(), args[2].data.data()) {
            (CpuData::F32(x), CpuData::F32(y)) => CpuData::F32(pick!(x, y)),
            (CpuData::F64(x), CpuData::F64(y)) => CpuData::F64(pick!(x, y)),
            (CpuData::I32(x), CpuData::I32(y)) => CpuData::I32(pick!(x, y)),
            (CpuData::U32(x), CpuData::U32(y)) => CpuData::U32(pick!(x, y)),
            (CpuData::Bool(x), CpuData::Bool(y)) => CpuData::Bool(pick!(x, y)),
            _ => unreachable!("dtypes are checked when the op is recorded"),
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let n = u32_of("where", out.shape.numel())?;
        let y = rec.alloc_elems(n as usize)?;
        let strides: Vec<Vec<usize>> = args.iter().map(|a| a.shape.broadcast_strides(out.shape)).collect();
        let (shape, strides) = collapse(out.shape.dims(), &strides);
        let params = Params {
            n,
            rank: shape.len() as u32,
            _pad: [0; 2],
            shape: pack("where", &shape, 1)?,
            cond_strides: pack("where", &strides[0], 0)?,
            a_strides: pack("where", &strides[1], 0)?,
            b_strides: pack("where", &strides[2], 0)?,
        };
        let kernel = kernel(out.dtype);
        let reads = [args[0].buf, args[1].buf, args[2].buf];
        rec.dispatch(&kernel, &params, &reads, &[&y], Grid::Linear(n.div_ceil(256)))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        // the gradient flows to whichever operand was picked
        let (cond, a, b) = (&g.inputs[0], &g.inputs[1], &g.inputs[2]);
        let zero = g.grad.zeros_like();
        let da = cond.where_(g.grad, &zero).sum_to(a.shape());
        let db = cond.where_(&zero, g.grad).sum_to(b.shape());
        vec![None, Some(da), Some(db)]
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // selects values
        Tolerance::Exact
    }
}

/// The kernel for branches of `dtype`.
fn kernel(dtype: DType) -> Kernel<'static> {
    Kernel::new(&SHADER, "main", 3, 1)
        .with("alias T = f32; // @T", format!("alias T = {};", wgsl_type(dtype)))
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    GPU_TYPES.into_iter().map(kernel).collect()
}

impl Tensor {
    /// Elementwise `self ? a : b` for a bool mask `self`, broadcasting all three.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let x = Tensor::from_vec(vec![-1.0f32, 2.0], [2], &Device::Cpu);
    /// let y = x.gt_scalar(0.0).where_(&x, &x.zeros_like());
    /// assert_eq!(y.to_vec::<f32>().unwrap(), vec![0.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn where_(&self, a: &Tensor, b: &Tensor) -> Tensor {
        if self.dtype() != DType::Bool {
            panic!("where: the condition must be bool, found {}", self.dtype());
        }
        if a.dtype() != b.dtype() {
            panic!("where: the branches have different dtypes ({} and {})", a.dtype(), b.dtype());
        }
        let shape = Shape::broadcast("where", &Shape::broadcast("where", self.shape(), a.shape()), b.shape());
        Tensor::from_op(Where, [self.clone(), a.clone(), b.clone()], shape, a.dtype())
    }
}
