//! The adapter's measured ceilings, for the benchmark program's "fraction of ceiling" column:
//! FLOP/s from independent FMA chains in registers, bytes/s from a large vec4 copy
//! (`shaders/ceiling.wgsl`).

use super::{GpuBuffer, Grid, Kernel, Recorder, Shader, context, shader};
use crate::Result;
use std::time::Instant;

static SHADER: Shader = shader!("ceiling.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    iterations: u32,
    _pad: [u32; 2],
}

/// Measured peak arithmetic and memory throughput of one GPU.
#[derive(Clone, Copy, Debug)]
pub struct Ceilings {
    /// f32 FLOP/s (an FMA counts as two).
    pub flops: f64,
    /// Bytes/s, counting one read and one write per element copied.
    pub bytes: f64,
}

/// The median seconds of `reps` runs of `record` (each submitted and waited for).
fn time(n: usize, reps: usize, mut record: impl FnMut(&mut Recorder) -> Result<()>) -> Result<f64> {
    let ctx = context(n)?;
    let mut samples = Vec::new();
    for r in 0..reps + 2 {
        let mut rec = Recorder::new(ctx.clone());
        record(&mut rec)?;
        ctx.wait()?;
        let start = Instant::now();
        rec.submit_and_wait()?;
        if r >= 2 {
            samples.push(start.elapsed().as_secs_f64());
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// Measures GPU `n`'s ceilings (a second or so).
pub fn measure(n: usize) -> Result<Ceilings> {
    let ctx = context(n)?;
    // FMA: enough invocations to fill any GPU, enough trips to dwarf the launch
    let (groups, iterations) = (4096u32, 4096u32);
    let sink = GpuBuffer::alloc(&ctx, 16)?;
    let fma = Kernel::new(&SHADER, "fma_chains", 0, 1);
    let params = Params { n: groups * 256, iterations, _pad: [0; 2] };
    let t = time(n, 5, |rec| rec.dispatch(&fma, &params, &[], &[&sink], Grid::Linear(groups)))?;
    let flops = groups as f64 * 256.0 * iterations as f64 * 64.0 / t;
    // copy: 64 MiB each way, or what the binding limit allows
    let bytes = (64u64 << 20).min(ctx.limits.max_storage_buffer_binding_size);
    let (src, dst) = (GpuBuffer::alloc(&ctx, bytes)?, GpuBuffer::alloc(&ctx, bytes)?);
    let vec4s = (bytes / 16) as u32;
    let copy = Kernel::new(&SHADER, "copy", 1, 1);
    let params = Params { n: vec4s, iterations: 0, _pad: [0; 2] };
    let t =
        time(n, 10, |rec| rec.dispatch(&copy, &params, &[&src], &[&dst], Grid::Linear(vec4s.div_ceil(256))))?;
    Ok(Ceilings { flops, bytes: 2.0 * bytes as f64 / t })
}
