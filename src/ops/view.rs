//! Ops that move no data: leaves (data given at creation), `reshape` and `detach` (which share
//! their input's storage) and `to` (which copies between devices).

use super::{CpuArg, Exec, GpuArg, Grad, Meta, Op, Tolerance};
use crate::backend::cpu::CpuStorage;
use crate::backend::wgpu::{GpuBuffer, Recorder};
use crate::{Result, Shape, Tensor};

/// Data given at creation.
pub(crate) struct Leaf;

impl Op for Leaf {
    fn name(&self) -> &'static str {
        "leaf"
    }
    fn exec(&self) -> Exec {
        Exec::Leaf
    }
    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // never computed
        Tolerance::Exact
    }
    fn cpu(&self, _: &[CpuArg], _: &Meta) -> CpuStorage {
        unreachable!("a leaf is realized at creation")
    }
    fn gpu(&self, _: &[GpuArg], _: &Meta, _: &mut Recorder) -> Result<GpuBuffer> {
        unreachable!("a leaf is realized at creation")
    }
}

/// The same values, no history.
pub(crate) struct Detach;

impl Op for Detach {
    fn name(&self) -> &'static str {
        "detach"
    }
    fn exec(&self) -> Exec {
        Exec::View
    }
    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // never computed: shares its input
        Tolerance::Exact
    }
    fn cpu(&self, _: &[CpuArg], _: &Meta) -> CpuStorage {
        unreachable!("a view shares its input's storage")
    }
    fn gpu(&self, _: &[GpuArg], _: &Meta, _: &mut Recorder) -> Result<GpuBuffer> {
        unreachable!("a view shares its input's storage")
    }
}

/// The same elements under another shape.
pub(crate) struct Reshape;

impl Op for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn exec(&self) -> Exec {
        Exec::View
    }
    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // never computed: shares its input
        Tolerance::Exact
    }
    fn cpu(&self, _: &[CpuArg], _: &Meta) -> CpuStorage {
        unreachable!("a view shares its input's storage")
    }
    fn gpu(&self, _: &[GpuArg], _: &Meta, _: &mut Recorder) -> Result<GpuBuffer> {
        unreachable!("a view shares its input's storage")
    }
    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        vec![Some(g.grad.reshape(g.inputs[0].shape().clone()))]
    }
}

/// A copy on another device.
pub(crate) struct ToDevice;

impl Op for ToDevice {
    fn name(&self) -> &'static str {
        "to_device"
    }
    fn exec(&self) -> Exec {
        Exec::Transfer
    }
    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // copies the value unchanged
        Tolerance::Exact
    }
    fn cpu(&self, _: &[CpuArg], _: &Meta) -> CpuStorage {
        unreachable!("transfers are run by the realizer")
    }
    fn gpu(&self, _: &[GpuArg], _: &Meta, _: &mut Recorder) -> Result<GpuBuffer> {
        unreachable!("transfers are run by the realizer")
    }
    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        vec![Some(g.grad.to(&g.inputs[0].device()))]
    }
}

impl Tensor {
    /// The same elements in another shape with the same number of elements. Free: no copy.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let x = Tensor::arange(0.0, 6.0, 1.0, &Device::Cpu).reshape([2, 3]);
    /// assert_eq!(x.dims(), &[2, 3]);
    /// ```
    #[track_caller]
    pub fn reshape(&self, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            panic!("reshape: cannot reshape {} ({} elements) to {shape}", self.shape(), self.numel());
        }
        if &shape == self.shape() {
            return self.clone();
        }
        Tensor::from_op(Reshape, [self.clone()], shape, self.dtype())
    }

    /// Flattens dimensions `start..` into one: `(N, C, H, W).flatten_from(1)` is `(N, C·H·W)`.
    #[track_caller]
    pub fn flatten_from(&self, start: usize) -> Tensor {
        if start > self.rank() {
            panic!("flatten_from: axis {start} is out of range for shape {}", self.shape());
        }
        let mut dims = self.dims()[..start].to_vec();
        dims.push(self.dims()[start..].iter().product());
        self.reshape(dims)
    }

    /// Inserts a dimension of size 1 at `axis` (negative counts from the end of the result).
    #[track_caller]
    pub fn unsqueeze(&self, axis: isize) -> Tensor {
        let rank = self.rank() as isize + 1;
        let a = if axis < 0 { axis + rank } else { axis };
        if a < 0 || a >= rank {
            panic!("unsqueeze: axis {axis} is out of range for shape {}", self.shape());
        }
        let mut dims = self.dims().to_vec();
        dims.insert(a as usize, 1);
        self.reshape(dims)
    }

    /// Removes dimension `axis`, which must have size 1.
    #[track_caller]
    pub fn squeeze(&self, axis: isize) -> Tensor {
        let a = self.shape().axis("squeeze", axis);
        if self.dims()[a] != 1 {
            panic!("squeeze: dimension {a} of shape {} is not 1", self.shape());
        }
        let mut dims = self.dims().to_vec();
        dims.remove(a);
        self.reshape(dims)
    }
}
