// Creation kernels: fill a buffer with one value, or with an arithmetic sequence.
// Work on raw 32-bit words, so `fill` serves every dtype.

struct Params {
    n: u32,
    value: u32, // fill value bits, or arange start bits
    step: u32,  // arange step bits
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i < p.n {
        y[i] = p.value;
    }
}

@compute @workgroup_size(256)
fn arange_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i < p.n {
        y[i] = bitcast<u32>(bitcast<f32>(p.value) + bitcast<f32>(p.step) * f32(i));
    }
}

@compute @workgroup_size(256)
fn arange_i32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i < p.n {
        y[i] = bitcast<u32>(bitcast<i32>(p.value) + bitcast<i32>(p.step) * i32(i));
    }
}
