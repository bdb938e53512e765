// where(cond, a, b) with broadcasting of all three operands (strides 0 on broadcast dims).
// The branch type T is set by src/ops/select.rs; bools are u32 words.

alias T = f32; // @T

struct Params {
    n: u32,
    rank: u32,
    pad0: u32,
    pad1: u32,
    shape: array<vec4<u32>, 2>,
    cond_strides: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
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
    var rest = i;
    var ic = 0u;
    var ia = 0u;
    var ib = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = p.shape[k / 4u][k % 4u];
        let c = rest % size;
        rest = rest / size;
        ic += c * p.cond_strides[k / 4u][k % 4u];
        ia += c * p.a_strides[k / 4u][k % 4u];
        ib += c * p.b_strides[k / 4u][k % 4u];
    }
    out[i] = select(b[ib], a[ia], cond[ic] != 0u);
}
