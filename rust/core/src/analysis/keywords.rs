//! Keyword extraction as `jieba.analyse` does it: TF-IDF (`extract_tags`) and
//! TextRank (`textrank`, nouns and verbs only), over jieba tokens.

use jieba_rs::{KeywordExtract, KeywordExtractConfig, TextRank, TfIdf};

use super::chinese::Segmenter;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeywordMethod {
    TfIdf,
    TextRank,
}

impl KeywordMethod {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "tfidf" => Ok(KeywordMethod::TfIdf),
            "textrank" => Ok(KeywordMethod::TextRank),
            _ => Err(Error::invalid(format!("unknown keyword method {s:?}: expected \"tfidf\" or \"textrank\""))),
        }
    }
}

/// Both extractors, built once (the IDF table is large).
pub struct KeywordExtractor {
    tfidf: TfIdf,
    textrank: TextRank,
}

impl Default for KeywordExtractor {
    fn default() -> Self {
        // jieba.analyse cuts with the HMM on; jieba-rs defaults to off.
        let config = || KeywordExtractConfig::builder().use_hmm(true).build();
        let mut tfidf = TfIdf::default();
        *tfidf.config_mut() = config();
        KeywordExtractor { tfidf, textrank: TextRank::new(5, config()) }
    }
}

impl KeywordExtractor {
    /// Top `k` keywords of `text` with their weights, highest first.
    pub fn extract(&self, seg: &Segmenter, text: &str, k: usize, method: KeywordMethod) -> Vec<(String, f64)> {
        let kws = match method {
            // jieba.analyse.extract_tags: every part of speech.
            KeywordMethod::TfIdf => self.tfidf.extract_keywords(seg.jieba(), text, k, vec![]),
            // jieba.analyse.textrank: allowPOS=('ns', 'n', 'vn', 'v').
            KeywordMethod::TextRank => self.textrank.extract_keywords(
                seg.jieba(),
                text,
                k,
                ["ns", "n", "vn", "v"].iter().map(|s| s.to_string()).collect(),
            ),
        };
        kws.into_iter().map(|kw| (kw.keyword, kw.weight)).collect()
    }
}
