//! Indexing by integer tensors: `gather` and `index_select` read at indices; `scatter_add` and
//! `index_add` (their gradients) add at indices. Indices are i32 or u32. An out-of-range index
//! is `Error::OutOfRange` on both backends, naming the first bad element: the CPU validates
//! before computing, the GPU kernels skip bad elements and report them (`report_fault`).
//!
//! GPU adds use atomics (a compare-and-swap loop for f32), so the order of additions into one
//! element varies between runs: results agree with the CPU to rounding, not bit for bit.

use super::epilogue::{Epilogue, EpilogueHost, Site};
use super::{CpuArg, Fault, GpuArg, Grad, Meta, Op, Tolerance, ulps_summing};
use crate::backend::cpu::{CpuData, CpuStorage, indices, with_any};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::{MAX_RANK, around, pack, u32_of};
use crate::ops::movement::pick;
use crate::ops::wgsl::wgsl_type;
use crate::{DType, Result, Shape, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("index.wgsl");

/// Which indexing op.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// out[c] = x[c with c_axis = index[c]]; index has the output's shape.
    Gather,
    /// out[.., j, ..] = x[.., index[j], ..]; index is 1-D.
    IndexSelect,
    /// out = x; out[c with c_axis = index[c]] += src[c]; index has src's shape.
    ScatterAdd,
    /// out = x; out[.., index[j], ..] += src[.., j, ..]; index is 1-D.
    IndexAdd,
}

/// An indexing op along `axis`. Inputs: (x, index) to read, (x, index, src) to add.
pub(crate) struct Indexing {
    kind: Kind,
    axis: usize,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    rank: u32,
    axis: u32,
    /// x's size along the axis (the index bound).
    bound: u32,
    /// For the 1-D forms: elements after the axis, and the index length.
    inner: u32,
    k: u32,
    /// Where the kernel reports out-of-range indices (see `Recorder::fault_word`).
    fault_word: u32,
    _pad: u32,
    /// The iterated shape (gather: the index's; scatter: src's).
    shape: [u32; MAX_RANK],
    /// x's (or out's) strides.
    strides: [u32; MAX_RANK],
}

/// For each element of `space`, the index's shape, the offset into x that gather reads or
/// scatter_add adds to.
fn targets(axis: usize, x: &Shape, space: &Shape, index: &[usize]) -> Vec<usize> {
    let (strides, space_strides) = (x.strides(), space.strides());
    (0..space.numel())
        .map(|i| {
            (0..space.rank())
                .map(|d| {
                    let c = i / space_strides[d] % space.dim(d);
                    if d == axis { index[i] * strides[d] } else { c * strides[d] }
                })
                .sum()
        })
        .collect()
}

/// The input of index_select and index_add as (outer, size, inner) around the axis: whole
/// slices of `inner` contiguous elements move at a time.
struct Runs {
    outer: usize,
    size: usize,
    inner: usize,
}

impl Runs {
    fn of(x: &Shape, axis: usize) -> Runs {
        let (outer, size, inner) = around(x.dims(), axis);
        Runs { outer, size, inner }
    }

    /// The slices at `index` along the axis.
    ///
    /// Into a pooled buffer, its slices copied in parallel when it is large (an embedding's
    /// lookup of a batch of sequences is megabytes).
    fn select<T: crate::Element>(&self, x: &[T], index: &[usize]) -> CpuData {
        const PARALLEL_ELEMENTS: usize = 1 << 16;
        let inner = self.inner;
        let mut out = cpu_pool::for_overwrite::<T>(self.outer * index.len() * inner);
        if out.is_empty() {
            return T::wrap(out);
        }
        // output slice r is slice index[r % k] of block r / k of x
        let copy = |(r, slice): (usize, &mut [T])| {
            let at = ((r / index.len()) * self.size + index[r % index.len()]) * inner;
            slice.copy_from_slice(&x[at..at + inner]);
        };
        if out.len() < PARALLEL_ELEMENTS {
            out.chunks_mut(inner).enumerate().for_each(copy);
        } else {
            out.par_chunks_mut(inner).enumerate().for_each(copy);
        }
        T::wrap(out)
    }

    /// A copy of `x` with slice k of `src` added at `index[k]` along the axis, in the order of
    /// `src` (as the element-wise walk did).
    fn add<T: Copy + std::ops::AddAssign>(&self, x: &[T], index: &[usize], src: &[T]) -> Vec<T> {
        let mut y = x.to_vec();
        let inner = self.inner;
        for o in 0..self.outer {
            for (k, &j) in index.iter().enumerate() {
                let (to, from) = ((o * self.size + j) * inner, (o * index.len() + k) * inner);
                y[to..to + inner].iter_mut().zip(&src[from..from + inner]).for_each(|(y, &s)| *y += s);
            }
        }
        y
    }
}

/// The kernel for `kind` on elements of `dtype` with indices of `index`.
fn kernel(kind: Kind, dtype: DType, index: DType) -> Kernel<'static> {
    let entry = match kind {
        Kind::Gather => "gather",
        Kind::IndexSelect => "index_select",
        Kind::ScatterAdd => "scatter_add",
        Kind::IndexAdd => "index_add",
    };
    let add = match dtype {
        DType::F32 => "atomic_add_f32(t, v); // @add",
        _ => "atomicAdd(&acc[t], bitcast<u32>(v)); // @add",
    };
    Kernel::new(&SHADER, entry, 2, 1)
        .with_fault_reports()
        .with("alias T = f32; // @T", format!("alias T = {};", wgsl_type(dtype)))
        .with("alias I = i32; // @I", format!("alias I = {};", wgsl_type(index)))
        .with("atomic_add_f32(t, v); // @add", add)
}

impl Indexing {
    /// The kernel's parameters (with a fault word for its indices) and grid.
    fn launch(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<(Params, Grid)> {
        let name = self.name();
        let x = &args[0];
        let space = match self.kind {
            Kind::Gather | Kind::IndexSelect => out.shape,
            Kind::ScatterAdd | Kind::IndexAdd => args[2].shape,
        };
        let (_, k, inner) = around(space.dims(), self.axis);
        let fault_word = rec.fault_word(1, "index", x.shape.dim(self.axis))?;
        let params = Params {
            n: u32_of(name, space.numel())?,
            rank: space.rank() as u32,
            axis: self.axis as u32,
            bound: u32_of(name, x.shape.dim(self.axis))?,
            inner: u32_of(name, inner)?,
            k: u32_of(name, k)?,
            fault_word,
            _pad: 0,
            shape: pack(name, space.dims(), 1)?,
            strides: pack(name, &x.shape.strides(), 0)?,
        };
        Ok((params, Grid::Linear(params.n.div_ceil(256))))
    }
}

/// Where `index.wgsl`'s reads take an epilogue (see `epilogue.rs`).
const EPILOGUE_SITE: Site = Site {
    output_binding: "@group(0) @binding(3) var<storage, read_write> y: array<T>; // @OUTPUTS",
    store: "    y[i] = v; // @STORE",
};

/// gather and index_select store through a chain (in f32): an embedding's lookup, then its
/// positions added or its scale applied.
impl EpilogueHost for Indexing {
    fn takes_epilogue(&self, _: &[&Shape], _: &Shape, dtype: DType) -> bool {
        matches!(self.kind, Kind::Gather | Kind::IndexSelect) && dtype == DType::F32
    }

    fn prefix_words(&self) -> usize {
        std::mem::size_of::<Params>() / 4
    }

    fn own_bindings(&self) -> usize {
        2
    }

    fn launch_epilogue(
        &self,
        args: &[GpuArg],
        out: &Meta,
        epilogue: &Epilogue,
        rec: &mut Recorder,
    ) -> Result<Vec<GpuBuffer>> {
        let (params, grid) = self.launch(args, out, rec)?;
        let kernel = kernel(self.kind, out.dtype, args[1].dtype);
        let reads = [args[0].buf, args[1].buf];
        epilogue.dispatch(rec, kernel, &EPILOGUE_SITE, &params, &reads, out.shape.numel(), out.dtype, grid)
    }
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let mut all = Vec::new();
    for kind in [Kind::Gather, Kind::IndexSelect, Kind::ScatterAdd, Kind::IndexAdd] {
        for dtype in [DType::F32, DType::I32, DType::U32] {
            for index in [DType::I32, DType::U32] {
                all.push(kernel(kind, dtype, index));
            }
        }
    }
    all
}

impl Op for Indexing {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Gather => "gather",
            Kind::IndexSelect => "index_select",
            Kind::ScatterAdd => "scatter_add",
            Kind::IndexAdd => "index_add",
        }
    }

    fn describe(&self) -> String {
        format!("{}(axis {})", self.name(), self.axis)
    }

    fn validate(&self, args: &[CpuArg]) -> Option<Fault> {
        Fault::first("index", args[1].data, args[0].shape.dim(self.axis), None)
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        let x = &args[0];
        let bound = x.shape.dim(self.axis);
        let index = indices(self.name(), args[1].data, bound);
        match self.kind {
            Kind::IndexSelect => {
                let runs = Runs::of(x.shape, self.axis);
                CpuStorage::new(with_any!(x.data, v => runs.select(v, &index)))
            }
            Kind::IndexAdd => {
                let runs = Runs::of(x.shape, self.axis);
                let src = args[2].data;
                CpuStorage::new(match (x.data.data(), src.data()) {
                    (CpuData::F32(v), CpuData::F32(s)) => CpuData::F32(runs.add(v, &index, s)),
                    (CpuData::F64(v), CpuData::F64(s)) => CpuData::F64(runs.add(v, &index, s)),
                    (CpuData::I32(v), CpuData::I32(s)) => CpuData::I32(runs.add(v, &index, s)),
                    (CpuData::U32(v), CpuData::U32(s)) => CpuData::U32(runs.add(v, &index, s)),
                    _ => unreachable!("dtypes are checked when recorded"),
                })
            }
            Kind::Gather => {
                let at = targets(self.axis, x.shape, out.shape, &index);
                CpuStorage::new(with_any!(x.data, v => pick(v, &at)))
            }
            Kind::ScatterAdd => {
                let src = &args[2];
                let at = targets(self.axis, x.shape, src.shape, &index);
                macro_rules! add {
                    ($v:expr, $s:expr) => {{
                        let mut y = $v.clone();
                        for (&t, &s) in at.iter().zip($s.iter()) {
                            y[t] += s;
                        }
                        y
                    }};
                }
                CpuStorage::new(match (x.data.data(), src.data.data()) {
                    (CpuData::F32(v), CpuData::F32(s)) => CpuData::F32(add!(v, s)),
                    (CpuData::F64(v), CpuData::F64(s)) => CpuData::F64(add!(v, s)),
                    (CpuData::I32(v), CpuData::I32(s)) => CpuData::I32(add!(v, s)),
                    (CpuData::U32(v), CpuData::U32(s)) => CpuData::U32(add!(v, s)),
                    _ => unreachable!("dtypes are checked when recorded"),
                })
            }
        }
    }

    fn epilogue_host(&self) -> Option<&dyn EpilogueHost> {
        Some(self)
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let y = rec.alloc_elems(out.shape.numel())?;
        let (params, grid) = self.launch(args, out, rec)?;
        let kernel = kernel(self.kind, out.dtype, args[1].dtype);
        match self.kind {
            Kind::Gather | Kind::IndexSelect => {
                rec.dispatch(&kernel, &params, &[args[0].buf, args[1].buf], &[&y], grid)?
            }
            Kind::ScatterAdd | Kind::IndexAdd => {
                // start from x, then add src in place
                rec.copy(args[0].buf, 0, &y, 0, out.shape.numel() as u64 * 4);
                rec.dispatch(&kernel, &params, &[args[1].buf, args[2].buf], &[&y], grid)?;
            }
        }
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let (x, index) = (&g.inputs[0], &g.inputs[1]);
        let axis = self.axis as isize;
        match self.kind {
            // each read element receives the gradient of every output that read it
            Kind::Gather => vec![Some(x.zeros_like().scatter_add(axis, index, g.grad)), None],
            Kind::IndexSelect => vec![Some(x.zeros_like().index_add(axis, index, g.grad)), None],
            // x passes through; each src element reaches the output element it was added to
            Kind::ScatterAdd => vec![Some(g.grad.clone()), None, Some(g.grad.gather(axis, index))],
            Kind::IndexAdd => vec![Some(g.grad.clone()), None, Some(g.grad.index_select(axis, index))],
        }
    }

    fn tolerance(&self, args: &[CpuArg], _: &Meta) -> Tolerance {
        match self.kind {
            Kind::Gather | Kind::IndexSelect => Tolerance::Exact,
            // atomic additions in varying order: an element receives at most one addition per
            // position along the axis of src
            Kind::ScatterAdd | Kind::IndexAdd => ulps_summing(2.0, args[2].shape.dim(self.axis) + 1),
        }
    }
}

impl Tensor {
    #[track_caller]
    fn check_index(&self, name: &str, index: &Tensor) {
        if !index.dtype().is_index() {
            panic!("{name}: indices must be i32 or u32, found {}", index.dtype());
        }
        if self.dtype() == DType::Bool {
            panic!("{name}: not defined for bool tensors");
        }
    }

    /// PyTorch's `gather`: `out[c] = self[c with c_axis = index[c]]`. `index` has the output's
    /// shape and the same rank as `self`, with sizes no larger than `self`'s off the axis.
    #[track_caller]
    pub fn gather(&self, axis: isize, index: &Tensor) -> Tensor {
        let a = self.shape().axis("gather", axis);
        self.check_index("gather", index);
        let fits = index.rank() == self.rank()
            && (0..self.rank()).all(|d| d == a || index.dims()[d] <= self.dims()[d]);
        if !fits {
            panic!("gather: index {} does not fit input {} off axis {a}", index.shape(), self.shape());
        }
        let op = Indexing { kind: Kind::Gather, axis: a };
        Tensor::from_op(op, [self.clone(), index.clone()], index.shape().clone(), self.dtype())
    }

    /// The slices at positions `index` (1-D) along `axis`.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let table = Tensor::arange(0.0, 6.0, 1.0, &Device::Cpu).reshape([3, 2]);
    /// let ids = Tensor::from_vec(vec![2i32, 0], [2], &Device::Cpu);
    /// assert_eq!(table.index_select(0, &ids).to_vec::<f32>().unwrap(), vec![4.0, 5.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn index_select(&self, axis: isize, index: &Tensor) -> Tensor {
        let a = self.shape().axis("index_select", axis);
        self.check_index("index_select", index);
        if index.rank() != 1 {
            panic!("index_select: index must be 1-D, found shape {}", index.shape());
        }
        let mut dims = self.dims().to_vec();
        dims[a] = index.numel();
        let op = Indexing { kind: Kind::IndexSelect, axis: a };
        Tensor::from_op(op, [self.clone(), index.clone()], Shape::new(dims), self.dtype())
    }

    /// A copy of `self` with `src[c]` added at `c with c_axis = index[c]`; `index` has `src`'s
    /// shape.
    #[track_caller]
    pub fn scatter_add(&self, axis: isize, index: &Tensor, src: &Tensor) -> Tensor {
        let a = self.shape().axis("scatter_add", axis);
        self.check_index("scatter_add", index);
        let fits = index.shape() == src.shape()
            && src.rank() == self.rank()
            && (0..self.rank()).all(|d| d == a || src.dims()[d] <= self.dims()[d]);
        if !fits || src.dtype() != self.dtype() {
            panic!(
                "scatter_add: src {} {} and index {} do not fit {} {} off axis {a}",
                src.shape(),
                src.dtype(),
                index.shape(),
                self.shape(),
                self.dtype()
            );
        }
        let op = Indexing { kind: Kind::ScatterAdd, axis: a };
        Tensor::from_op(op, [self.clone(), index.clone(), src.clone()], self.shape().clone(), self.dtype())
    }

    /// Whether this tensor adds at indices into zeros not yet computed (`zeros.index_add(…)` or
    /// `zeros.scatter_add(…)`, the gradient of `index_select` and `gather`). For autograd,
    /// which adds such a gradient into the rest of a sum at its indices ([`Self::scattered_onto`])
    /// rather than filling a tensor of zeros and adding it.
    pub(crate) fn scatters_into_zeros(&self) -> bool {
        let op = (&self.0.op as &dyn std::any::Any).downcast_ref::<Indexing>();
        let scatter = op.is_some_and(|op| matches!(op.kind, Kind::IndexAdd | Kind::ScatterAdd));
        scatter && self.0.inputs().first().is_some_and(|base| base.is_pending_zeros())
    }

    /// The additions of this tensor, which [scatters into zeros](Self::scatters_into_zeros),
    /// made into `base` (of this tensor's shape and dtype) instead.
    pub(crate) fn scattered_onto(&self, base: &Tensor) -> Tensor {
        let op = (&self.0.op as &dyn std::any::Any).downcast_ref::<Indexing>().expect("a scatter");
        let inputs = self.0.inputs();
        let (index, src, axis) = (&inputs[1], &inputs[2], op.axis as isize);
        match op.kind {
            Kind::IndexAdd => base.index_add(axis, index, src),
            _ => base.scatter_add(axis, index, src),
        }
    }

    /// A copy of `self` with slice j of `src` added at position `index[j]` along `axis`.
    #[track_caller]
    pub fn index_add(&self, axis: isize, index: &Tensor, src: &Tensor) -> Tensor {
        let a = self.shape().axis("index_add", axis);
        self.check_index("index_add", index);
        let mut expected = self.dims().to_vec();
        expected[a] = index.numel();
        if index.rank() != 1 || src.dims() != expected || src.dtype() != self.dtype() {
            panic!(
                "index_add: src {} {} with index {} does not fit {} {} along axis {a}",
                src.shape(),
                src.dtype(),
                index.shape(),
                self.shape(),
                self.dtype()
            );
        }
        let op = Indexing { kind: Kind::IndexAdd, axis: a };
        Tensor::from_op(op, [self.clone(), index.clone(), src.clone()], self.shape().clone(), self.dtype())
    }
}
