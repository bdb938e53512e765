//! The general f32 product on AVX-512: C (m×n) = A (m×k)·B (k×n) + β·C, for every product the
//! skinny kernels of `cpu_skinny` do not take (a linear layer's batch of hundreds of rows, its
//! weight gradient, a convolution's im2col product).
//!
//! `matrixmultiply`'s AVX-512 kernel is a tile of 16 × 16: per k it loads one vector of B and
//! broadcasts 16 elements of A for 16 multiply-adds, so its loads keep pace with its arithmetic
//! only just; and it packs A as well as B at every call, a copy that costs as much as a product
//! with few columns. Here:
//!
//! - A tile of C is 6 rows × 64 columns, 24 of the 32 vector registers: per k, 4 vectors of B
//!   and 6 broadcast elements of A feed 24 multiply-adds.
//! - B is packed, [`KC`] rows at a time, into panels of 64 columns (zeros past n), so a panel
//!   stays in L1 and L2 while the row tiles of a block of [`MC`] rows read it. Rows of B in place are copied a
//!   vector at a time; columns in place (B = Wᵀ, a linear layer's `x·Wᵀ`) are read
//!   along k and written down the panel.
//! - A's rows contiguous are read in place; otherwise (A = Xᵀ in a weight gradient, whose
//!   elements along k are a row of X apart) A is packed per pass into tiles, so that a tile's
//!   k steps do not each read a different page.
//!
//! Each element of C is, for each block of [`KC`] rows of B in order, one chain of fused
//! multiply-adds added to C: the result does not depend on the tiling, nor on how a caller
//! splits C between threads.
//!
//! On the development machine's two cores (2026-12-03, the Intel Xeon VM, `examples/bench`
//! rows through `backend::cpu::gemm`), see BENCHMARKS.md ("CPU: a GEMM of kiln's own").

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

/// Rows of a register tile: elements of A broadcast per k.
const MR: usize = 6;
/// Columns of a register tile and of a packed panel of B: four vectors.
const NR: usize = 64;
/// f32 lanes of an AVX-512 vector.
const LANES: usize = 16;
/// Rows of B packed per pass: a panel is KC × NR floats, 64 KiB. Each pass after the first
/// reads C back, from memory where C is large: 128 was 5–10% slower at k = 256 … 1024.
const KC: usize = 256;
/// A's column stride (floats) from which A is packed: at 4 KiB, each k of a tile in place
/// reads a different page (1024 × 4096 · 4096 × 256 with A transposed: 130 GFLOP/s packed
/// against 110 in place on one core), while at 2 KiB and less in place is faster (512 × 768 ·
/// 768 × 128: 1.2× the packed speed): each line read there serves 16 k of 2–3 tiles.
const PACK_A_STRIDE: usize = 1024;
/// Rows of A (a multiple of [`MR`]) that every panel of B multiplies before the next: their
/// KC columns (96 KiB) stay in L2 while the panels pass.
const MC: usize = 96;

/// Whether this CPU runs the kernel (it has AVX-512F).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

thread_local! {
    /// Each thread's packed panels of B, and of A where A is packed, kept between calls.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// C (m×n, rows `c_row` apart, columns contiguous) = A·B + β·C, where A (m×k) and B (k×n) are
/// read through their (row, column) strides. With β = 0, C is written without being read (NaN
/// in it is ignored). k = 0 is the caller's to handle.
///
/// # Safety
/// The CPU has AVX-512F ([`available`]); the pointers and strides describe matrices in bounds;
/// C does not overlap A or B.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn product(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    a_stride: (isize, isize),
    b: *const f32,
    b_stride: (isize, isize),
    beta: f32,
    c: *mut f32,
    c_row: isize,
) {
    debug_assert!(k > 0, "gemm: k = 0 reached the packed kernel");
    let panels = n.div_ceil(NR);
    // A is read in place where its elements along k are close (its rows contiguous, or A = Xᵀ
    // of a layer of fewer than 1024 outputs); otherwise packed per pass
    let packs_a = (a_stride.0 != 1 && a_stride.1 != 1) || a_stride.1.unsigned_abs() >= PACK_A_STRIDE;
    PACKED.with_borrow_mut(|(b_buffer, a_buffer)| {
        let packed = aligned(b_buffer, panels * KC * NR);
        let packed_a = aligned(a_buffer, if packs_a { m.next_multiple_of(MR) * KC } else { 0 });
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            // SAFETY (all offsets below): rows p0..p0+kc of B and columns p0..p0+kc of A are
            // inside the operands, and C's columns j..j+cols inside C
            unsafe { pack(kc, n, b.offset(p0 as isize * b_stride.0), b_stride, packed) };
            let a = unsafe { a.offset(p0 as isize * a_stride.1) };
            let (a, a_stride, a_tile) = match packs_a {
                false => (a, a_stride, a_stride.0),
                true => {
                    unsafe { pack_a(m, kc, a, a_stride, packed_a) };
                    (packed_a.as_ptr(), (1, MR as isize), kc as isize)
                }
            };
            let operands = Operands {
                kc,
                a,
                a_stride,
                a_tile,
                // later passes add to what the earlier ones wrote
                beta: if p0 == 0 { beta } else { 1.0 },
                c_row,
            };
            for rows in (0..m).step_by(MC).map(|i| i..m.min(i + MC)) {
                for panel in 0..panels {
                    let j = panel * NR;
                    let b = &packed[panel * kc * NR..][..kc * NR];
                    let c = unsafe { c.add(j) };
                    let cols = NR.min(n - j);
                    let rows = rows.clone();
                    unsafe {
                        match cols.div_ceil(LANES) {
                            1 => operands.strip::<1>(rows, b, c, cols),
                            2 => operands.strip::<2>(rows, b, c, cols),
                            3 => operands.strip::<3>(rows, b, c, cols),
                            _ => operands.strip::<4>(rows, b, c, cols),
                        }
                    }
                }
            }
        }
    })
}

/// `len` floats of `buffer` starting at a 64-byte boundary, so that packed vectors do not
/// straddle cache lines.
fn aligned(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    let slack = 64 / size_of::<f32>();
    if buffer.len() < len + slack {
        buffer.resize(len + slack, 0.0);
    }
    let start = buffer.as_ptr().align_offset(64);
    &mut buffer[start..start + len]
}

/// Packs rows 0..kc of B (k×n through `stride`) into panels of [`NR`] columns: element (p, j)
/// goes to `out[(j / NR)·kc·NR + p·NR + j % NR]`, zeros past n.
///
/// # Safety
/// As [`product`]; `out` holds n.div_ceil(NR)·kc·NR floats, 64-byte aligned.
#[target_feature(enable = "avx512f")]
unsafe fn pack(kc: usize, n: usize, b: *const f32, stride: (isize, isize), out: &mut [f32]) {
    let (row, col) = stride;
    for (panel, out) in out.chunks_exact_mut(kc * NR).take(n.div_ceil(NR)).enumerate() {
        let j = panel * NR;
        for chunk in 0..NR / LANES {
            let first = j + chunk * LANES;
            let mask = lanes_below(n.saturating_sub(first));
            // SAFETY: the masks load only columns < n; the stores stay inside `out`
            unsafe {
                let column = b.offset(first as isize * col);
                let dst = out.as_mut_ptr().add(chunk * LANES);
                if col == 1 {
                    // B's rows contiguous: a vector at a time
                    for p in 0..kc {
                        let v = _mm512_maskz_loadu_ps(mask, column.offset(p as isize * row));
                        _mm512_store_ps(dst.add(p * NR), v);
                    }
                } else if row == 1 {
                    // B's columns contiguous: 16 columns × 16 k read along k and transposed in
                    // registers (AVX-512 gathers of 16 columns took ~80 cycles each; scalar
                    // copies became scatters)
                    let valid = LANES.min(n.saturating_sub(first));
                    for p0 in (0..kc).step_by(LANES) {
                        let steps = LANES.min(kc - p0);
                        let along_k = lanes_below(steps);
                        // columns past n stay zero (the panel's padding)
                        let mut columns = [_mm512_setzero_ps(); LANES];
                        for (l, v) in columns.iter_mut().enumerate().take(valid) {
                            *v = _mm512_maskz_loadu_ps(along_k, column.offset(l as isize * col).add(p0));
                        }
                        for (p, v) in transpose(columns).into_iter().take(steps).enumerate() {
                            _mm512_store_ps(dst.add((p0 + p) * NR), v);
                        }
                    }
                } else {
                    for p in 0..kc {
                        let mut lanes = [0.0; LANES];
                        for (l, lane) in lanes.iter_mut().enumerate().take(n.saturating_sub(first)) {
                            *lane = *column.offset(p as isize * row + l as isize * col);
                        }
                        _mm512_store_ps(dst.add(p * NR), _mm512_loadu_ps(lanes.as_ptr()));
                    }
                }
            }
        }
    }
}

/// Packs columns 0..kc of A (m×k through `stride`) in tiles of [`MR`] rows: element (i, p)
/// goes to `out[(i − i % MR)·kc + p·MR + i % MR]`: each tile of MR rows a block of kc × MR,
/// k-major. Slots past m keep what they held (their sums are never computed).
///
/// # Safety
/// As [`product`]; `out` holds m.next_multiple_of(MR)·kc floats.
#[target_feature(enable = "avx512f")]
unsafe fn pack_a(m: usize, kc: usize, a: *const f32, stride: (isize, isize), out: &mut [f32]) {
    let (row, col) = stride;
    // 16 columns of A at a time, so that the reads stay on few pages and the writes of a
    // tile's block are contiguous
    for p0 in (0..kc).step_by(LANES) {
        for i in (0..m).step_by(MR) {
            let rows = MR.min(m - i);
            let block = &mut out[i * kc..][..MR * kc];
            for p in p0..kc.min(p0 + LANES) {
                // SAFETY: A(i + r, p) for r < rows is in bounds; the store stays in `block`
                unsafe {
                    let at = a.offset(i as isize * row + p as isize * col);
                    let dst = block.as_mut_ptr().add(p * MR);
                    if row == 1 {
                        let mask = lanes_below(rows);
                        _mm512_mask_storeu_ps(dst, mask, _mm512_maskz_loadu_ps(mask, at));
                    } else {
                        for r in 0..rows {
                            *dst.add(r) = *at.offset(r as isize * row);
                        }
                    }
                }
            }
        }
    }
}

/// The transpose of a 16 × 16 block held as 16 rows: element l of `rows[i]` becomes element i
/// of the result's vector l. Within 128-bit lanes first (pairs of elements, then of pairs),
/// then across them.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose(rows: [__m512; LANES]) -> [__m512; LANES] {
    let (lo, hi) = (_mm512_castps_pd, _mm512_castpd_ps);
    // pairs of rows interleaved: t[2g] holds rows 2g, 2g+1 at columns 4L, 4L+1 of lane L
    let mut t = [_mm512_setzero_ps(); LANES];
    for g in 0..LANES / 2 {
        t[2 * g] = _mm512_unpacklo_ps(rows[2 * g], rows[2 * g + 1]);
        t[2 * g + 1] = _mm512_unpackhi_ps(rows[2 * g], rows[2 * g + 1]);
    }
    // groups of four rows: lane L of u[4q + c] holds rows 4q..4q+3 at column 4L + c
    let mut u = [_mm512_setzero_ps(); LANES];
    for q in 0..LANES / 4 {
        let (a, b, c, d) = (lo(t[4 * q]), lo(t[4 * q + 2]), lo(t[4 * q + 1]), lo(t[4 * q + 3]));
        u[4 * q] = hi(_mm512_unpacklo_pd(a, b));
        u[4 * q + 1] = hi(_mm512_unpackhi_pd(a, b));
        u[4 * q + 2] = hi(_mm512_unpacklo_pd(c, d));
        u[4 * q + 3] = hi(_mm512_unpackhi_pd(c, d));
    }
    // column 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c]
    let mut out = [_mm512_setzero_ps(); LANES];
    for c in 0..4 {
        let x0 = _mm512_shuffle_f32x4::<0x44>(u[c], u[4 + c]);
        let x1 = _mm512_shuffle_f32x4::<0xEE>(u[c], u[4 + c]);
        let y0 = _mm512_shuffle_f32x4::<0x44>(u[8 + c], u[12 + c]);
        let y1 = _mm512_shuffle_f32x4::<0xEE>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_f32x4::<0x88>(x0, y0);
        out[4 + c] = _mm512_shuffle_f32x4::<0xDD>(x0, y0);
        out[8 + c] = _mm512_shuffle_f32x4::<0x88>(x1, y1);
        out[12 + c] = _mm512_shuffle_f32x4::<0xDD>(x1, y1);
    }
    out
}

/// The mask of the first `count` lanes (all 16 for 16 or more).
fn lanes_below(count: usize) -> __mmask16 {
    if count >= LANES { u16::MAX } else { (1u16 << count) - 1 }
}

/// What every tile of one pass shares.
struct Operands {
    kc: usize,
    /// A's column p0, where this pass's k begins, or its packed tiles.
    a: *const f32,
    /// Strides of A's elements within a tile.
    a_stride: (isize, isize),
    /// Row i's tile starts at `a + i·a_tile`: A's row stride in place, kc packed.
    a_tile: isize,
    /// β for this pass: the caller's on the first, 1 on the others.
    beta: f32,
    c_row: isize,
}

impl Operands {
    /// Columns 0..cols (cols ≤ 16·`NC`) of a packed panel `b` times `rows` of A, into C from
    /// `c`.
    ///
    /// # Safety
    /// As [`product`]: `c` is the panel's first column of C.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn strip<const NC: usize>(&self, rows: Range<usize>, b: &[f32], c: *mut f32, cols: usize) {
        let (mut i, m) = (rows.start, rows.end);
        // SAFETY: rows i..i+R of A and C exist
        unsafe {
            while i + MR <= m {
                self.tile::<MR, NC>(i, b, c, cols);
                i += MR;
            }
            match m - i {
                0 => {}
                1 => self.tile::<1, NC>(i, b, c, cols),
                2 => self.tile::<2, NC>(i, b, c, cols),
                3 => self.tile::<3, NC>(i, b, c, cols),
                4 => self.tile::<4, NC>(i, b, c, cols),
                _ => self.tile::<5, NC>(i, b, c, cols),
            }
        }
    }

    /// Rows i..i+R of C, columns 0..cols of the panel: R × NC vectors of sums over this pass's
    /// k, then C = sums + β·C (β = 0: C not read).
    ///
    /// # Safety
    /// As [`Operands::strip`], rows i..i+R in bounds.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // indexed arrays keep the sums in registers
    unsafe fn tile<const R: usize, const NC: usize>(&self, i: usize, b: &[f32], c: *mut f32, cols: usize) {
        let (a_row, a_col) = self.a_stride;
        let mut sums = [[_mm512_setzero_ps(); NC]; R];
        // SAFETY: A(i + r, p) for p < kc is in bounds, and `b` holds kc rows of NR floats
        unsafe {
            // C's tile is read or written after the sums: fetch its lines meanwhile (a large
            // C comes from memory, at a few hundred cycles a line)
            for r in 0..R {
                for q in 0..NC {
                    let at = c.offset((i + r) as isize * self.c_row).add(q * LANES);
                    _mm_prefetch::<_MM_HINT_T0>(at as *const i8);
                }
            }
            let mut a = self.a.offset(i as isize * self.a_tile);
            let mut strip = b.as_ptr();
            for _ in 0..self.kc {
                let mut row = [_mm512_setzero_ps(); NC];
                for q in 0..NC {
                    row[q] = _mm512_load_ps(strip.add(q * LANES));
                }
                for r in 0..R {
                    let x = _mm512_set1_ps(*a.offset(r as isize * a_row));
                    for q in 0..NC {
                        sums[r][q] = _mm512_fmadd_ps(x, row[q], sums[r][q]);
                    }
                }
                a = a.offset(a_col);
                strip = strip.add(NR);
            }
            let beta = _mm512_set1_ps(self.beta);
            for r in 0..R {
                let out = c.offset((i + r) as isize * self.c_row);
                for q in 0..NC {
                    let mask = lanes_below(cols.saturating_sub(q * LANES));
                    let at = out.add(q * LANES);
                    let value = match self.beta == 0.0 {
                        true => sums[r][q],
                        false => _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask, at), sums[r][q]),
                    };
                    _mm512_mask_storeu_ps(at, mask, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every width of panel and every leftover of rows, k within and across passes, more rows
    /// than a block of MC, each operand's rows, columns or neither contiguous, β of 0 (NaN in C
    /// ignored), 1 and 0.5, and C's columns past n untouched: against a plain f64 sum.
    #[test]
    fn packed_products_match_the_plain_sum() {
        if !available() {
            return;
        }
        let value = |i: usize, seed: usize| ((i * 7919 + seed * 104_729) % 2000) as f32 / 1000.0 - 1.0;
        let shapes = [
            (1, 1, 1),
            (7, KC, 17),
            (13, KC + 1, 64),
            (6, 2 * KC + 50, 130),
            (25, 5, 200),
            (12, 64, 48),
            (200, 3, 70),
            (PACK_A_STRIDE + 5, 20, 70),
        ];
        let combinations = [(0, 0, 0.0), (1, 1, 1.0), (0, 2, 0.5), (1, 0, 1.0), (2, 1, 0.0), (2, 2, 1.0)];
        for &(m, k, n) in &shapes {
            for (a_layout, b_layout, beta) in combinations {
                // (row, column) strides: rows contiguous, columns contiguous (A transposed: in
                // place, or packed past PACK_A_STRIDE rows), or neither (packed; every other
                // element of a twice-as-long buffer)
                let (a_stride, a_len) = match a_layout {
                    0 => ((k as isize, 1), m * k),
                    1 => ((1, m as isize), m * k),
                    _ => ((2 * k as isize, 2), 2 * m * k),
                };
                let a: Vec<f32> = (0..a_len).map(|i| value(i, 1)).collect();
                let (b_stride, b_len) = match b_layout {
                    0 => ((n as isize, 1), k * n),
                    1 => ((1, k as isize), k * n),
                    _ => ((2 * n as isize, 2), 2 * k * n),
                };
                let b: Vec<f32> = (0..b_len).map(|i| value(i, 2)).collect();
                let c_row = n + 3;
                let mut c: Vec<f32> = (0..m * c_row).map(|i| value(i, 3)).collect();
                if beta == 0.0 {
                    c.iter_mut().step_by(5).for_each(|v| *v = f32::NAN);
                }
                let before = c.clone();
                // SAFETY: the CPU has AVX-512F; the operands are the slices above, in bounds
                unsafe {
                    product(
                        m,
                        k,
                        n,
                        a.as_ptr(),
                        a_stride,
                        b.as_ptr(),
                        b_stride,
                        beta,
                        c.as_mut_ptr(),
                        c_row as isize,
                    )
                };
                for i in 0..m {
                    for j in 0..c_row {
                        let at = i * c_row + j;
                        if j >= n {
                            assert!(
                                c[at].to_bits() == before[at].to_bits(),
                                "{m}×{k}×{n}: column {j} written"
                            );
                            continue;
                        }
                        let mut want = if beta == 0.0 { 0.0 } else { beta as f64 * before[at] as f64 };
                        for p in 0..k {
                            let x = a[(i as isize * a_stride.0 + p as isize * a_stride.1) as usize];
                            let y = b[(p as isize * b_stride.0 + j as isize * b_stride.1) as usize];
                            want += x as f64 * y as f64;
                        }
                        let got = c[at] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * k as f64,
                            "{m}×{k}×{n} (layouts A {a_layout}, B {b_layout}, β {beta}) ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
