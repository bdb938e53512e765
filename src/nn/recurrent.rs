//! Recurrent layers with PyTorch's surface and state-dict names: [`RNN`], [`GRU`] and [`LSTM`],
//! stacked (`num_layers`), optionally bidirectional, batch-first, with dropout between layers
//! and variable-length batches.
//!
//! Each layer and direction computes the input projections of all steps as one matmul; then each
//! step is one matmul for the recurrent term and one fused cell op (`ops::recurrent`). W_hh is
//! stored transposed once per forward ([`Tensor::t_stored`]), so that every step's product reads
//! it by rows, and each step's h is the node the next step's product reads and the output
//! stacks. The cells for hand-written loops are in `cells.rs` and use the same ops.
//!
//! `Module::forward(x)` runs from a zero state over full sequences and returns the output; the
//! inherent `forward_with(x, state, lengths)` takes an initial state and per-sequence lengths and
//! also returns the final state.
//!
//! ```
//! use kiln::nn::{LSTM, LstmState, RnnOptions};
//! use kiln::{Device, Tensor};
//! let dev = Device::Cpu;
//! let lstm = LSTM::new(8, 16, RnnOptions::default().num_layers(2).bidirectional(true), &dev);
//! let x = Tensor::randn([5, 3, 8], &dev); // (seq, batch, input)
//! let lengths = Tensor::from_vec(vec![5i32, 2, 4], [3], &dev);
//! let (out, LstmState { h, c }) = lstm.forward_with(&x, None, Some(&lengths));
//! assert_eq!(out.dims(), &[5, 3, 32]); // zero past each sequence's length
//! assert_eq!(h.dims(), &[4, 3, 16]); // (layers·directions, batch, hidden)
//! assert_eq!(c.dims(), h.dims());
//! ```

use super::{Module, Visitor, init};
use crate::ops::recurrent::{CellKind, Step};
use crate::{Device, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

/// The constructor arguments that `RNN`, `GRU` and `LSTM` share, with PyTorch's defaults.
///
/// ```
/// # use kiln::nn::RnnOptions;
/// let o = RnnOptions::default().num_layers(2).batch_first(true).dropout(0.2);
/// assert!(o.bias && !o.bidirectional);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RnnOptions {
    /// Stacked layers (1).
    pub num_layers: usize,
    /// Whether the layers have biases b_ih and b_hh (true).
    pub bias: bool,
    /// Whether inputs and outputs are (batch, seq, feature) instead of (seq, batch, feature)
    /// (false). States are (layers·directions, batch, hidden) either way.
    pub batch_first: bool,
    /// Dropout probability on the outputs of every layer but the last, in training (0).
    pub dropout: f32,
    /// Whether each layer also runs backwards over the sequence (false).
    pub bidirectional: bool,
}

impl Default for RnnOptions {
    fn default() -> RnnOptions {
        RnnOptions { num_layers: 1, bias: true, batch_first: false, dropout: 0.0, bidirectional: false }
    }
}

impl RnnOptions {
    /// Sets the number of stacked layers.
    pub fn num_layers(mut self, n: usize) -> RnnOptions {
        self.num_layers = n;
        self
    }

    /// Sets whether the layers have biases.
    pub fn bias(mut self, on: bool) -> RnnOptions {
        self.bias = on;
        self
    }

    /// Sets whether inputs and outputs are batch-first.
    pub fn batch_first(mut self, on: bool) -> RnnOptions {
        self.batch_first = on;
        self
    }

    /// Sets the dropout between layers.
    pub fn dropout(mut self, p: f32) -> RnnOptions {
        self.dropout = p;
        self
    }

    /// Sets whether the layers are bidirectional.
    pub fn bidirectional(mut self, on: bool) -> RnnOptions {
        self.bidirectional = on;
        self
    }

    fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }
}

/// The nonlinearity of an [`RNN`] or [`crate::nn::RNNCell`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Nonlinearity {
    /// tanh (PyTorch's default).
    #[default]
    Tanh,
    /// relu.
    Relu,
}

impl Nonlinearity {
    pub(crate) fn cell(self) -> CellKind {
        match self {
            Nonlinearity::Tanh => CellKind::RnnTanh,
            Nonlinearity::Relu => CellKind::RnnRelu,
        }
    }
}

/// An LSTM's state: the hidden state `h` and the cell state `c`, each (layers·directions, B, H)
/// for an [`LSTM`] and (B, H) for an [`crate::nn::LSTMCell`].
#[derive(Clone)]
pub struct LstmState {
    /// The hidden state.
    pub h: Tensor,
    /// The cell state.
    pub c: Tensor,
}

impl LstmState {
    /// The same state with no gradient history (truncated backpropagation through time).
    #[track_caller]
    pub fn detach(&self) -> LstmState {
        LstmState { h: self.h.detach(), c: self.c.detach() }
    }
}

/// The parameters of one recurrent layer and direction (or of one cell), with PyTorch's
/// shapes: the gates stacked along the first axis in PyTorch's order (LSTM i, f, g, o; GRU r,
/// z, n).
pub struct RecurrentWeights {
    /// (G·H, input size).
    pub weight_ih: Tensor,
    /// (G·H, H).
    pub weight_hh: Tensor,
    /// (G·H), if the layer has biases.
    pub bias_ih: Option<Tensor>,
    /// (G·H), if the layer has biases.
    pub bias_hh: Option<Tensor>,
}

impl RecurrentWeights {
    /// Fresh weights for `kind`, all U(−1/√H, 1/√H) as PyTorch initializes them.
    #[track_caller]
    pub(crate) fn new(kind: CellKind, input: usize, hidden: usize, bias: bool, device: &Device) -> Self {
        let rows = kind.gates() * hidden;
        let bound = 1.0 / (hidden.max(1) as f64).sqrt();
        let draw = |shape: Vec<usize>| init::param(init::uniform(shape, bound, device));
        RecurrentWeights {
            weight_ih: draw(vec![rows, input]),
            weight_hh: draw(vec![rows, hidden]),
            bias_ih: bias.then(|| draw(vec![rows])),
            bias_hh: bias.then(|| draw(vec![rows])),
        }
    }

    /// Reports the parameters as `weight_ih{suffix}`, … in PyTorch's order.
    pub(crate) fn visit(&self, v: &mut dyn Visitor, suffix: &str) {
        v.param(&format!("weight_ih{suffix}"), &self.weight_ih);
        v.param(&format!("weight_hh{suffix}"), &self.weight_hh);
        if let (Some(b_ih), Some(b_hh)) = (&self.bias_ih, &self.bias_hh) {
            v.param(&format!("bias_ih{suffix}"), b_ih);
            v.param(&format!("bias_hh{suffix}"), b_hh);
        }
    }

    fn hidden(&self) -> usize {
        self.weight_hh.dim(1)
    }

    /// The bias added to the input projections: b_ih + b_hh, except for the GRU, whose b_hn
    /// stays in the cell (the reset gate multiplies it).
    #[track_caller]
    pub(crate) fn input_bias(&self, kind: CellKind) -> Option<Tensor> {
        let (b_ih, b_hh) = (self.bias_ih.as_ref()?, self.bias_hh.as_ref()?);
        let h = self.hidden();
        Some(match kind {
            CellKind::Gru => b_ih + &b_hh.narrow(0, 0, 2 * h).pad(&[(0, h)], 0.0),
            _ => b_ih + b_hh,
        })
    }

    /// The GRU's b_hn for each of `steps` steps and `batch` rows (T, B, H), as its cell reads
    /// it (the other kinds have none).
    #[track_caller]
    pub(crate) fn hidden_bias(&self, kind: CellKind, steps: usize, batch: usize) -> Option<Tensor> {
        let h = self.hidden();
        let b_hh = self.bias_hh.as_ref().filter(|_| kind == CellKind::Gru)?;
        Some(b_hh.narrow(0, 2 * h, h).reshape([1, 1, h]).expand([steps, batch, h]))
    }

    /// x (…, I) projected for every gate: x·W_ihᵀ + the input bias, (…, G·H).
    #[track_caller]
    pub(crate) fn project(&self, kind: CellKind, x: &Tensor) -> Tensor {
        let gx = x.matmul(&self.weight_ih.t());
        match self.input_bias(kind) {
            Some(b) => gx + b,
            None => gx,
        }
    }

    /// The state after the steps `order` of a layer over `gx` (T, B, G·H) from `state`, and
    /// the hidden state h (B, H) after each step, in time order.
    ///
    /// Each step's h is the node the next step's recurrent product reads, so that the output's
    /// gradient and the recurrence's reach h as one accumulation; the LSTM's cell state never
    /// enters the output, and no zeros are assembled for it.
    #[track_caller]
    fn run(
        &self,
        kind: CellKind,
        gx: &Tensor,
        order: impl Iterator<Item = usize>,
        mut state: Tensor,
        lengths: Option<&Tensor>,
    ) -> (Tensor, Vec<Tensor>) {
        let hidden_bias = self.hidden_bias(kind, gx.dim(0), gx.dim(1));
        // stored transposed once, for the products of every step
        let w_hh = self.weight_hh.t_stored();
        let mut outputs = vec![None; gx.dim(0)];
        let mut h = kind.hidden_of(&state);
        for t in order {
            let gh = h.matmul(&w_hh);
            state =
                kind.step(Step { gx, t, gh: &gh, state: &state, hidden_bias: hidden_bias.as_ref(), lengths });
            h = kind.hidden_of(&state);
            outputs[t] = Some(h.clone());
        }
        (state, outputs.into_iter().map(|h| h.expect("every step ran")).collect())
    }

    /// One step of a cell from `state` on input `x` (B, I) (a cell module's forward).
    #[track_caller]
    pub(crate) fn step(&self, kind: CellKind, x: &Tensor, state: &Tensor) -> Tensor {
        let gx = self.project(kind, x).unsqueeze(0);
        let gh = kind.hidden_of(state).matmul(&self.weight_hh.t());
        let hidden_bias = self.hidden_bias(kind, 1, x.dim(0));
        kind.step(Step { gx: &gx, t: 0, gh: &gh, state, hidden_bias: hidden_bias.as_ref(), lengths: None })
    }
}

/// Lengths checked against a batch: on the device as the cell ops read them, and the mask that
/// zeroes the outputs past them.
struct Lengths {
    /// i32 (B).
    values: Tensor,
    /// (T, B, 1) of the output's dtype: 1 where t < length.
    mask: Tensor,
}

/// What `RNN`, `GRU` and `LSTM` share: the stack of layers and how it runs.
struct Layers {
    kind: CellKind,
    /// `"LSTM"`, for messages.
    name: &'static str,
    input_size: usize,
    hidden_size: usize,
    options: RnnOptions,
    /// Layer l's direction d at l·directions + d.
    weights: Vec<RecurrentWeights>,
    training: AtomicBool,
}

impl Layers {
    #[track_caller]
    fn new(
        kind: CellKind,
        name: &'static str,
        input_size: usize,
        hidden_size: usize,
        options: RnnOptions,
        device: &Device,
    ) -> Layers {
        if options.num_layers == 0 || hidden_size == 0 {
            panic!(
                "{name}: num_layers and hidden_size must be positive, got {options:?}, hidden_size {hidden_size}"
            );
        }
        if !(0.0..1.0).contains(&options.dropout) {
            panic!("{name}: dropout must be in [0, 1), got {}", options.dropout);
        }
        let mut weights = Vec::new();
        for layer in 0..options.num_layers {
            let input = if layer == 0 { input_size } else { hidden_size * options.directions() };
            for _ in 0..options.directions() {
                weights.push(RecurrentWeights::new(kind, input, hidden_size, options.bias, device));
            }
        }
        Layers { kind, name, input_size, hidden_size, options, weights, training: AtomicBool::new(true) }
    }

    fn visit(&self, v: &mut dyn Visitor) {
        for (k, w) in self.weights.iter().enumerate() {
            let (layer, reverse) = (k / self.options.directions(), k % self.options.directions() == 1);
            w.visit(v, &format!("_l{layer}{}", if reverse { "_reverse" } else { "" }));
        }
    }

    fn weights(&self, layer: usize, reverse: bool) -> &RecurrentWeights {
        if layer >= self.options.num_layers || (reverse && !self.options.bidirectional) {
            panic!(
                "{}: no layer {layer}{} in {:?}",
                self.name,
                if reverse { " reverse" } else { "" },
                self.options
            );
        }
        &self.weights[layer * self.options.directions() + reverse as usize]
    }

    /// The (seq, batch) of an input, after checking it.
    #[track_caller]
    fn check_input(&self, x: &Tensor) -> (usize, usize) {
        let expected = if self.options.batch_first { "(batch, seq, " } else { "(seq, batch, " };
        let dtype = self.weights[0].weight_ih.dtype();
        if x.rank() != 3 || x.dim(2) != self.input_size || x.dtype() != dtype || x.dim(0) * x.dim(1) == 0 {
            panic!(
                "{}: input {} {} does not fit: expected {dtype} {expected}{}) with at least one step and row",
                self.name,
                x.shape(),
                x.dtype(),
                self.input_size
            );
        }
        match self.options.batch_first {
            true => (x.dim(1), x.dim(0)),
            false => (x.dim(0), x.dim(1)),
        }
    }

    /// `state` checked as (layers·directions, batch, hidden) of the weights' dtype.
    #[track_caller]
    fn check_state(&self, what: &str, state: &Tensor, batch: usize) {
        let want = [self.weights.len(), batch, self.hidden_size];
        let dtype = self.weights[0].weight_ih.dtype();
        if state.dims() != want || state.dtype() != dtype {
            panic!(
                "{}: {what} {} {} does not fit: expected {dtype} (layers·directions, batch, hidden) = {want:?}",
                self.name,
                state.shape(),
                state.dtype()
            );
        }
    }

    /// `lengths` checked against the input: i32 or u32 (B) on the CPU, each in 1..=T.
    #[track_caller]
    fn check_lengths(&self, lengths: &Tensor, steps: usize, batch: usize, x: &Tensor) -> Lengths {
        let fits = lengths.dims() == [batch] && lengths.dtype().is_index() && lengths.device() == Device::Cpu;
        if !fits {
            panic!(
                "{}: lengths {} {} on {} do not fit input {}: expected i32 or u32 (batch) = [{batch}] on the CPU",
                self.name,
                lengths.shape(),
                lengths.dtype(),
                lengths.device(),
                x.shape()
            );
        }
        let values: Vec<i64> = match lengths.to_f64_vec() {
            Ok(v) => v.into_iter().map(|l| l as i64).collect(),
            Err(e) => panic!("{}: lengths cannot be read: {e}", self.name),
        };
        if let Some((row, bad)) = values.iter().enumerate().find(|(_, l)| !(1..=steps as i64).contains(*l)) {
            panic!(
                "{}: lengths {values:?} of input {} must each be in 1..={steps}, but row {row} has {bad}",
                self.name,
                x.shape()
            );
        }
        let device = x.device();
        let mask: Vec<f32> = (0..steps)
            .flat_map(|t| values.iter().map(move |&l| if (t as i64) < l { 1.0 } else { 0.0 }))
            .collect();
        Lengths {
            values: Tensor::from_vec(values.iter().map(|&l| l as i32).collect::<Vec<_>>(), [batch], &device),
            mask: Tensor::from_vec(mask, [steps, batch, 1], &device).cast(x.dtype()),
        }
    }

    /// The output (as the input is laid out) and each layer and direction's final state
    /// (packed [h; c] for the LSTM), from the initial states `initial` (zeros if none).
    #[track_caller]
    fn run(
        &self,
        x: &Tensor,
        initial: Option<Vec<Tensor>>,
        lengths: Option<&Tensor>,
    ) -> (Tensor, Vec<Tensor>) {
        let (steps, batch) = self.check_input(x);
        // not `map`: a panic in a closure would report this line, not the caller's
        #[allow(clippy::manual_map)]
        let lengths = match lengths {
            Some(l) => Some(self.check_lengths(l, steps, batch, x)),
            None => None,
        };
        let kind = self.kind;
        let state_dims = if kind.has_cell_state() {
            vec![2, batch, self.hidden_size]
        } else {
            vec![batch, self.hidden_size]
        };
        let mut layer_input = if self.options.batch_first { x.transpose(0, 1) } else { x.clone() };
        let mut finals = Vec::with_capacity(self.weights.len());
        let directions = self.options.directions();
        for layer in 0..self.options.num_layers {
            if layer > 0 && self.options.dropout > 0.0 && self.training.load(Ordering::Relaxed) {
                layer_input = layer_input.dropout(self.options.dropout);
            }
            // (T·B, I) projected once for all steps
            let flat = layer_input.reshape([steps * batch, layer_input.dim(2)]);
            let mut outputs = Vec::with_capacity(directions);
            for d in 0..directions {
                let k = layer * directions + d;
                let w = &self.weights[k];
                let gx = w.project(kind, &flat).reshape([steps, batch, kind.gates() * self.hidden_size]);
                let start = match &initial {
                    Some(states) => states[k].clone(),
                    None => Tensor::full(state_dims.clone(), 0.0, x.dtype(), &x.device()),
                };
                let values = lengths.as_ref().map(|l| &l.values);
                let (last, hidden) = match d {
                    0 => w.run(kind, &gx, 0..steps, start, values),
                    _ => w.run(kind, &gx, (0..steps).rev(), start, values),
                };
                // (T, B, H)
                outputs.push(Tensor::stack(&hidden, 0));
                finals.push(last);
            }
            layer_input = Tensor::concat(&outputs, -1);
        }
        let mut output = layer_input;
        if let Some(l) = &lengths {
            output = output * &l.mask;
        }
        if self.options.batch_first {
            output = output.transpose(0, 1);
        }
        (output, finals)
    }
}

/// The initial states of every layer and direction: `h` (layers·directions, B, H) split.
#[track_caller]
fn split_layers(h: &Tensor) -> Vec<Tensor> {
    (0..h.dim(0)).map(|k| h.select(0, k)).collect()
}

macro_rules! recurrent_module {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(Layers);

        impl $name {
            /// The input size.
            pub fn input_size(&self) -> usize {
                self.0.input_size
            }

            /// The hidden size.
            pub fn hidden_size(&self) -> usize {
                self.0.hidden_size
            }

            /// The options it was built with.
            pub fn options(&self) -> RnnOptions {
                self.0.options
            }

            /// The weights of `layer` (its reverse direction if `reverse`).
            ///
            /// Panics if there is no such layer or direction.
            #[track_caller]
            pub fn weights(&self, layer: usize, reverse: bool) -> &RecurrentWeights {
                self.0.weights(layer, reverse)
            }
        }
    };
}

recurrent_module!(
    LSTM,
    "A stack of LSTM layers, as `torch.nn.LSTM`: parameters `weight_ih_l{k}`, `weight_hh_l{k}`, \
     `bias_ih_l{k}`, `bias_hh_l{k}` (and `_reverse`), gates i, f, g, o."
);
recurrent_module!(
    GRU,
    "A stack of GRU layers, as `torch.nn.GRU`: parameters `weight_ih_l{k}`, `weight_hh_l{k}`, \
     `bias_ih_l{k}`, `bias_hh_l{k}` (and `_reverse`), gates r, z, n, with the reset gate applied \
     to W_hn·h + b_hn."
);
recurrent_module!(
    RNN,
    "A stack of Elman RNN layers, h' = tanh(W_ih·x + b_ih + W_hh·h + b_hh) (or relu), as \
     `torch.nn.RNN`."
);

impl LSTM {
    /// LSTM layers from `input_size` features to `hidden_size`, initialized as PyTorch does.
    #[track_caller]
    pub fn new(input_size: usize, hidden_size: usize, options: RnnOptions, device: &Device) -> LSTM {
        LSTM(Layers::new(CellKind::Lstm, "LSTM", input_size, hidden_size, options, device))
    }

    /// The output (seq, batch, directions·hidden) (batch first if so built) and the final
    /// state, from `state` (zeros if `None`), over sequences of `lengths` (i32 or u32 (batch) on
    /// the CPU, each in 1..=seq; all full if `None`). Outputs past a sequence's length are zero;
    /// each row's final state is its state at its own last step; the reverse direction starts
    /// at each row's own last step.
    ///
    /// Panics (at the caller's line) when the input, state or lengths do not fit.
    #[track_caller]
    pub fn forward_with(
        &self,
        x: &Tensor,
        state: Option<&LstmState>,
        lengths: Option<&Tensor>,
    ) -> (Tensor, LstmState) {
        let mut initial = None;
        if let Some(s) = state {
            let batch = self.0.check_input(x).1;
            self.0.check_state("h0", &s.h, batch);
            self.0.check_state("c0", &s.c, batch);
            let (h, c) = (split_layers(&s.h), split_layers(&s.c));
            initial = Some(h.into_iter().zip(c).map(|(h, c)| Tensor::stack(&[h, c], 0)).collect());
        }
        let (output, finals) = self.0.run(x, initial, lengths);
        let part = |i: usize| Tensor::stack(&finals.iter().map(|s| s.select(0, i)).collect::<Vec<_>>(), 0);
        (output, LstmState { h: part(0), c: part(1) })
    }
}

impl GRU {
    /// GRU layers from `input_size` features to `hidden_size`, initialized as PyTorch does.
    #[track_caller]
    pub fn new(input_size: usize, hidden_size: usize, options: RnnOptions, device: &Device) -> GRU {
        GRU(Layers::new(CellKind::Gru, "GRU", input_size, hidden_size, options, device))
    }

    /// The output and the final hidden state h_n (layers·directions, batch, hidden), from `h0`
    /// (zeros if `None`); see [`LSTM::forward_with`].
    #[track_caller]
    pub fn forward_with(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        lengths: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        forward_h(&self.0, x, h0, lengths)
    }
}

impl RNN {
    /// tanh RNN layers from `input_size` features to `hidden_size`, initialized as PyTorch does.
    #[track_caller]
    pub fn new(input_size: usize, hidden_size: usize, options: RnnOptions, device: &Device) -> RNN {
        RNN::with_nonlinearity(input_size, hidden_size, Nonlinearity::Tanh, options, device)
    }

    /// RNN layers with the given nonlinearity.
    #[track_caller]
    pub fn with_nonlinearity(
        input_size: usize,
        hidden_size: usize,
        nonlinearity: Nonlinearity,
        options: RnnOptions,
        device: &Device,
    ) -> RNN {
        RNN(Layers::new(nonlinearity.cell(), "RNN", input_size, hidden_size, options, device))
    }

    /// The nonlinearity.
    pub fn nonlinearity(&self) -> Nonlinearity {
        if self.0.kind == CellKind::RnnRelu { Nonlinearity::Relu } else { Nonlinearity::Tanh }
    }

    /// The output and the final hidden state h_n (layers·directions, batch, hidden), from `h0`
    /// (zeros if `None`); see [`LSTM::forward_with`].
    #[track_caller]
    pub fn forward_with(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        lengths: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        forward_h(&self.0, x, h0, lengths)
    }
}

/// `forward_with` of the modules whose state is h alone.
#[track_caller]
fn forward_h(layers: &Layers, x: &Tensor, h0: Option<&Tensor>, lengths: Option<&Tensor>) -> (Tensor, Tensor) {
    let mut initial = None;
    if let Some(h) = h0 {
        layers.check_state("h0", h, layers.check_input(x).1);
        initial = Some(split_layers(h));
    }
    let (output, finals) = layers.run(x, initial, lengths);
    (output, Tensor::stack(&finals, 0))
}

macro_rules! impl_module {
    ($name:ident) => {
        impl Module for $name {
            /// The output over full sequences from a zero state (see `forward_with`).
            #[track_caller]
            fn forward(&self, x: &Tensor) -> Tensor {
                self.0.run(x, None, None).0
            }

            fn visit(&self, v: &mut dyn Visitor) {
                self.0.visit(v);
            }

            fn set_training(&self, training: bool) {
                self.0.training.store(training, Ordering::Relaxed);
            }
        }
    };
}

impl_module!(LSTM);
impl_module!(GRU);
impl_module!(RNN);
