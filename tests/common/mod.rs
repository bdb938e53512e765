//! Helpers shared by the integration tests.

use kiln::Device;

/// The GPU the tests run on: the first adapter, hardware or software (lavapipe in CI).
///
/// Without any adapter this prints a visible `SKIPPED` line and returns `None` — unless
/// `KILN_REQUIRE_GPU=1` (set by CI), which turns "no adapter" into a failure.
#[allow(dead_code)]
pub fn gpu(test: &str) -> Option<Device> {
    match Device::gpu(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("KILN_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("{test}: KILN_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            println!("SKIPPED {test}: no GPU adapter ({e})");
            eprintln!("SKIPPED {test}: no GPU adapter ({e})");
            None
        }
    }
}
