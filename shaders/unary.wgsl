// @requires activations.wgsl
// Elementwise unary ops. src/ops/unary.rs splices each op's expression (in x, a and b) into
// `apply` at the `@expr` marker; the default here is the identity, so the file parses alone.
// The functions the expressions call (sigmoid, tanh_stable, log1p, erf, pow_real) are in
// activations.wgsl, which the fused chains (fused.wgsl) share.

struct Params {
    n: u32,
    a: f32, // the op's first parameter (leaky_relu slope, scalar operand, clamp lo)
    b: f32, // the op's second parameter (clamp hi)
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

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
