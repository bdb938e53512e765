// Data movement on raw 32-bit words (so every GPU dtype moves the same way).
//
// strided_copy: for every coordinate c of `shape`,
//     dst[dst_start + Σ c_d·dst_strides_d] = src[src_start + Σ c_d·src_strides_d]
// which is permute, expand and slice (strided reads) and concat (strided writes).
// pad: constant padding with before/after/interior elements per dimension.

struct CopyParams {
    n: u32,
    rank: u32,
    src_start: u32,
    dst_start: u32,
    shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> cp: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(256)
fn strided_copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i >= cp.n {
        return;
    }
    var rest = i;
    var s = cp.src_start;
    var d = cp.dst_start;
    for (var k = i32(cp.rank) - 1; k >= 0; k--) {
        let u = u32(k);
        let size = cp.shape[u / 4u][u % 4u];
        let c = rest % size;
        rest = rest / size;
        s += c * cp.src_strides[u / 4u][u % 4u];
        d += c * cp.dst_strides[u / 4u][u % 4u];
    }
    dst[d] = src[s];
}

struct PadParams {
    n: u32,
    rank: u32,
    value: u32, // the padding value's bits
    pad0: u32,
    out_shape: array<vec4<u32>, 2>,
    before: array<vec4<u32>, 2>,
    step: array<vec4<u32>, 2>, // interior + 1
    in_shape: array<vec4<u32>, 2>,
    in_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> pp: PadParams;

@compute @workgroup_size(256)
fn pad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i >= pp.n {
        return;
    }
    var rest = i;
    var s = 0u;
    var inside = true;
    for (var k = i32(pp.rank) - 1; k >= 0; k--) {
        let u = u32(k);
        let size = pp.out_shape[u / 4u][u % 4u];
        let c = rest % size;
        rest = rest / size;
        let before = pp.before[u / 4u][u % 4u];
        let step = pp.step[u / 4u][u % 4u];
        let t = c - before; // wraps when c < before: caught by the range test below
        if c < before || t % step != 0u || t / step >= pp.in_shape[u / 4u][u % 4u] {
            inside = false;
        } else {
            s += (t / step) * pp.in_strides[u / 4u][u % 4u];
        }
    }
    if inside {
        dst[i] = src[s];
    } else {
        dst[i] = pp.value;
    }
}
