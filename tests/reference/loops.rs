//! Plain f64 loops, one per kernel op, written from the ops' definitions: no kiln code, no fast
//! paths, no cleverness. Every value is indexed through its row-major shape. (The recurrent
//! cells' fused step has its own file, `cell_loops.rs`.)

use kiln::DType;

/// An input's values (as f64) with its shape and dtype.
#[derive(Clone)]
pub struct Host {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub v: Vec<f64>,
}

impl Host {
    /// The element at multi-index `at` (row-major).
    pub fn at(&self, at: &[usize]) -> f64 {
        self.v[offset(&self.shape, at)]
    }

    /// The element at output multi-index `at`, broadcasting this input against the output
    /// (aligned on the right; size-1 dimensions repeat).
    pub fn broadcast(&self, at: &[usize]) -> f64 {
        let lead = at.len() - self.shape.len();
        let mine: Vec<usize> =
            self.shape.iter().zip(&at[lead..]).map(|(&d, &i)| if d == 1 { 0 } else { i }).collect();
        self.at(&mine)
    }
}

/// The row-major offset of multi-index `at` in `shape`.
pub fn offset(shape: &[usize], at: &[usize]) -> usize {
    assert_eq!(shape.len(), at.len(), "index rank");
    shape.iter().zip(at).fold(0, |acc, (&d, &i)| {
        assert!(i < d, "index {at:?} out of {shape:?}");
        acc * d + i
    })
}

/// The multi-index of row-major offset `i` in `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut at = vec![0; shape.len()];
    for (a, &d) in at.iter_mut().zip(shape).rev() {
        *a = i % d;
        i /= d;
    }
    at
}

/// `f` of every multi-index of `shape`, in row-major order.
pub fn tabulate(shape: &[usize], f: impl Fn(&[usize]) -> f64) -> Vec<f64> {
    (0..shape.iter().product()).map(|i| f(&unravel(i, shape))).collect()
}

/// The broadcast shape of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], k: usize| if k < rank - s.len() { 1 } else { s[k - (rank - s.len())] };
    (0..rank).map(|k| dim(a, k).max(dim(b, k))).collect()
}

/// A unary function with parameters a and b, elementwise.
pub fn unary(x: &Host, f: impl Fn(f64) -> f64) -> Vec<f64> {
    x.v.iter().map(|&v| f(v)).collect()
}

/// A binary function with broadcasting.
pub fn binary(a: &Host, b: &Host, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    tabulate(&broadcast_shape(&a.shape, &b.shape), |i| f(a.broadcast(i), b.broadcast(i)))
}

/// `cond ? x : y` with broadcasting.
pub fn select(cond: &Host, x: &Host, y: &Host) -> Vec<f64> {
    let shape = broadcast_shape(&broadcast_shape(&cond.shape, &x.shape), &y.shape);
    tabulate(&shape, |i| if cond.broadcast(i) != 0.0 { x.broadcast(i) } else { y.broadcast(i) })
}

/// Folds `f` along `axis` (the axis removed), starting from `init`.
pub fn fold_axis(x: &Host, axis: usize, init: f64, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let mut out_shape = x.shape.clone();
    out_shape.remove(axis);
    tabulate(&out_shape, |o| {
        let mut at = o.to_vec();
        at.insert(axis, 0);
        (0..x.shape[axis]).fold(init, |acc, k| {
            at[axis] = k;
            f(acc, x.at(&at))
        })
    })
}

/// The index of the largest (`max`) or smallest element along `axis`, the first on ties.
pub fn arg_extreme(x: &Host, axis: usize, max: bool) -> Vec<f64> {
    let mut out_shape = x.shape.clone();
    out_shape.remove(axis);
    tabulate(&out_shape, |o| {
        let mut at = o.to_vec();
        at.insert(axis, 0);
        let mut best = (0, x.at(&at));
        for k in 1..x.shape[axis] {
            at[axis] = k;
            let v = x.at(&at);
            if (max && v > best.1) || (!max && v < best.1) {
                best = (k, v);
            }
        }
        best.0 as f64
    })
}

/// Axes permuted: output axis `a` is input axis `perm[a]`.
pub fn permute(x: &Host, perm: &[usize]) -> Vec<f64> {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    tabulate(&shape, |o| {
        let mut at = vec![0; o.len()];
        for (a, &p) in perm.iter().enumerate() {
            at[p] = o[a];
        }
        x.at(&at)
    })
}

/// Elements `start, start + step, …` below `end` along `axis`.
pub fn slice(x: &Host, axis: usize, start: usize, end: usize, step: usize) -> Vec<f64> {
    let mut shape = x.shape.clone();
    shape[axis] = (end - start).div_ceil(step);
    tabulate(&shape, |o| {
        let mut at = o.to_vec();
        at[axis] = start + o[axis] * step;
        x.at(&at)
    })
}

/// Padding per axis: (before, after, interior) with `value`.
pub fn pad(x: &Host, spec: &[(usize, usize, usize)], value: f64) -> Vec<f64> {
    let shape: Vec<usize> = x
        .shape
        .iter()
        .zip(spec)
        .map(|(&d, &(lo, hi, mid))| lo + hi + d + d.saturating_sub(1) * mid)
        .collect();
    tabulate(&shape, |o| {
        let mut at = Vec::with_capacity(o.len());
        for ((&i, &(lo, _, mid)), &d) in o.iter().zip(spec).zip(&x.shape) {
            if i < lo || !(i - lo).is_multiple_of(mid + 1) || (i - lo) / (mid + 1) >= d {
                return value;
            }
            at.push((i - lo) / (mid + 1));
        }
        x.at(&at)
    })
}

/// Inputs joined along `axis`.
pub fn concat(parts: &[&Host], axis: usize) -> Vec<f64> {
    let mut shape = parts[0].shape.clone();
    shape[axis] = parts.iter().map(|p| p.shape[axis]).sum();
    tabulate(&shape, |o| {
        let (mut at, mut k) = (o.to_vec(), o[axis]);
        for p in parts {
            if k < p.shape[axis] {
                at[axis] = k;
                return p.at(&at);
            }
            k -= p.shape[axis];
        }
        unreachable!("k is inside the joined axis")
    })
}

/// `out[i][j] = x[index[i][j]][j]` (axis 0) and its analogue on other axes.
pub fn gather(x: &Host, axis: usize, index: &Host) -> Vec<f64> {
    tabulate(&index.shape, |o| {
        let mut at = o.to_vec();
        at[axis] = index.at(o) as usize;
        x.at(&at)
    })
}

/// Slices `index[k]` of `x` along `axis`, stacked.
pub fn index_select(x: &Host, axis: usize, index: &Host) -> Vec<f64> {
    let mut shape = x.shape.clone();
    shape[axis] = index.v.len();
    tabulate(&shape, |o| {
        let mut at = o.to_vec();
        at[axis] = index.v[o[axis]] as usize;
        x.at(&at)
    })
}

/// `x` with `src[i][j]` added at `[index[i][j]][j]` (axis 0) and the analogue on other axes.
pub fn scatter_add(x: &Host, axis: usize, index: &Host, src: &Host) -> Vec<f64> {
    let mut out = x.v.clone();
    for (i, &s) in src.v.iter().enumerate() {
        let mut at = unravel(i, &src.shape);
        at[axis] = index.v[i] as usize;
        out[offset(&x.shape, &at)] += s;
    }
    out
}

/// `x` with slice `k` of `src` along `axis` added at slice `index[k]`.
pub fn index_add(x: &Host, axis: usize, index: &Host, src: &Host) -> Vec<f64> {
    let mut out = x.v.clone();
    for (i, &s) in src.v.iter().enumerate() {
        let mut at = unravel(i, &src.shape);
        at[axis] = index.v[at[axis]] as usize;
        out[offset(&x.shape, &at)] += s;
    }
    out
}

/// Batched matrix product (…, m, k) · (k, n) or (…, k, n), the left operand's batch dimensions kept.
pub fn matmul(a: &Host, b: &Host) -> Vec<f64> {
    let (m, k) = (a.shape[a.shape.len() - 2], a.shape[a.shape.len() - 1]);
    let n = b.shape[b.shape.len() - 1];
    let batch: usize = a.shape[..a.shape.len() - 2].iter().product();
    // b is one matrix for every batch entry, or a batch of its own as long as a's
    let b_stride = if b.shape.len() > 2 { k * n } else { 0 };
    let mut out = vec![0.0; batch * m * n];
    for t in 0..batch {
        let bt = &b.v[t * b_stride..];
        for i in 0..m {
            for j in 0..n {
                out[(t * m + i) * n + j] = (0..k).map(|l| a.v[(t * m + i) * k + l] * bt[l * n + j]).sum();
            }
        }
    }
    out
}

/// Convolution geometry: stride, padding (each way) and groups; dilation 1.
#[derive(Clone, Copy)]
pub struct Conv {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

impl Conv {
    /// The output's spatial size for an input size and a kernel size.
    pub fn out(&self, size: usize, kernel: usize) -> usize {
        (size + 2 * self.padding - kernel) / self.stride + 1
    }

    /// Every (n, o, oy, ox, c, i, j, iy, ix) term of the convolution of x (N, C, H, W) with
    /// weights (O, C/groups, KH, KW): output (n, o, oy, ox) takes x[n, c, iy, ix]·w[o, c', i, j]
    /// where c is channel c' of o's group. `visit` gets (output offset, x offset, w offset).
    pub fn terms(&self, x: &[usize], w: &[usize], mut visit: impl FnMut(usize, usize, usize)) {
        let ([n, c, h, wd], [o, cg, kh, kw]) = (dims4(x), dims4(w));
        let (oh, ow, og) = (self.out(h, kh), self.out(wd, kw), o / self.groups);
        assert_eq!(c, cg * self.groups, "channels");
        for b in 0..n {
            for oc in 0..o {
                let g = oc / og;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let out = ((b * o + oc) * oh + oy) * ow + ox;
                        for ci in 0..cg {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let iy = (oy * self.stride + i) as isize - self.padding as isize;
                                    let ix = (ox * self.stride + j) as isize - self.padding as isize;
                                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                                        continue;
                                    }
                                    let xi = ((b * c + g * cg + ci) * h + iy as usize) * wd + ix as usize;
                                    visit(out, xi, ((oc * cg + ci) * kh + i) * kw + j);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The four dimensions of an image-shaped tensor.
pub fn dims4(s: &[usize]) -> [usize; 4] {
    s.try_into().expect("a 4-d shape")
}

/// y = conv(x, w).
pub fn conv2d(x: &Host, w: &Host, geom: Conv) -> Vec<f64> {
    let [n, _, h, wd] = dims4(&x.shape);
    let [o, _, kh, kw] = dims4(&w.shape);
    let mut y = vec![0.0; n * o * geom.out(h, kh) * geom.out(wd, kw)];
    geom.terms(&x.shape, &w.shape, |yi, xi, wi| y[yi] += x.v[xi] * w.v[wi]);
    y
}

/// dx for upstream dy: every term's weight times its output's gradient.
pub fn conv2d_input_grad(x_shape: &[usize], w: &Host, dy: &Host, geom: Conv) -> Vec<f64> {
    let mut dx = vec![0.0; x_shape.iter().product()];
    geom.terms(x_shape, &w.shape, |yi, xi, wi| dx[xi] += dy.v[yi] * w.v[wi]);
    dx
}

/// dw for upstream dy: every term's input times its output's gradient.
pub fn conv2d_weight_grad(x: &Host, w_shape: &[usize], dy: &Host, geom: Conv) -> Vec<f64> {
    let mut dw = vec![0.0; w_shape.iter().product()];
    geom.terms(&x.shape, w_shape, |yi, xi, wi| dw[wi] += dy.v[yi] * x.v[xi]);
    dw
}

/// The x offsets of every window of a k×k pooling at stride `stride` (no padding) over
/// (N, C, H, W), by output offset.
pub fn windows(shape: &[usize], k: usize, stride: usize) -> Vec<Vec<usize>> {
    let [n, c, h, w] = dims4(shape);
    let (oh, ow) = ((h - k) / stride + 1, (w - k) / stride + 1);
    let mut all = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let taps = (0..k * k).map(|t| (plane * h + oy * stride + t / k) * w + ox * stride + t % k);
                all.push(taps.collect());
            }
        }
    }
    all
}

/// Max pooling, and the tap of each window that holds its maximum (the first on ties).
pub fn max_pool(x: &Host, k: usize, stride: usize) -> (Vec<f64>, Vec<usize>) {
    windows(&x.shape, k, stride)
        .into_iter()
        .map(|taps| {
            let best = taps.iter().copied().fold(taps[0], |b, t| if x.v[t] > x.v[b] { t } else { b });
            (x.v[best], best)
        })
        .unzip()
}

/// dx of max pooling: each window's gradient to its maximum.
pub fn max_pool_grad(x: &Host, dy: &Host, k: usize, stride: usize) -> Vec<f64> {
    let mut dx = vec![0.0; x.v.len()];
    for (o, best) in max_pool(x, k, stride).1.into_iter().enumerate() {
        dx[best] += dy.v[o];
    }
    dx
}

/// Average pooling over whole windows.
pub fn avg_pool(x: &Host, k: usize, stride: usize) -> Vec<f64> {
    windows(&x.shape, k, stride)
        .iter()
        .map(|taps| taps.iter().map(|&t| x.v[t]).sum::<f64>() / taps.len() as f64)
        .collect()
}

/// dx of average pooling: each window's gradient shared by its taps.
pub fn avg_pool_grad(x_shape: &[usize], dy: &Host, k: usize, stride: usize) -> Vec<f64> {
    let mut dx = vec![0.0; x_shape.iter().product()];
    for (o, taps) in windows(x_shape, k, stride).iter().enumerate() {
        for &t in taps {
            dx[t] += dy.v[o] / taps.len() as f64;
        }
    }
    dx
}

/// Softmax (or log-softmax) of every row along `axis`.
pub fn softmax(x: &Host, axis: usize, log: bool) -> Vec<f64> {
    let mut out = vec![0.0; x.v.len()];
    let mut outer = x.shape.clone();
    outer[axis] = 1;
    for r in 0..outer.iter().product() {
        let mut at = unravel(r, &outer);
        let row: Vec<usize> = (0..x.shape[axis])
            .map(|k| {
                at[axis] = k;
                offset(&x.shape, &at)
            })
            .collect();
        let m = row.iter().map(|&i| x.v[i]).fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|&i| (x.v[i] - m).exp()).sum();
        for &i in &row {
            out[i] = if log { x.v[i] - m - sum.ln() } else { (x.v[i] - m).exp() / sum };
        }
    }
    out
}

/// Layer norm over the last axis (biased variance), with optional weight and bias.
pub fn layer_norm(x: &Host, w: Option<&Host>, b: Option<&Host>, eps: f64) -> Vec<f64> {
    let n = *x.shape.last().expect("rank ≥ 1");
    let mut out = Vec::with_capacity(x.v.len());
    for row in x.v.chunks(n) {
        let mean = row.iter().sum::<f64>() / n as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        for (j, v) in row.iter().enumerate() {
            let y = (v - mean) / (var + eps).sqrt();
            out.push(y * w.map_or(1.0, |w| w.v[j]) + b.map_or(0.0, |b| b.v[j]));
        }
    }
    out
}

/// dx of layer norm over the last axis with weight w, for upstream dy: with x̂ the normalized
/// row and g = dy·w, dx = (g − mean(g) − x̂·mean(g·x̂)) / σ.
pub fn layer_norm_grad(x: &Host, w: &Host, dy: &Host, eps: f64) -> Vec<f64> {
    let n = *x.shape.last().expect("rank ≥ 1");
    let mut dx = Vec::with_capacity(x.v.len());
    for (row, d) in x.v.chunks(n).zip(dy.v.chunks(n)) {
        let mean = row.iter().sum::<f64>() / n as f64;
        let sigma = (row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64 + eps).sqrt();
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean) / sigma).collect();
        let g: Vec<f64> = d.iter().zip(&w.v).map(|(d, w)| d * w).collect();
        let g_mean = g.iter().sum::<f64>() / n as f64;
        let gx_mean = g.iter().zip(&xhat).map(|(g, x)| g * x).sum::<f64>() / n as f64;
        dx.extend(g.iter().zip(&xhat).map(|(g, x)| (g - g_mean - x * gx_mean) / sigma));
    }
    dx
}

/// Attention of q (B, Tq, D) over k (B, Tk, D) and v (B, Tk, Dv), scale 1/√D, optionally
/// causal (query i sees keys j ≤ i): per batch entry and query row, the probabilities over the
/// visible keys and the row's log-sum-exp.
pub struct Attention {
    pub b: usize,
    pub tq: usize,
    pub tk: usize,
    pub d: usize,
    pub dv: usize,
    pub causal: bool,
}

impl Attention {
    pub fn of(q: &Host, v: &Host, tk: usize, causal: bool) -> Attention {
        let [b, tq, d] = q.shape[..].try_into().expect("(B, T, D)");
        Attention { b, tq, tk, d, dv: v.shape[2], causal }
    }

    /// (probabilities over the keys, log-sum-exp) of query row (t, i).
    pub fn row(&self, q: &Host, k: &Host, t: usize, i: usize) -> (Vec<f64>, f64) {
        let scale = 1.0 / (self.d as f64).sqrt();
        let seen = if self.causal { (i + 1).min(self.tk) } else { self.tk };
        let s: Vec<f64> = (0..seen)
            .map(|j| (0..self.d).map(|c| q.at(&[t, i, c]) * k.at(&[t, j, c])).sum::<f64>() * scale)
            .collect();
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = s.iter().map(|v| (v - m).exp()).sum();
        let mut p: Vec<f64> = s.iter().map(|v| (v - m).exp() / sum).collect();
        p.resize(self.tk, 0.0);
        (p, m + sum.ln())
    }

    /// The output (B, Tq, Dv).
    pub fn forward(&self, q: &Host, k: &Host, v: &Host) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.b * self.tq * self.dv);
        for t in 0..self.b {
            for i in 0..self.tq {
                let (p, _) = self.row(q, k, t, i);
                out.extend((0..self.dv).map(|c| (0..self.tk).map(|j| p[j] * v.at(&[t, j, c])).sum::<f64>()));
            }
        }
        out
    }

    /// (dq (B, Tq, D), [dk (B, Tk, D) | dv (B, Tk, Dv)]) for upstream dy: with dp = dy·vᵀ and
    /// ds = p ⊙ (dp − Σⱼ p·dp), dq = scale·ds·k, dk = scale·dsᵀ·q, dv = pᵀ·dy.
    pub fn grads(&self, q: &Host, k: &Host, v: &Host, dy: &Host) -> (Vec<f64>, Vec<f64>) {
        let scale = 1.0 / (self.d as f64).sqrt();
        let (mut dq, mut dkv) = (vec![0.0; q.v.len()], vec![0.0; self.b * self.tk * (self.d + self.dv)]);
        let dv_start = self.b * self.tk * self.d;
        for t in 0..self.b {
            for i in 0..self.tq {
                let (p, _) = self.row(q, k, t, i);
                let dp: Vec<f64> = (0..self.tk)
                    .map(|j| (0..self.dv).map(|c| dy.at(&[t, i, c]) * v.at(&[t, j, c])).sum())
                    .collect();
                let delta: f64 = p.iter().zip(&dp).map(|(p, d)| p * d).sum();
                for j in 0..self.tk {
                    let ds = p[j] * (dp[j] - delta);
                    // dk of every batch, then dv of every batch
                    let (dk, dv) = ((t * self.tk + j) * self.d, dv_start + (t * self.tk + j) * self.dv);
                    for c in 0..self.d {
                        dq[(t * self.tq + i) * self.d + c] += scale * ds * k.at(&[t, j, c]);
                        dkv[dk + c] += scale * ds * q.at(&[t, i, c]);
                    }
                    for c in 0..self.dv {
                        dkv[dv + c] += p[j] * dy.at(&[t, i, c]);
                    }
                }
            }
        }
        (dq, dkv)
    }
}

/// Per-row cross-entropy of logits (N, C) against class indices, with label smoothing s (the
/// target puts 1 − s on the label and s/C on every class); rows whose label is `ignore` are 0.
pub fn cross_entropy(x: &Host, labels: &Host, smoothing: f64, ignore: Option<usize>) -> Vec<f64> {
    let c = x.shape[1];
    let logp = softmax(x, 1, true);
    (0..x.shape[0])
        .map(|r| {
            let label = labels.v[r] as usize;
            if Some(label) == ignore {
                return 0.0;
            }
            let row = &logp[r * c..][..c];
            -(1.0 - smoothing) * row[label] - smoothing * row.iter().sum::<f64>() / c as f64
        })
        .collect()
}

/// d(row loss)/d(logits) times the upstream gradient of each row: (softmax − target)·dy.
pub fn cross_entropy_grad(x: &Host, labels: &Host, dy: &Host) -> Vec<f64> {
    let c = x.shape[1];
    let p = softmax(x, 1, false);
    (0..x.v.len())
        .map(|i| (p[i] - if labels.v[i / c] as usize == i % c { 1.0 } else { 0.0 }) * dy.v[i / c])
        .collect()
}

/// Rotary embedding of x (…, T, D) at positions `offset`.., tables (positions, D/2): pairs
/// (j, j + D/2), or (2j, 2j + 1) `interleaved`, rotated by their position's angle.
pub fn rope(x: &Host, cos: &Host, sin: &Host, offset: usize, interleaved: bool) -> Vec<f64> {
    let rank = x.shape.len();
    let (time, d) = (x.shape[rank - 2], x.shape[rank - 1]);
    let half = d / 2;
    let mut y = x.v.clone();
    for row in 0..x.v.len() / d {
        let at = (offset + row % time) * half;
        for j in 0..half {
            let (a, b) = if interleaved { (2 * j, 2 * j + 1) } else { (j, j + half) };
            let (c, s) = (cos.v[at + j], sin.v[at + j]);
            let (xa, xb) = (x.v[row * d + a], x.v[row * d + b]);
            y[row * d + a] = xa * c - xb * s;
            y[row * d + b] = xb * c + xa * s;
        }
    }
    y
}
