//! The wgpu backend: GPU contexts (`context.rs`), the buffer pool (`pool.rs`), compiled
//! pipelines (`pipeline.rs`) and the recorder that turns a realize into one command submission
//! (`recorder.rs`). The kernels are WGSL files in `shaders/`, launched by their ops in `src/ops/`.

pub mod ceiling;
mod context;
mod faults;
mod pipeline;
mod pool;
mod recorder;

pub use context::{GpuContext, adapter_infos, context, hardware_adapter_count};
pub(crate) use pipeline::PRELUDE;
pub(crate) use pipeline::{Kernel, Shader, shader};
pub use pool::{GpuBuffer, inject_out_of_memory_once, live_buffers};
pub(crate) use recorder::Grid;
pub use recorder::Recorder;
