//! The CPU reference of the attention passes, one batch (one head) at a time, written with
//! GEMMs: unlike on the GPU, the scores S = scale·Q·Kᵀ + mask of a batch are materialized.

use super::geometry::{DropoutDraw, Geom, with_mask};
use super::{Attention, Pass, STATS};
use crate::backend::cpu::{Gemm, Mat, gemm, max_of, sum_f64};
use crate::backend::cpu_pool;
use rayon::prelude::*;

/// Query rows per block: with the causal mask or key lengths a block multiplies only the keys
/// its last row may see.
const ROW_BLOCK: usize = 64;

/// A node's inputs as the reference reads them.
pub(super) struct Inputs<'a, T> {
    pub q: &'a [T],
    pub k: &'a [T],
    pub v: &'a [T],
    pub lengths: Option<&'a [i32]>,
    pub mask: Option<&'a [T]>,
    /// The pass's own inputs: (dO, O) for the statistics, (dO, stats) for the gradients.
    pub rest: Vec<&'a [T]>,
}

impl Attention {
    /// The pass's output for every batch.
    pub(super) fn run<T: Gemm + Send + Sync>(&self, g: &Geom, x: &Inputs<T>) -> Vec<T> {
        let width = match self.pass {
            Pass::Forward => g.dv,
            Pass::Stats => STATS,
            Pass::GradQ => g.d,
            Pass::GradKv => g.d + g.dv,
        };
        let rows = if self.pass == Pass::GradKv { g.tk } else { g.tq };
        let mut out = cpu_pool::for_overwrite::<T>(g.batch * rows * width);
        if self.pass == Pass::GradKv {
            // dk of every batch, then dv of every batch
            let (dk, dv) = out.split_at_mut(g.batch * g.tk * g.d);
            let (dk, dv) = (dk.par_chunks_mut((g.tk * g.d).max(1)), dv.par_chunks_mut((g.tk * g.dv).max(1)));
            dk.zip(dv).enumerate().for_each(|(b, (dk, dv))| self.batch(g, x, b, dk, dv));
            return out;
        }
        out.par_chunks_mut((rows * width).max(1))
            .enumerate()
            .for_each(|(b, ob)| self.batch(g, x, b, ob, &mut []));
        out
    }

    /// Batch `b`'s output into `out` (for the k and v gradients: dk into `out`, dv into `dv_out`).
    fn batch<T: Gemm>(&self, g: &Geom, x: &Inputs<T>, b: usize, out: &mut [T], dv_out: &mut [T]) {
        let (tq, tk, d, dv) = (g.tq, g.tk, g.d, g.dv);
        let q = &x.q[b * tq * d..][..tq * d];
        let k = &x.k[b * tk * d..][..tk * d];
        let v = &x.v[b * tk * dv..][..tk * dv];
        let limit = g.key_limit(b, x.lengths);
        // P = softmax(scale·Q·Kᵀ + mask) over the visible keys, each row's (max, log-sum), and
        // the weights after dropout P̃ = P∘M
        let mut p = vec![T::ZERO; tq * tk];
        let rows = probabilities(g, b, x.mask, q, k, limit, &mut p);
        let dropped = if self.pass == Pass::Stats { None } else { dropped(g, b, limit, &p) };
        let pd: &[T] = dropped.as_deref().unwrap_or(&p);
        match self.pass {
            Pass::Stats => {
                // (max, log-sum, δ = dO·O) per query row
                let dout = &x.rest[0][b * tq * dv..];
                let o = &x.rest[1][b * tq * dv..];
                for (i, (s, &(max, log_sum))) in out.chunks_mut(STATS).zip(&rows).enumerate() {
                    let (dout, o) = (&dout[i * dv..][..dv], &o[i * dv..][..dv]);
                    let delta: f64 = dout.iter().zip(o).map(|(a, b)| a.to_f64() * b.to_f64()).sum();
                    s.copy_from_slice(&[max, T::of(log_sum), T::of(delta)]);
                }
            }
            Pass::Forward => {
                for r0 in (0..tq).step_by(ROW_BLOCK) {
                    let r1 = (r0 + ROW_BLOCK).min(tq);
                    // O[r0..r1] = P̃[r0..r1, ..keys] (rows×keys) · V[..keys] (keys×dv)
                    gemm(
                        r1 - r0,
                        g.visible_keys(r1, limit),
                        dv,
                        Mat { data: &pd[r0 * tk..], row: tk, col: 1 },
                        Mat { data: v, row: dv, col: 1 },
                        T::ZERO,
                        &mut out[r0 * dv..],
                        dv,
                    );
                }
            }
            Pass::GradQ | Pass::GradKv => {
                let dout = &x.rest[0][b * tq * dv..][..tq * dv];
                let stats = &x.rest[1][b * tq * STATS..][..tq * STATS];
                let ds = score_grads(g, dout, v, &p, pd, stats);
                if self.pass == Pass::GradQ {
                    // dQ = dS (tq×tk) · K (tk×d)
                    let ds = Mat { data: &ds, row: tk, col: 1 };
                    gemm(tq, tk, d, ds, Mat { data: k, row: d, col: 1 }, T::ZERO, out, d);
                } else {
                    // dK = dSᵀ (tk×tq) · Q (tq×d) and dV = P̃ᵀ (tk×tq) · dO (tq×dv)
                    let ds = Mat { data: &ds, row: 1, col: tk };
                    gemm(tk, tq, d, ds, Mat { data: q, row: d, col: 1 }, T::ZERO, out, d);
                    let pd = Mat { data: pd, row: 1, col: tk };
                    gemm(tk, tq, dv, pd, Mat { data: dout, row: dv, col: 1 }, T::ZERO, dv_out, dv);
                }
            }
        }
    }
}

/// P = softmax(scale · Q·Kᵀ + mask) (tq×tk) of batch `b` over each row's visible keys, zero
/// where hidden, into `p`; returns each row's largest visible score m and ln Σ exp(s − m), the
/// latter in f64 — (0, 0) for a row that sees no key, whose P row is 0. Keys at or past `limit`
/// (the key length) are hidden, and with the causal mask a block of query rows only
/// multiplies the keys its last row sees.
fn probabilities<T: Gemm>(
    g: &Geom,
    b: usize,
    mask: Option<&[T]>,
    q: &[T],
    k: &[T],
    limit: usize,
    p: &mut [T],
) -> Vec<(T, f64)> {
    let (tq, tk, d) = (g.tq, g.tk, g.d);
    for r0 in (0..tq).step_by(ROW_BLOCK) {
        let r1 = (r0 + ROW_BLOCK).min(tq);
        // S[r0..r1, ..keys] = Q[r0..r1] (rows×d) · K[..keys]ᵀ (d×keys)
        gemm(
            r1 - r0,
            d,
            g.visible_keys(r1, limit),
            Mat { data: &q[r0 * d..], row: d, col: 1 },
            Mat { data: k, row: 1, col: d },
            T::ZERO,
            &mut p[r0 * tk..],
            tk,
        );
    }
    let scale = T::of(g.scale);
    let mut stats = vec![(T::ZERO, 0.0); tq];
    for (i, (row, stats)) in p.chunks_mut(tk.max(1)).zip(&mut stats).enumerate() {
        let (seen, hidden) = row.split_at_mut(g.visible_keys(i + 1, limit));
        hidden.fill(T::ZERO);
        seen.iter_mut().for_each(|s| *s *= scale);
        if let (Some(index), Some(mask)) = (g.mask, mask) {
            let start = index.row_start(b, i);
            for (j, s) in seen.iter_mut().enumerate() {
                *s = with_mask(*s, mask[start + j * index.col_stride]);
            }
        }
        let m = max_of(seen);
        if m == T::NEG_INFINITY {
            // every key hidden: the row's weights are 0
            seen.fill(T::ZERO);
            continue;
        }
        seen.iter_mut().for_each(|s| *s = (*s - m).exp_fast());
        let sum = sum_f64(seen);
        let inv = T::of(1.0 / sum);
        seen.iter_mut().for_each(|e| *e *= inv);
        *stats = (m, sum.ln());
    }
    stats
}

/// The weights after dropout, P̃ = P∘M with M = 1/(1 − p) where the draw keeps a weight and 0
/// where it drops it (see [`DropoutDraw`]), or `None` without dropout. Only the keys a row may
/// see (below `limit`, the key length, and the causal bound) are drawn: the others are 0.
fn dropped<T: Gemm>(g: &Geom, b: usize, limit: usize, p: &[T]) -> Option<Vec<T>> {
    let draw = g.dropout?;
    let stride = DropoutDraw::row_stride(g.tk);
    let scale = T::of(f64::from(draw.scale()));
    let mut uniform = vec![0f32; g.tk];
    let mut out = p.to_vec();
    for (i, row) in out.chunks_mut(g.tk.max(1)).enumerate() {
        let uniform = &mut uniform[..g.visible_keys(i + 1, limit)];
        draw.key.fill_uniform(((b * g.tq + i) * stride) as u64, uniform);
        for (w, &u) in row.iter_mut().zip(uniform.iter()) {
            *w = if u >= draw.p { *w * scale } else { T::ZERO };
        }
    }
    Some(out)
}

/// scale·dS (tq×tk) with dS = P∘(M∘dP̃ − δ) = P̃∘dP̃ − P·δ, where dP̃ = dO·Vᵀ and δ is the
/// last column of `stats` (see the module doc).
fn score_grads<T: Gemm>(g: &Geom, dout: &[T], v: &[T], p: &[T], pd: &[T], stats: &[T]) -> Vec<T> {
    let (tq, tk, dv) = (g.tq, g.tk, g.dv);
    let mut ds = vec![T::ZERO; tq * tk];
    // dP̃ = dO (tq×dv) · Vᵀ (dv×tk), then dS in place
    let (dout, vt) = (Mat { data: dout, row: dv, col: 1 }, Mat { data: v, row: 1, col: dv });
    gemm(tq, dv, tk, dout, vt, T::ZERO, &mut ds, tk);
    let scale = T::of(g.scale);
    let rows = ds.chunks_mut(tk.max(1)).zip(p.chunks(tk.max(1))).zip(pd.chunks(tk.max(1)));
    for (((row, prow), pdrow), stat) in rows.zip(stats.chunks(STATS)) {
        let delta = stat[2];
        for ((x, &pv), &pdv) in row.iter_mut().zip(prow).zip(pdrow) {
            *x = (pdv * *x - pv * delta) * scale;
        }
    }
    ds
}
