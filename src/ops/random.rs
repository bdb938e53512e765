//! Random ops from the Philox4x32-10 generator (`rng.rs`): raw bits, uniform and normal
//! tensors, and dropout. The same key gives the same bits on every device, so a dropout mask
//! drawn on the GPU equals the one the CPU reference draws.

use super::fused::Step;
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, ULP};
use crate::backend::cpu::{CpuStorage, with_float};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::ops::layout::u32_of;
use crate::rng::{RandomKey, next_key};
use crate::{DType, Device, Result, Shape, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("random.wgsl");

/// The Philox4x32-10 generator in WGSL, shared by the random kernels and attention dropout.
pub(crate) static PHILOX: Shader = shader!("philox.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    a: f32,
    b: f32,
    _pad: u32,
}

impl Params {
    fn new(op: &str, n: usize, key: RandomKey, a: f32, b: f32) -> Result<Params> {
        Ok(Params {
            n: u32_of(op, n)?,
            seed_lo: key.seed as u32,
            seed_hi: (key.seed >> 32) as u32,
            stream_lo: key.stream as u32,
            stream_hi: (key.stream >> 32) as u32,
            a,
            b,
            _pad: 0,
        })
    }
}

/// What a random source draws.
#[derive(Clone, Copy, Debug)]
enum Draw {
    /// Raw 32-bit words.
    Bits,
    /// Uniform on [lo, hi).
    Uniform { lo: f32, hi: f32 },
    /// Normal with mean and standard deviation.
    Normal { mean: f32, std: f32 },
}

/// A tensor of random numbers.
pub(crate) struct Random {
    key: RandomKey,
    draw: Draw,
}

impl Op for Random {
    fn name(&self) -> &'static str {
        match self.draw {
            Draw::Bits => "rand_bits",
            Draw::Uniform { .. } => "rand_uniform",
            Draw::Normal { .. } => "rand_normal",
        }
    }
    fn describe(&self) -> String {
        format!("{}({:?}, {:?})", self.name(), self.draw, self.key)
    }
    fn cpu(&self, _: &[CpuArg], out: &Meta) -> CpuStorage {
        let n = out.shape.numel() as u64;
        let k = self.key;
        match self.draw {
            Draw::Bits => CpuStorage::from_vec((0..n).map(|i| k.bits(i)).collect::<Vec<u32>>()),
            Draw::Uniform { lo, hi } => {
                CpuStorage::from_vec((0..n).map(|i| lo + (hi - lo) * k.uniform(i)).collect::<Vec<f32>>())
            }
            Draw::Normal { mean, std } => {
                CpuStorage::from_vec((0..n).map(|i| mean + std * k.normal(i)).collect::<Vec<f32>>())
            }
        }
    }
    fn gpu(&self, _: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let n = out.shape.numel();
        let y = rec.alloc_elems(n)?;
        let (entry, a, b) = match self.draw {
            Draw::Bits => ("rand_bits", 0.0, 0.0),
            Draw::Uniform { lo, hi } => ("rand_uniform", lo, hi),
            Draw::Normal { mean, std } => ("rand_normal", mean, std),
        };
        let params = Params::new(self.name(), n, self.key, a, b)?;
        let kernel = Kernel::new(&SHADER, entry, 0, 1).with_library(&PHILOX);
        rec.dispatch(&kernel, &params, &[], &[&y], Grid::Linear(params.n.div_ceil(256)))?;
        Ok(y)
    }
    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        match self.draw {
            // Box–Muller: the GPU's log, sqrt, cos and sin differ from the CPU's by up to tens
            // of ulps (Vulkan bounds cos and sin in absolute error)
            Draw::Normal { .. } => Tolerance::Rounding { floor: 1e-5, terms: 0 },
            // lo + (hi − lo)·u from the same Philox word: GPUs that contract the multiply-add
            // into one FMA (NVIDIA's do; lavapipe does not) skip the product's rounding, so the
            // two sides may be one rounding apart (4.2e-8 seen on an H200)
            Draw::Uniform { .. } => Tolerance::Rounding { floor: ULP, terms: 0 },
            // bits are the same Philox words
            Draw::Bits => Tolerance::Exact,
        }
    }
}

/// Zeroes each element with probability `p` and scales the rest by 1 / (1 − p).
pub(crate) struct Dropout {
    key: RandomKey,
    p: f32,
}

impl Dropout {
    /// 1 / (1 − p), computed in f64 and rounded once.
    fn scale(&self) -> f32 {
        (1.0 / (1.0 - f64::from(self.p))) as f32
    }
}

impl Op for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn describe(&self) -> String {
        format!("dropout(p {}, {:?})", self.p, self.key)
    }
    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        const CHUNK: usize = 1 << 14; // a multiple of 4: chunks start on Philox block boundaries
        let (p, scale) = (self.p, self.scale());
        with_float!(args[0].data, T, x => {
            let s = T::of(scale as f64);
            let mut y = cpu_pool::for_overwrite::<T>(x.len());
            y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(c, (yc, xc))| {
                let mut u = vec![0f32; xc.len()];
                self.key.fill_uniform((c * CHUNK) as u64, &mut u);
                for ((o, &v), &r) in yc.iter_mut().zip(xc).zip(&u) {
                    *o = if r >= p { v * s } else { T::ZERO };
                }
            });
            CpuStorage::from_vec(y)
        })
    }
    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let n = out.shape.numel();
        let y = rec.alloc_elems(n)?;
        let params = Params::new("dropout", n, self.key, self.p, self.scale())?;
        let kernel = Kernel::new(&SHADER, "dropout", 1, 1).with_library(&PHILOX);
        rec.dispatch(&kernel, &params, &[args[0].buf], &[&y], Grid::Linear(params.n.div_ceil(256)))?;
        Ok(y)
    }
    fn elementwise(&self) -> Option<Step> {
        Some(Step::Dropout { key: self.key, p: self.p, scale: self.scale() })
    }
    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        // d/dx dropout(x) = the same mask and scale, applied to the gradient
        vec![Some(g.grad.dropout_with_key(self.p, self.key))]
    }
    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // the same mask from the same Philox words, the same f32 scale: one rounded multiply
        Tolerance::Exact
    }
}

impl Tensor {
    /// Uniform random f32 on [0, 1), from this thread's generator (see [`crate::manual_seed`]).
    #[track_caller]
    pub fn rand(shape: impl Into<Shape>, device: &Device) -> Tensor {
        Tensor::uniform(shape, 0.0, 1.0, next_key(), device)
    }

    /// Standard normal f32, from this thread's generator.
    #[track_caller]
    pub fn randn(shape: impl Into<Shape>, device: &Device) -> Tensor {
        Tensor::normal(shape, 0.0, 1.0, next_key(), device)
    }

    /// Uniform random f32 on [lo, hi) from an explicit key: the same key gives the same values
    /// on every device.
    #[track_caller]
    pub fn uniform(shape: impl Into<Shape>, lo: f32, hi: f32, key: RandomKey, device: &Device) -> Tensor {
        let op = Random { key, draw: Draw::Uniform { lo, hi } };
        Tensor::from_source(op, shape.into(), DType::F32, *device)
    }

    /// Normal f32 with `mean` and `std` from an explicit key.
    #[track_caller]
    pub fn normal(shape: impl Into<Shape>, mean: f32, std: f32, key: RandomKey, device: &Device) -> Tensor {
        let op = Random { key, draw: Draw::Normal { mean, std } };
        Tensor::from_source(op, shape.into(), DType::F32, *device)
    }

    /// Raw Philox words (u32) from an explicit key: element `i` is word `i % 4` of the block
    /// with counter `[i / 4, 0, stream]`.
    #[track_caller]
    pub fn random_bits(shape: impl Into<Shape>, key: RandomKey, device: &Device) -> Tensor {
        Tensor::from_source(Random { key, draw: Draw::Bits }, shape.into(), DType::U32, *device)
    }

    /// Dropout with probability `p`, with a fresh mask from this thread's generator. Use it in
    /// training only; `nn::Dropout` switches it off in evaluation.
    #[track_caller]
    pub fn dropout(&self, p: f32) -> Tensor {
        self.dropout_with_key(p, next_key())
    }

    /// Dropout with the mask drawn from `key`.
    #[track_caller]
    pub fn dropout_with_key(&self, p: f32, key: RandomKey) -> Tensor {
        if !(0.0..1.0).contains(&p) {
            panic!("dropout: p must be in [0, 1), got {p}");
        }
        if !self.dtype().is_float() {
            panic!("dropout: expected a float tensor, found {}", self.dtype());
        }
        if p == 0.0 {
            return self.clone();
        }
        Tensor::from_op(Dropout { key, p }, [self.clone()], self.shape().clone(), self.dtype())
    }
}
