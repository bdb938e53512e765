//! Rows for the fused recurrent cells: one step of an LSTM, GRU or RNN, with and without
//! per-sequence lengths, at step (T − 1)/2 of `gx` (so the step offset matters); and rows for
//! the fused backward op each step's gradient rule makes, on an upstream gradient of their own.

use super::Case;
use crate::Tensor;
use crate::ops::recurrent::{CellKind, Step};
use crate::testing::{Domain, Input, gradient_op};

const F: Input = Input::float(Domain::Normal);
/// The upstream gradient of a backward row: a value, not differentiated.
const DY: Input = Input::fixed(Domain::Normal);
/// Lengths in [0, T): at step (T − 1)/2 of T ≥ 2 steps some rows have ended and some have not.
const LENGTHS: Input = Input::fixed(Domain::Index { of: 0, axis: 0 });
/// (T, B, H): T = 1, B = 1 and primes. Not H = 1 with B = 1: a GRU's or LSTM's state update
/// can cancel, (1 − z)·n + z·h ≈ 0, and the relative error of a single element that cancels
/// measures the cancellation, not the kernel (a seed gave 1.0e-4 against the row's 1e-5 so).
const SIZES: [[usize; 3]; 4] = [[4, 6, 3], [1, 1, 2], [2, 5, 7], [3, 4, 31]];
/// More than 65,535 workgroups of 64 elements.
const PAST_GRID_LIMIT: [usize; 3] = [1, 16_321, 257];

pub(super) fn cases() -> Vec<Case> {
    [CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh, CellKind::RnnRelu]
        .into_iter()
        .flat_map(|kind| [false, true].map(|with_lengths| Cell { kind, with_lengths }))
        .flat_map(|cell| [cell.forward_row(), cell.backward_row()])
        .collect()
}

/// One cell configuration: its inputs are gx (T, B, G·H), gh (B, G·H), the state, the GRU's
/// hidden bias (T, B, H) and, `with_lengths`, i32 lengths (B).
#[derive(Clone, Copy)]
struct Cell {
    kind: CellKind,
    with_lengths: bool,
}

impl Cell {
    fn gru(self) -> bool {
        self.kind == CellKind::Gru
    }

    fn inputs(self) -> Vec<Input> {
        let mut inputs = vec![F, F, F];
        if self.gru() {
            inputs.push(F);
        }
        if self.with_lengths {
            inputs.push(LENGTHS);
        }
        inputs
    }

    fn state(self, b: usize, h: usize) -> Vec<usize> {
        if self.kind.has_cell_state() { vec![2, b, h] } else { vec![b, h] }
    }

    fn set(self, [t, b, h]: [usize; 3]) -> Vec<Vec<usize>> {
        let g = self.kind.gates();
        let mut set = vec![vec![t, b, g * h], vec![b, g * h], self.state(b, h)];
        if self.gru() {
            set.push(vec![t, b, h]);
        }
        if self.with_lengths {
            set.push(vec![b]);
        }
        set
    }

    /// The step at (T − 1)/2 of the row's inputs.
    fn step(self, x: &[Tensor]) -> Tensor {
        let step = Step {
            gx: &x[0],
            t: (x[0].dim(0) - 1) / 2,
            gh: &x[1],
            state: &x[2],
            hidden_bias: self.gru().then(|| &x[3]),
            lengths: self.with_lengths.then(|| &x[3 + self.gru() as usize]),
        };
        self.kind.step(step)
    }

    fn name(self, what: &str) -> String {
        format!("{:?} {what}{}", self.kind, if self.with_lengths { " with lengths" } else { "" })
    }

    fn op(self) -> &'static str {
        match self.kind {
            CellKind::Lstm => "lstm_cell",
            CellKind::Gru => "gru_cell",
            CellKind::RnnTanh | CellKind::RnnRelu => "rnn_cell",
        }
    }

    /// The row's large shape, once per kernel (with lengths, where all its rows would have
    /// ended, it adds nothing; the relu RNN shares the tanh RNN's kernel).
    fn past_grid_limit(self) -> bool {
        !self.with_lengths && self.kind != CellKind::RnnRelu
    }

    fn forward_row(self) -> Case {
        let sets = SIZES.map(|s| self.set(s)).to_vec();
        let case = Case::new(self.op(), self.name("cell"), self.inputs(), sets, move |x, _| self.step(x))
            // a few f32 roundings of sigmoids and tanhs per element, a few more through the gradient
            .tol(1e-5)
            .grad_tol(1e-4);
        if self.past_grid_limit() { case.past_grid_limit(self.set(PAST_GRID_LIMIT)) } else { case }
    }

    /// The fused backward op, all of a step's gradients packed in one output, on upstream `dy`
    /// (the last input, shaped as the state).
    fn backward_row(self) -> Case {
        let with_dy = move |[t, b, h]: [usize; 3]| {
            let mut set = self.set([t, b, h]);
            set.push(self.state(b, h));
            set
        };
        let mut inputs = self.inputs();
        inputs.push(DY);
        let op = match self.kind {
            CellKind::Lstm => "lstm_cell_grad",
            CellKind::Gru => "gru_cell_grad",
            CellKind::RnnTanh | CellKind::RnnRelu => "rnn_cell_grad",
        };
        let sets = SIZES.map(with_dy).to_vec();
        let case = Case::new(op, self.name("cell backward"), inputs, sets, move |x, _| {
            let (dy, rest) = x.split_last().expect("dy is the last input");
            gradient_op(&self.step(rest), dy, op, 0)
        })
        .no_grad()
        // the derivatives of sigmoids and tanhs from the saved gates: a few roundings each
        .tol(1e-5);
        // the GRU's eight packed blocks of B·H at that size pass the 128 MiB storage binding that
        // adapters guarantee; its forward row covers the folded grid of the family's kernels
        if self.past_grid_limit() && self.kind != CellKind::Gru {
            case.past_grid_limit(with_dy(PAST_GRID_LIMIT))
        } else {
            case
        }
    }
}
