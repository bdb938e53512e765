//! Elementwise unary ops, one row each in [`UNARY`]: the name, the CPU reference (computed in
//! f64), the WGSL expression spliced into `shaders/unary.wgsl`, and the gradient rule.
//!
//! Scalar arithmetic (`x * 2.0`, `1.0 - x`, `x.powf(3.0)`) is here too: a row with parameters
//! `a` and `b`, so it costs one dispatch and no scalar tensor.

use super::fused::Step;
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance};
use crate::backend::cpu::{CpuData, CpuStorage, PARALLEL_CHUNK};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::ops::layout::u32_of;
use crate::{Result, Tensor};
use rayon::prelude::*;
use std::f64::consts::FRAC_2_SQRT_PI;

static SHADER: Shader = shader!("unary.wgsl");
/// The library of shared activations (sigmoid, tanh) that the unary and recurrent kernels use.
pub(crate) static ACTIVATIONS: Shader = shader!("activations.wgsl");

/// A unary row's CPU reference: one loop over a slice per float type, generated from one
/// generic expression by the `map!` macro below, so that it is inlined and, where it can be,
/// vectorized.
pub struct Map {
    /// (input, output, a, b) for f32.
    pub f32: fn(&[f32], &mut [f32], f32, f32),
    /// (input, output, a, b) for f64.
    pub f64: fn(&[f64], &mut [f64], f64, f64),
    /// In place, (values, a, b), for f32.
    pub f32_in_place: fn(&mut [f32], f32, f32),
    /// In place, (values, a, b), for f64.
    pub f64_in_place: fn(&mut [f64], f64, f64),
}

/// `map!(|x, a, b| expr)`: a [`Map`] computing `expr` for every `x`, generic over the float
/// type `T` (write constants as `T::of(0.5)`).
macro_rules! map {
    (|$x:ident, $a:ident, $b:ident| $body:expr) => {{
        #[allow(unused_variables)]
        #[inline(always)]
        fn each<T: Float>(xs: &[T], out: &mut [T], $a: T, $b: T) {
            for (o, &$x) in out.iter_mut().zip(xs) {
                *o = $body;
            }
        }
        #[allow(unused_variables)]
        #[inline(always)]
        fn each_in_place<T: Float>(values: &mut [T], $a: T, $b: T) {
            for v in values.iter_mut() {
                let $x = *v;
                *v = $body;
            }
        }
        // the branch-free approximations (`erf_f32`, `exp_fast`, …) vectorize only with AVX
        crate::backend::cpu_vector::widest! {
            fn apply<T: Float>(xs: &[T], out: &mut [T], a: T, b: T) = each
        }
        crate::backend::cpu_vector::widest! {
            fn in_place<T: Float>(values: &mut [T], a: T, b: T) = each_in_place
        }
        Map {
            f32: apply::<f32>,
            f64: apply::<f64>,
            f32_in_place: in_place::<f32>,
            f64_in_place: in_place::<f64>,
        }
    }};
}

/// The gradient rule of a unary row: (x, y = f(x), upstream gradient, a, b) → dL/dx.
type GradRule = fn(&Tensor, &Tensor, &Tensor, f64, f64) -> Tensor;

/// One elementwise unary function.
pub struct UnaryFn {
    /// The op's name.
    pub name: &'static str,
    /// The CPU reference over slices, for f32 and f64: (x, a, b) → y elementwise.
    pub cpu: Map,
    /// The WGSL expression in `x`, `a` and `b` (f32).
    pub wgsl: &'static str,
    /// The gradient rule, in tensor ops; `None` for piecewise-constant functions (gradient 0).
    grad: Option<GradRule>,
    /// Cross-check tolerance (relative): f32 transcendentals differ by a few ulps between the
    /// GPU and the CPU reference, which computes in f64.
    pub tolerance: f64,
}

const EXACT: f64 = 1e-6;
const TRANSCENDENTAL: f64 = 1e-5;

/// The op's rows. A new elementwise op is one more row (and one case-table row).
pub static UNARY: &[UnaryFn] = &[
    UnaryFn {
        name: "neg",
        cpu: map!(|x, a, b| -x),
        wgsl: "-x",
        grad: Some(|_, _, g, _, _| -g),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "exp",
        cpu: map!(|x, a, b| x.exp()),
        wgsl: "exp(x)",
        // d/dx eˣ = eˣ
        grad: Some(|_, y, g, _, _| g * y),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "log",
        cpu: map!(|x, a, b| x.ln()),
        wgsl: "log(x)",
        // d/dx ln x = 1/x
        grad: Some(|x, _, g, _, _| g / x),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "sqrt",
        cpu: map!(|x, a, b| x.sqrt()),
        wgsl: "sqrt(x)",
        // d/dx √x = 1 / (2√x)
        grad: Some(|_, y, g, _, _| g * 0.5 / y),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "rsqrt",
        cpu: map!(|x, a, b| T::ONE / x.sqrt()),
        wgsl: "inverseSqrt(x)",
        // d/dx x^(-1/2) = -x^(-3/2) / 2 = -y³ / 2
        grad: Some(|_, y, g, _, _| g * y.powf(3.0) * -0.5),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "abs",
        cpu: map!(|x, a, b| x.abs()),
        wgsl: "abs(x)",
        // d/dx |x| = sign x
        grad: Some(|x, _, g, _, _| g * x.sign()),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "sign",
        cpu: map!(|x, a, b| sign(x)),
        wgsl: "sign(x)",
        // piecewise constant: the gradient is 0 wherever it exists
        grad: None,
        tolerance: EXACT,
    },
    UnaryFn {
        name: "sin",
        cpu: map!(|x, a, b| x.sin()),
        wgsl: "sin(x)",
        // d/dx sin = cos
        grad: Some(|x, _, g, _, _| g * x.cos()),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "cos",
        cpu: map!(|x, a, b| x.cos()),
        wgsl: "cos(x)",
        // d/dx cos = -sin
        grad: Some(|x, _, g, _, _| -(g * x.sin())),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "tanh",
        cpu: map!(|x, a, b| x.tanh()),
        wgsl: "tanh_stable(x)",
        // d/dx tanh = 1 - y²
        grad: Some(|_, y, g, _, _| g * (1.0 - y.square())),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "sigmoid",
        cpu: map!(|x, a, b| sigmoid(x)),
        wgsl: "sigmoid(x)",
        // d/dx σ = σ(1 - σ)
        grad: Some(|_, y, g, _, _| g * y * (1.0 - y)),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "relu",
        cpu: map!(|x, a, b| if x > T::ZERO { x } else { T::ZERO }),
        wgsl: "max(x, 0.0)",
        // d/dx relu = [x > 0]
        grad: Some(|x, _, g, _, _| g.relu_grad(x)),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "leaky_relu",
        cpu: map!(|x, a, b| if x > T::ZERO { x } else { a * x }),
        wgsl: "select(a * x, x, x > 0.0)",
        // d/dx = 1 where x > 0, a elsewhere: a + (1 - a)·[x > 0]
        grad: Some(|x, _, g, a, _| g * (x.gt_scalar(0.0).cast(g.dtype()) * (1.0 - a) + a)),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "elu",
        cpu: map!(|x, a, b| if x > T::ZERO { x } else { a * x.exp_m1() }),
        wgsl: "select(a * expm1(x), x, x > 0.0)",
        // d/dx = 1 where x > 0, y + a elsewhere
        grad: Some(|x, y, g, a, _| x.gt_scalar(0.0).where_(g, &(g * (y + a)))),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "gelu",
        cpu: map!(|x, a, b| T::of(0.5) * x * (T::ONE + (x * T::of(std::f64::consts::FRAC_1_SQRT_2)).erf())),
        wgsl: "0.5 * x * (1.0 + erf(x * 0.7071067811865476))",
        // d/dx xΦ(x) = Φ(x) + xφ(x)
        grad: Some(|x, _, g, _, _| g.gelu_grad(x)),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "gelu_tanh",
        cpu: map!(|x, a, b| T::of(0.5)
            * x
            * (T::ONE + (T::of(GELU_K) * (x + T::of(0.044715) * x * x * x)).tanh())),
        wgsl: "0.5 * x * (1.0 + tanh_stable(0.7978845608028654 * (x + 0.044715 * x * x * x)))",
        // with u = k(x + 0.044715x³), t = tanh u: d/dx = (1 + t)/2 + x(1 - t²)·k(1 + 3·0.044715x²)/2
        grad: Some(|x, _, g, _, _| {
            let x2 = x.square();
            let t = ((x + x * &x2 * 0.044715f64) * GELU_K).tanh();
            let du = (x2 * (3.0 * 0.044715) + 1.0) * GELU_K;
            g * ((&t + 1.0) * 0.5 + x * (1.0 - t.square()) * du * 0.5)
        }),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "silu",
        cpu: map!(|x, a, b| x * sigmoid(x)),
        wgsl: "x * sigmoid(x)",
        // d/dx xσ(x) = σ(1 + x(1 - σ))
        grad: Some(|x, _, g, _, _| {
            let s = x.sigmoid();
            g * &s * (x * (1.0 - &s) + 1.0)
        }),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "softplus",
        cpu: map!(|x, a, b| x.max(T::ZERO) + (-x.abs()).exp().ln_1p()),
        wgsl: "max(x, 0.0) + log1p(exp(-abs(x)))",
        // d/dx ln(1 + eˣ) = σ(x)
        grad: Some(|x, _, g, _, _| g * x.sigmoid()),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "square",
        cpu: map!(|x, a, b| x * x),
        wgsl: "x * x",
        // d/dx x² = 2x
        grad: Some(|x, _, g, _, _| g * x * 2.0),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "reciprocal",
        cpu: map!(|x, a, b| T::ONE / x),
        wgsl: "1.0 / x",
        // d/dx 1/x = -1/x² = -y²
        grad: Some(|_, y, g, _, _| -(g * y.square())),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "erf",
        cpu: map!(|x, a, b| x.erf()),
        wgsl: "erf(x)",
        // d/dx erf = 2/√π · e^(-x²)
        grad: Some(|x, _, g, _, _| g * (-x.square()).exp() * FRAC_2_SQRT_PI),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "floor",
        cpu: map!(|x, a, b| x.floor()),
        wgsl: "floor(x)",
        // piecewise constant: the gradient is 0 wherever it exists
        grad: None,
        tolerance: EXACT,
    },
    UnaryFn {
        name: "ceil",
        cpu: map!(|x, a, b| x.ceil()),
        wgsl: "ceil(x)",
        // piecewise constant: the gradient is 0 wherever it exists
        grad: None,
        tolerance: EXACT,
    },
    UnaryFn {
        name: "round",
        cpu: map!(|x, a, b| x.round_even()),
        wgsl: "round(x)",
        // piecewise constant: the gradient is 0 wherever it exists
        grad: None,
        tolerance: EXACT,
    },
    UnaryFn {
        name: "add_scalar",
        cpu: map!(|x, a, b| x + a),
        wgsl: "x + a",
        grad: Some(|_, _, g, _, _| g.clone()),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "mul_scalar",
        cpu: map!(|x, a, b| x * a),
        wgsl: "x * a",
        grad: Some(|_, _, g, a, _| g * a),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "rsub_scalar",
        cpu: map!(|x, a, b| a - x),
        wgsl: "a - x",
        grad: Some(|_, _, g, _, _| -g),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "rdiv_scalar",
        cpu: map!(|x, a, b| a / x),
        wgsl: "a / x",
        // d/dx a/x = -a/x² = -y/x
        grad: Some(|x, y, g, _, _| -(g * y / x)),
        tolerance: EXACT,
    },
    UnaryFn {
        name: "pow_scalar",
        cpu: map!(|x, a, b| x.powf(a)),
        wgsl: "pow_real(x, a)",
        // d/dx xᵃ = a·xᵃ⁻¹
        grad: Some(|x, _, g, a, _| g * x.powf(a - 1.0) * a),
        tolerance: TRANSCENDENTAL,
    },
    UnaryFn {
        name: "clamp",
        cpu: map!(|x, a, b| x.max(a).min(b)),
        wgsl: "clamp(x, a, b)",
        // d/dx = 1 inside [a, b], 0 outside
        grad: Some(|x, _, g, a, b| {
            let inside = x.ge_scalar(a).cast(g.dtype()) * x.le_scalar(b).cast(g.dtype());
            g * inside
        }),
        tolerance: EXACT,
    },
];

const GELU_K: f64 = 0.797_884_560_802_865_4; // √(2/π)

fn sign<T: Float>(x: T) -> T {
    if x > T::ZERO {
        T::ONE
    } else if x < T::ZERO {
        -T::ONE
    } else {
        T::ZERO
    }
}

fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

/// The row named `name`, looked up once per call site (ops are recorded in hot loops).
macro_rules! row {
    ($name:literal) => {{
        static ROW: std::sync::OnceLock<&'static UnaryFn> = std::sync::OnceLock::new();
        *ROW.get_or_init(|| row($name))
    }};
}

/// The row named `name`.
fn row(name: &str) -> &'static UnaryFn {
    UNARY.iter().find(|u| u.name == name).unwrap_or_else(|| panic!("no unary op {name}"))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    a: f32,
    b: f32,
    _pad: u32,
}

/// The kernel of a row: its expression spliced into `unary.wgsl`.
fn kernel(f: &UnaryFn) -> Kernel<'static> {
    Kernel::new(&SHADER, "main", 1, 1)
        .with_library(&ACTIVATIONS)
        .with("return x; // @expr", format!("return {};", f.wgsl))
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    UNARY.iter().map(kernel).collect()
}

/// A unary row applied with parameters `a`, `b`.
pub(crate) struct Unary {
    f: &'static UnaryFn,
    a: f64,
    b: f64,
}

impl Op for Unary {
    fn name(&self) -> &'static str {
        self.f.name
    }
    fn describe(&self) -> String {
        format!("{}(a {}, b {})", self.f.name, self.a, self.b)
    }
    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        fn run<T: Float>(f: fn(&[T], &mut [T], T, T), x: &[T], a: f64, b: f64) -> Vec<T> {
            let mut y = cpu_pool::for_overwrite::<T>(x.len());
            let (a, b) = (T::of(a), T::of(b));
            if x.len() <= PARALLEL_CHUNK {
                f(x, &mut y, a, b); // not worth a thread
            } else {
                y.par_chunks_mut(PARALLEL_CHUNK)
                    .zip(x.par_chunks(PARALLEL_CHUNK))
                    .for_each(|(o, i)| f(i, o, a, b));
            }
            y
        }
        match args[0].data.data() {
            CpuData::F32(x) => CpuStorage::from_vec(run(self.f.cpu.f32, x, self.a, self.b)),
            CpuData::F64(x) => CpuStorage::from_vec(run(self.f.cpu.f64, x, self.a, self.b)),
            _ => unreachable!("float dtypes are checked when recorded"),
        }
    }
    fn cpu_in_place(&self, inout: &mut CpuStorage, _: &[CpuArg], _: &Meta) -> bool {
        fn run<T: Float>(f: fn(&mut [T], T, T), x: &mut [T], a: f64, b: f64) {
            let (a, b) = (T::of(a), T::of(b));
            if x.len() <= PARALLEL_CHUNK {
                f(x, a, b);
            } else {
                x.par_chunks_mut(PARALLEL_CHUNK).for_each(|c| f(c, a, b));
            }
        }
        match inout.data_mut() {
            CpuData::F32(x) => run(self.f.cpu.f32_in_place, x, self.a, self.b),
            CpuData::F64(x) => run(self.f.cpu.f64_in_place, x, self.a, self.b),
            _ => return false,
        }
        true
    }

    fn elementwise(&self) -> Option<Step> {
        Some(Step::Unary { f: self.f, a: self.a, b: self.b })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let n = u32_of(self.f.name, out.shape.numel())?;
        let y = rec.alloc_elems(n as usize)?;
        let kernel = kernel(self.f);
        let params = Params { n, a: self.a as f32, b: self.b as f32, _pad: 0 };
        rec.dispatch(&kernel, &params, &[args[0].buf], &[&y], Grid::Linear(n.div_ceil(256)))?;
        Ok(y)
    }
    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let x = &g.inputs[0];
        let dx = match self.f.grad {
            Some(rule) => rule(x, g.output, g.grad, self.a, self.b),
            None => g.grad.zeros_like(),
        };
        vec![Some(dx)]
    }
    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        // elementwise: the function's own ulps (its row says why), and the measured condition
        // (exp of a large argument, a subtraction that cancels) of one rounding
        Tolerance::Rounding { floor: self.f.tolerance, terms: 1 }
    }
}

impl Tensor {
    /// Applies the unary row `name` with parameters `a`, `b`.
    #[track_caller]
    pub(crate) fn unary(&self, name: &str, a: f64, b: f64) -> Tensor {
        self.apply_row(row(name), a, b)
    }

    /// Applies unary row `f` with parameters `a`, `b`.
    #[track_caller]
    fn apply_row(&self, f: &'static UnaryFn, a: f64, b: f64) -> Tensor {
        if !self.dtype().is_float() {
            panic!("{}: expected a float tensor, found {}", f.name, self.dtype());
        }
        Tensor::from_op(Unary { f, a, b }, [self.clone()], self.shape().clone(), self.dtype())
    }
}

/// Defines `Tensor` methods for parameterless rows.
macro_rules! unary_methods {
    ($($method:ident => $name:literal: $doc:literal),* $(,)?) => {
        impl Tensor {
            $(
                #[doc = $doc]
                #[track_caller]
                pub fn $method(&self) -> Tensor {
                    self.apply_row(row!($name), 0.0, 0.0)
                }
            )*
        }
    };
}

unary_methods! {
    exp => "exp": "eˣ, elementwise.",
    log => "log": "Natural logarithm, elementwise.",
    sqrt => "sqrt": "√x, elementwise.",
    rsqrt => "rsqrt": "1/√x, elementwise.",
    abs => "abs": "|x|, elementwise.",
    sign => "sign": "−1, 0 or 1 by the sign of x (gradient 0).",
    sin => "sin": "Sine, elementwise.",
    cos => "cos": "Cosine, elementwise.",
    tanh => "tanh": "Hyperbolic tangent, elementwise.",
    sigmoid => "sigmoid": "Logistic sigmoid 1 / (1 + e⁻ˣ), elementwise.",
    relu => "relu": "max(x, 0), elementwise.",
    gelu => "gelu": "GELU with the exact Gaussian CDF: x·Φ(x).",
    gelu_tanh => "gelu_tanh": "GELU with the tanh approximation (GPT-2's).",
    silu => "silu": "SiLU (swish): x·σ(x).",
    softplus => "softplus": "ln(1 + eˣ), computed stably.",
    square => "square": "x², elementwise.",
    reciprocal => "reciprocal": "1/x, elementwise.",
    erf => "erf": "The error function, elementwise.",
    floor => "floor": "⌊x⌋ (gradient 0).",
    ceil => "ceil": "⌈x⌉ (gradient 0).",
    round => "round": "Rounds half to even (gradient 0).",
}

impl Tensor {
    /// x where x > 0, `slope`·x elsewhere.
    #[track_caller]
    pub fn leaky_relu(&self, slope: f64) -> Tensor {
        self.apply_row(row!("leaky_relu"), slope, 0.0)
    }

    /// x where x > 0, α(eˣ − 1) elsewhere.
    #[track_caller]
    pub fn elu(&self, alpha: f64) -> Tensor {
        self.apply_row(row!("elu"), alpha, 0.0)
    }

    /// xᵃ for a scalar exponent.
    #[track_caller]
    pub fn powf(&self, exponent: f64) -> Tensor {
        self.apply_row(row!("pow_scalar"), exponent, 0.0)
    }

    /// Clamps every element into [lo, hi].
    #[track_caller]
    pub fn clamp(&self, lo: f64, hi: f64) -> Tensor {
        if lo > hi {
            panic!("clamp: lo {lo} is above hi {hi}");
        }
        self.apply_row(row!("clamp"), lo, hi)
    }

    /// −x, elementwise.
    #[track_caller]
    pub fn neg(&self) -> Tensor {
        self.apply_row(row!("neg"), 0.0, 0.0)
    }
}

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        self.apply_row(row!("neg"), 0.0, 0.0)
    }
}

impl std::ops::Neg for Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        self.apply_row(row!("neg"), 0.0, 0.0)
    }
}

/// Scalar arithmetic: `tensor op scalar` and `scalar op tensor`. One scalar type (f64) so that
/// literals need no annotation.
macro_rules! scalar_ops {
    ($($s:ty),*) => {$(
        impl std::ops::Add<$s> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn add(self, rhs: $s) -> Tensor { self.apply_row(row!("add_scalar"), rhs as f64, 0.0) }
        }
        impl std::ops::Sub<$s> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn sub(self, rhs: $s) -> Tensor { self.apply_row(row!("add_scalar"), -(rhs as f64), 0.0) }
        }
        impl std::ops::Mul<$s> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn mul(self, rhs: $s) -> Tensor { self.apply_row(row!("mul_scalar"), rhs as f64, 0.0) }
        }
        impl std::ops::Div<$s> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn div(self, rhs: $s) -> Tensor { self.apply_row(row!("mul_scalar"), 1.0 / rhs as f64, 0.0) }
        }
        impl std::ops::Add<&Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn add(self, rhs: &Tensor) -> Tensor { rhs.apply_row(row!("add_scalar"), self as f64, 0.0) }
        }
        impl std::ops::Sub<&Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn sub(self, rhs: &Tensor) -> Tensor { rhs.apply_row(row!("rsub_scalar"), self as f64, 0.0) }
        }
        impl std::ops::Mul<&Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn mul(self, rhs: &Tensor) -> Tensor { rhs.apply_row(row!("mul_scalar"), self as f64, 0.0) }
        }
        impl std::ops::Div<&Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn div(self, rhs: &Tensor) -> Tensor { rhs.apply_row(row!("rdiv_scalar"), self as f64, 0.0) }
        }
        impl std::ops::Add<$s> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn add(self, rhs: $s) -> Tensor { &self + rhs }
        }
        impl std::ops::Sub<$s> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn sub(self, rhs: $s) -> Tensor { &self - rhs }
        }
        impl std::ops::Mul<$s> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn mul(self, rhs: $s) -> Tensor { &self * rhs }
        }
        impl std::ops::Div<$s> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn div(self, rhs: $s) -> Tensor { &self / rhs }
        }
        impl std::ops::Add<Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn add(self, rhs: Tensor) -> Tensor { self + &rhs }
        }
        impl std::ops::Sub<Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn sub(self, rhs: Tensor) -> Tensor { self - &rhs }
        }
        impl std::ops::Mul<Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn mul(self, rhs: Tensor) -> Tensor { self * &rhs }
        }
        impl std::ops::Div<Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn div(self, rhs: Tensor) -> Tensor { self / &rhs }
        }
    )*};
}
scalar_ops!(f64);
