// @library: the elementwise functions that several kernels share (sigmoid, tanh, erf, …),
// prepended to unary.wgsl, binary.wgsl, fused.wgsl and recurrent.wgsl (see
// src/backend/wgpu/pipeline.rs).

// eʸ − 1 without the cancellation of exp(y) − 1 near 0: a Taylor polynomial for |y| < 1 (the
// degree-11 remainder is below 2.5e-8 relative), exp(y) − 1 beyond (at most a bit lost).
fn expm1(y: f32) -> f32 {
    if abs(y) >= 1.0 {
        return exp(y) - 1.0;
    }
    var t = 1.0 / 39916800.0;
    t = 1.0 / 3628800.0 + y * t;
    t = 1.0 / 362880.0 + y * t;
    t = 1.0 / 40320.0 + y * t;
    t = 1.0 / 5040.0 + y * t;
    t = 1.0 / 720.0 + y * t;
    t = 1.0 / 120.0 + y * t;
    t = 1.0 / 24.0 + y * t;
    t = 1.0 / 6.0 + y * t;
    t = 0.5 + y * t;
    t = 1.0 + y * t;
    return y * t;
}

// tanh without overflow (the builtin may return NaN for large |x| on some drivers) and without
// cancellation near 0: tanh|x| = −m / (2 + m) with m = e^(−2|x|) − 1.
fn tanh_stable(x: f32) -> f32 {
    let m = expm1(-2.0 * abs(x));
    return sign(x) * -m / (2.0 + m);
}

// σ(x) = 1 / (1 + e⁻ˣ), without overflow for large |x|.
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

// ln(1 + t) without the cancellation of log(1.0 + t) for small t (Goldberg's correction: the
// rounding of 1 + t is undone by the ratio t / (u − 1)).
fn log1p(t: f32) -> f32 {
    let u = 1.0 + t;
    if u == 1.0 {
        return t;
    }
    return log(u) * (t / (u - 1.0));
}

// erf: a Taylor series near 0 (where 1 - ... would cancel), Abramowitz & Stegun 7.1.26 beyond
// (absolute error below 1.5e-7).
fn erf(x: f32) -> f32 {
    let ax = abs(x);
    if ax < 0.5 {
        let x2 = x * x;
        return 1.1283791670955126 * x * (1.0 - x2 / 3.0 + x2 * x2 / 10.0 - x2 * x2 * x2 / 42.0 + x2 * x2 * x2 * x2 / 216.0);
    }
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-ax * ax));
}

// GELU's slope, d/dx xΦ(x) = Φ(x) + xφ(x), for the exact (erf) GELU's gradient.
fn gelu_slope(x: f32) -> f32 {
    return 0.5 * (1.0 + erf(x * 0.7071067811865476)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}

// xᵃ for real exponents, matching Rust's powf: negative bases give NaN for fractional
// exponents and keep their sign for odd integer ones; x⁰ = 1.
fn pow_real(x: f32, a: f32) -> f32 {
    if a == 0.0 {
        return 1.0;
    }
    let m = pow(abs(x), a);
    if x < 0.0 {
        if a != round(a) {
            return bitcast<f32>(0x7fc00000u);
        }
        if (i32(a) & 1) == 1 {
            return -m;
        }
    }
    return m;
}
