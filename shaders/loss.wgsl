// Cross-entropy from logits, one workgroup per row of `classes` logits.
// forward:  loss = (1 − s)(lse − x_t) + s(lse − mean(x)), 0 on ignored rows
// backward: dx_c = (softmax_c − q_c)·g, q = (1 − s)·onehot(t) + s/C, 0 on ignored rows
// I is the labels's integer type (set by src/ops/loss.rs). A target out of range is reported
// (report_fault, position = row) and its row left 0.

alias I = i32; // @I

struct Params {
    rows: u32,
    classes: u32,
    has_ignore: u32,
    ignore: i32,
    smoothing: f32,
    keep: f32,        // 1 − smoothing, computed by the host in f64
    fault_word: u32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<I>;

const WG: u32 = ROW_WG;

// (max, Σ exp(x − max), Σ x) of the row; every invocation must call it.
fn row_stats(base: u32, live: bool, lid: u32) -> vec3<f32> {
    var pair = vec2<f32>(0.0);
    var t = 0.0;
    if live {
        for (var j = lid; j < p.classes; j += WG) {
            let v = logits[base + j];
            pair = merge_max_exp(pair, vec2<f32>(v, 1.0));
            t += v;
        }
    }
    let stats = row_max_exp(pair, lid);
    return vec3<f32>(stats, row_sum(t, lid));
}

fn ignored(t: I) -> bool {
    return p.has_ignore == 1u && i32(t) == p.ignore;
}

@group(0) @binding(3) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.rows;
    let base = row * p.classes;
    let stats = row_stats(base, live, lid);
    if !live || lid != 0u {
        return;
    }
    let t = labels[row];
    if ignored(t) || u32(t) >= p.classes {
        loss[row] = 0.0;
        if !ignored(t) {
            report_fault(p.fault_word, row);
        }
        return;
    }
    let lse = stats.x + log(stats.y);
    let mean = stats.z / f32(p.classes);
    loss[row] = p.keep * (lse - logits[base + u32(t)]) + p.smoothing * (lse - mean);
}

@group(0) @binding(3) var<storage, read> upstream: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.rows;
    let base = row * p.classes;
    let stats = row_stats(base, live, lid);
    if !live {
        return;
    }
    let t = labels[row];
    let skip = ignored(t) || u32(t) >= p.classes;
    if skip && !ignored(t) && lid == 0u {
        report_fault(p.fault_word, row);
    }
    let g = upstream[row];
    let uniform_part = p.smoothing / f32(p.classes);
    for (var j = lid; j < p.classes; j += WG) {
        if skip {
            dx[base + j] = 0.0;
        } else {
            var q = uniform_part;
            if j == u32(t) {
                q += p.keep;
            }
            dx[base + j] = (exp(logits[base + j] - stats.x) / stats.y - q) * g;
        }
    }
}
