// @requires philox.wgsl
// Flash attention (Dao et al. 2022), for head dimensions D and DV that are multiples of 4:
// the fast path of src/ops/attention.rs (the general kernels are in attention.wgsl).
//
// Each workgroup owns ROWS consecutive rows — query rows for `forward`, `stats` and `grad_q`,
// key rows for `grad_k` and `grad_v` — one per invocation, held in registers as vec4s. The other
// side (key/value rows, or query/dO rows) streams through workgroup memory BLOCK rows at a time;
// every invocation reads the same staged row at once, which the hardware broadcasts. Scores are
// recomputed block by block with an online softmax, so no row of scores is ever stored.
//
// Masking (src/ops/attention.rs): query i sees key j if j < the batch's key length (LENGTHS),
// j ≤ i with the causal mask, and the additive mask at (i, j) is not −∞ (MASK); a visible
// score gets the mask added, floored at MIN_SCORE. Key lengths also end the key loop early, as
// the causal mask does. A row that sees no key has output 0, log-sum-exp 0 and no gradient.
// Dropout (DROPOUT) keeps P_ij when draw (b·Tq + i, j) of its Philox stream is ≥ p and scales
// it by 1/(1 − p); a query row's draws start on a Philox block, so the query-row kernels draw
// one block per four keys and `grad_k`/`grad_v` pack a staged block's draws into bits.
// LENGTHS, MASK and DROPOUT are constants: without them the compiler drops their code.
//
// Layouts: q (B, Tq, D), k (B, Tk, D), v (B, Tk, DV), o and dO (B, Tq, DV), stats (B, Tq, 3) =
// (m, ℓ, δ): the row's largest visible score, ln Σ exp(s − m), and dO·o, so that
// P_ij = exp((s_ij − m_i) − ℓ_i). The key lengths and the mask are indexed through Params. ROWS, BLOCK, D, DV and the
// three features are set per launch. E is the element type of q, k, v, the mask, o, dO and the
// gradients: f32, or f16 (read into f32, computed in f32, rounded once when stored); the
// statistics are f32.

alias E = f32; // @E

const ROWS: u32 = 64u; // @ROWS
const BLOCK: u32 = 32u; // @BLOCK
const D: u32 = 64u; // @D
const DV: u32 = 64u; // @DV
const LENGTHS: bool = false; // @LENGTHS
const MASK: bool = false; // @MASK
const DROPOUT: bool = false; // @DROPOUT
const D4: u32 = D / 4u;
const DV4: u32 = DV / 4u;
// Words of packed dropout draws per staged query: one bit per key row of the workgroup.
const KEEP_WORDS: u32 = ROWS / 32u;

// As in attention.wgsl and src/ops/attention/gpu.rs.
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
@group(0) @binding(1) var<storage, read> q: array<vec4<E>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<E>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<E>>;
@group(0) @binding(4) var<storage, read> key_lengths: array<i32>;
@group(0) @binding(5) var<storage, read> mask: array<E>;

// Staged rows of the streaming side (keys or queries, and values or output gradients).
var<workgroup> stage_a: array<vec4<f32>, BLOCK * D4>;
var<workgroup> stage_b: array<vec4<f32>, BLOCK * DV4>;
var<workgroup> stage_stats: array<f32, BLOCK * 3u>;
// grad_k, grad_v: the dropout draws of (staged query ii, key row r0 + c) as bit c % 32 of word
// ii·KEEP_WORDS + c / 32, 1 = kept
var<workgroup> stage_keep: array<u32, BLOCK * KEEP_WORDS>;

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

// Philox block n of query row `row` = b·Tq + i: its four words decide keys 4n..4n+3.
fn dropout_block(row: u32, n: u32) -> vec4<u32> {
    let block = mul_add_wide(row, p.row_blocks, n);
    return philox(vec4<u32>(block.x, block.y, p.stream_lo, p.stream_hi), vec2<u32>(p.seed_lo, p.seed_hi));
}

// What dropout multiplies a weight by, from its Philox word: 1/(1 − p) if kept, else 0.
fn dropout_factor(word: u32) -> f32 {
    return select(0.0, p.drop_scale, unit(word) >= p.drop_p);
}

// This workgroup's batch and first row, of `rows` rows per batch in blocks of ROWS. On the
// folded 2-D grid a spare workgroup gets a batch ≥ p.batch, and returns at once (uniformly: no
// barrier is skipped).
fn row_block(wg: vec3<u32>, groups: vec3<u32>, rows: u32) -> vec2<u32> {
    let blocks_per_batch = (rows + ROWS - 1u) / ROWS;
    let block = flat_workgroup(wg, groups);
    return vec2<u32>(block / blocks_per_batch, (block % blocks_per_batch) * ROWS);
}

// Query blocks: the keys that query rows r0..r0+ROWS can see end here, for a key limit `kend`.
fn key_end(r0: u32, kend: u32) -> u32 {
    if p.causal == 1u {
        return min(kend, r0 + ROWS);
    }
    return kend;
}

@group(0) @binding(6) var<storage, read_write> o: array<vec4<E>>;

// Keys kb..kb+BLOCK of batch b into stage_a.
fn stage_keys(b: u32, kb: u32, lid: u32) {
    for (var e = lid; e < BLOCK * D4; e += ROWS) {
        let j = kb + e / D4;
        stage_a[e] = select(vec4<f32>(0.0), vec4<f32>(k[(b * p.tk + min(j, p.tk - 1u)) * D4 + e % D4]), j < p.tk);
    }
}

// Values kb..kb+BLOCK of batch b into stage_b.
fn stage_values(b: u32, kb: u32, lid: u32) {
    for (var e = lid; e < BLOCK * DV4; e += ROWS) {
        let j = kb + e / DV4;
        stage_b[e] = select(vec4<f32>(0.0), vec4<f32>(v[(b * p.tk + min(j, p.tk - 1u)) * DV4 + e % DV4]), j < p.tk);
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
    let row = b * p.tq + i;
    var qr: array<vec4<f32>, D4>;
    if live {
        for (var c = 0u; c < D4; c++) {
            qr[c] = vec4<f32>(q[row * D4 + c]);
        }
    }
    let kend = key_limit(b);
    let mask_row = mask_base(b) + i * p.mask_row;
    var acc: array<vec4<f32>, DV4>;
    var m = NEG_INF;
    var l = 0.0;
    var draws = vec4<u32>(0u);
    let end = key_end(r0, kend);
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
            if live && j < kend && visible(i, j) {
                var x = score(&qr, jj);
                if MASK {
                    x = with_mask(x, f32(mask[mask_row + j * p.mask_col]));
                }
                s[jj] = x;
                block_max = max(block_max, x);
            }
        }
        let m_new = max(m, block_max);
        let correction = exp(m - m_new);
        l *= correction;
        for (var c = 0u; c < DV4; c++) {
            acc[c] *= correction;
        }
        for (var jj = 0u; jj < BLOCK; jj++) {
            if DROPOUT && jj % 4u == 0u {
                draws = dropout_block(row, (kb + jj) / 4u);
            }
            if s[jj] > NEG_INF {
                let w = exp(s[jj] - m_new);
                l += w;
                var kept = w;
                if DROPOUT {
                    kept = w * dropout_factor(draws[jj % 4u]);
                }
                for (var c = 0u; c < DV4; c++) {
                    acc[c] = fma(vec4<f32>(kept), stage_b[jj * DV4 + c], acc[c]);
                }
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    if live {
        // l = 0 only for a row that sees no key (otherwise its largest score adds 1)
        for (var c = 0u; c < DV4; c++) {
            o[row * DV4 + c] = vec4<E>(select(acc[c] / l, vec4<f32>(0.0), l == 0.0));
        }
    }
}

@group(0) @binding(6) var<storage, read> d_out: array<vec4<E>>;
@group(0) @binding(7) var<storage, read> o_in: array<vec4<E>>;
@group(0) @binding(8) var<storage, read_write> stats_out: array<f32>;

// Each query row's (m, ℓ) of its visible scores ((0, 0) if it sees none) and δ = dO·o.
@compute @workgroup_size(ROWS)
fn stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let at = row_block(wg, groups, p.tq);
    if at.x >= p.batch {
        return;
    }
    let b = at.x;
    let r0 = at.y;
    let i = r0 + lid;
    let live = i < p.tq;
    let row = b * p.tq + i;
    var qr: array<vec4<f32>, D4>;
    if live {
        for (var c = 0u; c < D4; c++) {
            qr[c] = vec4<f32>(q[row * D4 + c]);
        }
    }
    let kend = key_limit(b);
    let mask_row = mask_base(b) + i * p.mask_row;
    var m = NEG_INF;
    var l = 0.0;
    let end = key_end(r0, kend);
    for (var kb = 0u; kb < end; kb += BLOCK) {
        stage_keys(b, kb, lid);
        workgroupBarrier();
        for (var jj = 0u; jj < BLOCK; jj++) {
            let j = kb + jj;
            if live && j < kend && visible(i, j) {
                var s = score(&qr, jj);
                var shown = true;
                if MASK {
                    s = with_mask(s, f32(mask[mask_row + j * p.mask_col]));
                    shown = s > NEG_INF;
                }
                if shown {
                    let m_new = max(m, s);
                    l = l * exp(m - m_new) + exp(s - m_new);
                    m = m_new;
                }
            }
        }
        workgroupBarrier();
    }
    if live {
        var delta = 0.0;
        for (var c = 0u; c < DV4; c++) {
            delta += dot(vec4<f32>(d_out[row * DV4 + c]), vec4<f32>(o_in[row * DV4 + c]));
        }
        let seen = l > 0.0;
        stats_out[row * 3u] = select(0.0, m, seen);
        stats_out[row * 3u + 1u] = select(0.0, log(l), seen);
        stats_out[row * 3u + 2u] = delta;
    }
}

@group(0) @binding(7) var<storage, read> row_stats: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad: array<vec4<E>>;

// dq_i = scale · Σ_j P_ij (M_ij dO_i·v_j − δ_i) k_j
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
    let row = b * p.tq + i;
    var qr: array<vec4<f32>, D4>;
    var dor: array<vec4<f32>, DV4>;
    var stats_i = vec3<f32>(0.0);
    if live {
        for (var c = 0u; c < D4; c++) {
            qr[c] = vec4<f32>(q[row * D4 + c]);
        }
        for (var c = 0u; c < DV4; c++) {
            dor[c] = vec4<f32>(d_out[row * DV4 + c]);
        }
        stats_i = vec3<f32>(row_stats[row * 3u], row_stats[row * 3u + 1u], row_stats[row * 3u + 2u]);
    }
    let kend = key_limit(b);
    let mask_row = mask_base(b) + i * p.mask_row;
    var acc: array<vec4<f32>, D4>;
    var draws = vec4<u32>(0u);
    let end = key_end(r0, kend);
    for (var kb = 0u; kb < end; kb += BLOCK) {
        stage_keys(b, kb, lid);
        stage_values(b, kb, lid);
        workgroupBarrier();
        for (var jj = 0u; jj < BLOCK; jj++) {
            if DROPOUT && jj % 4u == 0u {
                draws = dropout_block(row, (kb + jj) / 4u);
            }
            let j = kb + jj;
            if live && j < kend && visible(i, j) {
                var s = score(&qr, jj);
                var shown = true;
                if MASK {
                    s = with_mask(s, f32(mask[mask_row + j * p.mask_col]));
                    shown = s > NEG_INF;
                }
                if shown {
                    let pij = exp((s - stats_i.x) - stats_i.y);
                    var dp = 0.0;
                    for (var c = 0u; c < DV4; c++) {
                        dp += dot(dor[c], stage_b[jj * DV4 + c]);
                    }
                    if DROPOUT {
                        dp *= dropout_factor(draws[jj % 4u]);
                    }
                    let ds = pij * (dp - stats_i.z);
                    for (var c = 0u; c < D4; c++) {
                        acc[c] = fma(vec4<f32>(ds), stage_a[jj * D4 + c], acc[c]);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if live {
        for (var c = 0u; c < D4; c++) {
            grad[row * D4 + c] = vec4<E>(acc[c] * p.scale);
        }
    }
}

// Queries qb..qb+BLOCK of batch b into stage_a, their output gradients into stage_b, and their
// statistics into stage_stats.
fn stage_queries(b: u32, qb: u32, lid: u32) {
    for (var e = lid; e < BLOCK * D4; e += ROWS) {
        let i = qb + e / D4;
        stage_a[e] = select(vec4<f32>(0.0), vec4<f32>(q[(b * p.tq + min(i, p.tq - 1u)) * D4 + e % D4]), i < p.tq);
    }
    for (var e = lid; e < BLOCK * DV4; e += ROWS) {
        let i = qb + e / DV4;
        stage_b[e] = select(vec4<f32>(0.0), vec4<f32>(d_out[(b * p.tq + min(i, p.tq - 1u)) * DV4 + e % DV4]), i < p.tq);
    }
    for (var e = lid; e < BLOCK * 3u; e += ROWS) {
        stage_stats[e] = row_stats[(b * p.tq + min(qb + e / 3u, p.tq - 1u)) * 3u + e % 3u];
    }
}

// The dropout draws of queries qb..qb+BLOCK against key rows r0..r0+ROWS into stage_keep: a
// word is 32 keys of one query, eight Philox blocks, and each invocation fills whole words.
fn stage_draws(b: u32, qb: u32, r0: u32, lid: u32) {
    for (var e = lid; e < BLOCK * KEEP_WORDS; e += ROWS) {
        let row = b * p.tq + min(qb + e / KEEP_WORDS, p.tq - 1u);
        let first = (r0 + (e % KEEP_WORDS) * 32u) / 4u;
        var bits = 0u;
        for (var n = 0u; n < 8u; n++) {
            let words = dropout_block(row, first + n);
            for (var t = 0u; t < 4u; t++) {
                bits |= select(0u, 1u, unit(words[t]) >= p.drop_p) << (n * 4u + t);
            }
        }
        stage_keep[e] = bits;
    }
}

// What dropout multiplies P_ij by, for staged query ii and this invocation's key row lid.
fn staged_dropout_factor(ii: u32, lid: u32) -> f32 {
    let kept = (stage_keep[ii * KEEP_WORDS + lid / 32u] >> (lid % 32u)) & 1u;
    return select(0.0, p.drop_scale, kept == 1u);
}

// Key blocks: the first query that can see keys r0..r0+ROWS.
fn query_start(r0: u32) -> u32 {
    if p.causal == 1u {
        return r0 - r0 % BLOCK;
    }
    return 0u;
}

// Key blocks: the queries to visit, none when every key row of the block is past the key
// length `kend`.
fn query_end(r0: u32, kend: u32) -> u32 {
    return select(p.tq, 0u, r0 >= kend);
}

// For key row j (of a key below its length): P_ij for staged query ii, 0 where hidden, from its
// score and its row's statistics; `mask_col` is the offset of column j in batch b's block of the mask.
fn key_prob(kr: ptr<function, array<vec4<f32>, D4>>, qb: u32, ii: u32, j: u32, mask_col: u32) -> f32 {
    let i = qb + ii;
    if i >= p.tq || !visible(i, j) {
        return 0.0;
    }
    var s = 0.0;
    for (var c = 0u; c < D4; c++) {
        s += dot((*kr)[c], stage_a[ii * D4 + c]);
    }
    s *= p.scale;
    if MASK {
        s = with_mask(s, f32(mask[mask_col + i * p.mask_row]));
        if s <= NEG_INF {
            return 0.0;
        }
    }
    return exp((s - stage_stats[ii * 3u]) - stage_stats[ii * 3u + 1u]);
}

// dv_j = Σ_i P_ij M_ij dO_i, written into the dv block of [dk of every batch | dv of every batch].
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
    let kend = key_limit(b);
    let live = j < kend;
    var kr: array<vec4<f32>, D4>;
    if live {
        for (var c = 0u; c < D4; c++) {
            kr[c] = vec4<f32>(k[(b * p.tk + j) * D4 + c]);
        }
    }
    let mask_col = mask_base(b) + j * p.mask_col;
    var acc: array<vec4<f32>, DV4>;
    for (var qb = query_start(r0); qb < query_end(r0, kend); qb += BLOCK) {
        stage_queries(b, qb, lid);
        if DROPOUT {
            stage_draws(b, qb, r0, lid);
        }
        workgroupBarrier();
        for (var ii = 0u; ii < BLOCK; ii++) {
            if live {
                var pij = key_prob(&kr, qb, ii, j, mask_col);
                if DROPOUT {
                    pij *= staged_dropout_factor(ii, lid);
                }
                for (var c = 0u; c < DV4; c++) {
                    acc[c] = fma(vec4<f32>(pij), stage_b[ii * DV4 + c], acc[c]);
                }
            }
        }
        workgroupBarrier();
    }
    if j < p.tk {
        for (var c = 0u; c < DV4; c++) {
            grad[p.batch * p.tk * D4 + (b * p.tk + j) * DV4 + c] = vec4<E>(acc[c]);
        }
    }
}

// dk_j = scale · Σ_i P_ij (M_ij dO_i·v_j − δ_i) q_i, written into the dk block of [dk of every
// batch | dv of every batch].
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
    let kend = key_limit(b);
    let live = j < kend;
    var kr: array<vec4<f32>, D4>;
    var vr: array<vec4<f32>, DV4>;
    if live {
        for (var c = 0u; c < D4; c++) {
            kr[c] = vec4<f32>(k[(b * p.tk + j) * D4 + c]);
        }
        for (var c = 0u; c < DV4; c++) {
            vr[c] = vec4<f32>(v[(b * p.tk + j) * DV4 + c]);
        }
    }
    let mask_col = mask_base(b) + j * p.mask_col;
    var acc: array<vec4<f32>, D4>;
    for (var qb = query_start(r0); qb < query_end(r0, kend); qb += BLOCK) {
        stage_queries(b, qb, lid);
        if DROPOUT {
            stage_draws(b, qb, r0, lid);
        }
        workgroupBarrier();
        for (var ii = 0u; ii < BLOCK; ii++) {
            if live {
                let pij = key_prob(&kr, qb, ii, j, mask_col);
                var dp = 0.0;
                for (var c = 0u; c < DV4; c++) {
                    dp += dot(stage_b[ii * DV4 + c], vr[c]);
                }
                if DROPOUT {
                    dp *= staged_dropout_factor(ii, lid);
                }
                let ds = pij * (dp - stage_stats[ii * 3u + 2u]);
                for (var c = 0u; c < D4; c++) {
                    acc[c] = fma(vec4<f32>(ds), stage_a[ii * D4 + c], acc[c]);
                }
            }
        }
        workgroupBarrier();
    }
    if j < p.tk {
        for (var c = 0u; c < D4; c++) {
            grad[(b * p.tk + j) * D4 + c] = vec4<E>(acc[c] * p.scale);
        }
    }
}
