//! Adapters and contexts: which GPUs exist, and one open device per adapter in use.
//!
//! Adapters are ordered hardware first (discrete, integrated, virtual), software after (Mesa's
//! lavapipe, WARP), so `gpu:0` is a real GPU whenever there is one. A context records what the
//! adapter offers (limits, features) and turns device loss and driver errors into `kiln::Error`.

use super::bind_groups::BindGroupCache;
use super::pipeline::PipelineCache;
use super::pool::BufferPool;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// One open GPU: device, queue, what the adapter offers, and kiln's caches for it.
pub struct GpuContext {
    /// The index in kiln's adapter order (`gpu:N`).
    pub index: usize,
    /// The wgpu device.
    pub device: wgpu::Device,
    /// The wgpu queue.
    pub queue: wgpu::Queue,
    /// The adapter's name, driver and kind.
    pub info: wgpu::AdapterInfo,
    /// The limits requested (everything the adapter allows).
    pub limits: wgpu::Limits,
    /// The features enabled.
    pub features: wgpu::Features,
    /// Whether kernels use subgroup operations in their reductions now (see
    /// [`GpuContext::set_subgroups`]).
    subgroups: AtomicBool,
    /// Whether kernels on f16 tensors may run (see [`GpuContext::shader_f16`]).
    shader_f16: AtomicBool,
    pub(crate) pipelines: PipelineCache,
    pub(crate) bind_groups: BindGroupCache,
    pub(crate) pool: BufferPool,
    checked: AtomicBool,
    lost: Arc<Mutex<Option<String>>>,
    errors: Arc<Mutex<Vec<wgpu::Error>>>,
}

impl GpuContext {
    /// Whether run-time cross-checking is on for this GPU.
    pub fn checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }

    /// Turns run-time cross-checking on or off for this GPU.
    pub fn set_checked(&self, on: bool) {
        self.checked.store(on, Ordering::Relaxed)
    }

    /// Whether the row reductions (softmax, log-softmax, layer norm, cross-entropy, batch-norm
    /// statistics, sum/max/min) use subgroup operations on this GPU: on by default where the
    /// adapter has `SUBGROUP`, off with `KILN_SUBGROUPS=0`.
    pub fn subgroups(&self) -> bool {
        self.subgroups.load(Ordering::Relaxed)
    }

    /// Turns the subgroup reductions on (where the adapter has them) or off, for the kernels
    /// dispatched from now on; returns whether they are on. Both paths compute the same results
    /// within the ops' tolerances: this is for testing the fallback and for comparing speeds.
    pub fn set_subgroups(&self, on: bool) -> bool {
        let on = on && self.features.contains(wgpu::Features::SUBGROUP);
        self.subgroups.store(on, Ordering::Relaxed);
        on
    }

    /// Whether kernels that compute on f16 tensors can run here: the adapter has `shader-f16`
    /// (and it was not turned off by [`GpuContext::set_shader_f16`]).
    pub fn shader_f16(&self) -> bool {
        self.shader_f16.load(Ordering::Relaxed)
    }

    /// Allows f16 kernels (where the adapter has `shader-f16`) or refuses them as an adapter
    /// without it would, for the kernels compiled from now on; returns whether they are allowed.
    /// For testing the error that users of such adapters see.
    pub fn set_shader_f16(&self, on: bool) -> bool {
        let on = on && self.features.contains(wgpu::Features::SHADER_F16);
        self.shader_f16.store(on, Ordering::Relaxed);
        on
    }

    /// Whether this is a software adapter (lavapipe, WARP).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The error to report if the device was lost or the driver reported one since last asked.
    pub(crate) fn take_error(&self) -> Result<()> {
        if let Some(reason) = lock(&self.lost).clone() {
            return Err(Error::DeviceLost(format!("{} ({})", reason, self.info.name)));
        }
        let first = lock(&self.errors).drain(..).next();
        match first {
            None => Ok(()),
            Some(wgpu::Error::OutOfMemory { .. }) => {
                Err(Error::OutOfMemory(format!("on {}", self.info.name)))
            }
            Some(e) => Err(Error::Gpu(e.to_string())),
        }
    }

    /// Blocks until the GPU has finished all submitted work.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(format!("{e} ({})", self.info.name)))?;
        self.take_error()
    }

    /// A one-line description: name, kind, driver and backend.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {} {}, {:?})",
            self.info.name, self.info.device_type, self.info.driver, self.info.driver_info, self.info.backend
        )
    }
}

/// Every adapter wgpu can see, in kiln's order.
fn adapters() -> &'static [wgpu::Adapter] {
    static ADAPTERS: OnceLock<Vec<wgpu::Adapter>> = OnceLock::new();
    ADAPTERS.get_or_init(|| {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::PRIMARY,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let mut all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
        all.retain(|a| a.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS));
        all.sort_by_key(|a| match a.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        });
        all
    })
}

/// Descriptions of every adapter, in kiln's order (index = `gpu:N`).
pub fn adapter_infos() -> Vec<wgpu::AdapterInfo> {
    adapters().iter().map(|a| a.get_info()).collect()
}

/// How many hardware (non-software) adapters there are.
pub fn hardware_adapter_count() -> usize {
    adapters().iter().filter(|a| a.get_info().device_type != wgpu::DeviceType::Cpu).count()
}

/// The context of adapter `n`, opening its device on first use.
pub fn context(n: usize) -> Result<Arc<GpuContext>> {
    static CONTEXTS: OnceLock<Mutex<HashMap<usize, Arc<GpuContext>>>> = OnceLock::new();
    let mut contexts = lock(CONTEXTS.get_or_init(Default::default));
    if let Some(ctx) = contexts.get(&n) {
        return Ok(ctx.clone());
    }
    let ctx = Arc::new(open(n)?);
    contexts.insert(n, ctx.clone());
    Ok(ctx)
}

fn open(n: usize) -> Result<GpuContext> {
    let all = adapters();
    let adapter = all.get(n).ok_or_else(|| {
        let names: Vec<String> =
            all.iter().enumerate().map(|(i, a)| format!("gpu:{i} {}", a.get_info().name)).collect();
        Error::NoDevice(if names.is_empty() {
            format!("gpu:{n} was asked for, but no GPU adapter with compute shaders was found (is a Vulkan, Metal or DX12 driver installed?)")
        } else {
            format!("gpu:{n} was asked for; the adapters are: {}", names.join(", "))
        })
    })?;
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features() & (wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("kiln"),
        required_features: features,
        required_limits: limits.clone(),
        ..Default::default()
    }))
    .map_err(|e| Error::NoDevice(format!("gpu:{n} ({}) could not be opened: {e}", info.name)))?;

    let lost = Arc::new(Mutex::new(None));
    let lost_flag = lost.clone();
    device.set_device_lost_callback(move |reason, message| {
        *lock(&lost_flag) = Some(format!("{reason:?}: {message}"));
    });
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    device.on_uncaptured_error(Arc::new(move |e| lock(&sink).push(e)));

    let checked = std::env::var("KILN_CHECK").is_ok_and(|v| v != "0" && !v.is_empty());
    let subgroups = features.contains(wgpu::Features::SUBGROUP)
        && std::env::var("KILN_SUBGROUPS").map_or(true, |v| v.trim() != "0");
    Ok(GpuContext {
        index: n,
        pipelines: PipelineCache::default(),
        bind_groups: BindGroupCache::default(),
        pool: BufferPool::from_env()?,
        device,
        queue,
        info,
        limits,
        features,
        subgroups: AtomicBool::new(subgroups),
        shader_f16: AtomicBool::new(features.contains(wgpu::Features::SHADER_F16)),
        checked: AtomicBool::new(checked),
        lost,
        errors,
    })
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
