// Prepended to every kiln shader (see src/backend/wgpu/pipeline.rs).
//
// Binding convention: @binding(0) is the op's parameter struct, then the buffers read, then the
// buffers written. Grids with more than 65,535 workgroups along a dimension are folded onto two
// dimensions by the recorder (see `Grid` in src/backend/wgpu/recorder.rs): workgroups numbered
// x fastest, laid out row by row, with spare ones at the end. `flat_workgroup` and
// `grid_workgroup` unfold them, and give the same answer on a grid that was not folded.

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

// The (x, y, z) of this workgroup in a (possibly folded) 3-D grid of width `size_x` and height
// `size_y`. A spare workgroup of a folded grid gets a z past the grid's last.
fn grid_workgroup(wg: vec3<u32>, groups: vec3<u32>, size_x: u32, size_y: u32) -> vec3<u32> {
    let flat = wg.x + groups.x * (wg.y + groups.y * wg.z);
    return vec3<u32>(flat % size_x, (flat / size_x) % size_y, flat / (size_x * size_y));
}
