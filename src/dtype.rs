//! Element types: `DType` names them at run time, `Element` connects them to Rust types, and
//! `Float` is the arithmetic the CPU reference kernels are written against (f32 and f64).
//!
//! f16 is a storage type: ops without an f16 kernel of their own compute in f32 between casts
//! (see `Op::computes_f16`), so the CPU reference of an f16 op is its f32 reference, rounded.

use crate::backend::cpu::CpuData;
use std::fmt;

/// The element type of a tensor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DType {
    /// 32-bit float: the compute type on every device.
    F32,
    /// 16-bit IEEE half float: storage for mixed-precision training (the `half` crate's `f16`
    /// on the host). On the GPU it needs an adapter with `shader-f16`.
    F16,
    /// 64-bit float: CPU only; gradchecks run in it.
    F64,
    /// 32-bit signed integer (indices, labels).
    I32,
    /// 32-bit unsigned integer.
    U32,
    /// Boolean mask (results of comparisons).
    Bool,
}

impl DType {
    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16)
    }

    /// Whether this is an integer type usable as an index.
    pub fn is_index(self) -> bool {
        matches!(self, DType::I32 | DType::U32)
    }

    /// Bytes per element in host memory.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F64 => 8,
            DType::F16 => 2,
            DType::Bool => 1,
            _ => 4,
        }
    }

    /// 32-bit words a tensor of `numel` elements takes in a GPU buffer (f16 packs two per word;
    /// bools take a word each).
    pub fn gpu_words(self, numel: usize) -> usize {
        match self {
            DType::F16 => numel.div_ceil(2),
            _ => numel,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::U32 => "u32",
            DType::Bool => "bool",
        };
        f.write_str(name)
    }
}

/// A Rust type that can be the element of a tensor.
pub trait Element: Copy + Send + Sync + fmt::Debug + PartialEq + 'static {
    /// The matching [`DType`].
    const DTYPE: DType;
    /// Converts to f64 (for printing, comparing and casting).
    fn to_f64(self) -> f64;
    /// Converts from f64 with Rust's `as` semantics.
    fn from_f64(v: f64) -> Self;
    /// Wraps a vector of this type as CPU data.
    #[doc(hidden)]
    fn wrap(v: Vec<Self>) -> CpuData;
    /// The slice, when `data` holds this type.
    #[doc(hidden)]
    fn unwrap(data: &CpuData) -> Option<&[Self]>;
    /// The vector, when `data` holds this type (else `data` back).
    #[doc(hidden)]
    fn into_vec(data: CpuData) -> Result<Vec<Self>, CpuData>;
}

macro_rules! element {
    ($t:ty, $d:ident) => {
        element!($t, $d, |x: $t| x as f64, |v: f64| v as $t);
    };
    ($t:ty, $d:ident, $to:expr, $from:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                ($to)(self)
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                ($from)(v)
            }
            fn wrap(v: Vec<Self>) -> CpuData {
                CpuData::$d(v)
            }
            fn unwrap(data: &CpuData) -> Option<&[Self]> {
                match data {
                    CpuData::$d(v) => Some(v),
                    _ => None,
                }
            }
            fn into_vec(data: CpuData) -> Result<Vec<Self>, CpuData> {
                match data {
                    CpuData::$d(v) => Ok(v),
                    other => Err(other),
                }
            }
        }
    };
}
element!(f32, F32);
element!(half::f16, F16, half::f16::to_f64, half::f16::from_f64);
element!(f64, F64);
element!(i32, I32);
element!(u32, U32);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        if self { 1.0 } else { 0.0 }
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn wrap(v: Vec<Self>) -> CpuData {
        CpuData::Bool(v)
    }
    fn unwrap(data: &CpuData) -> Option<&[Self]> {
        match data {
            CpuData::Bool(v) => Some(v),
            _ => None,
        }
    }
    fn into_vec(data: CpuData) -> Result<Vec<Self>, CpuData> {
        match data {
            CpuData::Bool(v) => Ok(v),
            other => Err(other),
        }
    }
}

/// Floating-point arithmetic for the CPU reference kernels, implemented for f32 and f64.
pub trait Float:
    Element
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
    + std::iter::Sum
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// -∞.
    const NEG_INFINITY: Self;
    /// +∞.
    const INFINITY: Self;
    /// Converts from f64, rounding for f32.
    #[inline(always)]
    fn of(v: f64) -> Self {
        Self::from_f64(v)
    }
    /// eˣ.
    fn exp(self) -> Self;
    /// eˣ by an inlined polynomial that vectorizes (within 2 ulp for f32; `exp` for f64), for
    /// the hot loops of softmax-like kernels. Exactly 0 for −∞.
    fn exp_fast(self) -> Self {
        self.exp()
    }
    /// ln x.
    fn ln(self) -> Self;
    /// √x.
    fn sqrt(self) -> Self;
    /// |x|.
    fn abs(self) -> Self;
    /// sin x.
    fn sin(self) -> Self;
    /// cos x.
    fn cos(self) -> Self;
    /// tanh x.
    fn tanh(self) -> Self;
    /// erf x.
    fn erf(self) -> Self;
    /// ln(1 + x), accurate near 0.
    fn ln_1p(self) -> Self;
    /// eˣ − 1, accurate near 0.
    fn exp_m1(self) -> Self;
    /// Rounds half to even.
    fn round_even(self) -> Self;
    /// xʸ.
    fn powf(self, y: Self) -> Self;
    /// ⌊x⌋.
    fn floor(self) -> Self;
    /// ⌈x⌉.
    fn ceil(self) -> Self;
    /// Rounds half away from zero.
    fn round(self) -> Self;
    /// The larger, NaN-propagating.
    fn max(self, other: Self) -> Self {
        if self.is_nan() || self > other { self } else { other }
    }
    /// The smaller, NaN-propagating.
    fn min(self, other: Self) -> Self {
        if self.is_nan() || self < other { self } else { other }
    }
    /// Whether x is NaN.
    fn is_nan(self) -> bool;
    /// self·a + b rounded once: one instruction on CPUs with FMA, a slow library call on those
    /// without (callers check first; see `ops::conv::direct`).
    fn fused_mul_add(self, a: Self, b: Self) -> Self;
}

macro_rules! float {
    (@fast f32) => {
        #[inline(always)]
        fn exp_fast(self) -> Self {
            exp_f32(self)
        }
    };
    (@fast f64) => {};
    ($t:ident, $erf:path, $tanh:path) => {
        impl Float for $t {
            float!(@fast $t);
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const INFINITY: Self = <$t>::INFINITY;
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn fused_mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            fn round_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            fn powf(self, y: Self) -> Self {
                <$t>::powf(self, y)
            }
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            fn round(self) -> Self {
                <$t>::round(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
float!(f32, erf_f32, tanh_f32);
float!(f64, libm::erf, f64::tanh);

/// erf for f32 as a rational function, erf x ≈ x·P(x²)/Q(x²) on |x| < 3.92 and ±1 beyond (where
/// erf rounds to ±1 in f32), P of degree 6 and Q of degree 5 fitted for relative error by
/// `tools/fit_rational.py erf`: within 4.1e-7 of the exact value (about 3 ulp; libm's `erff` is within 1
/// but branches by range, 20× slower over a GELU's activations). Branch-free, so loops over it
/// vectorize; NaN stays NaN.
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    // plain comparisons, which vectorize and let NaN through (f32::clamp carries NaN handling)
    let xc = if x > 3.92 { 3.92 } else { x };
    let xc = if xc < -3.92 { -3.92 } else { xc };
    let u = xc * xc;
    // the fit's leading coefficient is erf's slope at 0, 2/√π (in f32)
    let p = std::f32::consts::FRAC_2_SQRT_PI
        + u * (0.185_071_8
            + u * (5.421_442_5e-2
                + u * (3.833_377_5e-3 + u * (3.757_838e-4 + u * (4.583_800_5e-6 + u * -1.265_853_3e-8)))));
    let q = 1.0
        + u * (0.497_349_02
            + u * (0.113_828_82 + u * (1.541_602_5e-2 + u * (1.299_168_1e-3 + u * 6.216_190_4e-5))));
    let y = xc * p / q;
    // the fit may round a hair past 1 near the cut
    let y = if y > 1.0 { 1.0 } else { y };
    if y < -1.0 { -1.0 } else { y }
}

/// tanh for f32 as a rational function, tanh x ≈ x·P(x²)/Q(x²) on |x| < 9 and ±1 beyond (where
/// tanh rounds to ±1 in f32), P and Q of degree 6 fitted for relative error by
/// `tools/fit_rational.py tanh`: within 5e-7 of the exact value (a few ulp, as `erf_f32`;
/// libm's `tanhf` branches by range and is 10× slower over an attention's energies).
/// Branch-free, so loops over it vectorize; NaN stays NaN.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    // plain comparisons, which vectorize and let NaN through (f32::clamp carries NaN handling)
    let xc = if x > 9.0 { 9.0 } else { x };
    let xc = if xc < -9.0 { -9.0 } else { xc };
    let u = xc * xc;
    let p = 1.0
        + u * (-0.158_872_44
            + u * (3.141_795e-2
                + u * (7.959_081e-3 + u * (2.267_687_4e-4 + u * (1.353_639_4e-6 + u * 8.667_367e-10)))));
    let q = 1.0
        + u * (0.174_460_75
            + u * (-4.376_146_2e-2
                + u * (2.407_840_8e-2 + u * (1.633_830_8e-3 + u * (2.154_79e-5 + u * 5.086_165e-8)))));
    let y = xc * p / q;
    // the fit may round a hair past 1 near the cut
    let y = if y > 1.0 { 1.0 } else { y };
    if y < -1.0 { -1.0 } else { y }
}

/// eˣ for f32 by range reduction and the Cephes polynomial: x = n·ln 2 + r, eʳ by a degree-6
/// polynomial on |r| ≤ ln 2 / 2, then scaled by 2ⁿ through the exponent bits. Branch-free, so
/// loops over it vectorize.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // clamped with plain comparisons, which vectorize (f32::clamp carries NaN handling)
    let xc = if x > 88.7 { 88.7 } else { x };
    let xc = if xc < -87.3 { -87.3 } else { xc };
    // Round to nearest by adding and removing 1.5·2²³ (no SSE4.1 `round` needed to vectorize).
    // The shifted value's low mantissa bits then hold n itself, so 2ⁿ is built with integer
    // ops; a float → int cast (`as i32`, saturating) would not vectorize.
    const MAGIC: f32 = 12_582_912.0;
    let shifted = xc * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    // bits(shifted) = bits(MAGIC) + n, so this is the biased exponent n + 127 in place
    let two_n = f32::from_bits(shifted.to_bits().wrapping_sub(MAGIC.to_bits() - 127) << 23);
    let scaled = p * two_n;
    if x < -87.3 { 0.0 } else { scaled }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_within_two_ulp_and_exact_at_the_ends() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (fast, exact) = (x.exp_fast(), (x as f64).exp());
            assert!(((fast as f64 - exact) / exact).abs() < 2.5e-7, "x {x}: {fast} vs {exact}");
            x += 0.0137;
        }
        assert_eq!(f32::NEG_INFINITY.exp_fast(), 0.0);
        assert_eq!(0f32.exp_fast(), 1.0);
    }

    #[test]
    fn f32_tanh_is_within_half_a_millionth_and_exact_at_the_ends() {
        let mut x = -10.0f32;
        while x < 10.0 {
            let (fast, exact) = (tanh_f32(x), (x as f64).tanh());
            let rel = ((fast as f64 - exact) / exact.abs().max(f64::MIN_POSITIVE)).abs();
            assert!(rel < 5e-7, "x {x}: {fast} vs {exact} ({rel:.2e})");
            assert_eq!(tanh_f32(-x), -fast, "tanh is odd");
            x += 0.000_71;
        }
        assert_eq!(tanh_f32(0f32), 0.0);
        assert_eq!(tanh_f32(1e-30f32), 1e-30);
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    #[test]
    fn f32_erf_is_within_four_tenths_of_a_millionth_and_exact_at_the_ends() {
        let mut x = -5.0f32;
        while x < 5.0 {
            let (fast, exact) = (erf_f32(x), libm::erf(x as f64));
            let rel = ((fast as f64 - exact) / exact.abs().max(f64::MIN_POSITIVE)).abs();
            assert!(rel < 4.2e-7, "x {x}: {fast} vs {exact} ({rel:.2e})");
            assert_eq!(erf_f32(-x), -fast, "erf is odd");
            x += 0.000_37;
        }
        assert_eq!(erf_f32(0f32), 0.0);
        assert_eq!(erf_f32(f32::INFINITY), 1.0);
        assert_eq!(erf_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(erf_f32(3.92f32), 1.0);
        assert!(erf_f32(f32::NAN).is_nan());
    }
}
