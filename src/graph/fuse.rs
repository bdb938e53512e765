//! Finding the elementwise chains of a realize's schedule that can run as one fused kernel
//! (`ops/fused.rs`).
//!
//! One pass over the schedule from its end: an elementwise node joins the chain of its consumers
//! when all its consumers in this realize belong to that one chain, so the chain can run at its
//! last node's place and nothing outside it waits for the joined node. A joined node's value is
//! written out only when something outside the chain still needs it: a handle the user holds, a
//! node of another realize, or a consumer that keeps its inputs for the backward pass. Values no
//! one else needs stay in registers (GPU) or in a block of the L1 cache (CPU). On a GPU, a chain
//! that reads a matmul's product takes the matmul in: the chain runs in the GEMM's store (an
//! epilogue: a bias and an activation), under the same rule for who else reads the product. So
//! do the other kernels that can store through a chain (`ops/epilogue.rs`): a convolution, a
//! max-pooling gradient, a reduction — found through reshapes, which share their input's
//! storage. A chain whose last value only a reduction reads runs in the reduction's loads
//! instead (a prologue) and writes nothing itself. A bias's gradient, a sum, runs in the GEMM
//! of its weight's gradient (`siblings.rs`); a permute of a GEMM's product is the GEMM's own
//! store (`permuted.rs`).
//!
//! `KILN_FUSE=0` turns fusion off for the process (and the optimizer's multi-tensor updates with
//! it); [`set_fusion`] switches it per thread.

use crate::graph::permuted::{PermutedStore, permuted_stores};
use crate::graph::siblings::{self, Pair};
use crate::ops::Exec;
use crate::ops::fused::{Chain, FUSED_PREFIX_WORDS, Head, Operand, Step, fits_gpu};
use crate::{DType, Device, Shape, Tensor};
use smallvec::SmallVec;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

thread_local! {
    static THREAD_FUSION: Cell<Option<bool>> = const { Cell::new(None) };
    static CHAINS_RUN: Cell<u64> = const { Cell::new(0) };
}

/// How many fused chains realizes on this thread have computed (for tests that check that
/// fusion happened).
pub fn chains_run() -> u64 {
    CHAINS_RUN.with(|c| c.get())
}

/// Counts `n` fused chains computed (by this thread, or for it by a thread of the CPU pool).
pub(crate) fn count_chains(n: u64) {
    CHAINS_RUN.with(|c| c.set(c.get() + n));
}

/// Whether realizes on this thread fuse elementwise chains: [`set_fusion`]'s choice, else on
/// unless the environment sets `KILN_FUSE=0`.
pub fn fusion_enabled() -> bool {
    static DEFAULT: OnceLock<bool> = OnceLock::new();
    THREAD_FUSION.with(|f| f.get()).unwrap_or_else(|| {
        *DEFAULT.get_or_init(|| std::env::var("KILN_FUSE").map_or(true, |v| v.trim() != "0"))
    })
}

/// Turns fusion of elementwise chains on or off for realizes on this thread (results are the
/// same either way: on the CPU bit for bit, on a GPU within rounding).
///
/// ```
/// kiln::set_fusion(false);
/// assert!(!kiln::fusion_enabled());
/// kiln::set_fusion(true);
/// ```
pub fn set_fusion(on: bool) {
    THREAD_FUSION.with(|f| f.set(Some(on)));
}

/// The most steps one chain takes: a longer kernel compiles slowly and spills registers.
const MAX_STEPS: usize = 32;

/// One unit of a realize's work.
pub(crate) enum Task {
    /// A node computed by its own op.
    Node(Tensor),
    /// Nodes computed together as one chain.
    Chain(Box<Group>),
    /// A product that computes a sibling's sums too (`siblings.rs`).
    Pair(Box<Pair>),
    /// A product written in the order of the permute that reads it (`permuted.rs`).
    Permuted(Box<PermutedStore>),
}

/// A chain of the schedule: its nodes, its inputs and the program that computes them.
pub(crate) struct Group {
    /// The chain's nodes in schedule order, step j of `chain` being node j.
    pub members: Vec<Tensor>,
    /// The chain's inputs, input k of `chain` being tensor k.
    pub inputs: Vec<Tensor>,
    pub chain: Chain,
    /// A node whose output is one of the inputs, computed by the same kernel: the chain is
    /// its epilogue.
    pub host: Option<Host>,
    /// A reduction that reads the chain's last value, computed by the same kernel: the chain is
    /// its prologue, and nothing of the chain is written out.
    pub tail: Option<Tensor>,
}

/// The node whose kernel hosts a chain as its epilogue, and where its output goes.
pub(crate) struct Host {
    pub node: Tensor,
    /// Views of the node's output (reshapes, from the node on) that lead to the chain's input:
    /// they share the node's storage.
    pub views: Vec<Tensor>,
    pub head: Head,
    /// A layer norm's weight gradient terms, which the node (its input gradient) computes too
    /// (`siblings.rs`).
    pub terms: Option<siblings::NormTerms>,
}

/// A chain being gathered, from its last node back.
struct Draft {
    device: Device,
    /// The dtype its steps compute in (see [`compute_dtype`]).
    dtype: DType,
    shape: Shape,
    /// Positions in the schedule of its nodes (last first), and whether each is written out.
    members: Vec<(usize, bool)>,
    /// How many of them are written out.
    outputs: usize,
    /// The tensors it reads that are not its nodes (so far), by id, with their shapes.
    external: Vec<(u64, Shape)>,
    scalars: usize,
    words: usize,
    /// The node whose kernel hosts the chain as its epilogue.
    host: Option<Hosting>,
}

/// The positions of a chain's host and of the views between it and the chain, and whether the
/// host's output is written out.
#[derive(Clone)]
struct Hosting {
    node: usize,
    views: SmallVec<[usize; 2]>,
    stored: bool,
}

impl Draft {
    /// Whether the chain fits one GPU kernel (on the CPU, any chain does).
    fn fits(&self) -> bool {
        if self.members.len() > MAX_STEPS {
            return false;
        }
        let strided = self.external.iter().filter(|(_, s)| *s != self.shape && s.numel() != 1).count();
        !self.device.is_gpu()
            || fits_gpu(
                FUSED_PREFIX_WORDS,
                strided,
                self.scalars,
                self.words,
                self.external.len() + self.outputs,
            )
    }
}

/// The schedule `order` as tasks: fused chains where `fuse` is on, else one task per node.
pub(crate) fn plan(order: Vec<Tensor>, fuse: bool) -> Vec<Task> {
    if !fuse || order.len() < 2 {
        return order.into_iter().map(Task::Node).collect();
    }
    let position: HashMap<u64, usize> = order.iter().enumerate().map(|(p, t)| (t.id(), p)).collect();
    // per node: the positions of its consumers in this realize, and how many input slots of
    // theirs refer to it
    let mut consumers: Vec<SmallVec<[usize; 2]>> = vec![SmallVec::new(); order.len()];
    let mut slots = vec![0usize; order.len()];
    for (p, t) in order.iter().enumerate() {
        for input in t.0.inputs().iter() {
            if let Some(&q) = position.get(&input.id()) {
                slots[q] += 1;
                if !consumers[q].contains(&p) {
                    consumers[q].push(p);
                }
            }
        }
    }
    // on a GPU, a layer norm's input gradient computes its weight's gradient terms too: the
    // product of those stays out of chains
    let norms = siblings::norm_plans(&order, &position, &consumers, &slots);
    let mut in_norm_pair = vec![false; order.len()];
    for plan in &norms {
        in_norm_pair[plan.terms] = true;
    }
    let mut group_of: Vec<Option<usize>> = vec![None; order.len()];
    let mut drafts: Vec<Draft> = Vec::new();
    for p in (0..order.len()).rev() {
        let t = &order[p];
        let Some(step) = fusable(t).filter(|_| !in_norm_pair[p]) else { continue };
        let inputs: Vec<(u64, Shape)> = t.0.inputs().iter().map(|i| (i.id(), i.shape().clone())).collect();
        // the chain of a consumer, if every other consumer is in it too or runs after it (and
        // then reads the value written out)
        let target = consumers[p].iter().filter_map(|&c| group_of[c]).find(|&g| {
            let d = &drafts[g];
            consumers[p].iter().all(|&c| group_of[c] == Some(g) || c > d.members[0].0)
                && d.device == t.device()
                && d.dtype == compute_dtype(t)
                && Shape::try_broadcast(t.shape(), &d.shape).as_ref() == Some(&d.shape)
                && (!step.positional() || *t.shape() == d.shape)
        });
        if let Some(g) = target {
            // written out when anything but this realize's consumers refers to it (beyond the
            // schedule's own handle), a consumer outside the chain reads it, or a consumer
            // keeps it for the backward pass
            let stored = Arc::strong_count(&t.0) > 1 + slots[p]
                || consumers[p].iter().any(|&c| group_of[c] != Some(g) || keeps(&order[c]));
            let draft = &drafts[g];
            // a view that is written out stays a view: sharing its input's storage costs nothing
            let view = t.0.op.exec() == Exec::View;
            if !stored || (*t.shape() == draft.shape && !view) {
                let mut joined = Draft {
                    device: draft.device,
                    dtype: draft.dtype,
                    shape: draft.shape.clone(),
                    members: draft.members.clone(),
                    outputs: draft.outputs + stored as usize,
                    external: draft.external.iter().filter(|(id, _)| *id != t.id()).cloned().collect(),
                    scalars: draft.scalars + step.scalars(),
                    words: draft.words + step.words(),
                    host: None,
                };
                joined.members.push((p, stored));
                for input in inputs.iter() {
                    if !joined.external.iter().any(|(id, _)| *id == input.0) {
                        joined.external.push(input.clone());
                    }
                }
                if joined.fits() {
                    drafts[g] = joined;
                    group_of[p] = Some(g);
                    continue;
                }
            }
        }
        if t.0.op.exec() == Exec::View {
            continue; // a view only ever joins a chain as a read; alone, it is free
        }
        let mut external: Vec<(u64, Shape)> = Vec::new();
        for input in inputs {
            if !external.iter().any(|(id, _)| *id == input.0) {
                external.push(input);
            }
        }
        drafts.push(Draft {
            device: t.device(),
            dtype: compute_dtype(t),
            shape: t.shape().clone(),
            members: vec![(p, true)],
            outputs: 1,
            external,
            scalars: step.scalars(),
            words: step.words(),
            host: None,
        });
        group_of[p] = Some(drafts.len() - 1);
    }
    // the tasks: a chain of two or more nodes at its last node's place, the others alone
    let mut chains: HashMap<usize, Group> = HashMap::new();
    // on a GPU, a chain that reads a matmul's product takes the matmul in (an epilogue), and
    // likewise for the other hosts
    let mut hosted = vec![false; order.len()];
    for (g, d) in drafts.iter_mut().enumerate() {
        d.host = host_of(d, g, &order, &position, &consumers, &slots, &group_of, &hosted);
        if let Some(h) = &d.host {
            for &q in h.views.iter().chain([&h.node]) {
                hosted[q] = true;
            }
        }
    }
    // on a GPU, a chain whose last value only a reduction reads runs in the reduction's loads
    // (a prologue), at the reduction's place
    let tails: Vec<Option<usize>> =
        drafts.iter().map(|d| tail_of(d, &order, &consumers, &slots, &hosted)).collect();
    // on the CPU, a chain whose every value is written out saves no pass over memory, and its
    // nodes alone may run in place: it stays unfused
    let fused = |g: usize| {
        let d = &drafts[g];
        (d.members.len() >= 2 || d.host.is_some() || tails[g].is_some())
            && (d.device.is_gpu() || d.outputs < d.members.len())
    };
    for (g, draft) in drafts.iter().enumerate().filter(|&(g, _)| fused(g)) {
        let place = tails[g].unwrap_or(draft.members[0].0);
        chains.insert(place, group(&order, draft, tails[g]));
        if let Some(r) = tails[g] {
            hosted[r] = true;
        }
    }
    // on a GPU, a layer norm's weight gradient terms written by its input gradient's kernel,
    // hosting a chain or not
    let norm_pairs =
        siblings::place_norm_terms(norms, &order, &position, &consumers, &mut chains, &mut hosted);
    let mut fused: Vec<bool> =
        (0..order.len()).map(|p| hosted[p] || group_of[p].is_some_and(fused)).collect();
    // on a GPU, a bias's gradient computed by its weight's gradient product, at the product's place
    let mut pairs = siblings::pairs(&order, &position, &consumers, &fused);
    pairs.extend(norm_pairs);
    for pair in pairs.values() {
        fused[position[&pair.sibling.id()]] = true;
        fused[position[&pair.main.id()]] = true;
    }
    // on a GPU, a permute of a product nothing else reads, written by the product's kernel
    let mut stores = permuted_stores(&order, &position, &consumers, &slots, &fused);
    for store in stores.values() {
        for node in store.views.iter().chain([&store.product, &store.permute]) {
            fused[position[&node.id()]] = true;
        }
    }
    order
        .into_iter()
        .enumerate()
        .filter_map(|(p, t)| match (chains.remove(&p), pairs.remove(&p), stores.remove(&p)) {
            (Some(group), _, _) => Some(Task::Chain(Box::new(group))),
            (None, Some(pair), _) => Some(Task::Pair(Box::new(pair))),
            (None, None, Some(store)) => Some(Task::Permuted(Box::new(store))),
            (None, None, None) if fused[p] => None,
            (None, None, None) => Some(Task::Node(t)),
        })
        .collect()
}

/// The node as a chain step, if it is an elementwise op on float data that has yet to run. A
/// view that keeps the order of its elements under the chain's broadcasting — of one element,
/// or of an unchanged shape — is a step too: it reads its operand.
///
/// On a GPU, casts between f32 and f16 are steps too (a chain computes in f32 there and reads
/// and writes f16 as it loads and stores); a CPU chain runs one float type throughout.
fn fusable(t: &Tensor) -> Option<Step> {
    let float = match t.device() {
        Device::Cpu => matches!(t.dtype(), DType::F32 | DType::F64),
        Device::Gpu(_) => matches!(t.dtype(), DType::F32 | DType::F16),
    };
    if !float || t.0.poison().is_some() {
        return None;
    }
    let inputs = t.0.inputs();
    let step = match t.0.op.exec() {
        Exec::View => {
            let input = inputs.first()?;
            (input.numel() == 1 || input.shape() == t.shape()).then_some(Step::Broadcast)?
        }
        _ => t.0.op.elementwise()?,
    };
    if let Step::Cast { .. } = step {
        let input = inputs.first()?.dtype();
        return (t.device().is_gpu() && matches!(input, DType::F32 | DType::F16)).then_some(step);
    }
    // every operand of an elementwise op has its dtype
    inputs.iter().all(|i| i.dtype() == t.dtype()).then_some(step)
}

/// The dtype a chain holding `t` computes in: f32 for f16 nodes (casts and views on a GPU).
pub(crate) fn compute_dtype(t: &Tensor) -> DType {
    if t.dtype() == DType::F16 { DType::F32 } else { t.dtype() }
}

/// Whether node `t` keeps its inputs once computed (a gradient will pass through it): the
/// realizer's rule (`realize.rs`).
pub(crate) fn keeps(t: &Tensor) -> bool {
    t.requires_grad() && t.0.inputs().iter().any(|i| i.requires_grad())
}

/// The node whose output chain `d` (number `g`) can take in as its epilogue's head, with the
/// views (reshapes) between the two: a GPU op whose kernel can store through the chain
/// (`epilogue.rs`), with an output of the chain's size, not yet taken by another chain, that
/// only the chain reads before it runs (directly or through the views), within the kernel's
/// parameter block and bindings. A view shares its input's storage, so the kernel's element i
/// is the view's element i.
#[allow(clippy::too_many_arguments)]
fn host_of(
    d: &Draft,
    g: usize,
    order: &[Tensor],
    position: &HashMap<u64, usize>,
    consumers: &[SmallVec<[usize; 2]>],
    slots: &[usize],
    group_of: &[Option<usize>],
    taken: &[bool],
) -> Option<Hosting> {
    if !d.device.is_gpu() || d.dtype != DType::F32 {
        return None;
    }
    let root = d.members[0].0;
    d.external.iter().find_map(|(id, shape)| {
        if *shape != d.shape {
            return None;
        }
        // from the chain's input back through views to the node that computes it
        let mut q = *position.get(id)?;
        let mut views: SmallVec<[usize; 2]> = SmallVec::new();
        while order[q].0.op.exec() == Exec::View {
            views.push(q);
            q = *position.get(&order[q].0.inputs().first()?.id())?;
        }
        let e = &order[q];
        let host = e.0.op.epilogue_host()?;
        let inputs = e.0.inputs();
        let shapes: SmallVec<[&Shape; 3]> = inputs.iter().map(|i| i.shape()).collect();
        if e.device() != d.device || !host.takes_epilogue(&shapes, e.shape(), e.dtype()) {
            return None;
        }
        let path: SmallVec<[usize; 3]> = views.iter().copied().chain([q]).collect();
        let inside = |c: usize| group_of[c] == Some(g) || views.contains(&c);
        let read_in_time =
            path.iter().all(|&x| !taken[x] && consumers[x].iter().all(|&c| inside(c) || c > root));
        if !read_in_time {
            return None;
        }
        let stored = path.iter().any(|&x| {
            Arc::strong_count(&order[x].0) > 1 + slots[x]
                || consumers[x].iter().any(|&c| !inside(c) || keeps(&order[c]))
        });
        let strided = d.external.iter().filter(|(_, s)| *s != d.shape && s.numel() != 1).count();
        // the host's own buffers, the chain's other inputs, the head if written, the outputs
        let bindings = host.own_bindings() + d.external.len() - 1 + stored as usize + d.outputs;
        fits_gpu(host.prefix_words(), strided, d.scalars, d.words, bindings).then_some(Hosting {
            node: q,
            views,
            stored,
        })
    })
}

/// The reduction whose loads chain `d` can run in (a prologue): a GPU reduction of f32, not
/// taken as another chain's host, that alone reads the chain's last value — the chain's only
/// value written out, which no one else refers to and the reduction does not keep — within the
/// kernel's parameter block and bindings.
fn tail_of(
    d: &Draft,
    order: &[Tensor],
    consumers: &[SmallVec<[usize; 2]>],
    slots: &[usize],
    taken: &[bool],
) -> Option<usize> {
    let root = d.members[0].0;
    if !d.device.is_gpu() || d.dtype != DType::F32 || d.host.is_some() || d.outputs != 1 {
        return None;
    }
    let [r] = consumers[root][..] else { return None };
    let (t, reduction) = (&order[root], &order[r]);
    let alone = slots[root] == 1 && Arc::strong_count(&t.0) == 2 && !keeps(reduction);
    let host = reduction.0.op.prologue_host()?;
    if !alone || taken[r] || reduction.device() != d.device || !host.takes_prologue(reduction.dtype()) {
        return None;
    }
    let strided = d.external.iter().filter(|(_, s)| *s != d.shape && s.numel() != 1).count();
    // the chain's inputs, then the reduction's output
    fits_gpu(host.prefix_words(), strided, d.scalars, d.words, d.external.len() + 1).then_some(r)
}

/// The group of draft `d`'s nodes, with the reduction at `tail` if the chain is its prologue
/// (then nothing of the chain is written out).
fn group(order: &[Tensor], d: &Draft, tail: Option<usize>) -> Group {
    let members: Vec<(usize, bool)> =
        d.members.iter().rev().map(|&(p, stored)| (p, stored && tail.is_none())).collect();
    let root = members.last().expect("a chain has nodes").0;
    let step_of: HashMap<u64, usize> =
        members.iter().enumerate().map(|(j, &(p, _))| (order[p].id(), j)).collect();
    let mut inputs: Vec<Tensor> = Vec::new();
    let mut steps = Vec::new();
    let mut outputs = Vec::new();
    for (j, &(p, stored)) in members.iter().enumerate() {
        let t = &order[p];
        let step = fusable(t).expect("members are fusable");
        let operands =
            t.0.inputs()
                .iter()
                .map(|i| match step_of.get(&i.id()) {
                    Some(&s) => Operand::Step(s),
                    None => match inputs.iter().position(|x| x.id() == i.id()) {
                        Some(k) => Operand::Input(k),
                        None => {
                            inputs.push(i.clone());
                            Operand::Input(inputs.len() - 1)
                        }
                    },
                })
                .collect();
        steps.push((step, operands));
        if stored {
            outputs.push(j);
        }
    }
    let output_dtypes = outputs.iter().map(|&j| order[members[j].0].dtype()).collect();
    let chain = Chain {
        steps,
        inputs: inputs.iter().map(|i| i.shape().clone()).collect(),
        shape: order[root].shape().clone(),
        outputs,
        input_dtypes: inputs.iter().map(|i| i.dtype()).collect(),
        output_dtypes,
    };
    let host = d.host.as_ref().map(|h| {
        let read = h.views.first().unwrap_or(&h.node);
        let input = inputs.iter().position(|i| i.id() == order[*read].id()).expect("the head is an input");
        Host {
            node: order[h.node].clone(),
            views: h.views.iter().rev().map(|&v| order[v].clone()).collect(),
            head: Head { input, stored: h.stored },
            terms: None,
        }
    });
    Group {
        members: members.iter().map(|&(p, _)| order[p].clone()).collect(),
        inputs,
        chain,
        host,
        tail: tail.map(|r| order[r].clone()),
    }
}
