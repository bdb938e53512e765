//! The CPU reference of the attention passes, one batch (one head) at a time, written with
//! the register-tile products of `backend::cpu_tiles`: unlike on the GPU, the scores
//! S = scale·Q·Kᵀ + mask of a batch are materialized.
//!
//! Query rows go in blocks, and a block multiplies only the keys its last row may see: with
//! the causal mask, blocks of [`CAUSAL_ROW_BLOCK`] rows skip most of the hidden triangle (at
//! T = 64, 5/8 of the products are computed); without it one block takes every row. The
//! gradient pass computes each head's P and dS once and dq, dk and dv from them, where the GPU
//! runs a kernel per gradient, each recomputing P from the rows' statistics. A head is read
//! and written through row strides, so packed heads are computed where they lie (`run_packed`).
//!
//! The rows of P and dS are padded to whole vectors ([`LANES`]), −∞ before the softmax and 0
//! after it, so the row passes run on full vectors. Each pass over a head is compiled for the
//! widest vectors (`widest!`) with its loops inlined: a closure or a call compiled apart would
//! lose the fused multiply-add (a library call) and the vector width.

use super::geometry::{DropoutDraw, Geom, with_mask};
use super::{Attention, Pass};
use crate::backend::cpu::Gemm;
use crate::backend::cpu_pool;
use crate::backend::cpu_tiles::{LANES, Strided, padded, product};
use crate::backend::cpu_vector::widest;
use crate::dtype::Float;
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

/// Query rows per block with the causal mask: small enough that a block's products skip most
/// of the keys hidden from it, a whole number of the tile products' 4-row tiles.
const CAUSAL_ROW_BLOCK: usize = 8;

/// Keys per block of the key and value gradients, each block summed over the query rows that
/// see it.
const KEY_BLOCK: usize = 16;

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
        let rows = |x: &'a [T], len: usize, stride: usize| Rows { data: &x[b * len..][..len], stride };
        let own =
            |k: usize| self.rest.get(k).map_or(Rows { data: &[][..], stride: dv }, |x| rows(x, tq * dv, dv));
        Head {
            q: rows(self.q, tq * d, d),
            k: rows(self.k, tk * d, d),
            v: rows(self.v, tk * dv, dv),
            dout: own(0),
            o: own(1),
        }
    }
}

/// A matrix's rows in a slice: row i starts at `data[i·stride]`.
#[derive(Clone, Copy)]
struct Rows<'a, T> {
    data: &'a [T],
    stride: usize,
}

impl<'a, T> Rows<'a, T> {
    /// Row `i`'s first `cols` elements.
    fn row(&self, i: usize, cols: usize) -> &'a [T] {
        &self.data[i * self.stride..][..cols]
    }

    /// The rows as the A operand of a tile product, from row `i` on.
    fn starting_at(&self, i: usize) -> Strided<'a, T> {
        Strided { data: &self.data[i * self.stride..], row: self.stride, col: 1 }
    }
}

/// One batch entry's (one head's) operands: q (tq×d), k (tk×d), v (tk×dv), and for the
/// gradients dO and O (tq×dv; empty forward), each through its row stride: the head's own
/// rows, or its columns of packed heads.
struct Head<'a, T> {
    q: Rows<'a, T>,
    k: Rows<'a, T>,
    v: Rows<'a, T>,
    dout: Rows<'a, T>,
    o: Rows<'a, T>,
}

/// Where one head's output goes, row `i` at `data[i·stride]`: O (tq×dv) forward; dq (tq×d),
/// dk (tk×d) and dv (tk×dv) for the gradients.
enum Out<'o, T> {
    /// Forward: O.
    Values { data: &'o mut [T], stride: usize },
    /// The gradients, each in a slice of its own with contiguous rows (split heads).
    Apart([&'o mut [T]; 3]),
    /// The gradients interleaved in one sequence's rows of [dq | dk | dv] (packed heads):
    /// where each one's first row starts, and the rows' stride.
    Interleaved { data: &'o mut [T], starts: [usize; 3], stride: usize },
}

/// The gradients of [`Out`], in its order.
#[derive(Clone, Copy)]
enum Grad {
    Q = 0,
    K = 1,
    V = 2,
}

impl<T> Out<'_, T> {
    /// Gradient `which`'s rows of `cols` elements, from its first row on, and their stride.
    fn grad(&mut self, which: Grad, cols: usize) -> (&mut [T], usize) {
        match self {
            Out::Apart(parts) => (&mut *parts[which as usize], cols),
            Out::Interleaved { data, starts, stride } => (&mut data[starts[which as usize]..], *stride),
            Out::Values { .. } => unreachable!("a forward output holds no gradient"),
        }
    }
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
                outs.into_par_iter().enumerate().for_each(|(b, o)| {
                    forward(g, x, b, &x.head(g, b), &mut Out::Values { data: o, stride: g.dv })
                });
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
                each.for_each(|(b, ((dq, dk), dv))| {
                    grads(g, x, b, &x.head(g, b), &mut Out::Apart([dq, dk, dv]))
                });
                out
            }
        }
    }

    /// The pass's output for heads packed side by side: `qkv` (…, T, 3·C) = [q | k | v] of
    /// `heads` heads each and, for the gradients, `rest` = (dO, O), each (…, T, C). Each head
    /// is read where it lies (its columns of the sequence's rows) and its results written into
    /// the packed layout: forward O (…, T, C), backward [dq | dk | dv] in qkv's layout. The
    /// sequences run in parallel, the heads of one in turn.
    pub(super) fn run_packed<T: Gemm + Send + Sync>(
        &self,
        g: &Geom,
        heads: usize,
        qkv: &[T],
        rest: &[&[T]],
    ) -> Vec<T> {
        let (t, d) = (g.tq, g.d);
        let width = heads * d;
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
                // head h's columns of the sequence's q, k or v
                let part = |part: usize| Rows { data: &seq[part * width + h * d..], stride: 3 * width };
                let own = |k: usize| {
                    let x: &[T] = rest.get(k).map_or(&[][..], |x| &x[n * t * width..][..t * width]);
                    Rows { data: x.get(h * d..).unwrap_or_default(), stride: width }
                };
                let head = Head { q: part(0), k: part(1), v: part(2), dout: own(0), o: own(1) };
                match self.pass {
                    Pass::Forward => {
                        let o = Out::Values { data: &mut out[h * d..], stride: width };
                        forward(g, &options, b, &head, &mut { o });
                    }
                    Pass::Grad => {
                        let starts = [h * d, width + h * d, 2 * width + h * d];
                        grads(
                            g,
                            &options,
                            b,
                            &head,
                            &mut Out::Interleaved { data: out, starts, stride: 3 * width },
                        );
                    }
                }
            }
        });
        out
    }
}

widest! {
    /// Batch `b`'s output O = P̃·V into `out` (`x` for its key lengths and mask).
    fn forward<T: Float>(g: &Geom, x: &Inputs<T>, b: usize, head: &Head<T>, out: &mut Out<T>) = forward_any
}

widest! {
    /// Batch `b`'s gradients dq, dk and dv into `out` (`x` for its key lengths and mask).
    fn grads<T: Float>(g: &Geom, x: &Inputs<T>, b: usize, head: &Head<T>, out: &mut Out<T>) = grads_any
}

#[inline(always)]
fn forward_any<T: Float>(g: &Geom, x: &Inputs<T>, b: usize, head: &Head<T>, out: &mut Out<T>) {
    let Out::Values { data: out, stride: out_row } = out else { unreachable!("forward writes values") };
    let (tk, dv) = (g.tk, g.dv);
    let stride = padded(tk);
    let limit = g.key_limit(b, x.lengths);
    let p = weights(g, b, x, head, limit);
    let dropped = dropped(g, b, limit, &p);
    let pd: &[T] = dropped.as_deref().unwrap_or(&p);
    let (v, v_row) = padded_rows(head.v, tk, dv);
    for (rows, keys) in blocks(g, limit) {
        // O[rows] = P̃[rows, ..keys] (rows×keys) · V[..keys] (keys×dv)
        let r0 = rows.start;
        let pd = Strided { data: &pd[r0 * stride..], row: stride, col: 1 };
        product(rows.len(), keys, dv, &pd, &v, v_row, &mut out[r0 * *out_row..], *out_row);
    }
}

#[inline(always)]
fn grads_any<T: Float>(g: &Geom, x: &Inputs<T>, b: usize, head: &Head<T>, out: &mut Out<T>) {
    let (tq, tk, d, dv) = (g.tq, g.tk, g.d, g.dv);
    let limit = g.key_limit(b, x.lengths);
    // P, the weights after dropout P̃ = P∘M, and δ = dO·O per query row
    let p = weights(g, b, x, head, limit);
    let dropped = dropped(g, b, limit, &p);
    let pd: &[T] = dropped.as_deref().unwrap_or(&p);
    // a loop, not an iterator's closure: that would be compiled apart, without FMA
    let mut deltas = vec![T::ZERO; tq];
    for (i, delta) in deltas.iter_mut().enumerate() {
        *delta = dot(head.dout.row(i, dv), head.o.row(i, dv));
    }
    let ds = score_grads(g, limit, head.dout, &transposed_padded(head.v, tk, dv), &p, pd, &deltas);
    let (k, k_row) = padded_rows(head.k, tk, d);
    let (q, q_row) = padded_rows(head.q, tq, d);
    let (dout, dout_row) = padded_rows(head.dout, tq, dv);
    let stride = padded(tk);
    for (rows, keys) in blocks(g, limit) {
        // dQ[rows] = dS[rows, ..keys] (rows×keys) · K[..keys] (keys×d)
        let (r0, n) = (rows.start, rows.len());
        let dsb = Strided { data: &ds[r0 * stride..], row: stride, col: 1 };
        let (dq, dq_row) = out.grad(Grad::Q, d);
        product(n, keys, d, &dsb, &k, k_row, &mut dq[r0 * dq_row..], dq_row);
    }
    // by blocks of keys, each over the rows that may see it (all, or with the causal mask
    // those from the block's first key on; dS and P̃ are 0 where a row does not see a key):
    // dK[keys] = dS[rows, keys]ᵀ (keys×rows) · Q[rows] (rows×d), dV[keys] = P̃[rows, keys]ᵀ · dO[rows]
    for j0 in (0..tk).step_by(KEY_BLOCK) {
        let keys = KEY_BLOCK.min(tk - j0);
        // with the causal mask, keys from tq on are seen by no row: their products have k = 0
        // and write zeros, and their operands are empty
        let r0 = if g.causal { j0.min(tq) } else { 0 };
        let at = r0 * stride + j0;
        let dst = Strided { data: tail(&ds, at), row: 1, col: stride };
        let (dk, dk_row) = out.grad(Grad::K, d);
        product(keys, tq - r0, d, &dst, tail(&q, r0 * q_row), q_row, &mut dk[j0 * dk_row..], dk_row);
        let pdt = Strided { data: tail(pd, at), row: 1, col: stride };
        let (dv_out, dv_row) = out.grad(Grad::V, dv);
        product(
            keys,
            tq - r0,
            dv,
            &pdt,
            tail(&dout, r0 * dout_row),
            dout_row,
            &mut dv_out[j0 * dv_row..],
            dv_row,
        );
    }
}

#[inline(always)]
fn weights<T: Float>(g: &Geom, b: usize, x: &Inputs<T>, head: &Head<T>, limit: usize) -> Vec<T> {
    let (tq, tk, d) = (g.tq, g.tk, g.d);
    let kt = transposed_padded(head.k, tk, d);
    let scale = T::of(g.scale);
    let stride = padded(tk);
    let mut p = vec![T::ZERO; tq * stride];
    for (rows, keys) in blocks(g, limit) {
        if keys == 0 {
            continue; // no row of the block sees a key: its weights stay 0
        }
        // S[rows, ..keys] = Q[rows] (rows×d) · Kᵀ[.., ..keys] (d×keys)
        let r0 = rows.start;
        product(rows.len(), d, keys, &head.q.starting_at(r0), &kt, stride, &mut p[r0 * stride..], stride);
        for i in rows {
            // whole vectors: the keys past those the row sees are −∞, and weigh exactly 0
            let row = &mut p[i * stride..][..padded(keys)];
            let seen = g.visible_keys(i + 1, limit);
            let mut scale = scale;
            if let (Some(index), Some(mask)) = (g.mask, x.mask) {
                // the additive mask on the scaled scores, which the softmax then takes as they are
                let start = index.row_start(b, i);
                for (j, s) in row[..seen].iter_mut().enumerate() {
                    *s = with_mask(*s * scale, mask[start + j * index.col_stride]);
                }
                scale = T::ONE;
            }
            scaled_softmax(row, seen, scale);
        }
    }
    p
}

/// A row of scores turned into weights in place: softmax(scale·s) over its first `seen`
/// elements, 0 past them (a row that sees none, or whose scores are all −∞, is all 0). The
/// row is whole vectors long ([`LANES`] elements each), so every pass runs on full vectors:
/// one scales, hides and finds the largest score, one exponentiates and sums, one normalizes.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indexed lanes vectorize, as in `backend::cpu_tiles`
fn scaled_softmax<T: Float>(row: &mut [T], seen: usize, scale: T) {
    let mut top = [T::NEG_INFINITY; LANES];
    for (c, chunk) in row.chunks_exact_mut(LANES).enumerate() {
        for l in 0..LANES {
            let x = if c * LANES + l < seen { chunk[l] * scale } else { T::NEG_INFINITY };
            chunk[l] = x;
            // NaN is passed over here and spreads through exp and the sum instead
            top[l] = if x > top[l] { x } else { top[l] };
        }
    }
    let m = reduce_lanes(top, |a, b| if b > a { b } else { a });
    if m == T::NEG_INFINITY {
        row.fill(T::ZERO);
        return;
    }
    let mut sums = [T::ZERO; LANES];
    for chunk in row.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            let e = (chunk[l] - m).exp_fast();
            chunk[l] = e;
            sums[l] += e;
        }
    }
    let inv = T::ONE / reduce_lanes(sums, |a, b| a + b);
    row.iter_mut().for_each(|x| *x *= inv);
}

/// The dot product of two rows, over [`LANES`] partial sums.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut sums = [T::ZERO; LANES];
    let (a_whole, b_whole) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (l, (a, b)) in a_whole.remainder().iter().zip(b_whole.remainder()).enumerate() {
        sums[l] = *a * *b;
    }
    for (a, b) in a_whole.zip(b_whole) {
        for l in 0..LANES {
            sums[l] = a[l].fused_mul_add(b[l], sums[l]);
        }
    }
    reduce_lanes(sums, |a, b| a + b)
}

/// `lanes` reduced by `f` in a tree (halves combined lane by lane), which vectorizes: a chain
/// through the lanes in order would wait on each step.
#[inline(always)]
fn reduce_lanes<T: Float>(mut lanes: [T; LANES], f: impl Fn(T, T) -> T) -> T {
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            lanes[l] = f(lanes[l], lanes[l + width]);
        }
        width /= 2;
    }
    lanes[0]
}

/// The weights after dropout, P̃ = P∘M with M = 1/(1 − p) where the draw keeps a weight and 0
/// where it drops it (see [`DropoutDraw`]), or `None` without dropout. Only the keys a row may
/// see (below `limit`, the key length, and the causal bound) are drawn: the others are 0.
fn dropped<T: Float>(g: &Geom, b: usize, limit: usize, p: &[T]) -> Option<Vec<T>> {
    let draw = g.dropout?;
    let stride = DropoutDraw::row_stride(g.tk);
    let scale = T::of(f64::from(draw.scale()));
    let mut uniform = vec![0f32; g.tk];
    let mut out = p.to_vec();
    for (i, row) in out.chunks_mut(padded(g.tk).max(1)).enumerate() {
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
/// entries are 0. `vt` is Vᵀ (dv×tk), its rows padded (see [`transposed_padded`]).
#[inline(always)]
fn score_grads<T: Float>(
    g: &Geom,
    limit: usize,
    dout: Rows<T>,
    vt: &[T],
    p: &[T],
    pd: &[T],
    deltas: &[T],
) -> Vec<T> {
    let stride = padded(g.tk);
    let mut ds = vec![T::ZERO; g.tq * stride];
    let scale = T::of(g.scale);
    for (rows, keys) in blocks(g, limit) {
        // dP̃[rows, ..keys] = dO[rows] (rows×dv) · Vᵀ[.., ..keys] (dv×keys), then dS in place
        let r0 = rows.start;
        product(rows.len(), g.dv, keys, &dout.starting_at(r0), vt, stride, &mut ds[r0 * stride..], stride);
        for i in rows {
            let delta = deltas[i];
            let at = i * stride;
            let (row, prow, pdrow) = (&mut ds[at..][..keys], &p[at..][..keys], &pd[at..][..keys]);
            for ((x, &pv), &pdv) in row.iter_mut().zip(prow).zip(pdrow) {
                *x = (pdv * *x - pv * delta) * scale;
            }
        }
    }
    ds
}

/// `x` from element `at` on, empty past its end.
#[inline(always)]
fn tail<T>(x: &[T], at: usize) -> &[T] {
    x.get(at..).unwrap_or_default()
}

/// The transpose (cols×rows) of a rows×cols matrix, each of its rows padded with zeros to
/// [`padded`]`(rows)`: the score products read it as their B (see `backend::cpu_tiles`).
#[inline(always)]
fn transposed_padded<T: Float>(x: Rows<T>, rows: usize, cols: usize) -> Vec<T> {
    let stride = padded(rows);
    let mut t = vec![T::ZERO; cols * stride];
    if rows > 0 {
        assert!(x.data.len() >= (rows - 1) * x.stride + cols, "transposed_padded: rows out of bounds");
    }
    // column j of x is row j of t: read down the column by steps, with no index to check
    for (j, out) in t.chunks_exact_mut(stride.max(1)).enumerate() {
        for (out, &v) in out.iter_mut().zip(x.data[j..].iter().step_by(x.stride.max(1))).take(rows) {
            *out = v;
        }
    }
    t
}

/// A rows×cols matrix as the tile products read their B, and its row stride: the matrix where
/// it lies when each row can be read [`padded`]`(cols)` elements wide (past `cols`, what
/// follows it is never stored), else a copy with its rows padded with zeros.
#[inline(always)]
fn padded_rows<T: Float>(x: Rows<'_, T>, rows: usize, cols: usize) -> (Cow<'_, [T]>, usize) {
    let wide = padded(cols);
    if rows == 0 || (x.stride >= wide && x.data.len() >= (rows - 1) * x.stride + wide) {
        return (Cow::Borrowed(x.data), x.stride);
    }
    let mut out = vec![T::ZERO; rows * wide];
    for (i, out) in out.chunks_exact_mut(wide.max(1)).enumerate() {
        out[..cols].copy_from_slice(x.row(i, cols));
    }
    (Cow::Owned(out), wide)
}
