//! Shaders, kernels and the pipeline cache.
//!
//! A [`Shader`] is one file of `shaders/`. A [`Kernel`] names an entry point of it, how many
//! buffers it reads and writes, and its specialization: text substitutions that turn a template
//! line (which holds a valid default, so the file parses on its own) into a specific op — the
//! unary kernel's expression, a matmul's tile size. Pipelines are compiled once per
//! (library, shader, entry point, specialization) and cached under that full key.
//!
//! Binding convention, in every shader: `@binding(0)` is the op's parameter struct (a uniform
//! with a dynamic offset), then the buffers read (`read`), then the buffers written
//! (`read_write`).
//!
//! `KILN_DUMP_WGSL=DIR` writes the final source of every kernel compiled into `DIR`, one file per
//! kernel named after its key (see [`Kernel::file_name`]).

use super::context::{GpuContext, lock};
use crate::{Error, Result};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Helpers shared by all kernels.
const COMMON: &str = include_str!("../../../shaders/common.wgsl");
/// The row reductions as trees in workgroup memory (every adapter).
const ROWS: &str = include_str!("../../../shaders/rows.wgsl");
/// The row reductions with subgroup operations (adapters with `SUBGROUP`).
const ROWS_SUBGROUP: &str = include_str!("../../../shaders/rows_subgroup.wgsl");

/// Prepended to every shader: the shared helpers, then the row reductions built from subgroup
/// operations when `subgroups` is set (the GPU has them and uses them) or from workgroup-memory
/// trees otherwise. The two define the same functions, so a kernel's text is the same for both.
pub(crate) fn prelude(subgroups: bool) -> String {
    format!("{COMMON}\n{}", if subgroups { ROWS_SUBGROUP } else { ROWS })
}

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
    /// Shared shaders placed before this one, in order (the GEMM core for matmul and conv).
    pub libraries: SmallVec<[&'a Shader; 2]>,
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
    /// Whether the kernel uses WGSL's `f16` (`enable f16;` heads its source).
    pub f16: bool,
}

impl<'a> Kernel<'a> {
    /// An unspecialized kernel.
    pub fn new(shader: &'a Shader, entry: &'static str, reads: u32, writes: u32) -> Kernel<'a> {
        Kernel {
            shader,
            libraries: SmallVec::new(),
            entry,
            reads,
            writes,
            spec: Vec::new(),
            faults: false,
            f16: false,
        }
    }

    /// `shader:entry` (`"conv:gemm"`), with ` + epilogue` or ` + prologue` where a fused
    /// elementwise chain runs in its stores or loads (`ops/epilogue.rs`), ` + sums` where it
    /// also sums an operand along K (`graph/siblings.rs`), ` + permuted store` where it writes
    /// in a permute's order (`graph/permuted.rs`), ` + terms` where a layer norm's input
    /// gradient writes its weight's gradient terms too (`graph/siblings.rs`).
    pub fn name(&self) -> String {
        let shader = self.shader.name.trim_end_matches(".wgsl");
        let spliced = |pattern: &str| self.spec.iter().any(|(p, _)| *p == pattern);
        let chain = match () {
            _ if self.spec.iter().any(|(_, code)| code.contains("scatter(i)")) => " + permuted store",
            _ if spliced("// @EPILOGUE") => " + epilogue",
            _ if spliced("// @PROLOGUE") => " + prologue",
            _ if spliced("const ONES: u32 = 0u; // @ONES") => " + sums",
            _ => "",
        };
        let terms = if spliced("// @TERMS_BINDING") { " + terms" } else { "" };
        format!("{shader}:{}{chain}{terms}", self.entry)
    }

    /// Enables WGSL's `f16` type in this kernel (it reads or writes f16 tensors): it then runs
    /// only on adapters with `shader-f16`.
    pub fn with_f16(mut self) -> Kernel<'a> {
        self.f16 = true;
        self
    }

    /// The kernel for tensors of `dtype`, for a shader whose element type is the line
    /// `alias E = f32; // @E`: f16 storage (read into f32, computed in f32, rounded once when
    /// stored) enables WGSL's `f16`; any other dtype keeps the shader as written.
    pub fn storing(self, dtype: crate::DType) -> Kernel<'a> {
        match dtype {
            crate::DType::F16 => self.with_f16().with("alias E = f32; // @E", "alias E = f16;"),
            _ => self,
        }
    }

    /// Binds the recorder's fault words, for a kernel that calls `report_fault` (see
    /// `faults.rs`).
    pub fn with_fault_reports(mut self) -> Kernel<'a> {
        self.faults = true;
        self
    }

    /// Places the shared shader `library` before this one (after the libraries placed so far).
    pub fn with_library(mut self, library: &'a Shader) -> Kernel<'a> {
        self.libraries.push(library);
        self
    }

    /// Adds a text substitution.
    pub fn with(mut self, pattern: &'static str, replacement: impl Into<String>) -> Kernel<'a> {
        self.spec.push((pattern, replacement.into()));
        self
    }

    /// The full WGSL source: prelude (with or without subgroup operations) plus the
    /// specialized shader.
    pub fn source(&self, subgroups: bool) -> String {
        let mut text = String::new();
        for lib in &self.libraries {
            text.push_str(lib.source);
            text.push('\n');
        }
        text.push_str(self.shader.source);
        for (pattern, replacement) in &self.spec {
            assert!(text.contains(pattern), "{}: no {pattern:?} to specialize", self.shader.name);
            text = text.replace(pattern, replacement);
        }
        let enable = if self.f16 { "enable f16;\n" } else { "" };
        format!("{enable}{}\n{text}", prelude(subgroups))
    }

    /// A hash of library, shader, entry point, specialization and prelude, computed without
    /// building strings (the pipeline cache takes it on every dispatch).
    fn hash(&self, subgroups: bool) -> u64 {
        if COLLIDING_HASHES.load(Ordering::Relaxed) {
            return 0;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for lib in &self.libraries {
            lib.name.hash(&mut h);
        }
        (self.shader.name, self.entry, &self.spec, self.faults, self.f16, subgroups).hash(&mut h);
        h.finish()
    }

    /// A readable name of shader, entry point, specialization and prelude (for error messages).
    pub fn key(&self, subgroups: bool) -> String {
        let spec: Vec<String> = self.spec.iter().map(|(p, r)| format!("{p}={r}")).collect();
        let lib: Vec<&str> = self.libraries.iter().map(|l| l.name).collect();
        let lib = lib.join("+");
        let faults = if self.faults { "+faults" } else { "" };
        let rows = if subgroups { "+subgroups" } else { "" };
        let f16 = if self.f16 { "+f16" } else { "" };
        format!("{lib}+{}:{}:{}{faults}{rows}{f16}", self.shader.name, self.entry, spec.join(";"))
    }

    /// A file name for the kernel's source (`KILN_DUMP_WGSL`): library, shader, entry point and
    /// each specialization's tag and value, e.g. `gemm+matmul.main.BM=128u.….<hash>.wgsl`. The
    /// hash of the full key keeps names apart that read alike once sanitized (`a + b`, `a * b`).
    pub fn file_name(&self, subgroups: bool) -> String {
        let stem = |s: &Shader| s.name.trim_end_matches(".wgsl");
        let mut name = String::new();
        for lib in &self.libraries {
            name.push_str(stem(lib));
            name.push('+');
        }
        name.push_str(stem(self.shader));
        name.push('.');
        name.push_str(self.entry);
        for (pattern, replacement) in &self.spec {
            // every template line ends in `// @TAG`; its value is what follows `return ` or ` = `
            let tag = pattern.rsplit_once("// @").map_or(*pattern, |(_, tag)| tag);
            let value = match replacement.strip_prefix("return ") {
                Some(expr) => expr,
                None => replacement.split_once(" = ").map_or(replacement.as_str(), |(_, v)| v),
            };
            name.push_str(&format!(".{tag}={}", value.trim_end_matches(';')));
        }
        let mut readable = String::with_capacity(name.len());
        for c in name.chars() {
            let c = if c.is_ascii_alphanumeric() || "._+=-".contains(c) { c } else { '_' };
            if !(c == '_' && readable.ends_with('_')) {
                readable.push(c);
            }
        }
        readable.truncate(160);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.key(subgroups).hash(&mut h);
        format!("{}.{:08x}.wgsl", readable.trim_end_matches('_'), h.finish() as u32)
    }
}

/// Test-only: when set, every kernel hashes alike, so the pipeline cache can only tell kernels
/// apart by their full keys.
static COLLIDING_HASHES: AtomicBool = AtomicBool::new(false);

/// Makes every kernel's pipeline-cache hash collide (`true`) or not (for testing).
#[doc(hidden)]
pub fn force_pipeline_hash_collisions(on: bool) {
    COLLIDING_HASHES.store(on, Ordering::Relaxed);
}

/// A kernel's full identity, owned: what a cached pipeline was compiled from.
#[derive(PartialEq, Eq)]
struct KernelKey {
    libraries: SmallVec<[&'static str; 2]>,
    shader: &'static str,
    entry: &'static str,
    spec: Vec<(&'static str, String)>,
    faults: bool,
    f16: bool,
    subgroups: bool,
}

impl KernelKey {
    fn of(kernel: &Kernel, subgroups: bool) -> KernelKey {
        KernelKey {
            libraries: kernel.libraries.iter().map(|l| l.name).collect(),
            shader: kernel.shader.name,
            entry: kernel.entry,
            spec: kernel.spec.clone(),
            faults: kernel.faults,
            f16: kernel.f16,
            subgroups,
        }
    }

    /// Whether this is `kernel`'s key (compared in place, without building one).
    fn matches(&self, kernel: &Kernel, subgroups: bool) -> bool {
        self.libraries.iter().eq(kernel.libraries.iter().map(|l| &l.name))
            && self.shader == kernel.shader.name
            && self.entry == kernel.entry
            && self.spec == kernel.spec
            && self.faults == kernel.faults
            && self.f16 == kernel.f16
            && self.subgroups == subgroups
    }
}

/// `KILN_DUMP_WGSL`: the folder that compiled kernels' sources are written to, if set.
fn dump_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("KILN_DUMP_WGSL").filter(|d| !d.is_empty()).map(PathBuf::from))
        .as_deref()
}

/// Writes `source`, the final text of `kernel`, into `dir`.
fn dump(dir: &Path, kernel: &Kernel, subgroups: bool, source: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(kernel.file_name(subgroups));
    std::fs::write(&path, source).map_err(|e| Error::io(&path, e))
}

/// A compiled pipeline with its bind-group layout.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// The compiled pipelines of the kernels that share a hash (almost always one).
type Bucket = Vec<(KernelKey, Arc<Pipeline>)>;

/// Compiled pipelines and bind-group layouts of one context.
#[derive(Default)]
pub(crate) struct PipelineCache {
    /// By hash; each bucket holds every kernel of that hash, told apart by full key.
    pipelines: Mutex<HashMap<u64, Bucket>>,
    layouts: Mutex<HashMap<(u32, u32, bool), wgpu::BindGroupLayout>>,
}

impl PipelineCache {
    /// The pipeline for `kernel` on `ctx` (with the row reductions the context uses now),
    /// compiling it on first use.
    pub fn get(&self, ctx: &GpuContext, kernel: &Kernel) -> Result<Arc<Pipeline>> {
        if kernel.f16 && !ctx.shader_f16() {
            return Err(Error::Unsupported(format!(
                "{} computes on f16 tensors, and the GPU {} has no `shader-f16`: keep this model in f32 \
                 (no `.cast(DType::F16)`, no autocast) on this GPU",
                kernel.shader.name, ctx.info.name
            )));
        }
        let subgroups = ctx.subgroups();
        let hash = kernel.hash(subgroups);
        if let Some(p) = self.find(hash, kernel, subgroups) {
            return Ok(p);
        }
        let key = kernel.key(subgroups);
        let source = kernel.source(subgroups);
        if let Some(dir) = dump_dir() {
            // before compiling: the source of a kernel that fails to compile is the one to read
            dump(dir, kernel, subgroups, &source)?;
        }
        let layout = self.layout(ctx, kernel.reads, kernel.writes, kernel.faults);
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.shader.name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
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
        let mut pipelines = lock(&self.pipelines);
        let bucket = pipelines.entry(hash).or_default();
        // another thread may have compiled the same kernel meanwhile: keep one
        match bucket.iter().find(|(k, _)| k.matches(kernel, subgroups)) {
            Some((_, existing)) => Ok(existing.clone()),
            None => {
                bucket.push((KernelKey::of(kernel, subgroups), p.clone()));
                Ok(p)
            }
        }
    }

    /// The cached pipeline of `kernel`, whose hash is `hash`.
    fn find(&self, hash: u64, kernel: &Kernel, subgroups: bool) -> Option<Arc<Pipeline>> {
        let pipelines = lock(&self.pipelines);
        let bucket = pipelines.get(&hash)?;
        bucket.iter().find(|(k, _)| k.matches(kernel, subgroups)).map(|(_, p)| p.clone())
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
