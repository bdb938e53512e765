// @requires philox.wgsl
// Fused scaled dot-product attention and its backward, for any head dimension up to 256 (the
// flash kernels of flash_attention.wgsl take multiples of 4 up to 128). One workgroup of WG
// invocations per query row (per key row for grad_kv); keys (queries) are visited in blocks of
// WG, one per invocation, with an online softmax, so no row of scores is ever stored.
//
// Masking and dropout as in flash_attention.wgsl: key lengths (LENGTHS), the causal mask, an
// additive mask whose −∞ entries hide keys (MASK), and dropout drawn from Philox (DROPOUT);
// here each weight draws its own Philox block.
// Layouts: q (B, Tq, D), k (B, Tk, D), v (B, Tk, Dv), o and dO (B, Tq, Dv), stats (B, Tq, 3) =
// (m, ℓ, δ) as in flash_attention.wgsl.
//
// E is the element type of q, k, v, the mask, o, dO and the gradients: f32, or f16 (read into
// f32, computed in f32, rounded once when stored); the statistics are f32.

alias E = f32; // @E

const LENGTHS: bool = false; // @LENGTHS
const MASK: bool = false; // @MASK
const DROPOUT: bool = false; // @DROPOUT

// As in flash_attention.wgsl and src/ops/attention/gpu.rs.
struct Params {
    batch: u32,
    tq: u32,
    tk: u32,
    d: u32,
    dv: u32,
    causal: u32,
    scale: f32,
    len_inner: u32,
    len_run: u32,
    mask_inner: u32,
    mask_run: u32,
    mask_batch: u32,
    mask_row: u32,
    mask_col: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    drop_p: f32,
    drop_scale: f32,
    row_blocks: u32,
    fault_word: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<E>;
@group(0) @binding(2) var<storage, read> k: array<E>;
@group(0) @binding(3) var<storage, read> v: array<E>;
@group(0) @binding(4) var<storage, read> key_lengths: array<i32>;
@group(0) @binding(5) var<storage, read> mask: array<E>;

const WG: u32 = 64u;
const MAX_DIM: u32 = 256u;
const PER_THREAD: u32 = 4u; // MAX_DIM / WG output dimensions per invocation

var<workgroup> row_q: array<f32, MAX_DIM>;    // the query row (or dO row)
var<workgroup> row_aux: array<f32, MAX_DIM>;  // a second row (dO in grad_q)
var<workgroup> weights: array<f32, WG>;        // per-key weights of the current block
var<workgroup> weights2: array<f32, WG>;
var<workgroup> scratch: array<f32, WG>;

const NEG_INF: f32 = -3.0e38; // marks a hidden score; exp(NEG_INF − m) underflows to 0
const MIN_SCORE: f32 = -1.0e38; // the floor of a visible masked score (src/ops/attention.rs)

fn visible(i: u32, j: u32) -> bool {
    return p.causal == 0u || j <= i;
}

// Where a key length out of 0..=Tk is reported: the forward launch with key lengths makes this
// call report_fault; the other passes clamp silently (the forward is recorded before them).
fn report_bad_length(position: u32) {} // @REPORT

// Keys j ≥ this are padding for batch b: its key length, clamped to 0..=Tk.
fn key_limit(b: u32) -> u32 {
    if !LENGTHS {
        return p.tk;
    }
    let at = (b / p.len_inner) % p.len_run;
    let n = key_lengths[at];
    if n < 0 || u32(n) > p.tk {
        report_bad_length(at);
    }
    return select(min(u32(n), p.tk), 0u, n < 0);
}

// The offset of batch b's block of the mask (row i at + i·mask_row, key j at + j·mask_col).
fn mask_base(b: u32) -> u32 {
    return ((b / p.mask_inner) % p.mask_run) * p.mask_batch;
}

// Score s with the additive mask value a: NEG_INF (hidden) when a is −∞, else s + a floored at
// MIN_SCORE. −∞ is recognized by its bits: WGSL leaves arithmetic on infinities undefined.
fn with_mask(s: f32, a: f32) -> f32 {
    if bitcast<u32>(a) == 0xff800000u {
        return NEG_INF;
    }
    return max(s + a, MIN_SCORE);
}

// What dropout multiplies weight (row, j) by, row = b·Tq + i: 1/(1 − p) if its draw (word j % 4
// of the row's Philox block j / 4) is ≥ p, else 0.
fn dropout_factor(row: u32, j: u32) -> f32 {
    let block = mul_add_wide(row, p.row_blocks, j / 4u);
    let words = philox(vec4<u32>(block.x, block.y, p.stream_lo, p.stream_hi), vec2<u32>(p.seed_lo, p.seed_hi));
    return select(0.0, p.drop_scale, unit(words[j % 4u]) >= p.drop_p);
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
        acc += row_q[c] * f32(k[base + c]);
    }
    return acc * p.scale;
}

// The score of query row i (in row_q) against key j of batch b, with the mask if any: NEG_INF
// where hidden. `mask_row` is the offset of row i of the mask.
fn masked_score(b: u32, i: u32, j: u32, kend: u32, mask_row: u32) -> f32 {
    if j >= kend || !visible(i, j) {
        return NEG_INF;
    }
    let s = score(b, j);
    if MASK {
        return with_mask(s, f32(mask[mask_row + j * p.mask_col]));
    }
    return s;
}

fn load_q_row(base: u32, lid: u32) {
    for (var c = lid; c < p.d; c += WG) {
        row_q[c] = f32(q[base + c]);
    }
}

@group(0) @binding(6) var<storage, read_write> o: array<E>;

// The workgroup's row is uniform, so are `live`, the key limit and every loop bound: the
// barriers inside the loops stay uniform.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    if row >= p.batch * p.tq {
        return;
    }
    let b = row / p.tq;
    let i = row % p.tq;
    load_q_row(row * p.d, lid);
    workgroupBarrier();
    let kend = key_limit(b);
    let mask_row = mask_base(b) + i * p.mask_row;
    var m = NEG_INF;
    var l = 0.0;
    var acc: array<f32, PER_THREAD>;
    for (var blk = 0u; blk < (kend + WG - 1u) / WG; blk++) {
        let j = blk * WG + lid;
        let s = masked_score(b, i, j, kend, mask_row);
        let m_new = max(m, block_max(s, lid));
        let w = select(0.0, exp(s - m_new), s > NEG_INF);
        var kept = w;
        if DROPOUT && w > 0.0 {
            kept = w * dropout_factor(row, j);
        }
        weights[lid] = kept;
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
                    if key < kend {
                        add += weights[jj] * f32(v[(b * p.tk + key) * p.dv + c]);
                    }
                }
                acc[t] = acc[t] * correction + add;
            }
        }
        workgroupBarrier();
    }
    // l = 0 only for a row that sees no key (otherwise its largest score adds 1)
    for (var t = 0u; t < PER_THREAD; t++) {
        let c = lid + t * WG;
        if c < p.dv {
            o[row * p.dv + c] = E(select(acc[t] / l, 0.0, l == 0.0));
        }
    }
}

@group(0) @binding(6) var<storage, read> d_out: array<E>;
@group(0) @binding(7) var<storage, read> o_in: array<E>;
@group(0) @binding(8) var<storage, read_write> stats_out: array<f32>;

// The row's (m, ℓ) of its visible scores ((0, 0) if it sees none) and δ = dO·o.
@compute @workgroup_size(64)
fn stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    if row >= p.batch * p.tq {
        return;
    }
    let b = row / p.tq;
    let i = row % p.tq;
    load_q_row(row * p.d, lid);
    workgroupBarrier();
    let kend = key_limit(b);
    let mask_row = mask_base(b) + i * p.mask_row;
    var m = NEG_INF;
    var l = 0.0;
    for (var blk = 0u; blk < (kend + WG - 1u) / WG; blk++) {
        let s = masked_score(b, i, blk * WG + lid, kend, mask_row);
        let m_new = max(m, block_max(s, lid));
        let w = select(0.0, exp(s - m_new), s > NEG_INF);
        l = l * exp(m - m_new) + block_sum(w, lid);
        m = m_new;
    }
    var partial = 0.0;
    for (var c = lid; c < p.dv; c += WG) {
        partial += f32(d_out[row * p.dv + c]) * f32(o_in[row * p.dv + c]);
    }
    let delta = block_sum(partial, lid);
    if lid == 0u {
        let seen = l > 0.0;
        stats_out[row * 3u] = select(0.0, m, seen);
        stats_out[row * 3u + 1u] = select(0.0, log(l), seen);
        stats_out[row * 3u + 2u] = delta;
    }
}

@group(0) @binding(7) var<storage, read> row_stats: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad: array<E>;

// dq_i = scale · Σ_j P_ij (M_ij dO_i·v_j − δ_i) k_j
@compute @workgroup_size(64)
fn grad_q(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    if row >= p.batch * p.tq {
        return;
    }
    let b = row / p.tq;
    let i = row % p.tq;
    load_q_row(row * p.d, lid);
    for (var c = lid; c < p.dv; c += WG) {
        row_aux[c] = f32(d_out[row * p.dv + c]);
    }
    workgroupBarrier();
    let m_i = row_stats[row * 3u];
    let log_sum_i = row_stats[row * 3u + 1u];
    let delta_i = row_stats[row * 3u + 2u];
    let kend = key_limit(b);
    let mask_row = mask_base(b) + i * p.mask_row;
    var acc: array<f32, PER_THREAD>;
    for (var blk = 0u; blk < (kend + WG - 1u) / WG; blk++) {
        let j = blk * WG + lid;
        var ds = 0.0;
        let s = masked_score(b, i, j, kend, mask_row);
        if s > NEG_INF {
            let pij = exp((s - m_i) - log_sum_i);
            var dp = 0.0;
            for (var c = 0u; c < p.dv; c++) {
                dp += row_aux[c] * f32(v[(b * p.tk + j) * p.dv + c]);
            }
            if DROPOUT {
                dp *= dropout_factor(row, j);
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
                    if key < kend {
                        acc[t] += weights[jj] * f32(k[(b * p.tk + key) * p.d + c]);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    for (var t = 0u; t < PER_THREAD; t++) {
        let c = lid + t * WG;
        if c < p.d {
            grad[row * p.d + c] = E(acc[t] * p.scale);
        }
    }
}

// For key row j: dk_j = scale · Σ_i dS_ij q_i and dv_j = Σ_i P_ij M_ij dO_i, written as
// [dk of every batch | dv of every batch]; 0 for a key past its sequence's length.
@compute @workgroup_size(64)
fn grad_kv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wg, groups);
    if row >= p.batch * p.tk {
        return;
    }
    let b = row / p.tk;
    let j = row % p.tk;
    // row_q holds k_j here, row_aux holds v_j
    for (var c = lid; c < p.d; c += WG) {
        row_q[c] = f32(k[row * p.d + c]);
    }
    for (var c = lid; c < p.dv; c += WG) {
        row_aux[c] = f32(v[row * p.dv + c]);
    }
    workgroupBarrier();
    let queries = select(p.tq, 0u, j >= key_limit(b));
    let mask_col = mask_base(b) + j * p.mask_col;
    var acc_k: array<f32, PER_THREAD>;
    var acc_v: array<f32, PER_THREAD>;
    for (var blk = 0u; blk < (queries + WG - 1u) / WG; blk++) {
        let i = blk * WG + lid;
        var pd = 0.0;
        var ds = 0.0;
        if i < p.tq && visible(i, j) {
            let qrow = b * p.tq + i;
            var s = 0.0;
            for (var c = 0u; c < p.d; c++) {
                s += f32(q[qrow * p.d + c]) * row_q[c];
            }
            s *= p.scale;
            var shown = true;
            if MASK {
                s = with_mask(s, f32(mask[mask_col + i * p.mask_row]));
                shown = s > NEG_INF;
            }
            if shown {
                let pij = exp((s - row_stats[qrow * 3u]) - row_stats[qrow * 3u + 1u]);
                var dp = 0.0;
                for (var c = 0u; c < p.dv; c++) {
                    dp += f32(d_out[qrow * p.dv + c]) * row_aux[c];
                }
                var factor = 1.0;
                if DROPOUT {
                    factor = dropout_factor(qrow, j);
                }
                pd = pij * factor;
                ds = pij * (dp * factor - row_stats[qrow * 3u + 2u]);
            }
        }
        weights[lid] = pd;
        weights2[lid] = ds;
        workgroupBarrier();
        for (var t = 0u; t < PER_THREAD; t++) {
            let c = lid + t * WG;
            for (var ii = 0u; ii < WG; ii++) {
                let qi = blk * WG + ii;
                if qi < p.tq {
                    let qrow = b * p.tq + qi;
                    if c < p.d {
                        acc_k[t] += weights2[ii] * f32(q[qrow * p.d + c]);
                    }
                    if c < p.dv {
                        acc_v[t] += weights[ii] * f32(d_out[qrow * p.dv + c]);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    let dv_start = p.batch * p.tk * p.d;
    for (var t = 0u; t < PER_THREAD; t++) {
        let c = lid + t * WG;
        if c < p.d {
            grad[row * p.d + c] = E(acc_k[t] * p.scale);
        }
        if c < p.dv {
            grad[dv_start + row * p.dv + c] = E(acc_v[t]);
        }
    }
}
