// Fused optimizer updates, one invocation per parameter element (PyTorch's update rules).
// Bindings: the gradient is read; the parameter and the state buffers s0..s2 (as many as the
// rule has) are updated in place. Each invocation reads its elements before it writes them.

struct Params {
    n: u32,
    first: u32,     // 1 on the first step (SGD initializes its momentum buffer with g)
    flag: u32,      // SGD: nesterov; RMSProp: centered; Adam: decoupled weight decay (AdamW)
    pad0: u32,
    lr: f32,
    a: f32,           // SGD momentum, RMSProp alpha, Adadelta rho, Adam beta1
    b: f32,           // RMSProp momentum, Adam beta2
    one_minus_a: f32, // 1 − a and 1 − b, computed by the host in f64: 1 − b from an f32 b = 0.999
    one_minus_b: f32, // would be 1.3e-5 off
    eps: f32,
    weight_decay: f32,
    step_size: f32,   // Adam: lr / (1 − beta1^t)
    bias2_sqrt: f32,  // Adam: √(1 − beta2^t)
    decay: f32,       // AdamW: 1 − lr·weight_decay
    pad1: f32,
    pad2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> s0: array<f32>;
@group(0) @binding(4) var<storage, read_write> s1: array<f32>;
@group(0) @binding(5) var<storage, read_write> s2: array<f32>;

fn index(wg: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return flat_workgroup(wg, groups) * 256u + lid;
}

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, groups, lid);
    if i >= p.n {
        return;
    }
    var g = grad[i] + p.weight_decay * param[i];
    if p.a != 0.0 {
        let buf = select(p.a * s0[i] + g, g, p.first == 1u);
        s0[i] = buf;
        g = select(buf, g + p.a * buf, p.flag == 1u);
    }
    param[i] = param[i] - p.lr * g;
}

@compute @workgroup_size(256)
fn adagrad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, groups, lid);
    if i >= p.n {
        return;
    }
    let g = grad[i] + p.weight_decay * param[i];
    let sum = s0[i] + g * g;
    s0[i] = sum;
    param[i] = param[i] - p.lr * g / (sqrt(sum) + p.eps);
}

@compute @workgroup_size(256)
fn rmsprop(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, groups, lid);
    if i >= p.n {
        return;
    }
    let g = grad[i] + p.weight_decay * param[i];
    let sq = p.a * s0[i] + p.one_minus_a * g * g;
    s0[i] = sq;
    var avg = sqrt(sq) + p.eps;
    if p.flag == 1u {
        let ga = s2[i] + p.one_minus_a * (g - s2[i]);
        s2[i] = ga;
        avg = sqrt(sq - ga * ga) + p.eps;
    }
    if p.b > 0.0 {
        let buf = p.b * s1[i] + g / avg;
        s1[i] = buf;
        param[i] = param[i] - p.lr * buf;
    } else {
        param[i] = param[i] - p.lr * g / avg;
    }
}

@compute @workgroup_size(256)
fn adadelta(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, groups, lid);
    if i >= p.n {
        return;
    }
    let g = grad[i] + p.weight_decay * param[i];
    let sq = p.a * s0[i] + p.one_minus_a * g * g;
    s0[i] = sq;
    let delta = sqrt(s1[i] + p.eps) / sqrt(sq + p.eps) * g;
    s1[i] = p.a * s1[i] + p.one_minus_a * delta * delta;
    param[i] = param[i] - p.lr * delta;
}

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, groups, lid);
    if i >= p.n {
        return;
    }
    var x = param[i];
    var g = grad[i];
    if p.flag == 1u {
        x = x * p.decay;
    } else {
        g = g + p.weight_decay * x;
    }
    // PyTorch's order: exp_avg.lerp_(g, 1 − β1); exp_avg_sq.mul_(β2).addcmul_(g, g, 1 − β2)
    let m = s0[i] + p.one_minus_a * (g - s0[i]);
    let v = p.b * s1[i] + p.one_minus_b * g * g;
    s0[i] = m;
    s1[i] = v;
    param[i] = x - p.step_size * m / (sqrt(v) / p.bias2_sqrt + p.eps);
}
