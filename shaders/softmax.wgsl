// Softmax / log-softmax: one workgroup per row. Each invocation folds its share of the row into
// a running (max, sum of exp(x − max)) pair in one pass; the pairs merge in a tree; then the
// row is written. Rows may be strided (softmax along an inner axis).

struct Params {
    rows: u32,
    size: u32,  // elements per row
    inner: u32, // distance between a row's elements
    log: u32,   // 1 for log-softmax
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;

var<workgroup> maxes: array<f32, WG>;
var<workgroup> sums: array<f32, WG>;

// Merges two (max, sum) pairs; a pair with sum 0 holds nothing. A pair whose max is the merged
// one needs no rescaling — and must not get it when both are −∞ (masked entries), where
// m1 − m would be NaN.
fn merge(m1: f32, s1: f32, m2: f32, s2: f32) -> vec2<f32> {
    if s1 == 0.0 {
        return vec2<f32>(m2, s2);
    }
    if s2 == 0.0 {
        return vec2<f32>(m1, s1);
    }
    let m = max(m1, m2);
    let scale1 = select(exp(m1 - m), 1.0, m1 == m);
    let scale2 = select(exp(m2 - m), 1.0, m2 == m);
    return vec2<f32>(m, s1 * scale1 + s2 * scale2);
}

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.rows;
    let base = (row / p.inner) * p.size * p.inner + row % p.inner;
    var m = 0.0;
    var s = 0.0;
    if live {
        for (var j = lid; j < p.size; j += WG) {
            let v = x[base + j * p.inner];
            let r = merge(m, s, v, 1.0);
            m = r.x;
            s = r.y;
        }
    }
    maxes[lid] = m;
    sums[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            let r = merge(maxes[lid], sums[lid], maxes[lid + stride], sums[lid + stride]);
            maxes[lid] = r.x;
            sums[lid] = r.y;
        }
        workgroupBarrier();
    }
    let row_max = maxes[0];
    let row_sum = sums[0];
    if !live {
        return;
    }
    let log_sum = log(row_sum);
    for (var j = lid; j < p.size; j += WG) {
        let i = base + j * p.inner;
        let z = x[i] - row_max;
        if p.log == 1u {
            y[i] = z - log_sum;
        } else {
            y[i] = exp(z) / row_sum;
        }
    }
}

// The one-pass variant for contiguous rows of up to 256·4·PER elements (a multiple of 4): each
// invocation reads its vec4s once into registers, the row's (max, sum) pairs merge in a tree,
// and the outputs are written from the registers — one read and one write per element.

// vec4s per invocation
const PER: u32 = 4u; // @PER

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn softmax_cached(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.rows;
    let width = p.size / 4u;
    let base = row * width;
    var v: array<vec4<f32>, PER>;
    var m = bitcast<f32>(0xff800000u); // −∞
    for (var i = 0u; i < PER; i++) {
        let j = lid + i * WG;
        if live && j < width {
            v[i] = x4[base + j];
            m = max(m, max(max(v[i].x, v[i].y), max(v[i].z, v[i].w)));
        }
    }
    // an invocation whose entries are all −∞ (masked) holds nothing: exp(−∞ − −∞) is NaN
    var s = 0.0;
    for (var i = 0u; i < PER; i++) {
        if live && lid + i * WG < width && m != bitcast<f32>(0xff800000u) {
            let e = exp(v[i] - m);
            s += e.x + e.y + e.z + e.w;
        }
    }
    maxes[lid] = m;
    sums[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            let r = merge(maxes[lid], sums[lid], maxes[lid + stride], sums[lid + stride]);
            maxes[lid] = r.x;
            sums[lid] = r.y;
        }
        workgroupBarrier();
    }
    let row_max = maxes[0];
    let row_sum = sums[0];
    if !live {
        return;
    }
    let log_sum = log(row_sum);
    for (var i = 0u; i < PER; i++) {
        let j = lid + i * WG;
        if j < width {
            let z = v[i] - row_max;
            if p.log == 1u {
                y4[base + j] = z - log_sum;
            } else {
                y4[base + j] = exp(z) / row_sum;
            }
        }
    }
}
