//! Automatic mixed precision: an autocast scope in which matrix products and convolutions run
//! in f16 while the precision-sensitive ops (softmax, log-softmax, layer and batch
//! normalization, cross-entropy) run in f32, as PyTorch's `torch.autocast` does. Parameters and
//! optimizer state stay f32 (the master weights): a product casts its f32 operands to f16, and
//! the cast's gradient rule brings the f16 gradient back to f32. Pair it with
//! [`crate::optim::GradScaler`], which keeps small f16 gradients from flushing to zero.
//!
//! ```
//! use kiln::{DType, Device, Tensor, amp};
//! let x = Tensor::randn([4, 8], &Device::Cpu);
//! let w = Tensor::randn([8, 3], &Device::Cpu).requires_grad_();
//! let logits = {
//!     let _autocast = amp::autocast(DType::F16);
//!     x.matmul(&w)
//! };
//! assert_eq!(logits.dtype(), DType::F16);
//! // the gradient reaches the f32 weight as f32
//! let grads = logits.cast(DType::F32).square().mean_all().backward();
//! assert_eq!(grads.get(&w).unwrap().dtype(), DType::F32);
//! ```
//!
//! f16 is used only where asked: outside a scope, and for every op not named above, tensors keep
//! their dtype.

use crate::{DType, Tensor};
use std::cell::Cell;

thread_local! {
    /// The innermost autocast scope's dtype on this thread, if any.
    static AUTOCAST: Cell<Option<DType>> = const { Cell::new(None) };
}

/// Enters an autocast scope on this thread until the guard drops (scopes nest; the innermost
/// wins). `dtype` is the low-precision type, f16.
///
/// Panics for any other dtype: only f16 has kernels that benefit.
#[track_caller]
pub fn autocast(dtype: DType) -> AutocastGuard {
    if dtype != DType::F16 {
        panic!("autocast: the low-precision dtype must be f16, found {dtype}");
    }
    let previous = AUTOCAST.with(|a| a.replace(Some(dtype)));
    AutocastGuard { previous }
}

/// Leaves any autocast scope on this thread until the guard drops (for a part of a model that
/// must run in full precision).
pub fn autocast_off() -> AutocastGuard {
    let previous = AUTOCAST.with(|a| a.replace(None));
    AutocastGuard { previous }
}

/// The dtype of the autocast scope this thread is in, if any.
pub fn autocast_dtype() -> Option<DType> {
    AUTOCAST.with(|a| a.get())
}

/// Restores the enclosing autocast state when dropped (see [`autocast`]).
#[must_use = "the scope ends when the guard drops"]
pub struct AutocastGuard {
    previous: Option<DType>,
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        AUTOCAST.with(|a| a.set(self.previous));
    }
}

/// An operand of a product or convolution as autocast wants it: f32 cast to the scope's dtype
/// inside a scope, anything else unchanged.
#[track_caller]
pub(crate) fn narrow(t: &Tensor) -> Tensor {
    match autocast_dtype() {
        Some(low) if t.dtype() == DType::F32 => t.cast(low),
        _ => t.clone(),
    }
}

/// Whether `t` is an f16 tensor inside an autocast scope: a precision-sensitive op then widens it
/// (see [`widen`]).
pub(crate) fn widens(t: &Tensor) -> bool {
    t.dtype() == DType::F16 && autocast_dtype().is_some()
}

/// An input of a precision-sensitive op as autocast wants it: f16 widened to f32 inside a scope,
/// anything else unchanged.
#[track_caller]
pub(crate) fn widen(t: &Tensor) -> Tensor {
    if widens(t) { t.cast(DType::F32) } else { t.clone() }
}
