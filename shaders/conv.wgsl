// 2-D convolution, NCHW, with stride, padding, dilation and groups, and its two gradients.
//   forward:     y[n,o,oy,ox]  = Σ_{ci,i,j} x[n, g·cg+ci, oy·sh−ph+i·dh, ox·sw−pw+j·dw] · w[o,ci,i,j]
//   input_grad:  dx[n,c,y,x]   = Σ_{o in c's group, i, j} dy[n,o,oy,ox] · w[o,c−g·cg,i,j]
//                              where oy·sh = y+ph−i·dh (and likewise ox) lands on the grid
//   weight_grad: dw[o,ci,i,j]  = Σ_{n,oy,ox} dy[n,o,oy,ox] · x[n, g·cg+ci, ...]   (a workgroup each)

struct Params {
    n: u32, c: u32, h: u32, w: u32,
    o: u32, kh: u32, kw: u32, oh: u32,
    ow: u32, groups: u32, sh: u32, sw: u32,
    ph: u32, pw: u32, dh: u32, dw: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> first: array<f32>;  // x (forward, weight_grad) or dy
@group(0) @binding(2) var<storage, read> second: array<f32>; // w (forward, input_grad) or dy
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let idx = flat_workgroup(wg, groups) * 256u + lid;
    if idx >= p.n * p.o * p.oh * p.ow {
        return;
    }
    let ox = idx % p.ow;
    let oy = (idx / p.ow) % p.oh;
    let o = (idx / (p.ow * p.oh)) % p.o;
    let n = idx / (p.ow * p.oh * p.o);
    let cg = p.c / p.groups;
    let c0 = (o / (p.o / p.groups)) * cg;
    var acc = 0.0;
    for (var ci = 0u; ci < cg; ci++) {
        let plane = (n * p.c + c0 + ci) * p.h * p.w;
        let wbase = (o * cg + ci) * p.kh * p.kw;
        for (var i = 0u; i < p.kh; i++) {
            let y = i32(oy * p.sh + i * p.dh) - i32(p.ph);
            if y < 0 || y >= i32(p.h) {
                continue;
            }
            for (var j = 0u; j < p.kw; j++) {
                let x = i32(ox * p.sw + j * p.dw) - i32(p.pw);
                if x >= 0 && x < i32(p.w) {
                    acc += first[plane + u32(y) * p.w + u32(x)] * second[wbase + i * p.kw + j];
                }
            }
        }
    }
    out[idx] = acc;
}

@compute @workgroup_size(256)
fn input_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let idx = flat_workgroup(wg, groups) * 256u + lid;
    if idx >= p.n * p.c * p.h * p.w {
        return;
    }
    let x = idx % p.w;
    let y = (idx / p.w) % p.h;
    let c = (idx / (p.w * p.h)) % p.c;
    let n = idx / (p.w * p.h * p.c);
    let cg = p.c / p.groups;
    let og = p.o / p.groups;
    let g = c / cg;
    let ci = c % cg;
    var acc = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let ty = i32(y + p.ph) - i32(i * p.dh);
        if ty < 0 || u32(ty) % p.sh != 0u || u32(ty) / p.sh >= p.oh {
            continue;
        }
        let oy = u32(ty) / p.sh;
        for (var j = 0u; j < p.kw; j++) {
            let tx = i32(x + p.pw) - i32(j * p.dw);
            if tx < 0 || u32(tx) % p.sw != 0u || u32(tx) / p.sw >= p.ow {
                continue;
            }
            let ox = u32(tx) / p.sw;
            for (var oo = 0u; oo < og; oo++) {
                let o = g * og + oo;
                acc += first[((n * p.o + o) * p.oh + oy) * p.ow + ox] * second[((o * cg + ci) * p.kh + i) * p.kw + j];
            }
        }
    }
    out[idx] = acc;
}

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(256)
fn weight_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let idx = flat_workgroup(wg, groups);
    let cg = p.c / p.groups;
    let live = idx < p.o * cg * p.kh * p.kw;
    let j = idx % p.kw;
    let i = (idx / p.kw) % p.kh;
    let ci = (idx / (p.kw * p.kh)) % cg;
    let o = idx / (p.kw * p.kh * cg);
    let c = (o / (p.o / p.groups)) * cg + ci;
    var acc = 0.0;
    if live {
        let positions = p.n * p.oh * p.ow;
        for (var t = lid; t < positions; t += WG) {
            let ox = t % p.ow;
            let oy = (t / p.ow) % p.oh;
            let n = t / (p.ow * p.oh);
            let y = i32(oy * p.sh + i * p.dh) - i32(p.ph);
            let x = i32(ox * p.sw + j * p.dw) - i32(p.pw);
            if y >= 0 && y < i32(p.h) && x >= 0 && x < i32(p.w) {
                acc += second[((n * p.o + o) * p.oh + oy) * p.ow + ox]
                    * first[((n * p.c + c) * p.h + u32(y)) * p.w + u32(x)];
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if live && lid == 0u {
        out[idx] = partial[0];
    }
}
