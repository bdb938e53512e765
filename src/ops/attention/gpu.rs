//! The GPU launch of the attention passes: `shaders/flash_attention.wgsl` for head dimensions
//! that are multiples of 4 up to 128, `shaders/attention.wgsl` otherwise.
//!
//! Both kernels bind the key lengths and the mask at fixed places, q's buffer standing in for
//! an absent one (never read), and are specialized on which are present and on dropout: a
//! launch without them compiles exactly the unmasked code, with no per-element test added.

use super::geometry::{DropoutDraw, Geom};
use super::{Attention, Pass, STATS};
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::ops::layout::u32_of;
use crate::ops::movement::strided_copy;
use crate::ops::random::PHILOX;
use crate::ops::{GpuArg, Meta};
use crate::{DType, Error, Result, Shape};

static PLAIN: Shader = shader!("attention.wgsl");
static FLASH: Shader = shader!("flash_attention.wgsl");

/// The largest head dimension the GPU kernels hold in workgroup memory.
const MAX_HEAD_DIM: usize = 256;

/// Rows (queries, or keys for dk and dv) per workgroup of the flash kernels: a multiple of 32,
/// as `grad_k` and `grad_v` pack the dropout draws of 32 keys into a word.
const FLASH_ROWS: u32 = 64;

/// The kernels' parameter block (the same struct in both shaders).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    tq: u32,
    tk: u32,
    d: u32,
    dv: u32,
    causal: u32,
    scale: f32,
    /// Batch b reads key length `(b / len_inner) % len_run`.
    len_inner: u32,
    len_run: u32,
    /// And its mask rows from block `(b / mask_inner) % mask_run` of `mask_batch` elements.
    mask_inner: u32,
    mask_run: u32,
    mask_batch: u32,
    mask_row: u32,
    mask_col: u32,
    /// Dropout: the Philox key and stream, the probability, 1 / (1 − p), and Philox blocks per
    /// query row.
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    drop_p: f32,
    drop_scale: f32,
    row_blocks: u32,
    /// Where the forward kernel reports key lengths out of 0..=Tk.
    fault_word: u32,
    _pad: [u32; 2],
}

impl Params {
    fn new(g: &Geom, fault_word: u32) -> Result<Params> {
        if g.d > MAX_HEAD_DIM || g.dv > MAX_HEAD_DIM {
            return Err(Error::TooLarge {
                device: "the GPU attention kernels".into(),
                detail: format!("head dimensions {} and {} exceed {MAX_HEAD_DIM}", g.d, g.dv),
            });
        }
        let u = |v: usize| u32_of("attention", v);
        let (len_inner, len_run) = g.lengths.map_or((1, 1), |l| l.parts());
        let (mask_inner, mask_run) = g.mask.map_or((1, 1), |m| m.batch.parts());
        let key = g.dropout.map(|d| d.key);
        Ok(Params {
            batch: u(g.batch)?,
            tq: u(g.tq)?,
            tk: u(g.tk)?,
            d: u(g.d)?,
            dv: u(g.dv)?,
            causal: g.causal as u32,
            scale: g.scale as f32,
            len_inner: u(len_inner)?,
            len_run: u(len_run)?,
            mask_inner: u(mask_inner)?,
            mask_run: u(mask_run)?,
            mask_batch: u(g.mask.map_or(0, |m| m.batch_stride))?,
            mask_row: u(g.mask.map_or(0, |m| m.row_stride))?,
            mask_col: u(g.mask.map_or(0, |m| m.col_stride))?,
            seed_lo: key.map_or(0, |k| k.seed as u32),
            seed_hi: key.map_or(0, |k| (k.seed >> 32) as u32),
            stream_lo: key.map_or(0, |k| k.stream as u32),
            stream_hi: key.map_or(0, |k| (k.stream >> 32) as u32),
            drop_p: g.dropout.map_or(0.0, |d| d.p),
            drop_scale: g.dropout.map_or(1.0, |d| d.scale()),
            row_blocks: u(DropoutDraw::row_stride(g.tk) / 4)?,
            fault_word,
            _pad: [0; 2],
        })
    }
}

/// What a launch specializes the kernels for besides sizes: the optional inputs and dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Features {
    lengths: bool,
    mask: bool,
    dropout: bool,
}

impl Features {
    fn of(g: &Geom) -> Features {
        Features { lengths: g.lengths.is_some(), mask: g.mask.is_some(), dropout: g.dropout.is_some() }
    }

    /// `kernel` specialized for these features. The forward kernel with key lengths also
    /// reports lengths out of 0..=Tk (the other passes, recorded after it, clamp them).
    fn apply(self, kernel: Kernel<'static>) -> Kernel<'static> {
        let kernel = kernel
            .with_library(&PHILOX)
            .with(
                "const LENGTHS: bool = false; // @LENGTHS",
                format!("const LENGTHS: bool = {};", self.lengths),
            )
            .with("const MASK: bool = false; // @MASK", format!("const MASK: bool = {};", self.mask))
            .with(
                "const DROPOUT: bool = false; // @DROPOUT",
                format!("const DROPOUT: bool = {};", self.dropout),
            );
        if self.lengths && kernel.entry == "forward" {
            return kernel.with_fault_reports().with(
                "fn report_bad_length(position: u32) {} // @REPORT",
                "fn report_bad_length(position: u32) { report_fault(p.fault_word, position); }",
            );
        }
        kernel
    }
}

/// Buffers an entry point reads: q, k, v, the key lengths, the mask, then the pass's own.
fn reads(entry: &str) -> u32 {
    if entry == "forward" { 5 } else { 7 }
}

/// The flash kernels' specialization: head dimensions and the staged block size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flash {
    d: u32,
    dv: u32,
    block: u32,
}

impl Flash {
    /// The flash configuration for `g` under a workgroup-memory limit of `limit` bytes: head
    /// dimensions multiples of 4 up to 128, and the largest power-of-two block (up to 64 rows)
    /// whose staged rows fit — each a key and value row (or query and output-gradient row),
    /// its statistics and, with dropout, the packed draws.
    fn fit(g: &Geom, limit: u32) -> Option<Flash> {
        let ok = |d: usize| d.is_multiple_of(4) && d > 0 && d <= 128;
        if !ok(g.d) || !ok(g.dv) {
            return None;
        }
        let draws = if g.dropout.is_some() { FLASH_ROWS / 8 } else { 0 };
        let bytes_per_row = ((g.d + g.dv + super::STATS) * 4) as u32 + draws;
        let block = [64u32, 32, 16, 8, 4].into_iter().find(|b| b * bytes_per_row <= limit)?;
        Some(Flash { d: g.d as u32, dv: g.dv as u32, block })
    }

    fn kernel(&self, entry: &'static str, features: Features) -> Kernel<'static> {
        let kernel = Kernel::new(&FLASH, entry, reads(entry), 1)
            .with("const ROWS: u32 = 64u; // @ROWS", format!("const ROWS: u32 = {FLASH_ROWS}u;"))
            .with("const BLOCK: u32 = 32u; // @BLOCK", format!("const BLOCK: u32 = {}u;", self.block))
            .with("const D: u32 = 64u; // @D", format!("const D: u32 = {}u;", self.d))
            .with("const DV: u32 = 64u; // @DV", format!("const DV: u32 = {}u;", self.dv));
        features.apply(kernel)
    }
}

fn plain_kernel(entry: &'static str, features: Features) -> Kernel<'static> {
    features.apply(Kernel::new(&PLAIN, entry, reads(entry), 1))
}

/// Every specialization this family can compile (for the shader validation test): each flash
/// configuration and the plain kernels without options and with all of them, and one flash
/// configuration with each option alone.
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let configs = [
        Flash { d: 64, dv: 64, block: 32 },
        Flash { d: 4, dv: 8, block: 64 },
        Flash { d: 128, dv: 128, block: 16 },
    ];
    let none = Features { lengths: false, mask: false, dropout: false };
    let all = Features { lengths: true, mask: true, dropout: true };
    let each = [
        Features { lengths: true, ..none },
        Features { mask: true, ..none },
        Features { dropout: true, ..none },
    ];
    let flash_entries = ["forward", "stats", "grad_q", "grad_k", "grad_v"];
    let plain_entries = ["forward", "stats", "grad_q", "grad_kv"];
    let mut out = Vec::new();
    for (n, flash) in configs.iter().enumerate() {
        let features = if n == 0 { [none, all].into_iter().chain(each).collect() } else { vec![none, all] };
        for f in features {
            out.extend(flash_entries.iter().map(|e| flash.kernel(e, f)));
        }
    }
    for f in [none, all] {
        out.extend(plain_entries.iter().map(|e| plain_kernel(e, f)));
    }
    // f16 storage: the forward pass (the module's other entries compile with it)
    out.push(configs[0].kernel("forward", all).storing(DType::F16));
    out.push(plain_kernel("forward", all).storing(DType::F16));
    out
}

/// The kernels of one step of a pass, each writing a buffer of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// o, per query row.
    Forward,
    /// (max, log-sum, δ) per query row, from dO and o.
    Stats,
    /// dq per query row, from dO and the statistics.
    GradQ,
    /// [dk | dv] per key row, from dO and the statistics.
    GradKv,
}

/// What every step of one node's launch shares.
struct Launch<'a> {
    g: Geom,
    features: Features,
    params: Params,
    /// The element type of q, k, v and the outputs (f16 for the forward pass only).
    dtype: DType,
    flash: Option<Flash>,
    /// q, k, v, the key lengths and the mask (q's buffer standing in for an absent one).
    inputs: [&'a GpuBuffer; 5],
}

impl Launch<'_> {
    /// Records `step`, reading the inputs then `own` (the step's own inputs), writing `y`.
    fn record(&self, rec: &mut Recorder, step: Step, own: &[&GpuBuffer], y: &GpuBuffer) -> Result<()> {
        let g = &self.g;
        let reads: Vec<&GpuBuffer> = self.inputs.iter().copied().chain(own.iter().copied()).collect();
        let rows = if step == Step::GradKv { g.tk } else { g.tq };
        if let Some(flash) = self.flash {
            // one workgroup per ROWS query rows (key rows for dk, dv)
            let grid = Grid::Linear(u32_of("attention", g.batch * rows.div_ceil(FLASH_ROWS as usize))?);
            let entries: &[&'static str] = match step {
                Step::Forward => &["forward"],
                Step::Stats => &["stats"],
                Step::GradQ => &["grad_q"],
                Step::GradKv => &["grad_k", "grad_v"],
            };
            for &entry in entries {
                let kernel = flash.kernel(entry, self.features).storing(self.dtype);
                rec.dispatch(&kernel, &self.params, &reads, &[y], grid)?;
            }
            return Ok(());
        }
        // one workgroup per query row (per key row for the k and v gradients)
        let entry = match step {
            Step::Forward => "forward",
            Step::Stats => "stats",
            Step::GradQ => "grad_q",
            Step::GradKv => "grad_kv",
        };
        let grid = Grid::Linear(u32_of("attention", g.batch * rows)?);
        rec.dispatch(
            &plain_kernel(entry, self.features).storing(self.dtype),
            &self.params,
            &reads,
            &[y],
            grid,
        )
    }
}

/// Records `op`'s pass on the GPU: the forward kernel; for the gradients, the statistics into a
/// buffer of their own, dk and dv into the node's output, then dq into a buffer of its own,
/// copied in after them. Packed heads are first moved into buffers of their own
/// ([`launch_packed`]).
pub(super) fn launch(op: &Attention, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
    let shapes: Vec<&Shape> = args.iter().map(|a| a.shape).collect();
    let g = Geom::of(op, &shapes);
    if let Some(heads) = op.packed {
        return launch_packed(op, g, heads, args, out, rec);
    }
    let fault_word = match op.lengths && op.pass == Pass::Forward {
        true => rec.fault_word(3, "key length", g.tk + 1)?,
        false => 0,
    };
    let stand_in = args[0].buf;
    let inputs = [
        args[0].buf,
        args[1].buf,
        args[2].buf,
        if op.lengths { args[3].buf } else { stand_in },
        if op.mask { args[op.mask_input()].buf } else { stand_in },
    ];
    let own = (op.pass == Pass::Grad).then(|| (args[op.rest_input()].buf, args[op.rest_input() + 1].buf));
    let dtype = args[0].dtype;
    let (y, dq) = record_pass(g, inputs, dtype, fault_word, own, out.shape.numel(), rec)?;
    if let Some(dq) = dq {
        // after dk and dv
        let (dq_len, dkv_len) = (g.batch * g.tq * g.d, g.batch * g.tk * (g.d + g.dv));
        let bytes = |n: usize| (n * dtype.size_bytes()) as u64;
        rec.copy(&dq, 0, &y, bytes(dkv_len), bytes(dq_len));
    }
    Ok(y)
}

/// Records a pass over q, k and v each contiguous (batch, rows, head dimension) into a new
/// buffer of `len` elements: forward O; with `own` = (dO, O), [dk | dv] at its start, and dq in
/// a buffer of its own, also returned.
fn record_pass(
    g: Geom,
    inputs: [&GpuBuffer; 5],
    dtype: DType,
    fault_word: u32,
    own: Option<(&GpuBuffer, &GpuBuffer)>,
    len: usize,
    rec: &mut Recorder,
) -> Result<(GpuBuffer, Option<GpuBuffer>)> {
    let launch = Launch {
        g,
        features: Features::of(&g),
        params: Params::new(&g, fault_word)?,
        dtype,
        flash: Flash::fit(&g, rec.context().limits.max_compute_workgroup_storage_size),
        inputs,
    };
    let y = rec.alloc_typed(len, dtype)?;
    let Some((dout, o)) = own else {
        launch.record(rec, Step::Forward, &[], &y)?;
        return Ok((y, None));
    };
    let stats = rec.alloc_typed(g.batch * g.tq * STATS, dtype)?;
    launch.record(rec, Step::Stats, &[dout, o], &stats)?;
    // the k and v kernels write the first elements of y, dk then dv
    launch.record(rec, Step::GradKv, &[dout, &stats], &y)?;
    let dq = rec.alloc_typed(g.batch * g.tq * g.d, dtype)?;
    launch.record(rec, Step::GradQ, &[dout, &stats], &dq)?;
    Ok((y, Some(dq)))
}

/// Packed heads ([`Tensor::attention_packed`](crate::Tensor::attention_packed)), f32 (the op
/// computes f16 in f32): q, k and v (and, for the gradients, dO and O) copied out into
/// contiguous heads, the pass recorded as for split heads, and its results copied back into
/// the packed layout — the copies the split and the join would make as ops of their own.
fn launch_packed(
    op: &Attention,
    g: Geom,
    heads: usize,
    args: &[GpuArg],
    out: &Meta,
    rec: &mut Recorder,
) -> Result<GpuBuffer> {
    let heads_of = Heads { t: g.tq, d: g.d, heads, sequences: g.batch / heads };
    let (q, k, v) = (
        heads_of.gather(rec, args[0].buf, 3, 0)?,
        heads_of.gather(rec, args[0].buf, 3, 1)?,
        heads_of.gather(rec, args[0].buf, 3, 2)?,
    );
    let y = rec.alloc_typed(out.shape.numel(), DType::F32)?;
    let inputs = [&q, &k, &v, &q, &q];
    if op.pass == Pass::Forward {
        let (o, _) = record_pass(g, inputs, DType::F32, 0, None, g.batch * g.tq * g.dv, rec)?;
        heads_of.scatter(rec, &o, 0, &y, 1, 0)?;
        return Ok(y);
    }
    let (dout, o) = (heads_of.gather(rec, args[1].buf, 1, 0)?, heads_of.gather(rec, args[2].buf, 1, 0)?);
    let n = g.batch * g.tq * g.d;
    let (dkv, dq) = record_pass(g, inputs, DType::F32, 0, Some((&dout, &o)), 2 * n, rec)?;
    let dq = dq.expect("the gradient pass's dq");
    // [dk | dv] and dq → the packed [dq | dk | dv]
    for (src, from, part) in [(&dq, 0, 0), (&dkv, 0, 1), (&dkv, n, 2)] {
        heads_of.scatter(rec, src, from, &y, 3, part)?;
    }
    Ok(y)
}

/// How packed heads lie: sequences of T rows, each of `parts` blocks (q, k, v: 3; an output:
/// 1) of `heads` heads of D features.
struct Heads {
    t: usize,
    d: usize,
    heads: usize,
    sequences: usize,
}

impl Heads {
    /// Over the split heads' shape (sequences, heads, T, D): the contiguous strides, and the
    /// packed layout's with `parts` blocks per row.
    fn strides(&self, parts: usize) -> (Vec<usize>, Vec<usize>) {
        let (t, d, width) = (self.t, self.d, self.heads * self.d);
        (vec![self.heads * t * d, t * d, d, 1], vec![t * parts * width, d, parts * width, 1])
    }

    fn shape(&self) -> [usize; 4] {
        [self.sequences, self.heads, self.t, self.d]
    }

    /// Block `part` of the packed `src` as contiguous heads, in a new buffer.
    fn gather(&self, rec: &mut Recorder, src: &GpuBuffer, parts: usize, part: usize) -> Result<GpuBuffer> {
        let dst = rec.alloc_typed(self.shape().iter().product(), DType::F32)?;
        let (contiguous, packed) = self.strides(parts);
        let from = (part * self.heads * self.d, packed);
        strided_copy(rec, "attention_packed", src, &dst, &self.shape(), from, (0, contiguous))?;
        Ok(dst)
    }

    /// Contiguous heads from element `from` of `src` into block `part` of the packed `dst`.
    fn scatter(
        &self,
        rec: &mut Recorder,
        src: &GpuBuffer,
        from: usize,
        dst: &GpuBuffer,
        parts: usize,
        part: usize,
    ) -> Result<()> {
        let (contiguous, packed) = self.strides(parts);
        let to = (part * self.heads * self.d, packed);
        strided_copy(rec, "attention_packed", src, dst, &self.shape(), (from, contiguous), to)
    }
}
