//! Rotary position embeddings (RoPE, Su et al., "RoFormer", 2021) as one fused op: each pair of
//! features of a query or key row at position p is rotated by the angle p·θᵢ, so that the dot
//! product of a query at p and a key at p′ depends on p − p′ only.
//!
//! The angles come in as tables, `cos` and `sin` of shape (positions, D/2), computed once on the
//! host in f64 ([`rope_tables`]): the GPU's `sin` and `cos` are only specified to 2⁻¹¹ absolute
//! on [−π, π], and an angle p·θ in f32 is already off by p·2⁻²⁴, so tables are both faster and
//! the same on every backend. Row t of x (…, T, D) takes the tables' row `offset + t` (a KV
//! cache passes the number of positions already cached).
//!
//! Pairs: (xᵢ, xᵢ₊D/2) — GPT-NeoX and Hugging Face's `rotate_half` — or, `interleaved`,
//! (x₂ᵢ, x₂ᵢ₊₁) as the RoFormer paper and Meta's LLaMA:
//!   yₐ = xₐ·cos − x_b·sin,  y_b = x_b·cos + xₐ·sin.
//! The rotation is linear in x with matrix R; its gradient is Rᵀ, the rotation by −angle: the
//! same op with `sin` negated, whatever the tables hold. The tables get no gradient.

use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, ulps};
use crate::backend::cpu::{CpuStorage, with_float};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::ops::layout::u32_of;
use crate::{Device, Result, Shape, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("rope.wgsl");

/// How the features of a row are paired for rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RopePairs {
    /// (xᵢ, xᵢ₊D/2): GPT-NeoX, Hugging Face `rotate_half`.
    #[default]
    Halves,
    /// (x₂ᵢ, x₂ᵢ₊₁): the RoFormer paper, Meta's LLaMA, torchtune.
    Interleaved,
}

/// The rotation of one tensor's rows (forward, or transposed for the gradient).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rope {
    offset: usize,
    pairs: RopePairs,
    /// Rotate by −angle (Rᵀ): the gradient.
    transposed: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Feature pairs in x: numel / 2.
    pairs: u32,
    /// Rows per sequence (T).
    time: u32,
    /// Pairs per row (D / 2).
    half: u32,
    /// The tables' row of x's row 0.
    offset: u32,
    /// 1: interleaved pairs.
    interleaved: u32,
    /// −1 for the transposed rotation, else 1.
    sign: f32,
    _pad: [u32; 2],
}

impl Rope {
    /// The element indices (a, b) of pair `j` of a row starting at `base`.
    fn pair(&self, base: usize, j: usize, half: usize) -> (usize, usize) {
        match self.pairs {
            RopePairs::Halves => (base + j, base + j + half),
            RopePairs::Interleaved => (base + 2 * j, base + 2 * j + 1),
        }
    }

    fn run<T: Float + Send + Sync>(&self, x: &[T], cos: &[T], sin: &[T], time: usize, d: usize) -> Vec<T> {
        let half = d / 2;
        let mut y = cpu_pool::for_overwrite::<T>(x.len());
        y.par_chunks_mut(d.max(1)).enumerate().for_each(|(row, out)| {
            let at = (self.offset + row % time) * half;
            for j in 0..half {
                let (a, b) = self.pair(0, j, half);
                let (xa, xb) = (x[row * d + a], x[row * d + b]);
                let (c, s) = (cos[at + j], if self.transposed { -sin[at + j] } else { sin[at + j] });
                out[a] = xa * c - xb * s;
                out[b] = xb * c + xa * s;
            }
        });
        y
    }
}

impl Op for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn describe(&self) -> String {
        format!(
            "rope(offset {}, {:?}{})",
            self.offset,
            self.pairs,
            if self.transposed { ", transposed" } else { "" }
        )
    }

    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        let (time, d) =
            (args[0].shape.dim(args[0].shape.rank() - 2), args[0].shape.dim(args[0].shape.rank() - 1));
        with_float!(args[0].data, T, x => {
            let (cos, sin) = (args[1].data.as_slice::<T>(), args[2].data.as_slice::<T>());
            CpuStorage::from_vec(self.run(x, cos, sin, time, d))
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let shape = args[0].shape;
        let (time, d) = (shape.dim(shape.rank() - 2), shape.dim(shape.rank() - 1));
        let u = |v: usize| u32_of("rope", v);
        let params = Params {
            pairs: u(out.shape.numel() / 2)?,
            time: u(time)?,
            half: u(d / 2)?,
            offset: u(self.offset)?,
            interleaved: (self.pairs == RopePairs::Interleaved) as u32,
            sign: if self.transposed { -1.0 } else { 1.0 },
            _pad: [0; 2],
        };
        let y = rec.alloc_elems(out.shape.numel())?;
        let kernel = Kernel::new(&SHADER, "rope", 3, 1);
        let reads = [args[0].buf, args[1].buf, args[2].buf];
        rec.dispatch(&kernel, &params, &reads, &[&y], Grid::Linear(params.pairs.div_ceil(64)))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        // y = R·x per pair, so dx = Rᵀ·dy: the rotation by −angle
        let op = Rope { transposed: !self.transposed, ..*self };
        let dx = Tensor::from_op(
            op,
            [g.grad.clone(), g.inputs[1].clone(), g.inputs[2].clone()],
            g.grad.shape().clone(),
            g.grad.dtype(),
        );
        vec![Some(dx), None, None]
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // two products and a sum per element (the GPU may fuse one product into the sum)
        ulps(4.0)
    }
}

/// The cos and sin tables of rotary embeddings for `positions` positions of rows of `dim`
/// features (even), with frequencies θᵢ = base^(−2i/dim) for i < dim/2 (base 10,000 in the
/// paper): two (positions, dim/2) f32 tensors on `device`, computed in f64.
///
/// ```
/// use kiln::ops::rope::rope_tables;
/// use kiln::{Device, Tensor};
/// let (cos, sin) = rope_tables(16, 8, 10_000.0, &Device::Cpu);
/// assert_eq!(cos.dims(), &[16, 4]);
/// let x = Tensor::randn([2, 3, 16, 8], &Device::Cpu); // (B, H, T, D)
/// let y = x.rope(&cos, &sin, 0, Default::default());
/// // a rotation keeps each row's length
/// let (nx, ny) = (x.square().sum_all().item::<f32>()?, y.square().sum_all().item::<f32>()?);
/// assert!((nx - ny).abs() < 1e-3 * nx);
/// # Ok::<(), kiln::Error>(())
/// ```
#[track_caller]
pub fn rope_tables(positions: usize, dim: usize, base: f64, device: &Device) -> (Tensor, Tensor) {
    if !dim.is_multiple_of(2) || dim == 0 {
        panic!("rope_tables: the feature dimension must be even and positive, got {dim}");
    }
    let half = dim / 2;
    let angle = |p: usize, i: usize| p as f64 * base.powf(-2.0 * i as f64 / dim as f64);
    let table = |f: fn(f64) -> f64| -> Vec<f32> {
        (0..positions).flat_map(|p| (0..half).map(move |i| f(angle(p, i)) as f32)).collect()
    };
    (
        Tensor::from_vec(table(f64::cos), [positions, half], device),
        Tensor::from_vec(table(f64::sin), [positions, half], device),
    )
}

impl Tensor {
    /// Rotary position embeddings of `self` (…, T, D), D even: row t is rotated by the angles
    /// of the tables' row `offset + t` (see the module doc; the tables come from
    /// [`rope_tables`], or any (P, D/2) pair of x's dtype). Differentiable in `self`.
    ///
    /// Panics (at the caller's line) unless the tables are (P, D/2) with P ≥ offset + T.
    #[track_caller]
    pub fn rope(&self, cos: &Tensor, sin: &Tensor, offset: usize, pairs: RopePairs) -> Tensor {
        let r = self.rank();
        let ok = r >= 2
            && self.dim(-1).is_multiple_of(2)
            && self.dtype().is_float()
            && cos.shape() == sin.shape()
            && cos.rank() == 2
            && cos.dim(1) * 2 == self.dim(-1)
            && cos.dim(0) >= offset + self.dim(-2)
            && cos.dtype() == self.dtype()
            && sin.dtype() == self.dtype();
        if !ok {
            panic!(
                "rope: x {} ({}) needs float (…, T, D) with D even and tables cos {} and sin {} ({}, {}) \
                 of shape (P, D/2) with P ≥ offset {offset} + T",
                self.shape(),
                self.dtype(),
                cos.shape(),
                sin.shape(),
                cos.dtype(),
                sin.dtype()
            );
        }
        let op = Rope { offset, pairs, transposed: false };
        Tensor::from_op(
            op,
            [self.clone(), cos.clone(), sin.clone()],
            Shape::new(self.dims().to_vec()),
            self.dtype(),
        )
    }
}
