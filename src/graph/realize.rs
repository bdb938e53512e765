//! `realize`: computes the unrealized ancestors of some tensors, in topological order, each on
//! its own device.
//!
//! On a GPU every dispatch of one realize goes into one command encoder, submitted once at the
//! end; the CPU only waits when it reads data back. After a node is computed it drops its inputs
//! unless a gradient will pass through it, so an intermediate's buffer goes back to the pool as
//! soon as its last consumer has been recorded.

use crate::backend::Storage;
use crate::backend::cpu::{CpuStorage, PARALLEL_CHUNK};
use crate::backend::wgpu::{self as gpu, GpuBuffer, Recorder};
use crate::backend::{cpu_denormals, cpu_threads};
use crate::graph::fuse::{self, Group, Task};
use crate::graph::node::{Node, new_walk};
use crate::graph::permuted::PermutedStore;
use crate::graph::siblings::{self, Kind, Pair};
use crate::graph::{check, deferred};
use crate::ops::epilogue::Epilogue;
use crate::ops::{CpuArg, Exec, Fault, GpuArg, Meta};
use crate::{Device, Error, Result, Tensor};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Weak};

/// Computes `roots` and everything they need that is not computed yet, and this thread's
/// deferred assignments (`deferred.rs`).
pub(crate) fn realize(roots: &[Tensor]) -> Result<()> {
    let deferred = deferred::take();
    if deferred.is_empty() {
        return realize_roots(roots);
    }
    let all: Vec<Tensor> = roots.iter().cloned().chain(deferred.iter().map(|(_, v)| v.clone())).collect();
    let result = realize_roots(&all);
    deferred::apply(deferred);
    result
}

fn realize_roots(roots: &[Tensor]) -> Result<()> {
    let order = schedule(roots);
    if order.is_empty() {
        return Ok(());
    }
    let _flushed = cpu_denormals::for_cpu_work();
    let fuse = fuse::fusion_enabled();
    let splits = |t: &Tensor| t.shape().numel() >= PARALLEL_CHUNK;
    if order.iter().all(|t| t.device() == Device::Cpu) && order.iter().any(splits) {
        // on rayon's threads, the pool kept awake (see `cpu_threads`); what the realize reads
        // of this thread (the fusion setting) goes with it, and what it counts comes back. A
        // realize of small tensors only, which no kernel would split, stays on this thread.
        let (result, chains) = cpu_threads::run_awake(|| {
            let before = fuse::chains_run();
            let result = execute(order, fuse);
            (result, fuse::chains_run() - before)
        });
        fuse::count_chains(chains);
        return result;
    }
    execute(order, fuse)
}

/// Computes `order` (inputs before the nodes that read them), its elementwise chains fused if
/// `fuse`.
fn execute(order: Vec<Tensor>, fuse: bool) -> Result<()> {
    let mut exec = Executor::default();
    let mut result = Ok(());
    for task in fuse::plan(order, fuse) {
        let done = match task {
            Task::Node(node) => exec.run(&node),
            Task::Chain(group) => exec.run_chain(&group),
            Task::Pair(pair) => exec.run_pair(&pair),
            Task::Permuted(store) => exec.run_permuted(&store),
        };
        if let Err(e) = done {
            result = Err(e);
            break;
        }
    }
    // Submit what was recorded even after an error: those nodes already hold their buffers.
    let submitted = exec.finish();
    result.and(submitted)
}

/// The unrealized ancestors of `roots` (roots included), inputs before the nodes that use them.
/// Iterative, so graphs thousands of ops deep do not overflow the stack.
fn schedule(roots: &[Tensor]) -> Vec<Tensor> {
    let walk = new_walk();
    let mut order = Vec::new();
    let mut stack: Vec<(Tensor, bool)> = roots.iter().rev().map(|t| (t.clone(), false)).collect();
    while let Some((t, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(t);
            continue;
        }
        if t.is_realized() || !t.0.visit(walk) {
            continue;
        }
        let pending: SmallVec<[Tensor; 3]> =
            t.0.inputs().iter().rev().filter(|i| !i.is_realized() && !i.0.visited(walk)).cloned().collect();
        stack.push((t, true));
        stack.extend(pending.into_iter().map(|i| (i, false)));
    }
    order
}

/// The inputs of `t` and their values (realized first).
fn realized_inputs(t: &Tensor) -> (Vec<Tensor>, Vec<Storage>) {
    let inputs: Vec<Tensor> = t.0.inputs().to_vec();
    let storages = inputs.iter().map(|i| i.storage().expect("inputs are realized first")).collect();
    (inputs, storages)
}

/// GPU kernel arguments: each tensor's buffer, shape and dtype.
fn gpu_args<'a>(tensors: &'a [Tensor], storages: &'a [Storage]) -> Vec<GpuArg<'a>> {
    tensors
        .iter()
        .zip(storages)
        .map(|(t, s)| GpuArg { buf: s.gpu(), shape: t.shape(), dtype: t.dtype() })
        .collect()
}

/// A fault word of one recorder: (the recorder's number in this realize, the slot).
type SlotId = (usize, usize);

/// Fills in the fault slots that node `t`'s kernel registered on `rec` from slot `first` on —
/// the node, and the value of the input each checks (`inputs` and their `storages`) — and adds
/// them to `slots`, the fault words the node's value depends on.
fn claim_fault_slots(
    rec: &mut Recorder,
    (number, first): SlotId,
    t: &Tensor,
    inputs: &[Tensor],
    storages: &[Storage],
    slots: &mut SmallVec<[SlotId; 2]>,
) {
    for (k, slot) in rec.fault_slots_from(first).iter_mut().enumerate() {
        let input = &inputs[slot.arg];
        slot.input = Some((storages[slot.arg].clone(), input.dtype(), input.numel()));
        slot.node = Some(t.clone());
        slots.push((number, first + k));
    }
}

/// Runs scheduled nodes, holding one open recorder per GPU in use.
#[derive(Default)]
struct Executor {
    /// Per GPU: its open recorder and that recorder's number in this realize.
    recorders: HashMap<usize, (Recorder, usize)>,
    /// Recorders opened so far.
    opened: usize,
    /// GPU nodes computed from the output of an index-checking kernel of this realize, with the
    /// fault words they depend on: if a kernel reports a fault, they hold garbage and are
    /// poisoned (see `faults.rs`). Empty unless such kernels run. Weak, so that holding them
    /// here keeps no buffer alive past its last use (a node already dropped needs no poison).
    tainted: HashMap<u64, (Weak<Node>, SmallVec<[SlotId; 2]>)>,
}

impl Executor {
    /// The fault words that node values read from `inputs` depend on (see `tainted`).
    fn taint_of<'a>(&self, inputs: impl IntoIterator<Item = &'a Tensor>) -> SmallVec<[SlotId; 2]> {
        let mut slots: SmallVec<[SlotId; 2]> = SmallVec::new();
        if self.tainted.is_empty() {
            return slots;
        }
        for i in inputs {
            for id in self.tainted.get(&i.id()).map_or(&[][..], |(_, s)| &s[..]) {
                if !slots.contains(id) {
                    slots.push(*id);
                }
            }
        }
        slots
    }

    fn run(&mut self, t: &Tensor) -> Result<()> {
        let node = &t.0;
        if let Some(poison) = node.poison() {
            return Err(Error::OutOfRange(poison.clone()));
        }
        // A node no gradient will pass through forgets its inputs once computed: take them
        // instead of copying (and put them back if the computation fails). That includes the
        // backward pass's own nodes (built under `no_grad`), even where they read activations
        // that do require a gradient: so each gradient is freed at its last use. A variable
        // computed from tensors that need no gradient (`(randn * 0.1).requires_grad_()`) is a
        // leaf: it forgets them too.
        let mut held = node.inputs();
        let keep = node.requires_grad() && held.iter().any(|i| i.requires_grad());
        let inputs = if keep { held.clone() } else { std::mem::take(&mut *held) };
        drop(held);
        let mut slots = self.taint_of(&inputs);
        let result = self.compute(t, &inputs, &mut slots);
        match result {
            Ok(storage) => {
                node.set_storage(storage);
                if !slots.is_empty() {
                    self.tainted.insert(t.id(), (Arc::downgrade(&t.0), slots));
                }
                Ok(())
            }
            Err(e) => {
                if !keep {
                    *node.inputs() = inputs;
                }
                Err(e)
            }
        }
    }

    /// Computes the nodes of a fused chain in one kernel (or one CPU loop) — with the node whose
    /// output it reads, if the chain is that node's epilogue, or the reduction that reads its
    /// last value, if the chain is that reduction's prologue — sets the values that are
    /// written out, then lets each node forget its inputs as `run` would.
    fn run_chain(&mut self, g: &Group) -> Result<()> {
        let host = g.host.as_ref();
        // the host's inputs, and the chain's inputs but the host's output (computed here)
        let operands: Vec<Tensor> = host.map(|p| p.node.0.inputs().to_vec()).unwrap_or_default();
        let inputs: Vec<&Tensor> = g
            .inputs
            .iter()
            .enumerate()
            .filter(|(k, _)| host.is_none_or(|p| p.head.input != *k))
            .map(|(_, i)| i)
            .collect();
        let sources: Vec<Tensor> = operands.iter().chain(inputs.iter().copied()).cloned().collect();
        let storages: Vec<Storage> =
            sources.iter().map(|i| i.storage().expect("inputs are realized first")).collect();
        let mut slots = self.taint_of(&sources);
        let root = g.members.last().expect("a chain has nodes");
        // a layer norm's weight gradient terms, if its input gradient, the host, computes them
        let mut terms_out: Option<Storage> = None;
        let (host_out, outputs): (Option<Storage>, Vec<Storage>) = match root.device() {
            Device::Cpu => {
                let host: SmallVec<[&CpuStorage; 4]> = storages.iter().map(|s| s.cpu()).collect();
                let outs = g.chain.cpu(&host, root.dtype());
                (None, outs.into_iter().map(|s| Storage::Cpu(Arc::new(s))).collect())
            }
            Device::Gpu(n) if g.tail.is_some() => {
                // the chain runs in the reduction's loads and writes nothing itself
                let tail = g.tail.as_ref().expect("a tail");
                let (rec, _) = self.recorder(n)?;
                let buffers: Vec<&GpuBuffer> = storages.iter().map(|s| s.gpu()).collect();
                let reduction = tail.0.op.prologue_host().expect("a prologue's reduction has a host kernel");
                let out = Meta { shape: tail.shape(), dtype: tail.dtype() };
                let y = Storage::Gpu(Arc::new(reduction.launch_prologue(&g.chain, &buffers, &out, rec)?));
                if rec.context().checked() {
                    self.flush(n)?;
                    check::compare_tail(g, &sources, &storages, &y)?;
                }
                (Some(y), Vec::new())
            }
            Device::Gpu(n) => {
                let (rec, number) = self.recorder(n)?;
                let buffers: Vec<&GpuBuffer> = storages.iter().map(|s| s.gpu()).collect();
                let first_slot = rec.fault_slot_count();
                let mut written = match host {
                    Some(p) => {
                        let host = p.node.0.op.epilogue_host().expect("an epilogue's head has a host kernel");
                        let own = operands.len();
                        let args: Vec<GpuArg> = operands
                            .iter()
                            .zip(&buffers)
                            .map(|(t, buf)| GpuArg { buf, shape: t.shape(), dtype: t.dtype() })
                            .collect();
                        let epilogue = Epilogue { chain: &g.chain, head: p.head, inputs: &buffers[own..] };
                        let out = Meta { shape: p.node.shape(), dtype: p.node.dtype() };
                        match &p.terms {
                            Some(_) => {
                                let (written, terms) =
                                    siblings::launch_with_terms(&p.node, &args, Some(&epilogue), rec)?;
                                terms_out = Some(Storage::Gpu(Arc::new(terms)));
                                written
                            }
                            None => host.launch_epilogue(&args, &out, &epilogue, rec)?,
                        }
                    }
                    None => g.chain.gpu(&buffers, rec)?,
                };
                if let Some(p) = host {
                    // a host that checks indices (an embedding's lookup)
                    let own = operands.len();
                    claim_fault_slots(
                        rec,
                        (number, first_slot),
                        &p.node,
                        &operands,
                        &storages[..own],
                        &mut slots,
                    );
                }
                let checked = rec.context().checked();
                let host_out = match host {
                    Some(p) if p.head.stored => Some(Storage::Gpu(Arc::new(written.remove(0)))),
                    _ => None,
                };
                let outs: Vec<Storage> = written.into_iter().map(|b| Storage::Gpu(Arc::new(b))).collect();
                if checked {
                    self.flush(n)?;
                    if let (Some(p), Some(terms)) = (host, &terms_out) {
                        let terms_of = p.terms.as_ref().expect("terms computed");
                        check::compare_norm_terms(terms_of, &operands, &storages, terms)?;
                    }
                    check::compare_chain(g, &sources, &storages, host_out.as_ref(), &outs)?;
                }
                (host_out, outs)
            }
        };
        let mut set = |node: &Tensor, out: Storage| {
            node.0.set_storage(out);
            if !slots.is_empty() {
                self.tainted.insert(node.id(), (Arc::downgrade(&node.0), slots.clone()));
            }
        };
        if let (Some(tail), Some(out)) = (&g.tail, &host_out) {
            set(tail, out.clone());
        }
        if let (Some(p), Some(out)) = (host, host_out) {
            // the views between the host and the chain share its storage
            for view in &p.views {
                set(view, out.clone());
            }
            set(&p.node, out);
        }
        for (&step, out) in g.chain.outputs.iter().zip(outputs) {
            set(&g.members[step], out);
        }
        let terms = host.and_then(|p| p.terms.as_ref()).map(|t| &t.terms);
        if let (Some(node), Some(out)) = (terms, terms_out) {
            set(node, out);
        }
        let hosts = host.into_iter().flat_map(|p| p.views.iter().chain([&p.node]));
        for node in g.members.iter().chain(hosts).chain(&g.tail).chain(terms) {
            if !fuse::keeps(node) {
                node.0.drop_inputs();
            }
        }
        fuse::count_chains(1);
        Ok(())
    }

    /// Computes a node and its sibling in one kernel (`siblings.rs`), sets both, then lets each
    /// forget its inputs as `run` would.
    fn run_pair(&mut self, pair: &Pair) -> Result<()> {
        let (main, sibling) = (&pair.main, &pair.sibling);
        let Device::Gpu(n) = main.device() else { unreachable!("pairs run on a GPU") };
        let (operands, storages) = realized_inputs(main);
        let slots = self.taint_of(&operands);
        let (rec, _) = self.recorder(n)?;
        let (c, sums) = pair.launch(&gpu_args(&operands, &storages), rec)?;
        let (c, sums) = (Storage::Gpu(Arc::new(c)), Storage::Gpu(Arc::new(sums)));
        if rec.context().checked() {
            self.flush(n)?;
            match &pair.kind {
                Kind::Sums(_) => {
                    check::compare(main, &operands, &storages, &c)?;
                    let (summed, summed_storages) = realized_inputs(sibling);
                    check::compare(sibling, &summed, &summed_storages, &sums)?;
                }
                Kind::NormTerms(terms) => {
                    check::compare_norm_terms(terms, &operands, &storages, &sums)?;
                    check::compare(main, &operands, &storages, &c)?;
                }
            }
        }
        self.settle(main, c, &slots);
        self.settle(sibling, sums, &slots);
        Ok(())
    }

    /// Computes a permute of a product by the product's kernel (`permuted.rs`) and sets the
    /// permute's value; the product and the reshapes between stay uncomputed (nothing else
    /// reads them). Under `KILN_CHECK`, the product's values — read back from the permute's —
    /// are compared with its CPU reference.
    fn run_permuted(&mut self, store: &PermutedStore) -> Result<()> {
        let (product, permute) = (&store.product, &store.permute);
        let Device::Gpu(n) = product.device() else { unreachable!("permuted stores run on a GPU") };
        let (operands, storages) = realized_inputs(product);
        let slots = self.taint_of(&operands);
        let (rec, _) = self.recorder(n)?;
        let out = Storage::Gpu(Arc::new(store.launch(&gpu_args(&operands, &storages), rec)?));
        if rec.context().checked() {
            self.flush(n)?;
            let values = check::unpermuted(store, &out)?;
            check::compare(product, &operands, &storages, &values)?;
        }
        self.settle(permute, out, &slots);
        Ok(())
    }

    /// Gives `node` its value `out`, computed from values tainted by `slots`, then lets it
    /// forget its inputs as `run` would.
    fn settle(&mut self, node: &Tensor, out: Storage, slots: &SmallVec<[SlotId; 2]>) {
        node.0.set_storage(out);
        if !slots.is_empty() {
            self.tainted.insert(node.id(), (Arc::downgrade(&node.0), slots.clone()));
        }
        if !fuse::keeps(node) {
            node.0.drop_inputs();
        }
    }

    /// The value of node `t` from its realized inputs. A GPU kernel that checks indices adds
    /// its fault words to `slots`.
    fn compute(
        &mut self,
        t: &Tensor,
        inputs: &[Tensor],
        slots: &mut SmallVec<[SlotId; 2]>,
    ) -> Result<Storage> {
        let node = &t.0;
        if node.op.exec() == Exec::Kernel && node.device == Device::Cpu {
            let meta = Meta { shape: &node.shape, dtype: node.dtype };
            if let Some(done) = Self::in_place(t, inputs, &meta) {
                return Ok(done);
            }
        }
        let storages: SmallVec<[Storage; 3]> =
            inputs.iter().map(|i| i.storage().expect("inputs are realized first")).collect();
        let meta = Meta { shape: &node.shape, dtype: node.dtype };
        let storage = match node.op.exec() {
            Exec::Leaf => unreachable!("leaves are realized at creation"),
            Exec::View => storages[0].clone(),
            Exec::Transfer => self.transfer(&storages[0], &inputs[0], node.device)?,
            Exec::Kernel => match node.device {
                Device::Cpu => {
                    let args: SmallVec<[CpuArg; 3]> = storages
                        .iter()
                        .zip(inputs)
                        .map(|(s, i)| CpuArg { data: s.cpu(), shape: i.shape() })
                        .collect();
                    if let Some(fault) = node.op.validate(&args) {
                        return Err(fault.error(t));
                    }
                    Storage::Cpu(Arc::new(node.op.cpu(&args, &meta)))
                }
                Device::Gpu(n) => {
                    let (rec, number) = self.recorder(n)?;
                    let args: SmallVec<[GpuArg; 3]> = storages
                        .iter()
                        .zip(inputs)
                        .map(|(s, i)| GpuArg { buf: s.gpu(), shape: i.shape(), dtype: i.dtype() })
                        .collect();
                    let first_slot = rec.fault_slot_count();
                    let out = node.op.gpu(&args, &meta, rec)?;
                    claim_fault_slots(rec, (number, first_slot), t, inputs, &storages, slots);
                    let checked = rec.context().checked();
                    let out = Storage::Gpu(Arc::new(out));
                    if checked {
                        self.flush(n)?;
                        check::compare(t, inputs, &storages, &out)?;
                    }
                    out
                }
            },
        };
        Ok(storage)
    }

    /// Runs a CPU op in place on input 0's storage when nothing else refers to that input (it is
    /// an intermediate whose only consumer is this node) and the output matches it; `None` when
    /// that does not apply or the op declines.
    fn in_place(t: &Tensor, inputs: &[Tensor], meta: &Meta) -> Option<Storage> {
        let first = inputs.first()?;
        let unique =
            Arc::strong_count(&first.0) == 1 && first.dtype() == meta.dtype && first.shape() == meta.shape;
        if !unique {
            return None;
        }
        let Storage::Cpu(mut data) = first.0.take_storage()? else { return None };
        // a view (reshape, detach) may share the storage: then it is not ours to change
        let Some(inout) = Arc::get_mut(&mut data) else {
            first.0.set_storage(Storage::Cpu(data));
            return None;
        };
        let storages: SmallVec<[Storage; 2]> =
            inputs[1..].iter().map(|i| i.storage().expect("inputs are realized first")).collect();
        let others: SmallVec<[CpuArg; 2]> = storages
            .iter()
            .zip(&inputs[1..])
            .map(|(s, i)| CpuArg { data: s.cpu(), shape: i.shape() })
            .collect();
        if t.0.op.cpu_in_place(inout, &others, meta) {
            Some(Storage::Cpu(data))
        } else {
            first.0.set_storage(Storage::Cpu(data));
            None
        }
    }

    /// Moves a realized value between devices. Downloads submit pending GPU work first.
    fn transfer(&mut self, from: &Storage, input: &Tensor, to: Device) -> Result<Storage> {
        let host = match from {
            Storage::Cpu(s) => s.clone(),
            Storage::Gpu(b) => {
                if let Device::Gpu(n) = input.device() {
                    self.flush(n)?;
                }
                Arc::new(b.download(input.dtype(), input.numel())?)
            }
        };
        Ok(match to {
            Device::Cpu => Storage::Cpu(host),
            Device::Gpu(n) => Storage::Gpu(Arc::new(self.recorder(n)?.0.upload(&host)?)),
        })
    }

    /// GPU `n`'s open recorder and its number in this realize.
    fn recorder(&mut self, n: usize) -> Result<(&mut Recorder, usize)> {
        let (rec, number) = match self.recorders.entry(n) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.opened += 1;
                e.insert((Recorder::new(gpu::context(n)?), self.opened))
            }
        };
        Ok((rec, *number))
    }

    /// Submits what GPU `n` has recorded so far and waits for it.
    fn flush(&mut self, n: usize) -> Result<()> {
        match self.recorders.remove(&n) {
            Some((rec, number)) => {
                self.submit(rec, number)?;
                gpu::context(n)?.wait()
            }
            None => Ok(()),
        }
    }

    /// Submits one recorder's work; if its kernels found an out-of-range index, poisons every
    /// node computed from the faulty one and returns the error.
    fn submit(&mut self, rec: Recorder, number: usize) -> Result<()> {
        let Some((slot, position, info)) = rec.submit_and_find_fault()? else {
            return Ok(());
        };
        let node = info.node.expect("the realizer fills in every slot");
        let (storage, dtype, numel) = info.input.expect("the realizer fills in every slot");
        let values = storage.gpu().download(dtype, numel)?.to_f64_vec();
        let fault = Fault { what: info.what, value: values[position] as i64, position, bound: info.bound };
        let Error::OutOfRange(error) = fault.error(&node) else { unreachable!("Fault::error") };
        node.0.set_poison(error.clone());
        for (t, slots) in self.tainted.values() {
            if let Some(t) = t.upgrade().filter(|_| slots.contains(&(number, slot))) {
                t.set_poison(error.clone());
            }
        }
        Err(Error::OutOfRange(error))
    }

    fn finish(mut self) -> Result<()> {
        let mut result = Ok(());
        let recorders: Vec<_> = self.recorders.drain().collect();
        for (_, (rec, number)) in recorders {
            let r = self.submit(rec, number);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}
