//! Plain text: reading a UTF-8 file, reading lines of a plain or gzipped file (one sentence per
//! line, as the Multi30k translation corpus), and a character vocabulary for character-level
//! models.

use super::gzip::gunzip_if_gzipped;
use super::vocab_file;
use crate::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Reads a UTF-8 text file.
pub fn read_text(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    utf8(bytes, path, "UTF-8 text")
}

/// `bytes` as a string, or an error naming the file, the byte and the line of the first invalid
/// UTF-8 sequence.
fn utf8(bytes: Vec<u8>, path: &Path, format: &'static str) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::format(path, format, format!("invalid UTF-8 at byte {at} (line {line})"))
    })
}

/// Reads the lines of a UTF-8 text file, gzipped or not (decided by its first bytes, not its
/// name). Line ends (`\n` or `\r\n`) are removed; a final line end does not make an empty last
/// line, while empty lines elsewhere are kept, so line `i` of two parallel files stays aligned.
///
/// ```no_run
/// let german = kiln::data::text::read_lines("data/multi30k/train.de.gz")?;
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn read_lines(path: impl AsRef<Path>) -> Result<Vec<String>> {
    const FORMAT: &str = "text lines";
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = gunzip_if_gzipped(&raw)
        .map_err(|e| Error::format(path, FORMAT, format!("the gzip stream is corrupt or truncated: {e}")))?;
    let text = utf8(bytes.into_owned(), path, FORMAT)?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Reads two files of parallel sentences (line `i` of one translates line `i` of the other) as
/// (source, target) pairs, with [`read_lines`]. Files of different lengths are an error naming
/// both.
pub fn read_parallel(source: impl AsRef<Path>, target: impl AsRef<Path>) -> Result<Vec<(String, String)>> {
    let (source, target) = (source.as_ref(), target.as_ref());
    let (sources, targets) = (read_lines(source)?, read_lines(target)?);
    if sources.len() != targets.len() {
        return Err(Error::format(
            target,
            "parallel text",
            format!("{} lines, but its source {} has {}", targets.len(), source.display(), sources.len()),
        ));
    }
    Ok(sources.into_iter().zip(targets).collect())
}

/// Characters, each with an id: its position in the vocabulary.
///
/// ```
/// use kiln::data::text::CharVocab;
///
/// let vocab = CharVocab::of("hello");
/// assert_eq!(vocab.encode("hole")?, [1, 3, 2, 0]); // e h l o
/// let fixed = CharVocab::from_chars("abc .'".chars());
/// assert_eq!(fixed.encode("a b")?, [0, 3, 1]);
/// # Ok::<(), kiln::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
    ids: HashMap<char, i32>,
}

impl CharVocab {
    /// The vocabulary of the characters in `text`, sorted.
    pub fn of(text: &str) -> CharVocab {
        CharVocab::from_chars(text.chars().collect::<BTreeSet<_>>())
    }

    /// A vocabulary of the given characters, with ids in the order given (as a fixed alphabet
    /// such as the names tutorial's ASCII letters and `" .,;'"`). Panics on a repeated character.
    #[track_caller]
    pub fn from_chars(chars: impl IntoIterator<Item = char>) -> CharVocab {
        let chars: Vec<char> = chars.into_iter().collect();
        let mut ids = HashMap::with_capacity(chars.len());
        for (i, &c) in chars.iter().enumerate() {
            if let Some(first) = ids.insert(c, i as i32) {
                panic!("CharVocab::from_chars: {c:?} appears twice (positions {first} and {i})");
            }
        }
        CharVocab { chars, ids }
    }

    /// The number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The ids of `text`; an error names the first character not in the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<i32>> {
        text.chars()
            .map(|c| {
                self.ids
                    .get(&c)
                    .copied()
                    .ok_or_else(|| Error::Invalid(format!("character {c:?} is not in the vocabulary")))
            })
            .collect()
    }

    /// The text of `ids`; ids out of range become U+FFFD.
    pub fn decode(&self, ids: &[i32]) -> String {
        ids.iter()
            .map(|&i| usize::try_from(i).ok().and_then(|i| self.chars.get(i)).copied().unwrap_or('\u{fffd}'))
            .collect()
    }

    /// Writes the vocabulary as JSON (atomically), e.g. beside a char-GPT's checkpoints.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let tokens: Vec<String> = self.chars.iter().map(char::to_string).collect();
        vocab_file::save(path.as_ref(), "char", &tokens)
    }

    /// Reads a vocabulary written by [`CharVocab::save`]. A file that is not one (bad JSON, a word
    /// vocabulary, an entry that is not one character, a repeated character) is an
    /// [`Error::Format`] naming the file.
    pub fn load(path: impl AsRef<Path>) -> Result<CharVocab> {
        let path = path.as_ref();
        let tokens = vocab_file::load(path, "char")?;
        let chars = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| {
                let mut cs = t.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => Ok(c),
                    _ => Err(vocab_file::invalid(path, format!("entry {id} is {t:?}, not one character"))),
                }
            })
            .collect::<Result<Vec<char>>>()?;
        Ok(CharVocab::from_chars(chars))
    }
}
