//! The wgpu backend: GPU contexts (`context.rs`), the buffer pool (`pool.rs`, its shelves in
//! `idle.rs`), compiled pipelines (`pipeline.rs`), cached bind groups (`bind_groups.rs`) and the
//! recorder that turns a realize into one command submission (`recorder.rs`). The kernels are
//! WGSL files in `shaders/`, launched by their ops in `src/ops/`.

mod bind_groups;
pub mod ceiling;
mod context;
mod faults;
mod idle;
mod pipeline;
mod pool;
mod recorder;

pub use context::{GpuContext, adapter_infos, context, hardware_adapter_count};
pub use pipeline::force_pipeline_hash_collisions;
pub(crate) use pipeline::prelude;
pub(crate) use pipeline::{Kernel, Shader, shader};
pub use pool::{DEFAULT_POOL_BYTES, GpuBuffer, inject_out_of_memory_once, live_buffers};
pub(crate) use recorder::Grid;
pub use recorder::{Recorder, dispatches, log_dispatches};
