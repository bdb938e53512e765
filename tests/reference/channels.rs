//! Fast-path checks of the per-channel ops of batch normalization against plain f64 loops over
//! the channel axis 1 of (N, C, …) inputs, written here from the ops' definitions.

use super::{Check, Draw, FEW_ROUNDINGS, ONE_ROUNDING, check};
use crate::loops::{Host, unravel};

/// The channel (index on axis 1) of every element of `x`.
fn channels(x: &Host) -> Vec<usize> {
    (0..x.v.len()).map(|i| unravel(i, &x.shape)[1]).collect()
}

/// (2, C): means, then biased variances, in f64 (two passes).
fn moments(x: &Host) -> Vec<f64> {
    let (c, of) = (x.shape[1], channels(x));
    let count = (x.v.len() / c) as f64;
    let mut means = vec![0.0; c];
    for (&ch, &v) in of.iter().zip(&x.v) {
        means[ch] += v / count;
    }
    let mut vars = vec![0.0; c];
    for (&ch, &v) in of.iter().zip(&x.v) {
        vars[ch] += (v - means[ch]).powi(2) / count;
    }
    means.into_iter().chain(vars).collect()
}

/// (2, C): Σa, then Σa·b, per channel.
fn sums(a: &Host, b: &Host) -> Vec<f64> {
    let (c, of) = (a.shape[1], channels(a));
    let (mut sum, mut dot) = (vec![0.0; c], vec![0.0; c]);
    for (i, &ch) in of.iter().enumerate() {
        sum[ch] += a.v[i];
        dot[ch] += a.v[i] * b.v[i];
    }
    sum.into_iter().chain(dot).collect()
}

/// x·scale[c] + shift[c].
fn affine(x: &Host, scale: &Host, shift: &Host) -> Vec<f64> {
    (0..x.v.len())
        .map(|i| {
            let c = unravel(i, &x.shape)[1];
            x.v[i] * scale.v[c] + shift.v[c]
        })
        .collect()
}

/// The reductions into (2, C) with 131,072 channels (a 1 MiB output) of a few elements each,
/// sums in f64 rounded once; the affine over (8, 16, 64, 40) (1.25 MiB), a product and a sum in
/// f32: two roundings.
pub(super) fn checks(d: &mut Draw) -> Vec<Check> {
    let wide = [3, 131_072, 2];
    let image = [8, 16, 64, 40];
    vec![
        check(
            "channel_moments",
            "131,072 channels",
            vec![d.normal(&wide)],
            ONE_ROUNDING,
            |t| t[0].channel_moments(),
            |h| moments(&h[0]),
        ),
        check(
            "channel_sums",
            "131,072 channels",
            vec![d.normal(&wide), d.normal(&wide)],
            ONE_ROUNDING,
            |t| t[0].channel_sums(&t[1]),
            |h| sums(&h[0], &h[1]),
        ),
        check(
            "channel_affine",
            "(8, 16, 64, 40)",
            vec![d.normal(&image), d.normal(&[16]), d.normal(&[16])],
            FEW_ROUNDINGS,
            |t| t[0].channel_affine(&t[1], &t[2]),
            |h| affine(&h[0], &h[1], &h[2]),
        ),
    ]
}
