// Elementwise binary ops with broadcasting. src/ops/binary.rs sets the operand type T, the
// result type R (u32 for comparisons, whose results are bools) and the expression in a and b.
// Shapes and strides come collapsed: adjacent dimensions contiguous in all operands are merged.

alias T = f32; // @T
alias R = f32; // @R

struct Params {
    n: u32,
    rank: u32,
    pad0: u32,
    pad1: u32,
    shape: Dims,
    a_strides: Dims,
    b_strides: Dims,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lhs: array<T>;
@group(0) @binding(2) var<storage, read> rhs: array<T>;
@group(0) @binding(3) var<storage, read_write> out: array<R>;

fn apply(a: T, b: T) -> R {
    return a + b; // @expr
}

// Both operands have the output's shape: no index arithmetic.
@compute @workgroup_size(256)
fn same_shape(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i < p.n {
        out[i] = apply(lhs[i], rhs[i]);
    }
}

@compute @workgroup_size(256)
fn broadcast(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i >= p.n {
        return;
    }
    let at = strided_offsets(i, p.rank, p.shape, p.a_strides, p.b_strides, Dims());
    out[i] = apply(lhs[at.x], rhs[at.y]);
}
