//! 2-D convolution (NCHW, stride, padding, dilation, groups) and its two gradient convolutions:
//! with respect to the input (a transposed convolution) and to the weight.
//!
//! CPU: a direct convolution for the forward pass and input gradient of thin stride-1 layers
//! (`direct`), else im2col and a GEMM per image and group. GPU: `shaders/conv.wgsl`.

use super::epilogue::{Epilogue, EpilogueHost, Site};
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, f16_via_f32, ulps_summing};
use crate::backend::cpu::{CpuData, CpuStorage, Gemm, Mat, gemm};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::u32_of;
use crate::ops::matmul::{self, Tile};
use crate::{DType, Result, Shape, Tensor};
use rayon::prelude::*;

mod direct;
use direct::DirectFloat;

static SHADER: Shader = shader!("conv.wgsl");

/// Stride, padding, dilation (each as (vertical, horizontal)) and groups of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvOptions {
    /// Step between output positions.
    pub stride: (usize, usize),
    /// Zeros added on each side.
    pub padding: (usize, usize),
    /// Spacing between kernel taps.
    pub dilation: (usize, usize),
    /// Channel groups: input and output channels split into this many independent groups.
    pub groups: usize,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions { stride: (1, 1), padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

impl ConvOptions {
    /// Same stride in both directions.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    /// Same padding on every side.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    /// Same dilation in both directions.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    /// Channel groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// Every size of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    opts: ConvOptions,
}

impl Geom {
    /// The geometry of `x` convolved with `w`, or what is wrong with them.
    fn new(x: &Tensor, w: &Tensor, opts: ConvOptions) -> Result<Geom, &'static str> {
        if x.rank() != 4 || w.rank() != 4 {
            return Err("expected (N, C, H, W) and (O, C/groups, KH, KW)");
        }
        if x.dtype() != w.dtype() || !x.dtype().is_float() {
            return Err("input and weight must be the same float dtype");
        }
        let [n, c, h, wd] = [x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]];
        let [o, cg, kh, kw] = [w.dims()[0], w.dims()[1], w.dims()[2], w.dims()[3]];
        let g = opts.groups;
        if g == 0 || c % g != 0 || o % g != 0 || c / g != cg {
            return Err("channels do not split into the groups");
        }
        let (s, d) = (opts.stride, opts.dilation);
        if s.0 == 0 || s.1 == 0 || d.0 == 0 || d.1 == 0 || kh == 0 || kw == 0 {
            return Err("stride, dilation and kernel size must be positive");
        }
        let too_big = "the kernel is larger than the padded input";
        let oh = Geom::out_size(h, kh, s.0, opts.padding.0, d.0).ok_or(too_big)?;
        let ow = Geom::out_size(wd, kw, s.1, opts.padding.1, d.1).ok_or(too_big)?;
        Ok(Geom { n, c, h, w: wd, o, kh, kw, oh, ow, opts })
    }

    /// Output size along one axis, or `None` when the kernel does not fit.
    fn out_size(size: usize, k: usize, stride: usize, pad: usize, dil: usize) -> Option<usize> {
        let span = dil * (k - 1) + 1;
        (size + 2 * pad).checked_sub(span).map(|r| r / stride + 1)
    }

    /// Channels per group (input) and output channels per group.
    fn per_group(&self) -> (usize, usize) {
        (self.c / self.opts.groups, self.o / self.opts.groups)
    }

    /// Rows of the im2col matrix: (input channel in group, kernel row, kernel column).
    fn patch(&self) -> usize {
        self.per_group().0 * self.kh * self.kw
    }

    /// im2col of image `img` (C·H·W elements), group `g`, into `col` (reused from image to
    /// image): patch × (oh·ow), zero where padded.
    fn im2col<T: Gemm>(&self, img: &[T], g: usize, col: &mut Vec<T>) {
        let p = self.oh * self.ow;
        let step = self.opts.stride.1;
        col.clear();
        col.resize(self.patch() * p, T::ZERO);
        self.segments(g, |s| {
            let dst = &mut col[s.at..][..s.len];
            if step == 1 {
                dst.copy_from_slice(&img[s.src..][..s.len]);
            } else {
                dst.iter_mut().enumerate().for_each(|(k, o)| *o = img[s.src + k * step]);
            }
        });
    }

    /// The adjoint of `im2col`: adds a patch × (oh·ow) matrix back into image `img`, group `g`.
    fn col2im<T: Gemm>(&self, col: &[T], img: &mut [T], g: usize) {
        let step = self.opts.stride.1;
        self.segments(g, |s| {
            for (k, &v) in col[s.at..][..s.len].iter().enumerate() {
                img[s.src + k * step] += v;
            }
        });
    }

    /// Calls `f` for every run of the im2col matrix of group `g` that reads inside the image:
    /// the matrix has a row per (input channel, kernel tap) and a column per output pixel, and
    /// a run is the output columns of one output row whose tap lands inside the image.
    fn segments(&self, g: usize, mut f: impl FnMut(Segment)) {
        let (cg, _) = self.per_group();
        let (sh, sw) = self.opts.stride;
        let (ph, pw) = self.opts.padding;
        let (dh, dw) = self.opts.dilation;
        let p = self.oh * self.ow;
        for ci in 0..cg {
            let plane = (g * cg + ci) * self.h * self.w;
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let row = ((ci * self.kh + i) * self.kw + j) * p;
                    // output columns with 0 ≤ ox·sw + j·dw − pw < w
                    let ox0 = (pw.saturating_sub(j * dw)).div_ceil(sw);
                    let ox1 = ((self.w + pw).saturating_sub(j * dw)).div_ceil(sw).min(self.ow);
                    if ox0 >= ox1 {
                        continue;
                    }
                    let x0 = ox0 * sw + j * dw - pw;
                    for oy in 0..self.oh {
                        let Some(y) = (oy * sh + i * dh).checked_sub(ph).filter(|&y| y < self.h) else {
                            continue;
                        };
                        f(Segment {
                            at: row + oy * self.ow + ox0,
                            src: plane + y * self.w + x0,
                            len: ox1 - ox0,
                        });
                    }
                }
            }
        }
    }

    /// The GPU parameter block for a GEMM of size (m, n, k) split `splits` ways along K.
    fn params(&self, (m, n, k): (usize, usize, usize), splits: usize, chunk: usize) -> Result<Params> {
        let u = |v: usize| u32_of("conv2d", v);
        let o = self.opts;
        Ok(Params {
            n: u(self.n)?,
            c: u(self.c)?,
            h: u(self.h)?,
            w: u(self.w)?,
            o: u(self.o)?,
            kh: u(self.kh)?,
            kw: u(self.kw)?,
            oh: u(self.oh)?,
            ow: u(self.ow)?,
            groups: u(o.groups)?,
            sh: u(o.stride.0)?,
            sw: u(o.stride.1)?,
            ph: u(o.padding.0)?,
            pw: u(o.padding.1)?,
            dh: u(o.dilation.0)?,
            dw: u(o.dilation.1)?,
            gemm_m: u(m)?,
            gemm_n: u(n)?,
            gemm_k: u(k)?,
            splits: u(splits)?,
            chunk: u(chunk)?,
            _pad: [0; 3],
        })
    }

    /// The kernel-tap table of the GPU loaders (see `shaders/conv.wgsl`): for the forward and
    /// weight-gradient passes one entry per (ci, i, j), for the input gradient one per (o, i, j).
    fn tap_table(&self, pass: Pass) -> Vec<i32> {
        let (cg, og) = self.per_group();
        let (dh, dw) = self.opts.dilation;
        let taps = self.kh * self.kw;
        let channels = if pass == Pass::InputGrad { og } else { cg };
        let mut t = Vec::with_capacity(channels * taps * 4);
        for ch in 0..channels {
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let entry = match pass {
                        Pass::InputGrad => {
                            [ch * cg * taps + i * self.kw + j, ch * self.oh * self.ow, i * dh, j * dw]
                        }
                        _ => [ch * self.h * self.w, 0, i * dh, j * dw],
                    };
                    t.extend(entry.map(|v| v as i32));
                }
            }
        }
        t
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    o: u32,
    kh: u32,
    kw: u32,
    oh: u32,
    ow: u32,
    groups: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    gemm_m: u32,
    gemm_n: u32,
    gemm_k: u32,
    splits: u32,
    chunk: u32,
    _pad: [u32; 3],
}

/// The implicit-GEMM kernel of a pass, for a tile.
fn gemm_kernel(pass: Pass, tile: Tile, dtype: DType) -> Kernel<'static> {
    let index = match pass {
        Pass::Forward => 0,
        Pass::InputGrad => 1,
        Pass::WeightGrad => 2,
    };
    // forward and input gradient fetch B one column per invocation; the weight gradient along K
    let b_along_n = pass != Pass::WeightGrad;
    matmul::gemm_kernel(&SHADER, "gemm", 3, tile, true, b_along_n)
        .with("const PASS: u32 = 0u; // @PASS", format!("const PASS: u32 = {index}u;"))
        .storing(dtype)
}

/// `kernel` (the weight gradient's GEMM or the sum of its splits) with the channel sums of dy
/// after the weights (see `conv.wgsl`'s ONES).
fn with_channel_sums(kernel: Kernel<'static>) -> Kernel<'static> {
    kernel.with("const ONES: u32 = 0u; // @ONES", "const ONES: u32 = 1u;".to_string())
}

/// The kernel that adds up the weight gradient's K splits.
fn sum_splits_kernel() -> Kernel<'static> {
    Kernel::new(&SHADER, "sum_splits", 1, 1).with_library(&matmul::GEMM)
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let mut all = vec![sum_splits_kernel(), with_channel_sums(sum_splits_kernel())];
    for pass in [Pass::Forward, Pass::InputGrad, Pass::WeightGrad] {
        for tile in [Tile::LARGE, Tile::SMALL] {
            all.push(gemm_kernel(pass, tile, DType::F32));
            if pass.computes_f16() {
                all.push(gemm_kernel(pass, tile, DType::F16));
            } else {
                all.push(with_channel_sums(gemm_kernel(pass, tile, DType::F32)));
            }
        }
    }
    all
}

/// A run of consecutive im2col elements: `len` of them from offset `at` of the matrix, read
/// from the image at `src`, `src + stride`, … (see `Geom::segments`).
struct Segment {
    at: usize,
    src: usize,
    len: usize,
}

/// Which of the three convolutions a node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// (x, w) → y
    Forward,
    /// (dy, w) → dx
    InputGrad,
    /// (x, dy) → dw
    WeightGrad,
}

impl Pass {
    /// Whether the pass has an f16 kernel (f16 operands and output, f32 accumulation): the
    /// forward pass and the input gradient. The weight gradient, whose long sum may be split
    /// into f32 partial sums, computes f16 in f32 between casts.
    fn computes_f16(self) -> bool {
        self != Pass::WeightGrad
    }
}

/// A convolution node; `geom` holds every size, whatever the pass.
pub(crate) struct Conv {
    pass: Pass,
    geom: Geom,
}

impl Conv {
    fn run<T: Gemm + Send + Sync + DirectFloat>(&self, first: &[T], second: &[T]) -> Vec<T> {
        let g = self.geom;
        match self.pass {
            Pass::Forward if direct::applies(&g) => return direct::forward(&g, first, second),
            Pass::InputGrad if direct::applies(&g) => return direct::input_grad(&g, first, second),
            Pass::WeightGrad => {
                if let Some(dw) = T::weight_grad(&g, first, second) {
                    return dw;
                }
            }
            _ => {}
        }
        let (_, og) = g.per_group();
        let (k, p) = (g.patch(), g.oh * g.ow);
        let image = g.c * g.h * g.w;
        let out_image = g.o * p;
        match self.pass {
            Pass::Forward => {
                let (x, w) = (first, second);
                let mut y = cpu_pool::zeroed::<T>(g.n * out_image);
                y.par_chunks_mut(out_image.max(1)).enumerate().for_each_init(Vec::new, |col, (n, yn)| {
                    for grp in 0..g.opts.groups {
                        g.im2col(&x[n * image..], grp, col);
                        // Y_g (og × P) = W_g (og × K) · col (K × P)
                        let wg = Mat { data: &w[grp * og * k..], row: k, col: 1 };
                        gemm(
                            og,
                            k,
                            p,
                            wg,
                            Mat { data: col, row: p, col: 1 },
                            T::ZERO,
                            &mut yn[grp * og * p..],
                            p,
                        );
                    }
                });
                y
            }
            Pass::InputGrad => {
                let (dy, w) = (first, second);
                let mut dx = cpu_pool::zeroed::<T>(g.n * image);
                dx.par_chunks_mut(image.max(1)).enumerate().for_each_init(Vec::new, |col, (n, dxn)| {
                    col.resize(k * p, T::ZERO);
                    for grp in 0..g.opts.groups {
                        // col (K × P) = W_gᵀ (K × og) · dY_g (og × P)
                        let wt = Mat { data: &w[grp * og * k..], row: 1, col: k };
                        let dyg = Mat { data: &dy[n * out_image + grp * og * p..], row: p, col: 1 };
                        gemm(k, og, p, wt, dyg, T::ZERO, col, p);
                        g.col2im(col, dxn, grp);
                    }
                });
                dx
            }
            Pass::WeightGrad => {
                let (x, dy) = (first, second);
                let zero = || vec![T::ZERO; g.o * k];
                (0..g.n)
                    .into_par_iter()
                    .fold(
                        || (zero(), Vec::new()),
                        |(mut dw, mut col), n| {
                            for grp in 0..g.opts.groups {
                                g.im2col(&x[n * image..], grp, &mut col);
                                // dW_g (og × K) += dY_g (og × P) · colᵀ (P × K)
                                let dyg = Mat { data: &dy[n * out_image + grp * og * p..], row: p, col: 1 };
                                let colt = Mat { data: &col, row: 1, col: p };
                                gemm(og, p, k, dyg, colt, T::ONE, &mut dw[grp * og * k..], k);
                            }
                            (dw, col)
                        },
                    )
                    .map(|(dw, _)| dw)
                    .reduce(zero, |mut a, b| {
                        a.iter_mut().zip(b).for_each(|(u, v)| *u += v);
                        a
                    })
            }
        }
    }
}

impl Op for Conv {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "conv2d",
            Pass::InputGrad => "conv2d_input_grad",
            Pass::WeightGrad => "conv2d_weight_grad",
        }
    }

    fn describe(&self) -> String {
        format!("{}({:?})", self.name(), self.geom.opts)
    }

    fn computes_f16(&self) -> bool {
        self.pass.computes_f16()
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        if out.dtype == DType::F16 {
            // the f32 result of the widened operands, rounded once (as the kernel does)
            return f16_via_f32(args, |wide| self.cpu(wide, &Meta { dtype: DType::F32, ..*out }));
        }
        CpuStorage::new(match (args[0].data.data(), args[1].data.data()) {
            (CpuData::F32(a), CpuData::F32(b)) => CpuData::F32(self.run(a, b)),
            (CpuData::F64(a), CpuData::F64(b)) => CpuData::F64(self.run(a, b)),
            _ => unreachable!("dtypes are checked when recorded"),
        })
    }

    fn epilogue_host(&self) -> Option<&dyn EpilogueHost> {
        Some(self)
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let mut written = self.launch(args, out, None, false, rec)?;
        Ok(written.pop().expect("the convolution"))
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let (x, w) = (&g.inputs[0], &g.inputs[1]);
        let geom = self.geom;
        let dx = Tensor::from_op(
            Conv { pass: Pass::InputGrad, geom },
            vec![g.grad.clone(), w.clone()],
            x.shape().clone(),
            x.dtype(),
        );
        let dw = Tensor::from_op(
            Conv { pass: Pass::WeightGrad, geom },
            vec![x.clone(), g.grad.clone()],
            w.shape().clone(),
            w.dtype(),
        );
        vec![Some(dx), Some(dw)]
    }

    fn tolerance(&self, _: &[CpuArg], out: &Meta) -> Tolerance {
        // each output sums C/groups·KH·KW products (forward), O/groups·KH·KW (input gradient)
        // or N·OH·OW (weight gradient), in another order than the CPU's
        let g = self.geom;
        let terms = match self.pass {
            Pass::Forward => g.patch(),
            Pass::InputGrad => g.per_group().1 * g.kh * g.kw,
            Pass::WeightGrad => g.n * g.oh * g.ow,
        };
        match out.dtype {
            // ... then rounded to f16, where the two may land on neighbours
            DType::F16 => super::f16_rounding_summing(terms),
            _ => ulps_summing(2.0, terms),
        }
    }
}

impl Conv {
    /// Whether this is a weight gradient in f32 that can also sum its dy over (n, pix) for
    /// each output channel (a bias's gradient): the extra column of ones lands in the padding
    /// of the GEMM's last column tile, where it costs no workgroup.
    pub(crate) fn takes_channel_sums(&self, dtype: DType) -> bool {
        let g = self.geom;
        let (cg, og) = g.per_group();
        let n = cg * g.kh * g.kw;
        let size = Tile::for_shape(og, n, g.opts.groups).size as usize;
        self.pass == Pass::WeightGrad && dtype == DType::F32 && !n.is_multiple_of(size)
    }

    /// The weight gradient's input dy, (N, O, OH, OW).
    pub(crate) fn weight_grad_dy(&self, inputs: &[Tensor]) -> Option<Tensor> {
        (self.pass == Pass::WeightGrad).then(|| inputs[1].clone())
    }

    /// Records the weight gradient and, in the same kernels, dy summed over (n, pix) for each
    /// output channel (see [`takes_channel_sums`](Self::takes_channel_sums)). Returns both.
    pub(crate) fn launch_with_channel_sums(
        &self,
        args: &[GpuArg],
        out: &Meta,
        rec: &mut Recorder,
    ) -> Result<(GpuBuffer, GpuBuffer)> {
        let mut written = self.launch(args, out, None, true, rec)?;
        let sums = written.pop().expect("the sums");
        Ok((written.pop().expect("the weight gradient"), sums))
    }

    /// Records the convolution's GEMM (and the sum of its K splits); with an `epilogue`, the
    /// chain computed from each output element instead; with `channel_sums` (the weight
    /// gradient), dy's sums per output channel too. Returns the buffers written: the output
    /// (unless an epilogue does not write it out), then the chain's outputs or the sums.
    fn launch(
        &self,
        args: &[GpuArg],
        out: &Meta,
        epilogue: Option<&Epilogue>,
        channel_sums: bool,
        rec: &mut Recorder,
    ) -> Result<Vec<GpuBuffer>> {
        let g = self.geom;
        let (cg, og) = g.per_group();
        let (groups, taps) = (g.opts.groups, g.kh * g.kw);
        // the GEMM of one channel group
        let (m, n, k) = match self.pass {
            // (O/g) × (N·OH·OW), summed over (C/g)·KH·KW
            Pass::Forward => (og, g.n * g.oh * g.ow, cg * taps),
            // (C/g) × (N·H·W), summed over (O/g)·KH·KW
            Pass::InputGrad => (cg, g.n * g.h * g.w, og * taps),
            // (O/g) × ((C/g)·KH·KW), summed over N·OH·OW
            Pass::WeightGrad => (og, cg * taps, g.n * g.oh * g.ow),
        };
        let tile = Tile::for_shape(m, n, groups);
        let size = tile.size as usize;
        let tiles = m.div_ceil(size) * n.div_ceil(size) * groups;
        // the weight gradient's long K is split so that enough workgroups run at once
        let splits =
            if self.pass == Pass::WeightGrad { (256 / tiles.max(1)).clamp(1, (k / 2048).max(1)) } else { 1 };
        let chunk = k.div_ceil(splits).div_ceil(tile.depth as usize) * tile.depth as usize;
        let splits = k.div_ceil(chunk.max(1)).max(1);
        let params = g.params((m, n, k), splits, chunk)?;
        let table = rec.upload(&CpuStorage::from_vec(g.tap_table(self.pass)))?;
        let grid = Grid::Dims(
            u32_of("conv2d", n.div_ceil(size))?,
            u32_of("conv2d", m.div_ceil(size))?,
            u32_of("conv2d", groups * splits)?,
        );
        let kernel = gemm_kernel(self.pass, tile, out.dtype);
        let reads = [args[0].buf, args[1].buf, &table];
        if let Some(e) = epilogue {
            assert_eq!(splits, 1, "conv2d: an epilogue on a pass whose K is split (see takes_epilogue)");
            let numel = out.shape.numel();
            return e.dispatch(rec, kernel, &EPILOGUE_SITE, &params, &reads, numel, out.dtype, grid);
        }
        let channel = |k: Kernel<'static>| if channel_sums { with_channel_sums(k) } else { k };
        // the output, followed by the channel sums if any
        let slab = out.shape.numel() + if channel_sums { g.o } else { 0 };
        let y = rec.alloc_typed(slab, out.dtype)?;
        // K splits write slabs of partial sums, then one pass adds them up
        let partial = (splits > 1).then(|| rec.alloc_elems(splits * slab)).transpose()?;
        rec.dispatch(&channel(kernel), &params, &reads, &[partial.as_ref().unwrap_or(&y)], grid)?;
        if let Some(partial) = &partial {
            let count = u32_of("conv2d", slab)?;
            rec.dispatch(
                &channel(sum_splits_kernel()),
                &params,
                &[partial],
                &[&y],
                Grid::Linear(count.div_ceil(256)),
            )?;
        }
        if !channel_sums {
            return Ok(vec![y]);
        }
        // the sums in a buffer of their own (a copy, not a dispatch); the weights keep the rest
        let sums = rec.alloc_elems(g.o)?;
        rec.copy(&y, 4 * out.shape.numel() as u64, &sums, 0, 4 * g.o as u64);
        Ok(vec![y, sums])
    }
}

/// Where `conv.wgsl` takes an epilogue (see `epilogue.rs`).
const EPILOGUE_SITE: Site = Site {
    output_binding: "@group(0) @binding(4) var<storage, read_write> out: array<E>; // @OUTPUTS",
    store: "    out[i] = E(v); // @STORE",
};

impl EpilogueHost for Conv {
    /// The forward pass and the input gradient (the weight gradient's K splits are summed by a
    /// second pass).
    fn takes_epilogue(&self, _: &[&Shape], _: &Shape, _: DType) -> bool {
        self.pass != Pass::WeightGrad
    }

    fn prefix_words(&self) -> usize {
        std::mem::size_of::<Params>() / 4
    }

    fn own_bindings(&self) -> usize {
        3
    }

    fn launch_epilogue(
        &self,
        args: &[GpuArg],
        out: &Meta,
        epilogue: &Epilogue,
        rec: &mut Recorder,
    ) -> Result<Vec<GpuBuffer>> {
        self.launch(args, out, Some(epilogue), false, rec)
    }
}

impl Tensor {
    /// 2-D convolution of `self` (N, C, H, W) with `weight` (O, C/groups, KH, KW), giving
    /// (N, O, OH, OW). Add a bias with `+ bias.reshape([O, 1, 1])`.
    #[track_caller]
    pub fn conv2d(&self, weight: &Tensor, opts: ConvOptions) -> Tensor {
        // in an autocast scope, f32 operands are convolved in f16
        let (x, weight) = (crate::amp::narrow(self), crate::amp::narrow(weight));
        let geom = match Geom::new(&x, &weight, opts) {
            Ok(g) => g,
            Err(why) => {
                panic!("conv2d: input {} and weight {} with {opts:?}: {why}", self.shape(), weight.shape())
            }
        };
        let shape = Shape::from([geom.n, geom.o, geom.oh, geom.ow]);
        let op = Conv { pass: Pass::Forward, geom };
        Tensor::from_op(op, [x.clone(), weight], shape, x.dtype())
    }
}
