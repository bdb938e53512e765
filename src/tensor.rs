//! `Tensor`: a cheap handle on a lazy graph node, and the methods every tensor has — creation
//! from data, shape and dtype queries, reading values back, devices and gradients.
//!
//! The op methods (`add`, `matmul`, `softmax`, ...) are defined next to their ops in
//! `src/ops/`. Every one of them records a node and checks shapes at once, computing nothing;
//! reading a value computes what it needs.
//!
//! ```
//! use kiln::{Device, Tensor};
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2], &Device::Cpu);
//! let y = x.matmul(&x).relu().sum_all();
//! assert_eq!(y.item::<f32>().unwrap(), 54.0);
//! ```

mod display;

use crate::backend::Storage;
use crate::backend::cpu::CpuStorage;
use crate::graph::node::{Inputs, Node, NodeOf, Site};
use crate::graph::realize;
use crate::ops::Op;
use crate::ops::view::{Leaf, ToDevice};
use crate::{DType, Device, Element, Result, Shape, autograd};
use std::panic::Location;
use std::sync::Arc;

/// An n-dimensional array on a device, recorded lazily into an op graph. Cloning is free.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Node>);

impl Tensor {
    /// Records a node for `op` applied to `inputs`. Every op method ends here.
    ///
    /// Panics (at the caller's line) when the inputs sit on different devices.
    #[track_caller]
    pub(crate) fn from_op(
        op: impl Op,
        inputs: impl IntoIterator<Item = Tensor>,
        shape: Shape,
        dtype: DType,
    ) -> Tensor {
        let inputs: Inputs = inputs.into_iter().collect();
        let device = inputs.first().map(|t| t.device()).expect("an op with inputs");
        if let Some(other) = inputs.iter().find(|t| t.device() != device) {
            panic!(
                "{}: inputs are on different devices ({device} and {}); move them with .to(&device)",
                op.describe(),
                other.device()
            );
        }
        if (dtype == DType::F16 || inputs.iter().any(|t| t.dtype() == DType::F16)) && !op.computes_f16() {
            // in f32 between casts (see `Op::computes_f16`)
            let wide: Inputs = inputs
                .iter()
                .map(|t| if t.dtype() == DType::F16 { t.cast(DType::F32) } else { t.clone() })
                .collect();
            let y = Tensor::from_op(op, wide, shape, if dtype == DType::F16 { DType::F32 } else { dtype });
            return y.cast(dtype);
        }
        let requires_grad =
            dtype.is_float() && !autograd::is_no_grad() && inputs.iter().any(|t| t.requires_grad());
        Tensor::from_node(op, inputs, shape, dtype, device, requires_grad)
    }

    /// Records a node with no inputs (creation ops) on `device`.
    #[track_caller]
    pub(crate) fn from_source(op: impl Op, shape: Shape, dtype: DType, device: Device) -> Tensor {
        if dtype == DType::F16 && !op.computes_f16() {
            // in f32, then cast (see `Op::computes_f16`)
            return Tensor::from_node(op, Inputs::new(), shape, DType::F32, device, false).cast(dtype);
        }
        Tensor::from_node(op, Inputs::new(), shape, dtype, device, false)
    }

    #[track_caller]
    fn from_node(
        op: impl Op,
        inputs: Inputs,
        shape: Shape,
        dtype: DType,
        device: Device,
        requires_grad: bool,
    ) -> Tensor {
        if dtype == DType::F64 && device.is_gpu() {
            panic!("{}: f64 tensors live on the CPU only; cast to f32 for {device}", op.describe());
        }
        debug_assert!(crate::ops::is_registered(op.name()), "op {} is missing from ops::op_set", op.name());
        let site = match crate::autograd::gradient_of() {
            Some(forward) => Site { location: forward, gradient: true },
            None => Site { location: Location::caller(), gradient: false },
        };
        let node = NodeOf::new(op, inputs, shape, dtype, device, requires_grad, site);
        Tensor(Arc::new(node))
    }

    /// A tensor holding `data` in row-major order, on `device`.
    ///
    /// Panics when `data.len()` is not the number of elements of `shape`.
    #[track_caller]
    pub fn from_vec<T: Element>(data: Vec<T>, shape: impl Into<Shape>, device: &Device) -> Tensor {
        let shape = shape.into();
        if data.len() != shape.numel() {
            panic!("from_vec: {} values do not fill shape {shape}", data.len());
        }
        Tensor::from_storage(CpuStorage::from_vec(data), shape).to(device)
    }

    /// A tensor copied from `data`, on `device`.
    #[track_caller]
    pub fn from_slice<T: Element>(data: &[T], shape: impl Into<Shape>, device: &Device) -> Tensor {
        Tensor::from_vec(data.to_vec(), shape, device)
    }

    /// A rank-0 f32 tensor.
    #[track_caller]
    pub fn scalar(value: f32, device: &Device) -> Tensor {
        Tensor::from_vec(vec![value], Shape::scalar(), device)
    }

    /// A realized CPU leaf holding `storage`.
    #[track_caller]
    pub(crate) fn from_storage(storage: CpuStorage, shape: Shape) -> Tensor {
        let dtype = storage.dtype();
        let t = Tensor::from_source(Leaf, shape, dtype, Device::Cpu);
        t.0.set_storage(Storage::Cpu(Arc::new(storage)));
        t
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.0.shape
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.0.shape.dims()
    }

    /// Dimension `axis` (negative counts from the end).
    #[track_caller]
    pub fn dim(&self, axis: isize) -> usize {
        self.0.shape.dim(self.0.shape.axis("dim", axis))
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.rank()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.0.shape.numel()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// The device it lives on.
    pub fn device(&self) -> Device {
        self.0.device
    }

    /// A process-unique id of the underlying node (gradients are keyed by it).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The name of the op that computes this tensor (`"matmul"`; `"leaf"` for data), for
    /// reading a graph.
    pub fn op_name(&self) -> &'static str {
        self.0.op.name()
    }

    /// Whether two handles refer to the same node.
    pub fn same(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The line of user code that created this tensor (for a node of a backward pass, the line
    /// that recorded the op it differentiates).
    pub fn created_at(&self) -> &'static Location<'static> {
        self.0.location
    }

    /// Computes this tensor (and whatever it needs) now.
    pub fn realize(&self) -> Result<()> {
        realize::realize(std::slice::from_ref(self))
    }

    /// Computes several tensors in one pass: on a GPU, one command submission for all of them.
    pub fn realize_all(tensors: &[Tensor]) -> Result<()> {
        realize::realize(tensors)
    }

    /// Whether the value has been computed.
    pub fn is_realized(&self) -> bool {
        self.0.is_realized()
    }

    /// The values, in row-major order. `T` must be the tensor's dtype.
    #[track_caller]
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            panic!("to_vec: the tensor holds {}, not {}", self.dtype(), T::DTYPE);
        }
        Ok(self.host()?.as_slice::<T>().to_vec())
    }

    /// The values converted to f64, whatever the dtype.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        Ok(self.host()?.to_f64_vec())
    }

    /// The single value of a one-element tensor.
    #[track_caller]
    pub fn item<T: Element>(&self) -> Result<T> {
        if self.numel() != 1 {
            panic!("item: the tensor has shape {}, not one element", self.shape());
        }
        Ok(self.to_vec::<T>()?[0])
    }

    /// The realized values on the CPU (downloaded if they live on a GPU).
    pub(crate) fn host(&self) -> Result<Arc<CpuStorage>> {
        self.realize()?;
        match self.0.storage().expect("realized") {
            Storage::Cpu(s) => Ok(s),
            Storage::Gpu(b) => Ok(Arc::new(b.download(self.dtype(), self.numel())?)),
        }
    }

    pub(crate) fn storage(&self) -> Option<Storage> {
        self.0.storage()
    }

    /// This tensor on `device` (itself if it is already there). Recorded like any op, so
    /// gradients flow back across devices.
    #[track_caller]
    pub fn to(&self, device: &Device) -> Tensor {
        if self.device() == *device {
            return self.clone();
        }
        // a copy not yet made, back to where its source lives: the source itself, so that
        // lengths uploaded lazily with a batch and read back on the host cost no round trip
        if !self.is_realized() && self.0.op.name() == "to_device" {
            let source = self.0.inputs().first().cloned();
            if let Some(source) = source.filter(|s| s.device() == *device) {
                return source;
            }
        }
        if self.dtype() == DType::F64 && device.is_gpu() {
            panic!("to: f64 tensors live on the CPU only; cast to f32 before moving to {device}");
        }
        let requires_grad = self.requires_grad() && !autograd::is_no_grad();
        Tensor::from_node(
            ToDevice,
            smallvec::smallvec![self.clone()],
            self.shape().clone(),
            self.dtype(),
            *device,
            requires_grad,
        )
    }

    /// Whether gradients flow to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad()
    }

    /// Marks this tensor as a variable whose gradient `backward` computes, and returns it.
    ///
    /// Any tensor without gradient history can be marked: a freshly created one, one computed
    /// from tensors that need no gradient (`(Tensor::randn(..) * 0.1).requires_grad_()`), or one
    /// computed under [`crate::no_grad`], computed yet or not: as in PyTorch it becomes a leaf,
    /// and no gradient flows past it to what it was computed from.
    #[track_caller]
    pub fn requires_grad_(self) -> Tensor {
        if !self.dtype().is_float() {
            panic!("requires_grad_: a {} tensor has no gradient", self.dtype());
        }
        if !self.0.requires_grad() {
            // a no_grad result not computed yet still needs its inputs for its value, but
            // through detached handles, so the backward pass stops here
            for input in self.0.inputs().iter_mut().filter(|i| i.requires_grad()) {
                *input = input.detach();
            }
        } else if self.0.inputs().iter().any(|t| t.requires_grad()) {
            panic!("requires_grad_: the tensor already has gradient history; use .detach() first");
        }
        self.0.set_requires_grad(true);
        self
    }

    /// Stops computing this variable's gradient (PyTorch's `requires_grad_(False)`), in place:
    /// every handle of the tensor, the module's and the optimizer's, sees it. Ops built from it
    /// afterwards record no gradient through it; [`Tensor::requires_grad_`] turns it back on.
    /// Panics on a tensor with gradient history (only leaves are variables).
    #[track_caller]
    pub fn stop_requiring_grad(&self) {
        if self.0.inputs().iter().any(|t| t.requires_grad()) {
            panic!("stop_requiring_grad: the tensor has gradient history; freeze the leaf it comes from");
        }
        self.0.set_requires_grad(false);
    }

    /// The same values with no history: gradients stop here. Free (shares storage).
    #[track_caller]
    pub fn detach(&self) -> Tensor {
        let (shape, dtype, device) = (self.shape().clone(), self.dtype(), self.device());
        Tensor::from_node(
            crate::ops::view::Detach,
            smallvec::smallvec![self.clone()],
            shape,
            dtype,
            device,
            false,
        )
    }

    /// Replaces the value of this tensor with the value of `value`, in place: every handle on
    /// it (a model and its optimizer) sees the new value. `value` is realized first, and any
    /// deferred assignment to this tensor is dropped.
    ///
    /// This is how parameters are updated. Panics when this tensor has gradient history, or on a
    /// change of shape, dtype or device.
    #[track_caller]
    pub fn assign(&self, value: &Tensor) -> Result<()> {
        self.check_assignable("assign", value);
        crate::graph::deferred::cancel(self);
        value.realize()?;
        self.0.set_storage(value.storage().expect("realized"));
        self.0.drop_inputs();
        Ok(())
    }

    /// Assigns `value` to this tensor at the next realize on this thread, whatever that realize
    /// computes, so that no realize is forced now: how a forward pass updates state as a side
    /// effect (BatchNorm's running statistics) within the training step's one realize. Build
    /// `value` on [`Tensor::latest`], so that two updates before a realize compose.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let count = Tensor::zeros([1], &Device::Cpu);
    /// count.assign_deferred(&(count.latest() + 1.0));
    /// count.assign_deferred(&(count.latest() + 1.0)); // nothing has run yet
    /// assert_eq!(count.to_vec::<f32>().unwrap(), vec![2.0]);
    /// ```
    #[track_caller]
    pub fn assign_deferred(&self, value: &Tensor) {
        self.check_assignable("assign_deferred", value);
        crate::graph::deferred::defer(self, value.detach());
    }

    /// The value this tensor will hold after the next realize: its pending deferred assignment
    /// (see [`Tensor::assign_deferred`]), or itself.
    pub fn latest(&self) -> Tensor {
        crate::graph::deferred::latest(self).unwrap_or_else(|| self.clone())
    }

    #[track_caller]
    fn check_assignable(&self, op: &str, value: &Tensor) {
        if self.0.inputs().iter().any(|t| t.requires_grad()) {
            panic!("{op}: the tensor has gradient history; only variables can be assigned");
        }
        if value.shape() != self.shape() || value.dtype() != self.dtype() {
            panic!(
                "{op}: value {} {} does not match the tensor {} {}",
                value.shape(),
                value.dtype(),
                self.shape(),
                self.dtype()
            );
        }
        if value.device() != self.device() {
            panic!("{op}: value is on {}, the tensor on {}", value.device(), self.device());
        }
    }
}
