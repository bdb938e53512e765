// Flash attention (Dao et al. 2022), for head dimensions D and DV that are multiples of 4:
// the fast path of src/ops/attention.rs (the general kernels are in attention.wgsl).
//
// Each workgroup owns ROWS consecutive rows — query rows for `forward`, `lse` and `grad_q`, key
// rows for `grad_k` and `grad_v` — one per invocation, held in registers as vec4s. The other
// side (key/value rows, or query/dO rows) streams through workgroup memory BLOCK rows at a time;
// every invocation reads the same staged row at once, which the hardware broadcasts. Scores are
// recomputed block by block with an online softmax, so no row of scores is ever stored.
//
// Layouts: q (B, Tq, D), k (B, Tk, D), v (B, Tk, DV), o and dO (B, Tq, DV), lse and δ (B, Tq);
// the causal mask lets query i see keys j ≤ i. ROWS, BLOCK, D and DV are set per launch.

const ROWS: u32 = 64u; // @ROWS
const BLOCK: u32 = 32u; // @BLOCK
const D: u32 = 64u; // @D
const DV: u32 = 64u; // @DV
const D4: u32 = D / 4u;
const DV4: u32 = DV / 4u;

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
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;

// Staged rows of the streaming side (keys or queries, and values or output gradients).
var<workgroup> stage_a: array<vec4<f32>, BLOCK * D4>;
var<workgroup> stage_b: array<vec4<f32>, BLOCK * DV4>;
var<workgroup> stage_lse: array<f32, BLOCK>;
var<workgroup> stage_delta: array<f32, BLOCK>;

const NEG_INF: f32 = -3.0e38; // below any finite score; exp(NEG_INF − m) underflows to 0

fn visible(i: u32, j: u32) -> bool {
    return p.causal == 0u || j <= i;
}

// This workgroup's batch and first row, of `rows` rows per batch in blocks of ROWS. On the
// folded 2-D grid a spare workgroup gets a batch ≥ p.batch, and returns at once (uniformly: no
// barrier is skipped).
fn row_block(wg: vec3<u32>, groups: vec3<u32>, rows: u32) -> vec2<u32> {
    let blocks_per_batch = (rows + ROWS - 1u) / ROWS;
    let block = flat_workgroup(wg, groups);
    return vec2<u32>(block / blocks_per_batch, (block % blocks_per_batch) * ROWS);
}

// Query blocks: the keys that query rows r0..r0+ROWS can see end here.
fn key_end(r0: u32) -> u32 {
    if p.causal == 1u {
        return min(p.tk, r0 + ROWS);
    }
    return p.tk;
}

@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;

// Keys kb..kb+BLOCK of batch b into stage_a.
fn stage_keys(b: u32, kb: u32, lid: u32) {
    for (var e = lid; e < BLOCK * D4; e += ROWS) {
        let j = kb + e / D4;
        stage_a[e] = select(vec4<f32>(0.0), k[(b * p.tk + min(j, p.tk - 1u)) * D4 + e % D4], j < p.tk);
    }
}

// Values kb..kb+BLOCK of batch b into stage_b.
fn stage_values(b: u32, kb: u32, lid: u32) {
    for (var e = lid; e < BLOCK * DV4; e += ROWS) {
        let j = kb + e / DV4;
        stage_b[e] = select(vec4<f32>(0.0), v[(b * p.tk + min(j, p.tk - 1u)) * DV4 + e % DV4], j < p.tk);
    }
}

// The scaled score of this invocation's query row against staged key jj.
fn score(qr: ptr<function, array<vec4<f32>, D4>>, jj: u32) -> f32 {
    var s = 0.0;
    for (var c = 0u; c < D4; c++) {
        s += dot((*qr)[c], stage_a[jj * D4 + c]);
    }
    return s * p.scale;
}

@compute @workgroup_size(ROWS)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let at = row_block(wg, groups, p.tq);
    if at.x >= p.batch {
        return;
    }
    let b = at.x;
    let r0 = at.y;
    let i = r0 + lid;
    let live = i < p.tq;
    var qr: array<vec4<f32>, D4>;
    if live {
        for (var c = 0u; c < D4; c++) {
            qr[c] = q[(b * p.tq + i) * D4 + c];
        }
    }
    var acc: array<vec4<f32>, DV4>;
    var m = NEG_INF;
    var l = 0.0;
    let end = key_end(r0);
    for (var kb = 0u; kb < end; kb += BLOCK) {
        stage_keys(b, kb, lid);
        stage_values(b, kb, lid);
        workgroupBarrier();
        // scores of this block, their max, then the rescaled accumulation
        var s: array<f32, BLOCK>;
        var block_max = NEG_INF;
        for (var jj = 0u; jj < BLOCK; jj++) {
            let j = kb + jj;
            s[jj] = NEG_INF;
            if live && j < p.tk && visible(i, j) {
                s[jj] = score(&qr, jj);
                block_max = max(block_max, s[jj]);
            }
        }
        let m_new = max(m, block_max);
        let correction = exp(m - m_new);
        l *= correction;
        for (var c = 0u; c < DV4; c++) {
            acc[c] *= correction;
        }
        for (var jj = 0u; jj < BLOCK; jj++) {
            if s[jj] > NEG_INF {
                let w = exp(s[jj] - m_new);
                l += w;
                for (var c = 0u; c < DV4; c++) {
                    acc[c] = fma(vec4<f32>(w), stage_b[jj * DV4 + c], acc[c]);
                }
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    if live {
        for (var c = 0u; c < DV4; c++) {
            o[(b * p.tq + i) * DV4 + c] = acc[c] / l;
        }
    }
}

@group(0) @binding(3) var<storage, read_write> lse_out: array<f32>;

@compute @workgroup_size(ROWS)
fn lse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let at = row_block(wg, groups, p.tq);
    if at.x >= p.batch {
        return;
    }
    let b = at.x;
    let r0 = at.y;
    let i = r0 + lid;
    let live = i < p.tq;
    var qr: array<vec4<f32>, D4>;
    if live {
        for (var c = 0u; c < D4; c++) {
            qr[c] = q[(b * p.tq + i) * D4 + c];
        }
    }
    var m = NEG_INF;
    var l = 0.0;
    let end = key_end(r0);
    for (var kb = 0u; kb < end; kb += BLOCK) {
        stage_keys(b, kb, lid);
        workgroupBarrier();
        for (var jj = 0u; jj < BLOCK; jj++) {
            let j = kb + jj;
            if live && j < p.tk && visible(i, j) {
                let s = score(&qr, jj);
                let m_new = max(m, s);
                l = l * exp(m - m_new) + exp(s - m_new);
                m = m_new;
            }
        }
        workgroupBarrier();
    }
    if live {
        lse_out[b * p.tq + i] = m + log(l);
    }
}

@group(0) @binding(4) var<storage, read> d_out: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> row_lse: array<f32>;
@group(0) @binding(6) var<storage, read> row_delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad: array<vec4<f32>>;

// dq_i = scale · Σ_j P_ij (dO_i·v_j − δ_i) k_j
@compute @workgroup_size(ROWS)
fn grad_q(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let at = row_block(wg, groups, p.tq);
    if at.x >= p.batch {
        return;
    }
    let b = at.x;
    let r0 = at.y;
    let i = r0 + lid;
    let live = i < p.tq;
    var qr: array<vec4<f32>, D4>;
    var dor: array<vec4<f32>, DV4>;
    var lse_i = 0.0;
    var delta_i = 0.0;
    if live {
        for (var c = 0u; c < D4; c++) {
            qr[c] = q[(b * p.tq + i) * D4 + c];
        }
        for (var c = 0u; c < DV4; c++) {
            dor[c] = d_out[(b * p.tq + i) * DV4 + c];
        }
        lse_i = row_lse[b * p.tq + i];
        delta_i = row_delta[b * p.tq + i];
    }
    var acc: array<vec4<f32>, D4>;
    let end = key_end(r0);
    for (var kb = 0u; kb < end; kb += BLOCK) {
        stage_keys(b, kb, lid);
        stage_values(b, kb, lid);
        workgroupBarrier();
        for (var jj = 0u; jj < BLOCK; jj++) {
            let j = kb + jj;
            if live && j < p.tk && visible(i, j) {
                let pij = exp(score(&qr, jj) - lse_i);
                var dp = 0.0;
                for (var c = 0u; c < DV4; c++) {
                    dp += dot(dor[c], stage_b[jj * DV4 + c]);
                }
                let ds = pij * (dp - delta_i);
                for (var c = 0u; c < D4; c++) {
                    acc[c] = fma(vec4<f32>(ds), stage_a[jj * D4 + c], acc[c]);
                }
            }
        }
        workgroupBarrier();
    }
    if live {
        for (var c = 0u; c < D4; c++) {
            grad[(b * p.tq + i) * D4 + c] = acc[c] * p.scale;
        }
    }
}

// Queries qb..qb+BLOCK of batch b into stage_a, their output gradients into stage_b, and their
// log-sum-exps and δs.
fn stage_queries(b: u32, qb: u32, lid: u32) {
    for (var e = lid; e < BLOCK * D4; e += ROWS) {
        let i = qb + e / D4;
        stage_a[e] = select(vec4<f32>(0.0), q[(b * p.tq + min(i, p.tq - 1u)) * D4 + e % D4], i < p.tq);
    }
    for (var e = lid; e < BLOCK * DV4; e += ROWS) {
        let i = qb + e / DV4;
        stage_b[e] = select(vec4<f32>(0.0), d_out[(b * p.tq + min(i, p.tq - 1u)) * DV4 + e % DV4], i < p.tq);
    }
    for (var e = lid; e < BLOCK; e += ROWS) {
        let i = min(qb + e, p.tq - 1u);
        stage_lse[e] = row_lse[b * p.tq + i];
        stage_delta[e] = row_delta[b * p.tq + i];
    }
}

// Key blocks: the first query that can see keys r0..r0+ROWS.
fn query_start(r0: u32) -> u32 {
    if p.causal == 1u {
        return r0 - r0 % BLOCK;
    }
    return 0u;
}

// For key row j: P_ij for staged query ii (0 where masked), from its score and lse.
fn key_prob(kr: ptr<function, array<vec4<f32>, D4>>, qb: u32, ii: u32, j: u32) -> f32 {
    let i = qb + ii;
    if i >= p.tq || !visible(i, j) {
        return 0.0;
    }
    var s = 0.0;
    for (var c = 0u; c < D4; c++) {
        s += dot((*kr)[c], stage_a[ii * D4 + c]);
    }
    return exp(s * p.scale - stage_lse[ii]);
}

// dv_j = Σ_i P_ij dO_i, written into columns D.. of the [dk | dv] rows.
@compute @workgroup_size(ROWS)
fn grad_v(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let at = row_block(wg, groups, p.tk);
    if at.x >= p.batch {
        return;
    }
    let b = at.x;
    let r0 = at.y;
    let j = r0 + lid;
    let live = j < p.tk;
    var kr: array<vec4<f32>, D4>;
    if live {
        for (var c = 0u; c < D4; c++) {
            kr[c] = k[(b * p.tk + j) * D4 + c];
        }
    }
    var acc: array<vec4<f32>, DV4>;
    for (var qb = query_start(r0); qb < p.tq; qb += BLOCK) {
        stage_queries(b, qb, lid);
        workgroupBarrier();
        for (var ii = 0u; ii < BLOCK; ii++) {
            if live {
                let pij = key_prob(&kr, qb, ii, j);
                for (var c = 0u; c < DV4; c++) {
                    acc[c] = fma(vec4<f32>(pij), stage_b[ii * DV4 + c], acc[c]);
                }
            }
        }
        workgroupBarrier();
    }
    if live {
        for (var c = 0u; c < DV4; c++) {
            grad[(b * p.tk + j) * (D4 + DV4) + D4 + c] = acc[c];
        }
    }
}

// dk_j = scale · Σ_i P_ij (dO_i·v_j − δ_i) q_i, written into columns 0..D of the [dk | dv] rows.
@compute @workgroup_size(ROWS)
fn grad_k(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let at = row_block(wg, groups, p.tk);
    if at.x >= p.batch {
        return;
    }
    let b = at.x;
    let r0 = at.y;
    let j = r0 + lid;
    let live = j < p.tk;
    var kr: array<vec4<f32>, D4>;
    var vr: array<vec4<f32>, DV4>;
    if live {
        for (var c = 0u; c < D4; c++) {
            kr[c] = k[(b * p.tk + j) * D4 + c];
        }
        for (var c = 0u; c < DV4; c++) {
            vr[c] = v[(b * p.tk + j) * DV4 + c];
        }
    }
    var acc: array<vec4<f32>, D4>;
    for (var qb = query_start(r0); qb < p.tq; qb += BLOCK) {
        stage_queries(b, qb, lid);
        workgroupBarrier();
        for (var ii = 0u; ii < BLOCK; ii++) {
            if live {
                let pij = key_prob(&kr, qb, ii, j);
                var dp = 0.0;
                for (var c = 0u; c < DV4; c++) {
                    dp += dot(stage_b[ii * DV4 + c], vr[c]);
                }
                let ds = pij * (dp - stage_delta[ii]);
                for (var c = 0u; c < D4; c++) {
                    acc[c] = fma(vec4<f32>(ds), stage_a[ii * D4 + c], acc[c]);
                }
            }
        }
        workgroupBarrier();
    }
    if live {
        for (var c = 0u; c < D4; c++) {
            grad[(b * p.tk + j) * (D4 + DV4) + c] = acc[c] * p.scale;
        }
    }
}
