//! Every WGSL file in `shaders/`, and every specialization the ops compile from them, parses
//! and validates with naga — no GPU needed.

use kiln::testing::shader_sources;

#[test]
fn every_shader_and_specialization_validates() {
    let sources = shader_sources();
    assert!(sources.len() > 100, "only {} shader sources", sources.len());
    let mut failures = Vec::new();
    for (name, source) in &sources {
        let module = match naga::front::wgsl::parse_str(source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: {}", e.emit_to_string(source)));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        if let Err(e) = validator.validate(&module) {
            failures.push(format!("{name}: {}", e.emit_to_string(source)));
        }
    }
    assert!(failures.is_empty(), "{} invalid shaders:\n{}", failures.len(), failures.join("\n"));
}
