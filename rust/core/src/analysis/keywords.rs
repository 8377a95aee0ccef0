//! Keyword extraction as `jieba.analyse` does it: TF-IDF (`extract_tags`,
//! jieba-rs's extractor with the HMM on, as jieba) and TextRank (`textrank`:
//! jieba's own graph and iteration, written out below over jieba-rs tags).

use jieba_rs::{KeywordExtract, KeywordExtractConfig, TfIdf, DEFAULT_STOP_WORDS};
use rustc_hash::FxHashMap;

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
            _ => Err(Error::invalid(format!(
                "unknown keyword method {s:?}: expected \"tfidf\" or \"textrank\""
            ))),
        }
    }
}

/// Both extractors, built once (the IDF table is large).
pub struct KeywordExtractor {
    tfidf: TfIdf,
}

impl Default for KeywordExtractor {
    fn default() -> Self {
        // jieba.analyse cuts with the HMM on; jieba-rs defaults to off.
        let mut tfidf = TfIdf::default();
        *tfidf.config_mut() = KeywordExtractConfig::builder().use_hmm(true).build();
        KeywordExtractor { tfidf }
    }
}

impl KeywordExtractor {
    /// Top `k` keywords of `text` with their weights, highest first.
    pub fn extract(&self, seg: &Segmenter, text: &str, k: usize, method: KeywordMethod) -> Vec<(String, f64)> {
        match method {
            KeywordMethod::TfIdf => self.tfidf(seg, text, k),
            KeywordMethod::TextRank => textrank(seg, text, k),
        }
    }

    /// jieba.analyse.extract_tags: every part of speech; ties keep the order
    /// in which words first occur (Python's stable sort over its dict).
    fn tfidf(&self, seg: &Segmenter, text: &str, k: usize) -> Vec<(String, f64)> {
        let all = self.tfidf.extract_keywords(seg.jieba(), text, usize::MAX, vec![]);
        let mut first: FxHashMap<&str, usize> = FxHashMap::default();
        seg.cut_each(text, super::CutMode::Precise, true, &mut |w| {
            let n = first.len();
            first.entry(w).or_insert(n);
        });
        let mut ranked: Vec<(usize, String, f64)> = all
            .into_iter()
            .map(|kw| {
                (
                    first.get(kw.keyword.as_str()).copied().unwrap_or(usize::MAX),
                    kw.keyword,
                    kw.weight,
                )
            })
            .collect();
        ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        ranked.into_iter().take(k).map(|(_, w, x)| (w, x)).collect()
    }
}

/// `jieba.analyse.textrank(text, topK=k, withWeight=True)`: a co-occurrence
/// graph (window 5) over nouns and verbs (`ns n vn v`), 10 Gauss-Seidel
/// PageRank sweeps (d = 0.85) in sorted word order, weights scaled as jieba does.
fn textrank(seg: &Segmenter, text: &str, k: usize) -> Vec<(String, f64)> {
    const SPAN: usize = 5;
    const D: f64 = 0.85;
    let tags = seg.jieba().tag(text, true);
    let keep = |i: usize| {
        let t = &tags[i];
        matches!(t.tag, "ns" | "n" | "vn" | "v")
            && t.word.trim().chars().count() >= 2
            && !DEFAULT_STOP_WORDS.contains(&t.word.to_lowercase())
    };
    // Word ids in order of first appearance; pair counts in insertion order
    // (Python dicts keep it, and it decides float sums and tie order).
    let mut ids: FxHashMap<&str, usize> = FxHashMap::default();
    let mut words: Vec<&str> = Vec::new();
    let mut pair_index: FxHashMap<(usize, usize), usize> = FxHashMap::default();
    let mut pairs: Vec<((usize, usize), f64)> = Vec::new();
    let mut wid: Vec<Option<usize>> = vec![None; tags.len()];
    for i in 0..tags.len() {
        if keep(i) {
            let w = tags[i].word;
            let id = *ids.entry(w).or_insert_with(|| {
                words.push(w);
                words.len() - 1
            });
            wid[i] = Some(id);
        }
    }
    for (i, &a) in wid.iter().enumerate() {
        let Some(a) = a else { continue };
        // jieba pairs each kept word with the kept words among the next SPAN - 1 tokens.
        for b in wid[i + 1..(i + SPAN).min(wid.len())].iter().flatten() {
            let e = pair_index.entry((a, *b)).or_insert_with(|| {
                pairs.push(((a, *b), 0.0));
                pairs.len() - 1
            });
            pairs[*e].1 += 1.0;
        }
    }
    // Undirected graph; node order = first appearance in the edge list.
    let mut node_order: Vec<usize> = Vec::new();
    let mut edges: Vec<Vec<(usize, f64)>> = vec![Vec::new(); words.len()];
    let mut seen = vec![false; words.len()];
    for &((a, b), w) in &pairs {
        for n in [a, b] {
            if !seen[n] {
                seen[n] = true;
                node_order.push(n);
            }
        }
        edges[a].push((b, w));
        edges[b].push((a, w));
    }
    if node_order.is_empty() {
        return Vec::new();
    }
    let mut ws = vec![0f64; words.len()];
    let mut out_sum = vec![0f64; words.len()];
    let wsdef = 1.0 / node_order.len() as f64;
    for &n in &node_order {
        ws[n] = wsdef;
        out_sum[n] = edges[n].iter().map(|e| e.1).sum();
    }
    let mut sorted_nodes = node_order.clone();
    sorted_nodes.sort_by(|&a, &b| words[a].cmp(words[b]));
    for _ in 0..10 {
        for &n in &sorted_nodes {
            let mut s = 0f64;
            for &(m, w) in &edges[n] {
                s += w / out_sum[m] * ws[m];
            }
            ws[n] = (1.0 - D) + D * s;
        }
    }
    let (mut lo, mut hi) = (f64::MAX, f64::MIN_POSITIVE);
    for &n in &node_order {
        lo = lo.min(ws[n]);
        hi = hi.max(ws[n]);
    }
    let mut ranked: Vec<(String, f64)> = node_order
        .iter()
        .map(|&n| (words[n].to_string(), (ws[n] - lo / 10.0) / (hi - lo / 10.0)))
        .collect();
    // Stable sort: equal weights keep node order, as Python's sorted does.
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}
