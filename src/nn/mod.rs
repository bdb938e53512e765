//! Neural-network modules: the [`Module`] trait, the layers, initializers and losses.
//!
//! A module holds its parameters as tensors and reports them, with PyTorch's state-dict names
//! (`layers.0.weight`), through [`Module::visit`]; optimizers, checkpoints and train/eval
//! switches (and snapshots of each module's mode, [`modes`]) are all built on that one visitor.
//!
//! ```
//! use kiln::nn::{self, Linear, Module, Sequential};
//! use kiln::{Device, Tensor};
//! let dev = Device::Cpu;
//! let model = Sequential::new().add(Linear::new(4, 8, &dev)).add(nn::ReLU).add(Linear::new(8, 2, &dev));
//! let names: Vec<String> = nn::parameters(&model).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//! let y = model.forward(&Tensor::ones([3, 4], &dev));
//! assert_eq!(y.dims(), &[3, 2]);
//! ```

mod activation;
pub(crate) mod attention;
mod cells;
mod container;
mod conv;
mod dropout;
mod embedding;
mod freeze;
pub mod init;
mod linear;
pub mod lora;
pub mod loss;
mod norm;
pub(crate) mod pattern;
mod position;
pub(crate) mod projection;
mod recurrent;
mod transformer;

pub use activation::{Flatten, GELU, LeakyReLU, ReLU, ReLU6, SiLU, Sigmoid, Tanh};
pub use attention::{KvCache, MASKED, MhaConfig, MhaOptions, MultiheadAttention, causal_mask};
pub use cells::{GRUCell, LSTMCell, RNNCell};
pub use container::Sequential;
pub use conv::{AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use freeze::{freeze, trainable_parameters, unfreeze};
pub use linear::Linear;
pub use lora::{LoraConfig, LoraLinear};
pub use norm::{BatchNorm, BatchNorm1d, BatchNorm2d, LayerNorm};
pub use position::{LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding};
pub use recurrent::{GRU, LSTM, LstmState, Nonlinearity, RNN, RecurrentWeights, RnnOptions};
pub use transformer::{
    Activation, DecoderCache, DecoderMasks, EncoderMasks, Transformer, TransformerConfig, TransformerDecoder,
    TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer, TransformerMasks,
};

use crate::Tensor;

/// A layer or a model: a forward function and the tensors it owns.
pub trait Module: Send + Sync {
    /// The output for input `x`.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// Reports this module's parameters, buffers and child modules to `v`, with their names.
    fn visit(&self, v: &mut dyn Visitor);

    /// Switches between training and evaluation behaviour (dropout, batch-norm statistics).
    /// Modules without such behaviour keep the default, which does nothing; containers need
    /// not forward it: [`train`] and [`eval`] reach every module through `visit`.
    fn set_training(&self, _training: bool) {}

    /// Whether this module is in training mode, for modules that have modes (those that
    /// override [`Module::set_training`]); `None`, the default, for the rest.
    fn training(&self) -> Option<bool> {
        None
    }

    /// This module as `Any`, for tools that find modules of one type while walking a model
    /// ([`lora::apply`] finds its [`LoraLinear`] layers this way); `None`, the default, for the
    /// rest.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// What [`Module::visit`] reports to.
pub trait Visitor {
    /// A trainable parameter.
    fn param(&mut self, name: &str, t: &Tensor);
    /// A tensor of state that is saved but not trained (batch-norm running statistics).
    fn buffer(&mut self, _name: &str, _t: &Tensor) {}
    /// A child module; the default visits it with `name.` prefixed to its names.
    fn child(&mut self, name: &str, m: &dyn Module);
}

/// Collects names and tensors with their dotted paths.
struct Collect<'a> {
    prefix: String,
    buffers: bool,
    out: &'a mut Vec<(String, Tensor)>,
}

impl Visitor for Collect<'_> {
    fn param(&mut self, name: &str, t: &Tensor) {
        self.out.push((format!("{}{name}", self.prefix), t.clone()));
    }
    fn buffer(&mut self, name: &str, t: &Tensor) {
        if self.buffers {
            self.out.push((format!("{}{name}", self.prefix), t.clone()));
        }
    }
    fn child(&mut self, name: &str, m: &dyn Module) {
        let mut inner =
            Collect { prefix: format!("{}{name}.", self.prefix), buffers: self.buffers, out: self.out };
        m.visit(&mut inner);
    }
}

/// The trainable parameters of `m`, with their state-dict names, in definition order.
pub fn parameters(m: &dyn Module) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    m.visit(&mut Collect { prefix: String::new(), buffers: false, out: &mut out });
    out
}

/// Parameters and buffers of `m`, with their state-dict names: what a checkpoint saves.
pub fn state_dict(m: &dyn Module) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    m.visit(&mut Collect { prefix: String::new(), buffers: true, out: &mut out });
    out
}

/// The number of trainable scalars in `m`.
pub fn parameter_count(m: &dyn Module) -> usize {
    parameters(m).iter().map(|(_, t)| t.numel()).sum()
}

/// Calls `f` with `m` (path `""`) and then every module inside it, each with its dotted path
/// (`0`, `encoder.layers.1`, as PyTorch's `named_modules`), parents before their children.
fn for_each_module(m: &dyn Module, f: &mut dyn FnMut(&str, &dyn Module)) {
    struct Walk<'f> {
        prefix: String,
        f: &'f mut dyn FnMut(&str, &dyn Module),
    }
    impl Visitor for Walk<'_> {
        fn param(&mut self, _: &str, _: &Tensor) {}
        fn child(&mut self, name: &str, m: &dyn Module) {
            let path = format!("{}{name}", self.prefix);
            (self.f)(&path, m);
            m.visit(&mut Walk { prefix: format!("{path}."), f: &mut *self.f });
        }
    }
    f("", m);
    m.visit(&mut Walk { prefix: String::new(), f });
}

/// Puts `m` and all its children in training mode (dropout on, batch statistics).
pub fn train(m: &dyn Module) {
    for_each_module(m, &mut |_, m| m.set_training(true));
}

/// Puts `m` and all its children in evaluation mode (dropout off, running statistics).
pub fn eval(m: &dyn Module) {
    for_each_module(m, &mut |_, m| m.set_training(false));
}

/// The mode of every module in `m` that has one (`true`: training), by path (`""` for `m`
/// itself, then `0`, `encoder.layers.1`, …), to put back later with [`restore_modes`].
///
/// ```
/// use kiln::nn::{self, BatchNorm, Dropout, Sequential};
/// use kiln::Device;
/// let model = Sequential::new().add(BatchNorm::new_1d(4, &Device::Cpu)).add(Dropout::new(0.1));
/// let before = nn::modes(&model);
/// assert_eq!(before, [("0".to_string(), true), ("1".to_string(), true)]);
/// nn::eval(&model);
/// nn::restore_modes(&model, &before);
/// assert_eq!(nn::modes(&model), before);
/// ```
pub fn modes(m: &dyn Module) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for_each_module(m, &mut |path, m| {
        if let Some(training) = m.training() {
            out.push((path.to_string(), training));
        }
    });
    out
}

/// Puts every module of `m` named in `modes` back in the mode recorded there (see [`modes`]);
/// modules not named are left as they are.
pub fn restore_modes(m: &dyn Module, modes: &[(String, bool)]) {
    for_each_module(m, &mut |path, m| {
        if let Some(&(_, training)) = modes.iter().find(|(p, _)| p == path) {
            m.set_training(training);
        }
    });
}
