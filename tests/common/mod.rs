//! Helpers shared by the integration tests.

use kiln::Device;

pub mod three_ways;

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
#[allow(dead_code)]
pub fn skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}");
}

/// Runs test `test` again in a child process with `var=value` and asserts that it passed.
/// Returns false in the child itself (where `var` is set), which then runs the test's body.
///
/// A child whose test passed but whose process then died while exiting (Mesa's software Vulkan
/// has been seen to abort in its teardown at exit, after the harness printed its result) runs
/// once more, and that run must succeed: a failing test body never gets a second try.
#[allow(dead_code)]
pub fn ran_in_child(test: &str, var: &str, value: &str) -> bool {
    if std::env::var_os(var).is_some() {
        return false;
    }
    let run = || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads", "1"])
            .env(var, value)
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status, text)
    };
    let passed = |text: &str| text.contains("test result: ok. 1 passed");
    let (mut status, mut text) = run();
    if !status.success() && status.code().is_none() && passed(&text) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "WARNING the child run of {test} passed, then died at exit ({status}); once more"
        );
        (status, text) = run();
    }
    assert!(status.success() && passed(&text), "the child run with {var}={value} failed ({status}):\n{text}");
    true
}

/// Runs `f`, expecting a panic; returns its message and the file:line it was attributed to.
#[allow(dead_code)]
pub fn panic_of(f: impl FnOnce() + std::panic::UnwindSafe) -> (String, String) {
    let location = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = location.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(l) = info.location() {
            *seen.lock().unwrap() = format!("{}:{}", l.file(), l.line());
        }
    }));
    let result = std::panic::catch_unwind(f);
    std::panic::set_hook(previous);
    let payload = result.expect_err("expected a panic");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let at = location.lock().unwrap().clone();
    (msg, at)
}
