//! `Node`: one vertex of the lazy op graph — an op, its inputs, its shape, dtype and device, and
//! once computed, its storage.
//!
//! A node owns its inputs through `Tensor` handles (`Arc<Node>`), so the graph lives exactly as
//! long as something refers to it. A computed node whose gradient nobody needs drops its inputs
//! (`realize.rs`), which is what keeps a training loop's memory flat.

use crate::backend::Storage;
use crate::ops::Op;
use crate::{DType, Device, Shape, Tensor};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many graph nodes exist right now (for the memory tests).
pub fn live_nodes() -> usize {
    LIVE.load(Ordering::SeqCst)
}

/// A graph node. Reached through [`Tensor`].
pub(crate) struct Node {
    /// Unique for the life of the process; keys gradients and graph walks.
    pub id: u64,
    pub op: Box<dyn Op>,
    inputs: Mutex<Vec<Tensor>>,
    pub shape: Shape,
    pub dtype: DType,
    pub device: Device,
    requires_grad: AtomicBool,
    storage: Mutex<Option<Storage>>,
    /// The line of user code that created the node (for cross-check and error reports).
    pub location: &'static Location<'static>,
}

impl Node {
    pub fn new(
        op: Box<dyn Op>,
        inputs: Vec<Tensor>,
        shape: Shape,
        dtype: DType,
        device: Device,
        requires_grad: bool,
        location: &'static Location<'static>,
    ) -> Node {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            op,
            inputs: Mutex::new(inputs),
            shape,
            dtype,
            device,
            requires_grad: AtomicBool::new(requires_grad),
            storage: Mutex::new(None),
            location,
        }
    }

    /// The inputs (empty for a leaf, and for a computed node that dropped its history).
    pub fn inputs(&self) -> MutexGuard<'_, Vec<Tensor>> {
        lock(&self.inputs)
    }

    pub fn requires_grad(&self) -> bool {
        self.requires_grad.load(Ordering::Relaxed)
    }

    pub fn set_requires_grad(&self, on: bool) {
        self.requires_grad.store(on, Ordering::Relaxed)
    }

    /// The storage, once computed.
    pub fn storage(&self) -> Option<Storage> {
        lock(&self.storage).clone()
    }

    pub fn is_realized(&self) -> bool {
        lock(&self.storage).is_some()
    }

    pub fn set_storage(&self, storage: Storage) {
        *lock(&self.storage) = Some(storage);
    }

    /// Forgets the inputs: the node keeps its value but no longer its history.
    pub fn drop_inputs(&self) {
        let old = std::mem::take(&mut *lock(&self.inputs));
        drop(old);
    }
}

impl Drop for Node {
    /// Drops the chain of inputs iteratively: a graph thousands of ops deep must not overflow
    /// the stack by recursing through `Arc` drops.
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
        let mut stack = std::mem::take(self.inputs.get_mut().unwrap_or_else(|e| e.into_inner()));
        while let Some(t) = stack.pop() {
            if let Some(mut node) = Arc::into_inner(t.0) {
                stack.append(node.inputs.get_mut().unwrap_or_else(|e| e.into_inner()));
            }
        }
    }
}

/// Locks a mutex, ignoring poisoning: a panic elsewhere (a shape error caught by a test) must not
/// make every later tensor unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
