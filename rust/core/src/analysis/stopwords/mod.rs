//! Built-in stopword lists.
//!
//! `en.txt` is bm25s's English list (33 words, the short Lucene-style list its
//! SciFact baseline uses). `zh.txt` (382 entries: function words, particles,
//! pronouns, punctuation) was written for densparse and chosen on STARD's
//! train split; words that carry meaning in legal text (问题, 情况, 一方) are
//! deliberately not in it.

use crate::hash::StrSet;

pub const ENGLISH: &str = include_str!("en.txt");
pub const CHINESE: &str = include_str!("zh.txt");

/// A set of words to drop, compared after lowercasing (when the analyzer lowercases).
#[derive(Clone, Debug, Default)]
pub struct StopWords {
    words: StrSet<String>,
}

impl StopWords {
    pub fn from_words<I: IntoIterator<Item = S>, S: Into<String>>(words: I) -> Self {
        StopWords {
            words: words
                .into_iter()
                .map(Into::into)
                .filter(|w: &String| !w.is_empty())
                .collect(),
        }
    }

    pub fn from_list(text: &str) -> Self {
        Self::from_words(text.lines().map(str::trim))
    }

    pub fn english() -> Self {
        Self::from_list(ENGLISH)
    }

    pub fn chinese() -> Self {
        Self::from_list(CHINESE)
    }

    pub fn extend(&mut self, other: &StopWords) {
        self.words.extend(other.words.iter().cloned());
    }

    #[inline]
    pub fn contains(&self, w: &str) -> bool {
        !self.words.is_empty() && self.words.contains(w)
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Sorted, for saving and display.
    pub fn to_sorted_vec(&self) -> Vec<String> {
        let mut v: Vec<String> = self.words.iter().cloned().collect();
        v.sort();
        v
    }
}
