//! Run-time cross-checking (`KILN_CHECK=1`, `Device::gpu_checked`): every node computed on a
//! GPU is computed again by the CPU reference from the same input values, and the first output
//! that differs beyond the op's tolerance stops the computation with an error naming the op, the
//! shapes, the relative error, any NaN/Inf that appeared on one side only, and the line of user
//! code that created the node. A fused chain is checked against its ops' references run one
//! after another, and a failure names every op of the chain and the line that created it.

use crate::backend::Storage;
use crate::backend::cpu::CpuStorage;
use crate::graph::fuse::{self, Group};
use crate::graph::permuted::{self, PermutedStore};
use crate::graph::siblings::NormTerms;
use crate::ops::Op;
use crate::ops::fused::{Operand, Step};
use crate::ops::movement::{Movement, inverse_permutation};
use crate::ops::{CpuArg, Exec, Meta, ROUNDING_MARGIN, Tolerance, ULP};
use crate::rng::RandomKey;
use crate::{DType, Error, Result, Tensor};
use std::sync::atomic::{AtomicU8, Ordering};

/// Test-only fault injection: when set, the next checked GPU result is spoiled before the
/// comparison, to prove that the check catches a wrong kernel.
static INJECT_FAULT: AtomicU8 = AtomicU8::new(NO_FAULT);
const NO_FAULT: u8 = 0;
const WRONG_VALUE: u8 = 1;
const NAN_VALUE: u8 = 2;

/// Makes the next cross-checked GPU node's first element wrong (for testing the checker).
#[doc(hidden)]
pub fn inject_fault_once() {
    INJECT_FAULT.store(WRONG_VALUE, Ordering::SeqCst);
}

/// Makes the next cross-checked GPU node's first element NaN (for testing the checker).
#[doc(hidden)]
pub fn inject_nan_once() {
    INJECT_FAULT.store(NAN_VALUE, Ordering::SeqCst);
}

/// Compares the GPU result `out` of node `t` with the CPU reference on the same inputs.
pub(crate) fn compare(t: &Tensor, inputs: &[Tensor], storages: &[Storage], out: &Storage) -> Result<()> {
    let host = download(inputs, storages)?;
    let args: Vec<CpuArg> =
        host.iter().zip(inputs).map(|(data, i)| CpuArg { data, shape: i.shape() }).collect();
    let node = &t.0;
    if let Some(fault) = node.op.validate(&args) {
        return Err(fault.error(t));
    }
    let meta = Meta { shape: &node.shape, dtype: node.dtype };
    let reference = node.op.cpu(&args, &meta).to_f64_vec();
    let wide = Meta { shape: &node.shape, dtype: DType::F64 };
    let allowance = Allowance::of(node.op.tolerance(&args, &meta), || {
        condition(&host, inputs, &|args| node.op.cpu(args, &wide).to_f64_vec())
    });
    let Some(detail) = judge(&reference, out, t, &allowance)? else { return Ok(()) };
    let msg = format!(
        "cross-check failed: {} on {} disagrees with the CPU reference\n  inputs: {}\n  output: {} {}\n  {detail}\n  {}",
        node.op.describe(),
        node.device,
        shapes(inputs),
        node.shape,
        node.dtype,
        node.site(),
    );
    Err(Error::CheckFailed(msg))
}

/// Compares a layer norm's weight gradient terms dy·x̂ `out`, computed by its input gradient's
/// kernel from that gradient's `operands` (x, the weight if any, dy: their values first in
/// `storages`), with the CPU reference of the terms as a function of x and dy: x̂ recomputed,
/// then the product. The allowance is x̂'s floor and the product's, over x̂'s sums, with the
/// condition of the whole measured.
pub(crate) fn compare_norm_terms(
    norm: &NormTerms,
    operands: &[Tensor],
    storages: &[Storage],
    out: &Storage,
) -> Result<()> {
    let (terms, x_hat) = (&norm.terms, &norm.x_hat);
    let product_inputs = terms.0.inputs().to_vec();
    let dy = product_inputs.iter().find(|i| i.id() != x_hat.id()).expect("a product of dy and x̂");
    let k = operands.iter().position(|o| o.id() == dy.id()).expect("dy is the gradient's operand");
    let sources = [operands[0].clone(), dy.clone()];
    let host = download(&sources, &[storages[0].clone(), storages[k].clone()])?;
    let run = |args: &[CpuArg], dtype: DType| -> CpuStorage {
        let x_hat_value = x_hat.0.op.cpu(&args[..1], &Meta { shape: x_hat.shape(), dtype });
        let product_args: Vec<CpuArg> = product_inputs
            .iter()
            .map(|i| match i.id() == x_hat.id() {
                true => CpuArg { data: &x_hat_value, shape: x_hat.shape() },
                false => CpuArg { data: args[1].data, shape: args[1].shape },
            })
            .collect();
        terms.0.op.cpu(&product_args, &Meta { shape: terms.shape(), dtype })
    };
    let args: Vec<CpuArg> =
        host.iter().zip(&sources).map(|(data, i)| CpuArg { data, shape: i.shape() }).collect();
    let reference = run(&args, terms.dtype()).to_f64_vec();
    let floor = |t: Tolerance| match t {
        Tolerance::Exact => (0.0, 1),
        Tolerance::Rounding { floor, terms } => (floor, terms),
    };
    let x_hat_meta = Meta { shape: x_hat.shape(), dtype: x_hat.dtype() };
    let (normalizing, summed) = floor(x_hat.0.op.tolerance(&args[..1], &x_hat_meta));
    let (multiplying, _) =
        floor(terms.0.op.tolerance(&args, &Meta { shape: terms.shape(), dtype: terms.dtype() }));
    let tolerance = Tolerance::Rounding { floor: normalizing + multiplying, terms: summed };
    let allowance =
        Allowance::of(tolerance, || condition(&host, &sources, &|args| run(args, DType::F64).to_f64_vec()));
    let Some(detail) = judge(&reference, out, terms, &allowance)? else { return Ok(()) };
    let msg = format!(
        "cross-check failed: {} of {} (computed by the kernel of its input gradient) on {} disagrees \
         with the CPU reference\n  inputs: {}\n  output: {} {}\n  {detail}\n  {}",
        terms.0.op.describe(),
        x_hat.0.op.describe(),
        terms.device(),
        shapes(&sources),
        terms.shape(),
        terms.dtype(),
        terms.0.site(),
    );
    Err(Error::CheckFailed(msg))
}

/// The product of a permuted store (`permuted.rs`) as the GPU computed it: the permute's value
/// `out` read back and permuted back, on the host.
pub(crate) fn unpermuted(store: &PermutedStore, out: &Storage) -> Result<Storage> {
    let permute = &store.permute;
    let values = download(std::slice::from_ref(permute), std::slice::from_ref(out))?;
    let perm = permuted::permutation(permute).expect("a permuted store ends in a permute");
    let inverse = Movement::Permute(inverse_permutation(perm));
    let input = store.views.last().unwrap_or(&store.product).shape();
    let arg = CpuArg { data: &values[0], shape: permute.shape() };
    let back = inverse.cpu(&[arg], &Meta { shape: input, dtype: permute.dtype() });
    Ok(Storage::Cpu(std::sync::Arc::new(back)))
}

/// Compares the outputs `outs` of a fused chain computed on a GPU with the CPU reference of the
/// chain: each of its ops' own reference, one after another, on the same input values — from the
/// host's own reference when the chain is an epilogue (`host_out` is then the host's output, if
/// it was written out). The allowance of an output adds up the allowances of the
/// ops it depends on (each rounds once), at the condition of the chain up to it, measured as for
/// one op. `sources` are the values the chain starts from: the host's inputs, if any, then the
/// chain's other inputs.
pub(crate) fn compare_chain(
    g: &Group,
    sources: &[Tensor],
    storages: &[Storage],
    host_out: Option<&Storage>,
    outs: &[Storage],
) -> Result<()> {
    let host = download(sources, storages)?;
    let args: Vec<CpuArg> =
        host.iter().zip(sources).map(|(data, i)| CpuArg { data, shape: i.shape() }).collect();
    let dtype = fuse::compute_dtype(&g.members[0]);
    let reference = evaluate(g, &args, dtype);
    let fail = |node: &Tensor, what: String, detail: String| {
        let names: Vec<String> =
            g.host.iter().map(|p| &p.node).chain(&g.members).map(|m| m.0.op.describe()).collect();
        let sites: Vec<String> = g
            .host
            .iter()
            .map(|p| &p.node)
            .chain(&g.members)
            .map(|m| format!("{}: {}", m.0.op.name(), m.0.site()))
            .collect();
        Error::CheckFailed(format!(
            "cross-check failed: the fused chain {} on {} disagrees with the CPU reference of its ops at {what}\n  inputs: {}\n  output: {} {}\n  {detail}\n  {}",
            names.join(" → "),
            node.device(),
            shapes(sources),
            node.shape(),
            node.dtype(),
            sites.join("\n  "),
        ))
    };
    if let (Some(p), Some(out), Some((value, tolerance))) = (&g.host, host_out, &reference.host) {
        let allowance = Allowance::of(*tolerance, || {
            condition(&host, sources, &|wide| {
                evaluate(g, wide, DType::F64).host.expect("a host").0.to_f64_vec()
            })
        });
        if let Some(detail) = judge(&value.to_f64_vec(), out, &p.node, &allowance)? {
            return Err(fail(&p.node, format!("its {}", p.node.0.op.name()), detail));
        }
    }
    for (&step, out) in g.chain.outputs.iter().zip(outs) {
        let (mut floor, mut terms, mut exact) = (0.0, 0, true);
        let mut add = |t: &Tolerance| {
            if let Tolerance::Rounding { floor: f, terms: n } = *t {
                (floor, terms, exact) = (floor + f, terms + n, false);
            }
        };
        let cone = cone(g, step);
        for &j in &cone {
            add(&reference.tolerances[j]);
        }
        // the host's rounding reaches every step that reads it
        if let (Some(p), Some((_, t))) = (&g.host, &reference.host) {
            let reads = |j: &usize| g.chain.steps[*j].1.contains(&Operand::Input(p.head.input));
            if cone.iter().any(reads) {
                add(t);
            }
        }
        let tolerance = if exact { Tolerance::Exact } else { Tolerance::Rounding { floor, terms } };
        let allowance = Allowance::of(tolerance, || {
            condition(&host, sources, &|wide| evaluate(g, wide, DType::F64).steps[step].to_f64_vec())
        });
        let node = &g.members[step];
        if let Some(detail) = judge(&reference.steps[step].to_f64_vec(), out, node, &allowance)? {
            let what = format!("step {} of {} ({})", step + 1, g.members.len(), node.0.op.name());
            return Err(fail(node, what, detail));
        }
    }
    Ok(())
}

/// Compares the output `out` of the reduction that chain `g` is the prologue of, computed on a
/// GPU, with the CPU reference: the chain's ops' references one after another, then the
/// reduction's, on the same input values `sources`. The allowance adds up the allowances of the
/// chain's ops and the reduction's, at the condition of the whole, measured as for one op.
pub(crate) fn compare_tail(g: &Group, sources: &[Tensor], storages: &[Storage], out: &Storage) -> Result<()> {
    let tail = g.tail.as_ref().expect("a chain with a tail");
    let host = download(sources, storages)?;
    let reduce = |args: &[CpuArg], dtype: DType| -> (CpuStorage, Vec<Tolerance>) {
        let (steps, mut tolerances) = chain_reference(g, args, dtype);
        let last = CpuArg { data: steps.last().expect("a chain has steps"), shape: &g.chain.shape };
        let meta =
            Meta { shape: tail.shape(), dtype: if dtype == DType::F64 { dtype } else { tail.dtype() } };
        tolerances.push(tail.0.op.tolerance(std::slice::from_ref(&last), &meta));
        (tail.0.op.cpu(&[last], &meta), tolerances)
    };
    let args: Vec<CpuArg> =
        host.iter().zip(sources).map(|(data, i)| CpuArg { data, shape: i.shape() }).collect();
    let (reference, tolerances) = reduce(&args, fuse::compute_dtype(&g.members[0]));
    let (mut floor, mut terms, mut exact) = (0.0, 0, true);
    for t in &tolerances {
        if let Tolerance::Rounding { floor: f, terms: n } = *t {
            (floor, terms, exact) = (floor + f, terms + n, false);
        }
    }
    let tolerance = if exact { Tolerance::Exact } else { Tolerance::Rounding { floor, terms } };
    let allowance = Allowance::of(tolerance, || {
        condition(&host, sources, &|wide| reduce(wide, DType::F64).0.to_f64_vec())
    });
    match judge(&reference.to_f64_vec(), out, tail, &allowance)? {
        None => Ok(()),
        Some(detail) => {
            let names: Vec<String> = g.members.iter().chain([tail]).map(|m| m.0.op.describe()).collect();
            let sites: Vec<String> = g
                .members
                .iter()
                .chain([tail])
                .map(|m| format!("{}: {}", m.0.op.name(), m.0.site()))
                .collect();
            Err(Error::CheckFailed(format!(
                "cross-check failed: the fused chain {} on {} disagrees with the CPU reference of its ops at its {}\n  inputs: {}\n  output: {} {}\n  {detail}\n  {}",
                names.join(" → "),
                tail.device(),
                tail.0.op.name(),
                shapes(sources),
                tail.shape(),
                tail.dtype(),
                sites.join("\n  "),
            )))
        }
    }
}

/// A chain's values from its ops' CPU references.
struct Evaluated {
    /// The host's output, with its tolerance, when the chain is its epilogue.
    host: Option<(CpuStorage, Tolerance)>,
    /// Every step's value.
    steps: Vec<CpuStorage>,
    /// Each step's tolerance on the values it read.
    tolerances: Vec<Tolerance>,
}

/// The values of chain `g` from its ops' CPU references in `dtype`, from `sources` (the
/// host's inputs, if any, then the chain's other inputs).
fn evaluate(g: &Group, sources: &[CpuArg], dtype: DType) -> Evaluated {
    let (host, rest) = match &g.host {
        Some(p) => {
            // the host's own dtype (an f16 product), or f64 for the condition estimate
            let meta = Meta {
                shape: p.node.shape(),
                dtype: if dtype == DType::F64 { dtype } else { p.node.dtype() },
            };
            let own = &sources[..p.node.0.inputs().len()];
            let value = p.node.0.op.cpu(own, &meta);
            let tolerance = p.node.0.op.tolerance(own, &meta);
            (Some((value, tolerance)), &sources[own.len()..])
        }
        None => (None, sources),
    };
    let mut rest = rest.iter();
    let args: Vec<CpuArg> = (0..g.inputs.len())
        .map(|k| match (&g.host, &host) {
            // the host's output, seen through its views
            (Some(p), Some((value, _))) if p.head.input == k => {
                CpuArg { data: value, shape: &g.chain.inputs[k] }
            }
            _ => {
                let a = rest.next().expect("one source per input");
                CpuArg { data: a.data, shape: a.shape }
            }
        })
        .collect();
    let (steps, tolerances) = chain_reference(g, &args, dtype);
    Evaluated { host, steps, tolerances }
}

/// The values of every step of chain `g` from its ops' CPU references in `dtype`, from its
/// inputs `args`, and each op's tolerance on the values it read.
fn chain_reference(g: &Group, args: &[CpuArg], dtype: DType) -> (Vec<CpuStorage>, Vec<Tolerance>) {
    let mut values: Vec<CpuStorage> = Vec::with_capacity(g.members.len());
    let mut tolerances = Vec::with_capacity(g.members.len());
    for (node, (_, operands)) in g.members.iter().zip(&g.chain.steps) {
        let step_args: Vec<CpuArg> = operands
            .iter()
            .map(|o| match *o {
                Operand::Input(k) => CpuArg { data: args[k].data, shape: args[k].shape },
                Operand::Step(i) => CpuArg { data: &values[i], shape: g.members[i].shape() },
            })
            .collect();
        // each node's own dtype (f16 casts), or f64 throughout for the condition estimate
        let meta =
            Meta { shape: node.shape(), dtype: if dtype == DType::F64 { dtype } else { node.dtype() } };
        let f64_cast = dtype == DType::F64 && matches!(g.chain.steps[values.len()].0, Step::Cast { .. });
        if node.0.op.exec() == Exec::View || f64_cast {
            // a view in a chain reads its operand (`graph/fuse.rs`); so does an f16 cast when
            // the condition estimate runs the chain in f64 (its rounding is the tolerance's floor)
            values.push(step_args[0].data.clone());
            tolerances.push(Tolerance::Exact);
            continue;
        }
        let value = node.0.op.cpu(&step_args, &meta);
        tolerances.push(node.0.op.tolerance(&step_args, &meta));
        values.push(value);
    }
    (values, tolerances)
}

/// The steps of chain `g` that step `step` depends on, itself included.
fn cone(g: &Group, step: usize) -> Vec<usize> {
    let mut inside = vec![false; step + 1];
    inside[step] = true;
    for j in (0..=step).rev() {
        if inside[j] {
            for o in &g.chain.steps[j].1 {
                if let Operand::Step(i) = *o {
                    inside[i] = true;
                }
            }
        }
    }
    (0..=step).filter(|&j| inside[j]).collect()
}

/// The inputs' values on the host.
fn download(inputs: &[Tensor], storages: &[Storage]) -> Result<Vec<CpuStorage>> {
    storages
        .iter()
        .zip(inputs)
        .map(|(s, i)| match s {
            Storage::Gpu(b) => b.download(i.dtype(), i.numel()),
            Storage::Cpu(c) => Ok((**c).clone()),
        })
        .collect()
}

/// The inputs' shapes and dtypes, for messages.
fn shapes(inputs: &[Tensor]) -> String {
    let shapes: Vec<String> = inputs.iter().map(|i| format!("{} {}", i.shape(), i.dtype())).collect();
    if shapes.is_empty() { "none".into() } else { shapes.join(", ") }
}

/// How far a GPU result may be from the reference, and how that was worked out.
struct Allowance {
    /// The relative error allowed.
    tolerance: f64,
    /// For rounding tolerances: the op's own floor, the terms summed and the measured κ.
    measured: Option<(f64, usize, f64)>,
}

impl Allowance {
    /// The allowance of `tolerance`, measuring the condition κ (only where it is needed).
    fn of(tolerance: Tolerance, kappa: impl FnOnce() -> f64) -> Allowance {
        match tolerance {
            Tolerance::Exact => Allowance { tolerance: 0.0, measured: None },
            Tolerance::Rounding { floor, terms } => {
                let kappa = kappa();
                let summing = ROUNDING_MARGIN * (terms as f64).sqrt() * ULP * kappa;
                Allowance { tolerance: floor + summing, measured: Some((floor, terms, kappa)) }
            }
        }
    }
}

/// Downloads the GPU result `out` of node `t` and compares it with `reference`: `None` when it
/// is within the allowance, else what is wrong (the relative error and its allowance, and any
/// NaN/Inf on one side only).
fn judge(reference: &[f64], out: &Storage, t: &Tensor, allowance: &Allowance) -> Result<Option<String>> {
    // the GPU's values, or values already read back from it (a permuted store's product)
    let mut gpu = match out {
        Storage::Gpu(b) => b.download(t.dtype(), t.numel())?.to_f64_vec(),
        Storage::Cpu(values) => values.to_f64_vec(),
    };
    if let Some(first) = gpu.first_mut() {
        match INJECT_FAULT.swap(NO_FAULT, Ordering::SeqCst) {
            WRONG_VALUE => *first += 1.0 + first.abs(),
            NAN_VALUE => *first = f64::NAN,
            _ => {}
        }
    }
    let verdict = Verdict::of(reference, &gpu);
    if verdict.rel_err <= allowance.tolerance && verdict.mismatch.is_none() {
        return Ok(None);
    }
    let mut detail =
        format!("relative error {:.3e} (tolerance {:.1e})", verdict.rel_err, allowance.tolerance);
    if let Some((floor, terms, kappa)) = allowance.measured {
        detail.push_str(&format!(
            ": {floor:.1e} for the op's own rounding, and {ROUNDING_MARGIN}·√{terms} ulps of sums at the measured condition κ = {kappa:.2}"
        ));
    }
    if let Some(n) = verdict.mismatch {
        detail.push_str(&format!("\n  {n}"));
    }
    Ok(Some(detail))
}

/// The measured condition κ of a computation `run` (in f64) at the inputs `host` (see
/// [`Tolerance`]): how far its output moves, in ulps of ‖output‖, when every float input moves
/// by one ulp of random sign — both runs in f64, so only the data's conditioning shows. 0 when
/// no input is a float.
fn condition(host: &[CpuStorage], inputs: &[Tensor], run: &dyn Fn(&[CpuArg]) -> Vec<f64>) -> f64 {
    if !host.iter().any(|h| h.dtype().is_float()) {
        return 0.0;
    }
    let run = |perturb: bool| -> Vec<f64> {
        let wide: Vec<CpuStorage> = host
            .iter()
            .enumerate()
            .map(|(k, h)| {
                if !h.dtype().is_float() {
                    return h.clone();
                }
                let key = RandomKey { seed: 0xc0d, stream: k as u64 };
                let moved = |(i, x): (usize, f64)| match perturb {
                    true if key.uniform(i as u64) < 0.5 => x * (1.0 - ULP),
                    true => x * (1.0 + ULP),
                    false => x,
                };
                CpuStorage::from_vec(h.to_f64_vec().into_iter().enumerate().map(moved).collect::<Vec<f64>>())
            })
            .collect();
        let args: Vec<CpuArg> =
            wide.iter().zip(inputs).map(|(data, i)| CpuArg { data, shape: i.shape() }).collect();
        run(&args)
    };
    let (y, moved) = (run(false), run(true));
    // infinities (a −∞ mask entry passing through) are compared exactly by `Verdict`; here
    // ∞ − ∞ would make κ NaN
    let finite: Vec<(f64, f64)> =
        y.iter().zip(&moved).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(&a, &b)| (a, b)).collect();
    let norm = finite.iter().map(|(v, _)| v * v).sum::<f64>().sqrt();
    let shift = finite.iter().map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    if norm > 0.0 { shift / (ULP * norm) } else { shift / ULP }
}

/// How two results compare.
pub(crate) struct Verdict {
    /// ‖a − b‖ / ‖a‖ (‖a − b‖ when ‖a‖ is 0); infinite when the results cannot agree (see
    /// `mismatch`), so no tolerance accepts them.
    pub rel_err: f64,
    /// What makes the results disagree outright: the first NaN/Inf present on one side only,
    /// or different lengths.
    pub mismatch: Option<String>,
}

impl Verdict {
    /// Compares `got` against `reference`.
    pub fn of(reference: &[f64], got: &[f64]) -> Verdict {
        let mut diff = 0.0;
        let mut norm = 0.0;
        if reference.len() != got.len() {
            let lengths = format!("{} elements against {} in the reference", got.len(), reference.len());
            return Verdict { rel_err: f64::INFINITY, mismatch: Some(lengths) };
        }
        let mut nonfinite = None;
        for (i, (&r, &g)) in reference.iter().zip(got).enumerate() {
            if r.is_finite() && g.is_finite() {
                diff += (r - g) * (r - g);
                norm += r * r;
            } else if !(r.is_nan() && g.is_nan() || r == g) && nonfinite.is_none() {
                nonfinite = Some(format!("element {i}: reference {r}, got {g} (NaN/Inf on one side only)"));
            }
        }
        let rel_err = match nonfinite {
            Some(_) => f64::INFINITY,
            None if norm > 0.0 => (diff / norm).sqrt(),
            None => diff.sqrt(),
        };
        Verdict { rel_err, mismatch: nonfinite }
    }
}
