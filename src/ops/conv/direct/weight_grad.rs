//! The direct weight gradient of stride-1 convolutions in f32 on CPUs with AVX-512 (see
//! [`applies`]), without an im2col matrix:
//!
//! dW[o][c][i][j] = Σ_n Σ_r Σ_x dy[n][o][r][x] · x_padded[n][c][r + i][x + j].
//!
//! Why: im2col + GEMM spent a quarter of ResNet-20's CPU training step on the weight gradient
//! (the im2col copy, then 16×1,024·1,024×144 products per image that the skinny `dot` kernel
//! ran at about half the rate of the direct forward pass). Here the padded input is copied kw
//! times, shifted left by j = 0 .. kw and cut to the output's width ([`shift_rows`]), so that
//! for each (c, i, j) the products pair dy's pixels in flat order (r·ow + x) with one run of a
//! copy: a dot product over oh·ow pixels, whatever the width of the rows (ResNet-20's 8×8 maps
//! fill whole vectors, where rows padded to 16 left half of each empty).
//!
//! A register tile holds, for [`OB`] output channels and up to [`TAPS`] columns j of one kernel
//! row (c, i), an AVX-512 vector of partial sums each: per 16 pixels it loads OB vectors of dy
//! and TAPS of the copies (8 + 3 loads for 24 multiply-adds, against 8 for 16 in the `dot`
//! kernel). Each image's vectors are added lane by lane, and the lanes summed once per partial
//! gradient. dy's pixels are padded with zeros to whole vectors, and the copies' last vector is
//! loaded under a mask.
//!
//! It is written with AVX-512 intrinsics, f32 only: the same loops left to the compiler over
//! arrays spilled their sums to the stack and built the shifted rows by permutes (slower than
//! the GEMM). Other CPUs and f64 keep im2col + GEMM.
//!
//! The images are summed in fixed groups of [`IMAGES_PER_PARTIAL`], one partial gradient each,
//! and the partials added in image order, so the result does not depend on how many threads ran
//! them.

use super::pad_into;
use crate::ops::conv::Geom;
use rayon::prelude::*;
use std::arch::x86_64::__m512;

/// Partial sums per accumulator: one AVX-512 vector of f32.
const LANES: usize = 16;

/// Columns of a kernel row in one tile (a 3×3 kernel's row; a 5-wide one runs as 3 + 2).
const TAPS: usize = 3;

/// Output channels in one tile: of AVX-512's 32 vector registers, 8 × 3 hold sums, 3 the
/// shifted input rows and 1 a row of dy. dy's channels are padded with zero planes to a
/// multiple of it.
const OB: usize = 8;

/// Images summed into one partial gradient (see the module's doc). A tile runs over all of
/// them before it sums its lanes: on ResNet-20's 8×8 maps one image is only 4 vectors.
const IMAGES_PER_PARTIAL: usize = 8;

/// The most output pixels (padded to whole vectors) of a layer [`weight_grad`] takes: a tile
/// streams a block of dy, [`OB`] planes, once per (c, i, j), and at this size the block (256
/// KiB) stays in L2. Larger maps keep im2col + GEMM (a limit by design, not measured:
/// the layers timed were ResNet-20's and LeNet-5's).
const MAX_PIXELS: usize = 8192;

/// Whether [`weight_grad`] computes this f32 convolution's weight gradient: stride and dilation
/// 1, output rows of at least 8 pixels (the narrowest maps measured), at most [`MAX_PIXELS`]
/// pixels, on a CPU with AVX-512. Unlike the forward pass, it takes wide layers too: ResNet-20's 64-channel layers
/// (8×8 maps) ran faster here than by im2col and GEMM.
pub(in crate::ops::conv) fn applies(g: &Geom) -> bool {
    let o = g.opts;
    o.stride == (1, 1)
        && o.dilation == (1, 1)
        && g.ow >= 8
        && (g.oh * g.ow).next_multiple_of(LANES) <= MAX_PIXELS
        && super::has_avx512()
}

/// The weight gradient dW (O, C/groups, kh, kw) from x (N, C, H, W) and dy (N, O, oh, ow).
pub(in crate::ops::conv) fn weight_grad(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(g), "the direct weight gradient takes {g:?}");
    let (cg, og) = g.per_group();
    let (ph, pw) = g.opts.padding;
    let (hp, wp) = (g.h + 2 * ph, g.w + 2 * pw);
    let (image, out_image, taps) = (g.c * g.h * g.w, g.o * g.oh * g.ow, g.kh * g.kw);
    let pixels = g.oh * g.ow;
    let planes = Planes {
        shifted: (g.kw, cg, hp * g.ow),
        dy: (og.next_multiple_of(OB), pixels.next_multiple_of(LANES)),
        og,
        row: g.ow,
        pixels,
    };
    let (shifted_image, dy_image) = (planes.shifted_len(), planes.dy.0 * planes.dy.1);
    let per_group = og * cg * taps;
    if g.n == 0 || pixels == 0 {
        return vec![0.0; g.o * cg * taps];
    }
    let partials: Vec<Vec<f32>> = (0..g.n.div_ceil(IMAGES_PER_PARTIAL))
        .into_par_iter()
        .map(|part| {
            let images = part * IMAGES_PER_PARTIAL..((part + 1) * IMAGES_PER_PARTIAL).min(g.n);
            let mut dw = vec![0.0; g.o * cg * taps];
            let mut padded = vec![0.0; cg * hp * wp];
            // the tails past each plane's pixels and the planes past og stay zero; the slack
            // after the last image's shifted rows holds what its last vectors read past them
            let mut shifted = vec![0.0; images.len() * shifted_image + LANES];
            let mut rows = vec![0.0; images.len() * dy_image];
            for grp in 0..g.opts.groups {
                for (m, n) in images.clone().enumerate() {
                    pad_into(
                        &x[n * image + grp * cg * g.h * g.w..],
                        (cg, g.h, g.w),
                        (ph, pw),
                        wp,
                        &mut padded,
                    );
                    shift_rows(
                        &padded,
                        (cg * hp, wp),
                        g.kw,
                        &mut shifted[m * shifted_image..][..shifted_image],
                    );
                    let dyg = &dy[n * out_image + grp * og * pixels..][..og * pixels];
                    for (plane, from) in rows[m * dy_image..].chunks_mut(planes.dy.1).zip(dyg.chunks(pixels))
                    {
                        plane[..pixels].copy_from_slice(from);
                    }
                }
                let dwg = &mut dw[grp * per_group..][..per_group];
                let operands = Operands { shifted: &shifted, dy: &rows, planes };
                // SAFETY: the CPU has AVX-512F (asserted above)
                unsafe { group(operands, (g.kh, g.kw), dwg) };
            }
            dw
        })
        .collect();
    partials
        .into_iter()
        .reduce(|mut total, part| {
            total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
            total
        })
        .unwrap_or_else(|| vec![0.0; g.o * cg * taps])
}

/// `dst` (kw, rows, ow) = the padded rows `src` (rows, wp) shifted left by j = 0 .. kw and cut
/// to ow = wp − kw + 1 columns: dst[j][row][x] = src[row][x + j]. In these copies the rows of a
/// plane follow each other without padding, so output pixels in flat order (r·ow + x) are one
/// run, and a row's neighbour is `ow` further: dy's pixel p pairs with dst[j][i·ow + p].
fn shift_rows(src: &[f32], (rows, wp): (usize, usize), kw: usize, dst: &mut [f32]) {
    let ow = wp + 1 - kw;
    for (j, copy) in dst.chunks_exact_mut(rows * ow).enumerate() {
        for (to, from) in copy.chunks_exact_mut(ow).zip(src.chunks_exact(wp)) {
            to.copy_from_slice(&from[j..j + ow]);
        }
    }
}

/// The layout of one image's operands (see [`shift_rows`]).
#[derive(Clone, Copy)]
struct Planes {
    /// The shifted input: (kw copies, cg channels, hp·ow elements a channel).
    shifted: (usize, usize, usize),
    /// dy: (og padded to [`OB`] planes, oh·ow pixels padded to whole vectors).
    dy: (usize, usize),
    /// The group's output channels.
    og: usize,
    /// Elements between a row and the next in the shifted input: ow.
    row: usize,
    /// Output pixels, oh·ow.
    pixels: usize,
}

impl Planes {
    fn shifted_len(&self) -> usize {
        self.shifted.0 * self.shifted.1 * self.shifted.2
    }
}

/// One group's operands for a run of images, each image's after the last's.
#[derive(Clone, Copy)]
struct Operands<'a> {
    shifted: &'a [f32],
    dy: &'a [f32],
    planes: Planes,
}

/// dw (og, cg, kh, kw) += the gradient of the images in `operands`.
#[target_feature(enable = "avx512f")]
fn group(operands: Operands, (kh, kw): (usize, usize), dw: &mut [f32]) {
    let p = operands.planes;
    let (_, cg, plane) = p.shifted;
    let per_channel = cg * kh * kw;
    for ob in 0..p.og.div_ceil(OB) {
        let channels = OB.min(p.og - ob * OB);
        for c in 0..cg {
            for i in 0..kh {
                let mut j0 = 0;
                while j0 < kw {
                    // the tile's first dy plane, its shifted input (copy j0, channel c, row i)
                    // and its first weight dW[ob·OB][c][i][j0]
                    let from = (ob * OB * p.dy.1, (j0 * cg + c) * plane + i * p.row);
                    let to = (((ob * OB * cg + c) * kh + i) * kw + j0, per_channel);
                    j0 += match kw - j0 {
                        1 => add_sums(tile::<1>(operands, from), channels, to, dw),
                        2 => add_sums(tile::<2>(operands, from), channels, to, dw),
                        _ => add_sums(tile::<TAPS>(operands, from), channels, to, dw),
                    };
                }
            }
        }
    }
}

/// Adds a tile's sums of its first `channels` output channels into dw at `at + b·per_channel +
/// j`; returns J, the kernel columns it covered.
fn add_sums<const J: usize>(
    sums: [[f32; J]; OB],
    channels: usize,
    (at, per_channel): (usize, usize),
    dw: &mut [f32],
) -> usize {
    for (b, row) in sums.iter().enumerate().take(channels) {
        let out = &mut dw[at + b * per_channel..][..J];
        out.iter_mut().zip(row).for_each(|(o, s)| *o += s);
    }
    J
}

/// One tile: for b < OB and j < J, the sum over images and pixels p of dy[b][p] ·
/// shifted[j][p], dy from plane offset `from.0` (OB planes) and the shifted input from `from.1`
/// (copy j0, channel c, row i; copy j0 + j is a copy further) in each image of `operands`. The
/// images' vectors of sums are added lane by lane, and the lanes summed once at the end.
#[target_feature(enable = "avx512f")]
fn tile<const J: usize>(operands: Operands, from: (usize, usize)) -> [[f32; J]; OB] {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_reduce_add_ps};
    let images = operands.dy.len() / (operands.planes.dy.0 * operands.planes.dy.1);
    let mut total = lane_sums::<J>(operands, 0, from);
    for m in 1..images {
        let image = lane_sums::<J>(operands, m, from);
        for (t, v) in total.iter_mut().flatten().zip(image.iter().flatten()) {
            *t = _mm512_add_ps(*t, *v);
        }
    }
    let mut sums = [[0.0; J]; OB];
    for (out, lanes) in sums.iter_mut().zip(&total) {
        for (o, v) in out.iter_mut().zip(lanes) {
            *o = _mm512_reduce_add_ps(*v);
        }
    }
    sums
}

/// [`tile`]'s sums over one image `m`, each still spread over the lanes of a vector. Not
/// inlined: inside a loop over the images, LLVM kept the sums on the stack.
#[target_feature(enable = "avx512f")]
#[inline(never)]
fn lane_sums<const J: usize>(operands: Operands, m: usize, (dy_at, at): (usize, usize)) -> [[__m512; J]; OB] {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps, _mm512_setzero_ps};
    let p = operands.planes;
    let (wide, copy) = (p.dy.1, p.shifted.1 * p.shifted.2);
    let dy = &operands.dy[m * p.dy.0 * wide + dy_at..][..OB * wide];
    // copies j0 .. j0 + J of the tile's row, and the last vector's reach past it (into the
    // next row, channel or image, or the slack: multiplied by dy's zero tail)
    let shifted = &operands.shifted[m * p.shifted_len() + at..][..(J - 1) * copy + wide];
    let (dy, shifted) = (dy.as_ptr(), shifted.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); J]; OB];
    for q in (0..wide).step_by(LANES) {
        // the last vector's lanes past the pixels read zeros, not the next row's values: dy is
        // zero there, but 0 · ∞ would put a NaN into sums that the input's ∞ is no part of
        let live = if q + LANES <= p.pixels { u16::MAX } else { ((1u32 << (p.pixels - q)) - 1) as u16 };
        // SAFETY (every load below): in bounds by the slices above
        let mut xs = [_mm512_setzero_ps(); J];
        for (j, x) in xs.iter_mut().enumerate() {
            *x = unsafe { _mm512_maskz_loadu_ps(live, shifted.add(j * copy + q)) };
        }
        for (b, sums) in acc.iter_mut().enumerate() {
            let d = unsafe { _mm512_loadu_ps(dy.add(b * wide + q)) };
            for (sum, x) in sums.iter_mut().zip(&xs) {
                *sum = _mm512_fmadd_ps(d, *x, *sum);
            }
        }
    }
    acc
}
