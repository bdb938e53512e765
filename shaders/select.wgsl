// where(cond, a, b) with broadcasting of all three operands (strides 0 on broadcast dims).
// The branch type T is set by src/ops/select.rs; bools are u32 words.

alias T = f32; // @T

struct Params {
    n: u32,
    rank: u32,
    pad0: u32,
    pad1: u32,
    shape: Dims,
    cond_strides: Dims,
    a_strides: Dims,
    b_strides: Dims,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cond: array<u32>;
@group(0) @binding(2) var<storage, read> a: array<T>;
@group(0) @binding(3) var<storage, read> b: array<T>;
@group(0) @binding(4) var<storage, read_write> out: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i >= p.n {
        return;
    }
    let at = strided_offsets(i, p.rank, p.shape, p.cond_strides, p.a_strides, p.b_strides);
    out[i] = select(b[at.z], a[at.y], cond[at.x] != 0u);
}
