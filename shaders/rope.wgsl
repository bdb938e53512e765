// Rotary position embeddings (src/ops/rope.rs): one invocation per pair of features. Row r of
// x (…, T, D) sits at position offset + r % T and reads that row of the cos and sin tables
// (P, D/2). The transposed rotation (the gradient) negates sin.

struct Params {
    pairs: u32,       // numel / 2
    time: u32,        // T
    half: u32,        // D / 2
    offset: u32,      // the tables' row of x's row 0
    interleaved: u32, // 1: pairs (2j, 2j + 1), else (j, j + D/2)
    sign: f32,        // −1: rotate by −angle
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_table: array<f32>;
@group(0) @binding(3) var<storage, read> sin_table: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 64u + lid;
    if i >= p.pairs {
        return;
    }
    let row = i / p.half;
    let j = i % p.half;
    let base = row * 2u * p.half;
    var a = base + j;
    var b = a + p.half;
    if p.interleaved == 1u {
        a = base + 2u * j;
        b = a + 1u;
    }
    let at = (p.offset + row % p.time) * p.half + j;
    let c = cos_table[at];
    let s = p.sign * sin_table[at];
    let xa = x[a];
    let xb = x[b];
    y[a] = xa * c - xb * s;
    y[b] = xb * c + xa * s;
}
