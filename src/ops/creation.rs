//! Creation ops: `full` (and zeros/ones) and `arange`. Random tensors are in `random.rs`.

use super::fused::Step;
use super::{CpuArg, GpuArg, Meta, Op, Tolerance, ulps};
use crate::backend::cpu::{CpuData, CpuStorage};
use crate::backend::cpu_pool::filled;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::u32_of;
use crate::{DType, Device, Result, Shape, Tensor};

static SHADER: Shader = shader!("creation.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    /// The fill value's bits, or arange's start (as f32 or i32 bits).
    value: u32,
    /// arange's step (as f32 or i32 bits).
    step: u32,
    _pad: u32,
}

/// Every element equal to `value`.
pub(crate) struct Full {
    value: f64,
}

impl Op for Full {
    fn name(&self) -> &'static str {
        "full"
    }
    fn describe(&self) -> String {
        format!("full({})", self.value)
    }
    fn cpu(&self, _: &[CpuArg], out: &Meta) -> CpuStorage {
        let n = out.shape.numel();
        let v = self.value;
        CpuStorage::new(match out.dtype {
            DType::F32 => CpuData::F32(filled(n, v as f32)),
            DType::F64 => CpuData::F64(filled(n, v)),
            DType::F16 => unreachable!("f16 creation computes in f32 (Op::computes_f16)"),
            DType::I32 => CpuData::I32(filled(n, v as i32)),
            DType::U32 => CpuData::U32(filled(n, v as u32)),
            DType::Bool => CpuData::Bool(filled(n, v != 0.0)),
        })
    }
    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // the same value converted once
        Tolerance::Exact
    }
    fn elementwise(&self) -> Option<Step> {
        Some(Step::Constant(self.value))
    }
    fn gpu(&self, _: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let n = out.shape.numel();
        let y = rec.alloc_elems(n)?;
        let value = match out.dtype {
            DType::F32 => (self.value as f32).to_bits(),
            DType::I32 => (self.value as i32) as u32,
            DType::U32 => self.value as u32,
            DType::Bool => (self.value != 0.0) as u32,
            DType::F64 => unreachable!("f64 never reaches a GPU"),
            DType::F16 => unreachable!("f16 creation computes in f32 (Op::computes_f16)"),
        };
        let params = Params { n: u32_of("full", n)?, value, step: 0, _pad: 0 };
        let kernel = Kernel::new(&SHADER, "fill", 0, 1);
        rec.dispatch(&kernel, &params, &[], &[&y], Grid::Linear(u32_of("full", n)?.div_ceil(256)))?;
        Ok(y)
    }
}

/// `start, start + step, ...` (float or i32).
pub(crate) struct Arange {
    start: f64,
    step: f64,
}

impl Op for Arange {
    fn name(&self) -> &'static str {
        "arange"
    }
    fn describe(&self) -> String {
        format!("arange(start {}, step {})", self.start, self.step)
    }
    fn cpu(&self, _: &[CpuArg], out: &Meta) -> CpuStorage {
        let n = out.shape.numel();
        let (a, s) = (self.start, self.step);
        CpuStorage::new(match out.dtype {
            DType::F32 => CpuData::F32((0..n).map(|i| (a + s * i as f64) as f32).collect()),
            DType::F64 => CpuData::F64((0..n).map(|i| a + s * i as f64).collect()),
            DType::I32 => CpuData::I32((0..n).map(|i| (a as i64 + s as i64 * i as i64) as i32).collect()),
            other => panic!("arange: {other} is not supported"),
        })
    }
    fn gpu(&self, _: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let n = out.shape.numel();
        let y = rec.alloc_elems(n)?;
        let (entry, value, step) = match out.dtype {
            DType::F32 => ("arange_f32", (self.start as f32).to_bits(), (self.step as f32).to_bits()),
            DType::I32 => ("arange_i32", self.start as i32 as u32, self.step as i32 as u32),
            other => panic!("arange: {other} is not supported on the GPU"),
        };
        let params = Params { n: u32_of("arange", n)?, value, step, _pad: 0 };
        let kernel = Kernel::new(&SHADER, entry, 0, 1);
        rec.dispatch(&kernel, &params, &[], &[&y], Grid::Linear(params.n.div_ceil(256)))?;
        Ok(y)
    }
    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // the GPU computes start + step·i in f32 (two roundings), the CPU in f64 then rounds
        ulps(2.0)
    }
}

impl Tensor {
    /// A tensor of `shape` filled with `value`, of type `dtype`.
    #[track_caller]
    pub fn full(shape: impl Into<Shape>, value: f64, dtype: DType, device: &Device) -> Tensor {
        Tensor::from_source(Full { value }, shape.into(), dtype, *device)
    }

    /// f32 zeros.
    #[track_caller]
    pub fn zeros(shape: impl Into<Shape>, device: &Device) -> Tensor {
        Tensor::full(shape, 0.0, DType::F32, device)
    }

    /// f32 ones.
    #[track_caller]
    pub fn ones(shape: impl Into<Shape>, device: &Device) -> Tensor {
        Tensor::full(shape, 1.0, DType::F32, device)
    }

    /// Whether this tensor is an uncomputed fill with zeros (as `zeros_like` makes).
    pub(crate) fn is_pending_zeros(&self) -> bool {
        let full = (&self.0.op as &dyn std::any::Any).downcast_ref::<Full>();
        !self.is_realized() && full.is_some_and(|f| f.value == 0.0)
    }

    /// Zeros with this tensor's shape, dtype and device.
    #[track_caller]
    pub fn zeros_like(&self) -> Tensor {
        Tensor::full(self.shape().clone(), 0.0, self.dtype(), &self.device())
    }

    /// Ones with this tensor's shape, dtype and device.
    #[track_caller]
    pub fn ones_like(&self) -> Tensor {
        Tensor::full(self.shape().clone(), 1.0, self.dtype(), &self.device())
    }

    /// `value` everywhere, with this tensor's shape, dtype and device.
    #[track_caller]
    pub fn full_like(&self, value: f64) -> Tensor {
        Tensor::full(self.shape().clone(), value, self.dtype(), &self.device())
    }

    /// The f32 values `start, start + step, ...` below `end`.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let x = Tensor::arange(0.0, 1.0, 0.25, &Device::Cpu);
    /// assert_eq!(x.to_vec::<f32>().unwrap(), vec![0.0, 0.25, 0.5, 0.75]);
    /// ```
    #[track_caller]
    pub fn arange(start: f64, end: f64, step: f64, device: &Device) -> Tensor {
        Tensor::arange_typed(start, end, step, DType::F32, device)
    }

    /// `start, start + step, ...` below `end`, of type `dtype` (f32, f64 or i32).
    #[track_caller]
    pub fn arange_typed(start: f64, end: f64, step: f64, dtype: DType, device: &Device) -> Tensor {
        if step == 0.0 || !step.is_finite() {
            panic!("arange: step must be finite and non-zero, got {step}");
        }
        if !matches!(dtype, DType::F32 | DType::F64 | DType::I32) {
            panic!("arange: dtype {dtype} is not supported (f32, f64 or i32)");
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        Tensor::from_source(Arange { start, step }, Shape::from([n]), dtype, *device)
    }
}
