// @requires activations.wgsl
// A fused chain of elementwise ops (src/ops/fused.rs writes the marked lines): every invocation
// computes one element of the chain's shape through all its steps in registers, and writes the
// steps the rest of the graph needs. Inputs of the chain's shape are read at the element's own
// index, one-element inputs at 0, and broadcast inputs through their strides. As written, the
// file is the one-step chain y = x, so it parses alone.

struct Params {
    n: u32,
    rank: u32, // of `shape` and the strides, collapsed (src/ops/layout.rs)
    pad0: u32,
    pad1: u32,
    shape: Dims,
    // @FIELDS
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>; @group(0) @binding(2) var<storage, read_write> out0: array<f32>; // @BINDINGS

// The offset in a broadcast input (strides `s`) of element i of the chain's shape.
fn strided(i: u32, s: Dims) -> u32 {
    var rest = i;
    var offset = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = dims_at(p.shape, k);
        offset += (rest % size) * dims_at(s, k);
        rest = rest / size;
    }
    return offset;
}

// @STEPS

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i >= p.n {
        return;
    }
    out0[i] = in0[i]; // @BODY
}
