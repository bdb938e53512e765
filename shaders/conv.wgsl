// @requires gemm.wgsl
// 2-D convolution (NCHW, stride, padding, dilation, groups) and its two gradients as implicit
// GEMMs on the tiled core of gemm.wgsl: the im2col matrix is never stored; its elements are
// computed by the loaders. Workgroups along z are channel groups (times K splits for the
// weight gradient), on a grid the recorder may fold (see common.wgsl). PASS is set per pipeline:
//
//   0 forward      C[o][n·P+pix]   = Σ_k W[o][k] · im2col(x)[k][n·P+pix],  k = (ci, i, j)
//   1 input_grad   C[ci][n·HW+xy]  = Σ_k Wᵀ[ci][k] · col(dy)[k][n·HW+xy],  k = (o, i, j)
//   2 weight_grad  C[o][(ci,i,j)]  = Σ_k dy[o][k] · im2col(x)ᵀ[k][(ci,i,j)], k = (n, pix)
//
// A small table from the host turns a kernel index into offsets without division: entry k
// is (weight offset, gradient-plane offset, i·dh, j·dw), or for passes 0 and 2 entry (ci,i,j)
// is (ci·H·W, 0, i·dh, j·dw). E is the element type of the operands and the output: f32, or f16
// for the forward pass and the input gradient (read into f32, accumulated in f32, rounded once
// on the store). src/ops/conv.rs may splice a fused chain into the forward pass's or the input
// gradient's store (an epilogue: a bias and an activation; see src/ops/epilogue.rs).
//
// With ONES = 1 the weight gradient also sums dy over (n, pix) for each output channel — the
// bias's gradient — as column gemm_n of C, from a column of ones appended to im2col(x)ᵀ
// (src/graph/siblings.rs). Each K split's slab then holds the weights' partial sums followed
// by the O channel sums, and so does the output.

const PASS: u32 = 0u; // @PASS
const ONES: u32 = 0u; // @ONES
alias E = f32; // @E

struct Params {
    n: u32, c: u32, h: u32, w: u32,
    o: u32, kh: u32, kw: u32, oh: u32,
    ow: u32, groups: u32, sh: u32, sw: u32,
    ph: u32, pw: u32, dh: u32, dw: u32,
    gemm_m: u32, gemm_n: u32, gemm_k: u32, splits: u32,
    chunk: u32, pad0: u32, pad1: u32, pad2: u32,
    // @FIELDS
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> first: array<E>;  // x (passes 0, 2) or dy (pass 1)
@group(0) @binding(2) var<storage, read> second: array<E>; // w (passes 0, 1) or dy (pass 2)
@group(0) @binding(3) var<storage, read> table: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read_write> out: array<E>; // @OUTPUTS

// This workgroup's channel group and K split, and the state prepare_b leaves for load_b.
var<private> group_index: u32;
var<private> split: u32;
var<private> col_base: u32;
var<private> col_y: i32;
var<private> col_x: i32;

fn cg() -> u32 {
    return p.c / p.groups;
}

fn og() -> u32 {
    return p.o / p.groups;
}

fn taps() -> u32 {
    return p.kh * p.kw;
}

fn load_a(row: u32, kk: u32) -> f32 {
    if PASS == 0u {
        // W[g·og + row][kk]
        return f32(second[(group_index * og() + row) * p.gemm_k + kk]);
    }
    if PASS == 1u {
        // W[g·og + o][row][i][j] with kk = (o, i, j): the table holds o·cg·taps + i·kw + j
        return f32(second[group_index * og() * cg() * taps() + u32(table[kk].x) + row * taps()]);
    }
    // dy[n][g·og + row][pix] with kk = n·P + pix
    let plane = p.oh * p.ow;
    let n = kk / plane;
    return f32(second[(n * p.o + group_index * og() + row) * plane + kk % plane]);
}

fn prepare_b(col: u32) {
    if PASS == 0u {
        // output pixel col = n·P + pix: its image's input group and its window's corner
        let plane = p.oh * p.ow;
        let n = col / plane;
        let pix = col % plane;
        col_base = (n * p.c + group_index * cg()) * p.h * p.w;
        col_y = i32((pix / p.ow) * p.sh) - i32(p.ph);
        col_x = i32((pix % p.ow) * p.sw) - i32(p.pw);
    } else if PASS == 1u {
        // input pixel col = n·HW + (y, x): its image's dy group and its padded position
        let plane = p.h * p.w;
        let n = col / plane;
        let pix = col % plane;
        col_base = (n * p.o + group_index * og()) * p.oh * p.ow;
        col_y = i32(pix / p.w + p.ph);
        col_x = i32(pix % p.w + p.pw);
    }
}

fn load_b(kk: u32, col: u32) -> f32 {
    if PASS == 0u {
        let t = table[kk];
        let y = col_y + t.z;
        let x = col_x + t.w;
        if y < 0 || y >= i32(p.h) || x < 0 || x >= i32(p.w) {
            return 0.0;
        }
        return f32(first[col_base + u32(t.x) + u32(y) * p.w + u32(x)]);
    }
    if PASS == 1u {
        // the output position whose tap (i, j) lands on this input pixel, if any
        let t = table[kk];
        let ty = col_y - t.z;
        let tx = col_x - t.w;
        if ty < 0 || tx < 0 || u32(ty) % p.sh != 0u || u32(tx) % p.sw != 0u {
            return 0.0;
        }
        let oy = u32(ty) / p.sh;
        let ox = u32(tx) / p.sw;
        if oy >= p.oh || ox >= p.ow {
            return 0.0;
        }
        return f32(first[col_base + u32(t.y) + oy * p.ow + ox]);
    }
    if ONES == 1u && col == p.gemm_n {
        return 1.0;
    }
    // im2col(x)ᵀ[kk = n·P + pix][col = (ci, i, j)]
    let t = table[col];
    let plane = p.oh * p.ow;
    let n = kk / plane;
    let pix = kk % plane;
    let y = i32((pix / p.ow) * p.sh) - i32(p.ph) + t.z;
    let x = i32((pix % p.ow) * p.sw) - i32(p.pw) + t.w;
    if y < 0 || y >= i32(p.h) || x < 0 || x >= i32(p.w) {
        return 0.0;
    }
    return f32(first[(n * p.c + group_index * cg()) * p.h * p.w + u32(t.x) + u32(y) * p.w + u32(x)]);
}

// Where C's element (row, col) goes in the output.
fn output_index(row: u32, col: u32) -> u32 {
    if PASS == 0u {
        let plane = p.oh * p.ow;
        return ((col / plane) * p.o + group_index * og() + row) * plane + col % plane;
    }
    if PASS == 1u {
        let plane = p.h * p.w;
        return ((col / plane) * p.c + group_index * cg() + row) * plane + col % plane;
    }
    // one slab of partial sums per K split: the weights', then the channel sums if any
    let channel = group_index * og() + row;
    let slab = split * slab_size();
    if ONES == 1u && col == p.gemm_n {
        return slab + p.o * p.gemm_n + channel;
    }
    return slab + channel * p.gemm_n + col;
}

// The elements of one slab of the weight gradient's output.
fn slab_size() -> u32 {
    return p.o * p.gemm_n + ONES * p.o;
}

// @EPILOGUE

fn store_c(row: u32, col: u32, v: f32) {
    let i = output_index(row, col);
    out[i] = E(v); // @STORE
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    // the grid is (column tiles, row tiles, channel groups × K splits)
    let columns = p.gemm_n + ONES;
    let tile = grid_workgroup(wg, groups, (columns + BN - 1u) / BN, (p.gemm_m + BM - 1u) / BM);
    if tile.z >= p.groups * p.splits {
        return; // a spare workgroup of a folded grid (uniformly: no barrier is skipped)
    }
    group_index = tile.z / p.splits;
    split = tile.z % p.splits;
    let k_begin = split * p.chunk;
    let k_end = min(p.gemm_k, k_begin + p.chunk);
    gemm_tile(tile.y * BM, tile.x * BN, p.gemm_m, columns, k_begin, k_end, lid);
}

@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> summed: array<f32>;

// The weight gradient (and the channel sums): the sum of the K splits' partial sums.
@compute @workgroup_size(256)
fn sum_splits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    let size = slab_size();
    if i >= size {
        return;
    }
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        acc += partial[s * size + i];
    }
    summed[i] = acc;
}
