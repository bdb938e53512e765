// @requires reduce_tree.wgsl
// Reductions. The input is walked as kept dimensions (one per output element) times reduced
// dimensions (combined into one result); both come collapsed with their strides. The element
// type T and the combining expression are set by src/ops/reduce.rs; `init` is the identity's bits.
// src/ops/reduce.rs may splice a fused chain into the store of an f32 result (an epilogue: a
// mean's division; see src/ops/epilogue.rs), or into load_x, which then computes each element
// it reads from the chain's inputs (a prologue: the squared error a mean reduces).

alias T = f32; // @T

struct Params {
    n_out: u32, // outputs written: kept elements × parts
    count: u32, // elements combined per kept element
    kept_rank: u32,
    reduced_rank: u32,
    init: u32,
    parts: u32, // per_workgroup: each kept element's elements split into this many runs
    chunk: u32, // the elements of one run (count when parts is 1)
    pad0: u32,
    kept_shape: Dims,
    kept_strides: Dims,
    reduced_shape: Dims,
    reduced_strides: Dims,
    // @FIELDS
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>; // @OUTPUTS

fn combine(a: T, b: T) -> T {
    return a + b; // @combine
}

// Offset of the first element that output `o` combines.
fn base_offset(o: u32) -> u32 {
    return strided_offsets(o, p.kept_rank, p.kept_shape, p.kept_strides, Dims(), Dims()).x;
}

// Offset of the r-th combined element relative to the base.
fn reduced_offset(r: u32) -> u32 {
    return strided_offsets(r, p.reduced_rank, p.reduced_shape, p.reduced_strides, Dims(), Dims()).x;
}

var<workgroup> partial: array<T, 256>;

// @EPILOGUE

// @PROLOGUE

// Element `at` of the input.
fn load_x(at: u32) -> T {
    return x[at]; // @LOAD
}

// Writes result v of output i.
fn store_y(i: u32, v: T) {
    y[i] = v; // @STORE
}

// One workgroup per output: threads stride over the combined elements, then combine across the
// workgroup (`workgroup_combine`, from reduce_tree.wgsl or reduce_subgroup.wgsl as the adapter
// allows). Output o combines run o % parts (elements [run·chunk, run·chunk + chunk)) of kept
// element o / parts: a long reduction is split into runs whose results a second pass combines.
@compute @workgroup_size(256)
fn per_workgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let o = flat_workgroup(wg, groups);
    // o is uniform across the workgroup, so every thread reaches the barriers below
    let live = o < p.n_out;
    var acc = bitcast<T>(p.init);
    if live {
        let base = base_offset(o / p.parts);
        let begin = (o % p.parts) * p.chunk;
        let end = min(p.count, begin + p.chunk);
        for (var r = begin + lid; r < end; r += 256u) {
            acc = combine(acc, load_x(base + reduced_offset(r)));
        }
    }
    let total = workgroup_combine(acc, lid);
    if live && lid == 0u {
        store_y(o, total);
    }
}

// One thread per output: neighbouring threads read neighbouring kept elements.
@compute @workgroup_size(256)
fn per_thread(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let o = flat_workgroup(wg, groups) * 256u + lid;
    if o >= p.n_out {
        return;
    }
    let base = base_offset(o);
    var acc = bitcast<T>(p.init);
    for (var r = 0u; r < p.count; r++) {
        acc = combine(acc, load_x(base + reduced_offset(r)));
    }
    store_y(o, acc);
}

struct ArgParams {
    n_out: u32,
    size: u32,  // length of the axis
    inner: u32, // elements after the axis
    is_max: u32,
}

@group(0) @binding(0) var<uniform> ap: ArgParams;
@group(0) @binding(2) var<storage, read_write> indices: array<i32>;

// argmax / argmin along one axis, one thread per output, first index on ties.
@compute @workgroup_size(256)
fn arg_extreme(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let o = flat_workgroup(wg, groups) * 256u + lid;
    if o >= ap.n_out {
        return;
    }
    let base = (o / ap.inner) * ap.size * ap.inner + o % ap.inner;
    var best = 0u;
    var best_value = x[base];
    for (var k = 1u; k < ap.size; k++) {
        let v = x[base + k * ap.inner];
        let better = select((v < best_value), (v > best_value), ap.is_max == 1u);
        if better {
            best = k;
            best_value = v;
        }
    }
    indices[o] = i32(best);
}
