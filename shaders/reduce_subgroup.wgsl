// @library
// reduce.wgsl's combine across a workgroup of 256 invocations with subgroup shuffles (adapters
// with the SUBGROUP feature): a butterfly within each subgroup, then the first subgroup combines
// the subgroups' results the same way (see rows_subgroup.wgsl; subgroups are runs of
// consecutive invocations). Every invocation must call it; invocation 0 gets the result.

// The combine of a subgroup's values, in every lane.
fn subgroup_combine(v: T, width: u32) -> T {
    var r = v;
    for (var mask = width / 2u; mask > 0u; mask = mask / 2u) {
        r = combine(r, subgroupShuffleXor(r, mask));
    }
    return r;
}

fn workgroup_combine(v: T, lid: u32) -> T {
    let width = subgroupAdd(1u);
    let r = subgroup_combine(v, width);
    if lid % width == 0u {
        partial[lid / width] = r;
    }
    workgroupBarrier();
    var total = r;
    if lid < width {
        // a lane with no partial (fewer subgroups than lanes) holds the identity
        var acc = bitcast<T>(p.init);
        for (var k = lid; k < 256u / width; k += width) {
            acc = combine(acc, partial[k]);
        }
        total = subgroup_combine(acc, width);
    }
    return total;
}
