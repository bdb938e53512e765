//! Deferred assignments ([`Tensor::assign_deferred`]): state that a forward pass updates as a
//! side effect — BatchNorm's running statistics — is given its new value as a lazy tensor, and
//! the next realize, whatever it computes, computes that value with it and stores it in the
//! target. So a training step stays one realize (on a GPU, one submission) instead of forcing
//! one in the middle of the forward.
//!
//! Until then [`Tensor::latest`] is the value to build on: a second update before any realize
//! (two forwards, gradient accumulation) starts from the first one's pending value, and a reader
//! that realizes the target (`to_vec`, a checkpoint) sees every update.
//!
//! Pending assignments belong to the thread that recorded them (as the forward that made them
//! does): a realize on another thread neither computes them nor races that thread for them.

use crate::Tensor;
use std::cell::RefCell;

thread_local! {
    /// (target, value) pairs waiting for a realize, at most one per target.
    static PENDING: RefCell<Vec<(Tensor, Tensor)>> = const { RefCell::new(Vec::new()) };
}

/// Records that `target` takes `value` at the next realize, replacing an earlier pending value.
pub(crate) fn defer(target: &Tensor, value: Tensor) {
    PENDING.with_borrow_mut(|pending| match pending.iter_mut().find(|(t, _)| t.same(target)) {
        Some(entry) => entry.1 = value,
        None => pending.push((target.clone(), value)),
    })
}

/// The pending value of `target`, if any.
pub(crate) fn latest(target: &Tensor) -> Option<Tensor> {
    PENDING.with_borrow(|pending| pending.iter().find(|(t, _)| t.same(target)).map(|(_, v)| v.clone()))
}

/// Drops a pending value of `target` (an explicit assignment supersedes it).
pub(crate) fn cancel(target: &Tensor) {
    PENDING.with_borrow_mut(|pending| pending.retain(|(t, _)| !t.same(target)))
}

/// Takes the pending assignments, for a realize to compute with its roots.
pub(crate) fn take() -> Vec<(Tensor, Tensor)> {
    PENDING.with_borrow_mut(std::mem::take)
}

/// After a realize: stores each computed value in its target. Values not computed (the realize
/// failed) stay pending, unless a newer one was recorded meanwhile.
pub(crate) fn apply(taken: Vec<(Tensor, Tensor)>) {
    for (target, value) in taken {
        match value.storage() {
            Some(storage) if value.is_realized() => target.0.set_storage(storage),
            _ => {
                if latest(&target).is_none() {
                    defer(&target, value);
                }
            }
        }
    }
}
