//! Rows for f16: the native f16 matmul and convolution (f16 operands, f32 accumulation, one
//! rounding; the convolution's weight gradient in f32 between casts), the native f16 softmax,
//! log-softmax, layer norm and attention (f16 read into f32, computed in f32, one rounding; layer
//! norm's input gradient too; attention's backward in f32 between casts), casts to and from f16, an op that computes an f16 result in f32 between
//! casts, and an autocast layer.
//!
//! Tolerances: the GPU and the CPU reference compute the same f32 values in another order and
//! round each result to f16, where a value near the midpoint of two f16 neighbours may land on
//! either: a few elements one f16 ulp (≤ 2⁻¹⁰ relative) apart, so 1e-3 as a norm-wise relative
//! error forward, and 3e-3 backward, where two or three such roundings chain. No f64 gradient
//! check: finite differences through f16 would measure its rounding; the gradient rules are
//! the f32 ops' and the cast's, which their own rows check in f64.

use super::{Case, shapes};
use crate::ops::conv::ConvOptions;
use crate::testing::{Domain, Input};
use crate::{DType, amp};

const F: Input = Input::float(Domain::Normal);

pub(super) fn cases() -> Vec<Case> {
    let half = |t: &crate::Tensor| t.cast(DType::F16);
    vec![
        f16(Case::new(
            "matmul",
            "matmul f16",
            vec![F, F],
            shapes(&[
                &[&[3, 4], &[4, 5]],
                &[&[1, 1], &[1, 1]],
                &[&[7, 13], &[13, 5]],
                &[&[65, 67], &[67, 129]],
                &[&[2, 257, 129], &[2, 129, 259]],
                &[&[2, 1, 3, 17], &[3, 17, 11]],
            ]),
            move |x, _| half(&x[0]).matmul(&half(&x[1])),
        )),
        f16(Case::new(
            "matmul",
            "matmul f16 aᵀ·bᵀ read in place",
            vec![F, F],
            shapes(&[&[&[4, 3], &[5, 4]], &[&[31, 7], &[11, 31]]]),
            move |x, _| half(&x[0]).t().matmul(&half(&x[1]).t()),
        )),
        f16(Case::new(
            "cast",
            "cast f32 → f16 → f32",
            vec![Input::float(Domain::Range(-70_000.0, 70_000.0))],
            shapes(&[&[&[5, 7]], &[&[1]], &[&[1031]]]),
            move |x, _| half(&x[0]).cast(DType::F32),
        ))
        // the gradient is a cast back: one rounding, as forward
        .grad_tol(1e-3),
        // gelu's chain on a GPU has more than 16 steps and casts: its step functions must not shadow
        // WGSL's f16 (step 16 was once `fn f16`)
        f16(Case::new(
            "cast",
            "gelu of f16, in f32 between casts",
            vec![F],
            shapes(&[&[&[3, 17]], &[&[1, 1]]]),
            move |x, _| half(&x[0]).gelu(),
        )),
        // rows of 17 (one pass per element) and of 64 (held in registers)
        f16(Case::new(
            "softmax",
            "softmax f16",
            vec![F],
            shapes(&[&[&[3, 17]], &[&[1, 1]], &[&[5, 64]]]),
            move |x, _| half(&x[0]).softmax(-1),
        )),
        f16(Case::new(
            "log_softmax",
            "log_softmax f16 along a strided axis",
            vec![F],
            shapes(&[&[&[9, 6]], &[&[2, 1]]]),
            move |x, _| half(&x[0]).log_softmax(0),
        )),
        // rows of at least 3: a row of 2 normalizes to ±1 whatever its values, and its input
        // gradient is exactly 0 — rounding noise
        f16(Case::new(
            "layer_norm",
            "layer_norm f16 with weight and bias",
            vec![F, F, F],
            shapes(&[&[&[3, 7], &[7], &[7]], &[&[4, 2, 12], &[12], &[12]], &[&[1, 5], &[5], &[5]]]),
            move |x, _| half(&x[0]).layer_norm(&[x[1].numel()], Some(&half(&x[1])), Some(&half(&x[2])), 1e-5),
        )),
        // head sizes 8 (the flash kernels) and 3 (the general ones); the backward passes compute
        // in f32 between casts, from f32 statistics. At least 3 positions: with one key the
        // weights are 1 whatever q and k are, so their gradients are exactly 0 — rounding noise
        // (seed 1796082509503180967 measured it at relative error 1)
        f16(Case::new(
            "attention",
            "attention f16 causal",
            vec![F, F, F],
            shapes(&[&[&[2, 9, 8], &[2, 9, 8], &[2, 9, 8]], &[&[1, 3, 4], &[1, 3, 4], &[1, 3, 4]]]),
            move |x, _| half(&x[0]).attention(&half(&x[1]), &half(&x[2]), true, None),
        )),
        f16(Case::new(
            "attention",
            "attention f16, head size 3",
            vec![F, F, F],
            shapes(&[&[&[2, 5, 3], &[2, 7, 3], &[2, 7, 5]]]),
            move |x, _| half(&x[0]).attention(&half(&x[1]), &half(&x[2]), false, None),
        )),
        f16(Case::new(
            "conv2d",
            "conv2d f16",
            vec![F, F],
            shapes(&[&[&[2, 3, 9, 7], &[4, 3, 3, 3]], &[&[1, 1, 1, 1], &[1, 1, 1, 1]]]),
            move |x, _| half(&x[0]).conv2d(&half(&x[1]), Default::default()),
        )),
        f16(Case::new(
            "conv2d",
            "conv2d f16 stride 2 padding 1 groups 2",
            vec![F, F],
            shapes(&[&[&[2, 4, 11, 9], &[6, 2, 3, 3]], &[&[1, 2, 5, 5], &[2, 1, 3, 3]]]),
            move |x, _| {
                let opts = ConvOptions::default().stride(2).padding(1).groups(2);
                half(&x[0]).conv2d(&half(&x[1]), opts)
            },
        )),
        f16(Case::composite(
            "autocast linear layer, ReLU, cross-entropy",
            vec![F, F, F],
            shapes(&[&[&[6, 11], &[5, 11], &[5]], &[&[1, 3], &[2, 3], &[2]]]),
            |x, _| {
                let _autocast = amp::autocast(DType::F16);
                let logits = (x[0].matmul(&x[1].t()) + &x[2].cast(DType::F16)).relu();
                logits.log_softmax(-1).sum_all()
            },
        )),
    ]
}

/// An f16 row with the tolerances of the module doc, and no f64 gradient check.
fn f16(case: Case) -> Case {
    case.no_gradcheck().tol(1e-3).grad_tol(3e-3)
}
