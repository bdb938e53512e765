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
            skipped(&format!("{test}: no GPU adapter ({e})"));
            None
        }
    }
}

/// The shared datasets folder (`KILN_DATA`, set by `.ci/run`). A `KILN_DATA` that does not exist
/// fails loudly; an unset one prints a visible `SKIPPED` line (a developer machine without the
/// data) — except under CI (`CI` set), where it fails.
#[allow(dead_code)]
pub fn data_dir(test: &str) -> Option<std::path::PathBuf> {
    match std::env::var("KILN_DATA") {
        Ok(dir) => {
            let dir = std::path::PathBuf::from(dir);
            assert!(dir.is_dir(), "{test}: KILN_DATA={} is not a folder", dir.display());
            Some(dir)
        }
        Err(_) => {
            if std::env::var("CI").is_ok() {
                panic!("{test}: KILN_DATA is not set; CI must point it at the shared datasets");
            }
            skipped(&format!("{test}: KILN_DATA is not set"));
            None
        }
    }
}

/// Prints a `SKIPPED` line that `cargo test` shows even for a passing test: its output capture
/// takes only the `print!` family, not writes to the stderr handle.
fn skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}");
}
