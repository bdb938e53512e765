// Batched matrix multiplication C = op(A)·op(B), C row-major (M×N) per batch.
//
// Each workgroup computes a 64×64 tile of C; each of its 16×16 invocations a 4×4 block, kept in
// registers. K is walked in steps of 16: both operand tiles go through workgroup memory, stored
// k-major so the inner loop reads four consecutive values of each.
// Operands are read through (row, column) strides, so transposed operands cost nothing extra;
// batch offsets come from the batch coordinates and per-operand batch strides (0 = broadcast).

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

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>; // [DEPTH][TILE]: a_tile[kk * TILE + row]
var<workgroup> b_tile: array<f32, 1024>; // [DEPTH][TILE]: b_tile[kk * TILE + col]

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
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;

    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += DEPTH) {
        for (var i = 0u; i < 4u; i++) {
            let idx = tid + 256u * i;
            // A: 64 rows × 16 depth
            let r = idx / DEPTH;
            let ka = idx % DEPTH;
            var va = 0.0;
            if row0 + r < p.m && k0 + ka < p.k {
                va = a[a_base + (row0 + r) * p.a_row + (k0 + ka) * p.a_col];
            }
            a_tile[ka * TILE + r] = va;
            // B: 16 depth × 64 columns
            let kb = idx / TILE;
            let col = idx % TILE;
            var vb = 0.0;
            if k0 + kb < p.k && col0 + col < p.n {
                vb = b[b_base + (k0 + kb) * p.b_row + (col0 + col) * p.b_col];
            }
            b_tile[kb * TILE + col] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < DEPTH; kk++) {
            let ar = kk * TILE + lid.y * 4u;
            let bc = kk * TILE + lid.x * 4u;
            let av = vec4<f32>(a_tile[ar], a_tile[ar + 1u], a_tile[ar + 2u], a_tile[ar + 3u]);
            let bv = vec4<f32>(b_tile[bc], b_tile[bc + 1u], b_tile[bc + 2u], b_tile[bc + 3u]);
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
        workgroupBarrier();
    }
    let c_base = wg.z * p.m * p.n;
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y * 4u + i;
        if row >= p.m {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x * 4u + j;
            if col < p.n {
                c[c_base + row * p.n + col] = acc[i][j];
            }
        }
    }
}
