// Fused optimizer updates (PyTorch's update rules): one invocation per element of up to 16
// parameter tensors of one parameter group, taken as one range of elements in which tensor k's
// elements end at `end(k)`. Per tensor k: the gradient grad{k} is read; the parameter param{k}
// and the state buffers s{j}_{k} (as many as the rule has) are updated in place, each
// invocation reading its elements before it writes them. src/optim/fused.rs writes the bindings
// and the body for the tensors and the rule; as written, the file updates one tensor with SGD
// (one state slot), so it parses alone.

struct Params {
    n: u32,         // elements of all the tensors
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
    ends: array<vec4<u32>, 4>, // where each tensor's elements end in the range
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad0: array<f32>; @group(0) @binding(2) var<storage, read_write> param0: array<f32>; @group(0) @binding(3) var<storage, read_write> s0_0: array<f32>; // @BINDINGS

fn end(k: u32) -> u32 {
    return p.ends[k / 4u][k % 4u];
}

// The rules, one element at a time: the new parameter from the old one `x` and the gradient;
// the state slots `s` (x, y, z: the rule's s0, s1, s2) are updated in place.

fn sgd(x: f32, grad: f32, s: ptr<function, vec3<f32>>) -> f32 {
    var g = grad + p.weight_decay * x;
    if p.a != 0.0 {
        let buf = select(p.a * (*s).x + g, g, p.first == 1u);
        (*s).x = buf;
        g = select(buf, g + p.a * buf, p.flag == 1u);
    }
    return x - p.lr * g;
}

fn adagrad(x: f32, grad: f32, s: ptr<function, vec3<f32>>) -> f32 {
    let g = grad + p.weight_decay * x;
    let sum = (*s).x + g * g;
    (*s).x = sum;
    return x - p.lr * g / (sqrt(sum) + p.eps);
}

fn rmsprop(x: f32, grad: f32, s: ptr<function, vec3<f32>>) -> f32 {
    let g = grad + p.weight_decay * x;
    let sq = p.a * (*s).x + p.one_minus_a * g * g;
    (*s).x = sq;
    var avg = sqrt(sq) + p.eps;
    if p.flag == 1u {
        let ga = (*s).z + p.one_minus_a * (g - (*s).z);
        (*s).z = ga;
        avg = sqrt(sq - ga * ga) + p.eps;
    }
    if p.b > 0.0 {
        let buf = p.b * (*s).y + g / avg;
        (*s).y = buf;
        return x - p.lr * buf;
    }
    return x - p.lr * g / avg;
}

fn adadelta(x: f32, grad: f32, s: ptr<function, vec3<f32>>) -> f32 {
    let g = grad + p.weight_decay * x;
    let sq = p.a * (*s).x + p.one_minus_a * g * g;
    (*s).x = sq;
    let delta = sqrt((*s).y + p.eps) / sqrt(sq + p.eps) * g;
    (*s).y = p.a * (*s).y + p.one_minus_a * delta * delta;
    return x - p.lr * delta;
}

fn adam(param: f32, grad: f32, s: ptr<function, vec3<f32>>) -> f32 {
    var x = param;
    var g = grad;
    if p.flag == 1u {
        x = x * p.decay;
    } else {
        g = g + p.weight_decay * x;
    }
    // PyTorch's order: exp_avg.lerp_(g, 1 − β1); exp_avg_sq.mul_(β2).addcmul_(g, g, 1 − β2)
    let m = (*s).x + p.one_minus_a * (g - (*s).x);
    let v = p.b * (*s).y + p.one_minus_b * g * g;
    (*s).x = m;
    (*s).y = v;
    return x - p.step_size * m / (sqrt(v) / p.bias2_sqrt + p.eps);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wg, groups) * 256u + lid;
    if i >= p.n {
        return;
    }
    var s = vec3<f32>(0.0);
    if i < end(0u) { let j = i; s.x = s0_0[j]; param0[j] = sgd(param0[j], grad0[j], &s); s0_0[j] = s.x; } // @BODY
}
