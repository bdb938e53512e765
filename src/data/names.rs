//! The names data of PyTorch's "classifying names with a character-level RNN" tutorial: a folder
//! with one UTF-8 file per language (`Arabic.txt`, `Chinese.txt`, …), one surname per line.
//!
//! Names are kept as written (`Bélanger`, `Émile`); a model that wants ASCII, as the tutorial
//! does, builds its [`CharVocab`](super::text::CharVocab) accordingly.

use super::text::read_lines;
use crate::{Error, Result};
use std::path::Path;

/// Names and the language of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The languages (the file names without `.txt`), sorted; a language's class index is its
    /// position here.
    pub languages: Vec<String>,
    /// (name, language index) pairs, by language and then in file order; duplicates are kept, as
    /// in the tutorial.
    pub samples: Vec<(String, i32)>,
}

impl Names {
    /// Reads every `*.txt` file of `dir`. Blank lines are skipped and surrounding whitespace
    /// trimmed. A folder without `.txt` files, an unreadable or non-UTF-8 file is an error naming
    /// it.
    ///
    /// ```no_run
    /// let names = kiln::data::names::Names::load("data/names")?;
    /// let (name, language) = &names.samples[0];
    /// println!("{name} is {}", names.languages[*language as usize]);
    /// # Ok::<(), kiln::Error>(())
    /// ```
    pub fn load(dir: impl AsRef<Path>) -> Result<Names> {
        let dir = dir.as_ref();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.extension().is_some_and(|e| e == "txt") && path.is_file() {
                let language = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                files.push((language, path));
            }
        }
        if files.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no <language>.txt files; point --data or KILN_DATA at the names folder",
                dir.display()
            )));
        }
        files.sort();
        let mut samples = Vec::new();
        for (class, (_, path)) in files.iter().enumerate() {
            for line in read_lines(path)? {
                let name = line.trim();
                if !name.is_empty() {
                    samples.push((name.to_string(), class as i32));
                }
            }
        }
        Ok(Names { languages: files.into_iter().map(|(l, _)| l).collect(), samples })
    }
}
