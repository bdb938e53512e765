// @library: the tiled GEMM core, prepended to matmul.wgsl and conv.wgsl (see
// src/backend/wgpu/pipeline.rs), which supply the operands through three hooks:
//     fn load_a(row: u32, kk: u32) -> f32      element (row, kk) of op(A), in range
//     fn load_b(kk: u32, col: u32) -> f32      element (kk, col) of op(B), in range
//     fn store_c(row: u32, col: u32, v: f32)   element (row, col) of C, in range
// and may precompute per-invocation state in `prepare_b(col)`, called once for the one column
// of B this invocation fetches (with B_ALONG_N) before the K loop.
//
// Tiling: a workgroup of 16×16 invocations computes a BM×BN tile of C (128×128 or 64×64); each
// invocation a TM×TN block of it held in registers, as rows g·64 + ty·4 + 0..3 and columns
// h·64 + tx·4 + 0..3, so that its reads from workgroup memory are vec4s and neighbouring
// invocations read neighbouring vec4s. K is walked BK at a time; while one slab of A and B is
// multiplied from workgroup memory, the next is already being fetched into registers.
// Workgroup rows are padded by 4 floats so the transposing stores do not collide in memory
// banks. Bounds are checked only in edge tiles and in the last slab.

const BM: u32 = 64u; // @BM
const BN: u32 = 64u; // @BN
const BK: u32 = 16u; // @BK
// Which way each operand is contiguous, so neighbouring invocations fetch neighbouring
// addresses.
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

// C[row0.., col0..] for the GEMM of size (m, n, k); K runs over k_begin..k_end.
fn gemm_tile(row0: u32, col0: u32, m: u32, n: u32, k_begin: u32, k_end: u32, lid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let edge = row0 + BM > m || col0 + BN > n;
    if B_ALONG_N {
        prepare_b(col0 + tid % BN);
    }
    var acc: array<vec4<f32>, RG * 4u * CG>;
    var next_a: array<f32, LOADS_A>;
    var next_b: array<f32, LOADS_B>;
    let slabs = (k_end - k_begin + BK - 1u) / BK;
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
            let k0 = k_begin + s * BK;
            let checked = edge || k0 + BK > k_end;
            for (var i = 0u; i < LOADS_A; i++) {
                let at = a_slot(tid, i);
                let row = row0 + at.x;
                let kk = k0 + at.y;
                var v = 0.0;
                if !checked || (row < m && kk < k_end) {
                    v = load_a(row, kk);
                }
                next_a[i] = v;
            }
            for (var i = 0u; i < LOADS_B; i++) {
                let at = b_slot(tid, i);
                let kk = k0 + at.x;
                let col = col0 + at.y;
                var v = 0.0;
                if !checked || (kk < k_end && col < n) {
                    v = load_b(kk, col);
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
    for (var g = 0u; g < RG; g++) {
        for (var j = 0u; j < 4u; j++) {
            let row = row0 + g * 64u + lid.y * 4u + j;
            if edge && row >= m {
                continue;
            }
            for (var h = 0u; h < CG; h++) {
                let col = col0 + h * 64u + lid.x * 4u;
                let v = acc[(g * 4u + j) * CG + h];
                for (var e = 0u; e < 4u; e++) {
                    if !edge || col + e < n {
                        store_c(row, col + e, v[e]);
                    }
                }
            }
        }
    }
}
