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

/// Held by the tests that compute on the GPU, so that they run one at a time. kiln's GPU buffer
/// pool takes a buffer back as soon as its last use is recorded, which is safe within one
/// thread; but another thread's realize can take that buffer, compute into it and keep its
/// result there, which this thread's later submission of its recorded work then overwrites
/// (tests/transformer.rs failed about one run in three without it; with `KILN_GPU_POOL_BYTES=0`
/// it passes).
#[allow(dead_code)]
pub fn gpu_turn() -> std::sync::MutexGuard<'static, ()> {
    static ONE_GPU_TEST_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_GPU_TEST_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
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

/// The seed of a randomized test run: `KILN_TEST_SEED` when it is set, otherwise one drawn from
/// the clock. Displayed, it names itself and the command that reruns the test with it.
#[allow(dead_code)]
pub struct Seed {
    /// The seed.
    pub value: u64,
    /// The command that reruns the test with this seed.
    pub rerun: String,
}

#[allow(dead_code)]
impl Seed {
    /// The seed of test `test` in the test target `target` (`tests/<target>.rs`), from the
    /// environment.
    pub fn from_env(target: &str, test: &str) -> Seed {
        Seed::from_var(std::env::var("KILN_TEST_SEED").ok().as_deref(), target, test)
    }

    /// The seed given by `var` (the value of `KILN_TEST_SEED`, if set), or a fresh one.
    ///
    /// Panics when `var` is not an unsigned integer: a typo must not silently run another seed.
    pub fn from_var(var: Option<&str>, target: &str, test: &str) -> Seed {
        let value = match var {
            Some(v) => {
                v.trim().parse().unwrap_or_else(|_| panic!("KILN_TEST_SEED={v:?} is not an unsigned integer"))
            }
            None => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.map(|d| d.as_nanos() as u64).unwrap_or(1)
            }
        };
        Seed { value, rerun: format!("KILN_TEST_SEED={value} cargo test --test {target} -- {test} --exact") }
    }
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seed {} (rerun with: {})", self.value, self.rerun)
    }
}

/// Prints a `SKIPPED` line that `cargo test` shows even for a passing test: its output capture
/// takes only the `print!` family, not writes to the stderr handle.
fn skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}");
}
