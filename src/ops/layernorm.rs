//! Layer normalization over the trailing dimensions, with optional elementwise weight and bias:
//! y = (x − mean) / √(var + eps) · w + b. The GPU kernels give each row one workgroup and
//! compute mean and variance with Welford's algorithm, merged in a tree (Chan et al.).
//!
//! The backward pass is one fused kernel for dx, which can store through a fused chain (the
//! residual stream's gradient added to it); dw and db are reductions in tensor ops.

use super::epilogue::{Epilogue, EpilogueHost, Site};
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, f16_rounding_summing, f16_via_f32, ulps_summing};
use crate::backend::cpu::{CpuStorage, sum_f64, with_float};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::ops::layout::u32_of;
use crate::ops::wgsl::{cached_kernel, cached_per};
use crate::{DType, Result, Shape, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("layernorm.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    size: u32,
    eps: f32,
    has_weight: u32,
    has_bias: u32,
    _pad: [u32; 3],
}

/// Mean and 1/√(var + eps) of one row, accumulated in f64 (two passes: no cancellation).
#[inline(always)]
fn row_stats<T: Float>(row: &[T], eps: f64) -> (f64, f64) {
    let n = row.len().max(1) as f64;
    let mean = sum_f64(row) / n;
    let mut lanes = [0f64; 8];
    let chunks = row.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|v| (v.to_f64() - mean) * (v.to_f64() - mean)).sum();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            let d = v.to_f64() - mean;
            *l += d * d;
        }
    }
    let var = (lanes.iter().sum::<f64>() + rest) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// dx of one row into `out` (see [`LayerNormGrad`]): ĝ = dy·w (rounded once to the element
/// type, as the GPU kernel computes it), then dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with the
/// statistics, sums and dx in f64, compiled for the widest vectors.
fn grad_row<T: Float>(x: &[T], dy: &[T], w: Option<&[T]>, eps: f64, out: &mut [T]) {
    #[inline(always)]
    fn each<T: Float>(x: &[T], dy: &[T], w: Option<&[T]>, eps: f64, out: &mut [T]) {
        let (mean, rstd) = row_stats(x, eps);
        match w {
            Some(w) => out.iter_mut().zip(dy).zip(w).for_each(|((o, &g), &w)| *o = g * w),
            None => out.copy_from_slice(dy),
        }
        let n = x.len().max(1) as f64;
        let mean_g = sum_f64(out) / n;
        // mean(ĝ·x̂) = r·Σ ĝ·(x − μ) / n, over eight lanes so the loop vectorizes
        let mut lanes = [0f64; 8];
        let (g8, x8) = (out.chunks_exact(8), x.chunks_exact(8));
        let centered = |g: &T, v: &T| g.to_f64() * (v.to_f64() - mean);
        let rest: f64 = g8.remainder().iter().zip(x8.remainder()).map(|(g, v)| centered(g, v)).sum();
        for (g, v) in g8.zip(x8) {
            for ((l, g), v) in lanes.iter_mut().zip(g).zip(v) {
                *l += centered(g, v);
            }
        }
        let mean_gx = (lanes.iter().sum::<f64>() + rest) * rstd / n;
        for (o, &v) in out.iter_mut().zip(x) {
            let x_hat = (v.to_f64() - mean) * rstd;
            *o = T::of(rstd * (o.to_f64() - mean_g - x_hat * mean_gx));
        }
    }
    crate::backend::cpu_vector::widest! {
        fn widest<T: Float>(x: &[T], dy: &[T], w: Option<&[T]>, eps: f64, out: &mut [T]) = each
    }
    widest(x, dy, w, eps, out)
}

/// Layer norm over rows of `size` elements. Inputs: x, then the weight and bias if present.
pub(crate) struct LayerNorm {
    /// The normalized (trailing) shape; rows have its number of elements.
    normalized: Shape,
    eps: f64,
    has_weight: bool,
    has_bias: bool,
}

impl Op for LayerNorm {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn describe(&self) -> String {
        let (shape, eps, w, b) = (&self.normalized, self.eps, self.has_weight, self.has_bias);
        format!("layer_norm(shape {shape}, eps {eps}, weight {w}, bias {b})")
    }

    fn computes_f16(&self) -> bool {
        // f16 rows (and weight and bias) are read into f32, normalized in f32 and rounded once
        true
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        if out.dtype == DType::F16 {
            return f16_via_f32(args, |wide| self.cpu(wide, &Meta { dtype: DType::F32, ..*out }));
        }
        let n = self.size();
        let eps = self.eps;
        let w = self.has_weight.then(|| args[1].data);
        let b = self.has_bias.then(|| args[1 + self.has_weight as usize].data);
        with_float!(args[0].data, T, x => {
            let (w, b) = (w.map(|w| w.as_slice::<T>()), b.map(|b| b.as_slice::<T>()));
            let mut y = cpu_pool::for_overwrite::<T>(x.len());
            y.par_chunks_mut(n.max(1)).zip(x.par_chunks(n.max(1))).for_each(|(yr, xr)| {
                let (mean, rstd) = row_stats(xr, eps);
                let (mean, rstd) = (T::of(mean), T::of(rstd));
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = (v - mean) * rstd;
                }
                if let Some(w) = w {
                    yr.iter_mut().zip(w).for_each(|(o, &w)| *o *= w);
                }
                if let Some(b) = b {
                    yr.iter_mut().zip(b).for_each(|(o, &b)| *o += b);
                }
            });
            CpuStorage::from_vec(y)
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let y = rec.alloc_typed(out.shape.numel(), out.dtype)?;
        let rows = out.shape.numel() / self.size().max(1);
        let params = Params {
            rows: u32_of("layer_norm", rows)?,
            size: u32_of("layer_norm", self.size())?,
            eps: self.eps as f32,
            has_weight: self.has_weight as u32,
            has_bias: self.has_bias as u32,
            _pad: [0; 3],
        };
        // absent weight/bias bindings are filled with x (never read)
        let x = args[0].buf;
        let w = if self.has_weight { args[1].buf } else { x };
        let b = if self.has_bias { args[1 + self.has_weight as usize].buf } else { x };
        let kernel = match cached_per(self.size(), 1) {
            Some(per) => cached_kernel(&SHADER, "forward_cached", per),
            None => Kernel::new(&SHADER, "forward", 3, 1),
        }
        .storing(out.dtype);
        rec.dispatch(&kernel, &params, &[x, w, b], &[&y], Grid::Linear(params.rows))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let x = &g.inputs[0];
        let dy = g.grad;
        let weight = self.has_weight.then(|| &g.inputs[1]);
        let mut inputs = vec![x.clone()];
        inputs.extend(weight.cloned());
        inputs.push(dy.clone());
        let dx = Tensor::from_op(
            LayerNormGrad { size: self.size(), eps: self.eps, has_weight: self.has_weight },
            inputs,
            x.shape().clone(),
            x.dtype(),
        );
        // dw = Σ_rows dy·x̂, db = Σ_rows dy
        let size = self.size();
        let rows = x.numel() / size.max(1);
        let per_row = |t: Tensor| t.reshape([rows, size]).sum(0, false).reshape(self.normalized.clone());
        let mut grads = vec![Some(dx)];
        if self.has_weight {
            let x_hat = x.layer_norm_rows(self.normalized.clone(), None, None, self.eps);
            grads.push(Some(per_row(dy * x_hat)));
        }
        if self.has_bias {
            grads.push(Some(per_row(dy.clone())));
        }
        grads
    }

    fn tolerance(&self, _: &[CpuArg], out: &Meta) -> Tolerance {
        // mean and variance summed over the row (x − mean cancels where |mean| ≫ std: the
        // measured condition), the GPU's inverseSqrt (2 ulps), the affine map; f16: then one
        // rounding to f16
        match out.dtype {
            DType::F16 => f16_rounding_summing(self.size()),
            _ => ulps_summing(16.0, self.size()),
        }
    }
}

impl LayerNormGrad {
    /// The kernel's parameters and the buffers it reads: x, the weight (x again without one),
    /// dy.
    fn launch<'a>(&self, args: &[GpuArg<'a>], out: &Meta) -> Result<(Params, [&'a GpuBuffer; 3])> {
        let rows = out.shape.numel() / self.size.max(1);
        let params = Params {
            rows: u32_of("layer_norm_grad", rows)?,
            size: u32_of("layer_norm_grad", self.size)?,
            eps: self.eps as f32,
            has_weight: self.has_weight as u32,
            has_bias: 0,
            _pad: [0; 3],
        };
        let x = args[0].buf;
        let w = if self.has_weight { args[1].buf } else { x };
        Ok((params, [x, w, args[1 + self.has_weight as usize].buf]))
    }
}

impl LayerNormGrad {
    /// Whether `x_hat` is the normalization of `x` — this gradient's input — without weight or
    /// bias, as `LayerNorm::backward` recomputes it for the weight's gradient terms dy·x̂.
    pub(crate) fn normalizes(&self, x: &Tensor, x_hat: &Tensor) -> bool {
        let op = (&x_hat.0.op as &dyn std::any::Any).downcast_ref::<LayerNorm>();
        let plain =
            op.is_some_and(|n| !n.has_weight && !n.has_bias && n.size() == self.size && n.eps == self.eps);
        plain && x_hat.0.inputs().first().is_some_and(|i| i.id() == x.id())
    }

    /// Records dx — through `epilogue` if there is one — and, in the same kernel, the weight's
    /// gradient terms dy·x̂ (in f32, of dx's shape). Returns what the store wrote (dx, or the
    /// epilogue's outputs), then the terms.
    pub(crate) fn launch_with_terms(
        &self,
        args: &[GpuArg],
        out: &Meta,
        epilogue: Option<&Epilogue>,
        rec: &mut Recorder,
    ) -> Result<(Vec<GpuBuffer>, GpuBuffer)> {
        let (params, reads) = self.launch(args, out)?;
        let terms = rec.alloc_typed(out.shape.numel(), DType::F32)?;
        let grid = Grid::Linear(params.rows);
        let written = match epilogue {
            Some(e) => {
                let kernel = with_terms(Kernel::new(&SHADER, "backward", 3, 1), e.next_binding(reads.len()));
                let numel = out.shape.numel();
                e.dispatch_with_trailing(
                    rec,
                    kernel,
                    &EPILOGUE_SITE,
                    &params,
                    &reads,
                    numel,
                    out.dtype,
                    grid,
                    &[&terms],
                )?
            }
            None => {
                let dx = rec.alloc_typed(out.shape.numel(), out.dtype)?;
                let kernel = with_terms(Kernel::new(&SHADER, "backward", 3, 2).storing(out.dtype), 5);
                rec.dispatch(&kernel, &params, &reads, &[&dx, &terms], grid)?;
                vec![dx]
            }
        };
        Ok((written, terms))
    }
}

/// `backward` writing the weight's gradient terms dy·x̂ too, to a buffer at `binding`.
fn with_terms(kernel: Kernel<'static>, binding: u32) -> Kernel<'static> {
    let line = format!("@group(0) @binding({binding}) var<storage, read_write> terms: array<f32>;");
    kernel.with("// @TERMS_BINDING", line).with("        // @TERMS", "        terms[base + j] = dy * x_hat;")
}

/// Where `layernorm.wgsl` takes an epilogue (see `epilogue.rs`).
const EPILOGUE_SITE: Site = Site {
    output_binding: "@group(0) @binding(4) var<storage, read_write> out: array<E>; // @OUTPUTS",
    store: "    out[i] = E(v); // @STORE",
};

/// The input gradient, one workgroup per row, stores through a chain (in f32).
impl EpilogueHost for LayerNormGrad {
    fn takes_epilogue(&self, _: &[&Shape], _: &Shape, dtype: DType) -> bool {
        dtype == DType::F32
    }

    fn prefix_words(&self) -> usize {
        std::mem::size_of::<Params>() / 4
    }

    fn own_bindings(&self) -> usize {
        3
    }

    fn launch_epilogue(
        &self,
        args: &[GpuArg],
        out: &Meta,
        epilogue: &Epilogue,
        rec: &mut Recorder,
    ) -> Result<Vec<GpuBuffer>> {
        let (params, reads) = self.launch(args, out)?;
        let kernel = Kernel::new(&SHADER, "backward", 3, 1);
        let grid = Grid::Linear(params.rows);
        epilogue.dispatch(rec, kernel, &EPILOGUE_SITE, &params, &reads, out.shape.numel(), out.dtype, grid)
    }
}

impl LayerNorm {
    fn size(&self) -> usize {
        self.normalized.numel()
    }
}

/// The gradient of layer norm with respect to x. Inputs: x, the weight if present, dy.
///
/// With x̂ = (x − μ)·r, r = 1/√(σ² + eps) and ĝ = dy·w:
/// dx = r · (ĝ − mean(ĝ) − x̂ · mean(ĝ·x̂)).
pub(crate) struct LayerNormGrad {
    size: usize,
    eps: f64,
    has_weight: bool,
}

impl Op for LayerNormGrad {
    fn name(&self) -> &'static str {
        "layer_norm_grad"
    }

    fn describe(&self) -> String {
        format!("layer_norm_grad(size {}, eps {}, weight {})", self.size, self.eps, self.has_weight)
    }

    fn computes_f16(&self) -> bool {
        // as the forward pass: f16 read into f32, one rounding when stored
        true
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        if out.dtype == DType::F16 {
            return f16_via_f32(args, |wide| self.cpu(wide, &Meta { dtype: DType::F32, ..*out }));
        }
        let (n, eps) = (self.size, self.eps);
        with_float!(args[0].data, T, x => {
            let w = self.has_weight.then(|| args[1].data.as_slice::<T>());
            let dy = args[1 + self.has_weight as usize].data.as_slice::<T>();
            let mut dx = cpu_pool::for_overwrite::<T>(x.len());
            let rows = dx.par_chunks_mut(n.max(1)).zip(x.par_chunks(n.max(1))).zip(dy.par_chunks(n.max(1)));
            rows.for_each(|((dxr, xr), gr)| grad_row(xr, gr, w, eps, dxr));
            CpuStorage::from_vec(dx)
        })
    }

    fn epilogue_host(&self) -> Option<&dyn EpilogueHost> {
        Some(self)
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let dx = rec.alloc_typed(out.shape.numel(), out.dtype)?;
        let (params, reads) = self.launch(args, out)?;
        let kernel = Kernel::new(&SHADER, "backward", 3, 1).storing(out.dtype);
        rec.dispatch(&kernel, &params, &reads, &[&dx], Grid::Linear(params.rows))?;
        Ok(dx)
    }

    fn tolerance(&self, _: &[CpuArg], out: &Meta) -> Tolerance {
        // the forward's statistics again and two row sums of dy-weighted terms, which cancel by
        // construction (the measured condition); f16: then one rounding to f16
        match out.dtype {
            DType::F16 => f16_rounding_summing(self.size),
            _ => ulps_summing(32.0, self.size),
        }
    }
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    [DType::F32, DType::F16]
        .into_iter()
        .flat_map(|dtype| {
            let cached = [1, 2, 4, 8].map(|per| cached_kernel(&SHADER, "forward_cached", per).storing(dtype));
            let plain = ["forward", "backward"].map(|entry| Kernel::new(&SHADER, entry, 3, 1).storing(dtype));
            let terms = with_terms(Kernel::new(&SHADER, "backward", 3, 2).storing(dtype), 5);
            cached.into_iter().chain(plain).chain([terms])
        })
        .collect()
}

impl Tensor {
    /// Layer normalization over the trailing dimensions `normalized_shape` (as in PyTorch), with
    /// optional weight and bias of that shape.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let x = Tensor::randn([4, 8], &Device::Cpu);
    /// let y = x.layer_norm(&[8], None, None, 1e-5);
    /// assert!(y.mean(1, false).abs().max_all().item::<f32>().unwrap() < 1e-5);
    /// ```
    #[track_caller]
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Tensor {
        if crate::amp::widens(self) {
            return crate::amp::widen(self).layer_norm(normalized_shape, weight, bias, eps);
        }
        let k = normalized_shape.len();
        if k == 0 || k > self.rank() || &self.dims()[self.rank() - k..] != normalized_shape {
            panic!(
                "layer_norm: normalized shape {normalized_shape:?} does not end the input shape {}",
                self.shape()
            );
        }
        for p in weight.iter().chain(bias.iter()) {
            if p.dims() != normalized_shape || p.dtype() != self.dtype() {
                panic!(
                    "layer_norm: parameter {} {} does not match normalized shape {normalized_shape:?} {}",
                    p.shape(),
                    p.dtype(),
                    self.dtype()
                );
            }
        }
        self.layer_norm_rows(Shape::from(normalized_shape), weight, bias, eps)
    }

    #[track_caller]
    fn layer_norm_rows(
        &self,
        normalized: Shape,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Tensor {
        if !self.dtype().is_float() {
            panic!("layer_norm: expected a float tensor, found {}", self.dtype());
        }
        let mut inputs = vec![self.clone()];
        inputs.extend(weight.cloned());
        inputs.extend(bias.cloned());
        let op = LayerNorm { normalized, eps, has_weight: weight.is_some(), has_bias: bias.is_some() };
        Tensor::from_op(op, inputs, self.shape().clone(), self.dtype())
    }
}
