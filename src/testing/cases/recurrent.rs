//! Rows for the fused recurrent cells: one step of an LSTM, GRU or RNN, with and without
//! per-sequence lengths, at step (T − 1)/2 of `gx` (so the step offset matters).

use super::Case;
use crate::ops::recurrent::{CellKind, Step};
use crate::testing::{Domain, Input};

const F: Input = Input::float(Domain::Normal);
/// Lengths in [0, T): at step (T − 1)/2 of T ≥ 2 steps some rows have ended and some have not.
const LENGTHS: Input = Input::fixed(Domain::Index { of: 0, axis: 0 });

pub(super) fn cases() -> Vec<Case> {
    [CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh, CellKind::RnnRelu]
        .into_iter()
        .flat_map(|kind| [row(kind, false), row(kind, true)])
        .collect()
}

/// A row for `kind`: inputs gx (T, B, G·H), gh (B, G·H), the state, the GRU's hidden bias
/// (T, B, H) and, `with_lengths`, i32 lengths (B).
fn row(kind: CellKind, with_lengths: bool) -> Case {
    let g = kind.gates();
    let gru = kind == CellKind::Gru;
    // (T, B, H): B = 1, H = 1 and primes; and once per kernel, more than 65,535 workgroups of 64
    // elements (with lengths, where all its rows would have ended, that adds nothing)
    let mut sizes = vec![[4, 6, 3], [1, 1, 1], [2, 5, 7], [3, 4, 31]];
    if !with_lengths && kind != CellKind::RnnRelu {
        sizes.push([1, 16_321, 257]);
    }
    let sets: Vec<Vec<Vec<usize>>> = sizes
        .iter()
        .map(|&[t, b, h]| {
            let state = if kind.has_cell_state() { vec![2, b, h] } else { vec![b, h] };
            let mut set = vec![vec![t, b, g * h], vec![b, g * h], state];
            if gru {
                set.push(vec![t, b, h]);
            }
            if with_lengths {
                set.push(vec![b]);
            }
            set
        })
        .collect();
    let mut inputs = vec![F, F, F];
    if gru {
        inputs.push(F);
    }
    if with_lengths {
        inputs.push(LENGTHS);
    }
    let name = format!("{kind:?} cell{}", if with_lengths { " with lengths" } else { "" });
    Case::new(name, inputs, sets, move |x, _| {
        let step = Step {
            gx: &x[0],
            t: (x[0].dim(0) - 1) / 2,
            gh: &x[1],
            state: &x[2],
            hidden_bias: gru.then(|| &x[3]),
            lengths: with_lengths.then(|| &x[3 + gru as usize]),
        };
        kind.step(step)
    })
    // a few f32 roundings of sigmoids and tanhs per element, a few more through the gradient
    .tol(1e-5)
    .grad_tol(1e-4)
}
