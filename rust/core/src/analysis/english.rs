//! Latin-script analysis: Unicode (UAX #29) words, lowercase, Snowball stems.

use crate::hash::{Interner, StrList};
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
    /// rust-stemmers for the other languages; English is our own Snowball 3
    /// port ([`super::porter2`]), rust-stemmers' English being an older Snowball.
    stemmer: Option<Stemmer>,
    /// Index in `STEMMERS` (`STEMMERS.len()` for `english_legacy`): the key of
    /// this algorithm's per-thread stem cache.
    algo: usize,
}

/// Words cached per thread and algorithm before the cache is emptied.
const STEM_CACHE: usize = 1 << 20;

/// Words and their stems (stem i of word i), both kept end to end: no
/// allocation per word.
#[derive(Default)]
struct StemCache {
    words: Interner,
    stems: StrList,
}

thread_local! {
    /// Stems are a pure function of (algorithm, word) and vocabularies are
    /// Zipfian, so most tokens are stemmed once per thread (bm25s likewise
    /// stems each distinct word once).
    static STEMS: std::cell::RefCell<Vec<StemCache>> =
        std::cell::RefCell::new((0..=STEMMERS.len()).map(|_| StemCache::default()).collect());
}

impl NamedStemmer {
    pub fn new(name: &str) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        let key = if lower == "porter2" || lower == "en" {
            "english"
        } else {
            lower.as_str()
        };
        if key == "english_legacy" {
            // rust-stemmers' older Snowball English, for indexes built with it.
            return Ok(NamedStemmer {
                name: key.to_string(),
                stemmer: Some(Stemmer::create(Algorithm::English)),
                algo: STEMMERS.len(),
            });
        }
        let idx = STEMMERS.iter().position(|(n, _)| *n == key).ok_or_else(|| {
            let names: Vec<&str> = STEMMERS.iter().map(|(n, _)| *n).collect();
            Error::invalid(format!("unknown stemmer {name:?}; available: {}", names.join(", ")))
        })?;
        Ok(NamedStemmer {
            name: key.to_string(),
            stemmer: (key != "english").then(|| Stemmer::create(STEMMERS[idx].1)),
            algo: idx,
        })
    }

    #[inline]
    pub fn stem<'a>(&self, word: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.stemmer {
            Some(s) => s.stem(word),
            None => super::porter2::stem(word).map_or(std::borrow::Cow::Borrowed(word), std::borrow::Cow::Owned),
        }
    }

    /// Stem `word` and pass the stem to `f`, through the per-thread cache.
    #[inline]
    pub fn stem_with(&self, word: &str, f: &mut dyn FnMut(&str)) {
        STEMS.with(|c| {
            let mut caches = c.borrow_mut();
            let cache = &mut caches[self.algo];
            if let Some(id) = cache.words.get(word) {
                f(cache.stems.get(id));
                return;
            }
            if cache.words.len() >= STEM_CACHE {
                *cache = StemCache::default();
            }
            let s = self.stem(word);
            f(&s);
            cache.words.intern(word);
            cache.stems.push(&s);
        })
    }
}

/// How Latin-script text is cut into words (`Analyzer(tokenizer=...)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokenizer {
    /// bm25s's splitting (`(?u)\b\w\w+\b`: maximal runs of letters, digits
    /// and `_`) plus dotted acronyms and decimals joined: `U.S.` -> `us`,
    /// `i.e.` -> `ie`, `2.5` stays `2.5`.
    Default,
    /// Exactly bm25s's default token pattern: runs of `\w`; apostrophes,
    /// dots, commas and hyphens split (`don't` -> `don` `t`, `2.5` -> `2` `5`).
    Bm25s,
    /// Unicode (UAX #29) words, which keep `don't`, `3.14`, `1,000` and `U.S`
    /// whole: densparse's splitting before 0.x, kept for indexes built with it.
    Uax29,
}

impl Tokenizer {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "default" => Ok(Tokenizer::Default),
            "bm25s" => Ok(Tokenizer::Bm25s),
            "uax29" => Ok(Tokenizer::Uax29),
            _ => Err(Error::invalid(format!(
                "unknown tokenizer {s:?}: expected \"default\", \"bm25s\" or \"uax29\""
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::Default => "default",
            Tokenizer::Bm25s => "bm25s",
            Tokenizer::Uax29 => "uax29",
        }
    }
}

/// Python's `\w`: letters, digits and `_`.
#[inline]
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Is the character at byte `i` of `text` a `\w`, and how long is it?
#[inline]
fn word_char_at(text: &str, i: usize) -> (bool, usize) {
    let c = text.as_bytes()[i];
    if c < 0x80 {
        (c.is_ascii_alphanumeric() || c == b'_', 1)
    } else {
        let ch = text[i..].chars().next().unwrap_or(' ');
        (is_word_char(ch), ch.len_utf8())
    }
}

/// Byte spans of the maximal runs of `\w` in a text.
struct RunSpans<'a> {
    text: &'a str,
    pos: usize,
}

impl Iterator for RunSpans<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let n = self.text.len();
        let mut i = self.pos;
        while i < n {
            let (w, len) = word_char_at(self.text, i);
            if w {
                break;
            }
            i += len;
        }
        if i >= n {
            self.pos = n;
            return None;
        }
        let start = i;
        while i < n {
            let (w, len) = word_char_at(self.text, i);
            if !w {
                break;
            }
            i += len;
        }
        self.pos = i;
        Some((start, i))
    }
}

/// Maximal runs of `\w` in `text` (what bm25s's `\b\w\w+\b` finds, before
/// its two-character minimum, which the analyzer applies). With `join`,
/// single letters joined by dots (`U.S.`, `e.g.`, `U.S.A`) come out as one
/// word of their letters (`US`, `eg`, `USA`) and digit runs joined by dots as
/// one number (`2.5`, `3.11`, `1.2.3`).
pub fn word_runs(text: &str, join: bool, emit: &mut dyn FnMut(&str)) {
    let spans = RunSpans { text, pos: 0 };
    if !join {
        for (s, e) in spans {
            emit(&text[s..e]);
        }
        return;
    }
    let b = text.as_bytes();
    // The compound being read: its first byte, the end of its last run, how
    // many runs, and for an acronym its letters.
    let mut acro = String::new();
    let (mut start, mut end, mut parts) = (0usize, 0usize, 0usize);
    let mut number = false;
    let flush = |acro: &str, start: usize, end: usize, parts: usize, number: bool, emit: &mut dyn FnMut(&str)| {
        if parts == 1 || (parts > 1 && number) {
            emit(&text[start..end]);
        } else if parts > 1 {
            emit(acro);
        }
    };
    for (s, e) in spans {
        let run = &text[s..e];
        let mut cs = run.chars();
        let c = cs.next().unwrap_or(' ');
        let letter = cs.next().is_none() && c.is_alphabetic();
        let digits = run.bytes().all(|x| x.is_ascii_digit());
        let dot_before = parts > 0 && s == end + 1 && b[end] == b'.';
        if dot_before && ((letter && !number) || (digits && number)) {
            if letter {
                acro.push(c);
            }
            end = e;
            parts += 1;
            continue;
        }
        flush(&acro, start, end, parts, number, emit);
        parts = 0;
        if (letter || digits) && b.get(e) == Some(&b'.') {
            acro.clear();
            if letter {
                acro.push(c);
            }
            (start, end, parts, number) = (s, e, 1, digits);
            continue;
        }
        emit(run);
    }
    flush(&acro, start, end, parts, number, emit);
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

    fn runs(text: &str, acronyms: bool) -> Vec<String> {
        let mut v = Vec::new();
        word_runs(text, acronyms, &mut |w| v.push(w.to_string()));
        v
    }

    #[test]
    fn bm25s_runs() {
        // Python: re.findall(r"\w+", text), the runs `\b\w\w+\b` filters by length.
        assert_eq!(
            runs("It's 2.5 mg/kg (1,000 U.S. pts), i.e. don't x_y café-au-lait", false),
            [
                "It", "s", "2", "5", "mg", "kg", "1", "000", "U", "S", "pts", "i", "e", "don", "t", "x_y", "café",
                "au", "lait"
            ]
        );
    }

    #[test]
    fn acronyms_joined() {
        assert_eq!(
            runs("the U.S. and U.K, e.g. p.m. U.S.A was a.b.c.d. J. K. Rowling", true),
            ["the", "US", "and", "UK", "eg", "pm", "USA", "was", "abcd", "J", "K", "Rowling"]
        );
        assert_eq!(runs("a.", true), ["a"]);
        assert_eq!(runs("é.ü. x", true), ["éü", "x"]);
        assert_eq!(
            runs("2.5 a.5 v3.11 1,000.5 1.2.3. x", true),
            ["2.5", "a", "5", "v3", "11", "1", "000.5", "1.2.3", "x"]
        );
    }

    #[test]
    fn uax29_words() {
        let mut v = Vec::new();
        words("Don't stop: 3.14 is π, ok?", false, &mut |w, _| v.push(w.to_string()));
        assert_eq!(v, ["Don't", "stop", "3.14", "is", "π", "ok"]);
    }
}
