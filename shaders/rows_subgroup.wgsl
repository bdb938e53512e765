// @library
// The row reductions of common.wgsl with subgroup operations, for adapters with the SUBGROUP
// feature: each subgroup combines its lanes in registers (subgroupAdd, or a butterfly of
// shuffles for the merges), its first lane leaves the result in workgroup memory, and after one
// barrier every invocation combines the ROW_WG / width subgroup results in the same order — two
// barriers instead of log2(ROW_WG) + 2. The width comes from the hardware (8 on lavapipe, 32 on
// NVIDIA, 32 or 64 on AMD); subgroups are taken to be runs of consecutive local invocation
// indices, which is how Vulkan, Metal and D3D12 drivers form them for a 1-D workgroup.

// The lanes in this invocation's subgroup (all active: the callers are in uniform control flow).
fn subgroup_width() -> u32 {
    return subgroupAdd(1u);
}

// Σ over the workgroup of one value per invocation.
fn row_sum(v: f32, lid: u32) -> f32 {
    let width = subgroup_width();
    let s = subgroupAdd(v);
    if lid % width == 0u {
        row_scratch0[lid / width] = s;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var k = 0u; k < ROW_WG / width; k++) {
        total += row_scratch0[k];
    }
    workgroupBarrier();
    return total;
}

// Two sums at once.
fn row_sum2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    let width = subgroup_width();
    let s = subgroupAdd(v);
    if lid % width == 0u {
        row_scratch0[lid / width] = s.x;
        row_scratch1[lid / width] = s.y;
    }
    workgroupBarrier();
    var total = vec2<f32>(0.0);
    for (var k = 0u; k < ROW_WG / width; k++) {
        total += vec2<f32>(row_scratch0[k], row_scratch1[k]);
    }
    workgroupBarrier();
    return total;
}

// The row's (max, Σ exp(x − max)) from each invocation's pair.
fn row_max_exp(pair: vec2<f32>, lid: u32) -> vec2<f32> {
    let width = subgroup_width();
    var r = pair;
    for (var mask = width / 2u; mask > 0u; mask = mask / 2u) {
        r = merge_max_exp(r, subgroupShuffleXor(r, mask));
    }
    if lid % width == 0u {
        row_scratch0[lid / width] = r.x;
        row_scratch1[lid / width] = r.y;
    }
    workgroupBarrier();
    var total = vec2<f32>(0.0);
    for (var k = 0u; k < ROW_WG / width; k++) {
        total = merge_max_exp(total, vec2<f32>(row_scratch0[k], row_scratch1[k]));
    }
    workgroupBarrier();
    return total;
}

// The row's Welford accumulator (count, mean, M2) from each invocation's.
fn row_welford(acc: vec3<f32>, lid: u32) -> vec3<f32> {
    let width = subgroup_width();
    var r = acc;
    for (var mask = width / 2u; mask > 0u; mask = mask / 2u) {
        r = merge_welford(r, subgroupShuffleXor(r, mask));
    }
    if lid % width == 0u {
        row_scratch0[lid / width] = r.x;
        row_scratch1[lid / width] = r.y;
        row_scratch2[lid / width] = r.z;
    }
    workgroupBarrier();
    var total = vec3<f32>(0.0);
    for (var k = 0u; k < ROW_WG / width; k++) {
        total = merge_welford(total, vec3<f32>(row_scratch0[k], row_scratch1[k], row_scratch2[k]));
    }
    workgroupBarrier();
    return total;
}
