//! Parameter initializers, with PyTorch's defaults. All draw from the global Philox generator,
//! so the same `manual_seed` gives the same initial model on every device.

use crate::rng::next_key;
use crate::{Device, Shape, Tensor};

/// Uniform on [−bound, bound).
#[track_caller]
pub fn uniform(shape: impl Into<Shape>, bound: f64, device: &Device) -> Tensor {
    Tensor::uniform(shape, -bound as f32, bound as f32, next_key(), device)
}

/// PyTorch's default for `Linear` and `Conv2d` weights: Kaiming-uniform with a = √5, which is
/// uniform on ±1/√fan_in.
#[track_caller]
pub fn kaiming_uniform(shape: impl Into<Shape>, fan_in: usize, device: &Device) -> Tensor {
    uniform(shape, 1.0 / (fan_in.max(1) as f64).sqrt(), device)
}

/// PyTorch's default for `Linear` and `Conv2d` biases: uniform on ±1/√fan_in.
#[track_caller]
pub fn bias_uniform(shape: impl Into<Shape>, fan_in: usize, device: &Device) -> Tensor {
    uniform(shape, 1.0 / (fan_in.max(1) as f64).sqrt(), device)
}

/// Normal with mean 0 and standard deviation `std` (embeddings, GPT-style weights).
#[track_caller]
pub fn normal(shape: impl Into<Shape>, std: f64, device: &Device) -> Tensor {
    Tensor::normal(shape, 0.0, std as f32, next_key(), device)
}

/// Xavier/Glorot uniform: ±√(6 / (fan_in + fan_out)).
#[track_caller]
pub fn xavier_uniform(shape: impl Into<Shape>, fan_in: usize, fan_out: usize, device: &Device) -> Tensor {
    uniform(shape, (6.0 / (fan_in + fan_out).max(1) as f64).sqrt(), device)
}

/// A parameter: `t` realized now and marked as requiring gradients.
#[track_caller]
pub fn param(t: Tensor) -> Tensor {
    t.requires_grad_()
}
