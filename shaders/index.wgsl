// Indexing by integer tensors. T is the element type, I the index type (src/ops/index.rs sets
// both). gather/index_select read at indices; scatter_add/index_add add at indices into an
// output that already holds a copy of x, with atomics (a compare-and-swap loop for f32).
// Out-of-range indices are skipped (gather reads them as 0) and reported with `report_fault`
// (appended by the recorder): the realize then fails with the index's position.
//
// gather and index_select store through `store_y`: src/ops/index.rs may splice a fused chain of
// elementwise ops there (an epilogue, `ops/epilogue.rs`: an embedding's lookup plus its
// positions), T being f32 then.

alias T = f32; // @T
alias I = i32; // @I

struct Params {
    n: u32,      // elements of the iterated space
    rank: u32,
    axis: u32,
    bound: u32,  // x's size along the axis
    inner: u32,  // 1-D forms: elements after the axis
    k: u32,      // 1-D forms: index length
    fault_word: u32,
    pad0: u32,
    shape: Dims,   // the iterated space
    strides: Dims, // x's strides
    // @FIELDS
}

@group(0) @binding(0) var<uniform> p: Params;

fn linear(wg: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return flat_workgroup(wg, groups) * 256u + lid;
}

// Offset into x of element i of the iterated space when its axis coordinate is replaced by j.
fn offset_with(i: u32, j: u32) -> u32 {
    var rest = i;
    var off = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let u = u32(d);
        let size = dims_at(p.shape, u);
        var c = rest % size;
        rest = rest / size;
        if u == p.axis {
            c = j;
        }
        off += c * dims_at(p.strides, u);
    }
    return off;
}

// Offset into x for the 1-D forms: element i = (outer, j, inner) of the space, index value v.
fn offset_1d(i: u32, v: u32) -> u32 {
    let o = i / (p.k * p.inner);
    let r = i % p.inner;
    return (o * p.bound + v) * p.inner + r;
}

@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> index: array<I>;
@group(0) @binding(3) var<storage, read_write> y: array<T>; // @OUTPUTS

// @EPILOGUE

fn store_y(i: u32, v: T) {
    y[i] = v; // @STORE
}

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, groups, lid);
    if i >= p.n {
        return;
    }
    let j = u32(index[i]);
    if j < p.bound {
        store_y(i, x[offset_with(i, j)]);
    } else {
        store_y(i, T(0));
        report_fault(p.fault_word, i);
    }
}

@compute @workgroup_size(256)
fn index_select(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, groups, lid);
    if i >= p.n {
        return;
    }
    let at = i / p.inner % p.k;
    let j = u32(index[at]);
    if j < p.bound {
        store_y(i, x[offset_1d(i, j)]);
    } else {
        store_y(i, T(0));
        report_fault(p.fault_word, at);
    }
}

@group(0) @binding(1) var<storage, read> scatter_index: array<I>;
@group(0) @binding(2) var<storage, read> src: array<T>;
@group(0) @binding(3) var<storage, read_write> acc: array<atomic<u32>>;

fn atomic_add_f32(t: u32, v: f32) {
    var old = atomicLoad(&acc[t]);
    loop {
        let r = atomicCompareExchangeWeak(&acc[t], old, bitcast<u32>(bitcast<f32>(old) + v));
        if r.exchanged {
            break;
        }
        old = r.old_value;
    }
}

fn add_at(t: u32, v: T) {
    atomic_add_f32(t, v); // @add
}

@compute @workgroup_size(256)
fn scatter_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, groups, lid);
    if i >= p.n {
        return;
    }
    let j = u32(scatter_index[i]);
    if j < p.bound {
        add_at(offset_with(i, j), src[i]);
    } else {
        report_fault(p.fault_word, i);
    }
}

@compute @workgroup_size(256)
fn index_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, groups, lid);
    if i >= p.n {
        return;
    }
    let at = i / p.inner % p.k;
    let j = u32(scatter_index[at]);
    if j < p.bound {
        add_at(offset_1d(i, j), src[i]);
    } else {
        report_fault(p.fault_word, at);
    }
}
