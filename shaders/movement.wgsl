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
    shape: Dims,
    src_strides: Dims,
    dst_strides: Dims,
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
    let at = strided_offsets(i, cp.rank, cp.shape, cp.src_strides, cp.dst_strides, Dims());
    dst[cp.dst_start + at.y] = src[cp.src_start + at.x];
}

struct PadParams {
    n: u32,
    rank: u32,
    value: u32, // the padding value's bits
    pad0: u32,
    out_shape: Dims,
    before: Dims,
    step: Dims, // interior + 1
    in_shape: Dims,
    in_strides: Dims,
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
        let size = dims_at(pp.out_shape, u);
        let c = rest % size;
        rest = rest / size;
        let before = dims_at(pp.before, u);
        let step = dims_at(pp.step, u);
        let t = c - before; // wraps when c < before: caught by the range test below
        if c < before || t % step != 0u || t / step >= dims_at(pp.in_shape, u) {
            inside = false;
        } else {
            s += (t / step) * dims_at(pp.in_strides, u);
        }
    }
    if inside {
        dst[i] = src[s];
    } else {
        dst[i] = pp.value;
    }
}
