//! `cast`: converts elements to another dtype with Rust's `as` semantics (float to integer
//! truncates toward zero and saturates; anything to bool is `x != 0`). To f16, floats round to
//! nearest (ties to even on the CPU) and overflow to ±∞.

use super::fused::Step;
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance};
use crate::backend::cpu::{CpuData, CpuStorage, with_any};
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Element;
use crate::ops::layout::u32_of;
use crate::ops::wgsl::{GPU_TYPES, wgsl_type};
use crate::{DType, Result, Tensor};

static SHADER: Shader = shader!("cast.wgsl");

/// Elementwise conversion to `to`.
pub(crate) struct Cast {
    to: DType,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

impl Op for Cast {
    fn name(&self) -> &'static str {
        "cast"
    }
    fn describe(&self) -> String {
        format!("cast(to {})", self.to)
    }
    fn computes_f16(&self) -> bool {
        true
    }
    fn elementwise(&self) -> Option<Step> {
        // between f32 and f16, a step of a GPU chain (the planner checks the input's dtype)
        matches!(self.to, DType::F32 | DType::F16).then_some(Step::Cast { to: self.to })
    }
    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        fn conv<T: Element, U: Element>(x: &[T], f: impl Fn(T) -> U) -> Vec<U> {
            x.iter().map(|&v| f(v)).collect()
        }
        let data = args[0].data;
        CpuStorage::new(match (data.data(), self.to) {
            (CpuData::F32(x), DType::I32) => CpuData::I32(conv(x, |v| v as i32)),
            (CpuData::F32(x), DType::U32) => CpuData::U32(conv(x, |v| v as u32)),
            (CpuData::F64(x), DType::I32) => CpuData::I32(conv(x, |v| v as i32)),
            (CpuData::F64(x), DType::U32) => CpuData::U32(conv(x, |v| v as u32)),
            (CpuData::F16(x), DType::I32) => CpuData::I32(conv(x, |v| v.to_f32() as i32)),
            (CpuData::F16(x), DType::U32) => CpuData::U32(conv(x, |v| v.to_f32() as u32)),
            (CpuData::F64(x), DType::F16) => CpuData::F16(conv(x, half::f16::from_f64)),
            (_, DType::F16) => {
                with_any!(data, x => CpuData::F16(conv(x, |v| half::f16::from_f32(v.to_f64() as f32))))
            }
            (CpuData::I32(x), DType::U32) => CpuData::U32(conv(x, |v| v as u32)),
            (CpuData::U32(x), DType::I32) => CpuData::I32(conv(x, |v| v as i32)),
            (_, DType::F32) => with_any!(data, x => CpuData::F32(conv(x, |v| v.to_f64() as f32))),
            (_, DType::F64) => with_any!(data, x => CpuData::F64(conv(x, |v| v.to_f64()))),
            (_, DType::Bool) => with_any!(data, x => CpuData::Bool(conv(x, |v| v.to_f64() != 0.0))),
            (CpuData::Bool(x), DType::I32) => CpuData::I32(conv(x, |v| v as i32)),
            (CpuData::Bool(x), DType::U32) => CpuData::U32(conv(x, |v| v as u32)),
            (d, to) => unreachable!("cast from {d:?} to {to}: same dtype casts are not recorded"),
        })
    }
    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let n = u32_of("cast", out.shape.numel())?;
        let y = rec.alloc_typed(n as usize, self.to)?;
        let kernel = kernel(args[0].dtype, self.to);
        let params = Params { n, _pad: [0; 3] };
        rec.dispatch(&kernel, &params, &[args[0].buf], &[&y], Grid::Linear(n.div_ceil(256)))?;
        Ok(y)
    }
    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        // a float-to-float cast passes the gradient through, converted back
        vec![Some(g.grad.cast(g.inputs[0].dtype()))]
    }
    fn tolerance(&self, args: &[CpuArg], _: &Meta) -> Tolerance {
        match (args[0].data.dtype(), self.to) {
            // WGSL lets a GPU round a value that f16 cannot hold to either neighbour: one f16 ulp
            (from, DType::F16) if from != DType::Bool => super::F16_ROUNDING,
            // the other conversions are exact or truncate the same way on both sides
            _ => Tolerance::Exact,
        }
    }
}

/// The conversion kernel from `from` to `to`.
fn kernel(from: DType, to: DType) -> Kernel<'static> {
    let expr = match (from, to) {
        (_, DType::Bool) => "select(0u, 1u, x != In(0))",
        (DType::Bool, DType::F32) => "f32(x)",
        (DType::Bool, _) => "Out(x)",
        (_, DType::F32) => "f32(x)",
        (_, DType::F16) => "f16(x)",
        (_, DType::I32) => "i32(x)",
        (_, DType::U32) => "u32(x)",
        (_, DType::F64) => unreachable!("f64 never reaches a GPU"),
    };
    let kernel = Kernel::new(&SHADER, "main", 1, 1);
    let kernel = if from == DType::F16 || to == DType::F16 { kernel.with_f16() } else { kernel };
    kernel
        .with("alias In = f32; // @In", format!("alias In = {};", wgsl_type(from)))
        .with("alias Out = f32; // @Out", format!("alias Out = {};", wgsl_type(to)))
        .with("return Out(x); // @expr", format!("return {expr};"))
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let all: Vec<DType> = GPU_TYPES.into_iter().chain([DType::F16]).collect();
    let pairs = all.iter().flat_map(|&from| all.iter().map(move |&to| (from, to)));
    pairs.filter(|(from, to)| from != to).map(|(from, to)| kernel(from, to)).collect()
}

impl Tensor {
    /// The elements converted to `dtype` (the tensor itself when it already is).
    #[track_caller]
    pub fn cast(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        Tensor::from_op(Cast { to: dtype }, [self.clone()], self.shape().clone(), dtype)
    }
}
