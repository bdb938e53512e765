// Softmax / log-softmax: one workgroup per row. Each invocation folds its share of the row into
// a running (max, sum of exp(x − max)) pair in one pass; the pairs merge in a tree; then the
// row is written. Rows may be strided (softmax along an inner axis). E is the tensors' element
// type: f32, or f16 (read into f32, computed in f32, rounded once when stored).

alias E = f32; // @E

struct Params {
    rows: u32,
    size: u32,  // elements per row
    inner: u32, // distance between a row's elements
    log: u32,   // 1 for log-softmax
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<E>;
@group(0) @binding(2) var<storage, read_write> y: array<E>;

const WG: u32 = ROW_WG;

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.rows;
    let base = (row / p.inner) * p.size * p.inner + row % p.inner;
    var pair = vec2<f32>(0.0);
    if live {
        for (var j = lid; j < p.size; j += WG) {
            pair = merge_max_exp(pair, vec2<f32>(f32(x[base + j * p.inner]), 1.0));
        }
    }
    let stats = row_max_exp(pair, lid);
    let row_max = stats.x;
    let row_sum = stats.y;
    if !live {
        return;
    }
    let log_sum = log(row_sum);
    for (var j = lid; j < p.size; j += WG) {
        let i = base + j * p.inner;
        let z = f32(x[i]) - row_max;
        if p.log == 1u {
            y[i] = E(z - log_sum);
        } else {
            y[i] = E(exp(z) / row_sum);
        }
    }
}

// The one-pass variant for contiguous rows of up to 256·4·PER elements (a multiple of 4): each
// invocation reads its vec4s once into registers, the row's (max, sum) pairs merge in a tree,
// and the outputs are written from the registers — one read and one write per element.

// vec4s per invocation
const PER: u32 = 4u; // @PER

@group(0) @binding(1) var<storage, read> x4: array<vec4<E>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<E>>;

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
            v[i] = vec4<f32>(x4[base + j]);
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
    let stats = row_max_exp(vec2<f32>(m, s), lid);
    let row_max = stats.x;
    let row_sum = stats.y;
    if !live {
        return;
    }
    let log_sum = log(row_sum);
    for (var i = 0u; i < PER; i++) {
        let j = lid + i * WG;
        if j < width {
            let z = v[i] - row_max;
            if p.log == 1u {
                y4[base + j] = vec4<E>(z - log_sum);
            } else {
                y4[base + j] = vec4<E>(exp(z) / row_sum);
            }
        }
    }
}
