// @requires activations.wgsl
// Fused recurrent cells (src/ops/recurrent.rs): one time step of an LSTM, GRU or Elman RNN
// layer, forward and backward, one invocation per (row b, hidden unit j).
//
// gx (T, B, G·H) holds x·W_ihᵀ + b for every step; the kernel reads step p.step in place. gh
// (B, G·H) is h·W_hhᵀ. The state is h (B, H), or for the LSTM [h; c] (2, B, H). A row whose
// sequence has ended (p.step ≥ lengths[b]) passes its state, and backward its gradient, through.
// Derivatives come from the pre-activations (σ(x)·σ(−x), 4e/(1 + e)²), which stay accurate
// where a gate saturates.

struct Params {
    batch: u32,
    hidden: u32,
    step: u32,
    has_bias: u32,    // GRU: b_hn given
    has_lengths: u32,
    relu: u32,        // RNN: relu instead of tanh
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gx: array<f32>;
@group(0) @binding(2) var<storage, read> gh: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;    // GRU: b_hn (T, B, H)
@group(0) @binding(5) var<storage, read> lengths: array<i32>; // (B)
// forward: the new state
@group(0) @binding(6) var<storage, read_write> new_state: array<f32>;
// backward: the new state's gradient in, the packed gradients out (Cell::packed_blocks)
@group(0) @binding(6) var<storage, read> d_state: array<f32>;
@group(0) @binding(7) var<storage, read_write> packed: array<f32>;

// The element b·H + j this invocation owns (past B·H for the spare invocations).
fn element(wg: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return flat_workgroup(wg, groups) * 64u + lid;
}

fn running(b: u32) -> bool {
    return p.has_lengths == 0u || i32(p.step) < lengths[b];
}

// gx + gh of gate k for (b, j), with G gates per unit.
fn pre(b: u32, j: u32, k: u32, gates: u32) -> f32 {
    let width = gates * p.hidden;
    let col = k * p.hidden + j;
    return gx[(p.step * p.batch + b) * width + col] + gh[b * width + col];
}

// (σ(x), σ(−x)) without cancellation.
fn sigmoid_pair(x: f32) -> vec2<f32> {
    let e = exp(-abs(x));
    let big = 1.0 / (1.0 + e);
    let small = e * big;
    return select(vec2<f32>(small, big), vec2<f32>(big, small), x >= 0.0);
}

fn sigmoid_slope(x: f32) -> f32 {
    let s = sigmoid_pair(x);
    return s.x * s.y;
}

// tanh′(x) = 1 − tanh²x = 4e/(1 + e)², e = e^(−2|x|).
fn tanh_slope(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    let s = 1.0 + e;
    return 4.0 * e / (s * s);
}

@compute @workgroup_size(64)
fn lstm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let n = p.batch * p.hidden;
    let i = element(wg, groups, lid);
    if i >= n {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    let c_prev = state[n + i];
    if !running(b) {
        new_state[i] = state[i];
        new_state[n + i] = c_prev;
        return;
    }
    let c = sigmoid(pre(b, j, 1u, 4u)) * c_prev + sigmoid(pre(b, j, 0u, 4u)) * tanh_stable(pre(b, j, 2u, 4u));
    new_state[i] = sigmoid(pre(b, j, 3u, 4u)) * tanh_stable(c);
    new_state[n + i] = c;
}

// packed: [d gates (B, 4H) | dh_prev (B, H) | dc_prev (B, H)]
@compute @workgroup_size(64)
fn lstm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let n = p.batch * p.hidden;
    let i = element(wg, groups, lid);
    if i >= n {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    let gates = b * 4u * p.hidden + j;
    let dh = d_state[i];
    if !running(b) {
        for (var k = 0u; k < 4u; k++) {
            packed[gates + k * p.hidden] = 0.0;
        }
        packed[4u * n + i] = dh;
        packed[5u * n + i] = d_state[n + i];
        return;
    }
    let pi = pre(b, j, 0u, 4u);
    let pf = pre(b, j, 1u, 4u);
    let pg = pre(b, j, 2u, 4u);
    let po = pre(b, j, 3u, 4u);
    let ig = sigmoid(pi);
    let f = sigmoid(pf);
    let g = tanh_stable(pg);
    let c_prev = state[n + i];
    let c = f * c_prev + ig * g;
    // dc' also receives h' = o·tanh(c')'s share
    let dc = d_state[n + i] + dh * sigmoid(po) * tanh_slope(c);
    packed[gates] = dc * g * sigmoid_slope(pi);
    packed[gates + p.hidden] = dc * c_prev * sigmoid_slope(pf);
    packed[gates + 2u * p.hidden] = dc * ig * tanh_slope(pg);
    packed[gates + 3u * p.hidden] = dh * tanh_stable(c) * sigmoid_slope(po);
    packed[4u * n + i] = 0.0;
    packed[5u * n + i] = dc * f;
}

// The GRU's recurrent candidate term n_h + b_hn of element i = (b, j).
fn gru_hn(b: u32, j: u32, i: u32) -> f32 {
    var hn = gh[b * 3u * p.hidden + 2u * p.hidden + j];
    if p.has_bias == 1u {
        hn += bias[p.step * p.batch * p.hidden + i];
    }
    return hn;
}

// The GRU's candidate pre-activation n_x + r·(n_h + b_hn).
fn gru_pre_n(b: u32, j: u32, r: f32, hn: f32) -> f32 {
    return gx[(p.step * p.batch + b) * 3u * p.hidden + 2u * p.hidden + j] + r * hn;
}

@compute @workgroup_size(64)
fn gru_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, groups, lid);
    if i >= p.batch * p.hidden {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    if !running(b) {
        new_state[i] = state[i];
        return;
    }
    let r = sigmoid(pre(b, j, 0u, 3u));
    let z = sigmoid_pair(pre(b, j, 1u, 3u));
    let n = tanh_stable(gru_pre_n(b, j, r, gru_hn(b, j, i)));
    // (1 − z)·n + z·h, with 1 − z = σ(−z's pre-activation)
    new_state[i] = z.y * n + z.x * state[i];
}

// packed: [d gx (B, 3H) | d gh (B, 3H) | dh_prev (B, H) | d b_hn (B, H)]
@compute @workgroup_size(64)
fn gru_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let n = p.batch * p.hidden;
    let i = element(wg, groups, lid);
    if i >= n {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    let d_gx = b * 3u * p.hidden + j;
    let d_gh = 3u * n + d_gx;
    let dh = d_state[i];
    if !running(b) {
        for (var k = 0u; k < 3u; k++) {
            packed[d_gx + k * p.hidden] = 0.0;
            packed[d_gh + k * p.hidden] = 0.0;
        }
        packed[6u * n + i] = dh;
        packed[7u * n + i] = 0.0;
        return;
    }
    let pr = pre(b, j, 0u, 3u);
    let pz = pre(b, j, 1u, 3u);
    let r = sigmoid(pr);
    let z = sigmoid_pair(pz);
    let hn = gru_hn(b, j, i);
    let pn = gru_pre_n(b, j, r, hn);
    let dn = dh * z.y * tanh_slope(pn);
    let dr = dn * hn * sigmoid_slope(pr);
    let dz = dh * (state[i] - tanh_stable(pn)) * sigmoid_slope(pz);
    packed[d_gx] = dr;
    packed[d_gx + p.hidden] = dz;
    packed[d_gx + 2u * p.hidden] = dn;
    packed[d_gh] = dr;
    packed[d_gh + p.hidden] = dz;
    packed[d_gh + 2u * p.hidden] = dn * r;
    packed[6u * n + i] = dh * z.x;
    packed[7u * n + i] = dn * r;
}

@compute @workgroup_size(64)
fn rnn_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, groups, lid);
    if i >= p.batch * p.hidden {
        return;
    }
    let b = i / p.hidden;
    if !running(b) {
        new_state[i] = state[i];
        return;
    }
    let x = pre(b, i % p.hidden, 0u, 1u);
    new_state[i] = select(tanh_stable(x), max(x, 0.0), p.relu == 1u);
}

// packed: [d pre-activation (B, H) | dh_prev (B, H)]
@compute @workgroup_size(64)
fn rnn_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let n = p.batch * p.hidden;
    let i = element(wg, groups, lid);
    if i >= n {
        return;
    }
    let b = i / p.hidden;
    let dh = d_state[i];
    if !running(b) {
        packed[i] = 0.0;
        packed[n + i] = dh;
        return;
    }
    let x = pre(b, i % p.hidden, 0u, 1u);
    let slope = select(tanh_slope(x), select(0.0, 1.0, x > 0.0), p.relu == 1u);
    packed[i] = dh * slope;
    packed[n + i] = 0.0;
}
