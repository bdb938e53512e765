// @library
// reduce.wgsl's combine across a workgroup of 256 invocations with subgroup shuffles (adapters
// with the SUBGROUP feature): a butterfly within each subgroup, then invocation 0 combines the
// subgroups' results in order. Subgroups are runs of consecutive invocations (see
// rows_subgroup.wgsl). Every invocation must call it; invocation 0 gets the result.

fn workgroup_combine(v: T, lid: u32) -> T {
    let width = subgroupAdd(1u);
    var r = v;
    for (var mask = width / 2u; mask > 0u; mask = mask / 2u) {
        r = combine(r, subgroupShuffleXor(r, mask));
    }
    if lid % width == 0u {
        partial[lid / width] = r;
    }
    workgroupBarrier();
    var total = partial[0];
    if lid == 0u {
        for (var k = 1u; k < 256u / width; k++) {
            total = combine(total, partial[k]);
        }
    }
    return total;
}
