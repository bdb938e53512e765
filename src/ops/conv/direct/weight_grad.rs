//! The direct weight gradient of stride-1 convolutions in f32 on CPUs with AVX-512 (see
//! [`applies`]), without an im2col matrix:
//!
//! dW[o][c][i][j] = Σ_n Σ_r Σ_x dy[n][o][r][x] · x_padded[n][c][r + i][x + j].
//!
//! Why: im2col + GEMM spent a quarter of ResNet-20's CPU training step on the weight gradient
//! (the im2col copy, then 16×1,024·1,024×144 products per image that the skinny `dot` kernel
//! ran at about half the rate of the direct forward pass). Here a register tile holds, for
//! [`OB`] output channels and up to [`TAPS`] columns j of one kernel row (c, i), an AVX-512
//! vector of partial sums each: per 16 output pixels it loads OB rows of dy and TAPS shifted
//! rows of the input (8 + 3 loads for 24 multiply-adds, against 8 for 16 in the `dot` kernel).
//! Each image's vectors are added lane by lane, and the lanes summed once per partial gradient.
//!
//! It is written with AVX-512 intrinsics, f32 only: the same loops left to the compiler over
//! arrays spilled their sums to the stack and built the shifted rows by permutes (slower than
//! the GEMM). Other CPUs and f64 keep im2col + GEMM.
//!
//! Rows are padded to whole vectors: dy's with zeros (which multiply whatever the input holds
//! there into nothing) and the input's by [`super::row_stride`] as the forward pass pads them.
//!
//! The images are summed in fixed groups of [`IMAGES_PER_PARTIAL`], one partial gradient each,
//! and the partials added in image order, so the result does not depend on how many threads ran
//! them.

use super::{Dims, pad_into, row_stride};
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
/// them before it sums its lanes: on ResNet-20's 8×8 maps one image is only 8 rows of 16 lanes.
const IMAGES_PER_PARTIAL: usize = 8;

/// The most output pixels (rows padded to whole vectors) of a layer [`weight_grad`] takes: a
/// tile streams a block of dy, [`OB`] planes, once per (c, i, j), and at this size the block
/// (256 KiB) stays in L2. Larger maps keep im2col + GEMM (a limit by design, not measured:
/// the layers timed were ResNet-20's and LeNet-5's).
const MAX_PIXELS: usize = 8192;

/// Whether [`weight_grad`] computes this f32 convolution's weight gradient: stride and dilation
/// 1, output rows of at least 8 pixels (half a vector), at most [`MAX_PIXELS`], on a CPU with
/// AVX-512. Unlike the forward pass, it takes wide layers too: ResNet-20's 64-channel layers
/// (8×8 maps) ran faster here than by im2col and GEMM.
pub(in crate::ops::conv) fn applies(g: &Geom) -> bool {
    let o = g.opts;
    o.stride == (1, 1)
        && o.dilation == (1, 1)
        && g.ow >= 8
        && g.oh * g.ow.next_multiple_of(LANES) <= MAX_PIXELS
        && super::has_avx512()
}

/// The weight gradient dW (O, C/groups, kh, kw) from x (N, C, H, W) and dy (N, O, oh, ow).
pub(in crate::ops::conv) fn weight_grad(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(g), "the direct weight gradient takes {g:?}");
    let (cg, og) = g.per_group();
    let (ph, pw) = g.opts.padding;
    let (hp, wp) = (g.h + 2 * ph, g.w + 2 * pw);
    let (image, out_image, taps) = (g.c * g.h * g.w, g.o * g.oh * g.ow, g.kh * g.kw);
    let inp_dims = (cg, hp, row_stride(g.ow, g.kw).max(wp));
    let dy_dims = (og.next_multiple_of(OB), g.oh, g.ow.next_multiple_of(LANES));
    let (inp_image, dy_image) = (volume(inp_dims), volume(dy_dims));
    let per_group = og * cg * taps;
    if g.n == 0 || volume(dy_dims) == 0 {
        return vec![0.0; g.o * cg * taps];
    }
    let partials: Vec<Vec<f32>> = (0..g.n.div_ceil(IMAGES_PER_PARTIAL))
        .into_par_iter()
        .map(|part| {
            let images = part * IMAGES_PER_PARTIAL..((part + 1) * IMAGES_PER_PARTIAL).min(g.n);
            let mut dw = vec![0.0; g.o * cg * taps];
            let mut inp = vec![0.0; images.len() * inp_image];
            // the zero planes past og are never written
            let mut rows = vec![0.0; images.len() * dy_image];
            for grp in 0..g.opts.groups {
                for (m, n) in images.clone().enumerate() {
                    let xg = &x[n * image + grp * cg * g.h * g.w..];
                    pad_into(xg, (cg, g.h, g.w), (ph, pw), inp_dims.2, &mut inp[m * inp_image..]);
                    let dyg = &dy[n * out_image + grp * og * g.oh * g.ow..];
                    pad_into(dyg, (og, g.oh, g.ow), (0, 0), dy_dims.2, &mut rows[m * dy_image..]);
                }
                let dwg = &mut dw[grp * per_group..][..per_group];
                // SAFETY: the CPU has AVX-512F (asserted above)
                unsafe { group(Planes { inp: &inp, dy: &rows, inp_dims, dy_dims, og }, (g.kh, g.kw), dwg) };
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

/// The elements of a (planes, rows, row length) buffer.
fn volume((a, b, c): Dims) -> usize {
    a * b * c
}

/// One group's operands for a run of images, each image's planes after the last's: the padded
/// input (cg, hp, stride) and dy in rows of whole vectors (og padded to [`OB`], oh, wide), of
/// which the first `og` channels are the group's.
#[derive(Clone, Copy)]
struct Planes<'a> {
    inp: &'a [f32],
    dy: &'a [f32],
    inp_dims: Dims,
    dy_dims: Dims,
    og: usize,
}

/// dw (og, cg, kh, kw) += the gradient of the images in `planes`.
#[target_feature(enable = "avx512f")]
fn group(planes: Planes, (kh, kw): (usize, usize), dw: &mut [f32]) {
    let (cg, hp, stride) = planes.inp_dims;
    let (_, oh, wide) = planes.dy_dims;
    let per_channel = cg * kh * kw;
    for ob in 0..planes.og.div_ceil(OB) {
        let channels = OB.min(planes.og - ob * OB);
        for c in 0..cg {
            for i in 0..kh {
                let mut j0 = 0;
                while j0 < kw {
                    // the tile's first dy row, input row, and weight dW[ob·OB][c][i][j0]
                    let from = (ob * OB * oh * wide, (c * hp + i) * stride + j0);
                    let to = (((ob * OB * cg + c) * kh + i) * kw + j0, per_channel);
                    j0 += match kw - j0 {
                        1 => add_sums(tile::<1>(planes, from), channels, to, dw),
                        2 => add_sums(tile::<2>(planes, from), channels, to, dw),
                        _ => add_sums(tile::<TAPS>(planes, from), channels, to, dw),
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

/// One tile: for b < OB and j < J, the sum over images, rows r and columns x of dy[b][r][x] ·
/// inp[r][x + j], dy from plane offset `from.0` (OB channels) and the input from `from.1` (its
/// channel c, kernel row i and column j0) in each image of `planes`. The images' vectors of
/// sums are added lane by lane, and the lanes summed once at the end (on ResNet-20's 8×8 maps
/// an image is only 8 rows of one vector: summing lanes per image cost as much as the products).
#[target_feature(enable = "avx512f")]
fn tile<const J: usize>(planes: Planes, from: (usize, usize)) -> [[f32; J]; OB] {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_reduce_add_ps};
    let images = planes.dy.len() / volume(planes.dy_dims);
    let mut total = lane_sums::<J>(planes, 0, from);
    for m in 1..images {
        let image = lane_sums::<J>(planes, m, from);
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
fn lane_sums<const J: usize>(planes: Planes, m: usize, (dy_at, inp_at): (usize, usize)) -> [[__m512; J]; OB] {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_setzero_ps};
    let (_, _, stride) = planes.inp_dims;
    let (_, oh, wide) = planes.dy_dims;
    let dy = &planes.dy[m * volume(planes.dy_dims) + dy_at..][..OB * oh * wide];
    let inp = &planes.inp[m * volume(planes.inp_dims) + inp_at..];
    assert!(wide.is_multiple_of(LANES) && inp.len() >= (oh - 1) * stride + wide + J - 1);
    let (dy, inp) = (dy.as_ptr(), inp.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); J]; OB];
    for r in 0..oh {
        for x0 in (0..wide).step_by(LANES) {
            // SAFETY (every load below): in bounds by the slices and the assert above
            let row = unsafe { inp.add(r * stride + x0) };
            let mut xs = [_mm512_setzero_ps(); J];
            for (j, x) in xs.iter_mut().enumerate() {
                *x = unsafe { _mm512_loadu_ps(row.add(j)) };
            }
            for (b, sums) in acc.iter_mut().enumerate() {
                let d = unsafe { _mm512_loadu_ps(dy.add((b * oh + r) * wide + x0)) };
                for (sum, x) in sums.iter_mut().zip(&xs) {
                    *sum = _mm512_fmadd_ps(d, *x, *sum);
                }
            }
        }
    }
    acc
}
