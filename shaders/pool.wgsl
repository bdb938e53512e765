// 2-D max and average pooling over planes (N·C of them), and their gradients written as
// gathers: each input element visits the windows that contain it. src/ops/pool.rs may splice a
// fused chain into max_grad's store (an epilogue: a ReLU's gradient; see src/ops/epilogue.rs).

struct Params {
    planes: u32, h: u32, w: u32, oh: u32,
    ow: u32, kh: u32, kw: u32, sh: u32,
    sw: u32, ph: u32, pw: u32, dh: u32,
    dw: u32, count_include_pad: u32, is_max: u32, pad0: u32,
    // @FIELDS
}

@group(0) @binding(0) var<uniform> p: Params;

// The input row/column of tap i of window o along one axis, or -1 when it falls in the padding.
fn tap(o: u32, i: u32, stride: u32, dil: u32, pad: u32, size: u32) -> i32 {
    let t = i32(o * stride + i * dil) - i32(pad);
    return select(-1, t, t >= 0 && t < i32(size));
}

// The divisor of window (oy, ox) for averaging.
fn window_count(oy: u32, ox: u32) -> f32 {
    if p.count_include_pad == 1u {
        let hy = min(oy * p.sh + p.kh, p.h + 2u * p.ph) - oy * p.sh;
        let hx = min(ox * p.sw + p.kw, p.w + 2u * p.pw) - ox * p.sw;
        return f32(hy * hx);
    }
    var n = 0u;
    for (var i = 0u; i < p.kh; i++) {
        for (var j = 0u; j < p.kw; j++) {
            if tap(oy, i, p.sh, p.dh, p.ph, p.h) >= 0 && tap(ox, j, p.sw, p.dw, p.pw, p.w) >= 0 {
                n++;
            }
        }
    }
    return f32(n);
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// The offset (within its plane) of window (oy, ox)'s first maximal element, or -1 if empty.
fn argmax(plane: u32, oy: u32, ox: u32) -> i32 {
    var best = -1;
    var best_value = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let r = tap(oy, i, p.sh, p.dh, p.ph, p.h);
        if r < 0 {
            continue;
        }
        for (var j = 0u; j < p.kw; j++) {
            let c = tap(ox, j, p.sw, p.dw, p.pw, p.w);
            if c < 0 {
                continue;
            }
            let at = i32(u32(r) * p.w + u32(c));
            let v = x[plane + u32(at)];
            if best < 0 || v > best_value {
                best = at;
                best_value = v;
            }
        }
    }
    return best;
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let idx = flat_workgroup(wg, groups) * 256u + lid;
    if idx >= p.planes * p.oh * p.ow {
        return;
    }
    let ox = idx % p.ow;
    let oy = (idx / p.ow) % p.oh;
    let plane = (idx / (p.ow * p.oh)) * p.h * p.w;
    if p.is_max == 1u {
        let best = argmax(plane, oy, ox);
        y[idx] = select(bitcast<f32>(0xff800000u), x[plane + u32(max(best, 0))], best >= 0);
        return;
    }
    var sum = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let r = tap(oy, i, p.sh, p.dh, p.ph, p.h);
        for (var j = 0u; j < p.kw; j++) {
            let c = tap(ox, j, p.sw, p.dw, p.pw, p.w);
            if r >= 0 && c >= 0 {
                sum += x[plane + u32(r) * p.w + u32(c)];
            }
        }
    }
    y[idx] = sum / window_count(oy, ox);
}

// For input position (yy, xx) and tap i: the window index along one axis whose tap i lands on
// it, or -1.
fn window_of(pos: u32, i: u32, stride: u32, dil: u32, pad: u32, out: u32) -> i32 {
    let t = i32(pos + pad) - i32(i * dil);
    if t < 0 || u32(t) % stride != 0u || u32(t) / stride >= out {
        return -1;
    }
    return t / i32(stride);
}

// max_grad reads the input x through `x` (binding 1), and dy:
@group(0) @binding(2) var<storage, read> gdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> gdx: array<f32>; // @OUTPUTS

// @EPILOGUE

fn store_max_grad(i: u32, v: f32) {
    gdx[i] = v; // @STORE
}

@compute @workgroup_size(256)
fn max_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let idx = flat_workgroup(wg, groups) * 256u + lid;
    if idx >= p.planes * p.h * p.w {
        return;
    }
    let xx = idx % p.w;
    let yy = (idx / p.w) % p.h;
    let pl = idx / (p.w * p.h);
    let plane = pl * p.h * p.w;
    let here = i32(yy * p.w + xx);
    var acc = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let oy = window_of(yy, i, p.sh, p.dh, p.ph, p.oh);
        if oy < 0 {
            continue;
        }
        for (var j = 0u; j < p.kw; j++) {
            let ox = window_of(xx, j, p.sw, p.dw, p.pw, p.ow);
            if ox < 0 {
                continue;
            }
            let best = argmax(plane, u32(oy), u32(ox));
            if best == here {
                acc += gdy[(pl * p.oh + u32(oy)) * p.ow + u32(ox)];
            }
        }
    }
    store_max_grad(idx, acc);
}

@compute @workgroup_size(256)
fn avg_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let idx = flat_workgroup(wg, groups) * 256u + lid;
    if idx >= p.planes * p.h * p.w {
        return;
    }
    let xx = idx % p.w;
    let yy = (idx / p.w) % p.h;
    let pl = idx / (p.w * p.h);
    var acc = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let oy = window_of(yy, i, p.sh, p.dh, p.ph, p.oh);
        if oy < 0 {
            continue;
        }
        for (var j = 0u; j < p.kw; j++) {
            let ox = window_of(xx, j, p.sw, p.dw, p.pw, p.ow);
            if ox >= 0 {
                acc += x[(pl * p.oh + u32(oy)) * p.ow + u32(ox)] / window_count(u32(oy), u32(ox));
            }
        }
    }
    y[idx] = acc;
}
