//! Whole reference models, one per file, each readable top to bottom as nanoGPT's `model.py`:
//! the architecture with its shapes, the paper it comes from, and PyTorch's state-dict names,
//! so a checkpoint moves between kiln and the same PyTorch model. The examples train them.

pub mod generate;
pub mod gpt;
mod lenet;

pub use lenet::lenet5;
