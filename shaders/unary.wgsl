// @requires activations.wgsl
// Elementwise unary ops. src/ops/unary.rs splices each op's expression (in x, a and b) into
// `apply` at the `@expr` marker; the default here is the identity, so the file parses alone.

struct Params {
    n: u32,
    a: f32, // the op's first parameter (leaky_relu slope, scalar operand, clamp lo)
    b: f32, // the op's second parameter (clamp hi)
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

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

fn apply(x: f32) -> f32 {
    let a = p.a;
    let b = p.b;
    return x; // @expr
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i < p.n {
        output[i] = apply(input[i]);
    }
}
