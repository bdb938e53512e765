//! The JSON file both vocabularies are saved in, tokens in id order:
//! `{"vocab": "word", "tokens": ["<pad>", "<unk>", "<bos>", "<eos>", "a", …]}` for a word
//! [`Vocab`](super::vocab::Vocab), `{"vocab": "char", "tokens": ["\n", " ", "a", …]}` for a
//! [`CharVocab`](super::text::CharVocab). Files are written atomically, as checkpoints are, so a
//! crash never leaves half a vocabulary beside a checkpoint.

use crate::train::checkpoint::write_atomically;
use crate::{Error, Result};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// The format named in errors.
const FORMAT: &str = "kiln vocabulary JSON";

/// Writes `tokens` (in id order) as a vocabulary of `kind` (`"word"` or `"char"`).
pub(super) fn save(path: &Path, kind: &str, tokens: &[String]) -> Result<()> {
    let text = serde_json::to_string_pretty(&json!({ "vocab": kind, "tokens": tokens }))
        .expect("strings always serialize");
    write_atomically(path, text.as_bytes())
}

/// Reads the tokens (in id order) of a vocabulary of `kind`; every token is distinct.
pub(super) fn load(path: &Path, kind: &str) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(path, format!("{e}")))?;
    let found = value.get("vocab").and_then(Value::as_str);
    if found != Some(kind) {
        let found = found.map_or("no \"vocab\" field".to_string(), |k| format!("a {k:?} vocabulary"));
        return Err(invalid(path, format!("expected a {kind:?} vocabulary, found {found}")));
    }
    let entries =
        value.get("tokens").and_then(Value::as_array).ok_or_else(|| invalid(path, "no \"tokens\" array"))?;
    let mut tokens = Vec::with_capacity(entries.len());
    let mut seen = HashMap::with_capacity(entries.len());
    for (id, entry) in entries.iter().enumerate() {
        let token =
            entry.as_str().ok_or_else(|| invalid(path, format!("token {id} is {entry}, not a string")))?;
        if let Some(first) = seen.insert(token, id) {
            return Err(invalid(path, format!("token {token:?} appears twice (ids {first} and {id})")));
        }
        tokens.push(token.to_string());
    }
    Ok(tokens)
}

/// An error naming the vocabulary file and what is wrong with it.
pub(super) fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::format(path, FORMAT, reason)
}
