//! `realize`: computes the unrealized ancestors of some tensors, in topological order, each on
//! its own device.
//!
//! On a GPU every dispatch of one realize goes into one command encoder, submitted once at the
//! end; the CPU only waits when it reads data back. After a node is computed it drops its inputs unless a gradient will need them, so an
//! intermediate's buffer goes back to the pool as soon as its last consumer has been recorded.

use crate::backend::Storage;
use crate::backend::wgpu::{self as gpu, Recorder};
use crate::graph::check;
use crate::ops::{CpuArg, Exec, GpuArg, Meta};
use crate::{Device, Result, Tensor};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Computes `roots` and everything they need that is not computed yet.
pub(crate) fn realize(roots: &[Tensor]) -> Result<()> {
    let order = schedule(roots);
    if order.is_empty() {
        return Ok(());
    }
    let mut exec = Executor::default();
    let mut result = Ok(());
    for node in order {
        if let Err(e) = exec.run(&node) {
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
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(Tensor, bool)> = roots.iter().rev().map(|t| (t.clone(), false)).collect();
    while let Some((t, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(t);
            continue;
        }
        if t.is_realized() || !seen.insert(t.id()) {
            continue;
        }
        let inputs = t.0.inputs().clone();
        stack.push((t, true));
        for input in inputs.into_iter().rev() {
            if !input.is_realized() && !seen.contains(&input.id()) {
                stack.push((input, false));
            }
        }
    }
    order
}

/// Runs scheduled nodes, holding one open recorder per GPU in use.
#[derive(Default)]
struct Executor {
    recorders: HashMap<usize, Recorder>,
}

impl Executor {
    fn run(&mut self, t: &Tensor) -> Result<()> {
        let node = &t.0;
        let inputs = node.inputs().clone();
        let storages: Vec<Storage> =
            inputs.iter().map(|i| i.storage().expect("inputs are realized first")).collect();
        let meta = Meta { shape: node.shape.clone(), dtype: node.dtype };
        let storage = match node.op.exec() {
            Exec::Leaf => unreachable!("leaves are realized at creation"),
            Exec::View => storages[0].clone(),
            Exec::Transfer => self.transfer(&storages[0], &inputs[0], node.device)?,
            Exec::Kernel => match node.device {
                Device::Cpu => {
                    let args: Vec<CpuArg> = storages
                        .iter()
                        .zip(&inputs)
                        .map(|(s, i)| CpuArg { data: s.cpu(), shape: i.shape() })
                        .collect();
                    Storage::Cpu(Arc::new(node.op.cpu(&args, &meta)))
                }
                Device::Gpu(n) => {
                    let rec = self.recorder(n)?;
                    let args: Vec<GpuArg> = storages
                        .iter()
                        .zip(&inputs)
                        .map(|(s, i)| GpuArg { buf: s.gpu(), shape: i.shape(), dtype: i.dtype() })
                        .collect();
                    let out = node.op.gpu(&args, &meta, rec)?;
                    let checked = rec.context().checked();
                    let out = Storage::Gpu(Arc::new(out));
                    if checked {
                        self.flush(n)?;
                        check::compare(t, &inputs, &storages, &out)?;
                    }
                    out
                }
            },
        };
        node.set_storage(storage);
        if !inputs.iter().any(|i| i.requires_grad()) {
            node.drop_inputs();
        }
        Ok(())
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
            Device::Gpu(n) => Storage::Gpu(Arc::new(self.recorder(n)?.upload(&host)?)),
        })
    }

    fn recorder(&mut self, n: usize) -> Result<&mut Recorder> {
        Ok(match self.recorders.entry(n) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Recorder::new(gpu::context(n)?)),
        })
    }

    /// Submits what GPU `n` has recorded so far and waits for it.
    fn flush(&mut self, n: usize) -> Result<()> {
        match self.recorders.remove(&n) {
            Some(rec) => rec.submit_and_wait(),
            None => Ok(()),
        }
    }

    fn finish(self) -> Result<()> {
        let mut result = Ok(());
        for (_, rec) in self.recorders {
            let r = rec.submit();
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}
