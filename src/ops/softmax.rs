//! `softmax` and `log_softmax` along any axis. The GPU kernel gives each row one workgroup and
//! finds the row's maximum and normalizer in a single online pass (Milakov & Gimelshein, 2018).

use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, f16_rounding_summing, f16_via_f32, ulps_summing};
use crate::backend::cpu::{CpuStorage, softmax_in_place, with_float};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::ops::layout::{around, u32_of};
use crate::ops::wgsl::{cached_kernel, cached_per};
use crate::{DType, Result, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("softmax.wgsl");

/// Softmax (or log-softmax) along `axis`.
pub(crate) struct Softmax {
    axis: usize,
    log: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowParams {
    /// Rows (outer × inner).
    pub rows: u32,
    /// Elements per row.
    pub size: u32,
    /// Distance between consecutive elements of a row.
    pub inner: u32,
    /// Op-specific: 1 for log-softmax.
    pub flag: u32,
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    [DType::F32, DType::F16]
        .into_iter()
        .flat_map(|dtype| {
            let cached = [1, 2, 4, 8].map(|per| cached_kernel(&SHADER, "softmax_cached", per).storing(dtype));
            cached.into_iter().chain([Kernel::new(&SHADER, "softmax", 1, 1).storing(dtype)])
        })
        .collect()
}

/// Softmax (or log-softmax) of one row into `out`, by [`softmax_in_place`] (the normalizer
/// summed in f64). A row of −∞ gives NaN, as exp(−∞ − (−∞)) does in PyTorch.
fn softmax_row<T: Float>(x: &[T], out: &mut [T], log: bool) {
    out.copy_from_slice(x);
    let (m, sum) = softmax_in_place(out);
    if log {
        let shift = m + T::of(sum.ln());
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v - shift;
        }
    } else if m == T::NEG_INFINITY {
        out.fill(T::of(f64::NAN));
    }
}

/// The element offsets of row `r` of a tensor split as (outer, size, inner) around an axis.
pub(crate) fn row_base(r: usize, size: usize, inner: usize) -> usize {
    (r / inner) * size * inner + r % inner
}

impl Op for Softmax {
    fn name(&self) -> &'static str {
        if self.log { "log_softmax" } else { "softmax" }
    }

    fn describe(&self) -> String {
        format!("{}(axis {})", self.name(), self.axis)
    }

    fn computes_f16(&self) -> bool {
        // f16 rows are read into f32, normalized in f32 and rounded once
        true
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        if out.dtype == DType::F16 {
            return f16_via_f32(args, |wide| self.cpu(wide, &Meta { dtype: DType::F32, ..*out }));
        }
        let (_, size, inner) = around(args[0].shape.dims(), self.axis);
        let log = self.log;
        with_float!(args[0].data, T, x => {
            let mut y = cpu_pool::for_overwrite::<T>(out.shape.numel());
            if inner == 1 {
                // contiguous rows, each in place in the output
                y.par_chunks_mut(size.max(1)).zip(x.par_chunks(size.max(1))).for_each(|(yr, xr)| softmax_row(xr, yr, log));
            } else {
                // strided rows: gather, compute, scatter
                let rows: Vec<Vec<T>> = (0..out.shape.numel() / size.max(1))
                    .into_par_iter()
                    .map(|r| {
                        let base = row_base(r, size, inner);
                        let xr: Vec<T> = (0..size).map(|j| x[base + j * inner]).collect();
                        let mut yr = vec![T::ZERO; size];
                        softmax_row(&xr, &mut yr, log);
                        yr
                    })
                    .collect();
                for (r, yr) in rows.into_iter().enumerate() {
                    let base = row_base(r, size, inner);
                    for (j, v) in yr.into_iter().enumerate() {
                        y[base + j * inner] = v;
                    }
                }
            }
            CpuStorage::from_vec(y)
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let (outer, size, inner) = around(args[0].shape.dims(), self.axis);
        let y = rec.alloc_typed(out.shape.numel(), out.dtype)?;
        let params = RowParams {
            rows: u32_of(self.name(), outer * inner)?,
            size: u32_of(self.name(), size)?,
            inner: u32_of(self.name(), inner)?,
            flag: self.log as u32,
        };
        let kernel = match cached_per(size, inner) {
            Some(per) => cached_kernel(&SHADER, "softmax_cached", per),
            None => Kernel::new(&SHADER, "softmax", 1, 1),
        };
        let kernel = kernel.storing(out.dtype);
        rec.dispatch(&kernel, &params, &[args[0].buf], &[&y], Grid::Linear(params.rows))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let (y, dy) = (g.output, g.grad);
        let axis = self.axis as isize;
        let dx = if self.log {
            // y = x − lse(x): dx = dy − softmax(x)·Σdy
            dy - y.exp() * dy.sum(axis, true)
        } else {
            // dx = y ⊙ (dy − Σ dy·y)
            y * (dy - (dy * y).sum(axis, true))
        };
        vec![Some(dx)]
    }

    fn tolerance(&self, args: &[CpuArg], out: &Meta) -> Tolerance {
        // exp of x − max (the GPU's a few ulps off), the row's sum, one division; log-softmax
        // takes a log instead and subtracts; f16: then one rounding to f16
        let terms = args[0].shape.dim(self.axis);
        match out.dtype {
            DType::F16 => f16_rounding_summing(terms),
            _ => ulps_summing(16.0, terms),
        }
    }
}

impl Tensor {
    /// Softmax along `axis`: exp(x) / Σ exp(x), computed stably.
    #[track_caller]
    pub fn softmax(&self, axis: isize) -> Tensor {
        self.softmax_op(axis, false)
    }

    /// log(softmax(x)) along `axis`, computed stably.
    #[track_caller]
    pub fn log_softmax(&self, axis: isize) -> Tensor {
        self.softmax_op(axis, true)
    }

    #[track_caller]
    fn softmax_op(&self, axis: isize, log: bool) -> Tensor {
        // f32 in an autocast scope
        let x = crate::amp::widen(self);
        let op = Softmax { axis: self.shape().axis(if log { "log_softmax" } else { "softmax" }, axis), log };
        if !self.dtype().is_float() {
            panic!("{}: expected a float tensor, found {}", op.name(), self.dtype());
        }
        Tensor::from_op(op, [x.clone()], x.shape().clone(), x.dtype())
    }
}
