// Layer normalization, one workgroup per row of `size` elements. Mean and variance come from
// per-invocation Welford accumulators merged in a tree (Chan et al.'s parallel formula).
//
// forward:  y = (x − μ)·r·w + b, r = 1/√(σ² + eps)
// backward: dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = dy·w, x̂ = (x − μ)·r
//
// `backward` may also write dy·x̂, the terms of the weight's gradient (`graph/siblings.rs`):
// src/ops/layernorm.rs then binds `terms` after the other buffers and stores it at `// @TERMS`.
//
// E is the tensors' element type: f32, or f16 (read into f32, computed in f32, rounded once when
// stored).

alias E = f32; // @E

struct Params {
    rows: u32,
    size: u32,
    eps: f32,
    has_weight: u32,
    has_bias: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    // @FIELDS
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<E>;
@group(0) @binding(2) var<storage, read> weight: array<E>;
@group(0) @binding(3) var<storage, read> third: array<E>; // bias (forward) or dy (backward)
@group(0) @binding(4) var<storage, read_write> out: array<E>; // @OUTPUTS
// @TERMS_BINDING

const WG: u32 = ROW_WG;

// @EPILOGUE

// Stores element i of `forward`'s or `backward`'s output; a fused chain that reads dx runs here
// (`ops/epilogue.rs`).
fn store_out(i: u32, v: f32) {
    out[i] = E(v); // @STORE
}

// Row statistics (mean, r); every invocation of the workgroup must call it.
fn row_stats(base: u32, live: bool, lid: u32) -> vec2<f32> {
    // this invocation's Welford accumulator (count, mean, M2)
    var acc = vec3<f32>(0.0);
    if live {
        for (var j = lid; j < p.size; j += WG) {
            let v = f32(x[base + j]);
            acc.x += 1.0;
            let d = v - acc.y;
            acc.y += d / acc.x;
            acc.z += d * (v - acc.y);
        }
    }
    let row = row_welford(acc, lid);
    return vec2<f32>(row.y, inverseSqrt(row.z / f32(p.size) + p.eps));
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.rows;
    let base = row * p.size;
    let stats = row_stats(base, live, lid);
    if !live {
        return;
    }
    for (var j = lid; j < p.size; j += WG) {
        var v = (f32(x[base + j]) - stats.x) * stats.y;
        if p.has_weight == 1u {
            v = v * f32(weight[j]);
        }
        if p.has_bias == 1u {
            v = v + f32(third[j]);
        }
        store_out(base + j, v);
    }
}

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.rows;
    let base = row * p.size;
    let stats = row_stats(base, live, lid);
    // sums of ĝ and ĝ·x̂ over the row
    var sum_g = 0.0;
    var sum_gx = 0.0;
    if live {
        for (var j = lid; j < p.size; j += WG) {
            var g = f32(third[base + j]);
            if p.has_weight == 1u {
                g = g * f32(weight[j]);
            }
            sum_g += g;
            sum_gx += g * (f32(x[base + j]) - stats.x) * stats.y;
        }
    }
    let sums = row_sum2(vec2<f32>(sum_g, sum_gx), lid);
    if !live {
        return;
    }
    let mean_g = sums.x / f32(p.size);
    let mean_gx = sums.y / f32(p.size);
    for (var j = lid; j < p.size; j += WG) {
        let dy = f32(third[base + j]);
        var g = dy;
        if p.has_weight == 1u {
            g = g * f32(weight[j]);
        }
        let x_hat = (f32(x[base + j]) - stats.x) * stats.y;
        store_out(base + j, stats.y * (g - mean_g - x_hat * mean_gx));
        // @TERMS
    }
}

// The one-pass forward for rows of up to 256·4·PER elements (a multiple of 4): each invocation
// keeps its vec4s in registers; mean and variance come from two reductions over the registers
// (exact two-pass statistics for the price of one read), then the outputs are written.

// vec4s per invocation
const PER: u32 = 4u; // @PER

@group(0) @binding(1) var<storage, read> x4: array<vec4<E>>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<E>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<E>>;
@group(0) @binding(4) var<storage, read_write> y4: array<vec4<E>>;

@compute @workgroup_size(256)
fn forward_cached(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.rows;
    let width = p.size / 4u;
    let base = row * width;
    var v: array<vec4<f32>, PER>;
    var s = 0.0;
    for (var i = 0u; i < PER; i++) {
        let j = lid + i * WG;
        if live && j < width {
            v[i] = vec4<f32>(x4[base + j]);
            s += v[i].x + v[i].y + v[i].z + v[i].w;
        }
    }
    let mean = row_sum(s, lid) / f32(p.size);
    var q = 0.0;
    for (var i = 0u; i < PER; i++) {
        if live && lid + i * WG < width {
            let d = v[i] - mean;
            q += dot(d, d);
        }
    }
    let rstd = inverseSqrt(row_sum(q, lid) / f32(p.size) + p.eps);
    if !live {
        return;
    }
    for (var i = 0u; i < PER; i++) {
        let j = lid + i * WG;
        if j < width {
            var o = (v[i] - mean) * rstd;
            if p.has_weight == 1u {
                o = o * vec4<f32>(w4[j]);
            }
            if p.has_bias == 1u {
                o = o + vec4<f32>(b4[j]);
            }
            y4[base + j] = vec4<E>(o);
        }
    }
}
