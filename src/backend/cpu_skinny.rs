//! Products with few rows, C (m×n) = A (m×k)·B (k×n) + β·C for m up to [`MAX_ROWS`], without
//! packing: the products of one recurrent time step (a batch of 32 states times a 256×1024
//! weight) and of small batches.
//!
//! A general GEMM (`matrixmultiply`) first copies B into panels laid out for its kernel. That
//! copy costs as much as the product when A has few rows: each element of B is used only m
//! times, so 32×256·256×1024 ran at 46 GFLOP/s on one core of the development machine, a third
//! of what the core can do. The kernels here read B where it lies instead, in one of the two
//! layouts weights have:
//!
//! - B's rows contiguous (`broadcast`): a tile of C, 4 rows × 64 columns, is 16 AVX-512
//!   registers; for each k, 64 floats of B's row k are loaded once and multiplied by the 4
//!   elements A[i, k] (broadcast) into the tile. B's 64-column strip is reused by every row tile.
//! - B's columns contiguous (`dot`, B the transpose of a row-major weight W, as `x·Wᵀ`): with
//!   A's rows contiguous too, C[i, j] is the dot product of row i of A and row j of W; a tile
//!   of 4×4 dot products keeps 16 vector accumulators over 16 k at a time, and sums their lanes
//!   at the end. With a short k (an attention head's Q·Kᵀ or dO·Vᵀ, k = 32) summing the lanes
//!   costs as much as the products: B is then copied into rows and `broadcast` runs.
//!
//! A strip of at most 32 columns (an attention head's P·V, n = 32) runs in tiles of 8 rows × 32
//! columns instead, so that no lane multiplies padding.
//!
//! The loops index arrays by position rather than through iterator adapters and closures: a
//! closure is compiled apart from the enclosing target features, and a multiply-add in it
//! became a call to `fmaf` (a tenth of the speed).
//!
//! On one core of the development machine (2026-12-01, a throwaway timing program beside
//! `matrixmultiply` through the same `backend::cpu::gemm`): 32×256·256×1024 at 123 GFLOP/s
//! with B's rows contiguous (46 before), 69 with B transposed (28 before); on two threads
//! 32×1024·1024×256 at 120–138 (64–88 before).
//!
//! Both accumulate with fused multiply-adds in a fixed order, so the result does not depend on
//! the thread that computes a tile, nor on how C was split. They are written for AVX-512 and
//! run where the CPU has it ([`available`]; the module exists on x86-64 only); other CPUs keep
//! `matrixmultiply`.

#![allow(clippy::needless_range_loop)] // see above: indices, not iterator adapters

/// The most rows of A (and C) the skinny kernels take: at 64 rows the `dot` kernel is only
/// level with `matrixmultiply` (64×256·256×1024 with B transposed: 61 against 57 GFLOP/s on
/// one core of the development machine), and past that packing B pays for itself.
pub(crate) const MAX_ROWS: usize = 64;

/// Rows of a register tile.
const TILE_ROWS: usize = 4;
/// Columns of a `broadcast` tile: 4 AVX-512 vectors.
const TILE_COLS: usize = 64;
/// A narrow `broadcast` tile, for strips of at most 32 columns (an attention head's width): 2
/// AVX-512 vectors wide and twice the rows, so that it still holds 16 registers of sums and
/// reads no padding.
const NARROW_ROWS: usize = 8;
const NARROW_COLS: usize = 32;
/// Columns of a `dot` tile (rows of W).
const DOT_COLS: usize = 4;
/// Below this k a `dot` tile spends about as much on summing its lanes as on multiplying (an
/// attention head's Q·Kᵀ has k = 32): where A has at least [`COPY_MIN_ROWS`] rows, B is copied
/// into rows (k·n elements) and the broadcast kernel runs instead.
const DOT_MIN_K: usize = 64;
/// The fewest rows of A for which copying B pays: the copy is 1/m of the product's work, and
/// the narrow tiles hold 8 rows (a convolution's 6 or 16 output channels keep the dot kernel).
const COPY_MIN_ROWS: usize = 32;
const _: () = assert!(DOT_COLS == 4, "`sum_lanes` reduces four accumulators at once");
/// Elements of k per step of a `dot` tile: one AVX-512 vector.
const LANES: usize = 16;

/// An f32 matrix through a raw pointer: element (i, j) at `ptr + i·row + j·col`.
#[derive(Clone, Copy)]
pub(crate) struct Raw {
    pub ptr: *const f32,
    pub row: isize,
    pub col: isize,
}

impl Raw {
    /// Element (i, j).
    ///
    /// # Safety
    /// (i, j) must be inside the matrix.
    #[inline(always)]
    unsafe fn at(&self, i: usize, j: usize) -> f32 {
        // SAFETY: the caller's contract
        unsafe { *self.ptr.offset(i as isize * self.row + j as isize * self.col) }
    }
}

/// Whether this CPU runs the kernels: they are written for AVX-512F.
fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// The kernels.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kernel {
    Broadcast,
    Dot,
    /// B's columns copied into rows, then `Broadcast`.
    CopiedBroadcast,
}

/// The kernel that computes the product of A (m×k) and B (k×n) with these (row, column)
/// strides, if one does: on a CPU with AVX-512, for at most [`MAX_ROWS`] rows, with
/// - B's rows contiguous, at least half a tile wide (a narrower B would be mostly padding):
///   `Broadcast`;
/// - B's columns contiguous, k short and A at least [`COPY_MIN_ROWS`] rows (enough to repay
///   the copy): `CopiedBroadcast`;
/// - B's columns and A's rows contiguous with k at least a vector: `Dot`.
///
/// The caller decides once for a whole product: its parts on other threads must use the same
/// kernel, so that the result does not depend on the split.
pub(crate) fn choose(m: usize, k: usize, n: usize, a: (isize, isize), b: (isize, isize)) -> Option<Kernel> {
    let kernel = if b.1 == 1 && n >= TILE_COLS / 2 {
        Kernel::Broadcast
    } else if b.0 == 1 && k < DOT_MIN_K && m >= COPY_MIN_ROWS && n >= TILE_COLS / 2 {
        Kernel::CopiedBroadcast
    } else if b.0 == 1 && a.1 == 1 && k >= LANES {
        Kernel::Dot
    } else {
        return None;
    };
    (m <= MAX_ROWS && available()).then_some(kernel)
}

/// C (m×n, row stride `c_row`) = A·B + β·C by `kernel`, which [`choose`] gave for this
/// product or the whole one it is part of.
///
/// # Safety
/// The matrices must be in bounds, C not aliasing A or B, and the CPU must have AVX-512F.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product(
    kernel: Kernel,
    m: usize,
    k: usize,
    n: usize,
    a: Raw,
    b: Raw,
    beta: f32,
    c: *mut f32,
    c_row: isize,
) {
    // SAFETY: the caller's contract, AVX-512F included
    unsafe {
        match kernel {
            Kernel::Broadcast => broadcast_avx512(m, k, n, a, b, beta, c, c_row),
            Kernel::Dot => dot_avx512(m, k, n, a, b, beta, c, c_row),
            Kernel::CopiedBroadcast => {
                // B's columns, each k contiguous elements, as the rows of a k×n matrix
                let mut rows = vec![0f32; k * n];
                for j in 0..n {
                    for p in 0..k {
                        rows[p * n + j] = b.at(p, j);
                    }
                }
                let b = Raw { ptr: rows.as_ptr(), row: n as isize, col: 1 };
                broadcast_avx512(m, k, n, a, b, beta, c, c_row)
            }
        }
    }
}

/// Defines `$name`, which runs `$body` compiled for AVX-512 (the caller checked [`available`]).
macro_rules! avx512_copy {
    ($name:ident = $body:ident) => {
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(m: usize, k: usize, n: usize, a: Raw, b: Raw, beta: f32, c: *mut f32, c_row: isize) {
            // SAFETY: forwarded
            unsafe { $body(m, k, n, a, b, beta, c, c_row) }
        }
    };
}

avx512_copy!(broadcast_avx512 = broadcast);
avx512_copy!(dot_avx512 = dot);

/// C = A·B + β·C with B's rows contiguous, by strips of [`TILE_COLS`] columns in tiles of
/// [`TILE_ROWS`] rows, a strip of at most [`NARROW_COLS`] in narrow tiles. Each element is one
/// sum over k in order, whatever the tile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn broadcast(m: usize, k: usize, n: usize, a: Raw, b: Raw, beta: f32, c: *mut f32, c_row: isize) {
    for j in (0..n).step_by(TILE_COLS) {
        let cols = TILE_COLS.min(n - j);
        // SAFETY (both): the strip's columns j..j+cols are in C and B
        if cols <= NARROW_COLS {
            unsafe { broadcast_strip::<NARROW_ROWS, NARROW_COLS>(m, j, cols, k, a, b, beta, c, c_row) };
        } else {
            unsafe { broadcast_strip::<TILE_ROWS, TILE_COLS>(m, j, cols, k, a, b, beta, c, c_row) };
        }
    }
}

/// Columns j..j+cols (cols ≤ `COLS`) of C, by tiles of `R` rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn broadcast_strip<const R: usize, const COLS: usize>(
    m: usize,
    j: usize,
    cols: usize,
    k: usize,
    a: Raw,
    b: Raw,
    beta: f32,
    c: *mut f32,
    c_row: isize,
) {
    let mut i = 0;
    // SAFETY (every call): the tiles cover C's rows i.. and columns j..j+cols, in bounds
    while i + R <= m {
        unsafe { broadcast_tile::<R, COLS>(i, j, cols, k, a, b, beta, c, c_row) };
        i += R;
    }
    // the rows left after narrow tiles: by fours, before one at a time (each pass reads the
    // strip of B again)
    while R > TILE_ROWS && i + TILE_ROWS <= m {
        unsafe { broadcast_tile::<TILE_ROWS, COLS>(i, j, cols, k, a, b, beta, c, c_row) };
        i += TILE_ROWS;
    }
    while i < m {
        unsafe { broadcast_tile::<1, COLS>(i, j, cols, k, a, b, beta, c, c_row) };
        i += 1;
    }
}

/// Rows i..i+R and columns j..j+cols (cols ≤ `COLS`) of C, over all of k.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn broadcast_tile<const R: usize, const COLS: usize>(
    i: usize,
    j: usize,
    cols: usize,
    k: usize,
    a: Raw,
    b: Raw,
    beta: f32,
    c: *mut f32,
    c_row: isize,
) {
    let mut acc = [[0f32; COLS]; R];
    for p in 0..k {
        // SAFETY: row p of B from column j holds `cols` elements
        let row = unsafe { b.ptr.offset(p as isize * b.row + j as isize) };
        let strip: [f32; COLS] = if cols == COLS {
            // SAFETY: a whole strip
            unsafe { row.cast::<[f32; COLS]>().read_unaligned() }
        } else {
            // the last strip of a width that is not a multiple of the tile: padded with zeros
            let mut strip = [0f32; COLS];
            // SAFETY: `cols` elements
            unsafe { std::ptr::copy_nonoverlapping(row, strip.as_mut_ptr(), cols) };
            strip
        };
        for r in 0..R {
            // SAFETY: (i + r, p) is in A
            let x = unsafe { a.at(i + r, p) };
            for l in 0..COLS {
                acc[r][l] = x.mul_add(strip[l], acc[r][l]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: row i + r of C from column j holds `cols` elements, C not aliasing A or B
        let out =
            unsafe { std::slice::from_raw_parts_mut(c.offset((i + r) as isize * c_row + j as isize), cols) };
        store(out, &acc[..cols], beta);
    }
}

/// C = A·B + β·C with B's columns and A's rows contiguous, by tiles of [`TILE_ROWS`] ×
/// [`DOT_COLS`] dot products.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dot(m: usize, k: usize, n: usize, a: Raw, b: Raw, beta: f32, c: *mut f32, c_row: isize) {
    let mut i = 0;
    while i < m {
        let rows = TILE_ROWS.min(m - i);
        let mut j = 0;
        while j < n {
            let cols = DOT_COLS.min(n - j);
            // row r of A and column s of B, each k contiguous elements; a partial tile repeats
            // its last row or column, and stores only its own
            let mut x = [a.ptr; TILE_ROWS];
            for (r, x) in x.iter_mut().enumerate() {
                // SAFETY: row i + min(r, rows − 1) is in A
                *x = unsafe { a.ptr.offset((i + r.min(rows - 1)) as isize * a.row) };
            }
            let mut w = [b.ptr; DOT_COLS];
            for (s, w) in w.iter_mut().enumerate() {
                // SAFETY: column j + min(s, cols − 1) is in B
                *w = unsafe { b.ptr.offset((j + s.min(cols - 1)) as isize * b.col) };
            }
            // SAFETY: each pointer starts k contiguous elements of A or B
            let sums = unsafe { dot_tile(&x, &w, k) };
            for (r, sums) in sums.iter().enumerate().take(rows) {
                // SAFETY: row i + r of C from column j holds `cols` elements
                let out = unsafe {
                    std::slice::from_raw_parts_mut(c.offset((i + r) as isize * c_row + j as isize), cols)
                };
                store(out, &sums[..cols], beta);
            }
            j += DOT_COLS;
        }
        i += TILE_ROWS;
    }
}

/// The [`TILE_ROWS`] × [`DOT_COLS`] dot products of the rows at `x` with the rows at `w`, each
/// `k` long: lane l of accumulator (r, s) sums the products at p ≡ l (mod [`LANES`]), then the
/// lanes are added and the last k mod 16 products after them.
///
/// AVX-512 intrinsics: written as arrays of floats, LLVM kept the 16 accumulators in memory.
///
/// # Safety
/// Each pointer must start `k` readable elements; the CPU must have AVX-512F.
#[inline(always)]
unsafe fn dot_tile(
    x: &[*const f32; TILE_ROWS],
    w: &[*const f32; DOT_COLS],
    k: usize,
) -> [[f32; DOT_COLS]; TILE_ROWS] {
    use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_setzero_ps};
    // SAFETY (the intrinsics): the caller's contract; every load reads p..p + 16 ≤ k
    unsafe {
        let mut acc: [[__m512; DOT_COLS]; TILE_ROWS] = [[_mm512_setzero_ps(); DOT_COLS]; TILE_ROWS];
        let whole = k - k % LANES;
        let mut p = 0;
        while p < whole {
            let xv: [__m512; TILE_ROWS] = [
                _mm512_loadu_ps(x[0].add(p)),
                _mm512_loadu_ps(x[1].add(p)),
                _mm512_loadu_ps(x[2].add(p)),
                _mm512_loadu_ps(x[3].add(p)),
            ];
            for s in 0..DOT_COLS {
                let wv = _mm512_loadu_ps(w[s].add(p));
                for r in 0..TILE_ROWS {
                    acc[r][s] = _mm512_fmadd_ps(xv[r], wv, acc[r][s]);
                }
            }
            p += LANES;
        }
        let mut sums = [[0f32; DOT_COLS]; TILE_ROWS];
        for r in 0..TILE_ROWS {
            let lanes = sum_lanes(acc[r]);
            for s in 0..DOT_COLS {
                let mut sum = lanes[s];
                for q in whole..k {
                    sum = (*x[r].add(q)).mul_add(*w[s].add(q), sum);
                }
                sums[r][s] = sum;
            }
        }
        sums
    }
}

/// The sums of the lanes of each of four vectors, together: halves added (16 → 8 lanes each),
/// then horizontal adds pair them up (4 vectors → one vector of 4 sums in each 128-bit half),
/// then the two halves added. 13 instructions, where four separate reductions take about 36:
/// with k = 256, a dot-product tile has only 16 multiply-adds per sum to share them with.
#[inline(always)]
unsafe fn sum_lanes(v: [std::arch::x86_64::__m512; 4]) -> [f32; 4] {
    use std::arch::x86_64::{
        __m256, _mm_add_ps, _mm_storeu_ps, _mm256_add_ps, _mm256_castpd_ps, _mm256_castps256_ps128,
        _mm256_extractf128_ps, _mm256_hadd_ps, _mm512_castpd512_pd256, _mm512_castps_pd,
        _mm512_extractf64x4_pd,
    };
    /// The low 8 lanes of `x` plus its high 8.
    #[inline(always)]
    unsafe fn halves(x: std::arch::x86_64::__m512) -> __m256 {
        // SAFETY: as below
        unsafe {
            let x = _mm512_castps_pd(x);
            _mm256_add_ps(
                _mm256_castpd_ps(_mm512_castpd512_pd256(x)),
                _mm256_castpd_ps(_mm512_extractf64x4_pd(x, 1)),
            )
        }
    }
    // SAFETY: the caller's CPU has AVX-512F (and so AVX)
    unsafe {
        let (a, b, c, d) = (halves(v[0]), halves(v[1]), halves(v[2]), halves(v[3]));
        let paired = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
        let sums = _mm_add_ps(_mm256_castps256_ps128(paired), _mm256_extractf128_ps(paired, 1));
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), sums);
        out
    }
}

/// out = sums + β·out (β = 0 ignores what `out` held, NaN included, as BLAS does).
#[inline(always)]
fn store(out: &mut [f32], sums: &[f32], beta: f32) {
    if beta == 0.0 {
        out.copy_from_slice(sums);
    } else {
        for l in 0..out.len() {
            out[l] = beta.mul_add(out[l], sums[l]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [−1, 1).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2000) as f32 / 1000.0 - 1.0).collect()
    }

    /// Every layout at odd sizes (one row, partial row tiles, partial column tiles and strips,
    /// narrow strips, k below, at and past a vector and the copy's bound) against a plain f64
    /// sum; β = 0 ignores the NaN C held, β = 0.5 accumulates into C. Strided A (a transposed
    /// one) for the broadcast kernels.
    #[test]
    fn skinny_products_match_the_plain_sum() {
        if !available() {
            // elsewhere nothing may take the skinny path (the development and CI machines
            // have AVX-512, where the products below run)
            assert!(choose(1, 16, 64, (16, 1), (64, 1)).is_none());
            return;
        }
        for (m, k, n) in [1, 3, 4, 5, 17, 32, 41, 64]
            .into_iter()
            .flat_map(|m| [1, 5, 16, 17, 32, 63, 64, 100].map(move |k| (m, k)))
            .flat_map(|(m, k)| [1, 5, 31, 32, 33, 63, 64, 65, 96, 130].map(move |n| (m, k, n)))
        {
            for (transposed_b, transposed_a) in [(false, false), (false, true), (true, false), (true, true)] {
                let (a_strides, b_strides) = (
                    if transposed_a { (1, m as isize) } else { (k as isize, 1) },
                    if transposed_b { (1, k as isize) } else { (n as isize, 1) },
                );
                // (by the strides: with one row or column a transposed matrix is contiguous too)
                let wide = n >= TILE_COLS / 2;
                let expected = match () {
                    _ if b_strides.1 == 1 && wide => Some(Kernel::Broadcast),
                    _ if k < DOT_MIN_K && m >= COPY_MIN_ROWS && wide => Some(Kernel::CopiedBroadcast),
                    _ if b_strides.0 == 1 && a_strides.1 == 1 && k >= LANES => Some(Kernel::Dot),
                    _ => None,
                };
                let kernel = choose(m, k, n, a_strides, b_strides);
                assert_eq!(kernel, expected, "{m}×{k}×{n}");
                let Some(kernel) = kernel else { continue };
                let (a, b) = (values(m * k, 1), values(k * n, 2));
                for beta in [0.0, 0.5] {
                    let c0: Vec<f32> = if beta == 0.0 { vec![f32::NAN; m * n] } else { values(m * n, 3) };
                    let mut c = c0.clone();
                    let raw = |v: &[f32], (row, col)| Raw { ptr: v.as_ptr(), row, col };
                    // SAFETY: the strides describe the vectors above; C is its own
                    unsafe {
                        product(
                            kernel,
                            m,
                            k,
                            n,
                            raw(&a, a_strides),
                            raw(&b, b_strides),
                            beta,
                            c.as_mut_ptr(),
                            n as isize,
                        )
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let at = |v: &[f32], (row, col): (isize, isize), r: usize, s: usize| {
                                f64::from(v[(r as isize * row + s as isize * col) as usize])
                            };
                            let sum: f64 =
                                (0..k).map(|p| at(&a, a_strides, i, p) * at(&b, b_strides, p, j)).sum();
                            let want = if beta == 0.0 { sum } else { sum + 0.5 * f64::from(c0[i * n + j]) };
                            let got = f64::from(c[i * n + j]);
                            assert!(
                                (got - want).abs() <= 1e-6 * k as f64 + 1e-6,
                                "{m}×{k}×{n} B transposed {transposed_b} A transposed {transposed_a} β {beta} \
                                 ({i}, {j}): {got} against {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
