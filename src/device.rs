//! `Device`: where a tensor lives and its ops run — the CPU reference or a GPU adapter.
//!
//! GPU indices count hardware adapters first and software adapters (Mesa's lavapipe, WARP) after
//! them, so `gpu:0` is a real GPU whenever there is one. [`Device::best`] never picks a software
//! adapter; naming a GPU explicitly (`Device::gpu(n)`, `KILN_DEVICE=gpu`) is asking for one.

use crate::backend::wgpu as gpu;
use crate::backend::{MemoryStats, cpu};
use crate::{Error, Result};
use std::fmt;

/// Where a tensor lives.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Device {
    /// The CPU reference backend.
    #[default]
    Cpu,
    /// GPU adapter `n` (hardware adapters first, software adapters after).
    Gpu(usize),
}

impl Device {
    /// GPU adapter `n`, opened now so that a missing or failing adapter is reported here.
    pub fn gpu(n: usize) -> Result<Device> {
        gpu::context(n)?;
        Ok(Device::Gpu(n))
    }

    /// GPU adapter `n` with cross-checking on: every node computed there is also computed on the
    /// CPU reference from the same inputs, and the first disagreement beyond the op's tolerance
    /// stops the computation with [`Error::CheckFailed`]. Same as `KILN_CHECK=1`.
    pub fn gpu_checked(n: usize) -> Result<Device> {
        gpu::context(n)?.set_checked(true);
        Ok(Device::Gpu(n))
    }

    /// Whether this GPU's row reductions (softmax, log-softmax, layer norm, cross-entropy,
    /// batch-norm statistics, sum/max/min) use subgroup operations: by default wherever the
    /// adapter has them, unless `KILN_SUBGROUPS=0`. False on the CPU.
    pub fn subgroups(&self) -> Result<bool> {
        match self {
            Device::Cpu => Ok(false),
            Device::Gpu(n) => Ok(gpu::context(*n)?.subgroups()),
        }
    }

    /// Turns this GPU's subgroup reductions on (where the adapter has them) or off for the
    /// kernels dispatched from now on, and returns whether they are on. Both paths agree with the
    /// CPU reference within each op's tolerance; this exists to test the fallback and to
    /// compare speeds. No effect on the CPU.
    pub fn set_subgroups(&self, on: bool) -> Result<bool> {
        match self {
            Device::Cpu => Ok(false),
            Device::Gpu(n) => Ok(gpu::context(*n)?.set_subgroups(on)),
        }
    }

    /// Whether f16 tensors can be computed on here: always on the CPU; on a GPU, when its
    /// adapter has `shader-f16`.
    pub fn supports_f16(&self) -> Result<bool> {
        match self {
            Device::Cpu => Ok(true),
            Device::Gpu(n) => Ok(gpu::context(*n)?.shader_f16()),
        }
    }

    /// Allows this GPU's f16 kernels (where the adapter has `shader-f16`) or refuses them as an
    /// adapter without it does, for the kernels compiled from now on; returns whether they are
    /// allowed. For testing what users of such adapters see. No effect on the CPU.
    pub fn set_f16_kernels(&self, on: bool) -> Result<bool> {
        match self {
            Device::Cpu => Ok(true),
            Device::Gpu(n) => Ok(gpu::context(*n)?.set_shader_f16(on)),
        }
    }

    /// A hardware GPU if there is one, else the CPU. Never a software adapter.
    pub fn best() -> Device {
        if gpu::hardware_adapter_count() > 0 { Device::Gpu(0) } else { Device::Cpu }
    }

    /// The device named by `KILN_DEVICE` (`cpu`, `gpu`, `gpu:N`), or [`Device::best`] when unset.
    pub fn from_env() -> Result<Device> {
        match std::env::var("KILN_DEVICE") {
            Ok(name) if !name.trim().is_empty() => Device::parse(&name),
            _ => Ok(Device::best()),
        }
    }

    /// Parses `cpu`, `gpu` or `gpu:N` (also `best`), opening the GPU if one is named.
    pub fn parse(name: &str) -> Result<Device> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "cpu" => Ok(Device::Cpu),
            "best" => Ok(Device::best()),
            "gpu" => Device::gpu(0),
            _ => match name.strip_prefix("gpu:").map(str::parse::<usize>) {
                Some(Ok(n)) => Device::gpu(n),
                _ => {
                    Err(Error::Invalid(format!("unknown device {name:?}: expected cpu, gpu, gpu:N or best")))
                }
            },
        }
    }

    /// Waits until all work submitted to this device has finished (a no-op on the CPU, whose
    /// work is done when `realize` returns). For timing.
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(n) => gpu::context(*n)?.wait(),
        }
    }

    /// A one-line description: "cpu" or the adapter's name, kind and driver.
    pub fn describe(&self) -> Result<String> {
        match self {
            Device::Cpu => Ok(format!("cpu ({} threads)", rayon::current_num_threads())),
            Device::Gpu(n) => Ok(gpu::context(*n)?.describe()),
        }
    }

    /// Bytes held by this device's tensors now, and the most held at once since the start or
    /// the last [`Device::reset_peak_memory`] (PyTorch's `memory_allocated` and
    /// `max_memory_allocated`). Buffers idle in a GPU's pool do not count.
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let cpu = Device::Cpu;
    /// let before = cpu.memory()?.live_bytes;
    /// let x = Tensor::zeros([256], &cpu);
    /// x.realize()?;
    /// assert!(cpu.memory()?.live_bytes >= before + 1024);
    /// # Ok::<(), kiln::Error>(())
    /// ```
    pub fn memory(&self) -> Result<MemoryStats> {
        match self {
            Device::Cpu => Ok(cpu::MEMORY.stats()),
            Device::Gpu(n) => Ok(gpu::context(*n)?.pool.memory()),
        }
    }

    /// Starts the high-water mark of [`Device::memory`] again from what is live now (on the CPU,
    /// whose counter all threads share, this resets it for every thread).
    pub fn reset_peak_memory(&self) -> Result<()> {
        match self {
            Device::Cpu => cpu::MEMORY.reset_peak(),
            Device::Gpu(n) => gpu::context(*n)?.pool.reset_peak(),
        }
        Ok(())
    }

    /// Whether this is a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Gpu(n) => write!(f, "gpu:{n}"),
        }
    }
}
