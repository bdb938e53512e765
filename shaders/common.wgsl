// Prepended to every kiln shader (see src/backend/wgpu/pipeline.rs).
//
// Binding convention: @binding(0) is the op's parameter struct, then the buffers read, then the
// buffers written. Grids with more than 65,535 workgroups along a dimension are folded onto two
// dimensions by the recorder (see `Grid` in src/backend/wgpu/recorder.rs): workgroups numbered
// x fastest, laid out row by row, with spare ones at the end. `flat_workgroup` and
// `grid_workgroup` unfold them, and give the same answer on a grid that was not folded.

// The linear index of this workgroup in a (possibly folded) 1-D grid.
fn flat_workgroup(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.x + wg.y * groups.x;
}

// Out-of-range indices (src/backend/wgpu/faults.rs): kernels that read indices skip a bad one and
// call report_fault with the fault word the recorder gave them and the bad element's position.
// Only kernels built `with_fault_reports` use it (and get this binding); a word keeps the smallest
// position as u32::MAX − position, so 0 means none.
@group(0) @binding(15) var<storage, read_write> faults: array<atomic<u32>>;

fn report_fault(word: u32, position: u32) {
    atomicMax(&faults[word], 0xffffffffu - position);
}

// The (x, y, z) of this workgroup in a (possibly folded) 3-D grid of width `size_x` and height
// `size_y`. A spare workgroup of a folded grid gets a z past the grid's last.
fn grid_workgroup(wg: vec3<u32>, groups: vec3<u32>, size_x: u32, size_y: u32) -> vec3<u32> {
    let flat = wg.x + groups.x * (wg.y + groups.y * wg.z);
    return vec3<u32>(flat % size_x, (flat / size_x) % size_y, flat / (size_x * size_y));
}

// Shapes and strides of up to 8 dimensions travel in parameter blocks as two vec4s.
alias Dims = array<vec4<u32>, 2>;

// Entry k of a Dims.
fn dims_at(a: Dims, k: u32) -> u32 {
    return a[k / 4u][k % 4u];
}

// The offsets, under three stride sets at once, of element i in row-major order of `shape`
// (`rank` dimensions): one unravelling of i for up to three operands (pass zeros for unused).
fn strided_offsets(i: u32, rank: u32, shape: Dims, s0: Dims, s1: Dims, s2: Dims) -> vec3<u32> {
    var rest = i;
    var off = vec3<u32>(0u);
    for (var d = i32(rank) - 1; d >= 0; d--) {
        let k = u32(d);
        let size = dims_at(shape, k);
        let c = rest % size;
        rest = rest / size;
        off += c * vec3<u32>(dims_at(s0, k), dims_at(s1, k), dims_at(s2, k));
    }
    return off;
}

// Reductions over one workgroup of ROW_WG invocations, for kernels that give each row of a
// tensor one workgroup (softmax, cross-entropy, layer norm, batch-norm statistics): `row_sum`,
// `row_sum2`, `row_max_exp` and `row_welford`. They come from one of two files placed after this
// prelude (src/backend/wgpu/pipeline.rs): rows.wgsl (trees in workgroup memory, on every
// adapter) or rows_subgroup.wgsl (subgroup operations, where the adapter has them). Every
// invocation must call them (they hold barriers) and each gets the result; the scratch is free
// again when they return.
const ROW_WG: u32 = 256u;
var<workgroup> row_scratch0: array<f32, ROW_WG>;
var<workgroup> row_scratch1: array<f32, ROW_WG>;
var<workgroup> row_scratch2: array<f32, ROW_WG>;

// Merges two (max, Σ exp(x − max)) pairs of an online softmax; a pair with sum 0 holds nothing.
// A pair whose max is the merged one needs no rescaling — and must not get it when both are −∞
// (masked entries), where a.x − m would be NaN.
fn merge_max_exp(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    if a.y == 0.0 {
        return b;
    }
    if b.y == 0.0 {
        return a;
    }
    let m = max(a.x, b.x);
    let scale_a = select(exp(a.x - m), 1.0, a.x == m);
    let scale_b = select(exp(b.x - m), 1.0, b.x == m);
    return vec2<f32>(m, a.y * scale_a + b.y * scale_b);
}

// Merges two Welford accumulators (count, mean, M2) with Chan et al.'s parallel formula.
fn merge_welford(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let total = a.x + b.x;
    if total == 0.0 {
        return a;
    }
    let d = b.y - a.y;
    return vec3<f32>(total, a.y + d * b.x / total, a.z + b.z + d * d * a.x * b.x / total);
}
