//! The WGSL sources the shader validation test checks with naga, without a GPU.

/// The full WGSL source (prelude included) of every file in `shaders/` as written, keyed by file
/// name, and of every specialization the ops compile, keyed by kernel — each with the row
/// reductions of both preludes (subgroup operations and workgroup-memory trees): for validating
/// them all without a GPU.
pub fn shader_sources() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl") && !p.ends_with("common.wgsl"))
        .collect();
    files.sort();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("readable shader");
    // a library (`// @library`) is validated inside the shaders that `// @requires` it
    let mut out: Vec<(String, String)> = files
        .iter()
        .filter_map(|p| {
            let text = read(p);
            if text.starts_with("// @library") {
                return None;
            }
            let name = p.file_name().expect("a file").to_string_lossy().into_owned();
            let library = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("// @requires "))
                .map(|lib| read(&dir.join(lib.trim())))
                .unwrap_or_default();
            Some([false, true].map(|subgroups| {
                let prelude = crate::backend::wgpu::prelude(subgroups);
                (format!("{name} (subgroups {subgroups})"), format!("{prelude}\n{library}\n{text}"))
            }))
        })
        .flatten()
        .collect();
    for kernel in crate::ops::kernel_variants() {
        out.extend([false, true].map(|subgroups| (kernel.key(subgroups), kernel.source(subgroups))));
    }
    out
}
