// Microkernels that measure an adapter's ceilings for the benchmark program
// (src/backend/wgpu/ceiling.rs): arithmetic throughput (independent FMA chains held in
// registers, no memory traffic) and memory bandwidth (a vec4 copy).

struct Params {
    n: u32,          // vec4 elements (copy) or invocations (fma)
    iterations: u32, // FMA loop trips
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i < p.n {
        dst[i] = src[i];
    }
}

@group(0) @binding(1) var<storage, read_write> sink: array<vec4<f32>>;

// Each invocation runs 8 independent vec4 FMA chains: 8 · 4 · 2 = 64 FLOPs per trip.
@compute @workgroup_size(256)
fn fma_chains(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    let seed = f32(i) * 1e-9;
    var a0 = vec4<f32>(seed, seed + 1.0, seed + 2.0, seed + 3.0);
    var a1 = a0 + 0.1;
    var a2 = a0 + 0.2;
    var a3 = a0 + 0.3;
    var a4 = a0 + 0.4;
    var a5 = a0 + 0.5;
    var a6 = a0 + 0.6;
    var a7 = a0 + 0.7;
    let m = vec4<f32>(0.9999);
    let c = vec4<f32>(1e-4);
    for (var t = 0u; t < p.iterations; t++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    // keep the chains alive without writing memory in the timed loop
    if i == 0xffffffffu {
        sink[0] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    }
}
