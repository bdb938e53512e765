// @requires activations.wgsl
// A fused chain of elementwise ops (src/ops/fused.rs writes the marked lines): every invocation
// computes one element of the chain's shape through all its steps in registers, and writes the
// steps the rest of the graph needs. Inputs of the chain's shape are read at the element's own
// index, one-element inputs at 0, and broadcast inputs through their strides (the chain's
// fields of the parameter block: its collapsed rank and shape, the strides, the steps' scalars).
// As written, the file is the one-step chain y = x, so it parses alone. matmul.wgsl splices a
// chain into its store the same way (an epilogue).

struct Params {
    n: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    // @FIELDS
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>; @group(0) @binding(2) var<storage, read_write> out0: array<f32>; // @BINDINGS

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
