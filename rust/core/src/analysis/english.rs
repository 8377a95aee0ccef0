//! Latin-script analysis: Unicode (UAX #29) words, lowercase, Snowball stems.

use rust_stemmers::{Algorithm, Stemmer};
use unicode_segmentation::UnicodeSegmentation;

use crate::error::{Error, Result};

/// Snowball stemmer names accepted by `Analyzer(stemmer=...)` (PyStemmer's names).
pub const STEMMERS: &[(&str, Algorithm)] = &[
    ("arabic", Algorithm::Arabic),
    ("danish", Algorithm::Danish),
    ("dutch", Algorithm::Dutch),
    ("english", Algorithm::English),
    ("finnish", Algorithm::Finnish),
    ("french", Algorithm::French),
    ("german", Algorithm::German),
    ("greek", Algorithm::Greek),
    ("hungarian", Algorithm::Hungarian),
    ("italian", Algorithm::Italian),
    ("norwegian", Algorithm::Norwegian),
    ("portuguese", Algorithm::Portuguese),
    ("romanian", Algorithm::Romanian),
    ("russian", Algorithm::Russian),
    ("spanish", Algorithm::Spanish),
    ("swedish", Algorithm::Swedish),
    ("tamil", Algorithm::Tamil),
    ("turkish", Algorithm::Turkish),
];

/// A Snowball stemmer with its name kept for saving and display.
pub struct NamedStemmer {
    pub name: String,
    stemmer: Stemmer,
}

impl NamedStemmer {
    pub fn new(name: &str) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        let key = if lower == "porter2" || lower == "en" { "english" } else { lower.as_str() };
        let algo = STEMMERS.iter().find(|(n, _)| *n == key).map(|(_, a)| *a).ok_or_else(|| {
            let names: Vec<&str> = STEMMERS.iter().map(|(n, _)| *n).collect();
            Error::invalid(format!("unknown stemmer {name:?}; available: {}", names.join(", ")))
        })?;
        Ok(NamedStemmer { name: key.to_string(), stemmer: Stemmer::create(algo) })
    }

    #[inline]
    pub fn stem<'a>(&self, word: &'a str) -> std::borrow::Cow<'a, str> {
        self.stemmer.stem(word)
    }
}

/// Every UAX #29 segment of `text` that is a word (letters, digits, or both,
/// with their inner `'` `.` `,` as the standard allows: `don't`, `3.14`).
/// With `punctuation`, non-space non-word segments are passed too, flagged.
pub fn words(text: &str, punctuation: bool, emit: &mut dyn FnMut(&str, bool)) {
    for seg in text.split_word_bounds() {
        if seg.chars().any(char::is_alphanumeric) {
            emit(seg, true);
        } else if punctuation && !seg.chars().all(char::is_whitespace) {
            emit(seg, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_like_pystemmer() {
        let s = NamedStemmer::new("english").unwrap();
        assert_eq!(s.stem("running"), "run");
        assert_eq!(s.stem("generously"), "generous");
        assert!(NamedStemmer::new("klingon").is_err());
    }

    #[test]
    fn uax29_words() {
        let mut v = Vec::new();
        words("Don't stop: 3.14 is π, ok?", false, &mut |w, _| v.push(w.to_string()));
        assert_eq!(v, ["Don't", "stop", "3.14", "is", "π", "ok"]);
    }
}
