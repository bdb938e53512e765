//! Normalization layers: `BatchNorm1d`, `BatchNorm2d` (with running statistics) and
//! `LayerNorm`.

use super::{Module, Visitor, init};
use crate::{DType, Device, Tensor, no_grad};
use std::sync::atomic::{AtomicBool, Ordering};

/// Batch normalization over every axis but the channel axis (1), as PyTorch's
/// `BatchNorm1d`/`BatchNorm2d`: batch statistics while training (and an exponential average of
/// them, momentum 0.1), the running statistics in evaluation.
pub struct BatchNorm {
    /// Scale per channel (starts at 1).
    pub weight: Tensor,
    /// Shift per channel (starts at 0).
    pub bias: Tensor,
    /// Running mean per channel (a buffer).
    pub running_mean: Tensor,
    /// Running unbiased variance per channel (a buffer).
    pub running_var: Tensor,
    /// The number of training batches seen: a 0-dimensional i32 buffer (PyTorch keeps an i64;
    /// `load_state_dict` converts either way).
    pub num_batches_tracked: Tensor,
    momentum: f64,
    eps: f64,
    rank: usize,
    training: AtomicBool,
}

/// `BatchNorm` for (N, C) or (N, C, L) inputs.
pub type BatchNorm1d = BatchNorm;
/// `BatchNorm` for (N, C, H, W) inputs.
pub type BatchNorm2d = BatchNorm;

impl BatchNorm {
    /// For (N, C) or (N, C, L) inputs.
    pub fn new_1d(channels: usize, device: &Device) -> BatchNorm {
        BatchNorm::with_rank(channels, 2, device)
    }

    /// For (N, C, H, W) inputs.
    pub fn new_2d(channels: usize, device: &Device) -> BatchNorm {
        BatchNorm::with_rank(channels, 4, device)
    }

    fn with_rank(channels: usize, rank: usize, device: &Device) -> BatchNorm {
        BatchNorm {
            weight: init::param(Tensor::ones([channels], device)),
            bias: init::param(Tensor::zeros([channels], device)),
            running_mean: Tensor::zeros([channels], device),
            running_var: Tensor::ones([channels], device),
            num_batches_tracked: Tensor::full([], 0.0, DType::I32, device),
            momentum: 0.1,
            eps: 1e-5,
            rank,
            training: AtomicBool::new(true),
        }
    }
}

impl Module for BatchNorm {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let r = x.rank();
        let ok = if self.rank == 2 { r == 2 || r == 3 } else { r == 4 };
        if !ok || x.dims()[1] != self.weight.numel() {
            panic!(
                "BatchNorm: input {} does not fit {} channels (rank {})",
                x.shape(),
                self.weight.numel(),
                self.rank
            );
        }
        // y = (x − mean)·w/√(var + eps) + b, one per-channel affine x·scale + shift
        let (mean, var) = if self.training.load(Ordering::Relaxed) {
            let moments = x.channel_moments(); // (2, C): batch mean and biased variance
            let (mean, var) = (moments.select(0, 0), moments.select(0, 1));
            let count = x.numel() / x.dims()[1].max(1);
            let m = self.momentum;
            no_grad(|| {
                // PyTorch's update: an exponential average with the unbiased batch variance,
                // computed with the step's next realize (no realize here, mid-forward)
                let unbiased = &var * (count as f64 / (count.max(2) - 1) as f64);
                let (rm, rv) = (self.running_mean.latest(), self.running_var.latest());
                self.running_mean.assign_deferred(&(rm * (1.0 - m) + mean.detach() * m));
                self.running_var.assign_deferred(&(rv * (1.0 - m) + unbiased.detach() * m));
                // counted in f32, exact below 2²⁴ batches
                let count = self.num_batches_tracked.latest().cast(DType::F32) + 1.0;
                self.num_batches_tracked.assign_deferred(&count.cast(DType::I32));
            });
            (mean, var)
        } else {
            (self.running_mean.latest(), self.running_var.latest())
        };
        let scale = &self.weight * (var + self.eps).rsqrt();
        let shift = &self.bias - mean * &scale;
        x.channel_affine(&scale, &shift)
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        v.param("bias", &self.bias);
        v.buffer("running_mean", &self.running_mean);
        v.buffer("running_var", &self.running_var);
        v.buffer("num_batches_tracked", &self.num_batches_tracked);
    }

    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
    fn training(&self) -> Option<bool> {
        Some(self.training.load(Ordering::Relaxed))
    }
}

/// Layer normalization over the trailing `normalized_shape`, with learnable weight and bias.
pub struct LayerNorm {
    /// Scale (starts at 1).
    pub weight: Tensor,
    /// Shift (starts at 0).
    pub bias: Tensor,
    normalized_shape: Vec<usize>,
    eps: f64,
}

impl LayerNorm {
    /// Over the trailing dimensions `normalized_shape`, eps 1e-5.
    pub fn new(normalized_shape: &[usize], device: &Device) -> LayerNorm {
        LayerNorm {
            weight: init::param(Tensor::ones(normalized_shape, device)),
            bias: init::param(Tensor::zeros(normalized_shape, device)),
            normalized_shape: normalized_shape.to_vec(),
            eps: 1e-5,
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(&self.normalized_shape, Some(&self.weight), Some(&self.bias), self.eps)
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        v.param("bias", &self.bias);
    }
}
