//! Whole reference models, one per file, each readable top to bottom as nanoGPT's `model.py`:
//! the architecture with its shapes, the paper it comes from, and PyTorch's state-dict names,
//! so a checkpoint moves between kiln and the same PyTorch model. The examples train them.

mod char_rnn;
pub mod generate;
pub mod gpt;
mod lenet;
mod mlp;
pub mod mobilenet;
pub mod resnet;
mod rnn_classifier;
pub mod seq2seq;
mod seq2seq_gru;
mod seq2seq_transformer;
pub mod vgg;

pub use char_rnn::{CharRnn, CharRnnConfig};
pub use lenet::lenet5;
pub use mlp::mnist_mlp;
pub use mobilenet::{MobileNetV2, mobilenet_v2, mobilenet_v2_cifar};
pub use resnet::{ResNet, resnet18, resnet20, resnet56};
pub use rnn_classifier::{CellType, Pooling, RnnClassifier, RnnClassifierConfig};
pub use seq2seq_gru::{GruAttention, GruAttentionConfig, GruAttentionState};
pub use seq2seq_transformer::{
    Positions, TransformerTranslator, TransformerTranslatorConfig, TransformerTranslatorState,
};
pub use vgg::{Vgg, vgg11_bn, vgg16_bn};
