//! Products of small matrices whose sums stay in registers over all of k: the per-head products
//! of the CPU attention (a block of 16 query rows times at most 64 keys of 32 dimensions, or
//! their transposes for the key and value gradients).
//!
//! C (m×n) = A (m×k)·B (k×n), where
//! - A is read an element at a time through its two strides, so a transposed A costs nothing;
//! - B's rows are contiguous and **padded**: each holds at least n rounded up to [`LANES`]
//!   readable elements (zeros past n, or anything finite: those columns are never stored);
//! - only C's n columns are written.
//!
//! A tile of C is 4 rows × up to 64 columns: for f32, 16 AVX-512 registers of sums, loaded from
//! B's row once per k and multiplied by 4 broadcast elements of A. Narrower products take tiles
//! of 16, 32 or 48 columns, so a 48-key block of causal scores multiplies no padding vector.
//! General GEMMs handle these shapes poorly: `matrixmultiply` packs its operands at every call,
//! and the tiles of `cpu_skinny` copy a partial strip of B at every k and keep their sums in
//! memory (a quarter of the old attention's time).
//!
//! Each element is one sum over k in order, so the result does not depend on the tiling. The
//! code is generic and written with plain arrays; callers compile it for the widest vectors
//! (`cpu_vector::widest!`), where its multiply-adds are single instructions.

/// Elements per column chunk: one AVX-512 vector of f32.
pub const LANES: usize = 16;

/// Rows of a tile.
const ROWS: usize = 4;

/// Column chunks of the widest tile (64 columns).
const CHUNKS: usize = 4;

/// `n` rounded up to whole chunks: the row stride a padded B needs at least.
pub fn padded(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// A read-only matrix through strides: element (i, j) is `data[i·row + j·col]`.
pub struct Strided<'a, T> {
    /// The elements, from the matrix's first.
    pub data: &'a [T],
    /// Distance between consecutive rows.
    pub row: usize,
    /// Distance between consecutive columns.
    pub col: usize,
}

/// C (m×n, row stride `c_row`) = A (m×k) · B (k×n), B's rows padded to `b_row` ≥
/// [`padded`]`(n)` readable elements (see the module doc). With k = 0, C's elements are 0.
///
/// Panics if an operand is too short for its shape.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn product<T: crate::dtype::Float>(
    m: usize,
    k: usize,
    n: usize,
    a: &Strided<T>,
    b: &[T],
    b_row: usize,
    c: &mut [T],
    c_row: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(b_row >= padded(n), "tile product: B's rows ({b_row}) are not padded for {n} columns");
    assert!(c.len() >= (m - 1) * c_row + n, "tile product: C out of bounds");
    if k > 0 {
        assert!(b.len() >= (k - 1) * b_row + padded(n), "tile product: B out of bounds");
        assert!(a.data.len() > (m - 1) * a.row + (k - 1) * a.col, "tile product: A out of bounds");
    }
    let operands = Operands { k, a, b, b_row, c_row };
    for j in (0..n).step_by(LANES * CHUNKS) {
        let cols = (n - j).min(LANES * CHUNKS);
        match cols.div_ceil(LANES) {
            1 => operands.strip::<1>(m, j, cols, c),
            2 => operands.strip::<2>(m, j, cols, c),
            3 => operands.strip::<3>(m, j, cols, c),
            _ => operands.strip::<4>(m, j, cols, c),
        }
    }
}

/// What every tile of one product shares.
struct Operands<'o, 'a, T> {
    k: usize,
    a: &'o Strided<'a, T>,
    b: &'o [T],
    b_row: usize,
    c_row: usize,
}

impl<T: crate::dtype::Float> Operands<'_, '_, T> {
    /// Columns j..j+cols (cols ≤ 16·`NC`) of every row of C.
    #[inline(always)]
    fn strip<const NC: usize>(&self, m: usize, j: usize, cols: usize, c: &mut [T]) {
        let mut i = 0;
        while i + ROWS <= m {
            self.tile::<ROWS, NC>(i, j, cols, c);
            i += ROWS;
        }
        while i < m {
            self.tile::<1, NC>(i, j, cols, c);
            i += 1;
        }
    }

    /// Rows i..i+R and columns j..j+cols of C, over all of k. Indexed loops over arrays, as
    /// in `cpu_skinny`: that is what keeps the sums in registers.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn tile<const R: usize, const NC: usize>(&self, i: usize, j: usize, cols: usize, c: &mut [T]) {
        let a = self.a;
        let mut sums = [[[T::ZERO; LANES]; NC]; R];
        let mut strip = [[T::ZERO; LANES]; NC];
        let mut xs = [T::ZERO; R];
        for p in 0..self.k {
            let row = &self.b[p * self.b_row + j..][..NC * LANES];
            for chunk in 0..NC {
                strip[chunk].copy_from_slice(&row[chunk * LANES..][..LANES]);
            }
            for r in 0..R {
                xs[r] = a.data[(i + r) * a.row + p * a.col];
            }
            for r in 0..R {
                for chunk in 0..NC {
                    for l in 0..LANES {
                        sums[r][chunk][l] = xs[r].fused_mul_add(strip[chunk][l], sums[r][chunk][l]);
                    }
                }
            }
        }
        for r in 0..R {
            let out = &mut c[(i + r) * self.c_row + j..][..cols];
            for (chunk, out) in out.chunks_mut(LANES).enumerate() {
                out.copy_from_slice(&sums[r][chunk][..out.len()]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_products_match_the_plain_sum_for_every_width_and_transposed_a() {
        let value = |i: usize| ((i * 7919) % 23) as f64 / 7.0 - 1.5;
        for &(m, k, n) in &[(1, 1, 1), (5, 3, 16), (16, 32, 48), (7, 0, 9), (9, 17, 70), (4, 5, 129)] {
            for transposed in [false, true] {
                // A (m×k) stored as given or as its transpose (k×m)
                let a: Vec<f64> = (0..m * k).map(value).collect();
                let strided = match transposed {
                    false => Strided { data: &a[..], row: k, col: 1 },
                    true => Strided { data: &a[..], row: 1, col: m },
                };
                let b_row = padded(n) + 3;
                let b: Vec<f64> = (0..k * b_row).map(|i| value(i + 5)).collect();
                let c_row = n + 2;
                let mut c: Vec<f64> = (0..m * c_row).map(|i| value(i + 11)).collect();
                let before = c.clone();
                product(m, k, n, &strided, &b, b_row, &mut c, c_row);
                for i in 0..m {
                    for j in 0..c_row {
                        let at = i * c_row + j;
                        if j >= n {
                            assert_eq!(c[at], before[at], "column {j} past n written");
                            continue;
                        }
                        let sum: f64 =
                            (0..k).map(|p| a[i * strided.row + p * strided.col] * b[p * b_row + j]).sum();
                        let err = (c[at] - sum).abs();
                        assert!(
                            err <= 1e-12 * (1.0 + sum.abs()),
                            "{m}×{k}×{n} ({i}, {j}): {} vs {sum}",
                            c[at]
                        );
                    }
                }
            }
        }
    }
}
