// @requires gemm.wgsl
// Batched matrix multiplication C = op(A)·op(B), C row-major (M×N) per batch, on the tiled
// GEMM core of gemm.wgsl. Operands are read through (row, column) strides, so a transposed
// operand is read in place. Batch offsets come from the batch coordinates and per-operand
// batch strides (0 = broadcast). src/ops/matmul.rs may splice a fused chain of elementwise ops
// into the store (an epilogue: a bias and an activation): then the marked lines hold the chain's
// parameter fields, bindings and functions (src/ops/fused.rs), and the store computes the
// chain at element i of C from the accumulated value v. E is the operands' and the product's
// element type: f32, or f16 (read into f32, accumulated in f32, rounded once on the store).
//
// With ONES set, the same GEMM also sums one operand along K (a bias's gradient beside its
// weight's, as cuBLASLt's bias-gradient epilogues do): 1 appends a column of ones to op(B), so
// column n of the product is the sums of op(A)'s rows; 2 appends a row of ones to op(A), so row
// m is the sums of op(B)'s columns. That extra line of C goes to `sums` (f32), bound after c.

alias E = f32; // @E
const ONES: u32 = 0u; // @ONES

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
    // @FIELDS
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<E>;
@group(0) @binding(2) var<storage, read> b: array<E>;
@group(0) @binding(3) var<storage, read_write> c: array<E>; // @OUTPUTS
// @SUMS

// This workgroup's batch offsets.
var<private> a_base: u32;
var<private> b_base: u32;
var<private> c_base: u32;

fn load_a(row: u32, kk: u32) -> f32 {
    if ONES == 2u && row == p.m {
        return 1.0;
    }
    return f32(a[a_base + row * p.a_row + kk * p.a_col]);
}

fn prepare_b(col: u32) {}

fn load_b(kk: u32, col: u32) -> f32 {
    if ONES == 1u && col == p.n {
        return 1.0;
    }
    return f32(b[b_base + kk * p.b_row + col * p.b_col]);
}

// @EPILOGUE

fn store_c(row: u32, col: u32, v: f32) {
    // @STORE_SUMS
    let i = c_base + row * p.n + col;
    c[i] = E(v); // @STORE
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    // the grid is (column tiles, row tiles, batches); unused batch dimensions hold 1
    let batches = p.batch_shape.x * p.batch_shape.y * p.batch_shape.z * p.batch_shape.w;
    // C with its line of sums, if any
    let rows = p.m + u32(ONES == 2u);
    let columns = p.n + u32(ONES == 1u);
    let tile = grid_workgroup(wg, groups, (columns + BN - 1u) / BN, (rows + BM - 1u) / BM);
    if tile.z >= batches {
        return; // a spare workgroup of a folded grid (uniformly: no barrier is skipped)
    }
    // batch coordinates → operand offsets
    var rest = tile.z;
    for (var d = i32(p.batch_rank) - 1; d >= 0; d--) {
        let u = u32(d);
        let coord = rest % p.batch_shape[u];
        rest = rest / p.batch_shape[u];
        a_base += coord * p.a_batch[u];
        b_base += coord * p.b_batch[u];
    }
    c_base = tile.z * p.m * p.n;
    gemm_tile(tile.y * BM, tile.x * BN, rows, columns, 0u, p.k, lid);
}
