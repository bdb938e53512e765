//! The CPU reference of the cell ops: one parallel loop over the batch rows; each row's gates
//! are computed in one pass over its hidden units, straight from the inputs into the output,
//! with no allocation per element or per row.

use super::CellKind;
use crate::backend::cpu::{CpuData, CpuStorage};
use crate::backend::{cpu_pool, cpu_vector};
use crate::dtype::Float;
use rayon::prelude::*;

/// Elements per parallel task: rows are grouped so that a task is worth scheduling.
const TASK_ELEMENTS: usize = 16384;

/// The gate nonlinearities, per float type: from the library's `tanh` and `exp` in f64 (the
/// gradient check), and in f32 (every training step) from branch-free approximations within a
/// few ulps, which the compiler vectorizes.
trait Gate: Float {
    /// tanh x.
    fn tanh_gate(self) -> Self;

    /// (σ(x), σ(−x)) = (σ(x), 1 − σ(x)), both without cancellation.
    #[inline(always)]
    fn sigmoid_pair(self) -> (Self, Self) {
        let e = (-self.abs()).exp_fast();
        let big = Self::ONE / (Self::ONE + e);
        let small = e * big;
        if self >= Self::ZERO { (big, small) } else { (small, big) }
    }

    /// σ(x).
    #[inline(always)]
    fn sigmoid(self) -> Self {
        self.sigmoid_pair().0
    }

    /// σ′(x) = σ(x)·σ(−x).
    #[inline(always)]
    fn sigmoid_slope(self) -> Self {
        let (s, c) = self.sigmoid_pair();
        s * c
    }

    /// tanh′(x) = 1 − tanh²x = 4e/(1 + e)² with e = e^(−2|x|), without cancellation.
    #[inline(always)]
    fn tanh_slope(self) -> Self {
        let e = (Self::of(-2.0) * self.abs()).exp_fast();
        let s = Self::ONE + e;
        Self::of(4.0) * e / (s * s)
    }
}

impl Gate for f64 {
    fn tanh_gate(self) -> f64 {
        self.tanh()
    }
}

impl Gate for f32 {
    /// Eigen's rational approximation (`generic_fast_tanh_float`): within 4e-7 relative of
    /// tanh; beyond ±7.9 its value at ±7.9, within an ulp of ±1 (where tanh is within 3 ulps).
    #[inline(always)]
    fn tanh_gate(self) -> f32 {
        const CLAMP: f32 = 7.905_311;
        // clamped with plain comparisons, which vectorize (and keep NaN)
        let x = if self > CLAMP { CLAMP } else { self };
        let x = if x < -CLAMP { -CLAMP } else { x };
        let x2 = x * x;
        let p = -2.760_768_5e-16f32;
        let p = p * x2 + 2.000_188e-13;
        let p = p * x2 - 8.604_672e-11;
        let p = p * x2 + 5.122_297e-8;
        let p = p * x2 + 1.485_722_4e-5;
        let p = p * x2 + 6.372_619e-4;
        let p = (p * x2 + 4.893_524_6e-3) * x;
        let q = 1.198_258_4e-6f32;
        let q = q * x2 + 1.185_347e-4;
        let q = q * x2 + 2.268_434_6e-3;
        let q = q * x2 + 4.893_525e-3;
        // tanh x = x to f32 precision for tiny x, where the ratio would round worse
        if self.abs() < 4e-4 { self } else { p / q }
    }
}

/// One cell node's sizes and attributes, and its lengths if any.
pub(super) struct Steps<'a> {
    pub kind: CellKind,
    pub batch: usize,
    pub hidden: usize,
    pub step: usize,
    pub lengths: Option<&'a [i32]>,
}

/// The inputs of one row, each sliced to that row.
struct Row<'a, T> {
    /// Its input projections at this step (G·H).
    x: &'a [T],
    /// Its recurrent term (G·H).
    r: &'a [T],
    /// Its previous h (H).
    h: &'a [T],
    /// Its previous c (H; LSTM only, empty otherwise).
    c: &'a [T],
    /// Its b_hn at this step (H; GRU with a hidden bias only, empty otherwise).
    bias: &'a [T],
}

impl<T> Row<'_, T> {
    /// Its b_hn, if the cell has one (a loop-invariant option, so the loops specialize on it).
    fn hidden_bias(&self, h: usize) -> Option<&[T]> {
        (!self.bias.is_empty()).then(|| &self.bias[..h])
    }
}

impl Steps<'_> {
    /// Whether row `b`'s sequence is still running at this step.
    fn active(&self, b: usize) -> bool {
        self.lengths.is_none_or(|l| (self.step as i64) < i64::from(l[b]))
    }

    /// Rows per parallel task.
    fn rows_per_task(&self) -> usize {
        (TASK_ELEMENTS / (self.kind.gates() * self.hidden).max(1)).max(1)
    }

    /// Row `b`'s inputs.
    fn row<'a, T: Float>(
        &self,
        b: usize,
        gx: &'a [T],
        gh: &'a [T],
        state: &'a [T],
        bias: Option<&'a [T]>,
    ) -> Row<'a, T> {
        let (h, w) = (self.hidden, self.kind.gates() * self.hidden);
        let at = self.step * self.batch + b;
        let n = self.batch * h;
        Row {
            x: &gx[at * w..(at + 1) * w],
            r: &gh[b * w..(b + 1) * w],
            h: &state[b * h..(b + 1) * h],
            c: if self.kind.has_cell_state() { &state[n + b * h..n + (b + 1) * h] } else { &[] },
            bias: bias.map_or(&[], |bias| &bias[at * h..(at + 1) * h]),
        }
    }

    /// The new state (see the module doc of `recurrent`).
    pub fn forward(
        &self,
        gx: &CpuStorage,
        gh: &CpuStorage,
        state: &CpuStorage,
        bias: Option<&CpuStorage>,
    ) -> CpuStorage {
        CpuStorage::new(match gx.data() {
            CpuData::F32(x) => CpuData::F32(self.forward_typed(
                x,
                gh.as_slice(),
                state.as_slice(),
                bias.map(|b| b.as_slice()),
            )),
            CpuData::F64(x) => CpuData::F64(self.forward_typed(
                x,
                gh.as_slice(),
                state.as_slice(),
                bias.map(|b| b.as_slice()),
            )),
            _ => unreachable!("dtypes are checked when recorded"),
        })
    }

    /// The packed gradients (see `Cell::packed_blocks`).
    pub fn backward(
        &self,
        gx: &CpuStorage,
        gh: &CpuStorage,
        state: &CpuStorage,
        bias: Option<&CpuStorage>,
        grad: &CpuStorage,
    ) -> CpuStorage {
        CpuStorage::new(match gx.data() {
            CpuData::F32(x) => CpuData::F32(self.backward_typed(
                x,
                gh.as_slice(),
                state.as_slice(),
                bias.map(|b| b.as_slice()),
                grad.as_slice(),
            )),
            CpuData::F64(x) => CpuData::F64(self.backward_typed(
                x,
                gh.as_slice(),
                state.as_slice(),
                bias.map(|b| b.as_slice()),
                grad.as_slice(),
            )),
            _ => unreachable!("dtypes are checked when recorded"),
        })
    }

    fn forward_typed<T: Gate>(&self, gx: &[T], gh: &[T], state: &[T], bias: Option<&[T]>) -> Vec<T> {
        let (h, n) = (self.hidden, self.batch * self.hidden);
        let mut out = cpu_pool::zeroed::<T>(state.len());
        if n == 0 {
            return out;
        }
        // out = [h'] or [h'; c']: row b's h' is chunk b of the first B·H elements, its c' chunk b
        // of the rest
        let (h_out, c_out) = out.split_at_mut(n);
        let c_rows = rows_of(c_out, h, self.batch);
        let rows = self.rows_per_task();
        h_out.par_chunks_mut(h).zip(c_rows).enumerate().with_min_len(rows).for_each(|(b, (ho, co))| {
            let row = self.row(b, gx, gh, state, bias);
            if !self.active(b) {
                ho.copy_from_slice(row.h);
                co.copy_from_slice(row.c);
                return;
            }
            forward_row_widest(self.kind, &row, ho, co);
        });
        out
    }

    fn backward_typed<T: Gate>(
        &self,
        gx: &[T],
        gh: &[T],
        state: &[T],
        bias: Option<&[T]>,
        grad: &[T],
    ) -> Vec<T> {
        let (h, n) = (self.hidden, self.batch * self.hidden);
        let kind = self.kind;
        let blocks = super::Cell::packed_blocks(kind);
        let mut out = cpu_pool::zeroed::<T>(blocks * n);
        if n == 0 {
            return out;
        }
        // [d gates (B, G·H) | GRU: d gh (B, G·H) | dh_prev (B, H) | LSTM: dc_prev, GRU: d b_hn
        // (B, H)]
        let gate_width = kind.gates() * h;
        let (d_gates, rest) = out.split_at_mut(self.batch * gate_width);
        let (d_gh, rest) = rest.split_at_mut(if kind == CellKind::Gru { self.batch * gate_width } else { 0 });
        let (dh_prev, last) = rest.split_at_mut(n);
        let (d_gh, last) = (rows_of(d_gh, gate_width, self.batch), rows_of(last, h, self.batch));
        let rows = self.rows_per_task();
        d_gates
            .par_chunks_mut(gate_width)
            .zip(d_gh)
            .zip(dh_prev.par_chunks_mut(h))
            .zip(last)
            .enumerate()
            .with_min_len(rows)
            .for_each(|(b, (((dg, d_gh), dhp), last))| {
                let row = self.row(b, gx, gh, state, bias);
                let dh = &grad[b * h..(b + 1) * h];
                if !self.active(b) {
                    // the state passed through: so does its gradient (the gates got none)
                    dhp.copy_from_slice(dh);
                    if kind == CellKind::Lstm {
                        last.copy_from_slice(&grad[n + b * h..n + (b + 1) * h]);
                    }
                    return;
                }
                // dc', the LSTM's second half of the state's gradient
                let dc = if kind == CellKind::Lstm { &grad[n + b * h..n + (b + 1) * h] } else { &[] };
                backward_row_widest(kind, &row, dh, dc, [dg, d_gh, dhp, last]);
            });
        out
    }
}

/// Row `row`'s new state (`ho`, and `co` for the LSTM) from its inputs.
#[inline(always)]
fn forward_row<T: Gate>(kind: CellKind, row: &Row<T>, ho: &mut [T], co: &mut [T]) {
    let h = ho.len();
    match kind {
        CellKind::Lstm => lstm_forward(h, row, ho, co),
        CellKind::Gru => gru_forward(h, row, ho),
        CellKind::RnnTanh => row.x.iter().zip(row.r).zip(ho).for_each(|((&x, &r), o)| {
            *o = (x + r).tanh_gate();
        }),
        CellKind::RnnRelu => row.x.iter().zip(row.r).zip(ho).for_each(|((&x, &r), o)| {
            let pre = x + r;
            *o = if pre > T::ZERO { pre } else { T::ZERO };
        }),
    }
}

cpu_vector::widest! {
    /// [`forward_row`] with the widest vectors the CPU has.
    fn forward_row_widest<T: Gate>(kind: CellKind, row: &Row<T>, ho: &mut [T], co: &mut [T]) = forward_row
}

/// Row `row`'s gradients from dh' (and dc', the LSTM's second half of `d_state`), into the
/// blocks `out` of its packed gradients (see `Cell::packed_blocks`).
#[inline(always)]
fn backward_row<T: Gate>(kind: CellKind, row: &Row<T>, dh: &[T], dc: &[T], out: [&mut [T]; 4]) {
    let h = dh.len();
    let [dg, d_gh, dhp, last] = out;
    match kind {
        CellKind::Lstm => lstm_backward(h, row, dh, dc, dg, last),
        CellKind::Gru => gru_backward(h, row, dh, [dg, d_gh, dhp, last]),
        CellKind::RnnTanh => {
            for (((d, &x), &r), &g) in dg.iter_mut().zip(row.x).zip(row.r).zip(dh) {
                *d = g * (x + r).tanh_slope();
            }
        }
        CellKind::RnnRelu => {
            for (((d, &x), &r), &g) in dg.iter_mut().zip(row.x).zip(row.r).zip(dh) {
                *d = if x + r > T::ZERO { g } else { T::ZERO };
            }
        }
    }
}

cpu_vector::widest! {
    /// [`backward_row`] with the widest vectors the CPU has.
    fn backward_row_widest<T: Gate>(kind: CellKind, row: &Row<T>, dh: &[T], dc: &[T], out: [&mut [T]; 4]) = backward_row
}

/// `block` cut into its `batch` rows of `width`: empty rows if the block is empty (a kind
/// without it).
fn rows_of<T>(block: &mut [T], width: usize, batch: usize) -> Vec<&mut [T]> {
    match block.is_empty() {
        true => (0..batch).map(|_| <&mut [T]>::default()).collect(),
        false => block.chunks_mut(width).collect(),
    }
}

/// The G blocks of H of a row of gates (each slice exactly `h` long, so that the loops over
/// them index without bounds checks and vectorize).
fn gates<const G: usize, T>(row: &[T], h: usize) -> [&[T]; G] {
    std::array::from_fn(|k| &row[k * h..(k + 1) * h])
}

/// c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c').
#[inline(always)]
fn lstm_forward<T: Gate>(h: usize, row: &Row<T>, ho: &mut [T], co: &mut [T]) {
    let ([xi, xf, xg, xo], [ri, rf, rg, ro]) = (gates(row.x, h), gates(row.r, h));
    let (c_prev, ho, co) = (&row.c[..h], &mut ho[..h], &mut co[..h]);
    for j in 0..h {
        let c =
            (xf[j] + rf[j]).sigmoid() * c_prev[j] + (xi[j] + ri[j]).sigmoid() * (xg[j] + rg[j]).tanh_gate();
        co[j] = c;
        ho[j] = (xo[j] + ro[j]).sigmoid() * c.tanh_gate();
    }
}

/// From dh' and dc' (the state's gradients): the gate gradients (4H) and dc_prev (H).
#[inline(always)]
fn lstm_backward<T: Gate>(h: usize, row: &Row<T>, dh: &[T], dc: &[T], d_gates: &mut [T], dc_prev: &mut [T]) {
    let ([xi, xf, xg, xo], [ri, rf, rg, ro]) = (gates(row.x, h), gates(row.r, h));
    let [di, df, dg, d_o] = gates_mut(d_gates, h);
    let (c_prev, dh, dc, dc_prev) = (&row.c[..h], &dh[..h], &dc[..h], &mut dc_prev[..h]);
    for j in 0..h {
        let (pi, pf, pg, po) = (xi[j] + ri[j], xf[j] + rf[j], xg[j] + rg[j], xo[j] + ro[j]);
        let (i, f, g) = (pi.sigmoid(), pf.sigmoid(), pg.tanh_gate());
        let c = f * c_prev[j] + i * g;
        let tanh_c = c.tanh_gate();
        // dc' also receives h' = o·tanh(c')'s share
        let dc = dc[j] + dh[j] * po.sigmoid() * c.tanh_slope();
        di[j] = dc * g * pi.sigmoid_slope();
        df[j] = dc * c_prev[j] * pf.sigmoid_slope();
        dg[j] = dc * i * pg.tanh_slope();
        d_o[j] = dh[j] * tanh_c * po.sigmoid_slope();
        dc_prev[j] = dc * f;
    }
}

/// [`gates`] of a row being written.
fn gates_mut<const G: usize, T>(row: &mut [T], h: usize) -> [&mut [T]; G] {
    let mut rest = &mut row[..G * h];
    std::array::from_fn(|_| {
        let (gate, tail) = std::mem::take(&mut rest).split_at_mut(h);
        rest = tail;
        gate
    })
}

/// h' = (1 − z)·n + z·h, n = tanh(n_x + r·(n_h + b_hn)).
#[inline(always)]
fn gru_forward<T: Gate>(h: usize, row: &Row<T>, ho: &mut [T]) {
    let ([xr, xz, xn], [rr, rz, rn]) = (gates(row.x, h), gates(row.r, h));
    let (h_prev, ho, b_hn) = (&row.h[..h], &mut ho[..h], row.hidden_bias(h));
    for j in 0..h {
        let hn = rn[j] + b_hn.map_or(T::ZERO, |b| b[j]);
        let pre_n = xn[j] + (xr[j] + rr[j]).sigmoid() * hn;
        let (z, one_minus_z) = (xz[j] + rz[j]).sigmoid_pair();
        ho[j] = one_minus_z * pre_n.tanh_gate() + z * h_prev[j];
    }
}

/// From dh': d gx (3H), d gh (3H), dh_prev (H) and d b_hn (H), in that order in `out`.
#[inline(always)]
fn gru_backward<T: Gate>(h: usize, row: &Row<T>, dh: &[T], out: [&mut [T]; 4]) {
    let [d_gx, d_gh, dh_prev, d_bias] = out;
    let ([xr, xz, xn], [rr, rz, rn]) = (gates(row.x, h), gates(row.r, h));
    let ([dxr, dxz, dxn], [dhr, dhz, dhn]) = (gates_mut(d_gx, h), gates_mut(d_gh, h));
    let (h_prev, dh, dh_prev, d_bias) = (&row.h[..h], &dh[..h], &mut dh_prev[..h], &mut d_bias[..h]);
    let b_hn = row.hidden_bias(h);
    for j in 0..h {
        let (pre_r, pre_z) = (xr[j] + rr[j], xz[j] + rz[j]);
        let hn = rn[j] + b_hn.map_or(T::ZERO, |b| b[j]);
        let r = pre_r.sigmoid();
        let pre_n = xn[j] + r * hn;
        let (z, one_minus_z) = pre_z.sigmoid_pair();
        let dn = dh[j] * one_minus_z * pre_n.tanh_slope();
        let dr = dn * hn * pre_r.sigmoid_slope();
        let dz = dh[j] * (h_prev[j] - pre_n.tanh_gate()) * pre_z.sigmoid_slope();
        (dxr[j], dxz[j], dxn[j]) = (dr, dz, dn);
        (dhr[j], dhz[j], dhn[j]) = (dr, dz, dn * r);
        dh_prev[j] = dh[j] * z;
        d_bias[j] = dn * r;
    }
}

#[cfg(test)]
mod tests {
    use super::Gate;

    #[test]
    fn f32_gates_are_within_a_few_ulps_of_f64() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let wide = x as f64;
            let rel = |got: f32, want: f64| ((got as f64 - want) / want.abs().max(1e-30)).abs();
            assert!(rel(x.tanh_gate(), wide.tanh()) < 5e-7, "tanh {x}");
            let (s, c) = x.sigmoid_pair();
            assert!(rel(s, 1.0 / (1.0 + (-wide).exp())) < 5e-7, "σ({x})");
            assert!(rel(c, 1.0 / (1.0 + wide.exp())) < 5e-7, "σ(−{x})");
            assert!(rel(x.tanh_slope(), 1.0 / wide.cosh().powi(2)) < 1e-6, "tanh′ {x}");
            x += 0.000_731;
        }
        assert!(f32::NAN.tanh_gate().is_nan());
        assert!(1.0 - 20f32.tanh_gate() <= f32::EPSILON / 2.0, "tanh 20 is 1 to within an ulp");
    }
}
