//! Fused scaled dot-product attention, softmax(q·kᵀ·scale + causal mask)·v, and its backward,
//! without ever holding the T×T score matrix in memory: scores are recomputed per block with an
//! online softmax (the FlashAttention recipe, Dao et al. 2022).
//!
//! Backward is three kernels (`attention_lse`, then the gradients for q and for k and v) fed by
//! the row log-sum-exp and δᵢ = Σ dOᵢ·Oᵢ:
//!   Pᵢⱼ = exp(sᵢⱼ − lseᵢ),  dSᵢⱼ = Pᵢⱼ·(dOᵢ·vⱼ − δᵢ)
//!   dq = scale·dS·k,  dk = scale·dSᵀ·q,  dv = Pᵀ·dO
//! The causal mask is PyTorch's `is_causal`: query i sees keys j ≤ i.

use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, ulps_summing};
use crate::backend::cpu::{CpuData, CpuStorage, Gemm, Mat, gemm, max_of, sum_f64};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::u32_of;
use crate::{Error, Result, Shape, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("attention.wgsl");

/// Query rows per block on the CPU: a causal block multiplies only the keys its last row sees.
const ROW_BLOCK: usize = 64;

/// The largest head dimension the GPU kernels hold in workgroup memory.
const MAX_HEAD_DIM: usize = 256;

/// Sizes shared by the attention ops: `batch` flattens every leading dimension.
#[derive(Clone, Copy, Debug)]
struct Geom {
    batch: usize,
    tq: usize,
    tk: usize,
    d: usize,
    dv: usize,
    scale: f64,
    causal: bool,
}

impl Geom {
    fn of(q: &Shape, k: &Shape, v: &Shape, scale: f64, causal: bool) -> Geom {
        let r = q.rank();
        Geom {
            batch: q.dims()[..r - 2].iter().product(),
            tq: q.dim(r - 2),
            tk: k.dim(r - 2),
            d: q.dim(r - 1),
            dv: v.dim(r - 1),
            scale,
            causal,
        }
    }

    /// How many keys (a prefix) the query rows before `end` see: all of them, or with the
    /// causal mask the first `end`.
    fn visible_keys(&self, end: usize) -> usize {
        if self.causal { end.min(self.tk) } else { self.tk }
    }

    fn params(&self) -> Result<Params> {
        if self.d > MAX_HEAD_DIM || self.dv > MAX_HEAD_DIM {
            return Err(Error::TooLarge {
                device: "the GPU attention kernels".into(),
                detail: format!("head dimensions {} and {} exceed {MAX_HEAD_DIM}", self.d, self.dv),
            });
        }
        let u = |v: usize| u32_of("attention", v);
        Ok(Params {
            batch: u(self.batch)?,
            tq: u(self.tq)?,
            tk: u(self.tk)?,
            d: u(self.d)?,
            dv: u(self.dv)?,
            causal: self.causal as u32,
            scale: self.scale as f32,
            _pad: 0,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    tq: u32,
    tk: u32,
    d: u32,
    dv: u32,
    causal: u32,
    scale: f32,
    _pad: u32,
}

static FLASH: Shader = shader!("flash_attention.wgsl");

/// Rows (queries, or keys for dk and dv) per workgroup of the flash kernels.
const FLASH_ROWS: u32 = 64;

/// The flash kernels' specialization: head dimensions and the staged block size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flash {
    d: u32,
    dv: u32,
    block: u32,
}

impl Flash {
    /// The flash configuration for `g` under a workgroup-memory limit of `limit` bytes: head
    /// dimensions multiples of 4 up to 128, and the largest power-of-two block (up to 64 rows)
    /// whose staged rows fit.
    fn fit(g: &Geom, limit: u32) -> Option<Flash> {
        let ok = |d: usize| d.is_multiple_of(4) && d > 0 && d <= 128;
        if !ok(g.d) || !ok(g.dv) {
            return None;
        }
        let bytes_per_row = ((g.d + g.dv) * 4 + 8) as u32;
        let block = [64u32, 32, 16, 8, 4].into_iter().find(|b| b * bytes_per_row <= limit)?;
        Some(Flash { d: g.d as u32, dv: g.dv as u32, block })
    }

    fn kernel(&self, entry: &'static str) -> Kernel<'static> {
        let (reads, writes) = match entry {
            "forward" => (3, 1),
            "lse" => (2, 1),
            _ => (6, 1),
        };
        Kernel::new(&FLASH, entry, reads, writes)
            .with("const ROWS: u32 = 64u; // @ROWS", format!("const ROWS: u32 = {FLASH_ROWS}u;"))
            .with("const BLOCK: u32 = 32u; // @BLOCK", format!("const BLOCK: u32 = {}u;", self.block))
            .with("const D: u32 = 64u; // @D", format!("const D: u32 = {}u;", self.d))
            .with("const DV: u32 = 64u; // @DV", format!("const DV: u32 = {}u;", self.dv))
    }
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let configs = [
        Flash { d: 64, dv: 64, block: 32 },
        Flash { d: 4, dv: 8, block: 64 },
        Flash { d: 128, dv: 128, block: 16 },
    ];
    let entries = ["forward", "lse", "grad_q", "grad_k", "grad_v"];
    configs.iter().flat_map(|f| entries.iter().map(move |e| f.kernel(e))).collect()
}

/// Which attention kernel a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// (q, k, v) → o
    Forward,
    /// (q, k) → row log-sum-exp of the scores
    Lse,
    /// (q, k, v, dO, lse, δ) → dq
    GradQ,
    /// (q, k, v, dO, lse, δ) → [dk | dv] along the last axis
    GradKv,
}

/// An attention node.
pub(crate) struct Attention {
    pass: Pass,
    scale: f64,
    causal: bool,
}

impl Attention {
    /// The CPU reference, one batch (one head) at a time, written with GEMMs: the scores
    /// S = scale·Q·Kᵀ of a batch are materialized here, unlike on the GPU.
    fn run<T: Gemm + Send + Sync>(&self, g: Geom, a: &[&[T]]) -> Vec<T> {
        let width = match self.pass {
            Pass::Forward => g.dv,
            Pass::Lse => 1,
            Pass::GradQ => g.d,
            Pass::GradKv => g.d + g.dv,
        };
        let rows = if self.pass == Pass::GradKv { g.tk } else { g.tq };
        let mut out = cpu_pool::zeroed::<T>(g.batch * rows * width);
        out.par_chunks_mut((rows * width).max(1)).enumerate().for_each(|(b, ob)| self.batch(&g, a, b, ob));
        out
    }

    /// P = softmax(scale · Q·Kᵀ) (tq×tk) over each row's visible keys, zero where masked, into
    /// `p`; returns each row's log-sum-exp, in f64. With the causal mask a block of query rows
    /// only multiplies the keys its last row sees, halving the work.
    fn probabilities<T: Gemm>(g: &Geom, q: &[T], k: &[T], p: &mut [T]) -> Vec<f64> {
        let (tq, tk, d) = (g.tq, g.tk, g.d);
        for r0 in (0..tq).step_by(ROW_BLOCK) {
            let r1 = (r0 + ROW_BLOCK).min(tq);
            // S[r0..r1, ..keys] = Q[r0..r1] (rows×d) · K[..keys]ᵀ (d×keys)
            gemm(
                r1 - r0,
                d,
                g.visible_keys(r1),
                Mat { data: &q[r0 * d..], row: d, col: 1 },
                Mat { data: k, row: 1, col: d },
                T::ZERO,
                &mut p[r0 * tk..],
                tk,
            );
        }
        let scale = T::of(g.scale);
        let mut lse = vec![0.0; tq];
        for (i, (row, lse)) in p.chunks_mut(tk.max(1)).zip(&mut lse).enumerate() {
            let (seen, masked) = row.split_at_mut(g.visible_keys(i + 1));
            seen.iter_mut().for_each(|s| *s *= scale);
            let m = max_of(seen);
            seen.iter_mut().for_each(|s| *s = (*s - m).exp_fast());
            let sum = sum_f64(seen);
            let inv = T::of(1.0 / sum);
            seen.iter_mut().for_each(|e| *e *= inv);
            masked.fill(T::ZERO);
            *lse = m.to_f64() + sum.ln();
        }
        lse
    }

    fn batch<T: Gemm>(&self, g: &Geom, a: &[&[T]], b: usize, out: &mut [T]) {
        let (tq, tk, d, dv) = (g.tq, g.tk, g.d, g.dv);
        let q = &a[0][b * tq * d..][..tq * d];
        let k = &a[1][b * tk * d..][..tk * d];
        // P = softmax(scale · Q·Kᵀ, masked), and each row's log-sum-exp
        let mut p = vec![T::ZERO; tq * tk];
        let lse = Self::probabilities(g, q, k, &mut p);
        if self.pass == Pass::Lse {
            out.iter_mut().zip(&lse).for_each(|(o, &l)| *o = T::of(l));
            return;
        }
        let v = &a[2][b * tk * dv..][..tk * dv];
        if self.pass == Pass::Forward {
            for r0 in (0..tq).step_by(ROW_BLOCK) {
                let r1 = (r0 + ROW_BLOCK).min(tq);
                let keys = g.visible_keys(r1);
                // O[r0..r1] = P[r0..r1, ..keys] (rows×keys) · V[..keys] (keys×dv)
                gemm(
                    r1 - r0,
                    keys,
                    dv,
                    Mat { data: &p[r0 * tk..], row: tk, col: 1 },
                    Mat { data: v, row: dv, col: 1 },
                    T::ZERO,
                    &mut out[r0 * dv..],
                    dv,
                );
            }
            return;
        }
        let scale = T::of(g.scale);
        let dout = &a[3][b * tq * dv..][..tq * dv];
        let delta = &a[5][b * tq..][..tq];
        // dP = dO (tq×dv) · Vᵀ (dv×tk), then dS = P ∘ (dP − δ), in place
        let mut ds = vec![T::ZERO; tq * tk];
        gemm(
            tq,
            dv,
            tk,
            Mat { data: dout, row: dv, col: 1 },
            Mat { data: v, row: 1, col: dv },
            T::ZERO,
            &mut ds,
            tk,
        );
        for ((row, prow), &dl) in ds.chunks_mut(tk.max(1)).zip(p.chunks(tk.max(1))).zip(delta) {
            row.iter_mut().zip(prow).for_each(|(x, &pv)| *x = pv * (*x - dl) * scale);
        }
        if self.pass == Pass::GradQ {
            // dQ = scale·dS (tq×tk) · K (tk×d)
            gemm(
                tq,
                tk,
                d,
                Mat { data: &ds, row: tk, col: 1 },
                Mat { data: k, row: d, col: 1 },
                T::ZERO,
                out,
                d,
            );
        } else {
            // dK = scale·dSᵀ (tk×tq) · Q (tq×d) and dV = Pᵀ (tk×tq) · dO (tq×dv), side by side
            let w = d + dv;
            gemm(
                tk,
                tq,
                d,
                Mat { data: &ds, row: 1, col: tk },
                Mat { data: q, row: d, col: 1 },
                T::ZERO,
                out,
                w,
            );
            gemm(
                tk,
                tq,
                dv,
                Mat { data: &p, row: 1, col: tk },
                Mat { data: dout, row: dv, col: 1 },
                T::ZERO,
                &mut out[d..],
                w,
            );
        }
    }
}

impl Op for Attention {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "attention",
            Pass::Lse => "attention_lse",
            Pass::GradQ | Pass::GradKv => "attention_grad",
        }
    }

    fn describe(&self) -> String {
        format!("{}({:?}, scale {}, causal {})", self.name(), self.pass, self.scale, self.causal)
    }

    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        let v_shape = if args.len() > 2 { args[2].shape } else { args[1].shape };
        let g = Geom::of(args[0].shape, args[1].shape, v_shape, self.scale, self.causal);
        CpuStorage::new(match args[0].data.data() {
            CpuData::F32(_) => {
                CpuData::F32(self.run(g, &args.iter().map(|a| a.data.as_slice::<f32>()).collect::<Vec<_>>()))
            }
            CpuData::F64(_) => {
                CpuData::F64(self.run(g, &args.iter().map(|a| a.data.as_slice::<f64>()).collect::<Vec<_>>()))
            }
            _ => unreachable!("dtypes are checked when recorded"),
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let v_shape = if args.len() > 2 { args[2].shape } else { args[1].shape };
        let g = Geom::of(args[0].shape, args[1].shape, v_shape, self.scale, self.causal);
        let params = g.params()?;
        let y = rec.alloc_elems(out.shape.numel())?;
        let reads: Vec<&GpuBuffer> = args.iter().map(|a| a.buf).collect();
        let limit = rec.context().limits.max_compute_workgroup_storage_size;
        if let Some(flash) = Flash::fit(&g, limit) {
            // (B, T, D) → one workgroup per ROWS query rows (key rows for dk, dv)
            let rows = if self.pass == Pass::GradKv { g.tk } else { g.tq };
            let grid = Grid::Linear(u32_of("attention", g.batch * rows.div_ceil(FLASH_ROWS as usize))?);
            let entries: &[&'static str] = match self.pass {
                Pass::Forward => &["forward"],
                Pass::Lse => &["lse"],
                Pass::GradQ => &["grad_q"],
                Pass::GradKv => &["grad_k", "grad_v"],
            };
            for &entry in entries {
                rec.dispatch(&flash.kernel(entry), &params, &reads, &[&y], grid)?;
            }
            return Ok(y);
        }
        let rows = u32_of("attention", g.batch * if self.pass == Pass::GradKv { g.tk } else { g.tq })?;
        // one workgroup per query row (per key row for the k/v gradients)
        let entry = match self.pass {
            Pass::Forward => "forward",
            Pass::Lse => "lse",
            Pass::GradQ => "grad_q",
            Pass::GradKv => "grad_kv",
        };
        let kernel = Kernel::new(&SHADER, entry, reads.len() as u32, 1);
        rec.dispatch(&kernel, &params, &reads, &[&y], Grid::Linear(rows))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let (q, k, v) = (&g.inputs[0], &g.inputs[1], &g.inputs[2]);
        let (d, dv) = (q.dim(-1), v.dim(-1));
        let row_shape = Shape::new(q.dims()[..q.rank() - 1].to_vec());
        let lse = Tensor::from_op(
            Attention { pass: Pass::Lse, ..*self },
            vec![q.clone(), k.clone()],
            row_shape,
            q.dtype(),
        );
        // δᵢ = Σ dOᵢ·Oᵢ
        let delta = (g.grad * g.output).sum(-1, false);
        let inputs = vec![q.clone(), k.clone(), v.clone(), g.grad.clone(), lse, delta];
        let dq = Tensor::from_op(
            Attention { pass: Pass::GradQ, ..*self },
            inputs.clone(),
            q.shape().clone(),
            q.dtype(),
        );
        let mut kv_dims = k.dims().to_vec();
        *kv_dims.last_mut().expect("rank ≥ 2") = d + dv;
        let dkv = Tensor::from_op(
            Attention { pass: Pass::GradKv, ..*self },
            inputs,
            Shape::new(kv_dims),
            q.dtype(),
        );
        vec![Some(dq), Some(dkv.narrow(-1, 0, d)), Some(dkv.narrow(-1, d, dv))]
    }

    fn tolerance(&self, args: &[CpuArg], _: &Meta) -> Tolerance {
        // scores are dot products of length D, outputs sums over the keys (and, backward, over
        // the queries) of products with them; exp on the GPU is a few ulps off per score
        let v_shape = if args.len() > 2 { args[2].shape } else { args[1].shape };
        let g = Geom::of(args[0].shape, args[1].shape, v_shape, self.scale, self.causal);
        match self.pass {
            Pass::Forward | Pass::Lse => ulps_summing(16.0, g.d + g.tk),
            Pass::GradQ | Pass::GradKv => ulps_summing(32.0, g.d + g.tk.max(g.tq)),
        }
    }
}

impl Tensor {
    /// Scaled dot-product attention of queries `self` (…, Tq, D) over keys `k` (…, Tk, D) and
    /// values `v` (…, Tk, Dv): softmax(q·kᵀ·scale)·v, with scale 1/√D by default and, if
    /// `causal`, query i attending to keys j ≤ i only. Fused: no Tq×Tk matrix is stored.
    #[track_caller]
    pub fn attention(&self, k: &Tensor, v: &Tensor, causal: bool, scale: Option<f64>) -> Tensor {
        let q = self;
        let r = q.rank();
        let ok = r >= 2
            && k.rank() == r
            && v.rank() == r
            && q.dims()[..r - 2] == k.dims()[..r - 2]
            && q.dims()[..r - 2] == v.dims()[..r - 2]
            && q.dim(-1) == k.dim(-1)
            && k.dim(-2) == v.dim(-2)
            && q.dtype() == k.dtype()
            && q.dtype() == v.dtype()
            && q.dtype().is_float();
        if !ok {
            panic!(
                "attention: q {}, k {}, v {} ({}) must be float (…, Tq, D), (…, Tk, D), (…, Tk, Dv)",
                q.shape(),
                k.shape(),
                v.shape(),
                q.dtype()
            );
        }
        let scale = scale.unwrap_or(1.0 / (q.dim(-1) as f64).sqrt());
        let mut dims = q.dims().to_vec();
        dims[r - 1] = v.dim(-1);
        let op = Attention { pass: Pass::Forward, scale, causal };
        Tensor::from_op(op, [q.clone(), k.clone(), v.clone()], Shape::new(dims), q.dtype())
    }

    /// The same attention computed unfused, as matmul → masked softmax → matmul: it stores the
    /// Tq×Tk scores. For checking the fused kernel and for measuring what fusion saves.
    #[track_caller]
    pub fn attention_unfused(&self, k: &Tensor, v: &Tensor, causal: bool, scale: Option<f64>) -> Tensor {
        let scale = scale.unwrap_or(1.0 / (self.dim(-1) as f64).sqrt());
        let scores = self.matmul(&k.t()) * scale;
        let scores = if causal {
            let (tq, tk) = (self.dim(-2), k.dim(-2));
            let rows =
                Tensor::arange_typed(0.0, tq as f64, 1.0, crate::DType::I32, &self.device()).reshape([tq, 1]);
            let cols =
                Tensor::arange_typed(0.0, tk as f64, 1.0, crate::DType::I32, &self.device()).reshape([1, tk]);
            let hidden = cols.gt(&rows);
            let neg_inf = Tensor::full(Shape::scalar(), f64::NEG_INFINITY, scores.dtype(), &self.device());
            hidden.where_(&neg_inf, &scores)
        } else {
            scores
        };
        scores.softmax(-1).matmul(v)
    }
}
