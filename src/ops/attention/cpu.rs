//! The CPU reference of the attention passes, one batch (one head) at a time, written with
//! GEMMs: unlike on the GPU, the scores S = scale·Q·Kᵀ + mask of a batch are materialized.
//!
//! Query rows go in blocks, and a block multiplies only the keys its last row may see: with
//! the causal mask, blocks of [`CAUSAL_ROW_BLOCK`] rows skip most of the hidden triangle (at
//! T = 64, 5/8 of the products are computed); without it one block takes every row. The
//! gradient pass computes each head's P and dS once and dq, dk and dv from them, where the GPU
//! runs a kernel per gradient, each recomputing P from the rows' statistics. Packed heads are
//! gathered one head at a time into rows of their own, which stay in cache, and computed the
//! same way (`run_packed`).

use super::geometry::{DropoutDraw, Geom, with_mask};
use super::{Attention, Pass};
use crate::backend::cpu::{Gemm, Mat, gemm, softmax_in_place};
use crate::backend::cpu_pool;
use rayon::prelude::*;
use std::ops::Range;

/// Query rows per block with the causal mask: small enough that a block's products skip most
/// of the keys hidden from it, large enough for the GEMM kernels' 4-row tiles.
const CAUSAL_ROW_BLOCK: usize = 16;

/// A node's inputs as the reference reads them.
pub(super) struct Inputs<'a, T> {
    pub q: &'a [T],
    pub k: &'a [T],
    pub v: &'a [T],
    pub lengths: Option<&'a [i32]>,
    pub mask: Option<&'a [T]>,
    /// The pass's own inputs: none forward, (dO, O) for the gradients.
    pub rest: Vec<&'a [T]>,
}

impl<'a, T> Inputs<'a, T> {
    /// Batch `b`'s operands, cut from the inputs.
    fn head(&self, g: &Geom, b: usize) -> Head<'a, T> {
        let (tq, tk, d, dv) = (g.tq, g.tk, g.d, g.dv);
        let own = |k: usize, len: usize| self.rest.get(k).map_or(&[][..], |x| &x[b * len..][..len]);
        Head {
            q: &self.q[b * tq * d..][..tq * d],
            k: &self.k[b * tk * d..][..tk * d],
            v: &self.v[b * tk * dv..][..tk * dv],
            dout: own(0, tq * dv),
            o: own(1, tq * dv),
        }
    }
}

/// One batch entry's (one head's) operands, each contiguous: q (tq×d), k (tk×d), v (tk×dv),
/// and for the gradients dO and O (tq×dv; empty forward).
struct Head<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    dout: &'a [T],
    o: &'a [T],
}

/// The blocks of query rows of batch `b`, each with the keys its rows may see (a prefix).
fn blocks(g: &Geom, limit: usize) -> impl Iterator<Item = (Range<usize>, usize)> + '_ {
    let rows = if g.causal { CAUSAL_ROW_BLOCK } else { g.tq.max(1) };
    (0..g.tq).step_by(rows).map(move |r0| {
        let r1 = (r0 + rows).min(g.tq);
        (r0..r1, g.visible_keys(r1, limit))
    })
}

/// `data` cut into `batch` consecutive slices of `len` elements (empty ones when `len` is 0).
fn per_batch<T>(data: &mut [T], len: usize, batch: usize) -> Vec<&mut [T]> {
    if len == 0 {
        return (0..batch).map(|_| <&mut [T]>::default()).collect();
    }
    data.chunks_mut(len).collect()
}

impl Attention {
    /// The pass's output for every batch.
    pub(super) fn run<T: Gemm + Send + Sync>(&self, g: &Geom, x: &Inputs<T>) -> Vec<T> {
        let (tq, tk) = (g.tq, g.tk);
        match self.pass {
            Pass::Forward => {
                let mut out = cpu_pool::for_overwrite::<T>(g.batch * tq * g.dv);
                let outs = per_batch(&mut out, tq * g.dv, g.batch);
                outs.into_par_iter().enumerate().for_each(|(b, o)| self.forward(g, x, b, &x.head(g, b), o));
                out
            }
            Pass::Grad => {
                // dk of every batch, then dv of every batch, then dq of every batch
                let mut out = cpu_pool::for_overwrite::<T>(g.batch * (tq * g.d + tk * (g.d + g.dv)));
                let (dk, rest) = out.split_at_mut(g.batch * tk * g.d);
                let (dv, dq) = rest.split_at_mut(g.batch * tk * g.dv);
                let dq = per_batch(dq, tq * g.d, g.batch);
                let dk = per_batch(dk, tk * g.d, g.batch);
                let dv = per_batch(dv, tk * g.dv, g.batch);
                let each = dq.into_par_iter().zip(dk).zip(dv).enumerate();
                each.for_each(|(b, ((dq, dk), dv))| self.grads(g, x, b, &x.head(g, b), dq, dk, dv));
                out
            }
        }
    }

    /// The pass's output for heads packed side by side: `qkv` (…, T, 3·C) = [q | k | v] of
    /// `heads` heads each and, for the gradients, `rest` = (dO, O), each (…, T, C). Each
    /// sequence's heads are gathered one at a time into rows of their own (a few KiB, which
    /// stay in cache), computed as split heads are, and their results written into the packed
    /// layout: forward O (…, T, C), backward [dq | dk | dv] in qkv's layout. The sequences
    /// run in parallel.
    pub(super) fn run_packed<T: Gemm + Send + Sync>(
        &self,
        g: &Geom,
        heads: usize,
        qkv: &[T],
        rest: &[&[T]],
    ) -> Vec<T> {
        let (t, d) = (g.tq, g.d);
        let width = heads * d;
        // rows of head h in block `part` (q, k, v; or dq, dk, dv) of a sequence (T, parts·C)
        let at = |i: usize, parts: usize, part: usize, h: usize| (i * parts + part) * width + h * d;
        let gather = |seq: &[T], parts: usize, part: usize, h: usize| -> Vec<T> {
            let mut rows = vec![T::ZERO; t * d];
            for (i, row) in rows.chunks_exact_mut(d).enumerate() {
                row.copy_from_slice(&seq[at(i, parts, part, h)..][..d]);
            }
            rows
        };
        let scatter = |rows: &[T], seq: &mut [T], parts: usize, part: usize, h: usize| {
            for i in 0..t {
                seq[at(i, parts, part, h)..][..d].copy_from_slice(&rows[i * d..][..d]);
            }
        };
        let parts = match self.pass {
            Pass::Forward => 1,
            Pass::Grad => 3,
        };
        let mut out = cpu_pool::for_overwrite::<T>(g.batch / heads.max(1) * t * parts * width);
        if out.is_empty() {
            return out;
        }
        // no key lengths, no mask
        let options = Inputs { q: &[], k: &[], v: &[], lengths: None, mask: None, rest: vec![] };
        out.par_chunks_mut(t * parts * width).enumerate().for_each(|(n, out)| {
            let seq = &qkv[n * t * 3 * width..][..t * 3 * width];
            for h in 0..heads {
                let b = n * heads + h;
                let (q, k, v) = (gather(seq, 3, 0, h), gather(seq, 3, 1, h), gather(seq, 3, 2, h));
                match self.pass {
                    Pass::Forward => {
                        let mut o = vec![T::ZERO; t * d];
                        let head = Head { q: &q, k: &k, v: &v, dout: &[], o: &[] };
                        self.forward(g, &options, b, &head, &mut o);
                        scatter(&o, out, 1, 0, h);
                    }
                    Pass::Grad => {
                        let own = |x: &[T]| gather(&x[n * t * width..][..t * width], 1, 0, h);
                        let (dout, o) = (own(rest[0]), own(rest[1]));
                        let head = Head { q: &q, k: &k, v: &v, dout: &dout, o: &o };
                        let mut grads = [vec![T::ZERO; t * d], vec![T::ZERO; t * d], vec![T::ZERO; t * d]];
                        let [dq, dk, dv] = &mut grads;
                        self.grads(g, &options, b, &head, dq, dk, dv);
                        for (part, grad) in grads.iter().enumerate() {
                            scatter(grad, out, 3, part, h);
                        }
                    }
                }
            }
        });
        out
    }

    /// Batch `b`'s output O = P̃·V into `out` (`x` for its key lengths and mask).
    fn forward<T: Gemm>(&self, g: &Geom, x: &Inputs<T>, b: usize, head: &Head<T>, out: &mut [T]) {
        let (tk, dv) = (g.tk, g.dv);
        let limit = g.key_limit(b, x.lengths);
        let v = head.v;
        let p = weights(g, b, x, head, limit);
        let dropped = dropped(g, b, limit, &p);
        let pd: &[T] = dropped.as_deref().unwrap_or(&p);
        for (rows, keys) in blocks(g, limit) {
            // O[rows] = P̃[rows, ..keys] (rows×keys) · V[..keys] (keys×dv)
            let (r0, n) = (rows.start, rows.len());
            let pd = Mat { data: &pd[r0 * tk..], row: tk, col: 1 };
            gemm(n, keys, dv, pd, Mat { data: v, row: dv, col: 1 }, T::ZERO, &mut out[r0 * dv..], dv);
        }
    }

    /// Batch `b`'s gradients into `dq`, `dk` and `dv_out` (`x` for its key lengths and mask).
    #[allow(clippy::too_many_arguments)]
    fn grads<T: Gemm>(
        &self,
        g: &Geom,
        x: &Inputs<T>,
        b: usize,
        head: &Head<T>,
        dq: &mut [T],
        dk: &mut [T],
        dv_out: &mut [T],
    ) {
        let (tq, tk, d, dv) = (g.tq, g.tk, g.d, g.dv);
        let (q, k, v, dout, o) = (head.q, head.k, head.v, head.dout, head.o);
        let limit = g.key_limit(b, x.lengths);
        // P, the weights after dropout P̃ = P∘M, and δ = dO·O per query row
        let p = weights(g, b, x, head, limit);
        let dropped = dropped(g, b, limit, &p);
        let pd: &[T] = dropped.as_deref().unwrap_or(&p);
        let deltas: Vec<T> = dout
            .chunks(dv.max(1))
            .zip(o.chunks(dv.max(1)))
            .take(tq)
            .map(|(dout, o)| T::of(dout.iter().zip(o).map(|(a, b)| a.to_f64() * b.to_f64()).sum()))
            .collect();
        let ds = score_grads(g, limit, dout, &transposed(v, tk, dv), &p, pd, &deltas);
        // dK = dSᵀ (tk×tq) · Q (tq×d) and dV = P̃ᵀ (tk×tq) · dO (tq×dv), summed over the blocks:
        // the rows of a block contribute to the keys they see
        dk.fill(T::ZERO);
        dv_out.fill(T::ZERO);
        for (rows, keys) in blocks(g, limit) {
            let (r0, n) = (rows.start, rows.len());
            // dQ[rows] = dS[rows, ..keys] (rows×keys) · K[..keys] (keys×d)
            let dsb = Mat { data: &ds[r0 * tk..], row: tk, col: 1 };
            gemm(n, keys, d, dsb, Mat { data: k, row: d, col: 1 }, T::ZERO, &mut dq[r0 * d..], d);
            let dst = Mat { data: &ds[r0 * tk..], row: 1, col: tk };
            gemm(keys, n, d, dst, Mat { data: &q[r0 * d..], row: d, col: 1 }, T::ONE, dk, d);
            let pdt = Mat { data: &pd[r0 * tk..], row: 1, col: tk };
            let doutb = Mat { data: &dout[r0 * dv..], row: dv, col: 1 };
            gemm(keys, n, dv, pdt, doutb, T::ONE, dv_out, dv);
        }
    }
}

/// The weights P (tq×tk) of batch `b`, zero where hidden, block by block (see [`blocks`]):
/// P = softmax(scale · Q·Kᵀ + mask) over each row's visible keys, a row that sees no key all
/// 0. Keys at or past `limit` (the key length) are hidden.
fn weights<T: Gemm>(g: &Geom, b: usize, x: &Inputs<T>, head: &Head<T>, limit: usize) -> Vec<T> {
    let (tq, tk, d) = (g.tq, g.tk, g.d);
    let q = head.q;
    let kt = transposed(head.k, tk, d);
    let scale = T::of(g.scale);
    let mut p = vec![T::ZERO; tq * tk];
    for (rows, keys) in blocks(g, limit) {
        if keys == 0 {
            continue; // no row of the block sees a key: its weights stay 0
        }
        // S[rows, ..keys] = Q[rows] (rows×d) · Kᵀ[.., ..keys] (d×keys)
        let r0 = rows.start;
        let (qb, kt) = (Mat { data: &q[r0 * d..], row: d, col: 1 }, Mat { data: &kt[..], row: tk, col: 1 });
        gemm(rows.len(), d, keys, qb, kt, T::ZERO, &mut p[r0 * tk..], tk);
        for i in rows {
            let row = &mut p[i * tk..][..keys];
            let (seen, hidden) = row.split_at_mut(g.visible_keys(i + 1, limit));
            hidden.fill(T::NEG_INFINITY);
            seen.iter_mut().for_each(|s| *s *= scale);
            if let (Some(index), Some(mask)) = (g.mask, x.mask) {
                let start = index.row_start(b, i);
                for (j, s) in seen.iter_mut().enumerate() {
                    *s = with_mask(*s, mask[start + j * index.col_stride]);
                }
            }
            let (m, _) = softmax_in_place(row);
            if m == T::NEG_INFINITY {
                // every key hidden: the row's weights are 0
                row.fill(T::ZERO);
            }
        }
    }
    p
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

/// scale·dS (tq×tk) with dS = P∘(M∘dP̃ − δ) = P̃∘dP̃ − P·δ, where dP̃ = dO·Vᵀ and δ = dO·O per
/// query row (see the module doc), block by block over the keys each block sees; the other
/// entries are 0. `vt` is Vᵀ (dv×tk).
fn score_grads<T: Gemm>(
    g: &Geom,
    limit: usize,
    dout: &[T],
    vt: &[T],
    p: &[T],
    pd: &[T],
    deltas: &[T],
) -> Vec<T> {
    let (tk, dv) = (g.tk, g.dv);
    let mut ds = vec![T::ZERO; g.tq * tk];
    let scale = T::of(g.scale);
    for (rows, keys) in blocks(g, limit) {
        // dP̃[rows, ..keys] = dO[rows] (rows×dv) · Vᵀ[.., ..keys] (dv×keys), then dS in place
        let r0 = rows.start;
        let (dob, vt) = (Mat { data: &dout[r0 * dv..], row: dv, col: 1 }, Mat { data: vt, row: tk, col: 1 });
        gemm(rows.len(), dv, keys, dob, vt, T::ZERO, &mut ds[r0 * tk..], tk);
        for i in rows {
            let delta = deltas[i];
            let (row, prow, pdrow) = (&mut ds[i * tk..][..keys], &p[i * tk..][..keys], &pd[i * tk..][..keys]);
            for ((x, &pv), &pdv) in row.iter_mut().zip(prow).zip(pdrow) {
                *x = (pdv * *x - pv * delta) * scale;
            }
        }
    }
    ds
}

/// The transpose (cols×rows) of a row-major rows×cols matrix: the score products then read
/// their B operand by rows, which the skinny GEMM kernels stream (short dot products of K's
/// rows would be mostly horizontal sums).
fn transposed<T: Gemm>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::ZERO; rows * cols];
    for (i, row) in x.chunks_exact(cols.max(1)).take(rows).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
}
