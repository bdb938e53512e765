//! Movement ops that materialize: `permute`, `expand`, `slice` (with steps) and `pad` (with
//! interior padding, which makes it the exact inverse of a strided slice).
//!
//! Permute, expand and slice are all one kernel, a strided copy: the output element at
//! coordinates c reads the input at offset `start + Σ c_d·stride_d` (stride 0 repeats, a
//! permuted stride transposes, a scaled stride steps). Concat uses the same kernel to write.

use super::fused::Step;
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance};
use crate::backend::cpu::{CpuData, CpuStorage, with_any};
use crate::backend::cpu_pool::{self, filled};
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::{MAX_RANK, collapse, offsets, pack, u32_of};
use crate::{DType, Result, Shape, Tensor};
use rayon::prelude::*;

pub(crate) static SHADER: Shader = shader!("movement.wgsl");

/// How an output of `shape` reads its input: a start offset and one stride per dimension.
struct StridedRead {
    start: usize,
    strides: Vec<usize>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct CopyParams {
    n: u32,
    rank: u32,
    src_start: u32,
    dst_start: u32,
    shape: [u32; MAX_RANK],
    src_strides: [u32; MAX_RANK],
    dst_strides: [u32; MAX_RANK],
}

/// Records a strided copy over `shape`: `dst[dst_start + Σc·dst_strides] =
/// src[src_start + Σc·src_strides]` for every coordinate c.
pub(crate) fn strided_copy(
    rec: &mut Recorder,
    op: &str,
    src: &GpuBuffer,
    dst: &GpuBuffer,
    shape: &[usize],
    (src_start, src_strides): (usize, Vec<usize>),
    (dst_start, dst_strides): (usize, Vec<usize>),
) -> Result<()> {
    let n = u32_of(op, shape.iter().product())?;
    let (shape, strides) = collapse(shape, &[src_strides, dst_strides]);
    if shape.len() <= 1 && strides.iter().all(|s| s.first().is_none_or(|&st| st == 1)) {
        // one contiguous run on both sides: a buffer copy, no dispatch
        let (from, to, bytes) = (src_start as u64 * 4, dst_start as u64 * 4, n as u64 * 4);
        rec.copy(src, from, dst, to, bytes);
        return Ok(());
    }
    let params = CopyParams {
        n,
        rank: shape.len() as u32,
        src_start: u32_of(op, src_start)?,
        dst_start: u32_of(op, dst_start)?,
        shape: pack(op, &shape, 1)?,
        src_strides: pack(op, &strides[0], 0)?,
        dst_strides: pack(op, &strides[1], 0)?,
    };
    let kernel = Kernel::new(&SHADER, "strided_copy", 1, 1);
    rec.dispatch(&kernel, &params, &[src], &[dst], Grid::Linear(n.div_ceil(256)))
}

/// The CPU side of a strided read: the input elements in output order. When the innermost
/// dimension (after collapsing) is contiguous in the input, as it is for slices and selects of
/// whole rows, its runs are copied as blocks; otherwise every element's offset is listed.
fn read_strided(data: &CpuStorage, shape: &Shape, read: &StridedRead) -> CpuStorage {
    let (dims, strides) = collapse(shape.dims(), std::slice::from_ref(&read.strides));
    let strides = &strides[0];
    CpuStorage::new(with_any!(data, x => match strides.last() {
        Some(1) if shape.numel() > 0 => copy_runs(x, &dims, strides, read.start),
        Some(_) if dims.len() == 2 => copy_tiles(x, &dims, strides, read.start),
        _ => pick(x, &offsets(shape.dims(), &read.strides, read.start).collect::<Vec<_>>()),
    }))
}

/// Output elements below which a strided copy runs on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 16;

/// The elements of `x` read in runs along the last of `dims`, which is contiguous in `x`: the
/// other dimensions step by `strides`, from `start`.
fn copy_runs<T: crate::Element>(x: &[T], dims: &[usize], strides: &[usize], start: usize) -> CpuData {
    let (outer, run) = dims.split_at(dims.len() - 1);
    let run = run[0];
    let mut out = cpu_pool::for_overwrite::<T>(outer.iter().product::<usize>() * run);
    let starts = offsets(outer, &strides[..outer.len()], start);
    if out.len() < PARALLEL_ELEMENTS {
        for (o, at) in out.chunks_mut(run).zip(starts) {
            o.copy_from_slice(&x[at..at + run]);
        }
    } else {
        // a large copy (a batch-first sequence swapped to time-major) is bound by one core's
        // share of the memory bandwidth: the runs copy in parallel
        let starts: Vec<usize> = starts.collect();
        out.par_chunks_mut(run).zip(starts).for_each(|(o, at)| o.copy_from_slice(&x[at..at + run]));
    }
    T::wrap(out)
}

/// The elements of `x` read as a (rows, cols) matrix whose columns step by `strides[1]` (a
/// transpose, when it is `rows`), from `start`: in square tiles, so that the reads of one tile
/// stay within a few cache lines per column instead of one line per element.
fn copy_tiles<T: crate::Element>(x: &[T], dims: &[usize], strides: &[usize], start: usize) -> CpuData {
    const TILE: usize = 32;
    let (rows, cols) = (dims[0], dims[1]);
    let mut out = cpu_pool::for_overwrite::<T>(rows * cols);
    // a band of TILE output rows, tile by tile; bands run in parallel when the copy is large
    let band = |(b, out): (usize, &mut [T])| {
        let i0 = b * TILE;
        for j0 in (0..cols).step_by(TILE) {
            for (r, row) in out.chunks_mut(cols).enumerate() {
                let from = start + (i0 + r) * strides[0];
                for j in j0..(j0 + TILE).min(cols) {
                    row[j] = x[from + j * strides[1]];
                }
            }
        }
    };
    if out.len() < PARALLEL_ELEMENTS {
        out.chunks_mut(TILE * cols).enumerate().for_each(band);
    } else {
        out.par_chunks_mut(TILE * cols).enumerate().for_each(band);
    }
    T::wrap(out)
}

/// The elements of `x` at `idx`, in that order.
pub(crate) fn pick<T: crate::Element>(x: &[T], idx: &[usize]) -> CpuData {
    let mut out = cpu_pool::for_overwrite(idx.len());
    out.iter_mut().zip(idx).for_each(|(o, &i)| *o = x[i]);
    T::wrap(out)
}

/// A strided-read op: permute, expand or slice.
pub(crate) enum Movement {
    Permute(Vec<usize>),
    /// The swap of the last two axes, stored: products read it as it is laid out, not as the
    /// transpose of its input ([`Tensor::t_stored`]).
    StoredTranspose,
    Expand,
    /// Start and step per dimension.
    Slice {
        starts: Vec<usize>,
        steps: Vec<usize>,
    },
}

/// The permutation that undoes `perm`: axis `perm[j]` goes back to place `perm[j]`.
pub(crate) fn inverse_permutation(perm: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; perm.len()];
    for (j, &axis) in perm.iter().enumerate() {
        inverse[axis] = j;
    }
    inverse
}

impl Movement {
    fn read(&self, input: &Shape, out: &Shape) -> StridedRead {
        let strides = input.strides();
        match self {
            Movement::Permute(perm) => {
                StridedRead { start: 0, strides: perm.iter().map(|&p| strides[p]).collect() }
            }
            Movement::StoredTranspose => {
                let mut strides = strides;
                let r = strides.len();
                strides.swap(r - 2, r - 1);
                StridedRead { start: 0, strides }
            }
            Movement::Expand => StridedRead { start: 0, strides: input.broadcast_strides(out) },
            Movement::Slice { starts, steps } => StridedRead {
                start: starts.iter().zip(&strides).map(|(s, st)| s * st).sum(),
                strides: steps.iter().zip(&strides).map(|(s, st)| s * st).collect(),
            },
        }
    }
}

impl Op for Movement {
    fn name(&self) -> &'static str {
        match self {
            Movement::Permute(_) | Movement::StoredTranspose => "permute",
            Movement::Expand => "expand",
            Movement::Slice { .. } => "slice",
        }
    }

    fn describe(&self) -> String {
        match self {
            Movement::Permute(p) => format!("permute({p:?})"),
            Movement::StoredTranspose => "permute(last two axes, stored)".into(),
            Movement::Expand => "expand".into(),
            Movement::Slice { starts, steps } => {
                format!("slice(starts {starts:?}, steps {steps:?})")
            }
        }
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        read_strided(args[0].data, out.shape, &self.read(args[0].shape, out.shape))
    }

    fn elementwise(&self) -> Option<Step> {
        // an expand inside a chain is the broadcast every step's read already does
        matches!(self, Movement::Expand).then_some(Step::Broadcast)
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let y = rec.alloc_elems(out.shape.numel())?;
        let read = self.read(args[0].shape, out.shape);
        let dst = (0, out.shape.strides());
        strided_copy(rec, self.name(), args[0].buf, &y, out.shape.dims(), (read.start, read.strides), dst)?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let input = g.inputs[0].shape();
        let dx = match self {
            Movement::Permute(perm) => g.grad.permute(&inverse_permutation(perm)),
            // a weight's gradient Xᵀ·Y transposed is Yᵀ·X: a product the other way round, not a copy
            Movement::StoredTranspose => match g.grad.outer_product() {
                Some((x, y)) => Tensor::matmul_flags(&y, &x, true, false),
                None => g.grad.t(),
            },
            // each input element was read by every output it was broadcast to
            Movement::Expand => g.grad.sum_to(input),
            // scatter back with zeros in between: the inverse of a strided slice is a pad
            Movement::Slice { starts, steps } => {
                let out = g.grad.dims();
                let spec: Vec<PadSpec> = (0..input.rank())
                    .map(|d| {
                        if out[d] == 0 {
                            return PadSpec { before: input.dim(d), after: 0, interior: 0 };
                        }
                        let last = starts[d] + (out[d] - 1) * steps[d];
                        PadSpec { before: starts[d], after: input.dim(d) - 1 - last, interior: steps[d] - 1 }
                    })
                    .collect();
                g.grad.pad_with(&spec, 0.0)
            }
        };
        vec![Some(dx)]
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // moves values
        Tolerance::Exact
    }
}

/// `y` with the contiguous `x` of shape `dims` written at `start + Σ c·strides` for every
/// coordinate c: in runs where the innermost dimension stays contiguous, element by element
/// otherwise.
fn write_strided<T: crate::Element>(
    x: &[T],
    mut y: Vec<T>,
    (dims, start, strides): (&[usize], usize, &[usize]),
) -> Vec<T> {
    let (dims, strides) = collapse(dims, &[Shape::new(dims.to_vec()).strides(), strides.to_vec()]);
    let contiguous = strides.iter().all(|s| s.last() == Some(&1));
    let outer = if contiguous { dims.len() - 1 } else { dims.len() };
    let run = if contiguous { dims[outer] } else { 1 };
    let from = offsets(&dims[..outer], &strides[0][..outer], 0);
    let to = offsets(&dims[..outer], &strides[1][..outer], start);
    for (f, t) in from.zip(to) {
        y[t..t + run].copy_from_slice(&x[f..f + run]);
    }
    y
}

/// Padding of one dimension: elements before, after, and between neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadSpec {
    /// Elements added before the first.
    pub before: usize,
    /// Elements added after the last.
    pub after: usize,
    /// Elements added between each pair of neighbours.
    pub interior: usize,
}

impl PadSpec {
    fn output(&self, n: usize) -> usize {
        if n == 0 { self.before + self.after } else { self.before + n + (n - 1) * self.interior + self.after }
    }
}

/// Constant padding.
pub(crate) struct Pad {
    spec: Vec<PadSpec>,
    value: f64,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PadParams {
    n: u32,
    rank: u32,
    value: u32,
    _pad: u32,
    out_shape: [u32; MAX_RANK],
    before: [u32; MAX_RANK],
    step: [u32; MAX_RANK],
    in_shape: [u32; MAX_RANK],
    in_strides: [u32; MAX_RANK],
}

impl Op for Pad {
    fn name(&self) -> &'static str {
        "pad"
    }

    fn describe(&self) -> String {
        format!("pad({:?}, value {})", self.spec, self.value)
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        // the input is a strided write into the padded output: input element c lands at
        // Σ (before_d + c_d·step_d)·out_stride_d
        let out_strides = out.shape.strides();
        let start = self.spec.iter().zip(&out_strides).map(|(s, st)| s.before * st).sum();
        let steps: Vec<usize> =
            self.spec.iter().zip(&out_strides).map(|(s, st)| (s.interior + 1) * st).collect();
        let write = (args[0].shape.dims(), start, &steps[..]);
        let (n, v) = (out.shape.numel(), self.value);
        CpuStorage::new(match args[0].data.data() {
            CpuData::F32(x) => CpuData::F32(write_strided(x, filled(n, v as f32), write)),
            CpuData::F64(x) => CpuData::F64(write_strided(x, filled(n, v), write)),
            CpuData::F16(x) => CpuData::F16(write_strided(x, filled(n, half::f16::from_f64(v)), write)),
            CpuData::I32(x) => CpuData::I32(write_strided(x, filled(n, v as i32), write)),
            CpuData::U32(x) => CpuData::U32(write_strided(x, filled(n, v as u32), write)),
            CpuData::Bool(x) => CpuData::Bool(write_strided(x, filled(n, v != 0.0), write)),
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let n = u32_of("pad", out.shape.numel())?;
        let y = rec.alloc_elems(n as usize)?;
        let value = match out.dtype {
            DType::F32 => (self.value as f32).to_bits(),
            DType::I32 => self.value as i32 as u32,
            DType::U32 => self.value as u32,
            DType::Bool => (self.value != 0.0) as u32,
            DType::F64 => unreachable!("f64 never reaches a GPU"),
            DType::F16 => unreachable!("f16 padding computes in f32 (Op::computes_f16)"),
        };
        let before: Vec<usize> = self.spec.iter().map(|s| s.before).collect();
        let step: Vec<usize> = self.spec.iter().map(|s| s.interior + 1).collect();
        let params = PadParams {
            n,
            rank: out.shape.rank() as u32,
            value,
            _pad: 0,
            out_shape: pack("pad", out.shape.dims(), 1)?,
            before: pack("pad", &before, 0)?,
            step: pack("pad", &step, 1)?,
            in_shape: pack("pad", args[0].shape.dims(), 1)?,
            in_strides: pack("pad", &args[0].shape.strides(), 0)?,
        };
        let kernel = Kernel::new(&SHADER, "pad", 1, 1);
        rec.dispatch(&kernel, &params, &[args[0].buf], &[&y], Grid::Linear(n.div_ceil(256)))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        // the inverse of a pad is a strided slice
        let input = g.inputs[0].shape();
        let starts: Vec<usize> = self.spec.iter().map(|s| s.before).collect();
        let steps: Vec<usize> = self.spec.iter().map(|s| s.interior + 1).collect();
        vec![Some(g.grad.slice_strided(&starts, &steps, input.clone()))]
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // moves values
        Tolerance::Exact
    }
}

impl Tensor {
    /// If this tensor is a slice placed in zeros along one axis (a zero `pad` of one axis, as the
    /// gradient of `narrow` is): (axis, start, the slice). For autograd, which assembles such
    /// gradients instead of adding them.
    pub(crate) fn placement(&self) -> Option<(usize, usize, Tensor)> {
        let pad = (&self.0.op as &dyn std::any::Any).downcast_ref::<Pad>()?;
        if pad.value != 0.0 || pad.spec.iter().any(|s| s.interior != 0) {
            return None;
        }
        let mut padded = pad.spec.iter().enumerate().filter(|(_, s)| s.before + s.after > 0);
        let (axis, spec) = padded.next()?;
        if padded.next().is_some() {
            return None;
        }
        let slice = self.0.inputs().first()?.clone();
        Some((axis, spec.before, slice))
    }

    /// The dimensions reordered: output dimension i is input dimension `perm[i]`.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Tensor {
        let mut seen = vec![false; self.rank()];
        let valid = perm.len() == self.rank()
            && perm.iter().all(|&p| p < self.rank() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            panic!("permute: {perm:?} is not a permutation of the axes of shape {}", self.shape());
        }
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return self.clone();
        }
        let shape = Shape::new(perm.iter().map(|&p| self.dims()[p]).collect::<Vec<_>>());
        Tensor::from_op(Movement::Permute(perm.to_vec()), [self.clone()], shape, self.dtype())
    }

    /// Swaps two axes (negative counts from the end).
    #[track_caller]
    pub fn transpose(&self, a: isize, b: isize) -> Tensor {
        let (a, b) = (self.shape().axis("transpose", a), self.shape().axis("transpose", b));
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Swaps the last two axes (the matrix transpose).
    #[track_caller]
    pub fn t(&self) -> Tensor {
        if self.rank() < 2 {
            panic!("t: shape {} has fewer than two axes", self.shape());
        }
        self.transpose(-2, -1)
    }

    /// The matrix transpose (the last two axes swapped) stored as a tensor of its own: a
    /// product reads it row by row, where it would read [`Tensor::t`] as its input transposed,
    /// and the gradient products read the input as it is. For a weight that many products read
    /// transposed, as a recurrent layer's W_hh is at every time step: the copy is made once per
    /// forward, and each step's product runs on rows (on the CPU, a faster kernel).
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &Device::Cpu);
    /// assert_eq!(w.t_stored().to_vec::<f32>().unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    /// ```
    #[track_caller]
    pub fn t_stored(&self) -> Tensor {
        if self.rank() < 2 {
            panic!("t_stored: shape {} has fewer than two axes", self.shape());
        }
        let mut dims = self.dims().to_vec();
        let r = dims.len();
        dims.swap(r - 2, r - 1);
        Tensor::from_op(Movement::StoredTranspose, [self.clone()], Shape::new(dims), self.dtype())
    }

    /// If this is a stored transpose ([`Tensor::t_stored`]) that still holds its input: that
    /// input, which a product reading this tensor transposed reads as it is instead.
    pub(crate) fn stored_transpose_source(&self) -> Option<Tensor> {
        let movement = (&self.0.op as &dyn std::any::Any).downcast_ref::<Movement>()?;
        matches!(movement, Movement::StoredTranspose).then(|| self.0.inputs().first().cloned())?
    }

    /// Broadcasts to `shape` (NumPy rules), copying.
    #[track_caller]
    pub fn expand(&self, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        if Shape::try_broadcast(self.shape(), &shape).as_ref() != Some(&shape) {
            panic!("expand: shape {} cannot be broadcast to {shape}", self.shape());
        }
        if &shape == self.shape() {
            return self.clone();
        }
        Tensor::from_op(Movement::Expand, [self.clone()], shape, self.dtype())
    }

    /// Elements `start, start + step, ...` below `end` along `axis`.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let x = Tensor::arange(0.0, 10.0, 1.0, &Device::Cpu);
    /// assert_eq!(x.slice(0, 1, 8, 3).to_vec::<f32>().unwrap(), vec![1.0, 4.0, 7.0]);
    /// ```
    #[track_caller]
    pub fn slice(&self, axis: isize, start: usize, end: usize, step: usize) -> Tensor {
        let a = self.shape().axis("slice", axis);
        let size = self.dims()[a];
        if step == 0 || start > end || end > size {
            panic!(
                "slice: range {start}..{end} step {step} is invalid for axis {a} of shape {}",
                self.shape()
            );
        }
        let mut starts = vec![0; self.rank()];
        let mut steps = vec![1; self.rank()];
        let mut dims = self.dims().to_vec();
        starts[a] = start;
        steps[a] = step;
        dims[a] = (end - start).div_ceil(step);
        self.slice_strided(&starts, &steps, Shape::new(dims))
    }

    /// `len` elements from `start` along `axis`.
    #[track_caller]
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Tensor {
        self.slice(axis, start, start + len, 1)
    }

    /// Element `index` along `axis`, with that axis removed.
    #[track_caller]
    pub fn select(&self, axis: isize, index: usize) -> Tensor {
        self.narrow(axis, index, 1).squeeze(axis)
    }

    #[track_caller]
    fn slice_strided(&self, starts: &[usize], steps: &[usize], shape: Shape) -> Tensor {
        if &shape == self.shape() {
            return self.clone();
        }
        let op = Movement::Slice { starts: starts.to_vec(), steps: steps.to_vec() };
        Tensor::from_op(op, [self.clone()], shape, self.dtype())
    }

    /// Pads every dimension with `value`: `padding[d] = (before, after)`.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let x = Tensor::ones([2], &Device::Cpu).pad(&[(1, 2)], 0.0);
    /// assert_eq!(x.to_vec::<f32>().unwrap(), vec![0.0, 1.0, 1.0, 0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn pad(&self, padding: &[(usize, usize)], value: f64) -> Tensor {
        if padding.len() != self.rank() {
            panic!("pad: {} (before, after) pairs given for shape {}", padding.len(), self.shape());
        }
        let spec: Vec<PadSpec> =
            padding.iter().map(|&(before, after)| PadSpec { before, after, interior: 0 }).collect();
        self.pad_with(&spec, value)
    }

    /// Pads with `value`, including `interior` elements between neighbours.
    #[track_caller]
    pub fn pad_with(&self, spec: &[PadSpec], value: f64) -> Tensor {
        if spec.len() != self.rank() {
            panic!("pad: {} specs given for shape {}", spec.len(), self.shape());
        }
        let shape = Shape::new(spec.iter().zip(self.dims()).map(|(s, &n)| s.output(n)).collect::<Vec<_>>());
        if &shape == self.shape() {
            return self.clone();
        }
        Tensor::from_op(Pad { spec: spec.to_vec(), value }, [self.clone()], shape, self.dtype())
    }
}
