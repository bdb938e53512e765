//! Checkpoints in the safetensors format, written atomically: the bytes go to a temporary file
//! in the same folder, are flushed to disk, and the file is renamed over the old checkpoint —
//! so a crash mid-write leaves the previous checkpoint intact.
//!
//! Tensor names follow PyTorch's state dict (`0.weight`), so a checkpoint of a kiln model loads
//! into the same PyTorch architecture with `safetensors.torch.load_file`, and back.

use crate::nn::pattern::glob;
use crate::nn::{self, Module};
use crate::{DType, Device, Error, Result, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

const FORMAT: &str = "safetensors";

/// Tensors and string metadata read from a checkpoint.
pub struct Checkpoint {
    /// Named tensors, on the CPU.
    pub tensors: Vec<(String, Tensor)>,
    /// The metadata map (`__metadata__`).
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

fn safetensors_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::F16 => Dtype::F16,
        DType::I32 => Dtype::I32,
        DType::U32 => Dtype::U32,
        DType::Bool => Dtype::BOOL,
    }
}

/// The host bytes of a tensor, little-endian.
fn bytes_of(t: &Tensor) -> Result<Vec<u8>> {
    let host = t.host()?;
    use crate::backend::cpu::CpuData;
    Ok(match host.data() {
        CpuData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        CpuData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        CpuData::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        CpuData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        CpuData::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        CpuData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
    })
}

/// Writes `tensors` and `metadata` to `path` atomically.
pub fn save(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    Tensor::realize_all(&tensors.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>())?;
    let data: Vec<(String, Vec<u8>, Vec<usize>, Dtype)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), bytes_of(t)?, t.dims().to_vec(), safetensors_dtype(t.dtype()))))
        .collect::<Result<_>>()?;
    let views = data.iter().map(|(n, bytes, shape, dtype)| {
        let view = TensorView::new(*dtype, shape.clone(), bytes).expect("sizes match by construction");
        (n.clone(), view)
    });
    let bytes = safetensors::serialize(views, Some(metadata.clone()))
        .map_err(|e| Error::format(path, FORMAT, format!("cannot serialize: {e}")))?;
    write_atomically(path, &bytes)
}

/// Test-only fault injection: the next [`write_atomically`] to this path fails after writing its
/// temporary file and before the rename — where a crash would hit.
static CRASH_BEFORE_RENAME: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Makes the next checkpoint write to `path` fail just before its rename (for tests of
/// atomicity; other paths, as other tests write them, are not affected).
#[doc(hidden)]
pub fn crash_next_write_before_rename(path: &Path) {
    *CRASH_BEFORE_RENAME.lock().unwrap_or_else(PoisonError::into_inner) = Some(path.to_path_buf());
}

fn crash_injected(path: &Path) -> bool {
    let mut armed = CRASH_BEFORE_RENAME.lock().unwrap_or_else(PoisonError::into_inner);
    let hit = armed.as_deref() == Some(path);
    if hit {
        *armed = None;
    }
    hit
}

/// Writes `bytes` to a temporary sibling of `path` (named per process and write, so concurrent
/// writers do not collide), syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name =
        path.file_name().ok_or_else(|| Error::Invalid(format!("{} is not a file path", path.display())))?;
    let unique = (std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed));
    let tmp = dir.join(format!(".{}.{}-{}.tmp", name.to_string_lossy(), unique.0, unique.1));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if crash_injected(path) {
            return Err(std::io::Error::other("injected crash before the rename"));
        }
        std::fs::rename(&tmp, path)?;
        // make the rename itself durable (best effort where directories cannot be opened)
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Reads a checkpoint; every tensor comes back on the CPU.
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: safetensors::SafeTensorError| Error::format(path, FORMAT, e.to_string());
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let st = SafeTensors::deserialize(&bytes).map_err(bad)?;
    let mut tensors = Vec::new();
    for (name, view) in st.iter() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let t = match view.dtype() {
            Dtype::F32 => Tensor::from_vec(le::<4, f32>(raw, f32::from_le_bytes), shape, &Device::Cpu),
            Dtype::F64 => Tensor::from_vec(le::<8, f64>(raw, f64::from_le_bytes), shape, &Device::Cpu),
            Dtype::F16 => {
                Tensor::from_vec(le::<2, half::f16>(raw, half::f16::from_le_bytes), shape, &Device::Cpu)
            }
            Dtype::I32 => Tensor::from_vec(le::<4, i32>(raw, i32::from_le_bytes), shape, &Device::Cpu),
            Dtype::U32 => Tensor::from_vec(le::<4, u32>(raw, u32::from_le_bytes), shape, &Device::Cpu),
            // PyTorch's integer buffers (batch-norm counts, index tables) are i64; kiln's are i32
            Dtype::I64 => {
                let wide = le::<8, i64>(raw, i64::from_le_bytes);
                let narrow: Option<Vec<i32>> = wide.iter().map(|&v| i32::try_from(v).ok()).collect();
                let narrow = narrow.ok_or_else(|| {
                    Error::format(
                        path,
                        FORMAT,
                        format!("tensor {name} holds i64 values beyond i32, which kiln uses"),
                    )
                })?;
                Tensor::from_vec(narrow, shape, &Device::Cpu)
            }
            Dtype::BOOL => {
                Tensor::from_vec(raw.iter().map(|&b| b != 0).collect::<Vec<bool>>(), shape, &Device::Cpu)
            }
            other => {
                return Err(Error::format(
                    path,
                    FORMAT,
                    format!("tensor {name} has dtype {other:?}, which kiln does not read"),
                ));
            }
        };
        tensors.push((name.to_string(), t));
    }
    Ok(Checkpoint { tensors, metadata: meta.metadata().clone().unwrap_or_default() })
}

fn le<const N: usize, T>(raw: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N).map(|c| f(c.try_into().expect("exact chunks"))).collect()
}

/// Saves a module's state dict (parameters and buffers).
pub fn save_module(path: impl AsRef<Path>, module: &dyn Module) -> Result<()> {
    save(path, &nn::state_dict(module), &HashMap::new())
}

/// Loads state-dict entries into a module, by name: every parameter and buffer must be present
/// with its shape. Values move to each tensor's device and dtype.
///
/// A tied tensor (one tensor under several names, as a GPT's embedding and output layer) needs
/// one of its names in `entries`; where several are there they must hold the same values, which
/// go into the one shared tensor. Everything is checked before anything is assigned, so a
/// checkpoint that does not fit leaves the module as it was.
pub fn load_into(module: &dyn Module, entries: &[(String, Tensor)], source: &Path) -> Result<()> {
    load_selected(module, entries, source, &|_| true)
}

/// As [`load_into`], for every parameter and buffer except those whose names match `except`
/// (`*` matches any run of characters), which keep their values: a pretrained backbone into a
/// model with a fresh head (`"fc.*"`), whether or not the checkpoint has a head and of what
/// size.
///
/// ```
/// use kiln::nn::{self, Linear, Sequential};
/// use kiln::train::checkpoint;
/// use kiln::Device;
/// let dev = Device::Cpu;
/// let pretrained = Sequential::new().add(Linear::new(4, 8, &dev)).add(Linear::new(8, 5, &dev));
/// let model = Sequential::new().add(Linear::new(4, 8, &dev)).add(Linear::new(8, 3, &dev));
/// let entries = nn::state_dict(&pretrained);
/// checkpoint::load_into_except(&model, &entries, "pretrained".as_ref(), "1.*").unwrap();
/// assert_eq!(nn::state_dict(&model)[0].1.to_vec::<f32>().unwrap(), entries[0].1.to_vec::<f32>().unwrap());
/// ```
pub fn load_into_except(
    module: &dyn Module,
    entries: &[(String, Tensor)],
    source: &Path,
    except: &str,
) -> Result<()> {
    load_selected(module, entries, source, &|name| !glob(except, name))
}

/// [`load_into`] for the state-dict entries whose (first) name `selected` accepts.
fn load_selected(
    module: &dyn Module,
    entries: &[(String, Tensor)],
    source: &Path,
    selected: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let bad = |reason: String| Error::format(source, FORMAT, reason);
    let find = |name: &str| entries.iter().find(|(n, _)| n == name).map(|(_, t)| t);
    let mut values = Vec::new();
    for (names, target) in
        tied_groups(nn::state_dict(module)).into_iter().filter(|(names, _)| selected(&names[0]))
    {
        let found: Vec<(&String, &Tensor)> = names.iter().filter_map(|n| find(n).map(|t| (n, t))).collect();
        let Some(&(first, saved)) = found.first() else {
            let others = names[1..].iter().map(|n| format!(" nor {n}")).collect::<String>();
            return Err(bad(format!("the checkpoint has no tensor {}{others}", names[0])));
        };
        for (name, t) in &found {
            if t.shape() != target.shape() {
                return Err(bad(format!("{name} has shape {}, the model {}", t.shape(), target.shape())));
            }
        }
        let bits =
            |t: &Tensor| -> Result<Vec<u64>> { Ok(t.to_f64_vec()?.into_iter().map(f64::to_bits).collect()) };
        for (name, t) in &found[1..] {
            if bits(t)? != bits(saved)? {
                return Err(bad(format!(
                    "{first} and {name} are one tied tensor in the model, but the checkpoint holds \
                     different values for them"
                )));
            }
        }
        let value = saved.cast(target.dtype()).to(&target.device());
        values.push((target, value));
    }
    Tensor::realize_all(&values.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>())?;
    for (target, value) in values {
        target.assign(&value)?;
    }
    Ok(())
}

/// State-dict entries grouped by identity: each tensor once, with every name it has.
fn tied_groups(entries: Vec<(String, Tensor)>) -> Vec<(Vec<String>, Tensor)> {
    let mut groups: Vec<(Vec<String>, Tensor)> = Vec::new();
    for (name, t) in entries {
        match groups.iter_mut().find(|(_, seen)| seen.same(&t)) {
            Some((names, _)) => names.push(name),
            None => groups.push((vec![name], t)),
        }
    }
    groups
}
