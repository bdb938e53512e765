//! Batched matrix multiplication with broadcasting batch dimensions, reading transposed operands
//! in place.
//!
//! `a.matmul(&b.t())` does not copy: when an operand is an unrealized transpose of its last two
//! axes, the node reads the transpose's input with a transposed flag instead. The gradient rules
//! use the same flags, so backward never materializes a transpose either.
//!
//! CPU: `backend::cpu::gemm` (strided, so transposes are free): kiln's own packed kernel for f32
//! on AVX-512 (`backend::cpu_gemm`), the skinny ones for few rows, else `matrixmultiply`'s.
//! GPU: `shaders/matmul.wgsl`, tiles in workgroup memory with a block of outputs per invocation.

use super::epilogue::{Epilogue, EpilogueHost, Site};
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, f16_via_f32, ulps_summing};
use crate::backend::cpu::{CpuData, CpuStorage, Gemm, Mat, gemm};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::{MAX_RANK, collapse, pack, u32_of};
use crate::ops::movement::{Movement, strided_copy};
use crate::{DType, Result, Shape, Tensor};
use rayon::prelude::*;
use std::any::Any;

static SHADER: Shader = shader!("matmul.wgsl");
/// The tiled GEMM core shared by matmul and the convolutions.
pub(crate) static GEMM: Shader = shader!("gemm.wgsl");

/// The most batch dimensions the GPU kernel walks (after collapsing; a launch with more copies
/// its operands out to one batch dimension first).
const MAX_BATCH_RANK: usize = 4;

/// Sums along K that a product can compute in the same kernel (see `matmul.wgsl`'s `ONES`): a
/// linear layer's bias gradient beside its weight's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SumsAlongK {
    /// Σ_k op(A)[i, k] for each row i of C (op(B) gains a column of ones).
    RowsOfA,
    /// Σ_k op(B)[k, j] for each column j of C (op(A) gains a row of ones).
    ColumnsOfB,
}

/// C = op(A)·op(B), batched, where op transposes the last two axes when the flag is set.
pub(crate) struct MatMul {
    pub trans_a: bool,
    pub trans_b: bool,
}

/// The geometry of one matmul node.
struct Geometry {
    m: usize,
    n: usize,
    k: usize,
    /// The output's batch dimensions.
    batch: Vec<usize>,
    /// Batch strides of a and b over `batch` (0 where broadcast).
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    /// Row and column strides of op(A) (m×k) and op(B) (k×n) within one matrix.
    a_rc: (usize, usize),
    b_rc: (usize, usize),
}

impl MatMul {
    fn geometry(&self, a: &Shape, b: &Shape, out: &Shape) -> Geometry {
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) =
            if self.trans_a { (a.dim(ra - 1), a.dim(ra - 2)) } else { (a.dim(ra - 2), a.dim(ra - 1)) };
        let n = if self.trans_b { b.dim(rb - 2) } else { b.dim(rb - 1) };
        let batch = out.dims()[..out.rank() - 2].to_vec();
        let batch_shape = Shape::new(batch.clone());
        let batch_strides = |s: &Shape| {
            let mats = s.dim(s.rank() - 2) * s.dim(s.rank() - 1);
            let bs = Shape::new(s.dims()[..s.rank() - 2].to_vec());
            bs.broadcast_strides(&batch_shape).into_iter().map(|st| st * mats).collect::<Vec<_>>()
        };
        let a_cols = a.dim(ra - 1);
        let b_cols = b.dim(rb - 1);
        Geometry {
            m,
            n,
            k,
            a_batch: batch_strides(a),
            b_batch: batch_strides(b),
            batch,
            a_rc: if self.trans_a { (1, a_cols) } else { (a_cols, 1) },
            b_rc: if self.trans_b { (1, b_cols) } else { (b_cols, 1) },
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch_rank: u32,
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    batch_shape: [u32; MAX_BATCH_RANK],
    a_batch: [u32; MAX_BATCH_RANK],
    b_batch: [u32; MAX_BATCH_RANK],
}

impl Op for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn describe(&self) -> String {
        format!("matmul(trans_a {}, trans_b {})", self.trans_a, self.trans_b)
    }

    fn epilogue_host(&self) -> Option<&dyn EpilogueHost> {
        Some(self)
    }

    fn computes_f16(&self) -> bool {
        // f16 operands, f32 accumulation, an f16 product (`matmul_flags` widens the rare
        // products whose batch must be copied out first)
        true
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        if out.dtype == DType::F16 {
            // the f32 product of the widened operands, rounded once (as the kernel does)
            return f16_via_f32(args, |wide| self.cpu(wide, &Meta { dtype: DType::F32, ..*out }));
        }
        let g = self.geometry(args[0].shape, args[1].shape, out.shape);
        let batch_offsets =
            |strides: &[usize]| -> Vec<usize> { crate::ops::layout::offsets(&g.batch, strides, 0).collect() };
        let (a_off, b_off) = (batch_offsets(&g.a_batch), batch_offsets(&g.b_batch));
        fn run<T: Gemm>(g: &Geometry, x: &[T], y: &[T], a_off: &[usize], b_off: &[usize]) -> Vec<T> {
            let mat = g.m * g.n;
            let mut c = cpu_pool::for_overwrite::<T>(g.batch.iter().product::<usize>() * mat);
            let one = |(i, c): (usize, &mut [T])| {
                let a = Mat { data: &x[a_off[i]..], row: g.a_rc.0, col: g.a_rc.1 };
                let b = Mat { data: &y[b_off[i]..], row: g.b_rc.0, col: g.b_rc.1 };
                gemm(g.m, g.k, g.n, a, b, T::ZERO, c, g.n);
            };
            if mat == 0 {
                return c;
            }
            // many small products: one per thread; otherwise the GEMM threads itself
            if g.m * g.n * g.k < 64 * 64 * 64 && a_off.len() >= 4 {
                c.par_chunks_mut(mat).enumerate().for_each(one);
            } else {
                c.chunks_mut(mat).enumerate().for_each(one);
            }
            c
        }
        CpuStorage::new(match (args[0].data.data(), args[1].data.data()) {
            (CpuData::F32(x), CpuData::F32(y)) => CpuData::F32(run(&g, x, y, &a_off, &b_off)),
            (CpuData::F64(x), CpuData::F64(y)) => CpuData::F64(run(&g, x, y, &a_off, &b_off)),
            _ => unreachable!("dtypes are checked when recorded"),
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let mut written = self.launch(args, out.shape, None, None, rec)?;
        Ok(written.pop().expect("the product"))
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let (a, b, dc) = (&g.inputs[0], &g.inputs[1], g.grad);
        // With A = op(a), B = op(b): dA = dC·Bᵀ and dB = Aᵀ·dC. When a is stored transposed,
        // its gradient is dAᵀ = B·dCᵀ (likewise for b), so every product reads in place.
        let da = if self.trans_a {
            Tensor::matmul_flags(b, dc, self.trans_b, true)
        } else {
            Tensor::matmul_flags(dc, b, false, !self.trans_b)
        };
        let db = if self.trans_b {
            Tensor::matmul_flags(dc, a, true, self.trans_a)
        } else {
            Tensor::matmul_flags(a, dc, !self.trans_a, false)
        };
        vec![Some(da.sum_to(a.shape())), Some(db.sum_to(b.shape()))]
    }

    fn tolerance(&self, args: &[CpuArg], out: &Meta) -> Tolerance {
        // f32 dot products of length k in another order than the CPU's
        let k = self.geometry(args[0].shape, args[1].shape, out.shape).k;
        match out.dtype {
            // ... then rounded to f16, where the two may land on neighbours
            DType::F16 => super::f16_rounding_summing(k),
            _ => ulps_summing(2.0, k),
        }
    }
}

/// Where `matmul.wgsl` takes an epilogue (see `epilogue.rs`).
const EPILOGUE_SITE: Site = Site {
    output_binding: "@group(0) @binding(3) var<storage, read_write> c: array<E>; // @OUTPUTS",
    store: "    c[i] = E(v); // @STORE",
};

impl EpilogueHost for MatMul {
    /// A product whose batch dimensions the kernel walks without copying the operands out.
    fn takes_epilogue(&self, inputs: &[&Shape], out: &Shape, _: DType) -> bool {
        inputs.len() == 2 && self.walks_batch(inputs[0], inputs[1], out)
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
        self.launch(args, out.shape, Some(epilogue), None, rec)
    }
}

impl MatMul {
    /// Whether a product of these shapes and dtype can compute `sums` in its kernel: one f32
    /// matrix product (no batch) whose extra line of ones lands in the padding of its last
    /// tile, where it costs no workgroup.
    pub(crate) fn takes_sums(
        &self,
        a: &Shape,
        b: &Shape,
        out: &Shape,
        dtype: DType,
        sums: SumsAlongK,
    ) -> bool {
        if dtype != DType::F32 || a.rank() != 2 || b.rank() != 2 {
            return false;
        }
        let g = self.geometry(a, b, out);
        let size = Tile::for_shape(g.m, g.n, 1).size as usize;
        match sums {
            SumsAlongK::RowsOfA => !g.n.is_multiple_of(size),
            SumsAlongK::ColumnsOfB => !g.m.is_multiple_of(size),
        }
    }

    /// Records the product of `args` and, in the same kernel, `sums` along K (see
    /// [`takes_sums`](Self::takes_sums)). Returns the product and the sums (f32).
    pub(crate) fn launch_with_sums(
        &self,
        args: &[GpuArg],
        out: &Shape,
        sums: SumsAlongK,
        rec: &mut Recorder,
    ) -> Result<(GpuBuffer, GpuBuffer)> {
        let mut written = self.launch(args, out, None, Some(sums), rec)?;
        let sums = written.pop().expect("the sums");
        Ok((written.pop().expect("the product"), sums))
    }

    /// Records the product of `args` (of shape `out`) stored permuted: its elements walked as
    /// `shape` (the same elements in row-major order, at most `MAX_RANK` dimensions once
    /// collapsed), dimension d placed at stride `strides[d]` — what a permute of the product
    /// (through reshapes) would copy them to. For a product whose kernel takes an epilogue.
    pub(crate) fn launch_permuted(
        &self,
        args: &[GpuArg],
        out: &Shape,
        (shape, strides): (&[usize], &[usize]),
        rec: &mut Recorder,
    ) -> Result<GpuBuffer> {
        let (shape, strides) = collapse(shape, &[strides.to_vec()]);
        let g = self.geometry(args[0].shape, args[1].shape, out);
        let (batch, batch_strides) = collapse(&g.batch, &[g.a_batch.clone(), g.b_batch.clone()]);
        assert!(
            batch.len() <= MAX_BATCH_RANK,
            "matmul: a permuted store on a product whose batch is copied out"
        );
        let (base, tile, kernel, batches) = self.setup(&g, &batch, &batch_strides, args[0].dtype)?;
        // (B, M, N) → one BM×BN tile of C per workgroup
        let grid = Grid::Dims(base.n.div_ceil(tile.size), base.m.div_ceil(tile.size), batches);
        let params = PermutedParams {
            base,
            rank: shape.len() as u32,
            _pad: [0; 3],
            shape: pack("matmul", &shape, 1)?,
            strides: pack("matmul", &strides[0], 0)?,
        };
        let y = rec.alloc_elems(out.numel())?;
        rec.dispatch(&with_permuted_store(kernel), &params, &[args[0].buf, args[1].buf], &[&y], grid)?;
        Ok(y)
    }

    /// Records the product of `args` into a new buffer; with an `epilogue`, the chain computed
    /// from each element of the product instead (`Epilogue`); with `sums`, those too. Returns
    /// the buffers written: the product (unless an epilogue does not write it out), then the
    /// chain's outputs or the sums.
    fn launch(
        &self,
        args: &[GpuArg],
        out: &Shape,
        epilogue: Option<&Epilogue>,
        sums: Option<SumsAlongK>,
        rec: &mut Recorder,
    ) -> Result<Vec<GpuBuffer>> {
        let g = self.geometry(args[0].shape, args[1].shape, out);
        let (mut batch, mut strides) = collapse(&g.batch, &[g.a_batch.clone(), g.b_batch.clone()]);
        let expanded;
        let copied = batch.len() > MAX_BATCH_RANK;
        let (a, b) = if copied {
            // broadcasts interleaved between the operands leave more batch dimensions than the
            // kernel walks: copy both out over the whole batch, which is then one dimension (as
            // PyTorch's matmul expands and reshapes)
            expanded = (
                expand_batch(rec, &args[0], &g.batch, &g.a_batch)?,
                expand_batch(rec, &args[1], &g.batch, &g.b_batch)?,
            );
            strides = vec![vec![matrix_len(args[0].shape)], vec![matrix_len(args[1].shape)]];
            batch = vec![batch.iter().product()];
            (&expanded.0, &expanded.1)
        } else {
            (args[0].buf, args[1].buf)
        };
        let (params, tile, kernel, batches) = self.setup(&g, &batch, &strides, args[0].dtype)?;
        let numel = out.numel();
        if let Some(sums) = sums {
            assert!(epilogue.is_none() && batches == 1, "matmul: sums beside an epilogue or a batch");
            // (M, N) with the line of sums → one BM×BN tile of C per workgroup
            let (rows, columns, length) = match sums {
                SumsAlongK::RowsOfA => (params.m, params.n + 1, g.m),
                SumsAlongK::ColumnsOfB => (params.m + 1, params.n, g.n),
            };
            let grid = Grid::Dims(columns.div_ceil(tile.size), rows.div_ceil(tile.size), 1);
            let (y, s) = (rec.alloc_typed(numel, args[0].dtype)?, rec.alloc_elems(length)?);
            rec.dispatch(&with_sums(kernel, sums), &params, &[a, b], &[&y, &s], grid)?;
            return Ok(vec![y, s]);
        }
        // (B, M, N) → one BM×BN tile of C per workgroup
        let grid = Grid::Dims(params.n.div_ceil(tile.size), params.m.div_ceil(tile.size), batches);
        let Some(e) = epilogue else {
            let y = rec.alloc_typed(numel, args[0].dtype)?;
            rec.dispatch(&kernel, &params, &[a, b], &[&y], grid)?;
            return Ok(vec![y]);
        };
        assert!(!copied, "matmul: an epilogue on a product whose batch is copied out (see takes_epilogue)");
        e.dispatch(rec, kernel, &EPILOGUE_SITE, &params, &[a, b], numel, args[0].dtype, grid)
    }

    /// The parameter block, tile, kernel and batch count of a product of geometry `g` whose
    /// kernel walks `batch` with the operands' batch `strides`.
    fn setup(
        &self,
        g: &Geometry,
        batch: &[usize],
        strides: &[Vec<usize>],
        dtype: DType,
    ) -> Result<(Params, Tile, Kernel<'static>, u32)> {
        let pack4 = |v: &[usize], fill: u32| -> Result<[u32; MAX_BATCH_RANK]> {
            let mut out = [fill; MAX_BATCH_RANK];
            for (o, &x) in out.iter_mut().zip(v) {
                *o = u32_of("matmul", x)?;
            }
            Ok(out)
        };
        let params = Params {
            m: u32_of("matmul", g.m)?,
            n: u32_of("matmul", g.n)?,
            k: u32_of("matmul", g.k)?,
            batch_rank: batch.len() as u32,
            a_row: u32_of("matmul", g.a_rc.0)?,
            a_col: u32_of("matmul", g.a_rc.1)?,
            b_row: u32_of("matmul", g.b_rc.0)?,
            b_col: u32_of("matmul", g.b_rc.1)?,
            batch_shape: pack4(batch, 1)?,
            a_batch: pack4(&strides[0], 0)?,
            b_batch: pack4(&strides[1], 0)?,
        };
        let batches = u32_of("matmul", batch.iter().product())?;
        let tile = Tile::for_shape(g.m, g.n, batches as usize);
        Ok((params, tile, kernel(tile, g.a_rc.1 == 1, g.b_rc.1 == 1, dtype), batches))
    }

    /// Whether the kernel walks the batch dimensions of a product of these shapes without
    /// copying the operands out.
    fn walks_batch(&self, a: &Shape, b: &Shape, out: &Shape) -> bool {
        let g = self.geometry(a, b, out);
        collapse(&g.batch, &[g.a_batch, g.b_batch]).0.len() <= MAX_BATCH_RANK
    }
}

/// Elements of one stored matrix of an operand (its last two dimensions).
fn matrix_len(shape: &Shape) -> usize {
    shape.dims()[shape.rank() - 2..].iter().product()
}

/// Operand `x` copied out over the whole `batch`, its matrices contiguous one after another:
/// `batch_strides` (0 where `x` is broadcast) say where each batch's matrix starts in `x`.
fn expand_batch(
    rec: &mut Recorder,
    x: &GpuArg,
    batch: &[usize],
    batch_strides: &[usize],
) -> Result<GpuBuffer> {
    let (rows, cols) = (x.shape.dim(x.shape.rank() - 2), x.shape.dim(x.shape.rank() - 1));
    let shape: Vec<usize> = batch.iter().copied().chain([rows, cols]).collect();
    let src_strides: Vec<usize> = batch_strides.iter().copied().chain([cols, 1]).collect();
    let dst_strides = Shape::new(shape.clone()).strides();
    let copy = rec.alloc_elems(shape.iter().product())?;
    strided_copy(rec, "matmul", x.buf, &copy, &shape, (0, src_strides), (0, dst_strides))?;
    Ok(copy)
}

/// A tile configuration of the GEMM core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    /// BM = BN.
    pub size: u32,
    /// K per slab.
    pub depth: u32,
}

impl Tile {
    pub const LARGE: Tile = Tile { size: 128, depth: 8 };
    pub const SMALL: Tile = Tile { size: 64, depth: 16 };

    /// 128×128 tiles (8×8 outputs per invocation) when they still give the GPU enough
    /// workgroups to fill it; 64×64 otherwise.
    pub fn for_shape(m: usize, n: usize, batches: usize) -> Tile {
        let large_tiles = m.div_ceil(128) * n.div_ceil(128) * batches;
        if m >= 256 && n >= 256 && large_tiles >= 64 { Tile::LARGE } else { Tile::SMALL }
    }
}

/// The GEMM core's specialization for a tile and the operands' contiguous directions.
pub(crate) fn gemm_kernel<'a>(
    shader: &'a Shader,
    entry: &'static str,
    reads: u32,
    tile: Tile,
    a_along_k: bool,
    b_along_n: bool,
) -> Kernel<'a> {
    Kernel::new(shader, entry, reads, 1)
        .with_library(&GEMM)
        .with("const BM: u32 = 64u; // @BM", format!("const BM: u32 = {}u;", tile.size))
        .with("const BN: u32 = 64u; // @BN", format!("const BN: u32 = {}u;", tile.size))
        .with("const BK: u32 = 16u; // @BK", format!("const BK: u32 = {}u;", tile.depth))
        .with("const A_ALONG_K: bool = true; // @A_ALONG_K", format!("const A_ALONG_K: bool = {a_along_k};"))
        .with("const B_ALONG_N: bool = true; // @B_ALONG_N", format!("const B_ALONG_N: bool = {b_along_n};"))
}

/// The matmul kernel for a tile, the operands' contiguous directions and their dtype (f32, or
/// f16 read and written as such around the f32 accumulation).
fn kernel(tile: Tile, a_along_k: bool, b_along_n: bool, dtype: DType) -> Kernel<'static> {
    gemm_kernel(&SHADER, "main", 2, tile, a_along_k, b_along_n).storing(dtype)
}

/// The fields a permuted store adds to the parameter block (see [`MatMul::launch_permuted`]).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PermutedParams {
    base: Params,
    rank: u32,
    _pad: [u32; 3],
    shape: [u32; MAX_RANK],
    strides: [u32; MAX_RANK],
}

/// `kernel` storing element i of the product at `scatter(i)`: the product's elements walked
/// as `shape` (row-major), each dimension placed by its stride.
fn with_permuted_store(kernel: Kernel<'static>) -> Kernel<'static> {
    let fields = "    scatter_rank: u32,\n    scatter_pad0: u32,\n    scatter_pad1: u32,\n    scatter_pad2: u32,\n    \
                  scatter_shape: array<vec4<u32>, 2>,\n    scatter_strides: array<vec4<u32>, 2>,";
    let scatter = "fn scatter(i: u32) -> u32 {
    var rest = i;
    var at = 0u;
    for (var d = i32(p.scatter_rank) - 1; d >= 0; d--) {
        let u = u32(d);
        let dim = p.scatter_shape[u / 4u][u % 4u];
        at += (rest % dim) * p.scatter_strides[u / 4u][u % 4u];
        rest /= dim;
    }
    return at;
}";
    kernel
        .with("    // @FIELDS", fields.to_string())
        .with("// @EPILOGUE", scatter.to_string())
        .with(EPILOGUE_SITE.store, "    c[scatter(i)] = E(v);".to_string())
}

/// `kernel` also computing `sums` along K into an f32 buffer bound after the product.
fn with_sums(kernel: Kernel<'static>, sums: SumsAlongK) -> Kernel<'static> {
    let (ones, store) = match sums {
        SumsAlongK::RowsOfA => (1, "if col == p.n {\n        sums[row] = v;\n        return;\n    }"),
        SumsAlongK::ColumnsOfB => (2, "if row == p.m {\n        sums[col] = v;\n        return;\n    }"),
    };
    let mut kernel = kernel
        .with("const ONES: u32 = 0u; // @ONES", format!("const ONES: u32 = {ones}u;"))
        .with("// @SUMS", "@group(0) @binding(4) var<storage, read_write> sums: array<f32>;".to_string())
        .with("// @STORE_SUMS", store.to_string());
    kernel.writes = 2;
    kernel
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let mut all = Vec::new();
    for tile in [Tile::LARGE, Tile::SMALL] {
        for (a, b) in [(true, true), (true, false), (false, true), (false, false)] {
            all.push(kernel(tile, a, b, DType::F32));
            all.push(kernel(tile, a, b, DType::F16));
        }
        for sums in [SumsAlongK::RowsOfA, SumsAlongK::ColumnsOfB] {
            all.push(with_sums(kernel(tile, false, true, DType::F32), sums));
        }
        all.push(with_permuted_store(kernel(tile, true, false, DType::F32)));
    }
    all
}

/// If `t` is an unrealized swap of its last two axes, the tensor it swaps.
fn transposed_source(t: &Tensor) -> Option<Tensor> {
    if t.is_realized() {
        return None;
    }
    let any: &dyn Any = &t.0.op;
    let Some(Movement::Permute(perm)) = any.downcast_ref::<Movement>() else {
        return None;
    };
    let r = perm.len();
    let swaps_last_two = r >= 2
        && perm[r - 2] == r - 1
        && perm[r - 1] == r - 2
        && perm[..r - 2].iter().enumerate().all(|(i, &p)| i == p);
    if !swaps_last_two {
        return None;
    }
    t.0.inputs().first().cloned()
}

impl Tensor {
    /// Matrix product with NumPy semantics: batch dimensions broadcast; a 1-D operand is a
    /// vector (its dimension is added for the product and removed from the result).
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2], &Device::Cpu);
    /// let b = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2], &Device::Cpu);
    /// assert_eq!(a.matmul(&b).to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        if self.rank() == 0 || other.rank() == 0 {
            panic!(
                "matmul: operands must have at least one dimension, found {} and {}",
                self.shape(),
                other.shape()
            );
        }
        let a = if self.rank() == 1 { self.unsqueeze(0) } else { self.clone() };
        let b = if other.rank() == 1 { other.unsqueeze(-1) } else { other.clone() };
        let (a, ta) = match transposed_source(&a) {
            Some(src) => (src, true),
            None => (a, false),
        };
        let (b, tb) = match transposed_source(&b) {
            Some(src) => (src, true),
            None => (b, false),
        };
        // in an autocast scope, f32 operands are multiplied in f16 (cast where they are stored,
        // so a transposed operand is still read in place)
        let (a, b) = (crate::amp::narrow(&a), crate::amp::narrow(&b));
        let mut c = if a.rank() > 2 && b.rank() == 2 && !ta {
            // x (…, m, k) · W: one (rows, k) GEMM rather than a product per batch entry, so
            // that W's gradient is one GEMM too, not a batch of them summed afterwards
            let mut dims = a.dims().to_vec();
            let k = dims.pop().expect("rank > 2");
            let rows = dims.iter().product::<usize>();
            let c = Tensor::matmul_flags(&a.reshape([rows, k]), &b, false, tb);
            dims.push(c.dim(1));
            c.reshape(Shape::new(dims))
        } else {
            Tensor::matmul_flags(&a, &b, ta, tb)
        };
        if self.rank() == 1 {
            c = c.squeeze(-2);
        }
        if other.rank() == 1 {
            c = c.squeeze(-1);
        }
        c
    }

    /// If this tensor is a product Xᵀ·Y of two matrices (as a weight's gradient is): (X, Y). For
    /// autograd, which adds such gradients as one product of the stacked matrices.
    pub(crate) fn outer_product(&self) -> Option<(Tensor, Tensor)> {
        let op = (&self.0.op as &dyn std::any::Any).downcast_ref::<MatMul>()?;
        let inputs = self.0.inputs();
        let (x, y) = (inputs.first()?, inputs.get(1)?);
        (op.trans_a && !op.trans_b && x.rank() == 2 && y.rank() == 2).then(|| (x.clone(), y.clone()))
    }

    /// op(a)·op(b) where op transposes the last two axes when its flag is set.
    #[track_caller]
    pub(crate) fn matmul_flags(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Tensor {
        // a stored transpose read transposed is its input read as it is (the gradient products
        // of `x · w.t_stored()` read w itself, row by row)
        let unstore = |t: &Tensor, flag: bool| match t.stored_transpose_source() {
            Some(source) if flag => (source, false),
            _ => (t.clone(), flag),
        };
        let ((a, trans_a), (b, trans_b)) = (unstore(a, trans_a), unstore(b, trans_b));
        let (a, b) = (&a, &b);
        let describe = || {
            format!(
                "{}{} and {}{}",
                a.shape(),
                if trans_a { "ᵀ" } else { "" },
                b.shape(),
                if trans_b { "ᵀ" } else { "" }
            )
        };
        if a.rank() < 2 || b.rank() < 2 {
            panic!("matmul: operands {} need at least two dimensions", describe());
        }
        if a.dtype() != b.dtype() || !a.dtype().is_float() {
            panic!("matmul: operands must be the same float dtype, found {} and {}", a.dtype(), b.dtype());
        }
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) =
            if trans_a { (a.dims()[ra - 1], a.dims()[ra - 2]) } else { (a.dims()[ra - 2], a.dims()[ra - 1]) };
        let (k2, n) =
            if trans_b { (b.dims()[rb - 1], b.dims()[rb - 2]) } else { (b.dims()[rb - 2], b.dims()[rb - 1]) };
        if k != k2 {
            panic!("matmul: shapes {} do not chain (inner dimensions {k} and {k2})", describe());
        }
        let batch_a = Shape::new(a.dims()[..ra - 2].to_vec());
        let batch_b = Shape::new(b.dims()[..rb - 2].to_vec());
        let batch = Shape::try_broadcast(&batch_a, &batch_b)
            .unwrap_or_else(|| panic!("matmul: batch dimensions of {} cannot be broadcast", describe()));
        let mut dims = batch.dims().to_vec();
        dims.extend([m, n]);
        let (op, out) = (MatMul { trans_a, trans_b }, Shape::new(dims));
        if a.dtype() == DType::F16 && !op.walks_batch(a.shape(), b.shape(), &out) {
            // the kernel would copy the operands out first, which it does for 32-bit elements
            let (a, b) = (a.cast(DType::F32), b.cast(DType::F32));
            return Tensor::from_op(op, [a, b], out, DType::F32).cast(DType::F16);
        }
        Tensor::from_op(op, [a.clone(), b.clone()], out, a.dtype())
    }
}
