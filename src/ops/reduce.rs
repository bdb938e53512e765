//! Reductions along any set of axes (`sum`, `max`, `min`, with or without keepdim), `argmax` and
//! `argmin` along one axis, and the composites built on them: `mean` and `var`.
//!
//! The CPU reference accumulates in f64. On the GPU a contiguous reduction gets one workgroup per
//! output (a tree in workgroup memory); a strided one with many outputs gets one thread per
//! output, so that neighbouring threads read neighbouring elements.

use super::epilogue::{Epilogue, EpilogueHost, PrologueHost, Site, chain_params, with_chain_libraries};
use super::fused::Chain;
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, ulps_summing};
use crate::backend::cpu::{CpuData, CpuStorage, PARALLEL_CHUNK, sum_f64};
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::{MAX_RANK, collapse, offsets, pack, u32_of};
use crate::ops::wgsl::wgsl_type;
use crate::{DType, Result, Shape, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("reduce.wgsl");
/// `workgroup_combine` as a tree in workgroup memory (every adapter).
static TREE: Shader = shader!("reduce_tree.wgsl");
/// `workgroup_combine` with subgroup shuffles (adapters with `SUBGROUP`).
static SUBGROUP: Shader = shader!("reduce_subgroup.wgsl");

/// How elements combine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ReduceOp {
    Sum,
    Max,
    Min,
}

impl ReduceOp {
    fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }

    fn fold(self, acc: f64, x: f64) -> f64 {
        match self {
            ReduceOp::Sum => acc + x,
            ReduceOp::Max => {
                if x > acc || x.is_nan() {
                    x
                } else {
                    acc
                }
            }
            ReduceOp::Min => {
                if x < acc || x.is_nan() {
                    x
                } else {
                    acc
                }
            }
        }
    }

    fn identity(self) -> f64 {
        match self {
            ReduceOp::Sum => 0.0,
            ReduceOp::Max => f64::NEG_INFINITY,
            ReduceOp::Min => f64::INFINITY,
        }
    }
}

/// The input's elements in output order: kept dimensions outermost, reduced ones innermost.
/// Returns (kept shape, kept strides, reduced shape, reduced strides).
fn split_axes(shape: &Shape, axes: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>) {
    let strides = shape.strides();
    let (mut ks, mut kst, mut rs, mut rst) = (vec![], vec![], vec![], vec![]);
    for (d, (&size, &stride)) in shape.dims().iter().zip(&strides).enumerate() {
        if axes.contains(&d) {
            rs.push(size);
            rst.push(stride);
        } else {
            ks.push(size);
            kst.push(stride);
        }
    }
    (ks, kst, rs, rst)
}

/// `sum`, `max` or `min` over `axes`.
pub(crate) struct Reduce {
    op: ReduceOp,
    axes: Vec<usize>,
    keepdim: bool,
}

/// The elements one workgroup combines before a long reduction into few outputs is split in
/// runs (whose results a second dispatch combines): one workgroup looping over millions of
/// elements leaves the GPU idle, and its long f32 sums lose precision (lavapipe even stopped
/// such a loop early, past about 5 million elements).
const RUN: usize = 8192;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_out: u32,
    count: u32,
    kept_rank: u32,
    reduced_rank: u32,
    init: u32,
    parts: u32,
    chunk: u32,
    _pad: u32,
    kept_shape: [u32; MAX_RANK],
    kept_strides: [u32; MAX_RANK],
    reduced_shape: [u32; MAX_RANK],
    reduced_strides: [u32; MAX_RANK],
}

impl Reduce {
    /// Each output folds its elements in order, in f64, walking the input by strides: any axes.
    fn fold_walk(&self, x: &CpuArg, n_out: usize) -> Vec<f64> {
        let (ks, kst, rs, rst) = split_axes(x.shape, &self.axes);
        let count: usize = rs.iter().product();
        let values = x.data.to_f64_vec();
        let mut dims = ks;
        dims.extend(&rs);
        let mut strides = kst;
        strides.extend(&rst);
        let mut walk = offsets(&dims, &strides, 0);
        (0..n_out)
            .map(|_| {
                walk.by_ref().take(count).fold(self.op.identity(), |acc, i| self.op.fold(acc, values[i]))
            })
            .collect()
    }

    /// The same folds, in the same order, when the input is f32 and the reduced axes are
    /// consecutive: seen as (A, R, C) with R reduced, out[a·C + c] folds x[(a·R + r)·C + c] for
    /// r = 0, 1, …, and the input is read a row of C at a time, which vectorizes, instead of an
    /// element at a time (a bias gradient's column sums were 20× slower). `None` otherwise.
    fn fold_block(&self, x: &CpuArg) -> Option<Vec<f64>> {
        let CpuData::F32(data) = x.data.data() else { return None };
        let (first, last) = (*self.axes.first()?, *self.axes.last()?);
        if last - first + 1 != self.axes.len() {
            return None;
        }
        let dims = x.shape.dims();
        let reduced: usize = dims[first..=last].iter().product();
        let inner: usize = dims[last + 1..].iter().product();
        let outer: usize = dims[..first].iter().product();
        let mut acc = vec![self.op.identity(); outer * inner];
        if inner == 0 || reduced == 0 {
            return Some(acc);
        }
        let op = self.op;
        // columns from..from + acc.len() of every row of a block, folded into acc
        let fold_columns = |acc: &mut [f64], block: &[f32], from: usize| {
            for row in block.chunks(inner) {
                let row = &row[from..from + acc.len()];
                match op {
                    ReduceOp::Sum => add_into_f64(acc, row),
                    op => acc.iter_mut().zip(row).for_each(|(a, &v)| *a = op.fold(*a, f64::from(v))),
                }
            }
        };
        if data.len() < PARALLEL_CHUNK {
            for (acc, block) in acc.chunks_mut(inner).zip(data.chunks(reduced * inner)) {
                fold_columns(acc, block, 0);
            }
            return Some(acc);
        }
        // in parallel over the outputs, a block of columns each (a bias gradient sums 4096 rows
        // into 1024 outputs: one block per output would leave the other threads idle); each
        // output still folds its rows in order, so the sums do not depend on the split
        let columns = (inner / (2 * rayon::current_num_threads())).max(16).min(inner);
        acc.par_chunks_mut(inner).zip(data.par_chunks(reduced * inner)).for_each(|(acc, block)| {
            acc.par_chunks_mut(columns)
                .enumerate()
                .for_each(|(c, acc)| fold_columns(acc, block, c * columns));
        });
        Some(acc)
    }

    /// The same folds when the input is f32 and the last axes are reduced in runs of at least 16
    /// elements (a conv bias gradient: (N, C, H, W) summed over N, H and W folds runs of H·W):
    /// each output folds its runs one after another, in parallel over the outputs; a sum adds
    /// each run over eight lanes (the same f64 sums up to rounding). `None` otherwise.
    fn fold_runs(&self, x: &CpuArg, n_out: usize) -> Option<Vec<f64>> {
        let CpuData::F32(data) = x.data.data() else { return None };
        let rank = x.shape.rank();
        // the reduced axes rank − t .. rank form the run
        let t = self.axes.iter().rev().zip((0..rank).rev()).take_while(|&(&a, d)| a == d).count();
        let run: usize = x.shape.dims()[rank - t..].iter().product();
        if t == 0 || run < 16 {
            return None;
        }
        let (ks, kst, rs, rst) = split_axes(x.shape, &self.axes);
        let prefix = rs.len() - t;
        let starts: Vec<usize> = offsets(&rs[..prefix], &rst[..prefix], 0).collect();
        let bases: Vec<usize> = offsets(&ks, &kst, 0).collect();
        debug_assert_eq!(bases.len(), n_out);
        let op = self.op;
        let fold = |&base: &usize| {
            starts.iter().fold(op.identity(), |acc, &start| {
                let run = &data[base + start..][..run];
                match op {
                    // over eight lanes, which vectorizes (a gradient norm's sum of squares)
                    ReduceOp::Sum => acc + sum_f64(run),
                    op => run.iter().fold(acc, |a, &v| op.fold(a, f64::from(v))),
                }
            })
        };
        Some(if bases.len() > 1 && data.len() >= PARALLEL_CHUNK {
            bases.par_iter().map(fold).collect()
        } else {
            bases.iter().map(fold).collect()
        })
    }
}

/// acc += row elementwise, in f64, compiled for the widest vectors (a bias gradient's column
/// sums add a row at a time).
fn add_into_f64<T: crate::dtype::Float>(acc: &mut [f64], row: &[T]) {
    #[inline(always)]
    fn each<T: crate::dtype::Float>(acc: &mut [f64], row: &[T]) {
        acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v.to_f64());
    }
    crate::backend::cpu_vector::widest! {
        fn widest<T: crate::dtype::Float>(acc: &mut [f64], row: &[T]) = each
    }
    widest(acc, row)
}

impl Op for Reduce {
    fn name(&self) -> &'static str {
        self.op.name()
    }

    fn describe(&self) -> String {
        format!("{}(axes {:?}, keepdim {})", self.op.name(), self.axes, self.keepdim)
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        let n_out = out.shape.numel();
        let values = match self.fold_runs(&args[0], n_out).or_else(|| self.fold_block(&args[0])) {
            Some(values) => values,
            None => self.fold_walk(&args[0], n_out),
        };
        CpuStorage::new(match out.dtype {
            DType::F32 => CpuData::F32(values.iter().map(|&v| v as f32).collect()),
            DType::F64 => CpuData::F64(values),
            DType::I32 => CpuData::I32(values.iter().map(|&v| v as i64 as i32).collect()),
            DType::U32 => CpuData::U32(values.iter().map(|&v| v as i64 as u32).collect()),
            DType::Bool => unreachable!("bool reductions are rejected when recorded"),
            DType::F16 => unreachable!("f16 reductions compute in f32 (Op::computes_f16)"),
        })
    }

    fn epilogue_host(&self) -> Option<&dyn EpilogueHost> {
        Some(self)
    }

    fn prologue_host(&self) -> Option<&dyn PrologueHost> {
        Some(self)
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let mut written = self.launch(Input::Buffer(args[0].buf, args[0].shape), out, None, rec)?;
        Ok(written.pop().expect("the reduction"))
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let x = &g.inputs[0];
        let kept = x.shape().reduced(&self.axes, true);
        let grad = g.grad.reshape(kept.clone()).expand(x.shape().clone());
        let dx = match self.op {
            // d/dxᵢ Σx = 1
            ReduceOp::Sum => grad,
            // the gradient is shared equally among the elements equal to the extreme
            ReduceOp::Max | ReduceOp::Min => {
                let y = g.output.reshape(kept).expand(x.shape().clone());
                let hit = x.eq(&y).cast(x.dtype());
                let ties = hit.sum_axes(&self.axes, true).expand(x.shape().clone());
                grad * hit / ties
            }
        };
        vec![Some(dx)]
    }

    fn tolerance(&self, args: &[CpuArg], _: &Meta) -> Tolerance {
        match self.op {
            // the GPU accumulates in f32 (the CPU in f64)
            ReduceOp::Sum => ulps_summing(2.0, self.axes.iter().map(|&a| args[0].shape.dim(a)).product()),
            ReduceOp::Max | ReduceOp::Min => Tolerance::Exact,
        }
    }
}

impl Reduce {
    /// Whether this sums `input` over every axis but `kept` (as a bias's gradient does).
    pub(crate) fn sums_all_but(&self, kept: usize, input: &Shape) -> bool {
        let others = (0..input.rank()).filter(|&a| a != kept);
        self.op == ReduceOp::Sum && input.rank() >= 2 && self.axes.iter().copied().eq(others)
    }

    /// Records the reduction of `input` (in two passes when few outputs combine many elements
    /// each); with an `epilogue`, the chain computed from each result in the last pass's store.
    /// Returns the buffers written: the result (unless an epilogue does not write it out), then
    /// the chain's outputs.
    fn launch(
        &self,
        input: Input,
        out: &Meta,
        epilogue: Option<&Epilogue>,
        rec: &mut Recorder,
    ) -> Result<Vec<GpuBuffer>> {
        // the pass that writes the results, through the epilogue if there is one
        let store = |rec: &mut Recorder, kernel: Kernel, params: &Params, x: &GpuBuffer, grid: Grid| {
            let numel = out.shape.numel();
            let Some(e) = epilogue else {
                let y = rec.alloc_typed(numel, out.dtype)?;
                rec.dispatch(&kernel, params, &[x], &[&y], grid)?;
                return Ok(vec![y]);
            };
            e.dispatch(rec, kernel, &EPILOGUE_SITE, params, &[x], numel, out.dtype, grid)
        };
        let name = self.op.name();
        let n_out = out.shape.numel();
        let (ks, kst, rs, rst) = split_axes(input.shape(), &self.axes);
        let (ks, kst) = collapse(&ks, &[kst]);
        let (rs, rst) = collapse(&rs, &[rst]);
        let count: usize = rs.iter().product();
        let init = match (self.op, out.dtype) {
            (ReduceOp::Sum, _) => 0,
            (ReduceOp::Max, DType::F32) => f32::NEG_INFINITY.to_bits(),
            (ReduceOp::Min, DType::F32) => f32::INFINITY.to_bits(),
            (ReduceOp::Max, DType::I32) => i32::MIN as u32,
            (ReduceOp::Min, DType::I32) => i32::MAX as u32,
            (ReduceOp::Max, _) => 0,
            (ReduceOp::Min, _) => u32::MAX,
        };
        let contiguous = rst[0].last().is_none_or(|&s| s == 1);
        let per_thread = !contiguous && n_out >= 1024 || count < 32;
        // few outputs of many elements each: runs of RUN elements in parallel, then their results
        let parts = if per_thread || n_out >= 1024 { 1 } else { count.div_ceil(RUN) };
        let params = Params {
            n_out: u32_of(name, n_out * parts)?,
            count: u32_of(name, count)?,
            kept_rank: ks.len() as u32,
            reduced_rank: rs.len() as u32,
            init,
            parts: parts as u32,
            chunk: u32_of(name, count.div_ceil(parts))?,
            _pad: 0,
            kept_shape: pack(name, &ks, 1)?,
            kept_strides: pack(name, &kst[0], 0)?,
            reduced_shape: pack(name, &rs, 1)?,
            reduced_strides: pack(name, &rst[0], 0)?,
        };
        let entry = if per_thread { "per_thread" } else { "per_workgroup" };
        let kernel = reduce_kernel(entry, self.op, out.dtype, rec.context().subgroups());
        let groups = if per_thread { params.n_out.div_ceil(256) } else { params.n_out };
        // the runs' results (n_out, parts), then each kept element's runs combined
        let combine = Params {
            n_out: u32_of(name, n_out)?,
            count: parts as u32,
            kept_rank: 1,
            reduced_rank: 1,
            parts: 1,
            chunk: parts as u32,
            kept_shape: pack(name, &[n_out], 1)?,
            kept_strides: pack(name, &[parts], 0)?,
            reduced_shape: pack(name, &[parts], 1)?,
            reduced_strides: pack(name, &[1], 0)?,
            ..params
        };
        let x = match input {
            Input::Buffer(x, _) => x,
            Input::Chain(chain, inputs) => {
                // the first pass computes its elements from the chain's inputs
                assert!(epilogue.is_none(), "{name}: a prologue and an epilogue on one reduction");
                let code = chain.wgsl(1, None);
                let plain = reduce_kernel(entry, self.op, out.dtype, rec.context().subgroups());
                let mut first = with_chain_libraries(plain, &code);
                first.reads = inputs.len() as u32;
                let y_binding =
                    format!("@group(0) @binding({}) var<storage, read_write> y: array<T>;", 1 + inputs.len());
                let first = first
                    .with("    // @FIELDS", code.fields)
                    .with(EPILOGUE_SITE.output_binding, format!("{}{y_binding}", code.bindings))
                    .with("// @PROLOGUE", code.functions)
                    .with(
                        "    return x[at]; // @LOAD",
                        format!("    let i = at;\n{}    return v{};", code.body, chain.steps.len() - 1),
                    );
                let target = rec.alloc_typed(n_out * parts, out.dtype)?;
                rec.dispatch(
                    &first,
                    &chain_params(&params, chain)?,
                    inputs,
                    &[&target],
                    Grid::Linear(groups),
                )?;
                if parts == 1 {
                    return Ok(vec![target]);
                }
                return store(rec, kernel, &combine, &target, Grid::Linear(combine.n_out));
            }
        };
        if parts == 1 {
            return store(rec, kernel, &params, x, Grid::Linear(groups));
        }
        let runs = rec.alloc_elems(n_out * parts)?;
        rec.dispatch(&kernel, &params, &[x], &[&runs], Grid::Linear(groups))?;
        store(rec, kernel, &combine, &runs, Grid::Linear(combine.n_out))
    }
}

/// Where `reduce.wgsl` takes an epilogue (see `epilogue.rs`).
const EPILOGUE_SITE: Site = Site {
    output_binding: "@group(0) @binding(2) var<storage, read_write> y: array<T>; // @OUTPUTS",
    store: "    y[i] = v; // @STORE",
};

/// A reduction of f32 elements stores its results through a chain.
impl EpilogueHost for Reduce {
    fn takes_epilogue(&self, _: &[&Shape], _: &Shape, dtype: DType) -> bool {
        dtype == DType::F32
    }

    fn prefix_words(&self) -> usize {
        std::mem::size_of::<Params>() / 4
    }

    fn own_bindings(&self) -> usize {
        1
    }

    fn launch_epilogue(
        &self,
        args: &[GpuArg],
        out: &Meta,
        epilogue: &Epilogue,
        rec: &mut Recorder,
    ) -> Result<Vec<GpuBuffer>> {
        self.launch(Input::Buffer(args[0].buf, args[0].shape), out, Some(epilogue), rec)
    }
}

/// An f32 reduction reads its input through a chain.
impl PrologueHost for Reduce {
    fn takes_prologue(&self, dtype: DType) -> bool {
        dtype == DType::F32
    }

    fn prefix_words(&self) -> usize {
        std::mem::size_of::<Params>() / 4
    }

    fn launch_prologue(
        &self,
        chain: &Chain,
        inputs: &[&GpuBuffer],
        out: &Meta,
        rec: &mut Recorder,
    ) -> Result<GpuBuffer> {
        let mut written = self.launch(Input::Chain(chain, inputs), out, None, rec)?;
        Ok(written.pop().expect("the reduction"))
    }
}

/// Where a reduction's input comes from: a buffer (of this shape), or a chain computed from its
/// inputs' buffers as the first pass reads it (a prologue; the chain's shape is the input's).
enum Input<'a> {
    Buffer(&'a GpuBuffer, &'a Shape),
    Chain(&'a Chain, &'a [&'a GpuBuffer]),
}

impl Input<'_> {
    fn shape(&self) -> &Shape {
        match self {
            Input::Buffer(_, shape) => shape,
            Input::Chain(chain, _) => &chain.shape,
        }
    }
}

/// A reduction kernel: `entry` is `per_workgroup` or `per_thread`; `subgroups`: whether its
/// workgroup combine uses subgroup shuffles.
fn reduce_kernel(entry: &'static str, op: ReduceOp, dtype: DType, subgroups: bool) -> Kernel<'static> {
    let combine = match op {
        ReduceOp::Sum => "a + b",
        ReduceOp::Max => "max(a, b)",
        ReduceOp::Min => "min(a, b)",
    };
    Kernel::new(&SHADER, entry, 1, 1)
        .with_library(if subgroups { &SUBGROUP } else { &TREE })
        .with("alias T = f32; // @T", format!("alias T = {};", wgsl_type(dtype)))
        .with("return a + b; // @combine", format!("return {combine};"))
}

/// The argmax/argmin kernel for elements of `dtype`.
fn arg_kernel(dtype: DType) -> Kernel<'static> {
    // the module holds `per_workgroup` too, which needs a `workgroup_combine`
    Kernel::new(&SHADER, "arg_extreme", 1, 1)
        .with_library(&TREE)
        .with("alias T = f32; // @T", format!("alias T = {};", wgsl_type(dtype)))
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let numeric = [DType::F32, DType::I32, DType::U32];
    let mut all: Vec<Kernel<'static>> = numeric.into_iter().map(arg_kernel).collect();
    for entry in ["per_workgroup", "per_thread"] {
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
            for subgroups in [false, true] {
                all.extend(numeric.into_iter().map(|d| reduce_kernel(entry, op, d, subgroups)));
            }
        }
    }
    all
}

/// The index of the largest (or smallest) element along one axis; i32, first on ties.
pub(crate) struct ArgReduce {
    max: bool,
    axis: usize,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ArgParams {
    n_out: u32,
    size: u32,
    inner: u32,
    max: u32,
}

impl Op for ArgReduce {
    fn name(&self) -> &'static str {
        if self.max { "argmax" } else { "argmin" }
    }

    fn describe(&self) -> String {
        format!("{}(axis {})", self.name(), self.axis)
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        let x = args[0].data.to_f64_vec();
        let (_, size, inner) = crate::ops::layout::around(args[0].shape.dims(), self.axis);
        let better = |a: f64, b: f64| if self.max { a > b } else { a < b };
        let idx: Vec<i32> = (0..out.shape.numel())
            .map(|o| {
                let base = (o / inner) * size * inner + o % inner;
                let mut best = 0;
                for k in 1..size {
                    if better(x[base + k * inner], x[base + best * inner]) {
                        best = k;
                    }
                }
                best as i32
            })
            .collect();
        CpuStorage::from_vec(idx)
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let name = self.name();
        let n_out = u32_of(name, out.shape.numel())?;
        let y = rec.alloc_elems(n_out as usize)?;
        let (_, size, inner) = crate::ops::layout::around(args[0].shape.dims(), self.axis);
        let params =
            ArgParams { n_out, size: u32_of(name, size)?, inner: u32_of(name, inner)?, max: self.max as u32 };
        let kernel = arg_kernel(args[0].dtype);
        rec.dispatch(&kernel, &params, &[args[0].buf], &[&y], Grid::Linear(n_out.div_ceil(256)))?;
        Ok(y)
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // indices of the first extreme value
        Tolerance::Exact
    }
}

impl Tensor {
    /// Records a reduction over `axes` (each in range, no repeats).
    #[track_caller]
    fn reduce(&self, op: ReduceOp, axes: &[usize], keepdim: bool) -> Tensor {
        let name = op.name();
        if self.dtype() == DType::Bool {
            panic!("{name}: cannot reduce a bool tensor; cast it first");
        }
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        if let Some(&a) = axes.iter().find(|&&a| a >= self.rank()) {
            panic!("{name}: axis {a} is out of range for shape {}", self.shape());
        }
        let shape = self.shape().reduced(&axes, keepdim);
        if axes.is_empty() {
            return self.reshape(shape);
        }
        Tensor::from_op(Reduce { op, axes, keepdim }, [self.clone()], shape, self.dtype())
    }

    /// The sum over `axes`.
    #[track_caller]
    pub fn sum_axes(&self, axes: &[usize], keepdim: bool) -> Tensor {
        self.reduce(ReduceOp::Sum, axes, keepdim)
    }

    /// The sum along `axis` (negative counts from the end).
    #[track_caller]
    pub fn sum(&self, axis: isize, keepdim: bool) -> Tensor {
        let a = self.shape().axis("sum", axis);
        self.reduce(ReduceOp::Sum, &[a], keepdim)
    }

    /// The sum of all elements, as a scalar.
    #[track_caller]
    pub fn sum_all(&self) -> Tensor {
        self.reduce(ReduceOp::Sum, &(0..self.rank()).collect::<Vec<_>>(), false)
    }

    /// The maximum along `axis`.
    #[track_caller]
    pub fn max(&self, axis: isize, keepdim: bool) -> Tensor {
        let a = self.shape().axis("max", axis);
        self.reduce(ReduceOp::Max, &[a], keepdim)
    }

    /// The maximum over `axes`.
    #[track_caller]
    pub fn max_axes(&self, axes: &[usize], keepdim: bool) -> Tensor {
        self.reduce(ReduceOp::Max, axes, keepdim)
    }

    /// The largest element, as a scalar.
    #[track_caller]
    pub fn max_all(&self) -> Tensor {
        self.reduce(ReduceOp::Max, &(0..self.rank()).collect::<Vec<_>>(), false)
    }

    /// The minimum along `axis`.
    #[track_caller]
    pub fn min(&self, axis: isize, keepdim: bool) -> Tensor {
        let a = self.shape().axis("min", axis);
        self.reduce(ReduceOp::Min, &[a], keepdim)
    }

    /// The minimum over `axes`.
    #[track_caller]
    pub fn min_axes(&self, axes: &[usize], keepdim: bool) -> Tensor {
        self.reduce(ReduceOp::Min, axes, keepdim)
    }

    /// The smallest element, as a scalar.
    #[track_caller]
    pub fn min_all(&self) -> Tensor {
        self.reduce(ReduceOp::Min, &(0..self.rank()).collect::<Vec<_>>(), false)
    }

    /// The mean over `axes`.
    #[track_caller]
    pub fn mean_axes(&self, axes: &[usize], keepdim: bool) -> Tensor {
        let count: usize = axes.iter().map(|&a| self.dims()[a]).product();
        self.sum_axes(axes, keepdim) * (1.0 / count.max(1) as f64)
    }

    /// The mean along `axis`.
    #[track_caller]
    pub fn mean(&self, axis: isize, keepdim: bool) -> Tensor {
        let a = self.shape().axis("mean", axis);
        self.mean_axes(&[a], keepdim)
    }

    /// The mean of all elements, as a scalar.
    #[track_caller]
    pub fn mean_all(&self) -> Tensor {
        self.mean_axes(&(0..self.rank()).collect::<Vec<_>>(), false)
    }

    /// The variance over `axes`: Σ(x − mean)² / (n − correction). `correction` 1 is the unbiased
    /// estimator (PyTorch's default), 0 the population variance.
    #[track_caller]
    pub fn var_axes(&self, axes: &[usize], keepdim: bool, correction: usize) -> Tensor {
        let count: usize = axes.iter().map(|&a| self.dims()[a]).product();
        if count <= correction {
            panic!("var: {count} elements are too few for correction {correction}");
        }
        let centered = self - &self.mean_axes(axes, true);
        centered.square().sum_axes(axes, keepdim) * (1.0 / (count - correction) as f64)
    }

    /// The variance along `axis` (see [`Tensor::var_axes`]).
    #[track_caller]
    pub fn var(&self, axis: isize, keepdim: bool, correction: usize) -> Tensor {
        let a = self.shape().axis("var", axis);
        self.var_axes(&[a], keepdim, correction)
    }

    /// The index of the largest element along `axis` (i32; the first one on ties).
    #[track_caller]
    pub fn argmax(&self, axis: isize, keepdim: bool) -> Tensor {
        self.arg_reduce(true, axis, keepdim)
    }

    /// The index of the smallest element along `axis` (i32; the first one on ties).
    #[track_caller]
    pub fn argmin(&self, axis: isize, keepdim: bool) -> Tensor {
        self.arg_reduce(false, axis, keepdim)
    }

    #[track_caller]
    fn arg_reduce(&self, max: bool, axis: isize, keepdim: bool) -> Tensor {
        let name = if max { "argmax" } else { "argmin" };
        let a = self.shape().axis(name, axis);
        if self.rank() == 0 || self.dims()[a] == 0 {
            panic!("{name}: shape {} has nothing to choose from along axis {axis}", self.shape());
        }
        if self.dtype() == DType::Bool {
            panic!("{name}: not defined for bool tensors");
        }
        let shape = self.shape().reduced(&[a], keepdim);
        Tensor::from_op(ArgReduce { max, axis: a }, [self.clone()], shape, DType::I32)
    }
}
