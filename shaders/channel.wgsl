// Per-channel ops over (N, C, …) tensors: N·C blocks of `block` elements, channel c owning
// blocks c, C + c, 2C + c, … (see src/ops/channel.rs).
//
// moments: one workgroup per channel; mean and biased variance from per-invocation Welford
//          accumulators merged in a tree (Chan et al.), written as out[c] and out[C + c]
// sums:    one workgroup per channel; Σa and Σa·b as out[c] and out[C + c]
// affine:  one invocation per element; y = x·scale[c] + shift[c]

struct Params {
    batch: u32,
    channels: u32,
    block: u32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// element j of channel c's N·block elements, as an index into the tensor
fn channel_element(c: u32, j: u32) -> u32 {
    return ((j / p.block) * p.channels + c) * p.block + j % p.block;
}

@group(0) @binding(1) var<storage, read> moments_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> moments_out: array<f32>;

@compute @workgroup_size(256)
fn moments(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let c = flat_workgroup(wg, groups);
    let live = c < p.channels;
    let count = p.batch * p.block;
    var acc = vec3<f32>(0.0); // (count, mean, M2)
    if live {
        for (var j = lid; j < count; j += ROW_WG) {
            let v = moments_x[channel_element(c, j)];
            acc.x += 1.0;
            let d = v - acc.y;
            acc.y += d / acc.x;
            acc.z += d * (v - acc.y);
        }
    }
    let total = row_welford(acc, lid);
    if live && lid == 0u {
        moments_out[c] = total.y;
        moments_out[p.channels + c] = total.z / max(total.x, 1.0);
    }
}

@group(0) @binding(1) var<storage, read> sums_a: array<f32>;
@group(0) @binding(2) var<storage, read> sums_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> sums_out: array<f32>;

@compute @workgroup_size(256)
fn sums(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let c = flat_workgroup(wg, groups);
    let live = c < p.channels;
    let count = p.batch * p.block;
    var acc = vec2<f32>(0.0);
    if live {
        for (var j = lid; j < count; j += ROW_WG) {
            let k = channel_element(c, j);
            let a = sums_a[k];
            acc += vec2<f32>(a, a * sums_b[k]);
        }
    }
    let total = row_sum2(acc, lid);
    if live && lid == 0u {
        sums_out[c] = total.x;
        sums_out[p.channels + c] = total.y;
    }
}

@group(0) @binding(1) var<storage, read> affine_x: array<f32>;
@group(0) @binding(2) var<storage, read> affine_scale: array<f32>;
@group(0) @binding(3) var<storage, read> affine_shift: array<f32>;
@group(0) @binding(4) var<storage, read_write> affine_out: array<f32>;

@compute @workgroup_size(256)
fn affine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i >= p.batch * p.channels * p.block {
        return;
    }
    let c = (i / p.block) % p.channels;
    affine_out[i] = affine_x[i] * affine_scale[c] + affine_shift[c];
}
