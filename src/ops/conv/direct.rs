//! Direct convolution on the CPU for stride 1 and dilation 1 in thin layers (the 3×3 "same"
//! convolutions of a CIFAR ResNet, LeNet's 5×5s), without an im2col matrix or GEMM packing.
//!
//! Why: for thin layers (16–64 channels on 32×32 maps) the im2col matrix and `matrixmultiply`'s
//! packing of it move as many bytes as the GEMM does FLOPs, so im2col + GEMM runs at a fraction
//! of the FMA rate. Here every output row is accumulated from shifted rows of the zero-padded
//! input, which stay in L1: out[o][r][·] += w[o][c][i][j] · in[c][r + i][j + ·], a
//! multiply-add over a whole row that vectorizes.
//!
//! - forward: y = correlate(x padded, w);
//! - input gradient: dx = correlate(dy padded by k − 1 − p, w with its taps flipped and its
//!   channel axes swapped) — the transposed convolution of stride 1 is a direct one;
//! - weight gradient: dW = the correlation of x padded with dy, summed over images
//!   (`weight_grad`, f32 on AVX-512 only, and for wider layers too; elsewhere im2col + GEMM).
//!
//! The portable register tile holds 4 output channels × 16 (or 8) output columns; it runs
//! compiled for AVX2 and FMA where the CPU has them, for AVX-512 where it has that too
//! (detected at run time; f32 and f64 alike), else for the baseline, with separate multiply and
//! add. f32 on AVX-512 runs a wider tile written with intrinsics instead (`avx512`: 8 channels
//! × 32 pixels). On the development machine (AMD EPYC, 2026-12-02) the two AVX-512 kernels
//! took ResNet-20's CPU training step at batch 128 from 392–470 to 355–431 ms (PyTorch:
//! 351–474 ms in the same rounds).

use super::Geom;
use crate::backend::cpu_pool;
use crate::dtype::Float;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod weight_grad;

/// An element type of the direct kernels, with the fastest of them this CPU runs for it: f32 on
/// AVX-512 has kernels of its own ([`avx512`], [`weight_grad`]); other types and CPUs run the
/// portable ones.
pub(super) trait DirectFloat: Float {
    /// Output channels per block of the kernels [`DirectFloat::correlate`] reads.
    fn block() -> usize {
        OB
    }

    /// The correlation of [`correlate`], with kernels tiled in blocks of
    /// [`DirectFloat::block`], reading up to `slack(stride)` elements past the padded input.
    fn correlate(inp: &[Self], dims: Dims, kt: &[Self], kdims: Dims, ow: usize, out: &mut [Self]) {
        run_correlate(inp, dims, kt, kdims, ow, out)
    }

    /// The weight gradient, where a direct kernel computes it for this type on this CPU.
    fn weight_grad(_g: &Geom, _x: &[Self], _dy: &[Self]) -> Option<Vec<Self>> {
        None
    }
}

impl DirectFloat for f64 {}

#[cfg(not(target_arch = "x86_64"))]
impl DirectFloat for f32 {}

#[cfg(target_arch = "x86_64")]
impl DirectFloat for f32 {
    fn block() -> usize {
        if has_avx512() { avx512::OB } else { OB }
    }

    fn correlate(inp: &[f32], dims: Dims, kt: &[f32], kdims: Dims, ow: usize, out: &mut [f32]) {
        if has_avx512() {
            // SAFETY: the CPU has AVX-512F
            return unsafe { avx512::correlate(inp, dims, kt, kdims, ow, out) };
        }
        run_correlate(inp, dims, kt, kdims, ow, out)
    }

    fn weight_grad(g: &Geom, x: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
        weight_grad::applies(g).then(|| weight_grad::weight_grad(g, x, dy))
    }
}

/// Elements a padded input holds past its planes: the last tiles of `avx512::correlate` read
/// (and ignore) up to a row and two vectors there.
fn slack(stride: usize) -> usize {
    stride + 32
}

/// Whether this CPU runs the f32 kernels written for AVX-512.
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Whether the direct kernels compute this convolution's forward pass and input gradient:
/// stride and dilation 1, padding less than the kernel (so the input gradient is a direct
/// convolution too), output rows of at least 8 pixels (shorter rows do not fill a vector), and
/// thin layers — at most 300 products per output (32 channels of 3×3) — where im2col and
/// `matrixmultiply` lose to their packing; for wider layers the GEMM is faster. Measured on the
/// development machine (quiet): ResNet-20's training step at batch 128 takes 859 ms with these
/// kernels and 920 ms with im2col alone; a 64-channel 3×3 convolution of 32 × 56×56 images,
/// 134 ms direct and 72 ms by GEMM. The limit holds for the AVX-512 tile too: at 600 products
/// (ResNet-20's 64-channel layers direct) its convolutions took 10% more CPU time (`perf`
/// samples, 2026-12-02).
pub(super) fn applies(g: &Geom) -> bool {
    let o = g.opts;
    let (cg, og) = g.per_group();
    let products = cg.max(og) * g.kh * g.kw;
    o.stride == (1, 1)
        && o.dilation == (1, 1)
        && o.padding.0 < g.kh
        && o.padding.1 < g.kw
        && g.ow >= 8
        && products <= 300
}

/// x·w + acc: fused (FMA) or as a multiply and an add.
#[inline(always)]
fn madd<T: Float, const FMA: bool>(x: T, w: T, acc: T) -> T {
    if FMA { x.fused_mul_add(w, acc) } else { x * w + acc }
}

/// The shape of an input image or a kernel set: (channels, height, width) or (out, kh, kw).
type Dims = (usize, usize, usize);

/// Whether this CPU runs the kernels compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// [`correlate`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn correlate_fma<T: Float>(inp: &[T], dims: Dims, kt: &[T], kdims: Dims, ow: usize, out: &mut [T]) {
    correlate::<T, true>(inp, dims, kt, kdims, ow, out)
}

/// [`correlate`] compiled for AVX-512, whose 16-float registers hold a wide tile's row: on the
/// development machine (AMD EPYC, AVX-512) ResNet-20's training step at batch 128 went from
/// 752 to 580 ms with it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn correlate_avx512<T: Float>(inp: &[T], dims: Dims, kt: &[T], kdims: Dims, ow: usize, out: &mut [T]) {
    correlate::<T, true>(inp, dims, kt, kdims, ow, out)
}

/// [`correlate`], with the widest vectors and FMA the CPU has.
fn run_correlate<T: Float>(inp: &[T], dims: Dims, kt: &[T], kdims: Dims, ow: usize, out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, AVX2 and FMA
            return unsafe { correlate_avx512(inp, dims, kt, kdims, ow, out) };
        }
        // SAFETY: the CPU has AVX2 and FMA
        return unsafe { correlate_fma(inp, dims, kt, kdims, ow, out) };
    }
    correlate::<T, false>(inp, dims, kt, kdims, ow, out)
}

/// Output channels computed together by one register tile.
const OB: usize = 4;

/// Output columns per register tile, wide and narrow: (OB × 16) or (OB × 8) accumulators.
const WIDE: usize = 16;
const NARROW: usize = 8;

/// The row length of a padded input whose output rows are `ow` wide with kernels `kw` wide:
/// every tile, the last one included, reads whole (zero-filled) rows.
fn row_stride(ow: usize, kw: usize) -> usize {
    ow.div_ceil(WIDE) * WIDE + kw - 1
}

/// Kernels (oc, ic, kh, kw) rearranged for the register tiles: blocks of `block` output
/// channels (the last padded with zeros), each (ic, kh, kw, block), so that a tap's weights for
/// the block are adjacent.
fn tile_kernels<T: Float>(k: &[T], (oc, ic, taps): Dims, block: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; oc.div_ceil(block) * ic * taps * block];
    for o in 0..oc {
        for c in 0..ic {
            for t in 0..taps {
                out[(((o / block) * ic + c) * taps + t) * block + o % block] = k[(o * ic + c) * taps + t];
            }
        }
    }
    out
}

/// One register tile: output channels of one block (weights `kb`, (ic, kh, kw, OB)) at output
/// row `r`, columns `x0 .. x0 + W`.
#[inline(always)]
fn tile<T: Float, const FMA: bool, const W: usize>(
    inp: &[T],
    (ic, hp, stride): Dims,
    kb: &[T],
    (kh, kw): (usize, usize),
    (r, x0): (usize, usize),
) -> [[T; W]; OB] {
    let mut acc = [[T::ZERO; W]; OB];
    for c in 0..ic {
        for i in 0..kh {
            let row = &inp[(c * hp + r + i) * stride + x0..];
            for j in 0..kw {
                let xs: &[T; W] = row[j..j + W].try_into().expect("rows are padded to whole tiles");
                let w: &[T; OB] = kb[((c * kh + i) * kw + j) * OB..][..OB].try_into().expect("OB weights");
                for b in 0..OB {
                    for l in 0..W {
                        acc[b][l] = madd::<T, FMA>(xs[l], w[b], acc[b][l]);
                    }
                }
            }
        }
    }
    acc
}

/// `out` (oc, oh, ow) = the correlation of `inp` (ic, hp, stride), zero-padded with rows of
/// [`row_stride`], with the tiled kernels `kt` of [`tile_kernels`]:
/// out[o][r][col] = Σ_c Σ_(i,j) k[o][c][i][j] · inp[c][r + i][col + j], oh = hp − kh + 1.
#[inline(always)]
fn correlate<T: Float, const FMA: bool>(
    inp: &[T],
    dims: Dims,
    kt: &[T],
    (oc, kh, kw): Dims,
    ow: usize,
    out: &mut [T],
) {
    let (ic, hp, _) = dims;
    let oh = hp + 1 - kh;
    let per_block = ic * kh * kw * OB;
    for ob in 0..oc.div_ceil(OB) {
        let kb = &kt[ob * per_block..][..per_block];
        let channels = OB.min(oc - ob * OB);
        for r in 0..oh {
            let mut x0 = 0;
            while x0 < ow {
                let width = (ow - x0).min(WIDE);
                let mut store = |b: usize, values: &[T]| {
                    let o = ob * OB + b;
                    out[(o * oh + r) * ow + x0..][..width].copy_from_slice(&values[..width]);
                };
                if width > NARROW {
                    let acc = tile::<T, FMA, WIDE>(inp, dims, kb, (kh, kw), (r, x0));
                    (0..channels).for_each(|b| store(b, &acc[b]));
                } else {
                    let acc = tile::<T, FMA, NARROW>(inp, dims, kb, (kh, kw), (r, x0));
                    (0..channels).for_each(|b| store(b, &acc[b]));
                }
                x0 += width;
            }
        }
    }
}

/// `src` (ch, h, w) into `dst` (ch, h + 2·ph, stride) at column pw, zeros elsewhere.
fn pad_into<T: Float>(src: &[T], (ch, h, w): Dims, (ph, pw): (usize, usize), stride: usize, dst: &mut [T]) {
    let hp = h + 2 * ph;
    dst[..ch * hp * stride].fill(T::ZERO);
    for c in 0..ch {
        for r in 0..h {
            dst[(c * hp + r + ph) * stride + pw..][..w].copy_from_slice(&src[(c * h + r) * w..][..w]);
        }
    }
}

/// The forward convolution: y (N, O, oh, ow) from x (N, C, H, W) and w (O, C/groups, kh, kw).
pub(super) fn forward<T: DirectFloat>(g: &Geom, x: &[T], w: &[T]) -> Vec<T> {
    let (cg, og) = g.per_group();
    let (ph, pw) = g.opts.padding;
    let (hp, wp) = (g.h + 2 * ph, g.w + 2 * pw);
    let (image, out_image, taps) = (g.c * g.h * g.w, g.o * g.oh * g.ow, g.kh * g.kw);
    let stride = row_stride(g.ow, g.kw).max(wp);
    let kernels: Vec<Vec<T>> = (0..g.opts.groups)
        .map(|grp| tile_kernels(&w[grp * og * cg * taps..][..og * cg * taps], (og, cg, taps), T::block()))
        .collect();
    let mut y = cpu_pool::zeroed::<T>(g.n * out_image);
    y.par_chunks_mut(out_image.max(1)).enumerate().for_each(|(n, yn)| {
        let mut padded = vec![T::ZERO; cg * hp * stride + slack(stride)];
        for (grp, kt) in kernels.iter().enumerate() {
            pad_into(&x[n * image + grp * cg * g.h * g.w..], (cg, g.h, g.w), (ph, pw), stride, &mut padded);
            let yg = &mut yn[grp * og * g.oh * g.ow..][..og * g.oh * g.ow];
            T::correlate(&padded, (cg, hp, stride), kt, (og, g.kh, g.kw), g.ow, yg);
        }
    });
    y
}

/// The input gradient: dx (N, C, H, W) from dy (N, O, oh, ow) and w.
pub(super) fn input_grad<T: DirectFloat>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    let (cg, og) = g.per_group();
    let (qh, qw) = (g.kh - 1 - g.opts.padding.0, g.kw - 1 - g.opts.padding.1);
    let (hq, wq) = (g.oh + 2 * qh, g.ow + 2 * qw);
    let (image, out_image, taps) = (g.c * g.h * g.w, g.o * g.oh * g.ow, g.kh * g.kw);
    // per group, the kernels with taps flipped and channel axes swapped: (C/groups, og, kh, kw)
    let mut flipped = vec![T::ZERO; w.len()];
    for grp in 0..g.opts.groups {
        for o in 0..og {
            for c in 0..cg {
                for t in 0..taps {
                    flipped[((grp * cg + c) * og + o) * taps + taps - 1 - t] =
                        w[((grp * og + o) * cg + c) * taps + t];
                }
            }
        }
    }
    let stride = row_stride(g.w, g.kw).max(wq);
    let kernels: Vec<Vec<T>> = (0..g.opts.groups)
        .map(|grp| {
            tile_kernels(&flipped[grp * cg * og * taps..][..cg * og * taps], (cg, og, taps), T::block())
        })
        .collect();
    let mut dx = cpu_pool::zeroed::<T>(g.n * image);
    dx.par_chunks_mut(image.max(1)).enumerate().for_each(|(n, dxn)| {
        let mut padded = vec![T::ZERO; og * hq * stride + slack(stride)];
        for (grp, kt) in kernels.iter().enumerate() {
            pad_into(
                &dy[n * out_image + grp * og * g.oh * g.ow..],
                (og, g.oh, g.ow),
                (qh, qw),
                stride,
                &mut padded,
            );
            let dxg = &mut dxn[grp * cg * g.h * g.w..][..cg * g.h * g.w];
            T::correlate(&padded, (og, hq, stride), kt, (cg, g.kh, g.kw), g.w, dxg);
        }
    });
    dx
}
