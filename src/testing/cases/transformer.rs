//! Rows for the ops that Transformers add: rotary position embeddings.

use super::{Case, shapes};
use crate::ops::rope::RopePairs;
use crate::testing::{Domain, Input};

const F: Input = Input::float(Domain::Normal);
/// Any values serve as tables: the op and its gradient are exact for any (cos, sin) pair.
const TABLE: Input = Input::fixed(Domain::Range(-1.0, 1.0));

pub(super) fn cases() -> Vec<Case> {
    let rope = |name: &str, sets: Vec<Vec<Vec<usize>>>, offset: usize, pairs: RopePairs| {
        Case::new("rope", name, vec![F, TABLE, TABLE], sets, move |x, _| {
            x[0].rope(&x[1], &x[2], offset, pairs)
        })
        .tol(1e-6)
        .grad_tol(1e-6)
    };
    vec![
        rope(
            "rope, halves",
            shapes(&[
                &[&[2, 3, 4], &[3, 2], &[3, 2]],
                &[&[1, 1, 2], &[1, 1], &[1, 1]],
                &[&[2, 3, 37, 18], &[37, 9], &[37, 9]],
            ]),
            0,
            RopePairs::Halves,
        )
        // more than 65,535 workgroups of 64 pairs, within lavapipe's 128 MiB binding
        .past_grid_limit(vec![vec![1025, 64, 128], vec![64, 64], vec![64, 64]]),
        rope(
            "rope, interleaved, offset 5",
            shapes(&[&[&[2, 3, 6], &[9, 3], &[9, 3]], &[&[3, 2, 13, 10], &[20, 5], &[20, 5]]]),
            5,
            RopePairs::Interleaved,
        ),
    ]
}
