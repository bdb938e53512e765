// Fused scaled dot-product attention and its backward. One workgroup of WG invocations per
// query row (per key row for grad_kv); keys (queries) are visited in blocks of WG, one per
// invocation, with an online softmax, so no row of scores is ever stored.
// Layouts: q (B, Tq, D), k (B, Tk, D), v (B, Tk, Dv), o and dO (B, Tq, Dv), lse and δ (B, Tq).

struct Params {
    batch: u32,
    tq: u32,
    tk: u32,
    d: u32,
    dv: u32,
    causal: u32,
    scale: f32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;

const WG: u32 = 64u;
const MAX_DIM: u32 = 256u;
const PER_THREAD: u32 = 4u; // MAX_DIM / WG output dimensions per invocation

var<workgroup> row_q: array<f32, MAX_DIM>;    // the query row (or dO row)
var<workgroup> row_aux: array<f32, MAX_DIM>;  // a second row (dO in grad_q)
var<workgroup> weights: array<f32, WG>;        // per-key weights of the current block
var<workgroup> weights2: array<f32, WG>;
var<workgroup> scratch: array<f32, WG>;

fn visible(i: u32, j: u32) -> bool {
    return p.causal == 0u || j <= i;
}

// Workgroup-wide max of one value per invocation (every invocation must call it).
fn block_max(v: f32, lid: u32) -> f32 {
    scratch[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            scratch[lid] = max(scratch[lid], scratch[lid + s]);
        }
        workgroupBarrier();
    }
    let m = scratch[0];
    workgroupBarrier();
    return m;
}

// Workgroup-wide sum (every invocation must call it).
fn block_sum(v: f32, lid: u32) -> f32 {
    scratch[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            scratch[lid] += scratch[lid + s];
        }
        workgroupBarrier();
    }
    let total = scratch[0];
    workgroupBarrier();
    return total;
}

// scale · q_row · k[b, j]
fn score(b: u32, j: u32) -> f32 {
    var acc = 0.0;
    let base = (b * p.tk + j) * p.d;
    for (var c = 0u; c < p.d; c++) {
        acc += row_q[c] * k[base + c];
    }
    return acc * p.scale;
}

fn load_q_row(base: u32, lid: u32) {
    for (var c = lid; c < p.d; c += WG) {
        row_q[c] = q[base + c];
    }
}

const NEG_INF: f32 = -3.0e38; // below any finite score; exp(NEG_INF − m) underflows to 0

@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.batch * p.tq;
    let b = row / p.tq;
    let i = row % p.tq;
    if live {
        load_q_row(row * p.d, lid);
    }
    workgroupBarrier();
    var m = NEG_INF;
    var l = 0.0;
    var acc: array<f32, PER_THREAD>;
    let blocks = select(0u, (p.tk + WG - 1u) / WG, live);
    // every invocation runs the same number of blocks: the barriers inside stay uniform
    for (var blk = 0u; blk < (p.tk + WG - 1u) / WG; blk++) {
        let j = blk * WG + lid;
        var s = NEG_INF;
        if blk < blocks && j < p.tk && visible(i, j) {
            s = score(b, j);
        }
        let m_new = max(m, block_max(s, lid));
        let w = select(0.0, exp(s - m_new), s > NEG_INF);
        weights[lid] = w;
        let correction = exp(m - m_new);
        l = l * correction + block_sum(w, lid);
        m = m_new;
        // acc[t] holds output dimension lid + t·WG
        for (var t = 0u; t < PER_THREAD; t++) {
            let c = lid + t * WG;
            if c < p.dv {
                var add = 0.0;
                for (var jj = 0u; jj < WG; jj++) {
                    let key = blk * WG + jj;
                    if key < p.tk {
                        add += weights[jj] * v[(b * p.tk + key) * p.dv + c];
                    }
                }
                acc[t] = acc[t] * correction + add;
            }
        }
        workgroupBarrier();
    }
    if !live {
        return;
    }
    for (var t = 0u; t < PER_THREAD; t++) {
        let c = lid + t * WG;
        if c < p.dv {
            o[row * p.dv + c] = acc[t] / l;
        }
    }
}

@group(0) @binding(3) var<storage, read_write> lse_out: array<f32>;

@compute @workgroup_size(64)
fn lse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.batch * p.tq;
    let b = row / p.tq;
    let i = row % p.tq;
    if live {
        load_q_row(row * p.d, lid);
    }
    workgroupBarrier();
    var m = NEG_INF;
    var l = 0.0;
    for (var blk = 0u; blk < (p.tk + WG - 1u) / WG; blk++) {
        let j = blk * WG + lid;
        var s = NEG_INF;
        if live && j < p.tk && visible(i, j) {
            s = score(b, j);
        }
        let m_new = max(m, block_max(s, lid));
        let w = select(0.0, exp(s - m_new), s > NEG_INF);
        l = l * exp(m - m_new) + block_sum(w, lid);
        m = m_new;
    }
    if live && lid == 0u {
        lse_out[row] = m + log(l);
    }
}

@group(0) @binding(4) var<storage, read> d_out: array<f32>;
@group(0) @binding(5) var<storage, read> row_lse: array<f32>;
@group(0) @binding(6) var<storage, read> row_delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad: array<f32>;

// dq_i = scale · Σ_j P_ij (dO_i·v_j − δ_i) k_j
@compute @workgroup_size(64)
fn grad_q(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.batch * p.tq;
    let b = row / p.tq;
    let i = row % p.tq;
    if live {
        load_q_row(row * p.d, lid);
        for (var c = lid; c < p.dv; c += WG) {
            row_aux[c] = d_out[row * p.dv + c];
        }
    }
    workgroupBarrier();
    let lse_i = select(0.0, row_lse[min(row, p.batch * p.tq - 1u)], live);
    let delta_i = select(0.0, row_delta[min(row, p.batch * p.tq - 1u)], live);
    var acc: array<f32, PER_THREAD>;
    for (var blk = 0u; blk < (p.tk + WG - 1u) / WG; blk++) {
        let j = blk * WG + lid;
        var ds = 0.0;
        if live && j < p.tk && visible(i, j) {
            let pij = exp(score(b, j) - lse_i);
            var dp = 0.0;
            for (var c = 0u; c < p.dv; c++) {
                dp += row_aux[c] * v[(b * p.tk + j) * p.dv + c];
            }
            ds = pij * (dp - delta_i);
        }
        weights[lid] = ds;
        workgroupBarrier();
        for (var t = 0u; t < PER_THREAD; t++) {
            let c = lid + t * WG;
            if c < p.d {
                for (var jj = 0u; jj < WG; jj++) {
                    let key = blk * WG + jj;
                    if key < p.tk {
                        acc[t] += weights[jj] * k[(b * p.tk + key) * p.d + c];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if !live {
        return;
    }
    for (var t = 0u; t < PER_THREAD; t++) {
        let c = lid + t * WG;
        if c < p.d {
            grad[row * p.d + c] = acc[t] * p.scale;
        }
    }
}

// For key row j: dk_j = scale · Σ_i dS_ij q_i and dv_j = Σ_i P_ij dO_i, written as [dk | dv].
@compute @workgroup_size(64)
fn grad_kv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    let live = row < p.batch * p.tk;
    let b = row / p.tk;
    let j = row % p.tk;
    // row_q holds k_j here, row_aux holds v_j
    if live {
        for (var c = lid; c < p.d; c += WG) {
            row_q[c] = k[row * p.d + c];
        }
        for (var c = lid; c < p.dv; c += WG) {
            row_aux[c] = v[row * p.dv + c];
        }
    }
    workgroupBarrier();
    var acc_k: array<f32, PER_THREAD>;
    var acc_v: array<f32, PER_THREAD>;
    for (var blk = 0u; blk < (p.tq + WG - 1u) / WG; blk++) {
        let i = blk * WG + lid;
        var pij = 0.0;
        var ds = 0.0;
        if live && i < p.tq && visible(i, j) {
            let qrow = (b * p.tq + i);
            var s = 0.0;
            for (var c = 0u; c < p.d; c++) {
                s += q[qrow * p.d + c] * row_q[c];
            }
            pij = exp(s * p.scale - row_lse[qrow]);
            var dp = 0.0;
            for (var c = 0u; c < p.dv; c++) {
                dp += d_out[qrow * p.dv + c] * row_aux[c];
            }
            ds = pij * (dp - row_delta[qrow]);
        }
        weights[lid] = pij;
        weights2[lid] = ds;
        workgroupBarrier();
        for (var t = 0u; t < PER_THREAD; t++) {
            let c = lid + t * WG;
            for (var ii = 0u; ii < WG; ii++) {
                let qi = blk * WG + ii;
                if qi < p.tq {
                    let qrow = b * p.tq + qi;
                    if c < p.d {
                        acc_k[t] += weights2[ii] * q[qrow * p.d + c];
                    }
                    if c < p.dv {
                        acc_v[t] += weights[ii] * d_out[qrow * p.dv + c];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if !live {
        return;
    }
    let width = p.d + p.dv;
    for (var t = 0u; t < PER_THREAD; t++) {
        let c = lid + t * WG;
        if c < p.d {
            grad[row * width + c] = acc_k[t] * p.scale;
        }
        if c < p.dv {
            grad[row * width + p.d + c] = acc_v[t];
        }
    }
}
