//! Fused elementwise chains: several elementwise ops computed in one pass over memory — one
//! generated WGSL kernel on a GPU (`shaders/fused.wgsl`), one blocked loop on the CPU. The
//! realizer finds the chains (`graph/fuse.rs`); this file computes them.
//!
//! A chain is not an op of the graph: its steps stay the graph's nodes, each with its own
//! gradient rule and case-table row, so fusion changes how values are computed, never what they
//! are. On the CPU a step runs the same slice function as its op's reference, so a fused chain
//! gives the unfused result bit for bit; on a GPU the steps are the same WGSL expressions, kept
//! in registers between steps.
//!
//! Every step is evaluated at every element of the chain's shape (its last step's). An operand
//! of a smaller shape — a bias, a scalar, a step computed on a smaller shape and then expanded —
//! is read through broadcast strides: broadcasts compose, so an `expand` inside a chain costs
//! nothing.
//!
//! On a GPU a chain computes in f32 and may read and write f16 tensors: a cast to f16 is a step
//! that rounds its value (`f32(f16(x))`), a cast to f32 passes it on, and an f16 input or output
//! is converted where it is loaded or stored. So the casts autocast puts around the ops that
//! compute in f32 cost no pass over memory.

use super::binary::BinaryFn;
use super::random::PHILOX;
use super::unary::{ACTIVATIONS, UNARY, UnaryFn};
use crate::backend::cpu::{CpuStorage, PARALLEL_CHUNK};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::ops::layout::{MAX_RANK, collapse, pack, u32_of};
use crate::rng::RandomKey;
use crate::{DType, Result, Shape};
use rayon::prelude::*;
use smallvec::SmallVec;
use std::fmt::Write;

static SHADER: Shader = shader!("fused.wgsl");

/// One op as a step of a chain (see `Op::elementwise`).
#[derive(Clone, Copy)]
pub(crate) enum Step {
    /// A unary row with its parameters.
    Unary { f: &'static UnaryFn, a: f64, b: f64 },
    /// A binary arithmetic row; its operands broadcast.
    Binary(&'static BinaryFn),
    /// A constant (`full`).
    Constant(f64),
    /// Its operand, broadcast (`expand`).
    Broadcast,
    /// Dropout with the mask of `key`: each element kept (and scaled) where its uniform draw is
    /// at least `p`.
    Dropout { key: RandomKey, p: f32, scale: f32 },
    /// A cast between f32 and f16 (`to`): rounds to f16's precision, or passes the value on.
    Cast { to: DType },
}

impl Step {
    /// How many f32 scalars the step takes from the GPU parameter block.
    pub fn scalars(&self) -> usize {
        match self {
            Step::Unary { .. } | Step::Dropout { .. } => 2,
            Step::Constant(_) => 1,
            Step::Binary(_) | Step::Broadcast | Step::Cast { .. } => 0,
        }
    }

    /// How many u32 words the step takes from the GPU parameter block (a random key).
    pub fn words(&self) -> usize {
        match self {
            Step::Dropout { .. } => 4,
            _ => 0,
        }
    }

    /// Whether the step's value depends on the element's position (dropout's mask), so that it
    /// can only be computed over its own shape, never broadcast.
    pub fn positional(&self) -> bool {
        matches!(self, Step::Dropout { .. })
    }
}

/// Where a step's operand comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Operand {
    /// An input of the chain: a tensor computed before it.
    Input(usize),
    /// An earlier step of the chain.
    Step(usize),
}

/// A chain of elementwise steps evaluated over one shape.
pub(crate) struct Chain {
    /// The steps in order, each with its operands.
    pub steps: Vec<(Step, SmallVec<[Operand; 2]>)>,
    /// The shapes of the chain's inputs; each broadcasts to `shape`.
    pub inputs: Vec<Shape>,
    /// The shape every step is evaluated over.
    pub shape: Shape,
    /// The steps whose values are written out, in increasing order (the last step among them).
    pub outputs: Vec<usize>,
    /// The dtype of each input and of each output: f32, or f16 on a GPU (converted on load and
    /// store); the chain's own dtype on the CPU.
    pub input_dtypes: Vec<DType>,
    pub output_dtypes: Vec<DType>,
}

/// The most buffers a fused kernel binds (inputs and outputs): WebGPU's guaranteed minimum of
/// storage buffers per shader stage, so a chain that fits here fits every adapter.
pub(crate) const MAX_BINDINGS: usize = 8;

/// The 32-bit words of a GPU parameter block (the recorder's slot is 256 bytes).
pub(crate) const PARAM_WORDS: usize = 64;
/// The words of the fused kernel's own fields before the chain's (n and three pads).
pub(crate) const FUSED_PREFIX_WORDS: usize = 4;

/// Whether a chain with `strided` broadcast inputs, `scalars` f32 scalars and `words` u32 words
/// of its steps, and `bindings` buffers fits a GPU kernel whose own parameters take `prefix`
/// words: the parameter block and the bindings.
pub(crate) fn fits_gpu(prefix: usize, strided: usize, scalars: usize, words: usize, bindings: usize) -> bool {
    let chain = 4 + MAX_RANK + MAX_RANK * strided + 4 * scalars.div_ceil(4) + 4 * words.div_ceil(4);
    prefix + chain <= PARAM_WORDS && bindings <= MAX_BINDINGS
}

/// How a step reads one of the chain's inputs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// It has the chain's shape: element i.
    Same,
    /// It has one element: element 0.
    Scalar,
    /// A broadcast: through the strides of the given slot of the parameter block.
    Strided(usize),
}

impl Chain {
    /// How each input is read, and the broadcast strides of the strided ones (in slot order).
    fn reads(&self) -> (Vec<Read>, Vec<Vec<usize>>) {
        let mut strides = Vec::new();
        let reads = self
            .inputs
            .iter()
            .map(|s| {
                if *s == self.shape {
                    Read::Same
                } else if s.numel() == 1 {
                    Read::Scalar
                } else {
                    strides.push(s.broadcast_strides(&self.shape));
                    Read::Strided(strides.len() - 1)
                }
            })
            .collect();
        (reads, strides)
    }

    // ---------------------------------------------------------------- CPU: one blocked loop

    /// Computes the chain on the CPU: the values of `outputs`, in order. `inputs` are the
    /// chain's inputs, all of `dtype` (f32 or f64).
    pub fn cpu(&self, inputs: &[&CpuStorage], dtype: DType) -> Vec<CpuStorage> {
        match dtype {
            DType::F32 => self.cpu_typed::<f32>(inputs),
            DType::F64 => self.cpu_typed::<f64>(inputs),
            other => unreachable!("the planner fuses float chains only, not {other}"),
        }
    }

    fn cpu_typed<T: Float + Kernels>(&self, inputs: &[&CpuStorage]) -> Vec<CpuStorage> {
        let inputs: Vec<&[T]> = inputs.iter().map(|s| s.as_slice::<T>()).collect();
        let n = self.shape.numel();
        let mut outs: Vec<Vec<T>> = self.outputs.iter().map(|_| cpu_pool::for_overwrite::<T>(n)).collect();
        // each task takes a run of whole blocks, and the slices of every output it writes
        let chunk = PARALLEL_CHUNK.div_ceil(BLOCK) * BLOCK;
        let mut tasks: Vec<Vec<&mut [T]>> = (0..n.div_ceil(chunk)).map(|_| Vec::new()).collect();
        for out in outs.iter_mut() {
            for (task, slice) in tasks.iter_mut().zip(out.chunks_mut(chunk)) {
                task.push(slice);
            }
        }
        let run = |(t, mut slices): (usize, Vec<&mut [T]>)| {
            let mut scratch = Scratch::new(self.steps.len(), inputs.len());
            let len = slices[0].len();
            for at in (0..len).step_by(BLOCK) {
                let block = BLOCK.min(len - at);
                self.block(&inputs, t * chunk + at, block, &mut scratch);
                for (slice, &step) in slices.iter_mut().zip(&self.outputs) {
                    slice[at..at + block].copy_from_slice(&scratch.steps[step * BLOCK..][..block]);
                }
            }
        };
        if tasks.len() <= 1 {
            tasks.into_iter().enumerate().for_each(run); // not worth a thread
        } else {
            tasks.into_par_iter().enumerate().for_each(run);
        }
        outs.into_iter().map(CpuStorage::from_vec).collect()
    }

    /// Evaluates every step at elements `start .. start + len` (at most [`BLOCK`]) into
    /// `scratch`.
    fn block<T: Float + Kernels>(&self, inputs: &[&[T]], start: usize, len: usize, scratch: &mut Scratch<T>) {
        // the inputs' elements for this block: a slice of an input of the chain's shape, else
        // gathered (a scalar repeated, a broadcast read through its strides)
        for (k, (x, shape)) in inputs.iter().zip(&self.inputs).enumerate() {
            let dst = &mut scratch.inputs[k * BLOCK..][..len];
            if *shape == self.shape {
                continue;
            } else if x.len() == 1 {
                dst.fill(x[0]);
            } else {
                gather(x, &shape.broadcast_strides(&self.shape), self.shape.dims(), start, dst);
            }
        }
        for (j, (step, operands)) in self.steps.iter().enumerate() {
            let (done, rest) = scratch.steps.split_at_mut(j * BLOCK);
            let uniform = &mut scratch.uniform[..len];
            let out = &mut rest[..len];
            let operand = |o: &Operand| -> &[T] {
                match *o {
                    Operand::Step(i) => &done[i * BLOCK..][..len],
                    Operand::Input(k) if self.inputs[k] == self.shape => &inputs[k][start..start + len],
                    Operand::Input(k) => &scratch.inputs[k * BLOCK..][..len],
                }
            };
            match *step {
                Step::Unary { f, a, b } => (T::unary(f))(operand(&operands[0]), out, T::of(a), T::of(b)),
                Step::Binary(f) => (T::binary(f))(operand(&operands[0]), operand(&operands[1]), out),
                Step::Constant(v) => out.fill(T::of(v)),
                Step::Broadcast => out.copy_from_slice(operand(&operands[0])),
                Step::Dropout { key, p, scale } => {
                    key.fill_uniform(start as u64, uniform);
                    let (x, scale) = (operand(&operands[0]), T::of(f64::from(scale)));
                    for ((o, &v), &u) in out.iter_mut().zip(x).zip(uniform.iter()) {
                        *o = if u >= p { v * scale } else { T::ZERO };
                    }
                }
                Step::Cast { .. } => unreachable!("casts are steps of GPU chains only (graph/fuse.rs)"),
            }
        }
    }

    // ---------------------------------------------------------------- GPU: generated WGSL

    /// The chain's WGSL for a kernel that defines the element index `i` (and, with a `head`,
    /// the head's value `v`): the parameter block's fields, the bindings from `first` on (the
    /// inputs but the head's, then the head's value if it is written out, then the outputs), a
    /// function per step and the body, which computes element `i` and writes it out.
    pub fn wgsl(&self, first: u32, head: Option<Head>) -> Wgsl {
        let (reads, strides) = self.reads();
        let scalars: usize = self.steps.iter().map(|(s, _)| s.scalars()).sum();
        let words: usize = self.steps.iter().map(|(s, _)| s.words()).sum();
        let mut fields = String::from(
            "chain_rank: u32,\nchain_pad0: u32,\nchain_pad1: u32,\nchain_pad2: u32,\nchain_shape: Dims,\n",
        );
        if !strides.is_empty() {
            writeln!(fields, "chain_strides: array<Dims, {}>,", strides.len()).unwrap();
        }
        if scalars > 0 {
            writeln!(fields, "chain_scalars: array<vec4<f32>, {}>,", scalars.div_ceil(4)).unwrap();
        }
        if words > 0 {
            writeln!(fields, "chain_words: array<vec4<u32>, {}>,", words.div_ceil(4)).unwrap();
        }
        let mut bindings = String::new();
        let mut binding = first;
        let mut bind = |name: String, access: &str, dtype: DType| {
            let element = if dtype == DType::F16 { "f16" } else { "f32" };
            writeln!(
                bindings,
                "@group(0) @binding({binding}) var<storage, {access}> {name}: array<{element}>;"
            )
            .unwrap();
            binding += 1;
        };
        for k in (0..self.inputs.len()).filter(|&k| head.is_none_or(|h| h.input != k)) {
            bind(format!("in{k}"), "read", self.input_dtypes[k]);
        }
        if let Some(h) = head.filter(|h| h.stored) {
            bind("head".into(), "read_write", self.input_dtypes[h.input]);
        }
        for (o, &dtype) in self.output_dtypes.iter().enumerate() {
            bind(format!("out{o}"), "read_write", dtype);
        }
        // the offset in a broadcast input (strides `s`) of element i of the chain's shape
        let mut functions = String::from(
            "fn chain_strided(i: u32, s: Dims) -> u32 {\n    var rest = i;\n    var offset = 0u;\n    \
             for (var d = i32(p.chain_rank) - 1; d >= 0; d--) {\n        let k = u32(d);\n        \
             let size = dims_at(p.chain_shape, k);\n        offset += (rest % size) * dims_at(s, k);\n        \
             rest = rest / size;\n    }\n    return offset;\n}\n",
        );
        let mut body = String::new();
        for (k, read) in reads.iter().enumerate() {
            let value = match (head, read) {
                // an f16 product is the accumulator rounded once, as the product alone stores it
                (Some(h), _) if h.input == k && self.input_dtypes[k] == DType::F16 => "f16(v)".to_string(),
                (Some(h), _) if h.input == k => "v".to_string(),
                (_, Read::Same) => format!("in{k}[i]"),
                (_, Read::Scalar) => format!("in{k}[0u]"),
                (_, Read::Strided(slot)) => format!("in{k}[chain_strided(i, p.chain_strides[{slot}])]"),
            };
            let value = if self.input_dtypes[k] == DType::F16 { format!("f32({value})") } else { value };
            writeln!(body, "    let x{k} = {value};").unwrap();
        }
        let scalar = |s: usize| format!("p.chain_scalars[{}].{}", s / 4, ["x", "y", "z", "w"][s % 4]);
        let name = |o: &Operand| match *o {
            Operand::Input(k) => format!("x{k}"),
            Operand::Step(j) => format!("v{j}"),
        };
        let (mut next_scalar, mut next_word) = (0, 0);
        for (j, (step, operands)) in self.steps.iter().enumerate() {
            let value = match *step {
                Step::Unary { f, .. } => {
                    writeln!(
                        functions,
                        "fn step{j}(x: f32, a: f32, b: f32) -> f32 {{\n    return {};\n}}",
                        f.wgsl
                    )
                    .unwrap();
                    format!(
                        "step{j}({}, {}, {})",
                        name(&operands[0]),
                        scalar(next_scalar),
                        scalar(next_scalar + 1)
                    )
                }
                Step::Binary(f) => {
                    writeln!(functions, "fn step{j}(a: f32, b: f32) -> f32 {{\n    return {};\n}}", f.wgsl)
                        .unwrap();
                    format!("step{j}({}, {})", name(&operands[0]), name(&operands[1]))
                }
                Step::Constant(_) => scalar(next_scalar),
                Step::Broadcast | Step::Cast { to: DType::F32 } => name(&operands[0]),
                Step::Cast { .. } => format!("f32(f16({}))", name(&operands[0])),
                Step::Dropout { .. } => {
                    // the word of element i of the key's stream (random.wgsl's layout); a Philox
                    // block holds the words of 4 consecutive elements, so an invocation that
                    // computes several (a GEMM's store) keeps its last block
                    writeln!(
                        functions,
                        "var<private> step{j}_at: u32 = 0xffffffffu;\nvar<private> step{j}_block: vec4<u32>;\n\
                         fn step{j}(x: f32, i: u32, p: f32, scale: f32, key: vec4<u32>) -> f32 {{\n    \
                         if i / 4u != step{j}_at {{\n        step{j}_at = i / 4u;\n        \
                         step{j}_block = philox(vec4<u32>(step{j}_at, 0u, key.z, key.w), key.xy);\n    }}\n    \
                         return select(0.0, x * scale, unit(step{j}_block[i % 4u]) >= p);\n}}"
                    )
                    .unwrap();
                    let key = format!("p.chain_words[{}]", next_word / 4);
                    format!(
                        "step{j}({}, i, {}, {}, {key})",
                        name(&operands[0]),
                        scalar(next_scalar),
                        scalar(next_scalar + 1)
                    )
                }
            };
            next_scalar += step.scalars();
            next_word += step.words();
            writeln!(body, "    let v{j} = {value};").unwrap();
        }
        if let Some(h) = head.filter(|h| h.stored) {
            let value = if self.input_dtypes[h.input] == DType::F16 { "f16(v)" } else { "v" };
            writeln!(body, "    head[i] = {value};").unwrap();
        }
        for ((o, step), &dtype) in self.outputs.iter().enumerate().zip(&self.output_dtypes) {
            let value = if dtype == DType::F16 { format!("f16(v{step})") } else { format!("v{step}") };
            writeln!(body, "    out{o}[i] = {value};").unwrap();
        }
        Wgsl { fields, bindings, functions, body, philox: words > 0, f16: self.uses_f16() }
    }

    /// Whether the chain's WGSL uses the `f16` type: an f16 input or output, or a cast to f16.
    pub fn uses_f16(&self) -> bool {
        self.input_dtypes.iter().chain(&self.output_dtypes).any(|&d| d == DType::F16)
            || self.steps.iter().any(|(s, _)| matches!(s, Step::Cast { to: DType::F16 }))
    }

    /// The chain's part of a GPU parameter block: rank, shape, the broadcast inputs' strides, the
    /// steps' scalars and words, as 32-bit words written from `block[0]` (which must start on 16
    /// bytes, as the fields of [`Chain::wgsl`] do). Returns how many words it wrote.
    pub fn params(&self, block: &mut [u32]) -> Result<usize> {
        let (_, strides) = self.reads();
        let (shape, strides) = collapse(self.shape.dims(), &strides);
        block[0] = shape.len() as u32;
        block[4..4 + MAX_RANK].copy_from_slice(&pack("fused", &shape, 1)?);
        let mut at = 4 + MAX_RANK;
        for s in &strides {
            block[at..at + MAX_RANK].copy_from_slice(&pack("fused", s, 0)?);
            at += MAX_RANK;
        }
        for (step, _) in &self.steps {
            let values: SmallVec<[f32; 2]> = match *step {
                Step::Unary { a, b, .. } => [a as f32, b as f32].into_iter().collect(),
                Step::Constant(v) => [v as f32].into_iter().collect(),
                Step::Dropout { p, scale, .. } => [p, scale].into_iter().collect(),
                Step::Binary(_) | Step::Broadcast | Step::Cast { .. } => SmallVec::new(),
            };
            for v in values {
                block[at] = v.to_bits();
                at += 1;
            }
        }
        // the u32 words start on a vec4 of their own
        at = at.next_multiple_of(4);
        for (step, _) in &self.steps {
            if let Step::Dropout { key, .. } = *step {
                let (seed, stream) = (key.seed, key.stream);
                let key = [seed as u32, (seed >> 32) as u32, stream as u32, (stream >> 32) as u32];
                block[at..at + 4].copy_from_slice(&key);
                at += 4;
            }
        }
        Ok(at)
    }

    /// The standalone kernel of the chain (`shaders/fused.wgsl`).
    fn kernel(&self) -> Kernel<'static> {
        let code = self.wgsl(1, None);
        let kernel = Kernel::new(&SHADER, "main", self.inputs.len() as u32, self.outputs.len() as u32)
            .with_library(&ACTIVATIONS);
        let kernel = if code.philox { kernel.with_library(&PHILOX) } else { kernel };
        let kernel = if code.f16 { kernel.with_f16() } else { kernel };
        kernel
            .with("// @FIELDS", code.fields)
            .with(TEMPLATE_BINDINGS, code.bindings)
            .with("// @STEPS", code.functions)
            .with(TEMPLATE_BODY, code.body)
    }

    /// Records the chain's kernel; returns the buffers of `outputs`, in order.
    pub fn gpu(&self, inputs: &[&GpuBuffer], rec: &mut Recorder) -> Result<Vec<GpuBuffer>> {
        let n = u32_of("fused", self.shape.numel())?;
        let mut words = [0u32; PARAM_WORDS];
        words[0] = n;
        self.params(&mut words[4..])?;
        let outs: Vec<GpuBuffer> =
            self.output_dtypes.iter().map(|&d| rec.alloc_typed(n as usize, d)).collect::<Result<_>>()?;
        let writes: Vec<&GpuBuffer> = outs.iter().collect();
        rec.dispatch(&self.kernel(), &words, inputs, &writes, Grid::Linear(n.div_ceil(256)))?;
        Ok(outs)
    }
}

/// A chain's input computed by the kernel the chain is spliced into (a matmul's output, its
/// accumulator `v` in the GEMM's store), and whether that value is written out too.
#[derive(Clone, Copy)]
pub(crate) struct Head {
    pub input: usize,
    pub stored: bool,
}

/// A chain's WGSL, for splicing into a kernel (see [`Chain::wgsl`]).
pub(crate) struct Wgsl {
    pub fields: String,
    pub bindings: String,
    pub functions: String,
    pub body: String,
    /// Whether the functions call `philox.wgsl`.
    pub philox: bool,
    /// Whether the code uses the `f16` type (`Kernel::with_f16`).
    pub f16: bool,
}

/// The template's binding and body lines, which the generated ones replace.
const TEMPLATE_BINDINGS: &str = "@group(0) @binding(1) var<storage, read> in0: array<f32>; @group(0) @binding(2) var<storage, read_write> out0: array<f32>; // @BINDINGS";
const TEMPLATE_BODY: &str = "    out0[i] = in0[i]; // @BODY";

/// Elements per block of the CPU loop: every step's block stays in the L1 cache.
const BLOCK: usize = 1024;

/// One CPU task's blocks: a block per step and per input, and a block of uniform draws.
struct Scratch<T> {
    steps: Vec<T>,
    inputs: Vec<T>,
    uniform: Vec<f32>,
}

impl<T: Float> Scratch<T> {
    fn new(steps: usize, inputs: usize) -> Scratch<T> {
        let uniform = vec![0.0; BLOCK];
        Scratch { steps: vec![T::ZERO; steps * BLOCK], inputs: vec![T::ZERO; inputs * BLOCK], uniform }
    }
}

/// Elements `start .. start + dst.len()`, in row-major order of `dims`, of `x` read through
/// broadcast `strides`: run by run along the last dimension (a bias row is one copy, a repeated
/// element one fill).
fn gather<T: Copy>(x: &[T], strides: &[usize], dims: &[usize], start: usize, dst: &mut [T]) {
    let last = dims.len() - 1;
    let mut index = vec![0; dims.len()];
    let mut rest = start;
    let mut offset = 0;
    for d in (0..dims.len()).rev() {
        index[d] = rest % dims[d];
        rest /= dims[d];
        offset += index[d] * strides[d];
    }
    let mut at = 0;
    while at < dst.len() {
        let run = (dims[last] - index[last]).min(dst.len() - at);
        match strides[last] {
            0 => dst[at..at + run].fill(x[offset]),
            1 => dst[at..at + run].copy_from_slice(&x[offset..offset + run]),
            s => dst[at..at + run].iter_mut().enumerate().for_each(|(k, v)| *v = x[offset + k * s]),
        }
        at += run;
        // step the odometer past the run
        index[last] += run;
        offset += run * strides[last];
        for d in (0..=last).rev() {
            if index[d] < dims[d] {
                break;
            }
            offset -= strides[d] * dims[d];
            index[d] = 0;
            if d > 0 {
                index[d - 1] += 1;
                offset += strides[d - 1];
            }
        }
    }
}

/// The slice functions of the unary and binary rows for one float type.
trait Kernels: Sized {
    fn unary(f: &UnaryFn) -> fn(&[Self], &mut [Self], Self, Self);
    fn binary(f: &BinaryFn) -> fn(&[Self], &[Self], &mut [Self]);
}

impl Kernels for f32 {
    fn unary(f: &UnaryFn) -> fn(&[f32], &mut [f32], f32, f32) {
        f.cpu.f32
    }
    fn binary(f: &BinaryFn) -> fn(&[f32], &[f32], &mut [f32]) {
        f.float.f32
    }
}

impl Kernels for f64 {
    fn unary(f: &UnaryFn) -> fn(&[f64], &mut [f64], f64, f64) {
        f.cpu.f64
    }
    fn binary(f: &BinaryFn) -> fn(&[f64], &[f64], &mut [f64]) {
        f.float.f64
    }
}

/// Chains that together use every unary and binary row, a constant, a broadcast and casts, with
/// inputs of each kind, every other one reading and writing f16 (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let shape = Shape::from([3, 4]);
    UNARY
        .chunks(6)
        .zip(super::binary::BINARY.iter().cycle())
        .enumerate()
        .map(|(k, (rows, binary))| {
            let mut steps: Vec<(Step, SmallVec<[Operand; 2]>)> = vec![
                (Step::Binary(binary), [Operand::Input(0), Operand::Input(1)].into_iter().collect()),
                (Step::Constant(2.0), SmallVec::new()),
                (Step::Binary(binary), [Operand::Step(0), Operand::Step(1)].into_iter().collect()),
            ];
            for f in rows {
                let last = Operand::Step(steps.len() - 1);
                steps.push((Step::Unary { f, a: 0.5, b: 1.5 }, [last].into_iter().collect()));
            }
            let last = Operand::Step(steps.len() - 1);
            steps.push((Step::Binary(binary), [last, Operand::Input(2)].into_iter().collect()));
            let (key, last) = (RandomKey { seed: 1, stream: 2 }, Operand::Step(steps.len() - 1));
            steps.push((Step::Dropout { key, p: 0.25, scale: 4.0 / 3.0 }, [last].into_iter().collect()));
            steps.push((Step::Broadcast, [Operand::Step(steps.len() - 1)].into_iter().collect()));
            let half = k % 2 == 1;
            if half {
                for to in [DType::F16, DType::F32] {
                    steps.push((Step::Cast { to }, [Operand::Step(steps.len() - 1)].into_iter().collect()));
                }
            }
            let outputs = vec![0, steps.len() - 1];
            let inputs = vec![shape.clone(), Shape::from([4]), Shape::from([1])];
            let narrow = if half { DType::F16 } else { DType::F32 };
            let (input_dtypes, output_dtypes) = (vec![narrow, DType::F32, narrow], vec![DType::F32, narrow]);
            Chain { steps, inputs, shape: shape.clone(), outputs, input_dtypes, output_dtypes }.kernel()
        })
        .collect()
}
