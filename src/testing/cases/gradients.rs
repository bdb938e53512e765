//! Rows for the ops that only gradient rules create (`conv2d_input_grad`, `layer_norm_grad`,
//! `attention_grad`, ...), each on inputs of its own: the row builds the forward op, asks its
//! gradient rule for the upstream gradient `dy` (an input of the row), and returns the node of
//! the op under test. Their gradients are not rows here: the f64 gradient check of the forward
//! op checks the rule that creates them.

use super::layers::{POOL_PAST_GRID_LIMIT, POOLED_PAST_GRID_LIMIT, ROWS_PAST_GRID_LIMIT};
use super::{Case, shapes};
use crate::ops::conv::ConvOptions;
use crate::ops::loss::CrossEntropy;
use crate::ops::pool::PoolOptions;
use crate::testing::gradient_op;
use crate::testing::{Domain, Input};
use crate::{Device, Tensor};

/// A value input: no gradient is taken through these rows.
const V: Input = Input::fixed(Domain::Normal);

/// A row for gradient op `op`, built by `forward` from all inputs but the last, which is `dy`.
fn gradient_row(
    op: &'static str,
    name: &str,
    inputs: Vec<Input>,
    sets: Vec<Vec<Vec<usize>>>,
    forward: impl Fn(&[Tensor]) -> Tensor + Send + Sync + 'static,
) -> Case {
    gradient_row_nth(op, name, inputs, sets, 0, forward)
}

fn gradient_row_nth(
    op: &'static str,
    name: &str,
    inputs: Vec<Input>,
    sets: Vec<Vec<Vec<usize>>>,
    nth: usize,
    forward: impl Fn(&[Tensor]) -> Tensor + Send + Sync + 'static,
) -> Case {
    Case::new(op, name, inputs, sets, move |x: &[Tensor], _: &Device| {
        let (dy, rest) = x.split_last().expect("dy is the last input");
        gradient_op(&forward(rest), dy, op, nth)
    })
    .no_grad()
}

pub(super) fn cases() -> Vec<Case> {
    let conv = ConvOptions { stride: (2, 2), padding: (1, 1), dilation: (1, 1), groups: 2 };
    // (x, w, dy): dy has the convolution's output shape, ⌊(H + 2 − 3)/2⌋ + 1 by ⌊(W + 2 − 3)/2⌋ + 1
    let conv_sets = shapes(&[
        &[&[2, 4, 7, 6], &[6, 2, 3, 3], &[2, 6, 4, 3]],
        &[&[1, 2, 1, 1], &[2, 1, 1, 1], &[1, 2, 2, 2]],
        &[&[3, 2, 13, 11], &[4, 1, 3, 3], &[3, 4, 7, 6]],
    ]);
    // a 2×2 window at stride 1: each input in up to four windows; dy one smaller each way
    let pool = PoolOptions::new(2).stride(1);
    let pool_sets = shapes(&[
        &[&[2, 2, 5, 5], &[2, 2, 4, 4]],
        &[&[1, 1, 2, 2], &[1, 1, 1, 1]],
        &[&[1, 3, 7, 6], &[1, 3, 6, 5]],
    ]);
    let pool_large = vec![POOL_PAST_GRID_LIMIT.to_vec(), POOLED_PAST_GRID_LIMIT.to_vec()];
    let index_of_class = Input::fixed(Domain::Index { of: 0, axis: 1 });
    let attention_sets = shapes(&[
        &[&[2, 3, 4], &[2, 5, 4], &[2, 5, 3], &[2, 3, 3]],
        &[&[1, 1, 1], &[1, 3, 1], &[1, 3, 1], &[1, 1, 1]],
        &[&[2, 67, 8], &[2, 131, 8], &[2, 131, 12], &[2, 67, 12]],
    ]);
    let attention = |x: &[Tensor]| x[0].attention(&x[1], &x[2], true, None);
    vec![
        gradient_row("conv2d_input_grad", "conv2d_input_grad", vec![V, V, V], conv_sets.clone(), move |x| {
            x[0].conv2d(&x[1], conv)
        })
        .tol(2e-5),
        gradient_row("conv2d_weight_grad", "conv2d_weight_grad", vec![V, V, V], conv_sets, move |x| {
            x[0].conv2d(&x[1], conv)
        })
        .tol(2e-5),
        gradient_row("max_pool2d_grad", "max_pool2d_grad", vec![V, V], pool_sets.clone(), move |x| {
            x[0].max_pool2d(pool)
        })
        // overlapping windows add several gradients into one input, in another order
        .tol(1e-6)
        .past_grid_limit(pool_large.clone()),
        gradient_row("avg_pool2d_grad", "avg_pool2d_grad", vec![V, V], pool_sets, move |x| {
            x[0].avg_pool2d(pool)
        })
        .tol(1e-6)
        .past_grid_limit(pool_large),
        gradient_row(
            "layer_norm_grad",
            "layer_norm_grad with weight",
            vec![V, V, V],
            shapes(&[
                &[&[3, 7], &[7], &[3, 7]],
                &[&[1, 1], &[1], &[1, 1]],
                &[&[5, 1031], &[1031], &[5, 1031]],
            ]),
            |x| x[0].layer_norm(&[x[1].dims()[0]], Some(&x[1]), None, 1e-5),
        )
        .tol(2e-5)
        .past_grid_limit(vec![vec![ROWS_PAST_GRID_LIMIT, 4], vec![4], vec![ROWS_PAST_GRID_LIMIT, 4]]),
        // dy: one per row of logits
        gradient_row(
            "cross_entropy_grad",
            "cross_entropy_grad",
            vec![V, index_of_class, V],
            shapes(&[&[&[4, 5], &[4], &[4]], &[&[1, 1], &[1], &[1]], &[&[3, 1031], &[3], &[3]]]),
            |x| x[0].cross_entropy_per_row(&x[1], CrossEntropy::default()),
        )
        .past_grid_limit(vec![
            vec![ROWS_PAST_GRID_LIMIT, 2],
            vec![ROWS_PAST_GRID_LIMIT],
            vec![ROWS_PAST_GRID_LIMIT],
        ]),
        // attention's rule makes one node of dk, dv and dq (the statistics computed inside)
        gradient_row("attention_grad", "attention_grad causal", vec![V; 4], attention_sets, attention)
            .tol(2e-4),
    ]
}
