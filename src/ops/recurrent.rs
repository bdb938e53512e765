//! Fused recurrent cells: one time step of an LSTM, GRU or Elman RNN layer as one op, and its
//! gradient as one op.
//!
//! A recurrent layer computes the input projections of all T steps as one matmul,
//! `gx = x·W_ihᵀ + b` of shape (T, B, G·H) with G = 4 (LSTM), 3 (GRU) or 1 (RNN), and then per
//! step one matmul for the recurrent term `gh = h_{t−1}·W_hhᵀ` (B, G·H) and one cell op. The
//! cell op reads its step of `gx` in place (the step is an attribute, so no slice is copied),
//! adds `gh`, applies the gates and returns the new state. Gate order and formulas are
//! PyTorch's:
//!
//! - LSTM (i, f, g, o): c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c'). An op has one output,
//!   so the state is packed as (2, B, H) = [h; c].
//! - GRU (r, z, n): r = σ(r), z = σ(z), n = tanh(n_x + r·(n_h + b_hn)), h' = (1 − z)·n + z·h.
//!   The recurrent bias of r and z is folded into `gx`; b_hn stays apart because r multiplies
//!   it, so the cell takes it as an input, broadcast to (T, B, H) and read at step t like `gx`:
//!   then its gradient too is placed per step and assembled, not reduced and added per step.
//! - RNN: h' = tanh(gx + gh) or relu(gx + gh).
//!
//! Optional per-sequence lengths (i32, (B)) give PyTorch's packed-sequence semantics: a row
//! whose sequence has ended (t ≥ length) passes its state through unchanged, and its gradient
//! too.
//!
//! The gradient op recomputes the gates from the same inputs and writes every gradient of the
//! step into one packed vector (laid out by `Cell::packed_blocks`); the rule then takes it apart with
//! contiguous narrows, which cost a buffer copy each on the GPU and no dispatch. The gradient
//! with respect to `gx` is the step's gate gradient placed at step t in zeros, so autograd
//! assembles the T steps into one tensor, and the weight's per-step products into one matmul:
//! backpropagation through time costs O(T).
//!
//! Derivatives are computed from the pre-activations, not from the activations: σ′(x) =
//! σ(x)·σ(−x) and tanh′(x) = 4e/(1 + e)² with e = e^(−2|x|). The textbook forms s·(1 − s) and
//! 1 − t² lose every digit where a gate saturates (1 − t² of a t rounded to 1), so the GPU and
//! the CPU would disagree there by far more than rounding.

mod cpu;

use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, ulps};
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::u32_of;
use crate::{DType, Result, Shape, Tensor};

static SHADER: Shader = shader!("recurrent.wgsl");

/// Invocations per workgroup of the cell kernels: one per (row, hidden unit). Small, so that
/// the few thousand elements of a step still spread over many compute units.
const WORKGROUP: u32 = 64;

/// Which recurrence a cell computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// Long short-term memory: gates i, f, g, o; state [h; c].
    Lstm,
    /// Gated recurrent unit: gates r, z, n; state h.
    Gru,
    /// Elman RNN with tanh: state h.
    RnnTanh,
    /// Elman RNN with relu: state h.
    RnnRelu,
}

impl CellKind {
    /// Gates per hidden unit: the G of `gx`'s (T, B, G·H).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
        }
    }

    /// Whether the state is packed [h; c] (2, B, H) rather than h (B, H).
    pub fn has_cell_state(self) -> bool {
        self == CellKind::Lstm
    }

    /// The hidden state h (B, H) of a `state`: the first half of the LSTM's packed [h; c], the
    /// whole state of the others.
    #[track_caller]
    pub fn hidden_of(self, state: &Tensor) -> Tensor {
        if self.has_cell_state() { state.select(0, 0) } else { state.clone() }
    }

    fn name(self) -> &'static str {
        match self {
            CellKind::Lstm => "lstm_cell",
            CellKind::Gru => "gru_cell",
            CellKind::RnnTanh | CellKind::RnnRelu => "rnn_cell",
        }
    }

    /// The shape of the state for `batch` rows of `hidden` units.
    fn state_shape(self, batch: usize, hidden: usize) -> Shape {
        if self.has_cell_state() { Shape::new([2, batch, hidden]) } else { Shape::new([batch, hidden]) }
    }

    /// One fused step of a recurrent layer: the new state from `s.gx` at step `s.t`, the
    /// recurrent term `s.gh` and the previous state `s.state`.
    ///
    /// Panics (at the caller's line) when the shapes or dtypes do not fit together, or when
    /// `hidden_bias` is given to anything but a GRU.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// use kiln::ops::recurrent::{CellKind, Step};
    /// let (b, h) = (2, 3);
    /// let gx = Tensor::randn([5, b, 4 * h], &Device::Cpu); // x·W_ihᵀ + b for 5 steps
    /// let state = Tensor::zeros([2, b, h], &Device::Cpu); // [h; c]
    /// let gh = Tensor::zeros([b, 4 * h], &Device::Cpu); // h·W_hhᵀ
    /// let next = CellKind::Lstm.step(Step::new(&gx, 0, &gh, &state));
    /// assert_eq!(next.dims(), &[2, b, h]);
    /// ```
    #[track_caller]
    pub fn step(self, s: Step) -> Tensor {
        let name = self.name();
        let (gx, gh, state) = (s.gx, s.gh, s.state);
        let shapes = || {
            let mut all = format!("gx {}, gh {}, state {}", gx.shape(), gh.shape(), state.shape());
            if let Some(b) = s.hidden_bias {
                all.push_str(&format!(", hidden bias {}", b.shape()));
            }
            if let Some(l) = s.lengths {
                all.push_str(&format!(", lengths {} {}", l.shape(), l.dtype()));
            }
            all
        };
        let hidden = state.dims().last().copied().unwrap_or(0);
        let g = self.gates();
        let fits = gx.rank() == 3
            && state.shape() == &self.state_shape(gx.dim(1), hidden)
            && gx.dim(2) == g * hidden
            && gh.dims() == [gx.dim(1), g * hidden]
            && s.t < gx.dim(0)
            && gx.dtype().is_float()
            && gh.dtype() == gx.dtype()
            && state.dtype() == gx.dtype()
            && s.hidden_bias
                .is_none_or(|b| b.dims() == [gx.dim(0), gx.dim(1), hidden] && b.dtype() == gx.dtype())
            && s.lengths.is_none_or(|l| l.dims() == [gx.dim(1)] && l.dtype() == DType::I32);
        if !fits {
            let state = self.state_shape(gx.dims().get(1).copied().unwrap_or(0), hidden);
            panic!(
                "{name}: {} at step {} do not fit: expected float gx (T, B, {g}·H), gh (B, {g}·H), state {state}, \
                 hidden bias (T, B, H) and i32 lengths (B)",
                shapes(),
                s.t
            );
        }
        if s.hidden_bias.is_some() && self != CellKind::Gru {
            panic!("{name}: only the GRU cell takes a hidden bias ({})", shapes());
        }
        let op = Cell {
            kind: self,
            step: s.t,
            hidden_bias: s.hidden_bias.is_some(),
            lengths: s.lengths.is_some(),
            pass: Pass::Forward,
        };
        let mut inputs = vec![gx.clone(), gh.clone(), state.clone()];
        inputs.extend(s.hidden_bias.cloned());
        inputs.extend(s.lengths.cloned());
        Tensor::from_op(op, inputs, state.shape().clone(), gx.dtype())
    }
}

/// The inputs of one cell step (see [`CellKind::step`]).
pub struct Step<'a> {
    /// The input projections of every step, x·W_ihᵀ + b: (T, B, G·H).
    pub gx: &'a Tensor,
    /// Which step of `gx` this is.
    pub t: usize,
    /// The recurrent term h_{t−1}·W_hhᵀ: (B, G·H).
    pub gh: &'a Tensor,
    /// The previous state: [h; c] (2, B, H) for the LSTM, h (B, H) otherwise.
    pub state: &'a Tensor,
    /// GRU only: b_hn, the recurrent bias of the candidate, which the reset gate multiplies,
    /// for every step and row: (T, B, H), as `b_hn.reshape([1, 1, H]).expand([T, B, H])` gives.
    pub hidden_bias: Option<&'a Tensor>,
    /// Per-sequence lengths, i32 (B): rows with `t ≥ length` pass their state through.
    pub lengths: Option<&'a Tensor>,
}

impl<'a> Step<'a> {
    /// A step without hidden bias or lengths.
    pub fn new(gx: &'a Tensor, t: usize, gh: &'a Tensor, state: &'a Tensor) -> Step<'a> {
        Step { gx, t, gh, state, hidden_bias: None, lengths: None }
    }
}

/// Which direction of computation a cell node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// (gx, gh, state, [b_hn], [lengths]) → the new state.
    Forward,
    /// (gx, gh, state, [b_hn], [lengths], d new state) → the packed gradients.
    Backward,
}

/// A cell node: one step, forward or backward.
pub(crate) struct Cell {
    kind: CellKind,
    step: usize,
    hidden_bias: bool,
    lengths: bool,
    pass: Pass,
}

/// The sizes of one step.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    hidden: usize,
}

impl Dims {
    /// From the op's inputs (gx first, state third).
    fn of(gx: &Shape, state: &Shape) -> Dims {
        Dims { batch: gx.dim(1), hidden: state.dim(state.rank() - 1) }
    }

    /// B·H: elements of h.
    fn n(&self) -> usize {
        self.batch * self.hidden
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    hidden: u32,
    step: u32,
    has_bias: u32,
    has_lengths: u32,
    relu: u32,
    _pad: [u32; 2],
}

impl Cell {
    /// Where the optional inputs sit: (hidden bias, lengths, output gradient).
    fn positions(&self) -> (Option<usize>, Option<usize>, usize) {
        let bias = self.hidden_bias.then_some(3);
        let lengths = self.lengths.then_some(3 + self.hidden_bias as usize);
        (bias, lengths, 3 + self.hidden_bias as usize + self.lengths as usize)
    }

    /// The length of the gradient op's packed output, in blocks of B·H elements:
    /// - LSTM: [d gates (B, 4H) | dh_prev (B, H) | dc_prev (B, H)]
    /// - GRU: [d gx (B, 3H) | d gh (B, 3H) | dh_prev (B, H) | d b_hn (B, H)] (d gh's n block,
    ///   and d b_hn, are d gx's n block times r)
    /// - RNN: [d pre-activation (B, H) | dh_prev (B, H)]
    ///
    /// dh_prev (and the LSTM's) is the gradient flowing to the previous state directly, not
    /// through `gh`: the GRU's z·dh, and for ended rows (lengths) the state's own gradient.
    fn packed_blocks(kind: CellKind) -> usize {
        match kind {
            CellKind::Lstm => 6,
            CellKind::Gru => 8,
            CellKind::RnnTanh | CellKind::RnnRelu => 2,
        }
    }

    fn entry(&self) -> &'static str {
        match (self.kind, self.pass) {
            (CellKind::Lstm, Pass::Forward) => "lstm_forward",
            (CellKind::Lstm, Pass::Backward) => "lstm_backward",
            (CellKind::Gru, Pass::Forward) => "gru_forward",
            (CellKind::Gru, Pass::Backward) => "gru_backward",
            (_, Pass::Forward) => "rnn_forward",
            (_, Pass::Backward) => "rnn_backward",
        }
    }
}

/// Every kernel this family compiles (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let entries =
        ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward"];
    entries.iter().map(|&e| kernel(e)).collect()
}

fn kernel(entry: &'static str) -> Kernel<'static> {
    let reads = if entry.ends_with("backward") { 6 } else { 5 };
    Kernel::new(&SHADER, entry, reads, 1).with_library(&super::unary::ACTIVATIONS)
}

impl Op for Cell {
    fn name(&self) -> &'static str {
        match (self.kind, self.pass) {
            (CellKind::Lstm, Pass::Forward) => "lstm_cell",
            (CellKind::Lstm, Pass::Backward) => "lstm_cell_grad",
            (CellKind::Gru, Pass::Forward) => "gru_cell",
            (CellKind::Gru, Pass::Backward) => "gru_cell_grad",
            (_, Pass::Forward) => "rnn_cell",
            (_, Pass::Backward) => "rnn_cell_grad",
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("{}(step {}", self.name(), self.step);
        if matches!(self.kind, CellKind::RnnTanh | CellKind::RnnRelu) {
            s.push_str(if self.kind == CellKind::RnnRelu { ", relu" } else { ", tanh" });
        }
        if self.hidden_bias {
            s.push_str(", hidden bias");
        }
        if self.lengths {
            s.push_str(", lengths");
        }
        s + ")"
    }

    fn cpu(&self, args: &[CpuArg], _: &Meta) -> crate::backend::cpu::CpuStorage {
        let (bias, lengths, grad) = self.positions();
        let dims = Dims::of(args[0].shape, args[2].shape);
        let steps = cpu::Steps {
            kind: self.kind,
            batch: dims.batch,
            hidden: dims.hidden,
            step: self.step,
            lengths: lengths.map(|k| args[k].data.as_slice::<i32>()),
        };
        let get = |k: usize| args[k].data;
        match self.pass {
            Pass::Forward => steps.forward(get(0), get(1), get(2), bias.map(get)),
            Pass::Backward => steps.backward(get(0), get(1), get(2), bias.map(get), get(grad)),
        }
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let (bias, lengths, grad) = self.positions();
        let dims = Dims::of(args[0].shape, args[2].shape);
        let name = self.name();
        let params = Params {
            batch: u32_of(name, dims.batch)?,
            hidden: u32_of(name, dims.hidden)?,
            step: u32_of(name, self.step)?,
            has_bias: self.hidden_bias as u32,
            has_lengths: self.lengths as u32,
            relu: (self.kind == CellKind::RnnRelu) as u32,
            _pad: [0; 2],
        };
        let y = rec.alloc_elems(out.shape.numel())?;
        // absent optional inputs are bound to the state buffer (never read)
        let state = args[2].buf;
        let mut reads = vec![args[0].buf, args[1].buf, state];
        reads.push(bias.map_or(state, |k| args[k].buf));
        reads.push(lengths.map_or(state, |k| args[k].buf));
        if self.pass == Pass::Backward {
            reads.push(args[grad].buf);
        }
        // (B·H) → one invocation per (row, hidden unit)
        let groups = u32_of(name, dims.n().div_ceil(WORKGROUP as usize))?;
        rec.dispatch(&kernel(self.entry()), &params, &reads, &[&y], Grid::Linear(groups))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let (gx, state) = (&g.inputs[0], &g.inputs[2]);
        let dims = Dims::of(gx.shape(), state.shape());
        let (batch, hidden, n) = (dims.batch, dims.hidden, dims.n());
        let gates = self.kind.gates() * hidden;
        let mut inputs = g.inputs.to_vec();
        inputs.push(g.grad.clone());
        let len = Cell::packed_blocks(self.kind) * n;
        let op = Cell { pass: Pass::Backward, ..*self };
        let packed = Tensor::from_op(op, inputs, Shape::new([len]), gx.dtype());
        // block `at` (in units of B·H) of the packed gradients, as `dims`
        let block = |at: usize, dims: &[usize]| {
            packed.narrow(0, at * n, dims.iter().product()).reshape(Shape::new(dims.to_vec()))
        };
        // a gradient of an input read at this step (gx, the GRU's b_hn): this step's slab, in
        // zeros elsewhere, which autograd assembles over the steps into one tensor
        let steps = gx.dim(0);
        let place =
            |d: Tensor| d.unsqueeze(0).pad(&[(self.step, steps - 1 - self.step), (0, 0), (0, 0)], 0.0);
        let d_gates = block(0, &[batch, gates]);
        let d_gx = place(d_gates.clone());
        let (d_gh, d_state, d_bias) = match self.kind {
            CellKind::Lstm => {
                let d_state = if self.lengths {
                    block(4, &[2, batch, hidden])
                } else {
                    // only dc_prev is nonzero: placed in zeros, it joins the gradient that h
                    // receives through gh as one assembly instead of an addition
                    block(5, &[1, batch, hidden]).pad(&[(1, 0), (0, 0), (0, 0)], 0.0)
                };
                (d_gates, Some(d_state), None)
            }
            CellKind::Gru => {
                let d_bias = self.hidden_bias.then(|| place(block(7, &[batch, hidden])));
                (block(3, &[batch, gates]), Some(block(6, &[batch, hidden])), d_bias)
            }
            // without lengths the state reaches the output only through gh
            CellKind::RnnTanh | CellKind::RnnRelu => {
                (d_gates, self.lengths.then(|| block(1, &[batch, hidden])), None)
            }
        };
        let mut grads = vec![Some(d_gx), Some(d_gh), d_state];
        if self.hidden_bias {
            grads.push(d_bias);
        }
        if self.lengths {
            grads.push(None);
        }
        grads
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // Each output is a few products of sigmoids and tanhs of sums of two or three inputs:
        // the GPU's exp and tanh are a few ulps off the CPU's, and the products and sums add a
        // few roundings more. Cancellation in those sums (gx + gh, f·c + i·g, h − n) is the
        // data's condition, which the check measures on top. The gradient chains twice as many
        // such factors.
        match self.pass {
            Pass::Forward => ulps(16.0),
            Pass::Backward => ulps(32.0),
        }
    }
}
