// @library
// The row reductions of common.wgsl with subgroup operations, for adapters with the SUBGROUP
// feature. Two levels, three barriers (the trees of rows.wgsl take log2(ROW_WG) + 2):
// 1. each subgroup combines its lanes in registers (subgroupAdd, or a butterfly of shuffles for
//    the merges) and its first lane leaves the result in workgroup memory;
// 2. the first subgroup combines those ROW_WG / width results the same way, and its first lane
//    leaves the total in the scratch's last slot, where every invocation reads it.
// The width comes from the hardware (8 on lavapipe, 32 on NVIDIA, 32 or 64 on AMD); subgroups
// are taken to be runs of consecutive local invocation indices, which is how Vulkan, Metal and
// D3D12 drivers form them for a 1-D workgroup. The partials take ROW_WG / width slots; the
// total goes in the last, which only a width of 1 shares with a partial (and then the one lane
// that reads the partials writes the total after).

const TOTAL: u32 = ROW_WG - 1u;

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
    if lid < width {
        var acc = 0.0;
        for (var k = lid; k < ROW_WG / width; k += width) {
            acc += row_scratch0[k];
        }
        let total = subgroupAdd(acc);
        if lid == 0u {
            row_scratch0[TOTAL] = total;
        }
    }
    workgroupBarrier();
    let total = row_scratch0[TOTAL];
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
    if lid < width {
        var acc = vec2<f32>(0.0);
        for (var k = lid; k < ROW_WG / width; k += width) {
            acc += vec2<f32>(row_scratch0[k], row_scratch1[k]);
        }
        let total = subgroupAdd(acc);
        if lid == 0u {
            row_scratch0[TOTAL] = total.x;
            row_scratch1[TOTAL] = total.y;
        }
    }
    workgroupBarrier();
    let total = vec2<f32>(row_scratch0[TOTAL], row_scratch1[TOTAL]);
    workgroupBarrier();
    return total;
}

// The (max, Σ exp(x − max)) of a subgroup's pairs, in every lane.
fn subgroup_max_exp(pair: vec2<f32>, width: u32) -> vec2<f32> {
    var r = pair;
    for (var mask = width / 2u; mask > 0u; mask = mask / 2u) {
        r = merge_max_exp(r, subgroupShuffleXor(r, mask));
    }
    return r;
}

// The row's (max, Σ exp(x − max)) from each invocation's pair.
fn row_max_exp(pair: vec2<f32>, lid: u32) -> vec2<f32> {
    let width = subgroup_width();
    let r = subgroup_max_exp(pair, width);
    if lid % width == 0u {
        row_scratch0[lid / width] = r.x;
        row_scratch1[lid / width] = r.y;
    }
    workgroupBarrier();
    if lid < width {
        var acc = vec2<f32>(0.0);
        for (var k = lid; k < ROW_WG / width; k += width) {
            acc = merge_max_exp(acc, vec2<f32>(row_scratch0[k], row_scratch1[k]));
        }
        let total = subgroup_max_exp(acc, width);
        if lid == 0u {
            row_scratch0[TOTAL] = total.x;
            row_scratch1[TOTAL] = total.y;
        }
    }
    workgroupBarrier();
    let total = vec2<f32>(row_scratch0[TOTAL], row_scratch1[TOTAL]);
    workgroupBarrier();
    return total;
}

// A subgroup's Welford accumulators merged, in every lane.
fn subgroup_welford(acc: vec3<f32>, width: u32) -> vec3<f32> {
    var r = acc;
    for (var mask = width / 2u; mask > 0u; mask = mask / 2u) {
        r = merge_welford(r, subgroupShuffleXor(r, mask));
    }
    return r;
}

// The row's Welford accumulator (count, mean, M2) from each invocation's.
fn row_welford(acc: vec3<f32>, lid: u32) -> vec3<f32> {
    let width = subgroup_width();
    let r = subgroup_welford(acc, width);
    if lid % width == 0u {
        row_scratch0[lid / width] = r.x;
        row_scratch1[lid / width] = r.y;
        row_scratch2[lid / width] = r.z;
    }
    workgroupBarrier();
    if lid < width {
        var part = vec3<f32>(0.0);
        for (var k = lid; k < ROW_WG / width; k += width) {
            part = merge_welford(part, vec3<f32>(row_scratch0[k], row_scratch1[k], row_scratch2[k]));
        }
        let total = subgroup_welford(part, width);
        if lid == 0u {
            row_scratch0[TOTAL] = total.x;
            row_scratch1[TOTAL] = total.y;
            row_scratch2[TOTAL] = total.z;
        }
    }
    workgroupBarrier();
    let total = vec3<f32>(row_scratch0[TOTAL], row_scratch1[TOTAL], row_scratch2[TOTAL]);
    workgroupBarrier();
    return total;
}
