//! Per-channel ops over (N, C, …) tensors — the pieces of batch normalization, each one pass over
//! the data instead of a chain of broadcast elementwise ops and reductions:
//!
//! - `channel_moments(x)` → (2, C): each channel's mean and biased variance over N and the
//!   trailing axes;
//! - `channel_affine(x, scale, shift)` → `x·scale[c] + shift[c]`;
//! - `channel_sums(a, b)` → (2, C): each channel's Σa and Σa·b (the reductions of the
//!   affine's gradient).
//!
//! A (N, C, …) tensor is N·C contiguous blocks of S elements (S the product of the trailing
//! axes; 1 for (N, C)): channel c owns blocks c, C + c, 2C + c, …. The CPU splits the work by
//! channel (reductions) or by block (the affine); the GPU gives each channel one workgroup
//! (reductions) or each element one invocation (the affine).

use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, ulps_summing};
use crate::backend::cpu::{CpuData, CpuStorage, with_float};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::{Element, Float};
use crate::ops::layout::u32_of;
use crate::{Result, Shape, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("channel.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// N: blocks per channel.
    batch: u32,
    channels: u32,
    /// S: elements per block.
    block: u32,
    _pad: u32,
}

/// (N, C, S) of a (N, C, …) shape.
fn layout(shape: &Shape) -> (usize, usize, usize) {
    let d = shape.dims();
    (d[0], d[1], d[2..].iter().product())
}

fn params(op: &str, shape: &Shape) -> Result<Params> {
    let (n, c, s) = layout(shape);
    Ok(Params { batch: u32_of(op, n)?, channels: u32_of(op, c)?, block: u32_of(op, s)?, _pad: 0 })
}

/// Calls `f(channel, block)` for every block of every channel, channels in parallel, and
/// collects one value per channel.
fn per_channel<T: Float, R: Send>(
    x: &[T],
    (n, c, s): (usize, usize, usize),
    f: impl Fn(usize, &mut dyn Iterator<Item = (usize, &[T])>) -> R + Sync,
) -> Vec<R> {
    (0..c)
        .into_par_iter()
        .map(|ch| f(ch, &mut (0..n).map(|b| (b, &x[(b * c + ch) * s..(b * c + ch + 1) * s]))))
        .collect()
}

/// Each channel's mean and biased variance. Input: x (N, C, …); output (2, C).
pub(crate) struct ChannelMoments;

impl Op for ChannelMoments {
    fn name(&self) -> &'static str {
        "channel_moments"
    }

    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        let dims = layout(args[0].shape);
        let m = (dims.0 * dims.2).max(1) as f64;
        with_float!(args[0].data, T, x => {
            // shifted by the channel's first value, in f64: no cancellation for |mean| ≫ std
            let moments = per_channel(x, dims, |_, blocks| {
                let (mut shift, mut s1, mut s2) = (None, 0f64, 0f64);
                for (_, block) in blocks {
                    let k = *shift.get_or_insert_with(|| block.first().map_or(0.0, |v| v.to_f64()));
                    for v in block {
                        let d = v.to_f64() - k;
                        s1 += d;
                        s2 += d * d;
                    }
                }
                let mean = shift.unwrap_or(0.0) + s1 / m;
                (mean, ((s2 - s1 * s1 / m) / m).max(0.0))
            });
            let out: Vec<T> = moments.iter().map(|&(mean, _)| T::of(mean)).chain(moments.iter().map(|&(_, var)| T::of(var))).collect();
            CpuStorage::from_vec(out)
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let y = rec.alloc_elems(out.shape.numel())?;
        let p = params("channel_moments", args[0].shape)?;
        let kernel = Kernel::new(&SHADER, "moments", 1, 1);
        rec.dispatch(&kernel, &p, &[args[0].buf], &[&y], Grid::Linear(p.channels))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        // mean = Σx/M, var = Σ(x − mean)²/M: d/dx = dmean/M + dvar·2(x − mean)/M,
        // a per-channel affine of x: x·(2·dvar/M) + (dmean − 2·dvar·mean)/M
        let x = &g.inputs[0];
        let (n, _, s) = layout(x.shape());
        let m = (n * s).max(1) as f64;
        let (dmean, dvar) = (g.grad.select(0, 0), g.grad.select(0, 1));
        let mean = g.output.select(0, 0);
        let scale = &dvar * (2.0 / m);
        let shift = &dmean * (1.0 / m) - &scale * &mean;
        vec![Some(x.channel_affine(&scale, &shift))]
    }

    fn tolerance(&self, args: &[CpuArg], _: &Meta) -> Tolerance {
        // sums of N·S terms (the GPU's Welford merges and f32 accumulation)
        let (n, _, s) = layout(args[0].shape);
        ulps_summing(8.0, n * s)
    }
}

/// x·scale[c] + shift[c]. Inputs: x (N, C, …), scale (C), shift (C).
pub(crate) struct ChannelAffine;

/// `y` (a block of channel `ch`) ← `y`·scale + shift, for f32 or f64.
fn affine_blocks<T: Float>(y: &mut [T], (_, c, s): (usize, usize, usize), scale: &[T], shift: &[T]) {
    y.par_chunks_mut(s.max(1) * c.max(1)).for_each(|sample| {
        for (ch, block) in sample.chunks_mut(s.max(1)).enumerate() {
            let (a, b) = (scale[ch], shift[ch]);
            block.iter_mut().for_each(|v| *v = *v * a + b);
        }
    });
}

impl Op for ChannelAffine {
    fn name(&self) -> &'static str {
        "channel_affine"
    }

    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        let dims = layout(args[0].shape);
        with_float!(args[0].data, T, x => {
            let mut y = cpu_pool::for_overwrite::<T>(x.len());
            y.copy_from_slice(x);
            affine_blocks(&mut y, dims, args[1].data.as_slice::<T>(), args[2].data.as_slice::<T>());
            CpuStorage::from_vec(y)
        })
    }

    fn cpu_in_place(&self, inout: &mut CpuStorage, others: &[CpuArg], out: &Meta) -> bool {
        let dims = layout(out.shape);
        match inout.data_mut() {
            CpuData::F32(y) => affine_blocks(y, dims, others[0].data.as_slice(), others[1].data.as_slice()),
            CpuData::F64(y) => affine_blocks(y, dims, others[0].data.as_slice(), others[1].data.as_slice()),
            _ => return false,
        }
        true
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let total = u32_of("channel_affine", out.shape.numel())?;
        let y = rec.alloc_elems(total as usize)?;
        let p = params("channel_affine", args[0].shape)?;
        let kernel = Kernel::new(&SHADER, "affine", 3, 1);
        rec.dispatch(
            &kernel,
            &p,
            &[args[0].buf, args[1].buf, args[2].buf],
            &[&y],
            Grid::Linear(total.div_ceil(256)),
        )?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        // d/dx = scale[c]; d/dscale = Σ dy·x; d/dshift = Σ dy (over each channel)
        let (x, scale, dy) = (&g.inputs[0], &g.inputs[1], g.grad);
        let dx = dy.channel_affine(scale, &scale.zeros_like());
        let sums = dy.channel_sums(x);
        vec![Some(dx), Some(sums.select(0, 1)), Some(sums.select(0, 0))]
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // one product and one sum (the GPU may fuse them): the measured condition covers
        // x·scale cancelling against shift
        ulps_summing(2.0, 2)
    }
}

/// Each channel's Σa and Σa·b. Inputs: a, b (N, C, …); output (2, C).
pub(crate) struct ChannelSums;

impl Op for ChannelSums {
    fn name(&self) -> &'static str {
        "channel_sums"
    }

    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        let dims = layout(args[0].shape);
        with_float!(args[0].data, T, a => {
            let b = args[1].data.as_slice::<T>();
            let (c, s) = (dims.1, dims.2);
            let sums = per_channel(a, dims, |ch, blocks| {
                let (mut sa, mut sab) = (0f64, 0f64);
                for (n, block) in blocks {
                    let other = &b[(n * c + ch) * s..(n * c + ch + 1) * s];
                    for (u, v) in block.iter().zip(other) {
                        sa += u.to_f64();
                        sab += u.to_f64() * v.to_f64();
                    }
                }
                (sa, sab)
            });
            let out: Vec<T> = sums.iter().map(|&(sa, _)| T::of(sa)).chain(sums.iter().map(|&(_, sab)| T::of(sab))).collect();
            CpuStorage::from_vec(out)
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let y = rec.alloc_elems(out.shape.numel())?;
        let p = params("channel_sums", args[0].shape)?;
        let kernel = Kernel::new(&SHADER, "sums", 2, 1);
        rec.dispatch(&kernel, &p, &[args[0].buf, args[1].buf], &[&y], Grid::Linear(p.channels))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        // d(Σa)/da = 1, d(Σa·b)/da = b, d(Σa·b)/db = a
        let (a, b) = (&g.inputs[0], &g.inputs[1]);
        let (g_sum, g_dot) = (g.grad.select(0, 0), g.grad.select(0, 1));
        let da = b.channel_affine(&g_dot, &g_sum);
        let db = a.channel_affine(&g_dot, &g_dot.zeros_like());
        vec![Some(da), Some(db)]
    }

    fn tolerance(&self, args: &[CpuArg], _: &Meta) -> Tolerance {
        let (n, _, s) = layout(args[0].shape);
        ulps_summing(4.0, n * s)
    }
}

impl Tensor {
    /// Each channel's mean and biased variance over every axis but 1, as a (2, C) tensor (row 0
    /// the means, row 1 the variances): batch normalization's statistics in one pass.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 3.0, 10.0, 10.0], [2, 2, 1], &Device::Cpu);
    /// // channel 0 holds 1 and 10, channel 1 holds 3 and 10
    /// let m = x.channel_moments().to_vec::<f32>().unwrap();
    /// assert_eq!(m, [5.5, 6.5, 20.25, 12.25]);
    /// ```
    #[track_caller]
    pub fn channel_moments(&self) -> Tensor {
        if crate::amp::widens(self) {
            return crate::amp::widen(self).channel_moments();
        }
        self.check_channels("channel_moments");
        Tensor::from_op(ChannelMoments, vec![self.clone()], Shape::new(vec![2, self.dims()[1]]), self.dtype())
    }

    /// `self·scale[c] + shift[c]` for each channel c of axis 1 (scale and shift of shape (C)):
    /// batch normalization's normalize-and-scale in one pass.
    #[track_caller]
    pub fn channel_affine(&self, scale: &Tensor, shift: &Tensor) -> Tensor {
        if crate::amp::widens(self) {
            return crate::amp::widen(self).channel_affine(scale, shift);
        }
        self.check_channels("channel_affine");
        for (what, p) in [("scale", scale), ("shift", shift)] {
            if p.dims() != [self.dims()[1]] || p.dtype() != self.dtype() {
                panic!(
                    "channel_affine: {what} {} {} does not fit input {} {} (one value per channel of axis 1)",
                    p.shape(),
                    p.dtype(),
                    self.shape(),
                    self.dtype()
                );
            }
        }
        Tensor::from_op(
            ChannelAffine,
            vec![self.clone(), scale.clone(), shift.clone()],
            self.shape().clone(),
            self.dtype(),
        )
    }

    /// Each channel's Σself and Σself·other over every axis but 1, as a (2, C) tensor.
    #[track_caller]
    pub fn channel_sums(&self, other: &Tensor) -> Tensor {
        self.check_channels("channel_sums");
        if other.shape() != self.shape() || other.dtype() != self.dtype() {
            panic!(
                "channel_sums: operands {} {} and {} {} differ",
                self.shape(),
                self.dtype(),
                other.shape(),
                other.dtype()
            );
        }
        Tensor::from_op(
            ChannelSums,
            vec![self.clone(), other.clone()],
            Shape::new(vec![2, self.dims()[1]]),
            self.dtype(),
        )
    }

    #[track_caller]
    fn check_channels(&self, op: &str) {
        if self.rank() < 2 || !self.dtype().is_float() {
            panic!("{op}: expected a float (N, C, …) tensor, found {} {}", self.shape(), self.dtype());
        }
    }
}
