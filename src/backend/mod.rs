//! The two backends: the CPU reference (`cpu.rs`) and wgpu (`wgpu/`), and `Storage`, a realized
//! tensor's data on either.
//!
//! Kernels are not here: each op's CPU reference and GPU launch live with the op in `src/ops/`.

pub mod cpu;
pub(crate) mod cpu_denormals;
#[cfg(target_arch = "x86_64")]
pub(crate) mod cpu_gemm;
pub mod cpu_pool;
#[cfg(target_arch = "x86_64")]
pub(crate) mod cpu_skinny;
pub(crate) mod cpu_threads;
pub(crate) mod cpu_tiles;
pub(crate) mod cpu_vector;
pub(crate) mod memory;
pub mod wgpu;

pub use memory::MemoryStats;
use std::sync::Arc;

/// A realized tensor's data. Cloning shares it (reshape and detach are free).
#[derive(Clone)]
pub(crate) enum Storage {
    Cpu(Arc<cpu::CpuStorage>),
    Gpu(Arc<wgpu::GpuBuffer>),
}

impl Storage {
    pub fn cpu(&self) -> &cpu::CpuStorage {
        match self {
            Storage::Cpu(s) => s,
            Storage::Gpu(_) => panic!("expected CPU storage, found GPU storage"),
        }
    }

    pub fn gpu(&self) -> &wgpu::GpuBuffer {
        match self {
            Storage::Gpu(b) => b,
            Storage::Cpu(_) => panic!("expected GPU storage, found CPU storage"),
        }
    }
}
