//! The direct correlation (forward pass and input gradient) in f32 with AVX-512 intrinsics and
//! a wider register tile than the portable one: 8 output channels × 2 vectors of 16 pixels,
//! 16 sums in registers. For each tap it loads the two input vectors and broadcasts 8 weights:
//! 10 loads for 16 multiply-adds, where the portable 4 × 16 tile needs 5 for 4.
//!
//! The two vectors are 32 columns of one output row where rows are longer than 16 pixels, and
//! else the same 16 columns of two consecutive rows (ResNet-20's 16×16 and 8×8 maps). A vector
//! past the end of a row reads the next row's pixels (or the padded input's slack, see
//! `super::slack`) and is not stored, or stored in part, by a masked store.

use super::{Dims, slack};
use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_set1_ps, _mm512_setzero_ps,
};

/// Pixels per vector.
const LANES: usize = 16;

/// Output channels per tile, and per block of the tiled kernels this correlation reads.
pub(super) const OB: usize = 8;

/// `out` (oc, oh, ow) = the correlation of `inp` (ic, hp, stride) with the kernels `kt` tiled
/// in blocks of [`OB`] output channels, as `super::correlate` computes it.
#[target_feature(enable = "avx512f")]
pub(super) fn correlate(
    inp: &[f32],
    (ic, hp, stride): Dims,
    kt: &[f32],
    (oc, kh, kw): Dims,
    ow: usize,
    out: &mut [f32],
) {
    let oh = hp + 1 - kh;
    let per_block = ic * kh * kw * OB;
    assert!(inp.len() >= ic * hp * stride + slack(stride), "the padded input's slack");
    assert!(kt.len() >= oc.div_ceil(OB) * per_block && out.len() >= oc * oh * ow);
    assert!(ow <= stride + 1 - kw, "rows padded for the kernel");
    // the second vector's offset in the input and in the output; the tile's step in columns and rows
    let (second_in, second_out, step_x, step_r) =
        if ow > LANES { (LANES, LANES, 2 * LANES, 1) } else { (stride, ow, LANES, 2) };
    for ob in 0..oc.div_ceil(OB) {
        let kb = &kt[ob * per_block..][..per_block];
        let channels = OB.min(oc - ob * OB);
        for r in (0..oh).step_by(step_r) {
            for x0 in (0..ow).step_by(step_x) {
                // SAFETY: the reads end within the slack (asserted above)
                let acc = unsafe { tile(inp, (ic, hp, stride), kb, (kh, kw), r * stride + x0, second_in) };
                // how many pixels of each vector are outputs
                let first = (ow - x0).min(LANES);
                let second = match step_r {
                    1 => (ow - x0).saturating_sub(LANES).min(LANES),
                    _ if r + 1 < oh => first,
                    _ => 0,
                };
                for (b, pair) in acc.iter().enumerate().take(channels) {
                    let at = ((ob * OB + b) * oh + r) * ow + x0;
                    // SAFETY: the masks keep the stores inside row r (and r + 1) of `out`
                    unsafe {
                        _mm512_mask_storeu_ps(out.as_mut_ptr().add(at), mask(first), pair[0]);
                        _mm512_mask_storeu_ps(out.as_mut_ptr().add(at + second_out), mask(second), pair[1]);
                    }
                }
            }
        }
    }
}

/// The first `n` lanes.
fn mask(n: usize) -> u16 {
    ((1u32 << n) - 1) as u16
}

/// One tile: the 8 channels of block `kb` at input offset `at` (a row and column) and at
/// `at + second`. Not inlined: inlined into the loops above, LLVM kept the sums on the stack.
///
/// # Safety
/// Every element read, up to `((ic − 1)·hp + kh − 1)·stride + at + kw − 1 + second + 15`, must
/// be in `inp`.
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn tile(
    inp: &[f32],
    (ic, hp, stride): Dims,
    kb: &[f32],
    (kh, kw): (usize, usize),
    at: usize,
    second: usize,
) -> [[__m512; 2]; OB] {
    let mut acc = [[_mm512_setzero_ps(); 2]; OB];
    for c in 0..ic {
        for i in 0..kh {
            // SAFETY (the loads): the caller's contract; the weights: kb holds ic·kh·kw·OB
            let row = unsafe { inp.as_ptr().add((c * hp + i) * stride + at) };
            let taps = &kb[(c * kh + i) * kw * OB..][..kw * OB];
            for (j, w) in taps.chunks_exact(OB).enumerate() {
                let x0 = unsafe { _mm512_loadu_ps(row.add(j)) };
                let x1 = unsafe { _mm512_loadu_ps(row.add(j + second)) };
                for (pair, &wb) in acc.iter_mut().zip(w) {
                    let wb = _mm512_set1_ps(wb);
                    pair[0] = _mm512_fmadd_ps(x0, wb, pair[0]);
                    pair[1] = _mm512_fmadd_ps(x1, wb, pair[1]);
                }
            }
        }
    }
    acc
}
