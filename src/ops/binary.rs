//! Elementwise binary ops with NumPy broadcasting: arithmetic rows in [`BINARY`], comparison rows
//! (which give bool tensors) in [`COMPARE`]. The kernel is `shaders/binary.wgsl`: a fast path
//! for operands of the output's shape and a strided path for broadcasts.

use super::fused::Step;
use super::unary::ACTIVATIONS;
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance};
use crate::backend::cpu::{CpuData, CpuStorage, PARALLEL_CHUNK};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::ops::layout::{MAX_RANK, collapse, offsets, pack, u32_of};
use crate::ops::wgsl::{GPU_TYPES, wgsl_type};
use crate::{DType, Result, Shape, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("binary.wgsl");

/// A binary row's CPU reference for floats: one loop over two slices per float type,
/// generated from one generic expression by the `zip!` macro below.
pub struct Zip {
    /// (a, b, out) for f32.
    pub f32: fn(&[f32], &[f32], &mut [f32]),
    /// (a, b, out) for f64.
    pub f64: fn(&[f64], &[f64], &mut [f64]),
    /// In place into a, (a, b), for f32.
    pub f32_in_place: fn(&mut [f32], &[f32]),
    /// In place into a, (a, b), for f64.
    pub f64_in_place: fn(&mut [f64], &[f64]),
}

/// `zip!(|a, b| expr)`: a [`Zip`] computing `expr` for every pair, generic over the float `T`.
macro_rules! zip {
    (|$a:ident, $b:ident| $body:expr) => {{
        #[inline(always)]
        fn each<T: Float>(xs: &[T], ys: &[T], out: &mut [T]) {
            for ((o, &$a), &$b) in out.iter_mut().zip(xs).zip(ys) {
                *o = $body;
            }
        }
        #[inline(always)]
        fn each_in_place<T: Float>(xs: &mut [T], ys: &[T]) {
            for (x, &$b) in xs.iter_mut().zip(ys) {
                let $a = *x;
                *x = $body;
            }
        }
        // compiled for the widest vectors, as the unary rows: `gelu_grad`'s branch-free `erf`
        // and `exp` vectorize only with AVX
        crate::backend::cpu_vector::widest! {
            fn apply<T: Float>(xs: &[T], ys: &[T], out: &mut [T]) = each
        }
        crate::backend::cpu_vector::widest! {
            fn in_place<T: Float>(xs: &mut [T], ys: &[T]) = each_in_place
        }
        Zip {
            f32: apply::<f32>,
            f64: apply::<f64>,
            f32_in_place: in_place::<f32>,
            f64_in_place: in_place::<f64>,
        }
    }};
}

/// The gradient rule of a binary row: (a, b, y, upstream gradient) → (dL/da, dL/db), both of the
/// output's shape (the caller sums them back to the operand shapes).
type GradRule = fn(&Tensor, &Tensor, &Tensor, &Tensor) -> (Tensor, Tensor);

/// One elementwise binary arithmetic function.
pub struct BinaryFn {
    /// The op's name.
    pub name: &'static str,
    /// The CPU reference for floats, over slices of equal length.
    pub float: Zip,
    /// The CPU reference for integers, in i64 (`None`: floats only).
    pub int: Option<fn(i64, i64) -> i64>,
    /// The WGSL expression in `a` and `b`.
    pub wgsl: &'static str,
    grad: GradRule,
    /// Cross-check tolerance (relative).
    pub tolerance: f64,
}

/// The arithmetic rows.
pub static BINARY: &[BinaryFn] = &[
    BinaryFn {
        name: "add",
        float: zip!(|a, b| a + b),
        int: Some(|a, b| a.wrapping_add(b)),
        wgsl: "a + b",
        grad: |_, _, _, g| (g.clone(), g.clone()),
        tolerance: 1e-6,
    },
    BinaryFn {
        name: "sub",
        float: zip!(|a, b| a - b),
        int: Some(|a, b| a.wrapping_sub(b)),
        wgsl: "a - b",
        grad: |_, _, _, g| (g.clone(), -g),
        tolerance: 1e-6,
    },
    BinaryFn {
        name: "mul",
        float: zip!(|a, b| a * b),
        int: Some(|a, b| a.wrapping_mul(b)),
        wgsl: "a * b",
        // ∂(ab)/∂a = b, ∂(ab)/∂b = a
        grad: |a, b, _, g| (g * b, g * a),
        tolerance: 1e-6,
    },
    BinaryFn {
        name: "div",
        float: zip!(|a, b| a / b),
        int: None,
        wgsl: "a / b",
        // ∂(a/b)/∂a = 1/b, ∂(a/b)/∂b = -a/b² = -y/b
        grad: |_, b, y, g| (g / b, -(g * y / b)),
        tolerance: 1e-6,
    },
    BinaryFn {
        name: "pow",
        float: zip!(|a, b| a.powf(b)),
        int: None,
        wgsl: "pow(a, b)",
        // ∂aᵇ/∂a = b·aᵇ⁻¹, ∂aᵇ/∂b = aᵇ·ln a
        grad: |a, b, y, g| (g * b * a.pow(&(b - 1.0)), g * y * a.log()),
        tolerance: 1e-5,
    },
    BinaryFn {
        name: "maximum",
        float: zip!(|a, b| a.max(b)),
        int: Some(|a, b| a.max(b)),
        wgsl: "max(a, b)",
        // the gradient goes to the larger operand (to `a` on ties)
        grad: |a, b, _, g| {
            let to_a = a.ge(b).cast(g.dtype());
            (g * &to_a, g * (1.0 - to_a))
        },
        tolerance: 1e-6,
    },
    BinaryFn {
        name: "minimum",
        float: zip!(|a, b| a.min(b)),
        int: Some(|a, b| a.min(b)),
        wgsl: "min(a, b)",
        // the gradient goes to the smaller operand (to `a` on ties)
        grad: |a, b, _, g| {
            let to_a = a.le(b).cast(g.dtype());
            (g * &to_a, g * (1.0 - to_a))
        },
        tolerance: 1e-6,
    },
    BinaryFn {
        name: "relu_grad",
        float: zip!(|a, b| if b > T::ZERO { a } else { T::ZERO }),
        int: None,
        wgsl: "select(0.0, a, b > 0.0)",
        // ∂/∂a = [b > 0]; b only selects, so its derivative is 0 wherever it exists
        grad: |_, b, _, g| (g.relu_grad(b), g.zeros_like()),
        tolerance: 0.0,
    },
    BinaryFn {
        name: "gelu_grad",
        float: zip!(|a, b| a * gelu_slope(b)),
        int: None,
        wgsl: "a * gelu_slope(b)",
        // with s(b) = Φ(b) + bφ(b): ∂/∂a = s(b), ∂/∂b = a·s′(b) = a·(2φ(b) + bφ′(b)) = a·φ(b)·(2 − b²)
        grad: |a, b, _, g| {
            let b2 = b.square();
            let pdf = (&b2 * -0.5).exp() * (1.0 / (2.0 * std::f64::consts::PI).sqrt());
            (g.gelu_grad(b), g * a * pdf * (2.0 - b2))
        },
        // erf and exp are approximations on both sides, a few ulps each
        tolerance: 1e-5,
    },
];

/// GELU's slope d/dx xΦ(x) = Φ(x) + xφ(x), with the branch-free `erf` and `exp` that vectorize.
#[inline(always)]
fn gelu_slope<T: Float>(x: T) -> T {
    let cdf = T::of(0.5) * (T::ONE + (x * T::of(std::f64::consts::FRAC_1_SQRT_2)).erf());
    let pdf = (T::of(-0.5) * x * x).exp_fast() * T::of(0.398_942_280_401_432_7); // 1/√(2π)
    cdf + x * pdf
}

/// One comparison.
pub struct CompareFn {
    /// The op's name.
    pub name: &'static str,
    /// The CPU reference.
    pub cpu: fn(f64, f64) -> bool,
    /// The WGSL boolean expression in `a` and `b`.
    pub wgsl: &'static str,
}

/// The comparison rows.
pub static COMPARE: &[CompareFn] = &[
    CompareFn { name: "eq", cpu: |a, b| a == b, wgsl: "a == b" },
    CompareFn { name: "ne", cpu: |a, b| a != b, wgsl: "a != b" },
    CompareFn { name: "lt", cpu: |a, b| a < b, wgsl: "a < b" },
    CompareFn { name: "le", cpu: |a, b| a <= b, wgsl: "a <= b" },
    CompareFn { name: "gt", cpu: |a, b| a > b, wgsl: "a > b" },
    CompareFn { name: "ge", cpu: |a, b| a >= b, wgsl: "a >= b" },
];

/// What a binary node computes.
#[derive(Clone, Copy)]
enum Func {
    Arith(&'static BinaryFn),
    Compare(&'static CompareFn),
}

/// A binary row applied with broadcasting.
pub(crate) struct Binary {
    f: Func,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    rank: u32,
    _pad: [u32; 2],
    shape: [u32; MAX_RANK],
    a_strides: [u32; MAX_RANK],
    b_strides: [u32; MAX_RANK],
}

impl Op for Binary {
    fn name(&self) -> &'static str {
        match self.f {
            Func::Arith(f) => f.name,
            Func::Compare(f) => f.name,
        }
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        let (a, b) = (&args[0], &args[1]);
        let data = match (self.f, a.data.data(), b.data.data()) {
            (Func::Compare(f), _, _) => {
                let (x, y) = (a.data.to_f64_vec(), b.data.to_f64_vec());
                CpuData::Bool(
                    Broadcast { a: a.shape, b: b.shape, out: out.shape, x: &x[..], y: &y[..] }
                        .map(|p, q| (f.cpu)(p, q)),
                )
            }
            (Func::Arith(f), CpuData::F32(x), CpuData::F32(y)) => {
                CpuData::F32(zip_broadcast(f.float.f32, x, a.shape, y, b.shape, out.shape))
            }
            (Func::Arith(f), CpuData::F64(x), CpuData::F64(y)) => {
                CpuData::F64(zip_broadcast(f.float.f64, x, a.shape, y, b.shape, out.shape))
            }
            (Func::Arith(f), CpuData::I32(x), CpuData::I32(y)) => {
                let op = f.int.expect("checked when recorded");
                CpuData::I32(
                    Broadcast { a: a.shape, b: b.shape, out: out.shape, x: &x[..], y: &y[..] }
                        .map(|p, q| op(p as i64, q as i64) as i32),
                )
            }
            (Func::Arith(f), CpuData::U32(x), CpuData::U32(y)) => {
                let op = f.int.expect("checked when recorded");
                CpuData::U32(
                    Broadcast { a: a.shape, b: b.shape, out: out.shape, x: &x[..], y: &y[..] }
                        .map(|p, q| op(p as i64, q as i64) as u32),
                )
            }
            _ => unreachable!("operand dtypes are checked when the op is recorded"),
        };
        CpuStorage::new(data)
    }

    fn cpu_in_place(&self, inout: &mut CpuStorage, others: &[CpuArg], out: &Meta) -> bool {
        let Func::Arith(f) = self.f else { return false };
        let b = &others[0];
        match (inout.data_mut(), b.data.data()) {
            (CpuData::F32(x), CpuData::F32(y)) => {
                zip_in_place(f.float.f32_in_place, x, y, b.shape, out.shape)
            }
            (CpuData::F64(x), CpuData::F64(y)) => {
                zip_in_place(f.float.f64_in_place, x, y, b.shape, out.shape)
            }
            _ => return false,
        }
        true
    }

    fn elementwise(&self) -> Option<Step> {
        match self.f {
            Func::Arith(f) => Some(Step::Binary(f)),
            Func::Compare(_) => None,
        }
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let name = self.name();
        let n = u32_of(name, out.shape.numel())?;
        let y = rec.alloc_elems(n as usize)?;
        let (a, b) = (&args[0], &args[1]);
        let same = a.shape == out.shape && b.shape == out.shape;
        let kernel = kernel(self.f, a.dtype, same);
        let a_strides = a.shape.broadcast_strides(out.shape);
        let b_strides = b.shape.broadcast_strides(out.shape);
        let (shape, strides) = collapse(out.shape.dims(), &[a_strides, b_strides]);
        let params = Params {
            n,
            rank: shape.len() as u32,
            _pad: [0; 2],
            shape: pack(name, &shape, 1)?,
            a_strides: pack(name, &strides[0], 0)?,
            b_strides: pack(name, &strides[1], 0)?,
        };
        rec.dispatch(&kernel, &params, &[a.buf, b.buf], &[&y], Grid::Linear(n.div_ceil(256)))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let Func::Arith(f) = self.f else {
            return vec![None, None];
        };
        let (a, b) = (&g.inputs[0], &g.inputs[1]);
        let (da, db) = (f.grad)(a, b, g.output, g.grad);
        vec![Some(da.sum_to(a.shape())), Some(db.sum_to(b.shape()))]
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        match self.f {
            Func::Arith(f) => Tolerance::Rounding { floor: f.tolerance, terms: 1 },
            Func::Compare(_) => Tolerance::Exact,
        }
    }
}

/// How an operand is read along the output's rows of `len` elements.
struct RowRead {
    len: usize,
    kind: ReadKind,
}

enum ReadKind {
    /// The operand has the output's shape: row r is its elements r·len .. (r + 1)·len.
    Whole,
    /// Row r reads `len` contiguous operand elements from `starts[r]`: the operand matches the
    /// output's innermost dimensions (a bias against a batch of rows: every start 0; a (B, 1, H)
    /// query against (B, S, H) keys: start b·H for rows b·S .. (b + 1)·S).
    Rows(Vec<usize>),
    /// Row r reads the one operand element `starts[r]`, repeated: the operand has size 1 in the
    /// output's innermost dimensions (a (C, 1, 1) bias against (N, C, H, W)).
    Splat(Vec<usize>),
}

impl RowRead {
    /// Rows of up to `PARALLEL_CHUNK` elements of an operand of the output's shape.
    fn whole(n: usize) -> RowRead {
        RowRead::whole_rows(PARALLEL_CHUNK.min(n.max(1)))
    }

    /// Rows of `len` elements of an operand of the output's shape.
    fn whole_rows(len: usize) -> RowRead {
        RowRead { len, kind: ReadKind::Whole }
    }

    fn is_whole(&self) -> bool {
        matches!(self.kind, ReadKind::Whole)
    }

    /// How operand shape `s` broadcast against `out` is read, if its contiguous or repeated runs
    /// are long enough (16 elements) for a call per row to be worth it.
    fn broadcast(s: &Shape, out: &Shape) -> Option<RowRead> {
        let n = out.numel();
        if s.numel() == 1 && n >= 16 {
            // one element against everything (a gradient times its clipping scale): rows of a
            // parallel chunk, all reading element 0
            let len = PARALLEL_CHUNK.min(n);
            return Some(RowRead { len, kind: ReadKind::Splat(vec![0; n.div_ceil(len)]) });
        }
        let lead = out.rank() - s.rank();
        let dims = out.dims();
        // the first axis from which the operand's dimensions are all the output's (`Rows`) or all 1 (`Splat`)
        let first_axis = |same: &dyn Fn(usize, usize) -> bool| {
            let mut axis = out.rank();
            while axis > lead && same(s.dims()[axis - lead - 1], dims[axis - 1]) {
                axis -= 1;
            }
            axis
        };
        let strides = s.broadcast_strides(out);
        let starts = |axis: usize| offsets(&dims[..axis], &strides[..axis], 0).collect();
        let matching = first_axis(&|a, b| a == b);
        let len: usize = dims[matching..].iter().product();
        if len >= 16 {
            return Some(RowRead { len, kind: ReadKind::Rows(starts(matching)) });
        }
        let repeated = first_axis(&|a, _| a == 1);
        let len: usize = dims[repeated..].iter().product();
        (len >= 16).then(|| RowRead { len, kind: ReadKind::Splat(starts(repeated)) })
    }

    /// The operand's elements for the output elements `at .. at + len` (within one row), read
    /// from `v`, or written into `scratch` when repeated.
    fn row<'a, T: Float>(&self, v: &'a [T], at: usize, len: usize, scratch: &'a mut Vec<T>) -> &'a [T] {
        match &self.kind {
            ReadKind::Whole => &v[at..at + len],
            ReadKind::Rows(starts) => &v[starts[at / self.len]..][..len],
            ReadKind::Splat(starts) => {
                scratch.clear();
                scratch.resize(len, v[starts[at / self.len]]);
                scratch
            }
        }
    }
}

/// What [`for_each_row`] calls per row: (first index, row, scratch buffers).
type RowFn<'a, T> = dyn Fn(usize, &mut [T], &mut [Vec<T>; 2]) + Sync + 'a;

/// Calls `g(at, row, scratch)` for the rows of `len` elements of `o` (`at`: the row's first
/// index), in parallel over chunks of about `PARALLEL_CHUNK` elements, each chunk with two
/// scratch buffers for repeated operands.
fn for_each_row<T: Float>(o: &mut [T], len: usize, g: &RowFn<'_, T>) {
    let chunk = (PARALLEL_CHUNK / len).max(1) * len;
    let run = |start: usize, part: &mut [T]| {
        let mut scratch = [Vec::new(), Vec::new()];
        for (r, row) in part.chunks_mut(len).enumerate() {
            g(start + r * len, row, &mut scratch);
        }
    };
    if o.len() <= chunk {
        run(0, o);
    } else {
        o.par_chunks_mut(chunk).enumerate().for_each(|(c, part)| run(c * chunk, part));
    }
}

/// Operand `v` of shape `s` broadcast to `out`, expanded to the output's shape.
fn expand<T: Float>(v: &[T], s: &Shape, out: &Shape) -> Vec<T> {
    offsets(out.dims(), &s.broadcast_strides(out), 0).map(|i| v[i]).collect()
}

/// `f` over two broadcast operands. When one operand has the output's shape and the other is
/// read in rows ([`RowRead::broadcast`]), `f` runs row by row; other broadcasts are expanded
/// first.
fn zip_broadcast<T: Float>(
    f: fn(&[T], &[T], &mut [T]),
    x: &[T],
    xs: &Shape,
    y: &[T],
    ys: &Shape,
    out: &Shape,
) -> Vec<T> {
    let n = out.numel();
    let mut o = cpu_pool::for_overwrite::<T>(n);
    let read = |s: &Shape| if s == out { Some(RowRead::whole(n)) } else { RowRead::broadcast(s, out) };
    let (x_full, y_full);
    let (x, xr, y, yr) = match (read(xs), read(ys)) {
        (Some(a), Some(b)) if a.is_whole() => (x, RowRead::whole_rows(b.len), y, b),
        (Some(a), Some(b)) if b.is_whole() => {
            let len = a.len;
            (x, a, y, RowRead::whole_rows(len))
        }
        _ => {
            x_full = (xs != out).then(|| expand(x, xs, out));
            y_full = (ys != out).then(|| expand(y, ys, out));
            let (x, y) = (x_full.as_deref().unwrap_or(x), y_full.as_deref().unwrap_or(y));
            (x, RowRead::whole(n), y, RowRead::whole(n))
        }
    };
    for_each_row(&mut o, xr.len, &|at, row, [sx, sy]| {
        f(xr.row(x, at, row.len(), sx), yr.row(y, at, row.len(), sy), row)
    });
    o
}

/// `f` into `x` (of the output's shape) with `y` broadcast against it: row by row when `y` is
/// read in rows ([`RowRead::broadcast`]), else `y` expanded first.
fn zip_in_place<T: Float>(f: fn(&mut [T], &[T]), x: &mut [T], y: &[T], ys: &Shape, out: &Shape) {
    let n = x.len();
    let y_full;
    let (y, yr) = match if ys == out { Some(RowRead::whole(n)) } else { RowRead::broadcast(ys, out) } {
        Some(r) => (y, r),
        None => {
            y_full = expand(y, ys, out);
            (&y_full[..], RowRead::whole(n))
        }
    };
    for_each_row(x, yr.len, &|at, row, [_, scratch]| f(row, yr.row(y, at, row.len(), scratch)));
}

/// Two operands read with broadcasting over an output shape (CPU).
pub(crate) struct Broadcast<'a, A, B> {
    pub a: &'a Shape,
    pub b: &'a Shape,
    pub out: &'a Shape,
    pub x: &'a [A],
    pub y: &'a [B],
}

impl<A: Copy + Sync, B: Copy + Sync> Broadcast<'_, A, B> {
    /// `f` applied to each pair of broadcast elements, in the output's row-major order.
    pub fn map<R: Send>(&self, f: impl Fn(A, B) -> R + Sync) -> Vec<R> {
        use rayon::prelude::*;
        let (x, y) = (self.x, self.y);
        if self.a == self.out && self.b == self.out {
            if x.len() >= 1 << 15 {
                return x.par_iter().zip(y).map(|(&p, &q)| f(p, q)).collect();
            }
            return x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect();
        }
        if self.a == self.out && y.len() == 1 {
            return x.iter().map(|&p| f(p, y[0])).collect();
        }
        let ia = offsets(self.out.dims(), &self.a.broadcast_strides(self.out), 0);
        let ib = offsets(self.out.dims(), &self.b.broadcast_strides(self.out), 0);
        ia.zip(ib).map(|(i, j)| f(x[i], y[j])).collect()
    }
}

/// The kernel for `f` on operands of `dtype`: the fast path when both operands have the
/// output's shape, the broadcasting path otherwise.
fn kernel(f: Func, dtype: DType, same_shape: bool) -> Kernel<'static> {
    let (expr, result) = match f {
        Func::Arith(f) => (f.wgsl.to_string(), wgsl_type(dtype)),
        Func::Compare(f) => (format!("select(0u, 1u, {})", f.wgsl), "u32"),
    };
    Kernel::new(&SHADER, if same_shape { "same_shape" } else { "broadcast" }, 2, 1)
        .with_library(&ACTIVATIONS)
        .with("alias T = f32; // @T", format!("alias T = {};", wgsl_type(dtype)))
        .with("alias R = f32; // @R", format!("alias R = {result};"))
        .with("return a + b; // @expr", format!("return {expr};"))
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let mut all = Vec::new();
    for same in [true, false] {
        for f in BINARY {
            all.push(kernel(Func::Arith(f), DType::F32, same));
            if f.int.is_some() {
                all.push(kernel(Func::Arith(f), DType::I32, same));
                all.push(kernel(Func::Arith(f), DType::U32, same));
            }
        }
        for f in COMPARE {
            for dtype in GPU_TYPES {
                all.push(kernel(Func::Compare(f), dtype, same));
            }
        }
    }
    all
}

impl Tensor {
    /// Records a binary node after checking dtypes and broadcasting the shapes.
    #[track_caller]
    fn binary(&self, other: &Tensor, f: Func) -> Tensor {
        let op = Binary { f };
        let name = op.name();
        let (a, b) = (self.dtype(), other.dtype());
        if a != b && a.is_float() && b.is_float() && (a == DType::F16 || b == DType::F16) {
            // f16 with a wider float computes in the wider one, as PyTorch promotes
            let wide = if a == DType::F16 { b } else { a };
            return self.cast(wide).binary(&other.cast(wide), f);
        }
        if self.dtype() != other.dtype() {
            panic!(
                "{name}: operands have different dtypes ({} and {}); convert one with .cast()",
                self.dtype(),
                other.dtype()
            );
        }
        let dtype = match f {
            Func::Arith(row) => {
                let ok = self.dtype().is_float() || (self.dtype().is_index() && row.int.is_some());
                if !ok {
                    panic!("{name}: not defined for {} tensors", self.dtype());
                }
                self.dtype()
            }
            Func::Compare(_) => DType::Bool,
        };
        let shape = Shape::broadcast(name, self.shape(), other.shape());
        Tensor::from_op(op, [self.clone(), other.clone()], shape, dtype)
    }

    #[track_caller]
    fn arith(&self, other: &Tensor, name: &str) -> Tensor {
        let row = BINARY.iter().find(|r| r.name == name).expect("a BINARY row");
        self.binary(other, Func::Arith(row))
    }

    #[track_caller]
    fn compare(&self, other: &Tensor, name: &str) -> Tensor {
        let row = COMPARE.iter().find(|r| r.name == name).expect("a COMPARE row");
        self.binary(other, Func::Compare(row))
    }

    /// If this tensor is a product `a * b` of two tensors of its shape (no broadcasting): the
    /// ids of a and b. For the realizer, which computes some such products in the kernel of a
    /// sibling (`graph/siblings.rs`).
    pub(crate) fn same_shape_product(&self) -> Option<(u64, u64)> {
        let op = (&self.0.op as &dyn std::any::Any).downcast_ref::<Binary>()?;
        let inputs = self.0.inputs();
        let [a, b] = &inputs[..] else { return None };
        let same = a.shape() == self.shape() && b.shape() == self.shape();
        (op.name() == "mul" && same).then(|| (a.id(), b.id()))
    }

    /// A rank-0 tensor holding `value` in this tensor's dtype and device.
    #[track_caller]
    fn scalar_like(&self, value: f64) -> Tensor {
        Tensor::full(Shape::scalar(), value, self.dtype(), &self.device())
    }
}

/// Defines broadcasting `Tensor` methods for rows.
macro_rules! binary_methods {
    ($kind:ident: $($method:ident => $name:literal: $doc:literal),* $(,)?) => {
        impl Tensor {
            $(
                #[doc = $doc]
                #[track_caller]
                pub fn $method(&self, other: &Tensor) -> Tensor {
                    self.$kind(other, $name)
                }
            )*
        }
    };
}

binary_methods! { arith:
    add => "add": "a + b, broadcasting.",
    sub => "sub": "a − b, broadcasting.",
    mul => "mul": "a · b, broadcasting.",
    div => "div": "a / b, broadcasting.",
    pow => "pow": "aᵇ, broadcasting.",
    maximum => "maximum": "The larger of a and b, broadcasting.",
    minimum => "minimum": "The smaller of a and b, broadcasting.",
    relu_grad => "relu_grad": "The gradient `a` through a ReLU whose input was `b`: `a` where `b > 0`, else 0 \
        (PyTorch's `threshold_backward`), broadcasting. One pass, where `a * b.gt_scalar(0.0).cast(..)` \
        takes three and two full-size temporaries.",
    gelu_grad => "gelu_grad": "The gradient `a` through an exact GELU whose input was `b`: `a·(Φ(b) + b·φ(b))`, \
        broadcasting. One pass, where composing it from `erf`, `exp` and products takes eleven.",
}

binary_methods! { compare:
    eq => "eq": "a == b as a bool tensor, broadcasting.",
    ne => "ne": "a != b as a bool tensor, broadcasting.",
    lt => "lt": "a < b as a bool tensor, broadcasting.",
    le => "le": "a <= b as a bool tensor, broadcasting.",
    gt => "gt": "a > b as a bool tensor, broadcasting.",
    ge => "ge": "a >= b as a bool tensor, broadcasting.",
}

impl Tensor {
    /// x == value, elementwise.
    #[track_caller]
    pub fn eq_scalar(&self, value: f64) -> Tensor {
        self.eq(&self.scalar_like(value))
    }

    /// x > value, elementwise.
    #[track_caller]
    pub fn gt_scalar(&self, value: f64) -> Tensor {
        self.gt(&self.scalar_like(value))
    }

    /// x >= value, elementwise.
    #[track_caller]
    pub fn ge_scalar(&self, value: f64) -> Tensor {
        self.ge(&self.scalar_like(value))
    }

    /// x < value, elementwise.
    #[track_caller]
    pub fn lt_scalar(&self, value: f64) -> Tensor {
        self.lt(&self.scalar_like(value))
    }

    /// x <= value, elementwise.
    #[track_caller]
    pub fn le_scalar(&self, value: f64) -> Tensor {
        self.le(&self.scalar_like(value))
    }
}

/// `tensor op tensor` for every mix of owned and borrowed operands.
macro_rules! tensor_ops {
    ($($trait:ident $method:ident => $name:literal),*) => {$(
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor { self.arith(rhs, $name) }
        }
        impl std::ops::$trait<Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor { self.arith(&rhs, $name) }
        }
        impl std::ops::$trait<&Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor { self.arith(rhs, $name) }
        }
        impl std::ops::$trait<Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor { self.arith(&rhs, $name) }
        }
    )*};
}
tensor_ops!(Add add => "add", Sub sub => "sub", Mul mul => "mul", Div div => "div");
