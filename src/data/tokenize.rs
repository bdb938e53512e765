//! A simple word tokenizer for the translation and text-classification examples.
//!
//! The rules, in order:
//! - the text is lowercased (Unicode lowercasing, so `Ä` becomes `ä`);
//! - words are runs of word characters: Unicode letters and digits (`char::is_alphanumeric`)
//!   and the combining diacritical marks U+0300–U+036F, so a decomposed `é` stays one word;
//! - an apostrophe (`'` or `’`) between two word characters belongs to the word, so `don't` and
//!   `o'brien` are one token each (a typographic `’` becomes `'`, so both spellings give the same
//!   token); anywhere else it is punctuation;
//! - every other character that is not whitespace is a token of its own (`...` is three `.`);
//! - whitespace separates tokens and is dropped.
//!
//! ```
//! use kiln::data::tokenize::tokenize;
//!
//! assert_eq!(tokenize("Ein Mann fährt Fahrrad."), ["ein", "mann", "fährt", "fahrrad", "."]);
//! assert_eq!(tokenize("Don’t stop, 'Rock'!"), ["don't", "stop", ",", "'", "rock", "'", "!"]);
//! ```

/// The tokens of `text` (see the module doc for the rules).
pub fn tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let mut tokens = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if is_word_char(c) {
            word.push(c);
        } else if is_apostrophe(c) && !word.is_empty() && chars.get(i + 1).is_some_and(|&n| is_word_char(n)) {
            word.push('\'');
        } else {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

/// Letters, digits and the combining diacritical marks that decorate them.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || ('\u{300}'..='\u{36f}').contains(&c)
}

/// The ASCII and the typographic apostrophe.
fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}
