//! Chinese segmentation that reproduces Python jieba 0.42.1 token for token.
//!
//! jieba-rs does the heavy lifting (dictionary trie, DAG, route, HMM Viterbi).
//! It deliberately departs from Python jieba in a few places, which this layer
//! undoes so that our output equals `jieba.cut` / `jieba.cut_for_search` /
//! `jieba.cut(cut_all=True)`:
//!
//! 1. Block splitting: Python's `re_han_default` covers U+4E00..U+9FD5 only,
//!    jieba-rs also CJK extensions and U+9FD6..U+9FFF. We split blocks
//!    ourselves with Python's classes and hand jieba-rs one block at a time.
//! 2. HMM mode: for a run of unknown non-Han characters (`WES-5.4.5`), jieba-rs
//!    keeps connector-joined runs whole; Python splits them with
//!    `[a-zA-Z0-9]+(?:\.\d+)?%?` (`WES`, `-`, `5.4`, `.`, `5`). We re-split such
//!    tokens with Python's pattern.
//! 3. Search mode: jieba-rs also adds the parts of connector-joined tokens; we
//!    build search mode from the precise cut exactly as Python does.
//! 4. Full mode: jieba-rs emits every dictionary word and splits blocks its
//!    own way; Python 0.42.1 uses the default block classes, emits single
//!    characters only where no longer word starts and the previous word does
//!    not cover them, and joins runs of ASCII alphanumerics. We walk Python's
//!    DAG ourselves with dictionary look-ups.
//! 5. HMM probabilities: jieba-rs's built-in model rounds the emission
//!    log-probabilities to 6 decimals, which flips near-ties (`常在较陡峭的`:
//!    the two best paths of `常在较` differ by 1.5e-7). We load Python's own
//!    tables at full precision (`jieba_hmm.model`); jieba-rs's Viterbi and
//!    route already add in Python's order (`V + trans + emit`,
//!    `log(freq) - logtotal + route`) and break ties as Python's tuple `max`.

use std::io::BufRead;

use jieba_rs::{HmmModel, Jieba};

/// Python jieba 0.42.1's HMM tables, every float as Python's `repr`.
const JIEBA_HMM: &str = include_str!("jieba_hmm.model");

use crate::error::{Error, Result};

/// Segmentation mode, as in jieba.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// `jieba.cut(text, HMM=hmm)`
    Precise,
    /// `jieba.cut_for_search(text, HMM=hmm)`
    Search,
    /// `jieba.cut(text, cut_all=True)`
    Full,
}

impl CutMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "default" | "precise" => Ok(CutMode::Precise),
            "search" => Ok(CutMode::Search),
            "all" | "full" => Ok(CutMode::Full),
            _ => Err(Error::invalid(format!(
                "unknown segmentation mode {s:?}: expected \"default\", \"search\" or \"all\""
            ))),
        }
    }
}

/// Python jieba's `re_han_default` class: `[\u4E00-\u9FD5a-zA-Z0-9+#&\._%\-]`.
#[inline]
fn is_han_default(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FD5}')
        || c.is_ascii_alphanumeric()
        || matches!(c, '+' | '#' | '&' | '.' | '_' | '%' | '-')
}

/// Han characters jieba-rs puts in blocks but Python jieba does not.
#[inline]
fn is_wider_han(c: char) -> bool {
    (c as u32) >= 0x3400 && !matches!(c, '\u{4E00}'..='\u{9FD5}') && crate::analysis::is_han(c)
}

/// Could `text` hold a [`is_wider_han`] character? A scan of lead bytes only
/// (no decoding; continuation bytes are stepped over) for those of
/// U+3400..U+4DFF, U+9FD6..U+9FFF, U+F900..U+FAFF and planes 2-3; false
/// positives are settled by the caller.
#[inline]
fn may_have_wider_han(text: &str) -> bool {
    let b = text.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        let c = b[i];
        if c < 0xE3 {
            // ASCII, 2-byte or U+0800..U+2FFF (a `str` is valid UTF-8).
            i += if c < 0x80 {
                1
            } else if c < 0xE0 {
                2
            } else {
                3
            };
            continue;
        }
        let c1 = b.get(i + 1).copied().unwrap_or(0);
        let hit = match c {
            0xE3 => c1 >= 0x90,
            0xE4 => c1 < 0xB8,
            0xE9 => c1 == 0xBF && b.get(i + 2).copied().unwrap_or(0) >= 0x96,
            0xEF => (0xA4..=0xAB).contains(&c1),
            0xF0 => (0xA0..=0xB3).contains(&c1),
            _ => false,
        };
        if hit {
            return true;
        }
        i += if c < 0xF0 { 3 } else { 4 };
    }
    false
}

/// Python's `str.isspace()` set, used by `re_skip_default = (\r\n|\s)`.
#[inline]
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

/// Split `text` into maximal runs where `class` is constant.
fn runs(text: &str, class: impl Fn(char) -> bool) -> impl Iterator<Item = (&str, bool)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let mut chars = rest.char_indices();
        let (_, first) = chars.next()?;
        let want = class(first);
        let end = chars.find(|&(_, c)| class(c) != want).map_or(rest.len(), |(i, _)| i);
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some((run, want))
    })
}

/// Python jieba's HMM-path split of a non-Han run: `re_skip.split(blk)` with
/// `re_skip = ([a-zA-Z0-9]+(?:\.\d+)?%?)`, empty pieces left out.
fn python_skip_split<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let b = s.as_bytes();
    let mut gap_start = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < b.len() && b[i] == b'%' {
            i += 1;
        }
        if gap_start < start {
            out.push(&s[gap_start..start]);
        }
        out.push(&s[start..i]);
        gap_start = i;
    }
    if gap_start < b.len() {
        out.push(&s[gap_start..]);
    }
}

/// A jieba-compatible segmenter. Cheap to share between threads (`&self` only).
pub struct Segmenter {
    jieba: Jieba,
    /// Longest dictionary word in characters (16 in jieba's dict.txt), the
    /// reach of full mode's dictionary look-ups.
    max_word_chars: usize,
}

impl Default for Segmenter {
    fn default() -> Self {
        Self::new()
    }
}

impl Segmenter {
    /// The default jieba dictionary (the `dict.txt` shipped with jieba 0.42.1).
    pub fn new() -> Self {
        let mut jieba = Jieba::new();
        let model = HmmModel::load(&mut JIEBA_HMM.as_bytes()).expect("the embedded HMM model parses");
        jieba.set_hmm_model(model);
        Segmenter {
            jieba,
            max_word_chars: 16,
        }
    }

    /// No dictionary: for analyzers that never segment Chinese.
    pub fn empty() -> Self {
        Segmenter {
            jieba: Jieba::empty(),
            max_word_chars: 16,
        }
    }

    pub fn jieba(&self) -> &Jieba {
        &self.jieba
    }

    /// Add a word as `jieba.add_word(word, freq, tag)` does; `None` freq means
    /// `suggest_freq(word)`. Returns the frequency used.
    pub fn add_word(&mut self, word: &str, freq: Option<usize>, tag: Option<&str>) -> Result<usize> {
        let word = word.trim();
        if word.is_empty() {
            return Err(Error::invalid("add_word: the word is empty"));
        }
        self.max_word_chars = self.max_word_chars.max(word.chars().count());
        Ok(self.jieba.add_word(word, freq, tag))
    }

    /// Load a user dictionary: one `word [freq] [tag]` per line, as
    /// `jieba.load_userdict` reads it (fields separated by whitespace; blank
    /// lines skipped). A line jieba would read as something else than its
    /// fields is refused with the file and line: a frequency that is not
    /// digits, a tag that is not lowercase ASCII letters (jieba's
    /// `^(.+?)( [0-9]+)?( [a-z]+)?$` would fold such fields into the word), or
    /// more than three fields (a word with a space, which segmentation never
    /// produces). All lines are checked before any word is added.
    pub fn load_user_dict<R: BufRead>(&mut self, reader: R, source: &str) -> Result<()> {
        let mut entries = Vec::new();
        for (no, line) in reader.lines().enumerate() {
            let at = |msg: String| Error::invalid(format!("{source}: line {}: {msg}", no + 1));
            let line = line.map_err(|e| at(e.to_string()))?;
            if let Some(e) = parse_user_dict_line(&line).map_err(at)? {
                entries.push(e);
            }
        }
        for (word, freq, tag) in entries {
            self.add_word(&word, freq, tag.as_deref())?;
        }
        Ok(())
    }

    /// Suggested frequency that keeps `word` together, as `jieba.suggest_freq(word)`.
    pub fn suggest_freq(&self, word: &str) -> usize {
        self.jieba.suggest_freq(word)
    }

    fn has_word(&self, word: &str) -> bool {
        self.jieba.has_word(word)
    }

    /// Segment `text` and pass every token (whitespace included) to `emit`.
    pub fn cut_each<'a>(&self, text: &'a str, mode: CutMode, hmm: bool, emit: &mut dyn FnMut(&'a str)) {
        match mode {
            CutMode::Precise => self.cut_precise(text, hmm, emit),
            CutMode::Search => self.cut_precise(text, hmm, &mut |w: &'a str| {
                // jieba.cut_for_search: the 2- and 3-character dictionary
                // words inside each longer word come before it.
                let n = w.chars().count();
                if n > 2 {
                    let offs: Vec<usize> = w.char_indices().map(|(i, _)| i).chain([w.len()]).collect();
                    for i in 0..n - 1 {
                        let g = &w[offs[i]..offs[i + 2]];
                        if self.has_word(g) {
                            emit(g);
                        }
                    }
                    if n > 3 {
                        for i in 0..n - 2 {
                            let g = &w[offs[i]..offs[i + 3]];
                            if self.has_word(g) {
                                emit(g);
                            }
                        }
                    }
                }
                emit(w);
            }),
            CutMode::Full => self.cut_full(text, emit),
        }
    }

    /// Segment into owned tokens, whitespace-only tokens left out.
    pub fn cut(&self, text: &str, mode: CutMode, hmm: bool) -> Vec<String> {
        let mut out = Vec::new();
        self.cut_each(text, mode, hmm, &mut |w| {
            if !w.chars().all(is_py_space) {
                out.push(w.to_string());
            }
        });
        out
    }

    fn cut_precise<'a>(&self, text: &'a str, hmm: bool, emit: &mut dyn FnMut(&'a str)) {
        let mut pieces: Vec<&'a str> = Vec::new();
        // jieba-rs's own blocks equal Python's unless the text has Han
        // characters outside U+4E00..U+9FD5; then one call does the whole text.
        let whole = !(may_have_wider_han(text) && text.chars().any(is_wider_han));
        // No boxed iterator: one allocation per short text shows in profiles.
        let (one, many) = if whole {
            (Some((text, true)), None)
        } else {
            (None, Some(runs(text, is_han_default)))
        };
        for (run, is_han) in one.into_iter().chain(many.into_iter().flatten()) {
            if is_han {
                for tok in self.jieba.cut(run, hmm) {
                    let w = tok.word;
                    // Only an HMM-path token of unknown ASCII with a
                    // connector can differ from Python (see module docs).
                    if hmm
                        && w.len() > 1
                        && w.is_ascii()
                        && w.bytes().any(|b| !b.is_ascii_alphanumeric())
                        && !self.has_word(w)
                    {
                        pieces.clear();
                        python_skip_split(w, &mut pieces);
                        for p in pieces.drain(..) {
                            emit(p);
                        }
                    } else {
                        emit(w);
                    }
                }
            } else {
                // re_skip_default = (\r\n|\s): whitespace pieces whole, every
                // other character on its own.
                let mut it = run.char_indices().peekable();
                while let Some((i, c)) = it.next() {
                    if c == '\r' && matches!(it.peek(), Some(&(_, '\n'))) {
                        it.next();
                        emit(&run[i..i + 2]);
                    } else {
                        emit(&run[i..i + c.len_utf8()]);
                    }
                }
            }
        }
    }

    fn cut_full<'a>(&self, text: &'a str, emit: &mut dyn FnMut(&'a str)) {
        // jieba 0.42.1 splits full mode with the default classes too; a
        // non-block run is cut at whitespace and each other piece kept whole.
        for (run, is_han) in runs(text, is_han_default) {
            if is_han {
                self.cut_full_block(run, emit);
            } else {
                let mut it = run.char_indices().peekable();
                let mut start = 0;
                while let Some((i, c)) = it.next() {
                    if is_py_space(c) {
                        if start < i {
                            emit(&run[start..i]);
                        }
                        let end = if c == '\r' && matches!(it.peek(), Some(&(_, '\n'))) {
                            it.next();
                            i + 2
                        } else {
                            i + c.len_utf8()
                        };
                        emit(&run[i..end]);
                        start = end;
                    }
                }
                if start < run.len() {
                    emit(&run[start..]);
                }
            }
        }
    }

    /// Python jieba's `__cut_all` over one block, its `eng_scan` included.
    fn cut_full_block<'a>(&self, block: &'a str, emit: &mut dyn FnMut(&'a str)) {
        let offs: Vec<usize> = block.char_indices().map(|(i, _)| i).chain([block.len()]).collect();
        let chars: Vec<char> = block.chars().collect();
        let n = chars.len();
        let is_eng = |c: char| c.is_ascii_alphanumeric();
        let mut old_j: isize = -1;
        let mut eng_scan = false;
        let mut eng_start = 0usize;
        let mut eng_end = 0usize;
        let mut ends: Vec<usize> = Vec::with_capacity(8);
        for k in 0..n {
            // DAG row k: ends (exclusive) of dictionary words starting at k.
            ends.clear();
            for len in 1..=self.max_word_chars.min(n - k) {
                if self.has_word(&block[offs[k]..offs[k + len]]) {
                    ends.push(k + len);
                }
            }
            if ends.is_empty() {
                ends.push(k + 1);
            }
            if eng_scan && !is_eng(chars[k]) {
                eng_scan = false;
                emit(&block[offs[eng_start]..offs[eng_end]]);
            }
            if ends.len() == 1 && k as isize > old_j {
                let j = ends[0];
                if is_eng(chars[k]) {
                    // Python appends the word to the buffer; words are
                    // contiguous here, so the buffer is a slice.
                    if !eng_scan {
                        eng_scan = true;
                        eng_start = k;
                    }
                    eng_end = j;
                }
                if !eng_scan {
                    emit(&block[offs[k]..offs[j]]);
                }
                old_j = j as isize - 1;
            } else {
                for &j in ends.iter() {
                    if j > k + 1 {
                        emit(&block[offs[k]..offs[j]]);
                        old_j = j as isize - 1;
                    }
                }
            }
        }
        if eng_scan {
            emit(&block[offs[eng_start]..offs[eng_end]]);
        }
    }
}

/// A user-dictionary entry: word, frequency, tag.
type DictEntry = (String, Option<usize>, Option<String>);

/// One user-dictionary line as (word, frequency, tag); `None` for a blank line.
fn parse_user_dict_line(line: &str) -> std::result::Result<Option<DictEntry>, String> {
    let line = line.trim_start_matches('\u{feff}').trim();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let is_freq = |f: &str| f.bytes().all(|b| b.is_ascii_digit());
    let is_tag = |t: &str| t.bytes().all(|b| b.is_ascii_lowercase());
    let freq = |f: &str| -> std::result::Result<usize, String> {
        if !is_freq(f) {
            return Err(format!(
                "the frequency {f:?} is not a non-negative whole number (expected `word [freq] [tag]`)"
            ));
        }
        f.parse::<usize>()
            .map_err(|_| format!("the frequency {f} is too large"))
    };
    let tag = |t: &str| -> std::result::Result<String, String> {
        if !is_tag(t) {
            return Err(format!(
                "the tag {t:?} is not lowercase ASCII letters (expected `word [freq] [tag]`)"
            ));
        }
        Ok(t.to_string())
    };
    Ok(match fields.as_slice() {
        [] => None,
        [w] => Some((w.to_string(), None, None)),
        // One field after the word: digits are a frequency, anything else must be a tag.
        [w, f] if is_freq(f) => Some((w.to_string(), Some(freq(f)?), None)),
        [w, t] if is_tag(t) => Some((w.to_string(), None, Some(t.to_string()))),
        [_, x] => {
            return Err(format!(
            "{x:?} is neither a frequency (digits) nor a tag (lowercase ASCII letters); expected `word [freq] [tag]`"
        ))
        }
        [w, f, t] => Some((w.to_string(), Some(freq(f)?), Some(tag(t)?))),
        _ => {
            return Err(format!(
                "{} fields, expected `word [freq] [tag]` (a word cannot contain spaces)",
                fields.len()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_dict_lines() {
        let ok = |l: &str| parse_user_dict_line(l).unwrap();
        assert_eq!(ok("  "), None);
        assert_eq!(ok("\u{feff}词"), Some(("词".into(), None, None)));
        assert_eq!(ok("词 5"), Some(("词".into(), Some(5), None)));
        assert_eq!(ok("词 nr"), Some(("词".into(), None, Some("nr".into()))));
        assert_eq!(ok("词 5 nr "), Some(("词".into(), Some(5), Some("nr".into()))));
        for (line, what) in [
            ("词 5x", "\"5x\" is neither"),
            ("词 -5", "\"-5\" is neither"),
            ("词 x n", "frequency \"x\""),
            ("词 5 N", "tag \"N\""),
            ("词 5 n extra", "4 fields"),
            ("词 99999999999999999999999", "too large"),
        ] {
            let e = parse_user_dict_line(line).unwrap_err();
            assert!(e.contains(what), "{line:?}: {e}");
        }
        let mut s = Segmenter::empty();
        let e = s
            .load_user_dict("好 3\n\n坏 x y\n".as_bytes(), "d.txt")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d.txt: line 3: "), "{e}");
        // Nothing was added from a refused file.
        assert!(!s.has_word("好"));
    }

    fn cut(s: &Segmenter, t: &str, m: CutMode, hmm: bool) -> Vec<String> {
        s.cut(t, m, hmm)
    }

    #[test]
    fn precise_matches_jieba_examples() {
        let s = Segmenter::new();
        // Outputs of Python jieba 0.42.1.
        assert_eq!(
            cut(&s, "我来到北京清华大学", CutMode::Precise, true),
            ["我", "来到", "北京", "清华大学"]
        );
        assert_eq!(
            cut(&s, "他来到了网易杭研大厦", CutMode::Precise, true),
            ["他", "来到", "了", "网易", "杭研", "大厦"]
        );
        assert_eq!(
            cut(&s, "版本3.6.3发布了", CutMode::Precise, true),
            ["版本", "3.6", ".", "3", "发布", "了"]
        );
        assert_eq!(
            cut(&s, "常在较陡峭的", CutMode::Precise, true),
            ["常", "在", "较", "陡峭", "的"]
        );
        assert_eq!(
            cut(&s, "COVID-19疫情期间", CutMode::Precise, true),
            ["COVID", "-", "19", "疫情", "期间"]
        );
    }

    #[test]
    fn search_and_full_match_jieba_examples() {
        let s = Segmenter::new();
        assert_eq!(
            cut(&s, "小明硕士毕业于中国科学院计算所", CutMode::Search, true),
            [
                "小明",
                "硕士",
                "毕业",
                "于",
                "中国",
                "科学",
                "学院",
                "科学院",
                "中国科学院",
                "计算",
                "计算所"
            ]
        );
        assert_eq!(
            cut(&s, "我来到北京清华大学", CutMode::Full, false),
            ["我", "来到", "北京", "清华", "清华大学", "华大", "大学"]
        );
    }

    #[test]
    fn wider_han_prefilter_has_no_false_negatives() {
        for cp in 0..0x40000u32 {
            if let Some(c) = char::from_u32(cp) {
                if is_wider_han(c) {
                    // After characters of every UTF-8 length, so the lead
                    // byte steps are checked too.
                    for pre in ["", "a", "é", "、", "中", "\u{10000}", "aé、中"] {
                        let t = format!("{pre}{c}b");
                        assert!(may_have_wider_han(&t), "{pre:?} {cp:#x}");
                    }
                }
            }
        }
        assert!(!may_have_wider_han("中文，标点。「引号」ＡＢＣ"));
    }

    #[test]
    fn skip_split_is_python_regex() {
        let mut v = Vec::new();
        python_skip_split("WES-5.4.5", &mut v);
        assert_eq!(v, ["WES", "-", "5.4", ".", "5"]);
        v.clear();
        python_skip_split("a__b%", &mut v);
        assert_eq!(v, ["a", "__", "b%"]);
    }
}
