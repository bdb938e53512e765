//! 2-D max and average pooling (NCHW) and their gradients.
//!
//! The max-pool gradient routes each window's gradient to the window's first maximal element.
//! On the GPU both gradients are written as gathers — each input element visits the windows
//! that contain it — so no atomics are needed and the result is deterministic.

use super::epilogue::{Epilogue, EpilogueHost, Site};
use super::{CpuArg, GpuArg, Grad, Meta, Op, Tolerance, ulps_summing};
use crate::backend::cpu::{CpuData, CpuStorage};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::ops::layout::u32_of;
use crate::{DType, Result, Shape, Tensor};
use rayon::prelude::*;
use std::ops::Range;

static SHADER: Shader = shader!("pool.wgsl");

/// Window, stride, padding and dilation of a pooling op, each (vertical, horizontal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows (PyTorch's default is the window size).
    pub stride: (usize, usize),
    /// Implicit padding on each side (−∞ for max, 0 for average); at most half the window.
    pub padding: (usize, usize),
    /// Spacing between window taps (max pooling only).
    pub dilation: (usize, usize),
    /// Average pooling: whether padded positions count in the divisor (PyTorch's default).
    pub count_include_pad: bool,
}

impl PoolOptions {
    /// A k×k window with stride k, as `nn.MaxPool2d(k)`.
    pub fn new(k: usize) -> PoolOptions {
        PoolOptions {
            kernel: (k, k),
            stride: (k, k),
            padding: (0, 0),
            dilation: (1, 1),
            count_include_pad: true,
        }
    }
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
}

/// Sizes of one pooling op.
#[derive(Clone, Copy, Debug)]
struct Geom {
    planes: usize, // N·C
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    opts: PoolOptions,
}

impl Geom {
    /// The geometry of pooling `x`, or what is wrong with it.
    fn new(x: &Tensor, max: bool, opts: PoolOptions) -> Result<Geom, &'static str> {
        if x.rank() != 4 || !x.dtype().is_float() {
            return Err("expected a float (N, C, H, W) tensor");
        }
        let (k, s, p, d) = (opts.kernel, opts.stride, opts.padding, opts.dilation);
        if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 || d.0 == 0 || d.1 == 0 {
            return Err("kernel, stride and dilation must be positive");
        }
        if 2 * p.0 > k.0 || 2 * p.1 > k.1 {
            return Err("padding must be at most half the window");
        }
        if !max && d != (1, 1) {
            return Err("average pooling has no dilation");
        }
        let out = |size: usize, k: usize, s: usize, p: usize, d: usize| {
            (size + 2 * p).checked_sub(d * (k - 1) + 1).map(|r| r / s + 1)
        };
        let too_big = "the window is larger than the padded input";
        let [n, c, h, w] = [x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]];
        let oh = out(h, k.0, s.0, p.0, d.0).ok_or(too_big)?;
        let ow = out(w, k.1, s.1, p.1, d.1).ok_or(too_big)?;
        Ok(Geom { planes: n * c, h, w, oh, ow, opts })
    }

    /// The in-bounds taps of every window along one axis (0: rows, 1: columns): for each output
    /// position, the tap indices whose input positions fall inside the image, the input position
    /// of tap 0 (which may lie in the padding), and the window's extent clipped to the padded
    /// input (PyTorch's divisor with `count_include_pad`). A window's taps are the product of its
    /// row and column taps, since the bounds are separable.
    fn axis_taps(&self, axis: usize) -> Vec<AxisTaps> {
        let o = self.opts;
        let pick = |pair: (usize, usize)| if axis == 0 { pair.0 } else { pair.1 };
        let (k, s, p, d) = (pick(o.kernel), pick(o.stride), pick(o.padding), pick(o.dilation));
        let (size, outs) = if axis == 0 { (self.h, self.oh) } else { (self.w, self.ow) };
        (0..outs)
            .map(|out| {
                let start = out * s;
                // taps i with 0 ≤ start + i·d − p < size
                let first = p.saturating_sub(start).div_ceil(d);
                let last = (size + p).saturating_sub(start).div_ceil(d).min(k);
                AxisTaps {
                    taps: first.min(last)..last,
                    origin: start as isize - p as isize,
                    padded_extent: (start + k).min(size + 2 * p) - start,
                }
            })
            .collect()
    }

    /// For each tap column j, the output columns whose tap j lands inside the image.
    fn col_runs(&self) -> Vec<Range<usize>> {
        let o = self.opts;
        (0..o.kernel.1)
            .map(|j| {
                // 0 ≤ ox·sw + j·dw − pw < w
                let ox0 = o.padding.1.saturating_sub(j * o.dilation.1).div_ceil(o.stride.1);
                let ox1 =
                    (self.w + o.padding.1).saturating_sub(j * o.dilation.1).div_ceil(o.stride.1).min(self.ow);
                ox0.min(ox1)..ox1
            })
            .collect()
    }

    fn params(&self, max: bool) -> Result<Params> {
        let u = |v: usize| u32_of("pool", v);
        let o = self.opts;
        Ok(Params {
            planes: u(self.planes)?,
            h: u(self.h)?,
            w: u(self.w)?,
            oh: u(self.oh)?,
            ow: u(self.ow)?,
            kh: u(o.kernel.0)?,
            kw: u(o.kernel.1)?,
            sh: u(o.stride.0)?,
            sw: u(o.stride.1)?,
            ph: u(o.padding.0)?,
            pw: u(o.padding.1)?,
            dh: u(o.dilation.0)?,
            dw: u(o.dilation.1)?,
            count_include_pad: o.count_include_pad as u32,
            is_max: max as u32,
            _pad: 0,
        })
    }
}

/// The in-bounds taps of the windows at one output position along one axis (see
/// [`Geom::axis_taps`]).
struct AxisTaps {
    taps: Range<usize>,
    origin: isize,
    padded_extent: usize,
}

/// The windows of one plane, visited a tap at a time along each output row: the CPU loops run
/// over a row's output columns for one tap, which vectorizes, instead of over a window's taps.
struct Windows {
    geom: Geom,
    rows: Vec<AxisTaps>,
    cols: Vec<AxisTaps>,
    col_runs: Vec<Range<usize>>,
}

impl Windows {
    fn new(geom: Geom) -> Windows {
        Windows { geom, rows: geom.axis_taps(0), cols: geom.axis_taps(1), col_runs: geom.col_runs() }
    }

    /// Calls `f(columns, at)` for every in-bounds tap (i, j) of output row `oy`'s windows, in
    /// row-major tap order: the output columns whose tap (i, j) lies inside the image, and the
    /// in-plane input offset of the first of them (the next ones follow `stride.1` apart).
    fn row_taps(&self, oy: usize, mut f: impl FnMut(Range<usize>, usize)) {
        let o = self.geom.opts;
        let r = &self.rows[oy];
        for i in r.taps.clone() {
            let y = (r.origin + (i * o.dilation.0) as isize) as usize;
            for (j, run) in self.col_runs.iter().enumerate().filter(|(_, run)| !run.is_empty()) {
                let x = run.start * o.stride.1 + j * o.dilation.1 - o.padding.1;
                f(run.clone(), y * self.geom.w + x);
            }
        }
    }

    /// The divisor of window (oy, ox)'s average.
    fn count(&self, oy: usize, ox: usize) -> usize {
        let (r, c) = (&self.rows[oy], &self.cols[ox]);
        if self.geom.opts.count_include_pad {
            r.padded_extent * c.padded_extent
        } else {
            r.taps.len() * c.taps.len()
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    count_include_pad: u32,
    is_max: u32,
    _pad: u32,
}

/// A pooling node: forward (x → y) or gradient ((x, dy) → dx for max, dy → dx for average).
pub(crate) struct Pool {
    max: bool,
    grad: bool,
    geom: Geom,
}

impl Pool {
    fn run<T: Float + Send + Sync>(&self, args: &[&[T]]) -> Vec<T> {
        let g = self.geom;
        let (plane_in, plane_out, sw) = (g.h * g.w, g.oh * g.ow, g.opts.stride.1);
        let windows = Windows::new(g);
        if !self.grad {
            let x = args[0];
            let mut y = cpu_pool::zeroed::<T>(g.planes * plane_out);
            y.par_chunks_mut(plane_out.max(1)).enumerate().for_each(|(pl, yp)| {
                let xp = &x[pl * plane_in..][..plane_in];
                for (oy, row) in yp.chunks_mut(g.ow.max(1)).enumerate() {
                    row.fill(if self.max { T::NEG_INFINITY } else { T::ZERO });
                    windows.row_taps(oy, |run, at| {
                        let outs = row[run].iter_mut();
                        let ins = xp[at..].iter().step_by(sw);
                        match self.max {
                            true => outs.zip(ins).for_each(|(o, &v)| *o = o.max(v)),
                            false => outs.zip(ins).for_each(|(o, &v)| *o += v),
                        }
                    });
                    if !self.max {
                        row.iter_mut()
                            .enumerate()
                            .for_each(|(ox, o)| *o = *o / T::of(windows.count(oy, ox) as f64));
                    }
                }
            });
            return y;
        }
        let mut dx = cpu_pool::zeroed::<T>(g.planes * plane_in);
        dx.par_chunks_mut(plane_in.max(1)).enumerate().for_each(|(pl, dxp)| {
            let dyp = &args[args.len() - 1][pl * plane_out..][..plane_out];
            // max: each window's first maximal tap (value, in-plane offset) along the row
            let mut best = vec![(T::ZERO, usize::MAX); g.ow];
            for (oy, dy_row) in dyp.chunks(g.ow.max(1)).enumerate() {
                if self.max {
                    let xp = &args[0][pl * plane_in..][..plane_in];
                    best.fill((T::ZERO, usize::MAX));
                    windows.row_taps(oy, |run, at| {
                        for (k, b) in best[run].iter_mut().enumerate() {
                            let t = at + k * sw;
                            if b.1 == usize::MAX || xp[t] > b.0 {
                                *b = (xp[t], t);
                            }
                        }
                    });
                    best.iter()
                        .zip(dy_row)
                        .filter(|(b, _)| b.1 != usize::MAX)
                        .for_each(|(b, &d)| dxp[b.1] += d);
                } else {
                    windows.row_taps(oy, |run, at| {
                        for (k, ox) in run.enumerate() {
                            dxp[at + k * sw] += dy_row[ox] / T::of(windows.count(oy, ox) as f64);
                        }
                    });
                }
            }
        });
        dx
    }
}

impl Op for Pool {
    fn name(&self) -> &'static str {
        match (self.max, self.grad) {
            (true, false) => "max_pool2d",
            (true, true) => "max_pool2d_grad",
            (false, false) => "avg_pool2d",
            (false, true) => "avg_pool2d_grad",
        }
    }

    fn describe(&self) -> String {
        format!("{}({:?})", self.name(), self.geom.opts)
    }

    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        CpuStorage::new(match args[0].data.data() {
            CpuData::F32(_) => {
                CpuData::F32(self.run(&args.iter().map(|a| a.data.as_slice::<f32>()).collect::<Vec<_>>()))
            }
            CpuData::F64(_) => {
                CpuData::F64(self.run(&args.iter().map(|a| a.data.as_slice::<f64>()).collect::<Vec<_>>()))
            }
            _ => unreachable!("dtypes are checked when recorded"),
        })
    }

    fn epilogue_host(&self) -> Option<&dyn EpilogueHost> {
        (self.max && self.grad).then_some(self as &dyn EpilogueHost)
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let y = rec.alloc_elems(out.shape.numel())?;
        let n = u32_of(self.name(), out.shape.numel())?;
        let params = self.geom.params(self.max)?;
        // one invocation per output element (forward) or per input element (gradient)
        let grid = Grid::Linear(n.div_ceil(256));
        let (kernel, reads): (Kernel, Vec<&GpuBuffer>) = match (self.max, self.grad) {
            (_, false) => (Kernel::new(&SHADER, "forward", 1, 1), vec![args[0].buf]),
            (true, true) => (Kernel::new(&SHADER, "max_grad", 2, 1), vec![args[0].buf, args[1].buf]),
            (false, true) => (Kernel::new(&SHADER, "avg_grad", 1, 1), vec![args[0].buf]),
        };
        rec.dispatch(&kernel, &params, &reads, &[&y], grid)?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let x = &g.inputs[0];
        let op = Pool { max: self.max, grad: true, geom: self.geom };
        let inputs = if self.max { vec![x.clone(), g.grad.clone()] } else { vec![g.grad.clone()] };
        vec![Some(Tensor::from_op(op, inputs, x.shape().clone(), x.dtype()))]
    }

    fn tolerance(&self, _: &[CpuArg], _: &Meta) -> Tolerance {
        match (self.max, self.grad) {
            // selects the window's maximum
            (true, false) => Tolerance::Exact,
            // sums of a window, or backward of the windows overlapping an input (at most
            // KH·KW of them), then a division
            _ => ulps_summing(2.0, self.geom.opts.kernel.0 * self.geom.opts.kernel.1 + 1),
        }
    }
}

/// Where `pool.wgsl`'s `max_grad` takes an epilogue (see `epilogue.rs`).
const EPILOGUE_SITE: Site = Site {
    output_binding: "@group(0) @binding(3) var<storage, read_write> gdx: array<f32>; // @OUTPUTS",
    store: "    gdx[i] = v; // @STORE",
};

/// The max-pooling gradient, one invocation per input element, stores through a chain.
impl EpilogueHost for Pool {
    fn takes_epilogue(&self, _: &[&Shape], _: &Shape, dtype: DType) -> bool {
        self.max && self.grad && dtype == DType::F32
    }

    fn prefix_words(&self) -> usize {
        std::mem::size_of::<Params>() / 4
    }

    fn own_bindings(&self) -> usize {
        2
    }

    fn launch_epilogue(
        &self,
        args: &[GpuArg],
        out: &Meta,
        epilogue: &Epilogue,
        rec: &mut Recorder,
    ) -> Result<Vec<GpuBuffer>> {
        let n = u32_of(self.name(), out.shape.numel())?;
        let params = self.geom.params(self.max)?;
        let kernel = Kernel::new(&SHADER, "max_grad", 2, 1);
        let (reads, grid) = ([args[0].buf, args[1].buf], Grid::Linear(n.div_ceil(256)));
        epilogue.dispatch(rec, kernel, &EPILOGUE_SITE, &params, &reads, out.shape.numel(), out.dtype, grid)
    }
}

impl Tensor {
    /// 2-D max pooling of (N, C, H, W).
    #[track_caller]
    pub fn max_pool2d(&self, opts: PoolOptions) -> Tensor {
        self.pool2d(true, opts)
    }

    /// 2-D average pooling of (N, C, H, W) (dilation must be 1).
    #[track_caller]
    pub fn avg_pool2d(&self, opts: PoolOptions) -> Tensor {
        self.pool2d(false, opts)
    }

    #[track_caller]
    fn pool2d(&self, max: bool, opts: PoolOptions) -> Tensor {
        let name = if max { "max_pool2d" } else { "avg_pool2d" };
        let geom = match Geom::new(self, max, opts) {
            Ok(g) => g,
            Err(why) => panic!("{name}: input {} with {opts:?}: {why}", self.shape()),
        };
        let shape = Shape::from([self.dims()[0], self.dims()[1], geom.oh, geom.ow]);
        let op = Pool { max, grad: false, geom };
        Tensor::from_op(op, [self.clone()], shape, self.dtype())
    }
}
