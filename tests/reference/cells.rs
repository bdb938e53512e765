//! Fast-path checks of the recurrent cells, forward and backward, against the plain f64 loops
//! of `cell_loops::CellStep`.

use super::{Check, Draw, FEW_ROUNDINGS, check};
use crate::cell_loops::{Cell, CellStep};
use crate::loops::Host;
use kiln::Tensor;
use kiln::testing::gradient_op;

/// The reference of a cell check's step from its inputs (gx, gh, state, [b_hn], lengths, …).
fn cell_step(cell: Cell, h: &[Host]) -> CellStep<'_> {
    let gru = cell == Cell::Gru;
    CellStep {
        cell,
        t: 1,
        gx: &h[0],
        gh: &h[1],
        state: &h[2],
        b_hn: gru.then(|| &h[3]),
        lengths: Some(&h[3 + gru as usize]),
    }
}

/// The recurrent cells forward and backward, at step 1 of 3 with lengths in [0, 3) (about a
/// third of the rows still running, the rest passing their state through), the GRU with b_hn.
/// Sigmoids and tanhs in f32 (a fast exp within 2 ulp, a rational tanh within 4e-7) and their
/// slopes, a few of them multiplied per element: a few roundings.
pub(super) fn checks(d: &mut Draw) -> Vec<Check> {
    use kiln::ops::recurrent::{CellKind, Step};
    let mut checks = Vec::new();
    let kinds = [
        (Cell::Lstm, CellKind::Lstm, "lstm_cell", "lstm_cell_grad"),
        (Cell::Gru, CellKind::Gru, "gru_cell", "gru_cell_grad"),
        (Cell::RnnTanh, CellKind::RnnTanh, "rnn_cell", "rnn_cell_grad"),
        (Cell::RnnRelu, CellKind::RnnRelu, "rnn_cell", "rnn_cell_grad"),
    ];
    for (cell, kind, forward, backward) in kinds {
        // outputs of at least 1 MiB: the state (B·H, twice for the LSTM) and the packed gradients
        let (b, h) = if cell == Cell::Lstm { (512, 256) } else { (1_024, 256) };
        let gates = match cell {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::RnnTanh | Cell::RnnRelu => 1,
        };
        let state: Vec<usize> = if cell == Cell::Lstm { vec![2, b, h] } else { vec![b, h] };
        let gru = cell == Cell::Gru;
        // gx, gh, state, [b_hn], lengths, dy
        let mut inputs = vec![d.normal(&[3, b, gates * h]), d.normal(&[b, gates * h]), d.normal(&state)];
        if gru {
            inputs.push(d.normal(&[3, b, h]));
        }
        inputs.push(d.index(&[b], 3));
        inputs.push(d.normal(&state));
        // the step, from the inputs before dy
        let step = move |t: &[Tensor]| {
            kind.step(Step {
                gx: &t[0],
                t: 1,
                gh: &t[1],
                state: &t[2],
                hidden_bias: gru.then(|| &t[3]),
                lengths: Some(&t[3 + gru as usize]),
            })
        };
        let what = format!("{cell:?}, lengths");
        checks.push(check(forward, what.clone(), inputs.clone(), FEW_ROUNDINGS, step, move |h| {
            cell_step(cell, h).forward()
        }));
        checks.push(check(
            backward,
            what,
            inputs,
            FEW_ROUNDINGS,
            move |t| gradient_op(&step(t), t.last().expect("dy"), backward, 0),
            move |h| cell_step(cell, h).backward(h.last().expect("dy")),
        ));
    }
    checks
}
