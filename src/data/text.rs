//! Plain text: reading a UTF-8 file and a character vocabulary for character-level models.

use crate::{Error, Result};
use std::collections::BTreeSet;
use std::path::Path;

/// Reads a UTF-8 text file.
pub fn read_text(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::format(path, "UTF-8 text", format!("invalid UTF-8 at byte {at} (line {line})"))
    })
}

/// The characters of a text, sorted, each with an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
}

impl CharVocab {
    /// The vocabulary of the characters in `text`.
    pub fn of(text: &str) -> CharVocab {
        CharVocab { chars: text.chars().collect::<BTreeSet<_>>().into_iter().collect() }
    }

    /// The number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The ids of `text`; an error names the first character not in the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<i32>> {
        text.chars()
            .map(|c| {
                self.chars
                    .binary_search(&c)
                    .map(|i| i as i32)
                    .map_err(|_| Error::Invalid(format!("character {c:?} is not in the vocabulary")))
            })
            .collect()
    }

    /// The text of `ids`; ids out of range become U+FFFD.
    pub fn decode(&self, ids: &[i32]) -> String {
        ids.iter()
            .map(|&i| usize::try_from(i).ok().and_then(|i| self.chars.get(i)).copied().unwrap_or('\u{fffd}'))
            .collect()
    }
}
