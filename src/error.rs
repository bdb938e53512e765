//! `kiln::Error`: everything that depends on the outside world — files, formats, devices, memory.
//!
//! Mistakes in tensor code (a shape mismatch, a bad axis) are programmer errors and panic with the
//! op, the shapes and the caller's line instead; see `shape.rs`.
//!
//! A program reports a `kiln::Error` to its user with [`exit_code`]: `error: <message>` and
//! exit status 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The error type of every fallible kiln call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not what the format requires.
    #[error("{path}: not a valid {format} file: {reason}")]
    Format {
        /// The file involved.
        path: PathBuf,
        /// The format that was expected (`"MNIST IDX"`, `"safetensors"`, `"CSV"`, ...).
        format: &'static str,
        /// What is wrong, in words a user can act on.
        reason: String,
    },
    /// No device matches what was asked for (`KILN_DEVICE`, `Device::Gpu(n)`).
    #[error("no such device: {0}")]
    NoDevice(String),
    /// The GPU ran out of memory.
    #[error("GPU out of memory ({0}); a smaller batch or model may fit")]
    OutOfMemory(String),
    /// The GPU device was lost (driver reset, hang, unplugged).
    #[error("GPU device lost ({0}); restart the program once the driver has recovered")]
    DeviceLost(String),
    /// A tensor does not fit the device's limits.
    #[error("tensor too large for {device}: {detail}")]
    TooLarge {
        /// The device that refused it.
        device: String,
        /// The size and the limit.
        detail: String,
    },
    /// The device cannot do what was asked (f16 kernels on an adapter without `shader-f16`).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Any other error reported by the GPU driver or wgpu.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// `KILN_CHECK=1` found a GPU result that disagrees with the CPU reference.
    #[error("{0}")]
    CheckFailed(String),
    /// A value given from outside (command line, environment, config) is not valid.
    #[error("{0}")]
    Invalid(String),
    /// An index or class label in a tensor's data is out of range for what it indexes. The same
    /// error on every backend; the node stays unrealized, and realizing it again fails again.
    #[error("{0}")]
    OutOfRange(OutOfRange),
}

/// What [`Error::OutOfRange`] reports: the op, the offending value, its bound and the line of
/// user code that created the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    /// The op with its attributes (`index_select(axis 0)`).
    pub op: String,
    /// What the value is (`"index"`, `"target"`).
    pub what: &'static str,
    /// The first offending value, in the order of the index tensor's elements.
    pub value: i64,
    /// Its flat position in the index tensor.
    pub position: usize,
    /// Valid values are `0..bound`.
    pub bound: usize,
    /// Where the node was created: "created at file:line" (for a node of a backward pass, the
    /// line that recorded the op it differentiates).
    pub site: String,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {} (element {}) is out of range: valid values are 0 to {}; the node was {}",
            self.op,
            self.what,
            self.value,
            self.position,
            self.bound as i64 - 1,
            self.site
        )
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// A format error on `path`.
    pub fn format(path: impl AsRef<Path>, format: &'static str, reason: impl Into<String>) -> Error {
        Error::Format { path: path.as_ref().to_path_buf(), format, reason: reason.into() }
    }
}

/// The exit status of a program whose work returned `result`: success, or — after printing
/// `error: <message>` (the error's `Display`) to stderr — failure (1). A `main` that returns a
/// `Result` itself would print the error's `Debug` form, which is written for programmers.
///
/// ```no_run
/// use std::process::ExitCode;
///
/// fn main() -> ExitCode {
///     kiln::error::exit_code(run())
/// }
///
/// fn run() -> kiln::Result<()> {
///     let device = kiln::Device::from_env()?;
///     println!("running on {device}");
///     Ok(())
/// }
/// ```
pub fn exit_code(result: Result<()>) -> ExitCode {
    report(result, &mut std::io::stderr())
}

/// As [`exit_code`], writing the message to `out`.
pub fn report(result: Result<()>, out: &mut dyn Write) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // a closed stderr cannot be reported to anyone; the exit status still says it
            let _ = writeln!(out, "error: {error}");
            ExitCode::FAILURE
        }
    }
}
