//! `Node`: one vertex of the lazy op graph — an op, its inputs, its shape, dtype and device, and
//! once computed, its storage.
//!
//! A node owns its inputs through `Tensor` handles (`Arc<Node>`), so the graph lives exactly as
//! long as something refers to it. A computed node whose gradient nobody needs drops its inputs
//! (`realize.rs`), which is what keeps a training loop's memory flat.

use crate::backend::Storage;
use crate::error::OutOfRange;
use crate::ops::Op;
use crate::{DType, Device, Shape, Tensor};
use smallvec::SmallVec;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many graph nodes exist right now (for the memory tests).
pub fn live_nodes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// A node's inputs: most ops have one to three.
pub(crate) type Inputs = SmallVec<[Tensor; 3]>;

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A fresh mark for one graph walk (see [`Node::visit`]).
pub(crate) fn new_walk() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// Where a node was created: a line of user code, and whether by the gradient rule of the op
/// recorded there.
pub(crate) struct Site {
    pub location: &'static Location<'static>,
    pub gradient: bool,
}

impl<O: ?Sized> NodeOf<O> {
    /// "created at file:line", or "created by the gradient of the op at file:line".
    pub fn site(&self) -> String {
        match self.in_backward {
            true => format!("created by the backward pass of the op recorded at {}", self.location),
            false => format!("created at {}", self.location),
        }
    }
}

/// A graph node. Reached through [`Tensor`]. The op is stored inline, so a node is one
/// allocation.
pub(crate) type Node = NodeOf<dyn Op>;

/// A node holding an op of type `O` (unsized as [`Node`] behind a `Tensor`).
pub(crate) struct NodeOf<O: ?Sized> {
    /// Unique for the life of the process; keys gradients and graph walks.
    pub id: u64,
    inputs: Mutex<Inputs>,
    /// The last graph walk that visited this node (see [`Node::visit`]).
    mark: AtomicU64,
    pub shape: Shape,
    pub dtype: DType,
    pub device: Device,
    requires_grad: AtomicBool,
    storage: Mutex<Option<Storage>>,
    /// Whether `storage` holds a value (read without taking the lock).
    realized: AtomicBool,
    /// The line of user code that created the node (for cross-check and error reports); for a
    /// node a gradient rule created, the line that recorded the op it differentiates.
    pub location: &'static Location<'static>,
    /// Whether a gradient rule created the node.
    pub in_backward: bool,
    /// Set when a GPU kernel found an out-of-range index in this node's data or upstream of it
    /// after its inputs were released: realizing it again returns this error (as recomputing
    /// it from the same inputs would).
    poison: OnceLock<Box<OutOfRange>>,
    pub op: O,
}

impl<O: Op> NodeOf<O> {
    pub fn new(
        op: O,
        inputs: Inputs,
        shape: Shape,
        dtype: DType,
        device: Device,
        requires_grad: bool,
        site: Site,
    ) -> NodeOf<O> {
        LIVE.fetch_add(1, Ordering::Relaxed);
        NodeOf {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            op,
            inputs: Mutex::new(inputs),
            mark: AtomicU64::new(0),
            shape,
            dtype,
            device,
            requires_grad: AtomicBool::new(requires_grad),
            storage: Mutex::new(None),
            realized: AtomicBool::new(false),
            location: site.location,
            in_backward: site.gradient,
            poison: OnceLock::new(),
        }
    }
}

impl<O: ?Sized> NodeOf<O> {
    /// The inputs (empty for a leaf, and for a computed node that dropped its history).
    pub fn inputs(&self) -> MutexGuard<'_, Inputs> {
        lock(&self.inputs)
    }

    /// Marks this node visited by walk `walk`; true the first time (a graph walk's visited set
    /// without a hash set).
    pub fn visit(&self, walk: u64) -> bool {
        self.mark.swap(walk, Ordering::Relaxed) != walk
    }

    /// Whether walk `walk` has visited this node.
    pub fn visited(&self, walk: u64) -> bool {
        self.mark.load(Ordering::Relaxed) == walk
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
        self.realized.load(Ordering::Acquire)
    }

    /// Takes the storage out (the node is about to be dropped).
    pub fn take_storage(&self) -> Option<Storage> {
        let taken = lock(&self.storage).take();
        self.realized.store(false, Ordering::Release);
        taken
    }

    pub fn set_storage(&self, storage: Storage) {
        *lock(&self.storage) = Some(storage);
        self.realized.store(true, Ordering::Release);
    }

    /// The error that computing this node gave, if it was poisoned (see the field).
    pub fn poison(&self) -> Option<&OutOfRange> {
        self.poison.get().map(|b| b.as_ref())
    }

    /// Drops the value computed from out-of-range data and remembers why.
    pub fn set_poison(&self, error: OutOfRange) {
        self.take_storage();
        let _ = self.poison.set(Box::new(error));
    }

    /// Forgets the inputs: the node keeps its value but no longer its history.
    pub fn drop_inputs(&self) {
        let old = std::mem::take(&mut *lock(&self.inputs));
        drop(old);
    }
}

impl<O: ?Sized> Drop for NodeOf<O> {
    /// Drops the chain of inputs iteratively: a graph thousands of ops deep must not overflow
    /// the stack by recursing through `Arc` drops.
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        let inputs = self.inputs.get_mut().unwrap_or_else(|e| e.into_inner());
        if inputs.is_empty() {
            return;
        }
        let mut stack: Vec<Tensor> = inputs.drain(..).collect();
        while let Some(mut t) = stack.pop() {
            // the last handle on a node: empty its inputs here, so dropping it recurses no further
            if let Some(node) = Arc::get_mut(&mut t.0) {
                stack.extend(node.inputs.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..));
            }
        }
    }
}

/// Locks a mutex, ignoring poisoning: a panic elsewhere (a shape error caught by a test) must not
/// make every later tensor unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
