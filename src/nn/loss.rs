//! Loss functions, mean-reduced as PyTorch's defaults. Cross-entropy is the fused
//! [`Tensor::cross_entropy`] (also over the (batch, time, vocabulary) logits of sequence
//! models, with padding left out of the mean); the others are compositions of tensor ops.

pub use crate::ops::loss::CrossEntropy;
use crate::{DType, Tensor};

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

/// Cross-entropy of sequence logits (B, T, V) against token ids (B, T), the mean over the tokens
/// whose target is not `ignore_index` (the padding): PyTorch's
/// `F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=pad)`. With every token
/// ignored the mean is 0/0, NaN, as PyTorch's.
///
/// ```
/// use kiln::nn::loss::sequence_cross_entropy;
/// use kiln::{Device, Tensor};
/// let logits = Tensor::zeros([2, 3, 4], &Device::Cpu); // uniform over 4 tokens
/// let targets = Tensor::from_vec(vec![1i32, 2, 0, 3, 0, 0], [2, 3], &Device::Cpu);
/// let loss = sequence_cross_entropy(&logits, &targets, Some(0)).item::<f32>().unwrap();
/// assert!((loss - 4f32.ln()).abs() < 1e-6); // the mean over the 3 real tokens
/// ```
#[track_caller]
pub fn sequence_cross_entropy(logits: &Tensor, targets: &Tensor, ignore_index: Option<i64>) -> Tensor {
    let (rows, vocab) = check_sequence("sequence_cross_entropy", logits, targets);
    let opts = CrossEntropy { ignore_index, ..CrossEntropy::default() };
    logits.reshape([rows, vocab]).cross_entropy_with(&targets.reshape([rows]), opts)
}

/// Cross-entropy of sequence logits (B, T, V) against token ids (B, T), the mean over the tokens
/// where `mask` (B, T, bool) is true: the padding mask of a batch
/// ([`Padding::mask`](crate::data::Padding::mask)). Targets under a false mask are not read, so
/// padding may hold any id.
///
/// ```
/// use kiln::nn::loss::masked_sequence_cross_entropy;
/// use kiln::{Device, Tensor};
/// let logits = Tensor::zeros([1, 3, 4], &Device::Cpu);
/// let targets = Tensor::from_vec(vec![1i32, 2, -1], [1, 3], &Device::Cpu);
/// let mask = Tensor::from_vec(vec![true, true, false], [1, 3], &Device::Cpu);
/// let loss = masked_sequence_cross_entropy(&logits, &targets, &mask).item::<f32>().unwrap();
/// assert!((loss - 4f32.ln()).abs() < 1e-6);
/// ```
#[track_caller]
pub fn masked_sequence_cross_entropy(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Tensor {
    let (rows, vocab) = check_sequence("masked_sequence_cross_entropy", logits, targets);
    if mask.dtype() != DType::Bool || mask.shape() != targets.shape() {
        panic!(
            "masked_sequence_cross_entropy: the mask must be bool of the targets' shape {}, found {} {}",
            targets.shape(),
            mask.shape(),
            mask.dtype()
        );
    }
    let mask = mask.reshape([rows]);
    // padded targets become class 0, so that whatever id the padding holds is never looked up
    let targets = mask.where_(&targets.reshape([rows]), &targets.reshape([rows]).zeros_like());
    let per_token = logits.reshape([rows, vocab]).cross_entropy_per_row(&targets, CrossEntropy::default());
    let weights = mask.cast(logits.dtype());
    (per_token * &weights).sum_all() / weights.sum_all()
}

/// The rows and vocabulary of (B, T, V) logits against (B, T) targets; panics naming `op` and
/// the shapes when they do not fit.
#[track_caller]
fn check_sequence(op: &str, logits: &Tensor, targets: &Tensor) -> (usize, usize) {
    let fits = logits.rank() == 3
        && targets.rank() == 2
        && logits.dims()[..2] == targets.dims()[..]
        && logits.dtype().is_float()
        && targets.dtype().is_index();
    if !fits {
        panic!(
            "{op}: expected float logits (B, T, V) and i32/u32 targets (B, T), found logits {} {} and \
             targets {} {}",
            logits.shape(),
            logits.dtype(),
            targets.shape(),
            targets.dtype()
        );
    }
    (logits.dims()[0] * logits.dims()[1], logits.dims()[2])
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
