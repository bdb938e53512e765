// Prepended to every kiln shader (see src/backend/wgpu/pipeline.rs).
//
// Binding convention: @binding(0) is the op's parameter struct, then the buffers read, then the
// buffers written. Grids of more than 65,535 workgroups are folded onto two dimensions by the
// recorder; `flat_workgroup` unfolds them.

// The linear index of this workgroup in a (possibly folded) 1-D grid.
fn flat_workgroup(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.x + wg.y * groups.x;
}

// Out-of-range indices (src/backend/wgpu/faults.rs): kernels that read indices skip a bad one and
// call report_fault with the fault word the recorder gave them and the bad element's position.
// Only kernels built `with_fault_reports` use it (and get this binding); a word keeps the smallest
// position as u32::MAX − position, so 0 means none.
@group(0) @binding(15) var<storage, read_write> faults: array<atomic<u32>>;

fn report_fault(word: u32, position: u32) {
    atomicMax(&faults[word], 0xffffffffu - position);
}
