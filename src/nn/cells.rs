//! Recurrent cells for hand-written time loops, as PyTorch's `RNNCell`, `GRUCell` and
//! `LSTMCell` (parameters `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`): each call is one step,
//! one matmul for the input, one for the recurrent term and one fused cell op, the same ops the
//! [`crate::nn::LSTM`] layers run.
//!
//! ```
//! use kiln::nn::LSTMCell;
//! use kiln::{Device, Tensor};
//! let dev = Device::Cpu;
//! let cell = LSTMCell::new(4, 8, &dev);
//! let xs = Tensor::randn([6, 2, 4], &dev); // (seq, batch, input)
//! let mut state = cell.zero_state(2);
//! for t in 0..6 {
//!     state = cell.forward(&xs.select(0, t), &state);
//! }
//! assert_eq!(state.h.dims(), &[2, 8]);
//! ```
//!
//! Each cell also implements [`Module`], whose one-tensor `forward` steps from the zero state and
//! returns h (call it as `Module::forward(&cell, &x)`: the inherent two-argument `forward`
//! takes the name).

use super::recurrent::{LstmState, Nonlinearity, RecurrentWeights};
use super::{Module, Visitor};
use crate::ops::recurrent::CellKind;
use crate::{Device, Tensor};

/// The weights and kind of a cell, and its checks.
struct Cell {
    kind: CellKind,
    /// `"LSTMCell"`, for messages.
    name: &'static str,
    weights: RecurrentWeights,
}

impl Cell {
    #[track_caller]
    fn new(kind: CellKind, name: &'static str, input: usize, hidden: usize, device: &Device) -> Cell {
        if hidden == 0 {
            panic!("{name}: hidden_size must be positive");
        }
        Cell { kind, name, weights: RecurrentWeights::new(kind, input, hidden, true, device) }
    }

    fn hidden(&self) -> usize {
        self.weights.weight_hh.dim(1)
    }

    /// The new state (packed [h; c] for the LSTM) from input `x` (B, I) and `state`.
    #[track_caller]
    fn step(&self, x: &Tensor, state: &Tensor) -> Tensor {
        let w = &self.weights;
        let (input, hidden) = (w.weight_ih.dim(1), self.hidden());
        let batch = x.dims().first().copied().unwrap_or(0);
        let state_dims =
            if self.kind.has_cell_state() { vec![2, batch, hidden] } else { vec![batch, hidden] };
        let fits = x.rank() == 2
            && x.dim(1) == input
            && x.dtype() == w.weight_ih.dtype()
            && state.dims() == state_dims
            && state.dtype() == x.dtype();
        if !fits {
            panic!(
                "{}: input {} {} and state {} {} do not fit: expected {} (batch, {input}) and {state_dims:?}",
                self.name,
                x.shape(),
                x.dtype(),
                state.shape(),
                state.dtype(),
                w.weight_ih.dtype()
            );
        }
        w.step(self.kind, x, state)
    }

    /// Zeros (batch, hidden) (twice, packed, for the LSTM).
    fn zeros(&self, batch: usize) -> Tensor {
        let dims = if self.kind.has_cell_state() {
            vec![2, batch, self.hidden()]
        } else {
            vec![batch, self.hidden()]
        };
        Tensor::full(dims, 0.0, self.weights.weight_ih.dtype(), &self.weights.weight_ih.device())
    }
}

macro_rules! cell_module {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(Cell);

        impl $name {
            /// The cell without biases (PyTorch's `bias=False`).
            pub fn without_bias(mut self) -> $name {
                self.0.weights.bias_ih = None;
                self.0.weights.bias_hh = None;
                self
            }

            /// The parameters.
            pub fn weights(&self) -> &RecurrentWeights {
                &self.0.weights
            }
        }

        impl Module for $name {
            /// One step from the zero state: h.
            #[track_caller]
            fn forward(&self, x: &Tensor) -> Tensor {
                let batch = x.dims().first().copied().unwrap_or(0);
                self.0.kind.hidden_of(&self.0.step(x, &self.0.zeros(batch)))
            }

            fn visit(&self, v: &mut dyn Visitor) {
                self.0.weights.visit(v, "");
            }
        }
    };
}

cell_module!(LSTMCell, "An LSTM cell, as `torch.nn.LSTMCell`: gates i, f, g, o.");
cell_module!(GRUCell, "A GRU cell, as `torch.nn.GRUCell`: gates r, z, n.");
cell_module!(
    RNNCell,
    "An Elman RNN cell, h' = tanh(W_ih·x + b_ih + W_hh·h + b_hh) (or relu), as `torch.nn.RNNCell`."
);

impl LSTMCell {
    /// A cell from `input_size` features to `hidden_size`, initialized as PyTorch does.
    #[track_caller]
    pub fn new(input_size: usize, hidden_size: usize, device: &Device) -> LSTMCell {
        LSTMCell(Cell::new(CellKind::Lstm, "LSTMCell", input_size, hidden_size, device))
    }

    /// The zero state for `batch` rows.
    pub fn zero_state(&self, batch: usize) -> LstmState {
        let zeros =
            Tensor::full([batch, self.0.hidden()], 0.0, self.0.weights.weight_ih.dtype(), &self.device());
        LstmState { h: zeros.clone(), c: zeros }
    }

    /// The state after one step on input `x` (batch, input) from `state` (h and c (batch,
    /// hidden)).
    ///
    /// Panics (at the caller's line) when the shapes do not fit.
    #[track_caller]
    pub fn forward(&self, x: &Tensor, state: &LstmState) -> LstmState {
        let packed = self.0.step(x, &Tensor::stack(&[state.h.clone(), state.c.clone()], 0));
        LstmState { h: packed.select(0, 0), c: packed.select(0, 1) }
    }

    fn device(&self) -> Device {
        self.0.weights.weight_ih.device()
    }
}

impl GRUCell {
    /// A cell from `input_size` features to `hidden_size`, initialized as PyTorch does.
    #[track_caller]
    pub fn new(input_size: usize, hidden_size: usize, device: &Device) -> GRUCell {
        GRUCell(Cell::new(CellKind::Gru, "GRUCell", input_size, hidden_size, device))
    }

    /// The zero state h for `batch` rows.
    pub fn zero_state(&self, batch: usize) -> Tensor {
        self.0.zeros(batch)
    }

    /// h after one step on input `x` (batch, input) from `h` (batch, hidden).
    ///
    /// Panics (at the caller's line) when the shapes do not fit.
    #[track_caller]
    pub fn forward(&self, x: &Tensor, h: &Tensor) -> Tensor {
        self.0.step(x, h)
    }
}

impl RNNCell {
    /// A tanh cell from `input_size` features to `hidden_size`, initialized as PyTorch does.
    #[track_caller]
    pub fn new(input_size: usize, hidden_size: usize, device: &Device) -> RNNCell {
        RNNCell::with_nonlinearity(input_size, hidden_size, Nonlinearity::Tanh, device)
    }

    /// A cell with the given nonlinearity.
    #[track_caller]
    pub fn with_nonlinearity(
        input_size: usize,
        hidden_size: usize,
        nonlinearity: Nonlinearity,
        device: &Device,
    ) -> RNNCell {
        RNNCell(Cell::new(nonlinearity.cell(), "RNNCell", input_size, hidden_size, device))
    }

    /// The zero state h for `batch` rows.
    pub fn zero_state(&self, batch: usize) -> Tensor {
        self.0.zeros(batch)
    }

    /// h after one step on input `x` (batch, input) from `h` (batch, hidden).
    ///
    /// Panics (at the caller's line) when the shapes do not fit.
    #[track_caller]
    pub fn forward(&self, x: &Tensor, h: &Tensor) -> Tensor {
        self.0.step(x, h)
    }
}
