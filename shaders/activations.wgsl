// @library: the activations that several kernels share (sigmoid, tanh), prepended to
// unary.wgsl and recurrent.wgsl (see src/backend/wgpu/pipeline.rs).

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
