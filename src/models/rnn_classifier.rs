//! A recurrent sequence classifier, as PyTorch's "classifying names with a character-level RNN"
//! tutorial and the usual LSTM sentiment classifier build it:
//!
//! ```text
//! ids (B, T) ──Embedding (padding id 0)──▶ (B, T, E)
//!            ──RNN | GRU | LSTM, over each row's own length──▶ h_n (layers·directions, B, H)
//!            ──last layer's final state (both directions concatenated), or the mean or the
//!              maximum of its outputs over each row's own steps (`Pooling::Mean`, `Pooling::Max`)
//!              ──▶ (B, directions·H), or both side by side (`Pooling::MeanMax`, twice as wide)
//!            ──Linear──▶ logits (B, classes)
//! ```
//!
//! With lengths, each row's final state is its state at its own last token (and the reverse
//! direction starts there), as with `pack_padded_sequence`: padding never changes a row's logits.
//! State-dict names follow the PyTorch peer (`emb.weight`, `gru.weight_ih_l0`, …, `out.weight`),
//! so a checkpoint moves to the same `torch.nn` model and back.

use crate::nn::{Dropout, Embedding, GRU, LSTM, Linear, Module, RNN, RnnOptions, Visitor};
use crate::{Device, Tensor};

/// The recurrent layer a [`RnnClassifier`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellType {
    /// An Elman RNN with tanh ([`RNN`]).
    Rnn,
    /// A GRU ([`GRU`]).
    Gru,
    /// An LSTM ([`LSTM`]).
    Lstm,
}

impl CellType {
    /// The lowercase name, which is also the layer's name in the state dict: `rnn`, `gru`, `lstm`.
    pub fn name(self) -> &'static str {
        match self {
            CellType::Rnn => "rnn",
            CellType::Gru => "gru",
            CellType::Lstm => "lstm",
        }
    }
}

/// What a [`RnnClassifier`] reads from its last recurrent layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The final state of each direction (`h_n`), as PyTorch's name-classification tutorial.
    Last,
    /// The mean of the outputs over each row's own steps: every token contributes directly,
    /// which suits long texts, where a final state must carry the whole review.
    Mean,
    /// The largest output over each row's own steps, feature by feature: a feature fires if
    /// any token of the text sets it (a phrase of praise or complaint anywhere in a review).
    Max,
    /// The mean and the maximum side by side (ULMFiT's concat pooling): twice the features.
    MeanMax,
}

impl Pooling {
    /// How many pooled vectors of the last layer's outputs the output layer reads.
    fn vectors(self) -> usize {
        if self == Pooling::MeanMax { 2 } else { 1 }
    }
}

/// The sizes of a [`RnnClassifier`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RnnClassifierConfig {
    /// Token ids, the padding id 0 included.
    pub vocab_size: usize,
    /// Embedding width E.
    pub embedding: usize,
    /// Hidden width H of each direction.
    pub hidden: usize,
    /// Output classes.
    pub classes: usize,
    /// The recurrent layer.
    pub cell: CellType,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Whether the recurrent layers also run backwards.
    pub bidirectional: bool,
    /// Dropout between recurrent layers and before the output layer, in training.
    pub dropout: f32,
    /// The features the output layer reads.
    pub pooling: Pooling,
}

/// The recurrent layer, whichever cell it has.
enum Recurrent {
    Rnn(RNN),
    Gru(GRU),
    Lstm(LSTM),
}

/// Embedding → recurrent layers → linear on the final state; see the module docs.
///
/// ```
/// use kiln::models::{CellType, Pooling, RnnClassifier, RnnClassifierConfig};
/// use kiln::{Device, Tensor};
/// let dev = Device::Cpu;
/// let config = RnnClassifierConfig {
///     vocab_size: 10, embedding: 8, hidden: 16, classes: 3, cell: CellType::Gru,
///     layers: 1, bidirectional: true, dropout: 0.0, pooling: Pooling::Last,
/// };
/// let model = RnnClassifier::new(config, &dev);
/// let ids = Tensor::from_vec(vec![4i32, 5, 6, 7, 0, 0], [2, 3], &dev); // two rows, padded with 0
/// let lengths = Tensor::from_vec(vec![3i32, 1], [2], &dev);
/// assert_eq!(model.classify(&ids, Some(&lengths)).dims(), &[2, 3]);
/// ```
pub struct RnnClassifier {
    config: RnnClassifierConfig,
    emb: Embedding,
    recurrent: Recurrent,
    /// Before the output layer; it has no parameters, so it is not in the state dict.
    drop: Dropout,
    out: Linear,
}

impl RnnClassifier {
    /// A freshly initialized classifier (PyTorch's initialization of each layer).
    #[track_caller]
    pub fn new(config: RnnClassifierConfig, device: &Device) -> RnnClassifier {
        let options = RnnOptions::default()
            .num_layers(config.layers)
            .bidirectional(config.bidirectional)
            .batch_first(true)
            .dropout(if config.layers > 1 { config.dropout } else { 0.0 });
        let (e, h) = (config.embedding, config.hidden);
        let recurrent = match config.cell {
            CellType::Rnn => Recurrent::Rnn(RNN::new(e, h, options, device)),
            CellType::Gru => Recurrent::Gru(GRU::new(e, h, options, device)),
            CellType::Lstm => Recurrent::Lstm(LSTM::new(e, h, options, device)),
        };
        let directions = if config.bidirectional { 2 } else { 1 };
        RnnClassifier {
            config,
            emb: Embedding::with_padding_idx(config.vocab_size, e, 0, device),
            recurrent,
            drop: Dropout::new(config.dropout),
            out: Linear::new(config.pooling.vectors() * directions * h, config.classes, device),
        }
    }

    /// Its sizes.
    pub fn config(&self) -> RnnClassifierConfig {
        self.config
    }

    /// The logits (B, classes) of token ids (B, T) i32, padded with 0 past each row's length.
    /// `lengths` (B) i32, each in 1..=T, on any device; `None` when every row is T tokens long.
    ///
    /// Panics (at the caller's line) when the ids or lengths do not fit.
    #[track_caller]
    pub fn classify(&self, ids: &Tensor, lengths: Option<&Tensor>) -> Tensor {
        if ids.rank() != 2 {
            panic!("RnnClassifier: ids {} must be (batch, seq) token ids", ids.shape());
        }
        // the recurrent layers read lengths on the host, to know each row's last step
        let given = lengths;
        let lengths = lengths.map(|l| l.to(&Device::Cpu));
        let x = self.emb.forward(ids);
        let (outputs, h_n) = match &self.recurrent {
            Recurrent::Rnn(m) => m.forward_with(&x, None, lengths.as_ref()),
            Recurrent::Gru(m) => m.forward_with(&x, None, lengths.as_ref()),
            Recurrent::Lstm(m) => {
                let (outputs, state) = m.forward_with(&x, None, lengths.as_ref());
                (outputs, state.h)
            }
        };
        let directions = if self.config.bidirectional { 2 } else { 1 };
        let batch = ids.dim(0);
        let features = match self.config.pooling {
            Pooling::Last => {
                // the last layer's directions, (directions, B, H) → (B, directions·H)
                let last = h_n.narrow(0, h_n.dim(0) - directions, directions);
                last.transpose(0, 1).reshape([batch, directions * self.config.hidden])
            }
            Pooling::Mean => mean_over_steps(&outputs, given),
            Pooling::Max => max_over_steps(&outputs, given),
            // (B, directions·H) twice → (B, 2·directions·H)
            Pooling::MeanMax => {
                Tensor::concat(&[mean_over_steps(&outputs, given), max_over_steps(&outputs, given)], 1)
            }
        };
        self.out.forward(&self.drop.forward(&features))
    }
}

/// The mean of outputs (B, T, F) over each row's own steps (all T without lengths): (B, F).
fn mean_over_steps(outputs: &Tensor, lengths: Option<&Tensor>) -> Tensor {
    // outputs are zero past each row's length: their sum over T divided by the length is the
    // mean over the row's own steps (the lengths as given: on the model's device they need no
    // second upload)
    match lengths {
        Some(l) => outputs.sum(1, false) / l.cast(outputs.dtype()).to(&outputs.device()).unsqueeze(1),
        None => outputs.sum(1, false) / outputs.dim(1) as f64,
    }
}

/// The largest of outputs (B, T, F) over each row's own steps (all T without lengths): (B, F).
fn max_over_steps(outputs: &Tensor, lengths: Option<&Tensor>) -> Tensor {
    let Some(l) = lengths else { return outputs.max(1, false) };
    // the zeros past a row's length must not win: those steps are −∞ first
    let (device, batch, steps) = (outputs.device(), outputs.dim(0), outputs.dim(1));
    let step = Tensor::arange(0.0, steps as f64, 1.0, &device).reshape([1, steps, 1]);
    let length = l.cast(step.dtype()).to(&device).reshape([batch, 1, 1]);
    let minus_infinity = Tensor::full([1], f64::NEG_INFINITY, outputs.dtype(), &device);
    step.lt(&length).where_(outputs, &minus_infinity).max(1, false)
}

impl Module for RnnClassifier {
    /// The logits of full-length rows of ids (B, T): [`RnnClassifier::classify`] without lengths.
    #[track_caller]
    fn forward(&self, ids: &Tensor) -> Tensor {
        self.classify(ids, None)
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("emb", &self.emb);
        let name = self.config.cell.name();
        match &self.recurrent {
            Recurrent::Rnn(m) => v.child(name, m),
            Recurrent::Gru(m) => v.child(name, m),
            Recurrent::Lstm(m) => v.child(name, m),
        }
        v.child("drop", &self.drop);
        v.child("out", &self.out);
    }
}
