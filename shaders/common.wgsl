// Prepended to every kiln shader (see src/backend/wgpu/pipeline.rs).
//
// Binding convention: @binding(0) is the op's parameter struct, then the buffers read, then the
// buffers written. Grids of more than 65,535 workgroups are folded onto two dimensions by the
// recorder; `flat_workgroup` unfolds them.

// The linear index of this workgroup in a (possibly folded) 1-D grid.
fn flat_workgroup(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.x + wg.y * groups.x;
}
