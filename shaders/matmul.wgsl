// Batched matrix multiplication C = op(A)·op(B), C row-major (M×N) per batch.
//
// Tiling (set by src/ops/matmul.rs per shape): each workgroup of 16×16 invocations computes a
// BM×BN tile of C (128×128 or 64×64); each invocation a TM×TN block of it (8×8 or 4×4) held in
// registers, as rows g·64 + ty·4 + 0..3 and columns h·64 + tx·4 + 0..3, so that its operand
// reads from workgroup memory are vec4s and neighbouring invocations read neighbouring vec4s.
// K is walked BK at a time; while one slab of A and B is multiplied from workgroup memory, the
// next is already being fetched from global memory into registers. Workgroup rows are padded
// by 4 floats so the transposing stores do not collide in memory banks. Bounds are only
// checked in edge tiles.
//
// Operands are read through (row, column) strides, so a transposed operand is read in place;
// A_ALONG_K / B_ALONG_N say which way each is contiguous, so that neighbouring invocations
// fetch neighbouring addresses. Batch offsets come from batch coordinates and per-operand
// batch strides (0 = broadcast).

const BM: u32 = 64u; // @BM
const BN: u32 = 64u; // @BN
const BK: u32 = 16u; // @BK
const A_ALONG_K: bool = true; // @A_ALONG_K
const B_ALONG_N: bool = true; // @B_ALONG_N

const TM: u32 = BM / 16u;
const TN: u32 = BN / 16u;
const RG: u32 = TM / 4u; // row groups of 4 per invocation
const CG: u32 = TN / 4u; // column groups of 4 per invocation
const A_STRIDE: u32 = BM + 4u;
const B_STRIDE: u32 = BN + 4u;
const LOADS_A: u32 = BM * BK / 256u;
const LOADS_B: u32 = BN * BK / 256u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch_rank: u32,
    a_row: u32, // stride between rows of op(A)
    a_col: u32, // stride between columns of op(A)
    b_row: u32,
    b_col: u32,
    batch_shape: vec4<u32>,
    a_batch: vec4<u32>,
    b_batch: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<vec4<f32>, A_STRIDE * BK / 4u>; // [k][m], row stride A_STRIDE
var<workgroup> b_tile: array<vec4<f32>, B_STRIDE * BK / 4u>; // [k][n], row stride B_STRIDE

// Which (row, k) of the A slab load i of invocation `tid` fetches.
fn a_slot(tid: u32, i: u32) -> vec2<u32> {
    let idx = tid + 256u * i;
    if A_ALONG_K {
        return vec2<u32>(idx / BK, idx % BK);
    }
    return vec2<u32>(idx % BM, idx / BM);
}

// Which (k, column) of the B slab load i of invocation `tid` fetches.
fn b_slot(tid: u32, i: u32) -> vec2<u32> {
    let idx = tid + 256u * i;
    if B_ALONG_N {
        return vec2<u32>(idx / BN, idx % BN);
    }
    return vec2<u32>(idx % BK, idx / BK);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    // batch coordinates → operand offsets
    var rest = wg.z;
    var a_base = 0u;
    var b_base = 0u;
    for (var d = i32(p.batch_rank) - 1; d >= 0; d--) {
        let u = u32(d);
        let coord = rest % p.batch_shape[u];
        rest = rest / p.batch_shape[u];
        a_base += coord * p.a_batch[u];
        b_base += coord * p.b_batch[u];
    }
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let edge = row0 + BM > p.m || col0 + BN > p.n;

    var acc: array<vec4<f32>, RG * 4u * CG>;
    var next_a: array<f32, LOADS_A>;
    var next_b: array<f32, LOADS_B>;
    let slabs = (p.k + BK - 1u) / BK;

    // fetch slab s into registers (checked only at the edges of C and at the end of K)
    for (var s = 0u; s <= slabs; s++) {
        if s > 0u {
            // the slab fetched last round goes to workgroup memory
            for (var i = 0u; i < LOADS_A; i++) {
                let at = a_slot(tid, i);
                let flat = at.y * A_STRIDE + at.x;
                a_tile[flat / 4u][flat % 4u] = next_a[i];
            }
            for (var i = 0u; i < LOADS_B; i++) {
                let at = b_slot(tid, i);
                let flat = at.x * B_STRIDE + at.y;
                b_tile[flat / 4u][flat % 4u] = next_b[i];
            }
            workgroupBarrier();
        }
        if s < slabs {
            let k0 = s * BK;
            let checked = edge || k0 + BK > p.k;
            for (var i = 0u; i < LOADS_A; i++) {
                let at = a_slot(tid, i);
                let row = row0 + at.x;
                let kk = k0 + at.y;
                var v = 0.0;
                if !checked || (row < p.m && kk < p.k) {
                    v = a[a_base + row * p.a_row + kk * p.a_col];
                }
                next_a[i] = v;
            }
            for (var i = 0u; i < LOADS_B; i++) {
                let at = b_slot(tid, i);
                let kk = k0 + at.x;
                let col = col0 + at.y;
                var v = 0.0;
                if !checked || (kk < p.k && col < p.n) {
                    v = b[b_base + kk * p.b_row + col * p.b_col];
                }
                next_b[i] = v;
            }
        }
        if s > 0u {
            for (var kk = 0u; kk < BK; kk++) {
                var av: array<vec4<f32>, RG>;
                var bv: array<vec4<f32>, CG>;
                for (var g = 0u; g < RG; g++) {
                    av[g] = a_tile[(kk * A_STRIDE) / 4u + g * 16u + lid.y];
                }
                for (var h = 0u; h < CG; h++) {
                    bv[h] = b_tile[(kk * B_STRIDE) / 4u + h * 16u + lid.x];
                }
                for (var g = 0u; g < RG; g++) {
                    for (var j = 0u; j < 4u; j++) {
                        let x = av[g][j];
                        for (var h = 0u; h < CG; h++) {
                            acc[(g * 4u + j) * CG + h] = fma(vec4<f32>(x), bv[h], acc[(g * 4u + j) * CG + h]);
                        }
                    }
                }
            }
            workgroupBarrier();
        }
    }

    let c_base = wg.z * p.m * p.n;
    for (var g = 0u; g < RG; g++) {
        for (var j = 0u; j < 4u; j++) {
            let row = row0 + g * 64u + lid.y * 4u + j;
            if edge && row >= p.m {
                continue;
            }
            for (var h = 0u; h < CG; h++) {
                let col = col0 + h * 64u + lid.x * 4u;
                let v = acc[(g * 4u + j) * CG + h];
                for (var e = 0u; e < 4u; e++) {
                    if !edge || col + e < p.n {
                        c[c_base + row * p.n + col + e] = v[e];
                    }
                }
            }
        }
    }
}
