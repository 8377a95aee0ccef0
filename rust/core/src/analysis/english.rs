//! Latin-script analysis: Unicode (UAX #29) words, lowercase, Snowball stems.

use crate::hash::StrMap;
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
    /// Index in `STEMMERS`: the key of this algorithm's per-thread stem cache.
    algo: usize,
}

/// Words cached per thread and algorithm before the cache is emptied.
const STEM_CACHE: usize = 1 << 20;

thread_local! {
    /// Stems are a pure function of (algorithm, word) and vocabularies are
    /// Zipfian, so most tokens are stemmed once per thread (bm25s likewise
    /// stems each distinct word once).
    static STEMS: std::cell::RefCell<Vec<StrMap<Box<str>, Box<str>>>> =
        std::cell::RefCell::new((0..STEMMERS.len()).map(|_| StrMap::default()).collect());
}

impl NamedStemmer {
    pub fn new(name: &str) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        let key = if lower == "porter2" || lower == "en" {
            "english"
        } else {
            lower.as_str()
        };
        let idx = STEMMERS.iter().position(|(n, _)| *n == key).ok_or_else(|| {
            let names: Vec<&str> = STEMMERS.iter().map(|(n, _)| *n).collect();
            Error::invalid(format!("unknown stemmer {name:?}; available: {}", names.join(", ")))
        })?;
        Ok(NamedStemmer {
            name: key.to_string(),
            stemmer: Stemmer::create(STEMMERS[idx].1),
            algo: idx,
        })
    }

    #[inline]
    pub fn stem<'a>(&self, word: &'a str) -> std::borrow::Cow<'a, str> {
        self.stemmer.stem(word)
    }

    /// Stem `word` and pass the stem to `f`, through the per-thread cache.
    #[inline]
    pub fn stem_with(&self, word: &str, f: &mut dyn FnMut(&str)) {
        STEMS.with(|c| {
            let mut caches = c.borrow_mut();
            let cache = &mut caches[self.algo];
            if let Some(s) = cache.get(word) {
                f(s);
                return;
            }
            if cache.len() >= STEM_CACHE {
                cache.clear();
            }
            let s: Box<str> = self.stemmer.stem(word).into();
            f(&s);
            cache.insert(word.into(), s);
        })
    }
}

/// Every UAX #29 segment of `text` that is a word (letters, digits, or both,
/// with their inner `'` `.` `,` as the standard allows: `don't`, `3.14`).
/// With `punctuation`, non-space non-word segments are passed too, flagged.
pub fn words(text: &str, punctuation: bool, emit: &mut dyn FnMut(&str, bool)) {
    if !punctuation && text.is_ascii() {
        return ascii_words(text, emit);
    }
    for seg in text.split_word_bounds() {
        if seg.chars().any(char::is_alphanumeric) {
            emit(seg, true);
        } else if punctuation && !seg.chars().all(char::is_whitespace) {
            emit(seg, false);
        }
    }
}

/// The word segments of UAX #29 for ASCII text (tested equal to
/// `split_word_bounds` below), several times faster: runs of `[A-Za-z0-9_]`,
/// joined across one `:` `.` `'` between letters (WB6/7) or one `,` `;` `.`
/// `'` between digits (WB11/12).
fn ascii_words(text: &str, emit: &mut dyn FnMut(&str, bool)) {
    let b = text.as_bytes();
    let n = b.len();
    let is_w = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < n {
        if !is_w(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        loop {
            if i < n && is_w(b[i]) {
                i += 1;
                continue;
            }
            if i + 1 < n {
                let (p, m, q) = (b[i - 1], b[i], b[i + 1]);
                let letters = p.is_ascii_alphabetic() && q.is_ascii_alphabetic() && matches!(m, b':' | b'.' | b'\'');
                let digits = p.is_ascii_digit() && q.is_ascii_digit() && matches!(m, b',' | b';' | b'.' | b'\'');
                if letters || digits {
                    i += 2;
                    continue;
                }
            }
            break;
        }
        let w = &text[start..i];
        if w.bytes().any(|c| c.is_ascii_alphanumeric()) {
            emit(w, true);
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
        let mut got = Vec::new();
        for _ in 0..2 {
            s.stem_with("running", &mut |x| got.push(x.to_string()));
        }
        assert_eq!(got, ["run", "run"]);
        assert!(NamedStemmer::new("klingon").is_err());
    }

    #[test]
    fn ascii_fast_path_equals_uax29() {
        let alphabet = b"ab1Z9_.,:;' \n\r-\"(x";
        let mut state = 12345u64;
        for _ in 0..20000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (state >> 59) as usize + 1;
            let text: String = (0..len)
                .map(|k| {
                    let r = state.rotate_left(7 * k as u32 + 3) ^ (k as u64).wrapping_mul(0x9E3779B97F4A7C15);
                    alphabet[(r % alphabet.len() as u64) as usize] as char
                })
                .collect();
            let mut fast = Vec::new();
            ascii_words(&text, &mut |w, _| fast.push(w.to_string()));
            let slow: Vec<String> = text
                .split_word_bounds()
                .filter(|s| s.chars().any(char::is_alphanumeric))
                .map(String::from)
                .collect();
            assert_eq!(fast, slow, "{text:?}");
        }
        let sample = "The patient's T-cell count (3,000.5 per µl) wasn't e.g. U.S.A. a:b 1;2 x_y __ _z 9.a";
        let ascii: String = sample.chars().filter(char::is_ascii).collect();
        let mut fast = Vec::new();
        ascii_words(&ascii, &mut |w, _| fast.push(w.to_string()));
        let slow: Vec<String> = ascii
            .split_word_bounds()
            .filter(|s| s.chars().any(char::is_alphanumeric))
            .map(String::from)
            .collect();
        assert_eq!(fast, slow);
    }

    #[test]
    fn uax29_words() {
        let mut v = Vec::new();
        words("Don't stop: 3.14 is π, ok?", false, &mut |w, _| v.push(w.to_string()));
        assert_eq!(v, ["Don't", "stop", "3.14", "is", "π", "ok"]);
    }
}
