// @requires philox.wgsl
// Random kernels from Philox4x32-10 (philox.wgsl), bit-identical to src/rng.rs.
// Element i of a stream is word i % 4 of the block with counter [i / 4, 0, stream_lo, stream_hi]
// and key [seed_lo, seed_hi]. Normals use words 0 and 1 of block i / 2 (Box-Muller).

struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    a: f32, // uniform lo / normal mean / dropout p
    b: f32, // uniform hi / normal std / dropout scale
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn block(b: u32) -> vec4<u32> {
    return philox(vec4<u32>(b, 0u, p.stream_lo, p.stream_hi), vec2<u32>(p.seed_lo, p.seed_hi));
}

fn word(i: u32) -> u32 {
    return block(i / 4u)[i % 4u];
}

fn index(wg: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return flat_workgroup(wg, groups) * 256u + lid;
}

@group(0) @binding(1) var<storage, read_write> bits_out: array<u32>;

@compute @workgroup_size(256)
fn rand_bits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, groups, lid);
    if i < p.n {
        bits_out[i] = word(i);
    }
}

@compute @workgroup_size(256)
fn rand_uniform(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, groups, lid);
    if i < p.n {
        bits_out[i] = bitcast<u32>(p.a + (p.b - p.a) * unit(word(i)));
    }
}

@compute @workgroup_size(256)
fn rand_normal(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, groups, lid);
    if i < p.n {
        let w = block(i / 2u);
        let u1 = f32((w.x >> 8u) + 1u) * (1.0 / 16777216.0);
        let u2 = unit(w.y);
        let r = sqrt(-2.0 * log(u1));
        let theta = 6.283185307179586 * u2;
        var z = r * cos(theta);
        if (i & 1u) == 1u {
            z = r * sin(theta);
        }
        bits_out[i] = bitcast<u32>(p.a + p.b * z);
    }
}

@group(0) @binding(1) var<storage, read> dropout_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> dropout_out: array<f32>;

@compute @workgroup_size(256)
fn dropout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, groups, lid);
    if i < p.n {
        var y = 0.0;
        if unit(word(i)) >= p.a {
            y = dropout_in[i] * p.b;
        }
        dropout_out[i] = y;
    }
}
