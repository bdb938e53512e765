//! Loss functions, mean-reduced as PyTorch's defaults. Cross-entropy is the fused
//! [`Tensor::cross_entropy`]; the others are compositions of tensor ops.

use crate::Tensor;
pub use crate::ops::loss::CrossEntropy;

/// Mean squared error.
#[track_caller]
pub fn mse(pred: &Tensor, target: &Tensor) -> Tensor {
    (pred - target).square().mean_all()
}

/// Mean absolute error.
#[track_caller]
pub fn l1(pred: &Tensor, target: &Tensor) -> Tensor {
    (pred - target).abs().mean_all()
}

/// Smooth L1 (Huber-like, PyTorch's definition): 0.5·d²/β where |d| < β, |d| − 0.5·β elsewhere.
#[track_caller]
pub fn smooth_l1(pred: &Tensor, target: &Tensor, beta: f64) -> Tensor {
    let d = (pred - target).abs();
    let quadratic = d.square() * (0.5 / beta);
    let linear = &d - 0.5 * beta;
    d.lt_scalar(beta).where_(&quadratic, &linear).mean_all()
}

/// Cross-entropy of logits (N, C) against class indices (N).
#[track_caller]
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Tensor {
    logits.cross_entropy(target)
}

/// Negative log-likelihood of log-probabilities (N, C) against class indices (N).
#[track_caller]
pub fn nll(log_probs: &Tensor, target: &Tensor) -> Tensor {
    let n = target.numel();
    -log_probs.gather(1, &target.reshape([n, 1])).mean_all()
}

/// Binary cross-entropy of logits against targets in [0, 1], computed stably as
/// softplus(x) − x·t.
#[track_caller]
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Tensor {
    (logits.softplus() - logits * target).mean_all()
}
