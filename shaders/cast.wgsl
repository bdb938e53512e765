// Elementwise dtype conversion. src/ops/cast.rs sets In, Out and the conversion expression
// (bools are u32 words 0/1).

alias In = f32; // @In
alias Out = f32; // @Out

struct Params {
    n: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> input: array<In>;
@group(0) @binding(2) var<storage, read_write> output: array<Out>;

fn convert(x: In) -> Out {
    return Out(x); // @expr
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i < p.n {
        output[i] = convert(input[i]);
    }
}
