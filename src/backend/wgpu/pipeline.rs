//! Shaders, kernels and the pipeline cache.
//!
//! A [`Shader`] is one file of `shaders/`. A [`Kernel`] names an entry point of it, how many
//! buffers it reads and writes, and its specialization: text substitutions that turn a template
//! line (which holds a valid default, so the file parses on its own) into a specific op — the
//! unary kernel's expression, a matmul's tile size. Pipelines are compiled once per
//! (shader, entry point, specialization) and cached.
//!
//! Binding convention, in every shader: `@binding(0)` is the op's parameter struct (a uniform
//! with a dynamic offset), then the buffers read (`read`), then the buffers written
//! (`read_write`).

use super::context::{GpuContext, lock};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Prepended to every shader: helpers shared by all kernels.
pub(crate) const PRELUDE: &str = include_str!("../../../shaders/common.wgsl");

/// One WGSL file of `shaders/`.
pub(crate) struct Shader {
    /// The file name (`"unary.wgsl"`).
    pub name: &'static str,
    /// Its text.
    pub source: &'static str,
}

/// A shader from `shaders/`, embedded at compile time.
macro_rules! shader {
    ($file:literal) => {
        $crate::backend::wgpu::Shader {
            name: $file,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file)),
        }
    };
}
pub(crate) use shader;

/// An entry point of a shader, specialized, with its binding counts.
pub(crate) struct Kernel<'a> {
    pub shader: &'a Shader,
    /// A shared shader placed before this one (the GEMM core for matmul and conv).
    pub library: Option<&'a Shader>,
    pub entry: &'static str,
    /// Buffers read (bindings 1..=reads).
    pub reads: u32,
    /// Buffers written (the bindings after the reads).
    pub writes: u32,
    /// Text substitutions: each pattern must occur in the shader.
    pub spec: Vec<(&'static str, String)>,
    /// Whether the kernel reports out-of-range indices (see `faults.rs`): the recorder's fault
    /// words are bound at `FAULT_BINDING`, where the prelude's `report_fault` writes.
    pub faults: bool,
}

impl<'a> Kernel<'a> {
    /// An unspecialized kernel.
    pub fn new(shader: &'a Shader, entry: &'static str, reads: u32, writes: u32) -> Kernel<'a> {
        Kernel { shader, library: None, entry, reads, writes, spec: Vec::new(), faults: false }
    }

    /// Binds the recorder's fault words, for a kernel that calls `report_fault` (see
    /// `faults.rs`).
    pub fn with_fault_reports(mut self) -> Kernel<'a> {
        self.faults = true;
        self
    }

    /// Places the shared shader `library` before this one.
    pub fn with_library(mut self, library: &'a Shader) -> Kernel<'a> {
        self.library = Some(library);
        self
    }

    /// Adds a text substitution.
    pub fn with(mut self, pattern: &'static str, replacement: impl Into<String>) -> Kernel<'a> {
        self.spec.push((pattern, replacement.into()));
        self
    }

    /// The full WGSL source: prelude plus the specialized shader.
    pub fn source(&self) -> String {
        let mut text = match self.library {
            Some(lib) => format!("{}\n{}", lib.source, self.shader.source),
            None => self.shader.source.to_string(),
        };
        for (pattern, replacement) in &self.spec {
            assert!(text.contains(pattern), "{}: no {pattern:?} to specialize", self.shader.name);
            text = text.replace(pattern, replacement);
        }
        format!("{PRELUDE}\n{text}")
    }

    /// A hash of shader, entry point and specialization: the pipeline cache's key, computed
    /// without building strings (it is taken on every dispatch).
    fn hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.library.map(|l| l.name).hash(&mut h);
        (self.shader.name, self.entry, &self.spec, self.faults).hash(&mut h);
        h.finish()
    }

    /// A readable name of shader, entry point and specialization (for error messages).
    pub fn key(&self) -> String {
        let spec: Vec<String> = self.spec.iter().map(|(p, r)| format!("{p}={r}")).collect();
        let lib = self.library.map_or("", |l| l.name);
        let faults = if self.faults { "+faults" } else { "" };
        format!("{lib}+{}:{}:{}{faults}", self.shader.name, self.entry, spec.join(";"))
    }
}

/// Bind groups already created, by layout and buffers bound: a training loop binds the same
/// pool buffers to the same kernels step after step, and creating a bind group is one of the
/// larger costs of recording a dispatch.
#[derive(Default)]
pub(crate) struct BindGroupCache {
    groups: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
}

/// A bind group's identity: its layout and each binding's buffer and size.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct BindKey {
    pub layout: wgpu::BindGroupLayout,
    pub buffers: Vec<(wgpu::Buffer, u64)>,
}

impl BindGroupCache {
    /// Most bind groups kept; past this the cache starts over (a workload that keeps binding
    /// new combinations gains nothing from keeping them).
    const CAPACITY: usize = 8192;

    /// The bind group for `key`, created by `create` on a miss.
    pub fn get(&self, key: BindKey, create: impl FnOnce() -> wgpu::BindGroup) -> wgpu::BindGroup {
        let mut groups = lock(&self.groups);
        if let Some(g) = groups.get(&key) {
            return g.clone();
        }
        if groups.len() >= Self::CAPACITY {
            groups.clear();
        }
        let g = create();
        groups.insert(key, g.clone());
        g
    }

    /// Forgets every bind group (and so releases the buffers they hold).
    pub fn clear(&self) {
        lock(&self.groups).clear();
    }
}

/// A compiled pipeline with its bind-group layout.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Compiled pipelines and bind-group layouts of one context.
#[derive(Default)]
pub(crate) struct PipelineCache {
    pipelines: Mutex<HashMap<u64, Arc<Pipeline>>>,
    layouts: Mutex<HashMap<(u32, u32, bool), wgpu::BindGroupLayout>>,
}

impl PipelineCache {
    /// The pipeline for `kernel`, compiling it on first use.
    pub fn get(&self, ctx: &GpuContext, kernel: &Kernel) -> Result<Arc<Pipeline>> {
        let hash = kernel.hash();
        if let Some(p) = lock(&self.pipelines).get(&hash) {
            return Ok(p.clone());
        }
        let key = kernel.key();
        let layout = self.layout(ctx, kernel.reads, kernel.writes, kernel.faults);
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.shader.name),
            source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("compiling {key}: {e}")));
        }
        let p = Arc::new(Pipeline { pipeline, layout });
        lock(&self.pipelines).insert(hash, p.clone());
        Ok(p)
    }

    /// The layout for a kernel reading `reads` buffers and writing `writes`, with or without
    /// fault words.
    fn layout(&self, ctx: &GpuContext, reads: u32, writes: u32, faults: bool) -> wgpu::BindGroupLayout {
        lock(&self.layouts)
            .entry((reads, writes, faults))
            .or_insert_with(|| {
                let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                };
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: None,
                    },
                    count: None,
                }];
                entries.extend((1..=reads).map(|b| storage(b, true)));
                entries.extend((reads + 1..=reads + writes).map(|b| storage(b, false)));
                if faults {
                    entries.push(storage(super::faults::FAULT_BINDING, false));
                }
                ctx.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("kiln"),
                    entries: &entries,
                })
            })
            .clone()
    }
}
