//! MNIST: the IDX file format (gzipped or not) and the four files of the dataset.
//!
//! An IDX file is a big-endian header — two zero bytes, a type code (0x08 for unsigned bytes),
//! the number of dimensions — then one u32 per dimension and the data. Every malformed case
//! (wrong magic, truncated header or data, trailing bytes, a corrupt gzip stream) is an
//! [`Error::Format`] naming the file.

use super::gzip::gunzip_if_gzipped;
use super::{InMemory, Targets};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

const FORMAT: &str = "MNIST IDX";

/// The contents of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The bytes, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, decompressing it first if it is gzipped.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_idx(&raw, path)
}

/// Parses IDX bytes (gzipped or not); `path` names the source in errors.
pub fn parse_idx(raw: &[u8], path: &Path) -> Result<Idx> {
    let bytes = gunzip_if_gzipped(raw)
        .map_err(|e| Error::format(path, FORMAT, format!("the gzip stream is corrupt or truncated: {e}")))?;
    let bad = |reason: String| Error::format(path, FORMAT, reason);
    if bytes.len() < 4 {
        return Err(bad(format!("{} bytes is too short for the 4-byte header", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!("the magic number starts {:02x} {:02x}, not 00 00", bytes[0], bytes[1])));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!("element type 0x{:02x} is not unsigned bytes (0x08)", bytes[2])));
    }
    let rank = bytes[3] as usize;
    if rank == 0 {
        return Err(bad("the header declares no dimensions".into()));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad(format!("the header needs {header} bytes, the file has {}", bytes.len())));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let have = bytes.len() - header;
    if have != count {
        let what = if have < count { "truncated" } else { "longer than its header says" };
        return Err(bad(format!("{what}: dimensions {dims:?} need {count} data bytes, found {have}")));
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}

/// The MNIST training and test sets, pixels scaled to [0, 1] and then standardized with the
/// usual mean 0.1307 and standard deviation 0.3081; each image is (1, 28, 28).
pub struct Mnist {
    /// 60,000 training images.
    pub train: InMemory,
    /// 10,000 test images.
    pub test: InMemory,
}

impl Mnist {
    /// Loads the four files from `dir` (named as on LeCun's page, gzipped or not).
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        Ok(Mnist {
            train: load_split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?,
            test: load_split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?,
        })
    }
}

/// `dir/name.gz` or `dir/name`, whichever exists.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(format!("{name}.gz")), dir.join(name)] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(Error::io(
        dir.join(format!("{name}.gz")),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file (nor without .gz); point --data or KILN_DATA at the MNIST folder",
        ),
    ))
}

fn load_split(dir: &Path, images: &str, labels: &str) -> Result<InMemory> {
    let (ipath, lpath) = (find(dir, images)?, find(dir, labels)?);
    let (imgs, labs) = (read_idx(&ipath)?, read_idx(&lpath)?);
    if imgs.dims.len() != 3 {
        return Err(Error::format(
            &ipath,
            FORMAT,
            format!("images need 3 dimensions, found {:?}", imgs.dims),
        ));
    }
    if labs.dims.len() != 1 || labs.dims[0] != imgs.dims[0] {
        return Err(Error::format(
            &lpath,
            FORMAT,
            format!("{:?} labels for {} images", labs.dims, imgs.dims[0]),
        ));
    }
    if let Some(bad) = labs.data.iter().find(|&&l| l > 9) {
        return Err(Error::format(&lpath, FORMAT, format!("label {bad} is not a digit")));
    }
    let pixels = imgs.data.iter().map(|&p| (p as f32 / 255.0 - 0.1307) / 0.3081).collect();
    let labels = labs.data.iter().map(|&l| l as i32).collect();
    Ok(InMemory::new(pixels, &[1, imgs.dims[1], imgs.dims[2]], Targets::Classes(labels)))
}
