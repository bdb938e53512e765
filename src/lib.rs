//! # kiln
//!
//! A deep-learning framework whose GPU kernels are WGSL compute shaders run through wgpu, with a
//! CPU reference backend that every GPU op is cross-checked against.
//!
//! ## How a call reaches a kernel
//!
//! 1. A [`Tensor`] method (`a.matmul(&b)`, defined next to its op in `src/ops/matmul.rs`) checks
//!    shapes and records a node in the lazy graph (`src/graph/node.rs`). Nothing runs yet.
//! 2. Reading a value (`to_vec`, `item`, printing) or `realize` schedules the unrealized
//!    ancestors in topological order (`src/graph/realize.rs`).
//! 3. Each node runs on its device: the op's CPU reference (`Op::cpu`), or its GPU launch
//!    (`Op::gpu`), which records a dispatch of a WGSL kernel from `shaders/` into the realize's
//!    one command encoder (`src/backend/wgpu/recorder.rs`).
//! 4. `loss.backward()` (`src/autograd.rs`) builds the gradient graph from each op's gradient
//!    rule (`Op::backward`), itself made of tensor ops: lazy, on the same device, cross-checked.
//! 5. With `KILN_CHECK=1` every GPU node is recomputed by the CPU reference and compared
//!    (`src/graph/check.rs`).
//!
//! ```
//! use kiln::{Device, Tensor};
//! let device = Device::Cpu; // or Device::from_env()? for KILN_DEVICE=gpu
//! let w = Tensor::randn([3, 2], &device).requires_grad_();
//! let x = Tensor::ones([4, 3], &device);
//! let loss = x.matmul(&w).tanh().square().mean_all();
//! let grads = loss.backward();
//! assert_eq!(grads.get(&w).unwrap().dims(), &[3, 2]);
//! ```
//!
//! ## Environment variables
//!
//! - `KILN_DEVICE=cpu|gpu|gpu:N`: the device [`Device::from_env`] picks.
//! - `KILN_CHECK=1`: cross-check every GPU node against the CPU reference (see
//!   [`Device::gpu_checked`]).
//! - `KILN_GPU_POOL_BYTES=N`: bytes of idle buffers each GPU's buffer pool keeps for reuse
//!   (default [`backend::wgpu::DEFAULT_POOL_BYTES`], 1 GiB); past it the least recently used are
//!   freed.
//! - `KILN_DUMP_WGSL=DIR`: write the final source (prelude, library and specialized shader) of
//!   every GPU kernel compiled into `DIR`, one file per kernel named after its shader, entry
//!   point and specialization, so the WGSL that runs can be read.

pub mod amp;
pub mod autograd;
pub mod backend;
pub mod data;
pub mod device;
pub mod dtype;
pub mod error;
mod graph;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod shape;
pub mod tensor;
pub mod testing;
pub mod train;

pub use autograd::{Gradients, NoGradGuard, no_grad};
pub use backend::MemoryStats;
pub use device::Device;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use graph::fuse::{fusion_enabled, set_fusion};
/// The element type of [`DType::F16`] tensors (`Tensor::to_vec::<f16>()`), from the `half` crate.
pub use half::f16;
pub use rng::manual_seed;
pub use shape::Shape;
pub use tensor::Tensor;

/// Test-support hooks: counters and fault injection used by kiln's own tests.
#[doc(hidden)]
pub mod debug {
    pub use crate::backend::cpu::live_buffers as live_cpu_buffers;
    pub use crate::backend::wgpu::dispatches as gpu_dispatches;
    pub use crate::backend::wgpu::force_pipeline_hash_collisions;
    pub use crate::backend::wgpu::inject_out_of_memory_once;
    pub use crate::backend::wgpu::live_buffers as live_gpu_buffers;
    pub use crate::backend::wgpu::log_dispatches as log_gpu_dispatches;
    pub use crate::graph::check::{inject_fault_once, inject_nan_once};
    pub use crate::graph::fuse::chains_run as fused_chains_run;
    pub use crate::graph::node::live_nodes;
    pub use crate::optim::fused::inject_f32_constants_once as inject_f32_optimizer_constants_once;

    /// How many buffers the pool of GPU `n` has ever created (a leak makes this grow).
    pub fn gpu_buffers_created(n: usize) -> crate::Result<usize> {
        Ok(crate::backend::wgpu::context(n)?.pool.created())
    }

    /// How many idle buffers the pool of GPU `n` keeps, and their bytes (at most
    /// `KILN_GPU_POOL_BYTES`).
    pub fn gpu_pool_idle(n: usize) -> crate::Result<(usize, u64)> {
        Ok(crate::backend::wgpu::context(n)?.pool.idle())
    }
}
